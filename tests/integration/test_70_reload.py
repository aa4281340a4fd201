"""Hot reload (issue 3): SIGHUP and POST /reload swap the configuration atomically under load,
without a failed request or a refused connection; a broken file changes nothing and the admin
reply names the error's FILE:LINE:COL; requests in flight finish on the snapshot they started
with; listeners and upstream pools that did not change are kept; /status and the reload
counters say what happened."""

import copy
import datetime
import os
import random
import re
import signal
import socket
import threading
import time

import pytest

from tglib import Client, echo, http, is_sanitized, service, to_yaml
from tglib.net import can_connect, free_port, reset_close, wait_until

SAN = is_sanitized()


# --- helpers ---------------------------------------------------------------------------------







def status(tg):
    r = tg.admin("/status")
    assert r.status == 200, r
    return r.json()




def reloads_metric(tg, result):
    m = tg.metrics()
    return m.sum("tollgate_config_reloads_total", result=result) \
        if m.series("tollgate_config_reloads_total") else 0


def replace_config(tg, cfg):
    """Writes the next config file atomically (a reload still reading the previous version
    never sees a half-written file). cfg: a dict (to YAML) or the text itself."""
    text = cfg if isinstance(cfg, str) else to_yaml(cfg) + "\n"
    tmp = tg.config_path + ".next"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, tg.config_path)


def sighup(tg, cfg, ok_before):
    """Installs cfg, sends SIGHUP and waits until /status counts the reload as done (a second
    SIGHUP sent before the first is handled would merge with it)."""
    replace_config(tg, cfg)
    tg.signal(signal.SIGHUP)

    def done():
        st = status(tg)
        reloads = st["config"]["reloads"]
        return st if reloads["ok"] > ok_before or reloads["failed"] > 0 else None

    return wait_until(done, 10, interval=0.005, what="the SIGHUP reload to be applied")


def post_reload(tg, cfg=None):
    if cfg is not None:
        replace_config(tg, cfg)
    r = tg.admin("/reload", method="POST")
    return r, r.json()


def routed(name, prefix):
    return [{"name": name, "match": {"path": "/"}, "service": "backend",
             "rewrite": {"path": prefix + "{path}"}}]


