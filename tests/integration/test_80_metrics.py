"""Prometheus metrics (issue 3): /metrics parses with the strict parser of tglib.prom, and every
counter agrees with the traffic the test sent, byte for byte, with one worker and with two.

Each test waits until tollgate is at rest (quiet()), takes a snapshot and compares deltas, so the
probe connections the fixture makes while waiting for the listener do not matter; a request is
recorded just after its response is written, so counters are read only once the client's
connection is closed on tollgate's side.
"""

import math
import os
import threading
import time

from tglib import Client, build_request, is_sanitized, response, service
from tglib.net import free_port, reset_close, wait_until

ROUTES = [
    {"name": "ra", "match": {"path": "/a/"}, "service": "sa"},
    {"name": "rb", "match": {"path": "/b/"}, "service": "sb"},
    {"name": "rc", "match": {"path": "/c/"}, "service": "sc"},
    {"name": "rd", "match": {"path": "/d/"}, "service": "sd"},
    {"name": "re", "match": {"path": "/e/"}, "service": "se"},
]








def quiet(tg, settle=0.3):
    """Waits until tollgate is at rest and returns a scrape to take deltas from: no client
    connection open, and the count of accepted connections unchanged for `settle` seconds. The
    fixture's readiness probes sit in the kernel's accept queue until a worker thread runs, so on
    a busy machine they may be accepted (and counted) after the first scrape."""
    state = {"m": None, "since": 0.0}

    def at_rest():
        m = tg.metrics()
        now = time.monotonic()
        prev = state["m"]
        if (prev is None or m.value("tollgate_active_connections") != 0 or
                m.value("tollgate_connections_total") !=
                prev.value("tollgate_connections_total")):
            state["m"], state["since"] = m, now
            return None
        return m if now - state["since"] >= settle else None

    return wait_until(at_rest, 10, interval=0.05, what="tollgate to be at rest")


def value0(m, name, **labels):
    """The value of one series, 0 when the series does not exist yet."""
    try:
        return m.value(name, **labels)
    except KeyError:
        return 0


def hist0(m, name, **labels):
    try:
        return m.histogram(name, **labels)
    except KeyError:
        return {"buckets": [], "sum": 0.0, "count": 0}


def resp_bytes(r):
    """Bytes tollgate wrote for a Content-Length framed response: head and body."""
    return len(r.head) + len(r.body)


