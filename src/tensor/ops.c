/* The op front ends: every bl_op_* checks devices, dtypes, layouts and shapes here, once, and
 * names the op, the argument and what is wrong; then it calls the device's backend. Backends
 * can therefore assume well-formed arguments. */
#include <stdio.h>
#include <string.h>

#include "tensor/backend.h"

/* The names and the table lookup come from the op list (beamlet/tensor.h). */
#define OP_NAME(u, NAME, name, params, args) #name,
static const char *const op_names[BL_OP_COUNT] = {BL_OP_LIST(OP_NAME, )};
#undef OP_NAME

const char *bl_op_name(bl_op op) { return op >= 0 && op < BL_OP_COUNT ? op_names[op] : "invalid op"; }

static const void *op_entry(const bl_backend *b, bl_op op) {
    switch (op) {
#define OP_ENTRY(u, NAME, name, params, args)                                                                \
    case BL_OP_##NAME: return (const void *)b->ops.name;
        BL_OP_LIST(OP_ENTRY, )
#undef OP_ENTRY
        default: return NULL;
    }
}

bool bl_op_mixed_bf16(bl_op op, bl_dtype dtype) {
    if (dtype == BL_F32) return true;
    if (dtype != BL_BF16) return false;
    switch (op) {
        case BL_OP_SOFTMAX_CROSS_ENTROPY:
        case BL_OP_SGD_UPDATE:
        case BL_OP_ADAMW_UPDATE: return false;
        default: return true;
    }
}

bool bl_device_supports_op(const bl_device *dev, bl_op op, bl_dtype dtype) {
    if (!op_entry(dev->backend, op)) return false;
    if (dev->backend->supports_dtype) return dev->backend->supports_dtype(op, dtype);
    return dtype == BL_F32;
}

/* ---- validation helpers: each returns false after setting the error -------------------- */

typedef struct check {
    bl_device *dev;
    bl_op op;
    bl_status status;
} check;

static bool fail(check *c, bl_status s, const char *fmt, const char *arg, const char *detail) {
    char msg[400];
    snprintf(msg, sizeof msg, fmt, arg, detail);
    c->status = bl_error(s, "%s on %s: %s", bl_op_name(c->op), c->dev ? c->dev->name : "?", msg);
    return false;
}

static bool start(check *c, bl_device *dev, bl_op op, bl_dtype dtype) {
    c->dev = dev;
    c->op = op;
    c->status = BL_OK;
    if (!dev) return fail(c, BL_ERR_INVALID_ARG, "%s%s", "no device given", "");
    if (!bl_device_supports_op(dev, op, dtype))
        return fail(c, BL_ERR_UNSUPPORTED, "not supported by backend %s for %s", dev->backend->name,
                    bl_dtype_name(dtype));
    return true;
}

static bool tensor_ok(check *c, const bl_tensor *t, const char *arg, bl_dtype dtype, int ndim) {
    char d[96];
    if (!t) return fail(c, BL_ERR_INVALID_ARG, "argument %s is missing%s", arg, "");
    if (t->device != c->dev)
        return fail(c, BL_ERR_INVALID_ARG, "argument %s lives on another device%s", arg, "");
    if (!t->data && bl_tensor_numel(t) > 0)
        return fail(c, BL_ERR_INVALID_ARG, "argument %s has no data%s", arg, "");
    if (t->dtype != dtype) {
        snprintf(d, sizeof d, "%s, expected %s", bl_dtype_name(t->dtype), bl_dtype_name(dtype));
        return fail(c, BL_ERR_INVALID_ARG, "argument %s has dtype %s", arg, d);
    }
    if (t->ndim != ndim) {
        snprintf(d, sizeof d, "%d dimensions, expected %d", t->ndim, ndim);
        return fail(c, BL_ERR_INVALID_ARG, "argument %s has %s", arg, d);
    }
    if (ndim == 4 && !(c->dev->backend->layouts & (1u << t->layout)))
        return fail(c, BL_ERR_UNSUPPORTED, "argument %s: layout %s not supported by this backend", arg,
                    t->layout == BL_LAYOUT_NHWC ? "nhwc" : "nchw");
    return true;
}

