"""The portal example (examples/site-portal.yaml, issue 7) in a real browser: headless Chromium
loads a multi-file site through tollgate, from a storage backend that keeps every site under
/v1/sites/<site>/. The page must render (title, text, the stylesheet applied, the script ran, the
image decoded); a second visit, in a fresh browser context with an empty browser cache, must be
answered from tollgate's cache: every response X-Cache: HIT, and the backend asked once per file.

The screenshots are left in build/test-output/<test name>/ for people to look at. The test skips
when the browser cannot be installed here (scripts/install-browser needs npm, and apt-get for
Chromium); with -s it prints its measurements as a `[title] k=v, ...` line.
"""

import struct
import threading
import zlib
from urllib.parse import urlsplit

from tglib import proc
from tglib.browser import output_dir, require_browser, run_browser
from tglib.upstream import response

SITE = "alice"
MAX_AGE = 300

INDEX = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Alice's portal</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/css/style.css">
</head>
<body>
  <h1 id="headline">Welcome to Alice's site</h1>
  <p id="intro">Served by the storage backend, through tollgate's cache.</p>
  <p id="status" class="pending">the script has not run</p>
  <img id="logo" src="/img/logo.png" width="128" height="64" alt="Alice's logo">
  <script src="/js/app.js"></script>
</body>
</html>
"""

STYLE = """body { font-family: sans-serif; margin: 24px; background-color: rgb(250, 248, 240); }
h1 { color: rgb(12, 34, 120); font-size: 32px; }
#status { border-top: 3px solid rgb(0, 128, 0); padding: 8px; }
#status.done { font-weight: 700; background-color: rgb(200, 235, 200); }
img { image-rendering: pixelated; }
"""

APP = """// Proves the script ran: it rewrites #status and marks it done (styled by style.css).
document.addEventListener("DOMContentLoaded", function () {
  var s = document.getElementById("status");
  s.textContent = "app.js ran at " + document.title;
  s.className = "done";
});
"""


def png(width, height):
    """A valid RGB PNG of a diagonal gradient: signature, IHDR, one IDAT, IEND."""

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type None
        for x in range(width):
            rows += bytes((x * 255 // width, y * 255 // height, 160))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
            chunk(b"IDAT", zlib.compress(bytes(rows), 9)) + chunk(b"IEND", b""))


FILES = {
    "/index.html": ("text/html; charset=utf-8", INDEX.encode()),
    "/css/style.css": ("text/css", STYLE.encode()),
    "/js/app.js": ("text/javascript", APP.encode()),
    "/img/logo.png": ("image/png", png(128, 64)),
}


class Storage:
    """The storage backend: GET /v1/sites/<site>/<file> ("/" is index.html), with
    Content-Length and Cache-Control max-age; counts the requests for each target."""

    def __init__(self, sites):
        self.sites = sites
        self.seen = {}
        self._lock = threading.Lock()

    def __call__(self, req, conn):
        with self._lock:
            self.seen[req.target] = self.seen.get(req.target, 0) + 1
        parts = urlsplit(req.target).path.split("/", 4)  # "", "v1", "sites", site, rest
        if len(parts) < 4 or parts[1:3] != ["v1", "sites"] or parts[3] not in self.sites:
            return response(404, b"no such site\n", headers=[("Content-Type", "text/plain")])
        rest = "/" + (parts[4] if len(parts) > 4 else "")
        found = self.sites[parts[3]].get("/index.html" if rest == "/" else rest)
        if req.method not in ("GET", "HEAD") or found is None:
            return response(404, b"no such file\n", headers=[("Content-Type", "text/plain")])
        ctype, body = found
        return response(200, body, headers=[("Content-Type", ctype),
                                            ("Cache-Control", f"max-age={MAX_AGE}")])


def portal(tollgate, storage_url):
    """tollgate configured as examples/site-portal.yaml, with the test's ports and node."""
    route = {
        "name": "portal",
        "match": {"host": "{site}.portal.localhost"},
        "service": "storage",
        "rewrite": {"path": "/v1/sites/{site}{path}"},
        "cache": {"ttl": "60s", "stale_while_revalidate": "30s", "stale_if_error": "10m",
                  "coalesce": True, "query": {"drop": ["utm_*"]}},
    }
    return tollgate(cache={"max_size": "64mb", "max_object": "16mb"},
                    services={"storage": proc.service(storage_url, balance="round_robin")},
                    routes=[route])


def report(title, **numbers):
    print(f"\n[{title}] " + ", ".join(f"{k}={v}" for k, v in numbers.items()))


def by_path(load):
    """{path: response} of one load's responses (data: URLs have no path worth a key)."""
    return {urlsplit(r["url"]).path: r for r in load["responses"]
            if r["url"].startswith("http")}


def test_portal_site_renders_and_a_second_visit_comes_from_the_cache(tollgate, upstreams):
    require_browser()
    storage = Storage({SITE: FILES})
    tg = portal(tollgate, upstreams(storage).url)
    out = output_dir("test_99_cache_browser")
    url = f"http://{SITE}.portal.localhost:{tg.port}/"
    doc = run_browser(url, loads=2, screenshot=f"{out}/portal.png",
                      probes=["h1", "#intro", "#status", "body"], timeout=90)
    first, second = doc["loads"]
    xc1 = {p: r["x_cache"] for p, r in by_path(first).items()}
    xc2 = {p: r["x_cache"] for p, r in by_path(second).items()}
    report("browser", chromium=doc["browser"], playwright=doc["playwright"],
           launch_ms=doc["launch_ms"], load1_ms=first["load_ms"], load2_ms=second["load_ms"],
           driver_ms=doc["elapsed_ms"], first=xc1, second=xc2,
           sizes={p: r["size"] for p, r in by_path(first).items()},
           backend=storage.seen, screenshot=first["screenshot"])

    for load in (first, second):  # the page rendered, both times
        h1, status = load["probes"]["h1"], load["probes"]["#status"]
        assert load["status"] == 200 and load["title"] == "Alice's portal", load
        assert h1["text"] == "Welcome to Alice's site"
        assert h1["style"]["color"] == "rgb(12, 34, 120)", "style.css applied"
        assert h1["style"]["font-size"] == "32px"
        assert status["text"] == "app.js ran at Alice's portal" and status["class"] == "done"
        assert status["style"]["font-weight"] == "700", "the rule for the script's class applied"
        assert status["style"]["border-top-style"] == "solid"
        assert [(i["natural_width"], i["natural_height"]) for i in load["images"]] == [(128, 64)]
        assert load["stylesheets"] and load["stylesheets"][0]["rules"] == 5
        assert not load["errors"] and not load["failed"], (load["errors"], load["failed"])

    paths = {"/", "/css/style.css", "/js/app.js", "/img/logo.png"}
    assert set(xc1) == paths and set(xc2) == paths, (xc1, xc2)
    assert all(r["status"] == 200 for r in first["responses"] + second["responses"])
    assert set(xc1.values()) == {"MISS"}, xc1
    assert set(xc2.values()) == {"HIT"}, "the second visit is answered from tollgate's cache"
    for p, r in by_path(second).items():
        assert r["age"] is not None and int(r["age"]) >= 0, (p, r)
        assert r["size"] == by_path(first)[p]["size"], "the cached copy is the whole file"
    assert storage.seen == {f"/v1/sites/{SITE}{p}": 1 for p in paths}, storage.seen
    with open(first["screenshot"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", "the screenshot is a PNG"
