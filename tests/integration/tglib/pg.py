"""A real PostgreSQL server for one test (Debian's postgresql package, /usr/lib/postgresql/*/bin).

    pg = Postgres().start()          # initdb into a temp dir, start, create the database
    pg.url                           # postgresql://postgres@127.0.0.1:PORT/tollgate
    pg.sql("CREATE TABLE t (a int); INSERT INTO t VALUES (1)")
    pg.sql("SELECT a FROM t")        # "1": psql's unaligned, tuples-only output
    pg.stop(); pg.start()            # a clean restart: same data dir, same port
    pg.kill(); pg.start()            # a crash (SIGKILL) and crash recovery
    pg.freeze(); pg.thaw()           # SIGSTOP/SIGCONT: up at the TCP level but never answering
    pg.close()                       # stops it and removes the temp dir

The server listens on a free loopback port with trust authentication and its unix socket in the
temp dir, never in /var/run. PostgreSQL refuses to run as root, so when the tests run as root the
server runs as the `postgres` user that the Debian package creates (Popen's user=, so the PID we
hold is the postmaster's own, not a wrapper's) and the temp dir is handed to that user. Every
signal goes to PIDs this helper started or found as the postmaster's children; none by name.
"""

import glob
import os
import pwd
import signal
import subprocess
import tempfile
import time

from .daemon import Daemon
from .net import can_connect, free_port

# Durability is pointless for a test server; these make initdb and start-up quick.
_SERVER_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off",
                    "max_connections=30", "shared_buffers=16MB", "max_wal_senders=0",
                    "wal_level=minimal", "log_min_messages=warning")


def find_bindir():
    """The newest /usr/lib/postgresql/N/bin holding initdb and postgres, or None."""
    dirs = [d for d in glob.glob("/usr/lib/postgresql/*/bin")
            if os.access(os.path.join(d, "initdb"), os.X_OK)
            and os.access(os.path.join(d, "postgres"), os.X_OK)]
    dirs.sort(key=lambda d: int(d.split("/")[-2]) if d.split("/")[-2].isdigit() else 0)
    return dirs[-1] if dirs else None


def available():
    """Whether a PostgreSQL server can be started here (for pytest skip marks)."""
    if find_bindir() is None:
        return False
    if os.geteuid() != 0:
        return True
    try:
        pwd.getpwnam("postgres")
        return True
    except KeyError:
        return False


def _children(pid):
    """PIDs whose parent is pid, from /proc (the postmaster's backends and auxiliaries)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields resume after the last ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1 and fields[1] == str(pid):
            out.append(int(entry))
    return out


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class Postgres(Daemon):
    def __init__(self, db="tollgate", port=None, bindir=None):
        self.bindir = bindir or find_bindir()
        if self.bindir is None:
            raise AssertionError("PostgreSQL not found under /usr/lib/postgresql/*/bin")
        self.db = db
        self.port = port or free_port()
        # Short, so the unix socket path stays within sun_path's 108 bytes.
        self.dir = tempfile.mkdtemp(prefix="tg-pg-")
        self.data = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "postgres.log")
        self.proc = None
        self._log = None
        self._user = None  # (uid, gid) to run the server as, when we are root
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            self._user = (pw.pw_uid, pw.pw_gid)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self._initdb()

    # -- addresses ------------------------------------------------------------------------

    @property
    def url(self):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.db}"

    @property
    def addr(self):
        return ("127.0.0.1", self.port)

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    # -- running programs -----------------------------------------------------------------

    def _env(self):
        # PG* variables of the caller would redirect the tools; LC_ALL=C keeps initdb quiet.
        e = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        e["LC_ALL"] = "C"
        e["PGCONNECT_TIMEOUT"] = "5"
        return e

    def _as_server_user(self):
        """Popen keyword arguments that run a program as the server's user, from the temp dir
        (the caller's cwd may not be readable by that user)."""
        kw = {"cwd": self.dir, "env": self._env()}
        if self._user is not None:
            kw.update(user=self._user[0], group=self._user[1], extra_groups=[])
        return kw

    def _bin(self, name):
        return os.path.join(self.bindir, name)

    def _initdb(self):
        r = subprocess.run([self._bin("initdb"), "-D", self.data, "-U", "postgres", "-A", "trust",
                            "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
                           capture_output=True, text=True, timeout=120, **self._as_server_user())
        if r.returncode != 0:
            raise AssertionError(f"initdb failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")

    def psql(self, text, db=None, timeout=30):
        """Runs SQL through psql over TCP; returns CompletedProcess (text, not checked)."""
        argv = [self._bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db or self.db,
                "-c", text]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, **self._as_server_user())

    def sql(self, text, db=None, timeout=30):
        """Runs one or more statements; returns psql's output (rows '|'-separated, one a line),
        stripped. Raises AssertionError with psql's message when a statement fails."""
        r = self.psql(text, db, timeout)
        if r.returncode != 0:
            raise AssertionError(f"psql failed ({r.returncode}): {r.stderr.strip()}\nSQL: {text}")
        return r.stdout.strip()

    def ready(self):
        """Whether the server accepts connections and queries now."""
        r = subprocess.run([self._bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p",
                            str(self.port), "-d", "postgres", "-t", "1"],
                           capture_output=True, timeout=10, **self._as_server_user())
        return r.returncode == 0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, timeout=30.0):
        """Starts the server (again, on the same data dir and port) and waits until it answers.
        The first start also creates the database."""
        assert not self.alive, "postgres is already running"
        argv = [self._bin("postgres"), "-D", self.data, "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}"]
        for s in _SERVER_SETTINGS:
            argv += ["-c", s]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=self._log, **self._as_server_user())
        deadline = time.monotonic() + timeout
        while not (can_connect(self.addr) and self.ready()):
            if self.proc.poll() is not None:
                raise AssertionError(f"postgres exited with {self.proc.returncode} during start:"
                                     f"\n{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"postgres did not start within {timeout}s:\n{self.log()}")
            time.sleep(0.05)
        if self.sql(f"SELECT 1 FROM pg_database WHERE datname = '{self.db}'", db="postgres") != "1":
            self.sql(f'CREATE DATABASE "{self.db}"', db="postgres")
        return self

    def stop(self, timeout=10.0):
        """A clean shutdown, then SIGKILL after timeout. PostgreSQL's fast mode (SIGINT) is used
        rather than SIGTERM, its smart mode, which waits for every client to leave and so could
        outlast the timeout whenever a test leaves a connection open."""
        if not self.alive:
            self._reap()
            return
        os.kill(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return
        self._reap()

    def kill(self):
        """A crash: SIGKILL to the postmaster and to each of its children (found by PID), so the
        port closes at once and nothing holds the shared memory that start() needs again."""
        if self.alive:
            self.thaw()
            kids = _children(self.proc.pid)
            os.kill(self.proc.pid, signal.SIGKILL)
            for k in kids:
                try:
                    os.kill(k, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait(10)
            deadline = time.monotonic() + 10
            while any(_alive(k) for k in kids) and time.monotonic() < deadline:
                time.sleep(0.02)
        self._reap()

    def freeze(self):
        """SIGSTOP to the postmaster: connections still complete in the kernel's backlog, but
        nothing answers them (a hung server, as opposed to a stopped one)."""
        if self.alive:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self):
        if self.alive:
            os.kill(self.proc.pid, signal.SIGCONT)

    def _reap(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
