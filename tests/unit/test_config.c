/*
 * Configuration loader: every key of a full file, the defaults, ${VAR} expansion, each kind of
 * error with its exact position, a file with many mistakes, the examples, and the graph.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "config/config.h"
#include "config/config_internal.h"
#include "config/env.h"
#include "config/units.h"
#include "http/h1.h"
#include "net/addr.h"
#include "unit.h"

static struct tg_config *load(const char *text, struct tg_config_errors *errs)
{
    return tg_config_load_mem("t.yaml", text, strlen(text), errs);
}

/* Loads text, which must fail with exactly the errors given, in this order. */
static void expect_errors_at(const char *text, const char *const *want, size_t n, int line)
{
    struct tg_config_errors errs = {0};
    struct tg_config *cf = load(text, &errs);

    if (cf != NULL) {
        fprintf(stderr, "test_config.c:%d: the config loaded but should not have\n", line);
        unit_current_failed = 1;
        tg_config_drop(cf);
        return;
    }
    for (size_t i = 0; i < n || i < errs.num; i++) {
        const char *w = i < n ? want[i] : "(none)", *g = i < errs.num ? errs.msgs[i] : "(none)";

        if (strcmp(w, g) != 0) {
            fprintf(stderr, "test_config.c:%d: error %zu:\n  expected %s\n  got      %s\n", line, i,
                    w, g);
            unit_current_failed = 1;
        }
    }
    tg_config_errors_dispose(&errs);
}

#define EXPECT_ERRORS(text, ...)                                                                   \
    do {                                                                                           \
        static const char *const want_[] = {__VA_ARGS__};                                          \
        expect_errors_at((text), want_, sizeof(want_) / sizeof(want_[0]), __LINE__);               \
    } while (0)

#define MIN_LISTEN "listen: [ { addr: 127.0.0.1:8080 } ]\n"

static const char *addr_text(const struct tg_addr *a, char *buf, size_t len)
{
    return tg_addr_format(a, buf, len);
}

static const char full_config[] =
    "workers: 4\n"
    "listen:\n"
    "  - addr: 0.0.0.0:8080\n"
    "  - addr: \"[::1]:8443\"\n"
    "    tls: { cert: /etc/t/tls.crt, key: /etc/t/tls.key }\n"
    "  - addr: unix:/run/tollgate.sock\n"
    "admin:\n"
    "  addr: 127.0.0.1:9902\n"
    "limits:\n"
    "  max_request_line: 4kb\n"
    "  max_header_bytes: 16kb\n"
    "  max_headers: 50\n"
    "  max_body: 1gb\n"
    "  header_timeout: 5s\n"
    "  idle_timeout: 2m\n"
    "  body_timeout: 30s\n"
    "  send_timeout: 1h\n"
    "  max_connections: 500\n"
    "shutdown: { drain_delay: 0, timeout: 1m }\n"
    "log:\n"
    "  level: warn\n"
    "  access: { enabled: false, sample: 0.25, slow: 250ms }\n"
    "trusted_proxies: [10.0.0.0/8, 192.168.1.1, \"fd00::/8\"]\n"
    "dns:\n"
    "  servers: [10.0.0.2, \"10.0.0.3:5353\", \"[::1]:53\"]\n"
    "  min_ttl: 5s\n"
    "  max_ttl: 1h\n"
    "  timeout: 500ms\n"
    "services:\n"
    "  eth-mainnet:\n"
    "    kind: jsonrpc\n"
    "    balance: least_outstanding\n"
    "    nodes:\n"
    "      - url: http://10.0.0.11:8545\n"
    "      - url: http://10.0.0.12:8545/rpc/\n"
    "        weight: 2\n"
    "      - url: https://mainnet.provider.example/v3/key\n"
    "        tier: 1\n"
    "      - { url: \"https://[2001:db8::1]:8443\" }\n"
    "    timeouts: { connect: 1s, response: 10s }\n"
    "    pool: { max_idle: 0, idle_timeout: 90s }\n"
    "    tls: { verify: false, ca: /etc/ssl/ca.pem, sni: rpc.example }\n"
    "  billing:\n"
    "    balance: consistent_hash\n"
    "    nodes: [ { url: unix:/run/billing.sock } ]\n"
    "routes:\n"
    "  - name: rpc\n"
    "    match: { host: rpc.example.com, path: \"/v1/{key}\", methods: [POST, get] }\n"
    "    service: eth-mainnet\n"
    "    rewrite: { path: \"/\", host: \"upstream.example\" }\n"
    "    max_body: 2mb\n"
    "  - name: api\n"
    "    match: { path: /api/ }\n"
    "    service: billing\n";

