/*
 * least_outstanding: the candidate with the fewest requests in flight from this worker relative
 * to its weight. Ties rotate, so an idle service still spreads its requests.
 */
#include "upstream/balance.h"

int tg_balance_least_outstanding(struct tg_service *svc, struct tg_service_worker *sw,
                                 const struct tg_candidates *c, const struct tg_pick *p)
{
    size_t start = sw->rr++ % c->n, best = start;
    uint64_t best_cost = UINT64_MAX;

    for (size_t k = 0; k < c->n; k++) {
        size_t i = (start + k) % c->n;
        const struct tg_node *n = svc->members[c->member[i]].node;
        uint64_t cost = ((uint64_t)n->w[p->worker].in_flight + 1) * 65536 / c->weight[i];

        if (cost < best_cost) {
            best_cost = cost;
            best = i;
        }
    }
    return (int)c->member[best];
}
