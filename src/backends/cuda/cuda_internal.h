/* Internals shared by the CUDA backend's files: the per-handle context, checked-call macros
 * that turn every CUDA/cuDNN/cuBLAS failure into a bl_status naming the call, and the
 * extern "C" launchers of the kernels in the .cu files.
 *
 * Every op enqueues work on the handle's one stream and returns without waiting, so a whole
 * step can be captured as a CUDA graph. Nothing here allocates inside a step: the workspace
 * grows only when the stream is not capturing (the first, eager step of a model), and an op
 * that would need more while capturing fails with a message saying so. */
#ifndef BEAMLET_CUDA_INTERNAL_H
#define BEAMLET_CUDA_INTERNAL_H

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include "tensor/backend.h"
/* cuDNN and cuBLAS are loaded at run time (cuda_libs.h): in the C files their calls go
 * through pointers. The .cu kernels, which include this header too, call neither. */
#ifndef __cplusplus
#include "backends/cuda/cuda_libs_calls.h"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* One cached convolution plan: descriptors and the chosen algorithm for one shape. */
typedef struct cuda_conv_plan cuda_conv_plan;

/* An optimizer update recorded into a graph: the node and its arguments, so that the node can
 * be given new hyperparameters later (beamlet/cuda.h). */
#define CUDA_MAX_RECORDED_UPDATES 32
typedef struct cuda_opt_record {
    int kind; /* 0 SGD, 1 AdamW */
    cudaGraphNode_t node;
    float *param;
    const float *grad;
    float *state1, *state2;
    int64_t n;
} cuda_opt_record;

typedef struct cuda_ctx {
    int index;
    cudaStream_t stream;
    cudaStream_t copy_stream; /* input uploads overlapped with compute (bl_cuda_upload_async) */
    cudaEvent_t copy_done;
    cudnnHandle_t cudnn;
    cublasHandle_t cublas;
    void *cublas_workspace; /* fixed, so cuBLAS never allocates (graph capture needs this) */
    size_t cublas_workspace_bytes;
    /* Shared scratch for cuDNN algorithms and reductions. Ops run one after another on one
     * stream, so they can all use the same bytes. Grown only outside capture. */
    void *workspace;
    size_t workspace_bytes;
    size_t workspace_limit; /* the most an algorithm search may plan for */
    cuda_conv_plan *plans;  /* algorithm cache: a linked list, searched by key */
    int plan_count, plan_hits, plan_misses;
    int sm_count;
    cuda_opt_record recorded[CUDA_MAX_RECORDED_UPDATES]; /* during a recording */
    int nrecorded;
} cuda_ctx;

/* ---- checked calls: each returns BL_ERR_DEVICE naming the failed call ------------------- */

bl_status cuda_fail_rt(cudaError_t e, const char *call, const char *file, int line);
bl_status cuda_fail_dnn(cudnnStatus_t e, const char *call, const char *file, int line);
bl_status cuda_fail_blas(cublasStatus_t e, const char *call, const char *file, int line);

