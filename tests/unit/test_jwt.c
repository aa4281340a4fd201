/*
 * JWT verification (src/auth/jwt.c): keys generated here with OpenSSL, tokens signed here, and
 * every security rule checked on its own: algorithm allow-list and confusion, kid selection,
 * ES256 signature shape, times with leeway, issuer, audience, consumer claim, malformed input;
 * the RFC 7515 A.1 vector; JWKS fetch from a loopback server; and a timing of each algorithm.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "auth/jwt.h"
#include "core/core.h"
#include "unit.h"

#define NOW 1700000000LL

static EVP_PKEY *rsa, *rsa2, *ec, *ec2;
static const unsigned char secret[] = "a shared secret of thirty-two bytes!";
static char rsa_pem[4096], ec_pem[4096], jwks[16384];

/* ---- helpers: encoding, signing, key export ---- */

static size_t b64url(const unsigned char *in, size_t len, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i;

    for (i = 0; i + 2 < len; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[o++] = abc[v >> 18];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = abc[v >> 6 & 63];
        out[o++] = abc[v & 63];
    }
    if (len - i == 1) {
        out[o++] = abc[in[i] >> 2];
        out[o++] = abc[(in[i] & 3) << 4];
    } else if (len - i == 2) {
        unsigned v = (unsigned)in[i] << 8 | in[i + 1];
        out[o++] = abc[v >> 10];
        out[o++] = abc[v >> 4 & 63];
        out[o++] = abc[(v & 15) << 2];
    }
    out[o] = '\0';
    return o;
}

static size_t b64url_str(const char *s, char *out)
{
    return b64url((const unsigned char *)s, strlen(s), out);
}

enum sig_kind { SIG_NONE, SIG_RS256, SIG_ES256, SIG_HS256, SIG_ES256_DER };

struct signer {
    enum sig_kind kind;
    EVP_PKEY *pkey;
    const void *secret;
    size_t secret_len;
};

static size_t sign_pkey(EVP_PKEY *pkey, const char *in, size_t len, unsigned char *sig)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t siglen = 1024;

    if (EVP_DigestSignInit_ex(ctx, NULL, "SHA256", NULL, NULL, pkey, NULL) != 1 ||
        EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)in, len) != 1) {
        fprintf(stderr, "signing failed\n");
        abort();
    }
    EVP_MD_CTX_free(ctx);
    return siglen;
}

/* DER ECDSA-Sig-Value to the JWS form R || S. */
static size_t der_to_raw(const unsigned char *der, size_t len, unsigned char *raw)
{
    const unsigned char *p = der;
    ECDSA_SIG *s = d2i_ECDSA_SIG(NULL, &p, (long)len);
    const BIGNUM *r, *ss;

    ECDSA_SIG_get0(s, &r, &ss);
    BN_bn2binpad(r, raw, 32);
    BN_bn2binpad(ss, raw + 32, 32);
    ECDSA_SIG_free(s);
    return 64;
}

static size_t sign(const struct signer *s, const char *in, size_t len, unsigned char *sig)
{
    unsigned char der[256];
    size_t n = 0;

    switch (s->kind) {
    case SIG_RS256:
    case SIG_ES256_DER:
        return sign_pkey(s->pkey, in, len, sig);
    case SIG_ES256:
        n = sign_pkey(s->pkey, in, len, der);
        return der_to_raw(der, n, sig);
    case SIG_HS256:
        EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, s->secret, s->secret_len,
                  (const unsigned char *)in, len, sig, 32, &n);
        return n;
    default:
        return 0;
    }
}

/* header.payload.signature from parts already encoded (or not quite: the tests' choice). */
static size_t make_token_b64(char *out, const char *header, const char *payload,
                             const struct signer *s)
{
    unsigned char sig[1024];
    size_t n = (size_t)sprintf(out, "%s.%s", header, payload), siglen;

    siglen = sign(s, out, n, sig);
    out[n++] = '.';
    n += b64url(sig, siglen, out + n);
    return n;
}

/* header.payload.signature from JSON texts; returns the token length. */
static size_t make_token(char *out, const char *header, const char *payload, const struct signer *s)
{
    char h[1024], p[TG_JWT_MAX_TOKEN * 2];

    b64url_str(header, h);
    b64url_str(payload, p);
    return make_token_b64(out, h, p, s);
}

static struct signer s_rsa, s_rsa2, s_ec, s_ec2, s_hs;

static struct tg_jwt_policy policy(unsigned algs)
{
    return (struct tg_jwt_policy){.algorithms = algs, .consumer_claim = "sub"};
}

static enum tg_jwt_result verify(const struct tg_jwt_keys *k, const struct tg_jwt_policy *p,
                                 const char *tok, char *consumer, size_t cap)
{
    char dummy[64];

    if (consumer == NULL) {
        consumer = dummy;
        cap = sizeof(dummy);
    }
    return tg_jwt_verify(k, p, tok, strlen(tok), NOW, consumer, cap);
}

/* Signs header/payload with s and verifies with k under p. */
static enum tg_jwt_result check(const struct tg_jwt_keys *k, const struct tg_jwt_policy *p,
                                const char *header, const char *payload, const struct signer *s)
{
    char tok[TG_JWT_MAX_TOKEN * 2];

    make_token(tok, header, payload, s);
    return verify(k, p, tok, NULL, 0);
}

static void pem_public(EVP_PKEY *pkey, char *out, size_t cap)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data;
    long n;

    PEM_write_bio_PUBKEY(b, pkey);
    n = BIO_get_mem_data(b, &data);
    snprintf(out, cap, "%.*s", (int)n, data);
    BIO_free(b);
}

/* A self-signed certificate for pkey, as PEM. */
static void pem_cert(EVP_PKEY *pkey, char *out, size_t cap)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_get_subject_name(x);
    BIO *b = BIO_new(BIO_s_mem());
    char *data;
    long n;

    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"jwt", -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509_set_pubkey(x, pkey);
    X509_sign(x, pkey, EVP_sha256());
    PEM_write_bio_X509(b, x);
    n = BIO_get_mem_data(b, &data);
    snprintf(out, cap, "%.*s", (int)n, data);
    BIO_free(b);
    X509_free(x);
}

static void bn_param_b64(EVP_PKEY *pkey, const char *param, size_t pad, char *out)
{
    BIGNUM *bn = NULL;
    unsigned char buf[512];
    int n;

    EVP_PKEY_get_bn_param(pkey, param, &bn);
    n = pad ? BN_bn2binpad(bn, buf, (int)pad) : BN_bn2bin(bn, buf);
    b64url(buf, (size_t)n, out);
    BN_free(bn);
}

static void jwk_rsa(EVP_PKEY *pkey, const char *extra, char *out, size_t cap)
{
    char n[1024], e[16];

    bn_param_b64(pkey, OSSL_PKEY_PARAM_RSA_N, 0, n);
    bn_param_b64(pkey, OSSL_PKEY_PARAM_RSA_E, 0, e);
    snprintf(out, cap, "{\"kty\":\"RSA\",%s\"n\":\"%s\",\"e\":\"%s\"}", extra, n, e);
}

