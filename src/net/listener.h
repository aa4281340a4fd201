#ifndef TG_LISTENER_H
#define TG_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

#include "net/addr.h"

/*
 * Opens a non-blocking listening socket. TCP sockets get SO_REUSEPORT (one per worker, the
 * kernel spreads connections) and SO_REUSEADDR; a unix socket replaces a stale socket file.
 * Returns the descriptor, or -1 with a message in err.
 */
int tg_listen_open(const struct tg_addr *a, int backlog, char *err, size_t errlen);

#endif