TEST(full_config_every_field)
{
    struct tg_config_errors errs = {0};
    struct tg_config *cf = load(full_config, &errs);
    const struct tg_service_conf *s;
    const struct tg_node_conf *n;
    const struct tg_route_conf *r;
    char buf[128];

    for (size_t i = 0; i < errs.num; i++)
        fprintf(stderr, "unexpected: %s\n", errs.msgs[i]);
    ASSERT(cf != NULL);
    if (cf == NULL)
        return;
    ASSERT_EQ(1, atomic_load(&cf->refs));
    ASSERT_STREQ("t.yaml", cf->file);
    ASSERT_EQ(16, strlen(cf->hash));
    ASSERT_EQ(4, cf->workers);

    ASSERT_EQ(3, cf->num_listens);
    ASSERT_STREQ("0.0.0.0:8080", cf->listens[0].addr_text);
    ASSERT_STREQ("0.0.0.0:8080", addr_text(&cf->listens[0].addr, buf, sizeof(buf)));
    ASSERT(cf->listens[0].tls_cert == NULL && cf->listens[0].tls_key == NULL);
    ASSERT_EQ(3, cf->listens[0].pos.line);
    ASSERT_EQ(5, cf->listens[0].pos.col);
    ASSERT_STREQ("t.yaml", cf->listens[0].pos.file);
    ASSERT_STREQ("[::1]:8443", addr_text(&cf->listens[1].addr, buf, sizeof(buf)));
    ASSERT_STREQ("/etc/t/tls.crt", cf->listens[1].tls_cert);
    ASSERT_STREQ("/etc/t/tls.key", cf->listens[1].tls_key);
    ASSERT(tg_addr_is_unix(&cf->listens[2].addr));
    ASSERT_STREQ("unix:/run/tollgate.sock", addr_text(&cf->listens[2].addr, buf, sizeof(buf)));

    ASSERT_STREQ("127.0.0.1:9902", cf->admin_addr_text);
    ASSERT_STREQ("127.0.0.1:9902", addr_text(&cf->admin_addr, buf, sizeof(buf)));

    ASSERT_EQ(4096, cf->limits.max_request_line);
    ASSERT_EQ(16384, cf->limits.max_header_bytes);
    ASSERT_EQ(50, cf->limits.max_headers);
    ASSERT_EQ(1024ull * 1024 * 1024, cf->limits.max_body);
    ASSERT_EQ(5000, cf->limits.header_timeout);
    ASSERT_EQ(120000, cf->limits.idle_timeout);
    ASSERT_EQ(30000, cf->limits.body_timeout);
    ASSERT_EQ(3600000, cf->limits.send_timeout);
    ASSERT_EQ(500, cf->limits.max_connections);
    ASSERT_EQ(0, cf->drain_delay);
    ASSERT_EQ(60000, cf->shutdown_timeout);
    ASSERT_EQ(TG_LOG_WARN, cf->log_level);
    ASSERT(!cf->access_log);
    ASSERT(cf->access_sample == 0.25);
    ASSERT_EQ(250, cf->access_slow);

    ASSERT_EQ(3, cf->trusted_proxies.num);
    ASSERT_STREQ("10.0.0.0/8", cf->trusted_proxies.items[0]);
    ASSERT_STREQ("192.168.1.1", cf->trusted_proxies.items[1]);
    ASSERT_STREQ("fd00::/8", cf->trusted_proxies.items[2]);
    ASSERT_EQ(3, cf->dns_servers.num);
    ASSERT_STREQ("10.0.0.2", cf->dns_servers.items[0]);
    ASSERT_STREQ("10.0.0.3:5353", cf->dns_servers.items[1]);
    ASSERT_STREQ("[::1]:53", cf->dns_servers.items[2]);
    ASSERT_EQ(5000, cf->dns_min_ttl);
    ASSERT_EQ(3600000, cf->dns_max_ttl);
    ASSERT_EQ(500, cf->dns_timeout);

    ASSERT_EQ(2, cf->num_services);
    s = &cf->services[0];
    ASSERT_STREQ("eth-mainnet", s->name);
    ASSERT_EQ(30, s->pos.line);
    ASSERT_EQ(3, s->pos.col);
    ASSERT_EQ(TG_SERVICE_JSONRPC, s->kind);
    ASSERT_EQ(TG_BALANCE_LEAST_OUTSTANDING, s->balance);
    ASSERT_EQ(1000, s->connect_timeout);
    ASSERT_EQ(10000, s->response_timeout);
    ASSERT_EQ(0, s->pool_max_idle);
    ASSERT_EQ(90000, s->pool_idle_timeout);
    ASSERT(!s->tls_verify);
    ASSERT_STREQ("/etc/ssl/ca.pem", s->tls_ca);
    ASSERT_STREQ("rpc.example", s->tls_sni);
    ASSERT_EQ(4, s->num_nodes);

    n = &s->nodes[0];
    ASSERT_STREQ("http://10.0.0.11:8545", n->url);
    ASSERT_EQ(TG_SCHEME_HTTP, n->scheme);
    ASSERT_STREQ("10.0.0.11", n->host);
    ASSERT_EQ(8545, n->port);
    ASSERT(n->host_is_ip);
    ASSERT_STREQ("10.0.0.11:8545", addr_text(&n->addr, buf, sizeof(buf)));
    ASSERT_STREQ("10.0.0.11:8545", n->authority);
    ASSERT_STREQ("", n->base_path);
    ASSERT_EQ(1, n->weight);
    ASSERT_EQ(0, n->tier);
    ASSERT_EQ(34, n->pos.line);
    ASSERT_EQ(9, n->pos.col);

    n = &s->nodes[1];
    ASSERT_STREQ("/rpc", n->base_path);
    ASSERT_EQ(2, n->weight);

    n = &s->nodes[2];
    ASSERT_EQ(TG_SCHEME_HTTPS, n->scheme);
    ASSERT_STREQ("mainnet.provider.example", n->host);
    ASSERT_EQ(443, n->port);
    ASSERT(!n->host_is_ip);
    ASSERT_EQ(0, n->addr.len);
    ASSERT_STREQ("mainnet.provider.example", n->authority);
    ASSERT_STREQ("/v3/key", n->base_path);
    ASSERT_EQ(1, n->tier);

    n = &s->nodes[3];
    ASSERT_STREQ("2001:db8::1", n->host);
    ASSERT_EQ(8443, n->port);
    ASSERT(n->host_is_ip);
    ASSERT_STREQ("[2001:db8::1]:8443", n->authority);
    ASSERT_STREQ("[2001:db8::1]:8443", addr_text(&n->addr, buf, sizeof(buf)));

    s = &cf->services[1];
    ASSERT_STREQ("billing", s->name);
    ASSERT_EQ(TG_SERVICE_HTTP, s->kind);
    ASSERT_EQ(TG_BALANCE_CONSISTENT_HASH, s->balance);
    n = &s->nodes[0];
    ASSERT_EQ(TG_SCHEME_UNIX, n->scheme);
    ASSERT(n->host == NULL);
    ASSERT_STREQ("unix:/run/billing.sock", addr_text(&n->addr, buf, sizeof(buf)));
    ASSERT_STREQ("localhost", n->authority);
    ASSERT_STREQ("", n->base_path);

    ASSERT_EQ(2, cf->num_routes);
    r = &cf->routes[0];
    ASSERT_STREQ("rpc", r->name);
    ASSERT_STREQ("rpc.example.com", r->host);
    ASSERT_STREQ("/v1/{key}", r->path);
    ASSERT_EQ((1u << TG_METHOD_POST) | (1u << TG_METHOD_GET), r->methods);
    ASSERT_STREQ("eth-mainnet", r->service);
    ASSERT(r->svc == &cf->services[0]);
    ASSERT_STREQ("/", r->rewrite_path);
    ASSERT_STREQ("upstream.example", r->rewrite_host);
    ASSERT_EQ(2 * 1024 * 1024, r->max_body);
    ASSERT_EQ(47, r->pos.line);
    ASSERT_EQ(5, r->pos.col);
    r = &cf->routes[1];
    ASSERT(r->host == NULL);
    ASSERT_STREQ("/api/", r->path);
    ASSERT_EQ(0, r->methods);
    ASSERT(r->svc == &cf->services[1]);
    ASSERT(r->rewrite_path == NULL && r->rewrite_host == NULL);
    ASSERT_EQ(0, r->max_body);

    ASSERT(tg_config_service(cf, "billing") == &cf->services[1]);
    ASSERT(tg_config_service(cf, "nope") == NULL);
    tg_config_drop(cf);
    tg_config_errors_dispose(&errs);
}

