"""What the Node.js drivers of the tests (ethers_driver.mjs, browser_driver.mjs) share: each
prints one JSON line as its last line, {"ok": true, ...} or {"ok": false, "error": ...}."""

import json


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
