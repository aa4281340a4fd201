// A real browser for tollgate's integration tests: headless Chromium (Debian's /usr/bin/chromium)
// driven by playwright-core. It loads one URL, once per fresh browser context (an empty browser
// cache and no cookies each time, as a new visitor), and prints ONE JSON line on stdout with what
// each load saw, so a test can assert on the rendered page and on how tollgate answered.
//
//   node browser_driver.mjs URL [--loads N] [--screenshot PATH] [--probe SELECTOR]...
//                               [--timeout S]
//
// Per load: the main document's status, the title, for each --probe selector whether it matched,
// its text and a few computed styles, every <img> (naturalWidth > 0 means it loaded and
// decoded), the page's errors and console messages, and every response the page received with
// its URL, status, resource type, X-Cache, Age and body size. Load i's screenshot goes to PATH
// for the first load and PATH with "-<i+1>" before the extension for the others.
//
// *.localhost names resolve to 127.0.0.1 (Chromium does that by itself; the resolver rule makes
// it explicit), so http://alice.portal.localhost:PORT/ reaches a gateway on loopback.
//
// playwright-core comes from build/tools/node_modules (scripts/install-browser), or from the
// directory named by TG_NODE_MODULES. Exit status: 0 with {"ok": true, ...}; 1 with {"ok":
// false, "error": ...} when a load failed or the hard timeout (default 60 s) passed; 2 for a
// usage error. Times are milliseconds.

