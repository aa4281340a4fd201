/*
 * Identity and limits (issue 5): plans, consumers and their keys, anonymous access, the external
 * key store, the rate-limit table and its cluster store at the top level; auth, limits and cost
 * on routes. The checks that span sections (a consumer's plan exists, a path:key source names a
 * capture of the route, a plan limit has a caller to charge) run after the whole file was read.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/jwt.h"
#include "auth/keystore.h"
#include "config/config_internal.h"
#include "config/units.h"
#include "core/sha256.h"
#include "core/str.h"

#define OFF(field)   offsetof(struct tg_config, field)
#define JWT(field)   offsetof(struct tg_jwt_conf, field)
#define LIMIT(field) offsetof(struct tg_limit_conf, field)
#define NONE         UINT32_MAX

/* -- rates and quotas ------------------------------------------------------------------------ */

static void parse_rate(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_limit_conf *l = base;
    struct tg_rate r;
    char err[160];

    if (!tg__conf_scalar(ld, v, "a rate like 100/s or 100/15m"))
        return;
    if (tg_units_parse_rate(tg_str_make(v->str, v->len), &r, err, sizeof(err)) != 0) {
        tg__conf_error(ld, v, "rate: %s", err);
        return;
    }
    l->rate_count = r.count;
    l->rate_period = r.period;
}

/* A quota: N per day (d, day) or per month (month), counted in UTC calendar periods. */
static void parse_quota(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_limit_conf *l = base;
    const char *slash;
    uint64_t n;
    char err[160];

    if (!tg__conf_scalar(ld, v, "a quota like 100000/d or 5000000/month"))
        return;
    slash = strchr(v->str, '/');
    if (slash == NULL ||
        tg_units_parse_uint(tg_str_make(v->str, (size_t)(slash - v->str)), &n, err, sizeof(err)) !=
            0 ||
        n == 0) {
        tg__conf_error(ld, v, "quota: expected a positive count, '/' and d or month, got '%s'",
                       v->str);
        return;
    }
    if (strcmp(slash + 1, "d") == 0 || strcmp(slash + 1, "day") == 0) {
        l->quota_period = TG_QUOTA_DAY;
    } else if (strcmp(slash + 1, "month") == 0) {
        l->quota_period = TG_QUOTA_MONTH;
    } else {
        tg__conf_error_in(ld, v, (size_t)(slash + 1 - v->str),
                          "quota: the period is d (a UTC day) or month (a UTC calendar month), "
                          "got '%s'",
                          slash + 1);
        return;
    }
    l->quota = n;
}

