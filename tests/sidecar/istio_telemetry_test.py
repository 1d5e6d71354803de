"""Istio's standard metrics across two sidecars: meshpilot, a client pod and a server pod.

Two pods, each its own network namespace joined by a veth pair, as on a node: the client pod
(10.1.0.2; the test's own namespace, with meshpilot, the client's meshproxy and istio-iptables'
outbound capture) and the server pod (10.1.0.3; a namespace of its own with the server's
meshproxy, istio-iptables' inbound capture to 15006, and real HTTP and TCP backends on its
loopback). A request from the client pod to a Service's cluster IP goes client app -> client
sidecar (outbound) -> server sidecar (inbound) -> backend. The sidecars exchange Istio's peer
metadata headers, so each labels its metrics with the other's workload: the client's
/stats/prometheus has reporter="source" series with the server's workload, app, version and
namespace, the server's reporter="destination" series with the client's; the histograms have
the requests' counts and sums; a TCP connection counts in both sides' istio_tcp_* metrics
(with the peer unknown: Istio exchanges TCP peer metadata over mTLS only). Neither the backend
nor the client sees the exchange headers.

Exit code 77 (ctest: skipped) when network namespaces are not available.
"""

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (PROXY_UID, Children, SharedMeshTest, binary, endpoint_slice,  # noqa: E402
                     main_in_network_namespace, pod, run, service, start_meshpilot,
                     start_sidecar, tcp_exchange, wait_until)

CLIENT_IP, SERVER_IP = "10.1.0.2", "10.1.0.3"
WEB_IP, DB_IP = "10.96.0.50", "10.96.0.60"
WAIT_S = 20
HERE = os.path.dirname(os.path.abspath(__file__))

# Runs in the server pod: harness backends on its loopback; prints their ports.
BACKENDS = f"""
import sys, time
sys.path.insert(0, {HERE!r})
from harness import Backend, TcpEchoBackend
web, db = Backend("web-v2"), TcpEchoBackend("db")
print(web.port, db.port, flush=True)
time.sleep(3600)
"""


def mesh_yaml(web_port, db_port):
    return """apiVersion: v1
kind: Namespace
metadata: {name: default}
""" + pod("web-v2-1", "{app: web, version: v2}", SERVER_IP) + \
        pod("client-v1-1", "{app: client, version: v1}", CLIENT_IP) + \
        service("web", WEB_IP, [("http", 80)]) + \
        endpoint_slice("web", "web-1", [("http", web_port)], "web-v2-1", SERVER_IP) + \
        service("db", DB_IP, [("tcp-db", 3306)]) + \
        endpoint_slice("db", "db-1", [("tcp-db", db_port)], "web-v2-1", SERVER_IP)


