"""Real anvil nodes (Foundry's local Ethereum node, npm @foundry-rs/anvil-linux-amd64) for the
JSON-RPC tests, installed by scripts/install-anvil into build/tools.

    binary = anvil_binary()                      # skips the test when npm is missing
    a = Anvil(binary, tmpdir, "a")               # --no-mining: blocks only through a.mine()
    a = Anvil(binary, tmpdir, "b", block_time=1)  # a block every second, as a chain would
    a = Anvil(binary, tmpdir, "c", automine=True)  # a block for each transaction
    a.wait_ready(); a.url, a.ws_url, a.head(), a.mine(3), a.rpc("eth_chainId")
    a.kill()                                     # SIGKILL, as a crash would
    a.start(); a.wait_ready()                    # again on the same port (a fresh chain)
    a.stop()

Anvils(tmpdir) makes any number of them for one test and stops them all by PID at the end.
Every node has the well-known dev accounts; account 0 has the key DEV_KEY.
"""

import json
import os
import shutil
import signal
import subprocess
import urllib.request

import pytest

from .net import free_port, wait_until

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
CHAIN_ID = 31337
DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
DEV_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


class Anvil:
    """One anvil process on a free port (kept across kill() and start()). Mining is manual
    (--no-mining, blocks through anvil_mine) unless block_time (seconds between blocks) or
    automine (one block per transaction, anvil's own default) is given."""

    def __init__(self, binary, tmpdir, name, block_time=None, automine=False, accounts=1,
                 port=None):
        self.binary = binary
        self.name = name
        self.block_time = block_time
        self.automine = automine
        self.accounts = accounts
        self.port = port or free_port()
        self.log_path = os.path.join(tmpdir, f"{name}.log")
        self.proc = None
        self.log = None
        self.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self):
        """anvil serves WebSocket JSON-RPC on its HTTP port."""
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _mining_args(self):
        if self.block_time is not None:
            return ["--block-time", str(self.block_time)]
        if self.automine:
            return []
        return ["--no-mining"]

    def start(self):
        """Starts the process (again after kill() or stop(): a new chain on the same port).
        Does not wait for it: see wait_ready()."""
        assert not self.alive, f"anvil {self.name} is already running"
        if self.log is not None:
            self.log.close()
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "--host", "127.0.0.1", "--port", str(self.port), *self._mining_args(),
             "--accounts", str(self.accounts), "--quiet"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def rpc(self, method, params=(), timeout=5):
        """The result of one JSON-RPC call; an error answer fails the test."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                           "params": list(params)}).encode()
        req = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        with DIRECT.open(req, timeout=timeout) as r:
            doc = json.loads(r.read())
        assert "error" not in doc, doc
        return doc["result"]

    def head(self):
        return int(self.rpc("eth_blockNumber"), 16)

    def mine(self, n=1):
        self.rpc("anvil_mine", [hex(n)])

    def wait_ready(self, timeout=15):
        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"anvil exited with {self.proc.returncode}")
            try:
                return self.head() >= 0
            except OSError:
                return False
        wait_until(up, timeout, interval=0.05, what=f"anvil on port {self.port}")
        return self

    def kill(self):
        """SIGKILL by PID: connections drop without a goodbye, as in a crash."""
        if self.alive:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(5)

    def stop(self):
        if self.alive:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.log is not None:
            self.log.close()
            self.log = None


def anvil_binary():
    """The anvil binary, installed by scripts/install-anvil on first use. Skips the calling
    test when npm is missing (and anvil is not installed yet); fails it when the install
    fails."""
    script = os.path.join(ROOT, "scripts", "install-anvil")
    tools = os.path.join(ROOT, "build", "tools", "node_modules", "@foundry-rs")
    if shutil.which("npm") is None and not os.path.isdir(tools):
        pytest.skip("npm is not installed: cannot install anvil "
                    "(npm @foundry-rs/anvil-linux-amd64)")
    r = subprocess.run([script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"scripts/install-anvil failed:\n{r.stderr}"
    return r.stdout.strip().splitlines()[-1]


class Anvils:
    """A factory for a test's anvil nodes: anvils(n, mine=5, **kw) starts n nodes (Anvil
    keyword arguments), waits until each answers and mines `mine` blocks on each, so every node
    has a few blocks. close() stops every node it made, even those that failed to start."""

    def __init__(self, tmpdir):
        self.tmpdir = tmpdir
        self.made = []

    def __call__(self, n, mine=5, **kw):
        binary = anvil_binary()
        nodes = []
        for _ in range(n):
            nodes.append(Anvil(binary, self.tmpdir, f"anvil{len(self.made)}", **kw))
            self.made.append(nodes[-1])
        for a in nodes:
            a.wait_ready()
            if mine:
                a.mine(mine)
        return nodes

    def close(self):
        for a in self.made:
            a.stop()