/* by: consumer | client_ip | route | header:NAME */
static void parse_by(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_limit_conf *l = base;

    if (!tg__conf_scalar(ld, v, "consumer, client_ip, route or header:NAME"))
        return;
    if (strcmp(v->str, "consumer") == 0) {
        l->by = TG_BY_CONSUMER;
    } else if (strcmp(v->str, "client_ip") == 0) {
        l->by = TG_BY_CLIENT_IP;
    } else if (strcmp(v->str, "route") == 0) {
        l->by = TG_BY_ROUTE;
    } else if (strncmp(v->str, "header:", 7) == 0 && v->str[7] != '\0') {
        char *h = tg_conf_arena_strdup(ld->a, v->str + 7);

        for (char *p = h; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        l->by = TG_BY_HEADER;
        l->by_header = h;
    } else {
        tg__conf_error(ld, v, "by: expected consumer, client_ip, route or header:NAME, got '%s'",
                       v->str);
    }
}

static void parse_burst(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    uint64_t n;
    char err[160];

    if (!tg__conf_scalar(ld, v, "a whole number of requests"))
        return;
    if (tg_units_parse_uint(tg_str_make(v->str, v->len), &n, err, sizeof(err)) != 0 || n == 0 ||
        n > UINT32_MAX) {
        tg__conf_error(ld, v, "burst: expected a whole number from 1 to %u, got '%s'", UINT32_MAX,
                       v->str);
        return;
    }
    ((struct tg_limit_conf *)base)->burst = n;
}

static const struct tg_conf_key plan_keys[] = {
    {.name = "rate", .type = TG_CT_CUSTOM, .parse = parse_rate},
    {.name = "burst", .type = TG_CT_CUSTOM, .parse = parse_burst},
    {.name = "quota", .type = TG_CT_CUSTOM, .parse = parse_quota},
    {.name = "cost",
     .type = TG_CT_UINT32,
     .offset = LIMIT(cost),
     .def = "1",
     .min = 1,
     .max = 1000000,
     .why_min = "a request would cost nothing"},
    {.name = "methods", .type = TG_CT_CUSTOM, .parse = tg__conf_plan_methods},
};
static const struct tg_conf_section plan_section = TG_CONF_SECTION("plan", plan_keys);

static const struct tg_conf_key limit_keys[] = {
    {.name = "name", .type = TG_CT_STRING, .offset = LIMIT(name)},
    {.name = "rate", .type = TG_CT_CUSTOM, .parse = parse_rate},
    {.name = "burst", .type = TG_CT_CUSTOM, .parse = parse_burst},
    {.name = "quota", .type = TG_CT_CUSTOM, .parse = parse_quota},
    {.name = "by", .type = TG_CT_CUSTOM, .parse = parse_by},
};
static const struct tg_conf_section limit_section = TG_CONF_SECTION("limit", limit_keys);

/* A plan or a route's limit; a rate without burst admits one period's worth at once. */
static bool limit_body(struct tg_conf_loader *ld, const struct tg_ynode *v, struct tg_limit_conf *l,
                       const struct tg_conf_section *sec)
{
    l->pos = (struct tg_conf_pos){ld->file, v->line, v->col};
    tg__conf_defaults(ld, sec, l);
    if (v->kind != TG_YNODE_MAP) {
        tg__conf_error(ld, v, "expected a mapping like { rate: 100/s, burst: 20 }, got %s",
                       tg__conf_describe(ld, v));
        return false;
    }
    if (!tg__conf_section(ld, sec, v, l))
        return false;
    if (l->rate_count == 0 && l->quota == 0) {
        tg__conf_error(ld, v, "a limit needs a rate, a quota or both");
        return false;
    }
    if (l->rate_count != 0 && l->burst == 0)
        l->burst = l->rate_count; /* "100/15m" reads as 100 requests in any 15 minutes */
    return true;
}

/* The most units one request may cost under l: more, and every request is refused. */
static uint64_t limit_unit_cap(const struct tg_limit_conf *l)
{
    uint64_t cap = UINT64_MAX;

    if (l->rate_count != 0)
        cap = l->burst;
    if (l->quota != 0 && l->quota < cap)
        cap = l->quota;
    return cap;
}

static void check_cost(struct tg_conf_loader *ld, const struct tg_ynode *at, uint64_t cost,
                       const struct tg_limit_conf *l, const char *what)
{
    uint64_t cap = limit_unit_cap(l);

    if (cost > cap)
        tg__conf_error(ld, at,
                       "cost: %" PRIu64 " units per request is more than %s allows at once "
                       "(%s %" PRIu64 "), so every request would be refused",
                       cost, what, l->rate_count != 0 && l->burst == cap ? "burst" : "quota", cap);
}

/* -- plans and consumers --------------------------------------------------------------------- */

void tg__conf_plans(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_config *cf = base;

    if (v->kind != TG_YNODE_MAP) {
        tg__conf_error(ld, v,
                       "plans: expected a mapping of plan names to limits like "
                       "{ rate: 100/s, burst: 20, quota: 100000/d }, got %s",
                       tg__conf_describe(ld, v));
        return;
    }
    cf->plans = tg_conf_arena_array(ld->a, v->num, sizeof(*cf->plans));
    for (const struct tg_ynode *c = v->first; c != NULL; c = c->next) {
        struct tg_plan_conf *p = &cf->plans[cf->num_plans++];

        p->name = tg__conf_strdup(ld, c->key);
        tg__conf_check_name(ld, c->key, "a plan");
        if (limit_body(ld, c, &p->limit, &plan_section))
            check_cost(ld, c, p->limit.cost, &p->limit, "the plan");
        p->limit.name = tg_conf_arena_printf(ld->a, "plan:%s", p->name);
        p->limit.by = TG_BY_CONSUMER;
    }
}

static uint32_t plan_index(const struct tg_config *cf, const char *name)
{
    for (size_t i = 0; i < cf->num_plans; i++)
        if (strcmp(cf->plans[i].name, name) == 0)
            return (uint32_t)i;
    return NONE;
}

/* A key as written: "sha256:HEX" (what `tollgate keys hash` prints) or the key itself. */
static bool parse_key(struct tg_conf_loader *ld, const struct tg_ynode *v, uint8_t out[32])
{
    if (!tg__conf_scalar(ld, v, "a key or sha256:DIGEST"))
        return false;
    if (strncmp(v->str, "sha256:", 7) == 0) {
        if (tg_key_parse_digest(v->str, v->len, out) != 0) {
            tg__conf_error(ld, v,
                           "keys: sha256: must be followed by 64 hex digits (tollgate keys hash "
                           "KEY prints it)");
            return false;
        }
        return true;
    }
    if (v->len < 8) {
        tg__conf_error(ld, v, "keys: a key of %zu characters is too easy to guess; use 8 or more",
                       v->len);
        return false;
    }
    tg_sha256(v->str, v->len, out);
    return true;
}

void tg__conf_consumers(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_config *cf = base;
    const struct tg_ynode *item = tg__conf_list(ld, v, "consumers like { name: acme, plan: pro }");

    if (item == NULL)
        return;
    cf->consumers = tg_conf_arena_array(ld->a, v->num, sizeof(*cf->consumers));
    for (; item != NULL; item = item->next) {
        struct tg_consumer_conf *c = &cf->consumers[cf->num_consumers++];
        const struct tg_ynode *name = tg_ynode_get(item, "name");
        const struct tg_ynode *keys = tg_ynode_get(item, "keys");

        c->pos = (struct tg_conf_pos){ld->file, item->line, item->col};
        c->plan = NONE;
        if (item->kind != TG_YNODE_MAP) {
            tg__conf_error(ld, item,
                           "consumers: expected a mapping like { name: acme, plan: pro, "
                           "keys: [...] }");
            continue;
        }
        for (const struct tg_ynode *k = item->first; k != NULL; k = k->next) {
            if (strcmp(k->key->str, "name") != 0 && strcmp(k->key->str, "plan") != 0 &&
                strcmp(k->key->str, "keys") != 0)
                tg__conf_error(ld, k->key,
                               "consumer: unknown key '%s'; valid keys: name, plan, keys",
                               k->key->str);
        }
        if (name == NULL) {
            tg__conf_error(ld, item, "consumer: name is required");
        } else if (tg__conf_scalar(ld, name, "a consumer name")) {
            tg__conf_check_name(ld, name, "a consumer");
            c->name = tg__conf_strdup(ld, name);
        }
        if (keys != NULL) {
            const struct tg_ynode *k = tg__conf_list(ld, keys, "keys like [\"sha256:...\"]");

            c->keys = tg_conf_arena_array(ld->a, keys->num ? keys->num : 1, sizeof(*c->keys));
            for (; k != NULL; k = k->next)
                if (parse_key(ld, k, c->keys[c->num_keys]))
                    c->num_keys++;
        }
    }
}

/* The plan names of consumers and anonymous, and duplicate names and keys: run after the file. */
static void check_consumers(struct tg_conf_loader *ld)
{
    struct tg_config *cf = ld->cf;
    const struct tg_ynode *list = tg_ynode_get(ld->root, "consumers");
    const struct tg_ynode *item = list != NULL && list->kind == TG_YNODE_SEQ ? list->first : NULL;

    for (size_t i = 0; i < cf->num_consumers; i++, item = item ? item->next : NULL) {
        struct tg_consumer_conf *c = &cf->consumers[i];
        const struct tg_ynode *plan = item ? tg_ynode_get(item, "plan") : NULL;

        if (plan != NULL && tg__conf_scalar(ld, plan, "a plan name")) {
            c->plan = plan_index(cf, plan->str);
            if (c->plan == NONE)
                tg__conf_error(ld, plan, "plan: '%s' is not defined under plans", plan->str);
        }
        for (size_t j = 0; c->name != NULL && j < i; j++) {
            if (cf->consumers[j].name != NULL && strcmp(cf->consumers[j].name, c->name) == 0)
                tg__conf_error_at(ld, c->pos.line, c->pos.col,
                                  "consumer '%s' is already defined at line %d", c->name,
                                  cf->consumers[j].pos.line);
        }
        for (size_t k = 0; k < c->num_keys; k++)
            for (size_t j = 0; j <= i; j++)
                for (size_t m = 0; m < (j == i ? k : cf->consumers[j].num_keys); m++)
                    if (memcmp(c->keys[k], cf->consumers[j].keys[m], 32) == 0)
                        tg__conf_error_at(ld, c->pos.line, c->pos.col,
                                          "consumer '%s': a key is listed twice (also for "
                                          "consumer '%s')",
                                          c->name ? c->name : "?",
                                          cf->consumers[j].name ? cf->consumers[j].name : "?");
    }
}

void tg__conf_anonymous(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_config *cf = base;
    const struct tg_ynode *plan = tg_ynode_get(v, "plan"), *by = tg_ynode_get(v, "by");
    struct tg_limit_conf l = {.by = TG_BY_CLIENT_IP};

    if (v->kind != TG_YNODE_MAP) {
        tg__conf_error(ld, v, "anonymous: expected { plan: NAME, by: client_ip }, got %s",
                       tg__conf_describe(ld, v));
        return;
    }
    for (const struct tg_ynode *k = v->first; k != NULL; k = k->next)
        if (strcmp(k->key->str, "plan") != 0 && strcmp(k->key->str, "by") != 0)
            tg__conf_error(ld, k->key, "anonymous: unknown key '%s'; valid keys: plan, by",
                           k->key->str);
    if (by != NULL)
        parse_by(ld, by, &l);
    if (l.by != TG_BY_CLIENT_IP && l.by != TG_BY_HEADER)
        tg__conf_error(ld, by, "anonymous.by: expected client_ip or header:NAME");
    cf->anon_by = l.by;
    cf->anon_header = l.by_header;
    if (plan == NULL)
        tg__conf_error(ld, v, "anonymous: plan is required");
    else if (tg__conf_scalar(ld, plan, "a plan name"))
        cf->anon_plan = 0; /* resolved by check_identity_top once every plan is known */
}

static void parse_store(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    if (!tg__conf_scalar(ld, v, "sqlite:/path/keys.db or postgres://user@host/db"))
        return;
    if (tg_keystore_kind(v->str) == 0) {
        tg__conf_error(ld, v,
                       "store: expected sqlite:/path/keys.db or postgres://user@host/db, got "
                       "'%s'",
                       v->str);
        return;
    }
    ((struct tg_config *)base)->key_store = tg__conf_strdup(ld, v);
}

static void parse_table(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    if (!tg__conf_scalar(ld, v, "a table name like api_keys"))
        return;
    for (const char *p = v->str; *p; p++) {
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.') {
            tg__conf_error_in(ld, v, (size_t)(p - v->str),
                              "table: expected a table name of letters, digits and '_' "
                              "(schema.table allowed), got '%s'",
                              v->str);
            return;
        }
    }
    ((struct tg_config *)base)->key_table = tg__conf_strdup(ld, v);
}

