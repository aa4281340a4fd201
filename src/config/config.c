/*
 * Loading a configuration: read the file, build the YAML tree, expand ${VAR}s, walk the key
 * tables, run the cross-checks, then either hand out a snapshot or every error, sorted by
 * position. The generic table walker lives here; the tables themselves are in schema.c,
 * service.c and route.c.
 */
#include "config/config.h"

#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_internal.h"
#include "config/env.h"
#include "config/units.h"
#include "core/core.h"
#include "core/hex.h"

/* A configuration is a few kilobytes; this bound only stops a wrong path (a log file, a disk
 * image) from being read into memory whole. */
#define TG_CONF_MAX_FILE (16u * 1024 * 1024)

/* ---- errors ---- */

static void conf_verror_at(struct tg_conf_loader *ld, int line, int col, const char *fmt,
                           va_list ap)
{
    struct tg_conf_err *e;
    char buf[1024];

    if (ld->num_errs == TG_CONF_MAX_ERRORS) {
        ld->dropped_errs++;
        return;
    }
    if (ld->num_errs == ld->cap_errs) {
        ld->cap_errs = ld->cap_errs ? ld->cap_errs * 2 : 16;
        ld->errs = tg_realloc(ld->errs, ld->cap_errs * sizeof(*ld->errs));
    }
    vsnprintf(buf, sizeof(buf), fmt, ap);
    /* Keys and values quoted into messages may hold line breaks or terminal escapes; each error
     * must stay one printable line. */
    for (char *p = buf; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    e = &ld->errs[ld->num_errs];
    e->line = line;
    e->col = col;
    e->seq = ld->num_errs++;
    e->msg = tg_strdup(buf);
}

void tg__conf_error_at(struct tg_conf_loader *ld, int line, int col, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    conf_verror_at(ld, line, col, fmt, ap);
    va_end(ap);
}

void tg__conf_error(struct tg_conf_loader *ld, const struct tg_ynode *at, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    conf_verror_at(ld, at->line, at->col, fmt, ap);
    va_end(ap);
}

void tg__conf_error_in(struct tg_conf_loader *ld, const struct tg_ynode *v, size_t off,
                       const char *fmt, ...)
{
    int col = v->col;
    va_list ap;

    if (v->literal_span && off <= v->len)
        col += (v->quoted ? 1 : 0) + (int)off;
    va_start(ap, fmt);
    conf_verror_at(ld, v->line, col, fmt, ap);
    va_end(ap);
}

static void yaml_report(void *ctx, int line, int col, const char *msg)
{
    tg__conf_error_at(ctx, line, col, "%s", msg);
}

static int err_cmp(const void *pa, const void *pb)
{
    const struct tg_conf_err *a = pa, *b = pb;

    if (a->line != b->line)
        return a->line < b->line ? -1 : 1;
    if (a->col != b->col)
        return a->col < b->col ? -1 : 1;
    return (a->seq > b->seq) - (a->seq < b->seq);
}

static void errs_push(struct tg_config_errors *errs, char *msg)
{
    errs->msgs = tg_realloc(errs->msgs, (errs->num + 1) * sizeof(*errs->msgs));
    errs->msgs[errs->num++] = msg;
}

/* Moves the collected errors, sorted by position, into errs as "FILE:LINE:COL: message". */
static void errs_flush(struct tg_conf_loader *ld, const char *file, struct tg_config_errors *errs)
{
    qsort(ld->errs, ld->num_errs, sizeof(*ld->errs), err_cmp);
    for (size_t i = 0; i < ld->num_errs; i++) {
        struct tg_conf_err *e = &ld->errs[i];
        size_t n = strlen(file) + strlen(e->msg) + 48;
        char *m = tg_malloc(n);

        snprintf(m, n, "%s:%d:%d: %s", file, e->line, e->col, e->msg);
        free(e->msg);
        errs_push(errs, m);
    }
    if (ld->dropped_errs > 0 && ld->num_errs > 0) {
        const struct tg_conf_err *last = &ld->errs[ld->num_errs - 1];
        size_t n = strlen(file) + 96;
        char *m = tg_malloc(n);

        snprintf(m, n, "%s:%d:%d: too many errors; %zu more not shown", file, last->line, last->col,
                 ld->dropped_errs);
        errs_push(errs, m);
    }
    free(ld->errs);
    ld->errs = NULL;
    ld->num_errs = 0;
}

void tg_config_errors_dispose(struct tg_config_errors *errs)
{
    for (size_t i = 0; i < errs->num; i++)
        free(errs->msgs[i]);
    free(errs->msgs);
    errs->msgs = NULL;
    errs->num = 0;
}

/* ---- helpers shared by the tables ---- */

const char *tg__conf_describe(struct tg_conf_loader *ld, const struct tg_ynode *n)
{
    if (n->kind == TG_YNODE_MAP)
        return "a mapping";
    if (n->kind == TG_YNODE_SEQ)
        return "a list";
    if (n->is_null || n->len == 0)
        return "an empty value";
    if (n->len > 60)
        return tg_conf_arena_printf(ld->a, "'%.57s...'", n->str);
    return tg_conf_arena_printf(ld->a, "'%s'", n->str);
}

const char *tg__conf_strdup(struct tg_conf_loader *ld, const struct tg_ynode *n)
{
    return tg_conf_arena_strndup(ld->a, n->str, n->len);
}

static const char *key_name(const struct tg_ynode *v)
{
    return v->key != NULL ? v->key->str : "value";
}

bool tg__conf_scalar(struct tg_conf_loader *ld, const struct tg_ynode *v, const char *what)
{
    if (v->invalid)
        return false;
    if (v->kind == TG_YNODE_SCALAR && !v->is_null && v->len > 0)
        return true;
    tg__conf_error(ld, v, "%s: expected %s, got %s", key_name(v), what, tg__conf_describe(ld, v));
    return false;
}

const struct tg_ynode *tg__conf_list(struct tg_conf_loader *ld, const struct tg_ynode *v,
                                     const char *what)
{
    if (v->kind == TG_YNODE_SEQ)
        return v->first;
    if (v->kind != TG_YNODE_SCALAR || !v->is_null)
        tg__conf_error(ld, v, "%s: expected a list of %s, got %s", key_name(v), what,
                       tg__conf_describe(ld, v));
    return NULL;
}

static int str_ptr_cmp(const void *pa, const void *pb)
{
    const char *const *a = *(const char *const *const *)pa;
    const char *const *b = *(const char *const *const *)pb;
    int c = strcmp(*a, *b);

    return c != 0 ? c : (a > b) - (a < b);
}

void tg__conf_find_dups(const char *const *keys, size_t n,
                        void (*dup)(void *ctx, size_t later, size_t first), void *ctx)
{
    const char *const **v;
    size_t first = 0;

    if (n < 2)
        return;
    v = tg_malloc(n * sizeof(*v));
    for (size_t i = 0; i < n; i++)
        v[i] = &keys[i];
    /* Comparing the addresses breaks ties by index, so the first of a run is the earliest. */
    qsort(v, n, sizeof(*v), str_ptr_cmp);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(*v[first], *v[i]) != 0)
            first = i;
        else
            dup(ctx, (size_t)(v[i] - keys), (size_t)(v[first] - keys));
    }
    free(v);
}

