/*
 * Router tests: matching tables (host, path, methods, precedence), captures, rewrite
 * expansion, and the pattern and template errors the configuration loader reports.
 * Configurations are built by hand so these tests do not depend on the loader.
 */
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "http/h1.h"
#include "router/router.h"
#include "unit.h"

#define M(x) (1u << TG_METHOD_##x)

struct rspec {
    const char *name;
    const char *host;
    const char *path;
    uint32_t methods;
};

/* A test's configuration: only the fields the router reads are filled in. */
struct fixture {
    struct tg_config cf;
    struct tg_route_conf routes[64];
    struct tg_router *r;
};

static void fixture_init(struct fixture *fx, const struct rspec *rs, size_t n)
{
    memset(fx, 0, sizeof(*fx));
    for (size_t i = 0; i < n; i++) {
        fx->routes[i].name = rs[i].name;
        fx->routes[i].host = rs[i].host;
        fx->routes[i].path = rs[i].path;
        fx->routes[i].methods = rs[i].methods;
        fx->routes[i].service = "svc";
    }
    fx->cf.routes = fx->routes;
    fx->cf.num_routes = n;
    fx->r = tg_router_new(&fx->cf);
}

struct mcase {
    const char *host;
    const char *path;
    int method;
    const char *want; /* route name, NULL for no match */
    const char *caps; /* "name=value,..." */
};

static void caps_format(const struct tg_route_captures *caps, char *buf, size_t len)
{
    size_t o = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < caps->num && o < len; i++)
        o +=
            (size_t)snprintf(buf + o, len - o, "%s%.*s=%.*s", i ? "," : "", (int)caps->names[i].len,
                             caps->names[i].base, (int)caps->values[i].len, caps->values[i].base);
}

static void run_cases(const struct fixture *fx, const struct mcase *cs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct tg_route_captures caps;
        const struct tg_route_conf *rc;
        char got[256];

        memset(&caps, 0xa5, sizeof(caps));
        rc = tg_router_match(fx->r, tg_str_cstr(cs[i].host), tg_str_cstr(cs[i].path), cs[i].method,
                             &caps);
        if ((rc == NULL) != (cs[i].want == NULL) ||
            (rc != NULL && strcmp(rc->name, cs[i].want) != 0)) {
            UNIT_FAIL("case %zu (%s %s): expected route %s, got %s", i, cs[i].host, cs[i].path,
                      cs[i].want ? cs[i].want : "(none)", rc ? rc->name : "(none)");
            continue;
        }
        caps_format(&caps, got, sizeof(got));
        if (strcmp(got, cs[i].caps ? cs[i].caps : "") != 0)
            UNIT_FAIL("case %zu (%s %s): expected captures \"%s\", got \"%s\"", i, cs[i].host,
                      cs[i].path, cs[i].caps ? cs[i].caps : "", got);
    }
}

