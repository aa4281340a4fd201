/*
 * The response cache store (src/cache/store.c): insert, lookup and replacement; LRU eviction
 * within a shard; the byte accounting against max_size and max_object; readers' references
 * outliving eviction; purge; the coalescing markers; resize; several threads at once; and a
 * timing line for lookups and inserts.
 */
#include "cache/cache.h"

#include <pthread.h>
#include <stdlib.h>

#include "unit.h"

#define HEAD "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"

/* The store picks a key's shard from the top byte of its hash; the LRU test needs keys that
 * share one, since eviction starts in the inserting shard. */
static unsigned shard_of(uint64_t hash)
{
    return (unsigned)((hash >> 56) % TG_CACHE_SHARDS);
}

/* A new entry under key whose body is body_len copies of the byte fill. */
static struct tg_cache_entry *make(const char *key, size_t body_len, char fill)
{
    struct tg_cache_entry *e = tg_cache_entry_new(key, strlen(key), HEAD, strlen(HEAD), body_len);

    if (e != NULL)
        memset(e->body, fill, body_len);
    return e;
}

/* What an entry like make(key, body_len, ...) is charged. */
static size_t make_charge(const char *key, size_t body_len)
{
    struct tg_cache_entry *e = make(key, body_len, 0);
    size_t charge = e->charge;

    tg_cache_entry_unref(e);
    return charge;
}

static struct tg_cache_entry *lookup(struct tg_cache_store *s, const char *key)
{
    return tg_cache_lookup(s, tg_cache_hash(key, strlen(key)), key, strlen(key));
}

static bool present(struct tg_cache_store *s, const char *key)
{
    struct tg_cache_entry *e = lookup(s, key);

    if (e != NULL)
        tg_cache_entry_unref(e);
    return e != NULL;
}

static bool body_is(const struct tg_cache_entry *e, char fill)
{
    for (uint64_t i = 0; i < e->body_len; i++)
        if (e->body[i] != fill)
            return false;
    return true;
}

static struct tg_cache_stats stats(const struct tg_cache_store *s)
{
    struct tg_cache_stats st;

    tg_cache_stats(s, &st);
    return st;
}

/* The sum of the charges of the entries under key0..key(n-1) that are in the store, and how
 * many there are: what the store's counters must say once nobody is inserting. */
static uint64_t live_bytes(struct tg_cache_store *s, const char *fmt, int n, uint64_t *count)
{
    uint64_t sum = 0;
    char key[64];

    *count = 0;
    for (int i = 0; i < n; i++) {
        struct tg_cache_entry *e;

        snprintf(key, sizeof(key), fmt, i);
        e = lookup(s, key);
        if (e == NULL)
            continue;
        sum += e->charge;
        (*count)++;
        tg_cache_entry_unref(e);
    }
    return sum;
}

/* ---- entries ------------------------------------------------------------------------------ */

TEST(test_entry_new)
{
    struct tg_cache_entry *e = make("GET example.com/a", 100, 'x');

    ASSERT(e != NULL);
    ASSERT_STR("GET example.com/a", e->key, e->key_len);
    ASSERT_STR(HEAD, e->head, e->head_len);
    ASSERT_EQ(100, e->body_len);
    ASSERT(body_is(e, 'x'));
    ASSERT_EQ(tg_cache_hash(e->key, e->key_len), e->hash);
    ASSERT_EQ(0, e->etag.len);
    ASSERT_EQ(0, e->last_modified.len);
    ASSERT(e->charge >= sizeof(*e) + e->key_len + e->head_len + e->body_len);
    ASSERT_EQ(1, atomic_load(&e->refs));
    tg_cache_entry_ref(e);
    ASSERT_EQ(2, atomic_load(&e->refs));
    tg_cache_entry_unref(e);
    tg_cache_entry_unref(e);
    /* lengths that would wrap the allocation size are refused, not trusted */
    ASSERT(tg_cache_entry_new("k", 1, HEAD, strlen(HEAD), SIZE_MAX - 8) == NULL);
    ASSERT(tg_cache_hash("a", 1) != tg_cache_hash("b", 1));
    ASSERT_EQ(tg_cache_hash("abc", 3), tg_cache_hash("abc", 3));
}

/* ---- the store ---------------------------------------------------------------------------- */

