/*
 * Services and nodes at run time, and the per-worker keep-alive pools of upstream connections.
 *
 * struct tg_service and struct tg_node belong to one configuration snapshot (struct tg_runtime)
 * and are immutable after it is built, except for the fields under `shared`. Every node has a
 * dense id so that each worker can index its pools with an array.
 */
#ifndef TG_UPSTREAM_H
#define TG_UPSTREAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "event/loop.h"
#include "net/addr.h"

struct tg_dns;
struct tg_dns_name;
struct tg_tls_ctx;
struct tg_upconn;

/* One worker's share of a node: its idle pool and its counters. Written by that worker only;
 * read by /status and /metrics with relaxed loads. */
struct tg_node_worker {
    struct tg_upconn *idle; /* pooled connections, most recently used first */
    uint32_t idle_count;
    uint32_t in_flight;
    uint64_t requests;
    uint64_t errors;  /* exchanges that failed or answered 5xx */
    uint64_t ewma_us; /* latency of successful exchanges, EWMA with weight 1/8 */
} __attribute__((aligned(64)));

/*
 * A node outlives the configuration snapshot that created it: a reload that keeps a node with the
 * same URL and connection settings reuses the object, with its pools and counters. Snapshots
 * hold references; the last one frees the node, by which time no worker pools it (workers close
 * the idle connections of retired nodes when they switch snapshots).
 */
struct tg_node {
    atomic_int refs;
    struct tg_config *cf; /* keeps conf alive */
    const struct tg_node_conf *conf;
    const char *service;       /* its service's name, in cf */
    uint32_t label, svc_label; /* metrics label ids */
    tg_msec_t connect_timeout;
    tg_msec_t pool_idle_timeout;
    uint32_t pool_max_idle;
    struct tg_tls_ctx *tls;  /* client context of https nodes (one reference) */
    struct tg_dns_name *dns; /* NULL when conf->addr is static (IP literal or unix) */
    atomic_bool retired;     /* the current snapshot no longer has it: do not pool */
    size_t num_workers;
    struct tg_node_worker w[];
};

/* A node as a member of one snapshot's service: weight and tier may change on reload. */
struct tg_member {
    struct tg_node *node;
    const struct tg_node_conf *conf; /* this snapshot's conf: weight, tier */
};

struct tg_service {
    const struct tg_service_conf *conf;
    struct tg_member *members;
    size_t num_nodes;
    uint32_t label;
    struct tg_tls_ctx *tls; /* client context when the service has https nodes */
};

struct tg_upstreams {
    struct tg_service *services; /* parallel to cf->services */
    size_t num_services;
    struct tg_node **nodes; /* every node of every service */
    size_t num_nodes;
};

/*
 * Builds services and nodes of cf for num_workers workers, registering host names with dns (which
 * may be NULL when the config has none) and creating TLS client contexts. Nodes of prev (the
 * snapshot being replaced, or NULL) whose URL and connection settings are unchanged are reused.
 * Returns 0, or -1 with a message in err.
 */
int tg_upstreams_init(struct tg_upstreams *u, struct tg_config *cf, struct tg_dns *dns,
                      const struct tg_upstreams *prev, size_t num_workers, char *err,
                      size_t errlen);
void tg_upstreams_dispose(struct tg_upstreams *u);

/* True when next has node n (the same object). */
bool tg_upstreams_has(const struct tg_upstreams *next, const struct tg_node *n);

struct tg_node *tg_node_take(struct tg_node *n);
void tg_node_drop(struct tg_node *n);

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

#endif
