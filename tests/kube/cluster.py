"""A real Kubernetes API server for tests: etcd and kube-apiserver on loopback.

    with Cluster.start() as cluster:          # or Cluster.external() / Cluster.from_env()
        cluster.apply({...})                  # server-side apply of one object (a dict)
        cluster.kubeconfig                    # path of a kubeconfig for the admin user

Cluster.start() builds nothing itself unless needed: the binaries come from KUBE_BIN_DIR, or
from tests/kube/build_binaries.sh, which builds them once into ~/.cache/meshpilot (about ten
minutes on two cores) and afterwards only prints where they are. Every start uses a fresh
data directory, free ports, and certificates made with OpenSSL at start: a CA that signs the
serving certificate and the clients, an admin client certificate in group system:masters and
a service-account signing key. There is no controller-manager and no scheduler: tests create
Services, EndpointSlices and Pods themselves, as those controllers would.

With MESHPILOT_TEST_EXTERNAL_CLUSTER=1 and KUBECONFIG set, Cluster.from_env() uses that cluster
instead (kind, for example); what needs the harness's own etcd or API server process
(restarts, compaction) is then unavailable and such tests skip themselves.

Python 3 standard library only, plus OpenSSL's command line; every wait is bounded.
"""

import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ETCD_READY_TIMEOUT_S = 30
APISERVER_READY_TIMEOUT_S = 90

