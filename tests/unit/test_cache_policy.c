/*
 * The caching rules (src/cache/policy.c): which requests may be served from the cache, keys and
 * Vary keys, whether and how long a response may be stored (RFC 9111 and RFC 5861, with the RFC
 * examples), Cache-Control parsing, HTTP dates in their three forms, conditional requests and the
 * Age of a stored entry.
 */
#include "cache/policy.h"

#include <stdlib.h>
#include <time.h>

#include "config/config.h"
#include "core/core.h"
#include "unit.h"

#define MAX_HDRS 24
#define NOW_MS   784111777000LL /* Sun, 06 Nov 1994 08:49:37 GMT */

static struct tg_http_header req_hdrs[MAX_HDRS], res_hdrs[MAX_HDRS];

/* Fills hs from NULL-terminated name, value pairs; returns how many. */
static size_t fill(struct tg_http_header *hs, const char *const *kv)
{
    size_t n = 0;

    for (; kv != NULL && kv[0] != NULL && n < MAX_HDRS; kv += 2, n++) {
        memset(&hs[n], 0, sizeof(hs[n]));
        hs[n].name = tg_str_cstr(kv[0]);
        hs[n].value = tg_str_cstr(kv[1]);
    }
    return n;
}

static struct tg_h1_request mkreq(int method, const char *const *kv)
{
    struct tg_h1_request r = {0};

    r.method_id = (uint8_t)method;
    r.headers = req_hdrs;
    r.num_headers = fill(req_hdrs, kv);
    return r;
}

static struct tg_h1_response mkres(int status, const char *const *kv)
{
    struct tg_h1_response r = {0};

    r.status = status;
    r.headers = res_hdrs;
    r.num_headers = fill(res_hdrs, kv);
    return r;
}

#define H(...) ((const char *const[]){__VA_ARGS__, NULL})

static struct tg_cache_route_conf route(void)
{
    struct tg_cache_route_conf rc = {0};

    rc.ttl = 60000;
    rc.stale_while_revalidate = 10000;
    rc.stale_if_error = 300000;
    return rc;
}

/* -- requests -------------------------------------------------------------------------------- */

static enum tg_cache_req req_kind(int method, const char *const *kv,
                                  const struct tg_cache_route_conf *rc, const char **why)
{
    struct tg_h1_request r = mkreq(method, kv);

    return tg_cache_request(&r, rc, why);
}

TEST(test_request_methods)
{
    struct tg_cache_route_conf rc = route();
    struct tg_h1_request up = mkreq(TG_METHOD_GET, NULL);
    const char *why = "x";

    ASSERT_EQ(TG_CACHE_LOOKUP, req_kind(TG_METHOD_GET, NULL, &rc, &why));
    ASSERT(why == NULL);
    ASSERT_EQ(TG_CACHE_LOOKUP, req_kind(TG_METHOD_HEAD, NULL, &rc, NULL));
    ASSERT_EQ(TG_CACHE_BYPASS, req_kind(TG_METHOD_POST, NULL, &rc, &why));
    ASSERT_STREQ("method", why);
    ASSERT_EQ(TG_CACHE_BYPASS, req_kind(TG_METHOD_OTHER, NULL, &rc, NULL));
    up.upgrade = true;
    ASSERT_EQ(TG_CACHE_BYPASS, tg_cache_request(&up, &rc, &why));
    ASSERT_STREQ("upgrade", why);
}

