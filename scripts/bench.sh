#!/usr/bin/env bash
# Builds moegraph and runs the whole benchmark suite: yardsticks (read
# bandwidth, peak FMA, OpenBLAS), every kernel, and bench-tiny / bench-a3b-4l
# end to end (the a3b checkpoint is 4.8 GiB, generated once into
# build/bench-models). Results go to out/bench. Run it on a quiet machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh moegraph-bench moegraph-kernel-bench
bench/run_bench.sh build out/bench
