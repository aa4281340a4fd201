/*
 * The JSON-RPC answer of an active probe (probe_rpc.c), for probe.c.
 */
#ifndef TG_UPSTREAM_PROBE_RPC_H
#define TG_UPSTREAM_PROBE_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tg_probe_result {
    bool ok;            /* transport and answer fine (HTTP: the status is judged later) */
    int status;         /* HTTP status, 0 when none came */
    uint64_t head;      /* JSON-RPC head block */
    bool syncing;       /* JSON-RPC: eth_syncing answered something other than false */
    bool refused;       /* JSON-RPC: the node refused the batch only the finalized call made one */
    uint64_t finalized; /* JSON-RPC: the number of the node's "finalized" block, 0 = unknown */
    char why[112];      /* on failure: "probe: ..." */
};

/* Judges the body of a JSON-RPC probe's answer: one reply, or a batch of the head query (id 1)
 * with eth_syncing (id 2, when syncing) and the "finalized" block (id 3, when finalized). Fills
 * r->head, r->syncing and r->finalized; on failure r->why (and r->refused for a node that does
 * not take the batch only the finalized call made). */
bool tg_probe_rpc_answer(bool batch, bool syncing, bool finalized, const char *body, size_t len,
                         struct tg_probe_result *r);

#endif
