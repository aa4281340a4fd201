/*
 * The client side of a worker: accepted connections, request heads, keep-alive, pipelining and
 * the timeouts of DESIGN §4 (header, idle, body, send).
 *
 * A connection holds a buffer only while it has unprocessed bytes and a transaction only while a
 * request is in progress. Pipelined requests are answered in order because the next head is not
 * parsed before the current transaction is done; its bytes simply wait in the buffer.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/core.h"
#include "net/tls.h"
#include "proxy/proxy.h"

static void tg__conn_process(struct tg_conn *c);

static void tg__conn_free(struct tg_conn *c)
{
    struct tg_worker *w = c->worker;

    if (c->freed)
        return;
    c->freed = true;
    if (c->txn != NULL)
        tg_txn_free(c->txn);
    c->txn = NULL;
    tg_timer_disarm(&c->timer);
    tg_sock_close(&c->sock);
    tg_buf_put(&w->bufs, c->in);
    c->in = NULL;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    if (!c->internal) {
        atomic_fetch_sub_explicit(&tg_instance.connections, 1, memory_order_relaxed);
        w->stats.active_connections--;
    }
    c->dead = true;
    c->next_free = w->dead_conns;
    w->dead_conns = c;
}

static void tg__conn_on_timer_linger(struct tg_loop *loop, struct tg_timer *timer);

/* Closes the connection now, or at the end of the current callback if one is running. */
void tg_conn_abort(struct tg_conn *c)
{
    if (c->dead)
        return;
    c->dead = true;
    if (c->txn != NULL && c->txn->up != NULL) {
        tg_upconn_close(c->txn->up);
        c->txn->up = NULL;
    }
    if (!c->in_callback)
        tg__conn_free(c);
}

/* The longest a drained connection waits for the client's FIN. */
#define TG_LINGER_MS 2000

static void tg__conn_linger_read(struct tg_conn *c)
{
    char sink[4096];

    for (;;) {
        ssize_t n = recv(c->sock.watch.fd, sink, sizeof(sink), MSG_DONTWAIT);

        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 || errno != EAGAIN)
            tg_conn_abort(c);
        return;
    }
}

void tg_conn_linger(struct tg_conn *c)
{
    if (c->dead)
        return;
    if (c->sock.ssl != NULL || shutdown(c->sock.watch.fd, SHUT_WR) != 0) {
        tg_conn_abort(c);
        return;
    }
    c->phase = TG_CONN_LINGER;
    if (c->in != NULL) {
        tg_buf_put(&c->worker->bufs, c->in);
        c->in = NULL;
    }
    tg_timer_arm(c->worker->loop, &c->timer, TG_LINGER_MS, tg__conn_on_timer_linger);
    tg__conn_linger_read(c);
}

void tg_conn_reap(struct tg_conn *c)
{
    if (c->dead && !c->in_callback)
        tg__conn_free(c);
}

static void tg__conn_on_timer(struct tg_loop *loop, struct tg_timer *timer)
{
    struct tg_conn *c = TG_CONTAINER_OF(timer, struct tg_conn, timer);

    c->in_callback = true;
    if (c->phase == TG_CONN_HEAD && c->txn != NULL && c->in != NULL && tg_buf_len(c->in) > 0) {
        c->worker->stats.rejected_timeout++;
        c->close_after = true;
        tg_txn_respond_error(c->txn, 408, "request_timeout",
                             "the request head was not received in time");
    } else if (c->phase == TG_CONN_TXN && c->txn != NULL && c->txn->tunnel) {
        tg_conn_abort(c); /* websocket.idle_timeout without a byte either way */
    } else if (c->phase == TG_CONN_TXN && c->txn != NULL && c->txn->req_state != TG_REQ_BODY &&
               c->txn->res_out.off == c->txn->res_out.cnt) {
        /* a stale timer: nothing is awaited from the client any more */
    } else if (c->phase == TG_CONN_TXN && c->txn != NULL && c->txn->res_state == TG_RES_WAIT &&
               c->txn->req_state == TG_REQ_BODY) {
        c->worker->stats.rejected_timeout++;
        c->close_after = true;
        if (c->txn->up != NULL) {
            tg_upconn_close(c->txn->up);
            c->txn->up = NULL;
        }
        tg_txn_respond_error(c->txn, 408, "request_timeout",
                             "the request body was not received in time");
    } else {
        /* idle keep-alive, TLS handshake, a client that stopped reading its response, or
         * one that stopped sending its body after the response began */
        tg_conn_abort(c);
    }
    c->in_callback = false;
    if (c->dead)
        tg__conn_free(c);
}

static void tg__conn_on_timer_linger(struct tg_loop *loop, struct tg_timer *timer)
{
    tg_conn_abort(TG_CONTAINER_OF(timer, struct tg_conn, timer));
}

