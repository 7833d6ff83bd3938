#!/usr/bin/env bash
# Quick start: install what is missing, build, compile the built-in demo model
# into a plan, generate from it (text and token ids), and benchmark it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh compile-model run-model graph-dump
mkdir -p out
echo "==> compile-model demo -o out/demo.plan"
build/bin/compile-model demo -o out/demo.plan --demo-dir out/demo-model
# Random weights: the text is gibberish, but it is real text from the demo's tokenizer.
echo "==> run-model out/demo.plan --prompt 'Hello' --max-new-tokens 16"
build/bin/run-model out/demo.plan --prompt 'Hello' --max-new-tokens 16
echo "==> run-model out/demo.plan --prompt 'Hello' --prompt 'The quick brown fox' --ids"
build/bin/run-model out/demo.plan --prompt 'Hello' --prompt 'The quick brown fox' --ids \
    --max-new-tokens 12
echo "==> run-model out/demo.plan --prompt-ids 1,2,3,4,5 --max-new-tokens 12"
build/bin/run-model out/demo.plan --prompt-ids '1,2,3,4,5;9,8,7' --max-new-tokens 12
echo "==> run-model out/demo.plan --bench"
build/bin/run-model out/demo.plan --bench