TEST(test_request_directives)
{
    struct tg_cache_route_conf rc = route();
    const char *why;

    ASSERT_EQ(TG_CACHE_BYPASS, req_kind(TG_METHOD_GET, H("Cache-Control", "No-Store"), &rc, &why));
    ASSERT_STREQ("no-store", why);
    ASSERT_EQ(TG_CACHE_REFRESH, req_kind(TG_METHOD_GET, H("cache-control", "no-cache"), &rc, &why));
    ASSERT_STREQ("no-cache", why);
    ASSERT_EQ(TG_CACHE_REFRESH,
              req_kind(TG_METHOD_GET, H("Cache-Control", "max-age=0"), &rc, &why));
    ASSERT_STREQ("max-age=0", why);
    ASSERT_EQ(TG_CACHE_LOOKUP, req_kind(TG_METHOD_GET, H("Cache-Control", "max-age=5"), &rc, NULL));
    /* The lists of several lines form one list. */
    ASSERT_EQ(TG_CACHE_REFRESH,
              req_kind(TG_METHOD_GET,
                       H("Cache-Control", "max-age=5", "Cache-Control", "foo=\"a, b\", no-cache"),
                       &rc, NULL));
    /* Pragma counts only without Cache-Control (RFC 9111 §5.4). */
    ASSERT_EQ(TG_CACHE_REFRESH, req_kind(TG_METHOD_GET, H("Pragma", "no-cache"), &rc, &why));
    ASSERT_STREQ("pragma", why);
    ASSERT_EQ(
        TG_CACHE_LOOKUP,
        req_kind(TG_METHOD_GET, H("Pragma", "no-cache", "Cache-Control", "max-age=5"), &rc, NULL));
    ASSERT_EQ(TG_CACHE_LOOKUP, req_kind(TG_METHOD_GET, H("Pragma", "x=no-cache"), &rc, NULL));
}

TEST(test_request_credentials)
{
    struct tg_cache_route_conf rc = route();
    const char *why;

    ASSERT_EQ(TG_CACHE_BYPASS, req_kind(TG_METHOD_GET, H("Authorization", "Bearer x"), &rc, &why));
    ASSERT_STREQ("authorization", why);
    ASSERT_EQ(TG_CACHE_BYPASS, req_kind(TG_METHOD_GET, H("COOKIE", "a=b"), &rc, &why));
    ASSERT_STREQ("cookie", why);
    rc.with_credentials = true;
    ASSERT_EQ(TG_CACHE_LOOKUP,
              req_kind(TG_METHOD_GET, H("Authorization", "Bearer x", "Cookie", "a=b"), &rc, NULL));
    /* no-store still wins. */
    ASSERT_EQ(
        TG_CACHE_BYPASS,
        req_kind(TG_METHOD_GET, H("Authorization", "x", "Cache-Control", "no-store"), &rc, &why));
    ASSERT_STREQ("no-store", why);
}

/* -- Cache-Control --------------------------------------------------------------------------- */

static struct tg_cache_control cc_of(const char *v)
{
    struct tg_cache_control cc;

    tg_cache_control_init(&cc);
    tg_cache_control_parse(&cc, v, strlen(v));
    return cc;
}

TEST(test_cache_control_parse)
{
    struct tg_cache_control cc;

    cc = cc_of("max-age=60, s-maxage=\"30\", Private=\"Set-Cookie, no-store\", PUBLIC");
    ASSERT_EQ(60, cc.max_age);
    ASSERT_EQ(30, cc.s_maxage);
    ASSERT_EQ(TG_CC_PRIVATE | TG_CC_PUBLIC, cc.flags); /* no-store was inside the quotes */
    ASSERT_EQ(TG_CC_ABSENT, cc.stale_while_revalidate);
    ASSERT_EQ(5, cc_of(" ,, ,MAX-AGE=5,,").max_age);
    ASSERT_EQ(60, cc_of("max-age=60, max-age=60").max_age);
    ASSERT_EQ(TG_CC_INVALID, cc_of("max-age=60, max-age=30").max_age);
    ASSERT_EQ(TG_CC_INVALID, cc_of("max-age=abc").max_age);
    ASSERT_EQ(TG_CC_INVALID, cc_of("max-age").max_age);
    ASSERT_EQ(TG_CC_INVALID, cc_of("max-age=-1").max_age);
    ASSERT_EQ(TG_CC_INVALID, cc_of("max-age=5 junk").max_age);
    ASSERT_EQ(TG_CC_INVALID, cc_of("max-age=\"5").max_age); /* unterminated */
    ASSERT_EQ(TG_CC_DELTA_MAX, cc_of("max-age=99999999999999999999999").max_age);
    ASSERT_EQ(3, cc_of("ext=\"a\\\"b, max-age=1\", max-age = 3").max_age);
    ASSERT_EQ(TG_CC_ABSENT, cc_of("ext=\"unterminated, max-age=5").max_age);
    ASSERT_EQ(TG_CC_NO_STORE, cc_of("no-store junk, =x, @").flags);
    ASSERT_EQ(TG_CC_NO_CACHE, cc_of("no-cache=\"set-cookie\"").flags);
    cc = cc_of("stale-while-revalidate=30;stale-if-error=60");
    ASSERT_EQ(TG_CC_INVALID, cc.stale_while_revalidate);
    ASSERT_EQ(TG_CC_ABSENT, cc.stale_if_error);
}

