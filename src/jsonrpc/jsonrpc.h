/*
 * JSON-RPC 2.0 for Ethereum-style node fleets (services of `kind: jsonrpc`): the request
 * envelope (one call or a batch), method patterns and parameter look-ups for the method
 * policies, the scan of a node's reply and the classification of node errors that decides on
 * failover. Nothing here touches a socket or allocates per request: every result is a set of
 * offsets into a body that stays the caller's.
 *
 * Both parsers accept strict JSON only (RFC 8259: no trailing commas, no leading zeros, no
 * bytes after the value, no raw control characters in strings), never recurse and run in time
 * linear in the body. Strings are not checked for valid UTF-8: the nodes themselves (Go's
 * encoding/json, for one) take invalid bytes as they come, so refusing them would only make
 * tollgate disagree with the node about what a request says.
 */
#ifndef TG_JSONRPC_H
#define TG_JSONRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TG_RPC_PARSE_ERROR      (-32700)
#define TG_RPC_INVALID_REQUEST  (-32600)
#define TG_RPC_METHOD_NOT_FOUND (-32601)
#define TG_RPC_INVALID_PARAMS   (-32602)
#define TG_RPC_INTERNAL_ERROR   (-32603)
#define TG_RPC_BATCH_TOO_LARGE  (-1) /* return value only */

/* Deepest nesting a request may have: Ethereum calls need a handful of levels (eth_call's state
 * overrides are the deepest, at five), and the bound keeps jsmn's bracket matching, which
 * walks up the open containers, linear in the body. Deeper -> TG_RPC_PARSE_ERROR. */
#define TG_RPC_REQUEST_DEPTH_MAX 64
/* Deepest nesting of a node's reply (traces nest with the call depth, bounded by the EVM at
 * 1024 frames but in practice far less). Deeper -> tg_rpc_scan_replies() returns -1. */
#define TG_RPC_REPLY_DEPTH_MAX 512

enum tg_rpc_id_kind {
    TG_RPC_ID_ABSENT, /* notification */
    TG_RPC_ID_NULL,
    TG_RPC_ID_NUMBER,
    TG_RPC_ID_STRING,
};

/* One call of a request, as offsets into the body (the body stays the caller's). */
struct tg_rpc_call {
    uint32_t off, len;               /* the item's JSON text */
    uint32_t method_off, method_len; /* the method's bytes between the quotes, as written */
    uint32_t id_off, id_len;         /* the id's JSON text as written (quotes included); len 0
                                        when absent */
    uint32_t params_off, params_len; /* params' JSON text; len 0 when absent */
    uint8_t id_kind;                 /* enum tg_rpc_id_kind */
    int32_t error;                   /* 0, or TG_RPC_INVALID_REQUEST when this item is not a
                                        valid call */
    const char *why;                 /* static text saying what is wrong with an invalid item */
};

struct tg_rpc_envelope {
    bool batch;                /* the body was an array */
    uint32_t num;              /* calls filled */
    struct tg_rpc_call *calls; /* the caller's array of at least max_batch entries (1 for
                                  non-batch is enough only if max_batch>=1) */
};

/* jsmn tokens reused across requests by one thread: grown on demand up to max tokens, never
 * shrunk below the initial size; freed with tg_rpc_tokens_free. */
struct tg_rpc_tokens {
    void *toks; /* jsmntok_t[cap] */
    uint32_t cap;
    uint32_t max; /* most tokens a body may need; more -> TG_RPC_PARSE_ERROR ("too complex") */
};

/* Prepares tk for bodies of at most max tokens (a token per value and per member name) and
 * allocates a first, small array (aborts through tg_fatal() when even that fails). */
void tg_rpc_tokens_init(struct tg_rpc_tokens *tk, uint32_t max);

/* Frees the tokens; tk is then all zero and may be initialised again. */
void tg_rpc_tokens_free(struct tg_rpc_tokens *tk);

/*
 * Parses body[0..len): one call (an object) or a batch (an array of 1..max_batch values).
 *
 * Returns 0 with env filled (invalid items of a batch have error set, and their id when one is
 * readable); TG_RPC_PARSE_ERROR when the body is not one strict JSON value (truncated, trailing
 * bytes, NUL, bad primitives, nested deeper than TG_RPC_REQUEST_DEPTH_MAX, too many tokens);
 * TG_RPC_INVALID_REQUEST when it is valid JSON but neither an object nor a non-empty array, or
 * a single object that is not a valid call (then env->calls[0] holds the id if readable and
 * why); TG_RPC_BATCH_TOO_LARGE when the array has more than max_batch items;
 * TG_RPC_INTERNAL_ERROR when the tokens could not be grown (out of memory).
 *
 * On every non-zero return env->num is 0 and env->calls[0] says what went wrong: error (the
 * code returned, TG_RPC_INVALID_REQUEST for a batch too large), why, and the id of a single
 * invalid object when it is readable. env->batch tells whether the body was an array.
 *
 * A valid call: an object with "jsonrpc": "2.0" (exactly), "method" a string, "id" absent or a
 * string/number/null, "params" absent or an array/object; other members ignored; duplicate
 * member names of these four -> invalid. Member names are compared once unescaped, and a name
 * that equals one of the four but for letter case (or the Unicode folds Go's encoding/json
 * applies: U+017F for 's', U+212A for 'k') makes the item invalid too: geth and Nethermind
 * would take "Method" for "method", so letting it through would let a request say one method to
 * the policies and another to the node. For the same reason a method written with escapes
 * ("debug\u005ftraceCall") is invalid, so the bytes as written are the method the node runs, and
 * so is an empty method (geth refuses it).
 *
 * An invalid item's id_kind is TG_RPC_ID_NULL unless a valid id was read (JSON-RPC 2.0 §5: the
 * reply to an invalid request carries "id": null), so a proxy that skips replies to
 * notifications still answers it; id_len is 0 then.
 *
 * Never recursive (deep nesting such as 100,000 '[' must not blow the stack); O(n) in the body
 * size.
 */
