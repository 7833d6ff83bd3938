#!/bin/sh
# Runs the whole benchmark suite on this machine: the whole-model driver (its
# summary table is docs/BENCHMARKS.md's), then the kernel suite as JSON and,
# when matplotlib is installed, the roofline plot drawn from it.
#   bench/run_bench.sh BUILD_DIR [OUT_DIR]     (OUT_DIR default BUILD_DIR/bench-results)
# Timings are only meaningful on a quiet machine: check `uptime` first.
set -eu
build=${1:?usage: bench/run_bench.sh BUILD_DIR [OUT_DIR]}
out=${2:-$build/bench-results}
mkdir -p "$out"
echo "load average before: $(cat /proc/loadavg)"
"$build/bin/moegraph-bench" | tee "$out/moegraph-bench.txt"
"$build/bin/moegraph-kernel-bench" --benchmark_out="$out/kernels.json" \
  --benchmark_out_format=json | tee "$out/kernels.txt"
echo "load average after: $(cat /proc/loadavg)"
if python3 -c 'import matplotlib' 2>/dev/null; then
  python3 "$(dirname "$0")/plot_roofline.py" "$out/kernels.json" "$out/benchmarks_roofline.png"
  echo "wrote $out/benchmarks_roofline.png"
fi
