/* Convolution as im2col + matrix product, one image at a time, images spread over threads.
 *   forward:          y[n] (K, PQ)   = w (K, CRS) . col(x[n]) (CRS, PQ)
 *   backward data:    col(dx[n])     = w^T (CRS, K) . dy[n] (K, PQ), folded back by col2im
 *   backward filter:  dw (K, CRS)   += dy[n] (K, PQ) . col(x[n])^T (PQ, CRS), summed over n
 * The backward filter sums per-thread partials in thread order, so results are repeatable for
 * a given thread count. */
#include <omp.h>
#include <string.h>

#include "backends/cpu_ref/cpu_ref.h"

typedef struct conv_dims {
    int64_t N, C, H, W, K, R, S, P, Q;
    int64_t sh, sw, ph, pw;
} conv_dims;

static conv_dims dims_of(const bl_conv2d_params *p, const bl_tensor *x, const bl_tensor *w,
                         const bl_tensor *y) {
    conv_dims d = {x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->shape[0], w->shape[2], w->shape[3],
                   y->shape[2], y->shape[3], p->stride_h, p->stride_w, p->pad_h,    p->pad_w};
    return d;
}

/* col (C*R*S, P*Q) from one image (C, H, W); out-of-image taps read as zero. */
static void im2col(const conv_dims *d, const float *img, float *col) {
    for (int64_t c = 0; c < d->C; c++)
        for (int64_t r = 0; r < d->R; r++)
            for (int64_t s = 0; s < d->S; s++) {
                float *row = col + ((c * d->R + r) * d->S + s) * d->P * d->Q;
                for (int64_t p = 0; p < d->P; p++) {
                    int64_t h = p * d->sh - d->ph + r;
                    for (int64_t q = 0; q < d->Q; q++) {
                        int64_t w = q * d->sw - d->pw + s;
                        bool inside = h >= 0 && h < d->H && w >= 0 && w < d->W;
                        row[p * d->Q + q] = inside ? img[(c * d->H + h) * d->W + w] : 0.0f;
                    }
                }
            }
}

/* The adjoint of im2col: adds each column entry back into the image position it came from. */
static void col2im(const conv_dims *d, const float *col, float *img) {
    memset(img, 0, (size_t)(d->C * d->H * d->W) * sizeof(float));
    for (int64_t c = 0; c < d->C; c++)
        for (int64_t r = 0; r < d->R; r++)
            for (int64_t s = 0; s < d->S; s++) {
                const float *row = col + ((c * d->R + r) * d->S + s) * d->P * d->Q;
                for (int64_t p = 0; p < d->P; p++) {
                    int64_t h = p * d->sh - d->ph + r;
                    if (h < 0 || h >= d->H) continue;
                    for (int64_t q = 0; q < d->Q; q++) {
                        int64_t w = q * d->sw - d->pw + s;
                        if (w >= 0 && w < d->W) img[(c * d->H + h) * d->W + w] += row[p * d->Q + q];
                    }
                }
            }
}

bl_status cpu_ref_conv2d_forward(bl_device *dev, const bl_conv2d_params *prm, const bl_tensor *x,
                                 const bl_tensor *w, const bl_tensor *bias, const bl_tensor *residual,
                                 bool relu, bl_tensor *y) {
    conv_dims d = dims_of(prm, x, w, y);
    int64_t crs = d.C * d.R * d.S, pq = d.P * d.Q;
    int threads = omp_get_max_threads();
    float *scratch = cpu_ref_scratch(dev, (size_t)(threads * crs * pq));
    if (!scratch) return BL_ERR_OUT_OF_MEMORY;
    const float *X = x->data, *Wt = w->data, *B = bias ? bias->data : NULL;
    const float *Res = residual ? residual->data : NULL;
    float *Y = y->data;
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < d.N; n++) {
        float *col = scratch + (int64_t)omp_get_thread_num() * crs * pq;
        float *yn = Y + n * d.K * pq;
        im2col(&d, X + n * d.C * d.H * d.W, col);
        cpu_ref_gemm(false, false, d.K, pq, crs, 1.0f, Wt, crs, col, pq, 0.0f, yn, pq);
        for (int64_t k = 0; k < d.K; k++)
            for (int64_t i = 0; i < pq; i++) {
                float v = yn[k * pq + i];
                if (B) v += B[k];
                if (Res) v += Res[n * d.K * pq + k * pq + i];
                if (relu && v < 0.0f) v = 0.0f;
                yn[k * pq + i] = v;
            }
    }
    return BL_OK;
}

bl_status cpu_ref_conv2d_backward_data(bl_device *dev, const bl_conv2d_params *prm, const bl_tensor *dy,
                                       const bl_tensor *w, bl_tensor *dx) {
    conv_dims d = dims_of(prm, dx, w, dy);
    int64_t crs = d.C * d.R * d.S, pq = d.P * d.Q;
    int threads = omp_get_max_threads();
    float *scratch = cpu_ref_scratch(dev, (size_t)(threads * crs * pq));
    if (!scratch) return BL_ERR_OUT_OF_MEMORY;
    const float *DY = dy->data, *Wt = w->data;
    float *DX = dx->data;
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < d.N; n++) {
        float *col = scratch + (int64_t)omp_get_thread_num() * crs * pq;
        cpu_ref_gemm(true, false, crs, pq, d.K, 1.0f, Wt, crs, DY + n * d.K * pq, pq, 0.0f, col, pq);
        col2im(&d, col, DX + n * d.C * d.H * d.W);
    }
    return BL_OK;
}

bl_status cpu_ref_conv2d_backward_filter(bl_device *dev, const bl_conv2d_params *prm, const bl_tensor *x,
                                         const bl_tensor *dy, bl_tensor *dw) {
    conv_dims d = dims_of(prm, x, dw, dy);
    int64_t crs = d.C * d.R * d.S, pq = d.P * d.Q, kcrs = d.K * crs;
    int threads = omp_get_max_threads();
    /* Per thread: one col buffer and one partial dw. */
    float *scratch = cpu_ref_scratch(dev, (size_t)(threads * (crs * pq + kcrs)));
    if (!scratch) return BL_ERR_OUT_OF_MEMORY;
    const float *X = x->data, *DY = dy->data;
    float *DW = dw->data;
    int used_threads = 1;
#pragma omp parallel
    {
        int t = omp_get_thread_num();
#pragma omp single
        used_threads = omp_get_num_threads();
        float *col = scratch + (int64_t)t * (crs * pq + kcrs);
        float *partial = col + crs * pq;
        memset(partial, 0, (size_t)kcrs * sizeof(float));
#pragma omp for schedule(static)
        for (int64_t n = 0; n < d.N; n++) {
            im2col(&d, X + n * d.C * d.H * d.W, col);
            cpu_ref_gemm(false, true, d.K, crs, pq, 1.0f, DY + n * d.K * pq, pq, col, pq, 1.0f, partial, crs);
        }
    }
    for (int64_t i = 0; i < kcrs; i++) {
        float sum = 0.0f;
        for (int t = 0; t < used_threads; t++) sum += scratch[(int64_t)t * (crs * pq + kcrs) + crs * pq + i];
        DW[i] = sum;
    }
    return BL_OK;
}
