"""meshproxy end to end on loopback, with real processes and sockets.

A test ADS server (sidecar_test_ads_server) serves fixed Envoy resources to a real meshproxy:
listeners with bind_to_port on 127.0.0.1 (so traffic reaches meshproxy without iptables), EDS
clusters pointing at real HTTP and TCP backends running in this process. Clients are Python's
http.client and raw sockets (and curl where it is installed). Binaries come from MESHPROXY_BIN
and ADS_SERVER_BIN (set by ctest); by hand they default to build/release.
"""

import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request

from harness import (Backend, Children, CountingBackend, SharedMeshTest, TcpEchoBackend,  # noqa: E402
                     WebSocketEchoBackend, binary, free_port, pattern_bytes, read_websocket_frame,
                     tcp_exchange, wait_until, websocket_accept, websocket_connect, websocket_frame,
                     write_resources)

T = "type.googleapis.com/"
HCM = T + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = T + "envoy.extensions.filters.http.router.v3.Router"
FAULT = T + "envoy.extensions.filters.http.fault.v3.HTTPFault"
TCP_PROXY = T + "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
NODE_ID = "sidecar~127.0.0.1~client-1.default~default.svc.cluster.local"
FLAKY = "outbound|80||flaky.default.svc.cluster.local"  # named as Istio names clusters
WAIT_S = 15


CORS = T + "envoy.extensions.filters.http.cors.v3.CorsPolicy"
# What meshpilot writes for a VirtualService corsPolicy (tests/golden/vs_match_headers_rewrite).
CORS_POLICY = {"allow_origin_string_match": [{"exact": "https://example.com"},
                                             {"safe_regex": {"regex": "https://.*\\.example\\.org"}}],
               "allow_methods": "GET,POST", "allow_headers": "x-tenant",
               "expose_headers": "x-route", "max_age": "86400", "allow_credentials": True}


def eds_cluster(name, lb="ROUND_ROBIN"):
    return {"@type": T + "envoy.config.cluster.v3.Cluster", "name": name, "type": "EDS",
            "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"},
                                   "service_name": name},
            "connect_timeout": "1s", "lb_policy": lb}


def http1_cluster(name, enable_trailers=False, **common_http_protocol_options):
    """An HTTP/1.1 cluster with HttpProtocolOptions: enable_trailers and common options
    (idle_timeout, max_requests_per_connection)."""
    cluster = eds_cluster(name)
    options = {"@type": T + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
               "explicit_http_config": {"http_protocol_options": {
                   "enable_trailers": enable_trailers}}}
    if common_http_protocol_options:
        options["common_http_protocol_options"] = common_http_protocol_options
    cluster["typed_extension_protocol_options"] = {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": options}
    return cluster


def keepalive_cluster(name):
    """What meshpilot writes for connectionPool.tcp.tcpKeepalive (tests/golden/dr_traffic_policy)."""
    cluster = eds_cluster(name)
    cluster["upstream_connection_options"] = {"tcp_keepalive": {
        "keepalive_probes": 3, "keepalive_time": 7200, "keepalive_interval": 75}}
    return cluster


def limited_cluster(name, **thresholds):
    cluster = eds_cluster(name)
    cluster["circuit_breakers"] = {"thresholds": [dict(thresholds)]}
    return cluster


def outlier_cluster(name, **outlier_detection):
    cluster = eds_cluster(name)
    cluster["outlier_detection"] = dict(outlier_detection)
    return cluster


def assignment(name, ports, hostname=""):
    return {"@type": T + "envoy.config.endpoint.v3.ClusterLoadAssignment", "cluster_name": name,
            "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                             "port_value": p}},
                              "hostname": hostname},
                 "health_status": "HEALTHY"} for p in ports]}]}


def http_listener(name, port, route_name, **hcm):
    hcm.setdefault("upgrade_configs", [{"upgrade_type": "websocket"}])  # as meshpilot's
    return {"@type": T + "envoy.config.listener.v3.Listener", "name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {"@type": HCM, "stat_prefix": name,
                                 "rds": {"config_source": {"ads": {}, "resource_api_version": "V3"},
                                         "route_config_name": route_name},
                                 "http_filters": [{"name": "envoy.filters.http.router",
                                                   "typed_config": {"@type": ROUTER}}], **hcm}}]}],
            "traffic_direction": "OUTBOUND", "bind_to_port": True}


def sni_listener(name, port):
    """A listener with the tls_inspector: ClientHellos for *.example.com go to tcp-a, all
    else (other names, plaintext, a client silent past the 0.3 s listener_filters_timeout) to
    tcp-b."""
    def chain(cluster, **match):
        return {"filter_chain_match": match, "filters": [{
            "name": "envoy.filters.network.tcp_proxy",
            "typed_config": {"@type": TCP_PROXY, "stat_prefix": name, "cluster": cluster}}]}
    return {"@type": T + "envoy.config.listener.v3.Listener", "name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "listener_filters": [{"name": "envoy.filters.listener.tls_inspector", "typed_config": {
                "@type": T + "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}],
            "listener_filters_timeout": "0.3s", "continue_on_listener_filters_timeout": True,
            "filter_chains": [chain("tcp-a", server_names=["*.example.com"], transport_protocol="tls"),
                              chain("tcp-b")]}


