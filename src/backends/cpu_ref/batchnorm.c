/* Batch normalization over (N, H, W) per channel, with the residual add and ReLU that follow
 * it in a ResNet block folded in as an epilogue (the fast backends fuse them; here it is the
 * same arithmetic written out). Statistics accumulate in double. */
#include <math.h>

#include "backends/cpu_ref/cpu_ref.h"

/* y = act(scale[c] * x + shift[c] + residual) for channel c of every image. */
static void bn_apply(const bl_tensor *x, const float *scale, const float *shift, const bl_tensor *residual,
                     bool relu, bl_tensor *y) {
    int64_t N = x->shape[0], C = x->shape[1], HW = x->shape[2] * x->shape[3];
    const float *X = x->data, *Res = residual ? residual->data : NULL;
    float *Y = y->data;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            int64_t base = (n * C + c) * HW;
            for (int64_t i = 0; i < HW; i++) {
                float v = scale[c] * X[base + i] + shift[c];
                if (Res) v += Res[base + i];
                if (relu && v < 0.0f) v = 0.0f;
                Y[base + i] = v;
            }
        }
}

bl_status cpu_ref_batchnorm_forward_train(bl_device *dev, const bl_batchnorm_params *p, const bl_tensor *x,
                                          const bl_tensor *gamma, const bl_tensor *beta,
                                          const bl_tensor *residual, bool relu, bl_tensor *running_mean,
                                          bl_tensor *running_var, bl_tensor *save_mean,
                                          bl_tensor *save_invstd, bl_tensor *y) {
    int64_t N = x->shape[0], C = x->shape[1], HW = x->shape[2] * x->shape[3], M = N * HW;
    const float *X = x->data, *G = gamma->data, *Bt = beta->data;
    float *RM = running_mean->data, *RV = running_var->data;
    float *SM = save_mean->data, *SI = save_invstd->data;
    float *coeff = cpu_ref_scratch(dev, (size_t)(2 * C));
    if (!coeff) return BL_ERR_OUT_OF_MEMORY;
    float *scale = coeff, *shift = coeff + C;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < C; c++) {
        double sum = 0.0, sq = 0.0;
        for (int64_t n = 0; n < N; n++) {
            const float *xc = X + (n * C + c) * HW;
            for (int64_t i = 0; i < HW; i++) sum += xc[i];
        }
        double mean = sum / (double)M;
        for (int64_t n = 0; n < N; n++) {
            const float *xc = X + (n * C + c) * HW;
            for (int64_t i = 0; i < HW; i++) sq += (xc[i] - mean) * (xc[i] - mean);
        }
        double var = sq / (double)M; /* biased: used to normalize */
        double invstd = 1.0 / sqrt(var + (double)p->eps);
        SM[c] = (float)mean;
        SI[c] = (float)invstd;
        /* PyTorch updates running_var with the unbiased estimate. */
        RM[c] = (float)((1.0 - p->momentum) * RM[c] + p->momentum * mean);
        RV[c] = (float)((1.0 - p->momentum) * RV[c] + p->momentum * var * (double)M / (double)(M - 1));
        scale[c] = (float)(G[c] * invstd);
        shift[c] = (float)(Bt[c] - mean * G[c] * invstd);
    }
    bn_apply(x, scale, shift, residual, relu, y);
    return BL_OK;
}

bl_status cpu_ref_batchnorm_forward_eval(bl_device *dev, const bl_batchnorm_params *p, const bl_tensor *x,
                                         const bl_tensor *gamma, const bl_tensor *beta,
                                         const bl_tensor *residual, bool relu, const bl_tensor *running_mean,
                                         const bl_tensor *running_var, bl_tensor *y) {
    int64_t C = x->shape[1];
    const float *G = gamma->data, *Bt = beta->data, *RM = running_mean->data, *RV = running_var->data;
    float *coeff = cpu_ref_scratch(dev, (size_t)(2 * C));
    if (!coeff) return BL_ERR_OUT_OF_MEMORY;
    float *scale = coeff, *shift = coeff + C;
    for (int64_t c = 0; c < C; c++) {
        double invstd = 1.0 / sqrt((double)RV[c] + (double)p->eps);
        scale[c] = (float)(G[c] * invstd);
        shift[c] = (float)(Bt[c] - RM[c] * G[c] * invstd);
    }
    bn_apply(x, scale, shift, residual, relu, y);
    return BL_OK;
}

bl_status cpu_ref_batchnorm_backward(bl_device *dev, const bl_tensor *dy, const bl_tensor *x,
                                     const bl_tensor *y, bool relu, const bl_tensor *gamma,
                                     const bl_tensor *save_mean, const bl_tensor *save_invstd, bl_tensor *dx,
                                     bl_tensor *dgamma, bl_tensor *dbeta, bl_tensor *dresidual) {
    (void)dev;
    int64_t N = x->shape[0], C = x->shape[1], HW = x->shape[2] * x->shape[3], M = N * HW;
    const float *DY = dy->data, *X = x->data, *Y = y->data, *G = gamma->data;
    const float *SM = save_mean->data, *SI = save_invstd->data;
    float *DX = dx->data, *DG = dgamma->data, *DB = dbeta->data;
    float *DR = dresidual ? dresidual->data : NULL;
    /* dz is the gradient at the batch-norm output, before the residual add and ReLU. The ReLU
     * passes dy where its output was positive; the residual receives dz unchanged. */
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < C; c++) {
        double sum_dz = 0.0, sum_dz_xhat = 0.0;
        double mean = SM[c], invstd = SI[c];
        for (int64_t n = 0; n < N; n++) {
            int64_t base = (n * C + c) * HW;
            for (int64_t i = 0; i < HW; i++) {
                float dz = (relu && Y[base + i] <= 0.0f) ? 0.0f : DY[base + i];
                sum_dz += dz;
                sum_dz_xhat += dz * (X[base + i] - mean) * invstd;
            }
        }
        DB[c] = (float)sum_dz;
        DG[c] = (float)sum_dz_xhat;
        double k = G[c] * invstd / (double)M;
        for (int64_t n = 0; n < N; n++) {
            int64_t base = (n * C + c) * HW;
            for (int64_t i = 0; i < HW; i++) {
                float dz = (relu && Y[base + i] <= 0.0f) ? 0.0f : DY[base + i];
                double xhat = (X[base + i] - mean) * invstd;
                /* Written after reading dy: dresidual may alias dy. dx must not. */
                if (DR) DR[base + i] = dz;
                DX[base + i] = (float)(k * ((double)M * dz - sum_dz - xhat * sum_dz_xhat));
            }
        }
    }
    return BL_OK;
}
