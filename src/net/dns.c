/*
 * Asynchronous DNS cache on the control loop, built on c-ares.
 *
 * c-ares owns its sockets and tells us through the socket-state callback which descriptors to
 * watch; they are registered level-triggered (tg_loop_add_level), so a datagram c-ares did not
 * consume in one ares_process_fd() call is reported again. A single loop timer follows
 * ares_timeout() for query retransmissions and timeouts; each name has its own refresh timer.
 *
 * Answers are immutable and published with a release store; a refresh that changes a name's
 * addresses swaps in a new answer and puts the old one on a retired list, freed after the grace
 * period so a worker that loaded the old pointer just before the swap can finish copying.
 */
#include "net/dns.h"

#include <arpa/inet.h>
#include <ares.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"

#define TG_DNS_MAX_ADDRS     32
#define TG_DNS_MAX_BACKOFF   30000 /* ms */
#define TG_DNS_DEFAULT_MIN   1000
#define TG_DNS_DEFAULT_MAX   300000
#define TG_DNS_DEFAULT_TMO   2000
#define TG_DNS_DEFAULT_TRIES 2
#define TG_DNS_DEFAULT_GRACE 30000

/* A descriptor c-ares asked us to watch. Records are reused, never freed while the cache
 * lives: an event already fetched by epoll_wait for a closed descriptor finds fd == -1. */
struct tg_dns_sock {
    struct tg_watch w;
    struct tg_dns *d;
    struct tg_dns_sock *next;
};

/* An answer replaced by a refresh, waiting for the grace period to end. */
struct tg_dns_retired {
    struct tg_dns_addrs *addrs;
    tg_msec_t free_at;
    struct tg_dns_retired *next;
};

struct tg_dns_name {
    struct tg_dns *d;
    char *host;
    uint16_t port;
    bool in_flight; /* a query for this name is pending in c-ares */
    struct tg_timer refresh;
    struct tg_dns_name *next;
    struct {
        /* Written by the loop thread only; read by any thread without a lock. */
        _Atomic(struct tg_dns_addrs *) addrs;
        _Atomic(const char *) error; /* static text from ares_strerror(), or NULL */
        atomic_uint failures;
    } shared;
};

struct tg_dns {
    struct tg_loop *loop;
    ares_channel ch;
    tg_msec_t min_ttl, max_ttl, grace;
    bool closing;
    struct tg_timer ares_timer;
    struct tg_timer gc_timer;
    struct tg_dns_sock *socks;
    struct tg_dns_name *names;
    struct tg_dns_retired *retired, **retired_tail; /* oldest first */
    struct {
        /* Written by the loop thread, read by the metrics code on any thread. */
        atomic_uint_fast64_t ok, fail;
    } shared;
};

static pthread_once_t tg__dns_once = PTHREAD_ONCE_INIT;
static int tg__dns_lib_status;

static void tg__dns_lib_init(void)
{
    tg__dns_lib_status = ares_library_init(ARES_LIB_INIT_ALL);
}

static void tg__dns_rearm(struct tg_dns *d);
static void tg__dns_resolve(struct tg_dns_name *n);

static void tg__dns_sock_cb(struct tg_loop *loop, struct tg_watch *w, unsigned events)
{
    struct tg_dns_sock *s = TG_CONTAINER_OF(w, struct tg_dns_sock, w);
    struct tg_dns *d = s->d;
    int fd = w->fd;

    if (fd < 0)
        return;
    ares_process_fd(d->ch, (events & TG_EV_READ) ? fd : ARES_SOCKET_BAD,
                    (events & TG_EV_WRITE) ? fd : ARES_SOCKET_BAD);
    tg__dns_rearm(d);
}

/* c-ares' socket-state callback: watch fd for reading (always) and writing (when asked), or
 * stop watching it when both are off, which c-ares announces just before closing it. */
