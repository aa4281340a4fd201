/*
 * A small non-cryptographic 64-bit hash for balancing keys and ring points: FNV-1a over the
 * bytes, then a 64-bit finaliser (the avalanche step of SplitMix64) so that keys differing in a
 * few bits land far apart on the consistent-hash ring. Not for anything an attacker must not
 * predict: a hot key can be forced by a client whatever the hash, which is what bounded loads
 * are for.
 */
#ifndef TG_HASH_H
#define TG_HASH_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t tg_hash_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static inline uint64_t tg_hash64(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ull ^ tg_hash_mix(seed);

    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return tg_hash_mix(h);
}

#endif
