/*
 * The request lifecycle: worker threads, client connections, transactions and upstream
 * connections.
 *
 * Everything here belongs to exactly one worker thread. A client connection (struct tg_conn)
 * owns no buffer and no transaction while it is idle, so 10,000 idle keep-alive clients cost
 * 10,000 small structs. A transaction (struct tg_txn) exists from the first byte of a request
 * until its response is written; upstream connections (struct tg_upconn) are attached to a
 * transaction while in use and sit in the worker's pool otherwise. All three come from per-worker
 * free lists, so steady-state traffic does not allocate.
 */
#ifndef TG_PROXY_H
#define TG_PROXY_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "config/config.h"
#include "core/buf.h"
#include "core/sbuf.h"
#include "event/loop.h"
#include "http/h1.h"
#include "net/sock.h"
#include "obs/metrics.h"
#include "router/router.h"
#include "upstream/upstream.h"

struct tg_access_ring;
struct tg_admin;
struct tg_dns;
struct tg_tls_ctx;
struct tg_runtime;
struct tg_worker;
struct tg_rl_table;
struct tg_jwt_slot;
struct tg_rpc_txn;
struct tg_rpc_tokens;

/* Transactions of one worker that run on a snapshot: the worker releases a snapshot it switched
 * away from when its last transaction ends (a plain counter, no atomics per request). */
struct tg_runtime_users {
    uint64_t n;
} __attribute__((aligned(64)));

/* One configuration snapshot with everything derived from it. Reference-counted. */
struct tg_runtime {
    atomic_int refs;
    struct tg_config *cf;
    int64_t loaded_at; /* wall clock, ms */
    size_t num_workers;
    struct tg_runtime_users *users; /* per worker */
    uint32_t *route_labels;         /* metrics label id per cf->routes entry */
    struct tg_router *router;
    struct tg_upstreams up;
    struct tg_tls_ctx **listen_tls; /* per cf->listens entry, NULL for plain */
    struct tg_h1_limits h1;
    uint32_t cidr_count;
    struct tg_cidr *trusted;
    struct tg_rl_table *rl;         /* the process's rate-limit table (outlives snapshots) */
    struct tg_jwt_slot **jwt_slots; /* per cf->routes entry, NULL where no JWT */
    uint64_t access_sample;  /* a random 64-bit draw below this logs a 1xx-3xx line; MAX = all */
    uint64_t access_slow_us; /* log.access.slow */
};

struct tg_cidr {
    uint8_t family; /* AF_INET or AF_INET6 */
    uint8_t bits;
    uint8_t addr[16];
};

struct tg_listener {
    struct tg_watch watch;
    struct tg_worker *worker;
    struct tg_addr addr; /* identity across reloads: an unchanged address keeps its socket */
    uint32_t index;      /* in cf->listens of the worker's snapshot */
    bool tls;
    bool is_unix;
    struct tg_timer pause; /* accepts paused after EMFILE */
    struct tg_listener *next_dead;
};

/* Per-worker counters, summed across workers by the metrics code (no atomics on the hot path:
 * each field is written by its worker only and read with relaxed loads). */
struct tg_worker_stats {
    uint64_t connections_total;
    uint64_t requests_total;
    uint64_t responses_by_class[6]; /* 1xx..5xx by index status/100 */
    uint64_t rejected_too_many_connections;
    uint64_t rejected_uri_too_long;
    uint64_t rejected_header_too_large;
    uint64_t rejected_body_too_large;
    uint64_t rejected_timeout;
    uint64_t rejected_bad_request;
    uint64_t upstream_requests;
    uint64_t upstream_connect_errors;
    uint64_t upstream_timeouts;
    uint64_t upstream_bad_responses;
    uint64_t upstream_connections_opened;
    uint64_t upstream_reused;
    uint64_t retries[5]; /* by enum tg_fail: connect_failure, reset, timeout, status, jsonrpc */
    uint64_t hedges[4];  /* by enum tg_hedge_outcome */
    uint64_t retry_budget_exhausted;
    uint64_t no_usable_node;       /* requests answered 503 because no node could take them */
    uint64_t ws_opened, ws_closed; /* WebSocket tunnels */
    uint64_t ws_messages_in, ws_messages_out; /* JSON-RPC WebSocket messages from and to clients */
    uint64_t ws_bytes_in, ws_bytes_out;       /* tunnel bytes from and to clients, at close */
    int64_t active_connections;
};

