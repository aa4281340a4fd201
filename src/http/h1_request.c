/*
 * HTTP/1.1 request heads (RFC 9112 §3, DESIGN §9): the request line, the target forms and the
 * request-only rules on top of the shared header scanner.
 *
 * Limits are counted so that a head can never exceed max_request_line + max_header_bytes: the
 * request line's CR (empty lines skipped before it included) sits at offset max_request_line at
 * most, and the header section is counted from that CR through the final CRLF.
 */
#include <string.h>

#include "http/h1_internal.h"

static int tg__h1_fail(struct tg_h1_request *req, int status, const char *error)
{
    req->status = status;
    req->error = error;
    return TG_H1_INVALID;
}

/* Absolute-form: "http" or "https", "://", an authority without userinfo, then the path. */
static int tg__h1_absolute_form(struct tg_h1_request *req)
{
    const char *t = req->target.base, *end = t + req->target.len, *a, *ae;
    size_t k;

    if (req->target.len > 7 && tg__h1_token_eq(t, "http://", 7))
        k = 7;
    else if (req->target.len > 8 && tg__h1_token_eq(t, "https://", 8))
        k = 8;
    else
        return -1;
    a = t + k;
    for (ae = a; ae < end && *ae != '/' && *ae != '?' && *ae != '#'; ae++)
        ;
    if (!tg__h1_authority_valid(a, (size_t)(ae - a), false))
        return -1;
    req->host = tg_str_make(a, (size_t)(ae - a));
    if (ae == end) {
        /* An empty path means "/"; the last slash of "://" is one, inside the buffer as the
         * contract promises for every string the parser returns. */
        req->path = tg_str_make(a - 1, 1);
    } else if (*ae == '/') {
        req->path = tg_str_make(ae, (size_t)(end - ae));
    } else {
        /* "http://h?q" would need a "/" inserted before the query: refuse rather than copy. */
        return -1;
    }
    req->absolute_form = true;
    return 0;
}

static int tg__h1_request_target(struct tg_h1_request *req)
{
    struct tg_str t = req->target;

    if (t.base[0] == '/') {
        if (req->method_id == TG_METHOD_CONNECT)
            return tg__h1_fail(req, 400, TG__H1_E_TARGET_FORM);
        req->path = t;
        return 0;
    }
    if (t.len == 1 && t.base[0] == '*') {
        if (req->method_id != TG_METHOD_OPTIONS)
            return tg__h1_fail(req, 400, TG__H1_E_TARGET_FORM);
        req->path = t;
        return 0;
    }
    if (req->method_id == TG_METHOD_CONNECT) {
        if (!tg__h1_authority_valid(t.base, t.len, true))
            return tg__h1_fail(req, 400, TG__H1_E_AUTHORITY);
        req->path = t;
        return 0;
    }
    if (tg__h1_absolute_form(req) != 0)
        return tg__h1_fail(req, 400, TG__H1_E_ABSOLUTE);
    return 0;
}

/* Parses "method SP request-target SP HTTP-version" from line[0..n), the CRLF excluded. */
static int tg__h1_request_line(const char *line, size_t n, struct tg_h1_request *req)
{
    const char *s = line, *e = line + n, *t, *sp, *v;

    while (s < e && tg__h1_is((unsigned char)*s, TG__H1_C_TCHAR))
        s++;
    if (s == e)
        return tg__h1_fail(req, 400, TG__H1_E_REQUEST_LINE);
    if (*s != ' ')
        return tg__h1_fail(req, 400, TG__H1_E_METHOD);
    if (s == line)
        return tg__h1_fail(req, 400, TG__H1_E_SPACES);
    req->method = tg_str_make(line, (size_t)(s - line));
    req->method_id = (uint8_t)tg_http_method_id(req->method);

    t = s + 1;
    sp = memchr(t, ' ', (size_t)(e - t));
    if (sp == NULL)
        return tg__h1_fail(req, 400, TG__H1_E_NO_VERSION);
    if (sp == t)
        return tg__h1_fail(req, 400, TG__H1_E_SPACES);
    req->target = tg_str_make(t, (size_t)(sp - t));

    v = sp + 1;
    if (e - v != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
        v[7] < '0' || v[7] > '9')
        return tg__h1_fail(req, 400, TG__H1_E_VERSION);
    if (v[5] != '1' || v[7] > '1')
        return tg__h1_fail(req, 505, TG__H1_E_VERSION_UNSUP);
    req->minor_version = (uint8_t)(v[7] - '0');
    return tg__h1_request_target(req);
}

/*
 * An incomplete request line can already be refused when what should be its method is not a
 * token: a peer speaking another protocol (TLS, raw JSON) gets its 400 at once instead of
 * after max_request_line bytes.
 */
