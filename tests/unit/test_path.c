/*
 * Path normalisation (DESIGN §9.11): dot-segments, duplicate slashes, escapes, traversal.
 */
#include <stdlib.h>

#include "core/core.h"
#include "http/h1.h"
#include "unit.h"

struct path_case {
    const char *in;
    const char *out; /* NULL: rejected */
};

static const struct path_case cases[] = {
    {"/", "/"},
    {"/a/b/c", "/a/b/c"},
    {"/a/b/", "/a/b/"},
    {"/a/./b", "/a/b"},
    {"/a/.", "/a/"},
    {"/.", "/"},
    {"/./", "/"},
    {"/a/b/..", "/a/"},
    {"/a/b/../c", "/a/c"},
    {"/a/b/../../c", "/c"},
    {"/a/..", "/"},
    {"/a/../", "/"},
    {"//x", "/x"},
    {"///a//b///", "/a/b/"},
    {"/a/.//b/", "/a/b/"},
    {"/..a/a..b/...", "/..a/a..b/..."},
    {"/.hidden", "/.hidden"},
    /* escapes of unreserved characters are decoded, so %2E is a dot */
    {"/a/%2e/b", "/a/b"},
    {"/a/b/%2E%2e/c", "/a/c"},
    {"/a/.%2E/c", "/c"},
    {"/%41%62%7E%2D%5F", "/Ab~-_"},
    /* other escapes stay encoded with upper-case digits; %2F is never a separator */
    {"/a%2Fb", "/a%2Fb"},
    {"/a%2fb/..", "/"},
    {"/a/%2f/../b", "/a/b"},
    {"/%2e%2e%2fetc", "/..%2Fetc"},
    {"/a%5cb", "/a%5Cb"},
    {"/a%20b", "/a%20b"},
    {"/caf%c3%a9", "/caf%C3%A9"},
    /* every pchar literal */
    {"/az-._~!$&'()*+,;=:@09", "/az-._~!$&'()*+,;=:@09"},
    /* the query is kept byte for byte */
    {"/a/../b?x=/../&y=%2f", "/b?x=/../&y=%2f"},
    {"/a?", "/a?"},
    {"/?q?=/?", "/?q?=/?"},
    /* unescaped bytes browsers put in queries are accepted there, not in the path */
    {"/s?q={a}|^[b]`", "/s?q={a}|^[b]`"},
    {"//a/./?b", "/a/?b"},
    /* traversal above the root */
    {"/..", NULL},
    {"/../", NULL},
    {"/a/../..", NULL},
    {"/a/../../etc", NULL},
    {"/%2e%2e/", NULL},
    {"/%2E%2E/etc/passwd", NULL},
    {"/a/%2e%2e/%2e%2e/etc", NULL},
    {"/./../x", NULL},
    {"//..//x", NULL},
    /* backslash, bad escapes, bytes outside pchar, not origin-form */
    {"/a\\b", NULL},
    {"/\\..\\etc", NULL},
    {"/a%", NULL},
    {"/a%2", NULL},
    {"/a%zz", NULL},
    {"/a%2g", NULL},
    {"/a%00b", NULL},
    {"/a b", NULL},
    {"/a#frag", NULL},
    {"/a\"b", NULL},
    {"/a<b>", NULL},
    {"/a[b]", NULL},
    {"/a{b}", NULL},
    {"/a|b", NULL},
    {"/a^b", NULL},
    {"/a`b", NULL},
    {"/caf\xc3\xa9", NULL},
    {"/a\x7f", NULL},
    {"/a\tb", NULL},
    {"/?a#b", NULL},
    {"/?a b", NULL},
    {"/?%zz", NULL},
    {"/?a\\b", NULL},
    {"", NULL},
    {"a/b", NULL},
    {"*", NULL},
    {"http://x/", NULL},
};

TEST(test_normalize_table)
{
    for (size_t i = 0; i < TG_ARRAY_SIZE(cases); i++) {
        const struct path_case *c = &cases[i];
        size_t n = strlen(c->in);
        char *in = malloc(n ? n : 1), *out = malloc(n ? n : 1); /* exact sizes for ASan */
        ssize_t r;

        memcpy(in, c->in, n);
        r = tg_http_path_normalize(in, n, out);
        if (c->out == NULL) {
            if (r != -1)
                UNIT_FAIL("\"%s\": expected rejection, got \"%.*s\"", c->in, (int)r, out);
        } else if (r < 0) {
            UNIT_FAIL("\"%s\": expected \"%s\", got rejection", c->in, c->out);
        } else {
            ASSERT_STR(c->out, out, (size_t)r);
            ASSERT(r <= (ssize_t)n);
        }
        /* in place gives the same answer */
        r = tg_http_path_normalize(in, n, in);
        if (c->out == NULL)
            ASSERT_EQ(-1, r);
        else if (r >= 0)
            ASSERT_STR(c->out, in, (size_t)r);
        else
            UNIT_FAIL("\"%s\": in place rejected", c->in);
        free(in);
        free(out);
    }
}

/* Normalising twice changes nothing: routing and the upstream see the same bytes. */
TEST(test_idempotent)
{
    for (size_t i = 0; i < TG_ARRAY_SIZE(cases); i++) {
        char a[128], b[128];
        ssize_t r1, r2;

        if (cases[i].out == NULL)
            continue;
        r1 = tg_http_path_normalize(cases[i].in, strlen(cases[i].in), a);
        ASSERT(r1 > 0);
        r2 = tg_http_path_normalize(a, (size_t)r1, b);
        ASSERT_EQ(r1, r2);
        if (r1 == r2 && r1 > 0)
            ASSERT(memcmp(a, b, (size_t)r1) == 0);
    }
}

int main(void)
{
    RUN(test_normalize_table);
    RUN(test_idempotent);
    return unit_report();
}
