/*
 * The response cache store (issue 7): TG_CACHE_SHARDS shards, each a chained hash table and an
 * LRU list under one mutex, so workers that hit different keys rarely meet on a lock. A key's
 * shard comes from the high bits of its hash and its bucket from the low bits, so the two
 * choices are independent.
 *
 * Bytes: the store charges each linked entry what the allocator gave for it (its one
 * allocation, malloc_usable_size) to a process-wide atomic counter, and keeps the total under
 * max_bytes by evicting least recently used entries: every insert and hit stamps its entry
 * from one store-wide clock, and eviction takes the oldest of the shards' LRU tails, so the
 * order is the whole store's (each shard's list is in stamp order). An entry leaves the count when
 * it leaves the store, even if a reader still holds it: the reader's copy goes away when the write
 * ends, and counting it would make every insert evict for memory that eviction cannot give back.
 *
 * Locking: one shard lock at a time, never two, so there is no lock order to get wrong.
 * Entries are unreferenced after their shard lock is released, since the last reference frees
 * and free() has no business inside the critical section. Statistics are atomics, read
 * without locks.
 *
 * Coalescing markers are small separate allocations, not charged to the cache bytes: there is
 * at most one per key whose fill is under way (bounded by the misses in flight), and each lives
 * only until tg_cache_fill_end().
 */
#include <malloc.h>
#include <pthread.h>
#include <stdalign.h>
#include <string.h>
#include <sys/random.h>

#include "cache/cache.h"
#include "core/core.h"
#include "core/hash.h"

/* Buckets per shard: the first table, and the bound on growth. The bound keeps a huge store
 * from doubling its table into tens of megabytes of pointers; past it chains simply get longer
 * (2^18 buckets × 16 shards holds four million entries at load factor 1). */
#define TG__BUCKETS_MIN 256
#define TG__BUCKETS_MAX (1u << 18)

/* Fill markers per shard live in a small fixed table: only misses in flight have one, so a
 * few dozen buckets per shard keep the chains short without ever resizing. */
#define TG__FILL_BUCKETS 32

struct tg__fill {
    struct tg__fill *next;
    uint64_t hash;
    uint64_t waiters; /* a bit per worker with transactions waiting for this fill */
    size_t key_len;
    char key[];
};

struct tg__shard {
    /* Aligned so that two shards never share a cache line and their locks do not bounce
     * together between cores. */
    alignas(64) pthread_mutex_t lock;
    /* everything below is under lock */
    struct tg_cache_entry **buckets; /* chained by hnext */
    size_t mask;                     /* number of buckets - 1, a power of two */
    size_t count;                    /* entries linked in this shard */
    struct tg_cache_entry *lru_head; /* most recently used */
    struct tg_cache_entry *lru_tail; /* least recently used: evicted first */
    struct tg__fill *fills[TG__FILL_BUCKETS];
};

struct tg_cache_store {
    struct tg__shard shards[TG_CACHE_SHARDS];
    /* shared: read by any thread without a lock, written with atomics */
    alignas(64) _Atomic uint64_t max_bytes;
    _Atomic uint64_t max_object;
    _Atomic uint64_t bytes;     /* sum of the charges of linked entries */
    _Atomic uint64_t entries;   /* linked entries */
    _Atomic uint64_t evictions; /* entries evicted to make room */
    _Atomic uint64_t clock;     /* ticks once per insert or hit: the entries' LRU stamps */
};

/* -- hashing --------------------------------------------------------------------------------- */

/* The seed is random per process so that a client cannot precompute keys that all land in one
 * bucket (cache keys come from request URLs) and turn lookups into long walks under a lock; it
 * never changes afterwards, because every worker must compute the same hash for a key. */
static uint64_t tg__hash_seed;
static pthread_once_t tg__hash_once = PTHREAD_ONCE_INIT;

static void tg__hash_seed_init(void)
{
    if (getrandom(&tg__hash_seed, sizeof(tg__hash_seed), 0) != sizeof(tg__hash_seed))
        tg__hash_seed = tg_clock_mono_ns(); /* no entropy yet: still unknown to a client */
}

uint64_t tg_cache_hash(const char *key, size_t len)
{
    pthread_once(&tg__hash_once, tg__hash_seed_init);
    return tg_hash64(key, len, tg__hash_seed);
}

static struct tg__shard *tg__shard_of(struct tg_cache_store *s, uint64_t hash)
{
    return &s->shards[(hash >> 56) % TG_CACHE_SHARDS];
}

/* -- entries --------------------------------------------------------------------------------- */

