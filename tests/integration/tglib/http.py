"""A deliberately simple HTTP/1.1 reader used by both the raw client and the scripted upstreams.

It is not a validating parser: tests need to see exactly what tollgate sent, so it splits what
arrives and leaves judgement to the assertions. Bodies are framed the way RFC 9112 §6 says, and
can be handed to a sink (for multi-megabyte transfers) instead of being kept.
"""

import hashlib
import json
import socket


class Closed(Exception):
    """The peer closed (or reset) the connection before the expected bytes arrived."""


class Headers:
    """An ordered list of (name, value) pairs with case-insensitive lookups."""

    def __init__(self, pairs=None):
        self.pairs = list(pairs or [])

    def get(self, name, default=None):
        n = name.lower()
        for k, v in self.pairs:
            if k.lower() == n:
                return v
        return default

    def get_all(self, name):
        n = name.lower()
        return [v for k, v in self.pairs if k.lower() == n]

    def has(self, name):
        return bool(self.get_all(name))

    def names(self):
        return [k.lower() for k, _ in self.pairs]

    def __contains__(self, name):
        return self.has(name)

    def __iter__(self):
        return iter(self.pairs)

    def __repr__(self):
        return f"Headers({self.pairs!r})"


def parse_head(raw):
    """Splits a head (bytes ending in CRLF CRLF) into the start line and Headers."""
    text = raw.decode("latin-1")
    if text.endswith("\r\n\r\n"):
        text = text[:-4]
    lines = text.split("\r\n")
    pairs = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        pairs.append((name, value.strip(" \t")))
    return lines[0], Headers(pairs)


class Reader:
    """Buffered reads from a socket: heads, exact lengths, chunked bodies, until close."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.eof = False

    def _fill(self, n=65536):
        if self.eof:
            raise Closed("connection closed")
        try:
            data = self.sock.recv(n)
        except ConnectionResetError as e:
            self.eof = True
            raise Closed("connection reset") from e
        if not data:
            self.eof = True
            raise Closed("connection closed")
        self.buf += data

    def read_head(self, limit=4 << 20):
        """Returns the bytes of the next head (through CRLF CRLF). Raises Closed at EOF; the
        partial bytes stay in self.buf for the caller to inspect."""
        start = 0
        while True:
            i = self.buf.find(b"\r\n\r\n", max(0, start - 3))
            if i >= 0:
                head = bytes(self.buf[: i + 4])
                del self.buf[: i + 4]
                return head
            if len(self.buf) > limit:
                raise ValueError("head too large")
            start = len(self.buf)
            self._fill()

    def read_line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return line
            if len(self.buf) > 65536:
                raise ValueError("line too long")
            self._fill()

    def read_exact(self, n, sink):
        while n > 0:
            if not self.buf:
                self._fill(min(max(n, 4096), 1 << 20))
            take = min(n, len(self.buf))
            sink(bytes(self.buf[:take]))
            del self.buf[:take]
            n -= take

    def read_chunked(self, sink):
        """Decodes a chunked body into sink; returns the raw trailer lines."""
        while True:
            line = self.read_line()
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                break
            self.read_exact(size, sink)
            if self.read_line() != b"":
                raise ValueError("chunk data not followed by CRLF")
        trailers = []
        while True:
            line = self.read_line()
            if line == b"":
                return trailers
            trailers.append(line)

    def read_to_close(self, sink):
        if self.buf:
            sink(bytes(self.buf))
            self.buf.clear()
        while True:
            try:
                self._fill()
            except Closed:
                return
            sink(bytes(self.buf))
            self.buf.clear()


class Body:
    """Collects a body: keeps up to `keep` bytes and hashes all of it."""

    def __init__(self, keep=4 << 20):
        self.keep = keep
        self.data = bytearray()
        self.length = 0
        self.sha = hashlib.sha256()

    def __call__(self, chunk):
        self.length += len(chunk)
        self.sha.update(chunk)
        if len(self.data) < self.keep:
            self.data += chunk[: self.keep - len(self.data)]

    @property
    def sha256(self):
        return self.sha.hexdigest()


class Response:
    def __init__(self, head, status_line, headers):
        self.head = head
        parts = status_line.split(" ", 2)
        self.version = parts[0]
        self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1
        self.reason = parts[2] if len(parts) > 2 else ""
        self.headers = headers
        self.body = b""
        self.body_length = 0
        self.body_sha256 = None
        self.framing = None  # "length", "chunked", "close" or "none"
        self.trailers = []

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def json(self):
        return json.loads(self.body)

    @property
    def closes(self):
        """The response announces that the connection closes after it."""
        return any("close" in v.lower() for v in self.headers.get_all("connection"))

    def __repr__(self):
        return f"<Response {self.status} {self.headers.pairs!r} body={self.body[:200]!r}>"


def read_response(reader, head_request=False, keep=4 << 20):
    """Reads one response (1xx included, which the caller may skip) and its body."""
    head = reader.read_head()
    status_line, headers = parse_head(head)
    r = Response(head, status_line, headers)
    body = Body(keep)
    te = ",".join(headers.get_all("transfer-encoding")).lower()
    if head_request or 100 <= r.status < 200 or r.status in (204, 304):
        r.framing = "none"
    elif "chunked" in te:
        r.framing = "chunked"
        r.trailers = reader.read_chunked(body)
    elif headers.has("content-length"):
        r.framing = "length"
        reader.read_exact(int(headers.get("content-length")), body)
    else:
        r.framing = "close"
        reader.read_to_close(body)
    r.body = bytes(body.data)
    r.body_length = body.length
    r.body_sha256 = body.sha256
    return r


def is_json_error(resp, status, code=None):
    """Checks the DESIGN §5 error shape; returns the error object or raises AssertionError."""
    assert resp.status == status, f"expected {status}, got {resp!r}"
    ctype = resp.header("content-type", "")
    assert ctype.startswith("application/json"), f"error is not JSON: {resp!r}"
    rid = resp.header("x-request-id")
    assert rid, f"error response has no X-Request-Id: {resp!r}"
    doc = resp.json()
    err = doc["error"]
    assert err["status"] == status, doc
    assert isinstance(err["code"], str) and err["code"], doc
    assert isinstance(err["message"], str) and err["message"], doc
    assert err["request_id"] == rid, f"body request_id {err['request_id']!r} != header {rid!r}"
    if code is not None:
        assert err["code"] == code, f"expected code {code!r}: {doc}"
    return err


def shut_wr(sock):
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
