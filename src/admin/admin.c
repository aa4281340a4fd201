/*
 * The admin listener: a minimal HTTP/1.1 server on the control loop. Requests are parsed with the
 * same strict parser as client traffic; replies are written as the socket accepts them (a
 * /metrics page can be larger than a socket buffer).
 */
#include "admin/admin.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "cache/cache.h"
#include "core/core.h"
#include "core/json.h"
#include "core/sbuf.h"
#include "net/dns.h"
#include "net/listener.h"
#include "obs/prometheus.h"
#include "proxy/control.h"
#include "proxy/proxy.h"

#define TG_ADMIN_HEAD_MAX 8192
#define TG_ADMIN_TIMEOUT  5000

struct tg_admin {
    struct tg_loop *loop;
    struct tg_addr addr;
    struct tg_watch listen;
};

struct tg_admin_conn {
    struct tg_watch watch;
    struct tg_admin *admin;
    struct tg_timer timer;
    struct tg_sbuf out; /* the reply, once composed */
    size_t sent;
    size_t len;
    char head[TG_ADMIN_HEAD_MAX];
};

static void tg__admin_conn_close(struct tg_admin_conn *ac)
{
    tg_timer_disarm(&ac->timer);
    close(ac->watch.fd);
    tg_sbuf_dispose(&ac->out);
    free(ac);
}

/* Writes what the socket takes; true when the reply is out (or the client is gone). */
static bool tg__admin_write(struct tg_admin_conn *ac)
{
    while (ac->sent < ac->out.len) {
        ssize_t n = write(ac->watch.fd, ac->out.base + ac->sent, ac->out.len - ac->sent);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return false;
        if (n <= 0)
            return true;
        ac->sent += (size_t)n;
    }
    shutdown(ac->watch.fd, SHUT_WR);
    return true;
}