static void tg__dns_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct tg_dns *d = data;
    struct tg_dns_sock *s, *free_rec = NULL;

    for (s = d->socks; s != NULL; s = s->next) {
        if (s->w.fd == fd)
            break;
        if (s->w.fd < 0 && free_rec == NULL)
            free_rec = s;
    }
    if (!readable && !writable) {
        if (s != NULL) {
            tg_loop_del(d->loop, &s->w);
            s->w.fd = -1;
        }
        return;
    }
    if (s == NULL) {
        s = free_rec;
        if (s == NULL) {
            s = tg_calloc(1, sizeof(*s));
            s->d = d;
            s->next = d->socks;
            d->socks = s;
        }
        s->w.fd = fd;
        s->w.cb = tg__dns_sock_cb;
    }
    /* On failure c-ares gets no events for this socket and times the query out: the name
     * keeps its answer and is retried like any failed refresh. */
    (void)tg_loop_add_level(d->loop, &s->w, writable != 0);
}

static void tg__dns_ares_timer_cb(struct tg_loop *loop, struct tg_timer *t)
{
    struct tg_dns *d = TG_CONTAINER_OF(t, struct tg_dns, ares_timer);

    ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    tg__dns_rearm(d);
}

/* Follows c-ares' next deadline (retransmission or timeout) with the loop timer. */
static void tg__dns_rearm(struct tg_dns *d)
{
    struct timeval tv, *tvp;
    tg_msec_t ms;

    if (d->closing)
        return;
    tvp = ares_timeout(d->ch, NULL, &tv);
    if (tvp == NULL) {
        tg_timer_disarm(&d->ares_timer);
        return;
    }
    ms = (tg_msec_t)tvp->tv_sec * 1000 + ((tg_msec_t)tvp->tv_usec + 999) / 1000;
    tg_timer_arm(d->loop, &d->ares_timer, TG_MAX(ms, 1), tg__dns_ares_timer_cb);
}

static void tg__dns_gc_cb(struct tg_loop *loop, struct tg_timer *t)
{
    struct tg_dns *d = TG_CONTAINER_OF(t, struct tg_dns, gc_timer);
    tg_msec_t now = tg_loop_now(loop);
    struct tg_dns_retired *r;

    while ((r = d->retired) != NULL && r->free_at <= now) {
        d->retired = r->next;
        free(r->addrs);
        free(r);
    }
    if (d->retired == NULL)
        d->retired_tail = &d->retired;
    else
        tg_timer_arm(loop, &d->gc_timer, d->retired->free_at - now, tg__dns_gc_cb);
}

static void tg__dns_retire(struct tg_dns *d, struct tg_dns_addrs *a)
{
    struct tg_dns_retired *r = tg_malloc(sizeof(*r));

    r->addrs = a;
    r->free_at = tg_loop_now(d->loop) + d->grace;
    r->next = NULL;
    *d->retired_tail = r;
    d->retired_tail = &r->next;
    if (!tg_timer_armed(&d->gc_timer))
        tg_timer_arm(d->loop, &d->gc_timer, d->grace, tg__dns_gc_cb);
}

static bool tg__dns_same(const struct tg_dns_addrs *a, const struct tg_dns_addrs *b)
{
    if (a->num != b->num)
        return false;
    for (uint32_t i = 0; i < a->num; i++)
        if (a->addrs[i].len != b->addrs[i].len ||
            memcmp(&a->addrs[i].ss, &b->addrs[i].ss, a->addrs[i].len) != 0)
            return false;
    return true;
}

/* Builds an answer from c-ares' result; NULL when it holds no usable address. *ttl_s gets the
 * smallest TTL of the addresses kept. */
