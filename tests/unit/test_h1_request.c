/*
 * Request-head parser: valid requests fed as every prefix, the invalid-input table covering
 * DESIGN §9 line by line, limits, header ids and hop-by-hop marking.
 */
#include <stdlib.h>

#include "core/core.h"
#include "http/h1.h"
#include "unit.h"

#define S(lit) lit, sizeof(lit) - 1

static const struct tg_h1_limits default_lim = {8192, 32768, 100};
static struct tg_http_header hdrs[128];

/* Parses from an exact-size heap copy so that ASan catches any read past the end. */
static ssize_t parse_copy(const char *s, size_t n, const struct tg_h1_limits *lim, int *status)
{
    struct tg_h1_request req;
    char *b = malloc(n ? n : 1);
    ssize_t r;

    memcpy(b, s, n);
    req.headers = hdrs;
    r = tg_h1_parse_request(b, n, &req, lim);
    if (status != NULL)
        *status = req.status;
    if (r == TG_H1_INVALID && req.error == NULL)
        UNIT_FAIL("invalid without error reason");
    free(b);
    return r;
}

/*
 * Feeds every prefix of a valid input (each must be incomplete), then the whole input, and
 * leaves the result of the whole input in *req (pointing into s).
 */
static ssize_t parse_prefixes(const char *s, size_t n, struct tg_h1_request *req,
                              const struct tg_h1_limits *lim)
{
    ssize_t r;

    for (size_t k = 0; k < n; k++) {
        r = parse_copy(s, k, lim, NULL);
        if (r != TG_H1_INCOMPLETE) {
            UNIT_FAIL("prefix %zu of \"%.*s\": expected incomplete, got %zd", k, (int)n, s, r);
            break;
        }
    }
    r = parse_copy(s, n, lim, NULL);
    req->headers = hdrs;
    ASSERT_EQ(r, tg_h1_parse_request(s, n, req, lim));
    return r;
}

static bool inside(struct tg_str v, const char *buf, size_t len)
{
    return v.len == 0 || (v.base >= buf && v.base + v.len <= buf + len);
}

struct valid_case {
    const char *in;
    int method_id;
    const char *method, *target, *host, *path;
    int minor;
    int body;
    uint64_t cl;
    bool keep_alive, expect, upgrade, absolute;
    size_t num_headers;
};

