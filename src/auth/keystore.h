/*
 * External API-key stores: a SQLite file or a PostgreSQL table that holds the keys, read whole by
 * tg_keystore_load(). The caller (a background thread) loads the store at start and again every
 * `refresh`, and swaps in the new table only when a load succeeds, so a store that is down keeps
 * the last good keys in force.
 *
 * The table has these columns (others are ignored):
 *
 *   key       TEXT  the key itself, which the loader hashes with SHA-256, or "sha256:" followed
 *                   by the 64 hex digits of that digest (lowercase is the canonical form), so
 *                   the store need not hold usable secrets. A value starting with "sha256:" is
 *                   always read as a digest: a malformed one makes the row invalid. A plain key
 *                   must be non-empty, with no control characters and no leading or trailing
 *                   space or tab (a header value could never carry it).
 *   consumer  TEXT  the consumer's name: 1-64 letters, digits, '-', '_', '.' or '@'.
 *   plan      TEXT  NULL or empty for the consumer's plan from the config, else a plan name
 *                   (same characters and length as a consumer name).
 *
 * There is no revoked flag: deleting a row revokes its key at the next refresh. An invalid row
 * (a NULL, malformed or empty key, consumer or plan) is skipped and counted, never fatal, so one
 * bad row does not lock every consumer out. Rows are returned in the store's order; duplicate
 * keys are returned as they are, for the caller to judge.
 *
 * For example, in PostgreSQL:
 *
 *   CREATE TABLE api_keys (key text PRIMARY KEY, consumer text NOT NULL, plan text);
 *   INSERT INTO api_keys VALUES ('sha256:ba7816bf...', 'acme', 'gold');
 */
#ifndef TG_AUTH_KEYSTORE_H
#define TG_AUTH_KEYSTORE_H

#include <stddef.h>
#include <stdint.h>

enum tg_keystore_kind { TG_KEYSTORE_SQLITE = 1, TG_KEYSTORE_POSTGRES = 2 };

#define TG_KEY_NAME_MAX 64 /* longest consumer or plan name, in bytes */

struct tg_key_row {
    uint8_t digest[32]; /* SHA-256 of the key */
    char consumer[TG_KEY_NAME_MAX + 1];
    char plan[TG_KEY_NAME_MAX + 1]; /* "" = none given */
};

struct tg_keystore_result {
    struct tg_key_row *rows; /* malloc'd; free with tg_keystore_result_free */
    size_t num;
    size_t skipped; /* rows with an invalid key, consumer or plan */
};

/*
 * Reads every row of `table` from the store at `url` into *out. Blocking: call it from a
 * background thread, never from a worker.
 *
 * url is "sqlite:/path/to/file.db" (opened read-only, busy timeout 1 s; a missing file is an
 * error) or "postgres://..." / "postgresql://..." (a libpq connection URI; connect_timeout 3 s
 * unless the URL sets one, statement_timeout 5 s for the session, and the client gives up on a
 * query after 6 s even if the server goes silent). The host name lookup is bounded by the
 * resolver's own timeouts, not by connect_timeout.
 *
 * table is a plain SQL identifier, optionally qualified: letters, digits and '_', not starting
 * with a digit, at most 63 bytes, as `name` or `schema.name`. It is quoted in the query, so in
 * PostgreSQL it is case-sensitive ("Keys" is not keys).
 *
 * At most max_rows rows are read, invalid ones included; a table with more is an error, so
 * memory stays bounded whatever the store holds.
 *
 * Returns 0 with *out filled (the caller frees it with tg_keystore_result_free), or -1 with a
 * one-line reason in err (*out is then empty and needs no freeing). Thread-safe; any number of
 * loads may run at once.
 */
int tg_keystore_load(const char *url, const char *table, size_t max_rows,
                     struct tg_keystore_result *out, char *err, size_t errlen);

/* Frees the rows of r and empties it; r may already be empty. */
void tg_keystore_result_free(struct tg_keystore_result *r);

/* Which kind of store url names: TG_KEYSTORE_SQLITE for "sqlite:PATH" with a non-empty PATH,
 * TG_KEYSTORE_POSTGRES for "postgres://" or "postgresql://", 0 for anything else. Checks only
 * the scheme, for config validation; it does not touch the store. */
int tg_keystore_kind(const char *url);

/* Parses the len bytes at s, "sha256:" followed by exactly 64 hex digits (either case), into
 * out. Returns 0, or -1 when s is malformed (out is then unspecified). */
int tg_key_parse_digest(const char *s, size_t len, uint8_t out[32]);

#endif
