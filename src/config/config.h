/*
 * The typed, validated configuration snapshot (DESIGN §4).
 *
 * tg_config_load() turns a YAML file into a struct tg_config or reports every error it found as
 * "FILE:LINE:COL: message". A snapshot is immutable once loaded: workers read it without locks
 * and it is reference-counted so a reload can swap it while requests still use the old one.
 * Every string and array of a snapshot lives in its arena and is freed with it.
 */
#ifndef TG_CONFIG_H
#define TG_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "net/addr.h"

typedef uint64_t tg_msec_t;

struct tg_conf_pos {
    const char *file;
    int line; /* 1-based */
    int col;  /* 1-based */
};

struct tg_listen_conf {
    const char *addr_text;
    struct tg_addr addr;
    const char *tls_cert; /* NULL: plain TCP */
    const char *tls_key;
    struct tg_conf_pos pos;
};

enum tg_scheme { TG_SCHEME_HTTP, TG_SCHEME_HTTPS, TG_SCHEME_UNIX };

struct tg_node_conf {
    const char *url;          /* as written, after ${VAR} expansion */
    uint8_t scheme;           /* enum tg_scheme */
    const char *host;         /* host name or IP literal without brackets; NULL for unix */
    uint16_t port;            /* default 80 / 443 */
    bool host_is_ip;          /* host is an IP literal: no DNS needed */
    struct tg_addr addr;      /* resolved at load time when host_is_ip or unix */
    const char *authority;    /* "host[:port]" as it goes in Host when the route does not set one */
    const char *base_path;    /* path of the URL without trailing slash, "" when none */
    uint32_t weight;          /* default 1 */
    uint32_t tier;            /* default 0 */
    uint32_t max_connections; /* per instance, 0 = unlimited: a node at its limit is skipped */
    bool drain;               /* no new requests (those in flight finish); /status: draining */
    struct tg_conf_pos pos;
};

/* A set of HTTP status codes (100..599), as a bitmap. */
struct tg_status_set {
    uint64_t bits[10];
};

static inline bool tg_status_in(const struct tg_status_set *s, int status)
{
    return status >= 0 && status < 640 && (s->bits[status >> 6] >> (status & 63)) & 1;
}

enum tg_probe_kind { TG_PROBE_NONE, TG_PROBE_HTTP, TG_PROBE_JSONRPC };

/* health: active probes (run by the control thread) and passive outlier ejection. */
struct tg_health_conf {
    uint8_t probe;           /* enum tg_probe_kind; TG_PROBE_NONE when health.active is absent */
    tg_msec_t interval;      /* active.interval, 5s */
    tg_msec_t timeout;       /* active.timeout, 2s */
    uint32_t rise, fall;     /* active.rise 2, active.fall 3 */
    const char *http_method; /* active.http.method, GET */
    const char *http_path;   /* active.http.path, / */
    struct tg_status_set expect;   /* active.http.expect, 2xx */
    const char *rpc_method;        /* active.jsonrpc.method, eth_blockNumber */
    uint32_t max_block_lag;        /* active.jsonrpc.max_block_lag, 5; 0 = no lag check */
    bool syncing;                  /* active.jsonrpc.syncing: also probe eth_syncing */
    bool finalized;                /* active.jsonrpc.finalized, true: ask the finalized block */
    tg_msec_t stall_after;         /* active.jsonrpc.stall_after, 60s */
    bool passive;                  /* passive.enabled, true */
    uint32_t consecutive_failures; /* passive.consecutive_failures, 5 */
    tg_msec_t base_ejection;       /* passive.base_ejection, 30s */
    tg_msec_t max_ejection;        /* passive.max_ejection, 5m */
    uint32_t max_ejection_percent; /* passive.max_ejection_percent, 50 */
    struct tg_status_set statuses; /* passive.statuses, 502 503 504 */
    bool panic;                    /* health.panic: no usable node -> spread over all of them */
    tg_msec_t slow_start;          /* health.slow_start, 0 = off */
};

