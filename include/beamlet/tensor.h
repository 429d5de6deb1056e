/* beamlet tensors, devices and the op table.
 *
 * A tensor is a plain view: a data pointer on some device, a dtype, a logical shape and, for
 * 4-D tensors, a memory layout. Devices come from one registry (`bl_device_get`), each backed
 * by a backend (cpu_ref: plain C, the oracle; cpu: oneDNN; cuda: cuDNN/cuBLAS) that fills one
 * op table. Models call the bl_op_* functions below, which check shapes and devices once and
 * dispatch to the backend, so a model is written once and runs on every backend. Nothing here
 * knows about layers, models or pipelines. */
#ifndef BEAMLET_TENSOR_H
#define BEAMLET_TENSOR_H

#include "beamlet/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BL_MAX_DIMS 6

/* Memory order of a 4-D tensor whose logical shape is always (N, C, H, W) — or (K, C, R, S)
 * for convolution weights. NHWC stores the channel innermost (what tensor cores want). */
typedef enum bl_layout {
    BL_LAYOUT_NCHW = 0,
    BL_LAYOUT_NHWC
} bl_layout;

typedef enum bl_device_kind {
    BL_DEVICE_CPU = 0,
    BL_DEVICE_CUDA
} bl_device_kind;

typedef struct bl_device bl_device;

typedef struct bl_tensor {
    void *data; /* on `device`; not owned by the view */
    bl_device *device;
    bl_dtype dtype;
    bl_layout layout; /* meaningful for ndim == 4 */
    int ndim;
    int64_t shape[BL_MAX_DIMS];
} bl_tensor;

/* ---- devices ----------------------------------------------------------------------------- */

/* Opens a device by name:
 *   "auto"     BEAMLET_DEVICE if set, else "cuda" if a GPU is present, else "cpu"
 *   "cpu"      the fastest CPU backend built in (oneDNN, else cpu_ref)
 *   "cpu_ref"  the plain-C reference backend
 *   "cuda", "cuda:N"   an NVIDIA GPU
 *   "tpu"      refused: beamlet is built without PJRT support
 * Asking for a device that is not there is an error naming what is missing; nothing falls
 * back silently. Each call opens a new handle (own scratch memory, own stream): use one handle
 * from one thread at a time. */
bl_status bl_device_get(const char *name, bl_device **out);
void bl_device_release(bl_device *dev);
const char *bl_device_name(const bl_device *dev);         /* "cpu_ref", "cpu", "cuda:0" */
const char *bl_device_description(const bl_device *dev);  /* e.g. the GPU's model name */
const char *bl_device_backend_name(const bl_device *dev); /* "cpu_ref", "onednn", "cuda" */
bl_device_kind bl_device_get_kind(const bl_device *dev);
/* The layout the backend runs fastest on; models allocate activations in it. */
bl_layout bl_device_preferred_layout(const bl_device *dev);
/* Writes one line per available device into `buf` (for `beamlet devices`). */
bl_status bl_device_list(char *buf, size_t size);
int bl_cuda_device_count(void); /* 0 when built without CUDA or no GPU is present */

bl_status bl_device_alloc(bl_device *dev, size_t bytes, void **ptr);
void bl_device_free(bl_device *dev, void *ptr);
bl_status bl_device_synchronize(bl_device *dev);

/* ---- tensors ----------------------------------------------------------------------------- */

int64_t bl_tensor_numel(const bl_tensor *t);
size_t bl_tensor_nbytes(const bl_tensor *t);
/* A view over existing memory. */
bl_tensor bl_tensor_view(bl_device *dev, void *data, bl_dtype dtype, int ndim, const int64_t *shape);
bl_tensor bl_tensor_view4(bl_device *dev, void *data, bl_dtype dtype, bl_layout layout, int64_t n, int64_t c,
                          int64_t h, int64_t w);
/* Allocates device memory for a tensor; free with bl_tensor_release. */
bl_status bl_tensor_alloc(bl_device *dev, bl_dtype dtype, int ndim, const int64_t *shape, bl_tensor *out);
void bl_tensor_release(bl_tensor *t);
/* Copies between a tensor and host memory of the same dtype and element count. */
bl_status bl_tensor_copy_from_host(bl_tensor *dst, const void *src);
bl_status bl_tensor_copy_to_host(const bl_tensor *src, void *dst);
/* Copies host f32 (N,C,H,W) data into a 4-D device tensor of any dtype and layout. */
bl_status bl_tensor_upload_nchw_f32(bl_tensor *dst, const float *src);
/* Copies a 4-D or 2-D device tensor of any dtype and layout into host f32 in logical order. */
bl_status bl_tensor_download_f32(const bl_tensor *src, float *dst);
bl_status bl_tensor_zero(bl_tensor *t);
/* "f32[4,8,32,32] nhwc" */
void bl_tensor_describe(const bl_tensor *t, char *buf, size_t size);

