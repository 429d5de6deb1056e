/* beamlet cpu: knobs of the CPU backends.
 *
 * Both CPU backends (cpu_ref and the oneDNN "cpu") run on one OpenMP thread pool. The thread
 * count defaults to all cores; BEAMLET_NUM_THREADS=N (read when a "cpu" device is opened) or
 * bl_cpu_set_num_threads pins it. These functions exist when the build has the oneDNN backend
 * (BEAMLET_HAVE_ONEDNN is defined for every target linking beamlet). */
#ifndef BEAMLET_CPU_H
#define BEAMLET_CPU_H

#include "beamlet/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef BEAMLET_HAVE_ONEDNN
/* Threads for CPU ops issued from the calling thread afterwards; 0 restores all cores. */
bl_status bl_cpu_set_num_threads(int n);
int bl_cpu_get_num_threads(void);
/* oneDNN primitives this "cpu" handle has created so far (-1 for other backends): constant
 * once every shape has been seen, which is how tests check that steps create nothing. */
int64_t bl_cpu_primitives_created(const bl_device *dev);
/* Weight reorders into oneDNN's blocked formats executed so far (-1 for other backends). */
int64_t bl_cpu_weight_reorders(const bl_device *dev);
#endif

#ifdef __cplusplus
}
#endif
#endif
