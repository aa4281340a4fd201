/*
 * JSON-RPC (issue 6): a kind: jsonrpc service's jsonrpc section (method weights), a route's jsonrpc
 * section (body and batch bounds, method policy, method routing to other services) and a plan's
 * methods. Every route to a jsonrpc service gets a route section, written or not, once the whole
 * file was read.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "config/config_internal.h"
#include "config/units.h"
#include "core/core.h"

#define SVC(field)      offsetof(struct tg_service_conf, field)
#define RPCR(field)     offsetof(struct tg_rpc_route_conf, field)
#define TG__MAX_PATTERN 128

#define TG__DEFAULT_MAX_BODY  "1mb"
#define TG__DEFAULT_MAX_BATCH "100"

/* A method pattern: 1 to 128 printable ASCII bytes other than space, '"' and '\'. */
static int check_pattern(const char *s, char *err, size_t errlen)
{
    size_t n = strlen(s);

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c <= ' ' || c >= 0x7f || c == '"' || c == '\\') {
            snprintf(err, errlen, "'%s' is not a method name or pattern like eth_call or debug_*",
                     s);
            return -1;
        }
    }
    if (n > TG__MAX_PATTERN) {
        snprintf(err, errlen, "a method pattern is at most %d characters", TG__MAX_PATTERN);
        return -1;
    }
    return 0;
}

static void parse_allow(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    tg__conf_str_list(ld, v, &((struct tg_method_policy *)base)->allow,
                      "method names or patterns like eth_* ", check_pattern);
}

static void parse_deny(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    tg__conf_str_list(ld, v, &((struct tg_method_policy *)base)->deny,
                      "method names or patterns like debug_*", check_pattern);
}

static const struct tg_conf_key policy_keys[] = {
    {.name = "allow", .type = TG_CT_CUSTOM, .parse = parse_allow},
    {.name = "deny", .type = TG_CT_CUSTOM, .parse = parse_deny},
};
static const struct tg_conf_section policy_section = TG_CONF_SECTION("methods", policy_keys);

static void parse_policy(struct tg_conf_loader *ld, const struct tg_ynode *v,
                         struct tg_method_policy *p)
{
    tg__conf_section(ld, &policy_section, v, p);
}

/* -- plans ----------------------------------------------------------------------------------- */

/* A plan's methods (base is the plan's limit, parsed as the plan's section). */
void tg__conf_plan_methods(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    parse_policy(ld, v, &TG_CONTAINER_OF(base, struct tg_plan_conf, limit)->methods);
}

/* -- services -------------------------------------------------------------------------------- */

static void parse_weights(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_rpc_service_conf *rs = base;

    if (v->kind != TG_YNODE_MAP) {
        tg__conf_error(ld, v,
                       "weights: expected a mapping of methods to units like "
                       "{ eth_getLogs: 75, default: 10 }, got %s",
                       tg__conf_describe(ld, v));
        return;
    }
    rs->weights = tg_conf_arena_array(ld->a, v->num, sizeof(*rs->weights));
    for (const struct tg_ynode *c = v->first; c != NULL; c = c->next) {
        uint64_t units;
        char err[256];

        if (!tg__conf_scalar(ld, c, "a whole number of units"))
            continue;
        if (tg_units_parse_uint(tg_str_make(c->str, c->len), &units, err, sizeof(err)) != 0 ||
            units < 1 || units > 1000000) {
            tg__conf_error(ld, c, "weights: expected a whole number from 1 to 1000000, got '%s'",
                           c->str);
            continue;
        }
        if (strcmp(c->key->str, "default") == 0) {
            rs->default_weight = (uint32_t)units;
            continue;
        }
        if (check_pattern(c->key->str, err, sizeof(err)) != 0) {
            tg__conf_error(ld, c->key, "weights: %s", err);
            continue;
        }
        rs->weights[rs->num_weights++] =
            (struct tg_rpc_weight){tg__conf_strdup(ld, c->key), (uint32_t)units};
    }
}

static const struct tg_conf_key rpc_service_keys[] = {
    {.name = "weights", .type = TG_CT_CUSTOM, .parse = parse_weights},
    {.name = "broadcast",
     .type = TG_CT_UINT32,
     .offset = offsetof(struct tg_rpc_service_conf, broadcast),
     .def = "1",
     .min = 1,
     .max = TG_RPC_MAX_BROADCAST},
    {.name = "finality_depth",
     .type = TG_CT_UINT32,
     .offset = offsetof(struct tg_rpc_service_conf, finality_depth),
     .def = "64",
     .max = 1000000},
};
static const struct tg_conf_section rpc_service_section =
    TG_CONF_SECTION("jsonrpc", rpc_service_keys);

void tg__conf_service_jsonrpc(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    tg__conf_section(ld, &rpc_service_section, v, &((struct tg_service_conf *)base)->rpc);
}

void tg__conf_service_jsonrpc_defaults(struct tg_conf_loader *ld, struct tg_service_conf *svc)
{
    tg__conf_defaults(ld, &rpc_service_section, &svc->rpc);
    svc->rpc.default_weight = 1;
}

/* -- routes ---------------------------------------------------------------------------------- */

