/*
 * What table.c and sync.c share: the shard layout of the counter table.
 */
#ifndef TG_RATELIMIT_INTERNAL_H
#define TG_RATELIMIT_INTERNAL_H

#include <pthread.h>

#include "core/hash.h"
#include "ratelimit/ratelimit.h"

#define TG_RL_SHARDS 64   /* power of two; the shard is taken from the id's top bits */
#define TG_RL_CHUNK  1024 /* entries allocated at a time per shard */

struct tg_rl_entry {
    uint64_t id;
    uint64_t tat;        /* GCRA theoretical arrival time, monotonic ns */
    uint64_t emission;   /* ns per unit, of the last limit that used it (sync charges others) */
    uint64_t quota_used; /* units this quota period (cluster-wide once synced) */
    uint64_t pend;       /* rate units admitted here since the last sync */
    uint64_t pend_quota; /* quota units admitted here since the last sync */
    uint64_t seen;       /* the cluster's rate counter as of the last sync; 0 = never synced */
    uint32_t quota_pid;  /* day or month number quota_used belongs to */
    uint32_t ttl_ms;     /* how long the cluster keeps the rate counter */
    uint32_t hnext, prev, next, dirty_next;
    uint8_t quota_kind; /* enum tg_quota_period */
    bool dirty;         /* on the shard's dirty list */
    bool synced;        /* seen holds the cluster's counter */
};

struct tg_rl_shard {
    pthread_mutex_t lock;
    uint32_t *index; /* bucket heads */
    uint32_t mask;
    uint64_t seed; /* bucket = hash(id ^ seed): ids are the same on every instance, buckets not */
    uint32_t used, cap;
    uint32_t lru_head, lru_tail;
    uint32_t dirty; /* entries touched since the last sync */
    struct tg_rl_entry **chunks;
    uint32_t num_chunks;
} __attribute__((aligned(64)));

struct tg_rl_sync;

struct tg_rl_table {
    struct tg_rl_shard shards[TG_RL_SHARDS];
    atomic_uint_fast64_t size, evictions;
    atomic_bool deny_now; /* on_store_error: deny and the store is unreachable */
    struct tg_rl_sync *sync;
};

static inline struct tg_rl_entry *tg_rl_entry(struct tg_rl_shard *s, uint32_t i)
{
    return &s->chunks[i / TG_RL_CHUNK][i % TG_RL_CHUNK];
}

static inline uint32_t tg_rl_bucket(const struct tg_rl_shard *s, uint64_t id)
{
    return (uint32_t)(tg_hash_mix(id ^ s->seed) & s->mask);
}

uint32_t tg_rl_find(struct tg_rl_shard *s, uint64_t id);
void tg_rl_dirty_remove(struct tg_rl_shard *s, uint32_t i);
uint32_t tg_rl_period_id(uint8_t kind, int64_t wall_s);

#endif