TEST(defaults)
{
    struct tg_config_errors errs = {0};
    struct tg_config *cf =
        load(MIN_LISTEN "services: { s: { nodes: [ { url: http://h } ] } }\n", &errs);
    const struct tg_service_conf *s;
    char buf[64];

    ASSERT(cf != NULL);
    if (cf == NULL)
        return;
    ASSERT_EQ(0, cf->workers);
    ASSERT_STREQ("127.0.0.1:9901", cf->admin_addr_text);
    ASSERT_STREQ("127.0.0.1:9901", tg_addr_format(&cf->admin_addr, buf, sizeof(buf)));
    ASSERT_EQ(8 * 1024, cf->limits.max_request_line);
    ASSERT_EQ(32 * 1024, cf->limits.max_header_bytes);
    ASSERT_EQ(100, cf->limits.max_headers);
    ASSERT_EQ(10 * 1024 * 1024, cf->limits.max_body);
    ASSERT_EQ(10000, cf->limits.header_timeout);
    ASSERT_EQ(60000, cf->limits.idle_timeout);
    ASSERT_EQ(60000, cf->limits.body_timeout);
    ASSERT_EQ(60000, cf->limits.send_timeout);
    ASSERT_EQ(10000, cf->limits.max_connections);
    ASSERT_EQ(5000, cf->drain_delay);
    ASSERT_EQ(25000, cf->shutdown_timeout);
    ASSERT_EQ(TG_LOG_INFO, cf->log_level);
    ASSERT(cf->access_log);
    ASSERT(cf->access_sample == 1.0);
    ASSERT_EQ(1000, cf->access_slow);
    ASSERT_EQ(0, cf->trusted_proxies.num);
    ASSERT_EQ(0, cf->dns_servers.num);
    ASSERT_EQ(1000, cf->dns_min_ttl);
    ASSERT_EQ(300000, cf->dns_max_ttl);
    ASSERT_EQ(2000, cf->dns_timeout);
    ASSERT_EQ(0, cf->num_routes);
    s = tg_config_service(cf, "s");
    ASSERT(s != NULL);
    if (s != NULL) {
        ASSERT_EQ(TG_SERVICE_HTTP, s->kind);
        ASSERT_EQ(TG_BALANCE_P2C_EWMA, s->balance);
        ASSERT_EQ(2000, s->connect_timeout);
        ASSERT_EQ(30000, s->response_timeout);
        ASSERT_EQ(64, s->pool_max_idle);
        ASSERT_EQ(60000, s->pool_idle_timeout);
        ASSERT(s->tls_verify);
        ASSERT(s->tls_ca == NULL && s->tls_sni == NULL);
        ASSERT_EQ(1, s->nodes[0].weight);
        ASSERT_EQ(0, s->nodes[0].tier);
        ASSERT_EQ(80, s->nodes[0].port);
        ASSERT_STREQ("h", s->nodes[0].authority);
    }
    tg_config_drop(cf);

    /* Empty sections and lists are the same as leaving them out. */
    cf = load(MIN_LISTEN "limits:\nlog:\ntrusted_proxies:\nservices:\nroutes:\n", &errs);
    ASSERT(cf != NULL);
    ASSERT_EQ(0, errs.num);
    if (cf != NULL)
        ASSERT_EQ(100, cf->limits.max_headers);
    tg_config_drop(cf);
}

TEST(hash_and_refcount)
{
    struct tg_config_errors errs = {0};
    struct tg_config *cf = load(MIN_LISTEN, &errs);

    ASSERT(cf != NULL);
    if (cf == NULL)
        return;
    /* The first 16 hex digits of the file's SHA-256, as Python's hashlib computes them. */
    ASSERT_STREQ("6b18a12e12a5b20b", cf->hash);
    ASSERT(tg_config_take(cf) == cf);
    ASSERT_EQ(2, atomic_load(&cf->refs));
    tg_config_drop(cf);
    ASSERT_EQ(1, atomic_load(&cf->refs));
    tg_config_drop(cf);
    tg_config_drop(NULL);
}

TEST(env_expansion)
{
    struct tg_config_errors errs = {0};
    struct tg_config *cf;

    setenv("TG_TEST_HOST", "10.9.8.7", 1);
    setenv("TG_TEST_EMPTY", "", 1);
    unsetenv("TG_TEST_UNSET");
    cf = load("workers: ${TG_TEST_UNSET:-3}\n"
              "listen: [ { addr: \"${TG_TEST_HOST}:80\" } ]\n"
              "services:\n"
              "  s:\n"
              "    nodes:\n"
              "      - url: https://${TG_TEST_HOST}/k/${TG_TEST_EMPTY:-dflt}/${TG_TEST_EMPTY}x\n"
              "    tls: { sni: \"a$$b$c${TG_TEST_UNSET:-}\" }\n",
              &errs);
    for (size_t i = 0; i < errs.num; i++)
        fprintf(stderr, "unexpected: %s\n", errs.msgs[i]);
    ASSERT(cf != NULL);
    if (cf == NULL)
        return;
    ASSERT_EQ(3, cf->workers);
    ASSERT_STREQ("10.9.8.7:80", cf->listens[0].addr_text);
    ASSERT_STREQ("https://10.9.8.7/k/dflt/x", cf->services[0].nodes[0].url);
    ASSERT_STREQ("/k/dflt/x", cf->services[0].nodes[0].base_path);
    ASSERT_STREQ("a$b$c", cf->services[0].tls_sni);
    tg_config_drop(cf);

    /* In flow style ({ ... }) a ${VAR} must be quoted, since '{' and '}' are YAML syntax. */
    EXPECT_ERRORS(MIN_LISTEN "log:\n  level: ${TG_TEST_UNSET}\n"
                             "dns: { servers: [ \"x${TG_TEST_UNSET:-1.2.3.4\" ] }\n"
                             "admin: { addr: \"${9x}\" }\n",
                  "t.yaml:3:10: environment variable TG_TEST_UNSET is not set (write "
                  "${TG_TEST_UNSET:-default} to give a default)",
                  "t.yaml:4:21: '${' without a closing '}'",
                  "t.yaml:5:17: '${9x}' is not a valid variable name (letters, digits, '_')");
}

TEST(env_expand_direct)
{
    struct tg_conf_arena *a = tg_conf_arena_new();
    struct tg_str out;
    char err[256];
    size_t off = 0;

    setenv("TG_TEST_V", "val", 1);
    ASSERT_EQ(0, tg_env_expand(a, TG_STR_LIT("plain $ text $x"), &out, err, sizeof(err), &off));
    ASSERT_STR("plain $ text $x", out.base, out.len);
    ASSERT_EQ(1, tg_env_expand(a, TG_STR_LIT("$$${TG_TEST_V}$$"), &out, err, sizeof(err), &off));
    ASSERT_STR("$val$", out.base, out.len);
    ASSERT_EQ(1, tg_env_expand(a, TG_STR_LIT("${TG_TEST_V:-x}"), &out, err, sizeof(err), &off));
    ASSERT_STR("val", out.base, out.len);
    ASSERT_EQ(-1, tg_env_expand(a, TG_STR_LIT("ab${TG_TEST_V:x}"), &out, err, sizeof(err), &off));
    ASSERT_EQ(2, off);
    ASSERT_EQ(-1, tg_env_expand(a, TG_STR_LIT("${}"), &out, err, sizeof(err), &off));
    tg_conf_arena_free(a);
}

