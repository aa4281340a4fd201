/*
 * The response cache (issue 7): the top-level cache section (the store's bounds) and a route's
 * cache section (freshness defaults, stale serving, coalescing, what goes into the key).
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "config/config_internal.h"
#include "core/core.h"

#define CACHE(field) offsetof(struct tg_cache_route_conf, field)

static const struct tg_conf_key store_keys[] = {
    {.name = "max_size",
     .type = TG_CT_SIZE,
     .offset = offsetof(struct tg_config, cache_max_size),
     .def = "256mb",
     .min = 1ull << 20,
     .max = 1ull << 40},
    {.name = "max_object",
     .type = TG_CT_SIZE,
     .offset = offsetof(struct tg_config, cache_max_object),
     .def = "8mb",
     .min = 1024,
     .max = 1ull << 32},
};
const struct tg_conf_section tg__conf_cache_section = TG_CONF_SECTION("cache", store_keys);

static void parse_params(struct tg_conf_loader *ld, const struct tg_ynode *v,
                         struct tg_cache_route_conf *c, enum tg_cache_query mode)
{
    c->query = mode;
    tg__conf_str_list(ld, v, &c->query_params, "query parameter names or patterns like utm_*",
                      NULL);
}

/* query: all | none | { keep: [...] } | { drop: [...] } */
static void parse_query(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_cache_route_conf *c = base;
    const struct tg_ynode *keep = tg_ynode_get(v, "keep"), *drop = tg_ynode_get(v, "drop");

    if (v->kind == TG_YNODE_SCALAR && strcmp(v->str, "all") == 0) {
        c->query = TG_CACHE_QUERY_ALL;
    } else if (v->kind == TG_YNODE_SCALAR && strcmp(v->str, "none") == 0) {
        c->query = TG_CACHE_QUERY_NONE;
    } else if (v->kind == TG_YNODE_MAP && v->num == 1 && (keep != NULL || drop != NULL)) {
        parse_params(ld, keep ? keep : drop, c, keep ? TG_CACHE_QUERY_KEEP : TG_CACHE_QUERY_DROP);
    } else {
        tg__conf_error(ld, v,
                       "query: expected all, none, { keep: [names] } or { drop: [names] }, got %s",
                       tg__conf_describe(ld, v));
    }
}

static const struct tg_conf_key route_keys[] = {
    {.name = "ttl", .type = TG_CT_DURATION, .offset = CACHE(ttl), .def = "60s", .max = 31536000000},
    {.name = "stale_while_revalidate",
     .type = TG_CT_DURATION,
     .offset = CACHE(stale_while_revalidate),
     .def = "0s",
     .max = 31536000000},
    {.name = "stale_if_error",
     .type = TG_CT_DURATION,
     .offset = CACHE(stale_if_error),
     .def = "0s",
     .max = 31536000000},
    {.name = "coalesce", .type = TG_CT_BOOL, .offset = CACHE(coalesce), .def = "true"},
    {.name = "coalesce_timeout",
     .type = TG_CT_DURATION,
     .offset = CACHE(coalesce_timeout),
     .def = "5s",
     .min = 1,
     .max = 600000,
     .why_min = "set coalesce: false to turn coalescing off"},
    {.name = "with_credentials",
     .type = TG_CT_BOOL,
     .offset = CACHE(with_credentials),
     .def = "false"},
    {.name = "query", .type = TG_CT_CUSTOM, .parse = parse_query},
    {.name = "realtime_ttl",
     .type = TG_CT_DURATION,
     .offset = CACHE(realtime_ttl),
     .def = "1s",
     .max = 3600000},
};
static const struct tg_conf_section route_section = TG_CONF_SECTION("cache", route_keys);

void tg__conf_route_cache(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_route_conf *r = base;

    r->cache = tg_conf_arena_alloc(ld->a, sizeof(*r->cache));
    tg__conf_defaults(ld, &route_section, r->cache);
    tg__conf_section(ld, &route_section, v, r->cache);
}
