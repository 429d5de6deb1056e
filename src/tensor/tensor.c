/* Tensor views, allocation and host transfers. Conversions between f32 and the 16-bit types,
 * and between NCHW and NHWC, happen here on the host so backends only see their own formats. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/backend.h"

int64_t bl_tensor_numel(const bl_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t bl_tensor_nbytes(const bl_tensor *t) { return (size_t)bl_tensor_numel(t) * bl_dtype_size(t->dtype); }

bl_tensor bl_tensor_view(bl_device *dev, void *data, bl_dtype dtype, int ndim, const int64_t *shape) {
    bl_tensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.device = dev;
    t.dtype = dtype;
    t.layout = BL_LAYOUT_NCHW;
    t.ndim = ndim;
    for (int i = 0; i < ndim && i < BL_MAX_DIMS; i++) t.shape[i] = shape[i];
    return t;
}

bl_tensor bl_tensor_view4(bl_device *dev, void *data, bl_dtype dtype, bl_layout layout, int64_t n, int64_t c,
                          int64_t h, int64_t w) {
    int64_t shape[4] = {n, c, h, w};
    bl_tensor t = bl_tensor_view(dev, data, dtype, 4, shape);
    t.layout = layout;
    return t;
}

static const char *shape_text(char *buf, size_t size, int ndim, const int64_t *shape) {
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (used < size) snprintf(buf + used, size - used, "]");
    return buf;
}

bl_status bl_tensor_alloc(bl_device *dev, bl_dtype dtype, int ndim, const int64_t *shape, bl_tensor *out) {
    memset(out, 0, sizeof *out); /* a refused tensor is safe to release */
    if (ndim < 0 || ndim > BL_MAX_DIMS)
        return bl_error(BL_ERR_INVALID_ARG, "tensor: %d dimensions (at most %d)", ndim, BL_MAX_DIMS);
    /* Shapes come from files and flags. The product of the nonzero dimensions times the dtype
     * size must fit in int64: then no element or byte count computed from this shape, in any
     * order, can wrap (a wrapped count would allocate a small buffer the shape overruns). */
    char text[160];
    uint64_t nonzero_bytes = bl_dtype_size(dtype);
    bool overflow = false;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return bl_error(BL_ERR_INVALID_ARG, "tensor: shape %s: dimension %d is negative",
                            shape_text(text, sizeof text, ndim, shape), i);
        uint64_t d = (uint64_t)shape[i];
        if (d > 1 && nonzero_bytes > (uint64_t)INT64_MAX / d)
            overflow = true;
        else if (d > 1)
            nonzero_bytes *= d;
    }
    if (overflow)
        return bl_error(BL_ERR_INVALID_ARG,
                        "tensor: shape %s of %s is too large (its byte count overflows 64 bits)",
                        shape_text(text, sizeof text, ndim, shape), bl_dtype_name(dtype));
    *out = bl_tensor_view(dev, NULL, dtype, ndim, shape);
    out->layout = bl_device_preferred_layout(dev);
    size_t bytes = bl_tensor_nbytes(out);
    return bl_device_alloc(dev, bytes ? bytes : 1, &out->data);
}

void bl_tensor_release(bl_tensor *t) {
    if (t->data && t->device) bl_device_free(t->device, t->data);
    t->data = NULL;
}

bl_status bl_tensor_copy_from_host(bl_tensor *dst, const void *src) {
    const bl_backend *b = dst->device->backend;
    return b->copy(dst->device->ctx, dst->data, src, bl_tensor_nbytes(dst), BL_COPY_H2D);
}

bl_status bl_tensor_copy_to_host(const bl_tensor *src, void *dst) {
    const bl_backend *b = src->device->backend;
    return b->copy(src->device->ctx, dst, src->data, bl_tensor_nbytes(src), BL_COPY_D2H);
}

bl_status bl_tensor_zero(bl_tensor *t) {
    return t->device->backend->memset_zero(t->device->ctx, t->data, bl_tensor_nbytes(t));
}

static float load_as_f32(const void *base, bl_dtype dtype, int64_t i) {
    switch (dtype) {
        case BL_F32: return ((const float *)base)[i];
        case BL_BF16: return bl_bf16_to_f32(((const uint16_t *)base)[i]);
        case BL_F16: return bl_f16_to_f32(((const uint16_t *)base)[i]);
        case BL_U8: return ((const uint8_t *)base)[i];
        case BL_I32: return (float)((const int32_t *)base)[i];
        case BL_I64: return (float)((const int64_t *)base)[i];
        default: return 0;
    }
}

static void store_from_f32(void *base, bl_dtype dtype, int64_t i, float v) {
    switch (dtype) {
        case BL_F32: ((float *)base)[i] = v; break;
        case BL_BF16: ((uint16_t *)base)[i] = bl_f32_to_bf16(v); break;
        case BL_F16: ((uint16_t *)base)[i] = bl_f32_to_f16(v); break;
        case BL_U8: ((uint8_t *)base)[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5f); break;
        case BL_I32: ((int32_t *)base)[i] = (int32_t)v; break;
        case BL_I64: ((int64_t *)base)[i] = (int64_t)v; break;
        default: break;
    }
}

/* Walks a 4-D NHWC tensor in logical (N, C, H, W) order: calls visit(logical, physical) with
 * nested loops instead of dividing every index (this conversion sits on the first-prediction
 * path: every parameter at model build, every weight when folding batch norm). */
