#include "obs/accesslog.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "core/json.h"
#include "obs/log.h"

#define TG__FLUSH_MS   50   /* the writer's sleep when nobody wakes it */
#define TG__STOP_MS    1000 /* how long tg_logwriter_stop() waits on a blocked fd */
#define TG__KICK_MS    10   /* then how often it interrupts the writer's blocked write */
#define TG__CACHE_LINE 64

/* The "YYYY-MM-DDTHH:MM:SS" of the last second formatted: gmtime_r() once a second, not once a
 * line. Each ring has its own, as a ring has a single producer. */
struct tg__ts_cache {
    int64_t sec;
    char text[TG_JSON_TIME_LEN];
};

/*
 * A single-producer, single-consumer byte ring. head and tail count bytes ever queued and ever
 * written out; they only grow, so head - tail is the fill level and (counter & mask) the
 * offset. Lines are stored back to back as raw bytes, so the writer hands ring memory straight to
 * writev() (two segments when the data wraps). The producer publishes bytes with a release store
 * of head; the writer releases space with a release store of tail once the bytes are written.
 */
struct tg_access_ring {
    /* Set up by tg_logwriter_start(), read-only afterwards. */
    char *buf;
    uint64_t size, mask;
    int wake_fd;

    /* Producer side: written by the owning worker only. */
    _Alignas(TG__CACHE_LINE) _Atomic uint64_t head;
    uint64_t tail_cache; /* a tail seen earlier (<= tail): avoids reading the writer's line */
    _Atomic uint64_t dropped;
    struct tg__ts_cache ts;

    /* Consumer side: written by the writer thread only. */
    _Alignas(TG__CACHE_LINE) _Atomic uint64_t tail;
    uint64_t snap; /* head taken by the current pass; tail == snap between passes */

    /* Producer side: a line that would straddle the end of buf is formatted here, then copied
     * in two pieces. */
    _Alignas(TG__CACHE_LINE) char scratch[TG_ACCESS_LINE_MAX];
};

/* Writer state. start and stop run on one thread; lock only keeps the ring array stable for
 * tg_logwriter_dropped_total(), which any thread may call. */
static struct {
    pthread_mutex_t lock;
    bool running;
    pthread_t thread;
    atomic_bool stop;
    int efd, out_fd;
    struct tg_access_ring **rings;
    size_t num_rings;
    struct iovec *iov;      /* 2 per ring, used by the writer thread only */
    atomic_int busy;        /* TG__OUT or TG__ERR while the writer writes there, else -1 */
    atomic_bool give_up[2]; /* set by a stop that timed out: drop what is left for that fd */
    _Atomic uint64_t lost;  /* lines lost after they were queued, and drops of freed rings */
} tg__lw = {.lock = PTHREAD_MUTEX_INITIALIZER, .efd = -1, .out_fd = -1, .busy = -1};

/* The writer's two destinations: access lines (out_fd) and diagnostic lines (fd 2). */
enum { TG__OUT, TG__ERR };

/* --- formatting ------------------------------------------------------------------------------ */

#define TG__LIT(o, s) (memcpy((o), (s), sizeof(s) - 1), (o) + sizeof(s) - 1)

/* The member prefixes, in output order. */
#define TG__K_TS          "{\"ts\":\""
#define TG__K_REQUEST_ID  "\",\"request_id\":"
#define TG__K_TRACE_ID    ",\"trace_id\":"
#define TG__K_ROUTE       ",\"route\":"
#define TG__K_METHOD      ",\"method\":"
#define TG__K_HOST        ",\"host\":"
#define TG__K_PATH        ",\"path\":"
#define TG__K_STATUS      ",\"status\":"
#define TG__K_BYTES_IN    ",\"bytes_in\":"
#define TG__K_BYTES_OUT   ",\"bytes_out\":"
#define TG__K_DURATION    ",\"duration_ms\":"
#define TG__K_UPSTREAM    ",\"upstream\":"
#define TG__K_UPSTREAM_MS ",\"upstream_ms\":"
#define TG__K_CLIENT      ",\"client\":"

