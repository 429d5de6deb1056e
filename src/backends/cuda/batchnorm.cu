/* Batch norm with the residual add and ReLU fused in, forward (train and eval) and backward.
 *
 * Per-channel sums over M = N*H*W values run in two stages so that no atomics are needed and
 * results do not depend on scheduling: a partial kernel writes one sum per (chunk of rows,
 * channel) into workspace, and a per-channel kernel adds the chunks in order (in double). The
 * partial kernel has two shapes: for NHWC a warp spans 32 neighbouring channels (coalesced
 * along C); for NCHW a block spans one channel's contiguous H*W planes. Training statistics
 * take two passes (mean, then centred squares) as the oracle does, which avoids the
 * cancellation of E[x^2] - E[x]^2. Everything accumulates in f32 or wider; x, y and the
 * gradients of activations may be bf16, statistics and parameters are f32.
 *
 * Workspace (floats): partial1[chunks*C] partial2[chunks*C] coef[3*C]. */
#include "backends/cuda/kernel_util.cuh"

#define NHWC_ROWS 8 /* block (32 channels, 8 rows) */
#define NCHW_THREADS 256
#define MAX_CHUNKS 1024

/* Row chunks per channel tile: about four blocks per SM in all, at least 64 rows each. */
static int64_t chunks_for(bool nhwc, int64_t C, int64_t M, int sm_count) {
    int64_t tiles = nhwc ? (C + 31) / 32 : C;
    int64_t want = (4 * (int64_t)(sm_count > 0 ? sm_count : 132) + tiles - 1) / tiles;
    int64_t most = (M + 63) / 64;
    if (want > most) want = most;
    if (want > MAX_CHUNKS) want = MAX_CHUNKS;
    return want < 1 ? 1 : want;
}

extern "C" size_t cuda_bn_workspace_floats(int64_t C, int64_t M, int sm_count) {
    int64_t a = chunks_for(true, C, M, sm_count), b = chunks_for(false, C, M, sm_count);
    return (size_t)(2 * (a > b ? a : b) * C + 4 * C);
}

/* What the partial kernels sum at one element (offset `o`, channel `c`): into a, and b. */
template <typename T> struct sum_x {
    const T *x;
    __device__ void operator()(int64_t o, int64_t, float &a, float &) const { a += ld(x + o); }
};
template <typename T> struct sum_sq {
    const T *x;
    const float *mean;
    __device__ void operator()(int64_t o, int64_t c, float &a, float &) const {
        float d = ld(x + o) - mean[c];
        a += d * d;
    }
};
/* dz is the gradient before the ReLU and residual: dy where the output was positive. */
template <typename T> struct sum_grad {
    const T *dy, *x, *y;
    const float *mean, *invstd;
    bool relu;
    __device__ void operator()(int64_t o, int64_t c, float &a, float &b) const {
        float dz = (relu && ld(y + o) <= 0.0f) ? 0.0f : ld(dy + o);
        a += dz;
        b += dz * (ld(x + o) - mean[c]) * invstd[c];
    }
};

template <class Op>
__global__ void partial_nhwc(Op op, int64_t M, int64_t C, int64_t chunk, float *p1, float *p2) {
    __shared__ float sa[NHWC_ROWS][33], sb[NHWC_ROWS][33];
    int64_t c = blockIdx.x * 32 + threadIdx.x;
    int64_t m0 = blockIdx.y * chunk, m1 = min(M, m0 + chunk);
    float a = 0.0f, b = 0.0f;
    if (c < C)
        for (int64_t m = m0 + threadIdx.y; m < m1; m += NHWC_ROWS) op(m * C + c, c, a, b);
    sa[threadIdx.y][threadIdx.x] = a;
    sb[threadIdx.y][threadIdx.x] = b;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        for (int r = 1; r < NHWC_ROWS; r++) a += sa[r][threadIdx.x], b += sb[r][threadIdx.x];
        p1[blockIdx.y * C + c] = a;
        if (p2) p2[blockIdx.y * C + c] = b;
    }
}

