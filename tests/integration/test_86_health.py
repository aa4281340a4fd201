"""Admin health endpoints (issue 3): /healthz notices a worker loop that really stopped turning
(the test freezes one worker thread with ptrace), /readyz explains each check, and /status
reports per node what the traffic did."""

import ctypes
import errno
import os
import re
import threading
import time

import pytest

from tglib import Client, response, service
from tglib.net import wait_until

PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
WALL = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]








def thread_id(pid, name):
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().strip() == name:
                    return int(tid)
        except OSError:
            continue
    return None


def _ptrace(req, tid):
    if _libc.ptrace(req, tid, None, None) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"ptrace({req:#x}, {tid}): {os.strerror(e)}")


class Frozen:
    """Stops one thread (not its process) with PTRACE_SEIZE + PTRACE_INTERRUPT; detaching lets
    it run on. Must be used from a single thread (the tracer)."""

    def __init__(self, tid):
        self.tid = tid
        self.attached = False

    def freeze(self):
        _ptrace(PTRACE_SEIZE, self.tid)
        self.attached = True
        _ptrace(PTRACE_INTERRUPT, self.tid)
        pid, status = os.waitpid(self.tid, WALL)
        assert pid == self.tid and os.WIFSTOPPED(status), (pid, status)

    def thaw(self):
        if not self.attached:
            return
        self.attached = False
        try:
            _ptrace(PTRACE_DETACH, self.tid)
        except OSError as e:
            if e.errno != errno.ESRCH:
                raise
            # Seized but not stopped (the interrupt failed): a tracee detaches only when
            # stopped, and one left traced would stop at its next signal (the final SIGTERM).
            _ptrace(PTRACE_INTERRUPT, self.tid)
            os.waitpid(self.tid, WALL)
            _ptrace(PTRACE_DETACH, self.tid)


def ptrace_blocker():
    """Why ptrace cannot be used here, or None."""
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            scope = int(f.read())
    except OSError:
        scope = 0  # no Yama: the classic rules, and the test runs as the process's owner
    if scope >= 3:
        return f"kernel.yama.ptrace_scope={scope} forbids ptrace"
    if scope >= 1 and os.geteuid() != 0:
        return f"kernel.yama.ptrace_scope={scope} and not root"
    return None


def test_healthz_names_the_frozen_worker(upstream, proxy):
    why = ptrace_blocker()
    if why:
        pytest.skip(why)
    tg = proxy(upstream, workers=2, admin={"stuck_after": "1s"})
    r = tg.admin("/healthz")
    assert r.status == 200 and r.json() == {"status": "ok"}, r
    # Each worker names its own thread once it runs: wait for both names.
    tid = wait_until(lambda: thread_id(tg.pid, "tg-worker-0"), 5, what="thread tg-worker-0")
    other = wait_until(lambda: thread_id(tg.pid, "tg-worker-1"), 5, what="thread tg-worker-1")
    assert other != tid
    frozen = Frozen(tid)
    try:
        try:
            frozen.freeze()
        except OSError as e:
            if e.errno == errno.EPERM:
                pytest.skip(f"ptrace not permitted: {e}")
            raise
        t0 = time.monotonic()

        def stuck():
            r = tg.admin("/healthz")
            return r if r.status == 503 else None

        r = wait_until(stuck, 5, interval=0.1, what="/healthz to turn 503")
        took = time.monotonic() - t0
        doc = r.json()
        assert doc["status"] == "stuck", doc
        assert [w["worker"] for w in doc["stuck_workers"]] == [0], doc
        assert doc["stuck_workers"][0]["last_beat_ms_ago"] > 1000, doc
        assert took < 3, f"/healthz took {took:.1f}s to notice"
        # The control thread still answers everything else while worker 0 is frozen.
        ready = tg.admin("/readyz")
        assert ready.status == 200 and ready.json()["ready"] is True, ready
        assert tg.admin("/metrics").status == 200
        assert tg.admin("/status").json()["workers"] == 2
        # Still stuck a little later (no flapping while frozen).
        time.sleep(0.5)
        again = tg.admin("/healthz")
        assert again.status == 503, again
        assert again.json()["stuck_workers"][0]["last_beat_ms_ago"] > \
            doc["stuck_workers"][0]["last_beat_ms_ago"]
    finally:
        frozen.thaw()
    t1 = time.monotonic()
    wait_until(lambda: tg.admin("/healthz").status == 200, 3, interval=0.1,
               what="/healthz back to 200 after the worker resumed")
    assert time.monotonic() - t1 < 3
    assert tg.admin("/healthz").json() == {"status": "ok"}
    # The thawed worker serves again: enough connections land on both workers.
    for _ in range(8):
        with Client(tg.addr, timeout=5) as c:
            assert c.get("/after").status == 200


