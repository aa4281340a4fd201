/*
 * Worker threads: each owns an event loop, its own SO_REUSEPORT listening sockets, its client
 * connections and its upstream pools (DESIGN §2). Nothing here is shared with other workers but
 * the runtime snapshot (immutable) and the instance connection counter.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "core/hex.h"
#include "event/qsbr.h"
#include "net/listener.h"
#include "obs/log.h"
#include "proxy/proxy.h"

#define TG_ACCEPT_BATCH 64
#define TG_BACKLOG      4096

struct tg_instance tg_instance;

static void tg__listener_resume(struct tg_loop *loop, struct tg_timer *t);

/* Connections closed during a batch of events become reusable once no event of the batch can
 * name them any more. */
static void tg__worker_recycle(struct tg_loop *loop, void *arg)
{
    struct tg_worker *w = arg;

    while (w->dead_conns != NULL) {
        struct tg_conn *c = w->dead_conns;
        w->dead_conns = c->next_free;
        c->next_free = w->free_conns;
        w->free_conns = c;
    }
    while (w->dead_listeners != NULL) {
        struct tg_listener *l = w->dead_listeners;
        w->dead_listeners = l->next_dead;
        free(l);
    }
    while (w->dead_upconns != NULL) {
        struct tg_upconn *u = w->dead_upconns;
        w->dead_upconns = u->next_free;
        u->next_free = w->free_upconns;
        w->free_upconns = u;
    }
    while (w->dead_txns != NULL) {
        struct tg_txn *t = w->dead_txns;
        w->dead_txns = t->next_free;
        t->next_free = w->free_txns;
        w->free_txns = t;
    }
}

static void tg__on_accept(struct tg_loop *loop, struct tg_watch *watch, unsigned events)
{
    struct tg_listener *l = TG_CONTAINER_OF(watch, struct tg_listener, watch);
    struct tg_worker *w = l->worker;

    for (int i = 0; i < TG_ACCEPT_BATCH && !w->draining; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int one = 1;
        int fd = accept4(watch->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: stop watching for a moment rather than spin on a
                 * level-triggered listener that cannot be served. */
                tg_loop_del(loop, watch);
                tg_log(TG_LOG_ERROR, "accept: %s; pausing accepts for 100ms", strerror(errno));
                tg_timer_arm(loop, &l->pause, 100, tg__listener_resume);
            }
            return;
        }
        if (l->is_unix)
            memset(&ss, 0, sizeof(ss));
        else
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        tg_conn_accepted(w, l, fd, &ss);
    }
}

static void tg__listener_resume(struct tg_loop *loop, struct tg_timer *t)
{
    struct tg_listener *l = TG_CONTAINER_OF(t, struct tg_listener, pause);

    if (!l->worker->draining)
        tg_loop_add_listener(loop, &l->watch, l->is_unix);
}

/* An event of the current batch may still name a closed listener: it lands here. */
static void tg__listener_closed_event(struct tg_loop *loop, struct tg_watch *watch, unsigned events)
{
}

/* Closes a listener now and frees it when the current batch of events ends (a reload or drain
 * runs from a posted callback, and the same epoll batch may hold an accept event for it). */
static void tg__listener_free(struct tg_worker *w, struct tg_listener *l)
{
    tg_timer_disarm(&l->pause);
    if (l->watch.fd >= 0) {
        tg_loop_del(w->loop, &l->watch);
        close(l->watch.fd);
        l->watch.fd = -1;
    }
    l->watch.cb = tg__listener_closed_event;
    l->next_dead = w->dead_listeners;
    w->dead_listeners = l;
}

