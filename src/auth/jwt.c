/*
 * JWT verification: base64url and JSON decoding of compact JWS tokens, key sets from PEM or
 * JWKS, signature checks with OpenSSL 3's EVP interface and claim checks. The JWKS fetch of the
 * background refresher is in jwks_fetch.c.
 *
 * The verify path works on the stack: one buffer of decoded bytes (a token is at most 8 KiB,
 * so its decoded parts fit in 6 KiB) and one array of jsmn tokens reused for the header and the
 * claims. jsmn is built strict (numbers, booleans and null only as values, no unquoted keys) and
 * with parent links, which tg__json_parse() uses to refuse what jsmn itself lets through.
 */
#include "auth/jwt.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define JSMN_STATIC
#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#include <jsmn.h>
#pragma GCC diagnostic pop

#include "core/core.h"

/* RFC 7518 §3.3: "A key of size 2048 bits or larger MUST be used with these algorithms." */
#define TG__JWT_RSA_MIN_BITS 2048
/* Escaped strings compared with a configured value (iss, aud) are unescaped into a buffer of
 * this size first; longer ones never match. */
#define TG__JWT_CMP_MAX 1024
/* A kid in a token header longer than this is malformed. */
#define TG__JWT_KID_MAX 256

struct tg__jwt_key {
    unsigned alg;      /* the one enum tg_jwt_alg this key serves */
    char *kid;         /* NUL-terminated; NULL when the key has none */
    size_t kid_len;    /* kids never hold a NUL (\u0000 is refused) */
    EVP_PKEY *pkey;    /* RS256 and ES256 */
    EVP_MAC_CTX *hmac; /* HS256: keyed once here, duplicated per token, so a verification
                          skips the digest fetch and the key schedule */
};

struct tg_jwt_keys {
    struct tg__jwt_key *keys;
    size_t num, cap;
    bool has_kids; /* some key has a kid: a token's kid then selects the keys tried */
};

/* One parsed JSON text: tokens of js, validated by tg__json_parse(). */
struct tg__json {
    const char *js;
    const jsmntok_t *t;
    int n;
};

static int tg__b64url_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Bytes that base64url text of len characters decodes to, or -1 if no text has that length. */
static ssize_t tg__b64url_len(size_t len)
{
    if (len % 4 == 1)
        return -1;
    return (ssize_t)(len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0));
}

/*
 * Decodes unpadded base64url (RFC 7515 §2). Padding, any byte outside the alphabet and
 * non-zero unused bits in the last character are refused, so every byte string has exactly one
 * accepted encoding. Returns the decoded length, or -1 when the text is invalid or the result
 * would not fit in cap bytes.
 */
