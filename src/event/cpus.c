/*
 * How many CPUs this process may use: the affinity mask, further limited by a cgroup v2 CPU
 * quota (cpu.max), which is how Kubernetes expresses a pod's CPU limit.
 */
#include "event/cpus.h"

#include <sched.h>
#include <stdio.h>
#include <string.h>

static unsigned tg__cgroup_quota_cpus(const char *dir)
{
    char path[512], line[128];
    FILE *f;
    long long quota, period;
    unsigned cpus = 0;

    snprintf(path, sizeof(path), "%s/cpu.max", dir);
    f = fopen(path, "r");
    if (f == NULL)
        return 0;
    if (fgets(line, sizeof(line), f) != NULL && strncmp(line, "max", 3) != 0 &&
        sscanf(line, "%lld %lld", &quota, &period) == 2 && quota > 0 && period > 0)
        cpus = (unsigned)((quota + period - 1) / period);
    fclose(f);
    return cpus;
}

unsigned tg_cpus_usable(void)
{
    cpu_set_t set;
    unsigned cpus = 1, quota = 0;
    char line[512];
    FILE *f;

    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        cpus = (unsigned)CPU_COUNT(&set);
    /* cgroup v2: "0::/path" in /proc/self/cgroup; the files live under /sys/fs/cgroup/path. */
    f = fopen("/proc/self/cgroup", "r");
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        char dir[1024];
        size_t n;

        if (strncmp(line, "0::", 3) != 0)
            continue;
        n = strcspn(line + 3, "\n");
        line[3 + n] = '\0';
        snprintf(dir, sizeof(dir), "/sys/fs/cgroup%s", line + 3);
        quota = tg__cgroup_quota_cpus(dir);
        if (quota == 0)
            quota = tg__cgroup_quota_cpus("/sys/fs/cgroup");
    }
    if (f != NULL)
        fclose(f);
    if (quota > 0 && quota < cpus)
        cpus = quota;
    return cpus ? cpus : 1;
}
