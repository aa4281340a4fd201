/*
 * Response-head parser: valid responses fed as every prefix, framing per status and request
 * method, the invalid-input table (DESIGN §9.13: every malformed response is a 502), limits and
 * reason phrases.
 */
#include <stdlib.h>

#include "core/core.h"
#include "http/h1.h"
#include "unit.h"

#define S(lit) lit, sizeof(lit) - 1

static const struct tg_h1_limits default_lim = {8192, 32768, 100};
static struct tg_http_header hdrs[128];

/* Parses from an exact-size heap copy so that ASan catches any read past the end. */
static ssize_t parse_copy(const char *s, size_t n, const struct tg_h1_limits *lim, bool head,
                          int *error_status)
{
    struct tg_h1_response res;
    char *b = malloc(n ? n : 1);
    ssize_t r;

    memcpy(b, s, n);
    res.headers = hdrs;
    r = tg_h1_parse_response(b, n, &res, lim, head);
    if (error_status != NULL)
        *error_status = res.error_status;
    if (r == TG_H1_INVALID && res.error == NULL)
        UNIT_FAIL("invalid without error reason");
    free(b);
    return r;
}

static ssize_t parse_prefixes(const char *s, size_t n, struct tg_h1_response *res, bool head)
{
    ssize_t r;

    for (size_t k = 0; k < n; k++) {
        r = parse_copy(s, k, &default_lim, head, NULL);
        if (r != TG_H1_INCOMPLETE) {
            UNIT_FAIL("prefix %zu of \"%.*s\": expected incomplete, got %zd", k, (int)n, s, r);
            break;
        }
    }
    r = parse_copy(s, n, &default_lim, head, NULL);
    res->headers = hdrs;
    ASSERT_EQ(r, tg_h1_parse_response(s, n, res, &default_lim, head));
    return r;
}

struct valid_case {
    const char *in;
    bool head;
    int status;
    const char *reason;
    int minor;
    int body;
    uint64_t cl;
    bool keep_alive;
    size_t num_headers;
};

static const struct valid_case valid[] = {
    {"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Type: text/plain\r\n\r\n", false, 200, "OK",
     1, TG_BODY_LENGTH, 12, true, 2},
    {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, 200, "OK", 1, TG_BODY_NONE, 0, true, 1},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, 200, "OK", 1, TG_BODY_CHUNKED,
     0, true, 1},
    /* no framing header: the body runs until close, and the connection cannot be reused */
    {"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", false, 200, "OK", 1, TG_BODY_CLOSE, 0, false, 1},
    {"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n", false, 200, "OK", 0, TG_BODY_LENGTH, 3, false,
     1},
    {"HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n", false, 200, "OK", 0,
     TG_BODY_LENGTH, 3, true, 2},
    {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n", false, 200, "OK", 1,
     TG_BODY_LENGTH, 3, false, 2},
    /* HEAD, 1xx, 204 and 304 never carry a body (§9.13) */
    {"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", true, 200, "OK", 1, TG_BODY_NONE, 1000,
     true, 1},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true, 200, "OK", 1, TG_BODY_NONE, 0,
     true, 1},
    {"HTTP/1.1 200 OK\r\n\r\n", true, 200, "OK", 1, TG_BODY_NONE, 0, true, 0},
    {"HTTP/1.1 204 No Content\r\n\r\n", false, 204, "No Content", 1, TG_BODY_NONE, 0, true, 0},
    {"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n", false, 304, "Not Modified", 1,
     TG_BODY_NONE, 50, true, 1},
    {"HTTP/1.1 100 Continue\r\n\r\n", false, 100, "Continue", 1, TG_BODY_NONE, 0, true, 0},
    {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", false,
     101, "Switching Protocols", 1, TG_BODY_NONE, 0, true, 2},
    {"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n", false, 103, "Early Hints",
     1, TG_BODY_NONE, 0, true, 1},
    /* an empty reason, with or without the SP before it */
    {"HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", false, 404, "", 1, TG_BODY_NONE, 0, true, 1},
    {"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", false, 404, "", 1, TG_BODY_NONE, 0, true, 1},
    {"HTTP/1.1 500 Internal\tServer  Error \xc3\xa9\r\nContent-Length: 2\r\n\r\n", false, 500,
     "Internal\tServer  Error \xc3\xa9", 1, TG_BODY_LENGTH, 2, true, 1},
    {"HTTP/1.1 599 Whatever\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", false, 599,
     "Whatever", 1, TG_BODY_LENGTH, 1, true, 2},
};