struct tg_cache_entry *tg_cache_entry_new(const char *key, size_t key_len, const char *head,
                                          size_t head_len, size_t body_len)
{
    size_t room = sizeof(struct tg_cache_entry);
    struct tg_cache_entry *e;

    /* The lengths come from the response, so refuse what would wrap instead of trusting them. */
    if (key_len > UINT32_MAX || head_len > UINT32_MAX ||
        body_len > SIZE_MAX - room - key_len - head_len)
        return NULL;
    room += key_len + head_len + body_len;
    e = malloc(room);
    if (e == NULL)
        return NULL;
    memset(e, 0, sizeof(*e));
    memcpy(e->data, key, key_len);
    memcpy(e->data + key_len, head, head_len);
    e->key = e->data;
    e->key_len = (uint32_t)key_len;
    e->head = e->data + key_len;
    e->head_len = (uint32_t)head_len;
    e->body = e->data + key_len + head_len;
    e->body_len = body_len;
    e->hash = tg_cache_hash(key, key_len); /* what the filler would set: one mistake fewer */
    e->charge = malloc_usable_size(e);
    atomic_init(&e->refs, 1);
    return e;
}

void tg_cache_entry_ref(struct tg_cache_entry *e)
{
    /* Relaxed is enough: whoever passes a reference on already holds one. */
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
}

void tg_cache_entry_unref(struct tg_cache_entry *e)
{
    unsigned old = atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel);

    TG_BUG_ON(old == 0);
    if (old == 1)
        free(e);
}

/* -- the hash table and LRU of a shard (all _locked: the caller holds shard->lock) ----------- */

static bool tg__key_is(const struct tg_cache_entry *e, uint64_t hash, const char *key,
                       size_t key_len)
{
    return e->hash == hash && e->key_len == key_len && memcmp(e->key, key, key_len) == 0;
}

/* The link that points at the entry under key (the bucket head or a predecessor's hnext),
 * pointing at NULL when there is none: unlinking then needs no second walk. */
static struct tg_cache_entry **tg__find_locked(struct tg__shard *sh, uint64_t hash, const char *key,
                                               size_t key_len)
{
    struct tg_cache_entry **pp = &sh->buckets[hash & sh->mask];

    while (*pp != NULL && !tg__key_is(*pp, hash, key, key_len))
        pp = &(*pp)->hnext;
    return pp;
}

