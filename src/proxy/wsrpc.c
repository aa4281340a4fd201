/*
 * JSON-RPC over WebSocket (issue 6): the tunnel of a JSON-RPC route reads the frames both ways
 * (http/ws.c) so that every call the client sends over the socket meets the route's and the
 * plan's method policies and the route's limits, like a call sent by POST.
 *
 * Client to node: each text message is checked (tg_rpc_ws_message) and sent on as it was, or
 * cut down to its allowed calls; refused calls are answered here with JSON-RPC errors. Control
 * frames pass unchanged. Messages are single frames of at most websocket.max_message bytes:
 * a fragmented, binary or larger message closes the socket (1008, 1003, 1009), since it cannot
 * be checked before it is sent.
 * Node to client: frames pass unchanged and are only delimited, so the errors made here go
 * between two of the node's frames, never inside one, and a large reply streams through.
 * When the node's connection fails, the client gets a close frame 1012 (service restart): it
 * reconnects, and the new connection goes to a healthy node. So does a client whose node keeps
 * the socket open but is no longer usable (down or lagging on active probes, ejected by passive
 * health: any health flag, the balancer's own rule): each tunnel looks at its node's flags every
 * TG_WSRPC_HEALTH_MS and closes with 1012 at the first look that finds one set, between two of
 * the node's frames, if another node of the service is usable (else a reconnect would find
 * nothing better, and the client stays).
 */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/sbuf.h"
#include "http/ws.h"
#include "proxy/proxy.h"
#include "upstream/balance.h"

/* How often a tunnel looks at its node's health: the probes that set the flags run every
 * health.active.interval (1 s or more in practice), so a close comes at most this much later,
 * and a second is nothing next to the blocks a lagging node already missed. One timer per
 * tunnel, armed when it starts, so the checks of many tunnels spread over the second. */
#define TG_WSRPC_HEALTH_MS 1000

struct tg_wsrpc {
    struct tg_sbuf to_node;   /* frames for the node */
    size_t node_off;          /* of to_node, written */
    struct tg_sbuf to_client; /* frames made here, for the client */
    size_t client_off;        /* of to_client, written */
    struct tg_sbuf local, fwd;
    uint64_t node_left; /* payload bytes of the node's current frame still to pass */
    size_t node_keep;   /* bytes of up->in not passed yet (an incomplete frame head) */
    bool node_in_frame; /* between the head and the end of a node frame */
    bool closing;       /* a close frame of ours is queued: close once it is written */
    bool close_seen;    /* either side sent a close frame: the node leaving is no failure */
};

void tg_wsrpc_free(struct tg_wsrpc *s)
{
    if (s == NULL)
        return;
    tg_sbuf_dispose(&s->to_node);
    tg_sbuf_dispose(&s->to_client);
    tg_sbuf_dispose(&s->local);
    tg_sbuf_dispose(&s->fwd);
    free(s);
}

/* Queues an unmasked server frame for the client. */
static void tg__to_client(struct tg_wsrpc *s, uint8_t opcode, const void *p, size_t n)
{
    uint8_t head[TG_WS_HEAD_MAX];
    size_t h = tg_ws_write_head(head, true, opcode, n, NULL);

    tg_sbuf_add(&s->to_client, (const char *)head, h);
    tg_sbuf_add(&s->to_client, p, n);
}

/* Queues a close frame with code for the client; the tunnel ends once it is written. */
static void tg__close_client(struct tg_wsrpc *s, uint16_t code, const char *reason)
{
    uint8_t payload[TG_WS_CONTROL_MAX];
    size_t n = tg_ws_close_payload(payload, code, reason);

    tg__to_client(s, TG_WS_CLOSE, payload, n);
    s->closing = true;
}

/* Queues a masked client frame for the node (masking is required from a client, §5.3). */
static void tg__to_node(struct tg_txn *t, struct tg_wsrpc *s, const char *p, size_t n)
{
    uint8_t head[TG_WS_HEAD_MAX], mask[4];
    uint64_t r = tg_balance_rand(&t->svc->w[t->conn->worker->id]);
    size_t h, at;

    memcpy(mask, &r, 4);
    h = tg_ws_write_head(head, true, TG_WS_TEXT, n, mask);
    tg_sbuf_add(&s->to_node, (const char *)head, h);
    at = s->to_node.len;
    tg_sbuf_add(&s->to_node, p, n);
    tg_ws_unmask((uint8_t *)s->to_node.base + at, n, mask, 0);
}

