/*
 * A transaction: forwards one request to a node and its response back (DESIGN §2, §9.12-9.14).
 *
 * The request head goes out in a single writev: the rewritten request line, the client's header
 * lines untouched (hop-by-hop ones skipped by leaving them out of the iovec), the headers tollgate
 * adds, and whatever body bytes already sit in the buffer. The response head comes back the same
 * way. Bodies then stream through the connection buffers with backpressure: a side is read only
 * when what was read before has been written, so memory does not depend on body size.
 *
 * tg_txn_run() is the single driver: every readiness event of either socket calls it, and it
 * makes every step that is possible until none is. It returns as soon as the transaction is
 * finished, because finishing may free the transaction and the client connection.
 *
 * This file has the request side (routing, composing, sending, attempts and retries); the
 * response side is in response.c.
 */
#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#include "core/core.h"
#include "core/hash.h"
#include "core/str.h"
#include "obs/trace.h"
#include "proxy/proxy.h"

static void tg__txn_buffer_body(struct tg_txn *t);
static void tg__txn_buffer_chunked(struct tg_txn *t);

/* A transaction of conn c running on the snapshot rt, its arrays sized by rt's limits. */
static struct tg_txn *tg__txn_alloc(struct tg_conn *c, struct tg_runtime *rt)
{
    struct tg_worker *w = c->worker;
    size_t nh = rt->cf->limits.max_headers;
    size_t scratch = 2 * rt->cf->limits.max_request_line + 4096;
    size_t iovs = nh + 8;
    struct tg_txn *t = w->free_txns;
    char *p;

    if (t != NULL && (t->alloc_headers < nh || t->scratch_cap < scratch)) {
        w->free_txns = t->next_free;
        free(t);
        t = NULL;
    }
    if (t != NULL) {
        w->free_txns = t->next_free;
        nh = t->alloc_headers;
        scratch = t->scratch_cap;
    } else {
        t = tg_malloc(sizeof(*t) + 2 * nh * sizeof(struct tg_http_header) +
                      2 * iovs * sizeof(struct iovec) + scratch);
        t->alloc_headers = nh;
        t->scratch_cap = scratch;
    }
    memset(t, 0, offsetof(struct tg_txn, alloc_headers));
    p = (char *)(t + 1);
    t->req.headers = (struct tg_http_header *)p;
    t->res.headers = t->req.headers + nh;
    t->req_out.iov = (struct iovec *)(t->res.headers + nh);
    t->res_out.iov = t->req_out.iov + iovs;
    t->scratch = (char *)(t->res_out.iov + iovs);
    t->iov_max = iovs;
    t->conn = c;
    t->rt = rt;
    rt->users[w->id].n++;
    t->up_reusable = true;
    t->start_us = tg_loop_now_us(w->loop);
    return t;
}

struct tg_txn *tg_txn_new(struct tg_conn *c)
{
    return tg__txn_alloc(c, c->worker->rt);
}

struct tg_txn *tg_txn_leg(struct tg_txn *t)
{
    struct tg_txn *k = tg__txn_alloc(t->conn, t->rt);
    struct tg_http_header *res_headers = k->res.headers;

    k->parent = t;
    k->rpc = t->rpc;
    k->route = t->route;
    k->req = t->req; /* its header array is the parent's, read only */
    k->res.headers = res_headers;
    k->head_len = t->head_len;
    k->keep_in = t->keep_in; /* the body is held whole: sending it leaves conn->in as it is */
    k->req_state = TG_REQ_DONE;
    k->replay = true;
    k->path_len = t->path_len;
    memcpy(k->scratch, t->scratch, t->path_len);
    k->cred_header = t->cred_header;
    k->caller_plan = t->caller_plan;
    k->request_id_len = t->request_id_len;
    memcpy(k->request_id, t->request_id, t->request_id_len);
    k->has_trace = t->has_trace;
    k->trace_new = t->trace_new;
    k->trace_drop = t->trace_drop;
    memcpy(k->trace_id, t->trace_id, sizeof(k->trace_id));
    memcpy(k->traceparent, t->traceparent, sizeof(k->traceparent));
    return k;
}

