"""meshproxy-capture: a pod's outbound capture with eBPF instead of istio-iptables, end to end.

meshpilot serves a folder of YAML (an HTTP Service web at 10.96.0.50:80 and a TCP Service db
at 10.96.0.60:3306, their endpoints real servers on loopback); meshproxy runs as the pod's
sidecar under its own uid (1337). meshproxy-capture attaches its programs to a fresh cgroup
(v2) that holds this test process, and so every process it starts. There is no iptables rule
and no route to 10.96.0.0/16 in the test's network namespace: a connection to a cluster IP
reaches a backend only if the programs send it to meshproxy's virtualOutbound listener, and
meshproxy routes it only if SO_ORIGINAL_DST tells it where the client meant to go.

Exit code 77 (ctest: skipped) when network namespaces, cgroup v2 or BPF are not available.
"""

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (IN_NETNS, PROXY_UID, Backend, Children, SharedMeshTest, TcpEchoBackend,  # noqa: E402
                     admin_stat, binary, endpoint_slice, main_in_network_namespace, run,
                     service, start_meshpilot, start_sidecar, tcp_exchange, wait_until)

WAIT_S = 20
CAPTURE_BIN = binary("MESHPROXY_CAPTURE_BIN", "build/release/sidecar/meshproxy-capture")
WEB_IP, DB_IP = "10.96.0.50", "10.96.0.60"
OUTSIDE_IP = "10.1.0.9"  # an address outside the mesh, on this namespace's loopback


def cgroup2_root():
    """Where the cgroup v2 hierarchy is mounted, or None."""
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if fields[2] == "cgroup2":
                return fields[1]
    return None


