#!/usr/bin/env bash
# xDS push benchmark: meshpilot against a go-control-plane reference serving the same
# resources, in one run, on loopback only. Run by hand (not a test):
#
#   bash bench/xds_push/run.sh                # 200 services x 2 ports x 10 endpoints, 100 and 1000 streams
#   SERVICES=50 STREAMS="10 100" REPEAT=3 bash bench/xds_push/run.sh
#   REFERENCE_MODES=none LOADGEN_FLAGS="--distinct-ips 1" bash bench/xds_push/run.sh   # meshpilot only
#
# Needs build/release/controlplane/meshpilot and build/release/tools/xds_loadgen/xds_loadgen
# (cmake --build build/release --target meshpilot xds_loadgen) and Go (builds bench/reference).
# Prints a table and the ratios meshpilot / reference; raw JSON lines stay in $KEEP if set.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SERVICES=${SERVICES:-200}
ENDPOINTS=${ENDPOINTS:-10}
NAMESPACES=${NAMESPACES:-4}
STREAMS=${STREAMS:-"100 1000"}
REPEAT=${REPEAT:-1}                     # the report shows medians over repeats
MESHPILOT_FLAGS=${MESHPILOT_FLAGS:-}   # e.g. "--debounce-after 10ms"
LOADGEN_FLAGS=${LOADGEN_FLAGS:-}       # e.g. "--distinct-ips 1" (every sidecar on one IP)
TIMEOUT_S=${TIMEOUT_S:-180}             # per loadgen run
BUILD=${BUILD:-$ROOT/build/release}
MESHPILOT=$BUILD/controlplane/meshpilot
LOADGEN=$BUILD/tools/xds_loadgen/xds_loadgen
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}

