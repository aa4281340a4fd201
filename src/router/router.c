/*
 * Route selection. tg_router_new() compiles every route's patterns, gives each route a
 * specificity score and sorts the routes by it (stable: equal scores keep the order of the
 * configuration), so matching is "the first route in this order that matches".
 *
 * Specificity, compared key by key, higher first:
 *   1. host class: exact host (or IPv6 literal) > host with captures > "*." wildcard > any host;
 *   2. literal bytes of the host pattern (so "*.eu.example.com" beats "*.example.com" and
 *      "api-{env}.example.com" beats "{sub}.example.com");
 *   3. path class: exact path (no captures) > whole-path pattern with "{name}" captures >
 *      prefix ("/api/") or rest capture ("/api/{rest*}"), which mean the same thing > any path;
 *   4. literal bytes of the path pattern (longer prefix beats shorter, "/u/{id}/edit" beats
 *      "/u/{id}/{op}");
 *   5. methods: a method list beats any method, and a shorter list beats a longer one.
 * The host decides first because a route names a site before it names a resource on it.
 *
 * Because exact-host routes outrank every other route, they are also indexed by host in a
 * small open-addressing table: a request whose host has exact routes tries only those first,
 * then the routes without an exact host, in order. Nothing on this path allocates.
 */
#include "router/router.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "router/router_internal.h"

struct rt_route {
    uint32_t methods;
    bool has_host;
    bool has_path;
    uint64_t score;
    size_t order; /* index in the configuration: ties go to the route listed first */
    const struct tg_route_conf *conf;
    struct tg__rt_pattern host;
    struct tg__rt_pattern path;
    char *host_text; /* owned copies the compiled patterns point into */
    char *path_text;
};

/*
 * What matching reads first for every route, packed 24 bytes apiece beside the large compiled
 * routes, so that rejecting a route by method or by the start of its path costs no walk
 * through the compiled patterns (and, with many routes, no cache miss per route).
 */
struct rt_hot {
    uint64_t lead8;    /* the first bytes (up to 8) of the path pattern's leading literal */
    uint64_t mask8;    /* which bytes of lead8 count */
    uint32_t methods;  /* 0: any */
    uint32_t lead_len; /* the request path is at least this long */
};

struct rt_host_slot {
    const char *host; /* NULL: empty slot */
    size_t len;
    uint32_t first; /* into exact_idx[] */
    uint32_t count;
};

struct tg_router {
    struct rt_route *routes; /* sorted by specificity */
    struct rt_hot *hot;      /* hot[i] describes routes[i] */
    size_t num_routes;
    size_t first_other; /* routes[0, first_other) have an exact host and live in the index */
    struct rt_host_slot *slots;
    size_t slot_mask;
    uint32_t *exact_idx;
};

enum { RT_HOST_ANY, RT_HOST_WILDCARD, RT_HOST_CAPTURE, RT_HOST_EXACT };
enum { RT_PATH_ANY, RT_PATH_PREFIX, RT_PATH_CAPTURE, RT_PATH_EXACT };

static inline unsigned char rt_lower(unsigned char c)
{
    return (unsigned char)((unsigned)c - 'A' < 26u ? c | 0x20 : c);
}

/* Hosts compare case-insensitively; the pattern side is already lower case. */
static bool rt_eq(const char *s, const char *lit, size_t len, bool icase)
{
    if (!icase)
        return memcmp(s, lit, len) == 0;
    for (size_t i = 0; i < len; i++) {
        if (rt_lower((unsigned char)s[i]) != (unsigned char)lit[i])
            return false;
    }
    return true;
}

static uint64_t rt_host_hash(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a: hosts are short and come from config */

    for (size_t i = 0; i < len; i++) {
        h ^= rt_lower((unsigned char)s[i]);
        h *= 0x100000001b3ull;
    }
    return h;
}

static void rt_cap_add(struct tg_route_captures *caps, struct tg_str name, const char *v,
                       size_t len)
{
    /* Host and path may each define the maximum; what does not fit is matched, not kept. */
    if (caps->num < TG_ROUTER_MAX_CAPTURES) {
        caps->names[caps->num] = name;
        caps->values[caps->num] = tg_str_make(v, len);
        caps->num++;
    }
}

static bool rt_parts_match(const struct tg__rt_pattern *pt, const char *s, size_t n, char sep,
                           struct tg_route_captures *caps)
{
    bool icase = sep == '.';
    size_t pos = 0;

    for (size_t k = 0; k < pt->num_parts; k++) {
        const struct tg__rt_part *pa = &pt->parts[k];
        const char *end;
        size_t seg;

        switch (pa->kind) {
        case TG__RT_LIT:
            if (n - pos >= pa->len && rt_eq(s + pos, pa->lit, pa->len, icase))
                pos += pa->len;
            else if (pa->opt_sep && n - pos == pa->len - 1 &&
                     rt_eq(s + pos, pa->lit, n - pos, icase))
                pos = n;
            else
                return false;
            break;
        case TG__RT_CAP:
            if (pos == n)
                return false;
            end = memchr(s + pos, sep, n - pos);
            seg = end != NULL ? (size_t)(end - (s + pos)) : n - pos;
            if (seg <= pa->seg_suffix)
                return false;
            seg -= pa->seg_suffix;
            rt_cap_add(caps, pt->names[pa->cap], s + pos, seg);
            pos += seg;
            break;
        default: /* TG__RT_SPLAT, always last */
            rt_cap_add(caps, pt->names[pa->cap], s + pos, n - pos);
            pos = n;
            break;
        }
    }
    return pt->prefix || pos == n;
}

