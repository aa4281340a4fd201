/*
 * TLS with OpenSSL 3: server contexts for listeners, client contexts for services, and
 * non-blocking record I/O on connected sockets driven by an edge-triggered loop.
 *
 * A connection is a plain OpenSSL SSL object (struct ssl_st is OpenSSL's SSL; the header names
 * the struct so it does not pull the OpenSSL headers into every file). Contexts are shared by
 * every worker thread; an SSL belongs to the worker that created it.
 *
 * Readiness with edge-triggered epoll: OpenSSL may need to read in order to write (and the
 * reverse) during a handshake or a key update, so a caller simply retries every pending
 * operation (handshake, read, write) on any readiness event of the socket, whatever its
 * direction. Bytes that OpenSSL has already decrypted do not raise a new edge: a reader that
 * stops before TG_AGAIN must look at tg_tls_pending() before waiting again.
 *
 * Errors: TG_ERROR leaves the reason on the thread's OpenSSL error queue (or errno for socket
 * errors); format it with tg_tls_error() before the next TLS call on the same thread.
 */
#ifndef TG_TLS_H
#define TG_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct ssl_st;     /* OpenSSL's SSL */
struct tg_tls_ctx; /* an SSL_CTX plus, for clients, the session cache */

/* Plaintext bytes tg_tls_writev() puts into one TLS record (the protocol maximum). */
#define TG_TLS_RECORD 16384

/*
 * Creates a server context for a listener: the PEM certificate chain in cert_file (leaf first),
 * the PEM private key in key_file, which must match the certificate. TLS 1.2 and 1.3, session
 * tickets on (keys shared by every worker using the context), no server-side session store.
 * ALPN: selects "http/1.1"; a client that offers ALPN without "http/1.1" is refused with the
 * no_application_protocol alert (RFC 7301 §3.2, what nginx does since 1.21.4); a client that
 * offers no ALPN is served.
 * Returns the context, or NULL with a message naming the file and the reason in err (at most
 * errlen bytes, NUL-terminated).
 */
struct tg_tls_ctx *tg_tls_server_ctx_new(const char *cert_file, const char *key_file, char *err,
                                         size_t errlen);

struct tg_tls_client_opts {
    bool verify;        /* verify the peer's chain and name; false accepts any certificate */
    const char *ca;     /* PEM bundle of trusted CAs; NULL = the system store */
    const char *sni;    /* name sent and checked instead of the node's host; NULL = the host */
    uint32_t max_cache; /* sessions kept for resumption, one per (host, port); 0 = 64 */
};

/*
 * Creates a client context for one service: TLS 1.2 and 1.3, ALPN offering "http/1.1", and a
 * cache that keeps the last session of each (host, port) for resumption. The cache is shared
 * by every thread using the context and guarded by a mutex (touched once per handshake, not
 * per request). Returns the context, or NULL with a message in err.
 */
struct tg_tls_ctx *tg_tls_client_ctx_new(const struct tg_tls_client_opts *o, char *err,
                                         size_t errlen);

/* Frees a context. SSL objects made from it may outlive it (OpenSSL counts references). */
void tg_tls_ctx_free(struct tg_tls_ctx *ctx);
/* Another reference to ctx (released with tg_tls_ctx_free). */
struct tg_tls_ctx *tg_tls_ctx_take(struct tg_tls_ctx *ctx);

/*
 * Creates a server-side connection on a connected, non-blocking socket. The descriptor stays
 * owned by the caller: tg_tls_free() does not close it. Returns NULL when out of memory (the
 * reason is on the error queue).
 */
struct ssl_st *tg_tls_accept_new(struct tg_tls_ctx *ctx, int fd);

/*
 * Creates a client-side connection to host:port on a connected, non-blocking socket. host is
 * the node's host name or IP literal (without brackets). The name checked against the
 * certificate, and sent as SNI unless it is an IP literal, is the context's sni or else host.
 * A session cached for (host, port) is offered for resumption. Returns NULL on failure.
 */
struct ssl_st *tg_tls_connect_new(struct tg_tls_ctx *ctx, int fd, const char *host, uint16_t port);

/* Frees a connection without sending anything; the socket stays open. NULL is ignored. */
void tg_tls_free(struct ssl_st *ssl);

/*
 * Advances the handshake. Returns TG_OK once it is complete, TG_AGAIN when it waits for the
 * socket, TG_ERROR when it failed (peer refused, bad certificate, wrong name, socket error).
 * A failed client handshake also forgets the cached session of its (host, port).
 */
int tg_tls_handshake(struct ssl_st *ssl);

/*
 * Reads decrypted bytes. Returns n > 0, 0 when the peer closed the stream (close_notify or a
 * plain EOF: message framing is the HTTP layer's business), TG_AGAIN when no bytes are
 * available, or TG_ERROR.
 */
ssize_t tg_tls_read(struct ssl_st *ssl, void *buf, size_t len);

/*
 * Encrypts and sends iov like writev(). Returns the number of bytes accepted (possibly fewer
 * than offered, never 0 for a non-empty iov), TG_AGAIN when none could be sent, or TG_ERROR.
 * Small consecutive buffers are copied into a per-thread buffer so they share one record; a
 * buffer of TG_TLS_RECORD bytes or more is encrypted in place.
 *
 * Retry rule: when a call returns TG_AGAIN, or fewer bytes than offered, OpenSSL may already
 * have encrypted bytes past the count returned and be waiting to send them. The next call must
 * offer the unsent remainder again: the same bytes, starting right after the count returned,
 * at least as many as before (more may be appended; buffer addresses and the split into iovec
 * entries may change). Offering different bytes, or fewer, is an error.
 */
ssize_t tg_tls_writev(struct ssl_st *ssl, const struct iovec *iov, int iovcnt);

/* Decrypted bytes buffered inside OpenSSL, readable without waiting for the socket. */
int tg_tls_pending(const struct ssl_st *ssl);

/*
 * Sends close_notify. Returns TG_OK when it was sent, TG_AGAIN when the socket is full (call
 * again on the next readiness event, until TG_OK or TG_ERROR; not after TG_OK), TG_ERROR when
 * the handshake is not complete or the connection failed. The peer's close_notify is not
 * awaited: a proxy closes the socket right after.
 */
int tg_tls_shutdown(struct ssl_st *ssl);

/* True when the handshake resumed a session (useful in logs and tests). */
bool tg_tls_session_reused(const struct ssl_st *ssl);

/*
 * Formats the calling thread's OpenSSL error queue into buf (at most len bytes, NUL-terminated)
 * as "reason; reason", then empties the queue. When ssl is not NULL and its certificate check
 * failed, the verification error is added ("certificate verify failed: hostname mismatch").
 * When the queue is empty, errno (if set) is used, else "unknown TLS error". Returns buf.
 */
const char *tg_tls_error(const struct ssl_st *ssl, char *buf, size_t len);

#endif
