/*
 * The identity phases of a request (DESIGN §2: route -> authenticate -> admit): who is calling
 * (an API key from the path, a header, Authorization: Bearer or the query; or a JWT), whether
 * the caller may use the route, and whether its limits admit the request. The credential is taken
 * out of what goes upstream: a path segment is cut from the normalised path, a query parameter
 * removed, a header left out when the request is composed (t->cred_header).
 *
 * Keys are looked up by their SHA-256 digest in the table the key refresher publishes; nothing
 * here waits on a database or on Redis.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "auth/jwt.h"
#include "auth/keys.h"
#include "auth/keystore.h"
#include "core/core.h"
#include "core/sha256.h"
#include "proxy/proxy.h"
#include "ratelimit/ratelimit.h"

#define TG_MAX_KEY_LEN 512

/* Who the request is charged to. */
struct tg_caller {
    const char *name; /* consumer name; NULL for anonymous */
    size_t name_len;
    uint32_t plan; /* TG_NO_PLAN = none */
};

static const struct tg_http_header *tg__header(const struct tg_txn *t, const char *lname,
                                               size_t *index)
{
    size_t n = strlen(lname);

    for (size_t i = 0; i < t->req.num_headers; i++) {
        const struct tg_http_header *h = &t->req.headers[i];

        if (h->name.len == n && strncasecmp(h->name.base, lname, n) == 0) {
            *index = i;
            return h;
        }
    }
    return NULL;
}

/* The credential of "Authorization: Bearer CREDENTIAL"; false when there is none. */
static bool tg__bearer(const struct tg_txn *t, struct tg_str *cred, size_t *index)
{
    const struct tg_http_header *h = tg__header(t, "authorization", index);

    if (h == NULL || h->value.len <= 7 || strncasecmp(h->value.base, "Bearer ", 7) != 0)
        return false;
    *cred = tg_str_make(h->value.base + 7, h->value.len - 7);
    while (cred->len > 0 && cred->base[0] == ' ')
        *cred = tg_str_make(cred->base + 1, cred->len - 1);
    return cred->len > 0;
}

/* Cuts [from, from+n) out of the normalised path, and a '/' that would be left doubled. */
static void tg__path_cut(struct tg_txn *t, char *from, size_t n)
{
    char *path = t->scratch, *end = path + t->path_len;

    if (from > path && from[-1] == '/' && from + n < end && from[n] == '/')
        n++; /* "/v1/KEY/x" -> "/v1/x" */
    memmove(from, from + n, (size_t)(end - from - (ptrdiff_t)n));
    t->path_len = (uint16_t)(t->path_len - n);
}

/* Finds NAME=VALUE in the query of the normalised path; cuts it out when take is set. */
static bool tg__query_param(struct tg_txn *t, const char *name, struct tg_str *value)
{
    char *path = t->scratch, *end = path + t->path_len;
    char *q = memchr(path, '?', t->path_len);
    size_t n = strlen(name);

    for (char *p = q; p != NULL && p < end;) {
        char *amp = memchr(p + 1, '&', (size_t)(end - p - 1));
        char *stop = amp ? amp : end;

        if ((size_t)(stop - p - 1) > n && strncmp(p + 1, name, n) == 0 && p[1 + n] == '=') {
            *value = tg_str_make(p + 2 + n, (size_t)(stop - p - 2 - (ptrdiff_t)n));
            return true;
        }
        p = amp;
    }
    return false;
}

static void tg__query_cut(struct tg_txn *t, struct tg_str value, size_t name_len)
{
    char *param = (char *)value.base - name_len - 1; /* NAME=VALUE */
    char *sep = param - 1;                           /* '?' or '&' */
    char *end = t->scratch + t->path_len;
    char *stop = (char *)value.base + value.len;

    if (stop < end) {
        /* "?a=KEY&b" -> "?b", "&a=KEY&b" -> "&b" */
        tg__path_cut(t, param, (size_t)(stop + 1 - param));
    } else {
        /* the last one: "?a=KEY" -> "", "&a=KEY" -> "" */
        tg__path_cut(t, sep, (size_t)(stop - sep));
    }
}

