/* The op list as StableHLO programs, generated for each call's shapes and dtypes and compiled
 * once (the text is the cache key, plugin.c). A program takes its tensors as the raw bytes of
 * their segments (u8), decodes them to their logical shapes, computes in f32 (bf16 activations
 * are widened on the way in and rounded on the way out: f32 accumulation, as on the GPU), and
 * encodes its outputs back to bytes, which become the outputs' new segments (memory.c).
 * Scalars that change from call to call (learning rates) are inputs, not constants, so a new
 * value does not compile a new program. Formulas follow cpu_ref, the oracle, term by term. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/xla/xla.h"

#define MAX_IN 16
#define MAX_OUT 8

typedef struct prog {
    xla_ctx *c;
    xla_text head, body;
    int nin, nout, next;
    xla_buf *in[MAX_IN];
    void *out_ptr[MAX_OUT];
    size_t out_len[MAX_OUT];
    char out_type[MAX_OUT][48];
    char ret[MAX_OUT][16];
    char types[8][128];
    int ntype;
    bl_status status;
} prog;

static void begin(prog *P, bl_device *dev) {
    memset(P, 0, sizeof *P);
    P->c = bl_device_ctx(dev);
    xla_text_init(&P->head);
    xla_text_init(&P->body);
}

static void end(prog *P) {
    for (int i = 0; i < P->nin; i++) xla_buf_unref(P->in[i]);
    xla_text_free(&P->head);
    xla_text_free(&P->body);
}

/* "tensor<AxBxf32>", from a rotating pool (valid for the next few calls). */
static const char *T(prog *P, int ndim, const int64_t *shape) {
    char *buf = P->types[P->ntype++ % 8];
    return xla_type(buf, sizeof P->types[0], ndim, shape, "f32");
}
static const char *Tt(prog *P, const bl_tensor *t) { return T(P, t->ndim, t->shape); }

#define EMIT(...) xla_text_add(&P->body, __VA_ARGS__)

static int fresh(prog *P) { return P->next++; }

static size_t elem_size(bl_dtype dt) { return bl_dtype_size(dt); }

/* Declares an input of `bytes` bytes and decodes it into an f32 value of the given shape. */
static int decode(prog *P, int argno, size_t bytes, bl_dtype dt, int ndim, const int64_t *shape) {
    size_t es = elem_size(dt);
    int64_t n = (int64_t)(bytes / es);
    const char *el = xla_elem(dt);
    int v = fresh(P);
    EMIT("  %%v%d_r = stablehlo.reshape %%a%d : (tensor<%zuxui8>) -> tensor<%lldx%zuxui8>\n", v, argno, bytes,
         (long long)n, es);
    EMIT("  %%v%d_b = stablehlo.bitcast_convert %%v%d_r : (tensor<%lldx%zuxui8>) -> tensor<%lldx%s>\n", v, v,
         (long long)n, es, (long long)n, el);
    char ty[128];
    xla_type(ty, sizeof ty, ndim, shape, el);
    EMIT("  %%v%d_s = stablehlo.reshape %%v%d_b : (tensor<%lldx%s>) -> %s\n", v, v, (long long)n, el, ty);
    if (dt == BL_F32)
        EMIT("  %%v%d = stablehlo.reshape %%v%d_s : (%s) -> %s\n", v, v, ty, ty);
    else
        EMIT("  %%v%d = stablehlo.convert %%v%d_s : (%s) -> %s\n", v, v, ty, T(P, ndim, shape));
    return v;
}

static int arg_bytes(prog *P, xla_buf *b) {
    if (P->nin == MAX_IN) {
        xla_buf_unref(b);
        P->status = bl_error(BL_ERR_INTERNAL, "xla: too many inputs");
        return -1;
    }
    int k = P->nin++;
    P->in[k] = b;
    xla_text_add(&P->head, "%s%%a%d: tensor<%zuxui8>", k ? ", " : "", k, b->len);
    return k;
}

/* An input tensor as an f32 value (an i32 tensor stays i32: labels). */
static int arg(prog *P, const bl_tensor *t) {
    if (P->status != BL_OK) return 0;
    size_t bytes = bl_tensor_nbytes(t);
    xla_buf *b;
    P->status = xla_mem_read(P->c, t->data, bytes, &b);
    if (P->status != BL_OK) return 0;
    int k = arg_bytes(P, b);
    if (k < 0) return 0;
    if (t->dtype == BL_I32) {
        int v = fresh(P);
        int64_t n = bl_tensor_numel(t);
        EMIT("  %%v%d_r = stablehlo.reshape %%a%d : (tensor<%zuxui8>) -> tensor<%lldx4xui8>\n", v, k, bytes,
             (long long)n);
        EMIT("  %%v%d = stablehlo.bitcast_convert %%v%d_r : (tensor<%lldx4xui8>) -> tensor<%lldxi32>\n", v, v,
             (long long)n, (long long)n);
        return v;
    }
    return decode(P, k, bytes, t->dtype, t->ndim, t->shape);
}

/* Host scalars as one f32[n] input; returns the value of scalar i via scalar(). */
static int arg_host(prog *P, const float *vals, int n) {
    if (P->status != BL_OK) return 0;
    xla_buf *b;
    P->status = xla_buf_from_host(P->c, vals, sizeof(float) * (size_t)n, &b);
    if (P->status != BL_OK) return 0;
    int k = arg_bytes(P, b);
    if (k < 0) return 0;
    int64_t shape[1] = {n};
    return decode(P, k, sizeof(float) * (size_t)n, BL_F32, 1, shape);
}

