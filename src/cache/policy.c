/*
 * The HTTP caching rules (issue 7): see policy.h for what each decision is and where RFC 9111
 * left a choice. Everything here reads header values in place and writes only into buffers the
 * caller gives.
 */
#include "cache/policy.h"

#include <time.h>

#include "config/config.h"
#include "jsonrpc/jsonrpc.h"

#define TG__MS_PER_S 1000

static bool tg__ows(char c)
{
    return c == ' ' || c == '\t';
}

/* tchar of RFC 9110 §5.6.2. */
static bool tg__tchar(unsigned char c)
{
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
        return true;
    if (c >= '0' && c <= '9')
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static char tg__lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

static bool tg__is_get_or_head(int method)
{
    return method == TG_METHOD_GET || method == TG_METHOD_HEAD;
}

/* 1*DIGIT as delta-seconds, clamped to TG_CC_DELTA_MAX; -1 when s is anything else. */
static int64_t tg__delta_seconds(struct tg_str s)
{
    int64_t v = 0;

    if (s.len == 0)
        return -1;
    for (size_t i = 0; i < s.len; i++) {
        if (s.base[i] < '0' || s.base[i] > '9')
            return -1;
        if (v < TG_CC_DELTA_MAX)
            v = v * 10 + (s.base[i] - '0');
    }
    return v < TG_CC_DELTA_MAX ? v : TG_CC_DELTA_MAX;
}

/* Index just past the next comma of p[i..n) that is outside a quoted string (n if none). */
static size_t tg__skip_member(const char *p, size_t n, size_t i)
{
    bool quoted = false;

    for (; i < n; i++) {
        if (quoted && p[i] == '\\')
            i++;
        else if (p[i] == '"')
            quoted = !quoted;
        else if (!quoted && p[i] == ',')
            return i + 1;
    }
    return n;
}

/* -- Cache-Control --------------------------------------------------------------------------- */

void tg_cache_control_init(struct tg_cache_control *cc)
{
    cc->flags = 0;
    cc->max_age = cc->s_maxage = TG_CC_ABSENT;
    cc->stale_while_revalidate = cc->stale_if_error = TG_CC_ABSENT;
}

/* A delta-seconds directive seen once more: a second, different value makes it invalid. */
static void tg__cc_delta(int64_t *slot, struct tg_str arg, bool has_arg, bool clean)
{
    int64_t v = has_arg && clean ? tg__delta_seconds(arg) : -1;

    if (v < 0)
        *slot = TG_CC_INVALID;
    else if (*slot == TG_CC_ABSENT)
        *slot = v;
    else if (*slot != v)
        *slot = TG_CC_INVALID;
}

/* Records directive name=arg. clean is false when the member had bytes after its argument. */
static void tg__cc_apply(struct tg_cache_control *cc, struct tg_str name, struct tg_str arg,
                         bool has_arg, bool clean)
{
    static const struct {
        const char *name;
        uint32_t flag;
    } flags[] = {
        {"no-store", TG_CC_NO_STORE},
        {"no-cache", TG_CC_NO_CACHE},
        {"private", TG_CC_PRIVATE},
        {"public", TG_CC_PUBLIC},
        {"must-revalidate", TG_CC_MUST_REVALIDATE},
        {"proxy-revalidate", TG_CC_PROXY_REVALIDATE},
        {"must-understand", TG_CC_MUST_UNDERSTAND},
    };

    /* A restrictive directive counts even when its member is malformed. */
    for (size_t i = 0; i < TG_ARRAY_SIZE(flags); i++)
        if (tg_str_ieq(name, tg_str_cstr(flags[i].name))) {
            cc->flags |= flags[i].flag;
            return;
        }
    if (TG_STR_IEQ(name, "max-age"))
        tg__cc_delta(&cc->max_age, arg, has_arg, clean);
    else if (TG_STR_IEQ(name, "s-maxage"))
        tg__cc_delta(&cc->s_maxage, arg, has_arg, clean);
    else if (TG_STR_IEQ(name, "stale-while-revalidate"))
        tg__cc_delta(&cc->stale_while_revalidate, arg, has_arg, clean);
    else if (TG_STR_IEQ(name, "stale-if-error"))
        tg__cc_delta(&cc->stale_if_error, arg, has_arg, clean);
}

/* Reads "=" argument at p[*i..n): a token or the inside of a quoted string (escapes left in).
 * Returns false when there is none or the quoted string is not closed. */
static bool tg__cc_arg(const char *p, size_t n, size_t *i, struct tg_str *arg)
{
    size_t j = *i;

    if (j < n && p[j] == '"') {
        size_t start = ++j;

        for (; j < n && p[j] != '"'; j++)
            if (p[j] == '\\')
                j++;
        if (j >= n) {
            *i = n;
            return false;
        }
        *arg = tg_str_make(p + start, j - start);
        *i = j + 1;
        return true;
    }
    while (j < n && tg__tchar((unsigned char)p[j]))
        j++;
    *arg = tg_str_make(p + *i, j - *i);
    *i = j;
    return arg->len > 0;
}

void tg_cache_control_parse(struct tg_cache_control *cc, const char *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        struct tg_str name, arg = {0};
        bool has_arg = false, clean = true;
        size_t start;

        while (i < n && (tg__ows(p[i]) || p[i] == ','))
            i++;
        start = i;
        while (i < n && tg__tchar((unsigned char)p[i]))
            i++;
        name = tg_str_make(p + start, i - start);
        if (name.len == 0) {
            i = tg__skip_member(p, n, i);
            continue;
        }
        while (i < n && tg__ows(p[i]))
            i++;
        if (i < n && p[i] == '=') {
            i++;
            while (i < n && tg__ows(p[i]))
                i++;
            has_arg = true;
            clean = tg__cc_arg(p, n, &i, &arg);
            while (i < n && tg__ows(p[i]))
                i++;
        }
        if (i < n && p[i] != ',')
            clean = false;
        tg__cc_apply(cc, name, arg, has_arg, clean);
        i = tg__skip_member(p, n, i);
    }
}

