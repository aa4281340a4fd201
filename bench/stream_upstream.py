#!/usr/bin/python3
"""A tiny HTTP/1.1 upstream for bench/mem's streaming checks.

Usage: stream_upstream.py PORT [PAUSE_AT_BYTES PAUSE_SECONDS]

- POST or PUT, any path: reads the whole body (Content-Length or chunked) and answers 200 with
  "received N\\n". After PAUSE_AT_BYTES it stops reading for PAUSE_SECONDS once, so a proxy
  without backpressure would have to buffer everything the client sends meanwhile.
- GET /bytes/N: answers 200 with N zero bytes and Content-Length: N, as fast as it can write.
- Any other GET: 200 "ok\\n".
Every connection is kept alive and served by its own thread. Malformed input closes it.
"""

import socket
import sys
import threading
import time

CHUNK = 1 << 20
ZEROS = memoryview(bytes(CHUNK))


class Conn:
    def __init__(self, sock, pause_at, pause_s):
        self.sock = sock
        self.buf = bytearray()
        self.pause_at = pause_at
        self.pause_s = pause_s

    def fill(self):
        data = self.sock.recv(CHUNK)
        if not data:
            raise EOFError
        self.buf += data

    def line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return out
            if len(self.buf) > 65536:
                raise ValueError("line too long")
            self.fill()

    def head(self):
        start = self.line().decode("latin-1")
        hdrs = {}
        while True:
            ln = self.line()
            if not ln:
                return start, hdrs
            k, _, v = ln.decode("latin-1").partition(":")
            hdrs[k.strip().lower()] = v.strip()

    def discard(self, n, seen):
        """Reads and drops n body bytes; seen is the body count so far (for the pause)."""
        while n:
            if not self.buf:
                if self.pause_at and seen >= self.pause_at:
                    time.sleep(self.pause_s)
                    self.pause_at = 0
                self.fill()
            take = min(n, len(self.buf))
            del self.buf[:take]
            n -= take
            seen += take
        return seen

    def body(self, hdrs):
        if hdrs.get("transfer-encoding", "").lower() == "chunked":
            seen = 0
            while True:
                size = int(self.line().split(b";")[0], 16)
                if size == 0:
                    while self.line():
                        pass
                    return seen
                seen = self.discard(size, seen)
                if self.line():
                    raise ValueError("bad chunk end")
        return self.discard(int(hdrs.get("content-length", "0")), 0)

    def respond(self, body=b"", length=None):
        n = len(body) if length is None else length
        self.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                          b"Content-Length: %d\r\n\r\n" % n + body)
        if length is not None:
            left = length
            while left:
                take = min(left, CHUNK)
                self.sock.sendall(ZEROS[:take])
                left -= take

    def serve(self):
        while True:
            start, hdrs = self.head()
            method, target, _ = start.split(" ", 2)
            if method in ("POST", "PUT"):
                n = self.body(hdrs)
                self.respond(b"received %d\n" % n)
            elif target.startswith("/bytes/"):
                self.body(hdrs)
                self.respond(length=int(target[len("/bytes/"):]))
            else:
                self.body(hdrs)
                self.respond(b"ok\n")


def handle(sock, pause_at, pause_s):
    try:
        Conn(sock, pause_at, pause_s).serve()
    except (EOFError, OSError, ValueError):
        pass
    finally:
        sock.close()


def main():
    port = int(sys.argv[1])
    pause_at = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    pause_s = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(1024)
    while True:
        sock, _ = srv.accept()
        threading.Thread(target=handle, args=(sock, pause_at, pause_s), daemon=True).start()


if __name__ == "__main__":
    main()
