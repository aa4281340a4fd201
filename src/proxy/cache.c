/*
 * The cache phase of a route with a cache section (issue 7), between admission and forwarding,
 * and its response side.
 *
 * Request: tg_cache_begin() looks the request up (cache/policy.c says whether it may, and its
 * key). A fresh entry is sent at once (HIT, or 304 for a matching conditional request). A miss
 * becomes the key's writer and goes upstream, or, when another request already fetches the key
 * (coalescing, on any worker), waits: the transaction is parked on its worker's list, with
 * coalesce_timeout on its retry timer. When the writer's fill ends, every worker with waiters
 * is told (tg_loop_post); each looks its waiters up again: a hit is sent (COALESCED), else the
 * waiter goes upstream on its own.
 *
 * Response: a response the rules let us store, with a Content-Length up to cache.max_object,
 * is copied while it streams to the client: its head (without hop-by-hop and per-message
 * fields) and its body, straight into the new entry, which is inserted once the body is whole.
 * A chunked one is decoded on the side as it passes (up to max_object) and its entry made at
 * the last chunk.
 * A response that varies also leaves a marker under the request's key naming the Vary headers;
 * a lookup that finds one looks again under the key with those headers' values.
 *
 * Stale entries: within stale_while_revalidate, every request gets the stale copy at once
 * (STALE), and the first one to take the key's fill marker starts a refresh in the background:
 * a copy of its request, run on a connection without a client (tg_conn_internal), which fills
 * the entry as any writer does. Within stale_if_error, a writer whose node fails (no answer, or
 * a 5xx) sends the stale copy instead of the error.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cache/cache.h"
#include "cache/policy.h"
#include "core/core.h"
#include "core/sbuf.h"
#include "core/str.h"
#include "proxy/proxy.h"
#include "router/router.h"

/* How a request was served, for tollgate_cache_requests_total{result} (label order). */
const char *const tg_cache_results[] = {"hit", "miss", "stale", "coalesced", "bypass"};

struct tg_cache_txn {
    struct tg_cache_txn *next_free;
    struct tg_cache_txn *wait_next, *wait_prev; /* the worker's waiting transactions */
    struct tg_txn *txn;
    struct tg_sbuf key;           /* the request's key */
    struct tg_sbuf vkey;          /* the key with the Vary headers' values */
    uint64_t hash;                /* of key */
    uint8_t mode;                 /* enum tg_cache_req */
    bool writer;                  /* holds the fill marker of key */
    bool waiting;                 /* parked on the worker's list */
    struct tg_cache_entry *sent;  /* the entry being sent to the client (a reference) */
    struct tg_cache_entry *stale; /* an expired entry kept for stale_if_error (a reference) */
    struct tg_cache_entry *fill;  /* the entry being filled by the response */
    struct tg_cache_entry *vmark; /* the Vary marker to insert with it */
    uint64_t filled;              /* body bytes of fill written (chunked: decoded in raw) */
    struct tg_cache_entry *tmpl;  /* a chunked response: its entry without the body, yet */
    struct tg_sbuf raw;           /* ... and its body, decoded in place as it comes */
    struct tg_h1_chunked dec;
};

static struct tg_cache_store *tg__store(void)
{
    return tg_instance.cache;
}

void tg_cache_count(struct tg_txn *t, unsigned result)
{
    struct tg_runtime *rt = t->rt;

    tg_metrics_policy(&t->conn->worker->metrics, rt->route_labels[t->route - rt->cf->routes],
                      TG_POLICY_CACHE, result);
}

static struct tg_cache_txn *tg__get(struct tg_txn *t)
{
    struct tg_worker *w = t->conn->worker;
    struct tg_cache_txn *c = w->free_cache;

    if (c != NULL)
        w->free_cache = c->next_free;
    else
        c = tg_calloc(1, sizeof(*c));
    c->txn = t;
    c->key.len = c->vkey.len = 0;
    c->writer = c->waiting = false;
    c->sent = c->stale = c->fill = c->vmark = c->tmpl = NULL;
    c->raw.len = 0;
    c->filled = 0;
    t->cache = c;
    return c;
}

static void tg__drop(struct tg_cache_entry **e)
{
    if (*e != NULL)
        tg_cache_entry_unref(*e);
    *e = NULL;
}

/* -- sending an entry ------------------------------------------------------------------------ */

