/*
 * Strict, zero-copy HTTP/1.1 message parsing (DESIGN §9).
 *
 * Parsers follow picohttpparser's contract: they never allocate, every struct tg_str they fill
 * points into the caller's buffer, and they return the number of bytes consumed (> 0) when a
 * complete message head was parsed, TG_H1_INCOMPLETE (-2) when more bytes are needed, and
 * TG_H1_INVALID (-1) when the input can never become valid; in that case ->status holds the HTTP
 * status to answer (400, 414, 431, 501, 505 for requests; 502 for responses) and ->error a short
 * static reason for logs and tests (417 for an Expect other than 100-continue). Callers re-run the
 * parser from the start of the message with the longer buffer after each read; parsing is cheap
 * enough that keeping partial state is not worth its complexity.
 */
#ifndef TG_H1_H
#define TG_H1_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/str.h"

#define TG_H1_INVALID    (-1)
#define TG_H1_INCOMPLETE (-2)

enum tg_http_method {
    TG_METHOD_OTHER = 0,
    TG_METHOD_GET,
    TG_METHOD_HEAD,
    TG_METHOD_POST,
    TG_METHOD_PUT,
    TG_METHOD_DELETE,
    TG_METHOD_OPTIONS,
    TG_METHOD_PATCH,
    TG_METHOD_TRACE,
    TG_METHOD_CONNECT,
    TG_METHOD__COUNT
};

/* Well-known header names, recognised by the parser so later stages never compare strings. */
enum tg_http_header_id {
    TG_HDR_OTHER = 0,
    TG_HDR_HOST,
    TG_HDR_CONTENT_LENGTH,
    TG_HDR_TRANSFER_ENCODING,
    TG_HDR_CONNECTION,
    TG_HDR_KEEP_ALIVE,
    TG_HDR_PROXY_CONNECTION,
    TG_HDR_TE,
    TG_HDR_TRAILER,
    TG_HDR_UPGRADE,
    TG_HDR_EXPECT,
    TG_HDR_X_FORWARDED_FOR,
    TG_HDR_X_FORWARDED_PROTO,
    TG_HDR_X_FORWARDED_HOST,
    TG_HDR_X_REQUEST_ID,
    TG_HDR_VIA,
    TG_HDR_DATE,
    TG_HDR_SERVER,
    TG_HDR_TRACEPARENT,
    TG_HDR_TRACESTATE,
};

/* Set on a header when it must not be forwarded as is (DESIGN §9.12): hop-by-hop by definition,
 * or named in the Connection header. */
#define TG_HDR_F_HOP 0x1

struct tg_http_header {
    struct tg_str name;  /* points at the first byte of the header line */
    struct tg_str value; /* leading and trailing whitespace removed */
    uint16_t id;         /* enum tg_http_header_id */
    uint16_t flags;      /* TG_HDR_F_* */
};

enum tg_http_body_kind {
    TG_BODY_NONE = 0, /* no body at all */
    TG_BODY_LENGTH,   /* content_length bytes */
    TG_BODY_CHUNKED,  /* chunked transfer coding */
    TG_BODY_CLOSE,    /* responses only: body runs until the peer closes */
};

struct tg_h1_limits {
    size_t max_request_line; /* request line longer than this: 414 */
    size_t max_header_bytes; /* whole head (request line excluded) larger than this: 431 */
    size_t max_headers;      /* more header fields than this: 431; also the array capacity */
};

struct tg_h1_request {
    /* filled by the parser */
    struct tg_str method;
    uint8_t method_id; /* enum tg_http_method */
    uint8_t minor_version;
    struct tg_str target;           /* exactly as received */
    struct tg_http_header *headers; /* caller-provided array of limits->max_headers entries */
    size_t num_headers;

    /* derived from the head (§9.1-9.3, 9.8, 9.10, 9.12) */
    struct tg_str host;      /* authority of an absolute-form target, else the Host value */
    struct tg_str path;      /* path and query: origin-form target, or the part of an
                                absolute-form target after the authority ("/" if empty);
                                for CONNECT the authority, for OPTIONS * "*" */
    uint8_t body_kind;       /* enum tg_http_body_kind, never TG_BODY_CLOSE */
    bool keep_alive;         /* HTTP/1.1 unless "Connection: close"; 1.0 only with keep-alive */
    bool expect_continue;    /* "Expect: 100-continue" */
    bool upgrade;            /* Upgrade header present and named in Connection */
    bool absolute_form;      /* target was absolute-form */
    uint64_t content_length; /* when body_kind == TG_BODY_LENGTH */

