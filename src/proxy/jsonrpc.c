/*
 * JSON-RPC routes (issue 6): the request phase between "body read" and "forward", and the
 * response phase between "node answered" and "client gets it".
 *
 * A request to a route whose service is kind: jsonrpc is read whole (jsonrpc.max_body) and
 * parsed (jsonrpc/envelope.c). Each call is checked against the route's and the caller's plan's
 * method policies; calls refused or invalid are answered here. The others are grouped by the
 * service they go to (jsonrpc.routes, else the route's service); their compute units (the target
 * service's weights) are charged to the route's limits in one go. A group is sent as the client's
 * bytes when it is the whole request, else as a composed body of its calls.
 *
 * The node's answer is read whole too, and classified (jsonrpc/classify.c): an error that means
 * "this node cannot answer" (rate limited, missing state, method missing...) fails the attempt
 * like a 503 would, so the request goes to another node when the retry policy and the budget
 * allow and the calls may be sent twice (no write among them). The client gets the node's bytes
 * untouched when nothing was answered here, else an array rebuilt in the client's order.
 *
 * Each group is sent as a leg (jsonrpc_txn.h): one leg by the transaction itself, several at once
 * by child transactions (fanout.c). Every leg goes through the attempt machinery, so it has the
 * service's retries, timeouts, pools and health accounting.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/keys.h"
#include "auth/keystore.h"
#include "core/core.h"
#include "core/hex.h"
#include "core/keccak.h"
#include "core/sbuf.h"
#include "jsonrpc/jsonrpc.h"
#include "proxy/jsonrpc_txn.h"
#include "proxy/proxy.h"

#define TG_RPC_MAX_TOKENS (1u << 20)
#define TG_RPC_METHOD_MAX 128

/* Methods that change state: sent to one node, never twice. */
static const char *const tg__writes[] = {"eth_sendRawTransaction", "eth_sendTransaction",
                                         "eth_sendRawTransactionConditional", "eth_sendBundle",
                                         NULL};

static void tg__rpc_arrays_free(struct tg_rpc_txn *r)
{
    free(r->hit);
    free(r->ckey_off);
    free(r->ckey_len);
    free(r->how);
    free(r->calls);
    free(r->local);
    free(r->why);
    free(r->group);
    free(r->replies);
    free(r->span);
}

static struct tg_rpc_txn *tg__rpc_get(struct tg_worker *w, uint32_t want)
{
    struct tg_rpc_txn *r = w->free_rpc;

    if (r != NULL)
        w->free_rpc = r->next_free;
    else
        r = tg_calloc(1, sizeof(*r));
    if (r->cap < want) {
        tg__rpc_arrays_free(r);
        r->cap = want;
        r->calls = tg_malloc(want * sizeof(*r->calls));
        r->local = tg_malloc(want * sizeof(*r->local));
        r->why = tg_malloc(want * sizeof(*r->why));
        r->group = tg_malloc(want * sizeof(*r->group));
        r->replies = tg_malloc(want * sizeof(*r->replies));
        r->span = tg_malloc(want * sizeof(*r->span));
        r->hit = tg_calloc(want, sizeof(*r->hit));
        r->ckey_off = tg_malloc(want * sizeof(*r->ckey_off));
        r->ckey_len = tg_calloc(want, sizeof(*r->ckey_len));
        r->how = tg_malloc(want * sizeof(*r->how));
    }
    r->env.calls = r->calls;
    r->num_groups = r->num_legs = r->running = r->writes = 0;
    r->whole = r->head = r->starting = r->to_store = false;
    r->fwd.len = r->out.len = r->keys.len = 0;
    return r;
}

void tg_rpc_txn_free(struct tg_txn *t)
{
    struct tg_rpc_txn *r = t->rpc;

    if (r == NULL)
        return;
    t->rpc = NULL;
    tg_wsrpc_free(r->ws);
    r->ws = NULL;
    tg_rpc_cache_release(r);
    for (size_t k = 0; k < r->num_legs; k++) {
        struct tg_rpc_leg *l = &r->legs[k];

        if (l->txn != NULL && l->txn != t) /* the client left before this leg ended */
            tg_txn_free(l->txn);
        l->txn = NULL;
        /* buffers grown by a large reply are not kept for the next request */
        if (l->got.cap > TG_BUF_SIZE)
            tg_sbuf_dispose(&l->got);
    }
    if (r->out.cap > TG_BUF_SIZE)
        tg_sbuf_dispose(&r->out);
    if (r->fwd.cap > TG_BUF_SIZE)
        tg_sbuf_dispose(&r->fwd);
    r->next_free = t->conn->worker->free_rpc;
    t->conn->worker->free_rpc = r;
}