#define TG__KLEN(k)     (sizeof(k) - 1)
#define TG__SBOUND(max) ((max) + 2) /* quoted; "null" is shorter */
#define TG__U64_DIGITS  20
#define TG__MS_BOUND    (17 + 4) /* UINT64_MAX / 1000 has 17 digits, then ".mmm" */

/* The longest line tg__access_format() can write: the writer reserves this much in place. */
enum {
    TG__LINE_BOUND =
        TG__KLEN(TG__K_TS) + TG_JSON_TIME_LEN + 5 /* ".mmmZ" */ + TG__KLEN(TG__K_REQUEST_ID) +
        TG__SBOUND(TG_ACCESS_REQUEST_ID_MAX) + TG__KLEN(TG__K_TRACE_ID) +
        TG__SBOUND(TG_ACCESS_TRACE_ID_MAX) + TG__KLEN(TG__K_ROUTE) +
        TG__SBOUND(TG_ACCESS_NAME_MAX) + TG__KLEN(TG__K_METHOD) + TG__SBOUND(TG_ACCESS_METHOD_MAX) +
        TG__KLEN(TG__K_HOST) + TG__SBOUND(TG_ACCESS_HOST_MAX) + TG__KLEN(TG__K_PATH) +
        TG__SBOUND(TG_ACCESS_PATH_MAX) + TG__KLEN(TG__K_STATUS) + 11 /* "-2147483648" */ +
        TG__KLEN(TG__K_BYTES_IN) + TG__U64_DIGITS + TG__KLEN(TG__K_BYTES_OUT) + TG__U64_DIGITS +
        TG__KLEN(TG__K_DURATION) + TG__MS_BOUND + TG__KLEN(TG__K_UPSTREAM) +
        TG__SBOUND(TG_ACCESS_NAME_MAX) + TG__KLEN(TG__K_UPSTREAM_MS) + TG__MS_BOUND +
        TG__KLEN(TG__K_CLIENT) + TG__SBOUND(TG_ACCESS_CLIENT_MAX) + 2 /* "}\n" */
};
_Static_assert(TG__LINE_BOUND <= TG_ACCESS_LINE_MAX, "an access line may exceed the reserve");

/* Microseconds as milliseconds with exactly three decimals: 412 -> "0.412". */
static char *tg__put_ms(char *o, uint64_t us)
{
    unsigned frac = (unsigned)(us % 1000);

    o = tg_put_u64(o, us / 1000);
    o[0] = '.';
    o[1] = (char)('0' + frac / 100);
    memcpy(o + 2, tg_digits2 + 2 * (frac % 100), 2);
    return o + 4;
}

static char *tg__put_str(char *o, const char *s, size_t len, size_t max)
{
    if (s == NULL)
        return TG__LIT(o, "null");
    *o++ = '"';
    o += tg_json_escape(o, max, s, len);
    *o++ = '"';
    return o;
}

/* Config names are short; the bound only stops a scan of a bogus pointer's neighbours. */
static char *tg__put_name(char *o, const char *s)
{
    return tg__put_str(o, s, s ? strnlen(s, TG_ACCESS_NAME_MAX * 4) : 0, TG_ACCESS_NAME_MAX);
}

/* Writes at most TG__LINE_BOUND bytes at out, without bounds checks: every variable part is
 * capped by its own TG_ACCESS_*_MAX. */