TEST(units)
{
    char err[256];
    tg_msec_t ms;
    uint64_t v;
    struct tg_rate r;

#define DUR(text, want)                                                                            \
    do {                                                                                           \
        ASSERT_EQ(0, tg_units_parse_duration(TG_STR_LIT(text), &ms, err, sizeof(err)));            \
        ASSERT_EQ((want), ms);                                                                     \
    } while (0)
#define BAD(fn, text, out) ASSERT_EQ(-1, fn(TG_STR_LIT(text), (out), err, sizeof(err)))
    DUR("250ms", 250);
    DUR("5s", 5000);
    DUR("15m", 900000);
    DUR("1h", 3600000);
    DUR("1d", 86400000);
    DUR("0", 0);
    DUR("0s", 0);
    BAD(tg_units_parse_duration, "5", &ms);
    BAD(tg_units_parse_duration, "abc", &ms);
    BAD(tg_units_parse_duration, "5S", &ms);
    BAD(tg_units_parse_duration, "1.5s", &ms);
    BAD(tg_units_parse_duration, "-1s", &ms);
    BAD(tg_units_parse_duration, " 5s", &ms);
    BAD(tg_units_parse_duration, "5 s", &ms);
    BAD(tg_units_parse_duration, "", &ms);
    BAD(tg_units_parse_duration, "213503982334602d", &ms);
    BAD(tg_units_parse_duration, "99999999999999999999ms", &ms);
    ASSERT_EQ(-1, tg_units_parse_duration(TG_STR_LIT("abc"), &ms, err, sizeof(err)));
    ASSERT_STREQ("expected a duration like 250ms, 5s, 15m, 1h or 1d, got 'abc'", err);

#define SIZE(text, want)                                                                           \
    do {                                                                                           \
        ASSERT_EQ(0, tg_units_parse_size(TG_STR_LIT(text), &v, err, sizeof(err)));                 \
        ASSERT_EQ((want), v);                                                                      \
    } while (0)
    SIZE("512b", 512);
    SIZE("16kb", 16384);
    SIZE("10mb", 10485760);
    SIZE("1gb", 1073741824);
    SIZE("10MB", 10485760);
    SIZE("1234", 1234);
    SIZE("0", 0);
    BAD(tg_units_parse_size, "10 mb", &v);
    BAD(tg_units_parse_size, "1tb", &v);
    BAD(tg_units_parse_size, "kb", &v);
    BAD(tg_units_parse_size, "17179869184gb", &v);
    BAD(tg_units_parse_size, "18446744073709551616", &v);
    ASSERT_EQ(0, tg_units_parse_size(TG_STR_LIT("18446744073709551615"), &v, err, sizeof(err)));

#define RATE(text, c, p)                                                                           \
    do {                                                                                           \
        ASSERT_EQ(0, tg_units_parse_rate(TG_STR_LIT(text), &r, err, sizeof(err)));                 \
        ASSERT_EQ((c), r.count);                                                                   \
        ASSERT_EQ((p), r.period);                                                                  \
    } while (0)
    RATE("100/s", 100, 1000);
    RATE("600/m", 600, 60000);
    RATE("1000/15m", 1000, 900000);
    RATE("5000/h", 5000, 3600000);
    RATE("1000000/d", 1000000, 86400000);
    RATE("10/500ms", 10, 500);
    BAD(tg_units_parse_rate, "0/s", &r);
    BAD(tg_units_parse_rate, "10", &r);
    BAD(tg_units_parse_rate, "/s", &r);
    BAD(tg_units_parse_rate, "10/", &r);
    BAD(tg_units_parse_rate, "10/0m", &r);
    BAD(tg_units_parse_rate, "10/w", &r);
    BAD(tg_units_parse_rate, "10/s/s", &r);

    ASSERT_EQ(0, tg_units_parse_uint(TG_STR_LIT("42"), &v, err, sizeof(err)));
    ASSERT_EQ(42, v);
    BAD(tg_units_parse_uint, "+42", &v);
    BAD(tg_units_parse_uint, "42x", &v);

    ASSERT_STREQ("0", tg_units_format_duration(0, err, sizeof(err)));
    ASSERT_STREQ("250ms", tg_units_format_duration(250, err, sizeof(err)));
    ASSERT_STREQ("90s", tg_units_format_duration(90000, err, sizeof(err)));
    ASSERT_STREQ("15m", tg_units_format_duration(900000, err, sizeof(err)));
    ASSERT_STREQ("2d", tg_units_format_duration(172800000, err, sizeof(err)));
#undef DUR
#undef SIZE
#undef RATE
#undef BAD
}

TEST(addresses)
{
    struct tg_addr a;
    char err[256], buf[128];

#define GOOD(text, want)                                                                           \
    do {                                                                                           \
        ASSERT_EQ(0, tg_addr_parse((text), &a, err, sizeof(err)));                                 \
        ASSERT_STREQ((want), tg_addr_format(&a, buf, sizeof(buf)));                                \
    } while (0)
    GOOD("1.2.3.4:80", "1.2.3.4:80");
    GOOD("0.0.0.0:8080", "0.0.0.0:8080");
    GOOD("[::1]:80", "[::1]:80");
    GOOD("[2001:DB8::1]:443", "[2001:db8::1]:443");
    GOOD("localhost:80", "127.0.0.1:80");
    GOOD("127.0.0.1:0", "127.0.0.1:0");
    GOOD("unix:/run/x.sock", "unix:/run/x.sock");
    ASSERT(tg_addr_is_unix(&a));
    ASSERT_EQ(AF_UNIX, a.ss.ss_family);
    ASSERT_EQ(-1, tg_addr_parse("1.2.3.4", &a, err, sizeof(err)));
    ASSERT_EQ(-1, tg_addr_parse("1.2.3.4:", &a, err, sizeof(err)));
    ASSERT_EQ(-1, tg_addr_parse("1.2.3.4:65536", &a, err, sizeof(err)));
    ASSERT_EQ(-1, tg_addr_parse("1.2.3.4:-1", &a, err, sizeof(err)));
    ASSERT_EQ(-1, tg_addr_parse(":80", &a, err, sizeof(err)));
    ASSERT_EQ(-1, tg_addr_parse("example.com:80", &a, err, sizeof(err)));
    ASSERT_EQ(-1, tg_addr_parse("::1:80", &a, err, sizeof(err)));
    ASSERT_STREQ("an IPv6 address needs brackets, like [::1]:8080, got '::1:80'", err);
    ASSERT_EQ(-1, tg_addr_parse("[::1]80", &a, err, sizeof(err)));
    ASSERT_EQ(-1, tg_addr_parse("[1.2.3.4]:80", &a, err, sizeof(err)));
    ASSERT_EQ(-1, tg_addr_parse("unix:", &a, err, sizeof(err)));
    ASSERT_EQ(-1, tg_addr_parse("unix:rel.sock", &a, err, sizeof(err)));
    ASSERT_EQ(0, a.len);
    {
        char long_path[200] = "unix:/";

        memset(long_path + 6, 'p', 150);
        long_path[156] = '\0';
        ASSERT_EQ(-1, tg_addr_parse(long_path, &a, err, sizeof(err)));
    }
#undef GOOD
}

