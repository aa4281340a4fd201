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
#include "net/listener.h"
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
    while (w->dead_upconns != NULL) {
        struct tg_upconn *u = w->dead_upconns;
        w->dead_upconns = u->next_free;
        u->next_free = w->free_upconns;
        w->free_upconns = u;
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
                static struct tg_timer pause[64];
                tg_loop_del(loop, watch);
                fprintf(stderr, "tollgate: accept: %s; pausing accepts for 100ms\n",
                        strerror(errno));
                tg_timer_arm(loop, &pause[(l->worker->id * 8 + l->index) % 64], 100,
                             tg__listener_resume);
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
    /* Re-register every listener of the worker that owns this loop. */
    for (size_t i = 0; i < tg_instance.num_workers; i++) {
        struct tg_worker *w = &tg_instance.workers[i];

        if (w->loop != loop || w->draining)
            continue;
        for (size_t j = 0; j < w->num_listeners; j++)
            tg_loop_add_listener(loop, &w->listeners[j].watch, w->listeners[j].is_unix);
    }
}

int tg_worker_init(struct tg_worker *w, uint32_t id, struct tg_runtime *rt, const int *shared_fds,
                   char *err, size_t errlen)
{
    const struct tg_config *cf = rt->cf;

    memset(w, 0, sizeof(*w));
    w->id = id;
    w->rt = tg_runtime_take(rt);
    w->loop = tg_loop_new();
    tg_loop_on_batch_end(w->loop, tg__worker_recycle, w);
    w->bufs.max_free = 256; /* at most 4 MiB of idle buffers kept per worker */
    tg_pool_init(&w->pool, rt->up.num_nodes);
    if (getrandom(&w->rid_seed, sizeof(w->rid_seed), 0) != sizeof(w->rid_seed))
        w->rid_seed = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull + id;
    w->listeners = tg_calloc(cf->num_listens, sizeof(*w->listeners));
    for (size_t i = 0; i < cf->num_listens; i++) {
        struct tg_listener *l = &w->listeners[i];
        bool is_unix = tg_addr_is_unix(&cf->listens[i].addr);

        l->worker = w;
        l->index = (uint32_t)i;
        l->tls = cf->listens[i].tls_cert != NULL;
        l->is_unix = is_unix;
        l->watch.cb = tg__on_accept;
        l->watch.fd = is_unix ? dup(shared_fds[i])
                              : tg_listen_open(&cf->listens[i].addr, TG_BACKLOG, err, errlen);
        if (l->watch.fd < 0)
            return -1;
        w->num_listeners++;
        if (tg_loop_add_listener(w->loop, &l->watch, is_unix) != 0) {
            snprintf(err, errlen, "cannot watch listener %s", cf->listens[i].addr_text);
            return -1;
        }
    }
    return 0;
}

static void *tg__worker_main(void *arg)
{
    struct tg_worker *w = arg;
    char name[16];

    snprintf(name, sizeof(name), "tg-worker-%u", w->id);
    pthread_setname_np(pthread_self(), name);
    tg_loop_run(w->loop);
    return NULL;
}

int tg_worker_start(struct tg_worker *w)
{
    return -pthread_create(&w->thread, NULL, tg__worker_main, w);
}

static void tg__worker_close_listeners(struct tg_worker *w)
{
    for (size_t i = 0; i < w->num_listeners; i++) {
        if (w->listeners[i].watch.fd >= 0) {
            tg_loop_del(w->loop, &w->listeners[i].watch);
            close(w->listeners[i].watch.fd);
            w->listeners[i].watch.fd = -1;
        }
    }
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
        if (c->phase == TG_CONN_IDLE || c->phase == TG_CONN_HANDSHAKE)
            tg_conn_abort(c);
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
    tg_pool_dispose(&w->pool);
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
    tg_buf_pool_dispose(&w->bufs);
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
    static const char hex[] = "0123456789abcdef";
    uint64_t a = tg__splitmix64(w->rid_seed ^ ++w->rid_counter);
    uint64_t b = tg__splitmix64(a ^ w->id);

    for (int i = 0; i < 16; i += 2) {
        unsigned x = (unsigned)(a >> (i * 4)) & 0xff, y = (unsigned)(b >> (i * 4)) & 0xff;

        out[i] = hex[x & 15];
        out[i + 1] = hex[x >> 4];
        out[16 + i] = hex[y & 15];
        out[16 + i + 1] = hex[y >> 4];
    }
    *len = 32;
}