def test_counters_agree_with_a_known_mix(upstreams, tollgate):
    """7 GETs on ra (then 3 more on held connections), 3 POSTs of known size on rb, 2 unrouted
    404s, an upstream 503, a 431, a connection refused by the node (502), and a client that
    leaves mid-body (499)."""
    a, b = upstreams(), upstreams()
    c_up = upstreams(lambda req, conn: response(503, b"busy", reason="Service Unavailable"))
    e_up = upstreams()
    dead = free_port()  # nothing listens there: connect() is refused
    tg = tollgate(services={"sa": service(a.url), "sb": service(b.url), "sc": service(c_up.url),
                            "sd": service(f"http://127.0.0.1:{dead}"), "se": service(e_up.url)},
                  routes=ROUTES, limits={"max_header_bytes": "1kb"})
    before = quiet(tg)
    conns = 0

    ra_out = 0
    with Client(tg.addr) as c:
        conns += 1
        for i in range(7):
            r = c.get(f"/a/{i}")
            assert r.status == 200, r
            ra_out += resp_bytes(r)

    rb_in = []
    with Client(tg.addr) as c:
        conns += 1
        for size in (100, 1000, 5000):
            raw = build_request("POST", "/b/upload", body=os.urandom(size))
            c.send(raw)
            assert c.response().status == 200
            rb_in.append(len(raw))
        assert [q.body_length for q in b.requests] == [100, 1000, 5000]

    with Client(tg.addr) as c:
        conns += 1
        for path in ("/nowhere", "/z/1"):
            assert c.get(path).status == 404

    with Client(tg.addr) as c:
        conns += 1
        assert c.get("/c/").status == 503

    with Client(tg.addr) as c:
        conns += 1
        assert c.get("/a/big", headers=[("X-Big", "x" * 2000)]).status == 431

    with Client(tg.addr) as c:
        conns += 1
        assert c.get("/d/").status == 502

    # The client announces 1000 body bytes, sends 100, and leaves: nobody gets a response.
    c = Client(tg.addr)
    conns += 1
    c.send(b"POST /e/upload HTTP/1.1\r\nHost: test.local\r\nContent-Length: 1000\r\n\r\n" +
           b"x" * 100)
    time.sleep(0.2)
    reset_close(c.sock)

    # Three connections held open: the active gauge counts them.
    held = [Client(tg.addr) for _ in range(3)]
    conns += 3
    for h in held:
        r = h.get("/a/held")
        assert r.status == 200
        ra_out += resp_bytes(r)
    wait_until(lambda: tg.metrics().value("tollgate_active_connections") == 3, 5, interval=0.05,
               what="tollgate_active_connections to be 3 (the held connections)")
    for h in held:
        h.close()

    wait_until(lambda: value0(tg.metrics(), "http_requests_total", route="re", method="POST",
                              status="499") == 1, 5, interval=0.05, what="the 499 to be counted")
    after = quiet(tg)

    def delta(name, **labels):
        return after.sum(name, **labels) - before.sum(name, **labels)

    def req(route, method, status):
        return (value0(after, "http_requests_total", route=route, method=method, status=status) -
                value0(before, "http_requests_total", route=route, method=method, status=status))

    assert req("ra", "GET", "200") == 7 + 3
    assert req("rb", "POST", "200") == 3
    assert req("_none", "GET", "404") == 2
    assert req("rc", "GET", "503") == 1
    assert req("_none", "GET", "431") == 1
    assert req("rd", "GET", "502") == 1
    assert req("re", "POST", "499") == 1
    assert delta("http_requests_total") == 10 + 3 + 2 + 1 + 1 + 1 + 1

    # Histograms: one observation per request of the route; sizes to the byte.
    for route, n in (("ra", 10), ("rb", 3), ("rc", 1), ("rd", 1), ("re", 1)):
        for fam in ("http_request_duration_seconds", "http_request_size_bytes",
                    "http_response_size_bytes"):
            got = hist0(after, fam, route=route)["count"] - hist0(before, fam, route=route)["count"]
            assert got == n, f"{fam}{{route={route}}} count grew by {got}, expected {n}"
    rb = after.histogram("http_request_size_bytes", route="rb")
    assert rb["sum"] == sum(rb_in), f"request bytes of rb: {rb['sum']} != {sum(rb_in)} sent"
    for le, count in rb["buckets"]:
        assert count == sum(1 for s in rb_in if s <= le), (le, count, rb_in)
    ra = after.histogram("http_response_size_bytes", route="ra")
    ra_before = hist0(before, "http_response_size_bytes", route="ra")
    assert ra["sum"] - ra_before["sum"] == ra_out, (ra, ra_out)
    re_dur = after.histogram("http_request_duration_seconds", route="re")
    assert re_dur["sum"] >= 0.15, "the abandoned upload lasted about 0.2 s"

    # Upstream exchanges, per service, node and status.
    def up(svc, node, status):
        return value0(after, "tollgate_upstream_requests_total", service=svc, node=node,
                      status=status)

    assert up("sa", f"127.0.0.1:{a.port}", "200") == 10
    assert up("sb", f"127.0.0.1:{b.port}", "200") == 3
    assert up("sc", f"127.0.0.1:{c_up.port}", "503") == 1
    assert up("sd", f"127.0.0.1:{dead}", "error") == 1
    # The abandoned upload of re never reached its node: a body small enough to be kept for a
    # retry (retry.buffer) is read whole before the first attempt.
    assert delta("tollgate_upstream_requests_total") == 10 + 3 + 1 + 1
    assert delta("tollgate_upstream_connect_errors_total") == 1
    assert after.histogram("tollgate_upstream_duration_seconds", service="sa")["count"] == 10

    # Connections: every one the test opened, and none left open.
    assert delta("tollgate_connections_total") == conns
    assert after.value("tollgate_active_connections") == 0

    # Limits: only the header section was refused.
    assert delta("tollgate_rejected_requests_total", reason="max_header_bytes") == 1
    assert delta("tollgate_rejected_requests_total") == 1

    # Pools: the node of sa kept one idle keep-alive connection; the dead node has none.
    assert after.value("tollgate_upstream_pool_idle", service="sa",
                       node=f"127.0.0.1:{a.port}") == 1
    assert after.value("tollgate_upstream_pool_idle", service="sd", node=f"127.0.0.1:{dead}") == 0
    assert a.connections == 1

    # Types of the families the issue names.
    fams = after.families
    for name, kind in (("http_requests_total", "counter"),
                       ("http_request_duration_seconds", "histogram"),
                       ("http_request_size_bytes", "histogram"),
                       ("http_response_size_bytes", "histogram"),
                       ("tollgate_active_connections", "gauge"),
                       ("tollgate_connections_total", "counter"),
                       ("tollgate_rejected_requests_total", "counter"),
                       ("tollgate_upstream_requests_total", "counter"),
                       ("tollgate_upstream_duration_seconds", "histogram"),
                       ("tollgate_upstream_connect_errors_total", "counter"),
                       ("tollgate_upstream_pool_idle", "gauge"),
                       ("tollgate_dns_refresh_total", "counter"),
                       ("tollgate_log_lines_dropped_total", "counter"),
                       ("tollgate_config_reloads_total", "counter"),
                       ("process_cpu_seconds_total", "counter"),
                       ("process_resident_memory_bytes", "gauge"),
                       ("process_open_fds", "gauge"),
                       ("process_max_fds", "gauge"),
                       ("process_start_time_seconds", "gauge")):
        assert name in fams and fams[name].type == kind, (name, fams.get(name))
    assert {lbl["reason"] for lbl, _ in after.series("tollgate_rejected_requests_total")} == {
        "max_connections", "max_request_line", "max_header_bytes", "max_body", "timeout",
        "bad_request"}


