/*
 * Fuzzes the WebSocket codec: the input is read as a stream of frames, once as from a client
 * (masked) and once as from a server, the way a JSON-RPC route reads it: each head must lie within
 * the bytes given, its prefixes must be incomplete, it must survive a write_head round trip, and
 * what parses goes through the message rules, unmasking (whole and in two pieces, which must
 * agree), UTF-8 validation and close payload validation.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/ws.h"

#define MAX_PAYLOAD (1ULL << 20)
#define MAX_MESSAGE (1ULL << 16)

static void check(int cond)
{
    if (!cond)
        abort();
}

static bool is_close_code(uint16_t code)
{
    return code == TG_WS_CLOSE_PROTOCOL || code == TG_WS_CLOSE_TOO_BIG ||
           code == TG_WS_CLOSE_BAD_DATA;
}

/* The head at p[0..n) parsed as f: shorter inputs are incomplete, and writing it back gives it. */
static void check_head(const uint8_t *p, size_t n, bool from_client, const struct tg_ws_frame *f)
{
    uint8_t head[TG_WS_HEAD_MAX];
    struct tg_ws_frame g;
    uint16_t code = 0;
    size_t len;

    check(f->head_len >= 2 && f->head_len <= TG_WS_HEAD_MAX && f->head_len <= n);
    check(f->masked == from_client && f->len <= MAX_PAYLOAD);
    for (size_t k = 0; k < f->head_len; k++)
        check(tg_ws_parse_head(p, k, from_client, MAX_PAYLOAD, &g, &code) == 0);
    len = tg_ws_write_head(head, f->fin, f->opcode, f->len, f->masked ? f->mask : NULL);
    /* parse_head accepts only the shortest encoding, which is what write_head writes */
    check(len == f->head_len && memcmp(head, p, len) == 0);
}

/* Unmasks the payload whole and in two pieces; both must give the same bytes. */
static uint8_t *unmask_copy(const uint8_t *p, size_t n, const struct tg_ws_frame *f)
{
    uint8_t *whole = malloc(n ? n : 1), *pieces = malloc(n ? n : 1);
    size_t cut = n ? f->mask[0] % (n + 1) : 0;

    memcpy(whole, p, n);
    memcpy(pieces, p, n);
    if (f->masked) {
        tg_ws_unmask(whole, n, f->mask, 0);
        tg_ws_unmask(pieces, cut, f->mask, 0);
        tg_ws_unmask(pieces + cut, n - cut, f->mask, cut);
        check(memcmp(whole, pieces, n) == 0);
    }
    free(pieces);
    return whole;
}

/* Runs the payload of a parsed frame (avail of its bytes are in the input) through the rules. */
static uint16_t run_payload(struct tg_ws_msg_state *s, const struct tg_ws_frame *f,
                            const uint8_t *p, size_t avail)
{
    bool complete = avail == f->len;
    uint8_t *payload = unmask_copy(p, avail, f);
    uint16_t code = 0, received;

    if (f->opcode == TG_WS_CLOSE && complete) {
        if (tg_ws_close_valid(payload, avail, &received))
            check(received == TG_WS_CLOSE_NO_STATUS || (received >= 1000 && received < 5000));
    } else if (!tg_ws_is_control(f->opcode) && s->opcode == TG_WS_TEXT) {
        code = tg_ws_msg_text(s, payload, avail, f->fin && complete);
        check(code == 0 || code == TG_WS_CLOSE_BAD_DATA);
    }
    free(payload);
    return code;
}

/* Reads data[0..size) as a stream of frames from one side, until it ends or breaks a rule. */
static void run(const uint8_t *data, size_t size, bool from_client)
{
    struct tg_ws_msg_state s = {.max = MAX_MESSAGE};
    size_t pos = 0;

    while (pos < size) {
        struct tg_ws_frame f;
        uint16_t code = 0;
        ssize_t r = tg_ws_parse_head(data + pos, size - pos, from_client, MAX_PAYLOAD, &f, &code);
        size_t avail;

        if (r <= 0) {
            check(r == 0 || (r == -1 && is_close_code(code)));
            return;
        }
        check((size_t)r == f.head_len && (size_t)r <= size - pos);
        check_head(data + pos, size - pos, from_client, &f);
        pos += f.head_len;
        code = tg_ws_msg_frame(&s, &f);
        if (code != 0) {
            check(is_close_code(code));
            return;
        }
        check(s.max == 0 || s.size <= s.max);
        avail = f.len < size - pos ? (size_t)f.len : size - pos;
        if (run_payload(&s, &f, data + pos, avail) != 0 || avail < f.len)
            return;
        pos += avail;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run(data, size, true);
    run(data, size, false);
    return 0;
}