/* The fields tollgate adds to a stored head: Date, Age, X-Cache, the body's length. */
static char *tg__added(struct tg_txn *t, const struct tg_cache_entry *e, const char *x_cache,
                       char *p, char *end, bool length)
{
    size_t date_len;
    const char *date = tg_worker_date(t->conn->worker, &date_len);

    TG_PUT(p, end, date, date_len);
    TG_PUTS(p, end, "Age: ");
    if (end - p < 24)
        return NULL;
    p = tg_put_u64(p, (uint64_t)tg_cache_age(e, tg_loop_wall_ms(t->conn->worker->loop)));
    TG_PUTS(p, end, "\r\nX-Cache: ");
    TG_PUT(p, end, x_cache, strlen(x_cache));
    TG_PUTS(p, end, "\r\n");
    if (length) {
        TG_PUTS(p, end, "Content-Length: ");
        if (end - p < 24)
            return NULL;
        p = tg_put_u64(p, e->body_len);
        TG_PUTS(p, end, "\r\n");
    }
    return tg_txn_head_end(t, p, end);

overflow:
    return NULL;
}

/* Sends entry e (a reference the transaction now holds) as the answer, or a 304 when the
 * request's conditions match it. */
static void tg__send(struct tg_txn *t, struct tg_cache_entry *e, unsigned result)
{
    static const char *const names[] = {"HIT", "MISS", "STALE", "COALESCED", "BYPASS"};
    struct tg_conn *c = t->conn;
    char *start = t->scratch + t->scratch_cap / 2;
    char *end = t->scratch + t->scratch_cap;
    char *p = start;
    bool not_modified = tg_cache_not_modified(&t->req, e->etag, e->last_modified);

    t->cache->sent = e;
    tg_cache_count(t, result);
    if (!t->req.keep_alive || c->worker->draining)
        c->close_after = true;
    t->res_out.off = t->res_out.cnt = 0;
    if (not_modified) {
        TG_PUTS(p, end, "HTTP/1.1 304 Not Modified\r\n");
        if (e->etag.len > 0) {
            TG_PUTS(p, end, "ETag: ");
            TG_PUT(p, end, e->etag.base, e->etag.len);
            TG_PUTS(p, end, "\r\n");
        }
        if (e->last_modified.len > 0) {
            TG_PUTS(p, end, "Last-Modified: ");
            TG_PUT(p, end, e->last_modified.base, e->last_modified.len);
            TG_PUTS(p, end, "\r\n");
        }
    } else {
        t->res_out.iov[t->res_out.cnt++] = (struct iovec){(void *)e->head, e->head_len};
    }
    p = tg__added(t, e, names[result], p, end, !not_modified);
    if (p == NULL)
        goto overflow;
    t->res_out.iov[t->res_out.cnt++] = (struct iovec){start, (size_t)(p - start)};
    if (!not_modified && !t->head_request && e->body_len > 0)
        t->res_out.iov[t->res_out.cnt++] = (struct iovec){e->body, e->body_len};
    t->status = not_modified ? 304 : e->status;
    t->local_reply = true;
    t->res_state = TG_RES_BODY;
    t->res_end = true;
    t->res_body_out = 0;
    c->phase = TG_CONN_TXN;
    c->worker->stats.responses_by_class[t->status / 100]++;
    tg_txn_flush(t);
    return;

overflow:
    tg_txn_respond_error(t, 500, "internal_error", "the cached head does not fit");
}

/* -- lookup ---------------------------------------------------------------------------------- */

/* The entry for the request (a reference), following a Vary marker; NULL when none. */
static struct tg_cache_entry *tg__lookup(struct tg_txn *t)
{
    struct tg_cache_txn *c = t->cache;
    struct tg_cache_entry *e = tg_cache_lookup(tg__store(), c->hash, c->key.base, c->key.len);
    ssize_t n;

    if (e == NULL || e->status != 0)
        return e;
    /* a marker: the response varies on the headers its head names */
    tg_sbuf_reserve(&c->vkey, c->key.len + 4096);
    n = tg_cache_vary_key(c->vkey.base, c->vkey.cap, tg_str_make(c->key.base, c->key.len),
                          tg_str_make(e->head, e->head_len), &t->req);
    tg_cache_entry_unref(e);
    if (n < 0)
        return NULL;
    c->vkey.len = (size_t)n;
    return tg_cache_lookup(tg__store(), tg_cache_hash(c->vkey.base, c->vkey.len), c->vkey.base,
                           c->vkey.len);
}

