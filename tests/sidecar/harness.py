"""Shared pieces of the integration tests: child processes with collected output (also for
tests/conformance and tests/kube, through mesh_harness.py), real HTTP and TCP backends in
threads, free ports, bounded waits, a pod's network namespace. No wait is unbounded."""

import base64
import hashlib
import http.server
import json
import os
import random
import shutil
import socket
import socketserver
import ssl
import struct
import subprocess
import sys
import threading
import time
import unittest
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
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
    """A port free now, below the kernel's ephemeral range (32768+), so that outgoing
    connections (which take ephemeral ports) cannot grab it before the process that is handed
    it binds it."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


def wait_until(predicate, timeout_s, what, interval_s=0.05):
    deadline = time.monotonic() + timeout_s
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # the condition may raise until it holds (connection refused)
            last_error = e
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}"
                         + (f" (last error: {last_error!r})" if last_error else ""))


class Child:
    """A child process whose stdout and stderr lines are collected by reader threads; every
    integration test (tests/sidecar, tests/conformance, tests/kube) starts its processes so."""

    def __init__(self, name, argv, env=None, preexec_fn=None):
        self.name = name
        self.argv = argv
        self.stdout = []
        self.stderr = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, errors="replace", env=env, preexec_fn=preexec_fn)
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

    def lines(self, which="stdout"):
        with self._changed:
            return list(self.stdout if which == "stdout" else self.stderr)

    def json_lines(self):
        out = []
        for line in self.lines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

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

    def wait(self, timeout_s):
        """Waits for exit; returns the exit code, or None if still running."""
        try:
            rc = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None
        self._drain()
        return rc

    def stop(self, timeout_s=5):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout_s)
        self._drain()

    def _drain(self):
        for reader in self._readers:
            reader.join(timeout=2)
        if not any(reader.is_alive() for reader in self._readers):
            self.proc.stdout.close()
            self.proc.stderr.close()

    def log(self):
        """The command and the tail of both streams (repeated lines collapsed), for failure
        messages."""
        with self._changed:
            out, err = collapse(self.stdout), collapse(self.stderr)
        return (f"----- {self.name} (rc={self.proc.poll()}): {' '.join(self.argv)}\n"
                "--- stdout\n" + "\n".join(out[-LOG_TAIL_LINES:]) +
                "\n--- stderr\n" + "\n".join(err[-LOG_TAIL_LINES:]) + "\n")


class Children(list):
    """The processes a test (or a shared mesh) started: stopped in reverse order, their logs
    joined for failure messages."""

    def start(self, name, argv, env=None, preexec_fn=None):
        child = Child(name, argv, env, preexec_fn)
        self.append(child)
        return child

    def stop(self):
        for child in reversed(self):
            child.stop()

    def logs(self):
        return "\n".join(child.log() for child in self)


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


def pattern_bytes(n):
    """n bytes that are not all alike, so a lost or reordered piece shows in a digest."""
    block = bytes(range(256)) * 4096
    return (block * (n // len(block) + 1))[:n]


class Backend:
    """A real HTTP/1.1 server (keep-alive) that says who it is and what it received.

    GET  /status/CODE       answers CODE
    GET  anything           answers `status` when it is given (a host that always fails)
    GET  /delay/MS          answers after MS milliseconds
    GET  /fail/N/KEY[/CODE] answers 503 (or CODE) to the first N requests with KEY (across
                            backends), then 200
    GET  /slowonce/MS/KEY   the first request with KEY answers after MS milliseconds
    GET  /failonce-slow/MS/KEY  the first request with KEY answers 503, the others after MS
                            milliseconds (counted in `failures` as they arrive)
    GET  /chunked/N         answers N chunks with Transfer-Encoding: chunked
    GET  /trailers/VALUE    answers two chunks and the trailer x-checksum: VALUE
    GET  /bytes/N           answers N bytes of pattern_bytes(N)
    POST anything           reads the whole body (length or chunked) and reports its size,
                            SHA-256 and trailers (/fail/N/KEY[/CODE] as for GET)
    OPTIONS anything        as GET
    else                    200 with JSON {backend, path, method, headers}
    Every JSON answer's request is kept in `received` (its info, as answered, with the port of
    the connection it came on as `client_port`). With `close_after_reply`, it closes each
    connection after its answer without saying so (no `Connection: close`), as a server whose
    keep-alive timeout has just passed: the proxy's next request on it meets a closed socket.
    """

    failures = {}
    failures_lock = threading.Lock()

    def __init__(self, name, status=None, host="127.0.0.1", close_after_reply=False):
        self.name = name
        self.status = status
        self.close_after_reply = close_after_reply
        self.received = []
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _reply(self, code, payload, extra_headers=()):
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Backend", backend.name)
                for k, v in extra_headers:
                    self.send_header(k, v)
                # The head and the body in one write, as nginx and most servers send a small
                # response: the proxy finds the body in the buffer with the head.
                self._headers_buffer.append(b"\r\n")
                head = b"".join(self._headers_buffer)
                self._headers_buffer = []
                # A body after a HEAD answer breaks the connection.
                self.wfile.write(head if self.command == "HEAD" else head + body)
                if backend.close_after_reply:
                    self.close_connection = True

            def _info(self, **more):
                headers = {}
                for k, v in self.headers.items():  # repeated headers joined, as HTTP allows
                    k = k.lower()
                    headers[k] = f"{headers[k]},{v}" if k in headers else v
                info = {"backend": backend.name, "path": self.path, "method": self.command,
                        "headers": headers, "client_port": self.client_address[1]}
                info.update(more)
                backend.received.append(info)
                return info

            @staticmethod
            def _failing(parts):
                """(status, attempt) of a /fail/N/KEY[/CODE] request."""
                i = parts.index("fail")
                n, key = int(parts[i + 1]), parts[i + 2]
                code = int(parts[i + 3]) if len(parts) > i + 3 and parts[i + 3].isdigit() else 503
                with Backend.failures_lock:
                    seen = Backend.failures.get(key, 0)
                    Backend.failures[key] = seen + 1
                return (code if seen < n else 200), seen + 1

            def do_GET(self):
                parts = self.path.split("?")[0].strip("/").split("/")
                if backend.status is not None:
                    return self._reply(backend.status, self._info())
                if "status" in parts:
                    code = int(parts[parts.index("status") + 1])
                    return self._reply(code, self._info())
                if "delay" in parts:
                    time.sleep(int(parts[parts.index("delay") + 1]) / 1000)
                    return self._reply(200, self._info())
                if "failonce-slow" in parts:
                    i = parts.index("failonce-slow")
                    with Backend.failures_lock:
                        seen = Backend.failures.get(parts[i + 2], 0)
                        Backend.failures[parts[i + 2]] = seen + 1
                    if seen > 0:
                        time.sleep(int(parts[i + 1]) / 1000)
                    return self._reply(503 if seen == 0 else 200, self._info(attempt=seen + 1))
                if "fail" in parts:
                    status, attempt = self._failing(parts)
                    return self._reply(status, self._info(attempt=attempt))
                if "slowonce" in parts:
                    i = parts.index("slowonce")
                    delay, key = int(parts[i + 1]), parts[i + 2]
                    with Backend.failures_lock:
                        seen = Backend.failures.get(key, 0)
                        Backend.failures[key] = seen + 1
                    if seen == 0:
                        time.sleep(delay / 1000)
                    return self._reply(200, self._info(attempt=seen + 1))
                if "chunked" in parts:
                    n = int(parts[parts.index("chunked") + 1])
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.send_header("X-Backend", backend.name)
                    self.end_headers()
                    for i in range(n):
                        data = f"chunk-{i};".encode()
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    return None
                if "trailers" in parts:
                    value = parts[parts.index("trailers") + 1]
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.send_header("Trailer", "x-checksum")
                    self.end_headers()
                    self.wfile.write(b"5\r\nhello\r\n6\r\n world\r\n")
                    self.wfile.write(b"0\r\nx-checksum: %s\r\n\r\n" % value.encode())
                    return None
                if "bytes" in parts:
                    body = pattern_bytes(int(parts[parts.index("bytes") + 1]))
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("X-Backend", backend.name)
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(body)
                    return None
                return self._reply(200, self._info())

            do_HEAD = do_GET
            do_OPTIONS = do_GET

            def do_POST(self):
                size = 0
                digest = hashlib.sha256()
                trailers = {}
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    while True:
                        line = self.rfile.readline()
                        n = int(line.strip().split(b";")[0], 16)
                        if n == 0:
                            while (line := self.rfile.readline().strip()):
                                name, _, value = line.decode().partition(":")
                                trailers[name.strip().lower()] = value.strip()
                            break
                        data = self.rfile.read(n)
                        size += len(data)
                        digest.update(data)
                        self.rfile.readline()
                else:
                    remaining = int(self.headers.get("Content-Length", "0"))
                    while remaining > 0:
                        data = self.rfile.read(min(remaining, 1 << 16))
                        got = len(data)
                        digest.update(data)
                        if got == 0:
                            break
                        size += got
                        remaining -= got
                status, attempt = 200, None
                parts = self.path.split("?")[0].strip("/").split("/")
                if "fail" in parts:
                    status, attempt = self._failing(parts)
                return self._reply(status, self._info(
                    body_size=size, body_sha256=digest.hexdigest(), attempt=attempt,
                    trailers=trailers))

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 256  # a proxy opens many connections at once

            def handle_error(self, request, client_address):
                pass  # a proxy dropping a connection it retried is expected, not noise

        self.server = Server((host, 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class ThreadedTcpServer:
    """A listening socket on loopback whose connections are each served by `_serve(conn)` in
    a thread of their own."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def stop(self):
        self.sock.close()