static bool shape_is(check *c, const bl_tensor *t, const char *arg, const int64_t *want) {
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] != want[i]) {
            char got[96], exp[96];
            bl_tensor describe_want = *t;
            for (int j = 0; j < t->ndim; j++) describe_want.shape[j] = want[j];
            bl_tensor_describe(t, got, sizeof got);
            bl_tensor_describe(&describe_want, exp, sizeof exp);
            char detail[256];
            snprintf(detail, sizeof detail, "%s, expected %s", got, exp);
            return fail(c, BL_ERR_INVALID_ARG, "argument %s is %s", arg, detail);
        }
    }
    return true;
}

static bool same_layout(check *c, const bl_tensor *a, const bl_tensor *b, const char *names) {
    if (a->layout != b->layout) return fail(c, BL_ERR_INVALID_ARG, "%s have different layouts%s", names, "");
    return true;
}

static bool positive(check *c, int64_t v, const char *what) {
    if (v <= 0) return fail(c, BL_ERR_INVALID_ARG, "%s must be positive%s", what, "");
    return true;
}

#define ENSURE(cond)                                                                                         \
    do {                                                                                                     \
        if (!(cond)) return c.status;                                                                        \
    } while (0)

/* ---- convolution -------------------------------------------------------------------------- */

static bool conv_shapes(check *c, const bl_conv2d_params *p, const bl_tensor *x, const bl_tensor *w,
                        const bl_tensor *y) {
    if (!p) return fail(c, BL_ERR_INVALID_ARG, "%s%s", "no params", "");
    if (!positive(c, p->stride_h, "stride") || !positive(c, p->stride_w, "stride")) return false;
    if (p->pad_h < 0 || p->pad_w < 0) return fail(c, BL_ERR_INVALID_ARG, "%s%s", "negative padding", "");
    if (x->shape[1] != w->shape[1]) {
        char d[64];
        snprintf(d, sizeof d, "%lld vs %lld", (long long)x->shape[1], (long long)w->shape[1]);
        return fail(c, BL_ERR_INVALID_ARG, "input channels of x and w differ: %s%s", d, "");
    }
    int64_t P = (x->shape[2] + 2 * p->pad_h - w->shape[2]);
    int64_t Q = (x->shape[3] + 2 * p->pad_w - w->shape[3]);
    if (P < 0 || Q < 0) return fail(c, BL_ERR_INVALID_ARG, "%s%s", "kernel larger than padded input", "");
    int64_t want[4] = {x->shape[0], w->shape[0], P / p->stride_h + 1, Q / p->stride_w + 1};
    return shape_is(c, y, "y", want) && same_layout(c, x, y, "x and y");
}

bl_status bl_op_conv2d_forward(bl_device *dev, const bl_conv2d_params *p, const bl_tensor *x,
                               const bl_tensor *w, const bl_tensor *bias, const bl_tensor *residual,
                               bool relu, bl_tensor *y) {
    check c;
    bl_dtype dt = x ? x->dtype : BL_F32;
    ENSURE(start(&c, dev, BL_OP_CONV2D_FORWARD, dt));
    ENSURE(tensor_ok(&c, x, "x", dt, 4) && tensor_ok(&c, w, "w", dt, 4) && tensor_ok(&c, y, "y", dt, 4));
    ENSURE(conv_shapes(&c, p, x, w, y));
    if (bias) {
        ENSURE(tensor_ok(&c, bias, "bias", BL_F32, 1) && shape_is(&c, bias, "bias", &w->shape[0]));
    }
    if (residual) {
        ENSURE(tensor_ok(&c, residual, "residual", dt, 4) && shape_is(&c, residual, "residual", y->shape));
        ENSURE(same_layout(&c, residual, y, "residual and y"));
    }
    return dev->backend->ops.conv2d_forward(dev, p, x, w, bias, residual, relu, y);
}

bl_status bl_op_conv2d_backward_data(bl_device *dev, const bl_conv2d_params *p, const bl_tensor *dy,
                                     const bl_tensor *w, bl_tensor *dx) {
    check c;
    bl_dtype dt = dy ? dy->dtype : BL_F32;
    ENSURE(start(&c, dev, BL_OP_CONV2D_BACKWARD_DATA, dt));
    ENSURE(tensor_ok(&c, dy, "dy", dt, 4) && tensor_ok(&c, w, "w", dt, 4) && tensor_ok(&c, dx, "dx", dt, 4));
    ENSURE(conv_shapes(&c, p, dx, w, dy));
    return dev->backend->ops.conv2d_backward_data(dev, p, dy, w, dx);
}