/* An expired entry is kept while the stale_if_error window allows serving it. */
static void tg__keep_stale(struct tg_cache_txn *c, struct tg_cache_entry *e, int64_t now)
{
    if (e != NULL && now < e->sie_ms)
        c->stale = e;
    else if (e != NULL)
        tg_cache_entry_unref(e);
}

static void tg__on_wait_timeout(struct tg_loop *loop, struct tg_timer *timer);

static void tg__unpark(struct tg_cache_txn *c)
{
    struct tg_worker *w = c->txn->conn->worker;

    if (!c->waiting)
        return;
    if (c->wait_prev != NULL)
        c->wait_prev->wait_next = c->wait_next;
    else
        w->cache_waiters = c->wait_next;
    if (c->wait_next != NULL)
        c->wait_next->wait_prev = c->wait_prev;
    c->wait_next = c->wait_prev = NULL;
    c->waiting = false;
    tg_timer_disarm(&c->txn->retry_timer);
}

static void tg__park(struct tg_txn *t)
{
    struct tg_cache_txn *c = t->cache;
    struct tg_worker *w = t->conn->worker;

    c->waiting = true;
    c->wait_prev = NULL;
    c->wait_next = w->cache_waiters;
    if (w->cache_waiters != NULL)
        w->cache_waiters->wait_prev = c;
    w->cache_waiters = c;
    t->conn->phase = TG_CONN_TXN;
    tg_timer_arm(w->loop, &t->retry_timer, t->route->cache->coalesce_timeout, tg__on_wait_timeout);
}

bool tg_cache_begin(struct tg_txn *t)
{
    const struct tg_cache_route_conf *rc = t->route->cache;
    struct tg_cache_txn *c;
    struct tg_cache_entry *e = NULL;
    int64_t now = tg_loop_wall_ms(t->conn->worker->loop);
    enum tg_cache_req mode = tg_cache_request(&t->req, rc, NULL);
    ssize_t n;

    if (mode == TG_CACHE_BYPASS || tg__store() == NULL) {
        tg_cache_count(t, TG_CACHED_BYPASS);
        return false;
    }
    c = tg__get(t);
    c->mode = (uint8_t)mode;
    tg_sbuf_reserve(&c->key, t->req.host.len + t->path_len + 32);
    n = tg_cache_key(c->key.base, c->key.cap, t->req.method_id, tg_router_host(t->req.host),
                     tg_str_make(t->scratch, t->path_len), rc);
    if (n < 0) { /* too many query parameters, or too long: not cached */
        t->cache = NULL;
        c->next_free = t->conn->worker->free_cache;
        t->conn->worker->free_cache = c;
        tg_cache_count(t, TG_CACHED_BYPASS);
        return false;
    }
    c->key.len = (size_t)n;
    c->hash = tg_cache_hash(c->key.base, c->key.len);
    if (t->conn->internal) { /* a refresh in the background: it holds the key's fill marker */
        c->writer = true;
        return false;
    }
    if (mode == TG_CACHE_REFRESH) {
        tg_cache_count(t, TG_CACHED_MISS); /* upstream, no waiting; the response may be stored */
        return false;
    }
    e = tg__lookup(t);
    if (e != NULL && now < e->fresh_ms) {
        tg__send(t, e, TG_CACHED_HIT);
        return true;
    }
    if (e != NULL && now < e->swr_ms) {
        /* stale_while_revalidate: the stale copy now, and one refresh in the background, by
         * the request that takes the key's fill marker */
        if (!t->head_request && t->conn->worker->id < 64 &&
            tg_cache_fill_begin(tg__store(), c->hash, c->key.base, c->key.len,
                                t->conn->worker->id) == TG_FILL_WRITER)
            tg_conn_internal(t->conn->worker, t->conn->in->base + t->conn->in->start, t->head_len);
        tg__send(t, e, TG_CACHED_STALE);
        return true;
    }
    if (!rc->coalesce || t->head_request || /* a HEAD's response is not stored: no writer */
        t->conn->worker->id >= 64 ||        /* the store's waiter masks have 64 bits */
        tg_cache_fill_begin(tg__store(), c->hash, c->key.base, c->key.len, t->conn->worker->id) ==
            TG_FILL_WRITER) {
        c->writer = rc->coalesce && !t->head_request && t->conn->worker->id < 64;
        tg__keep_stale(c, e, now);
        tg_cache_count(t, TG_CACHED_MISS);
        return false;
    }
    tg__drop(&e);
    tg__park(t);
    return true;
}

