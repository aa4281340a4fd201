/*
 * A non-blocking stream socket registered edge-triggered on a loop, plain or TLS.
 *
 * Readiness is remembered in flags because edge-triggered epoll reports each edge once: an event
 * sets `readable`/`writable`, and a read or write that comes back short clears it. A read that
 * fills less than the space offered proves the kernel buffer was empty, so no extra read is
 * made just to collect EAGAIN. The exception is a FIN that arrived with the last data: epoll
 * reports it once (EPOLLRDHUP), so after that reads go on until they return end of stream.
 */
#ifndef TG_SOCK_H
#define TG_SOCK_H

#include <stdbool.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "event/loop.h"

struct ssl_st;

struct tg_sock {
    struct tg_watch watch; /* watch.fd is the descriptor, -1 when closed */
    struct ssl_st *ssl;    /* NULL for plain TCP and unix sockets */
    bool readable;
    bool writable;
    bool eof;         /* a read returned end of stream */
    bool hup;         /* epoll reported the peer's FIN: keep reading until EOF */
    bool handshaking; /* TLS handshake not finished */
};

/*
 * Reads into buf. Returns bytes read (> 0), 0 when the peer closed, TG_AGAIN when nothing is
 * available (readable is cleared) or TG_ERROR (errno-like reason in *err when err != NULL).
 */
ssize_t tg_sock_read(struct tg_sock *s, void *buf, size_t len);

/* Writes as much of iov as the socket takes. Returns bytes written (>= 0; fewer than asked
 * clears writable), TG_AGAIN, or TG_ERROR. */
ssize_t tg_sock_writev(struct tg_sock *s, const struct iovec *iov, int iovcnt);

/* Advances the TLS handshake. Returns TG_OK when done (or plain), TG_AGAIN, TG_ERROR. */
int tg_sock_handshake(struct tg_sock *s);

/* True when TLS holds decrypted bytes that no epoll edge will announce. */
bool tg_sock_pending(const struct tg_sock *s);

/* Closes the descriptor (which also removes it from epoll) and frees TLS state. */
void tg_sock_close(struct tg_sock *s);

/* Advances iov/iovcnt past n written bytes (for partial writev). */
void tg_iov_advance(struct iovec **iov, int *iovcnt, size_t n);

#endif
