/*
 * The request side of JSON-RPC: the envelope of one call or a batch, method patterns and the
 * parameter look-ups that method policies use.
 *
 * A body is read twice. The strict scanner (scan.c) checks it first: jsmn alone would take
 * "[1 2]" or "{"a":1,}", its bracket matching walks up the open containers (quadratic in the
 * nesting, hence the depth bound checked first), and the scan also counts the tokens, so the
 * token array grows once to the right size or the body is refused as too complex. jsmn then
 * tokenizes the text, and the calls are read from its tokens through their parent links.
 */
#include "jsonrpc/jsonrpc_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define JSMN_STATIC
#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#include <jsmn.h>
#pragma GCC diagnostic pop

#include "core/core.h"

/* Tokens allocated up front: enough for a batch of a dozen ordinary calls. */
#define TG__RPC_TOKENS_INIT 256

/* What the pre-scan learnt about a body that is strict JSON. */
struct tg__rpc_shape {
    int top;       /* the first event: TG__RPC_EV_OBJ, TG__RPC_EV_ARR or a scalar's */
    size_t items;  /* values in the top array */
    size_t tokens; /* jsmn tokens the body needs: one per value and per member name */
};

/* The members of a call, indexes into a call's member table. */
enum {
    TG__RPC_M_OTHER,
    TG__RPC_M_JSONRPC,
    TG__RPC_M_METHOD,
    TG__RPC_M_ID,
    TG__RPC_M_PARAMS,
    TG__RPC_M_NUM,
    TG__RPC_M_ALIAS = 0x10, /* or-ed in: the name differs from the member's only in case */
};

static const char *const tg__rpc_member_names[TG__RPC_M_NUM] = {
    [TG__RPC_M_JSONRPC] = "jsonrpc",
    [TG__RPC_M_METHOD] = "method",
    [TG__RPC_M_ID] = "id",
    [TG__RPC_M_PARAMS] = "params",
};

void tg_rpc_tokens_init(struct tg_rpc_tokens *tk, uint32_t max)
{
    tk->max = max;
    tk->cap = max < TG__RPC_TOKENS_INIT ? max : TG__RPC_TOKENS_INIT;
    tk->toks = tk->cap > 0 ? tg_malloc(tk->cap * sizeof(jsmntok_t)) : NULL;
}

void tg_rpc_tokens_free(struct tg_rpc_tokens *tk)
{
    free(tk->toks);
    memset(tk, 0, sizeof(*tk));
}

/* Grows tk to at least need tokens (need <= tk->max), doubling so that a thread's array
 * settles at the size its largest bodies need. The size comes from a peer, so a failure fails
 * the request rather than the process. */
static int tg__rpc_tokens_reserve(struct tg_rpc_tokens *tk, size_t need)
{
    size_t cap = tk->cap > 0 ? tk->cap : 16;
    void *t;

    if (need <= tk->cap)
        return 0;
    while (cap < need)
        cap *= 2;
    if (cap > tk->max)
        cap = tk->max;
    t = realloc(tk->toks, cap * sizeof(jsmntok_t));
    if (t == NULL)
        return -1;
    tk->toks = t;
    tk->cap = (uint32_t)cap;
    return 0;
}

static int tg__rpc_prescan(const char *body, size_t len, struct tg__rpc_shape *sh, const char **why)
{
    struct tg__rpc_scan sc;
    int ev;

    tg__rpc_scan_init(&sc, body, len, TG_RPC_REQUEST_DEPTH_MAX);
    sh->top = ev = tg__rpc_scan_next(&sc);
    sh->items = sh->tokens = 0;
    while (ev > TG__RPC_EV_DONE) {
        if (ev != TG__RPC_EV_OBJ_END && ev != TG__RPC_EV_ARR_END) {
            sh->tokens++;
            if (sh->top == TG__RPC_EV_ARR && sc.level == 1 && ev != TG__RPC_EV_KEY)
                sh->items++;
        }
        ev = tg__rpc_scan_next(&sc);
    }
    if (ev == TG__RPC_EV_BAD) {
        *why = sc.why;
        return -1;
    }
    return 0;
}

