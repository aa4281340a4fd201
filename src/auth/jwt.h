/*
 * JSON Web Token verification (RFC 7519) for route authentication: compact JWS tokens (RFC 7515)
 * signed with RS256, ES256 or HS256 (RFC 7518 §3), checked against a key set and a policy.
 *
 * Threads: a key set is built once (at configuration load or by the JWKS refresher), never
 * changed afterwards, and read by every worker at the same time. tg_jwt_verify() keeps no state
 * between calls and decodes on the stack (about 10 KiB); the only allocation is OpenSSL's
 * context for each signature check. It leaves the calling thread's OpenSSL error queue as it
 * found it, so a TLS error pending on the same worker keeps its reason. tg_jwt_fetch() blocks and
 * belongs on a background thread.
 */
#ifndef TG_JWT_H
#define TG_JWT_H

#include <stddef.h>
#include <stdint.h>

/* Longest compact token accepted, in bytes. */
#define TG_JWT_MAX_TOKEN 8192
/* Most JSON tokens (jsmn's: objects, arrays, keys, values) in the header or in the claims. */
#define TG_JWT_MAX_JSON_TOKENS 128
/* Largest JWKS document tg_jwt_fetch() accepts. */
#define TG_JWT_MAX_JWKS (1024 * 1024)

/* Signature algorithms, as a bit set in tg_jwt_policy.algorithms. */
enum tg_jwt_alg { TG_JWT_RS256 = 1, TG_JWT_ES256 = 2, TG_JWT_HS256 = 4 };

/* A verification key set, immutable once built; shared read-only by worker threads. */
struct tg_jwt_keys;

/*
 * Parses key material. data need not be NUL-terminated. Two forms are recognised:
 *  - PEM (the text contains "-----BEGIN "): every "PUBLIC KEY" block holding an RSA key (2048
 *    bits or more, RFC 7518 §3.3) or an EC P-256 key, and every "CERTIFICATE" block, whose
 *    public key is used (the certificate itself is not checked: it is only a key container).
 *    Other blocks (private keys among them) are skipped. PEM keys have no kid.
 *  - a JWKS document: {"keys":[{"kty":"RSA","kid":..,"n":..,"e":..},
 *    {"kty":"EC","crv":"P-256","x":..,"y":..},{"kty":"oct","k":..}]}. A key whose "use" is
 *    present and not "sig", whose "alg" is present and not the one algorithm its type serves
 *    here (RS256, ES256, HS256), or whose kty/crv is not supported, is skipped, and so is an RSA
 *    key under 2048 bits or an EC point not on the curve.
 * Returns the key set (free with tg_jwt_keys_free), or NULL with a message in err (at most
 * errlen bytes, NUL-terminated) when the text cannot be parsed or holds no usable key.
 */
struct tg_jwt_keys *tg_jwt_keys_parse(const char *data, size_t len, char *err, size_t errlen);

/* A key set holding one HS256 shared secret (the bytes as given, copied; len > 0) and no kid.
 * Returns NULL only when len is 0. */
struct tg_jwt_keys *tg_jwt_keys_secret(const void *secret, size_t len);

/* Number of usable keys in the set. */
size_t tg_jwt_keys_count(const struct tg_jwt_keys *k);

/* Frees a key set; NULL is ignored. No verification may be running on it. */
void tg_jwt_keys_free(struct tg_jwt_keys *k);

struct tg_jwt_policy {
    unsigned algorithms;  /* enum tg_jwt_alg bits allowed */
    const char *issuer;   /* NULL = not checked; else "iss" must equal it */
    const char *audience; /* NULL = not checked; else "aud" (string or array) must contain it */
    int64_t leeway_s;     /* clock skew allowed for exp/nbf/iat (negative counts as 0) */
    const char *consumer_claim; /* claim naming the consumer, e.g. "sub" (string claim); NULL =
                                   none is extracted and consumer is set to "" */
};

enum tg_jwt_result {
    TG_JWT_OK,
    TG_JWT_MALFORMED,
    TG_JWT_ALGORITHM, /* none, not allowed, or no key of that type */
    TG_JWT_SIGNATURE,
    TG_JWT_EXPIRED,
    TG_JWT_NOT_YET_VALID, /* nbf, or iat in the future */
    TG_JWT_ISSUER,
    TG_JWT_AUDIENCE,
    TG_JWT_NO_CONSUMER,
    TG_JWT_UNKNOWN_KID, /* the header's kid names no key of the set: a JWKS refresher may want
                           to fetch the document again (keys rotate) */
};

/* Short reason for logs and metrics labels: "ok", "malformed", "algorithm", "signature",
 * "expired", "not_yet_valid", "issuer", "audience", "no_consumer", "unknown_kid"; "unknown"
 * for any other value. */
const char *tg_jwt_result_name(enum tg_jwt_result r);

/*
 * Verifies a compact JWS token (header.payload.signature, base64url without padding, at most
 * TG_JWT_MAX_TOKEN bytes) at time now_s (seconds since the epoch).
 *
 * Order of the checks: the header (a JSON object; "crit" present is MALFORMED; "alg" must be
 * exactly one of the allowed names, else ALGORITHM; "kid", when present, must be a string),
 * then the signature, then the claims (a JSON object): exp, nbf, iat (optional; when present
 * NumericDates without exponent, else MALFORMED), iss, aud, and the consumer claim.
 *
 * Keys tried: only keys of the algorithm's type (RSA for RS256, EC P-256 for ES256, secrets for
 * HS256); none in the set is ALGORITHM (k may be NULL, an empty set: a JWKS not fetched yet).
 * When the header has a kid and some key of the set has one, only the keys with that kid are
 * tried (none: UNKNOWN_KID); otherwise every key of the type is. No key verifying the signature
 * is SIGNATURE.
 *
 * Duplicate member names among those checked are MALFORMED, so that no other JSON parser can
 * read a different value from the same token. On TG_JWT_OK the consumer claim's value (JSON
 * string, unescaped; \u0000, control characters and an empty value are refused) is copied to
 * consumer, NUL-terminated; a value longer than cap - 1 bytes, or a claim missing or not a
 * string, is TG_JWT_NO_CONSUMER. cap must be at least 1 unless consumer_claim is NULL.
 */
enum tg_jwt_result tg_jwt_verify(const struct tg_jwt_keys *k, const struct tg_jwt_policy *p,
                                 const char *token, size_t len, int64_t now_s, char *consumer,
                                 size_t cap);

/*
 * Fetches a JWKS document with GET over http:// or https:// (blocking; timeout_ms bounds the
 * connection, handshake and transfer together, though not the name resolution, which the
 * system resolver bounds itself). https uses the system CA store, sends SNI and checks the
 * certificate chain and the host name (or IP address). Only status 200 is accepted; redirects
 * are not followed. The body may be delimited by Content-Length, by chunked coding or by the
 * connection's close, and may be at most TG_JWT_MAX_JWKS bytes.
 *
 * Runs on a background thread, never on a worker. The process must ignore SIGPIPE (tollgate
 * does). Returns a malloc'd NUL-terminated body with its length in *len, or NULL with a message
 * in err.
 */
char *tg_jwt_fetch(const char *url, int timeout_ms, size_t *len, char *err, size_t errlen);

#endif
