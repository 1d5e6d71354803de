#!/usr/bin/env bash
# meshproxy's user-space instructions and allocations per proxied request, counted by callgrind in
# bench/proxy/run.sh's setup (iptables capture, nginx origin, HTTP/1.1 and h2c at a low fixed
# rate), for this tree's build and, with BASE, another build in the same run, with their ratio.
# Unlike requests/s on a shared 2-core machine, the count does not move with the machine's
# load (two runs of one build agree within 0.5 %), so it tells whether a change to the data
# path made it cheaper. Allocations are the calls into the allocator (malloc, operator new, ...)
# from outside it. It counts no kernel time: system calls are per_request.sh's. Run by hand, as
# root:
#
#   bash bench/proxy/instructions.sh                        # build/release
#   BASE=/tmp/old bash bench/proxy/instructions.sh          # also /tmp/old/{controlplane,sidecar}
#   KEEP=/tmp/cg bash bench/proxy/instructions.sh           # keep the callgrind dumps:
#       callgrind_annotate --inclusive=yes /tmp/cg/build/callgrind/out.PID.1   (h1; .2 is h2c)
#
# meshproxy runs under valgrind (some 50 times slower), so RATE stays low (200 requests/s);
# the counters are zeroed after the warm-up and dumped after DURATION seconds, so start-up and
# config are not counted. Needs valgrind.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build/release}
RATE=${RATE:-200}
DURATION=${DURATION:-5}
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
OUT=$(mktemp -d /tmp/meshproxy-instructions.XXXXXX)
trap 'if [[ -n ${KEEP:-} ]]; then mkdir -p "$KEEP" && cp -r "$OUT"/. "$KEEP"/; fi; rm -rf "$OUT"' EXIT

# count NAME BUILD_DIR: one run.sh pass with meshproxy under callgrind.
count() {
  local name=$1 build=$2 dir=$OUT/$1
  mkdir -p "$dir/build/sidecar" "$dir/build/controlplane" "$dir/callgrind"
  cp "$build/controlplane/meshpilot" "$dir/build/controlplane/"
  cp "$build/sidecar/meshproxy" "$dir/meshproxy"
  # run.sh starts (and pins, and reads the pid of) this script, which becomes valgrind.
  cat >"$dir/build/sidecar/meshproxy" <<EOF
#!/bin/sh
exec valgrind -q --tool=callgrind --callgrind-out-file=$dir/callgrind/out.%p $dir/meshproxy "\$@"
EOF
  chmod +x "$dir/build/sidecar/meshproxy"
  PROBE='sleep "$WARMUP"; callgrind_control -z "$PROBE_PID" >/dev/null; sleep "$PROBE_SECONDS"; callgrind_control -d "$PROBE_PID" >/dev/null' \
    BUILD=$dir/build KEEP=$dir/run TARGETS=meshproxy RATES=$RATE SATURATION=0 \
    DURATION=$DURATION WARMUP=3 bash "$ROOT/bench/proxy/run.sh" >/dev/null 2>&1
}

count build "$BUILD"
[[ -n ${BASE:-} ]] && count base "$BASE"

python3 - "$OUT" "$DURATION" <<'PY'
import json, pathlib, sys
out, seconds = pathlib.Path(sys.argv[1]), float(sys.argv[2])

# The allocator's entry points (jemalloc's operator new does not go through malloc).
ALLOCATORS = {"malloc", "calloc", "realloc", "aligned_alloc", "posix_memalign",
              "operator new(unsigned long)", "operator new[](unsigned long)",
              "operator new(unsigned long, std::align_val_t)"}

def counts(dump):
    """(instructions, allocations) in one callgrind dump: calls into the allocator from outside
    it (glibc's operator new calls malloc: one allocation)."""
    names, caller, target, instructions, allocations = {}, None, None, 0, 0
    allocator = lambda name: name is not None and name.split(" [")[0] in ALLOCATORS
    for line in dump.read_text(errors="ignore").splitlines():
        if line.startswith("summary:"):
            instructions = int(line.split()[1])
        elif line.startswith(("fn=(", "cfn=(")):
            ref, _, name = line.partition("=")[2].partition(" ")
            if name:
                names[ref] = name
            if line.startswith("fn="):
                caller = names.get(ref)
            else:
                target = names.get(ref)
        elif line.startswith("calls=") and allocator(target) and not allocator(caller):
            allocations += int(line[6:].split()[0])
    return instructions, allocations

def per_request(name):
    """proto -> (instructions, allocations) per request; dumps come in the order of the
    measurements."""
    d = out / name
    if not d.exists():
        return {}
    runs = [json.loads(l) for l in (d / "run" / "results.jsonl").read_text().splitlines()]
    runs = [r for r in runs if r.get("target") == "meshproxy"]
    dumps = sorted((d / "callgrind").glob("out.*.*"), key=lambda p: p.stat().st_mtime)
    result = {}
    for r, dump in zip(runs, dumps):
        requests = r["rps"] * seconds
        result[r["proto"]] = tuple(n / requests for n in counts(dump))
    return result

build, base = per_request("build"), per_request("base")
print(f"{'proto':5} {'instructions/rq':>15} {'base':>10} {'ratio':>6} {'allocations/rq':>15} {'base':>6}")
for proto, (n, a) in build.items():
    b, ba = base.get(proto, (None, None))
    print(f"{proto:5} {n:15,.0f} " + (f"{b:10,.0f} {n / b:6.2f}" if b else f"{'-':>10} {'-':>6}") +
          f" {a:15.1f} " + (f"{ba:6.1f}" if ba is not None else f"{'-':>6}"))
PY
