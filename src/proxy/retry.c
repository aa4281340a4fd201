/*
 * The retry policy (issue 4): when a failed attempt may go to another node, the retry budget
 * that keeps a failing fleet from being hit by a storm of retries, and the backoff between
 * attempts.
 *
 * The budget is Envoy's and Finagle's idea: retries in the last 10 seconds may be at most
 * retry.budget of the requests in that window, plus min_per_second × 10 so a quiet service can
 * still retry. Each worker counts its own requests and retries per second (plain stores, no
 * atomics on the request path); a retry, which is rare, sums the windows of every worker.
 */
#include "core/core.h"
#include "proxy/proxy.h"
#include "upstream/balance.h"

static struct tg_budget_slot *tg__slot(struct tg_service_worker *sw, int64_t sec)
{
    struct tg_budget_slot *s = &sw->budget[sec % TG_BUDGET_SLOTS];

    if (s->sec != sec) {
        __atomic_store_n(&s->requests, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->retries, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->sec, sec, __ATOMIC_RELAXED);
    }
    return s;
}

void tg_retry_note_request(struct tg_service *svc, uint32_t worker, uint64_t now_us)
{
    struct tg_budget_slot *s = tg__slot(&svc->w[worker], (int64_t)(now_us / 1000000));

    __atomic_store_n(&s->requests, s->requests + 1, __ATOMIC_RELAXED);
}

/* Takes one retry from the budget of svc, or says it is spent. */
static bool tg__budget_take(struct tg_service *svc, uint32_t worker, uint64_t now_us,
                            size_t num_workers)
{
    const struct tg_retry_conf *rc = &svc->conf->retry;
    int64_t sec = (int64_t)(now_us / 1000000);
    uint64_t requests = 0, retries = 0;
    struct tg_budget_slot *own;

    for (size_t w = 0; w < num_workers; w++) {
        for (size_t i = 0; i < TG_BUDGET_SLOTS; i++) {
            const struct tg_budget_slot *s = &svc->w[w].budget[i];
            int64_t at = __atomic_load_n(&s->sec, __ATOMIC_RELAXED);

            if (at > sec - TG_BUDGET_SLOTS && at <= sec) {
                requests += __atomic_load_n(&s->requests, __ATOMIC_RELAXED);
                retries += __atomic_load_n(&s->retries, __ATOMIC_RELAXED);
            }
        }
    }
    if ((double)(retries + 1) >
        rc->budget * (double)requests + (double)rc->budget_floor * TG_BUDGET_SLOTS)
        return false;
    own = tg__slot(&svc->w[worker], sec);
    __atomic_store_n(&own->retries, own->retries + 1, __ATOMIC_RELAXED);
    return true;
}

bool tg_method_idempotent(int method)
{
    return method == TG_METHOD_GET || method == TG_METHOD_HEAD || method == TG_METHOD_PUT ||
           method == TG_METHOD_DELETE || method == TG_METHOD_OPTIONS || method == TG_METHOD_TRACE;
}

bool tg_retry_wanted(const struct tg_txn *t, enum tg_fail why, int status)
{
    const struct tg_retry_conf *rc = &t->svc->conf->retry;
    bool wanted;

    if (t->attempts >= rc->attempts || why == TG_FAIL_BAD)
        return false;
    switch (why) {
    case TG_FAIL_CONNECT:
        wanted = rc->on & TG_RETRY_CONNECT;
        break;
    case TG_FAIL_RESET:
        wanted = rc->on & TG_RETRY_RESET;
        break;
    case TG_FAIL_TIMEOUT:
        wanted = rc->on & TG_RETRY_TIMEOUT;
        break;
    case TG_FAIL_RPC:
        wanted = true; /* the node said it cannot answer */
        break;
    default:
        wanted = tg_status_in(&rc->statuses, status);
        break;
    }
    if (!wanted)
        return false;
    /* Safe to send again: nothing reached the node, or the request may be repeated and we
     * still hold all of it. A body we streamed on cannot be sent twice. */
    return !t->sent || (t->replay && (tg_method_idempotent(t->req.method_id) ||
                                      t->route->idempotent || t->rpc_idempotent));
}

bool tg_retry_budget_take(struct tg_txn *t)
{
    struct tg_worker *w = t->conn->worker;

    if (tg__budget_take(t->svc, w->id, tg_loop_now_us(w->loop), t->rt->num_workers))
        return true;
    w->stats.retry_budget_exhausted++;
    return false;
}

tg_msec_t tg_retry_backoff(struct tg_service *svc, uint32_t worker, unsigned attempt)
{
    const struct tg_retry_conf *rc = &svc->conf->retry;
    uint64_t cap = rc->backoff;

    for (unsigned i = 2; i < attempt && cap < rc->backoff_max; i++)
        cap *= 2;
    if (cap > rc->backoff_max)
        cap = rc->backoff_max;
    if (cap == 0)
        return 0;
    /* full jitter: anywhere in [0, cap], so retries of many requests do not line up */
    return tg_balance_rand(&svc->w[worker]) % (cap + 1);
}