/* A whole text message from the client, unmasked in place at p. */
static void tg__message(struct tg_txn *t, struct tg_wsrpc *s, char *p, size_t n,
                        const struct tg_ws_frame *f, const char *raw, size_t raw_len)
{
    int what = tg_rpc_ws_message(t, p, n, &s->local, &s->fwd);

    t->conn->worker->stats.ws_messages_in++;
    if (s->local.len > 0)
        tg__to_client(s, TG_WS_TEXT, s->local.base, s->local.len);
    if (what == TG_RPC_WS_FORWARD) {
        tg_ws_unmask((uint8_t *)p, n, f->mask, 0); /* masked again: the client's frame as sent */
        tg_sbuf_add(&s->to_node, raw, raw_len);
    } else if (what == TG_RPC_WS_SPLIT) {
        tg__to_node(t, s, s->fwd.base, s->fwd.len);
    }
}

/* Parses the client's frames in conn->in from `from`: checks and queues them. Returns false when
 * the socket is to close (a close frame of ours is queued). */
static bool tg__client_frames(struct tg_txn *t, struct tg_wsrpc *s, size_t from)
{
    struct tg_buf *in = t->conn->in;
    uint64_t max = t->rt->cf->ws_max_message;
    size_t at = from;

    while (at < in->end && !s->closing) {
        struct tg_ws_frame f;
        uint16_t code = 0;
        ssize_t h = tg_ws_parse_head((uint8_t *)in->base + at, in->end - at, true, max, &f, &code);
        char *payload;

        if (h < 0) {
            tg__close_client(s, code, "invalid frame");
            return false;
        }
        if (h == 0 || in->end - at - (size_t)h < f.len)
            break; /* the rest of the frame is still on its way */
        payload = in->base + at + h;
        if (tg_ws_is_control(f.opcode)) {
            s->close_seen |= f.opcode == TG_WS_CLOSE;
            tg_sbuf_add(&s->to_node, in->base + at, (size_t)h + f.len);
        } else if (f.opcode == TG_WS_BINARY) {
            tg__close_client(s, 1003, "JSON-RPC messages are text");
            return false;
        } else if (!f.fin || f.opcode == TG_WS_CONT) {
            tg__close_client(s, TG_WS_CLOSE_POLICY, "fragmented messages are not supported");
            return false;
        } else {
            tg_ws_unmask((uint8_t *)payload, f.len, f.mask, 0);
            tg__message(t, s, payload, f.len, &f, in->base + at, (size_t)h + f.len);
        }
        at += (size_t)h + f.len;
    }
    /* what is left is the start of a frame: moved to the front of the data area, and the
     * buffer made big enough for the whole frame (bounded: the head said it is <= max) */
    memmove(in->base + from, in->base + at, in->end - at);
    in->end = from + (in->end - at);
    if (!s->closing && in->end > from) {
        struct tg_ws_frame f;
        uint16_t code;
        ssize_t h =
            tg_ws_parse_head((uint8_t *)in->base + from, in->end - from, true, max, &f, &code);

        if (h > 0 && from + (size_t)h + f.len > in->cap) {
            t->keep_in = from - in->start + (size_t)h + (size_t)f.len;
            tg_txn_hold_room(t);
        }
    }
    return true;
}

/* Of the n node bytes at p, how many may go to the client now: whole frame heads and the
 * payload bytes they announce. An incomplete head waits for more bytes. */
