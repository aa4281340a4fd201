/*
 * ${VAR} and ${VAR:-default} expansion of configuration values (DESIGN §4), so secrets can come
 * from the environment (Kubernetes Secrets) instead of the file.
 */
#ifndef TG_CONFIG_ENV_H
#define TG_CONFIG_ENV_H

#include <stddef.h>

#include "config/arena.h"
#include "core/str.h"

/*
 * Expands in into *out (allocated from a, NUL-terminated):
 *   ${VAR}          the value of VAR; an error when VAR is not set
 *   ${VAR:-default} the value of VAR, or default when VAR is unset or empty (as in sh)
 *   $$              a literal '$'
 * Any other '$' is kept as it is. VAR is [A-Za-z_][A-Za-z0-9_]*; default runs to the first '}'.
 * Returns 1 when something was expanded, 0 when in had nothing to expand (*out = in), or -1
 * with a reason in err and *err_off set to the byte offset of the offending '$'.
 */
int tg_env_expand(struct tg_conf_arena *a, struct tg_str in, struct tg_str *out, char *err,
                  size_t errlen, size_t *err_off);

#endif
