/*
 * I/O buffers. Data lives in base[start..end). Buffers of the standard size come from a
 * per-thread free list so steady-state traffic never calls malloc; a buffer grown past the
 * standard size (a large request head) is returned to the system when released.
 */
#ifndef TG_BUF_H
#define TG_BUF_H

#include <stddef.h>

#define TG_BUF_SIZE (16 * 1024)

struct tg_buf {
    struct tg_buf *next_free;
    size_t start, end, cap;
    char base[];
};

struct tg_buf_pool {
    struct tg_buf *free;
    size_t num_free;
    size_t max_free; /* buffers kept beyond this are returned to the system */
    size_t in_use;
};

struct tg_buf *tg_buf_get(struct tg_buf_pool *pool);
void tg_buf_put(struct tg_buf_pool *pool, struct tg_buf *b);

/* Makes the buffer at least cap bytes, keeping its data; returns the (possibly moved) buffer. */
struct tg_buf *tg_buf_grow(struct tg_buf *b, size_t cap);

/* Moves the data to the start of the buffer so the free space is contiguous. */
void tg_buf_compact(struct tg_buf *b);

static inline size_t tg_buf_len(const struct tg_buf *b)
{
    return b->end - b->start;
}

static inline size_t tg_buf_room(const struct tg_buf *b)
{
    return b->cap - b->end;
}

void tg_buf_pool_dispose(struct tg_buf_pool *pool);

#endif
