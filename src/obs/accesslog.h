/*
 * Access log: one JSON object per line on stdout, in this field order:
 *   ts, request_id, trace_id (only when known), route, method, host, path, status, bytes_in,
 *   bytes_out, duration_ms, upstream, upstream_ms, client
 *
 * Every worker owns one struct tg_access_ring and formats its lines straight into it; the log
 * writer thread ("tg-log") drains all rings in batches with one writev() per pass, and also
 * writes the diagnostic log's queue (obs/log.h) to fd 2. A worker never waits on I/O: when its
 * ring is full the line is dropped and counted. The writer uses blocking writes, so a stdout
 * that nobody reads stalls only the writer.
 *
 * Client-controlled strings are JSON-escaped (core/json.h) and cut to the TG_ACCESS_*_MAX
 * output bytes below, which bounds a line to TG_ACCESS_LINE_MAX bytes.
 */
#ifndef TG_ACCESSLOG_H
#define TG_ACCESSLOG_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Most escaped bytes kept per field; a longer value is cut at an escape boundary. */
#define TG_ACCESS_REQUEST_ID_MAX 256
#define TG_ACCESS_TRACE_ID_MAX   64
#define TG_ACCESS_NAME_MAX       256 /* route and upstream */
#define TG_ACCESS_METHOD_MAX     64
#define TG_ACCESS_HOST_MAX       512
#define TG_ACCESS_PATH_MAX       2048
#define TG_ACCESS_CLIENT_MAX     128
/* Upper bound of one formatted line, newline included (checked at compile time). */
#define TG_ACCESS_LINE_MAX 4096

struct tg_access_ring;

/*
 * One request. Counted strings may have a NULL base, which prints as null; route and upstream
 * are NUL-terminated config names (NULL -> null); trace_id is 32 lowercase hex characters or
 * NULL, which omits the member.
 */
struct tg_access_entry {
    int64_t ts_ms; /* wall clock, ms since the epoch */
    const char *request_id;
    size_t request_id_len;
    const char *trace_id;
    const char *route;
    const char *method;
    size_t method_len;
    const char *host; /* client-controlled bytes */
    size_t host_len;
    const char *path; /* client-controlled bytes; cut past TG_ACCESS_PATH_MAX */
    size_t path_len;
    int status;
    uint64_t bytes_in, bytes_out;
    uint64_t duration_us; /* printed as duration_ms with 3 decimals, e.g. 0.412 */
    const char *upstream; /* node label */
    int64_t upstream_us;  /* < 0 -> null; printed as upstream_ms with 3 decimals */
    const char *client;
    size_t client_len;
};

/*
 * The signal tg_logwriter_stop() sends the writer thread to interrupt a write blocked on a
 * stdout or stderr nobody reads. tg_logwriter_start() installs a handler that does nothing,
 * without SA_RESTART, and the writer thread blocks every other signal. SIGURG is only ever sent
 * by the kernel to a socket's owner set with F_SETOWN, which tollgate does not use, and its
 * default action is to be ignored, so a stray one is harmless.
 */
#define TG_LOGWRITER_SIGNAL SIGURG

/*
 * Starts the writer thread: access lines go to out_fd (stdout in production), diagnostic lines
 * to fd 2. Creates num_rings rings of ring_bytes each, rounded up to a power of two of at least
 * 4 * TG_ACCESS_LINE_MAX (the caller's default is 1 MiB); their memory is touched here so the
 * hot path never page-faults. Call from one thread, before the workers log.
 * Returns 0, -EALREADY if the writer runs, or a negative errno (eventfd, thread creation).
 */
int tg_logwriter_start(size_t num_rings, size_t ring_bytes, int out_fd);

/* Ring i (0 <= i < num_rings) while the writer runs; NULL otherwise. */
struct tg_access_ring *tg_logwriter_ring(size_t i);

/*
 * Writes everything queued, stops and joins the writer thread, and frees the rings. Call after
 * the workers stopped logging (their rings become invalid). Waits at most about one second on a
 * blocked fd: after that it gives up on that fd, interrupts the blocked write with
 * TG_LOGWRITER_SIGNAL and counts every line not written as dropped. Diagnostic lines go straight
 * to fd 2 again afterwards. Does nothing if the writer is not running.
 */
void tg_logwriter_stop(void);

/*
 * Formats e as one JSON line into r. Returns true when queued; false, counting the line in
 * tg_access_ring_dropped(), when the ring has no room. Only r's owner thread may call it. Never
 * blocks; its only syscall is one nonblocking eventfd write when the ring crosses half full,
 * which wakes the writer earlier than its 50 ms flush interval.
 */
bool tg_access_log(struct tg_access_ring *r, const struct tg_access_entry *e);

/* Lines r dropped because it was full (relaxed load; any thread, while the writer runs). */
uint64_t tg_access_ring_dropped(const struct tg_access_ring *r);

/*
 * Every log line lost so far: full rings, failed writes to stdout, rings discarded by a stop
 * that timed out, and the diagnostic queue (tg_log_dropped()). Any thread; monotonic across
 * restarts of the writer. This is tollgate_log_lines_dropped_total.
 */
uint64_t tg_logwriter_dropped_total(void);

/*
 * Formats e as one JSON line, newline included, into out and returns its length. cap must be at
 * least TG_ACCESS_LINE_MAX (lines are never cut mid-way); with less, nothing is written and 0 is
 * returned.
 */
size_t tg_access_format(char *out, size_t cap, const struct tg_access_entry *e);

#endif
