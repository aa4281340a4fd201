/*
 * Loading API keys from an external store (keystore.h): one blocking read of a whole table from
 * SQLite or PostgreSQL, validated row by row into digests, and the parsing of "sha256:" digests.
 *
 * Every wait is bounded, because the caller is a refresh thread that must come back to try again
 * rather than hang on a store that is down: SQLite waits at most 1 s for a lock; PostgreSQL gets
 * connect_timeout for the connection and a client-side deadline for the query, on top of the
 * server's statement_timeout, in case the server stops answering altogether.
 */
#include "auth/keystore.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "core/core.h"
#include "core/hex.h"
#include "core/sha256.h"

#define TG__DIGEST_PREFIX     "sha256:"
#define TG__DIGEST_PREFIX_LEN (sizeof(TG__DIGEST_PREFIX) - 1)
#define TG__IDENT_MAX         63 /* PostgreSQL's NAMEDATALEN - 1 */

#define TG__SQLITE_BUSY_MS  1000
#define TG__PG_CONNECT_S    "3"
#define TG__PG_STATEMENT_MS 5000
/* The client's own limit on a query, a little past statement_timeout so that a live server
 * reports its own (clearer) timeout first. */
#define TG__PG_QUERY_MS (TG__PG_STATEMENT_MS + 1000)

int tg_key_parse_digest(const char *s, size_t len, uint8_t out[32])
{
    if (len != TG__DIGEST_PREFIX_LEN + 64 ||
        memcmp(s, TG__DIGEST_PREFIX, TG__DIGEST_PREFIX_LEN) != 0)
        return -1;
    s += TG__DIGEST_PREFIX_LEN;
    for (size_t i = 0; i < 32; i++) {
        int hi = tg_hex_digit((unsigned char)s[2 * i]);
        int lo = tg_hex_digit((unsigned char)s[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

/* ---- rows --------------------------------------------------------------------------------- */

/* A consumer or plan name: 1-64 letters, digits, '-', '_', '.' or '@'. */
static bool tg__key_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > TG_KEY_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == '@'))
            return false;
    }
    return true;
}

/* A plain key must be one a client can send in a header value: not empty, no control bytes
 * (NUL, CR, LF, tab...), and no space at either end, which header parsing strips. */
static bool tg__key_plain_ok(const char *s, size_t len)
{
    if (len == 0 || s[0] == ' ' || s[len - 1] == ' ')
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

/* Validates one row (NULL for a NULL column) and appends it to r, whose rows array has room;
 * an invalid row only counts as skipped. */
static void tg__key_row_add(struct tg_keystore_result *r, const char *key, size_t klen,
                            const char *consumer, size_t clen, const char *plan, size_t plen)
{
    struct tg_key_row *row = &r->rows[r->num];

    if (key == NULL || consumer == NULL || !tg__key_name_ok(consumer, clen))
        goto skip;
    if (plan != NULL && plen != 0 && !tg__key_name_ok(plan, plen))
        goto skip;
    if (klen >= TG__DIGEST_PREFIX_LEN &&
        memcmp(key, TG__DIGEST_PREFIX, TG__DIGEST_PREFIX_LEN) == 0) {
        if (tg_key_parse_digest(key, klen, row->digest) != 0)
            goto skip;
    } else if (tg__key_plain_ok(key, klen)) {
        tg_sha256(key, klen, row->digest);
    } else {
        goto skip;
    }
    memcpy(row->consumer, consumer, clen);
    row->consumer[clen] = '\0';
    if (plan != NULL)
        memcpy(row->plan, plan, plen);
    row->plan[plan != NULL ? plen : 0] = '\0';
    r->num++;
    return;
skip:
    r->skipped++;
}

void tg_keystore_result_free(struct tg_keystore_result *r)
{
    free(r->rows);
    memset(r, 0, sizeof(*r));
}

/* ---- the query ---------------------------------------------------------------------------- */

/* Appends `"part"` to q for one part of a table name; -1 if the part is not a plain
 * identifier. */
static int tg__ident_quote(const char *s, size_t len, char *q, size_t *qlen)
{
    if (len == 0 || len > TG__IDENT_MAX || (s[0] >= '0' && s[0] <= '9'))
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return -1;
    }
    q[(*qlen)++] = '"';
    memcpy(q + *qlen, s, len);
    *qlen += len;
    q[(*qlen)++] = '"';
    return 0;
}

/*
 * Builds the SELECT for table into q (which holds at least 256 bytes). The limit of one row more
 * than max_rows lets an oversized table be told apart without ever holding all of it, which
 * matters for libpq: it buffers a whole result before handing it over.
 *
 * The column names stay unquoted: SQLite reads a double-quoted name that matches no column as a
 * string literal, which would turn a missing `plan` column into the plan "plan" for every row.
 */