/* What became of a hedge (metric label order). */
enum tg_hedge_outcome { TG_HEDGE_WON, TG_HEDGE_LOST, TG_HEDGE_FAILED, TG_HEDGE_SKIPPED };

/* Why an attempt at a node failed (retry.on conditions; metric label order). */
enum tg_fail {
    TG_FAIL_CONNECT,
    TG_FAIL_RESET,
    TG_FAIL_TIMEOUT,
    TG_FAIL_STATUS,
    TG_FAIL_RPC, /* a JSON-RPC reply that says the node cannot answer */
    TG_FAIL_BAD
};

enum tg_conn_phase {
    TG_CONN_HANDSHAKE, /* TLS handshake */
    TG_CONN_IDLE,      /* waiting for the first byte of a request */
    TG_CONN_HEAD,      /* reading a request head */
    TG_CONN_TXN,       /* a transaction runs */
    TG_CONN_CLOSING,   /* writing a final response, then close */
    TG_CONN_LINGER,    /* drained: our FIN is sent, what the client still sends is discarded */
};

struct tg_conn {
    struct tg_sock sock;
    struct tg_worker *worker;
    struct tg_buf *in; /* NULL while idle and empty */
    struct tg_txn *txn;
    struct tg_timer timer;
    struct tg_conn *next, *prev; /* worker's list of live connections */
    struct sockaddr_in6 peer;    /* AF_INET peers are stored as v4-mapped; unix peers zeroed */
    uint32_t requests;
    uint8_t peer_text_len; /* 0 until formatted */
    char peer_text[INET6_ADDRSTRLEN];
    uint8_t phase;    /* enum tg_conn_phase */
    bool tls;         /* accepted on a TLS listener */
    bool close_after; /* close once the current response is written */
    bool drain_seen;  /* a fresh connection got one drain check to send its first request */
    bool in_callback; /* freeing is deferred while set */
    bool dead;        /* closing: freed once no callback runs on it */
    bool freed;       /* in the worker's dead or free list */
    bool internal;    /* no client: a request of tollgate's own (a cache refresh), answer dropped */
    struct tg_conn *next_free;
};

enum tg_up_state {
    TG_UP_CONNECTING,
    TG_UP_HANDSHAKE,
    TG_UP_READY,  /* connected, attached to a transaction */
    TG_UP_IDLE,   /* in the pool */
    TG_UP_LINGER, /* given up after its request: the answer is read and dropped (fanout.c) */
};

struct tg_upconn {
    struct tg_sock sock;
    struct tg_worker *worker;
    struct tg_node *node;
    struct tg_txn *txn;
    struct tg_buf *in;
    struct tg_timer timer;
    struct tg_upconn *pool_next, *pool_prev;
    uint32_t requests;
    uint8_t state;          /* enum tg_up_state */
    bool reused;            /* came from the pool: a failure before any byte may be retried */
    struct tg_hedge *hedge; /* set while the connection carries a hedge (hedge.c) */
    bool counted;           /* included in node->health.connections */
    bool in_callback;
    bool dead;  /* closing: freed once no callback runs on it */
    bool freed; /* in the worker's dead or free list */
    struct tg_upconn *next_free;
};

enum tg_req_state { TG_REQ_HEAD, TG_REQ_BODY, TG_REQ_DONE };

#define TG_MAX_HEDGES 3

/* An extra attempt of an idempotent request on another node, sent when the first one is slow
 * (route hedge.after); whichever answers first wins. */
struct tg_hedge {
    struct tg_txn *txn;
    struct tg_upconn *up;
    int member;
    bool trial;
    uint64_t start_us;
    char *buf; /* the whole request, composed for this node */
    size_t len, off;
};
enum tg_res_state { TG_RES_WAIT, TG_RES_HEAD, TG_RES_BODY, TG_RES_DONE };

struct tg_txn {
    struct tg_conn *conn;
    struct tg_upconn *up;
    struct tg_runtime *rt;
    const struct tg_route_conf *route;
    struct tg_service *svc;
    struct tg_node *node;
    struct tg_h1_request req;
    struct tg_h1_response res;
    size_t head_len; /* bytes of the request head in conn->in */