/* -- waiting --------------------------------------------------------------------------------- */

/* A parked request goes on: with the entry the fill left (COALESCED), else upstream on its own
 * (the fill failed, was not storable, or took longer than coalesce_timeout). */
static void tg__resume(struct tg_txn *t)
{
    struct tg_cache_txn *c = t->cache;
    struct tg_cache_entry *e;

    tg__unpark(c);
    e = tg__lookup(t);
    if (e != NULL && tg_loop_wall_ms(t->conn->worker->loop) < e->fresh_ms) {
        tg__send(t, e, TG_CACHED_COALESCED);
        return;
    }
    tg__keep_stale(t->cache, e, tg_loop_wall_ms(t->conn->worker->loop)); /* if the node fails */
    tg_cache_count(t, TG_CACHED_MISS);
    tg_txn_admit(t);
}

static void tg__on_wait_timeout(struct tg_loop *loop, struct tg_timer *timer)
{
    (void)loop;
    tg_txn_step(TG_CONTAINER_OF(timer, struct tg_txn, retry_timer), tg__resume);
}

/* "The fill of this key ended", for one worker. */
struct tg__wake {
    struct tg_worker *worker;
    uint64_t hash;
    size_t len;
    char key[];
};

static void tg__on_wake(struct tg_loop *loop, void *arg)
{
    struct tg__wake *m = arg;
    bool again = true;

    (void)loop;
    /* resuming may park new requests (pipelined ones) or end others: look from the top each
     * time; every resume takes one waiter off the list */
    while (again) {
        again = false;
        for (struct tg_cache_txn *c = m->worker->cache_waiters; c != NULL; c = c->wait_next) {
            if (c->hash == m->hash && c->key.len == m->len &&
                memcmp(c->key.base, m->key, m->len) == 0) {
                tg_txn_step(c->txn, tg__resume);
                again = true;
                break;
            }
        }
    }
    free(m);
}

/* The writer's fetch ended (stored or not): the waiters of every worker go on. */
static void tg__writer_done(struct tg_cache_txn *c)
{
    uint64_t mask;

    if (!c->writer)
        return;
    c->writer = false;
    mask = tg_cache_fill_end(tg__store(), c->hash, c->key.base, c->key.len);
    for (uint32_t i = 0; mask != 0 && i < tg_instance.num_workers; i++) {
        struct tg__wake *m;

        if (!(mask >> i & 1))
            continue;
        m = tg_malloc(sizeof(*m) + c->key.len);
        m->worker = &tg_instance.workers[i];
        m->hash = c->hash;
        m->len = c->key.len;
        memcpy(m->key, c->key.base, c->key.len);
        tg_loop_post(m->worker->loop, tg__on_wake, m);
    }
}

/* -- storing --------------------------------------------------------------------------------- */

/* Header fields a stored head leaves out: per-hop and per-message ones, the framing (a cached
 * answer gets its own length), and those tollgate writes for each answer. */
static bool tg__not_stored(const struct tg_http_header *h)
{
    static const char *const names[] = {
        "age", "x-cache", "set-cookie", "content-length", "transfer-encoding", "date", NULL};

    if ((h->flags & TG_HDR_F_HOP) || h->id == TG_HDR_X_REQUEST_ID)
        return true;
    for (size_t i = 0; names[i] != NULL; i++)
        if (h->name.len == strlen(names[i]) &&
            strncasecmp(h->name.base, names[i], h->name.len) == 0)
            return true;
    return false;
}

/* A field's value in a stored head (empty when absent). */
static struct tg_str tg__field(const char *head, size_t len, const char *name)
{
    size_t n = strlen(name);
    const char *p = memchr(head, '\n', len), *end = head + len;

    while (p != NULL && (size_t)(end - p) > n + 1) {
        const char *line = p + 1, *eol = memchr(line, '\r', (size_t)(end - line));

        if (eol == NULL)
            break;
        if ((size_t)(eol - line) > n && line[n] == ':' && strncasecmp(line, name, n) == 0) {
            const char *v = line + n + 1;

            while (v < eol && *v == ' ')
                v++;
            return tg_str_make(v, (size_t)(eol - v));
        }
        p = eol + 1;
    }
    return tg_str_make(head, 0);
}

