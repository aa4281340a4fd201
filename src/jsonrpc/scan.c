/*
 * A strict JSON scanner that hands out one event per call (a pull parser) and keeps the open
 * containers as one bit each, so no input can make it recurse or allocate. It checks the whole
 * RFC 8259 grammar, which jsmn does not (jsmn takes "[1 2]", "[1,,2]" and "{"a":1,}"): the
 * envelope parser runs it over a request before jsmn, and the reply scanner and the parameter
 * look-ups use it alone.
 */
#include "jsonrpc/jsonrpc_internal.h"

#include <string.h>

enum {
    TG__RPC_S_VALUE,          /* a value must come: the top, after ':' or after ',' in [] */
    TG__RPC_S_VALUE_OR_CLOSE, /* just after '[' */
    TG__RPC_S_KEY_OR_CLOSE,   /* just after '{' */
    TG__RPC_S_COLON,          /* after a member name */
    TG__RPC_S_AFTER,          /* after a value: ',' or the container's end, or the text's */
    TG__RPC_S_DONE,
    TG__RPC_S_FAILED,
};

/* Bytes that end the fast run through a string: the quote, the backslash and the control
 * characters, which must be escaped. */
static const unsigned char tg__rpc_str_stop[256] = {
    [0x00] = 1, [0x01] = 1, [0x02] = 1, [0x03] = 1, [0x04] = 1, [0x05] = 1, [0x06] = 1,
    [0x07] = 1, [0x08] = 1, [0x09] = 1, [0x0a] = 1, [0x0b] = 1, [0x0c] = 1, [0x0d] = 1,
    [0x0e] = 1, [0x0f] = 1, [0x10] = 1, [0x11] = 1, [0x12] = 1, [0x13] = 1, [0x14] = 1,
    [0x15] = 1, [0x16] = 1, [0x17] = 1, [0x18] = 1, [0x19] = 1, [0x1a] = 1, [0x1b] = 1,
    [0x1c] = 1, [0x1d] = 1, [0x1e] = 1, [0x1f] = 1, ['"'] = 1,  ['\\'] = 1,
};

void tg__rpc_scan_init(struct tg__rpc_scan *sc, const char *s, size_t len, uint32_t max_depth)
{
    memset(sc, 0, sizeof(*sc));
    sc->s = s;
    sc->len = len;
    sc->max_depth = max_depth < TG__RPC_STACK_MAX ? max_depth : TG__RPC_STACK_MAX;
    sc->state = TG__RPC_S_VALUE;
}

static int tg__rpc_fail(struct tg__rpc_scan *sc, const char *why)
{
    sc->state = TG__RPC_S_FAILED;
    sc->why = why;
    return TG__RPC_EV_BAD;
}

/* Fails with the right words for the byte at pos: the end of the text, or a byte out of
 * place. */
static int tg__rpc_fail_at(struct tg__rpc_scan *sc)
{
    if (sc->pos >= sc->len)
        return tg__rpc_fail(sc, "truncated JSON");
    if (sc->s[sc->pos] == '\0')
        return tg__rpc_fail(sc, "NUL byte in JSON");
    return tg__rpc_fail(sc, "unexpected byte in JSON");
}

static bool tg__rpc_top_is_obj(const struct tg__rpc_scan *sc)
{
    uint32_t d = sc->depth - 1;

    return (sc->is_obj[d / 64] >> (d % 64)) & 1;
}

static void tg__rpc_skip_ws(struct tg__rpc_scan *sc)
{
    while (sc->pos < sc->len) {
        char c = sc->s[sc->pos];

        if (c != ' ' && c != '\n' && c != '\r' && c != '\t')
            break;
        sc->pos++;
    }
}

static bool tg__rpc_is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