def client_hello(server_name):
    """The ClientHello Python's ssl (OpenSSL) sends for `server_name`."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname=server_name)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def tcp_listener(name, port, cluster=None, weighted=None, **extra):
    config = {"@type": TCP_PROXY, "stat_prefix": name, **extra}
    if weighted:
        config["weighted_clusters"] = {"clusters": [{"name": n, "weight": w} for n, w in weighted]}
    else:
        config["cluster"] = cluster
    return {"@type": T + "envoy.config.listener.v3.Listener", "name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy",
                                            "typed_config": config}]}]}


def route(prefix, action, **extra):
    r = {"match": {"prefix": prefix}}
    r.update(action)
    r.update(extra)
    return r


def routes(name, extra_routes=(), regex="/regex/[a-z]+", split=(75, 25)):
    return {"@type": T + "envoy.config.route.v3.RouteConfiguration", "name": name,
            "virtual_hosts": [{
                "name": "web", "domains": ["web.default.svc.cluster.local", "web"],
                "routes": list(extra_routes) + [
                    {"match": {"safe_regex": {"regex": regex}}, "route": {"cluster": "web-v1"}},
                    route("/split", {"route": {"weighted_clusters": {"clusters": [
                        {"name": "web-v1", "weight": split[0]},
                        {"name": "web-v2", "weight": split[1],
                         "host_rewrite_literal": "web-v2.canary"}]}}}),
                    route("/retry/", {"route": {"cluster": "web-v1", "retry_policy": {
                        "retry_on": "5xx", "num_retries": 3,
                        "retry_back_off": {"base_interval": "0.01s"}}}}),
                    route("/slow/", {"route": {"cluster": "web-v1", "timeout": "0.3s"}}),
                    route("/pertry/", {"route": {"cluster": "web-v1", "timeout": "5s", "retry_policy": {
                        "retry_on": "gateway-error", "num_retries": 2, "per_try_timeout": "0.2s",
                        "retry_back_off": {"base_interval": "0.01s"}}}}),
                    route("/dead", {"route": {"cluster": "dead"}}),
                    # What meshpilot writes without a VirtualService timeout (as Istio does).
                    route("/grpc-timeout/", {"route": {"cluster": "web-v1", "timeout": "0s",
                                                       "max_stream_duration": {
                                                           "grpc_timeout_header_max": "0s"}}}),
                    route("/grpc-capped/", {"route": {"cluster": "web-v1", "timeout": "5s",
                                                      "max_stream_duration": {
                                                          "grpc_timeout_header_max": "0.2s"}}}),
                    route("/limited/", {"route": {"cluster": "limited"}}),
                    route("/ws/", {"route": {"cluster": "ws"}}),
                    route("/auto-host/", {"route": {"cluster": "named", "auto_host_rewrite": True}}),
                    route("/ws-off/", {"route": {"cluster": "ws", "upgrade_configs": [
                        {"upgrade_type": "websocket", "enabled": False}]}}),
                    route("/retry-limited/", {"route": {"cluster": "retry-limited", "retry_policy": {
                        "retry_on": "5xx", "num_retries": 1,
                        "retry_back_off": {"base_interval": "0.01s"}}}}),
                    route("/queued/", {"route": {"cluster": "queued"}}),
                    route("/burst/", {"route": {"cluster": "burst"}}),
                    route("/idle-upstream/", {"route": {"cluster": "idle-upstream"}}),
                    route("/with-trailers/", {"route": {"cluster": "trailers"}}),
                    route("/max-requests/", {"route": {"cluster": "max-requests"}}),
                    route("/max-duration/", {"route": {"cluster": "max-duration"}}),
                    route("/keepalive/", {"route": {"cluster": "keepalive"}}),
                    route("/flaky/", {"route": {"cluster": FLAKY}}),
                    route("/sticky", {"route": {"cluster": "sticky", "hash_policy": [
                        {"header": {"header_name": "x-user"}}]}}),
                    # What meshpilot writes for consistentHash.httpCookie {name, path, ttl}.
                    route("/cookie", {"route": {"cluster": "sticky", "hash_policy": [
                        {"cookie": {"name": "user", "path": "/cookie", "ttl": "60s"}}]}}),
                    route("/empty", {"route": {"cluster": "empty"}}),
                    route("/rewrite/", {"route": {"cluster": "web-v1", "prefix_rewrite": "/rewritten/"}},
                          request_headers_to_add=[{"header": {"key": "x-added", "value": "yes"}}],
                          request_headers_to_remove=["x-secret"]),
                    route("/redirect", {"redirect": {"https_redirect": True}}),
                    route("/fault-abort", {"route": {"cluster": "web-v1"}}, typed_per_filter_config={
                        "envoy.filters.http.fault": {"@type": FAULT, "abort": {
                            "http_status": 418, "percentage": {"numerator": 100}}}}),
                    route("/fault-delay", {"route": {"cluster": "web-v1"}}, typed_per_filter_config={
                        "envoy.filters.http.fault": {"@type": FAULT, "delay": {
                            "fixed_delay": "0.3s", "percentage": {"numerator": 100}}}}),
                    route("/cors/", {"route": {"cluster": "web-v1"}}, typed_per_filter_config={
                        "envoy.filters.http.cors": {"@type": CORS, **CORS_POLICY}}),
                    route("/mirror/", {"route": {"cluster": "web-v1", "request_mirror_policies": [
                        {"cluster": "mirror", "runtime_fraction": {"default_value": {
                            "numerator": 100}}}]}}),
                    route("/mirror-dead/", {"route": {"cluster": "web-v1", "request_mirror_policies": [
                        {"cluster": "dead"}]}}),
                    route("/mirror-half/", {"route": {"cluster": "web-v1", "request_mirror_policies": [
                        {"cluster": "mirror", "runtime_fraction": {"default_value": {
                            "numerator": 500000, "denominator": "MILLION"}}}]}}),
                    route("/", {"route": {"cluster": "web-v1"}},
                          response_headers_to_add=[{"header": {"key": "x-mesh", "value": "meshproxy"}}]),
                ]},
                # A CORS policy for the whole virtual host; /own/ has its own, which wins.
                {"name": "shop", "domains": ["shop"],
                 "typed_per_filter_config": {"envoy.filters.http.cors": {
                     "@type": CORS, "allow_origin_string_match": [{"exact": "https://shop.example"}],
                     "allow_methods": "PUT"}},
                 "routes": [
                    route("/own/", {"route": {"cluster": "web-v1"}}, typed_per_filter_config={
                        "envoy.filters.http.cors": {"@type": CORS, **CORS_POLICY}}),
                    route("/", {"route": {"cluster": "web-v1"}})]}]}


class Mesh:
    """The test ADS server, the backends and meshproxy, with the resources on disk."""

    concurrency = 2  # meshproxy's workers

    def __init__(self, test, proxy_args=()):
        self.ads_bin = binary("ADS_SERVER_BIN", "build/release/tests/sidecar/sidecar_test_ads_server")
        self.proxy_bin = binary("MESHPROXY_BIN", "build/release/sidecar/meshproxy")
        self.dir = tempfile.mkdtemp(prefix="meshproxy-it-")
        self.v1, self.v2 = Backend("web-v1"), Backend("web-v2")
        self.broken = Backend("broken", status=503)
        # Closes every connection after its answer: each copy but the first on a connection
        # finds it closed, and is sent again on a fresh one.
        self.mirror = Backend("mirror", close_after_reply=True)
        self.burst = CountingBackend()
        self.tcp_a, self.tcp_b = TcpEchoBackend("tcp-a"), TcpEchoBackend("tcp-b")
        self.ws = WebSocketEchoBackend("ws-echo")
        self.dead_port = free_port()  # nothing listens there
        self.http_port, self.tcp_port, self.split_tcp_port = free_port(), free_port(), free_port()
        self.sticky_tcp_port = free_port()
        self.patchy_tcp_port = free_port()
        self.idle_http_port = free_port()
        self.duration_http_port, self.max_requests_http_port = free_port(), free_port()
        self.trailers_http_port = free_port()
        self.sni_port = free_port()
        self.admin_port = free_port()
        self.children = Children()
        self.version = 0
        test.addCleanup(self.close)
        self.write(self.resources())
        self.ads_port = None
        self.start_ads()
        self.proxy = self.children.start("meshproxy", [
            self.proxy_bin, "--xds-address", f"127.0.0.1:{self.ads_port}", "--node-id", NODE_ID,
            "--admin-port", str(self.admin_port), "--readiness-port", "0", "--concurrency", str(self.concurrency),
            # Reconnects within a second in tests (the default ceiling is 30s).
            "--xds-max-backoff", "1s", "--drain-time", "1s", *proxy_args])
        self.test = test
        wait_until(lambda: self.admin("/ready")[0] == 200, WAIT_S, "meshproxy /ready")
        wait_until(lambda: self.get("/")[0] == 200, WAIT_S, "the HTTP listener to route")

    def start_ads(self, port=0):
        ads = self.children.start("ads", [self.ads_bin, "--resources", self.dir, "--port", str(port)])
        listening = wait_until(
            lambda: [l for l in ads.json_lines() if l.get("event") == "listening"], WAIT_S,
            "the ADS server to listen")
        self.ads_port = listening[0]["port"]
        self.ads = ads
        return ads

    def resources(self, routes_override=None, listeners=None):
        clusters = [eds_cluster("web-v1"), eds_cluster("web-v2"), eds_cluster("dead"),
                    eds_cluster("empty"), eds_cluster("tcp-a"), eds_cluster("tcp-b", "RANDOM"),
                    limited_cluster("limited", max_requests=1), eds_cluster("sticky", "RING_HASH"),
                    limited_cluster("retry-limited", max_retries=1), eds_cluster("ws"),
                    eds_cluster("named"),
                    limited_cluster("queued", max_connections=1, max_pending_requests=1),
                    dict(limited_cluster("burst", max_connections=3, max_pending_requests=15),
                         connect_timeout="10s"),
                    http1_cluster("idle-upstream", idle_timeout="0.3s"),
                    http1_cluster("trailers", enable_trailers=True),
                    http1_cluster("max-requests", max_requests_per_connection=3),
                    http1_cluster("max-duration", max_connection_duration="1s"),
                    keepalive_cluster("keepalive"),
                    eds_cluster("tcp-ring", "RING_HASH"), eds_cluster("mirror"),
                    outlier_cluster(FLAKY, consecutive_5xx=3, interval="1s",
                                    base_ejection_time="300s", max_ejection_percent=50),
                    outlier_cluster("tcp-patchy", consecutive_5xx=2, interval="1s",
                                    base_ejection_time="300s", max_ejection_percent=50)]
        endpoints = [assignment("web-v1", [self.v1.port]), assignment("web-v2", [self.v2.port]),
                     assignment("dead", [self.dead_port]), assignment("empty", []),
                     assignment("tcp-a", [self.tcp_a.port]), assignment("tcp-b", [self.tcp_b.port]),
                     assignment("limited", [self.v1.port]), assignment("queued", [self.v1.port]),
                     assignment("retry-limited", [self.v1.port]), assignment("ws", [self.ws.port]),
                     assignment("named", [self.v2.port], hostname="web-v2.named.example"),
                     assignment("burst", [self.burst.port]),
                     assignment("idle-upstream", [self.v1.port]),
                     assignment("trailers", [self.v1.port]),
                     assignment("max-requests", [self.v1.port]),
                     assignment("max-duration", [self.v1.port]),
                     assignment("keepalive", [self.v1.port]),
                     assignment("sticky", [self.v1.port, self.v2.port]),
                     assignment("tcp-ring", [self.tcp_a.port, self.tcp_b.port]),
                     assignment(FLAKY, [self.v1.port, self.broken.port]),
                     assignment("tcp-patchy", [self.tcp_a.port, self.dead_port]),
                     assignment("mirror", [self.mirror.port])]
        if listeners is None:
            listeners = [http_listener("http", self.http_port, "web-routes"),
                         http_listener("idle-http", self.idle_http_port, "web-routes",
                                       drain_timeout="0.3s", upgrade_configs=[],
                                       common_http_protocol_options={"idle_timeout": "0.3s"}),
                         http_listener("duration-http", self.duration_http_port, "web-routes",
                                       common_http_protocol_options={
                                           "max_connection_duration": "1s"}),
                         http_listener("max-requests-http", self.max_requests_http_port,
                                       "web-routes", common_http_protocol_options={
                                           "max_requests_per_connection": 3,
                                           "max_stream_duration": "0.5s"}),
                         http_listener("trailers-http", self.trailers_http_port, "web-routes",
                                       http_protocol_options={"enable_trailers": True}),
                         tcp_listener("tcp", self.tcp_port, cluster="tcp-a"),
                         tcp_listener("tcp-split", self.split_tcp_port,
                                      weighted=[("tcp-a", 1), ("tcp-b", 1)]),
                         tcp_listener("tcp-sticky", self.sticky_tcp_port, cluster="tcp-ring",
                                      hash_policy=[{"source_ip": {}}], idle_timeout="0.5s"),
                         tcp_listener("tcp-patchy", self.patchy_tcp_port, cluster="tcp-patchy"),
                         sni_listener("sni", self.sni_port)]
        return {"cds": clusters, "eds": endpoints, "lds": listeners,
                "rds": [routes_override or routes("web-routes")]}

    def write(self, resources):
        self.version += 1
        write_resources(self.dir, resources, f"v{self.version}")
        return f"v{self.version}"

    def requests(self, kind=None):
        return [l for l in self.ads.json_lines()
                if l.get("event") == "request" and (kind is None or l.get("type") == kind)]

    def wait_acked(self, kind, version):
        return wait_until(lambda: any(r["version"] == version and "error" not in r
                                      and r["nonce"] for r in self.requests(kind)),
                          WAIT_S, f"meshproxy to ACK {kind} {version}")

    def get(self, path, host="web", headers=None, method="GET", body=None, timeout=10):
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        try:
            h = {"Host": host}
            h.update(headers or {})
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
        finally:
            conn.close()

    def admin(self, path, method="GET"):
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}{path}", method=method)
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def stat(self, name):
        for line in self.admin("/stats")[1].splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
        return None

    def logs(self):
        return self.children.logs()

    def close(self):
        self.children.stop()
        for backend in (self.v1, self.v2, self.broken, self.mirror, self.tcp_a, self.tcp_b,
                        self.burst, self.ws):
            backend.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class HttpTest(SharedMeshTest):
    """HTTP/1.1 through meshproxy: routing, keep-alive, bodies, local replies, retries."""

    mesh_class = Mesh

    def test_routes_by_host_and_path_with_header_work(self):
        status, headers, body = self.mesh.get(
            "/rewrite/a?q=1", headers={"x-secret": "s", "traceparent":
                                       "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                                       "x-b3-traceid": "80f198ee56343ba8"})
        self.assertEqual(status, 200, body)
        info = json.loads(body)
        self.assertEqual(info["backend"], "web-v1")
        self.assertEqual(info["path"], "/rewritten/a?q=1")
        self.assertEqual(info["headers"]["x-added"], "yes")
        self.assertNotIn("x-secret", info["headers"])
        self.assertEqual(info["headers"]["x-envoy-original-path"], "/rewrite/a?q=1")
        self.assertRegex(info["headers"]["x-request-id"], r"^[0-9a-f-]{36}$")
        self.assertEqual(info["headers"]["traceparent"],
                         "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        self.assertEqual(info["headers"]["x-b3-traceid"], "80f198ee56343ba8")
        # A client's x-request-id is kept.
        _, _, body = self.mesh.get("/", headers={"x-request-id": "abc"})
        self.assertEqual(json.loads(body)["headers"]["x-request-id"], "abc")
        status, headers, _ = self.mesh.get("/", host="web.default.svc.cluster.local:80")
        self.assertEqual(status, 200)
        self.assertEqual(headers["x-mesh"], "meshproxy")
        status, _, _ = self.mesh.get("/regex/abc")
        self.assertEqual(status, 200)

    def test_keep_alive_reuses_the_downstream_connection(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.mesh.http_port, timeout=10)
        try:
            for i in range(20):
                # Long and short responses in turn: nothing of one is left in the next.
                path = f"/k/{i}" + ("/" + "x" * 3000 if i % 2 == 0 else "")
                conn.request("GET", path, headers={"Host": "web"})
                r = conn.getresponse()
                self.assertEqual(r.status, 200)
                self.assertEqual(json.loads(r.read())["path"], path)
            first = conn.sock.getsockname()
            conn.request("GET", "/k/last", headers={"Host": "web"})
            conn.getresponse().read()
            self.assertEqual(conn.sock.getsockname(), first)  # same connection throughout
        finally:
            conn.close()

    def test_connections_closed_before_a_request_end(self):
        # TCP health checks and port scanners connect and close at once; other clients close
        # part way through the HTTP/2 preface or an HTTP/1.1 head. meshproxy must close each of
        # these connections too, and not leave it open (CLOSE-WAIT) with a read waiting forever.
        active = "listener.http.downstream_cx_active"
        before = self.mesh.stat(active) or 0
        for sent in [b""] * 200 + [b"PRI * HTTP/2.0\r\n"] * 20 + [b"GET / HTTP/1.1\r\nHo"] * 20:
            with socket.create_connection(("127.0.0.1", self.mesh.http_port), timeout=5) as s:
                s.sendall(sent)
        wait_until(lambda: (self.mesh.stat(active) or 0) <= before, WAIT_S,
                   "meshproxy closed every connection its client closed")
        self.assertEqual(self.mesh.get("/")[0], 200)  # and goes on serving

    def test_stats_report_the_heap(self):
        # Envoy's server.memory_* gauges, from jemalloc's figures.
        self.assertEqual(self.mesh.get("/heap")[0], 200)
        allocated = self.mesh.stat("server.memory_allocated")
        if allocated is None and "libasan" in subprocess.run(
                ["ldd", self.mesh.proxy_bin], capture_output=True, text=True).stdout:
            self.skipTest("a sanitizer build allocates with the sanitizer's malloc (heap.h)")
        heap = self.mesh.stat("server.memory_heap_size")
        physical = self.mesh.stat("server.memory_physical_size")
        self.assertGreater(allocated, 0)
        self.assertGreater(physical, 0)
        self.assertGreaterEqual(heap, allocated)
        self.assertGreaterEqual(heap, physical)
        prom = self.mesh.admin("/stats/prometheus")[1]
        self.assertIn("# TYPE envoy_server_memory_allocated gauge\n", prom)
        self.assertRegex(prom, r"\nenvoy_server_memory_heap_size [1-9][0-9]*\n")

    def test_weighted_split(self):
        counts = {"web-v1": 0, "web-v2": 0}
        conn = http.client.HTTPConnection("127.0.0.1", self.mesh.http_port, timeout=10)
        for _ in range(400):
            conn.request("GET", "/split", headers={"Host": "web"})
            r = conn.getresponse()
            info = json.loads(r.read())
            counts[info["backend"]] += 1
            # web-v2's destination rewrites the authority (host_rewrite_literal on its cluster).
            self.assertEqual(info["headers"]["host"],
                             "web-v2.canary" if info["backend"] == "web-v2" else "web")
        conn.close()
        self.assertAlmostEqual(counts["web-v1"] / 400, 0.75, delta=0.08, msg=counts)

    def test_streams_large_and_chunked_bodies_both_ways(self):
        payload = os.urandom(5 * 1024 * 1024)
        status, _, body = self.mesh.get("/upload", method="POST", body=payload,
                                        headers={"Content-Length": str(len(payload))})
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["body_size"], len(payload))
        # A chunked request body (no length) and a chunked response.
        def chunks():
            for _ in range(50):
                yield b"x" * 10000
        conn = http.client.HTTPConnection("127.0.0.1", self.mesh.http_port, timeout=10)
        conn.request("POST", "/chunked-upload", body=chunks(), headers={"Host": "web"},
                     encode_chunked=True)
        r = conn.getresponse()
        self.assertEqual(json.loads(r.read())["body_size"], 500000)
        conn.request("GET", "/chunked/100", headers={"Host": "web"})
        r = conn.getresponse()
        self.assertEqual(r.getheader("Transfer-Encoding"), "chunked")
        self.assertEqual(r.read().decode(), "".join(f"chunk-{i};" for i in range(100)))
        conn.close()
        if shutil.which("curl"):
            out = subprocess.run(
                ["curl", "-sS", "--max-time", "10", "-H", "Host: web", "--data-binary", "@-",
                 f"http://127.0.0.1:{self.mesh.http_port}/curl"],
                input=b"y" * 300000, capture_output=True, timeout=20)
            self.assertEqual(json.loads(out.stdout)["body_size"], 300000, out.stderr)

    def test_head_and_http10(self):
        status, headers, body = self.mesh.get("/", method="HEAD")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"")
        with socket.create_connection(("127.0.0.1", self.mesh.http_port), timeout=5) as s:
            s.sendall(b"GET /chunked/3 HTTP/1.0\r\nHost: web\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.0 200"), head)
        self.assertEqual(body, b"chunk-0;chunk-1;chunk-2;")  # de-chunked, ended by the close

    def test_expect_100_continue(self):
        def exchange(host, body_after_continue):
            with socket.create_connection(("127.0.0.1", self.mesh.http_port), timeout=5) as s:
                s.sendall(f"POST /upload HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
                          "Expect: 100-continue\r\nConnection: close\r\n\r\n".encode())
                data = b""
                if body_after_continue:
                    while not data.endswith(b"\r\n\r\n"):
                        data += s.recv(1)
                    s.sendall(b"5\r\nhello\r\n0\r\n\r\n")
                while chunk := s.recv(65536):
                    data += chunk
            return data
        # Streamed to the backend: the interim response comes first, the body follows it.
        data = exchange("web", True)
        self.assertTrue(data.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200"), data)
        self.assertEqual(data.count(b"100 Continue"), 1)
        self.assertIn(b'"body_size": 5', data)
        # Answered before the body is read (no route): the final response alone, and no
        # 100 Continue after it.
        data = exchange("unknown.example", False)
        self.assertTrue(data.startswith(b"HTTP/1.1 404"), data)
        self.assertNotIn(b"100 Continue", data)

    def test_local_replies(self):
        status, headers, body = self.mesh.get("/", host="unknown.example")
        self.assertEqual(status, 404)
        none_healthy = lambda: self.mesh.stat("cluster.empty.upstream_cx_none_healthy") or 0
        before = none_healthy()
        status, _, body = self.mesh.get("/empty")
        self.assertEqual((status, body), (503, b"no healthy upstream"))
        self.assertEqual(none_healthy(), before + 1)
        status, _, body = self.mesh.get("/dead")
        self.assertEqual(status, 503)
        self.assertTrue(body.startswith(b"upstream connect error or disconnect/reset before headers"),
                        body)
        start = time.monotonic()
        status, _, body = self.mesh.get("/slow/delay/3000")
        self.assertEqual((status, body), (504, b"upstream request timeout"))
        self.assertLess(time.monotonic() - start, 2.0)
        status, headers, _ = self.mesh.get("/redirect/x?y=1", host="web:8080")
        self.assertEqual(status, 301)
        self.assertEqual(headers["location"], "https://web/redirect/x?y=1")

    def test_grpc_timeout_header_ends_the_stream(self):
        grpc = {"content-type": "application/grpc"}
        # Uncapped (grpc_timeout_header_max 0s): the header's 200 ms end a 3 s request, a gRPC
        # one with DEADLINE_EXCEEDED in a trailers-only reply, another with 408.
        status, headers, body = self.mesh.get("/grpc-timeout/delay/3000",
                                              headers={"grpc-timeout": "200m", **grpc})
        self.assertEqual((status, headers.get("grpc-status"), headers.get("grpc-message")),
                         (200, "4", "downstream duration timeout"), headers)
        status, _, body = self.mesh.get("/grpc-timeout/delay/3000", headers={"grpc-timeout": "200m"})
        self.assertEqual((status, body), (408, b"downstream duration timeout"))
        # A header longer than the answer takes, or none at all (route timeout 0s), lets it through.
        self.assertEqual(self.mesh.get("/grpc-timeout/delay/300",
                                       headers={"grpc-timeout": "20S", **grpc})[0], 200)
        self.assertEqual(self.mesh.get("/grpc-timeout/delay/300", headers=grpc)[0], 200)
        # Capped at 0.2 s: a 20 s grpc-timeout still ends a 3 s request.
        status, headers, _ = self.mesh.get("/grpc-capped/delay/3000",
                                           headers={"grpc-timeout": "20S", **grpc})
        self.assertEqual((status, headers.get("grpc-status")), (200, "4"))
        self.assertGreaterEqual(self.mesh.stat("http.http.downstream_rq_max_duration_reached"), 3)

    def test_idle_downstream_http1_connection_is_closed(self):
        # The HTTP connection manager's idle_timeout (0.3 s): a keep-alive connection without a
        # request is closed.
        with socket.create_connection(("127.0.0.1", self.mesh.idle_http_port), timeout=WAIT_S) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data or not data.endswith(b"}"):
                chunk = s.recv(65536)
                self.assertTrue(chunk, data)
                data += chunk
            self.assertTrue(data.startswith(b"HTTP/1.1 200"), data)
            self.assertEqual(s.recv(1), b"")  # closed by meshproxy, not by this client
        self.assertGreaterEqual(self.mesh.stat("http.idle-http.downstream_cx_idle_timeout"), 1)

    def test_idle_downstream_http2_connection_drains(self):
        # The drain sequence: the GOAWAY notice (highest stream id), drain_timeout later the
        # final GOAWAY (no stream taken), then the close.
        with socket.create_connection(("127.0.0.1", self.mesh.idle_http_port), timeout=WAIT_S) as s:
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            frames, data = [], b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                while len(data) >= 9 and len(data) >= 9 + int.from_bytes(data[:3], "big"):
                    length = int.from_bytes(data[:3], "big")
                    frames.append((data[3], data[9:9 + length]))
                    data = data[9 + length:]
        goaways = [payload for kind, payload in frames if kind == 7]
        self.assertEqual([int.from_bytes(g[:4], "big") for g in goaways], [2**31 - 1, 0], frames)
        self.assertEqual([int.from_bytes(g[4:8], "big") for g in goaways], [0, 0])  # NO_ERROR
        self.assertGreaterEqual(self.mesh.stat("http.idle-http.downstream_cx_idle_timeout"), 1)

    def test_downstream_http1_connection_closes_at_max_connection_duration(self):
        # max_connection_duration 1 s: a connection waiting for its next request is closed then;
        # one serving a request answers it with Connection: close, then closes.
        stat = lambda: self.mesh.stat("http.duration-http.downstream_cx_max_duration_reached")
        before = stat()
        idle = http.client.HTTPConnection("127.0.0.1", self.mesh.duration_http_port, timeout=WAIT_S)
        busy = http.client.HTTPConnection("127.0.0.1", self.mesh.duration_http_port, timeout=WAIT_S)
        try:
            start = time.monotonic()
            for conn, path in ((idle, "/a"), (busy, "/b")):
                conn.request("GET", path, headers={"Host": "web"})
                r = conn.getresponse()
                r.read()
                self.assertEqual((r.status, r.getheader("Connection")), (200, None))
            # Past the duration while the backend takes 1.5 s: the answer still comes, closing.
            busy.request("GET", "/delay/1500", headers={"Host": "web"})
            r = busy.getresponse()
            r.read()
            self.assertEqual((r.status, r.getheader("Connection")), (200, "close"))
            self.assertGreater(time.monotonic() - start, 1.4)
            # The idle one was closed by meshproxy at 1 s, without a response.
            self.assertEqual(idle.sock.recv(1), b"")
        finally:
            idle.close()
            busy.close()
        self.assertEqual(stat(), before + 2)

    def test_downstream_http1_connection_closes_after_max_requests_per_connection(self):
        # max_requests_per_connection 3: curl's seven requests need three connections, the
        # third answer on each says Connection: close.
        if not shutil.which("curl"):
            self.skipTest("needs curl")
        stat = lambda: self.mesh.stat("http.max-requests-http.downstream_cx_max_requests_reached")
        before = stat()
        url = f"http://127.0.0.1:{self.mesh.max_requests_http_port}/n"
        done = subprocess.run(["curl", "-sS", "-H", "Host: web",
                               "-w", "%{http_code} %{num_connects}\n",
                               *["-o", "/dev/null", url] * 7],
                              capture_output=True, text=True, timeout=30)
        self.assertEqual(done.stdout.split("\n")[:7],
                         ["200 1", "200 0", "200 0", "200 1", "200 0", "200 0", "200 1"], done.stderr)
        self.assertEqual(stat(), before + 2)
        conn = http.client.HTTPConnection("127.0.0.1", self.mesh.max_requests_http_port, timeout=10)
        closes = []
        for _ in range(3):
            conn.request("GET", "/n", headers={"Host": "web"})
            r = conn.getresponse()
            r.read()
            closes.append(r.getheader("Connection"))
        self.assertEqual(closes, [None, None, "close"])
        conn.close()

    def test_connection_manager_max_stream_duration(self):
        # max_stream_duration 0.5 s on the connection manager, none on the route: a 3 s answer
        # is cut with 408.
        start = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.mesh.max_requests_http_port, timeout=10)
        conn.request("GET", "/delay/3000", headers={"Host": "web"})
        r = conn.getresponse()
        self.assertEqual((r.status, r.read()), (408, b"downstream duration timeout"))
        conn.close()
        self.assertLess(time.monotonic() - start, 2.5)
        self.assertGreaterEqual(
            self.mesh.stat("http.max-requests-http.downstream_rq_max_duration_reached"), 1)

    def test_idle_upstream_http1_connection_is_closed(self):
        # The cluster's idle_timeout (0.3 s): a pooled connection idle that long is closed, and
        # the next request opens a new one.
        stat = lambda name: self.mesh.stat(f"cluster.idle-upstream.{name}")
        # One downstream connection, so one worker and its pool serve every request.
        conn = http.client.HTTPConnection("127.0.0.1", self.mesh.http_port, timeout=10)
        def get(path):
            conn.request("GET", path, headers={"Host": "web"})
            r = conn.getresponse()
            r.read()
            return r.status
        self.assertEqual(get("/idle-upstream/a"), 200)
        self.assertEqual(get("/idle-upstream/b"), 200)
        opened = stat("upstream_cx_total")
        wait_until(lambda: stat("upstream_cx_active") == 0, WAIT_S, "the idle connection to close")
        self.assertEqual(stat("upstream_cx_idle_timeout"), opened)
        self.assertEqual(get("/idle-upstream/c"), 200)
        conn.close()
        self.assertEqual(stat("upstream_cx_total"), opened + 1)

    def test_upstream_http1_connection_closes_after_max_requests_per_connection(self):
        # max_requests_per_connection 3: ten sequential requests on one downstream connection
        # (one worker's pool) use four upstream connections.
        conn = http.client.HTTPConnection("127.0.0.1", self.mesh.http_port, timeout=10)
        for i in range(10):
            conn.request("GET", f"/max-requests/{i}", headers={"Host": "web"})
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
        conn.close()
        ports = [info["client_port"] for info in self.mesh.v1.received
                 if info["path"].startswith("/max-requests/")]
        self.assertEqual(len(ports), 10)
        self.assertEqual(len(set(ports)), 4, ports)
        self.assertEqual(self.mesh.stat("cluster.max-requests.upstream_cx_max_requests"), 3)

    def test_upstream_http1_connection_closes_at_max_connection_duration(self):
        # max_connection_duration 1 s: an idle pooled connection is closed when it passes, and
        # one busy then is closed after its exchange instead of going back to the pool.
        stat = lambda name: self.mesh.stat(f"cluster.max-duration.{name}")
        conn = http.client.HTTPConnection("127.0.0.1", self.mesh.http_port, timeout=10)

        def get(path):
            conn.request("GET", f"/max-duration/{path}", headers={"Host": "web"})
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            return [i["client_port"] for i in self.mesh.v1.received if i["path"].endswith(path)][-1]

        self.assertEqual(get("a"), get("b"))  # pooled
        wait_until(lambda: stat("upstream_cx_max_duration_reached") == 1, WAIT_S,
                   "the idle connection to reach its max duration")
        self.assertEqual(stat("upstream_cx_active"), 0)
        fresh = get("c")
        # In flight past the duration: answered, then closed.
        self.assertEqual(get("delay/1500"), fresh)
        wait_until(lambda: stat("upstream_cx_max_duration_reached") == 2, WAIT_S,
                   "the busy connection to close after its exchange")
        self.assertNotEqual(get("d"), fresh)
        conn.close()
        self.assertEqual(stat("upstream_cx_total"), 3)
        self.assertEqual(stat("upstream_cx_idle_timeout"), 0)

    def test_upstream_connections_get_tcp_keepalive(self):
        # tcp_keepalive (time 7200 s): the pooled upstream connection to the backend carries
        # the kernel's keepalive timer, as `ss -o` shows; web-v1's without it carry none.
        def timers(path):
            conn = http.client.HTTPConnection("127.0.0.1", self.mesh.http_port, timeout=10)
            conn.request("GET", path, headers={"Host": "web"})
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            port = [i["client_port"] for i in self.mesh.v1.received if i["path"] == path][0]
            out = subprocess.run(["ss", "-tnoH", "state", "established", "sport", "=", f":{port}"],
                                 capture_output=True, text=True, check=True).stdout
            conn.close()
            self.assertIn(f":{self.mesh.v1.port}", out)
            return out
        with_keepalive = timers("/keepalive/a")
        self.assertIn("timer:(keepalive,", with_keepalive)
        # The first probe after keepalive_time: the timer counts down from about 2 hours.
        minutes = int(with_keepalive.split("timer:(keepalive,")[1].split("min")[0])
        self.assertGreater(minutes, 100)
        self.assertNotIn("keepalive", timers("/plain/a"))

    def raw_get(self, port, path):
        """The raw response bytes of one HTTP/1.1 request (the connection closes after it)."""
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            return data

    def test_http1_response_trailers_with_enable_trailers(self):
        # Both the cluster (decode) and the HTTP connection manager (encode) enable trailers:
        # the backend's trailer reaches the client in the last chunk.
        data = self.raw_get(self.mesh.trailers_http_port, "/with-trailers/trailers/abc")
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data)
        self.assertIn(b"hello", data)
        self.assertTrue(data.endswith(b"\r\n0\r\nx-checksum: abc\r\n\r\n"), data)
        # Without enable_trailers on the listener, or on the cluster, they are dropped (Envoy's
        # default), and the body still ends properly.
        for port, path in ((self.mesh.http_port, "/with-trailers/trailers/abc"),
                           (self.mesh.trailers_http_port, "/trailers/abc")):
            data = self.raw_get(port, path)
            self.assertTrue(data.endswith(b"\r\n0\r\n\r\n"), data)
            self.assertNotIn(b"x-checksum: abc", data)

    def test_http1_request_trailers_with_enable_trailers(self):
        def post(port, path):
            with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as s:
                s.sendall(f"POST {path} HTTP/1.1\r\nHost: web\r\nConnection: close\r\n"
                          "Transfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n"
                          "5\r\nhello\r\n0\r\nx-sum: 42\r\n\r\n".encode())
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 200"), data)
            info = json.loads(body)
            self.assertEqual(info["body_size"], 5)
            return info["trailers"]
        # The listener reads them and the cluster writes them: they reach the backend.
        self.assertEqual(post(self.mesh.trailers_http_port, "/with-trailers/post"), {"x-sum": "42"})
        # Without enable_trailers on either side they are dropped.
        self.assertEqual(post(self.mesh.http_port, "/with-trailers/post"), {})
        self.assertEqual(post(self.mesh.trailers_http_port, "/post"), {})

    def test_ring_hash_by_header_is_sticky(self):
        seen = {}
        for user in range(30):
            backends = {json.loads(self.mesh.get("/sticky", headers={"x-user": f"u{user}"})[2])["backend"]
                        for _ in range(4)}
            self.assertEqual(len(backends), 1, f"user u{user} moved between {backends}")
            seen[user] = backends.pop()
        self.assertEqual(set(seen.values()), {"web-v1", "web-v2"})

    def test_ring_hash_cookie_is_generated_and_then_sticky(self):
        # A request without the cookie gets one (Set-Cookie, as Envoy writes it) and goes where
        # the requests that carry it go. Each new connection gets its own cookie.
        seen = {}
        for _ in range(30):
            status, headers, body = self.mesh.get("/cookie")
            self.assertEqual(status, 200)
            cookie = headers.get("set-cookie", "")
            self.assertRegex(cookie, r'^user="[0-9a-f]{16}"; Max-Age=60; Path=/cookie; HttpOnly$')
            value = cookie.split(";")[0].split("=", 1)[1]
            first = json.loads(body)["backend"]
            for _ in range(3):
                status, headers, body = self.mesh.get("/cookie", headers={"Cookie": f"user={value}"})
                self.assertNotIn("set-cookie", headers)
                self.assertEqual(json.loads(body)["backend"], first, value)
            seen[value] = first
        self.assertGreater(len(seen), 1)
        self.assertEqual(set(seen.values()), {"web-v1", "web-v2"})

    def test_circuit_breaker_overflow(self):
        results = []
        slow = threading.Thread(target=lambda: results.append(self.mesh.get("/limited/delay/700")))
        slow.start()
        wait_until(lambda: self.mesh.stat("cluster.limited.upstream_rq_active") == 1, WAIT_S,
                   "the first request to be in flight")
        status, headers, body = self.mesh.get("/limited/x")
        slow.join(timeout=10)
        self.assertEqual(status, 503)
        self.assertEqual(headers.get("x-envoy-overloaded"), "true")
        self.assertTrue(body.endswith(b"reset reason: overflow"), body)
        self.assertEqual(results[0][0], 200)
        self.assertEqual(self.mesh.stat("cluster.limited.upstream_rq_pending_overflow"), 1)
        self.assertEqual(self.mesh.get("/limited/y")[0], 200)  # the breaker closes again

    def test_retry_circuit_breaker_counts_retries_in_flight(self):
        # max_retries 1. A's first attempt fails and its retry is slow; while that retry is in
        # flight it holds the cluster's one retry (as Envoy's retry state does until the
        # attempt's outcome), so B, whose first attempt fails too, may not retry: its 503 goes
        # to the client and counts as a retry overflow.
        results = []
        a = threading.Thread(
            target=lambda: results.append(self.mesh.get("/retry-limited/failonce-slow/700/rl-a")))
        a.start()
        wait_until(lambda: Backend.failures.get("rl-a") == 2, WAIT_S, "A's retry to be in flight")
        status, _, _ = self.mesh.get("/retry-limited/failonce-slow/0/rl-b")
        self.assertEqual(status, 503)
        self.assertEqual(Backend.failures.get("rl-b"), 1)  # not sent again
        self.assertEqual(self.mesh.stat("cluster.retry-limited.upstream_rq_retry_overflow"), 1)
        a.join(timeout=10)
        self.assertEqual(results[0][0], 200)
        # A's retry answered: the resource is back, and C's retry goes out.
        status, _, body = self.mesh.get("/retry-limited/failonce-slow/0/rl-c")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["attempt"], 2)

    def websocket(self, path, port=None, early=b""):
        return websocket_connect(self, "127.0.0.1", port or self.mesh.http_port, path,
                                 early=early)

    def test_auto_host_rewrite_sets_the_hosts_name(self):
        status, _, body = self.mesh.get("/auto-host/x")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["headers"]["host"], "web-v2.named.example")

    def test_websocket_upgrade_becomes_a_tunnel(self):
        # The first message goes out with the handshake, before the 101: it must reach the
        # server after it, as the client sent it.
        conn, reader, status, headers, key = self.websocket(
            "/ws/chat", early=websocket_frame(0x1, b"early", mask=True))
        self.assertEqual(status, "HTTP/1.1 101 Switching Protocols")
        self.assertEqual(headers["sec-websocket-accept"], websocket_accept(key))
        self.assertEqual(headers["upgrade"].lower(), "websocket")
        self.assertEqual(headers["connection"].lower(), "upgrade")
        self.assertEqual(read_websocket_frame(reader), (0x1, b"ws-echo:early"))
        # Messages both ways, one larger than 64 KiB (a 64-bit length) and binary.
        for opcode, payload in ((0x1, b"hello"), (0x2, os.urandom(70000)), (0x1, b"x" * 300)):
            conn.sendall(websocket_frame(opcode, payload, mask=True))
            self.assertEqual(read_websocket_frame(reader), (opcode, b"ws-echo:" + payload))
        conn.sendall(websocket_frame(0x8, b"\x03\xe8", mask=True))
        self.assertEqual(read_websocket_frame(reader), (0x8, b"\x03\xe8"))
        self.assertEqual(reader.read(), b"")  # the server closed, and so did meshproxy
        # The upstream got the upgrade headers and the request's usual ones.
        head = self.mesh.ws.requests[-1]
        self.assertEqual(head[0], "GET /ws/chat HTTP/1.1")
        lowered = [line.lower() for line in head]
        self.assertIn("upgrade: websocket", lowered)
        self.assertIn("connection: upgrade", lowered)
        self.assertTrue(any(line.startswith("x-request-id: ") for line in lowered), head)
        self.assertGreaterEqual(self.mesh.stat("cluster.ws.upstream_rq_1xx"), 1)

    def test_websocket_refused_and_not_enabled(self):
        # The upstream says no: its answer is passed on as a response.
        conn, reader, status, headers, _ = self.websocket("/ws/refuse")
        self.assertEqual(status, "HTTP/1.1 403 Forbidden")
        self.assertEqual(reader.read(int(headers["content-length"])), b"no upgrade here")
        # The route turns the upgrade off, or the listener has none: Envoy's 403, and the
        # upstream never sees the request.
        seen = len(self.mesh.ws.requests)
        for path, port in (("/ws-off/chat", None), ("/ws/chat", self.mesh.idle_http_port)):
            _, _, status, _, _ = self.websocket(path, port=port)
            self.assertEqual(status, "HTTP/1.1 403 Forbidden", path)
        self.assertEqual(len(self.mesh.ws.requests), seen)
        # What curl --http2 sends on an http:// URL: served as HTTP/1.1, the upgrade dropped.
        status, _, body = self.mesh.get("/", headers={
            "Upgrade": "h2c", "Connection": "Upgrade, HTTP2-Settings",
            "HTTP2-Settings": "AAMAAABkAAQAoAAAAAIAAAAA"})
        self.assertEqual(status, 200, body)
        received = json.loads(body)["headers"]
        self.assertNotIn("upgrade", received)
        self.assertNotIn("http2-settings", received)

    def test_outlier_detection_ejects_the_failing_host(self):
        # Round robin over web-v1 and a host that always answers 503: its third 503 in a row
        # ejects it (for 300 s), and from then on web-v1 takes every request.
        results = [self.mesh.get(f"/flaky/{i}") for i in range(20)]
        statuses = [status for status, _, _ in results]
        self.assertEqual(statuses.count(503), 3, statuses)
        self.assertEqual({json.loads(body)["backend"] for _, _, body in results[6:]}, {"web-v1"})
        self.assertEqual(
            self.mesh.stat(f"cluster.{FLAKY}.outlier_detection.ejections_enforced_total"), 1)
        self.assertEqual(self.mesh.stat(f"cluster.{FLAKY}.outlier_detection.ejections_active"), 1)
        clusters = self.mesh.admin("/clusters")[1]
        self.assertIn(f"{FLAKY}::127.0.0.1:{self.mesh.broken.port}::health_flags::/failed_outlier_check",
                      clusters)
        self.assertIn(f"{FLAKY}::127.0.0.1:{self.mesh.v1.port}::health_flags::healthy", clusters)
        prom = self.mesh.admin("/stats/prometheus")[1]
        self.assertIn('envoy_cluster_outlier_detection_ejections_enforced_total'
                      f'{{envoy_cluster_name="{FLAKY}"}} 1', prom)
        # Istio's standard metric, reported by the source (an outbound listener).
        # Istio's standard metrics, reported by the source (an outbound listener); the backend
        # is outside the mesh (no metadata exchange), so the destination workload is unknown.
        labels = ('reporter="source",source_workload="client-1",'
                  'source_canonical_service="client-1",source_canonical_revision="latest",'
                  'source_workload_namespace="default",source_principal="unknown",'
                  'source_app="unknown",source_version="unknown",source_cluster="Kubernetes",'
                  'destination_workload="unknown",destination_workload_namespace="unknown",'
                  'destination_principal="unknown",destination_app="unknown",'
                  'destination_version="unknown",'
                  'destination_service="flaky.default.svc.cluster.local",'
                  'destination_canonical_service="unknown",destination_canonical_revision="latest",'
                  'destination_service_name="flaky",destination_service_namespace="default",'
                  'destination_cluster="unknown",request_protocol="http"')
        for code, count in (("200", 17), ("503", 3)):
            series = f'{labels},response_code="{code}",grpc_response_status="",' \
                     'response_flags="-",connection_security_policy="unknown"'
            self.assertIn(f'istio_requests_total{{{series}}} {count}\n', prom)
            self.assertIn(f'istio_request_duration_milliseconds_count{{{series}}} {count}\n', prom)

    def test_fault_injection(self):
        self.assertEqual(self.mesh.get("/fault-abort")[::2], (418, b"fault filter abort"))
        start = time.monotonic()
        status, _, body = self.mesh.get("/fault-delay")
        self.assertEqual(status, 200, body)
        self.assertGreaterEqual(time.monotonic() - start, 0.3)

    def test_cors_preflight_is_answered_for_an_allowed_origin(self):
        received = len(self.mesh.v1.received)
        status, headers, body = self.mesh.get("/cors/x", method="OPTIONS", headers={
            "Origin": "https://shop.example.org", "Access-Control-Request-Method": "POST"})
        self.assertEqual((status, body), (200, b""))
        self.assertEqual(headers["access-control-allow-origin"], "https://shop.example.org")
        self.assertEqual(headers["access-control-allow-methods"], "GET,POST")
        self.assertEqual(headers["access-control-allow-headers"], "x-tenant")
        self.assertEqual(headers["access-control-max-age"], "86400")
        self.assertEqual(headers["access-control-allow-credentials"], "true")
        self.assertNotIn("x-backend", headers)
        self.assertEqual(len(self.mesh.v1.received), received)  # answered by meshproxy

    def test_cors_allowed_origin_gets_the_headers(self):
        status, headers, _ = self.mesh.get("/cors/x", headers={"Origin": "https://example.com"})
        self.assertEqual(status, 200)
        self.assertEqual(headers["x-backend"], "web-v1")
        self.assertEqual(headers["access-control-allow-origin"], "https://example.com")
        self.assertEqual(headers["access-control-allow-credentials"], "true")
        self.assertEqual(headers["access-control-expose-headers"], "x-route")
        self.assertNotIn("access-control-allow-methods", headers)

    def test_cors_disallowed_origin_gets_none_and_its_preflight_goes_to_the_route(self):
        status, headers, _ = self.mesh.get("/cors/x", headers={"Origin": "https://evil.example"})
        self.assertEqual(status, 200)
        self.assertFalse([h for h in headers if h.startswith("access-control-")], headers)
        status, headers, body = self.mesh.get("/cors/x", method="OPTIONS", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        self.assertEqual(status, 200)
        self.assertEqual(headers["x-backend"], "web-v1")
        self.assertEqual(json.loads(body)["method"], "OPTIONS")
        self.assertFalse([h for h in headers if h.startswith("access-control-")], headers)

    def test_cors_policy_of_a_virtual_host_applies_to_routes_without_their_own(self):
        def preflight(path, origin):
            return self.mesh.get(path, host="shop", method="OPTIONS", headers={
                "Origin": origin, "Access-Control-Request-Method": "PUT"})
        status, headers, body = preflight("/x", "https://shop.example")
        self.assertEqual((status, body), (200, b""))
        self.assertEqual(headers["access-control-allow-origin"], "https://shop.example")
        self.assertEqual(headers["access-control-allow-methods"], "PUT")
        # The route's own policy replaces the host's whole: the host's origin is not allowed
        # there (its preflight reaches the backend), the route's is.
        status, headers, _ = preflight("/own/x", "https://shop.example")
        self.assertEqual(headers.get("x-backend"), "web-v1")
        self.assertNotIn("access-control-allow-origin", headers)
        status, headers, body = preflight("/own/x", "https://example.com")
        self.assertEqual((status, body), (200, b""))
        self.assertEqual(headers["access-control-allow-methods"], "GET,POST")

    def test_mirror_gets_a_copy_with_shadow_host_and_the_client_the_primary_answer(self):
        mirrored_before = self.mesh.stat("cluster.mirror.upstream_rq_total") or 0
        status, headers, body = self.mesh.get("/mirror/get", host="web")
        self.assertEqual(status, 200)
        self.assertEqual(headers["x-backend"], "web-v1")
        self.assertEqual(json.loads(body)["headers"]["host"], "web")
        status, headers, body = self.mesh.get("/mirror/post", host="web", method="POST",
                                              body=b"mirrored body")
        self.assertEqual((status, headers["x-backend"]), (200, "web-v1"))
        def copies():
            received = [r for r in self.mesh.mirror.received if r["path"].startswith("/mirror/")]
            return received if len(received) >= 2 else None

        copies = wait_until(copies, WAIT_S, "the mirror to receive both copies")
        self.assertEqual([(r["method"], r["path"], r["headers"]["host"]) for r in copies],
                         [("GET", "/mirror/get", "web-shadow"), ("POST", "/mirror/post", "web-shadow")])
        self.assertEqual(copies[1]["body_size"], len(b"mirrored body"))
        self.assertEqual(copies[1]["body_sha256"], hashlib.sha256(b"mirrored body").hexdigest())
        wait_until(lambda: self.mesh.stat("cluster.mirror.upstream_rq_total") - mirrored_before == 2,
                   WAIT_S, "the mirror cluster to count both copies")
        # A mirror that cannot be reached neither fails nor changes the request.
        failed_before = self.mesh.stat("cluster.dead.upstream_rq_5xx") or 0
        status, headers, _ = self.mesh.get("/mirror-dead/x")
        self.assertEqual((status, headers["x-backend"]), (200, "web-v1"))
        wait_until(lambda: self.mesh.stat("cluster.dead.upstream_rq_5xx") - failed_before == 1,
                   WAIT_S, "the dead mirror cluster to count its failed copy")

    def test_mirror_gets_streamed_bodies(self):
        # A chunked body (length unknown) and one too large to hold (300 KiB): both streamed
        # upstream, both copied whole to the mirror as they go.
        chunked, large = pattern_bytes(100 * 1024), pattern_bytes(300 * 1024)
        for path, body in (("/mirror/chunked", chunked), ("/mirror/large", large)):
            conn = http.client.HTTPConnection("127.0.0.1", self.mesh.http_port, timeout=10)
            try:
                if path.endswith("chunked"):
                    pieces = (body[i:i + 8192] for i in range(0, len(body), 8192))
                    conn.request("POST", path, body=pieces, headers={"Host": "web"},
                                 encode_chunked=True)
                else:
                    conn.request("POST", path, body=body, headers={"Host": "web"})
                r = conn.getresponse()
                answer = json.loads(r.read())
                self.assertEqual((r.status, answer["body_size"]), (200, len(body)))
            finally:
                conn.close()

        def copies():
            received = {r["path"]: r for r in self.mesh.mirror.received
                        if r["path"] in ("/mirror/chunked", "/mirror/large")}
            return received if len(received) == 2 else None

        copies = wait_until(copies, WAIT_S, "the mirror to receive both streamed copies")
        for path, body in (("/mirror/chunked", chunked), ("/mirror/large", large)):
            self.assertEqual(copies[path]["headers"]["host"], "web-shadow")
            self.assertEqual(copies[path]["body_size"], len(body), path)
            self.assertEqual(copies[path]["body_sha256"], hashlib.sha256(body).hexdigest(), path)

    def test_mirror_half_of_the_requests(self):
        n = 200
        total_before = self.mesh.stat("cluster.mirror.upstream_rq_total") or 0
        for i in range(n):
            self.assertEqual(self.mesh.get(f"/mirror-half/{i}")[0], 200)
        # A copy may still be starting when its request has been answered: wait until every
        # copy counted has arrived (and none is in flight); one that never does fails here.
        def settled():
            copies = len([r for r in self.mesh.mirror.received
                          if r["path"].startswith("/mirror-half/")])
            counted = self.mesh.stat("cluster.mirror.upstream_rq_total") - total_before
            active = self.mesh.stat("cluster.mirror.upstream_rq_active")
            return copies if counted == copies and active == 0 else None
        copies = wait_until(settled, WAIT_S, "every copy counted to arrive")
        # Binomial(200, 0.5): outside [60, 140] with probability below 1e-8.
        self.assertTrue(60 <= copies <= 140, copies)

    def test_retries(self):
        before = self.mesh.stat("cluster.web-v1.upstream_rq_retry")
        status, _, body = self.mesh.get("/retry/fail/2/retry-key-a")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["attempt"], 3)
        self.assertEqual(self.mesh.stat("cluster.web-v1.upstream_rq_retry") - before, 2)
        # More failures than retries: the last 503 reaches the client.
        status, _, _ = self.mesh.get("/retry/fail/9/retry-key-b")
        self.assertEqual(status, 503)
        # No retry policy: the first 503 is the answer.
        status, _, body = self.mesh.get("/fail/1/retry-key-c")
        self.assertEqual(status, 503)

    def test_per_try_timeout_is_retried(self):
        before = self.mesh.stat("cluster.web-v1.upstream_rq_per_try_timeout")
        start = time.monotonic()
        status, _, body = self.mesh.get("/pertry/slowonce/2000/per-try-key")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["attempt"], 2)
        self.assertLess(time.monotonic() - start, 1.5)  # did not wait for the slow attempt
        self.assertEqual(self.mesh.stat("cluster.web-v1.upstream_rq_per_try_timeout") - before, 1)

    def test_tcp_proxy_with_half_close_and_weighted_clusters(self):
        self.assertEqual(tcp_exchange(self.mesh.tcp_port, b"hello" * 1000), b"tcp-a:" + b"hello" * 1000)
        seen = set()
        for _ in range(40):
            seen.add(tcp_exchange(self.mesh.split_tcp_port, b"x").split(b":")[0])
        self.assertEqual(seen, {b"tcp-a", b"tcp-b"})

    def test_tcp_proxy_connect_failures_eject_the_host(self):
        # Round robin over tcp-a and a port nobody listens on: the TCP proxy reports each
        # connection's outcome to outlier detection, and the second refused connection in a row
        # ejects the dead host (connect failures count as 503 when errors are not split).
        def exchange():
            try:
                return tcp_exchange(self.mesh.patchy_tcp_port, b"x")
            except OSError:  # meshproxy closed it before the client's half-close
                return b""

        answers = [exchange() for _ in range(12)]
        self.assertEqual(answers.count(b""), 2, answers)  # refused: closed without an answer
        self.assertEqual(answers[-6:], [b"tcp-a:x"] * 6, answers)
        self.assertEqual(
            self.mesh.stat("cluster.tcp-patchy.outlier_detection.ejections_enforced_total"), 1)

    def test_tls_inspector_routes_by_sni_and_passes_the_bytes_through(self):
        hello = client_hello("v1.web.example.com")

        def exchange(*pieces, pause=0.0):
            with socket.create_connection(("127.0.0.1", self.mesh.sni_port), timeout=5) as s:
                for piece in pieces:
                    time.sleep(pause)
                    s.sendall(piece)
                s.shutdown(socket.SHUT_WR)
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
                return data

        # The backend receives the ClientHello exactly as sent: peeked, not consumed.
        self.assertEqual(exchange(hello), b"tcp-a:" + hello)
        # Sent in two pieces, the second after a pause: meshproxy waits for the whole of it.
        self.assertEqual(exchange(hello[:40], hello[40:], pause=0.1), b"tcp-a:" + hello)
        other = client_hello("example.org")
        self.assertEqual(exchange(other), b"tcp-b:" + other)
        self.assertEqual(exchange(b"plain text"), b"tcp-b:plain text")
        # Part of a ClientHello and then the client's FIN: the connection is closed unrouted.
        try:
            self.assertEqual(exchange(hello[:40], pause=0.05), b"")
        except ConnectionResetError:
            pass
        # A client that sends nothing until after listener_filters_timeout goes on without SNI.
        self.assertEqual(exchange(b"late", pause=1.0), b"tcp-b:late")
        self.assertEqual(self.mesh.stat("listener.sni.tls_inspector.sni_found"), 3)

    def test_tcp_proxy_source_ip_hash_and_idle_timeout(self):
        # Every connection from 127.0.0.1 lands on the same ring position.
        seen = {tcp_exchange(self.mesh.sticky_tcp_port, b"x").split(b":")[0] for _ in range(20)}
        self.assertEqual(len(seen), 1, seen)
        # A connection silent both ways for 0.5 s is closed by the proxy (the backend would
        # wait 10 s for the client's half-close).
        with socket.create_connection(("127.0.0.1", self.mesh.sticky_tcp_port), timeout=5) as s:
            self.assertEqual(s.recv(100), b"")

    def test_admin_endpoints(self):
        self.mesh.get("/")
        status, dump = self.mesh.admin("/config_dump")
        self.assertEqual(status, 200)
        configs = json.loads(dump)["configs"]
        by_type = {c["@type"].rsplit(".", 1)[-1]: c for c in configs}
        self.assertEqual(by_type["BootstrapConfigDump"]["bootstrap"]["node"]["id"], NODE_ID)
        self.assertEqual(by_type["ClustersConfigDump"]["version_info"], f"v{self.mesh.version}")
        names = {c["cluster"]["name"] for c in by_type["ClustersConfigDump"]["dynamic_active_clusters"]}
        self.assertIn("web-v1", names)
        listener = by_type["ListenersConfigDump"]["dynamic_listeners"][0]["active_state"]["listener"]
        self.assertIn("filter_chains", listener)
        status, clusters = self.mesh.admin("/clusters")
        self.assertIn(f"web-v1::127.0.0.1:{self.mesh.v1.port}::health_flags::healthy", clusters)
        status, prom = self.mesh.admin("/stats/prometheus")
        self.assertIn('envoy_cluster_upstream_rq_total{envoy_cluster_name="web-v1"}', prom)
        self.assertIn('envoy_cluster_upstream_rq_xx{envoy_response_code_class="2",envoy_cluster_name="web-v1"}', prom)
        self.assertIn('envoy_cluster_upstream_cx_active{envoy_cluster_name="web-v1"}', prom)
        self.assertGreater(self.mesh.stat("listener.http.downstream_cx_total"), 0)
        self.assertGreater(self.mesh.stat("cluster.web-v1.upstream_rq_2xx"), 0)
        # Per status code, once one came: Envoy's upstream_rq_<code>.
        ok = self.mesh.stat("cluster.web-v1.upstream_rq_200")
        self.assertGreater(ok, 0)
        self.assertRegex(prom, r'envoy_cluster_upstream_rq\{envoy_response_code="200",'
                               r'envoy_cluster_name="web-v1"\} [1-9]')
        self.assertIsNone(self.mesh.stat("cluster.web-v1.upstream_rq_418"))
        self.assertEqual(self.mesh.admin("/ready"), (200, "LIVE\n"))
        self.assertEqual(self.mesh.admin("/quitquitquit")[0], 405)  # POST only


class OneWorkerMesh(Mesh):
    concurrency = 1  # connection pools are per worker, as Envoy's


class PendingQueueTest(SharedMeshTest):
    """Circuit breaking's pending queue: requests wait for a connection under max_connections."""

    mesh_class = OneWorkerMesh

    def test_requests_wait_for_a_connection_up_to_max_pending_requests(self):
        # max_connections 1, max_pending_requests 1: the first request holds the connection,
        # the second waits for it, the third overflows.
        stat = lambda name: self.mesh.stat(f"cluster.queued.{name}")
        results = {}
        def get(key, path):
            results[key] = self.mesh.get(path)
        first = threading.Thread(target=get, args=("first", "/queued/delay/1500"))
        first.start()
        wait_until(lambda: stat("upstream_cx_active") == 1, WAIT_S, "the connection to be in use")
        second = threading.Thread(target=get, args=("second", "/queued/second"))
        second.start()
        wait_until(lambda: stat("upstream_rq_pending_active") == 1, WAIT_S, "a pending request")
        status, headers, body = self.mesh.get("/queued/third")
        self.assertEqual((status, headers.get("x-envoy-overloaded")), (503, "true"))
        self.assertTrue(body.endswith(b"reset reason: overflow"), body)
        first.join(timeout=10)
        second.join(timeout=10)
        self.assertEqual(results["first"][0], 200)
        status, _, body = results["second"]
        self.assertEqual((status, json.loads(body)["path"]), (200, "/queued/second"))
        self.assertEqual(stat("upstream_rq_pending_total"), 1)
        self.assertEqual(stat("upstream_rq_pending_overflow"), 1)
        self.assertEqual(stat("upstream_rq_pending_active"), 0)
        self.assertEqual(stat("upstream_cx_total"), 1)  # the second reused the first's connection


    def test_connecting_connections_count_against_max_connections(self):
        # max_connections 3, max_pending_requests 15, and an origin that accepts nothing for now:
        # a burst of 20 requests opens 3 connections, still connecting (counted in
        # upstream_cx_active from the start, as Envoy counts them), queues 15 and overflows 2.
        # Once the origin accepts, the 15 are served over the 3 connections.
        stat = lambda name: self.mesh.stat(f"cluster.burst.{name}")
        origin = self.mesh.burst
        origin.pause()
        results = []
        def get(i):
            results.append(self.mesh.get(f"/burst/{i}", timeout=30))
        threads = [threading.Thread(target=get, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        wait_until(lambda: stat("upstream_rq_pending_overflow") == 2, WAIT_S, "two overflows")
        wait_until(lambda: stat("upstream_rq_pending_active") == 15, WAIT_S, "15 pending requests")
        self.assertEqual(stat("upstream_cx_active"), 3)
        self.assertEqual(stat("upstream_cx_total"), 3)
        origin.resume()
        for t in threads:
            t.join(timeout=30)
        statuses = sorted(status for status, _, _ in results)
        self.assertEqual(statuses, [200] * 18 + [503, 503])
        self.assertTrue(all(headers.get("x-envoy-overloaded") == "true"
                            for status, headers, _ in results if status == 503))
        self.assertEqual(origin.peak, 3)
        self.assertEqual(origin.accepted, 3)
        self.assertEqual(stat("upstream_cx_total"), 3)
        self.assertEqual(stat("upstream_rq_pending_total"), 15)
        self.assertGreaterEqual(stat("upstream_cx_overflow"), 17)  # each refused a connection
        self.assertLessEqual(stat("upstream_cx_active"), 3)


class PendingCancelTest(SharedMeshTest):
    """A queued request whose client gives up leaves the pending queue (upstream_rq_cancelled)."""

    mesh_class = OneWorkerMesh

    def test_a_client_that_closes_or_resets_leaves_the_pending_queue(self):
        # max_connections 1, max_pending_requests 1: the first request holds the connection;
        # each raw client below queues, then goes away, reset and then closed, and must give its
        # place back at once instead of holding it until the connection frees.
        stat = lambda name: self.mesh.stat(f"cluster.queued.{name}")
        results = {}
        def get(key, path):
            results[key] = self.mesh.get(path)
        first = threading.Thread(target=get, args=("first", "/queued/delay/4000"))
        first.start()
        wait_until(lambda: stat("upstream_cx_active") == 1, WAIT_S, "the connection to be in use")
        for cancelled, reset in ((1, True), (2, False)):
            s = socket.create_connection(("127.0.0.1", self.mesh.http_port), timeout=WAIT_S)
            s.sendall(b"GET /queued/gone HTTP/1.1\r\nHost: web\r\n\r\n")
            wait_until(lambda: stat("upstream_rq_pending_active") == 1, WAIT_S, "a pending request")
            if reset:  # RST instead of FIN
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
            wait_until(lambda: stat("upstream_rq_cancelled") == cancelled, WAIT_S,
                       "the request to leave the queue")
            self.assertEqual(stat("upstream_rq_pending_active"), 0)
        # The first still holds the connection: the next request queues (and is served after
        # it) instead of overflowing.
        status, _, body = self.mesh.get("/queued/next")
        self.assertEqual((status, json.loads(body)["path"]), (200, "/queued/next"))
        first.join(timeout=10)
        self.assertEqual(results["first"][0], 200)
        self.assertEqual(stat("upstream_rq_pending_total"), 3)
        self.assertEqual(stat("upstream_rq_pending_overflow"), 0)
        self.assertEqual(stat("upstream_cx_total"), 1)  # the gone requests never went upstream


def keep_alive_get(conn):
    """(status, Connection header) of a GET / for web on `conn`."""
    conn.request("GET", "/", headers={"Host": "web"})
    r = conn.getresponse()
    r.read()
    return r.status, r.getheader("Connection")


def http_connection(test, port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    test.addCleanup(conn.close)
    return conn


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except ConnectionRefusedError:
        return True


def with_inbound_listener(test, mesh):
    """Serves the outbound `http` listener and an INBOUND one on a port of its own; returns
    the listeners and that port, once it accepts."""
    inbound_port = free_port()
    listeners = [http_listener("http", mesh.http_port, "web-routes"),
                 dict(http_listener("inbound", inbound_port, "web-routes"),
                      traffic_direction="INBOUND")]
    mesh.wait_acked("lds", mesh.write(mesh.resources(listeners=listeners)))
    wait_until(lambda: not refused(inbound_port), WAIT_S, "the inbound listener")
    return listeners, inbound_port


class OwnMeshTest(unittest.TestCase):
    """A test with a Mesh of its own, whose logs are printed when the test fails."""

    def setUp(self):
        self.mesh = Mesh(self)

    def run(self, result=None):
        failures = len(result.failures) + len(result.errors) if result else 0
        outcome = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > failures:
            print(self.mesh.logs())
        return outcome


class ConfigUpdateTest(OwnMeshTest):
    """ACK/NACK, last good config, listener changes and reconnects."""

    def test_acks_every_type_with_version_and_nonce(self):
        version = f"v{self.mesh.version}"
        for kind in ("cds", "eds", "lds", "rds"):
            self.mesh.wait_acked(kind, version)
        first = self.mesh.requests()[0]
        self.assertEqual(first["node"], NODE_ID)
        self.assertEqual(first["type"], "cds")
        rds = self.mesh.requests("rds")[-1]
        self.assertEqual(rds["names"], ["web-routes"])
        eds = self.mesh.requests("eds")[-1]
        self.assertEqual(sorted(eds["names"]),
                         ["burst", "dead", "empty", "idle-upstream", "keepalive", "limited", "max-duration",
                          "max-requests",
                          "mirror", "named", FLAKY, "queued", "retry-limited", "sticky", "tcp-a", "tcp-b",
                          "tcp-patchy", "tcp-ring",
                          "trailers", "web-v1", "web-v2", "ws"])

    def test_invalid_route_is_nacked_and_the_last_good_config_keeps_serving(self):
        good = f"v{self.mesh.version}"
        self.mesh.wait_acked("rds", good)
        bad = self.mesh.write(self.mesh.resources(routes_override=routes("web-routes", regex="(unclosed")))
        nack = wait_until(lambda: [r for r in self.mesh.requests("rds") if "error" in r], WAIT_S,
                          "a NACK of the route config")[0]
        self.assertEqual(nack["version"], good)  # the last ACKed version, not the rejected one
        self.assertIn('RouteConfiguration "web-routes": virtual_hosts[0].routes[0].match.safe_regex.regex: '
                      'invalid regex "(unclosed"', nack["error"])
        self.mesh.wait_acked("cds", bad)  # the other types of that push were fine
        status, _, body = self.mesh.get("/regex/abc")
        self.assertEqual(status, 200, body)  # the old route still matches
        self.assertEqual(self.mesh.stat("control_plane.xds_nack"), 1)
        # The next valid version applies.
        fixed = self.mesh.write(self.mesh.resources(routes_override=routes("web-routes", extra_routes=[
            route("/new", {"direct_response": {"status": 202, "body": {"inline_string": "new"}}})])))
        self.mesh.wait_acked("rds", fixed)
        self.assertEqual(self.mesh.get("/new")[0], 202)

    def traffic_during(self, path, changes):
        """Three clients send GET `path` on keep-alive connections while `changes()` runs;
        every request's status, or the error that lost it."""
        statuses, stop = [], threading.Event()

        def traffic():
            conn = http.client.HTTPConnection("127.0.0.1", self.mesh.http_port, timeout=10)
            while not stop.is_set():
                try:
                    conn.request("GET", path, headers={"Host": "web"})
                    r = conn.getresponse()
                    r.read()
                    statuses.append(r.status)
                except Exception as e:  # any failure is a lost request
                    statuses.append(repr(e))
                    conn.close()
            conn.close()

        workers = [threading.Thread(target=traffic) for _ in range(3)]
        for w in workers:
            w.start()
        try:
            changes()
        finally:
            stop.set()
            for w in workers:
                w.join(timeout=10)
        return statuses

    def test_config_changes_mid_traffic_lose_no_request(self):
        def changes():
            for weights in ((50, 50), (0, 100), (100, 0), (75, 25)):
                version = self.mesh.write(self.mesh.resources(
                    routes_override=routes("web-routes", split=weights)))
                self.mesh.wait_acked("rds", version)
                time.sleep(0.2)

        statuses = self.traffic_during("/split", changes)
        self.assertGreater(len(statuses), 50)
        self.assertEqual([s for s in statuses if s != 200], [])

    def test_cluster_endpoint_and_listener_changes_mid_traffic_lose_no_request(self):
        # CDS, EDS and LDS change under traffic: the cluster's settings, its endpoints (the
        # host requests are on goes away and comes back), and the listener (its keep-alive
        # connections are drained: answered with Connection: close, and the client opens new
        # ones). No request fails.
        def web_v1(resources, ports=None, max_requests=None, idle=None):
            for cluster in resources["cds"]:
                if cluster["name"] == "web-v1" and max_requests:
                    cluster["circuit_breakers"] = {"thresholds": [{"max_requests": max_requests}]}
            if ports is not None:
                resources["eds"] = [assignment("web-v1", ports) if e["cluster_name"] == "web-v1"
                                    else e for e in resources["eds"]]
            if idle is not None:
                resources["lds"][0] = http_listener(
                    "http", self.mesh.http_port, "web-routes",
                    common_http_protocol_options={"idle_timeout": idle})
            return resources

        v1, v2 = self.mesh.v1.port, self.mesh.v2.port
        steps = (("cds", {"max_requests": 500}), ("eds", {"ports": [v1, v2]}),
                 ("eds", {"ports": [v2]}), ("lds", {"idle": "301s"}), ("cds", {"max_requests": 400}),
                 ("eds", {"ports": [v1]}), ("lds", {"idle": "302s"}))

        def changes():
            for kind, change in steps:
                version = self.mesh.write(web_v1(self.mesh.resources(), **change))
                self.mesh.wait_acked(kind, version)
                time.sleep(0.2)

        statuses = self.traffic_during("/delay/5", changes)
        self.assertGreater(len(statuses), 50)
        self.assertEqual([s for s in statuses if s != 200], [])
        self.assertGreater(self.mesh.stat("cluster.web-v1.upstream_cx_total"), 1)

    def test_removed_listener_stops_accepting_drains_and_new_one_binds(self):
        # A connection accepted before the listener goes away finishes normally (the drain).
        in_flight = socket.create_connection(("127.0.0.1", self.mesh.tcp_port), timeout=5)
        in_flight.sendall(b"before;")
        wait_until(lambda: self.mesh.stat("listener.tcp.downstream_cx_active") == 1, WAIT_S,
                   "the connection to be accepted")
        extra_port = free_port()
        listeners = [http_listener("http", self.mesh.http_port, "web-routes"),
                     tcp_listener("tcp-new", extra_port, cluster="tcp-b")]
        version = self.mesh.write(self.mesh.resources(listeners=listeners))
        self.mesh.wait_acked("lds", version)
        wait_until(lambda: tcp_exchange(extra_port, b"n") == b"tcp-b:n", WAIT_S, "the new listener")

        wait_until(lambda: refused(self.mesh.tcp_port), WAIT_S, "the removed listener to close")
        in_flight.sendall(b"after")
        in_flight.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = in_flight.recv(65536)
            if not chunk:
                break
            data += chunk
        in_flight.close()
        self.assertEqual(data, b"tcp-a:before;after")

    def test_listener_warms_until_its_route_config_arrives(self):
        # As Envoy: a new listener whose RouteConfiguration has not arrived is not bound
        # (connections are refused, never answered 404), and a changed listener waiting for a
        # new one leaves the old version serving; both go into service when RDS arrives.
        port = free_port()
        late = routes("late-routes")
        moved = routes("web-routes-2", extra_routes=[
            route("/moved", {"direct_response": {"status": 200, "body": {"inline_string": "moved"}}})])
        listeners = [http_listener("http", self.mesh.http_port, "web-routes-2"),
                     http_listener("late-http", port, "late-routes")]
        resources = self.mesh.resources(listeners=listeners)
        resources["rds"] = [routes("web-routes"), late, moved]
        version = self.mesh.write({**resources, "hold": ["rds"]})
        self.mesh.wait_acked("lds", version)
        wait_until(lambda: [r for r in self.mesh.requests("rds")
                            if "late-routes" in r["names"]], WAIT_S, "the RDS request for late-routes")
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        # The old version of "http" (web-routes, without /moved) keeps serving.
        self.assertEqual(self.mesh.get("/")[0], 200)
        self.assertEqual(json.loads(self.mesh.get("/moved")[2])["path"], "/moved")
        self.assertEqual(self.mesh.admin("/ready")[0], 200)

        version = self.mesh.write({**resources, "hold": []})
        self.mesh.wait_acked("rds", version)
        wait_until(lambda: self.mesh.get("/moved")[2] == b"moved", WAIT_S, "the new version of http")
        wait_until(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True,
                   WAIT_S, "late-http to listen")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/", headers={"Host": "web"})
        r = conn.getresponse()
        self.assertEqual((r.status, json.loads(r.read())["backend"]), (200, "web-v1"))
        conn.close()

    def test_listener_whose_port_is_taken_binds_once_it_frees(self):
        port = free_port()
        squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        squatter.bind(("127.0.0.1", port))
        squatter.listen(1)
        listeners = [http_listener("http", self.mesh.http_port, "web-routes"),
                     tcp_listener("late", port, cluster="tcp-a")]
        self.mesh.wait_acked("lds", self.mesh.write(self.mesh.resources(listeners=listeners)))
        wait_until(lambda: self.mesh.stat("listener.late.bind_errors"), WAIT_S, "a bind error")
        squatter.close()
        wait_until(lambda: tcp_exchange(port, b"z") == b"tcp-a:z", WAIT_S, "the late listener")

    def test_drain_listeners(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.mesh.http_port, timeout=10)
        conn.request("GET", "/", headers={"Host": "web"})
        r = conn.getresponse()
        r.read()
        self.assertIsNone(r.getheader("Connection"))  # keep-alive
        self.assertEqual(self.mesh.admin("/drain_listeners", method="POST")[0], 200)
        self.assertEqual(self.mesh.admin("/ready"), (503, "DRAINING\n"))

        wait_until(lambda: refused(self.mesh.http_port), WAIT_S, "the listeners to stop accepting")
        # The open connection is still served, and told to close.
        conn.request("GET", "/", headers={"Host": "web"})
        r = conn.getresponse()
        r.read()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.getheader("Connection"), "close")
        conn.close()

    def test_drain_listeners_inbound_only_and_graceful(self):
        # What pilot-agent asks when a pod terminates: only the INBOUND listeners drain; for
        # the drain time (--drain-time 1s here) they still accept but close every connection
        # after its response, then stop accepting. The outbound ones are untouched, so the
        # application can still call out.
        listeners, inbound_port = with_inbound_listener(self, self.mesh)
        get, connect = keep_alive_get, lambda port: http_connection(self, port)
        inbound, outbound = connect(inbound_port), connect(self.mesh.http_port)
        self.assertEqual(get(inbound), (200, None))
        self.assertEqual(get(outbound), (200, None))
        self.assertEqual(self.mesh.admin("/drain_listeners?inboundonly&graceful", method="POST"),
                         (200, "OK\n"))
        drained_at = time.monotonic()
        self.assertEqual(self.mesh.admin("/ready"), (503, "DRAINING\n"))
        # Draining: the open connection and a new one are answered, and told to close.
        self.assertEqual(get(inbound), (200, "close"))
        self.assertEqual(get(connect(inbound_port)), (200, "close"))
        # Outbound: kept alive, and new connections too.
        self.assertEqual(get(outbound), (200, None))
        self.assertEqual(get(connect(self.mesh.http_port)), (200, None))
        # After the drain time the inbound listener stops accepting, and stays closed through
        # an LDS update; the outbound one carries on.
        wait_until(lambda: refused(inbound_port), WAIT_S, "the inbound listener to close")
        self.assertGreater(time.monotonic() - drained_at, 0.9)
        listeners[0] = http_listener("http", self.mesh.http_port, "web-routes",
                                     common_http_protocol_options={"idle_timeout": "301s"})
        self.mesh.wait_acked("lds", self.mesh.write(self.mesh.resources(listeners=listeners)))
        self.assertTrue(refused(inbound_port))
        self.assertEqual(get(connect(self.mesh.http_port)), (200, None))
        self.assertEqual(self.mesh.admin("/drain_listeners?sometimes", method="POST"),
                         (400, "unknown query parameter: sometimes\n"))

    def test_a_filter_chain_only_update_leaves_other_chains_connections_alone(self):
        # As Envoy's filter-chain-only update: another chain added to the listener, or changed,
        # and the connections of the chain that stayed byte for byte keep going, HTTP/1.1 kept
        # alive and HTTP/2 without a GOAWAY.
        def with_other_chain(idle):
            listener = http_listener("http", self.mesh.http_port, "web-routes")
            other = json.loads(json.dumps(listener["filter_chains"][0]))
            other["filter_chain_match"] = {"destination_port": 1}
            other["filters"][0]["typed_config"]["common_http_protocol_options"] = {
                "idle_timeout": idle}
            listener["filter_chains"].append(other)
            return [listener]
        conn = http_connection(self, self.mesh.http_port)
        self.assertEqual(keep_alive_get(conn), (200, None))
        for idle in ("301s", "302s"):  # the other chain added, then changed
            self.mesh.wait_acked("lds", self.mesh.write(
                self.mesh.resources(listeners=with_other_chain(idle))))
            self.assertEqual(keep_alive_get(conn), (200, None))
        # The connection's own chain changes: it drains.
        listeners = with_other_chain("302s")
        listeners[0]["filter_chains"][0]["filters"][0]["typed_config"][
            "common_http_protocol_options"] = {"idle_timeout": "303s"}
        self.mesh.wait_acked("lds", self.mesh.write(self.mesh.resources(listeners=listeners)))
        self.assertEqual(keep_alive_get(conn), (200, "close"))

    def test_replaced_http_listener_closes_its_keep_alive_connection(self):
        # As Envoy's drain: a connection the old version of a listener accepted answers its
        # next request with Connection: close; new connections get the new version, kept alive.
        get = keep_alive_get
        old = http.client.HTTPConnection("127.0.0.1", self.mesh.http_port, timeout=10)
        self.assertEqual(get(old), (200, None))
        listeners = [http_listener("http", self.mesh.http_port, "web-routes",
                                   common_http_protocol_options={"idle_timeout": "301s"})]
        self.mesh.wait_acked("lds", self.mesh.write(self.mesh.resources(listeners=listeners)))
        self.assertEqual(get(old), (200, "close"))
        old.close()
        new = http.client.HTTPConnection("127.0.0.1", self.mesh.http_port, timeout=10)
        self.assertEqual(get(new), (200, None))
        self.assertEqual(get(new), (200, None))
        new.close()

    def test_quitquitquit_exits_cleanly(self):
        self.assertEqual(self.mesh.admin("/quitquitquit", method="POST")[0], 200)
        self.assertEqual(self.mesh.proxy.proc.wait(timeout=10), 0)

    def test_keeps_serving_while_the_control_plane_is_away_and_reconnects(self):
        port = self.mesh.ads_port
        version = f"v{self.mesh.version}"
        self.mesh.wait_acked("lds", version)
        self.mesh.ads.stop()
        for _ in range(5):
            self.assertEqual(self.mesh.get("/")[0], 200)
        ads = self.mesh.start_ads(port)
        # The new stream resumes from the ACKed versions.
        first = wait_until(lambda: [r for r in self.mesh.requests("cds")], WAIT_S, "a reconnect")[0]
        self.assertEqual(first["version"], version)
        self.assertEqual(first["node"], NODE_ID)
        self.mesh.wait_acked("rds", version)
        self.assertEqual(self.mesh.get("/")[0], 200)


class AdsClientTest(OwnMeshTest):
    """meshproxy's gRPC client (over its own HTTP/2) against a grpc++ server: large responses,
    the response size limit, gRPC statuses that end the stream, a server that is killed."""

    def proxy_log(self, text, start=0):
        return wait_until(lambda: [l for l in self.mesh.proxy.lines()[start:] if text in l],
                          WAIT_S, f"meshproxy to log {text!r}")[0]

    def restart_ads(self):
        """A new stream: the server reads fail.json as a stream starts."""
        port = self.mesh.ads_port
        self.mesh.ads.stop()
        self.mesh.start_ads(port)

    def test_response_over_4_mib_applies_through_flow_control(self):
        # 5 MiB in one EDS response: twenty times the stream window (so it arrives only as
        # meshproxy hands back window), and over grpc++'s default 4 MiB receive limit.
        big = assignment("big", [self.mesh.v1.port])
        big["endpoints"][0]["lb_endpoints"][0]["metadata"] = {
            "filter_metadata": {"test": {"padding": "x" * (5 << 20)}}}
        resources = self.mesh.resources(routes_override=routes("web-routes", extra_routes=[
            route("/big", {"route": {"cluster": "big"}})]))
        resources["cds"].append(eds_cluster("big"))
        resources["eds"].append(big)
        version = self.mesh.write(resources)
        sent = wait_until(lambda: [l for l in self.mesh.ads.json_lines()
                                   if l.get("event") == "response" and l["type"] == "eds"
                                   and "big" in l["names"]], WAIT_S, "the EDS response with big")[0]
        self.assertGreater(sent["bytes"], 5 << 20)
        wait_until(lambda: [r for r in self.mesh.requests("eds")
                            if r["nonce"] == sent["nonce"] and "error" not in r],
                   WAIT_S, "meshproxy to ACK it")
        self.mesh.wait_acked("rds", version)
        status, _, body = self.mesh.get("/big")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["backend"], "web-v1")
        self.assertEqual(self.mesh.stat("control_plane.xds_nack"), 0)

    def test_response_over_the_limit_ends_the_stream_and_the_last_config_keeps_serving(self):
        self.mesh.wait_acked("eds", f"v{self.mesh.version}")
        with open(os.path.join(self.mesh.dir, "pad.json"), "w") as f:
            json.dump({"eds": (64 << 20) + 1}, f)
        start = len(self.mesh.proxy.lines())
        self.mesh.write(self.mesh.resources())
        line = self.proxy_log("failed: 8 gRPC message of", start)
        self.assertIn("larger than the limit of 67108864", line)
        self.assertEqual(self.mesh.get("/")[0], 200)
        os.remove(os.path.join(self.mesh.dir, "pad.json"))
        version = self.mesh.write(self.mesh.resources())  # served on the new stream
        self.mesh.wait_acked("eds", version)
        self.assertEqual(self.mesh.get("/")[0], 200)

    def test_non_ok_grpc_status_ends_the_stream_and_it_reconnects(self):
        self.mesh.wait_acked("lds", f"v{self.mesh.version}")
        connects = self.mesh.stat("control_plane.connected_state_changes")
        fail = os.path.join(self.mesh.dir, "fail.json")
        # In trailers after responses (grpc-message percent-encoded by the server).
        with open(fail, "w") as f:
            json.dump({"code": 8, "message": "too busy: 100% sure", "when": "ack"}, f)
        start = len(self.mesh.proxy.lines())
        self.restart_ads()
        self.proxy_log("failed: 8 too busy: 100% sure", start)
        self.assertEqual(self.mesh.get("/")[0], 200)
        # In a trailers-only response.
        with open(fail, "w") as f:
            json.dump({"code": 14, "message": "not yet", "when": "open"}, f)
        start = len(self.mesh.proxy.lines())
        self.proxy_log("failed: 14 not yet", start)
        self.assertEqual(self.mesh.get("/")[0], 200)
        os.remove(fail)
        version = self.mesh.write(self.mesh.resources())
        self.mesh.wait_acked("lds", version)
        self.assertGreater(self.mesh.stat("control_plane.connected_state_changes"), connects)

    def test_reconnects_after_the_server_is_killed(self):
        port = self.mesh.ads_port
        self.mesh.wait_acked("rds", f"v{self.mesh.version}")
        start = len(self.mesh.proxy.lines())
        self.mesh.ads.proc.kill()
        self.mesh.ads.wait(5)
        self.proxy_log("failed: 14 connection lost", start)
        self.assertEqual(self.mesh.get("/")[0], 200)
        self.mesh.start_ads(port)
        version = self.mesh.write(self.mesh.resources(routes_override=routes("web-routes", extra_routes=[
            route("/after", {"direct_response": {"status": 203}})])))
        self.mesh.wait_acked("rds", version)
        self.assertEqual(self.mesh.requests("cds")[0]["node"], NODE_ID)
        self.assertEqual(self.mesh.get("/after")[0], 203)


class BootstrapFileTest(OwnMeshTest):
    """meshproxy started with --bootstrap FILE alone."""

    def start(self, bootstrap):
        path = os.path.join(self.mesh.dir, "bootstrap.json")
        with open(path, "w") as f:
            f.write(bootstrap if isinstance(bootstrap, str) else json.dumps(bootstrap))
        return self.mesh.children.start("meshproxy-bootstrap", [self.mesh.proxy_bin,
                                                                "--bootstrap", path])

    def test_node_addresses_and_ports_come_from_the_file(self):
        self.mesh.proxy.stop()  # its listeners' ports go to the new one
        admin_port = free_port()
        node_id = "sidecar~10.1.2.3~boot-7f9.default~default.svc.cluster.local"
        self.start({"node": {"id": node_id, "cluster": "boot.default", "metadata": {
                        "NAMESPACE": "default", "NAME": "boot-7f9",
                        "LABELS": {"app": "boot"}}},
                    "xds_address": f"127.0.0.1:{self.mesh.ads_port}",
                    "admin_address": "127.0.0.1", "admin_port": admin_port,
                    "readiness_port": 0, "concurrency": 1})

        def admin(path):
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        wait_until(lambda: admin("/ready") == (200, "LIVE\n"), WAIT_S, "meshproxy to be ready")
        # Each stream's first request names its node: the last stream is the new proxy's.
        self.assertEqual([r["node"] for r in self.mesh.requests() if "node" in r][-1], node_id)
        dump = json.loads(admin("/config_dump")[1])
        node = dump["configs"][0]["bootstrap"]["node"]
        self.assertEqual((node["id"], node["metadata"]["LABELS"]), (node_id, {"app": "boot"}))
        self.assertEqual(self.mesh.get("/")[0], 200)  # and it serves the mesh's listeners

    def test_a_bad_file_is_named_with_its_field(self):
        proxy = self.start({"node": {"id": 7}})
        self.assertNotEqual(proxy.proc.wait(timeout=10), 0)
        self.assertIn("bootstrap.json: node:", "\n".join(proxy.lines()))
        proxy = self.start("not json")
        self.assertNotEqual(proxy.proc.wait(timeout=10), 0)
        self.assertIn("bootstrap.json: not a JSON object", "\n".join(proxy.lines()))


class TerminationDrainTest(OwnMeshTest):
    """meshproxy with --termination-drain-duration, as the injection template runs it."""

    def setUp(self):
        self.mesh = Mesh(self, proxy_args=("--termination-drain-duration", "1s"))

    def test_sigterm_drains_the_inbound_listeners_then_exits(self):
        # As pilot-agent: on SIGTERM the inbound listeners drain (responses close their
        # connections) while outbound calls keep working; meshproxy exits after the duration.
        _, inbound_port = with_inbound_listener(self, self.mesh)
        inbound = http_connection(self, inbound_port)
        outbound = http_connection(self, self.mesh.http_port)
        self.assertEqual(keep_alive_get(inbound), (200, None))
        self.mesh.proxy.proc.send_signal(signal.SIGTERM)
        signalled_at = time.monotonic()
        wait_until(lambda: self.mesh.admin("/ready") == (503, "DRAINING\n"), WAIT_S,
                   "meshproxy to drain")
        self.assertEqual(keep_alive_get(inbound), (200, "close"))
        self.assertEqual(keep_alive_get(outbound), (200, None))
        self.assertEqual(self.mesh.proxy.proc.wait(timeout=10), 0)
        self.assertGreater(time.monotonic() - signalled_at, 0.9)


if __name__ == "__main__":
    unittest.main()
