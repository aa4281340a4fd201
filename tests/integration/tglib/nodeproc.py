"""An HTTP/1.1 keep-alive node that runs as its own process, so a test can kill -9 it.

Run as a script (standard library only, no imports from tglib):

    python3 tglib/nodeproc.py --port 8081 --name a [--delay-ms 5] [--status 503] [--fail reset]

Every request is answered with `status` (200 by default) after `delay_ms`, with the header
`X-Node: NAME` and a JSON body {"node": NAME, "path": ..., "method": ..., "seq": N}, where seq
counts the requests this process has served. `fail` makes the node misbehave after reading a
whole request instead of answering: "close" (FIN), "reset" (RST) or "hang" (read and never
answer). Paths starting with /__ are answered locally and not counted:

    GET  /__count                                   {"count": N, "methods": {"GET": n, ...}}
    POST /__ctl?status=503&delay_ms=0&fail=none     changes the behaviour, answers the new one

From a test, NodeProc starts the process on a free (or given) port, waits until it answers,
kills it with SIGKILL and restarts it on the same port:

    n = NodeProc("a").start()
    n.url, n.port, n.count(), n.ctl(status=503), n.kill(), n.start()  # same port again
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from urllib.parse import parse_qs, urlsplit

FAILS = ("none", "close", "reset", "hang")
_LINGER0 = b"\x01\x00\x00\x00\x00\x00\x00\x00"
_REASONS = {200: "OK", 404: "Not Found", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout"}


# -- the server (runs in the child process) --------------------------------------------------


class _State:
    def __init__(self, name, status, delay_ms, fail):
        self.name = name
        self.status = status
        self.delay_ms = delay_ms
        self.fail = fail
        self.count = 0
        self.methods = {}
        self.lock = threading.Lock()

    def snapshot(self):
        with self.lock:
            return {"node": self.name, "status": self.status, "delay_ms": self.delay_ms,
                    "fail": self.fail, "count": self.count, "methods": dict(self.methods)}


class _Conn:
    """Reads requests off one connection: heads up to the blank line, bodies by Content-Length
    or chunked framing (tollgate may forward either)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buf += data

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_request(self):
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                raise EOFError
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = (lines[0].split(" ") + ["", ""])[:3]
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():  # trailers up to the blank line
                        pass
                    break
                self._exact(size + 2)
        else:
            self._exact(int(headers.get("content-length", "0") or 0))
        return method, target, version, headers


def _response(status, body, name=None, close=False):
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'X')}", "Content-Type: application/json",
             f"Content-Length: {len(body)}"]
    if name is not None:
        lines.append(f"X-Node: {name}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _control(state, method, target):
    url = urlsplit(target)
    if url.path == "/__count":
        return _response(200, json.dumps(state.snapshot()).encode())
    if url.path == "/__ctl" and method == "POST":
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        with state.lock:
            if "status" in q:
                state.status = int(q["status"])
            if "delay_ms" in q:
                state.delay_ms = float(q["delay_ms"])
            if "fail" in q and q["fail"] in FAILS:
                state.fail = q["fail"]
        return _response(200, json.dumps(state.snapshot()).encode())
    return _response(404, b'{"error": "unknown control path"}')


def _serve(state, sock):
    conn = _Conn(sock)
    try:
        while True:
            method, target, version, headers = conn.read_request()
            close = (headers.get("connection", "").lower() == "close" or
                     (version == "HTTP/1.0" and "keep-alive" not in
                      headers.get("connection", "").lower()))
            if target.startswith("/__"):
                sock.sendall(_control(state, method, target))
                if close:
                    return
                continue
            with state.lock:
                state.count += 1
                state.methods[method] = state.methods.get(method, 0) + 1
                seq, status, delay_ms, fail = state.count, state.status, state.delay_ms, state.fail
            if fail == "close":
                sock.shutdown(socket.SHUT_RDWR)
                return
            if fail == "reset":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER0)
                return
            if fail == "hang":
                while sock.recv(65536):
                    pass
                return
            if delay_ms:
                time.sleep(delay_ms / 1000.0)
            body = json.dumps({"node": state.name, "path": target, "method": method,
                               "seq": seq}).encode()
            sock.sendall(_response(status, body, state.name, close))
            if close:
                return
    except (EOFError, OSError, ValueError):
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass


def serve_forever(port, name, status=200, delay_ms=0.0, fail="none"):
    """Listens on 127.0.0.1:port and serves until killed; one thread per connection, so any
    number of keep-alive connections (and delayed responses) proceed at once."""
    state = _State(name, status, delay_ms, fail)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(512)
    print(f"listening {ls.getsockname()[1]}", flush=True)
    while True:
        c, _ = ls.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_serve, args=(state, c), daemon=True).start()


# -- the helper (runs in the test process) ---------------------------------------------------


def _local(port, method, path, timeout=2.0):
    """One request on a fresh connection to the node itself; returns (status, parsed JSON)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: node\r\nContent-Length: 0\r\n"
                  f"Connection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body or b"null")


class NodeProc:
    """A node process managed by a test. The port is kept across kill() and start(), so tollgate
    sees the same node come back."""

    def __init__(self, name, port=None, delay_ms=0, status=200, fail="none"):
        self.name = name
        if port is None:
            from .net import free_port  # the helper half runs inside the tglib package
            port = free_port()
        self.port = port
        self.delay_ms = delay_ms
        self.status = status
        self.fail = fail
        self.proc = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def addr(self):
        return ("127.0.0.1", self.port)

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=10.0):
        """Starts the process (again, on the same port after kill()) and waits until it serves.
        The settings given to the constructor apply, not those changed through ctl()."""
        assert not self.alive, f"node {self.name} is already running"
        script = os.path.abspath(__file__)
        # stderr goes to a file, not a pipe nobody drains, so a chatty child never blocks.
        self._err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, script, "--port", str(self.port), "--name", self.name,
             "--delay-ms", str(self.delay_ms), "--status", str(self.status), "--fail", self.fail],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._err)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self._err.seek(0)
                err = self._err.read().decode("utf-8", "replace")
                raise AssertionError(f"node {self.name} exited with {self.proc.returncode}: {err}")
            try:
                _local(self.port, "GET", "/__count", timeout=0.5)
                return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"node {self.name} did not listen on {self.port}")
            time.sleep(0.02)

    def kill(self):
        """SIGKILL, as a crash would: no FIN from the application, pending responses lost."""
        if self.alive:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(5)
            self._err.close()

    close = kill

    def info(self):
        """The node's state: {"count", "methods", "status", "delay_ms", "fail", "node"}."""
        status, doc = _local(self.port, "GET", "/__count")
        assert status == 200, doc
        return doc

    def count(self):
        """Requests served since this process started (control requests not included)."""
        return self.info()["count"]

    def ctl(self, status=None, delay_ms=None, fail=None):
        """Changes the running process's behaviour; unset arguments stay as they are."""
        q = []
        for k, v in (("status", status), ("delay_ms", delay_ms), ("fail", fail)):
            if v is not None:
                q.append(f"{k}={v}")
        status_code, doc = _local(self.port, "POST", "/__ctl?" + "&".join(q))
        assert status_code == 200, doc
        return doc

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", default="node")
    ap.add_argument("--status", type=int, default=200)
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--fail", default="none", choices=FAILS)
    a = ap.parse_args()
    try:
        serve_forever(a.port, a.name, a.status, a.delay_ms, a.fail)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
