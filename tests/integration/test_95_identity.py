"""Identity and limits (issue 5), end to end on one instance: API keys from the path, a header,
Authorization: Bearer or the query (and never forwarded), the 401/403 answers, a plan's rate
held to within 2% under ten times its load, the RateLimit header fields, quotas, request cost,
JWTs (RS256, ES256, HS256 and the classic forgeries), keys from SQLite and PostgreSQL tables
that are revoked and added while tollgate runs, and the `tollgate keys` commands.

Each test is bounded in time and prints its measurements with -s (a `[title] k=v, ...` line),
so the figures of the closing note come from the same runs as the assertions.

The JWT keys are made by the openssl CLI in the test's tmp dir and the tokens are signed through
`openssl dgst -sign`, so no Python crypto package is needed.
"""

import base64
import copy
import hashlib
import hmac
import json
import os
import re
import socket
import sqlite3
import subprocess
import threading
import time
from collections import Counter, namedtuple

import pytest

from tglib import Client, build_request, is_json_error, run_cli, service, to_yaml
from tglib import pg as pglib

KEY = "acme-key-0123456789"  # consumer acme, plan pro
OTHER_KEY = "other-key-0123456789"  # consumer other, plan free
UNKNOWN_KEY = "nobody-key-0123456789"


# -- helpers -------------------------------------------------------------------------------------


def report(title, **numbers):
    print(f"\n[{title}] " + ", ".join(f"{k}={v}" for k, v in numbers.items()))


def gate(tollgate, up, routes, **top):
    """A tollgate whose routes all go to one service "up" (up: an Upstream or a URL)."""
    url = up if isinstance(up, str) else up.url
    for r in routes:
        r.setdefault("service", "up")
    return tollgate(services={"up": service(url)}, routes=routes, **top)


def call(tg, path, headers=(), method="GET"):
    """One request on a fresh connection; returns the Response."""
    with Client(tg.addr, timeout=5) as c:
        return c.get(path, headers=list(headers), method=method)


def counter(tg, name, **subset):
    """Sum of a counter's series whose labels include subset; 0 when the family is absent."""
    try:
        return tg.metrics().sum(name, **subset)
    except KeyError:
        return 0


def assert_not_forwarded(req, secret):
    """The secret appears nowhere in what the upstream received: request line, any header name
    or value, the raw head."""
    assert secret not in req.target, f"the credential reached the upstream in the target: {req!r}"
    for name, value in req.headers.pairs:
        assert secret not in value and secret not in name, \
            f"the credential reached the upstream in header {name}: {req!r}"
    assert secret.encode() not in req.head, f"the credential is in the forwarded head: {req.head!r}"


