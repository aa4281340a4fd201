/*
 * Prometheus text exposition (format 0.0.4) of the instance: request and upstream series from the
 * per-worker metrics, connection and limit counters, the DNS cache, the log writer, reloads and
 * the standard process metrics.
 */
#include "obs/prometheus.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "auth/keys.h"
#include "cache/cache.h"
#include "core/core.h"
#include "core/sbuf.h"
#include "net/dns.h"
#include "obs/accesslog.h"
#include "obs/metrics.h"
#include "proxy/proxy.h"
#include "ratelimit/ratelimit.h"

/* Sums one tg_worker_stats field over every worker (relaxed reads of single-writer fields). */
#define TG_SUM(field)                                                                              \
    ({                                                                                             \
        uint64_t s_ = 0;                                                                           \
        for (size_t i_ = 0; i_ < tg_instance.num_workers; i_++)                                    \
            s_ += __atomic_load_n(&tg_instance.workers[i_].stats.field, __ATOMIC_RELAXED);         \
        s_;                                                                                        \
    })

static void tg__family(struct tg_sbuf *out, const char *name, const char *type, const char *help)
{
    tg_sbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void tg__scalar(struct tg_sbuf *out, const char *name, const char *type, const char *help,
                       double v)
{
    tg__family(out, name, type, help);
    if (v == (double)(uint64_t)v)
        tg_sbuf_printf(out, "%s %.0f\n", name, v);
    else
        tg_sbuf_printf(out, "%s %.6f\n", name, v);
}

/* A label value, escaped as the format requires (backslash, quote, newline). */
static void tg__label(struct tg_sbuf *out, const char *name, const char *value, bool first)
{
    tg_sbuf_printf(out, "%s%s=\"", first ? "" : ",", name);
    for (const char *p = value; *p != '\0'; p++) {
        if (*p == '\\' || *p == '"')
            tg_sbuf_add(out, "\\", 1);
        if (*p == '\n')
            tg_sbuf_add(out, "\\n", 2);
        else
            tg_sbuf_add(out, p, 1);
    }
    tg_sbuf_add(out, "\"", 1);
}

/* One histogram series: buckets are stored per bucket and exposed cumulative. labels is the
 * already formatted label list without braces ("" for none). */
static void tg__histogram(struct tg_sbuf *out, const char *name, const char *labels,
                          const uint64_t *bucket, const uint64_t *bounds, size_t nb, double scale,
                          double sum)
{
    uint64_t acc = 0;
    const char *sep = labels[0] ? "," : "";

    for (size_t i = 0; i < nb; i++) {
        acc += bucket[i];
        if (scale == 1) /* byte bounds: exact integers (%g would round 1048576) */
            tg_sbuf_printf(out, "%s_bucket{%s%sle=\"%llu\"} %llu\n", name, labels, sep,
                           (unsigned long long)bounds[i], (unsigned long long)acc);
        else
            tg_sbuf_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
                           (double)bounds[i] * scale, (unsigned long long)acc);
    }
    acc += bucket[nb];
    tg_sbuf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                   (unsigned long long)acc);
    tg_sbuf_printf(out, "%s_sum%s%s%s %.6f\n", name, labels[0] ? "{" : "", labels,
                   labels[0] ? "}" : "", sum);
    tg_sbuf_printf(out, "%s_count%s%s%s %llu\n", name, labels[0] ? "{" : "", labels,
                   labels[0] ? "}" : "", (unsigned long long)acc);
}

static void tg__requests(struct tg_sbuf *out, struct tg_metrics *const *ms, size_t n)
{
    struct tg_series *s;
    size_t cnt = tg_metrics_collect(ms, n, TG_SERIES_REQUESTS, &s);

    tg__family(out, "http_requests_total", "counter",
               "Client requests by route, method and status (499: the client left first).");
    for (size_t i = 0; i < cnt; i++) {
        uint64_t k = s[i].key - 1;
        unsigned method = (unsigned)(k >> 16) & 0xff;
        char status[8];

        snprintf(status, sizeof(status), "%u", (unsigned)(k & 0xffff));
        tg_sbuf_add(out, "http_requests_total{", 20);
        tg__label(out, "route", tg_label_name(TG_LABEL_ROUTE, (uint32_t)(k >> 24)), true);
        tg__label(out, "method", method < TG_METHOD__COUNT ? tg_http_method_names[method] : "OTHER",
                  false);
        tg__label(out, "status", status, false);
        tg_sbuf_printf(out, "} %llu\n", (unsigned long long)s[i].count);
    }
    free(s);
}

