/*
 * Event loop: edge-triggered epoll, a single-level timer wheel and a cached coarse clock.
 *
 * The wheel has TG_WHEEL_SLOTS slots of TG_WHEEL_TICK ms each. A timer goes into the slot of its
 * expiry tick; timers further away than one turn of the wheel share slots with nearer ones and
 * are simply skipped (left in place) until their turn comes, which costs one comparison per turn.
 * Arming and disarming are O(1) list operations and never allocate, so connection timers can be
 * re-armed on every request.
 */
#include "event/loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "core/syscall.h"

#define TG_WHEEL_BITS  12
#define TG_WHEEL_SLOTS (1u << TG_WHEEL_BITS)
#define TG_WHEEL_TICK  16 /* ms */
#define TG_MAX_EVENTS  256

struct tg_post {
    struct tg_post *next;
    tg_post_cb cb;
    void *arg;
};

struct tg_loop {
    int epfd;
    bool stop;
    tg_msec_t now;
    uint64_t now_us;
    int64_t wall;
    int64_t wall_ms;
    uint64_t iterations;
    uint64_t qs;   /* qsbr.c: iterations << 1, low bit set while sleeping in epoll_wait */
    uint64_t tick; /* next tick to process */
    uint64_t hint; /* no armed timer sits in a slot before this tick (a lower bound) */
    size_t armed;  /* timers in the wheel */
    struct tg_timer wheel[TG_WHEEL_SLOTS]; /* list heads */
    struct tg_watch post_watch;
    tg_post_cb batch_end;
    void *batch_end_arg;
    pthread_mutex_t post_lock;
    struct {
        /* Guarded by post_lock: written by any thread, drained by the loop's own. */
        struct tg_post *head, **tail;
    } shared;
};

static void tg__loop_clock(struct tg_loop *loop)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    loop->now_us = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
    loop->now = loop->now_us / 1000;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    loop->wall = ts.tv_sec;
    loop->wall_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void tg__loop_post_drain(struct tg_loop *loop, struct tg_watch *w, unsigned events)
{
    (void)events;
    struct tg_post *p, *next;
    uint64_t v;

    while (read(w->fd, &v, sizeof(v)) > 0)
        ;
    pthread_mutex_lock(&loop->post_lock);
    p = loop->shared.head;
    loop->shared.head = NULL;
    loop->shared.tail = &loop->shared.head;
    pthread_mutex_unlock(&loop->post_lock);
    for (; p != NULL; p = next) {
        next = p->next;
        p->cb(loop, p->arg);
        free(p);
    }
}

struct tg_loop *tg_loop_new(void)
{
    struct tg_loop *loop = tg_calloc(1, sizeof(*loop));

    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0)
        tg_fatal("epoll_create1: %s", strerror(errno));
    for (size_t i = 0; i < TG_WHEEL_SLOTS; i++)
        loop->wheel[i].next = loop->wheel[i].prev = &loop->wheel[i];
    tg__loop_clock(loop);
    loop->tick = loop->now / TG_WHEEL_TICK;
    pthread_mutex_init(&loop->post_lock, NULL);
    loop->shared.tail = &loop->shared.head;
    loop->post_watch.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->post_watch.fd < 0)
        tg_fatal("eventfd: %s", strerror(errno));
    loop->post_watch.cb = tg__loop_post_drain;
    if (tg_loop_add_listener(loop, &loop->post_watch, false) != 0)
        tg_fatal("cannot watch eventfd");
    return loop;
}

void tg_loop_free(struct tg_loop *loop)
{
    struct tg_post *p, *next;

    if (loop == NULL)
        return;
    for (p = loop->shared.head; p != NULL; p = next) {
        next = p->next;
        free(p);
    }
    close(loop->post_watch.fd);
    close(loop->epfd);
    pthread_mutex_destroy(&loop->post_lock);
    free(loop);
}

static int tg__loop_ctl(struct tg_loop *loop, int op, struct tg_watch *w, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = w};

    return epoll_ctl(loop->epfd, op, w->fd, &ev) == 0 ? 0 : -errno;
}

int tg_loop_add(struct tg_loop *loop, struct tg_watch *w)
{
    return tg__loop_ctl(loop, EPOLL_CTL_ADD, w, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
}

int tg_loop_add_listener(struct tg_loop *loop, struct tg_watch *w, bool exclusive)
{
    return tg__loop_ctl(loop, EPOLL_CTL_ADD, w, EPOLLIN | (exclusive ? EPOLLEXCLUSIVE : 0));
}

int tg_loop_add_level(struct tg_loop *loop, struct tg_watch *w, bool want_write)
{
    uint32_t events = EPOLLIN | (want_write ? EPOLLOUT : 0);
    int rc = tg__loop_ctl(loop, EPOLL_CTL_MOD, w, events);

    return rc == -ENOENT ? tg__loop_ctl(loop, EPOLL_CTL_ADD, w, events) : rc;
}

void tg_loop_del(struct tg_loop *loop, struct tg_watch *w)
{
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, w->fd, NULL);
}

tg_msec_t tg_loop_now(const struct tg_loop *loop)
{
    return loop->now;
}

uint64_t tg_loop_now_us(const struct tg_loop *loop)
{
    return loop->now_us;
}

int64_t tg_loop_wall_ms(const struct tg_loop *loop)
{
    return loop->wall_ms;
}

int64_t tg_loop_wall(const struct tg_loop *loop)
{
    return loop->wall;
}

uint64_t tg_loop_iterations(const struct tg_loop *loop)
{
    return __atomic_load_n(&loop->iterations, __ATOMIC_RELAXED);
}