def wait_status(tg, path, headers, want, timeout, interval=0.02):
    """Polls path until it answers want; returns the seconds it took (AssertionError on timeout,
    with the last response)."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout:
        last = call(tg, path, headers)
        if last.status == want:
            return time.monotonic() - t0
        time.sleep(interval)
    raise AssertionError(f"{path} did not answer {want} within {timeout}s; last: {last!r}")


def ratelimit_fields(r):
    """(policy, state) from RateLimit-Policy: "N";q=Q;w=W and RateLimit: "N";r=R;t=T, as
    ({"name", "q", "w"}, {"name", "r", "t"}); AssertionError when either is missing or odd."""
    pol, st = r.header("ratelimit-policy"), r.header("ratelimit")
    assert pol is not None and st is not None, f"no RateLimit header fields: {r!r}"
    m1 = re.fullmatch(r'"([^"]+)";q=(\d+);w=(\d+)', pol)
    m2 = re.fullmatch(r'"([^"]+)";r=(\d+);t=(\d+)', st)
    assert m1, f"RateLimit-Policy is {pol!r}"
    assert m2, f"RateLimit is {st!r}"
    return ({"name": m1[1], "q": int(m1[2]), "w": int(m1[3])},
            {"name": m2[1], "r": int(m2[2]), "t": int(m2[3])})


# -- a paced load (shared with test_96) ----------------------------------------------------------

Shot = namedtuple("Shot", "t latency status target")


class Paced:
    """`rate` requests a second in total for `duration` seconds from `threads` threads, each on
    its own keep-alive connection to targets[k % len(targets)]. Request i of thread k leaves at
    t0 + (i * threads + k) / rate (at once when the thread is behind), so the offered rate does
    not depend on how fast answers come. request(target_index) gives the bytes to send.

    Shots have t (seconds from t0 to the send), latency (seconds), status (-1: the connection
    failed) and target (the index in targets)."""

    def __init__(self, targets, rate, duration, threads, request, timeout=3.0):
        self.targets = targets
        self.rate = rate
        self.duration = duration
        self.threads = threads
        self.request = request
        self.timeout = timeout
        self.shots = []
        self._lock = threading.Lock()
        self._ths = []
        self.t0 = None

    def elapsed(self):
        return time.monotonic() - self.t0

    def sleep_until(self, t):
        left = t - self.elapsed()
        if left > 0:
            time.sleep(left)

    def start(self):
        self.t0 = time.monotonic() + 0.05
        for k in range(self.threads):
            th = threading.Thread(target=self._run, args=(k,), daemon=True)
            th.start()
            self._ths.append(th)
        return self

    def join(self):
        limit = self.t0 + self.duration + self.timeout + 10
        for th in self._ths:
            th.join(max(0.0, limit - time.monotonic()))
        with self._lock:
            return sorted(self.shots)

    def run(self):
        return self.start().join()

    def _run(self, k):
        idx = k % len(self.targets)
        raw = self.request(idx)
        per_thread = int(self.rate * self.duration / self.threads)
        hard_stop = self.t0 + self.duration + self.timeout + 5
        client, mine = None, []
        for i in range(per_thread):
            delay = self.t0 + (i * self.threads + k) / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if time.monotonic() > hard_stop:
                break
            sent = time.monotonic()
            try:
                if client is None:
                    client = Client(self.targets[idx], timeout=self.timeout)
                client.send(raw)
                r = client.response()
                status = r.status
                if r.closes:
                    client.close()
                    client = None
            except Exception:  # noqa: BLE001 - a failed request is an outcome to count
                status = -1
                if client is not None:
                    client.close()
                    client = None
            mine.append(Shot(sent - self.t0, time.monotonic() - sent, status, idx))
        if client is not None:
            client.close()
        with self._lock:
            self.shots.extend(mine)


def statuses(shots):
    """{status: count} of shots."""
    return dict(Counter(s.status for s in shots))


# -- 1. key sources, and the key never goes upstream ---------------------------------------------

PLANS = {"free": {"rate": "5/s", "burst": 3, "quota": "100/d"},
         "pro": {"rate": "1000/s", "burst": 100}}
CONSUMERS = [{"name": "acme", "plan": "pro", "keys": [KEY]},
             {"name": "other", "plan": "free", "keys": [OTHER_KEY]}]


def api_key(*sources, **extra):
    return {"api_key": {"from": list(sources)}, **extra}


def test_key_sources_accepted_and_key_never_reaches_upstream(tollgate, upstream):
    """Each source (path capture, header, bearer, query) authenticates, a wrong key in it is
    401, and what the upstream receives holds the key nowhere: the path segment, the header or
    the query parameter is taken out, the rest of the request is kept."""
    routes = [
        {"name": "path", "match": {"path": "/v1/{key}"}, "auth": api_key("path:key")},
        {"name": "path-rest", "match": {"path": "/v1/{key}/{rest*}"}, "auth": api_key("path:key")},
        {"name": "header", "match": {"path": "/h/"}, "auth": api_key("header:x-api-key")},
        {"name": "bearer", "match": {"path": "/b/"}, "auth": api_key("bearer")},
        {"name": "query", "match": {"path": "/q/"}, "auth": api_key("query:api_key")},
    ]
    tg = gate(tollgate, upstream, routes, plans=PLANS, consumers=CONSUMERS)
    keep = ("X-Keep", "yes")
    # (path with {k} for the key, headers with {k}, target the upstream must see)
    cases = [
        ("/v1/{k}", [], "/v1/"),
        ("/v1/{k}/x/y?z=1", [], "/v1/x/y?z=1"),
        ("/h/x", [("X-Api-Key", "{k}")], "/h/x"),
        ("/b/x?z=1", [("Authorization", "Bearer {k}")], "/b/x?z=1"),
        ("/q/x?api_key={k}", [], "/q/x"),
        ("/q/x?a=1&api_key={k}&b=2", [], "/q/x?a=1&b=2"),
        ("/q/x?a=1&api_key={k}", [], "/q/x?a=1"),
    ]
    seen = []
    for path, headers, want in cases:
        def fill(s, k):
            return s.replace("{k}", k)

        n = len(upstream.requests)
        r = call(tg, fill(path, KEY), [(h, fill(v, KEY)) for h, v in headers] + [keep])
        assert r.status == 200, f"{path}: {r!r}"
        req = upstream.wait_requests(n + 1)[-1]
        assert req.target == want, f"{fill(path, KEY)} reached the upstream as {req.target}"
        assert req.header("x-keep") == "yes", req
        assert_not_forwarded(req, KEY)
        seen.append(req.target)
        # the source is really checked: a wrong key is refused and nothing goes upstream
        r = call(tg, fill(path, UNKNOWN_KEY), [(h, fill(v, UNKNOWN_KEY)) for h, v in headers])
        is_json_error(r, 401, "invalid_key")
        assert len(upstream.requests) == n + 1, upstream.requests[n + 1:]
    report("key sources", cases=len(cases), upstream_targets=seen)


def test_consumers_sharing_a_plan(tollgate, upstream):
    """Several consumers on one plan, some with names of the same length (acme, beta): each
    key authenticates as its own consumer, so each is limited on its own."""
    routes = [{"name": "rpc", "match": {"path": "/v1/{key}"}, "auth": api_key("path:key"),
               "limits": ["plan"]}]
    keys = {"acme": "acme-key-0123456789", "beta": "beta-key-0123456789",
            "gamma": "gamma-key-0123456789"}
    tg = gate(tollgate, upstream, routes, plans={"pair": {"rate": "2/m", "burst": 2}},
              consumers=[{"name": n, "plan": "pair", "keys": [k]} for n, k in keys.items()])
    got = {n: [call(tg, f"/v1/{k}").status for _ in range(3)] for n, k in keys.items()}
    report("consumers sharing a plan", statuses=got)
    assert got == {n: [200, 200, 429] for n in keys}, got


# -- 2. 401 / 403 and WWW-Authenticate -----------------------------------------------------------


def test_missing_unknown_forbidden_and_www_authenticate(tollgate, upstream):
    """401 missing_credential, 401 invalid_key, 403 forbidden (consumer and plan allow lists),
    the Bearer challenge only where bearer is a source, and the failures counted by reason."""
    routes = [
        {"name": "p", "match": {"path": "/p/"},
         "auth": api_key("header:x-api-key", "bearer", consumers=["acme"])},
        {"name": "hdr", "match": {"path": "/hdr/"}, "auth": api_key("header:x-api-key")},
        {"name": "pro", "match": {"path": "/pro/"},
         "auth": api_key("header:x-api-key", plans=["pro"])},
    ]
    tg = gate(tollgate, upstream, routes, plans=PLANS, consumers=CONSUMERS)
    bearer_challenge = 'Bearer realm="tollgate"'

    r = call(tg, "/p/x")
    err = is_json_error(r, 401, "missing_credential")
    assert r.header("www-authenticate") == bearer_challenge, r
    r = call(tg, "/p/x", [("X-Api-Key", UNKNOWN_KEY)])
    is_json_error(r, 401, "invalid_key")
    r = call(tg, "/p/x", [("Authorization", f"Bearer {UNKNOWN_KEY}")])
    is_json_error(r, 401, "invalid_key")
    assert r.header("www-authenticate") == bearer_challenge, r
    r = call(tg, "/p/x", [("X-Api-Key", OTHER_KEY)])  # a valid key, not on the allow list
    is_json_error(r, 403, "forbidden")
    assert r.header("www-authenticate") is None, r
    assert call(tg, "/p/x", [("X-Api-Key", KEY)]).status == 200

    # a route whose only source is a header issues no Bearer challenge
    r = call(tg, "/hdr/x")
    is_json_error(r, 401, "missing_credential")
    assert r.header("www-authenticate") is None, r

    # a plan allow list
    is_json_error(call(tg, "/pro/x", [("X-Api-Key", OTHER_KEY)]), 403, "forbidden")
    assert call(tg, "/pro/x", [("X-Api-Key", KEY)]).status == 200

    assert len(upstream.requests) == 2, upstream.requests
    m = tg.metrics()
    got = {(lab["route"], lab["reason"]): v for lab, v in m.series("tollgate_auth_failures_total")}
    report("401/403", message=err["message"], auth_failures=got)
    assert got.get(("p", "missing")) == 1, got
    assert got.get(("p", "invalid_key")) == 2, got
    assert got.get(("p", "forbidden")) == 1, got
    assert got.get(("hdr", "missing")) == 1, got
    assert got.get(("pro", "forbidden")) == 1, got


# -- 3. single-instance accuracy -----------------------------------------------------------------


def test_single_instance_rate_accuracy(tollgate, upstream):
    """A key with rate 100/s, burst 10 offered about 1000 requests a second for 10 s: what is
    admitted is the burst plus 100 per second of the span of the run, within 2%."""
    tg = gate(tollgate, upstream, [{"name": "rpc", "match": {"path": "/v1/{key}"},
                                    "auth": api_key("path:key"), "limits": ["plan"]}],
              plans={"hundred": {"rate": "100/s", "burst": 10}},
              consumers=[{"name": "acme", "plan": "hundred", "keys": [KEY]}])
    raw = build_request("GET", f"/v1/{KEY}")
    shots = Paced([tg.addr], rate=1000, duration=10.0, threads=8, request=lambda i: raw).run()
    st = statuses(shots)
    assert set(st) <= {200, 429}, st
    span = shots[-1].t - shots[0].t
    admitted = st.get(200, 0)
    allowance = 10 + 100 * span
    err = (admitted - allowance) / allowance
    refused = counter(tg, "tollgate_ratelimited_total", route="rpc", limit="plan:hundred")
    report("single instance accuracy", offered=len(shots),
           offered_rate=round(len(shots) / span, 1), span_s=round(span, 3), admitted=admitted,
           allowance=round(allowance, 1), error_pct=round(100 * err, 2),
           refused_metric=refused, upstream=len(upstream.requests))
    assert len(shots) / span > 900, f"the load offered only {len(shots) / span:.0f}/s"
    assert abs(err) <= 0.02, f"admitted {admitted}, allowance {allowance:.1f} ({100 * err:+.2f}%)"
    assert refused == st.get(429, 0), (refused, st)
    assert len(upstream.requests) == admitted


# -- 4. RateLimit header fields, Retry-After, quotas ---------------------------------------------


def test_ratelimit_headers_retry_after_and_quota(tollgate, upstream):
    routes = [{"name": "r", "match": {"path": "/r/"}, "auth": api_key("header:x-api-key"),
               "limits": ["plan"]}]
    tg = gate(tollgate, upstream, routes,
              plans={"slow": {"rate": "6/m", "burst": 3}, "tiny": {"quota": "5/d"}},
              consumers=[{"name": "acme", "plan": "slow", "keys": [KEY]},
                         {"name": "bob", "plan": "tiny", "keys": [OTHER_KEY]}])
    hk = [("X-Api-Key", KEY)]
    remaining = []
    with Client(tg.addr, timeout=5) as c:
        for _ in range(3):
            r = c.get("/r/x", headers=hk)
            assert r.status == 200, r
            pol, st = ratelimit_fields(r)
            assert pol["name"] == "plan:slow" == st["name"], (pol, st)
            assert pol["q"] > 0 and pol["w"] > 0, pol
            remaining.append(st["r"])
        r = c.get("/r/x", headers=hk)
    is_json_error(r, 429, "rate_limited")
    pol429, st429 = ratelimit_fields(r)
    retry = int(r.header("retry-after"))
    report("ratelimit headers", policy=r.header("ratelimit-policy"),
           remaining_after_each=remaining, on_429=r.header("ratelimit"), retry_after=retry)
    assert remaining == [2, 1, 0], remaining
    assert st429["r"] == 0 and st429["t"] >= 1, st429
    # 6/m: a unit comes back every 10 s
    assert 1 <= retry <= 10, retry

    hb = [("X-Api-Key", OTHER_KEY)]
    with Client(tg.addr, timeout=5) as c:
        got = [c.get("/r/x", headers=hb) for _ in range(6)]
    assert [g.status for g in got] == [200] * 5 + [429], [g.status for g in got]
    quota_left = [ratelimit_fields(g)[1]["r"] for g in got[:5]]
    last = got[-1]
    is_json_error(last, 429, "quota_exceeded")
    qpol, qst = ratelimit_fields(last)
    qretry = int(last.header("retry-after"))
    report("quota", policy=last.header("ratelimit-policy"), state=last.header("ratelimit"),
           remaining_after_each=quota_left, retry_after=qretry)
    assert quota_left == [4, 3, 2, 1, 0], quota_left
    assert qpol["q"] == 5 and qpol["w"] == 86400, qpol
    assert qst["r"] == 0 and qst["t"] >= 1, qst
    assert 1 <= qretry <= 86400, qretry

    assert len(upstream.requests) == 3 + 5
    m = tg.metrics()
    assert m.value("tollgate_ratelimited_total", route="r", limit="plan:slow") == 1
    assert m.value("tollgate_ratelimited_total", route="r", limit="plan:tiny") == 1


# -- 5. cost -------------------------------------------------------------------------------------


def test_route_cost_charges_units(tollgate, upstream):
    """cost: 5 against rate 10/s, burst 10: two requests at once, not three; the same limit
    without a cost admits ten."""
    limit = [{"rate": "10/s", "burst": 10, "by": "consumer"}]
    routes = [{"name": "c5", "match": {"path": "/c5/"}, "auth": api_key("header:x-api-key"),
               "limits": limit, "cost": 5},
              {"name": "c1", "match": {"path": "/c1/"}, "auth": api_key("header:x-api-key"),
               "limits": limit}]
    tg = gate(tollgate, upstream, routes, plans=PLANS, consumers=CONSUMERS)
    hk = [("X-Api-Key", KEY)]
    with Client(tg.addr, timeout=5) as c:
        t0 = time.monotonic()
        five = [c.get("/c5/x", headers=hk) for _ in range(3)]
        one = [c.get("/c1/x", headers=[("X-Api-Key", OTHER_KEY)]) for _ in range(11)]
        took = time.monotonic() - t0
    report("cost", cost5=[r.status for r in five],
           remaining=[r.header("ratelimit") for r in five], cost1_admitted=sum(
               r.status == 200 for r in one), took_ms=round(took * 1000, 1))
    assert took < 0.09, f"the requests took {took:.3f}s: a unit came back meanwhile"
    assert [r.status for r in five] == [200, 200, 429], five
    is_json_error(five[2], 429, "rate_limited")
    assert [ratelimit_fields(r)[1]["r"] for r in five[:2]] == [5, 0], five
    assert [r.status for r in one] == [200] * 10 + [429], [r.status for r in one]


# -- 6. JWT --------------------------------------------------------------------------------------


def b64u(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def openssl(*args, data=None):
    r = subprocess.run(["openssl", *args], input=data, capture_output=True, timeout=60)
    assert r.returncode == 0, f"openssl {' '.join(args)}: {r.stderr.decode()}"
    return r.stdout


def der_ecdsa_to_raw(der):
    """ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } (DER) -> r || s, 32 bytes each."""
    assert der[0] == 0x30, der.hex()
    pos = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    out = b""
    for _ in range(2):
        assert der[pos] == 0x02, der.hex()
        n = der[pos + 1]
        v = der[pos + 2:pos + 2 + n].lstrip(b"\x00")
        assert len(v) <= 32, der.hex()
        out += v.rjust(32, b"\x00")
        pos += 2 + n
    return out


class Signer:
    """An RSA-2048 and a P-256 key pair made by openssl in d; their public keys as one PEM file
    (pem) and as a JWKS with kids (jwks)."""

    def __init__(self, d):
        self.d = str(d)
        self.rsa = os.path.join(self.d, "rsa.key")
        self.ec = os.path.join(self.d, "ec.key")
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out",
                self.rsa)
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
                self.ec)
        self.rsa_pub = openssl("pkey", "-in", self.rsa, "-pubout")
        self.ec_pub = openssl("pkey", "-in", self.ec, "-pubout")
        self.pem = os.path.join(self.d, "keys.pem")
        with open(self.pem, "wb") as f:
            f.write(self.rsa_pub + self.ec_pub)
        n_hex = openssl("rsa", "-in", self.rsa, "-noout", "-modulus").decode().strip()
        assert n_hex.startswith("Modulus="), n_hex
        ec_der = openssl("pkey", "-in", self.ec, "-pubout", "-outform", "DER")
        point = ec_der[-65:]
        assert point[0] == 4, ec_der.hex()
        self.jwks = os.path.join(self.d, "jwks.json")
        with open(self.jwks, "w") as f:
            json.dump({"keys": [
                {"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256",
                 "n": b64u(bytes.fromhex(n_hex[len("Modulus="):])), "e": b64u(b"\x01\x00\x01")},
                {"kty": "EC", "kid": "ec-1", "use": "sig", "alg": "ES256", "crv": "P-256",
                 "x": b64u(point[1:33]), "y": b64u(point[33:])},
            ]}, f)

    def token(self, alg, claims, secret=None, header=None):
        head = {"alg": alg, "typ": "JWT", **(header or {})}
        signing = f"{b64u(json.dumps(head))}.{b64u(json.dumps(claims))}".encode()
        if alg == "RS256":
            sig = openssl("dgst", "-sha256", "-sign", self.rsa, data=signing)
        elif alg == "ES256":
            sig = der_ecdsa_to_raw(openssl("dgst", "-sha256", "-sign", self.ec, data=signing))
        elif alg == "HS256":
            sig = hmac.new(secret, signing, hashlib.sha256).digest()
        else:
            sig = b""
        return f"{signing.decode()}.{b64u(sig)}"


def flip_signature(token):
    head, claims, sig = token.split(".")
    raw = bytearray(b64u_decode(sig))
    raw[len(raw) // 2] ^= 0x01
    return f"{head}.{claims}.{b64u(bytes(raw))}"


ISS, AUD, SECRET = "https://issuer.test", "tollgate-tests", "hs256-shared-secret-for-tests"


def test_jwt_algorithms_and_forgeries(tollgate, upstream, tmp_path):
    """Valid RS256, ES256 and HS256 tokens are accepted (from a PEM file holding both public
    keys, and from a JWKS), their sub is the consumer (its plan names the limit reported), and
    the token never goes upstream. alg none, HS256 keyed with a public key's PEM (the route has
    both keys and a secret), expired, not yet valid, wrong iss or aud, a flipped signature byte
    and a wrong secret are all 401 invalid_token."""
    s = Signer(tmp_path)
    jwt_common = {"issuer": ISS, "audience": AUD, "leeway": "5s"}
    routes = [
        {"name": "jwt", "match": {"path": "/jwt/"}, "limits": ["plan"],
         "auth": {"jwt": {"keys": s.pem, "secret": SECRET,
                          "algorithms": ["RS256", "ES256", "HS256"], **jwt_common}}},
        {"name": "jwks", "match": {"path": "/jwks/"},
         "auth": {"jwt": {"keys": s.jwks, "algorithms": ["RS256", "ES256"], **jwt_common}}},
    ]
    tg = gate(tollgate, upstream, routes, plans=PLANS,
              consumers=[{"name": "alice", "plan": "pro"}, {"name": "bob", "plan": "free"}])
    now = int(time.time())

    def claims(**over):
        c = {"sub": "alice", "iss": ISS, "aud": AUD, "iat": now, "nbf": now - 10,
             "exp": now + 600}
        c.update(over)
        return {k: v for k, v in c.items() if v is not None}

    def send(path, tok):
        n = len(upstream.requests)
        r = call(tg, path, [("Authorization", f"Bearer {tok}")])
        return r, upstream.requests[n:]

    valid = {
        "RS256": s.token("RS256", claims()),
        "ES256": s.token("ES256", claims(sub="bob")),
        "HS256": s.token("HS256", claims(), secret=SECRET.encode()),
    }
    accepted = {}
    for alg, tok in valid.items():
        r, fwd = send("/jwt/x", tok)
        assert r.status == 200, f"valid {alg}: {r!r}"
        pol, _ = ratelimit_fields(r)  # the consumer from sub carries its plan
        accepted[alg] = pol["name"]
        assert len(fwd) == 1
        assert fwd[0].header("authorization") is None, fwd[0]
        assert_not_forwarded(fwd[0], tok)
    assert accepted == {"RS256": "plan:pro", "ES256": "plan:free", "HS256": "plan:pro"}, accepted

    for alg, kid in (("RS256", "rsa-1"), ("ES256", "ec-1")):
        tok = s.token(alg, claims(sub="carol"), header={"kid": kid})
        r, fwd = send("/jwks/x", tok)
        assert r.status == 200 and len(fwd) == 1, f"JWKS {alg}: {r!r}"
        assert fwd[0].header("authorization") is None, fwd[0]
        assert_not_forwarded(fwd[0], tok)

    bad = {
        "alg none": s.token("none", claims()),
        "HS256 keyed with the RSA public key": s.token("HS256", claims(), secret=s.rsa_pub),
        "HS256 keyed with the EC public key": s.token("HS256", claims(), secret=s.ec_pub),
        "expired": s.token("RS256", claims(iat=now - 7200, nbf=now - 7200, exp=now - 3600)),
        "nbf in the future": s.token("ES256", claims(nbf=now + 3600)),
        "wrong issuer": s.token("RS256", claims(iss="https://evil.test")),
        "wrong audience": s.token("HS256", claims(aud="someone-else"), secret=SECRET.encode()),
        "flipped RS256 signature": flip_signature(valid["RS256"]),
        "flipped ES256 signature": flip_signature(valid["ES256"]),
        "flipped HS256 signature": flip_signature(valid["HS256"]),
        "HS256 with a wrong secret": s.token("HS256", claims(), secret=b"not-the-secret"),
    }
    reasons = {}
    for what, tok in bad.items():
        r, fwd = send("/jwt/x", tok)
        assert r.status == 401, f"{what}: {r!r}"
        reasons[what] = is_json_error(r, 401, "invalid_token")["message"]
        assert r.header("www-authenticate") == 'Bearer realm="tollgate"', r
        assert not fwd, f"{what} reached the upstream"
    # the same forgeries against the JWKS route
    for what in ("alg none", "HS256 keyed with the RSA public key", "flipped RS256 signature"):
        r, fwd = send("/jwks/x", bad[what])
        is_json_error(r, 401, "invalid_token")
        assert not fwd
    r, fwd = send("/jwt/x", "")
    assert r.status == 401 and not fwd, r
    m = tg.metrics()
    failures = {lab["reason"]: v for lab, v in m.series("tollgate_auth_failures_total")
                if lab["route"] == "jwt"}
    report("jwt", accepted=accepted, refused=reasons, auth_failures_jwt_route=failures)
    assert failures.get("missing") == 1, failures
    assert sum(failures.values()) == len(bad) + 1, failures


def test_jwt_consumer_allow_lists(tollgate, upstream, tmp_path):
    """The consumer of a JWT is its sub claim, and the route's allow lists apply to it as they
    do to an API key's consumer: a valid token of a consumer (or plan) not on the list is 403."""
    s = Signer(tmp_path)
    jwt = {"keys": s.pem, "algorithms": ["RS256", "ES256"], "issuer": ISS, "audience": AUD}
    routes = [
        {"name": "by-consumer", "match": {"path": "/c/"},
         "auth": {"jwt": jwt, "consumers": ["alice", "bob"]}},
        {"name": "by-plan", "match": {"path": "/p/"}, "auth": {"jwt": jwt, "plans": ["pro"]}},
    ]
    tg = gate(tollgate, upstream, routes, plans=PLANS,
              consumers=[{"name": "alice", "plan": "pro"}, {"name": "bob", "plan": "free"},
                         {"name": "mallory", "plan": "free"}])
    now = int(time.time())

    def tok(sub):
        return s.token("ES256", {"sub": sub, "iss": ISS, "aud": AUD, "iat": now, "exp": now + 600})

    got = {}
    for path, sub in (("/c/x", "alice"), ("/c/x", "mallory"), ("/p/x", "alice"),
                      ("/p/x", "bob"), ("/p/x", "stranger")):
        got[f"{path} {sub}"] = call(tg, path, [("Authorization", f"Bearer {tok(sub)}")]).status
    report("jwt allow lists", statuses=got)
    assert got == {"/c/x alice": 200, "/c/x mallory": 403, "/p/x alice": 200, "/p/x bob": 403,
                   "/p/x stranger": 403}, got
    assert len(upstream.requests) == 2, upstream.requests


