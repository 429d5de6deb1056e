/* Max pooling and global average pooling, forward and backward.
 *
 * Max pooling keeps PyTorch's rule: the first maximum of a window in row-major order wins, a
 * NaN wins at once, and a window of padding only gives -inf. The backward pass gathers rather
 * than scatters: each input element visits the windows that contain it, in the same (p, q)
 * order the oracle accumulates in, and adds the gradient of those whose maximum it is. No
 * atomics, so results are deterministic (and bitwise equal to the oracle in f32). */
#include <math.h>

#include "backends/cuda/kernel_util.cuh"

/* Decodes memory position i of a packed tensor into logical (n, c, h, w). */
__device__ __forceinline__ void coords(int64_t i, const cuda_t4 &t, int64_t *n, int64_t *c, int64_t *h,
                                       int64_t *w) {
    if (t.sc == 1) { /* NHWC */
        *c = i % t.c, i /= t.c;
        *w = i % t.w, i /= t.w;
        *h = i % t.h, *n = i / t.h;
    } else {
        *w = i % t.w, i /= t.w;
        *h = i % t.h, i /= t.h;
        *c = i % t.c, *n = i / t.c;
    }
}

/* Offset within x of the first maximum of window (p, q) of plane (n, c), or -1. */
template <typename T>
__device__ int64_t window_argmax(const cuda_t4 &x, int64_t n, int64_t c, int64_t p, int64_t q, int kernel,
                                 int stride, int pad) {
    const T *X = (const T *)x.data;
    int64_t best = -1;
    float best_v = -INFINITY;
    for (int r = 0; r < kernel; r++) {
        int64_t h = p * stride - pad + r;
        if (h < 0 || h >= x.h) continue;
        for (int s = 0; s < kernel; s++) {
            int64_t w = q * stride - pad + s;
            if (w < 0 || w >= x.w) continue;
            int64_t o = n * x.sn + c * x.sc + h * x.sh + w * x.sw;
            float v = ld(X + o);
            if (best < 0 || v > best_v || isnan(v)) {
                best = o, best_v = v;
                if (isnan(v)) return best;
            }
        }
    }
    return best;
}

template <typename T>
__global__ void maxpool_forward_kernel(cuda_t4 x, cuda_t4 y, int kernel, int stride, int pad) {
    int64_t total = y.n * y.c * y.h * y.w;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t n, c, p, q;
        coords(i, y, &n, &c, &p, &q);
        int64_t o = window_argmax<T>(x, n, c, p, q, kernel, stride, pad);
        st((T *)y.data + i, o >= 0 ? ld((const T *)x.data + o) : -INFINITY);
    }
}

/* Windows containing row h: p with p*stride - pad <= h <= p*stride - pad + kernel - 1. */
__device__ __forceinline__ void window_range(int64_t h, int kernel, int stride, int pad, int64_t P,
                                             int64_t *lo, int64_t *hi) {
    int64_t a = h + pad - kernel + 1;
    *lo = a <= 0 ? 0 : (a + stride - 1) / stride;
    *hi = (h + pad) / stride;
    if (*hi > P - 1) *hi = P - 1;
}

template <typename T>
__global__ void maxpool_backward_kernel(cuda_t4 x, cuda_t4 dy, T *dx, int kernel, int stride, int pad) {
    int64_t total = x.n * x.c * x.h * x.w;
    const T *DY = (const T *)dy.data;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t n, c, h, w;
        coords(i, x, &n, &c, &h, &w);
        int64_t self = n * x.sn + c * x.sc + h * x.sh + w * x.sw;
        int64_t p0, p1, q0, q1;
        window_range(h, kernel, stride, pad, dy.h, &p0, &p1);
        window_range(w, kernel, stride, pad, dy.w, &q0, &q1);
        float g = 0.0f;
        for (int64_t p = p0; p <= p1; p++)
            for (int64_t q = q0; q <= q1; q++)
                if (window_argmax<T>(x, n, c, p, q, kernel, stride, pad) == self)
                    g += ld(DY + n * dy.sn + c * dy.sc + p * dy.sh + q * dy.sw);
        st(dx + self, g);
    }
}

extern "C" cudaError_t cuda_launch_maxpool_forward(cudaStream_t s, cuda_elem e, cuda_t4 x, cuda_t4 y,
                                                   int kernel, int stride, int pad) {
    int64_t n = y.n * y.c * y.h * y.w;
    if (n == 0) return cudaSuccess;
    DISPATCH_ELEM(e,
                  maxpool_forward_kernel<T><<<grid_for(n, 256, 0), 256, 0, s>>>(x, y, kernel, stride, pad));
    return cudaGetLastError();
}

extern "C" cudaError_t cuda_launch_maxpool_backward(cudaStream_t s, cuda_elem e, cuda_t4 x, cuda_t4 dy,
                                                    void *dx, int kernel, int stride, int pad) {
    int64_t n = x.n * x.c * x.h * x.w;
    if (n == 0) return cudaSuccess;
    DISPATCH_ELEM(e, maxpool_backward_kernel<T>
                  <<<grid_for(n, 256, 0), 256, 0, s>>>(x, dy, (T *)dx, kernel, stride, pad));
    return cudaGetLastError();
}

/* One thread per (n, c); in NHWC neighbouring threads read neighbouring channels. */
template <typename T> __global__ void avgpool_forward_kernel(cuda_t4 x, T *y) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= x.n * x.c) return;
    int64_t n = i / x.c, c = i % x.c;
    const T *X = (const T *)x.data + n * x.sn + c * x.sc;
    float sum = 0.0f;
    for (int64_t h = 0; h < x.h; h++)
        for (int64_t w = 0; w < x.w; w++) sum += ld(X + h * x.sh + w * x.sw);
    st(y + i, sum / (float)(x.h * x.w));
}

template <typename T> __global__ void avgpool_backward_kernel(const T *dy, cuda_t4 dx) {
    int64_t total = dx.n * dx.c * dx.h * dx.w;
    float inv_count = (float)(dx.h * dx.w);
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t n, c, h, w;
        coords(i, dx, &n, &c, &h, &w);
        /* The oracle divides (not multiplies by a reciprocal): same rounding. */
        st((T *)dx.data + i, ld(dy + n * dx.c + c) / inv_count);
    }
}

extern "C" cudaError_t cuda_launch_avgpool_forward(cudaStream_t s, cuda_elem e, cuda_t4 x, void *y) {
    int64_t n = x.n * x.c;
    if (n == 0) return cudaSuccess;
    DISPATCH_ELEM(e, avgpool_forward_kernel<T><<<(unsigned)((n + 255) / 256), 256, 0, s>>>(x, (T *)y));
    return cudaGetLastError();
}

extern "C" cudaError_t cuda_launch_avgpool_backward(cudaStream_t s, cuda_elem e, const void *dy, cuda_t4 dx) {
    int64_t n = dx.n * dx.c * dx.h * dx.w;
    if (n == 0) return cudaSuccess;
    DISPATCH_ELEM(e, avgpool_backward_kernel<T><<<grid_for(n, 256, 0), 256, 0, s>>>((const T *)dy, dx));
    return cudaGetLastError();
}
