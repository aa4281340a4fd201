// A real Ethereum client (ethers v6) for tollgate's JSON-RPC integration tests. It runs one
// scenario against a URL (a node, or tollgate in front of nodes) and prints ONE JSON line of
// results on stdout, so a test can compare a run through the gateway with a run at the node.
//
//   node ethers_driver.mjs http URL [--timeout S]
//   node ethers_driver.mjs ws URL SECONDS [--timeout S]
//   node ethers_driver.mjs ws-reconnect URL SECONDS [--timeout S]
//
// ethers comes from build/tools/node_modules (scripts/install-ethers), or from the directory
// named by TG_NODE_MODULES. Every scenario ends by the hard timeout (default 60 s, or SECONDS
// + 30 when that is longer). Exit status: 0 with {"ok": true, ...}; 1 with {"ok": false,
// "error": ...} when the scenario failed or timed out; 2 for a usage error. Times ("t") are
// milliseconds since the driver started; "t0_epoch_ms" is that start on the wall clock.
//
// The http scenario needs a node that mines transactions (anvil's automine or --block-time)
// and funds the well-known dev account 0 (anvil's default mnemonic).

import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const T0 = performance.now();
const T0_EPOCH_MS = Date.now();
const now = () => Math.round((performance.now() - T0) * 10) / 10;

const DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const RECIPIENT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"; // dev account 1
const RECONNECT_PAUSE_MS = 200;

// A contract assembled by hand (no compiler needed), with three functions:
//   answer() view returns (uint256)          -> 42
//   double(uint256 x) view returns (uint256) -> 2x
//   refuse() view                            -> reverts with Error("tollgate: refused")
// Any other selector reverts with no data. Runtime code, by offset:
//   00 PUSH1 0 CALLDATALOAD PUSH1 0xe0 SHR          selector
//   06 DUP1 PUSH4 85bb7d69 EQ PUSH1 0x28 JUMPI      answer()
//   10 DUP1 PUSH4 62c69b80 EQ PUSH1 0x42 JUMPI      refuse()
//   1a DUP1 PUSH4 eee97206 EQ PUSH1 0x33 JUMPI      double(uint256)
//   24 PUSH1 0 DUP1 REVERT
//   28 JUMPDEST PUSH1 42 PUSH1 0 MSTORE PUSH1 32 PUSH1 0 RETURN
//   33 JUMPDEST PUSH1 4 CALLDATALOAD PUSH1 2 MUL PUSH1 0 MSTORE PUSH1 32 PUSH1 0 RETURN
//   42 JUMPDEST mem[0..4] = 08c379a0, mem[4] = 32, mem[36] = 17, mem[68] = "tollgate: refused"
//      PUSH1 100 PUSH1 0 REVERT
// The 12-byte constructor in front copies the 154 runtime bytes to memory and returns them.
const ABI = [
    "function answer() view returns (uint256)",
    "function double(uint256 x) view returns (uint256)",
    "function refuse() view",
];
const BYTECODE =
    "0x609a80600c6000396000f300" +
    "60003560e01c806385bb7d6914602857806362c69b80146042578063eee9720614603357600080fd" +
    "5b602a60005260206000f3" +
    "5b60043560020260005260206000f3" +
    "5b7f08c379a000000000000000000000000000000000000000000000000000000000600052" +
    "602060045260116024527f746f6c6c676174653a207265667573656400000000000000000000000000" +
    "000060445260646000fd";
const REFUSAL = "tollgate: refused";

// ethers (and the ws module it uses) log to stdout in some failure paths, e.g. "failed to
// detect network"; stdout carries only our JSON line.
for (const name of ["log", "info", "warn", "debug"]) {
    console[name] = (...args) => console.error(...args);
}

let printed = false;
const warnings = [];
let partial = null; // the current scenario's results, reported on a timeout or crash

