"""Logging never slows request handling (issue 3): with stdout a pipe nobody reads, requests keep
their pace and lines are dropped and counted; once the pipe drains, lines flow again. The
diagnostic log on stderr is JSON lines, filtered by log.level (also after a reload)."""

import calendar
import json
import os
import re
import select
import threading
import time

from tglib import Client, is_sanitized, prom, service
from tglib.net import wait_until

TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LEVELS = ("debug", "info", "warn", "error")








def dropped(tg):
    r = tg.admin("/metrics")
    assert r.status == 200, r
    return prom.parse(r.body).value("tollgate_log_lines_dropped_total")


class PipeReader:
    """Drains the read end of a pipe on a thread once started, keeping everything read."""

    def __init__(self, fd):
        self.fd = fd
        self.data = bytearray()
        self.stop = False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _run(self):
        while not self.stop:
            r, _, _ = select.select([self.fd], [], [], 0.05)
            if not r:
                continue
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                return
            with self.lock:
                self.data += chunk

    def lines(self):
        with self.lock:
            text = bytes(self.data)
        return text.split(b"\n")[:-1]  # complete lines only

    def close(self):
        self.stop = True
        self.thread.join(2)


def test_unread_stdout_pipe_does_not_slow_requests(upstream, tollgate):
    rfd, wfd = os.pipe()
    reader = None
    try:
        tg = tollgate(start=False, services={"backend": service(upstream.url)},
                      routes=[{"name": "all", "match": {"path": "/"}, "service": "backend"}],
                      log={"access": {"buffer": "64kb"}})
        tg.stdout_target = wfd
        tg.start()
        os.close(wfd)  # tollgate holds the only write end; the test never reads until later
        wfd = None

        n = 1000 if is_sanitized() else 3000
        slowest = 0.0
        done = 0
        t_start = time.monotonic()
        with Client(tg.addr, timeout=5) as c:
            for i in range(n):
                t0 = time.monotonic()
                r = c.get(f"/blocked/{i}")
                took = time.monotonic() - t0
                assert r.status == 200, r
                slowest = max(slowest, took)
                done += 1
                if time.monotonic() - t_start > 40:
                    break
        elapsed = time.monotonic() - t_start
        assert done == n, f"only {done} of {n} requests in {elapsed:.1f}s"
        assert slowest < 1.0, f"a request took {slowest:.3f}s with stdout blocked"
        # 64 KiB of pipe plus a 64 KiB ring hold a few hundred lines; the rest must be dropped.
        lost = wait_until(lambda: dropped(tg) or None, 5, interval=0.05,
                          what="tollgate_log_lines_dropped_total to rise")
        assert 0 < lost <= n
        assert lost >= n // 2, f"only {lost} of {n} lines dropped with stdout blocked"

        # Drain the pipe: what was queued comes out (the writer was blocked with a full ring),
        # then new requests are logged again.
        reader = PipeReader(rfd).start()
        last = [-1, time.monotonic()]

        def backlog_written():
            k = len(reader.lines())
            if k != last[0]:
                last[:] = [k, time.monotonic()]
            return k > 0 and time.monotonic() - last[1] > 0.3

        wait_until(backlog_written, 5, interval=0.02, what="the backlog to come out of the pipe")
        lost = dropped(tg)
        with Client(tg.addr) as c:
            for i in range(20):
                assert c.get(f"/after/{i}").status == 200

        def after_lines():
            got = [json.loads(ln) for ln in reader.lines()]
            return got if sum(1 for x in got if x["path"].startswith("/after/")) == 20 else None

        got = wait_until(after_lines, 5, interval=0.05, what="the new access lines in the pipe")
        # Whole lines only: a dropped line is dropped entirely, never cut.
        assert all(set(x) >= {"ts", "request_id", "path", "status"} for x in got)
        blocked = [x for x in got if x["path"].startswith("/blocked/")]
        assert 0 < len(blocked) < n
        assert len(blocked) + lost >= n - 5, (len(blocked), lost, n)
        assert dropped(tg) == lost, "lines were dropped after the pipe drained"
    finally:
        if reader is not None:
            reader.close()
        if wfd is not None:
            os.close(wfd)
        os.close(rfd)