static ssize_t tg__b64url_decode(const char *s, size_t len, unsigned char *out, size_t cap)
{
    ssize_t olen = tg__b64url_len(len);
    uint32_t acc = 0;
    size_t i, o = 0;
    int bits = 0;

    if (olen < 0 || (size_t)olen > cap)
        return -1;
    for (i = 0; i < len; i++) {
        int v = tg__b64url_val((unsigned char)s[i]);

        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    if ((acc & ((1u << bits) - 1)) != 0)
        return -1; /* non-canonical: the unused low bits must be zero */
    return olen;
}

static int tg__hex4(const char *s, size_t avail, uint32_t *cp)
{
    uint32_t v = 0;

    if (avail < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        unsigned char c = (unsigned char)s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v << 4 | (uint32_t)d;
    }
    *cp = v;
    return 0;
}

static size_t tg__utf8_put(unsigned char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xc0 | cp >> 6);
        out[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xe0 | cp >> 12);
        out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (unsigned char)(0xf0 | cp >> 18);
    out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

/* The code point of the \u escape whose hex digits start at s (surrogate pairs joined), or -1
 * for \u0000 and unpaired surrogates; *used gets the bytes consumed after the "\u". */
static int64_t tg__json_u_escape(const char *s, size_t avail, size_t *used)
{
    uint32_t cp, lo;

    if (tg__hex4(s, avail, &cp) < 0 || cp == 0 || (cp >= 0xdc00 && cp <= 0xdfff))
        return -1;
    *used = 4;
    if (cp < 0xd800 || cp > 0xdbff)
        return cp;
    if (avail < 10 || s[4] != '\\' || s[5] != 'u' || tg__hex4(s + 6, 4, &lo) < 0 || lo < 0xdc00 ||
        lo > 0xdfff)
        return -1;
    *used = 10;
    return 0x10000 + ((int64_t)(cp - 0xd800) << 10) + (lo - 0xdc00);
}

/* The byte a one-letter JSON escape stands for, or -1. */
static int tg__json_simple_escape(unsigned char c)
{
    switch (c) {
    case '"':
    case '\\':
    case '/':
        return c;
    case 'b':
        return '\b';
    case 'f':
        return '\f';
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    default:
        return -1;
    }
}

/*
 * Unescapes the inside of a JSON string into out (cap bytes). Raw control characters, \u0000
 * (which would cut a C string short: "admin\u0000x" must never become "admin") and unpaired
 * surrogates are refused. Returns the length written, or -1.
 */
static ssize_t tg__json_unescape(const char *s, size_t len, char *out, size_t cap)
{
    size_t i = 0, o = 0;

    while (i < len) {
        unsigned char c = (unsigned char)s[i++], u[4];
        size_t n = 1, used;
        int64_t cp;

        if (c < 0x20)
            return -1;
        if (c != '\\') {
            if (o == cap)
                return -1;
            out[o++] = (char)c;
            continue;
        }
        if (i == len)
            return -1;
        c = (unsigned char)s[i++];
        if (c == 'u') {
            cp = tg__json_u_escape(s + i, len - i, &used);
            if (cp < 0)
                return -1;
            i += used;
            n = tg__utf8_put(u, (uint32_t)cp);
        } else {
            int v = tg__json_simple_escape(c);

            if (v < 0)
                return -1;
            u[0] = (unsigned char)v;
        }
        if (cap - o < n)
            return -1;
        memcpy(out + o, u, n);
        o += n;
    }
    return (ssize_t)o;
}

static size_t tg__digits(const char *s, size_t i, size_t len)
{
    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++;
    return i;
}

/* Whether s[0..len) is true, false, null or a JSON number: strict jsmn takes any run of
 * printable bytes that starts like one of them. */
static bool tg__json_primitive_ok(const char *s, size_t len)
{
    size_t i = 0, d;

    if ((len == 4 && (memcmp(s, "true", 4) == 0 || memcmp(s, "null", 4) == 0)) ||
        (len == 5 && memcmp(s, "false", 5) == 0))
        return true;
    if (i < len && s[i] == '-')
        i++;
    d = tg__digits(s, i, len);
    if (d == i || (s[i] == '0' && d > i + 1))
        return false; /* no digit, or a leading zero */
    i = d;
    if (i < len && s[i] == '.') {
        d = tg__digits(s, i + 1, len);
        if (d == i + 1)
            return false;
        i = d;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        d = tg__digits(s, i, len);
        if (d == i)
            return false;
        i = d;
    }
    return i == len;
}

/*
 * Parses js[0..len) into toks and checks what strict jsmn lets through: the text must be one
 * object and nothing but whitespace after it, every member must be a string key with exactly
 * one value, only keys may have a value attached, primitives must be well-formed, and no NUL
 * byte may hide the rest of the text from jsmn. Returns 0, or -1 when the text is not such an
 * object or needs more than cap tokens.
 */
static int tg__json_parse(struct tg__json *j, const char *js, size_t len, jsmntok_t *toks,
                          unsigned cap)
{
    jsmn_parser parser;
    int n;

    if (len == 0 || len > INT_MAX || memchr(js, '\0', len) != NULL)
        return -1;
    jsmn_init(&parser);
    n = jsmn_parse(&parser, js, len, toks, cap);
    if (n < 1 || toks[0].type != JSMN_OBJECT || toks[0].start < 0 || toks[0].end < 0)
        return -1;
    for (size_t i = (size_t)toks[0].end; i < len; i++)
        if (js[i] != ' ' && js[i] != '\t' && js[i] != '\r' && js[i] != '\n')
            return -1;
    for (int i = 1; i < n; i++) {
        int p = toks[i].parent;

        if (p < 0 || toks[i].end < 0)
            return -1; /* a second value at the top, or an unclosed one */
        if (toks[i].type == JSMN_PRIMITIVE &&
            !tg__json_primitive_ok(js + toks[i].start, (size_t)(toks[i].end - toks[i].start)))
            return -1;
        if (toks[p].type == JSMN_OBJECT) {
            if (toks[i].type != JSMN_STRING || toks[i].size != 1)
                return -1;
        } else if (toks[p].type == JSMN_STRING) {
            if (toks[p].parent < 0 || toks[toks[p].parent].type != JSMN_OBJECT)
                return -1;
        } else if (toks[p].type != JSMN_ARRAY) {
            return -1;
        }
    }
    j->js = js;
    j->t = toks;
    j->n = n;
    return 0;
}

/* Whether string token i equals s[0..slen) once unescaped. */
static bool tg__json_str_eq(const struct tg__json *j, int i, const char *s, size_t slen)
{
    const char *v = j->js + j->t[i].start;
    size_t vlen = (size_t)(j->t[i].end - j->t[i].start);
    char buf[TG__JWT_CMP_MAX];
    ssize_t n;

    if (j->t[i].type != JSMN_STRING || vlen < slen)
        return false;
    if (memchr(v, '\\', vlen) == NULL)
        return vlen == slen && memcmp(v, s, slen) == 0;
    n = tg__json_unescape(v, vlen, buf, sizeof(buf));
    return n >= 0 && (size_t)n == slen && memcmp(buf, s, slen) == 0;
}

/*
 * Index of the value of member name in object token obj: -1 when absent, -2 when the name
 * appears twice (parsers disagree on which one wins, so a token relying on either is refused).
 */
static int tg__json_get(const struct tg__json *j, int obj, const char *name)
{
    size_t nlen = strlen(name);
    int found = -1;

    for (int i = obj + 1; i < j->n && j->t[i].start < j->t[obj].end; i++) {
        if (j->t[i].parent != obj || !tg__json_str_eq(j, i, name, nlen))
            continue;
        if (found >= 0)
            return -2;
        found = i + 1;
    }
    return found;
}

/* Unescapes string token i into out (cap bytes, NUL-terminated). Returns the length or -1. */
static ssize_t tg__json_str_copy(const struct tg__json *j, int i, char *out, size_t cap)
{
    ssize_t n;

    if (j->t[i].type != JSMN_STRING || cap == 0)
        return -1;
    n = tg__json_unescape(j->js + j->t[i].start, (size_t)(j->t[i].end - j->t[i].start), out,
                          cap - 1);
    if (n >= 0)
        out[n] = '\0';
    return n;
}

/* Values are kept within ±2^62 so that adding a leeway can never overflow. */
#define TG__JWT_TIME_MAX ((int64_t)1 << 62)

/*
 * Reads a NumericDate (RFC 7519 §2): a JSON number written -?digits(.digits)?, the exponent
 * form being refused. A fraction rounds the bound the safe way for each check, so *lo gets the
 * floor (compared with exp) and *hi the ceiling (compared with nbf and iat). Returns 0 or -1.
 */
static int tg__json_date(const struct tg__json *j, int i, int64_t *lo, int64_t *hi)
{
    const char *s = j->js + j->t[i].start, *end = j->js + j->t[i].end;
    bool neg = false, frac = false;
    int64_t v = 0;

    if (j->t[i].type != JSMN_PRIMITIVE)
        return -1;
    if (s < end && *s == '-') {
        neg = true;
        s++;
    }
    if (s == end || *s < '0' || *s > '9')
        return -1;
    for (; s < end && *s >= '0' && *s <= '9'; s++)
        v = v >= TG__JWT_TIME_MAX / 10 ? TG__JWT_TIME_MAX : v * 10 + (*s - '0');
    if (s < end && *s == '.') {
        if (++s == end)
            return -1;
        for (; s < end && *s >= '0' && *s <= '9'; s++)
            frac |= *s != '0';
    }
    if (s != end)
        return -1;
    *lo = neg ? -v - frac : v;
    *hi = neg ? -v : v + frac;
    return 0;
}

const char *tg_jwt_result_name(enum tg_jwt_result r)
{
    static const char *const names[] = {
        [TG_JWT_OK] = "ok",
        [TG_JWT_MALFORMED] = "malformed",
        [TG_JWT_ALGORITHM] = "algorithm",
        [TG_JWT_SIGNATURE] = "signature",
        [TG_JWT_EXPIRED] = "expired",
        [TG_JWT_NOT_YET_VALID] = "not_yet_valid",
        [TG_JWT_ISSUER] = "issuer",
        [TG_JWT_AUDIENCE] = "audience",
        [TG_JWT_NO_CONSUMER] = "no_consumer",
        [TG_JWT_UNKNOWN_KID] = "unknown_kid",
    };

    if ((unsigned)r >= TG_ARRAY_SIZE(names) || names[r] == NULL)
        return "unknown";
    return names[r];
}

/* ---- key sets ---- */

static struct tg_jwt_keys *tg__keys_new(void)
{
    return tg_calloc(1, sizeof(struct tg_jwt_keys));
}

/* Appends a key; the set takes kid (malloc'd or NULL), pkey and hmac. */
static void tg__keys_add(struct tg_jwt_keys *ks, unsigned alg, char *kid, EVP_PKEY *pkey,
                         EVP_MAC_CTX *hmac)
{
    struct tg__jwt_key *k;

    if (ks->num == ks->cap) {
        ks->cap = ks->cap ? ks->cap * 2 : 4;
        ks->keys = tg_realloc(ks->keys, ks->cap * sizeof(*ks->keys));
    }
    k = &ks->keys[ks->num++];
    k->alg = alg;
    k->kid = kid;
    k->kid_len = kid ? strlen(kid) : 0;
    k->pkey = pkey;
    k->hmac = hmac;
    ks->has_kids |= kid != NULL;
}

/* The algorithm a public key serves, or 0 (with *why set) when it serves none of ours. */
static unsigned tg__pkey_alg(EVP_PKEY *pkey, const char **why)
{
    char group[64];

    if (EVP_PKEY_is_a(pkey, "RSA")) {
        if (EVP_PKEY_get_bits(pkey) >= TG__JWT_RSA_MIN_BITS)
            return TG_JWT_RS256;
        *why = "RSA key shorter than 2048 bits";
        return 0;
    }
    if (EVP_PKEY_is_a(pkey, "EC")) {
        if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), NULL) == 1 &&
            (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0))
            return TG_JWT_ES256;
        *why = "EC key not on curve P-256";
        return 0;
    }
    *why = "key type neither RSA nor EC";
    return 0;
}