static void tg__admin_reply(struct tg_admin_conn *ac, int status, const char *type,
                            struct tg_sbuf *body, bool head_only)
{
    tg_sbuf_printf(&ac->out,
                   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                   "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                   status, tg_http_status_text(status), type, body->len);
    if (!head_only && body->len > 0)
        tg_sbuf_add(&ac->out, body->base, body->len);
    tg_sbuf_dispose(body);
}

int tg_admin_healthz(struct tg_sbuf *out)
{
    tg_msec_t limit = tg_instance.rt->cf->stuck_after;
    bool ok = true;

    tg_sbuf_printf(out, "{\"status\":");
    for (size_t i = 0; i < tg_instance.num_workers; i++) {
        struct tg_worker *w = &tg_instance.workers[i];
        int64_t beat = __atomic_load_n(&w->beat, __ATOMIC_RELAXED);
        int64_t now = (int64_t)tg_loop_now(tg_instance.control);

        /* a worker that finished draining has left its loop on purpose */
        if (beat != 0 && now - beat > (int64_t)limit && !w->draining) {
            if (ok)
                tg_sbuf_printf(out, "\"stuck\",\"stuck_workers\":[");
            else
                tg_sbuf_add(out, ",", 1);
            tg_sbuf_printf(out, "{\"worker\":%zu,\"last_beat_ms_ago\":%lld}", i,
                           (long long)(now - beat));
            ok = false;
        }
    }
    if (ok)
        tg_sbuf_printf(out, "\"ok\"}\n");
    else
        tg_sbuf_printf(out, "]}\n");
    return ok ? 200 : 503;
}

/* A node is usable when it has an address (static, or at least one DNS answer) and its health
 * does not rule it out (down, ejected, lagging). */
static bool tg__node_resolved(const struct tg_node *n)
{
    return n->dns == NULL || tg_dns_addrs(n->dns) != NULL;
}

static bool tg__node_usable(const struct tg_member *m)
{
    return tg__node_resolved(m->node) && tg_member_usable(m);
}

int tg_admin_readyz(struct tg_sbuf *out)
{
    const struct tg_upstreams *up = &tg_instance.rt->up;
    bool started = atomic_load(&tg_instance.ready);
    bool draining = atomic_load(&tg_instance.stopping);
    bool nodes_ok = true;
    struct tg_sbuf detail = {0};

    tg_sbuf_add(&detail, "{", 1);
    for (size_t i = 0; i < up->num_services; i++) {
        const struct tg_service *svc = &up->services[i];
        size_t usable = 0;

        for (size_t j = 0; j < svc->num_nodes; j++)
            usable += tg__node_usable(&svc->members[j]);
        if (usable == 0)
            nodes_ok = false;
        if (i > 0)
            tg_sbuf_add(&detail, ",", 1);
        tg_sbuf_json(&detail, svc->conf->name, strlen(svc->conf->name));
        tg_sbuf_printf(&detail, ":{\"usable\":%zu,\"nodes\":%zu}", usable, svc->num_nodes);
    }
    tg_sbuf_add(&detail, "}", 1);
    tg_sbuf_printf(out,
                   "{\"ready\":%s,\"checks\":{"
                   "\"started\":{\"ok\":%s%s},"
                   "\"not_draining\":{\"ok\":%s%s},"
                   "\"usable_nodes\":{\"ok\":%s%s,\"services\":%s}}}\n",
                   started && !draining && nodes_ok ? "true" : "false", started ? "true" : "false",
                   started ? "" : ",\"reason\":\"starting\"", draining ? "false" : "true",
                   draining ? ",\"reason\":\"draining\"" : "", nodes_ok ? "true" : "false",
                   nodes_ok ? "" : ",\"reason\":\"a service has no usable node\"", detail.base);
    tg_sbuf_dispose(&detail);
    return started && !draining && nodes_ok ? 200 : 503;
}

static void tg__admin_iso8601(struct tg_sbuf *out, int64_t ms)
{
    char buf[TG_JSON_TIME_LEN];

    tg_json_time(buf, ms / 1000);
    tg_sbuf_printf(out, "\"%.*s.%03dZ\"", TG_JSON_TIME_LEN, buf, (int)(ms % 1000));
}

/* The health part of a node in /status: last error, active probe, head block and, when the node
 * told it, its finalized block. Runs on the control thread, which owns the probe state. */
static void tg__admin_node_health(struct tg_sbuf *out, const struct tg_service *svc,
                                  struct tg_node *n)
{
    const struct tg_probe_state *p = &n->health.probe;
    char err[sizeof(n->health.last_error)];
    uint64_t finalized;
    int64_t err_at;

