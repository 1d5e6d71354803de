"""meshproxy with the real meshpilot, in a private network namespace.

The test re-runs itself under `unshare --net` (a fresh network namespace with only loopback),
so the well-known ports (15001, 15000, 15010, ...) are its own and everything it creates
disappears with it. Inside:

1. meshpilot serves a folder of Kubernetes YAML (Services with cluster IPs, EndpointSlices
   pointing at real backends on loopback); meshproxy connects and must ACK every type:
   meshpilot's /debug/syncz shows acked == sent for CDS, EDS, LDS and RDS and no NACK.
2. With iptables (as istio-iptables does: nat OUTPUT to 15001, except meshproxy's own uid
   1337), a client's plain request to a Service clusterIP:port is intercepted, handed by
   virtualOutbound to the listener of its original destination, and routed to the backend;
   a gRPC call to a `grpc` port goes over HTTP/2 both ways (the cluster meshpilot sends asks
   for HTTP/2) to a real gRPC server; a VirtualService tcp rule splits connections by weight.
3. As the server-side sidecar of a pod (inbound capture to 15006), meshproxy enforces the
   pod's AuthorizationPolicies: HTTP requests get 403 "RBAC: access denied", TCP connections
   are closed, and a policy edit takes effect without a restart; a `connection.sni` condition
   admits TLS passed through to a TCP port by its ClientHello's SNI, HTTP to an unnamed port is
   carried as bytes, and HTTP to a port no Service declares takes Istio's catch-all HTTP chain.
4. Locality load balancing for a sidecar with a locality: failover keeps requests in its zone,
   distribute weights spread them as the DestinationRule says.
5. VirtualService tls rules on an HTTPS port: meshproxy reads the SNI of real TLS clients'
   ClientHellos (without consuming them) and passes each connection through, unmodified, to
   the backend its rule names (by exact and wildcard SNI, weighted); other SNIs and plaintext
   match no filter chain and are closed, as in Istio.

Exit code 77 (ctest: skipped) when network namespaces are not available.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (POD_IP, PROXY_UID, Backend, Children, LogsOnFailure, TcpEchoBackend,  # noqa: E402
                     TlsBackend, WebSocketEchoBackend, binary, capture_outbound, config_dump_has,
                     free_port, http_json, main_in_network_namespace, read_websocket_frame,
                     reset_network, run, self_signed_cert, start_meshpilot, start_sidecar,
                     tcp_exchange, tls_exchange, wait_until, websocket_accept, websocket_connect,
                     websocket_frame)

NODE_ID = "sidecar~127.0.0.1~client.default~default.svc.cluster.local"
WAIT_S = 20


def yaml_for(web_port, db_port, echo_port, address="127.0.0.1"):
    return f"""apiVersion: v1
kind: Namespace
metadata:
  name: default
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
spec:
  clusterIP: 10.96.0.50
  selector:
    app: web
  ports:
  - name: http
    port: 80
    protocol: TCP
---
apiVersion: v1
kind: Service
metadata:
  name: db
  namespace: default
spec:
  clusterIP: 10.96.0.60
  selector:
    app: db
  ports:
  - name: tcp-db
    port: 3306
    protocol: TCP
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels:
    kubernetes.io/service-name: web
addressType: IPv4
ports:
- name: http
  port: {web_port}
  protocol: TCP
endpoints:
- addresses: [{address}]
  conditions:
    ready: true
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-1
  namespace: default
  labels:
    kubernetes.io/service-name: db
addressType: IPv4
ports:
- name: tcp-db
  port: {db_port}
  protocol: TCP
endpoints:
- addresses: [{address}]
  conditions:
    ready: true
---
apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: default
spec:
  clusterIP: 10.96.0.70
  selector:
    app: echo
  ports:
  - name: grpc
    port: 7070
    protocol: TCP
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-1
  namespace: default
  labels:
    kubernetes.io/service-name: echo
addressType: IPv4
ports:
- name: grpc
  port: {echo_port}
  protocol: TCP
endpoints:
- addresses: [127.0.0.1]
  conditions:
    ready: true
