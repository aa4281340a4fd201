"""JSON-RPC routes (issue 6), end to end against scripted JSON-RPC nodes (tglib.rpc_node) and,
where a real node matters, anvil driven by ethers: envelopes and their errors, method policies
per route and per plan, method weights charged to the limits, error-aware failover, writes that
are never sent twice, method routing with batches split per service and reassembled in the
client's order, and eth_blockNumber that never goes backwards.

Each test prints its measurements with -s (a `[title] k=v, ...` line).
"""

import json

import pytest

from tglib import Client, service
from tglib.rpc_node import RpcNode


def report(title, **numbers):
    print(f"\n[{title}] " + ", ".join(f"{k}={v}" for k, v in numbers.items()))


@pytest.fixture
def nodes():
    made = []

    def make(n=1, **kw):
        out = [RpcNode(**kw).start() for _ in range(n)]
        made.extend(out)
        return out

    yield make
    for n in made:
        n.close()


def rpc_service(*nodes, **extra):
    svc = service(*[n.url for n in nodes]) if len(nodes) > 1 else service(nodes[0].url)
    svc["kind"] = "jsonrpc"
    svc.update(extra)
    return svc


def post(tg, body, path="/rpc", headers=()):
    """POSTs body (bytes, str or a JSON-able object); returns (Response, parsed JSON or None)."""
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    with Client(tg.addr, timeout=5) as c:
        r = c.get(path, method="POST", body=body,
                  headers=[("Content-Type", "application/json"), *headers])
    try:
        doc = json.loads(r.body) if r.body else None
    except ValueError:
        doc = None
    return r, doc


def call(method, params=(), id=1):
    c = {"jsonrpc": "2.0", "method": method, "params": list(params)}
    if id is not None:
        c["id"] = id
    return c


def gate(tollgate, svc, route_rpc=None, route_extra=None, **top):
    route = {"name": "rpc", "match": {"path": "/rpc"}, "service": "eth"}
    if route_rpc is not None:
        route["jsonrpc"] = route_rpc
    route.update(route_extra or {})
    services = {"eth": svc}
    services.update(top.pop("services", {}))
    return tollgate(services=services, routes=[route] + top.pop("routes", []), **top)


# -- 1. envelopes --------------------------------------------------------------------------------


def test_single_and_batch_pass_through_untouched(tollgate, nodes):
    (n,) = nodes()
    n.on("eth_blockNumber", result="0x10")
    n.on("eth_chainId", result="0x1")
    tg = gate(tollgate, rpc_service(n))
    raw = b'{"jsonrpc":"2.0","id":"a","method":"eth_blockNumber","params":[]}'
    r, doc = post(tg, raw)
    assert r.status == 200 and doc == {"jsonrpc": "2.0", "id": "a", "result": "0x10"}, r
    assert n.calls[-1].raw == raw, "the forwarded body is not the client's bytes"
    batch = [call("eth_chainId", id=1), call("eth_blockNumber", id=2)]
    r, doc = post(tg, batch)
    assert r.status == 200 and [d["id"] for d in doc] == [1, 2], doc
    assert doc[0]["result"] == "0x1" and doc[1]["result"] == "0x10", doc
    assert r.header("content-type") == "application/json", r


@pytest.mark.parametrize("body,code", [
    (b'{"jsonrpc":"2.0","id":1,"method":"eth_call"', -32700),        # truncated
    (b'{"jsonrpc":"2.0","id":1,"method":"eth_call"} x', -32700),     # trailing bytes
    (b'[' * 100000, -32700),                                          # deep nesting
    (b'"hello"', -32600),                                             # not an object
    (b'[]', -32600),                                                  # empty batch
    (b'{"jsonrpc":"1.0","id":1,"method":"eth_call"}', -32600),        # wrong version
    (b'{"jsonrpc":"2.0","id":1,"method":7}', -32600),                 # method not a string
    (b'{"jsonrpc":"2.0","id":{},"method":"eth_call"}', -32600),       # id an object
    (b'{"jsonrpc":"2.0","id":1,"method":"eth_call","params":"x"}', -32600),
])
def test_malformed_bodies_get_jsonrpc_errors(tollgate, nodes, body, code):
    (n,) = nodes()
    tg = gate(tollgate, rpc_service(n))
    r, doc = post(tg, body)
    assert r.status == 200 and doc["error"]["code"] == code, (r, doc)
    assert doc["jsonrpc"] == "2.0" and "id" in doc, doc
    assert n.request_count == 0, "a malformed body reached the node"
    assert tg.proc.poll() is None