TEST(test_match_host)
{
    static const struct rspec rs[] = {
        {"exact", "api.example.com", NULL, 0},
        {"wild", "*.example.com", NULL, 0},
        {"cap", "{site}.portal.example", NULL, 0},
        {"wild-eu", "*.eu.example.com", NULL, 0},
        {"cap-env", "api-{env}.example.com", NULL, 0},
        {"any", NULL, "/fallback", 0},
        {"ip6", "[::1]", NULL, 0},
        {"dot", "Trailing.Example.", NULL, 0},
        {"wild-cap", "*.{region}.cdn.example", NULL, 0},
    };
    static const struct mcase cs[] = {
        {"api.example.com", "/x", TG_METHOD_GET, "exact", NULL},
        {"API.Example.COM:8443", "/x", TG_METHOD_GET, "exact", NULL},
        {"api.example.com.", "/x", TG_METHOD_GET, "exact", NULL},
        {"api.example.com.:80", "/x", TG_METHOD_GET, "exact", NULL},
        {"www.example.com", "/x", TG_METHOD_GET, "wild", NULL},
        {"a.b.example.com", "/x", TG_METHOD_GET, "wild", NULL},
        {"example.com", "/x", TG_METHOD_GET, NULL, NULL},
        {"xexample.com", "/x", TG_METHOD_GET, NULL, NULL},
        {".example.com", "/x", TG_METHOD_GET, NULL, NULL},
        {"a..example.com", "/x", TG_METHOD_GET, NULL, NULL},
        {"x.eu.example.com", "/x", TG_METHOD_GET, "wild-eu", NULL},
        {"eu.example.com", "/x", TG_METHOD_GET, "wild", NULL},
        {"api-prod.example.com", "/x", TG_METHOD_GET, "cap-env", "env=prod"},
        {"API-Prod.example.com", "/x", TG_METHOD_GET, "cap-env", "env=Prod"},
        {"api-.example.com", "/x", TG_METHOD_GET, "wild", NULL},
        {"foo.portal.example", "/x", TG_METHOD_GET, "cap", "site=foo"},
        {"Foo.Portal.Example:80", "/x", TG_METHOD_GET, "cap", "site=Foo"},
        {"a.foo.portal.example", "/x", TG_METHOD_GET, NULL, NULL},
        {"portal.example", "/x", TG_METHOD_GET, NULL, NULL},
        {"other.test", "/fallback", TG_METHOD_GET, "any", NULL},
        {"other.test", "/fallback?q=1", TG_METHOD_GET, "any", NULL},
        {"", "/fallback", TG_METHOD_GET, "any", NULL},
        {"[::1]:8080", "/x", TG_METHOD_GET, "ip6", NULL},
        {"[::1]", "/x", TG_METHOD_GET, "ip6", NULL},
        {"[::2]", "/x", TG_METHOD_GET, NULL, NULL},
        {"trailing.example", "/x", TG_METHOD_GET, "dot", NULL},
        {"a.b.us.cdn.example", "/x", TG_METHOD_GET, "wild-cap", "region=us"},
        {"us.cdn.example", "/x", TG_METHOD_GET, NULL, NULL},
    };
    struct fixture fx;

    fixture_init(&fx, rs, TG_ARRAY_SIZE(rs));
    ASSERT(fx.r != NULL);
    run_cases(&fx, cs, TG_ARRAY_SIZE(cs));
    tg_router_free(fx.r);
}