# Where each kind lives in the API: (api path prefix, plural, namespaced).
KINDS = {
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "Service"): ("services", True),
    ("v1", "Endpoints"): ("endpoints", True),
    ("v1", "Pod"): ("pods", True),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("discovery.k8s.io/v1", "EndpointSlice"): ("endpointslices", True),
    ("v1", "Event"): ("events", True),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): ("customresourcedefinitions", False),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("policy/v1", "PodDisruptionBudget"): ("poddisruptionbudgets", True),
    ("coordination.k8s.io/v1", "Lease"): ("leases", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ("clusterrolebindings", False),
    ("rbac.authorization.k8s.io/v1", "Role"): ("roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("rolebindings", True),
}
for _version in ("v1", "v1beta1", "v1alpha3"):
    KINDS[(f"networking.istio.io/{_version}", "VirtualService")] = ("virtualservices", True)
    KINDS[(f"networking.istio.io/{_version}", "DestinationRule")] = ("destinationrules", True)
for _version in ("v1", "v1beta1"):
    KINDS[(f"security.istio.io/{_version}", "AuthorizationPolicy")] = (
        "authorizationpolicies", True)


class ApiError(Exception):
    def __init__(self, status, body, what):
        self.status = status
        self.body = body
        super().__init__(f"{what}: HTTP {status}: {body[:2000]}")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def object_path(obj, name=None):
    """The API path of obj (a dict with apiVersion, kind, metadata), or of its collection
    when name is ""."""
    api_version, kind = obj["apiVersion"], obj["kind"]
    try:
        plural, namespaced = KINDS[(api_version, kind)]
    except KeyError:
        raise ValueError(f"unknown kind {api_version} {kind}") from None
    prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    metadata = obj.get("metadata", {})
    if namespaced:
        prefix += f"/namespaces/{metadata.get('namespace', 'default')}"
    name = metadata["name"] if name is None else name
    return f"{prefix}/{plural}" + (f"/{name}" if name else "")


class Cluster:
    """An API server reachable with a kubeconfig; started here or external."""

    def __init__(self):
        self.kubeconfig = None
        self.server = None
        self._ssl = None
        self._headers = {}
        self.external = False
        self.workdir = None
        self.etcd = None
        self.apiserver = None
        self.startup_seconds = None

    # ----- construction

    @classmethod
    def from_env(cls):
        """An external cluster if MESHPILOT_TEST_EXTERNAL_CLUSTER=1 (and KUBECONFIG), else a
        fresh local one."""
        if os.environ.get("MESHPILOT_TEST_EXTERNAL_CLUSTER") == "1":
            return cls.external_cluster(os.environ["KUBECONFIG"])
        return cls.start()

    @classmethod
    def external_cluster(cls, kubeconfig):
        import yaml  # python3-yaml: only external kubeconfigs need a YAML parser
        cluster = cls()
        cluster.external = True
        cluster.kubeconfig = kubeconfig
        cluster.workdir = tempfile.mkdtemp(prefix="meshpilot-kube-external-")
        with open(kubeconfig) as f:
            config = yaml.safe_load(f)
        context_name = config.get("current-context")
        context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
        entry = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next((u["user"] for u in config.get("users", []) if u["name"] == context["user"]),
                    {})
        base = os.path.dirname(os.path.abspath(kubeconfig))

        def material(section, key):
            if section.get(key + "-data"):
                path = os.path.join(cluster.workdir, key)
                with open(path, "wb") as out:
                    out.write(base64.b64decode(section[key + "-data"]))
                return path
            if section.get(key):
                return os.path.join(base, section[key])
            return None

        ca = material(entry, "certificate-authority")
        cert, key = material(user, "client-certificate"), material(user, "client-key")
        cluster._connect(entry["server"], ca, cert, key, user.get("token"),
                         entry.get("insecure-skip-tls-verify", False))
        cluster.startup_seconds = 0.0
        return cluster

    @classmethod
    def start(cls, bin_dir=None):
        cluster = cls()
        started = time.monotonic()
        try:
            cluster._start_local(bin_dir or binaries())
        except BaseException:
            cluster.stop()
            raise
        cluster.startup_seconds = time.monotonic() - started
        return cluster

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # ----- local cluster

    def _start_local(self, bin_dir):
        self.bin_dir = bin_dir
        self.workdir = tempfile.mkdtemp(prefix="meshpilot-kube-")
        self.pki = os.path.join(self.workdir, "pki")
        os.mkdir(self.pki)
        make_certificates(self.pki)
        self.etcd_port, self.etcd_peer_port = free_port(), free_port()
        self.apiserver_port = free_port()
        self.start_etcd()
        self.start_apiserver()
        self._connect(f"https://127.0.0.1:{self.apiserver_port}",
                      os.path.join(self.pki, "ca.crt"), os.path.join(self.pki, "admin.crt"),
                      os.path.join(self.pki, "admin.key"), None, False)
        self.wait_ready()
        self.kubeconfig = os.path.join(self.workdir, "kubeconfig")
        write_kubeconfig(self.kubeconfig, self.server, self.pki)

    @property
    def etcd_url(self):
        return f"http://127.0.0.1:{self.etcd_port}"

    def start_etcd(self):
        log = open(os.path.join(self.workdir, "etcd.log"), "ab")
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        self.etcd = subprocess.Popen([
            os.path.join(self.bin_dir, "etcd"),
            "--name", "default",
            "--data-dir", os.path.join(self.workdir, "etcd"),
            "--listen-client-urls", self.etcd_url,
            "--advertise-client-urls", self.etcd_url,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"default={peer}",
            "--unsafe-no-fsync",  # a test's data dies with it: skip the disk flushes
            "--log-level", "warn",
        ], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + ETCD_READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.etcd.poll() is not None:
                raise RuntimeError("etcd exited at start\n" + self.log_tail("etcd.log"))
            try:
                with urllib.request.urlopen(self.etcd_url + "/health", timeout=1) as response:
                    if json.load(response).get("health") == "true":
                        return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"etcd not healthy within {ETCD_READY_TIMEOUT_S}s\n" +
                           self.log_tail("etcd.log"))

    def start_apiserver(self):
        pki = self.pki
        log = open(os.path.join(self.workdir, "kube-apiserver.log"), "ab")
        self.apiserver = subprocess.Popen([
            os.path.join(self.bin_dir, "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki}/apiserver.crt",
            f"--tls-private-key-file={pki}/apiserver.key",
            f"--client-ca-file={pki}/ca.crt",
            f"--service-account-key-file={pki}/sa.key",
            f"--service-account-signing-key-file={pki}/sa.key",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--authorization-mode=RBAC",
            # No controller-manager creates the "default" ServiceAccount of each namespace:
            # Pods name theirs, and nothing checks it exists.
            "--disable-admission-plugins=ServiceAccount",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            "--v=1",
        ], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def wait_ready(self, timeout_s=APISERVER_READY_TIMEOUT_S):
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            if self.apiserver is not None and self.apiserver.poll() is not None:
                raise RuntimeError("kube-apiserver exited at start\n" +
                                   self.log_tail("kube-apiserver.log"))
            try:
                status, body = self.request("GET", "/readyz", raw=True, timeout=2)
                if status == 200:
                    return
                last = f"HTTP {status}: {body[-500:]}"
            except (urllib.error.URLError, OSError) as e:
                last = str(e)
            time.sleep(0.2)
        raise RuntimeError(f"kube-apiserver not ready within {timeout_s}s (last: {last})\n" +
                           (self.log_tail("kube-apiserver.log") if not self.external else ""))

    def restart_apiserver(self, down_seconds=0.0):
        """Stops kube-apiserver (every watch drops), waits, starts it again on the same port
        and waits until it is ready."""
        self.require_local("restart kube-apiserver")
        self.stop_apiserver()
        time.sleep(down_seconds)
        self.start_apiserver()
        self.wait_ready()

    def stop_apiserver(self):
        self.require_local("stop kube-apiserver")
        stop_process(self.apiserver)

    def compact_etcd(self):
        """Compacts etcd's history up to its current revision: every older resourceVersion
        is gone, and a watch from one gets 410 Gone. Returns the revision."""
        self.require_local("compact etcd")
        status = etcd_call(self.etcd_url, "/v3/maintenance/status", {})
        revision = int(status["header"]["revision"])
        etcd_call(self.etcd_url, "/v3/kv/compaction", {"revision": revision, "physical": True})
        return revision

    def require_local(self, what):
        if self.external:
            import unittest
            raise unittest.SkipTest(f"cannot {what} of an external cluster")

    def stop(self):
        for process in (self.apiserver, self.etcd):
            stop_process(process)
        self.apiserver = self.etcd = None
        if self.workdir and os.environ.get("MESHPILOT_KEEP_KUBE_DIR") != "1":
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, name, lines=60):
        try:
            with open(os.path.join(self.workdir, name), errors="replace") as f:
                return f"----- {name}\n" + "".join(f.readlines()[-lines:])
        except OSError:
            return f"----- {name}: none\n"

    # ----- API access

    def _connect(self, server, ca, cert, key, token, insecure):
        self.server = server.rstrip("/")
        context = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
        if insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if cert:
            context.load_cert_chain(cert, key)
        self._ssl = context
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    def request(self, method, path, body=None, content_type="application/json", raw=False,
                timeout=30):
        """One API call; returns (status, parsed JSON body or, with raw, text)."""
        data = None
        headers = dict(self._headers, Accept="application/json")
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.server + path, data=data, method=method,
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, context=self._ssl, timeout=timeout) as response:
                status, text = response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode(errors="replace")
        if raw:
            return status, text
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            return status, text

    def call(self, method, path, body=None, content_type="application/json", ok=(200, 201)):
        status, answer = self.request(method, path, body, content_type)
        if status not in ok:
            raise ApiError(status, json.dumps(answer) if not isinstance(answer, str) else answer,
                           f"{method} {path}")
        return answer

    def apply(self, obj, field_manager="meshpilot-test"):
        """Server-side apply: creates or updates obj to exactly what it states."""
        query = urllib.parse.urlencode({"fieldManager": field_manager, "force": "true",
                                        "fieldValidation": "Strict"})
        return self.call("PATCH", object_path(obj) + "?" + query, obj,
                         content_type="application/apply-patch+yaml")

    def dry_run_apply(self, obj, field_manager="meshpilot-test"):
        """What `kubectl apply --server-side --dry-run=server` does: the API server validates,
        defaults and admits obj, and stores nothing. Returns the object it would store."""
        query = urllib.parse.urlencode({"fieldManager": field_manager, "force": "true",
                                        "fieldValidation": "Strict", "dryRun": "All"})
        return self.call("PATCH", object_path(obj) + "?" + query, obj,
                         content_type="application/apply-patch+yaml")

    def service_account_token(self, namespace, name, seconds=3600):
        """A token of that ServiceAccount from the TokenRequest API."""
        answer = self.call("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
                           {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                            "spec": {"expirationSeconds": seconds}})
        return answer["status"]["token"]

    def token_kubeconfig(self, target, token):
        """A kubeconfig for this API server that authenticates with a bearer token."""
        self.require_local("write a kubeconfig with the harness's CA")
        write_kubeconfig(target, self.server, self.pki, token=token)

    def create(self, obj):
        return self.call("POST", object_path(obj, name="") + "?fieldValidation=Strict", obj)

    def get(self, obj):
        status, answer = self.request("GET", object_path(obj))
        if status == 404:
            return None
        if status != 200:
            raise ApiError(status, json.dumps(answer), f"GET {object_path(obj)}")
        return answer

    def delete(self, obj, missing_ok=True):
        ok = (200, 202, 404) if missing_ok else (200, 202)
        return self.call("DELETE", object_path(obj), ok=ok)

    def ensure_namespace(self, name):
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def wait_crds_established(self, names, timeout_s=30):
        deadline = time.monotonic() + timeout_s
        pending = list(names)
        while time.monotonic() < deadline:
            pending = [n for n in pending if not self._established(n)]
            if not pending:
                return
            time.sleep(0.1)
        raise RuntimeError(f"CRDs not established within {timeout_s}s: {pending}")

    def _established(self, name):
        status, crd = self.request(
            "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        if status != 200:
            return False
        return any(c.get("type") == "Established" and c.get("status") == "True"
                   for c in (crd.get("status") or {}).get("conditions") or [])


# ----- helpers

class CuttableProxy:
    """A TCP proxy on loopback to host:port whose open connections cut() drops at once (TLS
    passes through untouched), to break watches without restarting the API server."""

    def __init__(self, host, port):
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.sockets = []
        self.accepted = 0  # connections proxied so far
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, upstream]
                self.accepted += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        """Drops every open connection; new ones are proxied as before. Returns how many."""
        with self.lock:
            sockets, self.sockets = self.sockets, []
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        return len(sockets) // 2

    def close(self):
        self.listener.close()
        self.cut()


def binaries():
    """The folder holding etcd and kube-apiserver: KUBE_BIN_DIR, or what build_binaries.sh
    builds (once) and prints."""
    bin_dir = os.environ.get("KUBE_BIN_DIR")
    if not bin_dir:
        result = subprocess.run(["bash", os.path.join(HERE, "build_binaries.sh")],
                                stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=3600)
        if result.returncode != 0:
            raise RuntimeError("build_binaries.sh failed\n" + result.stderr[-5000:])
        bin_dir = result.stdout.strip().splitlines()[-1]
    for name in ("etcd", "kube-apiserver"):
        if not os.access(os.path.join(bin_dir, name), os.X_OK):
            raise RuntimeError(f"{bin_dir}/{name} is missing")
    return bin_dir


def stop_process(process, timeout_s=10):
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout_s)