def test_idle_workers_are_not_stuck(upstream, proxy):
    """No traffic for longer than stuck_after, set to its allowed minimum of 1 s: the heartbeat
    keeps /healthz at 200 on every probe (a liveness probe that fails on an idle, healthy
    process gets it restarted)."""
    tg = proxy(upstream, workers=2, admin={"stuck_after": "1s"})
    # Back-to-back probes for 3 s, so that short windows of false alarms are seen too.
    deadline = time.monotonic() + 3.0
    bad = []
    probes = 0
    while time.monotonic() < deadline and probes < 100000:
        r = tg.admin("/healthz")
        probes += 1
        if r.status != 200:
            bad.append(r.body.decode().strip())
    assert not bad, f"{len(bad)} of {probes} probes of an idle process failed, e.g. {bad[0]}"


def test_readyz_explains_each_check(upstream, proxy):
    tg = proxy(upstream)
    r = tg.admin("/readyz")
    assert r.status == 200, r
    assert r.header("content-type", "").startswith("application/json")
    doc = r.json()
    assert doc["ready"] is True
    checks = doc["checks"]
    assert checks["started"]["ok"] is True
    assert checks["not_draining"]["ok"] is True
    assert checks["usable_nodes"]["ok"] is True
    assert checks["usable_nodes"]["services"] == {"backend": {"usable": 1, "nodes": 1}}