    pthread_mutex_lock(&n->health.lock);
    memcpy(err, n->health.last_error, sizeof(err));
    err_at = n->health.last_error_at;
    pthread_mutex_unlock(&n->health.lock);
    tg_sbuf_printf(out, ",\"last_error\":");
    if (err_at != 0) {
        tg_sbuf_json(out, err, strlen(err));
        tg_sbuf_printf(out, ",\"last_error_at\":");
        tg__admin_iso8601(out, err_at);
    } else {
        tg_sbuf_printf(out, "null");
    }
    if (svc->conf->health.probe != TG_PROBE_NONE) {
        tg_sbuf_printf(out, ",\"probe\":{\"ok\":%s,\"status\":%d,\"at\":",
                       p->last_at == 0 ? "null"
                       : p->last_ok    ? "true"
                                       : "false",
                       p->last_status);
        if (p->last_at != 0)
            tg__admin_iso8601(out, p->last_at);
        else
            tg_sbuf_printf(out, "null");
        tg_sbuf_printf(out, "}");
    }
    if (svc->conf->health.probe != TG_PROBE_JSONRPC)
        return;
    tg_sbuf_printf(
        out, ",\"head_block\":%llu",
        (unsigned long long)atomic_load_explicit(&n->health.head_block, memory_order_relaxed));
    finalized = atomic_load_explicit(&n->health.finalized_block, memory_order_relaxed);
    if (finalized != 0)
        tg_sbuf_printf(out, ",\"finalized_block\":%llu", (unsigned long long)finalized);
}

int tg_admin_status(struct tg_sbuf *out, const char *version)
{
    const struct tg_runtime *rt = tg_instance.rt;
    const struct tg_upstreams *up = &rt->up;
    struct timespec ts;
    int64_t now;

    clock_gettime(CLOCK_REALTIME, &ts);
    now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    tg_sbuf_printf(out, "{\"version\":\"%s\",\"uptime_seconds\":%.3f,\"started_at\":", version,
                   (double)(now - tg_instance.started_at) / 1000.0);
    tg__admin_iso8601(out, tg_instance.started_at);
    tg_sbuf_printf(out, ",\"workers\":%zu,\"draining\":%s,\"config\":{\"file\":",
                   tg_instance.num_workers, atomic_load(&tg_instance.stopping) ? "true" : "false");
    tg_sbuf_json(out, rt->cf->file, strlen(rt->cf->file));
    tg_sbuf_printf(out, ",\"hash\":\"%s\",\"loaded_at\":", rt->cf->hash);
    tg__admin_iso8601(out, rt->loaded_at);
    tg_sbuf_printf(out, ",\"reloads\":{\"ok\":%llu,\"failed\":%llu}},\"services\":[",
                   (unsigned long long)tg_instance.reloads_ok,
                   (unsigned long long)tg_instance.reloads_failed);
    for (size_t i = 0; i < up->num_services; i++) {
        const struct tg_service *svc = &up->services[i];

        tg_sbuf_printf(out, "%s{\"name\":", i ? "," : "");
        tg_sbuf_json(out, svc->conf->name, strlen(svc->conf->name));
        tg_sbuf_printf(out, ",\"nodes\":[");
        for (size_t j = 0; j < svc->num_nodes; j++) {
            struct tg_node *n = svc->members[j].node;
            const char *label = tg_label_name(TG_LABEL_NODE, n->label);
            uint64_t in_flight = 0, idle = 0, requests = 0, errors = 0, ewma_sum = 0, ewma_n = 0;

            for (size_t k = 0; k < n->num_workers; k++) {
                const struct tg_node_worker *nw = &n->w[k];
                uint64_t e = __atomic_load_n(&nw->ewma_us, __ATOMIC_RELAXED);

                in_flight += __atomic_load_n(&nw->in_flight, __ATOMIC_RELAXED);
                idle += __atomic_load_n(&nw->idle_count, __ATOMIC_RELAXED);
                requests += __atomic_load_n(&nw->requests, __ATOMIC_RELAXED);
                errors += __atomic_load_n(&nw->errors, __ATOMIC_RELAXED);
                if (e != 0) {
                    ewma_sum += e;
                    ewma_n++;
                }
            }
            tg_sbuf_printf(out, "%s{\"address\":", j ? "," : "");
            tg_sbuf_json(out, label, strlen(label));
            tg_sbuf_printf(out, ",\"url\":");
            tg_sbuf_json(out, n->conf->url, strlen(n->conf->url));
            tg_sbuf_printf(
                out,
                ",\"state\":\"%s\",\"weight\":%u,\"tier\":%u,\"in_flight\":%llu,"
                "\"connections\":%d,\"idle_connections\":%llu,\"requests\":%llu,"
                "\"errors\":%llu,\"latency_ewma_ms\":%.3f,\"ejections\":%u",
                tg__node_resolved(n) ? tg_member_state_name(&svc->members[j]) : "unresolved",
                svc->members[j].conf->weight, svc->members[j].conf->tier,
                (unsigned long long)in_flight,
                atomic_load_explicit(&n->health.connections, memory_order_relaxed),
                (unsigned long long)idle, (unsigned long long)requests, (unsigned long long)errors,
                ewma_n ? (double)ewma_sum / (double)ewma_n / 1000.0 : 0.0,
                atomic_load_explicit(&n->health.ejections, memory_order_relaxed));
            tg__admin_node_health(out, svc, n);
            tg_sbuf_printf(out, "}");
        }
        tg_sbuf_printf(out, "]}");
    }
    tg_sbuf_printf(out, "]}\n");
    return 200;
}

static bool tg__path_is(struct tg_str path, const char *lit)
{
    return path.len == strlen(lit) && memcmp(path.base, lit, path.len) == 0;
}

static void tg__admin_serve(struct tg_admin_conn *ac, const struct tg_h1_request *req,
                            struct tg_str req_body)
{
    struct tg_sbuf body = {0};
    struct tg_str path = req->path;
    const char *q = memchr(path.base, '?', path.len);
    bool get = req->method_id == TG_METHOD_GET || req->method_id == TG_METHOD_HEAD;
    bool head_only = req->method_id == TG_METHOD_HEAD;
    const char *json = "application/json";
    int status;