void tg_rpc_worker_dispose(struct tg_worker *w)
{
    while (w->free_rpc != NULL) {
        struct tg_rpc_txn *r = w->free_rpc;

        w->free_rpc = r->next_free;
        for (size_t k = 0; k < TG_RPC_MAX_LEGS; k++)
            tg_sbuf_dispose(&r->legs[k].got);
        tg_sbuf_dispose(&r->out);
        tg_sbuf_dispose(&r->fwd);
        tg_sbuf_dispose(&r->keys);
        tg__rpc_arrays_free(r);
        free(r);
    }
    if (w->rpc_tokens != NULL) {
        tg_rpc_tokens_free(w->rpc_tokens);
        free(w->rpc_tokens);
        w->rpc_tokens = NULL;
    }
}

/* -- policies ------------------------------------------------------------------------------- */

static bool tg__listed(const struct tg_str_list *l, const char *m, size_t len)
{
    for (size_t i = 0; i < l->num; i++)
        if (tg_rpc_method_match(l->items[i], m, len))
            return true;
    return false;
}

static bool tg__allowed(const struct tg_method_policy *p, const char *m, size_t len)
{
    return (p->allow.num == 0 || tg__listed(&p->allow, m, len)) && !tg__listed(&p->deny, m, len);
}

/* The method class of a call: the index of its weight pattern, or num_weights ("other"). */
static size_t tg__class(const struct tg_service_conf *sc, const char *m, size_t len)
{
    size_t i = 0;

    while (i < sc->rpc.num_weights && !tg_rpc_method_match(sc->rpc.weights[i].pattern, m, len))
        i++;
    return i;
}

/* Label ids of error kinds, interned once: the classify table's and tollgate's own. */
static const char *const tg__own_kinds[] = {"parse_error", "invalid_request", "method_not_allowed",
                                            "bad_reply", "http_error"};
static const char **tg__kind_names;
static uint32_t *tg__kind_ids;
static size_t tg__num_kinds;
static pthread_once_t tg__kinds_once = PTHREAD_ONCE_INIT;

static void tg__kinds_init(void)
{
    size_t cap = tg_rpc_num_error_rules + TG_ARRAY_SIZE(tg__own_kinds) + 1;

    tg__kind_names = tg_calloc(cap, sizeof(*tg__kind_names));
    tg__kind_ids = tg_calloc(cap, sizeof(*tg__kind_ids));
    for (size_t i = 0; i < cap - 1; i++) {
        const char *k = i < TG_ARRAY_SIZE(tg__own_kinds)
                            ? tg__own_kinds[i]
                            : tg_rpc_error_rules[i - TG_ARRAY_SIZE(tg__own_kinds)].kind;
        size_t j = 0;

        while (j < tg__num_kinds && strcmp(tg__kind_names[j], k) != 0)
            j++;
        if (j < tg__num_kinds)
            continue;
        tg__kind_names[tg__num_kinds] = k;
        tg__kind_ids[tg__num_kinds++] = tg_label_intern(TG_LABEL_RPC, k, 0);
    }
}

static void tg__count_error(struct tg_txn *t, const struct tg_service *svc, const char *kind)
{
    size_t j = 0;

    pthread_once(&tg__kinds_once, tg__kinds_init);
    while (j < tg__num_kinds && strcmp(tg__kind_names[j], kind) != 0)
        j++;
    tg_metrics_rpc(&t->conn->worker->metrics, TG_POLICY_RPC_ERRORS, svc->label,
                   j < tg__num_kinds ? tg__kind_ids[j] : TG_LABEL_OTHER);
}

static bool tg__is(const char *m, size_t len, const char *name)
{
    return strlen(name) == len && memcmp(m, name, len) == 0;
}

static bool tg__is_write(const char *m, size_t len)
{
    for (size_t i = 0; tg__writes[i] != NULL; i++)
        if (tg__is(m, len, tg__writes[i]))
            return true;
    return false;
}