static void tg__route_histograms(struct tg_sbuf *out, struct tg_metrics *const *ms, size_t n)
{
    static const struct {
        const char *name, *help;
    } fams[3] = {
        {"http_request_duration_seconds", "Time from the request head to the end of the response."},
        {"http_request_size_bytes", "Request bytes received (head and body)."},
        {"http_response_size_bytes", "Response bytes sent (head and body)."},
    };
    uint32_t routes = tg_label_count(TG_LABEL_ROUTE);

    for (int f = 0; f < 3; f++) {
        tg__family(out, fams[f].name, "histogram", fams[f].help);
        for (uint32_t r = 0; r < TG_LABELS_MAX; r++) {
            struct tg_route_hists sum = {0};
            struct tg_sbuf labels = {0};
            bool seen = false;

            if (r >= routes && r != TG_LABEL_OTHER)
                continue;
            for (size_t w = 0; w < n; w++) {
                const struct tg_route_hists *h =
                    __atomic_load_n(&ms[w]->routes[r], __ATOMIC_ACQUIRE);

                if (h == NULL)
                    continue;
                seen = true;
                tg_hist_dur_add(&sum.duration, &h->duration);
                tg_hist_size_add(&sum.request_size, &h->request_size);
                tg_hist_size_add(&sum.response_size, &h->response_size);
            }
            if (!seen)
                continue;
            tg__label(&labels, "route", tg_label_name(TG_LABEL_ROUTE, r), true);
            if (f == 0)
                tg__histogram(out, fams[f].name, labels.base, sum.duration.bucket, tg_dur_bounds_us,
                              TG_DUR_BUCKETS, 1e-6, (double)sum.duration.sum_us / 1e6);
            else if (f == 1)
                tg__histogram(out, fams[f].name, labels.base, sum.request_size.bucket,
                              tg_size_bounds, TG_SIZE_BUCKETS, 1, (double)sum.request_size.sum);
            else
                tg__histogram(out, fams[f].name, labels.base, sum.response_size.bucket,
                              tg_size_bounds, TG_SIZE_BUCKETS, 1, (double)sum.response_size.sum);
            tg_sbuf_dispose(&labels);
        }
    }
}

static void tg__upstream(struct tg_sbuf *out, struct tg_metrics *const *ms, size_t n)
{
    struct tg_series *s;
    size_t cnt = tg_metrics_collect(ms, n, TG_SERIES_UPSTREAM, &s);
    uint32_t services = tg_label_count(TG_LABEL_SERVICE);

    tg__family(out, "tollgate_upstream_requests_total", "counter",
               "Exchanges with nodes by service, node and status (\"error\": no response).");
    for (size_t i = 0; i < cnt; i++) {
        uint64_t k = s[i].key - 1;
        uint32_t node = (uint32_t)(k >> 16);
        char status[8];

        if ((k & 0xffff) == 0)
            snprintf(status, sizeof(status), "error");
        else
            snprintf(status, sizeof(status), "%u", (unsigned)(k & 0xffff));
        tg_sbuf_add(out, "tollgate_upstream_requests_total{", 33);
        tg__label(out, "service",
                  tg_label_name(TG_LABEL_SERVICE, tg_label_parent(TG_LABEL_NODE, node)), true);
        tg__label(out, "node", tg_label_name(TG_LABEL_NODE, node), false);
        tg__label(out, "status", status, false);
        tg_sbuf_printf(out, "} %llu\n", (unsigned long long)s[i].count);
    }
    free(s);

    tg__family(out, "tollgate_upstream_duration_seconds", "histogram",
               "Time from sending a request to a node to the end of its response.");
    for (uint32_t v = 0; v < TG_LABELS_MAX; v++) {
        struct tg_hist_dur sum = {0};
        struct tg_sbuf labels = {0};
        bool seen = false;

        if (v >= services && v != TG_LABEL_OTHER)
            continue;
        for (size_t w = 0; w < n; w++) {
            const struct tg_hist_dur *h = __atomic_load_n(&ms[w]->services[v], __ATOMIC_ACQUIRE);

            if (h != NULL) {
                seen = true;
                tg_hist_dur_add(&sum, h);
            }
        }
        if (!seen)
            continue;
        tg__label(&labels, "service", tg_label_name(TG_LABEL_SERVICE, v), true);
        tg__histogram(out, "tollgate_upstream_duration_seconds", labels.base, sum.bucket,
                      tg_dur_bounds_us, TG_DUR_BUCKETS, 1e-6, (double)sum.sum_us / 1e6);
        tg_sbuf_dispose(&labels);
    }

    tg__family(out, "tollgate_upstream_pool_idle", "gauge",
               "Idle keep-alive connections pooled per node, all workers.");
    for (size_t i = 0; i < tg_instance.rt->up.num_nodes; i++) {
        const struct tg_node *node = tg_instance.rt->up.nodes[i];
        uint64_t idle = 0;

        for (size_t w = 0; w < node->num_workers; w++)
            idle += __atomic_load_n(&node->w[w].idle_count, __ATOMIC_RELAXED);
        tg_sbuf_add(out, "tollgate_upstream_pool_idle{", 28);
        tg__label(out, "service", node->service, true);
        tg__label(out, "node", tg_label_name(TG_LABEL_NODE, node->label), false);
        tg_sbuf_printf(out, "} %llu\n", (unsigned long long)idle);
    }
}

