/* beamlet XLA extras: what only the XLA backend (PJRT plugins: xla:cpu, tpu, xla:cuda) has, for
 * the tests and benchmarks.
 *
 * The backend compiles StableHLO programs (one per op and shape, or one per step between
 * bl_device_program_begin and _end) and caches them for the life of the process; these
 * counters say how often it compiled, how long that took, and what ran, so a benchmark can
 * report compile time apart from steady time and a test can check that a step of the same
 * shapes compiles once.
 *
 * These functions exist only in builds with the XLA backend, where BEAMLET_HAVE_XLA is defined;
 * guard calls with #ifdef BEAMLET_HAVE_XLA. The counters cover every XLA device of the process. */
#ifndef BEAMLET_XLA_H
#define BEAMLET_XLA_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bl_xla_stats {
    int64_t compiled;       /* programs compiled */
    int64_t cached;         /* programs found compiled in the cache */
    double compile_seconds; /* spent compiling */
    int64_t executions;     /* executions of compiled programs, whole programs included */
    int64_t whole_programs; /* executions of whole programs (bl_device_program_begin .. _end) */
} bl_xla_stats;

void bl_xla_stats_get(bl_xla_stats *out);

#ifdef __cplusplus
}
#endif
#endif