"""


class MeshpilotTest(LogsOnFailure):

    @classmethod
    def setUpClass(cls):
        cls.meshpilot_bin = binary("MESHPILOT_BIN", "build/release/controlplane/meshpilot")
        cls.proxy_bin = binary("MESHPROXY_BIN", "build/release/sidecar/meshproxy")
        cls.echo_bin = binary("ECHO_SERVER_BIN", "build/release/tests/conformance/echo_server")
        cls.client_bin = binary("XDS_CLIENT_BIN", "build/release/tests/conformance/xds_echo_client")

    def setUp(self):
        self.children = Children()
        self.addCleanup(reset_network)
        self.addCleanup(self.children.stop)
        self.dir = tempfile.mkdtemp(prefix="meshproxy-meshpilot-")
        os.chmod(self.dir, 0o755)
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.web = Backend("web-v1")
        self.db = TcpEchoBackend("db")
        self.addCleanup(self.web.stop)
        self.addCleanup(self.db.stop)
        self.echo_port = free_port()
        echo = self.children.start("echo", [self.echo_bin, "--port", str(self.echo_port), "--name", "echo-1"])
        wait_until(lambda: any("listening on" in l for l in echo.lines()), WAIT_S, "echo_server")
        with open(os.path.join(self.dir, "mesh.yaml"), "w") as f:
            f.write(yaml_for(self.web.port, self.db.port, self.echo_port))
        self.meshpilot = start_meshpilot(self.children, self.meshpilot_bin, self.dir)
        self.proxy = self.start_proxy("--node-id", NODE_ID)

    def start_proxy(self, *identity):
        return start_sidecar(self.children, self.proxy_bin, *identity)

    def require_iptables(self):
        if not shutil.which("iptables"):
            self.skipTest("iptables is not installed (scripts/setup.sh installs it)")



    def logs(self):
        return self.children.logs()

    def synced(self, node_id=NODE_ID):
        for stream in http_json("http://127.0.0.1:15014/debug/syncz"):
            if stream["proxy"] != node_id:
                continue
            types = stream["types"]
            if len(types) == 4 and all(t["sent_version"] and t["acked_version"] == t["sent_version"]
                                       for t in types.values()):
                return stream
        return None

    def test_meshproxy_acks_everything_meshpilot_sends(self):
        try:
            stream = wait_until(self.synced, WAIT_S, "acked == sent for all four types")
        except AssertionError:
            raise AssertionError(json.dumps(http_json("http://127.0.0.1:15014/debug/syncz"),
                                            indent=1))
        for name, t in stream["types"].items():
            self.assertEqual(t["nacked_version"], "", f"{name}: {t['nack_error']}")
            self.assertEqual(t["rejects"], 0, name)
        # A proxy that accepts everything runs current routes: nothing rejected, nothing held.
        self.assertEqual(stream["rejected"], [])
        self.assertEqual(stream["held"], {})
        dump = http_json("http://127.0.0.1:15000/config_dump")
        listeners = {l["name"] for c in dump["configs"] for l in c.get("dynamic_listeners", [])}
        self.assertIn("virtualOutbound", listeners)
        self.assertIn("0.0.0.0_80", listeners)
        self.assertIn("10.96.0.60_3306", listeners)
        self.assertIn("0.0.0.0_7070", listeners)
        routes = {r["route_config"]["name"] for c in dump["configs"]
                  for r in c.get("dynamic_route_configs", [])}
        self.assertIn("80", routes)

    def test_intercepted_traffic_to_cluster_ips_is_routed(self):
        self.require_iptables()
        wait_until(self.synced, WAIT_S, "meshproxy to sync")
        capture_outbound()
        # HTTP to the web Service's cluster IP, by IP and by name in Host.
        for host in ("10.96.0.50", "web.default.svc.cluster.local"):
            req = urllib.request.Request("http://10.96.0.50/hello", headers={"Host": host})
            with urllib.request.urlopen(req, timeout=5) as r:
                info = json.loads(r.read())
            self.assertEqual(info["backend"], "web-v1")
            self.assertIn("x-request-id", info["headers"])  # it went through meshproxy
        # gRPC to the echo Service: HTTP/2 in, HTTP/2 out, trailers back.
        call = subprocess.run([self.client_bin, "--target", "10.96.0.70:7070", "--count", "3",
                               "--interval_ms", "0", "--print_trailer", "x-echo-backend"],
                              capture_output=True, text=True, timeout=30)
        self.assertEqual(call.returncode, 0, call.stdout + call.stderr)
        self.assertEqual(call.stdout.splitlines()[:3], ["ok echo-1 trailer=echo-1"] * 3)
        # TCP to the db Service, half-close carried through.
        self.assertEqual(tcp_exchange(3306, b"select 1", host="10.96.0.60"), b"db:select 1")
        stats = urllib.request.urlopen("http://127.0.0.1:15000/stats", timeout=5).read().decode()
        self.assertIn("listener.virtualOutbound.downstream_cx_total", stats)
        self.assertRegex(stats, r"listener\.0\.0\.0\.0_80\.downstream_cx_total: [1-9]")
        self.assertRegex(
            stats, r"cluster\.outbound\|7070\|\|echo\.default\.svc\.cluster\.local\.upstream_rq_2xx: 3")

    def test_websocket_through_meshpilots_config(self):
        # meshpilot allows WebSocket upgrades on every HTTP connection manager, as istiod
        # does: a WebSocket to the chat Service's cluster IP becomes a tunnel to its backend.
        self.require_iptables()
        chat = WebSocketEchoBackend("chat")
        self.addCleanup(chat.stop)
        self.write_mesh(yaml_for(self.web.port, self.db.port, self.echo_port)
                        + chat_yaml(chat.port))
        wait_until(lambda: config_dump_has("outbound|80||chat.default.svc.cluster.local"),
                   WAIT_S, "meshproxy to get the chat Service")
        capture_outbound()
        conn, reader, status, headers, key = websocket_connect(
            self, "10.96.0.80", 80, "/room", authority="chat")
        self.assertEqual(status, "HTTP/1.1 101 Switching Protocols", headers)
        self.assertEqual(headers["sec-websocket-accept"], websocket_accept(key))
        conn.sendall(websocket_frame(0x1, b"hi", mask=True))
        self.assertEqual(read_websocket_frame(reader), (0x1, b"chat:hi"))
        conn.sendall(websocket_frame(0x8, b"", mask=True))
        self.assertEqual(read_websocket_frame(reader), (0x8, b""))

    def test_authorization_policies_are_enforced_inbound(self):
        self.require_iptables()
        # This test's meshproxy is the sidecar of pod web-1 (10.1.0.2, app=web), serving both
        # Services on that pod; the client-side proxy of setUp would share its ports.
        self.proxy.stop()
        run("ip", "addr", "add", f"{POD_IP}/32", "dev", "lo")
        # istio-iptables' inbound capture, for traffic that starts in this namespace.
        run("iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", f"{POD_IP}/32", "-m",
            "owner", "!", "--uid-owner", str(PROXY_UID), "-j", "REDIRECT", "--to-ports", "15006")
        web, db = self.web.port, self.db.port
        policies = authz_yaml(web, db)
        self.write_mesh(yaml_for(web, db, self.echo_port, POD_IP) + policies)
        self.proxy = self.start_proxy("--pod-name", "web-1", "--namespace", "default",
                                      "--pod-ip", POD_IP, "--labels", "app=web")
        wait_until(lambda: config_dump_has("envoy.filters.http.rbac", "envoy.filters.network.rbac"),
                   WAIT_S, "the workload proxy to get the policies")

        def status(method, path):
            req = urllib.request.Request(f"http://{POD_IP}:{web}{path}", method=method,
                                         data=b"x" if method == "POST" else None)
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode()

        code, info = status("GET", "/public/index")
        self.assertEqual(code, 200, info)
        self.assertIn("x-request-id", info["headers"])  # it went through meshproxy
        self.assertEqual(status("POST", "/public/index"), (403, "RBAC: access denied"))
        self.assertEqual(status("GET", "/private"), (403, "RBAC: access denied"))
        # DENY wins over ALLOW.
        self.assertEqual(status("GET", "/public/secret"), (403, "RBAC: access denied"))
        # The second ALLOW rule: POST from the pod's own address block.
        self.assertEqual(status("POST", "/upload")[0], 200)
        # TCP: the HTTP-only ALLOW rule does not apply to it; the ports-only one does.
        self.assertEqual(tcp_exchange(db, b"select 1", host=POD_IP), b"db:select 1")

        # An edit: deny TCP from the pod's block. The connection is closed, nothing echoed.
        self.write_mesh(yaml_for(web, db, self.echo_port, POD_IP) + policies + f"""---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: db-deny-local
  namespace: default
