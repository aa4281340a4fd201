"""Scripted upstream servers: threaded, raw sockets, so a test controls every byte of a response
and can assert on every byte of the requests tollgate forwarded.

Every request is recorded (raw head, request line, headers, body hash and the first bytes) with
the connection it arrived on, so pooling can be checked. A handler decides what to answer:

    def handler(req, conn):
        return b"HTTP/1.1 200 OK\\r\\n..."   # sent as is; "Connection: close" in it closes
        # or: use conn.send()/conn.close()/conn.reset()/conn.hang() and return None
"""

import json
import os
import socket
import ssl
import threading
import time

from . import http
from .net import close_server


class Request:
    def __init__(self, conn_id, seq, head):
        self.conn_id = conn_id
        self.seq = seq  # index of this request on its connection
        self.head = head
        line, self.headers = http.parse_head(head)
        parts = line.split(" ")
        self.method = parts[0]
        self.target = parts[1] if len(parts) > 1 else ""
        self.version = parts[2] if len(parts) > 2 else ""
        self.body = b""
        self.body_length = 0
        self.body_sha256 = None
        self.chunked = False
        self.trailers = []
        self.time = time.monotonic()

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def __repr__(self):
        return (f"<Request #{self.conn_id}.{self.seq} {self.method} {self.target} "
                f"{self.headers.pairs!r}>")


def response(status=200, body=b"", headers=(), reason=None, content_length=True,
             version="HTTP/1.1"):
    """A response with Content-Length framing (or none when content_length=False)."""
    if isinstance(body, str):
        body = body.encode()
    reason = reason if reason is not None else {200: "OK", 204: "No Content", 404: "Not Found",
                                                500: "Internal Server Error"}.get(status, "X")
    lines = [f"{version} {status} {reason}"]
    lines += [f"{k}: {v}" for k, v in headers]
    if content_length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked_response(parts, status=200, headers=(), trailers=()):
    head = [f"HTTP/1.1 {status} OK"] + [f"{k}: {v}" for k, v in headers]
    head.append("Transfer-Encoding: chunked")
    out = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
    for p in parts:
        if p:
            out += b"%x\r\n%s\r\n" % (len(p), p)
    out += b"0\r\n"
    for k, v in trailers:
        out += f"{k}: {v}\r\n".encode("latin-1")
    return out + b"\r\n"


def echo_body(req):
    return json.dumps({
        "method": req.method,
        "target": req.target,
        "version": req.version,
        "headers": req.headers.pairs,
        "body_length": req.body_length,
        "body_sha256": req.body_sha256,
        "conn": req.conn_id,
        "seq": req.seq,
    }).encode()


def echo(req, conn):
    """The default handler: 200 with a JSON description of the request."""
    return response(200, echo_body(req), headers=[("Content-Type", "application/json")])


class Conn:
    """One accepted connection, as seen by a handler."""

    def __init__(self, upstream, sock, conn_id):
        self.upstream = upstream
        self.sock = sock
        self.id = conn_id
        self.closed = False
        self.reader = http.Reader(sock)

    def send(self, data):
        self.sock.sendall(data)

    def send_slowly(self, data, step=1, pause=0.001):
        for i in range(0, len(data), step):
            self.sock.sendall(data[i : i + step])
            if pause:
                time.sleep(pause)

    def cork(self):
        """TCP_CORK: hold partial segments until close, so the last bytes and the FIN arrive in
        the same segment (a peer then sees data and end-of-stream in one read event)."""
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)

    def close(self):
        """Graceful close (FIN)."""
        if not self.closed:
            self.closed = True
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()

    def reset(self):
        """Abortive close (RST)."""
        if not self.closed:
            self.closed = True
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                     b"\x01\x00\x00\x00\x00\x00\x00\x00")
            except OSError:
                pass
            self.sock.close()

    def hang(self, limit=30.0):
        """Never answers: waits (reading and discarding) until the peer closes or the upstream
        stops, then closes."""
        self.sock.settimeout(0.1)
        deadline = time.monotonic() + limit
        while not self.upstream.stopping and time.monotonic() < deadline:
            try:
                if not self.sock.recv(65536):
                    break
            except socket.timeout:
                continue
            except OSError:
                break
        self.upstream.hung_closed += 1
        self.close()


