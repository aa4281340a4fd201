#include "obs/log.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "core/json.h"
#include "obs/accesslog.h"

static atomic_int tg__log_level = TG_LOG_INFO;
static atomic_uint_fast64_t tg__log_drops;

/*
 * The queue used while the log writers run. Diagnostic lines are rare, so a mutex is fine. They
 * have a thread of their own (not the access-log writer's), so a stdout that nobody reads never
 * holds back stderr; it never holds the lock while it writes.
 */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t ready;
    pthread_t thread;
    bool active;  /* lines go here rather than to fd 2 */
    bool running; /* the thread was started */
    bool stop;
    atomic_bool abandon; /* stop gave up waiting for a blocked stderr */
    unsigned fill;       /* which of buf[] producers append to */
    size_t len;          /* bytes queued in buf[fill] */
    char buf[2][TG_LOG_QUEUE_BYTES];
} tg__logq = {.lock = PTHREAD_MUTEX_INITIALIZER, .ready = PTHREAD_COND_INITIALIZER};

static const char *const tg__log_names[] = {"debug", "info", "warn", "error"};

void tg_log_set_level(int level)
{
    atomic_store_explicit(&tg__log_level, level, memory_order_relaxed);
}

bool tg_log_enabled(int level)
{
    return level >= atomic_load_explicit(&tg__log_level, memory_order_relaxed);
}

uint64_t tg_log_dropped(void)
{
    return atomic_load_explicit(&tg__log_drops, memory_order_relaxed);
}

/* Writes a whole line to fd 2 from the calling thread; errors are ignored, as stderr is the
 * last place a failure could be reported. */
static void tg__log_write_direct(const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(2, p, len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        p += n;
        len -= (size_t)n;
    }
}

static void *tg__log_thread(void *arg)
{
    sigset_t set;

    sigfillset(&set);
    sigdelset(&set, TG_LOGWRITER_SIGNAL); /* the stop's kick interrupts a blocked write */
    pthread_sigmask(SIG_SETMASK, &set, NULL);
    pthread_mutex_lock(&tg__logq.lock);
    for (;;) {
        const char *p;
        size_t len;

        while (tg__logq.len == 0 && !tg__logq.stop)
            pthread_cond_wait(&tg__logq.ready, &tg__logq.lock);
        if (tg__logq.len == 0)
            break;
        p = tg__logq.buf[tg__logq.fill];
        len = tg__logq.len;
        tg__logq.fill ^= 1;
        tg__logq.len = 0;
        pthread_mutex_unlock(&tg__logq.lock);
        while (len > 0) {
            ssize_t n = write(2, p, len);

            if (n < 0 && errno == EINTR && !atomic_load(&tg__logq.abandon))
                continue;
            if (n <= 0) { /* abandoned at stop, or stderr is broken: count what is left */
                for (size_t i = 0; i < len; i++)
                    if (p[i] == '\n')
                        atomic_fetch_add_explicit(&tg__log_drops, 1, memory_order_relaxed);
                break;
            }
            p += n;
            len -= (size_t)n;
        }
        pthread_mutex_lock(&tg__logq.lock);
    }
    pthread_mutex_unlock(&tg__logq.lock);
    return NULL;
}

void tg__log_queue_open(int wake_fd)
{
    (void)wake_fd;
    pthread_mutex_lock(&tg__logq.lock);
    if (!tg__logq.running) {
        tg__logq.stop = false;
        atomic_store(&tg__logq.abandon, false);
        tg__logq.running = pthread_create(&tg__logq.thread, NULL, tg__log_thread, NULL) == 0;
        if (tg__logq.running)
            pthread_setname_np(tg__logq.thread, "tg-log-err");
    }
    tg__logq.active = tg__logq.running;
    pthread_mutex_unlock(&tg__logq.lock);
}

