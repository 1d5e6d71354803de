"""Conformance: gRPC's own C++ xDS client, driven by a running meshpilot, reaches real backends.

Each test starts real Echo backends (echo_server), writes a folder of Kubernetes YAML for them,
starts meshpilot on that folder, and runs xds_echo_client (libgrpc++'s xDS resolver and LB
policies) against it. Config edits happen on the folder while the client keeps running, as a
user would edit config under a live mesh.

Binaries come from the environment (set by ctest): MESHPILOT_BIN, ECHO_SERVER_BIN,
XDS_CLIENT_BIN; by hand they default to build/release. Set GRPC_TRACE=xds_client and
GRPC_VERBOSITY=debug in the environment to get the client's xDS trace in failure messages.
Every wait is bounded: no test can hang.
"""

import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NODE_ID = "sidecar~127.0.0.1~client.default~default.svc.cluster.local"
ECHO_TARGET = "xds:///echo.default.svc.cluster.local:7070"

READY_TIMEOUT_S = 20  # meshpilot start-up until /ready is 200
LOG_TAIL_LINES = 150  # per process and stream, in failure messages


def binary(env_name, default_relative):
    """The path of a binary under test. ctest names them: missing is then a failure. By hand,
    an unbuilt default path skips the tests."""
    path = os.environ.get(env_name)
    if path:
        if not os.access(path, os.X_OK):
            raise RuntimeError(f"{env_name}={path} is not an executable; build it first")
        return path
    path = os.path.join(REPO, default_relative)
    if not os.access(path, os.X_OK):
        raise unittest.SkipTest(f"{path} is not built (or set {env_name})")
    return path


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Child:
    """A child process whose stdout and stderr lines are collected by reader threads."""

    def __init__(self, name, argv, env=None):
        self.name = name
        self.argv = argv
        self.stdout = []
        self.stderr = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, errors="replace", env=env)
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, lines):
        for line in stream:
            with self._changed:
                lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for_stdout(self, predicate, timeout_s, start=0):
        """Returns the first stdout line (from index start) matching predicate, or None on
        timeout or when the process has exited without printing one."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for line in self.stdout[start:]:
                    if predicate(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and
                                      not any(r.is_alive() for r in self._readers)):
                    return None
                self._changed.wait(min(remaining, 0.2))

    def stdout_snapshot(self):
        with self._changed:
            return list(self.stdout)

    def wait(self, timeout_s):
        """Waits for exit; returns the exit code, or None if still running."""
        try:
            rc = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None
        self._drain()
        return rc

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._drain()

    def _drain(self):
        for reader in self._readers:
            reader.join(timeout=2)
        if not any(reader.is_alive() for reader in self._readers):
            self.proc.stdout.close()
            self.proc.stderr.close()

    def log(self):
        with self._changed:
            out, err = collapse(self.stdout), collapse(self.stderr)
        return (f"----- {self.name} (rc={self.proc.poll()}): {' '.join(self.argv)}\n"
                f"--- stdout\n" + "\n".join(out[-LOG_TAIL_LINES:]) +
                f"\n--- stderr\n" + "\n".join(err[-LOG_TAIL_LINES:]) + "\n")


def collapse(lines):
    """Run-length encodes repeated lines, so a failing client's log stays readable."""
    out = []
    previous, repeats = None, 0
    for line in lines + [None]:
        if line == previous:
            repeats += 1
            continue
        if previous is not None:
            out.append(previous if repeats == 1 else f"{previous}  [x{repeats}]")
        previous, repeats = line, 1
    return out


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


class GrpcXdsClientTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.meshpilot_bin = binary("MESHPILOT_BIN", "build/release/controlplane/meshpilot")
        cls.echo_server_bin = binary("ECHO_SERVER_BIN",
                                     "build/release/tests/conformance/echo_server")
        cls.client_bin = binary("XDS_CLIENT_BIN",
                                "build/release/tests/conformance/xds_echo_client")

    def setUp(self):
        self.children = []
        self.tmp = tempfile.TemporaryDirectory(prefix="meshpilot-conformance-")
        self.addCleanup(self.tmp.cleanup)
        self.addCleanup(self.stop_children)
        self.config_dir = os.path.join(self.tmp.name, "config")
        os.mkdir(self.config_dir)
        self.backend_ports = {}
        for backend in ("backend-a", "backend-b"):
            self.start_backend(backend)
        self.write_config("services.yaml", service_yaml("echo", 7070))
        for backend, port in self.backend_ports.items():
            self.write_config(f"echo-{backend}.yaml", endpoint_slice_yaml("echo", backend, port))
        self.start_meshpilot()
        self.bootstrap = os.path.join(self.tmp.name, "bootstrap.json")
        with open(self.bootstrap, "w") as f:
            json.dump({
                "xds_servers": [{
                    "server_uri": f"127.0.0.1:{self.xds_port}",
                    "channel_creds": [{"type": "insecure"}],
                    "server_features": ["xds_v3"],
                }],
                "node": {
                    "id": NODE_ID,
                    "metadata": {"GENERATOR": "grpc", "NAMESPACE": "default"},
                    "locality": {},
                },
            }, f, indent=2)

    # ----- helpers

    def start(self, name, argv, env=None):
        child = Child(name, argv, env)
        self.children.append(child)
        return child

    def stop_children(self):
        for child in reversed(self.children):
            child.stop()

    def start_backend(self, backend):
        child = self.start(backend, [self.echo_server_bin, "--port", "0", "--name", backend,
                                     "--host", "127.0.0.1"])
        line = child.wait_for_stdout(lambda l: l.startswith("listening on "), 10)
        if line is None:
            self.fail(f"{backend} did not start\n" + child.log())
        self.backend_ports[backend] = int(line.rsplit(":", 1)[1])

    def write_config(self, filename, text):
        # Write beside the folder, then rename into it: the watcher never sees a half file.
        staging = os.path.join(self.tmp.name, filename + ".staging")
        with open(staging, "w") as f:
            f.write(text)
        os.replace(staging, os.path.join(self.config_dir, filename))

    def start_meshpilot(self):
        self.xds_port, self.debug_port = free_port(), free_port()
        self.meshpilot = self.start("meshpilot", [
            self.meshpilot_bin, "--config-dir", self.config_dir,
            "--xds-port", str(self.xds_port), "--debug-port", str(self.debug_port)])
        deadline = time.monotonic() + READY_TIMEOUT_S
        last = "no answer"
        while time.monotonic() < deadline:
            if self.meshpilot.proc.poll() is not None:
                self.fail("meshpilot exited before /ready\n" + self.diagnostics())
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{self.debug_port}/ready", timeout=1) as response:
                    if response.status == 200:
                        return
                    last = f"HTTP {response.status}"
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}"
            except (urllib.error.URLError, OSError) as e:
                last = str(e)
            time.sleep(0.1)
        self.fail(f"meshpilot /ready not 200 within {READY_TIMEOUT_S}s (last: {last})\n" +
                  self.diagnostics())

    def client(self, target, *args):
        env = dict(os.environ, GRPC_XDS_BOOTSTRAP=self.bootstrap)
        env.pop("GRPC_XDS_BOOTSTRAP_CONFIG", None)
        return self.start("xds_echo_client", [self.client_bin, "--target", target, *args], env)

    def debug_page(self, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.debug_port}{path}",
                                        timeout=2) as response:
                body = response.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            body = f"HTTP {e.code}: {e.read().decode(errors='replace')}"
        except (urllib.error.URLError, OSError) as e:
            body = f"unreachable: {e}"
        return body if len(body) < 30000 else body[:30000] + "\n...(truncated)"

    def diagnostics(self):
        text = "\n".join(child.log() for child in self.children)
        if getattr(self, "meshpilot", None) and self.meshpilot.proc.poll() is None:
            for path in ("/debug/syncz", f"/debug/config_dump?proxyID={NODE_ID}"):
                text += f"----- GET {path}\n{self.debug_page(path)}\n"
        files = sorted(os.listdir(self.config_dir))
        return text + f"----- config dir: {files}\n"

    def expect(self, condition, what):
        if not condition:
            self.fail(what + "\n" + self.diagnostics())

    def finish(self, child, timeout_s):
        rc = child.wait(timeout_s)
        self.expect(rc is not None, f"{child.name} still running after {timeout_s}s")
        return rc

    @staticmethod
    def summary(child):
        for line in reversed(child.stdout_snapshot()):
            if line.startswith("summary "):
                return dict(kv.split("=", 1) for kv in line.split()[1:])
        return None

    @staticmethod
    def backend_counts(summary):
        counts = {}
        for item in filter(None, summary.get("backends", "").split(",")):
            name, count = item.rsplit(":", 1)
            counts[name] = int(count)
        return counts

    # ----- tests

    def test_balances_across_both_backends(self):
        client = self.client(ECHO_TARGET, "--count", "40", "--interval_ms", "20",
                             "--timeout_ms", "5000")
        rc = self.finish(client, 40)
        summary = self.summary(client)
        self.expect(summary is not None, "client printed no summary")
        self.expect(rc == 0 and summary["ok"] == "40", f"not every call succeeded: {summary}")
        counts = self.backend_counts(summary)
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
        lines_before_edit = len(client.stdout_snapshot())
        edited_at = time.monotonic()
        os.remove(os.path.join(self.config_dir, "echo-backend-b.yaml"))

        rc = self.finish(client, 40)
        converged_s = time.monotonic() - edited_at
        self.expect(rc == 0, "client did not converge to backend-a after backend-b's "
                    "EndpointSlice was removed")
        # 20 calls at 50 ms take ~1 s on their own; the rest is meshpilot noticing the file
        # (within a second, by contract) and pushing EDS.
        self.expect(converged_s < 10, f"convergence took {converged_s:.1f}s")
        after = client.stdout_snapshot()[lines_before_edit:]
        errors = [l for l in after if l.startswith("error ")]
        self.expect(not errors, f"calls failed while an endpoint was removed: {errors[:5]}")

    def test_new_service_becomes_callable(self):
        self.start_backend("backend-c")
        self.write_config("echo2.yaml",
                          service_yaml("echo2", 7071) + "---\n" +
                          endpoint_slice_yaml("echo2", "backend-c",
                                              self.backend_ports["backend-c"]))
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
        self.expect(rc == 0 and set(self.backend_counts(summary)) == {"backend-a", "backend-b"},
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