static struct tg_dns_addrs *tg__dns_answer(const struct ares_addrinfo *res, uint16_t port,
                                           int *ttl_s)
{
    struct tg_dns_addrs *a;
    const struct ares_addrinfo_node *node;
    uint32_t num = 0;

    *ttl_s = INT_MAX;
    for (node = res != NULL ? res->nodes : NULL; node != NULL; node = node->ai_next)
        if (node->ai_family == AF_INET || node->ai_family == AF_INET6)
            num++;
    if (num == 0)
        return NULL;
    num = TG_MIN(num, (uint32_t)TG_DNS_MAX_ADDRS);
    a = tg_calloc(1, sizeof(*a) + num * sizeof(a->addrs[0]));
    for (node = res->nodes; node != NULL && a->num < num; node = node->ai_next) {
        struct tg_addr addr = {0};
        bool dup = false;

        if (node->ai_family == AF_INET && node->ai_addrlen >= sizeof(struct sockaddr_in)) {
            struct sockaddr_in *sin = (struct sockaddr_in *)&addr.ss;

            memcpy(sin, node->ai_addr, sizeof(*sin));
            sin->sin_port = htons(port);
            addr.len = sizeof(*sin);
        } else if (node->ai_family == AF_INET6 && node->ai_addrlen >= sizeof(struct sockaddr_in6)) {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&addr.ss;

            memcpy(sin6, node->ai_addr, sizeof(*sin6));
            sin6->sin6_port = htons(port);
            addr.len = sizeof(*sin6);
        } else {
            continue;
        }
        for (uint32_t i = 0; i < a->num && !dup; i++)
            dup = a->addrs[i].len == addr.len && memcmp(&a->addrs[i].ss, &addr.ss, addr.len) == 0;
        if (dup)
            continue;
        a->addrs[a->num++] = addr;
        *ttl_s = TG_MIN(*ttl_s, TG_MAX(node->ai_ttl, 0));
    }
    return a;
}

static void tg__dns_refresh_cb(struct tg_loop *loop, struct tg_timer *t)
{
    tg__dns_resolve(TG_CONTAINER_OF(t, struct tg_dns_name, refresh));
}

static void tg__dns_success(struct tg_dns_name *n, struct tg_dns_addrs *a, int ttl_s)
{
    struct tg_dns *d = n->d;
    struct tg_dns_addrs *old = atomic_load_explicit(&n->shared.addrs, memory_order_relaxed);
    tg_msec_t ttl = (tg_msec_t)ttl_s * 1000;

    if (old != NULL && tg__dns_same(old, a)) {
        free(a); /* nothing changed: no swap, nothing to retire */
    } else {
        atomic_store_explicit(&n->shared.addrs, a, memory_order_release);
        if (old != NULL)
            tg__dns_retire(d, old);
    }
    atomic_store_explicit(&n->shared.error, NULL, memory_order_relaxed);
    atomic_store_explicit(&n->shared.failures, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&d->shared.ok, 1, memory_order_relaxed);
    ttl = TG_MIN(TG_MAX(ttl, d->min_ttl), d->max_ttl);
    tg_timer_arm(d->loop, &n->refresh, ttl, tg__dns_refresh_cb);
}

static void tg__dns_failure(struct tg_dns_name *n, int status)
{
    struct tg_dns *d = n->d;
    unsigned fails = atomic_load_explicit(&n->shared.failures, memory_order_relaxed) + 1;
    tg_msec_t delay = d->min_ttl;

    atomic_store_explicit(&n->shared.error, ares_strerror(status), memory_order_relaxed);
    atomic_store_explicit(&n->shared.failures, fails, memory_order_relaxed);
    atomic_fetch_add_explicit(&d->shared.fail, 1, memory_order_relaxed);
    for (unsigned i = 1; i < fails && delay < TG_DNS_MAX_BACKOFF; i++)
        delay *= 2;
    tg_timer_arm(d->loop, &n->refresh, TG_MIN(delay, (tg_msec_t)TG_DNS_MAX_BACKOFF),
                 tg__dns_refresh_cb);
}

static void tg__dns_done(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    struct tg_dns_name *n = arg;
    struct tg_dns_addrs *a;
    int ttl_s;

    n->in_flight = false;
    if (status == ARES_EDESTRUCTION || n->d->closing) {
        ares_freeaddrinfo(res);
        return;
    }
    a = status == ARES_SUCCESS ? tg__dns_answer(res, n->port, &ttl_s) : NULL;
    ares_freeaddrinfo(res);
    if (a != NULL)
        tg__dns_success(n, a, ttl_s);
    else
        tg__dns_failure(n, status == ARES_SUCCESS ? ARES_ENODATA : status);
}

