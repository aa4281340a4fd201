/*
 * Services and nodes at run time, and the per-worker keep-alive pools of upstream connections.
 *
 * struct tg_service and struct tg_node belong to one configuration snapshot (struct tg_runtime)
 * and are immutable after it is built, except for the fields under `shared`. Every node has a
 * dense id so that each worker can index its pools with an array.
 */
#ifndef TG_UPSTREAM_H
#define TG_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "event/loop.h"
#include "net/addr.h"

struct tg_dns;
struct tg_dns_name;
struct tg_tls_ctx;
struct tg_upconn;

struct tg_node {
    const struct tg_node_conf *conf;
    struct tg_service *svc;
    uint32_t id;             /* index into per-worker pool arrays */
    struct tg_dns_name *dns; /* NULL when conf->addr is static (IP literal or unix) */
};

struct tg_service {
    const struct tg_service_conf *conf;
    struct tg_node *nodes;
    size_t num_nodes;
    struct tg_tls_ctx *tls; /* client context when the service has https nodes */
};

struct tg_upstreams {
    struct tg_service *services; /* parallel to cf->services */
    size_t num_services;
    struct tg_node **nodes; /* every node, by id */
    size_t num_nodes;
};

/*
 * Builds services and nodes of cf, registering host names with dns (which may be NULL when the
 * config has none) and creating TLS client contexts. Returns 0, or -1 with a message in err.
 */
int tg_upstreams_init(struct tg_upstreams *u, const struct tg_config *cf, struct tg_dns *dns,
                      char *err, size_t errlen);
void tg_upstreams_dispose(struct tg_upstreams *u);

/* Maps a route's service conf to its runtime service. */
struct tg_service *tg_upstreams_service(const struct tg_upstreams *u,
                                        const struct tg_service_conf *sc);

/*
 * Picks the node for the next request of a service: smooth round robin over the lowest tier
 * (the balancing policies of issue 4 replace this). *rr is the caller's per-worker cursor.
 */
struct tg_node *tg_service_pick(struct tg_service *svc, uint32_t *rr);

/*
 * Copies the address to connect to for a node into out (one of its DNS answers for named
 * hosts, chosen by rr). Returns 0, or -1 when the name has never resolved.
 */
int tg_node_address(const struct tg_node *n, uint32_t rr, struct tg_addr *out);

/* One worker's idle keep-alive connections, per node. */
struct tg_pool {
    struct tg_pool_list {
        struct tg_upconn *head; /* most recently used first */
        uint32_t count;
    } * nodes;
    size_t num_nodes;
};

void tg_pool_init(struct tg_pool *p, size_t num_nodes);
void tg_pool_dispose(struct tg_pool *p);

#endif
