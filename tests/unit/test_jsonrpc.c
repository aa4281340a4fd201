/*
 * JSON-RPC envelope, parameter look-ups, reply scan and error classification (src/jsonrpc/).
 * Every input is copied into a buffer of its exact size, so that a run with SAN=1 catches any
 * read past the body.
 */
#include <stdlib.h>
#include <time.h>

#include "jsonrpc/jsonrpc.h"
#include "unit.h"

#define S(lit) lit, sizeof(lit) - 1

#define MAX_BATCH 128

static struct tg_rpc_tokens tk;

struct req {
    char *body;
    size_t len;
    int rc;
    struct tg_rpc_envelope env;
    struct tg_rpc_call calls[MAX_BATCH];
};

static char *dup_exact(const char *in, size_t len)
{
    char *b = malloc(len ? len : 1);

    memcpy(b, in, len);
    return b;
}

static int parse_with(struct req *r, struct tg_rpc_tokens *t, const char *in, size_t len,
                      size_t max_batch)
{
    r->body = dup_exact(in, len);
    r->len = len;
    r->env.calls = r->calls;
    r->rc = tg_rpc_parse(t, r->body, len, max_batch, &r->env);
    return r->rc;
}

static int parse(struct req *r, const char *in, size_t len)
{
    return parse_with(r, &tk, in, len, MAX_BATCH);
}

static void req_done(struct req *r)
{
    free(r->body);
    r->body = NULL;
}

/* The call's fields stay inside the body. */
static void check_bounds(const struct req *r, const struct tg_rpc_call *c)
{
    ASSERT((size_t)c->off + c->len <= r->len);
    ASSERT((size_t)c->method_off + c->method_len <= r->len);
    ASSERT((size_t)c->id_off + c->id_len <= r->len);
    ASSERT((size_t)c->params_off + c->params_len <= r->len);
}

TEST(test_single)
{
    struct req r;
    const struct tg_rpc_call *c = &r.calls[0];

    ASSERT_EQ(0, parse(&r, S("{\"jsonrpc\":\"2.0\",\"method\":\"eth_call\",\"params\":[{\"to\":"
                             "\"0x1\"},\"latest\"],\"id\":7}")));
    ASSERT(!r.env.batch);
    ASSERT_EQ(1, r.env.num);
    ASSERT_EQ(0, c->error);
    ASSERT_EQ(0, c->off);
    ASSERT_EQ(77, c->len);
    ASSERT_EQ(27, c->method_off);
    ASSERT_EQ(8, c->method_len);
    ASSERT_STR("eth_call", r.body + c->method_off, c->method_len);
    ASSERT_EQ(46, c->params_off);
    ASSERT_EQ(23, c->params_len);
    ASSERT_STR("[{\"to\":\"0x1\"},\"latest\"]", r.body + c->params_off, c->params_len);
    ASSERT_EQ(75, c->id_off);
    ASSERT_EQ(1, c->id_len);
    ASSERT_EQ(TG_RPC_ID_NUMBER, c->id_kind);
    req_done(&r);

    /* Whitespace around everything, members in any order, an escaped quote in a string id. */
    ASSERT_EQ(0, parse(&r, S(" \n{ \"id\" : \"a\\\"b\" , \"method\":\"x\", \"jsonrpc\" : "
                             "\"2.0\" }\t")));
    ASSERT_EQ(1, r.env.num);
    ASSERT_EQ(2, c->off);
    ASSERT_EQ(51, c->len);
    ASSERT_EQ(11, c->id_off);
    ASSERT_EQ(6, c->id_len);
    ASSERT_STR("\"a\\\"b\"", r.body + c->id_off, c->id_len);
    ASSERT_EQ(TG_RPC_ID_STRING, c->id_kind);
    ASSERT_EQ(30, c->method_off);
    ASSERT_EQ(1, c->method_len);
    ASSERT_EQ(0, c->params_len);
    req_done(&r);

    /* Members tollgate does not know are ignored, whatever they hold; "2.0" may be escaped. */
    ASSERT_EQ(0, parse(&r, S("{\"jsonrpc\":\"2\\u002e0\",\"method\":\"a\",\"id\":-1.5e3,"
                             "\"extra\":{\"method\":5,\"id\":[]},\"id2\":true,\"params\":{}}")));
    ASSERT_EQ(0, c->error);
    ASSERT_STR("-1.5e3", r.body + c->id_off, c->id_len);
    ASSERT_STR("{}", r.body + c->params_off, c->params_len);
    req_done(&r);
}

TEST(test_notification)
{
    struct req r;
    const struct tg_rpc_call *c = &r.calls[0];

    ASSERT_EQ(0, parse(&r, S("{\"jsonrpc\":\"2.0\",\"method\":\"eth_subscribe\",\"params\":[]}")));
    ASSERT_EQ(1, r.env.num);
    ASSERT_EQ(0, c->error);
    ASSERT_EQ(TG_RPC_ID_ABSENT, c->id_kind);
    ASSERT_EQ(0, c->id_len);
    ASSERT_STR("[]", r.body + c->params_off, c->params_len);
    req_done(&r);

    ASSERT_EQ(0, parse(&r, S("{\"jsonrpc\":\"2.0\",\"method\":\"a\",\"id\":null}")));
    ASSERT_EQ(TG_RPC_ID_NULL, c->id_kind);
    ASSERT_STR("null", r.body + c->id_off, c->id_len);
    req_done(&r);
}

