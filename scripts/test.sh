#!/usr/bin/env bash
# Installs what is missing, builds (incrementally) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
[ -f build/release/build.ninja ] || cmake --preset release
cmake --build build/release
bash tests/kube/build_binaries.sh >/dev/null  # once per machine: kube-apiserver and etcd for tests/kube
ctest --test-dir build/release --output-on-failure --timeout 300 -j2
