/*
 * Services and nodes of a configuration snapshot: node objects reused across reloads, the
 * per-worker balancer state, the consistent-hash ring, and node addresses (static or from the
 * DNS cache).
 */

/* Ring points per node of the smallest weight; heavier nodes get more, up to a ratio. */
#define TG_RING_POINTS    160
#define TG_RING_MAX_RATIO 16
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "core/hash.h"
#include "net/dns.h"
#include "net/tls.h"
#include "obs/metrics.h"
#include "upstream/upstream.h"

static bool tg__same_str(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Service settings that a node's connections depend on. */
static bool tg__same_connection(const struct tg_service_conf *a, const struct tg_service_conf *b)
{
    return strcmp(a->name, b->name) == 0 && a->connect_timeout == b->connect_timeout &&
           a->pool_max_idle == b->pool_max_idle && a->pool_idle_timeout == b->pool_idle_timeout &&
           a->tls_verify == b->tls_verify && tg__same_str(a->tls_ca, b->tls_ca) &&
           tg__same_str(a->tls_sni, b->tls_sni);
}

static const struct tg_service *tg__prev_service(const struct tg_upstreams *prev,
                                                 const struct tg_service_conf *sc)
{
    for (size_t i = 0; prev != NULL && i < prev->num_services; i++) {
        if (tg__same_connection(prev->services[i].conf, sc))
            return &prev->services[i];
    }
    return NULL;
}

static struct tg_node *tg__node_new(struct tg_config *cf, const struct tg_service *svc,
                                    const struct tg_node_conf *nc, struct tg_dns *dns,
                                    size_t num_workers)
{
    const struct tg_service_conf *sc = svc->conf;
    struct tg_node *n = tg_calloc_aligned(64, sizeof(*n) + num_workers * sizeof(n->w[0]));

    atomic_init(&n->refs, 1);
    pthread_mutex_init(&n->health.lock, NULL);
    atomic_init(&n->health.usable_at, 0);
    n->cf = tg_config_take(cf);
    n->conf = nc;
    n->service = sc->name;
    n->svc_label = svc->label;
    n->label = tg_label_intern(TG_LABEL_NODE,
                               nc->scheme == TG_SCHEME_UNIX ? nc->url : nc->authority, svc->label);
    n->connect_timeout = sc->connect_timeout;
    n->pool_idle_timeout = sc->pool_idle_timeout;
    n->pool_max_idle = sc->pool_max_idle;
    n->num_workers = num_workers;
    if (nc->scheme == TG_SCHEME_HTTPS)
        n->tls = tg_tls_ctx_take(svc->tls);
    if (nc->scheme != TG_SCHEME_UNIX && !nc->host_is_ip)
        n->dns = tg_dns_register(dns, nc->host, nc->port);
    return n;
}

static int tg__point_cmp(const void *a, const void *b)
{
    const struct tg_hash_point *x = a, *y = b;

    return x->hash < y->hash ? -1 : x->hash > y->hash;
}

/* The consistent-hash ring: points per node in proportion to its weight (bounded), placed by
 * hashing the node's URL, so a node keeps its keys across reloads and restarts. */
static void tg__service_ring(struct tg_service *svc)
{
    uint32_t min_w = UINT32_MAX;
    size_t k = 0;

    for (size_t i = 0; i < svc->num_nodes; i++)
        if (svc->members[i].conf->weight < min_w)
            min_w = svc->members[i].conf->weight;
    for (size_t i = 0; i < svc->num_nodes; i++) {
        uint32_t r = svc->members[i].conf->weight / min_w;
        svc->ring_len += TG_RING_POINTS * (r < TG_RING_MAX_RATIO ? r : TG_RING_MAX_RATIO);
    }
    svc->ring = tg_calloc(svc->ring_len, sizeof(*svc->ring));
    for (size_t i = 0; i < svc->num_nodes; i++) {
        const char *url = svc->members[i].conf->url;
        uint32_t r = svc->members[i].conf->weight / min_w;
        size_t points = TG_RING_POINTS * (r < TG_RING_MAX_RATIO ? r : TG_RING_MAX_RATIO);

        for (size_t j = 0; j < points; j++) {
            uint64_t h = tg_hash64(url, strlen(url), j + 1);
            svc->ring[k++] = (struct tg_hash_point){h, (uint32_t)i};
        }
    }
    qsort(svc->ring, svc->ring_len, sizeof(*svc->ring), tg__point_cmp);
}

static void tg__service_workers(struct tg_service *svc, size_t num_workers)
{
    svc->w = tg_calloc_aligned(64, num_workers * sizeof(*svc->w));
    for (size_t i = 0; i < num_workers; i++) {
        svc->w[i].rng = tg_hash64(svc->conf->name, strlen(svc->conf->name), i + 1) | 1;
        svc->w[i].rr = (uint32_t)i;
        if (svc->conf->balance == TG_BALANCE_ROUND_ROBIN)
            svc->w[i].smooth = tg_calloc(svc->num_nodes, sizeof(*svc->w[i].smooth));
    }
    if (svc->conf->balance == TG_BALANCE_CONSISTENT_HASH)
        tg__service_ring(svc);
}

static int tg__service_init(struct tg_upstreams *u, struct tg_service *svc, struct tg_config *cf,
                            const struct tg_service_conf *sc, struct tg_dns *dns,
                            const struct tg_upstreams *prev, size_t num_workers, char *err,
                            size_t errlen)
{
    const struct tg_service *old = tg__prev_service(prev, sc);
    bool https = false;

    svc->conf = sc;
    svc->label = tg_label_intern(TG_LABEL_SERVICE, sc->name, 0);
    if (sc->kind == TG_SERVICE_JSONRPC) {
        /* metric labels of the method classes: the weight patterns, then "other" */
        svc->rpc_classes = tg_calloc(sc->rpc.num_weights + 1, sizeof(*svc->rpc_classes));
        for (size_t i = 0; i < sc->rpc.num_weights; i++)
            svc->rpc_classes[i] = tg_label_intern(TG_LABEL_RPC, sc->rpc.weights[i].pattern, 0);
        svc->rpc_classes[sc->rpc.num_weights] = tg_label_intern(TG_LABEL_RPC, "other", 0);
    }
    svc->num_nodes = sc->num_nodes;
    svc->members = tg_calloc(sc->num_nodes, sizeof(*svc->members));
    for (size_t i = 0; i < sc->num_nodes; i++) {
        const struct tg_node_conf *nc = &sc->nodes[i];

        if (nc->scheme == TG_SCHEME_HTTPS)
            https = true;
        if (nc->scheme != TG_SCHEME_UNIX && !nc->host_is_ip && dns == NULL) {
            snprintf(err, errlen, "service %s: no resolver for %s", sc->name, nc->host);
            return -1;
        }
    }
    if (https && old != NULL && old->tls != NULL) {
        svc->tls = tg_tls_ctx_take(old->tls);
    } else if (https) {
        struct tg_tls_client_opts o = {
            .verify = sc->tls_verify, .ca = sc->tls_ca, .sni = sc->tls_sni};
        char tlserr[256];

        svc->tls = tg_tls_client_ctx_new(&o, tlserr, sizeof(tlserr));
        if (svc->tls == NULL) {
            snprintf(err, errlen, "service %s: %s", sc->name, tlserr);
            return -1;
        }
    }
    for (size_t i = 0; i < sc->num_nodes; i++) {
        const struct tg_node_conf *nc = &sc->nodes[i];
        struct tg_node *n = NULL;

        for (size_t j = 0; old != NULL && j < old->num_nodes && n == NULL; j++) {
            struct tg_node *o = old->members[j].node;
            bool taken = false;

            for (size_t k = 0; k < i && !taken; k++)
                taken = svc->members[k].node == o;
            if (!taken && strcmp(o->conf->url, nc->url) == 0)
                n = tg_node_take(o);
        }
        if (n == NULL) {
            n = tg__node_new(cf, svc, nc, dns, num_workers);
            if (prev != NULL) /* joins a running service: slow start applies */
                atomic_store(&n->health.usable_at, (long long)tg_clock_mono_ms());
        }
        svc->members[i] = (struct tg_member){n, nc};
        u->nodes[u->num_nodes++] = n;
    }
    tg__service_workers(svc, num_workers);
    return 0;
}

int tg_upstreams_init(struct tg_upstreams *u, struct tg_config *cf, struct tg_dns *dns,
                      const struct tg_upstreams *prev, size_t num_workers, char *err, size_t errlen)
{
    size_t total = 0;

    memset(u, 0, sizeof(*u));
    for (size_t i = 0; i < cf->num_services; i++)
        total += cf->services[i].num_nodes;
    u->nodes = tg_calloc(total ? total : 1, sizeof(*u->nodes));
    u->services = tg_calloc(cf->num_services ? cf->num_services : 1, sizeof(*u->services));
    u->num_services = cf->num_services;
    u->num_workers = num_workers;
    for (size_t i = 0; i < cf->num_services; i++) {
        if (tg__service_init(u, &u->services[i], cf, &cf->services[i], dns, prev, num_workers, err,
                             errlen) != 0)
            return -1;
    }
    return 0;
}

void tg_upstreams_dispose(struct tg_upstreams *u)
{
    for (size_t i = 0; i < u->num_nodes; i++)
        tg_node_drop(u->nodes[i]);
    for (size_t i = 0; i < u->num_services; i++) {
        struct tg_service *svc = &u->services[i];

        for (size_t k = 0; svc->w != NULL && k < u->num_workers; k++)
            free(svc->w[k].smooth);
        free(svc->w);
        free(svc->ring);
        free(svc->rpc_classes);
        free(u->services[i].members);
        if (u->services[i].tls != NULL)
            tg_tls_ctx_free(u->services[i].tls);
    }
    free(u->services);
    free(u->nodes);
    memset(u, 0, sizeof(*u));
}

bool tg_upstreams_has(const struct tg_upstreams *next, const struct tg_node *n)
{
    for (size_t i = 0; i < next->num_nodes; i++) {
        if (next->nodes[i] == n)
            return true;
    }
    return false;
}

struct tg_node *tg_node_take(struct tg_node *n)
{
    atomic_fetch_add_explicit(&n->refs, 1, memory_order_relaxed);
    return n;
}

void tg_node_drop(struct tg_node *n)
{
    if (n == NULL || atomic_fetch_sub_explicit(&n->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (n->tls != NULL)
        tg_tls_ctx_free(n->tls);
    pthread_mutex_destroy(&n->health.lock);
    tg_config_drop(n->cf);
    free(n);
}

struct tg_service *tg_upstreams_service(const struct tg_upstreams *u,
                                        const struct tg_service_conf *sc)
{
    for (size_t i = 0; i < u->num_services; i++) {
        if (u->services[i].conf == sc)
            return &u->services[i];
    }
    return NULL;
}

int tg_node_address(const struct tg_node *n, uint32_t rr, struct tg_addr *out)
{
    const struct tg_dns_addrs *a;

    if (n->dns == NULL) {
        *out = n->conf->addr;
        return 0;
    }
    a = tg_dns_addrs(n->dns);
    if (a == NULL || a->num == 0)
        return -1;
    *out = a->addrs[rr % a->num];
    return 0;
}
