"""Running the tollgate binary: config files, the CLI, and a managed `tollgate run` process."""

import json
import os
import re
import signal
import subprocess
import time

from . import prom
from .client import Client
from .net import can_connect, free_port

BIN = os.environ.get("TOLLGATE_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "..", "build", "tollgate")
BIN = os.path.abspath(BIN)

# ASan/UBSan reports that must fail whichever test was running.
SANITIZER_RE = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|"
                          r"SUMMARY: UndefinedBehaviorSanitizer")

_PLAIN = re.compile(r"^[A-Za-z0-9_./@-][A-Za-z0-9_./:@-]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"}


def _scalar(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    if _PLAIN.match(s) and s.lower() not in _RESERVED and not s.endswith(":"):
        return s
    return json.dumps(s)


def to_yaml(obj, indent=0):
    """Block-style YAML for dicts, lists and scalars (plain where safe, else double-quoted)."""
    pad = " " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out.append(f"{pad}{_scalar(k)}:")
                out.append(to_yaml(v, indent + 2))
            elif isinstance(v, (dict, list)):
                out.append(f"{pad}{_scalar(k)}: {'{}' if isinstance(v, dict) else '[]'}")
            else:
                out.append(f"{pad}{_scalar(k)}: {_scalar(v)}")
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, (dict, list)) and v:
                inner = to_yaml(v, indent + 2).lstrip(" ")
                out.append(f"{pad}- {inner}")
            else:
                out.append(f"{pad}- {_scalar(v)}")
    else:
        out.append(pad + _scalar(obj))
    return "\n".join(out)


def is_sanitized():
    """Whether the binary under test was built with AddressSanitizer."""
    try:
        with open(BIN, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


def run_cli(*args, env=None, timeout=30, cwd=None):
    """Runs `tollgate ARGS...` to completion; returns CompletedProcess with text output."""
    e = dict(os.environ)
    if env:
        e.update(env)
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout, env=e,
                          cwd=cwd)


def default_config(port, admin_port):
    """A config skeleton with short timeouts, so a stuck request fails a test quickly instead of
    stalling the run. Tests override what they exercise."""
    return {
        "workers": 1,
        "listen": [{"addr": f"127.0.0.1:{port}"}],
        "admin": {"addr": f"127.0.0.1:{admin_port}"},
        "shutdown": {"drain_delay": "0s", "timeout": "2s"},
        "limits": {"header_timeout": "5s", "idle_timeout": "10s", "body_timeout": "5s",
                   "send_timeout": "5s"},
        "services": {},
        "routes": [],
    }


def service(*urls, connect="1s", response="5s", **extra):
    svc = {"nodes": [{"url": u} for u in urls], "timeouts": {"connect": connect,
                                                             "response": response}}
    svc.update(extra)
    return svc


class Tollgate:
    """A `tollgate run` process with its own config file in tmpdir, its stderr (diagnostic JSON
    log) in NAME.stderr and its stdout (the access log) in NAME.stdout."""

    def __init__(self, tmpdir, config, env=None, name="tollgate"):
        self.tmpdir = str(tmpdir)
        self.config = config
        self.env = env
        self.name = name
        self.proc = None
        self.rc = None
        self.config_path = os.path.join(self.tmpdir, f"{name}.yaml")
        self.log_path = os.path.join(self.tmpdir, f"{name}.stderr")
        self.out_path = os.path.join(self.tmpdir, f"{name}.stdout")
        self.stdout_target = None  # a file object or fd to use for stdout instead of out_path

    # -- addresses ------------------------------------------------------------------------

    def _listen(self, i=0):
        return self.config["listen"][i]["addr"]

    @property
    def port(self):
        return int(self._listen().rsplit(":", 1)[1])

    @property
    def addr(self):
        """Address of the first listener: ("127.0.0.1", port) or a unix path."""
        a = self._listen()
        if a.startswith("unix:"):
            return a[5:]
        host, port = a.rsplit(":", 1)
        return (host.strip("[]"), int(port))

    def listen_addr(self, i):
        a = self._listen(i)
        if a.startswith("unix:"):
            return a[5:]
        host, port = a.rsplit(":", 1)
        return (host.strip("[]"), int(port))

    @property
    def admin_addr(self):
        host, port = self.config["admin"]["addr"].rsplit(":", 1)
        return (host.strip("[]"), int(port))

    def admin(self, path, method="GET", timeout=10):
        """One request to the admin listener (POST with an empty body)."""
        kw = {"body": b""} if method == "POST" else {}
        with Client(self.admin_addr, timeout=timeout) as c:
            return c.get(path, host="admin", method=method, **kw)

    def metrics(self):
        """/metrics through the strict text-format parser of tglib.prom."""
        r = self.admin("/metrics")
        assert r.status == 200, r
        assert r.header("content-type", "").startswith("text/plain"), r
        return prom.parse(r.body)

    @property
    def pid(self):
        return self.proc.pid

    # -- lifecycle ------------------------------------------------------------------------

    def write_config(self, text=None):
        with open(self.config_path, "w") as f:
            f.write(text if text is not None else to_yaml(self.config) + "\n")

    def start(self, wait=True, timeout=15.0):
        if not os.path.exists(BIN):
            raise AssertionError(f"tollgate binary not found at {BIN} (set TOLLGATE_BIN)")
        self.write_config()
        e = dict(os.environ)
        e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        if self.env:
            e.update(self.env)
        self._log = open(self.log_path, "wb")
        self._out = open(self.out_path, "wb") if self.stdout_target is None else None
        out = self._out if self._out is not None else self.stdout_target
        self.proc = subprocess.Popen([BIN, "run", "-c", self.config_path], stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=self._log, env=e)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=15.0):
        """Waits until every listener accepts. The probe connections close at once; tollgate
        frees them on EOF."""
        deadline = time.monotonic() + timeout
        targets = [self.listen_addr(i) for i in range(len(self.config["listen"]))]
        admin = self.config.get("admin", {}).get("addr")
        if admin and not admin.startswith("unix:"):
            host, port = admin.rsplit(":", 1)
            targets.append((host.strip("[]"), int(port)))  # the admin listener opens last
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"tollgate exited with {self.proc.returncode} during start:\n"
                                     f"{self.stderr()}")
            if all(can_connect(t) for t in targets):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"tollgate did not listen within {timeout}s:\n{self.stderr()}")
            time.sleep(0.02)

    def signal(self, sig):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout):
        """Waits for exit; returns the exit code or None if still running."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=5.0):
        """SIGTERM, then SIGKILL after timeout. Returns the exit code (negative: killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.rc = self.proc.returncode
        self._log.close()
        if self._out is not None:
            self._out.close()
        return self.rc

    def stderr(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def access_log(self):
        """The access-log lines written so far, parsed (one JSON object per line)."""
        try:
            with open(self.out_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def log_lines(self):
        """The diagnostic log (stderr) as parsed JSON objects; lines that are not JSON (sanitizer
        reports, configuration errors printed before start) are skipped."""
        out = []
        for line in self.stderr().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def sanitizer_report(self):
        text = self.stderr()
        m = SANITIZER_RE.search(text)
        return text[max(0, m.start() - 200):] if m else None

    # -- /proc ----------------------------------------------------------------------------

    def status_kb(self, field):
        """A field of /proc/PID/status in KiB (VmRSS, VmHWM...)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    def open_fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))


def new_ports(n):
    """n distinct free ports."""
    ports = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)
