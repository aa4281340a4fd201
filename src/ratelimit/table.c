/*
 * The shared counter table: GCRA rates and calendar quotas (see ratelimit.h).
 *
 * 64 shards, each a mutex, a chained hash index and an LRU list over a slab of entries that grows
 * in chunks up to its share of max_keys. Links are 32-bit slab indices. A check holds its shard's
 * lock for a hash lookup and a few arithmetic steps; with 64 shards two workers rarely meet.
 * Entries a check touched are also put on the shard's dirty list, which the cluster sync
 * (sync.c) drains.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "core/hash.h"
#include "core/sha256.h"
#include "ratelimit/ratelimit_internal.h"

#define NIL UINT32_MAX
#define NS  1000000000ull

uint64_t tg_rl_name_hash(const char *limit_name)
{
    return tg_hash64(limit_name, strlen(limit_name), 0);
}

/* SHA-256, not a fast hash: callers choose the bytes of some keys (header values, IPv6
 * addresses), and with a hash they could invert they could aim at another caller's counter. */
uint64_t tg_rl_id(uint64_t name_hash, const void *key, size_t len)
{
    uint8_t d[32];
    uint64_t id;

    tg_sha256_pair(&name_hash, sizeof(name_hash), key, len, d);
    memcpy(&id, d, sizeof(id));
    return id;
}

struct tg_rl_table *tg_rl_table_new(uint64_t max_keys)
{
    struct tg_rl_table *t = tg_calloc(1, sizeof(*t));
    uint32_t cap = (uint32_t)((max_keys + TG_RL_SHARDS - 1) / TG_RL_SHARDS);
    uint32_t buckets = 16;

    if (cap < 1)
        cap = 1;
    while (buckets < cap)
        buckets <<= 1;
    for (size_t i = 0; i < TG_RL_SHARDS; i++) {
        struct tg_rl_shard *s = &t->shards[i];

        pthread_mutex_init(&s->lock, NULL);
        s->cap = cap;
        s->mask = buckets - 1;
        s->index = tg_malloc(buckets * sizeof(*s->index));
        memset(s->index, 0xff, buckets * sizeof(*s->index));
        s->lru_head = s->lru_tail = s->dirty = NIL;
        s->seed = tg_hash_mix((uint64_t)(uintptr_t)s ^ (uint64_t)time(NULL) ^ i);
    }
    return t;
}

void tg_rl_table_free(struct tg_rl_table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < TG_RL_SHARDS; i++) {
        struct tg_rl_shard *s = &t->shards[i];

        for (uint32_t c = 0; c < s->num_chunks; c++)
            free(s->chunks[c]);
        free(s->chunks);
        free(s->index);
        pthread_mutex_destroy(&s->lock);
    }
    free(t);
}

static void tg__lru_unlink(struct tg_rl_shard *s, uint32_t i)
{
    struct tg_rl_entry *e = tg_rl_entry(s, i);

    if (e->prev != NIL)
        tg_rl_entry(s, e->prev)->next = e->next;
    else
        s->lru_head = e->next;
    if (e->next != NIL)
        tg_rl_entry(s, e->next)->prev = e->prev;
    else
        s->lru_tail = e->prev;
}

static void tg__lru_push(struct tg_rl_shard *s, uint32_t i)
{
    struct tg_rl_entry *e = tg_rl_entry(s, i);

    e->prev = NIL;
    e->next = s->lru_head;
    if (s->lru_head != NIL)
        tg_rl_entry(s, s->lru_head)->prev = i;
    s->lru_head = i;
    if (s->lru_tail == NIL)
        s->lru_tail = i;
}

static void tg__index_remove(struct tg_rl_shard *s, uint32_t i)
{
    struct tg_rl_entry *e = tg_rl_entry(s, i);
    uint32_t *pp = &s->index[tg_rl_bucket(s, e->id)];

    while (*pp != i)
        pp = &tg_rl_entry(s, *pp)->hnext;
    *pp = e->hnext;
}

/* The entry of id, or NIL. */
uint32_t tg_rl_find(struct tg_rl_shard *s, uint64_t id)
{
    uint32_t i = s->index[tg_rl_bucket(s, id)];

    while (i != NIL && tg_rl_entry(s, i)->id != id)
        i = tg_rl_entry(s, i)->hnext;
    return i;
}

