/*
 * JSON escaping, the access-log line format, the per-worker rings and their writer thread, and
 * the diagnostic log. Lines are checked with a strict JSON validator written here, independent
 * of the code under test (its UTF-8 check decodes code points instead of matching byte ranges).
 *
 * With TG_LOG_BENCH=1 in the environment the program also prints the cost of tg_access_log().
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "core/json.h"
#include "obs/accesslog.h"
#include "obs/log.h"
#include "unit.h"

/* --- helpers --------------------------------------------------------------------------------- */

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A test that hangs (a producer that blocks, a stop that never returns) fails instead. */
static void watchdog_fire(int sig)
{
    static const char msg[] = "test_log: watchdog: a test hung\n";
    ssize_t n = write(1, msg, sizeof msg - 1);

    (void)n;
    (void)sig;
    _exit(1);
}

static void watchdog(unsigned seconds)
{
    signal(SIGALRM, watchdog_fire);
    alarm(seconds);
}

/* Collects everything written to a pipe until EOF. */
struct reader {
    int fd;
    char *buf;
    size_t len, cap;
    pthread_t thread;
};

static void *reader_main(void *arg)
{
    struct reader *rd = arg;

    for (;;) {
        ssize_t n;

        if (rd->cap - rd->len < 65536) {
            rd->cap = rd->cap ? rd->cap * 2 : 1 << 20;
            rd->buf = realloc(rd->buf, rd->cap);
            if (rd->buf == NULL)
                abort();
        }
        n = read(rd->fd, rd->buf + rd->len, rd->cap - rd->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        rd->len += (size_t)n;
    }
    return NULL;
}

static void reader_start(struct reader *rd, int fd)
{
    memset(rd, 0, sizeof *rd);
    rd->fd = fd;
    pthread_create(&rd->thread, NULL, reader_main, rd);
}

static void reader_join(struct reader *rd)
{
    pthread_join(rd->thread, NULL);
    close(rd->fd);
}

/* Reads what a pipe holds right now (the write end may stay open). */
static size_t drain_pipe(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    int fl = fcntl(fd, F_GETFL);

    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    while (len < cap) {
        ssize_t n = read(fd, buf + len, cap - len);

        if (n <= 0)
            break;
        len += (size_t)n;
    }
    fcntl(fd, F_SETFL, fl);
    return len;
}

static uint64_t count_char(const char *p, size_t len, char c)
{
    uint64_t n = 0;
    size_t i;

    for (i = 0; i < len; i++)
        n += p[i] == c;
    return n;
}

/* --- a strict JSON validator (RFC 8259) ------------------------------------------------------ */

static const char *jv_value(const char *p, const char *e, int depth);

static const char *jv_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* Decodes one UTF-8 code point and rejects overlong forms, surrogates and > U+10FFFF. */
static size_t jv_utf8(const unsigned char *p, const unsigned char *e)
{
    uint32_t cp, min;
    size_t n, i;

    if (*p >= 0xc0 && *p < 0xe0)
        n = 2, cp = *p & 0x1f, min = 0x80;
    else if (*p >= 0xe0 && *p < 0xf0)
        n = 3, cp = *p & 0x0f, min = 0x800;
    else if (*p >= 0xf0 && *p < 0xf8)
        n = 4, cp = *p & 0x07, min = 0x10000;
    else
        return 0;
    if ((size_t)(e - p) < n)
        return 0;
    for (i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* Validates the inside of a string up to (not including) the closing quote; returns its end. */
static const char *jv_string_body(const char *p, const char *e)
{
    while (p < e && *p != '"') {
        unsigned char c = (unsigned char)*p;
        size_t n;
        int i;

        if (c < 0x20)
            return NULL;
        if (c == '\\') {
            if (++p >= e)
                return NULL;
            if (*p == 'u') {
                for (i = 1; i <= 4; i++)
                    if (p + i >= e || !strchr("0123456789abcdefABCDEF", p[i]) || p[i] == 0)
                        return NULL;
                p += 5;
            } else if (*p && strchr("\"\\/bfnrt", *p)) {
                p++;
            } else {
                return NULL;
            }
            continue;
        }
        if (c >= 0x80) {
            n = jv_utf8((const unsigned char *)p, (const unsigned char *)e);
            if (n == 0)
                return NULL;
            p += n;
            continue;
        }
        p++;
    }
    return p;
}

static const char *jv_string(const char *p, const char *e)
{
    if (p >= e || *p != '"')
        return NULL;
    p = jv_string_body(p + 1, e);
    return p && p < e ? p + 1 : NULL;
}

static const char *jv_digits(const char *p, const char *e)
{
    const char *s = p;

    while (p < e && *p >= '0' && *p <= '9')
        p++;
    return p > s ? p : NULL;
}

static const char *jv_number(const char *p, const char *e)
{
    if (p < e && *p == '-')
        p++;
    if (p < e && *p == '0')
        p++;
    else if ((p = jv_digits(p, e)) == NULL)
        return NULL;
    if (p < e && *p == '.' && (p = jv_digits(p + 1, e)) == NULL)
        return NULL;
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        p = jv_digits(p, e);
    }
    return p;
}

static const char *jv_list(const char *p, const char *e, int depth, char close, bool members)
{
    p = jv_ws(p + 1, e);
    if (p < e && *p == close)
        return p + 1;
    for (;;) {
        if (members) {
            if ((p = jv_string(p, e)) == NULL)
                return NULL;
            p = jv_ws(p, e);
            if (p >= e || *p != ':')
                return NULL;
            p++;
        }
        if ((p = jv_value(p, e, depth + 1)) == NULL)
            return NULL;
        p = jv_ws(p, e);
        if (p < e && *p == close)
            return p + 1;
        if (p >= e || *p != ',')
            return NULL;
        p++;
    }
}

static const char *jv_value(const char *p, const char *e, int depth)
{
    p = jv_ws(p, e);
    if (p >= e || depth > 32)
        return NULL;
    switch (*p) {
    case '{':
        return jv_list(p, e, depth, '}', true);
    case '[':
        return jv_list(p, e, depth, ']', false);
    case '"':
        return jv_string(p, e);
    case 't':
        return e - p >= 4 && memcmp(p, "true", 4) == 0 ? p + 4 : NULL;
    case 'f':
        return e - p >= 5 && memcmp(p, "false", 5) == 0 ? p + 5 : NULL;
    case 'n':
        return e - p >= 4 && memcmp(p, "null", 4) == 0 ? p + 4 : NULL;
    default:
        return jv_number(p, e);
    }
}

/* One JSON object followed by exactly one newline. */
static bool json_line_ok(const char *line, size_t len)
{
    const char *p;

    if (len < 3 || line[0] != '{' || line[len - 1] != '\n')
        return false;
    p = jv_value(line, line + len - 1, 0);
    return p == line + len - 1;
}

/* Copies the raw text of a top-level member's value; false if absent. */
static bool json_member(const char *line, size_t len, const char *key, char *out, size_t cap)
{
    const char *p = line + 1, *e = line + len, *k, *kend, *v;

    for (;;) {
        k = jv_ws(p, e);
        if ((kend = jv_string(k, e)) == NULL)
            return false;
        p = jv_ws(kend, e) + 1; /* ':' */
        v = jv_ws(p, e);
        if ((p = jv_value(v, e, 1)) == NULL)
            return false;
        if ((size_t)(kend - k) == strlen(key) + 2 && memcmp(k + 1, key, strlen(key)) == 0) {
            if ((size_t)(p - v) >= cap)
                return false;
            memcpy(out, v, (size_t)(p - v));
            out[p - v] = '\0';
            return true;
        }
        p = jv_ws(p, e);
        if (p >= e || *p != ',')
            return false;
        p++;
    }
}

/* --- tg_json_escape -------------------------------------------------------------------------- */

static void check_escape(const char *in, size_t len, const char *want, int line)
{
    char out[512];
    size_t n = tg_json_escape(out, sizeof out, in, len);

    if (n != strlen(want) || memcmp(out, want, n) != 0) {
        UNIT_FAIL("line %d: escape: expected \"%s\", got \"%.*s\"", line, want, (int)n, out);
    }
}

#define CHECK_ESCAPE(lit, want) check_escape((lit), sizeof(lit) - 1, (want), __LINE__)

TEST(json_escape_specials)
{
    CHECK_ESCAPE("", "");
    CHECK_ESCAPE("plain /path?a=1&b=2", "plain /path?a=1&b=2");
    CHECK_ESCAPE("a\"b\\c", "a\\\"b\\\\c");
    CHECK_ESCAPE("\n\r\t", "\\n\\r\\t");
    CHECK_ESCAPE("\x01\x08\x0c\x1b\x1f", "\\u0001\\u0008\\u000c\\u001b\\u001f");
    CHECK_ESCAPE("nul:\0:", "nul:\\u0000:");
    CHECK_ESCAPE("\x7f ~", "\x7f ~");
}

TEST(json_escape_utf8)
{
    /* well-formed sequences of every length are kept */
    CHECK_ESCAPE("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
                 "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    CHECK_ESCAPE("\xef\xbf\xbf\xf4\x8f\xbf\xbf", "\xef\xbf\xbf\xf4\x8f\xbf\xbf");
    /* a stray continuation byte, bytes never valid, a truncated sequence */
    CHECK_ESCAPE("\x80", "\\ufffd");
    CHECK_ESCAPE("a\xff"
                 "b\xfe",
                 "a\\ufffdb\\ufffd");
    CHECK_ESCAPE("\xc3", "\\ufffd");
    CHECK_ESCAPE("\xe2\x82", "\\ufffd\\ufffd");
    CHECK_ESCAPE("\xe2\x82z", "\\ufffd\\ufffdz");
    /* overlong forms, a surrogate, above U+10FFFF */
    CHECK_ESCAPE("\xc0\xaf", "\\ufffd\\ufffd");
    CHECK_ESCAPE("\xc1\xbf", "\\ufffd\\ufffd");
    CHECK_ESCAPE("\xe0\x80\xaf", "\\ufffd\\ufffd\\ufffd");
    CHECK_ESCAPE("\xf0\x80\x80\xaf", "\\ufffd\\ufffd\\ufffd\\ufffd");
    CHECK_ESCAPE("\xed\xa0\x80", "\\ufffd\\ufffd\\ufffd");
    CHECK_ESCAPE("\xf4\x90\x80\x80", "\\ufffd\\ufffd\\ufffd\\ufffd");
    CHECK_ESCAPE("\xf5\x80\x80\x80", "\\ufffd\\ufffd\\ufffd\\ufffd");
}

/* Every special byte at every position of a long string: the word-at-a-time path must never
 * skip one. */
TEST(json_escape_every_position)
{
    static const char specials[] = {'"', '\\', '\n', 0x01, 0x1f, (char)0x80, (char)0xff};
    static const char *const escapes[] = {"\\\"",    "\\\\",    "\\n",    "\\u0001",
                                          "\\u001f", "\\ufffd", "\\ufffd"};
    char in[40], want[64], out[256];
    size_t pos, k, n;

    for (k = 0; k < sizeof specials; k++) {
        for (pos = 0; pos < sizeof in; pos++) {
            const char *esc = escapes[k];

            memset(in, 'a', sizeof in);
            in[pos] = specials[k];
            snprintf(want, sizeof want, "%.*s%s%.*s", (int)pos, in, esc, (int)(sizeof in - pos - 1),
                     in + pos + 1);
            n = tg_json_escape(out, sizeof out, in, sizeof in);
            if (n != strlen(want) || memcmp(out, want, n) != 0)
                UNIT_FAIL("special %zu at %zu: got \"%.*s\"", k, pos, (int)n, out);
        }
    }
}

/* Length of the escape or character that starts full[i]. */
static size_t unit_len(const unsigned char *full, size_t i)
{
    if (full[i] == '\\')
        return full[i + 1] == 'u' ? 6 : 2;
    if (full[i] >= 0xf0)
        return 4;
    if (full[i] >= 0xe0)
        return 3;
    if (full[i] >= 0xc0)
        return 2;
    return 1;
}

/* With any cap, the output is the longest prefix of the full output that ends between two
 * escapes or characters. */
TEST(json_escape_cap)
{
    static const char in[] = "ab\"c\\\n\x01xyz\xc3\xa9\xe2\x82\xac\xff\xf0\x9f\x98\x80"
                             "0123456789abcdefg\x02";
    char full[512], out[512];
    size_t flen = tg_json_escape(full, sizeof full, in, sizeof in - 1), cap;

    for (cap = 0; cap <= flen + 2; cap++) {
        size_t n = tg_json_escape(out, cap, in, sizeof in - 1), best = 0, i = 0;

        while (i < flen && i + unit_len((unsigned char *)full, i) <= cap)
            i += unit_len((unsigned char *)full, i);
        best = i;
        if (n != best || memcmp(out, full, n) != 0)
            UNIT_FAIL("cap %zu: expected %zu bytes, got %zu: \"%.*s\"", cap, best, n, (int)n, out);
    }
    ASSERT_EQ(flen, tg_json_escape(full, flen, in, sizeof in - 1));
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Random bytes, biased towards the interesting ones. */
static void random_bytes(char *p, size_t len)
{
    static const char pick[] =
        "\"\\\n\t\x01\x7f\xc3\xa9\xe2\x82\xac\xed\xa0\xf0\x9f\x98\x80\xff\xc0";
    size_t i;

    for (i = 0; i < len; i++) {
        uint64_t r = rng();

        p[i] = (r & 3) == 0   ? (char)(r >> 8)
               : (r & 3) == 1 ? pick[(r >> 8) % (sizeof pick - 1)]
                              : (char)('a' + (r >> 8) % 26);
    }
}

TEST(json_escape_random_is_valid)
{
    char in[96], body[96 * 6 + 2];
    int iter;

    for (iter = 0; iter < 50000; iter++) {
        size_t len = rng() % sizeof in, cap = rng() % (sizeof body - 2), n;
        const char *end;

        random_bytes(in, len);
        n = tg_json_escape(body, cap, in, len);
        end = jv_string_body(body, body + n);
        if (n > cap || end != body + n) {
            UNIT_FAIL("iteration %d: invalid JSON string body \"%.*s\"", iter, (int)n, body);
            return;
        }
    }
}

/* --- tg_access_format ------------------------------------------------------------------------ */

TEST(access_format_exact)
{
    char out[TG_ACCESS_LINE_MAX];
    struct tg_access_entry e = {
        .ts_ms = 1795547702123LL, /* 2026-11-24T19:15:02.123Z */
        .request_id = "f00dfeed12345678",
        .request_id_len = 16,
        .trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
        .route = "api",
        .method = "POST",
        .method_len = 4,
        .host = "api.example.com",
        .host_len = 15,
        .path = "/v1/users?q=1",
        .path_len = 13,
        .status = 201,
        .bytes_in = 512,
        .bytes_out = 18446744073709551615ULL,
        .duration_us = 412,
        .upstream = "10.0.0.11:8545",
        .upstream_us = 1234567,
        .client = "192.168.1.23:54321",
        .client_len = 18,
    };
    size_t n = tg_access_format(out, sizeof out, &e);

    ASSERT_STR("{\"ts\":\"2026-11-24T19:15:02.123Z\",\"request_id\":\"f00dfeed12345678\","
               "\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"route\":\"api\","
               "\"method\":\"POST\",\"host\":\"api.example.com\",\"path\":\"/v1/users?q=1\","
               "\"status\":201,\"bytes_in\":512,\"bytes_out\":18446744073709551615,"
               "\"duration_ms\":0.412,\"upstream\":\"10.0.0.11:8545\",\"upstream_ms\":1234.567,"
               "\"client\":\"192.168.1.23:54321\"}\n",
               out, n);
    ASSERT(json_line_ok(out, n));

    /* nulls, an omitted trace_id, client bytes that need escaping, zero-padded fractions */
    e.ts_ms = 1000;
    e.trace_id = NULL;
    e.route = NULL;
    e.host = NULL;
    e.path = "/a\"b\\\x01\xff";
    e.path_len = 7;
    e.status = 502;
    e.duration_us = 7000005;
    e.upstream = NULL;
    e.upstream_us = -1;
    e.client = NULL;
    n = tg_access_format(out, sizeof out, &e);
    ASSERT_STR("{\"ts\":\"1970-01-01T00:00:01.000Z\",\"request_id\":\"f00dfeed12345678\","
               "\"route\":null,\"method\":\"POST\",\"host\":null,"
               "\"path\":\"/a\\\"b\\\\\\u0001\\ufffd\",\"status\":502,\"bytes_in\":512,"
               "\"bytes_out\":18446744073709551615,\"duration_ms\":7000.005,\"upstream\":null,"
               "\"upstream_ms\":null,\"client\":null}\n",
               out, n);
    ASSERT(json_line_ok(out, n));

    e.upstream_us = 0;
    e.duration_us = 0;
    n = tg_access_format(out, sizeof out, &e);
    ASSERT(strstr(out, "\"duration_ms\":0.000,") != NULL);
    ASSERT(strstr(out, "\"upstream_ms\":0.000,") != NULL);

    /* too small a buffer is refused, not overrun */
    ASSERT_EQ(0, tg_access_format(out, TG_ACCESS_LINE_MAX - 1, &e));
}

TEST(access_format_bounds)
{
    static char big[64 * 1024], out[TG_ACCESS_LINE_MAX + 64];
    char val[TG_ACCESS_LINE_MAX];
    struct tg_access_entry e = {0};
    size_t n;

    /* a very long plain path is cut at TG_ACCESS_PATH_MAX bytes */
    memset(big, 'p', sizeof big);
    e.path = big;
    e.path_len = sizeof big;
    n = tg_access_format(out, sizeof out, &e);
    ASSERT(json_line_ok(out, n));
    ASSERT(json_member(out, n, "path", val, sizeof val));
    ASSERT_EQ(TG_ACCESS_PATH_MAX + 2, strlen(val));

    /* every client field at its worst: still one valid line within the bound */
    memset(big, 0x01, sizeof big);
    e.request_id = e.method = e.host = e.client = big;
    e.request_id_len = e.method_len = e.host_len = e.client_len = sizeof big;
    e.status = -2147483647 - 1;
    e.duration_us = UINT64_MAX;
    e.upstream_us = INT64_MAX;
    memset(out, 'X', sizeof out);
    n = tg_access_format(out, sizeof out, &e);
    ASSERT(n <= TG_ACCESS_LINE_MAX);
    ASSERT(out[TG_ACCESS_LINE_MAX] == 'X');
    ASSERT(json_line_ok(out, n));
    ASSERT(json_member(out, n, "status", val, sizeof val));
    ASSERT_STREQ("-2147483648", val);
    ASSERT(json_member(out, n, "duration_ms", val, sizeof val));
    ASSERT_STREQ("18446744073709551.615", val);
}

TEST(access_format_random_is_valid)
{
    char f[4][300], out[TG_ACCESS_LINE_MAX];
    int iter;

    for (iter = 0; iter < 20000; iter++) {
        struct tg_access_entry e = {0};
        size_t n, i, len[4];

        for (i = 0; i < 4; i++) {
            len[i] = rng() % sizeof f[i];
            random_bytes(f[i], len[i]);
        }
        e.ts_ms = (int64_t)(rng() % 4000000000000ULL);
        e.request_id = f[0], e.request_id_len = len[0];
        e.method = rng() & 1 ? "GET" : NULL, e.method_len = 3;
        e.host = f[1], e.host_len = len[1];
        e.path = f[2], e.path_len = len[2];
        e.client = f[3], e.client_len = len[3];
        e.route = rng() & 1 ? "r" : NULL;
        e.status = (int)(rng() % 600);
        e.bytes_in = rng();
        e.bytes_out = rng();
        e.duration_us = rng();
        e.upstream_us = (int64_t)rng();
        n = tg_access_format(out, sizeof out, &e);
        if (!json_line_ok(out, n)) {
            UNIT_FAIL("iteration %d: invalid line %.*s", iter, (int)n, out);
            return;
        }
    }
}

/* --- rings and the writer thread ------------------------------------------------------------- */

struct sample {
    char rid[32];
    char path[2300];
    struct tg_access_entry e;
};

/* Line i of a stream: lengths vary from ~200 bytes to the path limit so every wrap offset of a
 * small ring is hit, and the timestamp crosses seconds often. */
static void sample_make(struct sample *s, uint64_t i)
{
    size_t plen = i % 61 == 0 ? 2000 + i % 250 : 1 + (i * 7919) % 300, k;

    snprintf(s->rid, sizeof s->rid, "req-%08" PRIu64, i);
    s->path[0] = '/';
    for (k = 1; k < plen; k++)
        s->path[k] = (char)('a' + (i + k) % 26);
    if (plen > 4 && i % 5 == 0)
        memcpy(s->path + 1, "\"\\\x01", 3);
    memset(&s->e, 0, sizeof s->e);
    s->e.ts_ms = 1795547702000LL + (int64_t)i * 37;
    s->e.request_id = s->rid;
    s->e.request_id_len = strlen(s->rid);
    s->e.trace_id = i % 3 ? "4bf92f3577b34da6a3ce929d0e0e4736" : NULL;
    s->e.route = i % 4 ? "api" : NULL;
    s->e.method = "GET";
    s->e.method_len = 3;
    s->e.host = "api.example.com";
    s->e.host_len = 15;
    s->e.path = s->path;
    s->e.path_len = plen;
    s->e.status = 200 + (int)(i % 4) * 100;
    s->e.bytes_in = i;
    s->e.bytes_out = i * 3;
    s->e.duration_us = i * 11;
    s->e.upstream = i % 7 ? "n1" : NULL;
    s->e.upstream_us = i % 7 ? (int64_t)i : -1;
    s->e.client = "127.0.0.1:40000";
    s->e.client_len = 15;
}

#define STREAM_LINES 60000

struct producer {
    struct tg_access_ring *ring;
    uint64_t refused;
};

static void *producer_main(void *arg)
{
    struct producer *pr = arg;
    struct sample s;
    uint64_t i;

    for (i = 0; i < STREAM_LINES; i++) {
        sample_make(&s, i);
        /* Full speed; a refused line is retried so the stream stays complete. */
        while (!tg_access_log(pr->ring, &s.e)) {
            pr->refused++;
            sched_yield();
        }
    }
    return NULL;
}

/* Two producers on small rings (many wraps) into a pipe the test reads: every line arrives
 * whole and each ring's lines arrive in order. */
TEST(ring_stream_in_order)
{
    struct producer pr[2];
    struct reader rd;
    struct sample s;
    char expect[TG_ACCESS_LINE_MAX];
    uint64_t next[2] = {0, 0}, lines = 0;
    const char *p, *end;
    int fds[2], k;

    watchdog(60);
    ASSERT_EQ(0, pipe(fds));
    reader_start(&rd, fds[0]);
    ASSERT_EQ(0, tg_logwriter_start(2, 16 * 1024, fds[1]));
    for (k = 0; k < 2; k++) {
        pr[k].ring = tg_logwriter_ring((size_t)k);
        pr[k].refused = 0;
    }
    ASSERT(pr[0].ring != NULL && pr[1].ring != NULL && pr[0].ring != pr[1].ring);
    ASSERT(tg_logwriter_ring(2) == NULL);
    {
        pthread_t th[2];

        for (k = 0; k < 2; k++)
            pthread_create(&th[k], NULL, producer_main, &pr[k]);
        for (k = 0; k < 2; k++)
            pthread_join(th[k], NULL);
    }
    for (k = 0; k < 2; k++)
        ASSERT_EQ(pr[k].refused, tg_access_ring_dropped(pr[k].ring));
    tg_logwriter_stop();
    close(fds[1]);
    reader_join(&rd);

    /* The two streams interleave by whole lines; each is the exact sequence 0..N-1. The ring of
     * a line is not in the line, so match it against the next expected line of either. */
    p = rd.buf;
    end = rd.buf + rd.len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len, n;

        if (nl == NULL) {
            UNIT_FAIL("a cut line at byte %zu", (size_t)(p - rd.buf));
            break;
        }
        len = (size_t)(nl + 1 - p);
        for (k = 0; k < 2; k++) {
            if (next[k] >= STREAM_LINES)
                continue;
            sample_make(&s, next[k]);
            n = tg_access_format(expect, sizeof expect, &s.e);
            if (n == len && memcmp(expect, p, n) == 0)
                break;
        }
        if (k == 2) {
            UNIT_FAIL("line %" PRIu64 " is not the next of either ring: %.*s", lines,
                      (int)TG_MIN(len, 200), p);
            break;
        }
        next[k]++;
        lines++;
        p = nl + 1;
    }
    ASSERT_EQ(STREAM_LINES, next[0]);
    ASSERT_EQ(STREAM_LINES, next[1]);
    free(rd.buf);
    alarm(0);
}

/* Lines queued when tg_logwriter_stop() is called are written before it returns. */
TEST(stop_flushes)
{
    struct reader rd;
    struct sample s;
    int fds[2], i;

    watchdog(30);
    ASSERT_EQ(0, pipe(fds));
    reader_start(&rd, fds[0]);
    ASSERT_EQ(0, tg_logwriter_start(1, 1 << 20, fds[1]));
    /* Let the writer finish its first pass and fall asleep for its flush interval. */
    usleep(10000);
    for (i = 0; i < 10; i++) {
        sample_make(&s, (uint64_t)i);
        ASSERT(tg_access_log(tg_logwriter_ring(0), &s.e));
    }
    tg_logwriter_stop();
    close(fds[1]);
    reader_join(&rd);
    ASSERT_EQ(10, count_char(rd.buf, rd.len, '\n'));
    free(rd.buf);
    ASSERT_EQ(-EALREADY, (tg_logwriter_start(0, 0, 1), tg_logwriter_start(0, 0, 1)));
    tg_logwriter_stop();
    alarm(0);
}

/* Nobody reads stdout: the worker's calls stay fast and drop; once reading resumes, lines flow
 * again and every accepted line arrives. */
TEST(ring_blocked_consumer)
{
    struct tg_access_ring *r;
    struct reader rd;
    struct sample s;
    uint64_t attempted = 0, accepted = 0, slow = 0, dropped;
    int64_t max_ns = 0, t_end, t_marker;
    struct rusage ru0, ru1;
    int fds[2];
    bool marker = false;

    watchdog(30);
    ASSERT_EQ(0, pipe(fds));
    fcntl(fds[1], F_SETPIPE_SZ, 4096);
    ASSERT_EQ(0, tg_logwriter_start(1, 64 * 1024, fds[1]));
    r = tg_logwriter_ring(0);
    getrusage(RUSAGE_THREAD, &ru0);
    t_end = now_ns() + 300 * 1000000LL;
    while (now_ns() < t_end) {
        int64_t t0, dt;
        bool ok;

        sample_make(&s, attempted);
        t0 = now_ns();
        ok = tg_access_log(r, &s.e);
        dt = now_ns() - t0;
        max_ns = TG_MAX(max_ns, dt);
        slow += dt > 1000000; /* a call that took over 1 ms */
        attempted++;
        accepted += ok;
    }
    getrusage(RUSAGE_THREAD, &ru1);
    dropped = tg_access_ring_dropped(r);
    ASSERT(dropped > 0);
    ASSERT_EQ(attempted - accepted, dropped);
    ASSERT(tg_logwriter_dropped_total() >= dropped);
    /* The producer never went to sleep (a voluntary context switch). A call over 1 ms can only
     * be one the scheduler preempted, which a loaded 2-core machine does. */
    ASSERT_EQ(0, ru1.ru_nvcsw - ru0.ru_nvcsw);
    ASSERT(slow <= (uint64_t)(ru1.ru_nivcsw - ru0.ru_nivcsw) + 3);
    ASSERT(max_ns < 250 * 1000000LL);

    reader_start(&rd, fds[0]);
    t_marker = now_ns() + 5 * 1000000000LL;
    sample_make(&s, 1);
    s.e.request_id = "marker";
    s.e.request_id_len = 6;
    while (now_ns() < t_marker && !(marker = tg_access_log(r, &s.e)))
        usleep(1000);
    ASSERT(marker);
    accepted += marker;
    tg_logwriter_stop();
    close(fds[1]);
    reader_join(&rd);
    ASSERT_EQ(accepted, count_char(rd.buf, rd.len, '\n'));
    ASSERT(rd.len > 0 && strstr(rd.buf + rd.len - TG_MIN(rd.len, 400), "\"marker\"") != NULL);
    free(rd.buf);
    alarm(0);
}

/* A stop with a blocked stdout returns after about a second; lines it could not write are
 * counted, exactly. */
TEST(stop_on_blocked_fd)
{
    static char piped[1 << 20];
    struct tg_access_ring *r;
    struct sample s;
    uint64_t before = tg_logwriter_dropped_total(), accepted = 0, ring_drops, written, lost;
    int64_t t0, waited;
    int fds[2];

    watchdog(30);
    ASSERT_EQ(0, pipe(fds));
    fcntl(fds[1], F_SETPIPE_SZ, 4096);
    ASSERT_EQ(0, tg_logwriter_start(1, 16 * 1024, fds[1]));
    r = tg_logwriter_ring(0);
    while (tg_access_ring_dropped(r) == 0) {
        sample_make(&s, accepted);
        if (tg_access_log(r, &s.e))
            accepted++;
        else
            usleep(1000); /* give the writer the time to block on the full pipe */
        if (accepted > 100000)
            break;
    }
    ring_drops = tg_access_ring_dropped(r);
    ASSERT(ring_drops > 0);
    t0 = now_ns();
    tg_logwriter_stop();
    waited = now_ns() - t0;
    ASSERT(waited >= 900 * 1000000LL && waited < 2000 * 1000000LL);
    written = count_char(piped, drain_pipe(fds[0], piped, sizeof piped), '\n');
    lost = tg_logwriter_dropped_total() - before - ring_drops;
    ASSERT(lost > 0);
    ASSERT_EQ(accepted, written + lost);
    close(fds[0]);
    close(fds[1]);
    alarm(0);
}

/* The reader went away: writes fail with EPIPE (no SIGPIPE kills us), lines are counted. */
TEST(epipe_counts)
{
    struct sample s;
    uint64_t before = tg_logwriter_dropped_total();
    int fds[2], i;

    watchdog(30);
    ASSERT_EQ(0, pipe(fds));
    close(fds[0]);
    ASSERT_EQ(0, tg_logwriter_start(1, 1 << 20, fds[1]));
    for (i = 0; i < 100; i++) {
        sample_make(&s, (uint64_t)i);
        ASSERT(tg_access_log(tg_logwriter_ring(0), &s.e));
    }
    tg_logwriter_stop();
    ASSERT_EQ(100, tg_logwriter_dropped_total() - before);
    close(fds[1]);
    alarm(0);
}

/* --- diagnostic log -------------------------------------------------------------------------- */

static int saved_stderr = -1;

/* Sends fd 2 to a new pipe (read end returned); unit.h reports on stderr, so assert only after
 * stderr_restore(). */
static int stderr_to_pipe(int pipe_size)
{
    int fds[2];

    if (pipe(fds) != 0)
        abort();
    if (pipe_size)
        fcntl(fds[1], F_SETPIPE_SZ, pipe_size);
    saved_stderr = dup(2);
    dup2(fds[1], 2);
    close(fds[1]);
    return fds[0];
}

static void stderr_restore(void)
{
    dup2(saved_stderr, 2);
    close(saved_stderr);
}

static bool ts_ok(const char *v)
{
    static const char shape[] = "\"dddd-dd-ddTdd:dd:dd.dddZ\"";
    size_t i;

    if (strlen(v) != sizeof shape - 1)
        return false;
    for (i = 0; i < sizeof shape - 1; i++)
        if (shape[i] == 'd' ? v[i] < '0' || v[i] > '9' : v[i] != shape[i])
            return false;
    return true;
}

TEST(diag_direct_and_levels)
{
    char buf[8192], v[512], *lines[8];
    size_t len, n = 0;
    int rfd, i;

    ASSERT(tg_log_enabled(TG_LOG_INFO) && !tg_log_enabled(TG_LOG_DEBUG));
    rfd = stderr_to_pipe(0);
    tg_log(TG_LOG_DEBUG, "hidden");
    tg_log(TG_LOG_INFO, "hello \"%s\"\n\x01", "world");
    tg_log_fields(TG_LOG_ERROR, "\"errors\":[\"a.yaml:3:5: x\"]", "config has %d error", 1);
    tg_log_set_level(TG_LOG_WARN);
    tg_log(TG_LOG_INFO, "hidden");
    tg_log(TG_LOG_WARN, "warned");
    tg_log_set_level(TG_LOG_DEBUG);
    tg_log(TG_LOG_DEBUG, "debug %s", "on");
    tg_log_set_level(TG_LOG_INFO);
    len = drain_pipe(rfd, buf, sizeof buf - 1);
    stderr_restore();
    close(rfd);
    buf[len] = '\0';

    for (lines[0] = buf; n < 8 && *lines[n] != '\0'; n++) {
        char *nl = strchr(lines[n], '\n');

        if (nl == NULL)
            break;
        lines[n + 1] = nl + 1;
    }
    ASSERT_EQ(4, n);
    if (n != 4)
        return;
    for (i = 0; i < 4; i++) {
        size_t l = (size_t)(lines[i + 1] - lines[i]);

        ASSERT(json_line_ok(lines[i], l));
        ASSERT(json_member(lines[i], l, "ts", v, sizeof v) && ts_ok(v));
    }
    ASSERT(json_member(lines[0], (size_t)(lines[1] - lines[0]), "level", v, sizeof v));
    ASSERT_STREQ("\"info\"", v);
    ASSERT(json_member(lines[0], (size_t)(lines[1] - lines[0]), "msg", v, sizeof v));
    ASSERT_STREQ("\"hello \\\"world\\\"\\n\\u0001\"", v);
    ASSERT(json_member(lines[1], (size_t)(lines[2] - lines[1]), "level", v, sizeof v));
    ASSERT_STREQ("\"error\"", v);
    ASSERT(json_member(lines[1], (size_t)(lines[2] - lines[1]), "errors", v, sizeof v));
    ASSERT_STREQ("[\"a.yaml:3:5: x\"]", v);
    ASSERT(json_member(lines[2], (size_t)(lines[3] - lines[2]), "msg", v, sizeof v));
    ASSERT_STREQ("\"warned\"", v);
    ASSERT(json_member(lines[3], (size_t)(lines[4] - lines[3]), "level", v, sizeof v));
    ASSERT_STREQ("\"debug\"", v);
}

/* While the writer runs, diagnostic lines reach fd 2 through it, including at stop. */
TEST(diag_through_writer)
{
    char buf[8192], v[256];
    size_t len;
    int rfd, devnull = open("/dev/null", O_WRONLY);
    bool first_arrived = false;
    int64_t deadline;

    watchdog(30);
    rfd = stderr_to_pipe(0);
    tg_logwriter_start(0, 0, devnull);
    tg_log(TG_LOG_WARN, "queued %d", 1);
    /* the writer is woken, no need to wait for its flush interval */
    deadline = now_ns() + 1000000000LL;
    for (len = 0; !first_arrived && now_ns() < deadline;) {
        struct pollfd p = {.fd = rfd, .events = POLLIN};

        if (poll(&p, 1, 10) > 0)
            len += drain_pipe(rfd, buf + len, sizeof buf - 1 - len);
        first_arrived = memchr(buf, '\n', len) != NULL;
    }
    tg_log(TG_LOG_ERROR, "at stop");
    tg_logwriter_stop();
    len += drain_pipe(rfd, buf + len, sizeof buf - 1 - len);
    stderr_restore();
    close(rfd);
    close(devnull);
    buf[len] = '\0';
    ASSERT(first_arrived);
    ASSERT_EQ(2, count_char(buf, len, '\n'));
    ASSERT(json_member(buf, len, "msg", v, sizeof v));
    ASSERT_STREQ("\"queued 1\"", v);
    ASSERT(strstr(buf, "\"msg\":\"at stop\"}\n") != NULL);
    alarm(0);
}

/* stderr nobody reads: tg_log() never blocks, the queue drops and counts, stop still returns,
 * and every line is accounted for. */
TEST(diag_blocked_stderr)
{
    static char piped[1 << 20];
    char pad[200];
    uint64_t before_total = tg_logwriter_dropped_total(), before_log = tg_log_dropped();
    uint64_t log_drops, lost, written, slow = 0;
    int64_t max_ns = 0, t0, waited;
    struct rusage ru0, ru1;
    int rfd, devnull = open("/dev/null", O_WRONLY), i;
    const int attempts = 5000;

    watchdog(30);
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    rfd = stderr_to_pipe(4096);
    tg_logwriter_start(0, 0, devnull);
    getrusage(RUSAGE_THREAD, &ru0);
    for (i = 0; i < attempts; i++) {
        int64_t dt;

        t0 = now_ns();
        tg_log(TG_LOG_INFO, "line %d %s", i, pad);
        dt = now_ns() - t0;
        max_ns = TG_MAX(max_ns, dt);
        slow += dt > 1000000;
    }
    getrusage(RUSAGE_THREAD, &ru1);
    log_drops = tg_log_dropped() - before_log;
    t0 = now_ns();
    tg_logwriter_stop();
    waited = now_ns() - t0;
    written = count_char(piped, drain_pipe(rfd, piped, sizeof piped), '\n');
    stderr_restore();
    close(rfd);
    close(devnull);
    lost = tg_logwriter_dropped_total() - before_total - log_drops;
    ASSERT(log_drops > 0);
    /* The queue's mutex may make a caller wait for the writer's swap: a switch, not 1 ms. A call
     * that blocked on stderr would never return and trip the watchdog. */
    ASSERT(slow <= (uint64_t)(ru1.ru_nivcsw - ru0.ru_nivcsw + ru1.ru_nvcsw - ru0.ru_nvcsw) + 3);
    ASSERT(max_ns < 250 * 1000000LL);
    ASSERT(waited < 2000 * 1000000LL);
    ASSERT_EQ(attempts, log_drops + written + lost);
    alarm(0);
}

/* --- cost ------------------------------------------------------------------------------------ */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

static void bench(void)
{
    enum { BATCH = 1000, ROUNDS = 3000 };
    static int64_t per[ROUNDS];
    struct tg_access_entry e = {
        .ts_ms = 1795547702123LL,
        .request_id = "0193a2b4c5d6e7f8a9b0",
        .request_id_len = 20,
        .trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
        .route = "api",
        .method = "GET",
        .method_len = 3,
        .host = "api.example.com",
        .host_len = 15,
        .path = "/v1/users/12345/orders?limit=20",
        .path_len = 31,
        .status = 200,
        .bytes_in = 0,
        .bytes_out = 1432,
        .duration_us = 412,
        .upstream = "10.0.0.11:8545",
        .upstream_us = 390,
        .client = "192.168.1.23:54321",
        .client_len = 18,
    };
    char out[TG_ACCESS_LINE_MAX];
    int devnull = open("/dev/null", O_WRONLY), i, j, pace;
    struct tg_access_ring *r;
    size_t len = 0;

    len = tg_access_format(out, sizeof out, &e);
    /* Tight: a producer far faster than any worker, so the ring also overflows at times.
     * Paced: a pause after each batch lets the writer keep up, as it does in service. */
    for (pace = 0; pace < 2; pace++) {
        tg_logwriter_start(1, 1 << 20, devnull);
        r = tg_logwriter_ring(0);
        for (i = 0; i < ROUNDS; i++) {
            int64_t t0 = now_ns();

            for (j = 0; j < BATCH; j++) {
                e.ts_ms++;
                tg_access_log(r, &e);
            }
            per[i] = now_ns() - t0;
            if (pace)
                usleep(200);
        }
        qsort(per, ROUNDS, sizeof per[0], cmp_i64);
        printf("bench: tg_access_log %s: %.1f ns/line median, p90 %.1f (%d rounds of %d, "
               "%zu-byte lines, %" PRIu64 " dropped)\n",
               pace ? "paced" : "tight", (double)per[ROUNDS / 2] / BATCH,
               (double)per[ROUNDS * 9 / 10] / BATCH, ROUNDS, BATCH, len, tg_access_ring_dropped(r));
        tg_logwriter_stop();
    }
    close(devnull);
}

int main(void)
{
    RUN(json_escape_specials);
    RUN(json_escape_utf8);
    RUN(json_escape_every_position);
    RUN(json_escape_cap);
    RUN(json_escape_random_is_valid);
    RUN(access_format_exact);
    RUN(access_format_bounds);
    RUN(access_format_random_is_valid);
    RUN(ring_stream_in_order);
    RUN(stop_flushes);
    RUN(ring_blocked_consumer);
    RUN(stop_on_blocked_fd);
    RUN(epipe_counts);
    RUN(diag_direct_and_levels);
    RUN(diag_through_writer);
    RUN(diag_blocked_stderr);
    if (getenv("TG_LOG_BENCH") != NULL)
        bench();
    return unit_report();
}