/* The escape whose backslash is at s[i]: its length, or 0 when it is not a JSON escape. */
static size_t tg__rpc_escape_len(const unsigned char *s, size_t i, size_t len)
{
    if (i + 1 >= len)
        return 0;
    switch (s[i + 1]) {
    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
        return 2;
    case 'u':
        if (i + 6 > len)
            return 0;
        for (size_t k = i + 2; k < i + 6; k++)
            if (!tg__rpc_is_hex(s[k]))
                return 0;
        return 6;
    default:
        return 0;
    }
}

/* The string whose opening quote is at pos. */
static int tg__rpc_scan_string(struct tg__rpc_scan *sc)
{
    const unsigned char *s = (const unsigned char *)sc->s;
    size_t i = sc->pos + 1, len = sc->len, n;

    sc->escaped = false;
    for (;;) {
        while (i < len && !tg__rpc_str_stop[s[i]])
            i++;
        if (i == len)
            return tg__rpc_fail(sc, "truncated JSON string");
        if (s[i] == '"')
            break;
        if (s[i] < 0x20)
            return tg__rpc_fail(sc, "control character in a JSON string");
        n = tg__rpc_escape_len(s, i, len);
        if (n == 0)
            return tg__rpc_fail(sc, "bad escape in a JSON string");
        sc->escaped = true;
        i += n;
    }
    sc->off = sc->pos + 1;
    sc->end = i;
    sc->pos = i + 1;
    return 0;
}

static size_t tg__rpc_digits(const char *s, size_t i, size_t len)
{
    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++;
    return i;
}

/* The number that starts at pos: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static int tg__rpc_scan_number(struct tg__rpc_scan *sc)
{
    const char *s = sc->s;
    size_t i = sc->pos, len = sc->len, d;

    if (s[i] == '-')
        i++;
    if (i < len && s[i] == '0')
        i++;
    else if ((d = tg__rpc_digits(s, i, len)) > i)
        i = d;
    else
        return tg__rpc_fail(sc, "bad number in JSON");
    if (i < len && s[i] == '.') {
        d = tg__rpc_digits(s, i + 1, len);
        if (d == i + 1)
            return tg__rpc_fail(sc, "bad number in JSON");
        i = d;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        d = tg__rpc_digits(s, i, len);
        if (d == i)
            return tg__rpc_fail(sc, "bad number in JSON");
        i = d;
    }
    sc->off = sc->pos;
    sc->end = sc->pos = i;
    return 0;
}

static int tg__rpc_scan_literal(struct tg__rpc_scan *sc)
{
    static const char *const lits[] = {"true", "false", "null"};
    const char *p = sc->s + sc->pos;
    size_t avail = sc->len - sc->pos;

    for (size_t k = 0; k < 3; k++) {
        size_t n = strlen(lits[k]);

        if (avail >= n && memcmp(p, lits[k], n) == 0) {
            sc->off = sc->pos;
            sc->end = sc->pos += n;
            return 0;
        }
    }
    return tg__rpc_fail(sc, "bad literal in JSON");
}

static int tg__rpc_open(struct tg__rpc_scan *sc, bool obj)
{
    uint32_t d = sc->depth;

    if (d >= sc->max_depth)
        return tg__rpc_fail(sc, "JSON nested too deep");
    if (obj)
        sc->is_obj[d / 64] |= (uint64_t)1 << (d % 64);
    else
        sc->is_obj[d / 64] &= ~((uint64_t)1 << (d % 64));
    sc->level = d;
    sc->depth = d + 1;
    sc->off = sc->pos;
    sc->end = ++sc->pos;
    sc->state = obj ? TG__RPC_S_KEY_OR_CLOSE : TG__RPC_S_VALUE_OR_CLOSE;
    return obj ? TG__RPC_EV_OBJ : TG__RPC_EV_ARR;
}

/* The bracket at pos must close the innermost container. */
static int tg__rpc_close(struct tg__rpc_scan *sc)
{
    bool obj;

    if (sc->pos >= sc->len)
        return tg__rpc_fail_at(sc);
    obj = tg__rpc_top_is_obj(sc);
    if (sc->s[sc->pos] != (obj ? '}' : ']'))
        return tg__rpc_fail_at(sc);
    sc->level = --sc->depth;
    sc->off = sc->pos;
    sc->end = ++sc->pos;
    sc->state = TG__RPC_S_AFTER;
    return obj ? TG__RPC_EV_OBJ_END : TG__RPC_EV_ARR_END;
}

