/*
 * The response side of a transaction (DESIGN §9.13-9.14): the node's response head parsed and
 * rewritten for the client, the body relayed with its framing (or read whole for a JSON-RPC
 * reply, or turned into a WebSocket tunnel on 101), written to the client with backpressure,
 * and the node connection handed back once the exchange is complete. forward.c drives it.
 */
#include <string.h>
#include <strings.h>

#include "core/core.h"
#include "core/str.h"
#include "proxy/proxy.h"

static bool tg__res_skip(const struct tg_http_header *h, void *arg)
{
    return (h->flags & TG_HDR_F_HOP) || h->id == TG_HDR_X_REQUEST_ID;
}

/*
 * Decides how many of the n response body bytes at p go to the client, applying the framing.
 * For chunked bodies relayed to an HTTP/1.0 client the data is decoded in place. Sets res_end
 * when the body is complete. Returns the byte count to forward, or -1 for a framing error.
 */
static ssize_t tg__res_body_take(struct tg_txn *t, char *p, size_t n, size_t *consumed)
{
    ssize_t r;
    size_t data;

    *consumed = n;
    switch (t->res.body_kind) {
    case TG_BODY_LENGTH: {
        size_t take = n < t->res_remaining ? n : (size_t)t->res_remaining;
        t->res_remaining -= take;
        if (t->res_remaining == 0)
            t->res_end = true;
        if (take < n)
            t->up_reusable = false;
        *consumed = take;
        return (ssize_t)take;
    }
    case TG_BODY_CHUNKED:
        if (t->res_decode) {
            r = tg_h1_chunked_decode(&t->res_chunked, p, n, &data);
            if (r == TG_H1_INVALID)
                return -1;
            if (r >= 0) {
                t->res_end = true;
                *consumed = (size_t)r;
                if ((size_t)r < n)
                    t->up_reusable = false;
            }
            return (ssize_t)data;
        }
        r = tg_h1_chunked_scan(&t->res_chunked, p, n);
        if (r == TG_H1_INVALID)
            return -1;
        if (r == TG_H1_INCOMPLETE)
            return (ssize_t)n;
        t->res_end = true;
        if ((size_t)r < n)
            t->up_reusable = false;
        *consumed = (size_t)r;
        return r;
    case TG_BODY_CLOSE:
        return (ssize_t)n;
    default:
        t->res_end = true;
        if (n > 0)
            t->up_reusable = false;
        *consumed = n;
        return 0;
    }
}

char *tg_txn_head_end(struct tg_txn *t, char *p, char *end)
{
    TG_PUTS(p, end, "X-Request-Id: ");
    TG_PUT(p, end, t->request_id, t->request_id_len);
    TG_PUTS(p, end, "\r\n");
    if (t->rl_set) {
        size_t n = tg_txn_ratelimit_headers(t, p, (size_t)(end - p));

        if (n == 0)
            goto overflow;
        p += n;
    }
    if (t->conn->close_after)
        TG_PUTS(p, end, "Connection: close\r\n");
    else if (t->req.minor_version == 0)
        TG_PUTS(p, end, "Connection: keep-alive\r\n");
    TG_PUTS(p, end, "\r\n");
    return p;

overflow:
    return NULL;
}

