"""TLS on both sides: a TLS listener for clients, https nodes with verification, CA and SNI.
Certificates come from the openssl CLI (the session-wide `pki` fixture)."""

import hashlib
import random
import socket
import ssl
import time

from tglib import Client, is_json_error, response, service
from tglib.net import connect


def client_ctx(pki, alpn=("http/1.1",)):
    ctx = ssl.create_default_context(cafile=pki.ca_pem)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def server_ctx(pki):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.cert, pki.key)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def tls_listener(tollgate, pki, url, **kw):
    from tglib.proc import new_ports

    port = new_ports(1)[0]
    return tollgate(listen=[{"addr": f"127.0.0.1:{port}",
                             "tls": {"cert": pki.cert, "key": pki.key}}],
                    services={"backend": service(url, **kw.pop("svc", {}))},
                    routes=[{"name": "all", "match": {"path": "/"}, "service": "backend"}], **kw)


# --- client side ---------------------------------------------------------------------------------

def test_tls_listener(tollgate, upstream, pki):
    tg = tls_listener(tollgate, pki, upstream.url)
    with Client(tg.addr, ssl_context=client_ctx(pki), server_hostname="localhost") as c:
        assert c.sock.selected_alpn_protocol() == "http/1.1"
        for i in range(3):
            r = c.get(f"/tls/{i}", host="secure.test")
            assert r.status == 200, r
    got = upstream.last
    assert got.target == "/tls/2"
    assert got.headers.get_all("x-forwarded-proto") == ["https"]
    assert got.header("x-forwarded-host") == "secure.test"


def test_tls_listener_alpn_prefers_http11(tollgate, upstream, pki):
    tg = tls_listener(tollgate, pki, upstream.url)
    with Client(tg.addr, ssl_context=client_ctx(pki, alpn=("h2", "http/1.1")),
                server_hostname="localhost") as c:
        assert c.sock.selected_alpn_protocol() == "http/1.1", "h2 selected but not spoken"
        assert c.get("/").status == 200


def test_tls_listener_without_alpn(tollgate, upstream, pki):
    tg = tls_listener(tollgate, pki, upstream.url)
    with Client(tg.addr, ssl_context=client_ctx(pki, alpn=()), server_hostname="localhost") as c:
        assert c.get("/").status == 200


def test_tls_listener_plain_http_is_refused(tollgate, upstream, pki):
    tg = tls_listener(tollgate, pki, upstream.url, limits={"header_timeout": "1s"})
    with Client(tg.addr) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert c.closed_within(3), "plaintext on a TLS port left the connection open"
    assert upstream.requests == []


def test_tls_listener_large_bodies(tollgate, upstreams, pki):
    data = random.Random(5).randbytes(8 << 20)

    def h(req, conn):
        return response(200, data, headers=[("X-Up-Sha", req.body_sha256)])

    up = upstreams(h, keep_body=0)
    tg = tls_listener(tollgate, pki, up.url, limits={"max_body": "16mb"})
    with Client(tg.addr, timeout=20, ssl_context=client_ctx(pki), server_hostname="localhost") as c:
        c.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(data) + data)
        r = c.response(keep=0)
    want = hashlib.sha256(data).hexdigest()
    assert r.status == 200
    assert r.header("x-up-sha") == want, "upload corrupted through the TLS listener"
    assert r.body_sha256 == want, "download corrupted through the TLS listener"


def test_tls_handshake_timeout(tollgate, upstream, pki):
    """A client that connects to the TLS port and says nothing is dropped (header_timeout)."""
    tg = tls_listener(tollgate, pki, upstream.url, limits={"header_timeout": "500ms",
                                                             "idle_timeout": "10s"})
    s = connect(tg.addr)
    s.settimeout(3)
    t0 = time.monotonic()
    try:
        data = s.recv(100)
    except (ConnectionResetError, socket.timeout):
        data = None
    elapsed = time.monotonic() - t0
    s.close()
    assert data == b"", f"silent TLS client not dropped (got {data!r} after {elapsed:.2f}s)"
    assert elapsed < 2.5