static const struct tg_conf_key keys_keys[] = {
    {.name = "store", .type = TG_CT_CUSTOM, .parse = parse_store},
    {.name = "table", .type = TG_CT_CUSTOM, .parse = parse_table, .def = "api_keys"},
    {.name = "refresh",
     .type = TG_CT_DURATION,
     .offset = OFF(key_refresh),
     .def = "10s",
     .min = 100,
     .max = 86400000,
     .why_min = "the store would be queried without pause"},
    {.name = "max",
     .type = TG_CT_UINT32,
     .offset = OFF(key_max),
     .def = "1000000",
     .min = 1,
     .max = 100000000},
};
const struct tg_conf_section tg__conf_keys_section = TG_CONF_SECTION("keys", keys_keys);

static void parse_rl_store(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    if (!tg__conf_scalar(ld, v, "redis://host:6379/0"))
        return;
    if (strncmp(v->str, "redis://", 8) != 0 || v->str[8] == '\0' || v->str[8] == '/') {
        tg__conf_error(ld, v, "store: expected redis://host[:port][/db], got '%s'", v->str);
        return;
    }
    ((struct tg_config *)base)->rl_store = tg__conf_strdup(ld, v);
}

static const char *const on_error_names[] = {"allow", "deny", NULL};

static const struct tg_conf_key ratelimit_keys[] = {
    {.name = "max_keys",
     .type = TG_CT_SIZE,
     .offset = OFF(rl_max_keys),
     .def = "1000000",
     .min = 64,
     .max = 1000000000,
     .why_min = "the table would evict the counters it is using"},
    {.name = "store", .type = TG_CT_CUSTOM, .parse = parse_rl_store},
    {.name = "sync",
     .type = TG_CT_DURATION,
     .offset = OFF(rl_sync),
     .def = "100ms",
     .min = 10,
     .max = 60000,
     .why_min = "Redis would be written without pause"},
    {.name = "on_store_error",
     .type = TG_CT_ENUM,
     .offset = OFF(rl_deny_on_error),
     .def = "allow",
     .names = on_error_names},
};
const struct tg_conf_section tg__conf_ratelimit_section =
    TG_CONF_SECTION("ratelimit", ratelimit_keys);