TEST(test_batch)
{
    struct req r;
    const struct tg_rpc_call *c = r.calls;

    ASSERT_EQ(0, parse(&r, S("[{\"jsonrpc\":\"2.0\",\"method\":\"a\",\"id\":1},{\"jsonrpc\":"
                             "\"2.0\",\"method\":\"b\"},5,{\"jsonrpc\":\"2.0\",\"method\":\"c\","
                             "\"id\":null,\"params\":{}}]")));
    ASSERT(r.env.batch);
    ASSERT_EQ(4, r.env.num);
    ASSERT_EQ(1, c[0].off);
    ASSERT_EQ(37, c[0].len);
    ASSERT_EQ(36, c[0].id_off);
    ASSERT_EQ(1, c[0].id_len);
    ASSERT_EQ(TG_RPC_ID_NUMBER, c[0].id_kind);
    ASSERT_STR("a", r.body + c[0].method_off, c[0].method_len);
    ASSERT_EQ(39, c[1].off);
    ASSERT_EQ(30, c[1].len);
    ASSERT_EQ(66, c[1].method_off);
    ASSERT_EQ(TG_RPC_ID_ABSENT, c[1].id_kind);
    ASSERT_EQ(0, c[1].error);
    ASSERT_EQ(70, c[2].off);
    ASSERT_EQ(1, c[2].len);
    ASSERT_EQ(TG_RPC_INVALID_REQUEST, c[2].error);
    ASSERT_STREQ("not an object", c[2].why);
    ASSERT_EQ(TG_RPC_ID_NULL, c[2].id_kind);
    ASSERT_EQ(0, c[2].id_len);
    ASSERT_EQ(72, c[3].off);
    ASSERT_EQ(52, c[3].len);
    ASSERT_EQ(107, c[3].id_off);
    ASSERT_EQ(TG_RPC_ID_NULL, c[3].id_kind);
    ASSERT_EQ(121, c[3].params_off);
    ASSERT_EQ(2, c[3].params_len);
    ASSERT_EQ(0, c[3].error);
    for (uint32_t i = 0; i < r.env.num; i++)
        check_bounds(&r, &c[i]);
    req_done(&r);

    /* Items of every JSON type; strings keep their quotes in the item's text. */
    ASSERT_EQ(0, parse(&r, S("[\"x\",[],null,{\"jsonrpc\":\"2.0\",\"method\":\"m\"}]")));
    ASSERT_EQ(4, r.env.num);
    ASSERT_STR("\"x\"", r.body + c[0].off, c[0].len);
    ASSERT_STR("[]", r.body + c[1].off, c[1].len);
    ASSERT_STR("null", r.body + c[2].off, c[2].len);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(TG_RPC_INVALID_REQUEST, c[i].error);
        ASSERT_STREQ("not an object", c[i].why);
    }
    ASSERT_EQ(0, c[3].error);
    req_done(&r);
}

struct invalid_case {
    const char *item;
    const char *why;
    const char *id; /* the id's text when readable, else NULL */
};

static const struct invalid_case invalid[] = {
    {"{\"method\":\"a\",\"id\":1}", "jsonrpc member missing", "1"},
    {"{\"jsonrpc\":\"2.1\",\"method\":\"a\",\"id\":1}", "jsonrpc is not \"2.0\"", "1"},
    {"{\"jsonrpc\":\"2.0 \",\"method\":\"a\",\"id\":1}", "jsonrpc is not \"2.0\"", "1"},
    {"{\"jsonrpc\":2.0,\"method\":\"a\",\"id\":\"k\"}", "jsonrpc is not \"2.0\"", "\"k\""},
    {"{\"jsonrpc\":null,\"method\":\"a\",\"id\":1}", "jsonrpc is not \"2.0\"", "1"},
    {"{\"jsonrpc\":\"2.0\",\"id\":1}", "method missing", "1"},
    {"{\"jsonrpc\":\"2.0\",\"method\":5,\"id\":1}", "method is not a string", "1"},
    {"{\"jsonrpc\":\"2.0\",\"method\":[\"a\"],\"id\":1}", "method is not a string", "1"},
    {"{\"jsonrpc\":\"2.0\",\"method\":null,\"id\":1}", "method is not a string", "1"},
    {"{\"jsonrpc\":\"2.0\",\"method\":\"\",\"id\":1}", "method is empty", "1"},
    {"{\"jsonrpc\":\"2.0\",\"method\":\"debug\\u005ftraceCall\",\"id\":1}",
     "method is written with escapes", "1"},
    {"{\"jsonrpc\":\"2.0\",\"method\":\"a\",\"id\":{}}", "id is not a string, number or null",
     NULL},
    {"{\"jsonrpc\":\"2.0\",\"method\":\"a\",\"id\":[1]}", "id is not a string, number or null",
     NULL},
    {"{\"jsonrpc\":\"2.0\",\"method\":\"a\",\"id\":true}", "id is not a string, number or null",
     NULL},
    {"{\"jsonrpc\":\"2.0\",\"method\":\"a\",\"id\":false}", "id is not a string, number or null",
     NULL},
    {"{\"jsonrpc\":\"2.0\",\"method\":\"a\",\"params\":\"x\",\"id\":1}",
     "params is not an array or object", "1"},
    {"{\"jsonrpc\":\"2.0\",\"method\":\"a\",\"params\":5,\"id\":1}",
     "params is not an array or object", "1"},
    {"{\"jsonrpc\":\"2.0\",\"method\":\"a\",\"params\":null,\"id\":1}",
     "params is not an array or object", "1"},
    {"{\"jsonrpc\":\"2.0\",\"method\":\"a\",\"params\":true,\"id\":1}",
     "params is not an array or object", "1"},
    {"{\"jsonrpc\":\"2.0\",\"method\":\"a\",\"method\":\"b\",\"id\":1}", "duplicate member", "1"},
    {"{\"jsonrpc\":\"2.0\",\"jsonrpc\":\"2.0\",\"method\":\"a\",\"id\":1}", "duplicate member",
     "1"},
    {"{\"jsonrpc\":\"2.0\",\"method\":\"a\",\"params\":[],\"params\":[],\"id\":1}",
     "duplicate member", "1"},
    {"{\"jsonrpc\":\"2.0\",\"method\":\"a\",\"id\":1,\"id\":2}", "duplicate member", NULL},
    {"{\"jsonrpc\":\"2.0\",\"method\":\"a\",\"id\":1,\"\\u0069d\":1}", "duplicate member", NULL},
    {"{\"jsonrpc\":\"2.0\",\"Method\":\"a\",\"id\":1}",
     "member name differs from a JSON-RPC one only in case", "1"},
    {"{\"jsonrpc\":\"2.0\",\"method\":\"a\",\"METHOD\":\"b\",\"id\":1}",
     "member name differs from a JSON-RPC one only in case", "1"},
    {"{\"jsonrpc\":\"2.0\",\"method\":\"a\",\"ID\":2,\"id\":1}",
     "member name differs from a JSON-RPC one only in case", "1"},
    /* U+017F LATIN SMALL LETTER LONG S, raw and escaped, which Go folds to 's'. */
    {"{\"j\xc5\xbfonrpc\":\"2.0\",\"jsonrpc\":\"2.0\",\"method\":\"a\",\"id\":1}",
     "member name differs from a JSON-RPC one only in case", "1"},
    {"{\"jsonrpc\":\"2.0\",\"method\":\"a\",\"param\\u017f\":[],\"id\":1}",
     "member name differs from a JSON-RPC one only in case", "1"},
    {"{}", "jsonrpc member missing", NULL},
};

