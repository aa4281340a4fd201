/*
 * W3C Trace Context (https://www.w3.org/TR/trace-context/): parsing the traceparent header and
 * starting a new trace when a request arrives without one.
 *
 * traceparent is "<version>-<trace-id>-<parent-id>-<trace-flags>": 2, 32, 16 and 2 lowercase hex
 * digits. Only version 00 is defined; tollgate accepts later versions the way the specification
 * asks (read them with the 00 layout, ignore what follows) so that an upstream speaking a newer
 * version still gets its trace forwarded. Nothing here allocates or takes a lock.
 */
#ifndef TG_TRACE_H
#define TG_TRACE_H

#include <stddef.h>
#include <stdint.h>

/* Length of a version 00 traceparent value, the only layout tollgate produces. */
#define TG_TRACEPARENT_LEN 55

struct tg_trace {
    char trace_id[32]; /* lowercase hex, not NUL-terminated */
    char parent_id[16];
    uint8_t flags;
};

/*
 * Parses the traceparent value v of len bytes (optional whitespace already trimmed). Version 00
 * must be exactly 55 characters "00-<32 hex>-<16 hex>-<2 hex>"; a higher version other than the
 * reserved "ff" is accepted when its first 55 characters follow that layout and, if it is longer,
 * character 55 is '-' (the fields a future version appends are ignored). Hex digits must be
 * lowercase; an all-zero trace-id or parent-id is invalid.
 * Returns 0 and fills *t, or -1 (the value is invalid; *t is unspecified).
 */
int tg_trace_parse(const char *v, size_t len, struct tg_trace *t);

/*
 * Starts a trace: draws a random trace-id and parent-id from state (a per-worker xoshiro256**
 * state the caller seeded once, e.g. with getrandom(); only that worker may use it), sets flags
 * to 01 (sampled), writes the 55-character traceparent value into out (not NUL-terminated) and
 * fills *t. Ids are never all zeros, even from an all-zero state. Cheap enough for every request:
 * no formatting library, no system call.
 */
void tg_trace_new(uint64_t state[4], char out[TG_TRACEPARENT_LEN], struct tg_trace *t);

#endif
