/* Convolutions on oneDNN: NHWC activations, OHWI user weights reordered to the format the
 * kernel picks. 3x3 stride-1 convolutions with 16-multiple channels run as Winograd (below);
 * the rest on the direct kernels.
 *
 * The forward fuses the inference epilogue into one primitive: bias, then the residual as a
 * `sum` post-op (oneDNN accumulates into y, so y first receives a copy of the residual), then
 * ReLU as an `eltwise` post-op. Convolutions with a bias are the folded-BN inference path, so
 * their blocked weights are cached; training convolutions reorder every call, because their
 * weights change every step anyway. */
#include <stdlib.h>
#include <string.h>

#include "backends/cpu_onednn/onednn.h"
#include "backends/host/host_buffer.h"

enum {
    F_BIAS = 1,
    F_RESIDUAL = 2,
    F_RELU = 4
};

static onednn_key conv_key(onednn_ctx *c, int kind, const bl_conv2d_params *p, const bl_tensor *x,
                           const bl_tensor *w, const bl_tensor *y, int flags) {
    onednn_key k;
    memset(&k, 0, sizeof k);
    k.kind = kind;
    k.threads = onednn_threads();
    k.d[15] = c->bf16;
    for (int i = 0; i < 4; i++) {
        k.d[i] = x->shape[i];
        k.d[4 + i] = w->shape[i];
    }
    k.d[8] = y->shape[2];
    k.d[9] = y->shape[3];
    k.d[10] = p->stride_h;
    k.d[11] = p->stride_w;
    k.d[12] = p->pad_h;
    k.d[13] = p->pad_w;
    k.d[14] = flags;
    return k;
}

typedef struct conv_mds {
    dnnl_memory_desc_t x, w_any, b, y;
    dnnl_dims_t strides, pad_l, pad_r;
} conv_mds;

static bl_status conv_mds_init(conv_mds *m, const bl_conv2d_params *p, const bl_tensor *x, const bl_tensor *w,
                               const bl_tensor *y, const char *op) {
    BL_TRY(onednn_md4(&m->x, x->shape, op));
    BL_TRY(onednn_md4(&m->y, y->shape, op));
    dnnl_dims_t wd = {w->shape[0], w->shape[1], w->shape[2], w->shape[3]}, bd = {w->shape[0]};
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&m->w_any, 4, wd, dnnl_f32, dnnl_format_tag_any), op);
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&m->b, 1, bd, dnnl_f32, dnnl_a), op);
    m->strides[0] = p->stride_h;
    m->strides[1] = p->stride_w;
    m->pad_l[0] = p->pad_h;
    m->pad_l[1] = p->pad_w;
    /* Right padding so that oneDNN's output size equals ours: (H + pl + pr - R) / s + 1 = P. */
    m->pad_r[0] = (y->shape[2] - 1) * p->stride_h + w->shape[2] - x->shape[2] - p->pad_h;
    m->pad_r[1] = (y->shape[3] - 1) * p->stride_w + w->shape[3] - x->shape[3] - p->pad_w;
    return BL_OK;
}

static bl_status make_attr(dnnl_primitive_attr_t *attr, bool residual, bool relu, const char *op) {
    DNNL_CHECK(dnnl_primitive_attr_create(attr), op);
    dnnl_status_t st = dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user);
    if (st == dnnl_success && (residual || relu)) {
        dnnl_post_ops_t po;
        st = dnnl_post_ops_create(&po);
        if (st == dnnl_success && residual) st = dnnl_post_ops_append_sum(po, 1.0f);
        if (st == dnnl_success && relu)
            st = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f);
        if (st == dnnl_success) st = dnnl_primitive_attr_set_post_ops(*attr, po);
        dnnl_post_ops_destroy(po);
    }
    if (st != dnnl_success) {
        dnnl_primitive_attr_destroy(*attr);
        return bl_error(BL_ERR_DEVICE, "onednn %s: building attributes failed (%s)", op,
                        onednn_status_name(st));
    }
    return BL_OK;
}

