/*
 * The resilience settings of a service (DESIGN §4, issue 4): health (active probes, passive
 * outlier ejection, panic, slow start), retry, and the consistent-hash key. Also a route's
 * `idempotent` flag lives with the route keys; the checks that span keys are here.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_internal.h"
#include "config/units.h"
#include "core/str.h"

#define HC(field)  offsetof(struct tg_health_conf, field)
#define RC(field)  offsetof(struct tg_retry_conf, field)
#define DAY_MS     86400000ull
#define ZERO_DELAY "a zero interval would probe without pause"

static void status_add(struct tg_status_set *s, int code)
{
    s->bits[code >> 6] |= 1ull << (code & 63);
}

/* One status item: a code like 503 or a class like 5xx. Returns false when it is neither. */
static bool status_item(const char *p, struct tg_status_set *s)
{
    size_t len = strlen(p);

    if (len != 3 || p[0] < '1' || p[0] > '5')
        return false;
    if ((p[1] == 'x' || p[1] == 'X') && (p[2] == 'x' || p[2] == 'X')) {
        for (int c = (p[0] - '0') * 100; c < (p[0] - '0') * 100 + 100; c++)
            status_add(s, c);
        return true;
    }
    if (p[1] < '0' || p[1] > '9' || p[2] < '0' || p[2] > '9')
        return false;
    status_add(s, atoi(p));
    return true;
}

/* A status code, a class, or a list of them. */
static void parse_statuses(struct tg_conf_loader *ld, const struct tg_ynode *v,
                           struct tg_status_set *s, const char *name)
{
    const struct tg_ynode *item = v;

    memset(s, 0, sizeof(*s));
    if (v->kind == TG_YNODE_SEQ)
        item = tg__conf_list(ld, v, "status codes like 503 or classes like 5xx");
    for (; item != NULL; item = v->kind == TG_YNODE_SEQ ? item->next : NULL) {
        if (!tg__conf_scalar(ld, item, "a status code like 503 or a class like 5xx"))
            continue;
        if (!status_item(item->str, s))
            tg__conf_error(ld, item,
                           "%s: expected a status code (100-599) or a class like 5xx, "
                           "got '%s'",
                           name, item->str);
    }
}

static void parse_expect(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    parse_statuses(ld, v, &((struct tg_health_conf *)base)->expect, "expect");
}

static void parse_passive_statuses(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    parse_statuses(ld, v, &((struct tg_health_conf *)base)->statuses, "statuses");
}

static const struct {
    const char *name;
    uint32_t bit;
} retry_conditions[] = {
    {"connect_failure", TG_RETRY_CONNECT},
    {"reset", TG_RETRY_RESET},
    {"timeout", TG_RETRY_TIMEOUT},
};

/* retry.on: conditions and status codes (or classes) mixed in one list. */
static void parse_retry_on(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_retry_conf *r = base;
    const struct tg_ynode *item = tg__conf_list(ld, v, "conditions like connect_failure or 503");

    r->on = 0;
    memset(&r->statuses, 0, sizeof(r->statuses));
    for (; item != NULL; item = item->next) {
        size_t i;

        if (!tg__conf_scalar(ld, item, "a condition or a status code"))
            continue;
        for (i = 0; i < sizeof(retry_conditions) / sizeof(retry_conditions[0]); i++) {
            if (strcmp(item->str, retry_conditions[i].name) == 0)
                break;
        }
        if (i < sizeof(retry_conditions) / sizeof(retry_conditions[0]))
            r->on |= retry_conditions[i].bit;
        else if (!status_item(item->str, &r->statuses))
            tg__conf_error(ld, item,
                           "on: expected connect_failure, reset, timeout, a status code like 503 "
                           "or a class like 5xx, got '%s'",
                           item->str);
    }
}

static const struct tg_conf_key http_probe_keys[] = {
    {.name = "method", .type = TG_CT_STRING, .offset = HC(http_method), .def = "GET"},
    {.name = "path", .type = TG_CT_STRING, .offset = HC(http_path), .def = "/"},
    {.name = "expect", .type = TG_CT_CUSTOM, .parse = parse_expect},
};
static const struct tg_conf_section http_probe_section =
    TG_CONF_SECTION("active.http", http_probe_keys);