    /* request body */
    uint8_t req_state;
    uint8_t res_state;
    uint8_t rpc_leg;        /* JSON-RPC: the leg this transaction sends (jsonrpc.c) */
    bool req_body_end;      /* chunked: terminating chunk seen */
    uint64_t req_remaining; /* TG_BODY_LENGTH: bytes still to forward */
    uint64_t req_body_bytes;
    uint64_t max_body;  /* the route's limit, or limits.max_body */
    size_t req_scanned; /* chunked: bytes of conn->in already validated */
    struct tg_h1_chunked req_chunked;

    /* response */
    uint64_t res_remaining;
    size_t res_scanned;
    bool res_decode; /* chunked upstream body decoded for an HTTP/1.0 client */
    bool res_passthru_chunked;
    bool res_close; /* close-delimited: ends at upstream EOF */
    struct tg_h1_chunked res_chunked;
    uint64_t res_body_bytes;
    int status; /* sent to the client */

    /* pending writes: the request head towards the node, the response towards the client */
    struct tg_iovq {
        struct iovec *iov;
        int off, cnt;
    } req_out, res_out;
    size_t iov_max;
    bool res_end;        /* the upstream response (or our own reply) is completely received */
    bool local_reply;    /* the response is tollgate's own (error), not the node's */
    size_t req_body_out; /* body bytes of conn->in included in the pending head write */
    size_t res_body_out; /* body bytes of up->in included in the pending response write */

    bool started; /* the head was parsed and the request counted: record it when it ends */
    bool retried; /* a stale pooled connection was replaced (same node, not an attempt) */

    /* attempts (retry.c): each retry goes to a node of t->pick not tried yet */
    struct tg_pick pick;
    int member;        /* the current attempt's member index in svc */
    uint8_t attempts;  /* attempts started */
    bool trial;        /* the current attempt is an ejected node's trial request */
    bool sent;         /* bytes of the current attempt were written to the node */
    bool replay;       /* the request can be sent again: no body, or all of it in conn->in */
    bool buffering;    /* reading the whole (replayable) body before the first attempt */
    uint16_t path_len; /* the normalised path at the start of scratch */
    size_t keep_in;    /* bytes of conn->in the request holds until it ends */
    struct tg_timer retry_timer; /* backoff before the next attempt, or the queue deadline */
    bool admitted;               /* holds a concurrency.max slot of svc */
    bool queued;                 /* waits for one */
    uint64_t queued_at;          /* µs */
    struct tg_txn *wait_next, *wait_prev;
    struct tg_hedge *hedges[TG_MAX_HEDGES]; /* extra attempts in flight (hedge.c) */
    uint8_t num_hedges, hedges_sent;
    bool res_collect; /* the node's reply body is read whole (JSON-RPC), not relayed */
    bool ws;          /* a WebSocket upgrade: Upgrade and Connection go to the node */
    bool tunnel;      /* the node said 101: bytes flow both ways (tunnel.c) */
    bool trace_new;   /* traceparent was generated by us and is added upstream */
    bool trace_drop;  /* an invalid traceparent/tracestate is not forwarded */
    bool has_trace;
    char *hedge_buf;  /* a promoted hedge's composed request, freed with the transaction */
    bool up_reusable; /* false once the node broke framing or sent bytes after its response */
    bool expect_sent;
    bool head_request;
    uint64_t start_us;
    uint64_t up_start_us; /* when a node connection was attached, 0 when none was */
    uint64_t up_end_us;   /* when the node's response ended or failed */
    int up_status;        /* the node's status; 0 when it gave none */
    uint32_t caller_plan; /* the caller's plan, TG_NO_PLAN for none (identity.c) */
    uint64_t bytes_out;   /* written to the client */
    uint8_t request_id_len;
    uint8_t caller_len;
    /* identity and limits (identity.c) */
    uint16_t cred_header; /* 1 + index of the request header that carried the credential */
    bool rl_set;          /* the RateLimit fields below go on the response */
    bool rl_quota;
    bool rpc_idempotent; /* JSON-RPC: no write among the calls, so they may be sent twice */
    bool rpc_no_blame;   /* JSON-RPC: the node could not answer, through no fault of its own */
    const char *rl_name; /* the binding limit's name (lives in the snapshot) */
    uint64_t rl_q, rl_w, rl_r, rl_t;
    const char *caller;     /* the consumer's name; NULL: anonymous (or an open route). In the key
                             * table (valid for this event only) or, on JSON-RPC routes, a copy */
    struct tg_rpc_txn *rpc; /* JSON-RPC routes: the envelope and its replies (jsonrpc.c) */
    struct tg_txn *parent;  /* a leg of a JSON-RPC fan-out: the client's transaction (fanout.c) */
    struct tg_cache_txn *cache; /* routes with a cache section: lookup and fill state (cache.c) */