bl_status bl_op_conv2d_backward_filter(bl_device *dev, const bl_conv2d_params *p, const bl_tensor *x,
                                       const bl_tensor *dy, bl_tensor *dw) {
    check c;
    bl_dtype dt = x ? x->dtype : BL_F32;
    ENSURE(start(&c, dev, BL_OP_CONV2D_BACKWARD_FILTER, dt));
    ENSURE(tensor_ok(&c, x, "x", dt, 4) && tensor_ok(&c, dy, "dy", dt, 4) && tensor_ok(&c, dw, "dw", dt, 4));
    ENSURE(conv_shapes(&c, p, x, dw, dy));
    return dev->backend->ops.conv2d_backward_filter(dev, p, x, dy, dw);
}

/* ---- batch norm --------------------------------------------------------------------------- */

static bool channel_vec(check *c, const bl_tensor *t, const char *arg, int64_t C) {
    return tensor_ok(c, t, arg, BL_F32, 1) && shape_is(c, t, arg, &C);
}

static bool bn_common(check *c, const bl_tensor *x, const bl_tensor *gamma, const bl_tensor *beta,
                      const bl_tensor *residual, const bl_tensor *y) {
    bl_dtype dt = x->dtype;
    if (!tensor_ok(c, x, "x", dt, 4) || !tensor_ok(c, y, "y", dt, 4)) return false;
    if (!shape_is(c, y, "y", x->shape) || !same_layout(c, x, y, "x and y")) return false;
    if (!channel_vec(c, gamma, "gamma", x->shape[1]) || !channel_vec(c, beta, "beta", x->shape[1]))
        return false;
    if (residual &&
        (!tensor_ok(c, residual, "residual", dt, 4) || !shape_is(c, residual, "residual", x->shape) ||
         !same_layout(c, residual, x, "residual and x")))
        return false;
    return true;
}

bl_status bl_op_batchnorm_forward_train(bl_device *dev, const bl_batchnorm_params *p, const bl_tensor *x,
                                        const bl_tensor *gamma, const bl_tensor *beta,
                                        const bl_tensor *residual, bool relu, bl_tensor *running_mean,
                                        bl_tensor *running_var, bl_tensor *save_mean, bl_tensor *save_invstd,
                                        bl_tensor *y) {
    check c;
    ENSURE(start(&c, dev, BL_OP_BATCHNORM_FORWARD_TRAIN, x ? x->dtype : BL_F32));
    if (!p) return bl_error(BL_ERR_INVALID_ARG, "batchnorm_forward_train: no params");
    ENSURE(bn_common(&c, x, gamma, beta, residual, y));
    int64_t C = x->shape[1];
    ENSURE(channel_vec(&c, running_mean, "running_mean", C) &&
           channel_vec(&c, running_var, "running_var", C));
    ENSURE(channel_vec(&c, save_mean, "save_mean", C) && channel_vec(&c, save_invstd, "save_invstd", C));
    if (x->shape[0] * x->shape[2] * x->shape[3] < 2)
        return bl_error(BL_ERR_INVALID_ARG,
                        "batchnorm_forward_train on %s: needs more than one value "
                        "per channel (got N*H*W = %lld)",
                        dev->name, (long long)(x->shape[0] * x->shape[2] * x->shape[3]));
    return dev->backend->ops.batchnorm_forward_train(dev, p, x, gamma, beta, residual, relu, running_mean,
                                                     running_var, save_mean, save_invstd, y);
}

bl_status bl_op_batchnorm_forward_eval(bl_device *dev, const bl_batchnorm_params *p, const bl_tensor *x,
                                       const bl_tensor *gamma, const bl_tensor *beta,
                                       const bl_tensor *residual, bool relu, const bl_tensor *running_mean,
                                       const bl_tensor *running_var, bl_tensor *y) {
    check c;
    ENSURE(start(&c, dev, BL_OP_BATCHNORM_FORWARD_EVAL, x ? x->dtype : BL_F32));
    if (!p) return bl_error(BL_ERR_INVALID_ARG, "batchnorm_forward_eval: no params");
    ENSURE(bn_common(&c, x, gamma, beta, residual, y));
    ENSURE(channel_vec(&c, running_mean, "running_mean", x->shape[1]) &&
           channel_vec(&c, running_var, "running_var", x->shape[1]));
    return dev->backend->ops.batchnorm_forward_eval(dev, p, x, gamma, beta, residual, relu, running_mean,
                                                    running_var, y);
}

