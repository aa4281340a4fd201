"""A real browser for the integration tests: runs tglib/browser_driver.mjs (headless Chromium,
Debian's package, driven by playwright-core on node; both installed by scripts/install-browser)
and returns its JSON results.

    require_browser()                              # skips the test when it cannot be installed
    doc = run_browser(url, loads=2, screenshot=path, probes=["h1", "#status"])
    doc["loads"][0]["title"], doc["loads"][1]["responses"]   # see the driver for the fields
    out = output_dir("test_name")                  # build/test-output/test_name/, emptied

A run that fails (the driver's "ok" is false, or it printed nothing) raises BrowserFailed,
unless check=False.
"""

import json
import os
import shutil
import subprocess

from .jsdriver import Tools, parse_last_line

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "browser_driver.mjs")
MODULES = os.path.join(ROOT, "build", "tools", "node_modules")
INSTALL = os.path.join(ROOT, "scripts", "install-browser")
CHROMIUM = "/usr/bin/chromium"
OUTPUT = os.path.join(ROOT, "build", "test-output")
INSTALL_TIMEOUT = 900  # apt-get fetches Chromium and its libraries: minutes on a slow mirror


class BrowserFailed(AssertionError):
    """The driver failed; .doc holds its JSON line (None when it printed none)."""

    def __init__(self, message, doc=None):
        super().__init__(message)
        self.doc = doc


def _installed():
    if not os.access(CHROMIUM, os.X_OK):
        return False
    try:
        with open(os.path.join(MODULES, "playwright-core", "package.json")) as f:
            return json.load(f).get("version", "").startswith("1.")
    except (OSError, ValueError):
        return False


def _cannot_install():
    """Why scripts/install-browser cannot work on this machine ("" when it can try)."""
    if shutil.which("npm") is None:
        return "npm is not installed: cannot install playwright-core (scripts/install-browser)"
    if not os.access(CHROMIUM, os.X_OK):
        if shutil.which("apt-get") is None:
            return f"{CHROMIUM} is missing and there is no apt-get to install chromium"
        if os.geteuid() != 0 and shutil.which("sudo") is None:
            return f"{CHROMIUM} is missing and installing it needs root or sudo"
    return ""


def _check():
    if shutil.which("node") is None:
        return False, "node is not installed: cannot run playwright-core", False
    if _installed():
        return True, "", False
    why = _cannot_install()
    if why:
        return False, why, False
    try:
        r = subprocess.run([INSTALL], capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return False, f"scripts/install-browser took over {INSTALL_TIMEOUT} s", True
    if r.returncode != 0 or not _installed():
        return False, f"scripts/install-browser failed:\n{r.stderr[-4000:]}", True
    return True, "", False


_tools = Tools(_check)


def require_browser():
    """Skips the calling test when the browser cannot be installed here; fails it when the install
    was tried and failed."""
    _tools.require()


def output_dir(name):
    """build/test-output/NAME/, emptied: where a test leaves files for people to look at after
    the run (pytest's tmp_path is removed after a few runs)."""
    path = os.path.join(OUTPUT, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def _parse(stdout, stderr, returncode, check):
    return parse_last_line(stdout, stderr, returncode, check, BrowserFailed, "browser driver")


def run_browser(url, loads=1, screenshot=None, probes=(), timeout=60, check=True):
    """Loads url `loads` times, each in a fresh browser context, and returns the driver's JSON
    line as a dict. screenshot is the first load's PNG path (later loads get -2, -3... before
    the extension); probes are CSS selectors whose text and computed style are reported.
    timeout bounds the driver (it reports a timeout as a failure); the process is killed 15 s
    after that."""
    require_browser()
    cmd = [shutil.which("node") or "node", DRIVER, url, "--loads", str(loads),
           "--timeout", str(timeout)]
    if screenshot:
        cmd += ["--screenshot", screenshot]
    for p in probes:
        cmd += ["--probe", p]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 15,
                       stdin=subprocess.DEVNULL)
    return _parse(r.stdout, r.stderr, r.returncode, check)