/* ---- ops --------------------------------------------------------------------------------- */

typedef enum bl_op {
    BL_OP_CONV2D_FORWARD = 0,
    BL_OP_CONV2D_BACKWARD_DATA,
    BL_OP_CONV2D_BACKWARD_FILTER,
    BL_OP_BATCHNORM_FORWARD_TRAIN,
    BL_OP_BATCHNORM_FORWARD_EVAL,
    BL_OP_BATCHNORM_BACKWARD,
    BL_OP_RELU_FORWARD,
    BL_OP_RELU_BACKWARD,
    BL_OP_ADD,
    BL_OP_MAXPOOL_FORWARD,
    BL_OP_MAXPOOL_BACKWARD,
    BL_OP_GLOBAL_AVGPOOL_FORWARD,
    BL_OP_GLOBAL_AVGPOOL_BACKWARD,
    BL_OP_LINEAR_FORWARD,
    BL_OP_LINEAR_BACKWARD,
    BL_OP_SOFTMAX_CROSS_ENTROPY,
    BL_OP_SGD_UPDATE,
    BL_OP_ADAMW_UPDATE,
    BL_OP_COUNT
} bl_op;

const char *bl_op_name(bl_op op);
/* Whether the device's backend implements `op` for activations of `dtype`. */
bool bl_device_supports_op(const bl_device *dev, bl_op op, bl_dtype dtype);

typedef struct bl_conv2d_params {
    int stride_h, stride_w;
    int pad_h, pad_w;
} bl_conv2d_params;

/* y = act(conv(x, w) + bias + residual). x (N,C,H,W), w (K,C,R,S), bias (K) or NULL,
 * residual (N,K,P,Q) or NULL, y (N,K,P,Q). relu applies after the residual add. The epilogue
 * exists for inference with batch norm folded into the convolution. */
bl_status bl_op_conv2d_forward(bl_device *dev, const bl_conv2d_params *p, const bl_tensor *x,
                               const bl_tensor *w, const bl_tensor *bias, const bl_tensor *residual,
                               bool relu, bl_tensor *y);
/* dx = conv_transpose(dy, w). dy (N,K,P,Q), w (K,C,R,S), dx (N,C,H,W). */
bl_status bl_op_conv2d_backward_data(bl_device *dev, const bl_conv2d_params *p, const bl_tensor *dy,
                                     const bl_tensor *w, bl_tensor *dx);
/* dw = correlation of x and dy. x (N,C,H,W), dy (N,K,P,Q), dw (K,C,R,S), overwritten. */
bl_status bl_op_conv2d_backward_filter(bl_device *dev, const bl_conv2d_params *p, const bl_tensor *x,
                                       const bl_tensor *dy, bl_tensor *dw);

typedef struct bl_batchnorm_params {
    float eps;      /* 1e-5 as in PyTorch */
    float momentum; /* 0.1 as in PyTorch: running = (1-m) running + m batch */
} bl_batchnorm_params;

/* Training-mode batch norm with an optional residual add and ReLU:
 *   y = act(gamma * (x - mean_b) / sqrt(var_b + eps) + beta + residual)
 * with batch statistics over (N, H, W). Saves mean_b and 1/sqrt(var_b + eps) for backward and
 * updates the running statistics (running_var with the unbiased variance, as PyTorch does).
 * x, y, residual (N,C,H,W); gamma, beta, running_*, save_* (C) f32. */
bl_status bl_op_batchnorm_forward_train(bl_device *dev, const bl_batchnorm_params *p, const bl_tensor *x,
                                        const bl_tensor *gamma, const bl_tensor *beta,
                                        const bl_tensor *residual, bool relu, bl_tensor *running_mean,
                                        bl_tensor *running_var, bl_tensor *save_mean, bl_tensor *save_invstd,
                                        bl_tensor *y);
/* Eval-mode batch norm with the running statistics and the same epilogue. */
bl_status bl_op_batchnorm_forward_eval(bl_device *dev, const bl_batchnorm_params *p, const bl_tensor *x,
                                       const bl_tensor *gamma, const bl_tensor *beta,
                                       const bl_tensor *residual, bool relu, const bl_tensor *running_mean,
                                       const bl_tensor *running_var, bl_tensor *y);