/* Adds pkey (taken) when it serves one of our algorithms; returns whether it did. */
static bool tg__keys_add_pkey(struct tg_jwt_keys *ks, EVP_PKEY *pkey, char *kid, const char **why)
{
    unsigned alg = tg__pkey_alg(pkey, why);

    if (alg == 0) {
        EVP_PKEY_free(pkey);
        free(kid);
        return false;
    }
    tg__keys_add(ks, alg, kid, pkey, NULL);
    return true;
}

static EVP_MAC_CTX *tg__hmac_new(const void *secret, size_t len)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;

    EVP_MAC_free(mac); /* the context holds its own reference */
    if (ctx != NULL && EVP_MAC_init(ctx, secret, len, params) != 1) {
        EVP_MAC_CTX_free(ctx);
        ctx = NULL;
    }
    return ctx;
}

struct tg_jwt_keys *tg_jwt_keys_secret(const void *secret, size_t len)
{
    struct tg_jwt_keys *ks;
    EVP_MAC_CTX *hmac;

    if (len == 0)
        return NULL;
    hmac = tg__hmac_new(secret, len);
    if (hmac == NULL)
        tg_fatal("jwt: OpenSSL has no HMAC-SHA256");
    ks = tg__keys_new();
    tg__keys_add(ks, TG_JWT_HS256, NULL, NULL, hmac);
    return ks;
}