def test_batch_limits_and_per_item_errors(tollgate, nodes):
    (n,) = nodes()
    n.on("eth_chainId", result="0x1")
    tg = gate(tollgate, rpc_service(n), {"max_batch": 100})
    r, doc = post(tg, [call("eth_chainId", id=i) for i in range(10000)])
    assert r.status == 200 and doc["error"]["code"] == -32600, doc
    assert n.request_count == 0
    mixed = [call("eth_chainId", id=1), {"jsonrpc": "2.0", "id": 2, "method": 5},
             call("eth_chainId", id=3), call("eth_chainId", id=None)]
    r, doc = post(tg, mixed)
    report("batch", too_large="-32600", mixed=[d.get("error", {}).get("code", "ok") for d in doc])
    assert r.status == 200 and [d["id"] for d in doc] == [1, 2, 3], doc  # no notification reply
    assert doc[1]["error"]["code"] == -32600 and doc[0]["result"] == "0x1", doc
    assert [c.id for c in n.calls] == [1, 3, None], n.calls


def test_body_limits(tollgate, nodes):
    (n,) = nodes()
    tg = gate(tollgate, rpc_service(n), {"max_body": "1kb"})
    big = call("eth_call", ["x" * 2000])
    r, doc = post(tg, big)
    assert r.status == 413 and doc["error"]["code"] == -32600, (r, doc)
    with Client(tg.addr, timeout=5) as c:
        r = c.get("/rpc")
    assert r.status == 405 and json.loads(r.body)["error"]["code"] == -32600, r
    assert n.request_count == 0


def chunked_post(tg, chunks, then=b""):
    """POSTs a chunked body (a list of byte strings, one chunk each) and whatever `then` holds
    (a pipelined request) on one connection; returns the raw bytes read until it closes."""
    import socket

    s = socket.create_connection(tg.addr, timeout=5)
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    close = b"" if then else b"Connection: close\r\n"
    s.sendall(b"POST /rpc HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" + close +
              b"Content-Type: application/json\r\n\r\n" + body + then)
    got = b""
    while True:
        try:
            d = s.recv(65536)
        except socket.timeout:
            break
        if not d:
            break
        got += d
    s.close()
    return got


