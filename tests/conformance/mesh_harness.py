"""Shared harness for tests that run meshpilot with real processes around it.

Children (from tests/sidecar/harness.py) runs processes and collects their output; MeshTestCase
gives each test a temporary config folder, real Echo backends (echo_server), a meshpilot
serving that folder, a gRPC xDS bootstrap pointing at it, and failure messages that carry
every process's log and meshpilot's view of the proxy. Binaries come from the environment (set by ctest):
MESHPILOT_BIN, ECHO_SERVER_BIN, XDS_CLIENT_BIN; by hand they default to build/release.
Every wait is bounded: no test can hang.
"""

import json
import os
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "sidecar"))
from harness import Children, binary, free_port  # noqa: E402,F401 (re-exported)

READY_TIMEOUT_S = 20  # meshpilot start-up until /ready is 200


def parse_counts(field):
    """"a:3,b:2" (a client summary's backends= or codes=) -> {"a": 3, "b": 2}."""
    out = {}
    for item in filter(None, field.split(",")):
        name, count = item.rsplit(":", 1)
        out[name] = int(count)
    return out


class MeshTestCase(unittest.TestCase):
    """Processes, config folder and meshpilot for one test. Subclasses set NODE_ID (the proxy
    whose config_dump goes into failure messages) and TMP_PREFIX."""

    NODE_ID = "sidecar~127.0.0.1~client.default~default.svc.cluster.local"
    TMP_PREFIX = "meshpilot-test-"

    @classmethod
    def setUpClass(cls):
        cls.meshpilot_bin = binary("MESHPILOT_BIN", "build/release/controlplane/meshpilot")
        cls.echo_server_bin = binary("ECHO_SERVER_BIN",
                                     "build/release/tests/conformance/echo_server")
        cls.client_bin = binary("XDS_CLIENT_BIN",
                                "build/release/tests/conformance/xds_echo_client")

    def setUp(self):
        self.children = Children()
        self.meshpilot = None
        self.tmp = tempfile.TemporaryDirectory(prefix=self.TMP_PREFIX)
        self.addCleanup(self.tmp.cleanup)
        self.addCleanup(self.children.stop)
        self.config_dir = os.path.join(self.tmp.name, "config")
        os.mkdir(self.config_dir)

    # ----- processes



    def start_backend(self, name, *extra_args):
        """Starts an echo_server answering as `name` on a free port; returns the port."""
        child = self.children.start(name, [self.echo_server_bin, "--port", "0", "--name", name,
                                  "--host", "127.0.0.1", *extra_args])
        line = child.wait_for_stdout(lambda l: l.startswith("listening on "), 10)
        if line is None:
            self.fail(f"{name} did not start\n" + child.log())
        return int(line.rsplit(":", 1)[1])

    def write_config(self, filename, text):
        # Write beside the folder, then rename into it: the watcher never sees a half file.
        staging = os.path.join(self.tmp.name, filename + ".staging")
        with open(staging, "w") as f:
            f.write(text)
        os.replace(staging, os.path.join(self.config_dir, filename))

    def start_meshpilot(self):
        self.xds_port, self.debug_port = free_port(), free_port()
        self.meshpilot = self.children.start("meshpilot", [
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

    def write_bootstrap(self, labels=None, **extra):
        """A gRPC xDS bootstrap for NODE_ID (a proxyless client or server) at meshpilot."""
        metadata = {"GENERATOR": "grpc", "NAMESPACE": "default"}
        if labels:
            metadata["LABELS"] = labels
        self.bootstrap = os.path.join(self.tmp.name, "bootstrap.json")
        with open(self.bootstrap, "w") as f:
            json.dump({
                "xds_servers": [{
                    "server_uri": f"127.0.0.1:{self.xds_port}",
                    "channel_creds": [{"type": "insecure"}],
                    "server_features": ["xds_v3"],
                }],
                "node": {"id": self.NODE_ID, "metadata": metadata, "locality": {}},
                **extra,
            }, f, indent=2)

    def xds_env(self):
        env = dict(os.environ, GRPC_XDS_BOOTSTRAP=self.bootstrap)
        env.pop("GRPC_XDS_BOOTSTRAP_CONFIG", None)
        return env

    def run_client(self, target, *args, metadata=(), env=None, timeout_s=90):
        """Runs xds_echo_client to completion; returns its summary dict with "rc" added."""
        argv = [self.client_bin, "--target", target, *args]
        if metadata:
            argv += ["--metadata", ",".join(metadata)]
        client = self.children.start("xds_echo_client", argv, env)
        rc = self.finish(client, timeout_s)
        summary = self.summary(client)
        self.expect(summary is not None, "client printed no summary")
        summary["rc"] = rc
        return summary

    def finish(self, child, timeout_s):
        rc = child.wait(timeout_s)
        self.expect(rc is not None, f"{child.name} still running after {timeout_s}s")
        return rc

    @staticmethod
    def summary(child):
        for line in reversed(child.lines()):
            if line.startswith("summary "):
                return dict(kv.split("=", 1) for kv in line.split()[1:])
        return None

    # ----- failure messages

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
        text = self.children.logs()
        if self.meshpilot is not None and self.meshpilot.proc.poll() is None:
            for path in ("/debug/syncz", f"/debug/config_dump?proxyID={self.NODE_ID}"):
                text += f"----- GET {path}\n{self.debug_page(path)}\n"
        files = sorted(os.listdir(self.config_dir))
        return text + f"----- config dir: {files}\n"

    def expect(self, condition, what):
        if not condition:
            self.fail(what + "\n" + self.diagnostics())
