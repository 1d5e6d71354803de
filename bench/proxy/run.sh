#!/usr/bin/env bash
# Proxy benchmark: meshproxy against nginx and haproxy (Debian's) as reverse proxies in front of
# the same origin, plus a direct connection to it, in one run, side by side. Run by hand (not a
# test), as root:
#
#   bash bench/proxy/run.sh                          # 1 worker each, 10 s per measurement
#   WORKERS=2 DURATION=20 bash bench/proxy/run.sh
#   KEEP=/tmp/proxy-bench bash bench/proxy/run.sh    # keep results.jsonl, configs and logs
#
# Needs build/release/controlplane/meshpilot and build/release/sidecar/meshproxy
# (cmake --build build/release --target meshpilot meshproxy); installs wrk, nghttp2-client
# (h2load), nginx, haproxy and iptables if missing.
#
# Everything runs in a private network namespace on loopback (the script re-runs itself under
# `unshare --net`), so the fixed ports below are its own. meshproxy is a sidecar as Istio runs
# one: meshpilot serves it a folder of YAML over xDS (Service `origin`, cluster IP 127.0.0.80,
# port 80 `http`), and istio-iptables' capture (nat OUTPUT REDIRECT to 15001) sends the load
# generator's connections to 127.0.0.80:80 into virtualOutbound, which hands them to the
# 0.0.0.0_80 listener and routes them by Host to outbound|80||origin.default.svc.cluster.local.
# (CAPTURE=ebpf: meshproxy-capture's programs do it instead, without NAT.) nginx and haproxy
# listen on plain ports. Every proxy speaks HTTP/1.1 with keep-alive to the
# origin, whichever protocol the client speaks.
#
# Per target and protocol (wrk and h2load --h1 for HTTP/1.1, h2load for h2c prior knowledge):
# fixed rates (RATES, h2load --rps, RATE_PER_CLIENT on each connection; Debian's wrk has no
# -R) and saturation (wrk / h2load, SAT_CLIENTS connections). Latency percentiles come from h2load's
# per-request log and from wrk's histogram. CPU: the proxy runs on PROXY_CPUS, the load
# generator and the origin on LOAD_CPUS (taskset), all at nice NICE (-20).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORKERS=${WORKERS:-1}               # meshproxy --concurrency, nginx worker_processes, haproxy nbthread
DURATION=${DURATION:-10}            # seconds per measurement, after WARMUP
WARMUP=${WARMUP:-1}
RATES=${RATES:-"1000 10000"}        # fixed request rates, requests/s
# Requests/s per connection at fixed rates: 1k requests/s is one connection, 10k ten. (h2load
# with many slow connections adds ~1 ms of its own to every request.)
RATE_PER_CLIENT=${RATE_PER_CLIENT:-1000}
SAT_CLIENTS=${SAT_CLIENTS:-64}      # connections for saturation runs
H2_STREAMS=${H2_STREAMS:-10}        # h2load -m at saturation
# Rounds over TARGETS: with more than one, the targets take turns (meshproxy, nginx, meshproxy,
# ...), so that the ratios report.py gives are between measurements seconds apart, and their
# median is taken: a machine whose speed drifts from minute to minute moves them less.
ROUNDS=${ROUNDS:-1}
TARGETS=${TARGETS:-"direct meshproxy nginx haproxy"}
SATURATION=${SATURATION:-1}         # 0: fixed rates only
# A command run in the background during each proxy's measurements, with PROBE_PID (its
# pid), PROBE_OUT (a path prefix for its output, kept with KEEP) and PROBE_SECONDS (DURATION)
# in its environment: bench/proxy/per_request.sh attaches strace and perf this way.
PROBE=${PROBE:-}
# 1: nginx and haproxy add the request headers meshproxy adds as an Istio sidecar
# (x-request-id, x-forwarded-proto, x-envoy-peer-metadata-id, x-envoy-peer-metadata; the
# metadata value is the one meshproxy sends, read back through the origin's /peer), so that
# the origin parses request heads of the same size from every proxy.
# fixed: the same, but their x-request-id is a constant rather than one generated per request
# (nginx's $request_id, haproxy's uuid()), to tell the cost of the headers from the cost of
# generating ids.
LIKE_ISTIO=${LIKE_ISTIO:-0}
# 1: the load generator reaches nginx and haproxy through a nat REDIRECT too (from addresses of
# their own, 127.0.0.81 and .82, port 80 for HTTP/1.1 and 81 for h2c), as it reaches meshproxy
# through istio-iptables' capture, so that every proxy's client connections cost the kernel the
# same NAT work (measured: 1.4 µs of nginx's CPU per request). 0: they listen on plain ports.
CAPTURE_ALL=${CAPTURE_ALL:-0}
# How the load generator's connections reach meshproxy: iptables (istio-iptables' nat REDIRECT;
# it turns conntrack on in the namespace, for every proxy's connections) or ebpf
# (meshproxy-capture attached to a cgroup holding meshproxy and the load generator: no NAT, no
# conntrack; nginx, haproxy and the origin run outside it).
CAPTURE=${CAPTURE:-iptables}
PROXY_CPUS=${PROXY_CPUS:-0}
LOAD_CPUS=${LOAD_CPUS:-1}
# Every process of the benchmark runs at this niceness: on a machine shared with compiles, the
# figures should be the proxies', not the scheduler's (0 to run at the normal priority).
NICE=${NICE:--20}
BUILD=${BUILD:-$ROOT/build/release}
MESHPILOT=$BUILD/controlplane/meshpilot
MESHPROXY=$BUILD/sidecar/meshproxy
MESHPROXY_CAPTURE=$BUILD/sidecar/meshproxy-capture
IN_NETNS=MESHPILOT_PROXY_BENCH_NETNS
case $CAPTURE in
  iptables) ;;
  ebpf) [[ $CAPTURE_ALL == 0 ]] || { echo "CAPTURE_ALL=1 needs CAPTURE=iptables" >&2; exit 1; } ;;
  *) echo "CAPTURE=$CAPTURE: iptables or ebpf" >&2; exit 1 ;;
