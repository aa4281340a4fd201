"""Shared helpers for bench/run and bench/mem.

Everything here exists to make measurements honest and runs safe on a shared machine:
processes are started on free loopback ports with their own temp prefix, pinned to a CPU,
tracked by PID and always stopped by PID (also on Ctrl-C, SIGTERM or a global deadline), and CPU
time and memory are read from /proc exactly as DESIGN.md section 7 describes.
"""

import atexit
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.realpath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)
CONF_DIR = os.path.join(BENCH_DIR, "conf")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def log(msg):
    """Progress goes to stderr so that stdout carries only the summary."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def env_int(name, default, minimum=0):
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        val = int(raw)
    except ValueError:
        sys.exit(f"{name}={raw!r}: not an integer")
    if val < minimum:
        sys.exit(f"{name}={val}: must be at least {minimum}")
    return val


def env_float(name, default, minimum=0.0):
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        val = float(raw)
    except ValueError:
        sys.exit(f"{name}={raw!r}: not a number")
    if val < minimum:
        sys.exit(f"{name}={val}: must be at least {minimum}")
    return val


class StartError(Exception):
    """A process under test did not start or did not answer; the message says why."""


class Deadline(Exception):
    """The global time budget of the run is spent."""


# Ports handed out by this process, so two calls never return the same port even though the
# first one has not been bound by its server yet.
_given_ports = set()


def free_port():
    """Returns a loopback TCP port that was free a moment ago (the kernel picked it)."""
    for _ in range(50):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if port not in _given_ports:
            _given_ports.add(port)
            return port
    raise RuntimeError("no free port")


def nofile_limit():
    """The hard RLIMIT_NOFILE: the most descriptors a process started from here can raise to."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def render(template, dest, **values):
    """Copies bench/conf/<template> to dest, replacing every @KEY@ with values[KEY]."""
    with open(os.path.join(CONF_DIR, template), encoding="utf-8") as f:
        text = f.read()
    for key, val in values.items():
        text = text.replace(f"@{key}@", str(val))
    left = sorted(set(re.findall(r"@[A-Z_]+@", text)))
    if left:
        raise RuntimeError(f"{template}: no value for {', '.join(left)}")
    with open(dest, "w", encoding="utf-8") as f:
        f.write(text)
    return dest


def _children_map():
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: fields start after the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        kids.setdefault(int(fields[1]), []).append(int(name))
    return kids


def process_tree(pid):
    """pid and all its live descendants (an nginx master and its workers, for instance)."""
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_ticks(pids):
    """(utime, stime) in clock ticks summed over pids; /proc/PID/stat sums all threads."""
    user = system = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        # Fields 14 and 15 of proc(5), counted from 1 with pid and comm as 1 and 2.
        user += int(fields[11])
        system += int(fields[12])
    return user, system


def cpu_stat():
    """Per-CPU times from /proc/stat in ticks: {"cpu0": {"user": .., "idle": .., ...}}."""
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    out = {}
    with open("/proc/stat", encoding="ascii") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                fields = line.split()
                out[fields[0]] = dict(zip(names, map(int, fields[1:9])))
    return out


def cpu_stat_delta(before, after, cpu):
    """(busy, idle, steal, total) ticks of one CPU between two cpu_stat() samples."""
    d = {k: after[f"cpu{cpu}"][k] - before[f"cpu{cpu}"][k] for k in before[f"cpu{cpu}"]}
    idle = d["idle"] + d["iowait"]
    total = sum(d.values())
    return total - idle - d["steal"], idle, d["steal"], total


