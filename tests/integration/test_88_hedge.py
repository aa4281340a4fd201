"""Hedged requests (issue 4, point 6): a route with hedge.after sends an idempotent request to a
second node when the first has not answered in time; the first response wins and the other
attempt is closed; a losing hedge is not a node failure; non-idempotent requests are never
hedged; hedges take from the retry budget."""

import time

import pytest

from tglib import Client, response, service


def delayed(name, delay):
    def handler(req, conn):
        time.sleep(delay)
        return response(200, name.encode(), headers=[("X-Node", name)])
    return handler


def post(c, path):
    c.request("POST", path, body=b"x")
    return c.response()


def hedged_gateway(upstreams, tollgate, slow_delay=0.6, fast_delay=0.0, route_extra=None,
                   svc_extra=None):
    slow = upstreams(delayed("slow", slow_delay))
    fast = upstreams(delayed("fast", fast_delay))
    route = {"name": "r", "service": "s", "hedge": {"after": "50ms"}}
    route.update(route_extra or {})
    svc = service(slow.url, fast.url, response="3s", balance="round_robin",
                  retry={"attempts": 2, "min_per_second": 100})
    svc.update(svc_extra or {})
    tg = tollgate(services={"s": svc}, routes=[route])
    return tg, slow, fast


def test_slow_first_node_is_hedged_to_a_fast_one(upstreams, tollgate):
    tg, slow, fast = hedged_gateway(upstreams, tollgate)
    times = []
    with Client(tg.addr, timeout=5) as c:
        for i in range(10):
            t0 = time.monotonic()
            r = c.get(f"/h{i}")
            times.append(time.monotonic() - t0)
            assert r.status == 200 and r.body == b"fast", r
    # round robin sends every other request to the slow node first: those are hedged after
    # 50 ms and answered by the fast node long before the slow one's 600 ms
    assert max(times) < 0.4, times
    m = tg.metrics()
    assert m.value("tollgate_upstream_hedges_total", outcome="won") == 5
    assert m.value("tollgate_upstream_hedges_total", outcome="lost") == 0
    # the slow node lost its races: no failure, no ejection
    st = tg.admin("/status").json()["services"][0]["nodes"]
    assert all(n["state"] == "healthy" and n["errors"] == 0 for n in st), st


def test_first_answer_wins_and_the_hedge_is_cancelled(upstreams, tollgate):
    # both nodes answer after 150 ms: the first attempt, asked 50 ms earlier, wins
    tg, slow, fast = hedged_gateway(upstreams, tollgate, slow_delay=0.15, fast_delay=0.15)
    with Client(tg.addr, timeout=5) as c:
        for i in range(4):
            assert c.get(f"/w{i}").status == 200
    m = tg.metrics()
    assert m.value("tollgate_upstream_hedges_total", outcome="lost") == 4
    assert m.value("tollgate_upstream_hedges_total", outcome="won") == 0
    st = tg.admin("/status").json()["services"][0]["nodes"]
    assert all(n["errors"] == 0 and n["in_flight"] == 0 for n in st), st


def test_post_is_not_hedged_unless_the_route_is_idempotent(upstreams, tollgate):
    tg, slow, fast = hedged_gateway(upstreams, tollgate, slow_delay=0.3)
    with Client(tg.addr, timeout=5) as c:
        bodies = [post(c, f"/p{i}").body for i in range(2)]
    assert sorted(bodies) == [b"fast", b"slow"]
    assert tg.metrics().value("tollgate_upstream_hedges_total", outcome="won") == 0

    tg2, slow2, fast2 = hedged_gateway(upstreams, tollgate, slow_delay=0.3,
                                       route_extra={"idempotent": True})
    with Client(tg2.addr, timeout=5) as c:
        bodies = [post(c, f"/p{i}").body for i in range(2)]
    assert bodies == [b"fast", b"fast"]
    assert tg2.metrics().value("tollgate_upstream_hedges_total", outcome="won") == 1
    # the hedge carried the body
    assert [q.body for q in fast2.requests] == [b"x", b"x"]


@pytest.mark.parametrize("attempts,budget,requests,won,skipped", [
    (2, 0, 4, 0, 2),  # no budget at all: every hedge skipped
    (1, 1, 6, 3, 0),  # no retries, but a hedging route's requests still earn budget
])
def test_hedges_take_from_the_retry_budget(upstreams, tollgate, attempts, budget, requests, won,
                                           skipped):
    """Each hedge takes a retry from the budget (min_per_second 0 here, so only the share of
    requests counts); with retry.attempts 1 the hedging route's requests are still counted."""
    tg, slow, fast = hedged_gateway(upstreams, tollgate, slow_delay=0.15,
                                    svc_extra={"retry": {"attempts": attempts, "budget": budget,
                                                         "min_per_second": 0}})
    with Client(tg.addr, timeout=5) as c:
        for i in range(requests):
            assert c.get(f"/b{i}").status == 200
    m = tg.metrics()
    assert m.value("tollgate_upstream_hedges_total", outcome="won") == won
    assert m.value("tollgate_upstream_hedges_total", outcome="skipped") == skipped


def test_a_failing_first_node_hands_over_to_the_hedge(upstreams, tollgate):
    """The first node stalls, then resets; the hedge already in flight answers."""
    def stall_then_reset(req, conn):
        time.sleep(0.3)
        conn.reset()
        return None

    bad = upstreams(stall_then_reset)
    good = upstreams(delayed("good", 0.2))
    tg = tollgate(services={"s": service(bad.url, good.url, response="3s",
                                         balance="round_robin",
                                         retry={"attempts": 2, "min_per_second": 100})},
                  routes=[{"name": "r", "service": "s", "hedge": {"after": "50ms"}}])
    with Client(tg.addr, timeout=5) as c:
        for i in range(2):
            r = c.get(f"/f{i}")
            assert r.status == 200 and r.body == b"good", r
    m = tg.metrics()
    assert m.value("tollgate_upstream_hedges_total", outcome="won") == 1