spec:
  selector:
    matchLabels:
      app: web
  action: DENY
  rules:
  - from:
    - source:
        ipBlocks: ["10.1.0.0/24"]
    to:
    - operation:
        ports: ["{db}"]
""")

        def tcp_refused():
            try:
                return tcp_exchange(db, b"select 1", host=POD_IP) == b""
            except OSError:
                return True
        wait_until(tcp_refused, WAIT_S, "the DENY policy to close TCP connections")
        self.assertEqual(status("GET", "/public/index")[0], 200)  # HTTP still allowed
        stats = urllib.request.urlopen("http://127.0.0.1:15000/stats", timeout=5).read().decode()
        self.assertRegex(stats, r"rbac_denied: [1-9]")

    def test_inbound_connection_sni_and_undeclared_ports(self):
        """As the server-side sidecar: an AuthorizationPolicy on connection.sni admits TLS
        passed through to a TCP port by the SNI of its ClientHello (the inbound tls_inspector);
        HTTP to an unnamed (TCP) port is carried as bytes; HTTP to a port no Service declares
        goes through Istio's catch-all HTTP chain (the http_inspector found HTTP/1.1)."""
        self.require_iptables()
        self.proxy.stop()
        run("ip", "addr", "add", f"{POD_IP}/32", "dev", "lo")
        run("iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", f"{POD_IP}/32", "-m",
            "owner", "!", "--uid-owner", str(PROXY_UID), "-j", "REDIRECT", "--to-ports", "15006")
        cert, key = self_signed_cert(self.dir, ["allowed.example", "denied.example"])
        secure, plain = TlsBackend("secure", cert, key), Backend("plain")
        undeclared = Backend("undeclared", host=POD_IP)  # the passthrough goes to POD_IP:PORT
        for b in (secure, plain, undeclared):
            self.addCleanup(b.stop)
        services = ""
        for name, ip, port in (("secure", "10.96.0.91", secure.port),
                               ("plain", "10.96.0.92", plain.port)):
            services += f"""---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  clusterIP: {ip}
  ports:
  - {{port: {port}, protocol: TCP}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: default
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports:
- {{port: {port}, protocol: TCP}}
endpoints:
- addresses: [{POD_IP}]
"""
        policy = f"""---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: by-sni, namespace: default}}
spec:
  selector:
    matchLabels: {{app: web}}
  action: ALLOW
  rules:
  - to:
    - operation: {{ports: ["{secure.port}"]}}
    when:
    - key: connection.sni
      values: ["allowed.example"]
  - to:
    - operation: {{ports: ["{plain.port}", "{undeclared.port}"]}}
"""
        self.write_mesh(yaml_for(self.web.port, self.db.port, self.echo_port, POD_IP)
                        + services + policy)
        self.proxy = self.start_proxy("--pod-name", "web-1", "--namespace", "default",
                                      "--pod-ip", POD_IP, "--labels", "app=web")
        wait_until(lambda: config_dump_has(f"inbound|{secure.port}||",
                                           "envoy.filters.listener.http_inspector",
                                           "requested_server_name"),
                   WAIT_S, "the workload proxy to get its inbound listener")

        def closed(exchange):
            try:
                return exchange() == b""
            except OSError:  # reset, or the TLS handshake cut short (ssl.SSLError)
                return True

        # The TLS session ends at the backend: meshproxy only read the ClientHello's SNI.
        self.assertEqual(tls_exchange(POD_IP, secure.port, "allowed.example", cert),
                         b"secure sni=allowed.example:hello")
        self.assertTrue(closed(lambda: tls_exchange(POD_IP, secure.port, "denied.example", cert)))
        # Plaintext HTTP to the unnamed port: carried as bytes (no x-request-id added).
        with urllib.request.urlopen(f"http://{POD_IP}:{plain.port}/x", timeout=5) as r:
            info = json.loads(r.read())
        self.assertEqual(info["backend"], "plain")
        self.assertNotIn("x-request-id", info["headers"])
        # A port no Service declares: HTTP/1.1 goes through the catch-all HTTP chain.
        with urllib.request.urlopen(f"http://{POD_IP}:{undeclared.port}/y", timeout=5) as r:
            info = json.loads(r.read())
        self.assertEqual(info["backend"], "undeclared")
        self.assertIn("x-request-id", info["headers"])
        stats = urllib.request.urlopen("http://127.0.0.1:15000/stats", timeout=5).read().decode()
        self.assertRegex(stats, r"listener\.virtualInbound\.tls_inspector\.sni_found: 2\n")
        self.assertRegex(stats, r"listener\.virtualInbound\.http_inspector\.http11_found: 1\n")
        self.assertRegex(stats, r"listener\.virtualInbound\.rbac_denied: 1\n")
        # The unnamed port's connection went through meshproxy's TCP proxy.
        self.assertIn(f"cluster.inbound|{plain.port}||.upstream_cx_total: 1\n", stats)

    def test_tcp_routes_split_connections_by_weight(self):
        self.require_iptables()
        v2 = TcpEchoBackend("db-v2")
        self.addCleanup(v2.stop)
        # The db Service gets a second endpoint (joined with Pod db-v2 by targetRef; the first
        # joins db-v1 by address), subsets by its Pods' version label, and a
        # VirtualService tcp rule sending 80% of connections to v1 and 20% to v2.
        self.write_mesh(yaml_for(self.web.port, self.db.port, self.echo_port) + tcp_split_yaml(v2.port))
        capture_outbound()

        wait_until(lambda: config_dump_has("outbound|3306|v2|db.default.svc.cluster.local"),
                   WAIT_S, "meshproxy to get the tcp route")
        answers = [tcp_exchange(3306, b"q", host="10.96.0.60").split(b":")[0]
                   for _ in range(200)]
        v1, v2_count = answers.count(b"db"), answers.count(b"db-v2")
        self.assertEqual(v1 + v2_count, 200, answers)
        # 80/20 over 200 connections: sd is about 5.7; 5 sd either way.
        self.assertGreater(v1, 130)
        self.assertLess(v1, 190)

    def test_locality_failover_and_distribute(self):
        self.require_iptables()
        # web gets a second endpoint in another zone; each endpoint's Pod says where it runs.
        # The client's sidecar runs in r1/z1.
        z2 = Backend("web-z2")
        self.addCleanup(z2.stop)
        self.proxy.stop()
        base = yaml_for(self.web.port, self.db.port, self.echo_port) + locality_yaml(z2.port)
        self.write_mesh(base + web_rule_yaml("outlierDetection: {consecutive5xxErrors: 5}"))
        self.proxy = self.start_proxy("--node-id", NODE_ID, "--locality", "r1/z1")
        capture_outbound()

        def backends(n):
            answers = []
            for _ in range(n):
                req = urllib.request.Request("http://10.96.0.50/hello", headers={"Host": "web"})
                with urllib.request.urlopen(req, timeout=5) as r:
                    answers.append(json.loads(r.read())["backend"])
            return answers

        wait_until(lambda: backends(20) == ["web-v1"] * 20, WAIT_S,
                   "failover: every request stays in the proxy's zone")
        # distribute: from r1/z1, 20% stay in z1 and 80% go to z2.
        self.write_mesh(base + web_rule_yaml(
            "loadBalancer: {localityLbSetting: {distribute: [{from: r1/z1/*, "
            "to: {'r1/z1/*': 20, 'r1/z2/*': 80}}]}}"))
        wait_until(lambda: "web-z2" in backends(20), WAIT_S, "the distribute weights")
        answers = backends(200)
        # 80/20 over 200 requests: sd about 5.7; 5 sd either way.
        self.assertGreater(answers.count("web-z2"), 130, answers.count("web-z2"))
        self.assertLess(answers.count("web-z2"), 190, answers.count("web-z2"))

        # Failover: the endpoint in the proxy's zone starts failing. After 5 5xx in a row
        # outlier detection ejects it, and its priority's traffic spills over to the next
        # priority, the other zone (Envoy's priority load), rather than ending in 503s.
        self.write_mesh(base + web_rule_yaml("outlierDetection: {consecutive5xxErrors: 5}"))
        wait_until(lambda: backends(20) == ["web-v1"] * 20, WAIT_S, "failover again")

        def answer():
            req = urllib.request.Request("http://10.96.0.50/hello", headers={"Host": "web"})
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    return json.loads(r.read())["backend"]
            except urllib.error.HTTPError as e:
                return e.code

        self.web.status = 503
        # Istio's default retries (503 included, 2 of them) make the 5 failures in 2 requests:
        # the first ends in a 503, the second's last attempt goes to the other zone.
        self.assertEqual([answer() for _ in range(2)], [503, "web-z2"])
        self.assertEqual([answer() for _ in range(20)], ["web-z2"] * 20)
        clusters = urllib.request.urlopen("http://127.0.0.1:15000/clusters",
                                          timeout=5).read().decode()
        web = "outbound|80||web.default.svc.cluster.local::127.0.0.1:"
        self.assertIn(f"{web}{self.web.port}::health_flags::/failed_outlier_check\n", clusters)
        self.assertIn(f"{web}{self.web.port}::priority::0\n", clusters)
        self.assertIn(f"{web}{z2.port}::priority::1\n", clusters)

    def test_tls_routes_pick_backends_by_sni(self):
        self.require_iptables()
        hosts = ["secure.default.svc.cluster.local", "*.secure.default.svc.cluster.local",
                 "other.example"]
        cert, key = self_signed_cert(self.dir, hosts)
        v1, v2 = TlsBackend("secure-v1", cert, key), TlsBackend("secure-v2", cert, key)
        self.addCleanup(v1.stop)
        self.addCleanup(v2.stop)
        self.write_mesh(yaml_for(self.web.port, self.db.port, self.echo_port)
                        + tls_routes_yaml(v1.port, v2.port))
        capture_outbound()
        wait_until(lambda: config_dump_has("outbound|443|v2|secure.default.svc.cluster.local",
                                           "envoy.filters.listener.tls_inspector"),
                   WAIT_S, "meshproxy to get the tls routes")

        def ask(sni):
            return tls_exchange("10.96.0.90", 443, sni, cert).decode()

        def closed(exchange):
            try:
                return exchange() == b""
            except OSError:  # reset, or the TLS handshake cut short (ssl.SSLError)
                return True

        # The backend's TLS session saw the client's own SNI: the bytes went through as sent.
        self.assertEqual(ask("v1.secure.default.svc.cluster.local"),
                         "secure-v1 sni=v1.secure.default.svc.cluster.local:hello")
        self.assertEqual(ask("v2.secure.default.svc.cluster.local"),
                         "secure-v2 sni=v2.secure.default.svc.cluster.local:hello")
        self.assertEqual(ask("secure.default.svc.cluster.local").split(" ")[0], "secure-v2")
        # OpenSSL's own client, as a user would try it.
        s_client = subprocess.run(
            ["openssl", "s_client", "-connect", "10.96.0.90:443", "-servername",
             "v1.secure.default.svc.cluster.local", "-CAfile", cert, "-verify_return_error",
             "-quiet"], input=b"from-s_client\n", capture_output=True, timeout=10)
        self.assertIn(b"secure-v1 sni=v1.secure.default.svc.cluster.local:from-s_client",
                      s_client.stdout, s_client.stderr)
        # The wildcard rule splits 25/75 (200 connections: sd about 6.1; 5 sd either way).
        answers = [ask("any.secure.default.svc.cluster.local").split(" ")[0]
                   for _ in range(200)]
        self.assertEqual(answers.count("secure-v1") + answers.count("secure-v2"), 200)
        self.assertGreater(answers.count("secure-v1"), 19, answers.count("secure-v1"))
        self.assertLess(answers.count("secure-v1"), 81, answers.count("secure-v1"))
        # No rule for this SNI, nor for plaintext: no filter chain, the connection is closed.
        self.assertTrue(closed(lambda: ask("other.example").encode()))
        self.assertTrue(closed(lambda: tcp_exchange(443, b"plain", host="10.96.0.90")))
        stats = urllib.request.urlopen("http://127.0.0.1:15000/stats", timeout=5).read().decode()
        self.assertRegex(stats, r"listener\.10\.96\.0\.90_443\.tls_inspector\.sni_found: 205\n")
        self.assertRegex(stats, r"listener\.10\.96\.0\.90_443\.tls_inspector\.tls_not_found: 1\n")
        self.assertRegex(stats, r"listener\.10\.96\.0\.90_443\.no_filter_chain_match: 2\n")

    def write_mesh(self, text):
        path = os.path.join(self.dir, "mesh.yaml")
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.rename(path + ".tmp", path)


