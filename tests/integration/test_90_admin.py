"""The admin listener (DESIGN §5): liveness, readiness (503 while draining), Prometheus metrics
that count what happened, and none of it reachable through the public listener."""

import signal
import threading
import time

from tglib import Client, response








def test_healthz_and_readyz(upstream, proxy):
    tg = proxy(upstream)
    r = tg.admin("/healthz")
    assert r.status == 200, r
    r = tg.admin("/readyz")
    assert r.status == 200, r
    assert r.json().get("ready") is True, r


def test_admin_unknown_path_404(upstream, proxy):
    tg = proxy(upstream)
    r = tg.admin("/nope")
    assert r.status == 404
    assert r.json()["error"]["status"] == 404


def test_admin_not_on_public_listener(upstream, proxy):
    tg = proxy(upstream)
    with Client(tg.addr) as c:
        for path in ("/healthz", "/readyz", "/metrics"):
            r = c.get(path)
            assert r.status == 200 and r.json()["target"] == path, \
                f"{path} answered by tollgate itself on the public port: {r!r}"


def test_readyz_503_while_draining(upstreams, proxy):
    def slow(req, conn):
        time.sleep(1.0)
        return response(200, b"done")

    up = upstreams(slow)
    tg = proxy(up, svc={"response": "5s"}, shutdown={"drain_delay": "0s", "timeout": "5s"})
    done = {}

    def client():
        with Client(tg.addr, timeout=5) as c:
            done["r"] = c.get("/")

    t = threading.Thread(target=client)
    t.start()
    up.wait_requests(1)
    tg.signal(signal.SIGTERM)
    time.sleep(0.2)
    r = tg.admin("/readyz")
    t.join(5)
    assert r.status == 503, f"/readyz while draining: {r!r}"
    assert done["r"].status == 200


def test_metrics_count_traffic(upstreams, proxy):
    up = upstreams()
    tg = proxy(up, limits={"max_request_line": "1kb"})
    before = tg.metrics()
    with Client(tg.addr) as c:
        for _ in range(3):
            assert c.get("/").status == 200
    with Client(tg.addr) as c:
        c.send(b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
        assert c.response().status == 414
    after = tg.metrics()

    def delta(name, **labels):
        return after.sum(name, **labels) - before.sum(name, **labels)

    assert delta("http_requests_total", route="all", method="GET", status="200") == 3
    assert delta("http_requests_total", route="_none", status="414") == 1
    assert delta("tollgate_rejected_requests_total", reason="max_request_line") == 1
    assert delta("tollgate_upstream_requests_total", status="200") == 3
    assert delta("tollgate_upstream_connections_reused_total") == 2
    dur = "http_request_duration_seconds"
    assert after.histogram(dur, route="all")["count"] == 3 + (
        before.histogram(dur, route="all")["count"] if before.series(dur) else 0)