size_t tg_jwt_keys_count(const struct tg_jwt_keys *k)
{
    return k ? k->num : 0;
}

void tg_jwt_keys_free(struct tg_jwt_keys *k)
{
    if (k == NULL)
        return;
    for (size_t i = 0; i < k->num; i++) {
        free(k->keys[i].kid);
        EVP_PKEY_free(k->keys[i].pkey);
        EVP_MAC_CTX_free(k->keys[i].hmac);
    }
    free(k->keys);
    free(k);
}

/* The public key of one PEM block, or NULL when the block holds none we read. */
static EVP_PKEY *tg__pem_block_key(const char *name, const unsigned char *der, long len)
{
    const unsigned char *p = der;
    EVP_PKEY *pkey = NULL;
    X509 *x;

    if (strcmp(name, PEM_STRING_PUBLIC) == 0)
        return d2i_PUBKEY(NULL, &p, len);
    if (strcmp(name, PEM_STRING_X509) != 0 && strcmp(name, PEM_STRING_X509_OLD) != 0)
        return NULL;
    x = d2i_X509(NULL, &p, len);
    if (x != NULL)
        pkey = X509_get_pubkey(x);
    X509_free(x);
    return pkey;
}

/* Reads every PEM block of data; returns the number of blocks seen. */
static size_t tg__keys_parse_pem(struct tg_jwt_keys *ks, const char *data, size_t len,
                                 const char **why)
{
    BIO *bio = BIO_new_mem_buf(data, (int)len);
    size_t blocks = 0;

    if (bio == NULL)
        tg_fatal("jwt: out of memory");
    /* Each round consumes one block of the buffer, so the loop ends with the text. */
    for (;;) {
        char *name = NULL, *header = NULL;
        unsigned char *der = NULL;
        long derlen = 0;
        EVP_PKEY *pkey;

        if (PEM_read_bio(bio, &name, &header, &der, &derlen) != 1)
            break;
        blocks++;
        pkey = tg__pem_block_key(name, der, derlen);
        if (pkey != NULL)
            tg__keys_add_pkey(ks, pkey, NULL, why);
        else
            *why = "PEM block is not a public key or certificate";
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(der);
    }
    BIO_free(bio);
    return blocks;
}

/* Decodes the base64url string token i into a malloc'd buffer; NULL when invalid or empty. */
static unsigned char *tg__jwk_bytes(const struct tg__json *j, int i, size_t *len)
{
    const char *s;
    size_t slen;
    ssize_t n, max;
    unsigned char *out;

    if (i < 0 || j->t[i].type != JSMN_STRING)
        return NULL;
    s = j->js + j->t[i].start;
    slen = (size_t)(j->t[i].end - j->t[i].start);
    max = tg__b64url_len(slen);
    if (max <= 0)
        return NULL;
    out = tg_malloc((size_t)max);
    n = tg__b64url_decode(s, slen, out, (size_t)max);
    if (n <= 0) {
        free(out);
        return NULL;
    }
    *len = (size_t)n;
    return out;
}

/* Builds a public key of type name from params; NULL when OpenSSL refuses them. */
static EVP_PKEY *tg__pkey_fromdata(const char *name, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, name, NULL);
    EVP_PKEY *pkey = NULL;

    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

