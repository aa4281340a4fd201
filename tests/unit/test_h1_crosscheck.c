/*
 * Cross-checks our request parser against an independent one, Debian's http-parser (the parser
 * Node.js used before llhttp). For every input of tests/fuzz/corpus/request/ and the list below,
 * both must agree on accepting or rejecting the head and, when both accept, on the method, the
 * target and every header name and value.
 *
 * We are deliberately stricter than http-parser (DESIGN §9), and a little more lenient in two
 * places (extension methods, identical duplicate Content-Length). Every disagreement must fall
 * into one of the categories listed in allowed_stricter[] / allowed_more_lenient(); any other
 * disagreement fails the test.
 */
#include <dirent.h>
#include <http_parser.h>
#include <stdlib.h>

#include "core/core.h"
#include "http/h1.h"
#include "http/h1_internal.h"
#include "unit.h"

#define CC_MAX_INPUT (64 * 1024)
#define MAX_HDRS     128

struct hp_result {
    bool headers_done;
    bool complete;
    char method[32];
    char url[CC_MAX_INPUT];
    size_t url_len;
    size_t num_headers;
    bool in_value;
    struct {
        char name[256];
        size_t name_len;
        char value[CC_MAX_INPUT];
        size_t value_len;
    } h[MAX_HDRS];
};

static struct hp_result hp;

static void append(char *dst, size_t *dlen, size_t cap, const char *at, size_t len)
{
    if (*dlen + len > cap)
        len = cap - *dlen;
    memcpy(dst + *dlen, at, len);
    *dlen += len;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    append(hp.url, &hp.url_len, sizeof(hp.url), at, len);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    if (hp.in_value || hp.num_headers == 0) {
        if (hp.num_headers == MAX_HDRS)
            return 1;
        hp.num_headers++;
        hp.in_value = false;
    }
    append(hp.h[hp.num_headers - 1].name, &hp.h[hp.num_headers - 1].name_len, sizeof(hp.h[0].name),
           at, len);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    hp.in_value = true;
    append(hp.h[hp.num_headers - 1].value, &hp.h[hp.num_headers - 1].value_len,
           sizeof(hp.h[0].value), at, len);
    return 0;
}

/*
 * Returns 0 so that http-parser still applies the Transfer-Encoding checks it makes right after
 * this callback (returning 1, "no body", would skip them); the body is kept out of its way by
 * feeding it only our head when we accept, and by pausing once the message completes.
 */
static int on_headers_complete(http_parser *p)
{
    hp.headers_done = true;
    snprintf(hp.method, sizeof(hp.method), "%s", http_method_str((enum http_method)p->method));
    return 0;
}

static int on_message_complete(http_parser *p)
{
    hp.complete = true;
    http_parser_pause(p, 1);
    return 0;
}

/* Runs http-parser over buf[0..len); returns its errno, HPE_OK when the head was accepted. */
static enum http_errno hp_parse(const char *buf, size_t len)
{
    http_parser_settings s;
    http_parser p;
    enum http_errno e;

    memset(&hp, 0, sizeof(hp));
    http_parser_settings_init(&s);
    s.on_url = on_url;
    s.on_header_field = on_header_field;
    s.on_header_value = on_header_value;
    s.on_headers_complete = on_headers_complete;
    s.on_message_complete = on_message_complete;
    http_parser_init(&p, HTTP_REQUEST);
    http_parser_execute(&p, &s, buf, len);
    e = HTTP_PARSER_ERRNO(&p);
    if (e == HPE_PAUSED)
        e = HPE_OK;
    /* Errors in the body are not about the head, except the framing checks http-parser makes
     * once the head is complete. */
    if (hp.headers_done && e != HPE_INVALID_TRANSFER_ENCODING && e != HPE_UNEXPECTED_CONTENT_LENGTH)
        return HPE_OK;
    if (e == HPE_OK && !hp.headers_done)
        return HPE_PAUSED; /* incomplete: neither accepted nor rejected */
    return e;
}