TEST(node_urls)
{
    struct tg_conf_arena *a = tg_conf_arena_new();
    struct tg_node_conf n;
    char err[256];
    size_t off;

#define URL_OK(u)                                                                                  \
    (memset(&n, 0, sizeof(n)), tg__conf_parse_node_url(a, (u), &n, err, sizeof(err), &off) == 0)
#define URL_BAD(u, o)                                                                              \
    do {                                                                                           \
        off = 999;                                                                                 \
        ASSERT(!URL_OK(u));                                                                        \
        ASSERT_EQ((o), off);                                                                       \
    } while (0)
    ASSERT(URL_OK("http://example.com"));
    ASSERT_STREQ("example.com", n.authority);
    ASSERT_EQ(80, n.port);
    ASSERT(!n.host_is_ip);
    ASSERT(URL_OK("HTTPS://Example.com:443/"));
    ASSERT_STREQ("Example.com", n.authority);
    ASSERT_STREQ("", n.base_path);
    ASSERT(URL_OK("https://example.com:80/a/b//"));
    ASSERT_STREQ("example.com:80", n.authority);
    ASSERT_STREQ("/a/b", n.base_path);
    ASSERT(URL_OK("http://[::1]"));
    ASSERT_STREQ("[::1]", n.authority);
    ASSERT_STREQ("::1", n.host);
    ASSERT(n.host_is_ip);
    ASSERT(URL_OK("http://a_b.example./x%2Fy"));
    ASSERT_STREQ("/x%2Fy", n.base_path);

    URL_BAD("ftp://x", 0);
    URL_BAD("http://", 7);
    URL_BAD("http:///path", 7);
    URL_BAD("http://:80", 7);
    URL_BAD("http://u:p@host", 7);
    URL_BAD("http://host:", 12);
    URL_BAD("http://host:0", 12);
    URL_BAD("http://host:65536", 12);
    URL_BAD("http://host:8x", 12);
    URL_BAD("http://host:123456", 12);
    URL_BAD("http://host/p?q=1", 13);
    URL_BAD("http://host/p#f", 13);
    URL_BAD("http://ho st/", 9);
    URL_BAD("http://a..b/", 9);
    URL_BAD("http://1.2.3/", 7);
    URL_BAD("http://[::1/", 7);
    URL_BAD("http://[::g]/", 8);
    URL_BAD("http://[::1]x/", 12);
    URL_BAD("http://host/a b", 13);
    URL_BAD("http://host/%zz", 12);
    URL_BAD("unix:run.sock", 5);
    tg_conf_arena_free(a);
#undef URL_OK
#undef URL_BAD
}

TEST(cidrs)
{
    char err[256];

    ASSERT_EQ(0, tg__conf_check_cidr("10.0.0.0/8", err, sizeof(err)));
    ASSERT_EQ(0, tg__conf_check_cidr("0.0.0.0/0", err, sizeof(err)));
    ASSERT_EQ(0, tg__conf_check_cidr("192.168.1.7", err, sizeof(err)));
    ASSERT_EQ(0, tg__conf_check_cidr("192.168.1.7/32", err, sizeof(err)));
    ASSERT_EQ(0, tg__conf_check_cidr("fd00::/8", err, sizeof(err)));
    ASSERT_EQ(0, tg__conf_check_cidr("::1", err, sizeof(err)));
    ASSERT_EQ(0, tg__conf_check_cidr("::/0", err, sizeof(err)));
    ASSERT_EQ(-1, tg__conf_check_cidr("10.0.0.1/8", err, sizeof(err)));
    ASSERT_STREQ("'10.0.0.1/8' has bits set after the /8 prefix; did you mean 10.0.0.0/8?", err);
    ASSERT_EQ(-1, tg__conf_check_cidr("10.0.0.0/33", err, sizeof(err)));
    ASSERT_EQ(-1, tg__conf_check_cidr("10.0.0.0/", err, sizeof(err)));
    ASSERT_EQ(-1, tg__conf_check_cidr("10.0.0.0/8x", err, sizeof(err)));
    ASSERT_EQ(-1, tg__conf_check_cidr("10.0.0/8", err, sizeof(err)));
    ASSERT_EQ(-1, tg__conf_check_cidr("/8", err, sizeof(err)));
    ASSERT_EQ(-1, tg__conf_check_cidr("fd00::1/8", err, sizeof(err)));
    ASSERT_EQ(-1, tg__conf_check_cidr("fd00::/1000", err, sizeof(err)));
    ASSERT_EQ(-1, tg__conf_check_cidr("example.com", err, sizeof(err)));
}

TEST(yaml_errors)
{
    /* libyaml marks are 0-based: line 3 here is the third line, column 2 its second byte. */
    EXPECT_ERRORS(MIN_LISTEN "limits:\n bad: [\n",
                  "t.yaml:4:1: YAML syntax error: did not find expected node content (while "
                  "parsing a flow node at line 4 column 1)");
    EXPECT_ERRORS("listen:\n  - addr: 1.2.3.4:80\n    addr: 1.2.3.4:81\nlisten: []\n",
                  "t.yaml:3:5: duplicate key 'addr' (first at line 2 column 5)",
                  "t.yaml:4:1: duplicate key 'listen' (first at line 1 column 1)");
    EXPECT_ERRORS(MIN_LISTEN "limits: &l { max_body: 1kb }\nlog: *l\n",
                  "t.yaml:3:6: YAML aliases (*l) are not supported");
    EXPECT_ERRORS("", "t.yaml:1:1: the file is empty");
    EXPECT_ERRORS("# only a comment\n", "t.yaml:1:1: the file is empty");
    EXPECT_ERRORS(MIN_LISTEN "---\nworkers: 1\n",
                  "t.yaml:2:1: only one YAML document is allowed per file");
    EXPECT_ERRORS(MIN_LISTEN "? [a]\n: 1\n",
                  "t.yaml:2:3: a mapping key must be a plain string, not a list");
    EXPECT_ERRORS(MIN_LISTEN "log: \"a\\0b\"\n",
                  "t.yaml:2:6: a NUL character is not allowed in a value");
    EXPECT_ERRORS("- a\n- b\n", "t.yaml:1:1: the top level: expected a mapping, got a list");
    EXPECT_ERRORS("listen:\n  - addr: 1.2.3.4:80\n\x01\n",
                  "t.yaml:3:1: YAML syntax error: control characters are not allowed");
}