void tg_timer_disarm(struct tg_timer *t)
{
    if (t->next == NULL)
        return;
    t->next->prev = t->prev;
    t->prev->next = t->next;
    t->next = t->prev = NULL;
}

void tg_timer_arm(struct tg_loop *loop, struct tg_timer *t, tg_msec_t delay, tg_timer_cb cb)
{
    uint64_t tick;
    struct tg_timer *head;

    if (t->next != NULL) {
        t->next->prev = t->prev;
        t->prev->next = t->next;
    } else {
        loop->armed++;
    }
    t->cb = cb;
    t->expires = loop->now + delay;
    /* Round up so a timer never fires early, and never into a tick already processed. */
    tick = (t->expires + TG_WHEEL_TICK - 1) / TG_WHEEL_TICK;
    if (tick < loop->tick)
        tick = loop->tick;
    if (tick < loop->hint)
        loop->hint = tick;
    head = &loop->wheel[tick & (TG_WHEEL_SLOTS - 1)];
    t->prev = head->prev;
    t->next = head;
    head->prev->next = t;
    head->prev = t;
}

static void tg__loop_run_timers(struct tg_loop *loop)
{
    uint64_t last = loop->now / TG_WHEEL_TICK;

    for (; loop->tick <= last; loop->tick++) {
        struct tg_timer *head = &loop->wheel[loop->tick & (TG_WHEEL_SLOTS - 1)];
        struct tg_timer marker = {0};

        if (loop->armed == 0) {
            loop->tick = last + 1;
            break;
        }
        /* A callback may arm or disarm any timer, including the next one in this slot, so walk
         * with a marker node that stays in the list behind the timer being examined. */
        marker.next = head->next;
        marker.prev = head;
        head->next->prev = &marker;
        head->next = &marker;
        while (marker.next != head) {
            struct tg_timer *t = marker.next;

            /* advance the marker past t */
            marker.next = t->next;
            t->next->prev = &marker;
            t->prev = marker.prev;
            marker.prev->next = t;
            t->next = &marker;
            marker.prev = t;
            if (t->expires > loop->now)
                continue;
            tg_timer_disarm(t);
            loop->armed--;
            t->cb(loop, t);
        }
        marker.prev->next = marker.next;
        marker.next->prev = marker.prev;
    }
}

/*
 * Milliseconds epoll_wait may sleep: until the next non-empty slot, at most one wheel turn.
 * The slot scan runs only when the hint has been reached, so a busy loop pays O(1) here.
 */
static int tg__loop_timeout(struct tg_loop *loop)
{
    tg_msec_t at;

    if (loop->armed == 0)
        return -1;
    if (loop->hint < loop->tick) {
        uint64_t i;

        for (i = 0; i < TG_WHEEL_SLOTS; i++) {
            struct tg_timer *head = &loop->wheel[(loop->tick + i) & (TG_WHEEL_SLOTS - 1)];

            if (head->next != head)
                break;
        }
        loop->hint = loop->tick + i;
    }
    at = loop->hint * TG_WHEEL_TICK;
    return at > loop->now ? (int)(at - loop->now) : 0;
}

void tg_loop_run(struct tg_loop *loop)
{
    struct epoll_event events[TG_MAX_EVENTS];

    loop->stop = false;
    while (!loop->stop) {
        int timeout = tg__loop_timeout(loop);
        int n;

        /* quiescent while asleep; awake (a full barrier) before any shared table is read */
        __atomic_store_n(&loop->qs, loop->iterations << 1 | 1, __ATOMIC_RELEASE);
        n = tg_sys_epoll_wait(loop->epfd, events, TG_MAX_EVENTS, timeout);
        __atomic_store_n(&loop->qs, loop->iterations << 1, __ATOMIC_SEQ_CST);
        tg__loop_clock(loop);
        for (int i = 0; i < n; i++) {
            struct tg_watch *w = events[i].data.ptr;
            uint32_t e = events[i].events;
            unsigned ev = 0;

            if (e & (EPOLLIN | EPOLLRDHUP))
                ev |= TG_EV_READ;
            if (e & (EPOLLRDHUP | EPOLLHUP))
                ev |= TG_EV_HUP;
            if (e & EPOLLOUT)
                ev |= TG_EV_WRITE;
            if (e & (EPOLLERR | EPOLLHUP))
                ev |= TG_EV_ERROR | TG_EV_READ | TG_EV_WRITE;
            w->cb(loop, w, ev);
        }
        if (loop->batch_end != NULL)
            loop->batch_end(loop, loop->batch_end_arg);
        tg__loop_run_timers(loop);
        __atomic_store_n(&loop->iterations, loop->iterations + 1, __ATOMIC_RELAXED);
    }
}

uint64_t tg_loop_qs_state(const struct tg_loop *loop)
{
    return __atomic_load_n(&loop->qs, __ATOMIC_ACQUIRE);
}

void tg_loop_on_batch_end(struct tg_loop *loop, tg_post_cb cb, void *arg)
{
    loop->batch_end = cb;
    loop->batch_end_arg = arg;
}

void tg_loop_stop(struct tg_loop *loop)
{
    loop->stop = true;
}

void tg_loop_post(struct tg_loop *loop, tg_post_cb cb, void *arg)
{
    struct tg_post *p = tg_malloc(sizeof(*p));
    uint64_t one = 1;

    p->next = NULL;
    p->cb = cb;
    p->arg = arg;
    pthread_mutex_lock(&loop->post_lock);
    *loop->shared.tail = p;
    loop->shared.tail = &p->next;
    pthread_mutex_unlock(&loop->post_lock);
    if (write(loop->post_watch.fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        tg_fatal("eventfd write: %s", strerror(errno));
}
