/* beamlet CUDA extras: what only a GPU device has, for the model layer and benchmarks.
 *
 * - Graphs: a whole training or inference step is recorded once from the device's stream and
 *   replayed, so a step costs one launch instead of hundreds. Recording works because every op
 *   of the CUDA backend enqueues on that one stream and neither allocates nor waits for the
 *   host inside a step; run one step eagerly first, so that algorithm searches and workspace
 *   growth happen outside the recording.
 * - Optimizer hyperparameters change every step (learning-rate schedules, AdamW's step count),
 *   while a recorded graph would replay the values seen at capture: bl_cuda_graph_set_sgd and
 *   bl_cuda_graph_set_adamw give the recorded updates new values for the next launches.
 * - Input uploads on a second stream from pinned host memory, overlapped with compute.
 *
 * These functions exist only in builds with the CUDA backend, where BEAMLET_HAVE_CUDA is defined
 * (the library exports it to its users); guard calls with #ifdef BEAMLET_HAVE_CUDA. Given a
 * device that is not a CUDA device they fail with BL_ERR_INVALID_ARG. */
#ifndef BEAMLET_CUDA_H
#define BEAMLET_CUDA_H

#include "beamlet/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bl_cuda_graph bl_cuda_graph;

/* Starts recording the ops issued on `dev` (which must be a CUDA device). Nothing runs until
 * the graph is launched. Ops that would allocate or synchronize fail while recording. */
bl_status bl_cuda_graph_begin(bl_device *dev);
/* Stops recording and instantiates the graph. On failure the recording is discarded. */
bl_status bl_cuda_graph_end(bl_device *dev, bl_cuda_graph **graph);
/* Enqueues one replay on the device's stream; returns without waiting for it. */
bl_status bl_cuda_graph_launch(bl_cuda_graph *graph);
void bl_cuda_graph_free(bl_cuda_graph *graph);
/* Number of SGD / AdamW updates recorded in the graph. */
int bl_cuda_graph_optimizer_count(const bl_cuda_graph *graph);
/* New hyperparameters for recorded optimizer update `index` (in recording order; -1 for all)
 * from the next launch on. Launches already enqueued keep the values they had. */
bl_status bl_cuda_graph_set_sgd(bl_cuda_graph *graph, int index, const bl_sgd_params *p);
bl_status bl_cuda_graph_set_adamw(bl_cuda_graph *graph, int index, const bl_adamw_params *p);

/* dst = src with its elements converted between f32 and bf16 (round to nearest even), on the
 * device's stream, recordable in a graph: the f32 master weights' bf16 copy for a mixed-
 * precision step, or bf16 gradients widened for the optimizer. Same shape; 4-D tensors also
 * the same layout. (A stopgap until the op table has a conversion op.) */
bl_status bl_cuda_convert(bl_device *dev, const bl_tensor *src, bl_tensor *dst);

/* Page-locked host memory, which uploads need to run asynchronously. */
bl_status bl_cuda_host_alloc(size_t bytes, void **ptr);
void bl_cuda_host_free(void *ptr);
/* Copies `bytes` from pinned host memory `src` to device memory `dst` on the device's copy
 * stream; ops issued afterwards on the device wait for it, ops issued before do not, so an
 * upload of the next batch overlaps the current step. `src` must stay unchanged until
 * bl_cuda_upload_wait returns. */
bl_status bl_cuda_upload_async(bl_device *dev, void *dst, const void *src, size_t bytes);
/* Waits until the last upload has finished reading host memory. */
bl_status bl_cuda_upload_wait(bl_device *dev);

/* Convolution algorithm cache of a device handle: plans held, lookups that found a plan and
 * lookups that had to choose one (each choice happens once per shape, dtype and layout). */
typedef struct bl_cuda_plan_stats {
    int plans, hits, misses;
    size_t workspace_bytes;
} bl_cuda_plan_stats;
bl_status bl_cuda_plan_stats_get(bl_device *dev, bl_cuda_plan_stats *out);

/* Versions for reports: CUDA runtime and driver (e.g. 13000), cuDNN (e.g. 91900), cuBLAS. */
typedef struct bl_cuda_versions {
    int runtime, driver, cudnn, cublas;
} bl_cuda_versions;
bl_status bl_cuda_versions_get(bl_cuda_versions *out);

#ifdef __cplusplus
}
#endif
#endif
