/* Host side of the CUDA backend's own kernels: batch norm, ReLU, add, pooling, the loss and
 * the optimizers. Each entry point sets the device, finds workspace and launches; none waits. */
#include <math.h>

#include "backends/cuda/cuda_internal.h"

/* Makes the handle's GPU current: cheap when it already is, needed when several GPUs are
 * driven from one thread. */
#define ENTER(dev)                                                                                           \
    cuda_ctx *c = cuda_ctx_of(dev);                                                                          \
    CU_TRY(cudaSetDevice(c->index))

/* ---- batch norm ------------------------------------------------------------------------- */

static bl_status bn_workspace(cuda_ctx *c, const bl_tensor *x, float **ws) {
    int64_t C = x->shape[1], M = x->shape[0] * x->shape[2] * x->shape[3];
    void *p;
    BL_TRY(cuda_workspace(c, cuda_bn_workspace_floats(C, M, c->sm_count) * sizeof(float), &p));
    *ws = p;
    return BL_OK;
}

bl_status cuda_batchnorm_forward_train(bl_device *dev, const bl_batchnorm_params *p, const bl_tensor *x,
                                       const bl_tensor *gamma, const bl_tensor *beta,
                                       const bl_tensor *residual, bool relu, bl_tensor *running_mean,
                                       bl_tensor *running_var, bl_tensor *save_mean, bl_tensor *save_invstd,
                                       bl_tensor *y) {
    ENTER(dev);
    float *ws;
    BL_TRY(bn_workspace(c, x, &ws));
    CU_TRY(cuda_launch_bn_forward_train(c->stream, cuda_elem_of(x), cuda_t4_of(x), cuda_t4_of(y),
                                        residual ? residual->data : NULL, relu, gamma->data, beta->data,
                                        running_mean->data, running_var->data, save_mean->data,
                                        save_invstd->data, p->eps, p->momentum, ws, c->sm_count));
    return BL_OK;
}

bl_status cuda_batchnorm_forward_eval(bl_device *dev, const bl_batchnorm_params *p, const bl_tensor *x,
                                      const bl_tensor *gamma, const bl_tensor *beta,
                                      const bl_tensor *residual, bool relu, const bl_tensor *running_mean,
                                      const bl_tensor *running_var, bl_tensor *y) {
    ENTER(dev);
    float *ws;
    BL_TRY(bn_workspace(c, x, &ws));
    CU_TRY(cuda_launch_bn_forward_eval(c->stream, cuda_elem_of(x), cuda_t4_of(x), cuda_t4_of(y),
                                       residual ? residual->data : NULL, relu, gamma->data, beta->data,
                                       running_mean->data, running_var->data, p->eps, ws, c->sm_count));
    return BL_OK;
}

bl_status cuda_batchnorm_backward(bl_device *dev, const bl_tensor *dy, const bl_tensor *x, const bl_tensor *y,
                                  bool relu, const bl_tensor *gamma, const bl_tensor *save_mean,
                                  const bl_tensor *save_invstd, bl_tensor *dx, bl_tensor *dgamma,
                                  bl_tensor *dbeta, bl_tensor *dresidual) {
    ENTER(dev);
    float *ws;
    BL_TRY(bn_workspace(c, x, &ws));
    CU_TRY(cuda_launch_bn_backward(c->stream, cuda_elem_of(x), cuda_t4_of(dy), x->data, y->data, relu,
                                   gamma->data, save_mean->data, save_invstd->data, dx->data, dgamma->data,
                                   dbeta->data, dresidual ? dresidual->data : NULL, ws, c->sm_count));
    return BL_OK;
}

/* ---- elementwise ------------------------------------------------------------------------- */

bl_status cuda_relu_forward(bl_device *dev, const bl_tensor *x, bl_tensor *y) {
    ENTER(dev);
    CU_TRY(cuda_launch_relu_forward(c->stream, cuda_elem_of(x), x->data, y->data, bl_tensor_numel(x)));
    return BL_OK;
}

bl_status cuda_relu_backward(bl_device *dev, const bl_tensor *dy, const bl_tensor *y, bl_tensor *dx) {
    ENTER(dev);
    CU_TRY(cuda_launch_relu_backward(c->stream, cuda_elem_of(y), dy->data, y->data, dx->data,
                                     bl_tensor_numel(y)));
    return BL_OK;
}

bl_status cuda_add(bl_device *dev, const bl_tensor *a, const bl_tensor *b, bl_tensor *y) {
    ENTER(dev);
    CU_TRY(cuda_launch_add(c->stream, cuda_elem_of(a), a->data, b->data, y->data, bl_tensor_numel(a)));
    return BL_OK;
}

/* ---- pooling ----------------------------------------------------------------------------- */

bl_status cuda_maxpool_forward(bl_device *dev, const bl_pool_params *p, const bl_tensor *x, bl_tensor *y) {
    ENTER(dev);
    CU_TRY(cuda_launch_maxpool_forward(c->stream, cuda_elem_of(x), cuda_t4_of(x), cuda_t4_of(y), p->kernel,
                                       p->stride, p->pad));
    return BL_OK;
}

bl_status cuda_maxpool_backward(bl_device *dev, const bl_pool_params *p, const bl_tensor *x,
                                const bl_tensor *dy, bl_tensor *dx) {
    ENTER(dev);
    /* The kernel addresses dx with x's strides: the front end guarantees the same layout. */
    CU_TRY(cuda_launch_maxpool_backward(c->stream, cuda_elem_of(x), cuda_t4_of(x), cuda_t4_of(dy), dx->data,
                                        p->kernel, p->stride, p->pad));
    return BL_OK;
}