int tg_listen_plan_make(struct tg_listen_plan *p, const struct tg_config *cf,
                        const struct tg_config *prev, size_t num_workers, char *err, size_t errlen)
{
    p->num_listens = cf->num_listens;
    p->num_workers = num_workers;
    p->fds = tg_malloc((cf->num_listens * num_workers + 1) * sizeof(int));
    for (size_t i = 0; i < cf->num_listens * num_workers; i++)
        p->fds[i] = -1;
    for (size_t i = 0; i < cf->num_listens; i++) {
        const struct tg_addr *a = &cf->listens[i].addr;
        bool kept = false;

        for (size_t j = 0; prev != NULL && j < prev->num_listens && !kept; j++)
            kept = tg_addr_equal(a, &prev->listens[j].addr);
        for (size_t k = 0; k < i && !kept; k++)
            kept = tg_addr_equal(a, &cf->listens[k].addr);
        if (kept)
            continue;
        for (size_t w = 0; w < num_workers; w++) {
            int fd;

            if (tg_addr_is_unix(a) && w > 0) {
                fd = dup(p->fds[i * num_workers]);
                if (fd < 0)
                    snprintf(err, errlen, "listen %s: %s", cf->listens[i].addr_text,
                             strerror(errno));
            } else {
                fd = tg_listen_open(a, TG_BACKLOG, err, errlen);
            }
            if (fd < 0) {
                tg_listen_plan_dispose(p);
                return -1;
            }
            p->fds[i * num_workers + w] = fd;
        }
    }
    return 0;
}

void tg_listen_plan_dispose(struct tg_listen_plan *p)
{
    for (size_t i = 0; p->fds != NULL && i < p->num_listens * p->num_workers; i++) {
        if (p->fds[i] >= 0)
            close(p->fds[i]);
    }
    free(p->fds);
    p->fds = NULL;
}

/* Makes the worker's listeners those of cf: unchanged addresses keep their socket (and their
 * accept queue, so no connection is refused during a reload), new ones take theirs from the
 * plan, removed ones close. */
static int tg__worker_listen(struct tg_worker *w, const struct tg_config *cf,
                             struct tg_listen_plan *p)
{
    struct tg_listener **next = tg_calloc(cf->num_listens + 1, sizeof(*next));
    int rc = 0;

    for (size_t i = 0; i < cf->num_listens; i++) {
        const struct tg_listen_conf *lc = &cf->listens[i];
        struct tg_listener *l = NULL;

        for (size_t j = 0; j < w->num_listeners && l == NULL; j++) {
            if (w->listeners[j] != NULL && tg_addr_equal(&w->listeners[j]->addr, &lc->addr)) {
                l = w->listeners[j];
                w->listeners[j] = NULL;
            }
        }
        if (l == NULL) {
            int *fd = &p->fds[i * p->num_workers + w->id];

            l = tg_calloc(1, sizeof(*l));
            l->worker = w;
            l->addr = lc->addr;
            l->is_unix = tg_addr_is_unix(&lc->addr);
            l->watch.cb = tg__on_accept;
            l->watch.fd = *fd;
            *fd = -1;
            if (l->watch.fd < 0 || tg_loop_add_listener(w->loop, &l->watch, l->is_unix) != 0) {
                tg_log(TG_LOG_ERROR, "cannot watch listener %s", lc->addr_text);
                rc = -1;
            }
        }
        l->index = (uint32_t)i;
        l->tls = lc->tls_cert != NULL;
        next[i] = l;
    }
    for (size_t j = 0; j < w->num_listeners; j++) {
        if (w->listeners[j] != NULL)
            tg__listener_free(w, w->listeners[j]);
    }
    free(w->listeners);
    w->listeners = next;
    w->num_listeners = cf->num_listens;
    return rc;
}

/* Four times per admin.stuck_after (at most once a second), so /healthz can tell a stuck loop
 * from an idle one with room for timer granularity. */
static void tg__worker_beat(struct tg_loop *loop, struct tg_timer *t)
{
    struct tg_worker *w = TG_CONTAINER_OF(t, struct tg_worker, beat_timer);

    __atomic_store_n(&w->beat, (int64_t)tg_loop_now(loop), __ATOMIC_RELAXED);
    tg_timer_arm(loop, t, TG_MIN(w->rt->cf->stuck_after / 4, 1000), tg__worker_beat);
}

