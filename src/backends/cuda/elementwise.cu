/* Elementwise kernels: the convolution epilogue (bias, residual, ReLU), ReLU forward and
 * backward, addition, and the classifier's bias broadcast and bias gradient. All compute in
 * f32 and store in the tensor's own type; all are grid-stride loops in memory order, so they
 * are layout-agnostic except where a channel index is needed. */
#include "backends/cuda/kernel_util.cuh"

/* Index arithmetic in I: 32-bit when the tensor allows (64-bit division and remainder cost
 * tens of instructions per element). Channel of memory position i: i % C in NHWC,
 * (i / HW) % C in NCHW, where sc is 1 or HW. */
template <typename T, typename I>
__global__ void bias_residual_relu_kernel(T *Y, const float *bias, const T *res, bool relu, I n, I C, I sc) {
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x) {
        float v = ld(Y + i);
        if (bias) v += bias[(i / sc) % C];
        if (res) v += ld(res + i);
        if (relu && v < 0.0f) v = 0.0f;
        st(Y + i, v);
    }
}

extern "C" cudaError_t cuda_launch_bias_residual_relu(cudaStream_t s, cuda_elem e, cuda_t4 y,
                                                      const float *bias, const void *residual, bool relu,
                                                      int sm_count) {
    int64_t n = y.n * y.c * y.h * y.w;
    if (n == 0) return cudaSuccess;
    unsigned blocks = grid_for(n, 256, sm_count);
    if (n < INT32_MAX)
        DISPATCH_ELEM(e, bias_residual_relu_kernel<T, uint32_t>
                      <<<blocks, 256, 0, s>>>((T *)y.data, bias, (const T *)residual, relu, (uint32_t)n,
                                              (uint32_t)y.c, (uint32_t)y.sc));
    else
        DISPATCH_ELEM(e, bias_residual_relu_kernel<T, int64_t>
                      <<<blocks, 256, 0, s>>>((T *)y.data, bias, (const T *)residual, relu, n, y.c, y.sc));
    return cudaGetLastError();
}

template <typename T> __global__ void relu_forward_kernel(const T *x, T *y, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float v = ld(x + i);
        st(y + i, v > 0.0f ? v : 0.0f);
    }
}

/* dx may alias dy: each element is read before it is written, by the same thread. */
template <typename T> __global__ void relu_backward_kernel(const T *dy, const T *y, T *dx, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float g = ld(dy + i);
        st(dx + i, ld(y + i) > 0.0f ? g : 0.0f);
    }
}

template <typename T> __global__ void add_kernel(const T *a, const T *b, T *y, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        st(y + i, ld(a + i) + ld(b + i));
}

extern "C" cudaError_t cuda_launch_relu_forward(cudaStream_t s, cuda_elem e, const void *x, void *y,
                                                int64_t n) {
    if (n == 0) return cudaSuccess;
    DISPATCH_ELEM(e, relu_forward_kernel<T><<<grid_for(n, 256, 0), 256, 0, s>>>((const T *)x, (T *)y, n));
    return cudaGetLastError();
}

extern "C" cudaError_t cuda_launch_relu_backward(cudaStream_t s, cuda_elem e, const void *dy, const void *y,
                                                 void *dx, int64_t n) {
    if (n == 0) return cudaSuccess;
    DISPATCH_ELEM(e, relu_backward_kernel<T>
                  <<<grid_for(n, 256, 0), 256, 0, s>>>((const T *)dy, (const T *)y, (T *)dx, n));
    return cudaGetLastError();
}

extern "C" cudaError_t cuda_launch_add(cudaStream_t s, cuda_elem e, const void *a, const void *b, void *y,
                                       int64_t n) {
    if (n == 0) return cudaSuccess;
    DISPATCH_ELEM(e,
                  add_kernel<T><<<grid_for(n, 256, 0), 256, 0, s>>>((const T *)a, (const T *)b, (T *)y, n));
    return cudaGetLastError();
}

template <typename T>
__global__ void broadcast_rows_kernel(const float *b, T *y, int64_t rows, int64_t cols) {
    int64_t n = rows * cols;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        st(y + i, b[i % cols]);
}

/* One thread per column, summing down the rows in order (double, like the oracle). */
template <typename T> __global__ void column_sums_kernel(const T *dy, float *db, int64_t rows, int64_t cols) {
    int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (c >= cols) return;
    double sum = 0.0;
    for (int64_t r = 0; r < rows; r++) sum += ld(dy + r * cols + c);
    db[c] = (float)sum;
}

extern "C" cudaError_t cuda_launch_broadcast_rows(cudaStream_t s, cuda_elem e, const float *b, void *y,
                                                  int64_t rows, int64_t cols) {
    if (rows * cols == 0) return cudaSuccess;
    DISPATCH_ELEM(e, broadcast_rows_kernel<T>
                  <<<grid_for(rows * cols, 256, 0), 256, 0, s>>>(b, (T *)y, rows, cols));
    return cudaGetLastError();
}

extern "C" cudaError_t cuda_launch_column_sums(cudaStream_t s, cuda_elem e, const void *dy, float *db,
                                               int64_t rows, int64_t cols) {
    if (cols == 0) return cudaSuccess;
    unsigned blocks = (unsigned)((cols + 127) / 128);
    DISPATCH_ELEM(e, column_sums_kernel<T><<<blocks, 128, 0, s>>>((const T *)dy, db, rows, cols));
    return cudaGetLastError();
}

template <typename S, typename D> __global__ void convert_kernel(const S *src, D *dst, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        st(dst + i, ld(src + i));
}

extern "C" cudaError_t cuda_launch_convert(cudaStream_t s, cuda_elem from, cuda_elem to, const void *src,
                                           void *dst, int64_t n) {
    if (n == 0) return cudaSuccess;
    unsigned blocks = grid_for(n, 256, 0);
    if (from == CUDA_ELEM_F32 && to == CUDA_ELEM_BF16)
        convert_kernel<<<blocks, 256, 0, s>>>((const float *)src, (__nv_bfloat16 *)dst, n);
    else if (from == CUDA_ELEM_BF16 && to == CUDA_ELEM_F32)
        convert_kernel<<<blocks, 256, 0, s>>>((const __nv_bfloat16 *)src, (float *)dst, n);
    else
        DISPATCH_ELEM(from, convert_kernel<<<blocks, 256, 0, s>>>((const T *)src, (T *)dst, n));
    return cudaGetLastError();
}
