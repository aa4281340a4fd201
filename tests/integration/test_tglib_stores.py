"""The store helpers (tglib.pg, tglib.redis_server) work, and the C key-store loader reads a real
PostgreSQL table and fails fast when the server is stopped, killed or frozen.

The loader is driven through its unit-test program (build/tests/unit/test_keystore), whose
PostgreSQL cases run when TG_TEST_PG_URL / TG_TEST_PG_DOWN_URL name a server.
"""

import os
import subprocess
import time

import pytest

from tglib import pg as pglib
from tglib import proc
from tglib import redis_server
from tglib.net import can_connect

UNIT = os.path.join(os.path.dirname(proc.BIN), "tests", "unit", "test_keystore")

needs_pg = pytest.mark.skipif(not pglib.available(), reason="PostgreSQL is not installed")
needs_redis = pytest.mark.skipif(not redis_server.available(), reason="redis is not installed")
needs_unit = pytest.mark.skipif(not os.access(UNIT, os.X_OK),
                                reason=f"{UNIT} not built (make {os.path.relpath(UNIT)})")

# What test_keystore.c's test_pg_table expects (its comment describes the same rows).
KEYS_SQL = """
CREATE TABLE api_keys (key text, consumer text, plan text);
INSERT INTO api_keys VALUES
    ('plain-key-1', 'acme', 'gold'),
    ('sha256:' || encode(sha256('abc'::bytea), 'hex'), 'bob@example.com', NULL),
    ('', 'bad', NULL),
    ('k2', 'bad name', NULL);
CREATE VIEW slow_keys AS SELECT k.* FROM api_keys k, pg_sleep(10) s;
"""


@pytest.fixture
def postgres():
    made = []

    def make(**kw):
        p = pglib.Postgres(**kw)
        made.append(p)
        return p.start()

    yield make
    for p in made:
        p.close()


@pytest.fixture
def redis():
    made = []

    def make(**kw):
        r = redis_server.Redis(**kw)
        made.append(r)
        return r.start()

    yield make
    for r in made:
        r.close()


def run_unit(env, timeout=60):
    e = dict(os.environ)
    e.update(env)
    t0 = time.monotonic()
    r = subprocess.run([UNIT], capture_output=True, text=True, timeout=timeout, env=e,
                       stdin=subprocess.DEVNULL)
    return r, time.monotonic() - t0


def assert_unit_passed(r):
    out = r.stdout + r.stderr
    assert r.returncode == 0 and " 0 failed" in out, out


@needs_pg
def test_postgres_helper(postgres):
    pg = postgres()
    assert pg.url == f"postgresql://postgres@127.0.0.1:{pg.port}/tollgate"
    assert pg.sql("SELECT current_database(), current_user") == "tollgate|postgres"
    pg.sql("CREATE TABLE t (a int, b text); INSERT INTO t VALUES (1, 'x'), (2, 'y')")
    assert pg.sql("SELECT a, b FROM t ORDER BY a") == "1|x\n2|y"
    with pytest.raises(AssertionError, match="does not exist"):
        pg.sql("SELECT * FROM nope")

    port, pid = pg.port, pg.pid
    pg.stop()
    assert not pg.alive and not can_connect(pg.addr)
    pg.start()
    assert pg.port == port and pg.pid != pid
    assert pg.sql("SELECT count(*) FROM t") == "2"  # same data dir

    pg.kill()
    assert not pg.alive and not can_connect(pg.addr)
    pg.start()  # crash recovery
    assert pg.sql("SELECT sum(a) FROM t") == "3"

    pg.freeze()
    assert not pg.ready()
    pg.thaw()
    assert pg.ready()


@needs_redis
def test_redis_helper(redis):
    r = redis()
    assert r.url == f"redis://127.0.0.1:{r.port}/0"
    assert r.cmd("SET", "k", "v") == "OK"
    assert r.cmd("GET", "k") == "v"
    assert r.cmd("INCRBY", "n", 5) == "5"
    assert r.cmd("CONFIG", "GET", "save") == "save"  # an empty value: no snapshots
    assert r.cmd("CONFIG", "GET", "appendonly").split("\n") == ["appendonly", "no"]

    port = r.port
    r.kill()
    assert not r.alive and not can_connect(r.addr)
    with pytest.raises(AssertionError):
        r.cmd("PING")
    r.start()
    assert r.port == port
    assert r.cmd("GET", "k") == ""  # nothing persisted
    r.stop()
    assert not r.alive and not can_connect(r.addr)


@needs_pg
@needs_unit
def test_keystore_reads_postgres(postgres):
    pg = postgres()
    pg.sql(KEYS_SQL)
    r, took = run_unit({"TG_TEST_PG_URL": pg.url})
    assert_unit_passed(r)
    assert "statement timeout" in r.stdout, r.stdout


@needs_pg
@needs_unit
def test_keystore_postgres_down(postgres):
    """A stopped, killed or frozen server makes the load fail within about 3 s (connect_timeout)
    instead of hanging the refresh thread."""
    pg = postgres()
    pg.sql(KEYS_SQL)
    env = {"TG_TEST_PG_DOWN_URL": pg.url}

    pg.stop()
    r, took = run_unit(env)
    assert_unit_passed(r)
    assert "Connection refused" in r.stdout, r.stdout

    pg.start()
    pg.kill()
    r, took = run_unit(env)
    assert_unit_passed(r)

    pg.start()
    pg.freeze()
    try:
        r, took = run_unit(env)
    finally:
        pg.thaw()
    assert_unit_passed(r)
    assert "timeout expired" in r.stdout, r.stdout
    assert pg.ready()
