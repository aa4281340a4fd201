#ifndef TG_CPUS_H
#define TG_CPUS_H

/* CPUs this process may use: the affinity mask, capped by a cgroup v2 cpu.max quota (rounded
 * up). Always at least 1. */
unsigned tg_cpus_usable(void);

#endif
