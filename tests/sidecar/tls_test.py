"""meshproxy's TLS through real sockets: termination on listeners (curl, Python's ssl), and
origination to TLS backends (Python's ssl servers, and meshproxy's own TLS listener for h2 by
ALPN), with a CA and certificates the openssl CLI makes in a temporary directory.

The test ADS server serves the resources; binaries come from MESHPROXY_BIN and ADS_SERVER_BIN.
"""

import hashlib
import json
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import unittest

from harness import (Backend, Children, HttpsBackend, SharedMeshTest, TcpEchoBackend, TlsBackend,
                     ThreadedTcpServer, WebSocketEchoBackend, binary, free_port, tcp_exchange,
                     make_pki, read_websocket_frame, wait_until, websocket_connect,
                     websocket_frame, write_resources)
from integration_test import (NODE_ID, ROUTER, T, TCP_PROXY, WAIT_S, assignment, eds_cluster,
                              http_listener, limited_cluster, route)

TLS = "envoy.transport_sockets.tls"
DOWNSTREAM = T + "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
UPSTREAM = T + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
CLIENT_SPIFFE = "spiffe://cluster.local/ns/default/sa/client"


def files(cert, key):
    return {"certificate_chain": {"filename": cert}, "private_key": {"filename": key}}


def tls_cluster(name, sni="backend.test", ca=None, sans=(), client=None, alpn=(), auto=False,
                http2=False):
    """An EDS cluster originating TLS, as meshpilot writes a DestinationRule's tls."""
    common = {}
    if ca:
        common["validation_context"] = {"trusted_ca": {"filename": ca},
                                        "match_subject_alt_names": [{"exact": s} for s in sans]}
    if client:
        common["tls_certificates"] = [files(*client)]
    if alpn:
        common["alpn_protocols"] = list(alpn)
    cluster = eds_cluster(name)
    cluster["transport_socket"] = {"name": TLS, "typed_config": {
        "@type": UPSTREAM, "sni": sni, "common_tls_context": common}}
    if auto or http2:
        config = {"auto_config": {}} if auto else {
            "explicit_http_config": {"http2_protocol_options": {}}}
        cluster["typed_extension_protocol_options"] = {HTTP_OPTIONS: {
            "@type": T + HTTP_OPTIONS, **config}}
    return cluster


def terminating(listener, pki, alpn=("h2", "http/1.1"), client_ca=False, certificate_sds=None):
    """`listener` with a DownstreamTlsContext on its filter chain: the server certificate (or
    the SdsSecretConfig `certificate_sds`), ALPN, and with `client_ca` mTLS (a client
    certificate from the CA, with the client's SAN)."""
    common = {"alpn_protocols": list(alpn)}
    if certificate_sds:
        common["tls_certificate_sds_secret_configs"] = [certificate_sds]
    else:
        common["tls_certificates"] = [files(pki["server"], pki["server_key"])]
    context = {"@type": DOWNSTREAM, "common_tls_context": common}
    if client_ca:
        common["validation_context"] = {
            "trusted_ca": {"filename": pki["ca"]},
            "match_typed_subject_alt_names": [{"san_type": "URI",
                                               "matcher": {"exact": CLIENT_SPIFFE}}]}
        context["require_client_certificate"] = True
    listener["filter_chains"][0]["transport_socket"] = {"name": TLS, "typed_config": context}
    return listener


SECRET = T + "envoy.extensions.transport_sockets.tls.v3.Secret"


def sds(name, path, watched_directory=None):
    """An SdsSecretConfig read from a file (Envoy's path_config_source)."""
    source = {"path": path}
    if watched_directory:
        source["watched_directory"] = {"path": watched_directory}
    return {"name": name, "sds_config": {"path_config_source": source}}


def write_secret_yaml(path, name, cert, key):
    """A DiscoveryResponse in YAML with one tls_certificate Secret, replaced atomically."""
    with open(path + ".tmp", "w") as f:
        f.write(f"resources:\n- \"@type\": {SECRET}\n  name: {name}\n  tls_certificate:\n"
                f"    certificate_chain: {{filename: {cert}}}\n"
                f"    private_key: {{filename: '{key}'}}\n")
    os.replace(path + ".tmp", path)


def secret_json(name, cert, key):
    """A DiscoveryResponse in JSON with one tls_certificate Secret, inline."""
    def inline(path):
        with open(path) as f:
            return {"inline_string": f.read()}
    return json.dumps({"resources": [{"@type": SECRET, "name": name, "tls_certificate": {
        "certificate_chain": inline(cert), "private_key": inline(key)}}]})


def rotate_like_kubernetes(directory, files):
    """A Secret volume's update: the files in a new hidden folder, then the `..data` symlink
    swapped to it by a rename (a move into `directory`); the names in `directory` point
    through `..data`."""
    version = str(len([n for n in os.listdir(directory) if n.startswith("..v")]))
    os.makedirs(os.path.join(directory, "..v" + version))
    for name, content in files.items():
        with open(os.path.join(directory, "..v" + version, name), "w") as f:
            f.write(content)
        link = os.path.join(directory, name)
        if not os.path.islink(link):
            os.symlink(os.path.join("..data", name), link)
    os.symlink("..v" + version, os.path.join(directory, "..data_tmp"))
    os.replace(os.path.join(directory, "..data_tmp"), os.path.join(directory, "..data"))


