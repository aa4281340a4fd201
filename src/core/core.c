#include "core/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <string.h>

void tg_fatal(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("tollgate: fatal: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

void *tg_malloc(size_t size)
{
    void *p = malloc(size ? size : 1);

    if (p == NULL)
        tg_fatal("out of memory allocating %zu bytes", size);
    return p;
}

void *tg_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);

    if (p == NULL)
        tg_fatal("out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

void *tg_calloc_aligned(size_t align, size_t size)
{
    size_t n = (size + align - 1) / align * align;
    void *p = aligned_alloc(align, n ? n : align);

    if (p == NULL)
        tg_fatal("out of memory allocating %zu bytes", size);
    memset(p, 0, n ? n : align);
    return p;
}

void *tg_realloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);

    if (q == NULL)
        tg_fatal("out of memory reallocating %zu bytes", size);
    return q;
}

char *tg_strdup(const char *s)
{
    return tg_strndup(s, strlen(s));
}

char *tg_strndup(const char *s, size_t n)
{
    char *p = tg_malloc(n + 1);

    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

uint64_t tg_clock_mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
