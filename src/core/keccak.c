/*
 * Keccak-256 (keccak.h), written from FIPS 202 section 3 and the Keccak reference. The state is
 * 25 lanes of 64 bits, lane (x, y) at a[x + 5 * y]; bytes map onto lanes little-endian.
 */
#include "core/keccak.h"

#include <string.h>

#define TG__KECCAK_RATE  136 /* bytes: 1600 - 2 * 256 bits of capacity */
#define TG__KECCAK_LANES (TG__KECCAK_RATE / 8)

/* Iota's round constants: RC[i] from the rc(t) LFSR of FIPS 202 Algorithm 5. */
static const uint64_t tg__keccak_rc[24] = {
    0x0000000000000001ull, 0x0000000000008082ull, 0x800000000000808aull, 0x8000000080008000ull,
    0x000000000000808bull, 0x0000000080000001ull, 0x8000000080008081ull, 0x8000000000008009ull,
    0x000000000000008aull, 0x0000000000000088ull, 0x0000000080008009ull, 0x000000008000000aull,
    0x000000008000808bull, 0x800000000000008bull, 0x8000000000008089ull, 0x8000000000008003ull,
    0x8000000000008002ull, 0x8000000000000080ull, 0x000000000000800aull, 0x800000008000000aull,
    0x8000000080008081ull, 0x8000000000008080ull, 0x0000000080000001ull, 0x8000000080008008ull,
};

static inline uint64_t tg__rotl64(uint64_t v, unsigned n)
{
    return (v << (n & 63)) | (v >> (-n & 63)); /* n == 0 must not shift by 64 */
}

/* Byte order is fixed by the spec, not the host: memcpy keeps unaligned input legal. */
static inline uint64_t tg__load64_le(const uint8_t *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;

    memcpy(&v, p, 8);
    return v;
#else
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
#endif
}

static inline void tg__store64_le(uint8_t *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(p, &v, 8);
#else
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
#endif
}

/*
 * Theta, rho and pi for lane src = x + 5y: add theta's column term d[x], rotate by rho's offset
 * ((t + 1)(t + 2) / 2 mod 64 along the walk of FIPS 202 Algorithm 2) and move the lane to pi's
 * position (y, 2x + 3y mod 5), index dst. Folding theta in saves a pass over the state.
 */
#define TG__RHO_PI(src, dst, rot) b[dst] = tg__rotl64(a[src] ^ d[(src) % 5], rot)

/*
 * Chi for the row starting at lane y: each lane takes in the AND of its two right-hand
 * neighbours, the one non-linear step.
 */
#define TG__CHI_ROW(y)                                                                             \
    do {                                                                                           \
        a[y + 0] = b[y + 0] ^ (~b[y + 1] & b[y + 2]);                                              \
        a[y + 1] = b[y + 1] ^ (~b[y + 2] & b[y + 3]);                                              \
        a[y + 2] = b[y + 2] ^ (~b[y + 3] & b[y + 4]);                                              \
        a[y + 3] = b[y + 3] ^ (~b[y + 4] & b[y + 0]);                                              \
        a[y + 4] = b[y + 4] ^ (~b[y + 0] & b[y + 1]);                                              \
    } while (0)

/*
 * keccak-f[1600]: 24 rounds of theta, rho and pi (done as one step), chi and iota. The steps are
 * written out lane by lane: with loops over index tables, gcc -O2 keeps the state in memory and
 * a 200-byte hash took 2.6 us instead of about 0.5 us (the speed of OpenSSL's assembly SHA-3).
 */
static void tg__keccak_f(uint64_t a[25])
{
    uint64_t c0, c1, c2, c3, c4, d[5], b[25];

    for (int round = 0; round < 24; round++) {
        /* Theta: each lane will absorb the parities of the two neighbouring columns. */
        c0 = a[0] ^ a[5] ^ a[10] ^ a[15] ^ a[20];
        c1 = a[1] ^ a[6] ^ a[11] ^ a[16] ^ a[21];
        c2 = a[2] ^ a[7] ^ a[12] ^ a[17] ^ a[22];
        c3 = a[3] ^ a[8] ^ a[13] ^ a[18] ^ a[23];
        c4 = a[4] ^ a[9] ^ a[14] ^ a[19] ^ a[24];
        d[0] = c4 ^ tg__rotl64(c1, 1);
        d[1] = c0 ^ tg__rotl64(c2, 1);
        d[2] = c1 ^ tg__rotl64(c3, 1);
        d[3] = c2 ^ tg__rotl64(c4, 1);
        d[4] = c3 ^ tg__rotl64(c0, 1);
        TG__RHO_PI(0, 0, 0);
        TG__RHO_PI(1, 10, 1);
        TG__RHO_PI(2, 20, 62);
        TG__RHO_PI(3, 5, 28);
        TG__RHO_PI(4, 15, 27);
        TG__RHO_PI(5, 16, 36);
        TG__RHO_PI(6, 1, 44);
        TG__RHO_PI(7, 11, 6);
        TG__RHO_PI(8, 21, 55);
        TG__RHO_PI(9, 6, 20);
        TG__RHO_PI(10, 7, 3);
        TG__RHO_PI(11, 17, 10);
        TG__RHO_PI(12, 2, 43);
        TG__RHO_PI(13, 12, 25);
        TG__RHO_PI(14, 22, 39);
        TG__RHO_PI(15, 23, 41);
        TG__RHO_PI(16, 8, 45);
        TG__RHO_PI(17, 18, 15);
        TG__RHO_PI(18, 3, 21);
        TG__RHO_PI(19, 13, 8);
        TG__RHO_PI(20, 14, 18);
        TG__RHO_PI(21, 24, 2);
        TG__RHO_PI(22, 9, 61);
        TG__RHO_PI(23, 19, 56);
        TG__RHO_PI(24, 4, 14);
        TG__CHI_ROW(0);
        TG__CHI_ROW(5);
        TG__CHI_ROW(10);
        TG__CHI_ROW(15);
        TG__CHI_ROW(20);
        /* Iota: the round constant breaks the symmetry between rounds. */
        a[0] ^= tg__keccak_rc[round];
    }
}