def own_cgroup(root):
    """This process's cgroup v2 directory."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return os.path.join(root, line.strip()[3:].lstrip("/"))
    return root


def join_cgroup(directory, pid=None):
    with open(os.path.join(directory, "cgroup.procs"), "w") as f:
        f.write(str(pid or os.getpid()))


class Pod:
    """The pod: its cgroup with the capture attached, meshpilot, meshproxy and the backends."""

    def __init__(self, case):
        try:
            self._start(case)
        except BaseException:
            case.doCleanups()  # setUpClass failed: tearDownClass will not run them
            raise

    def _start(self, case):
        self.capture_bin = CAPTURE_BIN
        meshpilot_bin = binary("MESHPILOT_BIN", "build/release/controlplane/meshpilot")
        proxy_bin = binary("MESHPROXY_BIN", "build/release/sidecar/meshproxy")
        root = cgroup2_root()
        self.outer_cgroup = own_cgroup(root)
        self.cgroup = tempfile.mkdtemp(prefix="meshproxy-capture-test-", dir=root)
        case.addCleanup(os.rmdir, self.cgroup)
        attach = subprocess.run(self.capture_argv("attach"), capture_output=True, text=True)
        case.assertEqual(attach.returncode, 0, attach.stderr)
        # Into the pod, with everything started from now on; out again before it goes.
        join_cgroup(self.cgroup)
        case.addCleanup(join_cgroup, self.outer_cgroup)

        self.children = Children()
        case.addCleanup(self.children.stop)
        self.dir = tempfile.mkdtemp(prefix="meshproxy-capture-")
        case.addCleanup(shutil.rmtree, self.dir, True)
        self.web, self.db = Backend("web"), TcpEchoBackend("db")
        run("ip", "addr", "add", f"{OUTSIDE_IP}/32", "dev", "lo")
        self.outside = Backend("outside", host=OUTSIDE_IP)
        for b in (self.web, self.db, self.outside):
            case.addCleanup(b.stop)
        config_dir = os.path.join(self.dir, "config")
        os.mkdir(config_dir)
        with open(os.path.join(config_dir, "mesh.yaml"), "w") as f:
            f.write("apiVersion: v1\nkind: Namespace\nmetadata: {name: default}\n"
                    + service("web", WEB_IP, [("http", 80)])
                    + endpoint_slice("web", "web", [("http", self.web.port)])
                    + service("db", DB_IP, [("tcp-db", 3306)])
                    + endpoint_slice("db", "db", [("tcp-db", self.db.port)]))
        start_meshpilot(self.children, meshpilot_bin, config_dir)
        start_sidecar(self.children, proxy_bin, "--pod-name", "client", "--namespace", "default",
                      "--labels", "app=client")

    def capture_argv(self, command):
        return [self.capture_bin, command, "--cgroup", self.cgroup,
                "--proxy-uid", str(PROXY_UID), "--proxy-gid", str(PROXY_UID)]

    def logs(self):
        return self.children.logs()


def get(url, host=None):
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    with urllib.request.urlopen(request, timeout=5) as r:
        return json.loads(r.read())


class EbpfCaptureTest(SharedMeshTest):
    mesh_class = Pod

    def test_http_to_a_cluster_ip_is_routed_by_meshproxy(self):
        wait_until(lambda: self._answers(f"http://{WEB_IP}/"), WAIT_S, "web through meshproxy")
        for host in (WEB_IP, "web.default.svc.cluster.local"):
            info = get(f"http://{WEB_IP}/hello", host)
            self.assertEqual(info["backend"], "web")
            self.assertIn("x-request-id", info["headers"])  # it went through meshproxy
        # The client sees the address it connected to, as with NAT.
        with socket.create_connection((WEB_IP, 80), timeout=5) as client:
            self.assertEqual(client.getpeername(), (WEB_IP, 80))
            self.assertEqual(client.getsockname()[0], "127.0.0.1")
        self.assertGreaterEqual(
            admin_stat("cluster.outbound|80||web.default.svc.cluster.local.upstream_rq_2xx"), 2)

    def test_tcp_to_a_cluster_ip_is_proxied(self):
        wait_until(lambda: self._answers(f"http://{WEB_IP}/"), WAIT_S, "meshproxy's config")
        self.assertEqual(tcp_exchange(3306, b"select 1", host=DB_IP), b"db:select 1")
        self.assertGreaterEqual(admin_stat(
            "cluster.outbound|3306||db.default.svc.cluster.local.upstream_cx_total"), 1)

    def test_meshproxys_own_connections_are_not_captured(self):
        """A destination outside the mesh goes through PassthroughCluster: meshproxy connects
        to the original destination itself, which it could not if its own connect() were
        captured too (it would loop back to itself)."""
        wait_until(lambda: self._answers(f"http://{WEB_IP}/"), WAIT_S, "meshproxy's config")
        before = admin_stat("cluster.PassthroughCluster.upstream_cx_total") or 0
        info = get(f"http://{OUTSIDE_IP}:{self.mesh.outside.port}/direct")
        self.assertEqual(info["backend"], "outside")
        self.assertNotIn("x-request-id", info["headers"])  # TCP passthrough: bytes as sent
        self.assertEqual(admin_stat("cluster.PassthroughCluster.upstream_cx_total"), before + 1)

    def test_processes_outside_the_cgroup_and_loopback_are_not_captured(self):
        outside = subprocess.run(
            [sys.executable, "-c",
             "import socket, sys\n"
             "try: socket.create_connection((sys.argv[1], 80), timeout=2)\n"
             "except OSError as e: print(e.errno)\n", WEB_IP],
            capture_output=True, text=True, timeout=10,
            preexec_fn=lambda: join_cgroup(self.mesh.outer_cgroup))
        self.assertEqual(outside.stdout.strip(), str(errno.ENETUNREACH), outside.stderr)
        # Loopback is left alone inside the pod: the connection reaches the listener it names,
        # not meshproxy's 15001.
        for address in ("127.0.0.1", "127.0.0.2"):
            with socket.socket() as listener:
                listener.bind((address, 0))
                listener.listen()
                listener.settimeout(5)
                with socket.create_connection(listener.getsockname(), timeout=5) as client:
                    accepted, peer = listener.accept()
                    accepted.close()
                    self.assertEqual(peer, client.getsockname())
                    self.assertEqual(client.getpeername(), listener.getsockname())

    def test_zz_attach_again_keeps_connections_detach_ends_the_capture(self):
        """Last (zz): it detaches the programs for a moment."""
        wait_until(lambda: self._answers(f"http://{WEB_IP}/"), WAIT_S, "meshproxy's config")
        # Attaching again (new flags, say) keeps what the programs know of open connections.
        with socket.create_connection((WEB_IP, 80), timeout=5) as open_before:
            again = subprocess.run(self.mesh.capture_argv("attach"), capture_output=True, text=True)
            self.assertEqual(again.returncode, 0, again.stderr)
            self.assertEqual(open_before.getpeername(), (WEB_IP, 80))
            open_before.sendall(f"GET /kept HTTP/1.1\r\nHost: {WEB_IP}\r\n\r\n".encode())
            self.assertIn(b"HTTP/1.1 200", open_before.recv(4096))
        listed = subprocess.run(["bpftool", "cgroup", "show", self.mesh.cgroup],
                                capture_output=True, text=True)
        if listed.returncode == 0:  # one set of programs, not two
            self.assertEqual(listed.stdout.count("mp_"), 4, listed.stdout)
        detach = subprocess.run(self.mesh.capture_argv("detach"), capture_output=True, text=True)
        self.assertEqual(detach.returncode, 0, detach.stderr)
        with self.assertRaises(OSError) as raised:
            socket.create_connection((WEB_IP, 80), timeout=2)
        self.assertEqual(raised.exception.errno, errno.ENETUNREACH)
        attach = subprocess.run(self.mesh.capture_argv("attach"), capture_output=True, text=True)
        self.assertEqual(attach.returncode, 0, attach.stderr)
        self.assertEqual(get(f"http://{WEB_IP}/again")["backend"], "web")

    def test_bad_flags_are_reported_with_the_flag(self):
        bad = subprocess.run(self.mesh.capture_argv("attach") + ["--include", "10.0.0.0/40"],
                             capture_output=True, text=True)
        self.assertEqual(bad.returncode, 1)
        self.assertIn('--include: "10.0.0.0/40": the prefix length must be 0 to 32', bad.stderr)
        missing = subprocess.run([self.mesh.capture_bin, "attach", "--cgroup", "/nonexistent"],
                                 capture_output=True, text=True)
        self.assertEqual(missing.returncode, 1)
        self.assertIn("--cgroup /nonexistent: No such file or directory", missing.stderr)
        # A refused attach leaves the capture attached before in place.
        self.assertEqual(get(f"http://{WEB_IP}/still")["backend"], "web")

    @staticmethod
    def _answers(url):
        try:
            return get(url)["backend"] == "web"
        except OSError:
            return False


def capture_unavailable():
    """Why this machine cannot run these tests (no cgroup v2, BPF not permitted), or None."""
    root = cgroup2_root()
    if root is None:
        return "no cgroup v2 hierarchy is mounted"
    try:
        probe = tempfile.mkdtemp(prefix="meshproxy-capture-probe-", dir=root)
    except OSError as e:
        return f"cannot make a cgroup: {e}"
    try:
        attach = subprocess.run([CAPTURE_BIN, "attach", "--cgroup", probe],
                                capture_output=True, text=True)
        if attach.returncode != 0 and "Operation not permitted" in attach.stderr:
            return f"BPF programs cannot be attached here: {attach.stderr.strip()}"
        return None
    finally:
        os.rmdir(probe)  # detaches the programs


if __name__ == "__main__":
    if os.environ.get(IN_NETNS) != "1" and (why := capture_unavailable()):
        print(f"skipped: {why}")
        sys.exit(77)
    sys.exit(main_in_network_namespace(__file__))
