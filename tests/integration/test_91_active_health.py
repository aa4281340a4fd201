"""Active health checks (issue 4 §2): the control thread probes every node of a service with
health.active. HTTP probes mark a node down after `fall` failed probes and bring it back after
`rise` good ones; the probe load does not grow with the worker count; JSON-RPC probes read each
node's head block, and a node too far behind the best one (real anvil nodes), stalled, or
syncing is lagging and gets no traffic until it catches up.

State is observed three ways: the transition lines of the diagnostic log, the per-node "state"
of /status (healthy, down, lagging...), and the traffic itself: a node that is down or lagging
must not answer a request."""

import json
import os
import ssl
import threading
import time

import pytest

from tglib import Client, chunked_response, echo, response, service
from tglib.anvil import Anvils
from tglib.net import free_port, wait_until

ROUTES = [{"name": "all", "match": {"path": "/"}, "service": "backend"}]


def logged(tg, text):
    """Whether a diagnostic log line contains text."""
    return any(text in line.get("msg", "") for line in tg.log_lines())


def status_node(tg, port):
    """The /status entry of the node listening on port."""
    for s in tg.admin("/status").json()["services"]:
        for n in s["nodes"]:
            if n["address"].endswith(f":{port}"):
                return n
    raise AssertionError(f"no node on port {port} in /status")


def node_state(tg, port):
    """healthy, down, ejected or lagging, as /status reports it."""
    return status_node(tg, port)["state"]


def probes(u, path="/healthz"):
    with u._cv:
        return [r for r in u.requests if r.target == path]


def traffic(u, path="/healthz"):
    with u._cv:
        return [r for r in u.requests if r.target != path]


def active(**kw):
    cfg = {"interval": "200ms", "timeout": "150ms", "rise": 2, "fall": 3}
    cfg.update(kw)
    return {"active": cfg, "passive": {"enabled": False}}


def test_http_probe_marks_a_node_down_then_up(upstreams, tollgate):
    sick = threading.Event()

    def flaky(req, conn):
        if req.target == "/healthz" and sick.is_set():
            return response(500, b"sick")
        return echo(req, conn)

    good, bad = upstreams(), upstreams(flaky)
    tg = tollgate(services={"backend": service(good.url, bad.url, balance="round_robin",
                                               health=active(http={"path": "/healthz"}))},
                  routes=ROUTES)
    wait_until(lambda: len(probes(bad)) >= 2 and len(probes(good)) >= 2, 3,
               what="two probes on each node")
    p = probes(bad)[0]
    assert p.method == "GET" and p.header("host") == f"127.0.0.1:{bad.port}", p
    assert p.header("user-agent") == "tollgate-health" and p.header("connection") == "close", p
    assert node_state(tg, bad.port) == "healthy"

    sick.set()
    t0, n0 = time.monotonic(), len(probes(bad))
    wait_until(lambda: logged(tg, f"node {bad.url} is down"), 5, interval=0.02,
               what="the node to be marked down")
    took = time.monotonic() - t0
    assert len(probes(bad)) - n0 >= 3, "down only after fall (3) failed probes"
    assert took < 4 * 0.2 + 1.0, f"marked down after {took:.2f}s"
    st = status_node(tg, bad.port)
    assert st["state"] == "down" and st["last_error"] == "probe: status 500", st
    assert st["probe"]["ok"] is False and st["probe"]["status"] == 500, st
    assert node_state(tg, good.port) == "healthy"

    # A node that is down gets no requests; the other one takes them all.
    before = len(traffic(bad))
    with Client(tg.addr) as c:
        for i in range(20):
            assert c.get(f"/r/{i}").status == 200
    assert len(traffic(bad)) == before, "a node marked down received requests"
    assert logged(tg, "failed probes (status 500)")

    sick.clear()
    t1, n1 = time.monotonic(), len(probes(bad))
    wait_until(lambda: logged(tg, f"node {bad.url} is up"), 5, interval=0.02,
               what="the node to come back")
    assert len(probes(bad)) - n1 >= 2, "up only after rise (2) good probes"
    assert time.monotonic() - t1 < 3 * 0.2 + 1.0
    assert node_state(tg, bad.port) == "healthy"
    before = len(traffic(bad))
    with Client(tg.addr) as c:
        for i in range(20):
            assert c.get(f"/s/{i}").status == 200
    assert len(traffic(bad)) - before >= 5, "the node that came back takes its share again"