function emit(doc, code) {
    if (printed) {
        return;
    }
    printed = true;
    doc.elapsed_ms = now();
    doc.t0_epoch_ms = T0_EPOCH_MS;
    if (warnings.length) {
        doc.warnings = warnings.slice(0, 20);
    }
    const text = JSON.stringify(doc, (k, v) => (typeof v === "bigint" ? v.toString() : v));
    process.stdout.write(text + "\n", () => process.exit(code));
}

function fail(error, extra = {}) {
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    emit({ ok: false, error: message, partial, ...extra }, 1);
}

function usage(message) {
    process.stderr.write(`ethers_driver: ${message}\n` +
        "usage: ethers_driver.mjs (http URL | ws URL SECONDS | ws-reconnect URL SECONDS) " +
        "[--timeout S]\n");
    process.exit(2);
}

function loadEthers() {
    const here = dirname(fileURLToPath(import.meta.url));
    const modules = process.env.TG_NODE_MODULES ||
        resolve(here, "../../../build/tools/node_modules");
    // createRequire resolves bare names from the directory above the file, so a file in the
    // node_modules parent finds node_modules/ethers (NODE_PATH does not apply to ESM imports).
    const require = createRequire(join(modules, "..", "resolve-from-here.js"));
    try {
        return require("ethers");
    } catch (e) {
        fail(`ethers is not installed under ${modules} (run scripts/install-ethers): ${e.message}`);
        return null;
    }
}

// Records every JSON-RPC payload a provider sends, as one entry per HTTP request (or
// WebSocket message): a method name for a single call, an array of names for a batch.
function recordPayloads(provider) {
    const sent = [];
    provider.on("debug", (ev) => {
        if (ev.action === "sendRpcPayload") {
            const p = ev.payload;
            sent.push(Array.isArray(p) ? p.map((x) => x.method) : p.method);
        }
    });
    return sent;
}

async function timed(out, name, fn) {
    const start = now();
    const value = await fn();
    out.timings_ms[name] = Math.round((now() - start) * 10) / 10;
    return value;
}

function receiptInfo(resp, rcpt) {
    return {
        hash: resp.hash, nonce: resp.nonce, from: resp.from, to: resp.to, value: resp.value,
        block: rcpt.blockNumber, block_hash: rcpt.blockHash, status: rcpt.status,
        gas_used: rcpt.gasUsed, contract: rcpt.contractAddress,
    };
}

function blockInfo(b) {
    if (b == null) {
        return null;
    }
    return { number: b.number, hash: b.hash, parent_hash: b.parentHash, timestamp: b.timestamp,
        transactions: b.transactions.length };
}

function revertInfo(e) {
    return {
        caught: true, code: e.code, reason: e.reason ?? null, data: e.data ?? null,
        revert: e.revert ? { name: e.revert.name, args: [...e.revert.args] } : null,
        short_message: e.shortMessage ?? null,
    };
}

// The 50 calls of the batch, all distinct: results can be told apart, and the batch keeps
// its 50 entries even where ethers' perform cache (which merges identical calls) is on.
function batchCalls(ethers, provider, contract, devAddress) {
    const calls = [];
    for (let i = 0; i < 50; i++) {
        const k = i % 5;
        if (k <= 1) {
            const address = i === 0 ? devAddress : i === 1 ? RECIPIENT
                : ethers.getAddress("0x" + (0x1000 + i).toString(16).padStart(40, "0"));
            calls.push({ kind: "getBalance", arg: address,
                run: () => provider.getBalance(address) });
        } else if (k <= 3) {
            calls.push({ kind: "double", arg: i, run: () => contract.double(i) });
        } else {
            const n = (i - 4) / 5; // blocks 0..9; those past the head answer null
            calls.push({ kind: "getBlock", arg: n,
                run: async () => blockInfo(await provider.getBlock(n)) });
        }
    }
    return calls;
}

