#!/usr/bin/env bash
# Installs what is missing, builds everything, and runs the whole test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
echo "==> ctest"
cd build
OMP_NUM_THREADS=2 ctest --output-on-failure -j"$(nproc)" --timeout 600