template <class Op>
__global__ void partial_nchw(Op op, int64_t M, int64_t HW, int64_t C, int64_t chunk, float *p1, float *p2) {
    __shared__ float sa[NCHW_THREADS / 32], sb[NCHW_THREADS / 32];
    int64_t c = blockIdx.x;
    int64_t m0 = blockIdx.y * chunk, m1 = min(M, m0 + chunk);
    float a = 0.0f, b = 0.0f;
    for (int64_t m = m0 + threadIdx.x; m < m1; m += NCHW_THREADS) {
        int64_t n = m / HW;
        op((n * C + c) * HW + (m - n * HW), c, a, b);
    }
    for (int off = 16; off > 0; off /= 2) {
        a += __shfl_down_sync(0xffffffffu, a, off);
        b += __shfl_down_sync(0xffffffffu, b, off);
    }
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) sa[warp] = a, sb[warp] = b;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int i = 1; i < NCHW_THREADS / 32; i++) a += sa[i], b += sb[i];
        p1[blockIdx.y * C + c] = a;
        if (p2) p2[blockIdx.y * C + c] = b;
    }
}

template <class Op>
static void launch_partial(cudaStream_t s, const cuda_t4 &x, Op op, float *p1, float *p2, int sm_count,
                           int64_t *chunks_out) {
    int64_t C = x.c, HW = x.h * x.w, M = x.n * HW;
    /* sc == 1 also covers NCHW with H = W = 1, whose memory order is NHWC's. */
    bool nhwc = x.sc == 1;
    int64_t chunks = chunks_for(nhwc, C, M, sm_count), chunk = (M + chunks - 1) / chunks;
    if (nhwc) {
        dim3 grid((unsigned)((C + 31) / 32), (unsigned)chunks), block(32, NHWC_ROWS);
        partial_nhwc<<<grid, block, 0, s>>>(op, M, C, chunk, p1, p2);
    } else {
        dim3 grid((unsigned)C, (unsigned)chunks);
        partial_nchw<<<grid, NCHW_THREADS, 0, s>>>(op, M, HW, C, chunk, p1, p2);
    }
    *chunks_out = chunks;
}

static __device__ double chunk_sum(const float *p, int64_t chunks, int64_t C, int64_t c) {
    double s = 0.0;
    for (int64_t k = 0; k < chunks; k++) s += p[k * C + c];
    return s;
}

__global__ void finish_mean(const float *p1, int64_t chunks, int64_t C, int64_t M, float *save_mean) {
    int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (c < C) save_mean[c] = (float)(chunk_sum(p1, chunks, C, c) / (double)M);
}

/* Variance, saved statistics, running statistics (unbiased variance, as PyTorch) and the
 * per-channel scale and shift the apply kernel uses. */
__global__ void finish_train(const float *p1, int64_t chunks, int64_t C, int64_t M, const float *gamma,
                             const float *beta, float eps, float momentum, const float *save_mean,
                             float *save_invstd, float *running_mean, float *running_var, float *scale,
                             float *shift) {
    int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (c >= C) return;
    double mean = save_mean[c];
    double var = chunk_sum(p1, chunks, C, c) / (double)M;
    double invstd = 1.0 / sqrt(var + (double)eps);
    save_invstd[c] = (float)invstd;
    running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * mean);
    running_var[c] =
        (float)((1.0 - momentum) * running_var[c] + momentum * var * (double)M / (double)(M - 1));
    scale[c] = (float)(gamma[c] * invstd);
    shift[c] = (float)(beta[c] - mean * gamma[c] * invstd);
}

__global__ void finish_eval(int64_t C, const float *gamma, const float *beta, const float *running_mean,
                            const float *running_var, float eps, float *scale, float *shift) {
    int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (c >= C) return;
    double invstd = 1.0 / sqrt((double)running_var[c] + (double)eps);
    scale[c] = (float)(gamma[c] * invstd);
    shift[c] = (float)(beta[c] - running_mean[c] * gamma[c] * invstd);
}

