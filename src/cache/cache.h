/*
 * The response cache (issue 7): one in-memory store per process, shared by the workers,
 * sharded with a lock per shard, bounded in bytes with LRU eviction (store.c); the HTTP rules
 * that say what may be stored, for how long, and under which key (policy.c).
 *
 * An entry is immutable once inserted and reference counted: a worker writing a hit to a client
 * holds a reference, so eviction or replacement never frees bytes still being sent. Its bytes
 * (the entry struct, key, stored response head and body) are one allocation, and the store
 * counts what the allocator really gave (malloc_usable_size), so tollgate_cache_bytes is what
 * the process holds for the cache.
 *
 * Coalescing: the first miss for a key becomes the writer (a fill marker is left in the store);
 * later misses for the same key, on any worker, wait. The store only records which workers have
 * waiters (a bit per worker); each worker keeps its own waiting transactions, so a waiter that
 * gives up never races with the writer. When the fill ends, the writer's worker tells each
 * worker with waiters (tg_loop_post), which resumes its own.
 */
#ifndef TG_CACHE_H
#define TG_CACHE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/str.h"
#include "http/h1.h"

#define TG_CACHE_SHARDS 16

/* -- entries --------------------------------------------------------------------------------- */

struct tg_cache_entry {
    /* set by the filler before tg_cache_insert(), read-only afterwards */
    uint64_t hash;    /* of the key (tg_cache_hash) */
    const char *key;  /* key_len bytes, in data[] */
    const char *head; /* the stored response head, head_len bytes, in data[]: status line
                       * and the header lines to send, each ending in CRLF, without the
                       * blank line and without hop-by-hop, Date, Age or X-Cache fields */
    char *body;       /* body_len bytes, in data[] */
    uint32_t key_len, head_len;
    uint64_t body_len;
    uint16_t status;
    int64_t stored_ms;  /* wall clock ms when the response was received (for Age) */
    int64_t age_s;      /* the response's Age when received, seconds */
    int64_t fresh_ms;   /* wall clock ms until which it is fresh */
    int64_t swr_ms;     /* ... until which a stale copy may be served while revalidating */
    int64_t sie_ms;     /* ... until which a stale copy may be served when the node fails */
    struct tg_str etag; /* points into head (empty: none) */
    struct tg_str last_modified;
    /* store-private */
    atomic_uint refs;
    size_t charge; /* bytes the allocator gave for this entry */
    uint64_t used; /* the store's clock when it was last inserted or found (LRU order) */
    struct tg_cache_entry *hnext, *lru_prev, *lru_next;
    bool linked;
    char data[];
};

/* A new entry with room for the key, head and body (a reference held by the caller). The key
 * and head are copied in; the body is filled by the caller (entry->body, body_len bytes).
 * NULL when the allocation fails. */
struct tg_cache_entry *tg_cache_entry_new(const char *key, size_t key_len, const char *head,
                                          size_t head_len, size_t body_len);
/* Takes one more reference. */
void tg_cache_entry_ref(struct tg_cache_entry *e);
/* Drops a reference; the last one frees the entry. Any thread. */
void tg_cache_entry_unref(struct tg_cache_entry *e);

/* -- the store ------------------------------------------------------------------------------- */

struct tg_cache_store;

struct tg_cache_stats {
    uint64_t bytes;     /* charged to the cache now */
    uint64_t entries;   /* entries now */
    uint64_t evictions; /* entries evicted to make room, since start */
};

struct tg_cache_store *tg_cache_store_new(uint64_t max_bytes, uint64_t max_object);
void tg_cache_store_free(struct tg_cache_store *s);
/* A reload changed cache.max_size or max_object: evicts down to the new size at once. */
void tg_cache_store_resize(struct tg_cache_store *s, uint64_t max_bytes, uint64_t max_object);
uint64_t tg_cache_store_max_object(const struct tg_cache_store *s);
uint64_t tg_cache_hash(const char *key, size_t len);

/* The entry stored under key (a reference for the caller, who unrefs it), bumped to the front
 * of its shard's LRU; NULL when there is none. */
struct tg_cache_entry *tg_cache_lookup(struct tg_cache_store *s, uint64_t hash, const char *key,
                                       size_t key_len);
/* Stores e (the store takes the caller's reference) in place of any entry under the same key,
 * evicting least recently used entries (of any shard) until the bytes fit max_bytes. An entry
 * larger than max_object, or than max_bytes, is not stored (its reference is dropped). Returns
 * whether it was stored. */
bool tg_cache_insert(struct tg_cache_store *s, struct tg_cache_entry *e);
/* Removes the entry under key, if any. Returns whether there was one. */
bool tg_cache_remove(struct tg_cache_store *s, uint64_t hash, const char *key, size_t key_len);
/* Removes every entry whose key makes match() true. Returns how many. */
size_t tg_cache_purge(struct tg_cache_store *s,
                      bool (*match)(const char *key, size_t len, void *arg), void *arg);
void tg_cache_stats(const struct tg_cache_store *s, struct tg_cache_stats *out);

/* -- coalescing ------------------------------------------------------------------------------ */

enum tg_cache_fill_role {
    TG_FILL_WRITER, /* no fill under way: the caller fetches, then calls tg_cache_fill_end() */
    TG_FILL_WAIT    /* a fill is under way: the caller waits for its worker's wake-up */
};

/* A miss for key on worker `worker` (0-63): the writer, or a waiter (the worker's bit is set
 * in the fill's waiter mask). A fill marker lives until tg_cache_fill_end(). */
enum tg_cache_fill_role tg_cache_fill_begin(struct tg_cache_store *s, uint64_t hash,
                                            const char *key, size_t key_len, uint32_t worker);
/* The writer's fetch ended (stored or not): removes the marker. Returns the mask of workers
 * that have waiters for the key, to be woken. */
uint64_t tg_cache_fill_end(struct tg_cache_store *s, uint64_t hash, const char *key,
                           size_t key_len);

/* -- purge.c ---------------------------------------------------------------------------------- */

struct tg_sbuf;
/* POST /cache/purge: the JSON body names a key, a host or a prefix; the answer goes to out.
 * Returns the HTTP status (200, or 400 for a body it cannot read). */
int tg_cache_purge_request(struct tg_cache_store *s, const char *body, size_t len,
                           struct tg_sbuf *out);

#endif
