/* beamlet tensors, devices and the op table.
 *
 * A tensor is a plain view: a data pointer on some device, a dtype, a logical shape and, for
 * 4-D tensors, a memory layout. Devices come from one resolver (a request in, a device out),
 * each backed by a backend (cpu_ref: plain C, the oracle; cpu: oneDNN; cuda: cuDNN/cuBLAS) that
 * fills one op table; the backends layer opens them (beamlet/devices.h). Models call the
 * bl_op_* functions below, which check shapes and devices once and dispatch to the backend, so a
 * model is written once and runs on every backend. Nothing here knows about layers, models or
 * pipelines, nor which backends a build has. */
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
    BL_DEVICE_CUDA,
    BL_DEVICE_XLA /* a PJRT device: TPU, XLA's CPU or its GPU */
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

/* What a program asks for when it opens a device (bl_device_open, beamlet/devices.h). One
 * resolver reads every request, so every program accepts the same names:
 *   "auto"      BEAMLET_DEVICE if set, else the first accelerator present, else "cpu"
 *               (NULL and "" mean "auto" too)
 *   "cpu"       the fastest CPU backend built in (oneDNN, else cpu_ref)
 *   "cpu_ref"   the plain-C reference backend
 *   "gpu", "cuda", "cuda:N"          an NVIDIA GPU
 *   "tpu", "tpu:N", "xla:cpu", "xla:cuda", "xla:cuda:N"   devices of the XLA backend (PJRT)
 * An accelerator name without ":N" means the accelerator the runner assigned this worker
 * (`accelerator`, e.g. bl_dofn_accelerator), else the first. Asking for a device that is not
 * there is an error naming what is missing; with allow_cpu_fallback an absent accelerator is
 * replaced by "cpu" with a loud warning, never silently. */
/* The names, as flags' help and the resolver's messages list them. */
#define BL_DEVICE_NAMES "auto, cpu, cpu_ref, gpu, cuda, cuda:N, tpu, tpu:N, xla:cpu, xla:cuda, xla:cuda:N"

typedef struct bl_device_request {
    const char *name;
    int accelerator;         /* the worker's accelerator index, or -1 for none */
    bool allow_cpu_fallback; /* an accelerator name with none present: warn and use "cpu" */
    bl_dtype precision;      /* compute precision applied when opened (bl_device_set_precision);
                              * BL_F32, the zero value, is the default */
} bl_device_request;

/* Where a request lands, decided without opening anything. */
typedef struct bl_device_choice {
    char name[32];    /* what bl_device_name will say: "cpu", "cpu_ref", "cuda:1" */
    char family[16];  /* the name without its index: "cpu", "cuda", "tpu", "xla:cuda" */
    char backend[16]; /* the backend serving it: "onednn", "cpu_ref", "cuda" */
    int index;
    bool accelerator; /* a GPU or TPU rather than the host's CPU */
    bool fell_back;   /* an accelerator was asked for, none was there, and the CPU stood in */
} bl_device_choice;

/* A device handle: its own scratch memory and stream, so use one handle from one thread at a
 * time. Opened by bl_device_open (beamlet/devices.h); released here. */
void bl_device_release(bl_device *dev);
const char *bl_device_name(const bl_device *dev);         /* "cpu_ref", "cpu", "cuda:0" */
const char *bl_device_description(const bl_device *dev);  /* e.g. the GPU's model name */
const char *bl_device_backend_name(const bl_device *dev); /* "cpu_ref", "onednn", "cuda" */
bl_device_kind bl_device_get_kind(const bl_device *dev);
/* The layout the backend runs fastest on; models allocate activations in it. */
bl_layout bl_device_preferred_layout(const bl_device *dev);
/* The compute precision of a handle's convolutions, f32 tensors either way. BL_BF16: inputs and
 * weights are rounded to bf16 inside the convolution, products accumulate in f32, outputs and
 * the fused bias/residual/ReLU stay f32 (inference only: backward convolutions on a bf16 handle
 * are refused). A backend that cannot (no bf16 kernels, or a CPU without AVX512-BF16 or AMX)
 * refuses with BL_ERR_UNSUPPORTED saying why; nothing falls back silently. Set it before the
 * handle runs anything. BL_F32 always succeeds. */
bl_status bl_device_set_precision(bl_device *dev, bl_dtype precision);
bl_dtype bl_device_precision(const bl_device *dev);