/* Builds the response head for the client in the response area of the scratch space. */
static int tg__txn_compose_response(struct tg_txn *t, const char *head, size_t head_len)
{
    char *start = t->scratch + t->scratch_cap / 2;
    char *end = t->scratch + t->scratch_cap;
    char *p = start;
    struct tg_str reason = t->res.reason;
    int st = t->res.status; /* 100..599, checked by the parser */
    char code[4] = {(char)('0' + st / 100), (char)('0' + st / 10 % 10), (char)('0' + st % 10), ' '};

    if (reason.len == 0)
        reason = tg_str_cstr(tg_http_status_text(t->res.status));
    t->res_out.off = t->res_out.cnt = 0;
    TG_PUTS(p, end, "HTTP/1.1 ");
    TG_PUT(p, end, code, 4);
    TG_PUT(p, end, reason.base, reason.len);
    TG_PUTS(p, end, "\r\n");
    t->res_out.iov[t->res_out.cnt++] = (struct iovec){start, (size_t)(p - start)};
    tg_txn_iov_headers(&t->res_out, t->res.headers, t->res.num_headers, head + head_len - 2,
                       tg__res_skip, NULL);
    start = p;
    if (t->res_passthru_chunked)
        TG_PUTS(p, end, "Transfer-Encoding: chunked\r\n");
    if (t->cache != NULL)
        TG_PUTS(p, end, "X-Cache: MISS\r\n");
    p = tg_txn_head_end(t, p, end);
    if (p == NULL)
        goto overflow;
    t->res_out.iov[t->res_out.cnt++] = (struct iovec){start, (size_t)(p - start)};
    return 0;

overflow:
    return -1;
}

/* How the node's response body is read: its length, chunked (decoded in place when the body is
 * collected or goes to an HTTP/1.0 client, else passed on as chunks), or until the node closes
 * (and then the client connection closes too, unless the body is collected). */
static void tg__txn_framing(struct tg_txn *t, bool collect)
{
    struct tg_conn *c = t->conn;

    switch (t->res.body_kind) {
    case TG_BODY_LENGTH:
        t->res_remaining = t->res.content_length;
        break;
    case TG_BODY_CHUNKED:
        tg_h1_chunked_init(&t->res_chunked, TG_CHUNK_MAX_LINE, TG_CHUNK_MAX_TRAILERS);
        if (collect) {
            t->res_decode = true;
        } else if (t->req.minor_version == 0) {
            t->res_decode = true;
            c->close_after = true;
        } else {
            t->res_passthru_chunked = true;
        }
        break;
    case TG_BODY_CLOSE:
        t->res_close = true;
        if (!collect)
            c->close_after = true;
        break;
    default:
        break;
    }
}

/* Hands the node connection back after a complete exchange (closed when it cannot be reused). */
static void tg__txn_release_up(struct tg_txn *t)
{
    struct tg_upconn *u = t->up;
    bool reusable;

    if (u == NULL)
        return;
    reusable = t->up_reusable && !t->res_close && t->req_state == TG_REQ_DONE &&
               (u->in == NULL || tg_buf_len(u->in) == 0);
    t->up = NULL;
    tg_upconn_release(u, reusable);
}

/* A JSON-RPC reply is whole: accepted, or a node that could not answer (another one is asked
 * when the retry policy allows; else the client gets the reply as it is). */
static void tg__txn_collected(struct tg_txn *t)
{
    const char *why = NULL;
    bool ok;

    t->up_end_us = tg_loop_now_us(t->conn->worker->loop);
    ok = tg_rpc_reply_ok(t, &why);
    tg__txn_release_up(t);
    if (!ok) {
        /* the attempt is over: until the next one answers, there is no reply to pass on */
        t->res_end = t->res_collect = false;
        if (tg_txn_retry_elsewhere(t, TG_FAIL_RPC, t->up_status, why))
            return;
        tg_txn_attempt_failed(t, TG_FAIL_RPC, t->up_status, why);
    }
    tg_rpc_leg_done(t, ok);
}

/* Moves the reply body bytes in up->in into the JSON-RPC reply. */
static void tg__txn_collect(struct tg_txn *t)
{
    struct tg_buf *in = t->up->in;
    size_t consumed;
    ssize_t take = tg__res_body_take(t, in->base + in->start, tg_buf_len(in), &consumed);

    if (take < 0) {
        tg_txn_upstream_error(t, TG_FAIL_BAD, 502, "bad_response",
                              "invalid upstream response framing");
        return;
    }
    if (take > 0 && tg_rpc_collect(t, in->base + in->start, (size_t)take) != 0) {
        tg_txn_upstream_error(t, TG_FAIL_BAD, 502, "response_too_large",
                              "the node's reply exceeds the route's jsonrpc.max_response");
        return;
    }
    in->start += consumed;
    if (tg_buf_len(in) == 0)
        in->start = in->end = 0;
    if (t->res_end)
        tg__txn_collected(t);
}

