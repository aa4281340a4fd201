"""The JSON-RPC test harness itself, against real anvil nodes: the ethers v6 driver
(tglib/ethers_driver.mjs through tglib.ethers), anvil with interval mining and kill(), and the
fake node tglib.rpc_node. No tollgate here: these tests show the harness tells the truth before
the gateway's tests lean on it. They skip when npm (and so anvil or ethers) is missing."""

import json
import time

import pytest

from tglib import Client
from tglib.anvil import CHAIN_ID, DEV_ADDRESS, Anvils
from tglib.ethers import comparable, require_ethers, run_ethers, start_ethers
from tglib.net import wait_until
from tglib.rpc_node import RpcNode


@pytest.fixture
def anvils(tmp_path):
    made = Anvils(str(tmp_path))
    yield made
    made.close()


@pytest.fixture
def rpc_nodes():
    made = []

    def make(**kw):
        n = RpcNode(**kw).start()
        made.append(n)
        return n

    yield make
    for n in made:
        n.close()


def post(node, doc, c=None):
    """Sends doc as JSON on a client connection (a new one unless c is given)."""
    body = json.dumps(doc).encode() if not isinstance(doc, bytes) else doc
    hdrs = [("Content-Type", "application/json")]
    if c is not None:
        return c.get("/", method="POST", body=body, headers=hdrs)
    with Client(node.addr, timeout=5) as c2:
        return c2.get("/", method="POST", body=body, headers=hdrs)


def call(method, id_=1, params=()):
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": list(params)}


# ---- ethers at anvil -----------------------------------------------------------------------


def test_ethers_http_at_anvil(anvils):
    require_ethers()
    (a,) = anvils(1, mine=0, automine=True)
    doc = run_ethers("http", a.url, timeout=30)
    assert doc["ethers"].startswith("6."), doc["ethers"]
    assert doc["chain_id"] == str(CHAIN_ID) and doc["address"] == DEV_ADDRESS
    assert doc["deploy"]["status"] == 1 and doc["deploy"]["contract"], doc["deploy"]
    assert doc["call"] == {"answer": "42", "double_21": "42"}
    rv = doc["revert"]
    assert rv["caught"] and rv["code"] == "CALL_EXCEPTION", rv
    assert rv["reason"] == "tollgate: refused" and rv["data"].startswith("0x08c379a0"), rv
    tx = doc["tx"]
    assert tx["status"] == 1 and tx["value"] == "1" and tx["confirmations"] >= 1, tx
    assert tx["block"] > doc["deploy"]["block"] and tx["hash"].startswith("0x"), tx
    assert doc["recipient_balance"] == "1"
    b = doc["batch"]
    assert b["count"] == 50 and b["errors"] == 0, b
    assert b["requests"] == 1 and b["sizes"] == [50], "the 50 calls left as one batch"
    doubles = [r for r in b["results"] if r["kind"] == "double"]
    assert len(doubles) == 20 and all(r["value"] == str(2 * r["arg"]) for r in doubles)
    blocks = {r["arg"]: r["value"] for r in b["results"] if r["kind"] == "getBlock"}
    assert blocks[0]["number"] == 0 and blocks[doc["head"]]["number"] == doc["head"]
    assert blocks[9] is None, "past the head"
    # staticNetwork: true -> one eth_chainId, first; every single call is its own request.
    assert doc["sent"][0] == "eth_chainId" and doc["sent"].count("eth_chainId") == 1, doc["sent"]
    assert all(isinstance(m, str) for m in doc["sent"]), "batchMaxCount 1: no batches"