def authz_yaml(web_port, db_port):
    return f"""---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: web-allow
  namespace: default
spec:
  selector:
    matchLabels:
      app: web
  action: ALLOW
  rules:
  - to:
    - operation:
        methods: ["GET"]
        paths: ["/public/*"]
  - from:
    - source:
        ipBlocks: ["10.1.0.0/24"]
    to:
    - operation:
        methods: ["POST"]
        paths: ["/upload"]
  - to:
    - operation:
        ports: ["{db_port}"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: web-deny-secret
  namespace: default
spec:
  selector:
    matchLabels:
      app: web
  action: DENY
  rules:
  # Scoped to the HTTP port: on a TCP port Istio drops the paths and denies everything.
  - to:
    - operation:
        ports: ["{web_port}"]
        paths: ["/public/secret"]
"""

def tcp_split_yaml(v2_port):
    return f"""---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-2
  namespace: default
  labels:
    kubernetes.io/service-name: db
addressType: IPv4
ports:
- name: tcp-db
  port: {v2_port}
  protocol: TCP
endpoints:
- addresses: [127.0.0.1]
  targetRef: {{kind: Pod, name: db-v2, namespace: default}}
---
apiVersion: v1
kind: Pod
metadata: {{name: db-v2, namespace: default, labels: {{app: db, version: v2}}}}
status: {{podIP: 127.0.0.2}}
---
apiVersion: v1
kind: Pod
metadata: {{name: db-v1, namespace: default, labels: {{app: db, version: v1}}}}
status: {{podIP: 127.0.0.1}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: db, namespace: default}}
spec:
  host: db
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: db, namespace: default}}
spec:
  hosts: [db]
  tcp:
  - match:
    - port: 3306
    route:
    - destination: {{host: db, subset: v1}}
      weight: 80
    - destination: {{host: db, subset: v2}}
      weight: 20
"""