static int tg__keystore_query(const char *table, size_t max_rows, char *q, size_t qsize, char *err,
                              size_t errlen)
{
    const char *dot = strchr(table, '.');
    uint64_t limit = max_rows < INT64_MAX ? (uint64_t)max_rows + 1 : INT64_MAX;
    size_t len = (size_t)snprintf(q, qsize, "SELECT key, consumer, plan FROM ");
    int bad = 0;

    if (dot != NULL) {
        bad = tg__ident_quote(table, (size_t)(dot - table), q, &len);
        q[len++] = '.';
        table = dot + 1;
    }
    if (bad || tg__ident_quote(table, strlen(table), q, &len) != 0) {
        snprintf(err, errlen,
                 "invalid table name (want name or schema.name: letters, digits and '_')");
        return -1;
    }
    snprintf(q + len, qsize - len, " LIMIT %" PRIu64, limit);
    return 0;
}

/* ---- SQLite ------------------------------------------------------------------------------- */

/* Makes room for one more row in r, growing rows geometrically up to max_rows. */
static int tg__rows_reserve(struct tg_keystore_result *r, size_t *cap, size_t max_rows)
{
    size_t n;
    struct tg_key_row *rows;

    if (r->num < *cap)
        return 0;
    n = *cap < 64 ? 64 : *cap * 2;
    if (n > max_rows)
        n = max_rows;
    if (n > SIZE_MAX / sizeof(*rows))
        return -1;
    rows = realloc(r->rows, n * sizeof(*rows));
    if (rows == NULL)
        return -1;
    r->rows = rows;
    *cap = n;
    return 0;
}

static int tg__keystore_sqlite(const char *path, const char *query, size_t max_rows,
                               struct tg_keystore_result *out, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    size_t seen = 0, cap = 0;
    int rc = -1, s;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s: %s", path,
                 db != NULL ? sqlite3_errmsg(db) : "out of memory");
        goto out;
    }
    sqlite3_busy_timeout(db, TG__SQLITE_BUSY_MS);
#ifdef SQLITE_DBCONFIG_DQS_DML
    sqlite3_db_config(db, SQLITE_DBCONFIG_DQS_DML, 0, (int *)NULL);
#endif
    if (sqlite3_prepare_v2(db, query, -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(db));
        goto out;
    }
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(st, 0);
        size_t klen = (size_t)sqlite3_column_bytes(st, 0);
        const char *c = (const char *)sqlite3_column_text(st, 1);
        size_t clen = (size_t)sqlite3_column_bytes(st, 1);
        const char *p = (const char *)sqlite3_column_text(st, 2);
        size_t plen = (size_t)sqlite3_column_bytes(st, 2);

        if (++seen > max_rows) {
            snprintf(err, errlen, "%s: the table has more than %zu rows", path, max_rows);
            goto out;
        }
        if (tg__rows_reserve(out, &cap, max_rows) != 0) {
            snprintf(err, errlen, "%s: out of memory for %zu rows", path, seen);
            goto out;
        }
        tg__key_row_add(out, k, klen, c, clen, p, plen);
    }
    if (s != SQLITE_DONE) {
        snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(db));
        goto out;
    }
    rc = 0;
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}

/* ---- PostgreSQL --------------------------------------------------------------------------- */

/* Copies the first line of a libpq message into err, after prefix. */
static void tg__pg_error(char *err, size_t errlen, const char *prefix, const char *msg)
{
    size_t n;

    if (msg == NULL || *msg == '\0')
        msg = "unknown error";
    n = strcspn(msg, "\r\n");
    snprintf(err, errlen, "%s%.*s", prefix, (int)TG_MIN(n, 400), msg);
}

/* Waits until libpq has a whole result to hand over, or deadline_ms passes. */
static int tg__pg_wait(PGconn *conn, int64_t deadline_ms, char *err, size_t errlen)
{
    while (PQisBusy(conn)) {
        int64_t left = deadline_ms - tg_clock_mono_ms();
        struct pollfd p = {.fd = PQsocket(conn), .events = POLLIN};
        int n;

        if (left <= 0) {
            snprintf(err, errlen, "postgres: no answer to the query within %d ms", TG__PG_QUERY_MS);
            return -1;
        }
        n = poll(&p, 1, (int)left);
        if (n < 0 && errno != EINTR) {
            snprintf(err, errlen, "postgres: poll: %s", strerror(errno));
            return -1;
        }
        if (n > 0 && !PQconsumeInput(conn)) {
            tg__pg_error(err, errlen, "postgres: ", PQerrorMessage(conn));
            return -1;
        }
    }
    return 0;
}