void tg_txn_free(struct tg_txn *t)
{
    struct tg_worker *w = t->conn->worker;

    tg_timer_disarm(&t->retry_timer);
    if (t->num_hedges != 0)
        tg_hedge_cancel_all(t);
    if (t->hedge_buf != NULL) {
        free(t->hedge_buf);
        t->hedge_buf = NULL;
    }
    if (t->up != NULL) {
        tg_upconn_close(t->up);
        t->up = NULL;
    }
    if (t->admitted || t->queued)
        tg_admission_leave(t);
    if (t->started && !t->conn->internal)
        tg_txn_record(t);
    else if (t->started)
        tg_txn_attempt_done(t); /* tollgate's own request: its node's accounting only */
    if (t->rpc != NULL && t->parent == NULL)
        tg_rpc_txn_free(t);
    if (t->cache != NULL)
        tg_cache_txn_free(t);
    if (t->tunnel) {
        w->stats.ws_closed++;
        w->stats.ws_bytes_in += t->req_body_bytes;
        w->stats.ws_bytes_out += t->bytes_out;
    }
    tg_worker_runtime_done(w, t->rt);
    if (t->parent != NULL) {
        /* A leg may end inside its own event handler, which then looks at it once more: it
         * stays inert (nothing to write, nothing to read) until the batch of events ends. */
        if (t->up_start_us != 0)
            tg_txn_attempt_abandoned(t, t->node);
        t->up_start_us = 0;
        t->local_reply = true;
        t->res_end = false;
        t->next_free = w->dead_txns;
        w->dead_txns = t;
        return;
    }
    t->next_free = w->free_txns;
    w->free_txns = t;
}

const char *tg_conn_peer_text(struct tg_conn *c)
{
    const struct in6_addr *a = &c->peer.sin6_addr;

    if (c->peer_text_len == 0 && c->peer.sin6_family == AF_INET6) {
        if (IN6_IS_ADDR_V4MAPPED(a))
            inet_ntop(AF_INET, &a->s6_addr[12], c->peer_text, sizeof(c->peer_text));
        else
            inet_ntop(AF_INET6, a, c->peer_text, sizeof(c->peer_text));
        c->peer_text_len = (uint8_t)strlen(c->peer_text);
    }
    return c->peer_text_len ? c->peer_text : NULL;
}

/* A fresh connection replaces a pooled one that the node had closed before our request reached
 * it: the same attempt on the same node, not a retry. Only for requests held whole (no body, or
 * a buffered one) that may be repeated. */
static bool tg__txn_stale_retry(struct tg_txn *t)
{
    struct tg_worker *w = t->conn->worker;
    struct tg_upconn *u = t->up;
    int err = 0;

    if (u == NULL || !u->reused || t->retried || !t->replay ||
        !(tg_method_idempotent(t->req.method_id) || t->route->idempotent || t->rpc_idempotent) ||
        t->res_state != TG_RES_WAIT || (u->in != NULL && tg_buf_len(u->in) > 0))
        return false;
    tg_upconn_close(u);
    t->up = NULL;
    t->retried = true;
    u = tg_upconn_get(w, t->node, &err);
    if (u == NULL)
        return false;
    /* The composed head is intact in the scratch space and the client buffer; only the iovecs
     * were advanced by the failed write, so restore them from the copy kept in res_out (unused
     * until a response arrives). */
    memcpy(t->req_out.iov, t->res_out.iov, (size_t)t->req_out.cnt * sizeof(struct iovec));
    t->req_out.off = 0;
    t->up = u;
    u->txn = t;
    t->req_state = TG_REQ_HEAD;
    return true;
}

void tg_txn_run(struct tg_txn *t)
{
    struct tg_conn *c = t->conn;

    if (t->tunnel) {
        tg_tunnel_run(t);
        return;
    }
    if (t->buffering) {
        tg__txn_buffer_body(t);
        return;
    }
    if (t->queued && c->sock.hup) {
        tg_conn_abort(c); /* the client left while waiting for a slot: its place goes too */
        return;
    }
    for (;;) {
        bool progress = false;
        struct tg_upconn *u;

        if (c->dead)
            return;
        /* Pending output goes first: the node is read only once what was read before is
         * written (backpressure), below. */
        if ((t->res_out.off < t->res_out.cnt || (t->res_end && t->res_state != TG_RES_DONE)) &&
            tg_txn_flush_pending(t))
            return;
        if (t->local_reply)
            return;
        u = t->up;
        if (u != NULL && u->state == TG_UP_READY) {
            if (t->req_state != TG_REQ_DONE && (u->sock.writable || t->req_state == TG_REQ_BODY))
                progress |= tg_txn_send(t);
            if (c->dead || t->local_reply || t->up == NULL)
                continue;
            if (t->res_out.off == t->res_out.cnt && !t->res_end &&
                (u->sock.readable || tg_sock_pending(&u->sock))) {
                progress |= tg_txn_recv(t);
                if (t->res_end && t->up_end_us == 0)
                    t->up_end_us = tg_loop_now_us(c->worker->loop);
            }
        }
        if (!progress && (t->res_out.off == t->res_out.cnt || !c->sock.writable))
            return;
    }
}