TEST(test_match_path)
{
    static const struct rspec rs[] = {
        {"root", NULL, "/", 0},
        {"exact", NULL, "/a/b", 0},
        {"prefix", NULL, "/api/", 0},
        {"prefix-long", NULL, "/api/v1/", 0},
        {"seg", NULL, "/u/{id}", 0},
        {"seg-op", NULL, "/u/{id}/{op}", 0},
        {"seg-edit", NULL, "/u/{id}/edit", 0},
        {"json", NULL, "/f/{name}.json", 0},
        {"splat", NULL, "/s/{rest*}", 0},
        {"splat-v2", NULL, "/s/v2/{rest*}", 0},
        {"seg-prefix", NULL, "/g/{grp}/", 0},
        {"pct", NULL, "/%7Euser", 0},
    };
    static const struct mcase cs[] = {
        {"h", "/a/b", TG_METHOD_GET, "exact", NULL},
        {"h", "/a/b?x=1", TG_METHOD_GET, "exact", NULL},
        {"h", "/a/bc", TG_METHOD_GET, "root", NULL},
        {"h", "/a/b/", TG_METHOD_GET, "root", NULL},
        {"h", "/A/b", TG_METHOD_GET, "root", NULL},
        {"h", "/", TG_METHOD_GET, "root", NULL},
        {"h", "/api", TG_METHOD_GET, "prefix", NULL},
        {"h", "/api?x", TG_METHOD_GET, "prefix", NULL},
        {"h", "/api/", TG_METHOD_GET, "prefix", NULL},
        {"h", "/api/x/y", TG_METHOD_GET, "prefix", NULL},
        {"h", "/api/v1", TG_METHOD_GET, "prefix-long", NULL},
        {"h", "/api/v1/z", TG_METHOD_GET, "prefix-long", NULL},
        {"h", "/api/v10", TG_METHOD_GET, "prefix", NULL},
        {"h", "/apix", TG_METHOD_GET, "root", NULL},
        {"h", "/u/42", TG_METHOD_GET, "seg", "id=42"},
        {"h", "/u/42?x=/y", TG_METHOD_GET, "seg", "id=42"},
        {"h", "/u/", TG_METHOD_GET, "root", NULL},
        {"h", "/u/42/", TG_METHOD_GET, "root", NULL},
        {"h", "/u/42/edit", TG_METHOD_GET, "seg-edit", "id=42"},
        {"h", "/u/42/del", TG_METHOD_GET, "seg-op", "id=42,op=del"},
        {"h", "/u/42/del/x", TG_METHOD_GET, "root", NULL},
        {"h", "/f/a.b.json", TG_METHOD_GET, "json", "name=a.b"},
        {"h", "/f/.json", TG_METHOD_GET, "root", NULL},
        {"h", "/f/x.jso", TG_METHOD_GET, "root", NULL},
        {"h", "/f/x/y.json", TG_METHOD_GET, "root", NULL},
        {"h", "/s", TG_METHOD_GET, "splat", "rest="},
        {"h", "/s/", TG_METHOD_GET, "splat", "rest="},
        {"h", "/s/a/b?q=1", TG_METHOD_GET, "splat", "rest=a/b"},
        {"h", "/s/v2/x", TG_METHOD_GET, "splat-v2", "rest=x"},
        {"h", "/s/v2", TG_METHOD_GET, "splat-v2", "rest="},
        {"h", "/sx", TG_METHOD_GET, "root", NULL},
        {"h", "/g/7", TG_METHOD_GET, "seg-prefix", "grp=7"},
        {"h", "/g/7/a/b", TG_METHOD_GET, "seg-prefix", "grp=7"},
        {"h", "/%7Euser", TG_METHOD_GET, "pct", NULL},
        {"h", "*", TG_METHOD_OPTIONS, NULL, NULL},
        {"h", "", TG_METHOD_GET, NULL, NULL},
    };
    struct fixture fx;

    fixture_init(&fx, rs, TG_ARRAY_SIZE(rs));
    ASSERT(fx.r != NULL);
    run_cases(&fx, cs, TG_ARRAY_SIZE(cs));
    tg_router_free(fx.r);
}

TEST(test_match_methods)
{
    static const struct rspec rs[] = {
        {"any-method", NULL, "/m", 0},
        {"get-post", NULL, "/m", M(GET) | M(POST)},
        {"get-only", NULL, "/m", M(GET)},
        {"delete", NULL, "/d", M(DELETE)},
    };
    static const struct mcase cs[] = {
        {"h", "/m", TG_METHOD_GET, "get-only", NULL},
        {"h", "/m", TG_METHOD_POST, "get-post", NULL},
        {"h", "/m", TG_METHOD_PUT, "any-method", NULL},
        {"h", "/m", TG_METHOD_HEAD, "any-method", NULL},
        {"h", "/m", TG_METHOD_OTHER, "any-method", NULL},
        {"h", "/d", TG_METHOD_DELETE, "delete", NULL},
        {"h", "/d", TG_METHOD_GET, NULL, NULL},
        {"h", "/d", -1, NULL, NULL},
        {"h", "/d", 40, NULL, NULL},
    };
    struct fixture fx;

    fixture_init(&fx, rs, TG_ARRAY_SIZE(rs));
    run_cases(&fx, cs, TG_ARRAY_SIZE(cs));
    tg_router_free(fx.r);
}

