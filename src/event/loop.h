/*
 * Event loop: one per thread, edge-triggered epoll, a timer wheel and a cached coarse clock.
 *
 * A file descriptor is registered once, for both directions, edge-triggered, and stays
 * registered for its whole life: steady-state request handling makes no epoll_ctl call.
 * The clock is read once per loop iteration (tg_loop_now()), never per request.
 * A loop is used by exactly one thread; only tg_loop_post() may be called from other threads.
 */
#ifndef TG_LOOP_H
#define TG_LOOP_H

#include <stdbool.h>
#include <stdint.h>

typedef uint64_t tg_msec_t;

struct tg_loop;
struct tg_watch;
struct tg_timer;

#define TG_EV_READ  0x1
#define TG_EV_WRITE 0x2
#define TG_EV_ERROR 0x4 /* EPOLLERR or EPOLLHUP: the next read or write reports the error */
#define TG_EV_HUP   0x8 /* the peer shut its side (EPOLLRDHUP): reads end in EOF, not EAGAIN */

typedef void (*tg_watch_cb)(struct tg_loop *loop, struct tg_watch *w, unsigned events);
typedef void (*tg_timer_cb)(struct tg_loop *loop, struct tg_timer *t);
typedef void (*tg_post_cb)(struct tg_loop *loop, void *arg);

struct tg_watch {
    int fd;
    tg_watch_cb cb;
};

/* An intrusive timer; all-zero is a valid disarmed timer. */
struct tg_timer {
    struct tg_timer *next, *prev; /* NULL when disarmed */
    tg_msec_t expires;
    tg_timer_cb cb;
};

struct tg_loop *tg_loop_new(void);
void tg_loop_free(struct tg_loop *loop);

/* Registers w->fd for read and write readiness, edge-triggered, until tg_loop_del(). Returns 0
 * or -errno. */
int tg_loop_add(struct tg_loop *loop, struct tg_watch *w);

/* As tg_loop_add(), read readiness only, for listening sockets; exclusive selects
 * EPOLLEXCLUSIVE (one listening socket shared by several loops). */
int tg_loop_add_listener(struct tg_loop *loop, struct tg_watch *w, bool exclusive);

/* Level-triggered read readiness, for descriptors owned by libraries (c-ares). */
int tg_loop_add_level(struct tg_loop *loop, struct tg_watch *w, bool want_write);

/* Unregisters w->fd. Closing the descriptor also unregisters it; call this first when the
 * descriptor may be shared (dup) or kept open. */
void tg_loop_del(struct tg_loop *loop, struct tg_watch *w);

/* Cached monotonic milliseconds, updated once per loop iteration. */
tg_msec_t tg_loop_now(const struct tg_loop *loop);

/* The same instant in microseconds, for latency measurements. */
uint64_t tg_loop_now_us(const struct tg_loop *loop);

/* Cached wall-clock seconds since the epoch, updated once per loop iteration. */
int64_t tg_loop_wall(const struct tg_loop *loop);
/* The same in milliseconds (coarse clock: a few ms of resolution), for log timestamps. */
int64_t tg_loop_wall_ms(const struct tg_loop *loop);

/* Arms (or re-arms) t to fire once after delay milliseconds. */
void tg_timer_arm(struct tg_loop *loop, struct tg_timer *t, tg_msec_t delay, tg_timer_cb cb);
void tg_timer_disarm(struct tg_timer *t);

static inline bool tg_timer_armed(const struct tg_timer *t)
{
    return t->next != 0;
}

/*
 * Sets a function called after each batch of readiness events has been dispatched. Objects
 * closed during a batch must not be reused before it ends, because events fetched in the same
 * batch may still name them; the owner recycles them here.
 */
void tg_loop_on_batch_end(struct tg_loop *loop, tg_post_cb cb, void *arg);

/* Runs the loop until tg_loop_stop(). */
void tg_loop_run(struct tg_loop *loop);
void tg_loop_stop(struct tg_loop *loop);

/* Runs cb(loop, arg) on the loop's own thread soon. Thread-safe; never blocks; allocates one
 * small record (not a hot-path operation). */
void tg_loop_post(struct tg_loop *loop, tg_post_cb cb, void *arg);

/* Number of completed loop iterations, for the /healthz stuck-loop check. */
uint64_t tg_loop_iterations(const struct tg_loop *loop);

/* Quiescence word for qsbr.c: changes at every loop iteration; odd while in epoll_wait. */
uint64_t tg_loop_qs_state(const struct tg_loop *loop);

#endif
