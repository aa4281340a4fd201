"""A fault-injecting TCP relay (this kernel has no netem, DESIGN §8).

    r = Relay(("127.0.0.1", 8080), mode="pass").start()
    # point a client (or a tollgate node URL) at ("127.0.0.1", r.port)

Modes, switchable at any time with set_mode() (existing connections follow the change):
    pass      forward bytes both ways as they arrive
    delay     hold every chunk for delay_ms before forwarding it
    drop      black hole: accept, read and discard, never connect to the target, never answer
    reset     forward, but once reset_after bytes of a connection went in direction
              `reset_dir` ("up" is client -> target, "down" is target -> client) close both
              sides with SO_LINGER 0 (RST) right after the limit
    stall     stop reading from both sides: the kernel buffers fill and the peers block
    onebyte   forward one byte per send, with `pause` seconds between bytes
    refuse    the node is gone: the listening socket is closed (connects get ECONNREFUSED) and
              open connections are closed (FIN, then RST); switching to another mode listens
              again on the same port
"""

import select
import socket
import threading
import time

from tglib.net import close_server, free_port

MODES = ("pass", "delay", "drop", "reset", "stall", "onebyte", "refuse")

_LINGER0 = b"\x01\x00\x00\x00\x00\x00\x00\x00"


def _rst(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER0)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class Relay:
    def __init__(self, target, mode="pass", delay_ms=0, reset_after=0, reset_dir="down",
                 pause=0.001):
        self.target = target
        self.connections = 0
        self.forwarded = {"up": 0, "down": 0}
        self._stop = False
        self._threads = []
        self._socks = set()
        self._lock = threading.Lock()
        self._ls = None
        self.port = 0
        self.mode = None
        self.set_mode(mode, delay_ms=delay_ms, reset_after=reset_after, reset_dir=reset_dir,
                      pause=pause)

    def set_mode(self, mode, delay_ms=None, reset_after=None, reset_dir=None, pause=None):
        if mode not in MODES:
            raise ValueError(f"unknown relay mode {mode!r}")
        was = self.mode
        self.mode = mode
        if self.port:  # started: open or close the listener as the mode needs
            if mode == "refuse" and was != "refuse":
                self._unlisten()
            elif mode != "refuse" and was == "refuse":
                self._listen(self.port)
        if delay_ms is not None:
            self.delay_ms = delay_ms
        if reset_after is not None:
            self.reset_after = reset_after
        if reset_dir is not None:
            self.reset_dir = reset_dir
        if pause is not None:
            self.pause = pause

    def start(self, port=0):
        """Listens on port (0: a free one) unless the mode is refuse, which only reserves the
        port number for a later set_mode()."""
        if self.mode == "refuse":
            self.port = port or free_port()
        else:
            self._listen(port)
        self.addr = ("127.0.0.1", self.port)
        return self

    def _listen(self, port):
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", port))
        ls.listen(128)
        self._ls = ls
        self.port = ls.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, args=(ls,), daemon=True)
        t.start()
        self._threads.append(t)

    def _unlisten(self):
        """Closes the listener (shutdown first: it wakes the thread blocked in accept) and every
        open connection, as if the node's process had died. Connections are shut down, not
        closed, here: their pump threads still hold them and close them on the EOF (with
        SO_LINGER 0, so the close sends a RST)."""
        ls, self._ls = self._ls, None
        if ls is not None:
            try:
                ls.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            ls.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER0)
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def close(self):
        self._stop = True

        def open_socks():
            with self._lock:
                return list(self._socks)

        if self._ls is None:  # refusing: nothing listens
            self._ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        close_server(self._ls, open_socks, self._threads)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def _accept_loop(self, ls):
        while not self._stop:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._socks.add(c)
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, client):
        upstream = None
        try:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.mode == "drop":
                self._black_hole(client)
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _rst(client)
                return
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._socks.add(upstream)
            self._pump(client, upstream)
        finally:
            with self._lock:
                self._socks.discard(client)
                self._socks.discard(upstream)
            for s in (client, upstream):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass

    def _black_hole(self, client):
        client.settimeout(0.1)
        while not self._stop:
            try:
                if not client.recv(65536):
                    return
            except socket.timeout:
                continue
            except OSError:
                return

    def _pump(self, client, upstream):
        sent = {"up": 0, "down": 0}  # per connection, for reset_after
        peer = {client: upstream, upstream: client}
        direction = {client: "up", upstream: "down"}
        open_ = {client, upstream}
        while open_ and not self._stop:
            if self.mode == "stall":
                time.sleep(0.05)
                continue
            r, _, _ = select.select(list(open_), [], [], 0.05)
            for s in r:
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    open_.discard(s)
                    try:
                        peer[s].shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    continue
                if not self._forward(data, peer[s], direction[s], client, upstream, sent):
                    return

    def _forward(self, data, dst, d, client, upstream, sent):
        """Sends data according to the mode; returns False when the connection was reset."""
        mode = self.mode
        try:
            if mode == "delay":
                time.sleep(self.delay_ms / 1000.0)
            if mode == "reset" and d == self.reset_dir:
                room = self.reset_after - sent[d]
                if len(data) >= room:
                    if room > 0:
                        dst.sendall(data[:room])
                        sent[d] += room
                        self.forwarded[d] += room
                    time.sleep(0.05)  # let the forwarded bytes arrive before the RST
                    _rst(client)
                    _rst(upstream)
                    return False
            if mode == "onebyte":
                for i in range(len(data)):
                    dst.sendall(data[i : i + 1])
                    if self.pause:
                        time.sleep(self.pause)
            else:
                dst.sendall(data)
            sent[d] += len(data)
            self.forwarded[d] += len(data)
        except OSError:
            return False
        return True


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("target", help="host:port to forward to")
    ap.add_argument("--mode", default="pass", choices=MODES)
    ap.add_argument("--delay-ms", type=int, default=0)
    ap.add_argument("--reset-after", type=int, default=0)
    ap.add_argument("--reset-dir", default="down", choices=("up", "down"))
    a = ap.parse_args()
    host, port = a.target.rsplit(":", 1)
    relay = Relay((host, int(port)), a.mode, a.delay_ms, a.reset_after, a.reset_dir).start()
    print(f"relay listening on 127.0.0.1:{relay.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        relay.close()
