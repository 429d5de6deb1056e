/* Helpers shared by the CUDA backend's kernels: loads and stores that convert between the
 * storage type (f32 or bf16) and the f32 the kernels compute in, and launch sizing. */
#ifndef BEAMLET_CUDA_KERNEL_UTIL_CUH
#define BEAMLET_CUDA_KERNEL_UTIL_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "backends/cuda/cuda_internal.h"

__device__ __forceinline__ float ld(const float *p) { return *p; }
__device__ __forceinline__ float ld(const __nv_bfloat16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ void st(float *p, float v) { *p = v; }
/* Round to nearest even, as bl_f32_to_bf16 on the host. */
__device__ __forceinline__ void st(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }

/* Blocks for a grid-stride loop over n items: enough to fill the GPU, no more than needed. */
static inline unsigned grid_for(int64_t n, int threads, int sm_count) {
    int64_t blocks = (n + threads - 1) / threads;
    int64_t cap = (int64_t)(sm_count > 0 ? sm_count : 132) * 8;
    if (blocks > cap) blocks = cap;
    return (unsigned)(blocks < 1 ? 1 : blocks);
}

/* Runs the statements with T naming the storage type of `e` (one instantiation per type). */
#define DISPATCH_ELEM(e, ...)                                                                                \
    do {                                                                                                     \
        if ((e) == CUDA_ELEM_BF16) {                                                                         \
            typedef __nv_bfloat16 T;                                                                         \
            __VA_ARGS__;                                                                                     \
        } else {                                                                                             \
            typedef float T;                                                                                 \
            __VA_ARGS__;                                                                                     \
        }                                                                                                    \
    } while (0)

#endif
