"""JSON-RPC caching (issue 7): calls kept by the rules of src/cache/rpc_rules.c, each call of a batch
on its own, only misses sent to a node; finalized reads kept, the head and pending transactions
not. Scripted nodes (tglib.rpc_node), and anvil for the chain-backed case.

Each test prints its measurements with -s (a `[title] k=v, ...` line).
"""

import json
import time

from test_97_jsonrpc import call, gate, nodes, post, report, rpc_service  # noqa: F401


def cached_gate(tollgate, svc, cache=None, **route_rpc):
    return gate(tollgate, svc, route_rpc or None, {"cache": cache or {}})


def test_calls_are_cached_one_by_one(tollgate, nodes):
    (n,) = nodes()
    n.on("eth_chainId", result="0x1")
    n.on("eth_blockNumber", result="0x100")
    n.on("eth_getBlockByNumber", result=lambda params: {"number": params[0], "hash": "0xab"})
    n.on("eth_getBalance", result="0x5")
    tg = cached_gate(tollgate, rpc_service(n, jsonrpc={"finality_depth": 16}))
    post(tg, call("eth_blockNumber", id=0))  # the service learns its head: 0x100
    first = post(tg, [call("eth_chainId", id=1), call("eth_getBlockByNumber", ["0x10", False], id=2),
                      call("eth_getBalance", ["0xAbC", "latest"], id=3)])[1]
    sent = n.request_count
    second = post(tg, [call("eth_getBlockByNumber", ["0x10", False], id="b"),
                       call("eth_chainId", id="a"), call("eth_getBalance", ["0xabc", "latest"],
                                                         id="c")])[1]
    calls_second = [c.method for c in n.calls][len(n.calls) - (n.request_count - sent):]
    m = tg.metrics()
    report("rpc cache", first=first, second=second, node_saw_second=n.calls[-1].method,
           hits=m.value("tollgate_cache_requests_total", route="rpc", result="hit"))
    assert second == [{"jsonrpc": "2.0", "id": "b", "result": {"number": "0x10", "hash": "0xab"}},
                      {"jsonrpc": "2.0", "id": "a", "result": "0x1"},
                      {"jsonrpc": "2.0", "id": "c", "result": "0x5"}], second
    # the chain id and the final block came from the cache; the balance at "latest" went out
    assert n.request_count == sent + 1 and calls_second == ["eth_getBalance"], calls_second
    assert m.value("tollgate_cache_requests_total", route="rpc", result="hit") == 2


def test_what_json_rpc_caching_leaves_out(tollgate, nodes):
    (n,) = nodes()
    n.on("eth_blockNumber", result="0x100")
    n.on("eth_getTransactionReceipt", result=None)
    n.on("eth_getBlockByNumber", result=lambda params: {"number": params[0]})
    n.on("eth_call", error={"code": 3, "message": "execution reverted"})
    n.on("eth_gasPrice", result="0x3b9aca00")
    tg = cached_gate(tollgate, rpc_service(n, jsonrpc={"finality_depth": 16}),
                     {"realtime_ttl": "300ms"})
    post(tg, call("eth_blockNumber", id=0))
    before = n.request_count
    for _ in range(2):
        post(tg, call("eth_getTransactionReceipt", ["0x01"]))      # null: not mined yet
        post(tg, call("eth_getBlockByNumber", ["0xf8", False]))    # above the final block
        post(tg, call("eth_getBlockByNumber", ["pending", False]))
        post(tg, call("eth_call", [{"to": "0x1"}, "0x10"]))         # an error
    uncached = n.request_count - before
    post(tg, call("eth_gasPrice"))
    post(tg, call("eth_gasPrice"))
    gas_hit = n.count("eth_gasPrice")
    time.sleep(0.4)
    post(tg, call("eth_gasPrice"))
    report("rpc cache leaves out", uncached_requests=uncached, gas_price_sent=n.count("eth_gasPrice"))
    assert uncached == 8, "none of these may be answered from the cache"
    assert gas_hit == 1 and n.count("eth_gasPrice") == 2, "eth_gasPrice is kept realtime_ttl"


