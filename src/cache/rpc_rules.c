/*
 * Which JSON-RPC calls the response cache keeps, and under which key (issue 7): the one table
 * of rules, documented in docs/cache.md ("JSON-RPC").
 *
 * A call's key is the service, the method and its params made canonical: whitespace outside
 * strings dropped, hex strings ("0x...") lowercased (checksummed and lowercase addresses are the
 * same account), and the block tag it reads resolved to a number ("latest" to the service's head,
 * "safe" and "finalized" to its finalized block, "earliest" to 0). The caller says what the head
 * and the finalized block are (proxy/rpc_cache.c: the finalized block the nodes' probes report,
 * else the head minus jsonrpc.finality_depth). What a call at a block number answers never
 * changes once that block is final, so:
 *
 *   forever        answers that cannot change: the chain id, lookups by block hash
 *   block          reads at a block (a param, or a default of "latest"): kept only when the block
 *                  is at or below the service's finalized block
 *   logs           eth_getLogs: kept when the filter names a block hash, or its toBlock is final
 *   transaction    lookups by transaction hash: kept only when the answer is not null and its
 *                  blockNumber is final (a pending transaction's answer changes)
 *   realtime       the head and gas price: kept for route cache.realtime_ttl (1s)
 *
 * Everything else is never kept: writes, filters, subscriptions, "pending", errors (callers check
 * error replies before storing).
 */
#include <stdio.h>
#include <string.h>

#include "cache/rpc_rules.h"
#include "core/core.h"
#include "core/hex.h"

static const struct tg_rpc_cache_rule tg__rules[] = {
    {"eth_chainId", TG_RPCC_FOREVER, 0},
    {"net_version", TG_RPCC_FOREVER, 0},
    {"eth_getBlockByHash", TG_RPCC_FOREVER, 0},
    {"eth_getBlockTransactionCountByHash", TG_RPCC_FOREVER, 0},
    {"eth_getTransactionByBlockHashAndIndex", TG_RPCC_FOREVER, 0},
    {"eth_getUncleByBlockHashAndIndex", TG_RPCC_FOREVER, 0},
    {"eth_getBlockReceipts", TG_RPCC_BLOCK, 0},
    {"eth_getBlockByNumber", TG_RPCC_BLOCK, 0},
    {"eth_getBlockTransactionCountByNumber", TG_RPCC_BLOCK, 0},
    {"eth_getTransactionByBlockNumberAndIndex", TG_RPCC_BLOCK, 0},
    {"eth_getUncleByBlockNumberAndIndex", TG_RPCC_BLOCK, 0},
    {"eth_getBalance", TG_RPCC_BLOCK, 1},
    {"eth_getCode", TG_RPCC_BLOCK, 1},
    {"eth_getTransactionCount", TG_RPCC_BLOCK, 1},
    {"eth_call", TG_RPCC_BLOCK, 1},
    {"eth_getStorageAt", TG_RPCC_BLOCK, 2},
    {"eth_getProof", TG_RPCC_BLOCK, 2},
    {"eth_getLogs", TG_RPCC_LOGS, 0},
    {"eth_getTransactionByHash", TG_RPCC_TX, 0},
    {"eth_getTransactionReceipt", TG_RPCC_TX, 0},
    {"eth_blockNumber", TG_RPCC_REALTIME, 0},
    {"eth_gasPrice", TG_RPCC_REALTIME, 0},
    {"eth_maxPriorityFeePerGas", TG_RPCC_REALTIME, 0},
    {"eth_blobBaseFee", TG_RPCC_REALTIME, 0},
};

const struct tg_rpc_cache_rule *tg_rpc_cache_rule(const char *method, size_t len)
{
    for (size_t i = 0; i < TG_ARRAY_SIZE(tg__rules); i++)
        if (strlen(tg__rules[i].method) == len && memcmp(tg__rules[i].method, method, len) == 0)
            return &tg__rules[i];
    return NULL;
}

/* The block a tag or quantity names; false for "pending", unknown tags, or a head not known. */
static bool tg__block(const char *p, size_t n, const struct tg_rpc_chain *ch, uint64_t *out)
{
    if (tg_hex_quantity(p, n, out))
        return true;
    if (n == 8 && memcmp(p, "earliest", 8) == 0) {
        *out = 0;
        return true;
    }
    if (ch->head == 0)
        return false;
    if (n == 6 && memcmp(p, "latest", 6) == 0) {
        *out = ch->head;
        return true;
    }
    if ((n == 4 && memcmp(p, "safe", 4) == 0) || (n == 9 && memcmp(p, "finalized", 9) == 0)) {
        *out = ch->finalized;
        return true;
    }
    return false;
}

struct tg__canon {
    char *out, *end;
    const struct tg_rpc_chain *ch;
    uint64_t block; /* the highest block the call reads */
    bool has_block; /* a block was resolved */
    bool by_hash;   /* a blockHash names the block */
    bool refused;   /* "pending" or an unknown tag where a block goes */
};

static bool tg__put(struct tg__canon *c, const char *p, size_t n)
{
    if ((size_t)(c->end - c->out) < n)
        return false;
    memcpy(c->out, p, n);
    c->out += n;
    return true;
}

/* A string that names a block (it is where a block goes): written as the resolved quantity. */
static bool tg__put_block(struct tg__canon *c, const char *s, size_t n)
{
    uint64_t b;
    char num[24];

    if (!tg__block(s, n, c->ch, &b)) {
        c->refused = true;
        return false;
    }
    c->has_block = true;
    c->block = TG_MAX(c->block, b);
    snprintf(num, sizeof(num), "\"0x%llx\"", (unsigned long long)b);
    return tg__put(c, num, strlen(num));
}

