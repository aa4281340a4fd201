/*
 * Internals shared by the HTTP/1.1 request and response parsers: character classes, the
 * header-field scanner and the header semantics (framing, Connection, Host) both directions
 * apply. Nothing here is part of the module's interface.
 */
#ifndef TG_H1_INTERNAL_H
#define TG_H1_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "http/h1.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

/*
 * Reasons reported in ->error. The cross-check test classifies disagreements with an
 * independent parser by these strings, so they are shared here rather than written inline.
 */
#define TG__H1_E_BARE_CR         "bare CR"
#define TG__H1_E_BARE_LF         "bare LF line terminator"
#define TG__H1_E_CTL_LINE        "control character in start line"
#define TG__H1_E_LINE_TOO_LONG   "request line too long"
#define TG__H1_E_METHOD          "invalid method"
#define TG__H1_E_REQUEST_LINE    "malformed request line"
#define TG__H1_E_SPACES          "extra whitespace in request line"
#define TG__H1_E_NO_VERSION      "request line without HTTP version"
#define TG__H1_E_TARGET_CHAR     "non-ASCII byte in request line"
#define TG__H1_E_TARGET_FORM     "request target form not allowed for this method"
#define TG__H1_E_ABSOLUTE        "invalid absolute-form target"
#define TG__H1_E_AUTHORITY       "invalid authority-form target"
#define TG__H1_E_VERSION         "malformed HTTP version"
#define TG__H1_E_VERSION_UNSUP   "unsupported HTTP version"
#define TG__H1_E_OBS_FOLD        "obs-fold in header section"
#define TG__H1_E_LEADING_WS      "whitespace before the first header field"
#define TG__H1_E_WS_COLON        "whitespace between field name and colon"
#define TG__H1_E_EMPTY_NAME      "empty field name"
#define TG__H1_E_NAME_CHAR       "invalid byte in field name"
#define TG__H1_E_NO_COLON        "header line without colon"
#define TG__H1_E_VALUE_CTL       "control character in field value"
#define TG__H1_E_HEAD_TOO_LARGE  "header section too large"
#define TG__H1_E_TOO_MANY        "too many header fields"
#define TG__H1_E_CL              "invalid Content-Length"
#define TG__H1_E_CL_DIFFER       "differing Content-Length values"
#define TG__H1_E_CL_TE           "both Content-Length and Transfer-Encoding"
#define TG__H1_E_TE_MALFORMED    "malformed Transfer-Encoding"
#define TG__H1_E_TE_CHUNKED      "chunked is not the final transfer coding exactly once"
#define TG__H1_E_TE_UNKNOWN      "unknown transfer coding"
#define TG__H1_E_TE_FINAL        "final transfer coding is not chunked"
#define TG__H1_E_TE_HTTP10       "Transfer-Encoding in an HTTP/1.0 message"
#define TG__H1_E_CONN_MALFORMED  "malformed Connection"
#define TG__H1_E_CONN_NAMES      "Connection names Host, Content-Length or Transfer-Encoding"
#define TG__H1_E_HOST_MISSING    "missing Host"
#define TG__H1_E_HOST_DUP        "duplicate Host"
#define TG__H1_E_HOST_INVALID    "invalid Host"
#define TG__H1_E_EXPECT          "unsupported expectation"
#define TG__H1_E_STATUS_LINE     "malformed status line"
#define TG__H1_E_STATUS_TOO_LONG "status line too long"

/* Character classes, indexed by byte value. */
#define TG__H1_C_TCHAR 0x01 /* token character (RFC 9110 tchar) */
#define TG__H1_C_CTL   0x02 /* stops a field-value scan: 0x00-0x1f (HTAB included) and DEL */
#define TG__H1_C_HEX   0x04
#define TG__H1_C_REG   0x08 /* reg-name character: unreserved / sub-delims (RFC 3986) */
#define TG__H1_C_NUM   0x10 /* a digit or '.': what an IPv4 address is made of */

extern const uint8_t tg__h1_class[256];

static inline bool tg__h1_is(unsigned char c, uint8_t cls)
{
    return (tg__h1_class[c] & cls) != 0;
}

/*
 * Returns the first byte of [p, end) below 0x20 (HTAB included) or equal to DEL, or end. Field
 * values are the bulk of a head, so this is the loop that decides the parser's speed: 16 bytes
 * per step with SSE2, which every x86-64 has.
 */
static inline const char *tg__h1_find_ctl(const char *p, const char *end)
{
#ifdef __SSE2__
    const __m128i c1f = _mm_set1_epi8(0x1f), del = _mm_set1_epi8(0x7f);

    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i low = _mm_cmpeq_epi8(_mm_min_epu8(v, c1f), v); /* v <= 0x1f, unsigned */
        int m = _mm_movemask_epi8(_mm_or_si128(low, _mm_cmpeq_epi8(v, del)));

        if (m != 0)
            return p + __builtin_ctz((unsigned)m);
        p += 16;
    }
#endif
    while (p < end && !tg__h1_is((unsigned char)*p, TG__H1_C_CTL))
        p++;
    return p;
}

/*
 * Returns the first byte of [p, end) outside 0x20-0x7e, or end: the request line is ASCII
 * without controls, so one scan finds its end and any byte it may not contain.
 */