static void tg__dns_resolve(struct tg_dns_name *n)
{
    struct ares_addrinfo_hints hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};

    if (n->in_flight || n->d->closing)
        return;
    n->in_flight = true;
    /* The callback may run before this returns (an /etc/hosts entry, a bad name). */
    ares_getaddrinfo(n->d->ch, n->host, NULL, &hints, tg__dns_done, n);
    tg__dns_rearm(n->d);
}

/* Parses "ip", "ip:port", "[ip6]:port" or a bare "ip6". Returns 0 or -1. */
static int tg__dns_parse_server(const char *text, struct ares_addr_port_node *out)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *port = NULL, *colon = strchr(text, ':');
    size_t hlen;

    memset(out, 0, sizeof(*out));
    if (text[0] == '[') {
        const char *end = strchr(text, ']');

        if (end == NULL || (end[1] != '\0' && end[1] != ':'))
            return -1;
        hlen = (size_t)(end - text - 1);
        text++;
        port = end[1] == ':' ? end + 2 : NULL;
    } else if (colon != NULL && strchr(colon + 1, ':') == NULL) {
        hlen = (size_t)(colon - text);
        port = colon + 1;
    } else {
        hlen = strlen(text);
    }
    if (hlen == 0 || hlen >= sizeof(host))
        return -1;
    memcpy(host, text, hlen);
    host[hlen] = '\0';
    if (inet_pton(AF_INET, host, &out->addr.addr4) == 1)
        out->family = AF_INET;
    else if (inet_pton(AF_INET6, host, &out->addr.addr6) == 1)
        out->family = AF_INET6;
    else
        return -1;
    if (port != NULL) {
        char *end;
        long p;

        errno = 0;
        p = strtol(port, &end, 10);
        if (port[0] < '0' || port[0] > '9' || *end != '\0' || errno != 0 || p < 1 || p > 65535)
            return -1;
        out->udp_port = out->tcp_port = (int)p;
    }
    return 0;
}

static int tg__dns_set_servers(struct tg_dns *d, const struct tg_dns_opts *o, char *err,
                               size_t errlen)
{
    struct ares_addr_port_node *nodes;
    int rc = -1, st;

    if (o->num_servers == 0)
        return 0;
    nodes = tg_calloc(o->num_servers, sizeof(*nodes));
    for (size_t i = 0; i < o->num_servers; i++) {
        if (tg__dns_parse_server(o->servers[i], &nodes[i]) != 0) {
            snprintf(err, errlen, "dns.servers: \"%s\" is not an IP address with an optional port",
                     o->servers[i]);
            goto out;
        }
        nodes[i].next = i + 1 < o->num_servers ? &nodes[i + 1] : NULL;
    }
    st = ares_set_servers_ports(d->ch, nodes);
    if (st != ARES_SUCCESS) {
        snprintf(err, errlen, "dns.servers: %s", ares_strerror(st));
        goto out;
    }
    rc = 0;
out:
    free(nodes);
    return rc;
}