/* An RSA key from the JWK members n and e (RFC 7518 §6.3.1). */
static EVP_PKEY *tg__jwk_rsa(const struct tg__json *j, int obj)
{
    size_t nlen = 0, elen = 0;
    unsigned char *n = tg__jwk_bytes(j, tg__json_get(j, obj, "n"), &nlen);
    unsigned char *e = tg__jwk_bytes(j, tg__json_get(j, obj, "e"), &elen);
    BIGNUM *bn_n = n ? BN_bin2bn(n, (int)nlen, NULL) : NULL;
    BIGNUM *bn_e = e ? BN_bin2bn(e, (int)elen, NULL) : NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pkey = NULL;

    if (bn_n != NULL && bn_e != NULL && bld != NULL &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) == 1 &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) == 1)
        pkey = tg__pkey_fromdata("RSA", bld);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    free(n);
    free(e);
    return pkey;
}

/* A P-256 key from the JWK members x and y (RFC 7518 §6.2.1), refused unless on the curve. */
static EVP_PKEY *tg__jwk_ec(const struct tg__json *j, int obj)
{
    size_t xlen = 0, ylen = 0;
    unsigned char *x = tg__jwk_bytes(j, tg__json_get(j, obj, "x"), &xlen);
    unsigned char *y = tg__jwk_bytes(j, tg__json_get(j, obj, "y"), &ylen);
    unsigned char point[65];
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *check;

    /* §6.2.1.2: coordinates are always the full 32 bytes of the field. */
    if (x != NULL && y != NULL && xlen == 32 && ylen == 32 && bld != NULL) {
        point[0] = 0x04; /* uncompressed form: x then y */
        memcpy(point + 1, x, 32);
        memcpy(point + 33, y, 32);
        if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ==
                1 &&
            OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point)) ==
                1)
            pkey = tg__pkey_fromdata("EC", bld);
    }
    if (pkey != NULL) {
        check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        if (check == NULL || EVP_PKEY_public_check(check) != 1) {
            EVP_PKEY_free(pkey);
            pkey = NULL;
        }
        EVP_PKEY_CTX_free(check);
    }
    OSSL_PARAM_BLD_free(bld);
    free(x);
    free(y);
    return pkey;
}

/* An HMAC key from the JWK member k (RFC 7518 §6.4.1). */
static EVP_MAC_CTX *tg__jwk_oct(const struct tg__json *j, int obj)
{
    size_t klen = 0;
    unsigned char *k = tg__jwk_bytes(j, tg__json_get(j, obj, "k"), &klen);
    EVP_MAC_CTX *hmac = k ? tg__hmac_new(k, klen) : NULL;

    if (k != NULL)
        OPENSSL_cleanse(k, klen);
    free(k);
    return hmac;
}

/* Reads one JWK object and adds its key; returns false (with *why) when it is skipped. */
static bool tg__jwk_add(struct tg_jwt_keys *ks, const struct tg__json *j, int obj, const char **why)
{
    int kty = tg__json_get(j, obj, "kty"), use = tg__json_get(j, obj, "use");
    int alg = tg__json_get(j, obj, "alg"), kidtok = tg__json_get(j, obj, "kid");
    const char *algname;
    unsigned type;
    EVP_PKEY *pkey = NULL;
    EVP_MAC_CTX *hmac = NULL;
    char *kid = NULL;

    if (kty < 0 || use == -2 || alg == -2 || kidtok == -2) {
        *why = "JWK without kty or with a duplicate member";
        return false;
    }
    if (use >= 0 && !tg__json_str_eq(j, use, "sig", 3)) {
        *why = "JWK not for signatures (use)";
        return false;
    }
    if (tg__json_str_eq(j, kty, "RSA", 3)) {
        type = TG_JWT_RS256;
        algname = "RS256";
    } else if (tg__json_str_eq(j, kty, "EC", 2)) {
        int crv = tg__json_get(j, obj, "crv");

        type = TG_JWT_ES256;
        algname = "ES256";
        if (crv < 0 || !tg__json_str_eq(j, crv, "P-256", 5)) {
            *why = "EC JWK not on curve P-256";
            return false;
        }
    } else if (tg__json_str_eq(j, kty, "oct", 3)) {
        type = TG_JWT_HS256;
        algname = "HS256";
    } else {
        *why = "JWK of an unsupported kty";
        return false;
    }
    if (alg >= 0 && !tg__json_str_eq(j, alg, algname, 5)) {
        *why = "JWK for another algorithm (alg)";
        return false;
    }
    if (kidtok >= 0) {
        size_t cap = (size_t)(j->t[kidtok].end - j->t[kidtok].start) + 1;

        kid = tg_malloc(cap);
        if (tg__json_str_copy(j, kidtok, kid, cap) < 0) {
            free(kid);
            *why = "JWK kid is not a valid string";
            return false;
        }
    }
    if (type == TG_JWT_RS256)
        pkey = tg__jwk_rsa(j, obj);
    else if (type == TG_JWT_ES256)
        pkey = tg__jwk_ec(j, obj);
    if (type != TG_JWT_HS256) {
        if (pkey == NULL) {
            free(kid);
            *why = "JWK key parameters invalid";
            return false;
        }
        return tg__keys_add_pkey(ks, pkey, kid, why);
    }
    hmac = tg__jwk_oct(j, obj);
    if (hmac == NULL) {
        free(kid);
        *why = "oct JWK without a valid k";
        return false;
    }
    tg__keys_add(ks, TG_JWT_HS256, kid, NULL, hmac);
    return true;
}

