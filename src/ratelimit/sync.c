/*
 * Cluster-wide limits through Redis, off the request path (see ratelimit.h).
 *
 * Every `sync` a thread of its own drains the table's dirty lists (counters touched since the
 * last round) and sends one pipelined batch: for a rate, INCRBY of the units admitted here onto
 * a cluster counter "tg:rl:ID" (the sum of what every instance admitted, kept while it may still
 * matter); for a quota, INCRBY onto "tg:q:ID:PERIOD". The replies say what the cluster admitted;
 * what the other instances admitted since the last round is charged to the local counter (the
 * GCRA's TAT moves on by those units), and a quota takes the cluster's count. A blocking hiredis
 * connection with timeouts is fine here: no worker ever waits on it.
 *
 * When Redis is unreachable: quota units are kept and pushed once it is back (they must not be
 * lost), rate units are dropped (pushing a backlog later would look like a burst); limits go on
 * locally, or, with on_store_error: deny, every limited request is refused until a round
 * succeeds again. Reconnects back off from 100 ms to 5 s.
 */
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "ratelimit/ratelimit_internal.h"

#define TG_SYNC_MAX_BATCH 65536 /* counters per round; the rest wait for the next one */
#define TG_QUOTA_TTL_S    (40 * 86400)

struct tg_rl_push {
    uint64_t id;
    uint64_t pend, pend_quota;
    uint32_t quota_pid, ttl_ms;
    uint8_t shard;
    bool rate, quota;
};

struct tg_rl_sync {
    struct tg_rl_table *t;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
    char *url; /* guarded by lock, as period and deny */
    tg_msec_t period;
    bool deny;
    bool reconnect; /* the url changed */
    redisContext *rc;
    uint64_t backoff_ms, retry_at_ms;
    struct tg_rl_push *batch;
    size_t cap;
    atomic_uint_fast64_t errors, rounds, sum_us;
    atomic_uint_fast64_t bucket[TG_DUR_BUCKETS + 1];
    atomic_bool up;
};

/* redis://[[user]:password@]host[:port][/db] */
static redisContext *tg__connect(const char *url, char *err, size_t errlen)
{
    char host[256], auth[256] = "", user[128] = "";
    const char *p = url + 8, *at = strchr(p, '@'), *slash;
    int port = 6379, db = 0;
    struct timeval tv = {1, 0};
    redisContext *c;
    redisReply *r;
    size_t n;

    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));

        if (colon != NULL) {
            snprintf(user, sizeof(user), "%.*s", (int)(colon - p), p);
            snprintf(auth, sizeof(auth), "%.*s", (int)(at - colon - 1), colon + 1);
        } else {
            snprintf(auth, sizeof(auth), "%.*s", (int)(at - p), p);
        }
        p = at + 1;
    }
    slash = strchr(p, '/');
    n = slash ? (size_t)(slash - p) : strlen(p);
    snprintf(host, sizeof(host), "%.*s", (int)n, p);
    if (slash != NULL && slash[1] != '\0')
        db = atoi(slash + 1);
    {
        char *colon = strrchr(host, ':');

        if (colon != NULL && strchr(host, ']') < colon) {
            *colon = '\0';
            port = atoi(colon + 1);
        }
        if (host[0] == '[') {
            memmove(host, host + 1, strlen(host));
            host[strcspn(host, "]")] = '\0';
        }
    }
    c = redisConnectWithTimeout(host, port, tv);
    if (c == NULL || c->err) {
        snprintf(err, errlen, "%s", c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    if (auth[0] != '\0') {
        r = user[0] ? redisCommand(c, "AUTH %s %s", user, auth) : redisCommand(c, "AUTH %s", auth);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "AUTH: %s", r ? r->str : c->errstr);
            freeReplyObject(r);
            redisFree(c);
            return NULL;
        }
        freeReplyObject(r);
    }
    if (db != 0) {
        r = redisCommand(c, "SELECT %d", db);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "SELECT %d: %s", db, r ? r->str : c->errstr);
            freeReplyObject(r);
            redisFree(c);
            return NULL;
        }
        freeReplyObject(r);
    }
    return c;
}