/* -- routes: auth, limits, cost -------------------------------------------------------------- */

static void parse_from(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_auth_conf *a = base;
    const struct tg_ynode *item =
        tg__conf_list(ld, v, "sources like [path:key, header:x-api-key, bearer, query:api_key]");

    if (item == NULL)
        return;
    a->from = tg_conf_arena_array(ld->a, v->num, sizeof(*a->from));
    for (; item != NULL; item = item->next) {
        struct tg_key_source *s = &a->from[a->num_from];
        const char *p;

        if (!tg__conf_scalar(ld, item, "path:NAME, header:NAME, bearer or query:NAME"))
            continue;
        p = item->str;
        if (strcmp(p, "bearer") == 0) {
            s->kind = TG_KEY_BEARER;
        } else if (strncmp(p, "path:", 5) == 0 && p[5]) {
            s->kind = TG_KEY_PATH;
            s->name = tg_conf_arena_strdup(ld->a, p + 5);
        } else if (strncmp(p, "header:", 7) == 0 && p[7]) {
            char *h = tg_conf_arena_strdup(ld->a, p + 7);

            for (char *q = h; *q; q++)
                *q = (char)tolower((unsigned char)*q);
            s->kind = TG_KEY_HEADER;
            s->name = h;
            if (strcmp(h, "authorization") == 0 || strcmp(h, "host") == 0) {
                tg__conf_error(ld, item,
                               "from: use bearer for the Authorization header; header:%s is "
                               "not a key source",
                               h);
                continue;
            }
        } else if (strncmp(p, "query:", 6) == 0 && p[6]) {
            s->kind = TG_KEY_QUERY;
            s->name = tg_conf_arena_strdup(ld->a, p + 6);
        } else {
            tg__conf_error(ld, item,
                           "from: expected path:CAPTURE, header:NAME, bearer or query:NAME, got "
                           "'%s'",
                           p);
            continue;
        }
        a->num_from++;
    }
}

