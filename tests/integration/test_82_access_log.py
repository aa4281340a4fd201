"""Access log (issue 3): one JSON object per request on stdout with every field typed and
valued; sampling of 1xx-3xx while 4xx, 5xx and slow requests are always kept; off when disabled;
turned on by a reload. Lines are written by a writer thread every ~50 ms, so every check polls
with a deadline, and checks that something is absent wait well past a flush first."""

import calendar
import re
import time

from tglib import Client, build_request, is_sanitized, response, service
from tglib.net import wait_until

TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")
FIELDS = ["ts", "request_id", "trace_id", "route", "method", "host", "path", "status", "bytes_in",
          "bytes_out", "duration_ms", "upstream", "upstream_ms", "client"]
QUIET = 0.4  # several flush intervals of the log writer








def lines_for(tg, n, timeout=5.0):
    """Waits until the access log holds at least n lines; returns them all."""
    return wait_until(lambda: (lambda ls: ls if len(ls) >= n else None)(tg.access_log()),
                      timeout, interval=0.02, what=f"{n} access log lines")


def by_path(lines):
    return {ln["path"]: ln for ln in lines}


def two_routes(upstreams, tollgate, access=None, slow_handler=None, **cfg):
    """Route "fast" (/f/) to an echo node, "slow" (/s/) to slow_handler, "fail" (/x/) to a node
    answering 503; anything else is unrouted (404)."""
    fast = upstreams()
    slow = upstreams(slow_handler) if slow_handler else upstreams()
    bad = upstreams(lambda req, conn: response(503, b"no", reason="Service Unavailable"))
    log = {"access": access} if access is not None else {}
    tg = tollgate(services={"f": service(fast.url), "s": service(slow.url),
                            "x": service(bad.url)},
                  routes=[{"name": "fast", "match": {"path": "/f/"}, "service": "f"},
                          {"name": "slow", "match": {"path": "/s/"}, "service": "s"},
                          {"name": "fail", "match": {"path": "/x/"}, "service": "x"}],
                  log=log, **cfg)
    return tg, fast, slow, bad


def test_every_field_typed_and_valued(upstreams, tollgate):
    tg, fast, _, _ = two_routes(upstreams, tollgate)
    sent = {}
    with Client(tg.addr) as c:
        raw = build_request("GET", "/f/item?q=1&r=%20", host="shop.example")
        c.send(raw)
        r = c.response()
        assert r.status == 200
        sent["/f/item?q=1&r=%20"] = (raw, r)
        raw = build_request("POST", "/f/upload", host="shop.example", body=b"b" * 300)
        c.send(raw)
        r = c.response()
        assert r.status == 200
        sent["/f/upload"] = (raw, r)
        raw = build_request("GET", "/f/own-id", host="shop.example",
                            headers=[("X-Request-Id", "client-chosen.id_42")])
        c.send(raw)
        r = c.response()
        assert r.status == 200 and r.header("x-request-id") == "client-chosen.id_42"
        sent["/f/own-id"] = (raw, r)
        raw = build_request("DELETE", "/unrouted", host="other.example")
        c.send(raw)
        r = c.response()
        assert r.status == 404
        sent["/unrouted"] = (raw, r)
    t_after = time.time()
    lines = by_path(lines_for(tg, 4))
    assert set(lines) == set(sent), lines
    for path, (raw, r) in sent.items():
        ln = lines[path]
        keys = [k for k in FIELDS if k in ln]
        assert list(ln) == keys and set(ln) == set(FIELDS), f"fields of {ln}"
        assert isinstance(ln["ts"], str) and TS_RE.match(ln["ts"]), ln
        ts = calendar.timegm(time.strptime(ln["ts"][:19], "%Y-%m-%dT%H:%M:%S"))
        assert t_after - 10 < ts <= t_after + 1, (ln["ts"], t_after)
        assert ln["request_id"] == r.header("x-request-id"), (ln, r)
        assert HEX32.match(ln["trace_id"]) and ln["trace_id"] != "0" * 32, ln
        assert ln["method"] == raw.split(b" ", 1)[0].decode()
        assert isinstance(ln["status"], int) and ln["status"] == r.status
        assert isinstance(ln["bytes_in"], int) and ln["bytes_in"] == len(raw), (ln, len(raw))
        assert isinstance(ln["bytes_out"], int) and ln["bytes_out"] == len(r.head) + len(r.body)
        assert isinstance(ln["duration_ms"], float) and 0 <= ln["duration_ms"] < 5000, ln
        assert ln["client"] == "127.0.0.1"
    for path in ("/f/item?q=1&r=%20", "/f/upload", "/f/own-id"):
        ln = lines[path]
        assert ln["route"] == "fast" and ln["host"] == "shop.example", ln
        assert ln["upstream"] == f"127.0.0.1:{fast.port}", ln
        assert isinstance(ln["upstream_ms"], float), ln
        assert 0 <= ln["upstream_ms"] <= ln["duration_ms"], ln
    miss = lines["/unrouted"]
    assert miss["route"] is None and miss["upstream"] is None and miss["upstream_ms"] is None
    assert miss["host"] == "other.example" and miss["method"] == "DELETE"
    # The request ids the node saw are the logged ones.
    assert [q.header("x-request-id") for q in fast.requests] == [
        lines[p]["request_id"] for p in ("/f/item?q=1&r=%20", "/f/upload", "/f/own-id")]