/* Per node: the health state as a one-hot gauge, ejections, and the head block of JSON-RPC
 * nodes. Nodes are those of the current snapshot. */
static void tg__node_health(struct tg_sbuf *out)
{
    static const char *const states[] = {"healthy", "down", "ejected", "lagging", "draining"};
    const struct tg_upstreams *up = &tg_instance.rt->up;

    tg__family(out, "tollgate_upstream_node_state", "gauge",
               "1 for the node's current health state, 0 for the others.");
    for (size_t s = 0; s < up->num_services; s++) {
        for (size_t j = 0; j < up->services[s].num_nodes; j++) {
            const struct tg_member *m = &up->services[s].members[j];
            const char *now = tg_member_state_name(m);

            for (size_t k = 0; k < TG_ARRAY_SIZE(states); k++) {
                tg_sbuf_add(out, "tollgate_upstream_node_state{", 29);
                tg__label(out, "service", m->node->service, true);
                tg__label(out, "node", tg_label_name(TG_LABEL_NODE, m->node->label), false);
                tg__label(out, "state", states[k], false);
                tg_sbuf_printf(out, "} %d\n", strcmp(now, states[k]) == 0);
            }
        }
    }
    tg__family(out, "tollgate_upstream_ejections_total", "counter",
               "Times a node was ejected by passive health checks.");
    for (size_t i = 0; i < up->num_nodes; i++) {
        const struct tg_node *node = up->nodes[i];

        tg_sbuf_add(out, "tollgate_upstream_ejections_total{", 34);
        tg__label(out, "service", node->service, true);
        tg__label(out, "node", tg_label_name(TG_LABEL_NODE, node->label), false);
        tg_sbuf_printf(out, "} %u\n",
                       atomic_load_explicit(&node->health.ejections, memory_order_relaxed));
    }
    tg__family(out, "tollgate_health_probes_total", "counter",
               "Active health probes by result (services with health.active).");
    for (size_t s = 0; s < up->num_services; s++) {
        const struct tg_service *svc = &up->services[s];

        if (svc->conf->health.probe == TG_PROBE_NONE)
            continue;
        for (size_t j = 0; j < svc->num_nodes; j++) {
            const struct tg_node *node = svc->members[j].node;
            const struct tg_probe_state *p = &node->health.probe;

            for (int ok = 1; ok >= 0; ok--) {
                tg_sbuf_add(out, "tollgate_health_probes_total{", 29);
                tg__label(out, "service", node->service, true);
                tg__label(out, "node", tg_label_name(TG_LABEL_NODE, node->label), false);
                tg__label(out, "result", ok ? "ok" : "failed", false);
                tg_sbuf_printf(out, "} %llu\n",
                               (unsigned long long)(ok ? p->probes_ok : p->probes_failed));
            }
        }
    }
    tg__family(out, "tollgate_upstream_head_block", "gauge",
               "Head block of JSON-RPC nodes as last probed (0 = unknown).");
    for (size_t s = 0; s < up->num_services; s++) {
        const struct tg_service *svc = &up->services[s];

        if (svc->conf->health.probe != TG_PROBE_JSONRPC)
            continue;
        for (size_t j = 0; j < svc->num_nodes; j++) {
            const struct tg_node *node = svc->members[j].node;

            tg_sbuf_add(out, "tollgate_upstream_head_block{", 29);
            tg__label(out, "service", node->service, true);
            tg__label(out, "node", tg_label_name(TG_LABEL_NODE, node->label), false);
            tg_sbuf_printf(out, "} %llu\n",
                           (unsigned long long)atomic_load_explicit(&node->health.head_block,
                                                                    memory_order_relaxed));
        }
    }
}

