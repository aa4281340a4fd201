/*
 * DNS cache unit tests against a tiny DNS server running in a thread of the test (UDP on
 * 127.0.0.1, a random port). It answers A queries for a few test names with a configurable
 * address and TTL, answers AAAA with no data, NXDOMAIN for other names, and can be told to stop
 * answering or to answer SERVFAIL. The cache runs on a tg_loop in the test thread.
 */
#include "net/dns.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/core.h"
#include "unit.h"

enum srv_mode { SRV_ANSWER, SRV_SILENT, SRV_SERVFAIL };

struct srv_name {
    const char *name;
    uint32_t ip; /* host order */
    uint32_t ttl;
    unsigned a_queries;
};

static struct {
    int fd;
    uint16_t port;
    pthread_t thread;
    pthread_mutex_t lock;
    atomic_bool stop;
    /* guarded by lock */
    int mode;
    struct srv_name names[4];
} srv = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void srv_set(int idx, const char *name, uint32_t ip, uint32_t ttl)
{
    pthread_mutex_lock(&srv.lock);
    srv.names[idx].name = name;
    srv.names[idx].ip = ip;
    srv.names[idx].ttl = ttl;
    pthread_mutex_unlock(&srv.lock);
}

static void srv_mode(int mode)
{
    pthread_mutex_lock(&srv.lock);
    srv.mode = mode;
    pthread_mutex_unlock(&srv.lock);
}

static unsigned srv_queries(int idx)
{
    unsigned n;

    pthread_mutex_lock(&srv.lock);
    n = srv.names[idx].a_queries;
    pthread_mutex_unlock(&srv.lock);
    return n;
}

/* Decodes the question name at q (uncompressed, as resolvers send it) into out; returns the
 * offset just past it, or 0 when malformed. */
static size_t srv_qname(const unsigned char *q, size_t len, size_t off, char *out, size_t outlen)
{
    size_t o = 0;

    while (off < len && q[off] != 0) {
        size_t l = q[off++];

        if (l > 63 || off + l > len || o + l + 2 > outlen)
            return 0;
        if (o > 0)
            out[o++] = '.';
        memcpy(out + o, q + off, l);
        o += l;
        off += l;
    }
    if (off >= len)
        return 0;
    out[o] = '\0';
    return off + 1;
}

static size_t srv_reply(const unsigned char *q, size_t len, unsigned char *r)
{
    char name[256];
    size_t end = srv_qname(q, len, 12, name, sizeof(name)), n;
    unsigned qtype, rcode = 3; /* NXDOMAIN unless the name is known */
    struct srv_name *hit = NULL;

    if (len < 12 || end == 0 || end + 4 > len || q[5] != 1)
        return 0;
    qtype = (unsigned)q[end] << 8 | q[end + 1];
    pthread_mutex_lock(&srv.lock);
    if (srv.mode == SRV_SILENT) {
        pthread_mutex_unlock(&srv.lock);
        return 0;
    }
    for (int i = 0; i < 4; i++)
        if (srv.names[i].name != NULL && strcasecmp(srv.names[i].name, name) == 0)
            hit = &srv.names[i];
    if (hit != NULL) {
        rcode = 0;
        if (qtype == 1)
            hit->a_queries++;
    }
    if (srv.mode == SRV_SERVFAIL)
        rcode = 2;
    n = end + 4;
    memcpy(r, q, n);             /* id, flags, counts and the question, then patched */
    r[2] = 0x84 | (q[2] & 0x01); /* QR, AA, RD copied */
    r[3] = 0x80 | rcode;         /* RA */
    r[6] = r[7] = r[8] = r[9] = r[10] = r[11] = 0;
    if (rcode == 0 && qtype == 1) {
        unsigned char rr[16] = {0xc0, 12, 0, 1, 0, 1};

        rr[6] = (unsigned char)(hit->ttl >> 24);
        rr[7] = (unsigned char)(hit->ttl >> 16);
        rr[8] = (unsigned char)(hit->ttl >> 8);
        rr[9] = (unsigned char)hit->ttl;
        rr[11] = 4;
        rr[12] = (unsigned char)(hit->ip >> 24);
        rr[13] = (unsigned char)(hit->ip >> 16);
        rr[14] = (unsigned char)(hit->ip >> 8);
        rr[15] = (unsigned char)hit->ip;
        memcpy(r + n, rr, sizeof(rr));
        n += sizeof(rr);
        r[7] = 1;
    }
    pthread_mutex_unlock(&srv.lock);
    return n;
}

