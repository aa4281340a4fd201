/*
 * The HTTP caching rules of the response cache (issue 7): which requests may be answered from
 * the cache, under which key a response is stored, whether a response may be stored and for how
 * long (RFC 9111, stale-while-revalidate and stale-if-error from RFC 5861), HTTP dates, and
 * conditional requests answered from a stored entry. Pure functions: no I/O, no allocation, no
 * clock (the caller passes the wall clock in milliseconds; only the century of a two-digit year
 * in an obsolete date is read from the system clock), safe on any thread.
 *
 * tollgate is a shared cache run on behalf of the origin, and it never revalidates a stored
 * response with the upstream (no conditional requests go upstream): a response that may only be
 * reused after revalidation (no-cache) is therefore never stored, and a stale entry is served
 * only within its stale-while-revalidate window (while a full refresh runs) or its
 * stale-if-error window (when the node fails).
 */
#ifndef TG_CACHE_POLICY_H
#define TG_CACHE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cache/cache.h"
#include "core/core.h"
#include "core/str.h"
#include "http/h1.h"

struct tg_cache_route_conf;

/* -- Cache-Control --------------------------------------------------------------------------- */

#define TG_CC_NO_STORE         0x001
#define TG_CC_NO_CACHE         0x002 /* also its qualified form no-cache="field" */
#define TG_CC_PRIVATE          0x004 /* also its qualified form private="field" */
#define TG_CC_PUBLIC           0x008
#define TG_CC_MUST_REVALIDATE  0x010
#define TG_CC_PROXY_REVALIDATE 0x020
#define TG_CC_MUST_UNDERSTAND  0x040

#define TG_CC_ABSENT  (-1) /* a delta-seconds directive that is not there */
#define TG_CC_INVALID (-2) /* ... that is there without a valid value, or twice with two values */

/* Delta-seconds larger than this are this (RFC 9111 §1.2.2). */
#define TG_CC_DELTA_MAX 2147483648LL

/* The directives of every Cache-Control field line of a message, combined. */
struct tg_cache_control {
    uint32_t flags; /* TG_CC_* */
    /* seconds, TG_CC_ABSENT or TG_CC_INVALID */
    int64_t max_age, s_maxage, stale_while_revalidate, stale_if_error;
};

void tg_cache_control_init(struct tg_cache_control *cc);

/*
 * Adds the directives of one Cache-Control field value p[0..n) to cc (call once per field
 * line; the lists of all lines form one list). Directive names are case-insensitive; arguments
 * may be tokens or quoted strings (max-age="60" is 60). A delta-seconds directive repeated with
 * another value, or with a value that is not 1*DIGIT, is TG_CC_INVALID: the most restrictive
 * reading (RFC 9111 §4.2.1 and §5.2). Unknown directives and malformed list members are
 * skipped up to the next comma outside a quoted string. Never fails.
 */
void tg_cache_control_parse(struct tg_cache_control *cc, const char *p, size_t n);

/* -- requests -------------------------------------------------------------------------------- */

enum tg_cache_req {
    TG_CACHE_LOOKUP,  /* may be answered from the cache; a miss fills it */
    TG_CACHE_REFRESH, /* must go upstream, but the response may replace the stored one */
    TG_CACHE_BYPASS,  /* must go upstream, and the response must not be stored */
};

/*
 * What the cache may do for req on a route with cache section rc. BYPASS: a method other than
 * GET and HEAD, an upgrade (WebSocket) request, Cache-Control: no-store, or an Authorization or
 * Cookie header unless rc->with_credentials. REFRESH: Cache-Control no-cache or max-age=0, or
 * Pragma: no-cache when there is no Cache-Control. LOOKUP otherwise. Other request directives
 * (max-age > 0, max-stale, min-fresh, only-if-cached) are not honoured: the cache answers for the
 * origin. When why is not NULL it receives a short static reason for BYPASS and REFRESH (for
 * logs and X-Cache details), NULL for LOOKUP.
 *
 * A response to HEAD has no body and must never be stored: on a HEAD miss the caller either
 * fetches with GET or does not store.
 */
