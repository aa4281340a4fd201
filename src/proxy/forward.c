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
 */
#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#include "core/core.h"
#include "core/hash.h"
#include "core/str.h"
#include "obs/trace.h"
#include "proxy/proxy.h"

#define TG_CHUNK_MAX_LINE     4096
#define TG_CHUNK_MAX_TRAILERS (16 * 1024)

static bool tg__txn_flush(struct tg_txn *t);
static bool tg__txn_retry_elsewhere(struct tg_txn *t, enum tg_fail why, int status,
                                    const char *msg);
static void tg__txn_attempt_failed(struct tg_txn *t, enum tg_fail why, int status, const char *msg);
static void tg__txn_buffer_body(struct tg_txn *t);

struct tg_txn *tg_txn_new(struct tg_conn *c)
{
    struct tg_worker *w = c->worker;
    struct tg_runtime *rt = w->rt;
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
    if (t->started)
        tg_txn_record(t);
    if (t->rpc != NULL)
        tg_rpc_txn_free(t);
    if (t->tunnel) {
        w->stats.ws_closed++;
        w->stats.ws_bytes_in += t->req_body_bytes;
        w->stats.ws_bytes_out += t->bytes_out;
    }
    tg_worker_runtime_done(w, t->rt);
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

/* Appends the header lines of a head that are kept as iovecs pointing into the head itself.
 * Adjacent kept lines share one iovec. head_end points just past the last header line. */
static void tg__iov_headers(struct tg_iovq *q, const struct tg_http_header *h, size_t num,
                            const char *head_end,
                            bool (*skip)(const struct tg_http_header *, void *), void *arg)
{
    struct iovec *last = NULL;

    for (size_t i = 0; i < num; i++) {
        const char *from = h[i].name.base;
        const char *to = i + 1 < num ? h[i + 1].name.base : head_end;

        if (skip(&h[i], arg)) {
            last = NULL;
            continue;
        }
        if (last != NULL && (char *)last->iov_base + last->iov_len == from) {
            last->iov_len += (size_t)(to - from);
            continue;
        }
        last = &q->iov[q->cnt++];
        last->iov_base = (void *)from;
        last->iov_len = (size_t)(to - from);
    }
}

struct tg__req_skip {
    bool trusted;
    bool drop_trace;
    bool length;        /* the body is composed here: its Content-Length is ours */
    bool no_extensions; /* JSON-RPC WebSocket: frames are read here, so no compression */
    const struct tg_http_header *credential; /* the API key or token header: never forwarded */
};

static bool tg__req_skip(const struct tg_http_header *h, void *arg)
{
    const struct tg__req_skip *s = arg;

    if ((h->flags & TG_HDR_F_HOP) || h == s->credential)
        return true;
    switch (h->id) {
    case TG_HDR_HOST:
    case TG_HDR_X_REQUEST_ID:
    case TG_HDR_EXPECT:
    case TG_HDR_X_FORWARDED_FOR:
        return true;
    case TG_HDR_X_FORWARDED_PROTO:
    case TG_HDR_X_FORWARDED_HOST:
        return !s->trusted;
    case TG_HDR_TRACEPARENT:
    case TG_HDR_TRACESTATE:
        return s->drop_trace;
    case TG_HDR_CONTENT_LENGTH:
        return s->length;
    case TG_HDR_OTHER:
        return s->no_extensions && h->name.len == 24 &&
               strncasecmp(h->name.base, "sec-websocket-extensions", 24) == 0;
    default:
        return false;
    }
}

static bool tg__res_skip(const struct tg_http_header *h, void *arg)
{
    return (h->flags & TG_HDR_F_HOP) || h->id == TG_HDR_X_REQUEST_ID;
}

/* A target or header value produced by a rewrite is checked again before it is sent (§9.9). */
static bool tg__valid_field(const char *p, size_t n, bool target)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];

        if (ch <= 0x20 || ch == 0x7f || (target && ch == '#'))
            return false;
    }
    return n > 0;
}

/*
 * Composes the request head into the request area of the scratch space and t->req_out: the
 * request line, the kept header lines, the added headers, then the body bytes already buffered.
 * path is the normalised path (with query). Returns 0, or -1 when a rewrite does not fit or
 * produced an invalid value.
 */
