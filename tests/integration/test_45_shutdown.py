"""Graceful stop (DESIGN §1, §4 shutdown): SIGTERM lets requests in flight finish, refuses new
connections, closes idle ones, and exits 0."""

import signal
import threading
import time

from tglib import Client, response
from tglib.net import can_connect, wait_until


def test_sigterm_lets_inflight_request_finish(upstreams, proxy):
    def slow(req, conn):
        time.sleep(1.0)
        return response(200, b"finished")

    up = upstreams(slow)
    tg = proxy(up, svc={"response": "5s"}, shutdown={"drain_delay": "0s", "timeout": "5s"})
    result = {}

    def client():
        with Client(tg.addr, timeout=5) as c:
            result["r"] = c.get("/slow")
            result["closed"] = c.closed_within(2)

    t = threading.Thread(target=client)
    t.start()
    up.wait_requests(1)
    tg.signal(signal.SIGTERM)
    time.sleep(0.3)
    refused = not can_connect(tg.addr)
    t.join(6)
    r = result.get("r")
    assert r is not None, f"in-flight request did not complete:\n{tg.stderr()}"
    assert r.status == 200 and r.body == b"finished", r
    assert r.closes, "a response sent while draining should announce Connection: close"
    assert result["closed"]
    assert refused, "new connections still accepted while draining"
    rc = tg.wait(5)
    assert rc == 0, f"exit code {rc} after a graceful stop:\n{tg.stderr()}"


def test_sigterm_refuses_new_connections_and_closes_idle(upstream, proxy):
    tg = proxy(upstream, shutdown={"drain_delay": "0s", "timeout": "5s"})
    idle = Client(tg.addr)
    assert idle.get("/").status == 200
    tg.signal(signal.SIGTERM)
    assert idle.closed_within(3), "idle keep-alive connection kept open while draining"
    rc = tg.wait(5)
    assert rc == 0, tg.stderr()
    assert not can_connect(tg.addr)
    idle.close()


def test_sigterm_with_no_traffic_exits_quickly(upstream, proxy):
    tg = proxy(upstream)
    t0 = time.monotonic()
    tg.signal(signal.SIGTERM)
    assert tg.wait(5) == 0, tg.stderr()
    assert time.monotonic() - t0 < 2.5


def test_shutdown_timeout_bounds_the_drain(upstreams, proxy):
    """A request that never ends cannot hold the process: shutdown.timeout cuts it off."""
    up = upstreams(lambda req, conn: conn.hang())
    tg = proxy(up, svc={"response": "30s"}, shutdown={"drain_delay": "0s", "timeout": "1s"})
    c = Client(tg.addr, timeout=5)
    c.request("GET", "/forever")
    up.wait_requests(1)
    t0 = time.monotonic()
    tg.signal(signal.SIGTERM)
    rc = tg.wait(5)
    elapsed = time.monotonic() - t0
    c.close()
    assert rc is not None, "tollgate still running 5s after SIGTERM with shutdown.timeout 1s"
    assert elapsed < 3, f"exit took {elapsed:.2f}s"


def test_second_signal_exits_now(upstreams, proxy):
    up = upstreams(lambda req, conn: conn.hang())
    tg = proxy(up, svc={"response": "30s"}, shutdown={"drain_delay": "0s", "timeout": "20s"})
    c = Client(tg.addr, timeout=5)
    c.request("GET", "/forever")
    up.wait_requests(1)
    tg.signal(signal.SIGTERM)
    time.sleep(0.3)
    assert tg.wait(0.1) is None, "exited while a request was in flight and the timeout is 20s"
    tg.signal(signal.SIGINT)
    rc = tg.wait(3)
    c.close()
    assert rc is not None, "a second signal did not stop the process"


def test_no_fd_leak_after_many_requests(upstream, proxy):
    tg = proxy(upstream)
    fds0 = tg.open_fds()
    for i in range(50):
        with Client(tg.addr) as c:
            assert c.get(f"/{i}").status == 200
    wait_until(lambda: tg.open_fds() <= fds0 + 1, 3, what="client fds released")


def test_drain_delay_keeps_serving_while_not_ready(upstream, proxy):
    """shutdown.drain_delay: after SIGTERM, /readyz answers 503 at once while requests are still
    served, so load balancers can stop sending before the listeners close."""
    tg = proxy(upstream, shutdown={"drain_delay": "1s", "timeout": "2s"})
    host, port = tg.config["admin"]["addr"].rsplit(":", 1)
    admin = (host, int(port))
    t0 = time.monotonic()
    tg.signal(signal.SIGTERM)
    time.sleep(0.2)
    with Client(admin) as c:
        assert c.get("/readyz", host="admin").status == 503
    with Client(tg.addr) as c:
        assert c.get("/still-served").status == 200
    assert time.monotonic() - t0 < 0.9, "the checks above took too long to prove anything"
    assert wait_until(lambda: not can_connect(tg.addr), 3), "listeners still open after the delay"
    assert time.monotonic() - t0 >= 0.9, "listeners closed before drain_delay passed"
    assert tg.wait(5) == 0, tg.stderr()