TEST(value_errors)
{
    EXPECT_ERRORS("workers: 0\n" MIN_LISTEN,
                  "t.yaml:1:10: workers: expected auto or a number from 1 to 1024, got '0'");
    EXPECT_ERRORS("workers: 1025\n" MIN_LISTEN,
                  "t.yaml:1:10: workers: expected auto or a number from 1 to 1024, got '1025'");
    EXPECT_ERRORS(MIN_LISTEN "limits: { header_timeout: abc }\n",
                  "t.yaml:2:27: header_timeout: expected a duration like 250ms, 5s, 15m, 1h or "
                  "1d, got 'abc'");
    EXPECT_ERRORS(MIN_LISTEN "limits: { idle_timeout: 0 }\n",
                  "t.yaml:2:25: idle_timeout: must be greater than 0: a zero timeout would "
                  "expire at once");
    EXPECT_ERRORS(MIN_LISTEN "limits: { max_headers: 0 }\n",
                  "t.yaml:2:24: max_headers: must be greater than 0: every HTTP/1.1 request "
                  "carries at least a Host header");
    EXPECT_ERRORS(MIN_LISTEN "limits: { max_headers: 4294967296 }\n",
                  "t.yaml:2:24: max_headers: must be at most 10000, got 4294967296");
    EXPECT_ERRORS(MIN_LISTEN "limits: { max_request_line: 2mb }\n",
                  "t.yaml:2:29: max_request_line: must be at most 1mb, got 2mb");
    EXPECT_ERRORS(MIN_LISTEN "limits: { max_connections: 0 }\n",
                  "t.yaml:2:28: max_connections: must be greater than 0: no client could connect");
    EXPECT_ERRORS(MIN_LISTEN "limits: { max_body: [1] }\n",
                  "t.yaml:2:21: max_body: expected a size like 512b, 16kb, 10mb or 1gb, got a "
                  "list");
    EXPECT_ERRORS(MIN_LISTEN "limits: { send_timeout: }\n",
                  "t.yaml:2:25: send_timeout: expected a duration like 250ms, 5s, 15m, 1h or 1d, "
                  "got an empty value");
    EXPECT_ERRORS(MIN_LISTEN "limits: { header_timeout: 400d }\n",
                  "t.yaml:2:27: header_timeout: must be at most 365d, got 400d");
    EXPECT_ERRORS(MIN_LISTEN "limits: 5\n", "t.yaml:2:9: limits: expected a mapping, got '5'");
    EXPECT_ERRORS(MIN_LISTEN "log: { level: loud }\n",
                  "t.yaml:2:15: level: expected one of debug, info, warn, error, got 'loud'");
    EXPECT_ERRORS(MIN_LISTEN "log: { access: { enabled: yes } }\n",
                  "t.yaml:2:27: enabled: expected true or false, got 'yes'");
    EXPECT_ERRORS(MIN_LISTEN "log: { access: { sample: 1.5 } }\n",
                  "t.yaml:2:26: sample: must be between 0 and 1, got 1.5");
    EXPECT_ERRORS(MIN_LISTEN "log: { access: { sample: nan } }\n",
                  "t.yaml:2:26: sample: expected a number between 0 and 1 like 0.25, got 'nan'");
    EXPECT_ERRORS(MIN_LISTEN "shutdown: { timeout: 0 }\n",
                  "t.yaml:2:22: timeout: must be greater than 0: requests in flight would be cut "
                  "off at once");
    EXPECT_ERRORS(MIN_LISTEN "trusted_proxies: 10.0.0.0/8\n",
                  "t.yaml:2:18: trusted_proxies: expected a list of networks like 10.0.0.0/8, "
                  "got '10.0.0.0/8'");
    EXPECT_ERRORS(MIN_LISTEN "dns: { servers: [example.com], min_ttl: 10m, max_ttl: 5m }\n",
                  "t.yaml:2:18: expected a DNS server address like 10.0.0.2, 10.0.0.2:53 or "
                  "[::1]:53, got 'example.com'",
                  "t.yaml:2:41: dns.min_ttl (10m) is longer than dns.max_ttl (5m)");
    EXPECT_ERRORS(MIN_LISTEN "dns: { max_ttl: 500ms }\n",
                  "t.yaml:2:17: dns.min_ttl (1s) is longer than dns.max_ttl (500ms)");
}

TEST(key_errors)
{
    EXPECT_ERRORS(MIN_LISTEN "limits:\n  idle_timout: 5s\n",
                  "t.yaml:3:3: unknown key 'idle_timout' in limits (did you mean "
                  "'idle_timeout'?); valid keys: max_request_line, max_header_bytes, max_headers, "
                  "max_body, header_timeout, idle_timeout, body_timeout, send_timeout, "
                  "max_connections");
    EXPECT_ERRORS(
        MIN_LISTEN "password: x\n",
        "t.yaml:2:1: unknown key 'password' in the top level; valid keys: workers, "
        "listen, admin, limits, shutdown, websocket, cache, log, trusted_proxies, dns, services, "
        "routes, "
        "plans, consumers, anonymous, keys, ratelimit");
    EXPECT_ERRORS("workers: 2\n", "t.yaml:1:1: the top level is missing the required key 'listen'");
    EXPECT_ERRORS(
        MIN_LISTEN "\"a\\nb\\e\": 1\n",
        "t.yaml:2:1: unknown key 'a?b?' in the top level; valid keys: workers, listen, "
        "admin, limits, shutdown, websocket, cache, log, trusted_proxies, dns, services, routes, "
        "plans, "
        "consumers, anonymous, keys, ratelimit");
    EXPECT_ERRORS("listen: []\n",
                  "t.yaml:1:9: listen: at least one address is needed, like - addr: 0.0.0.0:8080");
    EXPECT_ERRORS("listen:\n  - adr: 1.2.3.4:80\n",
                  "t.yaml:2:5: unknown key 'adr' in a listen entry (did you mean 'addr'?); valid "
                  "keys: addr, tls",
                  "t.yaml:2:5: a listen entry is missing the required key 'addr'");
    EXPECT_ERRORS("listen:\n  - addr: 1.2.3.4:80\n    tls: { cert: /c }\n",
                  "t.yaml:3:10: listen tls is missing the required key 'key'");
    EXPECT_ERRORS(MIN_LISTEN "services:\n  s:\n    nodes: [ { url: http://h } ]\n"
                             "    health: { actve: {} }\n",
                  "t.yaml:5:15: unknown key 'actve' in health (did you mean 'active'?); valid "
                  "keys: active, passive, panic, slow_start");
}

TEST(listen_errors)
{
    EXPECT_ERRORS("listen: [ { addr: \"0.0.0.0:99999\" } ]\n",
                  "t.yaml:1:19: addr: bad port '99999' (expected 0 to 65535)");
    EXPECT_ERRORS("listen: [ { addr: 127.0.0.1:80 }, { addr: \"localhost:80\" } ]\n",
                  "t.yaml:1:35: listen: localhost:80 is already listed at line 1 column 11");
    EXPECT_ERRORS("listen: [ { addr: 127.0.0.1:9901 } ]\n",
                  "t.yaml:1:11: listen: 127.0.0.1:9901 is the default admin address; set "
                  "admin.addr to another port");
    EXPECT_ERRORS("listen: [ { addr: 127.0.0.1:80 } ]\nadmin: { addr: 127.0.0.1:80 }\n",
                  "t.yaml:2:16: admin.addr 127.0.0.1:80 is also a listen address (line 1); the "
                  "admin endpoints need a port of their own");
}