static const struct valid_case valid[] = {
    {"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", TG_METHOD_GET, "GET", "/", "example.com", "/",
     1, TG_BODY_NONE, 0, true, false, false, false, 1},
    {"GET /index.html?q=1&r=%20 HTTP/1.1\r\n"
     "Host: www.example.com\r\n"
     "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0\r\n"
     "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
     "Accept-Language: en-US,en;q=0.5\r\n"
     "Accept-Encoding: gzip, deflate, br\r\n"
     "Connection: keep-alive\r\n"
     "Cookie: session=abc123; theme=dark\r\n"
     "Upgrade-Insecure-Requests: 1\r\n\r\n",
     TG_METHOD_GET, "GET", "/index.html?q=1&r=%20", "www.example.com", "/index.html?q=1&r=%20", 1,
     TG_BODY_NONE, 0, true, false, false, false, 8},
    {"POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", TG_METHOD_POST, "POST", "/api",
     "a", "/api", 1, TG_BODY_LENGTH, 5, true, false, false, false, 2},
    {"POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", TG_METHOD_POST, "POST", "/api",
     "a", "/api", 1, TG_BODY_NONE, 0, true, false, false, false, 2},
    /* identical duplicate Content-Length values merge (§9.3) */
    {"PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\ncontent-length:   7  \r\n\r\n",
     TG_METHOD_PUT, "PUT", "/x", "a", "/x", 1, TG_BODY_LENGTH, 7, true, false, false, false, 3},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n", TG_METHOD_POST,
     "POST", "/", "a", "/", 1, TG_BODY_LENGTH, UINT64_C(9223372036854775807), true, false, false,
     false, 2},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", TG_METHOD_POST, "POST",
     "/", "a", "/", 1, TG_BODY_CHUNKED, 0, true, false, false, false, 2},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n", TG_METHOD_POST, "POST",
     "/", "a", "/", 1, TG_BODY_CHUNKED, 0, true, false, false, false, 2},
    {"GET / HTTP/1.0\r\n\r\n", TG_METHOD_GET, "GET", "/", "", "/", 0, TG_BODY_NONE, 0, false, false,
     false, false, 0},
    {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", TG_METHOD_GET, "GET", "/", "", "/", 0,
     TG_BODY_NONE, 0, true, false, false, false, 1},
    {"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", TG_METHOD_GET, "GET", "/", "", "/",
     0, TG_BODY_NONE, 0, false, false, false, false, 1},
    /* HTTP/1.0 ignores 100-continue and Upgrade (RFC 9110 §10.1.1, §7.8) */
    {"POST / HTTP/1.0\r\nExpect: 100-continue\r\nUpgrade: x\r\nConnection: upgrade\r\n"
     "Content-Length: 1\r\n\r\n",
     TG_METHOD_POST, "POST", "/", "", "/", 0, TG_BODY_LENGTH, 1, false, false, false, false, 4},
    {"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", TG_METHOD_GET, "GET", "/", "a", "/",
     1, TG_BODY_NONE, 0, false, false, false, false, 2},
    {"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
     TG_METHOD_GET, "GET", "/chat", "a", "/chat", 1, TG_BODY_NONE, 0, true, false, true, false, 5},
    /* Upgrade not named in Connection is not an upgrade */
    {"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", TG_METHOD_GET, "GET", "/", "a", "/",
     1, TG_BODY_NONE, 0, true, false, false, false, 2},
    {"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n",
     TG_METHOD_POST, "POST", "/", "a", "/", 1, TG_BODY_LENGTH, 3, true, true, false, false, 3},
    {"GET http://example.com:8080/a?b HTTP/1.1\r\nHost: other\r\n\r\n", TG_METHOD_GET, "GET",
     "http://example.com:8080/a?b", "example.com:8080", "/a?b", 1, TG_BODY_NONE, 0, true, false,
     false, true, 1},
    {"GET HTTPS://EXAMPLE.com HTTP/1.1\r\nHost: example.com\r\n\r\n", TG_METHOD_GET, "GET",
     "HTTPS://EXAMPLE.com", "EXAMPLE.com", "/", 1, TG_BODY_NONE, 0, true, false, false, true, 1},
    {"GET http://[::1]:80/ HTTP/1.0\r\n\r\n", TG_METHOD_GET, "GET", "http://[::1]:80/", "[::1]:80",
     "/", 0, TG_BODY_NONE, 0, false, false, false, true, 0},
    {"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", TG_METHOD_OPTIONS, "OPTIONS", "*", "a", "*", 1,
     TG_BODY_NONE, 0, true, false, false, false, 1},
    {"OPTIONS /x HTTP/1.1\r\nHost: a\r\n\r\n", TG_METHOD_OPTIONS, "OPTIONS", "/x", "a", "/x", 1,
     TG_BODY_NONE, 0, true, false, false, false, 1},
    {"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", TG_METHOD_CONNECT,
     "CONNECT", "example.com:443", "example.com:443", "example.com:443", 1, TG_BODY_NONE, 0, true,
     false, false, false, 1},
    {"CONNECT [2001:db8::1]:8443 HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n\r\n", TG_METHOD_CONNECT,
     "CONNECT", "[2001:db8::1]:8443", "[2001:db8::1]:8443", "[2001:db8::1]:8443", 1, TG_BODY_NONE,
     0, true, false, false, false, 1},
    /* RFC 9112 §2.2: empty lines before the request line are skipped */
    {"\r\n\r\nDELETE /r/1 HTTP/1.1\r\nHost: 10.0.0.1:8545\r\n\r\n", TG_METHOD_DELETE, "DELETE",
     "/r/1", "10.0.0.1:8545", "/r/1", 1, TG_BODY_NONE, 0, true, false, false, false, 1},
    {"PROPFIND /d HTTP/1.1\r\nHost: a\r\n\r\n", TG_METHOD_OTHER, "PROPFIND", "/d", "a", "/d", 1,
     TG_BODY_NONE, 0, true, false, false, false, 1},
    {"get / HTTP/1.1\r\nHost: a\r\n\r\n", TG_METHOD_OTHER, "get", "/", "a", "/", 1, TG_BODY_NONE, 0,
     true, false, false, false, 1},
    {"PATCH /p HTTP/1.1\r\nHost: xn--bcher-kva.example\r\nX-Empty:\r\nX-Tab:\tv\t1\t \r\n\r\n",
     TG_METHOD_PATCH, "PATCH", "/p", "xn--bcher-kva.example", "/p", 1, TG_BODY_NONE, 0, true, false,
     false, false, 3},
    {"HEAD / HTTP/1.1\r\nHost: my_host.internal.\r\n!#$%&'*+-.^_`|~09AZaz: ok\r\n\r\n",
     TG_METHOD_HEAD, "HEAD", "/", "my_host.internal.", "/", 1, TG_BODY_NONE, 0, true, false, false,
     false, 2},
    {"TRACE / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Utf8: caf\xc3\xa9\r\n\r\n", TG_METHOD_TRACE, "TRACE",
     "/", "127.0.0.1", "/", 1, TG_BODY_NONE, 0, true, false, false, false, 2},
};