    struct tg_txn *next_free;
    size_t alloc_headers; /* capacity of the header arrays of this allocation */
    size_t scratch_cap;
    char *scratch; /* composed request line and added headers, then the response's */
    /* not cleared per request: valid up to request_id_len, or when has_trace / trace_new */
    char request_id[48];
    char trace_id[32];
    char traceparent[55];
};

struct tg_worker {
    uint32_t id;
    pthread_t thread;
    struct tg_loop *loop;
    struct tg_runtime *rt;
    struct tg_listener **listeners;
    size_t num_listeners;
    struct tg_buf_pool bufs;
    struct tg_conn *conns; /* live client connections */
    struct tg_conn *free_conns;
    struct tg_txn *free_txns;
    struct tg_upconn *free_upconns;
    struct tg_rpc_txn *free_rpc;        /* JSON-RPC request states (jsonrpc.c) */
    struct tg_cache_txn *free_cache;    /* cache states (cache.c) */
    struct tg_cache_txn *cache_waiters; /* requests waiting for another one's cache fill */
    struct tg_sbuf cache_head;          /* a stored head being built */
    struct tg_rpc_tokens *rpc_tokens;   /* the JSON tokenizer's array, grown on demand */
    /* closed during the current event batch: recycled when it ends (tg_loop_on_batch_end) */
    struct tg_conn *dead_conns;
    struct tg_upconn *dead_upconns;
    struct tg_txn *dead_txns;    /* JSON-RPC legs that ended */
    struct tg_upconn *lingering; /* node connections in TG_UP_LINGER (pool_next links) */
    struct tg_listener *dead_listeners;
    struct tg_http_header *hdr_scratch;
    uint32_t rr;
    uint64_t rid_seed, rid_counter;
    int64_t date_at;
    char date[40]; /* "Date: ...\r\n" */
    size_t date_len;
    struct tg_worker_stats stats;
    struct tg_metrics metrics;
    struct tg_access_ring *access; /* NULL when access logging is off */
    uint64_t trace_state[4];
    uint64_t sample_state;
    int64_t beat; /* loop time (ms) of the last heartbeat, read by /healthz */
    struct tg_timer beat_timer;
    struct tg_timer drain_timer;
    bool draining;
};

/* Instance-wide state shared by the workers. */
struct tg_instance {
    struct tg_worker *workers;
    size_t num_workers;
    const char *config_path;
    struct tg_runtime *rt; /* the current snapshot: control thread only */
    struct tg_dns *dns;    /* control thread only; NULL until a config names a host */
    struct tg_admin *admin;
    int64_t started_at;                  /* wall clock, ms */
    atomic_bool ready;                   /* workers started and first DNS answers in */
    uint64_t reloads_ok, reloads_failed; /* control thread only */
    atomic_int connections; /* client connections open across workers, for max_connections */
    atomic_bool stopping;
    atomic_int drained;           /* workers that finished draining */
    struct tg_loop *control;      /* stopped once every worker has drained */
    struct tg_cache_store *cache; /* the response cache, shared by the workers (cache/store.c) */
};

extern struct tg_instance tg_instance;

/* worker.c */
/* Listening sockets a configuration needs and the running workers do not have yet: for listen
 * entry i and worker w, fds[i * num_workers + w], or -1 where the worker keeps its socket. */
struct tg_listen_plan {
    size_t num_listens, num_workers;
    int *fds;
};
/* Opens the sockets of cf's listen entries that prev (NULL at start) did not have. Returns 0,
 * or -1 with a message in err and nothing left open. */
int tg_listen_plan_make(struct tg_listen_plan *p, const struct tg_config *cf,
                        const struct tg_config *prev, size_t num_workers, char *err, size_t errlen);
void tg_listen_plan_dispose(struct tg_listen_plan *p);
/* Creates the worker's loop and takes its listening sockets from plan. Returns 0, or -1 with a
 * message in err. */
