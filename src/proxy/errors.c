/*
 * tollgate's own responses: JSON errors (DESIGN §5) with the request id, so a client can quote
 * it and an operator can find the access-log line.
 */
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "core/str.h"
#include "proxy/proxy.h"

size_t tg_error_format(char *out, size_t cap, struct tg_worker *w, int status, const char *code,
                       const char *message, const char *rid, size_t rid_len, bool close,
                       unsigned retry_after, const char *extra, const char *rpc_id,
                       size_t rpc_id_len)
{
    char ra[32] = "";
    char body[512];
    size_t date_len;
    const char *date = tg_worker_date(w, &date_len);
    int blen, hlen;

    if (rpc_id != NULL) /* a JSON-RPC route: a JSON-RPC error object, the details in data */
        blen = snprintf(body, sizeof(body),
                        "{\"jsonrpc\":\"2.0\",\"id\":%.*s,\"error\":{\"code\":%d,"
                        "\"message\":\"%s\",\"data\":{\"status\":%d,\"code\":\"%s\","
                        "\"request_id\":\"%.*s\"}}}\n",
                        (int)TG_MIN(rpc_id_len, 128), rpc_id, tg_rpc_status_code(status), message,
                        status, code, (int)rid_len, rid ? rid : "");
    else
        blen = snprintf(body, sizeof(body),
                        "{\"error\":{\"status\":%d,\"code\":\"%s\",\"message\":\"%s\","
                        "\"request_id\":\"%.*s\"}}\n",
                        status, code, message, (int)rid_len, rid ? rid : "");
    if (blen < 0 || (size_t)blen >= sizeof(body))
        blen = (int)sizeof(body) - 1;
    if (retry_after != 0)
        snprintf(ra, sizeof(ra), "Retry-After: %u\r\n", retry_after);
    hlen = snprintf(out, cap,
                    "HTTP/1.1 %d %s\r\n%.*sServer: tollgate\r\nContent-Type: application/json\r\n"
                    "Content-Length: %d\r\n%s%.*s%s%s%s%s\r\n",
                    status, tg_http_status_text(status), (int)date_len, date, blen,
                    rid_len ? "X-Request-Id: " : "", (int)rid_len, rid ? rid : "",
                    rid_len ? "\r\n" : "", ra, extra ? extra : "",
                    close ? "Connection: close\r\n" : "");
    if (hlen < 0 || (size_t)hlen + (size_t)blen > cap)
        tg_fatal("error response does not fit its buffer");
    memcpy(out + hlen, body, (size_t)blen);
    return (size_t)hlen + (size_t)blen;
}

/* tollgate answers instead of a node: false (and the connection closed) when a response is
 * already under way, since there is no way to take it back. */
static bool tg__reply_begin(struct tg_txn *t)
{
    if (t->res_state != TG_RES_WAIT || t->local_reply) {
        tg_conn_abort(t->conn);
        return false;
    }
    if (t->up != NULL) {
        tg_upconn_close(t->up);
        t->up = NULL;
    }
    return true;
}

/*
 * Replaces whatever the transaction was doing with an error response. Once a response head has
 * gone to the client there is no way to signal an error but to close the connection.
 */
void tg_txn_respond(struct tg_txn *t, int status, const char *code, const char *message,
                    unsigned retry_after, const char *extra)
{
    struct tg_conn *c = t->conn;
    char *out = t->scratch + t->scratch_cap / 2;
    const char *rpc_id = NULL;
    size_t n, rpc_id_len = 0;

    if (t->parent != NULL) { /* a leg of a JSON-RPC fan-out: its error goes into the answer */
        tg_rpc_leg_failed(t, message);
        return;
    }
    if (!tg__reply_begin(t))
        return;
    if (t->req_state != TG_REQ_DONE) {
        /* the rest of the request body is still on the wire: it cannot be skipped reliably */
        c->close_after = true;
    }
    if (status == 408 || status == 414 || status == 431 || status == 400 || status == 413 ||
        status == 501 || status == 505)
        c->close_after = true;
    if (t->request_id_len == 0)
        tg_worker_request_id(c->worker, t->request_id, &t->request_id_len);
    if (t->route != NULL && t->route->rpc != NULL)
        rpc_id = tg_rpc_request_id(t, &rpc_id_len);
    n = tg_error_format(out, t->scratch_cap - t->scratch_cap / 2, c->worker, status, code, message,
                        t->request_id, t->request_id_len, c->close_after, retry_after, extra,
                        rpc_id, rpc_id_len);
    t->status = status;
    t->started = true; /* refused before routing (limits, bad requests): still a request */
    t->local_reply = true;
    t->res_state = TG_RES_BODY;
    t->res_end = true;
    t->res_out.iov[0].iov_base = out;
    t->res_out.iov[0].iov_len = n;
    t->res_out.off = 0;
    t->res_out.cnt = 1;
    t->res_body_out = 0;
    c->phase = TG_CONN_TXN;
    c->worker->stats.responses_by_class[status / 100]++;
    tg_txn_flush(t);
}

void tg_txn_respond_error(struct tg_txn *t, int status, const char *code, const char *message)
{
    tg_txn_respond(t, status, code, message, 0, NULL);
}

void tg_txn_respond_busy(struct tg_txn *t, const char *code, const char *message,
                         unsigned retry_after)
{
    tg_txn_respond(t, 503, code, message, retry_after, NULL);
}

void tg_txn_reply(struct tg_txn *t, int status, const char *body, size_t len)
{
    struct tg_conn *c = t->conn;
    char *start = t->scratch + t->scratch_cap / 2;
    char *end = t->scratch + t->scratch_cap;
    char *p = start;
    size_t date_len;
    const char *date = tg_worker_date(c->worker, &date_len);
    char code[4] = {(char)('0' + status / 100), (char)('0' + status / 10 % 10),
                    (char)('0' + status % 10), ' '};
    const char *reason = tg_http_status_text(status);

    if (!tg__reply_begin(t))
        return;
    if (!t->req.keep_alive || c->worker->draining || t->req_state != TG_REQ_DONE)
        c->close_after = true;
    TG_PUTS(p, end, "HTTP/1.1 ");
    TG_PUT(p, end, code, 4);
    TG_PUT(p, end, reason, strlen(reason));
    TG_PUTS(p, end, "\r\n");
    TG_PUT(p, end, date, date_len);
    TG_PUTS(p, end, "Content-Type: application/json\r\nContent-Length: ");
    if (end - p < 24)
        goto overflow;
    p = tg_put_u64(p, len);
    TG_PUTS(p, end, "\r\n");
    p = tg_txn_head_end(t, p, end);
    if (p == NULL)
        goto overflow;
    t->status = status;
    t->local_reply = true;
    t->res_state = TG_RES_BODY;
    t->res_end = true;
    t->res_out.iov[0] = (struct iovec){start, (size_t)(p - start)};
    t->res_out.cnt = 1;
    if (len > 0 && !t->head_request)
        t->res_out.iov[t->res_out.cnt++] = (struct iovec){(void *)body, len};
    t->res_out.off = 0;
    t->res_body_out = 0;
    c->phase = TG_CONN_TXN;
    c->worker->stats.responses_by_class[status / 100]++;
    tg_txn_flush(t);
    return;

overflow:
    tg_txn_respond_error(t, 500, "internal_error", "the reply head does not fit");
}
