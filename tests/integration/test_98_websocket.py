"""WebSocket tunnels (issue 6, DESIGN §9.15): an upgrade goes to the node, and only its 101 turns
the request into a two-way byte pipe; idle tunnels close after websocket.idle_timeout; either
side closing closes the other; a 101 that is not a WebSocket answer is a 502; JSON-RPC routes
refuse upgrades until their frames are parsed; ethers' WebSocketProvider gets anvil's blocks
through a tunnel.

The node here is a small WebSocket echo server written on tglib.upstream (handshake by hand,
frames unmasked as RFC 6455 says), and the client writes its frames by hand, so every byte is
visible to the test.
"""

import base64
import hashlib
import os
import socket
import struct
import time

import pytest

from tglib import Upstream, response, service
from tglib.net import wait_until

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def report(title, **numbers):
    print(f"\n[{title}] " + ", ".join(f"{k}={v}" for k, v in numbers.items()))


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def frame(payload, opcode=1, mask=True):
    """One final frame; masked as a client must."""
    head = bytes([0x80 | opcode])
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack(">H", n)
    else:
        head += bytes([m | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_exact(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError(f"closed after {len(out)} of {n} bytes")
        out += chunk
    return out


def read_frame(sock):
    """(opcode, payload) of one frame, unmasking when masked."""
    b0, b1 = read_exact(sock, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", read_exact(sock, 2))[0]
    elif n == 127:
        n = struct.unpack(">Q", read_exact(sock, 8))[0]
    key = read_exact(sock, 4) if b1 & 0x80 else None
    data = read_exact(sock, n)
    if key:
        data = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    return b0 & 0x0F, data


def echo_node(seen):
    """A handler that accepts WebSocket upgrades and echoes text frames back, prefixed "echo:";
    a close frame is answered with a close frame and the connection closed."""
    def handler(req, conn):
        key = req.header("sec-websocket-key")
        if req.header("upgrade", "").lower() != "websocket" or key is None:
            return response(400, b"not a websocket request")
        seen.append(req)
        conn.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_for(key).encode() +
                  b"\r\n\r\n")
        conn.sock.settimeout(10)
        try:
            while True:
                op, data = read_frame(conn.sock)
                if op == 8:
                    conn.send(frame(data, 8, mask=False))
                    break
                conn.send(frame(b"echo:" + data, 1, mask=False))
        except (EOFError, OSError):
            pass
        conn.close()
        return None
    return handler


def upgrade(addr, path="/ws", extra=b"", timeout=5):
    """Connects and asks for a WebSocket; returns (socket, status, head text, key)."""
    key = base64.b64encode(os.urandom(16)).decode()
    s = socket.create_connection(addr, timeout=timeout)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\n"
              f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
              f"Sec-WebSocket-Version: 13\r\n\r\n".encode() + extra)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            break
        head += chunk
    text = head.decode("latin-1")
    status = int(text.split(" ", 2)[1]) if text.startswith("HTTP/1.1 ") else 0
    return s, status, text, key


def header_of(head, name):
    for line in head.split("\r\n")[1:]:
        if ":" in line and line.split(":", 1)[0].strip().lower() == name:
            return line.split(":", 1)[1].strip()
    return None


def ws_gate(tollgate, up, **top):
    return tollgate(services={"up": service(up.url)},
                    routes=[{"name": "ws", "match": {"path": "/ws"}, "service": "up"}], **top)


def test_echo_through_a_tunnel(tollgate):
    seen = []
    with Upstream(echo_node(seen)) as up:
        tg = ws_gate(tollgate, up)
        s, status, head, key = upgrade(tg.addr)
        assert status == 101, head
        assert header_of(head, "sec-websocket-accept") == accept_for(key), head
        assert header_of(head, "upgrade").lower() == "websocket", head
        assert header_of(head, "x-request-id"), head
        got = []
        for msg in (b"one", b"two" * 1000, os.urandom(70000).hex().encode()):
            s.sendall(frame(msg))
            op, data = read_frame(s)
            got.append(data == b"echo:" + msg)
        s.sendall(frame(struct.pack(">H", 1000), 8))
        op, data = read_frame(s)
        assert op == 8
        assert s.recv(1) == b"", "the tunnel stayed open after the node closed"
        s.close()
        assert got == [True, True, True], got
        fwd = seen[0]
        assert fwd.header("connection").lower() == "upgrade", fwd.head
        assert fwd.header("sec-websocket-key") == key
        wait_until(lambda: tg.metrics().value("tollgate_websocket_connections") == 0, 3,
                   what="the tunnel gauge back to 0")
        m = tg.metrics()
        bytes_in = m.value("tollgate_websocket_bytes_total", direction="in")
        bytes_out = m.value("tollgate_websocket_bytes_total", direction="out")
        report("echo", bytes_in=bytes_in, bytes_out=bytes_out)
        assert bytes_in > 140000 and bytes_out > 140000, (bytes_in, bytes_out)


def test_frames_sent_with_the_upgrade_are_kept(tollgate):
    seen = []
    with Upstream(echo_node(seen)) as up:
        tg = ws_gate(tollgate, up)
        s, status, head, _ = upgrade(tg.addr, extra=frame(b"early"))
        assert status == 101, head
        assert read_frame(s) == (1, b"echo:early")
        s.close()


def test_idle_tunnel_is_closed(tollgate):
    seen = []
    with Upstream(echo_node(seen)) as up:
        tg = ws_gate(tollgate, up, websocket={"idle_timeout": "300ms"})
        s, status, head, _ = upgrade(tg.addr)
        assert status == 101
        s.sendall(frame(b"x"))
        assert read_frame(s) == (1, b"echo:x")
        t0 = time.monotonic()
        s.settimeout(5)
        assert s.recv(1) == b""
        idle = time.monotonic() - t0
        report("idle", closed_after_s=round(idle, 3))
        assert 0.25 <= idle <= 1.5, idle


def test_client_closing_closes_the_node_side(tollgate):
    seen = []
    closed = []

    def handler(req, conn):
        key = req.header("sec-websocket-key")
        conn.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_for(key).encode() +
                  b"\r\n\r\n")
        conn.sock.settimeout(5)
        try:
            closed.append(conn.sock.recv(10) == b"")
        except OSError:
            closed.append(True)
        return None

    with Upstream(handler) as up:
        tg = ws_gate(tollgate, up)
        s, status, head, _ = upgrade(tg.addr)
        assert status == 101
        s.close()
        wait_until(lambda: closed, 3, what="the node side to close")
        assert closed == [True]


def test_refused_and_odd_upgrades(tollgate):
    def handler(req, conn):
        if req.target == "/ws/plain":
            return response(200, b"no upgrade here")
        return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")

    with Upstream(handler) as up:
        tg = tollgate(services={"up": service(up.url)},
                      routes=[{"name": "ws", "match": {"path": "/ws/"}, "service": "up"}])
        s, status, head, _ = upgrade(tg.addr, "/ws/plain")
        assert status == 200, head  # the node said no: a normal answer, no tunnel
        s.close()
        s, status, head, _ = upgrade(tg.addr, "/ws/odd")
        assert status == 502, head  # 101 to something that is not a WebSocket
        s.close()


def test_jsonrpc_upgrade_goes_without_compression(tollgate):
    """On a JSON-RPC route the frames are read, so the upgrade reaches the node without
    Sec-WebSocket-Extensions (no compressed frames); a node that declines is relayed as is."""
    with Upstream(lambda req, conn: response(400, b"no")) as up:
        svc = service(up.url)
        svc["kind"] = "jsonrpc"
        tg = tollgate(services={"eth": svc},
                      routes=[{"name": "rpc", "match": {"path": "/ws"}, "service": "eth"}])
        key = base64.b64encode(os.urandom(16)).decode()
        s = socket.create_connection(tg.addr, timeout=5)
        s.sendall(f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  f"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n".encode())
        first = s.recv(100)
        s.close()
        assert first.startswith(b"HTTP/1.1 400"), first
        req = up.requests[-1]
        assert req.header("upgrade") == "websocket" and req.header("sec-websocket-key") == key
        assert req.header("sec-websocket-extensions") is None, req.head


def test_ethers_websocket_provider_through_a_tunnel(tollgate, tmp_path):
    """ethers' WebSocketProvider subscribed to "block" through tollgate gets every block anvil
    mines (one a second), in order."""
    from tglib.anvil import Anvils
    from tglib.ethers import require_ethers, run_ethers

    require_ethers()
    anvils = Anvils(str(tmp_path))
    try:
        (a,) = anvils(1, block_time=1)
        tg = tollgate(services={"chain": {"nodes": [{"url": a.url}]}},
                      routes=[{"name": "ws", "match": {"path": "/ws"}, "service": "chain",
                               "rewrite": {"path": "/"}}])
        doc = run_ethers("ws", f"ws://{tg.addr[0]}:{tg.addr[1]}/ws", 6, timeout=30)
        blocks = [b["number"] for b in doc["blocks"]]
        report("ethers ws", blocks=blocks, close=doc.get("close"))
        assert len(blocks) >= 4, doc
        assert blocks == list(range(blocks[0], blocks[0] + len(blocks))), blocks
    finally:
        anvils.close()


def test_drain_closes_tunnels_and_exits_clean(tollgate):
    """SIGTERM: a WebSocket never ends on its own, so draining closes open tunnels (their
    clients reconnect elsewhere) instead of holding the process until shutdown.timeout."""
    import signal

    seen = []
    with Upstream(echo_node(seen)) as up:
        tg = ws_gate(tollgate, up, shutdown={"drain_delay": "0s", "timeout": "5s"})
        s, status, head, _ = upgrade(tg.addr)
        assert status == 101
        t0 = time.monotonic()
        tg.signal(signal.SIGTERM)
        s.settimeout(5)
        assert s.recv(1) == b""
        code = tg.proc.wait(5)
        took = time.monotonic() - t0
        report("drain", tunnel_closed_and_exit_s=round(took, 3), exit=code)
        assert code == 0 and took < 2.0, (code, took)


# -- JSON-RPC over WebSocket -----------------------------------------------------------------------


def rpc_ws_gate(tollgate, a, **route):
    svc = {"kind": "jsonrpc", "nodes": [{"url": a.url}]}
    r = {"name": "rpc", "match": {"path": "/ws"}, "service": "eth", "rewrite": {"path": "/"}}
    r.update(route)
    return tollgate(services={"eth": svc}, routes=[r])


def ws_call(s, obj):
    import json
    s.sendall(frame(json.dumps(obj).encode()))
    op, data = read_frame(s)
    return op, (json.loads(data) if op == 1 else data)


def test_jsonrpc_websocket_policies_per_message(tollgate, tmp_path):
    """Calls over a JSON-RPC WebSocket meet the route's method policy: a denied call is answered
    here, an allowed one reaches anvil, a batch is cut down to its allowed calls."""
    from tglib.anvil import Anvils

    anvils = Anvils(str(tmp_path))
    try:
        (a,) = anvils(1)
        tg = rpc_ws_gate(tollgate, a, jsonrpc={"methods": {"deny": ["anvil_*", "debug_*"]}})
        s, status, head, _ = upgrade(tg.addr)
        assert status == 101, head
        op, doc = ws_call(s, {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
        assert doc == {"jsonrpc": "2.0", "id": 1, "result": "0x7a69"}, doc
        op, doc = ws_call(s, {"jsonrpc": "2.0", "id": 2, "method": "anvil_mine", "params": ["0x5"]})
        assert doc["error"]["code"] == -32601 and doc["id"] == 2, doc
        head_before = a.head()
        import json
        s.sendall(frame(json.dumps([
            {"jsonrpc": "2.0", "id": 3, "method": "anvil_mine", "params": ["0x5"]},
            {"jsonrpc": "2.0", "id": 4, "method": "eth_blockNumber", "params": []}]).encode()))
        got = [json.loads(read_frame(s)[1]), json.loads(read_frame(s)[1])]
        report("ws policies", messages=got)
        errors = [g for g in got if isinstance(g, list) and g and "error" in g[0]]
        answers = [g for g in got if isinstance(g, list) and g and "result" in g[0]]
        assert errors and errors[0][0]["id"] == 3 and errors[0][0]["error"]["code"] == -32601
        assert answers and answers[0][0]["id"] == 4
        assert a.head() == head_before, "a denied anvil_mine reached the node"
        op, doc = ws_call(s, {"jsonrpc": "2.0", "id": 5, "method": 7})
        assert doc["error"]["code"] == -32600, doc
        s.sendall(frame(b"{not json"))
        op, data = read_frame(s)
        assert json.loads(data)["error"]["code"] == -32700
        m = tg.metrics()
        assert m.value("tollgate_websocket_messages_total", direction="in") == 5
        s.close()
    finally:
        anvils.close()


def test_jsonrpc_websocket_node_failure_closes_with_1012(tollgate, tmp_path):
    """ethers' WebSocketProvider subscribed to blocks through a JSON-RPC route gets every block
    for 30 s (anvil mines one a second); when its node is killed the client gets close code 1012
    and its reconnect gets the other (healthy) node."""
    from tglib.anvil import Anvils
    from tglib.ethers import require_ethers, start_ethers

    require_ethers()
    anvils = Anvils(str(tmp_path))
    try:
        a, b = anvils(2, block_time=1)
        svc = {"kind": "jsonrpc", "nodes": [{"url": a.url}, {"url": b.url}],
               "balance": "round_robin", "health": {"passive": {"consecutive_failures": 1}}}
        tg = tollgate(services={"eth": svc},
                      routes=[{"name": "rpc", "match": {"path": "/ws"}, "service": "eth",
                               "rewrite": {"path": "/"}}])
        url = f"ws://{tg.addr[0]}:{tg.addr[1]}/ws"
        run = start_ethers("ws-reconnect", url, 36, timeout=60)
        time.sleep(30.5)
        # the first connection went to one of the two nodes: kill the one it is on
        busy = [n["address"] for n in tg.admin("/status").json()["services"][0]["nodes"]
                if n["in_flight"] > 0]
        assert len(busy) == 1, busy
        first = a if str(a.port) in busy[0] else b
        killed = time.time()
        first.kill()
        doc = run.wait()
        conns = doc["connections"]
        first, last = conns[0], conns[-1]
        close_at = (doc["t0_epoch_ms"] + first["close"]["t"]) / 1000 if first["close"] else None
        report("ws 1012", first_blocks=len(first["blocks"]), first_close=first["close"],
               close_after_kill_s=None if close_at is None else round(close_at - killed, 3),
               connections=len(conns), last_blocks=len(last["blocks"]))
        nums = [x["number"] for x in first["blocks"]]
        assert len(nums) >= 29 and nums == list(range(nums[0], nums[0] + len(nums))), nums
        assert first["close"] and first["close"]["code"] == 1012, first
        assert close_at - killed < 1.0, (close_at, killed)
        assert last["opened"] is not None and len(last["blocks"]) >= 3, conns
        assert last["close"] is None, last
    finally:
        anvils.close()



def test_jsonrpc_websocket_lagging_node_closes_with_1012(tollgate, tmp_path):
    """A node that stops mining keeps its sockets open, but the active probes find it more than
    max_block_lag blocks behind the other: its WebSocket clients get close code 1012 within a
    few seconds, and ethers' reconnect lands on the healthy node and gets its blocks."""
    from tglib.anvil import Anvils
    from tglib.ethers import require_ethers, start_ethers

    require_ethers()
    anvils = Anvils(str(tmp_path))
    try:
        a, b = anvils(2, block_time=1)
        svc = {"kind": "jsonrpc", "nodes": [{"url": a.url}, {"url": b.url}],
               "health": {"active": {"interval": "500ms", "timeout": "400ms",
                                     "jsonrpc": {"max_block_lag": 2}}}}
        tg = tollgate(services={"eth": svc},
                      routes=[{"name": "rpc", "match": {"path": "/ws"}, "service": "eth",
                               "rewrite": {"path": "/"}}])

        def busy():
            nodes = tg.admin("/status").json()["services"][0]["nodes"]
            return [n["address"] for n in nodes if n["in_flight"] > 0]

        def node_of(address):
            return a if address.endswith(f":{a.port}") else b

        run = start_ethers("ws-reconnect", f"ws://{tg.addr[0]}:{tg.addr[1]}/ws", 13, timeout=40)
        with run:
            stalled = node_of(wait_until(busy, 5, interval=0.05, what="the tunnel")[0])
            healthy = b if stalled is a else a
            time.sleep(2)  # a block or two on the first connection
            stalled.rpc("evm_setIntervalMining", [0])  # no more blocks; its sockets stay open
            stalled_at = time.time()
            head = stalled.head()
            # the reconnect is routed to the healthy node
            wait_until(lambda: [node_of(x) for x in busy()] == [healthy], 10, interval=0.05,
                       what="the WebSocket on the healthy node")
            doc = run.wait()
        conns = doc["connections"]
        first, last = conns[0], conns[-1]
        close_at = (doc["t0_epoch_ms"] + first["close"]["t"]) / 1000 if first["close"] else None
        states = {n["address"]: n["state"]
                  for n in tg.admin("/status").json()["services"][0]["nodes"]}
        report("ws 1012 lagging", first_blocks=len(first["blocks"]), first_close=first["close"],
               close_after_stall_s=None if close_at is None else round(close_at - stalled_at, 3),
               connections=len(conns), last_blocks=len(last["blocks"]), states=states)
        assert stalled.head() == head, "the stalled node mined on"
        assert first["close"] and first["close"]["code"] == 1012, first
        # lag > 2 blocks takes 3 s of the healthy node's mining, then a probe (500 ms) and the
        # tunnel's health check (1 s)
        assert close_at - stalled_at < 6.5, (close_at, stalled_at)
        nums = [x["number"] for x in last["blocks"]]
        assert last["opened"] is not None and last["close"] is None, conns
        assert len(nums) >= 3 and nums == list(range(nums[0], nums[0] + len(nums))), nums
        assert nums[-1] > head + 2, (nums, head)
    finally:
        anvils.close()

def test_jsonrpc_websocket_large_and_too_large_messages(tollgate, tmp_path):
    """A 200 kB message (bigger than an I/O buffer) is read whole, checked and sent; one over
    websocket.max_message closes the socket with 1009 before anything of it reaches the node."""
    import json
    from tglib.anvil import Anvils

    anvils = Anvils(str(tmp_path))
    try:
        (a,) = anvils(1)
        tg = tollgate(services={"eth": {"kind": "jsonrpc", "nodes": [{"url": a.url}]}},
                      routes=[{"name": "rpc", "match": {"path": "/ws"}, "service": "eth",
                               "rewrite": {"path": "/"}}],
                      websocket={"max_message": "256kb"})
        s, status, head, _ = upgrade(tg.addr)
        assert status == 101, head
        big = {"jsonrpc": "2.0", "id": 9, "method": "eth_call",
               "params": [{"to": "0x" + "11" * 20, "data": "0x" + "ab" * 100000}, "latest"]}
        op, doc = ws_call(s, big)
        assert op == 1 and doc["id"] == 9, doc
        s.sendall(frame(json.dumps({"jsonrpc": "2.0", "id": 10, "method": "eth_call",
                                    "params": ["x" * 300000]}).encode()))
        op, data = read_frame(s)
        code = struct.unpack(">H", data[:2])[0]
        report("ws sizes", big_reply=str(doc)[:60], too_large_close=code)
        assert op == 8 and code == 1009, (op, data)
        s.close()
    finally:
        anvils.close()


def test_jsonrpc_websocket_local_error_inside_a_node_frame(tollgate):
    """A call refused here while the node is in the middle of a frame: its error waits for the
    end of that frame, and the node is read on meanwhile, so both arrive in order (the node used
    to be read only when none of our frames waited: neither side could move and the tunnel
    hung); the tunnel works on afterwards."""
    import json
    import threading

    note = json.dumps({"jsonrpc": "2.0", "method": "eth_subscription",
                       "params": {"subscription": "0x1", "result": "ab" * 2000}}).encode()
    whole = frame(note, mask=False)
    cut = len(whole) // 3  # the 4-byte head and the first part of the payload
    go_on = threading.Event()
    calls = []

    def handler(req, conn):
        key = req.header("sec-websocket-key")
        if key is None:
            return response(200, b'{"jsonrpc":"2.0","id":1,"result":"0x7a69"}',
                            headers=[("Content-Type", "application/json")])
        conn.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_for(key).encode() +
                  b"\r\n\r\n")
        conn.sock.settimeout(10)
        try:
            conn.send(whole[:cut])
            go_on.wait(10)
            conn.send(whole[cut:])
            for _ in range(10):
                op, data = read_frame(conn.sock)
                if op == 8:
                    conn.send(frame(data, 8, mask=False))
                    break
                doc = json.loads(data)
                calls.append(doc["method"])
                conn.send(frame(json.dumps({"jsonrpc": "2.0", "id": doc["id"],
                                            "result": "0x7a69"}).encode(), mask=False))
        except (EOFError, OSError, ValueError):
            pass
        conn.close()
        return None

    with Upstream(handler) as up:
        tg = rpc_ws_gate(tollgate, up, jsonrpc={"methods": {"deny": ["anvil_*"]}})
        s, status, head, _ = upgrade(tg.addr, timeout=3)
        assert status == 101, head
        try:
            # the node's frame has begun: its head and first bytes are through
            assert read_exact(s, cut) == whole[:cut]
            s.sendall(frame(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "anvil_mine",
                                        "params": ["0x1"]}).encode()))
            time.sleep(0.3)  # the refusal is queued here before the node goes on
            t0 = time.monotonic()
            go_on.set()
            rest = read_exact(s, len(whole) - cut)
            op, data = read_frame(s)
            took = time.monotonic() - t0
        except socket.timeout:
            pytest.fail("the tunnel hung: neither the node's frame nor the refusal came")
        finally:
            go_on.set()
        assert rest == whole[cut:], "the node's frame came back altered"
        doc = json.loads(data)
        assert op == 1 and doc["id"] == 2 and doc["error"]["code"] == -32601, doc
        op, after = ws_call(s, {"jsonrpc": "2.0", "id": 3, "method": "eth_chainId",
                                "params": []})
        report("ws local error mid-frame", node_frame=len(whole), cut=cut,
               both_after_ms=round(took * 1000, 1), after=after)
        assert after == {"jsonrpc": "2.0", "id": 3, "result": "0x7a69"}, after
        assert calls == ["eth_chainId"], calls  # the refused call never reached the node
        assert took < 3.0, took
        s.close()
