/*
 * Keccak-256 (src/core/keccak.c): the published vectors, inputs around the 136-byte block
 * boundary, real signed Ethereum transactions and their hashes through the hex helper, the hex
 * errors, and the time of one 200-byte hash.
 *
 * The digests of the patterned inputs and the transactions were computed independently with
 * ethers 6 (keccak256, Wallet.signTransaction and Transaction.from(raw).hash) under node.
 */
#include "core/keccak.h"

#include <stdlib.h>
#include <time.h>

#include "unit.h"

#define EMPTY_HEX "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"

/* The patterned input the ethers vectors were made from: byte i is (31 * i + 7) mod 256. */
static void pattern(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 31 + 7);
}

/* Writes "0x" (if prefix) and the hex of p[0..n) to out, in upper case if upper; returns the
 * text's length. */
static size_t hex_text(char *out, const uint8_t *p, size_t n, int prefix, int upper)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    size_t o = 0;

    if (prefix) {
        out[o++] = '0';
        out[o++] = upper ? 'X' : 'x';
    }
    for (size_t i = 0; i < n; i++) {
        out[o++] = digits[p[i] >> 4];
        out[o++] = digits[p[i] & 15];
    }
    return o;
}

TEST(test_known_vectors)
{
    uint8_t d[32];

    tg_keccak256("", 0, d);
    ASSERT(unit_digest_is(d, EMPTY_HEX));
    tg_keccak256(NULL, 0, d);
    ASSERT(unit_digest_is(d, EMPTY_HEX));
    tg_keccak256("abc", 3, d);
    ASSERT(unit_digest_is(d, "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"));
}

static const struct {
    size_t n;
    const char *hex;
} block_vectors[] = {
    {1, "ee2a4bc7db81da2b7164e56b3649b1e2a09c58c455b15dabddd9146c7582cebc"},
    {135, "adee8145bb33dc0320ad44945eeeb391e4668f0f7c69ccbbf6550a7cba245e52"}, /* pad is 0x81 */
    {136, "eaccfc5aa7bf6bf1941809ef7cc9ee6a2fa306a7dd1de3f2e8504849b0a5e3c4"}, /* pad block */
    {137, "ea0e0b9657469f0b4f53604f1068ab4bd4a5e7b0a458d24a78f1fe2ec7bd4db0"},
    {200, "af34d36e1e9eb18df4a79a5a8304300700d164014a5d6400438116dfc1d9db28"},
    {271, "407871b419dca15e033dd9777154af2116326a7849eacadbc46b1618055ee0a2"},
    {272, "c62d6a60780d4e03408834062e58004a549cff1c7487c0b9a130810621b0fcae"},
    {273, "b47ca693c8d675afa3b0b644da6dc96613f07c6f8971f9a0077ed6b7c994561d"},
    {1000, "c77d9bffcae9f0984e6dff7eea63cc14cad5f367f791e27b08a1953f192f30a5"},
};

/* Around the block boundaries, from aligned and unaligned addresses, directly and as hex. */
TEST(test_block_boundaries)
{
    static uint8_t buf[1001];
    static char text[2 * 1000 + 2];
    uint8_t d[32];

    for (size_t i = 0; i < sizeof(block_vectors) / sizeof(block_vectors[0]); i++) {
        size_t n = block_vectors[i].n, len;

        pattern(buf, n);
        tg_keccak256(buf, n, d);
        ASSERT(unit_digest_is(d, block_vectors[i].hex));
        pattern(buf + 1, n);
        tg_keccak256(buf + 1, n, d);
        ASSERT(unit_digest_is(d, block_vectors[i].hex));

        len = hex_text(text, buf + 1, n, 1, 0);
        memset(d, 0, sizeof(d));
        ASSERT_EQ(0, tg_keccak256_hex(text, len, d));
        ASSERT(unit_digest_is(d, block_vectors[i].hex));
        len = hex_text(text, buf + 1, n, 0, 1);
        memset(d, 0, sizeof(d));
        ASSERT_EQ(0, tg_keccak256_hex(text, len, d));
        ASSERT(unit_digest_is(d, block_vectors[i].hex));
    }
}

/* The hex path's own block loop agrees with the direct one at every length up to three blocks,
 * and on a 256 KiB text, the largest the gateway passes in. */
