/*
 * WebSocket tunnels (issue 6, DESIGN §9.15): once a node answers a WebSocket upgrade with 101,
 * the transaction becomes a two-way byte pipe between the client and that node, until either
 * side closes, websocket.idle_timeout passes without a byte either way, or the worker drains.
 *
 * The transaction keeps owning both connections, so the usual events reach it (tg_txn_run) and
 * its end is recorded like any request: status 101, the bytes each way, the tunnel's lifetime.
 * Each direction has one buffer and is read only once what was read before is written, so a
 * slow reader holds back the other side instead of filling memory:
 *   client -> node: conn->in, after the request head (which stays for the access log);
 *   node -> client: up->in, after the 101 head once that head is written.
 * On JSON-RPC routes the frames are read (wsrpc.c) instead of passed blindly.
 */
#include <string.h>

#include "core/core.h"
#include "proxy/proxy.h"

int tg_tunnel_flush(struct tg_sock *s, struct tg_iovq *q, uint64_t *counter)
{
    while (q->off < q->cnt) {
        struct iovec *iov = q->iov + q->off;
        int cnt = q->cnt - q->off;
        ssize_t n;

        if (!s->writable)
            return 0;
        n = tg_sock_writev(s, iov, cnt);
        if (n == TG_AGAIN)
            continue; /* writable was cleared: the loop above returns */
        if (n < 0)
            return -1;
        *counter += (size_t)n;
        tg_iov_advance(&iov, &cnt, (size_t)n);
        q->off = q->cnt - cnt;
    }
    return 1;
}

/* Reads what s has into b[from..cap) and queues it on q. Returns 1 on bytes, 0 when there are
 * none now, -1 when s closed or failed. */
static int tg__tunnel_read(struct tg_sock *s, struct tg_buf *b, size_t from, struct tg_iovq *q)
{
    ssize_t n;

    if (!s->readable && !tg_sock_pending(s))
        return 0;
    b->end = from;
    n = tg_sock_read(s, b->base + from, b->cap - from);
    if (n == TG_AGAIN)
        return 0;
    if (n <= 0)
        return -1;
    b->end += (size_t)n;
    q->off = 0;
    q->cnt = 1;
    q->iov[0] = (struct iovec){b->base + from, (size_t)n};
    return 1;
}

void tg_tunnel_run(struct tg_txn *t)
{
    struct tg_conn *c = t->conn;
    struct tg_upconn *u = t->up;
    size_t client_from = c->in->start + t->head_len;

    if (t->route->rpc != NULL) {
        tg_wsrpc_run(t, *tg_rpc_ws(t));
        return;
    }
    for (;;) {
        bool progress = false;
        int r;

        if (c->dead)
            return;
        /* node -> client: the 101 head and what followed it first, then fresh reads */
        r = tg_tunnel_flush(&c->sock, &t->res_out, &t->bytes_out);
        if (r < 0)
            goto close;
        if (r > 0) {
            r = tg__tunnel_read(&u->sock, u->in, 0, &t->res_out);
            if (r < 0)
                goto close;
            progress |= r > 0;
        }
        /* client -> node */
        r = tg_tunnel_flush(&u->sock, &t->req_out, &t->req_body_bytes);
        if (r < 0)
            goto close;
        if (r > 0) {
            r = tg__tunnel_read(&c->sock, c->in, client_from, &t->req_out);
            if (r < 0)
                goto close;
            progress |= r > 0;
        }
        if (!progress)
            break;
        tg_conn_arm(c, t->rt->cf->ws_idle_timeout);
    }
    return;

close:
    /* either side is gone: the other one goes too (a WebSocket has no half-closed state) */
    tg_conn_abort(c);
}

void tg_tunnel_start(struct tg_txn *t)
{
    struct tg_conn *c = t->conn;
    struct tg_upconn *u = t->up;
    struct tg_worker *w = c->worker;

    t->tunnel = true;
    t->res_state = TG_RES_BODY;
    c->close_after = true;
    tg_timer_disarm(&u->timer); /* the response deadline is met; the idle one runs from now */
    tg_conn_arm(c, t->rt->cf->ws_idle_timeout);
    /* bytes the client sent after its request head are the first frames for the node */
    t->req_out.off = t->req_out.cnt = 0;
    if (tg_buf_len(c->in) > t->head_len) {
        t->req_out.iov[t->req_out.cnt++] = (struct iovec){c->in->base + c->in->start + t->head_len,
                                                          tg_buf_len(c->in) - t->head_len};
    }
    w->stats.ws_opened++;
    if (t->route->rpc != NULL)
        *tg_rpc_ws(t) = tg_wsrpc_start(t);
    tg_tunnel_run(t);
}
