/* Optimizer updates over one flat f32 buffer with PyTorch's formulas, as the oracle writes
 * them. The scalars arrive in one struct argument so that a recorded graph node can be given
 * new ones (graph.c rewrites exactly that argument). */
#include <math.h>

#include "backends/cuda/kernel_util.cuh"

__global__ void sgd_kernel(cuda_sgd_hyper h, float *P, const float *G, float *M, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float g = G[i] + h.weight_decay * P[i];
        if (h.momentum != 0.0f) {
            float m = h.momentum * M[i] + g;
            M[i] = m;
            g = h.nesterov ? g + h.momentum * m : m;
        }
        P[i] -= h.lr * g;
    }
}

__global__ void adamw_kernel(cuda_adamw_hyper h, float *P, const float *G, float *M, float *V, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float p = P[i] * h.decay, g = G[i];
        float m = h.beta1 * M[i] + (1.0f - h.beta1) * g;
        float v = h.beta2 * V[i] + (1.0f - h.beta2) * g * g;
        M[i] = m;
        V[i] = v;
        float denom = sqrtf(v) / h.bc2_sqrt + h.eps;
        P[i] = p - h.step_size * m / denom;
    }
}

extern "C" cudaError_t cuda_launch_sgd(cudaStream_t s, cuda_sgd_hyper h, float *param, const float *grad,
                                       float *momentum_buf, int64_t n, int sm_count) {
    if (n == 0) return cudaSuccess;
    sgd_kernel<<<grid_for(n, 256, sm_count), 256, 0, s>>>(h, param, grad, momentum_buf, n);
    return cudaGetLastError();
}

extern "C" cudaError_t cuda_launch_adamw(cudaStream_t s, cuda_adamw_hyper h, float *param, const float *grad,
                                         float *exp_avg, float *exp_avg_sq, int64_t n, int sm_count) {
    if (n == 0) return cudaSuccess;
    adamw_kernel<<<grid_for(n, 256, sm_count), 256, 0, s>>>(h, param, grad, exp_avg, exp_avg_sq, n);
    return cudaGetLastError();
}

extern "C" const void *cuda_sgd_kernel(void) { return (const void *)sgd_kernel; }
extern "C" const void *cuda_adamw_kernel(void) { return (const void *)adamw_kernel; }