/* A token's JSON text: jsmn leaves the quotes out of a string's. */
static void tg__rpc_tok_text(const jsmntok_t *t, uint32_t *off, uint32_t *len)
{
    bool str = t->type == JSMN_STRING;

    *off = (uint32_t)(t->start - str);
    *len = (uint32_t)(t->end - t->start + 2 * str);
}

/*
 * Which JSON-RPC member the name k[0..len) (a string's inside) is, TG__RPC_M_ALIAS or-ed in
 * when it is one only once folded the way Go's encoding/json matches names: ASCII case, and
 * U+017F and U+212A, which fold to 's' and 'k'.
 */
static int tg__rpc_member(const char *k, size_t len)
{
    char buf[16], fold[16];
    size_t n, f = 0;
    bool whole;

    n = tg__rpc_unescape(k, len, buf, sizeof(buf), &whole);
    if (!whole)
        return TG__RPC_M_OTHER;
    for (size_t i = 0; i < n; f++) {
        unsigned char c = (unsigned char)buf[i];

        if (c < 0x80) {
            fold[f] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
            i++;
        } else if (n - i >= 2 && memcmp(buf + i, "\xc5\xbf", 2) == 0) {
            fold[f] = 's';
            i += 2;
        } else if (n - i >= 3 && memcmp(buf + i, "\xe2\x84\xaa", 3) == 0) {
            fold[f] = 'k';
            i += 3;
        } else {
            return TG__RPC_M_OTHER;
        }
    }
    for (int m = TG__RPC_M_JSONRPC; m < TG__RPC_M_NUM; m++) {
        const char *name = tg__rpc_member_names[m];

        if (strlen(name) != f || memcmp(fold, name, f) != 0)
            continue;
        return n == f && memcmp(buf, name, n) == 0 ? m : m | TG__RPC_M_ALIAS;
    }
    return TG__RPC_M_OTHER;
}

/* Reads the id whose value is token v (0: absent, -1: given twice). Returns why it is not a
 * valid id, or NULL. */
static const char *tg__rpc_call_id(const char *body, const jsmntok_t *t, int v,
                                   struct tg_rpc_call *c)
{
    if (v <= 0) {
        c->id_kind = TG_RPC_ID_ABSENT;
        return NULL;
    }
    if (t[v].type == JSMN_STRING) {
        c->id_kind = TG_RPC_ID_STRING;
    } else if (t[v].type == JSMN_PRIMITIVE && body[t[v].start] == 'n') {
        c->id_kind = TG_RPC_ID_NULL;
    } else if (t[v].type == JSMN_PRIMITIVE && body[t[v].start] != 't' && body[t[v].start] != 'f') {
        c->id_kind = TG_RPC_ID_NUMBER;
    } else {
        return "id is not a string, number or null";
    }
    tg__rpc_tok_text(&t[v], &c->id_off, &c->id_len);
    return NULL;
}

/* Checks jsonrpc, method and params of a call whose members are val[] (token indexes, 0 when
 * absent) and stores method and params. Returns why the call is invalid, or NULL. */
static const char *tg__rpc_call_check(const char *body, const jsmntok_t *t, const int *val,
                                      struct tg_rpc_call *c)
{
    int v = val[TG__RPC_M_JSONRPC];
    size_t n;

