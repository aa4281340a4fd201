/*
 * Node choice for one attempt of a request (DESIGN §2 "balancer picks a node"): which nodes may
 * take it (health, tiers, connection limits, what this request already tried), then the
 * service's policy among them.
 *
 * Tiers: the lowest tier with a usable node wins, so tier 1 serves only while tier 0 has none
 * (down, ejected, lagging or at max_connections). An ejected node whose ejection ran out takes
 * exactly one trial request before the others are considered: whoever moves its eject_until
 * forward first (a compare-and-swap) owns the trial, and an abandoned trial simply expires.
 */
#include "upstream/balance.h"
#include "core/core.h"

/* How long a claimed trial keeps others off before another trial may start. */
#define TG_TRIAL_HOLD_MS 10000

static uint32_t tg__effective_weight(const struct tg_member *m, const struct tg_health_conf *hc,
                                     int64_t now_ms)
{
    uint32_t w = m->conf->weight * TG_WEIGHT_SCALE;
    int64_t since;

    if (hc->slow_start == 0)
        return w;
    since = now_ms - atomic_load_explicit(&m->node->health.usable_at, memory_order_relaxed);
    if (since < 0 || (uint64_t)since >= hc->slow_start)
        return w;
    /* a ramp from a tenth of the weight, so a recovering node is tried at all */
    w = (uint32_t)((uint64_t)w * (uint64_t)since / hc->slow_start);
    return w > m->conf->weight * TG_WEIGHT_SCALE / 10 ? w
                                                      : m->conf->weight * TG_WEIGHT_SCALE / 10 + 1;
}

/* An ejected node whose time is up: claim its single trial. */
static bool tg__claim_trial(struct tg_node *n, int64_t now_ms)
{
    long long until = atomic_load_explicit(&n->health.eject_until, memory_order_relaxed);

    return now_ms >= until && atomic_compare_exchange_strong_explicit(
                                  &n->health.eject_until, &until, now_ms + TG_TRIAL_HOLD_MS,
                                  memory_order_acq_rel, memory_order_relaxed);
}

static bool tg__tried(const struct tg_pick *p, size_t i)
{
    return (p->tried[i >> 6] >> (i & 63)) & 1;
}

size_t tg_balance_draw(struct tg_service_worker *sw, const struct tg_candidates *c, size_t skip)
{
    uint32_t total = c->total - (skip < c->n ? c->weight[skip] : 0);
    uint32_t r;

    if (total == 0)
        return skip == 0 && c->n > 1 ? 1 : 0;
    r = (uint32_t)(tg_balance_rand(sw) % total);
    for (size_t i = 0; i < c->n; i++) {
        if (i == skip)
            continue;
        if (r < c->weight[i])
            return i;
        r -= c->weight[i];
    }
    return skip == 0 && c->n > 1 ? 1 : 0;
}

static void tg__add(struct tg_candidates *c, uint32_t *tier, uint32_t t, uint32_t member,
                    uint32_t weight)
{
    if (t > *tier)
        return;
    if (t < *tier) {
        *tier = t;
        c->n = 0;
        c->total = 0;
    }
    c->member[c->n] = member;
    c->weight[c->n] = weight;
    c->total += weight;
    c->n++;
}

int tg__balance_pick(struct tg_service *svc, struct tg_pick *p)
{
    const struct tg_health_conf *hc = &svc->conf->health;
    struct tg_service_worker *sw = &svc->w[p->worker];
    int64_t now_ms = (int64_t)(p->now_us / 1000);
    struct tg_candidates c;
    uint32_t tier = UINT32_MAX;

    p->trial = false;
    c.n = 0;
    c.total = 0;
    for (size_t i = 0; i < svc->num_nodes; i++) {
        const struct tg_member *m = &svc->members[i];
        struct tg_node *n = m->node;
        unsigned flags = atomic_load_explicit(&n->health.flags, memory_order_relaxed);
        uint32_t mc = m->conf->max_connections;

        if (tg__tried(p, i) || m->conf->drain)
            continue;
        if (flags == TG_NODE_EJECTED && tg__claim_trial(n, now_ms)) {
            p->trial = true;
            return (int)i;
        }
        if (flags != 0)
            continue;
        /* at its connection limit, a node still takes requests on this worker's idle ones */
        if (mc != 0 && n->w[p->worker].idle == NULL &&
            (uint32_t)atomic_load_explicit(&n->health.connections, memory_order_relaxed) >= mc)
            continue;
        tg__add(&c, &tier, m->conf->tier, (uint32_t)i, tg__effective_weight(m, hc, now_ms));
    }
    if (c.n == 0 && hc->panic) {
        /* nothing usable: spread over every node rather than fail (Envoy's panic threshold) */
        for (size_t i = 0; i < svc->num_nodes; i++)
            if (!tg__tried(p, i))
                tg__add(&c, &tier, 0, (uint32_t)i, svc->members[i].conf->weight * TG_WEIGHT_SCALE);
    }
    if (c.n == 0)
        return -1;
    if (c.n == 1)
        return (int)c.member[0];
    switch (svc->conf->balance) {
    case TG_BALANCE_ROUND_ROBIN:
        return tg_balance_round_robin(svc, sw, &c, p);
    case TG_BALANCE_LEAST_OUTSTANDING:
        return tg_balance_least_outstanding(svc, sw, &c, p);
    case TG_BALANCE_CONSISTENT_HASH:
        return tg_balance_consistent_hash(svc, sw, &c, p);
    default:
        return tg_balance_p2c_ewma(svc, sw, &c, p);
    }
}