bl_status bl_op_batchnorm_backward(bl_device *dev, const bl_tensor *dy, const bl_tensor *x,
                                   const bl_tensor *y, bool relu, const bl_tensor *gamma,
                                   const bl_tensor *save_mean, const bl_tensor *save_invstd, bl_tensor *dx,
                                   bl_tensor *dgamma, bl_tensor *dbeta, bl_tensor *dresidual) {
    check c;
    bl_dtype dt = x ? x->dtype : BL_F32;
    ENSURE(start(&c, dev, BL_OP_BATCHNORM_BACKWARD, dt));
    ENSURE(tensor_ok(&c, x, "x", dt, 4));
    int64_t C = x->shape[1];
    ENSURE(tensor_ok(&c, dy, "dy", dt, 4) && shape_is(&c, dy, "dy", x->shape) &&
           same_layout(&c, dy, x, "dy and x"));
    ENSURE(tensor_ok(&c, y, "y", dt, 4) && shape_is(&c, y, "y", x->shape) &&
           same_layout(&c, y, x, "y and x"));
    ENSURE(tensor_ok(&c, dx, "dx", dt, 4) && shape_is(&c, dx, "dx", x->shape) &&
           same_layout(&c, dx, x, "dx and x"));
    ENSURE(channel_vec(&c, gamma, "gamma", C) && channel_vec(&c, save_mean, "save_mean", C) &&
           channel_vec(&c, save_invstd, "save_invstd", C));
    ENSURE(channel_vec(&c, dgamma, "dgamma", C) && channel_vec(&c, dbeta, "dbeta", C));
    if (dresidual) {
        ENSURE(tensor_ok(&c, dresidual, "dresidual", dt, 4) &&
               shape_is(&c, dresidual, "dresidual", x->shape) &&
               same_layout(&c, dresidual, x, "dresidual and x"));
    }
    return dev->backend->ops.batchnorm_backward(dev, dy, x, y, relu, gamma, save_mean, save_invstd, dx,
                                                dgamma, dbeta, dresidual);
}

/* ---- elementwise -------------------------------------------------------------------------- */

static bool same_as(check *c, const bl_tensor *ref, const char *ref_name, const bl_tensor *t,
                    const char *arg) {
    if (!tensor_ok(c, t, arg, ref->dtype, ref->ndim) || !shape_is(c, t, arg, ref->shape)) return false;
    if (ref->ndim == 4 && t->layout != ref->layout) {
        char names[64];
        snprintf(names, sizeof names, "%s and %s", ref_name, arg);
        return same_layout(c, ref, t, names);
    }
    return true;
}

bl_status bl_op_relu_forward(bl_device *dev, const bl_tensor *x, bl_tensor *y) {
    check c;
    ENSURE(start(&c, dev, BL_OP_RELU_FORWARD, x ? x->dtype : BL_F32));
    ENSURE(tensor_ok(&c, x, "x", x ? x->dtype : BL_F32, x ? x->ndim : 0) && same_as(&c, x, "x", y, "y"));
    return dev->backend->ops.relu_forward(dev, x, y);
}

bl_status bl_op_relu_backward(bl_device *dev, const bl_tensor *dy, const bl_tensor *y, bl_tensor *dx) {
    check c;
    ENSURE(start(&c, dev, BL_OP_RELU_BACKWARD, y ? y->dtype : BL_F32));
    ENSURE(tensor_ok(&c, y, "y", y ? y->dtype : BL_F32, y ? y->ndim : 0) && same_as(&c, y, "y", dy, "dy") &&
           same_as(&c, y, "y", dx, "dx"));
    return dev->backend->ops.relu_backward(dev, dy, y, dx);
}

bl_status bl_op_add(bl_device *dev, const bl_tensor *a, const bl_tensor *b, bl_tensor *y) {
    check c;
    ENSURE(start(&c, dev, BL_OP_ADD, a ? a->dtype : BL_F32));
    ENSURE(tensor_ok(&c, a, "a", a ? a->dtype : BL_F32, a ? a->ndim : 0) && same_as(&c, a, "a", b, "b") &&
           same_as(&c, a, "a", y, "y"));
    return dev->backend->ops.add(dev, a, b, y);
}

/* ---- pooling ------------------------------------------------------------------------------ */