/* concurrency.max: requests shed per service, and the time admitted or shed ones waited. */
static void tg__admission(struct tg_sbuf *out, struct tg_metrics *const *ms, size_t n)
{
    const struct tg_upstreams *up = &tg_instance.rt->up;
    struct tg_hist_dur wait = {0};

    tg__family(out, "tollgate_shed_requests_total", "counter",
               "Requests answered 503 because the service's concurrency queue was full or "
               "their wait ran out.");
    for (size_t s = 0; s < up->num_services; s++) {
        uint32_t label = up->services[s].label;
        uint64_t v = 0;

        for (size_t i = 0; i < n; i++)
            v += __atomic_load_n(&ms[i]->shed[label], __ATOMIC_RELAXED);
        tg_sbuf_add(out, "tollgate_shed_requests_total{", 29);
        tg__label(out, "service", up->services[s].conf->name, true);
        tg_sbuf_printf(out, "} %llu\n", (unsigned long long)v);
    }
    for (size_t i = 0; i < n; i++)
        tg_hist_dur_add(&wait, &ms[i]->queue_wait);
    tg__family(out, "tollgate_upstream_queue_wait_seconds", "histogram",
               "Time requests waited for a concurrency slot (concurrency.queue).");
    tg__histogram(out, "tollgate_upstream_queue_wait_seconds", "", wait.bucket, tg_dur_bounds_us,
                  TG_DUR_BUCKETS, 1e-6, (double)wait.sum_us / 1e6);
}

static void tg__retries(struct tg_sbuf *out)
{
    static const char *const reasons[] = {"connect_failure", "reset", "timeout", "status",
                                          "jsonrpc_error"};
    static const char *const hedge_outcomes[] = {"won", "lost", "failed", "skipped"};

    tg__family(out, "tollgate_upstream_retries_total", "counter",
               "Attempts sent to another node after a failure, by what failed.");
    for (size_t k = 0; k < TG_ARRAY_SIZE(reasons); k++)
        tg_sbuf_printf(out, "tollgate_upstream_retries_total{reason=\"%s\"} %llu\n", reasons[k],
                       (unsigned long long)TG_SUM(retries[k]));
    tg__family(out, "tollgate_upstream_hedges_total", "counter",
               "Hedged attempts by outcome: won (answered first), lost (cancelled), failed, "
               "skipped (no node or no budget left).");
    for (size_t k = 0; k < TG_ARRAY_SIZE(hedge_outcomes); k++)
        tg_sbuf_printf(out, "tollgate_upstream_hedges_total{outcome=\"%s\"} %llu\n",
                       hedge_outcomes[k], (unsigned long long)TG_SUM(hedges[k]));
    tg__scalar(out, "tollgate_retry_budget_exhausted_total", "counter",
               "Retries not made because the service's retry budget was spent.",
               (double)TG_SUM(retry_budget_exhausted));
    tg__scalar(out, "tollgate_upstream_unavailable_total", "counter",
               "Requests answered 503 because no node of the service was usable.",
               (double)TG_SUM(no_usable_node));
}

static void tg__limits(struct tg_sbuf *out)
{
    static const char *reasons[] = {"max_connections", "max_request_line", "max_header_bytes",
                                    "max_body",        "timeout",          "bad_request"};
    uint64_t v[6] = {TG_SUM(rejected_too_many_connections),
                     TG_SUM(rejected_uri_too_long),
                     TG_SUM(rejected_header_too_large),
                     TG_SUM(rejected_body_too_large),
                     TG_SUM(rejected_timeout),
                     TG_SUM(rejected_bad_request)};

    tg__family(out, "tollgate_rejected_requests_total", "counter",
               "Requests and connections refused by a limit.");
    for (size_t i = 0; i < TG_ARRAY_SIZE(reasons); i++)
        tg_sbuf_printf(out, "tollgate_rejected_requests_total{reason=\"%s\"} %llu\n", reasons[i],
                       (unsigned long long)v[i]);
}

