#!/usr/bin/env bash
# Quick start: install what is missing, build, compile the built-in demo model
# into a plan, generate from it, and benchmark it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh compile-model run-model graph-dump
mkdir -p out
echo "==> compile-model demo -o out/demo.plan"
build/bin/compile-model demo -o out/demo.plan --demo-dir out/demo-model
echo "==> run-model out/demo.plan --prompt-ids 1,2,3,4,5 --max-new-tokens 12"
build/bin/run-model out/demo.plan --prompt-ids '1,2,3,4,5;9,8,7' --max-new-tokens 12
echo "==> run-model out/demo.plan --bench"
build/bin/run-model out/demo.plan --bench