static void tg__txn_collect_head(struct tg_txn *t, size_t head_len)
{
    tg_rpc_collect_reset(t);
    t->res_collect = true;
    t->up_status = t->res.status;
    tg__txn_framing(t, true);
    t->up->in->start += head_len;
    tg__txn_collect(t);
}

/* The response head is complete in up->in: decide the framing towards the client. */
static void tg__txn_response_head(struct tg_txn *t, size_t head_len)
{
    struct tg_conn *c = t->conn;
    struct tg_upconn *u = t->up;
    struct tg_buf *in = u->in;
    char *head = in->base + in->start;
    char *body = head + head_len;
    size_t avail = tg_buf_len(in) - head_len, consumed;
    ssize_t take;

    if (tg_status_in(&t->svc->conf->retry.statuses, t->res.status) &&
        tg_txn_retry_elsewhere(t, TG_FAIL_STATUS, t->res.status, NULL))
        return; /* the node's answer is dropped; another node gets the request */
    if (t->cache != NULL && t->res.status >= 500 && tg_cache_has_stale(t)) {
        /* stale_if_error: the stale copy instead of the node's error (the attempt ends first:
         * sending may end the transaction) */
        tg_txn_attempt_failed(t, TG_FAIL_STATUS, t->res.status, NULL);
        tg_cache_serve_stale(t);
        return;
    }
    if (!t->res.keep_alive)
        t->up_reusable = false;
    if (t->rpc != NULL && !t->ws) {
        tg__txn_collect_head(t, head_len);
        return;
    }
    tg__txn_framing(t, false);
    if (!t->req.keep_alive || c->worker->draining || t->req_state != TG_REQ_DONE)
        c->close_after = true;
    if (tg__txn_compose_response(t, head, head_len) != 0) {
        tg_txn_upstream_error(t, TG_FAIL_BAD, 502, "bad_response",
                              "the upstream response head is too large");
        return;
    }
    t->status = t->res.status;
    t->up_status = t->res.status;
    c->worker->stats.responses_by_class[t->status / 100 < 6 ? t->status / 100 : 0]++;
    take = tg__res_body_take(t, body, avail, &consumed);
    if (take < 0) {
        tg_txn_upstream_error(t, TG_FAIL_BAD, 502, "bad_response",
                              "invalid upstream response framing");
        return;
    }
    if (t->cache != NULL) {
        tg_cache_head_arrived(t);
        if (take > 0)
            tg_cache_body(t, body, (size_t)take);
    }
    if (take > 0)
        t->res_out.iov[t->res_out.cnt++] = (struct iovec){body, (size_t)take};
    /* head and the consumed body bytes leave the buffer once they are written */
    t->res_body_out = head_len + consumed;
    t->res_state = TG_RES_HEAD;
}

/* The node switched protocols: its 101 head, without hop-by-hop fields, and whatever it sent
 * after it go to the client, then the tunnel runs. Returns -1 when the 101 is not a WebSocket
 * answer or the head does not fit. */