static void tg__lru_unlink_locked(struct tg__shard *sh, struct tg_cache_entry *e)
{
    if (e->lru_prev != NULL)
        e->lru_prev->lru_next = e->lru_next;
    else
        sh->lru_head = e->lru_next;
    if (e->lru_next != NULL)
        e->lru_next->lru_prev = e->lru_prev;
    else
        sh->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void tg__lru_push_locked(struct tg__shard *sh, struct tg_cache_entry *e)
{
    e->lru_prev = NULL;
    e->lru_next = sh->lru_head;
    if (sh->lru_head != NULL)
        sh->lru_head->lru_prev = e;
    else
        sh->lru_tail = e;
    sh->lru_head = e;
}

/* Doubles the bucket array once the shard holds more entries than buckets, up to the bound. A
 * failed allocation keeps the old table: growth only shortens chains. */
static void tg__maybe_grow_locked(struct tg__shard *sh)
{
    size_t n = sh->mask + 1, nn = n * 2;
    struct tg_cache_entry **nb;

    if (sh->count <= n || nn > TG__BUCKETS_MAX)
        return;
    nb = calloc(nn, sizeof(*nb));
    if (nb == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        struct tg_cache_entry *e = sh->buckets[i], *next;

        for (; e != NULL; e = next) {
            next = e->hnext;
            e->hnext = nb[e->hash & (nn - 1)];
            nb[e->hash & (nn - 1)] = e;
        }
    }
    free(sh->buckets);
    sh->buckets = nb;
    sh->mask = nn - 1;
}

/* Takes the entry that *pp points at out of the shard and the counts; the store's reference
 * now belongs to the caller, who drops it after unlocking. */
static struct tg_cache_entry *tg__unlink_locked(struct tg_cache_store *s, struct tg__shard *sh,
                                                struct tg_cache_entry **pp)
{
    struct tg_cache_entry *e = *pp;

    *pp = e->hnext;
    e->hnext = NULL;
    tg__lru_unlink_locked(sh, e);
    e->linked = false;
    sh->count--;
    atomic_fetch_sub_explicit(&s->bytes, e->charge, memory_order_relaxed);
    atomic_fetch_sub_explicit(&s->entries, 1, memory_order_relaxed);
    return e;
}

static void tg__link_locked(struct tg_cache_store *s, struct tg__shard *sh,
                            struct tg_cache_entry **pp, struct tg_cache_entry *e)
{
    e->hnext = *pp;
    *pp = e;
    tg__lru_push_locked(sh, e);
    e->linked = true;
    sh->count++;
    atomic_fetch_add_explicit(&s->bytes, e->charge, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->entries, 1, memory_order_relaxed);
}

static bool tg__over(const struct tg_cache_store *s)
{
    return atomic_load_explicit(&s->bytes, memory_order_relaxed) >
           atomic_load_explicit(&s->max_bytes, memory_order_relaxed);
}

/* Evicts the shard's least recently used entry other than keep (the entry being inserted,
 * which would be absurd to evict for its own room). Returns it, unlinked, or NULL when the
 * shard has nothing else. */
static struct tg_cache_entry *tg__evict_tail_locked(struct tg_cache_store *s, struct tg__shard *sh,
                                                    const struct tg_cache_entry *keep)
{
    struct tg_cache_entry *victim = sh->lru_tail;

    if (victim != NULL && victim == keep)
        victim = victim->lru_prev; /* the next one up, NULL when keep is alone */
    if (victim == NULL)
        return NULL;
    atomic_fetch_add_explicit(&s->evictions, 1, memory_order_relaxed);
    return tg__unlink_locked(s, sh,
                             tg__find_locked(sh, victim->hash, victim->key, victim->key_len));
}

/* Drops the store's references on a list chained by hnext (entries already unlinked). */
static void tg__drop_list(struct tg_cache_entry *list)
{
    while (list != NULL) {
        struct tg_cache_entry *next = list->hnext;

        list->hnext = NULL;
        tg_cache_entry_unref(list);
        list = next;
    }
}

/* -- eviction -------------------------------------------------------------------------------- */

/* Evicts the least recently used entries of the whole store until the bytes fit: each round
 * looks at every shard's least recently used entry (one lock at a time) and evicts the oldest
 * of them, so that the order is the store's, not a shard's. It stops when the bytes fit or
 * nothing but keep (the entry being inserted) is left. */
static void tg__evict_oldest(struct tg_cache_store *s, const struct tg_cache_entry *keep)
{
    while (tg__over(s)) {
        struct tg__shard *oldest = NULL;
        struct tg_cache_entry *victim;
        uint64_t stamp = UINT64_MAX;

        for (size_t i = 0; i < TG_CACHE_SHARDS; i++) {
            struct tg__shard *sh = &s->shards[i];
            const struct tg_cache_entry *tail;

            pthread_mutex_lock(&sh->lock);
            tail = sh->lru_tail == keep && keep != NULL ? keep->lru_prev : sh->lru_tail;
            if (tail != NULL && tail->used < stamp) {
                stamp = tail->used;
                oldest = sh;
            }
            pthread_mutex_unlock(&sh->lock);
        }
        if (oldest == NULL)
            return;
        pthread_mutex_lock(&oldest->lock);
        victim = tg__evict_tail_locked(s, oldest, keep); /* its tail now: as old, or younger */
        pthread_mutex_unlock(&oldest->lock);
        if (victim != NULL)
            tg_cache_entry_unref(victim);
    }
}

/* -- the store ------------------------------------------------------------------------------- */

struct tg_cache_store *tg_cache_store_new(uint64_t max_bytes, uint64_t max_object)
{
    struct tg_cache_store *s = tg_calloc_aligned(64, sizeof(*s));

    for (size_t i = 0; i < TG_CACHE_SHARDS; i++) {
        struct tg__shard *sh = &s->shards[i];

        pthread_mutex_init(&sh->lock, NULL);
        sh->buckets = tg_calloc(TG__BUCKETS_MIN, sizeof(*sh->buckets));
        sh->mask = TG__BUCKETS_MIN - 1;
    }
    atomic_init(&s->max_bytes, max_bytes);
    atomic_init(&s->max_object, max_object);
    return s;
}

/* No other thread may use the store any more; readers may still hold entries, which their
 * last unref frees. */
void tg_cache_store_free(struct tg_cache_store *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < TG_CACHE_SHARDS; i++) {
        struct tg__shard *sh = &s->shards[i];

        while (sh->lru_head != NULL) {
            struct tg_cache_entry *e = sh->lru_head;

            tg_cache_entry_unref(
                tg__unlink_locked(s, sh, tg__find_locked(sh, e->hash, e->key, e->key_len)));
        }
        for (size_t b = 0; b < TG__FILL_BUCKETS; b++) {
            while (sh->fills[b] != NULL) {
                struct tg__fill *f = sh->fills[b];

                sh->fills[b] = f->next;
                free(f);
            }
        }
        free(sh->buckets);
        pthread_mutex_destroy(&sh->lock);
    }
    free(s);
}