def tls_routes_yaml(v1_port, v2_port):
    """The secure Service (an HTTPS port) with a backend per subset and a VirtualService whose
    tls rules pick them by SNI: v1.secure to v1; v2.secure and secure itself to v2; any other
    name under secure 25/75."""
    slices = "".join(f"""---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: secure-{version}
  namespace: default
  labels:
    kubernetes.io/service-name: secure
addressType: IPv4
ports:
- name: https
  port: {port}
  protocol: TCP
endpoints:
- addresses: [127.0.0.1]
  targetRef: {{kind: Pod, name: secure-{version}, namespace: default}}
---
apiVersion: v1
kind: Pod
metadata: {{name: secure-{version}, namespace: default, labels: {{app: secure, version: {version}}}}}
status: {{podIP: {ip}}}
""" for version, port, ip in (("v1", v1_port, "127.0.0.3"), ("v2", v2_port, "127.0.0.4")))
    return slices + """---
apiVersion: v1
kind: Service
metadata:
  name: secure
  namespace: default
spec:
  clusterIP: 10.96.0.90
  selector:
    app: secure
  ports:
  - name: https
    port: 443
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: secure, namespace: default}
spec:
  host: secure
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: secure, namespace: default}
spec:
  hosts: [secure.default.svc.cluster.local, "*.secure.default.svc.cluster.local"]
  tls:
  - match:
    - sniHosts: [v1.secure.default.svc.cluster.local]
    route:
    - destination: {host: secure, subset: v1}
  - match:
    - sniHosts: [v2.secure.default.svc.cluster.local, secure.default.svc.cluster.local]
    route:
    - destination: {host: secure, subset: v2}
  - match:
    - sniHosts: ["*.secure.default.svc.cluster.local"]
    route:
    - destination: {host: secure, subset: v1}
      weight: 25
    - destination: {host: secure, subset: v2}
      weight: 75
"""


