/*
 * services: the named groups of backend nodes that routes send requests to, and the node URLs
 * (http://host[:port][/base], https://..., unix:/path).
 */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "config/config_internal.h"
#include "core/core.h"

#define SVC(field) offsetof(struct tg_service_conf, field)
#define DAY_MS     86400000ull
/* upstream.h TG_MAX_NODES: the balancer tracks tried nodes in a fixed bitmap */
#define TG_CONF_MAX_NODES 256

static bool is_host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* A DNS name: dot-separated labels of letters, digits, '-' and '_', at most 63 bytes each and
 * 253 in all, with an optional final dot. A name whose last label is all digits would be read as a
 * broken IPv4 address by resolvers, so it is refused instead of being resolved as something
 * unexpected. */
static int check_host_name(const char *h, size_t len, size_t *bad)
{
    size_t label = 0;
    bool digits = true;

    if (len == 0 || len > 253)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (h[i] == '.') {
            if (label == 0) {
                *bad = i;
                return -1;
            }
            label = 0;
            digits = true;
            continue;
        }
        if (!is_host_char(h[i]) || ++label > 63) {
            *bad = i;
            return -1;
        }
        digits = digits && h[i] >= '0' && h[i] <= '9';
    }
    if (digits && label > 0) {
        *bad = 0;
        return -1;
    }
    return 0;
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* RFC 3986 path characters: unreserved, sub-delims, ':', '@', '/' and %XX escapes. The base
 * path is sent upstream as is, so it must already be a valid request target (DESIGN §9.9). */
static size_t bad_path_char(const char *p, size_t len)
{
    static const char ok[] = "-._~!$&'()*+,;=:@/";

    for (size_t i = 0; i < len; i++) {
        char c = p[i];

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            continue;
        if (c != '\0' && strchr(ok, c) != NULL)
            continue;
        if (c == '%' && i + 2 < len && is_hex(p[i + 1]) && is_hex(p[i + 2])) {
            i += 2;
            continue;
        }
        return i;
    }
    return len;
}

static int url_error(char *err, size_t errlen, size_t *err_off, size_t off, const char *msg)
{
    snprintf(err, errlen, "%s", msg);
    *err_off = off;
    return -1;
}

static int parse_unix_url(struct tg_conf_arena *a, const char *url, struct tg_node_conf *node,
                          char *err, size_t errlen, size_t *err_off)
{
    if (tg_addr_parse(url, &node->addr, err, errlen) != 0) {
        *err_off = 5;
        return -1;
    }
    node->scheme = TG_SCHEME_UNIX;
    node->host = NULL;
    node->port = 0;
    /* Requests still need a Host header; a co-located service behind a socket gets the name
     * that HTTP clients use for the local machine. */
    node->authority = "localhost";
    node->base_path = "";
    (void)a;
    return 0;
}