TEST(test_valid_requests)
{
    for (size_t i = 0; i < TG_ARRAY_SIZE(valid); i++) {
        const struct valid_case *c = &valid[i];
        size_t n = strlen(c->in);
        struct tg_h1_request req;
        ssize_t r = parse_prefixes(c->in, n, &req, &default_lim);

        if (r != (ssize_t)n) {
            UNIT_FAIL("case %zu: expected %zu, got %zd (%d %s)", i, n, r, req.status,
                      req.error ? req.error : "");
            continue;
        }
        ASSERT_EQ(c->method_id, req.method_id);
        ASSERT_STR(c->method, req.method.base, req.method.len);
        ASSERT_STR(c->target, req.target.base, req.target.len);
        if (c->host[0] == '\0') /* (NULL, 0): ASSERT_STR would hand NULL to memcmp */
            ASSERT_EQ(0, req.host.len);
        else
            ASSERT_STR(c->host, req.host.base, req.host.len);
        ASSERT_STR(c->path, req.path.base, req.path.len);
        ASSERT_EQ(c->minor, req.minor_version);
        ASSERT_EQ(c->body, req.body_kind);
        if (c->body == TG_BODY_LENGTH)
            ASSERT_EQ(c->cl, req.content_length);
        ASSERT_EQ(c->keep_alive, req.keep_alive);
        ASSERT_EQ(c->expect, req.expect_continue);
        ASSERT_EQ(c->upgrade, req.upgrade);
        ASSERT_EQ(c->absolute, req.absolute_form);
        ASSERT_EQ(c->num_headers, req.num_headers);
        ASSERT(inside(req.method, c->in, n) && inside(req.target, c->in, n));
        ASSERT(inside(req.host, c->in, n) && inside(req.path, c->in, n));
        for (size_t j = 0; j < req.num_headers; j++)
            ASSERT(inside(hdrs[j].name, c->in, n) && inside(hdrs[j].value, c->in, n));
    }
}

TEST(test_header_fields)
{
    const char *in = "GET / HTTP/1.1\r\nHost:example.com\r\nX-A:  spaced value \t\r\n"
                     "X-Empty: \r\nX-Tab:\tinner\ttab\r\n\r\n";
    struct tg_h1_request req;

    ASSERT_EQ(strlen(in), parse_prefixes(in, strlen(in), &req, &default_lim));
    ASSERT_EQ(4, req.num_headers);
    ASSERT_STR("Host", hdrs[0].name.base, hdrs[0].name.len);
    ASSERT_STR("example.com", hdrs[0].value.base, hdrs[0].value.len);
    ASSERT_STR("spaced value", hdrs[1].value.base, hdrs[1].value.len);
    ASSERT_STR("", hdrs[2].value.base, hdrs[2].value.len);
    ASSERT_STR("inner\ttab", hdrs[3].value.base, hdrs[3].value.len);
    /* name points at the first byte of the header line */
    ASSERT(hdrs[1].name.base == strstr(in, "X-A"));
}

struct invalid_case {
    const char *in;
    size_t len;
    int status;
    const char *rule; /* DESIGN §9 rule */
};

#define RQ(line, hdrs) "GET " line " HTTP/1.1\r\nHost: a\r\n" hdrs "\r\n"
#define POST(hdrs)     "POST / HTTP/1.1\r\nHost: a\r\n" hdrs "\r\n"

