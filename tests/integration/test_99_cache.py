"""The response cache (issue 7), end to end against scripted upstreams: hits and misses with X-Cache
and Age, Cache-Control and Expires, conditional requests answered 304 from the cache, requests
and responses that must not be stored, Vary, coalescing (a thundering herd costs one upstream
request), stale_if_error with the backend gone, purge, and the cache's metrics.

Each test prints its measurements with -s (a `[title] k=v, ...` line).
"""

import socket
import threading
import time

from tglib.client import Client, get
from tglib.net import wait_until
from tglib.upstream import chunked_response, response


def report(title, **numbers):
    print(f"\n[{title}] " + ", ".join(f"{k}={v}" for k, v in numbers.items()))


def cached(proxy, target, cache=None, **cfg):
    routes = [{"name": "site", "match": {"path": "/"}, "service": "backend",
               "cache": cache if cache is not None else {}}]
    return proxy(target, routes=routes, **cfg)


def counting(body=b"hello", headers=(("Cache-Control", "max-age=60"),), delay=0.0, status=200):
    """A handler answering every request the same way; .count counts them."""
    state = {"n": 0}

    def handler(req, conn):
        state["n"] += 1
        if delay:
            time.sleep(delay)
        hdrs = list(headers(req) if callable(headers) else headers)
        return response(status, body(req) if callable(body) else body, headers=hdrs)

    handler.state = state
    return handler


def test_hit_after_miss_with_age_and_x_cache(proxy, upstreams):
    h = counting(headers=(("Cache-Control", "max-age=60"), ("ETag", '"v1"'),
                          ("Content-Type", "text/plain")))
    up = upstreams(h)
    tg = cached(proxy, up)
    r1 = get(tg.addr, "/a.txt")
    time.sleep(1.1)
    r2 = get(tg.addr, "/a.txt")
    r3 = get(tg.addr, "/a.txt", method="HEAD")
    report("hit", first=r1.header("x-cache"), second=r2.header("x-cache"), age=r2.header("age"),
           upstream=h.state["n"])
    assert r1.status == 200 and r1.body == b"hello" and r1.header("x-cache") == "MISS"
    assert r2.status == 200 and r2.body == b"hello" and r2.header("x-cache") == "HIT"
    assert int(r2.header("age")) >= 1
    assert r2.header("content-type") == "text/plain" and r2.header("etag") == '"v1"'
    assert r2.header("content-length") == "5" and r2.header("x-request-id")
    assert r3.status == 200 and r3.body == b"" and r3.header("x-cache") == "HIT"
    assert h.state["n"] == 1


def test_conditional_requests_get_304_from_the_cache(proxy, upstreams):
    h = counting(headers=(("Cache-Control", "max-age=60"), ("ETag", '"abc"'),
                          ("Last-Modified", "Tue, 15 Nov 1994 12:45:26 GMT")))
    tg = cached(proxy, upstreams(h))
    get(tg.addr, "/c")
    r = get(tg.addr, "/c", headers=[("If-None-Match", 'W/"abc", "zzz"')])
    assert r.status == 304 and r.body == b"" and r.header("etag") == '"abc"', r
    r = get(tg.addr, "/c", headers=[("If-Modified-Since", "Tue, 15 Nov 1994 12:45:26 GMT")])
    assert r.status == 304, r
    r = get(tg.addr, "/c", headers=[("If-None-Match", '"other"')])
    assert r.status == 200 and r.body == b"hello"
    assert h.state["n"] == 1