static uint64_t tg__txn_hash_key(const struct tg_txn *t)
{
    const struct tg_service_conf *sc = t->svc->conf;

    if (sc->hash_on == TG_HASH_PATH) {
        const char *q = memchr(t->scratch, '?', t->path_len);
        return tg_hash64(t->scratch, q ? (size_t)(q - t->scratch) : t->path_len, 0);
    }
    if (sc->hash_on == TG_HASH_HEADER) {
        size_t len = strlen(sc->hash_header);

        for (size_t i = 0; i < t->req.num_headers; i++) {
            const struct tg_http_header *h = &t->req.headers[i];

            if (h->name.len == len && strncasecmp(h->name.base, sc->hash_header, len) == 0)
                return tg_hash64(h->value.base, h->value.len, 0);
        }
    }
    /* client_ip, and requests without the header */
    return tg_hash64(&t->conn->peer.sin6_addr, sizeof(t->conn->peer.sin6_addr), 0);
}

static void tg__txn_prepare_pick(struct tg_txn *t)
{
    struct tg_worker *w = t->conn->worker;
    const struct tg_service_conf *sc = t->svc->conf;

    t->pick.worker = w->id;
    t->member = -1;
    if (sc->retry.attempts > 1 || t->route->hedge_after != 0) /* both spend the budget */
        tg_retry_note_request(t->svc, w->id, tg_loop_now_us(w->loop));
    if (sc->balance == TG_BALANCE_CONSISTENT_HASH)
        t->pick.key = tg__txn_hash_key(t);
}

static void tg__rebase(struct tg_str *s, uintptr_t from, size_t len, char *to)
{
    uintptr_t at = (uintptr_t)s->base;

    if (s->base != NULL && at >= from && at < from + len)
        s->base = to + (at - from);
}

/* Makes conn->in big enough to hold the whole request (keep_in bytes from its start); the
 * parsed head points into it, so those pointers follow when the buffer moves. */
void tg_txn_hold_room(struct tg_txn *t)
{
    struct tg_conn *c = t->conn;
    uintptr_t from = (uintptr_t)c->in->base;
    size_t len = c->in->cap;

    if (c->in->start + t->keep_in <= c->in->cap)
        return;
    c->in = tg_buf_grow(c->in, c->in->start + t->keep_in);
    tg__rebase(&t->req.method, from, len, c->in->base);
    tg__rebase(&t->req.target, from, len, c->in->base);
    tg__rebase(&t->req.host, from, len, c->in->base);
    tg__rebase(&t->req.path, from, len, c->in->base);
    for (size_t i = 0; i < t->req.num_headers; i++) {
        tg__rebase(&t->req.headers[i].name, from, len, c->in->base);
        tg__rebase(&t->req.headers[i].value, from, len, c->in->base);
    }
}

static void tg__txn_attempt(struct tg_txn *t, const struct tg_route_captures *caps);

/* The body is whole in conn->in (or there is none): JSON-RPC routes look at it first. */
static void tg__txn_body_ready(struct tg_txn *t, const struct tg_route_captures *caps)
{
    if (t->route->rpc != NULL)
        tg_rpc_begin(t);
    else
        tg__txn_attempt(t, caps);
}

/* Decodes the chunked body bytes read so far in place: the data decoded so far stays at
 * head_len, req_scanned bytes of it. Returns 1 once the last chunk is in (the bytes after it,
 * a pipelined request, moved up behind the data), 0 when more is to come, -1 for bad framing,
 * -2 when the data passes jsonrpc.max_body. */
