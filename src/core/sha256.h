/*
 * SHA-256 through OpenSSL, cheap enough for every request: the algorithm is fetched from the
 * provider once per process and each thread reuses one digest context. Used for API key digests
 * and for rate-limit counter ids, which callers can choose bytes of and so must not be able to
 * aim at another caller's counter.
 */
#ifndef TG_SHA256_H
#define TG_SHA256_H

#include <stddef.h>
#include <stdint.h>

/* SHA-256 of the n bytes at p. Aborts through tg_fatal() only if OpenSSL has no SHA-256. */
void tg_sha256(const void *p, size_t n, uint8_t out[32]);

/* SHA-256 of the an bytes at a followed by the bn bytes at b. */
void tg_sha256_pair(const void *a, size_t an, const void *b, size_t bn, uint8_t out[32]);

#endif
