/*
 * Services and nodes at run time, and the per-worker keep-alive pools of upstream connections.
 *
 * struct tg_service and struct tg_node belong to one configuration snapshot (struct tg_runtime)
 * and are immutable after it is built, except for the fields under `shared`. Every node has a
 * dense id so that each worker can index its pools with an array.
 */
#ifndef TG_UPSTREAM_H
#define TG_UPSTREAM_H

#include <pthread.h>
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
struct tg_txn;

/* One worker's share of a node: its idle pool and its counters. Written by that worker only;
 * read by /status and /metrics with relaxed loads. */
struct tg_node_worker {
    struct tg_upconn *idle; /* pooled connections, most recently used first */
    uint32_t idle_count;
    uint32_t in_flight;
    uint64_t requests;
    uint64_t errors;  /* exchanges that failed or answered 5xx */
    uint64_t ewma_us; /* latency of successful exchanges, EWMA with weight 1/8 */
    uint64_t ewma_at; /* monotonic µs of the last EWMA sample */
} __attribute__((aligned(64)));

/* Why a node is not usable; 0 = healthy. */
enum tg_node_flag {
    TG_NODE_DOWN = 1,    /* failed `fall` active probes in a row (probe.c) */
    TG_NODE_EJECTED = 2, /* too many consecutive failed exchanges (passive.c) */
    TG_NODE_LAGGING = 4, /* JSON-RPC: behind the best node, stalled or syncing (probe.c) */
};

/* What the active prober knows of a node. Written by the control thread only; read by /status
 * (which runs on the control thread) and /metrics. */
struct tg_probe_state {
    uint32_t ok_run, fail_run; /* consecutive probe outcomes */
    int64_t last_at;           /* wall clock ms of the last completed probe, 0 = never */
    bool last_ok;
    bool in_flight;
    int last_status;                   /* HTTP status of the last probe, 0 = none */
    uint64_t head_changed_at;          /* monotonic ms when head_block last moved */
    uint64_t probes_ok, probes_failed; /* completed probes, for the metrics */
    uint64_t next_at; /* monotonic ms of the node's next probe, 0 = not scheduled */
    bool syncing;     /* JSON-RPC: the last eth_syncing answer was not false */
    bool no_batch;    /* JSON-RPC: it refused the batch that asked for its finalized block, so
                       * its probes leave that call out (probe.c) */
};

/* Node health, shared by the workers and the control thread. */
struct tg_node_health {
    atomic_uint flags;        /* enum tg_node_flag bits */
    atomic_uint failures;     /* consecutive failed exchanges seen by any worker */
    atomic_uint ejections;    /* ejections so far */
    atomic_uint eject_level;  /* base_ejection multiplier of the current ejection */
    atomic_llong eject_until; /* monotonic ms: an ejected node takes one trial request from then
                               * (claiming the trial moves it forward, see balance.c) */
    atomic_llong usable_at;   /* monotonic ms: when it last became usable (slow start) */
    atomic_ullong head_block; /* JSON-RPC head block, 0 = unknown */
    atomic_ullong finalized_block; /* JSON-RPC: the node's "finalized" block, 0 = unknown */
    atomic_int connections;        /* open connections, all workers, for max_connections */
    pthread_mutex_t lock;          /* guards last_error */
    char last_error[120];
    int64_t last_error_at; /* wall clock ms */
    struct tg_probe_state probe;
};

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
    struct tg_node_health health __attribute__((aligned(64)));
    size_t num_workers;
    struct tg_node_worker w[];
};

/* A node as a member of one snapshot's service: weight and tier may change on reload. */
struct tg_member {
    struct tg_node *node;
    const struct tg_node_conf *conf; /* this snapshot's conf: weight, tier */
};

/* Whether the balancer may send a member new requests (drained or any health flag: not). */
static inline bool tg_member_usable(const struct tg_member *m)
{
    return !m->conf->drain &&
           atomic_load_explicit(&m->node->health.flags, memory_order_relaxed) == 0;
}

/* A failed exchange doubles the node's latency EWMA, up to this. */
#define TG_EWMA_PENALTY_MAX_US 10000000ull
/* A node's latency EWMA halves for every this long without a sample (p2c_ewma tries it again). */
#define TG_EWMA_HALF_LIFE_US 250000ull

/* The latency EWMA of a node on a worker as of now: halved per half-life without samples, and
 * in between along the chord (continuous, so a node that is sampled now and then still decays). */
static inline uint64_t tg_node_ewma(const struct tg_node_worker *nw, uint64_t now_us)
{
    uint64_t e = nw->ewma_us, idle = now_us > nw->ewma_at ? now_us - nw->ewma_at : 0;
    uint64_t halvings = idle / TG_EWMA_HALF_LIFE_US;

    if (halvings >= 63)
        return 0;
    e >>= halvings;
    return e - e * (idle % TG_EWMA_HALF_LIFE_US) / (2 * TG_EWMA_HALF_LIFE_US);
}

/*
 * Whether this worker's estimate of a node predates the node's return (a passed trial request,
 * good probes): it then mostly holds failure penalties, which would keep p2c_ewma off the node
 * on this worker for seconds after another worker saw it answer again. Such an estimate is
 * dropped: the node is treated as never sampled and its next answer gives it a new one.
 */
static inline bool tg_node_ewma_stale(const struct tg_node *n, const struct tg_node_worker *nw)
{
    return nw->ewma_at / 1000 <
           (uint64_t)atomic_load_explicit(&n->health.usable_at, memory_order_relaxed);
}