/* The API key of the request from the route's sources, in order. */
static bool tg__find_key(struct tg_txn *t, const struct tg_route_captures *caps,
                         const struct tg_auth_conf *a, struct tg_str *key, int *where)
{
    for (size_t i = 0; i < a->num_from; i++) {
        const struct tg_key_source *s = &a->from[i];
        const struct tg_http_header *h;
        size_t idx;

        switch (s->kind) {
        case TG_KEY_PATH:
            for (size_t c = 0; caps != NULL && c < caps->num; c++) {
                if (caps->names[c].len == strlen(s->name) &&
                    memcmp(caps->names[c].base, s->name, caps->names[c].len) == 0 &&
                    caps->values[c].len > 0) {
                    *key = caps->values[c];
                    *where = (int)i;
                    return true;
                }
            }
            break;
        case TG_KEY_HEADER:
            h = tg__header(t, s->name, &idx);
            if (h != NULL && h->value.len > 0) {
                *key = h->value;
                t->cred_header = (uint16_t)(idx + 1);
                *where = (int)i;
                return true;
            }
            break;
        case TG_KEY_BEARER:
            if (tg__bearer(t, key, &idx)) {
                t->cred_header = (uint16_t)(idx + 1);
                *where = (int)i;
                return true;
            }
            break;
        case TG_KEY_QUERY:
            if (tg__query_param(t, s->name, key) && key->len > 0) {
                *where = (int)i;
                return true;
            }
            break;
        }
    }
    return false;
}

static void tg__auth_failed(struct tg_txn *t, int status, const char *reason, const char *code,
                            const char *message, bool bearer)
{
    struct tg_worker *w = t->conn->worker;

    uint32_t id = 0;

    while (id + 1 < TG_AUTH_REASONS && strcmp(tg_auth_reasons[id], reason) != 0)
        id++;
    tg_metrics_policy(&w->metrics, t->rt->route_labels[t->route->id], TG_POLICY_AUTH, id);
    tg_txn_respond(t, status, code, message, 0,
                   status == 401 && bearer ? "WWW-Authenticate: Bearer realm=\"tollgate\"\r\n"
                                           : NULL);
}

/* A JWT from Authorization: Bearer. Returns 1 (caller set), 0 (no token), -1 (answered). */
static int tg__jwt(struct tg_txn *t, const struct tg_auth_conf *a, struct tg_caller *who,
                   char *consumer, size_t cap)
{
    const struct tg_jwt_slot *slot = t->rt->jwt_slots[t->route->id];
    struct tg_jwt_policy pol = {.algorithms = a->jwt->algorithms,
                                .issuer = a->jwt->issuer,
                                .audience = a->jwt->audience,
                                .leeway_s = (int64_t)(a->jwt->leeway / 1000),
                                .consumer_claim = a->jwt->consumer_claim};
    const struct tg_jwt_keys *keys;
    enum tg_jwt_result r = TG_JWT_ALGORITHM;
    struct tg_str tok;
    size_t idx;

    if (!tg__bearer(t, &tok, &idx))
        return 0;
    keys = slot ? tg_jwt_slot_keys(slot) : NULL;
    if (keys != NULL)
        r = tg_jwt_verify(keys, &pol, tok.base, tok.len, tg_loop_wall(t->conn->worker->loop),
                          consumer, cap);
    /* an HS256 token finds no key of its kind among public keys: then the shared secret */
    if (r == TG_JWT_ALGORITHM && slot != NULL && tg_jwt_slot_secret(slot) != NULL)
        r = tg_jwt_verify(tg_jwt_slot_secret(slot), &pol, tok.base, tok.len,
                          tg_loop_wall(t->conn->worker->loop), consumer, cap);
    if (r != TG_JWT_OK) {
        char msg[96];

        snprintf(msg, sizeof(msg), "the token is not valid (%s)", tg_jwt_result_name(r));
        tg__auth_failed(t, 401, tg_jwt_result_name(r), "invalid_token", msg, true);
        return -1;
    }
    t->cred_header = (uint16_t)(idx + 1);
    who->name = consumer;
    who->name_len = strlen(consumer);
    who->plan = TG_NO_PLAN;
    /* a JWT consumer that is also configured gets its plan */
    for (size_t i = 0; i < t->rt->cf->num_consumers; i++)
        if (strcmp(t->rt->cf->consumers[i].name, consumer) == 0)
            who->plan = t->rt->cf->consumers[i].plan;
    return 1;
}