TEST(test_valid_responses)
{
    for (size_t i = 0; i < TG_ARRAY_SIZE(valid); i++) {
        const struct valid_case *c = &valid[i];
        size_t n = strlen(c->in);
        struct tg_h1_response res;
        ssize_t r = parse_prefixes(c->in, n, &res, c->head);

        if (r != (ssize_t)n) {
            UNIT_FAIL("case %zu: expected %zu, got %zd (%s)", i, n, r, res.error ? res.error : "");
            continue;
        }
        ASSERT_EQ(c->status, res.status);
        ASSERT_STR(c->reason, res.reason.base, res.reason.len);
        ASSERT_EQ(c->minor, res.minor_version);
        ASSERT_EQ(c->body, res.body_kind);
        if (c->cl != 0)
            ASSERT_EQ(c->cl, res.content_length);
        ASSERT_EQ(c->keep_alive, res.keep_alive);
        ASSERT_EQ(c->num_headers, res.num_headers);
    }
}

TEST(test_response_hop_by_hop)
{
    const char *in =
        "HTTP/1.1 200 OK\r\nConnection: X-Internal\r\nX-Internal: 1\r\nKeep-Alive: 5\r\n"
        "Content-Length: 0\r\nTrailer: X\r\n\r\n";
    static const int hop[] = {1, 1, 1, 0, 1};
    struct tg_h1_response res;

    ASSERT_EQ(strlen(in), parse_prefixes(in, strlen(in), &res, false));
    ASSERT_EQ(5, res.num_headers);
    for (size_t i = 0; i < res.num_headers && i < TG_ARRAY_SIZE(hop); i++)
        ASSERT_EQ(hop[i] ? TG_HDR_F_HOP : 0, hdrs[i].flags & TG_HDR_F_HOP);
}

struct invalid_case {
    const char *in;
    size_t len;
    const char *rule; /* DESIGN §9 rule */
};

#define OK(hdrs) "HTTP/1.1 200 OK\r\n" hdrs "\r\n"

