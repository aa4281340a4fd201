/*
 * JSON text helpers for log lines and admin replies. Everything here writes into caller-owned
 * memory, never allocates and never fails: output is bounded by the capacity given.
 */
#ifndef TG_JSON_H
#define TG_JSON_H

#include <stddef.h>
#include <stdint.h>

/* The worst case of tg_json_escape(): every input byte becomes a 6-byte \u escape. */
#define TG_JSON_ESCAPE_MAX(len) ((len)*6)

/*
 * Appends s[0..len) to out as the inside of a JSON string (no quotes). '"' and '\' are escaped
 * with a backslash; \n, \r and \t are written as such; every other byte below 0x20 becomes
 * \u00XX. Well-formed UTF-8 (Unicode table 3-7: no overlong forms, no surrogates, nothing above
 * U+10FFFF) is copied unchanged; every byte >= 0x80 that does not start a well-formed sequence
 * is replaced by the escape \ufffd, one per byte, so every line built from client bytes is valid
 * JSON and the replacement stays ASCII.
 *
 * Writes at most cap bytes and stops before an escape or UTF-8 sequence that would not fit, so
 * a truncated result is still a valid JSON string body. Returns the number of bytes written.
 */
size_t tg_json_escape(char *out, size_t cap, const char *s, size_t len);

/*
 * Writes the UTC date and time of sec (seconds since the epoch) as "YYYY-MM-DDTHH:MM:SS" into
 * out, which must hold TG_JSON_TIME_LEN bytes (no NUL is written). Times before 1970 or after
 * 9999 are clamped to those years' bounds so the width never changes. Returns TG_JSON_TIME_LEN.
 */
#define TG_JSON_TIME_LEN 19
size_t tg_json_time(char *out, int64_t sec);

#endif
