"""Conformance: AuthorizationPolicy enforced by a real proxyless gRPC xDS server.

echo_server --xds is a grpc::XdsServerBuilder server (libgrpc++'s own xDS server code): it
asks meshpilot for the Listener `grpc/server?xds.resource.listening_address=127.0.0.1:PORT`
and serves only once it has it, running that Listener's RBAC HTTP filters on every call.
meshpilot serves a folder with the server's Service, EndpointSlice and Pod (the Pod's labels
are the ones its bootstrap sends) and two AuthorizationPolicies selecting it:

- ALLOW calls to /meshpilot.echo.v1.Echo/* when request.headers[x-token] is let-me-in: once
  an ALLOW policy selects the workload, every other call is denied;
- DENY calls when request.headers[x-user] is mallory, evaluated before ALLOW.

A plain gRPC client (xds_echo_client with a direct target) then proves what each call gets:
OK or PERMISSION_DENIED. Removing the ALLOW policy under the live server opens it again.

Helpers (processes, ports, logs) come from conformance_test.py. Every wait is bounded.
"""

import json
import os
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from conformance_test import Child, binary, free_port

READY_TIMEOUT_S = 20
SERVER_NODE_ID = "sidecar~127.0.0.1~echo-authz-1.default~default.svc.cluster.local"

ALLOW_YAML = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-token, namespace: default}
spec:
  selector:
    matchLabels: {app: echo-authz}
  action: ALLOW
  rules:
  - to:
    - operation:
        paths: ["/meshpilot.echo.v1.Echo/*"]
    when:
    - key: request.headers[x-token]
      values: ["let-me-in"]
"""

DENY_YAML = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-mallory, namespace: default}
spec:
  selector:
    matchLabels: {app: echo-authz}
  action: DENY
  rules:
  - when:
    - key: request.headers[x-user]
      values: ["mallory"]
"""


def workload_yaml(port):
    return f"""apiVersion: v1
kind: Service
metadata: {{name: echo-authz, namespace: default}}
spec:
  selector: {{app: echo-authz}}
  ports:
  - {{name: grpc, port: 7070, targetPort: {port}, protocol: TCP}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-authz-1
  namespace: default
  labels: {{kubernetes.io/service-name: echo-authz}}
addressType: IPv4
ports:
- {{name: grpc, port: {port}, protocol: TCP}}
endpoints:
- addresses: [127.0.0.1]
  conditions: {{ready: true}}
  targetRef: {{kind: Pod, name: echo-authz-1, namespace: default}}
---
apiVersion: v1
kind: Pod
metadata:
  name: echo-authz-1
  namespace: default
  labels: {{app: echo-authz}}
status: {{podIP: 127.0.0.1}}
"""


class GrpcAuthorizationTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.meshpilot_bin = binary("MESHPILOT_BIN", "build/release/controlplane/meshpilot")
        cls.echo_server_bin = binary("ECHO_SERVER_BIN",
                                     "build/release/tests/conformance/echo_server")
        cls.client_bin = binary("XDS_CLIENT_BIN",
                                "build/release/tests/conformance/xds_echo_client")

    def setUp(self):
        self.children = []
        self.tmp = tempfile.TemporaryDirectory(prefix="meshpilot-authz-")
        self.addCleanup(self.tmp.cleanup)
        self.addCleanup(self.stop_children)
        self.config_dir = os.path.join(self.tmp.name, "config")
        os.mkdir(self.config_dir)
        self.server_port = free_port()
        for name, text in (("workload.yaml", workload_yaml(self.server_port)),
                           ("allow.yaml", ALLOW_YAML), ("deny.yaml", DENY_YAML)):
            with open(os.path.join(self.config_dir, name), "w") as f:
                f.write(text)
        self.start_meshpilot()
        self.bootstrap = os.path.join(self.tmp.name, "bootstrap.json")
        with open(self.bootstrap, "w") as f:
            json.dump({
                "xds_servers": [{
                    "server_uri": f"127.0.0.1:{self.xds_port}",
                    "channel_creds": [{"type": "insecure"}],
                    "server_features": ["xds_v3"],
                }],
                "node": {"id": SERVER_NODE_ID,
                         "metadata": {"GENERATOR": "grpc", "NAMESPACE": "default",
                                      "LABELS": {"app": "echo-authz"}},
                         "locality": {}},
                "server_listener_resource_name_template":
                    "grpc/server?xds.resource.listening_address=%s",
            }, f)
        self.start_server()

    # ----- helpers

    def start(self, name, argv, env=None):
        child = Child(name, argv, env)
        self.children.append(child)
        return child

    def stop_children(self):
        for child in reversed(self.children):
            child.stop()

    def start_meshpilot(self):
        self.xds_port, self.debug_port = free_port(), free_port()
        self.meshpilot = self.start("meshpilot", [
            self.meshpilot_bin, "--config-dir", self.config_dir,
            "--xds-port", str(self.xds_port), "--debug-port", str(self.debug_port)])
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.meshpilot.proc.poll() is not None:
                self.fail("meshpilot exited before /ready\n" + self.diagnostics())
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.debug_port}/ready",
                                            timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.fail(f"meshpilot /ready not 200 within {READY_TIMEOUT_S}s\n" + self.diagnostics())

    def start_server(self):
        env = dict(os.environ, GRPC_XDS_BOOTSTRAP=self.bootstrap)
        env.pop("GRPC_XDS_BOOTSTRAP_CONFIG", None)
        self.server = self.start("echo_server --xds", [
            self.echo_server_bin, "--xds", "--port", str(self.server_port), "--host",
            "127.0.0.1", "--name", "echo-authz"], env)
        line = self.server.wait_for_stdout(lambda l: l.startswith("xds serving"), 20)
        self.expect(line is not None, "the xDS server never got its Listener from meshpilot")

    def diagnostics(self):
        text = "\n".join(child.log() for child in self.children)
        try:
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.debug_port}/debug/config_dump?proxyID="
                    f"{SERVER_NODE_ID}", timeout=2) as response:
                body = response.read().decode(errors="replace")
            text += "----- config_dump\n" + body[:30000] + "\n"
        except (urllib.error.URLError, OSError) as e:
            text += f"----- config_dump unreachable: {e}\n"
        return text

    def expect(self, condition, what):
        if not condition:
            self.fail(what + "\n" + self.diagnostics())

    def call(self, count, *metadata):
        """Makes count calls straight to the server; returns the client's summary dict."""
        argv = [self.client_bin, "--target", f"127.0.0.1:{self.server_port}",
                "--count", str(count), "--interval_ms", "0", "--timeout_ms", "5000",
                "--wait_for_ready"]
        if metadata:
            argv += ["--metadata", ",".join(metadata)]
        client = self.start("xds_echo_client", argv)
        rc = client.wait(60)
        self.expect(rc is not None, "client still running after 60 s")
        for line in reversed(client.stdout_snapshot()):
            if line.startswith("summary "):
                summary = dict(kv.split("=", 1) for kv in line.split()[1:])
                summary["rc"] = rc
                return summary
        self.fail("client printed no summary\n" + self.diagnostics())

    @staticmethod
    def codes(summary):
        out = {}
        for item in filter(None, summary.get("codes", "").split(",")):
            name, count = item.rsplit(":", 1)
            out[name] = int(count)
        return out

    def expect_all_ok(self, summary, what):
        self.expect(summary["ok"] == summary["calls"], f"{what}: not every call passed: {summary}")

    def expect_all_denied(self, summary, what):
        self.expect(summary["ok"] == "0" and
                    self.codes(summary) == {"PERMISSION_DENIED": int(summary["calls"])},
                    f"{what}: not every call was denied with PERMISSION_DENIED: {summary}")

    # ----- tests

    def test_allow_policy_with_header_condition(self):
        self.expect_all_ok(self.call(10, "x-token=let-me-in"), "x-token: let-me-in")
        self.expect_all_denied(self.call(10), "no x-token (no ALLOW rule matches)")
        self.expect_all_denied(self.call(10, "x-token=guess"), "a wrong x-token")

    def test_deny_policy_wins_over_allow(self):
        self.expect_all_denied(self.call(10, "x-token=let-me-in", "x-user=mallory"),
                               "x-user: mallory, even with the right token")
        self.expect_all_ok(self.call(10, "x-token=let-me-in", "x-user=alice"),
                           "x-user: alice with the right token")

    def test_removing_the_allow_policy_opens_the_server(self):
        self.expect_all_denied(self.call(5), "no token before the edit")
        os.remove(os.path.join(self.config_dir, "allow.yaml"))
        deadline = time.monotonic() + 15
        summary = None
        while time.monotonic() < deadline:
            summary = self.call(5)
            if summary["ok"] == "5":
                break
            time.sleep(0.2)
        self.expect(summary is not None and summary["ok"] == "5",
                    f"calls without a token still fail once no ALLOW policy selects the "
                    f"server: {summary}")
        # The DENY policy still applies.
        self.expect_all_denied(self.call(5, "x-user=mallory"), "x-user: mallory after the edit")


if __name__ == "__main__":
    unittest.main()