/* Element i of an f32[n] value, broadcast to a shape. */
static int scalar(prog *P, int vec, int n, int i, int ndim, const int64_t *shape) {
    int v = fresh(P);
    EMIT("  %%v%d_e = stablehlo.slice %%v%d [%d:%d] : (tensor<%dxf32>) -> tensor<1xf32>\n", v, vec, i, i + 1,
         n);
    EMIT("  %%v%d_s = stablehlo.reshape %%v%d_e : (tensor<1xf32>) -> tensor<f32>\n", v, v);
    EMIT("  %%v%d = stablehlo.broadcast_in_dim %%v%d_s, dims = [] : (tensor<f32>) -> %s\n", v, v,
         T(P, ndim, shape));
    return v;
}

/* Makes value v (f32 of t's shape) the new contents of t. */
static void result(prog *P, int v, bl_tensor *t) {
    if (P->status != BL_OK) return;
    if (P->nout == MAX_OUT) {
        P->status = bl_error(BL_ERR_INTERNAL, "xla: too many outputs");
        return;
    }
    int k = P->nout++;
    size_t es = elem_size(t->dtype), bytes = bl_tensor_nbytes(t);
    int64_t n = bl_tensor_numel(t);
    const char *el = xla_elem(t->dtype);
    char ty[128];
    xla_type(ty, sizeof ty, t->ndim, t->shape, el);
    int o = fresh(P);
    if (t->dtype == BL_F32)
        EMIT("  %%o%d_c = stablehlo.reshape %%v%d : (%s) -> %s\n", o, v, ty, ty);
    else
        EMIT("  %%o%d_c = stablehlo.convert %%v%d : (%s) -> %s\n", o, v, Tt(P, t), ty);
    EMIT("  %%o%d_f = stablehlo.reshape %%o%d_c : (%s) -> tensor<%lldx%s>\n", o, o, ty, (long long)n, el);
    EMIT("  %%o%d_b = stablehlo.bitcast_convert %%o%d_f : (tensor<%lldx%s>) -> tensor<%lldx%zuxui8>\n", o, o,
         (long long)n, el, (long long)n, es);
    EMIT("  %%o%d = stablehlo.reshape %%o%d_b : (tensor<%lldx%zuxui8>) -> tensor<%zuxui8>\n", o, o,
         (long long)n, es, bytes);
    snprintf(P->ret[k], sizeof P->ret[k], "%%o%d", o);
    snprintf(P->out_type[k], sizeof P->out_type[k], "tensor<%zuxui8>", bytes);
    P->out_ptr[k] = t->data;
    P->out_len[k] = bytes;
}

static bl_status finish(prog *P) {
    bl_status s = P->status;
    if (s == BL_OK && P->nout == 0) s = bl_error(BL_ERR_INTERNAL, "xla: program without outputs");
    if (s == BL_OK) {
        xla_text t;
        xla_text_init(&t);
        xla_text_add(&t, "func.func @main(%s) -> (", P->head.s ? P->head.s : "");
        for (int k = 0; k < P->nout; k++) xla_text_add(&t, "%s%s", k ? ", " : "", P->out_type[k]);
        xla_text_add(&t, ") {\n%s  return ", P->body.s ? P->body.s : "");
        for (int k = 0; k < P->nout; k++) xla_text_add(&t, "%s%s", k ? ", " : "", P->ret[k]);
        xla_text_add(&t, " : ");
        for (int k = 0; k < P->nout; k++) xla_text_add(&t, "%s%s", k ? ", " : "", P->out_type[k]);
        xla_text_add(&t, "\n}\n");
        if (t.oom || P->head.oom || P->body.oom) s = bl_error(BL_ERR_OUT_OF_MEMORY, "xla: program text");
        xla_buf *out[MAX_OUT] = {0};
        if (s == BL_OK) s = xla_run(P->c, t.s, P->nin, P->in, P->nout, P->out_len, out);
        xla_text_free(&t);
        /* Inputs were read before any output is written: outputs may alias inputs. */
        for (int k = 0; k < P->nout; k++) {
            if (s == BL_OK)
                s = xla_mem_write(P->c, P->out_ptr[k], out[k]);
            else
                xla_buf_unref(out[k]);
        }
    }
    end(P);
    return s;
}

/* ---- building blocks ---- */

static int splat(prog *P, double value, int ndim, const int64_t *shape) {
    int v = fresh(P);
    if (isinf(value) || isnan(value))
        EMIT("  %%v%d = stablehlo.constant dense<%s> : %s\n", v,
             isnan(value) ? "0x7FC00000"
             : value < 0  ? "0xFF800000"
                          : "0x7F800000",
             T(P, ndim, shape));
    else
        EMIT("  %%v%d = stablehlo.constant dense<%.9e> : %s\n", v, value, T(P, ndim, shape));
    return v;
}

static int binary(prog *P, const char *op, int a, int b, int ndim, const int64_t *shape) {
    int v = fresh(P);
    EMIT("  %%v%d = stablehlo.%s %%v%d, %%v%d : %s\n", v, op, a, b, T(P, ndim, shape));
    return v;
}

static int unary(prog *P, const char *op, int a, int ndim, const int64_t *shape) {
    int v = fresh(P);
    EMIT("  %%v%d = stablehlo.%s %%v%d : %s\n", v, op, a, T(P, ndim, shape));
    return v;
}

