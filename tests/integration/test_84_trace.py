"""W3C Trace Context (issue 3): a single valid traceparent reaches the node unchanged with its
tracestate and names the access log's trace_id; anything else (absent, invalid, repeated) makes
tollgate start a trace of its own and drop the incoming traceparent and tracestate."""

import re

import pytest

from tglib import Client
from tglib.net import wait_until

TP_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")
VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
STATE = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"


def send(tg, path, headers):
    with Client(tg.addr) as c:
        r = c.get(path, headers=headers)
    assert r.status == 200, r
    return r


def log_line(tg, request_id):
    def find():
        for ln in tg.access_log():
            if ln["request_id"] == request_id:
                return ln
        return None

    return wait_until(find, 5, interval=0.02, what=f"the access line of {request_id}")


def seen(upstream, path):
    reqs = [q for q in upstream.requests if q.target == path]
    assert len(reqs) == 1, reqs
    return reqs[0]


def generated(q, ln):
    """Checks the node got exactly one new traceparent, no tracestate, and that the access log
    names its trace-id. Returns the trace-id."""
    tps = q.headers.get_all("traceparent")
    assert len(tps) == 1, q
    m = TP_RE.match(tps[0])
    assert m, f"generated traceparent {tps[0]!r}"
    trace_id, span_id = m.groups()
    assert trace_id != "0" * 32 and span_id != "0" * 16, tps[0]
    assert q.headers.get_all("tracestate") == [], q
    assert ln["trace_id"] == trace_id, (ln, tps[0])
    return trace_id


def test_valid_traceparent_forwarded_unchanged(upstream, proxy):
    tg = proxy(upstream)
    r = send(tg, "/valid", [("traceparent", VALID), ("tracestate", STATE)])
    q = seen(upstream, "/valid")
    assert q.headers.get_all("traceparent") == [VALID], q
    assert q.headers.get_all("tracestate") == [STATE], q
    ln = log_line(tg, r.header("x-request-id"))
    assert ln["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736", ln


def test_valid_traceparent_with_other_flags_forwarded(upstream, proxy):
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"  # not sampled
    tg = proxy(upstream)
    r = send(tg, "/unsampled", [("traceparent", tp)])
    assert seen(upstream, "/unsampled").headers.get_all("traceparent") == [tp]
    assert log_line(tg, r.header("x-request-id"))["trace_id"] == tp[3:35]


def test_absent_traceparent_starts_a_trace(upstream, proxy):
    tg = proxy(upstream)
    ids = set()
    for i in range(5):
        r = send(tg, f"/none/{i}", [])
        ids.add(generated(seen(upstream, f"/none/{i}"), log_line(tg, r.header("x-request-id"))))
    assert len(ids) == 5, "every request starts a trace of its own"


@pytest.mark.parametrize("bad", [
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # uppercase
    "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # trace-id one digit short
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011",  # version 00 with a tail
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff is forbidden
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace-id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent-id
    "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",  # wrong separators
    "garbage",
], ids=["uppercase", "short", "long", "version-ff", "zero-trace", "zero-parent", "separators",
        "garbage"])
def test_invalid_traceparent_replaced_and_tracestate_dropped(upstream, proxy, bad):
    tg = proxy(upstream)
    r = send(tg, "/bad", [("traceparent", bad), ("tracestate", STATE)])
    q = seen(upstream, "/bad")
    trace_id = generated(q, log_line(tg, r.header("x-request-id")))
    assert bad not in q.headers.get_all("traceparent")
    assert trace_id not in bad.lower()


def test_two_traceparents_replaced(upstream, proxy):
    other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    tg = proxy(upstream)
    r = send(tg, "/two", [("traceparent", VALID), ("tracestate", STATE), ("traceparent", other)])
    q = seen(upstream, "/two")
    trace_id = generated(q, log_line(tg, r.header("x-request-id")))
    assert trace_id not in (VALID[3:35], other[3:35])
    # The same with the duplicate first and invalid: still one traceparent, a new one.
    r = send(tg, "/two-b", [("traceparent", "bogus"), ("traceparent", VALID)])
    trace_id = generated(seen(upstream, "/two-b"), log_line(tg, r.header("x-request-id")))
    assert trace_id != VALID[3:35]


def test_tracestate_alone_dropped(upstream, proxy):
    tg = proxy(upstream)
    r = send(tg, "/state-only", [("tracestate", STATE)])
    generated(seen(upstream, "/state-only"), log_line(tg, r.header("x-request-id")))


def test_trace_context_on_error_responses_logged(upstream, tollgate):
    """An unrouted request has no node, but its access line still carries the incoming
    trace-id, so a trace can be followed to the gateway's 404."""
    tg = tollgate(services={}, routes=[])
    with Client(tg.addr) as c:
        r = c.get("/nowhere", headers=[("traceparent", VALID)])
    assert r.status == 404
    assert log_line(tg, r.header("x-request-id"))["trace_id"] == VALID[3:35]
