/*
 * Counted strings. struct tg_str is layout-compatible with struct iovec so header slices can be
 * handed to writev() without copying. An all-zero value is the empty string.
 */
#ifndef TG_STR_H
#define TG_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

struct tg_str {
    const char *base;
    size_t len;
};

#define TG_STR_LIT(s) ((struct tg_str){(s), sizeof(s) - 1})

static inline struct tg_str tg_str_make(const char *base, size_t len)
{
    return (struct tg_str){base, len};
}

static inline struct tg_str tg_str_cstr(const char *s)
{
    return (struct tg_str){s, s ? strlen(s) : 0};
}

static inline bool tg_str_eq(struct tg_str a, struct tg_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.base, b.base, a.len) == 0);
}

/* ASCII case-insensitive comparison, for header names and tokens. */
static inline bool tg_str_ieq(struct tg_str a, struct tg_str b)
{
    return a.len == b.len && (a.len == 0 || strncasecmp(a.base, b.base, a.len) == 0);
}

static inline bool tg_str_ieq_lit(struct tg_str a, const char *lit, size_t litlen)
{
    return a.len == litlen && strncasecmp(a.base, lit, litlen) == 0;
}

#define TG_STR_IEQ(a, lit) tg_str_ieq_lit((a), (lit), sizeof(lit) - 1)

/* "00" "01" ... "99": two decimal digits at 2 * n. */
extern const char tg_digits2[201];

/* Writes v in decimal at o (at most 20 bytes, no NUL); returns the end. */
char *tg_put_u64(char *o, uint64_t v);

/* Appends n bytes of src at p, jumping to the caller's `overflow` label when they would pass
 * end (composition of heads into fixed scratch space). */
#define TG_PUT(p, end, src, n)                                                                     \
    do {                                                                                           \
        size_t n_ = (n);                                                                           \
        if ((size_t)((end) - (p)) < n_)                                                            \
            goto overflow;                                                                         \
        if (n_ != 0)                                                                               \
            memcpy((p), (src), n_);                                                                \
        (p) += n_;                                                                                 \
    } while (0)
#define TG_PUTS(p, end, lit) TG_PUT(p, end, lit, sizeof(lit) - 1)

#endif