TEST(test_insert_lookup_replace)
{
    struct tg_cache_store *s = tg_cache_store_new(1 << 20, 1 << 16);
    struct tg_cache_entry *a = make("k1", 10, 'a'), *b = make("k1", 20, 'b'), *got;

    ASSERT(lookup(s, "k1") == NULL);
    ASSERT(tg_cache_insert(s, a));
    got = lookup(s, "k1");
    ASSERT(got == a);
    ASSERT_EQ(1, stats(s).entries);
    ASSERT_EQ(a->charge, stats(s).bytes);
    /* the replacement takes the old one's place; a reader of the old one keeps its bytes */
    ASSERT(tg_cache_insert(s, b));
    ASSERT_EQ(1, stats(s).entries);
    ASSERT_EQ(b->charge, stats(s).bytes);
    ASSERT_EQ(0, stats(s).evictions);
    ASSERT(body_is(got, 'a'));
    tg_cache_entry_unref(got);
    got = lookup(s, "k1");
    ASSERT(got == b);
    ASSERT(got != NULL && body_is(got, 'b'));
    tg_cache_entry_unref(got);
    ASSERT(lookup(s, "k2") == NULL);
    ASSERT(lookup(s, "k") == NULL);
    /* remove */
    ASSERT(tg_cache_remove(s, tg_cache_hash("k1", 2), "k1", 2));
    ASSERT(!tg_cache_remove(s, tg_cache_hash("k1", 2), "k1", 2));
    ASSERT(lookup(s, "k1") == NULL);
    ASSERT_EQ(0, stats(s).entries);
    ASSERT_EQ(0, stats(s).bytes);
    ASSERT_EQ(1 << 16, tg_cache_store_max_object(s));
    tg_cache_store_free(s);
}

TEST(test_lru_order)
{
    char keys[6][32];
    struct tg_cache_entry *e[6];
    struct tg_cache_store *s;
    uint64_t room = 0;
    unsigned shard = shard_of(tg_cache_hash("lru-00000", 9));
    int n = 0;

    /* six keys of the same length in one shard, so all entries are charged alike */
    for (int i = 0; n < 6 && i < 100000; i++) {
        snprintf(keys[n], sizeof(keys[n]), "lru-%05d", i);
        if (shard_of(tg_cache_hash(keys[n], 9)) == shard)
            n++;
    }
    ASSERT_EQ(6, n);
    if (n != 6)
        return;
    for (int i = 0; i < 6; i++)
        e[i] = make(keys[i], 100, 'a' + i);
    room = 4 * e[0]->charge; /* four fit */
    s = tg_cache_store_new(room, 1 << 20);
    for (int i = 0; i < 4; i++)
        ASSERT(tg_cache_insert(s, e[i]));
    ASSERT_EQ(room, stats(s).bytes);
    ASSERT(present(s, keys[0])); /* 0 is now the most recently used, 1 the least */
    ASSERT(tg_cache_insert(s, e[4]));
    ASSERT(!present(s, keys[1]));
    /* lookups bump: checking in the order 2 3 0 4 leaves that order, least recent first */
    ASSERT(present(s, keys[2]) && present(s, keys[3]) && present(s, keys[0]));
    ASSERT(present(s, keys[4]));
    ASSERT_EQ(1, stats(s).evictions);
    /* so 2 goes next */
    ASSERT(tg_cache_insert(s, e[5]));
    ASSERT(!present(s, keys[2]));
    ASSERT(present(s, keys[3]) && present(s, keys[0]) && present(s, keys[4]) &&
           present(s, keys[5]));
    ASSERT_EQ(2, stats(s).evictions);
    ASSERT_EQ(4, stats(s).entries);
    ASSERT_EQ(room, stats(s).bytes);
    tg_cache_store_free(s);
}

TEST(test_bytes_bounded)
{
    const uint64_t max = 64 * 1024;
    struct tg_cache_store *s = tg_cache_store_new(max, max);
    uint64_t inserted = 0, sum, count, over = 0;
    char key[64];
    int n = 0;

    /* distinct entries of assorted sizes, ten times what fits */
    while (inserted < 10 * max && n < 100000) {
        struct tg_cache_entry *e;

        snprintf(key, sizeof(key), "bytes-%d", n);
        e = make(key, (size_t)(n * 37 % 3000), 'z');
        inserted += e->charge;
        ASSERT(tg_cache_insert(s, e));
        if (stats(s).bytes > max)
            over++;
        n++;
    }
    ASSERT_EQ(0, over);
    sum = live_bytes(s, "bytes-%d", n, &count);
    ASSERT_EQ(sum, stats(s).bytes);
    ASSERT_EQ(count, stats(s).entries);
    ASSERT_EQ((uint64_t)n - count, stats(s).evictions);
    ASSERT(sum > max / 2); /* eviction made room, it did not empty the cache */
    tg_cache_store_free(s);
}

