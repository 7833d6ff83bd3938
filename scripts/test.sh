#!/usr/bin/env bash
# Installs what is missing, builds everything, and runs the whole test suite:
# the runtime, engine and kernel tests under ThreadSanitizer; one Clang build
# with AddressSanitizer + UBSan (and libFuzzer's coverage) that runs the
# untrusted-input tests (safetensors, config, JSON, plan files) and then each
# libFuzzer target for a short fixed time; then every test with ctest. Each
# stage prints the minutes it took (CI must stay under 45 on 2 cores).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
stage_start=$SECONDS
stage_done() {
  echo "==> $1 took $(((SECONDS - stage_start) / 60)) min $(((SECONDS - stage_start) % 60)) s"
  stage_start=$SECONDS
}
bash scripts/setup.sh
stage_done "setup and build"

echo "==> ThreadSanitizer build of the runtime, engine, kernel and expert-parallel tests (build-tsan/)"
mkdir -p build-tsan
# -g1: line tables and function names, all a TSan report needs, at a fraction of -g's
# compile and link time.
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOEGRAPH_TSAN=ON \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
  -DMOEGRAPH_CUDA=OFF -DMOEGRAPH_BUILD_BENCH=OFF -DMOEGRAPH_WERROR=ON >build-tsan/cmake.log 2>&1 ||
  { cat build-tsan/cmake.log; exit 1; }
ninja -C build-tsan -j"$(nproc)" runtime_tests engine_tests kernels_tests distributed_tests
# libgomp is not built with TSan: the hand-offs inside its barriers are
# invisible to it, so the threads of an OpenMP team would show as racing on
# every buffer they share. OMP_THREAD_LIMIT=1 caps every team at its master
# thread, including the engines the tests open with num_threads=2, so no
# OpenMP worker ever starts and no libgomp synchronization needs suppressing:
# every report comes from threads the tests start themselves (std::thread, as
# in the C API's shared-handle test) and is real. Races between the threads
# of one OpenMP team are not checked here (that needs an OpenMP runtime built
# for TSan); the kernel tests in the ctest run below check instead that
# results do not depend on the thread count.
for t in runtime_tests engine_tests kernels_tests distributed_tests; do
  echo "--> $t (TSan)"
  OMP_NUM_THREADS=1 OMP_THREAD_LIMIT=1 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    build-tsan/bin/$t --gtest_brief=1
done
stage_done "ThreadSanitizer"

echo "==> Clang + AddressSanitizer + UBSan build of the malformed-input tests and the libFuzzer targets (build-fuzz/)"
mkdir -p build-fuzz
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Debug -DMOEGRAPH_FUZZ=ON \
  -DMOEGRAPH_CUDA=OFF -DMOEGRAPH_BUILD_BENCH=OFF -DMOEGRAPH_WERROR=ON \
  >build-fuzz/cmake.log 2>&1 || { cat build-fuzz/cmake.log; exit 1; }
asan_tests=(support_tests checkpoint_tests plan_tests frontends_tests runtime_tests)
ninja -C build-fuzz -j"$(nproc)" fuzz "${asan_tests[@]}"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
for t in "${asan_tests[@]}"; do
  echo "--> $t (ASan + UBSan)"
  build-fuzz/bin/$t --gtest_brief=1
done
stage_done "ASan + UBSan tests"
echo "==> libFuzzer targets, ${MOEGRAPH_FUZZ_SECONDS:-30} s each"
fuzz/make_corpus.sh build-fuzz build-fuzz/corpus
for target in plan plan_engine safetensors config ir tokenizer; do
  echo "--> fuzz-${target//_/-}"
  mkdir -p "build-fuzz/artifacts/$target" "build-fuzz/corpus/$target"
  # Each run mutates a scratch copy, so the generated seeds stay as they are.
  rm -rf "build-fuzz/work/$target" && mkdir -p "build-fuzz/work/$target"
  if ! "build-fuzz/bin/fuzz-${target//_/-}" "build-fuzz/work/$target" "build-fuzz/corpus/$target" \
      -max_total_time="${MOEGRAPH_FUZZ_SECONDS:-30}" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="build-fuzz/artifacts/$target/" -print_final_stats=1 \
      >"build-fuzz/$target.log" 2>&1; then
    tail -n 60 "build-fuzz/$target.log"
    echo "fuzz-${target//_/-} failed; reproducer: $(ls "build-fuzz/artifacts/$target"/* 2>/dev/null)"
    exit 1
  fi
  grep -E "^#[0-9]+[[:space:]]+DONE" "build-fuzz/$target.log" || true
done
stage_done "libFuzzer targets"

echo "==> ctest"
cd build
OMP_NUM_THREADS=2 ctest --output-on-failure -j"$(nproc)" --timeout 900
stage_done "ctest"