def locality_yaml(z2_port):
    return f"""---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-2
  namespace: default
  labels:
    kubernetes.io/service-name: web
addressType: IPv4
ports:
- name: http
  port: {z2_port}
  protocol: TCP
endpoints:
- addresses: [127.0.0.1]
  targetRef: {{kind: Pod, name: web-z2, namespace: default}}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-z1
  namespace: default
  labels: {{app: web, topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: z1}}
status: {{podIP: 127.0.0.1}}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-z2
  namespace: default
  labels: {{app: web, topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: z2}}
status: {{podIP: 127.0.0.2}}
"""


def chat_yaml(chat_port):
    return f"""---
apiVersion: v1
kind: Service
metadata: {{name: chat, namespace: default}}
spec:
  clusterIP: 10.96.0.80
  ports:
  - {{name: http, port: 80, protocol: TCP}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: chat-1
  namespace: default
  labels: {{kubernetes.io/service-name: chat}}
addressType: IPv4
ports:
- {{name: http, port: {chat_port}, protocol: TCP}}
endpoints:
- addresses: [127.0.0.1]
"""


def web_rule_yaml(traffic_policy):
    return f"""---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web, namespace: default}}
spec:
  host: web
  trafficPolicy: {{{traffic_policy}}}
"""


if __name__ == "__main__":
    sys.exit(main_in_network_namespace(__file__))