TEST(test_hex_matches_direct)
{
    enum { BIG = 128 * 1024 };
    uint8_t *buf = malloc(BIG);
    char *text = malloc(2 * BIG + 2);
    uint8_t want[32], got[32];
    char w[65], g[65];

    ASSERT(buf != NULL && text != NULL);
    if (buf == NULL || text == NULL)
        goto out;
    pattern(buf, BIG);
    for (size_t n = 0; n <= 3 * 136 + 1; n++) {
        size_t len = hex_text(text, buf, n, n % 2, n % 3 == 0);

        tg_keccak256(buf, n, want);
        if (tg_keccak256_hex(text, len, got) != 0 || memcmp(want, got, 32) != 0) {
            unit_hex32(want, w);
            unit_hex32(got, g);
            UNIT_FAIL("length %zu: expected %s, got %s", n, w, g);
            break;
        }
    }
    tg_keccak256(buf, BIG, want);
    ASSERT_EQ(0, tg_keccak256_hex(text, hex_text(text, buf, BIG, 0, 0), got));
    ASSERT(memcmp(want, got, 32) == 0);
out:
    free(buf);
    free(text);
}

/* Signed with ethers' Wallet and the private key 0x4c0883a6...3f362318, chain id 1; the
 * expected hash is ethers' Transaction.from(raw).hash. */
static const struct {
    const char *raw;
    const char *hash;
} transactions[] = {
    /* EIP-1559 (type 2): 1 ether to 0x3535...35, nonce 7. */
    {"0x02f87301078459682f008506fc23ac00825208943535353535353535353535353535353535353535880de0b6"
     "b3a764000080c001a02b85fc755ea20c385d0686fa3c943ce504bef9794a4106545f15f45728186152a06e04"
     "219535948f1208aac36405a6dadc608749dbc831949c815e594b6f4c5f05",
     "bdde58b328b81ff88b3235632514c1b6fc3c4c7ad55e374c98b937a997816589"},
    /* Legacy with EIP-155 replay protection (v = 37), nonce 9. */
    {"0xf86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a7640000802"
     "5a0499aa1110848b179aa0f228e20faa3ba68b350e1feeab49638c6b8ce40ea56aea0053ec9b43dcea26f8d10"
     "b43a44bdfafae5b1b26462367921079005d4d274e06d",
     "e4e0d6b0c5b43efcf6651888cf149d88384f0762ff684a58a06f8997b6e1f979"},
    /* Type 2 carrying 300 bytes of call data: 414 bytes, so four blocks. */
    {"0x02f9019a0101843b9aca008504a817c80083030d4094353535353535353535353535353535353535353580b9"
     "012c0726456483a2c1e0ff1e3d5c7b9ab9d8f71635547392b1d0ef0e2d4c6b8aa9c8e70625446382a1c0dffe1"
     "d3c5b7a99b8d7f61534537291b0cfee0d2c4b6a89a8c7e60524436281a0bfdefd1c3b5a7998b7d6f514335271"
     "90afceed0c2b4a6988a7c6e504234261809fbeddfc1b3a597897b6d5f4133251708faecdec0b2a496887a6c5e"
     "4032241607f9ebddcfb1a39587796b5d4f31231506f8eadcceb0a29486786a5c4e30221405f7e9dbcdbfa1938"
     "577695b4d3f211304f6e8daccbea0928476685a4c3e201203f5e7d9cbbdaf91837567594b3d2f1102f4e6d8ca"
     "bcae90827466584a3c2e1001f3e5d7c9bbad9f81736557493b2d1f00f2e4d6c8baac9e80726456483a2c1e0ff"
     "1e3d5c7b9ab9d8f71635547392b1d0ef0e2d4c6b8aa9c8e70625446382a1c0dffe1d3cc001a0e7879f74e4af5"
     "c327807acb1b3d03e4ebe4f859c82b64aa7d8de209c89fee640a03a40385cef34ab6f9c2a7f57e906305e7354"
     "3aae7a1467cf561f4de39a952503",
     "024b4356117a9b24b96fbade0809363443bec1b19d895628debb8ae3f4541a8c"},
};

TEST(test_transaction_hashes)
{
    static char upper[1024];
    uint8_t d[32];

    for (size_t i = 0; i < sizeof(transactions) / sizeof(transactions[0]); i++) {
        const char *raw = transactions[i].raw;
        size_t len = strlen(raw);

        memset(d, 0, sizeof(d));
        ASSERT_EQ(0, tg_keccak256_hex(raw, len, d));
        ASSERT(unit_digest_is(d, transactions[i].hash));

        /* Without the prefix and in upper case, it is the same transaction. */
        ASSERT(len < sizeof(upper));
        for (size_t j = 0; j < len && j < sizeof(upper); j++)
            upper[j] = (raw[j] >= 'a' && raw[j] <= 'f') ? (char)(raw[j] - 32) : raw[j];
        memset(d, 0, sizeof(d));
        ASSERT_EQ(0, tg_keccak256_hex(upper + 2, len - 2, d));
        ASSERT(unit_digest_is(d, transactions[i].hash));
        upper[1] = 'X';
        memset(d, 0, sizeof(d));
        ASSERT_EQ(0, tg_keccak256_hex(upper, len, d));
        ASSERT(unit_digest_is(d, transactions[i].hash));
    }
}

