"""A fake JSON-RPC node for failover tests: a threaded HTTP/1.1 server on a free loopback port
(keep-alive, Content-Length or chunked bodies, tglib.upstream underneath) that answers single
calls and batches by rules the test sets, and records every call it received.

    node = RpcNode(proxy_to=anvil.url).start()     # unruled calls go to a real node
    node.on("eth_blockNumber", result="0x10")      # a result (or result=lambda params: ...)
    node.on("eth_call", error={"code": -32000, "message": "header not found"})
    node.on("*", status=503)                       # the whole HTTP answer: a status, no JSON
    node.on("eth_getLogs", delay=0.5, result=[])   # answered after half a second
    node.on("eth_call", result="0x", times=2)      # for the next two calls only
    node.on("eth_chainId", drop="reset")           # no answer: "close", "reset" or "hang"
    node.calls, node.methods(), node.count("eth_call"), node.request_count
    node.close()

Rules: the newest rule naming the method wins, then the newest "*" rule; a call no rule covers
goes to proxy_to when set (all of a request's unruled calls in one request, batch or not), and
is otherwise answered -32601 method not found. A status or drop rule covering any call of a
request decides the whole HTTP answer; the request waits for the longest delay among its
calls. Batch answers keep the request's order unless shuffle=True (JSON-RPC allows any order);
calls without an id (notifications) get no answer.
"""

import json
import random
import threading
import time
import urllib.request

from .upstream import Upstream, response

DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
_UNSET = object()
_REASONS = {200: "OK", 400: "Bad Request", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


class Call:
    """One JSON-RPC call as received: method, id, params, the raw body of the HTTP request it
    came in, its place in that request (batch is None for a single call, else the batch
    size), the connection it arrived on and when."""

    def __init__(self, doc, raw, batch, index, conn_id):
        self.doc = doc
        self.method = doc.get("method") if isinstance(doc, dict) else None
        self.id = doc.get("id") if isinstance(doc, dict) else None
        self.params = doc.get("params") if isinstance(doc, dict) else None
        self.notification = isinstance(doc, dict) and "id" not in doc
        self.raw = raw
        self.batch = batch
        self.index = index
        self.conn_id = conn_id
        self.time = time.monotonic()

    def __repr__(self):
        where = "single" if self.batch is None else f"{self.index + 1}/{self.batch}"
        return f"<Call {self.method} id={self.id!r} params={self.params!r} {where}>"


class Rule:
    def __init__(self, method, result, error, status, body, headers, delay, drop, times):
        if drop not in (None, "close", "reset", "hang"):
            raise ValueError(f"drop must be close, reset or hang, not {drop!r}")
        self.method = method
        self.result = result
        self.error = error
        self.status = status
        self.body = body
        self.headers = headers
        self.delay = delay
        self.drop = drop
        self.times = times  # None: forever
        self.used = 0

    @property
    def whole_request(self):
        return self.status is not None or self.drop is not None

    @property
    def answers(self):
        return self.result is not _UNSET or self.error is not None

    def answer(self, call):
        if self.error is not None:
            return {"jsonrpc": "2.0", "id": call.id, "error": self.error}
        value = self.result(call.params) if callable(self.result) else self.result
        return {"jsonrpc": "2.0", "id": call.id, "result": value}


class RpcNode:
    def __init__(self, proxy_to=None, shuffle=False, port=0, seed=1):
        self.proxy_to = proxy_to
        self.shuffle = shuffle
        self.calls = []
        self.bad = []  # raw bodies that were not JSON
        self.errors = []  # proxy failures
        self._rules = []
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._up = Upstream(self._handle, port=port)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self):
        self._up.start()
        return self

    def close(self):
        self._up.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    @property
    def port(self):
        return self._up.port

    @property
    def addr(self):
        return ("127.0.0.1", self._up.port)

    @property
    def url(self):
        return self._up.url

    # -- rules ----------------------------------------------------------------------------

    def on(self, method, result=_UNSET, error=None, status=None, body=b"", headers=(),
           delay=0.0, drop=None, times=None):
        """Adds a rule for `method` ("*": any method); newer rules win. result or error answers
        the call (result may be a function of the params); status answers the whole HTTP
        request with that status and `body` (no JSON unless body is JSON); drop closes the
        connection instead ("close": FIN, "reset": RST, "hang": never answers); delay (s)
        holds the answer back; times limits how many calls the rule covers. A rule with only a
        delay delays the call and lets the next rule (or the proxy) answer it."""
        rule = Rule(method, result, error, status, body, list(headers), delay, drop, times)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self):
        """Drops every rule and every record."""
        with self._lock:
            self._rules.clear()
            self.calls.clear()
            self.bad.clear()

    def _rules_for(self, call):
        """The rules that cover call, the one that answers last; counts their use."""
        with self._lock:
            named = [r for r in reversed(self._rules) if r.method == call.method]
            star = [r for r in reversed(self._rules) if r.method == "*"]
            chosen = []
            for r in named + star:
                if r.times is not None and r.used >= r.times:
                    continue
                r.used += 1
                chosen.append(r)
                if r.answers or r.whole_request:
                    break
            return chosen

    # -- observation ----------------------------------------------------------------------

    def methods(self):
        """The method of every call received, in order of arrival."""
        with self._lock:
            return [c.method for c in self.calls]

    def count(self, method=None):
        with self._lock:
            return sum(1 for c in self.calls if method is None or c.method == method)

    @property
    def request_count(self):
        """HTTP requests received (a batch is one)."""
        with self._up._cv:
            return len(self._up.requests)

    @property
    def http_requests(self):
        """The HTTP requests received (tglib.upstream.Request: headers, body, conn_id)."""
        with self._up._cv:
            return list(self._up.requests)

    # -- serving --------------------------------------------------------------------------

    def _handle(self, req, conn):
        raw = req.body
        try:
            doc = json.loads(raw)
        except ValueError:
            with self._lock:
                self.bad.append(raw)
            return self._json({"jsonrpc": "2.0", "id": None,
                               "error": {"code": -32700, "message": "parse error"}})
        is_batch = isinstance(doc, list)
        if is_batch and not doc:
            return self._json({"jsonrpc": "2.0", "id": None,
                               "error": {"code": -32600, "message": "empty batch"}})
        items = doc if is_batch else [doc]
        calls = [Call(d, raw, len(items) if is_batch else None, i, req.conn_id)
                 for i, d in enumerate(items)]
        with self._lock:
            self.calls.extend(calls)
        plans = [self._rules_for(c) for c in calls]

        delay = max((r.delay for p in plans for r in p), default=0.0)
        if delay:
            time.sleep(delay)
        whole = next((p[-1] for p in plans if p and p[-1].whole_request), None)
        if whole is not None:
            return self._whole(whole, conn)
        return self._answer(calls, plans, is_batch)

    def _whole(self, rule, conn):
        if rule.drop == "close":
            conn.close()
        elif rule.drop == "reset":
            conn.reset()
        elif rule.drop == "hang":
            conn.hang(limit=30)
        else:
            return response(rule.status, rule.body, headers=rule.headers,
                            reason=_REASONS.get(rule.status, "X"))
        return None

    def _answer(self, calls, plans, is_batch):
        answers = [None] * len(calls)
        forward = []
        for i, (c, plan) in enumerate(zip(calls, plans)):
            if not isinstance(c.doc, dict) or not isinstance(c.method, str):
                answers[i] = {"jsonrpc": "2.0", "id": c.id,
                              "error": {"code": -32600, "message": "invalid request"}}
            elif plan and plan[-1].answers:
                answers[i] = plan[-1].answer(c)
            elif self.proxy_to:
                forward.append(i)
            else:
                answers[i] = {"jsonrpc": "2.0", "id": c.id, "error": {
                    "code": -32601, "message": f"the method {c.method} does not exist"}}
        if forward:
            proxied = self._proxy([calls[i].doc for i in forward], is_batch)
            if proxied is None:
                return response(502, b"proxy failed", reason="Bad Gateway")
            for i in forward:
                answers[i] = proxied.get(json.dumps(calls[i].id))
        out = [a for a, c in zip(answers, calls) if a is not None and not c.notification]
        if self.shuffle and len(out) > 1:
            order = list(out)
            self._random.shuffle(out)
            if out == order:
                out = out[1:] + out[:1]
        if not is_batch:
            return self._json(out[0]) if out else response(200, b"")
        return self._json(out) if out else response(200, b"")

    def _proxy(self, docs, is_batch):
        """Sends docs to proxy_to as one request; answers by id (as JSON text), or None."""
        body = json.dumps(docs if is_batch or len(docs) > 1 else docs[0]).encode()
        req = urllib.request.Request(self.proxy_to, body, {"Content-Type": "application/json"})
        try:
            with DIRECT.open(req, timeout=10) as r:
                got = json.loads(r.read() or b"null")
        except (OSError, ValueError) as e:  # HTTPError is an OSError too
            self.errors.append(repr(e))
            return None
        got = got if isinstance(got, list) else [got]
        return {json.dumps(a.get("id")): a for a in got if isinstance(a, dict)}

    @staticmethod
    def _json(doc):
        return response(200, json.dumps(doc).encode(),
                        headers=[("Content-Type", "application/json")])