/* -- requests -------------------------------------------------------------------------------- */

enum tg_cache_req tg_cache_request(const struct tg_h1_request *req,
                                   const struct tg_cache_route_conf *rc, const char **why)
{
    struct tg_cache_control cc, pragma;
    bool has_cc = false, auth = false, cookie = false;
    enum tg_cache_req r = TG_CACHE_BYPASS;
    const char *reason = NULL;

    tg_cache_control_init(&cc);
    tg_cache_control_init(&pragma);
    if (!tg__is_get_or_head(req->method_id)) {
        reason = "method";
        goto out;
    }
    if (req->upgrade) {
        reason = "upgrade";
        goto out;
    }
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct tg_http_header *h = &req->headers[i];

        if (TG_STR_IEQ(h->name, "cache-control")) {
            tg_cache_control_parse(&cc, h->value.base, h->value.len);
            has_cc = true;
        } else if (TG_STR_IEQ(h->name, "pragma")) {
            /* Pragma's grammar is Cache-Control's: no-cache and extension tokens. */
            tg_cache_control_parse(&pragma, h->value.base, h->value.len);
        } else if (TG_STR_IEQ(h->name, "authorization")) {
            auth = true;
        } else if (TG_STR_IEQ(h->name, "cookie")) {
            cookie = true;
        }
    }
    if (cc.flags & TG_CC_NO_STORE)
        reason = "no-store";
    else if (auth && !rc->with_credentials)
        reason = "authorization";
    else if (cookie && !rc->with_credentials)
        reason = "cookie";
    if (reason != NULL)
        goto out;
    r = TG_CACHE_REFRESH;
    if (cc.flags & TG_CC_NO_CACHE)
        reason = "no-cache";
    else if (cc.max_age == 0)
        reason = "max-age=0";
    else if (!has_cc && (pragma.flags & TG_CC_NO_CACHE))
        reason = "pragma";
    else
        r = TG_CACHE_LOOKUP;
out:
    if (why != NULL)
        *why = reason;
    return r;
}

/* -- keys ------------------------------------------------------------------------------------ */

struct tg__param {
    const char *base;
    size_t len, name_len;
};

static bool tg__param_wanted(const struct tg__param *q, const struct tg_cache_route_conf *rc)
{
    bool listed = false;

    for (size_t i = 0; i < rc->query_params.num && !listed; i++)
        listed = tg_rpc_method_match(rc->query_params.items[i], q->base, q->name_len);
    return rc->query == TG_CACHE_QUERY_KEEP ? listed : !listed;
}

