#include "core/core.h"
#include "core/str.h"

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

const char tg_digits2[201] = "00010203040506070809101112131415161718192021222324"
                             "25262728293031323334353637383940414243444546474849"
                             "50515253545556575859606162636465666768697071727374"
                             "75767778798081828384858687888990919293949596979899";

char *tg_put_u64(char *o, uint64_t v)
{
    char tmp[20], *t = tmp + sizeof tmp;
    size_t n;

    while (v >= 100) {
        t -= 2;
        memcpy(t, tg_digits2 + 2 * (v % 100), 2);
        v /= 100;
    }
    if (v >= 10) {
        t -= 2;
        memcpy(t, tg_digits2 + 2 * v, 2);
    } else {
        *--t = (char)('0' + v);
    }
    n = (size_t)(tmp + sizeof tmp - t);
    memcpy(o, t, n);
    return o + n;
}
