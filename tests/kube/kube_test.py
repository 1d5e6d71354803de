"""meshpilot against a real Kubernetes API server (see cluster.py): what it serves after
objects are created, changed and deleted through the API, and how it rides out API server
restarts, compaction (410 Gone) and invalid objects.

Each class starts one cluster (a few seconds) for its tests; each test gets its own namespace
and its own meshpilot (--kubeconfig), and reads what meshpilot serves from its debug
endpoints and through gRPC's own xDS client (xds_echo_client) calling real echo backends.

Binaries come from the environment (set by ctest): MESHPILOT_BIN, ECHO_SERVER_BIN,
XDS_CLIENT_BIN, and KUBE_BIN_DIR (else tests/kube/build_binaries.sh). Every wait is bounded.
"""

import json
import os
import signal
import sys
import time
import unittest
import urllib.error
import urllib.request
import uuid

import yaml  # python3-yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "conformance"))

from cluster import Cluster, CuttableProxy, write_kubeconfig  # noqa: E402
from mesh_harness import Children, binary, free_port  # noqa: E402

CRD_FILES = ["virtualservice.yaml", "destinationrule.yaml", "authorizationpolicy.yaml"]
CRD_NAMES = ["virtualservices.networking.istio.io", "destinationrules.networking.istio.io",
             "authorizationpolicies.security.istio.io"]
READY_TIMEOUT_S = 30
CONVERGE_TIMEOUT_S = 20
# Not loopback (the API server refuses 127/8 in EndpointSlices) and never routed: it exists
# only on the loopback device of XdsClientTest's own network namespace.
BACKEND_IP = "198.18.0.10"


def load_yaml(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def service(ns, name, port=7070, port_name="grpc"):
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
            "spec": {"selector": {"app": name},
                     "ports": [{"name": port_name, "port": port, "protocol": "TCP"}]}}


def endpoint_slice(ns, name, service_name, addresses, port, port_name="grpc", pods=None):
    endpoints = []
    for i, address in enumerate(addresses):
        endpoint = {"addresses": [address], "conditions": {"ready": True}}
        if pods:
            endpoint["targetRef"] = {"kind": "Pod", "name": pods[i], "namespace": ns}
        endpoints.append(endpoint)
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": ns,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": "IPv4",
            "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
            "endpoints": endpoints}


def pod(ns, name, labels, ip, service_account="default"):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"serviceAccountName": service_account, "nodeName": "node-1",
                     "containers": [{"name": "app", "image": "example.com/app:1"}]},
            "status_ip": ip}


def virtual_service(ns, name, host, destinations, version="v1"):
    return {"apiVersion": f"networking.istio.io/{version}", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"hosts": [host], "http": [{"route": [
                {"destination": {"host": h, **({"subset": s} if s else {})}, "weight": w}
                for h, s, w in destinations]}]}}


