"""Upstream connections (DESIGN §2, §9.13-9.14): the keep-alive pool, what may and may not be
reused, timeouts, and every way a node can fail."""

import time

import pytest

from tglib import Client, build_request, is_json_error, response, service
from tglib.net import free_port, wait_until


def test_pool_reuses_one_connection(upstream, proxy):
    tg = proxy(upstream)
    for i in range(5):
        with Client(tg.addr) as c:  # a new client connection each time
            assert c.get(f"/r{i}").status == 200
    reqs = upstream.requests
    assert upstream.connections == 1, f"expected one pooled connection, upstream saw " \
                                      f"{upstream.connections}"
    assert [q.conn_id for q in reqs] == [reqs[0].conn_id] * 5
    assert [q.seq for q in reqs] == [0, 1, 2, 3, 4]


def test_pool_reuse_across_keepalive_client(upstream, proxy):
    tg = proxy(upstream)
    with Client(tg.addr) as a, Client(tg.addr) as b:
        for i in range(3):
            assert a.get("/a").status == 200
            assert b.get("/b").status == 200
    assert upstream.connections == 1


def test_connection_close_from_upstream_not_reused(upstreams, proxy):
    up = upstreams(lambda req, conn: response(200, b"x", headers=[("Connection", "close")]))
    tg = proxy(up)
    with Client(tg.addr) as c:
        for _ in range(3):
            r = c.get("/")
            assert r.status == 200 and r.body == b"x", r
    assert up.connections == 3
    assert all(q.seq == 0 for q in up.requests)


def test_http10_upstream_not_reused(upstreams, proxy):
    up = upstreams(lambda req, conn: response(200, b"old", version="HTTP/1.0"))
    tg = proxy(up)
    with Client(tg.addr) as c:
        for _ in range(2):
            assert c.get("/").body == b"old"
    assert up.connections == 2


def test_pool_max_idle_zero_disables_pooling(upstream, proxy):
    tg = proxy(upstream, svc={"pool": {"max_idle": 0}})
    with Client(tg.addr) as c:
        for _ in range(3):
            assert c.get("/").status == 200
    assert upstream.connections == 3


def test_pool_idle_timeout_closes_pooled_connection(upstream, proxy):
    tg = proxy(upstream, svc={"pool": {"idle_timeout": "300ms"}})
    with Client(tg.addr) as c:
        assert c.get("/").status == 200
    t0 = time.monotonic()
    wait_until(lambda: upstream.closed_by_peer >= 1, 3, what="tollgate closing the idle pooled "
                                                             "connection")
    assert time.monotonic() - t0 < 2.0
    with Client(tg.addr) as c:
        assert c.get("/").status == 200
    assert upstream.connections == 2


BAD_RESPONSES = {
    "garbage": b"NOT HTTP AT ALL\r\n\r\n",
    "bad_status": b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
    "no_colon": b"HTTP/1.1 200 OK\r\nBad Header\r\nContent-Length: 0\r\n\r\n",
    "obs_fold": b"HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 0\r\n\r\n",
    "cl_and_te": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"0\r\n\r\n",
    "bad_cl": b"HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello",
    "differing_cl": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "bare_lf": b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
    "space_colon": b"HTTP/1.1 200 OK\r\nX-A : b\r\nContent-Length: 0\r\n\r\n",
    "te_gzip": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, foo\r\n\r\nxx",
    "bad_chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("kind", sorted(BAD_RESPONSES))
def test_malformed_response_502_and_connection_closed(upstreams, proxy, kind):
    raw = BAD_RESPONSES[kind]
    up = upstreams(lambda req, conn: raw)
    tg = proxy(up)
    with Client(tg.addr) as c:
        r = c.get("/")
        if kind == "bad_chunk" and r.status == 200:
            # the head was fine and went out before the body turned bad: the only signal left
            # is to close the client connection
            pytest.fail(f"invalid chunked body relayed as a complete response: {r!r}")
        is_json_error(r, 502)
    wait_until(lambda: up.closed_by_peer >= 1, 3,
               what="tollgate closing the upstream connection after a malformed response")
    with Client(tg.addr) as c:
        c.get("/")
    assert up.connections == 2, "a connection with a malformed response was reused"


def test_oversized_response_head_502(upstreams, proxy):
    big = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 1000)
                                            for i in range(200)) + b"Content-Length: 0\r\n\r\n"
    tg = proxy(upstreams(lambda req, conn: big))
    with Client(tg.addr) as c:
        is_json_error(c.get("/"), 502)


