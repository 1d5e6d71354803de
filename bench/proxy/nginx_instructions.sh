#!/usr/bin/env bash
# nginx's user-space instructions per proxied HTTP/1.1 request, counted by callgrind: the
# reference for instructions.sh's meshproxy figure. nginx proxies as in run.sh (one worker,
# keep-alive upstream to an nginx origin answering 128 bytes), with `master_process off` so
# that callgrind sees the process that serves; h2load sends RATE requests/s on one connection
# (as instructions.sh does for meshproxy). Run by hand, as root:
#
#   bash bench/proxy/nginx_instructions.sh
#
# Its own network namespace, so the fixed ports below are its own. Needs valgrind, nginx and
# h2load (nghttp2-client).
set -euo pipefail

RATE=${RATE:-200}
DURATION=${DURATION:-5}
for tool in valgrind nginx h2load; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
[[ $(id -u) == 0 ]] || { echo "run as root: it uses unshare" >&2; exit 1; }
if [[ -z ${IN_NETNS:-} ]]; then
  IN_NETNS=1 exec unshare --net -- sh -c 'ip link set lo up && exec bash "$0" "$@"' "$0" "$@"
fi

WORK=$(mktemp -d /tmp/nginx-instructions.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; wait; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/tmp"
BODY=$(head -c 127 /dev/zero | tr '\0' x)
# conf FILE MASTER HTTP_BLOCK
conf() {
  cat >"$1" <<CONF
master_process $2;
worker_processes 1;
daemon off;
pid $1.pid;
error_log stderr warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  client_body_temp_path $WORK/tmp; proxy_temp_path $WORK/tmp; fastcgi_temp_path $WORK/tmp;
  uwsgi_temp_path $WORK/tmp; scgi_temp_path $WORK/tmp;
  $3
}
CONF
}
conf "$WORK/origin.conf" on "server { listen 127.0.0.1:18090;
  location / { default_type text/plain; return 200 \"$BODY\\n\"; } }"
conf "$WORK/proxy.conf" off "upstream origin { server 127.0.0.1:18090; keepalive 256; }
  server { listen 127.0.0.1:18100; location / { proxy_pass http://origin;
    proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"

nginx -e stderr -c "$WORK/origin.conf" &
valgrind -q --tool=callgrind --callgrind-out-file="$WORK/callgrind.%p" \
  nginx -e stderr -c "$WORK/proxy.conf" &
PROXY=$!
URL=http://127.0.0.1:18100/
for _ in $(seq 100); do curl -fsS -o /dev/null "$URL" 2>/dev/null && break; sleep 0.2; done
h2load --h1 -t1 -c1 -m1 --rps="$RATE" -D3 "$URL" >/dev/null  # warm-up, not counted
callgrind_control -z "$PROXY" >/dev/null 2>&1
REQUESTS=$(h2load --h1 -t1 -c1 -m1 --rps="$RATE" -D"$DURATION" "$URL" |
  awk '/^requests:/ { print $8 }')  # succeeded
callgrind_control -d "$PROXY" >/dev/null 2>&1
sleep 1
TOTAL=$(awk '/^summary:/ { print $2 }' "$WORK"/callgrind.*.1)
printf 'nginx instructions/rq %s (%s requests)\n' "$((TOTAL / REQUESTS))" "$REQUESTS"