/*
 * Runs "SET statement_timeout; SELECT" as one simple query (one round trip) and returns the
 * SELECT's result in *res. The query is sent asynchronously so that the client's deadline holds
 * even when the server is alive at the TCP level but never answers.
 */
static int tg__pg_select(PGconn *conn, const char *select, PGresult **res, char *err, size_t errlen)
{
    char q[512];
    int64_t deadline = tg_clock_mono_ms() + TG__PG_QUERY_MS;
    PGresult *r;
    int rc = 0;

    snprintf(q, sizeof(q), "SET statement_timeout = %d; %s", TG__PG_STATEMENT_MS, select);
    if (!PQsendQuery(conn, q)) {
        tg__pg_error(err, errlen, "postgres: ", PQerrorMessage(conn));
        return -1;
    }
    /* Every result must be read before the connection is idle again; the first error wins. */
    for (;;) {
        if (tg__pg_wait(conn, deadline, err, errlen) != 0)
            return -1; /* PQfinish discards the rest */
        r = PQgetResult(conn);
        if (r == NULL)
            break;
        if (PQresultStatus(r) == PGRES_TUPLES_OK && rc == 0 && *res == NULL) {
            *res = r;
            continue;
        }
        if (PQresultStatus(r) != PGRES_COMMAND_OK && rc == 0) {
            const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);

            tg__pg_error(err, errlen, "postgres: ", m != NULL ? m : PQresultErrorMessage(r));
            rc = -1;
        }
        PQclear(r);
    }
    if (rc == 0 && *res == NULL) {
        snprintf(err, errlen, "postgres: the query returned no rows result");
        rc = -1;
    }
    return rc;
}

static int tg__keystore_pg(const char *url, const char *select, size_t max_rows,
                           struct tg_keystore_result *out, char *err, size_t errlen)
{
    /* Values before dbname are defaults that the URL may override (libpq expands the URI in
     * place of dbname, and the last value of a keyword wins). */
    const char *const keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *const vals[] = {TG__PG_CONNECT_S, "tollgate", url, NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    PGresult *res = NULL;
    size_t n;
    int rc = -1;

    if (conn == NULL) {
        snprintf(err, errlen, "postgres: out of memory");
        goto out;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        tg__pg_error(err, errlen, "postgres: ", PQerrorMessage(conn));
        goto out;
    }
    if (tg__pg_select(conn, select, &res, err, errlen) != 0)
        goto out;
    n = (size_t)PQntuples(res);
    if (n > max_rows) {
        snprintf(err, errlen, "postgres: the table has more than %zu rows", max_rows);
        goto out;
    }
    out->rows = malloc((n ? n : 1) * sizeof(*out->rows));
    if (out->rows == NULL) {
        snprintf(err, errlen, "postgres: out of memory for %zu rows", n);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const char *v[3];
        size_t len[3];

        for (int j = 0; j < 3; j++) {
            v[j] = PQgetisnull(res, (int)i, j) ? NULL : PQgetvalue(res, (int)i, j);
            len[j] = (size_t)PQgetlength(res, (int)i, j);
        }
        tg__key_row_add(out, v[0], len[0], v[1], len[1], v[2], len[2]);
    }
    rc = 0;
out:
    PQclear(res);
    PQfinish(conn);
    return rc;
}

/* ---- entry points ------------------------------------------------------------------------- */

int tg_keystore_kind(const char *url)
{
    if (strncmp(url, "sqlite:", 7) == 0)
        return url[7] != '\0' ? TG_KEYSTORE_SQLITE : 0;
    if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0)
        return TG_KEYSTORE_POSTGRES;
    return 0;
}

int tg_keystore_load(const char *url, const char *table, size_t max_rows,
                     struct tg_keystore_result *out, char *err, size_t errlen)
{
    char query[256];
    int kind = tg_keystore_kind(url), rc;

    memset(out, 0, sizeof(*out));
    if (kind == 0) {
        snprintf(err, errlen, "unsupported key store URL (want sqlite:PATH or postgres://...)");
        return -1;
    }
    if (tg__keystore_query(table, max_rows, query, sizeof(query), err, errlen) != 0)
        return -1;
    if (kind == TG_KEYSTORE_SQLITE)
        rc = tg__keystore_sqlite(url + 7, query, max_rows, out, err, errlen);
    else
        rc = tg__keystore_pg(url, query, max_rows, out, err, errlen);
    if (rc != 0)
        tg_keystore_result_free(out);
    return rc;
}