TEST(test_match_precedence)
{
    /* Listed from least to most specific, so that the config order never decides. */
    static const struct rspec rs[] = {
        {"any", NULL, NULL, 0},
        {"any-host-prefix", NULL, "/", 0},
        {"any-host-exact", NULL, "/p/x", 0},
        {"wild-any-path", "*.example.com", NULL, 0},
        {"wild-exact", "*.example.com", "/p/x", 0},
        {"cap-prefix", "{sub}.example.com", "/", 0},
        {"exact-host-prefix", "www.example.com", "/", 0},
        {"exact-host-pattern", "www.example.com", "/p/{x}", 0},
        {"tie1", NULL, "/t/{a}", 0},
        {"tie2", NULL, "/t/{b}", 0},
        {"tie-lit", NULL, "/t/lit", 0},
        {"dup1", "dup.example", "/", 0},
        {"dup2", "dup.example", "/", 0},
        {"dup-get", "dup.example", "/", M(GET)},
    };
    static const struct mcase cs[] = {
        {"www.example.com", "/p/x", TG_METHOD_GET, "exact-host-pattern", "x=x"},
        {"www.example.com", "/q", TG_METHOD_GET, "exact-host-prefix", NULL},
        {"foo.example.com", "/p/x", TG_METHOD_GET, "cap-prefix", "sub=foo"},
        {"a.foo.example.com", "/p/x", TG_METHOD_GET, "wild-exact", NULL},
        {"a.foo.example.com", "/q", TG_METHOD_GET, "wild-any-path", NULL},
        {"other", "/p/x", TG_METHOD_GET, "any-host-exact", NULL},
        {"other", "/q", TG_METHOD_GET, "any-host-prefix", NULL},
        {"other", "*", TG_METHOD_OPTIONS, "any", NULL},
        {"other", "/t/y", TG_METHOD_GET, "tie1", "a=y"},
        {"other", "/t/lit", TG_METHOD_GET, "tie-lit", NULL},
        {"dup.example", "/", TG_METHOD_POST, "dup1", NULL},
        {"DUP.example:1", "/z", TG_METHOD_GET, "dup-get", NULL},
    };
    struct fixture fx;

    fixture_init(&fx, rs, TG_ARRAY_SIZE(rs));
    run_cases(&fx, cs, TG_ARRAY_SIZE(cs));
    tg_router_free(fx.r);
}

/* Enough exact hosts to fill several index slots and make probes collide. */
TEST(test_match_many_hosts)
{
    static char hosts[60][32];
    struct rspec rs[60];
    struct fixture fx;
    struct tg_route_captures caps;
    const struct tg_route_conf *rc;

    for (size_t i = 0; i < 60; i++) {
        snprintf(hosts[i], sizeof(hosts[i]), "h%zu.example", i / 2);
        rs[i] = (struct rspec){hosts[i], hosts[i], i % 2 ? "/" : "/only", 0};
    }
    fixture_init(&fx, rs, 60);
    for (size_t i = 0; i < 60; i += 2) {
        char host[40];

        snprintf(host, sizeof(host), "H%zu.EXAMPLE:443", i / 2);
        rc = tg_router_match(fx.r, tg_str_cstr(host), TG_STR_LIT("/only"), TG_METHOD_GET, &caps);
        ASSERT(rc == &fx.routes[i]);
        rc = tg_router_match(fx.r, tg_str_cstr(host), TG_STR_LIT("/x"), TG_METHOD_GET, &caps);
        ASSERT(rc == &fx.routes[i + 1]);
    }
    rc = tg_router_match(fx.r, TG_STR_LIT("h99.example"), TG_STR_LIT("/x"), TG_METHOD_GET, &caps);
    ASSERT(rc == NULL);
    ASSERT_EQ(0, caps.num);
    tg_router_free(fx.r);
}

