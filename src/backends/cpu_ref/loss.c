/* Softmax cross-entropy with label smoothing, computed with log-sum-exp in double so large
 * logits neither overflow nor lose the small terms. */
#include <math.h>

#include "backends/cpu_ref/cpu_ref.h"

bl_status cpu_ref_softmax_cross_entropy(bl_device *dev, const bl_tensor *logits, const bl_tensor *labels,
                                        float label_smoothing, bl_tensor *loss, bl_tensor *dlogits) {
    (void)dev;
    int64_t N = logits->shape[0], C = logits->shape[1];
    const float *L = logits->data;
    const int32_t *Y = labels->data;
    float *D = dlogits ? dlogits->data : NULL;
    double eps = label_smoothing, total = 0.0;
    for (int64_t n = 0; n < N; n++)
        if (Y[n] < 0 || Y[n] >= C)
            return bl_error(BL_ERR_INVALID_ARG,
                            "softmax_cross_entropy: label %d of example %lld "
                            "is outside [0, %lld)",
                            Y[n], (long long)n, (long long)C);
#pragma omp parallel for reduction(+ : total) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *row = L + n * C;
        double mx = row[0];
        for (int64_t c = 1; c < C; c++) mx = row[c] > mx ? row[c] : mx;
        double sum = 0.0;
        for (int64_t c = 0; c < C; c++) sum += exp(row[c] - mx);
        double lse = mx + log(sum);
        /* -log p_c = lse - z_c; smoothing spreads eps uniformly over all classes. */
        double nll = lse - row[Y[n]];
        double mean_nll = 0.0;
        for (int64_t c = 0; c < C; c++) mean_nll += lse - row[c];
        mean_nll /= (double)C;
        total += (1.0 - eps) * nll + eps * mean_nll;
        if (D)
            for (int64_t c = 0; c < C; c++) {
                double target = eps / (double)C + (c == Y[n] ? 1.0 - eps : 0.0);
                D[n * C + c] = (float)((exp(row[c] - lse) - target) / (double)N);
            }
    }
    ((float *)loss->data)[0] = (float)(total / (double)N);
    return BL_OK;
}
