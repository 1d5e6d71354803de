#!/usr/bin/env bash
# meshproxy's system calls and malloc calls per proxied request, at fixed rates, in
# bench/proxy/run.sh's setup (meshproxy only, iptables capture, nginx origin). Run by hand, as
# root:
#
#   bash bench/proxy/per_request.sh                 # HTTP/1.1 and h2c at 1,000 requests/s
#   RATES="1000 10000" bash bench/proxy/per_request.sh
#
# Two passes of run.sh, each attaching to meshproxy for every measurement once the warm-up is
# over: `strace -c -f` (calls per system call), then `perf stat` on a uprobe of libc's malloc.
# strace slows meshproxy down, so only the counts mean anything, not the latencies. Needs strace
# and perf (linux-perf).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RATES=${RATES:-1000}
DURATION=${DURATION:-5}
OUT=$(mktemp -d /tmp/meshproxy-per-request.XXXXXX)
trap 'rm -rf "$OUT"' EXIT

for tool in strace perf; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
LIBC=$(ldconfig -p | awk '/libc\.so\.6 .*x86-64/ { print $NF; exit }')
perf probe -q -x "$LIBC" malloc 2>/dev/null || true  # probe_libc:malloc, kept for later runs

# PROBE runs in the background for each measurement with PROBE_PID (meshproxy), PROBE_OUT
# (a path prefix) and PROBE_SECONDS.
export TARGETS=meshproxy RATES DURATION SATURATION=0
PROBE='sleep "$WARMUP"; timeout -s INT "$PROBE_SECONDS" strace -c -f -p "$PROBE_PID" -o "$PROBE_OUT.strace"' \
  KEEP=$OUT/strace bash "$ROOT/bench/proxy/run.sh" >/dev/null
PROBE='sleep "$WARMUP"; perf stat -x, -e probe_libc:malloc -p "$PROBE_PID" -o "$PROBE_OUT.malloc" -- sleep "$PROBE_SECONDS"' \
  KEEP=$OUT/malloc bash "$ROOT/bench/proxy/run.sh" >/dev/null

python3 - "$OUT" "$DURATION" <<'PY'
import json, pathlib, sys
out, seconds = pathlib.Path(sys.argv[1]), float(sys.argv[2])
print(f"{'proto':5} {'load':>6}  {'malloc/rq':>9}  {'syscalls/rq':>11}  per system call")
for line in (out / "strace" / "results.jsonl").read_text().splitlines():
    r = json.loads(line)
    requests = r["rps"] * seconds  # the probes cover the measured seconds, after the warm-up
    stem = f"meshproxy-{r['proto']}-{r['load']}"
    calls = {}
    for row in (out / "strace" / f"{stem}.strace").read_text().splitlines():
        f = row.split()
        if len(f) >= 5 and f[0][0].isdigit() and f[-1] not in ("total", "futex", "restart_syscall"):
            calls[f[-1]] = int(f[3])
    mallocs = 0
    malloc_file = out / "malloc" / f"{stem}.malloc"
    if malloc_file.exists():
        for row in malloc_file.read_text().splitlines():
            if "probe_libc:malloc" in row:
                mallocs = int(row.split(",")[0])
    malloc_rps = next(json.loads(l)["rps"] for l in (out / "malloc" / "results.jsonl").read_text().splitlines()
                      if json.loads(l)["proto"] == r["proto"] and json.loads(l)["load"] == r["load"])
    per_call = "  ".join(f"{name} {n / requests:.2f}" for name, n in sorted(calls.items(), key=lambda kv: -kv[1]))
    print(f"{r['proto']:5} {r['load']:>6}  {mallocs / (malloc_rps * seconds):9.1f}  "
          f"{sum(calls.values()) / requests:11.2f}  {per_call}")
PY