/* A bool value: a <cmp> b. */
static int compare(prog *P, const char *cmp, int a, int b, int ndim, const int64_t *shape) {
    int v = fresh(P);
    char bt[128];
    xla_type(bt, sizeof bt, ndim, shape, "i1");
    const char *ft = T(P, ndim, shape);
    EMIT("  %%v%d = stablehlo.compare %s, %%v%d, %%v%d : (%s, %s) -> %s\n", v, cmp, a, b, ft, ft, bt);
    return v;
}

static int select_(prog *P, int pred, int a, int b, int ndim, const int64_t *shape) {
    int v = fresh(P);
    char bt[128];
    xla_type(bt, sizeof bt, ndim, shape, "i1");
    const char *ft = T(P, ndim, shape);
    EMIT("  %%v%d = stablehlo.select %%v%d, %%v%d, %%v%d : %s, %s\n", v, pred, a, b, bt, ft);
    return v;
}

static int relu(prog *P, int a, int ndim, const int64_t *shape) {
    return binary(P, "maximum", a, splat(P, 0, ndim, shape), ndim, shape);
}

/* A (C) vector along dimension `dim` of a shape. */
static int bcast(prog *P, int a, int from_ndim, const int64_t *from, const char *dims, int ndim,
                 const int64_t *shape) {
    int v = fresh(P);
    const char *ft = T(P, from_ndim, from);
    EMIT("  %%v%d = stablehlo.broadcast_in_dim %%v%d, dims = [%s] : (%s) -> %s\n", v, a, dims, ft,
         T(P, ndim, shape));
    return v;
}

/* Sum (or max) over the listed dimensions. */
static int reduce(prog *P, const char *op, int a, int ndim, const int64_t *shape, const char *dims,
                  int out_ndim, const int64_t *out_shape) {
    int init = splat(P, strcmp(op, "maximum") == 0 ? -INFINITY : 0.0, 0, NULL);
    int v = fresh(P);
    const char *ft = T(P, ndim, shape);
    EMIT("  %%v%d = stablehlo.reduce(%%v%d init: %%v%d) applies stablehlo.%s across dimensions = [%s] : (%s, "
         "tensor<f32>) -> %s\n",
         v, a, init, op, dims, ft, T(P, out_ndim, out_shape));
    return v;
}

static int reshape(prog *P, int a, int from_ndim, const int64_t *from, int ndim, const int64_t *shape) {
    int v = fresh(P);
    const char *ft = T(P, from_ndim, from);
    EMIT("  %%v%d = stablehlo.reshape %%v%d : (%s) -> %s\n", v, a, ft, T(P, ndim, shape));
    return v;
}

#define PREC "precision_config = [#stablehlo<precision HIGHEST>, #stablehlo<precision HIGHEST>]"

static int convolution(prog *P, int lhs, const int64_t *ls, int rhs, const int64_t *rs, const int64_t *os,
                       const char *dims, const int stride[2], const int64_t pad[4], const int lhs_dil[2],
                       const int rhs_dil[2]) {
    int v = fresh(P);
    const char *lt = T(P, 4, ls), *rt = T(P, 4, rs), *ot = T(P, 4, os);
    EMIT("  %%v%d = stablehlo.convolution(%%v%d, %%v%d) dim_numbers = %s, window = {stride = [%d, %d], pad = "
         "[[%lld, %lld], [%lld, %lld]], lhs_dilate = [%d, %d], rhs_dilate = [%d, %d]} {batch_group_count = 1 "
         ": "
         "i64, feature_group_count = 1 : i64, " PREC "} : (%s, %s) -> %s\n",
         v, lhs, rhs, dims, stride[0], stride[1], (long long)pad[0], (long long)pad[1], (long long)pad[2],
         (long long)pad[3], lhs_dil[0], lhs_dil[1], rhs_dil[0], rhs_dil[1], lt, rt, ot);
    return v;
}

static int dot(prog *P, int a, const int64_t *as, int b, const int64_t *bs, int ca, int cb,
               const int64_t *os) {
    int v = fresh(P);
    const char *at = T(P, 2, as), *bt = T(P, 2, bs), *ot = T(P, 2, os);
    EMIT(
        "  %%v%d = stablehlo.dot_general %%v%d, %%v%d, contracting_dims = [%d] x [%d], precision = [HIGHEST, "
        "HIGHEST] : (%s, %s) -> %s\n",
        v, a, b, ca, cb, at, bt, ot);
    return v;
}

/* ---- elementwise ---- */

bl_status xla_relu_forward(bl_device *dev, const bl_tensor *x, bl_tensor *y) {
    prog Pv, *P = &Pv;
    begin(P, dev);
    int a = arg(P, x);
    result(P, relu(P, a, x->ndim, x->shape), y);
    return finish(P);
}

bl_status xla_relu_backward(bl_device *dev, const bl_tensor *dy, const bl_tensor *y, bl_tensor *dx) {
    prog Pv, *P = &Pv;
    begin(P, dev);
    int g = arg(P, dy), o = arg(P, y);
    const int64_t *s = y->shape;
    int nd = y->ndim;
    int pos = compare(P, "GT", o, splat(P, 0, nd, s), nd, s);
    result(P, select_(P, pos, g, splat(P, 0, nd, s), nd, s), dx);
    return finish(P);
}

bl_status xla_add(bl_device *dev, const bl_tensor *a, const bl_tensor *b, bl_tensor *y) {
    prog Pv, *P = &Pv;
    begin(P, dev);
    int va = arg(P, a), vb = arg(P, b);
    result(P, binary(P, "add", va, vb, a->ndim, a->shape), y);
    return finish(P);
}

