"""Istio's traffic features end to end: Istio YAML -> meshpilot -> meshproxy -> real servers.

One meshpilot serves a folder of YAML (Services with cluster IPs, EndpointSlices and Pods for
real HTTP and gRPC backends on loopback); one meshproxy is the sidecar of the client pod
(labels app=client, version=v1) with istio-iptables' outbound capture, in a private network
namespace. Each test writes its feature's VirtualServices and DestinationRules (written from
Istio's reference docs, not from meshpilot's output) into the watched folder, waits until
meshproxy has applied them (a route named after the test shows in its /config_dump), and
asserts what plain requests to the Services' cluster IPs get: status, which backend answered,
headers, loosely measured delays, ratios within a tolerance over enough requests.

Exit code 77 (ctest: skipped) when network namespaces are not available.
"""

import concurrent.futures
import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (POD_IP, Backend, Children, HttpsBackend, SharedMeshTest,  # noqa: E402
                     TcpEchoBackend, admin_stat, binary, capture_outbound, config_dump_has,
                     endpoint_slice, free_port, http_json, main_in_network_namespace, make_pki,
                     pod, reset_network, service, start_meshpilot, start_sidecar, tcp_exchange,
                     wait_until)

WAIT_S = 20
WEB_IP, SHADOW_IP, FLAKY_IP, PATCHY_IP = "10.96.0.50", "10.96.0.51", "10.96.0.52", "10.96.0.53"
DB_IP, ECHO_IP, RAMP_IP, SECURE_IP = "10.96.0.60", "10.96.0.70", "10.96.0.80", "10.96.0.90"


def web_subsets(traffic_policy="", **subset_policies):
    """The web DestinationRule: subsets v1, v2, v3 by the Pods' version label, each with the
    trafficPolicy subset_policies[version] if given."""
    top = f"\n  trafficPolicy:\n{traffic_policy}" if traffic_policy else ""
    subsets = "".join(
        f"  - name: {v}\n    labels: {{version: {v}}}\n"
        + (f"    trafficPolicy:\n{subset_policies[v]}" if v in subset_policies else "")
        for v in ("v1", "v2", "v3"))
    return f"""---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web, namespace: default}}
spec:
  host: web.default.svc.cluster.local{top}
  subsets:
{subsets}"""


def virtual_service(name, hosts, http_rules):
    """A VirtualService in default for hosts (one host or a list), with these http rules."""
    hosts = ", ".join([hosts] if isinstance(hosts, str) else hosts)
    return f"""---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{hosts}]
  http:
{http_rules}"""


class Reply:
    def __init__(self, status, headers, body, elapsed_s):
        self.status, self.headers, self.body, self.elapsed_s = status, headers, body, elapsed_s

    def json(self):
        return json.loads(self.body)

    @property
    def backend(self):
        """Which backend answered (from the JSON body: response headers may be rewritten)."""
        try:
            return self.json()["backend"]
        except ValueError:
            return None

    def header(self, name):
        values = self.headers.get_all(name)
        return ",".join(values) if values else None

    def __repr__(self):
        return f"Reply({self.status}, {dict(self.headers)}, {self.body[:300]!r})"


def call(path="/", host="web", method="GET", headers=None, ip=WEB_IP, port=80, timeout_s=5,
         body=None):
    """One plain HTTP/1.1 request to a cluster IP (intercepted by meshproxy), own connection."""
    conn = http.client.HTTPConnection(ip, port, timeout=timeout_s)
    start = time.monotonic()
    try:
        conn.request(method, path, body=body, headers={"Host": host, **(headers or {})})
        r = conn.getresponse()
        body = r.read()
        return Reply(r.status, r.headers, body, time.monotonic() - start)
    finally:
        conn.close()


def backends(n, path="/", **kw):
    return [call(path, **kw).backend for _ in range(n)]


def concurrently(n, fn):
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: fn(), range(n)))


def stable(read, settle_s=0.3, timeout_s=WAIT_S):
    """Polls read() until it returns the same value twice settle_s apart; returns it."""
    previous = [read()]

    def settled():
        time.sleep(settle_s)
        now = read()
        same = now == previous[0]
        previous[0] = now
        return same
    wait_until(settled, timeout_s, "a count to settle")
    return previous[0]


