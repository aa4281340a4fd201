/*
 * routes: which requests go to which service. Pattern and template syntax belongs to the router
 * (src/router/router.h); this file only hands each one to the router's checker and turns its
 * answer into a positioned error.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config_internal.h"
#include "core/core.h"
#include "http/h1.h"
#include "router/router.h"

#define ROUTE(field) offsetof(struct tg_route_conf, field)

static void parse_name(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_route_conf *r = base;

    if (tg__conf_scalar(ld, v, "a route name") && tg__conf_check_name(ld, v, "a route")) {
        r->name = tg__conf_strdup(ld, v);
        ld->route_aux[r - ld->cf->routes].name = v;
    }
}

static void parse_pattern(struct tg_conf_loader *ld, const struct tg_ynode *v, int is_host,
                          const char **field)
{
    char err[256];
    size_t off = 0;

    if (!tg__conf_scalar(ld, v,
                         is_host ? "a host pattern like api.example.com or *.example.com"
                                 : "a path pattern like /api/ or /v1/{key}"))
        return;
    err[0] = '\0';
    if (tg_router_pattern_check(v->str, is_host, err, sizeof(err), &off) != 0) {
        tg__conf_error_in(ld, v, off, "match.%s: %s", is_host ? "host" : "path",
                          err[0] ? err : "invalid pattern");
        return;
    }
    *field = tg__conf_strdup(ld, v);
}

static void parse_host(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    parse_pattern(ld, v, 1, &((struct tg_route_conf *)base)->host);
}

static void parse_path(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    parse_pattern(ld, v, 0, &((struct tg_route_conf *)base)->path);
}

static void parse_methods(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_route_conf *r = ((struct tg_route_conf *)base);
    const struct tg_ynode *item = tg__conf_list(ld, v, "methods like [GET, POST]");

    if (item == NULL) {
        if (v->kind == TG_YNODE_SEQ)
            tg__conf_error(ld, v,
                           "methods: an empty list matches no request; leave methods out "
                           "to allow any method");
        return;
    }
    for (; item != NULL; item = item->next) {
        int m;

        if (!tg__conf_scalar(ld, item, "a method like GET"))
            continue;
        /* Methods are case-sensitive on the wire, but "get" in a config can only mean GET. */
        for (m = 1; m < TG_METHOD__COUNT; m++)
            if (strcasecmp(item->str, tg_http_method_names[m]) == 0)
                break;
        if (m == TG_METHOD__COUNT) {
            tg__conf_error(ld, item,
                           "methods: unknown method '%s'; known methods: GET, HEAD, POST, PUT, "
                           "DELETE, OPTIONS, PATCH, TRACE, CONNECT",
                           item->str);
            continue;
        }
        r->methods |= 1u << m;
    }
}

static void parse_service(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_route_conf *r = ((struct tg_route_conf *)base);

    if (!tg__conf_scalar(ld, v, "a service name"))
        return;
    r->service = tg__conf_strdup(ld, v);
    ld->route_aux[r - ld->cf->routes].service = v;
}

static const struct tg_conf_key match_keys[] = {
    {.name = "host", .type = TG_CT_CUSTOM, .parse = parse_host},
    {.name = "path", .type = TG_CT_CUSTOM, .parse = parse_path},
    {.name = "methods", .type = TG_CT_CUSTOM, .parse = parse_methods},
};
static const struct tg_conf_section match_section = TG_CONF_SECTION("match", match_keys);

static void parse_match(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_route_conf *r = base;
    size_t before = ld->num_errs + ld->dropped_errs;

    if (!tg__conf_section(ld, &match_section, v, base) || ld->num_errs + ld->dropped_errs != before)
        ld->route_aux[r - ld->cf->routes].match_bad = true;
}

static const struct tg_conf_key rewrite_keys[] = {
    {.name = "path", .type = TG_CT_STRING, .offset = ROUTE(rewrite_path)},
    {.name = "host", .type = TG_CT_STRING, .offset = ROUTE(rewrite_host)},
};
static const struct tg_conf_section rewrite_section = TG_CONF_SECTION("rewrite", rewrite_keys);

static const struct tg_conf_key route_keys[] = {
    {.name = "name", .type = TG_CT_CUSTOM, .flags = TG_CK_REQUIRED, .parse = parse_name},
    {.name = "match", .type = TG_CT_CUSTOM, .parse = parse_match},
    {.name = "service", .type = TG_CT_CUSTOM, .flags = TG_CK_REQUIRED, .parse = parse_service},
    {.name = "rewrite", .type = TG_CT_SECTION, .sub = &rewrite_section},
    {.name = "max_body",
     .type = TG_CT_SIZE,
     .offset = ROUTE(max_body),
     .min = 1,
     .max = UINT64_MAX,
     .why_min = "leave max_body out to use limits.max_body"},
    {.name = "idempotent", .type = TG_CT_BOOL, .offset = ROUTE(idempotent), .def = "false"},
    {.name = "hedge", .type = TG_CT_SECTION, .sub = &tg__conf_hedge_section},
    {.name = "auth", .type = TG_CT_CUSTOM, .parse = tg__conf_route_auth},
    {.name = "limits", .type = TG_CT_CUSTOM, .parse = tg__conf_route_limits},
    {.name = "cost",
     .type = TG_CT_UINT32,
     .offset = ROUTE(cost),
     .min = 1,
     .max = 1000000,
     .why_min = "leave cost out to use the plan's (1 by default)"},
    {.name = "jsonrpc", .type = TG_CT_CUSTOM, .parse = tg__conf_route_jsonrpc},
    {.name = "cache", .type = TG_CT_CUSTOM, .parse = tg__conf_route_cache},
    {.name = "queue", .type = TG_CT_LATER, .later = "durable request queues"},
    {.name = "analytics", .type = TG_CT_LATER, .later = "usage analytics"},
};
static const struct tg_conf_section route_section = TG_CONF_SECTION("a route", route_keys);

