/*
 * W3C traceparent parsing and generation (src/obs/trace.c).
 */
#include <stdlib.h>

#include "obs/trace.h"
#include "unit.h"

#define TP_EXAMPLE "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

/*
 * Parses s from a heap copy of exactly its length, so that the sanitizer build catches a read
 * past the value (header values are not NUL-terminated in tollgate).
 */
static int parse_exact(const char *s, struct tg_trace *t)
{
    size_t n = strlen(s);
    char *copy = malloc(n ? n : 1);
    int r;

    memcpy(copy, s, n);
    r = tg_trace_parse(copy, n, t);
    free(copy);
    return r;
}

TEST(parse_example)
{
    struct tg_trace t;

    ASSERT_EQ(0, parse_exact(TP_EXAMPLE, &t));
    ASSERT_STR("4bf92f3577b34da6a3ce929d0e0e4736", t.trace_id, sizeof(t.trace_id));
    ASSERT_STR("00f067aa0ba902b7", t.parent_id, sizeof(t.parent_id));
    ASSERT_EQ(1, t.flags);
}

TEST(parse_flags)
{
    static const struct {
        const char *flags;
        int value;
    } cases[] = {{"00", 0x00}, {"01", 0x01}, {"09", 0x09}, {"a0", 0xa0}, {"ff", 0xff}};
    char v[] = TP_EXAMPLE;
    struct tg_trace t;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memcpy(v + 53, cases[i].flags, 2);
        ASSERT_EQ(0, parse_exact(v, &t));
        ASSERT_EQ(cases[i].value, t.flags);
    }
}

/* Valid values; the ids read are always the ones of TP_EXAMPLE's layout. */
static const char *const valid[] = {
    TP_EXAMPLE,
    "00-00000000000000000000000000000001-0000000000000001-00",
    "00-10000000000000000000000000000000-1000000000000000-ff",
    "00-abcdefabcdefabcdefabcdefabcdef01-0123456789abcdef-01",
    /* future versions: the 00 layout, then nothing or '-' and fields this version ignores */
    "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like",
    "fe-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-",
    "0a-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
};

static const char *const invalid[] = {
    "",
    "00",
    /* lengths */
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-010",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
    "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e47366-0f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-701",
    "0-04bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "000-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
    /* uppercase hex in each field */
    "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e473F-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
    /* all-zero ids */
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
    "00-00000000000000000000000000000000-0000000000000000-01",
    "01-00000000000000000000000000000000-00f067aa0ba902b7-01-x",
    /* the reserved version */
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
    /* separators */
    "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
    "00 4bf92f3577b34da6a3ce929d0e0e4736 00f067aa0ba902b7 01",
    /* a future version must be followed by '-' after the flags, and keep the 00 layout */
    "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
    "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0101",
    "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01-x",
    /* non-hex characters */
    "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
    "00-4bf92f3577b34da6a3ce929d0e0e 736-00f067aa0ba902b7-01",
    "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736--0f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-\3771",
};

TEST(parse_valid_table)
{
    struct tg_trace t;

    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        if (parse_exact(valid[i], &t) != 0)
            UNIT_FAIL("rejected valid traceparent \"%s\"", valid[i]);
        else
            ASSERT(memcmp(t.trace_id, valid[i] + 3, 32) == 0 &&
                   memcmp(t.parent_id, valid[i] + 36, 16) == 0);
    }
}

TEST(parse_invalid_table)
{
    struct tg_trace t;

    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        if (parse_exact(invalid[i], &t) != -1)
            UNIT_FAIL("accepted invalid traceparent \"%s\"", invalid[i]);
    }
}

/* A NUL inside the value is just another invalid byte: lengths are counted, not terminated. */
TEST(parse_embedded_nul)
{
    char v[] = TP_EXAMPLE;
    struct tg_trace t;

    v[10] = '\0';
    ASSERT_EQ(-1, tg_trace_parse(v, 55, &t));
    memcpy(v, TP_EXAMPLE, sizeof(v));
    ASSERT_EQ(0, tg_trace_parse(v, 55, &t));
}

/* Only len bytes are read: what follows in the buffer does not matter. */
TEST(parse_counted)
{
    const char buf[] = TP_EXAMPLE "garbage";
    struct tg_trace t;

    ASSERT_EQ(0, tg_trace_parse(buf, 55, &t));
    ASSERT_EQ(-1, tg_trace_parse(buf, 56, &t));
    ASSERT_EQ(-1, tg_trace_parse(buf, 54, &t));
}

static void seed(uint64_t s[4], uint64_t x)
{
    for (int i = 0; i < 4; i++)
        s[i] = (x + (uint64_t)i) * 0x9e3779b97f4a7c15ull;
}

static int all_zero(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != '0')
            return 0;
    return 1;
}