def sign_server(pki_dir, name, cn, extensions="subjectAltName=DNS:proxy.test\n"
                                             "extendedKeyUsage=serverAuth\n"):
    """Another certificate of the CA (by default a server's, SAN DNS:proxy.test), with subject
    CN `cn`."""
    def sh(*argv):
        subprocess.run(argv, check=True, capture_output=True, timeout=30, cwd=pki_dir)
    sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
       "-subj", "/CN=" + cn, "-keyout", name + ".key", "-out", name + ".csr")
    with open(os.path.join(pki_dir, name + ".ext"), "w") as f:
        f.write(extensions)
    sh("openssl", "x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
       "-CAcreateserial", "-days", "1", "-extfile", name + ".ext", "-out", name + ".pem")
    return os.path.join(pki_dir, name + ".pem"), os.path.join(pki_dir, name + ".key")


RBAC_HTTP = T + "envoy.extensions.filters.http.rbac.v3.RBAC"
RBAC_NETWORK = T + "envoy.extensions.filters.network.rbac.v3.RBAC"


def authenticated_only(listener, *principal_names):
    """`listener` (mTLS by the CA, any SAN) with an ALLOW RBAC filter, HTTP or network by its
    chain's filter, admitting only peers whose certificate has one of `principal_names`."""
    chain = listener["filter_chains"][0]
    chain["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"].pop(
        "match_typed_subject_alt_names")
    rules = {"action": "ALLOW", "policies": {"named": {
        "permissions": [{"any": True}],
        "principals": [{"authenticated": {"principal_name": {"exact": name}}}
                       for name in principal_names]}}}
    first = chain["filters"][0]
    if first["name"] == "envoy.filters.network.http_connection_manager":
        first["typed_config"]["http_filters"].insert(0, {
            "name": "envoy.filters.http.rbac", "typed_config": {"@type": RBAC_HTTP, "rules": rules}})
    else:
        chain["filters"].insert(0, {"name": "envoy.filters.network.rbac", "typed_config": {
            "@type": RBAC_NETWORK, "stat_prefix": "rbac", "rules": rules}})
    return listener


def tcp_proxy_listener(name, port, cluster):
    return {"@type": T + "envoy.config.listener.v3.Listener", "name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                "@type": TCP_PROXY, "stat_prefix": name, "cluster": cluster}}]}]}


PAYLOAD = bytes(range(256)) * 4096  # 1 MiB: many records, many writes


class SpeakFirstBackend(ThreadedTcpServer):
    """Plaintext: sends PAYLOAD, half-closes, then reads until the peer's FIN and keeps what it
    read in `received`."""

    def __init__(self):
        self.received = []
        super().__init__()

    def _serve(self, conn):
        with conn:
            conn.settimeout(10)
            try:
                conn.sendall(PAYLOAD)
                conn.shutdown(socket.SHUT_WR)
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
                self.received.append(data)
            except OSError as e:
                self.received.append(e)


class StrictTlsServer(ThreadedTcpServer):
    """A TLS server (Python's ssl) that tells a close_notify from a bare FIN (which raises
    SSLEOFError): each connection's `_session(tls)` result, or the error that ended it, goes
    to `outcomes`."""

    def __init__(self, cert, key):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.outcomes = []
        super().__init__()

    def _serve(self, conn):
        conn.settimeout(10)
        try:
            with self.context.wrap_socket(conn, server_side=True,
                                          suppress_ragged_eofs=False) as tls:
                self.outcomes.append(self._session(tls))
        except (OSError, ssl.SSLError) as e:
            self.outcomes.append(repr(e))
            conn.close()


class TlsSinkBackend(StrictTlsServer):
    """Reads until the client's close_notify, answers with the length and a digest of what
    it read (its length is the outcome), and closes with its own."""

    def _session(self, tls):
        data = read_to_close_notify(tls)
        tls.sendall(f"{len(data)} {hashlib.sha256(data).hexdigest()}".encode())
        tls.unwrap()
        return len(data)


class TlsHttpRecorder(StrictTlsServer):
    """HTTPS/1.1: answers each request 200 "ok" on a keep-alive connection until the client's
    close_notify (the outcome "close_notify")."""

    def _session(self, tls):
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
            while b"\r\n\r\n" in data:
                _, _, data = data.partition(b"\r\n\r\n")
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        return "close_notify"


def half_closed_tls_exchange(port, cafile, payload, client=None):
    """Sends `payload` over TLS (with `client`, a certificate and key) to 127.0.0.1:`port`,
    ends the TCP side (Python's ssl cannot send close_notify and read on; an echo backend
    answers once the client half-closes) and returns all it receives."""
    context = ssl.create_default_context(cafile=cafile)
    if client:
        context.load_cert_chain(*client)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="proxy.test") as tls:
            tls.sendall(payload)
            with socket.fromfd(tls.fileno(), socket.AF_INET, socket.SOCK_STREAM) as same:
                same.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := tls.recv(4096):
                answer += chunk
            return answer