static void check_invalid(const struct req *r, const struct tg_rpc_call *c,
                          const struct invalid_case *v)
{
    ASSERT_EQ(TG_RPC_INVALID_REQUEST, c->error);
    ASSERT_STREQ(v->why, c->why);
    ASSERT_EQ(0, c->method_len);
    check_bounds(r, c);
    if (v->id != NULL) {
        ASSERT_STR(v->id, r->body + c->id_off, c->id_len);
        ASSERT(c->id_kind == TG_RPC_ID_NUMBER || c->id_kind == TG_RPC_ID_STRING);
    } else {
        ASSERT_EQ(0, c->id_len);
        ASSERT_EQ(TG_RPC_ID_NULL, c->id_kind);
    }
}

TEST(test_invalid_items)
{
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        const struct invalid_case *v = &invalid[i];
        char batch[512];
        int n;
        struct req r;

        /* Alone: the whole request is invalid. */
        ASSERT_EQ(TG_RPC_INVALID_REQUEST, parse(&r, v->item, strlen(v->item)));
        ASSERT_EQ(0, r.env.num);
        ASSERT(!r.env.batch);
        check_invalid(&r, &r.calls[0], v);
        req_done(&r);

        /* In a batch, between two valid calls: only that item is. */
        n = snprintf(batch, sizeof(batch),
                     "[{\"jsonrpc\":\"2.0\",\"method\":\"x\",\"id\":0}, %s ,{\"jsonrpc\":\"2.0\","
                     "\"method\":\"y\"}]",
                     v->item);
        ASSERT_EQ(0, parse(&r, batch, (size_t)n));
        ASSERT_EQ(3, r.env.num);
        ASSERT_EQ(0, r.calls[0].error);
        check_invalid(&r, &r.calls[1], v);
        ASSERT_STR(v->item, r.body + r.calls[1].off, r.calls[1].len);
        ASSERT_EQ(0, r.calls[2].error);
        ASSERT_STR("y", r.body + r.calls[2].method_off, r.calls[2].method_len);
        if (unit_current_failed) {
            fprintf(stderr, "  in case %zu: %s\n", i, v->item);
            req_done(&r);
            return;
        }
        req_done(&r);
    }
}

TEST(test_top_level)
{
    static const char *const not_calls[] = {"1", "\"x\"", "null", "true", "-0.5e3", " 7 "};
    struct req r;

    for (size_t i = 0; i < sizeof(not_calls) / sizeof(not_calls[0]); i++) {
        ASSERT_EQ(TG_RPC_INVALID_REQUEST, parse(&r, not_calls[i], strlen(not_calls[i])));
        ASSERT_EQ(0, r.env.num);
        ASSERT(!r.env.batch);
        ASSERT_EQ(TG_RPC_INVALID_REQUEST, r.calls[0].error);
        ASSERT_STREQ("not an object or array", r.calls[0].why);
        ASSERT_EQ(TG_RPC_ID_NULL, r.calls[0].id_kind);
        req_done(&r);
    }
    ASSERT_EQ(TG_RPC_INVALID_REQUEST, parse(&r, S("[]")));
    ASSERT(r.env.batch);
    ASSERT_EQ(0, r.env.num);
    ASSERT_STREQ("empty batch", r.calls[0].why);
    req_done(&r);
    ASSERT_EQ(TG_RPC_INVALID_REQUEST, parse(&r, S(" [ \n ] ")));
    ASSERT_STREQ("empty batch", r.calls[0].why);
    req_done(&r);
}

/* Not one strict JSON value: parse errors for the request parser and the reply scanner. */
static const struct {
    const char *in;
    size_t len;
} bad_json[] = {
    {S("")},
    {S(" \t\r\n")},
    {S("{")},
    {S("[")},
    {S("{\"jsonrpc\":\"2.0\",\"method\":\"a\"")},
    {S("{\"jsonrpc\":\"2.0\",\"method\":\"a")},
    {S("{\"jsonrpc\":\"2.0\",\"method\":\"a\",")},
    {S("{\"jsonrpc\":\"2.0\",\"method\":\"a\"}x")},
    {S("{\"jsonrpc\":\"2.0\",\"method\":\"a\"}}")},
    {S("{\"jsonrpc\":\"2.0\",\"method\":\"a\"} {\"jsonrpc\":\"2.0\",\"method\":\"a\"}")},
    {S("{\"jsonrpc\":\"2.0\",\"method\":\"a\"}\0")},
    {S("{\"jsonrpc\":\"2.0\",\"method\":\"a\0b\"}")},
    {S("{\"jsonrpc\":\"2.0\",\0\"method\":\"a\"}")},
    {S("[01]")},
    {S("[1.]")},
    {S("[.5]")},
    {S("[-]")},
    {S("[1e]")},
    {S("[1e+]")},
    {S("[+1]")},
    {S("[0x10]")},
    {S("[1 2]")},
    {S("[1,,2]")},
    {S("[,1]")},
    {S("[1,]")},
    {S("{\"a\":1,}")},
    {S("{,\"a\":1}")},
    {S("{a:1}")},
    {S("{'a':1}")},
    {S("{\"a\" 1}")},
    {S("{\"a\":}")},
    {S("{\"a\"::1}")},
    {S("{\"a\":1:2}")},
    {S("{\"a\":1 \"b\":2}")},
    {S("{1:2}")},
    {S("[\"a\":1]")},
    {S("[tru]")},
    {S("[nul]")},
    {S("[True]")},
    {S("[truex]")},
    {S("[NaN]")},
    {S("[Infinity]")},
    {S("[\"\\x\"]")},
    {S("[\"\\u12\"]")},
    {S("[\"\\u12G4\"]")},
    {S("[\"a\tb\"]")},
    {S("[\"a\nb\"]")},
    {S("[\"abc]")},
    {S("[1]]")},
    {S("{]")},
    {S("[}")},
    {S("\xef\xbb\xbf{}")},
    {S("[1] // comment")},
};