struct tg_dns *tg_dns_new(struct tg_loop *loop, const struct tg_dns_opts *o, char *err,
                          size_t errlen)
{
    struct tg_dns *d;
    struct ares_options ao;
    int st;

    pthread_once(&tg__dns_once, tg__dns_lib_init);
    if (tg__dns_lib_status != ARES_SUCCESS) {
        snprintf(err, errlen, "c-ares: %s", ares_strerror(tg__dns_lib_status));
        return NULL;
    }
    d = tg_calloc(1, sizeof(*d));
    d->loop = loop;
    d->min_ttl = o->min_ttl ? o->min_ttl : TG_DNS_DEFAULT_MIN;
    d->max_ttl = TG_MAX(o->max_ttl ? o->max_ttl : TG_DNS_DEFAULT_MAX, d->min_ttl);
    d->grace = o->grace ? o->grace : TG_DNS_DEFAULT_GRACE;
    d->retired_tail = &d->retired;
    memset(&ao, 0, sizeof(ao));
    ao.sock_state_cb = tg__dns_sock_state;
    ao.sock_state_cb_data = d;
    ao.timeout = (int)TG_MIN(o->timeout ? o->timeout : TG_DNS_DEFAULT_TMO, (tg_msec_t)INT_MAX);
    ao.tries = o->tries ? (int)o->tries : TG_DNS_DEFAULT_TRIES;
    st = ares_init_options(&d->ch, &ao,
                           ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
    if (st != ARES_SUCCESS) {
        snprintf(err, errlen, "c-ares: %s", ares_strerror(st));
        free(d);
        return NULL;
    }
    if (tg__dns_set_servers(d, o, err, errlen) != 0) {
        tg_dns_free(d);
        return NULL;
    }
    return d;
}

void tg_dns_free(struct tg_dns *d)
{
    struct tg_dns_name *n, *nn;
    struct tg_dns_sock *s, *sn;
    struct tg_dns_retired *r, *rn;

    if (d == NULL)
        return;
    d->closing = true;
    /* Completes pending queries with ARES_EDESTRUCTION and reports every socket closed. */
    ares_destroy(d->ch);
    tg_timer_disarm(&d->ares_timer);
    tg_timer_disarm(&d->gc_timer);
    for (n = d->names; n != NULL; n = nn) {
        nn = n->next;
        tg_timer_disarm(&n->refresh);
        free(atomic_load_explicit(&n->shared.addrs, memory_order_relaxed));
        free(n->host);
        free(n);
    }
    for (s = d->socks; s != NULL; s = sn) {
        sn = s->next;
        if (s->w.fd >= 0)
            tg_loop_del(d->loop, &s->w);
        free(s);
    }
    for (r = d->retired; r != NULL; r = rn) {
        rn = r->next;
        free(r->addrs);
        free(r);
    }
    free(d);
}

struct tg_dns_name *tg_dns_register(struct tg_dns *d, const char *host, uint16_t port)
{
    struct tg_dns_name *n;

    for (n = d->names; n != NULL; n = n->next)
        if (n->port == port && strcmp(n->host, host) == 0)
            return n;
    n = tg_calloc(1, sizeof(*n));
    n->d = d;
    n->host = tg_strdup(host);
    n->port = port;
    atomic_init(&n->shared.addrs, NULL);
    atomic_init(&n->shared.error, NULL);
    atomic_init(&n->shared.failures, 0);
    n->next = d->names;
    d->names = n;
    tg__dns_resolve(n);
    return n;
}

const struct tg_dns_addrs *tg_dns_addrs(const struct tg_dns_name *n)
{
    /* Acquire pairs with the release store of a refresh: the answer's contents are visible. */
    return atomic_load_explicit(&((struct tg_dns_name *)n)->shared.addrs, memory_order_acquire);
}

const char *tg_dns_name_host(const struct tg_dns_name *n)
{
    return n->host;
}

uint16_t tg_dns_name_port(const struct tg_dns_name *n)
{
    return n->port;
}

const char *tg_dns_name_error(const struct tg_dns_name *n)
{
    return atomic_load_explicit(&((struct tg_dns_name *)n)->shared.error, memory_order_relaxed);
}

uint32_t tg_dns_name_failures(const struct tg_dns_name *n)
{
    return atomic_load_explicit(&((struct tg_dns_name *)n)->shared.failures, memory_order_relaxed);
}

uint64_t tg_dns_refresh_ok(const struct tg_dns *d)
{
    return atomic_load_explicit(&((struct tg_dns *)d)->shared.ok, memory_order_relaxed);
}

uint64_t tg_dns_refresh_fail(const struct tg_dns *d)
{
    return atomic_load_explicit(&((struct tg_dns *)d)->shared.fail, memory_order_relaxed);
}
