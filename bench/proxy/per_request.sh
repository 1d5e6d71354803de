#!/usr/bin/env bash
# meshproxy's system calls per proxied request, at fixed rates, in
# bench/proxy/run.sh's setup (meshproxy only, iptables capture, nginx origin). Run by hand, as
# root:
#
#   bash bench/proxy/per_request.sh                 # HTTP/1.1 and h2c at 1,000 requests/s
#   RATES="1000 10000" bash bench/proxy/per_request.sh
#
# One pass of run.sh, attaching `strace -c -f` to meshproxy for every measurement once the
# warm-up is over. strace slows meshproxy down, so only the counts mean anything, not the
# latencies. Needs strace. (Allocations per request: bench/proxy/instructions.sh.)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RATES=${RATES:-1000}
DURATION=${DURATION:-5}
OUT=$(mktemp -d /tmp/meshproxy-per-request.XXXXXX)
trap 'rm -rf "$OUT"' EXIT

command -v strace >/dev/null || { echo "needs strace" >&2; exit 1; }

# PROBE runs in the background for each measurement with PROBE_PID (meshproxy), PROBE_OUT
# (a path prefix) and PROBE_SECONDS.
export TARGETS=meshproxy RATES DURATION SATURATION=0
PROBE='sleep "$WARMUP"; timeout -s INT "$PROBE_SECONDS" strace -c -f -p "$PROBE_PID" -o "$PROBE_OUT.strace"' \
  KEEP=$OUT/strace bash "$ROOT/bench/proxy/run.sh" >/dev/null

python3 - "$OUT" "$DURATION" <<'PY'
import json, pathlib, sys
out, seconds = pathlib.Path(sys.argv[1]), float(sys.argv[2])
print(f"{'proto':5} {'load':>6}  {'syscalls/rq':>11}  per system call")
for line in (out / "strace" / "results.jsonl").read_text().splitlines():
    r = json.loads(line)
    requests = r["rps"] * seconds  # the probes cover the measured seconds, after the warm-up
    stem = f"meshproxy-{r['proto']}-{r['load']}"
    calls = {}
    for row in (out / "strace" / f"{stem}.strace").read_text().splitlines():
        f = row.split()
        if len(f) >= 5 and f[0][0].isdigit() and f[-1] not in ("total", "futex", "restart_syscall"):
            calls[f[-1]] = int(f[3])
    per_call = "  ".join(f"{name} {n / requests:.2f}" for name, n in sorted(calls.items(), key=lambda kv: -kv[1]))
    print(f"{r['proto']:5} {r['load']:>6}  {sum(calls.values()) / requests:11.2f}  {per_call}")
PY
