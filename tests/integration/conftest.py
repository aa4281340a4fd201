"""Fixtures for the integration tests (DESIGN §8).

Every test gets its own temp directory and free loopback ports; every process and server a test
starts is stopped by the fixture that made it, by PID, even when the test fails. A tollgate that
printed a sanitizer report fails the test that was running.
"""

import copy
import os
import shutil
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from relay import Relay  # noqa: E402
from tglib import proc  # noqa: E402
from tglib.certs import Pki  # noqa: E402
from tglib.dns import DnsServer  # noqa: E402
from tglib.upstream import Upstream  # noqa: E402


@pytest.fixture
def sockdir():
    """A short directory for unix sockets (sun_path holds 108 bytes; pytest's tmp_path can be
    longer than that)."""
    d = tempfile.mkdtemp(prefix="tg-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def upstreams():
    """upstreams(handler=None, **kw) -> a started Upstream, closed after the test."""
    made = []

    def make(handler=None, **kw):
        u = Upstream(handler, **kw).start()
        made.append(u)
        return u

    yield make
    for u in made:
        u.close()


@pytest.fixture
def upstream(upstreams):
    """An echo upstream: answers 200 with a JSON description of each request."""
    return upstreams()


@pytest.fixture
def relays():
    made = []

    def make(target, mode="pass", **kw):
        r = Relay(target, mode, **kw).start()
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


@pytest.fixture
def dns_server():
    made = []

    def make(records, ttl=1):
        d = DnsServer(records, ttl).start()
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return Pki(str(tmp_path_factory.mktemp("pki")))


def _merge(base, extra):
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict) and k != "services":
            _merge(base[k], v)
        else:
            base[k] = v
    return base


@pytest.fixture
def tollgate(tmp_path):
    """tollgate(services=..., routes=..., limits=..., env=..., start=True, **top) -> Tollgate.

    The config starts from proc.default_config (one worker, free ports, short timeouts); dict
    values are merged into it (limits: {max_body: 1kb} keeps the other limits), others replace.
    """
    made = []

    def make(env=None, start=True, **cfg):
        port, admin = proc.new_ports(2)
        config = _merge(proc.default_config(port, admin), copy.deepcopy(cfg))
        tg = proc.Tollgate(tmp_path, config, env=env, name=f"tollgate{len(made)}")
        made.append(tg)
        if start:
            tg.start()
        return tg

    yield make
    problems = []
    for tg in made:
        if tg.proc is None:
            continue
        tg.stop()
        report = tg.sanitizer_report()
        if report:
            problems.append(f"{tg.name} (pid {tg.pid}) sanitizer report:\n{report}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


CATCH_ALL = [{"name": "all", "match": {"path": "/"}, "service": "backend"}]


@pytest.fixture
def proxy(tollgate):
    """proxy(target, routes=None, svc={}, **cfg): tollgate with one service "backend" whose only
    node is target (an Upstream, a Relay or a URL) and a catch-all route."""

    def make(target, routes=None, svc=None, **cfg):
        url = target if isinstance(target, str) else target.url
        services = {"backend": proc.service(url, **(svc or {}))}
        services.update(cfg.pop("services", {}))
        return tollgate(services=services, routes=routes or CATCH_ALL, **cfg)

    return make
