/*
 * External key stores (src/auth/keystore.c): the SHA-256 helpers, the URL kinds, loading a real
 * SQLite file made by the test (valid, plain, digest and invalid rows; missing files and tables;
 * bad table names; the row limit; a locked database), and the bounds on waiting for a PostgreSQL
 * server that accepts connections but never answers, played by sockets of the test itself.
 *
 * The PostgreSQL loader is checked against a real server when the environment says where one is
 * (tests/integration/test_tglib_stores.py starts it and runs this program):
 *   TG_TEST_PG_URL       a database holding the table api_keys and the view slow_keys that
 *                        test_tglib_stores.py creates (see pg_table_rows below);
 *   TG_TEST_PG_DOWN_URL  a server that is stopped, killed or frozen: the load must fail fast.
 */
#include "auth/keystore.h"
#include "core/sha256.h"

#include <arpa/inet.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "unit.h"

#define ABC_HEX "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

static char tmpdir[64];

static int digest_of_is(const uint8_t d[32], const char *key)
{
    uint8_t want[32];
    char hex[65];

    tg_sha256(key, strlen(key), want);
    unit_hex32(want, hex);
    return unit_digest_is(d, hex);
}

/* ---- SHA-256 ------------------------------------------------------------------------------ */

TEST(test_digest_vectors)
{
    uint8_t d[32];

    tg_sha256("abc", 3, d);
    ASSERT(unit_digest_is(d, ABC_HEX));
    tg_sha256("", 0, d);
    ASSERT(unit_digest_is(d, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    tg_sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, d);
    ASSERT(unit_digest_is(d, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
    tg_sha256("abc", 3, d); /* the reused context starts over */
    ASSERT(unit_digest_is(d, ABC_HEX));
}

struct digest_thread {
    pthread_t t;
    int ok;
};

static void *digest_thread_main(void *arg)
{
    struct digest_thread *dt = arg;
    uint8_t d[32];

    dt->ok = 1;
    for (int i = 0; i < 2000; i++) {
        tg_sha256("abc", 3, d);
        if (!unit_digest_is(d, ABC_HEX)) {
            dt->ok = 0;
            break;
        }
    }
    return NULL;
}

/* Each thread has its own context (freed when the thread exits, which LeakSanitizer checks). */
TEST(test_digest_threads)
{
    struct digest_thread th[4];

    for (int i = 0; i < 4; i++)
        ASSERT_EQ(0, pthread_create(&th[i].t, NULL, digest_thread_main, &th[i]));
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i].t, NULL);
        ASSERT(th[i].ok);
    }
}

/* Written by the timing loops so the compiler cannot drop the digests they measure. */
volatile uint8_t digest_sink;

TEST(test_digest_speed)
{
    const char key[] = "tg_live_0123456789abcdef01234567"; /* 32 bytes, a typical API key */
    enum { N = 200000 };
    uint8_t d[32];
    unsigned int n;
    double t0, per_reused, per_oneshot;

    t0 = unit_now_s();
    for (int i = 0; i < N; i++) {
        tg_sha256(key, 32, d);
        digest_sink ^= d[i & 31];
    }
    per_reused = (unit_now_s() - t0) * 1e6 / N;
    /* For comparison: the one-shot call that looks the algorithm up and allocates every time. */
    t0 = unit_now_s();
    for (int i = 0; i < N; i++) {
        EVP_Digest(key, 32, d, &n, EVP_sha256(), NULL);
        digest_sink ^= d[i & 31];
    }
    per_oneshot = (unit_now_s() - t0) * 1e6 / N;
    printf("tg_key_digest: %.3f us per 32-byte key (EVP_Digest one-shot: %.3f us)\n", per_reused,
           per_oneshot);
    ASSERT(per_reused < 20.0); /* loose: only catches something badly wrong, even under ASan */
}