def test_ethers_http_through_a_recording_proxy(anvils, rpc_nodes):
    """A run through rpc_node (proxy_to the anvil) sees what ethers sends on the wire, and
    agrees with a run straight at the node: the comparison a gateway test makes."""
    require_ethers()
    (a,) = anvils(1, mine=0, automine=True)
    direct = run_ethers("http", a.url, timeout=30)
    node = rpc_nodes(proxy_to=a.url)
    via = run_ethers("http", node.url, timeout=30)
    assert comparable(via) == comparable(direct)
    assert via["tx"]["block"] > direct["tx"]["block"], "the same chain, later"
    batches = [r for r in node.http_requests if r.body.startswith(b"[")]
    assert len(batches) == 1 and len(json.loads(batches[0].body)) == 50, batches
    assert node.methods().count("eth_sendRawTransaction") == 2
    assert node.methods().count("eth_chainId") == 1
    assert node.request_count == len(via["sent"]) + 1, "one request per single call + the batch"
    assert not node.errors


def test_ethers_ws_blocks_from_anvil(anvils):
    require_ethers()
    (a,) = anvils(1, mine=0, block_time=1)
    doc = run_ethers("ws", a.ws_url, 5, timeout=20)
    assert doc["close"] is None and len(doc["connections"]) == 1, doc
    nums = [b["number"] for b in doc["blocks"]]
    assert len(nums) >= 4, doc["blocks"]
    assert nums == list(range(nums[0], nums[0] + len(nums))), f"not consecutive: {nums}"
    gaps = [y["t"] - x["t"] for x, y in zip(doc["blocks"], doc["blocks"][1:])]
    assert all(500 <= g <= 1500 for g in gaps), f"one block a second: {gaps}"
    assert "eth_subscribe" in doc["connections"][0]["sent"], doc["connections"][0]


def test_ethers_ws_reconnect_after_the_node_is_killed(anvils):
    """SIGKILL of the node: ethers' socket closes with 1006; the driver reports it, retries
    (refused while the node is down) and, once the node is back on the same port, receives
    blocks on a new connection."""
    require_ethers()
    (a,) = anvils(1, mine=0, block_time=1)
    run = start_ethers("ws-reconnect", a.ws_url, 6, timeout=20)
    try:
        wait_until(lambda: a.head() >= 2, 5, interval=0.05, what="two blocks")
        killed = time.time()
        a.kill()
        time.sleep(0.5)  # a few refused reconnects
        a.start().wait_ready()
        doc = run.wait()
    finally:
        run.kill()
    conns = doc["connections"]
    first = conns[0]
    assert first["opened"] is not None and len(first["blocks"]) >= 1, first
    close_at = (doc["t0_epoch_ms"] + first["close"]["t"]) / 1000
    assert first["close"]["code"] == 1006 and -0.05 <= close_at - killed < 0.5, (first, killed)
    assert doc["closes"][0] == first["close"]
    refused = [c for c in conns[1:] if c["opened"] is None]
    assert refused and all("ECONNREFUSED" in (c["error"] or "") for c in refused), conns
    last = conns[-1]
    assert last["opened"] is not None and last["close"] is None, last
    assert last["blocks"] and last["blocks"][0]["number"] <= 2, "blocks of the new chain"


# ---- rpc_node ------------------------------------------------------------------------------


def test_rpc_node_rules_and_recording(rpc_nodes):
    node = rpc_nodes()
    node.on("eth_blockNumber", result="0x10")
    node.on("eth_call", error={"code": -32000, "message": "header not found"})
    node.on("eth_getBalance", result=lambda params: hex(len(params)))
    node.on("eth_chainId", result="0x1", times=1)
    with Client(node.addr, timeout=5) as c:
        r = post(node, call("eth_blockNumber", 7), c)
        assert r.status == 200 and r.json() == {"jsonrpc": "2.0", "id": 7, "result": "0x10"}
        assert r.header("content-type") == "application/json"
        r = post(node, call("eth_call", "a", [{"to": "0x00"}, "latest"]), c)
        assert r.json()["error"] == {"code": -32000, "message": "header not found"}
        r = post(node, [call("eth_getBalance", 1, ["0xab", "latest"]), call("eth_chainId", 2),
                        call("eth_chainId", 3), call("eth_nope", 4),
                        {"jsonrpc": "2.0", "method": "eth_blockNumber"}], c)  # notification
        got = r.json()
        assert [x["id"] for x in got] == [1, 2, 3, 4], "request order, no notification answer"
        assert got[0]["result"] == "0x2" and got[1]["result"] == "0x1"
        assert got[2]["error"]["code"] == -32601, "times=1: the rule is used up"
        assert got[3]["error"]["code"] == -32601
        assert post(node, b"{not json", c).json()["error"]["code"] == -32700
    assert node.methods() == ["eth_blockNumber", "eth_call", "eth_getBalance", "eth_chainId",
                              "eth_chainId", "eth_nope", "eth_blockNumber"]
    assert node.count("eth_chainId") == 2 and "eth_sendRawTransaction" not in node.methods()
    c2 = node.calls[1]
    assert c2.id == "a" and c2.params == [{"to": "0x00"}, "latest"] and c2.batch is None
    assert json.loads(c2.raw)["method"] == "eth_call"
    assert node.calls[4].batch == 5 and node.calls[4].index == 2
    assert node.calls[6].notification
    assert node.request_count == 4 and len(node.bad) == 1
    assert len({r.conn_id for r in node.http_requests}) == 1, "keep-alive: one connection"


