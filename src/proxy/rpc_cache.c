/*
 * JSON-RPC calls on routes with a cache section (issue 7): each call is looked up on its own
 * (cache/rpc_rules.c says whether and under which key); a hit is answered from the cache and
 * only the misses go to a node. Answers the rules let us keep are stored once the node's reply
 * is matched to its calls. The entries share the response cache's store: a key starts with the
 * service's name, so it never meets an HTTP key ("METHOD host path").
 */
#include <string.h>

#include "cache/cache.h"
#include "core/core.h"
#include "proxy/jsonrpc_txn.h"

/*
 * The service's best head and its finalized block. The finalized block is the highest block a
 * node's health probes got for the "finalized" tag, never above the head: the node knows when
 * its chain finalizes, and a finalized block never goes back, so a node that went down since
 * still tells the truth. Without active probes, or when no node knows the tag (older nodes, dev
 * chains), it is the head minus jsonrpc.finality_depth.
 */
static struct tg_rpc_chain tg__chain(const struct tg_service *svc)
{
    struct tg_rpc_chain ch = {atomic_load_explicit(&svc->rpc_head, memory_order_relaxed), 0};
    uint32_t depth = svc->conf->rpc.finality_depth;
    uint64_t told = 0;

    for (size_t i = 0; i < svc->num_nodes; i++) {
        const struct tg_node_health *h = &svc->members[i].node->health;
        uint64_t head = atomic_load_explicit(&h->head_block, memory_order_relaxed);
        uint64_t finalized = atomic_load_explicit(&h->finalized_block, memory_order_relaxed);

        ch.head = TG_MAX(ch.head, head);
        told = TG_MAX(told, finalized);
    }
    if (told != 0)
        ch.finalized = TG_MIN(told, ch.head);
    else
        ch.finalized = ch.head > depth ? ch.head - depth : 0;
    return ch;
}

bool tg_rpc_cache_lookup(struct tg_txn *t, uint32_t i, struct tg_service *svc)
{
    struct tg_rpc_txn *r = t->rpc;
    const struct tg_rpc_call *c = &r->calls[i];
    const struct tg_rpc_cache_rule *rule =
        tg_rpc_cache_rule(r->body + c->method_off, c->method_len);
    struct tg_rpc_chain ch;
    struct tg_cache_entry *e;
    size_t room = c->method_len + c->params_len + 256;
    ssize_t n;

    if (rule == NULL || tg_instance.cache == NULL || c->id_kind == TG_RPC_ID_ABSENT) {
        tg_cache_count(t, TG_CACHED_BYPASS);
        return false;
    }
    ch = tg__chain(svc);
    tg_sbuf_reserve(&r->keys, room);
    n = tg_rpc_cache_key(rule, svc->conf->name, r->body + c->method_off, c->method_len,
                         r->body + c->params_off, c->params_len, &ch, r->keys.base + r->keys.len,
                         room, &r->how[i]);
    if (n < 0) { /* not final yet, "pending"... */
        tg_cache_count(t, TG_CACHED_BYPASS);
        return false;
    }
    e = tg_cache_lookup(tg_instance.cache, tg_cache_hash(r->keys.base + r->keys.len, (size_t)n),
                        r->keys.base + r->keys.len, (size_t)n);
    if (e != NULL && tg_loop_wall_ms(t->conn->worker->loop) < e->fresh_ms) {
        r->hit[i] = e;
        r->local[i] = TG_RPC_CACHED;
        tg_cache_count(t, TG_CACHED_HIT);
        return true;
    }
    if (e != NULL)
        tg_cache_entry_unref(e);
    r->ckey_off[i] = (uint32_t)r->keys.len;
    r->ckey_len[i] = (uint32_t)n;
    r->keys.len += (size_t)n;
    r->to_store = true;
    tg_cache_count(t, TG_CACHED_MISS);
    return false;
}

void tg_rpc_cache_store(struct tg_txn *t)
{
    struct tg_rpc_txn *r = t->rpc;
    int64_t now = tg_loop_wall_ms(t->conn->worker->loop);

    tg_rpc_match_all(r);
    for (uint32_t i = 0; i < r->env.num; i++) {
        const struct tg_rpc_reply *rep = &r->span[i];
        const struct tg_sbuf *b;
        struct tg_cache_entry *e;
        struct tg_rpc_chain ch;
        int64_t ttl;

        if (r->ckey_len[i] == 0 || r->local[i] != 0 || rep->len == 0 || rep->has_error ||
            r->answer[r->group[i]] < 0)
            continue;
        b = &r->legs[r->answer[r->group[i]]].got;
        ch = tg__chain(r->groups[r->group[i]]);
        ttl = tg_rpc_cache_ttl(&r->how[i], b->base + rep->result_off, rep->result_len, &ch,
                               (int64_t)t->route->cache->realtime_ttl);
        if (ttl <= 0)
            continue;
        e = tg_cache_entry_new(r->keys.base + r->ckey_off[i], r->ckey_len[i], "", 0,
                               rep->result_len);
        if (e == NULL)
            continue;
        memcpy(e->body, b->base + rep->result_off, rep->result_len);
        e->status = 200;
        e->stored_ms = now;
        e->fresh_ms = e->swr_ms = e->sie_ms = ttl == INT64_MAX ? INT64_MAX : now + ttl;
        tg_cache_insert(tg_instance.cache, e);
    }
    r->to_store = false;
}

void tg_rpc_cache_release(struct tg_rpc_txn *r)
{
    for (uint32_t i = 0; i < r->env.num && i < r->cap; i++) {
        if (r->hit[i] != NULL)
            tg_cache_entry_unref(r->hit[i]);
        r->hit[i] = NULL;
    }
    if (r->keys.cap > 65536)
        tg_sbuf_dispose(&r->keys);
}
