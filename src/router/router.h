/*
 * Request routing (DESIGN §4): host patterns (exact, "*.example.com", "{name}.example.com"),
 * path patterns (exact, prefix when ending in "/", "{name}" for one segment, "{name*}" for the
 * rest), method sets; the most specific match wins, ties go to the route listed first.
 * Rewrite templates expand captures plus {path} (original path with query) and {host}.
 *
 * A router is compiled once per configuration snapshot and is immutable afterwards, so every
 * worker matches against it without locks. Matching never allocates.
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
 * Checks one pattern for syntax (is_host selects host or path rules). Returns 0, or -1 with a
 * message in err; *col_off is set to the 0-based offset of the offending byte in the pattern.
 * Used by the configuration loader so errors carry file:line:col.
 */
int tg_router_pattern_check(const char *pattern, int is_host, char *err, size_t errlen,
                            size_t *col_off);

/*
 * Checks a rewrite template against the captures its route's patterns define. Returns 0, or -1
 * with a message in err.
 */
int tg_router_template_check(const char *tmpl, const char *host_pattern, const char *path_pattern,
                             char *err, size_t errlen);

/* Compiles the routes of a validated configuration. Never fails on a validated config. */
struct tg_router *tg_router_new(const struct tg_config *cf);
void tg_router_free(struct tg_router *r);

/*
 * Finds the route for a request. host is the Host value (a port suffix is ignored, matching is
 * case-insensitive), path the normalised path with query (the query is not matched), method the
 * enum tg_http_method of the request. Returns the route or NULL (404); caps receives the
 * captures of the route that matched.
 */
const struct tg_route_conf *tg_router_match(const struct tg_router *r, struct tg_str host,
                                            struct tg_str path, int method,
                                            struct tg_route_captures *caps);

/*
 * Expands a rewrite template into out (at most outlen bytes). Returns the length written, or -1
 * when it does not fit.
 */
ssize_t tg_router_expand(const char *tmpl, const struct tg_route_captures *caps,
                         struct tg_str host, struct tg_str path, char *out, size_t outlen);

#endif