/* Every row names the rule of DESIGN §9 it exercises. */
static const struct invalid_case invalid[] = {
    /* §9.1 Content-Length with Transfer-Encoding */
    {S(POST("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n")), 400, "9.1"},
    {S(POST("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n")), 400, "9.1"},
    {S(POST("Transfer-Encoding: chunked\r\nContent-Length: 0\r\n")), 400, "9.1"},
    /* §9.2 Transfer-Encoding: chunked final, once; 501 for unknown codings; never on 1.0 */
    {S(POST("Transfer-Encoding: gzip\r\n")), 400, "9.2"},
    /* tollgate decodes no coding but chunked, so it cannot relay others faithfully */
    {S(POST("Transfer-Encoding: gzip , CHUNKED\r\n")), 501, "9.2"},
    {S(POST("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n")), 501, "9.2"},
    {S(POST("Transfer-Encoding: chunked, gzip\r\n")), 400, "9.2"},
    {S(POST("Transfer-Encoding: chunked, chunked\r\n")), 400, "9.2"},
    {S(POST("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n")), 400, "9.2"},
    {S(POST("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n")), 400, "9.2"},
    {S(POST("Transfer-Encoding: chunked;q=1\r\n")), 400, "9.2"},
    {S(POST("Transfer-Encoding: chunked,\r\n")), 400, "9.2"},
    {S(POST("Transfer-Encoding: , chunked\r\n")), 400, "9.2"},
    {S(POST("Transfer-Encoding:\r\n")), 400, "9.2"},
    {S(POST("Transfer-Encoding: \"chunked\"\r\n")), 400, "9.2"},
    {S(POST("Transfer-Encoding: chunk ed\r\n")), 400, "9.2"},
    {S(POST("Transfer-Encoding: foo\r\n")), 501, "9.2"},
    {S(POST("Transfer-Encoding: identity\r\n")), 501, "9.2"},
    {S(POST("Transfer-Encoding: foo, chunked\r\n")), 501, "9.2"},
    {S("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400, "9.2"},
    /* §9.3 Content-Length: digits only, overflow-checked, no differing duplicates */
    {S(POST("Content-Length: -1\r\n")), 400, "9.3"},
    {S(POST("Content-Length: +5\r\n")), 400, "9.3"},
    {S(POST("Content-Length: 5 5\r\n")), 400, "9.3"},
    {S(POST("Content-Length: 5,5\r\n")), 400, "9.3"},
    {S(POST("Content-Length: 5, 5\r\n")), 400, "9.3"},
    {S(POST("Content-Length: 0x10\r\n")), 400, "9.3"},
    {S(POST("Content-Length: 1e3\r\n")), 400, "9.3"},
    {S(POST("Content-Length:\r\n")), 400, "9.3"},
    {S(POST("Content-Length: 9223372036854775808\r\n")), 400, "9.3"},
    {S(POST("Content-Length: 99999999999999999999999\r\n")), 400, "9.3"},
    {S(POST("Content-Length: 5\r\nContent-Length: 6\r\n")), 400, "9.3"},
    {S(POST("Content-Length: 5\r\nContent-Length: 50\r\n")), 400, "9.3"},
    /* §9.5 obs-fold, and whitespace before the first field, which parses like one */
    {S(RQ("/", "X-A: a\r\n b\r\n")), 400, "9.5"},
    {S(RQ("/", "X-A: a\r\n\tb\r\n")), 400, "9.5"},
    {S("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), 400, "9.5"},
    /* §9.6 bare CR anywhere, bare LF as a line terminator */
    {S("GET / HTTP/1.1\rHost: a\r\n\r\n"), 400, "9.6"},
    {S("GET /\r HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "9.6"},
    {S(RQ("/", "X-A: a\rb\r\n")), 400, "9.6"},
    {S(RQ("/", "X-A: a\r\r\n")), 400, "9.6"},
    {S(RQ("/", "X\r-A: a\r\n")), 400, "9.6"},
    {S("GET / HTTP/1.1\r\nHost: a\r\n\r\r\n"), 400, "9.6"},
    {S("\rGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "9.6"},
    {S("GET / HTTP/1.1\nHost: a\n\n"), 400, "9.6"},
    {S("GET / HTTP/1.1\r\nHost: a\n\r\n"), 400, "9.6"},
    {S("GET / HTTP/1.1\r\nHost: a\r\n\n"), 400, "9.6"},
    {S("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "9.6"},
    {S("\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "9.6"},
    /* §9.7 field names are tokens, no whitespace before the colon, no empty names, no CTLs in
     * values */
    {S(RQ("/", "X-A : a\r\n")), 400, "9.7"},
    {S(RQ("/", "X-A\t: a\r\n")), 400, "9.7"},
    {S(RQ("/", ": a\r\n")), 400, "9.7"},
    {S(RQ("/", "X A: a\r\n")), 400, "9.7"},
    {S(RQ("/", "X(A: a\r\n")), 400, "9.7"},
    {S(RQ("/", "X@A: a\r\n")), 400, "9.7"},
    {S(RQ("/", "X/A: a\r\n")), 400, "9.7"},
    {S(RQ("/", "X\"A: a\r\n")), 400, "9.7"},
    {S(RQ("/", "X\xc3\xa4: a\r\n")), 400, "9.7"},
    {S(RQ("/", "X\0A: a\r\n")), 400, "9.7"},
    {S(RQ("/", "NoColon\r\n")), 400, "9.7"},
    {S(RQ("/", "X-A: a\0b\r\n")), 400, "9.7"},
    {S(RQ("/", "X-A: a\x01\r\n")), 400, "9.7"},
    {S(RQ("/", "X-A: a\x1b[0m\r\n")), 400, "9.7"},
    {S(RQ("/", "X-A: a\x7f\r\n")), 400, "9.7"},
    {S(RQ("/", "X-A: a\vb\r\n")), 400, "9.7"},
    /* §9.8 request line: method SP target SP HTTP/1.x, target forms, 505 for other versions */
    {S("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "9.8"},
    {S("GET /  HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "9.8"},
    {S("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), 400, "9.8"},
    {S(" GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "9.8"},
    {S("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "9.8"},
    {S("GET /\r\n\r\n"), 400, "9.8"},
    {S("GET\r\n\r\n"), 400, "9.8"},
    {S("G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "9.8"},
    {S("/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "9.8"},
    {S("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "9.8"},
    {S("GET /\x80 HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "9.8"},
    {S("GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "9.8"},
    {S("GET / HTTP/1.1\0\r\nHost: a\r\n\r\n"), 400, "9.8"},
    {S("GET / HTTP/1.10\r\nHost: a\r\n\r\n"), 400, "9.8"},
    {S("GET / HTTP/1\r\nHost: a\r\n\r\n"), 400, "9.8"},
    {S("GET / http/1.1\r\nHost: a\r\n\r\n"), 400, "9.8"},
    {S("GET / HTTPS/1.1\r\nHost: a\r\n\r\n"), 400, "9.8"},
    {S("GET / HTTP/1.x\r\nHost: a\r\n\r\n"), 400, "9.8"},
    {S("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505, "9.8"},
    {S("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), 505, "9.8"},
    {S("GET / HTTP/0.9\r\nHost: a\r\n\r\n"), 505, "9.8"},
    {S("GET / HTTP/3.0\r\nHost: a\r\n\r\n"), 505, "9.8"},
    {S("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "9.8"},
    {S("OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "9.8"},
    {S("CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "9.8"},
    {S("CONNECT example.com HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "9.8"},
    {S("CONNECT example.com:0 HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "9.8"},
    {S("CONNECT http://x/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "9.8"},
    {S("GET example.com:80 HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "9.8"},
    {S("GET ftp://x/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "9.8"},
    {S("GET http:/x HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "9.8"},
    {S("GET http:// HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "9.8"},
    {S("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "9.8"},
    {S("GET http://user@x/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "9.8"},
    {S("GET http://x?q HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "9.8"},
    {S("GET http://x:99999/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "9.8"},
    /* §9.10 exactly one valid Host (absolute-form included) */
    {S("GET / HTTP/1.1\r\n\r\n"), 400, "9.10"},
    {S("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), 400, "9.10"},
    {S("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"), 400, "9.10"},
    {S("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"), 400, "9.10"},
    {S("GET http://x/ HTTP/1.1\r\n\r\n"), 400, "9.10"},
    {S("GET http://x/ HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n"), 400, "9.10"},
    {S("GET http://x/ HTTP/1.1\r\nHost: bad host\r\n\r\n"), 400, "9.10"},
    {S("GET / HTTP/1.1\r\nHost:\r\n\r\n"), 400, "9.10"},
    {S("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), 400, "9.10"},
    {S("GET / HTTP/1.1\r\nHost: a:b\r\n\r\n"), 400, "9.10"},
    {S("GET / HTTP/1.1\r\nHost: a:\r\n\r\n"), 400, "9.10"},
    {S("GET / HTTP/1.1\r\nHost: a:0\r\n\r\n"), 400, "9.10"},
    {S("GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n"), 400, "9.10"},
    {S("GET / HTTP/1.1\r\nHost: a:1234567\r\n\r\n"), 400, "9.10"},
    {S("GET / HTTP/1.1\r\nHost: a:80:80\r\n\r\n"), 400, "9.10"},
    {S("GET / HTTP/1.1\r\nHost: a, b\r\n\r\n"), 400, "9.10"},
    {S("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), 400, "9.10"},
    {S("GET / HTTP/1.1\r\nHost: user@a\r\n\r\n"), 400, "9.10"},
    {S("GET / HTTP/1.1\r\nHost: %zz\r\n\r\n"), 400, "9.10"},
    {S("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n"), 400, "9.10"},
    {S("GET / HTTP/1.1\r\nHost: []\r\n\r\n"), 400, "9.10"},
    {S("GET / HTTP/1.1\r\nHost: [zz::1]\r\n\r\n"), 400, "9.10"},
    {S("GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n"), 400, "9.10"},
    {S("GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n\r\n"), 400, "9.10"},
    {S("GET / HTTP/1.1\r\nHost: 256.1.1.1\r\n\r\n"), 400, "9.10"},
    {S("GET / HTTP/1.1\r\nHost: 1.2.3\r\n\r\n"), 400, "9.10"},
    {S("GET / HTTP/1.1\r\nHost: 01.2.3.4\r\n\r\n"), 400, "9.10"},
    {S("GET / HTTP/1.1\r\nHost: 1.2.3.4.5\r\n\r\n"), 400, "9.10"},
    /* §9.12 Connection may not name Host, Content-Length or Transfer-Encoding; tokens only */
    {S(RQ("/", "Connection: host\r\n")), 400, "9.12"},
    {S(RQ("/", "Connection: Content-Length\r\n")), 400, "9.12"},
    {S(RQ("/", "Connection: close, TRANSFER-ENCODING\r\n")), 400, "9.12"},
    {S(RQ("/", "Connection: keep-alive\r\nConnection: host\r\n")), 400, "9.12"},
    {S(RQ("/", "Connection: a b\r\n")), 400, "9.12"},
    {S(RQ("/", "Connection: \"close\"\r\n")), 400, "9.12"},
    /* §9.14 expectations other than 100-continue are refused (our choice: 417) */
    {S(RQ("/", "Expect: foo\r\n")), 417, "9.14"},
    {S(RQ("/", "Expect: 100-continue, foo\r\n")), 417, "9.14"},
};

TEST(test_invalid_requests)
{
    for (size_t i = 0; i < TG_ARRAY_SIZE(invalid); i++) {
        const struct invalid_case *c = &invalid[i];
        int status = 0;
        ssize_t r = parse_copy(c->in, c->len, &default_lim, &status);

        if (r != TG_H1_INVALID || status != c->status)
            UNIT_FAIL("case %zu (§%s) \"%.*s\": expected invalid %d, got %zd status %d", i, c->rule,
                      (int)c->len, c->in, c->status, r, status);
        /* A prefix of an invalid input may be incomplete or invalid, never accepted. */
        for (size_t k = 0; k < c->len; k++) {
            r = parse_copy(c->in, k, &default_lim, NULL);
            if (r >= 0) {
                UNIT_FAIL("case %zu: prefix %zu accepted", i, k);
                break;
            }
        }
    }
}

TEST(test_header_ids)
{
    static const struct {
        const char *name;
        int id;
    } ids[] = {
        {"Host", TG_HDR_HOST},
        {"hOST", TG_HDR_HOST},
        {"Content-Length", TG_HDR_CONTENT_LENGTH},
        {"transfer-encoding", TG_HDR_TRANSFER_ENCODING},
        {"CONNECTION", TG_HDR_CONNECTION},
        {"Keep-Alive", TG_HDR_KEEP_ALIVE},
        {"Proxy-Connection", TG_HDR_PROXY_CONNECTION},
        {"TE", TG_HDR_TE},
        {"Trailer", TG_HDR_TRAILER},
        {"Upgrade", TG_HDR_UPGRADE},
        {"Expect", TG_HDR_EXPECT},
        {"X-Forwarded-For", TG_HDR_X_FORWARDED_FOR},
        {"x-forwarded-proto", TG_HDR_X_FORWARDED_PROTO},
        {"X-Forwarded-Host", TG_HDR_X_FORWARDED_HOST},
        {"X-Request-Id", TG_HDR_X_REQUEST_ID},
        {"Via", TG_HDR_VIA},
        {"Date", TG_HDR_DATE},
        {"Server", TG_HDR_SERVER},
        {"Hosts", TG_HDR_OTHER},
        {"Hos", TG_HDR_OTHER},
        {"Datf", TG_HDR_OTHER},
        {"Content-Lengti", TG_HDR_OTHER},
        {"Content_Length", TG_HDR_OTHER},
        {"Transfer-Encodinf", TG_HDR_OTHER},
        {"X-Forwarded-Fox", TG_HDR_OTHER},
        {"Connectiom", TG_HDR_OTHER},
        {"Kee^-Alive", TG_HDR_OTHER},
        {"T~", TG_HDR_OTHER},
        {"Accept", TG_HDR_OTHER},
    };

    for (size_t i = 0; i < TG_ARRAY_SIZE(ids); i++) {
        char buf[256];
        struct tg_h1_request req = {.headers = hdrs};
        int n =
            snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\n%s: 1\r\n\r\n", ids[i].name);
        ssize_t r = tg_h1_parse_request(buf, (size_t)n, &req, &default_lim);

        /* Content-Length, Transfer-Encoding and Host with value "1" make some rows invalid. */
        if (ids[i].id == TG_HDR_HOST || ids[i].id == TG_HDR_TRANSFER_ENCODING ||
            ids[i].id == TG_HDR_EXPECT) {
            ASSERT_EQ(TG_H1_INVALID, r);
            ASSERT_EQ(2, req.num_headers);
        } else {
            ASSERT_EQ(n, r);
        }
        if (req.num_headers == 2 && (int)hdrs[1].id != ids[i].id)
            UNIT_FAIL("%s: expected id %d, got %d", ids[i].name, ids[i].id, hdrs[1].id);
    }
}

TEST(test_hop_by_hop)
{
    const char *in =
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret,, Upgrade\r\n"
        "Keep-Alive: timeout=5\r\nX-Secret: 1\r\nx-secret: 2\r\nProxy-Connection: x\r\n"
        "TE: trailers\r\nTrailer: X-T\r\nUpgrade: h2c\r\nX-Public: 1\r\n"
        "Transfer-Encoding: chunked\r\n\r\n";
    static const int hop[] = {0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1};
    struct tg_h1_request req;

    ASSERT_EQ(strlen(in), parse_prefixes(in, strlen(in), &req, &default_lim));
    ASSERT_EQ(11, req.num_headers);
    for (size_t i = 0; i < req.num_headers && i < TG_ARRAY_SIZE(hop); i++) {
        if ((hdrs[i].flags & TG_HDR_F_HOP) != (hop[i] ? TG_HDR_F_HOP : 0))
            UNIT_FAIL("header %zu (%.*s): hop flag %d", i, (int)hdrs[i].name.len, hdrs[i].name.base,
                      hdrs[i].flags);
    }
    ASSERT(req.upgrade);
    ASSERT_EQ(TG_BODY_CHUNKED, req.body_kind);
}

static char *repeat(const char *head, char c, size_t n, const char *tail)
{
    size_t hl = strlen(head), tl = strlen(tail);
    char *s = malloc(hl + n + tl + 1);

    memcpy(s, head, hl);
    memset(s + hl, c, n);
    memcpy(s + hl + n, tail, tl + 1);
    return s;
}

TEST(test_request_line_limit)
{
    /* max_request_line 32: "GET /aaa HTTP/1.1" with the target padded to put the CR at 32. */
    const struct tg_h1_limits lim = {32, 64, 4};
    char *ok = repeat("GET /", 'a', 32 - 14, " HTTP/1.1\r\nHost: a\r\n\r\n");
    char *over = repeat("GET /", 'a', 33 - 14, " HTTP/1.1\r\nHost: a\r\n\r\n");
    char *lead = repeat("\r\n\r\nGET /", 'a', 32 - 18, " HTTP/1.1\r\nHost: a\r\n\r\n");
    struct tg_h1_request req;
    int status;

    ASSERT_EQ(strlen(ok), parse_prefixes(ok, strlen(ok), &req, &lim));
    ASSERT_EQ(strlen(lead), parse_prefixes(lead, strlen(lead), &req, &lim));
    ASSERT_EQ(TG_H1_INVALID, parse_copy(over, strlen(over), &lim, &status));
    ASSERT_EQ(414, status);
    /* detected while the line is still incomplete, as soon as it cannot fit */
    ASSERT_EQ(TG_H1_INCOMPLETE, parse_copy(over, 32, &lim, NULL));
    ASSERT_EQ(TG_H1_INVALID, parse_copy(over, 33, &lim, &status));
    ASSERT_EQ(414, status);
    free(ok);
    free(over);
    free(lead);

    /* a stream of empty lines cannot hold the connection */
    {
        char flood[64];

        for (size_t i = 0; i < sizeof(flood); i += 2)
            memcpy(flood + i, "\r\n", 2);
        ASSERT_EQ(TG_H1_INVALID, parse_copy(flood, sizeof(flood), &lim, &status));
        ASSERT_EQ(414, status);
    }
}

TEST(test_header_limits)
{
    /* Header bytes are counted from the request line's CR through the final CRLF. */
    const struct tg_h1_limits lim = {32, 64, 4};
    /* The CR of "GET / HTTP/1.1" is at 14; "\r\nHost: a\r\nX: " + v + "\r\n\r\n" is
     * 14 + v + 4 bytes: 64 for v = 46. */
    char *ok = repeat("GET / HTTP/1.1\r\nHost: a\r\nX: ", 'v', 46, "\r\n\r\n");
    char *over = repeat("GET / HTTP/1.1\r\nHost: a\r\nX: ", 'v', 47, "\r\n\r\n");
    struct tg_h1_request req;
    int status;

    ASSERT_EQ(strlen(ok), parse_prefixes(ok, strlen(ok), &req, &lim));
    ASSERT_EQ(TG_H1_INVALID, parse_copy(over, strlen(over), &lim, &status));
    ASSERT_EQ(431, status);
    /* while incomplete: once 64 bytes follow the CR without the end of the head */
    ASSERT_EQ(TG_H1_INCOMPLETE, parse_copy(over, 14 + 63, &lim, NULL));
    ASSERT_EQ(TG_H1_INVALID, parse_copy(over, 14 + 64, &lim, &status));
    ASSERT_EQ(431, status);
    free(ok);
    free(over);

    ok = strdup("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n");
    over = strdup("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD");
    ASSERT_EQ(strlen(ok), parse_prefixes(ok, strlen(ok), &req, &lim));
    ASSERT_EQ(4, req.num_headers);
    ASSERT_EQ(TG_H1_INVALID, parse_copy(over, strlen(over), &lim, &status));
    ASSERT_EQ(431, status);
    free(ok);
    free(over);
}

/* h1.h: INCOMPLETE with len >= max_request_line + max_header_bytes would be a bug. */
TEST(test_incomplete_is_bounded)
{
    const struct tg_h1_limits lim = {40, 80, 8};
    static const char *const starts[] = {
        "GET /",
        "GET / HTTP/1.1\r\nX: ",
        "GET / HTTP/1.1\r\nHost: a\r\n",
        "\r\n\r\n\r\nGET /",
        "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nLong-Name",
    };
    static const char fill[] = {'a', '\r', '\n', ' '};

    for (size_t i = 0; i < TG_ARRAY_SIZE(starts); i++) {
        for (size_t f = 0; f < sizeof(fill); f++) {
            size_t n = lim.max_request_line + lim.max_header_bytes + 16;
            char *s = malloc(n);
            size_t sl = strlen(starts[i]);

            memcpy(s, starts[i], sl);
            for (size_t k = sl; k < n; k++)
                s[k] = fill[f] == '\r' ? "\r\n"[(k - sl) % 2] : fill[f];
            for (size_t len = lim.max_request_line + lim.max_header_bytes; len <= n; len++) {
                ssize_t r = parse_copy(s, len, &lim, NULL);

                if (r == TG_H1_INCOMPLETE) {
                    UNIT_FAIL("start %zu fill %zu len %zu: incomplete", i, f, len);
                    break;
                }
            }
            free(s);
        }
    }
}

TEST(test_pipelined)
{
    const char *in = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    struct tg_h1_request req = {.headers = hdrs};
    ssize_t r = tg_h1_parse_request(in, strlen(in), &req, &default_lim);

    ASSERT_EQ(strlen(in) / 2, r);
    ASSERT_STR("/1", req.path.base, req.path.len);
    r = tg_h1_parse_request(in + r, strlen(in) - (size_t)r, &req, &default_lim);
    ASSERT_EQ(strlen(in) / 2, r);
    ASSERT_STR("/2", req.path.base, req.path.len);
}

TEST(test_early_rejection)
{
    /* Another protocol is refused before any line end arrives. */
    static const char *const bad[] = {"\x16\x03\x01\x02", "{\"jsonrpc\"", " GET", "GE(",
                                      "\r\n\r\n{"};
    static const char *const wait[] = {"", "\r", "\r\n", "\r\n\r", "G", "GET", "GET ", "GET /a"};
    int status;

    for (size_t i = 0; i < TG_ARRAY_SIZE(bad); i++) {
        ASSERT_EQ(TG_H1_INVALID, parse_copy(bad[i], strlen(bad[i]), &default_lim, &status));
        ASSERT_EQ(400, status);
    }
    {
        struct tg_h1_request req = {.headers = hdrs};

        ASSERT_EQ(TG_H1_INCOMPLETE, tg_h1_parse_request(NULL, 0, &req, &default_lim));
    }
    for (size_t i = 0; i < TG_ARRAY_SIZE(wait); i++)
        ASSERT_EQ(TG_H1_INCOMPLETE, parse_copy(wait[i], strlen(wait[i]), &default_lim, NULL));
}

TEST(test_method_ids)
{
    static const struct {
        const char *m;
        int id;
    } m[] = {
        {"GET", TG_METHOD_GET},     {"HEAD", TG_METHOD_HEAD},      {"POST", TG_METHOD_POST},
        {"PUT", TG_METHOD_PUT},     {"DELETE", TG_METHOD_DELETE},  {"OPTIONS", TG_METHOD_OPTIONS},
        {"PATCH", TG_METHOD_PATCH}, {"TRACE", TG_METHOD_TRACE},    {"CONNECT", TG_METHOD_CONNECT},
        {"get", TG_METHOD_OTHER},   {"GETS", TG_METHOD_OTHER},     {"", TG_METHOD_OTHER},
        {"PURGE", TG_METHOD_OTHER}, {"CONNECTS", TG_METHOD_OTHER},
    };

    for (size_t i = 0; i < TG_ARRAY_SIZE(m); i++)
        ASSERT_EQ(m[i].id, tg_http_method_id(tg_str_cstr(m[i].m)));
}

int main(void)
{
    RUN(test_valid_requests);
    RUN(test_header_fields);
    RUN(test_invalid_requests);
    RUN(test_header_ids);
    RUN(test_hop_by_hop);
    RUN(test_request_line_limit);
    RUN(test_header_limits);
    RUN(test_incomplete_is_bounded);
    RUN(test_pipelined);
    RUN(test_early_rejection);
    RUN(test_method_ids);
    return unit_report();
}
