/*
 * tg_jwt_fetch(): a small blocking HTTP/1.1 client that fetches JWKS documents over http:// or
 * https:// for the key refresher thread (never a worker). Every wait is bounded by one overall
 * deadline; the response is parsed with tollgate's own HTTP parser and chunked decoder.
 */
#include "auth/jwt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/core.h"
#include "http/h1.h"

/* The HTTP head of the response may take this much; the body comes on top. */
#define TG__FETCH_HEAD_MAX 16384
#define TG__FETCH_READ     16384

struct tg__url {
    bool tls;
    bool ip;           /* host is an IP literal: no SNI, the certificate names an address */
    bool default_port; /* no port in the URL: Host carries none */
    char host[256];    /* without brackets */
    char port[6];
    const char *path; /* path and query, the fragment dropped; "" means "/" */
    size_t path_len;
};

/* Splits the authority (host, [v6], optional port) of an http(s) URL. Returns 0 or -1. */
static int tg__url_authority(const char *a, size_t len, struct tg__url *u)
{
    const char *host = a, *colon = NULL;
    size_t hlen;
    unsigned long port = 0;

    if (len > 0 && a[0] == '[') {
        const char *rb = memchr(a, ']', len);

        if (rb == NULL || (rb + 1 < a + len && rb[1] != ':'))
            return -1;
        host = a + 1;
        hlen = (size_t)(rb - host);
        colon = rb + 1 < a + len ? rb + 1 : NULL;
        u->ip = true;
    } else {
        colon = memchr(a, ':', len);
        hlen = colon ? (size_t)(colon - a) : len;
    }
    if (hlen == 0 || hlen >= sizeof(u->host))
        return -1;
    for (size_t i = 0; i < hlen; i++) {
        unsigned char c = (unsigned char)host[i];

        /* Only what a DNS name or an address may hold: nothing can break the Host line. */
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_' || (u->ip && c == ':')))
            return -1;
    }
    memcpy(u->host, host, hlen);
    u->host[hlen] = '\0';
    u->default_port = colon == NULL;
    if (colon != NULL) {
        const char *p = colon + 1, *end = a + len;

        if (p == end || end - p > 5)
            return -1;
        for (; p < end; p++) {
            if (*p < '0' || *p > '9')
                return -1;
            port = port * 10 + (unsigned long)(*p - '0');
        }
        if (port == 0 || port > 65535)
            return -1;
    } else {
        port = u->tls ? 443 : 80;
    }
    snprintf(u->port, sizeof(u->port), "%lu", port);
    if (!u->ip) {
        struct in_addr a4;

        u->ip = inet_pton(AF_INET, u->host, &a4) == 1;
    }
    return 0;
}

static int tg__url_parse(const char *url, struct tg__url *u)
{
    const char *a, *end, *path;

    memset(u, 0, sizeof(*u));
    if (strncasecmp(url, "https://", 8) == 0) {
        u->tls = true;
        a = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        a = url + 7;
    } else {
        return -1;
    }
    path = a + strcspn(a, "/?#");
    /* Credentials in the URL are refused rather than sent in clear or dropped silently. */
    if (memchr(a, '@', (size_t)(path - a)) != NULL ||
        tg__url_authority(a, (size_t)(path - a), u) < 0)
        return -1;
    end = path + strcspn(path, "#");
    for (const char *p = path; p < end; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return -1; /* would break the request line */
    if (end - path > 4096)
        return -1;
    u->path = path;
    u->path_len = (size_t)(end - path);
    return 0;
}

/* One connection of a fetch: a socket, optionally TLS on it, and the fetch's deadline. */
struct tg__conn {
    int fd;
    SSL *ssl;
    int64_t deadline;
};

/* Waits for events on the connection's socket. Returns 0, or -1 with errno ETIMEDOUT. */
static int tg__conn_wait(const struct tg__conn *c, short events)
{
    struct pollfd pfd = {.fd = c->fd, .events = events};

    for (;;) {
        int64_t left = c->deadline - tg_clock_mono_ms();
        int r;

        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        r = poll(&pfd, 1, (int)TG_MIN(left, INT_MAX));
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

/* Waits as OpenSSL asks after a call that returned r; returns -1 for a real failure. */
static int tg__conn_ssl_wait(const struct tg__conn *c, int r)
{
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        return tg__conn_wait(c, POLLIN);
    case SSL_ERROR_WANT_WRITE:
        return tg__conn_wait(c, POLLOUT);
    default:
        return -1;
    }
}

static int tg__conn_connect(struct tg__conn *c, const struct tg__url *u, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *ai;
    int r = getaddrinfo(u->host, u->port, &hints, &res), e = 0;

    if (r != 0) {
        snprintf(err, errlen, "resolve %s: %s", u->host, gai_strerror(r));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        socklen_t elen = sizeof(e);

        c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0) {
            e = errno;
            continue;
        }
        if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) == 0 ||
            (errno == EINPROGRESS && tg__conn_wait(c, POLLOUT) == 0 &&
             getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &elen) == 0 && e == 0))
            break;
        e = e ? e : errno;
        close(c->fd);
        c->fd = -1;
        if (e == ETIMEDOUT)
            break; /* the deadline is spent: no time for the next address */
    }
    freeaddrinfo(res);
    if (c->fd < 0) {
        snprintf(err, errlen, "connect %s:%s: %s", u->host, u->port, strerror(e ? e : EIO));
        return -1;
    }
    return 0;
}