int tg_rpc_parse(struct tg_rpc_tokens *tk, const char *body, size_t len, size_t max_batch,
                 struct tg_rpc_envelope *env);

/* Whether method m[0..mlen) matches pattern (NUL-terminated): '*' matches any run of bytes
 * (possibly empty), every other byte itself. e.g. "debug_*", "eth_get*ByNumber", "*". */
bool tg_rpc_method_match(const char *pattern, const char *m, size_t mlen);

/* Whether the params of call c (a valid call of body) contain, at any depth, a JSON string
 * value exactly equal to word (e.g. "latest", "pending"); member names are not values and are
 * not looked at. Strings with escapes are compared after unescaping. */
bool tg_rpc_params_mention(const char *body, const struct tg_rpc_call *c, const char *word);

/* The string value of params[index] (params must be an array), its raw bytes between the
 * quotes in *off and *len (offsets into body, escapes as written). Returns false when absent or
 * not a string. */
bool tg_rpc_param_string(const char *body, const struct tg_rpc_call *c, unsigned index,
                         uint32_t *off, uint32_t *len);

/* One reply object of a node's answer, as offsets into the reply body. */
struct tg_rpc_reply {
    uint32_t off, len;               /* the object's JSON text */
    uint32_t id_off, id_len;         /* the id's JSON text; len 0 when absent */
    uint32_t result_off, result_len; /* len 0 when absent */
    bool has_error;
    int64_t code;              /* error.code when has_error (0 when not an integer) */
    uint32_t msg_off, msg_len; /* error.message's bytes between the quotes, len 0 when absent */
};

/*
 * Scans a node's reply body: one reply object or an array of them (an empty array is a batch
 * of no replies). Fills out[0..max) and *num (the replies found, at most max: later ones are
 * checked but not stored), *batch. Returns 0, or -1 when the body is not strict JSON, is
 * nested deeper than TG_RPC_REPLY_DEPTH_MAX, is longer than 4 GiB, or is not reply-shaped: a
 * reply is an object that needs "result" or an "error" object, not both ("error": null counts
 * as absent, as geth's client reads it), and repeats none of "id", "result", "error" (nor
 * "code" and "message" inside the error). "jsonrpc" is not checked: a node's answer is
 * classified, not judged.
 *
 * Hand-written single-pass scanner, not jsmn: replies can be tens of MB (eth_getLogs) and must
 * not need a token per value. No recursion, no allocation, O(n).
 */
int tg_rpc_scan_replies(const char *body, size_t len, struct tg_rpc_reply *out, size_t max,
                        size_t *num, bool *batch);

/* What a node's error means. */
enum tg_rpc_verdict {
    TG_RPC_CALLER, /* the caller's own error (execution reverted, invalid params, nonce too
                      low...): returned as it is, the node counts as healthy */
    TG_RPC_NODE,   /* this node cannot answer now (rate limited, missing state, method
                      missing, header not found...): try another node, count against this one */
    TG_RPC_KNOWN,  /* a transaction the node already has ("already known", "known
                      transaction"; "nonce too low" is NOT this): a success for a write */
};

struct tg_rpc_class {
    uint8_t verdict;  /* enum tg_rpc_verdict */
    const char *kind; /* a short metric label from a bounded set: "reverted", "already_known",
                         "nonce", "funds", "underpriced", "fee", "gas", "invalid_params",
                         "too_large", "limit", "missing_block", "missing_state", "syncing",
                         "method_missing", "timeout", "internal", "other" */
};

/* Classifies an error reply (has_error set) of body through the one table of patterns (code
 * and/or a case-insensitive substring of the message that starts a word). Unknown errors, and
 * replies without an error, are TG_RPC_CALLER with kind "other". */
struct tg_rpc_class tg_rpc_classify(const char *body, const struct tg_rpc_reply *r);

/* The table, for docs and tests: rules in order, first match wins. (Named error rules: config.h
 * has a struct tg_rpc_rule of its own, for jsonrpc.routes.) A rule matches when its
 * code (unless 0) equals the error's code and its message (unless NULL) occurs in the error's
 * unescaped message, ASCII case ignored, at the start of a word (not after a letter or digit,
 * so "rate limit" does not match "moderate limit" nor "known transaction" "unknown
 * transaction"). */
struct tg_rpc_error_rule {
    int64_t code;        /* 0 = any */
    const char *message; /* NULL = any */
    uint8_t verdict;
    const char *kind;
};
extern const struct tg_rpc_error_rule tg_rpc_error_rules[];
extern const size_t tg_rpc_num_error_rules;

/* Index in tg_rpc_error_rules of the first rule that an error with this code and unescaped
 * message msg[0..len) matches, or -1 when none does. */
int tg_rpc_error_rule_find(int64_t code, const char *msg, size_t len);

#endif