/* oneDNN 2.6 ranks brgconv first for NHWC, but for the deepest ResNet layers (3x3 stride 1,
 * 512+ channels, at most 8x8 outputs, batched) its direct jit:avx512_core kernel measured
 * 1.15-1.5x faster on AVX-512 (CIFAR layer4 at batch 64: 44 vs 68 ms, one thread, min of 8;
 * ImageNet layer4 at batch 16: 53 vs 61 ms). Everywhere else brgconv was as fast or faster. */
static const char *preferred_impl(const conv_mds *m, const dnnl_memory_desc_t *w) {
    const dnnl_dim_t *xd = m->x.dims, *yd = m->y.dims, *wd = w->dims;
    bool deep = wd[2] == 3 && wd[3] == 3 && m->strides[0] == 1 && m->strides[1] == 1 && xd[1] >= 512 &&
                yd[2] * yd[3] <= 64 && xd[0] >= 8;
    return deep ? "jit:avx512_core" : NULL;
}

/* oneDNN 2.6.3's jit_1x1 backward-weights convolution (jit_1x1:avx2 and jit_1x1:avx512_core)
 * writes and reads past the scratchpad it reports, for strided 1x1 convolutions on NHWC data
 * whose input channels are not a multiple of the vector block (8 floats on AVX2, 16 on
 * AVX-512): the ResNet downsample convolution of widths 1-15 (layer2's has IC = width).
 *
 * Why: for a strided 1x1 convolution it first copies the strided input pixels into a compact
 * per-thread workspace in the scratchpad ("reduce to unit stride", rtus). For NHWC it books
 * that workspace as is * IC floats per thread (jit_uni_1x1_conv_utils.hpp,
 * rtus_prepare_space_info), and each copy advances IC floats per pixel, but each piece of the
 * spatial range starts at sp * ic_block (jit_avx2_1x1_convolution.cpp and
 * jit_avx512_common_1x1_convolution.cpp, execute_backward_weights): with IC < ic_block the
 * later pieces start past the thread's share. The last thread runs off the end of the
 * scratchpad (valgrind: an 8-byte write and 4-byte reads "0 bytes after a block of size 4,224",
 * the whole scratchpad of IC 4, OC 8, 32x32 -> 16x16, batch 64, one thread, on AVX2); the
 * others write into their neighbour's share while it computes (wrong gradients, races). The
 * heap corruption that follows crashed `beamlet train --width=4` in malloc and hung 2-3
 * threads in oneDNN's barriers. Odd image sizes never take this path (the reduce-to-unit-stride
 * copy needs the input to be exactly twice the output), even ones do. tests/backends/
 * test_guard_pages.c and test_onednn_shapes.c fault with this workaround off. oneDNN 3.2
 * (PyPI onednn-cpu-gomp 2023.2.0) overruns the same way, and the code is unchanged in oneDNN's
 * sources through 3.7.1 and its main branch of March 2025.
 *
 * So those implementations are skipped for every strided case whose IC is not a multiple of 16
 * (by the code only IC < ic_block overruns, but the workspace's indexing disagrees with its
 * booking for all of them, and nothing tests the rest), and oneDNN's next one (the direct
 * jit:avx512_core / jit:avx2 kernel) runs; the downsample's weight gradient is a small part of
 * a step. BEAMLET_ONEDNN_WORKAROUNDS=0 turns the skip off, to check whether a newer oneDNN
 * still needs it. */
static bool overruns_its_scratchpad(int kind, const conv_mds *m, const char *impl) {
    static const int largest_block = 16;
    if (kind != OK_CONV_BWD_WEIGHTS || strncmp(impl, "jit_1x1:", 8) != 0) return false;
    const char *env = getenv("BEAMLET_ONEDNN_WORKAROUNDS");
    if (env && strcmp(env, "0") == 0) return false;
    bool strided = m->strides[0] != 1 || m->strides[1] != 1;
    return strided && m->x.dims[1] % largest_block != 0;
}

/* Walks oneDNN's ranked implementations for `kind`, skips those known to overrun their
 * buffers, and keeps `want` when offered, else the first one left. */