/* -- keys ------------------------------------------------------------------------------------ */

static char kbuf[512];

/* The key of GET host path under rc, as a NUL-terminated string ("(-1)" when it fails). */
static const char *key_of(int method, const char *host, const char *path,
                          const struct tg_cache_route_conf *rc)
{
    ssize_t n =
        tg_cache_key(kbuf, sizeof(kbuf) - 1, method, tg_str_cstr(host), tg_str_cstr(path), rc);

    if (n < 0)
        return "(-1)";
    kbuf[n] = '\0';
    return kbuf;
}

TEST(test_key_basic)
{
    struct tg_cache_route_conf rc = route();
    char small[16];

    ASSERT_STREQ("GET api.example.com:8080 /a/b?z=1&a=2",
                 key_of(TG_METHOD_GET, "API.Example.COM:8080", "/a/b?z=1&a=2", &rc));
    ASSERT_STREQ("GET api.example.com /a", key_of(TG_METHOD_HEAD, "api.example.com", "/a", &rc));
    ASSERT_STREQ("GET h /a?", key_of(TG_METHOD_GET, "h", "/a?", &rc));
    rc.query = TG_CACHE_QUERY_NONE;
    ASSERT_STREQ("GET h /a", key_of(TG_METHOD_GET, "h", "/a?x=1", &rc));
    /* "GET h /abc" is 10 bytes. */
    ASSERT_EQ(10, tg_cache_key(small, 10, TG_METHOD_GET, TG_STR_LIT("h"), TG_STR_LIT("/abc"), &rc));
    ASSERT_EQ(-1, tg_cache_key(small, 9, TG_METHOD_GET, TG_STR_LIT("h"), TG_STR_LIT("/abc"), &rc));
    ASSERT_EQ(-1, tg_cache_key(small, 16, TG_METHOD_GET, TG_STR_LIT("host.example"),
                               TG_STR_LIT("/"), &rc));
}

TEST(test_key_query_params)
{
    struct tg_cache_route_conf rc = route();
    const char *keep[] = {"a", "b", "v*"}, *drop[] = {"utm_*", "fbclid"};
    char many[1200], *o = many;

    rc.query = TG_CACHE_QUERY_KEEP;
    rc.query_params = (struct tg_str_list){keep, 3};
    ASSERT_STREQ("GET h /p?a=1&b=2&ver=3", key_of(TG_METHOD_GET, "h", "/p?b=2&c=3&ver=3&a=1", &rc));
    ASSERT_STREQ("GET h /p?a=1&b=2", key_of(TG_METHOD_GET, "h", "/p?a=1&b=2", &rc));
    ASSERT_STREQ("GET h /p?a", key_of(TG_METHOD_GET, "h", "/p?ab=1&a", &rc));
    ASSERT_STREQ("GET h /p", key_of(TG_METHOD_GET, "h", "/p?x=1&y", &rc));
    rc.query = TG_CACHE_QUERY_DROP;
    rc.query_params = (struct tg_str_list){drop, 2};
    ASSERT_STREQ("GET h /p?a=2&z=1",
                 key_of(TG_METHOD_GET, "h", "/p?utm_source=x&z=1&&a=2&fbclid=q&utm_medium=y", &rc));
    ASSERT_STREQ("GET h /p", key_of(TG_METHOD_GET, "h", "/p?utm_source=x", &rc));
    /* Repeated names keep their order: the backend may care. */
    ASSERT_STREQ("GET h /p?a=2&a=1&b", key_of(TG_METHOD_GET, "h", "/p?b&a=2&a=1", &rc));
    o += sprintf(o, "/p?");
    for (int i = 0; i <= TG_CACHE_KEY_MAX_PARAMS; i++)
        o += sprintf(o, "k%d&", i);
    ASSERT_STREQ("(-1)", key_of(TG_METHOD_GET, "h", many, &rc));
}

static const char *vary_key_of(const char *vary, const char *const *kv)
{
    struct tg_h1_request r = mkreq(TG_METHOD_GET, kv);
    ssize_t n =
        tg_cache_vary_key(kbuf, sizeof(kbuf) - 1, TG_STR_LIT("GET h /"), tg_str_cstr(vary), &r);

    if (n < 0)
        return "(-1)";
    kbuf[n] = '\0';
    return kbuf;
}