static const struct tg_conf_key jsonrpc_probe_keys[] = {
    {.name = "method", .type = TG_CT_STRING, .offset = HC(rpc_method), .def = "eth_blockNumber"},
    {.name = "max_block_lag",
     .type = TG_CT_UINT32,
     .offset = HC(max_block_lag),
     .def = "5",
     .max = 1000000},
    {.name = "syncing", .type = TG_CT_BOOL, .offset = HC(syncing), .def = "false"},
    {.name = "finalized", .type = TG_CT_BOOL, .offset = HC(finalized), .def = "true"},
    {.name = "stall_after",
     .type = TG_CT_DURATION,
     .offset = HC(stall_after),
     .def = "60s",
     .max = 365 * DAY_MS},
};
static const struct tg_conf_section jsonrpc_probe_section =
    TG_CONF_SECTION("active.jsonrpc", jsonrpc_probe_keys);

static const struct tg_conf_key active_keys[] = {
    {.name = "interval",
     .type = TG_CT_DURATION,
     .offset = HC(interval),
     .def = "5s",
     .min = 100,
     .max = DAY_MS,
     .why_min = "probes more often than every 100ms load the nodes for nothing"},
    {.name = "timeout",
     .type = TG_CT_DURATION,
     .offset = HC(timeout),
     .def = "2s",
     .min = 1,
     .max = DAY_MS,
     .why_min = ZERO_DELAY},
    {.name = "rise", .type = TG_CT_UINT32, .offset = HC(rise), .def = "2", .min = 1, .max = 100},
    {.name = "fall", .type = TG_CT_UINT32, .offset = HC(fall), .def = "3", .min = 1, .max = 100},
    {.name = "http", .type = TG_CT_SECTION, .sub = &http_probe_section},
    {.name = "jsonrpc", .type = TG_CT_SECTION, .sub = &jsonrpc_probe_section},
};
static const struct tg_conf_section active_section = TG_CONF_SECTION("health.active", active_keys);

static const struct tg_conf_key passive_keys[] = {
    {.name = "enabled", .type = TG_CT_BOOL, .offset = HC(passive), .def = "true"},
    {.name = "consecutive_failures",
     .type = TG_CT_UINT32,
     .offset = HC(consecutive_failures),
     .def = "5",
     .min = 1,
     .max = 1000},
    {.name = "base_ejection",
     .type = TG_CT_DURATION,
     .offset = HC(base_ejection),
     .def = "30s",
     .min = 1,
     .max = DAY_MS,
     .why_min = "a zero ejection would not eject"},
    {.name = "max_ejection",
     .type = TG_CT_DURATION,
     .offset = HC(max_ejection),
     .def = "5m",
     .min = 1,
     .max = DAY_MS,
     .why_min = "a zero ejection would not eject"},
    {.name = "max_ejection_percent",
     .type = TG_CT_UINT32,
     .offset = HC(max_ejection_percent),
     .def = "50",
     .max = 100},
    {.name = "statuses", .type = TG_CT_CUSTOM, .parse = parse_passive_statuses},
};
static const struct tg_conf_section passive_section =
    TG_CONF_SECTION("health.passive", passive_keys);

static const struct tg_conf_key health_keys[] = {
    {.name = "active", .type = TG_CT_SECTION, .sub = &active_section},
    {.name = "passive", .type = TG_CT_SECTION, .sub = &passive_section},
    {.name = "panic", .type = TG_CT_BOOL, .offset = HC(panic), .def = "false"},
    {.name = "slow_start",
     .type = TG_CT_DURATION,
     .offset = HC(slow_start),
     .def = "0s",
     .max = DAY_MS},
};
const struct tg_conf_section tg__conf_health_section = TG_CONF_SECTION("health", health_keys);

