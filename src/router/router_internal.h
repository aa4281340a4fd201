/*
 * What the router's files share: the compiled form of one host or path pattern and the
 * specificity classes. Nothing here is used outside src/router/.
 */
#ifndef TG_ROUTER_INTERNAL_H
#define TG_ROUTER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "router/router.h"

enum tg__rt_part_kind {
    TG__RT_LIT,   /* literal bytes, compared exactly (paths) or ASCII case-insensitively (hosts) */
    TG__RT_CAP,   /* "{name}": one non-empty segment or label, or the part of it between literals */
    TG__RT_SPLAT, /* "{name*}": the rest of the path, possibly empty; always the last part */
};

/*
 * One capture per segment (label) plus at most one literal between two captures and one at
 * each end bounds the number of parts.
 */
#define TG__RT_MAX_PARTS (2 * TG_ROUTER_MAX_CAPTURES + 1)

struct tg__rt_part {
    uint8_t kind; /* enum tg__rt_part_kind */
    uint8_t cap;  /* CAP, SPLAT: index into names[] of the pattern */
    /*
     * LIT: the literal ends with the separator and the subject may end right before it, so
     * that the prefix "/api/" and "/api/{rest*}" also match "/api".
     */
    bool opt_sep;
    /* CAP: how many literal bytes follow the capture inside the same segment ("{id}.json"). */
    uint32_t seg_suffix;
    const char *lit; /* LIT: points into the pattern text */
    uint32_t len;
};

struct tg__rt_pattern {
    const char *text; /* the pattern, after host normalisation (lower case, no trailing dot) */
    size_t text_len;
    struct tg__rt_part parts[TG__RT_MAX_PARTS];
    uint8_t num_parts;
    uint8_t num_caps;
    bool prefix;        /* path ending in '/': the rest of the request path is not matched */
    bool splat;         /* path ends with "{name*}" */
    bool wildcard;      /* host starting with "*.": parts[] match what follows the "*." */
    uint32_t wild_dots; /* wildcard: dots after the "*.", so the labels the parts span minus 1 */
    uint32_t literal_bytes;
    struct tg_str names[TG_ROUTER_MAX_CAPTURES];
};

/*
 * Parses and checks pattern (NUL-terminated, already normalised for hosts with
 * tg__rt_host_normalise()) into out; out->text points at pattern, so pattern must outlive out.
 * Returns 0, or -1 with a message in err and the offset of the offending byte in *col_off.
 */
int tg__rt_compile(const char *pattern, int is_host, struct tg__rt_pattern *out, char *err,
                   size_t errlen, size_t *col_off);

/*
 * Normalises a host pattern in place: ASCII lower case, one trailing dot removed. Offsets in
 * error messages stay valid because only the last byte may go away.
 */
void tg__rt_host_normalise(char *pattern);

#endif