# -- 7./8. key stores ----------------------------------------------------------------------------

STORE_ROUTES = [{"name": "rpc", "match": {"path": "/v1/{key}"}, "auth": api_key("path:key"),
                 "limits": ["plan"]}]


def store_gate(tollgate, upstream, url, refresh):
    return gate(tollgate, upstream, [dict(r) for r in STORE_ROUTES], plans=PLANS,
                keys={"store": url, "table": "api_keys", "refresh": refresh})


def sqlite_exec(path, sql, *args):
    db = sqlite3.connect(path, timeout=5)
    try:
        db.execute(sql, args)
        db.commit()
    finally:
        db.close()


def test_sqlite_key_store_revoke_and_add(tollgate, upstream, tmp_path):
    """Keys from a SQLite table re-read every 500 ms: a deleted row stops working and a new row
    (here as a digest) starts working within one period or so."""
    path = str(tmp_path / "keys.db")
    sqlite_exec(path, "CREATE TABLE api_keys (key TEXT, consumer TEXT, plan TEXT)")
    sqlite_exec(path, "INSERT INTO api_keys VALUES (?, ?, ?)", KEY, "acme", "pro")
    tg = store_gate(tollgate, upstream, f"sqlite:{path}", "500ms")
    assert call(tg, f"/v1/{KEY}").status == 200
    m = tg.metrics()
    loaded = {lab["store"]: v for lab, v in m.series("tollgate_keys_loaded")}

    sqlite_exec(path, "DELETE FROM api_keys WHERE consumer = 'acme'")
    revoked = wait_status(tg, f"/v1/{KEY}", (), 401, timeout=3)
    new_key = "fresh-key-0123456789"
    digest = "sha256:" + hashlib.sha256(new_key.encode()).hexdigest()
    sqlite_exec(path, "INSERT INTO api_keys VALUES (?, ?, NULL)", digest, "newco")
    added = wait_status(tg, f"/v1/{new_key}", (), 200, timeout=3)
    report("sqlite key store", refresh="500ms", revoke_s=round(revoked, 3),
           add_s=round(added, 3), keys_loaded=loaded)
    assert loaded and list(loaded.values())[0] == 1, loaded
    assert revoked <= 1.0, f"revoked after {revoked:.3f}s with refresh 500ms"
    assert added <= 1.0, f"added after {added:.3f}s with refresh 500ms"
    is_json_error(call(tg, f"/v1/{KEY}"), 401, "invalid_key")
    assert counter(tg, "tollgate_keystore_errors_total") == 0


