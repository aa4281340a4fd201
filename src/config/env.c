#include "config/env.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/core.h"

static bool is_name_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

struct growbuf {
    char *p;
    size_t len, cap;
};

static void grow_append(struct growbuf *b, const char *s, size_t n)
{
    if (b->cap - b->len < n + 1) {
        size_t cap = b->cap ? b->cap : 64;

        while (cap - b->len < n + 1) {
            if (cap > SIZE_MAX / 2)
                tg_fatal("expanded value is too large");
            cap *= 2;
        }
        b->p = tg_realloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* Expands one ${...} starting at in.base[i] == '$'; returns the index after it, or 0 on error. */
static size_t expand_var(struct tg_str in, size_t i, struct growbuf *b, char *err, size_t errlen)
{
    size_t name = i + 2, end = name, close;
    const char *val, *def = NULL;
    size_t deflen = 0;
    char *var;

    while (end < in.len && is_name_char(in.base[end]))
        end++;
    close = end;
    while (close < in.len && in.base[close] != '}')
        close++;
    if (close == in.len) {
        snprintf(err, errlen, "'${' without a closing '}'");
        return 0;
    }
    if (end == name || !is_name_start(in.base[name])) {
        snprintf(err, errlen, "'${%.*s}' is not a valid variable name (letters, digits, '_')",
                 (int)(close - name), in.base + name);
        return 0;
    }
    if (end != close) {
        if (close - end < 2 || in.base[end] != ':' || in.base[end + 1] != '-') {
            snprintf(err, errlen, "'${%.*s}': expected ${NAME} or ${NAME:-default}",
                     (int)(close - name), in.base + name);
            return 0;
        }
        def = in.base + end + 2;
        deflen = close - end - 2;
    }
    var = tg_strndup(in.base + name, end - name);
    val = getenv(var);
    if (val != NULL && (val[0] != '\0' || def == NULL)) {
        grow_append(b, val, strlen(val));
    } else if (def != NULL) {
        grow_append(b, def, deflen);
    } else {
        snprintf(err, errlen,
                 "environment variable %s is not set (write ${%s:-default} to give a default)", var,
                 var);
        free(var);
        return 0;
    }
    free(var);
    return close + 1;
}

int tg_env_expand(struct tg_conf_arena *a, struct tg_str in, struct tg_str *out, char *err,
                  size_t errlen, size_t *err_off)
{
    struct growbuf b = {0};
    size_t i = 0, lit = 0;
    bool expanded = false;

    if (in.len == 0 || memchr(in.base, '$', in.len) == NULL) {
        *out = in;
        return 0;
    }
    while (i < in.len) {
        if (in.base[i] != '$' || i + 1 == in.len ||
            (in.base[i + 1] != '$' && in.base[i + 1] != '{')) {
            i++;
            continue;
        }
        grow_append(&b, in.base + lit, i - lit);
        expanded = true;
        if (in.base[i + 1] == '$') {
            grow_append(&b, "$", 1);
            i += 2;
        } else {
            size_t next = expand_var(in, i, &b, err, errlen);

            if (next == 0) {
                *err_off = i;
                free(b.p);
                return -1;
            }
            i = next;
        }
        lit = i;
    }
    if (!expanded) {
        *out = in;
        return 0;
    }
    grow_append(&b, in.base + lit, in.len - lit);
    out->base = tg_conf_arena_strndup(a, b.p, b.len);
    out->len = b.len;
    free(b.p);
    return 1;
}
