/*
 * POST /cache/purge on the admin listener (issue 7): removes entries by exact key, by host, or
 * by prefix of "host/path". The body is a JSON object with one of "key", "host" or "prefix":
 *
 *     {"key": "GET site.example /index.html"}   the entry, and its Vary variants
 *     {"host": "site.example"}                  every entry of the host
 *     {"prefix": "site.example/assets/"}        every entry whose host and path start so
 *
 * Keys are "METHOD host path[?query]" (policy.h); a variant of a response that varies adds a
 * line feed and the varying headers after the key.
 */
#include <string.h>

#define JSMN_STATIC
#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#include <jsmn.h>

#include "cache/cache.h"
#include "core/sbuf.h"

struct tg__purge {
    const char *what; /* "key", "host" or "prefix" */
    const char *arg;
    size_t len;
};

/* The key's host and path ("host path..."), after the method. */
static const char *tg__after_method(const char *key, size_t len, size_t *rest)
{
    const char *sp = memchr(key, ' ', len);

    if (sp == NULL)
        return NULL;
    *rest = len - (size_t)(sp + 1 - key);
    return sp + 1;
}

static bool tg__match(const char *key, size_t len, void *arg)
{
    const struct tg__purge *p = arg;
    size_t rest;
    const char *hp = tg__after_method(key, len, &rest);
    const char *sp;

    if (strcmp(p->what, "key") == 0)
        return (len == p->len || (len > p->len && key[p->len] == '\n')) &&
               memcmp(key, p->arg, p->len) == 0;
    if (hp == NULL)
        return false;
    sp = memchr(hp, ' ', rest);
    if (sp == NULL)
        return false;
    if (strcmp(p->what, "host") == 0)
        return (size_t)(sp - hp) == p->len && memcmp(hp, p->arg, p->len) == 0;
    /* prefix: of "host" + path, the space between them read as nothing */
    {
        size_t host_len = (size_t)(sp - hp);

        if (p->len <= host_len)
            return memcmp(hp, p->arg, p->len) == 0;
        return memcmp(hp, p->arg, host_len) == 0 && rest - host_len - 1 >= p->len - host_len &&
               memcmp(sp + 1, p->arg + host_len, p->len - host_len) == 0;
    }
}

int tg_cache_purge_request(struct tg_cache_store *s, const char *body, size_t len,
                           struct tg_sbuf *out)
{
    static const char *const whats[] = {"key", "host", "prefix"};
    jsmn_parser parser;
    jsmntok_t tok[8];
    struct tg__purge p = {0};
    int n;

    jsmn_init(&parser);
    n = jsmn_parse(&parser, body, len, tok, 8);
    if (n == 3 && tok[0].type == JSMN_OBJECT && tok[1].type == JSMN_STRING &&
        tok[2].type == JSMN_STRING && tok[2].end > tok[2].start &&
        memchr(body + tok[2].start, '\\', (size_t)(tok[2].end - tok[2].start)) == NULL) {
        for (size_t i = 0; i < 3; i++)
            if ((size_t)(tok[1].end - tok[1].start) == strlen(whats[i]) &&
                memcmp(body + tok[1].start, whats[i], strlen(whats[i])) == 0)
                p.what = whats[i];
        p.arg = body + tok[2].start;
        p.len = (size_t)(tok[2].end - tok[2].start);
    }
    if (p.what == NULL || s == NULL) {
        tg_sbuf_printf(out, "{\"error\":{\"status\":400,\"code\":\"bad_request\",\"message\":"
                            "\"send one of {\\\"key\\\": ...}, {\\\"host\\\": ...} or "
                            "{\\\"prefix\\\": ...} (strings without escapes)\"}}\n");
        return 400;
    }
    tg_sbuf_printf(out, "{\"purged\":%zu}\n", tg_cache_purge(s, tg__match, &p));
    return 200;
}
