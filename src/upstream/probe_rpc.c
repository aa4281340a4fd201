/*
 * The JSON-RPC part of the active probe (probe.c): just enough JSON to read the node's answer to
 * the head query, and to the eth_syncing and "finalized" block calls that may ride along in a
 * batch. No allocation; nesting is bounded by TG_JSON_DEPTH.
 */
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "core/hex.h"
#include "core/str.h"
#include "upstream/probe_rpc.h"

#define TG_JSON_DEPTH 32

struct tg__rpc_reply {
    struct tg_str id, result, error; /* raw JSON text of each member, empty when absent */
};

static const char *tg__json_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* p is at the opening quote. Returns the position after the closing one, or NULL. */
static const char *tg__json_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '"')
            return p + 1;
        if (*p == '\\' && ++p == end)
            return NULL;
        if ((unsigned char)*p < 0x20)
            return NULL;
    }
    return NULL;
}

static const char *tg__json_value(const char *p, const char *end, int depth);

/* Skips the object or array that starts at p; NULL when malformed or nested too deep. */
static const char *tg__json_container(const char *p, const char *end, int depth)
{
    bool obj = *p == '{';
    char close = obj ? '}' : ']';

    if (depth > TG_JSON_DEPTH)
        return NULL;
    p = tg__json_ws(p + 1, end);
    if (p < end && *p == close)
        return p + 1;
    for (;;) {
        if (obj) {
            if (p == end || *p != '"' || (p = tg__json_string(p, end)) == NULL)
                return NULL;
            p = tg__json_ws(p, end);
            if (p == end || *p != ':')
                return NULL;
            p++;
        }
        if ((p = tg__json_value(p, end, depth + 1)) == NULL)
            return NULL;
        p = tg__json_ws(p, end);
        if (p == end || (*p != ',' && *p != close))
            return NULL;
        if (*p++ == close)
            return p;
        p = tg__json_ws(p, end);
    }
}

/* Skips one value (after white space); NULL when malformed. Numbers and the literals true,
 * false and null are taken as one run of their characters: callers compare what they need. */
static const char *tg__json_value(const char *p, const char *end, int depth)
{
    static const char scalar[] = "+-.0123456789eEaflnrstu";
    const char *s;

    p = tg__json_ws(p, end);
    if (p == end)
        return NULL;
    if (*p == '"')
        return tg__json_string(p, end);
    if (*p == '{' || *p == '[')
        return tg__json_container(p, end, depth);
    for (s = p; p < end && memchr(scalar, *p, sizeof(scalar) - 1) != NULL; p++)
        ;
    return p > s ? p : NULL;
}

/* Reads the object that starts at p, keeping in vals[i] the raw JSON text of the member named
 * names[i] (empty when absent; the last one when a name repeats). Returns the position after
 * the object, or NULL when it is malformed. */
static const char *tg__json_object(const char *p, const char *end, const char *const *names,
                                   struct tg_str *vals, size_t n)
{
    for (size_t i = 0; i < n; i++)
        vals[i] = tg_str_make(NULL, 0);
    if (p == end || *p != '{')
        return NULL;
    p = tg__json_ws(p + 1, end);
    if (p < end && *p == '}')
        return p + 1;
    for (;;) {
        const char *k = p, *v;
        struct tg_str key, *slot = NULL;

        if (p == end || *p != '"' || (p = tg__json_string(p, end)) == NULL)
            return NULL;
        key = tg_str_make(k + 1, (size_t)(p - k - 2));
        for (size_t i = 0; i < n && slot == NULL; i++) {
            if (key.len == strlen(names[i]) && memcmp(key.base, names[i], key.len) == 0)
                slot = &vals[i];
        }
        p = tg__json_ws(p, end);
        if (p == end || *p != ':')
            return NULL;
        v = tg__json_ws(p + 1, end);
        if ((p = tg__json_value(v, end, 1)) == NULL)
            return NULL;
        if (slot != NULL)
            *slot = tg_str_make(v, (size_t)(p - v));
        p = tg__json_ws(p, end);
        if (p == end || (*p != ',' && *p != '}'))
            return NULL;
        if (*p++ == '}')
            return p;
        p = tg__json_ws(p, end);
    }
}

/* Reads the reply object that starts at p, keeping id, result and error. Returns the position
 * after it, or NULL. */
static const char *tg__rpc_reply(const char *p, const char *end, struct tg__rpc_reply *r)
{
    static const char *const names[] = {"id", "result", "error"};
    struct tg_str vals[3];

    p = tg__json_object(p, end, names, vals, 3);
    r->id = vals[0];
    r->result = vals[1];
    r->error = vals[2];
    return p;
}

