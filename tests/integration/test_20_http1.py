"""HTTP/1.1 parsing rules end to end (DESIGN §9): what a client sends, what it gets back, and what
the upstream sees (for a rejected request: nothing at all)."""

import time

import pytest

from tglib import Client, build_request, chunked, is_json_error, response, service

LIMITS = {"max_request_line": "1kb", "max_header_bytes": "2kb", "max_headers": 20,
          "max_body": "64kb"}


@pytest.fixture
def tg(proxy, upstream):
    return proxy(upstream, limits=LIMITS)


def rejected(tg, upstream, raw, status, code=None):
    """Sends raw, expects a JSON error with status, a closed connection and an untouched
    upstream. Returns the response."""
    with Client(tg.addr, timeout=5) as c:
        c.send(raw)
        r = c.response()
        is_json_error(r, status, code)
        assert r.closes, f"error {status} without Connection: close: {r!r}"
        assert c.closed_within(2), "connection left open after a fatal parse error"
    assert upstream.requests == [], f"upstream saw a rejected request: {upstream.requests!r}"
    assert upstream.connections == 0
    return r


def ok(tg, raw):
    with Client(tg.addr) as c:
        c.send(raw)
        return c.response()


# --- framing (§9.1-9.3) ---------------------------------------------------------------------

def test_cl_and_te_400(tg, upstream):
    rejected(tg, upstream, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400)


def test_te_and_cl_other_order_400(tg, upstream):
    rejected(tg, upstream, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
             b"Content-Length: 5\r\n\r\n0\r\n\r\n", 400)


@pytest.mark.parametrize("value", [b"abc", b"-1", b"+5", b"1 2", b"0x10", b"5,6", b"",
                                   b"99999999999999999999999"])
def test_bad_content_length_400(tg, upstream, value):
    rejected(tg, upstream, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " + value +
             b"\r\n\r\nhello", 400)


def test_differing_duplicate_content_length_400(tg, upstream):
    rejected(tg, upstream, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
             b"Content-Length: 4\r\n\r\nabcd", 400)


