"""What the Node.js drivers of the tests (ethers_driver.mjs, browser_driver.mjs) share: the
tools they need are found (or installed) once per test session, and each driver prints one JSON
line as its last line, {"ok": true, ...} or {"ok": false, "error": ...}."""

import json

import pytest


class Tools:
    """Whether a driver's tools can run, found out once by check(), which installs them when the
    machine can and returns (ok, reason, install_failed)."""

    def __init__(self, check):
        self._check = check
        self._found = None

    def available(self):
        if self._found is None:
            self._found = self._check()
        return self._found[0]

    def require(self):
        """Skips the calling test when the tools cannot be had here (no node, npm, apt-get);
        fails it when an install was tried and failed (a bug to see, not a machine without
        tools)."""
        if self.available():
            return
        _, reason, install_failed = self._found
        if install_failed:
            pytest.fail(reason)
        pytest.skip(reason)


def parse_last_line(stdout, stderr, returncode, check, failed, what):
    """The driver's last JSON line as a dict. Raises failed(message[, doc]) when it printed
    none, or (with check) when it failed; what names the driver in the message."""
    lines = [x for x in stdout.splitlines() if x.strip()]
    doc = None
    if lines:
        try:
            doc = json.loads(lines[-1])
        except ValueError:
            doc = None
    if doc is None:
        raise failed(f"{what} printed no JSON (exit {returncode}):\n"
                     f"stdout: {stdout[-2000:]}\nstderr: {stderr[-4000:]}")
    if check and (returncode != 0 or not doc.get("ok")):
        raise failed(f"{what} failed (exit {returncode}): {doc.get('error')}\n"
                     f"stderr: {stderr[-4000:]}", doc)
    return doc