/* A new entry for id: a fresh slot while the shard is under its share, else its LRU victim. */
static uint32_t tg__entry_new(struct tg_rl_table *t, struct tg_rl_shard *s, uint64_t id)
{
    struct tg_rl_entry *e;
    uint32_t i;

    if (s->used < s->cap) {
        i = s->used++;
        if (i / TG_RL_CHUNK == s->num_chunks) {
            s->chunks = tg_realloc(s->chunks, (s->num_chunks + 1) * sizeof(*s->chunks));
            s->chunks[s->num_chunks++] = tg_malloc(TG_RL_CHUNK * sizeof(struct tg_rl_entry));
        }
        atomic_fetch_add_explicit(&t->size, 1, memory_order_relaxed);
    } else {
        i = s->lru_tail;
        tg__lru_unlink(s, i);
        tg__index_remove(s, i);
        if (tg_rl_entry(s, i)->dirty)
            tg_rl_dirty_remove(s, i);
        atomic_fetch_add_explicit(&t->evictions, 1, memory_order_relaxed);
    }
    e = tg_rl_entry(s, i);
    memset(e, 0, sizeof(*e));
    e->id = id;
    e->hnext = s->index[tg_rl_bucket(s, id)];
    s->index[tg_rl_bucket(s, id)] = i;
    tg__lru_push(s, i);
    return i;
}

void tg_rl_dirty_remove(struct tg_rl_shard *s, uint32_t i)
{
    uint32_t *pp = &s->dirty;

    while (*pp != NIL && *pp != i)
        pp = &tg_rl_entry(s, *pp)->dirty_next;
    if (*pp == i)
        *pp = tg_rl_entry(s, i)->dirty_next;
    tg_rl_entry(s, i)->dirty = false;
}

/* UTC day number, or year * 12 + month, of a wall clock second (a month needs gmtime: cached
 * per thread for the current day). */
uint32_t tg_rl_period_id(uint8_t kind, int64_t wall_s)
{
    static __thread int64_t cached_day = -1;
    static __thread uint32_t cached_month;
    int64_t day = wall_s / 86400;

    if (kind == TG_QUOTA_DAY)
        return (uint32_t)day;
    if (day != cached_day) {
        time_t tt = (time_t)wall_s;
        struct tm tm;

        gmtime_r(&tt, &tm);
        cached_month = (uint32_t)(tm.tm_year + 1900) * 12 + (uint32_t)tm.tm_mon;
        cached_day = day;
    }
    return cached_month;
}

/* Seconds from wall_s to the end of its quota period. */
static uint64_t tg__period_left(uint8_t kind, int64_t wall_s)
{
    time_t tt = (time_t)wall_s;
    struct tm tm;

    if (kind == TG_QUOTA_DAY)
        return (uint64_t)(86400 - wall_s % 86400);
    gmtime_r(&tt, &tm);
    tm.tm_mday = 1;
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    if (++tm.tm_mon == 12) {
        tm.tm_mon = 0;
        tm.tm_year++;
    }
    return (uint64_t)(timegm(&tm) - wall_s);
}

static uint64_t tg__ceil_s(uint64_t ns)
{
    return (ns + NS - 1) / NS;
}