static int hex_rejected(const char *s, size_t len)
{
    uint8_t d[32], before[32];

    memset(d, 0xa5, sizeof(d));
    memcpy(before, d, sizeof(d));
    if (tg_keccak256_hex(s, len, d) != -1) {
        fprintf(stderr, "accepted: \"%.*s\"\n", (int)len, s);
        return 0;
    }
    return memcmp(d, before, sizeof(d)) == 0; /* out stays as it was */
}

TEST(test_hex_errors)
{
    static char text[2 * 600 + 1];
    uint8_t d[32];

    /* No digits at all is the empty input. */
    ASSERT_EQ(0, tg_keccak256_hex("0x", 2, d));
    ASSERT(unit_digest_is(d, EMPTY_HEX));
    memset(d, 0, sizeof(d));
    ASSERT_EQ(0, tg_keccak256_hex("0X", 2, d));
    ASSERT(unit_digest_is(d, EMPTY_HEX));
    memset(d, 0, sizeof(d));
    ASSERT_EQ(0, tg_keccak256_hex("", 0, d));
    ASSERT(unit_digest_is(d, EMPTY_HEX));
    ASSERT_EQ(0, tg_keccak256_hex("00", 2, d)); /* a leading 0 without x is a digit */
    ASSERT(unit_digest_is(d, "bc36789e7a1e281436464229828f817d6612f7b477d66591ff96a9e064bcc98a"));

    ASSERT(hex_rejected("0", 1));
    ASSERT(hex_rejected("0x0", 3));
    ASSERT(hex_rejected("abc", 3));
    ASSERT(hex_rejected("0x616263f", 9));
    ASSERT(hex_rejected("x00", 3));
    ASSERT(hex_rejected("0x0x00", 6));
    ASSERT(hex_rejected("0xg0", 4));
    ASSERT(hex_rejected("0x0G", 4));
    ASSERT(hex_rejected("0x00 ", 5));
    ASSERT(hex_rejected(" 0x00", 5));
    ASSERT(hex_rejected("0x00\n0", 6));
    ASSERT(hex_rejected("0x\0"
                        "0",
                        4));
    ASSERT(hex_rejected("0x/:@`", 6)); /* the bytes either side of each digit range */
    ASSERT(hex_rejected("0xGg", 4));
    ASSERT(hex_rejected("0x\xc2\xb9", 4)); /* a superscript one is no digit */

    /* A bad digit in a full block, in the tail, or odd length after full blocks. */
    memset(text, 'a', sizeof(text) - 1);
    ASSERT_EQ(0, tg_keccak256_hex(text, 1200, d));
    text[5] = 'z';
    ASSERT(hex_rejected(text, 1200));
    text[5] = 'a';
    text[2 * 136 + 1] = 'z'; /* second block */
    ASSERT(hex_rejected(text, 1200));
    text[2 * 136 + 1] = 'a';
    text[1199] = '-'; /* last digit of the tail */
    ASSERT(hex_rejected(text, 1200));
    text[1199] = 'a';
    ASSERT(hex_rejected(text, 1199));
}

/* Written by the timing loop so the compiler cannot drop the digests it measures. */
volatile uint8_t digest_sink;

TEST(test_speed)
{
    enum { N = 200000, NTX = 50000 };
    const char *raw = transactions[0].raw;
    size_t rawlen = strlen(raw);
    uint8_t in[200], d[32];
    double t0, per_bytes, per_tx;

    pattern(in, sizeof(in));
    t0 = unit_now_s();
    for (int i = 0; i < N; i++) {
        in[0] = (uint8_t)i;
        tg_keccak256(in, sizeof(in), d);
        digest_sink ^= d[i & 31];
    }
    per_bytes = (unit_now_s() - t0) * 1e9 / N;
    t0 = unit_now_s();
    for (int i = 0; i < NTX; i++) {
        if (tg_keccak256_hex(raw, rawlen, d) != 0)
            break;
        digest_sink ^= d[i & 31];
    }
    per_tx = (unit_now_s() - t0) * 1e9 / NTX;
    printf("tg_keccak256: %.0f ns per 200-byte hash (hex of a %zu-byte transaction: %.0f ns)\n",
           per_bytes, (rawlen - 2) / 2, per_tx);
    ASSERT(per_bytes < 20000.0); /* loose: only catches something badly wrong, even under ASan */
}

int main(void)
{
    RUN(test_known_vectors);
    RUN(test_block_boundaries);
    RUN(test_hex_matches_direct);
    RUN(test_transaction_hashes);
    RUN(test_hex_errors);
    RUN(test_speed);
    return unit_report();
}