TEST(test_too_big)
{
    struct tg_cache_store *s = tg_cache_store_new(10000, 1000);
    struct tg_cache_entry *e = make("big", 1001, 'b');

    /* above max_object (the body): refused, the reference dropped (LSan checks) */
    ASSERT(!tg_cache_insert(s, e));
    ASSERT(lookup(s, "big") == NULL);
    ASSERT(tg_cache_insert(s, make("fits", 1000, 'f')));
    ASSERT(present(s, "fits"));
    /* within max_object but larger than the whole cache: refused too */
    tg_cache_store_resize(s, 500, 1000);
    ASSERT(!present(s, "fits"));
    ASSERT(!tg_cache_insert(s, make("small", 600, 's')));
    ASSERT_EQ(0, stats(s).entries);
    ASSERT_EQ(0, stats(s).bytes);
    tg_cache_store_free(s);
}

TEST(test_reader_outlives_eviction)
{
    struct tg_cache_store *s = tg_cache_store_new(8192, 8192);
    struct tg_cache_entry *held;
    char key[32];

    ASSERT(tg_cache_insert(s, make("held", 4000, 'h')));
    held = lookup(s, "held");
    ASSERT(held != NULL);
    if (held == NULL)
        return;
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "push-%d", i);
        ASSERT(tg_cache_insert(s, make(key, 4000, 'p')));
    }
    ASSERT(!present(s, "held"));
    ASSERT(stats(s).bytes <= 8192);
    /* the bytes are still ours: ASan would report a use after free here */
    ASSERT(body_is(held, 'h'));
    memset(held->body, 'w', held->body_len);
    ASSERT(body_is(held, 'w'));
    ASSERT_STR("held", held->key, held->key_len);
    tg_cache_entry_unref(held);
    /* the same through remove and store teardown */
    held = lookup(s, "push-19");
    ASSERT(held != NULL && tg_cache_remove(s, held->hash, "push-19", 7));
    tg_cache_store_free(s);
    if (held != NULL) {
        ASSERT(body_is(held, 'p'));
        tg_cache_entry_unref(held);
    }
}

static bool has_prefix(const char *key, size_t len, void *arg)
{
    const char *p = arg;

    return len >= strlen(p) && memcmp(key, p, strlen(p)) == 0;
}

TEST(test_purge_prefix)
{
    struct tg_cache_store *s = tg_cache_store_new(1 << 24, 1 << 20);
    struct tg_cache_entry *held;
    uint64_t count;
    char key[64];

    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof(key), "GET a.example/%d", i);
        ASSERT(tg_cache_insert(s, make(key, 10, 'a')));
        snprintf(key, sizeof(key), "GET b.example/%d", i);
        ASSERT(tg_cache_insert(s, make(key, 10, 'b')));
    }
    held = lookup(s, "GET a.example/7");
    ASSERT_EQ(300, tg_cache_purge(s, has_prefix, "GET a.example/"));
    ASSERT_EQ(0, tg_cache_purge(s, has_prefix, "GET a.example/"));
    ASSERT(!present(s, "GET a.example/7"));
    ASSERT(present(s, "GET b.example/7"));
    ASSERT_EQ(300, stats(s).entries);
    ASSERT_EQ(live_bytes(s, "GET b.example/%d", 300, &count), stats(s).bytes);
    ASSERT_EQ(300, count);
    ASSERT_EQ(0, stats(s).evictions);
    ASSERT(held != NULL && body_is(held, 'a'));
    if (held != NULL)
        tg_cache_entry_unref(held);
    tg_cache_store_free(s);
}