int tg_worker_init(struct tg_worker *w, uint32_t id, struct tg_runtime *rt,
                   struct tg_listen_plan *plan, char *err, size_t errlen);
/* Control thread: every worker moves to rt (listeners from plan, which is taken over); old is
 * the snapshot being replaced, whose nodes missing from rt are retired. */
void tg_worker_switch_all(struct tg_runtime *rt, struct tg_runtime *old,
                          struct tg_listen_plan *plan);
/* A transaction of w that ran on rt ended. */
void tg_worker_runtime_done(struct tg_worker *w, struct tg_runtime *rt);
int tg_worker_start(struct tg_worker *w);
/* Thread-safe: stop accepting, finish in-flight requests, close, then leave the loop. */
void tg_worker_drain(struct tg_worker *w);
/* Thread-safe: leave the loop now. */
void tg_worker_stop(struct tg_worker *w);
void tg_worker_dispose(struct tg_worker *w);
const char *tg_worker_date(struct tg_worker *w, size_t *len);
void tg_worker_request_id(struct tg_worker *w, char *out, uint8_t *len);

/* server.c: client side */
void tg_conn_accepted(struct tg_worker *w, struct tg_listener *l, int fd,
                      const struct sockaddr_storage *peer);
/* Runs the request whose head is head[0..len) as if a client had sent it, on a connection of
 * its own with no socket: the response is dropped as it is written, and the connection closes
 * after it. Not counted as a client connection, not checked by auth or limits, not logged. */
void tg_conn_internal(struct tg_worker *w, const char *head, size_t len);
void tg_conn_txn_done(struct tg_conn *c);
void tg_conn_abort(struct tg_conn *c);
/* Closes an idle connection without a reset: FIN first, then discard until the client closes
 * or a short deadline passes (a close with unread bytes would send RST). */
void tg_conn_linger(struct tg_conn *c);
/* Frees a connection marked dead once no callback runs on it any more. */
void tg_conn_reap(struct tg_conn *c);
void tg_conn_arm(struct tg_conn *c, tg_msec_t delay);
/* The client's address as text, formatted on first use; NULL for unix peers. */
const char *tg_conn_peer_text(struct tg_conn *c);

/* record.c: the outcome of a finished transaction into metrics and the access log */
void tg_txn_record(struct tg_txn *t);

/* forward.c: the last header lines of a response head to the client (X-Request-Id, the
 * RateLimit fields, Connection) and the blank line, at p; NULL when they pass end. */
char *tg_txn_head_end(struct tg_txn *t, char *p, char *end);

/* errors.c */
/* Answers with body (JSON) and status: tollgate's own reply, e.g. a JSON-RPC answer rebuilt
 * from node replies. body must live until the transaction ends. */
void tg_txn_reply(struct tg_txn *t, int status, const char *body, size_t len);
void tg_txn_respond_error(struct tg_txn *t, int status, const char *code, const char *message);

/* identity.c: authenticate the caller and (except on JSON-RPC routes, which know their cost
 * only once the body is read) apply the route's limits. Returns true to go on; false when it
 * answered (401, 403, 429). May rewrite the normalised path in t->scratch (a key taken from it)
 * and sets t->path_len. */
bool tg_txn_identity(struct tg_txn *t, const struct tg_route_captures *caps);
/* Charges units (0: the route's or the plan's cost) to every limit of the route for the caller
 * tg_txn_identity() found. Returns false when a limit refused: answered 429 when answer is set
 * (else counted only: a WebSocket message is refused inside the tunnel). */
bool tg_txn_limits(struct tg_txn *t, uint64_t units, bool answer);
/* Appends "RateLimit-Policy" and "RateLimit" header lines for t; returns bytes written or 0. */
size_t tg_txn_ratelimit_headers(const struct tg_txn *t, char *out, size_t cap);
/* A JSON error response; with rpc_id (the request's id as JSON text), a JSON-RPC error object. */
size_t tg_error_format(char *out, size_t cap, struct tg_worker *w, int status, const char *code,
                       const char *message, const char *rid, size_t rid_len, bool close,
                       unsigned retry_after, const char *extra, const char *rpc_id,
                       size_t rpc_id_len);
/* The general form: retry_after 0 = none; extra = header lines ("Name: value\r\n"...) or NULL. */
void tg_txn_respond(struct tg_txn *t, int status, const char *code, const char *message,
                    unsigned retry_after, const char *extra);
