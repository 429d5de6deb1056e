/* The model executor: parameter storage, activation planning, and the forward and backward
 * passes over the node list. Gradients that reach a value from two consumers (a block's input
 * feeds both its first convolution and its residual) are summed: the second one is formed in
 * a scratch buffer and added. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/model_internal.h"

int bl_model_add_param(bl_model *m, const char *name, bl_param_kind kind, int ndim, const int64_t *shape) {
    BL_ASSERT(m->nparams < BL_MODEL_MAX_PARAMS);
    param *p = &m->params[m->nparams];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->info.name = p->name;
    p->info.kind = kind;
    p->ndim = ndim;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (p->shape[i] = shape[i]);
    if (kind == BL_PARAM_WEIGHT) {
        p->offset = m->nweights;
        m->nweights += n;
    } else {
        p->offset = m->nbuffers;
        m->nbuffers += n;
    }
    return m->nparams++;
}

int bl_model_add_node(bl_model *m, node n, int c, int h, int w, bool is_2d) {
    BL_ASSERT(m->nnodes < BL_MODEL_MAX_NODES);
    value *v = &m->values[m->nvalues];
    v->c = c;
    v->h = h;
    v->w = w;
    v->is_2d = is_2d;
    n.out = m->nvalues++;
    m->nodes[m->nnodes] = n;
    return m->nnodes++;
}

bl_status bl_model_alloc_params(bl_model *m) {
    BL_TRY(bl_device_alloc(m->dev, (size_t)m->nweights * sizeof(float), (void **)&m->weights));
    BL_TRY(bl_device_alloc(m->dev, (size_t)m->nweights * sizeof(float), (void **)&m->grads));
    BL_TRY(bl_device_alloc(m->dev, (size_t)(m->nbuffers ? m->nbuffers : 1) * sizeof(float),
                           (void **)&m->buffers));
    bl_layout layout = bl_device_preferred_layout(m->dev);
    for (int i = 0; i < m->nparams; i++) {
        param *p = &m->params[i];
        float *base = p->info.kind == BL_PARAM_WEIGHT ? m->weights : m->buffers;
        p->info.value = bl_tensor_view(m->dev, base + p->offset, BL_F32, p->ndim, p->shape);
        /* Convolution weights are (K, C, R, S) stored in the device's layout (KRSC for NHWC). */
        if (p->ndim == 4) p->info.value.layout = layout;
        if (p->info.kind == BL_PARAM_WEIGHT) {
            p->info.grad = p->info.value;
            p->info.grad.data = m->grads + p->offset;
        }
    }
    return BL_OK;
}

void bl_model_free(bl_model *m) {
    if (!m) return;
    bl_device_free(m->dev, m->weights);
    bl_device_free(m->dev, m->grads);
    bl_device_free(m->dev, m->buffers);
    bl_device_free(m->dev, m->activations);
    bl_device_free(m->dev, m->activation_grads);
    bl_device_free(m->dev, m->stats);
    bl_device_free(m->dev, m->folded);
    free(m);
}

const bl_resnet_config *bl_model_config(const bl_model *m) { return &m->cfg; }
bl_device *bl_model_device(const bl_model *m) { return m->dev; }
int bl_model_param_count(const bl_model *m) { return m->nparams; }
const bl_param_info *bl_model_param(const bl_model *m, int i) {
    return i >= 0 && i < m->nparams ? &m->params[i].info : NULL;
}
const bl_param_info *bl_model_find_param(const bl_model *m, const char *name) {
    for (int i = 0; i < m->nparams; i++)
        if (strcmp(m->params[i].name, name) == 0) return &m->params[i].info;
    return NULL;
}
int64_t bl_model_trainable_count(const bl_model *m) { return m->nweights; }
int64_t bl_model_batches_tracked(const bl_model *m) { return m->batches_tracked; }
void bl_model_set_batches_tracked(bl_model *m, int64_t count) { m->batches_tracked = count; }
bl_tensor bl_model_flat_params(const bl_model *m) {
    int64_t n = m->nweights;
    return bl_tensor_view(m->dev, m->weights, BL_F32, 1, &n);
}
bl_tensor bl_model_flat_grads(const bl_model *m) {
    int64_t n = m->nweights;
    return bl_tensor_view(m->dev, m->grads, BL_F32, 1, &n);
}

