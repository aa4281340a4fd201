/*
 * concurrency.max: at most that many requests of a service in flight, the excess waiting in a
 * FIFO of concurrency.queue, each for at most queue_timeout, then shed with 503 and Retry-After
 * so a spike queues briefly instead of piling onto slow nodes (DESIGN §2 "admit").
 *
 * The limit and the queue are split evenly over the workers (rounded up), so each worker admits
 * on its own: no lock, no atomic and no cross-thread wake-up on the request path. With
 * SO_REUSEPORT spreading connections over the workers, the instance-wide total stays within
 * max + workers - 1. A waiting request is a suspended transaction, not a blocked thread.
 */
#include "core/core.h"
#include "proxy/proxy.h"

static uint32_t tg__share(uint32_t total, size_t workers)
{
    return (uint32_t)((total + workers - 1) / workers);
}

static void tg__unlink(struct tg_service_worker *sw, struct tg_txn *t)
{
    if (t->wait_prev != NULL)
        t->wait_prev->wait_next = t->wait_next;
    else
        sw->wait_head = t->wait_next;
    if (t->wait_next != NULL)
        t->wait_next->wait_prev = t->wait_prev;
    else
        sw->wait_tail = t->wait_prev;
    t->wait_next = t->wait_prev = NULL;
    t->queued = false;
    sw->waiting--;
}

static void tg__waited(struct tg_txn *t)
{
    struct tg_worker *w = t->conn->worker;

    tg_hist_dur_observe(&w->metrics.queue_wait, tg_loop_now_us(w->loop) - t->queued_at);
}

static void tg__shed(struct tg_txn *t)
{
    struct tg_worker *w = t->conn->worker;

    w->metrics.shed[t->svc->label]++;
    tg_txn_respond_busy(t, "overloaded", "the service is at its concurrency limit",
                        (unsigned)((t->svc->conf->conc_queue_timeout + 999) / 1000));
}

static void tg__queue_timeout(struct tg_txn *t)
{
    tg__unlink(&t->svc->w[t->conn->worker->id], t);
    tg__waited(t);
    tg__shed(t);
}

static void tg__on_queue_timeout(struct tg_loop *loop, struct tg_timer *timer)
{
    (void)loop;
    tg_txn_step(TG_CONTAINER_OF(timer, struct tg_txn, retry_timer), tg__queue_timeout);
}

static void tg__on_admitted(struct tg_loop *loop, struct tg_timer *timer)
{
    (void)loop;
    tg_txn_step(TG_CONTAINER_OF(timer, struct tg_txn, retry_timer), tg_txn_proceed);
}

bool tg_admission_enter(struct tg_txn *t)
{
    const struct tg_service_conf *sc = t->svc->conf;
    struct tg_worker *w = t->conn->worker;
    struct tg_service_worker *sw = &t->svc->w[w->id];
    size_t workers = t->rt->num_workers;

    if (sc->conc_max == 0)
        return true;
    if (sw->wait_head == NULL && sw->in_flight < tg__share(sc->conc_max, workers)) {
        sw->in_flight++;
        t->admitted = true;
        return true;
    }
    if (sw->waiting >= tg__share(sc->conc_queue, workers) || sc->conc_queue == 0) {
        t->queued_at = tg_loop_now_us(w->loop);
        tg__shed(t);
        return false;
    }
    t->queued = true;
    t->queued_at = tg_loop_now_us(w->loop);
    t->wait_prev = sw->wait_tail;
    t->wait_next = NULL;
    if (sw->wait_tail != NULL)
        sw->wait_tail->wait_next = t;
    else
        sw->wait_head = t;
    sw->wait_tail = t;
    sw->waiting++;
    tg_timer_arm(w->loop, &t->retry_timer, sc->conc_queue_timeout, tg__on_queue_timeout);
    return false;
}

void tg_admission_leave(struct tg_txn *t)
{
    struct tg_worker *w = t->conn->worker;
    struct tg_service_worker *sw = &t->svc->w[w->id];
    struct tg_txn *next;

    if (t->queued) {
        tg__unlink(sw, t);
        return;
    }
    if (!t->admitted)
        return;
    t->admitted = false;
    next = sw->wait_head;
    if (next == NULL) {
        sw->in_flight--;
        return;
    }
    /* the slot passes to the oldest waiting request, which resumes on the next loop turn */
    tg__unlink(sw, next);
    tg__waited(next);
    next->admitted = true;
    tg_timer_arm(w->loop, &next->retry_timer, 0, tg__on_admitted);
}
