/*
 * TLS with OpenSSL 3: contexts, the client session cache and non-blocking record I/O.
 *
 * Every SSL gets SSL_MODE_RELEASE_BUFFERS so an idle keep-alive connection holds no 16 KiB
 * record buffers, SSL_MODE_ENABLE_PARTIAL_WRITE so SSL_write() returns after each record, and
 * SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER so a retried write may present the same bytes from a
 * different address (the per-thread coalescing buffer, or the caller's own buffer).
 */
#include "net/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/core.h"

#define TG_TLS_CACHE_DEFAULT 64

static const unsigned char tg__tls_alpn_wire[] = "\x08http/1.1";

/* The last session of one (host, port), offered on the next connection to it. */
struct tg_tls_session {
    char *key; /* "host:port"; NULL for a free slot */
    SSL_SESSION *sess;
};

struct tg_tls_ctx {
    SSL_CTX *ssl_ctx;
    char *sni;
    bool client;
    pthread_mutex_t lock;
    struct {
        /* Guarded by lock: handshakes of every worker thread store and fetch sessions. */
        struct tg_tls_session *slots;
        uint32_t num;
        uint32_t next; /* slot evicted next when all are taken (oldest insertion first) */
    } shared;
};

/* ex_data indexes: the tg_tls_ctx of an SSL_CTX, and the cache key of a client SSL. */
static int tg__tls_ctx_idx = -1, tg__tls_key_idx = -1;
static pthread_once_t tg__tls_once = PTHREAD_ONCE_INIT;

/* The socket errno of the last SSL_ERROR_SYSCALL on this thread; 0 means the peer closed. */
static _Thread_local int tg__tls_syscall_errno;
static _Thread_local bool tg__tls_syscall_failed;

/* Small buffers of one tg_tls_writev() call are copied here to share one record. */
static _Thread_local unsigned char tg__tls_wbuf[TG_TLS_RECORD];

static void tg__tls_ctx_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                                void *argp)
{
    struct tg_tls_ctx *ctx = ptr;

    if (ctx == NULL)
        return;
    for (uint32_t i = 0; i < ctx->shared.num; i++) {
        free(ctx->shared.slots[i].key);
        SSL_SESSION_free(ctx->shared.slots[i].sess);
    }
    free(ctx->shared.slots);
    free(ctx->sni);
    pthread_mutex_destroy(&ctx->lock);
    free(ctx);
}

static void tg__tls_key_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                                void *argp)
{
    free(ptr);
}

static void tg__tls_init_once(void)
{
    /* The context is freed with its SSL_CTX, which OpenSSL keeps alive while any SSL made from
     * it lives: a late session ticket never finds a freed cache. */
    tg__tls_ctx_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, tg__tls_ctx_ex_free);
    tg__tls_key_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, tg__tls_key_ex_free);
    if (tg__tls_ctx_idx < 0 || tg__tls_key_idx < 0)
        tg_fatal("cannot allocate OpenSSL ex_data indexes");
}

static void tg__tls_appendf(char *buf, size_t len, size_t *used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void tg__tls_appendf(char *buf, size_t len, size_t *used, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (*used + 1 >= len)
        return;
    va_start(ap, fmt);
    n = vsnprintf(buf + *used, len - *used, fmt, ap);
    va_end(ap);
    if (n > 0)
        *used = TG_MIN(len - 1, *used + (size_t)n);
}

const char *tg_tls_error(const struct ssl_st *ssl, char *buf, size_t len)
{
    size_t used = 0;
    unsigned long e;
    const char *data;
    int flags;

    if (len == 0)
        return buf;
    buf[0] = '\0';
    while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
        const char *reason = ERR_reason_error_string(e);

        if (used > 0)
            tg__tls_appendf(buf, len, &used, "; ");
        if (reason != NULL)
            tg__tls_appendf(buf, len, &used, "%s", reason);
        else
            tg__tls_appendf(buf, len, &used, "error %lx", e);
        if ((flags & ERR_TXT_STRING) && data != NULL && data[0] != '\0')
            tg__tls_appendf(buf, len, &used, " (%s)", data);
    }
    if (ssl != NULL && (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER)) {
        long v = SSL_get_verify_result(ssl);

        if (v != X509_V_OK)
            tg__tls_appendf(buf, len, &used, "%s%s", used ? ": " : "certificate verify failed: ",
                            X509_verify_cert_error_string(v));
    }
    if (used == 0) {
        if (tg__tls_syscall_failed && tg__tls_syscall_errno != 0)
            tg__tls_appendf(buf, len, &used, "%s", strerror(tg__tls_syscall_errno));
        else if (tg__tls_syscall_failed)
            tg__tls_appendf(buf, len, &used, "connection closed by peer");
        else
            tg__tls_appendf(buf, len, &used, "unknown TLS error");
    }
    return buf;
}

