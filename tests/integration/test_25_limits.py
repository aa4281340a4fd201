"""Client-side bounds (DESIGN §1.3, §4, §9.16): connection count, slow senders, slow readers."""

import socket
import time

from tglib import Client, http, is_json_error, response
from tglib.net import connect


def test_max_connections_third_gets_503(upstream, proxy):
    tg = proxy(upstream, limits={"max_connections": 2})
    time.sleep(0.2)  # the readiness probes are gone
    with Client(tg.addr) as a, Client(tg.addr) as b:
        assert a.get("/a").status == 200
        with Client(tg.addr) as c:
            r = c.response()  # answered at once, without a request
            assert r.status == 503, r
            assert r.header("content-type", "").startswith("application/json")
            assert r.json()["error"]["code"] == "too_many_connections"
            assert r.json()["error"]["status"] == 503
            assert c.closed_within(2)
        assert b.get("/b").status == 200  # the two admitted connections still work
    # once they are gone there is room again
    time.sleep(0.2)
    with Client(tg.addr) as c:
        assert c.get("/again").status == 200
    assert [q.target for q in upstream.requests] == ["/a", "/b", "/again"]


def test_too_many_connections_response_has_request_id(upstream, proxy):
    """DESIGN §5: every response, errors included, carries X-Request-Id and the same id in the
    JSON body."""
    tg = proxy(upstream, limits={"max_connections": 1})
    time.sleep(0.2)
    with Client(tg.addr) as a:
        assert a.get("/").status == 200
        with Client(tg.addr) as c:
            is_json_error(c.response(), 503, "too_many_connections")


def test_body_timeout_408(upstreams, proxy):
    up = upstreams()
    tg = proxy(up, limits={"body_timeout": "500ms"})
    with Client(tg.addr) as c:
        c.send(b"POST /slow-body HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789")
        t0 = time.monotonic()
        r = c.response()
        elapsed = time.monotonic() - t0
        is_json_error(r, 408)
        assert c.closed_within(2)
    assert 0.4 <= elapsed < 2.5, f"408 after {elapsed:.2f}s, body_timeout is 0.5s"
    assert up.requests == []  # the upstream never got a complete request


def test_send_timeout_drops_a_client_that_stops_reading(upstreams, proxy):
    size = 64 << 20
    state = {}

    def h(req, conn):
        try:
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            conn.send(b"z" * size)
        except OSError as e:
            state["upstream_error"] = e  # tollgate gave up and closed our connection
            state["at"] = time.monotonic()

    up = upstreams(h)
    tg = proxy(up, limits={"send_timeout": "500ms"}, svc={"response": "10s"})
    s = connect(tg.addr)
    t0 = time.monotonic()
    s.sendall(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
    time.sleep(1.5)  # not reading: tollgate's writes stall, send_timeout expires
    assert "upstream_error" in state, "the transaction was not abandoned after send_timeout"
    assert state["at"] - t0 < 1.5
    # what is left in the socket buffers drains, then the connection ends
    s.settimeout(3)
    got = 0
    closed = False
    try:
        while True:
            data = s.recv(1 << 20)
            if not data:
                closed = True
                break
            got += len(data)
    except (ConnectionResetError, BrokenPipeError):
        closed = True
    except socket.timeout:
        closed = False
    s.close()
    assert closed, f"connection still open after send_timeout; read {got} bytes"
    assert got < size, "the whole response was buffered for a client that did not read"


def test_many_idle_connections_are_cheap(upstream, proxy):
    """Idle connections hold no buffers: 300 of them keep RSS low."""
    tg = proxy(upstream)
    rss0 = tg.status_kb("VmRSS")
    socks = []
    try:
        for _ in range(300):
            socks.append(connect(tg.addr))
        # make them all go through a request once, so buffers were used and given back
        for s in socks[:50]:
            s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        for s in socks[:50]:
            r = http.read_response(http.Reader(s))
            assert r.status == 200
        time.sleep(0.2)
        grown = tg.status_kb("VmRSS") - rss0
    finally:
        for s in socks:
            s.close()
    assert grown < 20 * 1024, f"RSS grew {grown} KiB for 300 idle connections"


def test_large_header_count_within_limits_forwarded(upstream, proxy):
    tg = proxy(upstream, limits={"max_headers": 100, "max_header_bytes": "32kb"})
    hdrs = [(f"X-H{i}", "v" * 100) for i in range(90)]
    with Client(tg.addr) as c:
        r = c.get("/", headers=hdrs)
    assert r.status == 200, r
    got = upstream.last
    for i in range(90):
        assert got.header(f"x-h{i}") == "v" * 100


def test_slow_upstream_response_streams_to_client(upstreams, proxy):
    """Bytes from the node reach the client as they come, not when the response is complete."""
    def h(req, conn):
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nfirst")
        time.sleep(0.8)
        conn.send(b"-last")

    tg = proxy(upstreams(h), svc={"response": "3s"})
    with Client(tg.addr) as c:
        c.request("GET", "/")
        t0 = time.monotonic()
        head = c.reader.read_head()
        assert head.startswith(b"HTTP/1.1 200")
        while len(c.reader.buf) < 5:
            c.reader._fill()
        first = time.monotonic() - t0
        assert bytes(c.reader.buf) == b"first"
        assert first < 0.6, f"first body bytes held back for {first:.2f}s"
        c.reader.read_exact(5, lambda b: None)
        c.reader.read_exact(5, lambda b: None)


def test_upstream_response_larger_than_buffers(upstreams, proxy):
    body = bytes(range(256)) * 4096  # 1 MiB
    tg = proxy(upstreams(lambda req, conn: response(200, body)))
    with Client(tg.addr) as c:
        for _ in range(3):
            assert c.get("/").body == body
