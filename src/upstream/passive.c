/*
 * Passive health: outlier ejection from the outcomes of real requests (Envoy's outlier
 * detection, HAProxy's observe). Any worker reports; the state is the node's atomics, so every
 * worker sees an ejection at once.
 *
 * consecutive_failures failed exchanges in a row eject a node for base_ejection × its ejection
 * level (capped at max_ejection); the level grows with each ejection and starts over once the
 * node has served for max_ejection since it last came back. No more than max_ejection_percent
 * of a service's nodes are ejected at a time. When the ejection runs out, balance.c sends one
 * trial request: success brings the node back (and starts its slow start), failure ejects it
 * again for longer.
 */
#include <stdarg.h>
#include <stdio.h>

#include "core/core.h"
#include "obs/log.h"
#include "upstream/upstream.h"

static int64_t tg__wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tg_node_set_error(struct tg_node *n, const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&n->health.lock);
    va_start(ap, fmt);
    vsnprintf(n->health.last_error, sizeof(n->health.last_error), fmt, ap);
    va_end(ap);
    n->health.last_error_at = tg__wall_ms();
    pthread_mutex_unlock(&n->health.lock);
}

const char *tg_member_state_name(const struct tg_member *m)
{
    unsigned f = atomic_load_explicit(&m->node->health.flags, memory_order_relaxed);

    if (m->conf->drain)
        return "draining";
    if (f & TG_NODE_DOWN)
        return "down";
    if (f & TG_NODE_EJECTED)
        return "ejected";
    if (f & TG_NODE_LAGGING)
        return "lagging";
    return "healthy";
}

/* Whether one more ejected node stays within max_ejection_percent of the service. */
static bool tg__may_eject(const struct tg_service *svc)
{
    size_t ejected = 1;

    for (size_t i = 0; i < svc->num_nodes; i++) {
        unsigned f =
            atomic_load_explicit(&svc->members[i].node->health.flags, memory_order_relaxed);
        ejected += (f & TG_NODE_EJECTED) != 0;
    }
    return ejected * 100 <= (size_t)svc->conf->health.max_ejection_percent * svc->num_nodes;
}

static void tg__eject(const struct tg_service *svc, struct tg_node *n, int64_t now_ms, bool trial)
{
    const struct tg_health_conf *hc = &svc->conf->health;
    struct tg_node_health *h = &n->health;
    unsigned level = atomic_load_explicit(&h->eject_level, memory_order_relaxed);
    int64_t back = atomic_load_explicit(&h->usable_at, memory_order_relaxed);
    uint64_t ms;

    if (!trial && !tg__may_eject(svc))
        return;
    if (!trial && now_ms - back > (int64_t)hc->max_ejection)
        level = 0; /* it served well long enough: forget earlier ejections */
    level++;
    ms = hc->base_ejection * level;
    if (ms > hc->max_ejection)
        ms = hc->max_ejection;
    atomic_store_explicit(&h->eject_level, level, memory_order_relaxed);
    atomic_store_explicit(&h->eject_until, now_ms + (int64_t)ms, memory_order_release);
    atomic_store_explicit(&h->failures, 0, memory_order_relaxed);
    if (!trial && (atomic_fetch_or_explicit(&h->flags, TG_NODE_EJECTED, memory_order_acq_rel) &
                   TG_NODE_EJECTED))
        return; /* another worker ejected it first */
    atomic_fetch_add_explicit(&h->ejections, 1, memory_order_relaxed);
    tg_log(TG_LOG_WARN, "service %s: node %s ejected for %llums (%s)", n->service, n->conf->url,
           (unsigned long long)ms, trial ? "its trial request failed" : "consecutive failures");
}

void tg_node_report(const struct tg_service *svc, struct tg_node *n, bool ok, bool trial,
                    uint64_t now_us, const char *why)
{
    struct tg_node_health *h = &n->health;
    int64_t now_ms = (int64_t)(now_us / 1000);
    unsigned f;

    if (ok) {
        if (atomic_load_explicit(&h->failures, memory_order_relaxed) != 0)
            atomic_store_explicit(&h->failures, 0, memory_order_relaxed);
        if (trial && (atomic_fetch_and_explicit(&h->flags, ~(unsigned)TG_NODE_EJECTED,
                                                memory_order_acq_rel) &
                      TG_NODE_EJECTED)) {
            atomic_store_explicit(&h->usable_at, now_ms, memory_order_relaxed);
            tg_log(TG_LOG_INFO, "service %s: node %s is back after its trial request", n->service,
                   n->conf->url);
        }
        return;
    }
    if (why != NULL)
        tg_node_set_error(n, "%s", why);
    if (!svc->conf->health.passive)
        return;
    if (trial) {
        tg__eject(svc, n, now_ms, true);
        return;
    }
    f = atomic_fetch_add_explicit(&h->failures, 1, memory_order_relaxed) + 1;
    if (f >= svc->conf->health.consecutive_failures &&
        !(atomic_load_explicit(&h->flags, memory_order_relaxed) & TG_NODE_EJECTED))
        tg__eject(svc, n, now_ms, false);
}