def test_http_probe_refused_and_expect(upstreams, tollgate, sockdir):
    """A node that refuses connections goes down; `expect` decides which statuses pass and the
    node's base path prefixes the probe path; unix socket nodes are probed too."""
    teapot = upstreams(lambda req, conn: response(418, b"short and stout", reason="Teapot"))
    local = upstreams(unix_path=os.path.join(sockdir, "node.sock"))
    dead = free_port()
    tg = tollgate(services={"backend": service(
        teapot.url + "/base", f"http://127.0.0.1:{dead}", local.url,
        health=active(fall=2, http={"method": "HEAD", "path": "/ping", "expect": [418, "2xx"]}))},
        routes=ROUTES)
    wait_until(lambda: logged(tg, f"node http://127.0.0.1:{dead} is down"), 5, interval=0.02,
               what="the refusing node to be marked down")
    assert logged(tg, "connect refused")
    assert node_state(tg, dead) == "down"
    wait_until(lambda: len(probes(teapot, "/base/ping")) >= 3, 3, what="three probes")
    assert all(r.method == "HEAD" for r in probes(teapot, "/base/ping"))
    assert not logged(tg, f"node {teapot.url}/base is down"), "418 is expected: not a failure"
    assert node_state(tg, teapot.port) == "healthy"
    wait_until(lambda: len(probes(local, "/ping")) >= 3, 3, what="three probes on the unix node")
    assert probes(local, "/ping")[0].header("host") == "localhost"
    assert not logged(tg, f"node {local.url} is down")


def test_probe_load_does_not_depend_on_workers(upstreams, tollgate):
    """The control thread probes, not the workers: over the same window, each node of a
    tollgate with 1, 2 or 4 workers gets the same number of probes."""
    runs = []
    for workers in (1, 2, 4):
        a, b = upstreams(), upstreams()
        tollgate(workers=workers, routes=ROUTES,
                 services={"backend": service(a.url, b.url,
                                              health=active(http={"path": "/healthz"}))})
        runs.append((workers, a, b))
    time.sleep(0.5)  # every instance is past its first round
    t0 = time.monotonic()
    time.sleep(2.0)
    t1 = time.monotonic()
    counts = {}
    for workers, a, b in runs:
        counts[workers] = [len([r for r in probes(u) if t0 <= r.time < t1]) for u in (a, b)]
    flat = [n for c in counts.values() for n in c]
    assert all(8 <= n <= 12 for n in flat), f"about 10 probes per node in 2 s at 200ms: {counts}"
    assert max(flat) - min(flat) <= 1, f"probes per node by worker count: {counts}"