static int tg__txn_decode_chunked(struct tg_txn *t)
{
    struct tg_buf *in = t->conn->in;
    char *at = in->base + in->start + t->head_len + t->req_scanned;
    size_t len = (size_t)(in->base + in->end - at), data = 0;
    ssize_t n = tg_h1_chunked_decode(&t->req_chunked, at, len, &data);

    if (n == TG_H1_INVALID)
        return -1;
    if (t->req_chunked.data_bytes > t->route->rpc->max_body)
        return -2;
    t->req_scanned += data;
    if (n == TG_H1_INCOMPLETE) {
        in->end = (size_t)(at + data - in->base);
        return 0;
    }
    memmove(at + data, at + n, len - (size_t)n);
    in->end -= (size_t)n - data;
    return 1;
}

/* Reads more of the client's body into conn->in. Returns true when bytes came; false when there
 * are none yet, or the client left (the connection is aborted then). */
static bool tg__txn_read_body(struct tg_txn *t)
{
    struct tg_conn *c = t->conn;
    struct tg_buf *in = c->in;
    ssize_t n;

    if (!c->sock.readable && !tg_sock_pending(&c->sock))
        return false;
    n = tg_sock_read(&c->sock, in->base + in->end, in->cap - in->end);
    if (n == TG_AGAIN)
        return false;
    if (n <= 0) {
        tg_conn_abort(c);
        return false;
    }
    in->end += (size_t)n;
    tg_conn_arm(c, t->rt->cf->limits.body_timeout);
    return true;
}

/* The whole body is in conn->in: the first attempt (or the JSON-RPC checks) may start. */
static void tg__txn_body_held(struct tg_txn *t)
{
    t->buffering = false;
    t->req_state = TG_REQ_DONE; /* all of it is here: an answer now keeps the connection */
    tg_timer_disarm(&t->conn->timer);
    tg__txn_body_ready(t, NULL);
}

/* Reads a chunked JSON-RPC body whole, decoded, into conn->in: from then on it is held like a
 * body sent with a Content-Length (the node gets one). The buffer doubles as the data grows,
 * up to jsonrpc.max_body. */
static void tg__txn_buffer_chunked(struct tg_txn *t)
{
    struct tg_conn *c = t->conn;
    int rc;

    while ((rc = tg__txn_decode_chunked(t)) == 0) {
        if (c->in->end == c->in->cap) {
            t->keep_in = 2 * (c->in->end - c->in->start);
            tg_txn_hold_room(t);
        }
        if (!tg__txn_read_body(t))
            return;
    }
    if (rc < 0) {
        t->buffering = false;
        c->worker->stats.rejected_bad_request += rc == -1;
        c->worker->stats.rejected_body_too_large += rc == -2;
        if (rc == -1)
            tg_txn_respond_error(t, 400, "bad_request", "invalid chunked request body");
        else
            tg_txn_respond_error(t, 413, "body_too_large",
                                 "the JSON-RPC body exceeds the route's jsonrpc.max_body");
        return;
    }
    t->req.body_kind = TG_BODY_LENGTH;
    t->req.content_length = t->req_scanned;
    t->keep_in = t->head_len + t->req_scanned;
    t->req_scanned = 0;
    tg__txn_body_held(t);
}

/* Reads the rest of a body kept for replay into conn->in, then starts the first attempt. */
static void tg__txn_buffer_body(struct tg_txn *t)
{
    if (t->req.body_kind == TG_BODY_CHUNKED) {
        tg__txn_buffer_chunked(t);
        return;
    }
    while (tg_buf_len(t->conn->in) < t->keep_in)
        if (!tg__txn_read_body(t))
            return;
    tg__txn_body_held(t);
}

/* One attempt: the node picked (t->member, or a fresh pick for the first one), the request
 * composed for it, a connection from the pool or a new one. */
