#include "admin/admin.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/core.h"
#include "net/listener.h"
#include "proxy/proxy.h"

#define TG_ADMIN_HEAD_MAX 8192
#define TG_ADMIN_TIMEOUT  5000

struct tg_admin {
    struct tg_loop *loop;
    struct tg_runtime *rt;
    struct tg_watch listen;
};

struct tg_admin_conn {
    struct tg_watch watch;
    struct tg_admin *admin;
    struct tg_timer timer;
    size_t len;
    char head[TG_ADMIN_HEAD_MAX];
};

static void tg__admin_conn_close(struct tg_admin_conn *ac)
{
    tg_timer_disarm(&ac->timer);
    close(ac->watch.fd);
    free(ac);
}

static void tg__admin_reply(struct tg_admin_conn *ac, int status, const char *type,
                            const char *body, size_t len)
{
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     status, tg_http_status_text(status), type, len);
    struct iovec iov[2] = {{head, (size_t)n}, {(void *)body, len}};

    /* Replies are small and the socket is fresh, so one blocking-free write suffices; a client
     * that cannot take a few kilobytes gets a truncated reply. */
    if (writev(ac->watch.fd, iov, 2) < 0) {
        /* nothing to do: the connection is closed below */
    }
    shutdown(ac->watch.fd, SHUT_WR);
}

/* Sums one counter over every worker. Workers write their own fields without atomics; a
 * relaxed read of a 64-bit aligned field is tear-free on the platforms we build for. */
#define TG_SUM(field)                                                                              \
    ({                                                                                             \
        uint64_t s_ = 0;                                                                           \
        for (size_t i_ = 0; i_ < tg_instance.num_workers; i_++)                                    \
            s_ += __atomic_load_n(&tg_instance.workers[i_].stats.field, __ATOMIC_RELAXED);         \
        s_;                                                                                        \
    })

static size_t tg__admin_metrics(char *out, size_t cap)
{
    size_t n = 0;
    static const char *classes[] = {"", "1xx", "2xx", "3xx", "4xx", "5xx"};

#define TG_EMIT(...)                                                                               \
    do {                                                                                           \
        int r_ = snprintf(out + n, cap - n, __VA_ARGS__);                                          \
        if (r_ > 0 && (size_t)r_ < cap - n)                                                        \
            n += (size_t)r_;                                                                       \
    } while (0)
    TG_EMIT("# HELP tollgate_connections_total Client connections accepted.\n"
            "# TYPE tollgate_connections_total counter\ntollgate_connections_total %lu\n",
            (unsigned long)TG_SUM(connections_total));
    TG_EMIT("# HELP tollgate_active_connections Client connections open now.\n"
            "# TYPE tollgate_active_connections gauge\ntollgate_active_connections %d\n",
            atomic_load(&tg_instance.connections));
    TG_EMIT("# HELP tollgate_requests_total Requests whose head was parsed.\n"
            "# TYPE tollgate_requests_total counter\ntollgate_requests_total %lu\n",
            (unsigned long)TG_SUM(requests_total));
    TG_EMIT("# HELP tollgate_responses_total Responses sent, by status class.\n"
            "# TYPE tollgate_responses_total counter\n");
    for (int c = 1; c <= 5; c++) {
        uint64_t v = 0;
        for (size_t i = 0; i < tg_instance.num_workers; i++)
            v += __atomic_load_n(&tg_instance.workers[i].stats.responses_by_class[c],
                                 __ATOMIC_RELAXED);
        TG_EMIT("tollgate_responses_total{class=\"%s\"} %lu\n", classes[c], (unsigned long)v);
    }
    TG_EMIT("# HELP tollgate_rejected_requests_total Requests and connections refused by a "
            "limit.\n# TYPE tollgate_rejected_requests_total counter\n"
            "tollgate_rejected_requests_total{reason=\"max_connections\"} %lu\n"
            "tollgate_rejected_requests_total{reason=\"max_request_line\"} %lu\n"
            "tollgate_rejected_requests_total{reason=\"max_header_bytes\"} %lu\n"
            "tollgate_rejected_requests_total{reason=\"max_body\"} %lu\n"
            "tollgate_rejected_requests_total{reason=\"timeout\"} %lu\n"
            "tollgate_rejected_requests_total{reason=\"bad_request\"} %lu\n",
            (unsigned long)TG_SUM(rejected_too_many_connections),
            (unsigned long)TG_SUM(rejected_uri_too_long),
            (unsigned long)TG_SUM(rejected_header_too_large),
            (unsigned long)TG_SUM(rejected_body_too_large), (unsigned long)TG_SUM(rejected_timeout),
            (unsigned long)TG_SUM(rejected_bad_request));
    TG_EMIT(
        "# HELP tollgate_upstream_requests_total Requests sent to nodes.\n"
        "# TYPE tollgate_upstream_requests_total counter\n"
        "tollgate_upstream_requests_total %lu\n"
        "# HELP tollgate_upstream_connect_errors_total Failed or timed-out connects and "
        "resets before a response.\n# TYPE tollgate_upstream_connect_errors_total counter\n"
        "tollgate_upstream_connect_errors_total %lu\n"
        "# HELP tollgate_upstream_timeouts_total Responses that did not come in time.\n"
        "# TYPE tollgate_upstream_timeouts_total counter\ntollgate_upstream_timeouts_total "
        "%lu\n"
        "# HELP tollgate_upstream_bad_responses_total Malformed upstream responses (502).\n"
        "# TYPE tollgate_upstream_bad_responses_total counter\n"
        "tollgate_upstream_bad_responses_total %lu\n"
        "# HELP tollgate_upstream_connections_opened_total New connections to nodes.\n"
        "# TYPE tollgate_upstream_connections_opened_total counter\n"
        "tollgate_upstream_connections_opened_total %lu\n"
        "# HELP tollgate_upstream_connections_reused_total Requests sent on a pooled "
        "connection.\n# TYPE tollgate_upstream_connections_reused_total counter\n"
        "tollgate_upstream_connections_reused_total %lu\n",
        (unsigned long)TG_SUM(upstream_requests), (unsigned long)TG_SUM(upstream_connect_errors),
        (unsigned long)TG_SUM(upstream_timeouts), (unsigned long)TG_SUM(upstream_bad_responses),
        (unsigned long)TG_SUM(upstream_connections_opened), (unsigned long)TG_SUM(upstream_reused));
#undef TG_EMIT
    return n;
}

