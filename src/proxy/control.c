/*
 * The control thread (DESIGN §2): start-up, signals, configuration reload, DNS, the admin
 * listener and the shutdown sequence. Workers never wait on it; it talks to them by posting to
 * their loops.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "admin/admin.h"
#include "core/core.h"
#include "core/sbuf.h"
#include "event/cpus.h"
#include "net/dns.h"
#include "obs/accesslog.h"
#include "obs/log.h"
#include "proxy/control.h"
#include "proxy/proxy.h"
#include "upstream/probe.h"

struct tg_control {
    struct tg_loop *loop;
    struct tg_watch sig;
    struct tg_timer deadline;
    struct tg_timer dns_wait;
    tg_msec_t dns_wait_until;
    int signals;
    bool forced;
};

static struct tg_control tg__ctl;

static struct tg_config *tg__load(const char *path, struct tg_config_errors *errs)
{
    struct tg_config *cf = tg_config_load(path, errs);

    if (cf == NULL && errs->num == 0) {
        errs->msgs = tg_calloc(1, sizeof(char *));
        errs->msgs[0] = tg_strdup("cannot load the configuration");
        errs->num = 1;
    }
    return cf;
}

static bool tg__needs_dns(const struct tg_config *cf)
{
    for (size_t i = 0; i < cf->num_services; i++) {
        for (size_t j = 0; j < cf->services[i].num_nodes; j++) {
            const struct tg_node_conf *n = &cf->services[i].nodes[j];

            if (n->scheme != TG_SCHEME_UNIX && !n->host_is_ip)
                return true;
        }
    }
    return false;
}

/* The resolver is created by the first configuration that names a host; its settings are read
 * then and stay (a reload cannot move the cache to other servers). */
static int tg__ensure_dns(const struct tg_config *cf, char *err, size_t errlen)
{
    struct tg_dns_opts o = {0};

    if (tg_instance.dns != NULL || !tg__needs_dns(cf))
        return 0;
    o.servers = cf->dns_servers.items;
    o.num_servers = cf->dns_servers.num;
    o.min_ttl = cf->dns_min_ttl;
    o.max_ttl = cf->dns_max_ttl;
    o.timeout = cf->dns_timeout;
    tg_instance.dns = tg_dns_new(tg__ctl.loop, &o, err, errlen);
    return tg_instance.dns != NULL ? 0 : -1;
}

static void tg__reply_error(struct tg_sbuf *reply, const char *what, const char *detail)
{
    tg_sbuf_printf(reply, "{\"status\":\"error\",\"errors\":[");
    tg_sbuf_json(reply, what, strlen(what));
    if (detail != NULL) {
        tg_sbuf_add(reply, ",", 1);
        tg_sbuf_json(reply, detail, strlen(detail));
    }
    tg_sbuf_add(reply, "]}\n", 3);
}

int tg_control_reload(struct tg_sbuf *reply)
{
    struct tg_runtime *old = tg_instance.rt, *rt;
    struct tg_config_errors errs = {0};
    struct tg_sbuf warnings = {0};
    struct tg_listen_plan plan = {0};
    size_t want;
    struct tg_config *cf;
    char err[512];

    if (atomic_load(&tg_instance.stopping)) {
        tg_instance.reloads_failed++;
        tg__reply_error(reply, "draining: the process is shutting down", NULL);
        return 409;
    }
    cf = tg__load(tg_instance.config_path, &errs);
    if (cf == NULL) {
        tg_instance.reloads_failed++;
        tg_sbuf_printf(reply, "{\"status\":\"error\",\"errors\":[");
        for (size_t i = 0; i < errs.num; i++) {
            tg_log(TG_LOG_ERROR, "reload: %s", errs.msgs[i]);
            if (i > 0)
                tg_sbuf_add(reply, ",", 1);
            tg_sbuf_json(reply, errs.msgs[i], strlen(errs.msgs[i]));
        }
        tg_sbuf_add(reply, "]}\n", 3);
        tg_log(TG_LOG_ERROR, "reload of %s failed; the running configuration stays",
               tg_instance.config_path);
        tg_config_errors_dispose(&errs);
        return 400;
    }
    rt = NULL;
    if (tg__ensure_dns(cf, err, sizeof(err)) == 0)
        rt = tg_runtime_new(cf, tg_instance.dns, old, tg_instance.num_workers, err, sizeof(err));
    if (rt == NULL ||
        tg_listen_plan_make(&plan, cf, old->cf, tg_instance.num_workers, err, sizeof(err)) != 0 ||
        tg_admin_rebind(tg_instance.admin, cf, err, sizeof(err)) != 0) {
        tg_instance.reloads_failed++;
        tg_log(TG_LOG_ERROR, "reload of %s failed: %s; the running configuration stays",
               tg_instance.config_path, err);
        tg__reply_error(reply, err, NULL);
        tg_listen_plan_dispose(&plan);
        tg_runtime_drop(rt);
        tg_config_drop(cf);
        return 400;
    }
    tg_config_drop(cf);
    tg_sbuf_add(&warnings, "[", 1);
    want = cf->workers ? cf->workers : tg_cpus_usable();
    if (want != tg_instance.num_workers) {
        static const char w[] = "workers: the worker count changes on restart only";
        tg_sbuf_json(&warnings, w, sizeof(w) - 1);
        tg_log(TG_LOG_WARN, "%s", w);
    }
    tg_sbuf_add(&warnings, "]", 1);
    tg_log_set_level(cf->log_level);
    tg_runtime_commit(rt);
    tg_worker_switch_all(rt, old, &plan);
    tg_instance.rt = rt;
    tg_runtime_drop(old);
    tg_instance.reloads_ok++;
    tg_log(TG_LOG_INFO, "configuration reloaded from %s (hash %s)", cf->file, cf->hash);
    tg_sbuf_printf(reply, "{\"status\":\"ok\",\"hash\":\"%s\",\"warnings\":%s}\n", cf->hash,
                   warnings.base);
    tg_sbuf_dispose(&warnings);
    return 200;
}