TEST(test_parse_errors)
{
    for (size_t i = 0; i < sizeof(bad_json) / sizeof(bad_json[0]); i++) {
        struct tg_rpc_reply rep[2];
        size_t num;
        bool batch;
        struct req r;

        ASSERT_EQ(TG_RPC_PARSE_ERROR, parse(&r, bad_json[i].in, bad_json[i].len));
        ASSERT_EQ(0, r.env.num);
        ASSERT_EQ(TG_RPC_PARSE_ERROR, r.calls[0].error);
        ASSERT(r.calls[0].why != NULL);
        ASSERT_EQ(-1, tg_rpc_scan_replies(r.body, r.len, rep, 2, &num, &batch));
        ASSERT_EQ(0, num);
        if (unit_current_failed) {
            fprintf(stderr, "  in case %zu: %.*s\n", i, (int)bad_json[i].len, bad_json[i].in);
            req_done(&r);
            return;
        }
        req_done(&r);
    }
}

/* n calls of eth_blockNumber in a batch, into a malloc'd string. */
static char *make_batch(size_t n, size_t *len)
{
    size_t cap = 64 + n * 64, o = 0;
    char *b = malloc(cap);

    b[o++] = '[';
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(b + o, cap - o,
                              "%s{\"jsonrpc\":\"2.0\",\"method\":"
                              "\"eth_blockNumber\",\"id\":%zu}",
                              i ? "," : "", i);
    b[o++] = ']';
    *len = o;
    return b;
}

TEST(test_batch_limits)
{
    size_t len;
    char *b = make_batch(10000, &len);
    struct req r;

    ASSERT_EQ(TG_RPC_BATCH_TOO_LARGE, parse_with(&r, &tk, b, len, 100));
    ASSERT(r.env.batch);
    ASSERT_EQ(0, r.env.num);
    ASSERT_EQ(TG_RPC_INVALID_REQUEST, r.calls[0].error);
    ASSERT_STREQ("batch too large", r.calls[0].why);
    req_done(&r);
    free(b);

    b = make_batch(100, &len);
    ASSERT_EQ(0, parse_with(&r, &tk, b, len, 100));
    ASSERT_EQ(100, r.env.num);
    ASSERT_STR("99", r.body + r.calls[99].id_off, r.calls[99].id_len);
    ASSERT(tk.cap >= 701); /* 7 tokens a call and the array: grown on demand */
    req_done(&r);
    ASSERT_EQ(TG_RPC_BATCH_TOO_LARGE, parse_with(&r, &tk, b, len, 99));
    req_done(&r);
    free(b);

    /* max_batch 0: no batch at all, a single call still parses. */
    ASSERT_EQ(TG_RPC_BATCH_TOO_LARGE, parse_with(&r, &tk, S("[1]"), 0));
    req_done(&r);
    ASSERT_EQ(0, parse_with(&r, &tk, S("{\"jsonrpc\":\"2.0\",\"method\":\"a\"}"), 0));
    req_done(&r);
}

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* open '[' then, when close, as many ']', between prefix and suffix. */
static char *make_nested(const char *prefix, size_t open, bool close, const char *suffix,
                         size_t *len)
{
    size_t pl = strlen(prefix), sl = strlen(suffix), n = pl + open * 2 + sl;
    char *b = malloc(n);

    memcpy(b, prefix, pl);
    memset(b + pl, '[', open);
    *len = pl + open;
    if (close) {
        memset(b + *len, ']', open);
        *len += open;
    }
    memcpy(b + *len, suffix, sl);
    *len += sl;
    return b;
}

TEST(test_deep_nesting)
{
    struct tg_rpc_reply rep;
    size_t len, num;
    bool batch, closed[] = {false, true};
    double t0 = now_ms();
    char *b;
    struct req r;

    for (int k = 0; k < 2; k++) {
        b = make_nested("", 100000, closed[k], "", &len);
        ASSERT_EQ(TG_RPC_PARSE_ERROR, parse(&r, b, len));
        ASSERT_STREQ("JSON nested too deep", r.calls[0].why);
        ASSERT_EQ(-1, tg_rpc_scan_replies(r.body, len, &rep, 1, &num, &batch));
        req_done(&r);
        free(b);
        b = make_nested("{\"id\":1,\"result\":", 100000, closed[k], "}", &len);
        ASSERT_EQ(-1, tg_rpc_scan_replies(b, len, &rep, 1, &num, &batch));
        free(b);
    }
    printf("deep nesting (4 x 100,000 levels) refused in %.2f ms\n", now_ms() - t0);

    /* Requests: the object is one level, so params may hold 63 more. */
    b = make_nested("{\"jsonrpc\":\"2.0\",\"method\":\"a\",\"params\":", 63, true, "}", &len);
    ASSERT_EQ(0, parse(&r, b, len));
    ASSERT_EQ(126, r.calls[0].params_len);
    req_done(&r);
    free(b);
    b = make_nested("{\"jsonrpc\":\"2.0\",\"method\":\"a\",\"params\":", 64, true, "}", &len);
    ASSERT_EQ(TG_RPC_PARSE_ERROR, parse(&r, b, len));
    req_done(&r);
    free(b);

    /* Replies: 512 levels, the reply object being the first. */
    b = make_nested("{\"id\":1,\"result\":", 511, true, "}", &len);
    ASSERT_EQ(0, tg_rpc_scan_replies(b, len, &rep, 1, &num, &batch));
    ASSERT_EQ(1022, rep.result_len);
    free(b);
    b = make_nested("{\"id\":1,\"result\":", 512, true, "}", &len);
    ASSERT_EQ(-1, tg_rpc_scan_replies(b, len, &rep, 1, &num, &batch));
    free(b);
}

