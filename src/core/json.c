#include "core/json.h"

#include <stdbool.h>
#include <string.h>
#include <time.h>

/*
 * What each byte becomes: 0 = itself, 'u' = \u00XX, 'U' = start of a UTF-8 sequence to check,
 * any other value = the letter of a two-byte escape.
 */
static const unsigned char tg__json_class[256] = {
    ['\0'] = 'u',  [0x01] = 'u',  [0x02] = 'u',  [0x03] = 'u',  [0x04] = 'u',  [0x05] = 'u',
    [0x06] = 'u',  [0x07] = 'u',  [0x08] = 'u',  ['\t'] = 't',  ['\n'] = 'n',  [0x0b] = 'u',
    [0x0c] = 'u',  ['\r'] = 'r',  [0x0e] = 'u',  [0x0f] = 'u',  [0x10] = 'u',  [0x11] = 'u',
    [0x12] = 'u',  [0x13] = 'u',  [0x14] = 'u',  [0x15] = 'u',  [0x16] = 'u',  [0x17] = 'u',
    [0x18] = 'u',  [0x19] = 'u',  [0x1a] = 'u',  [0x1b] = 'u',  [0x1c] = 'u',  [0x1d] = 'u',
    [0x1e] = 'u',  [0x1f] = 'u',  ['"'] = '"',   ['\\'] = '\\',
#define TG__U4(b)  [b] = 'U', [b + 1] = 'U', [b + 2] = 'U', [b + 3] = 'U'
#define TG__U16(b) TG__U4(b), TG__U4(b + 4), TG__U4(b + 8), TG__U4(b + 12)
    TG__U16(0x80), TG__U16(0x90), TG__U16(0xa0), TG__U16(0xb0), TG__U16(0xc0), TG__U16(0xd0),
    TG__U16(0xe0), TG__U16(0xf0),
#undef TG__U16
#undef TG__U4
};

/*
 * True when one of the 8 bytes of x needs attention: below 0x20, '"', '\' or >= 0x80. A
 * subtraction borrows into the next byte only from a byte that is itself flagged, so there are
 * no false negatives; false positives only send the word to the byte loop.
 */
static inline bool tg__json_word_special(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ULL;
    uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');

    return (((x - ones * 0x20) | (q - ones) | (b - ones) | x) & (ones * 0x80)) != 0;
}

/* Length of the well-formed UTF-8 sequence at s (Unicode table 3-7), or 0 if there is none. */
static size_t tg__utf8_len(const unsigned char *s, size_t avail)
{
    unsigned c = s[0], lo = 0x80, hi = 0xbf;
    size_t n, i;

    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0; /* overlong */
        else if (c == 0xed)
            hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90; /* overlong */
        else if (c == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (avail < n || s[1] < lo || s[1] > hi)
        return 0;
    for (i = 2; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

size_t tg_json_escape(char *out, size_t cap, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    char *o = out, *oend = out + cap;

    while (p < end) {
        unsigned c;
        size_t n;

        /* Most of what we escape is plain ASCII: move it a word at a time. */
        while (end - p >= 8 && oend - o >= 8) {
            uint64_t x;

            memcpy(&x, p, 8);
            if (tg__json_word_special(x))
                break;
            memcpy(o, &x, 8);
            o += 8;
            p += 8;
        }
        if (p == end)
            break;
        c = *p;
        switch (tg__json_class[c]) {
        case 0:
            if (o == oend)
                goto out;
            *o++ = (char)c;
            p++;
            break;
        case 'u':
            if (oend - o < 6)
                goto out;
            memcpy(o, "\\u00", 4);
            o[4] = hex[c >> 4];
            o[5] = hex[c & 15];
            o += 6;
            p++;
            break;
        case 'U':
            n = tg__utf8_len(p, (size_t)(end - p));
            if (n == 0) {
                if (oend - o < 6)
                    goto out;
                memcpy(o, "\\ufffd", 6);
                o += 6;
                p++;
            } else {
                if ((size_t)(oend - o) < n)
                    goto out;
                memcpy(o, p, n);
                o += n;
                p += n;
            }
            break;
        default:
            if (oend - o < 2)
                goto out;
            o[0] = '\\';
            o[1] = (char)tg__json_class[c];
            o += 2;
            p++;
            break;
        }
    }
out:
    return (size_t)(o - out);
}

size_t tg_json_time(char *out, int64_t sec)
{
    /* 9999-12-31T23:59:59Z: keeps the year at four digits. */
    const int64_t max = 253402300799LL;
    time_t t = (time_t)(sec < 0 ? 0 : sec > max ? max : sec);
    struct tm tm;
    int v[6], i;
    char *o = out;

    gmtime_r(&t, &tm);
    v[0] = tm.tm_year + 1900;
    v[1] = tm.tm_mon + 1;
    v[2] = tm.tm_mday;
    v[3] = tm.tm_hour;
    v[4] = tm.tm_min;
    v[5] = tm.tm_sec;
    *o++ = (char)('0' + v[0] / 1000);
    *o++ = (char)('0' + v[0] / 100 % 10);
    *o++ = (char)('0' + v[0] / 10 % 10);
    *o++ = (char)('0' + v[0] % 10);
    for (i = 1; i < 6; i++) {
        *o++ = "--T::"[i - 1];
        *o++ = (char)('0' + v[i] / 10);
        *o++ = (char)('0' + v[i] % 10);
    }
    return TG_JSON_TIME_LEN;
}