/* Starts a call: stale errors on the queue would make SSL_get_error() misreport this one. */
static inline void tg__tls_begin(void)
{
    ERR_clear_error();
    tg__tls_syscall_failed = false;
    errno = 0;
}

/* Maps a failed SSL call to TG_AGAIN or TG_ERROR (ZERO_RETURN is the caller's business). */
static int tg__tls_fail(SSL *ssl, int rc)
{
    int e = SSL_get_error(ssl, rc);

    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return TG_AGAIN;
    case SSL_ERROR_SYSCALL:
        tg__tls_syscall_failed = true;
        tg__tls_syscall_errno = errno;
        return TG_ERROR;
    default:
        return TG_ERROR;
    }
}

static void tg__tls_set_modes(SSL_CTX *c)
{
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
    /* SSL_MODE_AUTO_RETRY stays on (OpenSSL's default): after a non-application record (a TLS
     * 1.3 ticket, a key update) SSL_read() goes on reading the socket instead of reporting
     * WANT_READ while bytes are still queued, which an edge-triggered caller would never hear
     * about again. On a non-blocking socket it still returns as soon as the socket is empty. */
    /* An EOF without close_notify reads as a clean close; HTTP framing detects truncation. */
    SSL_CTX_set_options(c, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
}

static struct tg_tls_ctx *tg__tls_ctx_new(bool client, char *err, size_t errlen)
{
    struct tg_tls_ctx *ctx;
    SSL_CTX *c;

    pthread_once(&tg__tls_once, tg__tls_init_once);
    tg__tls_begin();
    c = SSL_CTX_new(client ? TLS_client_method() : TLS_server_method());
    if (c == NULL) {
        char why[256];

        snprintf(err, errlen, "cannot create TLS context: %s",
                 tg_tls_error(NULL, why, sizeof(why)));
        return NULL;
    }
    ctx = tg_calloc(1, sizeof(*ctx));
    ctx->ssl_ctx = c;
    ctx->client = client;
    pthread_mutex_init(&ctx->lock, NULL);
    SSL_CTX_set_ex_data(c, tg__tls_ctx_idx, ctx);
    tg__tls_set_modes(c);
    return ctx;
}

void tg_tls_ctx_free(struct tg_tls_ctx *ctx)
{
    if (ctx != NULL)
        SSL_CTX_free(ctx->ssl_ctx); /* the rest goes with the last reference, see ex_free */
}

struct tg_tls_ctx *tg_tls_ctx_take(struct tg_tls_ctx *ctx)
{
    SSL_CTX_up_ref(ctx->ssl_ctx);
    return ctx;
}

static int tg__tls_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                               const unsigned char *in, unsigned int inlen, void *arg)
{
    unsigned char *sel;

    if (SSL_select_next_proto(&sel, outlen, tg__tls_alpn_wire, sizeof(tg__tls_alpn_wire) - 1, in,
                              inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL; /* no_application_protocol */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

struct tg_tls_ctx *tg_tls_server_ctx_new(const char *cert_file, const char *key_file, char *err,
                                         size_t errlen)
{
    struct tg_tls_ctx *ctx = tg__tls_ctx_new(false, err, errlen);
    SSL_CTX *c;
    char why[512];

    if (ctx == NULL)
        return NULL;
    c = ctx->ssl_ctx;
    if (SSL_CTX_use_certificate_chain_file(c, cert_file) != 1) {
        snprintf(err, errlen, "tls.cert %s: cannot load the certificate chain: %s", cert_file,
                 tg_tls_error(NULL, why, sizeof(why)));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(c, key_file, SSL_FILETYPE_PEM) != 1) {
        unsigned long e = ERR_peek_last_error();

        if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH) {
            snprintf(err, errlen, "tls.key %s does not match the certificate in %s", key_file,
                     cert_file);
            ERR_clear_error();
            goto fail;
        }
        snprintf(err, errlen, "tls.key %s: cannot load the private key: %s", key_file,
                 tg_tls_error(NULL, why, sizeof(why)));
        goto fail;
    }
    if (SSL_CTX_check_private_key(c) != 1) {
        snprintf(err, errlen, "tls.key %s does not match the certificate in %s: %s", key_file,
                 cert_file, tg_tls_error(NULL, why, sizeof(why)));
        goto fail;
    }
    /* Resumption through tickets only: stateless, so workers share no session store and its
     * lock; the ticket keys belong to this context and therefore to every worker. */
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    SSL_CTX_clear_options(c, SSL_OP_NO_TICKET);
    SSL_CTX_set_options(c, SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_alpn_select_cb(c, tg__tls_alpn_select, NULL);
    return ctx;
fail:
    tg_tls_ctx_free(ctx);
    return NULL;
}

/* Called by OpenSSL when a client connection receives a resumable session (for TLS 1.3, on
 * the first read after the handshake, when the server's ticket arrives). */
static int tg__tls_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct tg_tls_ctx *ctx = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tg__tls_ctx_idx);
    const char *key = SSL_get_ex_data(ssl, tg__tls_key_idx);
    SSL_SESSION *old = NULL;
    struct tg_tls_session *slot = NULL;

    if (ctx == NULL || key == NULL || ctx->shared.num == 0 || !SSL_SESSION_is_resumable(sess))
        return 0;
    /* Keep a copy: SSL_free() of a connection that did not send close_notify marks its own
     * session not resumable, and proxies often close upstream connections without one. */
    sess = SSL_SESSION_dup(sess);
    if (sess == NULL)
        return 0;
    pthread_mutex_lock(&ctx->lock);
    for (uint32_t i = 0; i < ctx->shared.num && slot == NULL; i++)
        if (ctx->shared.slots[i].key != NULL && strcmp(ctx->shared.slots[i].key, key) == 0)
            slot = &ctx->shared.slots[i];
    for (uint32_t i = 0; i < ctx->shared.num && slot == NULL; i++)
        if (ctx->shared.slots[i].key == NULL)
            slot = &ctx->shared.slots[i];
    if (slot == NULL) {
        slot = &ctx->shared.slots[ctx->shared.next];
        ctx->shared.next = (ctx->shared.next + 1) % ctx->shared.num;
    }
    if (slot->key == NULL || strcmp(slot->key, key) != 0) {
        free(slot->key);
        slot->key = tg_strdup(key);
    }
    old = slot->sess;
    slot->sess = sess;
    pthread_mutex_unlock(&ctx->lock);
    SSL_SESSION_free(old);
    return 0; /* OpenSSL keeps its reference to the original */
}

/* Forgets the session of key, after a handshake that offered it failed. */
static void tg__tls_forget(struct tg_tls_ctx *ctx, const char *key)
{
    SSL_SESSION *old = NULL;

    pthread_mutex_lock(&ctx->lock);
    for (uint32_t i = 0; i < ctx->shared.num; i++) {
        struct tg_tls_session *s = &ctx->shared.slots[i];

        if (s->key != NULL && strcmp(s->key, key) == 0) {
            old = s->sess;
            s->sess = NULL;
            free(s->key);
            s->key = NULL;
            break;
        }
    }
    pthread_mutex_unlock(&ctx->lock);
    SSL_SESSION_free(old);
}

struct tg_tls_ctx *tg_tls_client_ctx_new(const struct tg_tls_client_opts *o, char *err,
                                         size_t errlen)
{
    struct tg_tls_ctx *ctx = tg__tls_ctx_new(true, err, errlen);
    SSL_CTX *c;
    char why[512];

    if (ctx == NULL)
        return NULL;
    c = ctx->ssl_ctx;
    if (o->verify) {
        int ok = o->ca != NULL ? SSL_CTX_load_verify_locations(c, o->ca, NULL)
                               : SSL_CTX_set_default_verify_paths(c);

        if (ok != 1) {
            if (o->ca != NULL)
                snprintf(err, errlen, "tls.ca %s: cannot load CA certificates: %s", o->ca,
                         tg_tls_error(NULL, why, sizeof(why)));
            else
                snprintf(err, errlen, "cannot load the system CA store: %s",
                         tg_tls_error(NULL, why, sizeof(why)));
            goto fail;
        }
        SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
    }
    /* SSL_CTX_set_alpn_protos() returns 0 on success, unlike the rest of the API. */
    if (SSL_CTX_set_alpn_protos(c, tg__tls_alpn_wire, sizeof(tg__tls_alpn_wire) - 1) != 0) {
        snprintf(err, errlen, "cannot set ALPN: %s", tg_tls_error(NULL, why, sizeof(why)));
        goto fail;
    }
    if (o->sni != NULL && o->sni[0] != '\0')
        ctx->sni = tg_strdup(o->sni);
    ctx->shared.num = o->max_cache ? o->max_cache : TG_TLS_CACHE_DEFAULT;
    ctx->shared.slots = tg_calloc(ctx->shared.num, sizeof(*ctx->shared.slots));
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(c, tg__tls_new_session);
    return ctx;
fail:
    tg_tls_ctx_free(ctx);
    return NULL;
}

static SSL *tg__tls_ssl_new(struct tg_tls_ctx *ctx, int fd)
{
    SSL *ssl;

    tg__tls_begin();
    ssl = SSL_new(ctx->ssl_ctx);
    if (ssl == NULL)
        return NULL;
    /* SSL_set_fd() makes a socket BIO without BIO_CLOSE: the caller keeps the descriptor. */
    if (SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

struct ssl_st *tg_tls_accept_new(struct tg_tls_ctx *ctx, int fd)
{
    SSL *ssl = tg__tls_ssl_new(ctx, fd);

    if (ssl != NULL)
        SSL_set_accept_state(ssl);
    return ssl;
}

static bool tg__tls_is_ip(const char *name)
{
    unsigned char buf[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

/* Offers the cached session of key, if any. */
static void tg__tls_resume(struct tg_tls_ctx *ctx, SSL *ssl, const char *key)
{
    pthread_mutex_lock(&ctx->lock);
    for (uint32_t i = 0; i < ctx->shared.num; i++) {
        struct tg_tls_session *s = &ctx->shared.slots[i];

        if (s->key != NULL && strcmp(s->key, key) == 0) {
            if (s->sess != NULL && SSL_SESSION_is_resumable(s->sess))
                SSL_set_session(ssl, s->sess); /* takes its own reference */
            break;
        }
    }
    pthread_mutex_unlock(&ctx->lock);
}

struct ssl_st *tg_tls_connect_new(struct tg_tls_ctx *ctx, int fd, const char *host, uint16_t port)
{
    SSL *ssl;
    const char *name = ctx->sni != NULL ? ctx->sni : host;
    bool ip = tg__tls_is_ip(name);
    size_t keylen = strlen(host) + 8;
    char *key;

    TG_BUG_ON(!ctx->client);
    ssl = tg__tls_ssl_new(ctx, fd);
    if (ssl == NULL)
        return NULL;
    SSL_set_connect_state(ssl);
    /* RFC 6066 §3: literal IP addresses are not permitted in SNI. */
    if (!ip && SSL_set_tlsext_host_name(ssl, name) != 1)
        goto fail;
    if (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) {
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);

        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name) != 1 : SSL_set1_host(ssl, name) != 1)
            goto fail;
    }
    key = tg_malloc(keylen);
    snprintf(key, keylen, "%s:%u", host, (unsigned)port);
    if (SSL_set_ex_data(ssl, tg__tls_key_idx, key) != 1) {
        free(key);
        goto fail;
    }
    tg__tls_resume(ctx, ssl, key);
    return ssl;
fail:
    SSL_free(ssl);
    return NULL;
}

void tg_tls_free(struct ssl_st *ssl)
{
    SSL_free(ssl);
}

int tg_tls_handshake(struct ssl_st *ssl)
{
    int rc, r;

    tg__tls_begin();
    r = SSL_do_handshake(ssl);
    if (r == 1) {
        SSL_free_buffers(ssl); /* the connection usually waits for its first request now */
        return TG_OK;
    }
    rc = tg__tls_fail(ssl, r);
    if (rc == TG_ERROR && !SSL_is_server(ssl)) {
        const char *key = SSL_get_ex_data(ssl, tg__tls_key_idx);
        struct tg_tls_ctx *ctx = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tg__tls_ctx_idx);

        /* The peer may have changed its certificate or keys: start afresh next time. */
        if (key != NULL && ctx != NULL)
            tg__tls_forget(ctx, key);
    }
    return rc;
}

ssize_t tg_tls_read(struct ssl_st *ssl, void *buf, size_t len)
{
    int r;

    tg__tls_begin();
    r = SSL_read(ssl, buf, (int)TG_MIN(len, (size_t)INT_MAX));
    if (r > 0)
        return r;
    if (SSL_get_error(ssl, r) == SSL_ERROR_ZERO_RETURN)
        return 0;
    r = tg__tls_fail(ssl, r);
    /* The connection is about to wait. Processing a post-handshake message (a TLS 1.3 ticket)
     * allocates the 16 KiB write buffer too, and SSL_MODE_RELEASE_BUFFERS only frees it after
     * the next write: free whatever holds no pending bytes now. A no-op when already free. */
    if (r == TG_AGAIN)
        SSL_free_buffers(ssl);
    return r;
}

/*
 * The chunk handed to one SSL_write() is always min(TG_TLS_RECORD, bytes left in iov): in
 * place when the current buffer holds a whole record or is the last one, copied otherwise.
 * Because OpenSSL keeps at most one record pending, and never more than the bytes it was
 * given, a caller that re-presents its unsent remainder always offers at least the pending
 * bytes, which is what OpenSSL's retry check requires.
 */
ssize_t tg_tls_writev(struct ssl_st *ssl, const struct iovec *iov, int iovcnt)
{
    size_t total = 0, off = 0;
    int i = 0;

    for (;;) {
        const unsigned char *p;
        size_t n, left;
        int r;

        while (i < iovcnt && off == iov[i].iov_len) {
            i++;
            off = 0;
        }
        if (i == iovcnt)
            break;
        left = iov[i].iov_len - off;
        p = (const unsigned char *)iov[i].iov_base + off;
        if (left >= TG_TLS_RECORD || i == iovcnt - 1) {
            n = TG_MIN(left, (size_t)TG_TLS_RECORD);
        } else {
            size_t o = off;

            n = 0;
            for (int j = i; j < iovcnt && n < TG_TLS_RECORD; j++, o = 0) {
                size_t take = TG_MIN(iov[j].iov_len - o, TG_TLS_RECORD - n);

                memcpy(tg__tls_wbuf + n, (const unsigned char *)iov[j].iov_base + o, take);
                n += take;
            }
            p = tg__tls_wbuf;
        }
        tg__tls_begin();
        r = SSL_write(ssl, p, (int)n);
        if (r <= 0) {
            int rc = tg__tls_fail(ssl, r);

            return total > 0 ? (ssize_t)total : rc;
        }
        total += (size_t)r;
        /* Advance through iov by r bytes. */
        for (size_t adv = (size_t)r; adv > 0;) {
            size_t step = TG_MIN(adv, iov[i].iov_len - off);

            off += step;
            adv -= step;
            if (off == iov[i].iov_len && adv > 0) {
                i++;
                off = 0;
            }
        }
    }
    return (ssize_t)total;
}

int tg_tls_pending(const struct ssl_st *ssl)
{
    return SSL_pending(ssl);
}

int tg_tls_shutdown(struct ssl_st *ssl)
{
    int r;

    /* OpenSSL forbids SSL_shutdown() before the handshake is done (or after it failed). */
    if (SSL_in_init(ssl))
        return TG_ERROR;
    tg__tls_begin();
    r = SSL_shutdown(ssl);
    return r >= 0 ? TG_OK : tg__tls_fail(ssl, r);
}

bool tg_tls_session_reused(const struct ssl_st *ssl)
{
    return SSL_session_reused(ssl) == 1;
}
