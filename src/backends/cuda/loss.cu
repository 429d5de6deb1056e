/* Softmax cross-entropy with label smoothing: one warp per example computes log-sum-exp, the
 * example's loss and its row of the gradient; one block then adds the examples' losses in
 * order (double), so the mean is deterministic and stays on the device (no host wait). */
#include <math.h>

#include "backends/cuda/kernel_util.cuh"

__device__ __forceinline__ float warp_max(float v) {
    for (int off = 16; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}
__device__ __forceinline__ float warp_sum(float v) {
    for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

__global__ void xent_rows(const float *logits, const int32_t *labels, int64_t N, int64_t C, float eps,
                          float *row_loss, float *dlogits) {
    int64_t n = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (n >= N) return; /* whole warps leave together: N is per warp */
    const float *z = logits + n * C;
    int32_t label = labels[n];
    bool valid = label >= 0 && label < C;
    float mx = -INFINITY;
    for (int64_t c = lane; c < C; c += 32) mx = fmaxf(mx, z[c]);
    mx = warp_max(mx);
    float sum = 0.0f, zsum = 0.0f;
    for (int64_t c = lane; c < C; c += 32) {
        sum += expf(z[c] - mx);
        zsum += z[c];
    }
    sum = warp_sum(sum);
    zsum = warp_sum(zsum);
    float lse = mx + logf(sum);
    if (lane == 0) {
        /* -log p_c = lse - z_c; smoothing spreads eps over all classes. */
        float nll = valid ? lse - z[label] : NAN;
        float mean_nll = lse - zsum / (float)C;
        row_loss[n] = (1.0f - eps) * nll + eps * mean_nll;
    }
    if (dlogits)
        for (int64_t c = lane; c < C; c += 32) {
            float target = eps / (float)C + (c == label ? 1.0f - eps : 0.0f);
            dlogits[n * C + c] = valid ? (expf(z[c] - lse) - target) / (float)N : NAN;
        }
}

__global__ void xent_mean(const float *row_loss, int64_t N, float *loss) {
    __shared__ double part[256];
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < N; i += 256) s += row_loss[i];
    part[threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double total = 0.0;
        for (int i = 0; i < 256; i++) total += part[i];
        loss[0] = (float)(total / (double)N);
    }
}

extern "C" cudaError_t cuda_launch_softmax_xent(cudaStream_t s, const float *logits, const int32_t *labels,
                                                int64_t N, int64_t C, float smoothing, float *row_loss,
                                                float *loss, float *dlogits) {
    if (N == 0) return cudaSuccess;
    unsigned blocks = (unsigned)((N * 32 + 255) / 256);
    xent_rows<<<blocks, 256, 0, s>>>(logits, labels, N, C, smoothing, row_loss, dlogits);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
    xent_mean<<<1, 256, 0, s>>>(row_loss, N, loss);
    return cudaGetLastError();
}