/* The service a method goes to: the first jsonrpc.routes entry naming it, else the route's. */
static const struct tg_service_conf *tg__target(const struct tg_route_conf *route, const char *m,
                                                size_t len)
{
    for (size_t i = 0; i < route->rpc->num_routes; i++)
        if (tg__listed(&route->rpc->routes[i].methods, m, len))
            return route->rpc->routes[i].svc;
    return route->svc;
}

/* -- answers made here ---------------------------------------------------------------------- */

static void tg__error_obj(struct tg_sbuf *b, const char *id, size_t id_len, int code,
                          const char *msg)
{
    tg_sbuf_add(b, "{\"jsonrpc\":\"2.0\",\"id\":", 22);
    if (id_len > 0)
        tg_sbuf_add(b, id, id_len);
    else
        tg_sbuf_add(b, "null", 4);
    tg_sbuf_printf(b, ",\"error\":{\"code\":%d,\"message\":", code);
    tg_sbuf_json(b, msg, strlen(msg));
    tg_sbuf_add(b, "}}", 2);
}

static const char *tg__id(const struct tg_rpc_txn *r, const struct tg_rpc_call *c, size_t *len)
{
    *len = c->id_kind == TG_RPC_ID_ABSENT ? 0 : c->id_len;
    return r->body + c->id_off;
}

/* A whole-request error (parse error, invalid request, batch too large): one error object. */
static void tg__reply_one(struct tg_txn *t, int status, int code, const char *msg)
{
    struct tg_rpc_txn *r = t->rpc;
    size_t id_len = 0;
    const char *id = NULL;

    if (!r->env.batch && r->env.num == 1)
        id = tg__id(r, &r->calls[0], &id_len);
    r->out.len = 0;
    tg__error_obj(&r->out, id, id_len, code, msg);
    tg_txn_reply(t, status, r->out.base, r->out.len);
}

/* -- the request ---------------------------------------------------------------------------- */

/* Sorts each valid call: answered here, or into the group of its service. Returns the compute
 * units of the calls that go to a node. */
static uint64_t tg__sort_calls(struct tg_txn *t, bool one_service)
{
    struct tg_rpc_txn *r = t->rpc;
    const struct tg_route_conf *route = t->route;
    const struct tg_config *cf = t->rt->cf;
    uint64_t units = 0;

    for (uint32_t i = 0; i < r->env.num; i++) {
        const struct tg_rpc_call *c = &r->calls[i];
        const char *m = r->body + c->method_off;
        const struct tg_service_conf *sc;
        struct tg_service *svc;
        size_t k;
        uint8_t g;

        r->local[i] = c->error;
        r->why[i] = c->why;
        r->hit[i] = NULL;
        r->ckey_len[i] = 0;
        if (c->error != 0) {
            tg__count_error(t, t->svc, "invalid_request");
            continue;
        }
        if (c->method_len > TG_RPC_METHOD_MAX || memchr(m, '\\', c->method_len) != NULL ||
            !tg__allowed(&route->rpc->methods, m, c->method_len) ||
            (t->caller_plan != TG_NO_PLAN &&
             !tg__allowed(&cf->plans[t->caller_plan].methods, m, c->method_len))) {
            r->local[i] = TG_RPC_METHOD_NOT_FOUND;
            r->why[i] = "method not allowed";
            tg__count_error(t, t->svc, "method_not_allowed");
            continue;
        }
        sc = tg__target(route, m, c->method_len);
        if (one_service && sc != route->svc) {
            /* a WebSocket reaches one node of the route's service, not the other services */
            r->local[i] = TG_RPC_METHOD_NOT_FOUND;
            r->why[i] = "method not available over WebSocket";
            tg__count_error(t, t->svc, "method_not_allowed");
            continue;
        }
        svc = tg_upstreams_service(&t->rt->up, sc);
        k = tg__class(sc, m, c->method_len);
        units += route->cost != 0          ? route->cost
                 : k < sc->rpc.num_weights ? sc->rpc.weights[k].units
                                           : sc->rpc.default_weight;
        if (route->cache != NULL && !one_service && tg_rpc_cache_lookup(t, i, svc))
            continue; /* answered from the cache: charged, not sent */
        tg_metrics_rpc(&t->conn->worker->metrics, TG_POLICY_RPC_CALLS, svc->label,
                       svc->rpc_classes[k]);
        for (g = 0; g < r->num_groups && r->groups[g] != svc; g++)
            ;
        if (g == r->num_groups)
            r->groups[r->num_groups++] = svc;
        r->group[i] = g;
        if (tg__is_write(m, c->method_len))
            r->writes |= (uint8_t)(1u << g);
    }
    return units;
}

