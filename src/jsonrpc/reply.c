/*
 * The reply side of JSON-RPC: finds the replies in a node's answer and, in each, the id, the
 * result's extent and the error's code and message, in one pass of the strict scanner. A
 * result is skipped over, never tokenized: eth_getLogs and trace answers run to tens of
 * megabytes, and all the proxy needs of them is where they start and end.
 */
#include "jsonrpc/jsonrpc_internal.h"

#include <string.h>

/* Members of a reply that the scan reads, as bits of a "seen" set. */
enum {
    TG__RPC_R_ID = 1,
    TG__RPC_R_RESULT = 2,
    TG__RPC_R_ERROR = 4,
    TG__RPC_R_CODE = 8,
    TG__RPC_R_MESSAGE = 16,
};

/* Whether the member name at sc (unescaped bytes only: a node writes its own names plainly,
 * and an escaped one is just another member) is lit. */
static bool tg__rpc_key_is(const struct tg__rpc_scan *sc, const char *lit)
{
    size_t n = strlen(lit);

    return sc->end - sc->off == n && memcmp(sc->s + sc->off, lit, n) == 0;
}

/* Sets bit in *seen, or returns -1 when it was already set: a reply that repeats a member is
 * ambiguous (parsers differ on which value wins), so it is not reply-shaped. */
static int tg__rpc_once(unsigned *seen, unsigned bit)
{
    if (*seen & bit)
        return -1;
    *seen |= bit;
    return 0;
}

/* error.code when it is an integer that fits in 64 bits, else 0. */
static int64_t tg__rpc_code(const char *s, size_t len)
{
    bool neg = len > 0 && s[0] == '-';
    uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;

    for (size_t i = neg; i < len; i++) {
        unsigned d = (unsigned char)s[i] - '0';

        if (d > 9 || v > (lim - d) / 10)
            return 0; /* a fraction, an exponent, or too large */
        v = v * 10 + d;
    }
    return neg ? (int64_t)(0 - v) : (int64_t)v;
}

/* Reads the members of the error object whose '{' sc just returned, up to its '}'. */
static int tg__rpc_error_read(struct tg__rpc_scan *sc, struct tg_rpc_reply *r)
{
    uint32_t level = sc->level;
    unsigned seen = 0;
    size_t a, b;
    int ev;

    r->has_error = true;
    for (;;) {
        ev = tg__rpc_scan_next(sc);
        if (ev == TG__RPC_EV_OBJ_END && sc->level == level)
            return 0;
        if (ev != TG__RPC_EV_KEY)
            return -1;
        if (tg__rpc_key_is(sc, "code")) {
            if (tg__rpc_once(&seen, TG__RPC_R_CODE) < 0)
                return -1;
            ev = tg__rpc_scan_next(sc);
            if (ev == TG__RPC_EV_NUM)
                r->code = tg__rpc_code(sc->s + sc->off, sc->end - sc->off);
        } else if (tg__rpc_key_is(sc, "message")) {
            if (tg__rpc_once(&seen, TG__RPC_R_MESSAGE) < 0)
                return -1;
            ev = tg__rpc_scan_next(sc);
            if (ev == TG__RPC_EV_STR) {
                r->msg_off = (uint32_t)sc->off;
                r->msg_len = (uint32_t)(sc->end - sc->off);
            }
        } else {
            ev = tg__rpc_scan_next(sc);
        }
        if (tg__rpc_scan_value(sc, ev, &a, &b) < 0)
            return -1;
    }
}

/* Reads one member value of a reply: the id and result are located, the error read. */
static int tg__rpc_member_read(struct tg__rpc_scan *sc, struct tg_rpc_reply *r, unsigned which,
                               int ev)
{
    size_t a, b;

    if (which == TG__RPC_R_ERROR && ev == TG__RPC_EV_OBJ)
        return tg__rpc_error_read(sc, r);
    if (which == TG__RPC_R_ERROR && ev == TG__RPC_EV_LIT && sc->s[sc->off] == 'n')
        return 0; /* "error": null, as some nodes write beside a result */
    if (which == TG__RPC_R_ERROR)
        return -1; /* an error that is neither an object nor null */
    if (tg__rpc_scan_value(sc, ev, &a, &b) < 0)
        return -1;
    if (which == TG__RPC_R_ID) {
        r->id_off = (uint32_t)a;
        r->id_len = (uint32_t)(b - a);
    } else if (which == TG__RPC_R_RESULT) {
        r->result_off = (uint32_t)a;
        r->result_len = (uint32_t)(b - a);
    }
    return 0;
}

/* Reads the reply object whose '{' sc just returned into r, up to its '}'. */
static int tg__rpc_reply_read(struct tg__rpc_scan *sc, struct tg_rpc_reply *r)
{
    uint32_t level = sc->level;
    unsigned seen = 0, which;
    int ev;

    memset(r, 0, sizeof(*r));
    r->off = (uint32_t)sc->off;
    for (;;) {
        ev = tg__rpc_scan_next(sc);
        if (ev == TG__RPC_EV_OBJ_END && sc->level == level)
            break;
        if (ev != TG__RPC_EV_KEY)
            return -1;
        which = tg__rpc_key_is(sc, "id")       ? TG__RPC_R_ID
                : tg__rpc_key_is(sc, "result") ? TG__RPC_R_RESULT
                : tg__rpc_key_is(sc, "error")  ? TG__RPC_R_ERROR
                                               : 0;
        if (which != 0 && tg__rpc_once(&seen, which) < 0)
            return -1;
        ev = tg__rpc_scan_next(sc);
        if (tg__rpc_member_read(sc, r, which, ev) < 0)
            return -1;
    }
    r->len = (uint32_t)(sc->end - r->off);
    if ((seen & TG__RPC_R_RESULT) ? r->has_error : !r->has_error)
        return -1; /* both, or neither */
    return 0;
}

int tg_rpc_scan_replies(const char *body, size_t len, struct tg_rpc_reply *out, size_t max,
                        size_t *num, bool *batch)
{
    struct tg__rpc_scan sc;
    struct tg_rpc_reply spare;
    size_t n = 0;
    int ev;

    *num = 0;
    *batch = false;
    if (len > UINT32_MAX)
        return -1;
    tg__rpc_scan_init(&sc, body, len, TG_RPC_REPLY_DEPTH_MAX);
    ev = tg__rpc_scan_next(&sc);
    if (ev == TG__RPC_EV_OBJ) {
        if (tg__rpc_reply_read(&sc, max > 0 ? &out[0] : &spare) < 0)
            return -1;
        n = 1;
    } else if (ev == TG__RPC_EV_ARR) {
        *batch = true;
        while ((ev = tg__rpc_scan_next(&sc)) == TG__RPC_EV_OBJ) {
            if (tg__rpc_reply_read(&sc, n < max ? &out[n] : &spare) < 0)
                return -1;
            n++;
        }
        if (ev != TG__RPC_EV_ARR_END)
            return -1;
    } else {
        return -1;
    }
    if (tg__rpc_scan_next(&sc) != TG__RPC_EV_DONE)
        return -1;
    *num = n < max ? n : max;
    return 0;
}