/*
 * Where we reject what http-parser accepts, on purpose (DESIGN §9 rule in brackets). Each entry
 * is one of our error reasons; a disagreement with any other reason is a bug on one side.
 */
static const char *const allowed_stricter[] = {
    TG__H1_E_BARE_LF,        /* [9.6] http-parser accepts LF line terminators */
    TG__H1_E_BARE_CR,        /* [9.6] in places http-parser skips CRs */
    TG__H1_E_OBS_FOLD,       /* [9.5] http-parser unfolds continuation lines */
    TG__H1_E_LEADING_WS,     /* [9.5] whitespace before the first field */
    TG__H1_E_VALUE_CTL,      /* [9.7] http-parser allows most CTLs in values */
    TG__H1_E_CL_TE,          /* [9.1] http-parser only refuses CL with chunked */
    TG__H1_E_CL,             /* [9.3] http-parser skips whitespace inside the number */
    TG__H1_E_TE_MALFORMED,   /* [9.2] http-parser does not parse the coding list */
    TG__H1_E_TE_CHUNKED,     /* [9.2] chunked twice or not last */
    TG__H1_E_TE_UNKNOWN,     /* [9.2] 501 for codings we do not know */
    TG__H1_E_TE_FINAL,       /* [9.2] final coding not chunked */
    TG__H1_E_TE_HTTP10,      /* [9.2] Transfer-Encoding in HTTP/1.0 */
    TG__H1_E_HOST_MISSING,   /* [9.10] http-parser does not look at Host */
    TG__H1_E_HOST_DUP,       /* [9.10] */
    TG__H1_E_HOST_INVALID,   /* [9.10] */
    TG__H1_E_CONN_NAMES,     /* [9.12] Connection naming Host, Content-Length, Transfer-Encoding */
    TG__H1_E_CONN_MALFORMED, /* [9.12] Connection values that are not token lists */
    TG__H1_E_WS_COLON,       /* [9.7] http-parser skips whitespace before the colon */
    TG__H1_E_SPACES,         /* [9.8] http-parser accepts runs of spaces in the request line */
    TG__H1_E_NO_VERSION,     /* [9.8] http-parser accepts HTTP/0.9 request lines */
    TG__H1_E_VERSION_UNSUP,  /* [9.8] 505 for any version but 1.0 and 1.1 */
    TG__H1_E_VERSION,        /* [9.8] http-parser reads multi-digit versions */
    TG__H1_E_TARGET_FORM,    /* [9.8] "*" only with OPTIONS, authority-form only with CONNECT */
    TG__H1_E_ABSOLUTE,       /* [9.8] schemes other than http(s), userinfo, bad authorities */
    TG__H1_E_AUTHORITY,      /* [9.8] CONNECT targets that are not host:port */
    TG__H1_E_TARGET_CHAR,    /* [9.8] non-ASCII bytes in the target */
    TG__H1_E_EXPECT,         /* [9.14] 417 for expectations other than 100-continue */
    TG__H1_E_LINE_TOO_LONG,  /* limits: our 8 KiB request line, http-parser's 80 KiB head */
    TG__H1_E_HEAD_TOO_LARGE, /* limits */
    TG__H1_E_TOO_MANY,       /* limits: http-parser has no field count limit */
};

static size_t stricter_count[TG_ARRAY_SIZE(allowed_stricter)];

static bool stricter_allowed(const char *error)
{
    for (size_t i = 0; i < TG_ARRAY_SIZE(allowed_stricter); i++) {
        if (strcmp(error, allowed_stricter[i]) == 0) {
            stricter_count[i]++;
            return true;
        }
    }
    return false;
}

