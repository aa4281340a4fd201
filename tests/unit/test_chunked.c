/*
 * Chunked transfer coding (DESIGN §9.4): every body is fed whole, byte by byte and split at
 * every point, through both scan and decode, which must agree.
 */
#include <stdlib.h>

#include "core/core.h"
#include "http/h1.h"
#include "unit.h"

#define S(lit) lit, sizeof(lit) - 1

#define MAX_LINE     64
#define MAX_TRAILERS 64

struct valid_case {
    const char *in;
    size_t len;
    const char *data; /* decoded body */
    size_t data_len;
    size_t trailing; /* bytes after the body, which belong to the next message */
};

static const struct valid_case valid[] = {
    {S("0\r\n\r\n"), S(""), 0},
    {S("5\r\nhello\r\n0\r\n\r\n"), S("hello"), 0},
    {S("5;ext=1\r\nhello\r\n6 ; a=\"b c\"\t;b\r\n world\r\n0\r\n\r\n"), S("hello world"), 0},
    {S("A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n"), S("0123456789abcdefghij"), 0},
    {S("0005\r\nhello\r\n000\r\n\r\n"), S("hello"), 0},
    {S("000000000000000a\r\n0123456789\r\n0\r\n\r\n"), S("0123456789"), 0},
    {S("3\r\nabc\r\n0\r\nX-Trailer: v\r\nY: \t\r\n\r\n"), S("abc"), 0},
    {S("1\r\n\0\r\n0;last\r\n\r\n"), S("\0"), 0},
    {S("2\r\n\r\n\r\n0\r\n\r\nGET / HTTP/1.1\r\n"), S("\r\n"), 16},
    {S("0\r\n\r\nxyz"), S(""), 3},
};

/* Runs scan or decode over in[0..len) cut at the given split points; returns the end found. */
static ssize_t run_split(const char *in, size_t len, const size_t *cuts, size_t ncuts, bool decode,
                         char *data, size_t *data_len)
{
    struct tg_h1_chunked d;
    size_t start = 0;

    tg_h1_chunked_init(&d, MAX_LINE, MAX_TRAILERS);
    *data_len = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t stop = i < ncuts ? cuts[i] : len, dl = 0;
        size_t n = stop - start;
        char *piece = malloc(n ? n : 1); /* exact size: ASan sees any overread */
        ssize_t r;

        memcpy(piece, in + start, n);
        if (decode) {
            r = tg_h1_chunked_decode(&d, piece, n, &dl);
            memcpy(data + *data_len, piece, dl);
            *data_len += dl;
        } else {
            r = tg_h1_chunked_scan(&d, piece, n);
        }
        free(piece);
        if (r != TG_H1_INCOMPLETE)
            return r == TG_H1_INVALID ? r : (ssize_t)start + r;
        start = stop;
    }
    return TG_H1_INCOMPLETE;
}

static void check_valid(const struct valid_case *c, const size_t *cuts, size_t ncuts)
{
    ssize_t end = (ssize_t)(c->len - c->trailing), r;
    char data[256];
    size_t dl;

    r = run_split(c->in, c->len, cuts, ncuts, false, data, &dl);
    if (r != end)
        UNIT_FAIL("scan \"%s\" cuts %zu: expected %zd, got %zd", c->in, ncuts, end, r);
    r = run_split(c->in, c->len, cuts, ncuts, true, data, &dl);
    if (r != end)
        UNIT_FAIL("decode \"%s\" cuts %zu: expected %zd, got %zd", c->in, ncuts, end, r);
    if (dl != c->data_len || memcmp(data, c->data, dl) != 0)
        UNIT_FAIL("decode \"%s\": data \"%.*s\"", c->in, (int)dl, data);
}

TEST(test_valid_whole_and_split)
{
    for (size_t i = 0; i < TG_ARRAY_SIZE(valid); i++) {
        const struct valid_case *c = &valid[i];
        size_t cuts[256];

        check_valid(c, NULL, 0);
        /* every two-piece split, empty pieces included */
        for (size_t k = 0; k <= c->len; k++) {
            cuts[0] = k;
            check_valid(c, cuts, 1);
        }
        /* every three-piece split */
        for (size_t k = 0; k <= c->len; k++) {
            for (size_t m = k; m <= c->len; m++) {
                cuts[0] = k;
                cuts[1] = m;
                check_valid(c, cuts, 2);
            }
        }
        /* byte by byte */
        for (size_t k = 0; k < c->len && k < TG_ARRAY_SIZE(cuts); k++)
            cuts[k] = k + 1;
        check_valid(c, cuts, c->len - 1);
    }
}

TEST(test_decode_in_place_and_done)
{
    char buf[] = "4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n";
    struct tg_h1_chunked d;
    size_t dl = 0;

    tg_h1_chunked_init(&d, MAX_LINE, MAX_TRAILERS);
    ASSERT_EQ(sizeof(buf) - 1, tg_h1_chunked_decode(&d, buf, sizeof(buf) - 1, &dl));
    ASSERT_STR("Wikipedia in\r\n\r\nchunks.", buf, dl);
    /* a finished body consumes nothing more */
    ASSERT_EQ(0, tg_h1_chunked_scan(&d, "5\r\n", 3));
}