TEST(test_max_tokens)
{
    struct tg_rpc_tokens small, none, capped;
    struct req r;

    /* An object, three names and three values: 7 tokens; params [1] adds 3 more. */
    tg_rpc_tokens_init(&small, 10);
    ASSERT_EQ(0, parse_with(&r, &small, S("{\"jsonrpc\":\"2.0\",\"method\":\"a\",\"id\":1}"), 1));
    req_done(&r);
    ASSERT_EQ(0,
              parse_with(&r, &small,
                         S("{\"jsonrpc\":\"2.0\",\"method\":\"a\",\"id\":1,\"params\":[1]}"), 1));
    req_done(&r);
    ASSERT_EQ(TG_RPC_PARSE_ERROR,
              parse_with(&r, &small,
                         S("{\"jsonrpc\":\"2.0\",\"method\":\"a\",\"id\":1,\"params\":[1,2]}"), 1));
    ASSERT_STREQ("JSON too complex", r.calls[0].why);
    req_done(&r);
    ASSERT_EQ(10, small.cap);
    tg_rpc_tokens_free(&small);
    ASSERT(small.toks == NULL && small.cap == 0);

    tg_rpc_tokens_init(&none, 0);
    ASSERT_EQ(TG_RPC_PARSE_ERROR, parse_with(&r, &none, S("{}"), 1));
    req_done(&r);
    tg_rpc_tokens_free(&none);

    /* Growth stops at max: 100 calls need 701 tokens. */
    tg_rpc_tokens_init(&capped, 701);
    ASSERT_EQ(256, capped.cap);
    {
        size_t len;
        char *b = make_batch(100, &len);

        ASSERT_EQ(0, parse_with(&r, &capped, b, len, 100));
        ASSERT_EQ(701, capped.cap);
        req_done(&r);
        free(b);
        b = make_batch(101, &len);
        ASSERT_EQ(TG_RPC_PARSE_ERROR, parse_with(&r, &capped, b, len, 128));
        req_done(&r);
        free(b);
    }
    tg_rpc_tokens_free(&capped);
}

TEST(test_method_match)
{
    static const struct {
        const char *pattern, *m;
        bool match;
    } cases[] = {
        {"debug_*", "debug_traceTransaction", true},
        {"debug_*", "debug_", true},
        {"debug_*", "debug", false},
        {"debug_*", "eth_debug_x", false},
        {"eth_get*ByNumber", "eth_getBlockByNumber", true},
        {"eth_get*ByNumber", "eth_getByNumber", true},
        {"eth_get*ByNumber", "eth_getBlockByNumberX", false},
        {"eth_get*ByNumber", "eth_getUncleByBlockNumberAndIndex", false},
        {"*", "", true},
        {"*", "eth_call", true},
        {"", "", true},
        {"", "a", false},
        {"a", "", false},
        {"eth_call", "eth_call", true},
        {"eth_call", "eth_calls", false},
        {"eth_call", "eth_cal", false},
        {"ETH_*", "eth_call", false},
        {"*_*_*", "a_b_c", true},
        {"*_*_*", "a_b", false},
        {"*a*b", "xaxbxb", true},
        {"*a*b", "xaxbxbx", false},
        {"a*b*c", "abcbc", true},
        {"a**b", "ab", true},
        {"**", "x", true},
        {"eth_*", "eth_*", true},
        {"*Number", "eth_blockNumber", true},
        {"*Number", "eth_blockNumbers", false},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool got = tg_rpc_method_match(cases[i].pattern, cases[i].m, strlen(cases[i].m));

        if (got != cases[i].match)
            UNIT_FAIL("\"%s\" ~ \"%s\": expected %d", cases[i].pattern, cases[i].m, cases[i].match);
    }
    /* The method is counted, not NUL-terminated. */
    ASSERT(tg_rpc_method_match("a*", "a\0b", 3));
    ASSERT(!tg_rpc_method_match("a", "a\0", 2));
    ASSERT(tg_rpc_method_match("eth_call", "eth_callXYZ", 8));
}

TEST(test_params)
{
    struct req r;
    const struct tg_rpc_call *c = &r.calls[0];
    uint32_t off = 0, len = 0;

    ASSERT_EQ(0, parse(&r, S("{\"jsonrpc\":\"2.0\",\"method\":\"eth_call\",\"params\":[{\"to\":"
                             "\"0x1\",\"data\":\"pending\"},\"lat\\u0065st\",{\"latest\":1},"
                             "[\"x\",[\"safe\"]],\"\\ud83d\\ude00\",\"\\ud83d\"],\"id\":1}")));
    ASSERT(tg_rpc_params_mention(r.body, c, "pending"));          /* in an object */
    ASSERT(tg_rpc_params_mention(r.body, c, "latest"));           /* escaped */
    ASSERT(tg_rpc_params_mention(r.body, c, "safe"));             /* two arrays down */
    ASSERT(tg_rpc_params_mention(r.body, c, "\xf0\x9f\x98\x80")); /* a surrogate pair */
    ASSERT(!tg_rpc_params_mention(r.body, c, "to"));              /* a member name only */
    ASSERT(!tg_rpc_params_mention(r.body, c, "0x"));              /* a prefix only */
    ASSERT(!tg_rpc_params_mention(r.body, c, "Pending"));
    ASSERT(!tg_rpc_params_mention(r.body, c, ""));
    ASSERT(!tg_rpc_params_mention(r.body, c, "earliest"));
    ASSERT(!tg_rpc_param_string(r.body, c, 0, &off, &len)); /* an object */
    ASSERT(tg_rpc_param_string(r.body, c, 1, &off, &len));
    ASSERT_STR("lat\\u0065st", r.body + off, len);
    ASSERT_EQ(78, off);
    ASSERT(!tg_rpc_param_string(r.body, c, 2, &off, &len));
    ASSERT(!tg_rpc_param_string(r.body, c, 3, &off, &len)); /* an array */
    ASSERT(tg_rpc_param_string(r.body, c, 4, &off, &len));
    ASSERT_STR("\\ud83d\\ude00", r.body + off, len);
    ASSERT(tg_rpc_param_string(r.body, c, 5, &off, &len));
    ASSERT(!tg_rpc_param_string(r.body, c, 6, &off, &len)); /* past the end */
    ASSERT(!tg_rpc_param_string(r.body, c, 1000, &off, &len));
    req_done(&r);

    ASSERT_EQ(0, parse(&r, S("{\"jsonrpc\":\"2.0\",\"method\":\"eth_getBalance\",\"params\":"
                             "[\"0xabc\", \"latest\"],\"id\":1}")));
    ASSERT(tg_rpc_param_string(r.body, c, 0, &off, &len));
    ASSERT_EQ(54, off);
    ASSERT_STR("0xabc", r.body + off, len);
    ASSERT(tg_rpc_param_string(r.body, c, 1, &off, &len));
    ASSERT_STR("latest", r.body + off, len);
    req_done(&r);

    /* params by name: mentioned, but no positional string. */
    ASSERT_EQ(0, parse(&r, S("{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"params\":{\"block\":"
                             "\"pending\"}}")));
    ASSERT(tg_rpc_params_mention(r.body, c, "pending"));
    ASSERT(!tg_rpc_param_string(r.body, c, 0, &off, &len));
    req_done(&r);

    /* No params. */
    ASSERT_EQ(0, parse(&r, S("{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":\"latest\"}")));
    ASSERT(!tg_rpc_params_mention(r.body, c, "latest"));
    ASSERT(!tg_rpc_param_string(r.body, c, 0, &off, &len));
    req_done(&r);
}