/* Reads a JWKS document (or a lone JWK); returns -1 when it is not JSON of that shape. */
static int tg__keys_parse_jwks(struct tg_jwt_keys *ks, const char *data, size_t len,
                               const char **why)
{
    jsmn_parser parser;
    jsmntok_t *toks;
    struct tg__json j;
    int n, keys, ret = -1;

    if (len > INT_MAX)
        return -1;
    jsmn_init(&parser);
    n = jsmn_parse(&parser, data, len, NULL, 0); /* count the tokens first */
    if (n < 1)
        return -1;
    toks = tg_malloc((size_t)n * sizeof(*toks));
    if (tg__json_parse(&j, data, len, toks, (unsigned)n) < 0)
        goto out;
    keys = tg__json_get(&j, 0, "keys");
    if (keys < 0 && tg__json_get(&j, 0, "kty") >= 0) {
        tg__jwk_add(ks, &j, 0, why);
        ret = 0;
        goto out;
    }
    if (keys < 0 || toks[keys].type != JSMN_ARRAY)
        goto out;
    for (int i = keys + 1; i < n && toks[i].start < toks[keys].end; i++) {
        if (toks[i].parent != keys)
            continue;
        if (toks[i].type == JSMN_OBJECT)
            tg__jwk_add(ks, &j, i, why);
        else
            *why = "keys array element is not an object";
    }
    ret = 0;
out:
    free(toks);
    return ret;
}

struct tg_jwt_keys *tg_jwt_keys_parse(const char *data, size_t len, char *err, size_t errlen)
{
    struct tg_jwt_keys *ks = tg__keys_new();
    const char *why = "no key found";
    size_t skipped = 0;

    ERR_set_mark();
    if (len > INT_MAX) {
        why = "key material too large";
    } else if (memmem(data, len, "-----BEGIN ", 11) != NULL) {
        skipped = tg__keys_parse_pem(ks, data, len, &why);
        if (skipped == 0)
            why = "no readable PEM block";
    } else if (tg__keys_parse_jwks(ks, data, len, &why) < 0) {
        why = "neither PEM nor a JWKS JSON document";
    }
    ERR_pop_to_mark();
    if (ks->num > 0)
        return ks;
    snprintf(err, errlen, "no usable key: %s", why);
    tg_jwt_keys_free(ks);
    return NULL;
}

/* ---- verification ---- */

/* The parts of a token header verification needs. */
struct tg__jwt_header {
    unsigned alg;
    bool has_kid;
    char kid[TG__JWT_KID_MAX];
    size_t kid_len;
};

static enum tg_jwt_result tg__header_read(const struct tg__json *j, unsigned allowed,
                                          struct tg__jwt_header *h)
{
    static const struct {
        const char *name;
        unsigned alg;
    } algs[] = {{"RS256", TG_JWT_RS256}, {"ES256", TG_JWT_ES256}, {"HS256", TG_JWT_HS256}};
    int crit = tg__json_get(j, 0, "crit"), alg = tg__json_get(j, 0, "alg");
    int kid = tg__json_get(j, 0, "kid");
    ssize_t n;

    /* RFC 7515 §4.1.11: extensions listed in crit must be understood; we implement none. */
    if (crit != -1 || alg == -2 || kid == -2)
        return TG_JWT_MALFORMED;
    h->alg = 0;
    for (size_t i = 0; alg >= 0 && i < TG_ARRAY_SIZE(algs); i++)
        if (tg__json_str_eq(j, alg, algs[i].name, 5))
            h->alg = algs[i].alg;
    if ((h->alg & allowed) == 0)
        return TG_JWT_ALGORITHM; /* missing, "none", unknown, or not allowed here */
    h->has_kid = kid >= 0;
    if (kid >= 0) {
        n = tg__json_str_copy(j, kid, h->kid, sizeof(h->kid));
        if (n < 0)
            return TG_JWT_MALFORMED;
        h->kid_len = (size_t)n;
    }
    return TG_JWT_OK;
}

static bool tg__verify_hmac(const struct tg__jwt_key *k, const char *in, size_t inlen,
                            const unsigned char *sig, size_t siglen)
{
    EVP_MAC_CTX *ctx;
    unsigned char mac[32];
    size_t maclen = 0;
    bool ok;

    if (siglen != sizeof(mac))
        return false;
    ctx = EVP_MAC_CTX_dup(k->hmac);
    ok = ctx != NULL && EVP_MAC_update(ctx, (const unsigned char *)in, inlen) == 1 &&
         EVP_MAC_final(ctx, mac, &maclen, sizeof(mac)) == 1 && maclen == sizeof(mac) &&
         CRYPTO_memcmp(mac, sig, sizeof(mac)) == 0;
    EVP_MAC_CTX_free(ctx);
    return ok;
}