enum tg_cache_req tg_cache_request(const struct tg_h1_request *req,
                                   const struct tg_cache_route_conf *rc, const char **why);

/* -- keys ------------------------------------------------------------------------------------ */

/* Query parameters kept in a key (KEEP and DROP modes); a query with more is not cached. */
#define TG_CACHE_KEY_MAX_PARAMS 128
/* Header names in a Vary value; a response that varies on more is not stored. */
#define TG_CACHE_VARY_MAX 16

/*
 * Writes the primary key of a request to out[0..cap): "METHOD host path[?query]", the three
 * parts separated by one space, which none of them can contain (a method is a token, the host
 * a validated authority, the path normalised by tg_http_path_normalize). method is an enum
 * tg_http_method; HEAD is keyed as GET, so a stored GET response answers HEAD too. host is
 * lowercased. path is the path with its query; the query goes in as rc->query says: ALL byte for
 * byte, NONE not at all, KEEP only the parameters whose name matches one of rc->query_params,
 * DROP all but those (patterns with '*' wildcards, names compared as written, undecoded). In
 * KEEP and DROP modes the kept parameters are sorted by name, stably, so ?a=1&b=2 and ?b=2&a=1
 * share a key while ?a=1&a=2 and ?a=2&a=1 do not; empty parameters (&&) are dropped, and no '?'
 * is written when nothing is kept. Returns the length, or -1 when the key does not fit in cap or
 * the query has more than TG_CACHE_KEY_MAX_PARAMS kept parameters (the request is then not
 * cached).
 */
ssize_t tg_cache_key(char *out, size_t cap, int method, struct tg_str host, struct tg_str path,
                     const struct tg_cache_route_conf *rc);

/*
 * Writes the secondary key of a response that varies (RFC 9111 §4.1) to out[0..cap): the primary
 * key, then for each header name of the Vary value vary, lowercased, sorted and without
 * duplicates, a line feed, the name, and when req has that header ':' and its value. So an absent
 * header differs from an empty one; several field lines of the header are joined with ", ";
 * values are compared after trimming whitespace at both ends. A line feed can occur neither in
 * a key nor in a header value. An empty vary gives the primary key. Returns the length, or -1
 * when it does not fit, when vary is "*" or contains it, is not a list of header names, or names
 * more than TG_CACHE_VARY_MAX headers.
 */
ssize_t tg_cache_vary_key(char *out, size_t cap, struct tg_str primary, struct tg_str vary,
                          const struct tg_h1_request *req);

/* -- responses ------------------------------------------------------------------------------- */

/* Whether and until when a response may be used, from tg_cache_response(). Times are wall clock
 * milliseconds; the strings point into the response head. */
struct tg_cache_fresh {
    int64_t fresh_until;         /* fresh before this */
    int64_t swr_until;           /* a stale copy may be served while one refresh runs before this */
    int64_t sie_until;           /* a stale copy may be served when the node fails before this */
    int64_t age_s;               /* the response's age when received (its Age header), seconds */
    struct tg_str vary;          /* the Vary value (empty: the response does not vary) */
    struct tg_str etag;          /* the ETag value, empty when none */
    struct tg_str last_modified; /* the Last-Modified value, empty when none */
    const char *why;             /* when not storable: a short static reason */
};

