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
                    const float *a = A + i * lda;
#pragma omp simd reduction(+ : acc)
                    for (int64_t p = 0; p < K; p++) acc += a[p] * b[p];
                } else {
                    for (int64_t p = 0; p < K; p++) acc += A[p * lda + i] * b[p];
                }
                c[j] += alpha * acc;
            }
        }
    }
}