static size_t tg__access_format(char *out, const struct tg_access_entry *e, struct tg__ts_cache *tc)
{
    int64_t ms = e->ts_ms < 0 ? 0 : e->ts_ms, sec = ms / 1000;
    unsigned msec = (unsigned)(ms % 1000);
    char *o = out;

    if (TG_UNLIKELY(sec != tc->sec)) {
        tg_json_time(tc->text, sec);
        tc->sec = sec;
    }
    o = TG__LIT(o, TG__K_TS);
    memcpy(o, tc->text, TG_JSON_TIME_LEN);
    o += TG_JSON_TIME_LEN;
    o[0] = '.';
    o[1] = (char)('0' + msec / 100);
    memcpy(o + 2, tg_digits2 + 2 * (msec % 100), 2);
    o[4] = 'Z';
    o += 5;
    o = TG__LIT(o, TG__K_REQUEST_ID);
    o = tg__put_str(o, e->request_id, e->request_id_len, TG_ACCESS_REQUEST_ID_MAX);
    if (e->trace_id != NULL) {
        o = TG__LIT(o, TG__K_TRACE_ID);
        o = tg__put_str(o, e->trace_id, strnlen(e->trace_id, 32), TG_ACCESS_TRACE_ID_MAX);
    }
    o = TG__LIT(o, TG__K_ROUTE);
    o = tg__put_name(o, e->route);
    o = TG__LIT(o, TG__K_METHOD);
    o = tg__put_str(o, e->method, e->method_len, TG_ACCESS_METHOD_MAX);
    o = TG__LIT(o, TG__K_HOST);
    o = tg__put_str(o, e->host, e->host_len, TG_ACCESS_HOST_MAX);
    o = TG__LIT(o, TG__K_PATH);
    o = tg__put_str(o, e->path, e->path_len, TG_ACCESS_PATH_MAX);
    o = TG__LIT(o, TG__K_STATUS);
    if (e->status < 0)
        *o++ = '-';
    o = tg_put_u64(o, e->status < 0 ? -(uint64_t)e->status : (uint64_t)e->status);
    o = TG__LIT(o, TG__K_BYTES_IN);
    o = tg_put_u64(o, e->bytes_in);
    o = TG__LIT(o, TG__K_BYTES_OUT);
    o = tg_put_u64(o, e->bytes_out);
    o = TG__LIT(o, TG__K_DURATION);
    o = tg__put_ms(o, e->duration_us);
    o = TG__LIT(o, TG__K_UPSTREAM);
    o = tg__put_name(o, e->upstream);
    o = TG__LIT(o, TG__K_UPSTREAM_MS);
    if (e->upstream_us < 0)
        o = TG__LIT(o, "null");
    else
        o = tg__put_ms(o, (uint64_t)e->upstream_us);
    o = TG__LIT(o, TG__K_CLIENT);
    o = tg__put_str(o, e->client, e->client_len, TG_ACCESS_CLIENT_MAX);
    o[0] = '}';
    o[1] = '\n';
    return (size_t)(o + 2 - out);
}

size_t tg_access_format(char *out, size_t cap, const struct tg_access_entry *e)
{
    struct tg__ts_cache tc = {.sec = INT64_MIN};

    if (cap < TG_ACCESS_LINE_MAX)
        return 0;
    return tg__access_format(out, e, &tc);
}

/* --- producer -------------------------------------------------------------------------------- */

static void tg__ring_count_drop(struct tg_access_ring *r)
{
    /* Single writer: a plain increment is enough and avoids a locked instruction. */
    uint64_t d = atomic_load_explicit(&r->dropped, memory_order_relaxed);

    atomic_store_explicit(&r->dropped, d + 1, memory_order_relaxed);
}

bool tg_access_log(struct tg_access_ring *r, const struct tg_access_entry *e)
{
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t pos = head & r->mask, contig = r->size - pos, room, half = r->size / 2;
    size_t n, first;

    room = r->size - (head - r->tail_cache);
    if (room < TG_ACCESS_LINE_MAX) {
        r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
        room = r->size - (head - r->tail_cache);
    }
    if (TG_LIKELY(room >= TG_ACCESS_LINE_MAX && contig >= TG_ACCESS_LINE_MAX)) {
        n = tg__access_format(r->buf + pos, e, &r->ts);
    } else {
        /* Near the end of buf, or nearly full: format aside and keep the line if it fits. */
        n = tg__access_format(r->scratch, e, &r->ts);
        if (n > room) {
            tg__ring_count_drop(r);
            return false;
        }
        first = TG_MIN(n, contig);
        memcpy(r->buf + pos, r->scratch, first);
        memcpy(r->buf, r->scratch + first, n - first);
    }
    atomic_store_explicit(&r->head, head + n, memory_order_release);

    /*
     * Wake the writer when the ring crosses half full, so a burst is written well before the
     * ring fills. tail_cache <= tail, so the cached fill level is never below the real one: only
     * when it reads past half is the real tail worth loading.
     */
    if (TG_UNLIKELY(head + n - r->tail_cache >= half)) {
        r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (head - r->tail_cache < half && head + n - r->tail_cache >= half) {
            uint64_t one = 1;
            ssize_t w = write(r->wake_fd, &one, sizeof one);

            (void)w; /* EAGAIN: a wake is already pending */
        }
    }
    return true;
}

