"""The command line around configurations: check, graph, ${VAR} expansion, unknown keys."""

import glob
import os
import re

import pytest

from tglib import Client, run_cli
from tglib.proc import new_ports

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EXAMPLES = sorted(glob.glob(os.path.join(REPO, "examples", "*.yaml")))

ERR_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<msg>.+)$")


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def position(text, needle, nth=0):
    """1-based (line, col) of the nth occurrence of needle in text."""
    at = -1
    for _ in range(nth + 1):
        at = text.index(needle, at + 1)
    line = text.count("\n", 0, at) + 1
    col = at - (text.rfind("\n", 0, at) + 1) + 1
    return line, col


def minimal(port, admin, upstream_url="http://127.0.0.1:9", extra=""):
    return f"""\
workers: 1
listen:
  - addr: 127.0.0.1:{port}
admin:
  addr: 127.0.0.1:{admin}
services:
  backend:
    nodes:
      - url: {upstream_url}
routes:
  - name: all
    match: {{ path: / }}
    service: backend
{extra}"""


@pytest.mark.parametrize("path", EXAMPLES or [None], ids=[os.path.basename(p) for p in EXAMPLES]
                         or ["none"])
def test_examples_check_ok(path):
    if path is None:
        pytest.skip("examples/ holds no *.yaml yet")
    # examples may reference secrets through ${VAR}; give them harmless values
    env = {k: "x" for k in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", open(path).read())}
    r = run_cli("check", "-c", path, env=env)
    assert r.returncode == 0, f"{path}:\n{r.stdout}{r.stderr}"


def test_check_ok_prints_summary(tmp_path):
    f = write(tmp_path, "ok.yaml", minimal(*new_ports(2)))
    r = run_cli("check", "-c", f)
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout, r.stdout


MISTAKES = """\
workers: lots
listen:
  - addr: 127.0.0.1:PORT
admin:
  addr: 127.0.0.1:ADMIN
limits:
  max_bdy: 1mb
  header_timeout: 5 seconds
  max_headers: many
trusted_proxies:
  - 10.0.0.1/8
services:
  backend:
    nodes:
      - url: ftp://127.0.0.1:9
    timeouts: { connect: soon }
routes:
  - name: r1
    match: { path: /x }
    service: nope
"""


def test_check_reports_every_mistake_with_position(tmp_path):
    port, admin = new_ports(2)
    text = MISTAKES.replace("PORT", str(port)).replace("ADMIN", str(admin))
    f = write(tmp_path, "bad.yaml", text)
    r = run_cli("check", "-c", f)
    assert r.returncode == 2, r.stdout + r.stderr
    out = r.stdout + r.stderr
    errors = []
    for line in out.splitlines():
        m = ERR_LINE.match(line)
        if m:
            errors.append((m["file"], int(m["line"]), int(m["col"]), m["msg"]))
    expected = {
        "lots": position(text, "lots"),  # workers value
        "max_bdy": position(text, "max_bdy"),  # unknown key: the key itself
        "5 seconds": position(text, "5 seconds"),
        "many": position(text, "many"),
        "10.0.0.1/8": position(text, "10.0.0.1/8"),
        "ftp://": position(text, "ftp://"),
        "soon": position(text, "soon"),
        "nope": position(text, "nope"),
    }
    assert len(errors) >= len(expected), out
    for file, _, _, _ in errors:
        assert file == f, out
    got = {(ln, col) for _, ln, col, _ in errors}
    for what, pos in expected.items():
        assert pos in got, f"no error at {f}:{pos[0]}:{pos[1]} (for {what!r}); got:\n{out}"
    unknown = [msg for _, ln, col, msg in errors if (ln, col) == expected["max_bdy"]]
    assert any("max_bdy" in m for m in unknown), out


def test_run_refuses_bad_config(tmp_path):
    port, admin = new_ports(2)
    text = MISTAKES.replace("PORT", str(port)).replace("ADMIN", str(admin))
    f = write(tmp_path, "bad.yaml", text)
    r = run_cli("run", "-c", f, timeout=10)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f + ":1:10:" in r.stderr, r.stderr


@pytest.mark.parametrize("snippet,key", [
    ("bogus: 1\n", "bogus"),
    ("limits:\n  max_bodyy: 1mb\n", "max_bodyy"),
    ("shutdown:\n  timout: 1s\n", "timout"),
])
def test_unknown_keys_rejected(tmp_path, snippet, key):
    port, admin = new_ports(2)
    text = minimal(port, admin) + snippet
    f = write(tmp_path, "unknown.yaml", text)
    r = run_cli("check", "-c", f)
    assert r.returncode == 2, r.stdout + r.stderr
    line, col = position(text, key + ":")
    assert f"{f}:{line}:{col}:" in r.stderr, r.stderr
    assert key in r.stderr


def test_unknown_key_in_service_and_route(tmp_path):
    port, admin = new_ports(2)
    text = minimal(port, admin).replace("    service: backend",
                                        "    service: backend\n    servce: x") \
        .replace("  backend:\n", "  backend:\n    nodez: []\n")
    f = write(tmp_path, "unknown2.yaml", text)
    r = run_cli("check", "-c", f)
    assert r.returncode == 2, r.stderr
    for key in ("servce", "nodez"):
        line, col = position(text, key)
        assert f"{f}:{line}:{col}:" in r.stderr, (key, r.stderr)


def test_graph_is_a_mermaid_flowchart(tmp_path):
    port, admin = new_ports(2)
    text = f"""\
workers: 1
listen:
  - addr: 127.0.0.1:{port}
admin:
  addr: 127.0.0.1:{admin}
services:
  billingsvc:
    nodes:
      - url: http://127.0.0.1:7101
      - url: http://127.0.0.1:7102
  sitessvc:
    nodes:
      - url: unix:/tmp/tg-graph-test.sock
routes:
  - name: apiroute
    match: {{ path: /api/ }}
    service: billingsvc
  - name: portalroute
    match: {{ host: "{{site}}.portal.example" }}
    service: sitessvc
"""
    f = write(tmp_path, "graph.yaml", text)
    r = run_cli("graph", "-c", f)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert re.search(r"^\s*flowchart\b", out, re.M), out
    for name in ("apiroute", "portalroute", "billingsvc", "sitessvc", "127.0.0.1:7101",
                 "127.0.0.1:7102", "tg-graph-test.sock", f"127.0.0.1:{port}"):
        assert name in out, f"{name!r} missing from graph:\n{out}"
    # the map is drawn as edges: listener -> routes -> services -> nodes
    assert "-->" in out or "---" in out, out


def test_graph_of_bad_config_exits_2(tmp_path):
    f = write(tmp_path, "bad.yaml", "workers: lots\n")
    r = run_cli("graph", "-c", f)
    assert r.returncode == 2
    assert f"{f}:1:10:" in r.stderr, r.stderr


def test_env_expansion(tmp_path):
    port, admin = new_ports(2)
    text = f"""\
workers: ${{TG_TEST_WORKERS}}
listen:
  - addr: 127.0.0.1:${{TG_TEST_PORT}}
admin:
  addr: 127.0.0.1:${{TG_TEST_ADMIN_PORT:-{admin}}}
limits:
  max_body: ${{TG_TEST_UNSET_VAR:-2mb}}
services:
  backend:
    nodes:
      - url: http://127.0.0.1:${{TG_TEST_NODE_PORT}}
routes:
  - name: all
    match: {{ path: / }}
    service: backend
"""
    f = write(tmp_path, "env.yaml", text)
    env = {"TG_TEST_WORKERS": "1", "TG_TEST_PORT": str(port), "TG_TEST_NODE_PORT": "7103"}
    r = run_cli("check", "-c", f, env=env)
    assert r.returncode == 0, r.stderr
    # without the variable (and no default) the config is invalid, at the reference's position
    env2 = dict(env)
    del env2["TG_TEST_PORT"]
    os.environ.pop("TG_TEST_PORT", None)
    r = run_cli("check", "-c", f, env=env2)
    assert r.returncode == 2, r.stdout + r.stderr
    line, col = position(text, "${TG_TEST_PORT}")
    assert re.search(rf"{re.escape(f)}:{line}:{col}: .*TG_TEST_PORT", r.stderr), r.stderr
    # the expansion reaches the values actually used: graph shows the node port
    r = run_cli("graph", "-c", f, env=env)
    assert r.returncode == 0, r.stderr
    assert "7103" in r.stdout, r.stdout


def test_env_expansion_at_run(tmp_path, upstream):
    """${VAR} is expanded by `run` as well: the node URL comes from the environment."""
    port, admin = new_ports(2)
    text = minimal(port, admin, upstream_url="http://127.0.0.1:${TG_TEST_UP_PORT}")
    f = write(tmp_path, "envrun.yaml", text)
    from tglib.proc import Tollgate

    tg = Tollgate(tmp_path, {"listen": [{"addr": f"127.0.0.1:{port}"}]},
                  env={"TG_TEST_UP_PORT": str(upstream.port)})
    tg.write_config = lambda text=None: None  # keep the hand-written file
    tg.config_path = f
    try:
        tg.start()
        with Client(tg.addr) as c:
            r = c.get("/env")
        assert r.status == 200, r
        assert upstream.last.target == "/env"
    finally:
        tg.stop()


RESILIENCE_OK = """
listen: [ { addr: 127.0.0.1:PORT } ]
services:
  eth:
    kind: jsonrpc
    nodes:
      - { url: http://10.0.0.11:8545, max_connections: 200 }
      - { url: http://10.0.0.12:8545, weight: 2 }
      - { url: https://provider.example/v3/key, tier: 1 }
    health:
      active: { interval: 5s, timeout: 2s, rise: 2, fall: 3, jsonrpc: { max_block_lag: 5 } }
      passive: { consecutive_failures: 5, base_ejection: 30s, max_ejection: 5m,
                 max_ejection_percent: 50, statuses: [502, 503, 504, 429] }
      panic: true
      slow_start: 30s
    retry: { attempts: 3, on: [connect_failure, reset, timeout, 5xx], budget: 0.1,
             min_per_second: 5, buffer: 128kb, backoff: 10ms, backoff_max: 100ms }
    concurrency: { max: 256, queue: 1024, queue_timeout: 1s }
  api:
    balance: consistent_hash
    hash: { on: "header:x-user", load_factor: 1.5 }
    nodes: [ { url: http://10.0.0.1:80 }, { url: http://10.0.0.2:80 } ]
routes:
  - { name: rpc, match: { path: /rpc }, service: eth, idempotent: true }
  - { name: reads, match: { path: /api/ }, service: api, hedge: { after: p95, max: 2 } }
"""

RESILIENCE_BAD = """
listen: [ { addr: 127.0.0.1:PORT } ]
services:
  s:
    hash: { on: cookie }
    nodes: [ { url: http://10.0.0.1:80, max_connections: -1 } ]
    health:
      passive: { statuses: [700], base_ejection: 10m, max_ejection: 1m }
      active: { http: { path: health }, jsonrpc: {} }
    retry: { attempts: 0, on: [reset, flaky], budget: 2 }
    concurrency: { max: lots }
routes:
  - { name: r, service: s, hedge: { after: 0s, max: 9 } }
"""


def test_resilience_keys(tmp_path):
    """Every key of issue 4 is accepted with its documented shape, and each kind of mistake is
    reported at its position."""
    port, = new_ports(1)
    ok = write(tmp_path, "ok.yaml", RESILIENCE_OK.replace("PORT", str(port)))
    r = run_cli("check", "-c", ok)
    assert r.returncode == 0, r.stdout + r.stderr
    text = RESILIENCE_BAD.replace("PORT", str(port))
    bad = write(tmp_path, "bad.yaml", text)
    r = run_cli("check", "-c", bad)
    assert r.returncode == 2, r.stdout + r.stderr
    out = r.stdout + r.stderr
    # needles that cannot occur in the listen line's random port
    for needle, what in (("cookie", "expected client_ip, path or header:NAME"),
                         ("max_connections: -1", "max_connections"),
                         ("[700]", "status code"),
                         ("jsonrpc: {}", "one probe"),
                         ("flaky", "connect_failure"),
                         ("max: lots", "whole number"),
                         ("after: 0s", "zero delay"),
                         ("max: 9", "at most 3")):
        line, col = position(text, needle)
        assert any(f"{bad}:{line}:" in l and what in l for l in out.splitlines()), \
            f"no error on line {line} about {what!r} ({needle!r}):\n{out}"
    for what in ("balances with another policy", "base_ejection is longer",
                 "must start with '/'", "attempts counts the first try", "between 0 and 1"):
        assert what in out, f"missing {what!r}:\n{out}"
