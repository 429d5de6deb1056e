/* Pooling on oneDNN: the ImageNet stem's max-pool and the global average pool before the
 * classifier. oneDNN's max-pool backward needs the forward's workspace (argmax positions),
 * which our op API does not carry between calls, so the backward reruns the forward into
 * buffers the cache entry owns; only the stem's pool takes that path, once per step. */
#include <stdlib.h>
#include <string.h>

#include "backends/cpu_onednn/onednn.h"
#include "backends/host/host_buffer.h"

static onednn_key pool_key(int kind, const bl_pool_params *pp, const int64_t *x, const int64_t *y) {
    onednn_key k;
    memset(&k, 0, sizeof k);
    k.kind = kind;
    k.threads = onednn_threads();
    for (int i = 0; i < 4; i++) {
        k.d[i] = x[i];
        k.d[4 + i] = y[i];
    }
    if (pp) {
        k.d[8] = pp->kernel;
        k.d[9] = pp->stride;
        k.d[10] = pp->pad;
    }
    return k;
}

typedef struct pool_desc {
    dnnl_memory_desc_t x, y;
    dnnl_dims_t strides, kernel, dilation, pad_l, pad_r;
    dnnl_alg_kind_t alg;
} pool_desc;

/* A max-pool (pp set) or a global average pool (pp NULL) from x (N,C,H,W) to y (N,C,P,Q). */
static bl_status pool_desc_init(pool_desc *d, const bl_pool_params *pp, const int64_t *x, const int64_t *y,
                                const char *op) {
    memset(d, 0, sizeof *d);
    BL_TRY(onednn_md4(&d->x, x, op));
    BL_TRY(onednn_md4(&d->y, y, op));
    if (pp) {
        d->alg = dnnl_pooling_max;
        d->strides[0] = d->strides[1] = pp->stride;
        d->kernel[0] = d->kernel[1] = pp->kernel;
        d->pad_l[0] = d->pad_l[1] = pp->pad;
        d->pad_r[0] = (y[2] - 1) * pp->stride + pp->kernel - x[2] - pp->pad;
        d->pad_r[1] = (y[3] - 1) * pp->stride + pp->kernel - x[3] - pp->pad;
    } else {
        d->alg = dnnl_pooling_avg_exclude_padding;
        d->strides[0] = d->strides[1] = 1;
        d->kernel[0] = x[2];
        d->kernel[1] = x[3];
    }
    return BL_OK;
}

static bl_status user_attr(dnnl_primitive_attr_t *attr, const char *op) {
    DNNL_CHECK(dnnl_primitive_attr_create(attr), op);
    dnnl_status_t st = dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user);
    if (st != dnnl_success) dnnl_primitive_attr_destroy(*attr);
    DNNL_CHECK(st, op);
    return BL_OK;
}

static bl_status fwd_pd(onednn_ctx *c, const pool_desc *d, bool training, dnnl_primitive_desc_t *pd,
                        const char *op) {
    dnnl_pooling_v2_desc_t pdsc;
    DNNL_CHECK(dnnl_pooling_v2_forward_desc_init(
                   &pdsc, training ? dnnl_forward_training : dnnl_forward_inference, d->alg, &d->x, &d->y,
                   d->strides, d->kernel, d->dilation, d->pad_l, d->pad_r),
               op);
    dnnl_primitive_attr_t attr;
    BL_TRY(user_attr(&attr, op));
    dnnl_status_t st = dnnl_primitive_desc_create(pd, &pdsc, attr, c->engine, NULL);
    dnnl_primitive_attr_destroy(attr);
    DNNL_CHECK(st, op);
    return BL_OK;
}

/* Forward entry: with `workspace` (max-pool training) the workspace is an extra argument. */
static bl_status get_fwd(onednn_ctx *c, int kind, const bl_pool_params *pp, const int64_t *x,
                         const int64_t *y, bool workspace, onednn_prim **out, const char *op) {
    onednn_key key = pool_key(kind, pp, x, y);
    key.d[11] = workspace;
    onednn_prim *e = onednn_prim_find(c, &key);
    if (!e) {
        pool_desc d;
        BL_TRY(pool_desc_init(&d, pp, x, y, op));
        BL_TRY(onednn_prim_add(c, &key, &e));
        BL_TRY(fwd_pd(c, &d, workspace, &e->pd, op));
        int ids[3] = {DNNL_ARG_SRC, DNNL_ARG_DST, DNNL_ARG_WORKSPACE};
        BL_TRY(onednn_prim_finish(c, e, workspace ? 3 : 2, ids, op));
    }
    *out = e;
    return BL_OK;
}

static bl_status get_bwd(onednn_ctx *c, int kind, const bl_pool_params *pp, const int64_t *x,
                         const int64_t *y, onednn_prim **out, const char *op) {
    onednn_key key = pool_key(kind, pp, x, y);
    onednn_prim *e = onednn_prim_find(c, &key);
    if (!e) {
        pool_desc d;
        BL_TRY(pool_desc_init(&d, pp, x, y, op));
        dnnl_primitive_desc_t hint;
        BL_TRY(fwd_pd(c, &d, true, &hint, op));
        dnnl_pooling_v2_desc_t pdsc;
        dnnl_status_t st = dnnl_pooling_v2_backward_desc_init(&pdsc, d.alg, &d.x, &d.y, d.strides, d.kernel,
                                                              d.dilation, d.pad_l, d.pad_r);
        dnnl_primitive_attr_t attr = NULL;
        bl_status s = st == dnnl_success ? user_attr(&attr, op) : BL_OK;
        if (s == BL_OK) s = onednn_prim_add(c, &key, &e);
        if (s == BL_OK && st == dnnl_success)
            st = dnnl_primitive_desc_create(&e->pd, &pdsc, attr, c->engine, hint);
        if (attr) dnnl_primitive_attr_destroy(attr);
        dnnl_primitive_desc_destroy(hint);
        BL_TRY(s);
        DNNL_CHECK(st, op);
        bool ws = pp != NULL;
        int ids[3] = {DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_SRC, DNNL_ARG_WORKSPACE};
        BL_TRY(onednn_prim_finish(c, e, ws ? 3 : 2, ids, op));
    }
    *out = e;
    return BL_OK;
}

