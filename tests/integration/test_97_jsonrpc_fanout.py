"""JSON-RPC fan-out (issue 6): a batch split per service is sent to the services at once and
reassembled in the client's order; a write to a service with jsonrpc.broadcast: N goes to N
nodes at once and the first success wins ("already known" counts as one, an error of the
caller's waits for the other nodes); the nodes that lose are not blamed; a client that leaves
mid-way leaves nothing behind. Scripted nodes (tglib.rpc_node) and, for the broadcast of a real
signed transaction, two anvil nodes driven by ethers.

Each test prints its measurements with -s (a `[title] k=v, ...` line).
"""

import json
import socket
import time

from tglib.net import wait_until
from test_97_jsonrpc import call, gate, nodes, post, report, rpc_service  # noqa: F401

RAW = ("0x02f87301078459682f008506fc23ac00825208943535353535353535353535353535353535353535880de0b6"
       "b3a764000080c001a02b85fc755ea20c385d0686fa3c943ce504bef9794a4106545f15f45728186152a06e04"
       "219535948f1208aac36405a6dadc608749dbc831949c815e594b6f4c5f05")
RAW_HASH = "0xbdde58b328b81ff88b3235632514c1b6fc3c4c7ad55e374c98b937a997816589"


def node_status(tg, service):
    st = tg.admin("/status").json()
    (s,) = [x for x in st["services"] if x["name"] == service]
    return s["nodes"]


def idle(tg, *services):
    """Waits until no node of the services has a request in flight; returns their nodes."""
    def settled():
        got = [n for s in services for n in node_status(tg, s)]
        return got if all(n["in_flight"] == 0 for n in got) else None
    return wait_until(settled, 5, interval=0.05, what="no request in flight")


def test_split_batch_goes_to_the_services_at_once(tollgate, nodes):
    full, archive = nodes(2)
    full.on("*", delay=0.6, result=lambda params: "full")
    archive.on("*", delay=0.6, result=lambda params: "archive")
    tg = gate(tollgate, rpc_service(full),
              {"routes": [{"methods": ["trace_*"], "service": "archive"}]},
              services={"archive": rpc_service(archive)})
    batch = [call("trace_block", id=1), call("eth_call", id=2), call("trace_tx", id=3)]
    t0 = time.monotonic()
    r, doc = post(tg, batch)
    took = time.monotonic() - t0
    report("parallel split", seconds=round(took, 3), each_service_delay=0.6,
           results=[d.get("result") for d in doc])
    assert [d["id"] for d in doc] == [1, 2, 3], doc
    assert [d["result"] for d in doc] == ["archive", "full", "archive"], doc
    assert took < 1.0, f"the two services were asked one after the other ({took:.2f} s)"
    # the legs' upstream requests are accounted on their own nodes
    nodes_after = idle(tg, "eth", "archive")
    assert [n["requests"] for n in nodes_after] == [1, 1], nodes_after


def test_split_batch_with_a_failed_service_answers_the_rest(tollgate, nodes):
    full, archive = nodes(2)
    full.on("*", result=lambda params: "full")
    archive.on("*", status=503)
    tg = gate(tollgate, rpc_service(full),
              {"routes": [{"methods": ["trace_*"], "service": "archive"}]},
              services={"archive": rpc_service(archive)})
    r, doc = post(tg, [call("eth_chainId", id=1), call("trace_block", id=2)])
    report("split with a failed service", status=r.status, answer=doc)
    assert r.status == 200
    assert doc[0] == {"jsonrpc": "2.0", "id": 1, "result": "full"}, doc
    assert doc[1] == {"jsonrpc": "2.0", "id": 2, "error": {
        "code": -32603, "message": "the node answered HTTP 503"}}, doc


def test_broadcast_first_success_wins(tollgate, nodes):
    """Three nodes: one never answers, one says "nonce too low" at once (the caller's error:
    not a success, the others are awaited), one answers after 0.3 s. The client gets the
    result without waiting for the silent node, each node got the write once, and the silent
    node, whose leg was cancelled, is not blamed."""
    hang, caller_err, slow = nodes(3)
    hang.on("eth_sendRawTransaction", drop="hang")
    caller_err.on("eth_sendRawTransaction", error={"code": -32000, "message": "nonce too low"})
    slow.on("eth_sendRawTransaction", delay=0.3, result=RAW_HASH)
    svc = rpc_service(hang, caller_err, slow, jsonrpc={"broadcast": 3},
                      timeouts={"response": "5s"})
    tg = gate(tollgate, svc)
    t0 = time.monotonic()
    r, doc = post(tg, call("eth_sendRawTransaction", [RAW], id="w"))
    took = time.monotonic() - t0
    sent = [n.count("eth_sendRawTransaction") for n in (hang, caller_err, slow)]
    report("broadcast", seconds=round(took, 3), sent_per_node=sent, answer=doc)
    assert doc == {"jsonrpc": "2.0", "id": "w", "result": RAW_HASH}, doc
    assert sent == [1, 1, 1], sent
    assert took < 2.0, took
    st = {n["address"]: n for n in idle(tg, "eth")}
    assert st[f"127.0.0.1:{hang.port}"]["errors"] == 0, st
    assert all(n["state"] == "healthy" for n in st.values()), st


