/*
 * Rewrite templates: literal text with "{name}" references to the captures of the route's host
 * and path patterns, plus the built-in "{path}" and "{host}". Templates are checked once at
 * load time, so expansion, which runs per request, only copies bytes.
 */
#include "router/router.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "router/router_internal.h"

__attribute__((format(printf, 3, 4))) static int rw_fail(char *err, size_t errlen, const char *fmt,
                                                         ...)
{
    va_list ap;

    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static bool rw_is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/*
 * The names a template may use, in the order tg_router_match() records them (host first), and
 * whether a name is defined by both patterns, which would make "{name}" ambiguous.
 */
struct rw_names {
    struct tg__rt_pattern host, path;
    char *host_text;
    struct tg_str names[2 * TG_ROUTER_MAX_CAPTURES];
    size_t num;
};

static int rw_names_init(struct rw_names *nm, const char *host_pattern, const char *path_pattern,
                         char *err, size_t errlen)
{
    char perr[128];
    size_t off, i;

    memset(nm, 0, sizeof(*nm));
    if (host_pattern != NULL) {
        nm->host_text = tg_strdup(host_pattern);
        tg__rt_host_normalise(nm->host_text);
        if (tg__rt_compile(nm->host_text, 1, &nm->host, perr, sizeof(perr), &off) < 0)
            return rw_fail(err, errlen, "invalid host pattern: %s", perr);
        for (i = 0; i < nm->host.num_caps; i++)
            nm->names[nm->num++] = nm->host.names[i];
    }
    if (path_pattern != NULL) {
        if (tg__rt_compile(path_pattern, 0, &nm->path, perr, sizeof(perr), &off) < 0)
            return rw_fail(err, errlen, "invalid path pattern: %s", perr);
        for (i = 0; i < nm->path.num_caps; i++)
            nm->names[nm->num++] = nm->path.names[i];
    }
    return 0;
}

static int rw_check_name(const struct rw_names *nm, struct tg_str name, size_t off, char *err,
                         size_t errlen)
{
    size_t i, found = nm->num;

    if (tg_str_eq(name, TG_STR_LIT("path")) || tg_str_eq(name, TG_STR_LIT("host")))
        return 0;
    for (i = 0; i < nm->num; i++) {
        if (!tg_str_eq(nm->names[i], name))
            continue;
        if (found != nm->num)
            return rw_fail(err, errlen,
                           "'{%.*s}' at offset %zu is ambiguous: both the host and the path "
                           "pattern capture '%.*s'",
                           (int)name.len, name.base, off, (int)name.len, name.base);
        found = i;
    }
    if (found == nm->num)
        return rw_fail(err, errlen, "unknown capture '{%.*s}' at offset %zu", (int)name.len,
                       name.base, off);
    if (found >= TG_ROUTER_MAX_CAPTURES)
        return rw_fail(err, errlen,
                       "'{%.*s}' at offset %zu is beyond the first %d captures of the host and "
                       "path patterns together",
                       (int)name.len, name.base, off, TG_ROUTER_MAX_CAPTURES);
    return 0;
}

/* Checks the "{...}" that starts at offset i; returns the offset of its '}', or -1. */
static ssize_t rw_check_ref(const struct rw_names *nm, const char *t, size_t i, char *err,
                            size_t errlen)
{
    size_t j = i + 1;

    while (rw_is_name_char(t[j]))
        j++;
    if (t[j] == '*' && t[j + 1] == '}')
        return rw_fail(err, errlen,
                       "'{name*}' at offset %zu is pattern syntax: write '{%.*s}' in a template, "
                       "also for a rest capture",
                       i, (int)(j - i - 1), t + i + 1);
    if (t[j] == '\0')
        return rw_fail(err, errlen, "unterminated '{' at offset %zu", i);
    if (t[j] != '}')
        return rw_fail(err, errlen, "invalid character in capture name at offset %zu", j);
    if (j == i + 1)
        return rw_fail(err, errlen, "empty '{}' at offset %zu", i);
    if (t[i + 1] >= '0' && t[i + 1] <= '9')
        return rw_fail(err, errlen, "invalid capture name at offset %zu", i + 1);
    if (rw_check_name(nm, tg_str_make(t + i + 1, j - i - 1), i, err, errlen) < 0)
        return -1;
    return (ssize_t)j;
}

int tg_router_template_check(const char *tmpl, const char *host_pattern, const char *path_pattern,
                             char *err, size_t errlen)
{
    struct rw_names nm;
    ssize_t end;
    int rc = -1;

    if (rw_names_init(&nm, host_pattern, path_pattern, err, errlen) < 0)
        goto out;
    if (tmpl == NULL || tmpl[0] == '\0') {
        rw_fail(err, errlen, "empty template");
        goto out;
    }
    for (size_t i = 0; tmpl[i] != '\0'; i++) {
        unsigned char c = (unsigned char)tmpl[i];

        if (c == '{') {
            end = rw_check_ref(&nm, tmpl, i, err, errlen);
            if (end < 0)
                goto out;
            i = (size_t)end;
        } else if (c == '}') {
            rw_fail(err, errlen, "'}' without '{' at offset %zu", i);
            goto out;
        } else if (c <= ' ' || c == 0x7f) {
            /* Space and control bytes are invalid in both a request target and a Host value. */
            rw_fail(err, errlen, "character not allowed at offset %zu", i);
            goto out;
        }
    }
    rc = 0;
out:
    free(nm.host_text);
    return rc;
}

static bool rw_lookup(const struct tg_route_captures *caps, struct tg_str name, struct tg_str host,
                      struct tg_str path, struct tg_str *val)
{
    if (tg_str_eq(name, TG_STR_LIT("path"))) {
        *val = path;
        return true;
    }
    if (tg_str_eq(name, TG_STR_LIT("host"))) {
        const char *c = NULL;

        if (host.len > 0 && host.base[0] == '[')
            c = memchr(host.base, ']', host.len);
        else if (host.len > 0)
            c = memchr(host.base, ':', host.len);
        if (c != NULL)
            host.len = (size_t)(c - host.base) + (host.base[0] == '[');
        *val = host;
        return true;
    }
    for (size_t i = 0; caps != NULL && i < caps->num; i++) {
        if (tg_str_eq(caps->names[i], name)) {
            *val = caps->values[i];
            return true;
        }
    }
    return false;
}

ssize_t tg_router_expand(const char *tmpl, const struct tg_route_captures *caps, struct tg_str host,
                         struct tg_str path, char *out, size_t outlen)
{
    const char *t = tmpl, *e;
    struct tg_str v;
    size_t o = 0;

    while (*t != '\0') {
        if (*t == '{') {
            e = strchr(t, '}');
            if (e == NULL ||
                !rw_lookup(caps, tg_str_make(t + 1, (size_t)(e - t - 1)), host, path, &v))
                return -1;
            t = e + 1;
        } else {
            e = strchrnul(t, '{');
            v = tg_str_make(t, (size_t)(e - t));
            t = e;
        }
        if (v.len > outlen - o)
            return -1;
        if (v.len > 0)
            memcpy(out + o, v.base, v.len);
        o += v.len;
    }
    return (ssize_t)o;
}
