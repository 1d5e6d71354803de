#!/usr/bin/env bash
# ctest "demo": `scripts/demo.sh --once` end to end in a private network namespace (loopback
# only), so its fixed ports and its iptables rule are its own and cannot meet another run's.
# Exit 77 (ctest: skipped) where a network namespace cannot be made.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! unshare --net true 2>/dev/null; then
  echo "skipped: cannot create a network namespace (needs root and unshare)"
  exit 77
fi
exec unshare --net -- sh -c 'ip link set lo up && exec bash scripts/demo.sh --once'