static bool tg__param_less(const struct tg__param *a, const struct tg__param *b)
{
    size_t n = TG_MIN(a->name_len, b->name_len);
    int c = n ? memcmp(a->base, b->base, n) : 0;

    return c < 0 || (c == 0 && a->name_len < b->name_len);
}

/* Collects the wanted parameters of query q[0..n) into ps sorted by name (stably: an insertion
 * sort over at most TG_CACHE_KEY_MAX_PARAMS). Returns how many, or -1 when there are too many. */
static ssize_t tg__params_collect(const char *q, size_t n, const struct tg_cache_route_conf *rc,
                                  struct tg__param *ps)
{
    size_t num = 0, i = 0;

    while (i < n) {
        const char *amp = memchr(q + i, '&', n - i);
        size_t end = amp ? (size_t)(amp - q) : n;
        const char *eq = memchr(q + i, '=', end - i);
        struct tg__param p = {q + i, end - i, eq ? (size_t)(eq - (q + i)) : end - i};
        size_t j;

        i = end + 1;
        if (p.len == 0 || !tg__param_wanted(&p, rc))
            continue;
        if (num == TG_CACHE_KEY_MAX_PARAMS)
            return -1;
        for (j = num; j > 0 && tg__param_less(&p, &ps[j - 1]); j--)
            ps[j] = ps[j - 1];
        ps[j] = p;
        num++;
    }
    return (ssize_t)num;
}

ssize_t tg_cache_key(char *out, size_t cap, int method, struct tg_str host, struct tg_str path,
                     const struct tg_cache_route_conf *rc)
{
    struct tg__param ps[TG_CACHE_KEY_MAX_PARAMS];
    const char *qm = path.len ? memchr(path.base, '?', path.len) : NULL;
    size_t plen = qm ? (size_t)(qm - path.base) : path.len;
    char *o = out, *end = out + cap;
    const char *name;
    ssize_t num;

    if (method == TG_METHOD_HEAD)
        method = TG_METHOD_GET;
    name = method > 0 && method < TG_METHOD__COUNT ? tg_http_method_names[method] : "OTHER";
    TG_PUT(o, end, name, strlen(name));
    TG_PUTS(o, end, " ");
    TG_PUT(o, end, host.base, host.len);
    for (size_t i = 0; i < host.len; i++)
        o[-1 - (ssize_t)i] = tg__lower(o[-1 - (ssize_t)i]);
    TG_PUTS(o, end, " ");
    TG_PUT(o, end, path.base, plen);
    if (qm == NULL || rc->query == TG_CACHE_QUERY_NONE)
        return o - out;
    if (rc->query == TG_CACHE_QUERY_ALL) {
        TG_PUT(o, end, qm, path.len - plen);
        return o - out;
    }
    num = tg__params_collect(qm + 1, path.len - plen - 1, rc, ps);
    if (num < 0)
        return -1;
    for (ssize_t i = 0; i < num; i++) {
        TG_PUT(o, end, i == 0 ? "?" : "&", 1);
        TG_PUT(o, end, ps[i].base, ps[i].len);
    }
    return o - out;
overflow:
    return -1;
}

/* The next member of a Vary value from *i: 1 with *name set, 0 at the end, -1 when the member
 * is "*" or not a field name. Empty list members are skipped (RFC 9110 §5.6.1). */
static int tg__vary_next(struct tg_str vary, size_t *i, struct tg_str *name)
{
    const char *p = vary.base;
    size_t n = vary.len, j = *i, start;

    while (j < n && (tg__ows(p[j]) || p[j] == ','))
        j++;
    if (j == n)
        return 0;
    start = j;
    while (j < n && tg__tchar((unsigned char)p[j]))
        j++;
    *name = tg_str_make(p + start, j - start);
    while (j < n && tg__ows(p[j]))
        j++;
    *i = j;
    if (name->len == 0 || (j < n && p[j] != ',') || TG_STR_IEQ(*name, "*"))
        return -1;
    return 1;
}

/* Case-insensitive order of header names. */
static int tg__name_cmp(struct tg_str a, struct tg_str b)
{
    size_t n = TG_MIN(a.len, b.len);
    int c = n ? strncasecmp(a.base, b.base, n) : 0;

    if (c != 0)
        return c;
    return a.len < b.len ? -1 : a.len > b.len;
}

