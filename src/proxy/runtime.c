/*
 * A runtime is one configuration snapshot with everything built from it: the router, services
 * and nodes, listener TLS contexts and the parsed trusted-proxy ranges. Workers hold a reference
 * for as long as they use it.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cache/cache.h"
#include "core/core.h"
#include "net/tls.h"
#include "auth/keys.h"
#include "proxy/proxy.h"
#include "ratelimit/ratelimit.h"

static int tg__cidr_parse(const char *text, struct tg_cidr *out)
{
    char buf[64];
    const char *slash = strchr(text, '/');
    size_t n = slash ? (size_t)(slash - text) : strlen(text);
    int max;

    if (n >= sizeof(buf))
        return -1;
    memcpy(buf, text, n);
    buf[n] = '\0';
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, buf, out->addr + 12) == 1) {
        /* stored v4-mapped, like client addresses */
        out->addr[10] = out->addr[11] = 0xff;
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        return -1;
    }
    out->bits = (uint8_t)(slash ? atoi(slash + 1) : max);
    if (out->bits > max)
        return -1;
    if (out->family == AF_INET)
        out->bits += 96;
    return 0;
}

bool tg_runtime_trusted(const struct tg_runtime *rt, const struct sockaddr_in6 *peer)
{
    const uint8_t *a = peer->sin6_addr.s6_addr;

    if (peer->sin6_family != AF_INET6)
        return false;
    for (uint32_t i = 0; i < rt->cidr_count; i++) {
        const struct tg_cidr *c = &rt->trusted[i];
        unsigned full = c->bits / 8, rest = c->bits % 8;

        if (memcmp(a, c->addr, full) != 0)
            continue;
        if (rest && ((a[full] ^ c->addr[full]) & (0xff << (8 - rest))) != 0)
            continue;
        return true;
    }
    return false;
}

static void tg__limit_ids(struct tg_limit_conf *l)
{
    l->label = tg_label_intern(TG_LABEL_LIMIT, l->name, 0);
    l->name_hash = tg_rl_name_hash(l->name);
}

/* Limit ids and the table they count in, which outlives snapshots. */
static void tg__runtime_limits(struct tg_runtime *rt)
{
    struct tg_config *cf = rt->cf;

    for (size_t i = 0; i < cf->num_plans; i++)
        tg__limit_ids(&cf->plans[i].limit);
    for (size_t r = 0; r < cf->num_routes; r++)
        for (size_t i = 0; i < cf->routes[r].num_limits; i++)
            if (!cf->routes[r].limits[i].plan)
                tg__limit_ids(&cf->routes[r].limits[i]);
    rt->rl = tg_rl_global(cf->rl_max_keys);
    rt->jwt_slots = tg_calloc(cf->num_routes + 1, sizeof(*rt->jwt_slots));
}

/* The process-wide parts (cluster sync, key table, JWT slots) follow rt only once rt is sure to
 * go live: a reload that fails later must leave them as they were. */
void tg_runtime_commit(struct tg_runtime *rt)
{
    struct tg_config *cf = rt->cf;

    tg_rl_sync_configure(rt->rl, cf->rl_store, cf->rl_sync, cf->rl_deny_on_error);
    tg_identity_configure(cf, rt->jwt_slots);
    /* one store for the process's life: its entries outlive reloads, its bounds follow them */
    if (tg_instance.cache == NULL)
        tg_instance.cache = tg_cache_store_new(cf->cache_max_size, cf->cache_max_object);
    else
        tg_cache_store_resize(tg_instance.cache, cf->cache_max_size, cf->cache_max_object);
}

struct tg_runtime *tg_runtime_new(struct tg_config *cf, struct tg_dns *dns,
                                  const struct tg_runtime *prev, size_t num_workers, char *err,
                                  size_t errlen)
{
    struct tg_runtime *rt = tg_calloc(1, sizeof(*rt));
    struct timespec ts;

    atomic_init(&rt->refs, 1);
    rt->cf = tg_config_take(cf);
    clock_gettime(CLOCK_REALTIME, &ts);
    rt->loaded_at = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    rt->num_workers = num_workers;
    rt->access_sample = cf->access_sample >= 1.0
                            ? UINT64_MAX
                            : (uint64_t)(cf->access_sample * 18446744073709551615.0);
    rt->access_slow_us = cf->access_slow * 1000;
    rt->users = tg_calloc_aligned(64, (num_workers ? num_workers : 1) * sizeof(*rt->users));
    rt->route_labels = tg_calloc(cf->num_routes + 1, sizeof(*rt->route_labels));
    for (size_t i = 0; i < cf->num_routes; i++)
        rt->route_labels[i] = tg_label_intern(TG_LABEL_ROUTE, cf->routes[i].name, 0);
    rt->h1.max_request_line = cf->limits.max_request_line;
    rt->h1.max_header_bytes = cf->limits.max_header_bytes;
    rt->h1.max_headers = cf->limits.max_headers;
    rt->router = tg_router_new(cf);
    rt->listen_tls = tg_calloc(cf->num_listens, sizeof(*rt->listen_tls));
    for (size_t i = 0; i < cf->num_listens; i++) {
        const struct tg_listen_conf *l = &cf->listens[i];

        if (l->tls_cert == NULL)
            continue;
        rt->listen_tls[i] = tg_tls_server_ctx_new(l->tls_cert, l->tls_key, err, errlen);
        if (rt->listen_tls[i] == NULL)
            goto fail;
    }
    rt->trusted = tg_calloc(cf->trusted_proxies.num, sizeof(*rt->trusted));
    for (size_t i = 0; i < cf->trusted_proxies.num; i++) {
        if (tg__cidr_parse(cf->trusted_proxies.items[i], &rt->trusted[rt->cidr_count]) == 0)
            rt->cidr_count++;
    }
    if (tg_upstreams_init(&rt->up, cf, dns, prev ? &prev->up : NULL, num_workers, err, errlen) != 0)
        goto fail;
    tg__runtime_limits(rt);
    return rt;

fail:
    tg_runtime_drop(rt);
    return NULL;
}

struct tg_runtime *tg_runtime_take(struct tg_runtime *rt)
{
    atomic_fetch_add_explicit(&rt->refs, 1, memory_order_relaxed);
    return rt;
}

void tg_runtime_drop(struct tg_runtime *rt)
{
    if (rt == NULL || atomic_fetch_sub_explicit(&rt->refs, 1, memory_order_acq_rel) != 1)
        return;
    tg_upstreams_dispose(&rt->up);
    for (size_t i = 0; rt->listen_tls != NULL && i < rt->cf->num_listens; i++) {
        if (rt->listen_tls[i] != NULL)
            tg_tls_ctx_free(rt->listen_tls[i]);
    }
    free(rt->listen_tls);
    free(rt->trusted);
    free(rt->users);
    free(rt->route_labels);
    free(rt->jwt_slots);
    if (rt->router != NULL)
        tg_router_free(rt->router);
    tg_config_drop(rt->cf);
    free(rt);
}
