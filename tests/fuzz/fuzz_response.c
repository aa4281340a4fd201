/*
 * Fuzzes the response-head parser, for GET and HEAD requests alike: the head must parse to the
 * same length either way, failures are always 502, strings point into the head, and a head
 * split into two reads parses like the whole.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/h1.h"

#define MAX_HEADERS 32

static const struct tg_h1_limits lim = {512, 2048, MAX_HEADERS};

static void check(int cond)
{
    if (!cond)
        abort();
}

static int inside(struct tg_str s, const char *buf, ssize_t n)
{
    return s.len == 0 || (s.base >= buf && s.base + s.len <= buf + n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct tg_http_header h1[MAX_HEADERS], h2[MAX_HEADERS];
    struct tg_h1_response res = {.headers = h1}, head = {.headers = h2};
    const char *buf = (const char *)data;
    ssize_t r = tg_h1_parse_response(buf, size, &res, &lim, false);
    ssize_t rh = tg_h1_parse_response(buf, size, &head, &lim, true);
    size_t split;
    char *b;

    check(r == rh);
    if (r == TG_H1_INCOMPLETE) {
        check(size < lim.max_request_line + lim.max_header_bytes);
        return 0;
    }
    if (r == TG_H1_INVALID) {
        check(res.error_status == 502 && res.error != NULL);
        return 0;
    }
    check(r > 0 && (size_t)r <= size);
    check(res.status >= 100 && res.status <= 599 && res.minor_version <= 1);
    check(head.body_kind == TG_BODY_NONE);
    check(res.body_kind != TG_BODY_CLOSE || !res.keep_alive);
    check(inside(res.reason, buf, r) && res.num_headers <= MAX_HEADERS);
    for (size_t i = 0; i < res.num_headers; i++)
        check(inside(res.headers[i].name, buf, r) && inside(res.headers[i].value, buf, r));

    split = (size_t)data[size - 1] * (size_t)(r - 1) / 255;
    b = malloc(split ? split : 1); /* exact size: ASan sees any overread */
    memcpy(b, buf, split);
    check(tg_h1_parse_response(b, split, &head, &lim, false) == TG_H1_INCOMPLETE);
    free(b);
    return 0;
}
