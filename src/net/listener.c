#include "net/listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int tg_listen_open(const struct tg_addr *a, int backlog, char *err, size_t errlen)
{
    int fd, one = 1;
    char text[128];

    fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    if (a->ss.ss_family == AF_UNIX) {
        const struct sockaddr_un *sun = (const struct sockaddr_un *)&a->ss;
        struct stat st;

        if (sun->sun_path[0] != '\0' && stat(sun->sun_path, &st) == 0 && S_ISSOCK(st.st_mode))
            unlink(sun->sun_path);
    } else {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
            goto fail;
        if (a->ss.ss_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) != 0)
        goto fail;
    if (listen(fd, backlog) != 0)
        goto fail;
    return fd;

fail:
    snprintf(err, errlen, "cannot listen on %s: %s", tg_addr_format(a, text, sizeof(text)),
             strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}
