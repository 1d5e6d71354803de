#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/) with clang, ASan and UBSan, and runs each for
# SECONDS (default 60) from its corpus. New inputs that found coverage land in build/fuzz/.
# Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"

bash scripts/setup.sh
for pkg in clang-14 libclang-rt-14-dev; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    apt-get install -y -qq --no-install-recommends clang-14 libclang-rt-14-dev
    break
  fi
done
[ -f build/fuzz/build.ninja ] || cmake --preset fuzz
cmake --build build/fuzz --target fuzz_yaml_stream fuzz_node fuzz_client_hello

for target in yaml_stream node client_hello; do
  work="build/fuzz/corpus-$target"
  mkdir -p "$work"
  echo "fuzz: $target for ${seconds}s"
  "build/fuzz/tests/fuzz/fuzz_$target" -max_total_time="$seconds" -timeout=10 \
      "$work" "tests/fuzz/corpus/$target"
done