/* ---- convolution ---- */

bl_status xla_conv2d_forward(bl_device *dev, const bl_conv2d_params *conv, const bl_tensor *x,
                             const bl_tensor *w, const bl_tensor *bias, const bl_tensor *residual, bool act,
                             bl_tensor *y) {
    prog Pv, *P = &Pv;
    begin(P, dev);
    int vx = arg(P, x), vw = arg(P, w);
    int vb = bias ? arg(P, bias) : -1, vr = residual ? arg(P, residual) : -1;
    int stride[2] = {conv->stride_h, conv->stride_w}, one[2] = {1, 1};
    int64_t pad[4] = {conv->pad_h, conv->pad_h, conv->pad_w, conv->pad_w};
    int v = convolution(P, vx, x->shape, vw, w->shape, y->shape, "[b, f, 0, 1]x[o, i, 0, 1]->[b, f, 0, 1]",
                        stride, pad, one, one);
    if (bias) v = binary(P, "add", v, bcast(P, vb, 1, bias->shape, "1", 4, y->shape), 4, y->shape);
    if (residual) v = binary(P, "add", v, vr, 4, y->shape);
    if (act) v = relu(P, v, 4, y->shape);
    result(P, v, y);
    return finish(P);
}

bl_status xla_conv2d_backward_data(bl_device *dev, const bl_conv2d_params *conv, const bl_tensor *dy,
                                   const bl_tensor *w, bl_tensor *dx) {
    prog Pv, *P = &Pv;
    begin(P, dev);
    int vdy = arg(P, dy), vw = arg(P, w);
    int64_t R = w->shape[2], S = w->shape[3], H = dx->shape[2], W = dx->shape[3];
    int64_t Pn = dy->shape[2], Q = dy->shape[3];
    int rev = fresh(P);
    EMIT("  %%v%d = stablehlo.reverse %%v%d, dims = [2, 3] : %s\n", rev, vw, T(P, 4, w->shape));
    int one[2] = {1, 1}, dil[2] = {conv->stride_h, conv->stride_w};
    int64_t lo_h = R - 1 - conv->pad_h, lo_w = S - 1 - conv->pad_w;
    int64_t pad[4] = {lo_h, H + R - 2 - (Pn - 1) * conv->stride_h - lo_h, lo_w,
                      W + S - 2 - (Q - 1) * conv->stride_w - lo_w};
    int v = convolution(P, vdy, dy->shape, rev, w->shape, dx->shape,
                        "[b, f, 0, 1]x[i, o, 0, 1]->[b, f, 0, 1]", one, pad, dil, one);
    result(P, v, dx);
    return finish(P);
}

bl_status xla_conv2d_backward_filter(bl_device *dev, const bl_conv2d_params *conv, const bl_tensor *x,
                                     const bl_tensor *dy, bl_tensor *dw) {
    prog Pv, *P = &Pv;
    begin(P, dev);
    int vx = arg(P, x), vdy = arg(P, dy);
    int64_t R = dw->shape[2], S = dw->shape[3], H = x->shape[2], W = x->shape[3];
    int64_t Pn = dy->shape[2], Q = dy->shape[3];
    int64_t hi_h = R + (Pn - 1) * conv->stride_h - H - conv->pad_h;
    int64_t hi_w = S + (Q - 1) * conv->stride_w - W - conv->pad_w;
    /* Rows past the last window take no part: cut them rather than pad negatively. */
    int64_t xs[4] = {x->shape[0], x->shape[1], hi_h < 0 ? H + hi_h : H, hi_w < 0 ? W + hi_w : W};
    if (hi_h < 0 || hi_w < 0) {
        int v = fresh(P);
        EMIT("  %%v%d = stablehlo.slice %%v%d [0:%lld, 0:%lld, 0:%lld, 0:%lld] : (%s) -> %s\n", v, vx,
             (long long)xs[0], (long long)xs[1], (long long)xs[2], (long long)xs[3], Tt(P, x), T(P, 4, xs));
        vx = v;
    }
    int one[2] = {1, 1}, dil[2] = {conv->stride_h, conv->stride_w};
    int64_t pad[4] = {conv->pad_h, hi_h < 0 ? 0 : hi_h, conv->pad_w, hi_w < 0 ? 0 : hi_w};
    int v = convolution(P, vx, xs, vdy, dy->shape, dw->shape, "[f, b, 0, 1]x[i, o, 0, 1]->[f, b, 0, 1]", one,
                        pad, one, dil);
    result(P, v, dw);
    return finish(P);
}

/* ---- batch normalization ---- */

/* 1 / sqrt(v), correctly rounded steps (XLA's rsqrt may be an approximation). */
static int inverse_sqrt(prog *P, int v, const int64_t *C) {
    return binary(P, "divide", splat(P, 1.0, 1, C), unary(P, "sqrt", v, 1, C), 1, C);
}

/* y = act(x * scale[c] + shift[c] + residual). */
static int bn_apply(prog *P, int x, const int64_t *s, int scale, int shift, int res, bool act) {
    int64_t C[1] = {s[1]};
    int v = binary(P, "multiply", x, bcast(P, scale, 1, C, "1", 4, s), 4, s);
    v = binary(P, "add", v, bcast(P, shift, 1, C, "1", 4, s), 4, s);
    if (res >= 0) v = binary(P, "add", v, res, 4, s);
    if (act) v = relu(P, v, 4, s);
    return v;
}