bl_status bl_device_alloc(bl_device *dev, size_t bytes, void **ptr);
void bl_device_free(bl_device *dev, void *ptr);
bl_status bl_device_synchronize(bl_device *dev);

/* Marks the ops issued between begin and end as one program: a backend that compiles (XLA)
 * lowers them to one module, compiled once per shapes and run as one execution, so its compiler
 * fuses across ops; the others run each op as it is issued. Results are those of the ops one by
 * one (the op-by-op path is the oracle); a host read of a tensor written inside runs what was
 * issued so far. Pairs nest: the outermost pair is the program (a training step holds its
 * forward pass). BEAMLET_OP_BY_OP=1 turns programs off, to compare against the op-by-op path.
 * End always runs what was issued, also after an op failed, so memory holds what the ops that
 * succeeded wrote. */
bl_status bl_device_program_begin(bl_device *dev);
bl_status bl_device_program_end(bl_device *dev);
/* Says that the contents of [ptr, ptr + bytes) of device memory are no longer needed (a model's
 * activations once the step has used them): a device that compiles programs then keeps the
 * values that were to be stored there inside the program instead of writing them out. Later
 * reads see unspecified contents until the memory is written again. Others ignore it. */
void bl_device_discard(bl_device *dev, void *ptr, size_t bytes);

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

/* Parameters of the ops that take more than tensors. */
typedef struct bl_conv2d_params {
    int stride_h, stride_w;
    int pad_h, pad_w;
} bl_conv2d_params;

typedef struct bl_batchnorm_params {
    float eps;      /* 1e-5 as in PyTorch */
    float momentum; /* 0.1 as in PyTorch: running = (1-m) running + m batch */
} bl_batchnorm_params;

typedef struct bl_pool_params {
    int kernel, stride, pad;
} bl_pool_params;

/* PyTorch's torch.optim.SGD over flat f32 buffers:
 *   g = grad + wd*p; buf = momentum*buf + g; g = nesterov ? g + momentum*buf : buf;
 *   p -= lr*g   (dampening 0; buf starts at zero, which equals PyTorch's first-step copy). */
typedef struct bl_sgd_params {
    float lr, momentum, weight_decay;
    bool nesterov;
} bl_sgd_params;

/* PyTorch's torch.optim.AdamW (decoupled weight decay, bias-corrected moments). `step` counts
 * from 1. */
typedef struct bl_adamw_params {
    float lr, beta1, beta2, eps, weight_decay;
    int64_t step;
} bl_adamw_params;

/* The op list: every op once, as X(u, NAME, name, (parameters), (arguments)). From it come the
 * bl_op enum, the op names, the bl_op_<name> front ends declared below, the backend table's
 * fields and each backend's prototypes (src/tensor/backend.h), and the parity test's dispatch.
 * Adding an op is one line here, its front end's checks in src/tensor/ops.c, its
 * implementations and its test cases. `u` is passed through to X untouched (a backend's
 * prefix, for instance). Shapes are logical: (N, C, H, W) whatever the memory layout.
 *
 * conv2d_forward          y = act(conv(x, w) + bias + residual). x (N,C,H,W), w (K,C,R,S),
 *                         bias (K) or NULL, residual (N,K,P,Q) or NULL, y (N,K,P,Q). relu
 *                         applies after the residual add. The epilogue exists for inference
 *                         with batch norm folded into the convolution.
 * conv2d_backward_data    dx = conv_transpose(dy, w). dy (N,K,P,Q), w (K,C,R,S), dx (N,C,H,W).
 * conv2d_backward_filter  dw = correlation of x and dy. x (N,C,H,W), dy (N,K,P,Q), dw (K,C,R,S),
 *                         overwritten.
 * batchnorm_forward_train y = act(gamma * (x - mean_b) / sqrt(var_b + eps) + beta + residual)
 *                         with batch statistics over (N, H, W). Saves mean_b and
 *                         1/sqrt(var_b + eps) for backward and updates the running statistics
 *                         (running_var with the unbiased variance, as PyTorch does). x, y,
 *                         residual (N,C,H,W); gamma, beta, running_*, save_* (C) f32.
 * batchnorm_forward_eval  the same with the running statistics.
 * batchnorm_backward      backward of the training-mode forward. `y` is the forward output (its
 *                         sign masks the ReLU when relu is set). Writes dx, dgamma, dbeta
 *                         (overwritten) and, when not NULL, dresidual (the gradient reaching
 *                         the residual input).
 * relu_forward            y = max(x, 0).
 * relu_backward           dx = dy * (y > 0); y is the forward output. dx may alias dy.
 * add                     y = a + b, same shape and layout; y may alias a or b. Also the
 *                         residual add's backward partner (gradients meeting at a fork add up).
 * maxpool_forward         max pooling, padding counts as -inf. x (N,C,H,W), y (N,C,P,Q).
 * maxpool_backward        routes dy to the first maximum of each window (PyTorch's tie rule).
 * global_avgpool_forward  x (N,C,H,W) -> y (N,C).
 * global_avgpool_backward dy (N,C) -> dx (N,C,H,W).
 * linear_forward          y = x w^T + b. x (N,I), w (O,I), b (O) or NULL, y (N,O).
 * linear_backward         dx (N,I) (may be NULL), dw (O,I), db (O) or NULL; all overwritten.
 * softmax_cross_entropy   mean softmax cross-entropy with label smoothing (PyTorch's):
 *                           loss = mean_n [ (1-s) * -log p[n,label] + s * mean_c -log p[n,c] ]
 *                         logits (N,C) f32, labels (N) i32, loss (1) f32 on the device, dlogits
 *                         (N,C) or NULL: the gradient of the mean loss. A label outside
 *                         0..C-1 is an error naming the example where labels are host memory
 *                         (cpu_ref, oneDNN); where they live on a device (cuda, xla) it makes
 *                         the loss and that example's gradient row NaN (no host read: a step
 *                         stays one program), which the trainer reports.
 * sgd_update, adamw_update  one optimizer update of flat f32 buffers (bl_sgd_params,
 *                         bl_adamw_params above). */
