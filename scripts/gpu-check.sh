#!/usr/bin/env bash
# GPU check: on a machine with an NVIDIA GPU, builds moegraph with the CUDA
# backend (only the targets needed), runs the CUDA and cross-backend tests,
# then benchmarks the demo model on the GPU and writes a short report.
#
#   scripts/gpu-check.sh [REPORT]        (default: gpu-report.txt)
#
# Environment: CUDA_ARCH (default: the GPU's own, e.g. 90a on an H100/H200),
# BUILD_DIR (default: build-gpu), BENCH_ITERS (default: 50).
# Installs only missing build packages, and only when apt can reach a mirror.
set -euo pipefail
report="$(realpath -m "${1:-gpu-report.txt}")"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build="${BUILD_DIR:-build-gpu}"
start=$(date +%s)
: >"$report"
log() { echo "$@" | tee -a "$report"; }
section() { log ""; log "== $* ($(($(date +%s) - start)) s)"; }

section "machine"
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi >/dev/null 2>&1; then
  log "no working nvidia-smi: this script needs an NVIDIA GPU"
  exit 1
fi
nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader \
  | tee -a "$report"
command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"
command -v nvcc >/dev/null || { log "nvcc not found (install the CUDA toolkit)"; exit 1; }
nvcc --version | tail -1 | tee -a "$report"

# Build packages, installed only when missing (and only if apt works).
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v ninja >/dev/null || need+=(ninja-build)
command -v g++ >/dev/null || need+=(g++)
command -v flatc >/dev/null || need+=(flatbuffers-compiler libflatbuffers-dev)
[ -e /usr/include/gtest/gtest.h ] || need+=(libgtest-dev)
if ((${#need[@]})); then
  log "installing missing packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
         $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"; }; then
    log "could not install ${need[*]}: install them and rerun"
    exit 1
  fi
fi

section "build ($build)"
arch="${CUDA_ARCH:-}"
if [ -z "$arch" ]; then
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
  case "$cap" in 90) arch=90a ;; "") arch="80;90a" ;; *) arch="$cap" ;; esac
fi
log "CUDA architectures: $arch"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOEGRAPH_WERROR=ON \
  -DMOEGRAPH_CUDA=ON -DMOEGRAPH_BUILD_BENCH=OFF "-DCMAKE_CUDA_ARCHITECTURES=$arch" \
  >"$build.cmake.log" 2>&1 || { tee -a "$report" <"$build.cmake.log"; exit 1; }
grep "moegraph:" "$build.cmake.log" | tee -a "$report"
jobs=$(nproc)
if ! ninja -C "$build" -j"$jobs" cuda_tests backends_tests gpu-bench >"$build.build.log" 2>&1; then
  tail -40 "$build.build.log" | tee -a "$report"
  exit 1
fi
log "built cuda_tests, backends_tests, gpu-bench"

status=0
run_tests() {
  local name=$1
  section "$name"
  local out="$build/$name.log"
  if OMP_NUM_THREADS=4 timeout 240 "$build/bin/$name" --gtest_brief=1 >"$out" 2>&1; then
    log "$name: passed"
  else
    log "$name: FAILED"
    status=1
  fi
  grep -E "^\[  (PASSED|FAILED|SKIPPED) |cross-backend:|Failure|error" "$out" | head -60 \
    | tee -a "$report" || true
}
run_tests cuda_tests
run_tests backends_tests

section "benchmark (demo model)"
iters="${BENCH_ITERS:-50}"
if ! timeout 180 "$build/bin/gpu-bench" --backend cuda --iters "$iters" 2>&1 | tee -a "$report"; then
  log "gpu-bench: FAILED"
  status=1
fi
if ! timeout 90 "$build/bin/gpu-bench" --backend cpu --iters 5 2>&1 | grep -A9 "decode step" \
    | sed 's/^/cpu baseline: /' | tee -a "$report"; then
  log "cpu baseline: skipped"
fi

section "done: $([ $status -eq 0 ] && echo OK || echo FAILURES), report in $report"
exit $status