/* Every row names the rule of DESIGN §9 it exercises; every one must give 502. */
static const struct invalid_case invalid[] = {
    /* §9.1 / §9.13 both Content-Length and Transfer-Encoding */
    {S(OK("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n")), "9.1"},
    {S(OK("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n")), "9.1"},
    /* §9.2 chunked must be final (close-delimited fallback refused, our strictness), once */
    {S(OK("Transfer-Encoding: gzip\r\n")), "9.2"},
    {S(OK("Transfer-Encoding: gzip, chunked\r\n")), "9.2"},
    {S(OK("Transfer-Encoding: chunked, gzip\r\n")), "9.2"},
    {S(OK("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n")), "9.2"},
    {S(OK("Transfer-Encoding: foo\r\n")), "9.2"},
    {S(OK("Transfer-Encoding: chunked;x=1\r\n")), "9.2"},
    {S("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), "9.2"},
    /* §9.3 Content-Length */
    {S(OK("Content-Length: abc\r\n")), "9.3"},
    {S(OK("Content-Length: -1\r\n")), "9.3"},
    {S(OK("Content-Length: 1, 1\r\n")), "9.3"},
    {S(OK("Content-Length: 18446744073709551616\r\n")), "9.3"},
    {S(OK("Content-Length: 1\r\nContent-Length: 2\r\n")), "9.3"},
    /* §9.5 obs-fold in a response */
    {S(OK("X-A: a\r\n b\r\n")), "9.5"},
    {S("HTTP/1.1 200 OK\r\n\tX-A: a\r\n\r\n"), "9.5"},
    /* §9.6 bare CR, bare LF */
    {S("HTTP/1.1 200 OK\rX: a\r\n\r\n"), "9.6"},
    {S("HTTP/1.1 200 OK\nContent-Length: 0\n\n"), "9.6"},
    {S(OK("X-A: a\n")), "9.6"},
    {S(OK("X-A: a\rb\r\n")), "9.6"},
    {S("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\n"), "9.6"},
    /* §9.7 field names and values */
    {S(OK("X-A : a\r\n")), "9.7"},
    {S(OK(": a\r\n")), "9.7"},
    {S(OK("X[A]: a\r\n")), "9.7"},
    {S(OK("X-A: a\0b\r\n")), "9.7"},
    {S(OK("X-A: a\x7f\r\n")), "9.7"},
    /* §9.12 Connection may not name framing headers */
    {S(OK("Connection: content-length\r\nContent-Length: 1\r\n")), "9.12"},
    /* §9.13 malformed status lines */
    {S("HTTP/1.1 200OK\r\n\r\n"), "9.13"},
    {S("HTTP/1.1  200 OK\r\n\r\n"), "9.13"},
    {S("HTTP/1.1 20 OK\r\n\r\n"), "9.13"},
    {S("HTTP/1.1 2000 OK\r\n\r\n"), "9.13"},
    {S("HTTP/1.1 099 OK\r\n\r\n"), "9.13"},
    {S("HTTP/1.1 600 OK\r\n\r\n"), "9.13"},
    {S("HTTP/1.1 2x0 OK\r\n\r\n"), "9.13"},
    {S("HTTP/1.2 200 OK\r\n\r\n"), "9.13"},
    {S("HTTP/2.0 200 OK\r\n\r\n"), "9.13"},
    {S("HTTP/1.1\r\n\r\n"), "9.13"},
    {S("HTTP/1.1 200 O\x01K\r\n\r\n"), "9.13"},
    {S("http/1.1 200 OK\r\n\r\n"), "9.13"},
    {S("ICY 200 OK\r\n\r\n"), "9.13"},
    {S("\r\nHTTP/1.1 200 OK\r\n\r\n"), "9.13"},
    {S("\x15\x03\x03\x00\x02\x02\x28"), "9.13"},
};

TEST(test_invalid_responses)
{
    for (size_t i = 0; i < TG_ARRAY_SIZE(invalid); i++) {
        const struct invalid_case *c = &invalid[i];
        int status = 0;
        ssize_t r = parse_copy(c->in, c->len, &default_lim, false, &status);

        if (r != TG_H1_INVALID || status != 502)
            UNIT_FAIL("case %zu (§%s) \"%.*s\": expected invalid 502, got %zd status %d", i,
                      c->rule, (int)c->len, c->in, r, status);
        for (size_t k = 0; k < c->len; k++) {
            if (parse_copy(c->in, k, &default_lim, false, NULL) >= 0) {
                UNIT_FAIL("case %zu: prefix %zu accepted", i, k);
                break;
            }
        }
    }
}

TEST(test_early_rejection)
{
    /* A peer that does not speak HTTP/1.x is refused before any line end arrives. */
    ASSERT_EQ(TG_H1_INVALID, parse_copy(S("\x15\x03"), &default_lim, false, NULL));
    ASSERT_EQ(TG_H1_INVALID, parse_copy(S("HTTP/2"), &default_lim, false, NULL));
    ASSERT_EQ(TG_H1_INCOMPLETE, parse_copy(S("HTTP/1"), &default_lim, false, NULL));
}

TEST(test_response_limits)
{
    const struct tg_h1_limits lim = {20, 40, 2};
    int status;

    /* status line: the CR may sit at offset 20 */
    ASSERT_EQ(TG_H1_INVALID, parse_copy(S("HTTP/1.1 200 aaaaaaaaa\r\n\r\n"), &lim, false, &status));
    ASSERT_EQ(502, status);
    ASSERT_EQ(30, parse_copy(S("HTTP/1.1 200 aaaaaaa\r\nA: 1\r\n\r\n"), &lim, true, NULL));
    ASSERT_EQ(TG_H1_INVALID, parse_copy(S("HTTP/1.1 200 aaaaaaaa\r\n\r\n"), &lim, true, NULL));
    ASSERT_EQ(TG_H1_INVALID, parse_copy(S("HTTP/1.1 200 aaaaaaaaaaaa"), &lim, false, &status));
    ASSERT_EQ(502, status);
    ASSERT_EQ(TG_H1_INVALID,
              parse_copy(S("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"), &lim, true, NULL));
    ASSERT_EQ(TG_H1_INVALID,
              parse_copy(S("HTTP/1.1 200 OK\r\nA: 0123456789012345678901234567890123456789"), &lim,
                         true, NULL));
}

TEST(test_status_text)
{
    ASSERT_STREQ("OK", tg_http_status_text(200));
    ASSERT_STREQ("Bad Request", tg_http_status_text(400));
    ASSERT_STREQ("URI Too Long", tg_http_status_text(414));
    ASSERT_STREQ("Expectation Failed", tg_http_status_text(417));
    ASSERT_STREQ("Request Header Fields Too Large", tg_http_status_text(431));
    ASSERT_STREQ("Not Implemented", tg_http_status_text(501));
    ASSERT_STREQ("Bad Gateway", tg_http_status_text(502));
    ASSERT_STREQ("HTTP Version Not Supported", tg_http_status_text(505));
    ASSERT_STREQ("Unknown", tg_http_status_text(299));
    ASSERT_STREQ("Unknown", tg_http_status_text(-1));
    for (int s = 100; s < 600; s++)
        ASSERT(tg_http_status_text(s) != NULL);
}

int main(void)
{
    RUN(test_valid_responses);
    RUN(test_response_hop_by_hop);
    RUN(test_invalid_responses);
    RUN(test_early_rejection);
    RUN(test_response_limits);
    RUN(test_status_text);
    return unit_report();
}
