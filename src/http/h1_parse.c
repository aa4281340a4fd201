/*
 * The parts of the HTTP/1.1 parser that requests and responses share: character classes, the
 * header-field scanner, header-name recognition and the header semantics of DESIGN §9 (1-3, 7,
 * 10, 12). The start lines live in h1_request.c and h1_response.c.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "http/h1_internal.h"

/* The class table is computed by the preprocessor so that it cannot drift from its definition. */
#define TG__ALPHA(c) (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z'))
#define TG__DIGIT(c) ((c) >= '0' && (c) <= '9')
#define TG__TCHAR(c)                                                                               \
    (TG__ALPHA(c) || TG__DIGIT(c) || (c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' ||       \
     (c) == '&' || (c) == '\'' || (c) == '*' || (c) == '+' || (c) == '-' || (c) == '.' ||          \
     (c) == '^' || (c) == '_' || (c) == '`' || (c) == '|' || (c) == '~')
#define TG__REG(c)                                                                                 \
    (TG__ALPHA(c) || TG__DIGIT(c) || (c) == '-' || (c) == '.' || (c) == '_' || (c) == '~' ||       \
     (c) == '!' || (c) == '$' || (c) == '&' || (c) == '\'' || (c) == '(' || (c) == ')' ||          \
     (c) == '*' || (c) == '+' || (c) == ',' || (c) == ';' || (c) == '=')
#define TG__HEX(c) (TG__DIGIT(c) || ((c) >= 'a' && (c) <= 'f') || ((c) >= 'A' && (c) <= 'F'))
#define TG__CLS(c)                                                                                 \
    ((TG__TCHAR(c) ? TG__H1_C_TCHAR : 0) | ((c) < 0x20 || (c) == 0x7f ? TG__H1_C_CTL : 0) |        \
     (TG__HEX(c) ? TG__H1_C_HEX : 0) | (TG__REG(c) ? TG__H1_C_REG : 0) |                           \
     (TG__DIGIT(c) || (c) == '.' ? TG__H1_C_NUM : 0))
#define TG__ROW4(b)  TG__CLS(b), TG__CLS((b) + 1), TG__CLS((b) + 2), TG__CLS((b) + 3)
#define TG__ROW16(b) TG__ROW4(b), TG__ROW4((b) + 4), TG__ROW4((b) + 8), TG__ROW4((b) + 12)
#define TG__ROW64(b) TG__ROW16(b), TG__ROW16((b) + 16), TG__ROW16((b) + 32), TG__ROW16((b) + 48)

const uint8_t tg__h1_class[256] = {TG__ROW64(0), TG__ROW64(64), TG__ROW64(128), TG__ROW64(192)};

int tg_http_method_id(struct tg_str m)
{
    /* Methods are case-sensitive (RFC 9110 §9.1): "get" is an extension method, not GET. */
    switch (m.len) {
    case 3:
        if (memcmp(m.base, "GET", 3) == 0)
            return TG_METHOD_GET;
        if (memcmp(m.base, "PUT", 3) == 0)
            return TG_METHOD_PUT;
        break;
    case 4:
        if (memcmp(m.base, "POST", 4) == 0)
            return TG_METHOD_POST;
        if (memcmp(m.base, "HEAD", 4) == 0)
            return TG_METHOD_HEAD;
        break;
    case 5:
        if (memcmp(m.base, "PATCH", 5) == 0)
            return TG_METHOD_PATCH;
        if (memcmp(m.base, "TRACE", 5) == 0)
            return TG_METHOD_TRACE;
        break;
    case 6:
        if (memcmp(m.base, "DELETE", 6) == 0)
            return TG_METHOD_DELETE;
        break;
    case 7:
        if (memcmp(m.base, "OPTIONS", 7) == 0)
            return TG_METHOD_OPTIONS;
        if (memcmp(m.base, "CONNECT", 7) == 0)
            return TG_METHOD_CONNECT;
        break;
    }
    return TG_METHOD_OTHER;
}

const char *const tg_http_method_names[TG_METHOD__COUNT] = {
    [TG_METHOD_OTHER] = "OTHER",     [TG_METHOD_GET] = "GET",     [TG_METHOD_HEAD] = "HEAD",
    [TG_METHOD_POST] = "POST",       [TG_METHOD_PUT] = "PUT",     [TG_METHOD_DELETE] = "DELETE",
    [TG_METHOD_OPTIONS] = "OPTIONS", [TG_METHOD_PATCH] = "PATCH", [TG_METHOD_TRACE] = "TRACE",
    [TG_METHOD_CONNECT] = "CONNECT",
};

#define TG__NAME_IS(n, len, lit)                                                                   \
    ((len) == sizeof(lit) - 1 && tg__h1_token_eq((n), (lit), sizeof(lit) - 1))

/* Length and first letter pick at most two candidates, so unknown names cost one comparison. */
static uint16_t tg__h1_header_id(const char *n, size_t len)
{
    unsigned char c = (unsigned char)n[0] | 0x20;

    switch (len) {
    case 2:
        return TG__NAME_IS(n, len, "te") ? TG_HDR_TE : TG_HDR_OTHER;
    case 3:
        return TG__NAME_IS(n, len, "via") ? TG_HDR_VIA : TG_HDR_OTHER;
    case 4:
        if (c == 'h')
            return TG__NAME_IS(n, len, "host") ? TG_HDR_HOST : TG_HDR_OTHER;
        return TG__NAME_IS(n, len, "date") ? TG_HDR_DATE : TG_HDR_OTHER;
    case 6:
        if (c == 'e')
            return TG__NAME_IS(n, len, "expect") ? TG_HDR_EXPECT : TG_HDR_OTHER;
        return TG__NAME_IS(n, len, "server") ? TG_HDR_SERVER : TG_HDR_OTHER;
    case 7:
        if (c == 't')
            return TG__NAME_IS(n, len, "trailer") ? TG_HDR_TRAILER : TG_HDR_OTHER;
        return TG__NAME_IS(n, len, "upgrade") ? TG_HDR_UPGRADE : TG_HDR_OTHER;
    case 10:
        if (c == 'c')
            return TG__NAME_IS(n, len, "connection") ? TG_HDR_CONNECTION : TG_HDR_OTHER;
        if (c == 't')
            return TG__NAME_IS(n, len, "tracestate") ? TG_HDR_TRACESTATE : TG_HDR_OTHER;
        return TG__NAME_IS(n, len, "keep-alive") ? TG_HDR_KEEP_ALIVE : TG_HDR_OTHER;
    case 11:
        return TG__NAME_IS(n, len, "traceparent") ? TG_HDR_TRACEPARENT : TG_HDR_OTHER;
    case 12:
        return TG__NAME_IS(n, len, "x-request-id") ? TG_HDR_X_REQUEST_ID : TG_HDR_OTHER;
    case 14:
        return TG__NAME_IS(n, len, "content-length") ? TG_HDR_CONTENT_LENGTH : TG_HDR_OTHER;
    case 15:
        return TG__NAME_IS(n, len, "x-forwarded-for") ? TG_HDR_X_FORWARDED_FOR : TG_HDR_OTHER;
    case 16:
        if (c == 'p')
            return TG__NAME_IS(n, len, "proxy-connection") ? TG_HDR_PROXY_CONNECTION : TG_HDR_OTHER;
        return TG__NAME_IS(n, len, "x-forwarded-host") ? TG_HDR_X_FORWARDED_HOST : TG_HDR_OTHER;
    case 17:
        if (c == 't')
            return TG__NAME_IS(n, len, "transfer-encoding") ? TG_HDR_TRANSFER_ENCODING
                                                            : TG_HDR_OTHER;
        return TG__NAME_IS(n, len, "x-forwarded-proto") ? TG_HDR_X_FORWARDED_PROTO : TG_HDR_OTHER;
    }
    return TG_HDR_OTHER;
}

ssize_t tg__h1_find_start_line(const char *buf, size_t len, size_t pos, size_t max_line,
                               bool status_line, const char **error, bool *too_long)
{
    /* The CR may sit at offset max_line at most, so look at max_line + 1 bytes and no more:
     * a line that is still open there can never fit, whatever comes next. */
    size_t window = max_line < len ? max_line + 1 : len;
    const char *p = buf + pos, *end = buf + window;

    *too_long = false;
    if (pos >= window)
        goto more;
    for (;;) {
        p = status_line ? tg__h1_find_ctl(p, end) : tg__h1_find_nonprint(p, end);
        if (p == end)
            goto more;
        if (*p != '\t' || !status_line)
            break;
        p++;
    }
    if ((unsigned char)*p >= 0x80) {
        /* RFC 3986 has no place for raw non-ASCII in a target, and backends decode it
         * inconsistently; a method or version cannot hold it either. */
        *error = TG__H1_E_TARGET_CHAR;
    } else if (*p == '\r') {
        if ((size_t)(p - buf) + 1 == len)
            return TG_H1_INCOMPLETE;
        if (p[1] == '\n')
            return p - buf;
        *error = TG__H1_E_BARE_CR;
    } else {
        *error = *p == '\n' ? TG__H1_E_BARE_LF : TG__H1_E_CTL_LINE;
    }
    return TG_H1_INVALID;

more:
    if (len > max_line) {
        *too_long = true;
        return TG_H1_INVALID;
    }
    return TG_H1_INCOMPLETE;
}

ssize_t tg__h1_parse_fields(const char *buf, size_t len, size_t pos, size_t lim,
                            struct tg__h1_fields *f)
{
    const char *p = buf + pos, *end = buf + (len < lim ? len : lim);

    f->num_headers = 0;
    for (;;) {
        const char *name, *value, *vend;
        struct tg_http_header *h;

        if (p == end)
            goto more;
        if (*p == '\r') {
            if (p + 1 == end)
                goto more;
            if (p[1] != '\n')
                goto bare_cr;
            return p + 2 - buf;
        }
        /* Any line but the empty one starts another field: refuse it before scanning it. */
        if (f->num_headers == f->max_headers) {
            f->status = 431;
            f->error = TG__H1_E_TOO_MANY;
            return TG_H1_INVALID;
        }
        name = p;
        p = tg__h1_find_name_end(p, end);
        if (p == end)
            goto more;
        if (*p != ':') {
            if (p == name && (*p == ' ' || *p == '\t')) {
                /* A line starting with whitespace continues the previous one (obs-fold), or
                 * precedes the first field; RFC 9112 §5.2 lets us refuse both, §9.5 says we do. */
                f->error = f->num_headers ? TG__H1_E_OBS_FOLD : TG__H1_E_LEADING_WS;
            } else if (p == name && *p == '\n') {
                f->error = TG__H1_E_BARE_LF;
            } else if (*p == ' ' || *p == '\t') {
                f->error = TG__H1_E_WS_COLON;
            } else if (*p == '\r' || *p == '\n') {
                f->error = TG__H1_E_NO_COLON;
            } else {
                f->error = TG__H1_E_NAME_CHAR;
            }
            goto bad;
        }
        if (p == name) {
            f->error = TG__H1_E_EMPTY_NAME;
            goto bad;
        }
        h = &f->headers[f->num_headers];
        h->name = tg_str_make(name, (size_t)(p - name));
        p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        value = p;
        for (;;) {
            p = tg__h1_find_ctl(p, end);
            if (p == end)
                goto more;
            if (*p != '\t')
                break;
            p++;
        }
        if (*p != '\r') {
            f->error = *p == '\n' ? TG__H1_E_BARE_LF : TG__H1_E_VALUE_CTL;
            goto bad;
        }
        if (p + 1 == end)
            goto more;
        if (p[1] != '\n')
            goto bare_cr;
        for (vend = p; vend > value && (vend[-1] == ' ' || vend[-1] == '\t'); vend--)
            ;
        h->value = tg_str_make(value, (size_t)(vend - value));
        h->id = tg__h1_header_id(h->name.base, h->name.len);
        h->flags = 0;
        f->num_headers++;
        p += 2;
    }

more:
    if (len >= lim) {
        f->status = 431;
        f->error = TG__H1_E_HEAD_TOO_LARGE;
        return TG_H1_INVALID;
    }
    return TG_H1_INCOMPLETE;
bare_cr:
    f->error = TG__H1_E_BARE_CR;
bad:
    f->status = 400;
    return TG_H1_INVALID;
}

/*
 * Iterates over the elements of a comma-separated list (RFC 9110 §5.6.1), trimming OWS around
 * each. Elements may be empty; callers decide whether that is acceptable.
 */
static bool tg__h1_list_next(struct tg_str v, size_t *pos, struct tg_str *elem)
{
    const char *s, *e, *comma;

    if (*pos > v.len)
        return false;
    s = v.base + *pos;
    comma = memchr(s, ',', v.len - *pos);
    e = comma != NULL ? comma : v.base + v.len;
    *pos = (size_t)(e - v.base) + 1;
    while (s < e && (*s == ' ' || *s == '\t'))
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *elem = tg_str_make(s, (size_t)(e - s));
    return true;
}

static bool tg__h1_is_token(struct tg_str t)
{
    if (t.len == 0)
        return false;
    for (size_t i = 0; i < t.len; i++) {
        if (!tg__h1_is((unsigned char)t.base[i], TG__H1_C_TCHAR))
            return false;
    }
    return true;
}

/* Digits only, at most INT64_MAX so that lengths fit off_t everywhere downstream. */
static bool tg__h1_parse_length(struct tg_str v, uint64_t *out)
{
    uint64_t n = 0;

    if (v.len == 0)
        return false;
    for (size_t i = 0; i < v.len; i++) {
        unsigned d = (unsigned char)v.base[i] - '0';

        if (d > 9 || n > ((uint64_t)INT64_MAX - d) / 10)
            return false;
        n = n * 10 + d;
    }
    *out = n;
    return true;
}

/* Transfer codings registered with IANA besides chunked: refused with 400 when not followed by
 * chunked (the message has no framing), 501 otherwise. Unregistered codings are 501. */
static bool tg__h1_known_coding(struct tg_str c)
{
    return TG__H1_TOKEN_IS(c, "gzip") || TG__H1_TOKEN_IS(c, "deflate") ||
           TG__H1_TOKEN_IS(c, "compress") || TG__H1_TOKEN_IS(c, "x-gzip") ||
           TG__H1_TOKEN_IS(c, "x-compress");
}

/* State of the Transfer-Encoding list, which may span several fields. */
struct tg__h1_te {
    unsigned chunked; /* occurrences of chunked */
    bool chunked_last;
    bool unknown; /* an unregistered coding */
    bool other;   /* a coding besides chunked, which tollgate does not decode */
};

/*
 * Adds one Transfer-Encoding field to *te. Parameters are refused: none of the registered
 * codings defines one, and empty elements are refused because other parsers disagree on whether
 * "chunked," ends in chunked.
 */
static bool tg__h1_te_add(struct tg_str v, struct tg__h1_te *te)
{
    struct tg_str c;
    size_t pos = 0;

    while (tg__h1_list_next(v, &pos, &c)) {
        if (!tg__h1_is_token(c))
            return false;
        if (TG__H1_TOKEN_IS(c, "chunked")) {
            te->chunked++;
            te->chunked_last = true;
        } else {
            te->chunked_last = false;
            te->unknown |= !tg__h1_known_coding(c);
            te->other = true;
        }
    }
    return true;
}

/* Adds the tokens of one Connection field to *s; empty list elements are ignored. */
static bool tg__h1_connection_add(struct tg_str v, struct tg__h1_semantics *s)
{
    struct tg_str t;
    size_t pos = 0;

    while (tg__h1_list_next(v, &pos, &t)) {
        if (t.len == 0)
            continue;
        if (!tg__h1_is_token(t))
            return false;
        if (TG__H1_TOKEN_IS(t, "close"))
            s->conn_close = true;
        else if (TG__H1_TOKEN_IS(t, "keep-alive"))
            s->conn_keep_alive = true;
        else if (TG__H1_TOKEN_IS(t, "upgrade"))
            s->conn_upgrade = true;
    }
    return true;
}

/* Marks every header named by a Connection token as hop-by-hop (§9.12). */
static bool tg__h1_mark_connection(struct tg_http_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct tg_str t;
        size_t pos = 0;

        if (h[i].id != TG_HDR_CONNECTION)
            continue;
        while (tg__h1_list_next(h[i].value, &pos, &t)) {
            if (t.len == 0)
                continue;
            /* Dropping these would change the framing or the routing of the message as the
             * next hop sees it, which is exactly what a smuggling attempt wants. */
            if (TG__H1_TOKEN_IS(t, "host") || TG__H1_TOKEN_IS(t, "content-length") ||
                TG__H1_TOKEN_IS(t, "transfer-encoding"))
                return false;
            for (size_t j = 0; j < n; j++) {
                if (h[j].name.len == t.len && tg_str_ieq(h[j].name, t))
                    h[j].flags |= TG_HDR_F_HOP;
            }
        }
    }
    return true;
}

