/*
 * Fuzzes the JSON-RPC request parser and the reply scanner with the same input: every offset
 * they hand out stays inside the input, the calls they accept are well-formed, the two agree
 * on what is strict JSON, and jsmn never disagrees with the strict scanner. Each reply with an
 * error is classified, and each valid call goes through the parameter look-ups.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jsonrpc/jsonrpc.h"

#define MAX_BATCH   64
#define MAX_TOKENS  2048
#define MAX_REPLIES 8

static void check(int cond)
{
    if (!cond)
        abort();
}

static void check_span(size_t size, uint32_t off, uint32_t len)
{
    check((size_t)off + len <= size);
}

static void check_call(const char *body, size_t size, const struct tg_rpc_call *c)
{
    static const char *const words[] = {"latest", "pending", "", "\xf0\x9f\x98\x80"};
    char m[256];
    uint32_t off, len;

    check_span(size, c->off, c->len);
    check_span(size, c->method_off, c->method_len);
    check_span(size, c->id_off, c->id_len);
    check_span(size, c->params_off, c->params_len);
    check(c->len > 0);
    if (c->error != 0) {
        check(c->error == TG_RPC_INVALID_REQUEST && c->why != NULL);
        check(c->id_kind != TG_RPC_ID_ABSENT);
        return;
    }
    check(body[c->off] == '{' && body[c->off + c->len - 1] == '}');
    check(c->method_len > 0 && memchr(body + c->method_off, '\\', c->method_len) == NULL);
    check((c->id_kind == TG_RPC_ID_ABSENT) == (c->id_len == 0));
    check(c->id_kind != TG_RPC_ID_STRING || body[c->id_off] == '"');
    check(c->params_len == 0 || body[c->params_off] == '[' || body[c->params_off] == '{');
    /* A method matches itself as a pattern, '*' included; and "*" matches everything. */
    if (c->method_len < sizeof(m) && memchr(body + c->method_off, '\0', c->method_len) == NULL) {
        memcpy(m, body + c->method_off, c->method_len);
        m[c->method_len] = '\0';
        check(tg_rpc_method_match(m, body + c->method_off, c->method_len));
    }
    check(tg_rpc_method_match("*", body + c->method_off, c->method_len));
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        (void)tg_rpc_params_mention(body, c, words[i]);
    for (unsigned i = 0; i < 4; i++) {
        if (!tg_rpc_param_string(body, c, i, &off, &len))
            continue;
        check(off > c->params_off && (size_t)off + len < (size_t)c->params_off + c->params_len);
        check(body[off - 1] == '"' && body[off + len] == '"');
    }
}

/* Parses body with max_batch; returns the result after checking the envelope. */
static int run_parse(struct tg_rpc_tokens *tk, const char *body, size_t size, size_t max_batch,
                     struct tg_rpc_envelope *env)
{
    int rc = tg_rpc_parse(tk, body, size, max_batch, env);

    check(rc == 0 || rc == TG_RPC_PARSE_ERROR || rc == TG_RPC_INVALID_REQUEST ||
          rc == TG_RPC_BATCH_TOO_LARGE);
    check(env->num <= max_batch || (!env->batch && env->num == 1));
    if (rc != 0) {
        check(env->num == 0 && env->calls[0].why != NULL);
        check(strcmp(env->calls[0].why, "JSON tokenizers disagree") != 0);
        return rc;
    }
    check(env->num >= 1 && (env->batch || env->num == 1));
    for (uint32_t i = 0; i < env->num; i++)
        check_call(body, size, &env->calls[i]);
    return rc;
}

static int run_replies(const char *body, size_t size)
{
    struct tg_rpc_reply out[MAX_REPLIES];
    size_t num;
    bool batch;
    int rc = tg_rpc_scan_replies(body, size, out, MAX_REPLIES, &num, &batch);

    check(rc == 0 || rc == -1);
    check(num <= MAX_REPLIES && (rc == 0 || num == 0));
    check(rc != 0 || batch || num == 1);
    for (size_t i = 0; rc == 0 && i < num; i++) {
        const struct tg_rpc_reply *r = &out[i];

        check_span(size, r->off, r->len);
        check_span(size, r->id_off, r->id_len);
        check_span(size, r->result_off, r->result_len);
        check_span(size, r->msg_off, r->msg_len);
        check(body[r->off] == '{' && body[r->off + r->len - 1] == '}');
        check(r->has_error != (r->result_len > 0));
        if (r->has_error) {
            struct tg_rpc_class cl = tg_rpc_classify(body, r);

            check(cl.verdict <= TG_RPC_KNOWN && cl.kind != NULL);
        }
    }
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct tg_rpc_tokens tk;
    static struct tg_rpc_call calls[MAX_BATCH];
    struct tg_rpc_envelope env = {.calls = calls};
    char *body = malloc(size ? size : 1); /* exact size: ASan sees any overread */
    int rc, rc1, rr;

    if (tk.max == 0)
        tg_rpc_tokens_init(&tk, MAX_TOKENS);
    memcpy(body, data, size);
    rc = run_parse(&tk, body, size, MAX_BATCH, &env);
    if (rc == 0 && env.batch) {
        uint32_t n = env.num;

        rc1 = run_parse(&tk, body, size, 1, &env);
        check(rc1 == (n > 1 ? TG_RPC_BATCH_TOO_LARGE : 0));
    }
    rr = run_replies(body, size);
    /* Strict JSON for the reply scanner is strict JSON for the request parser, unless it is
     * too deep or too large for a request. */
    if (rr == 0 && rc == TG_RPC_PARSE_ERROR) {
        (void)run_parse(&tk, body, size, MAX_BATCH, &env);
        check(strcmp(calls[0].why, "JSON nested too deep") == 0 ||
              strcmp(calls[0].why, "JSON too complex") == 0);
    }
    free(body);
    return 0;
}