    if (v == 0)
        return "jsonrpc member missing";
    if (t[v].type != JSMN_STRING ||
        !tg__rpc_str_eq(body + t[v].start, (size_t)(t[v].end - t[v].start), "2.0", 3))
        return "jsonrpc is not \"2.0\"";
    v = val[TG__RPC_M_METHOD];
    if (v == 0)
        return "method missing";
    if (t[v].type != JSMN_STRING)
        return "method is not a string";
    n = (size_t)(t[v].end - t[v].start);
    if (n == 0)
        return "method is empty";
    if (memchr(body + t[v].start, '\\', n) != NULL)
        return "method is written with escapes";
    c->method_off = (uint32_t)t[v].start;
    c->method_len = (uint32_t)n;
    v = val[TG__RPC_M_PARAMS];
    if (v > 0) {
        if (t[v].type != JSMN_ARRAY && t[v].type != JSMN_OBJECT)
            return "params is not an array or object";
        tg__rpc_tok_text(&t[v], &c->params_off, &c->params_len);
    }
    return NULL;
}

/* Fills c from item token it of the n tokens t. */
static void tg__rpc_call_fill(const char *body, const jsmntok_t *t, int n, int it,
                              struct tg_rpc_call *c)
{
    int val[TG__RPC_M_NUM] = {0};
    const char *why = NULL, *id_why;

    memset(c, 0, sizeof(*c));
    tg__rpc_tok_text(&t[it], &c->off, &c->len);
    if (t[it].type != JSMN_OBJECT) {
        why = "not an object";
        goto invalid;
    }
    /* The item's tokens are the ones that start before it ends; its members, those whose
     * parent it is, are name tokens followed by their value's. */
    for (int k = it + 1; k < n && t[k].start < t[it].end; k++) {
        int m;

        if (t[k].parent != it)
            continue;
        m = tg__rpc_member(body + t[k].start, (size_t)(t[k].end - t[k].start));
        if (m & TG__RPC_M_ALIAS) {
            why = why ? why : "member name differs from a JSON-RPC one only in case";
        } else if (m != TG__RPC_M_OTHER && val[m] != 0) {
            why = why ? why : "duplicate member";
            val[m] = -1; /* ambiguous: neither value is read */
        } else if (m != TG__RPC_M_OTHER) {
            val[m] = k + 1;
        }
    }
    id_why = tg__rpc_call_id(body, t, val[TG__RPC_M_ID], c);
    why = why ? why : id_why;
    if (why == NULL)
        why = tg__rpc_call_check(body, t, val, c);
    if (why == NULL)
        return;
invalid:
    c->error = TG_RPC_INVALID_REQUEST;
    c->why = why;
    c->method_len = c->params_len = 0;
    if (c->id_len == 0)
        c->id_kind = TG_RPC_ID_NULL;
}

/* Tokenizes the checked body into tk (grown as needed) and fills env's calls. */
static int tg__rpc_fill(struct tg_rpc_tokens *tk, const char *body, size_t len,
                        const struct tg__rpc_shape *sh, struct tg_rpc_envelope *env,
                        const char **why)
{
    jsmn_parser p;
    jsmntok_t *t;
    int n;

    if (sh->tokens > tk->max) {
        *why = "JSON too complex";
        return TG_RPC_PARSE_ERROR;
    }
    if (tg__rpc_tokens_reserve(tk, sh->tokens) < 0) {
        *why = "out of memory for JSON tokens";
        return TG_RPC_INTERNAL_ERROR;
    }
    t = tk->toks;
    jsmn_init(&p);
    n = jsmn_parse(&p, body, len, t, tk->cap);
    if (n < 0 || (size_t)n != sh->tokens) {
        /* Both read the same strict JSON; a disagreement is a bug, refused rather than
         * trusted. The fuzz target looks for this text. */
        *why = "JSON tokenizers disagree";
        return TG_RPC_PARSE_ERROR;
    }
    if (!env->batch) {
        tg__rpc_call_fill(body, t, n, 0, &env->calls[0]);
        if (env->calls[0].error != 0)
            return TG_RPC_INVALID_REQUEST;
        env->num = 1;
        return 0;
    }
    for (int k = 1; k < n; k++)
        if (t[k].parent == 0)
            tg__rpc_call_fill(body, t, n, k, &env->calls[env->num++]);
    return 0;
}