static int tg__txn_compose_request(struct tg_txn *t, struct tg_str path,
                                   const struct tg_route_captures *caps)
{
    struct tg_conn *c = t->conn;
    const struct tg_route_conf *route = t->route;
    const struct tg_node_conf *nc = t->node->conf;
    struct tg_runtime *rt = t->rt;
    char *start = t->scratch + rt->cf->limits.max_request_line;
    char *end = t->scratch + t->scratch_cap / 2;
    char *p = start, *host_at;
    const char *head = c->in->base + c->in->start;
    struct tg__req_skip skip = {
        .trusted = tg_runtime_trusted(rt, &c->peer),
        .drop_trace = t->trace_drop,
        .length = t->rpc != NULL && !t->ws &&
                  tg_rpc_body(t).base != c->in->base + c->in->start + t->head_len,
        .no_extensions = t->ws && route->rpc != NULL,
        .credential = t->cred_header ? &t->req.headers[t->cred_header - 1] : NULL};
    const char *peer;
    ssize_t n;

    t->req_out.off = t->req_out.cnt = 0;
    TG_PUT(p, end, t->req.method.base, t->req.method.len);
    TG_PUTS(p, end, " ");
    TG_PUT(p, end, nc->base_path, strlen(nc->base_path));
    if (route->rewrite_path != NULL) {
        const char *q = memchr(path.base, '?', path.len);
        char *at = p;

        n = tg_router_expand(route->rewrite_path, caps, t->req.host, path, p, (size_t)(end - p));
        if (n < 0)
            goto overflow;
        p += n;
        if (q != NULL && strstr(route->rewrite_path, "{path}") == NULL) {
            /* the original query is kept; joined with '&' when the template has its own */
            if (memchr(at, '?', (size_t)(p - at)) != NULL) {
                TG_PUTS(p, end, "&");
                q++;
            }
            TG_PUT(p, end, q, (size_t)(path.base + path.len - q));
        }
        if (!tg__valid_field(at, (size_t)(p - at), true) || *at != '/')
            return -1;
    } else {
        TG_PUT(p, end, path.base, path.len);
    }
    TG_PUTS(p, end, " HTTP/1.1\r\n");
    t->req_out.iov[t->req_out.cnt++] = (struct iovec){start, (size_t)(p - start)};

    tg__iov_headers(&t->req_out, t->req.headers, t->req.num_headers, head + t->head_len - 2,
                    tg__req_skip, &skip);

    start = p;
    TG_PUTS(p, end, "Host: ");
    host_at = p;
    if (route->rewrite_host != NULL) {
        n = tg_router_expand(route->rewrite_host, caps, t->req.host, path, p, (size_t)(end - p));
        if (n < 0)
            goto overflow;
        p += n;
        if (!tg__valid_field(host_at, (size_t)n, false))
            return -1;
    } else if (nc->authority != NULL) {
        TG_PUT(p, end, nc->authority, strlen(nc->authority));
    } else {
        TG_PUT(p, end, t->req.host.base, t->req.host.len);
    }
    TG_PUTS(p, end, "\r\nX-Forwarded-For: ");
    if (skip.trusted) {
        for (size_t i = 0; i < t->req.num_headers; i++) {
            if (t->req.headers[i].id != TG_HDR_X_FORWARDED_FOR)
                continue;
            TG_PUT(p, end, t->req.headers[i].value.base, t->req.headers[i].value.len);
            TG_PUTS(p, end, ", ");
        }
    }
    peer = tg_conn_peer_text(c);
    if (peer != NULL)
        TG_PUT(p, end, peer, c->peer_text_len);
    else
        TG_PUTS(p, end, "unknown");
    if (!skip.trusted) {
        if (c->tls)
            TG_PUTS(p, end, "\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: ");
        else
            TG_PUTS(p, end, "\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: ");
        TG_PUT(p, end, t->req.host.base, t->req.host.len);
    }
    TG_PUTS(p, end, "\r\nVia: 1.1 tollgate\r\nX-Request-Id: ");
    TG_PUT(p, end, t->request_id, t->request_id_len);
    if (t->trace_new) {
        TG_PUTS(p, end, "\r\ntraceparent: ");
        TG_PUT(p, end, t->traceparent, sizeof(t->traceparent));
    }
    if (t->req.body_kind == TG_BODY_CHUNKED)
        TG_PUTS(p, end, "\r\nTransfer-Encoding: chunked");
    if (t->ws) /* hop-by-hop, so dropped above: the upgrade is asked again, for this hop */
        TG_PUTS(p, end, "\r\nConnection: Upgrade\r\nUpgrade: websocket");
    if (skip.length) {
        char *q;

        TG_PUTS(p, end, "\r\nContent-Length: ");
        if (end - p < 20)
            goto overflow;
        q = tg_put_u64(p, tg_rpc_body(t).len);
        p = q;
    }
    TG_PUTS(p, end, "\r\n\r\n");
    t->req_out.iov[t->req_out.cnt++] = (struct iovec){start, (size_t)(p - start)};
    return 0;

overflow:
    return -1;
}