TEST(test_resize)
{
    struct tg_cache_store *s = tg_cache_store_new(1 << 20, 1 << 16);
    uint64_t before, count;
    char key[64];

    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "rs-%d", i);
        ASSERT(tg_cache_insert(s, make(key, (size_t)(i % 10 == 0 ? 3000 : 1000), 'r')));
    }
    before = stats(s).bytes;
    ASSERT_EQ(200, stats(s).entries);
    /* half the bytes: evicted down at once, counted as evictions */
    tg_cache_store_resize(s, before / 2, 1 << 16);
    ASSERT(stats(s).bytes <= before / 2);
    ASSERT(stats(s).bytes > before / 2 - 4000);
    ASSERT(stats(s).evictions > 0);
    ASSERT_EQ(stats(s).entries + stats(s).evictions, 200);
    ASSERT_EQ(live_bytes(s, "rs-%d", 200, &count), stats(s).bytes);
    /* a smaller max_object drops the entries above it (not evictions) and refuses new ones */
    before = stats(s).evictions;
    tg_cache_store_resize(s, 1 << 20, 2000);
    ASSERT_EQ(2000, tg_cache_store_max_object(s));
    ASSERT_EQ(before, stats(s).evictions);
    for (int i = 0; i < 200; i += 10) {
        snprintf(key, sizeof(key), "rs-%d", i);
        ASSERT(!present(s, key));
    }
    ASSERT(!tg_cache_insert(s, make("rs-big", 2001, 'r')));
    ASSERT(tg_cache_insert(s, make("rs-ok", 2000, 'r')));
    ASSERT(present(s, "rs-ok"));
    ASSERT_EQ(live_bytes(s, "rs-%d", 200, &count), stats(s).bytes - make_charge("rs-ok", 2000));
    tg_cache_store_free(s);
}

/* ---- coalescing --------------------------------------------------------------------------- */

TEST(test_fill_roles)
{
    struct tg_cache_store *s = tg_cache_store_new(1 << 20, 1 << 16);
    uint64_t h = tg_cache_hash("fill", 4), h2 = tg_cache_hash("other", 5);

    ASSERT_EQ(0, tg_cache_fill_end(s, h, "fill", 4)); /* no marker */
    ASSERT_EQ(TG_FILL_WRITER, tg_cache_fill_begin(s, h, "fill", 4, 0));
    ASSERT_EQ(TG_FILL_WAIT, tg_cache_fill_begin(s, h, "fill", 4, 3));
    ASSERT_EQ(TG_FILL_WAIT, tg_cache_fill_begin(s, h, "fill", 4, 63));
    ASSERT_EQ(TG_FILL_WAIT, tg_cache_fill_begin(s, h, "fill", 4, 3)); /* a second waiter */
    /* another key is filled independently */
    ASSERT_EQ(TG_FILL_WRITER, tg_cache_fill_begin(s, h2, "other", 5, 3));
    ASSERT_EQ(TG_FILL_WAIT, tg_cache_fill_begin(s, h2, "other", 5, 1));
    ASSERT_EQ((UINT64_C(1) << 3) | (UINT64_C(1) << 63), tg_cache_fill_end(s, h, "fill", 4));
    ASSERT_EQ(0, tg_cache_fill_end(s, h, "fill", 4));
    /* the next miss writes again; the marker is not an entry */
    ASSERT_EQ(TG_FILL_WRITER, tg_cache_fill_begin(s, h, "fill", 4, 2));
    ASSERT(!present(s, "fill"));
    ASSERT_EQ(0, stats(s).entries);
    ASSERT_EQ(0, tg_cache_fill_end(s, h, "fill", 4));
    ASSERT_EQ(UINT64_C(1) << 1, tg_cache_fill_end(s, h2, "other", 5));
    /* a marker left at teardown is freed with the store (LSan checks) */
    ASSERT_EQ(TG_FILL_WRITER, tg_cache_fill_begin(s, h2, "other", 5, 0));
    tg_cache_store_free(s);
}

/* ---- threads ------------------------------------------------------------------------------ */

#define MT_THREADS 4
#define MT_OPS     40000
#define MT_KEYS    512
#define MT_MAX     (256 * 1024)

struct mt_thread {
    pthread_t t;
    struct tg_cache_store *s;
    unsigned seed;
    int bad; /* bodies that were not what their key says */
};

/* Every entry's body is a byte derived from its key, so a reader can tell a torn or freed one. */
static char mt_fill(int k)
{
    return (char)('A' + k % 26);
}

static void *mt_main(void *arg)
{
    struct mt_thread *mt = arg;
    char key[32];

    for (int i = 0; i < MT_OPS; i++) {
        int k = rand_r(&mt->seed) % MT_KEYS, op = rand_r(&mt->seed) % 10;
        size_t len = (size_t)snprintf(key, sizeof(key), "mt-%d", k);
        uint64_t h = tg_cache_hash(key, len);
        struct tg_cache_entry *e;

        if (op < 3) {
            tg_cache_insert(mt->s, make(key, (size_t)(k * 13 % 2000), mt_fill(k)));
        } else if (op < 8) {
            e = tg_cache_lookup(mt->s, h, key, len);
            if (e != NULL) {
                mt->bad += !body_is(e, mt_fill(k)) || e->key_len != len;
                tg_cache_entry_unref(e);
            }
        } else if (op < 9) {
            tg_cache_remove(mt->s, h, key, len);
        } else if (tg_cache_fill_begin(mt->s, h, key, len, (uint32_t)mt->seed % 64) ==
                   TG_FILL_WRITER) {
            tg_cache_fill_end(mt->s, h, key, len);
        }
    }
    return NULL;
}