def parse_ts(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def which_prefix(r, path, prefixes=("/A", "/B")):
    """Checks an echo response to `path` and returns the rewrite prefix the upstream saw."""
    assert r.status == 200, f"{path}: {r!r}"
    assert r.framing == "length", f"{path}: {r!r}"
    target = r.json()["target"]
    for p in prefixes:
        if target == p + path:
            return p
    raise AssertionError(f"{path} reached the upstream as {target!r}")


class Load:
    """`conns` keep-alive clients (a thread each) and, with fresh=True, a thread that opens a new
    connection for every request, all sending GET /<thread>/<n> until stop(), max_seconds or
    max_requests. check(resp, path) returns a label (the config that served the request) or
    raises. Every exception is a failure: refused, reset, closed, timeout, wrong answer."""

    def __init__(self, addr, check, conns=4, fresh=True, max_seconds=15.0, max_requests=400000,
                 fresh_pause=0.005):
        self.addr = addr
        self.check = check
        self.deadline = time.monotonic() + max_seconds
        self.per_thread = max_requests // (conns + (1 if fresh else 0))
        self.fresh_pause = fresh_pause
        self.stopped = threading.Event()
        self.failures = []
        self.labels = {}  # thread name -> labels in the order its requests were answered
        self.threads = [threading.Thread(target=self._keepalive, args=(f"k{i}",), daemon=True)
                        for i in range(conns)]
        if fresh:
            self.threads.append(threading.Thread(target=self._fresh, args=("f",), daemon=True))

    def start(self):
        self.t0 = time.monotonic()
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stopped.set()
        for t in self.threads:
            t.join(10)
        self.elapsed = time.monotonic() - self.t0
        assert not any(t.is_alive() for t in self.threads), "a load thread is stuck"

    def _go(self, n):
        return not self.stopped.is_set() and n < self.per_thread and \
            time.monotonic() < self.deadline

    def _one(self, c, name, n, seq):
        path = f"/{name}/{n}"
        r = c.get(path)
        seq.append(self.check(r, path))
        return r

    def _keepalive(self, name):
        seq = self.labels.setdefault(name, [])
        n = 0
        try:
            with Client(self.addr, timeout=5) as c:
                while self._go(n):
                    r = self._one(c, name, n, seq)
                    if r.closes:
                        raise AssertionError(f"keep-alive response announced close: {r!r}")
                    n += 1
        except (AssertionError, OSError, http.Closed, ValueError) as e:
            self.failures.append(f"{name} request {n}: {e!r}")

    def _fresh(self, name):
        seq = self.labels.setdefault(name, [])
        n = 0
        try:
            while self._go(n):
                with Client(self.addr, timeout=5) as c:
                    self._one(c, name, n, seq)
                n += 1
                time.sleep(self.fresh_pause)
        except (AssertionError, OSError, http.Closed, ValueError) as e:
            self.failures.append(f"{name} (fresh connection) request {n}: {e!r}")

    @property
    def total(self):
        return sum(len(v) for v in self.labels.values())

    def keepalive_labels(self):
        return [v for k, v in self.labels.items() if k.startswith("k")]


def transitions(seq):
    return sum(1 for a, b in zip(seq, seq[1:]) if a != b)


# --- 1. reload under load --------------------------------------------------------------------

def test_twenty_sighup_reloads_under_keepalive_load(upstream, proxy):
    """20 SIGHUPs, 100-200 ms apart, alternating two route configs, while 4 keep-alive clients
    and a fresh-connection client send requests: nothing fails, nothing is refused, and every
    reload took effect."""
    tg = proxy(upstream, routes=routed("a", "/A"), workers=2)
    cfg_a = copy.deepcopy(tg.config)
    cfg_b = copy.deepcopy(tg.config)
    cfg_b["routes"] = routed("b", "/B")
    hashes = [status(tg)["config"]["hash"]]
    load = Load(tg.addr, which_prefix, conns=4, fresh=True, max_seconds=20.0).start()
    try:
        time.sleep(0.2)
        rnd = random.Random(7)
        for i in range(1, 21):
            t = time.monotonic()
            st = sighup(tg, cfg_b if i % 2 else cfg_a, ok_before=i - 1)
            hashes.append(st["config"]["hash"])
            time.sleep(max(0.0, rnd.uniform(0.1, 0.2) - (time.monotonic() - t)))
            assert not load.failures, load.failures[:5]
        time.sleep(0.2)
    finally:
        load.stop()

    assert not load.failures, f"{len(load.failures)} failed requests: {load.failures[:10]}"
    total = load.total
    rate = total / load.elapsed
    fresh = len(load.labels.get("f", []))
    print(f"\nreload under load: {total} requests in {load.elapsed:.2f}s ({rate:.0f} req/s), "
          f"4 keep-alive connections + {fresh} fresh connections, 20 SIGHUP reloads, "
          f"{len(load.failures)} failed, 0 refused")
    assert total >= (300 if SAN else 2000), f"the load hardly ran: {total} requests"
    assert fresh >= 20, f"only {fresh} fresh connections were tested"

    # Both configs were in effect, and every reload was seen by every busy connection: within
    # one connection requests are sequential, so it switches at most once per reload.
    targets = [q.target for q in upstream.requests]
    assert any(t.startswith("/A/") for t in targets) and any(t.startswith("/B/") for t in targets)
    per_conn = [transitions(s) for s in load.keepalive_labels()]
    assert max(per_conn) == 20, f"config switches seen per connection: {per_conn}"
    assert all(n <= 20 for n in per_conn), f"a connection went back to an old config: {per_conn}"
    assert all(s[-1] == "/A" for s in load.keepalive_labels()), "the last config is A"

    st = status(tg)
    assert st["config"]["reloads"] == {"ok": 20, "failed": 0}, st["config"]
    assert reloads_metric(tg, "success") == 20
    assert reloads_metric(tg, "failure") == 0
    assert len(set(hashes)) == 2 and all(a != b for a, b in zip(hashes, hashes[1:])), hashes

    # The route label of each request is that of the snapshot that rewrote it.
    counts = {"/A": 0, "/B": 0}
    for s in load.labels.values():
        for label in s:
            counts[label] += 1

    def agree():
        m = tg.metrics()
        return (m.sum("http_requests_total", route="a", status="200") == counts["/A"] and
                m.sum("http_requests_total", route="b", status="200") == counts["/B"])

    wait_until(agree, 3, interval=0.05, what=f"route metrics to match the responses {counts}")


# --- 2. a broken file changes nothing --------------------------------------------------------

def test_post_reload_with_syntax_error_keeps_serving_old_config(upstream, proxy):
    tg = proxy(upstream, routes=routed("a", "/A"), workers=2)
    hash0 = status(tg)["config"]["hash"]
    cfg_b = copy.deepcopy(tg.config)
    cfg_b["routes"] = routed("b", "/B")
    lines = to_yaml(cfg_b).split("\n")
    at = lines.index("  backend:") + 1
    lines.insert(at, "    colour: blue")  # an unknown key inside service backend
    bad_line, bad_col = at + 1, 5
    replace_config(tg, "\n".join(lines) + "\n")

    load = Load(tg.addr, lambda r, p: which_prefix(r, p, ("/A",)), conns=2, fresh=True,
                max_seconds=10.0).start()
    replies = []
    try:
        time.sleep(0.1)
        for _ in range(5):
            replies.append(post_reload(tg))
            time.sleep(0.05)
        time.sleep(0.1)
    finally:
        load.stop()

    where = f"{tg.config_path}:{bad_line}:{bad_col}:"
    for r, body in replies:
        assert r.status == 400, r
        assert r.header("content-type", "").startswith("application/json"), r
        assert body["status"] == "error", body
        assert any(e.startswith(where) and "colour" in e for e in body["errors"]), \
            f"reply does not name {where}: {body}"
    assert not load.failures, load.failures[:10]
    assert load.total >= 50, load.total
    with Client(tg.addr) as c:
        assert which_prefix(c.get("/after"), "/after", ("/A",)) == "/A"

    st = status(tg)
    assert st["config"]["hash"] == hash0
    assert st["config"]["reloads"] == {"ok": 0, "failed": 5}, st["config"]
    assert reloads_metric(tg, "failure") == 5
    assert reloads_metric(tg, "success") == 0
    errors = [ln for ln in tg.log_lines() if ln.get("level") == "error"]
    assert any(f":{bad_line}:{bad_col}:" in ln.get("msg", "") for ln in errors), \
        f"no error log line with {bad_line}:{bad_col}:\n{tg.stderr()}"

    # and once the file is fixed, the same reload goes through
    r, body = post_reload(tg, cfg_b)
    assert r.status == 200 and body["status"] == "ok", body
    assert body["hash"] != hash0 and re.fullmatch(r"[0-9a-f]{16}", body["hash"]), body
    with Client(tg.addr) as c:
        assert which_prefix(c.get("/fixed"), "/fixed") == "/B"


@pytest.mark.parametrize("fault", ["tls_cert_missing", "address_in_use"])
def test_post_reload_failing_after_parse_changes_nothing(upstream, proxy, tmp_path, fault):
    """A file that parses but cannot be applied: the TLS certificate is missing, or a new listen
    address is taken by another socket. 400, and no part of the new config is in effect: the
    routes are the old ones and the new listener that could be opened was not left open."""
    tg = proxy(upstream, routes=routed("a", "/A"), workers=2)
    hash0 = status(tg)["config"]["hash"]
    spare = free_port()
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # no SO_REUSEPORT: tollgate's fails
    held.bind(("127.0.0.1", 0))
    held.listen(4)
    try:
        cfg_b = copy.deepcopy(tg.config)
        cfg_b["routes"] = routed("b", "/B")
        cfg_b["listen"].append({"addr": f"127.0.0.1:{spare}"})
        if fault == "tls_cert_missing":
            missing = str(tmp_path / "missing.crt")
            cfg_b["listen"].append({"addr": f"127.0.0.1:{free_port()}",
                                    "tls": {"cert": missing, "key": str(tmp_path / "k.pem")}})
            expect = "missing.crt"
        else:
            cfg_b["listen"].append({"addr": f"127.0.0.1:{held.getsockname()[1]}"})
            expect = str(held.getsockname()[1])
        with Client(tg.addr) as keep:
            assert which_prefix(keep.get("/before"), "/before", ("/A",)) == "/A"
            r, body = post_reload(tg, cfg_b)
            assert r.status == 400, r
            assert body["status"] == "error" and any(expect in e for e in body["errors"]), body
            # the connection opened before the failed reload is still served, on the old routes
            assert which_prefix(keep.get("/same-conn"), "/same-conn", ("/A",)) == "/A"
        with Client(tg.addr) as c:
            assert which_prefix(c.get("/new-conn"), "/new-conn", ("/A",)) == "/A"
        assert not can_connect(("127.0.0.1", spare)), "a listener of the failed config is open"
        st = status(tg)
        assert st["config"]["hash"] == hash0
        assert st["config"]["reloads"] == {"ok": 0, "failed": 1}
        assert reloads_metric(tg, "failure") == 1
        assert any(ln.get("level") == "error" and expect in ln.get("msg", "")
                   for ln in tg.log_lines()), tg.stderr()
    finally:
        held.close()
    # the spare port was released by the failed attempt: a good config can take it now
    cfg_b["listen"] = cfg_b["listen"][:2]
    r, body = post_reload(tg, cfg_b)
    assert r.status == 200, body
    with Client(("127.0.0.1", spare)) as c:
        assert which_prefix(c.get("/spare"), "/spare") == "/B"


def test_reload_method_and_draining_replies(upstream, proxy):
    tg = proxy(upstream, shutdown={"drain_delay": "3s", "timeout": "1s"})
    r = tg.admin("/reload")
    assert r.status == 405, r
    tg.signal(signal.SIGTERM)
    wait_until(lambda: tg.admin("/readyz").status == 503, 2, what="draining")
    r, body = post_reload(tg)
    assert r.status == 409 and body["status"] == "error", (r, body)
    assert tg.wait(8) == 0, tg.stderr()


# --- 3. snapshots ----------------------------------------------------------------------------

def slow_echo(req, conn):
    if "/slow" in req.target:
        time.sleep(1.0)
    return echo(req, conn)


def wait_access(tg, pred, what):
    return wait_until(lambda: [ln for ln in tg.access_log() if pred(ln)], 3, interval=0.02,
                      what=what)


def test_inflight_request_finishes_on_its_snapshot(upstreams, proxy):
    """A slow request started before a reload that changes its route keeps the old route to
    the end (rewrite, route label in the access log and metrics); a request started after the
    reload, while the slow one is still running, uses the new route."""
    up = upstreams(slow_echo)
    tg = proxy(up, routes=routed("a", "/A"))
    result = {}

    def slow_client():
        with Client(tg.addr, timeout=5) as c:
            result["r"] = c.get("/slow")
            result["t"] = time.monotonic()

    t = threading.Thread(target=slow_client)
    t.start()
    up.wait_requests(1)
    cfg_b = copy.deepcopy(tg.config)
    cfg_b["routes"] = routed("b", "/B")
    r, body = post_reload(tg, cfg_b)
    assert r.status == 200, body
    with Client(tg.addr) as c:
        assert which_prefix(c.get("/fast"), "/fast") == "/B"
    fast_done = time.monotonic()
    t.join(5)
    assert "r" in result, "the slow request did not finish"
    assert fast_done < result["t"], "the reload did not happen while the slow request ran"
    assert which_prefix(result["r"], "/slow") == "/A"

    slow = wait_access(tg, lambda ln: ln["path"] == "/slow", "the slow request's log line")[0]
    fast = wait_access(tg, lambda ln: ln["path"] == "/fast", "the fast request's log line")[0]
    assert slow["route"] == "a" and slow["status"] == 200, slow
    assert fast["route"] == "b" and fast["status"] == 200, fast
    m = tg.metrics()
    assert m.sum("http_requests_total", route="a") == 1
    assert m.sum("http_requests_total", route="b") == 1


def test_inflight_request_to_a_removed_node_finishes(upstreams, proxy):
    """The reload removes the service and node a slow request is using: it still completes,
    and the connection it used is closed afterwards instead of staying pooled for a node that
    no longer exists."""
    old = upstreams(slow_echo)
    new = upstreams()
    tg = proxy(old, routes=routed("a", "/A"))
    result = {}

    def slow_client():
        with Client(tg.addr, timeout=5) as c:
            result["r"] = c.get("/slow")

    t = threading.Thread(target=slow_client)
    t.start()
    old.wait_requests(1)
    cfg_b = copy.deepcopy(tg.config)
    cfg_b["services"] = {"backend": service(new.url)}
    cfg_b["routes"] = routed("b", "/B")
    r, body = post_reload(tg, cfg_b)
    assert r.status == 200, body
    with Client(tg.addr) as c:
        assert which_prefix(c.get("/fast"), "/fast") == "/B"
    assert [q.target for q in new.requests] == ["/B/fast"]
    t.join(5)
    assert "r" in result, "the slow request did not finish"
    assert which_prefix(result["r"], "/slow") == "/A"
    assert old.wait_connections_closed(3), \
        "the connection to the removed node stayed open after its request finished"
    assert len(old.requests) == 1


# --- 4. listeners ----------------------------------------------------------------------------

def test_reload_adds_and_removes_a_listener(upstream, proxy):
    tg = proxy(upstream, routes=routed("a", "/A"), workers=2)
    first = tg.addr
    second = ("127.0.0.1", free_port())
    assert not can_connect(second)
    probe = Load(first, lambda r, p: which_prefix(r, p), conns=0, fresh=True, max_seconds=15.0,
                 fresh_pause=0.01).start()
    keep = Client(first, timeout=5)
    try:
        assert which_prefix(keep.get("/k0"), "/k0") == "/A"
        port0 = keep.sock.getsockname()[1]

        cfg = copy.deepcopy(tg.config)
        cfg["listen"].append({"addr": f"{second[0]}:{second[1]}"})
        cfg["routes"] = routed("b", "/B")
        r, body = post_reload(tg, cfg)
        assert r.status == 200, body
        for i in range(8):  # SO_REUSEPORT spreads connections over both workers' sockets
            with Client(second) as c:
                assert which_prefix(c.get(f"/second{i}"), f"/second{i}") == "/B"
        assert which_prefix(keep.get("/k1"), "/k1") == "/B"

        cfg["listen"] = cfg["listen"][:1]
        cfg["routes"] = routed("a", "/A")
        r, body = post_reload(tg, cfg)
        assert r.status == 200, body
        wait_until(lambda: not can_connect(second), 2, what="the removed listener to close")
        for _ in range(10):  # every worker closed its socket, not just one
            assert not can_connect(second), "the removed listener accepts again"
        assert tg.proc.poll() is None, f"tollgate died (exit {tg.proc.returncode}) while a " \
                                       f"reload removed a listener that was being probed"
        assert which_prefix(keep.get("/k2"), "/k2") == "/A"
        assert keep.sock.getsockname()[1] == port0
        time.sleep(0.1)
    finally:
        probe.stop()
        keep.close()
    assert not probe.failures, f"the unchanged listener failed: {probe.failures[:5]}"
    assert probe.total >= 10, probe.total
    assert status(tg)["config"]["reloads"] == {"ok": 2, "failed": 0}


def hammer_connects(addr, stop, max_seconds=5.0, max_attempts=50000):
    """Connects to addr in a loop until stop is set (each connection closed at once with a RST,
    so no TIME_WAIT piles up). Returns [connected, refused]."""
    counts = [0, 0]

    def run():
        deadline = time.monotonic() + max_seconds
        while not stop.is_set() and time.monotonic() < deadline and sum(counts) < max_attempts:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(0.5)
            try:
                s.connect(addr)
                counts[0] += 1
            except OSError:
                counts[1] += 1
            reset_close(s)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, counts


def test_removing_a_listener_while_clients_connect_to_it(upstream, proxy):
    """Clients keep connecting to a listener while a reload removes it: tollgate stays up, the
    listener closes, the other one serves. (The removed listener's object must outlive any
    accept event already fetched by the worker's loop in the same batch as the reload.)"""
    tg = proxy(upstream, routes=routed("a", "/A"), workers=2)
    base = copy.deepcopy(tg.config)
    for cycle in range(8):
        second = ("127.0.0.1", free_port())
        cfg = copy.deepcopy(base)
        cfg["listen"].append({"addr": f"{second[0]}:{second[1]}"})
        r, body = post_reload(tg, cfg)
        assert r.status == 200, body
        stop = threading.Event()
        t, counts = hammer_connects(second, stop)
        try:
            time.sleep(0.05)
            try:
                r, body = post_reload(tg, base)
            except (OSError, http.Closed) as e:
                r = e
            time.sleep(0.05)
        finally:
            stop.set()
            t.join(5)
        rc = tg.proc.poll()
        assert rc is None, f"cycle {cycle}: tollgate died (exit {rc}) when a reload removed a " \
                           f"listener that clients were connecting to ({counts[0]} connected, " \
                           f"{counts[1]} refused); reload reply: {r!r}\n{tg.stderr()[-2000:]}"
        assert r.status == 200, r
        assert counts[0] > 0, "the hammer never reached the listener"
        wait_until(lambda: not can_connect(second), 2, what="the removed listener to close")
        with Client(tg.addr) as c:
            assert which_prefix(c.get(f"/after{cycle}"), f"/after{cycle}") == "/A"


# --- 5. upstream pools -----------------------------------------------------------------------

def node_status(tg):
    (svc,) = status(tg)["services"]
    (node,) = svc["nodes"]
    return node


def test_unchanged_node_keeps_pool_and_counters(upstream, proxy):
    tg = proxy(upstream, routes=routed("a", "/A"))
    with Client(tg.addr) as c:
        for i in range(3):
            which_prefix(c.get(f"/x{i}"), f"/x{i}")
    conn0 = upstream.last.conn_id
    # node counters are updated when a transaction ends, just after its last byte is written
    before = wait_until(lambda: (lambda n: n if n["requests"] == 3 else None)(node_status(tg)),
                        3, what="3 requests on the node in /status")
    assert before["idle_connections"] == 1, before

    cfg = copy.deepcopy(tg.config)
    cfg["routes"] = routed("b", "/B")
    cfg["services"]["backend"]["nodes"][0]["weight"] = 3  # weight is not part of the pool key
    r, body = post_reload(tg, cfg)
    assert r.status == 200, body
    after = node_status(tg)
    assert after["requests"] == 3 and after["idle_connections"] == 1, after
    assert after["weight"] == 3, after
    with Client(tg.addr) as c:
        assert which_prefix(c.get("/y"), "/y") == "/B"
    assert upstream.last.conn_id == conn0, "the pooled upstream connection was not kept"
    assert upstream.connections == 1 and upstream.closed_by_peer == 0
    wait_until(lambda: node_status(tg)["requests"] == 4, 3, what="the node's request count to "
               "go on from where it was")


@pytest.mark.parametrize("change", ["url", "connect_timeout"])
def test_changed_node_closes_old_pool(upstream, proxy, change):
    tg = proxy(upstream, routes=routed("a", "/A"))
    with Client(tg.addr) as c:
        which_prefix(c.get("/x"), "/x")
    conn0 = upstream.last.conn_id
    assert upstream.open_connections == 1

    cfg = copy.deepcopy(tg.config)
    node = cfg["services"]["backend"]["nodes"][0]
    if change == "url":
        node["url"] = upstream.url + "/v2"  # same server, but another node
        prefix = "/v2/A"
    else:
        cfg["services"]["backend"]["timeouts"]["connect"] = "2s"
        prefix = "/A"
    r, body = post_reload(tg, cfg)
    assert r.status == 200, body
    wait_until(lambda: upstream.closed_by_peer == 1, 3, interval=0.02,
               what="the old node's pooled connection to close")
    with Client(tg.addr) as c:
        assert which_prefix(c.get("/y"), "/y", (prefix,)) == prefix
    assert upstream.last.conn_id != conn0 and upstream.connections == 2


# --- 7. /status ------------------------------------------------------------------------------

def test_status_shows_hash_load_time_and_reload_counts(upstream, proxy):
    tg = proxy(upstream, routes=routed("a", "/A"))
    st0 = status(tg)["config"]
    assert re.fullmatch(r"[0-9a-f]{16}", st0["hash"]), st0
    assert st0["file"] == tg.config_path
    assert st0["reloads"] == {"ok": 0, "failed": 0}
    cfg_a = copy.deepcopy(tg.config)
    cfg_b = copy.deepcopy(tg.config)
    cfg_b["routes"] = routed("b", "/B")
    time.sleep(0.05)

    t_before = time.time()
    r, body = post_reload(tg, cfg_b)
    t_after = time.time()
    assert r.status == 200, body
    st1 = status(tg)["config"]
    assert st1["hash"] == body["hash"] != st0["hash"]
    assert t_before - 0.01 <= parse_ts(st1["loaded_at"]) <= t_after + 0.01, (st1, t_before)
    assert parse_ts(st1["loaded_at"]) > parse_ts(st0["loaded_at"])
    assert st1["reloads"] == {"ok": 1, "failed": 0}

    r, _ = post_reload(tg, "routes: [\n")  # broken: nothing changes but the failure count
    assert r.status == 400
    st2 = status(tg)["config"]
    assert (st2["hash"], st2["loaded_at"]) == (st1["hash"], st1["loaded_at"])
    assert st2["reloads"] == {"ok": 1, "failed": 1}

    sighup(tg, cfg_a, ok_before=1)
    st3 = status(tg)["config"]
    assert st3["hash"] == st0["hash"], "the same file must give the same hash"
    assert st3["reloads"] == {"ok": 2, "failed": 1}
    assert reloads_metric(tg, "success") == 2 and reloads_metric(tg, "failure") == 1