struct invalid_case {
    const char *in;
    size_t len;
};

static const struct invalid_case invalid[] = {
    {S("\r\n")},                          /* empty size */
    {S("x\r\n")},                         /* not hex */
    {S(" 5\r\nhello\r\n0\r\n\r\n")},      /* leading whitespace */
    {S("5 \r\nhello\r\n0\r\n\r\n")},      /* whitespace without an extension */
    {S("-5\r\n")},                        /* sign */
    {S("0x5\r\n")},                       /* prefix */
    {S("5\nhello\r\n0\r\n\r\n")},         /* bare LF after the size */
    {S("5\rhello")},                      /* bare CR after the size */
    {S("5\r\nhelloX\r\n0\r\n\r\n")},      /* data longer than the size */
    {S("5\r\nhello\n0\r\n\r\n")},         /* bare LF after the data */
    {S("5\r\nhello\r0\r\n\r\n")},         /* bare CR after the data */
    {S("00000000000000005\r\n")},         /* 17 hex digits */
    {S("8000000000000000\r\n")},          /* 2^63 */
    {S("ffffffffffffffff\r\n")},          /* 2^64 - 1 */
    {S("10000000000000000\r\n")},         /* 2^64 */
    {S("5;a\x01\r\nhello\r\n0\r\n\r\n")}, /* CTL in an extension */
    {S("5;a\nhello\r\n0\r\n\r\n")},       /* LF in an extension */
    {S("5;a\x7f\r\n")},                   /* DEL in an extension */
    {S("5;aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n")}, /* max_line */
    {S("0\r\nX: a\r\n b\r\n\r\n")}, /* obs-fold in trailers */
    {S("0\r\n X: a\r\n\r\n")},      /* trailer starting with whitespace */
    {S("0\r\nX\r\n\r\n")},          /* trailer without colon */
    {S("0\r\nX : a\r\n\r\n")},      /* whitespace before the colon */
    {S("0\r\n: a\r\n\r\n")},        /* empty trailer name */
    {S("0\r\nX: a\0\r\n\r\n")},     /* NUL in a trailer value */
    {S("0\r\nX: a\n\r\n")},         /* bare LF after a trailer */
    {S("0\r\nX: a\rb\r\n\r\n")},    /* bare CR in a trailer */
    {S("0\r\n\r\r")},               /* bare CR at the end */
    {S("0\r\n\n")},                 /* bare LF at the end */
    {S("0\r\nX: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nY: aaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n")},
};

TEST(test_invalid)
{
    for (size_t i = 0; i < TG_ARRAY_SIZE(invalid); i++) {
        const struct invalid_case *c = &invalid[i];
        struct tg_h1_chunked d;
        char data[256];
        size_t dl, cuts[256];
        ssize_t r;

        tg_h1_chunked_init(&d, MAX_LINE, MAX_TRAILERS);
        r = tg_h1_chunked_scan(&d, c->in, c->len);
        if (r != TG_H1_INVALID)
            UNIT_FAIL("case %zu \"%s\": expected invalid, got %zd", i, c->in, r);
        /* stays invalid */
        ASSERT_EQ(TG_H1_INVALID, tg_h1_chunked_scan(&d, "0\r\n\r\n", 5));
        ASSERT_EQ(TG_H1_INVALID, run_split(c->in, c->len, NULL, 0, true, data, &dl));
        for (size_t k = 0; k < c->len - 1; k++)
            cuts[k] = k + 1;
        ASSERT_EQ(TG_H1_INVALID, run_split(c->in, c->len, cuts, c->len - 1, false, data, &dl));
    }
}

TEST(test_limits)
{
    struct tg_h1_chunked d;

    /* size line: max_line bytes before the CR are fine, one more is not */
    tg_h1_chunked_init(&d, 8, 0);
    ASSERT_EQ(12, tg_h1_chunked_scan(&d, S("0;abcdef\r\n\r\n")));
    tg_h1_chunked_init(&d, 8, 0);
    ASSERT_EQ(TG_H1_INVALID, tg_h1_chunked_scan(&d, S("0;abcdefg\r\n\r\n")));
    /* trailers: the fields' bytes (CRLFs included) count, the final CRLF does not */
    tg_h1_chunked_init(&d, 8, 6);
    ASSERT_EQ(11, tg_h1_chunked_scan(&d, S("0\r\nX: 1\r\n\r\n")));
    tg_h1_chunked_init(&d, 8, 5);
    ASSERT_EQ(TG_H1_INVALID, tg_h1_chunked_scan(&d, S("0\r\nX: 1\r\n\r\n")));
    /* the largest size accepted, 2^63 - 1, streams as data */
    tg_h1_chunked_init(&d, 64, 0);
    ASSERT_EQ(TG_H1_INCOMPLETE, tg_h1_chunked_scan(&d, S("7fffffffffffffff\r\nabc")));
    ASSERT_EQ(UINT64_C(0x7fffffffffffffff) - 3, d.remaining);
}

int main(void)
{
    RUN(test_valid_whole_and_split);
    RUN(test_decode_in_place_and_done);
    RUN(test_invalid);
    RUN(test_limits);
    return unit_report();
}