int tg_worker_init(struct tg_worker *w, uint32_t id, struct tg_runtime *rt,
                   struct tg_listen_plan *plan, char *err, size_t errlen)
{
    memset(w, 0, sizeof(*w));
    w->id = id;
    w->rt = tg_runtime_take(rt);
    w->loop = tg_loop_new();
    tg_loop_on_batch_end(w->loop, tg__worker_recycle, w);
    w->bufs.max_free = 256; /* at most 4 MiB of idle buffers kept per worker */
    tg_metrics_init(&w->metrics);
    if (getrandom(&w->rid_seed, sizeof(w->rid_seed), 0) != sizeof(w->rid_seed))
        w->rid_seed = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull + id;
    if (getrandom(w->trace_state, sizeof(w->trace_state), 0) != sizeof(w->trace_state)) {
        for (int i = 0; i < 4; i++)
            w->trace_state[i] = w->rid_seed * (uint64_t)(i + 3) + id;
    }
    w->sample_state = w->rid_seed ^ 0x5851f42d4c957f2dull;
    if (tg__worker_listen(w, rt->cf, plan) != 0) {
        snprintf(err, errlen, "cannot watch the listeners");
        return -1;
    }
    tg__worker_beat(w->loop, &w->beat_timer);
    return 0;
}

/* A transaction of this worker ends: the snapshot it ran on may be released now. */
void tg_worker_runtime_done(struct tg_worker *w, struct tg_runtime *rt)
{
    if (--rt->users[w->id].n == 0 && rt != w->rt)
        tg_runtime_drop(rt);
}

struct tg_switch_msg {
    struct tg_switch *sw;
    struct tg_worker *w;
};

struct tg_switch {
    struct tg_runtime *rt;
    struct tg_runtime *old;
    struct tg_listen_plan plan;
    atomic_size_t pending;
    struct tg_switch_msg msgs[];
};

/* On the worker: new requests use the new snapshot; requests in flight finish on theirs. */
static void tg__worker_switch(struct tg_loop *loop, void *arg)
{
    struct tg_switch_msg *m = arg;
    struct tg_switch *sw = m->sw;
    struct tg_worker *w = m->w;
    struct tg_runtime *old = w->rt;

    if (!w->draining)
        tg__worker_listen(w, sw->rt->cf, &sw->plan);
    w->rt = sw->rt; /* the reference taken for this worker by tg_worker_switch_all */
    for (size_t i = 0; i < old->up.num_nodes; i++) {
        struct tg_node *n = old->up.nodes[i];

        if (atomic_load(&n->retired))
            tg_pool_close(w, n);
    }
    if (old->users[w->id].n == 0)
        tg_runtime_drop(old);
    if (atomic_fetch_sub(&sw->pending, 1) == 1) {
        tg_listen_plan_dispose(&sw->plan);
        free(sw);
    }
}

void tg_worker_switch_all(struct tg_runtime *rt, struct tg_runtime *old,
                          struct tg_listen_plan *plan)
{
    size_t n = tg_instance.num_workers;
    struct tg_switch *sw = tg_calloc(1, sizeof(*sw) + n * sizeof(sw->msgs[0]));

    sw->rt = rt;
    sw->old = old;
    sw->plan = *plan;
    plan->fds = NULL;
    atomic_init(&sw->pending, n);
    for (size_t i = 0; i < old->up.num_nodes; i++) {
        if (!tg_upstreams_has(&rt->up, old->up.nodes[i]))
            atomic_store(&old->up.nodes[i]->retired, true);
    }
    for (size_t i = 0; i < n; i++) {
        sw->msgs[i] = (struct tg_switch_msg){sw, &tg_instance.workers[i]};
        tg_runtime_take(rt);
        tg_loop_post(tg_instance.workers[i].loop, tg__worker_switch, &sw->msgs[i]);
    }
}

static void *tg__worker_main(void *arg)
{
    struct tg_worker *w = arg;
    char name[16];

    snprintf(name, sizeof(name), "tg-worker-%u", w->id);
    pthread_setname_np(pthread_self(), name);
    tg_qsbr_register(w->loop);
    tg_loop_run(w->loop);
    tg_qsbr_unregister(w->loop);
    return NULL;
}

int tg_worker_start(struct tg_worker *w)
{
    return -pthread_create(&w->thread, NULL, tg__worker_main, w);
}

static void tg__worker_close_listeners(struct tg_worker *w)
{
    for (size_t i = 0; i < w->num_listeners; i++)
        tg__listener_free(w, w->listeners[i]);
    w->num_listeners = 0;
}

static void tg__control_worker_drained(struct tg_loop *loop, void *arg)
{
    if ((size_t)atomic_load(&tg_instance.drained) == tg_instance.num_workers)
        tg_loop_stop(loop);
}