class TwoPods:
    """meshpilot, the client pod (this namespace) and the server pod (its own namespace)."""

    def __init__(self, case):
        self.children = Children()
        case.addCleanup(self.children.stop)
        meshpilot_bin = binary("MESHPILOT_BIN", "build/release/controlplane/meshpilot")
        proxy_bin = binary("MESHPROXY_BIN", "build/release/sidecar/meshproxy")
        # The server pod's namespace, held by a process that only sleeps in it.
        holder = self.children.start("server-pod", ["unshare", "--net", "sleep", "3600"])
        pid = holder.proc.pid
        wait_until(lambda: os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net"),
                   5, "the server pod's network namespace")
        self.enter = ["nsenter", f"--net=/proc/{pid}/ns/net"]
        run("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
        run("ip", "link", "set", "eth1", "netns", str(pid))
        run("ip", "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0")
        run("ip", "link", "set", "eth0", "up")
        run("ip", "route", "add", "10.96.0.0/16", "dev", "eth0")
        for argv in (["ip", "link", "set", "lo", "up"],
                     ["ip", "addr", "add", f"{SERVER_IP}/24", "dev", "eth1"],
                     ["ip", "link", "set", "eth1", "up"],
                     # istio-iptables' inbound capture: what arrives from outside the pod,
                     # except the sidecar's own admin and readiness ports.
                     ["iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "-i", "eth1",
                      "-m", "multiport", "--dports", "15000,15021", "-j", "RETURN"],
                     ["iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "-i", "eth1",
                      "-j", "REDIRECT", "--to-ports", "15006"]):
            run(*self.enter, *argv)
        backends = self.children.start("backends", [*self.enter, sys.executable, "-c", BACKENDS])
        ports = wait_until(lambda: backends.stdout and backends.stdout[0].split(), 10,
                           "the server pod's backends")
        web_port, db_port = int(ports[0]), int(ports[1])
        self.web_port = web_port

        self.dir = tempfile.mkdtemp(prefix="meshproxy-telemetry-")
        case.addCleanup(shutil.rmtree, self.dir, True)
        with open(os.path.join(self.dir, "mesh.yaml"), "w") as f:
            f.write(mesh_yaml(web_port, db_port))
        start_meshpilot(self.children, meshpilot_bin, self.dir)

        # The server's sidecar, in its pod, reaching meshpilot over the veth.
        self.children.start("server-meshproxy", [
            *self.enter, "setpriv", f"--reuid={PROXY_UID}", f"--regid={PROXY_UID}",
            "--clear-groups", proxy_bin, "--xds-address", f"{CLIENT_IP}:15010",
            "--pod-name", "web-v2-1", "--namespace", "default", "--pod-ip", SERVER_IP,
            "--labels", "app=web,version=v2", "--workload-name", "web-v2",
            "--admin-address", "0.0.0.0", "--concurrency", "2"])
        wait_until(lambda: self.server_admin("/ready").startswith("LIVE"), WAIT_S,
                   "the server's meshproxy to be ready")
        wait_until(lambda: "inbound|" in self.server_admin("/config_dump"), WAIT_S,
                   "the server's meshproxy to get its inbound listener")

        # The client's sidecar, and istio-iptables' outbound capture in the client pod.
        start_sidecar(self.children, proxy_bin, "--pod-name", "client-v1-1", "--namespace",
                      "default", "--pod-ip", CLIENT_IP, "--labels", "app=client,version=v1",
                      "--workload-name", "client-v1")
        for argv in (["-p", "tcp", "-m", "owner", "--uid-owner", str(PROXY_UID), "-j", "RETURN"],
                     ["-p", "tcp", "-d", "127.0.0.1/32", "-j", "RETURN"],
                     ["-p", "tcp", "-d", f"{SERVER_IP}/32", "-m", "multiport", "--dports",
                      "15000,15021", "-j", "RETURN"],
                     ["-p", "tcp", "-j", "REDIRECT", "--to-ports", "15001"]):
            run("iptables", "-t", "nat", "-A", "OUTPUT", *argv)
        wait_until(lambda: "outbound|80||web.default.svc.cluster.local" in self.client_admin(
            "/config_dump"), WAIT_S, "the client's meshproxy to get the web cluster")

    @staticmethod
    def admin(host, path):
        conn = http.client.HTTPConnection(host, 15000, timeout=5)
        try:
            conn.request("GET", path)
            return conn.getresponse().read().decode()
        finally:
            conn.close()

    def server_admin(self, path):
        return self.admin(SERVER_IP, path)

    def client_admin(self, path):
        return self.admin("127.0.0.1", path)

    def logs(self):
        return self.children.logs()


def series(prometheus, metric, **labels):
    """{labels text: value} of the samples of `metric` that have all of `labels`."""
    found = {}
    for line in prometheus.splitlines():
        m = re.fullmatch(re.escape(metric) + r"\{(.*)\} (\d+)", line)
        if m and all(f'{k}="{v}"' in m.group(1).split(",") for k, v in labels.items()):
            found[m.group(1)] = int(m.group(2))
    return found


def value(prometheus, metric, **labels):
    """The one sample of `metric` with `labels`."""
    found = series(prometheus, metric, **labels)
    assert len(found) == 1, (metric, labels, found)
    return next(iter(found.values()))


CLIENT = {"workload": "client-v1", "app": "client", "version": "v1", "workload_namespace": "default",
          "canonical_service": "client", "canonical_revision": "v1", "cluster": "Kubernetes"}
SERVER = {"workload": "web-v2", "app": "web", "version": "v2", "workload_namespace": "default",
          "canonical_service": "web", "canonical_revision": "v2", "cluster": "Kubernetes"}


def both_sides(source, destination):
    labels = {f"source_{k}": v for k, v in source.items()}
    labels.update({f"destination_{k}": v for k, v in destination.items()})
    return labels


@unittest.skipUnless(shutil.which("iptables") and shutil.which("nsenter") and shutil.which("setpriv"),
                     "needs iptables, nsenter and setpriv")
class IstioTelemetryTest(SharedMeshTest):

    mesh_class = TwoPods

    def request(self, path, method="GET", body=None):
        conn = http.client.HTTPConnection(WEB_IP, 80, timeout=5)
        conn.request(method, path, body=body, headers={"Host": "web"})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()

    def test_http_metrics_carry_both_workloads_on_both_sides(self):
        for i in range(5):
            status, headers, body = self.request(f"/hello/{i}")
            self.assertEqual(status, 200, body)
            info = json.loads(body)
            self.assertEqual(info["backend"], "web-v2")
            # The exchange stays between the sidecars.
            self.assertNotIn("x-envoy-peer-metadata", info["headers"])
            self.assertNotIn("x-envoy-peer-metadata-id", info["headers"])
            self.assertNotIn("x-envoy-peer-metadata", {k.lower() for k in headers})
        status, _, body = self.request("/upload", "POST", b"x" * 1000)
        self.assertEqual(status, 200, body)
        # Not a status Istio's default retry policy retries (503 is), so one request each side.
        self.assertEqual(self.request("/status/404")[0], 404)

        common = both_sides(CLIENT, SERVER)
        common.update(destination_service_namespace="default", request_protocol="http",
                      response_flags="-")
        # The client's sidecar reports as the source: the server's workload came back in the
        # response's exchange headers.
        client = self.mesh.client_admin("/stats/prometheus")
        ok_source = dict(common, reporter="source", response_code="200",
                         destination_service="web.default.svc.cluster.local",
                         destination_service_name="web", connection_security_policy="unknown")
        self.assertEqual(value(client, "istio_requests_total", **ok_source), 6, client)
        self.assertEqual(value(client, "istio_requests_total",
                               **dict(ok_source, response_code="404")), 1)
        self.assertEqual(value(client, "istio_request_duration_milliseconds_count", **ok_source), 6)
        self.assertEqual(value(client, "istio_request_duration_milliseconds_bucket",
                               **dict(ok_source, le="+Inf")), 6)
        self.assertEqual(value(client, "istio_request_bytes_count", **ok_source), 6)
        self.assertEqual(value(client, "istio_request_bytes_sum", **ok_source), 1000)
        self.assertEqual(value(client, "istio_request_bytes_bucket", **dict(ok_source, le="1000")), 6)
        self.assertEqual(value(client, "istio_request_bytes_bucket", **dict(ok_source, le="500")), 5)
        self.assertGreater(value(client, "istio_response_bytes_sum", **ok_source), 6 * 50)
        # The server's sidecar reports as the destination: the client's workload came in the
        # request's exchange headers.
        server = self.mesh.server_admin("/stats/prometheus")
        ok_destination = dict(common, reporter="destination", response_code="200",
                              destination_service="web", destination_service_name="web",
                              connection_security_policy="none")
        self.assertEqual(value(server, "istio_requests_total", **ok_destination), 6, server)
        self.assertEqual(value(server, "istio_requests_total",
                               **dict(ok_destination, response_code="404")), 1)
        self.assertEqual(value(server, "istio_request_duration_milliseconds_count",
                               **ok_destination), 6)
        self.assertEqual(value(server, "istio_request_bytes_sum", **ok_destination), 1000)
        self.assertEqual(value(server, "istio_response_bytes_sum", **ok_destination),
                         value(client, "istio_response_bytes_sum", **ok_source))
        # Every response the client's sidecar got carried the server's workload.
        self.assertEqual(series(client, "istio_requests_total", destination_workload="unknown",
                                request_protocol="http"), {})

    def test_a_request_from_outside_the_mesh_has_an_unknown_source(self):
        # Straight to the server pod, not through the client's sidecar (meshproxy's uid is
        # exempt from capture): no exchange headers, so the source is unknown; a malformed pair
        # is ignored the same way and the request is still served.
        before = series(self.mesh.server_admin("/stats/prometheus"), "istio_requests_total",
                        reporter="destination", source_workload="unknown")
        web_port = self.mesh.web_port
        for headers in ({}, {"x-envoy-peer-metadata": "%%% not base64",
                             "x-envoy-peer-metadata-id": "sidecar~1.2.3.4~x.y~y.svc.cluster.local"}):
            out = subprocess.run(
                ["setpriv", f"--reuid={PROXY_UID}", f"--regid={PROXY_UID}", "--clear-groups",
                 sys.executable, "-c",
                 "import http.client, sys, json\n"
                 f"c = http.client.HTTPConnection('{SERVER_IP}', {web_port}, timeout=5)\n"
                 f"c.request('GET', '/outside', headers={headers!r})\n"
                 "r = c.getresponse()\n"
                 "print(r.status, json.dumps(json.loads(r.read())['headers']))\n"],
                capture_output=True, text=True, timeout=15)
            status, seen = out.stdout.split(" ", 1)
            self.assertEqual(status, "200", out.stderr)
            self.assertNotIn("x-envoy-peer-metadata", json.loads(seen))
        after = series(self.mesh.server_admin("/stats/prometheus"), "istio_requests_total",
                       reporter="destination", source_workload="unknown", source_app="unknown",
                       destination_workload="web-v2", response_code="200")
        self.assertEqual(sum(after.values()) - sum(before.values()), 2, after)

    def test_tcp_connection_is_counted_on_both_sides(self):
        self.assertEqual(tcp_exchange(3306, b"select 1", host=DB_IP), b"db:select 1")
        tcp = dict(request_protocol="tcp", response_flags="-",
                   destination_service_namespace="default")
        client_labels = dict(tcp, reporter="source", destination_service="db.default.svc.cluster.local",
                             destination_service_name="db", destination_workload="unknown",
                             **{f"source_{k}": v for k, v in CLIENT.items()})
        server_labels = dict(tcp, reporter="destination", destination_service="web",
                             source_workload="unknown",
                             **{f"destination_{k}": v for k, v in SERVER.items()})

        def closed(admin, labels):
            return value(admin("/stats/prometheus"), "istio_tcp_connections_closed_total", **labels)
        # The server side closes once the backend has answered and both halves are shut.
        wait_until(lambda: closed(self.mesh.server_admin, server_labels) == 1, WAIT_S,
                   "the server's TCP connection to close")
        wait_until(lambda: closed(self.mesh.client_admin, client_labels) == 1, WAIT_S,
                   "the client's TCP connection to close")
        for admin, labels in ((self.mesh.client_admin, client_labels),
                              (self.mesh.server_admin, server_labels)):
            text = admin("/stats/prometheus")
            self.assertEqual(value(text, "istio_tcp_connections_opened_total", **labels), 1, text)
            self.assertEqual(value(text, "istio_tcp_received_bytes_total", **labels), len(b"select 1"))
            self.assertEqual(value(text, "istio_tcp_sent_bytes_total", **labels),
                             len(b"db:select 1"))


if __name__ == "__main__":
    sys.exit(main_in_network_namespace(__file__))
