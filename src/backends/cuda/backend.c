/* The CUDA backend's device: one stream per handle with cuDNN and cuBLAS bound to it, device
 * memory with out-of-memory reported in numbers, copies, the shared workspace, and the op
 * table. Kernels live in the .cu files; this file is plain C against the runtime API.
 * Opening a device loads cuDNN and cuBLAS (cuda_libs.c); counting devices does not. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backends.h"
#include "backends/cuda/cuda_internal.h"
#include "beamlet/cuda.h"

/* cuBLAS asks for 32 MiB of workspace on Hopper for its fastest kernels; giving it our own
 * fixed buffer also keeps it from allocating while a graph is recorded. */
#define CUBLAS_WORKSPACE_BYTES ((size_t)32 << 20)
#define DEFAULT_WORKSPACE_LIMIT ((size_t)1 << 30)

/* ---- errors ------------------------------------------------------------------------------ */

static const char *short_file(const char *file) {
    const char *s = strstr(file, "src/backends/cuda/");
    return s ? s + strlen("src/backends/cuda/") : file;
}

bl_status cuda_fail_rt(cudaError_t e, const char *call, const char *file, int line) {
    bl_status s = e == cudaErrorMemoryAllocation ? BL_ERR_OUT_OF_MEMORY : BL_ERR_DEVICE;
    if (e == cudaErrorMemoryAllocation) (void)cudaGetLastError(); /* not sticky: clear it */
    return bl_error(s, "%s failed: %s (%s) [%s:%d]", call, cudaGetErrorName(e), cudaGetErrorString(e),
                    short_file(file), line);
}

bl_status cuda_fail_dnn(cudnnStatus_t e, const char *call, const char *file, int line) {
    char detail[256];
    detail[0] = '\0';
    cudnnGetLastErrorString(detail, sizeof detail);
    bl_status s = e == CUDNN_STATUS_ALLOC_FAILED    ? BL_ERR_OUT_OF_MEMORY
                  : e == CUDNN_STATUS_NOT_SUPPORTED ? BL_ERR_UNSUPPORTED
                                                    : BL_ERR_DEVICE;
    return bl_error(s, "%s failed: %s%s%s [%s:%d]", call, cudnnGetErrorString(e), detail[0] ? ": " : "",
                    detail, short_file(file), line);
}

bl_status cuda_fail_blas(cublasStatus_t e, const char *call, const char *file, int line) {
    bl_status s = e == CUBLAS_STATUS_ALLOC_FAILED    ? BL_ERR_OUT_OF_MEMORY
                  : e == CUBLAS_STATUS_NOT_SUPPORTED ? BL_ERR_UNSUPPORTED
                                                     : BL_ERR_DEVICE;
    return bl_error(s, "%s failed: %s (%s) [%s:%d]", call, cublasGetStatusName(e), cublasGetStatusString(e),
                    short_file(file), line);
}

/* ---- context ----------------------------------------------------------------------------- */

static int cuda_device_count(void) {
    int n = 0;
    /* No driver or no GPU is an ordinary answer here (CI machines), not an error. */
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

bool cuda_capturing(cuda_ctx *c) {
    enum cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(c->stream, &st) != cudaSuccess) return false;
    return st != cudaStreamCaptureStatusNone;
}

static bl_status out_of_memory(int index, size_t bytes, const char *what) {
    size_t free_b = 0, total_b = 0;
    (void)cudaGetLastError();
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) (void)cudaGetLastError();
    return bl_error(BL_ERR_OUT_OF_MEMORY,
                    "cuda:%d: out of memory allocating %zu bytes%s (free %zu of %zu bytes)", index, bytes,
                    what, free_b, total_b);
}

static bl_status device_malloc(cuda_ctx *c, size_t bytes, void **ptr, const char *what) {
    *ptr = NULL;
    cudaError_t e = cudaMalloc(ptr, bytes ? bytes : 1);
    if (e == cudaErrorMemoryAllocation) return out_of_memory(c->index, bytes, what);
    if (e != cudaSuccess) return cuda_fail_rt(e, "cudaMalloc", __FILE__, __LINE__);
    return BL_OK;
}

