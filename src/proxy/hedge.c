/*
 * Hedged requests (route hedge: { after, max }): when the node asked first has not answered
 * after `after` (or the service's p95 latency), the same request goes to another node, and the
 * first response head to arrive wins; the other attempts are closed. Only for requests that may
 * be sent twice (idempotent method or route) and that tollgate holds whole. Each hedge takes one
 * retry from the service's budget, so hedging cannot double the load of a slow fleet.
 *
 * A hedge composes the request for its node into a buffer of its own and waits for a complete
 * response head on its own connection. Winning means becoming the transaction's attempt: its
 * connection and buffer move into the transaction and the head is parsed there as if the node
 * had been asked first. A hedge that loses is not a failure of its node; one whose connection
 * fails is.
 */
#include <string.h>

#include "core/core.h"
#include "proxy/proxy.h"

/* hedge.after: p95 before the service has this many answers on the worker: a fixed delay */
#define TG_HEDGE_MIN_SAMPLES 100
#define TG_HEDGE_DEFAULT_MS  250

static tg_msec_t tg__hedge_delay(const struct tg_txn *t)
{
    const struct tg_hist_dur *h = t->conn->worker->metrics.services[t->svc->label];
    uint64_t total = 0, acc = 0;

    if (!t->route->hedge_p95)
        return t->route->hedge_after;
    if (h == NULL)
        return TG_HEDGE_DEFAULT_MS;
    for (size_t b = 0; b <= TG_DUR_BUCKETS; b++)
        total += h->bucket[b];
    if (total < TG_HEDGE_MIN_SAMPLES)
        return TG_HEDGE_DEFAULT_MS;
    for (size_t b = 0; b < TG_DUR_BUCKETS; b++) {
        acc += h->bucket[b];
        if (acc * 100 >= total * 95)
            return tg_dur_bounds_us[b] >= 1000 ? tg_dur_bounds_us[b] / 1000 : 1;
    }
    return tg_dur_bounds_us[TG_DUR_BUCKETS - 1] / 1000;
}

static void tg__hedge_remove(struct tg_txn *t, struct tg_hedge *h)
{
    for (size_t i = 0; i < t->num_hedges; i++) {
        if (t->hedges[i] == h) {
            memmove(&t->hedges[i], &t->hedges[i + 1],
                    (t->num_hedges - i - 1) * sizeof(t->hedges[0]));
            t->num_hedges--;
            return;
        }
    }
}

static struct tg_node *tg__hedge_node(const struct tg_hedge *h)
{
    return h->txn->svc->members[h->member].node;
}

static void tg__hedge_free(struct tg_hedge *h)
{
    if (h->up != NULL) {
        h->up->hedge = NULL;
        tg_upconn_close(h->up);
    }
    free(h->buf);
    free(h);
}

void tg_hedge_failed(struct tg_hedge *h, const char *why)
{
    struct tg_txn *t = h->txn;
    struct tg_worker *w = t->conn->worker;
    struct tg_node *n = tg__hedge_node(h);
    struct tg_node_worker *nw = &n->w[w->id];

    tg__hedge_remove(t, h);
    nw->in_flight--;
    nw->requests++;
    nw->errors++;
    tg_node_set_error(n, "%s", why);
    tg_node_report(t->svc, n, false, h->trial, tg_loop_now_us(w->loop), NULL);
    w->stats.hedges[TG_HEDGE_FAILED]++;
    tg__hedge_free(h);
}

void tg_hedge_cancel_all(struct tg_txn *t)
{
    while (t->num_hedges > 0) {
        struct tg_hedge *h = t->hedges[--t->num_hedges];

        tg_txn_attempt_abandoned(t, tg__hedge_node(h));
        t->conn->worker->stats.hedges[TG_HEDGE_LOST]++;
        tg__hedge_free(h);
    }
}

/* The hedge becomes the transaction's attempt; the caller has ended the previous one. */
static void tg__hedge_promote(struct tg_hedge *h)
{
    struct tg_txn *t = h->txn;

    tg__hedge_remove(t, h);
    t->up = h->up;
    t->up->hedge = NULL;
    t->node = tg__hedge_node(h);
    t->member = h->member;
    t->trial = h->trial;
    t->up_start_us = h->start_us;
    t->up_status = 0;
    t->sent = true;
    t->res_out.off = t->res_out.cnt = 0;
    free(t->hedge_buf);
    t->hedge_buf = h->buf; /* the unsent rest, if any, is written from here */
    t->req_out.off = t->req_out.cnt = 0;
    if (h->off < h->len) {
        t->req_out.iov[t->req_out.cnt++] = (struct iovec){h->buf + h->off, h->len - h->off};
        t->req_state = TG_REQ_HEAD;
    } else {
        t->req_state = TG_REQ_DONE;
    }
    t->conn->worker->stats.hedges[TG_HEDGE_WON]++;
    free(h);
}

bool tg_hedge_take_over(struct tg_txn *t)
{
    if (t->num_hedges == 0)
        return false;
    tg__hedge_promote(t->hedges[0]);
    if (t->up->state == TG_UP_READY)
        tg_txn_run(t);
    return true;
}

/* A complete response head from the hedge's node: it answered first. */
static void tg__hedge_won(struct tg_hedge *h)
{
    struct tg_txn *t = h->txn;

    if (t->up != NULL) {
        tg_txn_attempt_abandoned(t, t->node);
        tg_upconn_close(t->up);
        t->up = NULL;
    }
    tg__hedge_promote(h);
    tg_txn_head_arrived(t);
}

