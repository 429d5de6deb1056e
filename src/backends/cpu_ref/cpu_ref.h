/* Internals shared by the reference backend's files. cpu_ref is the oracle every other backend
 * is tested against: plain loops over NCHW f32 data, OpenMP across independent work, double
 * accumulators for reductions. Clarity wins over speed here. */
#ifndef BEAMLET_CPU_REF_H
#define BEAMLET_CPU_REF_H

#include "tensor/backend.h"

/* Per-handle state: one scratch buffer that grows to the largest request and is then reused,
 * so steady-state steps do not allocate. */
typedef struct cpu_ref_ctx {
    float *scratch;
    size_t scratch_floats;
} cpu_ref_ctx;

/* Returns scratch space for `floats` floats (contents undefined), or NULL with the error set. */
float *cpu_ref_scratch(bl_device *dev, size_t floats);

/* C (M,N) = alpha * op(A) op(B) + beta * C, row-major; op(A) is (M,K), op(B) is (K,N).
 * Serial: callers parallelize around it. */
void cpu_ref_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                  int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* The ops, cpu_ref_conv2d_forward and the rest (one file per family: conv.c, batchnorm.c, ...). */
BL_BACKEND_DECLARE_OPS(cpu_ref)

#endif