# --- upstream side --------------------------------------------------------------------------------

def https_upstream(upstreams, pki, **kw):
    return upstreams(ssl_context=server_ctx(pki), url_host="localhost", **kw)


def test_https_node_with_ca(proxy, upstreams, pki):
    up = https_upstream(upstreams, pki)
    tg = proxy(up, svc={"tls": {"ca": pki.ca_pem}})
    with Client(tg.addr) as c:
        for _ in range(3):
            r = c.get("/secure")
            assert r.status == 200, (r, up.tls_errors, tg.stderr())
    assert up.connections == 1, "TLS upstream connection not pooled"
    assert up.sni == ["localhost"], f"SNI sent: {up.sni!r}"
    assert up.last.header("host") == f"localhost:{up.port}"


def test_https_node_wrong_ca_502(proxy, upstreams, pki):
    up = https_upstream(upstreams, pki)
    tg = proxy(up, svc={"tls": {"ca": pki.other_ca_pem}})
    with Client(tg.addr) as c:
        is_json_error(c.get("/"), 502)
    assert up.requests == []


def test_https_node_system_store_rejects_test_ca(proxy, upstreams, pki):
    up = https_upstream(upstreams, pki)
    tg = proxy(up)
    with Client(tg.addr) as c:
        is_json_error(c.get("/"), 502)
    assert up.requests == []


def test_https_node_verify_false(proxy, upstreams, pki):
    up = https_upstream(upstreams, pki)
    tg = proxy(up, svc={"tls": {"verify": False, "ca": pki.other_ca_pem}})
    with Client(tg.addr) as c:
        r = c.get("/insecure")
    assert r.status == 200, (r, up.tls_errors)
    assert up.last.target == "/insecure"


def test_https_node_hostname_mismatch_502(proxy, upstreams, pki):
    """The certificate is valid for localhost and 127.0.0.1; a node reached under another name
    (sni/verify name "wrong.test") must fail verification."""
    up = https_upstream(upstreams, pki)
    tg = proxy(f"https://127.0.0.1:{up.port}", svc={"tls": {"ca": pki.ca_pem,
                                                              "sni": "wrong.test"}})
    with Client(tg.addr) as c:
        is_json_error(c.get("/"), 502)
    assert up.requests == []


def test_https_node_sni_override(proxy, upstreams, pki):
    up = https_upstream(upstreams, pki)
    tg = proxy(f"https://127.0.0.1:{up.port}", svc={"tls": {"ca": pki.ca_pem,
                                                              "sni": "localhost"}})
    with Client(tg.addr) as c:
        r = c.get("/")
    assert r.status == 200, (r, up.tls_errors)
    assert up.sni == ["localhost"]


def test_https_node_ip_literal_sends_no_sni(proxy, upstreams, pki):
    """RFC 6066 §3: an IP literal is not a server name; the certificate's IP SAN verifies."""
    up = https_upstream(upstreams, pki)
    tg = proxy(f"https://127.0.0.1:{up.port}", svc={"tls": {"ca": pki.ca_pem}})
    with Client(tg.addr) as c:
        r = c.get("/")
    assert r.status == 200, (r, up.tls_errors)
    assert up.sni == [None], f"SNI sent for an IP literal: {up.sni!r}"


def test_plain_node_speaking_tls_port_502(proxy, upstreams, pki):
    """An http:// node that actually speaks TLS answers with a TLS alert, not HTTP: 502."""
    up = https_upstream(upstreams, pki)
    tg = proxy(f"http://127.0.0.1:{up.port}", svc={"response": "1s"})
    with Client(tg.addr) as c:
        r = c.get("/")
    assert r.status in (502, 504), r
    is_json_error(r, r.status)