TEST(test_vary_key)
{
    char sorted[256];

    ASSERT_STREQ("GET h /\naccept-encoding:gzip",
                 vary_key_of("Accept-Encoding", H("accept-encoding", "gzip")));
    ASSERT_STREQ("GET h /\naccept-encoding", vary_key_of("accept-encoding", H("X", "y")));
    ASSERT_STREQ("GET h /\naccept-encoding:",
                 vary_key_of("accept-encoding", H("Accept-Encoding", "")));
    ASSERT_STREQ("GET h /", vary_key_of("", NULL));
    ASSERT_STREQ("GET h /", vary_key_of(" , ", NULL));
    /* Sorted, without duplicates, whatever the order and case in Vary. */
    strcpy(sorted, vary_key_of("B, a", H("a", "1", "b", " 2\t")));
    ASSERT_STREQ("GET h /\na:1\nb:2", sorted);
    ASSERT_STREQ(sorted, vary_key_of("a,,A, b ,B", H("b", "2", "A", "1")));
    ASSERT_STREQ("GET h /\naccept:text/html, application/json",
                 vary_key_of("Accept", H("Accept", "text/html", "accept", "application/json")));
    ASSERT_STREQ("(-1)", vary_key_of("*", NULL));
    ASSERT_STREQ("(-1)", vary_key_of("Accept, *", NULL));
    ASSERT_STREQ("(-1)", vary_key_of("Accept Encoding", NULL));
    ASSERT_STREQ("(-1)", vary_key_of("a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q", NULL));
    ASSERT(strcmp("(-1)", vary_key_of("a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p", NULL)) != 0);
}

/* -- responses ------------------------------------------------------------------------------- */

static int store(int status, const char *const *kv, const struct tg_cache_route_conf *rc,
                 struct tg_cache_fresh *f)
{
    struct tg_h1_response r = mkres(status, kv);

    return tg_cache_response(&r, NOW_MS, rc, f);
}

/* The reason a response is not stored, or "stored". */
static const char *refusal(int status, const char *const *kv)
{
    struct tg_cache_route_conf rc = route();
    struct tg_cache_fresh f;

    return store(status, kv, &rc, &f) == TG_OK ? "stored" : f.why;
}

TEST(test_response_max_age)
{
    struct tg_cache_route_conf rc = route();
    struct tg_cache_fresh f;

    ASSERT_EQ(TG_OK, store(200,
                           H("Cache-Control", "public, max-age=60", "ETag", "W/\"v1\"",
                             "Last-Modified", "Sat, 05 Nov 1994 08:49:37 GMT", "Vary", "Accept"),
                           &rc, &f));
    ASSERT_EQ(NOW_MS + 60000, f.fresh_until);
    ASSERT_EQ(NOW_MS + 70000, f.swr_until);
    ASSERT_EQ(NOW_MS + 360000, f.sie_until);
    ASSERT_EQ(0, f.age_s);
    ASSERT_STR("W/\"v1\"", f.etag.base, f.etag.len);
    ASSERT_STR("Sat, 05 Nov 1994 08:49:37 GMT", f.last_modified.base, f.last_modified.len);
    ASSERT_STR("Accept", f.vary.base, f.vary.len);
    ASSERT(f.why == NULL);
    /* s-maxage wins over max-age in a shared cache and keeps the route's stale windows off ... */
    ASSERT_EQ(TG_OK, store(200, H("Cache-Control", "max-age=60, s-maxage=5"), &rc, &f));
    ASSERT_EQ(NOW_MS + 5000, f.fresh_until);
    ASSERT_EQ(NOW_MS + 5000, f.swr_until);
    ASSERT_EQ(NOW_MS + 5000, f.sie_until);
    /* ... but not the response's own. */
    ASSERT_EQ(TG_OK,
              store(200, H("Cache-Control", "s-maxage=1, stale-while-revalidate=59"), &rc, &f));
    ASSERT_EQ(NOW_MS + 60000, f.swr_until);
    ASSERT_EQ(NOW_MS + 1000, f.sie_until);
    /* max-age makes Expires ignored, even an invalid one. */
    ASSERT_EQ(TG_OK, store(200, H("Expires", "0", "Cache-Control", "max-age=10"), &rc, &f));
    ASSERT_EQ(NOW_MS + 10000, f.fresh_until);
    /* Explicit freshness makes any final status storable. */
    ASSERT_STREQ("stored", refusal(500, H("Cache-Control", "max-age=10")));
    ASSERT_STREQ("expired", refusal(200, H("Cache-Control", "max-age=0")));
    ASSERT_STREQ("expired", refusal(200, H("Cache-Control", "max-age=10, max-age=20")));
    ASSERT_STREQ("expired", refusal(200, H("Cache-Control", "s-maxage=x, max-age=20")));
}