static void *srv_main(void *arg)
{
    unsigned char q[512], r[600];

    while (!atomic_load(&srv.stop)) {
        struct pollfd p = {.fd = srv.fd, .events = POLLIN};
        struct sockaddr_storage from;
        socklen_t flen = sizeof(from);
        ssize_t len;
        size_t n;

        if (poll(&p, 1, 50) <= 0)
            continue;
        len = recvfrom(srv.fd, q, sizeof(q), 0, (struct sockaddr *)&from, &flen);
        if (len <= 0)
            continue;
        n = srv_reply(q, (size_t)len, r);
        if (n > 0)
            sendto(srv.fd, r, n, 0, (struct sockaddr *)&from, flen);
    }
    return NULL;
}

static int srv_start(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t slen = sizeof(sin);

    srv.fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (srv.fd < 0 || bind(srv.fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
        getsockname(srv.fd, (struct sockaddr *)&sin, &slen) != 0)
        return -1;
    srv.port = ntohs(sin.sin_port);
    return pthread_create(&srv.thread, NULL, srv_main, NULL) == 0 ? 0 : -1;
}

static void srv_stop(void)
{
    atomic_store(&srv.stop, true);
    pthread_join(srv.thread, NULL);
    close(srv.fd);
}

/* Runs the loop until pred(arg) holds or ms elapse; returns the elapsed milliseconds. */
struct run_ctx {
    struct tg_timer t;
    tg_msec_t start, deadline;
    bool (*pred)(void *);
    void *arg;
};

static void run_tick(struct tg_loop *loop, struct tg_timer *t)
{
    struct run_ctx *r = TG_CONTAINER_OF(t, struct run_ctx, t);

    if ((r->pred != NULL && r->pred(r->arg)) || tg_loop_now(loop) >= r->deadline)
        tg_loop_stop(loop);
    else
        tg_timer_arm(loop, t, 10, run_tick);
}

static tg_msec_t run_until(struct tg_loop *loop, bool (*pred)(void *), void *arg, tg_msec_t ms)
{
    struct run_ctx r = {.pred = pred, .arg = arg};
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    r.start = (tg_msec_t)ts.tv_sec * 1000 + (tg_msec_t)ts.tv_nsec / 1000000;
    r.deadline = tg_loop_now(loop) + ms;
    if (pred == NULL || !pred(arg)) {
        tg_timer_arm(loop, &r.t, 10, run_tick);
        tg_loop_run(loop);
        tg_timer_disarm(&r.t);
    }
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (tg_msec_t)ts.tv_sec * 1000 + (tg_msec_t)ts.tv_nsec / 1000000 - r.start;
}

static bool has_answer(void *arg)
{
    return tg_dns_addrs(arg) != NULL;
}

struct want_ip {
    const struct tg_dns_name *n;
    uint32_t ip;
};

static uint32_t first_ip(const struct tg_dns_name *n)
{
    const struct tg_dns_addrs *a = tg_dns_addrs(n);
    const struct sockaddr_in *sin;

    if (a == NULL || a->addrs[0].ss.ss_family != AF_INET)
        return 0;
    sin = (const struct sockaddr_in *)&a->addrs[0].ss;
    return ntohl(sin->sin_addr.s_addr);
}

static bool has_ip(void *arg)
{
    struct want_ip *w = arg;

    return first_ip(w->n) == w->ip;
}

static bool has_error(void *arg)
{
    return tg_dns_name_error(arg) != NULL;
}

static struct tg_dns *new_dns(struct tg_loop *loop, tg_msec_t min_ttl, tg_msec_t max_ttl)
{
    char server[64], err[256];
    const char *servers[] = {server};
    struct tg_dns_opts o = {.servers = servers,
                            .num_servers = 1,
                            .min_ttl = min_ttl,
                            .max_ttl = max_ttl,
                            .timeout = 200,
                            .tries = 1};
    struct tg_dns *d;

    snprintf(server, sizeof(server), "127.0.0.1:%u", (unsigned)srv.port);
    d = tg_dns_new(loop, &o, err, sizeof(err));
    if (d == NULL)
        fprintf(stderr, "tg_dns_new: %s\n", err);
    return d;
}

#define IP(a, b, c, d) ((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 | (d))

TEST(test_bad_servers)
{
    struct tg_loop *loop = tg_loop_new();
    const char *bad[] = {"dns.example", "1.2.3.4:0", "1.2.3.4:99999", "[::1", "1.2.3.4:53x", ""};
    char err[256];

    for (size_t i = 0; i < TG_ARRAY_SIZE(bad); i++) {
        struct tg_dns_opts o = {.servers = &bad[i], .num_servers = 1};
        struct tg_dns *d = tg_dns_new(loop, &o, err, sizeof(err));

        ASSERT(d == NULL);
        tg_dns_free(d);
        ASSERT(strstr(err, "dns.servers") != NULL);
    }
    const char *good[] = {"127.0.0.1", "127.0.0.1:5353", "::1", "[::1]:53"};
    struct tg_dns_opts o = {.servers = good, .num_servers = TG_ARRAY_SIZE(good)};
    struct tg_dns *d = tg_dns_new(loop, &o, err, sizeof(err));

    ASSERT(d != NULL);
    tg_dns_free(d);
    /* No servers: /etc/resolv.conf. */
    o = (struct tg_dns_opts){0};
    d = tg_dns_new(loop, &o, err, sizeof(err));
    ASSERT(d != NULL);
    tg_dns_free(d);
    tg_loop_free(loop);
}

TEST(test_first_resolution)
{
    struct tg_loop *loop = tg_loop_new();
    struct tg_dns *d = new_dns(loop, 1000, 300000);
    struct tg_dns_name *n, *n2, *bad;
    const struct tg_dns_addrs *a;

    ASSERT(d != NULL);
    if (d == NULL)
        return;
    srv_mode(SRV_ANSWER);
    srv_set(0, "first.tollgate.test", IP(10, 1, 2, 3), 60);
    n = tg_dns_register(d, "first.tollgate.test", 8545);
    ASSERT(tg_dns_register(d, "first.tollgate.test", 8545) == n);
    n2 = tg_dns_register(d, "first.tollgate.test", 443);
    ASSERT(n2 != n);
    bad = tg_dns_register(d, "nothing.tollgate.test", 80);
    ASSERT(tg_dns_addrs(n) == NULL);
    run_until(loop, has_answer, n, 2000);
    run_until(loop, has_answer, n2, 2000);
    run_until(loop, has_error, bad, 2000);

    a = tg_dns_addrs(n);
    ASSERT(a != NULL);
    if (a != NULL) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->addrs[0].ss;

        ASSERT_EQ(1, a->num);
        ASSERT_EQ(AF_INET, sin->sin_family);
        ASSERT_EQ(IP(10, 1, 2, 3), ntohl(sin->sin_addr.s_addr));
        ASSERT_EQ(8545, ntohs(sin->sin_port));
        ASSERT_EQ(sizeof(struct sockaddr_in), a->addrs[0].len);
    }
    a = tg_dns_addrs(n2);
    ASSERT(a != NULL && ntohs(((const struct sockaddr_in *)&a->addrs[0].ss)->sin_port) == 443);
    ASSERT_STREQ("first.tollgate.test", tg_dns_name_host(n));
    ASSERT_EQ(8545, tg_dns_name_port(n));
    ASSERT(tg_dns_name_error(n) == NULL);
    ASSERT_EQ(0, tg_dns_name_failures(n));

    /* NXDOMAIN: no answer, a reason, a failure count. */
    ASSERT(tg_dns_addrs(bad) == NULL);
    ASSERT(tg_dns_name_error(bad) != NULL);
    ASSERT(tg_dns_name_failures(bad) >= 1);
    ASSERT(tg_dns_refresh_ok(d) >= 2);
    ASSERT(tg_dns_refresh_fail(d) >= 1);

    /* /etc/hosts answers without a query, possibly before tg_dns_register() returns. */
    n = tg_dns_register(d, "localhost", 9000);
    run_until(loop, has_answer, n, 2000);
    a = tg_dns_addrs(n);
    ASSERT(a != NULL && a->num >= 1);

    /* Free with queries possibly in flight. */
    tg_dns_register(d, "late.tollgate.test", 80);
    tg_dns_free(d);
    tg_loop_free(loop);
}