/* Checks a Vary value: the number of names in it, or -1 when it is "*", malformed, or names too
 * many headers. */
static int tg__vary_count(struct tg_str vary)
{
    struct tg_str name;
    size_t i = 0;
    int r, count = 0;

    while ((r = tg__vary_next(vary, &i, &name)) > 0)
        if (++count > TG_CACHE_VARY_MAX)
            return -1;
    return r < 0 ? -1 : count;
}

/* Writes "\nname[:value]" for the request header called name (its field lines joined). */
static char *tg__vary_put(char *o, char *end, struct tg_str name, const struct tg_h1_request *req)
{
    bool seen = false;

    TG_PUTS(o, end, "\n");
    TG_PUT(o, end, name.base, name.len);
    for (size_t i = 0; i < name.len; i++)
        o[-1 - (ssize_t)i] = tg__lower(o[-1 - (ssize_t)i]);
    for (size_t i = 0; i < req->num_headers; i++) {
        struct tg_str v = req->headers[i].value;

        if (!tg_str_ieq(req->headers[i].name, name))
            continue;
        while (v.len && tg__ows(v.base[0]))
            v.base++, v.len--;
        while (v.len && tg__ows(v.base[v.len - 1]))
            v.len--;
        TG_PUT(o, end, seen ? ", " : ":", seen ? 2 : 1);
        TG_PUT(o, end, v.base, v.len);
        seen = true;
    }
    return o;
overflow:
    return NULL;
}

ssize_t tg_cache_vary_key(char *out, size_t cap, struct tg_str primary, struct tg_str vary,
                          const struct tg_h1_request *req)
{
    struct tg_str last = {0}, name;
    char *o = out, *end = out + cap;
    int count = tg__vary_count(vary);

    if (count < 0)
        return -1;
    TG_PUT(o, end, primary.base, primary.len);
    /* Each pass writes the smallest name above the last one written: sorted, no duplicates,
     * at most TG_CACHE_VARY_MAX passes over a short value. */
    for (int pass = 0; pass < count; pass++) {
        struct tg_str next = {0};
        size_t i = 0;

        while (tg__vary_next(vary, &i, &name) > 0)
            if ((pass == 0 || tg__name_cmp(name, last) > 0) &&
                (next.base == NULL || tg__name_cmp(name, next) < 0))
                next = name;
        if (next.base == NULL)
            break;
        o = tg__vary_put(o, end, next, req);
        if (o == NULL)
            return -1;
        last = next;
    }
    return o - out;
overflow:
    return -1;
}

/* -- responses ------------------------------------------------------------------------------- */

/* The header fields of a response that caching looks at. */
struct tg__res_fields {
    struct tg_cache_control cc;
    struct tg_str expires, date, age, vary, etag, last_modified;
    unsigned num_expires, num_vary;
    bool set_cookie;
};

static void tg__res_scan(const struct tg_h1_response *res, struct tg__res_fields *f)
{
    memset(f, 0, sizeof(*f));
    tg_cache_control_init(&f->cc);
    for (size_t i = 0; i < res->num_headers; i++) {
        const struct tg_http_header *h = &res->headers[i];
        struct tg_str n = h->name;

        if (TG_STR_IEQ(n, "cache-control")) {
            tg_cache_control_parse(&f->cc, h->value.base, h->value.len);
        } else if (TG_STR_IEQ(n, "expires")) {
            f->num_expires++;
            f->expires = h->value;
        } else if (TG_STR_IEQ(n, "vary")) {
            /* An empty Vary line adds nothing to the list. */
            if (h->value.len != 0) {
                f->num_vary++;
                f->vary = h->value;
            }
        } else if (TG_STR_IEQ(n, "set-cookie")) {
            f->set_cookie = true;
        } else if (TG_STR_IEQ(n, "date") && f->date.base == NULL) {
            f->date = h->value;
        } else if (TG_STR_IEQ(n, "age") && f->age.base == NULL) {
            f->age = h->value;
        } else if (TG_STR_IEQ(n, "etag") && f->etag.base == NULL) {
            f->etag = h->value;
        } else if (TG_STR_IEQ(n, "last-modified") && f->last_modified.base == NULL) {
            f->last_modified = h->value;
        }
    }
}