def status_kib(pids, field):
    """Sum of a /proc/PID/status field in KiB (VmRSS, VmHWM, ...) over pids."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


class Proc:
    """One process started by a Session; stop() ends it and its descendants by PID."""

    def __init__(self, name, popen, log_path, stop_timeout):
        self.name = name
        self.popen = popen
        self.pid = popen.pid
        self.log_path = log_path
        self.stop_timeout = stop_timeout

    def alive(self):
        return self.popen.poll() is None

    def tree(self):
        return process_tree(self.pid) if self.alive() else []

    def log_tail(self, lines=15):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:]).rstrip()
        except OSError:
            return ""

    def stop(self):
        if not self.alive():
            return self.popen.returncode
        tree = process_tree(self.pid)
        try:
            os.kill(self.pid, signal.SIGTERM)
            self.popen.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            log(f"{self.name} (pid {self.pid}) ignored SIGTERM for {self.stop_timeout}s; SIGKILL")
            os.kill(self.pid, signal.SIGKILL)
            self.popen.wait(10)
        except ProcessLookupError:
            pass
        # Children that outlived their parent (e.g. nginx workers after a master SIGKILL).
        for pid in tree[1:]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return self.popen.returncode


class Session:
    """Owns the temp directory and every process of a run; cleans up on any exit path."""

    def __init__(self, prefix, max_seconds):
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.procs = []
        self.keep = os.environ.get("BENCH_KEEP", "") == "1"
        self._closed = False
        atexit.register(self.close)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGALRM, self._on_alarm)
        if max_seconds > 0:
            signal.alarm(int(max_seconds))
        self.deadline = time.monotonic() + max_seconds if max_seconds > 0 else None

    @staticmethod
    def _on_signal(signum, frame):
        raise SystemExit(128 + signum)

    @staticmethod
    def _on_alarm(signum, frame):
        raise Deadline("global time limit reached")

    def path(self, name):
        return os.path.join(self.tmp, name)

    def start(self, name, argv, cpu=None, env=None, stop_timeout=10):
        """Starts argv (pinned to cpu if given) with stdout+stderr in TMP/<name>.log."""
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + list(argv)
        log_path = self.path(f"{name}.log")
        with open(log_path, "ab") as out:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.tmp,
                env=env,
                start_new_session=True,
            )
        proc = Proc(name, popen, log_path, stop_timeout)
        self.procs.append(proc)
        return proc

    def stop(self, proc):
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self):
        if self._closed:
            return
        self._closed = True
        signal.alarm(0)
        for proc in reversed(self.procs):
            try:
                proc.stop()
            except Exception as e:  # cleanup must go on to the next process
                log(f"stopping {proc.name}: {e}")
        self.procs = []
        if self.keep:
            log(f"kept temp directory {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Minimal HTTP/1.1 client pieces: enough to check readiness and to drive count-bounded load
# without depending on the proxy under test behaving like any particular client library.


class ResponseReader:
    """Incremental parser for responses (not to HEAD): Content-Length, chunked, or 204/304."""

    BODY_KEEP = 4096

    def __init__(self):
        self.buf = b""
        self.status = None
        self.headers = {}  # names lowercased; a repeated field keeps its last value
        self.body_len = 0
        self.body = b""  # the first BODY_KEEP bytes, for checks of small answers
        self._state = "head"
        self._left = 0

    def feed(self, data):
        """Adds bytes; returns True once one full response has been read."""
        self.buf += data
        while True:
            if self._state == "head":
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return False
                head = self.buf[:end].decode("latin-1")
                self.buf = self.buf[end + 4 :]
                lines = head.split("\r\n")
                self.status = int(lines[0].split(" ", 2)[1])
                hdrs = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    hdrs[k.strip().lower()] = v.strip()
                self.headers = hdrs
                if self.status in (204, 304) or 100 <= self.status < 200:
                    self._state = "done"
                elif hdrs.get("transfer-encoding", "").lower() == "chunked":
                    self._state = "chunk-size"
                else:
                    self._left = int(hdrs.get("content-length", "0"))
                    self._state = "body"
            elif self._state == "body":
                take = min(self._left, len(self.buf))
                self._keep(take)
                self.body_len += take
                self._left -= take
                self.buf = self.buf[take:]
                if self._left:
                    return False
                self._state = "done"
            elif self._state == "chunk-size":
                end = self.buf.find(b"\r\n")
                if end < 0:
                    return False
                size = int(self.buf[:end].split(b";")[0], 16)
                self.buf = self.buf[end + 2 :]
                if size == 0:
                    self._state = "trailers"
                else:
                    self._left = size
                    self._state = "chunk-data"
            elif self._state == "chunk-data":
                take = min(self._left, len(self.buf))
                self._keep(take)
                self.body_len += take
                self._left -= take
                self.buf = self.buf[take:]
                if self._left:
                    return False
                self._state = "chunk-crlf"
            elif self._state == "chunk-crlf":
                if len(self.buf) < 2:
                    return False
                self.buf = self.buf[2:]
                self._state = "chunk-size"
            elif self._state == "trailers":
                end = self.buf.find(b"\r\n")
                if end < 0:
                    return False
                self.buf = self.buf[end + 2 :]
                if end == 0:
                    self._state = "done"
            if self._state == "done":
                return True

    def _keep(self, take):
        if len(self.body) < self.BODY_KEEP:
            self.body += self.buf[: min(take, self.BODY_KEEP - len(self.body))]

    def reset(self):
        """Prepares for the next response on the same connection, keeping extra bytes."""
        rest = self.buf
        self.__init__()
        self.buf = rest


class Request:
    """What a bench client sends: GET by default, or a POST with a body (the JSON-RPC targets)."""

    def __init__(self, path="/", method="GET", body=b"", content_type=None):
        self.path = path
        self.method = method
        self.body = body
        self.content_type = content_type

    def encode(self, port, close=False):
        head = f"{self.method} {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        if close:
            head += "Connection: close\r\n"
        if self.content_type:
            head += f"Content-Type: {self.content_type}\r\n"
        if self.body or self.method not in ("GET", "HEAD"):
            head += f"Content-Length: {len(self.body)}\r\n"
        return (head + "\r\n").encode() + self.body


def request_bytes(port, path="/", method="GET", close=False):
    return Request(path, method).encode(port, close)


def http_response(port, req, timeout=2.0):
    """One request on a fresh connection; returns the ResponseReader that read the whole answer
    (status, headers, body length, first bytes of the body) or raises OSError."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(req.encode(port, close=True))
        rd = ResponseReader()
        while True:
            data = s.recv(65536)
            if not data:
                raise OSError("connection closed before a full response")
            if rd.feed(data):
                return rd