uint64_t tg_access_ring_dropped(const struct tg_access_ring *r)
{
    return atomic_load_explicit(&r->dropped, memory_order_relaxed);
}

/* --- writer thread --------------------------------------------------------------------------- */

static uint64_t tg__count_lines(const char *p, size_t len)
{
    const char *end = p + len;
    uint64_t lines = 0;

    while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        lines++;
        p++;
    }
    return lines;
}

static uint64_t tg__count_iov_lines(const struct iovec *iov, size_t n)
{
    uint64_t lines = 0;
    size_t i;

    for (i = 0; i < n; i++)
        lines += tg__count_lines(iov[i].iov_base, iov[i].iov_len);
    return lines;
}

/* TG_LOGWRITER_SIGNAL's handler: it exists only to make a blocked write return early. */
static void tg__logwriter_kicked(int sig)
{
    (void)sig;
}

/*
 * Writes iov[0..n) (modified) to fd with blocking writes: retries on EINTR and partial writes,
 * and waits in poll() on EAGAIN (someone made the fd nonblocking). On any other error (EPIPE:
 * nobody reads any more) the data is dropped and its lines counted; the next pass tries again.
 * When a stop has given up on dest, what is left is dropped and counted: the stop interrupts
 * the blocked write with a signal, and an interrupted write reports how much it wrote, so the
 * count is exact.
 */
static void tg__writev_all(int dest, int fd, struct iovec *iov, size_t n)
{
    atomic_store_explicit(&tg__lw.busy, dest, memory_order_seq_cst);
    while (n > 0) {
        ssize_t w;

        if (atomic_load_explicit(&tg__lw.give_up[dest], memory_order_seq_cst)) {
            atomic_fetch_add_explicit(&tg__lw.lost, tg__count_iov_lines(iov, n),
                                      memory_order_relaxed);
            break;
        }
        w = writev(fd, iov, (int)TG_MIN(n, (size_t)IOV_MAX));
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                struct pollfd p = {.fd = fd, .events = POLLOUT};

                poll(&p, 1, TG__FLUSH_MS);
                continue;
            }
            atomic_fetch_add_explicit(&tg__lw.lost, tg__count_iov_lines(iov, n),
                                      memory_order_relaxed);
            break;
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    atomic_store_explicit(&tg__lw.busy, -1, memory_order_seq_cst);
}

/* One writev() for every ring's pending bytes; space is released once they are out. */
static void tg__drain_rings(void)
{
    size_t i, niov = 0;

    for (i = 0; i < tg__lw.num_rings; i++) {
        struct tg_access_ring *r = tg__lw.rings[i];
        uint64_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
        uint64_t h = atomic_load_explicit(&r->head, memory_order_acquire);
        uint64_t pos = t & r->mask, len = h - t, first = TG_MIN(len, r->size - pos);

        r->snap = h;
        if (len == 0)
            continue;
        tg__lw.iov[niov++] = (struct iovec){r->buf + pos, first};
        if (len > first)
            tg__lw.iov[niov++] = (struct iovec){r->buf, len - first};
    }
    if (niov > 0)
        tg__writev_all(TG__OUT, tg__lw.out_fd, tg__lw.iov, niov);
    for (i = 0; i < tg__lw.num_rings; i++)
        atomic_store_explicit(&tg__lw.rings[i]->tail, tg__lw.rings[i]->snap, memory_order_release);
}