/* Index arithmetic in I: 32-bit when the tensor allows, since 64-bit division and remainder
 * cost tens of instructions per element in these memory-bound loops. */
template <typename I> __device__ __forceinline__ I channel_of(I i, bool nhwc, I C, I HW) {
    return nhwc ? i % C : (i / HW) % C;
}

/* y = act(scale[c] * x + shift[c] + residual), in memory order. */
template <typename T, typename I>
__global__ void apply_kernel(const T *x, T *y, const T *res, bool relu, const float *scale,
                             const float *shift, I n, bool nhwc, I C, I HW) {
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x) {
        I c = channel_of(i, nhwc, C, HW);
        float v = scale[c] * ld(x + i) + shift[c];
        if (res) v += ld(res + i);
        if (relu && v < 0.0f) v = 0.0f;
        st(y + i, v);
    }
}

template <typename T>
static void launch_apply(cudaStream_t s, const cuda_t4 &x, const cuda_t4 &y, const void *res, bool relu,
                         const float *scale, const float *shift, int sm_count) {
    int64_t n = x.n * x.c * x.h * x.w;
    if (n < INT32_MAX)
        apply_kernel<T, uint32_t><<<grid_for(n, 256, sm_count), 256, 0, s>>>(
            (const T *)x.data, (T *)y.data, (const T *)res, relu, scale, shift, (uint32_t)n, x.sc == 1,
            (uint32_t)x.c, (uint32_t)(x.h * x.w));
    else
        apply_kernel<T, int64_t><<<grid_for(n, 256, sm_count), 256, 0, s>>>(
            (const T *)x.data, (T *)y.data, (const T *)res, relu, scale, shift, n, x.sc == 1, x.c, x.h * x.w);
}

extern "C" cudaError_t cuda_launch_bn_forward_train(cudaStream_t s, cuda_elem e, cuda_t4 x, cuda_t4 y,
                                                    const void *residual, bool relu, const float *gamma,
                                                    const float *beta, float *running_mean,
                                                    float *running_var, float *save_mean, float *save_invstd,
                                                    float eps, float momentum, float *ws, int sm_count) {
    int64_t C = x.c, M = x.n * x.h * x.w, chunks = 1;
    unsigned cblocks = (unsigned)((C + 127) / 128);
    float *p1 = ws, *scale = ws + cuda_bn_workspace_floats(C, M, sm_count) - 4 * C;
    float *shift = scale + C;
    cudaError_t err;
    DISPATCH_ELEM(e, {
        launch_partial(s, x, sum_x<T>{(const T *)x.data}, p1, (float *)nullptr, sm_count, &chunks);
        if ((err = cudaGetLastError()) != cudaSuccess) return err;
        finish_mean<<<cblocks, 128, 0, s>>>(p1, chunks, C, M, save_mean);
        if ((err = cudaGetLastError()) != cudaSuccess) return err;
        launch_partial(s, x, sum_sq<T>{(const T *)x.data, save_mean}, p1, (float *)nullptr, sm_count,
                       &chunks);
        if ((err = cudaGetLastError()) != cudaSuccess) return err;
        finish_train<<<cblocks, 128, 0, s>>>(p1, chunks, C, M, gamma, beta, eps, momentum, save_mean,
                                             save_invstd, running_mean, running_var, scale, shift);
        if ((err = cudaGetLastError()) != cudaSuccess) return err;
        launch_apply<T>(s, x, y, residual, relu, scale, shift, sm_count);
    });
    return cudaGetLastError();
}

extern "C" cudaError_t cuda_launch_bn_forward_eval(cudaStream_t s, cuda_elem e, cuda_t4 x, cuda_t4 y,
                                                   const void *residual, bool relu, const float *gamma,
                                                   const float *beta, const float *running_mean,
                                                   const float *running_var, float eps, float *ws,
                                                   int sm_count) {
    int64_t C = x.c;
    float *scale = ws, *shift = ws + C;
    finish_eval<<<(unsigned)((C + 127) / 128), 128, 0, s>>>(C, gamma, beta, running_mean, running_var, eps,
                                                            scale, shift);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
    DISPATCH_ELEM(e, launch_apply<T>(s, x, y, residual, relu, scale, shift, sm_count));
    return cudaGetLastError();
}