/* The body of every group: the client's bytes when one group is the whole request, else an
 * array of the group's calls. */
static void tg__compose_groups(struct tg_rpc_txn *r)
{
    size_t off[TG_RPC_MAX_GROUPS];

    r->fwd.len = 0;
    if (r->whole) {
        r->send[0] = tg_str_make(r->body, r->len);
        return;
    }
    for (uint8_t g = 0; g < r->num_groups; g++) {
        bool first = true;

        off[g] = r->fwd.len;
        tg_sbuf_add(&r->fwd, "[", 1);
        for (uint32_t i = 0; i < r->env.num; i++) {
            if (r->local[i] != 0 || r->group[i] != g)
                continue;
            if (!first)
                tg_sbuf_add(&r->fwd, ",", 1);
            tg_sbuf_add(&r->fwd, r->body + r->calls[i].off, r->calls[i].len);
            first = false;
        }
        tg_sbuf_add(&r->fwd, "]", 1);
    }
    for (uint8_t g = 0; g < r->num_groups; g++)
        r->send[g] = tg_str_make(r->fwd.base + off[g],
                                 (g + 1 < r->num_groups ? off[g + 1] : r->fwd.len) - off[g]);
}

/* One leg per group; a write group of a service with jsonrpc.broadcast gets one per node, up
 * to the service's nodes and the room left. */
static void tg__plan_legs(struct tg_rpc_txn *r)
{
    r->num_legs = 0;
    for (uint8_t g = 0; g < r->num_groups; g++) {
        const struct tg_service *svc = r->groups[g];
        uint32_t copies = r->writes >> g & 1 ? svc->conf->rpc.broadcast : 1;
        uint32_t room = TG_RPC_MAX_LEGS - r->num_legs - (r->num_groups - g - 1u);

        copies = TG_MIN(copies, TG_MIN(room, TG_MAX((uint32_t)svc->num_nodes, 1u)));
        r->answer[g] = -1;
        r->failed[g] = NULL;
        for (uint32_t c = 0; c < copies; c++) {
            struct tg_rpc_leg *l = &r->legs[r->num_legs++];

            l->txn = NULL;
            l->got.len = 0;
            l->status = 0;
            l->group = g;
            l->state = TG_LEG_RUNNING;
            l->clean = l->linger = false;
        }
    }
}

/* The transaction's JSON-RPC state and the worker's tokenizer, made on first use. */
static struct tg_rpc_txn *tg__rpc_prepare(struct tg_txn *t)
{
    struct tg_worker *w = t->conn->worker;

    if (w->rpc_tokens == NULL) {
        w->rpc_tokens = tg_calloc(1, sizeof(*w->rpc_tokens));
        tg_rpc_tokens_init(w->rpc_tokens, TG_RPC_MAX_TOKENS);
    }
    if (t->rpc == NULL)
        t->rpc = tg__rpc_get(w, t->route->rpc->max_batch);
    return t->rpc;
}

struct tg_wsrpc **tg_rpc_ws(struct tg_txn *t)
{
    if (t->rpc == NULL)
        t->rpc = tg__rpc_get(t->conn->worker, t->route->rpc->max_batch);
    return &t->rpc->ws;
}

struct tg_str tg_rpc_body(const struct tg_txn *t)
{
    return t->rpc->send[t->rpc->legs[t->rpc_leg].group];
}

const char *tg_rpc_keep_caller(struct tg_txn *t, const char *name, size_t len)
{
    if (t->rpc == NULL)
        t->rpc = tg__rpc_get(t->conn->worker, t->route->rpc->max_batch);
    memcpy(t->rpc->caller, name, TG_MIN(len, sizeof(t->rpc->caller)));
    return t->rpc->caller;
}

