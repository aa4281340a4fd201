/*
 * consistent_hash: a ring of points per node (service.c builds it); a request goes to the first
 * candidate clockwise from its key's hash, so while nodes stay up a key keeps its node, and a
 * node leaving moves only its own keys. Bounded load: a node already holding more than
 * load_factor × the average in-flight requests of this worker is passed over for the next one
 * on the ring, so one hot key cannot overload a node.
 */
#include "upstream/balance.h"

int tg_balance_consistent_hash(struct tg_service *svc, struct tg_service_worker *sw,
                               const struct tg_candidates *c, const struct tg_pick *p)
{
    uint64_t is_cand[TG_MAX_NODES / 64] = {0};
    uint64_t total = 0, bound;
    size_t lo = 0, hi = svc->ring_len;
    int first = -1;

    (void)sw;
    for (size_t i = 0; i < c->n; i++) {
        uint32_t m = c->member[i];

        is_cand[m >> 6] |= 1ull << (m & 63);
        total += svc->members[m].node->w[p->worker].in_flight;
    }
    /* ceil(load_factor × (in flight + this one) / candidates) */
    bound = (uint64_t)(svc->conf->hash_load_factor * (double)(total + 1) / (double)c->n + 0.999999);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (svc->ring[mid].hash < p->key)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t k = 0; k < svc->ring_len; k++) {
        uint32_t m = svc->ring[(lo + k) % svc->ring_len].member;

        if (!((is_cand[m >> 6] >> (m & 63)) & 1))
            continue;
        if (first < 0)
            first = (int)m;
        if (svc->members[m].node->w[p->worker].in_flight + 1 <= bound)
            return (int)m;
    }
    return first >= 0 ? first : (int)c->member[0];
}