static void tg__txn_attempt(struct tg_txn *t, const struct tg_route_captures *caps)
{
    struct tg_conn *c = t->conn;
    struct tg_worker *w = c->worker;
    struct tg_service *svc = t->svc;
    struct tg_str path = tg_str_make(t->scratch, t->path_len);
    struct tg_route_captures again;
    int err = 0;

    t->pick.now_us = tg_loop_now_us(w->loop);
    if (t->member < 0)
        t->member = tg_balance_pick(svc, &t->pick);
    if (t->member < 0) {
        w->stats.no_usable_node++;
        tg_txn_respond_busy(t, "no_usable_node", "no node of the service can take the request now",
                            1);
        return;
    }
    t->pick.tried[t->member >> 6] |= 1ull << (t->member & 63);
    t->trial = t->pick.trial;
    t->node = svc->members[t->member].node;
    t->attempts++;
    t->sent = false;
    t->up_status = 0;
    t->up_end_us = 0;
    t->up_reusable = true;
    t->res_out.off = t->res_out.cnt = 0;
    t->res_body_out = 0;
    t->res_end = t->res_collect = t->res_decode = t->res_close = false;
    if (caps == NULL) {
        /* a later attempt: the captures of the route match are needed again for rewrites */
        tg_router_match(t->rt->router, t->req.host, path, t->req.method_id, &again);
        caps = &again;
    }
    if (tg_txn_compose_request(t, path, caps) != 0) {
        tg_txn_respond_error(t, 400, "bad_request", "the rewritten request is invalid");
        return;
    }
    if (t->req.body_kind != TG_BODY_NONE && tg_txn_body_iov(t) != 0)
        return;
    if (t->replay)
        memcpy(t->res_out.iov, t->req_out.iov, (size_t)t->req_out.cnt * sizeof(struct iovec));
    t->req_state = TG_REQ_HEAD;
    t->up_start_us = tg_loop_now_us(w->loop);
    t->node->w[w->id].in_flight++;
    w->stats.upstream_requests++;
    t->up = tg_upconn_get(w, t->node, &err);
    if (t->up == NULL) {
        tg_txn_upstream_error(t, TG_FAIL_CONNECT, 502, "upstream_unavailable",
                              "cannot connect to the upstream");
        return;
    }
    t->up->txn = t;
    if (t->route->hedge_after != 0)
        tg_hedge_arm(t);
    if (t->up->state == TG_UP_READY)
        tg_txn_run(t);
}

void tg_txn_attempt_done(struct tg_txn *t)
{
    struct tg_worker *w = t->conn->worker;
    uint64_t now = tg_loop_now_us(w->loop);
    struct tg_node_worker *nw;
    uint64_t up;

    if (t->up_start_us == 0)
        return;
    nw = &t->node->w[w->id];
    if (t->up_end_us == 0)
        t->up_end_us = now;
    up = t->up_end_us - t->up_start_us;
    tg_metrics_upstream(&w->metrics, t->node->label, t->node->svc_label, (unsigned)t->up_status,
                        up);
    nw->in_flight--;
    nw->requests++;
    /* a node that answered is judged by its status; one that had not answered yet when the
     * client left is not judged at all. Judged first: a passed trial makes the node usable
     * again, so its latency below starts a new estimate instead of moving its penalty. */
    if (t->up_status != 0) {
        bool ok = !tg_status_in(&t->svc->conf->health.statuses, t->up_status);

        if (ok) {
            tg_node_report_ok(t->svc, t->node, t->trial, now);
        } else {
            tg_node_set_error(t->node, "answered %d", t->up_status);
            tg_node_report(t->svc, t->node, false, t->trial, now, NULL);
        }
    }
    if (t->up_status == 0 || t->up_status >= 500)
        nw->errors++;
    else
        tg_node_ewma_add(t->node, nw, up, now);
}

void tg_txn_attempt_abandoned(struct tg_txn *t, struct tg_node *n)
{
    struct tg_node_worker *nw = &n->w[t->conn->worker->id];

    nw->in_flight--;
    nw->requests++;
}

/* The current attempt failed: its node's counters, latency penalty and passive health. */
void tg_txn_attempt_failed(struct tg_txn *t, enum tg_fail why, int status, const char *msg)
{
    struct tg_worker *w = t->conn->worker;
    uint64_t now = tg_loop_now_us(w->loop);
    bool node_ok =
        (why == TG_FAIL_STATUS && !tg_status_in(&t->svc->conf->health.statuses, status)) ||
        (why == TG_FAIL_RPC && t->rpc_no_blame);

    if (t->up != NULL) {
        tg_upconn_close(t->up);
        t->up = NULL;
    }
    if (t->up_start_us == 0)
        return;
    {
        struct tg_node_worker *nw = &t->node->w[w->id];

        tg_metrics_upstream(&w->metrics, t->node->label, t->node->svc_label,
                            why == TG_FAIL_STATUS || why == TG_FAIL_RPC ? (unsigned)status : 0,
                            now - t->up_start_us);
        nw->in_flight--;
        nw->requests++;
        if (!node_ok) {
            nw->errors++;
            tg_node_ewma_penalize(nw, now); /* a failing node must not look fast to p2c */
        }
    }
    t->up_start_us = 0;
    if (!node_ok) {
        if (why == TG_FAIL_STATUS)
            tg_node_set_error(t->node, "answered %d", status);
        else
            tg_node_set_error(t->node, "%s", msg);
    }
    tg_node_report(t->svc, t->node, node_ok, t->trial, now, NULL);
}