bl_status onednn_maxpool_forward(bl_device *dev, const bl_pool_params *pp, const bl_tensor *x, bl_tensor *y) {
    static const char op[] = "maxpool_forward";
    onednn_ctx *c = onednn_of(dev);
    onednn_prim *e;
    BL_TRY(get_fwd(c, OK_MAXPOOL_FWD, pp, x->shape, y->shape, false, &e, op));
    onednn_wrote(dev, y);
    BL_TRY(onednn_prim_bind_tensor(e, DNNL_ARG_SRC, x, op));
    BL_TRY(onednn_prim_bind_tensor(e, DNNL_ARG_DST, y, op));
    return onednn_prim_run(c, e, op);
}

bl_status onednn_maxpool_backward(bl_device *dev, const bl_pool_params *pp, const bl_tensor *x,
                                  const bl_tensor *dy, bl_tensor *dx) {
    static const char op[] = "maxpool_backward";
    onednn_ctx *c = onednn_of(dev);
    onednn_prim *f, *b;
    BL_TRY(get_fwd(c, OK_MAXPOOL_FWD, pp, x->shape, dy->shape, true, &f, op));
    BL_TRY(get_bwd(c, OK_MAXPOOL_BWD, pp, x->shape, dy->shape, &b, op));
    /* Adding the backward entry may have moved the cache: look the forward up again. */
    BL_TRY(get_fwd(c, OK_MAXPOOL_FWD, pp, x->shape, dy->shape, true, &f, op));
    /* The backward entry owns the recomputed output and the workspace, each sized from the
     * descriptor the forward reports for it (the workspace's layout is oneDNN's own). */
    const dnnl_memory_desc_t *ymd = dnnl_primitive_desc_query_md(f->pd, dnnl_query_dst_md, 0);
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(f->pd, dnnl_query_workspace_md, 0);
    size_t ybytes = (dnnl_memory_desc_get_size(ymd) + 63) & ~(size_t)63,
           wbytes = dnnl_memory_desc_get_size(wmd);
    if (!b->buf) {
        b->buf = bl_host_buffer_alloc(ybytes + wbytes);
        if (!b->buf) return bl_error(BL_ERR_OUT_OF_MEMORY, "onednn %s: workspace", op);
        b->buf_bytes = ybytes + wbytes;
    }
    char *ybuf = b->buf, *ws = ybuf + ybytes;
    BL_TRY(onednn_prim_bind_tensor(f, DNNL_ARG_SRC, x, op));
    BL_TRY(onednn_prim_bind(f, DNNL_ARG_DST, ybuf, ybytes, op));
    BL_TRY(onednn_prim_bind(f, DNNL_ARG_WORKSPACE, ws, wbytes, op));
    BL_TRY(onednn_prim_run(c, f, op));
    onednn_wrote(dev, dx);
    BL_TRY(onednn_prim_bind_tensor(b, DNNL_ARG_DIFF_DST, dy, op));
    BL_TRY(onednn_prim_bind_tensor(b, DNNL_ARG_DIFF_SRC, dx, op));
    BL_TRY(onednn_prim_bind(b, DNNL_ARG_WORKSPACE, ws, wbytes, op));
    return onednn_prim_run(c, b, op);
}

bl_status onednn_global_avgpool_forward(bl_device *dev, const bl_tensor *x, bl_tensor *y) {
    static const char op[] = "global_avgpool_forward";
    onednn_ctx *c = onednn_of(dev);
    int64_t ys[4] = {x->shape[0], x->shape[1], 1, 1}; /* (N,C,1,1) NHWC is (N,C) row-major */
    onednn_prim *e;
    BL_TRY(get_fwd(c, OK_AVGPOOL_FWD, NULL, x->shape, ys, false, &e, op));
    onednn_wrote(dev, y);
    BL_TRY(onednn_prim_bind_tensor(e, DNNL_ARG_SRC, x, op));
    BL_TRY(onednn_prim_bind_tensor(e, DNNL_ARG_DST, y, op));
    return onednn_prim_run(c, e, op);
}

bl_status onednn_global_avgpool_backward(bl_device *dev, const bl_tensor *dy, bl_tensor *dx) {
    static const char op[] = "global_avgpool_backward";
    onednn_ctx *c = onednn_of(dev);
    int64_t ys[4] = {dx->shape[0], dx->shape[1], 1, 1};
    onednn_prim *e;
    BL_TRY(get_bwd(c, OK_AVGPOOL_BWD, NULL, dx->shape, ys, &e, op));
    onednn_wrote(dev, dx);
    BL_TRY(onednn_prim_bind_tensor(e, DNNL_ARG_DIFF_DST, dy, op));
    BL_TRY(onednn_prim_bind_tensor(e, DNNL_ARG_DIFF_SRC, dx, op));
    return onednn_prim_run(c, e, op);
}