TEST(test_parse_digest)
{
    uint8_t d[32];
    char upper[80];

    ASSERT_EQ(0, tg_key_parse_digest("sha256:" ABC_HEX, 71, d));
    ASSERT(unit_digest_is(d, ABC_HEX));
    snprintf(upper, sizeof(upper), "sha256:%s", ABC_HEX);
    for (char *p = upper + 7; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p -= 32;
    ASSERT_EQ(0, tg_key_parse_digest(upper, strlen(upper), d));
    ASSERT(unit_digest_is(d, ABC_HEX));

    ASSERT_EQ(-1, tg_key_parse_digest("sha256:", 7, d));
    ASSERT_EQ(-1, tg_key_parse_digest("sha256:" ABC_HEX, 70, d));     /* 63 digits */
    ASSERT_EQ(-1, tg_key_parse_digest("sha256:" ABC_HEX "0", 72, d)); /* 65 digits */
    ASSERT_EQ(-1, tg_key_parse_digest("SHA256:" ABC_HEX, 71, d));     /* prefix case */
    ASSERT_EQ(-1, tg_key_parse_digest("sha512:" ABC_HEX, 71, d));     /* other hash */
    ASSERT_EQ(-1, tg_key_parse_digest("sha256:" ABC_HEX, 71 - 7, d)); /* cut short */
    ASSERT_EQ(
        -1, tg_key_parse_digest(
                "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015az", 71, d));
    ASSERT_EQ(
        -1, tg_key_parse_digest(
                "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a ", 71, d));
    ASSERT_EQ(
        -1, tg_key_parse_digest(
                "sha256: a7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", 71, d));
}

TEST(test_kind)
{
    ASSERT_EQ(TG_KEYSTORE_SQLITE, tg_keystore_kind("sqlite:/var/lib/keys.db"));
    ASSERT_EQ(TG_KEYSTORE_SQLITE, tg_keystore_kind("sqlite:keys.db"));
    ASSERT_EQ(0, tg_keystore_kind("sqlite:"));
    ASSERT_EQ(TG_KEYSTORE_POSTGRES, tg_keystore_kind("postgres://u@db/keys"));
    ASSERT_EQ(TG_KEYSTORE_POSTGRES, tg_keystore_kind("postgresql://u@db:5432/keys"));
    ASSERT_EQ(0, tg_keystore_kind("postgres:/x"));
    ASSERT_EQ(0, tg_keystore_kind("mysql://db/keys"));
    ASSERT_EQ(0, tg_keystore_kind("redis://127.0.0.1:6379/0"));
    ASSERT_EQ(0, tg_keystore_kind(""));
}

/* ---- SQLite ------------------------------------------------------------------------------- */

static int db_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    char *msg = NULL;
    int rc;

    rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fprintf(stderr, "sqlite %s: %s\n", path, msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

static void db_path(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", tmpdir, name);
}

static void db_url(char *out, size_t n, const char *name)
{
    snprintf(out, n, "sqlite:%s/%s", tmpdir, name);
}

#define NAME64 "c123456789012345678901234567890123456789012345678901234567890123"

/* Five valid rows, then ten invalid ones. */
static const char keys_sql[] =
    "CREATE TABLE api_keys (key TEXT, consumer TEXT NOT NULL DEFAULT '', plan TEXT);\n"
    "INSERT INTO api_keys VALUES ('plain-key-1', 'acme', 'gold');\n"
    "INSERT INTO api_keys VALUES ('sha256:" ABC_HEX "', 'bob@example.com', NULL);\n"
    "INSERT INTO api_keys VALUES ('SHA256-like but plain', 'carol.c', '');\n"
    "INSERT INTO api_keys VALUES (12345, '" NAME64 "', 'free_tier-2');\n"
    "INSERT INTO api_keys VALUES ('k with inner space', 'd_e-f', NULL);\n"
    "INSERT INTO api_keys VALUES (NULL, 'nokey', NULL);\n"
    "INSERT INTO api_keys VALUES ('', 'emptykey', NULL);\n"
    "INSERT INTO api_keys VALUES ('k1', '', NULL);\n"
    "INSERT INTO api_keys VALUES ('k2', 'bad name', NULL);\n"
    "INSERT INTO api_keys VALUES ('k3', '" NAME64 "4', NULL);\n"
    "INSERT INTO api_keys VALUES ('k4', 'frank', 'bad plan!');\n"
    "INSERT INTO api_keys VALUES ('sha256:abc', 'gina', NULL);\n"
    "INSERT INTO api_keys VALUES (' k5', 'hal', NULL);\n"
    "INSERT INTO api_keys VALUES ('k6' || char(10), 'ivy', NULL);\n"
    "INSERT INTO api_keys VALUES ('k7', 'jo' || char(0) || 'e', NULL);\n";

static int make_keys_db(const char *name)
{
    char path[128];

    db_path(path, sizeof(path), name);
    unlink(path);
    return db_exec(path, keys_sql);
}

static void check_keys_rows(const struct tg_keystore_result *r)
{
    ASSERT_EQ(5, r->num);
    ASSERT_EQ(10, r->skipped);
    if (r->num != 5)
        return;
    ASSERT(digest_of_is(r->rows[0].digest, "plain-key-1"));
    ASSERT_STREQ("acme", r->rows[0].consumer);
    ASSERT_STREQ("gold", r->rows[0].plan);
    ASSERT(unit_digest_is(r->rows[1].digest, ABC_HEX));
    ASSERT_STREQ("bob@example.com", r->rows[1].consumer);
    ASSERT_STREQ("", r->rows[1].plan);
    ASSERT(digest_of_is(r->rows[2].digest, "SHA256-like but plain"));
    ASSERT_STREQ("carol.c", r->rows[2].consumer);
    ASSERT_STREQ("", r->rows[2].plan);
    ASSERT(digest_of_is(r->rows[3].digest, "12345")); /* an INTEGER key reads as its text */
    ASSERT_STREQ(NAME64, r->rows[3].consumer);
    ASSERT_STREQ("free_tier-2", r->rows[3].plan);
    ASSERT(digest_of_is(r->rows[4].digest, "k with inner space"));
    ASSERT_STREQ("d_e-f", r->rows[4].consumer);
}

TEST(test_sqlite_rows)
{
    struct tg_keystore_result r;
    char url[160], err[256] = "";

    ASSERT_EQ(0, make_keys_db("keys.db"));
    db_url(url, sizeof(url), "keys.db");
    ASSERT_EQ(0, tg_keystore_load(url, "api_keys", 100, &r, err, sizeof(err)));
    check_keys_rows(&r);
    tg_keystore_result_free(&r);
    ASSERT(r.rows == NULL && r.num == 0);
    tg_keystore_result_free(&r); /* twice is harmless */

    /* SQLite's schema name works as the qualifier. */
    ASSERT_EQ(0, tg_keystore_load(url, "main.api_keys", 100, &r, err, sizeof(err)));
    check_keys_rows(&r);
    tg_keystore_result_free(&r);
}

TEST(test_sqlite_empty_and_extra_columns)
{
    struct tg_keystore_result r;
    char path[128], url[160], err[256] = "";

    db_path(path, sizeof(path), "extra.db");
    ASSERT_EQ(0, db_exec(path, "CREATE TABLE k (id INTEGER PRIMARY KEY, plan TEXT, consumer TEXT,"
                               " key TEXT, note TEXT);"));
    db_url(url, sizeof(url), "extra.db");
    ASSERT_EQ(0, tg_keystore_load(url, "k", 0, &r, err, sizeof(err)));
    ASSERT_EQ(0, r.num);
    ASSERT_EQ(0, r.skipped);
    tg_keystore_result_free(&r);

    /* Columns are found by name, whatever their order and whatever else the table has. */
    ASSERT_EQ(0, db_exec(path, "INSERT INTO k (plan, consumer, key, note) "
                               "VALUES ('p1', 'c1', 'key-1', 'x');"));
    ASSERT_EQ(0, tg_keystore_load(url, "k", 1, &r, err, sizeof(err)));
    ASSERT_EQ(1, r.num);
    if (r.num == 1) {
        ASSERT(digest_of_is(r.rows[0].digest, "key-1"));
        ASSERT_STREQ("c1", r.rows[0].consumer);
        ASSERT_STREQ("p1", r.rows[0].plan);
    }
    tg_keystore_result_free(&r);
}

TEST(test_sqlite_errors)
{
    struct tg_keystore_result r;
    char path[128], url[160], err[256];

    ASSERT_EQ(0, make_keys_db("errs.db"));
    db_url(url, sizeof(url), "errs.db");

    /* A missing file is an error (read-only open never creates one), and is not created. */
    db_url(url, sizeof(url), "missing.db");
    err[0] = '\0';
    ASSERT_EQ(-1, tg_keystore_load(url, "api_keys", 100, &r, err, sizeof(err)));
    ASSERT(strstr(err, "missing.db") != NULL);
    ASSERT(r.rows == NULL && r.num == 0);
    db_path(path, sizeof(path), "missing.db");
    ASSERT(access(path, F_OK) != 0);

    db_url(url, sizeof(url), "errs.db");
    err[0] = '\0';
    ASSERT_EQ(-1, tg_keystore_load(url, "no_such_table", 100, &r, err, sizeof(err)));
    ASSERT(strstr(err, "no such table") != NULL);

    /* A table without a plan column fails rather than reading "plan" as a string literal. */
    db_path(path, sizeof(path), "errs.db");
    ASSERT_EQ(0, db_exec(path, "CREATE TABLE two (key TEXT, consumer TEXT);"
                               "INSERT INTO two VALUES ('k', 'c');"));
    err[0] = '\0';
    ASSERT_EQ(-1, tg_keystore_load(url, "two", 100, &r, err, sizeof(err)));
    ASSERT(strstr(err, "plan") != NULL);

    /* A file that is not a database. */
    db_path(path, sizeof(path), "junk.db");
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    if (f != NULL) {
        for (int i = 0; i < 64; i++)
            fputs("this is not a database\n", f);
        fclose(f);
    }
    db_url(url, sizeof(url), "junk.db");
    err[0] = '\0';
    ASSERT_EQ(-1, tg_keystore_load(url, "api_keys", 100, &r, err, sizeof(err)));
    ASSERT(err[0] != '\0');

    err[0] = '\0';
    ASSERT_EQ(-1, tg_keystore_load("mysql://db/x", "api_keys", 100, &r, err, sizeof(err)));
    ASSERT(strstr(err, "unsupported") != NULL);
    ASSERT_EQ(-1, tg_keystore_load("sqlite:", "api_keys", 100, &r, err, sizeof(err)));
}

TEST(test_sqlite_table_names)
{
    static const char *const bad[] = {
        "",
        "1keys",
        "api keys",
        "api_keys;",
        "api_keys; DROP TABLE api_keys",
        "a.b.c",
        ".a",
        "a.",
        "x\"y",
        "ключи",
        "api-keys",
        "t234567890123456789012345678901234567890123456789012345678901234", /* 64 bytes */
    };
    struct tg_keystore_result r;
    char url[160], err[256];

    ASSERT_EQ(0, make_keys_db("names.db"));
    db_url(url, sizeof(url), "names.db");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (tg_keystore_load(url, bad[i], 100, &r, err, sizeof(err)) != -1)
            UNIT_FAIL("table name \"%s\" was accepted", bad[i]);
        else if (strstr(err, "invalid table name") == NULL)
            UNIT_FAIL("table name \"%s\": %s", bad[i], err);
    }
    err[0] = '\0';
    ASSERT_EQ(-1, tg_keystore_load(url, "_Api_Keys_2", 100, &r, err, sizeof(err)));
    ASSERT(strstr(err, "no such table") != NULL); /* a valid name, but no such table */
}

TEST(test_sqlite_max_rows)
{
    struct tg_keystore_result r;
    char path[128], url[160], err[256];

    ASSERT_EQ(0, make_keys_db("max.db"));
    db_url(url, sizeof(url), "max.db");
    err[0] = '\0';
    ASSERT_EQ(-1, tg_keystore_load(url, "api_keys", 14, &r, err, sizeof(err)));
    ASSERT(strstr(err, "more than 14 rows") != NULL);
    ASSERT(r.rows == NULL && r.num == 0 && r.skipped == 0);
    ASSERT_EQ(0, tg_keystore_load(url, "api_keys", 15, &r, err, sizeof(err)));
    ASSERT_EQ(5, r.num);
    tg_keystore_result_free(&r);

    /* Enough rows to grow the array several times. */
    db_path(path, sizeof(path), "big.db");
    ASSERT_EQ(0, db_exec(path, "CREATE TABLE k (key TEXT, consumer TEXT, plan TEXT);"
                               "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                               "WHERE i < 10000) INSERT INTO k SELECT 'key-' || i, 'c' || (i % 7),"
                               " NULL FROM n;"));
    db_url(url, sizeof(url), "big.db");
    ASSERT_EQ(0, tg_keystore_load(url, "k", 10000, &r, err, sizeof(err)));
    ASSERT_EQ(10000, r.num);
    if (r.num == 10000) {
        ASSERT(digest_of_is(r.rows[9999].digest, "key-10000"));
        ASSERT_STREQ("c4", r.rows[9999].consumer);
    }
    tg_keystore_result_free(&r);
    ASSERT_EQ(-1, tg_keystore_load(url, "k", 9999, &r, err, sizeof(err)));
}