/* Formats the thread's OpenSSL errors (and a failed certificate check) into err. */
static void tg__conn_ssl_error(const struct tg__conn *c, const char *what, char *err, size_t errlen)
{
    unsigned long e = ERR_peek_last_error();
    long v = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;
    char reason[256];

    if (v != X509_V_OK)
        snprintf(reason, sizeof(reason), "certificate verify failed: %s",
                 X509_verify_cert_error_string(v));
    else if (e != 0)
        ERR_error_string_n(e, reason, sizeof(reason));
    else
        snprintf(reason, sizeof(reason), "%s", errno ? strerror(errno) : "connection failed");
    snprintf(err, errlen, "%s: %s", what, reason);
}

static int tg__conn_tls(struct tg__conn *c, SSL_CTX *ctx, const struct tg__url *u, char *err,
                        size_t errlen)
{
    int r;

    c->ssl = SSL_new(ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
        goto fail;
    if (u->ip) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);

        if (X509_VERIFY_PARAM_set1_ip_asc(vp, u->host) != 1)
            goto fail;
    } else if (SSL_set_tlsext_host_name(c->ssl, u->host) != 1 ||
               SSL_set1_host(c->ssl, u->host) != 1) {
        goto fail;
    }
    errno = 0;
    while ((r = SSL_connect(c->ssl)) != 1)
        if (tg__conn_ssl_wait(c, r) < 0)
            goto fail;
    return 0;
fail:
    tg__conn_ssl_error(c, "TLS handshake", err, errlen);
    return -1;
}