/* A worker thread reading answers while the control loop swaps them. */
static atomic_bool reader_stop;
static void *reader_main(void *arg)
{
    const struct tg_dns_name *n = arg;
    unsigned long reads = 0;

    while (!atomic_load(&reader_stop)) {
        const struct tg_dns_addrs *a = tg_dns_addrs(n);

        if (a != NULL) {
            struct tg_addr copy = a->addrs[reads % a->num]; /* what a worker does */

            if (copy.len == 0)
                abort();
        }
        reads++;
    }
    return NULL;
}

TEST(test_refresh_picks_up_change)
{
    struct tg_loop *loop = tg_loop_new();
    struct tg_dns *d = new_dns(loop, 200, 300000);
    struct tg_dns_name *n;
    const struct tg_dns_addrs *old;
    struct want_ip w;
    tg_msec_t took;
    pthread_t reader;

    ASSERT(d != NULL);
    if (d == NULL)
        return;
    srv_mode(SRV_ANSWER);
    srv_set(0, "change.tollgate.test", IP(10, 0, 0, 1), 1);
    n = tg_dns_register(d, "change.tollgate.test", 80);
    run_until(loop, has_answer, n, 2000);
    old = tg_dns_addrs(n);
    ASSERT(old != NULL);
    if (old == NULL)
        goto out;
    atomic_store(&reader_stop, false);
    pthread_create(&reader, NULL, reader_main, n);

    /* Same answer after the TTL: the pointer does not change. */
    run_until(loop, NULL, NULL, 1300);
    ASSERT(tg_dns_addrs(n) == old);
    ASSERT(tg_dns_refresh_ok(d) >= 2);

    srv_set(0, "change.tollgate.test", IP(10, 0, 0, 2), 1);
    w = (struct want_ip){n, IP(10, 0, 0, 2)};
    took = run_until(loop, has_ip, &w, 3000);
    ASSERT_EQ(IP(10, 0, 0, 2), first_ip(n));
    ASSERT(took <= 1500); /* the TTL is 1 s */
    /* The replaced answer stays readable during the grace period. */
    ASSERT_EQ(1, old->num);
    ASSERT_EQ(IP(10, 0, 0, 1),
              ntohl(((const struct sockaddr_in *)&old->addrs[0].ss)->sin_addr.s_addr));
    atomic_store(&reader_stop, true);
    pthread_join(reader, NULL);
out:
    tg_dns_free(d);
    tg_loop_free(loop);
}