class Upstream:
    def __init__(self, handler=None, unix_path=None, ssl_context=None, keep_body=1 << 20,
                 host="127.0.0.1", url_host=None, port=0):
        self.handler = handler or echo
        self.unix_path = unix_path
        self.ssl_context = ssl_context
        self.keep_body = keep_body
        self.host = host
        self.url_host = url_host or host
        self.bind_port = port
        self.requests = []
        self.connections = 0
        self.open_connections = 0
        self.closed_by_peer = 0  # connections tollgate closed (EOF seen while waiting for a head)
        self.hung_closed = 0
        self.tls_errors = []
        self.sni = []
        self.errors = []
        self.stopping = False
        self._cv = threading.Condition()
        self._socks = set()
        self._threads = []
        if ssl_context is not None:
            ssl_context.sni_callback = self._on_sni

    def _on_sni(self, sslobj, name, ctx):
        self.sni.append(name)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self):
        if self.unix_path:
            try:
                os.unlink(self.unix_path)
            except FileNotFoundError:
                pass
            ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            ls.bind(self.unix_path)
            self.addr = self.unix_path
            self.port = None
        else:
            ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind((self.host, self.bind_port))
            self.addr = ls.getsockname()
            self.port = self.addr[1]
        ls.listen(128)
        self._ls = ls
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    @property
    def url(self):
        if self.unix_path:
            return f"unix:{self.unix_path}"
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.url_host}:{self.port}"

    def close(self):
        self.stopping = True

        def open_socks():
            with self._cv:
                return list(self._socks)

        close_server(self._ls, open_socks, self._threads)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # -- observation ----------------------------------------------------------------------

    def wait_requests(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        with self._cv:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"upstream got {len(self.requests)} requests, expected {n}: "
                        f"{self.requests!r}")
                self._cv.wait(left)
            return list(self.requests)

    def wait_connections_closed(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        with self._cv:
            while self.open_connections > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    @property
    def last(self):
        with self._cv:
            return self.requests[-1] if self.requests else None

    # -- serving --------------------------------------------------------------------------

    def _accept_loop(self):
        while not self.stopping:
            try:
                s, _ = self._ls.accept()
            except OSError:
                return
            with self._cv:
                self.connections += 1
                self.open_connections += 1
                conn_id = self.connections
                self._socks.add(s)
            t = threading.Thread(target=self._serve, args=(s, conn_id), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, s, conn_id):
        try:
            if self.ssl_context is not None:
                s.settimeout(5)
                try:
                    s = self.ssl_context.wrap_socket(s, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    self.tls_errors.append(repr(e))
                    return
                with self._cv:
                    self._socks.add(s)
            s.settimeout(30)
            conn = Conn(self, s, conn_id)
            seq = 0
            while not conn.closed and not self.stopping:
                try:
                    head = conn.reader.read_head()
                except (http.Closed, OSError, ValueError):
                    with self._cv:
                        self.closed_by_peer += 1
                    return
                req = Request(conn_id, seq, head)
                seq += 1
                try:
                    self._read_body(conn, req)
                except (http.Closed, OSError, ValueError) as e:
                    self.errors.append(f"body of {req!r}: {e!r}")
                    return
                with self._cv:
                    self.requests.append(req)
                    self._cv.notify_all()
                out = self.handler(req, conn)
                if out is not None and not conn.closed:
                    try:
                        conn.send(out)
                    except OSError:
                        return
                    head_end = out.find(b"\r\n\r\n")
                    if b"\r\nconnection: close" in out[:head_end].lower():
                        conn.close()
        except Exception as e:  # noqa: BLE001 - reported through self.errors
            self.errors.append(repr(e))
        finally:
            with self._cv:
                self.open_connections -= 1
                self._socks.discard(s)
                self._cv.notify_all()
            try:
                s.close()
            except OSError:
                pass

    def _read_body(self, conn, req):
        body = http.Body(self.keep_body)
        te = ",".join(req.headers.get_all("transfer-encoding")).lower()
        if "chunked" in te:
            req.chunked = True
            req.trailers = conn.reader.read_chunked(body)
        elif req.headers.has("content-length"):
            conn.reader.read_exact(int(req.headers.get("content-length")), body)
        req.body = bytes(body.data)
        req.body_length = body.length
        req.body_sha256 = body.sha256
