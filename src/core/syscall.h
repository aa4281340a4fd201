/*
 * The system calls of the data path, made without the C library's wrappers.
 *
 * recv, send, sendmsg and epoll_wait are cancellation points: glibc brackets each of them with
 * two atomic updates of the calling thread's cancellation state. tollgate never cancels a
 * thread, and at four such calls per proxied request that bookkeeping alone was about 2% of a
 * worker's CPU time (perf, make bench), more than any function of ours. On x86-64 the calls are
 * made directly; elsewhere, and in sanitizer builds (whose interceptors check the buffers), they
 * go through the C library.
 *
 * Each returns what the system call returns: a count (>= 0) or -errno. errno is not touched.
 */
#ifndef TG_SYSCALL_H
#define TG_SYSCALL_H

#include <errno.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>

#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)

#define TG_SYSCALL_DIRECT 1

static inline long tg__syscall6(long nr, long a, long b, long c, long d, long e, long f)
{
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long ret;

    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

static inline ssize_t tg_sys_recv(int fd, void *buf, size_t len, int flags)
{
    return tg__syscall6(SYS_recvfrom, fd, (long)buf, (long)len, flags, 0, 0);
}

static inline ssize_t tg_sys_send(int fd, const void *buf, size_t len, int flags)
{
    return tg__syscall6(SYS_sendto, fd, (long)buf, (long)len, flags, 0, 0);
}

static inline ssize_t tg_sys_sendmsg(int fd, const struct msghdr *msg, int flags)
{
    return tg__syscall6(SYS_sendmsg, fd, (long)msg, flags, 0, 0, 0);
}

static inline int tg_sys_epoll_wait(int epfd, struct epoll_event *events, int max, int timeout)
{
    return (int)tg__syscall6(SYS_epoll_wait, epfd, (long)events, max, timeout, 0, 0);
}

#else

static inline ssize_t tg_sys_recv(int fd, void *buf, size_t len, int flags)
{
    ssize_t n = recv(fd, buf, len, flags);

    return n < 0 ? -errno : n;
}

static inline ssize_t tg_sys_send(int fd, const void *buf, size_t len, int flags)
{
    ssize_t n = send(fd, buf, len, flags);

    return n < 0 ? -errno : n;
}

static inline ssize_t tg_sys_sendmsg(int fd, const struct msghdr *msg, int flags)
{
    ssize_t n = sendmsg(fd, msg, flags);

    return n < 0 ? -errno : n;
}

static inline int tg_sys_epoll_wait(int epfd, struct epoll_event *events, int max, int timeout)
{
    int n = epoll_wait(epfd, events, max, timeout);

    return n < 0 ? -errno : n;
}

#endif

#endif
