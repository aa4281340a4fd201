/*
 * What a node's error reply means for failover: the one table of patterns, in order, first
 * match wins. Node clients agree on few codes (-32000 carries most of everything), so the
 * message decides where it is specific and codes only where they are: the code-only rules
 * come last, after every message rule. Unknown errors are the caller's: failing over on an
 * error nobody recognised would multiply a bad request by the size of the fleet.
 *
 * The clients' wordings cited are go-ethereum's (geth, and reth and Erigon where they copy
 * it), Erigon's txpool, Nethermind's, Besu's RpcErrorType, anvil's (Foundry), and the public
 * providers' (Infura, Alchemy) that people front with their own nodes.
 */
#include "jsonrpc/jsonrpc_internal.h"

#include <string.h>

/* Messages are matched on their first bytes only: every pattern sits near the start of the
 * message it comes from, and a revert reason can be long. */
#define TG__RPC_MSG_MAX 1024

#define CALLER TG_RPC_CALLER
#define NODE   TG_RPC_NODE
#define KNOWN  TG_RPC_KNOWN

const struct tg_rpc_error_rule tg_rpc_error_rules[] = {
    /* Reverts come first: after "execution reverted: " the message is the contract's own
     * reason, free text that may hold any other rule's words ("execution reverted: rate
     * limit"). */
    /* geth, Erigon, reth, anvil, Nethermind: eth_call or eth_estimateGas reverted, with data. */
    {3, NULL, CALLER, "reverted"},
    /* All of them without data; Besu's "Execution reverted". */
    {0, "execution reverted", CALLER, "reverted"},
    /* Nethermind before 1.20 and OpenEthereum: "VM execution error." */
    {0, "vm execution error", CALLER, "reverted"},

    /* The node lacks the method. Before the transaction rules because geth's message quotes
     * the method name, which the caller chose. */
    /* geth, Erigon, reth: "the method X does not exist/is not available". */
    {0, "does not exist/is not available", NODE, "method_missing"},
    /* Besu, Nethermind, anvil: "Method not found". */
    {0, "method not found", NODE, "method_missing"},
    /* Besu -32604: the method's API group is not enabled on this node. */
    {0, "method not enabled", NODE, "method_missing"},

    /* The node has the transaction: a write that succeeded before (a retry, or another node
     * relayed it). "nonce too low" is not one of these: the nonce may be another
     * transaction's. */
    /* geth, reth, Erigon ("ALREADY_EXISTS: already known"): the pool has this hash. */
    {0, "already known", KNOWN, "already_known"},
    /* Besu "Known transaction"; geth before 1.9.25 "known transaction: <hash>". */
    {0, "known transaction", KNOWN, "already_known"},
    /* Nethermind: the AcceptTxResult name, "AlreadyKnown". */
    {0, "alreadyknown", KNOWN, "already_known"},
    /* Erigon: the txpool's ImportResult name, "ALREADY_EXISTS". */
    {0, "already_exists", KNOWN, "already_known"},
    /* anvil "transaction already imported"; OpenEthereum -32010 "Transaction with the same
     * hash was already imported." */
    {0, "already imported", KNOWN, "already_known"},

    /* The caller's transaction or call is wrong, on every node alike. */
    /* geth, Erigon, reth, anvil, Nethermind; Besu -32001 "Nonce too low". */
    {0, "nonce too low", CALLER, "nonce"},
    /* Nethermind up to 1.25: "OldNonce". */
    {0, "oldnonce", CALLER, "nonce"},
    /* geth; Besu -32006 "Nonce too high". */
    {0, "nonce too high", CALLER, "nonce"},
    /* Besu: "Transaction nonce is too distant from current sender nonce". */
    {0, "nonce is too distant", CALLER, "nonce"},
    /* geth "insufficient funds for gas * price + value: ...", Erigon, reth, anvil. */
    {0, "insufficient funds", CALLER, "funds"},
    /* Nethermind: "InsufficientFunds, ...". */
    {0, "insufficientfunds", CALLER, "funds"},
    /* Besu -32004: "Upfront cost exceeds account balance". */
    {0, "upfront cost exceeds account balance", CALLER, "funds"},
    /* geth, Erigon, Besu: too small a price bump to replace a pending transaction. */
    {0, "replacement transaction underpriced", CALLER, "underpriced"},
    /* geth: below the pool's minimum price. */
    {0, "transaction underpriced", CALLER, "underpriced"},
    /* Erigon's txpool: "underpriced". */
    {0, "underpriced", CALLER, "underpriced"},
    /* Nethermind: "FeeTooLow", "FeeTooLowToCompete". */
    {0, "feetoolow", CALLER, "underpriced"},
    /* Erigon's txpool: "fee too low". */
    {0, "fee too low", CALLER, "underpriced"},
    /* geth: "max fee per gas less than block base fee: address ..., maxFeePerGas: ...". */
    {0, "max fee per gas less than block base fee", CALLER, "fee"},
    /* geth: "max priority fee per gas higher than max fee per gas". */
    {0, "max priority fee per gas higher than max fee per gas", CALLER, "fee"},
    /* Besu -32009: "Gas price below configured minimum gas price", "... current base fee". */
    {0, "gas price below", CALLER, "fee"},
    /* geth: "tx fee (2.00 ether) exceeds the configured cap (1.00 ether)". */
    {0, "exceeds the configured cap", CALLER, "fee"},
    /* Besu: "Transaction fee cap exceeded". */
    {0, "transaction fee cap exceeded", CALLER, "fee"},
    /* geth "intrinsic gas too low"; Besu -32003 "Intrinsic gas exceeds gas limit". */
    {0, "intrinsic gas", CALLER, "gas"},
    /* Erigon's txpool: "IntrinsicGas". */
    {0, "intrinsicgas", CALLER, "gas"},
    /* geth, Erigon eth_estimateGas: "gas required exceeds allowance (30000000)". */
    {0, "gas required exceeds allowance", CALLER, "gas"},
    /* geth; Besu's comes with -32005, which the code rules below take for a limit. */
    {0, "exceeds block gas limit", CALLER, "gas"},
    /* geth, Erigon: eth_call ran out of gas. */
    {0, "out of gas", CALLER, "gas"},
    /* geth: "invalid argument 0: hex string without 0x prefix". */
    {0, "invalid argument", CALLER, "invalid_params"},
    /* geth: "missing value for required argument 1". */
    {0, "missing value for required argument", CALLER, "invalid_params"},
    /* geth: "too many arguments, want at most 2". */
    {0, "too many arguments", CALLER, "invalid_params"},
    /* Besu, Nethermind: "Invalid params". */
    {0, "invalid params", CALLER, "invalid_params"},

    /* The caller asked for more than a node serves. The nodes of a fleet are set up alike, so
     * another would refuse too. */
    /* geth -32003 (--rpc.batch-response-max-size). */
    {0, "response too large", CALLER, "too_large"},
    /* geth (--rpc.batch-request-limit). */
    {0, "batch too large", CALLER, "too_large"},
    /* Besu -32005: "Number of requests exceeds max batch size". */
    {0, "exceeds max batch size", CALLER, "too_large"},
    /* Besu -32005: "Requested range exceeds maximum RPC range limit" (eth_getLogs). */
    {0, "exceeds maximum rpc range", CALLER, "too_large"},
    /* Infura, Alchemy eth_getLogs: "query returned more than 10000 results". */
    {0, "query returned more than", CALLER, "too_large"},

    /* This node is busy or limited: another may answer. */
    /* Providers: "rate limit exceeded"; Infura "daily request count exceeded, request rate
     * limited". */
    {0, "rate limit", NODE, "limit"},
    /* HTTP 429's words, as providers put them in JSON-RPC errors. */
    {0, "too many requests", NODE, "limit"},
    /* Providers: "daily request limit exceeded", "request limit reached". */
    {0, "request limit", NODE, "limit"},
    /* geth: the pool is full of better-paying transactions; another node's may not be. */
    {0, "txpool is full", NODE, "limit"},

    /* This node lacks the block (it is behind) or the state (it is pruned, or still syncing):
     * another node, or an archive node, may have it. */
    /* geth, reth: a block above this node's head. */
    {0, "header not found", NODE, "missing_block"},
    /* Besu -39001 "Unknown block"; reth. */
    {0, "unknown block", NODE, "missing_block"},
    /* Besu "Block not found"; Erigon "block not found: N". */
    {0, "block not found", NODE, "missing_block"},
    /* geth (hash scheme), on a pruned node: "missing trie node <hash> (path ...) state <root>
     * is not available". */
    {0, "missing trie node", NODE, "missing_state"},
    /* geth (path scheme): "historical state not available in path scheme yet". */
    {0, "historical state", NODE, "missing_state"},
    /* Nethermind -32002: "No state available for block 0x...". */
    {0, "no state available", NODE, "missing_state"},
    /* Besu: "World state unavailable". */
    {0, "world state unavailable", NODE, "missing_state"},
    /* geth 4444 "pruned history unavailable" (EIP-4444 history expiry); reth "state at block
     * #N is pruned". */
    {0, "pruned", NODE, "missing_state"},
    /* geth: history expired on this node, whatever the message says. */
    {4444, NULL, NODE, "missing_state"},
    /* Besu -32008: "Initial sync is still in progress". */
    {0, "initial sync is still in progress", NODE, "syncing"},

    /* This node gave up on time. */
    /* geth -32002: "request timed out". */
    {0, "timed out", NODE, "timeout"},
    /* Besu -32603 "Timeout expired"; geth eth_call "execution aborted (timeout = 5s)";
     * Nethermind "Request was canceled due to enabled timeout.". */
    {0, "timeout", NODE, "timeout"},

    /* Codes alone, for the messages none of the rules above knows. */
    /* Every client: invalid params. */
    {TG_RPC_INVALID_PARAMS, NULL, CALLER, "invalid_params"},
    /* Every client: method not found. */
    {TG_RPC_METHOD_NOT_FOUND, NULL, NODE, "method_missing"},
    /* Besu: method not enabled or not supported. */
    {-32604, NULL, NODE, "method_missing"},
    /* EIP-1474 "Method not supported", Nethermind; Besu's -32004 is funds, matched above by
     * its message. */
    {-32004, NULL, NODE, "method_missing"},
    /* EIP-1474 "Limit exceeded": Infura's and most providers' rate limits. */
    {-32005, NULL, NODE, "limit"},
    /* Alchemy: code 429. */
    {429, NULL, NODE, "limit"},
    /* -32603 is the server's own failure in the JSON-RPC spec, and the clients keep it so:
     * geth "method handler crashed" (a panic), Besu "Internal error" (exceptions, database
     * failures), Nethermind "Internal error". None uses it for a bad call (that is -32602 or
     * -32000), so the node is at fault and another may answer; a call that crashes every node
     * costs one try per node, which the proxy's retry budget bounds. */
    {TG_RPC_INTERNAL_ERROR, NULL, NODE, "internal"},
};

