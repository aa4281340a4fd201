/*
 * What the files of the configuration loader share: the loader state, error reporting, and the
 * key tables (nginx's ngx_command_t idea) that describe every key of a section: its name, type,
 * where it is stored, its default and its bounds. A table drives defaults, parsing, unknown-key
 * errors and the list of valid keys printed with them, so the four cannot drift apart.
 */
#ifndef TG_CONFIG_INTERNAL_H
#define TG_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/arena.h"
#include "config/config.h"
#include "config/yaml.h"

/* Errors beyond this many are counted but not kept: a binary file fed by mistake would
 * otherwise produce one error per line. */
#define TG_CONF_MAX_ERRORS 500

/* hedge.max: extra attempts a request may have in flight (proxy.h TG_MAX_HEDGES) */
#define TG_CONF_MAX_HEDGES 3

struct tg_conf_err {
    int line, col;
    size_t seq; /* discovery order, to keep the sort stable */
    char *msg;
};

struct tg_conf_loader {
    struct tg_config *cf;
    struct tg_conf_arena *a; /* the snapshot's arena: everything kept goes here */
    const char *file;        /* in a */
    const struct tg_ynode *root;
    struct tg_conf_err *errs;
    size_t num_errs, cap_errs, dropped_errs;
    /* Per route, what the cross-checks after parsing need: the nodes their errors point at,
     * and whether the match section was valid. */
    struct tg_conf_route_aux {
        const struct tg_ynode *name, *service;
        bool match_bad;
    } * route_aux;
};

