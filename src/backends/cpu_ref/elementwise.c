/* ReLU and addition: the residual connection's forward, and how gradients that meet at a fork
 * are summed. */
#include "backends/cpu_ref/cpu_ref.h"

bl_status cpu_ref_relu_forward(bl_device *dev, const bl_tensor *x, bl_tensor *y) {
    (void)dev;
    int64_t n = bl_tensor_numel(x);
    const float *X = x->data;
    float *Y = y->data;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) Y[i] = X[i] > 0.0f ? X[i] : 0.0f;
    return BL_OK;
}

bl_status cpu_ref_relu_backward(bl_device *dev, const bl_tensor *dy, const bl_tensor *y, bl_tensor *dx) {
    (void)dev;
    int64_t n = bl_tensor_numel(y);
    const float *DY = dy->data, *Y = y->data;
    float *DX = dx->data;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) DX[i] = Y[i] > 0.0f ? DY[i] : 0.0f;
    return BL_OK;
}

bl_status cpu_ref_add(bl_device *dev, const bl_tensor *a, const bl_tensor *b, bl_tensor *y) {
    (void)dev;
    int64_t n = bl_tensor_numel(a);
    const float *A = a->data, *B = b->data;
    float *Y = y->data;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) Y[i] = A[i] + B[i];
    return BL_OK;
}