def test_what_is_not_stored_or_not_served(proxy, upstreams):
    def headers(req):
        path = req.target
        if path.startswith("/nostore"):
            return [("Cache-Control", "no-store")]
        if path.startswith("/private"):
            return [("Cache-Control", "private, max-age=60")]
        if path.startswith("/cookie"):
            return [("Cache-Control", "max-age=60"), ("Set-Cookie", "a=b")]
        if path.startswith("/vary-star"):
            return [("Cache-Control", "max-age=60"), ("Vary", "*")]
        if path.startswith("/zero"):
            return [("Cache-Control", "max-age=0")]
        if path.startswith("/expires"):
            return [("Expires", "Thu, 01 Jan 2099 00:00:00 GMT"),
                    ("Date", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()))]
        return []  # the route's ttl applies
    h = counting(headers=headers)
    tg = cached(proxy, upstreams(h), {"ttl": "30s"})
    results = {}
    for path in ("/nostore", "/private", "/cookie", "/vary-star", "/zero", "/expires", "/plain"):
        xs = [get(tg.addr, path).header("x-cache") for _ in range(2)]
        results[path] = xs
    auth = [get(tg.addr, "/plain", headers=[("Authorization", "Bearer x")]).header("x-cache")]
    post = Client(tg.addr).__enter__().get("/plain", method="POST", body=b"x")
    report("not stored", **{k.strip("/"): v for k, v in results.items()}, auth=auth)
    for path in ("/nostore", "/private", "/cookie", "/vary-star", "/zero"):
        assert results[path] == ["MISS", "MISS"], (path, results[path])
    assert results["/expires"] == ["MISS", "HIT"] and results["/plain"] == ["MISS", "HIT"]
    assert auth == [None], "a request with credentials is not served from the shared cache"
    assert post.header("x-cache") is None
    r = get(tg.addr, "/plain", headers=[("Cache-Control", "no-cache")])
    assert r.header("x-cache") == "MISS", "no-cache from the client goes upstream"


def test_vary_keeps_one_copy_per_header_value(proxy, upstreams):
    h = counting(body=lambda req: (req.header("accept-language") or "none").encode(),
                 headers=(("Cache-Control", "max-age=60"), ("Vary", "Accept-Language")))
    tg = cached(proxy, upstreams(h))
    got = []
    for lang in ("en", "fr", "en", "fr", None):
        hdrs = [("Accept-Language", lang)] if lang else []
        r = get(tg.addr, "/v", headers=hdrs)
        got.append((r.body.decode(), r.header("x-cache")))
    report("vary", got=got, upstream=h.state["n"])
    assert got[:4] == [("en", "MISS"), ("fr", "MISS"), ("en", "HIT"), ("fr", "HIT")], got
    assert got[4] == ("none", "MISS")
    assert h.state["n"] == 3


def test_thundering_herd_costs_one_upstream_request(proxy, upstreams):
    """Concurrent clients ask for the same uncached 200 KiB file from a backend that takes 200 ms:
    one upstream request; every client gets the whole body."""
    body = bytes(range(256)) * 800  # 200 KiB
    h = counting(body=body, delay=0.2)
    up = upstreams(h)
    tg = cached(proxy, up, workers=2, limits={"max_connections": 4096})
    clients = 1000
    results = [None] * clients
    start = threading.Barrier(clients + 1)

    def one(i):
        start.wait()
        try:
            with Client(tg.addr, timeout=30) as c:
                r = c.get("/big.bin")
            results[i] = (r.status, len(r.body), r.body == body, r.header("x-cache"))
        except Exception as e:  # noqa: BLE001
            results[i] = ("error", str(e))
    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    start.wait()
    for t in threads:
        t.join(60)
    took = time.monotonic() - t0
    kinds = {}
    for r in results:
        kinds[r[3] if r and r[0] == 200 else str(r)] = kinds.get(
            r[3] if r and r[0] == 200 else str(r), 0) + 1
    report("herd", clients=clients, upstream_requests=h.state["n"], seconds=round(took, 2),
           results=kinds)
    assert all(r and r[0] == 200 and r[1] == len(body) and r[2] for r in results), kinds
    assert h.state["n"] == 1, h.state["n"]


def test_stale_if_error_serves_while_the_backend_is_down(proxy, upstreams):
    h = counting(headers=(("Cache-Control", "max-age=1"),))
    up = upstreams(h)
    tg = cached(proxy, up, {"stale_if_error": "1m"})
    assert get(tg.addr, "/s").header("x-cache") == "MISS"
    up.close()
    time.sleep(1.2)
    got = [get(tg.addr, "/s") for _ in range(3)]
    report("stale if error", got=[(r.status, r.header("x-cache")) for r in got])
    assert all(r.status == 200 and r.body == b"hello" and r.header("x-cache") == "STALE"
               for r in got), got


