/*
 * What the balancing policies share (balance.c calls them; one file per policy). A policy sees
 * only the candidates balance.c kept for one pick: usable, untried members of the lowest tier
 * that has any, each with its effective weight (weight × TG_WEIGHT_SCALE, reduced during slow
 * start). It returns the member index it chose.
 */
#ifndef TG_BALANCE_H
#define TG_BALANCE_H

#include "upstream/upstream.h"

#define TG_WEIGHT_SCALE 16

struct tg_candidates {
    uint32_t member[TG_MAX_NODES];
    uint32_t weight[TG_MAX_NODES];
    size_t n;
    uint32_t total; /* sum of weight[] */
};

static inline uint64_t tg_balance_rand(struct tg_service_worker *sw)
{
    uint64_t x = sw->rng;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return sw->rng = x;
}

/* A candidate drawn with probability proportional to its weight; skip (a candidate position)
 * is left out, or pass SIZE_MAX. Returns a candidate position. */
size_t tg_balance_draw(struct tg_service_worker *sw, const struct tg_candidates *c, size_t skip);

int tg_balance_round_robin(struct tg_service *svc, struct tg_service_worker *sw,
                           const struct tg_candidates *c, const struct tg_pick *p);
int tg_balance_least_outstanding(struct tg_service *svc, struct tg_service_worker *sw,
                                 const struct tg_candidates *c, const struct tg_pick *p);
int tg_balance_p2c_ewma(struct tg_service *svc, struct tg_service_worker *sw,
                        const struct tg_candidates *c, const struct tg_pick *p);
int tg_balance_consistent_hash(struct tg_service *svc, struct tg_service_worker *sw,
                               const struct tg_candidates *c, const struct tg_pick *p);

#endif