/* ---- the table walker ---- */

/* Levenshtein distance, capped: only used to suggest a key for a likely typo. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[33];

    if (la > 32 || lb > 32)
        return 99;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];

        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);

            best = TG_MIN(best, up + 1);
            best = TG_MIN(best, row[j - 1] + 1);
            diag = up;
            row[j] = best;
        }
    }
    return row[lb];
}

/* Lists the keys a section accepts, for error messages. */
static const char *valid_keys(struct tg_conf_loader *ld, const struct tg_conf_section *s)
{
    char valid[512];
    size_t used = 0;

    valid[0] = '\0';
    for (size_t i = 0; i < s->num_keys && used < sizeof(valid); i++)
        if (s->keys[i].type != TG_CT_LATER)
            used += (size_t)snprintf(valid + used, sizeof(valid) - used, "%s%s", used ? ", " : "",
                                     s->keys[i].name);
    return tg_conf_arena_strdup(ld->a, valid);
}

static void unknown_key(struct tg_conf_loader *ld, const struct tg_conf_section *s,
                        const struct tg_ynode *key)
{
    char hint[96] = "";
    size_t best = 3;

    for (size_t i = 0; i < s->num_keys; i++) {
        const struct tg_conf_key *k = &s->keys[i];
        size_t d = edit_distance(key->str, k->name);

        if (k->type != TG_CT_LATER && d < best && d < strlen(k->name)) {
            best = d;
            snprintf(hint, sizeof(hint), " (did you mean '%s'?)", k->name);
        }
    }
    tg__conf_error(ld, key, "unknown key '%s' in %s%s; valid keys: %s", key->str, s->name, hint,
                   valid_keys(ld, s));
}