TEST(service_errors)
{
    EXPECT_ERRORS(MIN_LISTEN "services:\n"
                             "  s:\n"
                             "    kind: grpc\n"
                             "    nodes:\n"
                             "      - url: http://user:pw@10.0.0.1/x\n"
                             "      - url: http://10.0.0.2:0\n"
                             "      - url: \"https://[::1]:8443/base/?q\"\n"
                             "      - { url: http://10.0.0.3, weight: 0 }\n"
                             "      - { url: http://10.0.0.3, tier: 256 }\n"
                             "  empty: { nodes: [] }\n"
                             "  \"bad name!\":\n"
                             "    nodes: [ { url: http://h } ]\n"
                             "    tls: { verify: false }\n"
                             "  nourl: { nodes: [ { weight: 1 } ] }\n",
                  "t.yaml:4:11: kind: expected one of http, jsonrpc, got 'grpc'",
                  "t.yaml:6:21: url: a node URL cannot carry user:password@ credentials",
                  "t.yaml:7:30: url: bad port (expected 1 to 65535)",
                  "t.yaml:8:39: url: a node URL cannot have a query or a fragment",
                  "t.yaml:9:41: weight: must be greater than 0: a node of weight 0 would never be "
                  "chosen; remove it instead",
                  "t.yaml:10:9: service 's' lists node http://10.0.0.3 twice (first at line 9)",
                  "t.yaml:10:39: tier: must be at most 255, got 256",
                  "t.yaml:11:19: nodes: a service needs at least one node",
                  "t.yaml:12:7: a service name 'bad name!' may only contain letters, digits, "
                  "'-', '_' and '.'",
                  "t.yaml:14:5: service 'bad name!' has no https node, so its tls settings would "
                  "do nothing",
                  "t.yaml:15:21: a node is missing the required key 'url'");
    EXPECT_ERRORS(MIN_LISTEN "services: [a]\n",
                  "t.yaml:2:11: services: expected a mapping of service names to services, got a "
                  "list");
    EXPECT_ERRORS(MIN_LISTEN "services: { s: { nodes: [ { url: http://h } ], "
                             "pool: { idle_timeout: 0 } } }\n",
                  "t.yaml:2:70: idle_timeout: must be greater than 0: idle connections would be "
                  "closed at once; set max_idle: 0 to disable pooling");
}

#define SVC_S "services: { s: { nodes: [ { url: http://h } ] } }\n"

TEST(route_errors)
{
    EXPECT_ERRORS(MIN_LISTEN SVC_S
                  "routes:\n"
                  "  - name: a\n"
                  "    match: { methods: [GET, FETCH] }\n"
                  "    service: eht\n"
                  "  - name: a\n"
                  "    service: s\n"
                  "    max_body: 0\n"
                  "  - service: s\n"
                  "    match: { methods: [] }\n"
                  "  - name: c\n"
                  "    service: s\n"
                  "    cache: { query: { keep: [a], drop: [b] }, coalesce_timeout: 0 }\n"
                  "  - name: \"d e\"\n"
                  "    service: s\n"
                  "    match: { host: x, methods: GET }\n",
                  "t.yaml:5:29: methods: unknown method 'FETCH'; known methods: GET, HEAD, POST, "
                  "PUT, DELETE, OPTIONS, PATCH, TRACE, CONNECT",
                  "t.yaml:6:14: service: route 'a' uses service 'eht', which is not defined under "
                  "services",
                  "t.yaml:7:11: route name 'a' is already used by the route at line 4",
                  "t.yaml:9:15: max_body: must be greater than 0: leave max_body out to use "
                  "limits.max_body",
                  "t.yaml:10:5: a route is missing the required key 'name'",
                  "t.yaml:11:23: methods: an empty list matches no request; leave methods out to "
                  "allow any method",
                  "t.yaml:12:5: route 'c' has the same match as route 'a' (line 7), so it can "
                  "never be chosen",
                  "t.yaml:14:21: query: expected all, none, { keep: [names] } or { drop: [names] "
                  "}, got a mapping",
                  "t.yaml:14:65: coalesce_timeout: must be greater than 0: set coalesce: false to "
                  "turn coalescing off",
                  "t.yaml:15:13: a route name 'd e' may only contain letters, digits, '-', '_' "
                  "and '.'",
                  "t.yaml:17:32: methods: expected a list of methods like [GET, POST], got 'GET'");
    EXPECT_ERRORS(MIN_LISTEN SVC_S "routes: { a: 1 }\n",
                  "t.yaml:3:9: routes: expected a list of routes like - name: api, got a mapping");
}

/* Identity: limits that could never admit anything, and references that go nowhere. */
TEST(identity_errors)
{
    EXPECT_ERRORS(MIN_LISTEN SVC_S "plans:\n"
                                   "  big: { rate: 10/s, burst: 5, cost: 6 }\n"
                                   "  q: { quota: 3/d }\n"
                                   "  none: { burst: 4 }\n"
                                   "routes:\n"
                                   "  - name: a\n"
                                   "    service: s\n"
                                   "    limits: [{ rate: 5/s, by: consumer }]\n"
                                   "  - name: b\n"
                                   "    service: s\n"
                                   "    match: { path: /b }\n"
                                   "    cost: 4\n"
                                   "    auth: { api_key: { from: [header:x-key] }, plans: [q] }\n"
                                   "    limits: [plan]\n"
                                   "  - name: c\n"
                                   "    service: s\n"
                                   "    match: { path: /c }\n"
                                   "    cost: 9\n"
                                   "    limits: [{ rate: 100/s, burst: 8, by: client_ip }]\n",
                  "t.yaml:4:8: cost: 6 units per request is more than the plan allows at once "
                  "(burst 5), so every request would be refused",
                  "t.yaml:6:9: a limit needs a rate, a quota or both",
                  "t.yaml:10:14: limits: by: consumer needs auth on the route",
                  "t.yaml:14:11: cost: 4 units per request is more than plan 'q' allows at once "
                  "(quota 3), so every request would be refused",
                  "t.yaml:20:11: cost: 9 units per request is more than a limit of the route "
                  "allows at once (burst 8), so every request would be refused");
}

/* JSON-RPC sections: only on jsonrpc services and the routes to them. */
TEST(jsonrpc_errors)
{
    EXPECT_ERRORS(MIN_LISTEN
                  "services:\n"
                  "  eth:\n"
                  "    kind: jsonrpc\n"
                  "    nodes: [ { url: http://h } ]\n"
                  "    jsonrpc: { weights: { eth_getLogs: 0, \"a b\": 3 }, broadcast: 9 }\n"
                  "  web:\n"
                  "    nodes: [ { url: http://h } ]\n"
                  "    jsonrpc: { weights: { x: 1 } }\n"
                  "routes:\n"
                  "  - name: r\n"
                  "    service: eth\n"
                  "    jsonrpc:\n"
                  "      max_batch: 0\n"
                  "      routes: [ { methods: [trace_*], service: web } ]\n"
                  "  - name: w\n"
                  "    service: web\n"
                  "    match: { path: /w }\n"
                  "    jsonrpc: {}\n",
                  "t.yaml:6:40: weights: expected a whole number from 1 to 1000000, got '0'",
                  "t.yaml:6:43: weights: 'a b' is not a method name or pattern like eth_call or "
                  "debug_*",
                  "t.yaml:6:66: broadcast: must be at most 8, got 9",
                  "t.yaml:9:14: jsonrpc: service 'web' is not kind: jsonrpc",
                  "t.yaml:14:18: max_batch: must be at least 1, got 0",
                  "t.yaml:15:17: jsonrpc.routes: service 'web' is not kind: jsonrpc",
                  "t.yaml:19:14: jsonrpc: route 'w' goes to service 'web', which is not kind: "
                  "jsonrpc");
}