/* A block number: a hex quantity "0x1b4" (Ethereum) or a plain integer (getSlot and the
 * like). Returns false when result is neither or does not fit 64 bits. */
static bool tg__rpc_quantity(struct tg_str v, uint64_t *out)
{
    uint64_t x = 0;

    if (v.len >= 2 && v.base[0] == '"' && v.base[v.len - 1] == '"')
        return tg_hex_quantity(v.base + 1, v.len - 2, out);
    if (v.len == 0 || v.len > 19)
        return false;
    for (size_t i = 0; i < v.len; i++) {
        if (v.base[i] < '0' || v.base[i] > '9')
            return false;
        x = x * 10 + (uint64_t)(v.base[i] - '0');
    }
    *out = x;
    return true;
}

static bool tg__rpc_is_error(const struct tg__rpc_reply *r)
{
    return r->error.len != 0 && !tg_str_eq(r->error, TG_STR_LIT("null"));
}

/* The number of the block a "finalized" query answered; 0 when the reply is an error, null or
 * not a block: older nodes and dev chains do not know the tag, which must not fail the probe. */
static uint64_t tg__rpc_finalized(const struct tg__rpc_reply *r)
{
    static const char *const names[] = {"number"};
    const char *v = r->result.base;
    struct tg_str number;
    uint64_t n = 0;

    if (tg__rpc_is_error(r) || r->result.len == 0 || v[0] != '{' ||
        tg__json_object(v, v + r->result.len, names, &number, 1) == NULL ||
        !tg__rpc_quantity(number, &n))
        return 0;
    return n;
}

/* Reads a batch answer into got[], by id: 1 the head query, 2 eth_syncing, 3 the finalized
 * block, in any order (the first reply of an id counts). */
static void tg__rpc_batch(const char *s, const char *end, struct tg__rpc_reply got[3], bool have[3])
{
    struct tg__rpc_reply one;

    s = tg__json_ws(s + 1, end);
    while (s != NULL && s < end && *s == '{') {
        s = tg__rpc_reply(s, end, &one);
        if (s != NULL && one.id.len == 1 && one.id.base[0] >= '1' && one.id.base[0] <= '3' &&
            !have[one.id.base[0] - '1']) {
            got[one.id.base[0] - '1'] = one;
            have[one.id.base[0] - '1'] = true;
        }
        s = s != NULL ? tg__json_ws(s, end) : NULL;
        if (s != NULL && s < end && *s == ',')
            s = tg__json_ws(s + 1, end);
    }
}

/* Judges a JSON-RPC answer: one reply, or a batch (see tg__rpc_batch). Fills r->head,
 * r->syncing and r->finalized, or r->why. The finalized block is extra: its reply may be
 * missing or an error. A node that answers anything but a batch to the batch that only the
 * finalized call made one does not take batches: r->refused asks to probe it without. */
bool tg_probe_rpc_answer(bool batch, bool syncing, bool finalized, const char *body, size_t len,
                         struct tg_probe_result *r)
{
    const char *s = tg__json_ws(body, body + len), *end = body + len;
    struct tg__rpc_reply got[3] = {0}, *head = &got[0], *sync = &got[1];
    bool have[3] = {false};

    if (s < end && *s == '[') {
        tg__rpc_batch(s, end, got, have);
    } else if (batch && !syncing) {
        r->refused = true;
        snprintf(r->why, sizeof(r->why), "probe: the answer to the batch is not a batch");
        return false;
    } else if (s < end && *s == '{' && tg__rpc_reply(s, end, head) != NULL) {
        have[0] = true;
    }
    if (!have[0] || (syncing && !have[1] && !tg__rpc_is_error(head))) {
        snprintf(r->why, sizeof(r->why), "probe: %s",
                 batch && !tg__rpc_is_error(head) ? "no answer to the batch"
                                                  : "not a JSON-RPC answer");
        return false;
    }
    if (tg__rpc_is_error(head) || tg__rpc_is_error(sync)) {
        snprintf(r->why, sizeof(r->why), "probe: the node answered an error: %.*s",
                 (int)TG_MIN(head->error.len ? head->error.len : sync->error.len, 60),
                 head->error.len ? head->error.base : sync->error.base);
        return false;
    }
    if (!tg__rpc_quantity(head->result, &r->head)) {
        snprintf(r->why, sizeof(r->why), "probe: result is not a block number: %.*s",
                 (int)TG_MIN(head->result.len, 40), head->result.base);
        return false;
    }
    r->syncing = syncing && !tg_str_eq(sync->result, TG_STR_LIT("false"));
    r->finalized = finalized && have[2] ? tg__rpc_finalized(&got[2]) : 0;
    return true;
}