class MeshpilotKubeTest(unittest.TestCase):
    """One cluster per class, one namespace and one meshpilot per test."""

    cluster = None

    @classmethod
    def setUpClass(cls):
        cls.meshpilot_bin = binary("MESHPILOT_BIN", "build/release/controlplane/meshpilot")
        cls.cluster = Cluster.from_env()
        try:
            for name in CRD_FILES:
                for crd in load_yaml(os.path.join(REPO, "crds", name)):
                    cls.cluster.apply(crd)
            cls.cluster.wait_crds_established(CRD_NAMES)
        except BaseException:
            cls.cluster.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.cluster is not None:
            cls.cluster.stop()

    def setUp(self):
        self.children = Children()
        self.addCleanup(self.children.stop)
        self.ns = f"t-{self._testMethodName[5:][:40].replace('_', '-')}-{uuid.uuid4().hex[:5]}"
        self.cluster.ensure_namespace(self.ns)
        if self.cluster.external:
            self.addCleanup(self.cluster.delete, {"apiVersion": "v1", "kind": "Namespace",
                                                  "metadata": {"name": self.ns}})

    # ----- processes



    def start_meshpilot(self, *extra, kubeconfig=None, wait_ready=True, pod_name=None):
        """pod_name: the POD_NAME it runs with, its leader election identity."""
        self.xds_port, self.debug_port = free_port(), free_port()
        env = dict(os.environ, POD_NAME=pod_name) if pod_name else None
        self.meshpilot = self.children.start("meshpilot", [
            self.meshpilot_bin, "--kubeconfig", kubeconfig or self.cluster.kubeconfig,
            "--xds-port", str(self.xds_port), "--debug-port", str(self.debug_port),
            "--debounce-after", "20ms", "--debounce-max", "200ms", *extra], env)
        if wait_ready:
            self.wait_until(lambda: self.debug_status("/ready") == 200, READY_TIMEOUT_S,
                            "meshpilot /ready is 200")
        return self.meshpilot

    @staticmethod
    def log_lines(child):
        """Everything a child printed so far (meshpilot logs to stderr)."""
        with child._changed:
            return list(child.stdout) + list(child.stderr)

    # ----- reading what meshpilot serves

    def debug_status(self, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.debug_port}{path}",
                                        timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as e:
            return e.code
        except (urllib.error.URLError, OSError):
            return None

    def debug_json(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.debug_port}{path}",
                                    timeout=5) as response:
            return json.load(response)

    def services(self):
        """hostname -> registryz entry, for this test's namespace."""
        return {s["hostname"]: s for s in self.debug_json("/debug/registryz")
                if s["namespace"] == self.ns}

    def endpoints(self, service_name):
        for entry in self.debug_json("/debug/endpointz"):
            if entry["service"] == f"{self.ns}/{service_name}":
                return entry["endpoints"]
        return []

    def configs(self):
        """(accepted {(kind, name): resource_version}, rejected {(kind, name): message})."""
        configz = self.debug_json("/debug/configz")
        accepted = {(c["kind"], c["name"]): c["resource_version"] for c in configz["configs"]
                    if c["namespace"] == self.ns}
        rejected = {(e["kind"], e["name"]): e["message"] for e in configz["errors"]
                    if e["namespace"] == self.ns}
        return accepted, rejected

    def host(self, name):
        return f"{name}.{self.ns}.svc.cluster.local"

    # ----- waiting

    def wait_until(self, predicate, timeout_s, what):
        deadline = time.monotonic() + timeout_s
        last_error = None
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return time.monotonic() - (deadline - timeout_s)
            except (urllib.error.URLError, OSError, ValueError, KeyError) as e:
                last_error = e
            time.sleep(0.05)
        self.fail(f"not within {timeout_s}s: {what} (last error: {last_error})\n" +
                  self.diagnostics())

    def diagnostics(self):
        text = self.children.logs()
        if getattr(self, "meshpilot", None) and self.meshpilot.proc.poll() is None:
            for path in ("/debug/configz", "/debug/registryz", "/debug/endpointz"):
                try:
                    body = json.dumps(self.debug_json(path))[:5000]
                except (urllib.error.URLError, OSError, ValueError) as e:
                    body = str(e)
                text += f"----- GET {path}\n{body}\n"
        if not self.cluster.external:
            text += self.cluster.log_tail("kube-apiserver.log", 30)
        return text

    def label_namespace(self, name, labels):
        """Merges `labels` into the Namespace's (a None value removes the label)."""
        self.cluster.call("PATCH", f"/api/v1/namespaces/{name}",
                          {"metadata": {"labels": labels}},
                          content_type="application/merge-patch+json")

    def create_pod(self, name, labels, ip, service_account="default"):
        spec = pod(self.ns, name, labels, ip, service_account)
        spec.pop("status_ip")
        self.cluster.create(spec)
        # Without a kubelet, the test reports the pod's IP as the kubelet would.
        self.cluster.call("PATCH", f"/api/v1/namespaces/{self.ns}/pods/{name}/status",
                          {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}},
                          content_type="application/merge-patch+json")