def test_cache_metrics(proxy, upstreams):
    tg = cached(proxy, upstreams(counting()))
    for _ in range(3):
        get(tg.addr, "/m")
    get(tg.addr, "/m", method="POST")
    m = tg.metrics()
    report("metrics", hit=m.value("tollgate_cache_requests_total", route="site", result="hit"),
           miss=m.value("tollgate_cache_requests_total", route="site", result="miss"),
           bytes=m.value("tollgate_cache_bytes"), entries=m.value("tollgate_cache_entries"))
    assert m.value("tollgate_cache_requests_total", route="site", result="hit") == 2
    assert m.value("tollgate_cache_requests_total", route="site", result="miss") == 1
    assert m.value("tollgate_cache_requests_total", route="site", result="bypass") == 1
    assert m.value("tollgate_cache_entries") == 1 and m.value("tollgate_cache_bytes") > 5


def purge(tg, doc):
    import json as _json
    with Client(tg.admin_addr, timeout=5) as c:
        r = c.get("/cache/purge", host="admin", method="POST", body=_json.dumps(doc).encode(),
                  headers=[("Content-Type", "application/json")])
    return r.status, (_json.loads(r.body) if r.body else None)


def test_purge_by_key_host_and_prefix(proxy, upstreams):
    h = counting()
    tg = cached(proxy, upstreams(h))
    paths = ["/a/1", "/a/2", "/b/1"]
    for host in ("one.test", "two.test"):
        for p in paths:
            get(tg.addr, p, host=host)
    assert h.state["n"] == 6

    def state(host, p):
        return get(tg.addr, p, host=host).header("x-cache")
    by_key = purge(tg, {"key": "GET one.test /a/1"})
    by_prefix = purge(tg, {"prefix": "one.test/a/"})
    by_host = purge(tg, {"host": "two.test"})
    bad = purge(tg, {"path": "/a"})
    report("purge", key=by_key, prefix=by_prefix, host=by_host, bad=bad[0])
    assert by_key == (200, {"purged": 1}) and by_prefix == (200, {"purged": 1})
    assert by_host == (200, {"purged": 3}) and bad[0] == 400
    assert state("one.test", "/b/1") == "HIT"
    assert [state("one.test", p) for p in ("/a/1", "/a/2")] == ["MISS", "MISS"]
    assert state("two.test", "/a/1") == "MISS"


def test_conditional_miss_fetches_the_whole_response(proxy, upstreams):
    h = counting(headers=(("Cache-Control", "max-age=60"), ("ETag", '"e"')))
    up = upstreams(h)
    tg = cached(proxy, up)
    r = get(tg.addr, "/cm", headers=[("If-None-Match", '"e"')])
    assert r.status == 200 and r.body == b"hello", "a miss answers with the whole response"
    assert up.last.header("if-none-match") is None, "the node is asked for the whole response"
    assert get(tg.addr, "/cm", headers=[("If-None-Match", '"e"')]).status == 304


def test_chunked_responses_are_stored_decoded(proxy, upstreams):
    state = {"n": 0}

    def handler(req, conn):
        state["n"] += 1
        size = 3000 if req.target == "/big" else 10
        return chunked_response([b"a" * size, b"b" * size, b"c" * size],
                                headers=[("Cache-Control", "max-age=60")])
    tg = proxy(upstreams(handler), routes=[{"name": "site", "match": {"path": "/"},
                                           "service": "backend", "cache": {}}],
               cache={"max_object": "8kb"})
    first = get(tg.addr, "/c")
    second = get(tg.addr, "/c")
    big = [get(tg.addr, "/big") for _ in range(2)]
    report("chunked", first=first.header("x-cache"), second=second.header("x-cache"),
           length=second.header("content-length"), big=[r.header("x-cache") for r in big],
           upstream=state["n"])
    assert first.body == second.body == b"a" * 10 + b"b" * 10 + b"c" * 10
    assert second.header("x-cache") == "HIT" and second.header("content-length") == "30"
    assert second.header("transfer-encoding") is None
    assert [r.header("x-cache") for r in big] == ["MISS", "MISS"], "9000 bytes > max_object 8kb"
    assert all(len(r.body) == 9000 for r in big)
    assert state["n"] == 3
