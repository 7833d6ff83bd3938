#!/usr/bin/env bash
# Writes the fuzz targets' seed corpora into OUT_DIR/<target>/: the seeds
# fuzz-seeds draws from the demo model (a compiled plan, safetensors files and
# an index.json, config.json files, IR text), plus the saved reproducers of
# fuzz/regressions/<target>/.
# Usage: fuzz/make_corpus.sh BUILD_DIR OUT_DIR
set -euo pipefail
build=${1:?usage: make_corpus.sh BUILD_DIR OUT_DIR}
out=${2:?usage: make_corpus.sh BUILD_DIR OUT_DIR}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
rm -rf "$out"
"$build/bin/fuzz-seeds" "$out"
for target in plan plan_engine safetensors config ir; do
  mkdir -p "$out/$target"
  if [ -d "$here/regressions/$target" ]; then
    cp "$here/regressions/$target"/* "$out/$target/" 2>/dev/null || true
  fi
done
