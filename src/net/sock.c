#include "net/sock.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/core.h"
#include "core/syscall.h"
#include "net/tls.h"

ssize_t tg_sock_read(struct tg_sock *s, void *buf, size_t len)
{
    ssize_t n;

    if (s->ssl != NULL) {
        n = tg_tls_read(s->ssl, buf, len);
        if (n == TG_AGAIN)
            s->readable = false;
        else if (n == 0)
            s->eof = true;
        return n;
    }
    /* recv and sendmsg go straight to the socket layer; read and writev would pass through
     * the VFS (fsnotify hooks and all), which costs measurable system time per request. */
    do {
        n = tg_sys_recv(s->watch.fd, buf, len, 0);
    } while (n == -EINTR);
    if (n > 0) {
        if ((size_t)n < len && !s->hup)
            s->readable = false;
        return n;
    }
    if (n == 0) {
        s->eof = true;
        s->readable = false;
        return 0;
    }
    if (n == -EAGAIN) {
        s->readable = false;
        return TG_AGAIN;
    }
    errno = (int)-n;
    return TG_ERROR;
}

/* Gathered writes up to this size are sent as one copied piece. */
#define TG_SOCK_GATHER_MAX 4096

ssize_t tg_sock_writev(struct tg_sock *s, const struct iovec *iov, int iovcnt)
{
    size_t want = 0;
    ssize_t n;

    for (int i = 0; i < iovcnt; i++)
        want += iov[i].iov_len;
    if (s->ssl != NULL) {
        n = tg_tls_writev(s->ssl, iov, iovcnt);
        if (n == TG_AGAIN || (n >= 0 && (size_t)n < want))
            s->writable = false;
        return n;
    }
    if (iovcnt > 1 && want <= TG_SOCK_GATHER_MAX) {
        /* A small message in several pieces (a composed head, its header lines, a short body)
         * is copied into one piece: the kernel's per-segment work costs more than the copy. */
        char one[TG_SOCK_GATHER_MAX];
        size_t off = 0;

        for (int i = 0; i < iovcnt; i++) {
            memcpy(one + off, iov[i].iov_base, iov[i].iov_len);
            off += iov[i].iov_len;
        }
        do
            n = tg_sys_send(s->watch.fd, one, want, MSG_NOSIGNAL);
        while (n == -EINTR);
    } else if (iovcnt == 1) {
        do
            n = tg_sys_send(s->watch.fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
        while (n == -EINTR);
    } else {
        struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};

        do
            n = tg_sys_sendmsg(s->watch.fd, &msg, MSG_NOSIGNAL);
        while (n == -EINTR);
    }
    if (n >= 0) {
        if ((size_t)n < want)
            s->writable = false;
        return n;
    }
    if (n == -EAGAIN) {
        s->writable = false;
        return TG_AGAIN;
    }
    errno = (int)-n;
    return TG_ERROR;
}

int tg_sock_handshake(struct tg_sock *s)
{
    int rc;

    if (!s->handshaking)
        return TG_OK;
    rc = tg_tls_handshake(s->ssl);
    if (rc == TG_OK)
        s->handshaking = false;
    else if (rc == TG_AGAIN)
        s->readable = s->writable = false;
    return rc;
}

bool tg_sock_pending(const struct tg_sock *s)
{
    return s->ssl != NULL && tg_tls_pending(s->ssl) > 0;
}

void tg_sock_close(struct tg_sock *s)
{
    if (s->ssl != NULL) {
        tg_tls_free(s->ssl);
        s->ssl = NULL;
    }
    if (s->watch.fd >= 0) {
        close(s->watch.fd);
        s->watch.fd = -1;
    }
    s->readable = s->writable = false;
}

void tg_iov_advance(struct iovec **iov, int *iovcnt, size_t n)
{
    while (*iovcnt > 0 && n >= (*iov)->iov_len) {
        n -= (*iov)->iov_len;
        (*iov)++;
        (*iovcnt)--;
    }
    if (*iovcnt > 0 && n > 0) {
        (*iov)->iov_base = (char *)(*iov)->iov_base + n;
        (*iov)->iov_len -= n;
    }
}