static bl_tensor *P(bl_model *m, int index) { return &m->params[index].info.value; }
static bl_tensor *G(bl_model *m, int index) { return &m->params[index].info.grad; }

/* Sets every value's per-image spatial size for an input of height x width. */
static bl_status infer_shapes(bl_model *m, int height, int width) {
    if (height < 1 || width < 1)
        return bl_error(BL_ERR_INVALID_ARG, "model: input %dx%d is empty", height, width);
    m->values[0].h = height;
    m->values[0].w = width;
    for (int i = 0; i < m->nnodes; i++) {
        node *n = &m->nodes[i];
        value *in = &m->values[n->in], *out = &m->values[n->out];
        if (n->kind == NODE_CONV) {
            const param *w = &m->params[n->weight];
            if (in->h + 2 * n->conv.pad_h < w->shape[2] || in->w + 2 * n->conv.pad_w < w->shape[3])
                return bl_error(BL_ERR_INVALID_ARG,
                                "model: input %dx%d is too small for layer %d "
                                "(%s)",
                                height, width, i, m->params[n->weight].name);
            out->h = (int)((in->h + 2 * n->conv.pad_h - w->shape[2]) / n->conv.stride_h + 1);
            out->w = (int)((in->w + 2 * n->conv.pad_w - w->shape[3]) / n->conv.stride_w + 1);
        } else if (n->kind == NODE_MAXPOOL) {
            out->h = (in->h + 2 * n->pool.pad - n->pool.kernel) / n->pool.stride + 1;
            out->w = (in->w + 2 * n->pool.pad - n->pool.kernel) / n->pool.stride + 1;
        } else if (n->kind == NODE_BN) {
            out->h = in->h;
            out->w = in->w;
        }
        if (!out->is_2d && (out->h < 1 || out->w < 1))
            return bl_error(BL_ERR_INVALID_ARG,
                            "model: input %dx%d is too small (layer %d would "
                            "have an empty output)",
                            height, width, i);
    }
    return BL_OK;
}

static int64_t value_floats(const value *v, int batch) {
    return (int64_t)batch * v->c * (v->is_2d ? 1 : (int64_t)v->h * v->w);
}

/* Points value tensors at batch size n (the memory is planned for max_batch). */
static void set_batch(bl_model *m, int n) {
    bl_layout layout = bl_device_preferred_layout(m->dev);
    for (int i = 0; i < m->nvalues; i++) {
        value *v = &m->values[i];
        void *data = v->t.data, *grad = v->grad.data;
        if (v->is_2d) {
            int64_t shape[2] = {n, v->c};
            v->t = bl_tensor_view(m->dev, data, BL_F32, 2, shape);
        } else {
            v->t = bl_tensor_view4(m->dev, data, BL_F32, layout, n, v->c, v->h, v->w);
        }
        v->grad = v->t;
        v->grad.data = grad;
    }
    m->loss_grad = m->values[m->logits_value].t;
    m->loss_grad.data = m->values[m->logits_value].grad.data;
    m->current_batch = n;
}