    if (q != NULL)
        path.len = (size_t)(q - path.base);
    if (tg__path_is(path, "/reload")) {
        if (req->method_id != TG_METHOD_POST) {
            tg_sbuf_printf(&body, "{\"error\":{\"status\":405,\"code\":\"method_not_allowed\","
                                  "\"message\":\"use POST /reload\"}}\n");
            tg__admin_reply(ac, 405, json, &body, head_only);
            return;
        }
        status = tg_control_reload(&body);
        tg__admin_reply(ac, status, json, &body, false);
        return;
    }
    if (tg__path_is(path, "/cache/purge")) {
        if (req->method_id != TG_METHOD_POST) {
            tg_sbuf_printf(&body, "{\"error\":{\"status\":405,\"code\":\"method_not_allowed\","
                                  "\"message\":\"use POST /cache/purge\"}}\n");
            tg__admin_reply(ac, 405, json, &body, head_only);
            return;
        }
        status = tg_cache_purge_request(tg_instance.cache, req_body.base, req_body.len, &body);
        tg__admin_reply(ac, status, json, &body, false);
        return;
    }
    if (!get) {
        tg_sbuf_printf(&body, "{\"error\":{\"status\":405,\"code\":\"method_not_allowed\"}}\n");
        tg__admin_reply(ac, 405, json, &body, false);
        return;
    }
    if (tg__path_is(path, "/healthz")) {
        status = tg_admin_healthz(&body);
    } else if (tg__path_is(path, "/readyz")) {
        status = tg_admin_readyz(&body);
    } else if (tg__path_is(path, "/status")) {
        status = tg_admin_status(&body, TG_VERSION);
    } else if (tg__path_is(path, "/metrics")) {
        tg_prometheus_render(&body);
        tg__admin_reply(ac, 200, "text/plain; version=0.0.4; charset=utf-8", &body, head_only);
        return;
    } else {
        tg_sbuf_printf(&body, "{\"error\":{\"status\":404,\"code\":\"not_found\"}}\n");
        status = 404;
    }
    tg__admin_reply(ac, status, json, &body, head_only);
}

static void tg__admin_conn_on_timer(struct tg_loop *loop, struct tg_timer *t)
{
    tg__admin_conn_close(TG_CONTAINER_OF(t, struct tg_admin_conn, timer));
}

static void tg__admin_conn_on_event(struct tg_loop *loop, struct tg_watch *w, unsigned events)
{
    struct tg_admin_conn *ac = TG_CONTAINER_OF(w, struct tg_admin_conn, watch);
    struct tg_http_header headers[64];
    struct tg_h1_request req = {.headers = headers};
    struct tg_h1_limits lim = {2048, TG_ADMIN_HEAD_MAX - 2048, 64};
    ssize_t n;

    if (ac->out.len > 0) {
        if (tg__admin_write(ac))
            tg__admin_conn_close(ac);
        return;
    }
    for (;;) {
        n = read(w->fd, ac->head + ac->len, sizeof(ac->head) - ac->len);
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            tg__admin_conn_close(ac);
            return;
        }
        ac->len += (size_t)n;
        n = tg_h1_parse_request(ac->head, ac->len, &req, &lim);
        if (n == TG_H1_INCOMPLETE && ac->len < sizeof(ac->head))
            continue;
        if (n > 0 && req.body_kind == TG_BODY_LENGTH &&
            req.content_length > sizeof(ac->head) - (size_t)n) {
            n = TG_H1_INVALID;
        } else if (n > 0 && req.body_kind == TG_BODY_LENGTH &&
                   ac->len - (size_t)n < req.content_length) {
            continue; /* the body (ignored) is read so that closing does not reset the reply */
        }
        break;
    }
    if (n > 0 && req.body_kind != TG_BODY_CHUNKED) {
        tg__admin_serve(ac, &req,
                        tg_str_make(ac->head + n, req.body_kind == TG_BODY_LENGTH
                                                      ? (size_t)req.content_length
                                                      : 0));
    } else {
        struct tg_sbuf body = {0};

        tg_sbuf_printf(&body, "{\"error\":{\"status\":400,\"code\":\"bad_request\"}}\n");
        tg__admin_reply(ac, 400, "application/json", &body, false);
    }
    if (tg__admin_write(ac))
        tg__admin_conn_close(ac);
}