int tg__h1_analyze(struct tg_http_header *h, size_t n, struct tg__h1_semantics *s)
{
    struct tg__h1_te te = {0};
    bool has_connection = false;

    memset(s, 0, sizeof(*s));
    s->status = 400;
    for (size_t i = 0; i < n; i++) {
        uint64_t cl;

        switch (h[i].id) {
        case TG_HDR_HOST:
            s->hosts++;
            s->host = h[i].value;
            break;
        case TG_HDR_CONTENT_LENGTH:
            if (!tg__h1_parse_length(h[i].value, &cl)) {
                s->error = TG__H1_E_CL;
                return -1;
            }
            /* Identical duplicates are merged (RFC 9110 §8.6); differing ones are the classic
             * request-smuggling vector. */
            if (s->has_cl && s->content_length != cl) {
                s->error = TG__H1_E_CL_DIFFER;
                return -1;
            }
            s->has_cl = true;
            s->content_length = cl;
            break;
        case TG_HDR_TRANSFER_ENCODING:
            h[i].flags |= TG_HDR_F_HOP;
            s->has_te = true;
            if (!tg__h1_te_add(h[i].value, &te)) {
                s->error = TG__H1_E_TE_MALFORMED;
                return -1;
            }
            break;
        case TG_HDR_CONNECTION:
            h[i].flags |= TG_HDR_F_HOP;
            has_connection = true;
            if (!tg__h1_connection_add(h[i].value, s)) {
                s->error = TG__H1_E_CONN_MALFORMED;
                return -1;
            }
            break;
        case TG_HDR_UPGRADE:
            h[i].flags |= TG_HDR_F_HOP;
            s->has_upgrade = true;
            break;
        case TG_HDR_KEEP_ALIVE:
        case TG_HDR_PROXY_CONNECTION:
        case TG_HDR_TE:
        case TG_HDR_TRAILER:
            h[i].flags |= TG_HDR_F_HOP;
            break;
        case TG_HDR_EXPECT:
            if (TG__H1_TOKEN_IS(h[i].value, "100-continue"))
                s->expect_continue = true;
            else
                s->expect_other = true;
            break;
        }
    }
    if (s->has_te) {
        if (te.chunked > 1 || (te.chunked == 1 && !te.chunked_last)) {
            s->error = TG__H1_E_TE_CHUNKED;
            return -1;
        }
        if (te.unknown) {
            s->status = 501;
            s->error = TG__H1_E_TE_UNKNOWN;
            return -1;
        }
        if (!te.chunked_last) {
            s->error = TG__H1_E_TE_FINAL;
            return -1;
        }
        if (te.other) {
            /* tollgate relays chunked framing but decodes no other coding; forwarding
             * "gzip, chunked" as plain chunked would hand coded bytes on as the body */
            s->status = 501;
            s->error = TG__H1_E_TE_UNKNOWN;
            return -1;
        }
    }
    if (has_connection && !tg__h1_mark_connection(h, n)) {
        s->error = TG__H1_E_CONN_NAMES;
        return -1;
    }
    return 0;
}