bl_status bl_model_plan(bl_model *m, int max_batch, int height, int width, bool training) {
    if (m->planned) return bl_error(BL_ERR_INVALID_ARG, "model: already planned");
    if (max_batch < 1) return bl_error(BL_ERR_INVALID_ARG, "model: max batch %d must be positive", max_batch);
    BL_TRY(infer_shapes(m, height, width));
    /* Batch and image size come from flags and data: check the activation count (and the
     * gradients' total + 2 * largest, in bytes) in 64 bits before value_floats can wrap. */
    int64_t per_image = 0;
    for (int i = 1; i < m->nvalues; i++) {
        const value *v = &m->values[i];
        int64_t hw = v->is_2d ? 1 : (int64_t)v->h * v->w, f;
        if (__builtin_mul_overflow(hw, (int64_t)v->c, &f) || __builtin_add_overflow(per_image, f, &per_image))
            per_image = INT64_MAX;
    }
    if (per_image > INT64_MAX / 3 / (int64_t)sizeof(float) / max_batch)
        return bl_error(BL_ERR_INVALID_ARG,
                        "model: batch %d at %dx%d: the activations are too large (more "
                        "floats than a 64-bit byte count holds)",
                        max_batch, height, width);
    int64_t total = 0, largest = 0, stat_floats = 0;
    for (int i = 1; i < m->nvalues; i++) {
        int64_t f = value_floats(&m->values[i], max_batch);
        total += f;
        if (f > largest) largest = f;
    }
    for (int i = 0; i < m->nnodes; i++)
        if (m->nodes[i].kind == NODE_BN) stat_floats += 2 * m->values[m->nodes[i].out].c;
    size_t bytes = (size_t)total * sizeof(float);
    m->activation_bytes = bytes;
    m->stat_bytes = (size_t)(stat_floats ? stat_floats : 1) * sizeof(float);
    BL_TRY(bl_device_alloc(m->dev, bytes, &m->activations));
    BL_TRY(bl_device_alloc(m->dev, m->stat_bytes, &m->stats));
    if (training) {
        /* One gradient per value, two scratch gradients, and dlogits (a value gradient). */
        m->activation_grad_bytes = (size_t)(total + 2 * largest) * sizeof(float);
        BL_TRY(bl_device_alloc(m->dev, m->activation_grad_bytes, &m->activation_grads));
    }
    float *act = m->activations, *grad = m->activation_grads, *stats = m->stats;
    for (int i = 1; i < m->nvalues; i++) {
        int64_t f = value_floats(&m->values[i], max_batch);
        m->values[i].t.data = act;
        m->values[i].grad.data = grad;
        act += f;
        if (grad) grad += f;
    }
    for (int i = 0; i < m->nnodes; i++) {
        node *n = &m->nodes[i];
        if (n->kind != NODE_BN) continue;
        int64_t c = m->values[n->out].c;
        n->save_mean = bl_tensor_view(m->dev, stats, BL_F32, 1, &c);
        n->save_invstd = bl_tensor_view(m->dev, stats + c, BL_F32, 1, &c);
        stats += 2 * c;
    }
    for (int k = 0; k < 2; k++) {
        m->grad_scratch[k] = bl_tensor_view(m->dev, grad ? grad + k * largest : NULL, BL_F32, 1, &largest);
    }
    m->max_batch = max_batch;
    m->height = height;
    m->width = width;
    m->planned = true;
    m->planned_training = training;
    set_batch(m, max_batch);
    return BL_OK;
}

static bl_status check_input(bl_model *m, const bl_tensor *x) {
    if (!m->planned) return bl_error(BL_ERR_INVALID_ARG, "model: call bl_model_plan before forward");
    if (!x || x->ndim != 4 || x->shape[1] != m->cfg.in_channels || x->shape[2] != m->height ||
        x->shape[3] != m->width || x->shape[0] < 1 || x->shape[0] > m->max_batch) {
        char got[96] = "none";
        if (x) bl_tensor_describe(x, got, sizeof got);
        return bl_error(BL_ERR_INVALID_ARG, "model: input is %s, expected (N<=%d, %d, %d, %d)", got,
                        m->max_batch, m->cfg.in_channels, m->height, m->width);
    }
    if (x->device != m->dev) return bl_error(BL_ERR_INVALID_ARG, "model: input is on another device");
    return BL_OK;
}