/* A writer holding an exclusive lock makes the load fail after the 1 s busy timeout. */
TEST(test_sqlite_locked)
{
    struct tg_keystore_result r;
    char path[128], url[160], err[256] = "";
    sqlite3 *w = NULL;
    double t0, took;

    ASSERT_EQ(0, make_keys_db("locked.db"));
    db_path(path, sizeof(path), "locked.db");
    db_url(url, sizeof(url), "locked.db");
    ASSERT_EQ(SQLITE_OK, sqlite3_open_v2(path, &w, SQLITE_OPEN_READWRITE, NULL));
    ASSERT_EQ(SQLITE_OK, sqlite3_exec(w, "BEGIN EXCLUSIVE", NULL, NULL, NULL));
    t0 = unit_now_s();
    ASSERT_EQ(-1, tg_keystore_load(url, "api_keys", 100, &r, err, sizeof(err)));
    took = unit_now_s() - t0;
    ASSERT(strstr(err, "locked") != NULL);
    if (took < 0.8 || took > 3.0)
        UNIT_FAIL("a locked database failed after %.2fs, want about 1s", took);
    sqlite3_exec(w, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(w);
    ASSERT_EQ(0, tg_keystore_load(url, "api_keys", 100, &r, err, sizeof(err)));
    tg_keystore_result_free(&r);
}

/* ---- PostgreSQL that never answers -------------------------------------------------------- */

static int listen_loopback(uint16_t *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* Reads exactly n bytes within timeout_ms; 0 or -1. */
static int read_full(int fd, void *buf, size_t n, int timeout_ms)
{
    size_t got = 0;

    while (got < n) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t k;

        if (poll(&p, 1, timeout_ms) <= 0)
            return -1;
        k = read(fd, (char *)buf + got, n - got);
        if (k <= 0)
            return -1;
        got += (size_t)k;
    }
    return 0;
}

/*
 * Plays a PostgreSQL server that lets the client in (AuthenticationOk, ReadyForQuery) and then
 * never answers its query: only the client's own deadline can end the load. Serves one
 * connection and waits (bounded) for the client to hang up.
 */
static void *silent_pg_main(void *arg)
{
    int lfd = *(int *)arg, fd;
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    uint8_t len[4], buf[1024];
    uint32_t n;
    static const uint8_t hello[] = {'R', 0, 0, 0, 8, 0, 0, 0, 0, 'Z', 0, 0, 0, 5, 'I'};

    if (poll(&p, 1, 10000) <= 0 || (fd = accept(lfd, NULL, NULL)) < 0)
        return NULL;
    if (read_full(fd, len, 4, 5000) == 0) {
        n = (uint32_t)len[0] << 24 | (uint32_t)len[1] << 16 | (uint32_t)len[2] << 8 | len[3];
        if (n >= 8 && n - 4 <= sizeof(buf) && read_full(fd, buf, n - 4, 5000) == 0 &&
            write(fd, hello, sizeof(hello)) == (ssize_t)sizeof(hello)) {
            for (int i = 0; i < 100; i++) { /* 10 s at most */
                struct pollfd q = {.fd = fd, .events = POLLIN};

                if (poll(&q, 1, 100) > 0 && read(fd, buf, sizeof(buf)) <= 0)
                    break; /* the client gave up */
            }
        }
    }
    close(fd);
    return NULL;
}

struct timed_load {
    pthread_t t;
    char url[160];
    int rc;
    double took;
    char err[256];
};

static void *timed_load_main(void *arg)
{
    struct timed_load *tl = arg;
    struct tg_keystore_result r;
    double t0 = unit_now_s();

    tl->rc = tg_keystore_load(tl->url, "api_keys", 100, &r, tl->err, sizeof(tl->err));
    tl->took = unit_now_s() - t0;
    if (tl->rc == 0)
        tg_keystore_result_free(&r);
    return NULL;
}

/*
 * Three stalls, loaded at once so the test takes as long as the slowest: a listener that never
 * accepts (connect_timeout: 3 s by default, 2 s when the URL says so, libpq's minimum) and a
 * server that lets the client in and never answers the query (the client's 6 s deadline).
 */
TEST(test_pg_never_answers)
{
    struct timed_load tl[3];
    uint16_t mute_port = 0, silent_port = 0;
    int mute = listen_loopback(&mute_port), silent = listen_loopback(&silent_port);
    pthread_t srv;

    ASSERT(mute >= 0 && silent >= 0);
    if (mute < 0 || silent < 0)
        return;
    snprintf(tl[0].url, sizeof(tl[0].url),
             "postgresql://u@127.0.0.1:%u/db?sslmode=disable&gssencmode=disable", mute_port);
    snprintf(tl[1].url, sizeof(tl[1].url),
             "postgresql://u@127.0.0.1:%u/db?sslmode=disable&gssencmode=disable&connect_timeout=2",
             mute_port);
    snprintf(tl[2].url, sizeof(tl[2].url),
             "postgres://u@127.0.0.1:%u/db?sslmode=disable&gssencmode=disable", silent_port);
    ASSERT_EQ(0, pthread_create(&srv, NULL, silent_pg_main, &silent));
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(0, pthread_create(&tl[i].t, NULL, timed_load_main, &tl[i]));
    for (int i = 0; i < 3; i++)
        pthread_join(tl[i].t, NULL);
    pthread_join(srv, NULL);
    close(mute);
    close(silent);

    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(-1, tl[i].rc);
        printf("stalled postgres %d: failed after %.2fs: %s\n", i, tl[i].took, tl[i].err);
    }
    if (tl[0].took < 2.5 || tl[0].took > 4.5)
        UNIT_FAIL("default connect_timeout took %.2fs, want about 3s", tl[0].took);
    if (tl[1].took < 1.5 || tl[1].took > 2.7)
        UNIT_FAIL("connect_timeout=2 took %.2fs, want about 2s", tl[1].took);
    if (tl[2].took < 5.5 || tl[2].took > 8.0)
        UNIT_FAIL("silent query took %.2fs, want about 6s", tl[2].took);
    ASSERT(strstr(tl[0].err, "timeout") != NULL);
    ASSERT(strstr(tl[2].err, "no answer") != NULL);
}