struct fails_at_least {
    const struct tg_dns *d;
    uint64_t n;
};

static bool fails_reach(void *arg)
{
    struct fails_at_least *f = arg;

    return tg_dns_refresh_fail(f->d) >= f->n;
}

TEST(test_failures_keep_answer)
{
    struct tg_loop *loop = tg_loop_new();
    struct tg_dns *d = new_dns(loop, 100, 300000);
    struct tg_dns_name *n;
    const struct tg_dns_addrs *good;
    struct fails_at_least f;
    struct want_ip w;
    uint64_t fails;

    ASSERT(d != NULL);
    if (d == NULL)
        return;
    srv_mode(SRV_ANSWER);
    srv_set(0, "flaky.tollgate.test", IP(10, 9, 9, 9), 1);
    n = tg_dns_register(d, "flaky.tollgate.test", 80);
    run_until(loop, has_answer, n, 2000);
    good = tg_dns_addrs(n);
    ASSERT(good != NULL);

    /* Silent server: the refresh after 1 s times out (200 ms), then retries back off from
     * min_ttl: 100 ms, 200 ms, 400 ms... */
    srv_mode(SRV_SILENT);
    f = (struct fails_at_least){d, 2};
    run_until(loop, fails_reach, &f, 3000);
    ASSERT(tg_dns_refresh_fail(d) >= 2);
    ASSERT(tg_dns_addrs(n) == good);
    ASSERT_EQ(IP(10, 9, 9, 9), first_ip(n));
    ASSERT(tg_dns_name_failures(n) >= 2);
    ASSERT(tg_dns_name_error(n) != NULL && strstr(tg_dns_name_error(n), "imeout") != NULL);

    /* SERVFAIL: same. */
    srv_mode(SRV_SERVFAIL);
    fails = tg_dns_refresh_fail(d);
    f = (struct fails_at_least){d, fails + 1};
    run_until(loop, fails_reach, &f, 3000);
    ASSERT(tg_dns_refresh_fail(d) > fails);
    ASSERT(tg_dns_addrs(n) == good);
    ASSERT(tg_dns_name_error(n) != NULL && strstr(tg_dns_name_error(n), "imeout") == NULL);

    /* The server recovers with a new address: the retry picks it up and the failures reset. */
    srv_set(0, "flaky.tollgate.test", IP(10, 9, 9, 10), 1);
    srv_mode(SRV_ANSWER);
    w = (struct want_ip){n, IP(10, 9, 9, 10)};
    run_until(loop, has_ip, &w, 4000);
    ASSERT_EQ(IP(10, 9, 9, 10), first_ip(n));
    ASSERT_EQ(0, tg_dns_name_failures(n));
    ASSERT(tg_dns_name_error(n) == NULL);
    tg_dns_free(d);
    tg_loop_free(loop);
}