static dnnl_status_t create_ranked(dnnl_primitive_desc_t *pd, const void *desc, dnnl_primitive_attr_t attr,
                                   dnnl_engine_t engine, const_dnnl_primitive_desc_t hint, int kind,
                                   const conv_mds *m, const char *want) {
    dnnl_primitive_desc_iterator_t it;
    dnnl_status_t st = dnnl_primitive_desc_iterator_create(&it, desc, attr, engine, hint);
    if (st != dnnl_success) return st;
    /* A few candidates suffice to find `want`; skipping goes on until one is left. */
    enum {
        MAX_LOOKED_AT_FOR_WANT = 8
    };
    dnnl_primitive_desc_t first = NULL, chosen = NULL;
    for (int i = 0; !chosen; i++) {
        dnnl_primitive_desc_t cand = dnnl_primitive_desc_iterator_fetch(it);
        if (!cand) break;
        const char *impl = "";
        dnnl_primitive_desc_query(cand, dnnl_query_impl_info_str, 0, &impl);
        if (overruns_its_scratchpad(kind, m, impl))
            dnnl_primitive_desc_destroy(cand);
        else if (want && strcmp(impl, want) == 0)
            chosen = cand;
        else if (!first)
            first = cand;
        else
            dnnl_primitive_desc_destroy(cand);
        if (first && (!want || i + 1 >= MAX_LOOKED_AT_FOR_WANT)) break;
        if (dnnl_primitive_desc_iterator_next(it) != dnnl_success) break;
    }
    dnnl_primitive_desc_iterator_destroy(it);
    if (chosen && first) dnnl_primitive_desc_destroy(first);
    *pd = chosen ? chosen : first;
    return *pd ? dnnl_success : dnnl_unimplemented;
}

/* The forward primitive descriptor (also the hint backward descriptors need). */
static bl_status fwd_pd(onednn_ctx *c, const conv_mds *m, bool bias, bool residual, bool relu, bool inference,
                        dnnl_primitive_desc_t *pd, const char *op) {
    dnnl_convolution_desc_t d;
    DNNL_CHECK(dnnl_convolution_forward_desc_init(
                   &d, inference ? dnnl_forward_inference : dnnl_forward_training, dnnl_convolution_direct,
                   &m->x, &m->w_any, bias ? &m->b : NULL, &m->y, m->strides, m->pad_l, m->pad_r),
               op);
    dnnl_primitive_attr_t attr;
    BL_TRY(make_attr(&attr, residual, relu, op));
    dnnl_status_t st =
        create_ranked(pd, &d, attr, c->engine, NULL, OK_CONV_FWD, m, preferred_impl(m, &m->w_any));
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success)
        return bl_error(BL_ERR_DEVICE, "onednn %s: no convolution implementation (%s)", op,
                        onednn_status_name(st));
    return BL_OK;
}

/* 3x3 stride-1 convolutions (every ResNet-18 convolution but the strided and 1x1 ones) run
 * as Winograd F(4x4, 3x3), forward and backward: 2.2-3x faster per layer than the direct
 * kernels here (one thread: CIFAR layer1 at batch 64 44 -> 25 ms; at batch 128 forward
 * 87 -> 34, backward data 87 -> 34, backward weights 96 -> 49 ms), with results within the
 * f32 parity threshold (nmse ~1e-12 against cpu_ref; test_onednn_backend checks every ResNet
 * width and whole-model training). oneDNN's Winograd reads and writes only the blocked
 * nChw16c layout, so activations are reordered in and out around it, which costs far less
 * than it saves. BEAMLET_ONEDNN_WINOGRAD=0 turns it off (direct kernels only); =infer keeps
 * it for inference (convolutions with a bias) and trains on the direct kernels, whose results
 * drift less from PyTorch's over AdamW steps (the full fixture: 4.7e-4 against 1.2e-3 of a
 * 2e-3 tolerance after 3 steps). */