static size_t tg__node_frames(struct tg_wsrpc *s, struct tg_worker *w, const uint8_t *p, size_t n)
{
    size_t at = 0;

    while (at < n) {
        if (s->node_in_frame) {
            size_t take = (size_t)TG_MIN((uint64_t)(n - at), s->node_left);

            at += take;
            s->node_left -= take;
            s->node_in_frame = s->node_left > 0;
            continue;
        }
        {
            struct tg_ws_frame f;
            uint16_t code;
            ssize_t h = tg_ws_parse_head(p + at, n - at, false, UINT64_MAX >> 1, &f, &code);

            if (h <= 0)
                break; /* incomplete (or invalid: passed on as it is, the client decides) */
            at += (size_t)h;
            s->node_left = f.len;
            s->node_in_frame = f.len > 0;
            s->close_seen |= f.opcode == TG_WS_CLOSE;
            if (f.fin && !tg_ws_is_control(f.opcode))
                w->stats.ws_messages_out++;
        }
    }
    return at;
}

static int tg__write(struct tg_sock *sock, const char *p, size_t n, size_t *off, uint64_t *count)
{
    while (*off < n) {
        struct iovec iov = {(void *)(p + *off), n - *off};
        ssize_t r;

        if (!sock->writable)
            return 0;
        r = tg_sock_writev(sock, &iov, 1);
        if (r == TG_AGAIN)
            continue;
        if (r < 0)
            return -1;
        *off += (size_t)r;
        *count += (size_t)r;
    }
    return 1;
}

void tg_wsrpc_run(struct tg_txn *t, struct tg_wsrpc *s)
{
    struct tg_conn *c = t->conn;
    struct tg_upconn *u = t->up;
    struct tg_worker *w = c->worker;
    size_t from = c->in->start + t->head_len;

    for (;;) {
        bool progress = false;
        int r;
        ssize_t n;

        if (c->dead)
            return;
        /* to the client: the node's bytes (at frame boundaries), then ours */
        r = tg_tunnel_flush(&c->sock, &t->res_out, &t->bytes_out);
        if (r < 0)
            goto close;
        if (r > 0 && u != NULL && t->res_out.cnt > 0) {
            /* the passed bytes leave up->in; an incomplete head moves to the front */
            memmove(u->in->base, u->in->base + u->in->start, s->node_keep);
            u->in->start = 0;
            u->in->end = s->node_keep;
            t->res_out.off = t->res_out.cnt = 0;
        }
        if (r > 0 && !s->node_in_frame && s->client_off < s->to_client.len) {
            r = tg__write(&c->sock, s->to_client.base, s->to_client.len, &s->client_off,
                          &t->bytes_out);
            if (r < 0)
                goto close;
            if (s->client_off == s->to_client.len) {
                s->to_client.len = s->client_off = 0;
                if (s->closing)
                    goto close;
            }
        }
        /* from the node, when everything before is out; inside a node frame, our own frames
         * wait for its end, so the node is read on */
        if (r > 0 && u != NULL && (s->to_client.len == 0 || s->node_in_frame) &&
            t->res_out.cnt == 0 && (u->sock.readable || tg_sock_pending(&u->sock))) {
            n = tg_sock_read(&u->sock, u->in->base + u->in->end, u->in->cap - u->in->end);
            if (n == 0 || (n < 0 && n != TG_AGAIN)) {
                /* the node is gone: the client reconnects (to a healthy node) */
                tg_upconn_close(u);
                t->up = u = NULL;
                if (s->node_in_frame || s->close_seen)
                    goto close; /* mid-frame nothing can follow; after a close, all is said */
                tg__close_client(s, TG_WS_CLOSE_RESTART, "node failed");
                progress = true;
            } else if (n > 0) {
                size_t pass;

                u->in->end += (size_t)n;
                pass = tg__node_frames(s, w, (uint8_t *)u->in->base, u->in->end);
                s->node_keep = u->in->end - pass;
                u->in->start = pass;
                if (pass > 0)
                    t->res_out.iov[t->res_out.cnt++] = (struct iovec){u->in->base, pass};
                if (s->node_keep == u->in->cap)
                    goto close; /* a head longer than the buffer: not WebSocket */
                progress = true;
            }
        }
        /* to the node */
        if (u != NULL) {
            r = tg__write(&u->sock, s->to_node.base, s->to_node.len, &s->node_off,
                          &t->req_body_bytes);
            if (r < 0) {
                tg_upconn_close(u);
                t->up = u = NULL;
                tg__close_client(s, TG_WS_CLOSE_RESTART, "node failed");
                progress = true;
            } else if (r > 0) {
                s->to_node.len = s->node_off = 0;
            }
        }
        /* from the client, when everything it sent before went on */
        if (!s->closing && s->to_node.len == 0 && (c->sock.readable || tg_sock_pending(&c->sock))) {
            n = tg_sock_read(&c->sock, c->in->base + c->in->end, c->in->cap - c->in->end);
            if (n == 0 || (n < 0 && n != TG_AGAIN))
                goto close;
            if (n > 0) {
                c->in->end += (size_t)n;
                tg__client_frames(t, s, from);
                progress = true;
            }
        }
        if (!progress)
            break;
        tg_conn_arm(c, t->rt->cf->ws_idle_timeout);
    }
    return;

close:
    tg_conn_abort(c);
}

