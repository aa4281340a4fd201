"""Graceful stop (DESIGN §1, §4 shutdown): SIGTERM lets requests in flight finish, refuses new
connections, closes idle ones, and exits 0."""

import re
import signal
import socket
import threading
import time

from tglib import Client, build_request, echo, http, is_sanitized, response
from tglib.net import can_connect, reset_close, wait_until


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


# --- shutdown under load (issue 3) -----------------------------------------------------------

class KeepAliveLoad:
    """`conns` threads, each sending GET /<thread>/<n> on a keep-alive connection and opening a
    new one when tollgate closes it, until a connect is refused (the listeners are closed),
    max_seconds passed or max_requests were sent.

    Outcomes of a request, from the client's side (on loopback a write is in the peer's receive
    queue when send() returns, so "tollgate closed first" and "the request was unread when
    tollgate closed" can be told apart):
      - a complete 200 echo of the request: ok;
      - send() fails: the request was never written (tollgate had closed the idle connection);
      - EOF before any byte of a response: tollgate closed cleanly (FIN) before the request
        arrived; a client may retry;
      - anything else (a reset with no response, part of a response, a wrong answer, a
        timeout) is a violation."""

    def __init__(self, addr, conns=4, max_seconds=15.0, max_requests=300000):
        self.addr = addr
        self.deadline = time.monotonic() + max_seconds
        self.per_thread = max_requests // conns
        self.stop = threading.Event()
        self.term_at = None  # monotonic time of SIGTERM, set by the test
        self.responses = []  # (time received, announces close)
        self.violations = []
        self.unsent = 0
        self.clean_closes = 0
        self.refused_before_term = 0
        self.threads = [threading.Thread(target=self._run, args=(f"k{i}",), daemon=True)
                        for i in range(conns)]

    def start(self):
        self.t0 = time.monotonic()
        for t in self.threads:
            t.start()
        return self

    def join(self, timeout):
        for t in self.threads:
            t.join(timeout)
        assert not any(t.is_alive() for t in self.threads), "a load thread is stuck"

    def _when(self):
        if self.term_at is None:
            return "before SIGTERM"
        return f"{time.monotonic() - self.term_at:+.3f}s after SIGTERM"

    def _run(self, name):
        out = []
        c = None
        n = on_conn = 0
        while not self.stop.is_set() and n < self.per_thread and time.monotonic() < self.deadline:
            if c is None:
                try:
                    c = Client(self.addr, timeout=5)
                    on_conn = 0
                except OSError:
                    # refused once the listeners are closed, or reset while still in the accept
                    # queue of a listener being closed: either way no request was sent
                    if self.term_at is None:
                        self.refused_before_term += 1
                    break
            path = f"/{name}/{n}"
            n += 1
            try:
                c.send(build_request("GET", path))
            except OSError:
                self.unsent += 1
                c.close()
                c = None
                continue
            try:
                r = c.response()
            except http.Closed as e:
                got = bytes(c.reader.buf)
                if got:
                    self.violations.append(f"{name} {path} ({on_conn} earlier on this "
                                           f"connection, {self._when()}): {e}, partial "
                                           f"response {got[:80]!r}")
                elif "reset" in str(e):
                    self.violations.append(f"{name} {path} ({on_conn} earlier on this "
                                           f"connection, {self._when()}): reset before any "
                                           f"byte of a response to a request it had received")
                else:
                    self.clean_closes += 1
                c.close()
                c = None
                continue
            except BrokenPipeError:  # EPIPE on a read: a reset that followed our FIN-ACK
                self.clean_closes += 1
                c.close()
                c = None
                continue
            except (OSError, ValueError) as e:
                self.violations.append(f"{name} {path} ({self._when()}): {e!r}")
                break
            on_conn += 1
            now = time.monotonic()
            if r.status != 200 or r.json().get("target") != path:
                self.violations.append(f"{name} {path} ({self._when()}): {r!r}")
                break
            out.append((now, r.closes))
            if r.closes:
                c.close()
                c = None
        if c is not None:
            c.close()
        self.responses.extend(out)