static const struct tg_conf_key api_key_keys[] = {
    {.name = "from", .type = TG_CT_CUSTOM, .flags = TG_CK_REQUIRED, .parse = parse_from},
};
static const struct tg_conf_section api_key_section = TG_CONF_SECTION("api_key", api_key_keys);

static void parse_algorithms(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_jwt_conf *j = base;
    const struct tg_ynode *item = tg__conf_list(ld, v, "algorithms like [RS256, ES256]");

    j->algorithms = 0;
    for (; item != NULL; item = item->next) {
        if (!tg__conf_scalar(ld, item, "RS256, ES256 or HS256"))
            continue;
        if (strcmp(item->str, "RS256") == 0)
            j->algorithms |= TG_JWT_RS256;
        else if (strcmp(item->str, "ES256") == 0)
            j->algorithms |= TG_JWT_ES256;
        else if (strcmp(item->str, "HS256") == 0)
            j->algorithms |= TG_JWT_HS256;
        else
            tg__conf_error(
                ld, item, "algorithms: expected RS256, ES256 or HS256, got '%s'%s", item->str,
                strcasecmp(item->str, "none") == 0 ? " (unsigned tokens are never accepted)" : "");
    }
}

static const struct tg_conf_key jwt_keys[] = {
    {.name = "keys", .type = TG_CT_STRING, .offset = JWT(keys)},
    {.name = "secret", .type = TG_CT_STRING, .offset = JWT(secret)},
    {.name = "algorithms", .type = TG_CT_CUSTOM, .parse = parse_algorithms},
    {.name = "issuer", .type = TG_CT_STRING, .offset = JWT(issuer)},
    {.name = "audience", .type = TG_CT_STRING, .offset = JWT(audience)},
    {.name = "leeway", .type = TG_CT_DURATION, .offset = JWT(leeway), .def = "30s", .max = 3600000},
    {.name = "consumer_claim", .type = TG_CT_STRING, .offset = JWT(consumer_claim), .def = "sub"},
    {.name = "refresh",
     .type = TG_CT_DURATION,
     .offset = JWT(refresh),
     .def = "5m",
     .min = 1000,
     .max = 86400000,
     .why_min = "the keys would be fetched without pause"},
};
static const struct tg_conf_section jwt_section = TG_CONF_SECTION("jwt", jwt_keys);

