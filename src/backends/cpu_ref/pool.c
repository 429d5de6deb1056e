/* Max pooling (the ImageNet stem's 3x3/2) and global average pooling (before the classifier). */
#include <math.h>
#include <string.h>

#include "backends/cpu_ref/cpu_ref.h"

/* Index within the (H, W) plane of the first maximum of window (p, q); -1 if the window holds
 * only padding. PyTorch keeps the first maximum (a later equal value does not replace it). */
static int64_t window_argmax(const float *plane, int64_t H, int64_t W, const bl_pool_params *pp, int64_t p,
                             int64_t q) {
    int64_t best = -1;
    float best_v = -INFINITY;
    for (int64_t r = 0; r < pp->kernel; r++) {
        int64_t h = p * pp->stride - pp->pad + r;
        if (h < 0 || h >= H) continue;
        for (int64_t s = 0; s < pp->kernel; s++) {
            int64_t w = q * pp->stride - pp->pad + s;
            if (w < 0 || w >= W) continue;
            float v = plane[h * W + w];
            if (best < 0 || v > best_v || isnan(v)) {
                best = h * W + w;
                best_v = v;
                if (isnan(v)) return best;
            }
        }
    }
    return best;
}

bl_status cpu_ref_maxpool_forward(bl_device *dev, const bl_pool_params *pp, const bl_tensor *x,
                                  bl_tensor *y) {
    (void)dev;
    int64_t NC = x->shape[0] * x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t P = y->shape[2], Q = y->shape[3];
    const float *X = x->data;
    float *Y = y->data;
#pragma omp parallel for schedule(static)
    for (int64_t nc = 0; nc < NC; nc++) {
        const float *plane = X + nc * H * W;
        for (int64_t p = 0; p < P; p++)
            for (int64_t q = 0; q < Q; q++) {
                int64_t i = window_argmax(plane, H, W, pp, p, q);
                Y[(nc * P + p) * Q + q] = i >= 0 ? plane[i] : -INFINITY;
            }
    }
    return BL_OK;
}

bl_status cpu_ref_maxpool_backward(bl_device *dev, const bl_pool_params *pp, const bl_tensor *x,
                                   const bl_tensor *dy, bl_tensor *dx) {
    (void)dev;
    int64_t NC = x->shape[0] * x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t P = dy->shape[2], Q = dy->shape[3];
    const float *X = x->data, *DY = dy->data;
    float *DX = dx->data;
#pragma omp parallel for schedule(static)
    for (int64_t nc = 0; nc < NC; nc++) {
        const float *plane = X + nc * H * W;
        float *dplane = DX + nc * H * W;
        memset(dplane, 0, (size_t)(H * W) * sizeof(float));
        for (int64_t p = 0; p < P; p++)
            for (int64_t q = 0; q < Q; q++) {
                int64_t i = window_argmax(plane, H, W, pp, p, q);
                if (i >= 0) dplane[i] += DY[(nc * P + p) * Q + q];
            }
    }
    return BL_OK;
}

bl_status cpu_ref_global_avgpool_forward(bl_device *dev, const bl_tensor *x, bl_tensor *y) {
    (void)dev;
    int64_t NC = x->shape[0] * x->shape[1], HW = x->shape[2] * x->shape[3];
    const float *X = x->data;
    float *Y = y->data;
#pragma omp parallel for schedule(static)
    for (int64_t nc = 0; nc < NC; nc++) {
        double sum = 0.0;
        for (int64_t i = 0; i < HW; i++) sum += X[nc * HW + i];
        Y[nc] = (float)(sum / (double)HW);
    }
    return BL_OK;
}

bl_status cpu_ref_global_avgpool_backward(bl_device *dev, const bl_tensor *dy, bl_tensor *dx) {
    (void)dev;
    int64_t NC = dx->shape[0] * dx->shape[1], HW = dx->shape[2] * dx->shape[3];
    const float *DY = dy->data;
    float *DX = dx->data;
#pragma omp parallel for schedule(static)
    for (int64_t nc = 0; nc < NC; nc++) {
        float g = DY[nc] / (float)HW;
        for (int64_t i = 0; i < HW; i++) DX[nc * HW + i] = g;
    }
    return BL_OK;
}
