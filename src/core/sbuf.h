/*
 * A growable text buffer for replies built off the hot path: admin pages, metrics, reload
 * reports. Allocation failure is fatal, like every tg_malloc.
 */
#ifndef TG_SBUF_H
#define TG_SBUF_H

#include <stddef.h>

struct tg_sbuf {
    char *base;
    size_t len, cap;
};

void tg_sbuf_printf(struct tg_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tg_sbuf_add(struct tg_sbuf *b, const char *s, size_t len);
/* Appends s as a quoted JSON string. */
void tg_sbuf_json(struct tg_sbuf *b, const char *s, size_t len);
void tg_sbuf_dispose(struct tg_sbuf *b);
/* Makes room for n more bytes (and a terminating NUL) after b->len. */
void tg_sbuf_reserve(struct tg_sbuf *b, size_t n);

#endif
