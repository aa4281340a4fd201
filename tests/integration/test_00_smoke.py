"""Smoke: the binary runs, answers --help and version, and proxies one request end to end."""

from tglib import Client, run_cli


def test_version_exits_0():
    r = run_cli("version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("tollgate "), r.stdout


def test_help_exits_0():
    for args in (["--help"], ["-h"], ["help"]):
        r = run_cli(*args)
        assert r.returncode == 0, (args, r.stderr)
        assert "usage" in r.stdout.lower() and "check" in r.stdout, r.stdout


def test_bad_usage_exits_2():
    assert run_cli("frobnicate").returncode == 2
    assert run_cli("run").returncode == 2  # no -c FILE
    assert run_cli("check", "-c").returncode == 2


def test_get_through_proxy(upstream, proxy):
    tg = proxy(upstream)
    with Client(tg.addr) as c:
        r = c.get("/hello?x=1", host="smoke.test")
    assert r.status == 200, r
    doc = r.json()
    assert doc["method"] == "GET"
    assert doc["target"] == "/hello?x=1"
    assert len(upstream.requests) == 1


def test_sigterm_exits_0(upstream, proxy):
    tg = proxy(upstream)
    with Client(tg.addr) as c:
        assert c.get("/").status == 200
    assert tg.stop() == 0, tg.stderr()
