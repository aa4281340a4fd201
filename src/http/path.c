/*
 * Path normalisation (DESIGN §9.11). Routing, policy and the upstream must all see the same
 * path, so it is normalised once, here, and the result is what gets forwarded. Beyond what
 * RFC 3986 §6.2.2 calls syntax-based normalisation (dot-segments, percent-encoded unreserved
 * characters decoded, hex digits of the other escapes upper-cased), duplicate slashes are merged
 * so that "/admin" cannot be reached as "//admin" around a route.
 */
#include <string.h>

#include "http/h1_internal.h"

static bool tg__path_unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* pchar minus pct-encoded: unreserved / sub-delims / ":" / "@" (RFC 3986 §3.3). */
static bool tg__path_pchar(unsigned char c)
{
    return tg__h1_is(c, TG__H1_C_REG) || c == ':' || c == '@';
}

static int tg__path_hex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes the escape at s[0..3) (s[0] is '%'), or returns -1 when it is malformed. */
static int tg__path_escape(const char *s, size_t avail)
{
    int hi, lo;

    if (avail < 3)
        return -1;
    hi = tg__path_hex((unsigned char)s[1]);
    lo = tg__path_hex((unsigned char)s[2]);
    return hi < 0 || lo < 0 ? -1 : hi << 4 | lo;
}

/*
 * The query is kept byte for byte. Browsers send '{', '}', '|', '^', '[', ']' and '`' in queries
 * without escaping them (nginx and HAProxy accept them), so any visible ASCII byte but '#' is
 * allowed (a backslash is refused there as in the path, §9.11); what matters for safety is that no
 * space, control or non-ASCII byte gets through and that every escape is well formed.
 */
static bool tg__path_query_valid(const char *q, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)q[i];

        if (c == '%') {
            if (tg__path_escape(q + i, n - i) < 0)
                return false;
            i += 2;
        } else if (c <= 0x20 || c >= 0x7f || c == '#' || c == '\\') {
            return false;
        }
    }
    return true;
}

ssize_t tg_http_path_normalize(const char *in, size_t len, char *out)
{
    static const char hexdig[] = "0123456789ABCDEF";
    const char *q;
    size_t qend, i = 1, o = 1;

    if (len == 0 || in[0] != '/')
        return -1;
    q = memchr(in, '?', len);
    qend = q != NULL ? (size_t)(q - in) : len;
    out[0] = '/';

    /* out never runs ahead of in (every output byte stands for at least one input byte), so
     * normalising in place (out == in) is safe: each byte is read before it can be written. */
    while (i < qend) {
        size_t seg = o, n;

        while (i < qend && in[i] != '/') {
            unsigned char c = (unsigned char)in[i];

            if (c == '%') {
                int v = tg__path_escape(in + i, qend - i);

                /* %00 has no use in a path and truncates it in C backends. */
                if (v <= 0)
                    return -1;
                if (tg__path_unreserved((unsigned char)v)) {
                    out[o++] = (char)v;
                } else {
                    /* Encoded '/' (and '\') stays encoded: it is data, never a separator. */
                    out[o++] = '%';
                    out[o++] = hexdig[v >> 4];
                    out[o++] = hexdig[v & 15];
                }
                i += 3;
            } else if (tg__path_pchar(c)) {
                out[o++] = (char)c;
                i++;
            } else {
                /* Backslash lands here too: some backends treat it as a separator. */
                return -1;
            }
        }
        n = o - seg;
        if (n == 1 && out[seg] == '.') {
            o = seg;
        } else if (n == 2 && out[seg] == '.' && out[seg + 1] == '.') {
            if (seg == 1)
                return -1; /* above the root */
            for (o = seg - 1; out[o - 1] != '/'; o--)
                ;
        } else if (n > 0 && i < qend) {
            out[o++] = '/';
        }
        i++; /* the '/' ending this segment, or past qend */
    }
    if (qend < len) {
        if (!tg__path_query_valid(in + qend + 1, len - qend - 1))
            return -1;
        memmove(out + o, in + qend, len - qend);
        o += len - qend;
    }
    return (ssize_t)o;
}