bl_status xla_batchnorm_forward_train(bl_device *dev, const bl_batchnorm_params *p, const bl_tensor *x,
                                      const bl_tensor *gamma, const bl_tensor *beta,
                                      const bl_tensor *residual, bool act, bl_tensor *running_mean,
                                      bl_tensor *running_var, bl_tensor *save_mean, bl_tensor *save_invstd,
                                      bl_tensor *y) {
    prog Pv, *P = &Pv;
    begin(P, dev);
    const int64_t *s = x->shape;
    int64_t C[1] = {s[1]};
    double M = (double)(s[0] * s[2] * s[3]);
    int vx = arg(P, x), vg = arg(P, gamma), vb = arg(P, beta);
    int vr = residual ? arg(P, residual) : -1;
    int rm = arg(P, running_mean), rv = arg(P, running_var);
    int mean = binary(P, "divide", reduce(P, "add", vx, 4, s, "0, 2, 3", 1, C), splat(P, M, 1, C), 1, C);
    int d = binary(P, "subtract", vx, bcast(P, mean, 1, C, "1", 4, s), 4, s);
    int var = binary(P, "divide", reduce(P, "add", binary(P, "multiply", d, d, 4, s), 4, s, "0, 2, 3", 1, C),
                     splat(P, M, 1, C), 1, C);
    int invstd = inverse_sqrt(P, binary(P, "add", var, splat(P, p->eps, 1, C), 1, C), C);
    int keep = splat(P, 1.0 - p->momentum, 1, C), mom = splat(P, p->momentum, 1, C);
    int new_rm =
        binary(P, "add", binary(P, "multiply", keep, rm, 1, C), binary(P, "multiply", mom, mean, 1, C), 1, C);
    int unbiased = binary(P, "multiply", var, splat(P, M / (M - 1.0), 1, C), 1, C);
    int new_rv = binary(P, "add", binary(P, "multiply", keep, rv, 1, C),
                        binary(P, "multiply", mom, unbiased, 1, C), 1, C);
    int scale = binary(P, "multiply", vg, invstd, 1, C);
    int shift = binary(P, "subtract", vb, binary(P, "multiply", mean, scale, 1, C), 1, C);
    result(P, bn_apply(P, vx, s, scale, shift, vr, act), y);
    result(P, mean, save_mean);
    result(P, invstd, save_invstd);
    result(P, new_rm, running_mean);
    result(P, new_rv, running_var);
    return finish(P);
}

bl_status xla_batchnorm_forward_eval(bl_device *dev, const bl_batchnorm_params *p, const bl_tensor *x,
                                     const bl_tensor *gamma, const bl_tensor *beta, const bl_tensor *residual,
                                     bool act, const bl_tensor *running_mean, const bl_tensor *running_var,
                                     bl_tensor *y) {
    prog Pv, *P = &Pv;
    begin(P, dev);
    const int64_t *s = x->shape;
    int64_t C[1] = {s[1]};
    int vx = arg(P, x), vg = arg(P, gamma), vb = arg(P, beta);
    int vr = residual ? arg(P, residual) : -1;
    int rm = arg(P, running_mean), rv = arg(P, running_var);
    int invstd = inverse_sqrt(P, binary(P, "add", rv, splat(P, p->eps, 1, C), 1, C), C);
    int scale = binary(P, "multiply", vg, invstd, 1, C);
    int shift = binary(P, "subtract", vb, binary(P, "multiply", rm, scale, 1, C), 1, C);
    result(P, bn_apply(P, vx, s, scale, shift, vr, act), y);
    return finish(P);
}

bl_status xla_batchnorm_backward(bl_device *dev, const bl_tensor *dy, const bl_tensor *x, const bl_tensor *y,
                                 bool act, const bl_tensor *gamma, const bl_tensor *save_mean,
                                 const bl_tensor *save_invstd, bl_tensor *dx, bl_tensor *dgamma,
                                 bl_tensor *dbeta, bl_tensor *dresidual) {
    prog Pv, *P = &Pv;
    begin(P, dev);
    const int64_t *s = x->shape;
    int64_t C[1] = {s[1]};
    double M = (double)(s[0] * s[2] * s[3]);
    int vdy = arg(P, dy), vx = arg(P, x), vy = act ? arg(P, y) : -1, vg = arg(P, gamma);
    int mean = arg(P, save_mean), invstd = arg(P, save_invstd);
    int dz = vdy;
    if (act) dz = select_(P, compare(P, "GT", vy, splat(P, 0, 4, s), 4, s), vdy, splat(P, 0, 4, s), 4, s);
    int xhat = binary(P, "multiply", binary(P, "subtract", vx, bcast(P, mean, 1, C, "1", 4, s), 4, s),
                      bcast(P, invstd, 1, C, "1", 4, s), 4, s);
    int sum_dz = reduce(P, "add", dz, 4, s, "0, 2, 3", 1, C);
    int sum_dzx = reduce(P, "add", binary(P, "multiply", dz, xhat, 4, s), 4, s, "0, 2, 3", 1, C);
    int k = binary(P, "divide", binary(P, "multiply", vg, invstd, 1, C), splat(P, M, 1, C), 1, C);
    int t = binary(P, "subtract", binary(P, "multiply", splat(P, M, 4, s), dz, 4, s),
                   bcast(P, sum_dz, 1, C, "1", 4, s), 4, s);
    t = binary(P, "subtract", t, binary(P, "multiply", xhat, bcast(P, sum_dzx, 1, C, "1", 4, s), 4, s), 4, s);
    result(P, binary(P, "multiply", bcast(P, k, 1, C, "1", 4, s), t, 4, s), dx);
    result(P, sum_dzx, dgamma);
    result(P, sum_dz, dbeta);
    if (dresidual) result(P, dz, dresidual);
    return finish(P);
}