int tg__conf_parse_node_url(struct tg_conf_arena *a, const char *url, struct tg_node_conf *node,
                            char *err, size_t errlen, size_t *err_off)
{
    size_t len = strlen(url), start, hstart, hlen, auth_end, i;
    unsigned port;
    bool v6 = false;
    char ip[64], err2[128];
    const char *p;

    node->url = url;
    if (strncmp(url, "unix:", 5) == 0)
        return parse_unix_url(a, url, node, err, errlen, err_off);
    if (strncasecmp(url, "http://", 7) == 0) {
        node->scheme = TG_SCHEME_HTTP;
        start = 7;
        port = 80;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        node->scheme = TG_SCHEME_HTTPS;
        start = 8;
        port = 443;
    } else {
        return url_error(err, errlen, err_off, 0,
                         "expected a node URL like http://10.0.0.1:8080, https://host/base or "
                         "unix:/run/app.sock");
    }
    if ((p = strpbrk(url, "?#")) != NULL)
        return url_error(err, errlen, err_off, (size_t)(p - url),
                         "a node URL cannot have a query or a fragment");
    for (auth_end = start; auth_end < len && url[auth_end] != '/'; auth_end++)
        if (url[auth_end] == '@')
            return url_error(err, errlen, err_off, start,
                             "a node URL cannot carry user:password@ credentials");
    hstart = start;
    if (url[start] == '[') {
        const char *close = memchr(url + start, ']', auth_end - start);

        if (close == NULL)
            return url_error(err, errlen, err_off, start, "'[' without a closing ']'");
        v6 = true;
        hstart = start + 1;
        hlen = (size_t)(close - url) - hstart;
        i = (size_t)(close - url) + 1;
    } else {
        for (i = start; i < auth_end && url[i] != ':'; i++)
            ;
        hlen = i - start;
    }
    if (hlen == 0)
        return url_error(err, errlen, err_off, start, "the node URL has no host");
    if (i < auth_end && url[i] != ':')
        return url_error(err, errlen, err_off, i, "expected ':' and a port after ']'");
    if (i < auth_end) {
        unsigned v = 0;
        size_t d;

        for (d = i + 1; d < auth_end && url[d] >= '0' && url[d] <= '9' && d - i <= 5; d++)
            v = v * 10 + (unsigned)(url[d] - '0');
        if (d == i + 1 || d != auth_end || v == 0 || v > 65535)
            return url_error(err, errlen, err_off, i + 1, "bad port (expected 1 to 65535)");
        port = v;
    }
    node->port = (uint16_t)port;
    node->host = tg_conf_arena_strndup(a, url + hstart, hlen);
    if (v6) {
        unsigned char tmp[16];

        if (hlen >= sizeof(ip) || inet_pton(AF_INET6, node->host, tmp) != 1)
            return url_error(err, errlen, err_off, hstart, "not a valid IPv6 address");
        node->host_is_ip = true;
    } else {
        unsigned char tmp[4];
        size_t bad = 0;

        if (inet_pton(AF_INET, node->host, tmp) == 1)
            node->host_is_ip = true;
        else if (check_host_name(node->host, hlen, &bad) != 0)
            return url_error(err, errlen, err_off, hstart + bad, "not a valid host name");
    }
    if (node->host_is_ip) {
        snprintf(ip, sizeof(ip), v6 ? "[%s]:%u" : "%s:%u", node->host, port);
        if (tg_addr_parse(ip, &node->addr, err2, sizeof(err2)) != 0)
            return url_error(err, errlen, err_off, hstart, err2);
    }
    if (port == (node->scheme == TG_SCHEME_HTTPS ? 443u : 80u))
        node->authority = v6 ? tg_conf_arena_printf(a, "[%s]", node->host) : node->host;
    else
        node->authority = tg_conf_arena_printf(a, v6 ? "[%s]:%u" : "%s:%u", node->host, port);
    i = bad_path_char(url + auth_end, len - auth_end);
    if (i != len - auth_end)
        return url_error(err, errlen, err_off, auth_end + i,
                         "character not allowed in a URL path (use %XX escapes)");
    /* The base is joined with request paths that start with '/', so it keeps no trailing one. */
    while (len > auth_end && url[len - 1] == '/')
        len--;
    node->base_path = tg_conf_arena_strndup(a, url + auth_end, len - auth_end);
    return 0;
}

static void parse_url(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_node_conf *node = base;
    char err[256];
    size_t off = 0;

    if (!tg__conf_scalar(ld, v, "a URL like http://10.0.0.1:8080"))
        return;
    if (tg__conf_parse_node_url(ld->a, tg__conf_strdup(ld, v), node, err, sizeof(err), &off) != 0) {
        tg__conf_error_in(ld, v, off, "url: %s", err);
        node->url = NULL;
    }
}

static const struct tg_conf_key node_keys[] = {
    {.name = "url", .type = TG_CT_CUSTOM, .flags = TG_CK_REQUIRED, .parse = parse_url},
    {.name = "weight",
     .type = TG_CT_UINT32,
     .offset = offsetof(struct tg_node_conf, weight),
     .def = "1",
     .min = 1,
     .max = 10000,
     .why_min = "a node of weight 0 would never be chosen; remove it instead"},
    {.name = "tier",
     .type = TG_CT_UINT32,
     .offset = offsetof(struct tg_node_conf, tier),
     .def = "0",
     .max = 255},
    {.name = "max_connections",
     .type = TG_CT_UINT32,
     .offset = offsetof(struct tg_node_conf, max_connections),
     .def = "0",
     .max = 10000000},
    {.name = "drain",
     .type = TG_CT_BOOL,
     .offset = offsetof(struct tg_node_conf, drain),
     .def = "false"},
};
static const struct tg_conf_section node_section = TG_CONF_SECTION("a node", node_keys);