def test_chunked_bodies(tollgate, nodes):
    """A chunked body is read whole, decoded, and goes to the node with a Content-Length; a
    pipelined request after it is served; too much data is a 413, bad framing a 400."""
    full, archive = nodes(2)
    full.on("*", result="full")
    archive.on("*", result="archive")
    tg = gate(tollgate, rpc_service(full), {"max_body": "1kb",
                                            "routes": [{"methods": ["trace_*"],
                                                        "service": "archive"}]},
              services={"archive": rpc_service(archive)})
    batch = json.dumps([call("eth_chainId", id=1), call("trace_block", id=2)]).encode()
    single = json.dumps(call("eth_chainId", id=3)).encode()
    got = chunked_post(tg, [batch[:7], batch[7:30], batch[30:]],
                       then=b"POST /rpc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                            b"Content-Length: %d\r\n\r\n%s" % (len(single), single))
    answers = [json.loads(part.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1")[0])
               for part in got.split(b"HTTP/1.1 200")[1:]]
    report("chunked", responses=got.count(b"HTTP/1.1 "), answers=answers,
           node_saw=[c.raw for c in archive.calls][:1])
    assert answers[0] == [{"jsonrpc": "2.0", "id": 1, "result": "full"},
                          {"jsonrpc": "2.0", "id": 2, "result": "archive"}], answers
    assert answers[1] == {"jsonrpc": "2.0", "id": 3, "result": "full"}, answers
    for req in full.http_requests + archive.http_requests:
        assert not req.chunked and int(req.header("content-length")) == len(req.body), req
    one = chunked_post(tg, [single[:5], single[5:]])  # sent as it came, decoded
    assert json.loads(one.split(b"\r\n\r\n", 1)[1]) == answers[1], one
    assert full.http_requests[-1].body == single
    big = chunked_post(tg, [b"[" + b" " * 600, b" " * 600 + b"]"])
    assert big.startswith(b"HTTP/1.1 413"), big[:100]
    import socket
    s = socket.create_connection(tg.addr, timeout=5)
    s.sendall(b"POST /rpc HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    bad = s.recv(4096)
    s.close()
    assert bad.startswith(b"HTTP/1.1 400"), bad[:100]


# -- 2. method policies and weights --------------------------------------------------------------


def test_denied_methods_never_reach_a_node(tollgate, nodes):
    (n,) = nodes()
    n.on("*", result="0x1")
    key = "rpc-key-0123456789"
    tg = gate(tollgate, rpc_service(n), {"methods": {"deny": ["debug_*", "trace_*"]}},
              {"auth": {"api_key": {"from": ["header:x-api-key"]}}, "limits": ["plan"]},
              plans={"free": {"rate": "100/s", "methods": {"deny": ["eth_getLogs"]}}},
              consumers=[{"name": "acme", "plan": "free", "keys": [key]}])
    hdr = [("x-api-key", key)]
    r, doc = post(tg, call("debug_traceTransaction", ["0x1"], id=7), headers=hdr)
    assert doc == {"jsonrpc": "2.0", "id": 7,
                   "error": {"code": -32601, "message": "method not allowed"}}, doc
    r, doc = post(tg, call("eth_getLogs", [{}], id=8), headers=hdr)  # the plan denies it
    assert doc["error"]["code"] == -32601, doc
    r, doc = post(tg, [call("trace_block", id=1), call("eth_chainId", id=2)], headers=hdr)
    assert doc[0]["error"]["code"] == -32601 and doc[1]["result"] == "0x1", doc
    report("denied", node_saw=n.methods())
    assert n.methods() == ["eth_chainId"], n.methods()
    r, doc = post(tg, call("eth_chainId"))  # no key
    assert r.status == 401 and doc["error"]["code"] == -32001, (r, doc)


def test_method_weights_feed_the_limits(tollgate, nodes):
    (n,) = nodes()
    n.on("*", result="0x1")
    key = "rpc-key-0123456789"
    svc = rpc_service(n, jsonrpc={"weights": {"eth_getLogs": 75, "default": 10}})
    tg = gate(tollgate, svc, None,
              {"auth": {"api_key": {"from": ["header:x-api-key"]}}, "limits": ["plan"]},
              plans={"units": {"rate": "100/m", "burst": 100}},
              consumers=[{"name": "acme", "plan": "units", "keys": [key]}])
    hdr = [("x-api-key", key)]
    r1, d1 = post(tg, call("eth_getLogs", [{}]), headers=hdr)      # 75 of 100
    r2, d2 = post(tg, call("eth_chainId"), headers=hdr)            # 10: 85
    r3, d3 = post(tg, call("eth_getLogs", [{}]), headers=hdr)      # 75 more: refused
    r4, d4 = post(tg, [call("eth_chainId", id=i) for i in range(2)], headers=hdr)  # 20: refused
    r5, d5 = post(tg, call("eth_chainId"), headers=hdr)            # 10: 95
    report("weights", statuses=[r.status for r in (r1, r2, r3, r4, r5)],
           remaining=r5.header("ratelimit"))
    assert [r.status for r in (r1, r2, r3, r4, r5)] == [200, 200, 429, 429, 200]
    assert d3["error"]["code"] == -32005 and d3["id"] == 1, d3
    assert n.methods().count("eth_getLogs") == 1


# -- 3. failover -----------------------------------------------------------------------------------


def test_node_errors_fail_over_caller_errors_do_not(tollgate, nodes):
    a, b = nodes(2)
    for n, head in ((a, "header not found"), (b, None)):
        if head:
            n.on("eth_getBalance", error={"code": -32000, "message": head})
        else:
            n.on("eth_getBalance", result="0x64")
        n.on("eth_call", error={"code": 3, "message": "execution reverted: nope", "data": "0x08"})
    svc = rpc_service(a, b, balance="round_robin",
                      retry={"attempts": 2, "budget": 1.0},
                      health={"passive": {"consecutive_failures": 1000}})
    tg = gate(tollgate, svc)
    got = [post(tg, call("eth_getBalance", ["0x00", "latest"], id=i))[1] for i in range(10)]
    assert all(d.get("result") == "0x64" for d in got), got
    reverted = [post(tg, call("eth_call", [{}, "latest"], id=i))[1] for i in range(4)]
    assert all(d["error"]["code"] == 3 for d in reverted), reverted
    calls = a.count("eth_call") + b.count("eth_call")
    m = tg.metrics()
    retries = m.sum("tollgate_upstream_retries_total", reason="jsonrpc_error")
    report("failover", header_not_found_on_a=a.count("eth_getBalance"),
           answered_by_b=b.count("eth_getBalance"), reverted_calls_sent=calls, retries=retries)
    assert calls == 4, "a reverted call was retried"
    assert retries >= 1


def test_writes_are_never_sent_twice(tollgate, nodes):
    a, b = nodes(2)
    for n in (a, b):
        n.on("eth_sendRawTransaction", error={"code": -32005, "message": "limit exceeded"})
    svc = rpc_service(a, b, retry={"attempts": 3, "budget": 1.0})
    tg = gate(tollgate, svc)
    r, doc = post(tg, call("eth_sendRawTransaction", ["0x02f8"]))
    sent = a.count("eth_sendRawTransaction") + b.count("eth_sendRawTransaction")
    report("write", sent=sent, answer=doc)
    assert sent == 1 and doc["error"]["code"] == -32005, (sent, doc)


def test_http_errors_fail_over(tollgate, nodes):
    a, b = nodes(2)
    a.on("*", status=429)
    b.on("*", result="0x2")
    svc = rpc_service(a, b, balance="round_robin", retry={"attempts": 2, "budget": 1.0},
                      health={"passive": {"consecutive_failures": 1000}})
    tg = gate(tollgate, svc)
    got = [post(tg, call("eth_chainId", id=i))[1] for i in range(6)]
    assert all(d.get("result") == "0x2" for d in got), got


# -- 4. method routing -----------------------------------------------------------------------------


def test_batch_split_per_service_in_client_order(tollgate, nodes):
    full, archive = nodes(2, shuffle=True)
    full.on("*", result=lambda params: "full")
    archive.on("*", result=lambda params: "archive")
    tg = gate(tollgate, rpc_service(full),
              {"routes": [{"methods": ["trace_*", "debug_*"], "service": "archive"}]},
              services={"archive": rpc_service(archive)})
    batch = [call("eth_chainId", id=1), call("trace_block", id=2), call("eth_call", id=3),
             call("debug_x", id="4"), call("eth_chainId", id=5)]
    r, doc = post(tg, batch)
    report("split", ids=[d["id"] for d in doc], results=[d.get("result") for d in doc],
           full=full.methods(), archive=archive.methods())
    assert [d["id"] for d in doc] == [1, 2, 3, "4", 5], doc
    assert [d["result"] for d in doc] == ["full", "archive", "full", "archive", "full"], doc
    assert sorted(archive.methods()) == ["debug_x", "trace_block"]
    r, doc = post(tg, call("trace_block", id=9))
    assert doc == {"jsonrpc": "2.0", "id": 9, "result": "archive"}, doc


# -- 5. consistent heads ---------------------------------------------------------------------------


def test_block_number_never_goes_backwards(tollgate, nodes):
    a, b = nodes(2)
    a.on("eth_blockNumber", result="0x20")
    b.on("eth_blockNumber", result="0x1e")  # two blocks behind
    svc = rpc_service(a, b, balance="round_robin", retry={"attempts": 2, "budget": 1.0},
                      health={"passive": {"consecutive_failures": 1000}})
    tg = gate(tollgate, svc)
    seen = [int(post(tg, call("eth_blockNumber", id=i))[1]["result"], 16) for i in range(10)]
    report("heads", seen=seen)
    assert seen[0] in (0x1e, 0x20)
    first_high = seen.index(0x20)
    assert all(s == 0x20 for s in seen[first_high:]), seen


# -- 6. a real node and a real client --------------------------------------------------------------


def test_ethers_through_the_gateway_matches_the_node(tollgate, tmp_path):
    """ethers JsonRpcProvider against anvil directly and through tollgate: block number,
    balance, eth_call, a reverted call, a signed transaction mined, a batch of 50 calls. The
    results that do not depend on the chain's earlier state must be identical."""
    from tglib.anvil import Anvils
    from tglib.ethers import comparable, require_ethers, run_ethers

    require_ethers()
    anvils = Anvils(str(tmp_path))
    try:
        (a,) = anvils(1, automine=True)
        svc = {"kind": "jsonrpc", "nodes": [{"url": a.url}]}
        tg = tollgate(services={"eth": svc},
                      routes=[{"name": "rpc", "match": {"path": "/rpc"}, "service": "eth",
                               "rewrite": {"path": "/"}}])
        direct = run_ethers("http", a.url, timeout=30)
        via = run_ethers("http", f"http://{tg.addr[0]}:{tg.addr[1]}/rpc", timeout=30)
        report("ethers", tx_status=via["tx"]["status"], batch=via["batch"]["count"],
               batch_sizes=via["batch"]["sizes"], revert=via["revert"]["reason"])
        assert comparable(via) == comparable(direct)
        assert via["tx"]["status"] == 1 and via["batch"]["count"] == 50
    finally:
        anvils.close()


# -- 7. metrics ------------------------------------------------------------------------------------


def test_jsonrpc_metrics(tollgate, nodes):
    (n,) = nodes()
    n.on("eth_getLogs", result=[])
    n.on("eth_chainId", result="0x1")
    n.on("eth_call", error={"code": 3, "message": "execution reverted"})
    svc = rpc_service(n, jsonrpc={"weights": {"eth_getLogs": 75, "eth_get*": 20}})
    tg = gate(tollgate, svc, {"methods": {"deny": ["debug_*"]}})
    post(tg, [call("eth_getLogs", [{}], id=1), call("eth_chainId", id=2),
              call("debug_x", id=3)])
    post(tg, call("eth_call", [{}], id=4))
    post(tg, b"{")
    m = tg.metrics()
    calls = {lab["method_class"]: v for lab, v in m.series("tollgate_jsonrpc_requests_total")}
    errors = {lab["kind"]: v for lab, v in m.series("tollgate_jsonrpc_errors_total")}
    report("metrics", calls=calls, errors=errors)
    assert calls == {"eth_getLogs": 1, "other": 2}, calls
    assert errors == {"method_not_allowed": 1, "reverted": 1, "parse_error": 1}, errors
    assert m.value("tollgate_jsonrpc_batch_size_count") == 2  # the parse error has no calls
    assert m.value("tollgate_jsonrpc_batch_size_sum") == 4


def test_already_known_write_returns_the_hash(tollgate, nodes):
    """A node that already has a transaction answers "already known": the caller gets the
    transaction's hash (Keccak-256 of the raw bytes, a vector from ethers), as a success."""
    raw = ("0x02f87301078459682f008506fc23ac00825208943535353535353535353535353535353535353535880de0b6"
           "b3a764000080c001a02b85fc755ea20c385d0686fa3c943ce504bef9794a4106545f15f45728186152a06e04"
           "219535948f1208aac36405a6dadc608749dbc831949c815e594b6f4c5f05")
    want = "0xbdde58b328b81ff88b3235632514c1b6fc3c4c7ad55e374c98b937a997816589"
    (n,) = nodes()
    n.on("eth_sendRawTransaction", error={"code": -32000, "message": "already known"})
    n.on("eth_chainId", result="0x1")
    tg = gate(tollgate, rpc_service(n))
    r, doc = post(tg, call("eth_sendRawTransaction", [raw], id="tx"))
    assert doc == {"jsonrpc": "2.0", "id": "tx", "result": want}, doc
    r, doc = post(tg, [call("eth_chainId", id=1), call("eth_sendRawTransaction", [raw], id=2)])
    report("already known", single=want, batch=doc)
    assert doc == [{"jsonrpc": "2.0", "id": 1, "result": "0x1"},
                   {"jsonrpc": "2.0", "id": 2, "result": want}], doc
    assert n.count("eth_sendRawTransaction") == 2