def test_rpc_node_status_delay_and_drop(rpc_nodes):
    node = rpc_nodes()
    node.on("eth_blockNumber", result="0x1")
    node.on("eth_getLogs", result=[], delay=0.3)
    node.on("eth_call", status=503, body=b"overloaded")
    with Client(node.addr, timeout=5) as c:
        t0 = time.monotonic()
        r = post(node, [call("eth_blockNumber", 1), call("eth_getLogs", 2)], c)
        assert time.monotonic() - t0 >= 0.3 and len(r.json()) == 2
        r = post(node, [call("eth_blockNumber", 3), call("eth_call", 4)], c)
        assert r.status == 503 and r.body == b"overloaded", "one status for the whole batch"
    node.on("*", status=429, headers=[("Retry-After", "1")])
    r = post(node, call("eth_gasPrice", 5))
    assert r.status == 429 and r.header("retry-after") == "1", r
    assert post(node, call("eth_blockNumber", 6)).json()["result"] == "0x1", "named before *"
    node.on("eth_blockNumber", drop="reset")
    with Client(node.addr, timeout=5) as c:
        c.request("POST", "/", body=json.dumps(call("eth_blockNumber")).encode())
        assert c.closed_within(2)
    assert node.count("eth_call") == 1 and node.count() == 7


def test_rpc_node_proxy_to_anvil_and_shuffle(anvils, rpc_nodes):
    (a,) = anvils(1, mine=3)
    node = rpc_nodes(proxy_to=a.url)
    node.on("eth_blockNumber", result="0x99")
    batch = [call("eth_chainId", 1), call("eth_blockNumber", 2), call("eth_getBalance", 3,
             [DEV_ADDRESS, "latest"]), call("eth_getBlockByNumber", 4, ["0x2", False])]
    got = post(node, batch).json()
    assert [x["id"] for x in got] == [1, 2, 3, 4]
    assert got[0]["result"] == hex(CHAIN_ID), "proxied to anvil"
    assert got[1]["result"] == "0x99", "the rule, not anvil (head 3)"
    assert int(got[2]["result"], 16) > 0 and got[3]["result"]["number"] == "0x2"
    assert post(node, call("eth_blockNumber", 9)).json()["result"] == "0x99"
    assert post(node, call("eth_chainId", 10)).json() == {
        "jsonrpc": "2.0", "id": 10, "result": hex(CHAIN_ID)}
    forwarded = [json.loads(r.body) for r in node.http_requests]
    assert len(forwarded) == 3 and not node.errors

    shuffled = rpc_nodes(proxy_to=a.url, shuffle=True)
    big = [call("eth_getBlockByNumber", i, [hex(i % 4), False]) for i in range(10)]
    got = post(shuffled, big).json()
    ids = [x["id"] for x in got]
    assert sorted(ids) == list(range(10)) and ids != list(range(10)), ids
    assert all(x["result"]["number"] == hex(x["id"] % 4) for x in got), "answers follow ids"
