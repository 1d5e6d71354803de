"""Conformance: gRPC's own C++ xDS client, driven by a running meshpilot, reaches real backends.

Each test starts real Echo backends (echo_server), writes a folder of Kubernetes YAML for them,
starts meshpilot on that folder, and runs xds_echo_client (libgrpc++'s xDS resolver and LB
policies) against it. Config edits happen on the folder while the client keeps running, as a
user would edit config under a live mesh.

The processes, ports and failure messages come from mesh_harness.py. Set GRPC_TRACE=xds_client
and GRPC_VERBOSITY=debug in the environment to get the client's xDS trace in failure messages.
"""

import os
import time
import unittest

from mesh_harness import MeshTestCase, parse_counts

ECHO_TARGET = "xds:///echo.default.svc.cluster.local:7070"


def service_yaml(name, port):
    return f"""apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: default
  labels:
    app: {name}
spec:
  selector:
    app: {name}
  ports:
  - name: grpc
    port: {port}
    protocol: TCP
"""


def endpoint_slice_yaml(service, backend, port):
    return f"""apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {service}-{backend}
  namespace: default
  labels:
    kubernetes.io/service-name: {service}
addressType: IPv4
ports:
- name: grpc
  port: {port}
  protocol: TCP
endpoints:
- addresses:
  - 127.0.0.1
  conditions:
    ready: true
"""


class GrpcXdsClientTest(MeshTestCase):

    TMP_PREFIX = "meshpilot-conformance-"

    def setUp(self):
        super().setUp()
        self.backend_ports = {}
        for backend in ("backend-a", "backend-b"):
            self.backend_ports[backend] = self.start_backend(backend)
        self.write_config("services.yaml", service_yaml("echo", 7070))
        for backend, port in self.backend_ports.items():
            self.write_config(f"echo-{backend}.yaml", endpoint_slice_yaml("echo", backend, port))
        self.start_meshpilot()
        self.write_bootstrap()

    def client(self, target, *args):
        """Starts xds_echo_client in the background; the test decides when it must end."""
        return self.children.start("xds_echo_client", [self.client_bin, "--target", target, *args],
                          self.xds_env())

    # ----- tests

    def test_balances_across_both_backends(self):
        client = self.client(ECHO_TARGET, "--count", "40", "--interval_ms", "20",
                             "--timeout_ms", "5000")
        rc = self.finish(client, 40)
        summary = self.summary(client)
        self.expect(summary is not None, "client printed no summary")
        self.expect(rc == 0 and summary["ok"] == "40", f"not every call succeeded: {summary}")
        counts = parse_counts(summary.get("backends", ""))
        self.expect(set(counts) == {"backend-a", "backend-b"},
                    f"calls did not reach both backends (and only them): {counts}")
        self.expect(min(counts.values()) >= 10, f"calls are not balanced: {counts}")

    def test_converges_after_endpoint_removed(self):
        # Started before the edit; it exits 0 once 20 calls in a row reached only backend-a.
        client = self.client(ECHO_TARGET, "--until_only", "backend-a", "--consecutive", "20",
                             "--interval_ms", "50", "--timeout_ms", "5000",
                             "--max_seconds", "30")
        for backend in ("backend-a", "backend-b"):
            line = client.wait_for_stdout(lambda l, b=backend: l == f"ok {b}", 15)
            self.expect(line is not None, f"{backend} not reached before the edit")
        lines_before_edit = len(client.lines())
        edited_at = time.monotonic()
        os.remove(os.path.join(self.config_dir, "echo-backend-b.yaml"))

        rc = self.finish(client, 40)
        converged_s = time.monotonic() - edited_at
        self.expect(rc == 0, "client did not converge to backend-a after backend-b's "
                    "EndpointSlice was removed")
        # 20 calls at 50 ms take ~1 s on their own; the rest is meshpilot noticing the file
        # (within a second, by contract) and pushing EDS.
        self.expect(converged_s < 10, f"convergence took {converged_s:.1f}s")
        after = client.lines()[lines_before_edit:]
        errors = [l for l in after if l.startswith("error ")]
        self.expect(not errors, f"calls failed while an endpoint was removed: {errors[:5]}")

    def test_new_service_becomes_callable(self):
        port = self.start_backend("backend-c")
        self.write_config("echo2.yaml",
                          service_yaml("echo2", 7071) + "---\n" +
                          endpoint_slice_yaml("echo2", "backend-c", port))
        client = self.client("xds:///echo2.default.svc.cluster.local:7071",
                             "--until_only", "backend-c", "--consecutive", "5",
                             "--interval_ms", "50", "--timeout_ms", "3000",
                             "--max_seconds", "20")
        rc = self.finish(client, 30)
        self.expect(rc == 0, "the added Service echo2 did not become callable")

        # The first Service is untouched by the addition.
        client = self.client(ECHO_TARGET, "--count", "10", "--interval_ms", "10")
        rc = self.finish(client, 30)
        summary = self.summary(client) or {}
        self.expect(rc == 0 and set(parse_counts(summary.get("backends", ""))) == {"backend-a", "backend-b"},
                    f"echo broke after echo2 was added: {summary}")

    def test_invalid_edit_keeps_last_good_config(self):
        client = self.client(ECHO_TARGET, "--count", "60", "--interval_ms", "50",
                             "--timeout_ms", "5000")
        line = client.wait_for_stdout(lambda l: l.startswith("ok "), 15)
        self.expect(line is not None, "no call succeeded before the edit")
        # The Service turns invalid: it is rejected with its field path, and the last good
        # version keeps serving.
        self.write_config("services.yaml", service_yaml("echo", 7070).replace(
            "port: 7070", "port: 70000"))
        deadline = time.monotonic() + 10
        configz = ""
        while time.monotonic() < deadline:
            configz = self.debug_page("/debug/configz")
            if "spec.ports[0].port" in configz:
                break
            time.sleep(0.1)
        self.expect("spec.ports[0].port" in configz,
                    f"the rejected Service is not reported with its field path: {configz}")
        rc = self.finish(client, 30)
        summary = self.summary(client) or {}
        self.expect(rc == 0 and summary.get("ok") == "60",
                    f"calls failed after an invalid edit: {summary}")

    def test_sigterm_closes_streams_and_exits_zero(self):
        client = self.client(ECHO_TARGET, "--count", "80", "--interval_ms", "50",
                             "--timeout_ms", "5000")
        line = client.wait_for_stdout(lambda l: l.startswith("ok "), 15)
        self.expect(line is not None, "no call succeeded before shutdown")
        self.meshpilot.proc.terminate()
        rc = self.meshpilot.wait(10)
        self.expect(rc == 0, f"meshpilot did not exit 0 on SIGTERM (rc={rc})")
        self.expect(any("shutting down" in l for l in self.meshpilot.stderr),
                    "meshpilot did not log its shutdown")
        # The client keeps its last config while the control plane is away.
        rc = self.finish(client, 30)
        summary = self.summary(client) or {}
        self.expect(rc == 0 and summary.get("ok") == "80",
                    f"calls failed once meshpilot was gone: {summary}")


if __name__ == "__main__":
    unittest.main()
