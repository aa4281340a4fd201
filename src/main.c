/*
 * tollgate command line: run, check, graph, version (DESIGN §5).
 * Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration.
 */
#include <ares.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <yaml.h>

#include "admin/admin.h"
#include "config/config.h"
#include "core/core.h"
#include "event/cpus.h"
#include "net/dns.h"
#include "net/listener.h"
#include "proxy/proxy.h"

#define TG_VERSION "0.1.0"

static const char usage[] =
    "usage: tollgate [run] -c FILE     start the gateway\n"
    "       tollgate check -c FILE     validate a configuration; errors as FILE:LINE:COL: message\n"
    "       tollgate graph -c FILE     print a Mermaid flowchart of the configuration\n"
    "       tollgate version           print versions\n"
    "       tollgate --help            this text\n"
    "\n"
    "Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration.\n";

static struct tg_config *tg__load(const char *path)
{
    struct tg_config_errors errs = {0};
    struct tg_config *cf = tg_config_load(path, &errs);

    for (size_t i = 0; i < errs.num; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    if (cf == NULL && errs.num == 0)
        fprintf(stderr, "%s: cannot load configuration\n", path);
    tg_config_errors_dispose(&errs);
    return cf;
}

/* The control thread: signals, DNS refresh, and the shutdown sequence. */
struct tg_control {
    struct tg_loop *loop;
    struct tg_watch sig;
    struct tg_timer deadline;
    struct tg_timer dns_wait;
    struct tg_runtime *rt;
    tg_msec_t dns_wait_until;
    int signals;
    bool forced;
};

static void tg__control_deadline(struct tg_loop *loop, struct tg_timer *t)
{
    struct tg_control *ctl = TG_CONTAINER_OF(t, struct tg_control, deadline);

    ctl->forced = true;
    tg_loop_stop(loop);
}

/* drain_delay is over: close listeners and let in-flight requests finish, for at most
 * shutdown.timeout. */
static void tg__control_drain(struct tg_loop *loop, struct tg_timer *t)
{
    struct tg_control *ctl = TG_CONTAINER_OF(t, struct tg_control, deadline);

    for (size_t i = 0; i < tg_instance.num_workers; i++)
        tg_worker_drain(&tg_instance.workers[i]);
    tg_timer_arm(loop, t, ctl->rt->cf->shutdown_timeout, tg__control_deadline);
}

static void tg__control_on_signal(struct tg_loop *loop, struct tg_watch *w, unsigned events)
{
    struct tg_control *ctl = TG_CONTAINER_OF(w, struct tg_control, sig);
    struct signalfd_siginfo si;

    while (read(w->fd, &si, sizeof(si)) == sizeof(si)) {
        if (si.ssi_signo == SIGHUP) {
            fprintf(stderr, "tollgate: SIGHUP: configuration reload is not available yet\n");
            continue;
        }
        if (++ctl->signals > 1) {
            fprintf(stderr, "tollgate: second signal, exiting now\n");
            ctl->forced = true;
            tg_loop_stop(loop);
            return;
        }
        /* /readyz turns 503 now; serving goes on for drain_delay so that load balancers and
         * Kubernetes endpoints notice before the listeners close. */
        fprintf(stderr, "tollgate: %s, draining in %llu ms\n", strsignal((int)si.ssi_signo),
                (unsigned long long)ctl->rt->cf->drain_delay);
        atomic_store(&tg_instance.stopping, true);
        tg_timer_arm(loop, &ctl->deadline, ctl->rt->cf->drain_delay, tg__control_drain);
    }
}

/* Waits (on the control loop) until every named node has an address or dns.timeout passed, so
 * the first requests do not fail only because the resolver has not answered yet. */
static void tg__control_dns_wait(struct tg_loop *loop, struct tg_timer *t)
{
    struct tg_control *ctl = TG_CONTAINER_OF(t, struct tg_control, dns_wait);
    const struct tg_upstreams *up = &ctl->rt->up;

    for (size_t i = 0; i < up->num_nodes; i++) {
        if (up->nodes[i]->dns != NULL && tg_dns_addrs(up->nodes[i]->dns) == NULL &&
            tg_loop_now(loop) < ctl->dns_wait_until) {
            tg_timer_arm(loop, t, 10, tg__control_dns_wait);
            return;
        }
    }
    tg_loop_stop(loop);
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

static int tg__run(const char *path)
{
    struct tg_config *cf = tg__load(path);
    struct tg_control ctl = {0};
    struct tg_dns *dns;
    struct tg_admin *admin;
    struct tg_dns_opts dopts = {0};
    sigset_t set;
    char err[512];
    int *shared = NULL, rc = 0;
    size_t nworkers, started = 0;

    if (cf == NULL)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* inherited by every thread started below */

    ctl.loop = tg_loop_new();
    dopts.servers = cf->dns_servers.items;
    dopts.num_servers = cf->dns_servers.num;
    dopts.min_ttl = cf->dns_min_ttl;
    dopts.max_ttl = cf->dns_max_ttl;
    dopts.timeout = cf->dns_timeout;
    dns = NULL;
    if (tg__needs_dns(cf)) {
        dns = tg_dns_new(ctl.loop, &dopts, err, sizeof(err));
        if (dns == NULL) {
            fprintf(stderr, "tollgate: dns: %s\n", err);
            return 1;
        }
    }
    ctl.rt = tg_runtime_new(cf, dns, err, sizeof(err));
    tg_config_drop(cf);
    if (ctl.rt == NULL) {
        fprintf(stderr, "tollgate: %s\n", err);
        return 1;
    }
    cf = ctl.rt->cf;
    ctl.dns_wait_until = tg_loop_now(ctl.loop) + cf->dns_timeout;
    tg_timer_arm(ctl.loop, &ctl.dns_wait, 0, tg__control_dns_wait);
    tg_loop_run(ctl.loop);

    shared = tg_calloc(cf->num_listens, sizeof(*shared));
    for (size_t i = 0; i < cf->num_listens; i++) {
        shared[i] = -1;
        if (tg_addr_is_unix(&cf->listens[i].addr)) {
            shared[i] = tg_listen_open(&cf->listens[i].addr, 4096, err, sizeof(err));
            if (shared[i] < 0) {
                fprintf(stderr, "tollgate: %s\n", err);
                return 1;
            }
        }
    }
    nworkers = cf->workers ? cf->workers : tg_cpus_usable();
    tg_instance.workers = tg_calloc(nworkers, sizeof(*tg_instance.workers));
    for (size_t i = 0; i < nworkers; i++) {
        if (tg_worker_init(&tg_instance.workers[i], (uint32_t)i, ctl.rt, shared, err,
                           sizeof(err)) != 0) {
            fprintf(stderr, "tollgate: %s\n", err);
            return 1;
        }
        tg_instance.num_workers++;
    }
    for (size_t i = 0; i < cf->num_listens; i++) {
        if (shared[i] >= 0)
            close(shared[i]);
    }
    free(shared);

    admin = tg_admin_new(ctl.loop, ctl.rt, err, sizeof(err));
    if (admin == NULL) {
        fprintf(stderr, "tollgate: admin: %s\n", err);
        return 1;
    }
    ctl.sig.fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    ctl.sig.cb = tg__control_on_signal;
    if (ctl.sig.fd < 0 || tg_loop_add_listener(ctl.loop, &ctl.sig, false) != 0)
        tg_fatal("signalfd: %s", strerror(errno));
    for (size_t i = 0; i < nworkers; i++) {
        if (tg_worker_start(&tg_instance.workers[i]) != 0)
            tg_fatal("cannot start worker thread");
        started++;
    }
    for (size_t i = 0; i < cf->num_listens; i++)
        fprintf(stderr, "tollgate: listening on %s%s\n", cf->listens[i].addr_text,
                cf->listens[i].tls_cert ? " (tls)" : "");
    fprintf(stderr, "tollgate %s: %zu worker%s, config %s (%s)\n", TG_VERSION, nworkers,
            nworkers == 1 ? "" : "s", cf->file, cf->hash);

    /* The control loop runs until every worker has drained (or the deadline forced it). */
    tg_instance.control = ctl.loop;
    tg_loop_run(ctl.loop);
    for (size_t i = 0; i < started; i++) {
        if (ctl.forced)
            tg_worker_stop(&tg_instance.workers[i]);
        pthread_join(tg_instance.workers[i].thread, NULL);
    }
    {
        long cut = 0;
        for (size_t i = 0; i < started; i++) {
            for (struct tg_conn *c = tg_instance.workers[i].conns; c != NULL; c = c->next)
                cut += c->phase == TG_CONN_TXN;
        }
        if (cut > 0) {
            fprintf(stderr, "tollgate: shutdown timeout cut off %ld request%s\n", cut,
                    cut == 1 ? "" : "s");
            rc = 1;
        }
    }
    for (size_t i = 0; i < started; i++)
        tg_worker_dispose(&tg_instance.workers[i]);
    free(tg_instance.workers);
    tg_admin_free(admin);
    tg_runtime_drop(ctl.rt);
    tg_dns_free(dns);
    close(ctl.sig.fd);
    tg_loop_free(ctl.loop);
    fprintf(stderr, "tollgate: stopped\n");
    return rc;
}

static int tg__check(const char *path)
{
    struct tg_config *cf = tg__load(path);

    if (cf == NULL)
        return 2;
    printf("%s: ok (%zu listener%s, %zu service%s, %zu route%s)\n", path, cf->num_listens,
           cf->num_listens == 1 ? "" : "s", cf->num_services, cf->num_services == 1 ? "" : "s",
           cf->num_routes, cf->num_routes == 1 ? "" : "s");
    tg_config_drop(cf);
    return 0;
}

static int tg__graph(const char *path)
{
    struct tg_config *cf = tg__load(path);

    if (cf == NULL)
        return 2;
    tg_config_graph(cf, stdout);
    tg_config_drop(cf);
    return 0;
}

int main(int argc, char **argv)
{
    const char *cmd = "run", *file = NULL;
    int i = 1;

    if (argc > 1 && argv[1][0] != '-') {
        cmd = argv[1];
        i = 2;
    }
    for (; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            file = argv[++i];
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        } else {
            fprintf(stderr, "tollgate: unexpected argument '%s'\n%s", argv[i], usage);
            return 2;
        }
    }
    if (strcmp(cmd, "version") == 0) {
        printf("tollgate %s (%s, c-ares %s, libyaml %s)\n", TG_VERSION,
               OpenSSL_version(OPENSSL_VERSION), ares_version(NULL), yaml_get_version_string());
        return 0;
    }
    if (strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(cmd, "run") != 0 && strcmp(cmd, "check") != 0 && strcmp(cmd, "graph") != 0) {
        fprintf(stderr, "tollgate: unknown command '%s'\n%s", cmd, usage);
        return 2;
    }
    if (file == NULL) {
        fprintf(stderr, "tollgate: %s needs -c FILE\n%s", cmd, usage);
        return 2;
    }
    if (strcmp(cmd, "check") == 0)
        return tg__check(file);
    if (strcmp(cmd, "graph") == 0)
        return tg__graph(file);
    return tg__run(file);
}