/* As tg_txn_respond_error(), with "Retry-After: SECONDS" (503s that a client may retry). */
void tg_txn_respond_busy(struct tg_txn *t, const char *code, const char *message,
                         unsigned retry_after);

/* Chunked framing bounds, both directions: a chunk-size line, and all trailer lines. */
#define TG_CHUNK_MAX_LINE     4096
#define TG_CHUNK_MAX_TRAILERS (16 * 1024)

/* forward.c: upstream side */
struct tg_txn *tg_txn_new(struct tg_conn *c);
/* A child of t sending one leg of a JSON-RPC fan-out (fanout.c): t's request head, its own
 * attempts, node connection and reply; it never writes to the client. Freed by tg_txn_free,
 * which keeps it inert until the current batch of events ends. */
struct tg_txn *tg_txn_leg(struct tg_txn *t);
void tg_txn_free(struct tg_txn *t);
void tg_txn_start(struct tg_txn *t);
void tg_txn_run(struct tg_txn *t);
void tg_txn_flush(struct tg_txn *t);
/* Appends the header lines of h[0..num) that skip() keeps to q, as iovecs into the head itself
 * (adjacent lines share one); head_end points just past the last header line. */
void tg_txn_iov_headers(struct tg_iovq *q, const struct tg_http_header *h, size_t num,
                        const char *head_end, bool (*skip)(const struct tg_http_header *, void *),
                        void *arg);
/* The current attempt failed: its node's counters, latency penalty and passive health. */
void tg_txn_attempt_failed(struct tg_txn *t, enum tg_fail why, int status, const char *msg);
/* Ends a failed attempt and schedules the next one on another node, when retry.on, safety, a
 * node left and the budget all allow. Returns false, changing nothing, when they do not. */
bool tg_txn_retry_elsewhere(struct tg_txn *t, enum tg_fail why, int status, const char *msg);

/* request.c: the request side */
/* Composes the request for t->node into req_out (path: the normalised path; caps: the route's
 * captures). Returns -1 when a rewritten field is invalid or does not fit. */
int tg_txn_compose_request(struct tg_txn *t, struct tg_str path,
                           const struct tg_route_captures *caps);
/* Adds the body bytes already buffered to the request head's writev. Returns -1 when the
 * transaction was answered instead. */
int tg_txn_body_iov(struct tg_txn *t);
/* Sends the pending request head and then the body. Returns true on progress. */
bool tg_txn_send(struct tg_txn *t);
/* "100 Continue", once, for a client that waits for it. Returns -1 when the connection failed. */
int tg_txn_continue(struct tg_txn *t);

/* response.c: the response side */
/* Writes pending response bytes to the client. Returns true when the transaction finished (and
 * may have been freed). */
bool tg_txn_flush_pending(struct tg_txn *t);
/* Reads from the node: the response head, or the next part of the body. True on progress. */
bool tg_txn_recv(struct tg_txn *t);

/* upconn.c */
struct tg_upconn *tg_upconn_get(struct tg_worker *w, struct tg_node *n, int *err);
void tg_upconn_release(struct tg_upconn *u, bool reusable);
/* The transaction leaves u after sending its whole request, without waiting for the answer:
 * the node may finish (a write is not cut off by a closed connection); what it answers is read
 * and dropped, and u closes then, when the node closes it, or after timeout. */
void tg_upconn_linger(struct tg_upconn *u, tg_msec_t timeout);
/* Closes this worker's idle connections to n. */
void tg_pool_close(struct tg_worker *w, struct tg_node *n);
void tg_upconn_close(struct tg_upconn *u);
void tg_upconn_arm(struct tg_upconn *u, tg_msec_t delay);
/* An attempt failed before its response was relayed: retried elsewhere when retry allows, else
 * answered with status. */
void tg_txn_upstream_error(struct tg_txn *t, enum tg_fail why, int status, const char *code,
                           const char *msg);

/* admission.c: concurrency.max and its queue */
/* Takes a slot for t's service or queues t (or sheds it when the queue is full). Returns true
 * when t may go on now; otherwise t is resumed later through tg_txn_proceed() or answered. */
