/*
 * round_robin: smooth weighted round robin (the nginx scheme). Each pick adds every candidate's
 * weight to its running score, takes the highest, and subtracts the total from the winner, so
 * weights 5:1:1 give a a b a c a a rather than bursts. Scores are per worker and per member.
 */
#include "upstream/balance.h"

int tg_balance_round_robin(struct tg_service *svc, struct tg_service_worker *sw,
                           const struct tg_candidates *c, const struct tg_pick *p)
{
    int64_t *score = sw->smooth;
    size_t best = 0;

    (void)svc;
    (void)p;
    for (size_t i = 0; i < c->n; i++) {
        score[c->member[i]] += c->weight[i];
        if (score[c->member[i]] > score[c->member[best]])
            best = i;
    }
    score[c->member[best]] -= c->total;
    return (int)c->member[best];
}