bl_status cuda_workspace(cuda_ctx *c, size_t bytes, void **ptr) {
    if (bytes <= c->workspace_bytes) {
        *ptr = c->workspace;
        return BL_OK;
    }
    if (cuda_capturing(c))
        return bl_error(BL_ERR_UNSUPPORTED,
                        "cuda:%d: an op needs %zu bytes of workspace but %zu are planned, and the "
                        "workspace cannot grow while a graph is recorded (run the step once "
                        "eagerly before recording it)",
                        c->index, bytes, c->workspace_bytes);
    /* Ops already enqueued may still read the old buffer. */
    CU_TRY(cudaStreamSynchronize(c->stream));
    if (c->workspace) CU_TRY(cudaFree(c->workspace));
    c->workspace = NULL;
    c->workspace_bytes = 0;
    size_t rounded = (bytes + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1);
    BL_TRY(device_malloc(c, rounded, &c->workspace, " for the op workspace"));
    c->workspace_bytes = rounded;
    *ptr = c->workspace;
    return BL_OK;
}

cuda_t4 cuda_t4_of(const bl_tensor *t) {
    cuda_t4 v;
    int64_t s[4];
    bl_tensor_strides4(t, s);
    v.data = t->data;
    v.n = t->shape[0], v.c = t->shape[1], v.h = t->shape[2], v.w = t->shape[3];
    v.sn = s[0], v.sc = s[1], v.sh = s[2], v.sw = s[3];
    return v;
}

static void cuda_close(void *ctx) {
    cuda_ctx *c = ctx;
    if (!c) return;
    /* Teardown cannot report failures; it releases what it can. */
    (void)cudaSetDevice(c->index);
    if (c->stream) (void)cudaStreamSynchronize(c->stream);
    cuda_conv_plans_free(c);
    if (c->cudnn) cudnnDestroy(c->cudnn);
    if (c->cublas) cublasDestroy(c->cublas);
    if (c->cublas_workspace) (void)cudaFree(c->cublas_workspace);
    if (c->workspace) (void)cudaFree(c->workspace);
    if (c->copy_done) (void)cudaEventDestroy(c->copy_done);
    if (c->copy_stream) (void)cudaStreamDestroy(c->copy_stream);
    if (c->stream) (void)cudaStreamDestroy(c->stream);
    (void)cudaGetLastError();
    free(c);
}