static void tg__process(struct tg_sbuf *out)
{
    struct rusage ru;
    struct rlimit rl;
    long page = sysconf(_SC_PAGESIZE), rss = 0, fds = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;

    if (f != NULL) {
        long size;

        if (fscanf(f, "%ld %ld", &size, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    while (d != NULL && (de = readdir(d)) != NULL)
        fds += de->d_name[0] != '.';
    if (d != NULL) {
        closedir(d);
        fds--; /* the directory's own descriptor */
    }
    getrusage(RUSAGE_SELF, &ru);
    getrlimit(RLIMIT_NOFILE, &rl);
    tg__scalar(out, "process_cpu_seconds_total", "counter", "User and system CPU time spent.",
               (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                   (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
    tg__scalar(out, "process_resident_memory_bytes", "gauge", "Resident memory size.",
               (double)rss * (double)page);
    tg__scalar(out, "process_open_fds", "gauge", "Open file descriptors.", (double)fds);
    tg__scalar(out, "process_max_fds", "gauge", "Limit of open file descriptors.",
               (double)rl.rlim_cur);
    tg__scalar(out, "process_start_time_seconds", "gauge",
               "Start time of the process since the epoch.",
               (double)tg_instance.started_at / 1000.0);
}

/* A counter family with a direction label: in (from clients) and out (to clients). */
static void tg__directions(struct tg_sbuf *out, const char *name, const char *help, uint64_t in,
                           uint64_t to)
{
    tg__family(out, name, "counter", help);
    tg_sbuf_printf(out, "%s{direction=\"in\"} %llu\n%s{direction=\"out\"} %llu\n", name,
                   (unsigned long long)in, name, (unsigned long long)to);
}

/* The series of the policy table, one family per kind: (what the 24-bit id in the middle of the
 * key names, what the low 24 bits name). Auth reasons and cache results are fixed lists, not
 * interned labels. */
static const struct tg__policy_family {
    int kind;
    const char *name, *help;
    const char *outer;
    int outer_kind;
    const char *inner;
    int inner_kind;           /* -1: a fixed list */
    const char *const *fixed; /* ... of num_fixed names */
    unsigned num_fixed;
} tg__policy_families[] = {
    {TG_POLICY_AUTH, "tollgate_auth_failures_total",
     "Requests refused by authentication (401, 403) by route and reason.", "route", TG_LABEL_ROUTE,
     "reason", -1, tg_auth_reasons, TG_AUTH_REASONS},
    {TG_POLICY_LIMIT, "tollgate_ratelimited_total",
     "Requests refused by a rate limit or quota (429) by route and limit.", "route", TG_LABEL_ROUTE,
     "limit", TG_LABEL_LIMIT, NULL, 0},
    {TG_POLICY_RPC_CALLS, "tollgate_jsonrpc_requests_total",
     "JSON-RPC calls sent to a service, by method class (its jsonrpc.weights patterns, or other).",
     "service", TG_LABEL_SERVICE, "method_class", TG_LABEL_RPC, NULL, 0},
    {TG_POLICY_RPC_ERRORS, "tollgate_jsonrpc_errors_total",
     "JSON-RPC errors by service and kind: answered by tollgate (parse_error, invalid_request, "
     "method_not_allowed) or by a node (the classified kind).",
     "service", TG_LABEL_SERVICE, "kind", TG_LABEL_RPC, NULL, 0},
    {TG_POLICY_CACHE, "tollgate_cache_requests_total",
     "Requests to routes with a cache, by how the cache served them: hit, miss (went upstream), "
     "stale, coalesced (waited for another request's fetch), bypass (not cacheable).",
     "route", TG_LABEL_ROUTE, "result", -1, tg_cache_results, TG_CACHE_RESULTS},
};

static void tg__policy(struct tg_sbuf *out, struct tg_metrics *const *ms, size_t n)
{
    struct tg_series *s;
    size_t cnt = tg_metrics_collect(ms, n, TG_SERIES_POLICY, &s);

    for (size_t f = 0; f < TG_ARRAY_SIZE(tg__policy_families); f++) {
        const struct tg__policy_family *pf = &tg__policy_families[f];

        tg__family(out, pf->name, "counter", pf->help);
        for (size_t i = 0; i < cnt; i++) {
            uint64_t k = s[i].key - 1;
            uint32_t inner = (uint32_t)(k & 0xffffff), outer = (uint32_t)((k >> 24) & 0xffffff);

            if ((int)(k >> 48) != pf->kind)
                continue;
            tg_sbuf_printf(out, "%s{", pf->name);
            tg__label(out, pf->outer, tg_label_name(pf->outer_kind, outer), true);
            tg__label(out, pf->inner,
                      pf->inner_kind >= 0     ? tg_label_name(pf->inner_kind, inner)
                      : inner < pf->num_fixed ? pf->fixed[inner]
                                              : "other",
                      false);
            tg_sbuf_printf(out, "} %llu\n", (unsigned long long)s[i].count);
        }
    }
    free(s);
}

/* The response cache's store (its requests: tg__policy). */
static void tg__cache(struct tg_sbuf *out)
{
    struct tg_cache_stats st = {0};

    if (tg_instance.cache != NULL)
        tg_cache_stats(tg_instance.cache, &st);
    tg__scalar(out, "tollgate_cache_bytes", "gauge",
               "Bytes the response cache holds (what the allocator gave for its entries).",
               (double)st.bytes);
    tg__scalar(out, "tollgate_cache_entries", "gauge", "Entries in the response cache.",
               (double)st.entries);
    tg__scalar(out, "tollgate_cache_evictions_total", "counter",
               "Entries evicted from the response cache to make room (cache.max_size).",
               (double)st.evictions);
}

/* Identity and limits: the key table and the cluster store (refusals: tg__policy). */
static void tg__identity(struct tg_sbuf *out)
{
    struct tg_identity_stats id;
    struct tg_rl_sync_stats sy = {0};
    struct tg_rl_table *rl = tg_instance.rt ? tg_instance.rt->rl : NULL;

    tg_identity_stats(&id);
    tg__family(out, "tollgate_keys_loaded", "gauge",
               "API keys in the table the workers use, by where they come from.");
    tg_sbuf_printf(out, "tollgate_keys_loaded{store=\"%s\"} %llu\n", id.store,
                   (unsigned long long)id.keys_loaded);
    tg__scalar(out, "tollgate_keystore_errors_total", "counter",
               "Key store loads that failed (the last good keys stay in use).",
               (double)id.store_errors);
    tg__scalar(out, "tollgate_jwks_errors_total", "counter",
               "JWT key loads or fetches that failed (the last good keys stay in use).",
               (double)id.jwks_errors);
    if (rl != NULL) {
        tg_rl_sync_stats(rl, &sy);
        tg__scalar(out, "tollgate_ratelimit_keys", "gauge",
                   "Rate-limit counters held (ratelimit.max_keys bounds them).",
                   (double)tg_rl_table_size(rl));
        tg__scalar(out, "tollgate_ratelimit_evictions_total", "counter",
                   "Rate-limit counters evicted to stay within ratelimit.max_keys.",
                   (double)tg_rl_table_evictions(rl));
    }
    tg__scalar(out, "tollgate_ratelimit_store_errors_total", "counter",
               "Failed connections or sync rounds with the rate-limit store (Redis).",
               (double)sy.errors);
    tg__scalar(out, "tollgate_ratelimit_store_up", "gauge",
               "1 while the last sync round with the rate-limit store succeeded.",
               sy.up ? 1.0 : 0.0);
    tg__family(out, "tollgate_ratelimit_store_sync_seconds", "histogram",
               "Duration of a sync round with the rate-limit store.");
    tg__histogram(out, "tollgate_ratelimit_store_sync_seconds", "", sy.bucket, tg_dur_bounds_us,
                  TG_DUR_BUCKETS, 1e-6, (double)sy.sum_us / 1e6);
}

/* JSON-RPC batch sizes (calls and errors: tg__policy). */
static void tg__jsonrpc(struct tg_sbuf *out, struct tg_metrics *const *ms, size_t n)
{
    uint64_t batch[TG_BATCH_BUCKETS + 1] = {0}, sum = 0;

    for (size_t i = 0; i < n; i++) {
        for (size_t b = 0; b <= TG_BATCH_BUCKETS; b++)
            batch[b] += __atomic_load_n(&ms[i]->rpc_batch[b], __ATOMIC_RELAXED);
        sum += __atomic_load_n(&ms[i]->rpc_batch_sum, __ATOMIC_RELAXED);
    }
    tg__family(out, "tollgate_jsonrpc_batch_size", "histogram",
               "Calls per JSON-RPC request (1 for a single call).");
    tg__histogram(out, "tollgate_jsonrpc_batch_size", "", batch, tg_batch_bounds, TG_BATCH_BUCKETS,
                  1, (double)sum);
}

void tg_prometheus_render(struct tg_sbuf *out)
{
    size_t n = tg_instance.num_workers;
    struct tg_metrics **ms = tg_calloc(n + 1, sizeof(*ms));
    uint64_t overflow = 0;

    for (size_t i = 0; i < n; i++) {
        ms[i] = &tg_instance.workers[i].metrics;
        overflow += __atomic_load_n(&ms[i]->series_overflow, __ATOMIC_RELAXED);
    }
    tg__requests(out, ms, n);
    tg__route_histograms(out, ms, n);
    tg__scalar(out, "tollgate_active_connections", "gauge", "Client connections open now.",
               (double)atomic_load(&tg_instance.connections));
    tg__scalar(out, "tollgate_connections_total", "counter", "Client connections accepted.",
               (double)TG_SUM(connections_total));
    tg__limits(out);
    tg__upstream(out, ms, n);
    tg__node_health(out);
    tg__retries(out);
    tg__admission(out, ms, n);
    tg__policy(out, ms, n);
    tg__cache(out);
    tg__identity(out);
    tg__jsonrpc(out, ms, n);
    tg__scalar(out, "tollgate_websocket_connections", "gauge",
               "WebSocket tunnels open now (the node answered 101).",
               (double)(TG_SUM(ws_opened) - TG_SUM(ws_closed)));
    tg__directions(out, "tollgate_websocket_bytes_total",
                   "Bytes through WebSocket tunnels that closed, from (in) and to (out) clients.",
                   TG_SUM(ws_bytes_in), TG_SUM(ws_bytes_out));
    tg__directions(out, "tollgate_websocket_messages_total",
                   "JSON-RPC WebSocket messages from (in) and to (out) clients.",
                   TG_SUM(ws_messages_in), TG_SUM(ws_messages_out));
    tg__scalar(out, "tollgate_upstream_connect_errors_total", "counter",
               "Failed or timed-out connects to nodes, and resets before a response.",
               (double)TG_SUM(upstream_connect_errors));
    tg__scalar(out, "tollgate_upstream_timeouts_total", "counter",
               "Responses that did not come within timeouts.response.",
               (double)TG_SUM(upstream_timeouts));
    tg__scalar(out, "tollgate_upstream_bad_responses_total", "counter",
               "Malformed upstream responses (answered 502).",
               (double)TG_SUM(upstream_bad_responses));
    tg__scalar(out, "tollgate_upstream_connections_opened_total", "counter",
               "New connections to nodes.", (double)TG_SUM(upstream_connections_opened));
    tg__scalar(out, "tollgate_upstream_connections_reused_total", "counter",
               "Requests sent on a pooled connection.", (double)TG_SUM(upstream_reused));
    tg__family(out, "tollgate_dns_refresh_total", "counter",
               "Resolutions of node names by result (a failure keeps the last good answer).");
    tg_sbuf_printf(out, "tollgate_dns_refresh_total{result=\"ok\"} %llu\n",
                   (unsigned long long)(tg_instance.dns ? tg_dns_refresh_ok(tg_instance.dns) : 0));
    tg_sbuf_printf(
        out, "tollgate_dns_refresh_total{result=\"error\"} %llu\n",
        (unsigned long long)(tg_instance.dns ? tg_dns_refresh_fail(tg_instance.dns) : 0));
    tg__scalar(out, "tollgate_log_lines_dropped_total", "counter",
               "Log lines dropped because the log writer could not keep up.",
               (double)tg_logwriter_dropped_total());
    tg__family(out, "tollgate_config_reloads_total", "counter", "Configuration reloads by result.");
    tg_sbuf_printf(out,
                   "tollgate_config_reloads_total{result=\"success\"} %llu\n"
                   "tollgate_config_reloads_total{result=\"failure\"} %llu\n",
                   (unsigned long long)tg_instance.reloads_ok,
                   (unsigned long long)tg_instance.reloads_failed);
    tg__scalar(out, "tollgate_metrics_series_overflow_total", "counter",
               "Increments lost because a worker's series table was full.", (double)overflow);
    tg__family(out, "tollgate_build_info", "gauge", "Version of the running binary.");
    tg_sbuf_printf(out, "tollgate_build_info{version=\"%s\"} 1\n", TG_VERSION);
    tg__process(out);
    free(ms);
}
