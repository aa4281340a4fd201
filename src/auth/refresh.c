/*
 * The identity refresher: a background thread that reloads the external key store every
 * keys.refresh and the JWT keys of each source (a PEM or JWKS file, a JWKS URL) every
 * jwt.refresh, and publishes what it built for the workers (see keys.h).
 *
 * It is a thread of its own rather than work on the control thread's loop because the store and
 * JWKS clients block (libpq, SQLite, a JWKS fetch), each wait bounded by a timeout; while one
 * waits, signals, reloads and the admin endpoints must go on. A load that fails keeps the last
 * good table or key set, counts an error for the metrics, and is retried at the next period.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/keys.h"
#include "auth/keystore.h"
#include "core/core.h"
#include "event/qsbr.h"
#include "obs/log.h"

#define TG_JWT_FETCH_TIMEOUT_MS 5000
#define TG_JWT_MAX_FILE         (1 << 20)

struct tg_jwt_slot {
    char *source; /* file or URL; NULL for a secret-only slot */
    char *secret; /* HS256 */
    tg_msec_t refresh;
    _Atomic(struct tg_jwt_keys *) keys;
    struct tg_jwt_keys *secret_keys;
    uint64_t next_at; /* monotonic ms */
    struct tg_jwt_slot *next;
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    bool running, stop, wake;
    _Atomic(struct tg_keytab *) current;
    struct tg_config *cf;           /* the live snapshot (one reference) */
    struct tg_keystore_result rows; /* the last good store rows */
    uint64_t store_next_at;
    struct tg_jwt_slot *slots; /* never freed: bounded by the distinct sources configured */
    atomic_uint_fast64_t keys_loaded, store_errors, jwks_errors;
    const char *store_kind;
} tg__id = {
    .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .store_kind = "config"};

const struct tg_keytab *tg_keys_current(void)
{
    return atomic_load_explicit(&tg__id.current, memory_order_acquire);
}

const struct tg_jwt_keys *tg_jwt_slot_keys(const struct tg_jwt_slot *s)
{
    return atomic_load_explicit(&((struct tg_jwt_slot *)s)->keys, memory_order_acquire);
}

const struct tg_jwt_keys *tg_jwt_slot_secret(const struct tg_jwt_slot *s)
{
    return s->secret_keys;
}

/* Builds and publishes a table from cf and the last rows. Called with the lock held. */
static void tg__publish(void)
{
    size_t bad = 0;
    struct tg_keytab *kt, *old;

    kt = tg_keytab_build(tg__id.cf, tg__id.rows.rows, tg__id.rows.num, &bad);
    if (bad > 0)
        tg_log(TG_LOG_WARN,
               "keys: %zu store rows name a plan the configuration does not define; "
               "they are left out",
               bad);
    atomic_store_explicit(&tg__id.keys_loaded, tg_keytab_count(kt), memory_order_relaxed);
    old = atomic_exchange_explicit(&tg__id.current, kt, memory_order_acq_rel);
    tg_qsbr_retire(old, tg_keytab_free);
}

/* Loads the store; on success replaces the rows and publishes. Called without the lock. */
static void tg__load_store(const char *url, const char *table, size_t max, bool first)
{
    struct tg_keystore_result res = {0};
    char err[256];

    if (tg_keystore_load(url, table, max, &res, err, sizeof(err)) != 0) {
        atomic_fetch_add_explicit(&tg__id.store_errors, 1, memory_order_relaxed);
        tg_log(TG_LOG_WARN, "keys: loading %s failed: %s; %s", table, err,
               first ? "only the keys of the configuration work until it succeeds"
                     : "the last good keys stay in use");
        return;
    }
    if (res.skipped > 0)
        tg_log(TG_LOG_WARN, "keys: %zu rows of %s have an invalid key or consumer; skipped",
               res.skipped, table);
    pthread_mutex_lock(&tg__id.lock);
    tg_keystore_result_free(&tg__id.rows);
    tg__id.rows = res;
    tg__publish();
    pthread_mutex_unlock(&tg__id.lock);
}

/* Reads a JWT key source: a file, or a JWKS document over http(s). */
static struct tg_jwt_keys *tg__jwt_load(const char *source, char *err, size_t errlen)
{
    struct tg_jwt_keys *k;
    size_t len = 0;
    char *data;

    if (strncmp(source, "http://", 7) == 0 || strncmp(source, "https://", 8) == 0) {
        data = tg_jwt_fetch(source, TG_JWT_FETCH_TIMEOUT_MS, &len, err, errlen);
    } else {
        FILE *f = fopen(source, "rb");

        if (f == NULL) {
            snprintf(err, errlen, "%s: %s", source, strerror(errno));
            return NULL;
        }
        data = tg_malloc(TG_JWT_MAX_FILE + 1);
        len = fread(data, 1, TG_JWT_MAX_FILE, f);
        fclose(f);
        data[len] = '\0';
    }
    if (data == NULL)
        return NULL;
    k = tg_jwt_keys_parse(data, len, err, errlen);
    free(data);
    return k;
}

static void tg__jwt_refresh(struct tg_jwt_slot *s, bool first)
{
    char err[256] = "";
    struct tg_jwt_keys *k = tg__jwt_load(s->source, err, sizeof(err));

    if (k == NULL) {
        atomic_fetch_add_explicit(&tg__id.jwks_errors, 1, memory_order_relaxed);
        tg_log(TG_LOG_WARN, "jwt: loading keys from %s failed: %s; %s", s->source, err,
               first ? "tokens are refused until it succeeds" : "the last good keys stay in use");
        return;
    }
    tg_qsbr_retire(atomic_exchange(&s->keys, k), (void (*)(void *))tg_jwt_keys_free);
}

