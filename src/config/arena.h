/*
 * A bump allocator owning every string and array of one configuration snapshot (and, separately,
 * the YAML node tree of one load). A snapshot is built once and freed as a whole, so individual
 * frees are never needed and the allocator can be as simple as a list of chunks.
 */
#ifndef TG_CONFIG_ARENA_H
#define TG_CONFIG_ARENA_H

#include <stddef.h>

struct tg_conf_arena;

/* Returns a new empty arena; aborts through tg_fatal() when out of memory. */
struct tg_conf_arena *tg_conf_arena_new(void);

/* Frees the arena and everything allocated from it. NULL is accepted. */
void tg_conf_arena_free(struct tg_conf_arena *a);

/* Returns size zeroed bytes aligned for any type; never NULL. */
void *tg_conf_arena_alloc(struct tg_conf_arena *a, size_t size);

/* Allocates n zeroed elements of size bytes; aborts when n * size overflows. */
void *tg_conf_arena_array(struct tg_conf_arena *a, size_t n, size_t size);

/* Copies s (len bytes, then a NUL) into the arena. */
char *tg_conf_arena_strndup(struct tg_conf_arena *a, const char *s, size_t len);
char *tg_conf_arena_strdup(struct tg_conf_arena *a, const char *s);

/* printf into the arena. */
char *tg_conf_arena_printf(struct tg_conf_arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
