/* Internals of the backends layer: each backend's bl_backend, and the registry that lists the
 * ones this build compiled. A new backend adds its accessor here and its claims in
 * registry.c. */
#ifndef BEAMLET_BACKENDS_H
#define BEAMLET_BACKENDS_H

#include "tensor/backend.h"

const bl_backend *bl_backend_cpu_ref(void);
#ifdef BEAMLET_HAVE_ONEDNN
const bl_backend *bl_backend_onednn(void);
#endif
#ifdef BEAMLET_HAVE_CUDA
const bl_backend *bl_backend_cuda(void);
#endif
#ifdef BEAMLET_HAVE_XLA
const bl_backend *bl_backend_xla_cpu(void);
const bl_backend *bl_backend_xla_tpu(void);
const bl_backend *bl_backend_xla_cuda(void);
#endif

/* The backends of this build and the device names they claim, for the resolver. */
const bl_backend_registry *bl_backends(void);

#endif