def test_readyz_503_when_a_service_has_no_usable_node(upstream, proxy, dns_server):
    dns = dns_server({"node.test": ["127.0.0.1"]}, ttl=1)  # never.test gets NXDOMAIN
    tg = proxy(upstream, dns={"servers": [dns.server], "timeout": "300ms", "min_ttl": "1s"},
               services={"ghost": service("http://never.test:80")})
    r = tg.admin("/readyz")
    assert r.status == 503, r
    doc = r.json()
    assert doc["ready"] is False
    assert doc["checks"]["started"]["ok"] is True
    assert doc["checks"]["not_draining"]["ok"] is True
    nodes = doc["checks"]["usable_nodes"]
    assert nodes["ok"] is False and nodes.get("reason"), nodes
    assert nodes["services"]["ghost"] == {"usable": 0, "nodes": 1}, nodes
    assert nodes["services"]["backend"] == {"usable": 1, "nodes": 1}, nodes
    assert dns.count("never.test") >= 1
    assert tg.admin("/healthz").status == 200, "liveness does not depend on readiness"
    st = tg.admin("/status").json()
    ghost = [s for s in st["services"] if s["name"] == "ghost"][0]
    assert ghost["nodes"][0]["state"] == "unresolved", ghost

    # The name starts resolving: the service becomes usable and tollgate ready.
    dns.records["never.test."] = ["127.0.0.1"]
    wait_until(lambda: tg.admin("/readyz").status == 200, 10, interval=0.2,
               what="/readyz to turn 200 once the name resolves")
    nodes = tg.admin("/readyz").json()["checks"]["usable_nodes"]
    assert nodes["ok"] is True and nodes["services"]["ghost"]["usable"] == 1, nodes


ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_status_shape_and_node_counters(upstreams, tollgate):
    gate = threading.Event()

    def held(req, conn):
        gate.wait(10)
        return response(200, b"released")

    fast = upstreams()
    slow = upstreams(held)
    bad = upstreams(lambda req, conn: response(503, b"no", reason="Service Unavailable"))
    tg = tollgate(workers=2,
                  services={"fast": service(fast.url), "slow": service(slow.url, response="10s"),
                            "bad": service(bad.url)},
                  routes=[{"name": "f", "match": {"path": "/f/"}, "service": "fast"},
                          {"name": "s", "match": {"path": "/s/"}, "service": "slow"},
                          {"name": "b", "match": {"path": "/b/"}, "service": "bad"}])
    with Client(tg.addr) as c:
        for i in range(5):
            assert c.get(f"/f/{i}").status == 200
        assert c.get("/b/1").status == 503

    result = {}

    def client():
        with Client(tg.addr, timeout=15) as c:
            result["r"] = c.get("/s/held")

    t = threading.Thread(target=client)
    t.start()
    try:
        slow.wait_requests(1)

        def node(st, svc):
            s = [x for x in st["services"] if x["name"] == svc]
            assert len(s) == 1, st
            assert len(s[0]["nodes"]) == 1, s
            return s[0]["nodes"][0]

        st = wait_until(lambda: (lambda s: s if node(s, "slow")["in_flight"] == 1 else None)(
            tg.admin("/status").json()), 5, interval=0.05, what="in_flight 1 on the slow node")
        assert node(st, "slow")["requests"] == 0, "a request counts when it ends"
    finally:
        gate.set()
        t.join(15)
    assert result["r"].status == 200
    # Node counters are updated just after the response is written: poll for the slow one.
    wait_until(lambda: node(tg.admin("/status").json(), "slow")["requests"] == 1, 5,
               interval=0.05, what="the slow node's request to be counted")

    r = tg.admin("/status")
    assert r.status == 200 and r.header("content-type", "").startswith("application/json")
    st = r.json()
    assert set(st) >= {"version", "uptime_seconds", "started_at", "workers", "draining", "config",
                       "services"}, st
    assert isinstance(st["version"], str) and st["version"]
    assert isinstance(st["uptime_seconds"], (int, float)) and 0 <= st["uptime_seconds"] < 60
    assert ISO_RE.match(st["started_at"]), st
    assert st["workers"] == 2 and st["draining"] is False
    cfg = st["config"]
    assert cfg["file"] == tg.config_path
    assert re.match(r"^[0-9a-f]{16}$", cfg["hash"]), cfg
    assert ISO_RE.match(cfg["loaded_at"]) and cfg["reloads"] == {"ok": 0, "failed": 0}, cfg
    assert [s["name"] for s in st["services"]] == ["fast", "slow", "bad"] or \
        sorted(s["name"] for s in st["services"]) == ["bad", "fast", "slow"]

    f = node(st, "fast")
    assert set(f) >= {"address", "state", "weight", "tier", "in_flight", "idle_connections",
                      "requests", "errors", "latency_ewma_ms"}, f
    assert f["address"] == f"127.0.0.1:{fast.port}" and f["state"] == "healthy", f
    assert f["weight"] == 1 and f["tier"] == 0, f
    assert f["requests"] == 5 and f["errors"] == 0 and f["in_flight"] == 0, f
    assert f["idle_connections"] == 1, f
    assert f["latency_ewma_ms"] > 0, f
    s = node(st, "slow")
    assert s["requests"] == 1 and s["in_flight"] == 0 and s["errors"] == 0, s
    assert s["latency_ewma_ms"] > 0, s
    b = node(st, "bad")
    assert b["requests"] == 1 and b["errors"] == 1, b

    # A reload shows in the config block: new hash and load time, one more ok reload.
    tg.config["routes"].append({"name": "g", "match": {"path": "/g/"}, "service": "fast"})
    tg.write_config()
    time.sleep(0.01)
    rr = tg.admin("/reload", method="POST")
    assert rr.status == 200, rr
    st2 = tg.admin("/status").json()
    assert st2["config"]["hash"] == rr.json()["hash"] != cfg["hash"]
    assert st2["config"]["reloads"] == {"ok": 1, "failed": 0}
    assert st2["config"]["loaded_at"] >= cfg["loaded_at"]
    assert node(st2, "fast")["requests"] == 5, "an unchanged node keeps its counters"