static bl_status open_handles(cuda_ctx *c, char *description, size_t size) {
    CU_TRY(cudaSetDevice(c->index));
    struct cudaDeviceProp prop;
    CU_TRY(cudaGetDeviceProperties(&prop, c->index));
    c->sm_count = prop.multiProcessorCount;
    if (prop.major < 8)
        return bl_error(BL_ERR_UNSUPPORTED,
                        "cuda:%d: %s has compute capability %d.%d; beamlet "
                        "needs 8.0 or newer (bf16)",
                        c->index, prop.name, prop.major, prop.minor);
    CU_TRY(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    CU_TRY(cudaStreamCreateWithFlags(&c->copy_stream, cudaStreamNonBlocking));
    CU_TRY(cudaEventCreateWithFlags(&c->copy_done, cudaEventDisableTiming));
    DNN_TRY(cudnnCreate(&c->cudnn));
    DNN_TRY(cudnnSetStream(c->cudnn, c->stream));
    BLAS_TRY(cublasCreate(&c->cublas));
    BLAS_TRY(cublasSetStream(c->cublas, c->stream));
    /* After SetStream, which resets the workspace to cuBLAS's own pool. */
    BL_TRY(device_malloc(c, CUBLAS_WORKSPACE_BYTES, &c->cublas_workspace, " for cuBLAS"));
    c->cublas_workspace_bytes = CUBLAS_WORKSPACE_BYTES;
    BLAS_TRY(cublasSetWorkspace(c->cublas, c->cublas_workspace, c->cublas_workspace_bytes));
    /* Default math never lowers f32 to TF32 (f32 results must match the f32 oracle) but still
     * uses tensor cores for bf16 operands. */
    BLAS_TRY(cublasSetMathMode(c->cublas, CUBLAS_DEFAULT_MATH));
    BLAS_TRY(cublasSetPointerMode(c->cublas, CUBLAS_POINTER_MODE_HOST));
    c->workspace_limit = DEFAULT_WORKSPACE_LIMIT;
    const char *env = getenv("BEAMLET_CUDA_WORKSPACE_MB");
    if (env && atol(env) > 0) c->workspace_limit = (size_t)atol(env) << 20;
    if (c->workspace_limit > prop.totalGlobalMem / 4) c->workspace_limit = prop.totalGlobalMem / 4;
    snprintf(description, size, "%s, %.1f GiB, compute capability %d.%d, %d SMs", prop.name,
             (double)prop.totalGlobalMem / (double)(1u << 30), prop.major, prop.minor,
             prop.multiProcessorCount);
    return BL_OK;
}

static bl_status cuda_open(int index, void **ctx, char *description, size_t size) {
    /* The first open loads cuDNN and cuBLAS; a process that never opens a GPU never pays for
     * them (cuda_libs.h). */
    BL_TRY(cuda_libs_load());
    cuda_ctx *c = calloc(1, sizeof *c);
    if (!c) return bl_error(BL_ERR_OUT_OF_MEMORY, "cuda: cannot allocate context");
    c->index = index;
    bl_status s = open_handles(c, description, size);
    if (s != BL_OK) {
        cuda_close(c);
        return s;
    }
    *ctx = c;
    return BL_OK;
}

static bl_status cuda_alloc(void *ctx, size_t bytes, void **ptr) {
    cuda_ctx *c = ctx;
    CU_TRY(cudaSetDevice(c->index));
    if (cuda_capturing(c))
        return bl_error(BL_ERR_UNSUPPORTED,
                        "cuda:%d: cannot allocate %zu bytes while a graph is "
                        "recorded (allocate before recording)",
                        c->index, bytes);
    return device_malloc(c, bytes, ptr, "");
}

static void cuda_free_mem(void *ctx, void *ptr) {
    cuda_ctx *c = ctx;
    if (!ptr) return;
    (void)cudaSetDevice(c->index);
    cudaError_t e = cudaFree(ptr);
    if (e != cudaSuccess) bl_log_warn("cuda:%d: cudaFree failed: %s", c->index, cudaGetErrorString(e));
}

static bl_status cuda_copy(void *ctx, void *dst, const void *src, size_t bytes, int kind) {
    cuda_ctx *c = ctx;
    if (bytes == 0) return BL_OK;
    CU_TRY(cudaSetDevice(c->index));
    bool capturing = cuda_capturing(c);
    if (kind == BL_COPY_D2D) {
        CU_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream));
        return BL_OK;
    }
    if (capturing)
        return bl_error(BL_ERR_UNSUPPORTED,
                        "cuda:%d: a host %s copy cannot be recorded in a graph "
                        "(use bl_cuda_upload_async outside the recording)",
                        c->index, kind == BL_COPY_H2D ? "to device" : "from device");
    if (kind == BL_COPY_H2D) {
        /* From pageable memory the call returns once the source is staged; from pinned
         * memory it would not, so wait: callers may reuse `src` as soon as this returns. */
        CU_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream));
        struct cudaPointerAttributes attr;
        if (cudaPointerGetAttributes(&attr, src) != cudaSuccess) {
            (void)cudaGetLastError();
            CU_TRY(cudaStreamSynchronize(c->stream));
        } else if (attr.type != cudaMemoryTypeUnregistered) {
            CU_TRY(cudaStreamSynchronize(c->stream));
        }
        return BL_OK;
    }
    CU_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
    CU_TRY(cudaStreamSynchronize(c->stream));
    return BL_OK;
}

static bl_status cuda_memset_zero(void *ctx, void *dst, size_t bytes) {
    cuda_ctx *c = ctx;
    if (bytes == 0) return BL_OK;
    CU_TRY(cudaSetDevice(c->index));
    CU_TRY(cudaMemsetAsync(dst, 0, bytes, c->stream));
    return BL_OK;
}

static bl_status cuda_synchronize(void *ctx) {
    cuda_ctx *c = ctx;
    CU_TRY(cudaSetDevice(c->index));
    if (cuda_capturing(c))
        return bl_error(BL_ERR_UNSUPPORTED,
                        "cuda:%d: cannot wait for the device while a graph "
                        "is recorded",
                        c->index);
    CU_TRY(cudaStreamSynchronize(c->stream));
    return BL_OK;
}

static const bl_backend cuda_backend = {
    .name = "cuda",
    .kind = BL_DEVICE_CUDA,
    .device_count = cuda_device_count,
    .preferred_layout = BL_LAYOUT_NHWC,
    .layouts = (1u << BL_LAYOUT_NCHW) | (1u << BL_LAYOUT_NHWC),
    .open = cuda_open,
    .close = cuda_close,
    .alloc = cuda_alloc,
    .free = cuda_free_mem,
    .copy = cuda_copy,
    .memset_zero = cuda_memset_zero,
    .synchronize = cuda_synchronize,
    .supports_dtype = bl_op_mixed_bf16, /* bf16 activations, f32 loss and optimizers */
    .ops = BL_BACKEND_OPS(cuda),
};

const bl_backend *bl_backend_cuda(void) { return &cuda_backend; }

/* ---- beamlet/cuda.h: uploads, pinned memory, cache statistics, versions ------------------ */

