#!/usr/bin/env bash
# Installs the Debian packages moegraph needs (only the missing ones) and
# configures + builds it in build/. Sourced by demo.sh and test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=(cmake ninja-build g++ git pkg-config libgtest-dev libgmock-dev libbenchmark-dev
          libflatbuffers-dev flatbuffers-compiler libcli11-dev nlohmann-json3-dev libfmt-dev
          libopenblas-dev ccache graphviz python3 libpcre2-dev libicu-dev clang-14 clang
          libomp-14-dev libclang-rt-14-dev openmpi-bin libopenmpi-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "==> installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

jobs=$(nproc)
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/moegraph-ccache}"
echo "==> configuring build/ (Release, warnings as errors)"
mkdir -p build
if ! cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOEGRAPH_WERROR=ON \
     ${MOEGRAPH_CMAKE_ARGS:-} >build/cmake.log 2>&1; then
  cat build/cmake.log
  exit 1
fi
echo "==> building with $jobs jobs"
ninja -C build -j"$jobs" "$@"
