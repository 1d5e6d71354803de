"""HTTP/2 and gRPC through meshproxy, with real clients and servers on loopback.

The test ADS server serves one listener (codec_type AUTO, so HTTP/1.1 and h2c prior knowledge
on the same port) with routes to gRPC backends (echo_server, HTTP/2 clusters as meshpilot
emits them) and to an HTTP/1.1 backend. Clients: gRPC's C++ client (xds_echo_client dialling
meshproxy directly), h2load and nghttp (nghttp2-client), curl, and Python's http.client.
"""

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

from harness import (Backend, Child, Children, SharedMeshTest, binary, free_port, pattern_bytes,
                     wait_until, write_resources)
from integration_test import (FAULT, NODE_ID, T, WAIT_S, assignment, eds_cluster, http1_cluster,
                              http_listener, limited_cluster)

HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
ECHO = "/meshpilot.echo.v1.Echo/"


def h2_cluster(name, idle_timeout=None, max_requests_per_connection=None,
               max_connection_duration=None, **http2_options):
    """An HTTP/2 cluster exactly as meshpilot's translator writes one for a grpc port (with
    connectionPool.http.idleTimeout: `idle_timeout`, maxRequestsPerConnection:
    `max_requests_per_connection`, tcp.maxConnectionDuration: `max_connection_duration`)."""
    cluster = eds_cluster(name)
    options = {"@type": T + HTTP_PROTOCOL_OPTIONS,
               "explicit_http_config": {"http2_protocol_options": http2_options}}
    common = {"idle_timeout": idle_timeout,
              "max_requests_per_connection": max_requests_per_connection,
              "max_connection_duration": max_connection_duration}
    if any(common.values()):
        options["common_http_protocol_options"] = {k: v for k, v in common.items() if v}
    cluster["typed_extension_protocol_options"] = {HTTP_PROTOCOL_OPTIONS: options}
    return cluster


def header_route(name, value, action):
    return {"match": {"prefix": ECHO, "headers": [{"name": name,
                                                   "string_match": {"exact": value}}]},
            "route": action}


def routes(weights=(100, 0)):
    grpc_routes = [
        header_route("x-backend", "b", {"cluster": "grpc-b"}),
        header_route("x-route", "retry", {"cluster": "grpc-flaky", "retry_policy": {
            "retry_on": "unavailable", "num_retries": 3,
            "retry_back_off": {"base_interval": "0.01s"}}}),
        header_route("x-route", "none", {"cluster": "grpc-empty"}),
        header_route("x-route", "slow", {"cluster": "grpc-slow", "timeout": "0.3s"}),
        header_route("x-route", "narrow", {"cluster": "grpc-narrow", "timeout": "10s"}),
        header_route("x-route", "idle", {"cluster": "grpc-idle"}),
        header_route("x-route", "max-requests", {"cluster": "grpc-max-requests"}),
        header_route("x-route", "max-duration", {"cluster": "grpc-max-duration"}),
        dict(header_route("x-route", "fault", {"cluster": "grpc-a"}), typed_per_filter_config={
            "envoy.filters.http.fault": {"@type": FAULT, "abort": {
                "grpc_status": 8, "percentage": {"numerator": 100}}}}),
        {"match": {"prefix": ECHO}, "route": {"weighted_clusters": {"clusters": [
            {"name": "grpc-a", "weight": weights[0]}, {"name": "grpc-b", "weight": weights[1]}]}}},
    ]
    web_routes = [{"match": {"prefix": "/redirect"}, "redirect": {"https_redirect": True}},
                  {"match": {"prefix": "/with-trailers/"}, "route": {"cluster": "web-trailers"}},
                  {"match": {"prefix": "/queued/"}, "route": {"cluster": "web-queued"}},
                  {"match": {"prefix": "/rewrite/"}, "route": {"cluster": "web",
                                                              "prefix_rewrite": "/rewritten/"}},
                  {"match": {"prefix": "/"}, "route": {"cluster": "web"},
                   "response_headers_to_add": [{"header": {"key": "x-mesh", "value": "h2"}}]}]
    return {"@type": T + "envoy.config.route.v3.RouteConfiguration", "name": "routes",
            "virtual_hosts": [{"name": "grpc", "domains": ["grpc.test"], "routes": grpc_routes},
                              {"name": "web", "domains": ["web.test"], "routes": web_routes}]}


def grpc_frame(message):
    """A length-prefixed gRPC message holding EchoRequest{message}."""
    data = message.encode()
    proto = b"\x0a" + bytes([len(data)]) + data  # field 1, length-delimited (short strings)
    return b"\x00" + len(proto).to_bytes(4, "big") + proto