static void parse_api_key(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    tg__conf_section(ld, &api_key_section, v, base);
}

static void parse_jwt(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_auth_conf *a = base;
    struct tg_jwt_conf *j = tg_conf_arena_alloc(ld->a, sizeof(*j));

    tg__conf_defaults(ld, &jwt_section, j);
    if (!tg__conf_section(ld, &jwt_section, v, j))
        return;
    if (j->keys == NULL && j->secret == NULL) {
        tg__conf_error(ld, v, "jwt: needs keys (a PEM or JWKS file, or a JWKS URL) or secret");
        return;
    }
    if (j->algorithms == 0)
        j->algorithms =
            (j->keys ? TG_JWT_RS256 | TG_JWT_ES256 : 0) | (j->secret ? TG_JWT_HS256 : 0);
    if ((j->algorithms & TG_JWT_HS256) && j->secret == NULL)
        tg__conf_error(ld, v, "jwt: HS256 needs a secret (a public key is never an HMAC key)");
    if ((j->algorithms & (TG_JWT_RS256 | TG_JWT_ES256)) && j->keys == NULL)
        tg__conf_error(ld, v, "jwt: RS256 and ES256 need keys (a PEM or JWKS file, or a URL)");
    a->jwt = j;
}

static void parse_allow_consumers(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    tg__conf_str_list(ld, v, &((struct tg_auth_conf *)base)->consumers, "consumer names", NULL);
}

static void parse_allow_plans(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    tg__conf_str_list(ld, v, &((struct tg_auth_conf *)base)->plans, "plan names", NULL);
}

static const struct tg_conf_key auth_keys[] = {
    {.name = "api_key", .type = TG_CT_CUSTOM, .parse = parse_api_key},
    {.name = "jwt", .type = TG_CT_CUSTOM, .parse = parse_jwt},
    {.name = "consumers", .type = TG_CT_CUSTOM, .parse = parse_allow_consumers},
    {.name = "plans", .type = TG_CT_CUSTOM, .parse = parse_allow_plans},
    {.name = "optional",
     .type = TG_CT_BOOL,
     .offset = offsetof(struct tg_auth_conf, optional),
     .def = "false"},
};
static const struct tg_conf_section auth_section = TG_CONF_SECTION("auth", auth_keys);