/* Statuses RFC 9110 §15.1 lets a cache reuse with a heuristic lifetime. */
static bool tg__heuristic_status(int s)
{
    switch (s) {
    case 200:
    case 203:
    case 204:
    case 300:
    case 301:
    case 308:
    case 404:
    case 405:
    case 410:
    case 414:
    case 501:
        return true;
    default:
        return false;
    }
}

/* Statuses defined by RFC 9110 whose caching rules we implement (for must-understand). */
static bool tg__understood_status(int s)
{
    return (s >= 200 && s <= 205) || (s >= 300 && s <= 308 && s != 304 && s != 306) ||
           (s >= 400 && s <= 417) || s == 421 || s == 422 || s == 426 || (s >= 500 && s <= 505);
}

/* The Age header: its first list member as delta-seconds, 0 when absent or invalid (RFC 9111
 * §5.1: ignore an invalid Age). */
static int64_t tg__age_value(struct tg_str age)
{
    const char *comma = age.len ? memchr(age.base, ',', age.len) : NULL;
    int64_t v;

    if (comma != NULL)
        age.len = (size_t)(comma - age.base);
    while (age.len && tg__ows(age.base[age.len - 1]))
        age.len--;
    v = tg__delta_seconds(age);
    return v < 0 ? 0 : v;
}

/* The freshness lifetime in ms (<= 0: none left), or INT64_MIN when the response gives none
 * and may not be given a heuristic one. */
static int64_t tg__lifetime_ms(const struct tg__res_fields *f, int status, int64_t now_ms,
                               const struct tg_cache_route_conf *rc)
{
    const int64_t max_ms = TG_CC_DELTA_MAX * TG__MS_PER_S;
    int64_t exp_s, date_s;

    if (f->cc.s_maxage != TG_CC_ABSENT)
        return f->cc.s_maxage < 0 ? 0 : f->cc.s_maxage * TG__MS_PER_S;
    if (f->cc.max_age != TG_CC_ABSENT)
        return f->cc.max_age < 0 ? 0 : f->cc.max_age * TG__MS_PER_S;
    if (f->num_expires > 0) {
        if (f->num_expires > 1 || tg_http_date_parse(f->expires.base, f->expires.len, &exp_s) < 0)
            return 0;
        if (f->date.base != NULL && tg_http_date_parse(f->date.base, f->date.len, &date_s) == 0)
            return TG_MIN((exp_s - date_s) * TG__MS_PER_S, max_ms);
        return TG_MIN(exp_s * TG__MS_PER_S - now_ms, max_ms);
    }
    if (!tg__heuristic_status(status) && !(f->cc.flags & TG_CC_PUBLIC))
        return INT64_MIN;
    return rc->ttl > 0 ? (int64_t)TG_MIN(rc->ttl, (uint64_t)max_ms) : INT64_MIN;
}

/* The reason res may not be stored whatever its lifetime, or NULL. */
static const char *tg__res_refusal(const struct tg_h1_response *res, const struct tg__res_fields *f)
{
    uint32_t fl = f->cc.flags;

    if (res->status < 200 || res->status == 206 || res->status == 304)
        return "status";
    if (fl & TG_CC_MUST_UNDERSTAND) {
        if (!tg__understood_status(res->status))
            return "must-understand";
        fl &= ~(uint32_t)TG_CC_NO_STORE;
    }
    if (fl & TG_CC_NO_STORE)
        return "no-store";
    if (fl & TG_CC_PRIVATE)
        return "private";
    if (fl & TG_CC_NO_CACHE)
        return "no-cache";
    if (f->set_cookie)
        return "set-cookie";
    if (f->num_vary > 1 || (f->num_vary == 1 && tg__vary_count(f->vary) < 0))
        return "vary";
    return NULL;
}

/* A stale window in ms: the response's directive (invalid: none), else the route's. */
static int64_t tg__stale_ms(int64_t directive, tg_msec_t route, bool route_allowed)
{
    if (directive != TG_CC_ABSENT)
        return directive < 0 ? 0 : directive * TG__MS_PER_S;
    if (!route_allowed)
        return 0;
    return (int64_t)TG_MIN(route, (uint64_t)TG_CC_DELTA_MAX * TG__MS_PER_S);
}