static int tg__h1_method_prefix(const char *s, size_t n, struct tg_h1_request *req)
{
    size_t i = 0;

    while (i < n && tg__h1_is((unsigned char)s[i], TG__H1_C_TCHAR))
        i++;
    /* A CR here is the last byte: an empty line, or a line end, still waiting for its LF. */
    if (i == n || s[i] == '\r' || (i > 0 && s[i] == ' '))
        return TG_H1_INCOMPLETE;
    return tg__h1_fail(req, 400, s[i] == ' ' ? TG__H1_E_SPACES : TG__H1_E_METHOD);
}

/* Applies the request-only rules of §9 to the parsed header section. */
static int tg__h1_request_semantics(struct tg_h1_request *req)
{
    struct tg__h1_semantics s;

    if (tg__h1_analyze(req->headers, req->num_headers, &s) != 0)
        return tg__h1_fail(req, s.status, s.error);
    if (s.has_te && req->minor_version == 0)
        return tg__h1_fail(req, 400, TG__H1_E_TE_HTTP10);
    if (s.has_te && s.has_cl)
        return tg__h1_fail(req, 400, TG__H1_E_CL_TE);
    if (s.hosts > 1)
        return tg__h1_fail(req, 400, TG__H1_E_HOST_DUP);
    if (s.hosts == 0 && req->minor_version == 1)
        return tg__h1_fail(req, 400, TG__H1_E_HOST_MISSING);
    if (s.hosts == 1 && !tg__h1_authority_valid(s.host.base, s.host.len, false))
        return tg__h1_fail(req, 400, TG__H1_E_HOST_INVALID);
    /* We forward nothing we cannot honour: an expectation other than 100-continue is refused
     * with 417 (RFC 9110 §10.1.1), and 100-continue in HTTP/1.0 is ignored as required. */
    if (s.expect_other)
        return tg__h1_fail(req, 417, TG__H1_E_EXPECT);
    if (!req->absolute_form)
        req->host = s.host;

    if (s.has_te) {
        req->body_kind = TG_BODY_CHUNKED;
    } else if (s.has_cl && s.content_length > 0) {
        req->body_kind = TG_BODY_LENGTH;
        req->content_length = s.content_length;
    }
    if (req->minor_version == 1) {
        req->keep_alive = !s.conn_close;
        req->expect_continue = s.expect_continue;
        /* RFC 9110 §7.8: Upgrade is ignored in HTTP/1.0 requests. */
        req->upgrade = s.has_upgrade && s.conn_upgrade;
    } else {
        req->keep_alive = s.conn_keep_alive && !s.conn_close;
    }
    return 0;
}

ssize_t tg_h1_parse_request(const char *buf, size_t len, struct tg_h1_request *req,
                            const struct tg_h1_limits *lim)
{
    struct tg__h1_fields f;
    const char *error = NULL;
    size_t p = 0, cr, hlim;
    bool too_long;
    ssize_t r;

    req->method = tg_str_make(NULL, 0);
    req->method_id = TG_METHOD_OTHER;
    req->minor_version = 0;
    req->target = req->host = req->path = tg_str_make(NULL, 0);
    req->num_headers = 0;
    req->body_kind = TG_BODY_NONE;
    req->keep_alive = req->expect_continue = req->upgrade = req->absolute_form = false;
    req->content_length = 0;
    req->status = 0;
    req->error = NULL;
    if (len == 0)
        return TG_H1_INCOMPLETE; /* buf may be NULL: no pointer arithmetic on it */

    /* RFC 9112 §2.2: empty lines before the request line are ignored; they count against the
     * request line's limit so that a stream of them cannot hold the connection forever. */
    while (p + 1 < len && p <= lim->max_request_line && buf[p] == '\r' && buf[p + 1] == '\n')
        p += 2;
    r = tg__h1_find_start_line(buf, len, p, lim->max_request_line, false, &error, &too_long);
    if (r == TG_H1_INCOMPLETE)
        return tg__h1_method_prefix(buf + p, len - p, req);
    if (r == TG_H1_INVALID)
        return tg__h1_fail(req, too_long ? 414 : 400, too_long ? TG__H1_E_LINE_TOO_LONG : error);
    cr = (size_t)r;
    if (tg__h1_request_line(buf + p, cr - p, req) != 0)
        return TG_H1_INVALID;

    hlim = lim->max_header_bytes > SIZE_MAX - cr ? SIZE_MAX : cr + lim->max_header_bytes;
    f.headers = req->headers;
    f.max_headers = lim->max_headers;
    r = tg__h1_parse_fields(buf, len, cr + 2, hlim, &f);
    req->num_headers = f.num_headers;
    if (r == TG_H1_INVALID)
        return tg__h1_fail(req, f.status, f.error);
    if (r == TG_H1_INCOMPLETE)
        return r;
    if (tg__h1_request_semantics(req) != 0)
        return TG_H1_INVALID;
    return r;
}