async function scenarioHttp(ethers, url, out) {
    const { JsonRpcProvider, Wallet, ContractFactory, Contract } = ethers;
    // staticNetwork: true asks eth_chainId once and trusts it after; without it ethers asks
    // again before many calls, and (once started) batches that eth_chainId with them. The
    // first call starts the provider, which sends that eth_chainId (getNetwork() first would
    // send a second one). batchMaxCount 1 sends each call alone as a plain object, at once
    // (no 10 ms stall). cacheTimeout -1: no perform cache, so every call reaches the wire;
    // with the default 250 ms a second transaction sent soon after the first reuses the
    // cached eth_getTransactionCount and fails with "nonce too low". pollingInterval 200:
    // wait() looks for a receipt every 200 ms, not every 4 s, on a chain that mines later.
    const single = new JsonRpcProvider(url, undefined,
        { staticNetwork: true, batchMaxCount: 1, cacheTimeout: -1, pollingInterval: 200 });
    out.sent = recordPayloads(single);
    try {
        out.block_number = await timed(out, "block_number", () => single.getBlockNumber());
        const network = await single.getNetwork();
        out.chain_id = network.chainId;
        const wallet = new Wallet(DEV_KEY, single);
        out.address = wallet.address;
        out.balance = await timed(out, "get_balance", () => single.getBalance(wallet.address));

        const factory = new ContractFactory(ABI, BYTECODE, wallet);
        out.deploy = await timed(out, "deploy", async () => {
            const resp = await wallet.sendTransaction(await factory.getDeployTransaction());
            return receiptInfo(resp, await resp.wait(1));
        });
        const contract = new Contract(out.deploy.contract, ABI, single);
        out.call = await timed(out, "call", async () => ({
            answer: await contract.answer(), double_21: await contract.double(21) }));
        out.revert = await timed(out, "revert", async () => {
            try {
                await contract.refuse();
                return { caught: false };
            } catch (e) {
                return revertInfo(e);
            }
        });
        out.tx = await timed(out, "tx", async () => {
            const resp = await wallet.sendTransaction({ to: RECIPIENT, value: 1n });
            const rcpt = await resp.wait(1);
            return { ...receiptInfo(resp, rcpt), confirmations: await rcpt.confirmations() };
        });
        out.recipient_balance = await single.getBalance(RECIPIENT);
        out.head = await single.getBlockNumber();
        out.batch = await timed(out, "batch", () => runBatch(ethers, url, network, out));
    } finally {
        single.destroy();
    }
}

async function runBatch(ethers, url, network, out) {
    const { JsonRpcProvider, Contract } = ethers;
    // The network is given, so this provider sends nothing but the 50 calls; all are made in
    // the same tick, inside the 10 ms batch stall, so they leave as one JSON-RPC batch.
    const provider = new JsonRpcProvider(url, network.chainId,
        { staticNetwork: true, batchMaxCount: 50, batchStallTime: 10, cacheTimeout: -1 });
    const sent = recordPayloads(provider);
    try {
        const contract = new Contract(out.deploy.contract, ABI, provider);
        const calls = batchCalls(ethers, provider, contract, out.address);
        const settled = await Promise.allSettled(calls.map((c) => c.run()));
        const results = settled.map((s, i) => ({
            kind: calls[i].kind, arg: calls[i].arg,
            ...(s.status === "fulfilled" ? { value: s.value }
                : { error: `${s.reason?.code ?? ""} ${s.reason?.shortMessage ?? s.reason}` }),
        }));
        return {
            count: results.length, errors: results.filter((r) => "error" in r).length,
            requests: sent.length, sizes: sent.map((p) => (Array.isArray(p) ? p.length : 1)),
            results,
        };
    } finally {
        provider.destroy();
    }
}

