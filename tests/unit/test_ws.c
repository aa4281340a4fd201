/*
 * WebSocket codec (src/http/ws.c): the RFC 6455 handshake example, key validation, the §5.7
 * frame examples decoded whole and byte by byte, every protocol error and its close code (also
 * from every prefix of the bad head), max_payload, unmasking in pieces, write_head round trips,
 * close payloads, message assembly across fragments with control frames between them, and UTF-8
 * validation split at every point. Prints unmask throughput.
 */
#include "http/ws.h"

#include <stdlib.h>
#include <time.h>

#include "core/core.h"
#include "unit.h"

#define S(lit) (const uint8_t *)(lit), sizeof(lit) - 1

#define MAX_PAYLOAD (1ULL << 40)

TEST(test_accept)
{
    char out[29];

    /* RFC 6455 §1.3 */
    tg_ws_accept("dGhlIHNhbXBsZSBub25jZQ==", 24, out);
    ASSERT_STREQ("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", out);
    /* cross-checked with Python's hashlib and base64 */
    tg_ws_accept("x3JJHMbDL1EzLkh9GBhXDw==", 24, out);
    ASSERT_STREQ("HSmrc0sMlYUkAGmm5OPpG2HaGWk=", out);
    tg_ws_accept("AAAAAAAAAAAAAAAAAAAAAA==", 24, out);
    ASSERT_STREQ("ICX+Yqv66kxgM0FcWaLWlFLwTAI=", out);
}

