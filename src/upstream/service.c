/*
 * Services and nodes of a configuration snapshot, node addresses (static or from the DNS
 * cache), and the interim node choice: round robin over the lowest tier.
 */
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "net/dns.h"
#include "net/tls.h"
#include "upstream/upstream.h"

static int tg__service_init(struct tg_upstreams *u, struct tg_service *svc,
                            const struct tg_service_conf *sc, struct tg_dns *dns, char *err,
                            size_t errlen)
{
    bool https = false;

    svc->conf = sc;
    svc->num_nodes = sc->num_nodes;
    svc->nodes = tg_calloc(sc->num_nodes, sizeof(*svc->nodes));
    for (size_t i = 0; i < sc->num_nodes; i++) {
        struct tg_node *n = &svc->nodes[i];
        const struct tg_node_conf *nc = &sc->nodes[i];

        n->conf = nc;
        n->svc = svc;
        n->id = (uint32_t)u->num_nodes;
        u->nodes[u->num_nodes++] = n;
        if (nc->scheme == TG_SCHEME_HTTPS)
            https = true;
        if (nc->scheme != TG_SCHEME_UNIX && !nc->host_is_ip) {
            if (dns == NULL) {
                snprintf(err, errlen, "service %s: no resolver for %s", sc->name, nc->host);
                return -1;
            }
            n->dns = tg_dns_register(dns, nc->host, nc->port);
        }
    }
    if (https) {
        struct tg_tls_client_opts o = {
            .verify = sc->tls_verify, .ca = sc->tls_ca, .sni = sc->tls_sni};
        char tlserr[256];

        svc->tls = tg_tls_client_ctx_new(&o, tlserr, sizeof(tlserr));
        if (svc->tls == NULL) {
            snprintf(err, errlen, "service %s: %s", sc->name, tlserr);
            return -1;
        }
    }
    return 0;
}

int tg_upstreams_init(struct tg_upstreams *u, const struct tg_config *cf, struct tg_dns *dns,
                      char *err, size_t errlen)
{
    size_t total = 0;

    memset(u, 0, sizeof(*u));
    for (size_t i = 0; i < cf->num_services; i++)
        total += cf->services[i].num_nodes;
    u->nodes = tg_calloc(total, sizeof(*u->nodes));
    u->services = tg_calloc(cf->num_services, sizeof(*u->services));
    u->num_services = cf->num_services;
    for (size_t i = 0; i < cf->num_services; i++) {
        if (tg__service_init(u, &u->services[i], &cf->services[i], dns, err, errlen) != 0)
            return -1;
    }
    return 0;
}

void tg_upstreams_dispose(struct tg_upstreams *u)
{
    for (size_t i = 0; i < u->num_services; i++) {
        free(u->services[i].nodes);
        if (u->services[i].tls != NULL)
            tg_tls_ctx_free(u->services[i].tls);
    }
    free(u->services);
    free(u->nodes);
    memset(u, 0, sizeof(*u));
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
        return &svc->nodes[0];
    for (size_t i = 0; i < svc->num_nodes; i++) {
        uint32_t t = svc->nodes[i].conf->tier;
        if (t < tier) {
            tier = t;
            count = 0;
        }
        if (t == tier)
            count += svc->nodes[i].conf->weight ? svc->nodes[i].conf->weight : 1;
    }
    pick = (*rr)++ % count;
    for (size_t i = 0; i < svc->num_nodes; i++) {
        uint32_t wgt = svc->nodes[i].conf->weight ? svc->nodes[i].conf->weight : 1;

        if (svc->nodes[i].conf->tier != tier)
            continue;
        if (pick < wgt)
            return &svc->nodes[i];
        pick -= wgt;
    }
    return &svc->nodes[0];
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