static bool pool_shapes(check *c, const bl_pool_params *p, const bl_tensor *x, const bl_tensor *y) {
    if (!p) return fail(c, BL_ERR_INVALID_ARG, "%s%s", "no params", "");
    if (!positive(c, p->kernel, "kernel") || !positive(c, p->stride, "stride")) return false;
    if (p->pad < 0 || p->pad * 2 > p->kernel)
        return fail(c, BL_ERR_INVALID_ARG, "%s%s", "padding must be between 0 and half the kernel", "");
    int64_t P = (x->shape[2] + 2 * p->pad - p->kernel), Q = (x->shape[3] + 2 * p->pad - p->kernel);
    if (P < 0 || Q < 0) return fail(c, BL_ERR_INVALID_ARG, "%s%s", "window larger than padded input", "");
    int64_t want[4] = {x->shape[0], x->shape[1], P / p->stride + 1, Q / p->stride + 1};
    return shape_is(c, y, "y", want) && same_layout(c, x, y, "x and y");
}

bl_status bl_op_maxpool_forward(bl_device *dev, const bl_pool_params *p, const bl_tensor *x, bl_tensor *y) {
    check c;
    bl_dtype dt = x ? x->dtype : BL_F32;
    ENSURE(start(&c, dev, BL_OP_MAXPOOL_FORWARD, dt));
    ENSURE(tensor_ok(&c, x, "x", dt, 4) && tensor_ok(&c, y, "y", dt, 4) && pool_shapes(&c, p, x, y));
    return dev->backend->ops.maxpool_forward(dev, p, x, y);
}

bl_status bl_op_maxpool_backward(bl_device *dev, const bl_pool_params *p, const bl_tensor *x,
                                 const bl_tensor *dy, bl_tensor *dx) {
    check c;
    bl_dtype dt = x ? x->dtype : BL_F32;
    ENSURE(start(&c, dev, BL_OP_MAXPOOL_BACKWARD, dt));
    ENSURE(tensor_ok(&c, x, "x", dt, 4) && tensor_ok(&c, dy, "dy", dt, 4) && pool_shapes(&c, p, x, dy));
    ENSURE(same_as(&c, x, "x", dx, "dx"));
    return dev->backend->ops.maxpool_backward(dev, p, x, dy, dx);
}

bl_status bl_op_global_avgpool_forward(bl_device *dev, const bl_tensor *x, bl_tensor *y) {
    check c;
    bl_dtype dt = x ? x->dtype : BL_F32;
    ENSURE(start(&c, dev, BL_OP_GLOBAL_AVGPOOL_FORWARD, dt));
    ENSURE(tensor_ok(&c, x, "x", dt, 4) && tensor_ok(&c, y, "y", dt, 2) && shape_is(&c, y, "y", x->shape));
    return dev->backend->ops.global_avgpool_forward(dev, x, y);
}

bl_status bl_op_global_avgpool_backward(bl_device *dev, const bl_tensor *dy, bl_tensor *dx) {
    check c;
    bl_dtype dt = dx ? dx->dtype : BL_F32;
    ENSURE(start(&c, dev, BL_OP_GLOBAL_AVGPOOL_BACKWARD, dt));
    ENSURE(tensor_ok(&c, dx, "dx", dt, 4) && tensor_ok(&c, dy, "dy", dt, 2) &&
           shape_is(&c, dy, "dy", dx->shape));
    return dev->backend->ops.global_avgpool_backward(dev, dy, dx);
}

/* ---- linear ------------------------------------------------------------------------------- */

bl_status bl_op_linear_forward(bl_device *dev, const bl_tensor *x, const bl_tensor *w, const bl_tensor *b,
                               bl_tensor *y) {
    check c;
    bl_dtype dt = x ? x->dtype : BL_F32;
    ENSURE(start(&c, dev, BL_OP_LINEAR_FORWARD, dt));
    ENSURE(tensor_ok(&c, x, "x", dt, 2) && tensor_ok(&c, w, "w", dt, 2) && tensor_ok(&c, y, "y", dt, 2));
    int64_t wshape[2] = {w->shape[0], x->shape[1]}, yshape[2] = {x->shape[0], w->shape[0]};
    ENSURE(shape_is(&c, w, "w", wshape) && shape_is(&c, y, "y", yshape));
    if (b) ENSURE(channel_vec(&c, b, "b", w->shape[0]));
    return dev->backend->ops.linear_forward(dev, x, w, b, y);
}