import { createRequire } from "node:module";
import { dirname, extname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const T0 = performance.now();
const now = () => Math.round((performance.now() - T0) * 10) / 10;

const CHROMIUM = "/usr/bin/chromium";
const VIEWPORT = { width: 1024, height: 720 };
// Computed styles reported for each probe: enough to tell whether a stylesheet applied.
const STYLES = ["color", "background-color", "font-weight", "font-size", "display",
    "border-top-style"];

// Playwright may log to stdout; stdout carries only our JSON line.
for (const name of ["log", "info", "warn", "debug"]) {
    console[name] = (...args) => console.error(...args);
}

let printed = false;
let browser = null;
let partial = null; // the results so far, reported on a timeout or crash

async function emit(doc, code) {
    if (printed) {
        return;
    }
    printed = true;
    doc.elapsed_ms = now();
    // Close the browser before exiting so no Chromium outlives the driver; a browser that does
    // not close within 5 s is left to playwright's exit handler, which kills it.
    if (browser != null) {
        await Promise.race([browser.close().catch(() => {}),
            new Promise((r) => setTimeout(r, 5000))]);
    }
    process.stdout.write(JSON.stringify(doc) + "\n", () => process.exit(code));
}

function fail(error) {
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    return emit({ ok: false, error: message, partial }, 1);
}

function usage(message) {
    process.stderr.write(`browser_driver: ${message}\n` +
        "usage: browser_driver.mjs URL [--loads N] [--screenshot PATH] [--probe SELECTOR]... " +
        "[--timeout S]\n");
    process.exit(2);
}

function loadPlaywright() {
    const here = dirname(fileURLToPath(import.meta.url));
    const modules = process.env.TG_NODE_MODULES ||
        resolve(here, "../../../build/tools/node_modules");
    // createRequire resolves bare names from the directory above the file (NODE_PATH does not
    // apply to ESM imports), as in ethers_driver.mjs.
    const require = createRequire(join(modules, "..", "resolve-from-here.js"));
    try {
        const pw = require("playwright-core");
        pw.version = require("playwright-core/package.json").version;
        return pw;
    } catch (e) {
        fail(`playwright-core is not installed under ${modules} (run scripts/install-browser): ` +
            e.message);
        return null;
    }
}

function portOf(url) {
    const u = new URL(url);
    return u.port || (u.protocol === "https:" ? "443" : "80");
}

function screenshotPath(base, i) {
    if (!base || i === 0) {
        return base;
    }
    const ext = extname(base);
    return `${base.slice(0, base.length - ext.length)}-${i + 1}${ext}`;
}

// Runs in the page: the DOM facts a test asserts on.
function domFacts({ probes, styles }) {
    const probe = (sel) => {
        const el = document.querySelector(sel);
        if (el == null) {
            return { found: false };
        }
        const cs = getComputedStyle(el);
        const style = {};
        for (const p of styles) {
            style[p] = cs.getPropertyValue(p);
        }
        return { found: true, text: el.textContent.trim(), class: el.className, style };
    };
    const out = { title: document.title, ready_state: document.readyState, probes: {} };
    for (const sel of probes) {
        out.probes[sel] = probe(sel);
    }
    out.images = [...document.images].map((img) => ({
        src: img.currentSrc || img.src, complete: img.complete,
        natural_width: img.naturalWidth, natural_height: img.naturalHeight,
    }));
    out.stylesheets = [...document.styleSheets].map((s) => {
        let rules = null;
        try {
            rules = s.cssRules.length;
        } catch (e) {
            rules = null; // a cross-origin sheet keeps its rules to itself
        }
        return { href: s.href, rules };
    });
    const nav = performance.getEntriesByType("navigation")[0];
    out.timing = nav ? {
        dom_content_loaded: Math.round(nav.domContentLoadedEventEnd),
        load: Math.round(nav.loadEventEnd),
    } : null;
    return out;
}

// Records one response: its body is read after the load (a response event comes with the
// head, before the body has arrived).
function recordResponse(list, resp) {
    const h = resp.headers();
    const entry = {
        url: resp.url(), status: resp.status(), type: resp.request().resourceType(),
        x_cache: h["x-cache"] ?? null, age: h["age"] ?? null,
        content_length: h["content-length"] ?? null, content_type: h["content-type"] ?? null,
        size: null,
    };
    list.push(entry);
    entry.pending = resp.body().then((b) => { entry.size = b.length; }, () => {});
}

async function loadOnce(url, i, opts) {
    const load = { index: i, url, started: now(), responses: [], failed: [], errors: [],
        console: [] };
    partial.loads.push(load);
    // A new context per load: its own empty HTTP cache, so every resource is asked for again
    // and whatever is cached can only be the gateway's.
    const context = await browser.newContext({ viewport: VIEWPORT });
    try {
        const page = await context.newPage();
        page.on("response", (r) => recordResponse(load.responses, r));
        page.on("requestfailed", (r) => load.failed.push({ url: r.url(),
            error: r.failure()?.errorText ?? null }));
        page.on("pageerror", (e) => load.errors.push(String(e)));
        page.on("console", (m) => load.console.push(`${m.type()}: ${m.text()}`));
        const resp = await page.goto(url, { waitUntil: "load", timeout: opts.timeout * 1000 });
        load.status = resp ? resp.status() : null;
        load.load_ms = Math.round((now() - load.started) * 10) / 10;
        Object.assign(load, await page.evaluate(domFacts, { probes: opts.probes,
            styles: STYLES }));
        await Promise.all(load.responses.map((r) => r.pending));
        for (const r of load.responses) {
            delete r.pending;
        }
        const shot = screenshotPath(opts.screenshot, i);
        if (shot) {
            await page.screenshot({ path: shot, fullPage: true });
            load.screenshot = shot;
        }
    } finally {
        await context.close();
    }
    return load;
}

function parseArgs(argv) {
    const opts = { url: null, loads: 1, screenshot: null, probes: [], timeout: 60 };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const value = () => {
            if (i + 1 >= argv.length) {
                usage(`${a} needs a value`);
            }
            return argv[++i];
        };
        if (a === "--loads") {
            opts.loads = Number(value());
        } else if (a === "--screenshot") {
            opts.screenshot = resolve(value());
        } else if (a === "--probe") {
            opts.probes.push(value());
        } else if (a === "--timeout") {
            opts.timeout = Number(value());
        } else if (a.startsWith("--") || opts.url != null) {
            usage(`unexpected argument ${a}`);
        } else {
            opts.url = a;
        }
    }
    if (!opts.url) {
        usage("missing URL");
    }
    try {
        new URL(opts.url);
    } catch (e) {
        usage(`not a URL: ${opts.url}`);
    }
    if (!(Number.isInteger(opts.loads) && opts.loads >= 1 && opts.loads <= 10)) {
        usage("--loads needs a whole number from 1 to 10");
    }
    if (!(opts.timeout > 0)) {
        usage("--timeout needs a positive number of seconds");
    }
    return opts;
}

async function main() {
    const opts = parseArgs(process.argv.slice(2));
    process.on("uncaughtException", (e) => fail(e));
    process.on("unhandledRejection", (e) => fail(e));
    setTimeout(() => fail(`timeout after ${opts.timeout} s`), opts.timeout * 1000);

    const pw = loadPlaywright();
    if (pw == null) {
        return;
    }
    const out = { ok: true, url: opts.url, playwright: pw.version, loads: [] };
    partial = out;
    try {
        const started = now();
        browser = await pw.chromium.launch({
            executablePath: CHROMIUM,
            headless: true,
            // --no-sandbox: tests run as root, where Chromium refuses its sandbox.
            // --disable-dev-shm-usage: a container's small /dev/shm must not crash renderers.
            args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--host-resolver-rules=MAP *.localhost 127.0.0.1",
                // Chromium refuses some ports (6000, 6665...) as unsafe; a test's port is
                // whatever was free.
                `--explicitly-allowed-ports=${portOf(opts.url)}`,
                "--no-first-run", "--no-default-browser-check"],
            timeout: opts.timeout * 1000,
        });
        out.browser = browser.version();
        out.launch_ms = Math.round((now() - started) * 10) / 10;
        for (let i = 0; i < opts.loads; i++) {
            await loadOnce(opts.url, i, opts);
        }
    } catch (e) {
        await fail(e);
        return;
    }
    await emit(out, 0);
}

main();