def test_key_store_second_key_for_a_consumer(tollgate, upstream, tmp_path):
    """Key rotation: a second row for a consumer that already has a key in the store, added
    while tollgate runs. Both keys work, as the same consumer (they share its limit)."""
    path = str(tmp_path / "keys.db")
    sqlite_exec(path, "CREATE TABLE api_keys (key TEXT, consumer TEXT, plan TEXT)")
    sqlite_exec(path, "INSERT INTO api_keys VALUES (?, ?, ?)", KEY, "acme", "pair")
    tg = gate(tollgate, upstream, [dict(r) for r in STORE_ROUTES],
              plans={"pair": {"rate": "2/m", "burst": 2}},
              keys={"store": f"sqlite:{path}", "table": "api_keys", "refresh": "500ms"})
    assert call(tg, f"/v1/{KEY}").status == 200
    second = "acme-second-key-0123456789"
    sqlite_exec(path, "INSERT INTO api_keys VALUES (?, ?, ?)", second, "acme", "pair")
    t0 = time.monotonic()
    got = None
    while time.monotonic() - t0 < 3:
        assert tg.proc.poll() is None, \
            f"tollgate exited with {tg.proc.returncode} after the second key was added"
        try:
            got = call(tg, f"/v1/{second}").status
        except OSError:
            continue  # the poll above says why
        if got != 401:
            break
        time.sleep(0.05)
    took = time.monotonic() - t0
    third = call(tg, f"/v1/{KEY}")
    report("second key for a consumer", added_s=round(took, 3), second_key=got,
           first_key_again=third.status)
    assert got == 200, got
    # the same consumer: its two units are spent (one by each key), so the limit refuses
    is_json_error(third, 429, "rate_limited")