static const char *num_text(struct tg_conf_loader *ld, uint8_t type, uint64_t v)
{
    static const char *const units[] = {"b", "kb", "mb", "gb"};
    char buf[32];
    size_t u = 0;

    if (type == TG_CT_DURATION)
        return tg_conf_arena_strdup(ld->a, tg_units_format_duration(v, buf, sizeof(buf)));
    if (type != TG_CT_SIZE)
        return tg_conf_arena_printf(ld->a, "%llu", (unsigned long long)v);
    while (u < 3 && v >= 1024 && v % 1024 == 0) {
        v /= 1024;
        u++;
    }
    return tg_conf_arena_printf(ld->a, "%llu%s", (unsigned long long)v, units[u]);
}

static bool check_bounds(struct tg_conf_loader *ld, const struct tg_conf_key *k,
                         const struct tg_ynode *v, uint64_t val)
{
    if (val < k->min) {
        if (k->min == 1 && k->why_min != NULL)
            tg__conf_error(ld, v, "%s: must be greater than 0: %s", k->name, k->why_min);
        else if (k->why_min != NULL)
            tg__conf_error(ld, v, "%s: must be at least %s: %s", k->name,
                           num_text(ld, k->type, k->min), k->why_min);
        else
            tg__conf_error(ld, v, "%s: must be at least %s, got %s", k->name,
                           num_text(ld, k->type, k->min), v->str);
        return false;
    }
    if (val > k->max) {
        tg__conf_error(ld, v, "%s: must be at most %s, got %s", k->name,
                       num_text(ld, k->type, k->max), v->str);
        return false;
    }
    return true;
}

static void parse_number(struct tg_conf_loader *ld, const struct tg_conf_key *k,
                         const struct tg_ynode *v, char *field)
{
    static const char *const what[] = {
        [TG_CT_UINT32] = "a whole number",
        [TG_CT_SIZE] = "a size like 512b, 16kb, 10mb or 1gb",
        [TG_CT_DURATION] = "a duration like 250ms, 5s, 15m, 1h or 1d",
    };
    struct tg_str s = tg_str_make(v->str, v->len);
    char err[256];
    uint64_t val;
    int rc;

    if (!tg__conf_scalar(ld, v, what[k->type]))
        return;
    if (k->type == TG_CT_SIZE)
        rc = tg_units_parse_size(s, &val, err, sizeof(err));
    else if (k->type == TG_CT_DURATION)
        rc = tg_units_parse_duration(s, &val, err, sizeof(err));
    else if ((rc = tg_units_parse_uint(s, &val, err, sizeof(err))) != 0)
        snprintf(err, sizeof(err), "expected a whole number, got '%s'", v->str);
    if (rc != 0) {
        tg__conf_error(ld, v, "%s: %s", k->name, err);
        return;
    }
    if (!check_bounds(ld, k, v, val))
        return;
    if (k->type == TG_CT_UINT32)
        *(uint32_t *)field = (uint32_t)val;
    else
        *(uint64_t *)field = val;
}

static void parse_fraction(struct tg_conf_loader *ld, const struct tg_conf_key *k,
                           const struct tg_ynode *v, double *field)
{
    char *end;
    double d;

    if (!tg__conf_scalar(ld, v, "a number between 0 and 1"))
        return;
    errno = 0;
    d = strtod(v->str, &end);
    if (*end != '\0' || errno != 0 || !isfinite(d) || !(v->str[0] >= '0' && v->str[0] <= '9')) {
        tg__conf_error(ld, v, "%s: expected a number between 0 and 1 like 0.25, got '%s'", k->name,
                       v->str);
        return;
    }
    if (d < 0 || d > 1) {
        tg__conf_error(ld, v, "%s: must be between 0 and 1, got %s", k->name, v->str);
        return;
    }
    *field = d;
}