TEST(test_threads)
{
    struct tg_cache_store *s = tg_cache_store_new(MT_MAX, MT_MAX);
    struct mt_thread th[MT_THREADS];
    uint64_t sum, count;
    int bad = 0;

    for (int i = 0; i < MT_THREADS; i++) {
        th[i] = (struct mt_thread){.s = s, .seed = 1234u + (unsigned)i};
        ASSERT_EQ(0, pthread_create(&th[i].t, NULL, mt_main, &th[i]));
    }
    for (int i = 0; i < MT_THREADS; i++) {
        pthread_join(th[i].t, NULL);
        bad += th[i].bad;
    }
    ASSERT_EQ(0, bad);
    sum = live_bytes(s, "mt-%d", MT_KEYS, &count);
    ASSERT_EQ(sum, stats(s).bytes);
    ASSERT_EQ(count, stats(s).entries);
    ASSERT(stats(s).bytes <= MT_MAX);
    ASSERT(stats(s).evictions > 0);
    /* markers of writers that ended are gone: every key starts a new fill */
    for (int k = 0; k < MT_KEYS; k++) {
        char key[32];
        size_t len = (size_t)snprintf(key, sizeof(key), "mt-%d", k);
        uint64_t h = tg_cache_hash(key, len);

        if (tg_cache_fill_begin(s, h, key, len, 0) == TG_FILL_WRITER)
            tg_cache_fill_end(s, h, key, len);
        else
            UNIT_FAIL("a fill marker outlived its writer: %s", key);
    }
    printf("threads: %d x %d ops, %" PRIu64 " entries, %" PRIu64 " bytes, %" PRIu64 " evictions\n",
           MT_THREADS, MT_OPS, stats(s).entries, stats(s).bytes, stats(s).evictions);
    tg_cache_store_free(s);
}

/* ---- timing ------------------------------------------------------------------------------- */

#define PERF_KEYS    20000
#define PERF_LOOKUPS 2000000

TEST(test_perf)
{
    struct tg_cache_store *s = tg_cache_store_new(UINT64_C(1) << 32, 1 << 20);
    static char keys[PERF_KEYS][48];
    static uint64_t hashes[PERF_KEYS];
    double t0, t1, t2;
    uint64_t found = 0;

    for (int i = 0; i < PERF_KEYS; i++)
        snprintf(keys[i], sizeof(keys[i]), "GET api.example.com/v1/items/%d", i);
    for (int i = 0; i < PERF_KEYS; i++)
        hashes[i] = tg_cache_hash(keys[i], strlen(keys[i]));
    t0 = unit_now_s();
    /* enough entries that every shard's table grows past its first size */
    for (int i = 0; i < PERF_KEYS; i++)
        tg_cache_insert(s, make(keys[i], 64, 'p'));
    t1 = unit_now_s();
    for (int i = 0; i < PERF_LOOKUPS; i++) {
        int k = (int)((unsigned)i * 7919u % PERF_KEYS);
        struct tg_cache_entry *e = tg_cache_lookup(s, hashes[k], keys[k], strlen(keys[k]));

        if (e != NULL) {
            found++;
            tg_cache_entry_unref(e);
        }
    }
    t2 = unit_now_s();
    ASSERT_EQ(PERF_LOOKUPS, found);
    ASSERT_EQ(PERF_KEYS, stats(s).entries);
    printf("perf: %.0f ns per insert (alloc + hash + link), %.0f ns per lookup + unref "
           "(%d entries, one thread)\n",
           (t1 - t0) * 1e9 / PERF_KEYS, (t2 - t1) * 1e9 / PERF_LOOKUPS, PERF_KEYS);
    tg_cache_store_free(s);
}

int main(void)
{
    RUN(test_entry_new);
    RUN(test_insert_lookup_replace);
    RUN(test_lru_order);
    RUN(test_bytes_bounded);
    RUN(test_too_big);
    RUN(test_reader_outlives_eviction);
    RUN(test_purge_prefix);
    RUN(test_resize);
    RUN(test_fill_roles);
    RUN(test_threads);
    RUN(test_perf);
    return unit_report();
}