#define BL_OP_LIST(X, u)                                                                                     \
    X(u, CONV2D_FORWARD, conv2d_forward,                                                                     \
      (bl_device * dev, const bl_conv2d_params *conv, const bl_tensor *x, const bl_tensor *w,                \
       const bl_tensor *bias, const bl_tensor *residual, bool relu, bl_tensor *y),                           \
      (dev, conv, x, w, bias, residual, relu, y))                                                            \
    X(u, CONV2D_BACKWARD_DATA, conv2d_backward_data,                                                         \
      (bl_device * dev, const bl_conv2d_params *conv, const bl_tensor *dy, const bl_tensor *w,               \
       bl_tensor *dx),                                                                                       \
      (dev, conv, dy, w, dx))                                                                                \
    X(u, CONV2D_BACKWARD_FILTER, conv2d_backward_filter,                                                     \
      (bl_device * dev, const bl_conv2d_params *conv, const bl_tensor *x, const bl_tensor *dy,               \
       bl_tensor *dw),                                                                                       \
      (dev, conv, x, dy, dw))                                                                                \
    X(u, BATCHNORM_FORWARD_TRAIN, batchnorm_forward_train,                                                   \
      (bl_device * dev, const bl_batchnorm_params *bn, const bl_tensor *x, const bl_tensor *gamma,           \
       const bl_tensor *beta, const bl_tensor *residual, bool relu, bl_tensor *running_mean,                 \
       bl_tensor *running_var, bl_tensor *save_mean, bl_tensor *save_invstd, bl_tensor *y),                  \
      (dev, bn, x, gamma, beta, residual, relu, running_mean, running_var, save_mean, save_invstd, y))       \
    X(u, BATCHNORM_FORWARD_EVAL, batchnorm_forward_eval,                                                     \
      (bl_device * dev, const bl_batchnorm_params *bn, const bl_tensor *x, const bl_tensor *gamma,           \
       const bl_tensor *beta, const bl_tensor *residual, bool relu, const bl_tensor *running_mean,           \
       const bl_tensor *running_var, bl_tensor *y),                                                          \
      (dev, bn, x, gamma, beta, residual, relu, running_mean, running_var, y))                               \
    X(u, BATCHNORM_BACKWARD, batchnorm_backward,                                                             \
      (bl_device * dev, const bl_tensor *dy, const bl_tensor *x, const bl_tensor *y, bool relu,              \
       const bl_tensor *gamma, const bl_tensor *save_mean, const bl_tensor *save_invstd, bl_tensor *dx,      \
       bl_tensor *dgamma, bl_tensor *dbeta, bl_tensor *dresidual),                                           \
      (dev, dy, x, y, relu, gamma, save_mean, save_invstd, dx, dgamma, dbeta, dresidual))                    \
    X(u, RELU_FORWARD, relu_forward, (bl_device * dev, const bl_tensor *x, bl_tensor *y), (dev, x, y))       \
    X(u, RELU_BACKWARD, relu_backward,                                                                       \
      (bl_device * dev, const bl_tensor *dy, const bl_tensor *y, bl_tensor *dx), (dev, dy, y, dx))           \
    X(u, ADD, add, (bl_device * dev, const bl_tensor *a, const bl_tensor *b, bl_tensor *y), (dev, a, b, y))  \
    X(u, MAXPOOL_FORWARD, maxpool_forward,                                                                   \
      (bl_device * dev, const bl_pool_params *pool, const bl_tensor *x, bl_tensor *y), (dev, pool, x, y))    \
    X(u, MAXPOOL_BACKWARD, maxpool_backward,                                                                 \
      (bl_device * dev, const bl_pool_params *pool, const bl_tensor *x, const bl_tensor *dy, bl_tensor *dx), \
      (dev, pool, x, dy, dx))                                                                                \
    X(u, GLOBAL_AVGPOOL_FORWARD, global_avgpool_forward,                                                     \
      (bl_device * dev, const bl_tensor *x, bl_tensor *y), (dev, x, y))                                      \
    X(u, GLOBAL_AVGPOOL_BACKWARD, global_avgpool_backward,                                                   \
      (bl_device * dev, const bl_tensor *dy, bl_tensor *dx), (dev, dy, dx))                                  \
    X(u, LINEAR_FORWARD, linear_forward,                                                                     \
      (bl_device * dev, const bl_tensor *x, const bl_tensor *w, const bl_tensor *b, bl_tensor *y),           \
      (dev, x, w, b, y))                                                                                     \
    X(u, LINEAR_BACKWARD, linear_backward,                                                                   \
      (bl_device * dev, const bl_tensor *dy, const bl_tensor *x, const bl_tensor *w, bl_tensor *dx,          \
       bl_tensor *dw, bl_tensor *db),                                                                        \
      (dev, dy, x, w, dx, dw, db))                                                                           \
    X(u, SOFTMAX_CROSS_ENTROPY, softmax_cross_entropy,                                                       \
      (bl_device * dev, const bl_tensor *logits, const bl_tensor *labels, float label_smoothing,             \
       bl_tensor *loss, bl_tensor *dlogits),                                                                 \
      (dev, logits, labels, label_smoothing, loss, dlogits))                                                 \
    X(u, SGD_UPDATE, sgd_update,                                                                             \
      (bl_device * dev, const bl_sgd_params *sgd, bl_tensor *param, const bl_tensor *grad,                   \
       bl_tensor *momentum_buf),                                                                             \
      (dev, sgd, param, grad, momentum_buf))                                                                 \
    X(u, ADAMW_UPDATE, adamw_update,                                                                         \
      (bl_device * dev, const bl_adamw_params *adamw, bl_tensor *param, const bl_tensor *grad,               \
       bl_tensor *exp_avg, bl_tensor *exp_avg_sq),                                                           \
      (dev, adamw, param, grad, exp_avg, exp_avg_sq))

#define BL_OP_ENUM_ENTRY(u, NAME, name, params, args) BL_OP_##NAME,
typedef enum bl_op {
    BL_OP_LIST(BL_OP_ENUM_ENTRY, ) BL_OP_COUNT
} bl_op;
#undef BL_OP_ENUM_ENTRY

/* The front ends: bl_op_conv2d_forward(dev, conv, x, w, bias, residual, relu, y) and so on for
 * every op of the list. Each checks devices, dtypes, layouts and shapes once, naming the op,
 * the argument and what is wrong, then calls the device's backend. */
#define BL_OP_FRONT_END(u, NAME, name, params, args) bl_status bl_op_##name params;
BL_OP_LIST(BL_OP_FRONT_END, )
#undef BL_OP_FRONT_END

const char *bl_op_name(bl_op op);
/* Whether the device's backend implements `op` for activations of `dtype`. */
bool bl_device_supports_op(const bl_device *dev, bl_op op, bl_dtype dtype);

#ifdef __cplusplus
}
#endif
#endif