static int scan(const char *in, size_t len, struct tg_rpc_reply *out, size_t max, size_t *num,
                bool *batch, char **body)
{
    *body = dup_exact(in, len);
    return tg_rpc_scan_replies(*body, len, out, max, num, batch);
}

TEST(test_replies)
{
    struct tg_rpc_reply rep[4];
    size_t num;
    bool batch;
    char *b;

    ASSERT_EQ(0, scan(S(" {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"0x10\"} "), rep, 4, &num,
                      &batch, &b));
    ASSERT_EQ(1, num);
    ASSERT(!batch);
    ASSERT_EQ(1, rep[0].off);
    ASSERT_EQ(40, rep[0].len);
    ASSERT_STR("1", b + rep[0].id_off, rep[0].id_len);
    ASSERT_STR("\"0x10\"", b + rep[0].result_off, rep[0].result_len);
    ASSERT(!rep[0].has_error);
    free(b);

    /* The error's own code and message, not those nested in its data. */
    ASSERT_EQ(0, scan(S("{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"error\":{\"data\":{\"code\":5,"
                        "\"message\":\"x\"},\"code\":-32000,\"message\":\"header not found\"}}"),
                      rep, 4, &num, &batch, &b));
    ASSERT(rep[0].has_error);
    ASSERT_EQ(-32000, rep[0].code);
    ASSERT_STR("header not found", b + rep[0].msg_off, rep[0].msg_len);
    ASSERT_STR("\"a\"", b + rep[0].id_off, rep[0].id_len);
    ASSERT_EQ(0, rep[0].result_len);
    free(b);

    /* A result of any shape; "error": null beside it is no error. */
    ASSERT_EQ(0, scan(S("{\"result\":{\"a\":[1,2,{\"b\":\"}]\"}]},\"error\":null,\"id\":null}"),
                      rep, 4, &num, &batch, &b));
    ASSERT_STR("{\"a\":[1,2,{\"b\":\"}]\"}]}", b + rep[0].result_off, rep[0].result_len);
    ASSERT_STR("null", b + rep[0].id_off, rep[0].id_len);
    ASSERT(!rep[0].has_error);
    free(b);
    ASSERT_EQ(0, scan(S("{\"id\":1,\"result\":null}"), rep, 4, &num, &batch, &b));
    ASSERT_STR("null", b + rep[0].result_off, rep[0].result_len);
    free(b);

    /* A batch, with fewer slots than replies: all are checked, max are stored. */
    static const char three[] = "[{\"id\":1,\"result\":1},{\"id\":2,\"error\":{\"code\":"
                                "-32601,\"message\":\"the method x does not exist/is not "
                                "available\"}},{\"id\":3,\"result\":[]}]";

    ASSERT_EQ(0, scan(S(three), rep, 4, &num, &batch, &b));
    ASSERT(batch);
    ASSERT_EQ(3, num);
    ASSERT_EQ(1, rep[0].off);
    ASSERT_STR("{\"id\":1,\"result\":1}", b + rep[0].off, rep[0].len);
    ASSERT_STR("2", b + rep[1].id_off, rep[1].id_len);
    ASSERT_EQ(-32601, rep[1].code);
    ASSERT_STR("[]", b + rep[2].result_off, rep[2].result_len);
    ASSERT_EQ(0, tg_rpc_scan_replies(b, sizeof(three) - 1, rep, 1, &num, &batch));
    ASSERT_EQ(1, num);
    ASSERT_EQ(0, tg_rpc_scan_replies(b, sizeof(three) - 1, NULL, 0, &num, &batch));
    ASSERT_EQ(0, num);
    free(b);
    ASSERT_EQ(0, scan(S("[]"), rep, 4, &num, &batch, &b));
    ASSERT(batch);
    ASSERT_EQ(0, num);
    free(b);
}

TEST(test_reply_codes)
{
    static const struct {
        const char *code;
        int64_t want;
    } cases[] = {
        {"-32000", -32000},
        {"3", 3},
        {"0", 0},
        {"-9223372036854775808", INT64_MIN},
        {"9223372036854775807", INT64_MAX},
        {"9223372036854775808", 0},
        {"-9223372036854775809", 0},
        {"3.5", 0},
        {"1e3", 0},
        {"\"3\"", 0},
        {"null", 0},
        {"[3]", 0},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct tg_rpc_reply rep;
        char body[128];
        size_t num;
        bool batch;
        int n = snprintf(body, sizeof(body), "{\"id\":1,\"error\":{\"code\":%s}}", cases[i].code);

        ASSERT_EQ(0, tg_rpc_scan_replies(body, (size_t)n, &rep, 1, &num, &batch));
        ASSERT(rep.has_error);
        ASSERT_EQ(0, rep.msg_len);
        if (rep.code != cases[i].want)
            UNIT_FAIL("code %s: expected %" PRId64 ", got %" PRId64, cases[i].code, cases[i].want,
                      rep.code);
    }
}

TEST(test_replies_not_shaped)
{
    static const char *const bad[] = {
        "{\"id\":1}",
        "{\"id\":1,\"error\":null}",
        "{\"id\":1,\"result\":1,\"error\":{\"code\":1}}",
        "{\"id\":1,\"error\":\"x\"}",
        "{\"id\":1,\"error\":5}",
        "{\"id\":1,\"error\":[]}",
        "{\"result\":1,\"result\":2}",
        "{\"id\":1,\"id\":1,\"result\":2}",
        "{\"error\":{},\"error\":{}}",
        "{\"error\":{\"code\":1,\"code\":2}}",
        "{\"error\":{\"message\":\"a\",\"message\":\"b\"}}",
        "[1]",
        "[{\"result\":1},2]",
        "[{\"result\":1},{}]",
        "[[{\"result\":1}]]",
        "\"x\"",
        "5",
        "null",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct tg_rpc_reply rep[2];
        size_t num;
        bool batch;
        char *b;

        if (scan(bad[i], strlen(bad[i]), rep, 2, &num, &batch, &b) != -1)
            UNIT_FAIL("accepted %s", bad[i]);
        ASSERT_EQ(0, num);
        free(b);
    }
}

