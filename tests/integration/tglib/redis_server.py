"""A real redis-server for one test (Debian's redis-server package), with no persistence.

    r = Redis().start()             # a free loopback port, its own temp dir
    r.url                           # redis://127.0.0.1:PORT/0
    r.cmd("SET", "k", "v")          # "OK": redis-cli's output, stripped
    r.kill(); r.start()             # a crash (SIGKILL) and a restart on the same port, empty
    r.freeze(); r.thaw()            # SIGSTOP/SIGCONT: connects, never answers
    r.close()                       # stops it and removes the temp dir

Nothing is saved (--save "" --appendonly no), so a restarted server starts empty, as a cache
that lost its memory would. Signals go to the PID this helper started, never by name.
"""

import os
import signal
import subprocess
import tempfile
import time

from .daemon import Daemon
from .net import can_connect, free_port

SERVER = "/usr/bin/redis-server"
CLI = "/usr/bin/redis-cli"


def available():
    """Whether redis-server and redis-cli are installed (for pytest skip marks)."""
    return os.access(SERVER, os.X_OK) and os.access(CLI, os.X_OK)


class Redis(Daemon):
    def __init__(self, port=None):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="tg-redis-")
        self.log_path = os.path.join(self.dir, "redis.log")
        self.proc = None
        self._log = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def addr(self):
        return ("127.0.0.1", self.port)

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def cli(self, *args, timeout=10):
        """Runs redis-cli against this server; returns CompletedProcess (text, not checked)."""
        return subprocess.run([CLI, "-h", "127.0.0.1", "-p", str(self.port), *map(str, args)],
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def cmd(self, *args, timeout=10):
        """One command; returns redis-cli's output stripped (an error reply reads "ERR ...").
        Raises AssertionError when redis-cli cannot talk to the server at all."""
        r = self.cli(*args, timeout=timeout)
        if r.returncode != 0:
            raise AssertionError(f"redis-cli {' '.join(map(str, args))} failed "
                                 f"({r.returncode}): {(r.stderr or r.stdout).strip()}")
        return r.stdout.strip()

    def start(self, timeout=15.0):
        """Starts the server (again, on the same port) and waits until it answers PING."""
        assert not self.alive, "redis-server is already running"
        argv = [SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.dir, "--daemonize", "no",
                "--logfile", "", "--loglevel", "warning"]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, cwd=self.dir, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=self._log)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited with {self.proc.returncode} during "
                                     f"start:\n{self.log()}")
            if can_connect(self.addr) and self.cli("PING", timeout=2).stdout.strip() == "PONG":
                return self
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"redis-server did not start within {timeout}s:\n"
                                     f"{self.log()}")
            time.sleep(0.02)

    def stop(self, timeout=5.0):
        """SIGTERM, then SIGKILL after timeout."""
        if self.alive:
            self.thaw()
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._close_log()

    def kill(self):
        """SIGKILL, as a crash would."""
        if self.alive:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self._close_log()

    def freeze(self):
        if self.alive:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self):
        if self.alive:
            os.kill(self.proc.pid, signal.SIGCONT)

    def _close_log(self):
        if self._log is not None:
            self._log.close()
            self._log = None