/* Records an error at a node ("FILE:LINE:COL: message" is assembled when the load ends). */
void tg__conf_error(struct tg_conf_loader *ld, const struct tg_ynode *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void tg__conf_error_at(struct tg_conf_loader *ld, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Describes a node for "expected X, got Y" messages: 'text', an empty value, a list, ... */
const char *tg__conf_describe(struct tg_conf_loader *ld, const struct tg_ynode *n);

/* Copies a scalar's text into the snapshot arena. */
const char *tg__conf_strdup(struct tg_conf_loader *ld, const struct tg_ynode *n);

enum tg_conf_type {
    TG_CT_BOOL,     /* bool */
    TG_CT_UINT32,   /* uint32_t, a plain whole number */
    TG_CT_SIZE,     /* uint64_t, a size (units.h) */
    TG_CT_DURATION, /* tg_msec_t, a duration (units.h) */
    TG_CT_FRACTION, /* double between 0 and 1 */
    TG_CT_STRING,   /* const char *, not empty */
    TG_CT_ENUM,     /* uint8_t, the index of the value in names */
    TG_CT_ADDR,     /* const char * (text) at offset, struct tg_addr at offset2 */
    TG_CT_SECTION,  /* a nested mapping; its keys are stored relative to base + offset */
    TG_CT_CUSTOM,   /* parse() does everything */
    TG_CT_LATER,    /* a documented key that a later version implements: always an error */
};

#define TG_CK_REQUIRED 0x1

struct tg_conf_section;

typedef void (*tg_conf_parse_cb)(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base);

struct tg_conf_key {
    const char *name;
    uint8_t type;  /* enum tg_conf_type */
    uint8_t flags; /* TG_CK_* */
    size_t offset;
    size_t offset2;
    const char *def; /* default, spelled as in the file; NULL leaves the field zeroed */
    uint64_t min, max;
    const char *why_min;      /* why values below min make no sense, shown with the error */
    const char *const *names; /* TG_CT_ENUM: NULL-terminated */
    const struct tg_conf_section *sub; /* TG_CT_SECTION */
    tg_conf_parse_cb parse;            /* TG_CT_CUSTOM */
    const char *later;                 /* TG_CT_LATER: what the key will do */
};

struct tg_conf_section {
    const char *name; /* as it reads in messages: "limits", "service", "route match" */
    const struct tg_conf_key *keys;
    size_t num_keys;
};

#define TG_CONF_SECTION(name_, keys_)                                                              \
    {                                                                                              \
        (name_), (keys_), sizeof(keys_) / sizeof((keys_)[0])                                       \
    }

/* Stores the defaults of every key of s (and of nested sections) relative to base. */
void tg__conf_defaults(struct tg_conf_loader *ld, const struct tg_conf_section *s, void *base);

/*
 * Parses the mapping map against s into base: unknown keys and wrong values are reported, the
 * others stored. A null node counts as an empty mapping. Defaults are not applied here.
 * Returns false when map is not a mapping at all.
 */
bool tg__conf_section(struct tg_conf_loader *ld, const struct tg_conf_section *s,
                      const struct tg_ynode *map, void *base);

/*
 * Returns the items of a list node (NULL when empty or null). Reports an error and returns NULL
 * when v is something else; what describes the expected items for that message.
 */
const struct tg_ynode *tg__conf_list(struct tg_conf_loader *ld, const struct tg_ynode *v,
                                     const char *what);

/* Fills a string list from a list of scalars that check() accepts (NULL: any). */
void tg__conf_str_list(struct tg_conf_loader *ld, const struct tg_ynode *v, struct tg_str_list *out,
                       const char *what, int (*check)(const char *, char *, size_t));

/* Checks that a node is a non-empty scalar; reports "NAME: expected WHAT, got ..." otherwise. */
bool tg__conf_scalar(struct tg_conf_loader *ld, const struct tg_ynode *v, const char *what);

/* Reports an error at byte off of a scalar's value when columns can be computed, else at it. */
void tg__conf_error_in(struct tg_conf_loader *ld, const struct tg_ynode *v, size_t off,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Sections and cross-checks of the configuration, one file per part. */
extern const struct tg_conf_section tg__conf_top;
void tg__conf_services(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base);
void tg__conf_routes(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base);
void tg__conf_check_top(struct tg_conf_loader *ld);
void tg__conf_check_routes(struct tg_conf_loader *ld);
extern const struct tg_conf_section tg__conf_health_section; /* resilience.c */
extern const struct tg_conf_section tg__conf_retry_section;
extern const struct tg_conf_section tg__conf_hash_section;
extern const struct tg_conf_section tg__conf_concurrency_section;
extern const struct tg_conf_section tg__conf_hedge_section;
void tg__conf_resilience_defaults(struct tg_service_conf *svc);
/* identity.c: plans, consumers, keys, ratelimit; route auth and limits */
void tg__conf_plans(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base);
void tg__conf_consumers(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base);
void tg__conf_anonymous(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base);
extern const struct tg_conf_section tg__conf_keys_section;
extern const struct tg_conf_section tg__conf_ratelimit_section;
void tg__conf_route_auth(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base);
void tg__conf_route_limits(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base);
void tg__conf_check_identity(struct tg_conf_loader *ld);
/* jsonrpc.c: service and route jsonrpc sections, plan methods */
void tg__conf_service_jsonrpc(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base);
void tg__conf_service_jsonrpc_defaults(struct tg_conf_loader *ld, struct tg_service_conf *svc);
void tg__conf_route_jsonrpc(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base);
void tg__conf_plan_methods(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base);
void tg__conf_check_jsonrpc(struct tg_conf_loader *ld);
/* cache.c: the store's bounds and a route's cache section */
extern const struct tg_conf_section tg__conf_cache_section;
void tg__conf_route_cache(struct tg_conf_loader *ld, const struct tg_ynode *v, void *base);
void tg__conf_resilience_check(struct tg_conf_loader *ld, const struct tg_ynode *v,
                               struct tg_service_conf *svc);

/* Parses a node URL (http://, https://, unix:) into node; returns 0 or -1 with err set and
 * *err_off at the offending byte. Exposed for the unit tests. */
int tg__conf_parse_node_url(struct tg_conf_arena *a, const char *url, struct tg_node_conf *node,
                            char *err, size_t errlen, size_t *err_off);

/* Checks a service or route name (letters, digits, '-', '_', '.'; 1 to 64 bytes); reports what
 * is wrong at n. */
bool tg__conf_check_name(struct tg_conf_loader *ld, const struct tg_ynode *n, const char *what);

/* Validates an IPv4 or IPv6 CIDR ("10.0.0.0/8", "fd00::/8", or a single address). */
int tg__conf_check_cidr(const char *s, char *err, size_t errlen);

/* Sorts n strings and calls dup() for each one equal to an earlier one (by index). */
void tg__conf_find_dups(const char *const *keys, size_t n,
                        void (*dup)(void *ctx, size_t later, size_t first), void *ctx);

#endif
