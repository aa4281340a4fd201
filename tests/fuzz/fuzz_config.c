/*
 * Fuzzes the configuration loader: YAML parsing, ${VAR} expansion, every key parser, the
 * cross-checks and the graph writer. Any input must give either a snapshot or errors, each of
 * the form "FILE:LINE:COL: message", and never crash or leak.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tg_config_errors errs = {0};
    struct tg_config *cf;

    /* A fixed environment, so inputs that use ${VAR} behave the same on every run. */
    setenv("TG_FUZZ_VAR", "10.0.0.1", 1);
    unsetenv("TG_FUZZ_UNSET");
    cf = tg_config_load_mem("fuzz.yaml", (const char *)data, size, &errs);
    if (cf != NULL) {
        FILE *out = fopen("/dev/null", "w");

        if (errs.num != 0)
            abort();
        if (out != NULL) {
            tg_config_graph(cf, out);
            fclose(out);
        }
        tg_config_drop(tg_config_take(cf));
        tg_config_drop(cf);
    } else {
        if (errs.num == 0)
            abort();
        for (size_t i = 0; i < errs.num; i++)
            if (strncmp(errs.msgs[i], "fuzz.yaml:", 10) != 0)
                abort();
    }
    tg_config_errors_dispose(&errs);
    return 0;
}
