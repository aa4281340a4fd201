/*
 * Socket addresses as written in the configuration: "host:port", "[v6]:port" or "unix:/path".
 */
#ifndef TG_ADDR_H
#define TG_ADDR_H

#include <stdbool.h>
#include <sys/socket.h>

struct tg_addr {
    struct sockaddr_storage ss;
    socklen_t len; /* 0 when unset */
};

/*
 * Parses a numeric listen or connect address: "1.2.3.4:80", "[::1]:80", "0.0.0.0:8080",
 * "localhost:80" (only the name "localhost", as 127.0.0.1) or "unix:/path". Returns 0, or -1
 * with a message in err (at most errlen bytes, NUL-terminated).
 */
int tg_addr_parse(const char *text, struct tg_addr *out, char *err, size_t errlen);

/* Writes "ip:port", "[ip6]:port" or "unix:/path" into buf; returns buf. */
const char *tg_addr_format(const struct tg_addr *a, char *buf, size_t buflen);

bool tg_addr_is_unix(const struct tg_addr *a);
/* The same address (family, bytes and port, or unix path). */
bool tg_addr_equal(const struct tg_addr *a, const struct tg_addr *b);

#endif
