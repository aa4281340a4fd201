/*
 * Who is calling: the API-key table and the JWT key sets that workers read without locks.
 *
 * The key table maps SHA-256 digests of API keys to consumers. It is built from the inline
 * consumers of the configuration plus the rows of the external store (keys.store), by a
 * background thread (refresh.c) at start, on every keys.refresh and on reload, and published
 * with an atomic exchange; the table it replaces is freed once no worker can be reading it
 * (event/qsbr.h). The request path never touches a database.
 */
#ifndef TG_AUTH_KEYS_H
#define TG_AUTH_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/jwt.h"
#include "config/config.h"

#define TG_NO_PLAN UINT32_MAX

struct tg_consumer {
    const char *name;
    uint32_t name_len;
    uint32_t plan; /* index in the table's cf->plans; TG_NO_PLAN = none */
};

struct tg_keytab;

/* Builds a table from cf's consumers and store rows (rows whose plan cf does not define are
 * left out and counted in *bad). Never fails. */
struct tg_keytab *tg_keytab_build(const struct tg_config *cf, const void *rows, size_t num_rows,
                                  size_t *bad);
void tg_keytab_free(void *kt);
size_t tg_keytab_count(const struct tg_keytab *kt);

/* The consumer of a key digest, or NULL. The table's configuration snapshot is cf_out: plan
 * indexes refer to its plans. */
const struct tg_consumer *tg_keytab_find(const struct tg_keytab *kt, const uint8_t digest[32]);
const struct tg_config *tg_keytab_config(const struct tg_keytab *kt);

/* A consumer's plan index in cf (which may be newer than the table's snapshot during a
 * reload). */
uint32_t tg_consumer_plan(const struct tg_keytab *kt, const struct tg_consumer *c,
                          const struct tg_config *cf);

/* The current table (workers: valid until the end of the loop iteration). */
const struct tg_keytab *tg_keys_current(void);

/* A JWT key set that a background thread refreshes (a file, a JWKS URL, or a fixed secret). */
struct tg_jwt_slot;
const struct tg_jwt_keys *tg_jwt_slot_keys(const struct tg_jwt_slot *s);
const struct tg_jwt_keys *tg_jwt_slot_secret(const struct tg_jwt_slot *s); /* HS256, or NULL */

/*
 * The background refresher (refresh.c). tg_identity_configure() is called with every
 * configuration snapshot that goes live (start and reload): it rebuilds the key table at once
 * from the last store rows, loads the store synchronously the first time (so keys exist when
 * the listeners open), and returns the JWT slot of each route (NULL where a route has no JWT).
 */
void tg_identity_configure(struct tg_config *cf, struct tg_jwt_slot **route_slots);
void tg_identity_stop(void);

/* Figures for the metrics. */
struct tg_identity_stats {
    uint64_t keys_loaded;
    uint64_t store_errors;
    uint64_t jwks_errors;
    const char *store; /* "config", "sqlite" or "postgres" */
};
void tg_identity_stats(struct tg_identity_stats *out);

#endif