class TcpEchoBackend(ThreadedTcpServer):
    """Reads until the client half-closes, then answers NAME:DATA and closes: a TCP proxy
    that does not carry the half-close never gets an answer."""

    def __init__(self, name):
        self.name = name
        super().__init__()

    def _serve(self, conn):
        with conn:
            conn.settimeout(10)
            data = b""
            try:
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(self.name.encode() + b":" + data)
            except OSError:
                pass


WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def websocket_accept(key):
    """The Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455, 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode() + WEBSOCKET_GUID).digest()).decode()


def websocket_frame(opcode, payload, mask):
    """One final frame; a client's is masked (RFC 6455, 5.2)."""
    head = bytes([0x80 | opcode])
    n = len(payload)
    masked = 0x80 if mask else 0
    if n < 126:
        head += bytes([masked | n])
    elif n < 65536:
        head += bytes([masked | 126]) + struct.pack("!H", n)
    else:
        head += bytes([masked | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_websocket_frame(reader):
    """(opcode, payload) of the next frame from `reader` (a file from socket.makefile)."""
    first, second = reader.read(2)
    n = second & 0x7F
    if n == 126:
        n = struct.unpack("!H", reader.read(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", reader.read(8))[0]
    key = reader.read(4) if second & 0x80 else None
    payload = reader.read(n)
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return first & 0x0F, payload


def websocket_connect(test, address, port, path, authority="web", early=b"", tls=None):
    """A WebSocket client's handshake on a new connection (through TLS with the ssl context
    `tls`): (socket, its reader, the status line, the response headers, the key). `early`
    goes out in the same write."""
    key = base64.b64encode(os.urandom(16)).decode()
    conn = socket.create_connection((address, port), timeout=10)
    if tls is not None:
        conn = tls.wrap_socket(conn, server_hostname=authority)
    test.addCleanup(conn.close)
    conn.sendall((f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode() + early)
    reader = conn.makefile("rb")
    test.addCleanup(reader.close)
    status = reader.readline().decode().rstrip()
    headers = {}
    while (line := reader.readline().decode().rstrip("\r\n")):
        name, value = line.split(":", 1)
        headers[name.strip().lower()] = value.strip()
    return conn, reader, status, headers, key


class WebSocketEchoBackend(ThreadedTcpServer):
    """A WebSocket server (RFC 6455): answers an upgrade request with 101 and echoes each text
    or binary message as NAME:MESSAGE, and a close with a close. A path ending in /refuse, or
    a request without `Upgrade: websocket`, gets 403 "no upgrade here". `requests` keeps each
    request head's lines."""

    def __init__(self, name, cert=None, key=None):
        self.name = name
        self.requests = []
        self.context = None
        if cert:  # a TLS server
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(cert, key)
        super().__init__()

    def _serve(self, conn):
        conn.settimeout(10)
        if self.context is not None:
            try:
                conn = self.context.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError):
                conn.close()
                return
        with conn, conn.makefile("rb") as reader:
            try:
                lines = []
                while (line := reader.readline().decode().rstrip("\r\n")):
                    lines.append(line)
                self.requests.append(lines)
                headers = {k.strip().lower(): v.strip()
                           for k, v in (l.split(":", 1) for l in lines[1:])}
                if headers.get("upgrade", "").lower() != "websocket" or \
                        lines[0].split(" ")[1].endswith("/refuse"):
                    body = b"no upgrade here"
                    conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n"
                                 b"Connection: close\r\n\r\n%s" % (len(body), body))
                    return
                accept = websocket_accept(headers["sec-websocket-key"])
                conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n")
                             .encode())
                while True:
                    opcode, payload = read_websocket_frame(reader)
                    if opcode == 0x8:
                        conn.sendall(websocket_frame(0x8, payload, mask=False))
                        return
                    conn.sendall(websocket_frame(opcode, self.name.encode() + b":" + payload,
                                                 mask=False))
            except (OSError, ValueError):
                pass


class CountingBackend:
    """An HTTP/1.1 origin (keep-alive) that counts the connections open to it: `peak` is the
    most at once, `accepted` all of them. Each answer (200 "ok") comes `delay_s` late. While
    paused it accepts nothing, and its accept queue holds one connection: a client connecting
    beyond that waits in SYN retries, still connecting."""

    def __init__(self, delay_s=0.2):
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.open = self.peak = self.accepted = 0
        self.accepting = threading.Event()
        self.accepting.set()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def pause(self):
        self.accepting.clear()

    def resume(self):
        self.accepting.set()

    def _accept(self):
        while True:
            self.accepting.wait()
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.open += 1
                self.accepted += 1
                self.peak = max(self.peak, self.open)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        data = b""
        try:
            with conn:
                conn.settimeout(30)
                while True:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        data += chunk
                    data = data.split(b"\r\n\r\n", 1)[1]  # GETs: no body
                    time.sleep(self.delay_s)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except OSError:
            pass
        finally:
            with self.lock:
                self.open -= 1

    def stop(self):
        self.accepting.set()
        self.sock.close()


def self_signed_cert(directory, hosts):
    """A self-signed certificate (P-256) for `hosts`, made by the openssl CLI: (cert, key)."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=" + hosts[0],
                    "-addext", "subjectAltName=" + ",".join("DNS:" + h for h in hosts),
                    "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=30)
    return cert, key


def make_pki(directory):
    """A CA and certificates it signs, made by the openssl CLI in `directory` (P-256, one day):
    returns paths by name: ca, server/server_key (SAN DNS:backend.test, DNS:proxy.test),
    client/client_key (SAN URI spiffe://cluster.local/ns/default/sa/client), and
    rogue/rogue_key, a client certificate of another CA."""
    def sh(*argv):
        subprocess.run(argv, check=True, capture_output=True, timeout=30, cwd=directory)

    def key_and_csr(name, cn):
        sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
           "-subj", "/CN=" + cn, "-keyout", name + ".key", "-out", name + ".csr")

    def sign(name, ca, extensions):
        with open(os.path.join(directory, name + ".ext"), "w") as f:
            f.write(extensions)
        sh("openssl", "x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
           "-CAcreateserial", "-days", "1", "-extfile", name + ".ext", "-out", name + ".pem")

    for ca in ("ca", "rogue-ca"):
        sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
           "-nodes", "-days", "1", "-subj", "/CN=" + ca, "-keyout", ca + ".key", "-out", ca + ".pem")
    key_and_csr("server", "backend.test")
    sign("server", "ca", "subjectAltName=DNS:backend.test,DNS:proxy.test\n"
                         "extendedKeyUsage=serverAuth,clientAuth\n")
    for name, ca in (("client", "ca"), ("rogue", "rogue-ca")):
        key_and_csr(name, name)
        sign(name, ca, "subjectAltName=URI:spiffe://cluster.local/ns/default/sa/client\n"
                       "extendedKeyUsage=clientAuth\n")
    paths = {"ca": "ca.pem"}
    for name in ("server", "client", "rogue"):
        paths[name], paths[name + "_key"] = name + ".pem", name + ".key"
    return {k: os.path.join(directory, v) for k, v in paths.items()}


class HttpsBackend:
    """An HTTPS/1.1 server (Python's ssl; ALPN http/1.1) that answers every GET with JSON
    {backend, path, headers, sni, client_san}: the SNI its handshake received and the URI SANs
    of the client certificate (with `client_ca`, one is required)."""

    def __init__(self, name, cert, key, client_ca=None):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.set_alpn_protocols(["http/1.1"])
        if client_ca:
            context.load_verify_locations(client_ca)
            context.verify_mode = ssl.CERT_REQUIRED

        def remember_sni(tls, server_name, _):
            tls.received_sni = server_name
        context.sni_callback = remember_sni

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                peer = self.connection.getpeercert() or {}
                body = json.dumps({
                    "backend": name, "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "sni": getattr(self.connection, "received_sni", None),
                    "client_san": [v for k, v in peer.get("subjectAltName", ()) if k == "URI"],
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

            def get_request(self):
                conn, address = self.socket.accept()
                conn.settimeout(10)
                return context.wrap_socket(conn, server_side=True), address

            def handle_error(self, request, client_address):
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class TlsBackend(ThreadedTcpServer):
    """A TLS server (Python's ssl, OpenSSL) that answers each connection's first line with
    NAME sni=SNI:LINE, SNI being the server name its handshake received: the TLS session ends
    here, so a proxy in between can only have passed it through."""

    def __init__(self, name, cert, key):
        self.name = name
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.context.set_alpn_protocols(["h2", "http/1.1"])
        self.context.sni_callback = self._remember_sni
        super().__init__()

    @staticmethod
    def _remember_sni(tls, server_name, context):
        tls.received_sni = server_name

    def _serve(self, conn):
        conn.settimeout(10)
        # The answer leaves at once: closing with the client's close_notify unread resets the
        # connection, which would drop an answer Nagle still held.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            with self.context.wrap_socket(conn, server_side=True) as tls:
                line = tls.recv(4096).split(b"\n")[0]
                sni = getattr(tls, "received_sni", None) or ""
                tls.sendall(f"{self.name} sni={sni}:".encode() + line)
        except (OSError, ssl.SSLError):
            conn.close()


def tls_exchange(host, port, server_name, cafile, line=b"hello", timeout_s=5):
    """A TLS connection to host:port with SNI `server_name`, checking the certificate against
    `cafile` and that name; sends `line` and returns the answer."""
    context = ssl.create_default_context(cafile=cafile)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection((host, port), timeout=timeout_s) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            tls.sendall(line + b"\n")
            return tls.recv(4096)


def tcp_exchange(port, payload, timeout_s=5, host="127.0.0.1"):
    """Sends payload, half-closes, and returns everything the peer sends until it closes."""
    with socket.create_connection((host, port), timeout=timeout_s) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk


def write_resources(directory, resources, version):
    """Writes the test ADS server's resource files ({"cds": [...], ...}), each atomically, and
    then the version file that makes it serve them."""
    for kind, items in resources.items():
        with open(os.path.join(directory, kind + ".json.tmp"), "w") as f:
            json.dump(items, f)
        os.replace(os.path.join(directory, kind + ".json.tmp"), os.path.join(directory, kind + ".json"))
    with open(os.path.join(directory, "version.tmp"), "w") as f:
        f.write(f"{version}\n")
    os.replace(os.path.join(directory, "version.tmp"), os.path.join(directory, "version"))


class LogsOnFailure(unittest.TestCase):
    """Prints self.logs() (its processes' output) after each test that fails or errs."""

    def logs(self):
        raise NotImplementedError

    def run(self, result=None):
        problems = (lambda: len(result.failures) + len(result.errors)) if result else (lambda: 0)
        before = problems()
        outcome = super().run(result)
        if problems() > before:
            print(self.logs())
        return outcome


class SharedMeshTest(LogsOnFailure):
    """Tests that share one mesh (`mesh_class(case)`, which has logs()) across the class."""

    mesh_class = None

    @classmethod
    def setUpClass(cls):
        cls.case = unittest.TestCase()
        cls.mesh = cls.mesh_class(cls.case)

    @classmethod
    def tearDownClass(cls):
        cls.case.doCleanups()

    def logs(self):
        return self.mesh.logs()


# ----- a pod in a private network namespace (meshpilot_test.py, istio_traffic_test.py)

IN_NETNS = "MESHPROXY_TEST_NETNS"
PROXY_UID = 1337  # meshproxy's uid, exempt from interception as istio-proxy's
POD_IP = "10.1.0.2"


def run(*argv):
    subprocess.run(argv, check=True, capture_output=True, timeout=10)


def http_json(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


# Kubernetes objects as YAML, for meshpilot's file source.

def endpoint_slice(service, name, ports, pod=None, address="127.0.0.1"):
    """One endpoint at `address`; ports is [(port name, port)]; pod joins its labels."""
    port_lines = "".join(f"- {{name: {n}, port: {p}, protocol: TCP}}\n" for n, p in ports)
    target = f"\n  targetRef: {{kind: Pod, name: {pod}, namespace: default}}" if pod else ""
    return f"""---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}
  namespace: default
  labels: {{kubernetes.io/service-name: {service}}}
addressType: IPv4
ports:
{port_lines}endpoints:
- addresses: [{address}]{target}
"""


def pod(name, labels, ip):
    """A Pod in namespace default; labels is a YAML flow mapping."""
    return f"""---
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default, labels: {labels}}}
status: {{podIP: {ip}}}
"""


def service(name, ip, ports):
    """A Service in namespace default selecting app=name; ports is [(port name, port)]."""
    port_lines = "".join(f"  - {{name: {n}, port: {p}, protocol: TCP}}\n" for n, p in ports)
    return f"""---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  clusterIP: {ip}
  selector: {{app: {name}}}
  ports:
{port_lines}"""


def admin_stat(name, admin_port=15000):
    """The value of one counter or gauge in meshproxy's admin /stats, or None."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/stats", timeout=5).read().decode()
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return int(value)
    return None


def config_dump_has(*texts, admin_port=15000):
    """Whether meshproxy's applied config (its admin /config_dump) mentions every text."""
    dump = urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/config_dump",
                                  timeout=5).read().decode()
    return all(text in dump for text in texts)


def reset_network():
    """Undoes what a test set up in the namespace (all tests share it)."""
    for argv in (["iptables", "-t", "nat", "-F", "OUTPUT"], ["ip", "link", "del", "eth0"],
                 ["ip", "addr", "del", f"{POD_IP}/32", "dev", "lo"]):
        subprocess.run(argv, capture_output=True, timeout=10)


def capture_outbound():
    """The pod's interface (a veth pair, its peer standing for the node) with POD_IP, a route
    for the service range (10.96.0.0/16) through it, as a pod has, and istio-iptables'
    outbound capture to 15001 (except meshproxy's own uid and loopback)."""
    run("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "node0")
    run("ip", "addr", "add", f"{POD_IP}/24", "dev", "eth0")
    run("ip", "link", "set", "eth0", "up")
    run("ip", "link", "set", "node0", "up")
    run("ip", "route", "add", "10.96.0.0/16", "dev", "eth0")
    run("iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-m", "owner",
        "--uid-owner", str(PROXY_UID), "-j", "RETURN")
    run("iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", "127.0.0.1/32", "-j", "RETURN")
    run("iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-j", "REDIRECT",
        "--to-ports", "15001")


def start_meshpilot(children, meshpilot_bin, config_dir):
    """meshpilot serving config_dir on the well-known ports (xDS 15010, debug 15014), ready."""
    meshpilot = children.start("meshpilot", [
        meshpilot_bin, "--config-dir", config_dir, "--xds-port", "15010", "--debug-port", "15014",
        "--debounce-after", "10ms"])
    wait_until(lambda: urllib.request.urlopen("http://127.0.0.1:15014/ready",
                                              timeout=2).status == 200,
               20, "meshpilot /ready")
    return meshpilot


def start_sidecar(children, proxy_bin, *identity):
    """meshproxy as a pod's sidecar of meshpilot (start_meshpilot): its own uid, so iptables
    can exempt its traffic; admin on 15000; ready."""
    proxy = children.start("meshproxy", [
        "setpriv", f"--reuid={PROXY_UID}", f"--regid={PROXY_UID}", "--clear-groups",
        proxy_bin, "--xds-address", "127.0.0.1:15010", *identity,
        "--admin-port", "15000", "--readiness-port", "15021", "--concurrency", "2"])
    wait_until(lambda: urllib.request.urlopen("http://127.0.0.1:15021/healthz/ready",
                                              timeout=2).status == 200,
               20, "meshproxy /healthz/ready")
    return proxy


def main_in_network_namespace(test_file):
    """Runs test_file's unittests in a fresh network namespace (only loopback, up), so the
    well-known ports (15000, 15001, 15010, ...) are the test's own and everything it creates
    goes with it. Returns the exit code: 77 (ctest: skipped) when namespaces are unavailable."""
    if os.environ.get(IN_NETNS) != "1":
        if not shutil.which("unshare"):
            print("skipped: unshare is not available")
            return 77
        probe = subprocess.run(["unshare", "--net", "true"], capture_output=True)
        if probe.returncode != 0:
            print(f"skipped: cannot create a network namespace: {probe.stderr.decode().strip()}")
            return 77
        env = dict(os.environ, **{IN_NETNS: "1"})
        return subprocess.run(
            ["unshare", "--net", "--", "sh", "-c",
             'ip link set lo up && exec "$0" "$@"', sys.executable, os.path.abspath(test_file)]
            + sys.argv[1:], env=env, timeout=300).returncode
    program = unittest.main(module="__main__", exit=False, verbosity=2)
    return 0 if program.result.wasSuccessful() else 1