static void jwk_ec(EVP_PKEY *pkey, const char *extra, char *out, size_t cap)
{
    unsigned char pub[65];
    char x[64], y[64];
    size_t n = 0;

    /* The encoded point is 04 || X || Y: the JWK coordinates are its halves. */
    EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub), &n);
    b64url(pub + 1, 32, x);
    b64url(pub + 33, 32, y);
    snprintf(out, cap, "{\"kty\":\"EC\",\"crv\":\"P-256\",%s\"x\":\"%s\",\"y\":\"%s\"}", extra, x,
             y);
}

static void jwk_oct(const void *k, size_t len, const char *extra, char *out, size_t cap)
{
    char b[256];

    b64url(k, len, b);
    snprintf(out, cap, "{\"kty\":\"oct\",%s\"k\":\"%s\"}", extra, b);
}

static struct tg_jwt_keys *keys_from(const char *text)
{
    char err[256] = "";
    struct tg_jwt_keys *k = tg_jwt_keys_parse(text, strlen(text), err, sizeof(err));

    if (k == NULL)
        fprintf(stderr, "keys: %s\n", err);
    return k;
}

/* ---- accepted tokens ---- */

TEST(test_valid_from_pem)
{
    struct tg_jwt_keys *kr = keys_from(rsa_pem), *ke = keys_from(ec_pem);
    struct tg_jwt_keys *ks = tg_jwt_keys_secret(secret, sizeof(secret) - 1);
    struct tg_jwt_policy p = policy(TG_JWT_RS256 | TG_JWT_ES256 | TG_JWT_HS256);
    char tok[4096], who[64];

    ASSERT(kr && ke && ks);
    ASSERT_EQ(1, tg_jwt_keys_count(kr));
    make_token(tok, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}", "{\"sub\":\"alice\",\"exp\":1800000000}",
               &s_rsa);
    ASSERT_EQ(TG_JWT_OK, verify(kr, &p, tok, who, sizeof(who)));
    ASSERT_STREQ("alice", who);
    make_token(tok, "{\"alg\":\"ES256\"}", "{\"sub\":\"bob\"}", &s_ec);
    ASSERT_EQ(TG_JWT_OK, verify(ke, &p, tok, who, sizeof(who)));
    ASSERT_STREQ("bob", who);
    make_token(tok, "{\"alg\":\"HS256\"}", "{\"sub\":\"carol\"}", &s_hs);
    ASSERT_EQ(TG_JWT_OK, verify(ks, &p, tok, who, sizeof(who)));
    ASSERT_STREQ("carol", who);
    /* A kid in the token is ignored when no key of the set has one. */
    ASSERT_EQ(TG_JWT_OK,
              check(kr, &p, "{\"alg\":\"RS256\",\"kid\":\"x\"}", "{\"sub\":\"a\"}", &s_rsa));
    tg_jwt_keys_free(kr);
    tg_jwt_keys_free(ke);
    tg_jwt_keys_free(ks);
}

TEST(test_valid_from_jwks)
{
    struct tg_jwt_keys *k = keys_from(jwks);
    struct tg_jwt_policy p = policy(TG_JWT_RS256 | TG_JWT_ES256 | TG_JWT_HS256);
    const char *pl = "{\"sub\":\"dave\"}";

    ASSERT(k != NULL);
    ASSERT_EQ(5, tg_jwt_keys_count(k));
    ASSERT_EQ(TG_JWT_OK, check(k, &p, "{\"alg\":\"RS256\",\"kid\":\"r1\"}", pl, &s_rsa));
    ASSERT_EQ(TG_JWT_OK, check(k, &p, "{\"alg\":\"RS256\"}", pl, &s_rsa));
    ASSERT_EQ(TG_JWT_OK, check(k, &p, "{\"alg\":\"RS256\",\"kid\":\"r2\"}", pl, &s_rsa2));
    ASSERT_EQ(TG_JWT_OK, check(k, &p, "{\"alg\":\"RS256\"}", pl, &s_rsa2));
    ASSERT_EQ(TG_JWT_OK, check(k, &p, "{\"alg\":\"ES256\",\"kid\":\"e1\"}", pl, &s_ec));
    ASSERT_EQ(TG_JWT_OK, check(k, &p, "{\"alg\":\"ES256\"}", pl, &s_ec));
    ASSERT_EQ(TG_JWT_OK, check(k, &p, "{\"alg\":\"HS256\",\"kid\":\"h1\"}", pl, &s_hs));
    ASSERT_EQ(TG_JWT_OK, check(k, &p, "{\"alg\":\"HS256\"}", pl, &s_hs));
    /* Escaped kid in the token and in the set mean the same string. */
    ASSERT_EQ(TG_JWT_OK, check(k, &p, "{\"alg\":\"ES256\",\"kid\":\"\\u0065\\u0031\"}", pl, &s_ec));
    tg_jwt_keys_free(k);
}

/* ES256 R and S are 32 bytes each whatever their value: leading zero bytes and high bits must
 * both survive the conversion to DER, so sign many times. */
TEST(test_es256_many_signatures)
{
    struct tg_jwt_keys *k = keys_from(ec_pem);
    struct tg_jwt_policy p = policy(TG_JWT_ES256);
    char pl[64];
    int bad = 0;

    for (int i = 0; i < 300; i++) {
        snprintf(pl, sizeof(pl), "{\"sub\":\"u%d\"}", i);
        bad += check(k, &p, "{\"alg\":\"ES256\"}", pl, &s_ec) != TG_JWT_OK;
    }
    ASSERT_EQ(0, bad);
    tg_jwt_keys_free(k);
}