/*
 * Decides whether res, received at now_ms on a route with cache section rc, may be stored, and
 * fills *out. Returns 0 (TG_OK) when it may, with every field set; TG_DECLINED when it may not,
 * with out->why set and the other fields zero.
 *
 * Not storable: a status that is not final, 206 or 304; Cache-Control no-store, private or
 * no-cache (qualified forms included: we do not strip fields nor revalidate); a Vary of "*",
 * one that is not a list of header names, or one given on several field lines; Set-Cookie (never
 * in a shared cache, whatever rc->with_credentials says: one client's cookie would be served to
 * all); a freshness lifetime that is zero, invalid, or used up by the Age header.
 *
 * The freshness lifetime is s-maxage, else max-age, else Expires - Date (Expires - now without a
 * valid Date; an invalid or repeated Expires has expired), else, for a status RFC 9111 §4.2.2
 * lets be cached heuristically (200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501) or a
 * public response, rc->ttl (0: not storable). The age when received is the Age header alone:
 * Date is not compared with our clock, which would turn any clock skew into age.
 * must-understand makes no-store be ignored for a status whose caching rules we know, and makes
 * any other status not storable (RFC 9111 §5.2.2.3).
 *
 * The stale windows come from the response's stale-while-revalidate and stale-if-error
 * directives (invalid: no window), else from rc. must-revalidate and proxy-revalidate allow no
 * stale serving at all. s-maxage, which implies proxy-revalidate for a shared cache, keeps rc's
 * windows from applying, but the response's own directives still do (the common
 * "s-maxage=1, stale-while-revalidate=59").
 *
 * A response to HEAD must not be stored (see tg_cache_request()).
 */
int tg_cache_response(const struct tg_h1_response *res, int64_t now_ms,
                      const struct tg_cache_route_conf *rc, struct tg_cache_fresh *out);

/* -- stored entries -------------------------------------------------------------------------- */

enum tg_cache_state {
    TG_CACHE_FRESH,    /* serve it */
    TG_CACHE_STALE,    /* serve it, and refresh it in the background (stale-while-revalidate) */
    TG_CACHE_ON_ERROR, /* go upstream; serve it only if the node fails (stale-if-error) */
    TG_CACHE_EXPIRED,  /* go upstream; never serve it */
};

/* What a stored entry may be used for at wall clock now_ms. When it is TG_CACHE_STALE it may
 * also be served on error when now_ms < e->sie_ms. */
enum tg_cache_state tg_cache_entry_state(const struct tg_cache_entry *e, int64_t now_ms);

/* The Age to send with a stored entry at wall clock now_ms, in seconds: its age when received
 * plus the whole seconds it has been stored (RFC 9111 §4.2.3), at most TG_CC_DELTA_MAX. */
int64_t tg_cache_age(const struct tg_cache_entry *e, int64_t now_ms);

/*
 * Whether a GET or HEAD request may be answered with 304 Not Modified from an entry with the
 * given ETag and Last-Modified values (empty: none). If-None-Match, when present, decides alone
 * (RFC 9110 §13.2.2): true when it is "*" or lists a tag that matches etag by weak comparison
 * (W/ ignored on both sides). Otherwise If-Modified-Since: true when it is a single valid date
 * and last_modified is a valid date no later than it. False otherwise, and for other methods.
 */
bool tg_cache_not_modified(const struct tg_h1_request *req, struct tg_str etag,
                           struct tg_str last_modified);

/* -- HTTP dates ------------------------------------------------------------------------------ */

#define TG_HTTP_DATE_LEN 29 /* "Sun, 06 Nov 1994 08:49:37 GMT" */

/*
 * Parses an HTTP-date p[0..n) (RFC 9110 §5.6.7): IMF-fixdate, or one of the obsolete forms
 * rfc850-date ("Sunday, 06-Nov-94 08:49:37 GMT") and asctime-date ("Sun Nov  6 08:49:37 1994").
 * Names are accepted in any case and the weekday is not checked against the date (recipients
 * are to be robust); fields must otherwise be exact and in range. A two-digit year more than 50
 * years ahead of the current year is in the past century. Sets *unix_s and returns 0, or returns
 * -1.
 */
int tg_http_date_parse(const char *p, size_t n, int64_t *unix_s);

/* Writes unix_s as IMF-fixdate and a NUL to out; returns TG_HTTP_DATE_LEN. Times before 1970
 * or after 9999 are clamped to those years. */
size_t tg_http_date_format(int64_t unix_s, char out[TG_HTTP_DATE_LEN + 1]);

#endif