static bl_status cuda_device_ctx(bl_device *dev, const char *what, cuda_ctx **out) {
    if (!dev || dev->backend != &cuda_backend)
        return bl_error(BL_ERR_INVALID_ARG, "%s: %s is not a CUDA device", what, dev ? dev->name : "(null)");
    *out = dev->ctx;
    CU_TRY(cudaSetDevice((*out)->index));
    return BL_OK;
}

bl_status bl_cuda_host_alloc(size_t bytes, void **ptr) {
    *ptr = NULL;
    cudaError_t e = cudaMallocHost(ptr, bytes ? bytes : 1);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        return bl_error(BL_ERR_OUT_OF_MEMORY,
                        "cuda: out of pinned host memory allocating %zu "
                        "bytes",
                        bytes);
    }
    if (e != cudaSuccess) return cuda_fail_rt(e, "cudaMallocHost", __FILE__, __LINE__);
    return BL_OK;
}

void bl_cuda_host_free(void *ptr) {
    if (ptr && cudaFreeHost(ptr) != cudaSuccess) (void)cudaGetLastError();
}

bl_status bl_cuda_upload_async(bl_device *dev, void *dst, const void *src, size_t bytes) {
    cuda_ctx *c = NULL;
    BL_TRY(cuda_device_ctx(dev, "bl_cuda_upload_async", &c));
    if (bytes == 0) return BL_OK;
    CU_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->copy_stream));
    CU_TRY(cudaEventRecord(c->copy_done, c->copy_stream));
    CU_TRY(cudaStreamWaitEvent(c->stream, c->copy_done, 0));
    return BL_OK;
}

bl_status bl_cuda_upload_wait(bl_device *dev) {
    cuda_ctx *c = NULL;
    BL_TRY(cuda_device_ctx(dev, "bl_cuda_upload_wait", &c));
    CU_TRY(cudaEventSynchronize(c->copy_done));
    return BL_OK;
}

bl_status bl_cuda_convert(bl_device *dev, const bl_tensor *src, bl_tensor *dst) {
    cuda_ctx *c = NULL;
    BL_TRY(cuda_device_ctx(dev, "bl_cuda_convert", &c));
    if (!src || !dst || src->device != dev || dst->device != dev)
        return bl_error(BL_ERR_INVALID_ARG, "bl_cuda_convert: tensors must live on %s", dev->name);
    bool same_shape = src->ndim == dst->ndim;
    for (int i = 0; same_shape && i < src->ndim; i++) same_shape = src->shape[i] == dst->shape[i];
    if (!same_shape || (src->ndim == 4 && src->layout != dst->layout))
        return bl_error(BL_ERR_INVALID_ARG, "bl_cuda_convert: shapes or layouts differ");
    bool ok_types =
        (src->dtype == BL_F32 || src->dtype == BL_BF16) && (dst->dtype == BL_F32 || dst->dtype == BL_BF16);
    if (!ok_types)
        return bl_error(BL_ERR_UNSUPPORTED, "bl_cuda_convert: %s to %s (f32 and bf16 only)",
                        bl_dtype_name(src->dtype), bl_dtype_name(dst->dtype));
    CU_TRY(cuda_launch_convert(c->stream, cuda_elem_of(src), cuda_elem_of(dst), src->data, dst->data,
                               bl_tensor_numel(src)));
    return BL_OK;
}

bl_status bl_cuda_plan_stats_get(bl_device *dev, bl_cuda_plan_stats *out) {
    cuda_ctx *c = NULL;
    BL_TRY(cuda_device_ctx(dev, "bl_cuda_plan_stats_get", &c));
    out->plans = c->plan_count;
    out->hits = c->plan_hits;
    out->misses = c->plan_misses;
    out->workspace_bytes = c->workspace_bytes;
    return BL_OK;
}

bl_status bl_cuda_versions_get(bl_cuda_versions *out) {
    memset(out, 0, sizeof *out);
    CU_TRY(cudaRuntimeGetVersion(&out->runtime));
    if (cudaDriverGetVersion(&out->driver) != cudaSuccess) (void)cudaGetLastError();
    BL_TRY(cuda_libs_load()); /* no device need be open */
    out->cudnn = (int)cudnnGetVersion();
    int major = 0, minor = 0, patch = 0;
    BLAS_TRY(cublasGetProperty(MAJOR_VERSION, &major));
    BLAS_TRY(cublasGetProperty(MINOR_VERSION, &minor));
    BLAS_TRY(cublasGetProperty(PATCH_LEVEL, &patch));
    out->cublas = major * 10000 + minor * 100 + patch;
    return BL_OK;
}