static bool rt_host_match(const struct tg__rt_pattern *pt, const char *s, size_t n,
                          struct tg_route_captures *caps)
{
    size_t k, dots = 0;

    if (pt->wildcard) {
        /* The pattern after "*." spans wild_dots + 1 labels at the end of the host. */
        for (k = n; k > 0; k--) {
            if (s[k - 1] == '.' && dots++ == pt->wild_dots)
                break;
        }
        if (k < 2)
            return false; /* no label left for the '*' */
        /* The labels the '*' covers must all be non-empty. */
        for (size_t i = 0; i < k; i++) {
            if (s[i] == '.' && (i == 0 || s[i - 1] == '.'))
                return false;
        }
        s += k;
        n -= k;
    }
    return rt_parts_match(pt, s, n, '.', caps);
}

struct tg_str tg_router_host(struct tg_str h)
{
    const char *c;

    if (h.len > 0 && h.base[0] == '[') {
        c = memchr(h.base, ']', h.len);
        if (c != NULL)
            h.len = (size_t)(c - h.base) + 1;
    } else if (h.len > 0) {
        c = memchr(h.base, ':', h.len);
        if (c != NULL)
            h.len = (size_t)(c - h.base);
    }
    if (h.len > 0 && h.base[h.len - 1] == '.')
        h.len--;
    return h;
}

/*
 * The pre-filter: method, then the start of the path, the cheapest tests that reject most
 * routes, before the host (wildcard and capture hosts cost a scan). It only rejects, so the
 * full match still records host captures first. p8 holds the first 8 bytes of the path.
 */
static inline bool rt_hot_pass(const struct rt_hot *h, uint32_t mbit, uint64_t p8, size_t path_len)
{
    return (h->methods == 0 || (h->methods & mbit) != 0) && path_len >= h->lead_len &&
           (p8 & h->mask8) == h->lead8;
}

static bool rt_route_try(const struct rt_route *rt, struct tg_str host, const char *path,
                         size_t path_len, bool host_done, struct tg_route_captures *caps)
{
    caps->num = 0;
    if (!host_done && rt->has_host && !rt_host_match(&rt->host, host.base, host.len, caps))
        return false;
    if (rt->has_path && !rt_parts_match(&rt->path, path, path_len, '/', caps))
        return false;
    return true;
}

const struct tg_route_conf *tg_router_match(const struct tg_router *r, struct tg_str host,
                                            struct tg_str path, int method,
                                            struct tg_route_captures *caps)
{
    struct tg_route_captures scratch;
    uint32_t mbit = method >= 0 && method < 32 ? 1u << method : 0;
    const char *q = path.len > 0 ? memchr(path.base, '?', path.len) : NULL;
    size_t path_len = q != NULL ? (size_t)(q - path.base) : path.len;
    uint64_t p8 = 0;
    size_t i;

    if (path_len > 0)
        memcpy(&p8, path.base, TG_MIN(path_len, sizeof(p8)));
    if (caps == NULL)
        caps = &scratch;
    host = tg_router_host(host);
    if (r->slots != NULL && host.len > 0) {
        size_t s = (size_t)rt_host_hash(host.base, host.len) & r->slot_mask;

        for (; r->slots[s].host != NULL; s = (s + 1) & r->slot_mask) {
            const struct rt_host_slot *sl = &r->slots[s];

            if (sl->len != host.len || !rt_eq(host.base, sl->host, host.len, true))
                continue;
            for (uint32_t j = 0; j < sl->count; j++) {
                uint32_t k = r->exact_idx[sl->first + j];

                if (rt_hot_pass(&r->hot[k], mbit, p8, path_len) &&
                    rt_route_try(&r->routes[k], host, path.base, path_len, true, caps))
                    return r->routes[k].conf;
            }
            break;
        }
    }
    for (i = r->first_other; i < r->num_routes; i++) {
        if (rt_hot_pass(&r->hot[i], mbit, p8, path_len) &&
            rt_route_try(&r->routes[i], host, path.base, path_len, false, caps))
            return r->routes[i].conf;
    }
    caps->num = 0;
    return NULL;
}