/* Whether the string just before a ':' at p is one of the keys that hold a block. */
static bool tg__block_key(const char *key, size_t n)
{
    return (n == 9 && memcmp(key, "fromBlock", 9) == 0) ||
           (n == 7 && memcmp(key, "toBlock", 7) == 0) ||
           (n == 11 && memcmp(key, "blockNumber", 11) == 0);
}

/*
 * Writes params canonical; the top-level element at index `block_at` (when it is a string, or
 * an object's fromBlock / toBlock / blockNumber value) is a block, resolved. A blockHash member
 * marks the call as naming its block by hash.
 */
static bool tg__canonical(struct tg__canon *c, const char *p, size_t n, int block_at)
{
    int depth = 0, index = 0;
    const char *last_key = NULL;
    size_t last_key_len = 0;

    for (size_t i = 0; i < n; i++) {
        char ch = p[i];

        if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n')
            continue;
        if (ch == '"') {
            size_t j = i + 1;
            bool key;

            while (j < n && p[j] != '"')
                j += p[j] == '\\' ? 2 : 1;
            if (j >= n)
                return false;
            key = false;
            for (size_t k = j + 1; k < n; k++) {
                if (p[k] == ' ' || p[k] == '\t' || p[k] == '\r' || p[k] == '\n')
                    continue;
                key = p[k] == ':';
                break;
            }
            if (key) {
                last_key = p + i + 1;
                last_key_len = j - i - 1;
                if (last_key_len == 9 && memcmp(last_key, "blockHash", 9) == 0)
                    c->by_hash = true;
            } else if ((depth == 1 && index == block_at) ||
                       (depth >= 2 && index == block_at && last_key != NULL &&
                        tg__block_key(last_key, last_key_len))) {
                if (!tg__put_block(c, p + i + 1, j - i - 1))
                    return false;
                i = j;
                continue;
            }
            if (!tg__put(c, p + i, j - i + 1))
                return false;
            if (j - i - 1 >= 2 && p[i + 1] == '0' && (p[i + 2] | 0x20) == 'x')
                for (char *q = c->out - (j - i); q < c->out - 1; q++)
                    if (*q >= 'A' && *q <= 'F')
                        *q = (char)(*q | 0x20);
            i = j;
            continue;
        }
        if (ch == '[' || ch == '{')
            depth++;
        else if (ch == ']' || ch == '}')
            depth--;
        else if (ch == ',' && depth == 1)
            index++;
        if (!tg__put(c, p + i, 1))
            return false;
    }
    return true;
}

ssize_t tg_rpc_cache_key(const struct tg_rpc_cache_rule *rule, const char *service,
                         const char *method, size_t mlen, const char *params, size_t plen,
                         const struct tg_rpc_chain *ch, char *out, size_t cap,
                         struct tg_rpc_cache_how *how)
{
    struct tg__canon c = {.out = out, .end = out + cap, .ch = ch};
    int block_at = rule->kind == TG_RPCC_BLOCK  ? rule->block_param
                   : rule->kind == TG_RPCC_LOGS ? 0
                                                : -1;
    if (!tg__put(&c, service, strlen(service)) || !tg__put(&c, " ", 1) ||
        !tg__put(&c, method, mlen) || !tg__put(&c, " ", 1))
        return -1;
    if (plen > 0 && !tg__canonical(&c, params, plen, block_at))
        return -1;
    if (rule->kind == TG_RPCC_BLOCK && !c.has_block && !c.by_hash) {
        /* the block param left out reads "latest": the call reads the head */
        if (ch->head == 0)
            return -1;
        c.block = ch->head;
        c.has_block = true;
    }
    how->rule = rule;
    how->block = c.block;
    how->by_hash = c.by_hash;
    switch (rule->kind) {
    case TG_RPCC_BLOCK:
    case TG_RPCC_LOGS:
        /* a range not yet final, or no block at all: not kept */
        if (!c.by_hash && (!c.has_block || c.block > ch->finalized || ch->head == 0))
            return -1;
        break;
    default:
        break;
    }
    return c.out - out;
}

/* The value of "blockNumber" in a transaction or receipt object; false when absent or null. */
static bool tg__block_number(const char *p, size_t n, uint64_t *out)
{
    static const char k[] = "\"blockNumber\"";

    for (size_t i = 0; i + sizeof(k) - 1 < n; i++) {
        size_t j;

        if (memcmp(p + i, k, sizeof(k) - 1) != 0)
            continue;
        j = i + sizeof(k) - 1;
        while (j < n && (p[j] == ' ' || p[j] == ':'))
            j++;
        if (j < n && p[j] == '"') {
            size_t e = j + 1;

            while (e < n && p[e] != '"')
                e++;
            return tg_hex_quantity(p + j + 1, e - j - 1, out);
        }
        return false;
    }
    return false;
}

int64_t tg_rpc_cache_ttl(const struct tg_rpc_cache_how *how, const char *result, size_t len,
                         const struct tg_rpc_chain *ch, int64_t realtime_ttl_ms)
{
    uint64_t b;

    if (len == 0 || (len == 4 && memcmp(result, "null", 4) == 0))
        return 0; /* nothing known yet (a transaction not mined, a block not there) */
    switch (how->rule->kind) {
    case TG_RPCC_REALTIME:
        return realtime_ttl_ms;
    case TG_RPCC_TX:
        if (!tg__block_number(result, len, &b) || ch->head == 0 || b > ch->finalized)
            return 0;
        return INT64_MAX;
    case TG_RPCC_FOREVER:
    case TG_RPCC_BLOCK:
    case TG_RPCC_LOGS:
        return INT64_MAX;
    default:
        return 0;
    }
}