/* The stored head of the node's response: a canonical status line and the fields kept. */
static void tg__stored_head(const struct tg_txn *t, struct tg_sbuf *b)
{
    struct tg_str reason = t->res.reason;

    if (reason.len == 0)
        reason = tg_str_cstr(tg_http_status_text(t->res.status));
    tg_sbuf_printf(b, "HTTP/1.1 %03d ", t->res.status);
    tg_sbuf_add(b, reason.base, reason.len);
    tg_sbuf_add(b, "\r\n", 2);
    for (size_t i = 0; i < t->res.num_headers; i++) {
        const struct tg_http_header *h = &t->res.headers[i];

        if (tg__not_stored(h))
            continue;
        tg_sbuf_add(b, h->name.base, h->name.len);
        tg_sbuf_add(b, ": ", 2);
        tg_sbuf_add(b, h->value.base, h->value.len);
        tg_sbuf_add(b, "\r\n", 2);
    }
}

static void tg__fill_done(struct tg_cache_txn *c)
{
    if (c->vmark != NULL)
        tg_cache_insert(tg__store(), c->vmark);
    tg_cache_insert(tg__store(), c->fill);
    c->vmark = c->fill = NULL;
    tg__writer_done(c);
}

void tg_cache_head_arrived(struct tg_txn *t)
{
    struct tg_cache_txn *c = t->cache;
    struct tg_worker *w = t->conn->worker;
    struct tg_cache_fresh f;
    struct tg_sbuf *head = &w->cache_head;
    const char *key = c->key.base;
    size_t key_len = c->key.len;
    int64_t now = tg_loop_wall_ms(w->loop);
    struct tg_cache_entry *e;

    if (t->head_request || t->req.method_id != TG_METHOD_GET ||
        !((t->res.body_kind == TG_BODY_LENGTH &&
           t->res.content_length <= tg_cache_store_max_object(tg__store())) ||
          (t->res.body_kind == TG_BODY_CHUNKED && t->res_passthru_chunked)) ||
        tg_cache_response(&t->res, now, t->route->cache, &f) != 0) {
        tg__writer_done(c); /* the waiters go upstream on their own */
        return;
    }
    if (f.vary.len > 0) {
        ssize_t n;

        tg_sbuf_reserve(&c->vkey, c->key.len + 4096);
        n = tg_cache_vary_key(c->vkey.base, c->vkey.cap, tg_str_make(c->key.base, c->key.len),
                              f.vary, &t->req);
        if (n < 0) {
            tg__writer_done(c);
            return;
        }
        c->vkey.len = (size_t)n;
        key = c->vkey.base;
        key_len = c->vkey.len;
        c->vmark = tg_cache_entry_new(c->key.base, c->key.len, f.vary.base, f.vary.len, 0);
        if (c->vmark != NULL) {
            c->vmark->status = 0; /* a marker: its head is the Vary value */
            c->vmark->stored_ms = now;
            c->vmark->fresh_ms = c->vmark->swr_ms = c->vmark->sie_ms =
                TG_MAX(f.fresh_until, TG_MAX(f.swr_until, f.sie_until));
        }
    }
    head->len = 0;
    tg__stored_head(t, head);
    e = tg_cache_entry_new(key, key_len, head->base, head->len,
                           t->res.body_kind == TG_BODY_LENGTH ? t->res.content_length : 0);
    if (e == NULL) {
        tg__drop(&c->vmark);
        tg__writer_done(c);
        return;
    }
    e->status = (uint16_t)t->res.status;
    e->stored_ms = now;
    e->age_s = f.age_s;
    e->fresh_ms = f.fresh_until;
    e->swr_ms = f.swr_until;
    e->sie_ms = f.sie_until;
    e->etag = tg__field(e->head, e->head_len, "etag");
    e->last_modified = tg__field(e->head, e->head_len, "last-modified");
    c->filled = 0;
    if (t->res.body_kind == TG_BODY_CHUNKED) { /* the body's length is known at its end */
        c->tmpl = e;
        c->raw.len = 0;
        tg_h1_chunked_init(&c->dec, TG_CHUNK_MAX_LINE, TG_CHUNK_MAX_TRAILERS);
        return;
    }
    c->fill = e;
    if (e->body_len == 0)
        tg__fill_done(c);
}

