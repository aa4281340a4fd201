/*
 * The API-key table (see keys.h): open addressing over the first 8 bytes of each digest (they
 * are uniformly distributed, and a caller cannot aim at a slot without a SHA-256 preimage), the
 * full 32 bytes compared with CRYPTO_memcmp so the comparison takes the same time whatever bytes
 * differ. Consumers from the store that the configuration does not define get an entry of
 * their own; their names live in the table's string pool.
 */
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "auth/keys.h"
#include "auth/keystore.h"
#include "core/core.h"

struct tg_keyslot {
    uint8_t digest[32];
    uint32_t consumer; /* index in consumers; UINT32_MAX = empty slot */
};

struct tg_keytab {
    struct tg_config *cf; /* one reference: plan indexes refer to its plans */
    struct tg_keyslot *slots;
    size_t mask, num_keys;
    struct tg_consumer *consumers;
    size_t num_consumers, cap_consumers;
    char *pool;
    size_t pool_len, pool_cap;
};

static uint64_t tg__slot_of(const uint8_t d[32])
{
    uint64_t h;

    memcpy(&h, d, sizeof(h));
    return h;
}

static size_t tg__pool_add(struct tg_keytab *kt, const char *s, size_t n)
{
    size_t off = kt->pool_len;

    if (kt->pool_len + n + 1 > kt->pool_cap) {
        kt->pool_cap = (kt->pool_len + n + 1) * 2;
        kt->pool = tg_realloc(kt->pool, kt->pool_cap);
    }
    memcpy(kt->pool + off, s, n);
    kt->pool[off + n] = '\0';
    kt->pool_len += n + 1;
    return off;
}

static uint32_t tg__consumer_add(struct tg_keytab *kt, const char *name, uint32_t plan)
{
    size_t n = strlen(name);

    for (size_t i = 0; i < kt->num_consumers; i++) /* by name: a few per build, not per key */
        if (kt->consumers[i].plan == plan && kt->consumers[i].name_len == n &&
            memcmp(kt->pool + (uintptr_t)kt->consumers[i].name, name, n) == 0)
            return (uint32_t)i;
    if (kt->num_consumers == kt->cap_consumers) {
        kt->cap_consumers = kt->cap_consumers ? kt->cap_consumers * 2 : 16;
        kt->consumers = tg_realloc(kt->consumers, kt->cap_consumers * sizeof(*kt->consumers));
    }
    /* name holds a pool offset until the pool stops moving (fixed up at the end) */
    kt->consumers[kt->num_consumers] =
        (struct tg_consumer){.name = (const char *)(uintptr_t)tg__pool_add(kt, name, n),
                             .name_len = (uint32_t)n,
                             .plan = plan};
    return (uint32_t)kt->num_consumers++;
}

static void tg__key_add(struct tg_keytab *kt, const uint8_t d[32], uint32_t consumer)
{
    size_t i = tg__slot_of(d) & kt->mask;

    while (kt->slots[i].consumer != UINT32_MAX) {
        if (memcmp(kt->slots[i].digest, d, 32) == 0)
            return; /* the first definition wins: inline config before the store */
        i = (i + 1) & kt->mask;
    }
    memcpy(kt->slots[i].digest, d, 32);
    kt->slots[i].consumer = consumer;
    kt->num_keys++;
}

struct tg_keytab *tg_keytab_build(const struct tg_config *cf, const void *rowsv, size_t num_rows,
                                  size_t *bad)
{
    const struct tg_key_row *rows = rowsv;
    struct tg_keytab *kt = tg_calloc(1, sizeof(*kt));
    size_t keys = num_rows, slots = 16;

    *bad = 0;
    kt->cf = tg_config_take((struct tg_config *)cf);
    for (size_t i = 0; i < cf->num_consumers; i++)
        keys += cf->consumers[i].num_keys;
    while (slots < keys * 2)
        slots <<= 1;
    kt->slots = tg_malloc(slots * sizeof(*kt->slots));
    for (size_t i = 0; i < slots; i++)
        kt->slots[i].consumer = UINT32_MAX;
    kt->mask = slots - 1;
    /* Consumers by name: the inline definition says the plan unless a row names one. */
    for (size_t i = 0; i < cf->num_consumers; i++) {
        const struct tg_consumer_conf *c = &cf->consumers[i];
        uint32_t id = tg__consumer_add(kt, c->name, c->plan);

        for (size_t k = 0; k < c->num_keys; k++)
            tg__key_add(kt, c->keys[k], id);
    }
    for (size_t r = 0; r < num_rows; r++) {
        uint32_t plan = TG_NO_PLAN;

        if (rows[r].plan[0] != '\0') {
            for (size_t p = 0; p < cf->num_plans && plan == TG_NO_PLAN; p++)
                if (strcmp(cf->plans[p].name, rows[r].plan) == 0)
                    plan = (uint32_t)p;
            if (plan == TG_NO_PLAN) {
                (*bad)++;
                continue;
            }
        } else {
            for (size_t i = 0; i < cf->num_consumers; i++)
                if (strcmp(cf->consumers[i].name, rows[r].consumer) == 0)
                    plan = cf->consumers[i].plan;
        }
        tg__key_add(kt, rows[r].digest, tg__consumer_add(kt, rows[r].consumer, plan));
    }
    for (size_t i = 0; i < kt->num_consumers; i++)
        kt->consumers[i].name = kt->pool + (uintptr_t)kt->consumers[i].name;
    return kt;
}

void tg_keytab_free(void *p)
{
    struct tg_keytab *kt = p;

    if (kt == NULL)
        return;
    tg_config_drop(kt->cf);
    free(kt->slots);
    free(kt->consumers);
    free(kt->pool);
    free(kt);
}

size_t tg_keytab_count(const struct tg_keytab *kt)
{
    return kt ? kt->num_keys : 0;
}

const struct tg_consumer *tg_keytab_find(const struct tg_keytab *kt, const uint8_t digest[32])
{
    size_t i;

    if (kt == NULL)
        return NULL;
    for (i = tg__slot_of(digest) & kt->mask; kt->slots[i].consumer != UINT32_MAX;
         i = (i + 1) & kt->mask) {
        if (CRYPTO_memcmp(kt->slots[i].digest, digest, 32) == 0)
            return &kt->consumers[kt->slots[i].consumer];
    }
    return NULL;
}

const struct tg_config *tg_keytab_config(const struct tg_keytab *kt)
{
    return kt->cf;
}

uint32_t tg_consumer_plan(const struct tg_keytab *kt, const struct tg_consumer *c,
                          const struct tg_config *cf)
{
    const char *name;

    if (c->plan == TG_NO_PLAN || cf == kt->cf)
        return c->plan;
    /* a reload is under way: the request runs on a newer snapshot than the table */
    name = kt->cf->plans[c->plan].name;
    for (size_t p = 0; p < cf->num_plans; p++)
        if (strcmp(cf->plans[p].name, name) == 0)
            return (uint32_t)p;
    return TG_NO_PLAN;
}