for binary in "$MESHPILOT" "$LOADGEN"; do
  [[ -x $binary ]] || { echo "missing $binary: cmake --build build/release --target meshpilot xds_loadgen" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/meshpilot-bench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ -n ${KEEP:-} ]]; then mkdir -p "$KEEP" && cp "$WORK"/*.jsonl "$WORK"/*.log "$KEEP"/ 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
# Private copies: a rebuild in the tree during the run must not swap the binaries under it.
cp "$MESHPILOT" "$WORK/meshpilot" && MESHPILOT=$WORK/meshpilot
cp "$LOADGEN" "$WORK/xds_loadgen" && LOADGEN=$WORK/xds_loadgen

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# VmRSS / VmHWM of a process, in MiB.
mem_mib() { awk -v key="$2:" '$1==key {printf "%.1f", $2/1024}' "/proc/$1/status"; }
# User + system CPU seconds a process has used.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14+$15)/hz}' "/proc/$1/stat"; }

WATCHED=10.10.0.1   # svc-0's first endpoint, as gen_mesh.py writes it
MOVED=10.250.0.1    # where the edit moves it (and back)
MESH=$WORK/mesh
python3 "$ROOT/bench/xds_push/gen_mesh.py" --out "$MESH" --services "$SERVICES" \
  --endpoints "$ENDPOINTS" --namespaces "$NAMESPACES"
LOADGEN_NAMESPACES=$(seq -s, -f 'bench-%g' 0 $((NAMESPACES - 1)))
RESULTS=$WORK/results.jsonl
: > "$RESULTS"

# run_loadgen SERVER_NAME PID ADDR STREAMS WATCH ON_READY TRIGGER: one loadgen run, its JSON
# line extended with the server's RSS at READY (streams connected), peak RSS and CPU used.
run_loadgen() {
  local name=$1 pid=$2 addr=$3 streams=$4 watch=$5 on_ready=$6 trigger=$7
  local cpu_before line rss_file=$WORK/rss-$name-$streams
  cpu_before=$(cpu_s "$pid")
  line=$(timeout "$TIMEOUT_S" "$LOADGEN" --server "$addr" --streams "$streams" \
    --namespaces "$LOADGEN_NAMESPACES" --label "$name" --expect-change --watch-address "$watch" \
    --sync-timeout-s 120 --change-timeout-s 60 $LOADGEN_FLAGS \
    --on-ready "$on_ready; awk '\$1==\"VmRSS:\" {print \$2}' /proc/$pid/status > $rss_file" \
    --trigger "$trigger" | grep '^{' || true)
  [[ -n $line ]] || { echo "loadgen against $name with $streams streams produced nothing" >&2; exit 1; }
  python3 - "$line" "$(cat "$rss_file" 2>/dev/null || echo 0)" "$(mem_mib "$pid" VmHWM)" \
    "$cpu_before" "$(cpu_s "$pid")" "$(mem_mib "$pid" VmRSS)" >> "$RESULTS" <<'PY'
import json, sys
line, rss_kib, hwm, cpu0, cpu1, rss_after = sys.argv[1:]
result = json.loads(line)
result["server_rss_ready_mib"] = round(int(rss_kib) / 1024, 1)
result["server_rss_closed_mib"] = float(rss_after)  # streams closed
result["server_hwm_mib"] = float(hwm)
result["server_cpu_s"] = round(float(cpu1) - float(cpu0), 2)
print(json.dumps(result))
PY
  tail -n1 "$RESULTS" >&2
}

echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "== meshpilot: tree $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo +dirty), binary built $(date -r "$BUILD/controlplane/meshpilot" '+%F %T'), flags: ${MESHPILOT_FLAGS:-(defaults)}" >&2
echo "== mesh: $SERVICES services x 2 ports x $ENDPOINTS endpoints in $NAMESPACES namespaces" >&2

# --- meshpilot --------------------------------------------------------------------------
XDS_PORT=$(free_port); DEBUG_PORT=$(free_port)
"$MESHPILOT" --config-dir "$MESH" --listen-address 127.0.0.1 --xds-port "$XDS_PORT" \
  --debug-port "$DEBUG_PORT" --log-level warn $MESHPILOT_FLAGS > "$WORK/meshpilot.log" 2>&1 &
MESHPILOT_PID=$!
PIDS+=("$MESHPILOT_PID")
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$DEBUG_PORT/ready" > /dev/null && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$DEBUG_PORT/ready" > /dev/null || { cat "$WORK/meshpilot.log" >&2; exit 1; }
echo "== meshpilot pid $MESHPILOT_PID ready, RSS $(mem_mib "$MESHPILOT_PID" VmRSS) MiB with no stream" >&2

# Runs alternate the edit: svc-0's first endpoint moves WATCHED -> MOVED, then back. At READY
# each run dumps what meshpilot serves to load-0 (state before its edit) for the reference.
address=$WATCHED
i=0
declare -a DUMPS WATCHES
RUNS=$(for _ in $(seq "$REPEAT"); do echo $STREAMS; done)
for streams in $RUNS; do
  if [[ $address == "$WATCHED" ]]; then next=$MOVED; else next=$WATCHED; fi
  dump=$WORK/dump-$i.json
  # The edit is written beforehand and renamed into the folder: the trigger is one rename.
  python3 "$ROOT/bench/xds_push/gen_mesh.py" --out "$WORK/edit-$i" --services "$SERVICES" \
    --endpoints "$ENDPOINTS" --namespaces "$NAMESPACES" --watched-only --first-address "$next"
  run_loadgen meshpilot "$MESHPILOT_PID" "127.0.0.1:$XDS_PORT" "$streams" "$next" \
    "curl -sf 'http://127.0.0.1:$DEBUG_PORT/debug/config_dump?proxyID=load-0.bench-0' > $dump" \
    "mv $WORK/edit-$i/endpoints-watched.yaml $MESH/endpoints-watched.yaml"
  DUMPS[$i]=$dump; WATCHES[$i]=$next
  address=$next
  i=$((i + 1))
done
kill "$MESHPILOT_PID"; wait "$MESHPILOT_PID" 2>/dev/null || true
last=$((i - 1))
for j in $(seq 0 $last); do
  grep -q "\"${WATCHES[$j]}\"" "${DUMPS[$j]}" && { echo "dump $j already holds ${WATCHES[$j]}" >&2; exit 1; }
done

# --- go-control-plane reference ---------------------------------------------------------
# meshpilot's runs alternate between two states (svc-0's endpoint at WATCHED, then at MOVED):
# the reference preloads both, serves the first and toggles on each SIGHUP, so run j starts
# from the state meshpilot served at run j's READY and its trigger brings the edited state.
other=$WORK/dump-other.json
if (( last >= 1 )); then
  cp "${DUMPS[1]}" "$other"
else
  sed "s/\"$WATCHED\"/\"$MOVED\"/" "${DUMPS[0]}" > "$other"
fi
DUMP_LIST="${DUMPS[0]},$other"
(cd "$ROOT/bench/reference" && "$GO" build -o "$WORK/reference" .)

# run_reference LABEL FLAGS...
run_reference() {
  local label=$1; shift
  local port pid log=$WORK/$label.log
  port=$(free_port)
  "$WORK/reference" --dump "$DUMP_LIST" --port "$port" "$@" > "$log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  for _ in $(seq 300); do
    grep -qs "serving ADS" "$log" && break
    sleep 0.1
  done
  grep -qs "serving ADS" "$log" || { cat "$log" >&2; exit 1; }
  echo "== $label pid $pid ready, RSS $(mem_mib "$pid" VmRSS) MiB with no stream (all dumps preloaded)" >&2
  local j=0
  for streams in $RUNS; do
    run_loadgen "$label" "$pid" "127.0.0.1:$port" "$streams" "${WATCHES[$j]}" "true" "kill -HUP $pid"
    j=$((j + 1))
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

# reference: per-type content versions (only what changed is pushed, like meshpilot);
# reference-1v: one snapshot version for all types (every change pushes all four types).
for mode in ${REFERENCE_MODES:-reference reference-1v}; do
  case $mode in
    reference) run_reference reference --per-type-versions=true ;;
    reference-1v) run_reference reference-1v --per-type-versions=false ;;
    none) ;;
    *) echo "unknown reference mode $mode" >&2; exit 1 ;;
  esac
done

# --- report -----------------------------------------------------------------------------
echo "== load at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 "$ROOT/bench/xds_push/report.py" "$RESULTS"
