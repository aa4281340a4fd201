/*
 * Services and nodes of a configuration snapshot, node addresses (static or from the DNS
 * cache), and the interim node choice: round robin over the lowest tier.
 */
#include <stdio.h>
#include <string.h>

#include "core/core.h"
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

static int tg__service_init(struct tg_upstreams *u, struct tg_service *svc, struct tg_config *cf,
                            const struct tg_service_conf *sc, struct tg_dns *dns,
                            const struct tg_upstreams *prev, size_t num_workers, char *err,
                            size_t errlen)
{
    const struct tg_service *old = tg__prev_service(prev, sc);
    bool https = false;

    svc->conf = sc;
    svc->label = tg_label_intern(TG_LABEL_SERVICE, sc->name, 0);
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
        if (n == NULL)
            n = tg__node_new(cf, svc, nc, dns, num_workers);
        svc->members[i] = (struct tg_member){n, nc};
        u->nodes[u->num_nodes++] = n;
    }
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

struct tg_node *tg_service_pick(struct tg_service *svc, uint32_t *rr)
{
    uint32_t tier = UINT32_MAX, count = 0, pick;

    if (svc == NULL || svc->num_nodes == 0)
        return NULL;
    if (svc->num_nodes == 1)
        return svc->members[0].node;
    for (size_t i = 0; i < svc->num_nodes; i++) {
        uint32_t t = svc->members[i].conf->tier;
        if (t < tier) {
            tier = t;
            count = 0;
        }
        if (t == tier)
            count += svc->members[i].conf->weight ? svc->members[i].conf->weight : 1;
    }
    pick = (*rr)++ % count;
    for (size_t i = 0; i < svc->num_nodes; i++) {
        uint32_t wgt = svc->members[i].conf->weight ? svc->members[i].conf->weight : 1;

        if (svc->members[i].conf->tier != tier)
            continue;
        if (pick < wgt)
            return svc->members[i].node;
        pick -= wgt;
    }
    return svc->members[0].node;
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
