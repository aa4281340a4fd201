/*
 * Minimal unit-test support. A test file defines test functions with TEST(name), lists them in
 * main() with RUN(name), and ends with `return unit_report();`. Failed assertions print both
 * sides and the location; the program prints "N passed, N failed" for scripts/run-tests.
 */
#ifndef TG_UNIT_H
#define TG_UNIT_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int unit_passed, unit_failed, unit_current_failed;

#define TEST(name) static void name(void)

#define RUN(name)                                                                                  \
    do {                                                                                           \
        unit_current_failed = 0;                                                                   \
        name();                                                                                    \
        if (unit_current_failed)                                                                   \
            unit_failed++;                                                                         \
        else                                                                                       \
            unit_passed++;                                                                         \
    } while (0)

#define UNIT_FAIL(...)                                                                             \
    do {                                                                                           \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                            \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        unit_current_failed = 1;                                                                   \
    } while (0)

#define ASSERT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond))                                                                               \
            UNIT_FAIL("assertion failed: %s", #cond);                                              \
    } while (0)

#define ASSERT_EQ(expected, actual)                                                                \
    do {                                                                                           \
        long long e_ = (long long)(expected), a_ = (long long)(actual);                            \
        if (e_ != a_)                                                                              \
            UNIT_FAIL("%s == %s: expected %lld, got %lld", #expected, #actual, e_, a_);            \
    } while (0)

#define ASSERT_STREQ(expected, actual)                                                             \
    do {                                                                                           \
        const char *e_ = (expected), *a_ = (actual);                                               \
        if (e_ == NULL || a_ == NULL || strcmp(e_, a_) != 0)                                       \
            UNIT_FAIL("%s: expected \"%s\", got \"%s\"", #actual, e_ ? e_ : "(null)",              \
                      a_ ? a_ : "(null)");                                                         \
    } while (0)

/* Compares a counted string with a C string. */
#define ASSERT_STR(expected, base, len)                                                            \
    do {                                                                                           \
        const char *e_ = (expected);                                                               \
        size_t l_ = (len);                                                                         \
        if (strlen(e_) != l_ || (l_ != 0 && memcmp(e_, (base), l_) != 0))                          \
            UNIT_FAIL("expected \"%s\", got \"%.*s\"", e_, (int)l_, (const char *)(base));         \
    } while (0)

/* Seconds on the monotonic clock, for the timing lines some tests print. */
static inline double unit_now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A 32-byte digest as 64 lowercase hex digits. */
static inline void unit_hex32(const uint8_t d[32], char out[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* Whether digest d is the hex text given; prints both when not. */
static inline int unit_digest_is(const uint8_t d[32], const char *hex)
{
    char got[65];

    unit_hex32(d, got);
    if (strcmp(got, hex) != 0) {
        fprintf(stderr, "digest: expected %s, got %s\n", hex, got);
        return 0;
    }
    return 1;
}

static inline int unit_report(void)
{
    printf("%d passed, %d failed\n", unit_passed, unit_failed);
    return unit_failed ? 1 : 0;
}

#endif
