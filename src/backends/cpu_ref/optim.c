/* Optimizer updates over one flat parameter buffer, with PyTorch's exact formulas so that
 * fixture tests can compare parameters after a few steps. */
#include <math.h>

#include "backends/cpu_ref/cpu_ref.h"

bl_status cpu_ref_sgd_update(bl_device *dev, const bl_sgd_params *p, bl_tensor *param, const bl_tensor *grad,
                             bl_tensor *momentum_buf) {
    (void)dev;
    int64_t n = bl_tensor_numel(param);
    float *P = param->data, *M = momentum_buf->data;
    const float *G = grad->data;
    float lr = p->lr, mu = p->momentum, wd = p->weight_decay;
    bool nesterov = p->nesterov;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float g = G[i] + wd * P[i];
        if (mu != 0.0f) {
            M[i] = mu * M[i] + g;
            g = nesterov ? g + mu * M[i] : M[i];
        }
        P[i] -= lr * g;
    }
    return BL_OK;
}

bl_status cpu_ref_adamw_update(bl_device *dev, const bl_adamw_params *p, bl_tensor *param,
                               const bl_tensor *grad, bl_tensor *exp_avg, bl_tensor *exp_avg_sq) {
    (void)dev;
    int64_t n = bl_tensor_numel(param);
    float *P = param->data, *M = exp_avg->data, *V = exp_avg_sq->data;
    const float *G = grad->data;
    double bc1 = 1.0 - pow(p->beta1, (double)p->step);
    double bc2 = 1.0 - pow(p->beta2, (double)p->step);
    float step_size = (float)(p->lr / bc1);
    float bc2_sqrt = (float)sqrt(bc2);
    float decay = 1.0f - p->lr * p->weight_decay;
    float b1 = p->beta1, b2 = p->beta2, eps = p->eps;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        P[i] *= decay;
        M[i] = b1 * M[i] + (1.0f - b1) * G[i];
        V[i] = b2 * V[i] + (1.0f - b2) * G[i] * G[i];
        float denom = sqrtf(V[i]) / bc2_sqrt + eps;
        P[i] -= step_size * M[i] / denom;
    }
    return BL_OK;
}
