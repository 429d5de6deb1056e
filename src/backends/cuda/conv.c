/* Convolutions through cuDNN's convolution API, with one plan per shape.
 *
 * A plan holds the descriptors and the algorithm for one (direction, dtype, layouts, shape)
 * and is made the first time that key is seen: cuDNN's heuristics propose algorithms, and
 * outside a graph recording cudnnFind*AlgorithmEx times them on the real buffers with the
 * shared workspace grown to fit (once; later steps reuse plan and workspace). While a graph is
 * recorded no search can run (it synchronizes), so a new shape then takes the best heuristic
 * choice that fits the workspace already planned.
 *
 * Precision: f32 convolutions run with CUDNN_FMA_MATH, which excludes TF32 (default math lets
 * Ampere and Hopper round f32 operands to TF32, and f32 results must match the f32 oracle);
 * bf16 convolutions use tensor cores with f32 accumulation. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cuda/cuda_internal.h"

typedef enum conv_dir {
    CONV_FWD = 0,
    CONV_BWD_DATA,
    CONV_BWD_FILTER
} conv_dir;

typedef struct conv_key {
    int dir, dtype, x_layout, w_layout, y_layout;
    int64_t n, c, h, w, k, r, s, p, q;
    int stride_h, stride_w, pad_h, pad_w;
    int align; /* smallest alignment of the three buffers, capped at 256 bytes */
} conv_key;

struct cuda_conv_plan {
    conv_key key;
    cudnnTensorDescriptor_t x, y; /* x: (N,C,H,W) input side, y: (N,K,P,Q) output side */
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    int algo; /* a cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t */
    size_t workspace;
    cuda_conv_plan *next;
};

static const char *const dir_names[] = {"forward", "backward data", "backward filter"};

static void plan_free(cuda_conv_plan *p) {
    if (p->x) cudnnDestroyTensorDescriptor(p->x);
    if (p->y) cudnnDestroyTensorDescriptor(p->y);
    if (p->w) cudnnDestroyFilterDescriptor(p->w);
    if (p->conv) cudnnDestroyConvolutionDescriptor(p->conv);
    free(p);
}

void cuda_conv_plans_free(cuda_ctx *c) {
    while (c->plans) {
        cuda_conv_plan *next = c->plans->next;
        plan_free(c->plans);
        c->plans = next;
    }
    c->plan_count = 0;
}

static cudnnTensorFormat_t format_of(bl_layout l) {
    return l == BL_LAYOUT_NHWC ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
}