static const struct tg_conf_key retry_keys[] = {
    {.name = "attempts",
     .type = TG_CT_UINT32,
     .offset = RC(attempts),
     .def = "2",
     .min = 1,
     .max = 10,
     .why_min = "attempts counts the first try; 1 means no retries"},
    {.name = "on", .type = TG_CT_CUSTOM, .parse = parse_retry_on},
    {.name = "budget", .type = TG_CT_FRACTION, .offset = RC(budget), .def = "0.2"},
    {.name = "min_per_second",
     .type = TG_CT_UINT32,
     .offset = RC(budget_floor),
     .def = "3",
     .max = 1000000},
    {.name = "buffer", .type = TG_CT_SIZE, .offset = RC(buffer), .def = "64kb", .max = 64ull << 20},
    {.name = "backoff", .type = TG_CT_DURATION, .offset = RC(backoff), .def = "25ms", .max = 60000},
    {.name = "backoff_max",
     .type = TG_CT_DURATION,
     .offset = RC(backoff_max),
     .def = "250ms",
     .max = 60000},
};
const struct tg_conf_section tg__conf_retry_section = TG_CONF_SECTION("retry", retry_keys);

#define SC(field) offsetof(struct tg_service_conf, field)

static const struct tg_conf_key concurrency_keys[] = {
    {.name = "max", .type = TG_CT_UINT32, .offset = SC(conc_max), .def = "0", .max = 10000000},
    {.name = "queue",
     .type = TG_CT_UINT32,
     .offset = SC(conc_queue),
     .def = "1024",
     .max = 10000000},
    {.name = "queue_timeout",
     .type = TG_CT_DURATION,
     .offset = SC(conc_queue_timeout),
     .def = "1s",
     .min = 1,
     .max = 3600000,
     .why_min = "set queue: 0 to shed at once instead"},
};
const struct tg_conf_section tg__conf_concurrency_section =
    TG_CONF_SECTION("concurrency", concurrency_keys);

static void parse_hash_on(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_service_conf *svc = base;

    if (!tg__conf_scalar(ld, v, "client_ip, path or header:NAME"))
        return;
    if (strcmp(v->str, "client_ip") == 0) {
        svc->hash_on = TG_HASH_CLIENT_IP;
    } else if (strcmp(v->str, "path") == 0) {
        svc->hash_on = TG_HASH_PATH;
    } else if (strncmp(v->str, "header:", 7) == 0 && v->str[7] != '\0' &&
               strspn(v->str + 7, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                  "!#$%&'*+-.^_`|~") == strlen(v->str + 7)) {
        svc->hash_on = TG_HASH_HEADER;
        svc->hash_header = tg__conf_strdup(ld, v) + 7;
    } else {
        tg__conf_error(ld, v, "on: expected client_ip, path or header:NAME, got '%s'", v->str);
    }
}

static void parse_load_factor(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_service_conf *svc = base;
    char *end;
    double d;

    if (!tg__conf_scalar(ld, v, "a number from 1 to 10"))
        return;
    d = strtod(v->str, &end);
    if (*end != '\0' || !(d >= 1.0 && d <= 10.0))
        tg__conf_error(ld, v,
                       "load_factor: expected a number from 1 to 10 like 1.25 (a node takes at "
                       "most that many times the average in-flight load), got '%s'",
                       v->str);
    else
        svc->hash_load_factor = d;
}

static const struct tg_conf_key hash_keys[] = {
    {.name = "on", .type = TG_CT_CUSTOM, .parse = parse_hash_on},
    {.name = "load_factor", .type = TG_CT_CUSTOM, .parse = parse_load_factor},
};
const struct tg_conf_section tg__conf_hash_section = TG_CONF_SECTION("hash", hash_keys);

#define RT(field) offsetof(struct tg_route_conf, field)