int tg_cache_response(const struct tg_h1_response *res, int64_t now_ms,
                      const struct tg_cache_route_conf *rc, struct tg_cache_fresh *out)
{
    struct tg__res_fields f;
    const char *why;
    int64_t life_ms, age_s;
    bool no_stale, route_stale;

    memset(out, 0, sizeof(*out));
    tg__res_scan(res, &f);
    why = tg__res_refusal(res, &f);
    if (why != NULL)
        goto declined;
    life_ms = tg__lifetime_ms(&f, res->status, now_ms, rc);
    age_s = tg__age_value(f.age);
    if (life_ms == INT64_MIN) {
        why = "no freshness";
        goto declined;
    }
    if (life_ms <= 0) {
        why = "expired";
        goto declined;
    }
    if (age_s * TG__MS_PER_S >= life_ms) {
        why = "stale";
        goto declined;
    }
    no_stale = f.cc.flags & (TG_CC_MUST_REVALIDATE | TG_CC_PROXY_REVALIDATE);
    route_stale = f.cc.s_maxage == TG_CC_ABSENT;
    out->fresh_until = now_ms + life_ms - age_s * TG__MS_PER_S;
    out->swr_until = out->sie_until = out->fresh_until;
    if (!no_stale) {
        out->swr_until +=
            tg__stale_ms(f.cc.stale_while_revalidate, rc->stale_while_revalidate, route_stale);
        out->sie_until += tg__stale_ms(f.cc.stale_if_error, rc->stale_if_error, route_stale);
    }
    out->age_s = age_s;
    out->vary = f.vary;
    out->etag = f.etag;
    out->last_modified = f.last_modified;
    return TG_OK;
declined:
    out->why = why;
    return TG_DECLINED;
}

/* -- stored entries -------------------------------------------------------------------------- */

enum tg_cache_state tg_cache_entry_state(const struct tg_cache_entry *e, int64_t now_ms)
{
    if (now_ms < e->fresh_ms)
        return TG_CACHE_FRESH;
    if (now_ms < e->swr_ms)
        return TG_CACHE_STALE;
    if (now_ms < e->sie_ms)
        return TG_CACHE_ON_ERROR;
    return TG_CACHE_EXPIRED;
}

int64_t tg_cache_age(const struct tg_cache_entry *e, int64_t now_ms)
{
    int64_t resident = now_ms > e->stored_ms ? (now_ms - e->stored_ms) / TG__MS_PER_S : 0;
    int64_t age = e->age_s > 0 ? e->age_s : 0;

    if (age >= TG_CC_DELTA_MAX || resident >= TG_CC_DELTA_MAX - age)
        return TG_CC_DELTA_MAX;
    return age + resident;
}

/* Whether one If-None-Match field value lists "*" or a tag weakly equal to opaque (the stored
 * ETag without W/). Malformed members match nothing. */
static bool tg__inm_matches(struct tg_str v, struct tg_str opaque)
{
    const char *p = v.base;
    size_t n = v.len, i = 0;

    while (i < n) {
        while (i < n && (tg__ows(p[i]) || p[i] == ','))
            i++;
        if (i == n)
            break;
        if (p[i] == '*') {
            size_t j = i + 1;

            while (j < n && tg__ows(p[j]))
                j++;
            if (j == n || p[j] == ',')
                return true;
        }
        if (n - i > 2 && p[i] == 'W' && p[i + 1] == '/')
            i += 2;
        if (p[i] == '"') {
            const char *close = memchr(p + i + 1, '"', n - i - 1);

            if (close == NULL)
                return false;
            if (opaque.len != 0 &&
                tg_str_eq(tg_str_make(p + i, (size_t)(close - p) + 1 - i), opaque))
                return true;
            i = (size_t)(close - p) + 1;
        }
        i = tg__skip_member(p, n, i);
    }
    return false;
}

bool tg_cache_not_modified(const struct tg_h1_request *req, struct tg_str etag,
                           struct tg_str last_modified)
{
    struct tg_str ims = {0};
    unsigned num_inm = 0, num_ims = 0;
    bool match = false;
    int64_t since, modified;

    if (!tg__is_get_or_head(req->method_id))
        return false;
    if (etag.len > 2 && etag.base[0] == 'W' && etag.base[1] == '/')
        etag = tg_str_make(etag.base + 2, etag.len - 2);
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct tg_http_header *h = &req->headers[i];

