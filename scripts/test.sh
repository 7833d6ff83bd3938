#!/usr/bin/env bash
# Installs what is missing, builds everything, and runs the whole test suite:
# first the untrusted-input tests (safetensors, config, JSON, plan files)
# under AddressSanitizer + UBSan, then every test with ctest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh

echo "==> AddressSanitizer + UBSan build of the malformed-input tests (build-asan/)"
mkdir -p build-asan
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DMOEGRAPH_ASAN=ON \
  -DMOEGRAPH_CUDA=OFF -DMOEGRAPH_BUILD_BENCH=OFF -DMOEGRAPH_WERROR=ON >build-asan/cmake.log 2>&1 ||
  { cat build-asan/cmake.log; exit 1; }
ninja -C build-asan -j"$(nproc)" support_tests frontends_tests runtime_tests
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
for t in support_tests frontends_tests runtime_tests; do
  echo "--> $t (ASan)"
  build-asan/bin/$t --gtest_brief=1
done

echo "==> ctest"
cd build
OMP_NUM_THREADS=2 ctest --output-on-failure -j"$(nproc)" --timeout 900
