/* ReLU, addition and the loss: memory-bound loops, vectorized for the running CPU and spread
 * over the OpenMP threads oneDNN also uses. */
#include <math.h>
#include <omp.h>

#include "backends/cpu_onednn/onednn.h"
#include "backends/host/host_kernels.h"

#define VECTORIZED __attribute__((target_clones("avx512f", "avx2", "default")))

/* Below this many elements a parallel region costs more than it saves. */
#define PARALLEL_MIN 32768

VECTORIZED static void relu_range(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

VECTORIZED static void relu_grad_range(const float *dy, const float *y, float *dx, int64_t n) {
    for (int64_t i = 0; i < n; i++) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

VECTORIZED static void add_range(const float *a, const float *b, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

/* Chunk [lo, hi) of thread t among T over n elements, 16-float aligned. */
static void chunk(int64_t n, int t, int T, int64_t *lo, int64_t *hi) {
    int64_t per = ((n + T - 1) / T + 15) & ~(int64_t)15;
    *lo = per * t < n ? per * t : n;
    *hi = per * (t + 1) < n ? per * (t + 1) : n;
}

#define FOR_CHUNKS(n, body)                                                                                  \
    do {                                                                                                     \
        int T_ = (n) < PARALLEL_MIN ? 1 : omp_get_max_threads();                                             \
        _Pragma("omp parallel num_threads(T_)") {                                                            \
            int64_t lo, hi;                                                                                  \
            chunk((n), omp_get_thread_num(), T_, &lo, &hi);                                                  \
            if (hi > lo) body;                                                                               \
        }                                                                                                    \
    } while (0)

bl_status onednn_relu_forward(bl_device *dev, const bl_tensor *x, bl_tensor *y) {
    int64_t n = bl_tensor_numel(x);
    const float *X = x->data;
    float *Y = y->data;
    onednn_wrote(dev, y);
    FOR_CHUNKS(n, relu_range(X + lo, Y + lo, hi - lo));
    return BL_OK;
}

bl_status onednn_relu_backward(bl_device *dev, const bl_tensor *dy, const bl_tensor *y, bl_tensor *dx) {
    int64_t n = bl_tensor_numel(y);
    const float *DY = dy->data, *Y = y->data;
    float *DX = dx->data;
    onednn_wrote(dev, dx);
    FOR_CHUNKS(n, relu_grad_range(DY + lo, Y + lo, DX + lo, hi - lo));
    return BL_OK;
}

bl_status onednn_add(bl_device *dev, const bl_tensor *a, const bl_tensor *b, bl_tensor *y) {
    int64_t n = bl_tensor_numel(a);
    const float *A = a->data, *B = b->data;
    float *Y = y->data;
    onednn_wrote(dev, y);
    FOR_CHUNKS(n, add_range(A + lo, B + lo, Y + lo, hi - lo));
    return BL_OK;
}

/* The shared host loop (backends/host): (N, classes) is tiny next to the network, and both
 * CPU backends keep tensors in host memory. Only the write tracking is ours. */
bl_status onednn_softmax_cross_entropy(bl_device *dev, const bl_tensor *logits, const bl_tensor *labels,
                                       float label_smoothing, bl_tensor *loss, bl_tensor *dlogits) {
    onednn_wrote(dev, loss);
    onednn_wrote(dev, dlogits);
    return bl_host_softmax_cross_entropy(logits->data, labels->data, logits->shape[0], logits->shape[1],
                                         label_smoothing, loss->data, dlogits ? dlogits->data : NULL);
}