#define CU_TRY(call)                                                                                         \
    do {                                                                                                     \
        cudaError_t cu_e_ = (call);                                                                          \
        if (cu_e_ != cudaSuccess) return cuda_fail_rt(cu_e_, #call, __FILE__, __LINE__);                     \
    } while (0)
#define DNN_TRY(call)                                                                                        \
    do {                                                                                                     \
        cudnnStatus_t dnn_e_ = (call);                                                                       \
        if (dnn_e_ != CUDNN_STATUS_SUCCESS) return cuda_fail_dnn(dnn_e_, #call, __FILE__, __LINE__);         \
    } while (0)
#define BLAS_TRY(call)                                                                                       \
    do {                                                                                                     \
        cublasStatus_t blas_e_ = (call);                                                                     \
        if (blas_e_ != CUBLAS_STATUS_SUCCESS) return cuda_fail_blas(blas_e_, #call, __FILE__, __LINE__);     \
    } while (0)

static inline cuda_ctx *cuda_ctx_of(const bl_device *dev) { return (cuda_ctx *)dev->ctx; }

/* Whether the handle's stream is being captured into a graph right now. */
bool cuda_capturing(cuda_ctx *c);
/* Makes the workspace at least `bytes` long (never shrinks). Growing waits for the stream and
 * reallocates, so while capturing it fails instead, naming what was needed. */
bl_status cuda_workspace(cuda_ctx *c, size_t bytes, void **ptr);

/* While recording: remembers the optimizer kernel just enqueued as the stream's last node. */
bl_status cuda_record_update(cuda_ctx *c, int kind, float *param, const float *grad, float *state1,
                             float *state2, int64_t n);

/* Element types the kernels see: 0 f32, 1 bf16. Parameters and statistics are always f32. */
typedef enum cuda_elem {
    CUDA_ELEM_F32 = 0,
    CUDA_ELEM_BF16 = 1
} cuda_elem;
static inline cuda_elem cuda_elem_of(const bl_tensor *t) {
    return t->dtype == BL_BF16 ? CUDA_ELEM_BF16 : CUDA_ELEM_F32;
}

/* A 4-D activation as the kernels address it: logical (N, C, H, W) with element strides. */
typedef struct cuda_t4 {
    void *data;
    int64_t n, c, h, w;
    int64_t sn, sc, sh, sw;
} cuda_t4;
cuda_t4 cuda_t4_of(const bl_tensor *t);

/* ---- kernel launchers (the .cu files); all enqueue on `s` and return the launch error --- */

/* Conv epilogue in place: y = act(y + bias[k] + residual). bias f32 or NULL. */
cudaError_t cuda_launch_bias_residual_relu(cudaStream_t s, cuda_elem e, cuda_t4 y, const float *bias,
                                           const void *residual, bool relu, int sm_count);
cudaError_t cuda_launch_relu_forward(cudaStream_t s, cuda_elem e, const void *x, void *y, int64_t n);
cudaError_t cuda_launch_relu_backward(cudaStream_t s, cuda_elem e, const void *dy, const void *y, void *dx,
                                      int64_t n);
cudaError_t cuda_launch_add(cudaStream_t s, cuda_elem e, const void *a, const void *b, void *y, int64_t n);
/* dst = src converted between f32 and bf16 (or copied), element by element in memory order. */
cudaError_t cuda_launch_convert(cudaStream_t s, cuda_elem from, cuda_elem to, const void *src, void *dst,
                                int64_t n);
/* Linear helpers: y (N,O) = broadcast of b (O, f32); db (O) f32 = column sums of dy (N,O). */
cudaError_t cuda_launch_broadcast_rows(cudaStream_t s, cuda_elem e, const float *b, void *y, int64_t rows,
                                       int64_t cols);
cudaError_t cuda_launch_column_sums(cudaStream_t s, cuda_elem e, const void *dy, float *db, int64_t rows,
                                    int64_t cols);

/* Batch norm. `workspace` holds cuda_bn_workspace_floats(C, N*H*W, sm_count) floats. */
size_t cuda_bn_workspace_floats(int64_t C, int64_t M, int sm_count);
cudaError_t cuda_launch_bn_forward_train(cudaStream_t s, cuda_elem e, cuda_t4 x, cuda_t4 y,
                                         const void *residual, bool relu, const float *gamma,
                                         const float *beta, float *running_mean, float *running_var,
                                         float *save_mean, float *save_invstd, float eps, float momentum,
                                         float *workspace, int sm_count);
cudaError_t cuda_launch_bn_forward_eval(cudaStream_t s, cuda_elem e, cuda_t4 x, cuda_t4 y,
                                        const void *residual, bool relu, const float *gamma,
                                        const float *beta, const float *running_mean,
                                        const float *running_var, float eps, float *workspace, int sm_count);
cudaError_t cuda_launch_bn_backward(cudaStream_t s, cuda_elem e, cuda_t4 dy, const void *x, const void *y,
                                    bool relu, const float *gamma, const float *save_mean,
                                    const float *save_invstd, void *dx, float *dgamma, float *dbeta,
                                    void *dresidual, float *workspace, int sm_count);

/* Pooling. x and dx share strides; y and dy share strides. */
cudaError_t cuda_launch_maxpool_forward(cudaStream_t s, cuda_elem e, cuda_t4 x, cuda_t4 y, int kernel,
                                        int stride, int pad);
cudaError_t cuda_launch_maxpool_backward(cudaStream_t s, cuda_elem e, cuda_t4 x, cuda_t4 dy, void *dx,
                                         int kernel, int stride, int pad);
cudaError_t cuda_launch_avgpool_forward(cudaStream_t s, cuda_elem e, cuda_t4 x, void *y);
cudaError_t cuda_launch_avgpool_backward(cudaStream_t s, cuda_elem e, const void *dy, cuda_t4 dx);

/* Softmax cross-entropy; `row_loss` is workspace for N floats. */
cudaError_t cuda_launch_softmax_xent(cudaStream_t s, const float *logits, const int32_t *labels, int64_t N,
                                     int64_t C, float smoothing, float *row_loss, float *loss,
                                     float *dlogits);

/* Optimizer hyperparameters passed by value, so a captured graph node can be given new ones
 * (bl_cuda_graph_set_sgd/adamw rewrite this argument of the node). */
typedef struct cuda_sgd_hyper {
    float lr, momentum, weight_decay;
    int nesterov;
} cuda_sgd_hyper;
typedef struct cuda_adamw_hyper {
    float step_size, bc2_sqrt, decay, beta1, beta2, eps;
} cuda_adamw_hyper;
cuda_adamw_hyper cuda_adamw_hyper_of(const bl_adamw_params *p);
cudaError_t cuda_launch_sgd(cudaStream_t s, cuda_sgd_hyper h, float *param, const float *grad,
                            float *momentum_buf, int64_t n, int sm_count);
cudaError_t cuda_launch_adamw(cudaStream_t s, cuda_adamw_hyper h, float *param, const float *grad,
                              float *exp_avg, float *exp_avg_sq, int64_t n, int sm_count);
/* The kernels' addresses, to find their nodes in a captured graph. */
const void *cuda_sgd_kernel(void);
const void *cuda_adamw_kernel(void);

/* ---- op entry points (conv.c, linear.c, ops.c) --------------------------------------- */

BL_BACKEND_DECLARE_OPS(cuda)

/* Frees the convolution plans of a handle (conv.c). */
void cuda_conv_plans_free(cuda_ctx *c);

#ifdef __cplusplus
}
#endif
#endif
