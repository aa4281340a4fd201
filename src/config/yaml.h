/*
 * YAML (libyaml) -> a tree of nodes, each with the 1-based line and column it starts at, so every
 * configuration error can point at the offending text. Block and flow styles give the same tree.
 *
 * The tree is deliberately small: mappings, sequences and scalars (all scalars are text; the
 * loader decides their type). Anchors are ignored and aliases rejected, because an alias makes
 * the tree a graph whose expansion can grow exponentially ("billion laughs").
 */
#ifndef TG_CONFIG_YAML_H
#define TG_CONFIG_YAML_H

#include <stdbool.h>
#include <stddef.h>

#include "config/arena.h"

enum tg_ynode_kind { TG_YNODE_SCALAR, TG_YNODE_SEQ, TG_YNODE_MAP };

/* Limits that keep a hostile file from exhausting the loader. */
#define TG_YAML_MAX_DEPTH 64

struct tg_ynode {
    enum tg_ynode_kind kind;
    int line, col;     /* 1-based start of the node */
    int end_line;      /* 1-based line of the end of the node */
    int end_col;       /* 1-based column just past the node */
    bool is_null;      /* plain scalar "", "~", "null", "Null" or "NULL" */
    bool quoted;       /* single- or double-quoted scalar */
    bool literal_span; /* the value is exactly the source text between line:col and end (after
                        * a quote): byte offsets inside it map to columns */
    const char *str;   /* scalar text, NUL-terminated; never contains NUL itself */
    size_t len;
    struct tg_ynode *first, *last; /* children of a sequence or mapping, in order */
    size_t num;
    struct tg_ynode *next;      /* next sibling */
    const struct tg_ynode *key; /* for a child of a mapping: its key (a scalar) */
    bool dropped;               /* a duplicate key's value, removed from its mapping */
    bool invalid;               /* an error was reported for this value already (a failed
                                 * ${VAR}): it is skipped without further messages */
};

/* Receives each problem found while parsing, with its 1-based position. */
typedef void (*tg_yaml_report_cb)(void *ctx, int line, int col, const char *msg);

/*
 * Parses one YAML document from text into a tree allocated from a. Duplicate mapping keys are
 * reported and dropped (the first one stays) and parsing goes on, so the loader still finds the
 * other mistakes of the file. Returns the root node, or NULL after reporting an error that leaves
 * no usable tree: a syntax error (only the first one: after it the parser cannot tell what was
 * meant), an alias, a non-scalar mapping key, a NUL byte inside a scalar, nesting deeper than
 * TG_YAML_MAX_DEPTH, more than one document, or no document at all.
 */
struct tg_ynode *tg_yaml_parse(struct tg_conf_arena *a, const char *text, size_t len,
                               tg_yaml_report_cb report, void *ctx);

/* Returns the value of key in a mapping, or NULL. */
const struct tg_ynode *tg_ynode_get(const struct tg_ynode *map, const char *key);

#endif