bool tg_admission_enter(struct tg_txn *t);
/* t ends: its slot goes to the next waiting request, or it leaves the queue. */
void tg_admission_leave(struct tg_txn *t);
/* forward.c: goes on with an admitted request (body buffering, first attempt). */
void tg_txn_proceed(struct tg_txn *t);
/* Runs step(t) from a timer of the transaction: the client connection is released only after
 * the step, if the step closed it. */
void tg_txn_step(struct tg_txn *t, void (*step)(struct tg_txn *t));

/* hedge.c */
/* The first attempt of t started: arms the hedge timer when t's route hedges and t may be
 * repeated. */
void tg_hedge_arm(struct tg_txn *t);
/* The current attempt answered (or t ends): cancels every hedge, which lost. */
void tg_hedge_cancel_all(struct tg_txn *t);
/* The current attempt failed: a hedge in flight takes its place (true), or there is none. */
bool tg_hedge_take_over(struct tg_txn *t);
/* Events and timeouts of a hedge's connection (upconn.c). */
void tg_hedge_event(struct tg_hedge *h);
void tg_hedge_failed(struct tg_hedge *h, const char *why);
/* forward.c, for hedge.c */
int tg_txn_compose_for(struct tg_txn *t, struct tg_node *n, struct iovec **iov, int *cnt);
void tg_txn_head_arrived(struct tg_txn *t);
void tg_txn_attempt_abandoned(struct tg_txn *t, struct tg_node *n);

/* forward.c, for jsonrpc.c: a new attempt (fresh pick, attempt count) on svc, sending
 * tg_rpc_body(t), on none of the members set in avoid (NULL: any) */
void tg_txn_attempt_on(struct tg_txn *t, struct tg_service *svc, const uint64_t *avoid);
/* forward.c, for cache.c: a request resumed after the cache phase: admission, then forward */
void tg_txn_admit(struct tg_txn *t);
/* forward.c, for record.c and jsonrpc.c: the node accounting of an attempt that answered */
void tg_txn_attempt_done(struct tg_txn *t);

/* jsonrpc.c: JSON-RPC routes */
/* A copy of the caller's name that lives as long as t (the JSON-RPC state is made now). */
const char *tg_rpc_keep_caller(struct tg_txn *t, const char *name, size_t len);
/* The body the current attempt sends: the client's, or one composed for a group of calls. */
struct tg_str tg_rpc_body(const struct tg_txn *t);
/* The request body is whole in conn->in: parse, check, charge and send (or answer). */
void tg_rpc_begin(struct tg_txn *t);
/* A reply starts (again, after a failed attempt): the current group's bytes are dropped. */
void tg_rpc_collect_reset(struct tg_txn *t);
/* Appends n bytes of the node's reply body; -1 when jsonrpc.max_response is passed. */
int tg_rpc_collect(struct tg_txn *t, const char *p, size_t n);
/* The node's reply is whole: false (and why) when the node could not answer it. */
bool tg_rpc_reply_ok(struct tg_txn *t, const char **why);
/* The leg t sends has its node's reply, accepted or kept as the node's word (no other node
 * could be asked). */
void tg_rpc_leg_done(struct tg_txn *t, bool accepted);
/* The leg t sends failed for good: true when t is a child of a fan-out (fanout.c), whose
 * failure goes into the answer; false for the client's transaction. */
bool tg_rpc_leg_failed(struct tg_txn *t, const char *msg);
/* A child of a fan-out has written its whole request (fanout.c); it may end here. */
void tg_rpc_leg_sent(struct tg_txn *t);
void tg_rpc_txn_free(struct tg_txn *t);
/* One text message of a JSON-RPC WebSocket from the client: its calls checked against the
 * policies and charged to the limits. TG_RPC_WS_FORWARD: send it as it is; TG_RPC_WS_SPLIT: send
 * fwd (the allowed calls) and give local (errors for the others) to the client;
 * TG_RPC_WS_LOCAL: give local to the client, send nothing. local may be empty (refused
 * notifications get no answer). */
enum { TG_RPC_WS_FORWARD, TG_RPC_WS_SPLIT, TG_RPC_WS_LOCAL };
struct tg_sbuf;
int tg_rpc_ws_message(struct tg_txn *t, const char *msg, size_t len, struct tg_sbuf *local,
                      struct tg_sbuf *fwd);
void tg_rpc_worker_dispose(struct tg_worker *w);
int tg_rpc_status_code(int status);
const char *tg_rpc_request_id(const struct tg_txn *t, size_t *len);