/* Inference pays Winograd's weight transform once per weight (the cache keeps it), and the
 * transform is slow in oneDNN 2.6: 30-48 ms for a 512x512x3x3 weight, 6.5 ms for 128x128,
 * single-threaded. What a call saves grows with the pixels it convolves (N*H*W): on 2 cores,
 * 224x224 ResNet-18 at batch 1 saves 0.45 ms a call at 56x56, 0.5 ms at 28x28, 0.4 ms at 14x14,
 * 0.25 ms at 7x7, so the transform is repaid after about 1, 13, 33 and 150 calls. Below 512
 * pixels inference therefore stays on the direct kernels: a model's first prediction (224x224,
 * batch 1) took 0.13-0.15 s in its first forward with Winograd everywhere and 0.05 s with this
 * rule, while batched throughput keeps Winograd where it counts (CIFAR at batch 64 has 1024
 * pixels at 4x4, 224x224 at batch 16 has 784 at 7x7: both unchanged, measured); 224x224 at
 * batch 1 measured 72-82 img/s with Winograd everywhere and 76 with this rule, within this
 * VM's noise. */
enum {
    WINOGRAD_MIN_INFER_PIXELS = 512
};

static bool winograd_wanted(const bl_tensor *x, const bl_tensor *w, const bl_conv2d_params *p,
                            bool inference) {
    const char *env = getenv("BEAMLET_ONEDNN_WINOGRAD");
    if (env && strcmp(env, "0") == 0) return false;
    if (env && strcmp(env, "infer") == 0 && !inference) return false;
    if (inference && x->shape[0] * x->shape[2] * x->shape[3] < WINOGRAD_MIN_INFER_PIXELS) return false;
    return w->shape[2] == 3 && w->shape[3] == 3 && p->stride_h == 1 && p->stride_w == 1 && p->pad_h == 1 &&
           p->pad_w == 1 && x->shape[1] % 16 == 0 && w->shape[0] % 16 == 0;
}

/* Builds the blocked Winograd route for `kind` into e, or returns false (e untouched) when
 * oneDNN has no Winograd kernel for the case, so the caller builds the direct one. */
static bool build_winograd(onednn_ctx *c, onednn_prim *e, int kind, const conv_mds *m, bool bias,
                           bool residual, bool relu, const char *op) {
    dnnl_memory_desc_t xb, yb;
    if (dnnl_memory_desc_init_by_tag(&xb, 4, m->x.dims, dnnl_f32, dnnl_nChw16c) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&yb, 4, m->y.dims, dnnl_f32, dnnl_nChw16c) != dnnl_success)
        return false;
    dnnl_convolution_desc_t d;
    dnnl_primitive_attr_t attr;
    if (make_attr(&attr, kind == OK_CONV_FWD && residual, kind == OK_CONV_FWD && relu, op) != BL_OK) {
        bl_clear_error();
        return false;
    }
    dnnl_primitive_desc_t pd = NULL, hint = NULL;
    dnnl_status_t st;
    if (kind == OK_CONV_FWD) {
        st = dnnl_convolution_forward_desc_init(&d, bias ? dnnl_forward_inference : dnnl_forward_training,
                                                dnnl_convolution_winograd, &xb, &m->w_any,
                                                bias ? &m->b : NULL, &yb, m->strides, m->pad_l, m->pad_r);
    } else {
        dnnl_convolution_desc_t fd;
        st = dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_winograd, &xb,
                                                &m->w_any, NULL, &yb, m->strides, m->pad_l, m->pad_r);
        if (st == dnnl_success) st = dnnl_primitive_desc_create(&hint, &fd, NULL, c->engine, NULL);
        if (st == dnnl_success)
            st = kind == OK_CONV_BWD_DATA
                     ? dnnl_convolution_backward_data_desc_init(&d, dnnl_convolution_winograd, &xb, &m->w_any,
                                                                &yb, m->strides, m->pad_l, m->pad_r)
                     : dnnl_convolution_backward_weights_desc_init(&d, dnnl_convolution_winograd, &xb,
                                                                   &m->w_any, NULL, &yb, m->strides, m->pad_l,
                                                                   m->pad_r);
    }
    if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &d, attr, c->engine, hint);
    dnnl_primitive_attr_destroy(attr);
    if (hint) dnnl_primitive_desc_destroy(hint);
    if (st != dnnl_success) return false;
    size_t xbytes = (dnnl_memory_desc_get_size(&xb) + 63) & ~(size_t)63;
    size_t ybytes = (dnnl_memory_desc_get_size(&yb) + 63) & ~(size_t)63;
    onednn_reorder r[3];
    memset(r, 0, sizeof r);
    bool ok = onednn_route_reserve(c, xbytes + ybytes, op) == BL_OK;
    if (ok && kind != OK_CONV_BWD_DATA) ok = onednn_reorder_init(c, &r[0], &m->x, &xb, op) == BL_OK;
    if (ok) ok = onednn_reorder_init(c, &r[1], &m->y, &yb, op) == BL_OK;
    if (ok && kind == OK_CONV_FWD) ok = onednn_reorder_init(c, &r[2], &yb, &m->y, op) == BL_OK;
    if (ok && kind == OK_CONV_BWD_DATA) ok = onednn_reorder_init(c, &r[2], &xb, &m->x, op) == BL_OK;
    if (!ok) {
        bl_clear_error();
        for (int i = 0; i < 3; i++) onednn_reorder_destroy(&r[i]);
        dnnl_primitive_desc_destroy(pd);
        return false;
    }
    e->pd = pd;
    e->blocked = true;
    e->reo_off[0] = 0;
    e->reo_off[1] = xbytes;
    e->route_bytes = xbytes + ybytes;
    memcpy(e->reo, r, sizeof r);
    return true;
}