enum tg_retry_on { TG_RETRY_CONNECT = 1, TG_RETRY_RESET = 2, TG_RETRY_TIMEOUT = 4 };

struct tg_retry_conf {
    uint32_t attempts;             /* retry.attempts, 2 (the first try included; 1 = none) */
    uint32_t on;                   /* enum tg_retry_on bits of retry.on */
    struct tg_status_set statuses; /* the status codes of retry.on */
    double budget;                 /* retry.budget, 0.2 of requests over 10 s */
    uint32_t budget_floor;         /* retry.min_per_second, 3 */
    uint64_t buffer;               /* retry.buffer, 64kb: larger bodies are not replayed */
    tg_msec_t backoff;             /* retry.backoff, 25ms: first delay bound, doubled per try */
    tg_msec_t backoff_max;         /* retry.backoff_max, 250ms */
};

enum tg_hash_on { TG_HASH_CLIENT_IP, TG_HASH_PATH, TG_HASH_HEADER };

/* A string list from the config (allow lists, networks, method patterns). */
struct tg_str_list {
    const char **items;
    size_t num;
};

/* JSON-RPC method patterns ('*' matches any run of characters): a method must match allow (when
 * not empty) and must not match deny. */
struct tg_method_policy {
    struct tg_str_list allow, deny;
};

/* Compute units of the methods matching pattern. */
struct tg_rpc_weight {
    const char *pattern;
    uint32_t units;
};

/* A kind: jsonrpc service's jsonrpc section. */
struct tg_rpc_service_conf {
    struct tg_rpc_weight *weights; /* weights, in order; the first match wins */
    size_t num_weights;
    uint32_t default_weight; /* weights.default, 1 */
    uint32_t broadcast;      /* writes go to this many nodes at once, 1 */
    uint32_t finality_depth; /* blocks below the head that are final (the cache), 64 */
};

/* jsonrpc.routes of a route: these methods go to another service. */
struct tg_rpc_rule {
    struct tg_str_list methods;
    const char *service;
    struct tg_service_conf *svc;
    struct tg_conf_pos pos;
};

/* How a route's cache key treats the query string. */
enum tg_cache_query {
    TG_CACHE_QUERY_ALL,
    TG_CACHE_QUERY_NONE,
    TG_CACHE_QUERY_KEEP,
    TG_CACHE_QUERY_DROP
};

/* A route's cache section (issue 7). */
struct tg_cache_route_conf {
    tg_msec_t ttl;                    /* freshness when the response gives none; 0: explicit only */
    tg_msec_t stale_while_revalidate; /* a stale copy is served while one refresh runs */
    tg_msec_t stale_if_error;         /* a stale copy is served when the node fails */
    bool coalesce;                    /* concurrent misses wait for one fetch, true */
    tg_msec_t coalesce_timeout;       /* a waiter goes upstream on its own after this, 5s */
    bool with_credentials;  /* requests with Authorization or Cookie may be served, false */
    tg_msec_t realtime_ttl; /* JSON-RPC routes: eth_blockNumber, eth_gasPrice... kept this long */
    enum tg_cache_query query;
    struct tg_str_list query_params; /* KEEP: only these; DROP: all but these (`*` wildcards) */
};

#define TG_RPC_MAX_RULES     7 /* jsonrpc.routes entries per route */
#define TG_RPC_MAX_BROADCAST 8 /* jsonrpc.broadcast of a service */

/* A route's jsonrpc section; every route to a kind: jsonrpc service has one. */
struct tg_rpc_route_conf {
    uint64_t max_body;     /* jsonrpc.max_body, 1mb */
    uint64_t max_response; /* jsonrpc.max_response, 32mb: a node's reply is read whole */
    uint32_t max_batch;    /* jsonrpc.max_batch, 100 */
    struct tg_method_policy methods;
    struct tg_rpc_rule *routes;
    size_t num_routes;
};