static void tg__admin_on_accept(struct tg_loop *loop, struct tg_watch *w, unsigned events)
{
    struct tg_admin *a = TG_CONTAINER_OF(w, struct tg_admin, listen);

    for (int i = 0; i < 16; i++) {
        int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct tg_admin_conn *ac;

        if (fd < 0)
            return;
        ac = tg_calloc(1, sizeof(*ac));
        ac->admin = a;
        ac->watch.fd = fd;
        ac->watch.cb = tg__admin_conn_on_event;
        if (tg_loop_add(loop, &ac->watch) != 0) {
            close(fd);
            free(ac);
            continue;
        }
        tg_timer_arm(loop, &ac->timer, TG_ADMIN_TIMEOUT, tg__admin_conn_on_timer);
    }
}

static int tg__admin_listen(struct tg_admin *a, const struct tg_config *cf, char *err,
                            size_t errlen)
{
    int fd = tg_listen_open(&cf->admin_addr, 128, err, errlen);

    if (fd < 0)
        return -1;
    if (a->listen.fd >= 0) {
        tg_loop_del(a->loop, &a->listen);
        close(a->listen.fd);
    }
    a->listen.fd = fd;
    a->addr = cf->admin_addr;
    if (tg_loop_add_listener(a->loop, &a->listen, false) != 0) {
        snprintf(err, errlen, "cannot watch the admin listener");
        return -1;
    }
    return 0;
}

struct tg_admin *tg_admin_new(struct tg_loop *loop, const struct tg_config *cf, char *err,
                              size_t errlen)
{
    struct tg_admin *a = tg_calloc(1, sizeof(*a));

    a->loop = loop;
    a->listen.cb = tg__admin_on_accept;
    a->listen.fd = -1;
    if (tg__admin_listen(a, cf, err, errlen) != 0) {
        if (a->listen.fd >= 0)
            close(a->listen.fd);
        free(a);
        return NULL;
    }
    return a;
}

int tg_admin_rebind(struct tg_admin *a, const struct tg_config *cf, char *err, size_t errlen)
{
    if (tg_addr_equal(&a->addr, &cf->admin_addr))
        return 0;
    return tg__admin_listen(a, cf, err, errlen);
}

void tg_admin_free(struct tg_admin *a)
{
    if (a == NULL)
        return;
    tg_loop_del(a->loop, &a->listen);
    close(a->listen.fd);
    free(a);
}
