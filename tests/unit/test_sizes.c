/*
 * Sizes of the hot structures, with budgets. An idle keep-alive client costs one struct tg_conn
 * (its buffer and transaction are released while idle), and the budget is 6 KiB per idle
 * connection including the kernel's share of the process, so these must stay small. A failure
 * here means a field was added to a hot struct: make sure it is worth it, then raise the budget.
 */
#include "proxy/proxy.h"
#include "unit.h"

#define BUDGET(type, max)                                                                          \
    do {                                                                                           \
        printf("%-22s %4zu bytes (budget %d)\n", #type, sizeof(type), (max));                      \
        if (sizeof(type) > (max))                                                                  \
            UNIT_FAIL("%s is %zu bytes, over its budget of %d", #type, sizeof(type), (max));       \
    } while (0)

TEST(test_hot_struct_sizes)
{
    BUDGET(struct tg_conn, 256);
    BUDGET(struct tg_upconn, 192);
    /* a transaction exists only while its request is in flight; issue 4 added the attempt
     * state (nodes tried, retry and hedge timer, queue links, hedges): 904 bytes */
    BUDGET(struct tg_txn, 960);
    BUDGET(struct tg_http_header, 40);
    BUDGET(struct tg_timer, 32);
    BUDGET(struct tg_sock, 32);
}

int main(void)
{
    RUN(test_hot_struct_sizes);
    return unit_report();
}
