/* The classifier on oneDNN's inner product, in plain row-major formats (the tensors are
 * tiny: 512 x num_classes), with the bias gradient from the weights-gradient primitive. */
#include <string.h>

#include "backends/cpu_onednn/onednn.h"

static onednn_key ip_key(int kind, const bl_tensor *x, const bl_tensor *w, bool bias) {
    onednn_key k;
    memset(&k, 0, sizeof k);
    k.kind = kind;
    k.threads = onednn_threads();
    k.d[0] = x->shape[0];
    k.d[1] = x->shape[1];
    k.d[2] = w->shape[0];
    k.d[3] = bias;
    return k;
}

typedef struct ip_mds {
    dnnl_memory_desc_t x, w, b, y;
} ip_mds;

static bl_status ip_mds_init(ip_mds *m, const bl_tensor *x, const bl_tensor *w, const char *op) {
    int64_t yd[2] = {x->shape[0], w->shape[0]};
    BL_TRY(onednn_md_plain(&m->x, 2, x->shape, op));
    BL_TRY(onednn_md_plain(&m->w, 2, w->shape, op));
    BL_TRY(onednn_md_plain(&m->b, 1, w->shape, op));
    BL_TRY(onednn_md_plain(&m->y, 2, yd, op));
    return BL_OK;
}

static bl_status create_pd(onednn_ctx *c, const void *desc, const dnnl_primitive_desc_t hint,
                           dnnl_primitive_desc_t *pd, const char *op) {
    dnnl_primitive_attr_t attr;
    DNNL_CHECK(dnnl_primitive_attr_create(&attr), op);
    dnnl_status_t st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (st == dnnl_success) st = dnnl_primitive_desc_create(pd, desc, attr, c->engine, hint);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success)
        return bl_error(BL_ERR_DEVICE, "onednn %s: no inner-product implementation (%s)", op,
                        onednn_status_name(st));
    return BL_OK;
}

static bl_status fwd_pd(onednn_ctx *c, const ip_mds *m, bool bias, bool training, dnnl_primitive_desc_t *pd,
                        const char *op) {
    dnnl_inner_product_desc_t d;
    DNNL_CHECK(dnnl_inner_product_forward_desc_init(&d,
                                                    training ? dnnl_forward_training : dnnl_forward_inference,
                                                    &m->x, &m->w, bias ? &m->b : NULL, &m->y),
               op);
    return create_pd(c, &d, NULL, pd, op);
}

bl_status onednn_linear_forward(bl_device *dev, const bl_tensor *x, const bl_tensor *w, const bl_tensor *b,
                                bl_tensor *y) {
    static const char op[] = "linear_forward";
    onednn_ctx *c = onednn_of(dev);
    onednn_key key = ip_key(OK_IP_FWD, x, w, b != NULL);
    onednn_prim *e = onednn_prim_find(c, &key);
    if (!e) {
        ip_mds m;
        BL_TRY(ip_mds_init(&m, x, w, op));
        BL_TRY(onednn_prim_add(c, &key, &e));
        BL_TRY(fwd_pd(c, &m, b != NULL, true, &e->pd, op));
        int ids[4] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_BIAS};
        BL_TRY(onednn_prim_finish(c, e, b ? 4 : 3, ids, op));
    }
    onednn_wrote(dev, y);
    BL_TRY(onednn_prim_bind_tensor(e, DNNL_ARG_SRC, x, op));
    BL_TRY(onednn_prim_bind_tensor(e, DNNL_ARG_WEIGHTS, w, op));
    BL_TRY(onednn_prim_bind_tensor(e, DNNL_ARG_DST, y, op));
    if (b) BL_TRY(onednn_prim_bind_tensor(e, DNNL_ARG_BIAS, b, op));
    return onednn_prim_run(c, e, op);
}

static bl_status get_bwd(onednn_ctx *c, int kind, const bl_tensor *x, const bl_tensor *w, bool bias,
                         onednn_prim **out, const char *op) {
    onednn_key key = ip_key(kind, x, w, bias);
    onednn_prim *e = onednn_prim_find(c, &key);
    if (!e) {
        ip_mds m;
        BL_TRY(ip_mds_init(&m, x, w, op));
        dnnl_primitive_desc_t hint;
        BL_TRY(fwd_pd(c, &m, bias, true, &hint, op));
        dnnl_inner_product_desc_t d;
        dnnl_status_t st =
            kind == OK_IP_BWD_DATA
                ? dnnl_inner_product_backward_data_desc_init(&d, &m.x, &m.w, &m.y)
                : dnnl_inner_product_backward_weights_desc_init(&d, &m.x, &m.w, bias ? &m.b : NULL, &m.y);
        bl_status s = onednn_prim_add(c, &key, &e);
        if (s == BL_OK && st == dnnl_success) s = create_pd(c, &d, hint, &e->pd, op);
        dnnl_primitive_desc_destroy(hint);
        BL_TRY(s);
        DNNL_CHECK(st, op);
        if (kind == OK_IP_BWD_DATA) {
            int ids[3] = {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC};
            BL_TRY(onednn_prim_finish(c, e, 3, ids, op));
        } else {
            int ids[4] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS, DNNL_ARG_DIFF_BIAS};
            BL_TRY(onednn_prim_finish(c, e, bias ? 4 : 3, ids, op));
        }
    }
    *out = e;
    return BL_OK;
}

bl_status onednn_linear_backward(bl_device *dev, const bl_tensor *dy, const bl_tensor *x, const bl_tensor *w,
                                 bl_tensor *dx, bl_tensor *dw, bl_tensor *db) {
    static const char op[] = "linear_backward";
    onednn_ctx *c = onednn_of(dev);
    onednn_prim *e;
    if (dx) {
        BL_TRY(get_bwd(c, OK_IP_BWD_DATA, x, w, false, &e, op));
        onednn_wrote(dev, dx);
        BL_TRY(onednn_prim_bind_tensor(e, DNNL_ARG_DIFF_DST, dy, op));
        BL_TRY(onednn_prim_bind_tensor(e, DNNL_ARG_WEIGHTS, w, op));
        BL_TRY(onednn_prim_bind_tensor(e, DNNL_ARG_DIFF_SRC, dx, op));
        BL_TRY(onednn_prim_run(c, e, op));
    }
    BL_TRY(get_bwd(c, OK_IP_BWD_WEIGHTS, x, w, db != NULL, &e, op));
    onednn_wrote(dev, dw);
    onednn_wrote(dev, db);
    BL_TRY(onednn_prim_bind_tensor(e, DNNL_ARG_SRC, x, op));
    BL_TRY(onednn_prim_bind_tensor(e, DNNL_ARG_DIFF_DST, dy, op));
    BL_TRY(onednn_prim_bind_tensor(e, DNNL_ARG_DIFF_WEIGHTS, dw, op));
    if (db) BL_TRY(onednn_prim_bind_tensor(e, DNNL_ARG_DIFF_BIAS, db, op));
    return onednn_prim_run(c, e, op);
}
