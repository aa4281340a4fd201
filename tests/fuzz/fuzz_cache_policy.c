/*
 * Fuzzes the caching rules (src/cache/policy.c). The input is up to six lines used as header
 * values: Cache-Control, Expires, Vary, an entity tag list (If-None-Match and ETag), a date (Date,
 * Age, If-Modified-Since, Last-Modified) and a path with a query (for keys). Every value sits in
 * a buffer of its exact size, so ASan sees any overread. Checks: the parsers stay in their
 * ranges, a stored response has ordered times, a storable Vary always gives a Vary key, a parsed
 * date formats and parses back to itself, and a key is either written whole or refused.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/policy.h"
#include "config/config.h"

#define FIELDS 6
#define NOW_MS 1700000000000LL

static void check(int cond)
{
    if (!cond)
        abort();
}

static void check_delta(int64_t v)
{
    check(v == TG_CC_ABSENT || v == TG_CC_INVALID || (v >= 0 && v <= TG_CC_DELTA_MAX));
}

static void check_control(struct tg_str v)
{
    struct tg_cache_control cc;

    tg_cache_control_init(&cc);
    tg_cache_control_parse(&cc, v.base, v.len);
    check_delta(cc.max_age);
    check_delta(cc.s_maxage);
    check_delta(cc.stale_while_revalidate);
    check_delta(cc.stale_if_error);
}

static void check_date(struct tg_str v)
{
    char out[TG_HTTP_DATE_LEN + 1];
    int64_t t, back;

    if (tg_http_date_parse(v.base, v.len, &t) < 0)
        return;
    check(tg_http_date_format(t, out) == TG_HTTP_DATE_LEN && out[TG_HTTP_DATE_LEN] == '\0');
    check(tg_http_date_parse(out, TG_HTTP_DATE_LEN, &back) == 0);
    if (t >= 0 && t <= 253402300799LL)
        check(back == t);
}

/* A key whole, refused when one byte short, and never past cap. */
static void check_key(struct tg_str path, enum tg_cache_query mode)
{
    static const char *patterns[] = {"a*", "*b", "utm_*", "*"};
    struct tg_cache_route_conf rc = {0};
    size_t cap = path.len + 64;
    char *out = malloc(cap), *again;
    ssize_t n;

    rc.query = mode;
    rc.query_params = (struct tg_str_list){patterns, mode == TG_CACHE_QUERY_KEEP ? 2 : 3};
    n = tg_cache_key(out, cap, TG_METHOD_HEAD, TG_STR_LIT("Example.COM"), path, &rc);
    check(n >= -1 && n <= (ssize_t)cap);
    if (n > 0) {
        again = malloc((size_t)n);
        check(tg_cache_key(again, (size_t)n, TG_METHOD_GET, TG_STR_LIT("example.com"), path, &rc) ==
              n);
        check(memcmp(out, again, (size_t)n) == 0);
        check(tg_cache_key(again, (size_t)n - 1, TG_METHOD_GET, TG_STR_LIT("example.com"), path,
                           &rc) == -1);
        free(again);
    }
    free(out);
}

static void check_response(struct tg_str *f, struct tg_h1_request *req, size_t size)
{
    struct tg_http_header hs[7] = {
        {.name = TG_STR_LIT("Cache-Control"), .value = f[0]},
        {.name = TG_STR_LIT("Expires"), .value = f[1]},
        {.name = TG_STR_LIT("Vary"), .value = f[2]},
        {.name = TG_STR_LIT("ETag"), .value = f[3]},
        {.name = TG_STR_LIT("Date"), .value = f[4]},
        {.name = TG_STR_LIT("Age"), .value = f[4]},
        {.name = TG_STR_LIT("Last-Modified"), .value = f[4]},
    };
    struct tg_h1_response res = {.status = 200, .headers = hs, .num_headers = 7};
    struct tg_cache_route_conf rc = {.ttl = 1000, .stale_while_revalidate = 2000};
    struct tg_cache_fresh fr;
    size_t cap = 17 * size + 64; /* room for every value TG_CACHE_VARY_MAX names can pull in */
    char *vk = malloc(cap);
    ssize_t n;

    if (tg_cache_response(&res, NOW_MS, &rc, &fr) != TG_OK) {
        check(fr.why != NULL);
        n = tg_cache_vary_key(vk, cap, TG_STR_LIT("GET h /"), f[2], req);
        check(n >= -1 && n <= (ssize_t)cap);
    } else {
        check(fr.why == NULL && fr.fresh_until > NOW_MS && fr.age_s >= 0);
        check(fr.swr_until >= fr.fresh_until && fr.sie_until >= fr.fresh_until);
        check(fr.vary.len == 0 || fr.vary.base == f[2].base);
        n = tg_cache_vary_key(vk, cap, TG_STR_LIT("GET h /"), fr.vary, req);
        check(n >= 7);
    }
    free(vk);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tg_str f[FIELDS] = {{0}};
    char *bufs[FIELDS] = {0};
    size_t pos = 0;

    for (int i = 0; i < FIELDS && pos <= size; i++) {
        const uint8_t *nl = memchr(data + pos, '\n', size - pos);
        size_t len = nl ? (size_t)(nl - data) - pos : size - pos;

        bufs[i] = malloc(len ? len : 1);
        memcpy(bufs[i], data + pos, len);
        f[i] = tg_str_make(bufs[i], len);
        pos += len + 1;
    }
    {
        struct tg_http_header hs[6] = {
            {.name = TG_STR_LIT("Cache-Control"), .value = f[0]},
            {.name = TG_STR_LIT("Pragma"), .value = f[1]},
            {.name = TG_STR_LIT("If-None-Match"), .value = f[3]},
            {.name = TG_STR_LIT("If-Modified-Since"), .value = f[4]},
            {.name = TG_STR_LIT("Accept"), .value = f[5]},
            {.name = TG_STR_LIT("accept"), .value = f[1]},
        };
        struct tg_h1_request req = {.method_id = TG_METHOD_GET, .headers = hs, .num_headers = 6};
        struct tg_cache_route_conf rc = {0};
        const char *why;
        enum tg_cache_req kind = tg_cache_request(&req, &rc, &why);

        check(kind == TG_CACHE_LOOKUP ? why == NULL : why != NULL);
        for (int i = 0; i < FIELDS; i++) {
            check_control(f[i]);
            check_date(f[i]);
        }
        check_response(f, &req, size);
        (void)tg_cache_not_modified(&req, f[3], f[4]);
        for (int m = TG_CACHE_QUERY_ALL; m <= TG_CACHE_QUERY_DROP; m++)
            check_key(f[5], (enum tg_cache_query)m);
    }
    for (int i = 0; i < FIELDS; i++)
        free(bufs[i]);
    return 0;
}
