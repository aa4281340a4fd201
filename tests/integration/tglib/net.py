"""Ports, addresses and small socket utilities shared by the fixtures."""

import socket
import time


def free_port():
    """A TCP port that was free a moment ago on 127.0.0.1 (bind 0, read, close)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def connect(addr, timeout=5.0, rcvbuf=None):
    """Connects to ("host", port) or a unix socket path (str). Returns the socket. rcvbuf sets
    SO_RCVBUF before connecting (a small one makes a slow reader exert backpressure at once)."""
    if isinstance(addr, str):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    try:
        s.connect(addr)
    except BaseException:
        s.close()
        raise
    return s


def can_connect(addr):
    try:
        connect(addr, timeout=0.5).close()
        return True
    except OSError:
        return False


def wait_until(pred, timeout, interval=0.01, what="condition"):
    """Polls pred() until it is true; raises AssertionError naming `what` after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def reset_close(sock):
    """Closes with SO_LINGER 0, so the peer gets a RST instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def close_server(listener, open_socks, threads):
    """Stops a threaded test server: closes its listening socket first (nothing new comes in),
    then shuts down every connection open_socks() still lists (so blocked reads return) and
    joins its threads."""
    try:
        listener.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    listener.close()
    for s in open_socks():
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    for t in threads:
        t.join(timeout=2)
