/*
 * Connections to nodes: opening them (TCP, TLS or unix), the per-worker keep-alive pool, and the
 * connect, response and pool-idle timeouts.
 *
 * A connection goes back to the pool only after a complete exchange (§9.14); the caller decides
 * that. A pooled connection that turns readable has been closed by the node or has sent bytes
 * nobody asked for: either way it is closed. Pools are per worker, so no lock is taken. A
 * lingering connection (tg_upconn_linger) waits for an answer nobody reads, outside the pool.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/core.h"
#include "net/tls.h"
#include "proxy/proxy.h"

static void tg__upconn_free(struct tg_upconn *u)
{
    struct tg_worker *w = u->worker;

    if (u->freed)
        return;
    u->freed = true;
    tg_timer_disarm(&u->timer);
    tg_sock_close(&u->sock);
    tg_buf_put(&w->bufs, u->in);
    u->in = NULL;
    u->dead = true;
    u->next_free = w->dead_upconns;
    w->dead_upconns = u;
}

static void tg__pool_unlink(struct tg_worker *w, struct tg_upconn *u)
{
    struct tg_node_worker *nw = &u->node->w[w->id];

    if (u->pool_prev != NULL)
        u->pool_prev->pool_next = u->pool_next;
    else
        nw->idle = u->pool_next;
    if (u->pool_next != NULL)
        u->pool_next->pool_prev = u->pool_prev;
    u->pool_next = u->pool_prev = NULL;
    nw->idle_count--;
}

static void tg__linger_unlink(struct tg_worker *w, struct tg_upconn *u)
{
    if (u->pool_prev != NULL)
        u->pool_prev->pool_next = u->pool_next;
    else
        w->lingering = u->pool_next;
    if (u->pool_next != NULL)
        u->pool_next->pool_prev = u->pool_prev;
    u->pool_next = u->pool_prev = NULL;
}

void tg_upconn_close(struct tg_upconn *u)
{
    if (u->dead)
        return;
    /* counted here, not when freed: a free deferred to the end of a callback may come after
     * the last snapshot holding the node let it go */
    if (u->counted)
        atomic_fetch_sub_explicit(&u->node->health.connections, 1, memory_order_relaxed);
    u->counted = false;
    if (u->state == TG_UP_IDLE)
        tg__pool_unlink(u->worker, u);
    else if (u->state == TG_UP_LINGER)
        tg__linger_unlink(u->worker, u);
    u->dead = true;
    u->txn = NULL;
    if (!u->in_callback)
        tg__upconn_free(u);
}

/* A failure of the connection before its response: the transaction's attempt, or a hedge. */
static void tg__upconn_fail(struct tg_upconn *u, enum tg_fail why, int status, const char *code,
                            const char *msg)
{
    if (u->hedge != NULL)
        tg_hedge_failed(u->hedge, msg);
    else
        tg_txn_upstream_error(u->txn, why, status, code, msg);
}

static void tg__upconn_on_timer(struct tg_loop *loop, struct tg_timer *timer)
{
    struct tg_upconn *u = TG_CONTAINER_OF(timer, struct tg_upconn, timer);
    struct tg_txn *t = u->txn;

    if (t == NULL) { /* idle in the pool for pool.idle_timeout */
        tg_upconn_close(u);
        return;
    }
    {
        struct tg_conn *c = t->conn;
        bool outer = c->in_callback;

        u->in_callback = true;
        c->in_callback = true;
        if (u->state == TG_UP_CONNECTING || u->state == TG_UP_HANDSHAKE)
            tg__upconn_fail(u, TG_FAIL_CONNECT, 502, "upstream_connect_timeout",
                            "the upstream did not accept the connection in time");
        else if (t->res_state == TG_RES_WAIT || u->hedge != NULL)
            tg__upconn_fail(u, TG_FAIL_TIMEOUT, 504, "upstream_timeout",
                            "the upstream did not answer in time");
        else
            tg_conn_abort(c);
        c->in_callback = outer;
        tg_conn_reap(c);
        u->in_callback = false;
    }
    if (u->dead)
        tg__upconn_free(u);
}

void tg_upconn_arm(struct tg_upconn *u, tg_msec_t delay)
{
    tg_timer_arm(u->worker->loop, &u->timer, delay, tg__upconn_on_timer);
}

/* A readiness event on a pooled connection: spurious (the edge of bytes already consumed), or
 * the node closed it, or it sent bytes nobody asked for. On a lingering one: the node answered
 * (or closed) at last. Either way the connection is done. */
static void tg__upconn_idle_event(struct tg_upconn *u)
{
    char probe[64];
    ssize_t n;

    if (!u->sock.readable)
        return;
    n = tg_sock_read(&u->sock, probe, sizeof(probe));
    if (n != TG_AGAIN)
        tg_upconn_close(u);
}

