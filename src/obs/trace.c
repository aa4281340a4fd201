/*
 * W3C traceparent parsing and generation (see trace.h).
 */
#include "obs/trace.h"

#include <string.h>

#include "core/core.h"
#include "core/hex.h"

/*
 * Offsets of the fields in the version 00 layout; every version reads its first 55 characters
 * this way.
 */
#define TG__TP_TRACE  3
#define TG__TP_PARENT 36
#define TG__TP_FLAGS  53

/*
 * Lowercase hex digit values plus one, so that the zero every other byte gets means "not a
 * digit". Uppercase is deliberately absent: the specification allows lowercase only, and a value
 * with uppercase digits would name a different trace to a peer that compares ids as strings.
 */
static const uint8_t tg__unhex[256] = {
    ['0'] = 1, ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};

/*
 * Checks that p[0..n) are lowercase hex digits. Returns -1 if one is not, 1 if they all are and
 * at least one is not '0', 0 if they are all '0'.
 */
static int tg__hex_run(const char *p, size_t n)
{
    unsigned bad = 0, nonzero = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];

        /* no early exit: valid ids, the common case, are read to the end anyway */
        bad |= tg__unhex[c] == 0;
        nonzero |= c ^ '0';
    }
    if (bad)
        return -1;
    return nonzero != 0;
}

int tg_trace_parse(const char *v, size_t len, struct tg_trace *t)
{
    if (len < TG_TRACEPARENT_LEN)
        return -1;
    if (tg__hex_run(v, 2) < 0 || (v[0] == 'f' && v[1] == 'f'))
        return -1;
    /*
     * Version 00 defines exactly four fields. A later version may append fields, each introduced
     * by '-', which this version cannot interpret but must not reject.
     */
    if (v[0] == '0' && v[1] == '0') {
        if (len != TG_TRACEPARENT_LEN)
            return -1;
    } else if (len > TG_TRACEPARENT_LEN && v[TG_TRACEPARENT_LEN] != '-') {
        return -1;
    }
    if (v[TG__TP_TRACE - 1] != '-' || v[TG__TP_PARENT - 1] != '-' || v[TG__TP_FLAGS - 1] != '-')
        return -1;
    if (tg__hex_run(v + TG__TP_TRACE, sizeof(t->trace_id)) <= 0 ||
        tg__hex_run(v + TG__TP_PARENT, sizeof(t->parent_id)) <= 0 ||
        tg__hex_run(v + TG__TP_FLAGS, 2) < 0)
        return -1;
    memcpy(t->trace_id, v + TG__TP_TRACE, sizeof(t->trace_id));
    memcpy(t->parent_id, v + TG__TP_PARENT, sizeof(t->parent_id));
    t->flags = (uint8_t)((tg__unhex[(unsigned char)v[TG__TP_FLAGS]] - 1) << 4 |
                         (tg__unhex[(unsigned char)v[TG__TP_FLAGS + 1]] - 1));
    return 0;
}

static inline uint64_t tg__rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/*
 * xoshiro256** (Blackman and Vigna): a few cycles per word and a 2^256-1 period. It is not a
 * cryptographic generator; trace ids need to be unique across the fleet, not secret.
 */
static inline uint64_t tg__xoshiro_next(uint64_t s[4])
{
    uint64_t result = tg__rotl(s[1] * 5, 7) * 9;
    uint64_t tmp = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= tmp;
    s[3] = tg__rotl(s[3], 45);
    return result;
}

/*
 * Draws a non-zero 64-bit word. A zero draw is astronomically rare for a seeded state, but an
 * all-zero state (a caller that never seeded it) would yield zeros forever, so that state is
 * replaced by a fixed non-zero one before drawing again.
 */
static uint64_t tg__draw(uint64_t s[4])
{
    uint64_t x = tg__xoshiro_next(s);

    while (TG_UNLIKELY(x == 0)) {
        if ((s[0] | s[1] | s[2] | s[3]) == 0) {
            /* splitmix64 outputs for seed 0: any non-zero state works, these are well mixed */
            s[0] = 0xe220a8397b1dcdafull;
            s[1] = 0x6e789e6aa1b965f4ull;
            s[2] = 0x06c45d188009454full;
            s[3] = 0xf88bb8a8724c81ecull;
        }
        x = tg__xoshiro_next(s);
    }
    return x;
}

void tg_trace_new(uint64_t state[4], char out[TG_TRACEPARENT_LEN], struct tg_trace *t)
{
    /*
     * Every word is drawn non-zero, which is stronger than the specification needs (only the
     * whole id must not be zero) and costs nothing measurable; it keeps the rule obvious.
     */
    uint64_t hi = tg__draw(state), lo = tg__draw(state), span = tg__draw(state);

    memcpy(out, "00-", 3);
    tg_hex64(out + TG__TP_TRACE, hi);
    tg_hex64(out + TG__TP_TRACE + 16, lo);
    out[TG__TP_PARENT - 1] = '-';
    tg_hex64(out + TG__TP_PARENT, span);
    memcpy(out + TG__TP_FLAGS - 1, "-01", 3);
    memcpy(t->trace_id, out + TG__TP_TRACE, sizeof(t->trace_id));
    memcpy(t->parent_id, out + TG__TP_PARENT, sizeof(t->parent_id));
    t->flags = 0x01;
}