/* Writes the DER INTEGER of the unsigned big-endian v[0..n); returns the bytes written. */
static size_t tg__der_uint(unsigned char *out, const unsigned char *v, size_t n)
{
    size_t skip = 0, len, pad;

    while (skip + 1 < n && v[skip] == 0)
        skip++; /* minimal encoding: no leading zero bytes ... */
    len = n - skip;
    pad = v[skip] >> 7; /* ... except one that keeps the integer positive */
    out[0] = 0x02;
    out[1] = (unsigned char)(len + pad);
    out[2] = 0;
    memcpy(out + 2 + pad, v + skip, len);
    return 2 + pad + len;
}

static bool tg__verify_pkey(const struct tg__jwt_key *k, const char *in, size_t inlen,
                            const unsigned char *sig, size_t siglen)
{
    unsigned char der[2 + 2 * (3 + 32)];
    EVP_MD_CTX *ctx;
    bool ok;

    if (k->alg == TG_JWT_ES256) {
        size_t n = 2;

        /* RFC 7518 §3.4: the signature is R || S, 32 bytes each; OpenSSL wants an ASN.1
         * SEQUENCE of two INTEGERs. */
        if (siglen != 64)
            return false;
        der[0] = 0x30;
        n += tg__der_uint(der + n, sig, 32);
        n += tg__der_uint(der + n, sig + 32, 32);
        der[1] = (unsigned char)(n - 2);
        sig = der;
        siglen = n;
    }
    ctx = EVP_MD_CTX_new();
    ok = ctx != NULL &&
         EVP_DigestVerifyInit_ex(ctx, NULL, "SHA256", NULL, NULL, k->pkey, NULL) == 1 &&
         EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)in, inlen) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

/* Tries the keys that may have signed the token (see tg_jwt_verify() for which). */
static enum tg_jwt_result tg__signature_check(const struct tg_jwt_keys *ks,
                                              const struct tg__jwt_header *h, const char *in,
                                              size_t inlen, const unsigned char *sig, size_t siglen)
{
    bool typed = false, tried = false;
    size_t num = ks != NULL ? ks->num : 0;

    for (size_t i = 0; i < num; i++) {
        const struct tg__jwt_key *k = &ks->keys[i];

        if (k->alg != h->alg)
            continue;
        typed = true;
        if (h->has_kid && ks->has_kids &&
            (k->kid == NULL || k->kid_len != h->kid_len || memcmp(k->kid, h->kid, h->kid_len)))
            continue;
        tried = true;
        if (k->alg == TG_JWT_HS256 ? tg__verify_hmac(k, in, inlen, sig, siglen)
                                   : tg__verify_pkey(k, in, inlen, sig, siglen))
            return TG_JWT_OK;
    }
    if (!typed)
        return TG_JWT_ALGORITHM;
    return tried ? TG_JWT_SIGNATURE : TG_JWT_UNKNOWN_KID;
}

static enum tg_jwt_result tg__claims_times(const struct tg__json *j, int64_t now, int64_t leeway)
{
    int exp = tg__json_get(j, 0, "exp"), nbf = tg__json_get(j, 0, "nbf");
    int iat = tg__json_get(j, 0, "iat");
    int64_t lo, hi;

    if (exp == -2 || nbf == -2 || iat == -2)
        return TG_JWT_MALFORMED;
    now = TG_MAX(TG_MIN(now, TG__JWT_TIME_MAX), -TG__JWT_TIME_MAX);
    leeway = TG_MAX(TG_MIN(leeway, (int64_t)1 << 40), 0);
    if (exp >= 0) {
        if (tg__json_date(j, exp, &lo, &hi) < 0)
            return TG_JWT_MALFORMED;
        if (now > lo + leeway)
            return TG_JWT_EXPIRED;
    }
    if (nbf >= 0) {
        if (tg__json_date(j, nbf, &lo, &hi) < 0)
            return TG_JWT_MALFORMED;
        if (now + leeway < hi)
            return TG_JWT_NOT_YET_VALID;
    }
    if (iat >= 0) {
        if (tg__json_date(j, iat, &lo, &hi) < 0)
            return TG_JWT_MALFORMED;
        if (now + leeway < hi)
            return TG_JWT_NOT_YET_VALID;
    }
    return TG_JWT_OK;
}

/* "aud" is a string or an array of strings (RFC 7519 §4.1.3); one must be the audience. */
static enum tg_jwt_result tg__claims_audience(const struct tg__json *j, const char *want)
{
    int aud = tg__json_get(j, 0, "aud");
    size_t wlen;
    bool found = false;

