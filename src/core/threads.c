/* The compute-thread budget: how many OpenMP threads each worker's ops may use, so that workers
 * sharing a machine never ask for more threads than it has cores. oneDNN's kernels and our own
 * parallel loops synchronise their threads with spin barriers; oversubscribed (2 workers x 2
 * threads on 2 cores) a barrier waits for a thread that is not running, and a step that takes
 * milliseconds takes seconds. */
#include "beamlet/core.h"

#include <omp.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

int bl_cpu_cores(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* OMP_NUM_THREADS's first level ("4" or "4,2"), or 0 when unset or not a count. */
static int omp_env_threads(void) {
    const char *v = getenv("OMP_NUM_THREADS");
    if (!v || !*v) return 0;
    char *end;
    long n = strtol(v, &end, 10);
    if (end == v || (*end && *end != ',') || n < 1 || n > 1 << 16) return 0;
    return (int)n;
}

int bl_thread_budget(int cores, int workers, int requested) {
    if (requested > 0) return requested;
    if (cores < 1) cores = 1;
    if (workers < 1) workers = 1;
    int share = cores / workers;
    if (share < 1) share = 1;
    int cap = omp_env_threads();
    return cap > 0 && cap < share ? cap : share;
}

void bl_compute_threads_set(int n) { omp_set_num_threads(n > 0 ? n : 1); }

int bl_compute_threads(void) { return omp_get_max_threads(); }