static int tg__rpc_key(struct tg__rpc_scan *sc)
{
    if (sc->pos >= sc->len || sc->s[sc->pos] != '"')
        return tg__rpc_fail_at(sc);
    if (tg__rpc_scan_string(sc) < 0)
        return TG__RPC_EV_BAD;
    sc->level = sc->depth;
    sc->state = TG__RPC_S_COLON;
    return TG__RPC_EV_KEY;
}

static int tg__rpc_value(struct tg__rpc_scan *sc)
{
    int ev;

    if (sc->pos >= sc->len)
        return tg__rpc_fail_at(sc);
    switch (sc->s[sc->pos]) {
    case '{':
        return tg__rpc_open(sc, true);
    case '[':
        return tg__rpc_open(sc, false);
    case '"':
        ev = tg__rpc_scan_string(sc) < 0 ? TG__RPC_EV_BAD : TG__RPC_EV_STR;
        break;
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        ev = tg__rpc_scan_number(sc) < 0 ? TG__RPC_EV_BAD : TG__RPC_EV_NUM;
        break;
    case 't':
    case 'f':
    case 'n':
        ev = tg__rpc_scan_literal(sc) < 0 ? TG__RPC_EV_BAD : TG__RPC_EV_LIT;
        break;
    default:
        return tg__rpc_fail_at(sc);
    }
    if (ev != TG__RPC_EV_BAD) {
        sc->level = sc->depth;
        sc->state = TG__RPC_S_AFTER;
    }
    return ev;
}

int tg__rpc_scan_next(struct tg__rpc_scan *sc)
{
    if (sc->state == TG__RPC_S_FAILED)
        return TG__RPC_EV_BAD;
    if (sc->state == TG__RPC_S_DONE)
        return TG__RPC_EV_DONE;
    tg__rpc_skip_ws(sc);
    switch (sc->state) {
    case TG__RPC_S_AFTER:
        if (sc->depth == 0) {
            if (sc->pos < sc->len)
                return tg__rpc_fail(sc, "bytes after the JSON value");
            sc->state = TG__RPC_S_DONE;
            return TG__RPC_EV_DONE;
        }
        if (sc->pos >= sc->len || sc->s[sc->pos] != ',')
            return tg__rpc_close(sc);
        sc->pos++;
        tg__rpc_skip_ws(sc);
        if (tg__rpc_top_is_obj(sc))
            return tg__rpc_key(sc);
        break;
    case TG__RPC_S_KEY_OR_CLOSE:
        if (sc->pos < sc->len && sc->s[sc->pos] == '}')
            return tg__rpc_close(sc);
        return tg__rpc_key(sc);
    case TG__RPC_S_VALUE_OR_CLOSE:
        if (sc->pos < sc->len && sc->s[sc->pos] == ']')
            return tg__rpc_close(sc);
        break;
    case TG__RPC_S_COLON:
        if (sc->pos >= sc->len || sc->s[sc->pos] != ':')
            return tg__rpc_fail_at(sc);
        sc->pos++;
        tg__rpc_skip_ws(sc);
        break;
    default:
        break;
    }
    return tg__rpc_value(sc);
}