def test_failed_reload_keeps_the_running_keys(tollgate, upstream, tmp_path):
    """A reload that parses but cannot be applied (a new listener on a port another socket
    holds) must leave the key table alone: the old key keeps working, the new one does not."""
    routes = [{"name": "rpc", "match": {"path": "/v1/{key}"}, "auth": api_key("path:key")}]
    tg = gate(tollgate, upstream, routes, consumers=[{"name": "acme", "keys": [KEY]}])
    assert call(tg, f"/v1/{KEY}").status == 200
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(4)
    try:
        cfg = copy.deepcopy(tg.config)
        cfg["consumers"] = [{"name": "newco", "keys": [OTHER_KEY]}]
        cfg["listen"].append({"addr": f"127.0.0.1:{held.getsockname()[1]}"})
        tg.write_config(to_yaml(cfg) + "\n")
        r = tg.admin("/reload", method="POST")
    finally:
        held.close()
    old, new = call(tg, f"/v1/{KEY}"), call(tg, f"/v1/{OTHER_KEY}")
    report("failed reload", reload=r.status, old_key=old.status, new_key=new.status)
    assert r.status == 400, r
    assert old.status == 200, f"the running key stopped working after a failed reload: {old!r}"
    is_json_error(new, 401, "invalid_key")


@pytest.fixture
def postgres():
    made = []

    def make():
        p = pglib.Postgres()
        made.append(p)
        return p.start()

    yield make
    for p in made:
        p.close()


