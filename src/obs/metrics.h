/*
 * Request metrics without atomics on the hot path (DESIGN §2: per-worker and summed on read).
 *
 * Every worker owns a struct tg_metrics that only it writes: labelled counters live in small
 * open-addressing tables keyed by (label ids, method, status), histograms in blocks allocated the
 * first time a route or service is seen. The scraper (the control thread) reads them with relaxed
 * loads and sums across workers; a key is published with a release store after its count is set,
 * so a reader never sees a key with a stale count from another series.
 *
 * Label ids name routes, services and nodes. They are interned by name and never reused, so a
 * route keeps its series across configuration reloads and cardinality is bounded by the
 * configurations loaded (at most TG_LABELS_MAX names per kind; beyond, series fold into "_other").
 */
#ifndef TG_METRICS_H
#define TG_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/core.h"

enum tg_label_kind {
    TG_LABEL_ROUTE,
    TG_LABEL_SERVICE,
    TG_LABEL_NODE,
    TG_LABEL_LIMIT, /* rate limits and quotas by name ("plan:pro", "rpc#1") */
    TG_LABEL_RPC,   /* JSON-RPC method classes (weight patterns) and error kinds */
    TG_LABEL__COUNT
};

#define TG_LABELS_MAX  1024
#define TG_LABEL_NONE  0                   /* "_none": no route matched, or no node was tried */
#define TG_LABEL_OTHER (TG_LABELS_MAX - 1) /* "_other": the registry is full */

/*
 * Returns the id of name (interned on first use). Nodes are named within their service: pass
 * the service's id as parent (0 for routes and services). Thread-safe; not for the hot path.
 */
uint32_t tg_label_intern(int kind, const char *name, uint32_t parent);
const char *tg_label_name(int kind, uint32_t id);
uint32_t tg_label_parent(int kind, uint32_t id);
/* One past the highest id handed out so far. */
uint32_t tg_label_count(int kind);

/* Histogram buckets: durations from 1 ms to 30 s, sizes from 64 bytes to 16 MiB, JSON-RPC
 * batch sizes from 1 to 1000 calls. */
#define TG_DUR_BUCKETS   14
#define TG_SIZE_BUCKETS  10
#define TG_BATCH_BUCKETS 10
extern const uint64_t tg_dur_bounds_us[TG_DUR_BUCKETS];
extern const uint64_t tg_size_bounds[TG_SIZE_BUCKETS];
extern const uint64_t tg_batch_bounds[TG_BATCH_BUCKETS];

struct tg_hist_dur {
    uint64_t bucket[TG_DUR_BUCKETS + 1]; /* not cumulative; the last one is +Inf */
    uint64_t sum_us;
};

struct tg_hist_size {
    uint64_t bucket[TG_SIZE_BUCKETS + 1];
    uint64_t sum;
};

struct tg_route_hists {
    struct tg_hist_dur duration;
    struct tg_hist_size request_size, response_size;
};

struct tg_series {
    uint64_t key; /* 0 = free slot */
    uint64_t count;
};

#define TG_SERIES_SLOTS 4096 /* per table and worker; at most 3/4 are used */

struct tg_metrics {
    struct tg_series *requests; /* key: route, method, status */
    struct tg_series *upstream; /* key: node, status (0 = no response) */
    struct tg_series *policy;   /* key: kind, route, reason or limit (tg_metrics_policy) */
    uint32_t requests_used, upstream_used, policy_used;
    uint64_t series_overflow; /* increments that found their table full */
    struct tg_route_hists *routes[TG_LABELS_MAX];
    struct tg_hist_dur *services[TG_LABELS_MAX]; /* upstream durations */
    uint64_t shed[TG_LABELS_MAX];                /* per service: refused by concurrency.queue */
    struct tg_hist_dur queue_wait;               /* time spent waiting for a concurrency slot */
    uint64_t rpc_batch[TG_BATCH_BUCKETS + 1];    /* JSON-RPC calls per request */
    uint64_t rpc_batch_sum;
};

void tg_metrics_init(struct tg_metrics *m);
void tg_metrics_dispose(struct tg_metrics *m);

static inline uint64_t tg_metrics_request_key(uint32_t route, unsigned method, unsigned status)
{
    return ((uint64_t)route << 24 | (uint64_t)method << 16 | status) + 1;
}

static inline uint64_t tg_metrics_upstream_key(uint32_t node, unsigned status)
{
    return ((uint64_t)node << 16 | status) + 1;
}

/* Slow paths of the inline functions below. */
void tg__series_insert(struct tg_metrics *m, struct tg_series *table, uint32_t *used, uint64_t key);
struct tg_route_hists *tg__metrics_route_new(struct tg_metrics *m, uint32_t route);
struct tg_hist_dur *tg__metrics_service_new(struct tg_metrics *m, uint32_t service);