def test_sigterm_under_keepalive_load(upstreams, proxy):
    """SIGTERM while 4 keep-alive clients send requests continuously: /readyz turns 503 and
    requests keep succeeding for drain_delay; then no request that reached tollgate is reset
    or cut short, the responses of the drain phase announce Connection: close, a request in
    flight when the listeners close completes, and the process exits 0 within
    drain_delay + timeout."""
    drain_delay, timeout = 1.0, 5.0

    def handler(req, conn):
        if req.target == "/slow":
            time.sleep(1.5)
        return echo(req, conn)

    up = upstreams(handler)
    tg = proxy(up, workers=2, svc={"response": "5s"},
               shutdown={"drain_delay": "1s", "timeout": "5s"})
    host, port = tg.config["admin"]["addr"].rsplit(":", 1)
    admin = (host, int(port))
    load = KeepAliveLoad(tg.addr).start()
    time.sleep(0.5 if is_sanitized() else 1.0)
    slow = {}

    def slow_client():
        try:
            with Client(tg.addr, timeout=10) as c:
                slow["r"] = c.get("/slow")
                slow["t"] = time.monotonic()
        except (OSError, http.Closed) as e:
            slow["error"] = repr(e)

    load.term_at = t_term = time.monotonic()
    tg.signal(signal.SIGTERM)
    time.sleep(0.2)
    with Client(admin) as c:
        ready = c.get("/readyz", host="admin")
    with Client(tg.addr) as c:
        fresh = c.get("/fresh-during-drain-delay")
    slow_thread = threading.Thread(target=slow_client)
    time.sleep(max(0.0, t_term + drain_delay - 0.4 - time.monotonic()))
    slow_thread.start()  # in flight when the listeners close
    rc = tg.wait(drain_delay + timeout + 3)
    t_exit = time.monotonic() - t_term
    load.join(5)
    slow_thread.join(5)

    assert ready.status == 503, ready
    assert ready.json()["checks"]["not_draining"]["ok"] is False, ready
    assert fresh.status == 200, "a new connection during drain_delay was not served"
    before = [t for t, _ in load.responses if t < t_term]
    delay = [t for t, _ in load.responses if t_term + 0.05 < t < t_term + drain_delay - 0.05]
    after = [(t, closes) for t, closes in load.responses if t >= t_term + drain_delay - 0.05]
    total = len(load.responses)
    print(f"\nshutdown under load: {total} responses ({len(before)} before SIGTERM at "
          f"{len(before) / (t_term - load.t0):.0f} req/s, {len(delay)} during drain_delay, "
          f"{len(after)} after), {len(load.violations)} violations, {load.clean_closes} clean "
          f"closes before a response, {load.unsent} requests not written, exit code {rc} "
          f"{t_exit:.2f}s after SIGTERM (drain_delay {drain_delay}s + timeout {timeout}s)")
    assert rc is None or rc >= 0, f"tollgate died by signal {-rc}:\n{tg.stderr()[-3000:]}"
    assert not load.violations, "\n".join(load.violations[:10])
    assert load.refused_before_term == 0
    assert len(before) >= (200 if is_sanitized() else 1000), f"the load hardly ran: {total}"
    assert len(delay) >= 20, f"requests did not keep flowing during drain_delay: {len(delay)}"
    early_close = [t - t_term for t, closes in load.responses
                   if closes and t < t_term + drain_delay - 0.05]
    assert not early_close, f"Connection: close before drain_delay ended: {early_close[:5]}"
    r = slow.get("r")
    assert r is not None, f"the request in flight when the listeners closed got no response " \
                          f"({slow.get('error')}):\n{tg.stderr()}"
    assert r.status == 200 and r.json()["target"] == "/slow" and r.closes, r
    assert slow["t"] - t_term >= drain_delay, "the slow request ended before the drain"
    assert rc == 0, f"exit code {rc}:\n{tg.stderr()}"
    assert drain_delay + 0.4 < t_exit <= drain_delay + timeout + 1.0, t_exit