static void check_template(struct tg_conf_loader *ld, const struct tg_route_conf *r,
                           const struct tg_ynode *item, const char *key, const char *tmpl)
{
    const struct tg_ynode *v = tg_ynode_get(tg_ynode_get(item, "rewrite"), key);
    char err[256];

    if (tmpl == NULL || v == NULL)
        return;
    err[0] = '\0';
    if (tg_router_template_check(tmpl, r->host, r->path, err, sizeof(err)) != 0)
        tg__conf_error(ld, v, "rewrite.%s: %s", key, err[0] ? err : "invalid template");
}

void tg__conf_routes(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_config *cf = base;
    const struct tg_ynode *item = tg__conf_list(ld, v, "routes like - name: api");
    size_t i = 0;

    if (item == NULL)
        return;
    cf->routes = tg_conf_arena_array(ld->a, v->num, sizeof(*cf->routes));
    ld->route_aux = tg_calloc(v->num, sizeof(*ld->route_aux));
    for (; item != NULL; item = item->next, i++) {
        struct tg_route_conf *r = &cf->routes[i];

        r->pos = (struct tg_conf_pos){ld->file, item->line, item->col};
        /* A template is checked against the captures of its patterns; after a bad pattern that
         * check would only add noise. */
        if (!tg__conf_section(ld, &route_section, item, r) || ld->route_aux[i].match_bad)
            continue;
        check_template(ld, r, item, "path", r->rewrite_path);
        check_template(ld, r, item, "host", r->rewrite_host);
    }
    cf->num_routes = i;
}

static int svc_ptr_cmp(const void *pa, const void *pb)
{
    const struct tg_service_conf *a = *(const struct tg_service_conf *const *)pa;
    const struct tg_service_conf *b = *(const struct tg_service_conf *const *)pb;

    return strcmp(a->name, b->name);
}

static void dup_route_name(void *ctx, size_t later, size_t first)
{
    struct tg_conf_loader *ld = ctx;
    const struct tg_route_conf *r = &ld->cf->routes[later];

    tg__conf_error(ld, ld->route_aux[later].name,
                   "route name '%s' is already used by the route at line %d", r->name,
                   ld->cf->routes[first].pos.line);
}

static void dup_route_match(void *ctx, size_t later, size_t first)
{
    struct tg_conf_loader *ld = ctx;
    const struct tg_route_conf *r = &ld->cf->routes[later];

    tg__conf_error_at(ld, r->pos.line, r->pos.col,
                      "route '%s' has the same match as route '%s' (line %d), so it can never "
                      "be chosen",
                      r->name, ld->cf->routes[first].name, ld->cf->routes[first].pos.line);
}

/* Links routes to their services and finds routes that shadow each other. Runs after the whole
 * file was read, so services may be written after the routes that use them. */
void tg__conf_check_routes(struct tg_conf_loader *ld)
{
    struct tg_config *cf = ld->cf;
    struct tg_service_conf **byname;
    const char **names, **matches;
    size_t n = cf->num_routes;

    if (n == 0)
        return;
    byname = tg_malloc((cf->num_services + 1) * sizeof(*byname));
    for (size_t i = 0; i < cf->num_services; i++)
        byname[i] = &cf->services[i];
    qsort(byname, cf->num_services, sizeof(*byname), svc_ptr_cmp);
    names = tg_conf_arena_array(ld->a, n, sizeof(*names));
    matches = tg_conf_arena_array(ld->a, n, sizeof(*matches));
    for (size_t i = 0; i < n; i++) {
        struct tg_route_conf *r = &cf->routes[i];
        struct tg_service_conf key = {.name = r->service}, *kp = &key, **found;

        names[i] = r->name ? r->name : tg_conf_arena_printf(ld->a, "\x01%zu", i);
        /* Routes with a broken match or no name are left out of the comparison. */
        matches[i] = r->name && !ld->route_aux[i].match_bad
                         ? tg_conf_arena_printf(ld->a, "%s\x01%s\x01%x", r->host ? r->host : "",
                                                r->path ? r->path : "", r->methods)
                         : names[i];
        if (r->service == NULL || ld->route_aux[i].service == NULL)
            continue;
        found = bsearch(&kp, byname, cf->num_services, sizeof(*byname), svc_ptr_cmp);
        if (found != NULL) {
            r->svc = *found;
            continue;
        }
        tg__conf_error(ld, ld->route_aux[i].service,
                       "service: route '%s' uses service '%s', which is not defined under "
                       "services",
                       r->name ? r->name : "?", r->service);
    }
    free(byname);
    tg__conf_find_dups(names, n, dup_route_name, ld);
    tg__conf_find_dups(matches, n, dup_route_match, ld);
}
