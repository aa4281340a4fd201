/*
 * Chunked transfer coding (RFC 9112 §7.1, DESIGN §9.4). Unlike the head parsers this one keeps
 * its state across calls: bodies stream through in pieces of any size, down to single bytes,
 * and are never buffered whole.
 */
#include <string.h>

#include "http/h1_internal.h"

enum tg__chunked_state {
    TG__CH_SIZE = 0,     /* hex digits of a chunk size */
    TG__CH_SIZE_WS,      /* BWS after the size, before ';' */
    TG__CH_EXT,          /* chunk extensions, up to the CR */
    TG__CH_SIZE_LF,      /* CR of the size line seen */
    TG__CH_DATA,         /* d->remaining bytes of chunk data */
    TG__CH_DATA_CR,      /* CRLF after the data */
    TG__CH_DATA_LF,      /* CR after the data seen */
    TG__CH_TRAILER,      /* start of a trailer field or of the final CRLF */
    TG__CH_TRAILER_NAME, /* field name of a trailer */
    TG__CH_TRAILER_VAL,  /* field value of a trailer, up to the CR */
    TG__CH_TRAILER_LF,   /* CR of a trailer field seen */
    TG__CH_FINAL_LF,     /* CR of the final empty line seen */
    TG__CH_DONE,
    TG__CH_INVALID,
};

/* Sizes stay below 2^63 so that they fit off_t and ssize_t everywhere downstream. */
#define TG__CH_MAX_DIGITS 16

void tg_h1_chunked_init(struct tg_h1_chunked *d, uint32_t max_line, uint32_t max_trailers)
{
    memset(d, 0, sizeof(*d));
    d->max_line = max_line;
    d->max_trailers = max_trailers;
    d->state = TG__CH_SIZE;
}

static int tg__ch_hex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* One byte of a size line; returns false when the body is invalid. */
static bool tg__ch_size_byte(struct tg_h1_chunked *d, unsigned char c)
{
    int v;

    if (c == '\r') {
        /* Whitespace is only allowed before an extension's ';' (BWS), never before the CR. */
        if ((d->state == TG__CH_SIZE && d->line_len == 0) || d->state == TG__CH_SIZE_WS)
            return false;
        d->state = TG__CH_SIZE_LF;
        return true;
    }
    if (d->line_len >= d->max_line)
        return false;
    d->line_len++;
    switch (d->state) {
    case TG__CH_SIZE:
        v = tg__ch_hex(c);
        if (v >= 0) {
            /* line_len counts the digits so far, this one included. */
            if (d->line_len > TG__CH_MAX_DIGITS || d->remaining > (UINT64_C(1) << 59) - 1)
                return false;
            d->remaining = d->remaining << 4 | (uint64_t)v;
            return true;
        }
        if (d->line_len == 1)
            return false;
        /* The first byte after the digits is handled like the ones after it. */
        __attribute__((fallthrough));
    case TG__CH_SIZE_WS:
        if (c == ' ' || c == '\t') {
            d->state = TG__CH_SIZE_WS;
            return true;
        }
        if (c != ';')
            return false;
        d->state = TG__CH_EXT;
        return true;
    default: /* TG__CH_EXT: anything but CTLs, bounded by max_line */
        return c == '\t' || !tg__h1_is(c, TG__H1_C_CTL);
    }
}

/* One byte of the trailer section; returns false when the body is invalid. */
static bool tg__ch_trailer_byte(struct tg_h1_chunked *d, unsigned char c)
{
    if (d->state == TG__CH_TRAILER && c == '\r') {
        d->state = TG__CH_FINAL_LF;
        return true;
    }
    if (d->trailer_bytes >= d->max_trailers)
        return false;
    d->trailer_bytes++;
    switch (d->state) {
    case TG__CH_TRAILER:
        /* Trailers are header fields (§9.7): a leading space would be obs-fold. */
        if (!tg__h1_is(c, TG__H1_C_TCHAR))
            return false;
        d->state = TG__CH_TRAILER_NAME;
        return true;
    case TG__CH_TRAILER_NAME:
        if (c == ':')
            d->state = TG__CH_TRAILER_VAL;
        return c == ':' || tg__h1_is(c, TG__H1_C_TCHAR);
    case TG__CH_TRAILER_VAL:
        if (c == '\r')
            d->state = TG__CH_TRAILER_LF;
        return c == '\r' || c == '\t' || !tg__h1_is(c, TG__H1_C_CTL);
    default: /* TG__CH_TRAILER_LF */
        d->state = TG__CH_TRAILER;
        return c == '\n';
    }
}

/*
 * The one loop behind scan and decode: out is NULL for scan, else the position chunk data is
 * moved to (never past the byte being read, so moving in place is safe).
 */
static ssize_t tg__ch_run(struct tg_h1_chunked *d, const char *buf, size_t len, char *out,
                          size_t *data_len)
{
    size_t p = 0, o = 0;
    ssize_t ret = TG_H1_INCOMPLETE;

    if (d->state == TG__CH_DONE) {
        ret = 0;
        goto out;
    }
    while (p < len) {
        unsigned char c = (unsigned char)buf[p];
        bool ok = true;

        switch (d->state) {
        case TG__CH_DATA: {
            size_t n = len - p < d->remaining ? len - p : (size_t)d->remaining;

            if (out != NULL)
                memmove(out + o, buf + p, n);
            o += n;
            p += n;
            d->remaining -= n;
            d->data_bytes += n;
            if (d->remaining == 0)
                d->state = TG__CH_DATA_CR;
            continue;
        }
        case TG__CH_SIZE:
        case TG__CH_SIZE_WS:
        case TG__CH_EXT:
            ok = tg__ch_size_byte(d, c);
            break;
        case TG__CH_SIZE_LF:
            ok = c == '\n';
            d->line_len = 0;
            d->state = d->remaining > 0 ? TG__CH_DATA : TG__CH_TRAILER;
            break;
        case TG__CH_DATA_CR:
            ok = c == '\r';
            d->state = TG__CH_DATA_LF;
            break;
        case TG__CH_DATA_LF:
            ok = c == '\n';
            d->state = TG__CH_SIZE;
            break;
        case TG__CH_FINAL_LF:
            if (c != '\n')
                goto invalid;
            d->state = TG__CH_DONE;
            ret = (ssize_t)(p + 1);
            goto out;
        case TG__CH_INVALID:
            goto invalid;
        default:
            ok = tg__ch_trailer_byte(d, c);
            break;
        }
        if (!ok)
            goto invalid;
        p++;
    }
    goto out;

invalid:
    d->state = TG__CH_INVALID;
    ret = TG_H1_INVALID;
out:
    if (data_len != NULL)
        *data_len = o;
    return ret;
}

ssize_t tg_h1_chunked_scan(struct tg_h1_chunked *d, const char *buf, size_t len)
{
    return tg__ch_run(d, buf, len, NULL, NULL);
}

ssize_t tg_h1_chunked_decode(struct tg_h1_chunked *d, char *buf, size_t len, size_t *data_len)
{
    return tg__ch_run(d, buf, len, buf, data_len);
}
