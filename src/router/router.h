/*
 * Request routing (DESIGN §4): host patterns (exact, "*.example.com", "{name}.example.com"),
 * path patterns (exact, prefix when ending in "/", "{name}" for one segment, "{name*}" for the
 * rest), method sets; the most specific match wins, ties go to the route listed first.
 * Rewrite templates expand captures plus {path} (original path with query) and {host}.
 *
 * Path patterns start with '/' and compare byte for byte (case-sensitive) with the normalised
 * request path; the query ("?..." onwards) is never matched.
 *   - "/a/b"        the whole path must be "/a/b".
 *   - "/api/"       prefix: "/api/" followed by anything, and also exactly "/api".
 *   - "/u/{id}"     "{id}" captures one non-empty segment (no '/'). A capture may share its
 *                   segment with literal text ("/f/{name}.json", the capture takes what the
 *                   literal leaves), but a segment holds at most one capture.
 *   - "/s/{rest*}"  "{rest*}" captures the rest of the path, slashes included, possibly empty;
 *                   it must end the pattern. Like a prefix, "/s/{rest*}" also matches "/s".
 * Literal bytes are RFC 3986 pchar ('%' only as "%XX"); '*', space, '?', '#', controls and
 * non-ASCII are rejected, and so are "//", "." and ".." segments, which a normalised path
 * never contains. Capture names are [A-Za-z_][A-Za-z0-9_]*, unique within a pattern, and not
 * "path" or "host" (reserved for templates).
 *
 * Host patterns compare ASCII case-insensitively with the Host value after dropping its
 * ":port" and one trailing dot (a trailing dot in the pattern is dropped too):
 *   - "api.example.com"        exactly that host; "[2001:db8::1]" for an IPv6 literal.
 *   - "*.example.com"          one or more labels before ".example.com" (not "example.com").
 *   - "{site}.portal.example"  a capture is one non-empty label, or the part of a label its
 *                              literal text leaves ("api-{env}.example.com"); one per label.
 * Labels are letters, digits, '-' and '_'; '*' only as the whole first label; no port.
 * A NULL pattern (no match.host or no match.path) matches anything.
 *
 * Specificity (documented in detail in router.c), higher first: host class (exact > captures >
 * wildcard > any), host literal length, path class (exact > "{name}" captures > prefix or
 * "{name*}" > any), path literal length, then a method list (shorter first) > any method.
 * Equal specificity: the route listed first wins.
 *
 * A router is compiled once per configuration snapshot and is immutable afterwards, so every
 * worker matches against it without locks. Matching never allocates; with exact-host routes
 * indexed by host, its cost is a hash lookup plus a linear pass over the other routes.
 */
#ifndef TG_ROUTER_H
#define TG_ROUTER_H

#include <stddef.h>
#include <sys/types.h>

#include "config/config.h"
#include "core/str.h"

#define TG_ROUTER_MAX_CAPTURES 8

struct tg_router;

struct tg_route_captures {
    struct tg_str names[TG_ROUTER_MAX_CAPTURES];
    struct tg_str values[TG_ROUTER_MAX_CAPTURES]; /* point into the matched host or path */
    size_t num;
};

/*
 * Checks one pattern for syntax (is_host selects host or path rules), including at most
 * TG_ROUTER_MAX_CAPTURES captures. Returns 0, or -1 with a message in err (NUL-terminated, at
 * most errlen bytes); *col_off is set to the 0-based offset of the offending byte in the
 * pattern. Used by the configuration loader so errors carry file:line:col. A NULL pattern is an
 * error here: the loader leaves an absent key NULL instead of checking it.
 */
int tg_router_pattern_check(const char *pattern, int is_host, char *err, size_t errlen,
                            size_t *col_off);

/*
 * Checks a rewrite template against the captures its route's patterns define (either pattern
 * may be NULL). A template is literal text and "{name}" references: a capture of either
 * pattern (a rest capture too: "{rest}", never "{rest*}"), "{path}" or "{host}". Errors: empty
 * template, unbalanced or empty braces, invalid or unknown names, "{name*}", a name both
 * patterns capture (ambiguous), a capture beyond the first TG_ROUTER_MAX_CAPTURES of host and
 * path together (tg_router_match() keeps only those), space or control bytes, an invalid
 * pattern. Returns 0, or -1 with a message naming the offset in err.
 */
int tg_router_template_check(const char *tmpl, const char *host_pattern, const char *path_pattern,
                             char *err, size_t errlen);

/*
 * Compiles the routes of a validated configuration; cf may be freed only after the router,
 * since matches return its route structs. Never fails on a validated config: returns NULL
 * only when a pattern does not pass tg_router_pattern_check(). Out of memory aborts.
 */
struct tg_router *tg_router_new(const struct tg_config *cf);
/* The host as routed (and as cached): without ":port" and without a trailing dot. */
struct tg_str tg_router_host(struct tg_str h);
void tg_router_free(struct tg_router *r);

/*
 * Finds the route for a request. host is the Host value (a port suffix is ignored, matching is
 * case-insensitive), path the normalised path with query (the query is not matched), method the
 * enum tg_http_method of the request (routes with a method list match only the methods listed;
 * HEAD is not implied by GET). Returns the route or NULL (404); caps (may be NULL) receives the
 * captures of the route that matched, host captures first, in pattern order, with values
 * pointing into host and path; num is 0 when nothing matched. When host and path patterns
 * define more than TG_ROUTER_MAX_CAPTURES captures together, the extra ones still have to match
 * but are not recorded. Thread-safe: r is only read.
 */
const struct tg_route_conf *tg_router_match(const struct tg_router *r, struct tg_str host,
                                            struct tg_str path, int method,
                                            struct tg_route_captures *caps);

/*
 * Expands a rewrite template into out (at most outlen bytes, not NUL-terminated): literal text
 * is copied, "{name}" becomes the first capture of that name in caps (may be NULL), "{path}" the
 * request path with its query exactly as passed, "{host}" the host without its ":port". host
 * and path are the values that were passed to tg_router_match(). Returns the length written, or
 * -1 when it does not fit or the template references a name caps lacks (cannot happen after
 * tg_router_template_check() and a match of the same route).
 *
 * The query string: expansion appends nothing. A path template that uses "{path}" carries the
 * query already; when it does not, the caller (the proxy) appends the request's original query
 * ("?" and what follows) to the expansion itself, with '&' instead of '?' when the expansion
 * already contains a '?'. So "/v1/sites/{site}{path}" forwards "/a?x=1" as
 * "/v1/sites/s/a?x=1", and "/" for "/v1/KEY?x=1" forwards "/?x=1".
 */
ssize_t tg_router_expand(const char *tmpl, const struct tg_route_captures *caps, struct tg_str host,
                         struct tg_str path, char *out, size_t outlen);

#endif