def http_request(port, req, timeout=2.0):
    """One request on a fresh connection; returns (status, body length, first bytes of the body)
    or raises OSError."""
    rd = http_response(port, req, timeout)
    return rd.status, rd.body_len, rd.body


def http_get(port, path="/", timeout=2.0):
    """One GET on a fresh connection; returns (status, body length) or raises OSError."""
    return http_request(port, Request(path), timeout)[:2]


def wait_http(proc, port, timeout=10.0, path="/"):
    """Waits until proc answers 200 on port; raises StartError with its log tail if not."""
    end = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < end:
        if not proc.alive():
            raise StartError(
                f"{proc.name} exited with status {proc.popen.returncode}\n{proc.log_tail()}"
            )
        try:
            status, _ = http_get(port, path)
            if status == 200:
                return
            last = f"status {status}"
        except (OSError, ValueError, IndexError) as e:
            last = str(e) or type(e).__name__
        time.sleep(0.05)
    raise StartError(f"{proc.name} did not answer 200 on port {port} within {timeout:g}s "
                     f"({last})\n{proc.log_tail()}")


def http_load(port, total, conns=8, timeout=120.0, path="/", req=None):
    """Sends exactly `total` keep-alive requests over `conns` connections, one in flight on each:
    GETs of path, or req (a Request) when given.

    Returns the number of 200 responses. Used where a request count, not a duration, must
    bound the work (callgrind instruction counts).
    """
    sel = selectors.DefaultSelector()
    req = (req or Request(path)).encode(port)
    sent = ok = done = 0
    socks = []
    try:
        for _ in range(min(conns, total)):
            s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(req)
            sent += 1
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, ResponseReader())
            socks.append(s)
        end = time.monotonic() + timeout
        while done < total:
            if time.monotonic() > end:
                raise TimeoutError(f"load: {done}/{total} responses after {timeout:g}s")
            for key, _ in sel.select(1.0):
                s, rd = key.fileobj, key.data
                data = s.recv(65536)
                if not data:
                    raise OSError(f"load: connection closed after {done} responses")
                while rd.feed(data):
                    done += 1
                    ok += rd.status == 200
                    rd.reset()
                    data = b""
                    if sent < total:
                        s.sendall(req)
                        sent += 1
                    if not rd.buf:
                        break
    finally:
        for s in socks:
            s.close()
        sel.close()
    return ok


# ---------------------------------------------------------------------------------------------
# wrk

