/*
 * The top level of the configuration: workers, listen, admin, limits, shutdown, log,
 * trusted_proxies and dns. Services and routes have files of their own.
 */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "config/config_internal.h"
#include "config/units.h"
#include "core/core.h"

#define KB          1024ull
#define MB          (1024ull * 1024)
#define DAY_MS      86400000ull
#define MAX_TIMEOUT (365 * DAY_MS) /* keeps "now + timeout" far from overflowing */

#define OFF(field) offsetof(struct tg_config, field)

static void parse_workers(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_config *cf = base;
    uint64_t n;
    char err[128];

    if (v->invalid)
        return;
    if (v->kind == TG_YNODE_SCALAR && strcmp(v->str, "auto") == 0) {
        cf->workers = 0;
        return;
    }
    if (v->kind != TG_YNODE_SCALAR ||
        tg_units_parse_uint(tg_str_make(v->str, v->len), &n, err, sizeof(err)) != 0 || n < 1 ||
        n > 1024) {
        tg__conf_error(ld, v, "workers: expected auto or a number from 1 to 1024, got %s",
                       tg__conf_describe(ld, v));
        return;
    }
    cf->workers = (uint32_t)n;
}

static const struct tg_conf_key listen_tls_keys[] = {
    {.name = "cert",
     .type = TG_CT_STRING,
     .flags = TG_CK_REQUIRED,
     .offset = offsetof(struct tg_listen_conf, tls_cert)},
    {.name = "key",
     .type = TG_CT_STRING,
     .flags = TG_CK_REQUIRED,
     .offset = offsetof(struct tg_listen_conf, tls_key)},
};
static const struct tg_conf_section listen_tls = TG_CONF_SECTION("listen tls", listen_tls_keys);

static const struct tg_conf_key listen_keys[] = {
    {.name = "addr",
     .type = TG_CT_ADDR,
     .flags = TG_CK_REQUIRED,
     .offset = offsetof(struct tg_listen_conf, addr_text),
     .offset2 = offsetof(struct tg_listen_conf, addr)},
    {.name = "tls", .type = TG_CT_SECTION, .sub = &listen_tls},
};
static const struct tg_conf_section listen_section = TG_CONF_SECTION("a listen entry", listen_keys);

static void parse_listen(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_config *cf = base;
    const struct tg_ynode *item = tg__conf_list(ld, v, "{addr: ...} entries");
    size_t i = 0;

    if (item == NULL) {
        if (v->kind == TG_YNODE_SEQ || v->is_null)
            tg__conf_error(ld, v,
                           "listen: at least one address is needed, like "
                           "- addr: 0.0.0.0:8080");
        return;
    }
    cf->listens = tg_conf_arena_array(ld->a, v->num, sizeof(*cf->listens));
    for (; item != NULL; item = item->next) {
        struct tg_listen_conf *l = &cf->listens[i++];

        l->pos = (struct tg_conf_pos){ld->file, item->line, item->col};
        tg__conf_section(ld, &listen_section, item, l);
    }
    cf->num_listens = i;
}

static const struct tg_conf_key admin_keys[] = {
    {.name = "addr",
     .type = TG_CT_ADDR,
     .offset = OFF(admin_addr_text),
     .offset2 = OFF(admin_addr),
     .def = "127.0.0.1:9901"},
    {.name = "stuck_after",
     .type = TG_CT_DURATION,
     .offset = OFF(stuck_after),
     .def = "5s",
     .min = 1000,
     .max = 3600 * 1000},
};
static const struct tg_conf_section admin_section = TG_CONF_SECTION("admin", admin_keys);

#define LIM(field)   offsetof(struct tg_limits_conf, field)
#define ZERO_TIMEOUT "a zero timeout would expire at once"

