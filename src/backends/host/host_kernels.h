/* Loops shared by the backends whose tensors live in plain host memory (cpu_ref, cpu_onednn).
 * They take raw arrays, not devices, so no backend reaches into another's internals: each
 * backend's op calls the shared loop and does its own bookkeeping around it. */
#ifndef BEAMLET_BACKENDS_HOST_KERNELS_H
#define BEAMLET_BACKENDS_HOST_KERNELS_H

#include "beamlet/core.h"

/* Mean softmax cross-entropy with label smoothing over logits (N, C), computed with
 * log-sum-exp in double so large logits neither overflow nor lose the small terms. labels (N)
 * must lie in [0, C) (else BL_ERR_INVALID_ARG naming the example); *loss gets the mean, and
 * dlogits (N, C), unless NULL, its gradient. */
bl_status bl_host_softmax_cross_entropy(const float *logits, const int32_t *labels, int64_t N, int64_t C,
                                        float label_smoothing, float *loss, float *dlogits);

#endif