enum tg_service_kind { TG_SERVICE_HTTP, TG_SERVICE_JSONRPC };
enum tg_balance {
    TG_BALANCE_P2C_EWMA,
    TG_BALANCE_ROUND_ROBIN,
    TG_BALANCE_LEAST_OUTSTANDING,
    TG_BALANCE_CONSISTENT_HASH
};

struct tg_service_conf {
    const char *name;
    uint8_t kind;    /* enum tg_service_kind */
    uint8_t balance; /* enum tg_balance */
    struct tg_node_conf *nodes;
    size_t num_nodes;
    tg_msec_t connect_timeout;   /* timeouts.connect, default 2s */
    tg_msec_t response_timeout;  /* timeouts.response (until the response head), default 30s */
    uint32_t pool_max_idle;      /* pool.max_idle per worker and node, default 64 */
    tg_msec_t pool_idle_timeout; /* pool.idle_timeout, default 60s */
    bool tls_verify;             /* tls.verify, default true */
    const char *tls_ca;          /* tls.ca: PEM bundle; NULL = system store */
    const char *tls_sni;         /* tls.sni: overrides the node's host name */
    struct tg_health_conf health;
    struct tg_retry_conf retry;
    uint32_t conc_max;   /* concurrency.max in flight, 0 = unlimited (per worker: /workers) */
    uint32_t conc_queue; /* concurrency.queue, 1024: requests waiting for a slot */
    tg_msec_t conc_queue_timeout; /* concurrency.queue_timeout, 1s: then 503 + Retry-After */
    uint8_t hash_on;              /* hash.on (consistent_hash): enum tg_hash_on, client_ip */
    const char *hash_header;      /* hash.on: header:NAME */
    double hash_load_factor;      /* hash.load_factor, 1.25: bound of a node's share of in-flight */
    struct tg_rpc_service_conf rpc; /* jsonrpc: (kind: jsonrpc) */
    struct tg_conf_pos pos;
};

struct tg_route_conf {
    const char *name;
    const char *host;    /* match.host pattern, NULL = any host */
    const char *path;    /* match.path pattern, NULL = any path */
    uint32_t methods;    /* bit (1 << enum tg_http_method) per allowed method, 0 = any */
    const char *service; /* service name */
    struct tg_service_conf *svc;
    const char *rewrite_path;  /* template or NULL */
    const char *rewrite_host;  /* template or NULL */
    uint64_t max_body;         /* 0 = limits.max_body */
    bool idempotent;           /* requests may be retried after they reached a node */
    tg_msec_t hedge_after;     /* hedge.after: a second node is asked after this; 0 = no hedging */
    bool hedge_p95;            /* hedge.after: p95 - the service's p95 latency on this worker */
    uint32_t hedge_max;        /* hedge.max, 1: extra attempts in flight at most */
    struct tg_auth_conf *auth; /* NULL = open route */
    struct tg_limit_conf *limits; /* checked in order; all must admit */
    size_t num_limits;
    uint32_t cost;                     /* units per request, 0 = the plan's cost (default 1) */
    struct tg_rpc_route_conf *rpc;     /* set when the service is kind: jsonrpc */
    struct tg_cache_route_conf *cache; /* the route's cache section, NULL: not cached */
    uint32_t id;                       /* index in cf->routes */
    struct tg_conf_pos pos;
};

/* A rate limit or quota (identity.c). A plan is one; a route may list others. */
enum tg_quota_period { TG_QUOTA_NONE, TG_QUOTA_DAY, TG_QUOTA_MONTH };
enum tg_limit_by { TG_BY_CONSUMER, TG_BY_CLIENT_IP, TG_BY_HEADER, TG_BY_ROUTE };