bl_status cuda_global_avgpool_forward(bl_device *dev, const bl_tensor *x, bl_tensor *y) {
    ENTER(dev);
    CU_TRY(cuda_launch_avgpool_forward(c->stream, cuda_elem_of(x), cuda_t4_of(x), y->data));
    return BL_OK;
}

bl_status cuda_global_avgpool_backward(bl_device *dev, const bl_tensor *dy, bl_tensor *dx) {
    ENTER(dev);
    CU_TRY(cuda_launch_avgpool_backward(c->stream, cuda_elem_of(dx), dy->data, cuda_t4_of(dx)));
    return BL_OK;
}

/* ---- loss -------------------------------------------------------------------------------- */

/* Labels outside [0, C) cannot be reported without waiting for the device; the kernel makes
 * that example's loss and gradient NaN instead, so the step's loss shows it. */
bl_status cuda_softmax_cross_entropy(bl_device *dev, const bl_tensor *logits, const bl_tensor *labels,
                                     float label_smoothing, bl_tensor *loss, bl_tensor *dlogits) {
    ENTER(dev);
    int64_t N = logits->shape[0], C = logits->shape[1];
    void *ws;
    BL_TRY(cuda_workspace(c, (size_t)N * sizeof(float), &ws));
    CU_TRY(cuda_launch_softmax_xent(c->stream, logits->data, labels->data, N, C, label_smoothing, ws,
                                    loss->data, dlogits ? dlogits->data : NULL));
    return BL_OK;
}

/* ---- optimizers -------------------------------------------------------------------------- */

bl_status cuda_record_update(cuda_ctx *c, int kind, float *param, const float *grad, float *state1,
                             float *state2, int64_t n) {
    if (!cuda_capturing(c)) return BL_OK;
    if (c->nrecorded >= CUDA_MAX_RECORDED_UPDATES)
        return bl_error(BL_ERR_UNSUPPORTED,
                        "cuda:%d: more than %d optimizer updates in one "
                        "recorded graph",
                        c->index, CUDA_MAX_RECORDED_UPDATES);
    enum cudaStreamCaptureStatus st;
    const cudaGraphNode_t *deps = NULL;
    size_t ndeps = 0;
#if CUDART_VERSION >= 13000
    CU_TRY(cudaStreamGetCaptureInfo(c->stream, &st, NULL, NULL, &deps, NULL, &ndeps));
#else
    CU_TRY(cudaStreamGetCaptureInfo_v2(c->stream, &st, NULL, NULL, &deps, &ndeps));
#endif
    /* Right after a kernel launch the stream's frontier is that kernel's node alone. */
    if (ndeps != 1)
        return bl_error(BL_ERR_INTERNAL,
                        "cuda:%d: recorded optimizer update has %zu frontier "
                        "nodes, expected 1",
                        c->index, ndeps);
    enum cudaGraphNodeType type;
    CU_TRY(cudaGraphNodeGetType(deps[0], &type));
    if (type != cudaGraphNodeTypeKernel)
        return bl_error(BL_ERR_INTERNAL, "cuda:%d: recorded optimizer update is not a kernel node", c->index);
    cuda_opt_record *r = &c->recorded[c->nrecorded++];
    r->kind = kind, r->node = deps[0], r->param = param, r->grad = grad;
    r->state1 = state1, r->state2 = state2, r->n = n;
    return BL_OK;
}

bl_status cuda_sgd_update(bl_device *dev, const bl_sgd_params *p, bl_tensor *param, const bl_tensor *grad,
                          bl_tensor *momentum_buf) {
    ENTER(dev);
    cuda_sgd_hyper h = {p->lr, p->momentum, p->weight_decay, p->nesterov ? 1 : 0};
    int64_t n = bl_tensor_numel(param);
    CU_TRY(cuda_launch_sgd(c->stream, h, param->data, grad->data, momentum_buf->data, n, c->sm_count));
    return cuda_record_update(c, 0, param->data, grad->data, momentum_buf->data, NULL, n);
}

cuda_adamw_hyper cuda_adamw_hyper_of(const bl_adamw_params *p) {
    /* The same host-side scalars as cpu_ref (double, then rounded to float once). */
    double bc1 = 1.0 - pow(p->beta1, (double)p->step);
    double bc2 = 1.0 - pow(p->beta2, (double)p->step);
    cuda_adamw_hyper h;
    h.step_size = (float)(p->lr / bc1);
    h.bc2_sqrt = (float)sqrt(bc2);
    h.decay = 1.0f - p->lr * p->weight_decay;
    h.beta1 = p->beta1, h.beta2 = p->beta2, h.eps = p->eps;
    return h;
}

bl_status cuda_adamw_update(bl_device *dev, const bl_adamw_params *p, bl_tensor *param, const bl_tensor *grad,
                            bl_tensor *exp_avg, bl_tensor *exp_avg_sq) {
    ENTER(dev);
    int64_t n = bl_tensor_numel(param);
    CU_TRY(cuda_launch_adamw(c->stream, cuda_adamw_hyper_of(p), param->data, grad->data, exp_avg->data,
                             exp_avg_sq->data, n, c->sm_count));
    return cuda_record_update(c, 1, param->data, grad->data, exp_avg->data, exp_avg_sq->data, n);
}