static void *tg__refresh_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "tg-keys");
    pthread_mutex_lock(&tg__id.lock);
    while (!tg__id.stop) {
        uint64_t now = (uint64_t)tg_clock_mono_ms();
        struct timespec until;

        if (tg__id.cf != NULL && tg__id.cf->key_store != NULL && now >= tg__id.store_next_at) {
            char *url = tg_strdup(tg__id.cf->key_store), *table = tg_strdup(tg__id.cf->key_table);
            size_t max = tg__id.cf->key_max;

            tg__id.store_next_at = now + tg__id.cf->key_refresh;
            pthread_mutex_unlock(&tg__id.lock);
            tg__load_store(url, table, max, false);
            free(url);
            free(table);
            pthread_mutex_lock(&tg__id.lock);
        }
        for (struct tg_jwt_slot *s = tg__id.slots; s != NULL; s = s->next) {
            if (s->source == NULL || (uint64_t)tg_clock_mono_ms() < s->next_at)
                continue;
            s->next_at = (uint64_t)tg_clock_mono_ms() + s->refresh;
            pthread_mutex_unlock(&tg__id.lock);
            tg__jwt_refresh(s, false);
            pthread_mutex_lock(&tg__id.lock);
        }
        pthread_mutex_unlock(&tg__id.lock);
        tg_qsbr_poll();
        pthread_mutex_lock(&tg__id.lock);
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 100 * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        if (!tg__id.stop && !tg__id.wake)
            pthread_cond_timedwait(&tg__id.cond, &tg__id.lock, &until);
        tg__id.wake = false;
    }
    pthread_mutex_unlock(&tg__id.lock);
    return NULL;
}

static struct tg_jwt_slot *tg__slot_for(const struct tg_jwt_conf *j, bool *fresh)
{
    struct tg_jwt_slot *s;

    for (s = tg__id.slots; s != NULL; s = s->next) {
        if ((s->source == NULL) == (j->keys == NULL) && (!j->keys || !strcmp(s->source, j->keys)) &&
            (s->secret == NULL) == (j->secret == NULL) &&
            (!j->secret || !strcmp(s->secret, j->secret))) {
            if (j->refresh < s->refresh)
                s->refresh = j->refresh;
            *fresh = false;
            return s;
        }
    }
    s = tg_calloc(1, sizeof(*s));
    s->source = j->keys ? tg_strdup(j->keys) : NULL;
    s->secret = j->secret ? tg_strdup(j->secret) : NULL;
    s->refresh = j->refresh;
    if (s->secret != NULL)
        s->secret_keys = tg_jwt_keys_secret(s->secret, strlen(s->secret));
    s->next = tg__id.slots;
    tg__id.slots = s;
    *fresh = true;
    return s;
}

void tg_identity_configure(struct tg_config *cf, struct tg_jwt_slot **route_slots)
{
    bool first_store;
    struct tg_jwt_slot *load[64];
    size_t num_load = 0;

    pthread_mutex_lock(&tg__id.lock);
    first_store = cf->key_store != NULL && (tg__id.cf == NULL || tg__id.cf->key_store == NULL ||
                                            strcmp(tg__id.cf->key_store, cf->key_store) != 0 ||
                                            strcmp(tg__id.cf->key_table, cf->key_table) != 0);
    if (first_store || cf->key_store == NULL)
        tg_keystore_result_free(&tg__id.rows); /* rows of another store are not ours */
    tg_config_drop(tg__id.cf);
    tg__id.cf = tg_config_take(cf);
    tg__id.store_kind = cf->key_store == NULL                                   ? "config"
                        : tg_keystore_kind(cf->key_store) == TG_KEYSTORE_SQLITE ? "sqlite"
                                                                                : "postgres";
    tg__publish();
    for (size_t i = 0; i < cf->num_routes; i++) {
        const struct tg_auth_conf *a = cf->routes[i].auth;
        bool fresh;

        route_slots[i] = NULL;
        if (a == NULL || a->jwt == NULL)
            continue;
        route_slots[i] = tg__slot_for(a->jwt, &fresh);
        if (fresh && route_slots[i]->source != NULL && num_load < 64)
            load[num_load++] = route_slots[i];
    }
    if (first_store)
        tg__id.store_next_at = (uint64_t)tg_clock_mono_ms() + cf->key_refresh;
    if (!tg__id.running) {
        tg__id.running = true;
        if (pthread_create(&tg__id.thread, NULL, tg__refresh_main, NULL) != 0)
            tg_fatal("cannot start the key refresher thread");
    }
    pthread_mutex_unlock(&tg__id.lock);
    /* the first load is synchronous: keys work as soon as the configuration is live */
    if (first_store)
        tg__load_store(cf->key_store, cf->key_table, cf->key_max, true);
    for (size_t i = 0; i < num_load; i++) {
        tg__jwt_refresh(load[i], true);
        load[i]->next_at = (uint64_t)tg_clock_mono_ms() + load[i]->refresh;
    }
}

void tg_identity_stop(void)
{
    pthread_mutex_lock(&tg__id.lock);
    if (!tg__id.running) {
        pthread_mutex_unlock(&tg__id.lock);
        return;
    }
    tg__id.stop = true;
    pthread_cond_signal(&tg__id.cond);
    pthread_mutex_unlock(&tg__id.lock);
    pthread_join(tg__id.thread, NULL);
    tg__id.running = false;
}

void tg_identity_stats(struct tg_identity_stats *out)
{
    out->keys_loaded = atomic_load_explicit(&tg__id.keys_loaded, memory_order_relaxed);
    out->store_errors = atomic_load_explicit(&tg__id.store_errors, memory_order_relaxed);
    out->jwks_errors = atomic_load_explicit(&tg__id.jwks_errors, memory_order_relaxed);
    out->store = tg__id.store_kind;
}