def test_connect_refused_502(proxy):
    tg = proxy(f"http://127.0.0.1:{free_port()}")
    with Client(tg.addr) as c:
        t0 = time.monotonic()
        r = c.get("/")
        assert time.monotonic() - t0 < 1.5
        is_json_error(r, 502)
        # either the connection is announced closed and closes, or it stays usable
        if r.closes:
            assert c.closed_within(2)
        else:
            is_json_error(c.get("/"), 502)


def test_response_timeout_504(upstreams, proxy):
    up = upstreams(lambda req, conn: conn.hang())
    tg = proxy(up, svc={"response": "300ms"})
    with Client(tg.addr) as c:
        t0 = time.monotonic()
        r = c.get("/")
        elapsed = time.monotonic() - t0
    is_json_error(r, 504)
    assert 0.25 <= elapsed < 1.5, f"504 after {elapsed:.2f}s, timeouts.response is 0.3s"
    wait_until(lambda: up.hung_closed >= 1, 3, what="the timed-out upstream connection closing")


def test_black_hole_504(upstream, proxy, relays):
    relay = relays(upstream.addr, "drop")
    tg = proxy(relay, svc={"response": "300ms"})
    with Client(tg.addr) as c:
        t0 = time.monotonic()
        r = c.get("/")
        elapsed = time.monotonic() - t0
    is_json_error(r, 504)
    assert elapsed < 1.5
    assert upstream.requests == []


def test_slow_but_in_time_upstream(upstream, proxy, relays):
    relay = relays(upstream.addr, "delay", delay_ms=300)
    tg = proxy(relay, svc={"response": "2s"})
    with Client(tg.addr) as c:
        r = c.get("/delayed")
    assert r.status == 200, r
    assert r.json()["target"] == "/delayed"


def test_response_byte_at_a_time(upstreams, proxy, relays):
    body = b"0123456789abcdef" * 8
    up = upstreams(lambda req, conn: response(200, body, headers=[("X-A", "b")]))
    relay = relays(up.addr, "onebyte", pause=0.0005)
    tg = proxy(relay, svc={"response": "5s"})
    with Client(tg.addr, timeout=10) as c:
        r = c.get("/")
        assert r.status == 200 and r.body == body, r
        assert r.header("x-a") == "b"
        assert c.get("/").body == body


def test_idle_pooled_connection_closed_by_upstream(upstreams, proxy):
    def h(req, conn):
        conn.send(response(200, b"once"))
        conn.close()  # keep-alive announced, but the node closes right after

    up = upstreams(h)
    tg = proxy(up)
    with Client(tg.addr) as c:
        assert c.get("/").body == b"once"
        time.sleep(0.2)
        r = c.get("/")
        assert r.status == 200 and r.body == b"once", r
    assert up.connections == 2


def test_pooled_connection_closed_when_request_arrives_is_retried(upstreams, proxy):
    """The race every pool has: the node closes a kept-alive connection just as a request is sent
    on it. An idempotent request without a body is replayed on a fresh connection."""
    def h(req, conn):
        if req.seq == 1:
            conn.close()  # read the request, close without answering
            return None
        return response(200, f"conn{req.conn_id}".encode())

    up = upstreams(h)
    tg = proxy(up)
    with Client(tg.addr) as c:
        assert c.get("/").body == b"conn1"
        r = c.get("/")
        assert r.status == 200, r
        assert r.body == b"conn2"
    assert [(q.conn_id, q.seq) for q in up.requests] == [(1, 0), (1, 1), (2, 0)]


def test_post_is_not_retried(upstreams, proxy):
    def h(req, conn):
        if req.seq == 1:
            conn.close()
            return None
        return response(200, b"ok")

    up = upstreams(h)
    tg = proxy(up)
    with Client(tg.addr) as c:
        assert c.get("/").status == 200
        c.send(build_request("POST", "/pay", body=b"amount=1"))
        r = c.response()
    is_json_error(r, 502)
    posts = [q for q in up.requests if q.method == "POST"]
    assert len(posts) == 1, f"non-idempotent request replayed: {posts!r}"