/*
 * Returns how many of the n body bytes at p (the request body as buffered from the client) may be
 * forwarded now, and marks the end of the body. For chunked bodies the framing is validated as it
 * goes. Returns -1 for invalid chunked framing, -2 when the chunk data passes the body limit.
 */
static ssize_t tg__req_body_take(struct tg_txn *t, const char *p, size_t n)
{
    ssize_t r;

    if (t->req.body_kind == TG_BODY_LENGTH) {
        size_t take = n < t->req_remaining ? n : (size_t)t->req_remaining;
        return (ssize_t)take;
    }
    if (t->req_body_end)
        return 0;
    r = tg_h1_chunked_scan(&t->req_chunked, p, n);
    if (r == TG_H1_INVALID)
        return -1;
    if (t->req_chunked.data_bytes > t->max_body)
        return -2;
    if (r == TG_H1_INCOMPLETE)
        r = (ssize_t)n;
    else
        t->req_body_end = true;
    return r;
}

/* Answers a chunked body that tg__req_body_take() refused: -1 bad framing, -2 over the limit. */
static void tg__txn_body_refused(struct tg_txn *t, ssize_t why)
{
    struct tg_worker_stats *st = &t->conn->worker->stats;

    if (why == -2) {
        st->rejected_body_too_large++;
        tg_txn_respond_error(t, 413, "body_too_large", "the request body exceeds the limit");
    } else {
        st->rejected_bad_request++;
        tg_txn_respond_error(t, 400, "bad_request", "invalid chunked request body");
    }
}