/* bf16 compute (bl_device_set_precision): oneDNN 2.6.3 ignores fpmath_mode=bf16 for f32
 * convolutions (the probe of 2026-12-07: the same brgconv:avx512_core f32 kernel and time with
 * and without it), so the conversion is explicit. The input is reordered f32 NHWC -> bf16 NHWC
 * into the route buffer, the weights f32 OHWI -> the kernel's bf16 format (cached once per
 * weight on the folded-BN inference path, as in f32), and the primitive takes bf16 source and
 * weights, accumulates in f32 and writes f32 NHWC with the fused bias, residual (`sum`, y first
 * holds the residual) and ReLU, so every tensor between layers stays f32. oneDNN has no bf16
 * Winograd: these run on the direct kernels (brgconv / jit with AVX512-BF16 or AMX), which
 * beat f32 Winograd by far where it counts (bench/results/bf16-probe-2026-12-07.json). */
static bl_status build_bf16(onednn_ctx *c, onednn_prim *e, const conv_mds *m, bool bias, bool residual,
                            bool relu, const char *op) {
    dnnl_memory_desc_t xb, wb;
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&xb, 4, m->x.dims, dnnl_bf16, dnnl_nhwc), op);
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&wb, 4, m->w_any.dims, dnnl_bf16, dnnl_format_tag_any), op);
    dnnl_convolution_desc_t d;
    DNNL_CHECK(dnnl_convolution_forward_desc_init(&d, bias ? dnnl_forward_inference : dnnl_forward_training,
                                                  dnnl_convolution_direct, &xb, &wb, bias ? &m->b : NULL,
                                                  &m->y, m->strides, m->pad_l, m->pad_r),
               op);
    dnnl_primitive_attr_t attr;
    BL_TRY(make_attr(&attr, residual, relu, op));
    dnnl_status_t st = create_ranked(&e->pd, &d, attr, c->engine, NULL, OK_CONV_FWD, m, NULL);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success)
        return bl_error(BL_ERR_DEVICE, "onednn %s: no bf16 convolution implementation (%s)", op,
                        onednn_status_name(st));
    size_t xbytes = (dnnl_memory_desc_get_size(&xb) + 63) & ~(size_t)63;
    bl_status s = onednn_route_reserve(c, xbytes, op);
    if (s == BL_OK) s = onednn_reorder_init(c, &e->reo[0], &m->x, &xb, op);
    if (s != BL_OK) {
        dnnl_primitive_desc_destroy(e->pd);
        e->pd = NULL;
        return s;
    }
    e->bf16 = true;
    e->reo_off[0] = 0;
    e->reo_off[1] = xbytes;
    e->route_bytes = xbytes;
    return BL_OK;
}

/* Backward convolutions are f32 training math; a bf16 handle is for inference. */
static bl_status refuse_bf16_backward(const char *op) {
    return bl_error(BL_ERR_UNSUPPORTED,
                    "onednn %s: bf16 compute is inference-only on the CPU (no bf16 training yet); "
                    "train with --precision=f32",
                    op);
}

