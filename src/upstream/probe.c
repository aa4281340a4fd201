/*
 * Active health checks, run by the control thread (see probe.h for the rules).
 *
 * A probe is a one-shot HTTP/1.1 exchange on its own connection ("Connection: close"): probes
 * are rare, and a fresh connection also tests what a worker does when its pool is empty. The
 * probe holds a reference to its node, so a reload that drops the node cannot free it under
 * the probe; the outcome is applied with the settings of the snapshot current when the probe
 * ends, and dropped when that snapshot no longer has the node.
 *
 * Thread rules: everything here runs on the control thread. struct tg_probe_state is written by
 * this file only. The health flags are shared with the workers: only the DOWN and LAGGING bits
 * are changed here, with atomic or/and so that the workers' EJECTED bit is never lost.
 */
#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/core.h"
#include "core/sbuf.h"
#include "http/h1.h"
#include "net/sock.h"
#include "net/tls.h"
#include "obs/log.h"
#include "proxy/proxy.h"
#include "upstream/probe.h"
#include "upstream/probe_rpc.h"

#define TG_PROBE_MAX_SLEEP 250   /* ms between ticks at most: how soon a reload is followed */
#define TG_PROBE_STAGGER   25    /* ms between the probe starts of one round, at most */
#define TG_PROBE_HEAD_MAX  16384 /* bytes of a response head */
#define TG_PROBE_BODY_MAX  65536 /* bytes of a JSON-RPC answer */
/* bytes of a JSON-RPC answer that carries the finalized block: with its transaction hashes, a
 * busy chain's block is several hundred KiB, and a large block must not fail the probe */
#define TG_PROBE_BLOCK_MAX (4 << 20)
#define TG_PROBE_HEADERS   64

enum tg_probe_phase {
    TG_PH_WAIT,      /* staggered start */
    TG_PH_CONNECT,   /* TCP connect in progress */
    TG_PH_HANDSHAKE, /* TLS */
    TG_PH_SEND,
    TG_PH_HEAD,
    TG_PH_BODY, /* JSON-RPC only: an HTTP probe is decided by the status line */
};

struct tg_probe {
    struct tg_sock sock;
    struct tg_timer timer; /* the staggered start, then the probe's timeout */
    struct tg_probe *next, *prev;
    struct tg_node *node; /* a reference, held until the probe ends */
    uint8_t kind;         /* enum tg_probe_kind */
    uint8_t phase;        /* enum tg_probe_phase */
    bool head_request;
    bool batch;     /* JSON-RPC: other calls ride along with the head query in a batch */
    bool syncing;   /* JSON-RPC: eth_syncing is in the batch (id 2) */
    bool finalized; /* JSON-RPC: eth_getBlockByNumber("finalized") is in the batch (id 3) */
    tg_msec_t timeout;
    struct tg_sbuf req;
    size_t sent;
    char *in; /* the response head, then its body (chunks decoded in place) */
    size_t in_len, in_cap;
    size_t head_len, body_len;
    uint8_t body_kind; /* enum tg_http_body_kind */
    uint64_t content_length;
    struct tg_h1_chunked chunked;
    struct tg_probe_result r;
};

static struct {
    struct tg_loop *loop;
    struct tg_timer tick;
    struct tg_probe *probes; /* every probe not yet ended */
    uint32_t rr;             /* picks among a named node's addresses */
    bool started;
} tg__prober;

static void tg__probe_on_event(struct tg_loop *loop, struct tg_watch *w, unsigned events);
static void tg__probe_on_timeout(struct tg_loop *loop, struct tg_timer *t);
static void tg__probe_apply(struct tg_node *n, uint8_t kind, const struct tg_probe_result *r);

/* ---- one probe: connect, send, read ------------------------------------------------------ */