/* RFC 7515 Appendix A.1: HS256 with the JWK key from the RFC, and its exact token. */
TEST(test_rfc7515_a1)
{
    static const char token[] = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9."
                                "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcG"
                                "xlLmNvbS9pc19yb290Ijp0cnVl"
                                "fQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    static const char jwk[] = "{\"keys\":[{\"kty\":\"oct\",\"k\":\"AyM1SysPpbyDfgZld3umj1qzKObwVMko"
                              "qQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow\"}]}";
    static const unsigned char key[64] = {
        0x03, 0x23, 0x35, 0x4b, 0x2b, 0x0f, 0xa5, 0xbc, 0x83, 0x7e, 0x06, 0x65, 0x77,
        0x7b, 0xa6, 0x8f, 0x5a, 0xb3, 0x28, 0xe6, 0xf0, 0x54, 0xc9, 0x28, 0xa9, 0x0f,
        0x84, 0xb2, 0xd2, 0x50, 0x2e, 0xbf, 0xd3, 0xfb, 0x5a, 0x92, 0xd2, 0x06, 0x47,
        0xef, 0x96, 0x8a, 0xb4, 0xc3, 0x77, 0x62, 0x3d, 0x22, 0x3d, 0x2e, 0x21, 0x72,
        0x05, 0x2e, 0x4f, 0x08, 0xc0, 0xcd, 0x9a, 0xf5, 0x67, 0xd0, 0x80, 0xa3};
    struct tg_jwt_keys *kj = keys_from(jwk), *ks = tg_jwt_keys_secret(key, sizeof(key));
    struct tg_jwt_policy p = {.algorithms = TG_JWT_HS256, .issuer = "joe", .consumer_claim = "iss"};
    char who[16];

    ASSERT(kj != NULL);
    ASSERT_EQ(TG_JWT_OK, tg_jwt_verify(kj, &p, token, strlen(token), 1300819370, who, sizeof(who)));
    ASSERT_STREQ("joe", who);
    ASSERT_EQ(TG_JWT_OK, tg_jwt_verify(ks, &p, token, strlen(token), 1300819370, who, sizeof(who)));
    ASSERT_EQ(TG_JWT_EXPIRED,
              tg_jwt_verify(ks, &p, token, strlen(token), 1300819381, who, sizeof(who)));
    ASSERT_STREQ("", who);
    p.algorithms = TG_JWT_RS256;
    ASSERT_EQ(TG_JWT_ALGORITHM,
              tg_jwt_verify(ks, &p, token, strlen(token), 1300819370, who, sizeof(who)));
    tg_jwt_keys_free(kj);
    tg_jwt_keys_free(ks);
}

/* ---- algorithm rules ---- */

TEST(test_alg_none_and_allow_list)
{
    struct tg_jwt_keys *k = keys_from(jwks);
    struct tg_jwt_policy p = policy(TG_JWT_RS256 | TG_JWT_ES256 | TG_JWT_HS256);
    struct tg_jwt_policy rs_only = policy(TG_JWT_RS256);
    const struct signer none = {SIG_NONE, NULL, NULL, 0};
    const char *pl = "{\"sub\":\"eve\"}";

    ASSERT_EQ(TG_JWT_ALGORITHM, check(k, &p, "{\"alg\":\"none\"}", pl, &none));
    ASSERT_EQ(TG_JWT_ALGORITHM, check(k, &p, "{\"alg\":\"None\"}", pl, &none));
    ASSERT_EQ(TG_JWT_ALGORITHM, check(k, &p, "{\"alg\":\"NONE\"}", pl, &none));
    ASSERT_EQ(TG_JWT_ALGORITHM, check(k, &p, "{\"typ\":\"JWT\"}", pl, &s_rsa));
    ASSERT_EQ(TG_JWT_ALGORITHM, check(k, &p, "{\"alg\":\"rs256\"}", pl, &s_rsa));
    ASSERT_EQ(TG_JWT_ALGORITHM, check(k, &p, "{\"alg\":\"RS256 \"}", pl, &s_rsa));
    ASSERT_EQ(TG_JWT_ALGORITHM, check(k, &p, "{\"alg\":\"RS512\"}", pl, &s_rsa));
    ASSERT_EQ(TG_JWT_ALGORITHM, check(k, &p, "{\"alg\":[\"RS256\"]}", pl, &s_rsa));
    /* Allowed by the key set but not by the route. */
    ASSERT_EQ(TG_JWT_ALGORITHM, check(k, &rs_only, "{\"alg\":\"HS256\"}", pl, &s_hs));
    ASSERT_EQ(TG_JWT_ALGORITHM, check(k, &rs_only, "{\"alg\":\"ES256\"}", pl, &s_ec));
    ASSERT_EQ(TG_JWT_OK, check(k, &rs_only, "{\"alg\":\"RS256\"}", pl, &s_rsa));
    tg_jwt_keys_free(k);
}

/* Each algorithm verifies only with its own key type. */
TEST(test_alg_confusion)
{
    struct tg_jwt_keys *kr = keys_from(rsa_pem), *ke = keys_from(ec_pem);
    struct tg_jwt_policy p = policy(TG_JWT_RS256 | TG_JWT_ES256 | TG_JWT_HS256);
    /* The classic attack: HMAC keyed with the public key text the verifier holds. */
    struct signer pem_as_secret = {SIG_HS256, NULL, rsa_pem, strlen(rsa_pem)};
    char text[8192], k1[1024], k2[1024];
    struct tg_jwt_keys *mixed;
    const char *pl = "{\"sub\":\"mallory\"}";

    ASSERT_EQ(TG_JWT_ALGORITHM, check(kr, &p, "{\"alg\":\"HS256\"}", pl, &pem_as_secret));
    /* With a secret in the set too, the PEM bytes are simply the wrong secret. */
    jwk_rsa(rsa, "", k1, sizeof(k1));
    jwk_oct(secret, sizeof(secret) - 1, "", k2, sizeof(k2));
    snprintf(text, sizeof(text), "{\"keys\":[%s,%s]}", k1, k2);
    mixed = keys_from(text);
    ASSERT_EQ(2, tg_jwt_keys_count(mixed));
    ASSERT_EQ(TG_JWT_SIGNATURE, check(mixed, &p, "{\"alg\":\"HS256\"}", pl, &pem_as_secret));
    ASSERT_EQ(TG_JWT_OK, check(mixed, &p, "{\"alg\":\"HS256\"}", pl, &s_hs));
    /* RSA-signed token claiming ES256 and the reverse; each against a set without that type. */
    ASSERT_EQ(TG_JWT_ALGORITHM, check(kr, &p, "{\"alg\":\"ES256\"}", pl, &s_ec));
    ASSERT_EQ(TG_JWT_ALGORITHM, check(ke, &p, "{\"alg\":\"RS256\"}", pl, &s_rsa));
    ASSERT_EQ(TG_JWT_ALGORITHM, check(mixed, &p, "{\"alg\":\"ES256\"}", pl, &s_ec));
    ASSERT_EQ(TG_JWT_ALGORITHM, check(NULL, &p, "{\"alg\":\"RS256\"}", pl, &s_rsa));
    tg_jwt_keys_free(kr);
    tg_jwt_keys_free(ke);
    tg_jwt_keys_free(mixed);
}

/* With a kid, only the key of that kid is tried. */
TEST(test_kid_selection)
{
    struct tg_jwt_keys *k = keys_from(jwks);
    struct tg_jwt_policy p = policy(TG_JWT_RS256 | TG_JWT_ES256);
    const char *pl = "{\"sub\":\"x\"}";

    ASSERT_EQ(TG_JWT_SIGNATURE, check(k, &p, "{\"alg\":\"RS256\",\"kid\":\"r1\"}", pl, &s_rsa2));
    ASSERT_EQ(TG_JWT_SIGNATURE, check(k, &p, "{\"alg\":\"RS256\",\"kid\":\"r2\"}", pl, &s_rsa));
    ASSERT_EQ(TG_JWT_UNKNOWN_KID, check(k, &p, "{\"alg\":\"RS256\",\"kid\":\"r3\"}", pl, &s_rsa));
    /* e1 names an EC key: no RSA key has it. */
    ASSERT_EQ(TG_JWT_UNKNOWN_KID, check(k, &p, "{\"alg\":\"RS256\",\"kid\":\"e1\"}", pl, &s_rsa));
    ASSERT_EQ(TG_JWT_MALFORMED, check(k, &p, "{\"alg\":\"RS256\",\"kid\":7}", pl, &s_rsa));
    ASSERT_STREQ("unknown_kid", tg_jwt_result_name(TG_JWT_UNKNOWN_KID));
    tg_jwt_keys_free(k);
}

/* Decodes base64url with OpenSSL's plain base64 decoder; returns the byte count. */
static int decode_b64url(const char *s, unsigned char *out)
{
    char b[256];
    size_t n = strlen(s);
    int len;

    for (size_t i = 0; i < n; i++)
        b[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
    while (n % 4)
        b[n++] = '=';
    len = EVP_DecodeBlock(out, (const unsigned char *)b, (int)n);
    return len - (b[n - 1] == '=') - (b[n - 2] == '=');
}

TEST(test_es256_signature_shape)
{
    struct tg_jwt_keys *k = keys_from(ec_pem);
    struct tg_jwt_policy p = policy(TG_JWT_ES256);
    const struct signer der = {SIG_ES256_DER, ec, NULL, 0};
    char tok[2048], *sig;
    unsigned char raw[128];

    /* A DER signature (what OpenSSL produces) is not the JWS form. */
    ASSERT_EQ(TG_JWT_SIGNATURE, check(k, &p, "{\"alg\":\"ES256\"}", "{\"sub\":\"a\"}", &der));
    /* A valid R || S with its last byte dropped, or with a byte added. */
    make_token(tok, "{\"alg\":\"ES256\"}", "{\"sub\":\"a\"}", &s_ec);
    ASSERT_EQ(TG_JWT_OK, verify(k, &p, tok, NULL, 0));
    sig = strrchr(tok, '.') + 1;
    ASSERT_EQ(64, decode_b64url(sig, raw));
    raw[64] = 0;
    b64url(raw, 63, sig);
    ASSERT_EQ(TG_JWT_SIGNATURE, verify(k, &p, tok, NULL, 0));
    b64url(raw, 65, sig);
    ASSERT_EQ(TG_JWT_SIGNATURE, verify(k, &p, tok, NULL, 0));
    b64url(raw, 64, sig);
    ASSERT_EQ(TG_JWT_OK, verify(k, &p, tok, NULL, 0));
    tg_jwt_keys_free(k);
}

static void flip(char *c)
{
    *c = *c == 'A' ? 'B' : 'A';
}

TEST(test_bad_signature)
{
    struct tg_jwt_keys *k = keys_from(jwks);
    struct tg_jwt_policy p = policy(TG_JWT_RS256 | TG_JWT_ES256 | TG_JWT_HS256);
    const struct signer *signers[] = {&s_rsa, &s_ec, &s_hs};
    const char *hdrs[] = {"{\"alg\":\"RS256\"}", "{\"alg\":\"ES256\"}", "{\"alg\":\"HS256\"}"};
    char tok[2048];

    for (size_t i = 0; i < 3; i++) {
        size_t n = make_token(tok, hdrs[i], "{\"sub\":\"a\"}", signers[i]);
        char *dot2 = strrchr(tok, '.'), saved = tok[n - 10];

        flip(&tok[n - 10]); /* in the signature */
        ASSERT_EQ(TG_JWT_SIGNATURE, verify(k, &p, tok, NULL, 0));
        tok[n - 10] = saved;
        ASSERT_EQ(TG_JWT_OK, verify(k, &p, tok, NULL, 0));
        flip(dot2 - 3); /* in the payload */
        ASSERT_EQ(TG_JWT_SIGNATURE, verify(k, &p, tok, NULL, 0));
    }
    /* A token signed by another key of the right type. */
    ASSERT_EQ(TG_JWT_SIGNATURE, check(k, &p, "{\"alg\":\"ES256\"}", "{\"sub\":\"a\"}", &s_ec2));
    tg_jwt_keys_free(k);
}

/* ---- claims ---- */

TEST(test_times)
{
    struct tg_jwt_keys *k = tg_jwt_keys_secret(secret, sizeof(secret) - 1);
    struct tg_jwt_policy p = policy(TG_JWT_HS256), lee = p;
    const char *h = "{\"alg\":\"HS256\"}";
    char pl[256];

    lee.leeway_s = 30;
#define CLAIMS(...) (snprintf(pl, sizeof(pl), __VA_ARGS__), pl)
    ASSERT_EQ(TG_JWT_OK, check(k, &p, h, CLAIMS("{\"sub\":\"a\",\"exp\":%lld}", NOW), &s_hs));
    ASSERT_EQ(TG_JWT_EXPIRED,
              check(k, &p, h, CLAIMS("{\"sub\":\"a\",\"exp\":%lld}", NOW - 1), &s_hs));
    ASSERT_EQ(TG_JWT_OK,
              check(k, &lee, h, CLAIMS("{\"sub\":\"a\",\"exp\":%lld}", NOW - 30), &s_hs));
    ASSERT_EQ(TG_JWT_EXPIRED,
              check(k, &lee, h, CLAIMS("{\"sub\":\"a\",\"exp\":%lld}", NOW - 31), &s_hs));
    ASSERT_EQ(TG_JWT_NOT_YET_VALID,
              check(k, &p, h, CLAIMS("{\"sub\":\"a\",\"nbf\":%lld}", NOW + 1), &s_hs));
    ASSERT_EQ(TG_JWT_OK, check(k, &p, h, CLAIMS("{\"sub\":\"a\",\"nbf\":%lld}", NOW), &s_hs));
    ASSERT_EQ(TG_JWT_OK,
              check(k, &lee, h, CLAIMS("{\"sub\":\"a\",\"nbf\":%lld}", NOW + 30), &s_hs));
    ASSERT_EQ(TG_JWT_NOT_YET_VALID,
              check(k, &lee, h, CLAIMS("{\"sub\":\"a\",\"nbf\":%lld}", NOW + 31), &s_hs));
    ASSERT_EQ(TG_JWT_NOT_YET_VALID,
              check(k, &p, h, CLAIMS("{\"sub\":\"a\",\"iat\":%lld}", NOW + 1), &s_hs));
    ASSERT_EQ(TG_JWT_OK, check(k, &lee, h, CLAIMS("{\"sub\":\"a\",\"iat\":%lld}", NOW + 5), &s_hs));
    ASSERT_EQ(TG_JWT_OK, check(k, &p, h, CLAIMS("{\"sub\":\"a\",\"iat\":%lld}", NOW - 100), &s_hs));
    /* Fractions round towards refusal: nbf NOW+0.5 is not yet, exp NOW+0.5 is still valid. */
    ASSERT_EQ(TG_JWT_NOT_YET_VALID,
              check(k, &p, h, CLAIMS("{\"sub\":\"a\",\"nbf\":%lld.5}", NOW), &s_hs));
    ASSERT_EQ(TG_JWT_OK, check(k, &p, h, CLAIMS("{\"sub\":\"a\",\"exp\":%lld.5}", NOW), &s_hs));
    ASSERT_EQ(TG_JWT_EXPIRED,
              check(k, &p, h, CLAIMS("{\"sub\":\"a\",\"exp\":%lld.5}", NOW - 1), &s_hs));
    /* Far future and far past do not overflow. */
    ASSERT_EQ(TG_JWT_OK,
              check(k, &lee, h, "{\"sub\":\"a\",\"exp\":99999999999999999999999}", &s_hs));
    ASSERT_EQ(TG_JWT_EXPIRED,
              check(k, &lee, h, "{\"sub\":\"a\",\"exp\":-99999999999999999999}", &s_hs));
    /* Not numbers. */
    ASSERT_EQ(TG_JWT_MALFORMED, check(k, &p, h, "{\"sub\":\"a\",\"exp\":\"1800000000\"}", &s_hs));
    ASSERT_EQ(TG_JWT_MALFORMED, check(k, &p, h, "{\"sub\":\"a\",\"exp\":1.8e9}", &s_hs));
    ASSERT_EQ(TG_JWT_MALFORMED, check(k, &p, h, "{\"sub\":\"a\",\"nbf\":true}", &s_hs));
    ASSERT_EQ(TG_JWT_MALFORMED, check(k, &p, h, "{\"sub\":\"a\",\"iat\":null}", &s_hs));
    ASSERT_EQ(TG_JWT_MALFORMED, check(k, &p, h, "{\"sub\":\"a\",\"exp\":1.}", &s_hs));
    ASSERT_EQ(TG_JWT_MALFORMED, check(k, &p, h, "{\"sub\":\"a\",\"exp\":[1]}", &s_hs));
    /* Two exp: parsers disagree on which counts. */
    ASSERT_EQ(TG_JWT_MALFORMED,
              check(k, &p, h, "{\"sub\":\"a\",\"exp\":1,\"exp\":1800000000}", &s_hs));
#undef CLAIMS
    tg_jwt_keys_free(k);
}

TEST(test_issuer_audience)
{
    struct tg_jwt_keys *k = tg_jwt_keys_secret(secret, sizeof(secret) - 1);
    struct tg_jwt_policy p = policy(TG_JWT_HS256);
    const char *h = "{\"alg\":\"HS256\"}";

    p.issuer = "https://id.example";
    p.audience = "api";
    ASSERT_EQ(
        TG_JWT_OK,
        check(k, &p, h, "{\"sub\":\"a\",\"iss\":\"https://id.example\",\"aud\":\"api\"}", &s_hs));
    /* PHP's json_encode escapes slashes. */
    ASSERT_EQ(TG_JWT_OK,
              check(k, &p, h, "{\"sub\":\"a\",\"iss\":\"https:\\/\\/id.example\",\"aud\":\"api\"}",
                    &s_hs));
    ASSERT_EQ(
        TG_JWT_ISSUER,
        check(k, &p, h, "{\"sub\":\"a\",\"iss\":\"https://evil.example\",\"aud\":\"api\"}", &s_hs));
    ASSERT_EQ(
        TG_JWT_ISSUER,
        check(k, &p, h, "{\"sub\":\"a\",\"iss\":\"https://id.example/\",\"aud\":\"api\"}", &s_hs));
    ASSERT_EQ(TG_JWT_ISSUER, check(k, &p, h, "{\"sub\":\"a\",\"aud\":\"api\"}", &s_hs));
    ASSERT_EQ(TG_JWT_MALFORMED,
              check(k, &p, h, "{\"sub\":\"a\",\"iss\":5,\"aud\":\"api\"}", &s_hs));
    p.issuer = NULL;
    ASSERT_EQ(TG_JWT_AUDIENCE, check(k, &p, h, "{\"sub\":\"a\",\"aud\":\"apix\"}", &s_hs));
    ASSERT_EQ(TG_JWT_AUDIENCE, check(k, &p, h, "{\"sub\":\"a\"}", &s_hs));
    ASSERT_EQ(TG_JWT_OK, check(k, &p, h, "{\"sub\":\"a\",\"aud\":[\"web\",\"api\"]}", &s_hs));
    ASSERT_EQ(TG_JWT_AUDIENCE, check(k, &p, h, "{\"sub\":\"a\",\"aud\":[\"web\",\"ap\"]}", &s_hs));
    ASSERT_EQ(TG_JWT_AUDIENCE, check(k, &p, h, "{\"sub\":\"a\",\"aud\":[]}", &s_hs));
    ASSERT_EQ(TG_JWT_MALFORMED, check(k, &p, h, "{\"sub\":\"a\",\"aud\":[\"api\",3]}", &s_hs));
    ASSERT_EQ(TG_JWT_MALFORMED, check(k, &p, h, "{\"sub\":\"a\",\"aud\":{\"api\":1}}", &s_hs));
    /* An "aud" nested elsewhere is not the claim. */
    ASSERT_EQ(TG_JWT_AUDIENCE, check(k, &p, h, "{\"sub\":\"a\",\"x\":{\"aud\":\"api\"}}", &s_hs));
    p.audience = NULL;
    ASSERT_EQ(TG_JWT_OK, check(k, &p, h, "{\"sub\":\"a\",\"aud\":\"other\"}", &s_hs));
    tg_jwt_keys_free(k);
}

TEST(test_consumer)
{
    struct tg_jwt_keys *k = tg_jwt_keys_secret(secret, sizeof(secret) - 1);
    struct tg_jwt_policy p = policy(TG_JWT_HS256);
    const char *h = "{\"alg\":\"HS256\"}";
    char tok[1024], who[8];

#define WHO(claims) (make_token(tok, h, claims, &s_hs), verify(k, &p, tok, who, sizeof(who)))
    ASSERT_EQ(TG_JWT_OK, WHO("{\"sub\":\"1234567\"}")); /* exactly cap - 1 */
    ASSERT_STREQ("1234567", who);
    ASSERT_EQ(TG_JWT_NO_CONSUMER, WHO("{\"sub\":\"12345678\"}"));
    ASSERT_STREQ("", who);
    ASSERT_EQ(TG_JWT_NO_CONSUMER, WHO("{\"name\":\"x\"}"));
    ASSERT_EQ(TG_JWT_NO_CONSUMER, WHO("{\"sub\":42}"));
    ASSERT_EQ(TG_JWT_NO_CONSUMER, WHO("{\"sub\":\"\"}"));
    ASSERT_EQ(TG_JWT_NO_CONSUMER, WHO("{\"sub\":\"ad\\u0000x\"}"));
    ASSERT_EQ(TG_JWT_NO_CONSUMER, WHO("{\"sub\":\"a\\nb\"}"));
    ASSERT_EQ(TG_JWT_NO_CONSUMER, WHO("{\"sub\":\"a\\ud800\"}"));
    ASSERT_EQ(TG_JWT_OK, WHO("{\"sub\":\"a\\\"b\\\\c\"}"));
    ASSERT_STREQ("a\"b\\c", who);
    ASSERT_EQ(TG_JWT_OK, WHO("{\"sub\":\"\\u00e9\\ud83d\\ude00\"}"));
    ASSERT_STREQ("\xc3\xa9\xf0\x9f\x98\x80", who);
    /* The claim named by the policy, found as the top-level member only. */
    p.consumer_claim = "client_id";
    ASSERT_EQ(TG_JWT_OK, WHO("{\"sub\":\"s\",\"n\":{\"client_id\":\"no\"},\"client_id\":\"c9\"}"));
    ASSERT_STREQ("c9", who);
    ASSERT_EQ(TG_JWT_NO_CONSUMER, WHO("{\"sub\":\"s\",\"n\":{\"client_id\":\"no\"}}"));
    p.consumer_claim = "sub";
    ASSERT_EQ(TG_JWT_MALFORMED, WHO("{\"sub\":\"a\",\"sub\":\"b\"}"));
    ASSERT_EQ(TG_JWT_MALFORMED, WHO("{\"sub\":\"a\",\"s\\u0075b\":\"b\"}"));
    p.consumer_claim = NULL;
    ASSERT_EQ(TG_JWT_OK, WHO("{\"name\":\"x\"}"));
    ASSERT_STREQ("", who);
#undef WHO
    tg_jwt_keys_free(k);
}

/* ---- malformed input ---- */

static enum tg_jwt_result verify_parts(const struct tg_jwt_keys *k, const char *hdr_b64,
                                       const char *pl_b64, const char *sig_b64)
{
    struct tg_jwt_policy p = policy(TG_JWT_HS256);
    char tok[4096];

    snprintf(tok, sizeof(tok), "%s.%s.%s", hdr_b64, pl_b64, sig_b64);
    return verify(k, &p, tok, NULL, 0);
}

TEST(test_malformed)
{
    struct tg_jwt_keys *k = tg_jwt_keys_secret(secret, sizeof(secret) - 1);
    struct tg_jwt_policy p = policy(TG_JWT_HS256);
    char tok[TG_JWT_MAX_TOKEN * 2], h[256], pl[256], big[8200];
    bool seen_max, seen_over;
    size_t n;

    b64url_str("{\"alg\":\"HS256\"}", h);
    b64url_str("{\"sub\":\"a\"}", pl);
    n = make_token(tok, "{\"alg\":\"HS256\"}", "{\"sub\":\"a\"}", &s_hs);
    ASSERT_EQ(TG_JWT_OK, verify(k, &p, tok, NULL, 0));
    ASSERT_EQ(TG_JWT_MALFORMED, tg_jwt_verify(k, &p, tok, 0, NOW, big, 8));
    ASSERT_EQ(TG_JWT_MALFORMED, verify(k, &p, "", NULL, 0));
    ASSERT_EQ(TG_JWT_MALFORMED, verify(k, &p, h, NULL, 0));
    tok[strchr(tok, '.') - tok + 1 + strlen(pl)] = '\0'; /* header.payload */
    ASSERT_EQ(TG_JWT_MALFORMED, verify(k, &p, tok, NULL, 0));
    n = make_token(tok, "{\"alg\":\"HS256\"}", "{\"sub\":\"a\"}", &s_hs);
    memcpy(tok + n, ".x", 3); /* a fourth part */
    ASSERT_EQ(TG_JWT_MALFORMED, verify(k, &p, tok, NULL, 0));
    n = make_token(tok, "{\"alg\":\"HS256\"}", "{\"sub\":\"a\"}", &s_hs);
    memcpy(tok + n, "=", 2); /* padding */
    ASSERT_EQ(TG_JWT_MALFORMED, verify(k, &p, tok, NULL, 0));
    /* Bad base64 in each part: '+' and '/' are the other alphabet, "Q" is a lone 6 bits. */
    ASSERT_EQ(TG_JWT_MALFORMED, verify_parts(k, "eyJ+bGciOiJIUzI1NiJ9", pl, "AAAA"));
    make_token_b64(tok, h, "eyJzdWIiOiJhIn0/", &s_hs); /* signed: fails on decoding */
    ASSERT_EQ(TG_JWT_MALFORMED, verify(k, &p, tok, NULL, 0));
    make_token_b64(tok, h, "eyJzdWIiOiJhIn0", &s_hs);
    ASSERT_EQ(TG_JWT_OK, verify(k, &p, tok, NULL, 0));
    ASSERT_EQ(TG_JWT_MALFORMED, verify_parts(k, h, pl, "AAAAQ"));
    ASSERT_EQ(TG_JWT_MALFORMED, verify_parts(k, h, pl, "AAA*"));
    /* "QR" decodes to 'A' with 4 non-zero unused bits; "QQ" is the canonical form. */
    ASSERT_EQ(TG_JWT_MALFORMED, verify_parts(k, h, pl, "QR"));
    ASSERT_EQ(TG_JWT_SIGNATURE, verify_parts(k, h, pl, "QQ"));
    /* Headers that are not one JSON object. */
    static const char *const bad_headers[] = {
        "[\"HS256\"]",
        "\"HS256\"",
        "{\"alg\":\"HS256\"",
        "{\"alg\":\"HS256\"}x",
        "{\"alg\":\"HS256\"}{}",
        "{\"alg\" \"HS256\"}",
        "{\"alg\":\"HS256\",\"x\"}",
        "{alg:1}",
        "",
        "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}",
        "{\"alg\":\"HS256\",\"alg\":\"HS256\"}",
        "{\"alg\":\"HS256\"}\n,",
        "{\"alg\":\"HS256\",\"x\":1:2}",
        "{\"alg\":\"HS256\",\"x\":tru}",
        "{\"alg\":\"HS256\",\"x\":01}",
        "{\"alg\":\"HS256\",\"x\":-}",
        "{\"alg\":\"HS256\",\"x\":1e}",
        "{\"alg\":\"HS256\",\"x\":nulls}",
        "{\"alg\":\"HS256\",\"x\":[\"a\":1]}",
    };
    for (size_t i = 0; i < TG_ARRAY_SIZE(bad_headers); i++) {
        b64url_str(bad_headers[i], h);
        if (verify_parts(k, h, pl, "AAAA") != TG_JWT_MALFORMED)
            UNIT_FAIL("header %s accepted", bad_headers[i]);
    }
    /* A NUL hiding the rest of the header from jsmn. */
    b64url((const unsigned char *)"{\"alg\":\"HS256\"}\0{", 17, h);
    ASSERT_EQ(TG_JWT_MALFORMED, verify_parts(k, h, pl, "AAAA"));
    /* A payload that is not an object, correctly signed. */
    ASSERT_EQ(TG_JWT_MALFORMED, check(k, &p, "{\"alg\":\"HS256\"}", "[1]", &s_hs));
    ASSERT_EQ(TG_JWT_MALFORMED, check(k, &p, "{\"alg\":\"HS256\"}", "{\"sub\":\"a\"} 1", &s_hs));
    /* Whitespace around the object is fine. */
    ASSERT_EQ(TG_JWT_OK, check(k, &p, " {\"alg\":\"HS256\"}\r\n", "\t{\"sub\":\"a\"} ", &s_hs));
    /* More than 128 JSON tokens (64 members take 129 with the object). */
    n = (size_t)snprintf(big, sizeof(big), "{\"sub\":\"a\"");
    for (int i = 0; i < 63; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, ",\"c%d\":%d", i, i);
    memcpy(big + n, "}", 2);
    ASSERT_EQ(TG_JWT_MALFORMED, check(k, &p, "{\"alg\":\"HS256\"}", big, &s_hs));
    /* Exactly 8 KiB is fine, a few bytes more is not (though it would still decode). */
    seen_max = seen_over = false;
    for (size_t pad = 6000; pad < 6160; pad++) {
        n = (size_t)snprintf(big, sizeof(big), "{\"sub\":\"a\",\"pad\":\"");
        memset(big + n, 'x', pad);
        memcpy(big + n + pad, "\"}", 3);
        n = make_token(tok, "{\"alg\":\"HS256\"}", big, &s_hs);
        if (n == TG_JWT_MAX_TOKEN) {
            seen_max = true;
            ASSERT_EQ(TG_JWT_OK, verify(k, &p, tok, NULL, 0));
        } else if (n > TG_JWT_MAX_TOKEN) {
            seen_over = true;
            ASSERT_EQ(TG_JWT_MALFORMED, verify(k, &p, tok, NULL, 0));
        }
    }
    ASSERT(seen_max && seen_over);
    tg_jwt_keys_free(k);
}

/* ---- key sets ---- */

TEST(test_keys_parse)
{
    char text[16384], cert[4096], j1[2048], j2[2048], err[256];
    struct tg_jwt_keys *k;
    struct tg_jwt_policy p = policy(TG_JWT_RS256 | TG_JWT_ES256);
    EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    char small_pem[2048];

    /* PEM: several blocks, a certificate among them, a private key skipped. */
    pem_cert(ec2, cert, sizeof(cert));
    snprintf(text, sizeof(text),
             "comment\n%s%s%s-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
             rsa_pem, cert, ec_pem);
    k = keys_from(text);
    ASSERT_EQ(3, tg_jwt_keys_count(k));
    ASSERT_EQ(TG_JWT_OK, check(k, &p, "{\"alg\":\"ES256\"}", "{\"sub\":\"a\"}", &s_ec2));
    ASSERT_EQ(TG_JWT_OK, check(k, &p, "{\"alg\":\"ES256\"}", "{\"sub\":\"a\"}", &s_ec));
    tg_jwt_keys_free(k);
    /* RSA under 2048 bits is refused (RFC 7518 §3.3). */
    pem_public(small, small_pem, sizeof(small_pem));
    ASSERT(tg_jwt_keys_parse(small_pem, strlen(small_pem), err, sizeof(err)) == NULL);
    ASSERT(strstr(err, "2048") != NULL);
    ASSERT(tg_jwt_keys_parse("garbage", 7, err, sizeof(err)) == NULL);
    ASSERT(tg_jwt_keys_parse("{\"keys\":[]}", 11, err, sizeof(err)) == NULL);
    ASSERT(tg_jwt_keys_parse("{\"keys\":{}}", 11, err, sizeof(err)) == NULL);
    /* JWKS: keys for encryption, other algorithms, other types, off-curve points skipped. */
    jwk_rsa(rsa, "\"use\":\"enc\",", j1, sizeof(j1));
    jwk_ec(ec, "\"alg\":\"ES384\",", j2, sizeof(j2));
    snprintf(text, sizeof(text),
             "{\"keys\":[%s,%s,{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AAAA\"},"
             "{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"AAAA\",\"y\":\"AAAA\"},"
             "{\"kty\":\"oct\",\"k\":\"\"},{\"kty\":\"RSA\",\"n\":\"AQAB\"},\"x\"]}",
             j1, j2);
    ASSERT(tg_jwt_keys_parse(text, strlen(text), err, sizeof(err)) == NULL);
    jwk_ec(ec, "", j2, sizeof(j2));
    flip(&j2[strlen(j2) - 4]); /* y no longer matches x */
    snprintf(text, sizeof(text), "{\"keys\":[%s]}", j2);
    ASSERT(tg_jwt_keys_parse(text, strlen(text), err, sizeof(err)) == NULL);
    /* A kid "r\u0000x" must not become "r" (and match a token's kid "r"): the key is refused. */
    jwk_rsa(rsa, "\"kid\":\"r\\u0000x\",", j1, sizeof(j1));
    ASSERT(tg_jwt_keys_parse(j1, strlen(j1), err, sizeof(err)) == NULL);
    /* A lone JWK is a set of one; "use":"sig" and a matching "alg" are fine. */
    jwk_rsa(rsa, "\"use\":\"sig\",\"alg\":\"RS256\",", j1, sizeof(j1));
    k = keys_from(j1);
    ASSERT_EQ(1, tg_jwt_keys_count(k));
    tg_jwt_keys_free(k);
    ASSERT(tg_jwt_keys_secret("", 0) == NULL);
    tg_jwt_keys_free(NULL);
    EVP_PKEY_free(small);
}

/* Verification leaves errors already queued on the thread alone, and adds none. */
TEST(test_error_queue_kept)
{
    struct tg_jwt_keys *k = keys_from(rsa_pem);
    struct tg_jwt_policy p = policy(TG_JWT_RS256);
    char tok[2048];
    size_t n;

    ERR_clear_error();
    ERR_raise(ERR_LIB_USER, 42);
    n = make_token(tok, "{\"alg\":\"RS256\"}", "{\"sub\":\"a\"}", &s_rsa);
    flip(&tok[n - 5]);
    ASSERT_EQ(TG_JWT_SIGNATURE, verify(k, &p, tok, NULL, 0));
    ASSERT_EQ(ERR_PACK(ERR_LIB_USER, 0, 42), ERR_peek_last_error());
    ERR_get_error();
    ASSERT_EQ(0, ERR_peek_error());
    tg_jwt_keys_free(k);
}

/* Worker threads share one key set. */
struct shared_run {
    const struct tg_jwt_keys *k;
    const char *tok[3];
    int bad;
};

static void *verify_thread(void *arg)
{
    struct shared_run *r = arg;
    struct tg_jwt_policy p = policy(TG_JWT_RS256 | TG_JWT_ES256 | TG_JWT_HS256);

    for (int i = 0; i < 300; i++)
        r->bad += verify(r->k, &p, r->tok[i % 3], NULL, 0) != TG_JWT_OK;
    return NULL;
}

TEST(test_threads)
{
    static char t0[2048], t1[2048], t2[2048];
    struct tg_jwt_keys *k = keys_from(jwks);
    struct shared_run runs[4];
    pthread_t th[4];

    make_token(t0, "{\"alg\":\"RS256\",\"kid\":\"r2\"}", "{\"sub\":\"a\"}", &s_rsa2);
    make_token(t1, "{\"alg\":\"ES256\"}", "{\"sub\":\"a\"}", &s_ec);
    make_token(t2, "{\"alg\":\"HS256\"}", "{\"sub\":\"a\"}", &s_hs);
    for (int i = 0; i < 4; i++) {
        runs[i] = (struct shared_run){k, {t0, t1, t2}, 0};
        pthread_create(&th[i], NULL, verify_thread, &runs[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ASSERT_EQ(0, runs[i].bad);
    }
    tg_jwt_keys_free(k);
}

/* ---- JWKS fetch from a loopback server ---- */

struct server {
    int fd;
    int port;
    const char *const *replies; /* one per connection; NULL = accept and stay silent */
    int count;
};

static void *serve(void *arg)
{
    struct server *s = arg;

    for (int i = 0; i < s->count; i++) {
        int c = accept(s->fd, NULL, NULL);
        char req[4096];
        ssize_t n;

        if (c < 0)
            break;
        n = recv(c, req, sizeof(req) - 1, 0); /* the request fits one segment */
        if (n > 0 && s->replies[i] != NULL) {
            if (strncmp(req, "GET /jwks?x=1 HTTP/1.1\r\nHost: 127.0.0.1:", 40) != 0)
                fprintf(stderr, "unexpected request: %.*s\n", (int)n, req);
            send(c, s->replies[i], strlen(s->replies[i]), MSG_NOSIGNAL);
        } else if (s->replies[i] == NULL) {
            usleep(400 * 1000); /* longer than the client's timeout */
        }
        close(c);
    }
    return NULL;
}

static void server_start(struct server *s, pthread_t *th)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);

    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    bind(s->fd, (struct sockaddr *)&a, sizeof(a));
    listen(s->fd, 8);
    getsockname(s->fd, (struct sockaddr *)&a, &len);
    s->port = ntohs(a.sin_port);
    pthread_create(th, NULL, serve, s);
}

TEST(test_fetch)
{
    static char r_len[20000], r_chunked[20000], r_close[20000], r_big[256];
    const char *replies[] = {r_len,
                             r_chunked,
                             r_close,
                             "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                             r_big,
                             "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"
                             "Content-Length: 2\r\n\r\n{}",
                             "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                             NULL};
    struct server s = {.replies = replies, .count = (int)TG_ARRAY_SIZE(replies)};
    struct tg_jwt_policy p = policy(TG_JWT_RS256 | TG_JWT_ES256 | TG_JWT_HS256);
    size_t jl = strlen(jwks), half = jl / 2, len = 0;
    char url[128], err[256], tok[2048];
    pthread_t th;
    char *body;
    struct tg_jwt_keys *k;

    snprintf(r_len, sizeof(r_len), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s", jl, jwks);
    snprintf(r_chunked, sizeof(r_chunked),
             "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%zx\r\n%.*s\r\n%zx;ext=1\r\n%s"
             "\r\n0\r\n\r\n",
             half, (int)half, jwks, jl - half, jwks + half);
    snprintf(r_close, sizeof(r_close),
             "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n%s", jwks);
    snprintf(r_big, sizeof(r_big), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n",
             TG_JWT_MAX_JWKS + 1);
    server_start(&s, &th);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/jwks?x=1#frag", s.port);
    make_token(tok, "{\"alg\":\"ES256\",\"kid\":\"e1\"}", "{\"sub\":\"f\"}", &s_ec);
    for (int i = 0; i < 3; i++) { /* Content-Length, chunked, close-delimited */
        body = tg_jwt_fetch(url, 2000, &len, err, sizeof(err));
        if (body == NULL) {
            UNIT_FAIL("fetch %d: %s", i, err);
            continue;
        }
        ASSERT_EQ(jl, len);
        ASSERT_STREQ(jwks, body);
        k = tg_jwt_keys_parse(body, len, err, sizeof(err));
        ASSERT_EQ(TG_JWT_OK, verify(k, &p, tok, NULL, 0));
        tg_jwt_keys_free(k);
        free(body);
    }
    ASSERT(tg_jwt_fetch(url, 2000, &len, err, sizeof(err)) == NULL);
    ASSERT_STREQ("HTTP status 404", err);
    ASSERT(tg_jwt_fetch(url, 2000, &len, err, sizeof(err)) == NULL);
    ASSERT(strstr(err, "larger") != NULL);
    body = tg_jwt_fetch(url, 2000, &len, err, sizeof(err));
    ASSERT(body != NULL && len == 2 && strcmp(body, "{}") == 0);
    free(body);
    ASSERT(tg_jwt_fetch(url, 2000, &len, err, sizeof(err)) == NULL);
    ASSERT(strstr(err, "closed before the body ended") != NULL);
    ASSERT(tg_jwt_fetch(url, 150, &len, err, sizeof(err)) == NULL); /* silent server */
    ASSERT(strstr(err, "timed out") != NULL);
    pthread_join(th, NULL);
    close(s.fd);
    /* Nobody listens there any more. */
    ASSERT(tg_jwt_fetch(url, 500, &len, err, sizeof(err)) == NULL);
    ASSERT(strstr(err, "connect") != NULL);
    ASSERT(tg_jwt_fetch("ftp://127.0.0.1/x", 100, &len, err, sizeof(err)) == NULL);
    ASSERT(tg_jwt_fetch("http://u:p@127.0.0.1/x", 100, &len, err, sizeof(err)) == NULL);
    ASSERT(tg_jwt_fetch("http://127.0.0.1:70000/x", 100, &len, err, sizeof(err)) == NULL);
    ASSERT(tg_jwt_fetch("http://127.0.0.1/a b", 100, &len, err, sizeof(err)) == NULL);
    ASSERT(tg_jwt_fetch("http://bad\r\nhost/", 100, &len, err, sizeof(err)) == NULL);
}

/* ---- timing ---- */

static double bench(const struct tg_jwt_keys *k, const char *tok, int n)
{
    struct tg_jwt_policy p = policy(TG_JWT_RS256 | TG_JWT_ES256 | TG_JWT_HS256);
    struct timespec a, b;
    int bad = 0;

    p.issuer = "https://id.example";
    p.audience = "api";
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++)
        bad += verify(k, &p, tok, NULL, 0) != TG_JWT_OK;
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (bad)
        UNIT_FAIL("%d verifications failed", bad);
    return ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / n / 1000.0;
}

TEST(test_timing)
{
    static const char claims[] = "{\"iss\":\"https://id.example\",\"aud\":[\"web\",\"api\"],"
                                 "\"sub\":\"user-1234\",\"exp\":1800000000,\"iat\":1690000000,"
                                 "\"scope\":\"read write\",\"jti\":\"abcdef0123456789\"}";
    struct tg_jwt_keys *k = keys_from(jwks);
    char t_rs[2048], t_es[2048], t_hs[2048];

    make_token(t_rs, "{\"alg\":\"RS256\",\"kid\":\"r1\",\"typ\":\"JWT\"}", claims, &s_rsa);
    make_token(t_es, "{\"alg\":\"ES256\",\"kid\":\"e1\",\"typ\":\"JWT\"}", claims, &s_ec);
    make_token(t_hs, "{\"alg\":\"HS256\",\"kid\":\"h1\",\"typ\":\"JWT\"}", claims, &s_hs);
    bench(k, t_hs, 200); /* warm up */
    printf("jwt verify: RS256 %.1f us, ES256 %.1f us, HS256 %.2f us\n", bench(k, t_rs, 2000),
           bench(k, t_es, 2000), bench(k, t_hs, 20000));
    tg_jwt_keys_free(k);
}

static void setup(void)
{
    char k1[2048], k2[2048], k3[1024], k4[1024], k5[2048];

    rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    rsa2 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    ec2 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!rsa || !rsa2 || !ec || !ec2) {
        fprintf(stderr, "key generation failed\n");
        exit(1);
    }
    s_rsa = (struct signer){SIG_RS256, rsa, NULL, 0};
    s_rsa2 = (struct signer){SIG_RS256, rsa2, NULL, 0};
    s_ec = (struct signer){SIG_ES256, ec, NULL, 0};
    s_ec2 = (struct signer){SIG_ES256, ec2, NULL, 0};
    s_hs = (struct signer){SIG_HS256, NULL, secret, sizeof(secret) - 1};
    pem_public(rsa, rsa_pem, sizeof(rsa_pem));
    pem_public(ec, ec_pem, sizeof(ec_pem));
    jwk_rsa(rsa, "\"kid\":\"r1\",\"use\":\"sig\",", k1, sizeof(k1));
    jwk_rsa(rsa2, "\"kid\":\"r2\",\"alg\":\"RS256\",", k2, sizeof(k2));
    /* Escaped in the document: the kid is "e1". */
    jwk_ec(ec, "\"kid\":\"\\u00651\",", k3, sizeof(k3));
    jwk_oct(secret, sizeof(secret) - 1, "\"kid\":\"h1\",", k4, sizeof(k4));
    jwk_oct("another secret", 14, "\"kid\":\"h2\",\"use\":\"sig\",", k5, sizeof(k5));
    snprintf(jwks, sizeof(jwks), "{\"keys\":[%s,\n%s,\n%s,\n%s,\n%s]}\n", k1, k2, k3, k4, k5);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    setup();
    RUN(test_valid_from_pem);
    RUN(test_valid_from_jwks);
    RUN(test_es256_many_signatures);
    RUN(test_rfc7515_a1);
    RUN(test_alg_none_and_allow_list);
    RUN(test_alg_confusion);
    RUN(test_kid_selection);
    RUN(test_es256_signature_shape);
    RUN(test_bad_signature);
    RUN(test_times);
    RUN(test_issuer_audience);
    RUN(test_consumer);
    RUN(test_malformed);
    RUN(test_keys_parse);
    RUN(test_error_queue_kept);
    RUN(test_threads);
    RUN(test_fetch);
    RUN(test_timing);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(rsa2);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(ec2);
    return unit_report();
}