TEST(test_match_captures)
{
    static const struct rspec rs[] = {
        {"both", "{site}.portal.example", "/v1/{key}/{rest*}", 0},
        {"many", "{a}.{b}.{c}.{d}.{e}.{f}.{g}.{h}", "/{i}", 0},
    };
    struct fixture fx;
    struct tg_route_captures caps;
    const char *host = "Shop.portal.example:8080", *path = "/v1/K1/a/b?x=1";
    const struct tg_route_conf *rc;

    fixture_init(&fx, rs, TG_ARRAY_SIZE(rs));
    rc = tg_router_match(fx.r, tg_str_cstr(host), tg_str_cstr(path), TG_METHOD_POST, &caps);
    ASSERT(rc == &fx.routes[0]);
    ASSERT_EQ(3, caps.num);
    ASSERT_STR("site", caps.names[0].base, caps.names[0].len);
    ASSERT(caps.values[0].base == host);
    ASSERT_EQ(4, caps.values[0].len);
    ASSERT_STR("key", caps.names[1].base, caps.names[1].len);
    ASSERT(caps.values[1].base == path + 4);
    ASSERT_STR("K1", caps.values[1].base, caps.values[1].len);
    ASSERT_STR("rest", caps.names[2].base, caps.names[2].len);
    ASSERT_STR("a/b", caps.values[2].base, caps.values[2].len);

    /* Nine captures in total: all must match, the first eight are kept. */
    rc = tg_router_match(fx.r, TG_STR_LIT("1.2.3.4.5.6.7.8"), TG_STR_LIT("/9"), TG_METHOD_GET,
                         &caps);
    ASSERT(rc == &fx.routes[1]);
    ASSERT_EQ(TG_ROUTER_MAX_CAPTURES, caps.num);
    ASSERT_STR("h", caps.names[7].base, caps.names[7].len);
    ASSERT_STR("8", caps.values[7].base, caps.values[7].len);
    rc = tg_router_match(fx.r, TG_STR_LIT("1.2.3.4.5.6.7.8"), TG_STR_LIT("/9/"), TG_METHOD_GET,
                         &caps);
    ASSERT(rc == NULL);

    /* caps may be NULL. */
    rc = tg_router_match(fx.r, TG_STR_LIT("a.portal.example"), TG_STR_LIT("/v1/k"), TG_METHOD_GET,
                         NULL);
    ASSERT(rc == &fx.routes[0]);
    tg_router_free(fx.r);
}

TEST(test_router_edge)
{
    static const struct rspec bad[] = {{"ok", NULL, "/", 0}, {"bad", "a..b", NULL, 0}};
    struct tg_router *r = tg_router_new(NULL);
    struct tg_route_captures caps;
    struct fixture fx;

    ASSERT(r != NULL);
    caps.num = 5;
    ASSERT(tg_router_match(r, TG_STR_LIT("h"), TG_STR_LIT("/"), TG_METHOD_GET, &caps) == NULL);
    ASSERT_EQ(0, caps.num);
    ASSERT(tg_router_match(r, (struct tg_str){0}, (struct tg_str){0}, 0, &caps) == NULL);
    tg_router_free(r);
    tg_router_free(NULL);

    fixture_init(&fx, bad, TG_ARRAY_SIZE(bad));
    ASSERT(fx.r == NULL);
}

/* The example routes of DESIGN §4, end to end: match, then expand the rewrite. */
TEST(test_design_example)
{
    static const struct rspec rs[] = {
        {"rpc", "rpc.example.com", "/v1/{key}", M(POST)},
        {"portal", "{site}.portal.example", NULL, 0},
        {"api", NULL, "/api/", 0},
    };
    struct fixture fx;
    struct tg_route_captures caps;
    const struct tg_route_conf *rc;
    struct tg_str host, path;
    char out[128];
    ssize_t n;

    fixture_init(&fx, rs, TG_ARRAY_SIZE(rs));
    host = TG_STR_LIT("rpc.example.com");
    path = TG_STR_LIT("/v1/SECRET?x=1");
    rc = tg_router_match(fx.r, host, path, TG_METHOD_POST, &caps);
    ASSERT(rc == &fx.routes[0]);
    ASSERT_STR("SECRET", caps.values[0].base, caps.values[0].len);
    ASSERT(tg_router_match(fx.r, host, path, TG_METHOD_GET, &caps) == NULL);

    host = TG_STR_LIT("acme.portal.example:443");
    path = TG_STR_LIT("/a/b?x=1");
    rc = tg_router_match(fx.r, host, path, TG_METHOD_GET, &caps);
    ASSERT(rc == &fx.routes[1]);
    ASSERT_EQ(0, tg_router_template_check("/v1/sites/{site}{path}", rc->host, rc->path, NULL, 0));
    n = tg_router_expand("/v1/sites/{site}{path}", &caps, host, path, out, sizeof(out));
    ASSERT_STR("/v1/sites/acme/a/b?x=1", out, (size_t)(n < 0 ? 0 : n));

    rc = tg_router_match(fx.r, TG_STR_LIT("x"), TG_STR_LIT("/api/things"), TG_METHOD_GET, &caps);
    ASSERT(rc == &fx.routes[2]);
    tg_router_free(fx.r);
}

