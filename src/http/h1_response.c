/*
 * HTTP/1.1 response heads from upstreams (RFC 9112 §4, DESIGN §9.13). The same strictness as
 * for requests: anything malformed is a 502 and the connection is never reused, because a
 * response we misframe would be attributed to the next request on the pooled connection.
 */
#include <string.h>

#include "http/h1_internal.h"

static int tg__h1_res_fail(struct tg_h1_response *res, const char *error)
{
    res->error_status = 502;
    res->error = error;
    return TG_H1_INVALID;
}

/*
 * status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 §4). The SP before an
 * empty reason is also accepted when missing, because servers in the field omit it and the line
 * stays unambiguous.
 */
static int tg__h1_status_line(const char *buf, size_t cr, struct tg_h1_response *res)
{
    const char *d = buf + 9;

    if (cr < 12 || (buf[7] != '0' && buf[7] != '1') || buf[8] != ' ' || d[0] < '1' || d[0] > '5' ||
        d[1] < '0' || d[1] > '9' || d[2] < '0' || d[2] > '9' || (cr > 12 && buf[12] != ' '))
        return tg__h1_res_fail(res, TG__H1_E_STATUS_LINE);
    res->minor_version = (uint8_t)(buf[7] - '0');
    res->status = (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
    res->reason = cr > 12 ? tg_str_make(buf + 13, cr - 13) : tg_str_make(buf + 12, 0);
    return 0;
}

static int tg__h1_response_semantics(struct tg_h1_response *res, bool head_request)
{
    struct tg__h1_semantics s;

    if (tg__h1_analyze(res->headers, res->num_headers, &s) != 0)
        return tg__h1_res_fail(res, s.error);
    /* RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing. */
    if (s.has_te && res->minor_version == 0)
        return tg__h1_res_fail(res, TG__H1_E_TE_HTTP10);
    if (s.has_te && s.has_cl)
        return tg__h1_res_fail(res, TG__H1_E_CL_TE);
    if (s.has_cl)
        res->content_length = s.content_length;

    /* RFC 9112 §6.3: these never carry a body, whatever the framing headers say. */
    if (head_request || res->status < 200 || res->status == 204 || res->status == 304)
        res->body_kind = TG_BODY_NONE;
    else if (s.has_te)
        res->body_kind = TG_BODY_CHUNKED;
    else if (s.has_cl)
        res->body_kind = s.content_length > 0 ? TG_BODY_LENGTH : TG_BODY_NONE;
    else
        res->body_kind = TG_BODY_CLOSE;

    if (res->minor_version == 1)
        res->keep_alive = !s.conn_close;
    else
        res->keep_alive = s.conn_keep_alive && !s.conn_close;
    if (res->body_kind == TG_BODY_CLOSE)
        res->keep_alive = false;
    return 0;
}

ssize_t tg_h1_parse_response(const char *buf, size_t len, struct tg_h1_response *res,
                             const struct tg_h1_limits *lim, bool head_request)
{
    struct tg__h1_fields f;
    const char *error = NULL;
    size_t cr, hlim;
    bool too_long;
    ssize_t r;

    res->minor_version = 0;
    res->status = 0;
    res->reason = tg_str_make(NULL, 0);
    res->num_headers = 0;
    res->body_kind = TG_BODY_NONE;
    res->keep_alive = false;
    res->content_length = 0;
    res->error_status = 0;
    res->error = NULL;

    /* Refuse a peer that does not speak HTTP/1.x at once rather than waiting for a line end
     * that may never come (a TLS alert, an HTTP/2 preface, garbage). */
    if (len == 0)
        return TG_H1_INCOMPLETE; /* buf may be NULL: no pointer arithmetic on it */
    if (memcmp(buf, "HTTP/1.", len < 7 ? len : 7) != 0)
        return tg__h1_res_fail(res, TG__H1_E_STATUS_LINE);
    r = tg__h1_find_start_line(buf, len, 0, lim->max_request_line, true, &error, &too_long);
    if (r == TG_H1_INCOMPLETE)
        return r;
    if (r == TG_H1_INVALID)
        return tg__h1_res_fail(res, too_long ? TG__H1_E_STATUS_TOO_LONG : error);
    cr = (size_t)r;
    if (tg__h1_status_line(buf, cr, res) != 0)
        return TG_H1_INVALID;

    hlim = lim->max_header_bytes > SIZE_MAX - cr ? SIZE_MAX : cr + lim->max_header_bytes;
    f.headers = res->headers;
    f.max_headers = lim->max_headers;
    r = tg__h1_parse_fields(buf, len, cr + 2, hlim, &f);
    res->num_headers = f.num_headers;
    if (r == TG_H1_INVALID)
        return tg__h1_res_fail(res, f.error);
    if (r == TG_H1_INCOMPLETE)
        return r;
    if (tg__h1_response_semantics(res, head_request) != 0)
        return TG_H1_INVALID;
    return r;
}
