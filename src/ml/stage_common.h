/* What the learning path's stages (src/ml/stage_*.c) share. */
#ifndef BEAMLET_ML_STAGE_COMMON_H
#define BEAMLET_ML_STAGE_COMMON_H

#include "beamlet/stages.h"

/* The accelerators each worker has: those of the stage's device family (`where`) when it is one,
 * else those "auto" would use, else none; GPUs or TPU chips. Each worker binds one of them (its
 * thread index or node-local rank modulo the count), so a TPU host's workers spread over its
 * chips, one chip per worker (the proposal's topology:1x1). */
void stage_worker_accelerators(const bl_device_choice *where, bl_accel_kind *kind, int *count);

/* The stage's pipeline from its options, told which accelerators each worker has
 * (stage_worker_accelerators) unless --worker_accelerators was given. */
bl_status stage_pipeline(const bl_options *opts, const bl_device_choice *where, bl_pipeline **out);

/* Puts an accelerator hint on `step` when the stage's device is an accelerator, so the runner
 * places the step on a worker that has one (stage 2's concept, reused by stages 3 and 4):
 * "accelerator=type:tpu;count:1;topology:1x1" for a TPU, "type:<family>;count:1" for a GPU. */
bl_status stage_hint_accelerator(bl_pipeline *p, const char *step, const bl_device_choice *where);

/* Where a stage's device request lands (its --device and --allow_cpu_fallback), decided before
 * anything is built: an absent accelerator stops the stage here. */
bl_status stage_resolve(const char *device, bool allow_cpu_fallback, bl_device_choice *out);

/* dst = the value of --<flag> when given non-empty, else "<dir>/<name>". */
bl_status stage_path(char *dst, size_t size, const bl_options *opts, const char *flag, const char *dir,
                     const char *name);

/* dst = "<dir>/<name>", refusing a path that does not fit instead of cutting it. */
bl_status stage_join(char *dst, size_t size, const char *dir, const char *name);

#endif
