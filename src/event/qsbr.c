/*
 * Quiescent-state reclamation (see qsbr.h). Each loop publishes a state word: its iteration
 * count, with the low bit set while it sleeps in epoll_wait (loop.c). A retired object records
 * every registered loop's word at retirement; it is safe once each word has changed since, or
 * was already "sleeping" then (a sleeping loop holds no pointer, and when it wakes it loads the
 * table anew, after the exchange that published the replacement).
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "core/core.h"
#include "event/loop.h"
#include "event/qsbr.h"

#define TG_QSBR_MAX_LOOPS 256

struct tg_retired {
    void *p;
    void (*fn)(void *);
    uint64_t seen[TG_QSBR_MAX_LOOPS];
    struct tg_retired *next;
};

static struct {
    pthread_mutex_t lock;
    struct tg_loop *loops[TG_QSBR_MAX_LOOPS];
    size_t num;
    struct tg_retired *retired;
    size_t waiting;
} tg__qsbr = {.lock = PTHREAD_MUTEX_INITIALIZER};

void tg_qsbr_register(struct tg_loop *loop)
{
    size_t i;

    pthread_mutex_lock(&tg__qsbr.lock);
    for (i = 0; i < tg__qsbr.num && tg__qsbr.loops[i] != NULL; i++)
        ;
    if (i == TG_QSBR_MAX_LOOPS)
        tg_fatal("more than %d worker loops", TG_QSBR_MAX_LOOPS);
    tg__qsbr.loops[i] = loop;
    if (i == tg__qsbr.num)
        tg__qsbr.num++;
    pthread_mutex_unlock(&tg__qsbr.lock);
}

/* A stopped loop holds nothing. Its slot may be reused: a newcomer compared with the old loop's
 * word only delays a free (it cannot hold a table retired before it started). */
void tg_qsbr_unregister(struct tg_loop *loop)
{
    pthread_mutex_lock(&tg__qsbr.lock);
    for (size_t i = 0; i < tg__qsbr.num; i++)
        if (tg__qsbr.loops[i] == loop)
            tg__qsbr.loops[i] = NULL;
    pthread_mutex_unlock(&tg__qsbr.lock);
}

void tg_qsbr_retire(void *p, void (*fn)(void *))
{
    struct tg_retired *r;

    if (p == NULL)
        return;
    r = tg_malloc(sizeof(*r));
    r->p = p;
    r->fn = fn;
    pthread_mutex_lock(&tg__qsbr.lock);
    for (size_t i = 0; i < tg__qsbr.num; i++)
        r->seen[i] = tg__qsbr.loops[i] ? tg_loop_qs_state(tg__qsbr.loops[i]) : 1;
    r->next = tg__qsbr.retired;
    tg__qsbr.retired = r;
    tg__qsbr.waiting++;
    pthread_mutex_unlock(&tg__qsbr.lock);
    tg_qsbr_poll();
}

static bool tg__qsbr_passed(const struct tg_retired *r)
{
    for (size_t i = 0; i < tg__qsbr.num; i++) {
        uint64_t then = r->seen[i];

        if ((then & 1) == 0 && tg__qsbr.loops[i] != NULL &&
            tg_loop_qs_state(tg__qsbr.loops[i]) == then)
            return false;
    }
    return true;
}

size_t tg_qsbr_poll(void)
{
    struct tg_retired *done = NULL, **pp;
    size_t waiting;

    pthread_mutex_lock(&tg__qsbr.lock);
    for (pp = &tg__qsbr.retired; *pp != NULL;) {
        struct tg_retired *r = *pp;

        if (tg__qsbr_passed(r)) {
            *pp = r->next;
            r->next = done;
            done = r;
            tg__qsbr.waiting--;
        } else {
            pp = &r->next;
        }
    }
    waiting = tg__qsbr.waiting;
    pthread_mutex_unlock(&tg__qsbr.lock);
    while (done != NULL) {
        struct tg_retired *r = done;

        done = r->next;
        r->fn(r->p);
        free(r);
    }
    return waiting;
}