static void tg__control_deadline(struct tg_loop *loop, struct tg_timer *t)
{
    tg__ctl.forced = true;
    tg_loop_stop(loop);
}

/* drain_delay is over: close listeners and let in-flight requests finish, for at most
 * shutdown.timeout. */
static void tg__control_drain(struct tg_loop *loop, struct tg_timer *t)
{
    for (size_t i = 0; i < tg_instance.num_workers; i++)
        tg_worker_drain(&tg_instance.workers[i]);
    tg_timer_arm(loop, t, tg_instance.rt->cf->shutdown_timeout, tg__control_deadline);
}

static void tg__control_on_signal(struct tg_loop *loop, struct tg_watch *w, unsigned events)
{
    struct signalfd_siginfo si;

    while (read(w->fd, &si, sizeof(si)) == sizeof(si)) {
        if (si.ssi_signo == SIGHUP) {
            struct tg_sbuf reply = {0};

            tg_log(TG_LOG_INFO, "SIGHUP: reloading %s", tg_instance.config_path);
            tg_control_reload(&reply);
            tg_sbuf_dispose(&reply);
            continue;
        }
        if (++tg__ctl.signals > 1) {
            tg_log(TG_LOG_WARN, "second signal, exiting now");
            tg__ctl.forced = true;
            tg_loop_stop(loop);
            return;
        }
        /* /readyz turns 503 now; serving goes on for drain_delay so that load balancers and
         * Kubernetes endpoints notice before the listeners close. */
        tg_log(TG_LOG_INFO, "%s, draining in %llu ms", strsignal((int)si.ssi_signo),
               (unsigned long long)tg_instance.rt->cf->drain_delay);
        atomic_store(&tg_instance.stopping, true);
        tg_timer_arm(loop, &tg__ctl.deadline, tg_instance.rt->cf->drain_delay, tg__control_drain);
    }
}

/* Waits (on the control loop) until every named node has an address or dns.timeout passed, so
 * the first requests do not fail only because the resolver has not answered yet. */
static void tg__control_dns_wait(struct tg_loop *loop, struct tg_timer *t)
{
    const struct tg_upstreams *up = &tg_instance.rt->up;

    for (size_t i = 0; i < up->num_nodes; i++) {
        if (up->nodes[i]->dns != NULL && tg_dns_addrs(up->nodes[i]->dns) == NULL &&
            tg_loop_now(loop) < tg__ctl.dns_wait_until) {
            tg_timer_arm(loop, t, 10, tg__control_dns_wait);
            return;
        }
    }
    tg_loop_stop(loop);
}

/* Counts, then logs, the requests a forced shutdown cut off. */
static long tg__cut_requests(size_t started)
{
    long cut = 0;

    for (size_t i = 0; i < started; i++) {
        for (struct tg_conn *c = tg_instance.workers[i].conns; c != NULL; c = c->next)
            cut += c->phase == TG_CONN_TXN;
    }
    return cut;
}