void tg__conf_route_auth(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_route_conf *r = base;
    struct tg_auth_conf *a = tg_conf_arena_alloc(ld->a, sizeof(*a));

    tg__conf_defaults(ld, &auth_section, a);
    if (!tg__conf_section(ld, &auth_section, v, a))
        return;
    if (a->num_from == 0 && a->jwt == NULL) {
        tg__conf_error(ld, v, "auth: needs api_key or jwt");
        return;
    }
    r->auth = a;
}

void tg__conf_route_limits(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_route_conf *r = base;
    const struct tg_ynode *item =
        tg__conf_list(ld, v, "limits like [plan] or [{ rate: 50/s, by: consumer }]");
    size_t i = 0;

    if (item == NULL)
        return;
    if (v->num > TG_MAX_ROUTE_LIMITS) {
        tg__conf_error(ld, v, "limits: at most %d limits per route", TG_MAX_ROUTE_LIMITS);
        return;
    }
    r->limits = tg_conf_arena_array(ld->a, v->num, sizeof(*r->limits));
    for (; item != NULL; item = item->next, i++) {
        struct tg_limit_conf *l = &r->limits[r->num_limits];

        if (item->kind == TG_YNODE_SCALAR && strcmp(item->str, "plan") == 0) {
            l->plan = true;
            l->pos = (struct tg_conf_pos){ld->file, item->line, item->col};
            r->num_limits++;
            continue;
        }
        if (item->kind == TG_YNODE_SCALAR) {
            tg__conf_error(ld, item,
                           "limits: expected plan or a mapping like { rate: 50/s }, "
                           "got '%s'",
                           item->str);
            continue;
        }
        if (!limit_body(ld, item, l, &limit_section))
            continue;
        if (tg_ynode_get(item, "by") == NULL)
            l->by = 0xff; /* unset: the route's auth decides (check_route) */
        if (l->name == NULL)
            l->name = tg_conf_arena_printf(ld->a, "%s#%zu", r->name ? r->name : "route", i + 1);
        r->num_limits++;
    }
}

/* -- cross-checks ---------------------------------------------------------------------------- */

static bool pattern_has_capture(const char *pattern, const char *name)
{
    size_t n = strlen(name);

    for (const char *p = pattern ? strchr(pattern, '{') : NULL; p; p = strchr(p + 1, '{'))
        if (strncmp(p + 1, name, n) == 0 && (p[1 + n] == '}' || p[1 + n] == '*'))
            return true;
    return false;
}

static void check_names(struct tg_conf_loader *ld, const struct tg_ynode *at,
                        const struct tg_str_list *l, bool plans)
{
    const struct tg_config *cf = ld->cf;

    for (size_t i = 0; i < l->num; i++) {
        bool found = false;

        for (size_t j = 0; !found && j < (plans ? cf->num_plans : cf->num_consumers); j++)
            found = strcmp(plans                   ? cf->plans[j].name
                           : cf->consumers[j].name ? cf->consumers[j].name
                                                   : "",
                           l->items[i]) == 0;
        /* consumers may also come from the key store, which is read later */
        if (!found && (plans || cf->key_store == NULL))
            tg__conf_error(ld, at, "auth.%s: '%s' is not defined under %s",
                           plans ? "plans" : "consumers", l->items[i],
                           plans ? "plans" : "consumers");
    }
}

/* A route's cost against the plans its callers may have: those auth.plans names, or all. */
static void check_route_cost_plans(struct tg_conf_loader *ld, const struct tg_route_conf *r,
                                   const struct tg_ynode *at)
{
    const struct tg_config *cf = ld->cf;
    const struct tg_str_list *only = r->auth != NULL ? &r->auth->plans : NULL;

    for (size_t j = 0; j < cf->num_plans; j++) {
        bool in = only == NULL || only->num == 0;
        char what[96];

        for (size_t i = 0; !in && i < only->num; i++)
            in = strcmp(only->items[i], cf->plans[j].name) == 0;
        if (!in)
            continue;
        snprintf(what, sizeof(what), "plan '%s'", cf->plans[j].name);
        check_cost(ld, at, r->cost, &cf->plans[j].limit, what);
    }
}