void tg_txn_step(struct tg_txn *t, void (*step)(struct tg_txn *t))
{
    struct tg_conn *c = t->conn;
    bool outer = c->in_callback;

    c->in_callback = true;
    step(t);
    c->in_callback = outer;
    tg_conn_reap(c);
}

static void tg__txn_next_attempt(struct tg_txn *t)
{
    tg__txn_attempt(t, NULL);
}

static void tg__txn_on_retry(struct tg_loop *loop, struct tg_timer *timer)
{
    (void)loop;
    tg_txn_step(TG_CONTAINER_OF(timer, struct tg_txn, retry_timer), tg__txn_next_attempt);
}

/* Ends a failed attempt and schedules the next one on another node, when retry.on, safety, a
 * node left and the budget all allow. Returns false, changing nothing, when they do not. */
bool tg_txn_retry_elsewhere(struct tg_txn *t, enum tg_fail why, int status, const char *msg)
{
    struct tg_worker *w = t->conn->worker;
    int next;

    if (!tg_retry_wanted(t, why, status))
        return false;
    if (t->num_hedges > 0) { /* a hedge in flight takes over instead of a new attempt */
        tg_txn_attempt_failed(t, why, status, msg);
        return tg_hedge_take_over(t);
    }
    t->pick.now_us = tg_loop_now_us(w->loop);
    next = tg_balance_pick(t->svc, &t->pick);
    if (next < 0 || !tg_retry_budget_take(t))
        return false;
    tg_txn_attempt_failed(t, why, status, msg);
    t->member = next;
    w->stats.retries[why]++;
    tg_timer_arm(w->loop, &t->retry_timer, tg_retry_backoff(t->svc, w->id, t->attempts + 1u),
                 tg__txn_on_retry);
    return true;
}

/* W3C Trace Context: a single valid traceparent is forwarded as it is (with tracestate); an
 * invalid or repeated one is dropped with its tracestate and a new trace starts. */
static void tg__txn_trace_header(struct tg_txn *t, const struct tg_http_header *h)
{
    struct tg_trace tr;

    if (t->has_trace || t->trace_drop || tg_trace_parse(h->value.base, h->value.len, &tr) != 0) {
        t->has_trace = false;
        t->trace_drop = true;
        return;
    }
    memcpy(t->trace_id, tr.trace_id, sizeof(t->trace_id));
    t->has_trace = true;
}

/* The rest of a body held whole is on its way: a 100 Continue when the client waits for one,
 * the body deadline, then whatever can be read now. */
static void tg__txn_await_body(struct tg_txn *t)
{
    struct tg_conn *c = t->conn;

    t->buffering = true;
    t->req_state = TG_REQ_BODY;
    if (t->req.expect_continue && tg_buf_len(c->in) == t->head_len && tg_txn_continue(t) != 0)
        return;
    tg_conn_arm(c, t->rt->cf->limits.body_timeout);
    tg__txn_buffer_body(t);
}

/* Holds the whole body in conn->in before the first attempt: read at once when it is all
 * there, else read by tg__txn_buffer_body(). */
static void tg__txn_hold_body(struct tg_txn *t, const struct tg_route_captures *caps)
{
    struct tg_conn *c = t->conn;

    t->replay = true;
    t->keep_in = t->head_len + t->req.content_length;
    if (tg_buf_len(c->in) >= t->keep_in) {
        t->req_state = TG_REQ_DONE;
        tg__txn_body_ready(t, caps);
        return;
    }
    tg_txn_hold_room(t);
    tg__txn_await_body(t);
}

/* Reads a chunked body whole before the first attempt (JSON-RPC routes). */
static void tg__txn_hold_chunked(struct tg_txn *t)
{
    t->replay = true;
    tg__txn_await_body(t);
}