static inline const char *tg__h1_find_nonprint(const char *p, const char *end)
{
#ifdef __SSE2__
    const __m128i sp = _mm_set1_epi8(0x20), del = _mm_set1_epi8(0x7f);

    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        /* signed: bytes >= 0x80 are negative, so this also catches them */
        int m = _mm_movemask_epi8(_mm_or_si128(_mm_cmplt_epi8(v, sp), _mm_cmpeq_epi8(v, del)));

        if (m != 0)
            return p + __builtin_ctz((unsigned)m);
        p += 16;
    }
#endif
    while (p < end && (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f)
        p++;
    return p;
}

/*
 * Returns the end of the field name starting at p: the first byte that is not a tchar, or end.
 * Names are nearly always letters, digits and '-', which SSE2 checks 16 at a time; anything
 * else finishes in the table-driven loop.
 */
static inline const char *tg__h1_find_name_end(const char *p, const char *end)
{
#ifdef __SSE2__
    const __m128i a1 = _mm_set1_epi8('a' - 1), z1 = _mm_set1_epi8('z' + 1);
    const __m128i d1 = _mm_set1_epi8('0' - 1), d2 = _mm_set1_epi8('9' + 1);
    const __m128i dash = _mm_set1_epi8('-'), fold = _mm_set1_epi8(0x20);

    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i l = _mm_or_si128(v, fold);
        __m128i ok = _mm_and_si128(_mm_cmpgt_epi8(l, a1), _mm_cmplt_epi8(l, z1));
        int m;

        ok = _mm_or_si128(ok, _mm_and_si128(_mm_cmpgt_epi8(v, d1), _mm_cmplt_epi8(v, d2)));
        ok = _mm_or_si128(ok, _mm_cmpeq_epi8(v, dash));
        m = ~_mm_movemask_epi8(ok) & 0xffff;
        if (m != 0) {
            p += __builtin_ctz((unsigned)m);
            break;
        }
        p += 16;
    }
#endif
    while (p < end && tg__h1_is((unsigned char)*p, TG__H1_C_TCHAR))
        p++;
    return p;
}

/*
 * Case-insensitive comparison of a token with a lower-case literal of the same length, eight
 * bytes at a time. OR-ing 0x20 folds case exactly for the bytes that reach it (tokens, field
 * values): no other byte of 0x20-0x7e or obs-text maps onto a letter, a digit, '-', ':' or '/'
 * this way; only controls would, and those never get here.
 */
static inline bool tg__h1_token_eq(const char *s, const char *lower, size_t n)
{
    const uint64_t fold = 0x2020202020202020ull;

    for (; n >= 8; s += 8, lower += 8, n -= 8) {
        uint64_t a, b;

        memcpy(&a, s, 8);
        memcpy(&b, lower, 8);
        if ((a | fold) != b)
            return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (((unsigned char)s[i] | 0x20) != (unsigned char)lower[i])
            return false;
    }
    return true;
}

#define TG__H1_TOKEN_IS(str, lit)                                                                  \
    ((str).len == sizeof(lit) - 1 && tg__h1_token_eq((str).base, (lit), sizeof(lit) - 1))

/* The header-field scanner's input and output. */
struct tg__h1_fields {
    struct tg_http_header *headers; /* capacity max_headers */
    size_t max_headers;
    size_t num_headers;
    int status; /* on TG_H1_INVALID: 400 for a syntax error, 431 for a limit */
    const char *error;
};

/*
 * Parses header fields from buf[pos] (the first byte after the start line) through the empty
 * line. The head must end at or before offset lim (which may lie beyond len): when it cannot,
 * the result is a 431. Returns the offset just past the empty line, TG_H1_INCOMPLETE, or
 * TG_H1_INVALID with f->status and f->error set.
 */
ssize_t tg__h1_parse_fields(const char *buf, size_t len, size_t pos, size_t lim,
                            struct tg__h1_fields *f);

/* What the header section says about framing and the connection, for both directions. */
struct tg__h1_semantics {
    uint64_t content_length;
    struct tg_str host; /* the last Host value */
    unsigned hosts;     /* Host fields seen */
    bool has_cl;
    bool has_te;
    bool conn_close;
    bool conn_keep_alive;
    bool conn_upgrade;
    bool has_upgrade;
    bool expect_continue;
    bool expect_other;
    int status; /* when tg__h1_analyze() fails: 400 or 501 */
    const char *error;
};

/*
 * Validates Content-Length, Transfer-Encoding (chunked must be final, exactly once; any other
 * accepted list ends with chunked) and Connection, marks hop-by-hop headers with TG_HDR_F_HOP
 * and collects the rest of *s. Returns 0 or -1 with s->status and s->error set.
 */
int tg__h1_analyze(struct tg_http_header *h, size_t n, struct tg__h1_semantics *s);

/*
 * Validates an authority: reg-name, dotted-quad IPv4 or [IPv6], then ":port" (1-65535), which
 * need_port makes mandatory. Userinfo is never accepted.
 */
bool tg__h1_authority_valid(const char *s, size_t n, bool need_port);

/*
 * Locates the start line: scans buf[pos..) for its CR within the window that max_line allows
 * (the CR may sit at offset max_line at most). A request line must be printable ASCII; a status
 * line (status_line) may also hold HTAB and obs-text in its reason phrase. Returns the CR's
 * offset, TG_H1_INCOMPLETE, or TG_H1_INVALID with *error set and *too_long telling a limit
 * from a syntax error.
 */
ssize_t tg__h1_find_start_line(const char *buf, size_t len, size_t pos, size_t max_line,
                               bool status_line, const char **error, bool *too_long);

#endif
