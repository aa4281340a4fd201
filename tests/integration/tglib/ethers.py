"""A real Ethereum client for the JSON-RPC tests: runs tglib/ethers_driver.mjs (ethers v6 on
node, installed by scripts/install-ethers into build/tools) and returns its JSON results.

    require_ethers()                               # skips the test without node or npm
    doc = run_ethers("http", url)                  # deploy, calls, a revert, a tx, a batch of 50
    doc = run_ethers("ws", ws_url, 5)              # new blocks for 5 s
    run = start_ethers("ws-reconnect", ws_url, 6)  # runs on while the test kills a node...
    doc = run.wait()                               # ...then collects its JSON
    comparable(doc)                                # what two http runs must agree on

Each scenario prints one JSON line; see the driver for its fields. A run that fails (the
driver's "ok" is false, or it printed nothing) raises EthersFailed, unless check=False.
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile

from .jsdriver import Tools, parse_last_line

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ethers_driver.mjs")
MODULES = os.path.join(ROOT, "build", "tools", "node_modules")
INSTALL = os.path.join(ROOT, "scripts", "install-ethers")


class EthersFailed(AssertionError):
    """The driver failed; .doc holds its JSON line (None when it printed none)."""

    def __init__(self, message, doc=None):
        super().__init__(message)
        self.doc = doc


def _installed():
    try:
        with open(os.path.join(MODULES, "ethers", "package.json")) as f:
            return json.load(f).get("version", "").startswith("6.")
    except (OSError, ValueError):
        return False


def _check():
    if shutil.which("node") is None:
        return False, "node is not installed: cannot run ethers", False
    if _installed():
        return True, "", False
    if shutil.which("npm") is None:
        return False, "npm is not installed: cannot install ethers (scripts/install-ethers)", False
    r = subprocess.run([INSTALL], capture_output=True, text=True, timeout=300,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0 or not _installed():
        return False, f"scripts/install-ethers failed:\n{r.stderr}", True
    return True, "", False


_tools = Tools(_check)


def require_ethers():
    """Skips the calling test when ethers cannot be installed here; fails it when the install
    was tried and failed."""
    _tools.require()


def _command(scenario, url, args, timeout):
    return [shutil.which("node") or "node", DRIVER, scenario, url, *map(str, args),
            "--timeout", str(timeout)]


def _parse(stdout, stderr, returncode, check):
    return parse_last_line(stdout, stderr, returncode, check, EthersFailed, "ethers driver")


def run_ethers(scenario, url, *args, timeout=60, check=True):
    """Runs one scenario to its end and returns its JSON line as a dict. timeout bounds the
    driver (it reports a timeout as a failure); the process is killed 10 s after that."""
    require_ethers()
    r = subprocess.run(_command(scenario, url, args, timeout), capture_output=True, text=True,
                       timeout=timeout + 10, stdin=subprocess.DEVNULL)
    return _parse(r.stdout, r.stderr, r.returncode, check)


class EthersRun:
    """A driver running in the background (start_ethers). Output goes to temporary files, so
    the process never blocks on a full pipe."""

    def __init__(self, scenario, url, args, timeout):
        self.timeout = timeout
        self._out = tempfile.TemporaryFile()
        self._err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(_command(scenario, url, args, timeout),
                                     stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=self._err)

    @property
    def pid(self):
        return self.proc.pid

    def poll(self):
        return self.proc.poll()

    def kill(self):
        """SIGKILL by PID (nothing is printed then); safe to call more than once."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)

    def _read(self, f):
        f.seek(0)
        return f.read().decode("utf-8", "replace")

    def wait(self, check=True):
        """Waits for the scenario to end (at most its timeout + 10 s, then kills it) and
        returns its JSON line as a dict."""
        try:
            self.proc.wait(self.timeout + 10)
        except subprocess.TimeoutExpired:
            self.kill()
        try:
            return _parse(self._read(self._out), self._read(self._err), self.proc.returncode,
                          check)
        finally:
            self._out.close()
            self._err.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


def start_ethers(scenario, url, *args, timeout=60):
    """Starts one scenario in the background and returns its EthersRun; run.wait() collects
    the JSON. Kill it (run.kill(), or a with block) if the test ends before it does."""
    require_ethers()
    return EthersRun(scenario, url, args, timeout)


def comparable(doc):
    """The parts of an http run that do not depend on the chain's state before it, so a run
    through tollgate and a run straight at a node (even the same node, one after the other)
    must agree on them: hashes, nonces, block numbers and the dev account's balance differ."""
    batch = doc["batch"]
    stable = []
    for r in batch["results"]:
        if r["kind"] == "double" or (r["kind"] == "getBalance" and
                                     r["arg"] not in (doc["address"], doc["tx"]["to"])):
            stable.append(r)
        elif r["kind"] == "getBlock" and r["arg"] == 0:
            stable.append(r)  # the genesis block
    return {
        "chain_id": doc["chain_id"],
        "deploy_status": doc["deploy"]["status"],
        "call": doc["call"],
        "revert": {k: doc["revert"][k] for k in ("caught", "code", "reason", "data", "revert")},
        "tx": {k: doc["tx"][k] for k in ("status", "value", "to", "from", "confirmations")},
        "batch": {"count": batch["count"], "errors": batch["errors"], "sizes": batch["sizes"],
                  "kinds": [r["kind"] for r in batch["results"]], "stable": stable},
    }