_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


def _micros(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"unparsable latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out):
    """Extracts requests, seconds, rps, p50/p99 (µs), socket errors and non-2xx from wrk."""
    r = {}
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    if not m:
        raise ValueError("no request count in wrk output:\n" + out)
    r["requests"] = int(m.group(1))
    r["seconds"] = _micros(m.group(2) + m.group(3)) / 1e6
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    r["rps"] = float(m.group(1)) if m else r["requests"] / r["seconds"]
    for pct, key in (("50", "p50_us"), ("99", "p99_us")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        r[key] = _micros(m.group(1)) if m else float("nan")
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non2xx"] = int(m.group(1)) if m else 0
    return r


def run_wrk(port, seconds, conns=64, threads=1, cpu=1, path="/", latency=True, script=None):
    """Runs wrk pinned to cpu against 127.0.0.1:port for `seconds`; returns parse_wrk().

    script: a wrk Lua script (wrk -s), e.g. bench/rpc.lua, which sets the method and body."""
    # wrk takes whole seconds only ("1.5s" is a usage error).
    seconds = max(1, int(seconds + 0.999))
    argv = ["taskset", "-c", str(cpu), "wrk", "-t", str(threads), "-c", str(conns),
            "-d", f"{seconds}s", "--timeout", "5s"]
    if latency:
        argv.append("--latency")
    if script:
        argv += ["-s", script]
    argv.append(f"http://127.0.0.1:{port}{path}")
    # wrk is the only child reaped during the run, so the children's rusage delta is its CPU.
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=seconds + 30)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise RuntimeError(f"wrk failed ({res.returncode}): {res.stderr.strip()}")
    r = parse_wrk(res.stdout)
    r["wrk_cpu_s"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return r


# ---------------------------------------------------------------------------------------------
# Machine and versions, for the report header.


def _first_line(argv):
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=10,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({e})"
    text = (res.stdout + res.stderr).strip()
    if res.returncode != 0 and not text:
        return f"unavailable (exit {res.returncode})"
    return text.splitlines()[0] if text else "unknown"


def machine_info():
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "unknown"
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            mem = f"{int(f.readline().split()[1]) // 1024} MiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "cpu_model": model,
        "memory": mem,
        "host": platform.node(),
        "irq_time_accounting": irq_time_accounting(),
    }


def irq_time_accounting():
    """True/False from the kernel config when it can be read, else None.

    With CONFIG_IRQ_TIME_ACCOUNTING the kernel charges softirq time (most of loopback TCP) to
    no process, so per-process CPU times would leave it out; without it, softirq work done in a
    process's context counts as that process's system time.
    """
    import gzip

    paths = [f"/boot/config-{platform.release()}", "/proc/config.gz"]
    for path in paths:
        try:
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.startswith("CONFIG_IRQ_TIME_ACCOUNTING="):
                        return line.strip().endswith("=y")
            return False
        except OSError:
            continue
    return None


def versions(tollgate):
    v = {
        "nginx": _first_line(["nginx", "-v"]).replace("nginx version: ", ""),
        "haproxy": _first_line(["haproxy", "-v"]),
        "wrk": _first_line(["wrk", "-v"]).split(" [")[0],
        "python": platform.python_version(),
    }
    if tollgate and os.access(tollgate, os.X_OK):
        v["tollgate"] = _first_line([tollgate, "version"])
    else:
        v["tollgate"] = "not built"
    return v


def require_tools(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        sys.exit(f"missing tools: {', '.join(missing)} (run scripts/install-deps)")


def require_cpus(*cpus):
    have = os.sched_getaffinity(0)
    missing = [c for c in cpus if c not in have]
    if missing:
        sys.exit(f"this benchmark pins to CPUs {list(cpus)}, but CPUs {missing} are not "
                 f"available (allowed: {sorted(have)})")


def fmt(x, digits=1):
    if x is None or x != x:  # None or NaN
        return "–"
    return f"{x:,.{digits}f}"


def fmt_us(us):
    """Latency in the unit a reader expects: µs below 1 ms, ms above."""
    if us is None or us != us:
        return "–"
    return f"{us:.0f} µs" if us < 1000 else f"{us / 1000:.2f} ms"