    /* on TG_H1_INVALID */
    int status;
    const char *error;
};

struct tg_h1_response {
    uint8_t minor_version;
    int status;
    struct tg_str reason;
    struct tg_http_header *headers; /* caller-provided array of limits->max_headers entries */
    size_t num_headers;

    uint8_t body_kind;       /* enum tg_http_body_kind */
    bool keep_alive;         /* the upstream connection may be reused after this response */
    uint64_t content_length; /* when body_kind == TG_BODY_LENGTH */

    /* on TG_H1_INVALID: status is 502 */
    int error_status;
    const char *error;
};

/*
 * Parses a request head from buf[0..len). The caller sets req->headers; the function fills every
 * other field. Returns bytes consumed (the head, final CRLF included), TG_H1_INCOMPLETE or
 * TG_H1_INVALID with req->status and req->error set. Enforces every limit of *lim, so a caller
 * that gets TG_H1_INCOMPLETE with len >= max_request_line + max_header_bytes has a bug.
 */
ssize_t tg_h1_parse_request(const char *buf, size_t len, struct tg_h1_request *req,
                            const struct tg_h1_limits *lim);

/*
 * Parses a response head. head_request tells whether the request was HEAD (no body follows
 * whatever the headers say). Returns as tg_h1_parse_request(); 1xx responses parse normally
 * (the caller skips them, 101 excepted).
 */
ssize_t tg_h1_parse_response(const char *buf, size_t len, struct tg_h1_response *res,
                             const struct tg_h1_limits *lim, bool head_request);

/* Chunked transfer coding (§9.4). Zero-initialise with tg_h1_chunked_init() per body. */
struct tg_h1_chunked {
    uint64_t remaining;  /* data bytes left in the current chunk */
    uint64_t data_bytes; /* chunk data seen so far, for body size limits */
    uint32_t line_len;   /* bytes seen of the current size or trailer line */
    uint32_t trailer_bytes;
    uint32_t max_line;     /* size line (with extensions) longer than this: invalid */
    uint32_t max_trailers; /* trailer section larger than this: invalid */
    uint8_t state;
};

void tg_h1_chunked_init(struct tg_h1_chunked *d, uint32_t max_line, uint32_t max_trailers);

/*
 * Validates chunked framing without changing the bytes (pass-through forwarding). Returns
 * TG_H1_INVALID, TG_H1_INCOMPLETE when all len bytes belong to the body and it continues, or
 * n >= 0 when the body (last chunk and trailers included) ended after the first n bytes.
 */
ssize_t tg_h1_chunked_scan(struct tg_h1_chunked *d, const char *buf, size_t len);

/*
 * As tg_h1_chunked_scan(), but also moves the chunk data found in the consumed bytes to
 * buf[0..*data_len), dropping sizes, extensions and trailers.
 */
ssize_t tg_h1_chunked_decode(struct tg_h1_chunked *d, char *buf, size_t len, size_t *data_len);

/*
 * Normalises the path of an origin-form target once (§9.11): resolves "." and ".." segments
 * (also when written %2E), merges duplicate slashes, decodes escaped unreserved characters (so
 * "/%61dmin" is "/admin" for routing and upstream alike) and upper-cases other escapes, leaves
 * %2F encoded (it is never a separator), and rejects a backslash, a bad or NUL escape, a path
 * that climbs above the root, or a byte outside RFC 3986's pchar set. The query is kept byte for
 * byte: any visible ASCII but '#' and '\', with well-formed escapes. Writes at most len bytes to
 * out, which may be in itself. Returns the output length, or -1 when the target must be answered
 * with 400.
 */
ssize_t tg_http_path_normalize(const char *in, size_t len, char *out);

/* Returns the reason phrase for a status code ("Unknown" for codes without one). */
const char *tg_http_status_text(int status);

/* Method names by enum tg_http_method; "OTHER" for TG_METHOD_OTHER. */
extern const char *const tg_http_method_names[TG_METHOD__COUNT];

/* Maps a method token to enum tg_http_method. */
int tg_http_method_id(struct tg_str method);

#endif