/* Who is calling. Returns false when it answered. */
static bool tg__authenticate(struct tg_txn *t, const struct tg_route_captures *caps,
                             struct tg_caller *who, char *consumer, size_t cap)
{
    const struct tg_auth_conf *a = t->route->auth;
    const struct tg_config *cf = t->rt->cf;
    struct tg_str key;
    int where = -1;

    who->name = NULL;
    who->plan = cf->anon_plan;
    if (a == NULL)
        return true;
    if (a->jwt != NULL) {
        int r = tg__jwt(t, a, who, consumer, cap);

        if (r < 0)
            return false;
        if (r > 0)
            goto allowed; /* the allow lists apply to token callers too */
    }
    if (a->num_from > 0 && tg__find_key(t, caps, a, &key, &where)) {
        const struct tg_keytab *kt = tg_keys_current();
        const struct tg_consumer *c;
        uint8_t digest[32];

        if (key.len > TG_MAX_KEY_LEN) {
            tg__auth_failed(t, 401, "invalid_key", "invalid_key", "the API key is not valid",
                            a->from[where].kind == TG_KEY_BEARER);
            return false;
        }
        tg_sha256(key.base, key.len, digest);
        /* take the key out of what goes upstream and into the access log, valid or not */
        if (a->from[where].kind == TG_KEY_PATH && t->route->rewrite_path == NULL &&
            key.base >= t->scratch && key.base + key.len <= t->scratch + t->path_len)
            tg__path_cut(t, (char *)key.base, key.len); /* a path capture, not a host one */
        else if (a->from[where].kind == TG_KEY_QUERY)
            tg__query_cut(t, key, strlen(a->from[where].name));
        /* header and bearer keys are left out when the request is composed (cred_header) */
        c = tg_keytab_find(kt, digest);
        if (c == NULL) {
            tg__auth_failed(t, 401, "invalid_key", "invalid_key", "the API key is not valid",
                            a->from[where].kind == TG_KEY_BEARER);
            return false;
        }
        who->name = c->name;
        who->name_len = c->name_len;
        who->plan = tg_consumer_plan(kt, c, cf);
        if (a->from[where].kind != TG_KEY_HEADER && a->from[where].kind != TG_KEY_BEARER)
            t->cred_header = 0;
        if (c->name_len < cap) {
            memcpy(consumer, c->name, c->name_len);
            consumer[c->name_len] = '\0';
            who->name = consumer; /* the table may go once this loop iteration ends */
        }
    } else if (!a->optional) {
        bool bearer = false;

        for (size_t i = 0; i < a->num_from; i++)
            bearer |= a->from[i].kind == TG_KEY_BEARER;
        tg__auth_failed(t, 401, "missing", "missing_credential",
                        a->jwt ? "a token is required" : "an API key is required",
                        bearer || a->jwt != NULL);
        return false;
    }
allowed:
    if (a->consumers.num > 0) {
        bool ok = false;

        for (size_t i = 0; !ok && who->name && i < a->consumers.num; i++)
            ok = strcmp(a->consumers.items[i], who->name) == 0;
        if (!ok) {
            tg__auth_failed(t, 403, "forbidden", "forbidden",
                            "this consumer may not use this route", false);
            return false;
        }
    }
    if (a->plans.num > 0) {
        bool ok = false;

        for (size_t i = 0; !ok && who->plan != TG_NO_PLAN && i < a->plans.num; i++)
            ok = strcmp(a->plans.items[i], cf->plans[who->plan].name) == 0;
        if (!ok) {
            tg__auth_failed(t, 403, "forbidden", "forbidden",
                            "this consumer's plan does not include this route", false);
            return false;
        }
    }
    return true;
}

/* The client's address as text: the peer, or the last X-Forwarded-For hop when the peer is a
 * trusted proxy. */