/* ---- a real PostgreSQL (when the environment names one) ----------------------------------- */

/*
 * test_tglib_stores.py creates:
 *   api_keys (key, consumer, plan): ('plain-key-1', 'acme', 'gold'),
 *       ('sha256:' || sha256('abc'), 'bob@example.com', NULL), ('', 'bad', NULL),
 *       ('k2', 'bad name', NULL)
 *   slow_keys: a view of api_keys that sleeps 10 s, past statement_timeout.
 */
static void pg_check_rows(const char *url, const char *table)
{
    struct tg_keystore_result r;
    char err[256] = "";

    if (tg_keystore_load(url, table, 100, &r, err, sizeof(err)) != 0) {
        UNIT_FAIL("%s: %s", table, err);
        return;
    }
    ASSERT_EQ(2, r.num);
    ASSERT_EQ(2, r.skipped);
    if (r.num == 2) {
        ASSERT(digest_of_is(r.rows[0].digest, "plain-key-1"));
        ASSERT_STREQ("acme", r.rows[0].consumer);
        ASSERT_STREQ("gold", r.rows[0].plan);
        ASSERT(unit_digest_is(r.rows[1].digest, ABC_HEX));
        ASSERT_STREQ("bob@example.com", r.rows[1].consumer);
        ASSERT_STREQ("", r.rows[1].plan);
    }
    tg_keystore_result_free(&r);
}