class Mesh:
    """The client pod's meshproxy and meshpilot, and every backend the tests route to."""

    def __init__(self, case):
        meshpilot_bin = binary("MESHPILOT_BIN", "build/release/controlplane/meshpilot")
        proxy_bin = binary("MESHPROXY_BIN", "build/release/sidecar/meshproxy")
        echo_bin = binary("ECHO_SERVER_BIN", "build/release/tests/conformance/echo_server")
        self.client_bin = binary("XDS_CLIENT_BIN", "build/release/tests/conformance/xds_echo_client")
        if not shutil.which("iptables"):
            raise unittest.SkipTest("iptables is not installed (scripts/setup.sh installs it)")
        self.children = Children()
        case.addCleanup(reset_network)
        case.addCleanup(self.children.stop)
        self.dir = tempfile.mkdtemp(prefix="meshproxy-istio-")
        os.chmod(self.dir, 0o755)
        case.addCleanup(shutil.rmtree, self.dir, True)
        self.config_dir = os.path.join(self.dir, "config")
        os.mkdir(self.config_dir)
        self.web = {v: Backend(f"web-{v}") for v in ("v1", "v2", "v3")}
        self.web_alt = Backend("web-alt")  # every web Pod's http-alt port (8080)
        self.shadow = Backend("shadow")
        self.flaky_ok, self.flaky_bad = Backend("flaky-ok"), Backend("flaky-bad", status=503)
        self.patchy = Backend("patchy")  # beside a port nobody listens on
        self.db = {v: TcpEchoBackend(f"db-{v}") for v in ("v1", "v2")}
        # TLS backends for DestinationRule tls: certificates meshproxy (its own uid) can read.
        pki_dir = os.path.join(self.dir, "pki")
        os.mkdir(pki_dir)
        self.pki = make_pki(pki_dir)
        for path in self.pki.values():
            os.chmod(path, 0o644)
        self.secure = HttpsBackend("secure", self.pki["server"], self.pki["server_key"])
        self.secure_mtls = HttpsBackend("secure-mtls", self.pki["server"], self.pki["server_key"],
                                        client_ca=self.pki["ca"])
        for b in (*self.web.values(), self.web_alt, self.shadow, self.flaky_ok, self.flaky_bad,
                  self.patchy, *self.db.values(), self.secure, self.secure_mtls):
            case.addCleanup(b.stop)
        echo_ports = {}
        for name, extra in (("echo-a", []), ("echo-down", ["--fail_code", "14"]), ("echo-b", []),
                            ("echo-slow", ["--delay_ms", "1500"])):
            echo_ports[name] = free_port()
            child = self.children.start(
                name, [echo_bin, "--port", str(echo_ports[name]), "--name", name, *extra])
            wait_until(lambda: any("listening on" in l for l in child.lines()), WAIT_S, name)
        self.write("base.yaml", self.base_yaml(echo_ports))
        self.meshpilot = start_meshpilot(self.children, meshpilot_bin, self.config_dir)
        self.proxy = start_sidecar(self.children, proxy_bin, "--pod-name", "client",
                                   "--namespace", "default", "--pod-ip", POD_IP,
                                   "--labels", "app=client,version=v1")
        capture_outbound()

    def base_yaml(self, echo_ports):
        text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: default}\n"
        text += service("web", WEB_IP, [("http", 80), ("http-alt", 8080)])
        for i, (v, b) in enumerate(self.web.items()):
            text += pod(f"web-{v}", f"{{app: web, version: {v}}}", f"10.1.1.{i + 1}")
            text += endpoint_slice("web", f"web-{v}",
                                   [("http", b.port), ("http-alt", self.web_alt.port)],
                                   pod=f"web-{v}")
        text += service("shadow", SHADOW_IP, [("http", 80)])
        text += endpoint_slice("shadow", "shadow", [("http", self.shadow.port)])
        text += service("flaky", FLAKY_IP, [("http", 80)])
        text += endpoint_slice("flaky", "flaky-ok", [("http", self.flaky_ok.port)])
        text += endpoint_slice("flaky", "flaky-bad", [("http", self.flaky_bad.port)])
        text += service("patchy", PATCHY_IP, [("http", 80)])
        text += endpoint_slice("patchy", "patchy", [("http", self.patchy.port)])
        text += endpoint_slice("patchy", "patchy-dead", [("http", free_port())])
        text += service("db", DB_IP, [("tcp-db", 3306)])
        for i, (v, b) in enumerate(self.db.items()):
            text += pod(f"db-{v}", f"{{app: db, version: {v}}}", f"10.1.3.{i + 1}")
            text += endpoint_slice("db", f"db-{v}", [("tcp-db", b.port)], pod=f"db-{v}")
        text += service("secure", SECURE_IP, [("http", 80), ("http-mtls", 8443)])
        text += endpoint_slice("secure", "secure", [("http", self.secure.port),
                                                    ("http-mtls", self.secure_mtls.port)])
        text += service("echo", ECHO_IP, [("grpc", 7070)])
        tracks = {"echo-a": "main", "echo-down": "main", "echo-b": "canary", "echo-slow": "slow"}
        for i, (name, port) in enumerate(echo_ports.items()):
            text += pod(name, f"{{app: echo, track: {tracks[name]}}}", f"10.1.2.{i + 1}")
            text += endpoint_slice("echo", name, [("grpc", port)], pod=name)
        return text

    def write(self, filename, text):
        # Written beside the folder, then renamed into it: the watcher never sees half a file.
        staging = os.path.join(self.dir, filename)
        with open(staging, "w") as f:
            f.write(text)
        os.replace(staging, os.path.join(self.config_dir, filename))

    def apply(self, text, marker, rejected=()):
        """Serves text as the test's feature file (replacing the previous test's), waits until
        meshproxy has applied it (a route named `marker` shows in its config_dump) and checks
        that meshpilot rejected none of it but the objects named in `rejected`; returns the
        errors."""
        self.write("feature.yaml", text)
        try:
            wait_until(lambda: config_dump_has(f'"{marker}"'), WAIT_S, f"route {marker} in meshproxy")
        except AssertionError:
            raise AssertionError(json.dumps(self.configz(), indent=1))
        # A test's YAML must be valid Istio that meshpilot accepts whole.
        errors = self.configz()["errors"]
        if sorted({e["name"] for e in errors}) != sorted(rejected):
            raise AssertionError(f"meshpilot rejected {errors}, expected only {rejected}")
        return errors

    def configz(self):
        return http_json("http://127.0.0.1:15014/debug/configz")

    def logs(self):
        return self.children.logs()