/* A 5 MB eth_getLogs-like answer: scanned in one pass, the result located exactly. */
TEST(test_reply_large)
{
    static const char head[] = "{\"jsonrpc\":\"2.0\",\"id\":42,\"result\":[";
    static const char entry[] =
        "{\"address\":\"0x00000000000000000000000000000000deadbeef\",\"topics\":[\"0xddf252ad1be2"
        "c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef\",\"0x000000000000000000000000000"
        "000000000000000000000000000000000abcd\"],\"data\":\"0x0000000000000000000000000000000"
        "000000000000000000000000000000001\",\"blockNumber\":\"0x1234\",\"logIndex\":\"0x7\","
        "\"removed\":false}";
    size_t n = 5u << 20, cap = n + 4096, o = 0, num;
    struct tg_rpc_reply rep;
    char *b = malloc(cap);
    size_t count = 0, result_off;
    double t0, ms;
    bool batch;

    memcpy(b, head, sizeof(head) - 1);
    o = sizeof(head) - 1;
    result_off = o - 1;
    while (o < n) {
        if (count++ > 0)
            b[o++] = ',';
        memcpy(b + o, entry, sizeof(entry) - 1);
        o += sizeof(entry) - 1;
    }
    memcpy(b + o, "]}", 2);
    o += 2;
    t0 = now_ms();
    ASSERT_EQ(0, tg_rpc_scan_replies(b, o, &rep, 1, &num, &batch));
    ms = now_ms() - t0;
    printf("scanned a %.1f MB reply (%zu log entries) in %.2f ms (%.0f MB/s)\n", o / 1048576.0,
           count, ms, o / 1048576.0 / (ms / 1e3));
    ASSERT_EQ(1, num);
    ASSERT_EQ(result_off, rep.result_off);
    ASSERT_EQ(o - 1 - result_off, rep.result_len);
    ASSERT_STR("42", b + rep.id_off, rep.id_len);
    ASSERT(ms < 2000); /* linear: a few ms unsanitized */
    free(b);
}

/* Builds an error reply, scans it and classifies it. */
static struct tg_rpc_class classify(int64_t code, const char *msg)
{
    struct tg_rpc_reply rep;
    struct tg_rpc_class cl = {0xff, "unscanned"};
    size_t num, cap = strlen(msg) + 128;
    char *body = malloc(cap);
    int n = snprintf(body, cap,
                     "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":%" PRId64
                     ",\"message\":\"%s\"}}",
                     code, msg);
    bool batch;

    if (tg_rpc_scan_replies(body, (size_t)n, &rep, 1, &num, &batch) == 0)
        cl = tg_rpc_classify(body, &rep);
    free(body);
    return cl;
}

#define ASSERT_CLASS(v, k, code, msg)                                                              \
    do {                                                                                           \
        struct tg_rpc_class c_ = classify(code, msg);                                              \
        ASSERT_EQ(v, c_.verdict);                                                                  \
        ASSERT_STREQ(k, c_.kind);                                                                  \
    } while (0)