static int tg__txn_switch(struct tg_txn *t, size_t head_len)
{
    struct tg_buf *in = t->up->in;
    const char *head = in->base + in->start;
    char *start = t->scratch + t->scratch_cap / 2;
    char *end = t->scratch + t->scratch_cap;
    char *p = start;
    bool websocket = false;

    for (size_t i = 0; i < t->res.num_headers; i++) {
        const struct tg_http_header *h = &t->res.headers[i];

        websocket |= h->id == TG_HDR_UPGRADE && h->value.len == 9 &&
                     strncasecmp(h->value.base, "websocket", 9) == 0;
    }
    if (!websocket)
        return -1;
    t->res_out.off = t->res_out.cnt = 0;
    TG_PUTS(p, end, "HTTP/1.1 101 Switching Protocols\r\n");
    t->res_out.iov[t->res_out.cnt++] = (struct iovec){start, (size_t)(p - start)};
    tg_txn_iov_headers(&t->res_out, t->res.headers, t->res.num_headers, head + head_len - 2,
                       tg__res_skip, NULL);
    start = p;
    TG_PUTS(p, end, "Upgrade: websocket\r\nConnection: Upgrade\r\nX-Request-Id: ");
    TG_PUT(p, end, t->request_id, t->request_id_len);
    TG_PUTS(p, end, "\r\n\r\n");
    t->res_out.iov[t->res_out.cnt++] = (struct iovec){start, (size_t)(p - start)};
    if (tg_buf_len(in) > head_len)
        t->res_out.iov[t->res_out.cnt++] =
            (struct iovec){in->base + in->start + head_len, tg_buf_len(in) - head_len};
    t->status = t->up_status = 101;
    t->up_end_us = tg_loop_now_us(t->conn->worker->loop);
    t->conn->worker->stats.responses_by_class[1]++;
    if (tg_buf_room(t->conn->in) < TG_BUF_SIZE / 4) {
        t->keep_in = t->head_len + TG_BUF_SIZE / 2; /* room for frames after the head */
        tg_txn_hold_room(t);
    }
    tg_tunnel_start(t);
    return 0;

overflow:
    return -1;
}

/* Parses what the node sent so far as a response head; acts once it is complete. */
static void tg__txn_parse_head(struct tg_txn *t)
{
    struct tg_buf *in = t->up->in;
    ssize_t n;

    for (;;) {
        n = tg_h1_parse_response(in->base + in->start, tg_buf_len(in), &t->res, &t->rt->h1,
                                 t->head_request);
        if (n == TG_H1_INCOMPLETE)
            return;
        if (n == TG_H1_INVALID) {
            tg_txn_upstream_error(t, TG_FAIL_BAD, 502, "bad_response",
                                  "the upstream sent an invalid response");
            return;
        }
        if (t->res.status >= 200)
            break;
        if (t->res.status == 101) {
            if (t->ws && tg__txn_switch(t, (size_t)n) == 0)
                return;
            tg_txn_upstream_error(t, TG_FAIL_BAD, 502, "bad_response",
                                  "unexpected protocol switch");
            return;
        }
        in->start += (size_t)n; /* interim responses are not relayed */
    }
    if (t->num_hedges != 0)
        tg_hedge_cancel_all(t); /* this attempt answered first */
    tg__txn_response_head(t, (size_t)n);
}

/* Reads from the node: the response head, or the next part of the body. */
bool tg_txn_recv(struct tg_txn *t)
{
    struct tg_conn *c = t->conn;
    struct tg_upconn *u = t->up;
    struct tg_worker *w = c->worker;
    struct tg_buf *in;
    ssize_t n;

    if (u->in == NULL)
        u->in = tg_buf_get(&w->bufs);
    in = u->in;
    if (t->res_state == TG_RES_BODY && tg_buf_len(in) == 0)
        in->start = in->end = 0;
    if (tg_buf_room(in) == 0) {
        tg_buf_compact(in);
        if (tg_buf_room(in) == 0) {
            tg_txn_upstream_error(t, TG_FAIL_BAD, 502, "bad_response",
                                  "the upstream response head is too large");
            return true;
        }
    }
    n = tg_sock_read(&u->sock, in->base + in->end, tg_buf_room(in));
    if (n == TG_AGAIN)
        return false;
    if (n <= 0) {
        if (t->res_collect && t->res_close && n == 0) {
            t->res_end = true;
            t->up_reusable = false;
            tg__txn_collected(t);
        } else if (t->res_state == TG_RES_WAIT)
            tg_txn_upstream_error(t, TG_FAIL_RESET, 502, "upstream_closed",
                                  "the upstream closed the connection before answering");
        else if (t->res_close && n == 0) {
            t->res_end = true;
            t->up_reusable = false;
        } else {
            tg_conn_abort(c);
        }
        return true;
    }
    in->end += (size_t)n;
    tg_upconn_arm(u, t->svc->conf->response_timeout);
    if (t->res_collect) {
        tg__txn_collect(t);
        return true;
    }
    if (t->res_state == TG_RES_WAIT) {
        tg__txn_parse_head(t);
        return true;
    }
    /* body: the buffer held nothing unsent, so all of it is new */
    {
        size_t consumed;
        ssize_t take = tg__res_body_take(t, in->base + in->start, tg_buf_len(in), &consumed);

        if (take < 0) {
            tg_conn_abort(c);
            return true;
        }
        t->res_out.off = t->res_out.cnt = 0;
        if (take > 0)
            t->res_out.iov[t->res_out.cnt++] = (struct iovec){in->base + in->start, (size_t)take};
        if (take > 0 && t->cache != NULL)
            tg_cache_body(t, in->base + in->start, (size_t)take);
        t->res_body_bytes += (size_t)take;
        t->res_body_out = consumed;
    }
    return true;
}