uint64_t tg_cache_store_max_object(const struct tg_cache_store *s)
{
    return atomic_load_explicit(&s->max_object, memory_order_relaxed);
}

void tg_cache_stats(const struct tg_cache_store *s, struct tg_cache_stats *out)
{
    out->bytes = atomic_load_explicit(&s->bytes, memory_order_relaxed);
    out->entries = atomic_load_explicit(&s->entries, memory_order_relaxed);
    out->evictions = atomic_load_explicit(&s->evictions, memory_order_relaxed);
}

struct tg_cache_entry *tg_cache_lookup(struct tg_cache_store *s, uint64_t hash, const char *key,
                                       size_t key_len)
{
    struct tg__shard *sh = tg__shard_of(s, hash);
    struct tg_cache_entry *e;

    pthread_mutex_lock(&sh->lock);
    e = *tg__find_locked(sh, hash, key, key_len);
    if (e != NULL) {
        e->used = atomic_fetch_add_explicit(&s->clock, 1, memory_order_relaxed);
        if (sh->lru_head != e) {
            tg__lru_unlink_locked(sh, e);
            tg__lru_push_locked(sh, e);
        }
        /* Safe under the lock: the store's own reference keeps e alive until we return. */
        tg_cache_entry_ref(e);
    }
    pthread_mutex_unlock(&sh->lock);
    return e;
}

/*
 * max_object bounds the response body, the size an operator reasons about and the one a filler
 * can check while it buffers (tg_cache_store_max_object); max_bytes bounds memory, so it is
 * compared with the charge.
 */
static bool tg__fits(const struct tg_cache_store *s, const struct tg_cache_entry *e)
{
    return e->body_len <= atomic_load_explicit(&s->max_object, memory_order_relaxed) &&
           e->charge <= atomic_load_explicit(&s->max_bytes, memory_order_relaxed);
}

bool tg_cache_insert(struct tg_cache_store *s, struct tg_cache_entry *e)
{
    struct tg__shard *sh = tg__shard_of(s, e->hash);
    struct tg_cache_entry **pp, *dead = NULL;
    bool more;

    TG_BUG_ON(e->linked);
    if (!tg__fits(s, e)) {
        tg_cache_entry_unref(e);
        return false;
    }
    pthread_mutex_lock(&sh->lock);
    pp = tg__find_locked(sh, e->hash, e->key, e->key_len);
    if (*pp != NULL)
        dead = tg__unlink_locked(s, sh, pp); /* replaced: not an eviction */
    e->used = atomic_fetch_add_explicit(&s->clock, 1, memory_order_relaxed);
    tg__link_locked(s, sh, &sh->buckets[e->hash & sh->mask], e);
    tg__maybe_grow_locked(sh);
    /* Over the bytes: the store's least recently used entries make room. A reference keeps e,
     * the entry spared, from being freed and its address reused meanwhile. */
    more = tg__over(s);
    if (more)
        tg_cache_entry_ref(e);
    pthread_mutex_unlock(&sh->lock);
    tg__drop_list(dead);
    if (more) {
        tg__evict_oldest(s, e);
        tg_cache_entry_unref(e);
    }
    return true;
}

bool tg_cache_remove(struct tg_cache_store *s, uint64_t hash, const char *key, size_t key_len)
{
    struct tg__shard *sh = tg__shard_of(s, hash);
    struct tg_cache_entry **pp, *e = NULL;

    pthread_mutex_lock(&sh->lock);
    pp = tg__find_locked(sh, hash, key, key_len);
    if (*pp != NULL)
        e = tg__unlink_locked(s, sh, pp);
    pthread_mutex_unlock(&sh->lock);
    if (e != NULL)
        tg_cache_entry_unref(e);
    return e != NULL;
}

typedef bool (*tg__entry_pred_cb)(const struct tg_cache_entry *e, void *arg);

/* Unlinks every entry of one shard that pred selects, walking the buckets (the chain links are
 * what unlinking needs), and drops them once the lock is released. The lock is held for the
 * whole shard: purges are rare administrative acts, and one shard is 1/16th of the cache. */