TEST(test_pg_table)
{
    const char *url = getenv("TG_TEST_PG_URL");
    struct tg_keystore_result r;
    char err[256];
    double t0, took;

    if (url == NULL || *url == '\0')
        return;
    pg_check_rows(url, "api_keys");
    pg_check_rows(url, "public.api_keys");

    err[0] = '\0';
    ASSERT_EQ(-1, tg_keystore_load(url, "no_such_table", 100, &r, err, sizeof(err)));
    ASSERT(strstr(err, "does not exist") != NULL && strchr(err, '\n') == NULL);
    ASSERT_EQ(-1, tg_keystore_load(url, "API_KEYS", 100, &r, err, sizeof(err))); /* quoted */
    ASSERT_EQ(-1, tg_keystore_load(url, "api_keys", 3, &r, err, sizeof(err)));
    ASSERT(strstr(err, "more than 3 rows") != NULL);

    err[0] = '\0';
    t0 = unit_now_s();
    ASSERT_EQ(-1, tg_keystore_load(url, "slow_keys", 100, &r, err, sizeof(err)));
    took = unit_now_s() - t0;
    printf("postgres slow_keys: failed after %.2fs: %s\n", took, err);
    ASSERT(strstr(err, "statement timeout") != NULL);
    if (took < 4.5 || took > 6.5)
        UNIT_FAIL("statement_timeout fired after %.2fs, want about 5s", took);

    /* The connection of the timed-out load is gone and the server still serves. */
    pg_check_rows(url, "api_keys");
}