/* The response is completely written: hand the node connection back and finish. */
static void tg__txn_finish(struct tg_txn *t)
{
    tg__txn_release_up(t);
    tg_timer_disarm(&t->conn->timer);
    tg_conn_txn_done(t->conn);
}

/* Writes pending response bytes to the client. Returns true when the transaction finished (and
 * may have been freed). */
bool tg_txn_flush_pending(struct tg_txn *t)
{
    struct tg_conn *c = t->conn;

    while (t->res_out.off < t->res_out.cnt) {
        struct iovec *iov = t->res_out.iov + t->res_out.off;
        int cnt = t->res_out.cnt - t->res_out.off;
        ssize_t n;

        if (TG_UNLIKELY(c->internal)) { /* nobody to write to: the response is dropped */
            for (int i = 0; i < cnt; i++)
                t->bytes_out += iov[i].iov_len;
            t->res_out.off = t->res_out.cnt;
            break;
        }
        if (!c->sock.writable) {
            /* Backpressure: the node is not read while the client is slow, so the client's
             * send deadline runs instead of the node's response deadline. */
            tg_conn_arm(c, t->rt->cf->limits.send_timeout);
            if (t->up != NULL && !t->local_reply)
                tg_timer_disarm(&t->up->timer);
            return false;
        }
        n = tg_sock_writev(&c->sock, iov, cnt);
        if (n == TG_AGAIN)
            continue;
        if (n < 0) {
            tg_conn_abort(c);
            return true;
        }
        t->bytes_out += (size_t)n;
        tg_iov_advance(&iov, &cnt, (size_t)n);
        t->res_out.off = t->res_out.cnt - cnt;
    }
    if (t->req_state != TG_REQ_BODY)
        tg_timer_disarm(&c->timer); /* the send deadline is met */
    if (t->res_state == TG_RES_HEAD)
        t->res_state = TG_RES_BODY;
    if (t->up != NULL && t->up->in != NULL) {
        t->up->in->start += t->res_body_out;
        t->res_body_out = 0;
        if (!t->res_end && !tg_timer_armed(&t->up->timer))
            tg_upconn_arm(t->up, t->svc->conf->response_timeout);
    }
    if (t->res_end) {
        t->res_state = TG_RES_DONE;
        tg__txn_finish(t);
        return true;
    }
    return false;
}

void tg_txn_flush(struct tg_txn *t)
{
    struct tg_conn *c = t->conn;

    if (c->dead)
        return;
    tg_txn_flush_pending(t);
}

void tg_txn_head_arrived(struct tg_txn *t)
{
    struct tg_conn *c = t->conn;

    tg__txn_parse_head(t);
    if (!c->dead && (c->txn == t || t->parent != NULL) && !t->local_reply)
        tg_txn_run(t);
}
