/*
 * JSON-RPC caching rules (rpc_rules.c): which calls are kept, their canonical key, how long.
 */
#ifndef TG_CACHE_RPC_RULES_H
#define TG_CACHE_RPC_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum tg_rpc_cache_kind {
    TG_RPCC_FOREVER,  /* the answer cannot change */
    TG_RPCC_BLOCK,    /* a read at the block in param block_param (or "latest" when left out) */
    TG_RPCC_LOGS,     /* eth_getLogs: a filter's block range or block hash */
    TG_RPCC_TX,       /* a lookup by transaction hash: kept once its block is final */
    TG_RPCC_REALTIME, /* kept for realtime_ttl */
};

struct tg_rpc_cache_rule {
    const char *method;
    uint8_t kind;        /* enum tg_rpc_cache_kind */
    uint8_t block_param; /* TG_RPCC_BLOCK: the index of the block param */
};

/* What the service knows of its chain: the best head (0: unknown) and the finalized block. */
struct tg_rpc_chain {
    uint64_t head, finalized;
};

/* How a call was keyed. */
struct tg_rpc_cache_how {
    const struct tg_rpc_cache_rule *rule;
    uint64_t block; /* the highest block it reads (block and logs rules) */
    bool by_hash;   /* it names its block by hash */
};

/* The rule of a method; NULL when its answers are never kept. */
const struct tg_rpc_cache_rule *tg_rpc_cache_rule(const char *method, size_t len);

/* Writes the key of a call ("service method canonical-params") to out[0..cap). Returns its
 * length, or -1 when the call is not to be cached now (a block not final yet, "pending", an
 * unknown head, or no room). */
ssize_t tg_rpc_cache_key(const struct tg_rpc_cache_rule *rule, const char *service,
                         const char *method, size_t mlen, const char *params, size_t plen,
                         const struct tg_rpc_chain *ch, char *out, size_t cap,
                         struct tg_rpc_cache_how *how);

/* How long the answer `result` (its JSON text) of a call keyed so may be kept, in ms: 0 for not
 * at all (null, a transaction not final), INT64_MAX for as long as there is room. */
int64_t tg_rpc_cache_ttl(const struct tg_rpc_cache_how *how, const char *result, size_t len,
                         const struct tg_rpc_chain *ch, int64_t realtime_ttl_ms);

#endif