def test_identical_duplicate_content_length_ok(tg, upstream):
    r = ok(tg, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc")
    assert r.status == 200, r
    got = upstream.last
    assert got.body == b"abc"
    assert len(got.headers.get_all("content-length")) <= 2


def test_te_gzip_alone_400(tg, upstream):
    # RFC 9112 §6.3: chunked is not the final coding of a request -> 400 (DESIGN §9.2)
    rejected(tg, upstream, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nxx", 400)


def test_te_unknown_coding_501(tg, upstream):
    rejected(tg, upstream, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: x-custom, chunked"
             b"\r\n\r\n0\r\n\r\n", 501)


def test_te_gzip_chunked_not_silently_stripped(tg, upstream):
    """A body that is gzip-coded under chunked must not reach the upstream as if it were plain:
    either refuse it (501, tollgate does not decode gzip) or forward the coding."""
    body = chunked(b"\x1f\x8b\x08\x00fake-gzip")
    with Client(tg.addr) as c:
        c.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" + body)
        r = c.response()
    if r.status == 501:
        is_json_error(r, 501)
        assert upstream.requests == []
        return
    assert r.status == 200, r
    te = ",".join(upstream.last.headers.get_all("transfer-encoding")).lower()
    assert "gzip" in te, (f"upstream got Transfer-Encoding {te!r}: the gzip coding was dropped "
                          f"and the coded bytes arrive as the plain body")


def test_te_on_http10_400(tg, upstream):
    rejected(tg, upstream, b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"0\r\n\r\n", 400)


def test_te_chunked_twice_400(tg, upstream):
    rejected(tg, upstream, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400)


def test_bad_chunk_size_400(tg, upstream):
    with Client(tg.addr) as c:
        c.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"zz\r\nab\r\n0\r\n\r\n")
        r = c.response()
        is_json_error(r, 400)
        assert c.closed_within(2)


# --- header syntax (§9.5-9.7) -----------------------------------------------------------------

def test_obs_fold_400(tg, upstream):
    rejected(tg, upstream, b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: one\r\n two\r\n\r\n", 400)


def test_obs_fold_tab_400(tg, upstream):
    rejected(tg, upstream, b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: one\r\n\ttwo\r\n\r\n", 400)


def test_bare_lf_everywhere_400(tg, upstream):
    rejected(tg, upstream, b"GET / HTTP/1.1\nHost: a\n\n", 400)


def test_bare_lf_in_header_400(tg, upstream):
    rejected(tg, upstream, b"GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n", 400)


def test_bare_cr_400(tg, upstream):
    rejected(tg, upstream, b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", 400)


def test_space_before_colon_400(tg, upstream):
    rejected(tg, upstream, b"GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n", 400)


def test_invalid_field_name_400(tg, upstream):
    rejected(tg, upstream, b"GET / HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n", 400)


def test_nul_in_value_400(tg, upstream):
    rejected(tg, upstream, b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", 400)


def test_missing_host_on_http11_400(tg, upstream):
    rejected(tg, upstream, b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n", 400)


def test_missing_host_on_http10_ok(tg, upstream):
    r = ok(tg, b"GET /ten HTTP/1.0\r\n\r\n")
    assert r.status == 200, r
    assert upstream.last.target == "/ten"


def test_two_hosts_400(tg, upstream):
    rejected(tg, upstream, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400)


def test_invalid_host_400(tg, upstream):
    rejected(tg, upstream, b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400)


def test_connection_naming_content_length_400(tg, upstream):
    rejected(tg, upstream, b"POST / HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\n"
             b"Content-Length: 2\r\n\r\nhi", 400)


# --- request line (§9.8) ----------------------------------------------------------------------

@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/3.0", b"HTTP/1.2"])
def test_unsupported_version_505(tg, upstream, version):
    rejected(tg, upstream, b"GET / " + version + b"\r\nHost: a\r\n\r\n", 505)


@pytest.mark.parametrize("line", [b"GET /  HTTP/1.1", b"GET / HTTP/1.1 ", b"GET", b"GET /",
                                  b"G@T / HTTP/1.1", b"GET / http/1.1", b"GET /\x7f HTTP/1.1",
                                  b"GET /\xc3\xa9 HTTP/1.1"])
def test_malformed_request_line_400(tg, upstream, line):
    rejected(tg, upstream, line + b"\r\nHost: a\r\n\r\n", 400)


def test_connect_is_not_tunnelled(tg, upstream):
    with Client(tg.addr) as c:
        c.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        r = c.response()
    assert r.status in (400, 405, 501), r
    is_json_error(r, r.status)
    assert upstream.requests == []


def test_asterisk_only_with_options(tg, upstream):
    rejected(tg, upstream, b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400)


# --- limits (§4) -----------------------------------------------------------------------------

def test_long_request_line_414(tg, upstream):
    rejected(tg, upstream, b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414)


def test_request_line_just_under_limit_ok(tg, upstream):
    path = b"/" + b"a" * 900
    r = ok(tg, b"GET " + path + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert r.status == 200, r
    assert upstream.last.target == path.decode()


def test_long_request_line_without_crlf_414(tg, upstream):
    """The limit holds before the line ends: a client cannot make tollgate buffer forever."""
    with Client(tg.addr) as c:
        c.send(b"GET /" + b"a" * 4000)
        r = c.response()
        is_json_error(r, 414)


def test_too_many_headers_431(tg, upstream):
    hdrs = b"".join(b"X-H%d: v\r\n" % i for i in range(25))
    rejected(tg, upstream, b"GET / HTTP/1.1\r\nHost: a\r\n" + hdrs + b"\r\n", 431)


def test_header_section_too_large_431(tg, upstream):
    rejected(tg, upstream, b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 3000 + b"\r\n\r\n", 431)


def test_headers_at_limit_ok(tg, upstream):
    hdrs = b"".join(b"X-H%d: v\r\n" % i for i in range(18))  # + Host = 19 <= 20
    r = ok(tg, b"GET / HTTP/1.1\r\nHost: a\r\n" + hdrs + b"\r\n")
    assert r.status == 200, r


def test_body_over_max_body_413_before_reading(tg, upstream):
    """The limit is checked on Content-Length: the answer comes before the body is sent, and the
    upstream never hears of the request."""
    with Client(tg.addr) as c:
        c.send(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % (65 * 1024))
        r = c.response()
        is_json_error(r, 413)
        assert c.closed_within(2)
    time.sleep(0.1)
    assert upstream.requests == [] and upstream.connections == 0


def test_body_at_max_body_ok(tg, upstream):
    body = b"x" * (64 * 1024)
    r = ok(tg, build_request("POST", "/up", body=body))
    assert r.status == 200, r
    assert upstream.last.body_length == len(body)


def test_expect_continue_too_large_413_without_100(tg, upstream):
    with Client(tg.addr) as c:
        c.send(b"POST /up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
               b"Content-Length: 1000000\r\n\r\n")
        r = c.response(interim=True)
    is_json_error(r, 413)
    assert upstream.requests == []


def test_route_max_body_overrides_limit(proxy, upstream):
    routes = [{"name": "small", "match": {"path": "/small/"}, "service": "backend",
               "max_body": "1kb"},
              {"name": "all", "match": {"path": "/"}, "service": "backend"}]
    tg = proxy(upstream, routes=routes, limits=LIMITS)
    with Client(tg.addr) as c:
        c.send(b"POST /small/x HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n")
        is_json_error(c.response(), 413)
    r = ok(tg, build_request("POST", "/other", body=b"y" * 2000))
    assert r.status == 200, r
    assert [q.target for q in upstream.requests] == ["/other"]


def test_chunked_body_over_limit_413(tg, upstream):
    """A chunked body has no length up front: tollgate counts while streaming and answers 413 when
    it passes the limit (the client sends 1 MiB against a 64 KiB limit)."""
    import threading

    piece = chunked(b"z" * 16384)[:-5]  # one 16 KiB chunk, without the last-chunk
    with Client(tg.addr, timeout=5) as c:
        c.send(b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        errors = []

        def pump():
            try:
                for _ in range(64):
                    c.send(piece)
                c.send(b"0\r\n\r\n")
            except OSError as e:
                errors.append(e)

        t = threading.Thread(target=pump, daemon=True)
        t.start()
        r = c.response()
        t.join(5)
    is_json_error(r, 413)
    # whatever reached the upstream, it must not be a complete 1 MiB request
    for q in upstream.requests:
        assert q.body_length <= 64 * 1024 + 64 * 1024, q


def test_chunked_body_limit_counts_data_bytes(proxy, upstream):
    """The limit applies to the data, not to the chunk framing around it: a body of exactly
    max_body bytes in many small chunks passes, one byte more is refused before it reaches the
    node."""
    tg = proxy(upstream, limits={"max_body": "4kb"})
    head = b"POST /exact HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    pieces = [b"q" * 16] * 256  # 4096 bytes of data, about 6 KiB on the wire
    r = ok(tg, head + chunked(*pieces))
    assert r.status == 200, r
    assert upstream.last.body == b"q" * 4096
    with Client(tg.addr, timeout=5) as c:
        c.send(head + chunked(*(pieces + [b"!"])))
        is_json_error(c.response(), 413)
    assert len(upstream.requests) == 1


def test_chunked_body_under_limit_ok(tg, upstream):
    body = chunked(b"a" * 1000, b"b" * 2000, b"c" * 3)
    r = ok(tg, b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    assert r.status == 200, r
    got = upstream.last
    assert got.body == b"a" * 1000 + b"b" * 2000 + b"c" * 3
    assert got.chunked or got.header("content-length") == "3003", got


# --- timeouts ----------------------------------------------------------------------------------

def test_header_timeout_408(proxy, upstream):
    tg = proxy(upstream, limits={"header_timeout": "500ms", "idle_timeout": "5s"})
    with Client(tg.addr, timeout=5) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-Half: ")
        t0 = time.monotonic()
        r = c.response()
        elapsed = time.monotonic() - t0
        is_json_error(r, 408)
        assert c.closed_within(2)
    assert 0.4 <= elapsed < 2.5, f"408 after {elapsed:.2f}s, header_timeout is 0.5s"
    assert upstream.requests == []


def test_header_timeout_is_absolute(proxy, upstream):
    """Trickling one byte every 100 ms does not extend the deadline (slowloris)."""
    tg = proxy(upstream, limits={"header_timeout": "600ms", "idle_timeout": "5s"})
    with Client(tg.addr, timeout=5) as c:
        t0 = time.monotonic()
        got = None
        for b in b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"s" * 100:
            try:
                c.send(bytes([b]))
            except OSError:
                break
            if c.pending(0.1):
                break
        got = c.response()
        elapsed = time.monotonic() - t0
    is_json_error(got, 408)
    assert elapsed < 2.5, f"header deadline extended by trickled bytes: 408 after {elapsed:.2f}s"


def test_idle_keepalive_closed_after_idle_timeout(proxy, upstream):
    tg = proxy(upstream, limits={"idle_timeout": "700ms", "header_timeout": "5s"})
    with Client(tg.addr) as c:
        assert c.get("/").status == 200
        t0 = time.monotonic()
        assert c.closed_within(3), "idle keep-alive connection was not closed"
        elapsed = time.monotonic() - t0
        assert c.reader.buf == b"", f"bytes sent on an idle connection: {c.reader.buf!r}"
    assert 0.5 <= elapsed < 2.5, f"closed after {elapsed:.2f}s, idle_timeout is 0.7s"


def test_idle_fresh_connection_closed(proxy, upstream):
    tg = proxy(upstream, limits={"idle_timeout": "500ms", "header_timeout": "5s"})
    with Client(tg.addr) as c:
        t0 = time.monotonic()
        assert c.closed_within(3)
        assert time.monotonic() - t0 >= 0.4


def test_client_timeouts_do_not_cut_a_slow_upstream(proxy, upstreams):
    """While the upstream takes its time (within timeouts.response), neither the client's
    header_timeout nor its idle_timeout may close the connection: the head is complete and the
    client is waiting for us, not the other way round."""
    def slow(req, conn):
        time.sleep(1.2)
        return response(200, b"late")

    up = upstreams(slow)
    tg = proxy(up, limits={"idle_timeout": "400ms", "header_timeout": "500ms"},
               svc={"response": "3s"})
    with Client(tg.addr) as c:
        r = c.get("/")
    assert r.status == 200 and r.body == b"late", r


def test_body_timeout_does_not_cut_a_slow_upstream(proxy, upstreams):
    """Same with a body that arrived in two parts (so the body timer was armed): once the body is
    complete, only timeouts.response governs the wait."""
    def slow(req, conn):
        time.sleep(1.2)
        return response(200, req.body)

    up = upstreams(slow)
    tg = proxy(up, limits={"idle_timeout": "400ms", "header_timeout": "500ms",
                           "body_timeout": "500ms"}, svc={"response": "3s"})
    with Client(tg.addr) as c:
        c.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello")
        time.sleep(0.2)
        c.send(b"world")
        r = c.response()
    assert r.status == 200 and r.body == b"helloworld", r


# --- connection handling -------------------------------------------------------------------------

def test_keep_alive_many_requests_one_connection(tg, upstream):
    with Client(tg.addr) as c:
        for i in range(5):
            r = c.get(f"/ka/{i}")
            assert r.status == 200, r
            assert r.json()["target"] == f"/ka/{i}"
            assert not r.closes
    assert [q.target for q in upstream.requests] == [f"/ka/{i}" for i in range(5)]


def test_connection_close_honoured(tg, upstream):
    with Client(tg.addr) as c:
        r = c.get("/", headers=[("Connection", "close")])
        assert r.status == 200
        assert r.closes
        assert c.closed_within(2)


def test_http10_closes_by_default(tg, upstream):
    with Client(tg.addr) as c:
        c.send(b"GET /old HTTP/1.0\r\nHost: a\r\n\r\n")
        r = c.response()
        assert r.status == 200, r
        assert r.version == "HTTP/1.1"
        assert c.closed_within(2)


def test_http10_keep_alive(tg, upstream):
    with Client(tg.addr) as c:
        for i in range(2):
            c.send(b"GET /ka10 HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
            r = c.response()
            assert r.status == 200, r
            assert "keep-alive" in r.header("connection", "").lower(), r


def test_pipelining_in_order(tg, upstream):
    raw = b"".join(build_request("GET", f"/p/{i}") for i in range(3))
    with Client(tg.addr) as c:
        c.send(raw)
        targets = [c.response().json()["target"] for _ in range(3)]
    assert targets == ["/p/0", "/p/1", "/p/2"]


def test_pipelining_with_bodies(tg, upstream):
    raw = (build_request("POST", "/b/0", body=b"zero") +
           build_request("GET", "/b/1") +
           b"POST /b/2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
           chunked(b"two", b"!") +
           build_request("POST", "/b/3", body=b"three"))
    with Client(tg.addr) as c:
        c.send(raw)
        docs = [c.response().json() for _ in range(4)]
    assert [d["target"] for d in docs] == ["/b/0", "/b/1", "/b/2", "/b/3"]
    assert [q.body for q in upstream.requests] == [b"zero", b"", b"two!", b"three"]


def test_pipelined_error_stops_the_connection(tg, upstream):
    raw = build_request("GET", "/first") + b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n" + \
        build_request("GET", "/never")
    with Client(tg.addr) as c:
        c.send(raw)
        assert c.response().json()["target"] == "/first"
        is_json_error(c.response(), 400)
        assert c.closed_within(2)
    assert [q.target for q in upstream.requests] == ["/first"]


def test_expect_100_continue(tg, upstream):
    with Client(tg.addr) as c:
        c.send(b"POST /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        interim = c.response(interim=True)
        assert interim.status == 100, interim
        assert c.pending(0.2) == b"", "final response before the body was sent"
        c.send(b"hello")
        r = c.response()
    assert r.status == 200, r
    got = upstream.last
    assert got.body == b"hello"
    assert not got.headers.has("expect"), got


def test_expect_100_continue_body_already_sent(tg, upstream):
    """A client that does not wait for 100 gets the final response only (no stray 100 before it
    is fine, but the exchange must complete and stay in sync)."""
    with Client(tg.addr) as c:
        c.send(b"POST /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n"
               b"\r\nhello")
        r = c.response()
        assert r.status == 200, r
        assert c.get("/next").json()["target"] == "/next"
    assert upstream.requests[0].body == b"hello"


def test_expect_other_417(tg, upstream):
    rejected(tg, upstream, b"POST / HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\nContent-Length: 1\r\n"
             b"\r\nx", 417)


def test_head_has_no_body(proxy, upstreams):
    def h(req, conn):
        if req.method == "HEAD":
            return b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nX-Kind: head\r\n\r\n"
        return response(200, b"full body")

    up = upstreams(h)
    tg = proxy(up)
    with Client(tg.addr) as c:
        c.request("HEAD", "/h")
        r = c.response(head_request=True)
        assert r.status == 200
        assert r.header("content-length") == "1234"
        assert r.header("x-kind") == "head"
        # the next response on the same connection must start right after the head
        r2 = c.get("/after")
        assert r2.status == 200 and r2.body == b"full body", r2
        assert c.pending(0.1) == b""


def test_absolute_form_target(tollgate, upstreams):
    a, b = upstreams(), upstreams()
    routes = [{"name": "ex", "match": {"host": "example.com"}, "service": "a"},
              {"name": "other", "match": {"host": "other.test"}, "service": "b"}]
    tg = tollgate(routes=routes, services={"a": service(a.url), "b": service(b.url)})
    with Client(tg.addr) as c:
        c.send(b"GET http://example.com/x?q=1 HTTP/1.1\r\nHost: other.test\r\n\r\n")
        r = c.response()
    assert r.status == 200, r
    assert a.requests and not b.requests, "absolute-form authority did not decide the route"
    got = a.last
    assert got.target == "/x?q=1"
    assert got.header("x-forwarded-host") == "example.com"


def test_absolute_form_empty_path(tg, upstream):
    r = ok(tg, b"GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert r.status == 200, r
    assert upstream.last.target == "/"


@pytest.mark.parametrize("sent,forwarded", [
    ("/a/../b", "/b"),
    ("/a/./b", "/a/b"),
    ("/a//b", "/a/b"),
    ("/a/b/../../c", "/c"),
    ("/a/%2e%2e/b", "/b"),
    ("/%7Euser/x", "/~user/x"),
    ("/a/b/..?q=/../x", "/a/?q=/../x"),
])
def test_path_normalisation(tg, upstream, sent, forwarded):
    r = ok(tg, build_request("GET", sent))
    assert r.status == 200, r
    assert upstream.last.target == forwarded


@pytest.mark.parametrize("path", ["/../../etc/passwd", "/..", "/a/../../etc", "/%2e%2e/etc",
                                  "/a\\..\\b", "/a%00b"])
def test_path_never_escapes_root(tg, upstream, path):
    """Dot-segments that climb above the root are refused (or normalised under it) — the upstream
    never sees a '..' segment."""
    with Client(tg.addr) as c:
        c.send(build_request("GET", path))
        r = c.response()
    if r.status == 200:
        target = upstream.last.target.split("?")[0]
        assert ".." not in target.split("/") and "%2e" not in target.lower(), target
    else:
        is_json_error(r, 400)
        assert upstream.requests == []


def test_routing_uses_normalised_path(proxy, upstream):
    """/public/../secret must be routed (and forwarded) as /secret."""
    routes = [{"name": "public", "match": {"path": "/public/"}, "service": "backend"}]
    tg = proxy(upstream, routes=routes)
    with Client(tg.addr) as c:
        r = c.get("/public/../secret")
        is_json_error(r, 404)
        r = c.get("/public/x/../y")
        assert r.status == 200
    assert [q.target for q in upstream.requests] == ["/public/y"]


def test_byte_at_a_time_request(tg, upstream, relays):
    relay = relays(tg.addr, "onebyte", pause=0.0005)
    body = b"0123456789" * 5
    raw = build_request("POST", "/slow", headers=[("X-A", "b")], body=body) + \
        build_request("GET", "/slow2")
    with Client(relay.addr, timeout=10) as c:
        c.send(raw)
        r1 = c.response()
        r2 = c.response()
    assert r1.status == 200 and r1.json()["target"] == "/slow", r1
    assert r2.status == 200 and r2.json()["target"] == "/slow2", r2
    assert upstream.requests[0].body == body


def test_byte_at_a_time_chunked_request(tg, upstream):
    raw = b"POST /ch HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + \
        chunked(b"hello ", b"world")
    with Client(tg.addr, timeout=10) as c:
        c.send_slowly(raw, step=1, pause=0.0005)
        r = c.response()
    assert r.status == 200, r
    assert upstream.last.body == b"hello world"


def test_error_responses_carry_request_id(tg, upstream):
    with Client(tg.addr) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: client-id-77\r\nBad Name: x\r\n\r\n")
        r = c.response()
    err = is_json_error(r, 400)
    # the head was invalid, so its X-Request-Id cannot be trusted; but some id must be there
    assert len(err["request_id"]) >= 8


def test_404_carries_incoming_request_id(proxy, upstream):
    tg = proxy(upstream, routes=[{"name": "only", "match": {"path": "/only"},
                                  "service": "backend"}])
    with Client(tg.addr) as c:
        r = c.get("/nope", headers=[("X-Request-Id", "abc-123")])
    err = is_json_error(r, 404)
    assert err["request_id"] == "abc-123"