def test_unread_stdout_keeps_workers_at_pace_with_two_clients(upstream, tollgate):
    """Two workers, two concurrent keep-alive clients, stdout blocked: both clients finish their
    bounded loops at pace, lines are dropped, and a graceful stop does not hang on the pipe."""
    rfd, wfd = os.pipe()
    try:
        tg = tollgate(start=False, workers=2, services={"backend": service(upstream.url)},
                      routes=[{"name": "all", "match": {"path": "/"}, "service": "backend"}],
                      log={"access": {"buffer": "64kb"}})
        tg.stdout_target = wfd
        tg.start()
        os.close(wfd)
        wfd = None
        n = 500 if is_sanitized() else 1500
        results = []

        def client(k):
            slow = 0.0
            ok = 0
            deadline = time.monotonic() + 40
            try:
                with Client(tg.addr, timeout=5) as c:
                    for i in range(n):
                        t0 = time.monotonic()
                        if c.get(f"/c{k}/{i}").status == 200:
                            ok += 1
                        slow = max(slow, time.monotonic() - t0)
                        if time.monotonic() > deadline:
                            break
            except Exception as e:  # noqa: BLE001 - reported below
                results.append((k, repr(e), slow))
                return
            results.append((k, ok, slow))

        threads = [threading.Thread(target=client, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(r[1] for r in results) == [n, n], results
        assert max(r[2] for r in results) < 1.0, results
        assert wait_until(lambda: dropped(tg) or None, 5, what="drops") > 0
        # A graceful stop does not hang on the blocked stdout either.
        t0 = time.monotonic()
        rc = tg.stop(timeout=10)
        assert rc == 0 and time.monotonic() - t0 < 5, (rc, time.monotonic() - t0, tg.stderr())
    finally:
        if wfd is not None:
            os.close(wfd)
        os.close(rfd)


def diag(tg):
    """Every stderr line parsed as JSON (a non-JSON line fails the test)."""
    out = []
    for line in tg.stderr().splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            raise AssertionError(f"diagnostic line is not JSON: {line!r}") from None
        out.append(obj)
    return out


def check_shape(obj):
    assert isinstance(obj.get("ts"), str) and TS_RE.match(obj["ts"]), obj
    ts = calendar.timegm(time.strptime(obj["ts"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert abs(ts - time.time()) < 120, obj
    assert obj.get("level") in LEVELS, obj
    assert isinstance(obj.get("msg"), str) and obj["msg"], obj


def test_diagnostic_lines_are_json(upstream, proxy):
    tg = proxy(upstream)
    with Client(tg.addr) as c:
        assert c.get("/").status == 200
    good = open(tg.config_path).read()
    tg.write_config("workers: 1\nlisten: [\n")  # a YAML syntax error
    r = tg.admin("/reload", method="POST")
    assert r.status == 400, r
    tg.write_config(good)
    assert tg.admin("/reload", method="POST").status == 200
    lines = wait_until(lambda: (lambda d: d if any(x["level"] == "error" for x in d) and any(
        "reloaded" in x["msg"] for x in d) else None)(diag(tg)), 5, interval=0.05,
        what="the reload lines on stderr")
    for obj in lines:
        check_shape(obj)
    levels = {x["level"] for x in lines}
    assert {"info", "error"} <= levels, lines
    errors = [x for x in lines if x["level"] == "error"]
    assert any(tg.config_path in x["msg"] for x in errors), errors


def test_level_warn_suppresses_info_and_reload_changes_the_level(upstream, proxy):
    tg = proxy(upstream, log={"level": "warn"})
    with Client(tg.addr) as c:
        assert c.get("/").status == 200
    # A reload that changes workers warns (the count changes on restart only), at level warn.
    tg.config["workers"] = 2
    tg.write_config()
    r = tg.admin("/reload", method="POST")
    assert r.status == 200 and r.json()["warnings"], r
    lines = wait_until(lambda: (lambda d: d if any(x["level"] == "warn" for x in d)
                                else None)(diag(tg)), 5, interval=0.05, what="the warn line")
    time.sleep(0.3)
    lines = diag(tg)
    for obj in lines:
        check_shape(obj)
    assert [x["level"] for x in lines if x["level"] in ("debug", "info")] == [], lines
    assert any("workers" in x["msg"] for x in lines if x["level"] == "warn"), lines

    # Back to info: the next reload's info line is written.
    tg.config["log"]["level"] = "info"
    tg.write_config()
    assert tg.admin("/reload", method="POST").status == 200
    tg.config["log"]["access"] = {"sample": 1.0}  # any change: another reload, logged at info
    tg.write_config()
    assert tg.admin("/reload", method="POST").status == 200
    wait_until(lambda: any(x["level"] == "info" and "reloaded" in x["msg"] for x in diag(tg)), 5,
               interval=0.05, what="an info line after the level went back to info")


def test_diagnostics_still_written_while_stdout_is_blocked(upstream, tollgate):
    """A stdout nobody reads must not silence stderr: the error lines of a failed reload reach
    the diagnostic log while the access log is blocked (accesslog.h: "a stdout that nobody
    reads stalls only the writer"; the writer drains diagnostics first for that reason)."""
    rfd, wfd = os.pipe()
    try:
        tg = tollgate(start=False, services={"backend": service(upstream.url)},
                      routes=[{"name": "all", "match": {"path": "/"}, "service": "backend"}],
                      log={"access": {"buffer": "64kb"}})
        tg.stdout_target = wfd
        tg.start()
        os.close(wfd)
        wfd = None
        n = 600 if is_sanitized() else 1500
        with Client(tg.addr, timeout=5) as c:
            for i in range(n):  # fills the pipe and the ring: the writer blocks on stdout
                assert c.get(f"/fill/{i}").status == 200
        wait_until(lambda: dropped(tg) or None, 5, interval=0.05, what="stdout to be blocked")
        good = open(tg.config_path).read()
        tg.write_config("workers: 1\nlisten: [\n")
        r = tg.admin("/reload", method="POST")
        tg.write_config(good)
        assert r.status == 400, r
        wait_until(lambda: any(x["level"] == "error" for x in diag(tg)), 3, interval=0.05,
                   what="the failed reload's error line on stderr while stdout is blocked")
    finally:
        if wfd is not None:
            os.close(wfd)
        os.close(rfd)