def h2_frame(kind, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def h2_get(stream, authority, path, method=b"GET"):
    """HEADERS of a request, HPACK literals without Huffman coding; a GET ends the stream."""
    block = b"".join(b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v for n, v in (
        (b":method", method), (b":scheme", b"http"), (b":path", path), (b":authority", authority)))
    return h2_frame(1, 0x5 if method == b"GET" else 0x4, stream, block)


class H2Client:
    """The frames of a raw HTTP/2 connection as (kind, flags, stream, payload), and request
    bodies sent within the connection's send window, as a client must, reading the peer's
    frames (WINDOW_UPDATE) meanwhile."""

    def __init__(self, sock):
        self.sock, self.window, self.frames, self.data = sock, 65535, [], b""

    def read_some(self):
        """False once the peer closed the connection."""
        chunk = self.sock.recv(65536)
        self.data += chunk
        while len(self.data) >= 9 and len(self.data) >= 9 + int.from_bytes(self.data[:3], "big"):
            n = int.from_bytes(self.data[:3], "big")
            kind, stream, payload = self.data[3], int.from_bytes(self.data[5:9], "big"), self.data[9:9 + n]
            if kind == 8 and stream == 0:
                self.window += int.from_bytes(payload, "big") & 0x7fffffff
            self.frames.append((kind, self.data[4], stream & 0x7fffffff, payload))
            self.data = self.data[9 + n:]
        return bool(chunk)

    def read_until(self, done):
        """Reads until `done(frames)` or the peer closes; the frames."""
        while not done(self.frames) and self.read_some():
            pass
        return self.frames

    def send_body(self, stream, size, end):
        for offset in range(0, size, 16384):
            piece = min(16384, size - offset)
            while self.window < piece:
                if not self.read_some():
                    raise AssertionError("the proxy closed the connection")
            self.window -= piece
            last = end and offset + piece == size
            self.sock.sendall(h2_frame(0, 0x1 if last else 0, stream, b"x" * piece))


def stream_ended(stream):
    return lambda frames: any(s == stream and f & 0x1 and k in (0, 1) for k, f, s, _ in frames)


def goaway(frames):
    """The last-stream-ids of the GOAWAY frames among `frames`, in order."""
    return [int.from_bytes(p[:4], "big") for k, _, _, p in frames if k == 7]


def ended_after_final_goaway(frames, stream):
    """Whether `stream` ended after the second (final) GOAWAY: in flight, it still finished."""
    final = [i for i, (k, _, _, _) in enumerate(frames) if k == 7][1]
    end = next(i for i, (k, f, st, _) in enumerate(frames) if st == stream and f & 0x1 and k in (0, 1))
    return end > final


class EchoServer:
    def __init__(self, name, *flags, port=None):
        self.port = port or free_port()
        self.child = Child(name, [binary("ECHO_SERVER_BIN", "build/release/tests/conformance/echo_server"),
                                  "--port", str(self.port), "--name", name, *flags])
        wait_until(lambda: any("listening on" in l for l in self.child.lines()), WAIT_S,
                   f"{name} to listen")


class Http2Mesh:
    def __init__(self, test):
        self.dir = tempfile.mkdtemp(prefix="meshproxy-h2-")
        test.addCleanup(shutil.rmtree, self.dir, True)
        self.children = Children()
        test.addCleanup(self.close)
        self.web = Backend("web")
        self.backends = {name: EchoServer(name, *flags) for name, flags in {
            "grpc-a": (), "grpc-b": (), "grpc-failing": ("--fail_code", "14"),
            "grpc-slow": ("--delay_ms", "2000")}.items()}
        self.children += [b.child for b in self.backends.values()]
        self.port, self.admin_port = free_port(), free_port()
        self.duration_port, self.max_requests_port = free_port(), free_port()
        self.idle_port, self.drain_port = free_port(), free_port()
        self.version = 0
        self.write(routes())
        ads = self.children.start("ads", [
            binary("ADS_SERVER_BIN", "build/release/tests/sidecar/sidecar_test_ads_server"),
            "--resources", self.dir, "--port", "0"])
        ads_port = wait_until(lambda: [l for l in ads.json_lines() if l.get("event") == "listening"],
                              WAIT_S, "the ADS server")[0]["port"]
        self.ads = ads
        self.proxy = self.children.start("meshproxy", [
            binary("MESHPROXY_BIN", "build/release/sidecar/meshproxy"),
            "--xds-address", f"127.0.0.1:{ads_port}", "--node-id", NODE_ID,
            "--admin-port", str(self.admin_port), "--readiness-port", "0", "--concurrency", "2"])
        wait_until(lambda: self.curl("/", http2=True)[0] == 200, WAIT_S, "meshproxy to route")

    def write(self, route_config, without_listener=None):
        b = self.backends
        clusters = [h2_cluster(n) for n in ("grpc-a", "grpc-b", "grpc-flaky", "grpc-empty",
                                            "grpc-slow")]
        clusters += [h2_cluster("grpc-narrow", max_concurrent_streams=1), eds_cluster("web"),
                     h2_cluster("grpc-idle", idle_timeout="0.3s"),
                     h2_cluster("grpc-max-requests", max_requests_per_connection=3),
                     h2_cluster("grpc-max-duration", max_connection_duration="1s"),
                     http1_cluster("web-trailers", enable_trailers=True),
                     limited_cluster("web-queued", max_connections=1, max_pending_requests=1)]
        endpoints = [assignment("grpc-a", [b["grpc-a"].port]), assignment("grpc-b", [b["grpc-b"].port]),
                     assignment("grpc-flaky", [b["grpc-failing"].port, b["grpc-a"].port]),
                     assignment("grpc-empty", []), assignment("grpc-slow", [b["grpc-slow"].port]),
                     assignment("grpc-narrow", [b["grpc-slow"].port]),
                     assignment("grpc-idle", [b["grpc-a"].port]),
                     assignment("grpc-max-requests", [b["grpc-a"].port]),
                     assignment("grpc-max-duration", [b["grpc-slow"].port]),
                     assignment("web-trailers", [self.web.port]),
                     assignment("web-queued", [self.web.port]),
                     assignment("web", [self.web.port])]
        self.version += 1
        write_resources(self.dir, {"cds": clusters, "eds": endpoints, "rds": [route_config],
                                   "lds": [l for l in [http_listener("http", self.port, "routes"),
                                           http_listener("h2-duration", self.duration_port, "routes",
                                                         stat_prefix="h2_limits", drain_timeout="0.5s",
                                                         common_http_protocol_options={
                                                             "max_connection_duration": "1s"}),
                                           http_listener("h2-max-requests", self.max_requests_port,
                                                         "routes", stat_prefix="h2_limits",
                                                         drain_timeout="0.3s",
                                                         common_http_protocol_options={
                                                             "max_requests_per_connection": 3}),
                                           http_listener("h2-idle", self.idle_port, "routes",
                                                         stat_prefix="h2_idle", drain_timeout="0.5s",
                                                         common_http_protocol_options={
                                                             "idle_timeout": "0.5s"}),
                                           http_listener("h2-drain", self.drain_port, "routes",
                                                         stat_prefix="h2_drain",
                                                         drain_timeout="0.5s")]
                                           if l["name"] != without_listener]},
                        f"v{self.version}")
        return f"v{self.version}"

    def restart(self, name):
        """Stops a backend (gRPC says GOAWAY to its connections) and starts it again."""
        old = self.backends[name]
        old.child.stop()
        self.backends[name] = EchoServer(name, port=old.port)
        self.children.append(self.backends[name].child)

    def wait_acked(self, kind, version):
        wait_until(lambda: any(l.get("event") == "request" and l.get("type") == kind
                               and l.get("version") == version and "error" not in l
                               for l in self.ads.json_lines()),
                   WAIT_S, f"meshproxy to ACK {kind} {version}")

    def echo(self, *flags, authority="grpc.test", timeout=60):
        """Runs the gRPC client against meshproxy; returns (exit code, call lines, summary)."""
        argv = [binary("XDS_CLIENT_BIN", "build/release/tests/conformance/xds_echo_client"),
                "--target", f"127.0.0.1:{self.port}", "--authority", authority,
                "--interval_ms", "0", *flags]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        lines = done.stdout.splitlines()
        return done.returncode, [l for l in lines if not l.startswith("summary")], lines[-1]

    def curl(self, path, host="web.test", http2=False, data_file=None, output=None):
        argv = ["curl", "-sS", "-o", output or "/dev/null", "-w", "%{http_code} %{http_version}",
                "-H", f"Host: {host}", f"http://127.0.0.1:{self.port}{path}"]
        if http2:
            argv.insert(1, "--http2-prior-knowledge")
        if data_file:
            argv[1:1] = ["--data-binary", "@" + data_file]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        code, _, version = done.stdout.partition(" ")
        return int(code or 0), version

    def stat(self, name):
        out = subprocess.run(["curl", "-sS", f"http://127.0.0.1:{self.admin_port}/stats"],
                             capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
        return 0

    def istio_requests(self, *labels, metric="istio_requests_total"):
        """The sum of `metric`'s samples whose labels include all of `labels`."""
        out = subprocess.run(["curl", "-sS", f"http://127.0.0.1:{self.admin_port}/stats/prometheus"],
                             capture_output=True, text=True, timeout=10).stdout
        return sum(int(line.rsplit(" ", 1)[1]) for line in out.splitlines()
                   if line.startswith(metric + "{") and all(l in line for l in labels))

    def logs(self):
        return self.children.logs()

    def close(self):
        self.children.stop()
        self.web.stop()


@unittest.skipUnless(shutil.which("curl") and shutil.which("h2load") and shutil.which("nghttp"),
                     "needs curl and nghttp2-client (scripts/setup.sh installs them)")
class Http2Test(SharedMeshTest):

    mesh_class = Http2Mesh

    def test_grpc_unary_routed_by_header_with_trailers(self):
        code, calls, summary = self.mesh.echo("--count", "10", "--print_trailer", "x-echo-backend")
        self.assertEqual(code, 0, summary)
        self.assertEqual(set(calls), {"ok grpc-a trailer=grpc-a"})
        code, calls, summary = self.mesh.echo("--count", "10", "--print_trailer", "x-echo-backend",
                                              "--metadata", "x-backend=b")
        self.assertEqual(code, 0, summary)
        self.assertEqual(set(calls), {"ok grpc-b trailer=grpc-b"})

    def test_grpc_server_streaming_and_parallel_calls(self):
        code, calls, summary = self.mesh.echo("--count", "20", "--parallel", "10", "--stream", "200")
        self.assertEqual(code, 0, summary)
        self.assertEqual(len(calls), 20)

    def test_grpc_large_messages_both_ways(self):
        # 6 MB each way per call, several calls at once on the shared connections: only flow
        # control (window updates both ways) lets these through without buffering them whole.
        code, calls, summary = self.mesh.echo("--count", "4", "--parallel", "4",
                                              "--payload_bytes", str(6 * 1024 * 1024))
        self.assertEqual(code, 0, summary)

    def test_grpc_local_replies_carry_grpc_status(self):
        code, calls, _ = self.mesh.echo("--count", "1", authority="nothing.test")
        self.assertEqual(code, 1)
        self.assertTrue(calls[0].startswith("error UNIMPLEMENTED"), calls)
        code, calls, _ = self.mesh.echo("--count", "1", "--metadata", "x-route=none")
        self.assertTrue(calls[0].startswith("error UNAVAILABLE no healthy upstream"), calls)
        code, calls, _ = self.mesh.echo("--count", "1", "--metadata", "x-route=slow")
        self.assertTrue(calls[0].startswith("error UNAVAILABLE upstream request timeout"), calls)

    def test_istio_requests_total_counts_grpc_calls_with_their_status(self):
        ok = ('reporter="source"', 'destination_service="grpc-b"', 'request_protocol="grpc"',
              'response_code="200"', 'grpc_response_status="0"')
        messages = ("istio_request_messages_total", "istio_response_messages_total")
        before = self.mesh.istio_requests(*ok)
        before_messages = [self.mesh.istio_requests(*ok, metric=m) for m in messages]
        code, _, summary = self.mesh.echo("--count", "5", "--metadata", "x-backend=b")
        self.assertEqual(code, 0, summary)
        self.assertEqual(self.mesh.istio_requests(*ok) - before, 5)
        # Unary calls: one message each way, counted from the gRPC frames as they go by.
        for metric, count_before in zip(messages, before_messages):
            self.assertEqual(self.mesh.istio_requests(*ok, metric=metric) - count_before, 5, metric)
        # A gRPC local reply: HTTP 200 with grpc-status UNAVAILABLE (14).
        unavailable = ('request_protocol="grpc"', 'response_code="200"', 'grpc_response_status="14"')
        before = self.mesh.istio_requests(*unavailable)
        self.mesh.echo("--count", "1", "--metadata", "x-route=none")
        self.assertEqual(self.mesh.istio_requests(*unavailable) - before, 1)

    def test_grpc_retry_on_unavailable_from_grpc_status(self):
        before = self.mesh.stat("cluster.grpc-flaky.upstream_rq_retry")
        code, calls, summary = self.mesh.echo("--count", "10", "--metadata", "x-route=retry")
        self.assertEqual(code, 0, summary)
        self.assertEqual(set(calls), {"ok grpc-a"})
        # Round robin over a failing and a healthy host: about half the calls needed a retry.
        self.assertGreater(self.mesh.stat("cluster.grpc-flaky.upstream_rq_retry"), before)

    def test_client_giving_up_cancels_the_upstream_call(self):
        # The backend answers after 2 s; the client cancels after 0.3 s (RST_STREAM; its deadline,
        # which the backend would enforce by itself, is 5 s), the route's timeout is 10 s.
        code, calls, _ = self.mesh.echo("--count", "1", "--cancel_after_ms", "300", "--message",
                                        "cancel-me", "--metadata", "x-route=narrow")
        self.assertTrue(calls[0].startswith("error CANCELLED"), calls)
        slow = self.mesh.backends["grpc-slow"].child
        wait_until(lambda: any("call cancelled: cancel-me" in l for l in slow.lines("stderr")),
                   WAIT_S, "the backend to see the call cancelled")

    def test_fault_filter_aborts_grpc_with_its_status(self):
        code, calls, _ = self.mesh.echo("--count", "1", "--metadata", "x-route=fault")
        self.assertTrue(calls[0].startswith("error RESOURCE_EXHAUSTED fault filter abort"), calls)

    def test_new_upstream_connection_when_streams_are_exhausted(self):
        # The cluster allows one stream per connection; four calls of 2 s each run at once.
        before = self.mesh.stat("cluster.grpc-narrow.upstream_cx_total")
        code, calls, summary = self.mesh.echo("--count", "4", "--parallel", "4",
                                              "--metadata", "x-route=narrow")
        self.assertEqual(code, 0, summary)
        self.assertEqual(set(calls), {"ok grpc-slow"})
        self.assertGreaterEqual(self.mesh.stat("cluster.grpc-narrow.upstream_cx_total") - before, 2)

    def test_upstream_goaway_moves_calls_to_a_new_connection(self):
        code, _, summary = self.mesh.echo("--count", "3", "--parallel", "3", "--metadata", "x-backend=b")
        self.assertEqual(code, 0, summary)
        before = self.mesh.stat("cluster.grpc-b.upstream_cx_total")
        self.mesh.restart("grpc-b")
        code, calls, summary = self.mesh.echo("--count", "3", "--metadata", "x-backend=b")
        self.assertEqual(code, 0, summary)
        self.assertGreaterEqual(self.mesh.stat("cluster.grpc-b.upstream_cx_total") - before, 1)

    def test_idle_upstream_http2_connection_is_closed(self):
        # The cluster's idle_timeout (0.3 s, what meshpilot writes for a DestinationRule's
        # connectionPool.http.idleTimeout): with no stream left, GOAWAY and close.
        code, calls, summary = self.mesh.echo("--count", "3", "--metadata", "x-route=idle")
        self.assertEqual((code, set(calls)), (0, {"ok grpc-a"}), summary)
        wait_until(lambda: self.mesh.stat("cluster.grpc-idle.upstream_cx_idle_timeout") >= 1,
                   WAIT_S, "the idle upstream connection to time out")
        wait_until(lambda: self.mesh.stat("cluster.grpc-idle.upstream_cx_active") == 0, WAIT_S,
                   "the idle upstream connection to close")
        # The next call opens a new connection.
        before = self.mesh.stat("cluster.grpc-idle.upstream_cx_total")
        code, calls, summary = self.mesh.echo("--count", "1", "--metadata", "x-route=idle")
        self.assertEqual((code, calls), (0, ["ok grpc-a"]), summary)
        self.assertEqual(self.mesh.stat("cluster.grpc-idle.upstream_cx_total"), before + 1)

    def test_upstream_http2_connection_drains_after_max_requests_per_connection(self):
        # max_requests_per_connection 3: ten sequential calls on one downstream connection (one
        # worker's pool) use four upstream connections; the three full ones drain and close.
        stat = lambda name: self.mesh.stat(f"cluster.grpc-max-requests.{name}")
        code, calls, summary = self.mesh.echo("--count", "10", "--metadata", "x-route=max-requests")
        self.assertEqual((code, set(calls)), (0, {"ok grpc-a"}), summary)
        self.assertEqual(len(calls), 10)
        self.assertEqual(stat("upstream_cx_total"), 4)
        self.assertEqual(stat("upstream_cx_max_requests"), 3)
        wait_until(lambda: stat("upstream_cx_destroy") >= 3, WAIT_S,
                   "the drained upstream connections to close")

    def test_upstream_http2_connection_drains_at_max_connection_duration(self):
        # max_connection_duration 1 s to a backend that answers after 2 s: the connection sends
        # GOAWAY at 1 s, the call in flight still completes, then the connection closes and
        # the next call opens another.
        stat = lambda name: self.mesh.stat(f"cluster.grpc-max-duration.{name}")
        code, calls, summary = self.mesh.echo("--count", "1", "--metadata", "x-route=max-duration")
        self.assertEqual((code, calls), (0, ["ok grpc-slow"]), summary)
        self.assertEqual(stat("upstream_cx_max_duration_reached"), 1)
        wait_until(lambda: stat("upstream_cx_destroy") == 1, WAIT_S,
                   "the drained connection to close")
        code, calls, summary = self.mesh.echo("--count", "1", "--metadata", "x-route=max-duration")
        self.assertEqual((code, calls), (0, ["ok grpc-slow"]), summary)
        self.assertEqual(stat("upstream_cx_total"), 2)

    def test_upstream_stats_count_http2_requests(self):
        before = self.mesh.stat("cluster.grpc-b.upstream_rq_2xx")
        code, _, summary = self.mesh.echo("--count", "5", "--metadata", "x-backend=b")
        self.assertEqual(code, 0, summary)
        self.assertEqual(self.mesh.stat("cluster.grpc-b.upstream_rq_2xx") - before, 5)
        self.assertGreaterEqual(self.mesh.stat("cluster.grpc-b.upstream_cx_total"), 1)

    def test_h2load_many_streams_on_one_connection_to_http1_backend(self):
        before = self.mesh.stat("listener.http.downstream_cx_total")
        done = subprocess.run(["h2load", "-n", "400", "-c", "1", "-m", "100", "-H", ":authority: web.test",
                               f"http://127.0.0.1:{self.mesh.port}/many"],
                              capture_output=True, text=True, timeout=60)
        self.assertIn("400 succeeded", done.stdout, done.stdout + done.stderr)
        self.assertIn("status codes: 400 2xx", done.stdout)
        # All 400 requests on one downstream connection, 100 at a time.
        self.assertEqual(self.mesh.stat("listener.http.downstream_cx_total") - before, 1)

    def test_nghttp_response_headers_and_local_reply(self):
        done = subprocess.run(["nghttp", "-v", "-H", ":authority: web.test",
                               f"http://127.0.0.1:{self.mesh.port}/hello"],
                              capture_output=True, text=True, timeout=30)
        self.assertIn(":status: 200", done.stdout, done.stdout + done.stderr)
        self.assertIn("x-mesh: h2", done.stdout)
        self.assertIn('"backend": "web"', done.stdout)
        self.assertEqual(self.mesh.curl("/", host="nothing.test", http2=True), (404, "2"))

    def test_downstream_connection_drains_at_max_connection_duration(self):
        # max_connection_duration 1 s, drain_timeout 0.5 s: at 1 s a GOAWAY notice (highest
        # stream id) while streams are still taken, at 1.5 s the final GOAWAY naming the last
        # stream taken; the streams in flight finish, then the connection closes.
        stat = lambda: self.mesh.stat("http.h2_limits.downstream_cx_max_duration_reached")
        before = stat()
        start = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.mesh.duration_port), timeout=10) as s:
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0) +
                      h2_get(1, b"web.test", b"/delay/2500"))
            client = H2Client(s)
            client.read_until(lambda frames: goaway(frames))
            self.assertGreater(time.monotonic() - start, 0.9)
            s.sendall(h2_get(3, b"web.test", b"/in-grace"))
            frames = client.read_until(lambda frames: False)  # to the close
        self.assertGreater(time.monotonic() - start, 2.4)
        self.assertEqual(goaway(frames), [2**31 - 1, 3])
        self.assertTrue(ended_after_final_goaway(frames, 1))
        body = lambda stream: b"".join(p for k, _, st, p in frames if st == stream and k == 0)
        self.assertIn(b'"path": "/delay/2500"', body(1))
        self.assertIn(b'"path": "/in-grace"', body(3))
        self.assertEqual(stat(), before + 1)

    def test_downstream_connection_drains_after_max_requests_per_connection(self):
        # max_requests_per_connection 3, drain_timeout 0.3 s: the third stream brings the GOAWAY
        # notice, the final one names the last stream taken.
        stat = lambda: self.mesh.stat("http.h2_limits.downstream_cx_max_requests_reached")
        before = stat()
        with socket.create_connection(("127.0.0.1", self.mesh.max_requests_port), timeout=10) as s:
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0) +
                      b"".join(h2_get(i, b"web.test", b"/r%d" % i) for i in (1, 3, 5)))
            frames = H2Client(s).read_until(lambda frames: False)  # to the close
        self.assertEqual(goaway(frames), [2**31 - 1, 5])
        for i in (1, 3, 5):
            self.assertTrue(stream_ended(i)(frames), i)
        self.assertEqual(stat(), before + 1)
        # nghttp's four streams on one connection: all answered, the notice seen.
        done = subprocess.run(["nghttp", "-v", "-H", ":authority: web.test",
                               *[f"http://127.0.0.1:{self.mesh.max_requests_port}/{p}" for p in "abcd"]],
                              capture_output=True, text=True, timeout=30)
        self.assertEqual(done.stdout.count(":status: 200"), 4, done.stdout + done.stderr)
        self.assertIn("last_stream_id=2147483647", done.stdout)
        self.assertEqual(stat(), before + 3)  # the third and the fourth
        # In the HTTP connection manager's stat_prefix, as Envoy's http.PREFIX.* (the two
        # listeners share theirs).
        self.assertEqual(self.mesh.istio_requests('envoy_http_conn_manager_prefix="h2_limits"',
                                                  metric="envoy_http_downstream_cx_max_requests_reached"),
                         before + 3)

    def test_idle_downstream_connection_drains_in_two_steps(self):
        # idle_timeout 0.5 s, drain_timeout 0.5 s: idle, the connection gets the GOAWAY notice
        # (highest stream id); a stream that races it is served, the final GOAWAY 0.5 s later
        # names it, and the connection closes once it is done.
        stat = lambda: self.mesh.stat("http.h2_idle.downstream_cx_idle_timeout")
        before = stat()
        start = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.mesh.idle_port), timeout=10) as s:
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0))
            client = H2Client(s)
            client.read_until(lambda frames: goaway(frames))
            self.assertGreater(time.monotonic() - start, 0.4)
            s.sendall(h2_get(1, b"web.test", b"/delay/1000"))
            frames = client.read_until(lambda frames: False)  # to the close
        self.assertGreater(time.monotonic() - start, 1.4)
        self.assertEqual(goaway(frames), [2**31 - 1, 1])
        self.assertTrue(ended_after_final_goaway(frames, 1))
        self.assertIn(b'"path": "/delay/1000"', b"".join(p for k, _, st, p in frames if st == 1 and k == 0))
        self.assertEqual(stat(), before + 1)

    def test_http1_backend_trailers_reach_an_http2_client(self):
        # The cluster's enable_trailers reads the chunked response's trailers; HTTP/2 carries
        # them in a HEADERS frame that ends the stream.
        done = subprocess.run(["nghttp", "-v", "-H", ":authority: web.test",
                               f"http://127.0.0.1:{self.mesh.port}/with-trailers/trailers/xyz"],
                              capture_output=True, text=True, timeout=30)
        out = done.stdout
        self.assertIn(":status: 200", out, out + done.stderr)
        self.assertIn("hello world", out)
        trailers = out[out.index("hello world"):]
        self.assertIn("x-checksum: xyz", trailers)
        self.assertIn("recv HEADERS frame", trailers)

    def test_unread_request_bodies_give_their_window_back(self):
        # Twenty 60 KB uploads (each within the default stream window), answered 404 before
        # their bodies are read and never finished by the client: 1.2 MB in all, more than the
        # connection's 1 MiB window, so the last ones go through only if meshproxy gives the
        # window of bodies nobody reads back. No stream is reset, and the connection still
        # serves a request.
        with socket.create_connection(("127.0.0.1", self.mesh.port), timeout=10) as s:
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0))
            client = H2Client(s)
            for stream in range(1, 41, 2):
                s.sendall(h2_get(stream, b"nothing.test", b"/upload", method=b"POST"))
                client.send_body(stream, 60 * 1024, end=False)
            s.sendall(h2_get(41, b"web.test", b"/after-uploads"))
            frames = client.read_until(stream_ended(41))
        self.assertIn(b'"path": "/after-uploads"',
                      b"".join(p for k, _, st, p in frames if st == 41 and k == 0))
        self.assertEqual([st for k, _, st, _ in frames if k == 3], [])  # no RST_STREAM

    def test_a_stream_reset_while_pending_leaves_the_queue(self):
        # max_connections 1, max_pending_requests 1: stream 1 holds the connection for 4 s,
        # stream 3 queues and is cancelled (RST_STREAM CANCEL): its place is free at once, so
        # stream 5 queues too (instead of overflowing) and is served after stream 1.
        stat = lambda name: self.mesh.stat(f"cluster.web-queued.{name}")
        with socket.create_connection(("127.0.0.1", self.mesh.port), timeout=WAIT_S) as s:
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0) +
                      h2_get(1, b"web.test", b"/queued/delay/4000"))
            wait_until(lambda: stat("upstream_cx_active") == 1, WAIT_S, "the connection to be in use")
            s.sendall(h2_get(3, b"web.test", b"/queued/gone"))
            wait_until(lambda: stat("upstream_rq_pending_active") == 1, WAIT_S, "a pending request")
            s.sendall(h2_frame(3, 0, 3, (8).to_bytes(4, "big")))  # RST_STREAM CANCEL
            wait_until(lambda: stat("upstream_rq_cancelled") == 1, WAIT_S,
                       "the request to leave the queue")
            self.assertEqual(stat("upstream_rq_pending_active"), 0)
            s.sendall(h2_get(5, b"web.test", b"/queued/next"))
            frames = H2Client(s).read_until(lambda f: stream_ended(1)(f) and stream_ended(5)(f))
        self.assertIn(b'"path": "/queued/next"', b"".join(p for k, _, st, p in frames if st == 5 and k == 0))
        self.assertEqual([st for k, _, st, _ in frames if k == 1 and st == 3], [])  # no reply to 3
        self.assertEqual(stat("upstream_rq_pending_overflow"), 0)
        self.assertEqual(stat("upstream_cx_total"), 1)

    def test_rewrite_and_redirect_over_http2(self):
        done = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-H", "Host: web.test",
                               f"http://127.0.0.1:{self.mesh.port}/rewrite/a?q=1"],
                              capture_output=True, text=True, timeout=30)
        info = json.loads(done.stdout)
        self.assertEqual(info["path"], "/rewritten/a?q=1")
        self.assertEqual(info["headers"]["x-envoy-original-path"], "/rewrite/a?q=1")
        self.assertEqual(info["headers"]["host"], "web.test")  # :authority becomes Host
        done = subprocess.run(["curl", "-sS", "-D", "-", "-o", "/dev/null", "--http2-prior-knowledge",
                               "-H", "Host: web.test", f"http://127.0.0.1:{self.mesh.port}/redirect"],
                              capture_output=True, text=True, timeout=30)
        self.assertIn("HTTP/2 301", done.stdout)
        self.assertIn("location: https://web.test/redirect", done.stdout)

    def test_large_bodies_both_ways_between_http2_client_and_http1_backend(self):
        size = 5 * 1024 * 1024 + 17
        with tempfile.TemporaryDirectory() as tmp:
            upload = os.path.join(tmp, "up")
            with open(upload, "wb") as f:
                f.write(pattern_bytes(size))
            reply = os.path.join(tmp, "reply")
            self.assertEqual(self.mesh.curl("/upload", http2=True, data_file=upload, output=reply),
                             (200, "2"))
            with open(reply) as f:
                info = json.load(f)
            self.assertEqual(info["body_size"], size)
            self.assertEqual(info["body_sha256"], hashlib.sha256(pattern_bytes(size)).hexdigest())
            download = os.path.join(tmp, "down")
            self.assertEqual(self.mesh.curl(f"/bytes/{size}", http2=True, output=download), (200, "2"))
            with open(download, "rb") as f:
                self.assertEqual(hashlib.sha256(f.read()).hexdigest(),
                                 hashlib.sha256(pattern_bytes(size)).hexdigest())

    def test_http1_client_to_http2_upstream(self):
        # A gRPC call spelled in HTTP/1.1: meshproxy sends it on as HTTP/2 to the gRPC server.
        # (Trailers do not travel back over HTTP/1.1, as with Envoy.)
        with socket.create_connection(("127.0.0.1", self.mesh.port), timeout=10) as s:
            body = grpc_frame("over h1")
            s.sendall(b"POST " + ECHO.encode() + b"Echo HTTP/1.1\r\nHost: grpc.test\r\n"
                      b"Content-Type: application/grpc\r\nTE: trailers\r\n"
                      b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            response = b""
            while not response.endswith(b"\r\n0\r\n\r\n"):  # the last chunk
                chunk = s.recv(65536)
                if not chunk:
                    break
                response += chunk
        self.assertTrue(response.startswith(b"HTTP/1.1 200"), response)
        self.assertIn(b"content-type: application/grpc", response.lower())
        self.assertIn(b"transfer-encoding: chunked", response.lower())
        self.assertIn(b"\n\x07over h1\x12\x06grpc-a", response)  # EchoResponse{message, backend}

    def test_weight_shift_mid_traffic_loses_no_call(self):
        argv = [binary("XDS_CLIENT_BIN", "build/release/tests/conformance/xds_echo_client"),
                "--target", f"127.0.0.1:{self.mesh.port}", "--authority", "grpc.test",
                "--count", "3000", "--parallel", "4", "--interval_ms", "5"]
        client = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            lines = []
            # Some calls on the old weights first, then the shift while calls are in flight.
            while len(lines) < 50:
                lines.append(client.stdout.readline())
            version = self.mesh.write(routes(weights=(0, 100)))
            self.mesh.wait_acked("rds", version)
            out, _ = client.communicate(timeout=120)
        finally:
            if client.poll() is None:
                client.kill()
            self.mesh.write(routes())
        summary = out.splitlines()[-1]
        self.assertEqual(client.returncode, 0, summary)
        self.assertIn("errors=0", summary)
        backends = dict(re.findall(r"(grpc-[ab]):(\d+)", summary))
        self.assertGreater(int(backends.get("grpc-a", 0)), 0, summary)
        self.assertGreater(int(backends.get("grpc-b", 0)), 0, summary)


if __name__ == "__main__":
    unittest.main()


@unittest.skipUnless(shutil.which("curl"), "needs curl")
class Http2DrainTest(unittest.TestCase):
    """A drained listener's HTTP/2 connection serves the stream in flight and says GOAWAY."""

    def setUp(self):
        self.mesh = Http2Mesh(self)

    def test_drain_sends_the_notice_then_the_final_goaway(self):
        # /drain_listeners with drain_timeout 0.5 s: at once the GOAWAY notice (highest stream
        # id) to a connection with a stream in flight; a stream that races it is served; 0.5 s
        # later the final GOAWAY names the last stream taken; the stream in flight finishes,
        # then the connection closes.
        with socket.create_connection(("127.0.0.1", self.mesh.idle_port), timeout=10) as s:
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0) +
                      h2_get(1, b"web.test", b"/delay/1500"))
            client = H2Client(s)
            time.sleep(0.2)  # stream 1 is in flight
            drained_at = time.monotonic()
            drained = subprocess.run(["curl", "-sS", "-X", "POST", "-o", "/dev/null", "-w", "%{http_code}",
                                      f"http://127.0.0.1:{self.mesh.admin_port}/drain_listeners"],
                                     capture_output=True, text=True, timeout=10)
            self.assertEqual(drained.stdout, "200")
            client.read_until(lambda frames: goaway(frames))
            self.assertLess(time.monotonic() - drained_at, 0.4)  # the notice, at once
            s.sendall(h2_get(3, b"web.test", b"/after"))
            frames = client.read_until(lambda frames: False)  # to the close
        self.assertEqual(goaway(frames), [2**31 - 1, 3])
        self.assertEqual([int.from_bytes(p[4:8], "big") for k, _, _, p in frames if k == 7], [0, 0])
        body = lambda stream: b"".join(p for k, _, st, p in frames if st == stream and k == 0)
        self.assertIn(b'"path": "/after"', body(3))
        self.assertIn(b'"path": "/delay/1500"', body(1))
        self.assertTrue(ended_after_final_goaway(frames, 1))

    def test_a_listener_removed_by_lds_drains_its_idle_connection(self):
        # The connection is idle (its one stream done) when LDS removes its listener: the
        # notice comes at once, not at its next stream; the final GOAWAY (naming stream 1)
        # drain_timeout (0.5 s) later, then the close.
        with socket.create_connection(("127.0.0.1", self.mesh.drain_port), timeout=10) as s:
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0) +
                      h2_get(1, b"web.test", b"/before"))
            client = H2Client(s)
            client.read_until(stream_ended(1))
            self.mesh.wait_acked("lds", self.mesh.write(routes(), without_listener="h2-drain"))
            client.read_until(lambda frames: goaway(frames))
            notice_at = time.monotonic()
            frames = client.read_until(lambda frames: False)  # to the close
        self.assertGreater(time.monotonic() - notice_at, 0.4)
        self.assertEqual(goaway(frames), [2**31 - 1, 1])