/* Adds a latency sample (µs) to a node's EWMA on this worker (weight 1/8). */
static inline void tg_node_ewma_add(const struct tg_node *n, struct tg_node_worker *nw,
                                    uint64_t sample_us, uint64_t now_us)
{
    uint64_t e = tg_node_ewma(nw, now_us);

    /* only a node never sampled (or back since, see above) takes a sample whole: one whose
     * estimate decayed to nothing while p2c sent it nothing must not be judged by one cold
     * answer */
    if (nw->ewma_us == 0 || tg_node_ewma_stale(n, nw))
        nw->ewma_us = sample_us;
    else
        nw->ewma_us = e + (uint64_t)((int64_t)(sample_us - e) / 8);
    nw->ewma_at = now_us;
}

/* A failed exchange: the EWMA doubles (bounded, so it decays in seconds). */
static inline void tg_node_ewma_penalize(struct tg_node_worker *nw, uint64_t now_us)
{
    uint64_t e = tg_node_ewma(nw, now_us);

    nw->ewma_us = e < TG_EWMA_PENALTY_MAX_US / 2 ? e * 2 + 1000 : TG_EWMA_PENALTY_MAX_US;
    nw->ewma_at = now_us;
}

/* One second of the retry budget's 10-second window. */
struct tg_budget_slot {
    int64_t sec; /* monotonic second this slot counts */
    uint32_t requests, retries;
};

#define TG_BUDGET_SLOTS 10

/* One worker's state for one service: balancer cursors and its share of the retry budget. */
struct tg_service_worker {
    uint32_t rr;     /* rotation for ties and round robin */
    uint64_t rng;    /* xorshift state for p2c and jitter */
    int64_t *smooth; /* smooth weighted round robin: current weight per member */
    /* concurrency.max, this worker's share: admitted requests and the FIFO of waiting ones */
    uint32_t in_flight, waiting;
    struct tg_txn *wait_head, *wait_tail;
    struct tg_budget_slot budget[TG_BUDGET_SLOTS];
} __attribute__((aligned(64)));

/* A point of the consistent-hash ring. */
struct tg_hash_point {
    uint64_t hash;
    uint32_t member;
};

struct tg_service {
    const struct tg_service_conf *conf;
    struct tg_member *members;
    size_t num_nodes;
    uint32_t label;
    struct tg_tls_ctx *tls;      /* client context when the service has https nodes */
    struct tg_service_worker *w; /* per worker */
    struct tg_hash_point *ring;  /* consistent_hash only, sorted by hash */
    size_t ring_len;
    _Atomic uint64_t rpc_head; /* kind: jsonrpc: the highest eth_blockNumber answer passed on */
    uint32_t *rpc_classes;     /* kind: jsonrpc: label ids of conf->rpc.weights, then "other" */
};

struct tg_upstreams {
    struct tg_service *services; /* parallel to cf->services */
    size_t num_services;
    struct tg_node **nodes; /* every node of every service */
    size_t num_nodes;
    size_t num_workers;
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

/* The most nodes a service may have: members are tracked in fixed-size bitmaps. */
#define TG_MAX_NODES 256

/* A request's view of node choice (balance.c). */
struct tg_pick {
    uint64_t tried[TG_MAX_NODES / 64]; /* members this request already tried */
    uint64_t key;                      /* consistent_hash: hash of the request's key */
    uint64_t now_us;                   /* the worker's loop clock */
    uint32_t worker;
    bool trial; /* out: the pick is an ejected node's half-open trial */
};

/*
 * Picks the member for the next attempt of a request: the lowest tier that has a usable node not
 * yet tried, then the service's policy among those. An ejected node whose ejection ran out gets
 * one trial request first. Returns the member index, or -1 when no node can be used (with
 * health.panic, every untried node counts as usable then).
 */
int tg__balance_pick(struct tg_service *svc, struct tg_pick *p);

static inline int tg_balance_pick(struct tg_service *svc, struct tg_pick *p)
{
    /* the common single-node service, healthy and without a connection limit */
    if (svc->num_nodes == 1 && p->tried[0] == 0 && svc->members[0].conf->max_connections == 0 &&
        !svc->members[0].conf->drain &&
        atomic_load_explicit(&svc->members[0].node->health.flags, memory_order_relaxed) == 0) {
        p->trial = false;
        return 0;
    }
    return tg__balance_pick(svc, p);
}

/* Passive health (passive.c): the outcome of one exchange with a node. ok is false for connect
 * errors, resets, timeouts and statuses of health.passive.statuses. trial marks the half-open
 * request of tg_pick. why is a short text kept as the node's last error. */
void tg_node_report(const struct tg_service *svc, struct tg_node *n, bool ok, bool trial,
                    uint64_t now_us, const char *why);

/* The common case of tg_node_report() inline: a success that changes nothing. */
static inline void tg_node_report_ok(const struct tg_service *svc, struct tg_node *n, bool trial,
                                     uint64_t now_us)
{
    if (trial || atomic_load_explicit(&n->health.failures, memory_order_relaxed) != 0)
        tg_node_report(svc, n, true, trial, now_us, NULL);
}
/* Records a node's last error (any thread). */
void tg_node_set_error(struct tg_node *n, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The state name /status and the metrics show: draining (its conf says drain), down, ejected,
 * lagging or healthy. */
const char *tg_member_state_name(const struct tg_member *m);

/*
 * Copies the address to connect to for a node into out (one of its DNS answers for named
 * hosts, chosen by rr). Returns 0, or -1 when the name has never resolved.
 */
int tg_node_address(const struct tg_node *n, uint32_t rr, struct tg_addr *out);

#endif