/* The sizes of the two blocked activations in the route (x side, y side), as built from their
 * descriptors in build_winograd. */
static size_t route_x_bytes(const onednn_prim *e) { return e->reo_off[1] - e->reo_off[0]; }
static size_t route_y_bytes(const onednn_prim *e) { return e->route_bytes - e->reo_off[1]; }

/* The size of the weights buffer onednn_weights_get returned: the tensor itself, or the blocked
 * copy allocated from the kernel's descriptor. */
static size_t weights_bytes(const void *wb, const bl_tensor *w, const dnnl_memory_desc_t *want) {
    return wb == w->data ? bl_tensor_nbytes(w) : dnnl_memory_desc_get_size(want);
}

bl_status onednn_conv2d_forward(bl_device *dev, const bl_conv2d_params *p, const bl_tensor *x,
                                const bl_tensor *w, const bl_tensor *bias, const bl_tensor *residual,
                                bool relu, bl_tensor *y) {
    static const char op[] = "conv2d_forward";
    onednn_ctx *c = onednn_of(dev);
    int flags = (bias ? F_BIAS : 0) | (residual ? F_RESIDUAL : 0) | (relu ? F_RELU : 0);
    onednn_key key = conv_key(c, OK_CONV_FWD, p, x, w, y, flags);
    onednn_prim *e = onednn_prim_find(c, &key);
    if (!e) {
        conv_mds m;
        BL_TRY(conv_mds_init(&m, p, x, w, y, op));
        BL_TRY(onednn_prim_add(c, &key, &e));
        if (c->bf16)
            BL_TRY(build_bf16(c, e, &m, bias != NULL, residual != NULL, relu, op));
        else if (!(winograd_wanted(x, w, p, bias != NULL) &&
                   build_winograd(c, e, OK_CONV_FWD, &m, bias != NULL, residual != NULL, relu, op)))
            BL_TRY(fwd_pd(c, &m, bias != NULL, residual != NULL, relu, bias != NULL, &e->pd, op));
        int ids[4] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_BIAS};
        BL_TRY(onednn_prim_finish(c, e, bias ? 4 : 3, ids, op));
    }
    dnnl_memory_desc_t wmd;
    BL_TRY(onednn_md4(&wmd, w->shape, op));
    const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(e->pd, dnnl_query_weights_md, 0);
    void *wb;
    BL_TRY(onednn_weights_get(c, w->data, &wmd, want, bias != NULL, &wb, op));
    onednn_wrote(dev, y);
    const void *src = x->data;
    void *dst = y->data;
    size_t src_bytes = bl_tensor_nbytes(x), dst_bytes = bl_tensor_nbytes(y);
    if (e->blocked) {
        /* NHWC in, blocked through Winograd, NHWC out; the residual lands in the blocked y. */
        char *route = onednn_route_of(c, e), *xb = route + e->reo_off[0], *yb = route + e->reo_off[1];
        BL_TRY(onednn_reorder_run(c, &e->reo[0], x->data, xb, op));
        if (residual) BL_TRY(onednn_reorder_run(c, &e->reo[1], residual->data, yb, op));
        src = xb, src_bytes = route_x_bytes(e);
        dst = yb, dst_bytes = route_y_bytes(e);
    } else {
        if (e->bf16) {
            char *xb = onednn_route_of(c, e) + e->reo_off[0];
            BL_TRY(onednn_reorder_run(c, &e->reo[0], x->data, xb, op));
            src = xb, src_bytes = route_x_bytes(e);
        }
        if (residual) onednn_parallel_copy(y->data, residual->data, bl_tensor_nbytes(y));
    }
    BL_TRY(onednn_prim_bind(e, DNNL_ARG_SRC, src, src_bytes, op));
    BL_TRY(onednn_prim_bind(e, DNNL_ARG_WEIGHTS, wb, weights_bytes(wb, w, want), op));
    BL_TRY(onednn_prim_bind(e, DNNL_ARG_DST, dst, dst_bytes, op));
    if (bias) BL_TRY(onednn_prim_bind_tensor(e, DNNL_ARG_BIAS, bias, op));
    BL_TRY(onednn_prim_run(c, e, op));
    if (e->blocked) BL_TRY(onednn_reorder_run(c, &e->reo[2], dst, y->data, op));
    return BL_OK;
}

