/*
 * The admin listener (admin.addr, loopback by default), served from the control thread so a busy
 * worker never delays it: GET /healthz, /readyz, /metrics, /status and POST /reload. Connections
 * are short: one request, one response, close.
 */
#ifndef TG_ADMIN_H
#define TG_ADMIN_H

#include <stddef.h>

#include "event/loop.h"

struct tg_admin;
struct tg_config;
struct tg_sbuf;

/* Opens the admin listener of cf on the control loop. Returns NULL with a message in err. */
struct tg_admin *tg_admin_new(struct tg_loop *loop, const struct tg_config *cf, char *err,
                              size_t errlen);
/* Moves the listener to cf's admin.addr when it changed. Returns 0, or -1 with a message in err
 * (the old listener stays). */
int tg_admin_rebind(struct tg_admin *a, const struct tg_config *cf, char *err, size_t errlen);
void tg_admin_free(struct tg_admin *a);

/* The pages, also used by tests: each appends its body to out and returns the HTTP status. */
int tg_admin_healthz(struct tg_sbuf *out);
int tg_admin_readyz(struct tg_sbuf *out);
int tg_admin_status(struct tg_sbuf *out, const char *version);

#endif