bl_status bl_op_linear_backward(bl_device *dev, const bl_tensor *dy, const bl_tensor *x, const bl_tensor *w,
                                bl_tensor *dx, bl_tensor *dw, bl_tensor *db) {
    check c;
    bl_dtype dt = x ? x->dtype : BL_F32;
    ENSURE(start(&c, dev, BL_OP_LINEAR_BACKWARD, dt));
    ENSURE(tensor_ok(&c, x, "x", dt, 2) && tensor_ok(&c, w, "w", dt, 2) && tensor_ok(&c, dy, "dy", dt, 2));
    int64_t wshape[2] = {w->shape[0], x->shape[1]}, yshape[2] = {x->shape[0], w->shape[0]};
    ENSURE(shape_is(&c, w, "w", wshape) && shape_is(&c, dy, "dy", yshape));
    ENSURE(same_as(&c, w, "w", dw, "dw"));
    if (dx) ENSURE(same_as(&c, x, "x", dx, "dx"));
    if (db) ENSURE(channel_vec(&c, db, "db", w->shape[0]));
    return dev->backend->ops.linear_backward(dev, dy, x, w, dx, dw, db);
}

bl_status bl_op_softmax_cross_entropy(bl_device *dev, const bl_tensor *logits, const bl_tensor *labels,
                                      float label_smoothing, bl_tensor *loss, bl_tensor *dlogits) {
    check c;
    ENSURE(start(&c, dev, BL_OP_SOFTMAX_CROSS_ENTROPY, BL_F32));
    ENSURE(tensor_ok(&c, logits, "logits", BL_F32, 2) && tensor_ok(&c, labels, "labels", BL_I32, 1));
    ENSURE(shape_is(&c, labels, "labels", logits->shape));
    int64_t one = 1;
    ENSURE(tensor_ok(&c, loss, "loss", BL_F32, 1) && shape_is(&c, loss, "loss", &one));
    if (dlogits) ENSURE(same_as(&c, logits, "logits", dlogits, "dlogits"));
    if (!(label_smoothing >= 0.0f && label_smoothing < 1.0f))
        return bl_error(BL_ERR_INVALID_ARG, "softmax_cross_entropy: label smoothing %g not in [0, 1)",
                        (double)label_smoothing);
    return dev->backend->ops.softmax_cross_entropy(dev, logits, labels, label_smoothing, loss, dlogits);
}

/* ---- optimizers --------------------------------------------------------------------------- */

bl_status bl_op_sgd_update(bl_device *dev, const bl_sgd_params *p, bl_tensor *param, const bl_tensor *grad,
                           bl_tensor *momentum_buf) {
    check c;
    ENSURE(start(&c, dev, BL_OP_SGD_UPDATE, BL_F32));
    ENSURE(tensor_ok(&c, param, "param", BL_F32, 1) && same_as(&c, param, "param", grad, "grad") &&
           same_as(&c, param, "param", momentum_buf, "momentum_buf"));
    if (!p || !(p->lr >= 0) || !(p->momentum >= 0) || !(p->weight_decay >= 0))
        return bl_error(BL_ERR_INVALID_ARG, "sgd_update: lr, momentum and weight decay must be >= 0");
    if (p->nesterov && p->momentum <= 0)
        return bl_error(BL_ERR_INVALID_ARG, "sgd_update: Nesterov momentum requires momentum > 0");
    return dev->backend->ops.sgd_update(dev, p, param, grad, momentum_buf);
}

bl_status bl_op_adamw_update(bl_device *dev, const bl_adamw_params *p, bl_tensor *param,
                             const bl_tensor *grad, bl_tensor *exp_avg, bl_tensor *exp_avg_sq) {
    check c;
    ENSURE(start(&c, dev, BL_OP_ADAMW_UPDATE, BL_F32));
    ENSURE(tensor_ok(&c, param, "param", BL_F32, 1) && same_as(&c, param, "param", grad, "grad") &&
           same_as(&c, param, "param", exp_avg, "exp_avg") &&
           same_as(&c, param, "param", exp_avg_sq, "exp_avg_sq"));
    if (!p || p->step < 1 || !(p->beta1 >= 0 && p->beta1 < 1) || !(p->beta2 >= 0 && p->beta2 < 1) ||
        !(p->eps > 0) || !(p->lr >= 0))
        return bl_error(BL_ERR_INVALID_ARG, "adamw_update: need step >= 1, betas in [0,1), eps > 0, lr >= 0");
    return dev->backend->ops.adamw_update(dev, p, param, grad, exp_avg, exp_avg_sq);
}