/* A direct backward primitive descriptor (`kind`: data or weights) from its initialized
 * descriptor d (init_status: how that initialization went), hinted by the training forward,
 * with the scratchpad the backend owns. */
static bl_status direct_bwd_pd(onednn_ctx *c, int kind, const conv_mds *m, const dnnl_convolution_desc_t *d,
                               dnnl_status_t init_status, dnnl_primitive_desc_t *pd, const char *op) {
    dnnl_primitive_desc_t hint;
    BL_TRY(fwd_pd(c, m, false, false, false, false, &hint, op));
    dnnl_status_t st = init_status;
    dnnl_primitive_attr_t attr = NULL;
    if (st == dnnl_success) st = dnnl_primitive_attr_create(&attr);
    if (st == dnnl_success) st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (st == dnnl_success) st = create_ranked(pd, d, attr, c->engine, hint, kind, m, NULL);
    if (attr) dnnl_primitive_attr_destroy(attr);
    dnnl_primitive_desc_destroy(hint);
    if (st != dnnl_success)
        return bl_error(BL_ERR_DEVICE, "onednn %s: no implementation (%s)", op, onednn_status_name(st));
    return BL_OK;
}

bl_status onednn_conv2d_backward_data(bl_device *dev, const bl_conv2d_params *p, const bl_tensor *dy,
                                      const bl_tensor *w, bl_tensor *dx) {
    static const char op[] = "conv2d_backward_data";
    onednn_ctx *c = onednn_of(dev);
    if (c->bf16) return refuse_bf16_backward(op);
    onednn_key key = conv_key(c, OK_CONV_BWD_DATA, p, dx, w, dy, 0);
    onednn_prim *e = onednn_prim_find(c, &key);
    if (!e) {
        conv_mds m;
        BL_TRY(conv_mds_init(&m, p, dx, w, dy, op));
        BL_TRY(onednn_prim_add(c, &key, &e));
        if (!(winograd_wanted(dx, w, p, false) &&
              build_winograd(c, e, OK_CONV_BWD_DATA, &m, false, false, false, op))) {
            dnnl_convolution_desc_t d;
            dnnl_status_t st = dnnl_convolution_backward_data_desc_init(
                &d, dnnl_convolution_direct, &m.x, &m.w_any, &m.y, m.strides, m.pad_l, m.pad_r);
            BL_TRY(direct_bwd_pd(c, OK_CONV_BWD_DATA, &m, &d, st, &e->pd, op));
        }
        int ids[3] = {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC};
        BL_TRY(onednn_prim_finish(c, e, 3, ids, op));
    }
    dnnl_memory_desc_t wmd;
    BL_TRY(onednn_md4(&wmd, w->shape, op));
    const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(e->pd, dnnl_query_weights_md, 0);
    void *wb;
    BL_TRY(onednn_weights_get(c, w->data, &wmd, want, false, &wb, op));
    onednn_wrote(dev, dx);
    const void *src = dy->data;
    void *dst = dx->data;
    size_t src_bytes = bl_tensor_nbytes(dy), dst_bytes = bl_tensor_nbytes(dx);
    if (e->blocked) {
        char *route = onednn_route_of(c, e), *xb = route + e->reo_off[0], *yb = route + e->reo_off[1];
        BL_TRY(onednn_reorder_run(c, &e->reo[1], dy->data, yb, op));
        src = yb, src_bytes = route_y_bytes(e);
        dst = xb, dst_bytes = route_x_bytes(e);
    }
    BL_TRY(onednn_prim_bind(e, DNNL_ARG_DIFF_DST, src, src_bytes, op));
    BL_TRY(onednn_prim_bind(e, DNNL_ARG_WEIGHTS, wb, weights_bytes(wb, w, want), op));
    BL_TRY(onednn_prim_bind(e, DNNL_ARG_DIFF_SRC, dst, dst_bytes, op));
    BL_TRY(onednn_prim_run(c, e, op));
    if (e->blocked) BL_TRY(onednn_reorder_run(c, &e->reo[2], dst, dx->data, op));
    return BL_OK;
}