    if (aud == -2)
        return TG_JWT_MALFORMED;
    if (want == NULL)
        return TG_JWT_OK;
    if (aud < 0)
        return TG_JWT_AUDIENCE;
    wlen = strlen(want);
    if (j->t[aud].type == JSMN_STRING)
        return tg__json_str_eq(j, aud, want, wlen) ? TG_JWT_OK : TG_JWT_AUDIENCE;
    if (j->t[aud].type != JSMN_ARRAY)
        return TG_JWT_MALFORMED;
    for (int i = aud + 1; i < j->n && j->t[i].start < j->t[aud].end; i++) {
        if (j->t[i].parent != aud)
            continue;
        if (j->t[i].type != JSMN_STRING)
            return TG_JWT_MALFORMED;
        found |= tg__json_str_eq(j, i, want, wlen);
    }
    return found ? TG_JWT_OK : TG_JWT_AUDIENCE;
}

static enum tg_jwt_result tg__claims_consumer(const struct tg__json *j, const char *claim,
                                              char *out, size_t cap)
{
    int v;
    ssize_t n;

    if (claim == NULL) {
        if (cap > 0)
            out[0] = '\0';
        return TG_JWT_OK;
    }
    v = tg__json_get(j, 0, claim);
    if (v == -2)
        return TG_JWT_MALFORMED;
    if (v < 0 || cap == 0)
        return TG_JWT_NO_CONSUMER;
    n = tg__json_str_copy(j, v, out, cap);
    if (n <= 0)
        return TG_JWT_NO_CONSUMER;
    /* A consumer name is an identifier that ends up in logs and headers: no control bytes. */
    for (ssize_t i = 0; i < n; i++)
        if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
            return TG_JWT_NO_CONSUMER;
    return TG_JWT_OK;
}

static enum tg_jwt_result tg__claims_check(const struct tg__json *j, const struct tg_jwt_policy *p,
                                           int64_t now, char *consumer, size_t cap)
{
    enum tg_jwt_result r = tg__claims_times(j, now, p->leeway_s);
    int iss = tg__json_get(j, 0, "iss");

    if (r != TG_JWT_OK)
        return r;
    if (iss == -2)
        return TG_JWT_MALFORMED;
    if (p->issuer != NULL && (iss < 0 || !tg__json_str_eq(j, iss, p->issuer, strlen(p->issuer))))
        return iss >= 0 && j->t[iss].type != JSMN_STRING ? TG_JWT_MALFORMED : TG_JWT_ISSUER;
    r = tg__claims_audience(j, p->audience);
    if (r != TG_JWT_OK)
        return r;
    return tg__claims_consumer(j, p->consumer_claim, consumer, cap);
}

enum tg_jwt_result tg_jwt_verify(const struct tg_jwt_keys *k, const struct tg_jwt_policy *p,
                                 const char *token, size_t len, int64_t now_s, char *consumer,
                                 size_t cap)
{
    /* Decoded parts: base64url shrinks by a quarter, so the three fit together. */
    unsigned char buf[TG_JWT_MAX_TOKEN / 4 * 3];
    jsmntok_t toks[TG_JWT_MAX_JSON_TOKENS];
    struct tg__jwt_header h;
    struct tg__json j;
    const char *dot1, *dot2;
    ssize_t hlen, plen, slen;
    enum tg_jwt_result r;

    if (cap > 0)
        consumer[0] = '\0';
    if (len == 0 || len > TG_JWT_MAX_TOKEN || (dot1 = memchr(token, '.', len)) == NULL ||
        (dot2 = memchr(dot1 + 1, '.', (size_t)(token + len - dot1 - 1))) == NULL)
        return TG_JWT_MALFORMED;
    hlen = tg__b64url_decode(token, (size_t)(dot1 - token), buf, sizeof(buf));
    if (hlen < 0 || tg__json_parse(&j, (const char *)buf, (size_t)hlen, toks, TG_ARRAY_SIZE(toks)))
        return TG_JWT_MALFORMED;
    r = tg__header_read(&j, p->algorithms, &h);
    if (r != TG_JWT_OK)
        return r;
    slen = tg__b64url_decode(dot2 + 1, (size_t)(token + len - dot2 - 1), buf + hlen,
                             sizeof(buf) - (size_t)hlen);
    if (slen < 0)
        return TG_JWT_MALFORMED; /* a third dot lands here too: '.' is not base64url */

    /* Failed verifications leave reasons on the thread's error queue; drop them, but keep what
     * was there before (a worker may be about to format a TLS error). */
    ERR_set_mark();
    r = tg__signature_check(k, &h, token, (size_t)(dot2 - token), buf + hlen, (size_t)slen);
    ERR_pop_to_mark();
    if (r != TG_JWT_OK)
        return r;

    plen = tg__b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), buf, sizeof(buf));
    if (plen < 0 || tg__json_parse(&j, (const char *)buf, (size_t)plen, toks, TG_ARRAY_SIZE(toks)))
        return TG_JWT_MALFORMED;
    r = tg__claims_check(&j, p, now_s, consumer, cap);
    if (r != TG_JWT_OK && cap > 0)
        consumer[0] = '\0';
    return r;
}