void tg_rpc_begin(struct tg_txn *t)
{
    struct tg_worker *w = t->conn->worker;
    struct tg_buf *in = t->conn->in;
    const struct tg_rpc_route_conf *rc = t->route->rpc;
    struct tg_rpc_txn *r;
    uint32_t forwarded = 0;
    uint64_t units;
    int rc_parse;

    r = tg__rpc_prepare(t);
    r->body = in->base + in->start + t->head_len;
    r->len = (size_t)t->req.content_length;
    rc_parse = tg_rpc_parse(w->rpc_tokens, r->body, r->len, rc->max_batch, &r->env);
    if (rc_parse != 0)
        tg__count_error(t, t->svc,
                        rc_parse == TG_RPC_PARSE_ERROR ? "parse_error" : "invalid_request");
    else
        tg_metrics_rpc_batch(&w->metrics, r->env.num);
    if (rc_parse == TG_RPC_BATCH_TOO_LARGE) {
        r->env.num = 0;
        tg__reply_one(t, 200, TG_RPC_INVALID_REQUEST, "the batch has more calls than allowed");
        return;
    }
    if (rc_parse != 0) {
        if (rc_parse == TG_RPC_PARSE_ERROR)
            r->env.num = 0;
        tg__reply_one(
            t, 200, rc_parse,
            rc_parse == TG_RPC_PARSE_ERROR
                ? "parse error"
                : (r->env.num == 1 && r->calls[0].why ? r->calls[0].why : "invalid request"));
        return;
    }
    units = tg__sort_calls(t, false);
    for (uint32_t i = 0; i < r->env.num; i++)
        forwarded += r->local[i] == 0;
    if (forwarded == 0) {
        tg_rpc_answer(t);
        return;
    }
    if (!tg_txn_limits(t, units, true))
        return;
    r->whole = r->num_groups == 1 && forwarded == r->env.num;
    r->head = !r->env.batch &&
              tg__is(r->body + r->calls[0].method_off, r->calls[0].method_len, "eth_blockNumber");
    tg__compose_groups(r);
    tg__plan_legs(r);
    if (r->num_legs > 1) {
        tg_rpc_fan_out(t);
        return;
    }
    r->legs[0].txn = t;
    r->running = 1;
    t->rpc_leg = 0;
    t->rpc_idempotent = !(r->writes & 1);
    tg_txn_attempt_on(t, r->groups[0], NULL);
}

/* -- the reply ------------------------------------------------------------------------------ */

void tg_rpc_collect_reset(struct tg_txn *t)
{
    t->rpc->legs[t->rpc_leg].got.len = 0;
}

int tg_rpc_collect(struct tg_txn *t, const char *p, size_t n)
{
    struct tg_sbuf *b = &t->rpc->legs[t->rpc_leg].got;

    if (b->len + n > t->route->rpc->max_response)
        return -1;
    tg_sbuf_add(b, p, n);
    return 0;
}

/* An eth_blockNumber answer lower than one the service gave before: the node is behind. */
static bool tg__head_behind(struct tg_txn *t, const struct tg_rpc_reply *rep, const char *body)
{
    uint64_t n, seen;

    if (rep->result_len < 2 || body[rep->result_off] != '"' ||
        !tg_hex_quantity(body + rep->result_off + 1, rep->result_len - 2, &n))
        return false;
    seen = atomic_load_explicit(&t->svc->rpc_head, memory_order_relaxed);
    while (n > seen && !atomic_compare_exchange_weak_explicit(
                           &t->svc->rpc_head, &seen, n, memory_order_relaxed, memory_order_relaxed))
        ;
    return n < seen;
}

/*
 * The current leg's reply is complete. Returns false when the attempt is to be failed (the
 * node cannot answer: another node is tried when allowed), with a reason in *why.
 */