/* Accounts for n request body bytes handed to the node. */
static void tg__req_body_sent(struct tg_txn *t, size_t n)
{
    t->req_body_bytes += n;
    if (t->req.body_kind == TG_BODY_LENGTH) {
        if ((t->req_remaining -= n) == 0)
            t->req_state = TG_REQ_DONE;
    } else if (t->req_body_end && t->req_scanned == 0) {
        t->req_state = TG_REQ_DONE;
    }
    if (t->req_state == TG_REQ_DONE)
        tg_timer_disarm(&t->conn->timer);
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

/* Sends the pending request head and then the body. Returns true on progress. */
static bool tg__txn_send(struct tg_txn *t)
{
    struct tg_conn *c = t->conn;
    struct tg_upconn *u = t->up;
    struct tg_buf *in = c->in;
    ssize_t n;

    if (t->req_state == TG_REQ_HEAD) {
        struct iovec *iov = t->req_out.iov + t->req_out.off;
        int cnt = t->req_out.cnt - t->req_out.off;

        n = tg_sock_writev(&u->sock, iov, cnt);
        if (n == TG_AGAIN)
            return false;
        if (n < 0) {
            tg_txn_upstream_error(t, TG_FAIL_RESET, 502, "upstream_reset",
                                  "the upstream connection failed");
            return true;
        }
        t->sent |= n > 0;
        tg_iov_advance(&iov, &cnt, (size_t)n);
        t->req_out.off = t->req_out.cnt - cnt;
        if (cnt > 0)
            return n > 0;
        /* the head is out: its bytes and the body bytes sent with it leave the client buffer,
         * unless the request is held whole for a retry */
        if (t->req.body_kind == TG_BODY_NONE) {
            t->req_state = TG_REQ_DONE;
        } else if (t->keep_in != 0) {
            t->req_body_bytes = t->req.content_length;
            t->req_state = TG_REQ_DONE;
            tg_timer_disarm(&c->timer);
        } else {
            in->start += t->head_len + t->req_body_out;
            t->req_state = TG_REQ_BODY;
            if (t->req_scanned)
                t->req_scanned -= t->head_len + t->req_body_out;
            tg__req_body_sent(t, t->req_body_out);
            t->req_body_out = 0;
            if (tg_buf_len(in) == 0 && t->req_scanned == 0)
                in->start = in->end = 0;
        }
        tg_upconn_arm(u, t->svc->conf->response_timeout);
        return true;
    }
    if (t->req_state != TG_REQ_BODY)
        return false;

    /* stream the body: what is buffered first, then read more from the client */
    {
        const char *p = in->base + in->start;
        size_t avail = tg_buf_len(in);
        size_t send;

        if (t->req.body_kind == TG_BODY_CHUNKED) {
            size_t scanned = t->req_scanned;
            if (scanned < avail && !t->req_body_end) {
                ssize_t r = tg__req_body_take(t, p + scanned, avail - scanned);
                if (r < 0) {
                    tg__txn_body_refused(t, r);
                    return true;
                }
                t->req_scanned = scanned + (size_t)r;
            }
            send = t->req_scanned;
        } else {
            send = (size_t)tg__req_body_take(t, p, avail);
        }
        if (send > 0) {
            struct iovec iov = {(void *)p, send};

            if (!u->sock.writable)
                return false;
            n = tg_sock_writev(&u->sock, &iov, 1);
            if (n == TG_AGAIN)
                return false;
            if (n < 0) {
                tg_txn_upstream_error(t, TG_FAIL_RESET, 502, "upstream_reset",
                                      "the upstream connection failed");
                return true;
            }
            t->sent = true;
            in->start += (size_t)n;
            if (t->req.body_kind == TG_BODY_CHUNKED)
                t->req_scanned -= (size_t)n;
            tg__req_body_sent(t, (size_t)n);
            if (tg_buf_len(in) == 0)
                in->start = in->end = 0;
            return n > 0;
        }
    }
    if (t->req.body_kind == TG_BODY_CHUNKED && t->req_body_end && t->req_scanned == 0) {
        t->req_state = TG_REQ_DONE;
        tg_timer_disarm(&c->timer);
        return true;
    }
    /* need more body from the client */
    if (!c->sock.readable && !tg_sock_pending(&c->sock)) {
        tg_conn_arm(c, t->rt->cf->limits.body_timeout);
        return false;
    }
    if (tg_buf_room(in) == 0)
        tg_buf_compact(in);
    n = tg_sock_read(&c->sock, in->base + in->end, tg_buf_room(in));
    if (n == TG_AGAIN)
        return true;
    if (n <= 0) {
        tg_conn_abort(c);
        return true;
    }
    in->end += (size_t)n;
    return true;
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
    tg__iov_headers(&t->res_out, t->res.headers, t->res.num_headers, head + head_len - 2,
                    tg__res_skip, NULL);
    start = p;
    if (t->res_passthru_chunked)
        TG_PUTS(p, end, "Transfer-Encoding: chunked\r\n");
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
        if (tg__txn_retry_elsewhere(t, TG_FAIL_RPC, t->up_status, why))
            return;
        tg__txn_attempt_failed(t, TG_FAIL_RPC, t->up_status, why);
    }
    tg_rpc_group_done(t); /* an answered attempt is accounted when the next group starts, or by
                             tg_txn_record() for the last one */
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
        tg__txn_retry_elsewhere(t, TG_FAIL_STATUS, t->res.status, NULL))
        return; /* the node's answer is dropped; another node gets the request */
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
    if (take > 0)
        t->res_out.iov[t->res_out.cnt++] = (struct iovec){body, (size_t)take};
    /* head and the consumed body bytes leave the buffer once they are written */
    t->res_body_out = head_len + consumed;
    t->res_state = TG_RES_HEAD;
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
    tg__iov_headers(&t->res_out, t->res.headers, t->res.num_headers, head + head_len - 2,
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
static bool tg__txn_recv(struct tg_txn *t)
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
static bool tg__txn_flush(struct tg_txn *t)
{
    struct tg_conn *c = t->conn;

    while (t->res_out.off < t->res_out.cnt) {
        struct iovec *iov = t->res_out.iov + t->res_out.off;
        int cnt = t->res_out.cnt - t->res_out.off;
        ssize_t n;

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
    tg__txn_flush(t);
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
            tg__txn_flush(t))
            return;
        if (t->local_reply)
            return;
        u = t->up;
        if (u != NULL && u->state == TG_UP_READY) {
            if (t->req_state != TG_REQ_DONE && (u->sock.writable || t->req_state == TG_REQ_BODY))
                progress |= tg__txn_send(t);
            if (c->dead || t->local_reply || t->up == NULL)
                continue;
            if (t->res_out.off == t->res_out.cnt && !t->res_end &&
                (u->sock.readable || tg_sock_pending(&u->sock))) {
                progress |= tg__txn_recv(t);
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

/* "100 Continue" for a client that waits for it before sending its body; sent once. */
static int tg__txn_continue(struct tg_txn *t)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    struct iovec iov = {(void *)cont, sizeof(cont) - 1};

    if (t->expect_sent)
        return 0;
    t->expect_sent = true;
    if (tg_sock_writev(&t->conn->sock, &iov, 1) != (ssize_t)iov.iov_len) {
        tg_conn_abort(t->conn);
        return -1;
    }
    return 0;
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

/* Reads the rest of a body kept for replay into conn->in, then starts the first attempt. */
static void tg__txn_buffer_body(struct tg_txn *t)
{
    struct tg_conn *c = t->conn;
    struct tg_buf *in = c->in;

    while (tg_buf_len(in) < t->keep_in) {
        ssize_t n;

        if (!c->sock.readable && !tg_sock_pending(&c->sock))
            return;
        n = tg_sock_read(&c->sock, in->base + in->end, in->cap - in->end);
        if (n == TG_AGAIN)
            return;
        if (n <= 0) {
            tg_conn_abort(c);
            return;
        }
        in->end += (size_t)n;
        tg_conn_arm(c, t->rt->cf->limits.body_timeout);
    }
    t->buffering = false;
    t->req_state = TG_REQ_DONE; /* all of it is here: an answer now keeps the connection */
    tg_timer_disarm(&c->timer);
    tg__txn_body_ready(t, NULL);
}

/* Adds the body bytes already buffered to the request head's writev. Returns -1 when the
 * transaction was answered instead. */
static int tg__txn_body_iov(struct tg_txn *t)
{
    struct tg_buf *in = t->conn->in;
    const char *body = in->base + in->start + t->head_len;
    size_t avail = tg_buf_len(in) - t->head_len;
    ssize_t take;

    if (t->rpc != NULL) {
        struct tg_str b = tg_rpc_body(t); /* the client's, or composed for a group of calls */

        body = b.base;
        take = (ssize_t)b.len;
    } else if (t->keep_in != 0) {
        take = (ssize_t)t->req.content_length; /* held whole */
    } else {
        if (t->req.body_kind == TG_BODY_CHUNKED) {
            /* a retry before anything was sent scans the same bytes again */
            tg_h1_chunked_init(&t->req_chunked, TG_CHUNK_MAX_LINE, TG_CHUNK_MAX_TRAILERS);
            t->req_body_end = false;
        }
        take = tg__req_body_take(t, body, avail);
        if (take < 0) {
            tg__txn_body_refused(t, take);
            return -1;
        }
        if (t->req.body_kind == TG_BODY_CHUNKED)
            t->req_scanned = t->head_len + (size_t)take;
        if (t->req.expect_continue && avail == 0 && tg__txn_continue(t) != 0)
            return -1;
    }
    if (take > 0)
        t->req_out.iov[t->req_out.cnt++] = (struct iovec){(void *)body, (size_t)take};
    t->req_body_out = (size_t)take;
    return 0;
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
    if (tg__txn_compose_request(t, path, caps) != 0) {
        tg_txn_respond_error(t, 400, "bad_request", "the rewritten request is invalid");
        return;
    }
    if (t->req.body_kind != TG_BODY_NONE && tg__txn_body_iov(t) != 0)
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

int tg_txn_compose_for(struct tg_txn *t, struct tg_node *n, struct iovec **iov, int *cnt)
{
    struct tg_node *first = t->node;
    struct tg_str path = tg_str_make(t->scratch, t->path_len);
    struct tg_route_captures caps;
    int rc;

    tg_router_match(t->rt->router, t->req.host, path, t->req.method_id, &caps);
    t->node = n;
    rc = tg__txn_compose_request(t, path, &caps);
    t->node = first;
    if (rc == 0 && t->keep_in != 0) {
        struct tg_buf *in = t->conn->in;

        t->req_out.iov[t->req_out.cnt++] =
            (struct iovec){in->base + in->start + t->head_len, (size_t)t->req.content_length};
    }
    *iov = t->req_out.iov;
    *cnt = t->req_out.cnt;
    return rc;
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

void tg_txn_head_arrived(struct tg_txn *t)
{
    struct tg_conn *c = t->conn;

    tg__txn_parse_head(t);
    if (!c->dead && c->txn == t && !t->local_reply)
        tg_txn_run(t);
}

void tg_txn_attempt_abandoned(struct tg_txn *t, struct tg_node *n)
{
    struct tg_node_worker *nw = &n->w[t->conn->worker->id];

    nw->in_flight--;
    nw->requests++;
}

/* The current attempt failed: its node's counters, latency penalty and passive health. */
static void tg__txn_attempt_failed(struct tg_txn *t, enum tg_fail why, int status, const char *msg)
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
static bool tg__txn_retry_elsewhere(struct tg_txn *t, enum tg_fail why, int status, const char *msg)
{
    struct tg_worker *w = t->conn->worker;
    int next;

    if (!tg_retry_wanted(t, why, status))
        return false;
    if (t->num_hedges > 0) { /* a hedge in flight takes over instead of a new attempt */
        tg__txn_attempt_failed(t, why, status, msg);
        return tg_hedge_take_over(t);
    }
    t->pick.now_us = tg_loop_now_us(w->loop);
    next = tg_balance_pick(t->svc, &t->pick);
    if (next < 0 || !tg_retry_budget_take(t))
        return false;
    tg__txn_attempt_failed(t, why, status, msg);
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
    t->buffering = true;
    t->req_state = TG_REQ_BODY;
    if (t->req.expect_continue && tg_buf_len(c->in) == t->head_len && tg__txn_continue(t) != 0)
        return;
    tg_conn_arm(c, t->rt->cf->limits.body_timeout);
    tg__txn_buffer_body(t);
}

/* A JSON-RPC route reads a POST body whole, up to jsonrpc.max_body. */
static void tg__txn_rpc_proceed(struct tg_txn *t)
{
    if (t->ws) /* its frames are read in the tunnel (wsrpc.c) */
        tg__txn_attempt(t, NULL);
    else if (t->req.method_id != TG_METHOD_POST)
        tg_txn_respond_error(t, 405, "method_not_allowed", "JSON-RPC calls are POST requests");
    else if (t->req.body_kind != TG_BODY_LENGTH)
        tg_txn_respond_error(t, 411, "length_required",
                             "send the JSON-RPC body with a Content-Length");
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

void tg_txn_attempt_on(struct tg_txn *t, struct tg_service *svc)
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
    tg__txn_attempt(t, NULL);
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
        !tg_txn_identity(t, &caps))
        return;
    t->req_remaining = t->req.content_length;
    if (t->req.body_kind == TG_BODY_CHUNKED)
        tg_h1_chunked_init(&t->req_chunked, TG_CHUNK_MAX_LINE, TG_CHUNK_MAX_TRAILERS);
    tg__txn_prepare_pick(t);
    if (t->svc->conf->conc_max == 0 || tg_admission_enter(t))
        tg__txn_proceed(t, &caps);
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
    if (tg__txn_retry_elsewhere(t, why, status, msg))
        return;
    tg__txn_attempt_failed(t, why, status, msg);
    if (t->rpc != NULL && tg_rpc_group_failed(t, msg))
        return;
    tg_txn_respond_error(t, status, code, msg);
}
