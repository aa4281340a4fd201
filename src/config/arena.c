#include "config/arena.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"

#define ARENA_ALIGN     16
#define ARENA_FIRST     4096
#define ARENA_MAX_CHUNK (64 * 1024)

struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    _Alignas(ARENA_ALIGN) unsigned char data[];
};

struct tg_conf_arena {
    struct arena_chunk *head; /* the chunk being filled; older and oversized ones follow */
    size_t next_cap;
};

static struct arena_chunk *arena_chunk_new(size_t cap)
{
    struct arena_chunk *c = tg_malloc(sizeof(*c) + cap);

    c->next = NULL;
    c->used = 0;
    c->cap = cap;
    return c;
}

struct tg_conf_arena *tg_conf_arena_new(void)
{
    struct tg_conf_arena *a = tg_malloc(sizeof(*a));

    a->head = NULL;
    a->next_cap = ARENA_FIRST;
    return a;
}

void tg_conf_arena_free(struct tg_conf_arena *a)
{
    struct arena_chunk *c, *next;

    if (a == NULL)
        return;
    for (c = a->head; c != NULL; c = next) {
        next = c->next;
        free(c);
    }
    free(a);
}

void *tg_conf_arena_alloc(struct tg_conf_arena *a, size_t size)
{
    struct arena_chunk *c = a->head;
    size_t need;
    void *p;

    if (size > SIZE_MAX - ARENA_ALIGN)
        tg_fatal("arena allocation of %zu bytes is too large", size);
    need = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (need == 0)
        need = ARENA_ALIGN;
    if (c == NULL || c->cap - c->used < need) {
        /* Big blocks get a chunk of their own behind the current one, so the free space left
         * in the current chunk is not wasted. */
        if (need > a->next_cap / 4) {
            c = arena_chunk_new(need);
            if (a->head != NULL) {
                c->next = a->head->next;
                a->head->next = c;
            } else {
                a->head = c;
            }
        } else {
            c = arena_chunk_new(a->next_cap);
            c->next = a->head;
            a->head = c;
            if (a->next_cap < ARENA_MAX_CHUNK)
                a->next_cap *= 2;
        }
    }
    p = c->data + c->used;
    c->used += need;
    memset(p, 0, size);
    return p;
}

void *tg_conf_arena_array(struct tg_conf_arena *a, size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size)
        tg_fatal("arena array of %zu x %zu bytes overflows", n, size);
    return tg_conf_arena_alloc(a, n * size);
}

char *tg_conf_arena_strndup(struct tg_conf_arena *a, const char *s, size_t len)
{
    char *p = tg_conf_arena_alloc(a, len + 1);

    if (len > 0)
        memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *tg_conf_arena_strdup(struct tg_conf_arena *a, const char *s)
{
    return tg_conf_arena_strndup(a, s, strlen(s));
}

char *tg_conf_arena_printf(struct tg_conf_arena *a, const char *fmt, ...)
{
    va_list ap;
    int n;
    char *p;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        tg_fatal("arena printf: bad format");
    p = tg_conf_arena_alloc(a, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}
