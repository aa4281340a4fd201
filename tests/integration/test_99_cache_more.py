"""More of the response cache (issue 7), end to end against scripted upstreams: the memory bound
under a fill of ten times max_size, stale_while_revalidate with a slow node, stale_if_error with
the backend killed and brought back on the same port, coalesce_timeout, a writer whose answer
may not be stored, entries that outlive a reload (and a smaller max_size that evicts down), HEAD
on a miss, and a writer whose client goes away.

Each test prints its measurements with -s (a `[title] k=v, ...` line).
"""

import os
import signal
import threading
import time

import pytest
from test_99_cache import counting, report

from tglib import is_sanitized, to_yaml
from tglib.client import Client, get
from tglib.net import reset_close, wait_until
from tglib.upstream import response

KiB = 1 << 10
MiB = 1 << 20
SAN = is_sanitized()


def gateway(proxy, target, route_cache=None, top_cache=None, **cfg):
    """A tollgate whose one route "site" caches (route_cache), with the top-level cache bounds
    top_cache."""
    routes = [{"name": "site", "match": {"path": "/"}, "service": "backend",
               "cache": route_cache if route_cache is not None else {}}]
    if top_cache is not None:
        cfg["cache"] = top_cache
    return proxy(target, routes=routes, **cfg)


def by_path(body_of, headers=(("Cache-Control", "max-age=60"),)):
    """A handler answering GET with body_of(path) and HEAD with the same head and no body (so a
    HEAD probe, which the cache does not store, leaves it unchanged); .state["n"] counts."""
    state = {"n": 0}

    def handler(req, conn):
        state["n"] += 1
        body = body_of(req.target)
        if req.method == "HEAD":
            return response(200, b"", headers=list(headers) + [("Content-Length", str(len(body)))],
                            content_length=False)
        return response(200, body, headers=list(headers))

    handler.state = state
    return handler


def probe(tg, path):
    """X-Cache of a HEAD: HIT when path is stored; a miss stores nothing and evicts nothing."""
    return get(tg.addr, path, method="HEAD").header("x-cache")


def cache_stats(tg):
    m = tg.metrics()
    return (int(m.value("tollgate_cache_bytes")), int(m.value("tollgate_cache_entries")),
            int(m.value("tollgate_cache_evictions_total")))


def timed_get(addr, path, results, i, **kw):
    """One request on a fresh connection; results[i] = (response or exception, seconds)."""
    t0 = time.monotonic()
    try:
        with Client(addr, timeout=15) as c:
            r = c.get(path, **kw)
    except Exception as e:  # noqa: BLE001 - reported by the test
        r = e
    results[i] = (r, time.monotonic() - t0)