def read_to_close_notify(tls):
    """Everything `tls` (wrapped with suppress_ragged_eofs=False) receives until the peer's
    close_notify; a FIN without one raises SSLEOFError."""
    data = b""
    while chunk := tls.recv(65536):
        data += chunk
    return data


class TlsMesh:
    """The test ADS server, meshproxy, and plaintext and TLS backends."""

    def __init__(self, test):
        self.dir = tempfile.mkdtemp(prefix="meshproxy-tls-")
        test.addCleanup(self.close)
        self.pki = make_pki(self.dir)
        pki = self.pki
        self.web = Backend("web")
        self.https = HttpsBackend("https", pki["server"], pki["server_key"])
        self.mtls = HttpsBackend("mtls", pki["server"], pki["server_key"], client_ca=pki["ca"])
        self.echo = TcpEchoBackend("echo")
        self.tls_echo = TlsBackend("tls-echo", pki["server"], pki["server_key"])
        self.speak_first = SpeakFirstBackend()
        self.tls_sink = TlsSinkBackend(pki["server"], pki["server_key"])
        self.recorder = TlsHttpRecorder(pki["server"], pki["server_key"])
        self.ws_tls = WebSocketEchoBackend("ws-tls", pki["server"], pki["server_key"])
        self.dead_port = free_port()
        ports = ("plain", "https", "mtls", "tls_tcp", "originate_tcp", "tls_speak_first",
                 "originate_sink", "sds_file", "sds_dir", "rbac_http", "rbac_tcp", "admin")
        self.port = {name: free_port() for name in ports}
        client = (pki["client"], pki["client_key"])
        # SDS from files: a YAML DiscoveryResponse naming certificate files (watched with it),
        # and a JSON one in a folder updated as Kubernetes updates a Secret volume.
        self.rotated = sign_server(self.dir, "rotated", "rotated.test")
        # Clients of the CA that RBAC tells apart: another SPIFFE identity, and one with no
        # SANs (its principal is its subject).
        self.other_client = sign_server(
            self.dir, "other", "other",
            "subjectAltName=URI:spiffe://cluster.local/ns/default/sa/other\n"
            "extendedKeyUsage=clientAuth\n")
        self.ops_client = sign_server(self.dir, "ops", "ops", "extendedKeyUsage=clientAuth\n")
        self.sds_file = os.path.join(self.dir, "sds", "server.yaml")
        os.makedirs(os.path.dirname(self.sds_file))
        for name, source in (("tls.crt", pki["server"]), ("tls.key", pki["server_key"])):
            shutil.copy(source, os.path.join(self.dir, "sds", name))
        write_secret_yaml(self.sds_file, "server", os.path.join(self.dir, "sds", "tls.crt"),
                          os.path.join(self.dir, "sds", "tls.key"))
        self.sds_dir = os.path.join(self.dir, "secret-volume")
        os.makedirs(self.sds_dir)
        rotate_like_kubernetes(self.sds_dir, {
            "server.json": secret_json("server", pki["server"], pki["server_key"])})
        with open(os.path.join(self.dir, "sds", "ca.json"), "w") as f:
            f.write(json.dumps({"resources": [{"@type": SECRET, "name": "ROOTCA",
                                               "validation_context": {"trusted_ca": {
                                                   "filename": pki["ca"]}}}]}))
        sds_verified = tls_cluster("sds-verified")
        sds_verified["transport_socket"]["typed_config"]["common_tls_context"][
            "validation_context_sds_secret_config"] = sds(
                "ROOTCA", os.path.join(self.dir, "sds", "ca.json"))
        clusters = [
            eds_cluster("web"),
            tls_cluster("verified", ca=pki["ca"], sans=["backend.test"]),
            tls_cluster("wrong-san", ca=pki["ca"], sans=["other.test"]),
            tls_cluster("insecure", sni="anything.test"),
            tls_cluster("mtls-without-cert", ca=pki["ca"]),
            tls_cluster("mtls", ca=pki["ca"], client=client),
            # auto_config: meshproxy's own TLS listener offers h2, the Python backend http/1.1.
            tls_cluster("alpn-h2", sni="proxy.test", ca=pki["ca"], sans=["proxy.test"], auto=True),
            tls_cluster("alpn-h1", ca=pki["ca"], auto=True),
            # What meshpilot writes for a gRPC/HTTP2 port with DestinationRule tls SIMPLE.
            tls_cluster("h2-tls", sni="proxy.test", ca=pki["ca"], alpn=["h2"], http2=True),
            tls_cluster("tls-echo", ca=pki["ca"], sans=["backend.test"]),
            tls_cluster("tls-dead", ca=pki["ca"]),
            eds_cluster("echo"),
            eds_cluster("speak-first"),
            limited_cluster("queued", max_connections=1, max_pending_requests=1),
            sds_verified,
            # Its idle pooled connections close after 0.3 s.
            dict(tls_cluster("idle-tls"), typed_extension_protocol_options={HTTP_OPTIONS: {
                "@type": T + HTTP_OPTIONS,
                "common_http_protocol_options": {"idle_timeout": "0.3s"},
                "explicit_http_config": {"http_protocol_options": {}}}}),
            tls_cluster("tls-sink", ca=pki["ca"], sans=["backend.test"]),
            tls_cluster("ws-tls", ca=pki["ca"], sans=["backend.test"]),
        ]
        endpoints = [assignment("web", [self.web.port]),
                     assignment("verified", [self.https.port]),
                     assignment("wrong-san", [self.https.port]),
                     assignment("insecure", [self.https.port]),
                     assignment("mtls-without-cert", [self.mtls.port]),
                     assignment("mtls", [self.mtls.port]),
                     assignment("alpn-h2", [self.port["https"]]),
                     assignment("alpn-h1", [self.https.port]),
                     assignment("h2-tls", [self.port["https"]]),
                     assignment("tls-echo", [self.tls_echo.port]),
                     assignment("tls-dead", [self.dead_port]),
                     assignment("echo", [self.echo.port]),
                     assignment("speak-first", [self.speak_first.port]),
                     assignment("queued", [self.web.port]),
                     assignment("sds-verified", [self.https.port]),
                     assignment("idle-tls", [self.recorder.port]),
                     assignment("tls-sink", [self.tls_sink.port]),
                     assignment("ws-tls", [self.ws_tls.port])]

        def host(domain, cluster, **action):
            return {"name": domain, "domains": [domain],
                    "routes": [route("/", {"route": {"cluster": cluster, **action}})]}
        routes = {"@type": T + "envoy.config.route.v3.RouteConfiguration", "name": "routes",
                  "virtual_hosts": [
                      host("web", "web"), host("queued", "queued"), host("verified", "verified"),
                      host("sds-verified", "sds-verified"), host("idle-tls", "idle-tls"),
                      host("wrong-san", "wrong-san"), host("insecure", "insecure"),
                      host("mtls-without-cert", "mtls-without-cert"), host("mtls", "mtls"),
                      host("alpn-h2", "alpn-h2", host_rewrite_literal="inner"),
                      host("alpn-h1", "alpn-h1"), host("tls-dead", "tls-dead"),
                      host("h2-tls", "h2-tls", host_rewrite_literal="inner"),
                      host("ws-tls", "ws-tls"),
                      # What arrives over the TLS listener: tells the protocol it came in.
                      {"name": "inner", "domains": ["inner"], "routes": [route("/", {"route": {
                          "cluster": "web"}}, request_headers_to_add=[{"header": {
                              "key": "x-inner-protocol", "value": "%PROTOCOL%"}}])]}]}
        listeners = [
            http_listener("plain", self.port["plain"], "routes"),
            terminating(http_listener("https", self.port["https"], "routes"), pki),
            terminating(http_listener("mtls", self.port["mtls"], "routes"), pki, client_ca=True),
            terminating(tcp_proxy_listener("tls-tcp", self.port["tls_tcp"], "echo"), pki, alpn=()),
            tcp_proxy_listener("originate-tcp", self.port["originate_tcp"], "tls-echo"),
            terminating(tcp_proxy_listener("tls-speak-first", self.port["tls_speak_first"],
                                           "speak-first"), pki, alpn=()),
            tcp_proxy_listener("originate-sink", self.port["originate_sink"], "tls-sink"),
            authenticated_only(terminating(http_listener("rbac-http", self.port["rbac_http"],
                                                         "routes"), pki, client_ca=True),
                               CLIENT_SPIFFE, "CN=ops"),
            authenticated_only(terminating(tcp_proxy_listener("rbac-tcp", self.port["rbac_tcp"],
                                                              "echo"), pki, alpn=(), client_ca=True),
                               CLIENT_SPIFFE),
            terminating(http_listener("sds-file", self.port["sds_file"], "routes"), pki,
                        certificate_sds=sds("server", self.sds_file)),
            terminating(http_listener("sds-dir", self.port["sds_dir"], "routes"), pki,
                        certificate_sds=sds("server", os.path.join(self.sds_dir, "server.json"),
                                            watched_directory=self.sds_dir)),
        ]
        write_resources(self.dir, {"cds": clusters, "eds": endpoints, "lds": listeners,
                                   "rds": [routes]}, "v1")
        self.children = Children()
        ads = self.children.start("ads", [binary("ADS_SERVER_BIN",
                                                 "build/release/tests/sidecar/sidecar_test_ads_server"),
                                          "--resources", self.dir, "--port", "0"])
        listening = wait_until(lambda: [l for l in ads.json_lines() if l.get("event") == "listening"],
                               WAIT_S, "the ADS server to listen")
        self.ads = ads
        self.children.start("meshproxy", [
            binary("MESHPROXY_BIN", "build/release/sidecar/meshproxy"),
            "--xds-address", f"127.0.0.1:{listening[0]['port']}", "--node-id", NODE_ID,
            "--admin-port", str(self.port["admin"]), "--readiness-port", "0",
            # One worker: an HTTP/1.1 pool of another worker would open its own connection
            # past max_connections (as Envoy's), and nothing would queue.
            "--concurrency", "1"])
        wait_until(lambda: self.curl_status("http", "plain", "web") == 200, WAIT_S,
                   "the plaintext listener to route")

    def curl(self, scheme, listener, host, *extra, path="/"):
        """curl to a listener of meshproxy: (exit code, HTTP version, status, body)."""
        port = self.port[listener]
        name = "proxy.test" if scheme == "https" else "127.0.0.1"
        argv = ["curl", "-s", "--max-time", "10", "-o", "-", "-w", "\n%{http_version} %{http_code}",
                "-H", f"Host: {host}", "--resolve", f"proxy.test:{port}:127.0.0.1",
                *extra, f"{scheme}://{name}:{port}{path}"]
        if scheme == "https":
            argv[1:1] = ["--cacert", self.pki["ca"]]
        done = subprocess.run(argv, capture_output=True, timeout=20, text=True)
        body, _, tail = done.stdout.rpartition("\n")
        version, _, status = tail.partition(" ")
        return done.returncode, version, int(status or 0), body

    def curl_status(self, scheme, listener, host):
        try:
            return self.curl(scheme, listener, host)[2]
        except (OSError, subprocess.SubprocessError, ValueError):
            return None

    def stat(self, name):
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port['admin']}/stats", timeout=5) as r:
            for line in r.read().decode().splitlines():
                key, _, value = line.partition(": ")
                if key == name:
                    return int(value)
        return None

    def nacks(self):
        return [l for l in self.ads.json_lines() if l.get("event") == "request" and "error" in l]

    def logs(self):
        return self.children.logs()

    def close(self):
        self.children.stop()
        for backend in (self.web, self.https, self.mtls, self.echo, self.tls_echo,
                        self.speak_first, self.tls_sink, self.recorder, self.ws_tls):
            backend.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class TerminationTest(SharedMeshTest):
    """Listeners whose filter chain has a DownstreamTlsContext."""

    mesh_class = TlsMesh

    def test_https_listener_serves_http1_with_the_verified_certificate(self):
        before = self.mesh.stat("listener.https.ssl.handshake") or 0
        code, version, status, body = self.mesh.curl("https", "https", "web", "--http1.1")
        self.assertEqual((code, version, status), (0, "1.1", 200), body)
        info = json.loads(body)
        self.assertEqual(info["backend"], "web")
        self.assertEqual(info["headers"]["x-forwarded-proto"], "https")
        self.assertGreater(self.mesh.stat("listener.https.ssl.handshake"), before)
        self.assertEqual(self.mesh.nacks(), [])

    def test_alpn_h2_makes_an_http2_connection(self):
        code, version, status, body = self.mesh.curl("https", "https", "web", "--http2")
        self.assertEqual((code, version, status), (0, "2", 200), body)
        self.assertEqual(json.loads(body)["backend"], "web")

    def test_a_client_that_does_not_trust_the_ca_fails(self):
        done = subprocess.run(["curl", "-s", "--max-time", "10", "--resolve",
                               f"proxy.test:{self.mesh.port['https']}:127.0.0.1",
                               f"https://proxy.test:{self.mesh.port['https']}/"],
                              capture_output=True, timeout=20)
        self.assertEqual(done.returncode, 60)  # curl: peer certificate cannot be authenticated

    def test_mtls_requires_a_client_certificate_of_the_ca(self):
        pki = self.mesh.pki
        before = self.mesh.stat("listener.mtls.ssl.fail_verify_no_cert") or 0
        code, _, status, _ = self.mesh.curl("https", "mtls", "web")
        self.assertNotEqual(code, 0)
        self.assertEqual(status, 0)
        self.assertGreater(self.mesh.stat("listener.mtls.ssl.fail_verify_no_cert"), before)
        code, _, status, _ = self.mesh.curl("https", "mtls", "web", "--cert", pki["rogue"],
                                            "--key", pki["rogue_key"])
        self.assertNotEqual(code, 0)
        self.assertGreater(self.mesh.stat("listener.mtls.ssl.fail_verify_error"), 0)
        code, version, status, body = self.mesh.curl("https", "mtls", "web", "--http2", "--cert",
                                                     pki["client"], "--key", pki["client_key"])
        self.assertEqual((code, version, status), (0, "2", 200), body)

    def test_tcp_proxy_behind_tls_termination_sees_plaintext(self):
        answer = half_closed_tls_exchange(self.mesh.port["tls_tcp"], self.mesh.pki["ca"],
                                          b"over tls")
        self.assertEqual(answer, b"echo:over tls")


    def tls_client(self, port):
        context = ssl.create_default_context(cafile=self.mesh.pki["ca"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        return context.wrap_socket(raw, server_hostname="proxy.test", suppress_ragged_eofs=False)

    def test_an_http1_connection_ends_with_close_notify(self):
        with self.tls_client(self.mesh.port["https"]) as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
            response = read_to_close_notify(tls)
        self.assertTrue(response.startswith(b"HTTP/1.1 200 OK\r\n"), response[:100])
        self.assertIn(b'"backend": "web"', response)

    def test_tcp_proxy_half_closes_as_close_notify_and_back(self):
        # The backend sends 1 MiB and half-closes: the client gets all of it and then
        # close_notify, and still sends; its close_notify becomes the backend's FIN.
        with self.tls_client(self.mesh.port["tls_speak_first"]) as tls:
            self.assertEqual(read_to_close_notify(tls), PAYLOAD)
            tls.sendall(b"after close_notify")
            tls.unwrap()  # its own close_notify (the peer's came already: no wait)
        wait_until(lambda: self.mesh.speak_first.received, WAIT_S, "the backend to read to EOF")
        self.assertEqual(self.mesh.speak_first.received, [b"after close_notify"])


    def test_a_tls_client_that_leaves_the_pending_queue_is_noticed(self):
        # max_connections 1, max_pending_requests 1: the first request holds the connection;
        # each TLS client below queues, then goes away (close_notify alone, a FIN without it,
        # a reset) and must give its place back at once: through TLS its close is a record to
        # read, not the socket's EOF.
        stat = lambda name: self.mesh.stat(f"cluster.queued.{name}") or 0
        results = {}
        first = threading.Thread(target=lambda: results.update(
            first=self.mesh.curl("https", "https", "queued", "--http1.1", path="/delay/4000")))
        first.start()
        wait_until(lambda: stat("upstream_cx_active") == 1, WAIT_S, "the connection to be in use")
        for cancelled, leave in ((1, "close_notify"), (2, "fin"), (3, "reset")):
            tls = self.tls_client(self.mesh.port["https"])
            tls.sendall(b"GET /gone HTTP/1.1\r\nHost: queued\r\n\r\n")
            wait_until(lambda: stat("upstream_rq_pending_active") == 1, WAIT_S, "a pending request")
            if leave == "close_notify":
                tls.unwrap()  # returns with meshproxy's close_notify, once it let the request go
            elif leave == "reset":
                tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            tls.close()
            wait_until(lambda: stat("upstream_rq_cancelled") == cancelled, WAIT_S,
                       "the request to leave the queue")
            self.assertEqual(stat("upstream_rq_pending_active"), 0)
        first.join(timeout=10)
        self.assertEqual(results["first"][2], 200)
        self.assertEqual(stat("upstream_rq_pending_overflow"), 0)
        self.assertEqual(stat("upstream_cx_total"), 1)  # the gone requests never went upstream


class AuthenticatedPrincipalTest(SharedMeshTest):
    """RBAC's `authenticated` principal from the client certificate of an mTLS listener."""

    mesh_class = TlsMesh

    def test_http_rbac_admits_the_named_uri_san_or_subject(self):
        mesh = self.mesh
        pki = mesh.pki
        for (cert, key), want in (((pki["client"], pki["client_key"]), 200),  # URI SAN
                                  (mesh.ops_client, 200),                        # subject CN=ops
                                  (mesh.other_client, 403)):                     # another URI
            code, _, status, body = mesh.curl("https", "rbac_http", "web", "--cert", cert,
                                              "--key", key)
            self.assertEqual((code, status), (0, want), body)
        self.assertEqual(body, "RBAC: access denied")
        self.assertEqual(mesh.stat("listener.rbac-http.rbac_denied"), 1)

    def test_network_rbac_closes_a_connection_of_another_identity(self):
        mesh = self.mesh

        def exchange(cert, key):
            try:
                return half_closed_tls_exchange(mesh.port["rbac_tcp"], mesh.pki["ca"], b"payload",
                                                client=(cert, key))
            except (OSError, ssl.SSLError):
                return b""

        self.assertEqual(exchange(mesh.pki["client"], mesh.pki["client_key"]), b"echo:payload")
        self.assertEqual(exchange(*mesh.other_client), b"")
        self.assertEqual(mesh.stat("listener.rbac-tcp.rbac_denied"), 1)
        self.assertEqual(mesh.stat("listener.rbac-tcp.rbac_allowed"), 1)


class SdsTest(SharedMeshTest):
    """Certificates from SDS files (path_config_source), rotated on disk."""

    mesh_class = TlsMesh

    def server_cn(self, listener):
        """The subject CN of the certificate a new handshake with `listener` presents."""
        context = ssl.create_default_context(cafile=self.mesh.pki["ca"])
        with socket.create_connection(("127.0.0.1", self.mesh.port[listener]), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="proxy.test") as tls:
                return dict(field[0] for field in tls.getpeercert()["subject"])["commonName"]

    def get(self, tls):
        """A keep-alive request on `tls`: the status line of its whole response."""
        tls.sendall(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += tls.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        while len(body) < length:
            body += tls.recv(65536)
        return head.split(b"\r\n")[0]

    def test_a_replaced_certificate_serves_new_handshakes_and_a_bad_file_keeps_it(self):
        mesh = self.mesh
        self.assertEqual(self.server_cn("sds_file"), "backend.test")
        context = ssl.create_default_context(cafile=mesh.pki["ca"])
        raw = socket.create_connection(("127.0.0.1", mesh.port["sds_file"]), timeout=10)
        with context.wrap_socket(raw, server_hostname="proxy.test") as before:
            self.assertEqual(self.get(before), b"HTTP/1.1 200 OK")
            # The files the secret names, replaced (key first, as a rotation tool may: the
            # moment between is a mismatch, logged, that the certificate's move then ends).
            sds = os.path.dirname(mesh.sds_file)
            for name, source in (("tls.key", mesh.rotated[1]), ("tls.crt", mesh.rotated[0])):
                shutil.copy(source, os.path.join(sds, name + ".new"))
                os.replace(os.path.join(sds, name + ".new"), os.path.join(sds, name))
            wait_until(lambda: self.server_cn("sds_file") == "rotated.test", WAIT_S,
                       "new handshakes to present the rotated certificate")
            # The connection opened before keeps its session.
            self.assertEqual(self.get(before), b"HTTP/1.1 200 OK")
            self.assertEqual(before.getpeercert()["subject"][0][0][1], "backend.test")
        # A file that is no DiscoveryResponse: logged with its path, the last good one serves.
        with open(mesh.sds_file + ".tmp", "w") as f:
            f.write("resources: {not: [a list]}\n")
        os.replace(mesh.sds_file + ".tmp", mesh.sds_file)
        wait_until(lambda: f"SDS {mesh.sds_file} (secret \"server\") not applied: "
                           f"filter_chains[0].transport_socket.typed_config.common_tls_context."
                           f"tls_certificate_sds_secret_configs[0]: {mesh.sds_file}: "
                           f"not a DiscoveryResponse" in mesh.logs(),
                   WAIT_S, "the bad file to be logged")
        self.assertEqual(self.server_cn("sds_file"), "rotated.test")
        # Fixed, naming other files: back to the first certificate; those files are watched
        # from then on.
        sds = os.path.dirname(mesh.sds_file)
        v2 = (os.path.join(sds, "v2.crt"), os.path.join(sds, "v2.key"))
        shutil.copy(mesh.pki["server"], v2[0])
        shutil.copy(mesh.pki["server_key"], v2[1])
        write_secret_yaml(mesh.sds_file, "server", *v2)
        wait_until(lambda: self.server_cn("sds_file") == "backend.test", WAIT_S,
                   "the fixed file to be served")
        for path, source in zip(reversed(v2), reversed(mesh.rotated)):
            shutil.copy(source, path + ".new")
            os.replace(path + ".new", path)
        wait_until(lambda: self.server_cn("sds_file") == "rotated.test", WAIT_S,
                   "the newly named files to be watched")

    def test_a_watched_directory_rotates_as_a_kubernetes_secret_volume(self):
        mesh = self.mesh
        self.assertEqual(self.server_cn("sds_dir"), "backend.test")
        rotate_like_kubernetes(mesh.sds_dir, {
            "server.json": secret_json("server", *mesh.rotated)})
        wait_until(lambda: self.server_cn("sds_dir") == "rotated.test", WAIT_S,
                   "new handshakes to present the rotated certificate")
        rotate_like_kubernetes(mesh.sds_dir, {"server.json": "{\"resources\": []}"})
        wait_until(lambda: f"{os.path.join(mesh.sds_dir, 'server.json')}: no secret named "
                           f"\"server\"" in mesh.logs(), WAIT_S, "the empty secret to be logged")
        self.assertEqual(self.server_cn("sds_dir"), "rotated.test")

    def test_an_upstream_validation_context_from_sds(self):
        code, _, status, body = self.mesh.curl("http", "plain", "sds-verified")
        self.assertEqual((code, status), (0, 200), body)
        self.assertGreater(self.mesh.stat("cluster.sds-verified.ssl.handshake"), 0)


class OriginationTest(SharedMeshTest):
    """Clusters with an UpstreamTlsContext, reached through a plaintext listener."""

    mesh_class = TlsMesh

    def get(self, host):
        return self.mesh.curl("http", "plain", host)

    def test_verified_backend_gets_sni_and_the_request(self):
        before = self.mesh.stat("cluster.verified.ssl.handshake") or 0
        code, _, status, body = self.get("verified")
        self.assertEqual((code, status), (0, 200), body)
        info = json.loads(body)
        self.assertEqual((info["backend"], info["sni"]), ("https", "backend.test"))
        self.assertGreater(self.mesh.stat("cluster.verified.ssl.handshake"), before)

    def test_a_san_mismatch_is_a_connect_failure(self):
        code, _, status, body = self.get("wrong-san")
        self.assertEqual(status, 503, body)
        self.assertIn("upstream connect error or disconnect/reset before headers", body)
        self.assertGreater(self.mesh.stat("cluster.wrong-san.ssl.fail_verify_san"), 0)
        self.assertGreater(self.mesh.stat("cluster.wrong-san.upstream_cx_connect_fail"), 0)

    def test_without_a_validation_context_nothing_is_verified(self):
        code, _, status, body = self.get("insecure")
        self.assertEqual((code, status), (0, 200), body)
        self.assertEqual(json.loads(body)["sni"], "anything.test")

    def test_mutual_tls_presents_the_client_certificate(self):
        code, _, status, body = self.get("mtls-without-cert")
        self.assertEqual(status, 503, body)
        code, _, status, body = self.get("mtls")
        self.assertEqual((code, status), (0, 200), body)
        self.assertEqual(json.loads(body)["client_san"], [CLIENT_SPIFFE])

    def test_auto_config_speaks_http2_when_alpn_chose_h2(self):
        for _ in range(3):  # the HTTP/2 connection is reused
            code, _, status, body = self.get("alpn-h2")
            self.assertEqual((code, status), (0, 200), body)
            self.assertEqual(json.loads(body)["headers"]["x-inner-protocol"], "HTTP/2")
        code, _, status, body = self.get("alpn-h1")
        self.assertEqual((code, status), (0, 200), body)
        self.assertEqual(json.loads(body)["backend"], "https")

    def test_an_http2_cluster_speaks_h2_over_tls(self):
        code, _, status, body = self.get("h2-tls")
        self.assertEqual((code, status), (0, 200), body)
        self.assertEqual(json.loads(body)["headers"]["x-inner-protocol"], "HTTP/2")

    def test_a_connect_failure_under_tls_is_envoys_503(self):
        code, _, status, body = self.get("tls-dead")
        self.assertEqual(status, 503, body)
        self.assertIn("upstream connect error or disconnect/reset before headers", body)

    def test_tcp_proxy_originates_tls(self):
        answer = tcp_exchange(self.mesh.port["originate_tcp"], b"hello\n")
        self.assertEqual(answer, b"tls-echo sni=backend.test:hello")
        self.assertGreater(self.mesh.stat("cluster.tls-echo.ssl.handshake"), 0)

    def test_an_idle_pooled_connection_closes_with_close_notify(self):
        code, _, status, body = self.get("idle-tls")
        self.assertEqual((code, status, body), (0, 200, "ok"))
        wait_until(lambda: self.mesh.recorder.outcomes, WAIT_S, "the idle connection to close")
        self.assertEqual(self.mesh.recorder.outcomes, ["close_notify"])
        self.assertEqual(self.mesh.stat("cluster.idle-tls.upstream_cx_idle_timeout"), 1)

    def test_a_websocket_through_tls_on_both_sides(self):
        # As between two Istio sidecars: the client's TLS ends at meshproxy's listener, and
        # meshproxy's own TLS connection to the backend carries the upgraded connection.
        client = ssl.create_default_context(cafile=self.mesh.pki["ca"])
        client.check_hostname = False
        conn, reader, status, headers, _ = websocket_connect(
            self, "127.0.0.1", self.mesh.port["https"], "/chat", authority="ws-tls", tls=client,
            early=websocket_frame(0x1, b"first", mask=True))
        self.assertEqual(status, "HTTP/1.1 101 Switching Protocols", headers)
        self.assertEqual(read_websocket_frame(reader), (0x1, b"ws-tls:first"))
        big = os.urandom(200000)
        conn.sendall(websocket_frame(0x2, big, mask=True))
        self.assertEqual(read_websocket_frame(reader), (0x2, b"ws-tls:" + big))
        conn.sendall(websocket_frame(0x8, b"", mask=True))
        self.assertEqual(read_websocket_frame(reader), (0x8, b""))
        self.assertGreater(self.mesh.stat("cluster.ws-tls.ssl.handshake"), 0)

    def test_tcp_proxy_originating_tls_carries_a_half_close_as_close_notify(self):
        # The client's FIN after 1 MiB becomes close_notify toward the TLS backend, which reads
        # it all (a bare FIN would be a truncation to it) and answers; its close_notify becomes
        # the client's FIN.
        answer = tcp_exchange(self.mesh.port["originate_sink"], PAYLOAD, timeout_s=10)
        self.assertEqual(answer.decode(),
                         f"{len(PAYLOAD)} {hashlib.sha256(PAYLOAD).hexdigest()}")
        self.assertEqual(self.mesh.tls_sink.outcomes, [len(PAYLOAD)])


if __name__ == "__main__":
    unittest.main()