/* hedge.after: a duration, or p95 for the service's observed 95th percentile. */
static void parse_hedge_after(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base)
{
    struct tg_route_conf *r = base;
    char err[200];
    uint64_t ms;

    if (!tg__conf_scalar(ld, v, "a duration like 150ms, or p95"))
        return;
    if (strcmp(v->str, "p95") == 0) {
        r->hedge_p95 = true;
        r->hedge_after = 1;
        return;
    }
    if (tg_units_parse_duration(tg_str_make(v->str, v->len), &ms, err, sizeof(err)) != 0)
        tg__conf_error(ld, v, "after: %s (or p95)", err);
    else if (ms == 0)
        tg__conf_error(ld, v, "after: a zero delay would always send two requests; remove hedge");
    else
        r->hedge_after = ms;
}

static const struct tg_conf_key hedge_keys[] = {
    {.name = "after", .type = TG_CT_CUSTOM, .flags = TG_CK_REQUIRED, .parse = parse_hedge_after},
    {.name = "max",
     .type = TG_CT_UINT32,
     .offset = RT(hedge_max),
     .def = "1",
     .min = 1,
     .max = TG_CONF_MAX_HEDGES,
     .why_min = "leave hedge out to turn hedging off"},
};
const struct tg_conf_section tg__conf_hedge_section = TG_CONF_SECTION("hedge", hedge_keys);

/* Defaults that are lists or numbers the key tables cannot spell. */
void tg__conf_resilience_defaults(struct tg_service_conf *svc)
{
    static const int gateway_errors[] = {502, 503, 504};

    svc->health.expect = (struct tg_status_set){0};
    for (int c = 200; c < 300; c++)
        status_add(&svc->health.expect, c);
    for (size_t i = 0; i < 3; i++) {
        status_add(&svc->health.statuses, gateway_errors[i]);
        status_add(&svc->retry.statuses, gateway_errors[i]);
    }
    svc->retry.on = TG_RETRY_CONNECT | TG_RETRY_RESET | TG_RETRY_TIMEOUT;
    svc->hash_on = TG_HASH_CLIENT_IP;
    svc->hash_load_factor = 1.25;
}

/* Checks across keys, once the service node `v` is parsed into svc. */
void tg__conf_resilience_check(struct tg_conf_loader *ld, const struct tg_ynode *v,
                               struct tg_service_conf *svc)
{
    const struct tg_ynode *health = tg_ynode_get(v, "health");
    const struct tg_ynode *active = health ? tg_ynode_get(health, "active") : NULL;
    const struct tg_ynode *hash = tg_ynode_get(v, "hash");

    if (active != NULL) {
        const struct tg_ynode *http = tg_ynode_get(active, "http");
        const struct tg_ynode *rpc = tg_ynode_get(active, "jsonrpc");

        svc->health.probe = rpc != NULL ? TG_PROBE_JSONRPC : TG_PROBE_HTTP;
        if (http != NULL && rpc != NULL)
            tg__conf_error(ld, rpc->key,
                           "health.active takes one probe: http or jsonrpc, not both");
        if (svc->health.timeout > svc->health.interval)
            tg__conf_error(
                ld, active->key, "health.active: timeout (%llums) is longer than interval (%llums)",
                (unsigned long long)svc->health.timeout, (unsigned long long)svc->health.interval);
        if (svc->health.http_method != NULL &&
            strspn(svc->health.http_method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") !=
                strlen(svc->health.http_method))
            tg__conf_error(ld, http ? http->key : active->key,
                           "health.active.http.method must be an upper-case method like GET");
        if (svc->health.http_path != NULL && svc->health.http_path[0] != '/')
            tg__conf_error(ld, http ? http->key : active->key,
                           "health.active.http.path must start with '/'");
    }
    if (svc->health.base_ejection > svc->health.max_ejection && health != NULL)
        tg__conf_error(ld, health->key,
                       "health.passive: base_ejection is longer than max_ejection");
    if (svc->retry.backoff > svc->retry.backoff_max) {
        const struct tg_ynode *r = tg_ynode_get(v, "retry");
        tg__conf_error(ld, r ? r->key : v->key, "retry: backoff is longer than backoff_max");
    }
    if (hash != NULL && svc->balance != TG_BALANCE_CONSISTENT_HASH)
        tg__conf_error(ld, hash->key,
                       "service '%s' sets hash but balances with another policy; add "
                       "balance: consistent_hash",
                       svc->name);
}
