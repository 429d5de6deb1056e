/* Softmax cross-entropy over host arrays (host_kernels.h): (N, classes) is tiny next to the
 * network, so one careful double-precision loop serves every host-memory backend. */
#include <math.h>

#include "backends/host/host_kernels.h"

bl_status bl_host_softmax_cross_entropy(const float *logits, const int32_t *labels, int64_t N, int64_t C,
                                        float label_smoothing, float *loss, float *dlogits) {
    double eps = label_smoothing, total = 0.0;
    for (int64_t n = 0; n < N; n++)
        if (labels[n] < 0 || labels[n] >= C)
            return bl_error(BL_ERR_INVALID_ARG,
                            "softmax_cross_entropy: label %d of example %lld "
                            "is outside [0, %lld)",
                            labels[n], (long long)n, (long long)C);
#pragma omp parallel for reduction(+ : total) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *row = logits + n * C;
        double mx = row[0];
        for (int64_t c = 1; c < C; c++) mx = row[c] > mx ? row[c] : mx;
        double sum = 0.0;
        for (int64_t c = 0; c < C; c++) sum += exp(row[c] - mx);
        double lse = mx + log(sum);
        /* -log p_c = lse - z_c; smoothing spreads eps uniformly over all classes. */
        double nll = lse - row[labels[n]];
        double mean_nll = 0.0;
        for (int64_t c = 0; c < C; c++) mean_nll += lse - row[c];
        mean_nll /= (double)C;
        total += (1.0 - eps) * nll + eps * mean_nll;
        if (dlogits)
            for (int64_t c = 0; c < C; c++) {
                double target = eps / (double)C + (c == labels[n] ? 1.0 - eps : 0.0);
                dlogits[n * C + c] = (float)((exp(row[c] - lse) - target) / (double)N);
            }
    }
    *loss = (float)(total / (double)N);
    return BL_OK;
}