static void check_route(struct tg_conf_loader *ld, struct tg_route_conf *r,
                        const struct tg_ynode *node)
{
    const struct tg_config *cf = ld->cf;
    const struct tg_ynode *auth = tg_ynode_get(node, "auth");
    const struct tg_ynode *limits = tg_ynode_get(node, "limits");
    const struct tg_ynode *li = limits && limits->kind == TG_YNODE_SEQ ? limits->first : NULL;

    if (r->auth != NULL) {
        for (size_t i = 0; i < r->auth->num_from; i++) {
            const struct tg_key_source *s = &r->auth->from[i];

            if (s->kind == TG_KEY_PATH && !pattern_has_capture(r->path, s->name) &&
                !pattern_has_capture(r->host, s->name))
                tg__conf_error(ld, auth,
                               "auth.api_key.from: path:%s names no capture of the route's "
                               "match (add {%s} to match.path)",
                               s->name, s->name);
        }
        check_names(ld, auth, &r->auth->consumers, false);
        check_names(ld, auth, &r->auth->plans, true);
        if (r->auth->optional && cf->anon_plan == NONE)
            tg__conf_error(ld, auth,
                           "auth.optional: callers without a credential need an anonymous plan "
                           "(set anonymous: { plan: NAME })");
    }
    for (size_t i = 0; i < r->num_limits; i++, li = li ? li->next : NULL) {
        struct tg_limit_conf *l = &r->limits[i];

        if (l->plan) {
            if (r->auth == NULL && cf->anon_plan == NONE)
                tg__conf_error_at(ld, l->pos.line, l->pos.col,
                                  "limits: plan needs auth on the route (or an anonymous plan): "
                                  "otherwise no caller has a plan");
            if (r->cost != 0)
                check_route_cost_plans(ld, r, tg_ynode_get(node, "cost"));
            continue;
        }
        check_cost(ld, tg_ynode_get(node, "cost") ? tg_ynode_get(node, "cost") : node,
                   r->cost != 0 ? r->cost : 1, l, "a limit of the route");
        if (l->by == 0xff)
            l->by = r->auth != NULL ? TG_BY_CONSUMER : TG_BY_CLIENT_IP;
        if (l->by == TG_BY_CONSUMER && r->auth == NULL)
            tg__conf_error_at(ld, l->pos.line, l->pos.col,
                              "limits: by: consumer needs auth on the route");
    }
}

/* Runs after the whole file was read. */
void tg__conf_check_identity(struct tg_conf_loader *ld)
{
    struct tg_config *cf = ld->cf;
    const struct tg_ynode *anon = tg_ynode_get(ld->root, "anonymous");
    const struct tg_ynode *routes = tg_ynode_get(ld->root, "routes");
    const struct tg_ynode *rn = routes && routes->kind == TG_YNODE_SEQ ? routes->first : NULL;

    if (anon != NULL && anon->kind == TG_YNODE_MAP) {
        const struct tg_ynode *plan = tg_ynode_get(anon, "plan");

        cf->anon_plan = NONE;
        if (plan != NULL && plan->kind == TG_YNODE_SCALAR) {
            cf->anon_plan = plan_index(cf, plan->str);
            if (cf->anon_plan == NONE)
                tg__conf_error(ld, plan, "anonymous.plan: '%s' is not defined under plans",
                               plan->str);
        }
    } else {
        cf->anon_plan = NONE;
    }
    check_consumers(ld);
    for (size_t i = 0; i < cf->num_routes; i++, rn = rn ? rn->next : NULL) {
        cf->routes[i].id = (uint32_t)i;
        if (rn != NULL)
            check_route(ld, &cf->routes[i], rn);
    }
}