static struct tg_str tg__client_ip(struct tg_txn *t)
{
    struct tg_conn *c = t->conn;
    const char *peer;

    if (tg_runtime_trusted(t->rt, &c->peer)) {
        for (size_t i = t->req.num_headers; i-- > 0;) {
            const struct tg_http_header *h = &t->req.headers[i];
            const char *comma, *p;

            if (h->id != TG_HDR_X_FORWARDED_FOR || h->value.len == 0)
                continue;
            comma = memrchr(h->value.base, ',', h->value.len);
            p = comma ? comma + 1 : h->value.base;
            while (p < h->value.base + h->value.len && *p == ' ')
                p++;
            return tg_str_make(p, (size_t)(h->value.base + h->value.len - p));
        }
    }
    peer = tg_conn_peer_text(c);
    return peer ? tg_str_make(peer, c->peer_text_len) : tg_str_make("", 0);
}

/* The counter key of a limit for this caller; false when the limit does not apply. */
static bool tg__limit_key(struct tg_txn *t, const struct tg_limit_conf *l,
                          const struct tg_caller *who, struct tg_str *key)
{
    const struct tg_config *cf = t->rt->cf;
    uint8_t by = l->by;
    const char *header = l->by_header;
    size_t idx;

    if (who->name == NULL && (by == TG_BY_CONSUMER)) {
        /* anonymous callers are counted as anonymous.by says */
        by = cf->anon_by;
        header = cf->anon_header;
    }
    switch (by) {
    case TG_BY_CONSUMER:
        *key = tg_str_make(who->name, who->name_len);
        return true;
    case TG_BY_CLIENT_IP:
        *key = tg__client_ip(t);
        return true;
    case TG_BY_ROUTE:
        *key = tg_str_make("", 0);
        return true;
    case TG_BY_HEADER: {
        const struct tg_http_header *h = header ? tg__header(t, header, &idx) : NULL;

        *key = h ? h->value : tg_str_make("", 0);
        return true;
    }
    default:
        return false;
    }
}

static void tg__limited(struct tg_txn *t, const struct tg_limit_conf *l,
                        const struct tg_rl_verdict *v)
{
    struct tg_worker *w = t->conn->worker;
    char extra[512];
    size_t n = tg_txn_ratelimit_headers(t, extra, sizeof(extra));

    extra[n] = '\0';
    tg_metrics_policy(&w->metrics, t->rt->route_labels[t->route->id], TG_POLICY_LIMIT, l->label);
    if (v->store_down)
        tg_txn_respond(t, 429, "rate_limited",
                       "the rate-limit store is unreachable and on_store_error is deny", 1, NULL);
    else if (v->quota)
        tg_txn_respond(t, 429, "quota_exceeded", "the quota of this period is used up",
                       (unsigned)v->retry_after_s, extra);
    else
        tg_txn_respond(t, 429, "rate_limited", "too many requests; slow down",
                       (unsigned)v->retry_after_s, extra);
}

/* Keeps the verdict that binds most for the RateLimit header fields. */
static void tg__note(struct tg_txn *t, const struct tg_limit_conf *l, const struct tg_rl_verdict *v)
{
    if (t->rl_set && v->ok && t->rl_r <= v->remaining)
        return; /* a refusal always reports the limit that refused */
    t->rl_set = true;
    t->rl_quota = v->quota;
    t->rl_name = l->name;
    t->rl_q = v->limit;
    t->rl_w = v->window_s;
    t->rl_r = v->remaining;
    t->rl_t = v->reset_s;
}

bool tg_txn_identity(struct tg_txn *t, const struct tg_route_captures *caps)
{
    struct tg_caller who = {0};
    char consumer[TG_KEY_NAME_MAX + 1];

    if (!tg__authenticate(t, caps, &who, consumer, sizeof(consumer)))
        return false;
    t->caller_plan = who.plan;
    t->caller_len = who.name != NULL ? (uint8_t)TG_MIN(who.name_len, TG_KEY_NAME_MAX) : 0;
    t->caller = who.name;
    if (t->route->rpc == NULL)
        return tg_txn_limits(t, 0, true);
    /* the name may live in the key table, held only until this event ends: the limits of a
     * JSON-RPC route are charged once the body is read, maybe in a later event */
    if (who.name != NULL)
        t->caller = tg_rpc_keep_caller(t, who.name, t->caller_len);
    return true;
}

