/*
 * Keccak-256 as Ethereum uses it: keccak-f[1600] with a 136-byte rate and the original Keccak
 * padding (0x01 ... 0x80), which gives different digests from FIPS 202 SHA3-256 (0x06 ... 0x80).
 * Transaction hashes, address derivation and event topics are all this function. Pure C, no
 * allocation and no shared state, so any thread may call it.
 */
#ifndef TG_KECCAK_H
#define TG_KECCAK_H

#include <stddef.h>
#include <stdint.h>

/* Keccak-256 of the n bytes at p (p may be NULL when n is 0). */
void tg_keccak256(const void *p, size_t n, uint8_t out[32]);

/*
 * Decodes the hex digits at s[0..len) (an optional "0x"/"0X" prefix, then an even number of hex
 * digits, either case) and writes the Keccak-256 of those bytes to out. This is how a client's
 * raw signed transaction text becomes its transaction hash. The decoded bytes are absorbed a
 * block at a time from a stack buffer, so any length is hashed without allocating.
 * Zero digits ("" or "0x") are valid and hash the empty input.
 * Returns 0, or -1 when s is not such hex text (odd digit count, any non-hex byte, including
 * whitespace and a second prefix); out is then left untouched.
 */
int tg_keccak256_hex(const char *s, size_t len, uint8_t out[32]);

#endif