def test_finalized_block_comes_from_the_nodes(tollgate, nodes):
    """The health probe asks each node for its "finalized" block in the batch of its head query;
    reads at or below the highest one are kept, even above head - finality_depth, and reads
    above it are not. A node that answers an error for the tag leaves it unknown (its probes
    still pass): the finalized block is head - finality_depth again."""
    from tglib.net import wait_until

    (n,) = nodes()
    n.on("eth_blockNumber", result="0x100")
    n.on("eth_getBlockByNumber", result=lambda params: {
        "number": "0xf0" if params[0] == "finalized" else params[0], "hash": "0xab"})
    n.on("eth_getBalance", result="0x5")
    health = {"active": {"interval": "200ms", "timeout": "150ms",
                         "jsonrpc": {"max_block_lag": 0}}}
    tg = cached_gate(tollgate, rpc_service(n, jsonrpc={"finality_depth": 64},  # head-64: 0xc0
                                           health=health))

    def node_status():
        return tg.admin("/status").json()["services"][0]["nodes"][0]

    def sent(method, block):
        return sum(1 for c in list(n.calls) if c.method == method and block in (c.params or []))

    wait_until(lambda: node_status().get("finalized_block") == 0xf0, 5, interval=0.05,
               what="the probes to learn the node's finalized block")
    probe = next(c for c in list(n.calls) if c.params == ["finalized", False])
    batch = [(c["id"], c["method"], c["params"]) for c in json.loads(probe.raw)]
    for block in ("0xe0", "0xf5"):
        for _ in range(2):
            post(tg, call("eth_getBlockByNumber", [block, False]))
    told = node_status()

    n.on("eth_getBlockByNumber", error={"code": -32000, "message": "finalized block not found"})
    wait_until(lambda: "finalized_block" not in node_status(), 5, interval=0.05,
               what="the finalized block to be unknown")
    for block in ("0xd0", "0xb0"):
        for _ in range(2):
            post(tg, call("eth_getBalance", ["0xabc", block]))
    unknown = node_status()
    report("rpc finalized from the node", batch=batch, status_finalized=told["finalized_block"],
           sent_0xe0=sent("eth_getBlockByNumber", "0xe0"),
           sent_0xf5=sent("eth_getBlockByNumber", "0xf5"),
           fallback_sent_0xd0=sent("eth_getBalance", "0xd0"),
           fallback_sent_0xb0=sent("eth_getBalance", "0xb0"), state=unknown["state"])
    assert batch == [(1, "eth_blockNumber", []), (3, "eth_getBlockByNumber", ["finalized", False])]
    assert told["head_block"] == 0x100 and told["finalized_block"] == 0xf0, told
    assert sent("eth_getBlockByNumber", "0xe0") == 1, "0xe0 is final for the node: kept"
    assert sent("eth_getBlockByNumber", "0xf5") == 2, "0xf5 is above the node's finalized block"
    assert sent("eth_getBalance", "0xd0") == 2, "without the tag, 0xd0 is above head - 64"
    assert sent("eth_getBalance", "0xb0") == 1, "without the tag, 0xb0 is below head - 64"
    assert unknown["state"] == "healthy" and unknown["probe"]["ok"] is True, unknown


def test_final_reads_cached_on_anvil_while_the_head_moves(tollgate, tmp_path):
    """anvil mining on demand; health probes tell tollgate the head; finality_depth 2. A final
    eth_getBlockByNumber comes from the cache the second time, eth_blockNumber follows the
    chain, and the receipt of a transaction not mined yet is not kept: once it is mined the
    client sees it."""
    from tglib.anvil import DEV_ADDRESS, Anvils
    from tglib.net import wait_until

    anvils = Anvils(str(tmp_path))
    try:
        (a,) = anvils(1, mine=10)
        svc = {"kind": "jsonrpc", "nodes": [{"url": a.url}], "jsonrpc": {"finality_depth": 2},
               "health": {"active": {"interval": "200ms", "timeout": "150ms",
                                         "jsonrpc": {"max_block_lag": 0}}}}
        tg = tollgate(services={"eth": svc},
                      routes=[{"name": "rpc", "match": {"path": "/rpc"}, "service": "eth",
                               "rewrite": {"path": "/"}, "cache": {"realtime_ttl": "100ms"}}])

        def head_known():
            st = tg.admin("/status").json()
            node = st["services"][0]["nodes"][0]
            return node.get("head_block") or (node.get("probe") or {}).get("head")
        wait_until(head_known, 5, interval=0.05, what="the probes to learn the head")

        def hits():
            return tg.metrics().sum("tollgate_cache_requests_total", route="rpc", result="hit")
        b1 = post(tg, call("eth_getBlockByNumber", ["0x5", False]))[1]["result"]
        h0 = hits()
        b2 = post(tg, call("eth_getBlockByNumber", ["0x5", False]))[1]["result"]
        h1 = hits()
        heads = []
        for _ in range(3):
            a.mine(1)
            time.sleep(0.25)
            heads.append(int(post(tg, call("eth_blockNumber"))[1]["result"], 16))
        tx = post(tg, call("eth_sendTransaction", [{"from": DEV_ADDRESS, "to": DEV_ADDRESS,
                                                     "value": "0x1"}]))[1]["result"]
        pending = post(tg, call("eth_getTransactionReceipt", [tx]))[1]["result"]
        a.mine(1)
        mined = post(tg, call("eth_getTransactionReceipt", [tx]))[1]["result"]
        report("rpc cache on anvil", block5_same=b1 == b2, hit_on_second=h1 - h0, heads=heads,
               receipt_before_mining=pending, receipt_after=mined and mined["blockNumber"])
        assert b1 == b2 and b1["number"] == "0x5" and h1 - h0 == 1
        assert heads == sorted(heads) and heads[-1] > heads[0], heads
        assert pending is None and mined is not None and mined["status"] == "0x1", mined
    finally:
        anvils.close()