TEST(test_response_expires)
{
    struct tg_cache_route_conf rc = route();
    struct tg_cache_fresh f;

    /* RFC 9111 §5.3's Expires with the Date of RFC 9110 §6.6.1's style: 1410449 s apart. */
    ASSERT_EQ(TG_OK, store(200,
                           H("Date", "Tue, 15 Nov 1994 08:12:31 GMT", "Expires",
                             "Thu, 01 Dec 1994 16:00:00 GMT"),
                           &rc, &f));
    ASSERT_EQ(NOW_MS + 1410449000LL, f.fresh_until);
    /* Without a Date: Expires - now. */
    ASSERT_EQ(TG_OK, store(200, H("Expires", "Sun, 06 Nov 1994 08:50:37 GMT"), &rc, &f));
    ASSERT_EQ(NOW_MS + 60000, f.fresh_until);
    /* An invalid Date is no Date. */
    ASSERT_EQ(TG_OK, store(200, H("Date", "yesterday", "Expires", "Sun, 06 Nov 1994 08:50:37 GMT"),
                           &rc, &f));
    ASSERT_EQ(NOW_MS + 60000, f.fresh_until);
    ASSERT_STREQ("expired", refusal(200, H("Expires", "0")));
    ASSERT_STREQ("expired", refusal(200, H("Expires", "Sun, 06 Nov 1994 08:49:37 GMT")));
    ASSERT_STREQ("expired", refusal(200, H("Expires", "Sun, 06 Nov 1994 08:50:37 GMT", "Expires",
                                           "Sun, 06 Nov 1994 08:50:37 GMT")));
    /* Explicit freshness beats the heuristic, even for a status that has none. */
    ASSERT_STREQ("stored", refusal(302, H("Expires", "Sun, 06 Nov 1994 08:50:37 GMT")));
}

TEST(test_response_heuristic)
{
    struct tg_cache_route_conf rc = route();
    struct tg_cache_fresh f;
    static const int yes[] = {200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501};
    static const int no[] = {201, 202, 302, 303, 307, 400, 403, 429, 500, 502, 503};

    for (size_t i = 0; i < TG_ARRAY_SIZE(yes); i++) {
        ASSERT_EQ(TG_OK, store(yes[i], NULL, &rc, &f));
        ASSERT_EQ(NOW_MS + 60000, f.fresh_until);
    }
    for (size_t i = 0; i < TG_ARRAY_SIZE(no); i++)
        ASSERT_STREQ("no freshness", refusal(no[i], NULL));
    /* public makes a response heuristically cacheable (RFC 9111 §4.2.2). */
    ASSERT_STREQ("stored", refusal(302, H("Cache-Control", "public")));
    rc.ttl = 0;
    ASSERT_EQ(TG_DECLINED, store(200, NULL, &rc, &f));
    ASSERT_STREQ("no freshness", f.why);
}

TEST(test_response_age)
{
    struct tg_cache_route_conf rc = route();
    struct tg_cache_fresh f;

    ASSERT_EQ(TG_OK, store(200, H("Cache-Control", "max-age=60", "Age", "20"), &rc, &f));
    ASSERT_EQ(NOW_MS + 40000, f.fresh_until);
    ASSERT_EQ(20, f.age_s);
    ASSERT_EQ(TG_OK, store(200, H("Age", "5, 7"), &rc, &f)); /* first member, heuristic */
    ASSERT_EQ(5, f.age_s);
    ASSERT_EQ(NOW_MS + 55000, f.fresh_until);
    ASSERT_EQ(TG_OK, store(200, H("Age", "-3"), &rc, &f)); /* invalid: ignored */
    ASSERT_EQ(0, f.age_s);
    ASSERT_STREQ("stale", refusal(200, H("Cache-Control", "max-age=60", "Age", "60")));
    ASSERT_STREQ("stale", refusal(200, H("Age", "99999999999999999999")));
}