/* ---- pooling ---- */

/* x padded with -inf so that every window (p, q) of the pooling is inside it. */
static int pool_pad(prog *P, int vx, const int64_t *xs, const bl_pool_params *pp, int64_t Pn, int64_t Q,
                    int64_t *ps) {
    int64_t hi_h = (Pn - 1) * pp->stride + pp->kernel - xs[2] - pp->pad;
    int64_t hi_w = (Q - 1) * pp->stride + pp->kernel - xs[3] - pp->pad;
    if (hi_h < 0) hi_h = 0;
    if (hi_w < 0) hi_w = 0;
    ps[0] = xs[0], ps[1] = xs[1], ps[2] = xs[2] + pp->pad + hi_h, ps[3] = xs[3] + pp->pad + hi_w;
    int ninf = splat(P, -INFINITY, 0, NULL);
    int v = fresh(P);
    EMIT("  %%v%d = stablehlo.pad %%v%d, %%v%d, low = [0, 0, %d, %d], high = [0, 0, %lld, %lld], interior = "
         "[0, 0, "
         "0, 0] : (%s, tensor<f32>) -> %s\n",
         v, vx, ninf, pp->pad, pp->pad, (long long)hi_h, (long long)hi_w, T(P, 4, xs), T(P, 4, ps));
    return v;
}

/* The window element (r, s) of every window: a strided slice of the padded input. */
static int pool_tap(prog *P, int padded, const int64_t *ps, const bl_pool_params *pp, int r, int s,
                    const int64_t *ys) {
    int v = fresh(P);
    EMIT("  %%v%d = stablehlo.slice %%v%d [0:%lld, 0:%lld, %d:%lld:%d, %d:%lld:%d] : (%s) -> %s\n", v, padded,
         (long long)ps[0], (long long)ps[1], r, (long long)(r + (ys[2] - 1) * pp->stride + 1), pp->stride, s,
         (long long)(s + (ys[3] - 1) * pp->stride + 1), pp->stride, T(P, 4, ps), T(P, 4, ys));
    return v;
}

bl_status xla_maxpool_forward(bl_device *dev, const bl_pool_params *pp, const bl_tensor *x, bl_tensor *y) {
    prog Pv, *P = &Pv;
    begin(P, dev);
    int vx = arg(P, x);
    int64_t ps[4];
    int padded = pool_pad(P, vx, x->shape, pp, y->shape[2], y->shape[3], ps);
    int m = -1;
    for (int r = 0; r < pp->kernel; r++)
        for (int s = 0; s < pp->kernel; s++) {
            int tap = pool_tap(P, padded, ps, pp, r, s, y->shape);
            m = m < 0 ? tap : binary(P, "maximum", m, tap, 4, y->shape);
        }
    result(P, m, y);
    return finish(P);
}

/* Each window's gradient goes to its first maximum in (r, s) order, PyTorch's tie rule: a tap
 * takes it where it equals the window's maximum and no earlier tap did. */
bl_status xla_maxpool_backward(bl_device *dev, const bl_pool_params *pp, const bl_tensor *x,
                               const bl_tensor *dy, bl_tensor *dx) {
    prog Pv, *P = &Pv;
    begin(P, dev);
    int vx = arg(P, x), vdy = arg(P, dy);
    const int64_t *ys = dy->shape;
    int64_t ps[4];
    int padded = pool_pad(P, vx, x->shape, pp, ys[2], ys[3], ps);
    int k = pp->kernel, taps[64];
    if (k * k > 64) {
        end(P);
        return bl_error(BL_ERR_UNSUPPORTED, "xla: max pooling windows larger than 8x8");
    }
    int m = -1;
    for (int i = 0; i < k * k; i++) {
        taps[i] = pool_tap(P, padded, ps, pp, i / k, i % k, ys);
        m = m < 0 ? taps[i] : binary(P, "maximum", m, taps[i], 4, ys);
    }
    char bt[128];
    xla_type(bt, sizeof bt, 4, ys, "i1");
    int taken = -1, sum = -1, zero = splat(P, 0, 4, ys), fzero = splat(P, 0, 0, NULL);
    for (int i = 0; i < k * k; i++) {
        int eq = compare(P, "EQ", taps[i], m, 4, ys);
        if (taken >= 0) {
            int nt = fresh(P), e2 = fresh(P);
            EMIT("  %%v%d = stablehlo.not %%v%d : %s\n", nt, taken, bt);
            EMIT("  %%v%d = stablehlo.and %%v%d, %%v%d : %s\n", e2, eq, nt, bt);
            int t2 = fresh(P);
            EMIT("  %%v%d = stablehlo.or %%v%d, %%v%d : %s\n", t2, taken, eq, bt);
            eq = e2;
            taken = t2;
        } else {
            taken = eq;
        }
        int g = select_(P, eq, vdy, zero, 4, ys);
        int r = i / k, s = i % k, v = fresh(P);
        EMIT("  %%v%d = stablehlo.pad %%v%d, %%v%d, low = [0, 0, %d, %d], high = [0, 0, %lld, %lld], "
             "interior = [0, "
             "0, %d, %d] : (%s, tensor<f32>) -> %s\n",
             v, g, fzero, r, s, (long long)(ps[2] - (r + (ys[2] - 1) * pp->stride + 1)),
             (long long)(ps[3] - (s + (ys[3] - 1) * pp->stride + 1)), pp->stride - 1, pp->stride - 1,
             T(P, 4, ys), T(P, 4, ps));
        sum = sum < 0 ? v : binary(P, "add", sum, v, 4, ps);
    }
    int v = fresh(P);
    const int64_t *xs = x->shape;
    EMIT("  %%v%d = stablehlo.slice %%v%d [0:%lld, 0:%lld, %d:%lld, %d:%lld] : (%s) -> %s\n", v, sum,
         (long long)xs[0], (long long)xs[1], pp->pad, (long long)(pp->pad + xs[2]), pp->pad,
         (long long)(pp->pad + xs[3]), T(P, 4, ps), Tt(P, x));
    result(P, v, dx);
    return finish(P);
}