class CrdTest(MeshpilotKubeTest):

    def test_corpus_applies_at_every_served_version_and_is_accepted(self):
        # Strict field validation: a field the schema lacks fails the apply instead of being
        # pruned, so this proves the schemas cover every field of the corpus.
        corpus = load_yaml(os.path.join(HERE, "testdata", "istio_corpus.yaml"))
        versions = {"VirtualService": ["v1", "v1beta1", "v1alpha3"],
                    "DestinationRule": ["v1", "v1beta1", "v1alpha3"],
                    "AuthorizationPolicy": ["v1", "v1beta1"]}
        expected, rejected = set(), set()
        for obj in corpus:
            group = obj["apiVersion"].split("/")[0]
            for version in versions[obj["kind"]]:
                copy = json.loads(json.dumps(obj))
                copy["apiVersion"] = f"{group}/{version}"
                copy["metadata"]["namespace"] = self.ns
                copy["metadata"]["name"] = f"{obj['metadata']['name']}-{version}"
                # Delegates are named by the parent; keep the pair within one version.
                for route in copy["spec"].get("http", []):
                    if "delegate" in route:
                        route["delegate"]["name"] += f"-{version}"
                        route["delegate"]["namespace"] = self.ns
                self.cluster.apply(copy)
                # Delegation is valid Istio the CRD must take, and meshpilot rejects it.
                delegating = obj["metadata"]["name"].startswith("corpus-delegate")
                (rejected if delegating else expected).add((obj["kind"], copy["metadata"]["name"]))
                # What the API server stores and returns is the object, unpruned.
                stored = self.cluster.get(copy)
                self.assertEqual(stored["spec"], copy["spec"], f"{copy['metadata']['name']}")

        self.start_meshpilot()
        self.wait_until(lambda: set(self.configs()[0]) == expected, CONVERGE_TIMEOUT_S,
                        "meshpilot serves the whole corpus")
        errors = self.configs()[1]
        self.assertEqual(set(errors), rejected, "meshpilot rejected other corpus objects")
        for key, message in errors.items():
            self.assertIn("delegation is not supported", message, key)

    def test_short_names_categories_and_columns(self):
        resources = self.cluster.call("GET", "/apis/networking.istio.io/v1")["resources"]
        by_name = {r["name"]: r for r in resources}
        self.assertEqual(by_name["virtualservices"]["shortNames"], ["vs"])
        self.assertEqual(by_name["destinationrules"]["shortNames"], ["dr"])
        self.assertIn("virtualservices/status", by_name)
        security = {r["name"]: r for r in
                    self.cluster.call("GET", "/apis/security.istio.io/v1beta1")["resources"]}
        self.assertEqual(security["authorizationpolicies"]["shortNames"], ["ap"])
        self.assertIn("istio-io", security["authorizationpolicies"]["categories"])
        # Printer columns, as kubectl get asks for them.
        self.cluster.apply(virtual_service(self.ns, "cols", "cols", [("cols", None, 100)]))
        status, table = self.cluster.request(
            "GET", f"/apis/networking.istio.io/v1/namespaces/{self.ns}/virtualservices")
        self.assertEqual(status, 200)
        request = urllib.request.Request(
            self.cluster.server +
            f"/apis/networking.istio.io/v1/namespaces/{self.ns}/virtualservices",
            headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
        with urllib.request.urlopen(request, context=self.cluster._ssl, timeout=10) as response:
            table = json.load(response)
        self.assertEqual([c["name"] for c in table["columnDefinitions"]],
                         ["Name", "Gateways", "Hosts", "Age"])


class WatchTest(MeshpilotKubeTest):

    def test_ready_only_after_sync_and_serves_existing_objects(self):
        self.cluster.apply(service(self.ns, "early"))
        self.start_meshpilot()
        self.assertIn(self.host("early"), self.services())

    def test_create_update_delete_every_kind(self):
        self.start_meshpilot()
        # Service
        self.cluster.apply(service(self.ns, "reviews", 9080, "http"))
        self.wait_until(lambda: self.host("reviews") in self.services(), CONVERGE_TIMEOUT_S,
                        "Service created")
        changed = service(self.ns, "reviews", 9081, "http")
        self.cluster.apply(changed)
        self.wait_until(lambda: [p["port"] for p in self.services()[self.host("reviews")]
                                 ["ports"]] == [9081], CONVERGE_TIMEOUT_S, "Service port changed")

        # Pod and EndpointSlice: the endpoint takes labels and service account from the Pod.
        self.create_pod("reviews-1", {"app": "reviews", "version": "v1"}, "10.1.0.5",
                        service_account="bookinfo-reviews")
        self.cluster.apply(endpoint_slice(self.ns, "reviews-abc", "reviews", ["10.1.0.5"],
                                          9081, "http", pods=["reviews-1"]))

        def endpoint_has_pod_metadata():
            eps = self.endpoints("reviews")
            return (len(eps) == 1 and eps[0]["address"] == "10.1.0.5" and
                    eps[0]["labels"].get("version") == "v1" and
                    "bookinfo-reviews" in eps[0]["service_account"])
        self.wait_until(endpoint_has_pod_metadata, CONVERGE_TIMEOUT_S,
                        "endpoint served with its Pod's labels and service account")
        # Pod relabelled: the endpoint follows.
        self.cluster.call("PATCH", f"/api/v1/namespaces/{self.ns}/pods/reviews-1",
                          {"metadata": {"labels": {"version": "v2"}}},
                          content_type="application/merge-patch+json")
        self.wait_until(lambda: self.endpoints("reviews")[0]["labels"].get("version") == "v2",
                        CONVERGE_TIMEOUT_S, "endpoint labels follow the Pod")
        self.cluster.apply(endpoint_slice(self.ns, "reviews-abc", "reviews",
                                          ["10.1.0.5", "10.1.0.6"], 9081, "http"))
        self.wait_until(lambda: len(self.endpoints("reviews")) == 2, CONVERGE_TIMEOUT_S,
                        "EndpointSlice updated")

        # Istio kinds, applied at an older version too: the API server converts.
        vs = virtual_service(self.ns, "reviews", "reviews", [("reviews", None, 100)],
                             version="v1alpha3")
        dr = {"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
              "metadata": {"name": "reviews", "namespace": self.ns},
              "spec": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}}
        ap = {"apiVersion": "security.istio.io/v1beta1", "kind": "AuthorizationPolicy",
              "metadata": {"name": "reviews", "namespace": self.ns},
              "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/x"]}}]}]}}
        for obj in (vs, dr, ap):
            self.cluster.apply(obj)
        kinds = {("VirtualService", "reviews"), ("DestinationRule", "reviews"),
                 ("AuthorizationPolicy", "reviews")}
        self.wait_until(lambda: set(self.configs()[0]) == kinds, CONVERGE_TIMEOUT_S,
                        "Istio objects created")
        versions = self.configs()[0]
        vs["spec"]["http"][0]["route"] = [
            {"destination": {"host": "reviews", "subset": "v1"}, "weight": 100}]
        self.cluster.apply(vs)
        self.wait_until(lambda: self.configs()[0][("VirtualService", "reviews")] !=
                        versions[("VirtualService", "reviews")], CONVERGE_TIMEOUT_S,
                        "VirtualService update served")

        # Deletes.
        for obj in (vs, dr, ap):
            self.cluster.delete(obj)
        self.wait_until(lambda: self.configs()[0] == {}, CONVERGE_TIMEOUT_S,
                        "Istio objects deleted")
        self.cluster.delete(endpoint_slice(self.ns, "reviews-abc", "reviews", [], 1))
        self.wait_until(lambda: self.endpoints("reviews") == [], CONVERGE_TIMEOUT_S,
                        "EndpointSlice deleted")
        self.cluster.delete(changed)
        self.wait_until(lambda: self.host("reviews") not in self.services(), CONVERGE_TIMEOUT_S,
                        "Service deleted")

    def test_watched_namespaces_filter(self):
        other = self.ns + "-other"
        self.cluster.ensure_namespace(other)
        self.cluster.apply(service(self.ns, "mine"))
        self.cluster.apply(service(other, "theirs"))
        self.start_meshpilot("--watched-namespaces", self.ns)
        self.cluster.apply(service(self.ns, "mine2"))
        self.cluster.apply(service(other, "theirs2"))
        self.wait_until(lambda: self.host("mine2") in self.services(), CONVERGE_TIMEOUT_S,
                        "a Service of the watched namespace")
        namespaces = {s["namespace"] for s in self.debug_json("/debug/registryz")}
        self.assertEqual(namespaces, {self.ns})

    def test_namespace_selector_follows_namespace_labels(self):
        # A label only this test uses, so other tests' namespaces stay out.
        selector = f"mesh={self.ns},!legacy"
        other = self.ns + "-b"
        self.cluster.ensure_namespace(other)
        self.label_namespace(self.ns, {"mesh": self.ns})
        self.cluster.apply(service(self.ns, "mine"))
        self.cluster.apply(service(other, "theirs"))
        self.start_meshpilot("--namespace-selector", selector)
        namespaces = lambda: {s["namespace"] for s in self.debug_json("/debug/registryz")}
        self.assertEqual(namespaces(), {self.ns})

        # A namespace enters the selection by its labels, without a restart ...
        self.label_namespace(other, {"mesh": self.ns})
        self.wait_until(lambda: namespaces() == {self.ns, other}, CONVERGE_TIMEOUT_S,
                        "the relabelled namespace's Service appears")
        # ... and leaves it the same way (here by `!legacy`).
        self.label_namespace(self.ns, {"legacy": "true"})
        self.wait_until(lambda: namespaces() == {other}, CONVERGE_TIMEOUT_S,
                        "the deselected namespace's Service disappears")

        # As in Istio, the root namespace is selected like any other: its mesh-wide
        # AuthorizationPolicy applies only once its labels match.
        self.cluster.ensure_namespace("istio-system")
        policy = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                  "metadata": {"name": f"deny-{self.ns}", "namespace": "istio-system"},
                  "spec": {"action": "DENY", "rules": [{"to": [{"operation": {
                      "paths": ["/admin"]}}]}]}}
        self.cluster.apply(policy)
        self.addCleanup(self.cluster.delete, policy)
        self.addCleanup(self.label_namespace, "istio-system", {"mesh": None})
        root_policies = lambda: {c["name"] for c in self.debug_json("/debug/configz")["configs"]
                                 if c["namespace"] == "istio-system"}
        self.cluster.apply(service(other, "barrier"))
        self.wait_until(lambda: f"barrier.{other}.svc.cluster.local" in
                        {s["hostname"] for s in self.debug_json("/debug/registryz")},
                        CONVERGE_TIMEOUT_S, "a later change is served")
        self.assertNotIn(f"deny-{self.ns}", root_policies())
        self.assertIn("the root namespace istio-system is not selected by --namespace-selector",
                      "\n".join(self.log_lines(self.meshpilot)))
        self.label_namespace("istio-system", {"mesh": self.ns})
        self.wait_until(lambda: f"deny-{self.ns}" in root_policies(), CONVERGE_TIMEOUT_S,
                        "the root namespace's policy applies once it is selected")

    def test_invalid_namespace_selector_is_refused_with_its_column(self):
        child = self.children.start("meshpilot", [self.meshpilot_bin, "--kubeconfig",
                                         self.cluster.kubeconfig, "--xds-port", "0",
                                         "--debug-port", "0", "--namespace-selector",
                                         "mesh in on"])
        self.assertEqual(child.wait(20), 2, child.log())
        self.assertIn('--namespace-selector "mesh in on": column 9: expected "(" after "in"',
                      child.log())