TEST(test_response_refused)
{
    ASSERT_STREQ("status", refusal(100, NULL));
    ASSERT_STREQ("status", refusal(206, H("Cache-Control", "max-age=60")));
    ASSERT_STREQ("status", refusal(304, H("Cache-Control", "max-age=60")));
    ASSERT_STREQ("no-store",
                 refusal(200, H("Cache-Control", "max-age=60", "cache-control", "NO-STORE")));
    ASSERT_STREQ("private", refusal(200, H("Cache-Control", "private=\"x\", max-age=60")));
    ASSERT_STREQ("no-cache", refusal(200, H("Cache-Control", "no-cache=\"Set-Cookie\"")));
    ASSERT_STREQ("set-cookie",
                 refusal(200, H("Cache-Control", "public, max-age=60", "Set-Cookie", "sid=1")));
    ASSERT_STREQ("vary", refusal(200, H("Vary", "*")));
    ASSERT_STREQ("vary", refusal(200, H("Vary", "Accept, *")));
    ASSERT_STREQ("vary", refusal(200, H("Vary", "Accept", "Vary", "Cookie")));
    ASSERT_STREQ("stored", refusal(200, H("Vary", "", "Vary", "Accept")));
    /* must-understand: no-store is ignored for a status we know (RFC 9111 §5.2.2.3). */
    ASSERT_STREQ("stored",
                 refusal(200, H("Cache-Control", "must-understand, no-store, max-age=9")));
    ASSERT_STREQ("must-understand", refusal(299, H("Cache-Control", "must-understand, max-age=9")));
}

TEST(test_response_stale_windows)
{
    struct tg_cache_route_conf rc = route();
    struct tg_cache_fresh f;

    /* RFC 5861's examples. */
    ASSERT_EQ(TG_OK,
              store(200, H("Cache-Control", "max-age=600, stale-while-revalidate=30"), &rc, &f));
    ASSERT_EQ(NOW_MS + 630000, f.swr_until);
    ASSERT_EQ(NOW_MS + 900000, f.sie_until); /* the route's */
    ASSERT_EQ(TG_OK, store(200, H("Cache-Control", "max-age=600, stale-if-error=1200"), &rc, &f));
    ASSERT_EQ(NOW_MS + 610000, f.swr_until);
    ASSERT_EQ(NOW_MS + 1800000, f.sie_until);
    /* Invalid: no window rather than the route's. */
    ASSERT_EQ(TG_OK, store(200, H("Cache-Control", "max-age=1, stale-if-error=soon"), &rc, &f));
    ASSERT_EQ(NOW_MS + 1000, f.sie_until);
    ASSERT_EQ(TG_OK,
              store(200,
                    H("Cache-Control", "max-age=60, must-revalidate, stale-while-revalidate=30"),
                    &rc, &f));
    ASSERT_EQ(f.fresh_until, f.swr_until);
    ASSERT_EQ(f.fresh_until, f.sie_until);
    ASSERT_EQ(TG_OK, store(200, H("Cache-Control", "proxy-revalidate"), &rc, &f));
    ASSERT_EQ(NOW_MS + 60000, f.sie_until);
}

/* -- entries --------------------------------------------------------------------------------- */

TEST(test_entry_age_and_state)
{
    struct tg_cache_entry e = {0};

    e.stored_ms = 1000;
    e.age_s = 5;
    e.fresh_ms = 2000;
    e.swr_ms = 3000;
    e.sie_ms = 4000;
    ASSERT_EQ(5, tg_cache_age(&e, 1999));
    ASSERT_EQ(14, tg_cache_age(&e, 10999));
    ASSERT_EQ(5, tg_cache_age(&e, 0)); /* the clock went back */
    ASSERT_EQ(TG_CC_DELTA_MAX, tg_cache_age(&e, INT64_MAX));
    ASSERT_EQ(TG_CACHE_FRESH, tg_cache_entry_state(&e, 1999));
    ASSERT_EQ(TG_CACHE_STALE, tg_cache_entry_state(&e, 2000));
    ASSERT_EQ(TG_CACHE_ON_ERROR, tg_cache_entry_state(&e, 3000));
    ASSERT_EQ(TG_CACHE_EXPIRED, tg_cache_entry_state(&e, 4000));
}