#undef TG__CHI_ROW
#undef TG__RHO_PI

static void tg__keccak_absorb(uint64_t a[25], const uint8_t block[TG__KECCAK_RATE])
{
    for (int i = 0; i < TG__KECCAK_LANES; i++)
        a[i] ^= tg__load64_le(block + 8 * i);
    tg__keccak_f(a);
}

/*
 * Absorbs the last n < 136 bytes with Keccak's pad10*1 (0x01 after the message, 0x80 in the
 * last byte of the block: one byte 0x81 when n is 135) and squeezes the 32-byte digest, which
 * fits in the first block of output.
 */
static void tg__keccak_finish(uint64_t a[25], const uint8_t *tail, size_t n, uint8_t out[32])
{
    uint8_t block[TG__KECCAK_RATE];

    if (n > 0)
        memcpy(block, tail, n);
    memset(block + n, 0, sizeof(block) - n);
    block[n] = 0x01;
    block[TG__KECCAK_RATE - 1] |= 0x80;
    tg__keccak_absorb(a, block);
    for (int i = 0; i < 4; i++)
        tg__store64_le(out + 8 * i, a[i]);
}

void tg_keccak256(const void *p, size_t n, uint8_t out[32])
{
    const uint8_t *in = p;
    uint64_t a[25] = {0};

    for (; n >= TG__KECCAK_RATE; n -= TG__KECCAK_RATE, in += TG__KECCAK_RATE)
        tg__keccak_absorb(a, in);
    tg__keccak_finish(a, in, n, out);
}

/* 0x10 | value for a hex digit, 0 for anything else: AND-ing entries keeps 0x10 only if all
 * were digits, so a block is checked once rather than digit by digit. */
static const uint8_t tg__hexval[256] = {
    ['0'] = 0x10, ['1'] = 0x11, ['2'] = 0x12, ['3'] = 0x13, ['4'] = 0x14, ['5'] = 0x15,
    ['6'] = 0x16, ['7'] = 0x17, ['8'] = 0x18, ['9'] = 0x19, ['a'] = 0x1a, ['b'] = 0x1b,
    ['c'] = 0x1c, ['d'] = 0x1d, ['e'] = 0x1e, ['f'] = 0x1f, ['A'] = 0x1a, ['B'] = 0x1b,
    ['C'] = 0x1c, ['D'] = 0x1d, ['E'] = 0x1e, ['F'] = 0x1f,
};

/* Decodes the 2n digits at s into out; returns -1 if any of them is not a hex digit. */
static int tg__hex_decode(const char *s, size_t n, uint8_t *out)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned ok = 0x10;

    for (size_t i = 0; i < n; i++) {
        unsigned hi = tg__hexval[u[2 * i]], lo = tg__hexval[u[2 * i + 1]];

        ok &= hi & lo;
        out[i] = (uint8_t)((hi & 0x0f) << 4 | (lo & 0x0f));
    }
    return ok ? 0 : -1;
}

int tg_keccak256_hex(const char *s, size_t len, uint8_t out[32])
{
    uint8_t block[TG__KECCAK_RATE];
    uint64_t a[25] = {0};
    size_t n;

    if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        s += 2;
        len -= 2;
    }
    if (len % 2 != 0)
        return -1;
    for (n = len / 2; n >= TG__KECCAK_RATE; n -= TG__KECCAK_RATE, s += 2 * TG__KECCAK_RATE) {
        if (tg__hex_decode(s, TG__KECCAK_RATE, block) != 0)
            return -1;
        tg__keccak_absorb(a, block);
    }
    if (tg__hex_decode(s, n, block) != 0)
        return -1;
    tg__keccak_finish(a, block, n, out);
    return 0;
}