#define FOR_NHWC(t, BODY)                                                                                    \
    do {                                                                                                     \
        int64_t N_ = (t)->shape[0], C_ = (t)->shape[1], H_ = (t)->shape[2], W_ = (t)->shape[3];              \
        int64_t logical = 0;                                                                                 \
        for (int64_t n_ = 0; n_ < N_; n_++)                                                                  \
            for (int64_t c_ = 0; c_ < C_; c_++)                                                              \
                for (int64_t h_ = 0; h_ < H_; h_++) {                                                        \
                    int64_t physical = ((n_ * H_ + h_) * W_) * C_ + c_;                                      \
                    for (int64_t w_ = 0; w_ < W_; w_++, logical++, physical += C_) BODY;                     \
                }                                                                                            \
    } while (0)

static bool is_nhwc(const bl_tensor *t) { return t->ndim == 4 && t->layout == BL_LAYOUT_NHWC; }

/* f32 NCHW <-> NHWC, parallel over (n, h) rows: these run over every weight of a model at
 * load and init time, 11.7M values for a full-width ResNet-18. */
static void nchw_to_nhwc_f32(float *out, const float *in, const bl_tensor *t) {
    int64_t N = t->shape[0], C = t->shape[1], H = t->shape[2], W = t->shape[3];
#pragma omp parallel for collapse(2) schedule(static) if (N * C * H * W > (1 << 16))
    for (int64_t n = 0; n < N; n++)
        for (int64_t h = 0; h < H; h++) {
            float *o = out + (n * H + h) * W * C;
            const float *i = in + n * C * H * W + h * W;
            for (int64_t w = 0; w < W; w++)
                for (int64_t c = 0; c < C; c++) o[w * C + c] = i[c * H * W + w];
        }
}

static void nhwc_to_nchw_f32(float *out, const float *in, const bl_tensor *t) {
    int64_t N = t->shape[0], C = t->shape[1], H = t->shape[2], W = t->shape[3];
#pragma omp parallel for collapse(2) schedule(static) if (N * C * H * W > (1 << 16))
    for (int64_t n = 0; n < N; n++)
        for (int64_t h = 0; h < H; h++) {
            const float *i = in + (n * H + h) * W * C;
            float *o = out + n * C * H * W + h * W;
            for (int64_t w = 0; w < W; w++)
                for (int64_t c = 0; c < C; c++) o[c * H * W + w] = i[w * C + c];
        }
}

bl_status bl_tensor_upload_nchw_f32(bl_tensor *dst, const float *src) {
    int64_t n = bl_tensor_numel(dst);
    if (dst->dtype == BL_F32 && !is_nhwc(dst)) return bl_tensor_copy_from_host(dst, src);
    const bl_backend *b = dst->device->backend;
    bool direct = b->host_written != NULL; /* host memory: convert in place, no staging */
    void *out = direct ? dst->data : bl_alloc_big(bl_tensor_nbytes(dst) ? bl_tensor_nbytes(dst) : 1);
    if (!out) return bl_error(BL_ERR_OUT_OF_MEMORY, "tensor upload: %zu bytes", bl_tensor_nbytes(dst));
    if (!is_nhwc(dst)) {
        for (int64_t i = 0; i < n; i++) store_from_f32(out, dst->dtype, i, src[i]);
    } else if (dst->dtype == BL_F32) {
        nchw_to_nhwc_f32(out, src, dst);
    } else {
        FOR_NHWC(dst, store_from_f32(out, dst->dtype, physical, src[logical]));
    }
    if (direct) {
        b->host_written(dst->device->ctx, dst->data, bl_tensor_nbytes(dst));
        return BL_OK;
    }
    bl_status s = bl_tensor_copy_from_host(dst, out);
    free(out);
    return s;
}

bl_status bl_tensor_download_f32(const bl_tensor *src, float *dst) {
    int64_t n = bl_tensor_numel(src);
    if (src->dtype == BL_F32 && !is_nhwc(src)) return bl_tensor_copy_to_host(src, dst);
    bool direct = src->device->backend->host_written != NULL; /* host memory: read in place */
    void *staging = direct ? src->data : bl_alloc_big(bl_tensor_nbytes(src) ? bl_tensor_nbytes(src) : 1);
    if (!staging) return bl_error(BL_ERR_OUT_OF_MEMORY, "tensor download: %zu bytes", bl_tensor_nbytes(src));
    bl_status s = direct ? BL_OK : bl_tensor_copy_to_host(src, staging);
    if (s == BL_OK) {
        if (!is_nhwc(src)) {
            for (int64_t i = 0; i < n; i++) dst[i] = load_as_f32(staging, src->dtype, i);
        } else if (src->dtype == BL_F32) {
            nhwc_to_nchw_f32(dst, staging, src);
        } else {
            FOR_NHWC(src, dst[logical] = load_as_f32(staging, src->dtype, physical));
        }
    }
    if (!direct) free(staging);
    return s;
}

void bl_tensor_describe(const bl_tensor *t, char *buf, size_t size) {
    size_t used = (size_t)snprintf(buf, size, "%s[", bl_dtype_name(t->dtype));
    for (int i = 0; i < t->ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ",%lld" : "%lld", (long long)t->shape[i]);
    if (used < size)
        snprintf(buf + used, size - used, "]%s",
                 t->ndim == 4 ? (t->layout == BL_LAYOUT_NHWC ? " nhwc" : " nchw") : "");
}