class XdsClientTest(MeshpilotKubeTest):
    """gRPC's xDS client calling real backends through what meshpilot reads from the API.

    The API server refuses loopback addresses in EndpointSlices, so the backends listen on
    BACKEND_IP, an address this test adds to the loopback device of a network namespace of its
    own: ctest runs it under `unshare --net` with MESHPILOT_TEST_NETNS=1, and everything
    (etcd, kube-apiserver, meshpilot, backends, client) lives in that namespace.
    """

    @classmethod
    def setUpClass(cls):
        if os.environ.get("MESHPILOT_TEST_NETNS") != "1":
            raise unittest.SkipTest("needs its own network namespace: run it as ctest kube.xds "
                                    "(unshare --net, MESHPILOT_TEST_NETNS=1)")
        if os.environ.get("MESHPILOT_TEST_EXTERNAL_CLUSTER") == "1":
            raise unittest.SkipTest("backends in a private network namespace cannot serve an "
                                    "external cluster")
        import subprocess
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
        subprocess.run(["ip", "addr", "replace", f"{BACKEND_IP}/32", "dev", "lo"], check=True,
                       timeout=10)
        super().setUpClass()

    def grpc_xds_env(self):
        """The environment of a gRPC xDS client of this test's meshpilot (a bootstrap file)."""
        bootstrap = os.path.join(self.cluster.workdir, f"bootstrap-{self.ns}.json")
        with open(bootstrap, "w") as f:
            json.dump({"xds_servers": [{"server_uri": f"127.0.0.1:{self.xds_port}",
                                        "channel_creds": [{"type": "insecure"}],
                                        "server_features": ["xds_v3"]}],
                       "node": {"id": f"sidecar~127.0.0.1~client.{self.ns}~{self.ns}"
                                      ".svc.cluster.local",
                                "metadata": {"GENERATOR": "grpc", "NAMESPACE": self.ns},
                                "locality": {}}}, f)
        env = dict(os.environ, GRPC_XDS_BOOTSTRAP=bootstrap)
        env.pop("GRPC_XDS_BOOTSTRAP_CONFIG", None)
        return env

    def test_grpc_xds_client_follows_endpoint_slices(self):
        echo_server = binary("ECHO_SERVER_BIN", "build/release/tests/conformance/echo_server")
        client_bin = binary("XDS_CLIENT_BIN", "build/release/tests/conformance/xds_echo_client")
        ports = {}
        for backend in ("backend-a", "backend-b"):
            child = self.children.start(backend, [echo_server, "--port", "0", "--name", backend,
                                         "--host", BACKEND_IP])
            line = child.wait_for_stdout(lambda l: l.startswith("listening on "), 10)
            self.assertIsNotNone(line, child.log())
            ports[backend] = int(line.rsplit(":", 1)[1])
        # Both backends listen on one address, so each gets its own slice and port.
        self.cluster.apply(service(self.ns, "echo"))
        for backend, port in ports.items():
            self.cluster.apply(endpoint_slice(self.ns, f"echo-{backend}", "echo",
                                              [BACKEND_IP], port))
        self.start_meshpilot()
        env = self.grpc_xds_env()
        target = f"xds:///{self.host('echo')}:7070"
        client = self.children.start("xds_echo_client", [client_bin, "--target", target, "--count", "20",
                                                "--interval_ms", "20", "--timeout_ms", "5000"],
                            env)
        self.assertEqual(client.wait(40), 0, "calls through meshpilot failed\n" +
                         self.diagnostics())
        summary = next(l for l in reversed(client.lines()) if l.startswith("summary"))
        self.assertIn("backend-a", summary)
        self.assertIn("backend-b", summary)

        # Removing backend-b's slice through the API steers the running client to backend-a.
        client = self.children.start("xds_echo_client", [
            client_bin, "--target", target, "--until_only", "backend-a", "--consecutive", "20",
            "--interval_ms", "50", "--timeout_ms", "5000", "--max_seconds", "30"], env)
        self.assertIsNotNone(client.wait_for_stdout(lambda l: l == "ok backend-b", 15),
                             "backend-b not reached before the delete\n" + self.diagnostics())
        self.cluster.delete(endpoint_slice(self.ns, "echo-backend-b", "echo", [], 1))
        self.assertEqual(client.wait(40), 0,
                         "client did not converge to backend-a\n" + self.diagnostics())


    def test_namespace_selection_seen_by_the_grpc_xds_client(self):
        echo_server = binary("ECHO_SERVER_BIN", "build/release/tests/conformance/echo_server")
        client_bin = binary("XDS_CLIENT_BIN", "build/release/tests/conformance/xds_echo_client")
        backend = self.children.start("backend-a", [echo_server, "--port", "0", "--name", "backend-a",
                                           "--host", BACKEND_IP])
        line = backend.wait_for_stdout(lambda l: l.startswith("listening on "), 10)
        self.assertIsNotNone(line, backend.log())
        self.cluster.apply(service(self.ns, "echo"))
        self.cluster.apply(endpoint_slice(self.ns, "echo-a", "echo", [BACKEND_IP],
                                          int(line.rsplit(":", 1)[1])))
        self.start_meshpilot("--namespace-selector", f"mesh={self.ns}")
        env = self.grpc_xds_env()
        # Calls until stopped (the streak it waits for is never reached), one line each.
        client = self.children.start("xds_echo_client", [
            client_bin, "--target", f"xds:///{self.host('echo')}:7070", "--until_only",
            "backend-a", "--consecutive", "1000000", "--interval_ms", "50", "--timeout_ms",
            "1000", "--max_seconds", "120"], env)

        def next_line(prefix, what, containing=""):
            start = len(client.lines())
            found = client.wait_for_stdout(
                lambda l: l.startswith(prefix) and containing in l, CONVERGE_TIMEOUT_S,
                start=start)
            self.assertIsNotNone(found, f"{what}\n" + self.diagnostics())
            return found

        next_line("error ", "the namespace is not selected: its listener is not served")
        self.label_namespace(self.ns, {"mesh": self.ns})
        next_line("ok backend-a", "selected by its new label: calls reach the backend")
        self.label_namespace(self.ns, {"mesh": "off"})
        # The CDS push (which comes first) may fail a call on the missing cluster before the
        # LDS push withdraws the listener; the listener's withdrawal is what must follow.
        next_line("error ", "deselected: the listener is withdrawn and calls fail",
                  containing="xDS listener resource does not exist")