/* Pattern and template syntax is the router's; the loader must place its errors. */
TEST(route_pattern_positions)
{
    struct tg_config_errors errs = {0};
    struct tg_config *cf = load(MIN_LISTEN SVC_S "routes:\n"
                                                 "  - name: a\n"
                                                 "    match: { path: \"/v1/{key\" }\n"
                                                 "    service: s\n"
                                                 "    rewrite: { path: \"/{key}\" }\n"
                                                 "  - name: b\n"
                                                 "    match: { path: /b/ }\n"
                                                 "    service: s\n"
                                                 "    rewrite: { path: \"/{nope}\" }\n",
                                &errs);

    ASSERT(cf == NULL);
    ASSERT_EQ(2, errs.num);
    if (errs.num == 2) {
        /* The column points inside the quoted value, at or after the '{'. */
        ASSERT(strncmp(errs.msgs[0], "t.yaml:5:", 9) == 0);
        ASSERT(atoi(errs.msgs[0] + 9) >= 25 && atoi(errs.msgs[0] + 9) <= 29);
        ASSERT(strstr(errs.msgs[0], ": match.path: ") != NULL);
        ASSERT(strncmp(errs.msgs[1], "t.yaml:11:22: rewrite.path: ", 28) == 0);
    }
    tg_config_errors_dispose(&errs);
}

/* One file with many mistakes reports all of them, in file order. */
TEST(many_errors)
{
    EXPECT_ERRORS(
        "workers: many\n"
        "listen:\n"
        "  - addr: 0.0.0.0\n"
        "limits:\n"
        "  max_body: 10 mb\n"
        "  max_headers: -1\n"
        "log: { level: verbose }\n"
        "services:\n"
        "  api:\n"
        "    balance: random\n"
        "    nodes: [ { url: \"http://10.0.0.1:8080?x\" } ]\n"
        "routes:\n"
        "  - name: api\n"
        "    service: apii\n"
        "    timeout: 5s\n",
        "t.yaml:1:10: workers: expected auto or a number from 1 to 1024, got 'many'",
        "t.yaml:3:11: addr: expected host:port, [IPv6]:port or unix:/path, got "
        "'0.0.0.0'",
        "t.yaml:5:13: max_body: expected a size like 512b, 16kb, 10mb or 1gb, got '10 "
        "mb'",
        "t.yaml:6:16: max_headers: expected a whole number, got '-1'",
        "t.yaml:7:15: level: expected one of debug, info, warn, error, got 'verbose'",
        "t.yaml:10:14: balance: expected one of p2c_ewma, round_robin, "
        "least_outstanding, consistent_hash, got 'random'",
        "t.yaml:11:42: url: a node URL cannot have a query or a fragment",
        "t.yaml:14:14: service: route 'api' uses service 'apii', which is not defined "
        "under services",
        "t.yaml:15:5: unknown key 'timeout' in a route; valid keys: name, match, "
        "service, rewrite, max_body, idempotent, hedge, auth, limits, cost, jsonrpc, cache");
}

TEST(load_file)
{
    struct tg_config_errors errs = {0};

    ASSERT(tg_config_load("/nonexistent/tollgate.yaml", &errs) == NULL);
    ASSERT_EQ(1, errs.num);
    if (errs.num == 1)
        ASSERT_STREQ("/nonexistent/tollgate.yaml:1:1: cannot read: No such file or directory",
                     errs.msgs[0]);
    tg_config_errors_dispose(&errs);
}

TEST(examples_load)
{
    static const char *const files[] = {"examples/quickstart.yaml", "examples/rpc-gateway.yaml",
                                        "examples/site-portal.yaml", "examples/api.yaml"};

    unsetenv("PROVIDER_KEY");
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        struct tg_config_errors errs = {0};
        struct tg_config *cf = tg_config_load(files[i], &errs);

        for (size_t j = 0; j < errs.num; j++)
            UNIT_FAIL("%s", errs.msgs[j]);
        ASSERT(cf != NULL);
        if (cf != NULL && i == 1)
            ASSERT_STREQ("https://mainnet.provider.example/v3/demo", cf->services[0].nodes[2].url);
        tg_config_drop(cf);
        tg_config_errors_dispose(&errs);
    }
}

TEST(graph)
{
    struct tg_config_errors errs = {0};
    struct tg_config *cf = load("listen: [ { addr: 127.0.0.1:8080 }, { addr: \"[::1]:8080\" } ]\n"
                                "services:\n"
                                "  \"a.b\":\n"
                                "    nodes:\n"
                                "      - url: http://10.0.0.1:81/secret/key\n"
                                "      - { url: unix:/run/x.sock, tier: 1, weight: 3 }\n"
                                "  idle: { nodes: [ { url: http://h } ] }\n"
                                "routes:\n"
                                "  - name: r\n"
                                "    match: { host: \"{site}.example\", path: \"/x/\", "
                                "methods: [GET, POST] }\n"
                                "    service: a.b\n"
                                "    rewrite: { path: \"/s/{site}{path}\" }\n",
                                &errs);
    char *text = NULL;
    size_t len = 0;
    FILE *f;

    for (size_t j = 0; j < errs.num; j++)
        UNIT_FAIL("%s", errs.msgs[j]);
    ASSERT(cf != NULL);
    if (cf == NULL)
        return;
    f = open_memstream(&text, &len);
    tg_config_graph(cf, f);
    fclose(f);
    ASSERT_STREQ("flowchart LR\n"
                 "    L0[\"listen 127.0.0.1:8080\"]\n"
                 "    L1[\"listen [::1]:8080\"]\n"
                 "    A[\"admin 127.0.0.1:9901\"]\n"
                 "    R0[\"route r<br/>host {site}.example<br/>path /x/<br/>methods GET,POST"
                 "<br/>rewrite path /s/{site}{path}\"]\n"
                 "    S0[\"service a.b<br/>http, p2c_ewma\"]\n"
                 "    S0N0[\"http://10.0.0.1:81/...\"]\n"
                 "    S0N1[\"unix:/run/x.sock<br/>weight 3\"]\n"
                 "    S1[\"service idle<br/>http, p2c_ewma\"]\n"
                 "    S1N0[\"http://h\"]\n"
                 "    L0 --> R0\n"
                 "    L1 --> R0\n"
                 "    R0 --> S0\n"
                 "    S0 --> S0N0\n"
                 "    S0 -.->|\"tier 1\"| S0N1\n"
                 "    S1 --> S1N0\n",
                 text);
    free(text);
    tg_config_drop(cf);
}

int main(void)
{
    RUN(full_config_every_field);
    RUN(defaults);
    RUN(hash_and_refcount);
    RUN(env_expansion);
    RUN(env_expand_direct);
    RUN(units);
    RUN(addresses);
    RUN(node_urls);
    RUN(cidrs);
    RUN(yaml_errors);
    RUN(value_errors);
    RUN(key_errors);
    RUN(listen_errors);
    RUN(service_errors);
    RUN(route_errors);
    RUN(identity_errors);
    RUN(jsonrpc_errors);
    RUN(route_pattern_positions);
    RUN(many_errors);
    RUN(load_file);
    RUN(examples_load);
    RUN(graph);
    return unit_report();
}