def test_upstream_closes_without_answering_502(upstreams, proxy):
    up = upstreams(lambda req, conn: conn.close())
    tg = proxy(up)
    with Client(tg.addr) as c:
        is_json_error(c.get("/"), 502)


def test_upstream_resets_mid_body_closes_client(upstreams, proxy):
    def h(req, conn):
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 100000)
        time.sleep(0.1)
        conn.reset()

    tg = proxy(upstreams(h))
    with Client(tg.addr, timeout=5) as c:
        c.request("GET", "/")
        head = c.reader.read_head()
        assert head.startswith(b"HTTP/1.1 200"), head
        t0 = time.monotonic()
        assert c.closed_within(3), "client connection left hanging after the upstream reset"
        assert time.monotonic() - t0 < 3
        assert len(c.reader.buf) < 1000000


@pytest.mark.parametrize("sent,corked", [(10, True), (40000, True), (10, False)])
def test_upstream_closes_mid_body_closes_client(upstreams, proxy, sent, corked):
    """A truncated Content-Length body must end with a closed client connection. Corked, the
    node's last bytes and its FIN arrive in one segment, so the end of the stream is reported
    together with the data (the case an edge-triggered reader that stops at a short read never
    notices)."""
    def h(req, conn):
        if corked:
            conn.cork()
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * sent)
        conn.close()

    tg = proxy(upstreams(h))
    with Client(tg.addr, timeout=5) as c:
        c.request("GET", "/")
        c.reader.read_head()
        assert c.closed_within(2), \
            f"response truncated after {sent} bytes by the node, but the client connection " \
            f"was left open"
        assert len(c.reader.buf) == sent


def test_relay_reset_mid_body_closes_client(upstreams, proxy, relays):
    body = b"y" * 500000
    up = upstreams(lambda req, conn: response(200, body))
    relay = relays(up.addr, "reset", reset_after=200000, reset_dir="down")
    tg = proxy(relay)
    with Client(tg.addr, timeout=5) as c:
        c.request("GET", "/")
        c.reader.read_head()
        assert c.closed_within(3)
        assert len(c.reader.buf) < len(body)


def test_upstream_closes_mid_chunked_body_closes_client(upstreams, proxy):
    def h(req, conn):
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        time.sleep(0.05)
        conn.close()

    tg = proxy(upstreams(h))
    with Client(tg.addr, timeout=5) as c:
        c.request("GET", "/")
        c.reader.read_head()
        assert c.closed_within(3)
        assert not c.reader.buf.endswith(b"0\r\n\r\n"), "truncated chunked body was terminated"


def test_unix_socket_node(upstreams, proxy, sockdir):
    up = upstreams(unix_path=f"{sockdir}/up.sock")
    tg = proxy(up)
    with Client(tg.addr) as c:
        for i in range(3):
            r = c.get(f"/unix/{i}", host="u.test")
            assert r.status == 200, r
    assert [q.target for q in up.requests] == ["/unix/0", "/unix/1", "/unix/2"]
    assert up.connections == 1
    assert up.last.header("host"), "no Host sent to a unix node"


def test_unix_listener(upstream, tollgate, sockdir):
    path = f"{sockdir}/tg.sock"
    tg = tollgate(listen=[{"addr": f"unix:{path}"}],
                  services={"backend": service(upstream.url)},
                  routes=[{"name": "all", "match": {"path": "/"}, "service": "backend"}])
    assert tg.addr == path
    with Client(path) as c:
        r = c.get("/via-unix")
    assert r.status == 200, r
    assert upstream.last.target == "/via-unix"


def test_upstream_killed_then_back(upstreams, proxy):
    """A node that disappears gives 502s; when it comes back on the same port, requests flow
    again (no stale pooled connection is used)."""
    up = upstreams()
    port = up.port
    tg = proxy(up)
    with Client(tg.addr) as c:
        assert c.get("/").status == 200
    up.close()
    with Client(tg.addr) as c:
        is_json_error(c.get("/"), 502)
    up2 = upstreams(port=port)
    with Client(tg.addr) as c:
        r = c.get("/back")
    assert r.status == 200, r
    assert up2.last.target == "/back"