TEST(test_expand)
{
    struct tg_route_captures caps = {
        .names = {TG_STR_LIT("site"), TG_STR_LIT("rest")},
        .values = {TG_STR_LIT("foo"), TG_STR_LIT("a/b")},
        .num = 2,
    };
    struct tg_str path = TG_STR_LIT("/x/y?q=1");
    char out[64];
    ssize_t n;

    n = tg_router_expand("/v1/sites/{site}{path}", &caps, TG_STR_LIT("h"), path, out, 64);
    ASSERT_STR("/v1/sites/foo/x/y?q=1", out, (size_t)(n < 0 ? 0 : n));
    n = tg_router_expand("/files/{rest}", &caps, TG_STR_LIT("h"), path, out, 64);
    ASSERT_STR("/files/a/b", out, (size_t)(n < 0 ? 0 : n));
    n = tg_router_expand("{host}", &caps, TG_STR_LIT("Foo.Example:8080"), path, out, 64);
    ASSERT_STR("Foo.Example", out, (size_t)(n < 0 ? 0 : n));
    n = tg_router_expand("{host}", &caps, TG_STR_LIT("[::1]:8080"), path, out, 64);
    ASSERT_STR("[::1]", out, (size_t)(n < 0 ? 0 : n));
    n = tg_router_expand("{site}-{site}.cdn", &caps, TG_STR_LIT("h"), path, out, 64);
    ASSERT_STR("foo-foo.cdn", out, (size_t)(n < 0 ? 0 : n));
    n = tg_router_expand("/", NULL, TG_STR_LIT("h"), path, out, 64);
    ASSERT_STR("/", out, (size_t)(n < 0 ? 0 : n));
    ASSERT_EQ(0, tg_router_expand("", NULL, TG_STR_LIT("h"), path, out, 0));

    /* Fits exactly, then one byte short, at every boundary (literal and capture). */
    ASSERT_EQ(21,
              tg_router_expand("/v1/sites/{site}{path}", &caps, TG_STR_LIT("h"), path, out, 21));
    for (size_t len = 0; len < 21; len++)
        ASSERT_EQ(
            -1, tg_router_expand("/v1/sites/{site}{path}", &caps, TG_STR_LIT("h"), path, out, len));

    /* Unchecked templates fail instead of inventing values. */
    ASSERT_EQ(-1, tg_router_expand("/{nope}", &caps, TG_STR_LIT("h"), path, out, 64));
    ASSERT_EQ(-1, tg_router_expand("/{site", &caps, TG_STR_LIT("h"), path, out, 64));
    ASSERT_EQ(-1, tg_router_expand("/{site}", NULL, TG_STR_LIT("h"), path, out, 64));
}

struct pcase {
    const char *pattern;
    int is_host;
    size_t off;
    const char *msg; /* a substring of the message */
};