int tg_rpc_parse(struct tg_rpc_tokens *tk, const char *body, size_t len, size_t max_batch,
                 struct tg_rpc_envelope *env)
{
    struct tg__rpc_shape sh;
    const char *why = NULL;
    int rc;

    env->batch = false;
    env->num = 0;
    if (len > INT_MAX) {
        why = "body too large";
        rc = TG_RPC_PARSE_ERROR;
        goto fail;
    }
    if (tg__rpc_prescan(body, len, &sh, &why) < 0) {
        rc = TG_RPC_PARSE_ERROR;
        goto fail;
    }
    env->batch = sh.top == TG__RPC_EV_ARR;
    if (!env->batch && sh.top != TG__RPC_EV_OBJ) {
        why = "not an object or array";
        rc = TG_RPC_INVALID_REQUEST;
    } else if (env->batch && sh.items == 0) {
        why = "empty batch";
        rc = TG_RPC_INVALID_REQUEST;
    } else if (env->batch && sh.items > max_batch) {
        why = "batch too large";
        rc = TG_RPC_BATCH_TOO_LARGE;
    } else {
        rc = tg__rpc_fill(tk, body, len, &sh, env, &why);
        if (rc == 0 || rc == TG_RPC_INVALID_REQUEST)
            return rc; /* an invalid single call has filled calls[0] itself */
        env->num = 0;
    }
fail:
    memset(&env->calls[0], 0, sizeof(env->calls[0]));
    env->calls[0].error = rc == TG_RPC_BATCH_TOO_LARGE ? TG_RPC_INVALID_REQUEST : rc;
    env->calls[0].why = why;
    env->calls[0].id_kind = TG_RPC_ID_NULL;
    return rc;
}

bool tg_rpc_method_match(const char *pattern, const char *m, size_t mlen)
{
    const char *p = pattern, *star = NULL;
    size_t i = 0, back = 0;

    /* Greedy matching that, on a mismatch, lets the last '*' take one more byte: no
     * recursion, at most strlen(pattern) * mlen steps. */
    while (i < mlen) {
        if (*p == '*') {
            star = ++p;
            back = i;
        } else if (*p != '\0' && *p == m[i]) {
            p++;
            i++;
        } else if (star != NULL) {
            p = star;
            i = ++back;
        } else {
            return false;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

bool tg_rpc_params_mention(const char *body, const struct tg_rpc_call *c, const char *word)
{
    struct tg__rpc_scan sc;
    size_t wlen = strlen(word);
    int ev;

    if (c->params_len == 0)
        return false;
    tg__rpc_scan_init(&sc, body + c->params_off, c->params_len, TG__RPC_STACK_MAX);
    while ((ev = tg__rpc_scan_next(&sc)) > TG__RPC_EV_DONE)
        if (ev == TG__RPC_EV_STR && tg__rpc_str_eq(sc.s + sc.off, sc.end - sc.off, word, wlen))
            return true;
    return false;
}

bool tg_rpc_param_string(const char *body, const struct tg_rpc_call *c, unsigned index,
                         uint32_t *off, uint32_t *len)
{
    struct tg__rpc_scan sc;
    size_t a, b;
    int ev;

    if (c->params_len == 0)
        return false;
    tg__rpc_scan_init(&sc, body + c->params_off, c->params_len, TG__RPC_STACK_MAX);
    if (tg__rpc_scan_next(&sc) != TG__RPC_EV_ARR)
        return false;
    for (unsigned k = 0;; k++) {
        ev = tg__rpc_scan_next(&sc);
        if (ev <= TG__RPC_EV_DONE || ev == TG__RPC_EV_ARR_END)
            return false;
        if (k == index) {
            if (ev != TG__RPC_EV_STR)
                return false;
            *off = c->params_off + (uint32_t)sc.off;
            *len = (uint32_t)(sc.end - sc.off);
            return true;
        }
        if (tg__rpc_scan_value(&sc, ev, &a, &b) < 0)
            return false;
    }
}
