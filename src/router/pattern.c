/*
 * Host and path pattern syntax: parsing a pattern into the literal and capture parts that
 * router.c matches, and every syntax error the configuration loader reports.
 *
 * A pattern is split into parts at its captures. A segment capture "{name}" matches the bytes
 * of one segment (path) or label (host) that its literal neighbours in the same segment leave
 * over, which is why a segment may hold only one capture: with one, matching is a single
 * forward pass with no backtracking, so its cost is linear in the request and bounded.
 */
#include "router/router_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"

struct rt_parse {
    const char *p;
    size_t n;
    int is_host;
    char sep;
    struct tg__rt_pattern *out;
    char *err;
    size_t errlen;
    size_t *col_off;
};

__attribute__((format(printf, 3, 4))) static int rt_fail(struct rt_parse *ps, size_t off,
                                                         const char *fmt, ...)
{
    va_list ap;

    if (ps->err != NULL && ps->errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(ps->err, ps->errlen, fmt, ap);
        va_end(ap);
    }
    if (ps->col_off != NULL)
        *ps->col_off = off;
    return -1;
}

static bool rt_is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool rt_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool rt_is_hex(char c)
{
    return rt_is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool rt_is_name_start(char c)
{
    return rt_is_alpha(c) || c == '_';
}

static bool rt_is_name_char(char c)
{
    return rt_is_name_start(c) || rt_is_digit(c);
}

/*
 * RFC 3986 pchar minus '*', whose only meaning in a pattern would be a glob that the router does
 * not implement; a literal '*' in a request path is rare enough that refusing it is kinder.
 */
static bool rt_is_path_char(char c)
{
    if (rt_is_alpha(c) || rt_is_digit(c))
        return true;
    return c != '\0' && strchr("-._~!$&'()+,;=:@/%", c) != NULL;
}

static bool rt_is_host_char(char c)
{
    return rt_is_alpha(c) || rt_is_digit(c) || c == '-' || c == '_';
}

void tg__rt_host_normalise(char *pattern)
{
    size_t n = strlen(pattern);

    for (size_t i = 0; i < n; i++) {
        if (pattern[i] >= 'A' && pattern[i] <= 'Z')
            pattern[i] = (char)(pattern[i] | 0x20);
    }
    /* "example.com." names the same host; "." alone stays so that it is reported. */
    if (n > 1 && pattern[n - 1] == '.')
        pattern[n - 1] = '\0';
}

static void rt_add_literal(struct rt_parse *ps, size_t start, size_t end)
{
    struct tg__rt_pattern *out = ps->out;
    struct tg__rt_part *pa;

    if (end == start)
        return;
    TG_BUG_ON(out->num_parts >= TG__RT_MAX_PARTS);
    pa = &out->parts[out->num_parts++];
    pa->kind = TG__RT_LIT;
    pa->lit = ps->p + start;
    pa->len = (uint32_t)(end - start);
    out->literal_bytes += pa->len;
}

/*
 * Parses the capture that starts with '{' at offset i and adds its part. *seg_has_cap tracks
 * the one-capture-per-segment rule. Returns the offset of the closing '}', or (size_t)-1 after
 * reporting an error.
 */
static size_t rt_parse_capture(struct rt_parse *ps, size_t i, bool *seg_has_cap)
{
    struct tg__rt_pattern *out = ps->out;
    const char *p = ps->p;
    struct tg__rt_part *pa;
    struct tg_str name;
    size_t j = i + 1, k;
    bool splat = false;

    if (p[j] == '}')
        return (size_t)rt_fail(ps, i, "empty capture name");
    if (p[j] == '\0')
        return (size_t)rt_fail(ps, i, "unterminated '{'");
    if (!rt_is_name_start(p[j]))
        return (size_t)rt_fail(ps, j, "invalid capture name: names are [A-Za-z_][A-Za-z0-9_]*");
    while (rt_is_name_char(p[j]))
        j++;
    name = tg_str_make(p + i + 1, j - i - 1);
    if (p[j] == '*') {
        splat = true;
        j++;
    }
    if (p[j] == '\0')
        return (size_t)rt_fail(ps, i, "unterminated '{'");
    if (p[j] != '}')
        return (size_t)rt_fail(ps, j, "invalid capture name: names are [A-Za-z_][A-Za-z0-9_]*");

    if (splat && ps->is_host)
        return (size_t)rt_fail(ps, i, "'{name*}' is not allowed in a host pattern");
    if (splat && j + 1 != ps->n)
        return (size_t)rt_fail(ps, i, "'{%.*s*}' must end the pattern", (int)name.len, name.base);
    if (*seg_has_cap)
        return (size_t)rt_fail(ps, i, "only one capture per %s", ps->is_host ? "label" : "segment");
    if (tg_str_eq(name, TG_STR_LIT("path")) || tg_str_eq(name, TG_STR_LIT("host")))
        return (size_t)rt_fail(ps, i + 1, "capture name '%.*s' is reserved for rewrite templates",
                               (int)name.len, name.base);
    for (k = 0; k < out->num_caps; k++) {
        if (tg_str_eq(out->names[k], name))
            return (size_t)rt_fail(ps, i + 1, "duplicate capture name '%.*s'", (int)name.len,
                                   name.base);
    }
    if (out->num_caps == TG_ROUTER_MAX_CAPTURES)
        return (size_t)rt_fail(ps, i, "too many captures (at most %d)", TG_ROUTER_MAX_CAPTURES);

    *seg_has_cap = true;
    TG_BUG_ON(out->num_parts >= TG__RT_MAX_PARTS);
    pa = &out->parts[out->num_parts++];
    pa->kind = splat ? TG__RT_SPLAT : TG__RT_CAP;
    pa->cap = out->num_caps;
    out->names[out->num_caps++] = name;
    out->splat = splat;
    /* The literal rest of this segment, which the capture must leave for the next part. */
    for (k = j + 1; k < ps->n && p[k] != ps->sep; k++)
        pa->seg_suffix++;
    return j;
}

/* A normalised request path has no empty, "." or ".." segments, so such a pattern is dead. */
static int rt_check_segment(struct rt_parse *ps, size_t slash)
{
    const char *seg = ps->p + slash + 1;
    size_t len = strcspn(seg, "/");

    if (len == 0 && seg[0] == '/')
        return rt_fail(ps, slash + 1, "empty segment ('//') never matches a normalised path");
    if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
        return rt_fail(ps, slash + 1, "dot segment never matches a normalised path");
    return 0;
}

static int rt_check_path_byte(struct rt_parse *ps, size_t i)
{
    const char *p = ps->p;

    if (p[i] == '*')
        return rt_fail(ps, i,
                       "'*' is not allowed in a path pattern: end the pattern with '/' for a "
                       "prefix, or capture the rest with {name*}");
    if (!rt_is_path_char(p[i]))
        return rt_fail(ps, i, "character not allowed in a path pattern");
    if (p[i] == '%' && !(rt_is_hex(p[i + 1]) && rt_is_hex(p[i + 2])))
        return rt_fail(ps, i, "'%%' must be followed by two hex digits");
    if (p[i] == '/')
        return rt_check_segment(ps, i);
    return 0;
}

static int rt_check_host_byte(struct rt_parse *ps, size_t i, size_t label_start)
{
    const char *p = ps->p;

    if (p[i] == '.') {
        if (i == label_start || i + 1 == ps->n)
            return rt_fail(ps, i, "empty label in host pattern");
        return 0;
    }
    if (p[i] == ':')
        return rt_fail(ps, i, "a host pattern has no port: the port of the request is ignored");
    if (p[i] == '*')
        return rt_fail(ps, i, "'*' is only allowed as the whole first label ('*.example.com')");
    if (!rt_is_host_char(p[i]))
        return rt_fail(ps, i, "character not allowed in a host pattern");
    return 0;
}

/* "[2001:db8::1]": an IPv6 literal, matched exactly against a bracketed Host. */
static int rt_parse_ip6(struct rt_parse *ps)
{
    const char *p = ps->p;
    size_t i;

    for (i = 1; i < ps->n && p[i] != ']'; i++) {
        if (!rt_is_hex(p[i]) && p[i] != ':' && p[i] != '.')
            return rt_fail(ps, i, "character not allowed in an IPv6 literal");
    }
    if (i == ps->n)
        return rt_fail(ps, 0, "unterminated '['");
    if (i == 1)
        return rt_fail(ps, i, "empty IPv6 literal");
    if (i + 1 != ps->n)
        return rt_fail(ps, i + 1, "a host pattern has no port: the port of the request is ignored");
    rt_add_literal(ps, 0, ps->n);
    return 0;
}

static int rt_parse_start(struct rt_parse *ps, size_t *start)
{
    const char *p = ps->p;

    *start = 0;
    if (ps->n == 0)
        return rt_fail(ps, 0, "empty pattern");
    if (!ps->is_host) {
        if (p[0] != '/')
            return rt_fail(ps, 0, "a path pattern must start with '/'");
        return 0;
    }
    if (p[0] == '*') {
        if (p[1] != '.')
            return rt_fail(ps, 1, "'*' must be followed by '.' ('*.example.com')");
        if (p[2] == '\0')
            return rt_fail(ps, 2, "'*.' must be followed by a domain");
        ps->out->wildcard = true;
        for (size_t i = 2; i < ps->n; i++)
            ps->out->wild_dots += p[i] == '.';
        *start = 2;
    }
    return 0;
}

int tg__rt_compile(const char *pattern, int is_host, struct tg__rt_pattern *out, char *err,
                   size_t errlen, size_t *col_off)
{
    struct rt_parse ps = {pattern, strlen(pattern), is_host, is_host ? '.' : '/', out,
                          err,     errlen,          col_off};
    size_t i, lit_start, label_start;
    bool seg_has_cap = false;
    struct tg__rt_part *last;

    memset(out, 0, sizeof(*out));
    out->text = pattern;
    out->text_len = ps.n;
    if (rt_parse_start(&ps, &i) < 0)
        return -1;
    if (is_host && pattern[0] == '[')
        return rt_parse_ip6(&ps);

    lit_start = label_start = i;
    for (; i < ps.n; i++) {
        if (pattern[i] == '{') {
            rt_add_literal(&ps, lit_start, i);
            i = rt_parse_capture(&ps, i, &seg_has_cap);
            if (i == (size_t)-1)
                return -1;
            lit_start = i + 1;
            continue;
        }
        if (pattern[i] == '}')
            return rt_fail(&ps, i, "'}' without '{'");
        if ((is_host ? rt_check_host_byte(&ps, i, label_start) : rt_check_path_byte(&ps, i)) < 0)
            return -1;
        if (pattern[i] == ps.sep) {
            seg_has_cap = false;
            label_start = i + 1;
        }
    }
    rt_add_literal(&ps, lit_start, ps.n);

    if (!is_host && pattern[ps.n - 1] == '/')
        out->prefix = true;
    /*
     * "/api/" and "/api/{rest*}" also match "/api": a client that leaves out the trailing
     * slash means the same collection, and sending it a 404 would only confuse. The pattern "/"
     * alone keeps its slash so that the empty path (never sent by the parser) stays unmatched.
     */
    last = &out->parts[out->num_parts - 1];
    if (out->splat && out->num_parts >= 2)
        last--;
    if ((out->prefix || out->splat) && last->kind == TG__RT_LIT &&
        (last->len > 1 || last != out->parts) && last->lit[last->len - 1] == '/')
        last->opt_sep = true;
    return 0;
}

int tg_router_pattern_check(const char *pattern, int is_host, char *err, size_t errlen,
                            size_t *col_off)
{
    struct tg__rt_pattern pt;
    char *copy;
    int rc;

    if (col_off != NULL)
        *col_off = 0;
    if (pattern == NULL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "empty pattern");
        return -1;
    }
    copy = tg_strdup(pattern);
    if (is_host)
        tg__rt_host_normalise(copy);
    rc = tg__rt_compile(copy, is_host, &pt, err, errlen, col_off);
    free(copy);
    return rc;
}
