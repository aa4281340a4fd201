/*
 * The JSON-RPC state of a transaction, shared by jsonrpc.c (calls, policies, replies) and
 * fanout.c (legs sent at once).
 *
 * The calls that go to nodes are grouped by service; each group is sent as one leg, a write
 * group of a service with jsonrpc.broadcast: N as N legs to different nodes. A single leg is
 * sent by the client's transaction itself; several are sent at once by child transactions
 * (fanout.c), each with its own attempts.
 */
#ifndef TG_PROXY_JSONRPC_TXN_H
#define TG_PROXY_JSONRPC_TXN_H

#include "auth/keystore.h"
#include "cache/cache.h"
#include "cache/rpc_rules.h"
#include "core/sbuf.h"
#include "jsonrpc/jsonrpc.h"
#include "proxy/proxy.h"

#define TG_RPC_MAX_GROUPS 8 /* the route's service and up to 7 jsonrpc.routes services */
#define TG_RPC_MAX_LEGS   16
#define TG_RPC_CACHED     1 /* local[]: answered from the cache */

enum tg_rpc_leg_state {
    TG_LEG_RUNNING,
    TG_LEG_OK,     /* answered: the group's answer */
    TG_LEG_KEPT,   /* answered with what no other leg may improve on: the answer if none does */
    TG_LEG_FAILED, /* no answer */
    TG_LEG_CANCELLED
};

struct tg_rpc_leg {
    struct tg_txn *txn; /* sending it, while it runs: the client's transaction or a child */
    struct tg_sbuf got; /* the node's reply body */
    int status;         /* its HTTP status */
    uint8_t group;
    uint8_t state;
    bool clean;  /* every reply item is a result (or "already known") */
    bool linger; /* another copy succeeded: this one ends once its request is sent */
};

struct tg_rpc_txn {
    struct tg_rpc_txn *next_free;
    struct tg_rpc_envelope env;
    uint32_t cap;              /* entries of the per-call arrays */
    struct tg_rpc_call *calls; /* env.calls */
    int32_t *local;            /* per call: 0 = sent to a node, else the error code answered here */
    const char **why;          /* per call: the message of a local error */
    uint8_t *group;            /* per call: index into groups */
    struct tg_rpc_reply *replies;
    struct tg_rpc_reply *span; /* per call: its reply, once matched (len 0: none) */
    /* routes with a cache (rpc_cache.c), per call: */
    struct tg_cache_entry **hit;   /* the cached answer (local == TG_RPC_CACHED) */
    uint32_t *ckey_off, *ckey_len; /* the key in keys, to store the answer under (len 0: none) */
    struct tg_rpc_cache_how *how;  /* how it was keyed */
    struct tg_sbuf keys;
    const char *body; /* the client's body, in conn->in */
    size_t len;
    struct tg_service *groups[TG_RPC_MAX_GROUPS];
    struct tg_str send[TG_RPC_MAX_GROUPS];   /* each group's body */
    int8_t answer[TG_RPC_MAX_GROUPS];        /* the leg answering each group; -1: none yet */
    const char *failed[TG_RPC_MAX_GROUPS];   /* why a group has no answer */
    struct tg_rpc_leg legs[TG_RPC_MAX_LEGS]; /* legs of a group are next to each other */
    uint8_t num_groups, num_legs, running;
    uint8_t writes;               /* bit per group: the group has a call that changes state */
    bool whole;                   /* one group with every call: the client's bytes go as they are */
    bool head;                    /* a single eth_blockNumber: answers must not go backwards */
    bool starting;                /* legs are being started: the answer waits for the last one */
    bool to_store;                /* a call's answer is to be cached */
    char caller[TG_KEY_NAME_MAX]; /* the consumer's name, kept for the limits */
    struct tg_wsrpc *ws;          /* a JSON-RPC WebSocket (wsrpc.c) */
    struct tg_sbuf fwd;           /* the composed bodies of the groups */
    struct tg_sbuf out;           /* the reply to the client when rebuilt */
};

/* Whether leg k's group is sent as several legs (a broadcast write). */
static inline bool tg_rpc_leg_copies(const struct tg_rpc_txn *r, uint8_t k)
{
    return (k > 0 && r->legs[k - 1].group == r->legs[k].group) ||
           (k + 1 < r->num_legs && r->legs[k + 1].group == r->legs[k].group);
}

/* rpc_cache.c: routes with a cache section */
/* Call i (checked, going to svc) answered from the cache (true), or its key kept to store
 * the answer. */
bool tg_rpc_cache_lookup(struct tg_txn *t, uint32_t i, struct tg_service *svc);
/* The answers of the calls whose keys were kept, stored (after tg_rpc_match_all). */
void tg_rpc_cache_store(struct tg_txn *t);
void tg_rpc_cache_release(struct tg_rpc_txn *r);
/* jsonrpc.c: finds each forwarded call's reply (span[]). */
void tg_rpc_match_all(struct tg_rpc_txn *r);

/* jsonrpc.c: every group is answered (or failed): the client gets the answer. */
void tg_rpc_answer(struct tg_txn *t);
/* fanout.c: sends every leg of t's JSON-RPC request at once. */
void tg_rpc_fan_out(struct tg_txn *t);
/* fanout.c: leg k of t's request ended in state; why says why when it failed. */
void tg_rpc_leg_end(struct tg_txn *t, uint8_t k, enum tg_rpc_leg_state state, const char *why);

#endif