TEST(new_parses_back)
{
    uint64_t s[4];
    char out[TG_TRACEPARENT_LEN];
    struct tg_trace made, parsed;

    seed(s, 42);
    for (int i = 0; i < 10000; i++) {
        tg_trace_new(s, out, &made);
        if (tg_trace_parse(out, sizeof(out), &parsed) != 0) {
            UNIT_FAIL("generated traceparent does not parse: %.55s", out);
            return;
        }
        ASSERT(memcmp(out, "00-", 3) == 0 && memcmp(out + 52, "-01", 3) == 0);
        ASSERT(memcmp(made.trace_id, parsed.trace_id, sizeof(made.trace_id)) == 0);
        ASSERT(memcmp(made.parent_id, parsed.parent_id, sizeof(made.parent_id)) == 0);
        ASSERT_EQ(1, made.flags);
        ASSERT_EQ(1, parsed.flags);
    }
}

TEST(new_ids_differ)
{
    uint64_t s[4];
    char a[TG_TRACEPARENT_LEN], b[TG_TRACEPARENT_LEN];
    struct tg_trace ta, tb;

    seed(s, 7);
    tg_trace_new(s, a, &ta);
    for (int i = 0; i < 1000; i++) {
        tg_trace_new(s, b, &tb);
        ASSERT(memcmp(ta.trace_id, tb.trace_id, sizeof(ta.trace_id)) != 0);
        ASSERT(memcmp(ta.parent_id, tb.parent_id, sizeof(ta.parent_id)) != 0);
        ASSERT(memcmp(tb.trace_id, tb.parent_id, sizeof(tb.parent_id)) != 0);
        memcpy(a, b, sizeof(a));
        ta = tb;
    }
}

/* Every hex digit shows up in every position: the encoder covers the whole byte range. */
TEST(new_uses_all_digits)
{
    uint64_t s[4];
    char out[TG_TRACEPARENT_LEN];
    struct tg_trace t;
    unsigned seen[48] = {0};

    seed(s, 1);
    for (int i = 0; i < 2000; i++) {
        tg_trace_new(s, out, &t);
        for (int j = 0; j < 32; j++)
            seen[j] |=
                1u << (t.trace_id[j] <= '9' ? t.trace_id[j] - '0' : t.trace_id[j] - 'a' + 10);
        for (int j = 0; j < 16; j++)
            seen[32 + j] |=
                1u << (t.parent_id[j] <= '9' ? t.parent_id[j] - '0' : t.parent_id[j] - 'a' + 10);
    }
    for (int j = 0; j < 48; j++)
        ASSERT_EQ(0xffff, seen[j]);
}

/* An unseeded (all-zero) state must still give valid, distinct ids and leave a usable state. */
TEST(new_from_zero_state)
{
    uint64_t s[4] = {0, 0, 0, 0};
    char a[TG_TRACEPARENT_LEN], b[TG_TRACEPARENT_LEN];
    struct tg_trace ta, tb;

    tg_trace_new(s, a, &ta);
    ASSERT((s[0] | s[1] | s[2] | s[3]) != 0);
    ASSERT(!all_zero(ta.trace_id, sizeof(ta.trace_id)));
    ASSERT(!all_zero(ta.parent_id, sizeof(ta.parent_id)));
    ASSERT_EQ(0, tg_trace_parse(a, sizeof(a), &ta));
    tg_trace_new(s, b, &tb);
    ASSERT_EQ(0, tg_trace_parse(b, sizeof(b), &tb));
    ASSERT(memcmp(a, b, sizeof(a)) != 0);
}

TEST(new_never_zero)
{
    uint64_t s[4];
    char out[TG_TRACEPARENT_LEN];
    struct tg_trace t;

    seed(s, 0);
    for (int i = 0; i < 100000; i++) {
        tg_trace_new(s, out, &t);
        if (all_zero(t.trace_id, sizeof(t.trace_id)) ||
            all_zero(t.parent_id, sizeof(t.parent_id))) {
            UNIT_FAIL("all-zero id at draw %d: %.55s", i, out);
            return;
        }
    }
}

/* The same seed gives the same ids: workers seeded differently get different sequences. */
TEST(new_deterministic_per_seed)
{
    uint64_t s1[4], s2[4], s3[4];
    char a[TG_TRACEPARENT_LEN], b[TG_TRACEPARENT_LEN], c[TG_TRACEPARENT_LEN];
    struct tg_trace t;

    seed(s1, 99);
    seed(s2, 99);
    seed(s3, 100);
    tg_trace_new(s1, a, &t);
    tg_trace_new(s2, b, &t);
    tg_trace_new(s3, c, &t);
    ASSERT(memcmp(a, b, sizeof(a)) == 0);
    ASSERT(memcmp(a, c, sizeof(a)) != 0);
}

int main(void)
{
    RUN(parse_example);
    RUN(parse_flags);
    RUN(parse_valid_table);
    RUN(parse_invalid_table);
    RUN(parse_embedded_nul);
    RUN(parse_counted);
    RUN(new_parses_back);
    RUN(new_ids_differ);
    RUN(new_uses_all_digits);
    RUN(new_from_zero_state);
    RUN(new_never_zero);
    RUN(new_deterministic_per_seed);
    return unit_report();
}
