#include "core/sbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "core/json.h"

void tg_sbuf_reserve(struct tg_sbuf *b, size_t more)
{
    size_t cap = b->cap ? b->cap : 1024;

    if (b->len + more + 1 <= b->cap)
        return;
    while (cap < b->len + more + 1)
        cap *= 2;
    b->base = tg_realloc(b->base, cap);
    b->cap = cap;
}

void tg_sbuf_printf(struct tg_sbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(b->base ? b->base + b->len : NULL, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (b->len + (size_t)n + 1 > b->cap) {
        tg_sbuf_reserve(b, (size_t)n);
        va_start(ap, fmt);
        vsnprintf(b->base + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

void tg_sbuf_add(struct tg_sbuf *b, const char *s, size_t len)
{
    tg_sbuf_reserve(b, len);
    memcpy(b->base + b->len, s, len);
    b->len += len;
    b->base[b->len] = '\0';
}

void tg_sbuf_json(struct tg_sbuf *b, const char *s, size_t len)
{
    /* an escape is at most 6 bytes per input byte */
    tg_sbuf_reserve(b, len * 6 + 2);
    b->base[b->len++] = '"';
    b->len += tg_json_escape(b->base + b->len, b->cap - b->len - 2, s, len);
    b->base[b->len++] = '"';
    b->base[b->len] = '\0';
}

void tg_sbuf_dispose(struct tg_sbuf *b)
{
    free(b->base);
    b->base = NULL;
    b->len = b->cap = 0;
}
