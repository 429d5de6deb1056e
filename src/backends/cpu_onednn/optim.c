/* Optimizer updates over the flat parameter buffer with PyTorch's formulas, vectorized for
 * the running CPU and split over threads: one pass over 11M parameters is memory-bound. */
#include <math.h>
#include <omp.h>

#include "backends/cpu_onednn/onednn.h"

#define VECTORIZED __attribute__((target_clones("avx512f", "avx2", "default")))

VECTORIZED static void sgd_range(float *P, const float *G, float *M, int64_t n, float lr, float mu, float wd,
                                 bool nesterov) {
    if (mu == 0.0f) {
        for (int64_t i = 0; i < n; i++) P[i] -= lr * (G[i] + wd * P[i]);
    } else if (nesterov) {
        for (int64_t i = 0; i < n; i++) {
            float g = G[i] + wd * P[i];
            float m = mu * M[i] + g;
            M[i] = m;
            P[i] -= lr * (g + mu * m);
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            float g = G[i] + wd * P[i];
            float m = mu * M[i] + g;
            M[i] = m;
            P[i] -= lr * m;
        }
    }
}

VECTORIZED static void adamw_range(float *P, const float *G, float *M, float *V, int64_t n, float decay,
                                   float b1, float b2, float eps, float step_size, float bc2_sqrt) {
    /* Vectorizes because this backend is compiled with -fno-math-errno (CMakeLists.txt). */
    for (int64_t i = 0; i < n; i++) {
        float p = P[i] * decay, g = G[i];
        float m = b1 * M[i] + (1.0f - b1) * g;
        float v = b2 * V[i] + (1.0f - b2) * g * g;
        M[i] = m;
        V[i] = v;
        P[i] = p - step_size * m / (sqrtf(v) / bc2_sqrt + eps);
    }
}

static void chunk(int64_t n, int t, int T, int64_t *lo, int64_t *hi) {
    int64_t per = ((n + T - 1) / T + 15) & ~(int64_t)15;
    *lo = per * t < n ? per * t : n;
    *hi = per * (t + 1) < n ? per * (t + 1) : n;
}

bl_status onednn_sgd_update(bl_device *dev, const bl_sgd_params *p, bl_tensor *param, const bl_tensor *grad,
                            bl_tensor *momentum_buf) {
    int64_t n = bl_tensor_numel(param);
    float *P = param->data, *M = momentum_buf->data;
    const float *G = grad->data;
    onednn_wrote(dev, param);
    onednn_wrote(dev, momentum_buf);
    int T = n < 32768 ? 1 : omp_get_max_threads();
#pragma omp parallel num_threads(T)
    {
        int64_t lo, hi;
        chunk(n, omp_get_thread_num(), T, &lo, &hi);
        if (hi > lo)
            sgd_range(P + lo, G + lo, M + lo, hi - lo, p->lr, p->momentum, p->weight_decay, p->nesterov);
    }
    return BL_OK;
}

bl_status onednn_adamw_update(bl_device *dev, const bl_adamw_params *p, bl_tensor *param,
                              const bl_tensor *grad, bl_tensor *exp_avg, bl_tensor *exp_avg_sq) {
    int64_t n = bl_tensor_numel(param);
    float *P = param->data, *M = exp_avg->data, *V = exp_avg_sq->data;
    const float *G = grad->data;
    double bc1 = 1.0 - pow(p->beta1, (double)p->step), bc2 = 1.0 - pow(p->beta2, (double)p->step);
    float step_size = (float)(p->lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    float decay = 1.0f - p->lr * p->weight_decay;
    onednn_wrote(dev, param);
    onednn_wrote(dev, exp_avg);
    onednn_wrote(dev, exp_avg_sq);
    int T = n < 32768 ? 1 : omp_get_max_threads();
#pragma omp parallel num_threads(T)
    {
        int64_t lo, hi;
        chunk(n, omp_get_thread_num(), T, &lo, &hi);
        if (hi > lo)
            adamw_range(P + lo, G + lo, M + lo, V + lo, hi - lo, decay, p->beta1, p->beta2, p->eps, step_size,
                        bc2_sqrt);
    }
    return BL_OK;
}