/* -- conditionals ---------------------------------------------------------------------------- */

static bool nm(int method, const char *const *kv, const char *etag, const char *lm)
{
    struct tg_h1_request r = mkreq(method, kv);

    return tg_cache_not_modified(&r, tg_str_cstr(etag), tg_str_cstr(lm));
}

TEST(test_not_modified)
{
    const char *lm = "Sat, 05 Nov 1994 08:49:37 GMT";

    ASSERT(nm(TG_METHOD_GET, H("If-None-Match", "\"abc\""), "\"abc\"", ""));
    ASSERT(nm(TG_METHOD_HEAD, H("If-None-Match", "W/\"abc\""), "\"abc\"", ""));
    ASSERT(nm(TG_METHOD_GET, H("If-None-Match", "\"abc\""), "W/\"abc\"", ""));
    ASSERT(nm(TG_METHOD_GET, H("If-None-Match", "\"x\",W/\"abc\" , \"y\""), "\"abc\"", ""));
    ASSERT(
        nm(TG_METHOD_GET, H("If-None-Match", "\"x\"", "If-None-Match", "\"abc\""), "\"abc\"", ""));
    ASSERT(nm(TG_METHOD_GET, H("If-None-Match", "\"a,b\""), "\"a,b\"", ""));
    ASSERT(!nm(TG_METHOD_GET, H("If-None-Match", "\"a\", \"b\""), "\"a,b\"", ""));
    ASSERT(nm(TG_METHOD_GET, H("If-None-Match", "*"), "", ""));
    ASSERT(!nm(TG_METHOD_GET, H("If-None-Match", "\"abd\""), "\"abc\"", ""));
    ASSERT(!nm(TG_METHOD_GET, H("If-None-Match", "abc"), "abc", ""));
    ASSERT(!nm(TG_METHOD_GET, H("If-None-Match", "\"\""), "", ""));
    ASSERT(!nm(TG_METHOD_POST, H("If-None-Match", "*"), "\"abc\"", ""));
    /* If-None-Match decides alone, even against a matching If-Modified-Since. */
    ASSERT(!nm(TG_METHOD_GET,
               H("If-None-Match", "\"old\"", "If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT"),
               "\"abc\"", lm));
    ASSERT(
        nm(TG_METHOD_GET, H("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT"), "\"abc\"", lm));
    ASSERT(nm(TG_METHOD_GET, H("If-Modified-Since", lm), "", lm));
    ASSERT(!nm(TG_METHOD_GET, H("If-Modified-Since", "Fri, 04 Nov 1994 08:49:37 GMT"), "", lm));
    ASSERT(!nm(TG_METHOD_GET, H("If-Modified-Since", "yesterday"), "", lm));
    ASSERT(!nm(TG_METHOD_GET, H("If-Modified-Since", lm, "If-Modified-Since", lm), "", lm));
    ASSERT(!nm(TG_METHOD_GET, H("If-Modified-Since", lm), "", ""));
}

/* -- HTTP dates ------------------------------------------------------------------------------ */

static int64_t date_of(const char *s)
{
    int64_t t;

    return tg_http_date_parse(s, strlen(s), &t) == 0 ? t : -1;
}