/* Builds the blocked-to-OHWI reorder that follows the weight-gradient convolution. */
static bl_status add_output_reorder(onednn_ctx *c, onednn_prim *e, const dnnl_memory_desc_t *from,
                                    const dnnl_memory_desc_t *to, const char *op) {
    size_t bytes = dnnl_memory_desc_get_size(from); /* the blocked layout, padding included */
    e->wbuf = bl_host_buffer_alloc(bytes);
    if (!e->wbuf) return bl_error(BL_ERR_OUT_OF_MEMORY, "onednn %s: %zu bytes", op, bytes);
    e->wbuf_bytes = bytes;
    return onednn_reorder_init(c, &e->wout, from, to, op);
}

bl_status onednn_conv2d_backward_filter(bl_device *dev, const bl_conv2d_params *p, const bl_tensor *x,
                                        const bl_tensor *dy, bl_tensor *dw) {
    static const char op[] = "conv2d_backward_filter";
    onednn_ctx *c = onednn_of(dev);
    if (c->bf16) return refuse_bf16_backward(op);
    onednn_key key = conv_key(c, OK_CONV_BWD_WEIGHTS, p, x, dw, dy, 0);
    onednn_prim *e = onednn_prim_find(c, &key);
    dnnl_memory_desc_t wmd;
    BL_TRY(onednn_md4(&wmd, dw->shape, op));
    if (!e) {
        conv_mds m;
        BL_TRY(conv_mds_init(&m, p, x, dw, dy, op));
        BL_TRY(onednn_prim_add(c, &key, &e));
        if (!(winograd_wanted(x, dw, p, false) &&
              build_winograd(c, e, OK_CONV_BWD_WEIGHTS, &m, false, false, false, op))) {
            dnnl_convolution_desc_t d;
            dnnl_status_t st = dnnl_convolution_backward_weights_desc_init(
                &d, dnnl_convolution_direct, &m.x, &m.w_any, NULL, &m.y, m.strides, m.pad_l, m.pad_r);
            BL_TRY(direct_bwd_pd(c, OK_CONV_BWD_WEIGHTS, &m, &d, st, &e->pd, op));
        }
        int ids[3] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS};
        BL_TRY(onednn_prim_finish(c, e, 3, ids, op));
        const dnnl_memory_desc_t *got = dnnl_primitive_desc_query_md(e->pd, dnnl_query_diff_weights_md, 0);
        if (!dnnl_memory_desc_equal(got, &wmd)) BL_TRY(add_output_reorder(c, e, got, &wmd, op));
    }
    onednn_wrote(dev, dw);
    const void *src = x->data, *ddst = dy->data;
    size_t src_bytes = bl_tensor_nbytes(x), ddst_bytes = bl_tensor_nbytes(dy);
    if (e->blocked) {
        char *route = onednn_route_of(c, e), *xb = route + e->reo_off[0], *yb = route + e->reo_off[1];
        BL_TRY(onednn_reorder_run(c, &e->reo[0], x->data, xb, op));
        BL_TRY(onednn_reorder_run(c, &e->reo[1], dy->data, yb, op));
        src = xb, src_bytes = route_x_bytes(e);
        ddst = yb, ddst_bytes = route_y_bytes(e);
    }
    BL_TRY(onednn_prim_bind(e, DNNL_ARG_SRC, src, src_bytes, op));
    BL_TRY(onednn_prim_bind(e, DNNL_ARG_DIFF_DST, ddst, ddst_bytes, op));
    if (e->wout.prim)
        BL_TRY(onednn_prim_bind(e, DNNL_ARG_DIFF_WEIGHTS, e->wbuf, e->wbuf_bytes, op));
    else
        BL_TRY(onednn_prim_bind_tensor(e, DNNL_ARG_DIFF_WEIGHTS, dw, op));
    BL_TRY(onednn_prim_run(c, e, op));
    if (e->wout.prim) BL_TRY(onednn_reorder_run(c, &e->wout, e->wbuf, dw->data, op));
    return BL_OK;
}
