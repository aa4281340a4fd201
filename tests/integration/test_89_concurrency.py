"""concurrency.max (issue 4, point 7): at most max requests of a service in flight, the excess
waits in a bounded FIFO for at most queue_timeout and is then shed with 503 + Retry-After;
admitted requests keep their normal latency; a waiting request whose client leaves gives its
place up."""

import threading
import time

from tglib import Client, response, service


def slow(delay):
    def handler(req, conn):
        time.sleep(delay)
        return response(200, b"ok")
    return handler


def fire(addr, n, path="/"):
    """n concurrent GETs on their own connections; returns [(status, headers, seconds)]."""
    out = [None] * n
    go = threading.Barrier(n)

    def one(i):
        with Client(addr, timeout=10) as c:
            go.wait()
            t0 = time.monotonic()
            r = c.get(path)
            out[i] = (r.status, r, time.monotonic() - t0)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    return out


def limited(upstreams, tollgate, delay, limit, queue, queue_timeout):
    """A gateway with one service "s" whose node answers after delay seconds, and
    concurrency {max, queue, queue_timeout}; returns (tollgate, upstream)."""
    up = upstreams(slow(delay))
    tg = tollgate(services={"s": service(up.url, response="5s",
                                         concurrency={"max": limit, "queue": queue,
                                                      "queue_timeout": queue_timeout})},
                  routes=[{"name": "r", "service": "s"}])
    return tg, up


def test_excess_is_queued_then_shed_with_retry_after(upstreams, tollgate):
    tg, up = limited(upstreams, tollgate, 0.4, limit=2, queue=2,
                     queue_timeout="300ms")
    res = fire(tg.addr, 20)
    ok = [r for r in res if r[0] == 200]
    shed = [r for r in res if r[0] == 503]
    assert len(ok) + len(shed) == 20, [r[0] for r in res]
    # two run at once; two waited 300 ms (less than one 400 ms response) and were shed too
    assert len(ok) == 2, [r[0] for r in res]
    for status, r, secs in shed:
        assert r.header("retry-after") == "1", r
        assert r.json()["error"]["code"] == "overloaded", r
        assert secs < 0.3 + 0.25, f"shed after {secs:.3f}s, queue_timeout is 300ms"
    for status, r, secs in ok:
        assert secs < 0.4 + 0.25, f"an admitted request took {secs:.3f}s"
    m = tg.metrics()
    assert m.value("tollgate_shed_requests_total", service="s") == 18
    assert m.histogram("tollgate_upstream_queue_wait_seconds")["count"] == 2


def test_waiting_requests_are_served_in_order_when_slots_free(upstreams, tollgate):
    tg, up = limited(upstreams, tollgate, 0.15, limit=1, queue=10,
                     queue_timeout="3s")
    res = fire(tg.addr, 5)
    assert [r[0] for r in res] == [200] * 5
    times = sorted(r[2] for r in res)
    # one at a time: the k-th finishes after about k × 150 ms
    assert times[-1] >= 0.15 * 5 - 0.05, times
    assert tg.metrics().value("tollgate_shed_requests_total", service="s") == 0


def test_a_client_leaving_the_queue_frees_its_place(upstreams, tollgate):
    tg, up = limited(upstreams, tollgate, 0.5, limit=1, queue=1,
                     queue_timeout="3s")
    busy = Client(tg.addr, timeout=5)
    busy.send(b"GET /busy HTTP/1.1\r\nHost: t\r\n\r\n")
    time.sleep(0.1)
    gone = Client(tg.addr, timeout=5)
    gone.send(b"GET /gone HTTP/1.1\r\nHost: t\r\n\r\n")
    time.sleep(0.1)
    gone.close()  # leaves the queue
    time.sleep(0.1)
    with Client(tg.addr, timeout=5) as c:  # takes the freed queue place, not shed
        assert c.get("/next").status == 200
    assert busy.response().status == 200
    busy.close()
    assert [q.target for q in up.requests] == ["/busy", "/next"]


def test_a_draining_node_finishes_its_requests_and_takes_no_new_ones(upstreams, tollgate):
    """drain: true (applied by reload) takes a node out of rotation without cutting what it is
    doing; /status and the node_state metric say draining."""
    a = upstreams(slow(0.5))
    b = upstreams(slow(0.0))
    svc = service(a.url, b.url, response="5s", balance="round_robin")
    tg = tollgate(services={"s": svc}, routes=[{"name": "r", "service": "s"}])
    busy = Client(tg.addr, timeout=5)
    busy.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")  # round robin: node a first
    a.wait_requests(1)
    svc["nodes"][0]["drain"] = True
    tg.config["services"]["s"] = svc
    tg.write_config()
    assert tg.admin("/reload", method="POST").status == 200
    assert busy.response().status == 200  # finished on the draining node
    busy.close()
    with Client(tg.addr) as c:
        for i in range(6):
            assert c.get(f"/n{i}").status == 200
    assert [q.target for q in a.requests] == ["/slow"]
    nodes = tg.admin("/status").json()["services"][0]["nodes"]
    assert [n["state"] for n in nodes] == ["draining", "healthy"], nodes
    m = tg.metrics()
    assert m.value("tollgate_upstream_node_state", service="s",
                   node=a.url.split("//")[1], state="draining") == 1


def test_no_usable_node_is_a_fast_503_that_keeps_the_connection(upstreams, tollgate):
    """With every node out (here: its only node draining) requests fail at once with 503 +
    Retry-After, and a request whose body was read whole keeps its keep-alive connection."""
    up = upstreams()
    svc = service(up.url)
    svc["nodes"][0]["drain"] = True
    tg = tollgate(services={"s": svc}, routes=[{"name": "r", "service": "s"}])
    with Client(tg.addr) as c:
        c.request("POST", "/p", body=b"hello")
        r = c.response()
        assert r.status == 503 and r.header("retry-after") == "1", r
        assert r.json()["error"]["code"] == "no_usable_node", r
        assert not r.closes, r
        r = c.get("/g")
        assert r.status == 503 and not r.closes, r
    assert up.requests == []
    assert tg.metrics().value("tollgate_upstream_unavailable_total") == 2