static bl_status forward_node(bl_model *m, node *n, bl_forward_mode mode) {
    bl_tensor *in = &m->values[n->in].t, *out = &m->values[n->out].t;
    bl_batchnorm_params bn = {1e-5f, 0.1f};
    switch (n->kind) {
        case NODE_CONV:
            if (mode == BL_FORWARD_INFER && n->fused_bn >= 0) {
                node *b = &m->nodes[n->fused_bn];
                bl_tensor *res = b->residual >= 0 ? &m->values[b->residual].t : NULL;
                return bl_op_conv2d_forward(m->dev, &n->conv, in, &n->folded_w, &n->folded_b, res, b->relu,
                                            &m->values[b->out].t);
            }
            return bl_op_conv2d_forward(m->dev, &n->conv, in, P(m, n->weight), NULL, NULL, false, out);
        case NODE_BN: {
            bl_tensor *res = n->residual >= 0 ? &m->values[n->residual].t : NULL;
            if (mode == BL_FORWARD_INFER && n->fused_bn >= 0) return BL_OK; /* done by its conv */
            if (mode == BL_FORWARD_TRAIN)
                return bl_op_batchnorm_forward_train(m->dev, &bn, in, P(m, n->weight), P(m, n->bias), res,
                                                     n->relu, P(m, n->running_mean), P(m, n->running_var),
                                                     &n->save_mean, &n->save_invstd, out);
            return bl_op_batchnorm_forward_eval(m->dev, &bn, in, P(m, n->weight), P(m, n->bias), res, n->relu,
                                                P(m, n->running_mean), P(m, n->running_var), out);
        }
        case NODE_MAXPOOL: return bl_op_maxpool_forward(m->dev, &n->pool, in, out);
        case NODE_GAP: return bl_op_global_avgpool_forward(m->dev, in, out);
        case NODE_LINEAR: return bl_op_linear_forward(m->dev, in, P(m, n->weight), P(m, n->bias), out);
    }
    return bl_error(BL_ERR_INTERNAL, "model: unknown node kind");
}

void bl_model_discard_scratch(bl_model *m, bool keep_logits) {
    char *act = m->activations;
    if (keep_logits) {
        const bl_tensor *l = &m->values[m->logits_value].t;
        char *from = l->data, *to = from + bl_tensor_nbytes(l);
        bl_device_discard(m->dev, act, (size_t)(from - act));
        bl_device_discard(m->dev, to, m->activation_bytes - (size_t)(to - act));
    } else {
        bl_device_discard(m->dev, act, m->activation_bytes);
    }
    bl_device_discard(m->dev, m->activation_grads, m->activation_grad_bytes);
    bl_device_discard(m->dev, m->stats, m->stat_bytes);
}

bl_status bl_model_forward(bl_model *m, const bl_tensor *x, bl_forward_mode mode, bl_tensor *logits) {
    BL_TRY(check_input(m, x));
    if (mode == BL_FORWARD_TRAIN && !m->planned_training)
        return bl_error(BL_ERR_INVALID_ARG, "model: planned for inference only; plan with training=true");
    if (mode == BL_FORWARD_INFER && !m->folded_valid) BL_TRY(bl_model_fold_batchnorm(m));
    if ((int)x->shape[0] != m->current_batch) set_batch(m, (int)x->shape[0]);
    m->values[0].t = *x;
    /* One program (bl_device_program_begin): inside a training step, part of the step's. */
    BL_TRY(bl_device_program_begin(m->dev));
    for (int i = 0; i < m->nnodes; i++) {
        bl_status s = forward_node(m, &m->nodes[i], mode);
        if (s != BL_OK) {
            s = bl_error_context(s, "model forward, layer %d", i);
            (void)bl_device_program_end(m->dev);
            return s;
        }
    }
    /* An inference pass leaves only its logits for the caller (the program then stores
     * nothing else); a training pass keeps its activations for the backward pass. */
    if (mode != BL_FORWARD_TRAIN) bl_model_discard_scratch(m, true);
    BL_TRY(bl_device_program_end(m->dev));
    if (mode == BL_FORWARD_TRAIN) {
        m->batches_tracked++;
        /* Parameters may change after this step: folded weights go stale. */
        m->folded_valid = false;
    }
    m->forward_was_train = mode == BL_FORWARD_TRAIN;
    *logits = m->values[m->logits_value].t;
    return BL_OK;
}

