/*
 * Rate limits and quotas (issue 5).
 *
 * A rate is a GCRA (generic cell rate algorithm): per (limit, caller) one number, the theoretical
 * arrival time (TAT) of the next unit. A request of c units at time now is admitted when
 *     max(TAT, now) + c*T - now <= burst*T        (T = period / count, the emission interval)
 * and then TAT moves to max(TAT, now) + c*T. So a caller may spend `burst` units at once and
 * then `count` per `period`, smoothly: no window edges to game. A quota counts units per UTC day
 * or calendar month.
 *
 * The table is one per process, shared by every worker (so a limit means the same whatever the
 * worker count), sharded with a mutex per shard, and bounded: beyond ratelimit.max_keys counters
 * the least recently used one of a shard is evicted. It outlives configuration reloads: counters
 * are keyed by a hash of the limit's name and the caller, so a reload that keeps a limit keeps its
 * counters.
 *
 * Cluster mode (sync.c): each instance decides locally, and a background thread pushes what it
 * admitted to Redis every `sync`, pulling back what the other instances admitted, which it then
 * charges to the local counters. No request ever waits on Redis; the price is an overshoot of at
 * most instances x rate x sync while instances have not heard of each other yet.
 */
#ifndef TG_RATELIMIT_H
#define TG_RATELIMIT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"

struct tg_rl_table;

/* What a check decided, and what the RateLimit header fields report. */
struct tg_rl_verdict {
    bool ok;
    bool quota;             /* the quota (not the rate) is what refused or is reported */
    bool store_down;        /* refused by on_store_error: deny */
    uint64_t limit;         /* q: the policy's units per window */
    uint64_t window_s;      /* w: the policy's window */
    uint64_t remaining;     /* r: units a caller may still spend now */
    uint64_t reset_s;       /* t: seconds until the units are back (all of them) */
    uint64_t retry_after_s; /* refused: seconds until this request would be admitted */
};

/* max_keys: counters kept at most (LRU beyond). */
struct tg_rl_table *tg_rl_table_new(uint64_t max_keys);
void tg_rl_table_free(struct tg_rl_table *t);

/* The counter id of a limit for one caller: 64 bits of the SHA-256 of the limit's name hash
 * (tg_rl_name_hash, kept in the limit's conf) and the caller's key bytes (consumer name, client
 * address, header value, or nothing for by: route). The same on every instance. */
uint64_t tg_rl_name_hash(const char *limit_name);
uint64_t tg_rl_id(uint64_t name_hash, const void *key, size_t len);

/*
 * Charges cost units to counter id of limit l if both its rate and its quota admit them; fills
 * v (always: an admitted request reports its remaining units too). now_us is monotonic, wall_s
 * the UTC clock (quota periods). Thread-safe.
 */
void tg_rl_check(struct tg_rl_table *t, const struct tg_limit_conf *l, uint64_t id, uint64_t cost,
                 uint64_t now_us, int64_t wall_s, struct tg_rl_verdict *v);

/* Gives back cost units a check admitted (a later limit of the same request refused it). */
void tg_rl_refund(struct tg_rl_table *t, const struct tg_limit_conf *l, uint64_t id, uint64_t cost,
                  int64_t wall_s);

/* Counters held now, and counters evicted so far (metrics). */
uint64_t tg_rl_table_size(const struct tg_rl_table *t);
uint64_t tg_rl_table_evictions(const struct tg_rl_table *t);

/* -- cluster sync (sync.c) ------------------------------------------------------------------- */

/* Starts the thread that syncs t with the Redis at url every sync_ms; deny: on_store_error. */
int tg_rl_sync_start(struct tg_rl_table *t, const char *url, tg_msec_t sync_ms, bool deny);
/* Changes url, period or behaviour on reload (url NULL: stop syncing). */
void tg_rl_sync_configure(struct tg_rl_table *t, const char *url, tg_msec_t sync_ms, bool deny);
void tg_rl_sync_stop(struct tg_rl_table *t);

/* Sync figures for the metrics: failed rounds, and the durations of rounds (histogram). */
struct tg_rl_sync_stats {
    uint64_t errors;
    uint64_t rounds;
    uint64_t bucket[16]; /* durations, bounds tg_dur_bounds_us (obs/metrics.h) + Inf */
    uint64_t sum_us;
    bool up;
};
void tg_rl_sync_stats(const struct tg_rl_table *t, struct tg_rl_sync_stats *out);

/* The process's table (created on first use with max_keys), for the proxy and the metrics. */
struct tg_rl_table *tg_rl_global(uint64_t max_keys);

#endif