static size_t tg__purge_shard(struct tg_cache_store *s, struct tg__shard *sh,
                              tg__entry_pred_cb pred, void *arg)
{
    struct tg_cache_entry *dead = NULL, *e;
    size_t n = 0;

    pthread_mutex_lock(&sh->lock);
    for (size_t b = 0; b <= sh->mask; b++) {
        struct tg_cache_entry **pp = &sh->buckets[b];

        while (*pp != NULL) {
            if (!pred(*pp, arg)) {
                pp = &(*pp)->hnext;
                continue;
            }
            e = tg__unlink_locked(s, sh, pp); /* *pp is now the next in the chain */
            e->hnext = dead;
            dead = e;
            n++;
        }
    }
    pthread_mutex_unlock(&sh->lock);
    tg__drop_list(dead);
    return n;
}

struct tg__key_match {
    bool (*match)(const char *key, size_t len, void *arg);
    void *arg;
};

static bool tg__key_pred(const struct tg_cache_entry *e, void *arg)
{
    const struct tg__key_match *m = arg;

    return m->match(e->key, e->key_len, m->arg);
}

/* match() runs under a shard lock: it must not call back into the store. */
size_t tg_cache_purge(struct tg_cache_store *s,
                      bool (*match)(const char *key, size_t len, void *arg), void *arg)
{
    struct tg__key_match m = {match, arg};
    size_t n = 0;

    for (size_t i = 0; i < TG_CACHE_SHARDS; i++)
        n += tg__purge_shard(s, &s->shards[i], tg__key_pred, &m);
    return n;
}

static bool tg__too_big_pred(const struct tg_cache_entry *e, void *arg)
{
    return e->body_len > *(const uint64_t *)arg;
}

void tg_cache_store_resize(struct tg_cache_store *s, uint64_t max_bytes, uint64_t max_object)
{
    uint64_t old_object =
        atomic_exchange_explicit(&s->max_object, max_object, memory_order_relaxed);

    atomic_store_explicit(&s->max_bytes, max_bytes, memory_order_relaxed);
    /* Entries the new max_object would refuse go too, so the bound means the same thing for
     * what is stored as for what will be. They are not evictions: room was not the reason. */
    if (max_object < old_object) {
        for (size_t i = 0; i < TG_CACHE_SHARDS; i++)
            tg__purge_shard(s, &s->shards[i], tg__too_big_pred, &max_object);
    }
    tg__evict_oldest(s, NULL);
}

/* -- coalescing ------------------------------------------------------------------------------ */

static struct tg__fill **tg__fill_find_locked(struct tg__shard *sh, uint64_t hash, const char *key,
                                              size_t key_len)
{
    /* The low hash bits pick the entry bucket; the fill table takes the next ones up. */
    struct tg__fill **pp = &sh->fills[(hash >> 20) % TG__FILL_BUCKETS];

    while (*pp != NULL && !((*pp)->hash == hash && (*pp)->key_len == key_len &&
                            memcmp((*pp)->key, key, key_len) == 0))
        pp = &(*pp)->next;
    return pp;
}

enum tg_cache_fill_role tg_cache_fill_begin(struct tg_cache_store *s, uint64_t hash,
                                            const char *key, size_t key_len, uint32_t worker)
{
    struct tg__shard *sh = tg__shard_of(s, hash);
    enum tg_cache_fill_role role = TG_FILL_WRITER;
    struct tg__fill **pp, *f;

    TG_BUG_ON(worker >= 64);
    pthread_mutex_lock(&sh->lock);
    pp = tg__fill_find_locked(sh, hash, key, key_len);
    if (*pp != NULL) {
        (*pp)->waiters |= (uint64_t)1 << worker;
        role = TG_FILL_WAIT;
        goto out;
    }
    /* Without memory for a marker the caller still fetches, uncoalesced: a later miss for the
     * key becomes a writer too, and fill_end finds no marker and wakes nobody. */
    f = malloc(sizeof(*f) + key_len);
    if (f == NULL)
        goto out;
    f->next = NULL;
    f->hash = hash;
    f->waiters = 0;
    f->key_len = key_len;
    memcpy(f->key, key, key_len);
    *pp = f;
out:
    pthread_mutex_unlock(&sh->lock);
    return role;
}

uint64_t tg_cache_fill_end(struct tg_cache_store *s, uint64_t hash, const char *key, size_t key_len)
{
    struct tg__shard *sh = tg__shard_of(s, hash);
    struct tg__fill **pp, *f;
    uint64_t mask = 0;

    pthread_mutex_lock(&sh->lock);
    pp = tg__fill_find_locked(sh, hash, key, key_len);
    f = *pp;
    if (f != NULL) {
        *pp = f->next;
        mask = f->waiters;
    }
    pthread_mutex_unlock(&sh->lock);
    free(f);
    return mask;
}
