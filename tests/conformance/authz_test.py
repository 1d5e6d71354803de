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

Processes, ports and failure messages come from mesh_harness.py. Every wait is bounded.
"""

import os
import time
import unittest

from mesh_harness import MeshTestCase, free_port, parse_counts

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


class GrpcAuthorizationTest(MeshTestCase):

    NODE_ID = "sidecar~127.0.0.1~echo-authz-1.default~default.svc.cluster.local"
    TMP_PREFIX = "meshpilot-authz-"

    def setUp(self):
        super().setUp()
        self.server_port = free_port()
        for name, text in (("workload.yaml", workload_yaml(self.server_port)),
                           ("allow.yaml", ALLOW_YAML), ("deny.yaml", DENY_YAML)):
            self.write_config(name, text)
        self.start_meshpilot()
        self.write_bootstrap(labels={"app": "echo-authz"},
                             server_listener_resource_name_template=(
                                 "grpc/server?xds.resource.listening_address=%s"))
        self.server = self.children.start("echo_server --xds", [
            self.echo_server_bin, "--xds", "--port", str(self.server_port), "--host",
            "127.0.0.1", "--name", "echo-authz"], self.xds_env())
        line = self.server.wait_for_stdout(lambda l: l.startswith("xds serving"), 20)
        self.expect(line is not None, "the xDS server never got its Listener from meshpilot")

    def call(self, count, *metadata):
        """Makes count calls straight to the server; returns the client's summary dict."""
        return self.run_client(f"127.0.0.1:{self.server_port}", "--count", str(count),
                               "--interval_ms", "0", "--timeout_ms", "5000", "--wait_for_ready",
                               metadata=metadata, timeout_s=60)

    def expect_all_ok(self, summary, what):
        self.expect(summary["ok"] == summary["calls"], f"{what}: not every call passed: {summary}")

    def expect_all_denied(self, summary, what):
        self.expect(summary["ok"] == "0" and
                    parse_counts(summary.get("codes", "")) ==
                    {"PERMISSION_DENIED": int(summary["calls"])},
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