/* Takes the dirty counters off the shards (up to the batch size). */
static size_t tg__collect(struct tg_rl_sync *y)
{
    struct tg_rl_table *t = y->t;
    size_t n = 0;

    for (size_t si = 0; si < TG_RL_SHARDS && n < TG_SYNC_MAX_BATCH; si++) {
        struct tg_rl_shard *s = &t->shards[si];

        pthread_mutex_lock(&s->lock);
        while (s->dirty != UINT32_MAX && n < TG_SYNC_MAX_BATCH) {
            uint32_t i = s->dirty;
            struct tg_rl_entry *e = tg_rl_entry(s, i);
            struct tg_rl_push *p;

            s->dirty = e->dirty_next;
            e->dirty = false;
            if (n == y->cap) {
                y->cap = y->cap ? y->cap * 2 : 1024;
                y->batch = tg_realloc(y->batch, y->cap * sizeof(*y->batch));
            }
            p = &y->batch[n++];
            *p = (struct tg_rl_push){.id = e->id,
                                     .pend = e->pend,
                                     .pend_quota = e->pend_quota,
                                     .quota_pid = e->quota_pid,
                                     .ttl_ms = e->ttl_ms,
                                     .shard = (uint8_t)si,
                                     .rate = e->emission != 0,
                                     .quota = e->quota_kind != TG_QUOTA_NONE};
            e->pend = e->pend_quota = 0;
        }
        pthread_mutex_unlock(&s->lock);
    }
    return n;
}

/* A failed round: quota units go back to be pushed later; rate units are dropped. */
static void tg__restore(struct tg_rl_sync *y, size_t from, size_t n)
{
    for (size_t k = from; k < n; k++) {
        const struct tg_rl_push *p = &y->batch[k];
        struct tg_rl_shard *s = &y->t->shards[p->shard];
        uint32_t i;

        if (!p->quota || p->pend_quota == 0)
            continue;
        pthread_mutex_lock(&s->lock);
        i = tg_rl_find(s, p->id);
        if (i != UINT32_MAX) {
            struct tg_rl_entry *e = tg_rl_entry(s, i);

            if (e->quota_pid == p->quota_pid)
                e->pend_quota += p->pend_quota;
            if (!e->dirty) {
                e->dirty = true;
                e->dirty_next = s->dirty;
                s->dirty = i;
            }
        }
        pthread_mutex_unlock(&s->lock);
    }
}

/* Applies the cluster's answers for one counter. */
static void tg__apply(struct tg_rl_sync *y, const struct tg_rl_push *p, long long rate_total,
                      long long quota_total, uint64_t now)
{
    struct tg_rl_shard *s = &y->t->shards[p->shard];
    uint32_t i;

    pthread_mutex_lock(&s->lock);
    i = tg_rl_find(s, p->id);
    if (i != UINT32_MAX) {
        struct tg_rl_entry *e = tg_rl_entry(s, i);

        if (p->rate && rate_total >= 0) {
            uint64_t total = (uint64_t)rate_total;

            /* the others admitted total - seen - ours since the last round (nothing is known on
             * the first round, or when the counter expired and started again) */
            if (e->synced && total >= e->seen + p->pend && e->emission != 0) {
                uint64_t others = total - e->seen - p->pend;

                if (others > 0) {
                    if (others > 1000000000ull) /* bounded: no overflow of the TAT */
                        others = 1000000000ull;
                    e->tat = (e->tat > now ? e->tat : now) + others * e->emission;
                }
            }
            e->seen = total;
            e->synced = true;
        }
        if (p->quota && quota_total >= 0 && e->quota_pid == p->quota_pid)
            e->quota_used = (uint64_t)quota_total + e->pend_quota;
    }
    pthread_mutex_unlock(&s->lock);
}

