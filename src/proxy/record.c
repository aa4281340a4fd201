/*
 * The record phase (DESIGN §2): when a transaction ends, its outcome goes into the worker's
 * metrics, its node's counters and, when sampled, the access log. Everything here is per worker
 * and runs once per request, so it stays allocation-free and makes no system call.
 */
#include <string.h>

#include "core/core.h"
#include "obs/accesslog.h"
#include "proxy/proxy.h"

/* Requests that ended before any response byte was written: the client went away (nginx's 499). */
#define TG_STATUS_CLIENT_CLOSED 499

static uint64_t tg__xorshift(uint64_t *s)
{
    uint64_t x = *s;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void tg__txn_log(struct tg_txn *t, unsigned status, uint64_t dur_us, uint64_t bytes_in)
{
    struct tg_conn *c = t->conn;
    struct tg_worker *w = c->worker;
    struct tg_access_entry e = {
        .ts_ms = (int64_t)tg_loop_wall_ms(w->loop),
        .request_id = t->request_id,
        .request_id_len = t->request_id_len,
        .trace_id = t->has_trace ? t->trace_id : NULL,
        .route = t->route ? t->route->name : NULL,
        .method = t->req.method.base,
        .method_len = t->req.method.len,
        .host = t->req.host.base,
        .host_len = t->req.host.len,
        /* with a credential in the path or query, the path as forwarded (the key cut out) */
        .path = t->route && t->route->auth && t->path_len ? t->scratch : t->req.path.base,
        .path_len = t->route && t->route->auth && t->path_len ? t->path_len : t->req.path.len,
        .status = (int)status,
        .bytes_in = bytes_in,
        .bytes_out = t->bytes_out,
        .duration_us = dur_us,
        .upstream = t->up_start_us ? tg_label_name(TG_LABEL_NODE, t->node->label) : NULL,
        .upstream_us = t->up_start_us ? (int64_t)(t->up_end_us - t->up_start_us) : -1,
    };
    const char *peer = tg_conn_peer_text(c);

    if (peer != NULL) {
        e.client = peer;
        e.client_len = c->peer_text_len;
    }
    tg_access_log(w->access, &e);
}

void tg_txn_record(struct tg_txn *t)
{
    struct tg_worker *w = t->conn->worker;
    struct tg_runtime *rt = t->rt;
    uint64_t now = tg_loop_now_us(w->loop);
    uint64_t dur = now - t->start_us;
    uint64_t bytes_in = t->head_len + t->req_body_bytes;
    /* nothing reached the client: whatever the node said, the client did not get it */
    unsigned status = t->bytes_out > 0 ? (unsigned)t->status : TG_STATUS_CLIENT_CLOSED;
    uint32_t route = t->route ? rt->route_labels[t->route - rt->cf->routes] : TG_LABEL_NONE;

    tg_metrics_request(&w->metrics, route, t->req.method_id, status, dur, bytes_in, t->bytes_out);
    tg_txn_attempt_done(t);
    if (w->access != NULL && rt->cf->access_log &&
        (status >= 400 || dur >= rt->access_slow_us || rt->access_sample == UINT64_MAX ||
         tg__xorshift(&w->sample_state) < rt->access_sample))
        tg__txn_log(t, status, dur, bytes_in);
}