// One WebSocket connection: subscribes to new blocks until the deadline or until the socket
// closes. Resolves with what it saw; close stays null when the socket was open to the end.
// ethers v6 itself does nothing when the socket closes, whatever the code (1000, 1006, 1012):
// no reconnect, no error event, and calls made after that never settle. So the close is
// watched on the socket, and a reconnect is a new provider.
function watchBlocks(ethers, url, deadline) {
    return new Promise((resolveConn) => {
        const conn = { started: now(), opened: null, blocks: [], close: null, error: null };
        let done = false;
        let provider = null;
        let timer = null;
        const finish = () => {
            if (done) {
                return;
            }
            done = true;
            clearTimeout(timer);
            try {
                provider.destroy(); // closes the socket if it is still open
            } catch (e) {
                warnings.push(`destroy: ${e.message}`);
            }
            resolveConn(conn);
        };
        provider = new ethers.WebSocketProvider(url);
        conn.sent = recordPayloads(provider);
        const ws = provider.websocket;
        // ethers sets no close or error handler of its own (v6): without an "error" listener
        // the ws module throws a refused connection as an uncaught exception.
        ws.on("open", () => { conn.opened = now(); });
        ws.on("error", (e) => { conn.error = e.message || String(e); });
        ws.on("close", (code, reason) => {
            if (!done) {
                conn.close = { code, reason: reason.toString(), t: now() };
                finish();
            }
        });
        provider.on("block", (n) => { conn.blocks.push({ number: n, t: now() }); })
            .catch((e) => { conn.error = conn.error ?? e.message; });
        timer = setTimeout(finish, Math.max(0, deadline - now()));
    });
}

async function scenarioWs(ethers, url, seconds, reconnect, out) {
    const deadline = now() + seconds * 1000;
    out.connections = [];
    while (now() < deadline) {
        const conn = await watchBlocks(ethers, url, deadline);
        out.connections.push(conn);
        if (!reconnect || conn.close == null) {
            break;
        }
        await new Promise((r) => setTimeout(r, Math.min(RECONNECT_PAUSE_MS,
            Math.max(0, deadline - now()))));
    }
    out.blocks = out.connections.flatMap((c, i) => c.blocks.map((b) => ({ ...b, conn: i })));
    // Closes of sockets that were open; a connection refused (opened null) has a close too.
    out.closes = out.connections.filter((c) => c.opened != null && c.close).map((c) => c.close);
    out.close = out.connections[0]?.close ?? null;
}

function parseArgs(argv) {
    const args = [];
    let timeout = null;
    for (let i = 0; i < argv.length; i++) {
        if (argv[i] === "--timeout") {
            timeout = Number(argv[++i]);
            if (!(timeout > 0)) {
                usage("--timeout needs a positive number of seconds");
            }
        } else {
            args.push(argv[i]);
        }
    }
    const [scenario, url, secondsArg] = args;
    if (!["http", "ws", "ws-reconnect"].includes(scenario) || !url) {
        usage("unknown scenario or missing URL");
    }
    let seconds = 0;
    if (scenario !== "http") {
        seconds = Number(secondsArg);
        if (!(seconds > 0)) {
            usage(`${scenario} needs SECONDS`);
        }
    }
    return { scenario, url, seconds, timeout: timeout ?? Math.max(60, seconds + 30) };
}

async function main() {
    const { scenario, url, seconds, timeout } = parseArgs(process.argv.slice(2));
    process.on("uncaughtException", (e) => fail(e));
    // Some of ethers' own promises reject with nobody waiting, e.g. the eth_unsubscribe it
    // sends when a provider whose socket closed is destroyed: noted, not fatal.
    process.on("unhandledRejection", (e) => { warnings.push(String(e?.shortMessage ?? e)); });
    setTimeout(() => fail(`timeout after ${timeout} s`), timeout * 1000);

    const ethers = loadEthers();
    if (ethers == null) {
        return;
    }
    const out = { ok: true, scenario, url, ethers: ethers.version, timings_ms: {} };
    partial = out;
    try {
        if (scenario === "http") {
            await scenarioHttp(ethers, url, out);
        } else {
            out.seconds = seconds;
            await scenarioWs(ethers, url, seconds, scenario === "ws-reconnect", out);
        }
    } catch (e) {
        fail(e, { code: e?.code ?? null });
        return;
    }
    emit(out, 0);
}

main();