void tg__log_queue_close(void)
{
    struct timespec deadline;
    bool running;

    pthread_mutex_lock(&tg__logq.lock);
    tg__logq.active = false;
    tg__logq.stop = true;
    running = tg__logq.running;
    tg__logq.running = false;
    pthread_cond_signal(&tg__logq.ready);
    pthread_mutex_unlock(&tg__logq.lock);
    if (!running)
        return;
    /* the last queued lines are written first; a stderr nobody reads gets one second */
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 1;
    if (pthread_timedjoin_np(tg__logq.thread, NULL, &deadline) != 0) {
        /* blocked on stderr: interrupt the write (TG_LOGWRITER_SIGNAL has a no-op handler
         * without SA_RESTART) until the thread notices, counting the lines it drops */
        atomic_store(&tg__logq.abandon, true);
        do {
            pthread_kill(tg__logq.thread, TG_LOGWRITER_SIGNAL);
            clock_gettime(CLOCK_REALTIME, &deadline);
            deadline.tv_nsec += 50 * 1000000L;
            if (deadline.tv_nsec >= 1000000000L) {
                deadline.tv_sec++;
                deadline.tv_nsec -= 1000000000L;
            }
        } while (pthread_timedjoin_np(tg__logq.thread, NULL, &deadline) != 0);
    }
}

struct tg_str tg__log_queue_swap(void)
{
    struct tg_str s;

    pthread_mutex_lock(&tg__logq.lock);
    s.base = tg__logq.buf[tg__logq.fill];
    s.len = tg__logq.len;
    tg__logq.fill ^= 1;
    tg__logq.len = 0;
    pthread_mutex_unlock(&tg__logq.lock);
    return s;
}

static void tg__log_emit(const char *line, size_t len)
{
    pthread_mutex_lock(&tg__logq.lock);
    if (!tg__logq.active) {
        pthread_mutex_unlock(&tg__logq.lock);
        tg__log_write_direct(line, len);
        return;
    }
    if (len <= TG_LOG_QUEUE_BYTES - tg__logq.len) {
        memcpy(tg__logq.buf[tg__logq.fill] + tg__logq.len, line, len);
        if (tg__logq.len == 0)
            pthread_cond_signal(&tg__logq.ready);
        tg__logq.len += len;
    } else {
        atomic_fetch_add_explicit(&tg__log_drops, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&tg__logq.lock);
}

static void tg__log_vline(int level, const char *fields, const char *fmt, va_list ap)
{
    static const char head[] = "{\"ts\":\"";
    char msg[TG_LOG_MSG_MAX], stackbuf[8192], *line = stackbuf;
    size_t msglen, fieldslen = fields ? strlen(fields) : 0, need, len = 0;
    struct timespec now;
    const char *name;
    int n;

    n = vsnprintf(msg, sizeof msg, fmt, ap);
    msglen = n < 0 ? 0 : TG_MIN((size_t)n, sizeof msg - 1);
    /* Room for the fixed text (well under 96 bytes), the worst-case escaped message and the
     * fields; a long list of errors gets a heap buffer rather than being cut. */
    need = 96 + TG_JSON_ESCAPE_MAX(msglen) + fieldslen;
    if (need > sizeof stackbuf)
        line = tg_malloc(need);

    clock_gettime(CLOCK_REALTIME, &now);
    memcpy(line, head, sizeof head - 1);
    len = sizeof head - 1;
    len += tg_json_time(line + len, (int64_t)now.tv_sec);
    len += (size_t)snprintf(line + len, need - len, ".%03dZ\",\"level\":\"",
                            (int)(now.tv_nsec / 1000000));
    name = tg__log_names[level < TG_LOG_DEBUG ? 0 : level > TG_LOG_ERROR ? 3 : level];
    memcpy(line + len, name, strlen(name));
    len += strlen(name);
    memcpy(line + len, "\",\"msg\":\"", 9);
    len += 9;
    len += tg_json_escape(line + len, need - len, msg, msglen);
    line[len++] = '"';
    if (fieldslen > 0) {
        line[len++] = ',';
        memcpy(line + len, fields, fieldslen);
        len += fieldslen;
    }
    line[len++] = '}';
    line[len++] = '\n';
    tg__log_emit(line, len);
    if (line != stackbuf)
        free(line);
}

void tg_log(int level, const char *fmt, ...)
{
    va_list ap;

    if (!tg_log_enabled(level))
        return;
    va_start(ap, fmt);
    tg__log_vline(level, NULL, fmt, ap);
    va_end(ap);
}

void tg_log_fields(int level, const char *json_fields, const char *fmt, ...)
{
    va_list ap;

    if (!tg_log_enabled(level))
        return;
    va_start(ap, fmt);
    tg__log_vline(level, json_fields, fmt, ap);
    va_end(ap);
}