bl_status xla_global_avgpool_forward(bl_device *dev, const bl_tensor *x, bl_tensor *y) {
    prog Pv, *P = &Pv;
    begin(P, dev);
    int vx = arg(P, x);
    double hw = (double)(x->shape[2] * x->shape[3]);
    int sum = reduce(P, "add", vx, 4, x->shape, "2, 3", 2, y->shape);
    result(P, binary(P, "divide", sum, splat(P, hw, 2, y->shape), 2, y->shape), y);
    return finish(P);
}

bl_status xla_global_avgpool_backward(bl_device *dev, const bl_tensor *dy, bl_tensor *dx) {
    prog Pv, *P = &Pv;
    begin(P, dev);
    int vdy = arg(P, dy);
    double hw = (double)(dx->shape[2] * dx->shape[3]);
    int g = binary(P, "divide", vdy, splat(P, hw, 2, dy->shape), 2, dy->shape);
    result(P, bcast(P, g, 2, dy->shape, "0, 1", 4, dx->shape), dx);
    return finish(P);
}

/* ---- linear ---- */

bl_status xla_linear_forward(bl_device *dev, const bl_tensor *x, const bl_tensor *w, const bl_tensor *b,
                             bl_tensor *y) {
    prog Pv, *P = &Pv;
    begin(P, dev);
    int vx = arg(P, x), vw = arg(P, w), vb = b ? arg(P, b) : -1;
    int v = dot(P, vx, x->shape, vw, w->shape, 1, 1, y->shape);
    if (b) v = binary(P, "add", v, bcast(P, vb, 1, b->shape, "1", 2, y->shape), 2, y->shape);
    result(P, v, y);
    return finish(P);
}

bl_status xla_linear_backward(bl_device *dev, const bl_tensor *dy, const bl_tensor *x, const bl_tensor *w,
                              bl_tensor *dx, bl_tensor *dw, bl_tensor *db) {
    prog Pv, *P = &Pv;
    begin(P, dev);
    int vdy = arg(P, dy), vx = arg(P, x), vw = dx ? arg(P, w) : -1;
    if (dx) result(P, dot(P, vdy, dy->shape, vw, w->shape, 1, 0, dx->shape), dx);
    result(P, dot(P, vdy, dy->shape, vx, x->shape, 0, 0, dw->shape), dw);
    if (db) result(P, reduce(P, "add", vdy, 2, dy->shape, "0", 1, db->shape), db);
    return finish(P);
}

/* ---- loss ---- */

/* A label outside [0, C) cannot be reported without reading the labels back to the host, which
 * would split a training step's program in two; that example's loss and gradient row become NaN
 * instead (as on cuda), so the batch loss is NaN and the trainer stops on it. */