@pytest.mark.skipif(not pglib.available(), reason="PostgreSQL is not installed")
def test_postgres_key_store_revoke_add_and_outage(tollgate, upstream, postgres):
    """Keys from a PostgreSQL table re-read every second: revocation and addition take effect
    within about a period; while the server is stopped the last good keys stay in use and the
    failed loads are counted; after its restart the loads resume."""
    pg = postgres()
    pg.sql("CREATE TABLE api_keys (key text, consumer text, plan text); "
           f"INSERT INTO api_keys VALUES ('{KEY}', 'acme', 'pro'), "
           f"('{OTHER_KEY}', 'other', 'pro')")
    tg = store_gate(tollgate, upstream, pg.url, "1s")
    assert call(tg, f"/v1/{KEY}").status == 200
    assert call(tg, f"/v1/{OTHER_KEY}").status == 200

    pg.sql("DELETE FROM api_keys WHERE consumer = 'acme'")
    revoked = wait_status(tg, f"/v1/{KEY}", (), 401, timeout=4)
    new_key = "fresh-key-0123456789"
    pg.sql(f"INSERT INTO api_keys VALUES ('{new_key}', 'newco', NULL)")
    added = wait_status(tg, f"/v1/{new_key}", (), 200, timeout=4)

    errors_before = counter(tg, "tollgate_keystore_errors_total")
    pg.stop()
    t_stop = time.monotonic()
    # the last good keys stay in use while the store is down
    kept, revoked_during = Counter(), Counter()  # statuses of a key in the table, of one not
    deadline = t_stop + 8
    while time.monotonic() < deadline:
        kept[call(tg, f"/v1/{OTHER_KEY}").status] += 1
        revoked_during[call(tg, f"/v1/{KEY}").status] += 1
        if counter(tg, "tollgate_keystore_errors_total") > errors_before and \
                time.monotonic() - t_stop > 3:
            break
        time.sleep(0.1)
    errors_down = counter(tg, "tollgate_keystore_errors_total")
    outage_s = time.monotonic() - t_stop
    pg.start()
    pg.sql(f"INSERT INTO api_keys VALUES ('{KEY}', 'acme', 'pro')")
    back = wait_status(tg, f"/v1/{KEY}", (), 200, timeout=6)
    assert call(tg, f"/v1/{new_key}").status == 200
    assert call(tg, f"/v1/{OTHER_KEY}").status == 200
    report("postgres key store", refresh="1s", revoke_s=round(revoked, 3), add_s=round(added, 3),
           outage_s=round(outage_s, 2),
           kept_key_during_outage=dict(kept), revoked_key_during_outage=dict(revoked_during),
           keystore_errors=f"{errors_before}->{errors_down}",
           readd_after_restart_s=round(back, 3))
    assert revoked <= 2.0, f"revoked after {revoked:.3f}s with refresh 1s"
    assert added <= 2.0, f"added after {added:.3f}s with refresh 1s"
    assert errors_down > errors_before, "no key store error counted while PostgreSQL was down"
    # OTHER_KEY (still in the table) keeps working, KEY (deleted before) stays refused
    assert set(kept) == {200}, kept
    assert set(revoked_during) == {401}, revoked_during