class IstioTrafficTest(SharedMeshTest):
    mesh_class = Mesh

    def setUp(self):
        for b in (*self.mesh.web.values(), self.mesh.web_alt, self.mesh.shadow):
            b.received.clear()

    def test_http_match(self):
        """Every HTTPMatchRequest field meshpilot supports, one rule each; a request that
        matches none falls to the last rule (v1)."""
        def rule(name, match, subset, port=""):
            dest_port = f", port: {{number: {port}}}" if port else ""
            return (f"  - name: {name}\n    match:\n{match}"
                    f"    route:\n    - destination: {{host: web, subset: {subset}{dest_port}}}\n")
        rules = "".join([
            rule("m-exact", "    - uri: {exact: /exact}\n", "v2"),
            rule("m-regex", "    - uri: {regex: '/items/[0-9]+'}\n", "v3"),
            rule("m-nocase", "    - uri: {prefix: /CaseLess}\n      ignoreUriCase: true\n", "v2"),
            rule("m-authority", "    - authority: {prefix: web.default.svc}\n", "v3"),
            rule("m-method", "    - method: {exact: POST}\n      headers: {x-user: {exact: alice}}\n",
                 "v2"),
            rule("m-headers", "    - headers: {x-tier: {prefix: gold}}\n"
                 "    - headers: {x-version: {regex: 'v[0-9]+\\.beta'}}\n", "v3"),
            rule("m-without", "    - uri: {prefix: /guarded}\n"
                 "      withoutHeaders: {x-debug: {exact: '1'}}\n", "v2"),
            rule("m-query", "    - queryParams: {mode: {exact: fast}}\n", "v3"),
            rule("m-port", "    - port: 8080\n      uri: {prefix: /viaport}\n", "v2", port=80),
            rule("m-nosource", "    - sourceLabels: {app: nobody}\n      uri: {prefix: /src}\n", "v2"),
            rule("m-source", "    - sourceLabels: {app: client}\n      uri: {prefix: /src}\n", "v3"),
            rule("m-othernamespace", "    - sourceNamespace: prod\n      uri: {prefix: /ns}\n", "v2"),
            rule("m-namespace", "    - sourceNamespace: default\n      uri: {prefix: /ns}\n", "v3"),
            rule("m-gateway", "    - gateways: [some-gateway]\n      uri: {prefix: /gw}\n", "v2"),
            rule("m-present", "    - withoutHeaders: {x-absent: {regex: '*'}}\n"
                 "      uri: {prefix: /presence}\n      headers: {x-present: {}}\n", "v3"),
            "  - name: m-default\n    route:\n    - destination: {host: web, subset: v1}\n",
        ])
        self.mesh.apply(web_subsets() + virtual_service("web", "web", rules), "m-default")
        cases = [
            # (path, method, extra headers, Host, port, expected backend)
            ("/exact", "GET", {}, "web", 80, "web-v2"),
            ("/exact/more", "GET", {}, "web", 80, "web-v1"),
            ("/items/42", "GET", {}, "web", 80, "web-v3"),
            ("/items/abc", "GET", {}, "web", 80, "web-v1"),
            ("/caseless/x", "GET", {}, "web", 80, "web-v2"),
            ("/CASELESS", "GET", {}, "web", 80, "web-v2"),
            ("/", "GET", {}, "web.default.svc.cluster.local", 80, "web-v3"),
            ("/", "POST", {"x-user": "alice"}, "web", 80, "web-v2"),
            ("/", "GET", {"x-user": "alice"}, "web", 80, "web-v1"),
            ("/", "POST", {"x-user": "bob"}, "web", 80, "web-v1"),
            ("/", "GET", {"x-tier": "goldplus"}, "web", 80, "web-v3"),
            ("/", "GET", {"x-tier": "silver"}, "web", 80, "web-v1"),
            ("/", "GET", {"x-version": "v12.beta"}, "web", 80, "web-v3"),
            ("/", "GET", {"x-version": "v12-beta"}, "web", 80, "web-v1"),
            ("/guarded", "GET", {}, "web", 80, "web-v2"),
            ("/guarded", "GET", {"x-debug": "1"}, "web", 80, "web-v1"),
            ("/guarded", "GET", {"x-debug": "0"}, "web", 80, "web-v2"),
            ("/q?mode=fast", "GET", {}, "web", 80, "web-v3"),
            ("/q?mode=slow", "GET", {}, "web", 80, "web-v1"),
            ("/viaport", "GET", {}, "web:8080", 8080, "web-v2"),  # to port 80's v2
            ("/viaport", "GET", {}, "web", 80, "web-v1"),
            ("/", "GET", {}, "web:8080", 8080, "web-alt"),  # port 8080's v1
            ("/src", "GET", {}, "web", 80, "web-v3"),
            ("/ns", "GET", {}, "web", 80, "web-v3"),
            ("/gw", "GET", {}, "web", 80, "web-v1"),  # a gateway's block: not for sidecars
            ("/presence", "GET", {"x-present": "any"}, "web", 80, "web-v3"),
            ("/presence", "GET", {"x-present": ""}, "web", 80, "web-v3"),
            ("/presence", "GET", {}, "web", 80, "web-v1"),
            ("/presence", "GET", {"x-present": "1", "x-absent": "1"}, "web", 80, "web-v1"),
            # The path is matched without its query; Host may carry the port; on port 8080
            # the bare name is a domain too.
            ("/exact?a=b", "GET", {}, "web", 80, "web-v2"),
            ("/items/42?a=b", "GET", {}, "web", 80, "web-v3"),
            ("/exact", "GET", {}, "web:80", 80, "web-v2"),
            ("/exact", "GET", {}, "web.default", 80, "web-v2"),
            ("/exact", "GET", {}, "10.96.0.50", 80, "web-v2"),
            ("/", "GET", {}, "web", 8080, "web-alt"),
        ]
        got = [(p, m, h, host, call(p, host=host, method=m, headers=h, port=port).backend)
               for p, m, h, host, port, _ in cases]
        self.assertEqual(got, [(p, m, h, host, want) for p, m, h, host, _, want in cases])

    def test_destinations_subsets_weights_and_port(self):
        rules = """  - name: d-split
    match: [{uri: {prefix: /split}}]
    route:
    - destination: {host: web, subset: v1}
      weight: 70
    - destination: {host: web, subset: v2}
      weight: 30
  - name: d-port
    match: [{uri: {prefix: /alt}}]
    route:
    - destination: {host: web.default.svc.cluster.local, port: {number: 8080}}
  - name: d-v3
    route:
    - destination: {host: web, subset: v3}
"""
        self.mesh.apply(web_subsets() + virtual_service("web", "web", rules), "d-v3")
        self.assertEqual(set(backends(20, "/any")), {"web-v3"})  # a subset is its Pods only
        self.assertEqual(set(backends(5, "/alt")), {"web-alt"})
        # Requests on one keep-alive connection are routed one by one.
        conn = http.client.HTTPConnection(WEB_IP, 80, timeout=5)
        kept = []
        for _ in range(40):
            conn.request("GET", "/split", headers={"Host": "web"})
            kept.append(json.loads(conn.getresponse().read())["backend"])
        conn.close()
        self.assertEqual(set(kept), {"web-v1", "web-v2"})
        answers = backends(300, "/split")
        self.assertEqual(set(answers), {"web-v1", "web-v2"})
        # 70/30 over 300 requests: sd is about 7.9; 5 sd either way.
        self.assertGreater(answers.count("web-v1"), 210 - 40, answers.count("web-v1"))
        self.assertLess(answers.count("web-v1"), 210 + 40, answers.count("web-v1"))

    def test_header_manipulation(self):
        rules = """  - name: h-headers
    match: [{uri: {prefix: /headers}}]
    headers:
      request:
        set:
          x-set: route-set
          x-client: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"
          x-info: "%UPSTREAM_CLUSTER% %PROTOCOL% %REQ(x-keep)% 100%%"
        add: {x-add: route-add}
        remove: [x-remove-me]
      response:
        set: {x-resp-set: route-set, x-started: "%START_TIME%"}
        add: {x-resp-add: route-add}
        remove: [x-backend]
    route:
    - destination: {host: web, subset: v1}
      weight: 50
      headers:
        request: {set: {x-dest: v1, host: v1.web.example}}
        response: {set: {x-dest-resp: v1}}
    - destination: {host: web, subset: v2}
      weight: 50
      headers:
        request: {set: {x-dest: v2}}
        response: {set: {x-dest-resp: v2}}
"""
        self.mesh.apply(web_subsets() + virtual_service("web", "web", rules), "h-headers")
        seen = set()
        for _ in range(20):
            r = call("/headers", headers={"x-set": "client", "x-add": "client",
                                          "x-remove-me": "1", "x-keep": "kept"})
            self.assertEqual(r.status, 200, r)
            got = r.json()["headers"]
            version = r.backend.split("-")[1]
            seen.add(version)
            self.assertEqual(got.get("x-set"), "route-set", got)
            self.assertEqual(sorted(got.get("x-add", "").replace(", ", ",").split(",")),
                             ["client", "route-add"], got)
            self.assertNotIn("x-remove-me", got)
            self.assertEqual(got.get("x-keep"), "kept")
            self.assertEqual(got.get("x-dest"), version, got)  # the destination's own headers
            self.assertEqual(got["host"], "v1.web.example" if version == "v1" else "web", got)
            # Envoy's %COMMAND%s in values: the client pod's address, the cluster chosen...
            self.assertEqual(got.get("x-client"), POD_IP, got)
            self.assertEqual(got.get("x-info"), f"outbound|80|{version}|web.default.svc.cluster.local"
                                                " HTTP/1.1 kept 100%", got)
            self.assertRegex(r.header("x-started") or "", r"^20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertEqual(r.header("x-resp-set"), "route-set", r)
            self.assertEqual(r.header("x-resp-add"), "route-add", r)
            self.assertIsNone(r.header("x-backend"), r)
            self.assertEqual(r.header("x-dest-resp"), version, r)
        self.assertEqual(seen, {"v1", "v2"})
        # An HTTP/2 client (h2c) gets the same treatment; %PROTOCOL% says HTTP/2.
        out = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-H", "Host: web",
                              "-H", "x-keep: h2", f"http://{WEB_IP}/headers"],
                             capture_output=True, text=True, timeout=10)
        got = json.loads(out.stdout)["headers"]
        self.assertRegex(got.get("x-info", ""), r"^outbound\|80\|v[12]\|web\S* HTTP/2 h2 100%$", got)
        self.assertEqual(got.get("x-set"), "route-set", got)

    def test_rewrite_redirect_and_direct_response(self):
        rules = r"""  - name: r-rewrite
    match: [{uri: {prefix: /old/}}]
    rewrite: {uri: /new/, authority: rewritten.example}
    route:
    - destination: {host: web, subset: v1}
  - name: r-regex
    match: [{uri: {prefix: /users/}}]
    rewrite:
      uriRegexRewrite: {match: '^/users/([^/]+)/profile$', rewrite: '/profiles/\1'}
    route:
    - destination: {host: web, subset: v2}
  - name: r-exact-rewrite
    match: [{uri: {exact: /exact-old}}]
    rewrite: {uri: /exact-new}
    route:
    - destination: {host: web, subset: v1}
  - name: r-regex-match-rewrite
    match: [{uri: {regex: '/re/[a-z]+'}}]
    rewrite: {uri: /regex-new}
    route:
    - destination: {host: web, subset: v1}
  - name: r-redirect
    match: [{uri: {exact: /moved}}]
    redirect: {uri: /new-home, authority: other.example, redirectCode: 308}
  - name: r-https
    match: [{uri: {exact: /secure}}]
    redirect: {scheme: https, port: 8443}
  - name: r-derive
    match: [{uri: {exact: /derived}}]
    redirect: {authority: elsewhere.example, derivePort: FROM_REQUEST_PORT, redirectCode: 302}
  - name: r-direct
    match: [{uri: {exact: /maintenance}}]
    directResponse:
      status: 503
      body: {string: down for maintenance}
    headers:
      response:
        set: {retry-after: "120"}
  - name: r-default
    route:
    - destination: {host: web, subset: v3}
"""
        self.mesh.apply(web_subsets() + virtual_service("web", "web", rules), "r-default")
        r = call("/old/page?x=1")
        self.assertEqual((r.status, r.backend, r.json()["path"]), (200, "web-v1", "/new/page?x=1"))
        self.assertEqual(r.json()["headers"]["host"], "rewritten.example")
        r = call("/users/ann/profile")
        self.assertEqual((r.status, r.backend, r.json()["path"]), (200, "web-v2", "/profiles/ann"))
        self.assertEqual(call("/users/ann/other").json()["path"], "/users/ann/other")
        # rewrite.uri with an exact or regex match replaces the whole path (Envoy's
        # prefix_rewrite of the matched path); the query stays.
        self.assertEqual(call("/exact-old?q=1").json()["path"], "/exact-new?q=1")
        self.assertEqual(call("/re/abc?q=1").json()["path"], "/regex-new?q=1")
        r = call("/moved")
        self.assertEqual((r.status, r.header("location")), (308, "http://other.example/new-home"), r)
        r = call("/moved?x=1")
        self.assertEqual((r.status, r.header("location")), (308, "http://other.example/new-home?x=1"), r)
        r = call("/derived", host="web:8080", port=8080)
        self.assertEqual((r.status, r.header("location")), (302, "http://elsewhere.example:8080/derived"), r)
        r = call("/secure", host="web")
        self.assertEqual((r.status, r.header("location")), (301, "https://web:8443/secure"), r)
        r = call("/maintenance")
        self.assertEqual((r.status, r.body), (503, b"down for maintenance"), r)
        self.assertEqual(r.header("retry-after"), "120", r)
        self.assertEqual(call("/other").backend, "web-v3")
        self.assertNotIn("/moved", [i["path"] for b in self.mesh.web.values() for i in b.received])

    def test_timeout_and_retries(self):
        key = f"{time.monotonic_ns()}"
        rules = """  - name: t-timeout
    match: [{uri: {prefix: /timeout/}}]
    timeout: 0.3s
    route:
    - destination: {host: web, subset: v1}
  - name: t-retry-5xx
    match: [{uri: {prefix: /retry5xx/}}]
    retries: {attempts: 3, retryOn: 5xx}
    route:
    - destination: {host: web, subset: v1}
  - name: t-retry-gateway
    match: [{uri: {prefix: /retrygw/}}]
    retries: {attempts: 2, retryOn: gateway-error}
    route:
    - destination: {host: web, subset: v1}
  - name: t-retry-4xx
    match: [{uri: {prefix: /retry4xx/}}]
    retries: {attempts: 2, retryOn: retriable-4xx}
    route:
    - destination: {host: web, subset: v1}
  - name: t-retry-codes
    match: [{uri: {prefix: /retrycodes/}}]
    retries: {attempts: 2, retryOn: "418,connect-failure"}
    route:
    - destination: {host: web, subset: v1}
  - name: t-per-try
    match: [{uri: {prefix: /pertry/}}]
    timeout: 5s
    retries: {attempts: 2, perTryTimeout: 0.2s, retryOn: gateway-error}
    route:
    - destination: {host: web, subset: v1}
  - name: t-capped
    match: [{uri: {prefix: /capped/}}]
    timeout: 0.5s
    retries: {attempts: 5, perTryTimeout: 0.3s, retryOn: gateway-error}
    route:
    - destination: {host: web, subset: v1}
  - name: t-no-retry
    match: [{uri: {prefix: /noretry/}}]
    retries: {attempts: 0}
    route:
    - destination: {host: web, subset: v1}
"""
        self.mesh.apply(web_subsets() + virtual_service("web", "web", rules), "t-no-retry")
        r = call("/timeout/delay/3000")
        self.assertEqual((r.status, r.body), (504, b"upstream request timeout"), r)
        self.assertGreater(r.elapsed_s, 0.2)
        self.assertLess(r.elapsed_s, 2.5)  # well before the backend's 3 s
        self.assertEqual(call("/timeout/delay/10").status, 200)

        # (route prefix, failures before a 200, their status, what the client gets, attempts)
        cases = [
            ("retry5xx", 2, 503, 200, 3),  # 3 retries are enough
            ("retry5xx", 5, 503, 503, 4),  # 1 try + 3 retries, then the last 503 is answered
            ("retrygw", 2, 503, 200, 3),
            ("retrygw", 1, 500, 500, 1),  # a 500 is no gateway error
            ("retry4xx", 1, 409, 200, 2),  # retriable-4xx is 409 only
            ("retry4xx", 1, 500, 500, 1),
            ("retrycodes", 1, 418, 200, 2),
            ("retrycodes", 1, 503, 503, 1),  # listed codes replace Istio's default 503
            ("noretry", 1, 503, 503, 1),  # attempts: 0 turns off even the default retry of 503
        ]
        got = []
        for i, (prefix, failures, code, _, _) in enumerate(cases):
            status = call(f"/{prefix}/fail/{failures}/{key}-{i}/{code}").status
            got.append((prefix, failures, code, status, Backend.failures.get(f"{key}-{i}", 0)))
        self.assertEqual(got, cases)
        # A request with a body is retried with its body.
        payload = bytes(range(256)) * 40
        r = call(f"/retry5xx/fail/1/{key}-post", method="POST", body=payload)
        self.assertEqual((r.status, r.json()["attempt"], r.json()["body_size"]), (200, 2, len(payload)))
        self.assertEqual(r.json()["body_sha256"], hashlib.sha256(payload).hexdigest())
        # The first attempt outlives its perTryTimeout (a 504, a gateway error): retried.
        r = call(f"/pertry/slowonce/2000/{key}-slow")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["attempt"], 2)
        self.assertLess(r.elapsed_s, 1.9)
        # The route's timeout bounds all attempts together (six would take 1.8 s).
        r = call("/capped/delay/1000")
        self.assertEqual((r.status, r.body), (504, b"upstream request timeout"), r)
        self.assertLess(r.elapsed_s, 1.4)

    def test_fault_delay_and_abort(self):
        rules = """  - name: f-delay
    match: [{uri: {prefix: /slowed}}]
    fault:
      delay:
        fixedDelay: 400ms
        percentage: {value: 100}
    route:
    - destination: {host: web, subset: v1}
  - name: f-both
    match: [{uri: {prefix: /both}}]
    fault:
      delay: {fixedDelay: 300ms, percent: 100}
      abort: {httpStatus: 429}
    route:
    - destination: {host: web, subset: v1}
  - name: f-abort
    match: [{uri: {prefix: /aborted}}]
    fault:
      abort:
        httpStatus: 418
        percentage: {value: 100}
    route:
    - destination: {host: web, subset: v1}
  - name: f-abort-half
    match: [{uri: {prefix: /sometimes}}]
    fault:
      abort:
        httpStatus: 503
        percentage: {value: 40}
    route:
    - destination: {host: web, subset: v2}
"""
        self.mesh.apply(web_subsets() + virtual_service("web", "web", rules), "f-abort-half")
        r = call("/slowed")
        self.assertEqual((r.status, r.backend), (200, "web-v1"))
        self.assertGreater(r.elapsed_s, 0.35)
        self.assertLess(r.elapsed_s, 3)
        r = call("/both")  # delayed, then aborted
        self.assertEqual(r.status, 429, r)
        self.assertGreater(r.elapsed_s, 0.25)
        r = call("/aborted")
        self.assertEqual((r.status, r.body), (418, b"fault filter abort"), r)
        self.assertEqual([i["path"] for i in self.mesh.web["v1"].received], ["/slowed"])
        statuses = [call("/sometimes").status for _ in range(250)]
        self.assertEqual(set(statuses), {200, 503})
        # 40% of 250: 100 aborts, sd about 7.7; 5 sd either way.
        self.assertGreater(statuses.count(503), 100 - 39, statuses.count(503))
        self.assertLess(statuses.count(503), 100 + 39, statuses.count(503))
        self.assertEqual(len(self.mesh.web["v2"].received), statuses.count(200))

    def test_mirror(self):
        rules = """  - name: mirror-all
    match: [{uri: {prefix: /mirrored}}]
    route:
    - destination: {host: web, subset: v1}
    mirror: {host: shadow}
    mirrorPercentage: {value: 100.0}
  - name: mirror-subset
    match: [{uri: {prefix: /tosubset}}]
    route:
    - destination: {host: web, subset: v1}
    mirror: {host: web, subset: v3}
  - name: mirror-some
    match: [{uri: {prefix: /some}}]
    route:
    - destination: {host: web, subset: v2}
    mirrors:
    - destination: {host: shadow.default.svc.cluster.local}
      percentage: {value: 30.0}
"""
        self.mesh.apply(web_subsets() + virtual_service("web", "web", rules), "mirror-some")
        shadow = self.mesh.shadow.received
        self.assertEqual(set(backends(10, "/mirrored")), {"web-v1"})
        wait_until(lambda: len(shadow) >= 10, WAIT_S, "10 mirrored copies")
        self.assertEqual(len(shadow), 10)
        self.assertEqual({(i["path"], i["headers"]["host"]) for i in shadow},
                         {("/mirrored", "web-shadow")})
        shadow.clear()
        self.assertEqual(set(backends(5, "/tosubset")), {"web-v1"})
        v3 = self.mesh.web["v3"].received
        wait_until(lambda: len(v3) >= 5, WAIT_S, "5 copies to subset v3")
        self.assertEqual({(i["path"], i["headers"]["host"]) for i in v3}, {("/tosubset", "web-shadow")})
        self.assertEqual(shadow, [])
        self.assertEqual(set(backends(250, "/some")), {"web-v2"})
        copies = stable(lambda: len(shadow))
        # 30% of 250: 75 copies, sd about 7.2; 5 sd either way.
        self.assertGreater(copies, 75 - 36)
        self.assertLess(copies, 75 + 36)

    def test_cors(self):
        rules = """  - name: c-cors
    corsPolicy:
      allowOrigins:
      - exact: https://app.example.com
      - prefix: https://dev.
      - regex: 'https://[a-z]+\.staging\.example'
      allowMethods: [GET, POST]
      allowHeaders: [x-custom]
      exposeHeaders: [x-backend]
      maxAge: 24h
      allowCredentials: true
    route:
    - destination: {host: web, subset: v1}
"""
        self.mesh.apply(web_subsets() + virtual_service("web", "web", rules), 'c-cors')
        preflight = {"Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "x-custom"}
        for origin in ("https://app.example.com", "https://dev.team.example",
                       "https://shop.staging.example"):
            r = call("/api", method="OPTIONS", headers={"Origin": origin, **preflight})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.header("access-control-allow-origin"), origin, r)
            self.assertIn("POST", r.header("access-control-allow-methods"), r)
            self.assertIn("x-custom", r.header("access-control-allow-headers"), r)
            self.assertEqual(r.header("access-control-max-age"), "86400", r)
            self.assertEqual(r.header("access-control-allow-credentials"), "true", r)
        self.assertEqual(self.mesh.web["v1"].received, [])  # preflights answered by the proxy
        r = call("/api", headers={"Origin": "https://app.example.com"})
        self.assertEqual((r.status, r.backend), (200, "web-v1"))
        self.assertEqual(r.header("access-control-allow-origin"), "https://app.example.com", r)
        self.assertIn("x-backend", r.header("access-control-expose-headers") or "", r)
        for origin in ("https://evil.example", "https://app.example.com.evil",
                       "https://shop.staging.example.evil"):
            r = call("/api", headers={"Origin": origin})
            self.assertEqual((r.status, r.backend), (200, "web-v1"))
            self.assertIsNone(r.header("access-control-allow-origin"), r)
            r = call("/api", method="OPTIONS", headers={"Origin": origin, **preflight})
            self.assertIsNone(r.header("access-control-allow-origin"), r)
            self.assertEqual(r.backend, "web-v1")  # not a preflight the policy answers

    def test_several_virtual_services_for_one_host_are_merged(self):
        first = virtual_service("web-a", "web", """  - name: merge-a
    match: [{uri: {prefix: /from-a}}]
    route:
    - destination: {host: web, subset: v2}
""")
        second = virtual_service("web-b", "web.default.svc.cluster.local", """  - name: merge-b
    match: [{uri: {prefix: /from-b}}]
    route:
    - destination: {host: web, subset: v3}
  - name: merge-default
    route:
    - destination: {host: web, subset: v1}
""")
        # A wildcard host covers the namespace's other Services; an exact host beats it; one
        # VirtualService may name several hosts.
        wildcard = virtual_service("wild", "'*.default.svc.cluster.local'", """  - name: merge-wild
    match: [{uri: {prefix: /wild}}]
    directResponse: {status: 200, body: {string: wild}}
""")
        several = virtual_service("several", ["flaky", "patchy"], """  - name: merge-several
    directResponse: {status: 200, body: {string: several}}
""")
        self.mesh.apply(web_subsets() + first + second + wildcard + several, "merge-default")
        self.assertEqual([call(p).backend for p in ("/from-a", "/from-b", "/", "/wild")],
                         ["web-v2", "web-v3", "web-v1", "web-v1"])
        self.assertEqual(call("/wild", host="shadow", ip=SHADOW_IP).body, b"wild")
        self.assertEqual(call("/", host="shadow", ip=SHADOW_IP).status, 404)  # no rule matches
        for host, ip in (("flaky", FLAKY_IP), ("patchy", PATCHY_IP)):
            self.assertEqual(call("/wild", host=host, ip=ip).body, b"several")
        warnings = [w for w in self.mesh.configz()["warnings"] if w["name"] == "web-b"]
        self.assertTrue(warnings, self.mesh.configz()["warnings"])

    def test_load_balancer_simple_and_consistent_hash(self):
        def apply(marker, load_balancer):
            policy = f"    loadBalancer:\n{load_balancer}"
            self.mesh.apply(web_subsets(policy) + virtual_service("web", "web", f"""  - name: {marker}
    route:
    - destination: {{host: web}}
"""), marker)
    
        apply("lb-round-robin", "      simple: ROUND_ROBIN\n")
        answers = backends(60)
        # Round robin takes the hosts in turn: every three requests in a row reach all three
        # (least request or random would repeat one within a few requests).
        self.assertTrue(all(len(set(answers[i:i + 3])) == 3 for i in range(len(answers) - 2)),
                        answers)

        for marker, hash_lb in (("lb-header-hash", "httpHeaderName: x-user"),
                                ("lb-header-maglev", "httpHeaderName: x-user, maglev: {tableSize: 251}")):
            apply(marker, f"      consistentHash: {{{hash_lb}}}\n")
            chosen = {}
            for user in range(12):
                got = set(backends(4, headers={"x-user": f"user-{user}"}))
                self.assertEqual(len(got), 1, (marker, user, got))  # the same user, the same backend
                chosen[user] = got.pop()
            self.assertGreater(len(set(chosen.values())), 1, (marker, chosen))  # users are spread

        apply("lb-source-ip", "      consistentHash: {useSourceIp: true}\n")
        self.assertEqual(len(set(backends(30))), 1)

        apply("lb-query-hash", "      consistentHash: {httpQueryParameterName: user}\n")
        chosen = {user: set(backends(4, f"/?user=u{user}")) for user in range(12)}
        self.assertTrue(all(len(got) == 1 for got in chosen.values()), chosen)
        self.assertGreater(len(set().union(*chosen.values())), 1, chosen)

        apply("lb-cookie-hash", "      consistentHash: {httpCookie: {name: session, ttl: 0s}}\n")
        chosen = {user: set(backends(4, headers={"Cookie": f"other=1; session=s{user}"}))
                  for user in range(12)}
        self.assertTrue(all(len(got) == 1 for got in chosen.values()), chosen)
        self.assertGreater(len(set().union(*chosen.values())), 1, chosen)
        # Without the cookie, meshproxy generates one (ttl 0s: a session cookie) and later
        # requests that carry it go where the first one went.
        first = call()
        cookie = first.headers.get("set-cookie", "")
        self.assertRegex(cookie, r'^session="[0-9a-f]{16}"; HttpOnly$')
        self.assertEqual(set(backends(4, headers={"Cookie": cookie.split(";")[0]})),
                         {first.backend})

        # A subset's loadBalancer replaces the rule's: the rule hashes the source IP (one
        # backend), the subset of every web Pod takes turns.
        self.mesh.apply("""---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: default}
spec:
  host: web
  trafficPolicy:
    loadBalancer: {consistentHash: {useSourceIp: true}}
  subsets:
  - name: every
    labels: {app: web}
    trafficPolicy:
      loadBalancer: {simple: ROUND_ROBIN}
""" + virtual_service("web", "web", """  - name: lb-subset
    match: [{uri: {prefix: /every}}]
    route:
    - destination: {host: web, subset: every}
  - name: lb-rule
    route:
    - destination: {host: web}
"""), "lb-rule")
        self.assertEqual(len(set(backends(20, "/"))), 1)
        answers = backends(30, "/every")
        self.assertTrue(all(len(set(answers[i:i + 3])) == 3 for i in range(len(answers) - 2)),
                        answers)

    def test_warmup_ramps_a_new_endpoint_up(self):
        """DestinationRule warmup (Envoy's slow start): an endpoint that joins a Service gets
        clearly fewer requests than its peers in its first seconds, and its share once its
        window has passed."""
        ramp = {name: Backend(f"ramp-{name}") for name in ("a", "b", "c")}
        for b in ramp.values():
            self.addCleanup(b.stop)
        window_s = 6

        def apply(marker, members):
            text = service("ramp", RAMP_IP, [("http", 80)])
            for name in members:
                text += endpoint_slice("ramp", f"ramp-{name}", [("http", ramp[name].port)])
            text += f"""---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: ramp, namespace: default}}
spec:
  host: ramp.default.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
      warmup: {{duration: {window_s}s, minimumPercent: 10, aggression: 1}}
"""
            self.mesh.apply(text + virtual_service("ramp", "ramp", f"""  - name: {marker}
    route:
    - destination: {{host: ramp}}
"""), marker)

        def spread(n):
            answers = backends(n, host="ramp", ip=RAMP_IP)
            return {name: answers.count(f"ramp-{name}") for name in ramp}

        apply("ramp-two", ["a", "b"])
        time.sleep(window_s + 0.5)  # a and b leave their own slow start
        self.assertEqual(spread(40), {"a": 20, "b": 20, "c": 0})
        apply("ramp-three", ["a", "b", "c"])
        joined = time.monotonic()
        first = spread(60)
        # At most a quarter of its weight in its first second or so: a few requests, where
        # a and b get a third each.
        self.assertLess(first["c"] * 2, min(first["a"], first["b"]), first)
        time.sleep(max(0.0, joined + window_s + 0.5 - time.monotonic()))
        later = spread(60)
        self.assertEqual(later, {"a": 20, "b": 20, "c": 20})
        self.assertGreater(later["c"], first["c"])

    def test_connection_pool_port_level_settings_and_subset_policy(self):
        """http2MaxRequests 1 on the rule; port 8080 and subset v2 set their own pool; subset
        v3 allows one connection and one pending request (and no longer the rule's request
        limit): as in Envoy, requests beyond the connection wait in the pending queue, and only
        those beyond it overflow."""
        self.mesh.apply(web_subsets(
            traffic_policy="""    connectionPool: {http: {http2MaxRequests: 1}}
    portLevelSettings:
    - port: {number: 8080}
      connectionPool: {http: {http2MaxRequests: 100}}
""", v2="      connectionPool: {http: {http2MaxRequests: 100}}\n",
            v3="      connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}\n")
            + virtual_service(
            "web", "web", """  - name: pool-v2
    match: [{uri: {prefix: /v2/}}]
    retries: {attempts: 0}
    route:
    - destination: {host: web, subset: v2}
  - name: pool-v3
    match: [{uri: {prefix: /v3/}}]
    retries: {attempts: 0}
    route:
    - destination: {host: web, subset: v3}
  - name: pool-v1
    retries: {attempts: 0}
    route:
    - destination: {host: web, subset: v1}
"""), "pool-v1")

        def burst(path, port=80):
            replies = concurrently(6, lambda: call(path, host=f"web:{port}", port=port))
            return sorted((r.status, r.header("x-envoy-overloaded")) for r in replies)

        for path in ("/v1/delay/500", "/v3/delay/500"):
            got = burst(path)
            self.assertGreaterEqual(got.count((200, None)), 1, got)
            self.assertGreaterEqual(got.count((503, "true")), 1, got)
            self.assertEqual(got.count((200, None)) + got.count((503, "true")), 6, got)
        self.assertEqual(burst("/v2/delay/300"), [(200, None)] * 6)  # the subset's own pool
        self.assertEqual(burst("/v1/delay/300", port=8080), [(200, None)] * 6)  # the port's

    def test_default_route_export_to_and_workload_selector(self):
        """A Service without a VirtualService gets Istio's default retries; a VirtualService
        exported elsewhere does not apply; a DestinationRule applies to the workloads its
        workloadSelector names only."""
        def yaml(selector, marker):
            return f"""---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web-for-some, namespace: default}}
spec:
  host: web
  workloadSelector:
    matchLabels: {{app: {selector}}}
  exportTo: ["."]
  subsets:
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: shadow-elsewhere, namespace: default}}
spec:
  hosts: [shadow]
  exportTo: [prod]
  http:
  - directResponse: {{status: 418}}
""" + virtual_service("web", "web", f"""  - name: {marker}
    route:
    - destination: {{host: web, subset: v2}}
""")
        self.mesh.apply(yaml("nobody", "x-not-selected"), "x-not-selected")
        r = call("/")
        self.assertEqual((r.status, r.body), (503, b"no healthy upstream"), r)  # no subset v2
        self.mesh.apply(yaml("client", "x-selected"), "x-selected")
        self.assertEqual(set(backends(5)), {"web-v2"})
        self.assertEqual(set(backends(5, host="shadow", ip=SHADOW_IP)), {"shadow"})
        # flaky has no VirtualService: the default route retries the failing host's 503s
        # on the other host.
        self.mesh.flaky_bad.received.clear()
        self.assertEqual(set(backends(20, host="flaky", ip=FLAKY_IP)), {"flaky-ok"})
        self.assertGreater(len(self.mesh.flaky_bad.received), 0)

    def test_connect_failures_retried_and_ejected(self):
        """patchy has a host whose port refuses connections: retryOn connect-failure hides it,
        and consecutiveGatewayErrors ejects it."""
        def apply(marker, outlier=""):
            self.mesh.apply(f"""---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: patchy, namespace: default}}
spec:
  host: patchy
  trafficPolicy:
    loadBalancer: {{simple: ROUND_ROBIN}}{outlier}
""" + virtual_service("patchy", "patchy", f"""  - name: {marker}-none
    match:
    - headers: {{x-retry: {{exact: "no"}}}}
    retries: {{attempts: 0}}
    route:
    - destination: {{host: patchy}}
  - name: {marker}
    retries: {{attempts: 2, retryOn: connect-failure}}
    route:
    - destination: {{host: patchy}}
"""), marker)
    
        def calls(n, **kw):
            return [call("/", host="patchy", ip=PATCHY_IP, **kw) for _ in range(n)]

        apply("cf-retry")
        self.assertEqual({(r.status, r.backend) for r in calls(10)}, {(200, "patchy")})
        failed = [r for r in calls(10, headers={"x-retry": "no"}) if r.status != 200]
        self.assertEqual(len(failed), 5, failed)  # round robin: every other one
        self.assertTrue(all(r.status == 503 and r.body.startswith(b"upstream connect error")
                            for r in failed), failed)

        apply("cf-eject", """
    outlierDetection:
      consecutiveGatewayErrors: 2
      consecutive5xxErrors: 0
      interval: 1s
      baseEjectionTime: 60s
      maxEjectionPercent: 100""")
        statuses = [r.status for r in calls(12, headers={"x-retry": "no"})]
        self.assertEqual(statuses.count(503), 2, statuses)
        self.assertEqual(statuses[-6:], [200] * 6, statuses)

        # splitExternalLocalOriginErrors: refused connections are no 5xx answers; they have
        # their own threshold (consecutiveLocalOriginFailures), here above consecutive5xxErrors.
        apply("cf-split", """
    outlierDetection:
      splitExternalLocalOriginErrors: true
      consecutiveLocalOriginFailures: 4
      consecutive5xxErrors: 2
      consecutiveGatewayErrors: 0
      interval: 1s
      baseEjectionTime: 60s
      maxEjectionPercent: 100""")
        statuses = [r.status for r in calls(12, headers={"x-retry": "no"})]
        self.assertEqual(statuses.count(503), 4, statuses)
        self.assertEqual(statuses[-4:], [200] * 4, statuses)
        self.assertEqual(admin_stat(
            "cluster.outbound|80||patchy.default.svc.cluster.local.outlier_detection."
            "ejections_enforced_consecutive_local_origin_failure"), 1)

    def test_tcp_routes_and_connection_limit(self):
        """A tcp rule chosen by the client's labels; maxConnections on a TCP port closes the
        connection beyond the limit."""
        def apply(marker, traffic_policy=""):
            self.mesh.apply(f"""---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: db, namespace: default}}
spec:
  host: db{traffic_policy}
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
    - {{port: 3306, sourceLabels: {{app: nobody}}}}
    route:
    - destination: {{host: db, subset: v1}}
  - match:
    - {{port: 3306, sourceLabels: {{app: client}}}}
    route:
    - destination: {{host: db, subset: v2}}
""" + virtual_service("web", "web", f"""  - name: {marker}
    route:
    - destination: {{host: web}}
"""), marker)

        def exchange():
            try:
                return tcp_exchange(3306, b"q", host=DB_IP)
            except OSError:
                return b""
        def active():
            return admin_stat("cluster.outbound|3306|v2|db.default.svc.cluster.local."
                              "upstream_cx_active")
        apply("tcp-rules")
        wait_until(lambda: exchange() == b"db-v2:q", WAIT_S, "the tcp rule for app=client")
        self.assertEqual({exchange() for _ in range(10)}, {b"db-v2:q"})
        apply("tcp-limit", "\n  trafficPolicy:\n    connectionPool: {tcp: {maxConnections: 1}}")
        # The limit is tested with a connection held open, the one allowed. Whichever
        # connection meshproxy counts first takes the place: a client sees its exchange end a
        # moment before meshproxy has closed its side, and a connection is counted only once
        # meshproxy has connected it upstream. So none is left when the held one opens, and
        # it is counted before the others come (else a probe could take the place, the held
        # one be refused, and every later probe pass).
        wait_until(lambda: active() == 0, WAIT_S, "the earlier connections to close in meshproxy")
        with socket.create_connection((DB_IP, 3306), timeout=5) as held:
            held.sendall(b"held")  # open upstream, no half-close
            wait_until(lambda: active() == 1, WAIT_S, "the held connection upstream")
            self.assertEqual(exchange(), b"")  # the second connection is refused
            held.shutdown(socket.SHUT_WR)
            self.assertEqual(held.recv(100), b"db-v2:held")
        wait_until(lambda: exchange() == b"db-v2:q", WAIT_S, "the connection limit to free up")

    def test_destination_rule_tls_originates_simple_and_mutual(self):
        """DestinationRule tls: SIMPLE on the service, MUTUAL by portLevelSettings on 8443
        (a backend that requires a client certificate): plaintext requests from the app leave
        meshproxy as TLS with the rule's SNI, verified against caCertificates and
        subjectAltNames; a SAN the certificate lacks fails the connection (503)."""
        pki = self.mesh.pki

        def apply(marker, san):
            self.mesh.apply(f"""---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: secure, namespace: default}}
spec:
  host: secure.default.svc.cluster.local
  trafficPolicy:
    tls:
      mode: SIMPLE
      sni: backend.test
      caCertificates: {pki["ca"]}
      subjectAltNames: [{san}]
    portLevelSettings:
    - port: {{number: 8443}}
      tls:
        mode: MUTUAL
        sni: backend.test
        caCertificates: {pki["ca"]}
        clientCertificate: {pki["client"]}
        privateKey: {pki["client_key"]}
""" + virtual_service("secure", "secure", f"""  - name: {marker}
    route:
    - destination: {{host: secure}}
"""), marker)

        apply("tls-simple", "backend.test")
        reply = call("/simple", host="secure", ip=SECURE_IP)
        self.assertEqual(reply.status, 200, reply)
        self.assertEqual((reply.json()["backend"], reply.json()["sni"]), ("secure", "backend.test"))
        reply = call("/mutual", host="secure", ip=SECURE_IP, port=8443)
        self.assertEqual(reply.status, 200, reply)
        self.assertEqual(reply.json()["backend"], "secure-mtls")
        self.assertEqual(reply.json()["client_san"], ["spiffe://cluster.local/ns/default/sa/client"])
        apply("tls-wrong-san", "other.test")
        reply = call("/simple", host="secure", ip=SECURE_IP)
        self.assertEqual(reply.status, 503, reply)
        self.assertIn(b"upstream connect error", reply.body)

    def test_an_invalid_virtual_service_is_rejected_alone(self):
        """A header value Envoy could not parse rejects its VirtualService only (Envoy, and
        meshproxy, would reject the whole route configuration of the port)."""
        errors = self.mesh.apply(virtual_service("shadow", "shadow", """  - name: bad-percent
    headers:
      request:
        set: {x-discount: "50%"}
    directResponse: {status: 418}
""") + virtual_service("web", "web", """  - name: good-neighbour
    headers:
      request:
        set: {x-discount: "50%% off"}
    route:
    - destination: {host: web, subset: v2}
""") + web_subsets(), "good-neighbour", rejected=["shadow"])
        self.assertIn("spec.http[0].headers.request.set[x-discount]", errors[0]["message"])
        r = call("/")
        self.assertEqual((r.backend, r.json()["headers"]["x-discount"]), ("web-v2", "50% off"))
        self.assertEqual(call("/", host="shadow", ip=SHADOW_IP).backend, "shadow")  # default route

    def test_unsupported_fields_are_warned_and_the_rest_served(self):
        """What meshpilot cannot honour is served without it, with a warning naming the field
        (docs/configuration.md lists these as "warned")."""
        self.mesh.apply(web_subsets("""    proxyProtocol: {version: V1}
    loadBalancer:
      simple: ROUND_ROBIN
      localityLbSetting:
        failoverPriority: [topology.kubernetes.io/region]
""") + virtual_service("web", "web", """  - name: u-served
    retries: {attempts: 2, retryRemoteLocalities: true}
    route:
    - destination: {host: web, subset: v2}
"""), "u-served")
        warned = {(w["kind"], w["name"], w["message"].split(":")[0])
                  for w in self.mesh.configz()["warnings"]}
        self.assertLessEqual({
            ("VirtualService", "web", "spec.http[0].retries.retryRemoteLocalities"),
            ("DestinationRule", "web", "spec.trafficPolicy.proxyProtocol"),
            ("DestinationRule", "web",
             "spec.trafficPolicy.loadBalancer.localityLbSetting.failoverPriority"),
        }, warned)
        self.assertEqual(set(backends(5)), {"web-v2"})

    def test_outlier_detection_ejects_a_failing_host(self):
        self.mesh.apply("""---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: flaky, namespace: default}
spec:
  host: flaky
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection:
      consecutive5xxErrors: 3
      interval: 1s
      baseEjectionTime: 60s
      maxEjectionPercent: 100
""" + virtual_service("flaky", "flaky", """  - name: o-flaky
    retries: {attempts: 0}
    route:
    - destination: {host: flaky}
"""), "o-flaky")
        self.mesh.flaky_bad.received.clear()
        statuses = [call("/", host="flaky", ip=FLAKY_IP).status for _ in range(20)]
        self.assertIn(503, statuses)  # the failing host was tried...
        self.assertEqual(len(self.mesh.flaky_bad.received), 3, statuses)  # ...3 times, no more
        self.assertEqual(statuses[-10:], [200] * 10)
        self.assertEqual(set(backends(20, host="flaky", ip=FLAKY_IP)), {"flaky-ok"})

    def test_grpc_header_route_retry_and_abort(self):
        """gRPC calls over HTTP/2 through meshproxy: the main subset has one host answering
        UNAVAILABLE, which retries on `unavailable` hide; a header picks the canary, another
        a slow host behind a route timeout, another gets a fault abort with a gRPC status."""
        self.mesh.apply("""---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: default}
spec:
  host: echo
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
  subsets:
  - {name: main, labels: {track: main}}
  - {name: canary, labels: {track: canary}}
  - {name: slow, labels: {track: slow}}
""" + virtual_service("echo", "echo", """  - name: g-abort
    match:
    - headers: {x-fault: {exact: abort}}
    fault:
      abort:
        grpcStatus: RESOURCE_EXHAUSTED
        percentage: {value: 100}
    route:
    - destination: {host: echo, subset: main}
  - name: g-delay
    match:
    - headers: {x-fault: {exact: delay}}
    fault:
      delay: {fixedDelay: 300ms, percentage: {value: 100}}
    route:
    - destination: {host: echo, subset: canary}
  - name: g-canary
    match:
    - headers: {x-track: {exact: canary}}
    route:
    - destination: {host: echo, subset: canary}
  - name: g-slow
    match:
    - headers: {x-track: {exact: slow}}
    timeout: 0.3s
    route:
    - destination: {host: echo, subset: slow}
  - name: g-main
    match:
    - headers: {x-retry: {exact: "no"}}
    retries: {attempts: 0}
    route:
    - destination: {host: echo, subset: main}
  - name: g-default
    retries: {attempts: 3, retryOn: unavailable}
    route:
    - destination: {host: echo, subset: main}
"""), "g-default")

        def grpc_calls(*metadata, count=20):
            argv = [self.mesh.client_bin, "--target", f"{ECHO_IP}:7070", "--count", str(count),
                    "--interval_ms", "0", "--timeout_ms", "3000"]
            if metadata:
                argv += ["--metadata", ",".join(metadata)]
            out = subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout
            summary = [l for l in out.splitlines() if l.startswith("summary ")]
            self.assertTrue(summary, out)
            return dict(kv.split("=", 1) for kv in summary[0].split()[1:])

        # Without retries, round robin sends some calls to the host that fails them.
        no_retry = grpc_calls("x-retry=no")
        self.assertIn("UNAVAILABLE", no_retry["codes"], no_retry)
        self.assertIn("echo-a", no_retry["backends"], no_retry)
        retried = grpc_calls()
        self.assertEqual((retried["ok"], retried["backends"]), ("20", "echo-a:20"), retried)
        self.assertEqual(grpc_calls("x-track=canary")["backends"], "echo-b:20")
        # The route's timeout ends calls to the slow host: UNAVAILABLE, as from Envoy.
        slow = grpc_calls("x-track=slow", count=3)
        self.assertEqual((slow["ok"], slow["codes"]), ("0", "UNAVAILABLE:3"), slow)
        self.assertLess(int(slow["max_ms"]), 1400, slow)
        delayed = grpc_calls("x-fault=delay", count=3)
        self.assertEqual(delayed["backends"], "echo-b:3", delayed)
        self.assertGreaterEqual(int(delayed["min_ms"]), 250, delayed)
        aborted = grpc_calls("x-fault=abort", count=5)
        self.assertEqual((aborted["ok"], aborted["codes"]), ("0", "RESOURCE_EXHAUSTED:5"), aborted)


if __name__ == "__main__":
    sys.exit(main_in_network_namespace(__file__))
