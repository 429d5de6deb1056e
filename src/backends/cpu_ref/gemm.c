/* A plain matrix product. Loops are ordered so the innermost one walks contiguous memory and
 * the compiler can vectorize it; that is the only optimization, on purpose. */
#include "backends/cpu_ref/cpu_ref.h"

void cpu_ref_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                  int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++) {
        float *c = C + i * ldc;
        if (beta == 0.0f) {
            for (int64_t j = 0; j < N; j++) c[j] = 0.0f;
        } else if (beta != 1.0f) {
            for (int64_t j = 0; j < N; j++) c[j] *= beta;
        }
        if (!trans_b) {
            /* c += alpha * a[i,p] * B[p,:] for each p: an axpy over contiguous rows of B. */
            for (int64_t p = 0; p < K; p++) {
                float a = alpha * (trans_a ? A[p * lda + i] : A[i * lda + p]);
                const float *b = B + p * ldb;
                for (int64_t j = 0; j < N; j++) c[j] += a * b[j];
            }
        } else {
            /* B is stored (N,K): each c[j] is a dot product of two rows. */
            for (int64_t j = 0; j < N; j++) {
                const float *b = B + j * ldb;
                float acc = 0.0f;
                if (!trans_a) {
                    /* Eight partial sums added in a fixed order: the compiler may vectorize
                     * this without changing the result. (A `omp simd` reduction rounds by the
                     * vector width the compiler picks, so the oracle's answers would change
                     * with the build's flags; the sanitizer build's did.) */
                    const float *a = A + i * lda;
                    float part[8] = {0};
                    int64_t p = 0;
                    for (; p + 8 <= K; p += 8)
                        for (int l = 0; l < 8; l++) part[l] += a[p + l] * b[p + l];
                    acc = ((part[0] + part[1]) + (part[2] + part[3])) +
                          ((part[4] + part[5]) + (part[6] + part[7]));
                    for (; p < K; p++) acc += a[p] * b[p];
                } else {
                    for (int64_t p = 0; p < K; p++) acc += A[p * lda + i] * b[p];
                }
                c[j] += alpha * acc;
            }
        }
    }
}
