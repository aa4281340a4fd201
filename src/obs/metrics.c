/*
 * Label registry, per-worker series tables and histograms (see metrics.h).
 */
#include "obs/metrics.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

const uint64_t tg_dur_bounds_us[TG_DUR_BUCKETS] = {1000,    2500,    5000,     10000,   25000,
                                                   50000,   100000,  250000,   500000,  1000000,
                                                   2500000, 5000000, 10000000, 30000000};

const uint64_t tg_size_bounds[TG_SIZE_BUCKETS] = {64,    256,    1024,    4096,    16384,
                                                  65536, 262144, 1048576, 4194304, 16777216};
const uint64_t tg_batch_bounds[TG_BATCH_BUCKETS] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000};

static struct {
    pthread_mutex_t lock;
    uint32_t count[TG_LABEL__COUNT];
    const char *names[TG_LABEL__COUNT][TG_LABELS_MAX];
    uint32_t parents[TG_LABEL__COUNT][TG_LABELS_MAX];
} tg__labels = {.lock = PTHREAD_MUTEX_INITIALIZER};

uint32_t tg_label_intern(int kind, const char *name, uint32_t parent)
{
    uint32_t id;

    pthread_mutex_lock(&tg__labels.lock);
    if (tg__labels.count[kind] == 0) {
        tg__labels.names[kind][TG_LABEL_NONE] = "_none";
        tg__labels.names[kind][TG_LABEL_OTHER] = "_other";
        tg__labels.count[kind] = 1;
    }
    for (id = 1; id < tg__labels.count[kind]; id++) {
        if (tg__labels.parents[kind][id] == parent && strcmp(tg__labels.names[kind][id], name) == 0)
            goto out;
    }
    if (id >= TG_LABEL_OTHER) {
        id = TG_LABEL_OTHER;
        goto out;
    }
    tg__labels.names[kind][id] = tg_strdup(name);
    tg__labels.parents[kind][id] = parent;
    __atomic_store_n(&tg__labels.count[kind], id + 1, __ATOMIC_RELEASE);
out:
    pthread_mutex_unlock(&tg__labels.lock);
    return id;
}

const char *tg_label_name(int kind, uint32_t id)
{
    if (id == TG_LABEL_OTHER)
        return "_other";
    if (id >= __atomic_load_n(&tg__labels.count[kind], __ATOMIC_ACQUIRE))
        return "_none";
    return tg__labels.names[kind][id];
}

uint32_t tg_label_parent(int kind, uint32_t id)
{
    return id < TG_LABELS_MAX ? tg__labels.parents[kind][id] : 0;
}

uint32_t tg_label_count(int kind)
{
    return __atomic_load_n(&tg__labels.count[kind], __ATOMIC_ACQUIRE);
}

void tg_metrics_init(struct tg_metrics *m)
{
    memset(m, 0, sizeof(*m));
    m->requests = tg_calloc(TG_SERIES_SLOTS, sizeof(*m->requests));
    m->upstream = tg_calloc(TG_SERIES_SLOTS, sizeof(*m->upstream));
    m->policy = tg_calloc(TG_SERIES_SLOTS, sizeof(*m->policy));
}

const char *const tg_auth_reasons[TG_AUTH_REASONS] = {
    "missing", "invalid_key",   "forbidden", "malformed", "algorithm",   "signature",
    "expired", "not_yet_valid", "issuer",    "audience",  "no_consumer",
};

void tg_metrics_dispose(struct tg_metrics *m)
{
    free(m->requests);
    free(m->upstream);
    free(m->policy);
    for (size_t i = 0; i < TG_LABELS_MAX; i++) {
        free(m->routes[i]);
        free(m->services[i]);
    }
    memset(m, 0, sizeof(*m));
}

void tg__series_insert(struct tg_metrics *m, struct tg_series *table, uint32_t *used, uint64_t key)
{
    uint32_t i = (uint32_t)((key * 0x9e3779b97f4a7c15ull) >> 52) & (TG_SERIES_SLOTS - 1);

    if (*used >= TG_SERIES_SLOTS / 4 * 3) {
        m->series_overflow++;
        return;
    }
    while (table[i].key != 0)
        i = (i + 1) & (TG_SERIES_SLOTS - 1);
    table[i].count = 1;
    __atomic_store_n(&table[i].key, key, __ATOMIC_RELEASE);
    (*used)++;
}

struct tg_route_hists *tg__metrics_route_new(struct tg_metrics *m, uint32_t route)
{
    struct tg_route_hists *h = tg_calloc(1, sizeof(*h));

    __atomic_store_n(&m->routes[route], h, __ATOMIC_RELEASE);
    return h;
}

struct tg_hist_dur *tg__metrics_service_new(struct tg_metrics *m, uint32_t service)
{
    struct tg_hist_dur *h = tg_calloc(1, sizeof(*h));

    __atomic_store_n(&m->services[service], h, __ATOMIC_RELEASE);
    return h;
}

static int tg__series_cmp(const void *a, const void *b)
{
    uint64_t x = ((const struct tg_series *)a)->key, y = ((const struct tg_series *)b)->key;

    return x < y ? -1 : x > y;
}

size_t tg_metrics_collect(struct tg_metrics *const *ms, size_t n, int table, struct tg_series **out)
{
    struct tg_series *all = tg_malloc(n * TG_SERIES_SLOTS * sizeof(*all) + 1);
    size_t cnt = 0, merged = 0;

    for (size_t w = 0; w < n; w++) {
        const struct tg_series *t = table == TG_SERIES_UPSTREAM ? ms[w]->upstream
                                    : table == TG_SERIES_POLICY ? ms[w]->policy
                                                                : ms[w]->requests;

        for (size_t i = 0; i < TG_SERIES_SLOTS; i++) {
            uint64_t key = __atomic_load_n(&t[i].key, __ATOMIC_ACQUIRE);

            if (key == 0)
                continue;
            all[cnt].key = key;
            all[cnt++].count = __atomic_load_n(&t[i].count, __ATOMIC_RELAXED);
        }
    }
    qsort(all, cnt, sizeof(*all), tg__series_cmp);
    for (size_t i = 0; i < cnt; i++) {
        if (merged > 0 && all[merged - 1].key == all[i].key)
            all[merged - 1].count += all[i].count;
        else
            all[merged++] = all[i];
    }
    *out = all;
    return merged;
}

void tg_hist_dur_add(struct tg_hist_dur *sum, const struct tg_hist_dur *h)
{
    for (size_t i = 0; i <= TG_DUR_BUCKETS; i++)
        sum->bucket[i] += __atomic_load_n(&h->bucket[i], __ATOMIC_RELAXED);
    sum->sum_us += __atomic_load_n(&h->sum_us, __ATOMIC_RELAXED);
}

void tg_hist_size_add(struct tg_hist_size *sum, const struct tg_hist_size *h)
{
    for (size_t i = 0; i <= TG_SIZE_BUCKETS; i++)
        sum->bucket[i] += __atomic_load_n(&h->bucket[i], __ATOMIC_RELAXED);
    sum->sum += __atomic_load_n(&h->sum, __ATOMIC_RELAXED);
}