static void tg__probe_request(struct tg_probe *p, const struct tg_service_conf *sc)
{
    const struct tg_health_conf *hc = &sc->health;
    const struct tg_node_conf *nc = p->node->conf;

    if (p->kind == TG_PROBE_HTTP) {
        p->head_request = strcmp(hc->http_method, "HEAD") == 0;
        tg_sbuf_printf(&p->req,
                       "%s %s%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tollgate-health\r\n"
                       "Connection: close\r\n\r\n",
                       hc->http_method, nc->base_path, hc->http_path, nc->authority);
        return;
    }
    {
        struct tg_sbuf body = {0};

        p->syncing = hc->syncing;
        p->finalized = hc->finalized && !p->node->health.probe.no_batch;
        p->batch = p->syncing || p->finalized;
        tg_sbuf_printf(&body, "%s{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":", p->batch ? "[" : "");
        tg_sbuf_json(&body, hc->rpc_method, strlen(hc->rpc_method));
        tg_sbuf_printf(&body, ",\"params\":[]}");
        if (p->syncing)
            tg_sbuf_printf(&body, ",{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"eth_syncing\","
                                  "\"params\":[]}");
        if (p->finalized)
            tg_sbuf_printf(&body, ",{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":"
                                  "\"eth_getBlockByNumber\",\"params\":[\"finalized\",false]}");
        if (p->batch)
            tg_sbuf_printf(&body, "]");
        tg_sbuf_printf(&p->req,
                       "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tollgate-health\r\n"
                       "Content-Type: application/json\r\nAccept: application/json\r\n"
                       "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                       nc->base_path[0] != '\0' ? nc->base_path : "/", nc->authority, body.len,
                       body.base);
        tg_sbuf_dispose(&body);
    }
}

static void tg__probe_fail(struct tg_probe *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void tg__probe_fail(struct tg_probe *p, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(p->r.why, sizeof(p->r.why), fmt, ap);
    va_end(ap);
    p->r.ok = false;
}

/* "probe: connect refused" reads better in /status than strerror's wording. */
static void tg__probe_connect_failed(struct tg_probe *p, int err)
{
    if (err == ECONNREFUSED)
        tg__probe_fail(p, "probe: connect refused");
    else
        tg__probe_fail(p, "probe: connect: %s", strerror(err));
}

/* A failed read or write: the reason is errno, or OpenSSL's error queue for TLS (which this
 * also empties, so it does not leak into the next TLS call on this thread). */
static void tg__probe_io_failed(struct tg_probe *p, const char *what)
{
    char err[80];

    if (p->sock.ssl != NULL)
        tg__probe_fail(p, "probe: %s: %s", what, tg_tls_error(p->sock.ssl, err, sizeof(err)));
    else
        tg__probe_fail(p, "probe: %s: %s", what, strerror(errno));
}

/* Opens the connection. Returns 0, or -1 with r.why set. */
static int tg__probe_connect(struct tg_probe *p)
{
    struct tg_node *n = p->node;
    struct tg_addr addr;
    int fd, one = 1;

    if (tg_node_address(n, tg__prober.rr++, &addr) != 0) {
        tg__probe_fail(p, "probe: %s does not resolve", n->conf->host);
        return -1;
    }
    fd = socket(addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        tg__probe_fail(p, "probe: socket: %s", strerror(errno));
        return -1;
    }
    if (addr.ss.ss_family != AF_UNIX)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    p->sock.watch.fd = fd;
    p->sock.watch.cb = tg__probe_on_event;
    if (connect(fd, (struct sockaddr *)&addr.ss, addr.len) == 0) {
        p->phase = TG_PH_SEND;
        p->sock.writable = true;
    } else if (errno == EINPROGRESS) {
        p->phase = TG_PH_CONNECT;
    } else {
        tg__probe_connect_failed(p, errno);
        goto fail;
    }
    if (n->conf->scheme == TG_SCHEME_HTTPS) {
        p->sock.ssl = tg_tls_connect_new(n->tls, fd, n->conf->host, n->conf->port);
        if (p->sock.ssl == NULL) {
            tg__probe_fail(p, "probe: cannot start TLS");
            goto fail;
        }
        p->sock.handshaking = true;
        if (p->phase == TG_PH_SEND)
            p->phase = TG_PH_HANDSHAKE;
    }
    if (tg_loop_add(tg__prober.loop, &p->sock.watch) != 0) {
        tg__probe_fail(p, "probe: cannot watch the socket");
        goto fail;
    }
    return 0;
fail:
    tg_sock_close(&p->sock);
    return -1;
}

/* Ends a probe: records the outcome on its node and frees it. A probe ends only from its own
 * socket event or its own timer, and nothing else closes it during an event batch, so no
 * later event of the batch can name it. */
static void tg__probe_end(struct tg_probe *p)
{
    struct tg_node *n = p->node;

    tg_timer_disarm(&p->timer);
    tg_sock_close(&p->sock);
    if (p->prev != NULL)
        p->prev->next = p->next;
    else
        tg__prober.probes = p->next;
    if (p->next != NULL)
        p->next->prev = p->prev;
    n->health.probe.in_flight = false;
    tg__probe_apply(n, p->kind, &p->r);
    tg_node_drop(n);
    tg_sbuf_dispose(&p->req);
    free(p->in);
    free(p);
}

/* The most body bytes this probe's answer may have. */
static size_t tg__probe_body_max(const struct tg_probe *p)
{
    return p->finalized ? TG_PROBE_BLOCK_MAX : TG_PROBE_BODY_MAX;
}

/* The head of the response is in. Returns TG_OK when the probe is decided, TG_AGAIN when the
 * body is needed. */
static int tg__probe_head(struct tg_probe *p, const struct tg_h1_response *res)
{
    p->r.status = res->status;
    if (p->kind == TG_PROBE_HTTP) {
        p->r.ok = true; /* the status is judged against `expect` when the outcome is applied */
        return TG_OK;
    }
    if (res->status != 200) {
        /* 400 is how some nodes turn batches away; the batch may be there for the finalized
         * call only, which must not fail the probe (see tg_probe_rpc_answer) */
        p->r.refused = res->status == 400 && p->batch && !p->syncing;
        snprintf(p->r.why, sizeof(p->r.why), "probe: status %d", res->status);
        return TG_OK;
    }
    if (res->body_kind == TG_BODY_NONE ||
        (res->body_kind == TG_BODY_LENGTH && res->content_length > tg__probe_body_max(p))) {
        tg__probe_fail(p, "probe: %s",
                       res->body_kind == TG_BODY_NONE ? "empty answer" : "answer too large");
        return TG_OK;
    }
    p->body_kind = res->body_kind;
    p->content_length = res->content_length;
    if (p->body_kind == TG_BODY_CHUNKED)
        tg_h1_chunked_init(&p->chunked, 1024, 4096);
    p->phase = TG_PH_BODY;
    return TG_AGAIN;
}

/* Parses what was read so far; eof tells that the node closed. Returns TG_OK when the probe is
 * decided (r filled), TG_AGAIN when more bytes are needed. */
static int tg__probe_input(struct tg_probe *p, bool eof)
{
    static struct tg_http_header headers[TG_PROBE_HEADERS];
    static const struct tg_h1_limits lim = {8192, TG_PROBE_HEAD_MAX, TG_PROBE_HEADERS};

    while (p->phase == TG_PH_HEAD) {
        struct tg_h1_response res = {.headers = headers};
        ssize_t n = tg_h1_parse_response(p->in, p->in_len, &res, &lim, p->head_request);

        if (n == TG_H1_INCOMPLETE) {
            if (!eof)
                return TG_AGAIN;
            tg__probe_fail(p, "probe: the node closed before answering");
            return TG_OK;
        }
        if (n < 0 || res.status == 101) {
            tg__probe_fail(p, "probe: invalid response: %s", n < 0 ? res.error : "101");
            return TG_OK;
        }
        if (res.status < 200) { /* an interim answer: the final one follows */
            memmove(p->in, p->in + n, p->in_len - (size_t)n);
            p->in_len -= (size_t)n;
            continue;
        }
        p->head_len = (size_t)n;
        if (tg__probe_head(p, &res) == TG_OK)
            return TG_OK;
    }
    if (p->body_kind == TG_BODY_CHUNKED) {
        size_t at = p->head_len + p->body_len, data = 0;
        ssize_t n = tg_h1_chunked_decode(&p->chunked, p->in + at, p->in_len - at, &data);

        p->body_len += data;
        p->in_len = p->head_len + p->body_len; /* the framing bytes are consumed */
        if (n == TG_H1_INVALID) {
            tg__probe_fail(p, "probe: invalid chunked answer");
            return TG_OK;
        }
        if (n == TG_H1_INCOMPLETE && !eof)
            return TG_AGAIN;
        if (n == TG_H1_INCOMPLETE)
            goto cut;
    } else {
        p->body_len = p->in_len - p->head_len;
        if (p->body_kind == TG_BODY_LENGTH && p->body_len >= p->content_length)
            p->body_len = p->content_length;
        else if (!eof)
            return TG_AGAIN;
        else if (p->body_kind == TG_BODY_LENGTH)
            goto cut;
    }
    p->r.ok = tg_probe_rpc_answer(p->batch, p->syncing, p->finalized, p->in + p->head_len,
                                  p->body_len, &p->r);
    return TG_OK;
cut:
    tg__probe_fail(p, "probe: the node closed in the middle of the answer");
    return TG_OK;
}

/* Reads what the socket has. Returns TG_OK when decided, TG_AGAIN to wait. */
static int tg__probe_read(struct tg_probe *p)
{
    while (p->sock.readable || tg_sock_pending(&p->sock)) {
        ssize_t n;
        int rc;

        if (p->in_len == p->in_cap) {
            size_t max = TG_PROBE_HEAD_MAX + tg__probe_body_max(p);

            if (p->in_cap >= max) {
                tg__probe_fail(p, "probe: answer too large");
                return TG_OK;
            }
            p->in_cap = p->in_cap ? p->in_cap * 2 : 4096;
            if (p->in_cap > max)
                p->in_cap = max;
            p->in = tg_realloc(p->in, p->in_cap);
        }
        n = tg_sock_read(&p->sock, p->in + p->in_len, p->in_cap - p->in_len);
        if (n == TG_AGAIN)
            return TG_AGAIN;
        if (n < 0) {
            tg__probe_io_failed(p, "read");
            return TG_OK;
        }
        p->in_len += (size_t)n;
        rc = tg__probe_input(p, n == 0);
        if (rc != TG_AGAIN || n == 0)
            return TG_OK;
    }
    return TG_AGAIN;
}

/* Moves the probe on as far as the socket allows. Returns TG_OK when decided, TG_AGAIN to
 * wait. */
static int tg__probe_advance(struct tg_probe *p)
{
    if (p->phase == TG_PH_CONNECT) {
        int soerr = 0;
        socklen_t len = sizeof(soerr);

        if (!p->sock.writable)
            return TG_AGAIN;
        if (getsockopt(p->sock.watch.fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr) {
            tg__probe_connect_failed(p, soerr ? soerr : errno);
            return TG_OK;
        }
        p->phase = p->sock.ssl != NULL ? TG_PH_HANDSHAKE : TG_PH_SEND;
    }
    if (p->phase == TG_PH_HANDSHAKE) {
        int rc = tg_sock_handshake(&p->sock);
        char err[80];

        if (rc == TG_AGAIN)
            return TG_AGAIN;
        if (rc != TG_OK) {
            tg__probe_fail(p, "probe: TLS handshake: %s",
                           tg_tls_error(p->sock.ssl, err, sizeof(err)));
            return TG_OK;
        }
        p->phase = TG_PH_SEND;
        p->sock.readable = p->sock.writable = true;
    }
    while (p->phase == TG_PH_SEND) {
        struct iovec iov = {p->req.base + p->sent, p->req.len - p->sent};
        ssize_t n;

        if (!p->sock.writable)
            return TG_AGAIN;
        n = tg_sock_writev(&p->sock, &iov, 1);
        if (n == TG_AGAIN)
            return TG_AGAIN;
        if (n < 0) {
            tg__probe_io_failed(p, "send");
            return TG_OK;
        }
        p->sent += (size_t)n;
        if (p->sent == p->req.len)
            p->phase = TG_PH_HEAD;
    }
    return tg__probe_read(p);
}

static void tg__probe_on_event(struct tg_loop *loop, struct tg_watch *w, unsigned events)
{
    struct tg_probe *p = TG_CONTAINER_OF(w, struct tg_probe, sock.watch);

    if (events & TG_EV_READ)
        p->sock.readable = true;
    if (events & TG_EV_HUP)
        p->sock.hup = true;
    if (events & TG_EV_WRITE)
        p->sock.writable = true;
    if (tg__probe_advance(p) != TG_AGAIN)
        tg__probe_end(p);
}

static void tg__probe_on_timeout(struct tg_loop *loop, struct tg_timer *t)
{
    struct tg_probe *p = TG_CONTAINER_OF(t, struct tg_probe, timer);

    tg__probe_fail(p, "probe: %s", p->phase <= TG_PH_HANDSHAKE ? "connect timeout" : "timeout");
    tg__probe_end(p);
}

/* The staggered start is due: connect, and bound the whole probe by its timeout. */
static void tg__probe_on_start(struct tg_loop *loop, struct tg_timer *t)
{
    struct tg_probe *p = TG_CONTAINER_OF(t, struct tg_probe, timer);

    if (tg__probe_connect(p) != 0) {
        tg__probe_end(p);
        return;
    }
    tg_timer_arm(loop, &p->timer, p->timeout, tg__probe_on_timeout);
}

static void tg__probe_new(struct tg_node *n, const struct tg_service_conf *sc, tg_msec_t delay)
{
    struct tg_probe *p = tg_calloc(1, sizeof(*p));

    p->node = tg_node_take(n);
    p->kind = sc->health.probe;
    p->phase = TG_PH_WAIT;
    p->timeout = sc->health.timeout;
    p->sock.watch.fd = -1;
    tg__probe_request(p, sc);
    p->next = tg__prober.probes;
    if (p->next != NULL)
        p->next->prev = p;
    tg__prober.probes = p;
    n->health.probe.in_flight = true;
    tg_timer_arm(tg__prober.loop, &p->timer, delay, tg__probe_on_start);
}

/* ---- outcomes ------------------------------------------------------------------------------ */

static void tg__flag_set(struct tg_node *n, unsigned bit)
{
    atomic_fetch_or_explicit(&n->health.flags, bit, memory_order_relaxed);
}

static void tg__flag_clear(struct tg_node *n, unsigned bit, tg_msec_t now)
{
    unsigned was = atomic_fetch_and_explicit(&n->health.flags, ~bit, memory_order_relaxed);

    if ((was & bit) && (was & ~bit & (TG_NODE_DOWN | TG_NODE_LAGGING)) == 0)
        atomic_store_explicit(&n->health.usable_at, (long long)now, memory_order_relaxed);
}

/* A failure reason without its "probe: " prefix, for log lines that already say what it is. */
static const char *tg__reason(const char *why)
{
    return strncmp(why, "probe: ", 7) == 0 ? why + 7 : why;
}

static bool tg__flag_has(const struct tg_node *n, unsigned bit)
{
    return (atomic_load_explicit(&n->health.flags, memory_order_relaxed) & bit) != 0;
}

/* The service of the current snapshot that has node n, or NULL. A reload reuses a node only
 * in a service of the same name, so only that service is searched. */
static struct tg_service *tg__service_of(const struct tg_node *n)
{
    const struct tg_upstreams *up = &tg_instance.rt->up;

    for (size_t i = 0; i < up->num_services; i++) {
        if (strcmp(up->services[i].conf->name, n->service) != 0)
            continue;
        for (size_t j = 0; j < up->services[i].num_nodes; j++) {
            if (up->services[i].members[j].node == n)
                return &up->services[i];
        }
    }
    return NULL;
}

/* Whether a node's head counts for the best head: it is up and its last probe answered. A
 * head is known once head_changed_at is set (block 0 is a real head on a fresh chain). */
static bool tg__head_counts(const struct tg_node *n)
{
    return !tg__flag_has(n, TG_NODE_DOWN) && n->health.probe.last_ok &&
           n->health.probe.head_changed_at != 0;
}

/*
 * Decides whether node n of a JSON-RPC service lags, against the other nodes that are up: more
 * than max_block_lag behind the best head, syncing, or a head that has not moved for
 * stall_after while another node's head moved in that time (so a chain that halts everywhere
 * does not take every node out). Nodes whose last probe failed keep their state: they are down
 * or about to be, which is a different matter.
 */
static void tg__lag_check(const struct tg_service *svc, struct tg_node *n, tg_msec_t now)
{
    const struct tg_health_conf *hc = &svc->conf->health;
    const struct tg_probe_state *st = &n->health.probe;
    uint64_t head = atomic_load_explicit(&n->health.head_block, memory_order_relaxed), best = head;
    bool others_moved = false, stalled;
    char why[112] = "";

    if (!st->last_ok || st->head_changed_at == 0)
        return;
    for (size_t i = 0; i < svc->num_nodes; i++) {
        const struct tg_node *m = svc->members[i].node;
        uint64_t h = atomic_load_explicit(&m->health.head_block, memory_order_relaxed);

        if (m == n || !tg__head_counts(m))
            continue;
        if (h > best)
            best = h;
        if (now - m->health.probe.head_changed_at < hc->stall_after)
            others_moved = true;
    }
    stalled = now - st->head_changed_at >= hc->stall_after && others_moved;
    if (st->syncing)
        snprintf(why, sizeof(why), "probe: eth_syncing says the node is syncing, at head %llu",
                 (unsigned long long)head);
    else if (hc->max_block_lag > 0 && best - head > hc->max_block_lag)
        snprintf(why, sizeof(why), "probe: head %llu is %llu blocks behind %llu",
                 (unsigned long long)head, (unsigned long long)(best - head),
                 (unsigned long long)best);
    else if (stalled)
        snprintf(why, sizeof(why), "probe: head %llu has not moved for %llums while others did",
                 (unsigned long long)head, (unsigned long long)(now - st->head_changed_at));
    if (why[0] != '\0') {
        tg_node_set_error(n, "%s", why);
        if (!tg__flag_has(n, TG_NODE_LAGGING)) {
            tg__flag_set(n, TG_NODE_LAGGING);
            tg_log(TG_LOG_WARN, "service %s: node %s is lagging (%s)", svc->conf->name,
                   n->conf->url, tg__reason(why));
        }
    } else if (tg__flag_has(n, TG_NODE_LAGGING)) {
        tg__flag_clear(n, TG_NODE_LAGGING, now);
        tg_log(TG_LOG_INFO, "service %s: node %s caught up (head %llu, best %llu)", svc->conf->name,
               n->conf->url, (unsigned long long)head, (unsigned long long)best);
    }
}

static void tg__probe_record_head(struct tg_node *n, const struct tg_probe_result *r, tg_msec_t now)
{
    struct tg_probe_state *st = &n->health.probe;
    uint64_t old = atomic_load_explicit(&n->health.head_block, memory_order_relaxed);

    if (r->head != old || st->head_changed_at == 0) {
        atomic_store_explicit(&n->health.head_block, r->head, memory_order_relaxed);
        st->head_changed_at = now;
    }
    st->syncing = r->syncing;
    atomic_store_explicit(&n->health.finalized_block, r->finalized, memory_order_relaxed);
}

/* Counts a probe outcome into the node's runs and moves it down or up. */
static void tg__probe_count(const struct tg_service *svc, struct tg_node *n, bool ok,
                            const char *why, tg_msec_t now)
{
    const struct tg_health_conf *hc = &svc->conf->health;
    struct tg_probe_state *st = &n->health.probe;

    if (!ok) {
        st->probes_failed++;
        st->ok_run = 0;
        st->fail_run++;
        tg_node_set_error(n, "%s", why);
        if (st->fail_run >= hc->fall && !tg__flag_has(n, TG_NODE_DOWN)) {
            tg__flag_set(n, TG_NODE_DOWN);
            tg_log(TG_LOG_WARN, "service %s: node %s is down after %u failed probe%s (%s)",
                   svc->conf->name, n->conf->url, st->fail_run, st->fail_run == 1 ? "" : "s",
                   tg__reason(why));
        }
        return;
    }
    st->probes_ok++;
    st->fail_run = 0;
    st->ok_run++;
    if (st->ok_run >= hc->rise && tg__flag_has(n, TG_NODE_DOWN)) {
        /* A JSON-RPC node coming back must not take traffic while it is still behind. */
        if (hc->probe == TG_PROBE_JSONRPC)
            tg__lag_check(svc, n, now);
        tg__flag_clear(n, TG_NODE_DOWN, now);
        atomic_store_explicit(&n->health.usable_at, (long long)now, memory_order_relaxed);
        tg_log(TG_LOG_INFO, "service %s: node %s is up after %u good probe%s", svc->conf->name,
               n->conf->url, st->ok_run, st->ok_run == 1 ? "" : "s");
    }
    if (st->ok_run >= hc->rise && tg__flag_has(n, TG_NODE_EJECTED)) {
        /* `rise` good probes in a row also end a passive ejection (as Envoy's
         * successful_active_health_check_uneject_host): a restarted node returns within rise
         * probes instead of waiting out base_ejection for its trial request. */
        atomic_store_explicit(&n->health.failures, 0, memory_order_relaxed);
        tg__flag_clear(n, TG_NODE_EJECTED, now);
        tg_log(TG_LOG_INFO, "service %s: node %s is back: %u good probes end its ejection",
               svc->conf->name, n->conf->url, st->ok_run);
    }
}

static void tg__probe_apply(struct tg_node *n, uint8_t kind, const struct tg_probe_result *r)
{
    struct tg_service *svc = tg__service_of(n);
    struct tg_probe_state *st = &n->health.probe;
    tg_msec_t now = tg_loop_now(tg__prober.loop);
    char why[112];
    bool ok = r->ok;

    /* Gone from the configuration, or its probe changed while this one ran. */
    if (svc == NULL || svc->conf->health.probe != kind)
        return;
    if (r->refused && !st->no_batch) {
        /* The node does not take the batch that asked for its finalized block: it is probed
         * again at once, and from now on, without that call, and this probe does not count. */
        st->no_batch = true;
        tg_log(TG_LOG_INFO,
               "service %s: node %s refused the probe's batch (%s): its probes no longer ask "
               "for its finalized block",
               svc->conf->name, n->conf->url, tg__reason(r->why));
        tg__probe_new(n, svc->conf, 0);
        return;
    }
    snprintf(why, sizeof(why), "%s", r->why[0] != '\0' ? r->why : "probe: failed");
    if (ok && kind == TG_PROBE_HTTP && !tg_status_in(&svc->conf->health.expect, r->status)) {
        ok = false;
        snprintf(why, sizeof(why), "probe: status %d", r->status);
    }
    st->last_at = tg_loop_wall_ms(tg__prober.loop);
    st->last_ok = ok;
    st->last_status = r->status;
    if (ok && kind == TG_PROBE_JSONRPC)
        tg__probe_record_head(n, r, now);
    tg__probe_count(svc, n, ok, why, now);
    if (kind != TG_PROBE_JSONRPC)
        return;
    /* The end of a round: every node of the service has answered (or failed) by now. */
    for (size_t i = 0; i < svc->num_nodes; i++) {
        if (svc->members[i].node->health.probe.in_flight)
            return;
    }
    for (size_t i = 0; i < svc->num_nodes; i++)
        tg__lag_check(svc, svc->members[i].node, now);
}

/* ---- schedule ------------------------------------------------------------------------------ */

/* A service without active checks (any more, after a reload), or bits the service's probe no
 * longer decides (LAGGING once the probe is not JSON-RPC): they are cleared. */
static void tg__service_unprobed(const struct tg_service *svc, unsigned bits, tg_msec_t now)
{
    for (size_t i = 0; i < svc->num_nodes; i++) {
        struct tg_node *n = svc->members[i].node;
        unsigned had = atomic_load_explicit(&n->health.flags, memory_order_relaxed) & bits;

        if (n->health.probe.in_flight)
            continue; /* its outcome is dropped at the end, then this runs again */
        if (bits & TG_NODE_DOWN) {
            n->health.probe.ok_run = n->health.probe.fail_run = 0;
            n->health.probe.next_at = 0;
        }
        if (had == 0)
            continue;
        tg__flag_clear(n, had, now);
        tg_log(TG_LOG_INFO, "service %s: node %s is no longer %s: the service has no %s now",
               svc->conf->name, n->conf->url,
               had == (TG_NODE_DOWN | TG_NODE_LAGGING) ? "down nor lagging"
               : had == TG_NODE_DOWN                   ? "down"
                                                       : "lagging",
               bits & TG_NODE_DOWN ? "active health checks" : "JSON-RPC probe");
    }
}

/* When the service's next round is due; 0 when it has no active checks. New nodes join the
 * schedule of the others; a shorter interval after a reload takes effect at once. */
static tg_msec_t tg__service_due(const struct tg_service *svc, size_t index, tg_msec_t now)
{
    const struct tg_health_conf *hc = &svc->conf->health;
    tg_msec_t due = 0;

    if (hc->probe == TG_PROBE_NONE || svc->num_nodes == 0) {
        tg__service_unprobed(svc, TG_NODE_DOWN | TG_NODE_LAGGING, now);
        return 0;
    }
    if (hc->probe != TG_PROBE_JSONRPC)
        tg__service_unprobed(svc, TG_NODE_LAGGING, now);
    for (size_t i = 0; i < svc->num_nodes; i++) {
        tg_msec_t at = svc->members[i].node->health.probe.next_at;

        if (at != 0 && (due == 0 || at < due))
            due = at;
    }
    if (due == 0) /* a new service: spread the first rounds of services a little */
        due = now + TG_MIN(index * TG_PROBE_STAGGER % 1000, hc->interval / 2);
    if (due > now + hc->interval)
        due = now + hc->interval;
    return due;
}

static void tg__round_start(const struct tg_service *svc, tg_msec_t now)
{
    const struct tg_health_conf *hc = &svc->conf->health;
    tg_msec_t step = TG_MIN(hc->interval / (4 * svc->num_nodes), TG_PROBE_STAGGER), delay = 0;

    for (size_t i = 0; i < svc->num_nodes; i++) {
        struct tg_node *n = svc->members[i].node;

        n->health.probe.next_at = now + hc->interval;
        if (n->health.probe.in_flight)
            continue; /* still on the previous round: at most one probe per node */
        tg__probe_new(n, svc->conf, delay);
        delay += step;
    }
}

static void tg__probe_tick(struct tg_loop *loop, struct tg_timer *t)
{
    const struct tg_upstreams *up = &tg_instance.rt->up;
    tg_msec_t now = tg_loop_now(loop), wake = now + TG_PROBE_MAX_SLEEP;

    for (size_t i = 0; i < up->num_services; i++) {
        const struct tg_service *svc = &up->services[i];
        tg_msec_t due = tg__service_due(svc, i, now);

        if (due == 0)
            continue;
        if (due <= now) {
            tg__round_start(svc, now);
            due = now + svc->conf->health.interval;
        } else {
            for (size_t j = 0; j < svc->num_nodes; j++) /* new nodes join this schedule */
                svc->members[j].node->health.probe.next_at = due;
        }
        if (due < wake)
            wake = due;
    }
    tg_timer_arm(loop, t, wake > now ? wake - now : 1, tg__probe_tick);
}

void tg_probe_start(struct tg_loop *control_loop)
{
    tg__prober.loop = control_loop;
    tg__prober.started = true;
    tg_timer_arm(control_loop, &tg__prober.tick, 0, tg__probe_tick);
}

void tg_probe_stop(void)
{
    if (!tg__prober.started)
        return;
    tg_timer_disarm(&tg__prober.tick);
    while (tg__prober.probes != NULL) {
        struct tg_probe *p = tg__prober.probes;

        tg__prober.probes = p->next;
        tg_timer_disarm(&p->timer);
        tg_sock_close(&p->sock);
        p->node->health.probe.in_flight = false;
        tg_node_drop(p->node);
        tg_sbuf_dispose(&p->req);
        free(p->in);
        free(p);
    }
    tg__prober.started = false;
}