static bl_status make_descriptors(cuda_conv_plan *p) {
    const conv_key *k = &p->key;
    cudnnDataType_t dt = k->dtype == BL_BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
    DNN_TRY(cudnnCreateTensorDescriptor(&p->x));
    DNN_TRY(cudnnCreateTensorDescriptor(&p->y));
    DNN_TRY(cudnnCreateFilterDescriptor(&p->w));
    DNN_TRY(cudnnCreateConvolutionDescriptor(&p->conv));
    DNN_TRY(cudnnSetTensor4dDescriptor(p->x, format_of((bl_layout)k->x_layout), dt, (int)k->n, (int)k->c,
                                       (int)k->h, (int)k->w));
    DNN_TRY(cudnnSetTensor4dDescriptor(p->y, format_of((bl_layout)k->y_layout), dt, (int)k->n, (int)k->k,
                                       (int)k->p, (int)k->q));
    DNN_TRY(cudnnSetFilter4dDescriptor(p->w, dt, format_of((bl_layout)k->w_layout), (int)k->k, (int)k->c,
                                       (int)k->r, (int)k->s));
    /* f32 accumulation for both dtypes (bf16 in, f32 compute, bf16 out). */
    DNN_TRY(cudnnSetConvolution2dDescriptor(p->conv, k->pad_h, k->pad_w, k->stride_h, k->stride_w, 1, 1,
                                            CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    DNN_TRY(
        cudnnSetConvolutionMathType(p->conv, k->dtype == BL_BF16 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));
    return BL_OK;
}

/* The three directions share this shape of result; copy them into it to pick uniformly. */
typedef struct algo_choice {
    int algo;
    cudnnStatus_t status;
    size_t memory;
    cudnnMathType_t math;
} algo_choice;

#define MAX_ALGOS 16
#define COPY_RESULTS(dst, r, n)                                                                              \
    for (int i = 0; i < (n); i++) (dst)[i] = (algo_choice) {                                                 \
            (int)(r)[i].algo, (r)[i].status, (r)[i].memory, (r)[i].mathType                                  \
        }

static bool acceptable(const conv_key *k, const algo_choice *a) {
    if (a->status != CUDNN_STATUS_SUCCESS) return false;
    /* f32 runs only with FMA math: default math lets Ampere and Hopper use TF32. With FMA
     * set on the descriptor cuDNN reports FMA for what it proposes (PyTorch asserts the
     * same); anything claiming tensor-op math is refused whatever it reports. */
    if (k->dtype == BL_F32 &&
        (a->math == CUDNN_TENSOR_OP_MATH || a->math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION))
        return false;
    return true;
}

/* The math type to run an algorithm with: what cuDNN measured it with, except that f32 always
 * runs with FMA math, which rules TF32 out. */
static cudnnMathType_t math_for(const conv_key *k, cudnnMathType_t reported) {
    return k->dtype == BL_F32 ? CUDNN_FMA_MATH : reported;
}

static bl_status heuristics(cuda_ctx *c, cuda_conv_plan *p, algo_choice *out, int *count) {
    int n = 0;
    *count = 0;
    switch ((conv_dir)p->key.dir) {
        case CONV_FWD: {
            cudnnConvolutionFwdAlgoPerf_t r[MAX_ALGOS];
            DNN_TRY(cudnnGetConvolutionForwardAlgorithm_v7(c->cudnn, p->x, p->w, p->conv, p->y, MAX_ALGOS, &n,
                                                           r));
            COPY_RESULTS(out, r, n);
            break;
        }
        case CONV_BWD_DATA: {
            cudnnConvolutionBwdDataAlgoPerf_t r[MAX_ALGOS];
            DNN_TRY(cudnnGetConvolutionBackwardDataAlgorithm_v7(c->cudnn, p->w, p->y, p->conv, p->x,
                                                                MAX_ALGOS, &n, r));
            COPY_RESULTS(out, r, n);
            break;
        }
        case CONV_BWD_FILTER: {
            cudnnConvolutionBwdFilterAlgoPerf_t r[MAX_ALGOS];
            DNN_TRY(cudnnGetConvolutionBackwardFilterAlgorithm_v7(c->cudnn, p->x, p->y, p->conv, p->w,
                                                                  MAX_ALGOS, &n, r));
            COPY_RESULTS(out, r, n);
            break;
        }
    }
    *count = n;
    return BL_OK;
}

/* Times the algorithms on the real buffers (a, b: the two inputs, out: the output, which the
 * search overwrites). */
static bl_status find(cuda_ctx *c, cuda_conv_plan *p, const void *a, const void *b, void *out, void *ws,
                      size_t ws_bytes, algo_choice *res, int *count) {
    int n = 0;
    *count = 0;
    switch ((conv_dir)p->key.dir) {
        case CONV_FWD: {
            cudnnConvolutionFwdAlgoPerf_t r[MAX_ALGOS];
            DNN_TRY(cudnnFindConvolutionForwardAlgorithmEx(c->cudnn, p->x, a, p->w, b, p->conv, p->y, out,
                                                           MAX_ALGOS, &n, r, ws, ws_bytes));
            COPY_RESULTS(res, r, n);
            break;
        }
        case CONV_BWD_DATA: {
            cudnnConvolutionBwdDataAlgoPerf_t r[MAX_ALGOS];
            DNN_TRY(cudnnFindConvolutionBackwardDataAlgorithmEx(c->cudnn, p->w, a, p->y, b, p->conv, p->x,
                                                                out, MAX_ALGOS, &n, r, ws, ws_bytes));
            COPY_RESULTS(res, r, n);
            break;
        }
        case CONV_BWD_FILTER: {
            cudnnConvolutionBwdFilterAlgoPerf_t r[MAX_ALGOS];
            DNN_TRY(cudnnFindConvolutionBackwardFilterAlgorithmEx(c->cudnn, p->x, a, p->y, b, p->conv, p->w,
                                                                  out, MAX_ALGOS, &n, r, ws, ws_bytes));
            COPY_RESULTS(res, r, n);
            break;
        }
    }
    *count = n;
    return BL_OK;
}

static bl_status workspace_size(cuda_ctx *c, cuda_conv_plan *p, int algo, size_t *bytes) {
    switch ((conv_dir)p->key.dir) {
        case CONV_FWD:
            DNN_TRY(cudnnGetConvolutionForwardWorkspaceSize(c->cudnn, p->x, p->w, p->conv, p->y,
                                                            (cudnnConvolutionFwdAlgo_t)algo, bytes));
            break;
        case CONV_BWD_DATA:
            DNN_TRY(cudnnGetConvolutionBackwardDataWorkspaceSize(c->cudnn, p->w, p->y, p->conv, p->x,
                                                                 (cudnnConvolutionBwdDataAlgo_t)algo, bytes));
            break;
        case CONV_BWD_FILTER:
            DNN_TRY(cudnnGetConvolutionBackwardFilterWorkspaceSize(
                c->cudnn, p->x, p->y, p->conv, p->w, (cudnnConvolutionBwdFilterAlgo_t)algo, bytes));
            break;
    }
    return BL_OK;
}

/* Picks the plan's algorithm; `search` allows timing on the buffers. */
static bl_status choose(cuda_ctx *c, cuda_conv_plan *p, bool search, const void *a, const void *b,
                        void *out) {
    algo_choice h[MAX_ALGOS];
    int nh = 0;
    BL_TRY(heuristics(c, p, h, &nh));
    int picked = -1;
    cudnnMathType_t picked_math = CUDNN_DEFAULT_MATH;
    if (search) {
        /* Room for the hungriest proposal within the limit, then let cuDNN time them. */
        size_t want = 0;
        for (int i = 0; i < nh; i++)
            if (acceptable(&p->key, &h[i]) && h[i].memory <= c->workspace_limit && h[i].memory > want)
                want = h[i].memory;
        void *ws = NULL;
        if (cuda_workspace(c, want, &ws) != BL_OK) {
            /* Memory is short: search within the workspace there is. */
            bl_log_warn("cuda:%d: conv %s search without the %zu-byte workspace it wanted: %s", c->index,
                        dir_names[p->key.dir], want, bl_last_error());
            bl_clear_error();
        }
        algo_choice f[MAX_ALGOS];
        int nf = 0;
        bl_status s = find(c, p, a, b, out, c->workspace, c->workspace_bytes, f, &nf);
        if (s != BL_OK) {
            bl_log_warn("cuda:%d: conv %s algorithm search failed (%s); using heuristics", c->index,
                        dir_names[p->key.dir], bl_last_error());
            bl_clear_error();
        }
        for (int i = 0; s == BL_OK && i < nf && picked < 0; i++)
            if (acceptable(&p->key, &f[i]) && f[i].memory <= c->workspace_bytes)
                picked = f[i].algo, picked_math = f[i].math;
    }
    for (int i = 0; i < nh && picked < 0; i++) {
        if (!acceptable(&p->key, &h[i])) continue;
        size_t need = 0;
        /* The workspace an algorithm needs can depend on the math type it runs with. */
        DNN_TRY(cudnnSetConvolutionMathType(p->conv, math_for(&p->key, h[i].math)));
        if (workspace_size(c, p, h[i].algo, &need) != BL_OK) {
            bl_clear_error();
            continue;
        }
        if (need <= c->workspace_bytes || (!cuda_capturing(c) && need <= c->workspace_limit))
            picked = h[i].algo, picked_math = h[i].math;
    }
    if (picked < 0)
        return bl_error(BL_ERR_UNSUPPORTED,
                        "cuda:%d: cuDNN offers no usable %s convolution "
                        "algorithm for %s N=%lld C=%lld H=%lld W=%lld K=%lld R=%lld S=%lld within "
                        "%zu bytes of workspace",
                        c->index, dir_names[p->key.dir], bl_dtype_name((bl_dtype)p->key.dtype),
                        (long long)p->key.n, (long long)p->key.c, (long long)p->key.h, (long long)p->key.w,
                        (long long)p->key.k, (long long)p->key.r, (long long)p->key.s,
                        cuda_capturing(c) ? c->workspace_bytes : c->workspace_limit);
    p->algo = picked;
    /* cuDNN picks tensor-core kernels from the algorithm and the descriptor's math type
     * together, so the descriptor carries the math type the algorithm was measured with. */
    DNN_TRY(cudnnSetConvolutionMathType(p->conv, math_for(&p->key, picked_math)));
    BL_TRY(workspace_size(c, p, picked, &p->workspace));
    void *ws;
    return cuda_workspace(c, p->workspace, &ws);
}

/* The plan for this call, made on first use. a, b, out: the call's buffers, for the search. */
static bl_status get_plan(cuda_ctx *c, conv_dir dir, const bl_conv2d_params *prm, const bl_tensor *x,
                          const bl_tensor *w, const bl_tensor *y, const void *a, const void *b, void *out,
                          bool may_search, cuda_conv_plan **plan) {
    conv_key k;
    memset(&k, 0, sizeof k); /* padding bytes too: keys are compared with memcmp */
    k.dir = dir, k.dtype = x->dtype;
    k.x_layout = x->layout, k.w_layout = w->layout, k.y_layout = y->layout;
    k.n = x->shape[0], k.c = x->shape[1], k.h = x->shape[2], k.w = x->shape[3];
    k.k = w->shape[0], k.r = w->shape[2], k.s = w->shape[3], k.p = y->shape[2], k.q = y->shape[3];
    k.stride_h = prm->stride_h, k.stride_w = prm->stride_w;
    k.pad_h = prm->pad_h, k.pad_w = prm->pad_w;
    /* Some kernels need 16-byte aligned buffers: a plan timed on aligned buffers must not be
     * reused for views at odd offsets (a model's activations are views into one block). */
    uintptr_t bits = (uintptr_t)a | (uintptr_t)b | (uintptr_t)out | 256;
    k.align = (int)(bits & (~bits + 1));
    for (cuda_conv_plan *p = c->plans; p; p = p->next)
        if (memcmp(&p->key, &k, sizeof k) == 0) {
            c->plan_hits++;
            *plan = p;
            return BL_OK;
        }
    c->plan_misses++;
    cuda_conv_plan *p = calloc(1, sizeof *p);
    if (!p) return bl_error(BL_ERR_OUT_OF_MEMORY, "cuda: convolution plan");
    p->key = k;
    bool search = may_search && !cuda_capturing(c) && !getenv("BEAMLET_CUDNN_NO_SEARCH");
    bl_status s = make_descriptors(p);
    if (s == BL_OK) s = choose(c, p, search, a, b, out);
    if (s != BL_OK) {
        plan_free(p);
        return bl_error_context(s, "conv %s plan", dir_names[dir]);
    }
    p->next = c->plans;
    c->plans = p;
    c->plan_count++;
    *plan = p;
    return BL_OK;
}

bl_status cuda_conv2d_forward(bl_device *dev, const bl_conv2d_params *prm, const bl_tensor *x,
                              const bl_tensor *w, const bl_tensor *bias, const bl_tensor *residual, bool relu,
                              bl_tensor *y) {
    cuda_ctx *c = cuda_ctx_of(dev);
    CU_TRY(cudaSetDevice(c->index));
    /* A residual living in y itself is added by cuDNN (beta = 1); the search would overwrite
     * it, so such a plan comes from the heuristics. */
    bool in_place = residual && residual->data == y->data;
    cuda_conv_plan *p;
    BL_TRY(get_plan(c, CONV_FWD, prm, x, w, y, x->data, w->data, y->data, !in_place, &p));
    void *ws;
    BL_TRY(cuda_workspace(c, p->workspace, &ws)); /* regrows if a failed growth emptied it */
    float alpha = 1.0f, beta = in_place ? 1.0f : 0.0f;
    DNN_TRY(cudnnConvolutionForward(c->cudnn, &alpha, p->x, x->data, p->w, w->data, p->conv,
                                    (cudnnConvolutionFwdAlgo_t)p->algo, ws, p->workspace, &beta, p->y,
                                    y->data));
    const void *res = residual && !in_place ? residual->data : NULL;
    if (bias || res || relu) {
        CU_TRY(cuda_launch_bias_residual_relu(c->stream, cuda_elem_of(y), cuda_t4_of(y),
                                              bias ? bias->data : NULL, res, relu, c->sm_count));
    }
    return BL_OK;
}

bl_status cuda_conv2d_backward_data(bl_device *dev, const bl_conv2d_params *prm, const bl_tensor *dy,
                                    const bl_tensor *w, bl_tensor *dx) {
    cuda_ctx *c = cuda_ctx_of(dev);
    CU_TRY(cudaSetDevice(c->index));
    cuda_conv_plan *p;
    BL_TRY(get_plan(c, CONV_BWD_DATA, prm, dx, w, dy, w->data, dy->data, dx->data, true, &p));
    void *ws;
    BL_TRY(cuda_workspace(c, p->workspace, &ws));
    float alpha = 1.0f, beta = 0.0f;
    DNN_TRY(cudnnConvolutionBackwardData(c->cudnn, &alpha, p->w, w->data, p->y, dy->data, p->conv,
                                         (cudnnConvolutionBwdDataAlgo_t)p->algo, ws, p->workspace, &beta,
                                         p->x, dx->data));
    return BL_OK;
}

bl_status cuda_conv2d_backward_filter(bl_device *dev, const bl_conv2d_params *prm, const bl_tensor *x,
                                      const bl_tensor *dy, bl_tensor *dw) {
    cuda_ctx *c = cuda_ctx_of(dev);
    CU_TRY(cudaSetDevice(c->index));
    cuda_conv_plan *p;
    BL_TRY(get_plan(c, CONV_BWD_FILTER, prm, x, dw, dy, x->data, dy->data, dw->data, true, &p));
    void *ws;
    BL_TRY(cuda_workspace(c, p->workspace, &ws));
    float alpha = 1.0f, beta = 0.0f;
    DNN_TRY(cudnnConvolutionBackwardFilter(c->cudnn, &alpha, p->x, x->data, p->y, dy->data, p->conv,
                                           (cudnnConvolutionBwdFilterAlgo_t)p->algo, ws, p->workspace, &beta,
                                           p->w, dw->data));
    return BL_OK;
}