bool tg_rpc_reply_ok(struct tg_txn *t, const char **why)
{
    struct tg_rpc_txn *r = t->rpc;
    struct tg_rpc_leg *l = &r->legs[t->rpc_leg];
    const struct tg_sbuf *b = &l->got;
    size_t num = 0;
    bool batch;

    t->rpc_no_blame = false;
    l->clean = true;
    if (t->up_status >= 500 || t->up_status == 429) {
        tg__count_error(t, t->svc, "http_error");
        *why = "answered an HTTP error";
        return false;
    }
    if (tg_rpc_scan_replies(b->base, b->len, r->replies, r->cap, &num, &batch) != 0) {
        tg__count_error(t, t->svc, "bad_reply");
        *why = "sent a reply that is not JSON-RPC";
        return false;
    }
    for (size_t i = 0; i < num; i++) {
        struct tg_rpc_class k;

        if (!r->replies[i].has_error) {
            if (r->head && !batch && tg__head_behind(t, &r->replies[i], b->base)) {
                *why = "answered eth_blockNumber behind the service's head";
                return false;
            }
            continue;
        }
        k = tg_rpc_classify(b->base, &r->replies[i]);
        tg__count_error(t, t->svc, k.kind);
        if (k.verdict == TG_RPC_KNOWN)
            r->whole = false; /* the answer is rebuilt with the transaction's hash */
        else
            l->clean = false;
        if (k.verdict == TG_RPC_NODE) {
            /* A caller can make every node say these (a made-up method, a future block):
             * another node is asked, but the node's health does not pay for it. */
            t->rpc_no_blame = strcmp(k.kind, "method_missing") == 0 ||
                              strcmp(k.kind, "missing_block") == 0 ||
                              strcmp(k.kind, "missing_state") == 0;
            *why = k.kind;
            return false;
        }
    }
    return true;
}

/* Finds the reply to call i among the replies of its group (by id; by position for a group of
 * one). NULL when the node gave none. */
static const struct tg_rpc_reply *tg__match(struct tg_rpc_txn *r, uint32_t i,
                                            const struct tg_rpc_reply *reps, size_t num,
                                            const char *body)
{
    const struct tg_rpc_call *c = &r->calls[i];

    for (size_t k = 0; k < num; k++)
        if (reps[k].id_len == c->id_len &&
            memcmp(body + reps[k].id_off, r->body + c->id_off, c->id_len) == 0)
            return &reps[k];
    return num == 1 ? &reps[0] : NULL;
}

/* "already known" to a raw transaction: the node has it, so the caller gets its hash, computed
 * from the raw bytes as a node would. False when the call is not such a write. */
static bool tg__known_tx(struct tg_rpc_txn *r, uint32_t i, const char *body,
                         const struct tg_rpc_reply *rep)
{
    const struct tg_rpc_call *c = &r->calls[i];
    uint8_t hash[32];
    uint32_t off, len;
    char hex[67] = "0x";

    if (!rep->has_error || tg_rpc_classify(body, rep).verdict != TG_RPC_KNOWN ||
        !tg__is(r->body + c->method_off, c->method_len, "eth_sendRawTransaction") ||
        !tg_rpc_param_string(r->body, c, 0, &off, &len) ||
        tg_keccak256_hex(r->body + off, len, hash) != 0)
        return false;
    tg_hex_bytes(hex + 2, hash, sizeof(hash));
    tg_sbuf_add(&r->out, "{\"jsonrpc\":\"2.0\",\"id\":", 22);
    tg_sbuf_add(&r->out, r->body + c->id_off, c->id_len);
    tg_sbuf_printf(&r->out, ",\"result\":\"%.66s\"}", hex);
    return true;
}

/* The reply body answering group g, NULL when the group has none. */
static const struct tg_sbuf *tg__answer(const struct tg_rpc_txn *r, uint8_t g)
{
    return r->answer[g] >= 0 ? &r->legs[r->answer[g]].got : NULL;
}

/* Finds each forwarded call's reply in its group's answer (each answer scanned once). */
void tg_rpc_match_all(struct tg_rpc_txn *r)
{
    for (uint8_t g = 0; g < r->num_groups; g++) {
        const struct tg_sbuf *b = tg__answer(r, g);
        size_t num = 0;
        bool batch;

        if (b == NULL ||
            tg_rpc_scan_replies(b->base, b->len, r->replies, r->cap, &num, &batch) != 0)
            num = 0;
        for (uint32_t i = 0; i < r->env.num; i++) {
            const struct tg_rpc_reply *rep;

            if (r->local[i] != 0 || r->group[i] != g)
                continue;
            rep = num > 0 ? tg__match(r, i, r->replies, num, b->base) : NULL;
            r->span[i] = rep != NULL ? *rep : (struct tg_rpc_reply){.len = 0};
        }
    }
}