/* One round: push, read the replies, apply. Returns false when Redis failed. */
static bool tg__round(struct tg_rl_sync *y, char *err, size_t errlen)
{
    size_t n = tg__collect(y), sent = 0;
    uint64_t now;

    if (n == 0) {
        /* nothing to push: a PING keeps the health of the link known */
        redisReply *r = redisCommand(y->rc, "PING");
        bool ok = r != NULL && r->type != REDIS_REPLY_ERROR;

        if (!ok)
            snprintf(err, errlen, "%s", r ? r->str : y->rc->errstr);
        freeReplyObject(r);
        return ok;
    }
    for (size_t k = 0; k < n; k++) {
        const struct tg_rl_push *p = &y->batch[k];

        if (p->rate) {
            redisAppendCommand(y->rc, "INCRBY tg:rl:%016" PRIx64 " %" PRIu64, p->id, p->pend);
            redisAppendCommand(y->rc, "PEXPIRE tg:rl:%016" PRIx64 " %u", p->id, p->ttl_ms);
        }
        if (p->quota) {
            redisAppendCommand(y->rc, "INCRBY tg:q:%016" PRIx64 ":%u %" PRIu64, p->id, p->quota_pid,
                               p->pend_quota);
            redisAppendCommand(y->rc, "EXPIRE tg:q:%016" PRIx64 ":%u %d", p->id, p->quota_pid,
                               TG_QUOTA_TTL_S);
        }
        sent++;
    }
    now = tg_clock_mono_ns();
    for (size_t k = 0; k < sent; k++) {
        const struct tg_rl_push *p = &y->batch[k];
        long long totals[2] = {-1, -1};

        for (int part = 0; part < 2; part++) {
            if (part == 0 ? !p->rate : !p->quota)
                continue;
            for (int c = 0; c < 2; c++) {
                redisReply *r = NULL;

                if (redisGetReply(y->rc, (void **)&r) != REDIS_OK || r == NULL) {
                    snprintf(err, errlen, "%s", y->rc->errstr[0] ? y->rc->errstr : "no reply");
                    tg__restore(y, k, n); /* the counters before k were applied */
                    return false;
                }
                if (c == 0 && r->type == REDIS_REPLY_INTEGER)
                    totals[part] = r->integer;
                freeReplyObject(r);
            }
        }
        tg__apply(y, p, totals[0], totals[1], now);
    }
    return true;
}

static void tg__observe(struct tg_rl_sync *y, uint64_t us)
{
    unsigned b = tg_dur_bucket(us);

    atomic_fetch_add_explicit(&y->bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&y->sum_us, us, memory_order_relaxed);
    atomic_fetch_add_explicit(&y->rounds, 1, memory_order_relaxed);
}

static void tg__failed(struct tg_rl_sync *y, bool deny, const char *what, const char *err)
{
    bool was_up = atomic_exchange(&y->up, false);

    atomic_fetch_add_explicit(&y->errors, 1, memory_order_relaxed);
    atomic_store(&y->t->deny_now, deny);
    if (was_up || y->backoff_ms == 0)
        tg_log(TG_LOG_WARN, "ratelimit: store %s failed: %s; limits %s until it is back", what, err,
               deny ? "refuse every limited request" : "go on locally");
    if (y->rc != NULL) {
        redisFree(y->rc);
        y->rc = NULL;
    }
    y->backoff_ms = y->backoff_ms ? y->backoff_ms * 2 : 100;
    if (y->backoff_ms > 5000)
        y->backoff_ms = 5000;
    y->retry_at_ms = tg_clock_mono_ns() / 1000000 + y->backoff_ms;
}