/* cache.c: routes with a cache section */
struct tg_cache_txn;
/* The cache phase: true when the request was answered from the cache or waits for another
 * request's fill; false when it goes upstream (t->cache set when its response may be stored). */
bool tg_cache_begin(struct tg_txn *t);
/* The node's response head is parsed: decides whether the response is stored. */
void tg_cache_head_arrived(struct tg_txn *t);
/* n body bytes of the node's response, as they go to the client. */
void tg_cache_body(struct tg_txn *t, const char *p, size_t n);
/* Counts a request (or a JSON-RPC call) in tollgate_cache_requests_total{route,result}. */
void tg_cache_count(struct tg_txn *t, unsigned result);
/* The node failed: sends the stale entry kept for stale_if_error instead (true), if any. */
bool tg_cache_serve_stale(struct tg_txn *t);
bool tg_cache_has_stale(const struct tg_txn *t);
void tg_cache_txn_free(struct tg_txn *t);
void tg_cache_worker_dispose(struct tg_worker *w);
extern const char *const tg_cache_results[];
#define TG_CACHE_RESULTS 5
/* tollgate_cache_requests_total{result}, in the order of tg_cache_results */
enum { TG_CACHED_HIT, TG_CACHED_MISS, TG_CACHED_STALE, TG_CACHED_COALESCED, TG_CACHED_BYPASS };

/* tunnel.c: WebSocket tunnels */
/* The node accepted the upgrade and its 101 head is queued in res_out: bytes flow both ways. */
void tg_tunnel_start(struct tg_txn *t);
void tg_tunnel_run(struct tg_txn *t);
/* Writes what is pending in q to s, counting the bytes. Returns 1 when all of it is out, 0 when
 * s cannot take more now, -1 when s failed. */
int tg_tunnel_flush(struct tg_sock *s, struct tg_iovq *q, uint64_t *counter);

/* wsrpc.c: JSON-RPC over WebSocket */
struct tg_wsrpc;
struct tg_wsrpc *tg_wsrpc_start(struct tg_txn *t);
void tg_wsrpc_run(struct tg_txn *t, struct tg_wsrpc *s);
void tg_wsrpc_free(struct tg_wsrpc *s);
/* The WebSocket state of a JSON-RPC transaction (jsonrpc.c keeps it, frees it with t). */
struct tg_wsrpc **tg_rpc_ws(struct tg_txn *t);
/* forward.c, for tunnel.c: makes conn->in hold keep_in bytes from its start (pointers into the
 * request head follow the buffer). */
void tg_txn_hold_room(struct tg_txn *t);

/* retry.c: the retry policy and budget */
/* Counts a request towards the service's retry budget window. */
void tg_retry_note_request(struct tg_service *svc, uint32_t worker, uint64_t now_us);
bool tg_method_idempotent(int method);
/* Whether an attempt that failed for why (status for TG_FAIL_STATUS) should be retried:
 * attempts left, the condition in retry.on, and safe to send again (nothing reached the node,
 * or the request is held whole and idempotent by method or by route). */
bool tg_retry_wanted(const struct tg_txn *t, enum tg_fail why, int status);
/* Takes one retry from the service's budget; false (and counted) when it is spent. */
bool tg_retry_budget_take(struct tg_txn *t);
/* The delay before attempt number `attempt` (2 = first retry): jittered exponential backoff. */
tg_msec_t tg_retry_backoff(struct tg_service *svc, uint32_t worker, unsigned attempt);

/* runtime.c */
/* Builds a snapshot of cf for num_workers workers, reusing the unchanged nodes of prev (the
 * current snapshot, or NULL). Returns NULL with a message in err. */
struct tg_runtime *tg_runtime_new(struct tg_config *cf, struct tg_dns *dns,
                                  const struct tg_runtime *prev, size_t num_workers, char *err,
                                  size_t errlen);
/* Points the process-wide identity state (key table, JWT keys, cluster sync) at rt's config;
 * called once rt is certain to replace the current snapshot, before workers see it. */
void tg_runtime_commit(struct tg_runtime *rt);
struct tg_runtime *tg_runtime_take(struct tg_runtime *rt);
void tg_runtime_drop(struct tg_runtime *rt);
bool tg_runtime_trusted(const struct tg_runtime *rt, const struct sockaddr_in6 *peer);

#endif