struct dup_ctx {
    struct tg_conf_loader *ld;
    const struct tg_service_conf *svc;
};

static void dup_node(void *ctx, size_t later, size_t first)
{
    const struct dup_ctx *d = ctx;
    const struct tg_node_conf *n = &d->svc->nodes[later];

    tg__conf_error_at(d->ld, n->pos.line, n->pos.col,
                      "service '%s' lists node %s twice (first at line %d)", d->svc->name, n->url,
                      d->svc->nodes[first].pos.line);
}

static void parse_nodes(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_service_conf *svc = base;
    const struct tg_ynode *item = tg__conf_list(ld, v, "nodes like - url: http://10.0.0.1:8080");
    const char **urls;
    struct dup_ctx d = {ld, svc};
    size_t i = 0;

    if (item == NULL) {
        if (v->kind == TG_YNODE_SEQ || v->is_null)
            tg__conf_error(ld, v, "nodes: a service needs at least one node");
        return;
    }
    svc->nodes = tg_conf_arena_array(ld->a, v->num, sizeof(*svc->nodes));
    urls = tg_conf_arena_array(ld->a, v->num, sizeof(*urls));
    for (; item != NULL; item = item->next, i++) {
        struct tg_node_conf *n = &svc->nodes[i];

        n->pos = (struct tg_conf_pos){ld->file, item->line, item->col};
        tg__conf_defaults(ld, &node_section, n);
        tg__conf_section(ld, &node_section, item, n);
        urls[i] = n->url ? n->url : tg_conf_arena_printf(ld->a, "\x01%zu", i);
    }
    svc->num_nodes = i;
    if (i > TG_CONF_MAX_NODES)
        tg__conf_error(ld, v, "nodes: a service has at most %d nodes, this one has %zu",
                       TG_CONF_MAX_NODES, i);
    tg__conf_find_dups(urls, i, dup_node, &d);
}

static const char *const service_kinds[] = {"http", "jsonrpc", NULL};
static const char *const balancers[] = {"p2c_ewma", "round_robin", "least_outstanding",
                                        "consistent_hash", NULL};

#define ZERO_TIMEOUT "a zero timeout would expire at once"

static const struct tg_conf_key timeouts_keys[] = {
    {.name = "connect",
     .type = TG_CT_DURATION,
     .offset = SVC(connect_timeout),
     .def = "2s",
     .min = 1,
     .max = 365 * DAY_MS,
     .why_min = ZERO_TIMEOUT},
    {.name = "response",
     .type = TG_CT_DURATION,
     .offset = SVC(response_timeout),
     .def = "30s",
     .min = 1,
     .max = 365 * DAY_MS,
     .why_min = ZERO_TIMEOUT},
};
static const struct tg_conf_section timeouts_section = TG_CONF_SECTION("timeouts", timeouts_keys);

static const struct tg_conf_key pool_keys[] = {
    {.name = "max_idle",
     .type = TG_CT_UINT32,
     .offset = SVC(pool_max_idle),
     .def = "64",
     .max = 100000},
    {.name = "idle_timeout",
     .type = TG_CT_DURATION,
     .offset = SVC(pool_idle_timeout),
     .def = "60s",
     .min = 1,
     .max = 365 * DAY_MS,
     .why_min = "idle connections would be closed at once; set max_idle: 0 to disable pooling"},
};
static const struct tg_conf_section pool_section = TG_CONF_SECTION("pool", pool_keys);

static const struct tg_conf_key svc_tls_keys[] = {
    {.name = "verify", .type = TG_CT_BOOL, .offset = SVC(tls_verify), .def = "true"},
    {.name = "ca", .type = TG_CT_STRING, .offset = SVC(tls_ca)},
    {.name = "sni", .type = TG_CT_STRING, .offset = SVC(tls_sni)},
};
static const struct tg_conf_section svc_tls_section = TG_CONF_SECTION("tls", svc_tls_keys);

