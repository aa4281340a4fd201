#include "core/buf.h"

#include <string.h>

#include "core/core.h"

struct tg_buf *tg_buf_get(struct tg_buf_pool *pool)
{
    struct tg_buf *b = pool->free;

    if (b != NULL) {
        pool->free = b->next_free;
        pool->num_free--;
    } else {
        b = tg_malloc(sizeof(*b) + TG_BUF_SIZE);
        b->cap = TG_BUF_SIZE;
    }
    b->next_free = NULL;
    b->start = b->end = 0;
    pool->in_use++;
    return b;
}

void tg_buf_put(struct tg_buf_pool *pool, struct tg_buf *b)
{
    if (b == NULL)
        return;
    pool->in_use--;
    if (b->cap != TG_BUF_SIZE || pool->num_free >= pool->max_free) {
        free(b);
        return;
    }
    b->next_free = pool->free;
    pool->free = b;
    pool->num_free++;
}

struct tg_buf *tg_buf_grow(struct tg_buf *b, size_t cap)
{
    if (b->cap >= cap)
        return b;
    b = tg_realloc(b, sizeof(*b) + cap);
    b->cap = cap;
    return b;
}

void tg_buf_compact(struct tg_buf *b)
{
    if (b->start == 0)
        return;
    memmove(b->base, b->base + b->start, b->end - b->start);
    b->end -= b->start;
    b->start = 0;
}

void tg_buf_pool_dispose(struct tg_buf_pool *pool)
{
    struct tg_buf *b, *next;

    for (b = pool->free; b != NULL; b = next) {
        next = b->next_free;
        free(b);
    }
    pool->free = NULL;
    pool->num_free = 0;
}
