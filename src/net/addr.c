#include "net/addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

/* Parses a port of 1 to 5 digits; returns -1 unless it is 0..65535. Port 0 is accepted so a
 * listener can let the kernel pick a free port (the tests do). */
static int parse_port(const char *s, unsigned *port)
{
    unsigned v = 0;
    size_t i;

    for (i = 0; s[i] >= '0' && s[i] <= '9'; i++) {
        v = v * 10 + (unsigned)(s[i] - '0');
        if (i >= 5 || v > 65535)
            return -1;
    }
    if (i == 0 || s[i] != '\0')
        return -1;
    *port = v;
    return 0;
}

static int parse_unix(const char *path, struct tg_addr *out, char *err, size_t errlen)
{
    struct sockaddr_un *sun = (struct sockaddr_un *)&out->ss;
    size_t len = strlen(path);

    if (path[0] != '/') {
        snprintf(err, errlen, "unix socket path must be absolute, like unix:/run/app.sock");
        return -1;
    }
    if (len >= sizeof(sun->sun_path)) {
        snprintf(err, errlen, "unix socket path is longer than %zu bytes",
                 sizeof(sun->sun_path) - 1);
        return -1;
    }
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, len + 1);
    out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
    return 0;
}

int tg_addr_parse(const char *text, struct tg_addr *out, char *err, size_t errlen)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *colon, *h = text;
    size_t hlen;
    unsigned port;

    memset(out, 0, sizeof(*out));
    if (strncmp(text, "unix:", 5) == 0)
        return parse_unix(text + 5, out, err, errlen);
    if (text[0] == '[') {
        const char *close = strchr(text, ']');

        if (close == NULL || close[1] != ':') {
            snprintf(err, errlen, "expected [IPv6]:port, got '%s'", text);
            return -1;
        }
        h = text + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL) {
            snprintf(err, errlen, "expected host:port, [IPv6]:port or unix:/path, got '%s'", text);
            return -1;
        }
        if (memchr(text, ':', (size_t)(colon - text)) != NULL) {
            snprintf(err, errlen, "an IPv6 address needs brackets, like [::1]:8080, got '%s'",
                     text);
            return -1;
        }
        hlen = (size_t)(colon - text);
    }
    if (parse_port(colon + 1, &port) != 0) {
        snprintf(err, errlen, "bad port '%s' (expected 0 to 65535)", colon + 1);
        return -1;
    }
    if (hlen == 0 || hlen >= sizeof(host)) {
        snprintf(err, errlen, "expected an IP address before the port, got '%s'", text);
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    if (text[0] == '[') {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;

        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
            snprintf(err, errlen, "'%s' is not an IPv6 address", host);
            return -1;
        }
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        out->len = sizeof(*sin6);
        return 0;
    }
    {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;

        /* Only the name "localhost" is resolved here: anything else would need DNS, and
         * listening addresses must not depend on it. */
        if (strcasecmp(host, "localhost") == 0) {
            sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        } else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
            snprintf(err, errlen,
                     "'%s' is not an IPv4 address (host names other than localhost "
                     "are not accepted here)",
                     host);
            return -1;
        }
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        out->len = sizeof(*sin);
    }
    return 0;
}

const char *tg_addr_format(const struct tg_addr *a, char *buf, size_t buflen)
{
    char ip[INET6_ADDRSTRLEN];

    if (a->len == 0) {
        snprintf(buf, buflen, "(none)");
        return buf;
    }
    switch (a->ss.ss_family) {
    case AF_INET: {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->ss;

        inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
        snprintf(buf, buflen, "%s:%u", ip, (unsigned)ntohs(sin->sin_port));
        break;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->ss;

        inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
        snprintf(buf, buflen, "[%s]:%u", ip, (unsigned)ntohs(sin6->sin6_port));
        break;
    }
    case AF_UNIX:
        snprintf(buf, buflen, "unix:%s", ((const struct sockaddr_un *)&a->ss)->sun_path);
        break;
    default:
        snprintf(buf, buflen, "(family %d)", (int)a->ss.ss_family);
        break;
    }
    return buf;
}

bool tg_addr_equal(const struct tg_addr *a, const struct tg_addr *b)
{
    return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

bool tg_addr_is_unix(const struct tg_addr *a)
{
    return a->len != 0 && a->ss.ss_family == AF_UNIX;
}