def test_process_metrics_are_sane(upstream, proxy):
    tg = proxy(upstream)
    with Client(tg.addr) as c:
        assert c.get("/").status == 200
    m = quiet(tg)  # the client's connection is closed on tollgate's side too
    now = time.time()
    start = m.value("process_start_time_seconds")
    assert now - 30 < start <= now + 1, f"start time {start} vs now {now}"
    # The kernel's own start time of the process, in seconds since the epoch, agrees.
    with open(f"/proc/{tg.pid}/stat") as f:
        started_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/stat") as f:
        btime = next(int(ln.split()[1]) for ln in f if ln.startswith("btime "))
    kernel_start = btime + started_ticks / os.sysconf("SC_CLK_TCK")
    assert abs(start - kernel_start) < 2, (start, kernel_start)

    rss = m.value("process_resident_memory_bytes")
    vmrss = tg.status_kb("VmRSS") * 1024
    assert rss > 1 << 20 and 0.5 * vmrss < rss < 2 * vmrss, (rss, vmrss)

    fds = m.value("process_open_fds")
    assert fds > 0 and abs(fds - tg.open_fds()) <= 4, (fds, tg.open_fds())
    with open(f"/proc/{tg.pid}/limits") as f:
        soft = next(ln.split()[3] for ln in f if ln.startswith("Max open files"))
    assert m.value("process_max_fds") == int(soft)

    cpu = m.value("process_cpu_seconds_total")
    assert 0 < cpu < 60, cpu
    assert [v for _, v in m.series("tollgate_build_info")] == [1]
    # Open fds follow connections: 20 idle clients are 20 more descriptors.
    clients = [Client(tg.addr) for _ in range(20)]
    try:
        for cl in clients:
            assert cl.get("/").status == 200
        grown = tg.metrics().value("process_open_fds")
        assert grown >= fds + 20, (fds, grown)
    finally:
        for cl in clients:
            cl.close()


