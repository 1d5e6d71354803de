#!/usr/bin/env bash
# The meshpilot demo: serves the default mesh in examples/ with no cluster, and shows
#  1. gRPC's own xDS client balancing calls over two real Echo backends through it;
#  2. meshproxy, the bundled sidecar, configured by it: plain HTTP/1.1 requests to the `web`
#     Service's cluster IP, captured into meshproxy by an iptables rule as istio-iptables does,
#     routed by examples/routing.yaml (header match to v2, else an 80/20 split of v1 and v2).
#
#   scripts/demo.sh          # keeps meshpilot running (with a client calling once a second)
#                            # until Ctrl-C, so the debug pages show a live proxy
#   scripts/demo.sh --once   # exits after the client run; exit status says if it worked
#
# Ports: 15010 (xDS), 15014 (debug), 18081/18082 (echo backends), 18090/18092 (web backends),
# 15000 (meshproxy admin), 15001 (meshproxy virtualOutbound). Logs: build/demo/.
# Needs root (or sudo) for the iptables rule, which matches only 127.10.0.80:80.
# Safe to re-run: it stops what an earlier run left behind (processes and the rule), and
# everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ONCE=0
for arg in "$@"; do
  case "$arg" in
    --once) ONCE=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "demo: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

XDS_PORT=15010
DEBUG_PORT=15014
BACKENDS=("echo-v1:18081" "echo-v2:18082")
TARGET=xds:///echo.default.svc.cluster.local:7070
NODE_ID="sidecar~127.0.0.1~demo-client.default~default.svc.cluster.local"
WEB_BACKENDS=("web-v1:18090" "web-v2:18092")
WEB_IP=127.10.0.80  # the web Service's clusterIP in examples/services.yaml
PROXY_ADMIN_PORT=15000
PROXY_OUTBOUND_PORT=15001
PROXY_NODE_ID="sidecar~127.0.0.3~web-client.default~default.svc.cluster.local"
# DEMO_BUILD_DIR: use that (already configured) build tree and skip setup (the ctest "demo").
BIN=${DEMO_BUILD_DIR:-build/release}
MESHPILOT=$BIN/controlplane/meshpilot
MESHPROXY=$BIN/sidecar/meshproxy
ECHO_SERVER=$BIN/tests/conformance/echo_server
HTTP_ECHO_SERVER=$BIN/tests/conformance/http_echo_server
CLIENT=$BIN/tests/conformance/xds_echo_client
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
# istio-iptables' outbound capture, narrowed to the one Service the demo calls.
CAPTURE_RULE=(OUTPUT -p tcp -d "$WEB_IP/32" --dport 80 -m comment --comment meshpilot-demo
              -j REDIRECT --to-ports "$PROXY_OUTBOUND_PORT")
DEMO_DIR=build/demo
PIDS_FILE=$DEMO_DIR/pids

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

# Whether pid is a live process; an exited child whose parent is gone may stay a zombie.
running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