class ScaleTest(MeshpilotKubeTest):

    def test_endpoints_scale_0_to_100_and_back(self):
        self.cluster.apply(service(self.ns, "web", 8080, "http"))
        self.cluster.apply(endpoint_slice(self.ns, "web-1", "web", [], 8080, "http"))
        self.start_meshpilot()
        timings = {}
        for count in (1, 10, 50, 100, 40, 0):
            addresses = [f"10.2.{i // 250}.{i % 250 + 1}" for i in range(count)]
            self.cluster.apply(endpoint_slice(self.ns, "web-1", "web", addresses, 8080, "http"))
            timings[count] = self.wait_until(
                lambda: sorted(e["address"] for e in self.endpoints("web")) == sorted(addresses),
                CONVERGE_TIMEOUT_S, f"{count} endpoints served")
        # And as the EndpointSlice controller does it: many slices, created then deleted.
        slices = [endpoint_slice(self.ns, f"web-s{i}", "web", [f"10.3.0.{i + 1}"], 8080, "http")
                  for i in range(100)]
        for s in slices:
            self.cluster.apply(s)
        timings["100 slices"] = self.wait_until(lambda: len(self.endpoints("web")) == 100,
                                                CONVERGE_TIMEOUT_S, "100 slices served")
        for s in slices:
            self.cluster.delete(s)
        timings["0 slices"] = self.wait_until(lambda: self.endpoints("web") == [],
                                              CONVERGE_TIMEOUT_S, "all slices gone")
        print(f"\nconvergence after the last write, seconds: "
              f"{ {k: round(v, 2) for k, v in timings.items()} }", file=sys.stderr)


