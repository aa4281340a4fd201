/*
 * Typed scalar values of the configuration (DESIGN §4): durations, sizes and rates.
 *
 *   duration  250ms 5s 15m 1h 1d, or 0          -> milliseconds
 *   size      512b 16kb 10mb 1gb, or plain bytes -> bytes (1kb = 1024 bytes; case-insensitive)
 *   rate      N/s N/m N/15m N/h N/d             -> N requests per period
 *
 * Parsers take a counted string, accept nothing but the exact syntax (no spaces, signs or
 * fractions) and check for overflow. They return 0, or -1 with a one-line reason in err.
 */
#ifndef TG_CONFIG_UNITS_H
#define TG_CONFIG_UNITS_H

#include <stddef.h>
#include <stdint.h>

#include "core/str.h"

typedef uint64_t tg_msec_t;

struct tg_rate {
    uint64_t count;   /* requests allowed per period, at least 1 */
    tg_msec_t period; /* milliseconds, at least 1 */
};

/* A duration: digits followed by ms, s, m, h or d; a plain 0 is also accepted. */
int tg_units_parse_duration(struct tg_str s, tg_msec_t *out, char *err, size_t errlen);

/* A size: digits optionally followed by b, kb, mb or gb (any case); plain digits are bytes. */
int tg_units_parse_size(struct tg_str s, uint64_t *out, char *err, size_t errlen);

/* A rate: a positive count, '/', then a unit (s, m, h, d) or a duration such as 15m or 500ms. */
int tg_units_parse_rate(struct tg_str s, struct tg_rate *out, char *err, size_t errlen);

/* A non-negative decimal integer without sign or leading '+'. */
int tg_units_parse_uint(struct tg_str s, uint64_t *out, char *err, size_t errlen);

/* Writes a duration the way the configuration spells it ("250ms", "5s", "1h"); returns buf. */
const char *tg_units_format_duration(tg_msec_t ms, char *buf, size_t buflen);

#endif
