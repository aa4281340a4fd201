"""A raw HTTP/1.1 client: sends exactly the bytes a test gives it and reads responses by framing."""

import select
import socket
import time

from . import http
from .net import connect


def build_request(method="GET", path="/", host="test.local", headers=(), body=None,
                  version="HTTP/1.1", content_length=True):
    """Formats a request. headers: (name, value) pairs, sent in order after Host (host=None
    sends no Host). A Content-Length is added for a bytes body unless content_length=False."""
    lines = [f"{method} {path} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    for k, v in headers:
        lines.append(f"{k}: {v}")
    if body is not None and content_length:
        lines.append(f"Content-Length: {len(body)}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return raw + (body or b"")


def chunked(*parts):
    """Encodes parts as a chunked body, with the last-chunk and an empty trailer section."""
    out = b""
    for p in parts:
        if p:
            out += b"%x\r\n%s\r\n" % (len(p), p)
    return out + b"0\r\n\r\n"


class Client:
    def __init__(self, addr, timeout=3.0, ssl_context=None, server_hostname=None, rcvbuf=None):
        self.addr = addr
        self.sock = connect(addr, timeout, rcvbuf)
        if ssl_context is not None:
            self.sock = ssl_context.wrap_socket(self.sock, server_hostname=server_hostname)
        self.reader = http.Reader(self.sock)

    def settimeout(self, t):
        self.sock.settimeout(t)

    def send(self, data):
        self.sock.sendall(data)

    def send_slowly(self, data, step=1, pause=0.0):
        for i in range(0, len(data), step):
            self.sock.sendall(data[i : i + step])
            if pause:
                time.sleep(pause)

    def request(self, method="GET", path="/", **kw):
        self.send(build_request(method, path, **kw))

    def response(self, head_request=False, interim=False, keep=4 << 20):
        """Reads the next response. 1xx responses are skipped unless interim=True."""
        while True:
            r = http.read_response(self.reader, head_request=head_request, keep=keep)
            if interim or not 100 <= r.status < 200:
                return r

    def get(self, path="/", **kw):
        head = kw.get("method", "GET") == "HEAD"
        method = kw.pop("method", "GET")
        self.request(method, path, **kw)
        return self.response(head_request=head)

    def closed_within(self, timeout):
        """True when the peer closes (FIN or RST) within timeout, discarding any bytes."""
        deadline = time.monotonic() + timeout
        if self.reader.eof:
            return True
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                continue
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                return True
            except socket.timeout:
                continue
            if not data:
                return True
            self.reader.buf += data

    def pending(self, wait=0.0):
        """Bytes that arrived without being asked for (within wait seconds)."""
        end = time.monotonic() + wait
        while True:
            r, _, _ = select.select([self.sock], [], [], max(0.0, end - time.monotonic()))
            if not r:
                break
            try:
                data = self.sock.recv(65536)
            except OSError:
                break
            if not data:
                self.reader.eof = True
                break
            self.reader.buf += data
            if time.monotonic() >= end:
                break
        return bytes(self.reader.buf)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def get(addr, path="/", **kw):
    """One request on a fresh connection."""
    with Client(addr) as c:
        return c.get(path, **kw)
