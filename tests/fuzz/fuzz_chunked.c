/*
 * Fuzzes the chunked decoder: scan and decode must agree on where the body ends (or that it is
 * invalid), whatever way the input is split into reads, and decode must produce the same data
 * whole or in pieces.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/h1.h"

#define MAX_LINE     4096
#define MAX_TRAILERS 8192

static void check(int cond)
{
    if (!cond)
        abort();
}

/* Feeds data in pieces of `step` bytes (0: whole); returns the end found or the error. */
static ssize_t run(const uint8_t *data, size_t size, size_t step, int decode, char *out,
                   size_t *out_len)
{
    struct tg_h1_chunked d;
    size_t pos = 0;

    tg_h1_chunked_init(&d, MAX_LINE, MAX_TRAILERS);
    *out_len = 0;
    do {
        size_t n = step == 0 || size - pos < step ? size - pos : step, dl = 0;
        char *piece = malloc(n ? n : 1); /* exact size: ASan sees any overread */
        ssize_t r;

        memcpy(piece, data + pos, n);
        if (decode) {
            r = tg_h1_chunked_decode(&d, piece, n, &dl);
            check(dl <= n);
            memcpy(out + *out_len, piece, dl);
            *out_len += dl;
        } else {
            r = tg_h1_chunked_scan(&d, piece, n);
        }
        free(piece);
        if (r != TG_H1_INCOMPLETE) {
            check(r == TG_H1_INVALID || (size_t)r <= n);
            return r == TG_H1_INVALID ? r : (ssize_t)(pos + (size_t)r);
        }
        pos += n;
    } while (pos < size);
    return TG_H1_INCOMPLETE;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *whole = malloc(size + 1), *pieces = malloc(size + 1);
    size_t wl, pl, step = size > 0 ? (size_t)data[0] % 7 + 1 : 1;
    ssize_t scan = run(data, size, 0, 0, whole, &wl);
    ssize_t dec = run(data, size, 0, 1, whole, &wl);

    check(scan == dec);
    check(run(data, size, step, 0, pieces, &pl) == scan);
    check(run(data, size, step, 1, pieces, &pl) == scan);
    check(pl == wl && memcmp(pieces, whole, wl) == 0);
    if (size <= 4096) {
        check(run(data, size, 1, 1, pieces, &pl) == scan);
        check(pl == wl && memcmp(pieces, whole, wl) == 0);
    }
    free(whole);
    free(pieces);
    return 0;
}