/* Dotted-quad only: four decimal octets, no leading zeros (which some resolvers read as octal). */
static bool tg__h1_ipv4_valid(const char *s, size_t n)
{
    unsigned parts = 0, digits = 0, v = 0;

    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '.') {
            if (digits == 0 || v > 255 || (digits > 1 && s[i - digits] == '0'))
                return false;
            parts++;
            digits = 0;
            v = 0;
        } else {
            if (++digits > 3)
                return false;
            v = v * 10 + (unsigned)(s[i] - '0');
        }
    }
    return parts == 4;
}

bool tg__h1_authority_valid(const char *s, size_t n, bool need_port)
{
    size_t i = 0;
    unsigned port = 0;

    if (n == 0)
        return false;
    if (s[0] == '[') {
        const char *rb = memchr(s, ']', n);
        char tmp[INET6_ADDRSTRLEN];
        struct in6_addr a;
        size_t alen;

        if (rb == NULL)
            return false;
        alen = (size_t)(rb - s) - 1;
        /* Zone identifiers and IPvFuture are refused: no backend should be addressed that way. */
        if (alen == 0 || alen >= sizeof(tmp))
            return false;
        memcpy(tmp, s + 1, alen);
        tmp[alen] = '\0';
        if (inet_pton(AF_INET6, tmp, &a) != 1)
            return false;
        i = alen + 2;
    } else {
        /* The AND of the classes of the name's characters: TG__H1_C_NUM stays set only when
         * all of them are digits and dots, the names that must then be IPv4 addresses. */
        unsigned all = TG__H1_C_NUM;

        for (; i < n; i++) {
            unsigned char c = (unsigned char)s[i];
            unsigned k = tg__h1_class[c];

            if (k & TG__H1_C_REG) {
                all &= k;
                continue;
            }
            if (c == ':')
                break;
            if (c != '%' || n - i < 3 || !tg__h1_is((unsigned char)s[i + 1], TG__H1_C_HEX) ||
                !tg__h1_is((unsigned char)s[i + 2], TG__H1_C_HEX))
                return false;
            all = 0;
            i += 2;
        }
        if (i == 0 || (all != 0 && !tg__h1_ipv4_valid(s, i)))
            return false;
    }
    if (i == n)
        return !need_port;
    if (s[i] != ':' || n - i < 2 || n - i > 6)
        return false;
    for (i++; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        port = port * 10 + (unsigned)(s[i] - '0');
    }
    return port >= 1 && port <= 65535;
}