/* A chunked body given up: too large, or framing the relay will refuse anyway. */
static void tg__chunked_abandon(struct tg_cache_txn *c)
{
    tg__drop(&c->tmpl);
    tg__drop(&c->vmark);
    tg__writer_done(c);
}

/* n bytes of a chunked body as the node sent them: decoded in place after the data so far;
 * once the last chunk is in, the entry is made from the template and the data. */
static void tg__chunked_body(struct tg_cache_txn *c, const char *p, size_t n)
{
    const struct tg_cache_entry *tm = c->tmpl;
    struct tg_cache_entry *e;
    size_t data = 0;
    ssize_t r;

    tg_sbuf_add(&c->raw, p, n);
    r = tg_h1_chunked_decode(&c->dec, c->raw.base + c->filled, c->raw.len - c->filled, &data);
    c->filled += data;
    c->raw.len = (size_t)c->filled;
    if (r == TG_H1_INVALID || c->filled > tg_cache_store_max_object(tg__store())) {
        tg__chunked_abandon(c);
        return;
    }
    if (r == TG_H1_INCOMPLETE)
        return;
    e = tg_cache_entry_new(tm->key, tm->key_len, tm->head, tm->head_len, c->filled);
    if (e == NULL) {
        tg__chunked_abandon(c);
        return;
    }
    memcpy(e->body, c->raw.base, c->filled);
    e->status = tm->status;
    e->stored_ms = tm->stored_ms;
    e->age_s = tm->age_s;
    e->fresh_ms = tm->fresh_ms;
    e->swr_ms = tm->swr_ms;
    e->sie_ms = tm->sie_ms;
    e->etag = tg__field(e->head, e->head_len, "etag");
    e->last_modified = tg__field(e->head, e->head_len, "last-modified");
    tg__drop(&c->tmpl);
    c->fill = e;
    tg__fill_done(c);
}

void tg_cache_body(struct tg_txn *t, const char *p, size_t n)
{
    struct tg_cache_txn *c = t->cache;
    size_t take;

    if (c->tmpl != NULL) {
        tg__chunked_body(c, p, n);
        return;
    }
    if (c->fill == NULL)
        return;
    take = (size_t)TG_MIN((uint64_t)n, c->fill->body_len - c->filled);
    memcpy(c->fill->body + c->filled, p, take);
    c->filled += take;
    if (c->filled == c->fill->body_len)
        tg__fill_done(c);
}

bool tg_cache_has_stale(const struct tg_txn *t)
{
    const struct tg_cache_entry *e = t->cache->stale;

    return e != NULL && tg_loop_wall_ms(t->conn->worker->loop) < e->sie_ms;
}

bool tg_cache_serve_stale(struct tg_txn *t)
{
    struct tg_cache_txn *c = t->cache;
    struct tg_cache_entry *e = c->stale;

    if (!tg_cache_has_stale(t))
        return false;
    c->stale = NULL;
    tg__drop(&c->fill);
    tg__drop(&c->tmpl);
    tg__drop(&c->vmark);
    tg__send(t, e, TG_CACHED_STALE);
    return true;
}

void tg_cache_txn_free(struct tg_txn *t)
{
    struct tg_cache_txn *c = t->cache;
    struct tg_worker *w = t->conn->worker;

    t->cache = NULL;
    tg__unpark(c);
    tg__drop(&c->fill); /* a body that did not come whole is not stored */
    tg__drop(&c->tmpl);
    tg__drop(&c->vmark);
    tg__writer_done(c);
    tg__drop(&c->sent);
    tg__drop(&c->stale);
    if (c->key.cap > 4096)
        tg_sbuf_dispose(&c->key);
    if (c->vkey.cap > 8192)
        tg_sbuf_dispose(&c->vkey);
    if (c->raw.cap > 65536)
        tg_sbuf_dispose(&c->raw);
    c->next_free = w->free_cache;
    w->free_cache = c;
}

void tg_cache_worker_dispose(struct tg_worker *w)
{
    while (w->free_cache != NULL) {
        struct tg_cache_txn *c = w->free_cache;

        w->free_cache = c->next_free;
        tg_sbuf_dispose(&c->key);
        tg_sbuf_dispose(&c->vkey);
        tg_sbuf_dispose(&c->raw);
        free(c);
    }
    tg_sbuf_dispose(&w->cache_head);
}