static int tg__conn_write(struct tg__conn *c, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n;

        if (c->ssl != NULL) {
            size_t w = 0;
            int r = SSL_write_ex(c->ssl, buf, len, &w);

            if (r != 1) {
                if (tg__conn_ssl_wait(c, r) < 0)
                    return -1;
                continue;
            }
            n = (ssize_t)w;
        } else {
            n = send(c->fd, buf, len, MSG_NOSIGNAL);
            if (n < 0) {
                if ((errno != EAGAIN && errno != EINTR) || tg__conn_wait(c, POLLOUT) < 0)
                    return -1;
                continue;
            }
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads some bytes: returns n > 0, 0 at the end of the stream, or -1. */
static ssize_t tg__conn_read(struct tg__conn *c, char *buf, size_t len)
{
    for (;;) {
        ssize_t n;

        if (c->ssl != NULL) {
            size_t got = 0;
            int r = SSL_read_ex(c->ssl, buf, len, &got);

            if (r == 1)
                return (ssize_t)got;
            if (SSL_get_error(c->ssl, r) == SSL_ERROR_ZERO_RETURN)
                return 0;
            if (tg__conn_ssl_wait(c, r) < 0)
                return -1;
            continue;
        }
        n = recv(c->fd, buf, len, 0);
        if (n >= 0)
            return n;
        if ((errno != EAGAIN && errno != EINTR) || tg__conn_wait(c, POLLIN) < 0)
            return -1;
    }
}

/* Reading state of a response: raw bytes in buf, the body kept in place after the head. */
struct tg__fetch_rx {
    char *buf;
    size_t cap, len, head; /* the body is buf[head..len) once head > 0 */
    struct tg_http_header hdrs[64];
    struct tg_h1_response res;
    struct tg_h1_chunked chunked;
};

/*
 * Parses the head once it is complete. Returns 1 when it is, 0 when more bytes are needed, -1
 * with err on a bad or refused response. 1xx interim responses are dropped.
 */
static int tg__fetch_head(struct tg__fetch_rx *rx, bool eof, char *err, size_t errlen)
{
    static const struct tg_h1_limits lim = {8192, TG__FETCH_HEAD_MAX - 8192, 64};
    ssize_t r;

    for (;;) {
        rx->res.headers = rx->hdrs;
        r = tg_h1_parse_response(rx->buf, rx->len, &rx->res, &lim, false);
        if (r == TG_H1_INCOMPLETE && !eof)
            return 0;
        if (r < 0) {
            snprintf(err, errlen, "invalid response: %s",
                     r == TG_H1_INCOMPLETE ? "closed before the head ended" : rx->res.error);
            return -1;
        }
        if (rx->res.status >= 200 || rx->res.status == 101)
            break;
        memmove(rx->buf, rx->buf + r, rx->len - (size_t)r);
        rx->len -= (size_t)r;
    }
    if (rx->res.status != 200) {
        snprintf(err, errlen, "HTTP status %d", rx->res.status);
        return -1;
    }
    if (rx->res.body_kind == TG_BODY_LENGTH && rx->res.content_length > TG_JWT_MAX_JWKS) {
        snprintf(err, errlen, "body larger than %d bytes", TG_JWT_MAX_JWKS);
        return -1;
    }
    tg_h1_chunked_init(&rx->chunked, 4096, 16384);
    rx->head = (size_t)r;
    return 1;
}

/*
 * Takes the n body bytes that were just read at rx->buf + rx->len. Returns 1 when the body is
 * complete, 0 when more is needed, -1 with err.
 */
static int tg__fetch_body(struct tg__fetch_rx *rx, size_t n, bool eof, char *err, size_t errlen)
{
    size_t data = n;
    ssize_t r;

    switch (rx->res.body_kind) {
    case TG_BODY_NONE:
        rx->len = rx->head;
        return 1;
    case TG_BODY_LENGTH:
        rx->len += n;
        if (rx->len - rx->head >= rx->res.content_length) {
            rx->len = rx->head + rx->res.content_length;
            return 1;
        }
        break;
    case TG_BODY_CHUNKED:
        /* Chunk data moves to the start of the bytes given, which is the body's end. */
        r = tg_h1_chunked_decode(&rx->chunked, rx->buf + rx->len, n, &data);
        rx->len += data;
        if (r == TG_H1_INVALID) {
            snprintf(err, errlen, "invalid chunked body");
            return -1;
        }
        if (r >= 0)
            return 1;
        break;
    default: /* TG_BODY_CLOSE */
        rx->len += n;
        if (eof)
            return 1;
        break;
    }
    if (rx->len - rx->head > TG_JWT_MAX_JWKS) {
        snprintf(err, errlen, "body larger than %d bytes", TG_JWT_MAX_JWKS);
        return -1;
    }
    if (eof) {
        snprintf(err, errlen, "connection closed before the body ended");
        return -1;
    }
    return 0;
}

/* Reads the response into rx until the body is complete. Returns 0 or -1 with err. */
static int tg__fetch_response(struct tg__conn *c, struct tg__fetch_rx *rx, char *err, size_t errlen)
{
    const size_t max = TG__FETCH_HEAD_MAX + TG_JWT_MAX_JWKS + TG__FETCH_READ;

    /* Every round reads at least one byte or ends: the buffer is bounded and so is the loop. */
    for (;;) {
        ssize_t n;
        bool eof;
        int r;

        if (rx->cap - rx->len < TG__FETCH_READ) {
            rx->cap = TG_MIN(rx->cap * 2, max);
            rx->buf = tg_realloc(rx->buf, rx->cap);
        }
        TG_BUG_ON(rx->len == rx->cap); /* a read of 0 bytes would look like the end */
        n = tg__conn_read(c, rx->buf + rx->len, TG_MIN(rx->cap - rx->len, (size_t)TG__FETCH_READ));
        if (n < 0) {
            if (c->ssl != NULL && errno != ETIMEDOUT)
                tg__conn_ssl_error(c, "read", err, errlen);
            else
                snprintf(err, errlen, "read: %s", strerror(errno));
            return -1;
        }
        eof = n == 0;
        if (rx->head == 0) {
            rx->len += (size_t)n;
            r = tg__fetch_head(rx, eof, err, errlen);
            if (r <= 0) {
                if (r < 0)
                    return -1;
                continue;
            }
            /* Bytes read past the head are the body's first. */
            n = (ssize_t)(rx->len - rx->head);
            rx->len = rx->head;
        }
        r = tg__fetch_body(rx, (size_t)n, eof, err, errlen);
        if (r != 0)
            return r > 0 ? 0 : -1;
    }
}

static SSL_CTX *tg__fetch_ssl_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (ctx == NULL)
        return NULL;
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_default_verify_paths(ctx) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* A close-delimited body is complete JSON or it fails to parse, so a peer that closes
     * without close_notify (common) is accepted. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    return ctx;
}

static int tg__fetch_exchange(struct tg__conn *c, const struct tg__url *u, struct tg__fetch_rx *rx,
                              char *err, size_t errlen)
{
    char req[4096 + 512];
    int n;

    n = snprintf(req, sizeof(req),
                 "GET %s%.*s HTTP/1.1\r\nHost: %s%s%s%s%s\r\n"
                 "User-Agent: tollgate/" TG_VERSION "\r\n"
                 "Accept: application/jwk-set+json, application/json\r\n"
                 "Connection: close\r\n\r\n",
                 u->path_len == 0 || u->path[0] != '/' ? "/" : "", (int)u->path_len, u->path,
                 strchr(u->host, ':') ? "[" : "", u->host, strchr(u->host, ':') ? "]" : "",
                 u->default_port ? "" : ":", u->default_port ? "" : u->port);
    if (n < 0 || (size_t)n >= sizeof(req)) {
        snprintf(err, errlen, "URL too long");
        return -1;
    }
    if (tg__conn_write(c, req, (size_t)n) < 0) {
        if (c->ssl != NULL && errno != ETIMEDOUT)
            tg__conn_ssl_error(c, "write", err, errlen);
        else
            snprintf(err, errlen, "write: %s", strerror(errno));
        return -1;
    }
    rx->cap = 65536;
    rx->buf = tg_malloc(rx->cap);
    return tg__fetch_response(c, rx, err, errlen);
}

char *tg_jwt_fetch(const char *url, int timeout_ms, size_t *len, char *err, size_t errlen)
{
    struct tg__conn c = {.fd = -1, .deadline = tg_clock_mono_ms() + TG_MAX(timeout_ms, 1)};
    struct tg__fetch_rx *rx = tg_calloc(1, sizeof(*rx));
    struct tg__url u;
    SSL_CTX *ctx = NULL;
    char *body = NULL;

    ERR_set_mark();
    if (tg__url_parse(url, &u) < 0) {
        snprintf(err, errlen, "invalid URL (http:// or https://, no credentials)");
        goto out;
    }
    if (u.tls && (ctx = tg__fetch_ssl_ctx()) == NULL) {
        tg__conn_ssl_error(&c, "TLS setup", err, errlen);
        goto out;
    }
    if (tg__conn_connect(&c, &u, err, errlen) < 0 ||
        (ctx != NULL && tg__conn_tls(&c, ctx, &u, err, errlen) < 0) ||
        tg__fetch_exchange(&c, &u, rx, err, errlen) < 0)
        goto out;
    *len = rx->len - rx->head;
    memmove(rx->buf, rx->buf + rx->head, *len);
    rx->buf[*len] = '\0'; /* the buffer always keeps TG__FETCH_READ bytes spare */
    body = rx->buf;
    rx->buf = NULL;
out:
    ERR_pop_to_mark();
    SSL_free(c.ssl);
    SSL_CTX_free(ctx);
    if (c.fd >= 0)
        close(c.fd);
    free(rx->buf);
    free(rx);
    return body;
}