/* A JSON-RPC route reads a POST body whole, up to jsonrpc.max_body. */
static void tg__txn_rpc_proceed(struct tg_txn *t)
{
    if (t->ws) /* its frames are read in the tunnel (wsrpc.c) */
        tg__txn_attempt(t, NULL);
    else if (t->req.method_id != TG_METHOD_POST)
        tg_txn_respond_error(t, 405, "method_not_allowed", "JSON-RPC calls are POST requests");
    else if (t->req.body_kind == TG_BODY_CHUNKED)
        tg__txn_hold_chunked(t);
    else if (t->req.body_kind != TG_BODY_LENGTH)
        tg_txn_respond_error(t, 411, "length_required",
                             "send the JSON-RPC body with a Content-Length or chunked");
    else if (t->req.content_length > t->route->rpc->max_body)
        tg_txn_respond_error(t, 413, "body_too_large",
                             "the JSON-RPC body exceeds the route's jsonrpc.max_body");
    else
        tg__txn_hold_body(t, NULL);
}

/* An admitted request: a body small enough to replay is read whole first, then the first
 * attempt. caps are the route's captures, NULL to match again (a request resumed later). */
static void tg__txn_proceed(struct tg_txn *t, const struct tg_route_captures *caps)
{
    if (t->route->rpc != NULL) {
        tg__txn_rpc_proceed(t);
        return;
    }
    if (t->req.body_kind == TG_BODY_NONE) {
        t->replay = true;
    } else if (t->req.body_kind == TG_BODY_LENGTH && t->svc->conf->retry.attempts > 1 &&
               t->req.content_length <= t->svc->conf->retry.buffer) {
        /* small enough to keep for a retry: read it whole before the first attempt */
        tg__txn_hold_body(t, caps);
        return;
    }
    tg__txn_attempt(t, caps);
}

void tg_txn_attempt_on(struct tg_txn *t, struct tg_service *svc, const uint64_t *avoid)
{
    t->svc = svc;
    t->member = -1;
    t->attempts = 0;
    t->retried = false;
    t->res_state = TG_RES_WAIT;
    {
        struct tg_http_header *h = t->res.headers;

        memset(&t->res, 0, sizeof(t->res));
        t->res.headers = h;
    }
    memset(&t->pick, 0, sizeof(t->pick));
    tg__txn_prepare_pick(t);
    if (avoid != NULL)
        memcpy(t->pick.tried, avoid, sizeof(t->pick.tried));
    tg__txn_attempt(t, NULL);
}

/* Whether the request asks for a WebSocket: GET, HTTP/1.1, no body, "Upgrade: websocket" named
 * in Connection. Other upgrades (h2c...) are not passed on: the request goes as a plain one. */
static bool tg__txn_wants_ws(const struct tg_txn *t)
{
    if (!t->req.upgrade || t->req.method_id != TG_METHOD_GET || t->req.minor_version != 1 ||
        t->req.body_kind != TG_BODY_NONE)
        return false;
    for (size_t i = 0; i < t->req.num_headers; i++) {
        const struct tg_http_header *h = &t->req.headers[i];

        if (h->id == TG_HDR_UPGRADE && h->value.len == 9 &&
            strncasecmp(h->value.base, "websocket", 9) == 0)
            return true;
    }
    return false;
}

