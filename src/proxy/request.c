/*
 * The request side of a transaction: the request composed for a node (DESIGN §9.9-9.12), in one
 * writev of the rewritten request line, the client's header lines untouched (hop-by-hop ones
 * left out of the iovec), the headers tollgate adds and the body bytes already buffered; then
 * sent, the body streamed on with its framing checked. forward.c decides what to send where.
 */
#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#include "core/core.h"
#include "core/str.h"
#include "proxy/proxy.h"

/* Appends the header lines of a head that are kept as iovecs pointing into the head itself.
 * Adjacent kept lines share one iovec. head_end points just past the last header line. */
void tg_txn_iov_headers(struct tg_iovq *q, const struct tg_http_header *h, size_t num,
                        const char *head_end, bool (*skip)(const struct tg_http_header *, void *),
                        void *arg)
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
    bool conditional;   /* a cache fill: the node's whole answer is wanted, not a 304 */
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
        if (s->conditional &&
            ((h->name.len == 13 && strncasecmp(h->name.base, "if-none-match", 13) == 0) ||
             (h->name.len == 17 && strncasecmp(h->name.base, "if-modified-since", 17) == 0)))
            return true;
        return s->no_extensions && h->name.len == 24 &&
               strncasecmp(h->name.base, "sec-websocket-extensions", 24) == 0;
    default:
        return false;
    }
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
int tg_txn_compose_request(struct tg_txn *t, struct tg_str path,
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
        .length = t->rpc != NULL && !t->ws, /* the body sent may be another one, or decoded */
        .no_extensions = t->ws && route->rpc != NULL,
        .conditional = t->cache != NULL,
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

    tg_txn_iov_headers(&t->req_out, t->req.headers, t->req.num_headers, head + t->head_len - 2,
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

/* "100 Continue" for a client that waits for it before sending its body; sent once. */
int tg_txn_continue(struct tg_txn *t)
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

/* Adds the body bytes already buffered to the request head's writev. Returns -1 when the
 * transaction was answered instead. */
int tg_txn_body_iov(struct tg_txn *t)
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
        if (t->req.expect_continue && avail == 0 && tg_txn_continue(t) != 0)
            return -1;
    }
    if (take > 0)
        t->req_out.iov[t->req_out.cnt++] = (struct iovec){(void *)body, (size_t)take};
    t->req_body_out = (size_t)take;
    return 0;
}

/* Sends the pending request head and then the body. Returns true on progress. */
bool tg_txn_send(struct tg_txn *t)
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
        if (t->parent != NULL)
            tg_rpc_leg_sent(t);
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

int tg_txn_compose_for(struct tg_txn *t, struct tg_node *n, struct iovec **iov, int *cnt)
{
    struct tg_node *first = t->node;
    struct tg_str path = tg_str_make(t->scratch, t->path_len);
    struct tg_route_captures caps;
    int rc;

    tg_router_match(t->rt->router, t->req.host, path, t->req.method_id, &caps);
    t->node = n;
    rc = tg_txn_compose_request(t, path, &caps);
    t->node = first;
    if (rc == 0 && t->keep_in != 0) {
        struct tg_buf *in = t->conn->in;
        struct tg_str b = t->rpc != NULL ? tg_rpc_body(t)
                                         : tg_str_make(in->base + in->start + t->head_len,
                                                       (size_t)t->req.content_length);

        t->req_out.iov[t->req_out.cnt++] = (struct iovec){(void *)b.base, b.len};
    }
    *iov = t->req_out.iov;
    *cnt = t->req_out.cnt;
    return rc;
}