static void tg__upconn_connected(struct tg_upconn *u)
{
    int soerr = 0;
    socklen_t len = sizeof(soerr);

    if (getsockopt(u->sock.watch.fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0) {
        tg__upconn_fail(u, TG_FAIL_CONNECT, 502, "upstream_connect_failed",
                        "cannot connect to the upstream");
        return;
    }
    u->state = u->sock.ssl != NULL ? TG_UP_HANDSHAKE : TG_UP_READY;
    u->worker->stats.upstream_connections_opened++;
}

static void tg__upconn_on_event(struct tg_loop *loop, struct tg_watch *watch, unsigned events)
{
    struct tg_upconn *u = TG_CONTAINER_OF(watch, struct tg_upconn, sock.watch);
    struct tg_txn *t;

    if (u->freed) /* closed earlier in this batch of events */
        return;
    if (events & TG_EV_READ)
        u->sock.readable = true;
    if (events & TG_EV_HUP)
        u->sock.hup = true;
    if (events & TG_EV_WRITE)
        u->sock.writable = true;
    u->in_callback = true;
    if (u->state == TG_UP_IDLE || u->state == TG_UP_LINGER) {
        tg__upconn_idle_event(u);
        goto out;
    }
    t = u->txn;
    if (t == NULL)
        goto out;
    if (u->state == TG_UP_CONNECTING) {
        if (!(events & (TG_EV_WRITE | TG_EV_ERROR)))
            goto out;
        tg__upconn_connected(u);
        if (u->dead || u->state == TG_UP_CONNECTING)
            goto out;
    }
    if (u->state == TG_UP_HANDSHAKE) {
        int rc = tg_sock_handshake(&u->sock);

        if (rc == TG_AGAIN)
            goto out;
        if (rc != TG_OK) {
            tg__upconn_fail(u, TG_FAIL_CONNECT, 502, "upstream_tls_failed",
                            "the TLS handshake with the upstream failed");
            goto out;
        }
        u->state = TG_UP_READY;
        u->sock.readable = u->sock.writable = true;
    }
    {
        struct tg_conn *c = t->conn;
        bool outer = c->in_callback;

        /* the client connection may be closed by what follows: defer its release to here */
        c->in_callback = true;
        if (u->hedge != NULL)
            tg_hedge_event(u->hedge);
        else
            tg_txn_run(t);
        c->in_callback = outer;
        tg_conn_reap(c);
    }
out:
    u->in_callback = false;
    if (u->dead)
        tg__upconn_free(u);
}

static int tg__upconn_open(struct tg_worker *w, struct tg_node *n, struct tg_upconn *u)
{
    struct tg_addr addr;
    int fd, one = 1;

    if (tg_node_address(n, w->rr++, &addr) != 0)
        return -EHOSTUNREACH;
    fd = socket(addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (addr.ss.ss_family != AF_UNIX)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    u->sock.watch.fd = fd;
    if (connect(fd, (struct sockaddr *)&addr.ss, addr.len) == 0) {
        u->state = TG_UP_READY;
        u->sock.writable = true;
        w->stats.upstream_connections_opened++;
    } else if (errno == EINPROGRESS || errno == EAGAIN) {
        u->state = TG_UP_CONNECTING;
    } else {
        int err = -errno;
        close(fd);
        u->sock.watch.fd = -1;
        return err;
    }
    if (n->conf->scheme == TG_SCHEME_HTTPS) {
        u->sock.ssl = tg_tls_connect_new(n->tls, fd, n->conf->host, n->conf->port);
        if (u->sock.ssl == NULL) {
            close(fd);
            u->sock.watch.fd = -1;
            return -EPROTO;
        }
        u->sock.handshaking = true;
        if (u->state == TG_UP_READY)
            u->state = TG_UP_HANDSHAKE;
    }
    if (tg_loop_add(w->loop, &u->sock.watch) != 0) {
        tg_sock_close(&u->sock);
        return -EIO;
    }
    u->counted = true;
    atomic_fetch_add_explicit(&n->health.connections, 1, memory_order_relaxed);
    return 0;
}

struct tg_upconn *tg_upconn_get(struct tg_worker *w, struct tg_node *n, int *err)
{
    struct tg_upconn *u = n->w[w->id].idle;
    int rc;

    if (u != NULL) {
        tg__pool_unlink(w, u);
        tg_timer_disarm(&u->timer);
        u->state = TG_UP_READY;
        u->reused = true;
        u->sock.writable = true;
        w->stats.upstream_reused++;
        return u;
    }
    u = w->free_upconns;
    if (u != NULL)
        w->free_upconns = u->next_free;
    else
        u = tg_malloc(sizeof(*u));
    memset(u, 0, sizeof(*u));
    u->worker = w;
    u->node = n;
    u->sock.watch.fd = -1;
    u->sock.watch.cb = tg__upconn_on_event;
    rc = tg__upconn_open(w, n, u);
    if (rc != 0) {
        *err = rc;
        u->next_free = w->free_upconns;
        w->free_upconns = u;
        return NULL;
    }
    tg_upconn_arm(u, n->connect_timeout);
    return u;
}

void tg_upconn_release(struct tg_upconn *u, bool reusable)
{
    struct tg_worker *w = u->worker;
    struct tg_node *n = u->node;
    struct tg_node_worker *nw = &n->w[w->id];

    u->txn = NULL;
    u->requests++;
    if (!reusable || w->draining || nw->idle_count >= n->pool_max_idle || u->sock.eof ||
        atomic_load_explicit(&n->retired, memory_order_relaxed)) {
        tg_upconn_close(u);
        return;
    }
    tg_buf_put(&w->bufs, u->in);
    u->in = NULL;
    u->state = TG_UP_IDLE;
    u->reused = false;
    u->pool_prev = NULL;
    u->pool_next = nw->idle;
    if (nw->idle != NULL)
        nw->idle->pool_prev = u;
    nw->idle = u;
    nw->idle_count++;
    tg_upconn_arm(u, n->pool_idle_timeout);
}

void tg_upconn_linger(struct tg_upconn *u, tg_msec_t timeout)
{
    struct tg_worker *w = u->worker;

    u->txn = NULL;
    u->state = TG_UP_LINGER;
    u->pool_prev = NULL;
    u->pool_next = w->lingering;
    if (w->lingering != NULL)
        w->lingering->pool_prev = u;
    w->lingering = u;
    tg_upconn_arm(u, timeout); /* with no transaction, the timer closes it */
}

void tg_pool_close(struct tg_worker *w, struct tg_node *n)
{
    while (n->w[w->id].idle != NULL)
        tg_upconn_close(n->w[w->id].idle);
}