bl_status xla_softmax_cross_entropy(bl_device *dev, const bl_tensor *logits, const bl_tensor *labels,
                                    float label_smoothing, bl_tensor *loss, bl_tensor *dlogits) {
    prog Pv, *P = &Pv;
    begin(P, dev);
    const int64_t *s = logits->shape;
    int64_t N[1] = {s[0]}, one[1] = {1};
    double C = (double)s[1], eps = label_smoothing;
    int z = arg(P, logits), lab = arg(P, labels);
    int mx = reduce(P, "maximum", z, 2, s, "1", 1, N);
    int sh = binary(P, "subtract", z, bcast(P, mx, 1, N, "0", 2, s), 2, s);
    int e = unary(P, "exponential", sh, 2, s);
    int sum = reduce(P, "add", e, 2, s, "1", 1, N);
    int lse = unary(P, "log", sum, 1, N);
    int nll = binary(P, "subtract", bcast(P, lse, 1, N, "0", 2, s), sh, 2, s); /* -log p */
    /* target = (1 - eps) * onehot(label) + eps / C */
    char it[128], bt[128], lt[64];
    xla_type(it, sizeof it, 2, s, "i32");
    xla_type(bt, sizeof bt, 2, s, "i1");
    xla_type(lt, sizeof lt, 1, N, "i32");
    int io = fresh(P), lb = fresh(P), hot = fresh(P);
    EMIT("  %%v%d = stablehlo.iota dim = 1 : %s\n", io, it);
    EMIT("  %%v%d = stablehlo.broadcast_in_dim %%v%d, dims = [0] : (%s) -> %s\n", lb, lab, lt, it);
    EMIT("  %%v%d = stablehlo.compare EQ, %%v%d, %%v%d : (%s, %s) -> %s\n", hot, io, lb, it, it, bt);
    int target = select_(P, hot, splat(P, 1.0 - eps + eps / C, 2, s), splat(P, eps / C, 2, s), 2, s);
    /* valid = 0 <= label < C, per example, and broadcast along the classes */
    char nb[64];
    xla_type(nb, sizeof nb, 1, N, "i1");
    int zero = fresh(P), classes = fresh(P), ge = fresh(P), below = fresh(P), valid = fresh(P),
        valid2 = fresh(P);
    EMIT("  %%v%d = stablehlo.constant dense<0> : %s\n", zero, lt);
    EMIT("  %%v%d = stablehlo.constant dense<%lld> : %s\n", classes, (long long)s[1], lt);
    EMIT("  %%v%d = stablehlo.compare GE, %%v%d, %%v%d : (%s, %s) -> %s\n", ge, lab, zero, lt, lt, nb);
    EMIT("  %%v%d = stablehlo.compare LT, %%v%d, %%v%d : (%s, %s) -> %s\n", below, lab, classes, lt, lt, nb);
    EMIT("  %%v%d = stablehlo.and %%v%d, %%v%d : %s\n", valid, ge, below, nb);
    EMIT("  %%v%d = stablehlo.broadcast_in_dim %%v%d, dims = [0] : (%s) -> %s\n", valid2, valid, nb, bt);
    int row = reduce(P, "add", binary(P, "multiply", target, nll, 2, s), 2, s, "1", 1, N);
    row = select_(P, valid, row, splat(P, NAN, 1, N), 1, N);
    int per = reduce(P, "add", row, 1, N, "0", 0, NULL);
    int mean = binary(P, "divide", per, splat(P, (double)s[0], 0, NULL), 0, NULL);
    result(P, reshape(P, mean, 0, NULL, 1, one), loss);
    if (dlogits) {
        int sm = binary(P, "divide", e, bcast(P, sum, 1, N, "0", 2, s), 2, s);
        int g =
            binary(P, "divide", binary(P, "subtract", sm, target, 2, s), splat(P, (double)s[0], 2, s), 2, s);
        result(P, select_(P, valid2, g, splat(P, NAN, 2, s), 2, s), dlogits);
    }
    return finish(P);
}

/* ---- optimizers ---- */

bl_status xla_sgd_update(bl_device *dev, const bl_sgd_params *sgd, bl_tensor *param, const bl_tensor *grad,
                         bl_tensor *momentum_buf) {
    prog Pv, *P = &Pv;
    begin(P, dev);
    const int64_t *s = param->shape;
    int nd = param->ndim;
    float h[3] = {sgd->lr, sgd->momentum, sgd->weight_decay};
    int vp = arg(P, param), vg = arg(P, grad), vm = sgd->momentum != 0.0f ? arg(P, momentum_buf) : -1;
    int hv = arg_host(P, h, 3);
    int lr = scalar(P, hv, 3, 0, nd, s), mu = scalar(P, hv, 3, 1, nd, s), wd = scalar(P, hv, 3, 2, nd, s);
    int g = binary(P, "add", vg, binary(P, "multiply", wd, vp, nd, s), nd, s);
    if (sgd->momentum != 0.0f) {
        int m = binary(P, "add", binary(P, "multiply", mu, vm, nd, s), g, nd, s);
        g = sgd->nesterov ? binary(P, "add", g, binary(P, "multiply", mu, m, nd, s), nd, s) : m;
        result(P, m, momentum_buf);
    }
    result(P, binary(P, "subtract", vp, binary(P, "multiply", lr, g, nd, s), nd, s), param);
    return finish(P);
}

bl_status xla_adamw_update(bl_device *dev, const bl_adamw_params *p, bl_tensor *param, const bl_tensor *grad,
                           bl_tensor *exp_avg, bl_tensor *exp_avg_sq) {
    prog Pv, *P = &Pv;
    begin(P, dev);
    const int64_t *s = param->shape;
    int nd = param->ndim;
    double bc1 = 1.0 - pow(p->beta1, (double)p->step), bc2 = 1.0 - pow(p->beta2, (double)p->step);
    float h[8] = {
        1.0f - p->lr * p->weight_decay, p->beta1,         1.0f - p->beta1, p->beta2, 1.0f - p->beta2,
        (float)(p->lr / bc1),           (float)sqrt(bc2), p->eps};
    int vp = arg(P, param), vg = arg(P, grad), vm = arg(P, exp_avg), vv = arg(P, exp_avg_sq);
    int hv = arg_host(P, h, 8), k[8];
    for (int i = 0; i < 8; i++) k[i] = scalar(P, hv, 8, i, nd, s);
    int pd = binary(P, "multiply", vp, k[0], nd, s);
    int m = binary(P, "add", binary(P, "multiply", k[1], vm, nd, s), binary(P, "multiply", k[2], vg, nd, s),
                   nd, s);
    int v = binary(P, "add", binary(P, "multiply", k[3], vv, nd, s),
                   binary(P, "multiply", binary(P, "multiply", k[4], vg, nd, s), vg, nd, s), nd, s);
    int denom = binary(P, "add", binary(P, "divide", unary(P, "sqrt", v, nd, s), k[6], nd, s), k[7], nd, s);
    int upd = binary(P, "divide", binary(P, "multiply", k[5], m, nd, s), denom, nd, s);
    result(P, binary(P, "subtract", pd, upd, nd, s), param);
    result(P, m, exp_avg);
    result(P, v, exp_avg_sq);
    return finish(P);
}