def etcd_call(url, path, body):
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_certificates(pki):
    """A CA, the API server's serving certificate (for 127.0.0.1 and localhost), an admin
    client certificate in group system:masters, and the service-account signing key."""
    def path(name):
        return os.path.join(pki, name)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", path("ca.key"), "-out", path("ca.crt"),
            "-days", "2", "-subj", "/CN=meshpilot-test-ca",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    signed = ["-CA", path("ca.crt"), "-CAkey", path("ca.key"), "-days", "2"]
    openssl("req", "-x509", *ec, *signed, "-keyout", path("apiserver.key"),
            "-out", path("apiserver.crt"), "-subj", "/CN=kube-apiserver",
            "-addext", "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,"
                       "DNS:kubernetes.default,DNS:kubernetes.default.svc",
            "-addext", "extendedKeyUsage=serverAuth",
            "-addext", "basicConstraints=critical,CA:FALSE")
    openssl("req", "-x509", *ec, *signed, "-keyout", path("admin.key"),
            "-out", path("admin.crt"), "-subj", "/O=system:masters/CN=meshpilot-test-admin",
            "-addext", "extendedKeyUsage=clientAuth",
            "-addext", "basicConstraints=critical,CA:FALSE")
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
            "-out", path("sa.key"))


def write_kubeconfig(target, server, pki, token=None):
    """A kubeconfig for the admin client certificate, or for a bearer token."""
    def data(name):
        with open(os.path.join(pki, name), "rb") as f:
            return base64.b64encode(f.read()).decode()

    user = ({"token": token} if token else
            {"client-certificate-data": data("admin.crt"), "client-key-data": data("admin.key")})

    # JSON is YAML: any kubeconfig reader takes it.
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {
            "server": server, "certificate-authority-data": data("ca.crt")}}],
        "users": [{"name": "admin", "user": user}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
        "current-context": "test",
    }
    with open(target, "w") as f:
        json.dump(config, f, indent=2)


if __name__ == "__main__":
    # By hand: start a cluster, print its kubeconfig path, and keep it until Ctrl-C.
    with Cluster.start() as running:
        print(f"kube-apiserver {running.server} ready in {running.startup_seconds:.1f}s")
        print(f"export KUBECONFIG={running.kubeconfig}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