/* Where a gradient for value v goes: its own buffer the first time, else scratch k (the
 * caller then adds scratch into the value's gradient). */
static bl_tensor grad_target(bl_model *m, int v, const bool *written, int k) {
    bl_tensor g = m->values[v].grad;
    if (written[v]) {
        bl_tensor s = g;
        s.data = m->grad_scratch[k].data;
        return s;
    }
    return g;
}

static bl_status accumulate(bl_model *m, int v, bool *written, const bl_tensor *target) {
    if (written[v]) return bl_op_add(m->dev, &m->values[v].grad, target, &m->values[v].grad);
    written[v] = true;
    return BL_OK;
}

static bl_status backward_node(bl_model *m, node *n, bool *written) {
    bl_tensor *in = &m->values[n->in].t, *out = &m->values[n->out].t, *dy = &m->values[n->out].grad;
    bool need_dx = n->in != 0; /* no gradient for the input images */
    switch (n->kind) {
        case NODE_CONV: {
            BL_TRY(bl_op_conv2d_backward_filter(m->dev, &n->conv, in, dy, G(m, n->weight)));
            if (!need_dx) return BL_OK;
            bl_tensor dx = grad_target(m, n->in, written, 0);
            BL_TRY(bl_op_conv2d_backward_data(m->dev, &n->conv, dy, P(m, n->weight), &dx));
            return accumulate(m, n->in, written, &dx);
        }
        case NODE_BN: {
            bl_tensor dx = grad_target(m, n->in, written, 0), dres;
            bl_tensor *dres_p = NULL;
            if (n->residual >= 0) {
                dres = grad_target(m, n->residual, written, 1);
                dres_p = &dres;
            }
            BL_TRY(bl_op_batchnorm_backward(m->dev, dy, in, out, n->relu, P(m, n->weight), &n->save_mean,
                                            &n->save_invstd, &dx, G(m, n->weight), G(m, n->bias), dres_p));
            BL_TRY(accumulate(m, n->in, written, &dx));
            if (dres_p) BL_TRY(accumulate(m, n->residual, written, dres_p));
            return BL_OK;
        }
        case NODE_MAXPOOL: {
            bl_tensor dx = grad_target(m, n->in, written, 0);
            BL_TRY(bl_op_maxpool_backward(m->dev, &n->pool, in, dy, &dx));
            return accumulate(m, n->in, written, &dx);
        }
        case NODE_GAP: {
            bl_tensor dx = grad_target(m, n->in, written, 0);
            BL_TRY(bl_op_global_avgpool_backward(m->dev, dy, &dx));
            return accumulate(m, n->in, written, &dx);
        }
        case NODE_LINEAR: {
            bl_tensor dx = grad_target(m, n->in, written, 0);
            BL_TRY(
                bl_op_linear_backward(m->dev, dy, in, P(m, n->weight), &dx, G(m, n->weight), G(m, n->bias)));
            return accumulate(m, n->in, written, &dx);
        }
    }
    return bl_error(BL_ERR_INTERNAL, "model: unknown node kind");
}

bl_status bl_model_backward(bl_model *m, const bl_tensor *labels, float label_smoothing, bl_tensor *loss) {
    if (!m->forward_was_train)
        return bl_error(BL_ERR_INVALID_ARG, "model: backward needs a BL_FORWARD_TRAIN forward first");
    if (!labels || labels->ndim != 1 || labels->shape[0] != m->current_batch)
        return bl_error(BL_ERR_INVALID_ARG, "model: labels must be (%d) i32", m->current_batch);
    bl_tensor *logits = &m->values[m->logits_value].t;
    BL_TRY(bl_op_softmax_cross_entropy(m->dev, logits, labels, label_smoothing, loss, &m->loss_grad));
    bool written[BL_MODEL_MAX_NODES + 1] = {false};
    written[m->logits_value] = true;
    for (int i = m->nnodes - 1; i >= 0; i--) {
        bl_status s = backward_node(m, &m->nodes[i], written);
        if (s != BL_OK) return bl_error_context(s, "model backward, layer %d", i);
    }
    return BL_OK;
}

