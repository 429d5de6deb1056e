/* Batch norm on NHWC data, written as vectorized loops rather than oneDNN's primitive: oneDNN
 * 2.6 cannot fuse the residual add (only ReLU, and then its backward needs a workspace we do
 * not carry), so its primitive would cost an extra pass over the activations, and batch norm
 * is bound by memory bandwidth. Channels are innermost, so every loop runs down rows of C
 * contiguous floats; statistics accumulate in double per thread and are combined in thread
 * order (repeatable for a given thread count). Results match cpu_ref's arithmetic: scale and
 * shift are formed in double and applied in float. */
#include <math.h>
#include <omp.h>

#include "backends/cpu_onednn/onednn.h"

/* Compiled for AVX-512, AVX2 and baseline; the loader picks one for the running CPU. */
#define VECTORIZED __attribute__((target_clones("avx512f", "avx2", "default")))

/* Rows are summed in float over blocks of BLOCK rows, then the block sums are added in
 * double: full-width float vectors in the hot loop, double accuracy across the batch. */
#define BLOCK 16

/* Per-thread block sums sit in the handle's float scratch (onednn_bn_floats), not on the
 * stack: channels are unbounded (a width-4096 ResNet has 32768 in layer4). Each thread's pair
 * of rows starts on a 64-byte boundary, so vector loads stay aligned and threads never share a
 * cache line. */
static int64_t padded(int64_t C) { return (C + 15) & ~(int64_t)15; }

/* s += (x - shift), q += (x - shift)^2 per channel over rows [r0, r1). Shifting by a sample of
 * the channel keeps the single-pass variance accurate when |mean| >> std. */
VECTORIZED static void rows_sums(const float *restrict x, int64_t r0, int64_t r1, int64_t C,
                                 const float *restrict shift, float *restrict sb, float *restrict qb,
                                 double *restrict s, double *restrict q) {
    for (int64_t c = 0; c < C; c++) s[c] = q[c] = 0.0;
    for (int64_t r = r0; r < r1; r += BLOCK) {
        int64_t re = r + BLOCK < r1 ? r + BLOCK : r1;
        for (int64_t c = 0; c < C; c++) sb[c] = qb[c] = 0.0f;
        for (int64_t i = r; i < re; i++) {
            const float *row = x + i * C;
            for (int64_t c = 0; c < C; c++) {
                float v = row[c] - shift[c];
                sb[c] += v;
                qb[c] += v * v;
            }
        }
        for (int64_t c = 0; c < C; c++) {
            s[c] += sb[c];
            q[c] += qb[c];
        }
    }
}

VECTORIZED static void rows_apply(const float *restrict x, const float *restrict res, float *restrict y,
                                  int64_t r0, int64_t r1, int64_t C, const float *restrict scale,
                                  const float *restrict shift, bool relu) {
    /* `v < 0 ? 0 : v` rather than fmaxf: it vectorizes without -ffast-math and, like cpu_ref,
     * lets NaN through. */
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        if (res) {
            const float *rr = res + r * C;
            if (relu)
                for (int64_t c = 0; c < C; c++) {
                    float v = scale[c] * xr[c] + shift[c] + rr[c];
                    yr[c] = v < 0.0f ? 0.0f : v;
                }
            else
                for (int64_t c = 0; c < C; c++) yr[c] = scale[c] * xr[c] + shift[c] + rr[c];
        } else if (relu) {
            for (int64_t c = 0; c < C; c++) {
                float v = scale[c] * xr[c] + shift[c];
                yr[c] = v < 0.0f ? 0.0f : v;
            }
        } else {
            for (int64_t c = 0; c < C; c++) yr[c] = scale[c] * xr[c] + shift[c];
        }
    }
}

/* Per channel: s += dz, q += dz * (x - mean), with dz = dy masked by y > 0 under ReLU. */
VECTORIZED static void rows_grad_sums(const float *restrict dy, const float *restrict x,
                                      const float *restrict y, int64_t r0, int64_t r1, int64_t C,
                                      const float *restrict mean, bool relu, float *restrict sb,
                                      float *restrict qb, double *restrict s, double *restrict q) {
    for (int64_t c = 0; c < C; c++) s[c] = q[c] = 0.0;
    for (int64_t r = r0; r < r1; r += BLOCK) {
        int64_t re = r + BLOCK < r1 ? r + BLOCK : r1;
        for (int64_t c = 0; c < C; c++) sb[c] = qb[c] = 0.0f;
        for (int64_t i = r; i < re; i++) {
            const float *dr = dy + i * C, *xr = x + i * C, *yr = y + i * C;
            if (relu)
                for (int64_t c = 0; c < C; c++) {
                    float dz = yr[c] > 0.0f ? dr[c] : 0.0f;
                    sb[c] += dz;
                    qb[c] += dz * (xr[c] - mean[c]);
                }
            else
                for (int64_t c = 0; c < C; c++) {
                    sb[c] += dr[c];
                    qb[c] += dr[c] * (xr[c] - mean[c]);
                }
        }
        for (int64_t c = 0; c < C; c++) {
            s[c] += sb[c];
            q[c] += qb[c];
        }
    }
}