def test_shutdown_timeout_cuts_hanging_requests_and_says_so(upstreams, proxy):
    """Requests that outlive shutdown.timeout are cut: exit code 1 and an error log line with
    how many."""
    up = upstreams(lambda req, conn: conn.hang())
    tg = proxy(up, svc={"response": "30s"}, shutdown={"drain_delay": "0s", "timeout": "1s"})
    clients = [Client(tg.addr, timeout=5) for _ in range(2)]
    for i, c in enumerate(clients):
        c.request("GET", f"/forever{i}")
    up.wait_requests(2)
    t0 = time.monotonic()
    tg.signal(signal.SIGTERM)
    rc = tg.wait(6)
    elapsed = time.monotonic() - t0
    for c in clients:
        assert c.closed_within(2), "a cut-off client connection was left open"
        c.close()
    assert rc == 1, f"exit code {rc} after cutting requests off:\n{tg.stderr()}"
    assert 0.9 <= elapsed < 3, f"exit took {elapsed:.2f}s with shutdown.timeout 1s"
    cut = [ln for ln in tg.log_lines() if ln.get("level") == "error" and "cut off" in
           ln.get("msg", "")]
    assert cut and re.search(r"\b2 requests\b", cut[0]["msg"]), tg.stderr()


def test_repeated_sigterm_under_load_resets_nothing(upstream, proxy):
    """The moment the listeners close is the risky one: keep-alive connections between two
    requests are closed (a request that already arrived must be answered or the connection
    closed with a FIN before it, never reset: close() with unread bytes sends a RST), other
    workers may still be accepting, and reconnecting clients land on listeners being closed.
    The windows are short, so this runs several rounds of SIGTERM under keep-alive load."""
    for i in range(2 if is_sanitized() else 4):
        tg = proxy(upstream, workers=2, shutdown={"drain_delay": "0s", "timeout": "3s"})
        load = KeepAliveLoad(tg.addr, max_seconds=5.0).start()
        time.sleep(0.3)
        load.term_at = time.monotonic()
        tg.signal(signal.SIGTERM)
        rc = tg.wait(5)
        load.join(5)
        assert rc == 0, f"round {i}: exit code {rc}\n{tg.stderr()[-3000:]}"
        assert not load.violations, f"round {i}:\n" + "\n".join(load.violations[:10])
        assert len(load.responses) >= 100, f"round {i}: the load hardly ran"


def test_sigterm_while_clients_keep_connecting(upstream, proxy):
    """Connections keep arriving when the listeners close (a load balancer that has not noticed
    the drain yet): tollgate still drains and exits 0. (A listener closed by the drain must
    outlive any accept event its worker's loop already fetched in the same batch.)"""
    for i in range(3):
        tg = proxy(upstream, workers=2, shutdown={"drain_delay": "0s", "timeout": "2s"})
        stop = threading.Event()
        counts = [0, 0]

        def hammer():
            deadline = time.monotonic() + 5
            while not stop.is_set() and time.monotonic() < deadline and sum(counts) < 50000:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.settimeout(0.5)
                try:
                    s.connect(tg.addr)
                    counts[0] += 1
                except OSError:
                    counts[1] += 1
                reset_close(s)  # a RST: no TIME_WAIT piles up

        t = threading.Thread(target=hammer, daemon=True)
        t.start()
        time.sleep(0.1)
        tg.signal(signal.SIGTERM)
        rc = tg.wait(5)
        stop.set()
        t.join(5)
        assert counts[0] > 0, "the clients never connected"
        assert rc == 0, f"round {i}: exit code {rc} after SIGTERM while clients were " \
                        f"connecting ({counts[0]} connected, {counts[1]} refused)\n" \
                        f"{tg.stderr()[-2000:]}"