static const struct tg_conf_key service_keys[] = {
    {.name = "kind",
     .type = TG_CT_ENUM,
     .offset = SVC(kind),
     .def = "http",
     .names = service_kinds},
    {.name = "balance",
     .type = TG_CT_ENUM,
     .offset = SVC(balance),
     .def = "p2c_ewma",
     .names = balancers},
    {.name = "nodes", .type = TG_CT_CUSTOM, .flags = TG_CK_REQUIRED, .parse = parse_nodes},
    {.name = "timeouts", .type = TG_CT_SECTION, .sub = &timeouts_section},
    {.name = "pool", .type = TG_CT_SECTION, .sub = &pool_section},
    {.name = "tls", .type = TG_CT_SECTION, .sub = &svc_tls_section},
    {.name = "health",
     .type = TG_CT_SECTION,
     .offset = SVC(health),
     .sub = &tg__conf_health_section},
    {.name = "retry", .type = TG_CT_SECTION, .offset = SVC(retry), .sub = &tg__conf_retry_section},
    {.name = "hash", .type = TG_CT_SECTION, .sub = &tg__conf_hash_section},
    {.name = "concurrency", .type = TG_CT_SECTION, .sub = &tg__conf_concurrency_section},
    {.name = "jsonrpc", .type = TG_CT_CUSTOM, .parse = tg__conf_service_jsonrpc},
};
static const struct tg_conf_section service_section = TG_CONF_SECTION("a service", service_keys);

/* Names appear in metric labels, logs and graph ids, so they stay plain. */
bool tg__conf_check_name(struct tg_conf_loader *ld, const struct tg_ynode *n, const char *what)
{
    size_t i;

    for (i = 0; i < n->len; i++) {
        char c = n->str[i];

        if (!is_host_char(c) && c != '.')
            break;
    }
    if (n->len > 0 && n->len <= 64 && i == n->len)
        return true;
    if (n->len == 0 || n->len > 64)
        tg__conf_error(ld, n, "%s name must be 1 to 64 characters long", what);
    else
        tg__conf_error_in(ld, n, i,
                          "%s name '%s' may only contain letters, digits, '-', '_' and '.'", what,
                          n->str);
    return false;
}

void tg__conf_services(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_config *cf = base;
    size_t i = 0;

    if (v->kind == TG_YNODE_SCALAR && v->is_null)
        return;
    if (v->kind != TG_YNODE_MAP) {
        tg__conf_error(ld, v, "services: expected a mapping of service names to services, got %s",
                       tg__conf_describe(ld, v));
        return;
    }
    cf->services = tg_conf_arena_array(ld->a, v->num, sizeof(*cf->services));
    for (const struct tg_ynode *c = v->first; c != NULL; c = c->next, i++) {
        struct tg_service_conf *svc = &cf->services[i];
        const struct tg_ynode *tls = tg_ynode_get(c, "tls");

        svc->name = tg__conf_strdup(ld, c->key);
        svc->pos = (struct tg_conf_pos){ld->file, c->key->line, c->key->col};
        tg__conf_check_name(ld, c->key, "a service");
        tg__conf_defaults(ld, &service_section, svc);
        tg__conf_resilience_defaults(svc);
        tg__conf_service_jsonrpc_defaults(ld, svc);
        if (!tg__conf_section(ld, &service_section, c, svc))
            continue;
        tg__conf_resilience_check(ld, c, svc);
        if (tg_ynode_get(c, "jsonrpc") != NULL && svc->kind != TG_SERVICE_JSONRPC)
            tg__conf_error(ld, tg_ynode_get(c, "jsonrpc"),
                           "jsonrpc: service '%s' is not kind: jsonrpc", svc->name);
        if (tls == NULL)
            continue;
        for (size_t k = 0; k < svc->num_nodes; k++)
            if (svc->nodes[k].scheme == TG_SCHEME_HTTPS || svc->nodes[k].url == NULL)
                goto next;
        tg__conf_error(ld, tls->key,
                       "service '%s' has no https node, so its tls settings would do nothing",
                       svc->name);
    next:;
    }
    cf->num_services = i;
}