static void *tg__logwriter_main(void *arg)
{
    sigset_t set;

    /* Created with every signal blocked; only the stop's kick may interrupt this thread. */
    sigfillset(&set);
    sigdelset(&set, TG_LOGWRITER_SIGNAL);
    pthread_sigmask(SIG_SETMASK, &set, NULL);
    for (;;) {
        /* Read before draining: everything queued before tg_logwriter_stop() set the flag is
         * visible to the pass that follows, so the last pass flushes it all. */
        bool stopping = atomic_load_explicit(&tg__lw.stop, memory_order_acquire);
        struct pollfd p = {.fd = tg__lw.efd, .events = POLLIN};

        /* Diagnostic lines have their own thread (log.c): a stdout nobody reads blocks only
         * the ring writes. */
        tg__drain_rings();
        if (stopping)
            break;
        if (poll(&p, 1, TG__FLUSH_MS) > 0) {
            uint64_t v;
            ssize_t n = read(tg__lw.efd, &v, sizeof v);

            (void)n; /* resets the eventfd; EAGAIN if another pass already did */
        }
    }
    return NULL;
}

/* --- start and stop -------------------------------------------------------------------------- */

static uint64_t tg__pow2_at_least(uint64_t v)
{
    uint64_t p = 1;

    while (p < v)
        p <<= 1;
    return p;
}

static void tg__ring_free(struct tg_access_ring *r)
{
    if (r != NULL) {
        free(r->buf);
        free(r);
    }
}

static struct tg_access_ring *tg__ring_new(size_t ring_bytes, int wake_fd)
{
    struct tg_access_ring *r = aligned_alloc(TG__CACHE_LINE, sizeof *r);
    uint64_t size = tg__pow2_at_least(TG_MAX(ring_bytes, 4 * (size_t)TG_ACCESS_LINE_MAX));

    if (r == NULL)
        return NULL;
    memset(r, 0, sizeof *r);
    r->size = size;
    r->mask = size - 1;
    r->wake_fd = wake_fd;
    r->ts.sec = INT64_MIN;
    r->buf = aligned_alloc(4096, size);
    if (r->buf == NULL) {
        free(r);
        return NULL;
    }
    /* Fault every page in now rather than on a worker's first lap. */
    memset(r->buf, 0, size);
    return r;
}

/* Frees the rings; their drop counts and any line never written move to tg__lw.lost. */
static void tg__rings_free_locked(void)
{
    size_t i;

    for (i = 0; i < tg__lw.num_rings; i++) {
        struct tg_access_ring *r = tg__lw.rings[i];
        uint64_t t, len, pos, first;

        if (r == NULL)
            continue;
        /* Normally empty: only a producer still logging during the stop leaves lines here. */
        t = atomic_load_explicit(&r->tail, memory_order_relaxed);
        len = atomic_load_explicit(&r->head, memory_order_acquire) - t;
        pos = t & r->mask;
        first = TG_MIN(len, r->size - pos);
        atomic_fetch_add_explicit(&tg__lw.lost,
                                  tg_access_ring_dropped(r) + tg__count_lines(r->buf + pos, first) +
                                      tg__count_lines(r->buf, len - first),
                                  memory_order_relaxed);
        tg__ring_free(r);
    }
    free(tg__lw.rings);
    free(tg__lw.iov);
    tg__lw.rings = NULL;
    tg__lw.iov = NULL;
    tg__lw.num_rings = 0;
}