class DisruptionTest(MeshpilotKubeTest):

    def test_watch_survives_apiserver_restart(self):
        self.cluster.require_local("restart kube-apiserver")
        self.cluster.apply(service(self.ns, "before"))
        meshpilot = self.start_meshpilot()
        self.cluster.stop_apiserver()
        # While the API server is away, meshpilot keeps serving what it had.
        time.sleep(1.0)
        self.assertEqual(self.debug_status("/ready"), 200)
        self.assertIn(self.host("before"), self.services())
        self.cluster.start_apiserver()
        self.cluster.wait_ready()
        self.cluster.apply(service(self.ns, "after"))
        self.cluster.delete(service(self.ns, "before"))
        self.wait_until(lambda: set(self.services()) == {self.host("after")},
                        CONVERGE_TIMEOUT_S, "changes after the restart served")
        log = "\n".join(self.log_lines(meshpilot))
        self.assertIn("watch dropped", log)

    def test_watch_resumes_from_last_resource_version_after_connection_cut(self):
        self.cluster.require_local("proxy kube-apiserver")
        proxy = CuttableProxy("127.0.0.1", self.cluster.apiserver_port)
        self.addCleanup(proxy.close)
        kubeconfig = os.path.join(self.cluster.workdir, f"kubeconfig-proxy-{self.ns}")
        write_kubeconfig(kubeconfig, f"https://127.0.0.1:{proxy.port}", self.cluster.pki)
        self.cluster.apply(service(self.ns, "before"))
        meshpilot = self.start_meshpilot(kubeconfig=kubeconfig)
        # One list and one watch per kind: cut once every watch is open.
        self.wait_until(lambda: proxy.accepted >= 14, CONVERGE_TIMEOUT_S, "7 watches open")
        time.sleep(0.5)
        # Changes made while the connections are down reach meshpilot from where its watches
        # stopped: the API server's watch cache still holds them, so no relist is needed.
        proxy.cut()
        self.cluster.apply(service(self.ns, "during"))
        self.cluster.delete(service(self.ns, "before"))
        self.wait_until(lambda: set(self.services()) == {self.host("during")},
                        CONVERGE_TIMEOUT_S, "changes made during the cut served")
        log = "\n".join(self.log_lines(meshpilot))
        self.assertIn("watch dropped", log)
        self.assertIn("v1 services: watching again", log)
        self.assertNotIn("relisting", log)

    def test_relists_after_410_gone_from_compaction(self):
        self.cluster.require_local("compact etcd")
        self.cluster.apply(service(self.ns, "kept"))
        self.cluster.apply(service(self.ns, "deleted-while-away"))
        meshpilot = self.start_meshpilot()
        self.wait_until(lambda: len(self.services()) == 2, CONVERGE_TIMEOUT_S, "two services")
        # Freeze meshpilot, change the cluster behind its back, compact etcd past what it saw,
        # and restart the API server so its watch must resume from a compacted version.
        meshpilot.proc.send_signal(signal.SIGSTOP)
        try:
            self.cluster.delete(service(self.ns, "deleted-while-away"))
            self.cluster.apply(service(self.ns, "created-while-away"))
            self.cluster.apply({"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": "bump", "namespace": self.ns},
                                "data": {"k": "v"}})
            self.cluster.compact_etcd()
            self.cluster.restart_apiserver()
        finally:
            meshpilot.proc.send_signal(signal.SIGCONT)
        self.wait_until(lambda: set(self.services()) == {self.host("kept"),
                                                          self.host("created-while-away")},
                        CONVERGE_TIMEOUT_S, "state after relist")
        self.wait_until(lambda: any("is gone (410" in l for l in self.log_lines(meshpilot)),
                        CONVERGE_TIMEOUT_S, "meshpilot logged the 410 and relisted")