        if (TG_STR_IEQ(h->name, "if-none-match")) {
            num_inm++;
            match = match || tg__inm_matches(h->value, etag);
        } else if (TG_STR_IEQ(h->name, "if-modified-since")) {
            num_ims++;
            ims = h->value;
        }
    }
    if (num_inm > 0)
        return match;
    /* RFC 9110 §13.1.3: an If-Modified-Since with several members or an invalid date is
     * ignored, and so is one that cannot be compared with anything. */
    if (num_ims != 1 || last_modified.len == 0)
        return false;
    if (tg_http_date_parse(ims.base, ims.len, &since) < 0 ||
        tg_http_date_parse(last_modified.base, last_modified.len, &modified) < 0)
        return false;
    return modified <= since;
}

/* -- HTTP dates ------------------------------------------------------------------------------ */

static const char tg__wdays[7][10] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                      "Thursday", "Friday", "Saturday"};
static const char tg__months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
/* Days before each month in a common year. */
static const uint16_t tg__mdays_before[13] = {0,   31,  59,  90,  120, 151, 181,
                                              212, 243, 273, 304, 334, 365};

#define TG__MAX_DATE_S 253402300799LL /* 9999-12-31 23:59:59 */

static int64_t tg__floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

static bool tg__leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 1970-01-01 to January 1st of year y (proleptic Gregorian). */
static int64_t tg__days_before_year(int64_t y)
{
    int64_t leaps = tg__floor_div(y - 1, 4) - tg__floor_div(y - 1, 100) +
                    tg__floor_div(y - 1, 400) - (492 - 19 + 4); /* leap years before 1970 */

    return 365 * (y - 1970) + leaps;
}

static int tg__days_in_month(int64_t y, int m)
{
    return tg__mdays_before[m + 1] - tg__mdays_before[m] + (m == 1 && tg__leap(y));
}

/* A cursor over a date being parsed; a failed step moves it to NULL. */
struct tg__rd {
    const char *p, *end;
};

static void tg__rd_lit(struct tg__rd *r, const char *lit, size_t n)
{
    if (r->p != NULL && r->end - r->p >= (ptrdiff_t)n && strncasecmp(r->p, lit, n) == 0)
        r->p += n;
    else
        r->p = NULL;
}

static int tg__rd_num(struct tg__rd *r, size_t digits)
{
    int v = 0;

    if (r->p == NULL || r->end - r->p < (ptrdiff_t)digits)
        goto fail;
    for (size_t i = 0; i < digits; i++) {
        if (r->p[i] < '0' || r->p[i] > '9')
            goto fail;
        v = v * 10 + (r->p[i] - '0');
    }
    r->p += digits;
    return v;
fail:
    r->p = NULL;
    return 0;
}

static int tg__rd_month(struct tg__rd *r)
{
    for (int m = 0; m < 12 && r->p != NULL && r->end - r->p >= 3; m++)
        if (strncasecmp(r->p, tg__months[m], 3) == 0) {
            r->p += 3;
            return m;
        }
    r->p = NULL;
    return 0;
}

/* "HH:MM:SS" as seconds of the day (a leap second 60 runs into the next minute). */
static int64_t tg__rd_time(struct tg__rd *r)
{
    int h = tg__rd_num(r, 2), m, s;

    tg__rd_lit(r, ":", 1);
    m = tg__rd_num(r, 2);
    tg__rd_lit(r, ":", 1);
    s = tg__rd_num(r, 2);
    if (h > 23 || m > 59 || s > 60)
        r->p = NULL;
    return h * 3600 + m * 60 + s;
}

/* The year of a two-digit one (RFC 9110 §5.6.7): the century that puts it at most 50 years
 * ahead of now. */
static int64_t tg__full_year(int yy)
{
    int64_t days = tg__floor_div((int64_t)time(NULL), 86400);
    int64_t now_y = 1970 + tg__floor_div(days * 400, 146097), y;

    y = now_y - now_y % 100 + yy;
    return y > now_y + 50 ? y - 100 : y;
}