bool tg_txn_limits(struct tg_txn *t, uint64_t units, bool answer)
{
    const struct tg_route_conf *r = t->route;
    const struct tg_config *cf = t->rt->cf;
    struct tg_worker *w = t->conn->worker;
    struct tg_caller who = {t->caller, t->caller_len, t->caller_plan};
    const struct tg_limit_conf *used[TG_MAX_ROUTE_LIMITS] = {0};
    uint64_t ids[TG_MAX_ROUTE_LIMITS], costs[TG_MAX_ROUTE_LIMITS];

    for (size_t i = 0; i < r->num_limits; i++) {
        const struct tg_limit_conf *l = &r->limits[i];
        struct tg_rl_verdict v;
        struct tg_str key;
        uint64_t cost = units != 0 ? units : r->cost;

        if (l->plan) {
            if (who.plan == TG_NO_PLAN)
                continue; /* a consumer without a plan is limited only by explicit limits */
            l = &cf->plans[who.plan].limit;
        }
        if (i >= TG_MAX_ROUTE_LIMITS || !tg__limit_key(t, l, &who, &key))
            continue;
        if (cost == 0)
            cost = who.plan != TG_NO_PLAN ? cf->plans[who.plan].limit.cost : 1;
        ids[i] = tg_rl_id(l->name_hash, key.base, key.len);
        used[i] = l;
        costs[i] = cost;
        tg_rl_check(t->rt->rl, l, ids[i], cost, tg_loop_now_us(w->loop), tg_loop_wall(w->loop), &v);
        tg__note(t, l, &v);
        if (!v.ok) {
            /* the limits before this one gave their units back: a refused request costs
             * nothing */
            while (i-- > 0)
                if (used[i] != NULL)
                    tg_rl_refund(t->rt->rl, used[i], ids[i], costs[i], tg_loop_wall(w->loop));
            if (answer)
                tg__limited(t, l, &v);
            else
                tg_metrics_policy(&w->metrics, t->rt->route_labels[t->route->id], TG_POLICY_LIMIT,
                                  l->label);
            return false;
        }
    }
    return true;
}

/* Formatted by hand: this runs on every admitted response of a limited route. */
/* One RateLimit field line: FIELD "NAME[:quota]";k1=v1;k2=v2 CRLF (k1 and k2 with their
 * punctuation). Returns the end of what it wrote. */
static char *tg__rl_line(char *o, const char *field, const char *name, size_t name_len,
                         size_t suffix, const char *k1, uint64_t v1, const char *k2, uint64_t v2)
{
    memcpy(o, field, strlen(field)), o += strlen(field);
    memcpy(o, name, name_len), o += name_len;
    memcpy(o, ":quota", suffix), o += suffix;
    memcpy(o, k1, strlen(k1)), o += strlen(k1);
    o = tg_put_u64(o, v1);
    memcpy(o, k2, strlen(k2)), o += strlen(k2);
    o = tg_put_u64(o, v2);
    memcpy(o, "\r\n", 2);
    return o + 2;
}

size_t tg_txn_ratelimit_headers(const struct tg_txn *t, char *out, size_t cap)
{
    size_t name = strlen(t->rl_name), suffix = t->rl_quota ? 6 : 0;
    char *o = out;

    /* two lines of fixed text, the name twice and four numbers of at most 20 digits */
    if (!t->rl_set || cap < 2 * (name + suffix) + 4 * 20 + 64)
        return 0;
    o = tg__rl_line(o, "RateLimit-Policy: \"", t->rl_name, name, suffix, "\";q=", t->rl_q,
                    ";w=", t->rl_w);
    o = tg__rl_line(o, "RateLimit: \"", t->rl_name, name, suffix, "\";r=", t->rl_r, ";t=", t->rl_t);
    return (size_t)(o - out);
}