static void *tg__sync_main(void *arg)
{
    struct tg_rl_sync *y = arg;

    pthread_setname_np(pthread_self(), "tg-rlsync");
    pthread_mutex_lock(&y->lock);
    while (!y->stop) {
        char url[512], err[256] = "";
        tg_msec_t period = y->period;
        bool deny = y->deny, ok;
        uint64_t t0, now_ms;
        struct timespec until;

        snprintf(url, sizeof(url), "%s", y->url ? y->url : "");
        if (y->reconnect && y->rc != NULL) {
            redisFree(y->rc);
            y->rc = NULL;
        }
        y->reconnect = false;
        pthread_mutex_unlock(&y->lock);

        now_ms = tg_clock_mono_ns() / 1000000;
        if (url[0] != '\0' && y->rc == NULL && now_ms < y->retry_at_ms) {
            /* no link: rate units are dropped now (pushed later they would look like a burst
             * to every instance), quota units kept for when it is back */
            tg__restore(y, 0, tg__collect(y));
        } else if (url[0] != '\0') {
            if (y->rc == NULL) {
                y->rc = tg__connect(url, err, sizeof(err));
                if (y->rc == NULL)
                    tg__failed(y, deny, "connection", err);
            }
            if (y->rc != NULL) {
                t0 = tg_clock_mono_ns();
                ok = tg__round(y, err, sizeof(err));
                if (ok) {
                    tg__observe(y, (tg_clock_mono_ns() - t0) / 1000);
                    if (!atomic_exchange(&y->up, true))
                        tg_log(TG_LOG_INFO, "ratelimit: the store is in sync");
                    atomic_store(&y->t->deny_now, false);
                    y->backoff_ms = 0;
                } else {
                    tg__failed(y, deny, "round", err);
                }
            }
        } else if (url[0] == '\0') {
            atomic_store(&y->t->deny_now, false);
        }

        pthread_mutex_lock(&y->lock);
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += (long)(period % 1000) * 1000000;
        until.tv_sec += (time_t)(period / 1000) + until.tv_nsec / 1000000000;
        until.tv_nsec %= 1000000000;
        while (!y->stop && !y->reconnect && pthread_cond_timedwait(&y->cond, &y->lock, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&y->lock);
    if (y->rc != NULL)
        redisFree(y->rc);
    return NULL;
}

int tg_rl_sync_start(struct tg_rl_table *t, const char *url, tg_msec_t sync_ms, bool deny)
{
    struct tg_rl_sync *y = tg_calloc(1, sizeof(*y));
    pthread_condattr_t ca;
    int rc;

    y->t = t;
    y->url = url ? tg_strdup(url) : NULL;
    y->period = sync_ms;
    y->deny = deny;
    pthread_mutex_init(&y->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&y->cond, &ca);
    pthread_condattr_destroy(&ca);
    t->sync = y;
    rc = pthread_create(&y->thread, NULL, tg__sync_main, y);
    if (rc != 0) {
        t->sync = NULL;
        free(y->url);
        free(y);
        return -rc;
    }
    return 0;
}

void tg_rl_sync_configure(struct tg_rl_table *t, const char *url, tg_msec_t sync_ms, bool deny)
{
    struct tg_rl_sync *y = t->sync;

    if (y == NULL) {
        if (url != NULL)
            tg_rl_sync_start(t, url, sync_ms, deny);
        return;
    }
    pthread_mutex_lock(&y->lock);
    if ((url == NULL) != (y->url == NULL) || (url && strcmp(url, y->url) != 0)) {
        free(y->url);
        y->url = url ? tg_strdup(url) : NULL;
        y->reconnect = true;
        y->retry_at_ms = 0;
        y->backoff_ms = 0;
    }
    y->period = sync_ms;
    y->deny = deny;
    pthread_cond_signal(&y->cond);
    pthread_mutex_unlock(&y->lock);
}

void tg_rl_sync_stop(struct tg_rl_table *t)
{
    struct tg_rl_sync *y = t->sync;

    if (y == NULL)
        return;
    pthread_mutex_lock(&y->lock);
    y->stop = true;
    pthread_cond_signal(&y->cond);
    pthread_mutex_unlock(&y->lock);
    pthread_join(y->thread, NULL);
    free(y->url);
    free(y->batch);
    pthread_cond_destroy(&y->cond);
    pthread_mutex_destroy(&y->lock);
    free(y);
    t->sync = NULL;
}

void tg_rl_sync_stats(const struct tg_rl_table *t, struct tg_rl_sync_stats *out)
{
    const struct tg_rl_sync *y = t->sync;

    memset(out, 0, sizeof(*out));
    if (y == NULL)
        return;
    out->errors = atomic_load_explicit(&y->errors, memory_order_relaxed);
    out->rounds = atomic_load_explicit(&y->rounds, memory_order_relaxed);
    out->sum_us = atomic_load_explicit(&y->sum_us, memory_order_relaxed);
    for (size_t i = 0; i <= TG_DUR_BUCKETS; i++)
        out->bucket[i] = atomic_load_explicit(&y->bucket[i], memory_order_relaxed);
    out->up = atomic_load_explicit(&y->up, memory_order_relaxed);
}