void tg_conn_arm(struct tg_conn *c, tg_msec_t delay)
{
    tg_timer_arm(c->worker->loop, &c->timer, delay, tg__conn_on_timer);
}

static void tg__conn_on_event(struct tg_loop *loop, struct tg_watch *watch, unsigned events)
{
    struct tg_conn *c = TG_CONTAINER_OF(watch, struct tg_conn, sock.watch);

    if (c->freed) /* closed earlier in this batch of events */
        return;
    if (events & TG_EV_READ)
        c->sock.readable = true;
    if (events & TG_EV_HUP)
        c->sock.hup = true;
    if (events & TG_EV_WRITE)
        c->sock.writable = true;
    c->in_callback = true;
    if (c->phase == TG_CONN_TXN)
        tg_txn_run(c->txn);
    else if (c->phase == TG_CONN_LINGER)
        tg__conn_linger_read(c);
    else
        tg__conn_process(c);
    c->in_callback = false;
    if (c->dead)
        tg__conn_free(c);
}

static struct tg_conn *tg__conn_get(struct tg_worker *w)
{
    struct tg_conn *c = w->free_conns;

    if (c != NULL)
        w->free_conns = c->next_free;
    else
        c = tg_malloc(sizeof(*c));
    memset(c, 0, sizeof(*c));
    c->worker = w;
    c->next = w->conns;
    if (w->conns != NULL)
        w->conns->prev = c;
    w->conns = c;
    return c;
}

static bool tg__conn_try_head(struct tg_conn *c);

void tg_conn_internal(struct tg_worker *w, const char *head, size_t len)
{
    struct tg_conn *c = tg__conn_get(w);

    c->internal = true;
    c->close_after = true;
    c->sock.watch.fd = -1;
    c->sock.writable = true;
    c->phase = TG_CONN_HEAD;
    c->in = tg_buf_get(&w->bufs);
    if (len > tg_buf_room(c->in))
        c->in = tg_buf_grow(c->in, len);
    memcpy(c->in->base + c->in->end, head, len);
    c->in->end += len;
    c->txn = tg_txn_new(c);
    c->in_callback = true;
    tg__conn_try_head(c);
    c->in_callback = false;
    tg_conn_reap(c);
}

/* Answers at once when the instance is full, without reading the request (DESIGN §4). */
static void tg__conn_reject_full(struct tg_worker *w, int fd)
{
    char out[512], rid[48];
    uint8_t rid_len;
    size_t n;

    tg_worker_request_id(w, rid, &rid_len);
    n = tg_error_format(out, sizeof(out), w, 503, "too_many_connections",
                        "the gateway has reached limits.max_connections", rid, rid_len, true, 1,
                        NULL, NULL, 0);

    w->stats.rejected_too_many_connections++;
    if (write(fd, out, n) < 0) {
        /* the client is gone already; nothing else to do */
    }
    shutdown(fd, SHUT_WR);
    close(fd);
}

void tg_conn_accepted(struct tg_worker *w, struct tg_listener *l, int fd,
                      const struct sockaddr_storage *peer)
{
    struct tg_runtime *rt = w->rt;
    struct tg_conn *c;
    int open = atomic_fetch_add_explicit(&tg_instance.connections, 1, memory_order_relaxed);

    w->stats.connections_total++;
    if ((uint32_t)open >= rt->cf->limits.max_connections) {
        atomic_fetch_sub_explicit(&tg_instance.connections, 1, memory_order_relaxed);
        tg__conn_reject_full(w, fd);
        return;
    }
    c = tg__conn_get(w);
    c->tls = l->tls;
    c->sock.watch.fd = fd;
    c->sock.watch.cb = tg__conn_on_event;
    c->phase = TG_CONN_IDLE;
    if (peer->ss_family == AF_INET6) {
        memcpy(&c->peer, peer, sizeof(c->peer));
    } else if (peer->ss_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)peer;

        c->peer.sin6_family = AF_INET6;
        c->peer.sin6_port = in4->sin_port;
        c->peer.sin6_addr.s6_addr[10] = 0xff;
        c->peer.sin6_addr.s6_addr[11] = 0xff;
        memcpy(&c->peer.sin6_addr.s6_addr[12], &in4->sin_addr, 4);
    }
    w->stats.active_connections++;
    if (l->tls) {
        c->sock.ssl = tg_tls_accept_new(rt->listen_tls[l->index], fd);
        if (c->sock.ssl == NULL) {
            tg__conn_free(c);
            return;
        }
        c->sock.handshaking = true;
        c->phase = TG_CONN_HANDSHAKE;
    }
    if (tg_loop_add(w->loop, &c->sock.watch) != 0) {
        tg__conn_free(c);
        return;
    }
    /* The first request usually follows the handshake at once; the socket is reported readable
     * by the edge that epoll raises for data already queued at registration time. */
    tg_conn_arm(c, c->phase == TG_CONN_HANDSHAKE ? rt->cf->limits.header_timeout
                                                 : rt->cf->limits.idle_timeout);
}