/* Where http-parser rejects what we accept, on purpose. */
static bool allowed_more_lenient(const struct tg_h1_request *req, enum http_errno e)
{
    /* http-parser knows a fixed list of methods; any token is a valid method (RFC 9110 §9.1). */
    if (e == HPE_INVALID_METHOD && req->method_id == TG_METHOD_OTHER)
        return true;
    /* http-parser refuses every duplicate Content-Length; RFC 9110 §8.6 lets identical ones
     * merge, which we do. */
    if (e == HPE_UNEXPECTED_CONTENT_LENGTH) {
        size_t n = 0;

        for (size_t i = 0; i < req->num_headers; i++)
            n += req->headers[i].id == TG_HDR_CONTENT_LENGTH;
        return n > 1;
    }
    /* http-parser refuses some target bytes itself; ours go to path normalisation, which must
     * then refuse them. */
    if (e == HPE_INVALID_URL && req->path.base[0] == '/') {
        char out[CC_MAX_INPUT];

        return tg_http_path_normalize(req->path.base, req->path.len, out) < 0;
    }
    return false;
}

static bool same_head(const struct tg_h1_request *req, const char *input)
{
    if (strlen(hp.method) != req->method.len ||
        memcmp(hp.method, req->method.base, req->method.len) != 0) {
        fprintf(stderr, "  method: ours \"%.*s\", http-parser \"%s\"\n", (int)req->method.len,
                req->method.base, hp.method);
        return false;
    }
    if (hp.url_len != req->target.len || memcmp(hp.url, req->target.base, hp.url_len) != 0) {
        fprintf(stderr, "  target differs\n");
        return false;
    }
    if (hp.num_headers != req->num_headers) {
        fprintf(stderr, "  %zu headers vs %zu\n", req->num_headers, hp.num_headers);
        return false;
    }
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct tg_http_header *h = &req->headers[i];
        size_t vl = hp.h[i].value_len;

        /* http-parser keeps trailing whitespace in values; RFC 9112 §5 says it is not part of
         * the value. */
        while (vl > 0 && (hp.h[i].value[vl - 1] == ' ' || hp.h[i].value[vl - 1] == '\t'))
            vl--;
        if (h->name.len != hp.h[i].name_len ||
            memcmp(h->name.base, hp.h[i].name, h->name.len) != 0 || h->value.len != vl ||
            memcmp(h->value.base, hp.h[i].value, vl) != 0) {
            fprintf(stderr, "  header %zu differs: \"%.*s: %.*s\" vs \"%.*s: %.*s\"\n", i,
                    (int)h->name.len, h->name.base, (int)h->value.len, h->value.base,
                    (int)hp.h[i].name_len, hp.h[i].name, (int)vl, hp.h[i].value);
            return false;
        }
    }
    (void)input;
    return true;
}

static size_t agreed, allowed, incomplete, checked;

static void crosscheck(const char *name, const char *buf, size_t len)
{
    static struct tg_http_header hdrs[100];
    const struct tg_h1_limits lim = {8192, 32768, 100};
    struct tg_h1_request req = {.headers = hdrs};
    ssize_t r = tg_h1_parse_request(buf, len, &req, &lim);
    enum http_errno e;

    checked++;
    e = hp_parse(buf, r > 0 ? (size_t)r : len);
    if (r == TG_H1_INCOMPLETE) {
        /* A truncated head: http-parser must not have found a complete one in it. */
        if (e == HPE_OK)
            UNIT_FAIL("%s: incomplete for us, a complete head for http-parser", name);
        incomplete++;
        return;
    }
    if (r > 0 && e == HPE_OK) {
        if (same_head(&req, buf))
            agreed++;
        else
            UNIT_FAIL("%s: both accept but disagree", name);
    } else if (r < 0 && e != HPE_OK && e != HPE_PAUSED) {
        agreed++;
    } else if (r < 0) {
        if (stricter_allowed(req.error))
            allowed++;
        else
            UNIT_FAIL("%s: we reject (%d %s), http-parser accepts", name, req.status, req.error);
    } else if (allowed_more_lenient(&req, e)) {
        printf("  more lenient than http-parser (%s): %s\n", http_errno_name(e), name);
        allowed++;
    } else {
        UNIT_FAIL("%s: we accept, http-parser rejects (%s)", name, http_errno_name(e));
    }
}

#define S(lit) lit, sizeof(lit) - 1