int tg_logwriter_start(size_t num_rings, size_t ring_bytes, int out_fd)
{
    struct sigaction sa;
    sigset_t all, old;
    size_t i;
    int rc, err;

    if (tg__lw.running)
        return -EALREADY;
    tg__lw.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (tg__lw.efd < 0)
        return -errno;
    pthread_mutex_lock(&tg__lw.lock);
    tg__lw.rings = tg_calloc(num_rings, sizeof *tg__lw.rings);
    tg__lw.iov = tg_calloc(2 * num_rings, sizeof *tg__lw.iov);
    tg__lw.num_rings = num_rings;
    for (i = 0; i < num_rings; i++) {
        tg__lw.rings[i] = tg__ring_new(ring_bytes, tg__lw.efd);
        if (tg__lw.rings[i] == NULL) {
            rc = -ENOMEM;
            goto fail_locked;
        }
    }
    pthread_mutex_unlock(&tg__lw.lock);
    tg__lw.out_fd = out_fd;
    atomic_store(&tg__lw.stop, false);
    atomic_store(&tg__lw.give_up[TG__OUT], false);
    atomic_store(&tg__lw.give_up[TG__ERR], false);

    /* No SA_RESTART: the kick must end a blocked write rather than restart it. */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = tg__logwriter_kicked;
    sigemptyset(&sa.sa_mask);
    sigaction(TG_LOGWRITER_SIGNAL, &sa, NULL);

    /* The writer takes no other signal, so the process's signals stay with the threads that
     * expect them; a thread inherits its creator's mask. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    err = pthread_create(&tg__lw.thread, NULL, tg__logwriter_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) {
        rc = -err;
        pthread_mutex_lock(&tg__lw.lock);
        goto fail_locked;
    }
    pthread_setname_np(tg__lw.thread, "tg-log");
    tg__lw.running = true;
    tg__log_queue_open(tg__lw.efd);
    return 0;

fail_locked:
    tg__rings_free_locked();
    pthread_mutex_unlock(&tg__lw.lock);
    close(tg__lw.efd);
    tg__lw.efd = -1;
    return rc;
}

struct tg_access_ring *tg_logwriter_ring(size_t i)
{
    return tg__lw.running && i < tg__lw.num_rings ? tg__lw.rings[i] : NULL;
}

/* Joins the writer if it ends within add_ms. pthread_timedjoin_np() rather than the monotonic
 * pthread_clockjoin_np() because ThreadSanitizer understands only the former; a wall-clock step
 * during a stop only changes how long one wait lasts. */
static int tg__join_within(long add_ms)
{
    struct timespec deadline;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += add_ms / 1000;
    deadline.tv_nsec += add_ms % 1000 * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    return pthread_timedjoin_np(tg__lw.thread, NULL, &deadline);
}

void tg_logwriter_stop(void)
{
    struct tg_str d;
    uint64_t one = 1;
    ssize_t w;

    if (!tg__lw.running)
        return;
    /* From here on diagnostic lines go straight to fd 2; the queued ones are in the last pass. */
    tg__log_queue_close();
    atomic_store_explicit(&tg__lw.stop, true, memory_order_release);
    w = write(tg__lw.efd, &one, sizeof one);
    (void)w;

    if (tg__join_within(TG__STOP_MS) == ETIMEDOUT) {
        /*
         * A write is blocked. Give up on its destination and interrupt it; repeat, because the
         * kick may land just before the write starts, or the other destination may block next.
         */
        do {
            int busy = atomic_load_explicit(&tg__lw.busy, memory_order_seq_cst);

            if (busy >= 0) {
                atomic_store_explicit(&tg__lw.give_up[busy], true, memory_order_seq_cst);
                pthread_kill(tg__lw.thread, TG_LOGWRITER_SIGNAL);
            }
        } while (tg__join_within(TG__KICK_MS) == ETIMEDOUT);
    }
    /* Normally empty: the last pass took the queue after it was closed. */
    d = tg__log_queue_swap();
    atomic_fetch_add_explicit(&tg__lw.lost, tg__count_lines(d.base, d.len), memory_order_relaxed);
    pthread_mutex_lock(&tg__lw.lock);
    tg__rings_free_locked();
    pthread_mutex_unlock(&tg__lw.lock);
    close(tg__lw.efd);
    tg__lw.efd = -1;
    tg__lw.out_fd = -1;
    tg__lw.running = false;
}

uint64_t tg_logwriter_dropped_total(void)
{
    uint64_t total = atomic_load_explicit(&tg__lw.lost, memory_order_relaxed) + tg_log_dropped();
    size_t i;

    pthread_mutex_lock(&tg__lw.lock);
    for (i = 0; i < tg__lw.num_rings; i++)
        if (tg__lw.rings[i] != NULL)
            total += tg_access_ring_dropped(tg__lw.rings[i]);
    pthread_mutex_unlock(&tg__lw.lock);
    return total;
}