TEST(test_pattern_check_errors)
{
    static const struct pcase cs[] = {
        {"", 0, 0, "empty pattern"},
        {"api", 0, 0, "start with '/'"},
        {"/a/{", 0, 3, "unterminated"},
        {"/a/{x", 0, 3, "unterminated"},
        {"/a/{x*", 0, 3, "unterminated"},
        {"/a/{}", 0, 3, "empty capture"},
        {"/a/{1x}", 0, 4, "invalid capture name"},
        {"/a/{x-y}", 0, 5, "invalid capture name"},
        {"/a/{x{y}}", 0, 5, "invalid capture name"},
        {"/a/{x}/{x}", 0, 8, "duplicate"},
        {"/a/{r*}/b", 0, 3, "must end"},
        {"/a/{r*}/", 0, 3, "must end"},
        {"/a/}", 0, 3, "'}' without '{'"},
        {"/a b", 0, 2, "not allowed"},
        {"/a?b", 0, 2, "not allowed"},
        {"/a#b", 0, 2, "not allowed"},
        {"/a\tb", 0, 2, "not allowed"},
        {"/a\x7f", 0, 2, "not allowed"},
        {"/\xc3\xa9", 0, 1, "not allowed"},
        {"/a*", 0, 2, "'*'"},
        {"/a//b", 0, 3, "empty segment"},
        {"//", 0, 1, "empty segment"},
        {"/a/../b", 0, 3, "dot segment"},
        {"/a/.", 0, 3, "dot segment"},
        {"/./", 0, 1, "dot segment"},
        {"/a%2", 0, 2, "'%'"},
        {"/a%zz", 0, 2, "'%'"},
        {"/{a}{b}", 0, 4, "one capture per segment"},
        {"/{a}-{b*}", 0, 5, "one capture per segment"},
        {"/{path}", 0, 2, "reserved"},
        {"/{host}/x", 0, 2, "reserved"},
        {"/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}", 0, 33, "too many captures"},
        {"", 1, 0, "empty pattern"},
        {"a.*.com", 1, 2, "'*'"},
        {"*example.com", 1, 1, "'*' must be followed by '.'"},
        {"*", 1, 1, "'*' must be followed by '.'"},
        {"*.", 1, 1, "'*' must be followed by '.'"},
        {"**.example.com", 1, 1, "'*' must be followed by '.'"},
        {"api.example.com:80", 1, 15, "port"},
        {"a..b", 1, 2, "empty label"},
        {".a", 1, 0, "empty label"},
        {".", 1, 0, "empty label"},
        {"a..", 1, 1, "empty label"},
        {"*..a", 1, 2, "empty label"},
        {"a b", 1, 1, "not allowed"},
        {"a/b", 1, 1, "not allowed"},
        {"{x*}.a", 1, 0, "not allowed in a host"},
        {"{a}{b}.x", 1, 3, "one capture per label"},
        {"{a}.{a}.x", 1, 5, "duplicate"},
        {"{a.x", 1, 2, "invalid capture name"},
        {"{host}.x", 1, 1, "reserved"},
        {"[::1", 1, 0, "unterminated '['"},
        {"[::g]", 1, 3, "IPv6"},
        {"[]", 1, 1, "empty IPv6"},
        {"[::1]:80", 1, 5, "port"},
    };

    for (size_t i = 0; i < TG_ARRAY_SIZE(cs); i++) {
        char err[256] = "";
        size_t off = 999;
        int rc = tg_router_pattern_check(cs[i].pattern, cs[i].is_host, err, sizeof(err), &off);

        if (rc != -1 || off != cs[i].off || strstr(err, cs[i].msg) == NULL)
            UNIT_FAIL("case %zu \"%s\": expected -1 at %zu \"%s\", got %d at %zu \"%s\"", i,
                      cs[i].pattern, cs[i].off, cs[i].msg, rc, off, err);
    }
    ASSERT_EQ(-1, tg_router_pattern_check(NULL, 0, NULL, 0, NULL));
    /* A short err buffer is truncated, never overrun. */
    {
        char err[8];

        ASSERT_EQ(-1, tg_router_pattern_check("api", 0, err, sizeof(err), NULL));
        ASSERT_EQ(7, strlen(err));
    }
}

