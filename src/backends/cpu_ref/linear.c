/* The fully connected classifier: y = x w^T + b. */
#include "backends/cpu_ref/cpu_ref.h"

bl_status cpu_ref_linear_forward(bl_device *dev, const bl_tensor *x, const bl_tensor *w, const bl_tensor *b,
                                 bl_tensor *y) {
    (void)dev;
    int64_t N = x->shape[0], I = x->shape[1], O = w->shape[0];
    const float *X = x->data, *Wt = w->data, *B = b ? b->data : NULL;
    float *Y = y->data;
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        cpu_ref_gemm(false, true, 1, O, I, 1.0f, X + n * I, I, Wt, I, 0.0f, Y + n * O, O);
        if (B)
            for (int64_t o = 0; o < O; o++) Y[n * O + o] += B[o];
    }
    return BL_OK;
}

bl_status cpu_ref_linear_backward(bl_device *dev, const bl_tensor *dy, const bl_tensor *x, const bl_tensor *w,
                                  bl_tensor *dx, bl_tensor *dw, bl_tensor *db) {
    (void)dev;
    int64_t N = x->shape[0], I = x->shape[1], O = w->shape[0];
    const float *DY = dy->data, *X = x->data, *Wt = w->data;
    if (dx) {
        float *DX = dx->data;
#pragma omp parallel for schedule(static)
        for (int64_t n = 0; n < N; n++)
            cpu_ref_gemm(false, false, 1, I, O, 1.0f, DY + n * O, O, Wt, I, 0.0f, DX + n * I, I);
    }
    float *DW = dw->data;
    /* dw (O, I) = dy^T (O, N) . x (N, I), one output row per iteration. */
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < O; o++)
        cpu_ref_gemm(true, false, 1, I, N, 1.0f, DY + o, O, X, I, 0.0f, DW + o * I, I);
    if (db) {
        float *DB = db->data;
        for (int64_t o = 0; o < O; o++) {
            double sum = 0.0;
            for (int64_t n = 0; n < N; n++) sum += DY[n * O + o];
            DB[o] = (float)sum;
        }
    }
    return BL_OK;
}