static void tg__admin_serve(struct tg_admin_conn *ac, struct tg_str path)
{
    static char metrics[16384];
    const char *q = memchr(path.base, '?', path.len);

    if (q != NULL)
        path.len = (size_t)(q - path.base);
    if (TG_STR_IEQ(path, "/healthz")) {
        tg__admin_reply(ac, 200, "application/json", "{\"status\":\"ok\"}\n", 16);
    } else if (TG_STR_IEQ(path, "/readyz")) {
        if (atomic_load(&tg_instance.stopping))
            tg__admin_reply(ac, 503, "application/json",
                            "{\"ready\":false,\"reason\":\"draining\"}\n", 36);
        else
            tg__admin_reply(ac, 200, "application/json", "{\"ready\":true}\n", 15);
    } else if (TG_STR_IEQ(path, "/metrics")) {
        size_t n = tg__admin_metrics(metrics, sizeof(metrics));
        tg__admin_reply(ac, 200, "text/plain; version=0.0.4", metrics, n);
    } else {
        tg__admin_reply(ac, 404, "application/json",
                        "{\"error\":{\"status\":404,\"code\":\"not_found\"}}\n", 44);
    }
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

    for (;;) {
        n = read(w->fd, ac->head + ac->len, sizeof(ac->head) - ac->len);
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0)
            break;
        ac->len += (size_t)n;
        n = tg_h1_parse_request(ac->head, ac->len, &req, &lim);
        if (n == TG_H1_INCOMPLETE && ac->len < sizeof(ac->head))
            continue;
        if (n > 0 && (req.method_id == TG_METHOD_GET || req.method_id == TG_METHOD_HEAD))
            tg__admin_serve(ac, req.path);
        else if (n > 0)
            tg__admin_reply(ac, 405, "application/json",
                            "{\"error\":{\"status\":405,\"code\":\"method_not_allowed\"}}\n", 53);
        else
            tg__admin_reply(ac, 400, "application/json",
                            "{\"error\":{\"status\":400,\"code\":\"bad_request\"}}\n", 46);
        break;
    }
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

struct tg_admin *tg_admin_new(struct tg_loop *loop, struct tg_runtime *rt, char *err, size_t errlen)
{
    struct tg_admin *a = tg_calloc(1, sizeof(*a));

    a->loop = loop;
    a->rt = rt;
    a->listen.cb = tg__admin_on_accept;
    a->listen.fd = tg_listen_open(&rt->cf->admin_addr, 128, err, errlen);
    if (a->listen.fd < 0 || tg_loop_add_listener(loop, &a->listen, false) != 0) {
        if (a->listen.fd >= 0)
            close(a->listen.fd);
        free(a);
        return NULL;
    }
    return a;
}

void tg_admin_free(struct tg_admin *a)
{
    if (a == NULL)
        return;
    tg_loop_del(a->loop, &a->listen);
    close(a->listen.fd);
    free(a);
}