const size_t tg_rpc_num_error_rules = sizeof(tg_rpc_error_rules) / sizeof(tg_rpc_error_rules[0]);

static bool tg__rpc_is_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

static unsigned char tg__rpc_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* Whether pat (lower case) occurs in msg[0..len), ASCII case ignored, at the start of a word. */
static bool tg__rpc_word_in(const char *msg, size_t len, const char *pat)
{
    size_t n = strlen(pat);

    for (size_t i = 0; i + n <= len; i++) {
        size_t k = 0;

        if (i > 0 && tg__rpc_is_alnum((unsigned char)msg[i - 1]))
            continue;
        while (k < n && tg__rpc_lower((unsigned char)msg[i + k]) == (unsigned char)pat[k])
            k++;
        if (k == n)
            return true;
    }
    return false;
}

int tg_rpc_error_rule_find(int64_t code, const char *msg, size_t len)
{
    for (size_t i = 0; i < tg_rpc_num_error_rules; i++) {
        const struct tg_rpc_error_rule *r = &tg_rpc_error_rules[i];

        if (r->code != 0 && r->code != code)
            continue;
        if (r->message != NULL && !tg__rpc_word_in(msg, len, r->message))
            continue;
        return (int)i;
    }
    return -1;
}

struct tg_rpc_class tg_rpc_classify(const char *body, const struct tg_rpc_reply *r)
{
    struct tg_rpc_class other = {TG_RPC_CALLER, "other"};
    char buf[TG__RPC_MSG_MAX];
    const char *msg = body + r->msg_off;
    size_t len = r->msg_len;
    bool whole;
    int i;

    if (!r->has_error)
        return other;
    if (memchr(msg, '\\', len) != NULL) {
        len = tg__rpc_unescape(msg, len, buf, sizeof(buf), &whole);
        msg = buf;
    } else if (len > sizeof(buf)) {
        len = sizeof(buf);
    }
    i = tg_rpc_error_rule_find(r->code, msg, len);
    if (i < 0)
        return other;
    return (struct tg_rpc_class){tg_rpc_error_rules[i].verdict, tg_rpc_error_rules[i].kind};
}