/* Route, check and start forwarding a request whose head was just parsed. */
void tg_txn_start(struct tg_txn *t)
{
    struct tg_conn *c = t->conn;
    struct tg_worker *w = c->worker;
    struct tg_runtime *rt = t->rt;
    struct tg_route_captures caps;
    struct tg_str path;
    ssize_t n;

    /* the header deadline is met; body and send deadlines are armed when they apply */
    tg_timer_disarm(&c->timer);
    w->stats.requests_total++;
    t->started = true;
    t->head_request = t->req.method_id == TG_METHOD_HEAD;
    for (size_t i = 0; i < t->req.num_headers; i++) {
        const struct tg_http_header *h = &t->req.headers[i];
        bool ok = h->id == TG_HDR_X_REQUEST_ID && h->value.len > 0 &&
                  h->value.len < sizeof(t->request_id);

        if (h->id == TG_HDR_TRACEPARENT)
            tg__txn_trace_header(t, h);

        for (size_t j = 0; ok && j < h->value.len; j++) {
            char ch = h->value.base[j];
            ok = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                 ch == '-' || ch == '_' || ch == '.' || ch == ':';
        }
        if (ok) {
            memcpy(t->request_id, h->value.base, h->value.len);
            t->request_id_len = (uint8_t)h->value.len;
        }
    }
    if (!t->has_trace) {
        struct tg_trace tr;

        tg_trace_new(w->trace_state, t->traceparent, &tr);
        memcpy(t->trace_id, tr.trace_id, sizeof(t->trace_id));
        /* a tracestate without a valid traceparent is discarded (W3C Trace Context §3.3) */
        t->trace_new = t->has_trace = t->trace_drop = true;
    }
    if (t->request_id_len == 0 && t->trace_new) {
        /* the trace we start names the request too: one random id, and logs line up */
        memcpy(t->request_id, t->trace_id, sizeof(t->trace_id));
        t->request_id_len = sizeof(t->trace_id);
    } else if (t->request_id_len == 0) {
        tg_worker_request_id(w, t->request_id, &t->request_id_len);
    }
    if (!t->req.keep_alive)
        c->close_after = true;
    if (t->req.body_kind == TG_BODY_NONE)
        t->req_state = TG_REQ_DONE;
    t->ws = tg__txn_wants_ws(t);
    if (t->req.method_id == TG_METHOD_CONNECT || t->req.path.len == 0 ||
        t->req.path.base[0] != '/') {
        tg_txn_respond_error(t, 405, "method_not_allowed", "tollgate does not tunnel");
        return;
    }
    n = tg_http_path_normalize(t->req.path.base, t->req.path.len, t->scratch);
    if (n < 0) {
        w->stats.rejected_bad_request++;
        tg_txn_respond_error(t, 400, "bad_request", "invalid request path");
        return;
    }
    path = tg_str_make(t->scratch, (size_t)n);
    t->route = tg_router_match(rt->router, t->req.host, path, t->req.method_id, &caps);
    if (t->route == NULL) {
        tg_txn_respond_error(t, 404, "no_route", "no route matches this request");
        return;
    }
    t->max_body = t->route->max_body ? t->route->max_body : rt->cf->limits.max_body;
    if (t->req.body_kind == TG_BODY_LENGTH && t->req.content_length > t->max_body) {
        w->stats.rejected_body_too_large++;
        tg_txn_respond_error(t, 413, "body_too_large", "the request body exceeds the limit");
        return;
    }
    t->svc = tg_upstreams_service(&rt->up, t->route->svc);
    t->path_len = (uint16_t)n;
    /* JSON-RPC routes always know the caller's plan: its methods policy applies */
    if ((t->route->auth != NULL || t->route->num_limits > 0 || t->route->rpc != NULL) &&
        !c->internal && !tg_txn_identity(t, &caps))
        return;
    t->req_remaining = t->req.content_length;
    if (t->req.body_kind == TG_BODY_CHUNKED)
        tg_h1_chunked_init(&t->req_chunked, TG_CHUNK_MAX_LINE, TG_CHUNK_MAX_TRAILERS);
    tg__txn_prepare_pick(t);
    if (t->route->cache != NULL && t->route->rpc == NULL && tg_cache_begin(t))
        return;
    if (t->svc->conf->conc_max == 0 || tg_admission_enter(t))
        tg__txn_proceed(t, &caps);
}

void tg_txn_admit(struct tg_txn *t)
{
    if (t->svc->conf->conc_max == 0 || tg_admission_enter(t))
        tg__txn_proceed(t, NULL);
}

void tg_txn_proceed(struct tg_txn *t)
{
    tg__txn_proceed(t, NULL);
}

/* Called by the upstream connection (or the transaction itself) when an attempt fails before
 * its response reached the client. */
void tg_txn_upstream_error(struct tg_txn *t, enum tg_fail why, int status, const char *code,
                           const char *msg)
{
    struct tg_worker_stats *st = &t->conn->worker->stats;

    if (why == TG_FAIL_TIMEOUT)
        st->upstream_timeouts++;
    else if (why == TG_FAIL_BAD)
        st->upstream_bad_responses++;
    else
        st->upstream_connect_errors++;
    if (t->res_state != TG_RES_WAIT || t->local_reply) {
        tg_txn_respond_error(t, status, code, msg); /* too late: closes the client connection */
        return;
    }
    if (why == TG_FAIL_RESET && tg__txn_stale_retry(t))
        return;
    if (tg_txn_retry_elsewhere(t, why, status, msg))
        return;
    tg_txn_attempt_failed(t, why, status, msg);
    if (t->rpc != NULL && tg_rpc_leg_failed(t, msg))
        return;
    if (t->cache != NULL && tg_cache_serve_stale(t))
        return;
    tg_txn_respond_error(t, status, code, msg);
}