def test_sums_are_exact_across_two_workers(upstreams, tollgate):
    """Per-worker counters summed on scrape: connections spread over both workers (each worker
    has its own pool, so sequential requests open exactly one node connection per worker that
    served), then concurrent load; every total matches what the clients sent and received."""
    up = upstreams()
    tg = tollgate(workers=2, services={"backend": service(up.url)},
                  routes=[{"name": "all", "match": {"path": "/"}, "service": "backend"}])
    before = quiet(tg)
    sent = 0
    received = 0
    count = 0

    # Phase 1: 16 connections held open at once, used one request at a time.
    clients = [Client(tg.addr) for _ in range(16)]
    try:
        for _ in range(2):
            for cl in clients:
                raw = build_request("GET", f"/seq/{count}")
                cl.send(raw)
                r = cl.response()
                assert r.status == 200
                sent += len(raw)
                received += resp_bytes(r)
                count += 1
    finally:
        for cl in clients:
            cl.close()
    assert up.connections == 2, (
        f"sequential requests over 16 connections opened {up.connections} node connections: "
        "both workers should have served (one pooled connection each)")
    # A worker pools the node connection just after writing the response, so poll.
    wait_until(lambda: tg.metrics().value("tollgate_upstream_pool_idle", service="backend",
                                        node=f"127.0.0.1:{up.port}") == 2, 5, interval=0.05,
               what="one idle pooled node connection per worker")

    # Phase 2: 4 threads x 4 connections, concurrent, bounded in count and time.
    per_conn = 10 if is_sanitized() else 40
    lock = threading.Lock()
    errors = []
    totals = {"sent": 0, "received": 0, "count": 0}

    def load(tid):
        deadline = time.monotonic() + 20
        cls = [Client(tg.addr, timeout=5) for _ in range(4)]
        s = rcv = n = 0
        try:
            for i in range(per_conn):
                for j, cl in enumerate(cls):
                    body = b"y" * ((tid * 7 + i + j) % 50)
                    raw = build_request("POST" if body else "GET", f"/t{tid}/{i}/{j}",
                                        body=body or None)
                    cl.send(raw)
                    r = cl.response()
                    if r.status != 200:
                        errors.append(r)
                    s += len(raw)
                    rcv += resp_bytes(r)
                    n += 1
                if time.monotonic() > deadline:
                    errors.append("load did not finish in 20 s")
                    break
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(repr(e))
        finally:
            for cl in cls:
                cl.close()
        with lock:
            totals["sent"] += s
            totals["received"] += rcv
            totals["count"] += n

    threads = [threading.Thread(target=load, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors[:3]
    assert totals["count"] == 4 * 4 * per_conn
    sent += totals["sent"]
    received += totals["received"]
    count += totals["count"]

    after = quiet(tg)

    def delta(name, **labels):
        return after.sum(name, **labels) - before.sum(name, **labels)

    assert delta("http_requests_total", route="all", status="200") == count
    assert delta("http_requests_total") == count
    assert delta("tollgate_upstream_requests_total", service="backend", status="200") == count
    assert delta("tollgate_connections_total") == 16 + 16
    assert after.value("tollgate_active_connections") == 0
    h_in = after.histogram("http_request_size_bytes", route="all")
    h_out = after.histogram("http_response_size_bytes", route="all")
    h_dur = after.histogram("http_request_duration_seconds", route="all")
    b_in = hist0(before, "http_request_size_bytes", route="all")
    b_out = hist0(before, "http_response_size_bytes", route="all")
    assert h_in["count"] - b_in["count"] == count
    assert h_dur["count"] - hist0(before, "http_request_duration_seconds",
                                  route="all")["count"] == count
    assert h_in["sum"] - b_in["sum"] == sent, (h_in["sum"] - b_in["sum"], sent)
    assert h_out["sum"] - b_out["sum"] == received, (h_out["sum"] - b_out["sum"], received)
    assert after.histogram("tollgate_upstream_duration_seconds",
                           service="backend")["count"] == count


def test_size_buckets_count_exactly_what_fits(upstream, proxy):
    """Every size bucket counts the requests whose size is <= its le, with le written exactly
    (64 bytes times powers of 4 up to 16 MiB), including the bounds above one million, which a
    "%g" format would round (1048576 -> "1.04858e+06", a different bound)."""
    tg = proxy(upstream)

    def request_of(total):
        body_len = total - len(build_request("POST", "/s", body=b""))
        while True:
            raw = build_request("POST", "/s", body=b"z" * body_len)
            if len(raw) == total:
                return raw
            body_len -= len(raw) - total

    sizes = [1048576, 1048578, 4194304 + 3]
    with Client(tg.addr, timeout=10) as c:
        for total in sizes:
            raw = request_of(total)
            assert len(raw) == total
            c.send(raw)
            assert c.response().status == 200
    m = quiet(tg)  # the last request is recorded just after its response is written
    h = m.histogram("http_request_size_bytes", route="all")
    assert h["sum"] == sum(sizes)
    for le, count in h["buckets"]:
        assert count == sum(1 for s in sizes if s <= le), \
            f"bucket le={le!r} counts {count} requests, but of the sizes {sizes} " \
            f"{sum(1 for s in sizes if s <= le)} are <= {le!r}"
    les = [le for le, _ in h["buckets"]]
    assert les[:-1] == [64.0 * 4 ** k for k in range(10)], les
    assert math.isinf(les[-1])
    dur = m.histogram("http_request_duration_seconds", route="all")
    dles = [le for le, _ in dur["buckets"]]
    assert dles[0] == 0.001 and dles[-2] == 30.0 and math.isinf(dles[-1]), dles


def test_client_gone_before_the_upstream_answers_is_499(upstreams, tollgate):
    """A client that resets its connection while tollgate waits for the node never gets a
    response: the request counts as 499 (client closed), not as the status the node sent later
    to nobody."""
    slow = upstreams(lambda req, conn: (time.sleep(0.5), response(200, b"late"))[1])
    tg = tollgate(services={"se": service(slow.url)},
                  routes=[{"name": "re", "match": {"path": "/e/"}, "service": "se"}])
    before = quiet(tg)
    c = Client(tg.addr)
    c.request("GET", "/e/wait")
    slow.wait_requests(1)
    reset_close(c.sock)  # RST: any write to this client fails from now on
    time.sleep(1.0)  # the node answers after 0.5 s
    after = quiet(tg)

    def req(status):
        return (value0(after, "http_requests_total", route="re", method="GET", status=status) -
                value0(before, "http_requests_total", route="re", method="GET", status=status))

    assert req("499") == 1 and req("200") == 0, (
        f"client reset before any response: 499 counted {req('499')}, 200 counted {req('200')}")