esac

if [[ ${!IN_NETNS:-} != 1 ]]; then
  for binary in "$MESHPILOT" "$MESHPROXY" $([[ $CAPTURE == ebpf ]] && echo "$MESHPROXY_CAPTURE"); do
    [[ -x $binary ]] || { echo "missing $binary: cmake --build build/release --target meshpilot meshproxy meshproxy-capture" >&2; exit 1; }
  done
  [[ $(id -u) == 0 ]] || { echo "run as root: it installs packages and uses unshare and iptables" >&2; exit 1; }
  missing=()
  for tool in wrk:wrk h2load:nghttp2-client nginx:nginx haproxy:haproxy iptables:iptables \
              unshare:util-linux taskset:util-linux ip:iproute2; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
  done
  if ((${#missing[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  export "$IN_NETNS=1"
  exec unshare --net -- sh -c 'ip link set lo up && exec bash "$0" "$@"' "$0" "$@"
fi

WORK=$(mktemp -d /tmp/meshproxy-bench.XXXXXX)
PIDS=()
POD_CGROUP=     # CAPTURE=ebpf: the cgroup meshproxy-capture is attached to,
OTHER_CGROUP=   # its sibling, where the origin, nginx and haproxy run,
OUTER_CGROUP=   # and the one this script started in
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ -n $POD_CGROUP ]]; then
    echo $$ >"$OUTER_CGROUP/cgroup.procs"
    # Removing the pod's cgroup detaches the programs.
    rmdir "$POD_CGROUP" "$OTHER_CGROUP" ||
      echo "warning: $POD_CGROUP or $OTHER_CGROUP is left (a process still in it?)" >&2
  fi
  if [[ -n ${KEEP:-} ]]; then mkdir -p "$KEEP" && cp -r "$WORK"/. "$KEEP"/ 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
# Private copies: a rebuild in the tree during the run must not swap the binaries under it.
cp "$MESHPILOT" "$WORK/meshpilot" && MESHPILOT=$WORK/meshpilot
cp "$MESHPROXY" "$WORK/meshproxy" && MESHPROXY=$WORK/meshproxy

ORIGIN_H1=18090
ORIGIN_H2=18091
NGINX_H1=18100
NGINX_H2=18101
HAPROXY_H1=18110
HAPROXY_H2=18111
CLUSTER_IP=127.0.0.80
# Every target by protocol: the URL the load generator uses.
declare -A URL=(
  [direct:h1]=http://127.0.0.1:$ORIGIN_H1/ [direct:h2]=http://127.0.0.1:$ORIGIN_H2/
  [meshproxy:h1]=http://$CLUSTER_IP/ [meshproxy:h2]=http://$CLUSTER_IP/
  [nginx:h1]=http://127.0.0.1:$NGINX_H1/ [nginx:h2]=http://127.0.0.1:$NGINX_H2/
  [haproxy:h1]=http://127.0.0.1:$HAPROXY_H1/ [haproxy:h2]=http://127.0.0.1:$HAPROXY_H2/
)
if [[ $CAPTURE_ALL == 1 ]]; then
  URL[nginx:h1]=http://127.0.0.81:80/ URL[nginx:h2]=http://127.0.0.81:81/
  URL[haproxy:h1]=http://127.0.0.82:80/ URL[haproxy:h2]=http://127.0.0.82:81/
fi
# redirect URL PORT: a nat REDIRECT of URL's address and port to PORT on loopback.
redirect() {
  local hostport=${1#http://}
  hostport=${hostport%/}
  iptables -t nat -A OUTPUT -p tcp -d "${hostport%:*}/32" --dport "${hostport#*:}" \
    -j REDIRECT --to-ports "$2"
}
declare -A PID_OF   # target -> pids whose RSS and CPU count (nginx: master and workers)

# CAPTURE=ebpf: the pod's cgroup (v2), with meshproxy-capture's programs attached, is where this
# script runs from the start of meshproxy on, and so meshproxy and the load generator with it.
# Until then it runs in a sibling cgroup (so that a cgroup CPU controller, if any, weighs both
# sides alike), where OUTSIDE_POD runs a command later: nginx and haproxy.
OUTSIDE_POD=()
if [[ $CAPTURE == ebpf ]]; then
  cgroup_root=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
  [[ -n $cgroup_root ]] || { echo "CAPTURE=ebpf needs a cgroup v2 hierarchy" >&2; exit 1; }
  OUTER_CGROUP=$cgroup_root$(sed -n 's/^0:://p' /proc/self/cgroup)
  POD_CGROUP=$(mktemp -d "$cgroup_root/meshproxy-bench-pod.XXXXXX")
  OTHER_CGROUP=$(mktemp -d "$cgroup_root/meshproxy-bench-other.XXXXXX")
  echo $$ >"$OTHER_CGROUP/cgroup.procs"
  OUTSIDE_POD=(sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$OTHER_CGROUP")
fi

# pinned CPUS COMMAND...: COMMAND on CPUS, ahead of the machine's other work (NICE).
pinned() {
  local cpus=$1; shift
  nice -n "$NICE" taskset -c "$cpus" "$@"
}
# start LOG CPUS COMMAND...: runs COMMAND pinned to CPUS in the background.
start() {
  local log=$1 cpus=$2; shift 2
  # Not through pinned(): a backgrounded function is a subshell, and $! must be COMMAND itself
  # (nice and taskset exec it) for its RSS and CPU to be read.
  nice -n "$NICE" taskset -c "$cpus" "$@" >"$log" 2>&1 &
  PIDS+=($!)
  LAST_PID=$!
}
wait_for() {  # wait_for SECONDS COMMAND...
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}
# sum_procs PID FILE AWK: AWK's number from /proc/P/FILE, summed over PID and its children
# (nginx runs a master and its workers; the rest are single processes).
sum_procs() {
  local pid
  for pid in $(pgrep -d' ' -P "$1" 2>/dev/null) "$1"; do awk "$3" "/proc/$pid/$2"; done |
    awk '{ total += $1 } END { print total + 0 }'
}
rss_kib() { sum_procs "$1" status '$1 == "VmRSS:" { print $2 }'; }
# cpu_ns PID: nanoseconds on a CPU, every thread of PID and its children, as the scheduler
# counts them (/proc/P/task/T/schedstat). /proc/P/stat's user and system times are tick
# samples, which charge a whole tick to whatever runs when it fires: a proxy that sleeps and
# wakes thousands of times a second came out near a whole core while perf found its CPU idle
# 17 % of the time.
cpu_ns() {
  local pid
  for pid in $(pgrep -d' ' -P "$1" 2>/dev/null) "$1"; do
    cat /proc/"$pid"/task/*/schedstat 2>/dev/null || true  # a thread may exit meanwhile
  done | awk '{ total += $1 } END { printf "%.0f\n", total }'
}

# nginx_conf FILE WORKERS HTTP_BLOCK: an nginx config (foreground, no access log, keep-alive
# connections that stay open for the whole run) with HTTP_BLOCK inside its http block.
nginx_conf() {
  cat >"$1" <<CONF
worker_processes $2;
daemon off;
pid $1.pid;
error_log stderr warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  http2_max_requests 100000000;
  client_body_temp_path $WORK/tmp; proxy_temp_path $WORK/tmp; fastcgi_temp_path $WORK/tmp;
  uwsgi_temp_path $WORK/tmp; scgi_temp_path $WORK/tmp;
$3
}
CONF
}

# ----- the origin: nginx answering a fixed 128-byte body, HTTP/1.1 and h2c (prior knowledge)
BODY=$(head -c 127 /dev/zero | tr '\0' x)
nginx_conf "$WORK/origin.conf" 1 "
  server {
    listen 127.0.0.1:$ORIGIN_H1;
    listen 127.0.0.1:$ORIGIN_H2 http2;
    location / { default_type text/plain; return 200 \"$BODY\\n\"; }
    location = /peer { default_type text/plain; return 200 \"\$http_x_envoy_peer_metadata\"; }
  }"
mkdir -p "$WORK/tmp"
start "$WORK/origin.log" "$LOAD_CPUS" nginx -e stderr -c "$WORK/origin.conf"
ORIGIN_PID=$LAST_PID
wait_for 10 curl -fsS "${URL[direct:h1]}" || { cat "$WORK/origin.log" >&2; exit 1; }
PID_OF[direct]=$ORIGIN_PID

# ----- meshproxy, configured by meshpilot over xDS
mkdir -p "$WORK/mesh"
cat >"$WORK/mesh/mesh.yaml" <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: default}
---
apiVersion: v1
kind: Service
metadata: {name: origin, namespace: default}
spec:
  clusterIP: $CLUSTER_IP
  selector: {app: origin}
  ports: [{name: http, port: 80, targetPort: $ORIGIN_H1, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: origin-1
  namespace: default
  labels: {kubernetes.io/service-name: origin}
addressType: IPv4
ports: [{name: http, port: $ORIGIN_H1, protocol: TCP}]
endpoints: [{addresses: [127.0.0.1], conditions: {ready: true}}]
YAML
if [[ " $TARGETS " == *" meshproxy "* ]]; then
  start "$WORK/meshpilot.log" "$LOAD_CPUS" "$MESHPILOT" --config-dir "$WORK/mesh" \
    --xds-port 15010 --debug-port 15014
  wait_for 30 curl -fsS http://127.0.0.1:15014/ready || { cat "$WORK/meshpilot.log" >&2; exit 1; }
  if [[ $CAPTURE == ebpf ]]; then
    # The same capture by meshproxy-capture (127.0.0.0/8 is left alone unless included).
    "$MESHPROXY_CAPTURE" attach --cgroup "$POD_CGROUP" --include "$CLUSTER_IP/32"
    echo $$ >"$POD_CGROUP/cgroup.procs"
  else
    # istio-iptables' outbound capture, limited to the Service's cluster IP.
    iptables -t nat -A OUTPUT -p tcp -d "$CLUSTER_IP/32" -j REDIRECT --to-ports 15001
  fi
  start "$WORK/meshproxy.log" "$PROXY_CPUS" "$MESHPROXY" --xds-address 127.0.0.1:15010 \
    --node-id "sidecar~127.0.0.2~bench-client.default~default.svc.cluster.local" \
    --concurrency "$WORKERS" --log-level warn
  PID_OF[meshproxy]=$LAST_PID
  wait_for 30 curl -fsS "${URL[meshproxy:h1]}" || { cat "$WORK/meshproxy.log" >&2; exit 1; }
fi

# ----- the request headers of an Istio sidecar for nginx and haproxy (LIKE_ISTIO=1)
NGINX_ISTIO_HEADERS=
HAPROXY_ISTIO_HEADERS=
if [[ $LIKE_ISTIO == 1 || $LIKE_ISTIO == fixed ]]; then
  PEER_ID="sidecar~127.0.0.2~bench-client.default~default.svc.cluster.local"
  NGINX_REQUEST_ID='$request_id'
  HAPROXY_REQUEST_ID='%[uuid()]'
  if [[ $LIKE_ISTIO == fixed ]]; then
    NGINX_REQUEST_ID=6f1f3c1e-8a0b-4c7e-9a55-2c1d6b7e9f00
    HAPROXY_REQUEST_ID=$NGINX_REQUEST_ID
  fi
  if [[ " $TARGETS " == *" meshproxy "* ]]; then
    PEER_METADATA=$(curl -fsS "http://$CLUSTER_IP/peer")
    [[ -n $PEER_METADATA ]] || { echo "meshproxy sent no x-envoy-peer-metadata" >&2; exit 1; }
  else
    PEER_METADATA=$(head -c 234 /dev/zero | tr '\0' A | base64 -w0)  # the same length
  fi
  NGINX_ISTIO_HEADERS="
      proxy_set_header x-request-id $NGINX_REQUEST_ID;
      proxy_set_header x-forwarded-proto \$scheme;
      proxy_set_header x-envoy-peer-metadata-id \"$PEER_ID\";
      proxy_set_header x-envoy-peer-metadata \"$PEER_METADATA\";"
  HAPROXY_ISTIO_HEADERS="
  unique-id-format $HAPROXY_REQUEST_ID
  http-request set-header x-request-id %[unique-id]
  http-request set-header x-forwarded-proto http
  http-request set-header x-envoy-peer-metadata-id $PEER_ID
  http-request set-header x-envoy-peer-metadata $PEER_METADATA"
fi

# ----- nginx as a reverse proxy
nginx_conf "$WORK/nginx.conf" "$WORKERS" "
  upstream origin {
    server 127.0.0.1:$ORIGIN_H1;
    keepalive 256;
    keepalive_requests 100000000;
  }
  server {
    listen 127.0.0.1:$NGINX_H1;
    listen 127.0.0.1:$NGINX_H2 http2;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
$NGINX_ISTIO_HEADERS
    }
  }"
if [[ " $TARGETS " == *" nginx "* ]]; then
  if [[ $CAPTURE_ALL == 1 ]]; then
    redirect "${URL[nginx:h1]}" "$NGINX_H1" && redirect "${URL[nginx:h2]}" "$NGINX_H2"
  fi
  start "$WORK/nginx.log" "$PROXY_CPUS" "${OUTSIDE_POD[@]}" nginx -e stderr -c "$WORK/nginx.conf"
  PID_OF[nginx]=$LAST_PID
  wait_for 10 curl -fsS "${URL[nginx:h1]}" || { cat "$WORK/nginx.log" >&2; exit 1; }
fi

# ----- haproxy as a reverse proxy
cat >"$WORK/haproxy.cfg" <<CONF
global
  nbthread $WORKERS
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
frontend bench
  bind 127.0.0.1:$HAPROXY_H1
  bind 127.0.0.1:$HAPROXY_H2 proto h2
  default_backend origin$HAPROXY_ISTIO_HEADERS
backend origin
  http-reuse always
  server origin 127.0.0.1:$ORIGIN_H1
CONF
if [[ " $TARGETS " == *" haproxy "* ]]; then
  if [[ $CAPTURE_ALL == 1 ]]; then
    redirect "${URL[haproxy:h1]}" "$HAPROXY_H1" && redirect "${URL[haproxy:h2]}" "$HAPROXY_H2"
  fi
  start "$WORK/haproxy.log" "$PROXY_CPUS" "${OUTSIDE_POD[@]}" haproxy -db -f "$WORK/haproxy.cfg"
  PID_OF[haproxy]=$LAST_PID
  wait_for 10 curl -fsS "${URL[haproxy:h1]}" || { cat "$WORK/haproxy.log" >&2; exit 1; }
fi

RESULTS=$WORK/results.jsonl
: >"$RESULTS"

# record TARGET PROTO LOAD JSON PROXY_CPU_NS ORIGIN_CPU_NS SECONDS RSS_KIB: one result line.
record() {
  python3 - "$@" >>"$RESULTS" <<'PY'
import json, sys
target, proto, load, result, proxy_ns, origin_ns, seconds, rss, round_ = sys.argv[1:]
line = json.loads(result)
line.update(target=target, proto=proto, load=load, rss_kib=int(rss), round=int(round_),
            proxy_cpu=round(int(proxy_ns) / 1e9 / float(seconds), 3),
            origin_cpu=round(int(origin_ns) / 1e9 / float(seconds), 3))
print(json.dumps(line))
PY
}

# measure TARGET PROTO LOAD: one measurement; LOAD is a rate (requests/s) or "max".
measure() {
  local target=$1 proto=$2 load=$3 url=${URL[$1:$2]} pid=${PID_OF[$1]} out result
  local p0 o0 p1 o1
  out=$WORK/$target-$proto-$load
  if ((ROUND > 1)); then out+=.r$ROUND; fi
  p0=$(cpu_ns "$pid"); o0=$(cpu_ns "$ORIGIN_PID")
  local probe=
  if [[ -n $PROBE ]]; then
    PROBE_PID=$pid PROBE_OUT=$out PROBE_SECONDS=$DURATION WARMUP=$WARMUP bash -c "$PROBE" &
    probe=$!
  fi
  if [[ $proto == h1 && $load == max ]]; then
    pinned "$LOAD_CPUS" wrk -t1 -c"$SAT_CLIENTS" -d"$((WARMUP + DURATION))s" --latency \
      -s "$ROOT/bench/proxy/wrk_report.lua" "$url" >"$out.txt" 2>&1 || true
    result=$(grep '^{' "$out.txt" || echo '{"error": "wrk failed"}')
  else
    local flags=(-t1 -D"$DURATION" --warm-up-time="${WARMUP}s" --log-file="$out.log")
    [[ $proto == h1 ]] && flags+=(--h1)
    if [[ $load == max ]]; then
      flags+=(-c"$SAT_CLIENTS" -m"$H2_STREAMS")
    else
      # --rps is per connection; at most one request in flight per HTTP/1.1 connection.
      local clients=$(((load + RATE_PER_CLIENT - 1) / RATE_PER_CLIENT))
      flags+=(-c"$clients" -m"$([[ $proto == h1 ]] && echo 1 || echo 10)"
              --rps="$(((load + clients - 1) / clients))")
    fi
    pinned "$LOAD_CPUS" h2load "${flags[@]}" "$url" >"$out.txt" 2>&1 || true
    result=$(python3 "$ROOT/bench/proxy/h2load_report.py" "$out.txt" "$out.log" "$WARMUP")
    [[ -n ${KEEP:-} ]] || rm -f "$out.log"
  fi
  if [[ -n $probe ]]; then wait "$probe" || true; fi
  p1=$(cpu_ns "$pid"); o1=$(cpu_ns "$ORIGIN_PID")
  if [[ $target == direct ]]; then p1=$p0; fi
  record "$target" "$proto" "$load" "$result" $((p1 - p0)) $((o1 - o0)) \
    "$((WARMUP + DURATION))" "$(rss_kib "$pid")" "$ROUND"
  echo "  $target $proto $load: $(tail -n1 "$RESULTS" | cut -c1-160)" >&2
}

# Whether TARGET answers h2c with prior knowledge: one request through h2load.
speaks_h2c() {
  h2load -n1 -c1 "${URL[$1:h2]}" 2>&1 | grep -q '1 succeeded'
}

LOADS=$RATES
if [[ $SATURATION == 1 ]]; then LOADS+=" max"; fi
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
  ROUND_NAME=("" ", round $ROUND")
  for target in $TARGETS; do
    echo "== $target${ROUND_NAME[ROUNDS > 1]} (RSS $(($(rss_kib "${PID_OF[$target]}") / 1024)) MiB before load)" >&2
    for load in $LOADS; do measure "$target" h1 "$load"; done
    if speaks_h2c "$target"; then
      for load in $LOADS; do measure "$target" h2 "$load"; done
    else
      echo "  $target does not answer h2c (prior knowledge): h2 rows marked not supported" >&2
      for load in $LOADS; do
        record "$target" h2 "$load" '{"error": "not supported"}' 0 0 1 \
          "$(rss_kib "${PID_OF[$target]}")" "$ROUND"
      done
    fi
  done
done

# ----- the machine's floor: the wake-ups a proxy on its own CPU adds to each request
# (wakeup.c), at the pace of 1,000 requests/s, against the two a direct request has on one CPU.
FLOOR=$WORK/floor.json
# Not with a PROBE (instructions.sh, per_request.sh), and never fatal: the proxies' results
# are what this run is for.
if [[ -n ${RATES// } && -z $PROBE ]]; then
  samples=$((DURATION * 1000))
  if cc -O2 -o "$WORK/wakeup" "$ROOT/bench/proxy/wakeup.c" &&
     across=$(nice -n "$NICE" "$WORK/wakeup" "$LOAD_CPUS" "${PROXY_CPUS%%,*}" "$samples" 1000 4) &&
     within=$(nice -n "$NICE" "$WORK/wakeup" "$LOAD_CPUS" "$LOAD_CPUS" "$samples" 1000 2); then
    echo "{\"across\": $across, \"within\": $within}" >"$FLOOR"
    echo "== floor: 4 wake-ups between CPU $LOAD_CPUS and CPU ${PROXY_CPUS%%,*} $across; 2 on one CPU $within" >&2
  else
    echo "== floor: wakeup.c did not run; no floor line" >&2
  fi
fi

echo >&2
echo "capture $CAPTURE; load generator and origin on CPU $LOAD_CPUS, proxies on CPU $PROXY_CPUS, nice $NICE; $WORKERS worker(s) each;" \
     "${DURATION}s per measurement after ${WARMUP}s warm-up; $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$ROOT/bench/proxy/report.py" "$RESULTS" $([[ -f $FLOOR ]] && echo "$FLOOR")