/* The tunnel's node n lost its health: true when a reconnect would go elsewhere, i.e. another
 * member of the service is usable. Without one (every node lagging because the chain stopped,
 * or panic mode sending the reconnect straight back) the client stays where it is. */
static bool tg__node_replaceable(const struct tg_service *svc, const struct tg_node *n)
{
    for (size_t i = 0; i < svc->num_nodes; i++)
        if (svc->members[i].node != n && tg_member_usable(&svc->members[i]))
            return true;
    return false;
}

static void tg__on_health_timer(struct tg_loop *loop, struct tg_timer *timer);

/* Runs under tg_txn_step, so a connection closed by tg_wsrpc_run is reaped after it. */
static void tg__health_check(struct tg_txn *t)
{
    struct tg_wsrpc *s = *tg_rpc_ws(t);
    struct tg_upconn *u = t->up;

    if (t->conn->dead || s == NULL || s->closing || u == NULL)
        return; /* the tunnel ends anyway */
    if (atomic_load_explicit(&u->node->health.flags, memory_order_relaxed) == 0 ||
        s->node_in_frame || s->close_seen || !tg__node_replaceable(t->svc, u->node)) {
        /* healthy, nowhere better to go, or a close cannot go now (inside a node frame) or is
         * under way: look again later */
        tg_timer_arm(t->conn->worker->loop, &t->retry_timer, TG_WSRPC_HEALTH_MS,
                     tg__on_health_timer);
        return;
    }
    tg__close_client(s, TG_WS_CLOSE_RESTART, "node unhealthy");
    tg_wsrpc_run(t, s);
}

static void tg__on_health_timer(struct tg_loop *loop, struct tg_timer *timer)
{
    (void)loop;
    tg_txn_step(TG_CONTAINER_OF(timer, struct tg_txn, retry_timer), tg__health_check);
}

struct tg_wsrpc *tg_wsrpc_start(struct tg_txn *t)
{
    struct tg_wsrpc *s = tg_calloc(1, sizeof(*s));
    struct tg_upconn *u = t->up;
    size_t from = t->conn->in->start + t->head_len;
    size_t after = 0;

    /* the node's bytes after its 101 head are already queued in res_out as one iovec: they
     * are delimited like the ones to come */
    if (t->res_out.cnt > 0) {
        struct iovec *last = &t->res_out.iov[t->res_out.cnt - 1];
        const char *base = u->in->base;

        if ((const char *)last->iov_base >= base &&
            (const char *)last->iov_base < base + u->in->cap) {
            size_t at = (size_t)((const char *)last->iov_base - base);
            size_t pass = tg__node_frames(s, t->conn->worker, (uint8_t *)base + at, last->iov_len);

            after = last->iov_len - pass;
            last->iov_len = pass;
            /* the unpassed tail (an incomplete head) is kept after the passed bytes */
            u->in->start = at + pass;
        }
    }
    s->node_keep = after;
    if (after == 0)
        u->in->start = u->in->end;
    /* frames the client sent with its upgrade */
    tg__client_frames(t, s, from);
    /* retry_timer is free once the node answered (a hedge timer left armed is moot: this
     * replaces it); tg_txn_free disarms it */
    tg_timer_arm(t->conn->worker->loop, &t->retry_timer, TG_WSRPC_HEALTH_MS, tg__on_health_timer);
    return s;
}