TEST(test_date_parse)
{
    /* RFC 9110 §5.6.7's three forms of one instant. */
    ASSERT_EQ(784111777, date_of("Sun, 06 Nov 1994 08:49:37 GMT"));
    ASSERT_EQ(784111777, date_of("Sunday, 06-Nov-94 08:49:37 GMT"));
    ASSERT_EQ(784111777, date_of("Sun Nov  6 08:49:37 1994"));
    ASSERT_EQ(784111777, date_of("Sun Nov 06 08:49:37 1994"));
    ASSERT_EQ(784111777, date_of("sun, 06 NOV 1994 08:49:37 gmt "));
    ASSERT_EQ(0, date_of("Thu, 01 Jan 1970 00:00:00 GMT"));
    ASSERT_EQ(951782400, date_of("Tue, 29 Feb 2000 00:00:00 GMT"));
    ASSERT_EQ(253402300799LL, date_of("Fri, 31 Dec 9999 23:59:59 GMT"));
    ASSERT_EQ(-86400, date_of("Wed, 31 Dec 1969 00:00:00 GMT"));
    ASSERT_EQ(-1, date_of("Thu, 29 Feb 1900 00:00:00 GMT"));
    ASSERT_EQ(-1, date_of("Sun, 31 Nov 1994 08:49:37 GMT"));
    ASSERT_EQ(-1, date_of("Sun, 06 Nov 1994 24:00:00 GMT"));
    ASSERT_EQ(-1, date_of("Sun, 06 Nov 1994 08:60:00 GMT"));
    ASSERT_EQ(-1, date_of("Sun, 06 Nov 1994 08:49:37 UTC"));
    ASSERT_EQ(-1, date_of("Sun, 6 Nov 1994 08:49:37 GMT"));
    ASSERT_EQ(-1, date_of("Sun, 06 Nov 1994 08:49:37 GMT x"));
    ASSERT_EQ(-1, date_of("Sun Nov 6 08:49:37 1994"));
    ASSERT_EQ(-1, date_of("Sunda, 06-Nov-94 08:49:37 GMT"));
    ASSERT_EQ(-1, date_of("Xyz, 06 Nov 1994 08:49:37 GMT"));
    ASSERT_EQ(-1, date_of("0"));
    ASSERT_EQ(-1, date_of(""));
    ASSERT_EQ(-1, date_of("Sun "));
}

/* The year of an rfc850-date with two-digit year yy. */
static int year_of_yy(int yy)
{
    char s[64];
    time_t t;
    struct tm tm;

    snprintf(s, sizeof(s), "Monday, 01-Jan-%02d 00:00:00 GMT", yy);
    t = (time_t)date_of(s);
    gmtime_r(&t, &tm);
    return tm.tm_year + 1900;
}

TEST(test_date_two_digit_year)
{
    time_t now = time(NULL);
    struct tm tm;
    int y;

    gmtime_r(&now, &tm);
    y = tm.tm_year + 1900;
    /* 50 years ahead stays ahead; 51 is a century back (RFC 9110 §5.6.7). */
    ASSERT_EQ(y + 50, year_of_yy((y + 50) % 100));
    ASSERT_EQ(y + 51 - 100, year_of_yy((y + 51) % 100));
    ASSERT_EQ(y, year_of_yy(y % 100));
    ASSERT_EQ(1994, year_of_yy(94));
}

TEST(test_date_format)
{
    char out[TG_HTTP_DATE_LEN + 1], want[64];
    int bad = 0;

    ASSERT_EQ(TG_HTTP_DATE_LEN, tg_http_date_format(784111777, out));
    ASSERT_STREQ("Sun, 06 Nov 1994 08:49:37 GMT", out);
    tg_http_date_format(0, out);
    ASSERT_STREQ("Thu, 01 Jan 1970 00:00:00 GMT", out);
    tg_http_date_format(-5, out);
    ASSERT_STREQ("Thu, 01 Jan 1970 00:00:00 GMT", out);
    tg_http_date_format(INT64_MAX, out);
    ASSERT_STREQ("Fri, 31 Dec 9999 23:59:59 GMT", out);
    /* Against the C library (C locale) and back through the parser, across the whole range. */
    for (int64_t t = 0; t < 253402300799LL && bad < 3; t += 7777777 + t % 86400) {
        time_t tt = (time_t)t;
        struct tm tm;

        gmtime_r(&tt, &tm);
        strftime(want, sizeof(want), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        tg_http_date_format(t, out);
        if (strcmp(want, out) != 0 || date_of(out) != t) {
            UNIT_FAIL("%lld: %s, want %s", (long long)t, out, want);
            bad++;
        }
    }
}

int main(void)
{
    RUN(test_request_methods);
    RUN(test_request_directives);
    RUN(test_request_credentials);
    RUN(test_cache_control_parse);
    RUN(test_key_basic);
    RUN(test_key_query_params);
    RUN(test_vary_key);
    RUN(test_response_max_age);
    RUN(test_response_expires);
    RUN(test_response_heuristic);
    RUN(test_response_age);
    RUN(test_response_refused);
    RUN(test_response_stale_windows);
    RUN(test_entry_age_and_state);
    RUN(test_not_modified);
    RUN(test_date_parse);
    RUN(test_date_two_digit_year);
    RUN(test_date_format);
    return unit_report();
}
