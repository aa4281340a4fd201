/*
 * The admin listener (admin.addr, loopback by default): /healthz, /readyz and /metrics, served
 * from the control thread so a busy worker never delays them. Connections are short: one
 * request, one response, close.
 */
#ifndef TG_ADMIN_H
#define TG_ADMIN_H

#include <stddef.h>

#include "event/loop.h"

struct tg_admin;
struct tg_runtime;

/* Opens the admin listener on the control loop. Returns NULL with a message in err. */
struct tg_admin *tg_admin_new(struct tg_loop *loop, struct tg_runtime *rt, char *err,
                              size_t errlen);
void tg_admin_free(struct tg_admin *a);

#endif