static const struct tg_conf_key limits_keys[] = {
    {.name = "max_request_line",
     .type = TG_CT_SIZE,
     .offset = LIM(max_request_line),
     .def = "8kb",
     .min = 16,
     .max = MB,
     .why_min = "no request line is shorter than \"GET / HTTP/1.1\""},
    {.name = "max_header_bytes",
     .type = TG_CT_SIZE,
     .offset = LIM(max_header_bytes),
     .def = "32kb",
     .min = 64,
     .max = 16 * MB,
     .why_min = "a request needs room for at least a Host header"},
    {.name = "max_headers",
     .type = TG_CT_UINT32,
     .offset = LIM(max_headers),
     .def = "100",
     .min = 1,
     .max = 10000,
     .why_min = "every HTTP/1.1 request carries at least a Host header"},
    {.name = "max_body",
     .type = TG_CT_SIZE,
     .offset = LIM(max_body),
     .def = "10mb",
     .min = 0,
     .max = UINT64_MAX},
    {.name = "header_timeout",
     .type = TG_CT_DURATION,
     .offset = LIM(header_timeout),
     .def = "10s",
     .min = 1,
     .max = MAX_TIMEOUT,
     .why_min = ZERO_TIMEOUT},
    {.name = "idle_timeout",
     .type = TG_CT_DURATION,
     .offset = LIM(idle_timeout),
     .def = "60s",
     .min = 1,
     .max = MAX_TIMEOUT,
     .why_min = ZERO_TIMEOUT},
    {.name = "body_timeout",
     .type = TG_CT_DURATION,
     .offset = LIM(body_timeout),
     .def = "60s",
     .min = 1,
     .max = MAX_TIMEOUT,
     .why_min = ZERO_TIMEOUT},
    {.name = "send_timeout",
     .type = TG_CT_DURATION,
     .offset = LIM(send_timeout),
     .def = "60s",
     .min = 1,
     .max = MAX_TIMEOUT,
     .why_min = ZERO_TIMEOUT},
    {.name = "max_connections",
     .type = TG_CT_UINT32,
     .offset = LIM(max_connections),
     .def = "10000",
     .min = 1,
     .max = 10000000,
     .why_min = "no client could connect"},
};
static const struct tg_conf_section limits_section = TG_CONF_SECTION("limits", limits_keys);

static const struct tg_conf_key shutdown_keys[] = {
    {.name = "drain_delay",
     .type = TG_CT_DURATION,
     .offset = OFF(drain_delay),
     .def = "5s",
     .max = MAX_TIMEOUT},
    {.name = "timeout",
     .type = TG_CT_DURATION,
     .offset = OFF(shutdown_timeout),
     .def = "25s",
     .min = 1,
     .max = MAX_TIMEOUT,
     .why_min = "requests in flight would be cut off at once"},
};
static const struct tg_conf_section shutdown_section = TG_CONF_SECTION("shutdown", shutdown_keys);

static const struct tg_conf_key websocket_keys[] = {
    {.name = "idle_timeout",
     .type = TG_CT_DURATION,
     .offset = OFF(ws_idle_timeout),
     .def = "5m",
     .min = 1,
     .max = 86400000,
     .why_min = "a tunnel would close at once"},
    {.name = "max_message",
     .type = TG_CT_SIZE,
     .offset = OFF(ws_max_message),
     .def = "1mb",
     .min = 128,
     .max = 64ull << 20},
};
static const struct tg_conf_section websocket_section =
    TG_CONF_SECTION("websocket", websocket_keys);

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};

static const struct tg_conf_key access_keys[] = {
    {.name = "enabled", .type = TG_CT_BOOL, .offset = OFF(access_log), .def = "true"},
    {.name = "sample", .type = TG_CT_FRACTION, .offset = OFF(access_sample), .def = "1.0"},
    {.name = "slow",
     .type = TG_CT_DURATION,
     .offset = OFF(access_slow),
     .def = "1s",
     .max = MAX_TIMEOUT},
    {.name = "buffer",
     .type = TG_CT_SIZE,
     .offset = OFF(access_buffer),
     .def = "1mb",
     .min = 64 * 1024,
     .max = 256ull << 20},
};
static const struct tg_conf_section access_section = TG_CONF_SECTION("log.access", access_keys);

static const struct tg_conf_key log_keys[] = {
    {.name = "level",
     .type = TG_CT_ENUM,
     .offset = OFF(log_level),
     .def = "info",
     .names = log_levels},
    {.name = "access", .type = TG_CT_SECTION, .sub = &access_section},
};
static const struct tg_conf_section log_section = TG_CONF_SECTION("log", log_keys);

