/* The classifier's matrix products through cuBLAS, f32 accumulation for both dtypes.
 *
 * cuBLAS is column-major; a row-major (R, C) matrix is the same memory as a column-major
 * (C, R) one, so each product below is written for the transposes:
 *   y  (N,O) = x (N,I) w^T        ->  y^T  (O,N) = gemm(T, N, m=O, n=N, k=I, w, x)
 *   dx (N,I) = dy (N,O) w (O,I)   ->  dx^T (I,N) = gemm(N, N, m=I, n=N, k=O, w, dy)
 *   dw (O,I) = dy^T (O,N) x (N,I) ->  dw^T (I,O) = gemm(N, T, m=I, n=O, k=N, x, dy)
 * The handle's math mode is CUBLAS_DEFAULT_MATH, which keeps f32 products in f32 (no TF32). */
#include "backends/cuda/cuda_internal.h"

static cudaDataType_t data_type(const bl_tensor *t) { return t->dtype == BL_BF16 ? CUDA_R_16BF : CUDA_R_32F; }

static bl_status gemm(cuda_ctx *c, cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n,
                      int64_t k, const bl_tensor *A, int64_t lda, const bl_tensor *B, int64_t ldb, float beta,
                      bl_tensor *C, int64_t ldc) {
    float alpha = 1.0f;
    if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX)
        return bl_error(BL_ERR_UNSUPPORTED,
                        "cuda: linear of %lld x %lld x %lld exceeds cuBLAS's "
                        "32-bit sizes",
                        (long long)m, (long long)n, (long long)k);
    BLAS_TRY(cublasGemmEx(c->cublas, ta, tb, (int)m, (int)n, (int)k, &alpha, A->data, data_type(A), (int)lda,
                          B->data, data_type(B), (int)ldb, &beta, C->data, data_type(C), (int)ldc,
                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return BL_OK;
}

bl_status cuda_linear_forward(bl_device *dev, const bl_tensor *x, const bl_tensor *w, const bl_tensor *b,
                              bl_tensor *y) {
    cuda_ctx *c = cuda_ctx_of(dev);
    CU_TRY(cudaSetDevice(c->index));
    int64_t N = x->shape[0], I = x->shape[1], O = w->shape[0];
    /* The bias goes in first and the product accumulates onto it (beta = 1): one rounding of
     * the sum in bf16 instead of two. */
    if (b) CU_TRY(cuda_launch_broadcast_rows(c->stream, cuda_elem_of(y), b->data, y->data, N, O));
    return gemm(c, CUBLAS_OP_T, CUBLAS_OP_N, O, N, I, w, I, x, I, b ? 1.0f : 0.0f, y, O);
}

bl_status cuda_linear_backward(bl_device *dev, const bl_tensor *dy, const bl_tensor *x, const bl_tensor *w,
                               bl_tensor *dx, bl_tensor *dw, bl_tensor *db) {
    cuda_ctx *c = cuda_ctx_of(dev);
    CU_TRY(cudaSetDevice(c->index));
    int64_t N = x->shape[0], I = x->shape[1], O = w->shape[0];
    if (dx) BL_TRY(gemm(c, CUBLAS_OP_N, CUBLAS_OP_N, I, N, O, w, I, dy, O, 0.0f, dx, I));
    BL_TRY(gemm(c, CUBLAS_OP_N, CUBLAS_OP_T, I, O, N, x, I, dy, O, 0.0f, dw, I));
    if (db) CU_TRY(cuda_launch_column_sums(c->stream, cuda_elem_of(dy), dy->data, db->data, N, O));
    return BL_OK;
}