/* Inference folds each batch norm into the convolution before it:
 *   w'[k] = w[k] * gamma[k] / sqrt(var[k] + eps),  b'[k] = beta[k] - mean[k] * gamma[k] / sqrt(var[k] + eps)
 * computed on the host from the current parameters, once per parameter change. The output
 * channel k is the outermost dimension in every weight layout (OIHW and OHWI), so each k is a
 * contiguous run in the device's own layout: the weights travel as raw bytes, with no layout
 * conversion, through one staging buffer sized for the largest convolution. */
bl_status bl_model_fold_batchnorm(bl_model *m) {
    int64_t total = 0, largest = 0;
    for (int i = 0; i + 1 < m->nnodes; i++) {
        node *c = &m->nodes[i];
        if (c->kind != NODE_CONV) continue;
        for (int j = i + 1; j < m->nnodes; j++)
            if (m->nodes[j].kind == NODE_BN && m->nodes[j].in == c->out) {
                c->fused_bn = j;
                m->nodes[j].fused_bn = i;
                int64_t n = bl_tensor_numel(P(m, c->weight)), K = m->params[c->weight].shape[0];
                total += n + K;
                if (n + 5 * K > largest) largest = n + 5 * K;
                if (P(m, c->weight)->dtype != BL_F32)
                    return bl_error(BL_ERR_UNSUPPORTED, "fold batchnorm: %s is %s, not f32",
                                    m->params[c->weight].name, bl_dtype_name(P(m, c->weight)->dtype));
            }
    }
    if (!m->folded) BL_TRY(bl_device_alloc(m->dev, (size_t)(total ? total : 1) * sizeof(float), &m->folded));
    float *hw = bl_alloc_big(sizeof(float) * (size_t)(largest ? largest : 1));
    if (!hw)
        return bl_error(BL_ERR_OUT_OF_MEMORY, "fold batchnorm: %lld floats of staging", (long long)largest);
    float *dst = m->folded;
    bl_status s = BL_OK;
    for (int i = 0; i < m->nnodes && s == BL_OK; i++) {
        node *c = &m->nodes[i];
        if (c->kind != NODE_CONV || c->fused_bn < 0) continue;
        node *b = &m->nodes[c->fused_bn];
        bl_tensor *w = P(m, c->weight);
        int64_t K = w->shape[0], per_k = bl_tensor_numel(w) / K;
        float *g = hw + K * per_k, *be = g + K, *mu = be + K, *var = mu + K, *bias = var + K;
        s = bl_tensor_copy_to_host(w, hw);
        if (s == BL_OK) s = bl_tensor_copy_to_host(P(m, b->weight), g);
        if (s == BL_OK) s = bl_tensor_copy_to_host(P(m, b->bias), be);
        if (s == BL_OK) s = bl_tensor_copy_to_host(P(m, b->running_mean), mu);
        if (s == BL_OK) s = bl_tensor_copy_to_host(P(m, b->running_var), var);
        if (s == BL_OK) {
#pragma omp parallel for schedule(static) if (K * per_k > (1 << 16))
            for (int64_t k = 0; k < K; k++) {
                double scale = (double)g[k] / sqrt((double)var[k] + 1e-5);
                for (int64_t j = 0; j < per_k; j++) hw[k * per_k + j] = (float)(hw[k * per_k + j] * scale);
                bias[k] = (float)(be[k] - mu[k] * scale);
            }
            c->folded_w = *w;
            c->folded_w.data = dst;
            c->folded_b = bl_tensor_view(m->dev, dst + K * per_k, BL_F32, 1, &K);
            s = bl_tensor_copy_from_host(&c->folded_w, hw);
            if (s == BL_OK) s = bl_tensor_copy_from_host(&c->folded_b, bias);
        }
        dst += K * per_k + K;
    }
    free(hw);
    if (s != BL_OK) return bl_error_context(s, "fold batchnorm");
    m->folded_valid = true;
    return BL_OK;
}