/* Host bits set under the mask ("10.0.0.1/8") almost always mean a typo of the network. */
int tg__conf_check_cidr(const char *s, char *err, size_t errlen)
{
    unsigned char addr[16];
    char ip[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(s, '/');
    size_t iplen = slash ? (size_t)(slash - s) : strlen(s);
    int family, bits;
    unsigned prefix = 0;

    if (iplen == 0 || iplen >= sizeof(ip))
        goto bad;
    memcpy(ip, s, iplen);
    ip[iplen] = '\0';
    family = strchr(ip, ':') ? AF_INET6 : AF_INET;
    bits = family == AF_INET6 ? 128 : 32;
    if (inet_pton(family, ip, addr) != 1)
        goto bad;
    if (slash == NULL) {
        prefix = (unsigned)bits;
    } else {
        const char *p = slash + 1;

        if (*p == '\0' || strlen(p) > 3)
            goto bad;
        for (; *p >= '0' && *p <= '9'; p++)
            prefix = prefix * 10 + (unsigned)(*p - '0');
        if (*p != '\0' || prefix > (unsigned)bits) {
            snprintf(err, errlen, "bad prefix length in '%s' (0 to %d for IPv%d)", s, bits,
                     family == AF_INET6 ? 6 : 4);
            return -1;
        }
    }
    for (unsigned b = prefix; b < (unsigned)bits; b++) {
        if (addr[b / 8] & (0x80 >> (b % 8))) {
            char net[INET6_ADDRSTRLEN];

            for (unsigned c = prefix; c < (unsigned)bits; c++)
                addr[c / 8] &= (unsigned char)~(0x80 >> (c % 8));
            inet_ntop(family, addr, net, sizeof(net));
            snprintf(err, errlen, "'%s' has bits set after the /%u prefix; did you mean %s/%u?", s,
                     prefix, net, prefix);
            return -1;
        }
    }
    return 0;
bad:
    snprintf(err, errlen, "expected an IPv4 or IPv6 network like 10.0.0.0/8 or fd00::/8, got '%s'",
             s);
    return -1;
}

void tg__conf_str_list(struct tg_conf_loader *ld, const struct tg_ynode *v, struct tg_str_list *out,
                       const char *what, int (*check)(const char *, char *, size_t))
{
    const struct tg_ynode *item = tg__conf_list(ld, v, what);

    if (item == NULL)
        return;
    out->items = tg_conf_arena_array(ld->a, v->num, sizeof(*out->items));
    for (; item != NULL; item = item->next) {
        char err[256];

        if (!tg__conf_scalar(ld, item, what))
            continue;
        if (check != NULL && check(item->str, err, sizeof(err)) != 0) {
            tg__conf_error(ld, item, "%s", err);
            continue;
        }
        out->items[out->num++] = tg__conf_strdup(ld, item);
    }
}

static void parse_trusted(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    tg__conf_str_list(ld, v, &((struct tg_config *)base)->trusted_proxies,
                      "networks like 10.0.0.0/8", tg__conf_check_cidr);
}

/* A DNS server is an IP address with an optional port: "10.0.0.2", "10.0.0.2:5353", "::1" or
 * "[::1]:5353". Names are refused: resolving the resolver would need a resolver. */
static int check_dns_server(const char *s, char *err, size_t errlen)
{
    unsigned char addr[16];
    char buf[80];
    struct tg_addr a;

    if (inet_pton(AF_INET, s, addr) == 1 || inet_pton(AF_INET6, s, addr) == 1)
        return 0;
    if (strchr(s, ':') != NULL && tg_addr_parse(s, &a, buf, sizeof(buf)) == 0 &&
        !tg_addr_is_unix(&a) && strncasecmp(s, "localhost", 9) != 0) {
        if (((struct sockaddr_in *)&a.ss)->sin_port != 0)
            return 0;
    }
    snprintf(err, errlen,
             "expected a DNS server address like 10.0.0.2, 10.0.0.2:53 or [::1]:53, "
             "got '%s'",
             s);
    return -1;
}

static void parse_dns_servers(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    tg__conf_str_list(ld, v, &((struct tg_config *)base)->dns_servers, "addresses like 10.0.0.2:53",
                      check_dns_server);
}

static const struct tg_conf_key dns_keys[] = {
    {.name = "servers", .type = TG_CT_CUSTOM, .parse = parse_dns_servers},
    {.name = "min_ttl",
     .type = TG_CT_DURATION,
     .offset = OFF(dns_min_ttl),
     .def = "1s",
     .max = MAX_TIMEOUT},
    {.name = "max_ttl",
     .type = TG_CT_DURATION,
     .offset = OFF(dns_max_ttl),
     .def = "300s",
     .min = 1,
     .max = MAX_TIMEOUT,
     .why_min = "every request would wait for a DNS query"},
    {.name = "timeout",
     .type = TG_CT_DURATION,
     .offset = OFF(dns_timeout),
     .def = "2s",
     .min = 1,
     .max = MAX_TIMEOUT,
     .why_min = ZERO_TIMEOUT},
};
static const struct tg_conf_section dns_section = TG_CONF_SECTION("dns", dns_keys);

static const struct tg_conf_key top_keys[] = {
    {.name = "workers", .type = TG_CT_CUSTOM, .parse = parse_workers, .def = "auto"},
    {.name = "listen", .type = TG_CT_CUSTOM, .flags = TG_CK_REQUIRED, .parse = parse_listen},
    {.name = "admin", .type = TG_CT_SECTION, .sub = &admin_section},
    {.name = "limits", .type = TG_CT_SECTION, .offset = OFF(limits), .sub = &limits_section},
    {.name = "shutdown", .type = TG_CT_SECTION, .sub = &shutdown_section},
    {.name = "websocket", .type = TG_CT_SECTION, .sub = &websocket_section},
    {.name = "cache", .type = TG_CT_SECTION, .sub = &tg__conf_cache_section},
    {.name = "log", .type = TG_CT_SECTION, .sub = &log_section},
    {.name = "trusted_proxies", .type = TG_CT_CUSTOM, .parse = parse_trusted},
    {.name = "dns", .type = TG_CT_SECTION, .sub = &dns_section},
    {.name = "services", .type = TG_CT_CUSTOM, .parse = tg__conf_services},
    {.name = "routes", .type = TG_CT_CUSTOM, .parse = tg__conf_routes},
    {.name = "plans", .type = TG_CT_CUSTOM, .parse = tg__conf_plans},
    {.name = "consumers", .type = TG_CT_CUSTOM, .parse = tg__conf_consumers},
    {.name = "anonymous", .type = TG_CT_CUSTOM, .parse = tg__conf_anonymous},
    {.name = "keys", .type = TG_CT_SECTION, .sub = &tg__conf_keys_section},
    {.name = "ratelimit", .type = TG_CT_SECTION, .sub = &tg__conf_ratelimit_section},
};
const struct tg_conf_section tg__conf_top = TG_CONF_SECTION("the top level", top_keys);

static void dup_listen(void *ctx, size_t later, size_t first)
{
    struct tg_conf_loader *ld = ctx;
    const struct tg_listen_conf *l = &ld->cf->listens[later], *f = &ld->cf->listens[first];

    tg__conf_error_at(ld, l->pos.line, l->pos.col,
                      "listen: %s is already listed at line %d column %d", l->addr_text,
                      f->pos.line, f->pos.col);
}

/* Cross-checks of the top level that need more than one key. */
void tg__conf_check_top(struct tg_conf_loader *ld)
{
    struct tg_config *cf = ld->cf;
    const char **keys;
    char buf[128];
    size_t n = 0;

    keys = tg_conf_arena_array(ld->a, cf->num_listens + 1, sizeof(*keys));
    for (size_t i = 0; i < cf->num_listens; i++) {
        const struct tg_listen_conf *l = &cf->listens[i];

        if (l->addr.len == 0) {
            keys[i] = tg_conf_arena_printf(ld->a, "(unset %zu)", i);
            continue;
        }
        /* Formatting normalises spellings ("localhost:80" and "127.0.0.1:80" are one port). */
        keys[i] = tg_conf_arena_strdup(ld->a, tg_addr_format(&l->addr, buf, sizeof(buf)));
        n++;
        if (cf->admin_addr.len != 0 && cf->admin_addr.len == l->addr.len &&
            memcmp(&cf->admin_addr.ss, &l->addr.ss, l->addr.len) == 0) {
            const struct tg_ynode *at = tg_ynode_get(tg_ynode_get(ld->root, "admin"), "addr");

            if (at != NULL)
                tg__conf_error(ld, at,
                               "admin.addr %s is also a listen address (line %d); the admin "
                               "endpoints need a port of their own",
                               cf->admin_addr_text, l->pos.line);
            else
                tg__conf_error_at(ld, l->pos.line, l->pos.col,
                                  "listen: %s is the default admin address; set admin.addr to "
                                  "another port",
                                  l->addr_text);
        }
    }
    if (n > 1)
        tg__conf_find_dups(keys, cf->num_listens, dup_listen, ld);
    if (cf->dns_min_ttl > cf->dns_max_ttl) {
        const struct tg_ynode *dns = tg_ynode_get(ld->root, "dns");
        const struct tg_ynode *at = tg_ynode_get(dns, "min_ttl");
        char a[32], b[32];

        if (at == NULL)
            at = tg_ynode_get(dns, "max_ttl");
        tg__conf_error(ld, at != NULL ? at : ld->root,
                       "dns.min_ttl (%s) is longer than dns.max_ttl (%s)",
                       tg_units_format_duration(cf->dns_min_ttl, a, sizeof(a)),
                       tg_units_format_duration(cf->dns_max_ttl, b, sizeof(b)));
    }
}
