/*
 * Fuzzes the request-head parser. Checks, beyond "no crash": results stay in their documented
 * ranges, every string points into the head, a limit always ends an incomplete head, and a
 * head split into two reads parses exactly like the whole (callers re-parse after each read).
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

static ssize_t parse_copy(const char *data, size_t n, struct tg_h1_request *req)
{
    char *b = malloc(n ? n : 1); /* exact size: ASan sees any overread */
    ssize_t r;

    memcpy(b, data, n);
    r = tg_h1_parse_request(b, n, req, &lim);
    free(b);
    return r;
}

static void check_accepted(const char *buf, size_t size, ssize_t r, const struct tg_h1_request *req)
{
    check(r > 0 && (size_t)r <= size);
    check(req->num_headers <= MAX_HEADERS);
    check(req->body_kind != TG_BODY_CLOSE);
    check(req->minor_version <= 1);
    check(req->method.len > 0 && req->target.len > 0 && req->path.len > 0);
    check(inside(req->method, buf, r) && inside(req->target, buf, r));
    check(inside(req->host, buf, r) && inside(req->path, buf, r));
    for (size_t i = 0; i < req->num_headers; i++) {
        check(req->headers[i].name.len > 0);
        check(inside(req->headers[i].name, buf, r) && inside(req->headers[i].value, buf, r));
    }
    if (req->path.base[0] == '/') {
        char *out = malloc(req->path.len);
        ssize_t n = tg_http_path_normalize(req->path.base, req->path.len, out);

        check(n == -1 || (n > 0 && (size_t)n <= req->path.len && out[0] == '/'));
        free(out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct tg_http_header h1[MAX_HEADERS], h2[MAX_HEADERS];
    struct tg_h1_request req = {.headers = h1}, again = {.headers = h2};
    const char *buf = (const char *)data;
    ssize_t r = tg_h1_parse_request(buf, size, &req, &lim);
    size_t splits[3];

    if (r == TG_H1_INCOMPLETE) {
        check(size < lim.max_request_line + lim.max_header_bytes);
        return 0;
    }
    if (r == TG_H1_INVALID) {
        check(req.error != NULL);
        check(req.status == 400 || req.status == 414 || req.status == 417 || req.status == 431 ||
              req.status == 501 || req.status == 505);
    } else {
        check_accepted(buf, size, r, &req);
    }

    /* Split points: just before the end, the middle, and one the input chooses. */
    splits[0] = r > 0 ? (size_t)r - 1 : (size > 0 ? size - 1 : 0);
    splits[1] = splits[0] / 2;
    splits[2] = size > 0 ? (size_t)data[0] * splits[0] / 255 : 0;
    for (size_t i = 0; i < 3; i++) {
        ssize_t p = parse_copy(buf, splits[i], &again);

        /* a prefix of an accepted head is incomplete; of an invalid one never accepted */
        check(r > 0 ? p == TG_H1_INCOMPLETE : p < 0);
    }
    check(tg_h1_parse_request(buf, size, &again, &lim) == r);
    if (r > 0) {
        check(again.method.base == req.method.base && again.path.base == req.path.base);
        check(again.host.base == req.host.base && again.host.len == req.host.len);
        check(again.num_headers == req.num_headers && again.body_kind == req.body_kind);
        check(again.content_length == req.content_length);
        check(again.keep_alive == req.keep_alive);
    } else {
        check(again.status == req.status);
    }
    return 0;
}
