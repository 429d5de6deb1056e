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

bl_status cpu_ref_conv2d_forward(bl_device *, const bl_conv2d_params *, const bl_tensor *x,
                                 const bl_tensor *w, const bl_tensor *bias, const bl_tensor *residual,
                                 bool relu, bl_tensor *y);
bl_status cpu_ref_conv2d_backward_data(bl_device *, const bl_conv2d_params *, const bl_tensor *dy,
                                       const bl_tensor *w, bl_tensor *dx);
bl_status cpu_ref_conv2d_backward_filter(bl_device *, const bl_conv2d_params *, const bl_tensor *x,
                                         const bl_tensor *dy, bl_tensor *dw);
bl_status cpu_ref_batchnorm_forward_train(bl_device *, const bl_batchnorm_params *, const bl_tensor *x,
                                          const bl_tensor *gamma, const bl_tensor *beta,
                                          const bl_tensor *residual, bool relu, bl_tensor *running_mean,
                                          bl_tensor *running_var, bl_tensor *save_mean,
                                          bl_tensor *save_invstd, bl_tensor *y);
bl_status cpu_ref_batchnorm_forward_eval(bl_device *, const bl_batchnorm_params *, const bl_tensor *x,
                                         const bl_tensor *gamma, const bl_tensor *beta,
                                         const bl_tensor *residual, bool relu, const bl_tensor *running_mean,
                                         const bl_tensor *running_var, bl_tensor *y);
bl_status cpu_ref_batchnorm_backward(bl_device *, const bl_tensor *dy, const bl_tensor *x, const bl_tensor *y,
                                     bool relu, const bl_tensor *gamma, const bl_tensor *save_mean,
                                     const bl_tensor *save_invstd, bl_tensor *dx, bl_tensor *dgamma,
                                     bl_tensor *dbeta, bl_tensor *dresidual);
bl_status cpu_ref_relu_forward(bl_device *, const bl_tensor *x, bl_tensor *y);
bl_status cpu_ref_relu_backward(bl_device *, const bl_tensor *dy, const bl_tensor *y, bl_tensor *dx);
bl_status cpu_ref_add(bl_device *, const bl_tensor *a, const bl_tensor *b, bl_tensor *y);
bl_status cpu_ref_maxpool_forward(bl_device *, const bl_pool_params *, const bl_tensor *x, bl_tensor *y);
bl_status cpu_ref_maxpool_backward(bl_device *, const bl_pool_params *, const bl_tensor *x,
                                   const bl_tensor *dy, bl_tensor *dx);
bl_status cpu_ref_global_avgpool_forward(bl_device *, const bl_tensor *x, bl_tensor *y);
bl_status cpu_ref_global_avgpool_backward(bl_device *, const bl_tensor *dy, bl_tensor *dx);
bl_status cpu_ref_linear_forward(bl_device *, const bl_tensor *x, const bl_tensor *w, const bl_tensor *b,
                                 bl_tensor *y);
bl_status cpu_ref_linear_backward(bl_device *, const bl_tensor *dy, const bl_tensor *x, const bl_tensor *w,
                                  bl_tensor *dx, bl_tensor *dw, bl_tensor *db);
bl_status cpu_ref_softmax_cross_entropy(bl_device *, const bl_tensor *logits, const bl_tensor *labels,
                                        float label_smoothing, bl_tensor *loss, bl_tensor *dlogits);
bl_status cpu_ref_sgd_update(bl_device *, const bl_sgd_params *, bl_tensor *param, const bl_tensor *grad,
                             bl_tensor *momentum_buf);
bl_status cpu_ref_adamw_update(bl_device *, const bl_adamw_params *, bl_tensor *param, const bl_tensor *grad,
                               bl_tensor *exp_avg, bl_tensor *exp_avg_sq);

#endif