TEST(test_ttl_clamping)
{
    struct tg_loop *loop = tg_loop_new();
    struct tg_dns *d = new_dns(loop, 400, 600);
    struct tg_dns_name *zero, *hour;
    unsigned qz, qh;

    ASSERT(d != NULL);
    if (d == NULL)
        return;
    srv_mode(SRV_ANSWER);
    srv_set(1, "zero.tollgate.test", IP(10, 0, 1, 1), 0);
    srv_set(2, "hour.tollgate.test", IP(10, 0, 1, 2), 3600);
    qz = srv_queries(1);
    qh = srv_queries(2);
    zero = tg_dns_register(d, "zero.tollgate.test", 80);
    hour = tg_dns_register(d, "hour.tollgate.test", 80);
    /* 1.3 s: TTL 0 raised to 400 ms gives queries at 0, .4, .8, 1.2 s; TTL 3600 lowered to
     * 600 ms gives 0, .6, 1.2 s. Without clamping: hundreds, or one. */
    run_until(loop, NULL, NULL, 1300);
    qz = srv_queries(1) - qz;
    qh = srv_queries(2) - qh;
    ASSERT(tg_dns_addrs(zero) != NULL && tg_dns_addrs(hour) != NULL);
    ASSERT(qz >= 3 && qz <= 5);
    ASSERT(qh >= 2 && qh <= 4);
    if (qz < 3 || qz > 5 || qh < 2 || qh > 4)
        fprintf(stderr, "queries: ttl 0 -> %u, ttl 3600 -> %u\n", qz, qh);
    tg_dns_free(d);
    tg_loop_free(loop);
}

int main(void)
{
    if (srv_start() != 0) {
        fprintf(stderr, "cannot start the test DNS server\n");
        return 1;
    }
    RUN(test_bad_servers);
    RUN(test_first_resolution);
    RUN(test_refresh_picks_up_change);
    RUN(test_failures_keep_answer);
    RUN(test_ttl_clamping);
    srv_stop();
    return unit_report();
}