struct tg_limit_conf {
    const char *name;      /* metric label and cluster key: "plan:NAME" or "ROUTE#N" or name: */
    uint64_t rate_count;   /* rate: count units per rate_period; 0 = no rate */
    tg_msec_t rate_period; /* ms */
    uint64_t burst;        /* units admitted at once; default: rate_count */
    uint64_t quota;        /* units per UTC day or month; 0 = none */
    uint8_t quota_period;  /* enum tg_quota_period */
    uint8_t by;            /* enum tg_limit_by; plan limits count per consumer */
    bool plan;             /* "plan" in a route's limits: the caller's plan, resolved per request */
    const char *by_header; /* TG_BY_HEADER: header name */
    uint32_t cost;         /* plans: units a request costs, 1 (a route's cost wins) */
    uint32_t label;        /* metrics label id, set when a runtime is built on the snapshot */
    uint64_t name_hash;    /* tg_rl_name_hash(name), set with label */
    struct tg_conf_pos pos;
};

#define TG_MAX_ROUTE_LIMITS 8 /* limits per route */

struct tg_plan_conf {
    const char *name;
    struct tg_limit_conf limit;      /* rate, burst, quota, cost; by consumer */
    struct tg_method_policy methods; /* JSON-RPC methods callers on this plan may use */
};

struct tg_consumer_conf {
    const char *name;
    uint32_t plan;       /* index in cf->plans; UINT32_MAX = none */
    uint8_t (*keys)[32]; /* SHA-256 digests */
    size_t num_keys;
    struct tg_conf_pos pos;
};

enum tg_key_from { TG_KEY_PATH, TG_KEY_HEADER, TG_KEY_BEARER, TG_KEY_QUERY };

struct tg_key_source {
    uint8_t kind;     /* enum tg_key_from */
    const char *name; /* capture, header (lower case) or query parameter; NULL for bearer */
};

struct tg_jwt_conf {
    const char *keys;    /* file (PEM or JWKS) or http(s):// JWKS URL */
    const char *secret;  /* HS256 shared secret */
    unsigned algorithms; /* enum tg_jwt_alg bits (auth/jwt.h) */
    const char *issuer, *audience;
    tg_msec_t leeway;
    const char *consumer_claim; /* sub */
    tg_msec_t refresh;          /* keys re-read or fetched this often, 5m */
};

struct tg_auth_conf {
    struct tg_key_source *from; /* api_key.from; num_from 0 = no API keys */
    size_t num_from;
    struct tg_jwt_conf *jwt;             /* NULL = no JWT */
    struct tg_str_list consumers, plans; /* allow lists: others get 403; empty = any */
    bool optional; /* no credential: anonymous (when configured) instead of 401 */
};

struct tg_limits_conf {
    uint64_t max_request_line; /* 8kb, 414 */
    uint64_t max_header_bytes; /* 32kb, 431 */
    uint32_t max_headers;      /* 100, 431 */
    uint64_t max_body;         /* 10mb, 413 */
    tg_msec_t header_timeout;  /* 10s, 408, absolute from the first byte of a request */
    tg_msec_t idle_timeout;    /* 60s between requests of a keep-alive connection */
    tg_msec_t body_timeout;    /* 60s without any request body byte: 408 */
    tg_msec_t send_timeout;    /* 60s without the client reading anything we send */
    uint32_t max_connections;  /* 10000 client connections per instance */
};

enum tg_log_level { TG_LOG_DEBUG, TG_LOG_INFO, TG_LOG_WARN, TG_LOG_ERROR };

struct tg_config {
    atomic_int refs;
    const char *file;
    char hash[17]; /* first 64 bits of SHA-256 of the file bytes, hex */

