/*
 * Asynchronous DNS cache (c-ares) for upstream node names.
 *
 * The cache lives on the control thread's loop: registration, queries, refreshes and frees all
 * happen there. Worker threads only read answers, through tg_dns_addrs(), without locks: each
 * name holds an atomic pointer to an immutable answer that a refresh replaces as a whole.
 *
 * Refresh policy: a name is re-resolved when its answer's TTL expires, the TTL clamped to
 * [min_ttl, max_ttl]. A failed refresh (timeout, SERVFAIL, NXDOMAIN, refused, empty answer)
 * keeps the last good answer, is counted, and is retried after min(min_ttl * 2^n, 30 s) for the
 * n-th consecutive failure. A previously good answer is never dropped because the resolver
 * failed.
 */
#ifndef TG_DNS_H
#define TG_DNS_H

#include <stddef.h>
#include <stdint.h>

#include "event/loop.h"
#include "net/addr.h"

struct tg_dns;
struct tg_dns_name;

/* One answer: every A and AAAA address of a name, with the registered port filled in. */
struct tg_dns_addrs {
    uint32_t num; /* at least 1 */
    struct tg_addr addrs[];
};

struct tg_dns_opts {
    const char *const *servers; /* "ip", "ip:port", "[ip6]:port", "ip6"; none = resolv.conf */
    size_t num_servers;
    tg_msec_t min_ttl; /* answers are kept at least this long; 0 = 1 s */
    tg_msec_t max_ttl; /* and re-resolved at least this often; 0 = 300 s */
    tg_msec_t timeout; /* per query attempt; 0 = 2 s */
    uint32_t tries;    /* attempts per query and server; 0 = 2 */
    tg_msec_t grace;   /* a replaced answer is freed this long after; 0 = 30 s */
};

/*
 * Creates a cache whose sockets and timers run on loop (the control thread's). Returns NULL
 * with a message in err (at most errlen bytes, NUL-terminated) when a server address is
 * invalid or c-ares cannot start (for example an unreadable /etc/resolv.conf).
 */
struct tg_dns *tg_dns_new(struct tg_loop *loop, const struct tg_dns_opts *o, char *err,
                          size_t errlen);

/*
 * Frees the cache, every name and every answer, cancelling queries in flight. Call on the loop's
 * thread, after every worker stopped reading answers. NULL is ignored.
 */
void tg_dns_free(struct tg_dns *d);

/*
 * Returns the name for host:port, creating it and starting its first resolution when it is new
 * (the same host and port give the same name). Loop thread only; may be called before the loop
 * runs. host is copied. Names live until tg_dns_free().
 */
struct tg_dns_name *tg_dns_register(struct tg_dns *d, const char *host, uint16_t port);

/*
 * The current answer of n, or NULL when it was never resolved. Any thread, no lock.
 * The answer stays valid for the grace period after a refresh replaces it (30 s by default):
 * copy the address you use right away and never keep the pointer across loop iterations.
 */
const struct tg_dns_addrs *tg_dns_addrs(const struct tg_dns_name *n);

/* Host and port as registered. */
const char *tg_dns_name_host(const struct tg_dns_name *n);
uint16_t tg_dns_name_port(const struct tg_dns_name *n);

/*
 * Reason the last resolution of n failed (c-ares' static text, such as "Timeout while
 * contacting DNS servers"), or NULL when it succeeded or none finished yet. Any thread.
 */
const char *tg_dns_name_error(const struct tg_dns_name *n);

/* Consecutive failed resolutions of n, 0 after a success. Any thread. */
uint32_t tg_dns_name_failures(const struct tg_dns_name *n);

/* Refreshes (first resolutions included) that succeeded and that failed, over all names, for
 * the metrics. Any thread; relaxed counters. */
uint64_t tg_dns_refresh_ok(const struct tg_dns *d);
uint64_t tg_dns_refresh_fail(const struct tg_dns *d);

#endif
