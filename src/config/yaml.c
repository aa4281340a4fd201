#include "config/yaml.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "core/core.h"

struct builder {
    struct tg_conf_arena *a;
    tg_yaml_report_cb report;
    void *ctx;
    const char *text;
    size_t len;
    struct tg_ynode *root;
    struct tg_ynode *stack[TG_YAML_MAX_DEPTH];
    struct tg_ynode *pending_key[TG_YAML_MAX_DEPTH]; /* a mapping's key awaiting its value */
    int depth;
    int documents;
};

static void builder_error(struct builder *b, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void builder_error(struct builder *b, int line, int col, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    b->report(b->ctx, line, col, msg);
}

/* libyaml marks are 0-based; every position we report is 1-based, like compilers print them. */
static struct tg_ynode *node_new(struct builder *b, enum tg_ynode_kind kind, const yaml_event_t *ev)
{
    struct tg_ynode *n = tg_conf_arena_alloc(b->a, sizeof(*n));

    n->kind = kind;
    n->line = (int)ev->start_mark.line + 1;
    n->col = (int)ev->start_mark.column + 1;
    n->end_line = (int)ev->end_mark.line + 1;
    n->end_col = (int)ev->end_mark.column + 1;
    n->str = "";
    return n;
}

/* Reader errors (bad UTF-8, control characters) only carry a byte offset. */
static void offset_to_pos(const struct builder *b, size_t off, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off && i < b->len; i++) {
        if (b->text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static void report_parser_error(struct builder *b, const yaml_parser_t *p)
{
    int line, col;

    switch (p->error) {
    case YAML_READER_ERROR:
        offset_to_pos(b, p->problem_offset, &line, &col);
        builder_error(b, line, col, "YAML syntax error: %s", p->problem ? p->problem : "bad input");
        break;
    case YAML_SCANNER_ERROR:
    case YAML_PARSER_ERROR:
        line = (int)p->problem_mark.line + 1;
        col = (int)p->problem_mark.column + 1;
        if (p->context != NULL)
            builder_error(b, line, col, "YAML syntax error: %s (%s at line %d column %d)",
                          p->problem ? p->problem : "bad input", p->context,
                          (int)p->context_mark.line + 1, (int)p->context_mark.column + 1);
        else
            builder_error(b, line, col, "YAML syntax error: %s",
                          p->problem ? p->problem : "bad input");
        break;
    default:
        builder_error(b, 1, 1, "YAML parser failed (%s)", p->problem ? p->problem : "no memory");
        break;
    }
}

static bool is_null_text(const char *s, size_t len)
{
    return len == 0 || (len == 1 && s[0] == '~') ||
           (len == 4 && (!memcmp(s, "null", 4) || !memcmp(s, "Null", 4) || !memcmp(s, "NULL", 4)));
}

static bool is_ascii(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] >= 0x80)
            return false;
    return true;
}

static struct tg_ynode *scalar_new(struct builder *b, const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    struct tg_ynode *n;
    size_t span;

    if (memchr(v, '\0', len) != NULL) {
        builder_error(b, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                      "a NUL character is not allowed in a value");
        return NULL;
    }
    n = node_new(b, TG_YNODE_SCALAR, ev);
    n->str = tg_conf_arena_strndup(b->a, v, len);
    n->len = len;
    n->quoted = ev->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                ev->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
    n->is_null = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && is_null_text(v, len);
    /* When the value is the source text itself (no escapes, no folding, one line, ASCII), an
     * offset inside the value is an offset in columns too, so errors can point inside it. */
    span = ev->end_mark.index - ev->start_mark.index;
    n->literal_span = ev->start_mark.line == ev->end_mark.line && is_ascii(v, len) &&
                      (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ||
                       ev->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                       ev->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE) &&
                      span == len + (n->quoted ? 2 : 0);
    return n;
}

static void append_child(struct tg_ynode *parent, struct tg_ynode *child)
{
    if (parent->last != NULL)
        parent->last->next = child;
    else
        parent->first = child;
    parent->last = child;
    parent->num++;
}

/* Returns false when the node cannot be placed (a non-scalar mapping key). */
static bool attach(struct builder *b, struct tg_ynode *n)
{
    struct tg_ynode *parent;

    if (b->depth == 0) {
        b->root = n;
        return true;
    }
    parent = b->stack[b->depth - 1];
    if (parent->kind == TG_YNODE_SEQ) {
        append_child(parent, n);
        return true;
    }
    if (b->pending_key[b->depth - 1] == NULL) {
        if (n->kind != TG_YNODE_SCALAR) {
            builder_error(b, n->line, n->col, "a mapping key must be a plain string, not a %s",
                          n->kind == TG_YNODE_MAP ? "mapping" : "list");
            return false;
        }
        b->pending_key[b->depth - 1] = n;
        return true;
    }
    n->key = b->pending_key[b->depth - 1];
    b->pending_key[b->depth - 1] = NULL;
    append_child(parent, n);
    return true;
}

static int key_cmp(const void *pa, const void *pb)
{
    const struct tg_ynode *a = *(const struct tg_ynode *const *)pa;
    const struct tg_ynode *b = *(const struct tg_ynode *const *)pb;
    int c = strcmp(a->key->str, b->key->str);

    if (c != 0)
        return c;
    if (a->key->line != b->key->line)
        return a->key->line < b->key->line ? -1 : 1;
    return (a->key->col > b->key->col) - (a->key->col < b->key->col);
}

/* Sorting keeps this O(n log n): a hostile file may hold a mapping of a million keys. */
static void drop_duplicate_keys(struct builder *b, struct tg_ynode *map)
{
    struct tg_ynode **v, *c, *prev = NULL;
    size_t i = 0, first = 0;

    if (map->num < 2)
        return;
    v = tg_malloc(map->num * sizeof(*v));
    for (c = map->first; c != NULL; c = c->next)
        v[i++] = c;
    qsort(v, map->num, sizeof(*v), key_cmp);
    for (i = 1; i < map->num; i++) {
        if (strcmp(v[first]->key->str, v[i]->key->str) != 0) {
            first = i;
            continue;
        }
        builder_error(b, v[i]->key->line, v[i]->key->col,
                      "duplicate key '%s' (first at line %d column %d)", v[i]->key->str,
                      v[first]->key->line, v[first]->key->col);
        v[i]->dropped = true;
    }
    free(v);
    map->num = 0;
    for (c = map->first; c != NULL; c = c->next) {
        if (c->dropped)
            continue;
        if (prev != NULL)
            prev->next = c;
        else
            map->first = c;
        prev = c;
        map->num++;
    }
    if (prev != NULL)
        prev->next = NULL;
    else
        map->first = NULL;
    map->last = prev;
}

/* Handles one event; returns 1 at the end of the stream, 0 to go on, -1 after an error. */
static int builder_event(struct builder *b, const yaml_event_t *ev)
{
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
    struct tg_ynode *n;

    switch (ev->type) {
    case YAML_STREAM_END_EVENT:
        return 1;
    case YAML_DOCUMENT_START_EVENT:
        if (++b->documents > 1) {
            builder_error(b, line, col, "only one YAML document is allowed per file");
            return -1;
        }
        return 0;
    case YAML_ALIAS_EVENT:
        builder_error(b, line, col, "YAML aliases (*%s) are not supported",
                      (const char *)ev->data.alias.anchor);
        return -1;
    case YAML_SCALAR_EVENT:
        n = scalar_new(b, ev);
        return n != NULL && attach(b, n) ? 0 : -1;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
        if (b->depth == TG_YAML_MAX_DEPTH) {
            builder_error(b, line, col, "nesting is deeper than %d levels", TG_YAML_MAX_DEPTH);
            return -1;
        }
        n = node_new(b, ev->type == YAML_MAPPING_START_EVENT ? TG_YNODE_MAP : TG_YNODE_SEQ, ev);
        if (!attach(b, n))
            return -1;
        b->pending_key[b->depth] = NULL;
        b->stack[b->depth++] = n;
        return 0;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        n = b->stack[--b->depth];
        n->end_line = (int)ev->end_mark.line + 1;
        n->end_col = (int)ev->end_mark.column + 1;
        if (n->kind == TG_YNODE_MAP)
            drop_duplicate_keys(b, n);
        return 0;
    default:
        return 0;
    }
}

struct tg_ynode *tg_yaml_parse(struct tg_conf_arena *a, const char *text, size_t len,
                               tg_yaml_report_cb report, void *ctx)
{
    struct builder b = {.a = a, .report = report, .ctx = ctx, .text = text, .len = len};
    yaml_parser_t parser;
    yaml_event_t ev;
    int rc = 0;

    if (!yaml_parser_initialize(&parser))
        tg_fatal("out of memory initialising the YAML parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    while (rc == 0) {
        if (!yaml_parser_parse(&parser, &ev)) {
            report_parser_error(&b, &parser);
            rc = -1;
            break;
        }
        rc = builder_event(&b, &ev);
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    if (rc < 0)
        return NULL;
    if (b.root == NULL) {
        builder_error(&b, 1, 1, "the file is empty");
        return NULL;
    }
    return b.root;
}

const struct tg_ynode *tg_ynode_get(const struct tg_ynode *map, const char *key)
{
    if (map == NULL || map->kind != TG_YNODE_MAP)
        return NULL;
    for (const struct tg_ynode *c = map->first; c != NULL; c = c->next)
        if (strcmp(c->key->str, key) == 0)
            return c;
    return NULL;
}