    uint32_t workers; /* 0 = auto */
    struct tg_listen_conf *listens;
    size_t num_listens;
    const char *admin_addr_text; /* admin.addr, default 127.0.0.1:9901 */
    struct tg_addr admin_addr;
    tg_msec_t stuck_after; /* admin.stuck_after, 5s: /healthz fails when a worker loop is stuck */
    struct tg_limits_conf limits;
    tg_msec_t drain_delay;      /* shutdown.drain_delay, 5s */
    tg_msec_t shutdown_timeout; /* shutdown.timeout, 25s */
    tg_msec_t ws_idle_timeout;  /* websocket.idle_timeout, 5m: a tunnel with no byte either way */
    uint64_t ws_max_message;    /* websocket.max_message, 1mb: a JSON-RPC message over WebSocket */
    uint64_t cache_max_size;    /* cache.max_size, 256mb: the response cache's bytes */
    uint64_t cache_max_object;  /* cache.max_object, 8mb: a larger body is not cached */
    uint8_t log_level;          /* log.level, info */
    bool access_log;            /* log.access.enabled, true */
    double access_sample;       /* log.access.sample, 1.0 */
    tg_msec_t access_slow;      /* log.access.slow, 1s */
    uint64_t access_buffer;     /* log.access.buffer, 1mb: ring per worker; full = dropped lines */
    struct tg_str_list trusted_proxies; /* CIDRs whose X-Forwarded-* headers are kept (§9.10) */
    struct tg_str_list dns_servers;     /* dns.servers: "ip[:port]"; empty = /etc/resolv.conf */
    tg_msec_t dns_min_ttl;              /* dns.min_ttl, 1s: answers are kept at least this long */
    tg_msec_t dns_max_ttl;              /* dns.max_ttl, 300s: and re-resolved at least this often */
    tg_msec_t dns_timeout;              /* dns.timeout, 2s per query attempt */

    struct tg_service_conf *services;
    size_t num_services;
    struct tg_route_conf *routes;
    size_t num_routes;

    struct tg_plan_conf *plans;
    size_t num_plans;
    struct tg_consumer_conf *consumers;
    size_t num_consumers;
    uint32_t anon_plan; /* anonymous.plan: index in plans; UINT32_MAX = no anonymous access */
    uint8_t anon_by;    /* anonymous.by: enum tg_limit_by (client_ip or header) */
    const char *anon_header;
    const char *key_store; /* keys.store: sqlite:/path or postgres://...; NULL = inline only */
    const char *key_table; /* keys.table, api_keys */
    tg_msec_t key_refresh; /* keys.refresh, 10s */
    uint32_t key_max;      /* keys.max, 1000000 rows */
    uint64_t rl_max_keys;  /* ratelimit.max_keys, 1000000 counters */
    const char *rl_store;  /* ratelimit.store: redis://host:port/db; NULL = local only */
    tg_msec_t rl_sync;     /* ratelimit.sync, 100ms */
    bool rl_deny_on_error; /* ratelimit.on_store_error: deny (false = allow) */

    void *arena; /* owns every string and array above */
};

/* Collected errors of one load; each message is "FILE:LINE:COL: text". */
struct tg_config_errors {
    char **msgs;
    size_t num;
};

/*
 * Loads and validates a configuration file. Returns a snapshot with one reference, or NULL with
 * every error found appended to errs (never stops at the first one). ${VAR} and ${VAR:-default}
 * are expanded from the environment before values are parsed.
 */
struct tg_config *tg_config_load(const char *path, struct tg_config_errors *errs);

/* As tg_config_load(), from memory; name is used in error messages. */
struct tg_config *tg_config_load_mem(const char *name, const char *text, size_t len,
                                     struct tg_config_errors *errs);

struct tg_config *tg_config_take(struct tg_config *cf);
void tg_config_drop(struct tg_config *cf);

void tg_config_errors_dispose(struct tg_config_errors *errs);

/* Writes a Mermaid flowchart of listeners -> routes -> services -> nodes. */
void tg_config_graph(const struct tg_config *cf, FILE *out);

/* Looks up a service by name; NULL when absent. */
struct tg_service_conf *tg_config_service(const struct tg_config *cf, const char *name);

#endif