/* Backward of the training-mode forward. `y` is the forward output (its sign masks the ReLU
 * when relu is set). Writes dx, dgamma, dbeta (overwritten) and, when not NULL, dresidual
 * (the gradient reaching the residual input). */
bl_status bl_op_batchnorm_backward(bl_device *dev, const bl_tensor *dy, const bl_tensor *x,
                                   const bl_tensor *y, bool relu, const bl_tensor *gamma,
                                   const bl_tensor *save_mean, const bl_tensor *save_invstd, bl_tensor *dx,
                                   bl_tensor *dgamma, bl_tensor *dbeta, bl_tensor *dresidual);

bl_status bl_op_relu_forward(bl_device *dev, const bl_tensor *x, bl_tensor *y);
/* dx = dy * (y > 0); y is the forward output. dx may alias dy. */
bl_status bl_op_relu_backward(bl_device *dev, const bl_tensor *dy, const bl_tensor *y, bl_tensor *dx);
/* y = a + b, same shape and layout; y may alias a or b. Also the residual add's backward
 * partner (gradients that meet at a fork are summed with it). */
bl_status bl_op_add(bl_device *dev, const bl_tensor *a, const bl_tensor *b, bl_tensor *y);

typedef struct bl_pool_params {
    int kernel, stride, pad;
} bl_pool_params;

/* Max pooling; padding counts as -inf. x (N,C,H,W), y (N,C,P,Q). */
bl_status bl_op_maxpool_forward(bl_device *dev, const bl_pool_params *p, const bl_tensor *x, bl_tensor *y);
/* Routes dy to the first maximum of each window (PyTorch's tie rule). */
bl_status bl_op_maxpool_backward(bl_device *dev, const bl_pool_params *p, const bl_tensor *x,
                                 const bl_tensor *dy, bl_tensor *dx);
/* x (N,C,H,W) -> y (N,C). */
bl_status bl_op_global_avgpool_forward(bl_device *dev, const bl_tensor *x, bl_tensor *y);
bl_status bl_op_global_avgpool_backward(bl_device *dev, const bl_tensor *dy, bl_tensor *dx);

/* y = x w^T + b. x (N,I), w (O,I), b (O) or NULL, y (N,O). */
bl_status bl_op_linear_forward(bl_device *dev, const bl_tensor *x, const bl_tensor *w, const bl_tensor *b,
                               bl_tensor *y);
/* dx (N,I) (may be NULL), dw (O,I), db (O) or NULL; all overwritten. */
bl_status bl_op_linear_backward(bl_device *dev, const bl_tensor *dy, const bl_tensor *x, const bl_tensor *w,
                                bl_tensor *dx, bl_tensor *dw, bl_tensor *db);

/* Mean softmax cross-entropy with label smoothing (PyTorch's definition):
 *   loss = mean_n [ (1-s) * -log p[n,label] + s * mean_c -log p[n,c] ]
 * logits (N,C) f32, labels (N) i32, loss (1) f32 on the device, dlogits (N,C) or NULL: the
 * gradient of the mean loss. */
bl_status bl_op_softmax_cross_entropy(bl_device *dev, const bl_tensor *logits, const bl_tensor *labels,
                                      float label_smoothing, bl_tensor *loss, bl_tensor *dlogits);

/* PyTorch's torch.optim.SGD over flat f32 buffers:
 *   g = grad + wd*p; buf = momentum*buf + g; g = nesterov ? g + momentum*buf : buf;
 *   p -= lr*g   (dampening 0; buf starts at zero, which equals PyTorch's first-step copy). */
typedef struct bl_sgd_params {
    float lr, momentum, weight_decay;
    bool nesterov;
} bl_sgd_params;
bl_status bl_op_sgd_update(bl_device *dev, const bl_sgd_params *p, bl_tensor *param, const bl_tensor *grad,
                           bl_tensor *momentum_buf);

/* PyTorch's torch.optim.AdamW (decoupled weight decay, bias-corrected moments). `step` counts
 * from 1. */
typedef struct bl_adamw_params {
    float lr, beta1, beta2, eps, weight_decay;
    int64_t step;
} bl_adamw_params;
bl_status bl_op_adamw_update(bl_device *dev, const bl_adamw_params *p, bl_tensor *param,
                             const bl_tensor *grad, bl_tensor *exp_avg, bl_tensor *exp_avg_sq);

#ifdef __cplusplus
}
#endif
#endif