int tg_http_date_parse(const char *p, size_t n, int64_t *unix_s)
{
    struct tg__rd r;
    int wday = -1, mon, day;
    int64_t year, secs;

    while (n > 0 && tg__ows(p[n - 1]))
        n--;
    if (n < 4)
        return -1;
    r = (struct tg__rd){p, p + n};
    for (int i = 0; i < 7 && wday < 0; i++)
        if (strncasecmp(p, tg__wdays[i], 3) == 0)
            wday = i;
    if (wday < 0)
        return -1;
    if (p[3] == ',') { /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
        r.p += 4;
        tg__rd_lit(&r, " ", 1);
        day = tg__rd_num(&r, 2);
        tg__rd_lit(&r, " ", 1);
        mon = tg__rd_month(&r);
        tg__rd_lit(&r, " ", 1);
        year = tg__rd_num(&r, 4);
        tg__rd_lit(&r, " ", 1);
        secs = tg__rd_time(&r);
        tg__rd_lit(&r, " GMT", 4);
    } else if (p[3] == ' ') { /* asctime-date: "Sun Nov  6 08:49:37 1994" */
        r.p += 4;
        mon = tg__rd_month(&r);
        tg__rd_lit(&r, " ", 1);
        if (r.p != NULL && r.p < r.end && *r.p == ' ')
            r.p++, day = tg__rd_num(&r, 1);
        else
            day = tg__rd_num(&r, 2);
        tg__rd_lit(&r, " ", 1);
        secs = tg__rd_time(&r);
        tg__rd_lit(&r, " ", 1);
        year = tg__rd_num(&r, 4);
    } else { /* rfc850-date: "Sunday, 06-Nov-94 08:49:37 GMT" */
        tg__rd_lit(&r, tg__wdays[wday], strlen(tg__wdays[wday]));
        tg__rd_lit(&r, ", ", 2);
        day = tg__rd_num(&r, 2);
        tg__rd_lit(&r, "-", 1);
        mon = tg__rd_month(&r);
        tg__rd_lit(&r, "-", 1);
        year = tg__rd_num(&r, 2);
        tg__rd_lit(&r, " ", 1);
        secs = tg__rd_time(&r);
        tg__rd_lit(&r, " GMT", 4);
        if (r.p != NULL)
            year = tg__full_year((int)year);
    }
    if (r.p == NULL || r.p != r.end || day < 1 || day > tg__days_in_month(year, mon))
        return -1;
    *unix_s = (tg__days_before_year(year) + tg__mdays_before[mon] + (mon > 1 && tg__leap(year)) +
               day - 1) *
                  86400 +
              secs;
    return 0;
}

size_t tg_http_date_format(int64_t unix_s, char out[TG_HTTP_DATE_LEN + 1])
{
    int64_t s = unix_s < 0 ? 0 : unix_s > TG__MAX_DATE_S ? TG__MAX_DATE_S : unix_s;
    int64_t days = s / 86400, secs = s % 86400, y = 1970 + days / 365, yday;
    int m = 0, d;
    char *o = out;

    /* days / 365 overshoots by the leap days: step back to the year that holds the day. */
    while (tg__days_before_year(y) > days)
        y--;
    yday = days - tg__days_before_year(y);
    while (m < 11 && yday >= tg__mdays_before[m + 1] + (m + 1 > 1 && tg__leap(y)))
        m++;
    d = (int)(yday - tg__mdays_before[m] - (m > 1 && tg__leap(y))) + 1;
    memcpy(o, tg__wdays[(days + 4) % 7], 3); /* 1970-01-01 was a Thursday */
    memcpy(o + 3, ", ", 2);
    memcpy(o + 5, tg_digits2 + 2 * d, 2);
    o[7] = ' ';
    memcpy(o + 8, tg__months[m], 3);
    o[11] = ' ';
    memcpy(o + 12, tg_digits2 + 2 * (y / 100), 2);
    memcpy(o + 14, tg_digits2 + 2 * (y % 100), 2);
    o[16] = ' ';
    memcpy(o + 17, tg_digits2 + 2 * (secs / 3600), 2);
    o[19] = ':';
    memcpy(o + 20, tg_digits2 + 2 * (secs / 60 % 60), 2);
    o[22] = ':';
    memcpy(o + 23, tg_digits2 + 2 * (secs % 60), 2);
    memcpy(o + 25, " GMT", 5);
    return TG_HTTP_DATE_LEN;
}
