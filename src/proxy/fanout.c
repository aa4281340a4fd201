/*
 * JSON-RPC fan-out: the legs of one request sent at once (issue 6).
 *
 * A batch whose calls go to several services (jsonrpc.routes) is split into one leg per
 * service; a write (eth_sendRawTransaction...) to a service with jsonrpc.broadcast: N goes to N
 * different nodes. Each leg is a child transaction (tg_txn_leg): the client's request head,
 * the leg's body, and the whole attempt machinery of its own (node pick, retries, timeouts,
 * hedges, pools, health accounting). A child never writes to the client: its end comes here.
 *
 * The first leg of a group to answer with a success gives the group's answer and the group's
 * other legs are cancelled (their nodes are not blamed). An answer that is only the node's
 * word (an error of the caller's, or a node error no other node could be asked about) is kept
 * until the group's legs have all ended; a failed leg leaves its reason. Once every leg has
 * ended, the client's transaction answers (jsonrpc.c), in the client's order.
 *
 * A child that ends inside its own event handler is freed to a list recycled when the batch of
 * events ends (tg_txn_free), so the handler may still look at it; the client's transaction may
 * answer, and even end, from there.
 */
#include <string.h>

#include "core/core.h"
#include "proxy/jsonrpc_txn.h"

void tg_rpc_fan_out(struct tg_txn *t)
{
    struct tg_rpc_txn *r = t->rpc;
    uint64_t avoid[TG_MAX_NODES / 64];

    r->starting = true;
    for (uint8_t k = 0; k < r->num_legs; k++) {
        struct tg_rpc_leg *l = &r->legs[k];
        bool copies = tg_rpc_leg_copies(r, k);
        struct tg_txn *leg;

        if (k == 0 || r->legs[k - 1].group != l->group) {
            memset(avoid, 0, sizeof(avoid));
        }
        leg = tg_txn_leg(t);
        leg->rpc_leg = k;
        leg->rpc_idempotent = !(r->writes >> l->group & 1);
        l->txn = leg;
        r->running++;
        /* copies of a write go to different nodes */
        tg_txn_attempt_on(leg, r->groups[l->group], copies ? avoid : NULL);
        for (size_t i = 0; copies && i < TG_ARRAY_SIZE(avoid); i++)
            avoid[i] |= leg->pick.tried[i];
    }
    r->starting = false;
    if (r->running == 0)
        tg_rpc_answer(t);
}

/* Leg k is a copy of a write whose group has its answer: it leaves its node connection to
 * linger, so that the node still gets the whole write, and ends. */
static void tg__leg_let_go(struct tg_rpc_txn *r, uint8_t k)
{
    struct tg_rpc_leg *l = &r->legs[k];
    struct tg_txn *leg = l->txn;

    tg_upconn_linger(leg->up, leg->svc->conf->response_timeout);
    leg->up = NULL;
    l->state = TG_LEG_CANCELLED;
    l->txn = NULL;
    r->running--;
    tg_txn_free(leg); /* its attempt is abandoned: the node is not judged */
}

/* The group has its answer. Its other copies that sent their request let go now; the others
 * do once they have sent it (tg_rpc_leg_sent), and the answer waits for them. */
static void tg__release_copies(struct tg_rpc_txn *r, uint8_t g)
{
    for (uint8_t k = 0; k < r->num_legs; k++) {
        struct tg_rpc_leg *l = &r->legs[k];
        const struct tg_txn *leg = l->txn;

        if (l->group != g || l->state != TG_LEG_RUNNING || leg == NULL)
            continue;
        if (leg->up != NULL && leg->up->state == TG_UP_READY && leg->req_state == TG_REQ_DONE)
            tg__leg_let_go(r, k);
        else
            l->linger = true;
    }
}

void tg_rpc_leg_sent(struct tg_txn *t)
{
    struct tg_txn *parent = t->parent;
    struct tg_rpc_txn *r = t->rpc;

    if (!r->legs[t->rpc_leg].linger)
        return;
    tg__leg_let_go(r, t->rpc_leg);
    if (r->running == 0 && !r->starting)
        tg_rpc_answer(parent);
}

void tg_rpc_leg_end(struct tg_txn *t, uint8_t k, enum tg_rpc_leg_state state, const char *why)
{
    struct tg_rpc_txn *r = t->rpc;
    struct tg_rpc_leg *l = &r->legs[k];
    uint8_t g = l->group;
    int8_t best = r->answer[g];

    if (l->state != TG_LEG_RUNNING)
        return;
    l->state = (uint8_t)state;
    r->running--;
    if (l->txn != NULL && l->txn != t)
        tg_txn_free(l->txn);
    l->txn = NULL;
    if (state == TG_LEG_OK && (best < 0 || r->legs[best].state != TG_LEG_OK)) {
        r->answer[g] = (int8_t)k;
        tg__release_copies(r, g);
    } else if (state == TG_LEG_KEPT && best < 0) {
        r->answer[g] = (int8_t)k;
    } else if (state == TG_LEG_FAILED && r->failed[g] == NULL) {
        r->failed[g] = why;
    }
    if (r->running == 0 && !r->starting)
        tg_rpc_answer(t);
}
