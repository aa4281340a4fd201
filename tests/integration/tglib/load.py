"""A small, bounded load generator: N threads, each with one keep-alive Client, sending requests
until a time limit or a request count is reached, recording every outcome.

    load = Load(tg.addr, threads=4, duration=6).start()
    time.sleep(1.5); node.kill()            # inject a fault while the load runs
    samples = load.join()
    assert not errors(samples), summary(samples)
    by_node(samples, since=3.0)             # {"a": 120, "b": 131}

Threads pace themselves (2 ms between request starts by default). Each Sample has t (seconds
from the load's start to when the request was sent), latency (seconds), status (-1 when the
connection failed instead of answering), node (the X-Node response header, None without one),
error (the exception text for status -1) and thread. A thread whose connection failed or was
closed opens a new one for its next request.
"""

import threading
import time
from collections import Counter, namedtuple

from .client import Client, build_request

Sample = namedtuple("Sample", "t latency status node error thread")


def get_request(i, thread):
    """The default request: GET /load/<thread>/<i>."""
    return {"method": "GET", "path": f"/load/{thread}/{i}"}


class Load:
    def __init__(self, addr, threads=4, duration=5.0, max_requests=200000, request=get_request,
                 timeout=3.0, pace=0.002):
        """request(i, thread) returns the keyword arguments of build_request() for the i-th
        request overall (method, path, headers, body). pace is the least time between the
        starts of two requests of one thread (0: as fast as answers come), so a load keeps the
        machine's CPUs for tollgate and the nodes."""
        self.addr = addr
        self.threads = threads
        self.duration = duration
        self.max_requests = max_requests
        self.request = request
        self.timeout = timeout
        self.pace = pace
        self.samples = []
        self.t0 = None
        self._issued = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = []

    def elapsed(self):
        return time.monotonic() - self.t0

    def start(self):
        self.t0 = time.monotonic()
        for k in range(self.threads):
            t = threading.Thread(target=self._run, args=(k,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()

    def join(self):
        """Waits for every thread (at most duration + timeout + a margin); returns the samples
        ordered by send time."""
        limit = time.monotonic() + self.duration + self.timeout + 5
        for t in self._threads:
            t.join(max(0.0, limit - time.monotonic()))
        self._stop.set()
        with self._lock:
            return sorted(self.samples, key=lambda s: s.t)

    def run(self):
        return self.start().join()

    def _next(self):
        with self._lock:
            if self._issued >= self.max_requests:
                return None
            self._issued += 1
            return self._issued - 1

    def _run(self, thread):
        client = None
        prev = None
        deadline = self.t0 + self.duration
        while not self._stop.is_set() and time.monotonic() < deadline:
            i = self._next()
            if i is None:
                break
            kw = self.request(i, thread)
            head = kw.get("method", "GET") == "HEAD"
            sent = time.monotonic()
            if self.pace and prev is not None and sent - prev < self.pace:
                time.sleep(self.pace - (sent - prev))
                sent = time.monotonic()
            prev = sent
            try:
                if client is None:
                    client = Client(self.addr, timeout=self.timeout)
                client.send(build_request(**kw))
                r = client.response(head_request=head)
                sample = Sample(sent - self.t0, time.monotonic() - sent, r.status,
                                r.header("x-node"), None, thread)
                if r.closes:
                    client.close()
                    client = None
            except Exception as e:  # noqa: BLE001 - every failure is an outcome to record
                sample = Sample(sent - self.t0, time.monotonic() - sent, -1, None,
                                f"{type(e).__name__}: {e}", thread)
                if client is not None:
                    client.close()
                    client = None
            with self._lock:
                self.samples.append(sample)
        if client is not None:
            client.close()


def errors(samples):
    """The samples whose status is not 200."""
    return [s for s in samples if s.status != 200]


def by_node(samples, since=0.0, until=float("inf")):
    """{X-Node: count} of the 200 responses sent in [since, until)."""
    return dict(Counter(s.node for s in samples if s.status == 200 and since <= s.t < until))


def percentile(values, p):
    """The p-th percentile (0..100) of values, nearest rank; 0.0 for no values."""
    v = sorted(values)
    if not v:
        return 0.0
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def summary(samples, limit=8):
    """A short text for assertion messages: counts per status, per node, and the first few
    failures with their times."""
    statuses = Counter(s.status for s in samples)
    bad = errors(samples)[:limit]
    lines = [f"{len(samples)} requests, statuses {dict(statuses)}, nodes {by_node(samples)}"]
    lines += [f"  t={s.t:.3f}s status={s.status} node={s.node} latency={s.latency * 1000:.1f}ms "
              f"{s.error or ''}" for s in bad]
    return "\n".join(lines)