def run_threads(fns, timeout=20):
    threads = [threading.Thread(target=f, daemon=True) for f in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a client hung"


def replace_config(tg, cfg):
    """Installs the next config file atomically (a reload never reads half a file)."""
    tmp = tg.config_path + ".next"
    with open(tmp, "w") as f:
        f.write(to_yaml(cfg) + "\n")
    os.replace(tmp, tg.config_path)


# --- 1. the memory bound ---------------------------------------------------------------------

def test_memory_bound_under_a_fill_of_ten_times_max_size(proxy, upstreams):
    """640 distinct 256 KiB objects (10 x max_size) through a 16 MiB cache from 4 clients:
    tollgate_cache_bytes never exceeds max_size, the oldest entries are evicted, the newest
    (mostly) answered from the cache, and the process does not grow beyond max_size + 48 MiB."""
    size, objects, clients, max_size = 256 * KiB, 640, 4, 16 * MiB
    base = bytes(range(256)) * (size // 256)

    def expected(path):
        return path.encode().ljust(32, b".") + base[32:]

    h = by_path(expected)
    env = None
    if SAN:  # ASan's quarantine would keep freed entries resident: keep it small
        env = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:quarantine_size_mb=16"}
    tg = gateway(proxy, upstreams(h), top_cache={"max_size": "16mb", "max_object": "1mb"},
                 workers=2, env=env)
    get(tg.addr, "/warm-up")  # the first request sets up the pools and buffers
    rss_before = tg.status_kb("VmRSS")
    done, failures, lock = [], [], threading.Lock()
    samples, rss_max = [], [rss_before]
    stop = threading.Event()

    def client(k):
        with Client(tg.addr, timeout=15) as c:
            for i in range(k, objects, clients):
                path = f"/obj/{i}"
                r = c.get(path)
                with lock:
                    if r.status != 200 or r.body != expected(path):
                        failures.append((path, r.status, len(r.body)))
                    done.append(path)

    def sampler():
        while not stop.wait(0.01):
            samples.append(cache_stats(tg)[0])
            rss_max.append(tg.status_kb("VmRSS"))

    s = threading.Thread(target=sampler, daemon=True)
    s.start()
    t0 = time.monotonic()
    run_threads([lambda k=k: client(k) for k in range(clients)], timeout=25)
    took = time.monotonic() - t0
    stop.set()
    s.join(5)
    bytes_, entries, evictions = cache_stats(tg)
    rss_after = tg.status_kb("VmRSS")
    # the newest entries answer from the cache, the oldest went to make room (HEAD probes: they
    # store nothing, so probing does not evict)
    newest = [probe(tg, p) for p in done[-8:]]
    oldest = [probe(tg, p) for p in done[:8]]
    report("memory bound", objects=objects, object_kib=size // KiB, seconds=round(took, 2),
           bytes=bytes_, entries=entries, evictions=evictions, sampled_max_bytes=max(samples),
           samples=len(samples), rss_before_mib=round(rss_before / 1024, 1),
           rss_after_mib=round(rss_after / 1024, 1), rss_max_mib=round(max(rss_max) / 1024, 1),
           upstream=h.state["n"], newest=newest, oldest=oldest)
    assert not failures, failures[:5]
    assert len(done) == objects
    assert bytes_ <= max_size, bytes_
    # an insert links its entry, then evicts for it: a sample may catch one object per worker
    # in between
    assert max(samples) <= max_size + 2 * MiB, max(samples)
    assert evictions > 0
    # every object was stored once: what is not there any more was evicted
    assert entries + evictions == objects + 1, (entries, evictions)  # and /warm-up
    assert entries * size <= bytes_ <= entries * (size + 16 * KiB), (entries, bytes_)
    assert entries >= max_size // (size + 16 * KiB) - 2, "the cache holds much less than it may"
    # least recently used first, across the store: the newest are all there (four clients
    # finish in any order, but far fewer than the 63 entries the cache holds are in flight)
    assert newest == ["HIT"] * 8, newest
    assert oldest == ["MISS"] * 8, oldest
    limit_kb = (max_size + 48 * MiB) // KiB
    if SAN:  # shadow memory inflates the absolute figure: bound the growth
        assert max(rss_max) - rss_before <= limit_kb, (rss_before, max(rss_max))
    else:
        assert max(rss_max) <= limit_kb, f"VmRSS reached {max(rss_max)} KiB"


def test_eviction_order_is_least_recently_used(proxy, upstreams):
    """A 1 MiB cache holds three 300 KiB objects: storing a fourth must evict the least recently
    used one (docs/cache.md, Memory), so after each GET the last three objects are all there."""
    body = bytes(300 * KiB)
    h = by_path(lambda path: body)
    tg = gateway(proxy, upstreams(h), top_cache={"max_size": "1mb", "max_object": "1mb"})
    held = []
    for i in range(16):
        assert get(tg.addr, f"/lru/{i}").header("x-cache") == "MISS"
        # oldest first, so the probes leave the recency order as it was
        held.append("".join("H" if probe(tg, f"/lru/{j}") == "HIT" else "-"
                            for j in range(max(0, i - 2), i + 1)))
    bytes_, entries, evictions = cache_stats(tg)
    report("lru order", last_three_after_each_get=held, bytes=bytes_, entries=entries,
           evictions=evictions)
    assert entries == 3 and evictions == 13, (entries, evictions)
    assert all(x == "H" * len(x) for x in held), held


# --- 2. stale_while_revalidate -----------------------------------------------------------------

def test_stale_while_revalidate_with_a_slow_node(proxy, upstreams):
    """After expiry every request gets the stale copy at once, and one refresh runs in the
    background (the node takes 0.5 s); once it is in, the new copy is a HIT. The node sees one
    refresh however many requests came meanwhile."""
    version = {"n": 0}

    def body(req):
        version["n"] += 1
        return f"version {version['n']}".encode()

    h = counting(body=body, headers=(("Cache-Control", "max-age=1"),), delay=0.5)
    tg = gateway(proxy, upstreams(h), {"stale_while_revalidate": "30s"}, workers=2)
    first = get(tg.addr, "/swr")
    assert first.header("x-cache") == "MISS" and first.body == b"version 1", first
    time.sleep(1.2)
    stale = [None] * 6
    run_threads([lambda i=i: timed_get(tg.addr, "/swr", stale, i) for i in range(6)])
    during = get(tg.addr, "/swr")
    wait_until(lambda: get(tg.addr, "/swr").header("x-cache") == "HIT", 3, interval=0.05,
               what="the background refresh to land")
    after = get(tg.addr, "/swr")
    report("stale while revalidate",
           stale=[(r.header("x-cache"), r.body.decode(), round(t, 3)) for r, t in stale],
           during=(during.header("x-cache"), during.body.decode()),
           after=(after.header("x-cache"), after.body.decode()), upstream=h.state["n"])
    for r, t in stale:
        assert r.status == 200 and r.header("x-cache") == "STALE" and r.body == b"version 1", r
        assert t < 0.25, f"a stale answer waited {t:.3f}s for the refresh"
    assert during.header("x-cache") == "STALE"
    assert after.header("x-cache") == "HIT" and after.body == b"version 2", after
    assert h.state["n"] == 2, "one refresh for all the requests that found the copy stale"


# --- 3. stale_if_error with the backend killed ------------------------------------------------

def test_backend_killed_then_back_on_the_same_port(proxy, upstreams):
    """Entries past max-age=1 with stale_if_error 1m: with the node gone, every path keeps
    answering 200 STALE; a node back on the same port refreshes them; a 5xx from it within the
    window also gets the stale copy."""
    paths = [f"/k/{i}" for i in range(4)]
    old = upstreams(counting(body=lambda req: f"old {req.target}".encode(),
                             headers=(("Cache-Control", "max-age=1"),)))
    port = old.port
    tg = gateway(proxy, old, {"stale_if_error": "1m"})
    assert [get(tg.addr, p).header("x-cache") for p in paths] == ["MISS"] * 4
    old.close()
    time.sleep(1.2)
    rounds, bad = 0, []
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.0 and rounds < 50:
        for p in paths:
            r = get(tg.addr, p)
            if (r.status, r.header("x-cache"), r.body) != (200, "STALE", f"old {p}".encode()):
                bad.append((p, r.status, r.header("x-cache"), r.body[:80]))
        rounds += 1
        time.sleep(0.2)

    state = {"fail": False}
    new = counting(body=lambda req: f"new {req.target}".encode(),
                   headers=(("Cache-Control", "max-age=1"),))

    def handler(req, conn):
        if state["fail"]:
            new.state["n"] += 1
            return response(503, b"down", headers=[("Content-Type", "text/plain")])
        return new(req, conn)

    upstreams(handler, port=port)
    back = [get(tg.addr, p) for p in paths]
    again = [get(tg.addr, p) for p in paths]
    state["fail"] = True
    time.sleep(1.2)
    failing = [get(tg.addr, p) for p in paths]
    report("backend killed", rounds=rounds, stale_answers=rounds * len(paths) - len(bad),
           bad=bad[:4], back=[(r.status, r.header("x-cache"), r.body.decode()) for r in back],
           again=[r.header("x-cache") for r in again],
           on_503=[(r.status, r.header("x-cache"), r.body.decode()) for r in failing],
           new_upstream=new.state["n"])
    assert rounds >= 5 and not bad, bad[:4]
    for p, r in zip(paths, back):
        assert (r.status, r.header("x-cache"), r.body) == (200, "MISS", f"new {p}".encode()), r
    for p, r in zip(paths, again):
        assert (r.status, r.header("x-cache"), r.body) == (200, "HIT", f"new {p}".encode()), r
    for p, r in zip(paths, failing):
        assert (r.status, r.header("x-cache"), r.body) == (200, "STALE", f"new {p}".encode()), r
    assert new.state["n"] == 2 * len(paths), "each 503 came from the node"


@pytest.mark.parametrize("failure", ["503", "timeout"])
def test_stale_if_error_for_concurrent_requests_of_one_key(proxy, upstreams, failure):
    """Five clients ask at once for an expired entry (stale_if_error 1m) whose node now fails
    slowly (a 503 after 0.3 s, or no answer within the 300ms response timeout): one is the
    writer, the others wait for it. Every one of them should get the stale copy: the writer
    does, and the waiters, which go to the node on their own once the writer's fetch failed,
    fail the same way."""
    state = {"fail": False}
    h = counting(body=b"kept", headers=(("Cache-Control", "max-age=1"),))

    def handler(req, conn):
        if not state["fail"]:
            return h(req, conn)
        h.state["n"] += 1
        if failure == "timeout":
            conn.hang(limit=3)
            return None
        time.sleep(0.3)
        return response(503, b"down")

    tg = gateway(proxy, upstreams(handler), {"stale_if_error": "1m"}, workers=2,
                 svc={"response": "300ms"})
    assert get(tg.addr, "/c").header("x-cache") == "MISS"
    state["fail"] = True
    time.sleep(1.2)
    results = [None] * 5
    run_threads([lambda i=i: timed_get(tg.addr, "/c", results, i) for i in range(5)])
    got = [(r.status, r.header("x-cache"), round(t, 2)) if not isinstance(r, Exception)
           else repr(r) for r, t in results]
    report(f"stale if error, concurrent, {failure}", got=got, upstream_failures=h.state["n"] - 1)
    assert all(not isinstance(r, Exception) and r.status == 200 and r.body == b"kept"
               and r.header("x-cache") == "STALE" for r, _ in results), got


# --- 4. coalesce_timeout ---------------------------------------------------------------------

def test_waiters_give_up_after_coalesce_timeout(proxy, upstreams):
    """The node takes 1.5 s, coalesce_timeout is 200ms: the 4 waiters go upstream on their own
    after ~0.2 s; every client gets 200."""
    h = counting(body=b"slow", delay=1.5)
    up = upstreams(h)
    tg = gateway(proxy, up, {"coalesce_timeout": "200ms"}, workers=2)
    results = [None] * 5

    def first():
        timed_get(tg.addr, "/slow", results, 0)

    def waiters():
        up.wait_requests(1, timeout=5)
        run_threads([lambda i=i: timed_get(tg.addr, "/slow", results, i) for i in range(1, 5)])

    t0 = time.monotonic()
    run_threads([first, waiters])
    took = time.monotonic() - t0
    arrivals = [round(r.time - up.requests[0].time, 3) for r in up.requests]
    report("coalesce timeout", upstream=len(up.requests), arrivals=arrivals, seconds=round(took, 2),
           got=[(r.status, r.header("x-cache"), round(t, 2)) for r, t in results])
    assert all(r.status == 200 and r.body == b"slow" for r, _ in results), results
    assert len(up.requests) == 5, "each waiter went upstream on its own"
    assert all(0.15 <= a < 1.0 for a in arrivals[1:]), arrivals
    assert took < 3.0, took


# --- 5. a writer whose answer may not be stored ----------------------------------------------

def test_unstorable_answer_sends_every_waiter_upstream(proxy, upstreams):
    """The writer's answer says no-store while 20 clients wait: they are woken at once (not
    after coalesce_timeout), each goes upstream on its own and gets 200."""
    h = counting(body=b"fresh", headers=(("Cache-Control", "no-store"),), delay=0.5)
    up = upstreams(h)
    tg = gateway(proxy, up, {}, workers=2, limits={"max_connections": 256})
    results = [None] * 21

    def waiters():
        up.wait_requests(1, timeout=5)
        run_threads([lambda i=i: timed_get(tg.addr, "/ns", results, i) for i in range(1, 21)])

    t0 = time.monotonic()
    run_threads([lambda: timed_get(tg.addr, "/ns", results, 0), waiters])
    took = time.monotonic() - t0
    arrivals = [r.time - up.requests[0].time for r in up.requests]
    kinds = {}
    for r, _ in results:
        k = r.header("x-cache") if not isinstance(r, Exception) else repr(r)
        kinds[k] = kinds.get(k, 0) + 1
    report("unstorable writer", upstream=len(up.requests), seconds=round(took, 2), results=kinds,
           arrivals=f"{min(arrivals[1:]):.3f}..{max(arrivals[1:]):.3f}",
           slowest_client=round(max(t for _, t in results), 2))
    assert all(not isinstance(r, Exception) and r.status == 200 and r.body == b"fresh"
               for r, _ in results), kinds
    assert len(up.requests) == 21
    # they waited for the writer's answer, then went on at once
    assert all(0.45 <= a < 1.5 for a in arrivals[1:]), arrivals
    assert took < 2.5, took


# --- 6. reload ---------------------------------------------------------------------------------

def test_entries_outlive_a_reload_and_a_smaller_max_size_evicts_down(proxy, upstreams):
    """A SIGHUP reload that adds a route keeps the entries (still HITs); a POST /reload with a
    smaller cache.max_size evicts down to it at once."""
    big = bytes(200 * KiB)
    h = by_path(lambda path: big if path.startswith("/big") else b"small")
    tg = gateway(proxy, upstreams(h), {}, top_cache={"max_size": "8mb", "max_object": "1mb"})
    assert get(tg.addr, "/r").header("x-cache") == "MISS"
    for i in range(20):
        assert get(tg.addr, f"/big/{i}").status == 200
    before = cache_stats(tg)
    cfg = dict(tg.config)
    cfg["routes"] = [{"name": "other", "match": {"path": "/other/"}, "service": "backend"}] \
        + list(cfg["routes"])
    replace_config(tg, cfg)
    tg.signal(signal.SIGHUP)
    wait_until(lambda: tg.admin("/status").json()["config"]["reloads"]["ok"] == 1, 10,
               what="the SIGHUP reload")
    hit = get(tg.addr, "/r")
    other = get(tg.addr, "/other/x")
    cfg["cache"] = {"max_size": "1mb", "max_object": "1mb"}
    replace_config(tg, cfg)
    r = tg.admin("/reload", method="POST")
    assert r.status == 200 and r.json()["status"] == "ok", r
    after = cache_stats(tg)
    kept = [i for i in range(20) if probe(tg, f"/big/{i}") == "HIT"]
    report("reload", before=before, after_shrink=after, hit_after_reload=hit.header("x-cache"),
           other_route=other.header("x-cache"), big_kept_after_shrink=kept)
    assert before[1] == 21 and before[2] == 0, before
    assert hit.header("x-cache") == "HIT" and hit.body == b"small"
    assert other.status == 200 and other.header("x-cache") is None, "the new route is in effect"
    assert after[0] <= MiB, after
    assert after[1] + after[2] == before[1] and after[2] > 0, "what went, went as evictions"


# --- 7. HEAD -----------------------------------------------------------------------------------

def test_head_miss_is_not_stored_but_a_get_is(proxy, upstreams):
    """A HEAD that misses goes to the node and is not stored; a GET is; a HEAD after it is a
    HIT with the GET's Content-Length and no body."""
    body = b"0123456789" * 100
    h = by_path(lambda path: body,
                (("Cache-Control", "max-age=60"), ("Content-Type", "text/plain")))
    up = upstreams(h)
    tg = gateway(proxy, up, {})
    steps = []
    for method in ("HEAD", "HEAD", "GET", "GET", "HEAD"):
        r = get(tg.addr, "/h", method=method)
        steps.append((method, r.status, r.header("x-cache"), r.header("content-length"),
                      len(r.body), h.state["n"]))
    report("head", steps=steps, upstream_methods=[q.method for q in up.requests])
    assert [s[2] for s in steps] == ["MISS", "MISS", "MISS", "HIT", "HIT"], steps
    assert [q.method for q in up.requests] == ["HEAD", "HEAD", "GET"]
    assert steps[3][4] == len(body) and steps[4][4] == 0
    assert steps[4][3] == str(len(body)), "a HEAD from the cache has the GET's length"


# --- 8. the writer's client goes away ------------------------------------------------------------

@pytest.mark.parametrize("how", ["fin", "rst"])
def test_writer_client_disconnects(proxy, upstreams, how):
    """The writer's client closes (FIN or RST) while the slow node (1 s) answers: the waiters
    still get 200 (the fetch goes on and fills the entry, or they go upstream on their own),
    long before coalesce_timeout (5s), and tollgate keeps serving."""
    h = counting(body=b"late", delay=1.0)
    up = upstreams(h)
    tg = gateway(proxy, up, {}, workers=2)
    writer = Client(tg.addr, timeout=5)
    writer.request("GET", "/w")
    up.wait_requests(1, timeout=5)
    results = [None] * 5

    def waiters():
        run_threads([lambda i=i: timed_get(tg.addr, "/w", results, i) for i in range(5)])

    t = threading.Thread(target=waiters, daemon=True)
    t0 = time.monotonic()
    t.start()
    time.sleep(0.2)  # the waiters are parked
    if how == "rst":
        reset_close(writer.sock)
    else:
        writer.close()
    t.join(15)
    took = time.monotonic() - t0
    later = get(tg.addr, "/w")
    report(f"writer gone ({how})", seconds=round(took, 2), upstream=len(up.requests),
           got=[(r.status, r.header("x-cache"), round(s, 2)) if not isinstance(r, Exception)
                else repr(r) for r, s in results], later=later.header("x-cache"))
    assert not t.is_alive(), "a waiter hung"
    assert all(not isinstance(r, Exception) and r.status == 200 and r.body == b"late"
               for r, _ in results), results
    assert took < 3.0, f"the waiters were not woken: {took:.2f}s"
    assert tg.proc.poll() is None
    assert later.status == 200 and later.body == b"late"