/* dx = a dz - b - (x - mean) g; dres = dz. dres may alias dy (each element is read before it
 * is written), so those two are not restrict. */
VECTORIZED static void rows_grad_apply(const float *dy, const float *restrict x, const float *restrict y,
                                       float *restrict dx, float *dres, int64_t r0, int64_t r1, int64_t C,
                                       const float *restrict mean, const float *restrict a,
                                       const float *restrict b, const float *restrict g, bool relu) {
    for (int64_t r = r0; r < r1; r++) {
        const float *dr = dy + r * C, *xr = x + r * C, *yr = y + r * C;
        float *dxr = dx + r * C, *drr = dres ? dres + r * C : NULL;
        if (drr)
            for (int64_t c = 0; c < C; c++) {
                float dz = (!relu || yr[c] > 0.0f) ? dr[c] : 0.0f;
                dxr[c] = a[c] * dz - b[c] - (xr[c] - mean[c]) * g[c];
                drr[c] = dz;
            }
        else
            for (int64_t c = 0; c < C; c++) {
                float dz = (!relu || yr[c] > 0.0f) ? dr[c] : 0.0f;
                dxr[c] = a[c] * dz - b[c] - (xr[c] - mean[c]) * g[c];
            }
    }
}

/* Rows of thread t of T over M rows. */
static void split(int64_t M, int t, int T, int64_t *r0, int64_t *r1) {
    *r0 = M * t / T;
    *r1 = M * (t + 1) / T;
}

bl_status onednn_batchnorm_forward_train(bl_device *dev, const bl_batchnorm_params *p, const bl_tensor *x,
                                         const bl_tensor *gamma, const bl_tensor *beta,
                                         const bl_tensor *residual, bool relu, bl_tensor *running_mean,
                                         bl_tensor *running_var, bl_tensor *save_mean, bl_tensor *save_invstd,
                                         bl_tensor *y) {
    onednn_ctx *c = onednn_of(dev);
    int64_t C = x->shape[1], M = x->shape[0] * x->shape[2] * x->shape[3];
    int T = omp_get_max_threads();
    if (T > M) T = (int)M;
    int64_t Cp = padded(C);
    double *part = onednn_partials(c, (size_t)(2 * T * C));
    if (!part) return BL_ERR_OUT_OF_MEMORY;
    /* pivot, scale, shift, then each thread's block sums. */
    float *coeff = onednn_bn_floats(c, (size_t)((3 + 2 * T) * Cp));
    if (!coeff) return BL_ERR_OUT_OF_MEMORY;
    float *pivot = coeff, *scale = coeff + Cp, *shift = coeff + 2 * Cp, *blocks = coeff + 3 * Cp;
    const float *X = x->data;
    for (int64_t ch = 0; ch < C; ch++) pivot[ch] = X[ch]; /* first row: a sample of each channel */
#pragma omp parallel num_threads(T)
    {
        int t = omp_get_thread_num();
        int64_t r0, r1;
        split(M, t, T, &r0, &r1);
        float *sb = blocks + 2 * t * Cp;
        rows_sums(X, r0, r1, C, pivot, sb, sb + Cp, part + 2 * t * C, part + 2 * t * C + C);
    }
    const float *G = gamma->data, *Bt = beta->data;
    float *RM = running_mean->data, *RV = running_var->data, *SM = save_mean->data, *SI = save_invstd->data;
    for (int64_t ch = 0; ch < C; ch++) {
        double s = 0.0, q = 0.0;
        for (int t = 0; t < T; t++) {
            s += part[2 * t * C + ch];
            q += part[2 * t * C + C + ch];
        }
        double ms = s / (double)M;
        double var = q / (double)M - ms * ms;
        if (var < 0.0) var = 0.0;
        double mean = (double)pivot[ch] + ms;
        double invstd = 1.0 / sqrt(var + (double)p->eps);
        SM[ch] = (float)mean;
        SI[ch] = (float)invstd;
        /* PyTorch updates running_var with the unbiased estimate. */
        RM[ch] = (float)((1.0 - p->momentum) * RM[ch] + p->momentum * mean);
        RV[ch] = (float)((1.0 - p->momentum) * RV[ch] + p->momentum * var * (double)M / (double)(M - 1));
        scale[ch] = (float)(G[ch] * invstd);
        shift[ch] = (float)(Bt[ch] - mean * G[ch] * invstd);
    }
    onednn_wrote(dev, y);
    const float *R = residual ? residual->data : NULL;
    float *Y = y->data;
#pragma omp parallel num_threads(T)
    {
        int64_t r0, r1;
        split(M, omp_get_thread_num(), T, &r0, &r1);
        rows_apply(X, R, Y, r0, r1, C, scale, shift, relu);
    }
    return BL_OK;
}