/* dx = k (M dz - sum dz - xhat sum dz*xhat) with k = gamma invstd / M, written as
 * coef0 dz - coef1 - xhat coef2. */
__global__ void finish_backward(const float *p1, const float *p2, int64_t chunks, int64_t C, int64_t M,
                                const float *gamma, const float *invstd, float *dgamma, float *dbeta,
                                float *coef) {
    int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (c >= C) return;
    double sum_dz = chunk_sum(p1, chunks, C, c), sum_dz_xhat = chunk_sum(p2, chunks, C, c);
    dbeta[c] = (float)sum_dz;
    dgamma[c] = (float)sum_dz_xhat;
    double k = (double)gamma[c] * invstd[c] / (double)M;
    coef[c] = (float)(k * (double)M);
    coef[C + c] = (float)(k * sum_dz);
    coef[2 * C + c] = (float)(k * sum_dz_xhat);
}

/* dresidual may alias dy: each element's dy is read before dresidual is written. */
template <typename T, typename I>
__global__ void backward_apply(const T *dy, const T *x, const T *y, bool relu, const float *mean,
                               const float *invstd, const float *coef, T *dx, T *dres, I n, bool nhwc, I C,
                               I HW) {
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x) {
        I c = channel_of(i, nhwc, C, HW);
        float dz = (relu && ld(y + i) <= 0.0f) ? 0.0f : ld(dy + i);
        float xhat = (ld(x + i) - mean[c]) * invstd[c];
        if (dres) st(dres + i, dz);
        st(dx + i, coef[c] * dz - coef[C + c] - xhat * coef[2 * C + c]);
    }
}

extern "C" cudaError_t cuda_launch_bn_backward(cudaStream_t s, cuda_elem e, cuda_t4 dy, const void *x,
                                               const void *y, bool relu, const float *gamma,
                                               const float *save_mean, const float *save_invstd, void *dx,
                                               float *dgamma, float *dbeta, void *dresidual, float *ws,
                                               int sm_count) {
    int64_t C = dy.c, HW = dy.h * dy.w, M = dy.n * HW, n = M * C, chunks = 1;
    size_t total = cuda_bn_workspace_floats(C, M, sm_count);
    int64_t most_chunks = (int64_t)(total - 4 * C) / (2 * C);
    float *p1 = ws, *p2 = ws + most_chunks * C, *coef = ws + total - 4 * C;
    cudaError_t err;
    DISPATCH_ELEM(e, {
        sum_grad<T> op{(const T *)dy.data, (const T *)x, (const T *)y, save_mean, save_invstd, relu};
        launch_partial(s, dy, op, p1, p2, sm_count, &chunks);
        if ((err = cudaGetLastError()) != cudaSuccess) return err;
        finish_backward<<<(unsigned)((C + 127) / 128), 128, 0, s>>>(p1, p2, chunks, C, M, gamma, save_invstd,
                                                                    dgamma, dbeta, coef);
        if ((err = cudaGetLastError()) != cudaSuccess) return err;
        unsigned blocks = grid_for(n, 256, sm_count);
        if (n < INT32_MAX)
            backward_apply<T, uint32_t><<<blocks, 256, 0, s>>>(
                (const T *)dy.data, (const T *)x, (const T *)y, relu, save_mean, save_invstd, coef, (T *)dx,
                (T *)dresidual, (uint32_t)n, dy.sc == 1, (uint32_t)C, (uint32_t)HW);
        else
            backward_apply<T, int64_t><<<blocks, 256, 0, s>>>((const T *)dy.data, (const T *)x, (const T *)y,
                                                              relu, save_mean, save_invstd, coef, (T *)dx,
                                                              (T *)dresidual, n, dy.sc == 1, C, HW);
    });
    return cudaGetLastError();
}