# Stops one process we started, if it is still the binary we started (pids get reused).
stop_pid() {
  local pid=$1 exe=$2
  [ -n "$pid" ] && running "$pid" || return 0
  local running
  running=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 0
  # A rebuilt binary shows as "PATH (deleted)" in a process started from the old one.
  if [ -n "$exe" ] && [ "${running% (deleted)}" != "$(readlink -f "$exe")" ]; then
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do running "$pid" || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

remove_capture() {
  while $SUDO iptables -t nat -C "${CAPTURE_RULE[@]}" 2>/dev/null; do
    $SUDO iptables -t nat -D "${CAPTURE_RULE[@]}"
  done
}

# Leftovers of an earlier run that did not get to clean up (kill -9, closed terminal...).
stop_leftovers() {
  remove_capture
  [ -f "$PIDS_FILE" ] || return 0
  while read -r pid exe; do stop_pid "$pid" "$exe"; done < "$PIDS_FILE"
  rm -f "$PIDS_FILE"
}

CHILDREN=()
start() {  # start LOG EXE ARGS...: runs EXE in the background, output in LOG
  local log=$1; shift
  "$@" >"$log" 2>&1 &
  local pid=$!
  CHILDREN+=("$pid:$1")
  echo "$pid $(readlink -f "$1")" >>"$PIDS_FILE"
  LAST_PID=$pid
}

cleanup() {
  trap - EXIT
  # A second signal (a second Ctrl-C; timeout signals the whole group too) must not cut the
  # cleanup short.
  trap '' INT TERM
  local i
  for ((i = ${#CHILDREN[@]} - 1; i >= 0; i--)); do
    stop_pid "${CHILDREN[i]%%:*}" "${CHILDREN[i]#*:}"
  done
  remove_capture
  rm -f "$PIDS_FILE"
}

port_busy() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

# wait_for SECONDS COMMAND...: polls COMMAND every 0.1 s; fails after SECONDS.
wait_for() {
  local seconds=$1; shift
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}

alive_and_logged() { running "$1" && grep -q "^listening on " "$2"; }
ready() { curl -fsS -o /dev/null "http://127.0.0.1:$DEBUG_PORT/ready" 2>/dev/null; }
proxy_ready() { curl -fsS -o /dev/null "http://127.0.0.1:$PROXY_ADMIN_PORT/ready" 2>/dev/null; }
# web_get [CURL ARGS...]: one request to http://web/ through meshproxy; prints the body.
web_get() { curl -fsS --noproxy '*' --max-time 5 -H 'Host: web' "$@" "http://$WEB_IP/hello"; }
backend_of() { sed -n 's/.*"backend":"\([^"]*\)".*/\1/p'; }

# ----- build

if [ -z "${DEMO_BUILD_DIR:-}" ]; then
  say "setup (packages, protos)"
  scripts/setup.sh
  if [ ! -f $BIN/CMakeCache.txt ] || [ ! -f $BIN/build.ninja ]; then
    say "configure"
    cmake --preset release
  fi
fi
say "build meshpilot meshproxy echo_server http_echo_server xds_echo_client"
cmake --build $BIN --target meshpilot meshproxy echo_server http_echo_server xds_echo_client
command -v iptables >/dev/null || die "iptables is missing (scripts/setup.sh installs it)"

# ----- run

mkdir -p "$DEMO_DIR"
stop_leftovers
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for port in $XDS_PORT $DEBUG_PORT ${BACKENDS[@]#*:} ${WEB_BACKENDS[@]#*:} \
    $PROXY_ADMIN_PORT $PROXY_OUTBOUND_PORT; do
  if port_busy "$port"; then
    ss -Hltnp "sport = :$port" >&2 || true
    die "port $port is in use by another process; stop it and re-run"
  fi
done

# start_backend KIND EXE NAME:PORT: a backend answering with its name, on loopback.
start_backend() {
  local name=${3%%:*} port=${3#*:}
  say "$1 backend $name on 127.0.0.1:$port"
  start "$DEMO_DIR/$name.log" "$2" --host 127.0.0.1 --port "$port" --name "$name"
  wait_for 10 alive_and_logged "$LAST_PID" "$DEMO_DIR/$name.log" ||
    { cat "$DEMO_DIR/$name.log" >&2; die "backend $name did not start"; }
}
for backend in "${BACKENDS[@]}"; do start_backend gRPC "$ECHO_SERVER" "$backend"; done
for backend in "${WEB_BACKENDS[@]}"; do start_backend HTTP "$HTTP_ECHO_SERVER" "$backend"; done

say "meshpilot on examples/ (xDS :$XDS_PORT, debug :$DEBUG_PORT)"
start "$DEMO_DIR/meshpilot.log" "$MESHPILOT" --config-dir examples \
  --xds-port "$XDS_PORT" --debug-port "$DEBUG_PORT"
MESHPILOT_PID=$LAST_PID
if ! wait_for 30 ready; then
  tail -n 50 "$DEMO_DIR/meshpilot.log" >&2
  die "meshpilot did not become ready on http://127.0.0.1:$DEBUG_PORT/ready within 30s"
fi

cat >"$DEMO_DIR/bootstrap.json" <<EOF
{
  "xds_servers": [{
    "server_uri": "127.0.0.1:$XDS_PORT",
    "channel_creds": [{"type": "insecure"}],
    "server_features": ["xds_v3"]
  }],
  "node": {
    "id": "$NODE_ID",
    "metadata": {"GENERATOR": "grpc", "NAMESPACE": "default"},
    "locality": {}
  }
}
EOF
export GRPC_XDS_BOOTSTRAP=$ROOT/$DEMO_DIR/bootstrap.json

say "20 calls to $TARGET through gRPC's xDS client"
client_rc=0
timeout 60 "$CLIENT" --target "$TARGET" --count 20 --interval_ms 50 --timeout_ms 5000 \
  | tee "$DEMO_DIR/client.log" || client_rc=$?
say "calls per backend"
awk '$1 == "ok" { n[$2]++ } $1 == "error" { n["(error " $2 ")"]++ }
     END { for (b in n) printf "  %-24s %d\n", b, n[b] }' "$DEMO_DIR/client.log" | sort
if [ "$client_rc" -ne 0 ]; then
  echo "demo: the client run failed (exit $client_rc); meshpilot log: $DEMO_DIR/meshpilot.log" >&2
  echo "      retry with GRPC_TRACE=xds_client GRPC_VERBOSITY=debug for the client's xDS trace" >&2
  exit "$client_rc"
fi

say "meshproxy (node $PROXY_NODE_ID), config from meshpilot over ADS"
start "$DEMO_DIR/meshproxy.log" "$MESHPROXY" --xds-address "127.0.0.1:$XDS_PORT" \
  --node-id "$PROXY_NODE_ID" --admin-port "$PROXY_ADMIN_PORT" --readiness-port 0 --concurrency 1
MESHPROXY_PID=$LAST_PID
wait_for 30 proxy_ready ||
  { tail -n 50 "$DEMO_DIR/meshproxy.log" >&2; die "meshproxy did not get its config within 30s"; }
say "capture: iptables -t nat -A ${CAPTURE_RULE[*]}"
$SUDO iptables -t nat -A "${CAPTURE_RULE[@]}"
# Routes (RDS) may arrive just after /ready: wait for the first routed answer.
wait_for 30 web_get -o /dev/null ||
  { tail -n 50 "$DEMO_DIR/meshproxy.log" >&2; die "http://web/ through meshproxy did not answer within 30s"; }

say "GET http://web/hello (to $WEB_IP:80, through meshproxy): what the backend received"
web_get >"$DEMO_DIR/web-sample.json"
python3 -m json.tool "$DEMO_DIR/web-sample.json"
grep -q '"x-request-id"' "$DEMO_DIR/web-sample.json" ||
  die "the request did not go through meshproxy (no x-request-id reached the backend)"

say "20 requests: the canary route splits 80/20 between web-v1 and web-v2"
: >"$DEMO_DIR/web-canary.log"
for _ in $(seq 20); do web_get | backend_of >>"$DEMO_DIR/web-canary.log" || die "a request failed"; done
say "5 requests with end-user: jason: the test-user route sends them all to web-v2"
: >"$DEMO_DIR/web-jason.log"
for _ in $(seq 5); do
  web_get -H 'end-user: jason' | backend_of >>"$DEMO_DIR/web-jason.log" || die "a request failed"
done
say "requests per backend"
for log in canary jason; do
  sort "$DEMO_DIR/web-$log.log" | uniq -c | awk -v l="$log" '{ printf "  %-8s %-10s %d\n", l, $2, $1 }'
done
rss_kib=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$MESHPROXY_PID/status")
awk -v k="$rss_kib" 'BEGIN { printf "  meshproxy RSS: %.1f MiB\n", k / 1024 }'
# Issue 4's target: under 20 MB (19,531 KiB) with the demo config. Not for sanitizer builds,
# whose shadow memory counts in RSS.
if ! readelf -d "$MESHPROXY" | grep -q 'libasan'; then
  [ "$rss_kib" -lt 19531 ] || die "meshproxy's RSS is $rss_kib KiB, over 20 MB"
fi
[ "$(grep -cxE 'web-v[12]' "$DEMO_DIR/web-canary.log")" -eq 20 ] ||
  die "some canary requests were not answered by web-v1 or web-v2"
[ "$(grep -cx web-v2 "$DEMO_DIR/web-jason.log")" -eq 5 ] ||
  die "end-user: jason requests must all reach web-v2"

if [ "$ONCE" -eq 1 ]; then
  say "ok (--once)"
  exit 0
fi

# A client that stays connected, so the per-proxy debug pages have a proxy to show.
start "$DEMO_DIR/client-live.log" "$CLIENT" --target "$TARGET" --count 1000000000 \
  --interval_ms 1000 --timeout_ms 5000

D=http://127.0.0.1:$DEBUG_PORT
cat <<EOF

meshpilot is serving examples/ (edit the YAML there: clients follow within a second).
A client ($NODE_ID) calls once a second: $DEMO_DIR/client-live.log

  $D/ready
  $D/metrics
  $D/debug/syncz
  $D/debug/config_dump?proxyID=$NODE_ID
  $D/debug/registryz
  $D/debug/endpointz
  $D/debug/configz
  $D/debug/adsz

Call it yourself:
  GRPC_XDS_BOOTSTRAP=$ROOT/$DEMO_DIR/bootstrap.json $ROOT/$CLIENT --target $TARGET --count 10

meshproxy ($PROXY_NODE_ID) carries HTTP to web (cluster IP $WEB_IP, captured by iptables):
  curl -H 'Host: web' http://$WEB_IP/hello
  curl -H 'Host: web' -H 'end-user: jason' http://$WEB_IP/hello
  http://127.0.0.1:$PROXY_ADMIN_PORT/config_dump
  http://127.0.0.1:$PROXY_ADMIN_PORT/clusters
  http://127.0.0.1:$PROXY_ADMIN_PORT/stats

Logs in $DEMO_DIR/. Ctrl-C stops everything.
EOF

# Returns when meshpilot exits (or on Ctrl-C, through the traps).
set +e
wait "$MESHPILOT_PID"
rc=$?
echo "demo: meshpilot exited ($rc); see $DEMO_DIR/meshpilot.log" >&2
exit "$rc"