static void parse_enum(struct tg_conf_loader *ld, const struct tg_conf_key *k,
                       const struct tg_ynode *v, uint8_t *field)
{
    char list[256];
    size_t used = 0;

    if (v->kind == TG_YNODE_SCALAR) {
        for (size_t i = 0; k->names[i] != NULL; i++) {
            if (strcmp(v->str, k->names[i]) == 0) {
                *field = (uint8_t)i;
                return;
            }
        }
    }
    list[0] = '\0';
    for (size_t i = 0; k->names[i] != NULL && used < sizeof(list); i++)
        used +=
            (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", k->names[i]);
    tg__conf_error(ld, v, "%s: expected one of %s, got %s", k->name, list,
                   tg__conf_describe(ld, v));
}

static void parse_addr(struct tg_conf_loader *ld, const struct tg_conf_key *k,
                       const struct tg_ynode *v, char *base)
{
    char err[256];

    if (!tg__conf_scalar(ld, v, "an address like 127.0.0.1:8080, [::1]:8080 or unix:/path"))
        return;
    if (tg_addr_parse(v->str, (struct tg_addr *)(base + k->offset2), err, sizeof(err)) != 0) {
        tg__conf_error(ld, v, "%s: %s", k->name, err);
        return;
    }
    *(const char **)(base + k->offset) = tg__conf_strdup(ld, v);
}

static void parse_value(struct tg_conf_loader *ld, const struct tg_conf_section *s,
                        const struct tg_conf_key *k, const struct tg_ynode *v, void *base)
{
    char *field = (char *)base + k->offset;

    if (v->invalid)
        return;
    switch (k->type) {
    case TG_CT_BOOL:
        if (v->kind == TG_YNODE_SCALAR &&
            (strcmp(v->str, "true") == 0 || strcmp(v->str, "false") == 0))
            *(bool *)field = v->str[0] == 't';
        else
            tg__conf_error(ld, v, "%s: expected true or false, got %s", k->name,
                           tg__conf_describe(ld, v));
        break;
    case TG_CT_UINT32:
    case TG_CT_SIZE:
    case TG_CT_DURATION:
        parse_number(ld, k, v, field);
        break;
    case TG_CT_FRACTION:
        parse_fraction(ld, k, v, (double *)field);
        break;
    case TG_CT_STRING:
        if (tg__conf_scalar(ld, v, "a string"))
            *(const char **)field = tg__conf_strdup(ld, v);
        break;
    case TG_CT_ENUM:
        parse_enum(ld, k, v, (uint8_t *)field);
        break;
    case TG_CT_ADDR:
        parse_addr(ld, k, v, base);
        break;
    case TG_CT_SECTION:
        tg__conf_section(ld, k->sub, v, field);
        break;
    case TG_CT_CUSTOM:
        k->parse(ld, v, base);
        break;
    case TG_CT_LATER:
        tg__conf_error(ld, v->key,
                       "'%s' (%s) is not supported by this version of tollgate yet; valid keys "
                       "in %s: %s",
                       k->name, k->later, s->name, valid_keys(ld, s));
        break;
    }
}

void tg__conf_defaults(struct tg_conf_loader *ld, const struct tg_conf_section *s, void *base)
{
    for (size_t i = 0; i < s->num_keys; i++) {
        const struct tg_conf_key *k = &s->keys[i];
        struct tg_ynode v = {.kind = TG_YNODE_SCALAR, .line = 0, .col = 0};
        size_t before = ld->num_errs;

        if (k->type == TG_CT_SECTION) {
            tg__conf_defaults(ld, k->sub, (char *)base + k->offset);
            continue;
        }
        if (k->def == NULL)
            continue;
        v.str = k->def;
        v.len = strlen(k->def);
        parse_value(ld, s, k, &v, base);
        TG_BUG_ON(ld->num_errs != before);
    }
}

bool tg__conf_section(struct tg_conf_loader *ld, const struct tg_conf_section *s,
                      const struct tg_ynode *map, void *base)
{
    const struct tg_ynode *c;

    if (map->kind == TG_YNODE_SCALAR && map->is_null)
        goto required;
    if (map->kind != TG_YNODE_MAP) {
        tg__conf_error(ld, map, "%s: expected a mapping, got %s", s->name,
                       tg__conf_describe(ld, map));
        return false;
    }
    for (c = map->first; c != NULL; c = c->next) {
        size_t i;

        for (i = 0; i < s->num_keys; i++)
            if (strcmp(c->key->str, s->keys[i].name) == 0)
                break;
        if (i == s->num_keys)
            unknown_key(ld, s, c->key);
        else
            parse_value(ld, s, &s->keys[i], c, base);
    }
required:
    for (size_t i = 0; i < s->num_keys; i++) {
        if (!(s->keys[i].flags & TG_CK_REQUIRED) || tg_ynode_get(map, s->keys[i].name) != NULL)
            continue;
        tg__conf_error(ld, map, "%s is missing the required key '%s'", s->name, s->keys[i].name);
    }
    return true;
}

/* ---- environment expansion ---- */

static void expand_tree(struct tg_conf_loader *ld, struct tg_conf_arena *tmp, struct tg_ynode *n)
{
    if (n->kind == TG_YNODE_SCALAR) {
        struct tg_str out;
        char err[256];
        size_t off = 0;
        int rc = tg_env_expand(tmp, tg_str_make(n->str, n->len), &out, err, sizeof(err), &off);

        if (rc < 0) {
            tg__conf_error_in(ld, n, off, "%s", err);
            n->invalid = true;
        } else if (rc > 0) {
            n->str = out.base;
            n->len = out.len;
            n->literal_span = false;
            n->is_null = false;
        }
        return;
    }
    for (struct tg_ynode *c = n->first; c != NULL; c = c->next)
        expand_tree(ld, tmp, c);
}

/* ---- loading ---- */

static void config_hash(const char *text, size_t len, char out[17])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (!EVP_Digest(text, len, md, &mdlen, EVP_sha256(), NULL) || mdlen < 8)
        tg_fatal("SHA-256 of the configuration failed");
    tg_hex_bytes(out, md, 8);
    out[16] = '\0';
}

