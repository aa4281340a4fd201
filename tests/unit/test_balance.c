/*
 * Node choice (src/upstream/balance*.c) and passive ejection (passive.c) on services built by the
 * real loader and tg_upstreams_init: tiers, nodes tried, drain, trials, panic, each policy's
 * distribution, and max_ejection_percent.
 */
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "upstream/upstream.h"
#include "unit.h"

#define NOW_US 1000000000ull /* an arbitrary monotonic time, far from 0 */

struct fixture {
    struct tg_config *cf;
    struct tg_upstreams up;
    struct tg_service *svc;
};

static int setup(struct fixture *f, const char *service_yaml)
{
    char text[2048];
    struct tg_config_errors errs = {0};
    char err[256];

    snprintf(text, sizeof(text),
             "listen: [ { addr: 127.0.0.1:18080 } ]\nservices:\n  s:\n%s"
             "routes: [ { name: r, service: s } ]\n",
             service_yaml);
    memset(f, 0, sizeof(*f));
    f->cf = tg_config_load_mem("t.yaml", text, strlen(text), &errs);
    for (size_t i = 0; i < errs.num; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    tg_config_errors_dispose(&errs);
    if (f->cf == NULL)
        return -1;
    if (tg_upstreams_init(&f->up, f->cf, NULL, NULL, 1, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    f->svc = &f->up.services[0];
    return 0;
}

static void teardown(struct fixture *f)
{
    tg_upstreams_dispose(&f->up);
    tg_config_drop(f->cf);
}

static int pick(struct fixture *f, struct tg_pick *p)
{
    p->now_us = NOW_US;
    return tg_balance_pick(f->svc, p);
}

static int pick_fresh(struct fixture *f)
{
    struct tg_pick p = {0};

    return pick(f, &p);
}

static void set_flags(struct fixture *f, int member, unsigned flags)
{
    atomic_store(&f->svc->members[member].node->health.flags, flags);
}

#define THREE_NODES                                                                                \
    "    nodes:\n"                                                                                 \
    "      - { url: http://10.0.0.1:80 }\n"                                                        \
    "      - { url: http://10.0.0.2:80 }\n"                                                        \
    "      - { url: http://10.0.0.3:80 }\n"

TEST(test_round_robin_is_smooth)
{
    struct fixture f;
    char seq[8] = {0};

    if (setup(&f, "    balance: round_robin\n"
                  "    nodes:\n"
                  "      - { url: http://10.0.0.1:80, weight: 5 }\n"
                  "      - { url: http://10.0.0.2:80 }\n"
                  "      - { url: http://10.0.0.3:80 }\n") != 0) {
        UNIT_FAIL("setup");
        return;
    }
    for (int i = 0; i < 7; i++)
        seq[i] = (char)('a' + pick_fresh(&f));
    /* nginx's smooth weighted round robin: no burst of five a's */
    ASSERT_STREQ("aabacaa", seq);
    teardown(&f);
}

TEST(test_tiers_tried_and_drain)
{
    struct fixture f;
    struct tg_pick p = {0};

    if (setup(&f, "    balance: round_robin\n"
                  "    nodes:\n"
                  "      - { url: http://10.0.0.1:80 }\n"
                  "      - { url: http://10.0.0.2:80, drain: true }\n"
                  "      - { url: http://10.0.0.3:80, tier: 1 }\n") != 0) {
        UNIT_FAIL("setup");
        return;
    }
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(0, pick_fresh(&f)); /* tier 0, and the drained node never */
    set_flags(&f, 0, TG_NODE_DOWN);
    ASSERT_EQ(2, pick_fresh(&f)); /* tier 0 has no usable node left: tier 1 */
    set_flags(&f, 0, 0);
    p.tried[0] = 1; /* a retry after node 0 failed */
    ASSERT_EQ(2, pick(&f, &p));
    p.tried[0] = 1 | 4;
    ASSERT_EQ(-1, pick(&f, &p)); /* nothing left that was not tried */
    teardown(&f);
}

TEST(test_connection_limit_spills_to_the_next_tier)
{
    struct fixture f;

    if (setup(&f, "    nodes:\n"
                  "      - { url: http://10.0.0.1:80, max_connections: 2 }\n"
                  "      - { url: http://10.0.0.2:80, tier: 1 }\n") != 0) {
        UNIT_FAIL("setup");
        return;
    }
    ASSERT_EQ(0, pick_fresh(&f));
    atomic_store(&f.svc->members[0].node->health.connections, 2);
    ASSERT_EQ(1, pick_fresh(&f)); /* tier 0 is at its limit: tier 1 takes the request */
    atomic_store(&f.svc->members[0].node->health.connections, 1);
    ASSERT_EQ(0, pick_fresh(&f));
    teardown(&f);
}

TEST(test_ejected_node_gets_one_trial)
{
    struct fixture f;
    struct tg_node *n;
    struct tg_pick p = {0};

    if (setup(&f, "    balance: round_robin\n" THREE_NODES) != 0) {
        UNIT_FAIL("setup");
        return;
    }
    n = f.svc->members[1].node;
    atomic_store(&n->health.eject_until, (long long)(NOW_US / 1000 + 5000));
    set_flags(&f, 1, TG_NODE_EJECTED);
    for (int i = 0; i < 6; i++)
        ASSERT(pick_fresh(&f) != 1); /* ejected: skipped */
    atomic_store(&n->health.eject_until, (long long)(NOW_US / 1000 - 1));
    ASSERT_EQ(1, pick(&f, &p)); /* the time is up: the next request is its trial */
    ASSERT(p.trial);
    for (int i = 0; i < 6; i++)
        ASSERT(pick_fresh(&f) != 1); /* one trial at a time */
    tg_node_report(f.svc, n, true, true, NOW_US, NULL);
    ASSERT_EQ(0, atomic_load(&n->health.flags)); /* the trial succeeded: back */
    teardown(&f);
}

TEST(test_no_usable_node_and_panic)
{
    struct fixture f;

    if (setup(&f, THREE_NODES) != 0) {
        UNIT_FAIL("setup");
        return;
    }
    for (int i = 0; i < 3; i++)
        set_flags(&f, i, TG_NODE_DOWN);
    ASSERT_EQ(-1, pick_fresh(&f));
    teardown(&f);
    if (setup(&f, "    health: { panic: true }\n" THREE_NODES) != 0) {
        UNIT_FAIL("setup");
        return;
    }
    for (int i = 0; i < 3; i++)
        set_flags(&f, i, TG_NODE_DOWN);
    ASSERT(pick_fresh(&f) >= 0); /* panic: all nodes are candidates */
    teardown(&f);
}

TEST(test_p2c_avoids_the_slow_node)
{
    struct fixture f;
    int count[3] = {0};

    if (setup(&f, THREE_NODES) != 0) {
        UNIT_FAIL("setup");
        return;
    }
    for (int i = 0; i < 3; i++) {
        struct tg_node_worker *nw = &f.svc->members[i].node->w[0];

        nw->ewma_us = i == 2 ? 40000 : 2000; /* node 2 is 20 times slower */
        nw->ewma_at = NOW_US;
    }
    for (int i = 0; i < 3000; i++)
        count[pick_fresh(&f)]++;
    /* the slow node wins only when drawn twice, which p2c does not do: never */
    ASSERT_EQ(0, count[2]);
    ASSERT(count[0] > 1200 && count[1] > 1200);
    /* silence decays every EWMA alike: the slow node stays the slowest */
    for (int i = 0; i < 3; i++)
        f.svc->members[i].node->w[0].ewma_at = NOW_US - 1300000;
    count[2] = 0;
    for (int i = 0; i < 300; i++)
        count[pick_fresh(&f)]++;
    ASSERT_EQ(0, count[2]); /* all decayed alike: still the slowest */
    f.svc->members[0].node->w[0].ewma_at = NOW_US;
    f.svc->members[1].node->w[0].ewma_at = NOW_US;
    for (int i = 0; i < 300; i++)
        count[pick_fresh(&f)]++;
    /* but unpicked for 1.3 s while the others kept answering, its 40 ms has halved five times
     * to 1.25 ms, below their 2 ms: it is tried again, and its next answer tells */
    ASSERT(count[2] > 0);
    teardown(&f);
}

TEST(test_least_outstanding)
{
    struct fixture f;

    if (setup(&f, "    balance: least_outstanding\n" THREE_NODES) != 0) {
        UNIT_FAIL("setup");
        return;
    }
    f.svc->members[0].node->w[0].in_flight = 3;
    f.svc->members[1].node->w[0].in_flight = 1;
    f.svc->members[2].node->w[0].in_flight = 2;
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(1, pick_fresh(&f));
    for (int i = 0; i < 3; i++)
        f.svc->members[i].node->w[0].in_flight = 0;
    teardown(&f);
}

TEST(test_consistent_hash_is_stable_and_bounded)
{
    struct fixture f;
    int first[200], count[3] = {0};

    if (setup(&f, "    balance: consistent_hash\n" THREE_NODES) != 0) {
        UNIT_FAIL("setup");
        return;
    }
    for (int k = 0; k < 200; k++) {
        struct tg_pick p = {.key = (uint64_t)k * 0x9e3779b97f4a7c15ull};

        first[k] = pick(&f, &p);
        count[first[k]]++;
        for (int again = 0; again < 3; again++) {
            struct tg_pick q = {.key = p.key};
            ASSERT_EQ(first[k], pick(&f, &q));
        }
    }
    for (int i = 0; i < 3; i++)
        ASSERT(count[i] > 200 / 6); /* spread over the ring */
    /* node 1 goes down: only its keys move */
    set_flags(&f, 1, TG_NODE_DOWN);
    for (int k = 0; k < 200; k++) {
        struct tg_pick p = {.key = (uint64_t)k * 0x9e3779b97f4a7c15ull};
        int now = pick(&f, &p);

        ASSERT(now != 1);
        if (first[k] != 1)
            ASSERT_EQ(first[k], now);
    }
    set_flags(&f, 1, 0);
    /* bounded load: a key's node holding far more than its share is passed over */
    {
        struct tg_pick p = {.key = 42};
        int home = pick(&f, &p);
        struct tg_pick q = {.key = 42};

        f.svc->members[home].node->w[0].in_flight = 10;
        ASSERT(pick(&f, &q) != home);
        f.svc->members[home].node->w[0].in_flight = 0;
    }
    teardown(&f);
}

TEST(test_ejection_respects_max_percent)
{
    struct fixture f;
    struct tg_node *a, *b;

    if (setup(&f, "    health: { passive: { consecutive_failures: 3, max_ejection_percent: 50 } }\n"
                  "    nodes:\n"
                  "      - { url: http://10.0.0.1:80 }\n"
                  "      - { url: http://10.0.0.2:80 }\n") != 0) {
        UNIT_FAIL("setup");
        return;
    }
    a = f.svc->members[0].node;
    b = f.svc->members[1].node;
    for (int i = 0; i < 2; i++)
        tg_node_report(f.svc, a, false, false, NOW_US, "reset");
    ASSERT_EQ(0, atomic_load(&a->health.flags));
    tg_node_report(f.svc, a, true, false, NOW_US, NULL); /* a success breaks the run */
    for (int i = 0; i < 3; i++)
        tg_node_report(f.svc, a, false, false, NOW_US, "reset");
    ASSERT_EQ(TG_NODE_EJECTED, atomic_load(&a->health.flags));
    ASSERT_EQ(1, atomic_load(&a->health.ejections));
    ASSERT_EQ((long long)(NOW_US / 1000 + 30000), atomic_load(&a->health.eject_until));
    for (int i = 0; i < 5; i++)
        tg_node_report(f.svc, b, false, false, NOW_US, "reset");
    ASSERT_EQ(0, atomic_load(&b->health.flags)); /* 2 of 2 would be 100% > 50% */
    /* a failed trial ejects again, for twice as long */
    tg_node_report(f.svc, a, false, true, NOW_US + 31000000, "reset");
    ASSERT_EQ((long long)((NOW_US + 31000000) / 1000 + 60000), atomic_load(&a->health.eject_until));
    teardown(&f);
}

int main(void)
{
    RUN(test_round_robin_is_smooth);
    RUN(test_tiers_tried_and_drain);
    RUN(test_connection_limit_spills_to_the_next_tier);
    RUN(test_ejected_node_gets_one_trial);
    RUN(test_no_usable_node_and_panic);
    RUN(test_p2c_avoids_the_slow_node);
    RUN(test_least_outstanding);
    RUN(test_consistent_hash_is_stable_and_bounded);
    RUN(test_ejection_respects_max_percent);
    return unit_report();
}