void tg_hedge_event(struct tg_hedge *h)
{
    struct tg_txn *t = h->txn;
    struct tg_upconn *u = h->up;
    struct tg_buf *in;
    ssize_t n;

    while (h->off < h->len) {
        struct iovec iov = {h->buf + h->off, h->len - h->off};

        if (!u->sock.writable)
            return;
        n = tg_sock_writev(&u->sock, &iov, 1);
        if (n == TG_AGAIN)
            return;
        if (n < 0) {
            tg_hedge_failed(h, "connection reset");
            return;
        }
        h->off += (size_t)n;
        if (h->off == h->len)
            tg_upconn_arm(u, t->svc->conf->response_timeout);
    }
    if (!u->sock.readable && !tg_sock_pending(&u->sock))
        return;
    if (u->in == NULL)
        u->in = tg_buf_get(&t->conn->worker->bufs);
    in = u->in;
    if (tg_buf_room(in) == 0) {
        tg_hedge_failed(h, "the response head is too large");
        return;
    }
    n = tg_sock_read(&u->sock, in->base + in->end, tg_buf_room(in));
    if (n == TG_AGAIN)
        return;
    if (n <= 0) {
        tg_hedge_failed(h, "closed the connection before answering");
        return;
    }
    in->end += (size_t)n;
    for (;;) {
        /* parsed only to know the head is complete; the winner's head is parsed again into
         * t->res, whose header array is free while no response is relayed */
        struct tg_h1_response tmp = {.headers = t->res.headers};

        n = tg_h1_parse_response(in->base + in->start, tg_buf_len(in), &tmp, &t->rt->h1,
                                 t->head_request);
        if (n == TG_H1_INCOMPLETE)
            return;
        if (n == TG_H1_INVALID || tmp.status == 101) {
            tg_hedge_failed(h, "invalid response");
            return;
        }
        if (tmp.status >= 200)
            break;
        in->start += (size_t)n;
    }
    tg__hedge_won(h);
}

static void tg__hedge_start(struct tg_txn *t)
{
    struct tg_worker *w = t->conn->worker;
    struct tg_service *svc = t->svc;
    struct tg_hedge *h;
    struct tg_node *n;
    struct iovec *iov;
    int cnt, m, err = 0;
    size_t len = 0;

    t->pick.now_us = tg_loop_now_us(w->loop);
    m = tg_balance_pick(svc, &t->pick);
    if (m < 0 || !tg_retry_budget_take(t)) {
        w->stats.hedges[TG_HEDGE_SKIPPED]++;
        return;
    }
    n = svc->members[m].node;
    if (tg_txn_compose_for(t, n, &iov, &cnt) != 0) {
        w->stats.hedges[TG_HEDGE_SKIPPED]++;
        return;
    }
    t->pick.tried[m >> 6] |= 1ull << (m & 63);
    t->hedges_sent++;
    t->retried = true; /* the copy of the first head kept for a stale-connection retry is gone */
    h = tg_calloc(1, sizeof(*h));
    for (int i = 0; i < cnt; i++)
        len += iov[i].iov_len;
    h->buf = tg_malloc(len);
    for (int i = 0; i < cnt; i++) {
        memcpy(h->buf + h->len, iov[i].iov_base, iov[i].iov_len);
        h->len += iov[i].iov_len;
    }
    t->req_out.off = t->req_out.cnt; /* the first attempt's request is sent already */
    h->txn = t;
    h->member = m;
    h->trial = t->pick.trial;
    h->start_us = t->pick.now_us;
    t->hedges[t->num_hedges++] = h;
    n->w[w->id].in_flight++;
    w->stats.upstream_requests++;
    h->up = tg_upconn_get(w, n, &err);
    if (h->up == NULL) {
        tg_hedge_failed(h, "cannot connect");
        return;
    }
    h->up->txn = t;
    h->up->hedge = h;
    if (h->up->state == TG_UP_READY)
        tg_hedge_event(h);
}

static void tg__hedge_on_timer(struct tg_loop *loop, struct tg_timer *timer)
{
    struct tg_txn *t = TG_CONTAINER_OF(timer, struct tg_txn, retry_timer);

    if (t->up == NULL || t->res_state != TG_RES_WAIT || t->local_reply ||
        t->num_hedges >= TG_MAX_HEDGES)
        return;
    if (t->req_state != TG_REQ_DONE) { /* still sending: look again later */
        tg_timer_arm(loop, &t->retry_timer, tg__hedge_delay(t), tg__hedge_on_timer);
        return;
    }
    /* the next hedge is armed first: starting this one may end the transaction */
    if (t->hedges_sent + 1u < t->route->hedge_max)
        tg_timer_arm(loop, &t->retry_timer, tg__hedge_delay(t), tg__hedge_on_timer);
    tg_txn_step(t, tg__hedge_start);
}

void tg_hedge_arm(struct tg_txn *t)
{
    if (t->route->hedge_after == 0 || !t->replay || t->attempts != 1 ||
        !(tg_method_idempotent(t->req.method_id) || t->route->idempotent))
        return;
    tg_timer_arm(t->conn->worker->loop, &t->retry_timer, tg__hedge_delay(t), tg__hedge_on_timer);
}