# -- 9. tollgate keys ----------------------------------------------------------------------------


def test_keys_cli_hash_and_new(tollgate, upstream):
    """`keys hash` prints sha256:HEX of the key's bytes; `keys new` prints a fresh key and its
    digest, and the digest in a configuration admits that key (and only it)."""
    for key in ("plain-key-at-least-8-chars", "ünïcode-kéy-☃", "k" * 200):
        r = run_cli("keys", "hash", key)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "sha256:" + hashlib.sha256(key.encode()).hexdigest(), r.stdout
    r = run_cli("keys", "new")
    assert r.returncode == 0, r.stderr
    fields = dict(re.findall(r"^(\w+):\s+(\S+)$", r.stdout, re.M))
    key, digest = fields.get("key"), fields.get("digest")
    assert key and key.startswith("tg_") and len(key) >= 20, r.stdout
    assert digest == "sha256:" + hashlib.sha256(key.encode()).hexdigest(), r.stdout
    second = dict(re.findall(r"^(\w+):\s+(\S+)$", run_cli("keys", "new").stdout, re.M))
    assert second["key"] != key

    tg = gate(tollgate, upstream, [dict(r) for r in STORE_ROUTES], plans=PLANS,
              consumers=[{"name": "gen", "plan": "pro", "keys": [digest]}])
    assert call(tg, f"/v1/{key}").status == 200
    is_json_error(call(tg, f"/v1/{second['key']}"), 401, "invalid_key")
    # the digest is not a key
    is_json_error(call(tg, f"/v1/{digest}"), 401, "invalid_key")
    report("keys cli", key_len=len(key), digest=digest[:20] + "...")