int tg_control_run(const char *path, const char *version)
{
    struct tg_config_errors errs = {0};
    struct tg_config *cf;
    struct tg_listen_plan plan = {0};
    sigset_t set;
    char err[512];
    int rc = 0;
    size_t nworkers, started = 0;
    struct timespec ts;

    cf = tg__load(path, &errs);
    if (cf == NULL) {
        /* as `tollgate check` prints them: one FILE:LINE:COL: message per line */
        for (size_t i = 0; i < errs.num; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        tg_config_errors_dispose(&errs);
        return 2;
    }
    tg_log_set_level(cf->log_level);
    clock_gettime(CLOCK_REALTIME, &ts);
    tg_instance.started_at = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    tg_instance.config_path = path;
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* inherited by every thread started below */

    tg__ctl.loop = tg_loop_new();
    tg_instance.control = tg__ctl.loop;
    nworkers = cf->workers ? cf->workers : tg_cpus_usable();
    if (tg__ensure_dns(cf, err, sizeof(err)) != 0) {
        tg_log(TG_LOG_ERROR, "dns: %s", err);
        return 1;
    }
    tg_instance.rt = tg_runtime_new(cf, tg_instance.dns, NULL, nworkers, err, sizeof(err));
    tg_config_drop(cf);
    if (tg_instance.rt == NULL) {
        tg_log(TG_LOG_ERROR, "%s", err);
        return 1;
    }
    cf = tg_instance.rt->cf;
    tg_runtime_commit(tg_instance.rt);
    tg__ctl.dns_wait_until = tg_loop_now(tg__ctl.loop) + cf->dns_timeout;
    tg_timer_arm(tg__ctl.loop, &tg__ctl.dns_wait, 0, tg__control_dns_wait);
    tg_loop_run(tg__ctl.loop);

    if (tg_listen_plan_make(&plan, cf, NULL, nworkers, err, sizeof(err)) != 0) {
        tg_log(TG_LOG_ERROR, "%s", err);
        return 1;
    }
    if (tg_logwriter_start(nworkers, cf->access_buffer, STDOUT_FILENO) != 0) {
        tg_log(TG_LOG_ERROR, "cannot start the log writer thread");
        return 1;
    }
    tg_instance.workers = tg_calloc(nworkers, sizeof(*tg_instance.workers));
    for (size_t i = 0; i < nworkers; i++) {
        struct tg_worker *w = &tg_instance.workers[i];

        if (tg_worker_init(w, (uint32_t)i, tg_instance.rt, &plan, err, sizeof(err)) != 0) {
            tg_log(TG_LOG_ERROR, "%s", err);
            return 1;
        }
        w->access = tg_logwriter_ring(i);
        tg_instance.num_workers++;
    }
    tg_listen_plan_dispose(&plan);

    tg_instance.admin = tg_admin_new(tg__ctl.loop, cf, err, sizeof(err));
    if (tg_instance.admin == NULL) {
        tg_log(TG_LOG_ERROR, "admin: %s", err);
        return 1;
    }
    tg__ctl.sig.fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    tg__ctl.sig.cb = tg__control_on_signal;
    if (tg__ctl.sig.fd < 0 || tg_loop_add_listener(tg__ctl.loop, &tg__ctl.sig, false) != 0)
        tg_fatal("signalfd: %s", strerror(errno));
    for (size_t i = 0; i < nworkers; i++) {
        if (tg_worker_start(&tg_instance.workers[i]) != 0)
            tg_fatal("cannot start worker thread");
        started++;
    }
    for (size_t i = 0; i < cf->num_listens; i++)
        tg_log(TG_LOG_INFO, "listening on %s%s", cf->listens[i].addr_text,
               cf->listens[i].tls_cert ? " (tls)" : "");
    tg_log(TG_LOG_INFO, "tollgate %s: %zu worker%s, config %s (%s), admin on %s", version, nworkers,
           nworkers == 1 ? "" : "s", cf->file, cf->hash, cf->admin_addr_text);
    atomic_store(&tg_instance.ready, true);
    tg_probe_start(tg__ctl.loop);

    /* The control loop runs until every worker has drained (or the deadline forced it). */
    tg_loop_run(tg__ctl.loop);
    tg_probe_stop();
    for (size_t i = 0; i < started; i++) {
        if (tg__ctl.forced)
            tg_worker_stop(&tg_instance.workers[i]);
        pthread_join(tg_instance.workers[i].thread, NULL);
    }
    {
        long cut = tg__cut_requests(started);

        if (cut > 0) {
            tg_log(TG_LOG_ERROR, "shutdown timeout cut off %ld request%s", cut,
                   cut == 1 ? "" : "s");
            rc = 1;
        }
    }
    for (size_t i = 0; i < started; i++)
        tg_worker_dispose(&tg_instance.workers[i]);
    free(tg_instance.workers);
    tg_admin_free(tg_instance.admin);
    tg_runtime_drop(tg_instance.rt);
    tg_dns_free(tg_instance.dns);
    close(tg__ctl.sig.fd);
    tg_loop_free(tg__ctl.loop);
    tg_log(TG_LOG_INFO, "stopped");
    tg_logwriter_stop();
    return rc;
}
