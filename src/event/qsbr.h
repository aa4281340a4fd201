/*
 * Deferred frees for tables that worker threads read without locks (quiescent-state based
 * reclamation). A writer publishes a new table with an atomic exchange and retires the old one;
 * the old one is freed once every worker loop has passed a quiescent point since: it finished
 * the loop iteration it was in, or it sleeps in epoll_wait. Workers never keep a pointer to such
 * a table across loop iterations, so that is enough; readers pay nothing per access.
 *
 * Used for the API-key table and the JWT key sets, which background threads rebuild on refresh.
 */
#ifndef TG_QSBR_H
#define TG_QSBR_H

#include <stdint.h>

struct tg_loop;

/* Worker loops register when they start and unregister when they stop. */
void tg_qsbr_register(struct tg_loop *loop);
void tg_qsbr_unregister(struct tg_loop *loop);

/* Frees p with fn once no worker can still be reading it. Any thread. */
void tg_qsbr_retire(void *p, void (*fn)(void *));

/* Frees what has become safe; returns how many retired objects still wait. Any thread (the
 * background refreshers call it each time they wake). */
size_t tg_qsbr_poll(void);

#endif
