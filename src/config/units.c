#include "config/units.h"

#include <stdbool.h>
#include <stdio.h>

/* Reads the leading digits of s; returns how many there were, or 0 with err set. */
static size_t parse_digits(struct tg_str s, uint64_t *out, char *err, size_t errlen)
{
    uint64_t v = 0;
    size_t i;

    for (i = 0; i < s.len && s.base[i] >= '0' && s.base[i] <= '9'; i++) {
        unsigned d = (unsigned)(s.base[i] - '0');

        if (v > (UINT64_MAX - d) / 10) {
            snprintf(err, errlen, "'%.*s' is too large", (int)s.len, s.base);
            return 0;
        }
        v = v * 10 + d;
    }
    if (i == 0)
        snprintf(err, errlen, "'%.*s' does not start with a number", (int)s.len, s.base);
    *out = v;
    return i;
}

static bool mul_ok(uint64_t a, uint64_t b, uint64_t *out)
{
    if (b != 0 && a > UINT64_MAX / b)
        return false;
    *out = a * b;
    return true;
}

int tg_units_parse_uint(struct tg_str s, uint64_t *out, char *err, size_t errlen)
{
    size_t n = parse_digits(s, out, err, errlen);

    if (n == 0)
        return -1;
    if (n != s.len) {
        snprintf(err, errlen, "'%.*s' is not a whole number", (int)s.len, s.base);
        return -1;
    }
    return 0;
}

/* Milliseconds per unit; an unknown unit gives 0. Unit names are case-sensitive because "m"
 * (minutes) and "M" could be mistaken for each other, and only lowercase is documented. */
static uint64_t duration_unit(struct tg_str u)
{
    static const struct {
        const char *name;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};

    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (tg_str_eq(u, tg_str_cstr(units[i].name)))
            return units[i].ms;
    return 0;
}

int tg_units_parse_duration(struct tg_str s, tg_msec_t *out, char *err, size_t errlen)
{
    uint64_t v, unit;
    size_t n = parse_digits(s, &v, err, errlen);

    if (n == 0)
        goto fail;
    if (n == s.len) {
        if (v == 0) {
            *out = 0;
            return 0;
        }
        snprintf(err, errlen, "'%.*s' has no unit (ms, s, m, h or d)", (int)s.len, s.base);
        return -1;
    }
    unit = duration_unit(tg_str_make(s.base + n, s.len - n));
    if (unit == 0)
        goto fail;
    if (!mul_ok(v, unit, out)) {
        snprintf(err, errlen, "'%.*s' is too long", (int)s.len, s.base);
        return -1;
    }
    return 0;
fail:
    snprintf(err, errlen, "expected a duration like 250ms, 5s, 15m, 1h or 1d, got '%.*s'",
             (int)s.len, s.base);
    return -1;
}

int tg_units_parse_size(struct tg_str s, uint64_t *out, char *err, size_t errlen)
{
    static const struct {
        const char *name;
        uint64_t mult;
    } units[] = {{"b", 1}, {"kb", 1024}, {"mb", 1024 * 1024}, {"gb", 1024 * 1024 * 1024}};
    uint64_t v;
    size_t n = parse_digits(s, &v, err, errlen);
    struct tg_str u;

    if (n == 0)
        goto fail;
    if (n == s.len) {
        *out = v;
        return 0;
    }
    u = tg_str_make(s.base + n, s.len - n);
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (!tg_str_ieq(u, tg_str_cstr(units[i].name)))
            continue;
        if (!mul_ok(v, units[i].mult, out)) {
            snprintf(err, errlen, "'%.*s' is too large", (int)s.len, s.base);
            return -1;
        }
        return 0;
    }
fail:
    snprintf(err, errlen, "expected a size like 512b, 16kb, 10mb or 1gb, got '%.*s'", (int)s.len,
             s.base);
    return -1;
}

int tg_units_parse_rate(struct tg_str s, struct tg_rate *out, char *err, size_t errlen)
{
    const char *slash = s.len ? memchr(s.base, '/', s.len) : NULL;
    struct tg_str cnt, per;
    uint64_t count, unit;
    tg_msec_t period;
    char tmp[128];

    if (slash == NULL)
        goto fail;
    cnt = tg_str_make(s.base, (size_t)(slash - s.base));
    per = tg_str_make(slash + 1, s.len - cnt.len - 1);
    if (cnt.len == 0 || tg_units_parse_uint(cnt, &count, tmp, sizeof(tmp)) != 0)
        goto fail;
    if (count == 0) {
        snprintf(err, errlen, "a rate of 0 requests allows nothing, got '%.*s'", (int)s.len,
                 s.base);
        return -1;
    }
    /* "N/m" is N per minute; "N/15m" is N per 15 minutes. */
    unit = duration_unit(per);
    if (unit != 0) {
        period = unit;
    } else if (per.len == 0 || per.base[0] < '1' || per.base[0] > '9' ||
               tg_units_parse_duration(per, &period, tmp, sizeof(tmp)) != 0) {
        goto fail;
    }
    out->count = count;
    out->period = period;
    return 0;
fail:
    snprintf(err, errlen,
             "expected a rate like 100/s, 600/m, 1000/15m, 5000/h or 1000000/d, got "
             "'%.*s'",
             (int)s.len, s.base);
    return -1;
}

const char *tg_units_format_duration(tg_msec_t ms, char *buf, size_t buflen)
{
    static const struct {
        const char *name;
        uint64_t ms;
    } units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}};

    if (ms == 0) {
        snprintf(buf, buflen, "0");
        return buf;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (ms % units[i].ms == 0) {
            snprintf(buf, buflen, "%llu%s", (unsigned long long)(ms / units[i].ms), units[i].name);
            return buf;
        }
    }
    snprintf(buf, buflen, "%llums", (unsigned long long)ms);
    return buf;
}