static void parse_route_methods(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    parse_policy(ld, v, &((struct tg_rpc_route_conf *)base)->methods);
}

static void parse_rule_methods(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    tg__conf_str_list(ld, v, &((struct tg_rpc_rule *)base)->methods,
                      "method names or patterns like trace_*", check_pattern);
}

static void parse_rule_service(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    if (tg__conf_scalar(ld, v, "a service name"))
        ((struct tg_rpc_rule *)base)->service = tg__conf_strdup(ld, v);
}

static const struct tg_conf_key rule_keys[] = {
    {.name = "methods", .type = TG_CT_CUSTOM, .flags = TG_CK_REQUIRED, .parse = parse_rule_methods},
    {.name = "service", .type = TG_CT_CUSTOM, .flags = TG_CK_REQUIRED, .parse = parse_rule_service},
};
static const struct tg_conf_section rule_section =
    TG_CONF_SECTION("a jsonrpc.routes entry", rule_keys);

static void parse_rules(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_rpc_route_conf *rc = base;
    const struct tg_ynode *item =
        tg__conf_list(ld, v, "method routes like - { methods: [trace_*], service: archive }");

    if (item == NULL)
        return;
    if (v->num > TG_RPC_MAX_RULES) {
        tg__conf_error(ld, v, "routes: at most %d method routes per route", TG_RPC_MAX_RULES);
        return;
    }
    rc->routes = tg_conf_arena_array(ld->a, v->num, sizeof(*rc->routes));
    for (; item != NULL; item = item->next) {
        struct tg_rpc_rule *r = &rc->routes[rc->num_routes++];

        r->pos = (struct tg_conf_pos){ld->file, item->line, item->col};
        tg__conf_section(ld, &rule_section, item, r);
    }
}

static const struct tg_conf_key rpc_route_keys[] = {
    {.name = "max_body",
     .type = TG_CT_SIZE,
     .offset = RPCR(max_body),
     .def = TG__DEFAULT_MAX_BODY,
     .min = 2,
     .max = 64ull << 20,
     .why_min = "no JSON-RPC request is that small"},
    {.name = "max_response",
     .type = TG_CT_SIZE,
     .offset = RPCR(max_response),
     .def = "32mb",
     .min = 1024,
     .max = 1ull << 30},
    {.name = "max_batch",
     .type = TG_CT_UINT32,
     .offset = RPCR(max_batch),
     .def = TG__DEFAULT_MAX_BATCH,
     .min = 1,
     .max = 10000},
    {.name = "methods", .type = TG_CT_CUSTOM, .parse = parse_route_methods},
    {.name = "routes", .type = TG_CT_CUSTOM, .parse = parse_rules},
};
static const struct tg_conf_section rpc_route_section = TG_CONF_SECTION("jsonrpc", rpc_route_keys);

static struct tg_rpc_route_conf *route_rpc_new(struct tg_conf_loader *ld)
{
    struct tg_rpc_route_conf *rc = tg_conf_arena_alloc(ld->a, sizeof(*rc));

    tg__conf_defaults(ld, &rpc_route_section, rc);
    return rc;
}

void tg__conf_route_jsonrpc(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_route_conf *r = base;

    r->rpc = route_rpc_new(ld);
    tg__conf_section(ld, &rpc_route_section, v, r->rpc);
}

/* Runs after routes are linked to their services. */
void tg__conf_check_jsonrpc(struct tg_conf_loader *ld)
{
    struct tg_config *cf = ld->cf;
    const struct tg_ynode *routes = tg_ynode_get(ld->root, "routes");
    const struct tg_ynode *rn = routes && routes->kind == TG_YNODE_SEQ ? routes->first : NULL;

    for (size_t i = 0; i < cf->num_routes; i++, rn = rn ? rn->next : NULL) {
        struct tg_route_conf *r = &cf->routes[i];
        const struct tg_ynode *at = rn ? tg_ynode_get(rn, "jsonrpc") : NULL;
        bool rpc = r->svc != NULL && r->svc->kind == TG_SERVICE_JSONRPC;

        if (r->rpc != NULL && r->svc != NULL && !rpc) {
            tg__conf_error(ld, at ? at : rn,
                           "jsonrpc: route '%s' goes to service '%s', which is not kind: jsonrpc",
                           r->name, r->svc->name);
            continue;
        }
        if (!rpc)
            continue;
        if (r->rpc == NULL)
            r->rpc = route_rpc_new(ld);
        for (size_t j = 0; j < r->rpc->num_routes; j++) {
            struct tg_rpc_rule *rule = &r->rpc->routes[j];

            if (rule->service == NULL)
                continue;
            rule->svc = tg_config_service(cf, rule->service);
            if (rule->svc == NULL)
                tg__conf_error_at(ld, rule->pos.line, rule->pos.col,
                                  "jsonrpc.routes: service '%s' is not defined under services",
                                  rule->service);
            else if (rule->svc->kind != TG_SERVICE_JSONRPC)
                tg__conf_error_at(ld, rule->pos.line, rule->pos.col,
                                  "jsonrpc.routes: service '%s' is not kind: jsonrpc",
                                  rule->service);
        }
    }
}