/* Parses the buffered bytes. Returns true when it started a transaction or an error reply. */
static bool tg__conn_try_head(struct tg_conn *c)
{
    struct tg_buf *in = c->in;
    struct tg_txn *t = c->txn;
    ssize_t n;

    n = tg_h1_parse_request(in->base + in->start, tg_buf_len(in), &t->req, &t->rt->h1);
    if (n == TG_H1_INCOMPLETE)
        return false;
    c->phase = TG_CONN_TXN;
    if (n == TG_H1_INVALID) {
        struct tg_worker_stats *st = &c->worker->stats;

        if (t->req.status == 414)
            st->rejected_uri_too_long++;
        else if (t->req.status == 431)
            st->rejected_header_too_large++;
        else
            st->rejected_bad_request++;
        c->close_after = true;
        tg_txn_respond_error(t, t->req.status ? t->req.status : 400, "bad_request",
                             t->req.error ? t->req.error : "malformed request");
        return true;
    }
    t->head_len = (size_t)n;
    tg_txn_start(t);
    return true;
}

static void tg__conn_process(struct tg_conn *c)
{
    struct tg_worker *w = c->worker;
    const struct tg_limits_conf *lim = &w->rt->cf->limits;

    if (c->phase == TG_CONN_HANDSHAKE) {
        int rc = tg_sock_handshake(&c->sock);

        if (rc == TG_AGAIN)
            return;
        if (rc != TG_OK) {
            tg_conn_abort(c);
            return;
        }
        c->phase = TG_CONN_IDLE;
        c->sock.readable = true;
        tg_conn_arm(c, lim->idle_timeout);
    }
    while (!c->dead && (c->phase == TG_CONN_IDLE || c->phase == TG_CONN_HEAD)) {
        struct tg_buf *in;
        ssize_t r;

        if (!c->sock.readable && !tg_sock_pending(&c->sock)) {
            if (c->phase == TG_CONN_IDLE && c->in != NULL && tg_buf_len(c->in) == 0) {
                tg_buf_put(&w->bufs, c->in);
                c->in = NULL;
            }
            return;
        }
        if (c->in == NULL)
            c->in = tg_buf_get(&w->bufs);
        in = c->in;
        if (tg_buf_room(in) == 0) {
            tg_buf_compact(in);
            if (tg_buf_room(in) == 0) {
                /* The parser enforces the limits, so this size always suffices. */
                size_t need = lim->max_request_line + lim->max_header_bytes + 4;
                TG_BUG_ON(in->cap >= need);
                c->in = in = tg_buf_grow(in, need);
            }
        }
        r = tg_sock_read(&c->sock, in->base + in->end, tg_buf_room(in));
        if (r == TG_AGAIN)
            continue;
        if (r <= 0) {
            tg_conn_abort(c);
            return;
        }
        in->end += (size_t)r;
        if (c->phase == TG_CONN_IDLE) {
            c->phase = TG_CONN_HEAD;
            c->txn = tg_txn_new(c);
            tg_conn_arm(c, lim->header_timeout);
        }
        if (tg__conn_try_head(c))
            return;
    }
}

/* Called by the transaction when its response is completely written. */
void tg_conn_txn_done(struct tg_conn *c)
{
    struct tg_worker *w = c->worker;
    struct tg_txn *t = c->txn;
    bool keep = !c->close_after && t->req.keep_alive && t->req_state == TG_REQ_DONE && !w->draining;

    if (t->req_state == TG_REQ_DONE && c->in != NULL && t->keep_in != 0)
        c->in->start += t->keep_in; /* a body held for replay */
    else if (t->req_state == TG_REQ_DONE && t->req.body_kind == TG_BODY_NONE && c->in != NULL)
        c->in->start += t->head_len;
    tg_txn_free(t);
    c->txn = NULL;
    c->requests++;
    if (!keep) {
        tg_conn_abort(c);
        return;
    }
    c->phase = TG_CONN_IDLE;
    if (c->in != NULL && tg_buf_len(c->in) > 0) {
        /* a pipelined request is waiting */
        c->phase = TG_CONN_HEAD;
        c->txn = tg_txn_new(c);
        tg_conn_arm(c, w->rt->cf->limits.header_timeout);
        if (tg__conn_try_head(c))
            return;
        tg__conn_process(c);
        return;
    }
    if (c->in != NULL) {
        tg_buf_put(&w->bufs, c->in);
        c->in = NULL;
    }
    tg_conn_arm(c, w->rt->cf->limits.idle_timeout);
    tg__conn_process(c);
}