int tg__rpc_scan_value(struct tg__rpc_scan *sc, int ev, size_t *off, size_t *end)
{
    uint32_t level = sc->level;

    switch (ev) {
    case TG__RPC_EV_STR:
        *off = sc->off - 1;
        *end = sc->end + 1;
        return 0;
    case TG__RPC_EV_NUM:
    case TG__RPC_EV_LIT:
        *off = sc->off;
        *end = sc->end;
        return 0;
    case TG__RPC_EV_OBJ:
    case TG__RPC_EV_ARR:
        break;
    default:
        return -1;
    }
    *off = sc->off;
    for (;;) {
        ev = tg__rpc_scan_next(sc);
        if (ev == TG__RPC_EV_BAD || ev == TG__RPC_EV_DONE)
            return -1;
        if ((ev == TG__RPC_EV_OBJ_END || ev == TG__RPC_EV_ARR_END) && sc->level == level)
            break;
    }
    *end = sc->end;
    return 0;
}

static int tg__rpc_hex4(const char *s)
{
    int v = 0;

    for (int k = 0; k < 4; k++) {
        unsigned char c = (unsigned char)s[k];

        if (!tg__rpc_is_hex(c))
            return -1;
        v = v * 16 + (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return v;
}

static size_t tg__rpc_utf8_put(unsigned char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xc0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xe0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (unsigned char)(0xf0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

/* A \u escape at s[*i] (the backslash), with its low surrogate when it is a high one, as
 * UTF-8 in o. Returns the byte count, or 0 for a bad or unpaired escape. */
static size_t tg__rpc_unescape_u(const char *s, size_t len, size_t *i, unsigned char *o)
{
    int cp, lo;

    if (*i + 6 > len || (cp = tg__rpc_hex4(s + *i + 2)) < 0 || (cp >= 0xdc00 && cp <= 0xdfff))
        return 0;
    *i += 6;
    if (cp < 0xd800 || cp > 0xdbff)
        return tg__rpc_utf8_put(o, (uint32_t)cp);
    if (*i + 6 > len || s[*i] != '\\' || s[*i + 1] != 'u' ||
        (lo = tg__rpc_hex4(s + *i + 2)) < 0xdc00 || lo > 0xdfff)
        return 0;
    *i += 6;
    return tg__rpc_utf8_put(o, 0x10000 + (((uint32_t)cp - 0xd800) << 10) + ((uint32_t)lo - 0xdc00));
}

/* The next unit of the inside of a JSON string at s[*i]: a plain byte or an escape, decoded
 * into o (up to 4 bytes). Returns the byte count, or 0 for a bad escape. */
static size_t tg__rpc_unescape_next(const char *s, size_t len, size_t *i, unsigned char *o)
{
    unsigned char c = (unsigned char)s[*i];
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *p;

    if (c != '\\') {
        o[0] = c;
        (*i)++;
        return 1;
    }
    if (*i + 1 >= len)
        return 0;
    c = (unsigned char)s[*i + 1];
    if (c == 'u')
        return tg__rpc_unescape_u(s, len, i, o);
    if (c == '\0' || (p = strchr(from, c)) == NULL)
        return 0;
    o[0] = (unsigned char)to[p - from];
    *i += 2;
    return 1;
}

size_t tg__rpc_unescape(const char *s, size_t len, char *out, size_t cap, bool *whole)
{
    size_t i = 0, o = 0;

    *whole = false;
    while (i < len) {
        unsigned char u[4];
        size_t n = tg__rpc_unescape_next(s, len, &i, u);

        if (n == 0 || cap - o < n)
            return o;
        memcpy(out + o, u, n);
        o += n;
    }
    *whole = true;
    return o;
}

bool tg__rpc_str_eq(const char *s, size_t len, const char *w, size_t wlen)
{
    size_t i = 0, o = 0;

    if (memchr(s, '\\', len) == NULL)
        return len == wlen && memcmp(s, w, len) == 0;
    while (i < len) {
        unsigned char u[4];
        size_t n = tg__rpc_unescape_next(s, len, &i, u);

        if (n == 0 || wlen - o < n || memcmp(w + o, u, n) != 0)
            return false;
        o += n;
    }
    return o == wlen;
}