def test_broadcast_already_known_is_a_success(tollgate, nodes):
    hang, known = nodes(2)
    hang.on("eth_sendRawTransaction", drop="hang")
    known.on("eth_sendRawTransaction", error={"code": -32000, "message": "already known"})
    svc = rpc_service(hang, known, jsonrpc={"broadcast": 2}, timeouts={"response": "5s"})
    tg = gate(tollgate, svc)
    t0 = time.monotonic()
    r, doc = post(tg, call("eth_sendRawTransaction", [RAW], id=7))
    took = time.monotonic() - t0
    report("broadcast already known", seconds=round(took, 3), answer=doc)
    assert doc == {"jsonrpc": "2.0", "id": 7, "result": RAW_HASH}, doc
    assert took < 2.0, took


def test_broadcast_caller_error_when_no_node_succeeds(tollgate, nodes):
    a, b = nodes(2)
    for n in (a, b):
        n.on("eth_sendRawTransaction", error={"code": -32000, "message": "nonce too low"})
    tg = gate(tollgate, rpc_service(a, b, jsonrpc={"broadcast": 2}))
    r, doc = post(tg, call("eth_sendRawTransaction", [RAW], id=1))
    report("broadcast, caller error", answer=doc)
    assert doc["error"]["message"] == "nonce too low", doc
    assert (a.count("eth_sendRawTransaction"), b.count("eth_sendRawTransaction")) == (1, 1)


def test_broadcast_all_nodes_fail(tollgate, nodes):
    a, b = nodes(2)
    for n in (a, b):
        n.on("*", status=503)
    svc = rpc_service(a, b, jsonrpc={"broadcast": 2}, retry={"attempts": 3, "budget": 1.0})
    tg = gate(tollgate, svc)
    r, doc = post(tg, call("eth_sendRawTransaction", [RAW], id=1))
    sent = (a.count("eth_sendRawTransaction"), b.count("eth_sendRawTransaction"))
    report("broadcast, all fail", status=r.status, sent=sent, answer=doc)
    assert sent == (1, 1), "a write was sent twice to a node"
    assert r.status == 503, "the nodes' own answer, as a single node's would be"


def test_broadcast_reads_and_unset_services_use_one_node(tollgate, nodes):
    a, b = nodes(2)
    for n in (a, b):
        n.on("*", result="0x1")
    tg = gate(tollgate, rpc_service(a, b, jsonrpc={"broadcast": 2}))
    for i in range(4):
        post(tg, call("eth_chainId", id=i))
    report("broadcast, reads", a=a.request_count, b=b.request_count)
    assert a.request_count + b.request_count == 4


def test_client_leaving_mid_fan_out_leaves_nothing_behind(tollgate, nodes):
    """Clients that close their connection while the copies of their write hang on two nodes:
    like any request in flight, the legs run until the node's response timeout (a half-closed
    client may still read its answer), then everything they held is let go."""
    a, b = nodes(2)
    for n in (a, b):
        n.on("eth_sendRawTransaction", drop="hang")
        n.on("eth_chainId", result="0x1")
    svc = rpc_service(a, b, jsonrpc={"broadcast": 2}, timeouts={"response": "1s"},
                      health={"passive": {"consecutive_failures": 1000}})
    tg = gate(tollgate, svc)
    body = json.dumps(call("eth_sendRawTransaction", [RAW], id=1)).encode()
    socks = []
    for _ in range(5):
        s = socket.create_connection(tg.addr, timeout=5)
        s.sendall(b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        socks.append(s)
    wait_until(lambda: a.count("eth_sendRawTransaction") == 5 and
               b.count("eth_sendRawTransaction") == 5, 5, interval=0.02, what="every copy sent")
    for s in socks:
        s.close()
    t0 = time.monotonic()
    after = idle(tg, "eth")
    took = time.monotonic() - t0
    r, doc = post(tg, call("eth_chainId", id=2))
    report("client left", settled_s=round(took, 2), in_flight=[n["in_flight"] for n in after],
           connections=[n["connections"] for n in after], then=doc)
    assert doc == {"jsonrpc": "2.0", "id": 2, "result": "0x1"}, doc
    assert took < 3, took
    m = tg.metrics()
    assert m.sum("tollgate_upstream_requests_total") >= 10


def test_broadcast_of_a_signed_transaction_reaches_both_anvils(tollgate, tmp_path):
    """ethers sends a signed transaction through tollgate to a service of two anvil nodes with
    broadcast: 2: both nodes have it mined, and ethers sees one success."""
    from tglib.anvil import Anvils
    from tglib.ethers import require_ethers, run_ethers
    from tglib.rpc_node import DIRECT

    require_ethers()
    anvils = Anvils(str(tmp_path))
    try:
        a, b = anvils(2, automine=True)
        svc = {"kind": "jsonrpc", "nodes": [{"url": a.url}, {"url": b.url}],
               "jsonrpc": {"broadcast": 2}}
        tg = tollgate(services={"eth": svc},
                      routes=[{"name": "rpc", "match": {"path": "/rpc"}, "service": "eth",
                               "rewrite": {"path": "/"}}])
        via = run_ethers("http", f"http://{tg.addr[0]}:{tg.addr[1]}/rpc", timeout=30)
        tx = via["tx"]["hash"]
        found = []
        for node in (a, b):
            req = json.dumps(call("eth_getTransactionReceipt", [tx])).encode()
            with DIRECT.open(_post(node.url, req), timeout=5) as resp:
                found.append(json.loads(resp.read())["result"])
        report("broadcast to anvil", tx=tx, status=via["tx"]["status"],
               mined=[f and int(f["blockNumber"], 16) for f in found])
        assert via["tx"]["status"] == 1
        assert all(f is not None and f["status"] == "0x1" for f in found), found
    finally:
        anvils.close()


def _post(url, body):
    import urllib.request
    return urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