TEST(test_classify_rules)
{
    static const char *const kinds[] = {
        "reverted", "already_known",  "nonce",     "funds",    "underpriced",   "fee",
        "gas",      "invalid_params", "too_large", "limit",    "missing_block", "missing_state",
        "syncing",  "method_missing", "timeout",   "internal", "other",
    };

    ASSERT(tg_rpc_num_error_rules > 40);
    for (size_t i = 0; i < tg_rpc_num_error_rules; i++) {
        const struct tg_rpc_error_rule *rule = &tg_rpc_error_rules[i];
        int64_t code = rule->code != 0 ? rule->code : -32000;
        char msg[256];
        size_t k = 0;
        bool kind_ok = false;
        struct tg_rpc_class cl;

        /* The pattern, upper-cased, inside a sentence: case is ignored, words may follow. */
        if (rule->message != NULL) {
            k = (size_t)snprintf(msg, sizeof(msg), "Error: ");
            for (const char *p = rule->message; *p != '\0' && k < sizeof(msg) - 16; p++)
                msg[k++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
            k += (size_t)snprintf(msg + k, sizeof(msg) - k, " (0x12)");
        } else {
            k = (size_t)snprintf(msg, sizeof(msg), "zzz");
        }
        /* Each rule is reachable: no earlier rule shadows it. */
        if (tg_rpc_error_rule_find(code, msg, k) != (int)i)
            UNIT_FAIL("rule %zu (%" PRId64 ", %s) is shadowed by rule %d", i, rule->code,
                      rule->message ? rule->message : "NULL", tg_rpc_error_rule_find(code, msg, k));
        cl = classify(code, msg);
        ASSERT_EQ(rule->verdict, cl.verdict);
        ASSERT_STREQ(rule->kind, cl.kind);
        for (size_t j = 0; j < sizeof(kinds) / sizeof(kinds[0]); j++)
            kind_ok |= strcmp(kinds[j], rule->kind) == 0;
        if (!kind_ok)
            UNIT_FAIL("rule %zu: kind \"%s\" is not in the documented set", i, rule->kind);
        ASSERT(rule->message == NULL || strlen(rule->message) > 0);
    }
}

TEST(test_classify_real)
{
    /* What the clients actually say. */
    ASSERT_CLASS(TG_RPC_CALLER, "reverted", 3,
                 "execution reverted: ERC20: transfer amount "
                 "exceeds balance");
    ASSERT_CLASS(TG_RPC_CALLER, "reverted", -32000, "execution reverted");
    ASSERT_CLASS(TG_RPC_CALLER, "reverted", -32000, "Execution reverted");
    ASSERT_CLASS(TG_RPC_CALLER, "reverted", -32000, "execution reverted: rate limit exceeded");
    ASSERT_CLASS(TG_RPC_NODE, "missing_block", -32000, "header not found");
    ASSERT_CLASS(TG_RPC_NODE, "missing_state", -32000,
                 "missing trie node 1a2b3c (path ) state 0x4d5e is not available");
    ASSERT_CLASS(TG_RPC_NODE, "missing_state", -32000,
                 "historical state not available in path scheme yet");
    ASSERT_CLASS(TG_RPC_NODE, "missing_state", -32002, "No state available for block 0x3f9e0202");
    ASSERT_CLASS(TG_RPC_NODE, "missing_state", 4444, "pruned history unavailable");
    ASSERT_CLASS(TG_RPC_NODE, "missing_block", -39001, "Unknown block");
    ASSERT_CLASS(TG_RPC_NODE, "method_missing", -32601,
                 "the method eth_simulateV1 does not exist/is not available");
    ASSERT_CLASS(TG_RPC_NODE, "method_missing", -32601, "Method not found");
    ASSERT_CLASS(TG_RPC_NODE, "method_missing", -32604, "Method not enabled");
    ASSERT_CLASS(TG_RPC_NODE, "limit", -32005,
                 "daily request count exceeded, request rate limited");
    ASSERT_CLASS(TG_RPC_NODE, "limit", 429,
                 "Your app has exceeded its compute units per second capacity");
    ASSERT_CLASS(TG_RPC_NODE, "limit", -32000, "Too Many Requests");
    ASSERT_CLASS(TG_RPC_NODE, "timeout", -32002, "request timed out");
    ASSERT_CLASS(TG_RPC_NODE, "timeout", -32000, "execution aborted (timeout = 5s)");
    ASSERT_CLASS(TG_RPC_NODE, "timeout", -32603, "Timeout expired");
    ASSERT_CLASS(TG_RPC_NODE, "internal", -32603, "method handler crashed");
    ASSERT_CLASS(TG_RPC_CALLER, "invalid_params", -32602,
                 "invalid argument 0: hex string without 0x prefix");
    ASSERT_CLASS(TG_RPC_CALLER, "invalid_params", -32602, "Invalid params");
    ASSERT_CLASS(TG_RPC_CALLER, "funds", -32000,
                 "insufficient funds for gas * price + value: address 0x1 have 0 want 1");
    ASSERT_CLASS(TG_RPC_CALLER, "funds", -32004, "Upfront cost exceeds account balance");
    ASSERT_CLASS(TG_RPC_CALLER, "nonce", -32000, "nonce too low: address 0x1, tx: 1 state: 2");
    ASSERT_CLASS(TG_RPC_CALLER, "nonce", -32001, "Nonce too low");
    ASSERT_CLASS(TG_RPC_CALLER, "underpriced", -32000, "replacement transaction underpriced");
    ASSERT_CLASS(TG_RPC_CALLER, "underpriced", -32000, "transaction underpriced");
    ASSERT_CLASS(TG_RPC_CALLER, "underpriced", -32010, "FeeTooLow");
    ASSERT_CLASS(TG_RPC_CALLER, "gas", -32000, "intrinsic gas too low: have 1, want 21000");
    ASSERT_CLASS(TG_RPC_CALLER, "gas", -32000, "gas required exceeds allowance (30000000)");
    ASSERT_CLASS(TG_RPC_CALLER, "gas", -32005, "Transaction gas limit exceeds block gas limit");
    ASSERT_CLASS(TG_RPC_CALLER, "fee", -32000,
                 "max fee per gas less than block base fee: address 0x1, maxFeePerGas: 1, "
                 "baseFee: 2");
    ASSERT_CLASS(TG_RPC_CALLER, "too_large", -32005,
                 "Requested range exceeds maximum RPC range limit");
    ASSERT_CLASS(TG_RPC_KNOWN, "already_known", -32000, "already known");
    ASSERT_CLASS(TG_RPC_KNOWN, "already_known", -32000, "ALREADY_EXISTS: already known");
    ASSERT_CLASS(TG_RPC_KNOWN, "already_known", -32000, "Known transaction");
    ASSERT_CLASS(TG_RPC_KNOWN, "already_known", -32010, "AlreadyKnown");
    ASSERT_CLASS(TG_RPC_KNOWN, "already_known", -32003, "transaction already imported");

    /* Words only match at a word's start. */
    ASSERT_CLASS(TG_RPC_CALLER, "other", -32000, "moderate limit reached");
    ASSERT_CLASS(TG_RPC_CALLER, "other", -32000, "unknown transaction");
    /* The method name a caller chose cannot pass for a known transaction. */
    ASSERT_CLASS(TG_RPC_NODE, "method_missing", -32601,
                 "the method already known does not exist/is not available");
    /* Unknown errors are the caller's. */
    ASSERT_CLASS(TG_RPC_CALLER, "other", -32000, "invalid sender");
    ASSERT_CLASS(TG_RPC_CALLER, "other", -32000, "");
    ASSERT_CLASS(TG_RPC_CALLER, "other", 0, "something odd");
    /* Escaped messages are unescaped first. */
    ASSERT_CLASS(TG_RPC_NODE, "missing_block", -32000, "header\\u0020not found");
    ASSERT_CLASS(TG_RPC_NODE, "limit", -32000, "\\\"rate limit\\\" exceeded");
    ASSERT_CLASS(TG_RPC_CALLER, "other", -32000, "\\ud800 header not found");

    /* No message: the code decides. */
    {
        struct tg_rpc_reply rep;
        size_t num;
        bool batch;
        static const char body[] = "{\"id\":1,\"error\":{\"code\":-32601}}";

        ASSERT_EQ(0, tg_rpc_scan_replies(body, sizeof(body) - 1, &rep, 1, &num, &batch));
        ASSERT_EQ(TG_RPC_NODE, tg_rpc_classify(body, &rep).verdict);
        rep.has_error = false;
        ASSERT_STREQ("other", tg_rpc_classify(body, &rep).kind);
    }
}

TEST(test_classify_long_message)
{
    size_t n = 3000;
    char *msg = malloc(n + 32);

    /* Patterns are looked for in the first 1 KiB only. */
    memset(msg, 'x', n);
    memcpy(msg + 500, " header not found ", 18);
    msg[n] = '\0';
    ASSERT_CLASS(TG_RPC_NODE, "missing_block", -32000, msg);
    memset(msg, 'x', n);
    memcpy(msg + 2000, " header not found ", 18);
    ASSERT_CLASS(TG_RPC_CALLER, "other", -32000, msg);
    free(msg);
}

int main(void)
{
    tg_rpc_tokens_init(&tk, 4096);
    RUN(test_single);
    RUN(test_notification);
    RUN(test_batch);
    RUN(test_invalid_items);
    RUN(test_top_level);
    RUN(test_parse_errors);
    RUN(test_batch_limits);
    RUN(test_deep_nesting);
    RUN(test_max_tokens);
    RUN(test_method_match);
    RUN(test_params);
    RUN(test_replies);
    RUN(test_reply_codes);
    RUN(test_replies_not_shaped);
    RUN(test_reply_large);
    RUN(test_classify_rules);
    RUN(test_classify_real);
    RUN(test_classify_long_message);
    tg_rpc_tokens_free(&tk);
    return unit_report();
}