bl_status onednn_batchnorm_forward_eval(bl_device *dev, const bl_batchnorm_params *p, const bl_tensor *x,
                                        const bl_tensor *gamma, const bl_tensor *beta,
                                        const bl_tensor *residual, bool relu, const bl_tensor *running_mean,
                                        const bl_tensor *running_var, bl_tensor *y) {
    int64_t C = x->shape[1], M = x->shape[0] * x->shape[2] * x->shape[3], Cp = padded(C);
    float *coeff = onednn_bn_floats(onednn_of(dev), (size_t)(2 * Cp));
    if (!coeff) return BL_ERR_OUT_OF_MEMORY;
    float *scale = coeff, *shift = coeff + Cp;
    const float *G = gamma->data, *Bt = beta->data, *RM = running_mean->data, *RV = running_var->data;
    for (int64_t ch = 0; ch < C; ch++) {
        double invstd = 1.0 / sqrt((double)RV[ch] + (double)p->eps);
        scale[ch] = (float)(G[ch] * invstd);
        shift[ch] = (float)(Bt[ch] - RM[ch] * G[ch] * invstd);
    }
    onednn_wrote(dev, y);
    const float *X = x->data, *R = residual ? residual->data : NULL;
    float *Y = y->data;
    int T = omp_get_max_threads();
    if (T > M) T = (int)M;
#pragma omp parallel num_threads(T)
    {
        int64_t r0, r1;
        split(M, omp_get_thread_num(), T, &r0, &r1);
        rows_apply(X, R, Y, r0, r1, C, scale, shift, relu);
    }
    return BL_OK;
}

bl_status onednn_batchnorm_backward(bl_device *dev, const bl_tensor *dy, const bl_tensor *x,
                                    const bl_tensor *y, bool relu, const bl_tensor *gamma,
                                    const bl_tensor *save_mean, const bl_tensor *save_invstd, bl_tensor *dx,
                                    bl_tensor *dgamma, bl_tensor *dbeta, bl_tensor *dresidual) {
    onednn_ctx *c = onednn_of(dev);
    int64_t C = x->shape[1], M = x->shape[0] * x->shape[2] * x->shape[3], Cp = padded(C);
    int T = omp_get_max_threads();
    if (T > M) T = (int)M;
    double *part = onednn_partials(c, (size_t)(2 * T * C));
    if (!part) return BL_ERR_OUT_OF_MEMORY;
    /* a, b, g, then each thread's block sums. */
    float *coeff = onednn_bn_floats(c, (size_t)((3 + 2 * T) * Cp));
    if (!coeff) return BL_ERR_OUT_OF_MEMORY;
    float *blocks = coeff + 3 * Cp;
    const float *DY = dy->data, *X = x->data, *Y = y->data, *G = gamma->data;
    const float *SM = save_mean->data, *SI = save_invstd->data;
#pragma omp parallel num_threads(T)
    {
        int t = omp_get_thread_num();
        int64_t r0, r1;
        split(M, t, T, &r0, &r1);
        float *sb = blocks + 2 * t * Cp;
        rows_grad_sums(DY, X, Y, r0, r1, C, SM, relu, sb, sb + Cp, part + 2 * t * C, part + 2 * t * C + C);
    }
    float *a = coeff, *b = coeff + Cp, *g = coeff + 2 * Cp;
    float *DG = dgamma->data, *DB = dbeta->data;
    for (int64_t ch = 0; ch < C; ch++) {
        double s = 0.0, q = 0.0;
        for (int t = 0; t < T; t++) {
            s += part[2 * t * C + ch];
            q += part[2 * t * C + C + ch];
        }
        double invstd = SI[ch], sum_dz_xhat = q * invstd;
        double k = G[ch] * invstd / (double)M;
        DB[ch] = (float)s;
        DG[ch] = (float)sum_dz_xhat;
        a[ch] = (float)(k * (double)M);
        b[ch] = (float)(k * s);
        g[ch] = (float)(k * sum_dz_xhat * invstd);
    }
    onednn_wrote(dev, dgamma);
    onednn_wrote(dev, dbeta);
    onednn_wrote(dev, dx);
    onednn_wrote(dev, dresidual);
    float *DX = dx->data, *DR = dresidual ? dresidual->data : NULL;
#pragma omp parallel num_threads(T)
    {
        int64_t r0, r1;
        split(M, omp_get_thread_num(), T, &r0, &r1);
        rows_grad_apply(DY, X, Y, DX, DR, r0, r1, C, SM, a, b, g, relu);
    }
    return BL_OK;
}