TEST(test_key_valid)
{
    static const char *good[] = {
        "dGhlIHNhbXBsZSBub25jZQ==", "AAAAAAAAAAAAAAAAAAAAAA==", "+/+/+/+/+/+/+/+/+/+/+/==",
        "zzzzzzzzzzzzzzzzzzzzzz==", "0123456789abcdefghijkl=="};
    static const char *bad[] = {
        "",
        "dGhlIHNhbXBsZSBub25jZQ=",   /* 23 */
        "dGhlIHNhbXBsZSBub25jZQ===", /* 25 */
        "dGhlIHNhbXBsZSBub25jZQAA",  /* no padding: 18 bytes */
        "dGhlIHNhbXBsZSBub25jZ===",  /* 15 bytes */
        "dGhlIHNhbXBsZSBub25jZQ=A",  /* padding not at the end */
        "dGhlIHNhbXBsZSBub25j-Q==",  /* base64url */
        "dGhlIHNhbXBsZSBub25j_Q==",  /* base64url */
        "dGhlIHNhbXBsZSBub25j Q==",  /* space */
        "dGhlIHNhbXBsZSBub25jZQ==\r",
        " dGhlIHNhbXBsZSBub25jZQ=",
        "dGhlIHNhbXBsZSBub25jZ\x80==",
    };

    for (size_t i = 0; i < TG_ARRAY_SIZE(good); i++)
        if (!tg_ws_key_valid(good[i], strlen(good[i])))
            UNIT_FAIL("key \"%s\" should be valid", good[i]);
    for (size_t i = 0; i < TG_ARRAY_SIZE(bad); i++)
        if (tg_ws_key_valid(bad[i], strlen(bad[i])))
            UNIT_FAIL("key \"%s\" should be invalid", bad[i]);
    /* the length counts, not a NUL */
    ASSERT(!tg_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ==", 22));
}

/* What decoding a byte stream of frames found. */
struct decoded {
    uint8_t data[70000]; /* the data message's payload */
    size_t data_len;
    int messages; /* complete data messages */
    int controls; /* control frames */
    uint8_t last_control;
    uint8_t opcode; /* of the data message */
};

/*
 * Decodes the frames in in[0..n) the way a proxy reads them: head, then payload (unmasked),
 * message rules, UTF-8 for text. When step > 0 the head parser only ever sees step more bytes
 * than before, as if they arrived in reads of that size. Returns 0, -2 when the input stops
 * inside a frame, or the close code.
 */
static int decode(const uint8_t *in, size_t n, bool from_client, size_t step, struct decoded *d)
{
    struct tg_ws_msg_state s = {.max = sizeof(d->data)};
    size_t pos = 0;

    memset(d, 0, sizeof(*d));
    while (pos < n) {
        struct tg_ws_frame f;
        uint16_t code = 0;
        ssize_t r = 0;
        uint8_t *payload;

        for (size_t avail = step ? TG_MIN(step, n - pos) : n - pos; r == 0;
             avail = TG_MIN(avail + step, n - pos)) {
            r = tg_ws_parse_head(in + pos, avail, from_client, MAX_PAYLOAD, &f, &code);
            if (r == 0 && (avail == n - pos || step == 0))
                return -2;
        }
        if (r < 0)
            return code;
        if ((size_t)r != f.head_len || f.len > n - pos - f.head_len)
            return -2;
        pos += f.head_len;
        code = tg_ws_msg_frame(&s, &f);
        if (code != 0)
            return code;
        if (tg_ws_is_control(f.opcode)) {
            d->controls++;
            d->last_control = f.opcode;
            pos += f.len;
            continue;
        }
        if (f.len > sizeof(d->data) - d->data_len)
            return -3;
        payload = d->data + d->data_len;
        memcpy(payload, in + pos, f.len);
        if (f.masked)
            tg_ws_unmask(payload, f.len, f.mask, 0);
        if (s.opcode == TG_WS_TEXT && (code = tg_ws_msg_text(&s, payload, f.len, f.fin)) != 0)
            return code;
        d->data_len += f.len;
        d->opcode = s.opcode;
        pos += f.len;
        if (f.fin)
            d->messages++;
    }
    return 0;
}

/* Decodes whole and in reads of every size up to 16; all must agree. */
static int decode_all_ways(const uint8_t *in, size_t n, bool from_client, struct decoded *d)
{
    static struct decoded other;
    int whole = decode(in, n, from_client, 0, d);

    for (size_t step = 1; step <= 16; step++) {
        int r = decode(in, n, from_client, step, &other);

        if (r != whole || other.data_len != d->data_len ||
            memcmp(other.data, d->data, d->data_len) != 0)
            UNIT_FAIL("step %zu: %d, whole: %d", step, r, whole);
    }
    return whole;
}

TEST(test_rfc_examples)
{
    static struct decoded d;
    static uint8_t big[10 + 65536];
    struct tg_ws_frame f;
    uint16_t code;

    /* A single-frame unmasked text message */
    ASSERT_EQ(0, decode_all_ways(S("\x81\x05\x48\x65\x6c\x6c\x6f"), false, &d));
    ASSERT_STR("Hello", d.data, d.data_len);
    ASSERT_EQ(1, d.messages);
    ASSERT_EQ(TG_WS_TEXT, d.opcode);
    /* A single-frame masked text message */
    ASSERT_EQ(2 + 4, tg_ws_parse_head(S("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"), true,
                                      MAX_PAYLOAD, &f, &code));
    ASSERT(f.fin && f.masked && f.len == 5 && f.opcode == TG_WS_TEXT);
    ASSERT(memcmp(f.mask, "\x37\xfa\x21\x3d", 4) == 0);
    ASSERT_EQ(0, decode_all_ways(S("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"), true, &d));
    ASSERT_STR("Hello", d.data, d.data_len);
    /* the same frame is refused from a server, and the unmasked one from a client */
    ASSERT_EQ(1002, decode(S("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"), false, 0, &d));
    ASSERT_EQ(1002, decode(S("\x81\x05\x48\x65\x6c\x6c\x6f"), true, 0, &d));
    /* A fragmented unmasked text message */
    ASSERT_EQ(0, decode_all_ways(S("\x01\x03\x48\x65\x6c\x80\x02\x6c\x6f"), false, &d));
    ASSERT_STR("Hello", d.data, d.data_len);
    ASSERT_EQ(1, d.messages);
    /* Unmasked ping, masked pong */
    ASSERT_EQ(0, decode_all_ways(S("\x89\x05\x48\x65\x6c\x6c\x6f"), false, &d));
    ASSERT(d.controls == 1 && d.last_control == TG_WS_PING && d.messages == 0);
    ASSERT_EQ(0, decode_all_ways(S("\x8a\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"), true, &d));
    ASSERT(d.controls == 1 && d.last_control == TG_WS_PONG);
    /* 256 bytes binary in a single unmasked frame: 16-bit length */
    memcpy(big, "\x82\x7e\x01\x00", 4);
    for (size_t i = 0; i < 256; i++)
        big[4 + i] = (uint8_t)i;
    ASSERT_EQ(4, tg_ws_parse_head(big, 4, false, MAX_PAYLOAD, &f, &code));
    ASSERT(f.len == 256 && f.opcode == TG_WS_BINARY && f.head_len == 4);
    ASSERT_EQ(0, decode(big, 4 + 256, false, 0, &d));
    ASSERT(d.data_len == 256 && memcmp(d.data, big + 4, 256) == 0 && d.opcode == TG_WS_BINARY);
    /* 64 KiB binary in a single unmasked frame: 64-bit length */
    memcpy(big, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    memset(big + 10, 0xa5, 65536);
    ASSERT_EQ(10, tg_ws_parse_head(big, 10, false, MAX_PAYLOAD, &f, &code));
    ASSERT(f.len == 65536 && f.head_len == 10);
    ASSERT_EQ(0, decode(big, sizeof(big), false, 0, &d));
    ASSERT_EQ(65536, d.data_len);
    ASSERT_EQ(-2, decode(big, sizeof(big) - 1, false, 0, &d));
}

/* Parses a copy of in[0..n) in a buffer of exactly n bytes, so ASan sees any read past it. */
static ssize_t parse_exact(const uint8_t *in, size_t n, bool from_client, uint64_t max,
                           struct tg_ws_frame *f, uint16_t *code)
{
    uint8_t *copy = malloc(n ? n : 1);
    ssize_t r;

    memcpy(copy, in, n);
    r = tg_ws_parse_head(copy, n, from_client, max, f, code);
    free(copy);
    return r;
}

TEST(test_incomplete)
{
    static const uint8_t heads[][14] = {
        {0x81, 0x85, 1, 2, 3, 4},
        {0x82, 0x7e, 0x01, 0x00},
        {0x82, 0xfe, 0x01, 0x00, 1, 2, 3, 4},
        {0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0},
        {0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4},
    };
    static const size_t lens[] = {6, 4, 8, 10, 14};

    for (size_t i = 0; i < TG_ARRAY_SIZE(heads); i++) {
        bool client = (heads[i][1] & 0x80) != 0;
        struct tg_ws_frame f;
        uint16_t code = 0;

        for (size_t k = 0; k < lens[i]; k++)
            if (parse_exact(heads[i], k, client, MAX_PAYLOAD, &f, &code) != 0)
                UNIT_FAIL("head %zu: prefix %zu is not incomplete", i, k);
        ASSERT_EQ(lens[i], tg_ws_parse_head(heads[i], lens[i], client, MAX_PAYLOAD, &f, &code));
        ASSERT_EQ(lens[i], f.head_len);
        ASSERT_EQ(0, code);
    }
}

struct bad_case {
    const char *in;
    size_t len;
    bool from_client;
    uint64_t max;
    uint16_t code;
    const char *what;
};

#define BAD(lit, client, max, code, what)                                                          \
    {                                                                                              \
        (lit), sizeof(lit) - 1, (client), (max), (code), (what)                                    \
    }

static const struct bad_case bad[] = {
    BAD("\xc1\x00", false, MAX_PAYLOAD, 1002, "RSV1"),
    BAD("\xa1\x00", false, MAX_PAYLOAD, 1002, "RSV2"),
    BAD("\x91\x00", false, MAX_PAYLOAD, 1002, "RSV3"),
    BAD("\xf1\x80\x00\x00\x00\x00", true, MAX_PAYLOAD, 1002, "all RSV bits, from a client"),
    BAD("\x83\x00", false, MAX_PAYLOAD, 1002, "opcode 3"),
    BAD("\x84\x00", false, MAX_PAYLOAD, 1002, "opcode 4"),
    BAD("\x85\x00", false, MAX_PAYLOAD, 1002, "opcode 5"),
    BAD("\x86\x00", false, MAX_PAYLOAD, 1002, "opcode 6"),
    BAD("\x87\x00", false, MAX_PAYLOAD, 1002, "opcode 7"),
    BAD("\x8b\x00", false, MAX_PAYLOAD, 1002, "opcode 0xB"),
    BAD("\x8c\x00", false, MAX_PAYLOAD, 1002, "opcode 0xC"),
    BAD("\x8d\x00", false, MAX_PAYLOAD, 1002, "opcode 0xD"),
    BAD("\x8e\x00", false, MAX_PAYLOAD, 1002, "opcode 0xE"),
    BAD("\x8f\x00", false, MAX_PAYLOAD, 1002, "opcode 0xF"),
    BAD("\x09\x00", false, MAX_PAYLOAD, 1002, "fragmented ping"),
    BAD("\x08\x00", false, MAX_PAYLOAD, 1002, "fragmented close"),
    BAD("\x0a\x80\x00\x00\x00\x00", true, MAX_PAYLOAD, 1002, "fragmented pong"),
    BAD("\x89\x7e\x00\x7e", false, MAX_PAYLOAD, 1002, "ping of 126"),
    BAD("\x88\x7f\x00\x00\x00\x00\x00\x01\x00\x00", false, MAX_PAYLOAD, 1002, "64-bit close"),
    BAD("\x8a\xfe\x00\x7e", true, MAX_PAYLOAD, 1002, "pong of 126 from a client"),
    BAD("\x81\x05Hello", true, MAX_PAYLOAD, 1002, "unmasked from a client"),
    BAD("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", false, MAX_PAYLOAD, 1002,
        "masked from a server"),
    BAD("\x82\x7e\x00\x00", false, MAX_PAYLOAD, 1002, "16-bit 0"),
    BAD("\x82\x7e\x00\x7d", false, MAX_PAYLOAD, 1002, "16-bit 125"),
    BAD("\x82\xfe\x00\x05\x01\x02\x03\x04", true, MAX_PAYLOAD, 1002, "16-bit 5, masked"),
    BAD("\x82\x7f\x00\x00\x00\x00\x00\x00\x00\x05", false, MAX_PAYLOAD, 1002, "64-bit 5"),
    BAD("\x82\x7f\x00\x00\x00\x00\x00\x00\xff\xff", false, MAX_PAYLOAD, 1002, "64-bit 65535"),
    BAD("\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00", false, MAX_PAYLOAD, 1002, "64-bit 2^63"),
    BAD("\x82\x7f\xff\xff\xff\xff\xff\xff\xff\xff", false, UINT64_MAX, 1002, "64-bit 2^64-1"),
    BAD("\x82\x7e\x01\x00", false, 255, 1009, "256 > 255"),
    BAD("\x82\x06\x00\x00", false, 5, 1009, "6 > 5"),
    BAD("\x82\xff\x00\x00\x00\x01\x00\x00\x00\x00", true, 1ULL << 31, 1009, "2^32 > 2^31"),
    BAD("\x82\x7f\x7f\xff\xff\xff\xff\xff\xff\xff", false, MAX_PAYLOAD, 1009, "2^63-1"),
    BAD("\x89\x05", false, 4, 1009, "ping of 5 > 4"),
};

TEST(test_protocol_errors)
{
    for (size_t i = 0; i < TG_ARRAY_SIZE(bad); i++) {
        const struct bad_case *c = &bad[i];
        const uint8_t *in = (const uint8_t *)c->in;
        struct tg_ws_frame f;
        uint16_t code = 0;
        ssize_t r = tg_ws_parse_head(in, c->len, c->from_client, c->max, &f, &code);

        if (r != -1 || code != c->code)
            UNIT_FAIL("%s: expected -1 and %u, got %zd and %u", c->what, c->code, r, code);
        /* a prefix is incomplete or already the same error */
        for (size_t k = 0; k < c->len; k++) {
            code = 0;
            r = parse_exact(in, k, c->from_client, c->max, &f, &code);
            if (r > 0 || (r < 0 && code != c->code))
                UNIT_FAIL("%s: prefix %zu gave %zd and %u", c->what, k, r, code);
        }
    }
}

TEST(test_max_payload)
{
    struct tg_ws_frame f;
    uint16_t code = 0;

    ASSERT_EQ(4, tg_ws_parse_head(S("\x82\x7e\x01\x00"), false, 256, &f, &code));
    ASSERT_EQ(256, f.len);
    ASSERT_EQ(-1, tg_ws_parse_head(S("\x82\x7e\x01\x01"), false, 256, &f, &code));
    ASSERT_EQ(1009, code);
    ASSERT_EQ(2, tg_ws_parse_head(S("\x82\x00"), false, 0, &f, &code));
    code = 0;
    /* refused before the masking key arrives */
    ASSERT_EQ(-1, tg_ws_parse_head(S("\x82\xfe\x01\x01"), true, 256, &f, &code));
    ASSERT_EQ(1009, code);
    ASSERT_EQ(-1, tg_ws_parse_head(S("\x82\x7f\x00\x00\x00\x00\x00\x10\x00\x00"), false,
                                   (1 << 20) - 1, &f, &code));
    ASSERT_EQ(1009, code);
    ASSERT_EQ(10, tg_ws_parse_head(S("\x82\x7f\x00\x00\x00\x00\x00\x10\x00\x00"), false, 1 << 20,
                                   &f, &code));
}

TEST(test_unmask_pieces)
{
    static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    enum { N = 301 };
    uint8_t *orig = malloc(N + 8), *whole = malloc(N + 8), *piece = malloc(N + 8);

    srand(6455);
    for (size_t i = 0; i < N; i++)
        orig[i] = (uint8_t)rand();
    memcpy(whole, orig, N);
    tg_ws_unmask(whole, N, mask, 0);
    for (size_t i = 0; i < N; i++)
        if (whole[i] != (orig[i] ^ mask[i % 4])) {
            UNIT_FAIL("byte %zu: expected %02x, got %02x", i, orig[i] ^ mask[i % 4], whole[i]);
            break;
        }
    /* unmasking again restores the data */
    memcpy(piece, whole, N);
    tg_ws_unmask(piece, N, mask, 0);
    ASSERT(memcmp(piece, orig, N) == 0);
    /* every split into three pieces, at every alignment of the buffer */
    for (size_t a = 0; a < 8; a++) {
        for (size_t k = 0; k <= N; k += 1 + (a != 0) * 6) {
            for (size_t m = k; m <= N; m += 1 + (k % 5)) {
                uint8_t *p = piece + a;

                memcpy(p, orig, N);
                tg_ws_unmask(p, k, mask, 0);
                tg_ws_unmask(p + k, m - k, mask, k);
                tg_ws_unmask(p + m, N - m, mask, m);
                if (memcmp(p, whole, N) != 0) {
                    UNIT_FAIL("align %zu, cuts %zu %zu differ", a, k, m);
                    goto out;
                }
            }
        }
    }
    /* offsets past 2^32 keep the phase */
    memcpy(piece, orig, N);
    tg_ws_unmask(piece, 3, mask, 0);
    tg_ws_unmask(piece + 3, N - 3, mask, (1ULL << 40) + 3);
    ASSERT(memcmp(piece, whole, N) == 0);
out:
    free(orig);
    free(whole);
    free(piece);
}

TEST(test_write_head_round_trip)
{
    static const uint64_t lens[] = {
        0, 1, 125, 126, 127, 65535, 65536, 1ULL << 32, (1ULL << 63) - 1};
    static const size_t sizes[] = {2, 2, 2, 4, 4, 4, 10, 10, 10};
    static const uint8_t mask[4] = {0xde, 0xad, 0xbe, 0xef};

    for (size_t i = 0; i < TG_ARRAY_SIZE(lens); i++) {
        for (int masked = 0; masked < 2; masked++) {
            uint8_t head[TG_WS_HEAD_MAX];
            uint8_t opcode = i % 2 ? TG_WS_BINARY : TG_WS_TEXT;
            bool fin = i % 3 != 0;
            size_t n = tg_ws_write_head(head, fin, opcode, lens[i], masked ? mask : NULL);
            struct tg_ws_frame f;
            uint16_t code = 0;

            ASSERT_EQ(sizes[i] + (masked ? 4 : 0), n);
            ASSERT_EQ(n, tg_ws_parse_head(head, n, masked, UINT64_MAX, &f, &code));
            ASSERT_EQ(0, code);
            if (f.len != lens[i] || f.fin != fin || f.opcode != opcode || f.masked != masked ||
                f.head_len != n || (masked && memcmp(f.mask, mask, 4) != 0))
                UNIT_FAIL("length %" PRIu64 " masked %d: round trip differs", lens[i], masked);
            ASSERT_EQ(0, tg_ws_parse_head(head, n - 1, masked, UINT64_MAX, &f, &code));
        }
    }
    /* a close frame as tollgate sends it */
    {
        uint8_t head[TG_WS_HEAD_MAX];

        ASSERT_EQ(2, tg_ws_write_head(head, true, TG_WS_CLOSE, 2, NULL));
        ASSERT(head[0] == 0x88 && head[1] == 0x02);
    }
}

TEST(test_close_payload)
{
    uint8_t out[TG_WS_CONTROL_MAX];
    char reason[201];
    uint16_t code = 0;
    size_t n;

    n = tg_ws_close_payload(out, 1012, "node restarting");
    ASSERT_EQ(17, n);
    ASSERT(out[0] == 0x03 && out[1] == 0xf4 && memcmp(out + 2, "node restarting", 15) == 0);
    ASSERT(tg_ws_close_valid(out, n, &code));
    ASSERT_EQ(1012, code);
    ASSERT_EQ(2, tg_ws_close_payload(out, 1000, NULL));
    ASSERT_EQ(2, tg_ws_close_payload(out, 1000, ""));
    ASSERT_EQ(0, tg_ws_close_payload(out, 0, "ignored"));
    /* long reasons are cut to 123 bytes, and not inside a character */
    memset(reason, 'a', 200);
    reason[200] = '\0';
    ASSERT_EQ(125, tg_ws_close_payload(out, 1001, reason));
    memcpy(reason + 122, "\xc3\xa9", 2); /* é across the limit */
    ASSERT_EQ(124, tg_ws_close_payload(out, 1001, reason));
    ASSERT(tg_ws_close_valid(out, 124, NULL));
    memcpy(reason + 120, "\xf0\x9f\x98\x80", 4); /* a 4-byte emoji across the limit */
    ASSERT_EQ(122, tg_ws_close_payload(out, 1001, reason));
    ASSERT(tg_ws_close_valid(out, 122, NULL));
}

TEST(test_close_valid)
{
    static const uint16_t ok[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                  1011, 1012, 1013, 1014, 3000, 4000, 4999};
    static const uint16_t refused[] = {0,    999,  1004, 1005, 1006, 1015, 1016,
                                       1100, 2000, 2999, 5000, 5001, 65535};
    uint8_t p[TG_WS_CONTROL_MAX + 1];
    uint16_t code = 0;

    ASSERT(tg_ws_close_valid(NULL, 0, &code));
    ASSERT_EQ(1005, code);
    ASSERT(!tg_ws_close_valid(S("\x03"), NULL));
    for (size_t i = 0; i < TG_ARRAY_SIZE(ok); i++) {
        p[0] = (uint8_t)(ok[i] >> 8);
        p[1] = (uint8_t)ok[i];
        code = 0;
        if (!tg_ws_close_valid(p, 2, &code) || code != ok[i])
            UNIT_FAIL("code %u should be valid", ok[i]);
    }
    for (size_t i = 0; i < TG_ARRAY_SIZE(refused); i++) {
        p[0] = (uint8_t)(refused[i] >> 8);
        p[1] = (uint8_t)refused[i];
        if (tg_ws_close_valid(p, 2, &code))
            UNIT_FAIL("code %u should be refused", refused[i]);
    }
    ASSERT(tg_ws_close_valid(S("\x03\xe8\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"), &code));
    ASSERT(!tg_ws_close_valid(S("\x03\xe8\xce"), &code));     /* cut character */
    ASSERT(!tg_ws_close_valid(S("\x03\xe8\xc0\x80"), &code)); /* overlong */
    ASSERT(!tg_ws_close_valid(S("\x03\xe8\xed\xa0\x80"), &code));
    memset(p, 'a', sizeof(p));
    p[0] = 0x03;
    p[1] = 0xe8;
    ASSERT(tg_ws_close_valid(p, 125, NULL));
    ASSERT(!tg_ws_close_valid(p, 126, NULL));
}

static struct tg_ws_frame frame(bool fin, uint8_t opcode, uint64_t len)
{
    return (struct tg_ws_frame){.fin = fin, .opcode = opcode, .len = len, .head_len = 2};
}

TEST(test_message_assembly)
{
    struct tg_ws_msg_state s = {.max = 10};
    struct tg_ws_frame f;

    /* text in three fragments with a ping, a pong and a close between them */
    f = frame(false, TG_WS_TEXT, 3);
    ASSERT_EQ(0, tg_ws_msg_frame(&s, &f));
    ASSERT(s.in_message && s.opcode == TG_WS_TEXT && s.size == 3);
    f = frame(true, TG_WS_PING, 5);
    ASSERT_EQ(0, tg_ws_msg_frame(&s, &f));
    f = frame(true, TG_WS_PONG, 0);
    ASSERT_EQ(0, tg_ws_msg_frame(&s, &f));
    ASSERT(s.in_message && s.opcode == TG_WS_TEXT && s.size == 3);
    f = frame(false, TG_WS_CONT, 4);
    ASSERT_EQ(0, tg_ws_msg_frame(&s, &f));
    f = frame(true, TG_WS_CLOSE, 2);
    ASSERT_EQ(0, tg_ws_msg_frame(&s, &f));
    f = frame(true, TG_WS_CONT, 3); /* exactly max */
    ASSERT_EQ(0, tg_ws_msg_frame(&s, &f));
    ASSERT(!s.in_message && s.opcode == TG_WS_TEXT && s.size == 10);
    /* the next message starts counting again */
    f = frame(true, TG_WS_BINARY, 10);
    ASSERT_EQ(0, tg_ws_msg_frame(&s, &f));
    ASSERT(!s.in_message && s.opcode == TG_WS_BINARY && s.size == 10);
    /* continuation without a message */
    f = frame(true, TG_WS_CONT, 1);
    ASSERT_EQ(1002, tg_ws_msg_frame(&s, &f));
    /* a new data frame inside an open message */
    s = (struct tg_ws_msg_state){.max = 10};
    f = frame(false, TG_WS_BINARY, 1);
    ASSERT_EQ(0, tg_ws_msg_frame(&s, &f));
    f = frame(true, TG_WS_TEXT, 1);
    ASSERT_EQ(1002, tg_ws_msg_frame(&s, &f));
    f = frame(false, TG_WS_BINARY, 1);
    ASSERT_EQ(1002, tg_ws_msg_frame(&s, &f));
    /* control frames the parser would have refused */
    f = frame(false, TG_WS_PING, 1);
    ASSERT_EQ(1002, tg_ws_msg_frame(&s, &f));
    f = frame(true, TG_WS_PING, 126);
    ASSERT_EQ(1002, tg_ws_msg_frame(&s, &f));
    f = frame(true, 3, 0);
    ASSERT_EQ(1002, tg_ws_msg_frame(&s, &f));
    /* an over-long fragmented message */
    s = (struct tg_ws_msg_state){.max = 10};
    f = frame(false, TG_WS_TEXT, 4);
    ASSERT_EQ(0, tg_ws_msg_frame(&s, &f));
    f = frame(false, TG_WS_CONT, 4);
    ASSERT_EQ(0, tg_ws_msg_frame(&s, &f));
    f = frame(true, TG_WS_CONT, 3);
    ASSERT_EQ(1009, tg_ws_msg_frame(&s, &f));
    /* and a single frame past max */
    s = (struct tg_ws_msg_state){.max = 10};
    f = frame(true, TG_WS_BINARY, 11);
    ASSERT_EQ(1009, tg_ws_msg_frame(&s, &f));
    /* no limit: sizes that would wrap are still refused */
    s = (struct tg_ws_msg_state){0};
    f = frame(false, TG_WS_BINARY, (1ULL << 63) - 1);
    ASSERT_EQ(0, tg_ws_msg_frame(&s, &f));
    f = frame(false, TG_WS_CONT, (1ULL << 63) - 1);
    ASSERT_EQ(0, tg_ws_msg_frame(&s, &f));
    f = frame(true, TG_WS_CONT, 2);
    ASSERT_EQ(1009, tg_ws_msg_frame(&s, &f));
}

/* Validates t[0..n) as one text message cut at a and b; returns the first non-zero code. */
static uint16_t text_cut(const uint8_t *t, size_t n, size_t a, size_t b)
{
    struct tg_ws_msg_state s = {0};
    uint16_t r = tg_ws_msg_text(&s, t, a, false);

    if (r == 0)
        r = tg_ws_msg_text(&s, t + a, b - a, false);
    if (r == 0)
        r = tg_ws_msg_text(&s, t + b, n - b, true);
    return r;
}

struct text_case {
    const char *t;
    size_t len;
    uint16_t code;
};

#define TXT(lit, code)                                                                             \
    {                                                                                              \
        (lit), sizeof(lit) - 1, (code)                                                             \
    }

static const struct text_case texts[] = {
    TXT("", 0),
    TXT("Hello", 0),
    TXT("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 0), /* κόσμε */
    TXT("\xf0\x9d\x84\x9e", 0),                             /* U+1D11E */
    TXT("\xf4\x8f\xbf\xbf", 0),                             /* U+10FFFF */
    TXT("\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf", 0),         /* U+D7FF U+E000 U+FFFF */
    TXT("\xc2\x80\xdf\xbf\xe0\xa0\x80\xf0\x90\x80\x80", 0), /* the smallest of each length */
    TXT("{\"jsonrpc\":\"2.0\",\"method\":\"eth_subscribe\",\"id\":1} \xe2\x82\xac", 0),
    TXT("\x80", 1007), /* lone continuation */
    TXT("\xbf", 1007),
    TXT("\xc0\x80", 1007),         /* overlong NUL */
    TXT("\xc1\xbf", 1007),         /* overlong */
    TXT("\xe0\x80\x80", 1007),     /* overlong */
    TXT("\xe0\x9f\xbf", 1007),     /* overlong U+07FF */
    TXT("\xf0\x80\x80\x80", 1007), /* overlong */
    TXT("\xf0\x8f\xbf\xbf", 1007), /* overlong U+FFFF */
    TXT("\xed\xa0\x80", 1007),     /* U+D800 */
    TXT("\xed\xbf\xbf", 1007),     /* U+DFFF */
    TXT("\xf4\x90\x80\x80", 1007), /* U+110000 */
    TXT("\xf5\x80\x80\x80", 1007),
    TXT("\xfe", 1007),
    TXT("\xff", 1007),
    TXT("\xe2\x82", 1007), /* cut at the end of the message */
    TXT("\xf0\x9d\x84", 1007),
    TXT("abc\xce", 1007),
    TXT("\xe2\x82"
        "A",
        1007), /* cut by ASCII */
    TXT("\xce\xba\xce", 1007),
    TXT("0123456789abcdef\x80", 1007), /* after the word loop */
    TXT("0123456789abcdefg\xc3\x28", 1007),
};

TEST(test_utf8)
{
    for (size_t i = 0; i < TG_ARRAY_SIZE(texts); i++) {
        const struct text_case *c = &texts[i];
        const uint8_t *t = (const uint8_t *)c->t;

        for (size_t a = 0; a <= c->len; a++)
            for (size_t b = a; b <= c->len; b++) {
                uint16_t r = text_cut(t, c->len, a, b);

                if (r != c->code)
                    UNIT_FAIL("text %zu cut %zu %zu: expected %u, got %u", i, a, b, c->code, r);
            }
    }
}

TEST(test_utf8_across_frames)
{
    /* "€" split over three masked fragments of one text message, a ping between them */
    static const uint8_t ok[] = {0x01, 0x81, 1, 2, 3, 4, 0xe2 ^ 1,        /* "\xe2" */
                                 0x89, 0x80, 9, 9, 9, 9,                  /* ping */
                                 0x00, 0x81, 5, 6, 7, 8, 0x82 ^ 5,        /* "\x82" */
                                 0x80, 0x82, 0, 0, 0, 0, 0xac,     'x'};  /* "\xacx" */
    static const uint8_t cut[] = {0x01, 0x81, 1, 2, 3, 4, 0xe2 ^ 1,       /* "\xe2" */
                                  0x80, 0x81, 5, 6, 7, 8, 0x82 ^ 5};      /* "\x82" end */
    static const uint8_t surrogate[] = {0x01, 0x81, 1, 2, 3, 4, 0xed ^ 1, /* "\xed" */
                                        0x80, 0x82, 5, 6, 7, 8, 0xa0 ^ 5, 0x80 ^ 6}; /* surrogate */
    static const uint8_t two[] = {0x81, 0x81, 1, 2, 3, 4, 0xe2 ^ 1,        /* cut message */
                                  0x81, 0x82, 0, 0, 0, 0, 0x82,     0xac}; /* its rest */
    static struct decoded d;
    struct tg_ws_msg_state s = {0};

    ASSERT_EQ(0, decode_all_ways(ok, sizeof(ok), true, &d));
    ASSERT_STR("\xe2\x82\xacx", d.data, d.data_len);
    ASSERT_EQ(1, d.controls);
    ASSERT_EQ(1007, decode_all_ways(cut, sizeof(cut), true, &d));
    ASSERT_EQ(1007, decode_all_ways(surrogate, sizeof(surrogate), true, &d));
    ASSERT_EQ(1007, decode_all_ways(two, sizeof(two), true, &d));
    /* once invalid, always invalid */
    ASSERT_EQ(1007, tg_ws_msg_text(&s, S("\xff"), false));
    ASSERT_EQ(1007, tg_ws_msg_text(&s, S("a"), true));
    ASSERT_EQ(1007, tg_ws_msg_text(&s, S("a"), true));
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

TEST(test_unmask_speed)
{
    static const uint8_t mask[4] = {1, 2, 3, 4};
    enum { N = 1 << 20, ROUNDS = 2000 };
    uint8_t *buf = calloc(1, N + 1);
    double t0, dt;

    for (int i = 0; i < ROUNDS / 10; i++) /* warm the cache */
        tg_ws_unmask(buf + 1, N, mask, (uint64_t)i);
    t0 = now_s();
    for (int i = 0; i < ROUNDS; i++)
        tg_ws_unmask(buf + 1, N, mask, (uint64_t)i);
    dt = now_s() - t0;
    /* an even number of rounds leaves every byte as it was */
    for (size_t i = 0; i < N; i += 4099)
        ASSERT_EQ(0, buf[1 + i]);
    printf("unmask 1 MiB (unaligned): %.1f GB/s\n", (double)N * ROUNDS / dt / 1e9);
    free(buf);
}

int main(void)
{
    RUN(test_accept);
    RUN(test_key_valid);
    RUN(test_rfc_examples);
    RUN(test_incomplete);
    RUN(test_protocol_errors);
    RUN(test_max_payload);
    RUN(test_unmask_pieces);
    RUN(test_write_head_round_trip);
    RUN(test_close_payload);
    RUN(test_close_valid);
    RUN(test_message_assembly);
    RUN(test_utf8);
    RUN(test_utf8_across_frames);
    RUN(test_unmask_speed);
    return unit_report();
}