class InvalidObjectTest(MeshpilotKubeTest):

    def test_invalid_virtual_service_rejected_alone(self):
        self.cluster.apply(service(self.ns, "reviews"))
        good = virtual_service(self.ns, "good", "reviews", [("reviews", None, 100)])
        # Passes the CRD schema, fails meshpilot's validation.
        bad = virtual_service(self.ns, "bad", "ratings", [("ratings", None, -5)])
        self.cluster.apply(good)
        self.cluster.apply(bad)
        self.start_meshpilot()
        accepted, rejected = self.configs()
        self.assertIn(("VirtualService", "good"), accepted)
        self.assertNotIn(("VirtualService", "bad"), accepted)
        self.assertIn("spec.http[0].route[0].weight: must be >= 0",
                      rejected.get(("VirtualService", "bad"), ""))

        # An accepted object that turns invalid keeps its last valid version serving.
        version = accepted[("VirtualService", "good")]
        broken = virtual_service(self.ns, "good", "reviews", [("reviews", None, 100)])
        broken["spec"]["http"][0]["retries"] = {"attempts": 2, "retryOn": "bogus"}
        self.cluster.apply(broken)
        self.wait_until(lambda: ("VirtualService", "good") in self.configs()[1],
                        CONVERGE_TIMEOUT_S, "the broken edit is rejected")
        accepted, rejected = self.configs()
        self.assertEqual(accepted[("VirtualService", "good")], version,
                         "the last valid version should keep serving")
        self.assertIn("retryOn", rejected[("VirtualService", "good")])
        self.assertIn("still serving its last valid version", rejected[("VirtualService", "good")])

        # Fixing it clears the error; deleting the bad one clears its error.
        self.cluster.apply(good)
        self.cluster.delete(bad)
        self.wait_until(lambda: self.configs()[1] == {}, CONVERGE_TIMEOUT_S, "errors cleared")
        self.assertNotEqual(self.configs()[0][("VirtualService", "good")], version)


if __name__ == "__main__":
    unittest.main()