/* Rebuilds the answer in the client's order from local errors and every group's replies. */
static void tg__rebuild(struct tg_txn *t)
{
    struct tg_rpc_txn *r = t->rpc;
    bool first = true;

    tg_rpc_match_all(r);
    r->out.len = 0;
    if (r->env.batch)
        tg_sbuf_add(&r->out, "[", 1);
    for (uint32_t i = 0; i < r->env.num; i++) {
        const struct tg_rpc_call *c = &r->calls[i];
        size_t id_len;
        const char *id = tg__id(r, c, &id_len);
        const struct tg_rpc_reply *rep = &r->span[i];
        const struct tg_sbuf *b;

        if (c->id_kind == TG_RPC_ID_ABSENT && c->error == 0)
            continue; /* a notification gets no answer */
        if (!first)
            tg_sbuf_add(&r->out, ",", 1);
        first = false;
        if (r->local[i] == TG_RPC_CACHED) {
            tg_sbuf_add(&r->out, "{\"jsonrpc\":\"2.0\",\"id\":", 22);
            tg_sbuf_add(&r->out, id, id_len);
            tg_sbuf_add(&r->out, ",\"result\":", 10);
            tg_sbuf_add(&r->out, r->hit[i]->body, r->hit[i]->body_len);
            tg_sbuf_add(&r->out, "}", 1);
            continue;
        }
        if (r->local[i] != 0) {
            tg__error_obj(&r->out, id, id_len, r->local[i], r->why[i]);
            continue;
        }
        b = tg__answer(r, r->group[i]);
        if (b == NULL) {
            tg__error_obj(&r->out, id, id_len, TG_RPC_INTERNAL_ERROR,
                          r->failed[r->group[i]] ? r->failed[r->group[i]] : "no node answered");
        } else if (rep->len == 0) {
            int status = r->legs[r->answer[r->group[i]]].status;
            char msg[40];

            snprintf(msg, sizeof(msg), "the node answered HTTP %d", status);
            tg__error_obj(&r->out, id, id_len, TG_RPC_INTERNAL_ERROR,
                          status >= 300 ? msg : "the node gave no answer");
        } else if (!tg__known_tx(r, i, b->base, rep)) {
            tg_sbuf_add(&r->out, b->base + rep->off, rep->len);
        }
    }
    if (r->env.batch)
        tg_sbuf_add(&r->out, "]", 1);
}

void tg_rpc_answer(struct tg_txn *t)
{
    struct tg_rpc_txn *r = t->rpc;

    if (r->to_store)
        tg_rpc_cache_store(t);
    if (r->num_groups == 1 && r->answer[0] < 0) { /* every leg failed: as a single node would */
        tg_txn_respond_error(t, 502, "upstream_unavailable",
                             r->failed[0] ? r->failed[0] : "no node answered");
        return;
    }
    if (r->whole) {
        const struct tg_rpc_leg *l = &r->legs[r->answer[0]];

        tg_txn_reply(t, l->status ? l->status : 200, l->got.base, l->got.len);
        return;
    }
    tg__rebuild(t);
    if (r->out.len == 0) { /* only notifications: nothing to say */
        tg_txn_reply(t, 204, NULL, 0);
        return;
    }
    tg_txn_reply(t, 200, r->out.base, r->out.len);
}

void tg_rpc_leg_done(struct tg_txn *t, bool accepted)
{
    struct tg_rpc_txn *r = t->rpc;
    struct tg_rpc_leg *l = &r->legs[t->rpc_leg];
    bool copies = tg_rpc_leg_copies(r, t->rpc_leg);

    l->status = t->up_status;
    if (t->parent != NULL) {
        tg_txn_attempt_done(t); /* the client's transaction accounts its own when recorded */
        t->up_start_us = 0;
        t = t->parent;
    }
    /* a broadcast write is a success only with a result: an error of the caller's (nonce too
     * low...) from one node waits for the others */
    tg_rpc_leg_end(t, (uint8_t)(l - r->legs),
                   accepted && (l->clean || !copies) ? TG_LEG_OK : TG_LEG_KEPT, NULL);
}

bool tg_rpc_leg_failed(struct tg_txn *t, const char *msg)
{
    if (t->rpc == NULL || t->parent == NULL)
        return false; /* the client's transaction: its usual error answer */
    tg_rpc_leg_end(t->parent, t->rpc_leg, TG_LEG_FAILED, msg);
    return true;
}

/* Maps an HTTP status of tollgate's own answer to a JSON-RPC error code. */
int tg_rpc_status_code(int status)
{
    switch (status) {
    case 401:
    case 403:
        return -32001;
    case 429:
        return -32005;
    case 413:
    case 400:
    case 405:
    case 411:
        return TG_RPC_INVALID_REQUEST;
    default:
        return TG_RPC_INTERNAL_ERROR;
    }
}