static const struct {
    const char *in;
    size_t len;
} inline_inputs[] = {
    {S("GET / HTTP/1.1\r\nHost: a\r\n\r\n")},
    {S("GET /a/b?c=d&e=%20 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n")},
    {S("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")},
    {S("POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")},
    {S("PUT /x HTTP/1.0\r\nContent-Length: 0\r\n\r\n")},
    {S("DELETE /x HTTP/1.1\r\nHost: a\r\nX-Pad:    spaced   \r\n\r\n")},
    {S("HEAD / HTTP/1.1\r\nhost: A.Example.COM.\r\nconnection: close\r\n\r\n")},
    {S("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")},
    {S("CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n")},
    {S("GET http://a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n")},
    {S("PATCH /x HTTP/1.1\r\nHost: [::1]:8080\r\nContent-Length: 0\r\n\r\n")},
    {S("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")},
    {S("GET / HTTP/1.1\r\nHost: a\r\nX-Utf8: \xe2\x82\xac\r\n\r\n")},
    {S("MKCOL /d HTTP/1.1\r\nHost: a\r\n\r\n")},
    {S("BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n")},
    {S("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nX: 2\r\n\r\n")},
    {S("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx")},
    {S("GET / HTTP/1.1\nHost: a\n\n")},
    {S("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n")},
    {S("GET / HTTP/1.1\r\nX: a\r\n\r\n")},
    {S("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n")},
    {S("GET / HTTP/1.1\r\nHost: a\r\nConnection: host\r\n\r\n")},
    {S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n")},
    {S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n")},
    {S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n")},
    {S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3 3\r\n\r\n")},
    {S("GET / HTTP/1.1\r\nHost: a\r\nX : a\r\n\r\n")},
    {S("GET / HTTP/1.1\r\nHost: a\r\n: a\r\n\r\n")},
    {S("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01\r\n\r\n")},
    {S("GET / HTTP/1.1\r\nHost: a\r\nX: a\0\r\n\r\n")},
    {S("GET  / HTTP/1.1\r\nHost: a\r\n\r\n")},
    {S("GET / HTTP/2.0\r\nHost: a\r\n\r\n")},
    {S("GET / FOO/1.1\r\nHost: a\r\n\r\n")},
    {S("GET * HTTP/1.1\r\nHost: a\r\n\r\n")},
    {S("GET a:1 HTTP/1.1\r\nHost: a\r\n\r\n")},
    {S("G@T / HTTP/1.1\r\nHost: a\r\n\r\n")},
    {S("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n")},
    {S("GET / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n")},
    {S("GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n")},
    {S("GET /a\"b HTTP/1.1\r\nHost: a\r\n\r\n")},
};

static void crosscheck_corpus(const char *dir)
{
    static char buf[CC_MAX_INPUT];
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t files = 0;

    if (d == NULL) {
        UNIT_FAIL("cannot open %s", dir);
        return;
    }
    while ((e = readdir(d)) != NULL) {
        char path[1024];
        FILE *f;
        size_t n;

        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        f = fopen(path, "rb");
        if (f == NULL)
            continue;
        n = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        crosscheck(e->d_name, buf, n);
        files++;
    }
    closedir(d);
    ASSERT(files > 0);
}

TEST(test_crosscheck)
{
    for (size_t i = 0; i < TG_ARRAY_SIZE(inline_inputs); i++) {
        char name[32];

        snprintf(name, sizeof(name), "inline %zu", i);
        crosscheck(name, inline_inputs[i].in, inline_inputs[i].len);
    }
    crosscheck_corpus("tests/fuzz/corpus/request");
    for (size_t i = 0; i < TG_ARRAY_SIZE(allowed_stricter); i++) {
        if (stricter_count[i] > 0)
            printf("  stricter than http-parser: %zu x %s\n", stricter_count[i],
                   allowed_stricter[i]);
    }
    printf("crosscheck: %zu inputs, %zu agreed, %zu differ in allowed categories, %zu incomplete\n",
           checked, agreed, allowed, incomplete);
}

int main(void)
{
    RUN(test_crosscheck);
    return unit_report();
}