void tg_rl_check(struct tg_rl_table *t, const struct tg_limit_conf *l, uint64_t id, uint64_t cost,
                 uint64_t now_us, int64_t wall_s, struct tg_rl_verdict *v)
{
    struct tg_rl_shard *s = &t->shards[(id >> 58) & (TG_RL_SHARDS - 1)];
    uint64_t now = now_us * 1000, T = 0, tat = 0, new_tat = 0, tau = 0;
    uint32_t pid = l->quota ? tg_rl_period_id(l->quota_period, wall_s) : 0;
    struct tg_rl_entry *e;
    bool rate_ok = true, quota_ok = true;
    uint32_t i;

    memset(v, 0, sizeof(*v));
    if (atomic_load_explicit(&t->deny_now, memory_order_relaxed)) {
        v->store_down = true;
        v->retry_after_s = 1;
        return;
    }
    pthread_mutex_lock(&s->lock);
    i = tg_rl_find(s, id);
    if (i == NIL) {
        i = tg__entry_new(t, s, id);
    } else {
        tg__lru_unlink(s, i);
        tg__lru_push(s, i);
    }
    e = tg_rl_entry(s, i);
    if (l->rate_count) {
        T = l->rate_period * 1000000ull / l->rate_count;
        if (T == 0)
            T = 1;
        tau = l->burst * T;
        e->emission = T;
        e->ttl_ms = (uint32_t)((tau / 1000000) + 60000);
        tat = e->tat > now ? e->tat : now;
        new_tat = tat + cost * T;
        rate_ok = new_tat - now <= tau;
    }
    if (l->quota) {
        if (e->quota_pid != pid) {
            e->quota_pid = pid;
            e->quota_used = 0;
            e->pend_quota = 0;
        }
        e->quota_kind = l->quota_period;
        quota_ok = e->quota_used + cost <= l->quota;
    }
    v->ok = rate_ok && quota_ok;
    if (v->ok) {
        if (l->rate_count) {
            e->tat = new_tat;
            e->pend += cost;
        }
        if (l->quota) {
            e->quota_used += cost;
            e->pend_quota += cost;
        }
    }
    if (!e->dirty) {
        e->dirty = true;
        e->dirty_next = s->dirty;
        s->dirty = i;
    }
    /* what the headers report: the rate, unless the quota is what binds */
    if (l->rate_count) {
        uint64_t spent = (v->ok ? new_tat : tat) - now;

        v->limit = l->rate_count;
        v->window_s = (l->rate_period + 999) / 1000;
        v->remaining = spent < tau ? (tau - spent) / T : 0;
        v->reset_s = tg__ceil_s(spent);
        if (!rate_ok)
            v->retry_after_s = tg__ceil_s(new_tat - now - tau);
    }
    if (l->quota) {
        uint64_t left = l->quota > e->quota_used ? l->quota - e->quota_used : 0;

        if (!quota_ok || l->rate_count == 0 || left < v->remaining) {
            v->quota = true;
            v->limit = l->quota;
            v->window_s = l->quota_period == TG_QUOTA_DAY ? 86400 : 30 * 86400;
            v->remaining = left;
            v->reset_s = tg__period_left(l->quota_period, wall_s);
        }
        if (!quota_ok && v->retry_after_s < v->reset_s)
            v->retry_after_s = v->reset_s;
    }
    pthread_mutex_unlock(&s->lock);
    if (!v->ok && v->retry_after_s == 0)
        v->retry_after_s = 1;
}

void tg_rl_refund(struct tg_rl_table *t, const struct tg_limit_conf *l, uint64_t id, uint64_t cost,
                  int64_t wall_s)
{
    struct tg_rl_shard *s = &t->shards[(id >> 58) & (TG_RL_SHARDS - 1)];
    uint32_t i;

    pthread_mutex_lock(&s->lock);
    i = tg_rl_find(s, id);
    if (i != UINT32_MAX) {
        struct tg_rl_entry *e = tg_rl_entry(s, i);

        if (l->rate_count && e->emission) {
            e->tat -= e->tat > cost * e->emission ? cost * e->emission : e->tat;
            e->pend -= e->pend > cost ? cost : e->pend;
        }
        if (l->quota && e->quota_pid == tg_rl_period_id(l->quota_period, wall_s)) {
            e->quota_used -= e->quota_used > cost ? cost : e->quota_used;
            e->pend_quota -= e->pend_quota > cost ? cost : e->pend_quota;
        }
    }
    pthread_mutex_unlock(&s->lock);
}

uint64_t tg_rl_table_size(const struct tg_rl_table *t)
{
    return atomic_load_explicit(&t->size, memory_order_relaxed);
}

uint64_t tg_rl_table_evictions(const struct tg_rl_table *t)
{
    return atomic_load_explicit(&t->evictions, memory_order_relaxed);
}

struct tg_rl_table *tg_rl_global(uint64_t max_keys)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static struct tg_rl_table *global;
    struct tg_rl_table *t;

    pthread_mutex_lock(&lock);
    if (global == NULL && max_keys > 0)
        global = tg_rl_table_new(max_keys);
    t = global;
    pthread_mutex_unlock(&lock);
    return t;
}
