/*
 * Lowercase hex of 64-bit words without a table or a loop: the nibbles are spread into bytes
 * with shifts and masks, then turned into digits with one add per eight (SWAR). About fifteen
 * instructions per 32 bits; ids are generated for every request that comes without one.
 */
#ifndef TG_HEX_H
#define TG_HEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The value of hex digit c (either case), or -1. */
static inline int tg_hex_digit(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A JSON-RPC quantity without its quotes, "0x1b4": 1 to 16 hex digits after "0x" (either
 * case). Returns false when p[0..n) is not one. */
static inline bool tg_hex_quantity(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;

    if (n < 3 || n > 18 || p[0] != '0' || (p[1] | 0x20) != 'x')
        return false;
    for (size_t i = 2; i < n; i++) {
        int d = tg_hex_digit((unsigned char)p[i]);

        if (d < 0)
            return false;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return true;
}

/* Writes the 2n lowercase hex digits of the n bytes at p to out (not NUL-terminated). */
static inline void tg_hex_bytes(char *out, const uint8_t *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
}

/* Eight hex digits of x, most significant first, as the eight bytes of the result in memory
 * order (little-endian). */
static inline uint64_t tg__hex32_word(uint32_t x)
{
    uint64_t w = x;

    w = (w | w << 16) & 0x0000ffff0000ffffull;
    w = (w | w << 8) & 0x00ff00ff00ff00ffull;
    w = (w | w << 4) & 0x0f0f0f0f0f0f0f0full; /* nibble i (from the low end) in byte i */
    w = __builtin_bswap64(w);                 /* most significant nibble first in memory */
    /* bytes holding 10..15 get 'a' - '0' - 10 = 39 more than the plain '0' offset */
    return w + 0x3030303030303030ull +
           (((w + 0x0606060606060606ull) >> 4) & 0x0101010101010101ull) * 39;
}

/* Writes the 16 hex digits of x to out (not NUL-terminated). */
static inline void tg_hex64(char *out, uint64_t x)
{
    uint64_t hi = tg__hex32_word((uint32_t)(x >> 32)), lo = tg__hex32_word((uint32_t)x);

    memcpy(out, &hi, 8);
    memcpy(out + 8, &lo, 8);
}

#endif