static inline void tg__series_inc(struct tg_metrics *m, struct tg_series *table, uint32_t *used,
                                  uint64_t key)
{
    uint32_t i = (uint32_t)((key * 0x9e3779b97f4a7c15ull) >> 52) & (TG_SERIES_SLOTS - 1);

    for (;;) {
        struct tg_series *s = &table[i];

        if (TG_LIKELY(s->key == key)) {
            s->count++;
            return;
        }
        if (s->key == 0) {
            tg__series_insert(m, table, used, key);
            return;
        }
        i = (i + 1) & (TG_SERIES_SLOTS - 1);
    }
}

static inline unsigned tg_dur_bucket(uint64_t us)
{
    unsigned i = 0;

    while (i < TG_DUR_BUCKETS && us > tg_dur_bounds_us[i])
        i++;
    return i;
}

static inline void tg_hist_dur_observe(struct tg_hist_dur *h, uint64_t us)
{
    h->bucket[tg_dur_bucket(us)]++;
    h->sum_us += us;
}

static inline unsigned tg_size_bucket(uint64_t n)
{
    unsigned i = 0;

    while (i < TG_SIZE_BUCKETS && n > tg_size_bounds[i])
        i++;
    return i;
}

/* One finished client request. */
static inline void tg_metrics_request(struct tg_metrics *m, uint32_t route, unsigned method,
                                      unsigned status, uint64_t dur_us, uint64_t bytes_in,
                                      uint64_t bytes_out)
{
    struct tg_route_hists *h = m->routes[route];

    tg__series_inc(m, m->requests, &m->requests_used,
                   tg_metrics_request_key(route, method, status));
    if (TG_UNLIKELY(h == NULL))
        h = tg__metrics_route_new(m, route);
    tg_hist_dur_observe(&h->duration, dur_us);
    h->request_size.bucket[tg_size_bucket(bytes_in)]++;
    h->request_size.sum += bytes_in;
    h->response_size.bucket[tg_size_bucket(bytes_out)]++;
    h->response_size.sum += bytes_out;
}

/* One exchange with a node; status 0 when it gave no response. */
static inline void tg_metrics_upstream(struct tg_metrics *m, uint32_t node, uint32_t service,
                                       unsigned status, uint64_t dur_us)
{
    struct tg_hist_dur *h = m->services[service];

    tg__series_inc(m, m->upstream, &m->upstream_used, tg_metrics_upstream_key(node, status));
    if (TG_UNLIKELY(h == NULL))
        h = tg__metrics_service_new(m, service);
    tg_hist_dur_observe(h, dur_us);
}

/* Requests refused by identity: auth failures by reason (tg_auth_reasons) and rate-limited
 * requests by limit label. */
enum tg_policy_kind {
    TG_POLICY_AUTH,
    TG_POLICY_LIMIT,
    TG_POLICY_RPC_CALLS,
    TG_POLICY_RPC_ERRORS,
    TG_POLICY_CACHE /* cache results by route (tg_cache_results) */
};
extern const char *const tg_auth_reasons[];
#define TG_AUTH_REASONS 12

static inline void tg_metrics_policy(struct tg_metrics *m, uint32_t route, unsigned kind,
                                     uint32_t id)
{
    tg__series_inc(m, m->policy, &m->policy_used,
                   ((uint64_t)kind << 48 | (uint64_t)route << 24 | id) + 1);
}

/* JSON-RPC: calls by service and method class, errors by service and kind (TG_LABEL_RPC ids),
 * and the calls of each request. */
static inline void tg_metrics_rpc(struct tg_metrics *m, unsigned kind, uint32_t service,
                                  uint32_t label)
{
    tg_metrics_policy(m, service, kind, label);
}

static inline void tg_metrics_rpc_batch(struct tg_metrics *m, uint64_t calls)
{
    unsigned i = 0;

    while (i < TG_BATCH_BUCKETS && calls > tg_batch_bounds[i])
        i++;
    m->rpc_batch[i]++;
    m->rpc_batch_sum += calls;
}

/* Reading side (any thread): the sum over ms[0..n) of one series table, as (key, count) pairs
 * sorted by key. Returns the number of pairs; *out is malloc'ed. */
enum tg_series_table { TG_SERIES_REQUESTS, TG_SERIES_UPSTREAM, TG_SERIES_POLICY };
size_t tg_metrics_collect(struct tg_metrics *const *ms, size_t n, int table,
                          struct tg_series **out);
/* Adds worker m's histograms into the sums (relaxed reads). */
void tg_hist_dur_add(struct tg_hist_dur *sum, const struct tg_hist_dur *h);
void tg_hist_size_add(struct tg_hist_size *sum, const struct tg_hist_size *h);

#endif
