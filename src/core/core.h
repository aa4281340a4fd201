/*
 * Common definitions shared by every module: result codes, invariants, fatal errors and the
 * allocation wrappers for small internal objects (which abort on failure, see STYLE.md).
 */
#ifndef TG_CORE_H
#define TG_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define TG_VERSION "0.1.0"

#define TG_OK       0
#define TG_ERROR    (-1)
#define TG_AGAIN    (-2)
#define TG_DECLINED (-3)

#define TG_LIKELY(x)                       __builtin_expect(!!(x), 1)
#define TG_UNLIKELY(x)                     __builtin_expect(!!(x), 0)
#define TG_ARRAY_SIZE(a)                   (sizeof(a) / sizeof((a)[0]))
#define TG_MIN(a, b)                       ((a) < (b) ? (a) : (b))
#define TG_MAX(a, b)                       ((a) > (b) ? (a) : (b))
#define TG_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Prints "tollgate: fatal: <message>" to stderr and aborts. Never returns. */
/* Monotonic clock, nanoseconds, read now (background threads; workers use tg_loop_now()). */
uint64_t tg_clock_mono_ns(void);
static inline int64_t tg_clock_mono_ms(void)
{
    return (int64_t)(tg_clock_mono_ns() / 1000000);
}

_Noreturn void tg_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Invariants: a violated one is a bug in tollgate, never the peer's fault. */
#define TG_BUG_ON(cond)                                                                            \
    do {                                                                                           \
        if (TG_UNLIKELY(cond))                                                                     \
            tg_fatal("BUG at %s:%d: %s", __FILE__, __LINE__, #cond);                               \
    } while (0)

/* Allocation for small internal objects: aborts through tg_fatal() on failure. */
void *tg_malloc(size_t size);
void *tg_calloc(size_t n, size_t size);
void *tg_realloc(void *p, size_t size);
/* Zeroed memory aligned to align (a power of two), for cache-line-aligned per-worker slots;
 * released with free(). */
void *tg_calloc_aligned(size_t align, size_t size);
char *tg_strdup(const char *s);
char *tg_strndup(const char *s, size_t n);

#endif