/* Stops when the last connection is gone: polled from a timer while draining. */
static void tg__worker_drain_check(struct tg_loop *loop, struct tg_timer *t)
{
    struct tg_worker *w = TG_CONTAINER_OF(t, struct tg_worker, drain_timer);
    struct tg_conn *c, *next;

    for (c = w->conns; c != NULL; c = next) {
        next = c->next;
        if (c->phase == TG_CONN_IDLE && (c->requests > 0 || c->drain_seen))
            tg_conn_linger(c);
        else if (c->phase == TG_CONN_IDLE)
            c->drain_seen = true; /* accepted from the backlog at drain: its request may follow */
        else if (c->phase == TG_CONN_HANDSHAKE)
            tg_conn_abort(c);
        else if (c->phase == TG_CONN_TXN && c->txn != NULL && c->txn->tunnel)
            tg_conn_abort(c); /* a WebSocket never ends on its own: its client reconnects */
    }
    if (w->conns == NULL) {
        tg_loop_stop(loop);
        atomic_fetch_add(&tg_instance.drained, 1);
        if (tg_instance.control != NULL)
            tg_loop_post(tg_instance.control, tg__control_worker_drained, NULL);
        return;
    }
    tg_timer_arm(loop, t, 50, tg__worker_drain_check);
}

static void tg__worker_drain(struct tg_loop *loop, void *arg)
{
    struct tg_worker *w = arg;

    /* Connections waiting in the accept queues would be reset by the close: take them first;
     * their requests are answered with Connection: close. */
    for (size_t i = 0; i < w->num_listeners; i++) {
        for (int k = 0; k < 64; k++)
            tg__on_accept(loop, &w->listeners[i]->watch, TG_EV_READ);
    }
    w->draining = true;
    tg__worker_close_listeners(w);
    tg__worker_drain_check(loop, &w->drain_timer);
}

static void tg__worker_halt(struct tg_loop *loop, void *arg)
{
    tg_loop_stop(loop);
}

void tg_worker_drain(struct tg_worker *w)
{
    tg_loop_post(w->loop, tg__worker_drain, w);
}

void tg_worker_stop(struct tg_worker *w)
{
    tg_loop_post(w->loop, tg__worker_halt, w);
}

void tg_worker_dispose(struct tg_worker *w)
{
    struct tg_conn *c;
    struct tg_txn *t;
    struct tg_upconn *u;

    tg__worker_close_listeners(w);
    while (w->conns != NULL)
        tg_conn_abort(w->conns);
    for (size_t i = 0; i < w->rt->up.num_nodes; i++)
        tg_pool_close(w, w->rt->up.nodes[i]);
    while (w->lingering != NULL)
        tg_upconn_close(w->lingering);
    tg_timer_disarm(&w->beat_timer);
    tg__worker_recycle(w->loop, w);
    while ((c = w->free_conns) != NULL) {
        w->free_conns = c->next_free;
        free(c);
    }
    while ((t = w->free_txns) != NULL) {
        w->free_txns = t->next_free;
        free(t);
    }
    while ((u = w->free_upconns) != NULL) {
        w->free_upconns = u->next_free;
        free(u);
    }
    tg_rpc_worker_dispose(w);
    tg_cache_worker_dispose(w);
    tg_buf_pool_dispose(&w->bufs);
    tg_metrics_dispose(&w->metrics);
    free(w->listeners);
    tg_loop_free(w->loop);
    tg_runtime_drop(w->rt);
}

const char *tg_worker_date(struct tg_worker *w, size_t *len)
{
    int64_t now = tg_loop_wall(w->loop);

    if (now != w->date_at) {
        time_t tt = (time_t)now;
        struct tm tm;

        gmtime_r(&tt, &tm);
        w->date_len =
            strftime(w->date, sizeof(w->date), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        w->date_at = now;
    }
    *len = w->date_len;
    return w->date;
}

static uint64_t tg__splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* 32 hex digits, unique per process: a random per-worker seed mixed with a counter. */
void tg_worker_request_id(struct tg_worker *w, char *out, uint8_t *len)
{
    uint64_t a = tg__splitmix64(w->rid_seed ^ ++w->rid_counter);

    tg_hex64(out, a);
    tg_hex64(out + 16, tg__splitmix64(a ^ w->id));
    *len = 32;
}