def test_durations_measure_the_request(upstreams, tollgate):
    def slow(req, conn):
        time.sleep(0.3)
        return response(200, b"slow")

    tg, _, _, _ = two_routes(upstreams, tollgate, slow_handler=slow)
    with Client(tg.addr) as c:
        t0 = time.monotonic()
        assert c.get("/s/wait").status == 200
        took = (time.monotonic() - t0) * 1000
    ln = lines_for(tg, 1)[0]
    assert 290 <= ln["upstream_ms"] <= ln["duration_ms"] <= took + 5, (ln, took)


def test_sample_zero_keeps_errors_and_slow_requests(upstreams, tollgate):
    def slow(req, conn):
        time.sleep(0.35)
        return response(200, b"slow")

    tg, _, _, _ = two_routes(upstreams, tollgate, access={"sample": 0.0, "slow": "200ms"},
                             slow_handler=slow)
    with Client(tg.addr) as c:
        for i in range(30):
            assert c.get(f"/f/{i}").status == 200
        assert c.get("/missing/1").status == 404
        assert c.get("/missing/2").status == 404
        assert c.get("/x/fail").status == 503
        assert c.get("/s/slow").status == 200
        assert c.get("/f/last").status == 200
    lines = lines_for(tg, 4)
    time.sleep(QUIET)
    lines = tg.access_log()
    got = sorted((ln["path"], ln["status"]) for ln in lines)
    assert got == [("/missing/1", 404), ("/missing/2", 404), ("/s/slow", 200), ("/x/fail", 503)], \
        got
    slow_line = by_path(lines)["/s/slow"]
    assert slow_line["duration_ms"] >= 200 and slow_line["route"] == "slow", slow_line


def test_sample_half_logs_about_half(upstreams, tollgate):
    tg, _, _, _ = two_routes(upstreams, tollgate, access={"sample": 0.5})
    n = 200 if is_sanitized() else 400
    with Client(tg.addr) as c:
        for i in range(n):
            assert c.get(f"/f/{i}").status == 200
        assert c.get("/nope").status == 404  # always logged: marks the end of the run
    wait_until(lambda: any(ln["path"] == "/nope" for ln in tg.access_log()), 5, interval=0.02,
               what="the 404 line")
    time.sleep(QUIET)
    ok = [ln for ln in tg.access_log() if ln["status"] == 200]
    # Binomial(n, 0.5): the bounds are more than 8 standard deviations away.
    assert 0.3 * n < len(ok) < 0.7 * n, f"{len(ok)} of {n} sampled 2xx requests logged"
    assert len({ln["path"] for ln in ok}) == len(ok)


def test_disabled_logs_nothing(upstreams, tollgate):
    tg, _, _, _ = two_routes(upstreams, tollgate, access={"enabled": False})
    with Client(tg.addr) as c:
        for i in range(10):
            assert c.get(f"/f/{i}").status == 200
        assert c.get("/missing").status == 404
        assert c.get("/x/fail").status == 503
    time.sleep(QUIET + 0.2)
    assert tg.access_log() == []
    assert "http_requests_total" in tg.admin("/metrics").body.decode()


def test_reload_turns_access_logging_on(upstreams, tollgate):
    tg, _, _, _ = two_routes(upstreams, tollgate, access={"enabled": False})
    with Client(tg.addr) as c:
        for i in range(5):
            assert c.get(f"/f/before/{i}").status == 200
        assert c.get("/missing/before").status == 404
    time.sleep(QUIET)
    assert tg.access_log() == []

    tg.config["log"]["access"]["enabled"] = True
    tg.write_config()
    r = tg.admin("/reload", method="POST")
    assert r.status == 200 and r.json()["status"] == "ok", r
    with Client(tg.addr) as c:
        for i in range(5):
            assert c.get(f"/f/after/{i}").status == 200
        assert c.get("/missing/after").status == 404
    lines = lines_for(tg, 6)
    time.sleep(QUIET)
    paths = sorted(ln["path"] for ln in tg.access_log())
    assert paths == sorted([f"/f/after/{i}" for i in range(5)] + ["/missing/after"]), paths
    assert all(ln["route"] == "fast" for ln in lines if ln["path"].startswith("/f/"))
