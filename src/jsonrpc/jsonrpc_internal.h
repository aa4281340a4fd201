/*
 * What the jsonrpc module's files share: a strict, pull-style JSON scanner (scan.c) and the
 * unescaping of JSON strings. The envelope parser uses the scanner to check a request before
 * jsmn tokenizes it, the parameter look-ups and the reply scanner use it alone.
 */
#ifndef TG_JSONRPC_INTERNAL_H
#define TG_JSONRPC_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "jsonrpc/jsonrpc.h"

/* The scanner's stack of open containers holds one bit per level. */
#define TG__RPC_STACK_MAX TG_RPC_REPLY_DEPTH_MAX

/* What tg__rpc_scan_next() found. */
enum tg__rpc_ev {
    TG__RPC_EV_BAD = -1, /* not strict JSON, or nested too deep: sc->why says which */
    TG__RPC_EV_DONE = 0, /* the value ended and only whitespace follows it */
    TG__RPC_EV_OBJ,      /* '{' */
    TG__RPC_EV_OBJ_END,  /* '}' */
    TG__RPC_EV_ARR,      /* '[' */
    TG__RPC_EV_ARR_END,  /* ']' */
    TG__RPC_EV_KEY,      /* a member name */
    TG__RPC_EV_STR,      /* a string value */
    TG__RPC_EV_NUM,      /* a number */
    TG__RPC_EV_LIT,      /* true, false or null */
};

/*
 * One pass over a JSON text. After each event, [off, end) are its bytes: a string's or a
 * member name's inside (between the quotes), a number's or literal's text, a bracket. level is
 * the nesting level of the value the event belongs to: 0 for the top value (and its closing
 * bracket), 1 for what the top container holds, and so on; a member name has the level of its
 * value.
 */
struct tg__rpc_scan {
    const char *s;
    size_t len, pos;
    size_t off, end;
    const char *why; /* static text, set with TG__RPC_EV_BAD */
    uint32_t depth;  /* containers open */
    uint32_t level;
    uint32_t max_depth;
    uint8_t state;
    bool escaped; /* the last string holds a backslash */
    uint64_t is_obj[TG__RPC_STACK_MAX / 64];
};

/* Starts a scan of s[0..len) that fails past max_depth open containers (at most
 * TG__RPC_STACK_MAX). */
void tg__rpc_scan_init(struct tg__rpc_scan *sc, const char *s, size_t len, uint32_t max_depth);

/* The next event (enum tg__rpc_ev). After TG__RPC_EV_BAD or TG__RPC_EV_DONE every call returns
 * the same again. */
int tg__rpc_scan_next(struct tg__rpc_scan *sc);

/* Given ev, the event that started a value, reads to the value's end and stores its JSON text
 * (quotes included for a string) in [*off, *end). Returns 0, or -1 when the text is bad. */
int tg__rpc_scan_value(struct tg__rpc_scan *sc, int ev, size_t *off, size_t *end);

/* Unescapes the inside of a JSON string (already checked by the scanner) into out, stopping
 * when out is full or at an unpaired surrogate escape; returns the bytes written and sets
 * *whole when the string was written completely. */
size_t tg__rpc_unescape(const char *s, size_t len, char *out, size_t cap, bool *whole);

/* Whether the inside of a JSON string s[0..len) equals w[0..wlen) once unescaped. */
bool tg__rpc_str_eq(const char *s, size_t len, const char *w, size_t wlen);

#endif