struct tg_config *tg_config_load_mem(const char *name, const char *text, size_t len,
                                     struct tg_config_errors *errs)
{
    struct tg_conf_loader ld = {0};
    struct tg_conf_arena *tree_arena = tg_conf_arena_new();
    struct tg_ynode *root;

    ld.a = tg_conf_arena_new();
    ld.cf = tg_conf_arena_alloc(ld.a, sizeof(*ld.cf));
    ld.file = tg_conf_arena_strdup(ld.a, name);
    atomic_init(&ld.cf->refs, 1);
    ld.cf->file = ld.file;
    ld.cf->arena = ld.a;
    config_hash(text, len, ld.cf->hash);
    tg__conf_defaults(&ld, &tg__conf_top, ld.cf);

    root = tg_yaml_parse(tree_arena, text, len, yaml_report, &ld);
    if (root != NULL) {
        ld.root = root;
        expand_tree(&ld, tree_arena, root);
        if (tg__conf_section(&ld, &tg__conf_top, root, ld.cf)) {
            tg__conf_check_top(&ld);
            tg__conf_check_routes(&ld);
            tg__conf_check_identity(&ld);
            tg__conf_check_jsonrpc(&ld);
        }
    }
    free(ld.route_aux);
    tg_conf_arena_free(tree_arena);
    if (ld.num_errs > 0 || root == NULL) {
        errs_flush(&ld, name, errs);
        tg_conf_arena_free(ld.a);
        return NULL;
    }
    free(ld.errs);
    return ld.cf;
}

struct tg_config *tg_config_load(const char *path, struct tg_config_errors *errs)
{
    struct tg_config *cf = NULL;
    char *text = NULL, *m;
    size_t len = 0, cap = 0, n;
    FILE *f = fopen(path, "rb");
    const char *why = NULL;

    if (f == NULL) {
        why = strerror(errno);
        goto fail;
    }
    do {
        if (cap - len < 65536) {
            cap = cap ? cap * 2 : 65536;
            text = tg_realloc(text, cap);
        }
        n = fread(text + len, 1, cap - len, f);
        len += n;
        if (len > TG_CONF_MAX_FILE) {
            why = "the file is larger than 16mb; is this really a configuration file?";
            goto fail;
        }
    } while (n > 0);
    if (ferror(f)) {
        why = strerror(errno);
        goto fail;
    }
    cf = tg_config_load_mem(path, text, len, errs);
    goto out;
fail:
    n = strlen(path) + strlen(why) + 32;
    m = tg_malloc(n);
    snprintf(m, n, "%s:1:1: cannot read: %s", path, why);
    errs_push(errs, m);
out:
    if (f != NULL)
        fclose(f);
    free(text);
    return cf;
}

struct tg_config *tg_config_take(struct tg_config *cf)
{
    atomic_fetch_add_explicit(&cf->refs, 1, memory_order_relaxed);
    return cf;
}

void tg_config_drop(struct tg_config *cf)
{
    /* Release on every drop and acquire on the last, so the thread that frees the snapshot sees
     * everything the others did with it. */
    if (cf == NULL || atomic_fetch_sub_explicit(&cf->refs, 1, memory_order_acq_rel) != 1)
        return;
    tg_conf_arena_free(cf->arena); /* cf itself lives in its arena */
}

struct tg_service_conf *tg_config_service(const struct tg_config *cf, const char *name)
{
    for (size_t i = 0; i < cf->num_services; i++)
        if (strcmp(cf->services[i].name, name) == 0)
            return &cf->services[i];
    return NULL;
}