TEST(test_pg_down)
{
    const char *url = getenv("TG_TEST_PG_DOWN_URL");
    struct tg_keystore_result r;
    char err[256] = "";
    double t0, took;

    if (url == NULL || *url == '\0')
        return;
    t0 = unit_now_s();
    ASSERT_EQ(-1, tg_keystore_load(url, "api_keys", 100, &r, err, sizeof(err)));
    took = unit_now_s() - t0;
    printf("postgres down: failed after %.2fs: %s\n", took, err);
    ASSERT(err[0] != '\0' && strchr(err, '\n') == NULL);
    if (took > 4.0)
        UNIT_FAIL("a down server took %.2fs to fail, want at most about 3s", took);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

int main(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/tg-keystore-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_digest_vectors);
    RUN(test_digest_threads);
    RUN(test_digest_speed);
    RUN(test_parse_digest);
    RUN(test_kind);
    RUN(test_sqlite_rows);
    RUN(test_sqlite_empty_and_extra_columns);
    RUN(test_sqlite_errors);
    RUN(test_sqlite_table_names);
    RUN(test_sqlite_max_rows);
    RUN(test_sqlite_locked);
    /* A run against a real server (from test_tglib_stores.py) skips the 6 s of stalls, which
     * the plain run covers. */
    if (getenv("TG_TEST_PG_URL") == NULL && getenv("TG_TEST_PG_DOWN_URL") == NULL)
        RUN(test_pg_never_answers);
    RUN(test_pg_table);
    RUN(test_pg_down);
    nftw(tmpdir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    return unit_report();
}
