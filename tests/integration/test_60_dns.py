"""Node names resolved through DNS (DESIGN §2: the control thread refreshes them). A tiny UDP DNS
server in the test answers `node.test.` with TTL 1 and can stop answering on demand."""

import time

from tglib import Client, is_json_error
from tglib.net import wait_until

DNS_CONF = {"min_ttl": "1s", "max_ttl": "300s", "timeout": "500ms"}


def dns_proxy(proxy, target_url, dns, **kw):
    svc = kw.pop("svc", {})
    svc.setdefault("pool", {"max_idle": 0})  # every request needs an address
    return proxy(target_url, svc=svc, dns=dict(DNS_CONF, servers=[dns.server]), **kw)


def test_node_by_name(upstream, proxy, dns_server):
    dns = dns_server({"node.test": ["127.0.0.1"]}, ttl=1)
    tg = dns_proxy(proxy, f"http://node.test:{upstream.port}", dns)
    with Client(tg.addr) as c:
        r = c.get("/dns", host="front.test")
    assert r.status == 200, (r, tg.stderr())
    assert upstream.last.target == "/dns"
    assert upstream.last.header("host") == f"node.test:{upstream.port}"
    assert dns.count("node.test") >= 1


def test_last_known_address_kept_when_dns_fails(upstream, proxy, dns_server):
    dns = dns_server({"node.test": ["127.0.0.1"]}, ttl=1)
    tg = dns_proxy(proxy, f"http://node.test:{upstream.port}", dns)
    with Client(tg.addr) as c:
        assert c.get("/before").status == 200
    dns.drop = True
    asked = dns.count("node.test")
    time.sleep(2.5)  # more than 2 x TTL: the answer has expired, refreshes go unanswered
    for i in range(3):
        with Client(tg.addr) as c:
            r = c.get(f"/during/{i}")
            assert r.status == 200, (r, tg.stderr())
    assert dns.count("node.test") > asked, "tollgate did not try to refresh an expired answer"
    assert [q.target for q in upstream.requests][-3:] == [f"/during/{i}" for i in range(3)]


def test_address_change_followed(upstreams, proxy, dns_server):
    a = upstreams()
    b = upstreams(host="127.0.0.2", port=a.port)  # same port, another loopback address
    dns = dns_server({"node.test": ["127.0.0.1"]}, ttl=1)
    tg = dns_proxy(proxy, f"http://node.test:{a.port}", dns)
    with Client(tg.addr) as c:
        assert c.get("/one").status == 200
    assert a.requests and not b.requests
    dns.records["node.test."] = ["127.0.0.2"]

    def moved():
        with Client(tg.addr) as c:
            assert c.get("/probe").status == 200
        return bool(b.requests)

    wait_until(moved, 5, interval=0.2, what="traffic to follow the new DNS answer")


def test_unresolvable_node_answers_error(proxy, dns_server):
    dns = dns_server({"node.test": ["127.0.0.1"]}, ttl=1)
    tg = dns_proxy(proxy, "http://missing.test:80", dns)
    with Client(tg.addr) as c:
        r = c.get("/")
    assert r.status in (502, 503), r
    is_json_error(r, r.status)