/* The id of the request, for tollgate's own error answers on JSON-RPC routes ("null" when the
 * body was not read or not a single call). */
const char *tg_rpc_request_id(const struct tg_txn *t, size_t *len)
{
    const struct tg_rpc_txn *r = t->rpc;

    if (r == NULL || r->env.batch || r->env.num != 1 || r->calls[0].id_kind == TG_RPC_ID_ABSENT) {
        *len = 4;
        return "null";
    }
    *len = r->calls[0].id_len;
    return r->body + r->calls[0].id_off;
}

/* The local errors of a message's refused calls: an array for a batch, else one object. */
static void tg__local_errors(struct tg_rpc_txn *r, struct tg_sbuf *out)
{
    bool first = true;

    if (r->env.batch)
        tg_sbuf_add(out, "[", 1);
    for (uint32_t i = 0; i < r->env.num; i++) {
        size_t id_len;
        const char *id = tg__id(r, &r->calls[i], &id_len);

        if (r->local[i] == 0 || (r->calls[i].id_kind == TG_RPC_ID_ABSENT && r->calls[i].error == 0))
            continue;
        if (!first)
            tg_sbuf_add(out, ",", 1);
        first = false;
        tg__error_obj(out, id, id_len, r->local[i], r->why[i]);
    }
    if (r->env.batch)
        tg_sbuf_add(out, "]", 1);
    if (first)
        out->len = 0; /* only notifications were refused: nothing to say */
}

int tg_rpc_ws_message(struct tg_txn *t, const char *msg, size_t len, struct tg_sbuf *local,
                      struct tg_sbuf *fwd)
{
    struct tg_worker *w = t->conn->worker;
    const struct tg_rpc_route_conf *rc = t->route->rpc;
    struct tg_rpc_txn *r;
    uint32_t forwarded = 0;
    uint64_t units;
    int rc_parse;
    bool first = true;

    r = tg__rpc_prepare(t);
    r->body = msg;
    r->len = len;
    r->num_groups = r->writes = 0;
    local->len = fwd->len = 0;
    rc_parse = tg_rpc_parse(w->rpc_tokens, msg, len, rc->max_batch, &r->env);
    if (rc_parse != 0) {
        size_t id_len = 0;
        const char *id = NULL;

        tg__count_error(t, t->svc,
                        rc_parse == TG_RPC_PARSE_ERROR ? "parse_error" : "invalid_request");
        if (rc_parse != TG_RPC_PARSE_ERROR && !r->env.batch && r->env.num == 1)
            id = tg__id(r, &r->calls[0], &id_len);
        tg__error_obj(local, id, id_len,
                      rc_parse == TG_RPC_BATCH_TOO_LARGE ? TG_RPC_INVALID_REQUEST : rc_parse,
                      rc_parse == TG_RPC_PARSE_ERROR       ? "parse error"
                      : rc_parse == TG_RPC_BATCH_TOO_LARGE ? "the batch has more calls than allowed"
                                                           : "invalid request");
        return TG_RPC_WS_LOCAL;
    }
    tg_metrics_rpc_batch(&w->metrics, r->env.num);
    units = tg__sort_calls(t, true);
    for (uint32_t i = 0; i < r->env.num; i++)
        forwarded += r->local[i] == 0;
    if (forwarded > 0 && !tg_txn_limits(t, units, false)) {
        for (uint32_t i = 0; i < r->env.num; i++) {
            if (r->local[i] == 0) {
                r->local[i] = -32005;
                r->why[i] = "rate limited";
            }
        }
        forwarded = 0;
    }
    tg__local_errors(r, local);
    if (forwarded == r->env.num)
        return TG_RPC_WS_FORWARD;
    if (forwarded == 0)
        return TG_RPC_WS_LOCAL;
    tg_sbuf_add(fwd, "[", 1);
    for (uint32_t i = 0; i < r->env.num; i++) {
        if (r->local[i] != 0)
            continue;
        if (!first)
            tg_sbuf_add(fwd, ",", 1);
        first = false;
        tg_sbuf_add(fwd, msg + r->calls[i].off, r->calls[i].len);
    }
    tg_sbuf_add(fwd, "]", 1);
    return TG_RPC_WS_SPLIT;
}