static uint64_t rt_score(const struct rt_route *rt)
{
    uint64_t hc = RT_HOST_ANY, hl = 0, pc = RT_PATH_ANY, pl = 0, m = 0;

    if (rt->has_host) {
        hc = rt->host.wildcard       ? RT_HOST_WILDCARD
             : rt->host.num_caps > 0 ? RT_HOST_CAPTURE
                                     : RT_HOST_EXACT;
        hl = TG_MIN(rt->host.literal_bytes, 0xfffffu);
    }
    if (rt->has_path) {
        pc = rt->path.prefix || rt->path.splat ? RT_PATH_PREFIX
             : rt->path.num_caps > 0           ? RT_PATH_CAPTURE
                                               : RT_PATH_EXACT;
        pl = rt->path.literal_bytes;
    }
    if (rt->methods != 0)
        m = 33 - (uint64_t)__builtin_popcount(rt->methods);
    /* hc:2 | hl:20 | pc:2 | pl:32 | m:6, most significant first */
    return hc << 62 | hl << 42 | pc << 40 | pl << 8 | m;
}

static int rt_cmp(const void *a, const void *b)
{
    const struct rt_route *x = a, *y = b;

    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

static int rt_route_compile(struct rt_route *rt, const struct tg_route_conf *rc, size_t order)
{
    char err[128];
    size_t off;

    rt->conf = rc;
    rt->order = order;
    rt->methods = rc->methods;
    if (rc->host != NULL) {
        rt->host_text = tg_strdup(rc->host);
        tg__rt_host_normalise(rt->host_text);
        if (tg__rt_compile(rt->host_text, 1, &rt->host, err, sizeof(err), &off) < 0)
            return -1;
        rt->has_host = true;
    }
    if (rc->path != NULL) {
        rt->path_text = tg_strdup(rc->path);
        if (tg__rt_compile(rt->path_text, 0, &rt->path, err, sizeof(err), &off) < 0)
            return -1;
        rt->has_path = true;
    }
    rt->score = rt_score(rt);
    return 0;
}

static struct rt_host_slot *rt_slot_find(struct tg_router *r, const char *host, size_t len)
{
    size_t s = (size_t)rt_host_hash(host, len) & r->slot_mask;

    while (r->slots[s].host != NULL &&
           !(r->slots[s].len == len && memcmp(r->slots[s].host, host, len) == 0))
        s = (s + 1) & r->slot_mask;
    return &r->slots[s];
}

static void rt_hot_init(struct rt_hot *h, const struct rt_route *rt)
{
    const struct tg__rt_part *lead = &rt->path.parts[0];
    size_t n;

    h->methods = rt->methods;
    if (!rt->has_path || lead->kind != TG__RT_LIT)
        return;
    /* Without its optional final slash: "/api/" must let "/api" through. */
    h->lead_len = lead->len - lead->opt_sep;
    n = TG_MIN(h->lead_len, sizeof(h->lead8));
    memcpy(&h->lead8, lead->lit, n);
    memset(&h->mask8, 0xff, n);
}

/* Groups the exact-host routes, already in match order, by host. */
static void rt_index_build(struct tg_router *r)
{
    size_t nslots = 8, i, pos = 0;

    while (nslots < 2 * r->first_other)
        nslots *= 2;
    r->slots = tg_calloc(nslots, sizeof(*r->slots));
    r->slot_mask = nslots - 1;
    r->exact_idx = tg_calloc(r->first_other, sizeof(*r->exact_idx));
    for (i = 0; i < r->first_other; i++) {
        const struct tg__rt_pattern *h = &r->routes[i].host;
        struct rt_host_slot *sl = rt_slot_find(r, h->text, h->text_len);

        sl->host = h->text;
        sl->len = h->text_len;
        sl->count++;
    }
    for (i = 0; i <= r->slot_mask; i++) {
        r->slots[i].first = (uint32_t)pos;
        pos += r->slots[i].count;
        r->slots[i].count = 0;
    }
    for (i = 0; i < r->first_other; i++) {
        const struct tg__rt_pattern *h = &r->routes[i].host;
        struct rt_host_slot *sl = rt_slot_find(r, h->text, h->text_len);

        r->exact_idx[sl->first + sl->count++] = (uint32_t)i;
    }
}

struct tg_router *tg_router_new(const struct tg_config *cf)
{
    struct tg_router *r = tg_calloc(1, sizeof(*r));
    size_t i, n = cf != NULL ? cf->num_routes : 0;

    r->routes = tg_calloc(n, sizeof(*r->routes));
    r->num_routes = n;
    for (i = 0; i < n; i++) {
        if (rt_route_compile(&r->routes[i], &cf->routes[i], i) < 0)
            goto fail;
    }
    /*
     * Sorting moves the routes, but the compiled patterns point into the owned text copies,
     * not into the route structs, so they stay valid.
     */
    qsort(r->routes, n, sizeof(*r->routes), rt_cmp);
    r->hot = tg_calloc(n, sizeof(*r->hot));
    for (i = 0; i < n; i++)
        rt_hot_init(&r->hot[i], &r->routes[i]);
    while (r->first_other < n && r->routes[r->first_other].score >> 62 == RT_HOST_EXACT)
        r->first_other++;
    if (r->first_other > 0)
        rt_index_build(r);
    return r;

fail:
    tg_router_free(r);
    return NULL;
}

void tg_router_free(struct tg_router *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->num_routes; i++) {
        free(r->routes[i].host_text);
        free(r->routes[i].path_text);
    }
    free(r->routes);
    free(r->hot);
    free(r->slots);
    free(r->exact_idx);
    free(r);
}