TEST(test_pattern_check_valid)
{
    static const struct pcase cs[] = {
        {"/", 0, 0, NULL},
        {"/a/b", 0, 0, NULL},
        {"/api/", 0, 0, NULL},
        {"/u/{id}", 0, 0, NULL},
        {"/s/{rest*}", 0, 0, NULL},
        {"/{rest*}", 0, 0, NULL},
        {"/f/{name}.json", 0, 0, NULL},
        {"/v{ver}/x", 0, 0, NULL},
        {"/%7Euser", 0, 0, NULL},
        {"/.well-known/x", 0, 0, NULL},
        {"/a:b@c!$&'()+,;=~_-", 0, 0, NULL},
        {"/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{H_9}", 0, 0, NULL},
        {"api.example.com", 1, 0, NULL},
        {"API.Example.com.", 1, 0, NULL},
        {"*.example.com", 1, 0, NULL},
        {"{site}.portal.example", 1, 0, NULL},
        {"api-{env}.example.com", 1, 0, NULL},
        {"*.{x}.example.com", 1, 0, NULL},
        {"[2001:db8::1]", 1, 0, NULL},
        {"localhost", 1, 0, NULL},
        {"{a}", 1, 0, NULL},
        {"under_score.example", 1, 0, NULL},
    };

    for (size_t i = 0; i < TG_ARRAY_SIZE(cs); i++) {
        char err[256] = "";
        size_t off = 0;

        if (tg_router_pattern_check(cs[i].pattern, cs[i].is_host, err, sizeof(err), &off) != 0)
            UNIT_FAIL("case %zu \"%s\": unexpected error at %zu: %s", i, cs[i].pattern, off, err);
    }
}

struct tcase {
    const char *tmpl;
    const char *host;
    const char *path;
    const char *msg; /* NULL: valid; else a substring of the message */
};

TEST(test_template_check)
{
    static const struct tcase cs[] = {
        {"/v1/sites/{site}{path}", "{site}.portal.example", NULL, NULL},
        {"/{rest}", NULL, "/s/{rest*}", NULL},
        {"{env}.internal:8080", "api-{env}.example.com", "/", NULL},
        {"{host}", NULL, NULL, NULL},
        {"/x?y={id}&z=1", NULL, "/u/{id}", NULL},
        {"/{h}", "{a}.{b}.{c}.{d}.{e}.{f}.{g}.{h}", "/{i}", NULL},
        {"/{rest*}", NULL, "/s/{rest*}", "offset 1 is pattern syntax"},
        {"/{nope}", NULL, "/u/{id}", "unknown capture '{nope}' at offset 1"},
        {"/{site}", NULL, NULL, "unknown capture"},
        {"/{site", "{site}.x", NULL, "unterminated '{' at offset 1"},
        {"/site}", NULL, NULL, "'}' without '{' at offset 5"},
        {"/{}", NULL, NULL, "empty '{}' at offset 1"},
        {"/{a-b}", NULL, "/{a}", "invalid character in capture name at offset 3"},
        {"/{1a}", NULL, NULL, "invalid capture name at offset 2"},
        {"", NULL, NULL, "empty template"},
        {"/a b", NULL, NULL, "not allowed at offset 2"},
        {"/a\r\n", NULL, NULL, "not allowed at offset 2"},
        {"/{id}", "{id}.x", "/{id}", "ambiguous"},
        {"/{i}", "{a}.{b}.{c}.{d}.{e}.{f}.{g}.{h}", "/{i}", "beyond the first 8"},
        {"/", NULL, "nope", "invalid path pattern"},
        {"/", "a..b", NULL, "invalid host pattern"},
    };

    for (size_t i = 0; i < TG_ARRAY_SIZE(cs); i++) {
        char err[256] = "";
        int rc = tg_router_template_check(cs[i].tmpl, cs[i].host, cs[i].path, err, sizeof(err));

        if (cs[i].msg == NULL && rc != 0)
            UNIT_FAIL("case %zu \"%s\": unexpected error: %s", i, cs[i].tmpl, err);
        if (cs[i].msg != NULL && (rc != -1 || strstr(err, cs[i].msg) == NULL))
            UNIT_FAIL("case %zu \"%s\": expected \"%s\", got %d \"%s\"", i, cs[i].tmpl, cs[i].msg,
                      rc, err);
    }
    ASSERT_EQ(-1, tg_router_template_check(NULL, NULL, NULL, NULL, 0));
}

int main(void)
{
    RUN(test_match_host);
    RUN(test_match_path);
    RUN(test_match_methods);
    RUN(test_match_precedence);
    RUN(test_match_many_hosts);
    RUN(test_match_captures);
    RUN(test_router_edge);
    RUN(test_design_example);
    RUN(test_expand);
    RUN(test_pattern_check_errors);
    RUN(test_pattern_check_valid);
    RUN(test_template_check);
    return unit_report();
}