def test_https_probe_and_bad_certificate(upstreams, tollgate, pki):
    """Probes of https nodes go over TLS with the service's CA; a node whose certificate the
    service does not trust is down."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.cert, pki.key)
    ctx.set_alpn_protocols(["http/1.1"])
    sick = threading.Event()

    def flaky(req, conn):
        if req.target == "/healthz" and sick.is_set():
            return response(500, b"sick")
        return echo(req, conn)

    up = upstreams(flaky, ssl_context=ctx)
    trusted = f"https://127.0.0.1:{up.port}"
    tg = tollgate(routes=ROUTES, services={
        "backend": service(trusted, tls={"ca": pki.ca_pem},
                           health=active(fall=2, http={"path": "/healthz"})),
        "other": service(trusted, tls={"ca": pki.other_ca_pem},
                         health=active(fall=2, http={"path": "/other"}))})
    wait_until(lambda: len(probes(up)) >= 3, 3, what="three probes over TLS")
    wait_until(lambda: logged(tg, "service other: node"), 3, interval=0.02,
               what="the untrusted node to be down")
    assert logged(tg, "TLS handshake"), tg.stderr()
    assert not probes(up, "/other"), "no request goes out before the certificate is trusted"
    assert not logged(tg, "service backend: node")
    sick.set()
    wait_until(lambda: logged(tg, f"service backend: node {trusted} is down"), 3, interval=0.02,
               what="the https node to be down after its 500s")


def test_reload_keeps_probe_state_and_turning_checks_off_clears_it(upstreams, tollgate):
    """A node kept by a reload keeps its probe state (a down node stays down, without a new
    transition); a reload without health.active clears it and the node takes traffic."""
    good = upstreams()
    bad = upstreams(lambda req, conn: response(500, b"no") if req.target == "/healthz"
                    else echo(req, conn))
    tg = tollgate(routes=ROUTES, services={"backend": service(
        good.url, bad.url, balance="round_robin", health=active(fall=2, http={"path": "/healthz"}))})
    wait_until(lambda: logged(tg, f"node {bad.url} is down"), 3, interval=0.02,
               what="the node to be down")

    tg.config["services"]["backend"]["health"]["active"]["interval"] = "300ms"
    tg.write_config()
    assert tg.admin("/reload", method="POST").status == 200
    n0 = len(probes(bad))
    time.sleep(0.8)
    assert len(probes(bad)) - n0 >= 2, "probing goes on after the reload"
    downs = [x for x in tg.log_lines() if f"node {bad.url} is down" in x.get("msg", "")]
    assert len(downs) == 1 and not logged(tg, f"node {bad.url} is up"), "state kept"
    assert node_state(tg, bad.port) == "down"
    before = len(traffic(bad))
    with Client(tg.addr) as c:
        for i in range(10):
            assert c.get(f"/a/{i}").status == 200
    assert len(traffic(bad)) == before

    del tg.config["services"]["backend"]["health"]["active"]
    tg.write_config()
    assert tg.admin("/reload", method="POST").status == 200
    wait_until(lambda: logged(tg, f"node {bad.url} is no longer down"), 3, interval=0.02,
               what="the down state to be cleared")
    n1 = len(probes(bad))
    with Client(tg.addr) as c:
        for i in range(10):
            assert c.get(f"/b/{i}").status == 200
    assert len(traffic(bad)) - before >= 4, "the node takes traffic again"
    time.sleep(0.5)
    assert len(probes(bad)) == n1, "no probes without health.active"


# ---- JSON-RPC ------------------------------------------------------------------------------


def rpc_answer(req, results):
    """The answer to a JSON-RPC request (one call or a batch) from results[method]; a method
    results does not name gets -32601, as from a node that does not have it."""
    doc = json.loads(req.body)
    calls = doc if isinstance(doc, list) else [doc]
    missing = {"code": -32601, "message": "the method does not exist"}
    out = [{"jsonrpc": "2.0", "id": c["id"], "result": results[c["method"]]}
           if c["method"] in results else {"jsonrpc": "2.0", "id": c["id"], "error": missing}
           for c in calls]
    body = json.dumps(out if isinstance(doc, list) else out[0]).encode()
    return response(200, body, headers=[("Content-Type", "application/json")])


def test_jsonrpc_syncing_node_is_lagging(upstreams, tollgate):
    """With syncing: true the probe asks eth_syncing too (in a batch, with the finalized block,
    which these nodes answer with an error: that fails nothing); a node that reports syncing is
    lagging even at the best head, and returns once it answers false. A JSON-RPC node whose
    probe fails is down, not lagging."""
    state = {"syncing": False, "fail": False}

    def node(req, conn):
        if state["fail"]:
            return response(503, b"busy", reason="Service Unavailable")
        return rpc_answer(req, {"eth_blockNumber": "0x10", "eth_syncing":
                                {"currentBlock": "0x10", "highestBlock": "0x20"}
                                if state["syncing"] else False})

    steady = upstreams(lambda req, conn: rpc_answer(req, {"eth_blockNumber": "0x10",
                                                          "eth_syncing": False}))
    flaky = upstreams(node)
    tg = tollgate(services={"backend": service(
        steady.url, flaky.url, kind="jsonrpc",
        health=active(jsonrpc={"max_block_lag": 2, "syncing": True}))}, routes=ROUTES)
    wait_until(lambda: len(flaky.requests) >= 2, 3, what="two probes")
    p = flaky.requests[0]
    assert p.method == "POST" and p.target == "/" and \
        p.header("content-type") == "application/json", p
    assert [c["method"] for c in json.loads(p.body)] == \
        ["eth_blockNumber", "eth_syncing", "eth_getBlockByNumber"]

    state["syncing"] = True
    wait_until(lambda: logged(tg, f"node {flaky.url} is lagging"), 5, interval=0.02,
               what="the syncing node to be lagging")
    assert logged(tg, "syncing")
    assert node_state(tg, flaky.port) == "lagging"
    state["syncing"] = False
    wait_until(lambda: logged(tg, f"node {flaky.url} caught up"), 5, interval=0.02,
               what="the node to catch up")
    assert node_state(tg, flaky.port) == "healthy"

    state["fail"] = True
    wait_until(lambda: logged(tg, f"node {flaky.url} is down"), 5, interval=0.02,
               what="the failing node to be down")
    assert logged(tg, "(status 503)")
    assert node_state(tg, flaky.port) == "down"
    lagging = [x for x in tg.log_lines() if f"node {flaky.url} is lagging" in x.get("msg", "")]
    assert len(lagging) == 1, "a failing probe makes the node down, not lagging"


def test_probe_timeout_chunked_answer_and_node_removed_mid_probe(upstreams, tollgate):
    """A node that never answers is down after `fall` timeouts; a JSON-RPC answer may come
    chunked and in small pieces; a reload that drops a node whose probe is in flight leaves the
    probe to end on its own (the sanitizer build checks nothing is used after it is freed)."""
    def slow_chunked(req, conn):
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "result": "0x2a"}).encode()
        conn.send_slowly(chunked_response([body[:9], body[9:]]), step=7, pause=0.001)
        conn.close()

    hung = upstreams(lambda req, conn: conn.hang(limit=5))
    chunky = upstreams(slow_chunked)
    tg = tollgate(routes=ROUTES, services={"backend": service(
        hung.url, chunky.url, kind="jsonrpc", health=active(fall=2, jsonrpc={}))})
    wait_until(lambda: logged(tg, f"node {hung.url} is down"), 3, interval=0.02,
               what="the silent node to be down")
    assert logged(tg, "(timeout)"), tg.stderr()
    assert len(chunky.requests) >= 2
    assert not logged(tg, f"node {chunky.url} is down"), tg.stderr()
    assert not logged(tg, f"node {chunky.url} is lagging"), tg.stderr()

    # The hung node's probe is in flight most of the time (timeout 150ms of every 200ms).
    tg.config["services"]["backend"]["nodes"] = [{"url": chunky.url}]
    tg.write_config()
    assert tg.admin("/reload", method="POST").status == 200
    n0 = len(hung.requests)
    time.sleep(0.6)
    assert len(hung.requests) - n0 <= 1, "a node removed by a reload is not probed any more"
    with Client(tg.addr) as c:
        body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "eth_blockNumber"}).encode()
        r = c.get("/", method="POST", body=body)
        assert r.status == 200 and r.json()["result"] == "0x2a", r


@pytest.fixture
def anvils(tmp_path):
    """anvils(n) -> n started anvil nodes with a few blocks each, stopped by PID at the end."""
    made = Anvils(str(tmp_path))
    yield made
    made.close()


class Miner:
    """Produces one block every `every` seconds on each node in `producing` (a test thread
    standing in for block production), until stopped; bounded to 30 s."""

    def __init__(self, nodes, every=0.1):
        self.producing = list(nodes)
        self.every = every
        self.stopped = threading.Event()
        self.lock = threading.Lock()  # held while a block is mined on each producing node
        self.errors = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        deadline = time.monotonic() + 30
        while not self.stopped.wait(self.every) and time.monotonic() < deadline:
            with self.lock:
                for a in self.producing:
                    try:
                        a.mine()
                    except Exception as e:  # noqa: BLE001 - reported by stop()
                        self.errors.append(repr(e))

    def pause(self, node):
        """node produces no block from now on."""
        with self.lock:
            self.producing.remove(node)

    def resume(self, node):
        with self.lock:
            self.producing.append(node)

    def stop(self):
        self.stopped.set()
        self.thread.join(5)
        assert not self.errors, self.errors


def rpc_through(tg, n, max_lag, nodes):
    """Sends n eth_blockNumber calls through tollgate; each answer must be within max_lag of the
    best head seen just before it. Returns the heads answered."""
    heads = []
    with Client(tg.addr, timeout=5) as c:
        for i in range(n):
            best = max(a.head() for a in nodes)
            body = json.dumps({"jsonrpc": "2.0", "id": i, "method": "eth_blockNumber",
                               "params": []}).encode()
            r = c.get("/", method="POST", body=body,
                      headers=[("Content-Type", "application/json")])
            assert r.status == 200, r
            head = int(r.json()["result"], 16)
            assert head >= best - max_lag, \
                f"request {i} answered head {head}, best was {best}: a lagging node served it"
            heads.append(head)
    return heads


def test_jsonrpc_block_lag_with_anvil(anvils, tollgate):
    a, b, c = anvils(3)
    miner = Miner([a, b, c])
    try:
        tg = tollgate(services={"backend": service(
            a.url, b.url, c.url, kind="jsonrpc", balance="round_robin",
            health=active(fall=2, jsonrpc={"max_block_lag": 3}))}, routes=ROUTES)
        time.sleep(0.6)  # a few rounds with every node in step
        assert not logged(tg, "is lagging"), tg.stderr()
        assert all(node_state(tg, x.port) == "healthy" for x in (a, b, c))

        miner.pause(c)  # c stops producing blocks
        stopped_at = c.head()
        wait_until(lambda: logged(tg, f"node {c.url} is lagging"), 5, interval=0.02,
                   what="the stalled anvil to be marked lagging")
        best = max(a.head(), b.head())
        assert best - stopped_at > 3, (best, stopped_at)
        assert logged(tg, "blocks behind")
        st = status_node(tg, c.port)
        assert st["state"] == "lagging" and "blocks behind" in st["last_error"], st
        assert st["head_block"] <= stopped_at and st["probe"]["ok"] is True, st
        assert status_node(tg, a.port)["head_block"] > stopped_at + 3
        assert node_state(tg, a.port) == "healthy"
        rpc_through(tg, 30, 3, [a, b])

        # c catches up (and produces again): it returns to rotation.
        c.mine(max(a.head(), b.head()) - c.head() + 1)
        miner.resume(c)
        wait_until(lambda: logged(tg, f"node {c.url} caught up"), 5, interval=0.02,
                   what="the anvil to catch up")
        assert node_state(tg, c.port) == "healthy"
    finally:
        miner.stop()
    # Production stopped everywhere: c moves 2 blocks ahead (within max_block_lag of the
    # others), so answers with its head show that it takes traffic again.
    top = max(x.head() for x in (a, b, c))
    for x in (a, b, c):
        if x.head() < top:
            x.mine(top - x.head())
    c.mine(2)
    time.sleep(0.5)  # a couple of rounds see the new heads
    heads = rpc_through(tg, 12, 3, [a, b, c])
    assert top + 2 in heads, f"c (head {top + 2}) answered none of {heads}"
    assert not logged(tg, f"node {a.url} is lagging")


def test_jsonrpc_stalled_node_is_lagging(anvils, tollgate):
    """No lag bound (max_block_lag: 0), but stall_after: a head that has not moved for 1 s while
    the others moved is lagging, even when it is only a block or two behind."""
    a, b = anvils(2)
    miner = Miner([a, b], every=0.3)
    try:
        tg = tollgate(services={"backend": service(
            a.url, b.url, kind="jsonrpc",
            health=active(jsonrpc={"max_block_lag": 0, "stall_after": "1s"}))}, routes=ROUTES)
        time.sleep(0.6)
        assert not logged(tg, "is lagging")
        miner.pause(b)
        t0 = time.monotonic()
        wait_until(lambda: logged(tg, f"node {b.url} is lagging"), 5, interval=0.02,
                   what="the stalled node to be lagging")
        assert time.monotonic() - t0 >= 0.6, "stall_after is 1s"
        assert logged(tg, "has not moved for")
        assert node_state(tg, b.port) == "lagging"
        b.mine(max(a.head() - b.head(), 0) + 1)
        miner.resume(b)
        wait_until(lambda: logged(tg, f"node {b.url} caught up"), 5, interval=0.02,
                   what="the node to move again")
    finally:
        miner.stop()
