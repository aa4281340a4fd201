/*
 * p2c_ewma (the default): power of two choices. Two candidates are drawn at random in proportion
 * to their weights and the one with the lower cost wins, cost being its latency EWMA times its
 * requests in flight plus one, divided by its weight. Drawing two instead of scanning all keeps
 * the workers from herding onto the same "best" node, and a slow node loses nearly every
 * comparison it enters. Costs within 25% of each other count as equal, so nodes that are equally
 * fast share the traffic instead of the one measured a little slower by noise being starved.
 *
 * A node not picked for a while has its EWMA halved per TG_EWMA_HALF_LIFE of silence, so a node
 * that was slow once (a cold first request, a failure penalty) is tried again within a second or
 * two and can win back its share, while a node that is really 20 times slower gets one request
 * per second or so. A node with no sample yet is tried once at a time until its first answer
 * gives it one.
 */
#include "upstream/balance.h"

static uint64_t tg__cost(const struct tg_node *n, uint32_t worker, uint64_t now_us, uint32_t weight)
{
    const struct tg_node_worker *nw = &n->w[worker];
    uint64_t e = tg_node_ewma(nw, now_us);

    if (nw->ewma_us == 0 || tg_node_ewma_stale(n, nw))
        return nw->in_flight == 0 ? 0 : UINT64_MAX / 2;
    return (e + 1) * (nw->in_flight + 1) * TG_WEIGHT_SCALE / weight;
}

int tg_balance_p2c_ewma(struct tg_service *svc, struct tg_service_worker *sw,
                        const struct tg_candidates *c, const struct tg_pick *p)
{
    size_t a = tg_balance_draw(sw, c, SIZE_MAX);
    size_t b = tg_balance_draw(sw, c, a);
    uint64_t ca = tg__cost(svc->members[c->member[a]].node, p->worker, p->now_us, c->weight[a]);
    uint64_t cb = tg__cost(svc->members[c->member[b]].node, p->worker, p->now_us, c->weight[b]);

    /* Costs within a quarter of each other are a tie, and a tie goes to the first draw (itself
     * random): otherwise among equal nodes the one whose estimate is higher by noise alone would
     * lose every comparison it enters and starve. */
    if (ca / 4 * 5 >= cb && cb / 4 * 5 >= ca)
        return (int)c->member[a];
    return (int)c->member[cb < ca ? b : a];
}
