/* Op-level CPU benchmark (a program, never a test): every op call a ResNet-18 inference or
 * training step makes, at the model's shapes, timed one distinct call at a time through the
 * public bl_op_* API, with its FLOPs and the least traffic it needs (one read of each input,
 * one write of each output), and the CPU's measured f32 and bf16 peaks. It answers "where does
 * beamlet's time go"; bench/profile_layers.py sets it beside the same layers in ONNX Runtime,
 * OpenVINO and PyTorch. Prints one JSON object per line.
 *
 *   bench_cpu_ops [--workload=NAME] [--device=cpu] [--threads=N] [--min-seconds=S]
 *   bench_cpu_ops --peak [--threads=N]     f32 FMA and bf16 dot-product peaks (GFLOP/s)
 *
 * NAME is <cifar|imagenet>_resnet18_<infer|train>_b<N>, as in bench_cpu (default
 * cifar_resnet18_infer_b64). Inference is the folded-BN path (convolutions with bias, residual
 * and ReLU fused), training the step bl_model_forward/backward and SGD run: convolution, batch
 * norm (residual and ReLU fused), pooling, classifier, loss, their backward ops, the gradient
 * additions where a value feeds two layers, and one SGD update over every parameter.
 *
 * A call is timed alone with its buffers warm in cache, whereas in a step each op reads what
 * the previous one wrote; the summary line sets the sum against nothing, so compare it with
 * bench_cpu's step time to see what running alone hides. */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "beamlet/cpu.h"
#include "beamlet/devices.h"
#include "beamlet/tensor.h"

/* ---- the op calls of one step ----------------------------------------------------------- */

typedef enum call_kind {
    CALL_CONV_FWD,
    CALL_CONV_BWD_DATA,
    CALL_CONV_BWD_FILTER,
    CALL_BN_FWD,
    CALL_BN_BWD,
    CALL_ADD,
    CALL_MAXPOOL_FWD,
    CALL_MAXPOOL_BWD,
    CALL_GAP_FWD,
    CALL_GAP_BWD,
    CALL_FC_FWD,
    CALL_FC_BWD,
    CALL_LOSS,
    CALL_SGD,
    CALL_KIND_COUNT
} call_kind;

static const char *call_names[CALL_KIND_COUNT] = {"conv2d_forward",         "conv2d_backward_data",
                                                  "conv2d_backward_filter", "batchnorm_forward_train",
                                                  "batchnorm_backward",     "add",
                                                  "maxpool_forward",        "maxpool_backward",
                                                  "global_avgpool_forward", "global_avgpool_backward",
                                                  "linear_forward",         "linear_backward",
                                                  "softmax_cross_entropy",  "sgd_update"};

/* One distinct call. Shapes per kind: convolutions read (n,c,h,w) and write (n,k,p,q) with a
 * (k,c,r,r) weight; batch norm, add and the pools' inputs are (n,c,h,w); pooling writes
 * (n,c,p,q); the classifier maps (n,c) to (n,k); the loss reads (n,k); SGD updates `numel`. */
typedef struct spec {
    call_kind kind;
    int n, c, h, w, k, p, q, r, stride, pad;
    bool bias, residual, relu;
    int64_t numel;
} spec;

#define MAX_CALLS 160
#define MAX_NAMES 640

typedef struct call {
    spec s;
    int count;
    char layers[MAX_NAMES]; /* the layers making this call, comma-separated */
} call;

typedef struct step {
    call calls[MAX_CALLS];
    int ncalls;
} step;

static void add_call(step *st, spec s, const char *layer) {
    for (int i = 0; i < st->ncalls; i++) {
        call *c = &st->calls[i];
        if (memcmp(&c->s, &s, sizeof s) == 0) {
            size_t used = strlen(c->layers);
            snprintf(c->layers + used, sizeof c->layers - used, ",%s", layer);
            c->count++;
            return;
        }
    }
    if (st->ncalls == MAX_CALLS) {
        fprintf(stderr, "bench_cpu_ops: more than %d distinct calls\n", MAX_CALLS);
        exit(1);
    }
    call *c = &st->calls[st->ncalls++];
    c->s = s;
    c->count = 1;
    snprintf(c->layers, sizeof c->layers, "%s", layer);
}

/* A spec with every byte defined, so that specs compare with memcmp. */
static spec blank(call_kind kind) {
    spec s;
    memset(&s, 0, sizeof s);
    s.kind = kind;
    return s;
}

/* ---- ResNet-18's layers (torchvision's names and node order, as src/nn/resnet.c builds) - */

typedef enum layer_kind {
    LAYER_CONV,
    LAYER_MAXPOOL,
    LAYER_GAP,
    LAYER_FC
} layer_kind;

typedef struct layer {
    char name[32], bn[32]; /* the convolution and the batch norm that follows it */
    layer_kind kind;
    int c, h, w, k, p, q, r, stride, pad;
    bool relu, residual; /* of the batch norm after the convolution */
    bool first;          /* reads the input images: no input gradient */
    bool block_input;    /* conv1 of a block: its input also feeds the block's residual */
} layer;

typedef struct net {
    layer layers[32];
    int nlayers;
    int64_t params;
} net;

static layer *push(net *m, layer_kind kind, const char *name, const char *bn) {
    layer *l = &m->layers[m->nlayers++];
    memset(l, 0, sizeof *l);
    l->kind = kind;
    snprintf(l->name, sizeof l->name, "%s", name);
    snprintf(l->bn, sizeof l->bn, "%s", bn);
    return l;
}

static int conv_out(int in, int r, int stride, int pad) { return (in + 2 * pad - r) / stride + 1; }

static layer *push_conv(net *m, const char *name, const char *bn, int c, int h, int k, int r, int stride,
                        int pad, bool relu, bool residual) {
    layer *l = push(m, LAYER_CONV, name, bn);
    l->c = c;
    l->h = l->w = h;
    l->k = k;
    l->r = r;
    l->stride = stride;
    l->pad = pad;
    l->p = l->q = conv_out(h, r, stride, pad);
    l->relu = relu;
    l->residual = residual;
    m->params += (int64_t)k * c * r * r + 2 * k;
    return l;
}

static void build_resnet18(net *m, bool cifar, int hw, int classes) {
    memset(m, 0, sizeof *m);
    int h = hw, c = 64;
    if (cifar) {
        push_conv(m, "conv1", "bn1", 3, h, 64, 3, 1, 1, true, false)->first = true;
    } else {
        push_conv(m, "conv1", "bn1", 3, h, 64, 7, 2, 3, true, false)->first = true;
        h = conv_out(h, 7, 2, 3);
        layer *pool = push(m, LAYER_MAXPOOL, "maxpool", "");
        pool->c = pool->k = 64;
        pool->h = pool->w = h;
        pool->r = 3;
        pool->stride = 2;
        pool->pad = 1;
        pool->p = pool->q = h = conv_out(h, 3, 2, 1);
    }
    for (int stage = 0; stage < 4; stage++)
        for (int block = 0; block < 2; block++) {
            int k = 64 << stage, stride = (stage > 0 && block == 0) ? 2 : 1;
            char pre[12], name[32], bn[32];
            snprintf(pre, sizeof pre, "layer%d.%d", (stage + 1) % 10, block % 10);
            snprintf(name, sizeof name, "%s.conv1", pre);
            snprintf(bn, sizeof bn, "%s.bn1", pre);
            push_conv(m, name, bn, c, h, k, 3, stride, 1, true, false)->block_input = true;
            if (stride != 1 || c != k) {
                snprintf(name, sizeof name, "%s.downsample.0", pre);
                snprintf(bn, sizeof bn, "%s.downsample.1", pre);
                push_conv(m, name, bn, c, h, k, 1, stride, 0, false, false);
            }
            h = conv_out(h, 3, stride, 1);
            snprintf(name, sizeof name, "%s.conv2", pre);
            snprintf(bn, sizeof bn, "%s.bn2", pre);
            push_conv(m, name, bn, k, h, k, 3, 1, 1, true, true);
            c = k;
        }
    layer *gap = push(m, LAYER_GAP, "avgpool", "");
    gap->c = gap->k = c;
    gap->h = gap->w = h;
    gap->p = gap->q = 1;
    layer *fc = push(m, LAYER_FC, "fc", "");
    fc->c = c;
    fc->k = classes;
    m->params += (int64_t)classes * c + classes;
}

static spec conv_spec(call_kind kind, const layer *l, int n) {
    spec s = blank(kind);
    s.n = n;
    s.c = l->c;
    s.h = l->h;
    s.w = l->w;
    s.k = l->k;
    s.p = l->p;
    s.q = l->q;
    s.r = l->r;
    s.stride = l->stride;
    s.pad = l->pad;
    return s;
}

/* An activation-shaped call (batch norm, add, pools) over (n, c, h, w). */
static spec act_spec(call_kind kind, int n, int c, int h, int w) {
    spec s = blank(kind);
    s.n = n;
    s.c = c;
    s.h = h;
    s.w = w;
    return s;
}

static void plan_inference(step *st, const net *m, int n) {
    for (int i = 0; i < m->nlayers; i++) {
        const layer *l = &m->layers[i];
        spec s;
        if (l->kind == LAYER_CONV) {
            s = conv_spec(CALL_CONV_FWD, l, n);
            s.bias = true; /* the folded batch norm */
            s.residual = l->residual;
            s.relu = l->relu;
        } else if (l->kind == LAYER_MAXPOOL) {
            s = conv_spec(CALL_MAXPOOL_FWD, l, n);
        } else if (l->kind == LAYER_GAP) {
            s = act_spec(CALL_GAP_FWD, n, l->c, l->h, l->w);
        } else {
            s = blank(CALL_FC_FWD);
            s.n = n;
            s.c = l->c;
            s.k = l->k;
        }
        add_call(st, s, l->name);
    }
}

static void plan_training(step *st, const net *m, int n) {
    int classes = 0;
    for (int i = 0; i < m->nlayers; i++) {
        const layer *l = &m->layers[i];
        spec s;
        if (l->kind == LAYER_CONV) {
            add_call(st, conv_spec(CALL_CONV_FWD, l, n), l->name);
            s = act_spec(CALL_BN_FWD, n, l->k, l->p, l->q);
            s.residual = l->residual;
            s.relu = l->relu;
            add_call(st, s, l->bn);
        } else if (l->kind == LAYER_MAXPOOL) {
            add_call(st, conv_spec(CALL_MAXPOOL_FWD, l, n), l->name);
        } else if (l->kind == LAYER_GAP) {
            add_call(st, act_spec(CALL_GAP_FWD, n, l->c, l->h, l->w), l->name);
        } else {
            s = blank(CALL_FC_FWD);
            s.n = n;
            s.c = l->c;
            s.k = classes = l->k;
            add_call(st, s, l->name);
        }
    }
    spec loss = blank(CALL_LOSS);
    loss.n = n;
    loss.k = classes;
    add_call(st, loss, "loss");
    for (int i = m->nlayers - 1; i >= 0; i--) {
        const layer *l = &m->layers[i];
        if (l->kind == LAYER_CONV) {
            spec s = act_spec(CALL_BN_BWD, n, l->k, l->p, l->q);
            s.residual = l->residual;
            s.relu = l->relu;
            add_call(st, s, l->bn);
            add_call(st, conv_spec(CALL_CONV_BWD_FILTER, l, n), l->name);
            if (!l->first) add_call(st, conv_spec(CALL_CONV_BWD_DATA, l, n), l->name);
            /* The block input's second gradient (from conv1; the residual path wrote first). */
            if (l->block_input) {
                char name[40];
                snprintf(name, sizeof name, "%.26s.grad_add", l->name);
                add_call(st, act_spec(CALL_ADD, n, l->c, l->h, l->w), name);
            }
        } else if (l->kind == LAYER_MAXPOOL) {
            add_call(st, conv_spec(CALL_MAXPOOL_BWD, l, n), l->name);
        } else if (l->kind == LAYER_GAP) {
            add_call(st, act_spec(CALL_GAP_BWD, n, l->c, l->h, l->w), l->name);
        } else {
            spec s = blank(CALL_FC_BWD);
            s.n = n;
            s.c = l->c;
            s.k = l->k;
            add_call(st, s, l->name);
        }
    }
    spec sgd = blank(CALL_SGD);
    sgd.numel = m->params;
    add_call(st, sgd, "optimizer");
}

/* FLOPs (2 per multiply-add; only convolutions and the classifier count) and the least bytes
 * the call moves in f32. */
static void call_cost(const spec *s, double *flop, double *bytes) {
    double x = (double)s->n * s->c * s->h * s->w, y = (double)s->n * s->k * s->p * s->q,
           wt = (double)s->k * s->c * s->r * s->r, macs = y * s->c * s->r * s->r, f = 0, b = 0;
    switch (s->kind) {
        case CALL_CONV_FWD:
            f = 2 * macs;
            b = x + wt + y + (s->bias ? s->k : 0) + (s->residual ? y : 0);
            break;
        case CALL_CONV_BWD_DATA: f = 2 * macs, b = y + wt + x; break;
        case CALL_CONV_BWD_FILTER: f = 2 * macs, b = x + y + wt; break;
        case CALL_BN_FWD: b = x * (s->residual ? 3 : 2); break;
        case CALL_BN_BWD: b = x * (s->residual ? 5 : 4); break;
        case CALL_ADD: b = 3 * x; break;
        case CALL_MAXPOOL_FWD: b = x + (double)s->n * s->c * s->p * s->q; break;
        case CALL_MAXPOOL_BWD: b = 2 * x + (double)s->n * s->c * s->p * s->q; break;
        case CALL_GAP_FWD:
        case CALL_GAP_BWD: b = x + (double)s->n * s->c; break;
        case CALL_FC_FWD:
            f = 2.0 * s->n * s->c * s->k;
            b = (double)s->n * s->c + (double)s->k * s->c + (double)s->n * s->k;
            break;
        case CALL_FC_BWD:
            f = 4.0 * s->n * s->c * s->k;
            b = 2.0 * s->n * s->c + 2.0 * s->k * s->c + (double)s->n * s->k;
            break;
        case CALL_LOSS: b = 2.0 * s->n * s->k; break;
        case CALL_SGD: b = 5.0 * (double)s->numel; break;
        default: break;
    }
    *flop = f;
    *bytes = 4 * b;
}

/* ---- running one call ------------------------------------------------------------------- */

enum {
    T_X,
    T_W,
    T_B,
    T_Y,
    T_RES,
    T_DY,
    T_DX,
    T_DW,
    T_DB,
    T_DRES,
    T_GAMMA,
    T_BETA,
    T_RMEAN,
    T_RVAR,
    T_SMEAN,
    T_SINV,
    T_LABELS,
    T_LOSS,
    T_COUNT
};

typedef struct bufs {
    bl_tensor t[T_COUNT];
} bufs;

static bl_status make(bl_device *dev, bl_dtype dt, int ndim, const int64_t *shape, uint64_t seed,
                      bl_tensor *out) {
    BL_TRY(bl_tensor_alloc(dev, dt, ndim, shape, out));
    int64_t n = bl_tensor_numel(out);
    void *host = malloc((size_t)(n ? n : 1) * 4);
    if (!host) return bl_error(BL_ERR_OUT_OF_MEMORY, "bench_cpu_ops: %lld floats of staging", (long long)n);
    if (dt == BL_I32) {
        for (int64_t i = 0; i < n; i++) ((int32_t *)host)[i] = (int32_t)(i % 10);
    } else {
        /* Positive values: scales, variances and inverse deviations stay meaningful. */
        bl_fill_uniform_f32(host, n, seed, 0, 0.05, 1.0);
    }
    bl_status s = bl_tensor_copy_from_host(out, host);
    free(host);
    return s;
}

static bl_status alloc_call(bl_device *dev, const spec *s, bufs *b) {
    int64_t x[4] = {s->n, s->c, s->h, s->w}, y[4] = {s->n, s->k, s->p, s->q}, w[4] = {s->k, s->c, s->r, s->r},
            ch[1] = {s->c}, k[1] = {s->k}, nc[2] = {s->n, s->c}, nk[2] = {s->n, s->k}, kc[2] = {s->k, s->c},
            n1[1] = {s->n}, one[1] = {1}, pooled[4] = {s->n, s->c, s->p, s->q};
    bl_tensor *t = b->t;
    switch (s->kind) {
        case CALL_CONV_FWD:
            BL_TRY(make(dev, BL_F32, 4, x, 1, &t[T_X]));
            BL_TRY(make(dev, BL_F32, 4, w, 2, &t[T_W]));
            BL_TRY(make(dev, BL_F32, 4, y, 3, &t[T_Y]));
            if (s->bias) BL_TRY(make(dev, BL_F32, 1, k, 4, &t[T_B]));
            if (s->residual) BL_TRY(make(dev, BL_F32, 4, y, 5, &t[T_RES]));
            return BL_OK;
        case CALL_CONV_BWD_DATA:
        case CALL_CONV_BWD_FILTER:
            BL_TRY(make(dev, BL_F32, 4, x, 1, &t[T_X]));
            BL_TRY(make(dev, BL_F32, 4, w, 2, &t[T_W]));
            BL_TRY(make(dev, BL_F32, 4, y, 3, &t[T_DY]));
            return BL_OK;
        case CALL_BN_FWD:
        case CALL_BN_BWD: {
            int ids[] = {T_X, T_Y, T_DY, T_DX, T_RES, T_DRES};
            for (int i = 0; i < 6; i++) BL_TRY(make(dev, BL_F32, 4, x, (uint64_t)(10 + i), &t[ids[i]]));
            int vids[] = {T_GAMMA, T_BETA, T_RMEAN, T_RVAR, T_SMEAN, T_SINV, T_DW, T_DB};
            for (int i = 0; i < 8; i++) BL_TRY(make(dev, BL_F32, 1, ch, (uint64_t)(20 + i), &t[vids[i]]));
            return BL_OK;
        }
        case CALL_ADD:
            BL_TRY(make(dev, BL_F32, 4, x, 1, &t[T_X]));
            BL_TRY(make(dev, BL_F32, 4, x, 2, &t[T_Y]));
            return BL_OK;
        case CALL_MAXPOOL_FWD:
        case CALL_MAXPOOL_BWD:
            BL_TRY(make(dev, BL_F32, 4, x, 1, &t[T_X]));
            BL_TRY(make(dev, BL_F32, 4, x, 2, &t[T_DX]));
            BL_TRY(make(dev, BL_F32, 4, pooled, 3, &t[T_Y]));
            BL_TRY(make(dev, BL_F32, 4, pooled, 4, &t[T_DY]));
            return BL_OK;
        case CALL_GAP_FWD:
        case CALL_GAP_BWD:
            BL_TRY(make(dev, BL_F32, 4, x, 1, &t[T_X]));
            BL_TRY(make(dev, BL_F32, 4, x, 2, &t[T_DX]));
            BL_TRY(make(dev, BL_F32, 2, nc, 3, &t[T_Y]));
            BL_TRY(make(dev, BL_F32, 2, nc, 4, &t[T_DY]));
            return BL_OK;
        case CALL_FC_FWD:
        case CALL_FC_BWD:
            BL_TRY(make(dev, BL_F32, 2, nc, 1, &t[T_X]));
            BL_TRY(make(dev, BL_F32, 2, nc, 2, &t[T_DX]));
            BL_TRY(make(dev, BL_F32, 2, kc, 3, &t[T_W]));
            BL_TRY(make(dev, BL_F32, 2, kc, 4, &t[T_DW]));
            BL_TRY(make(dev, BL_F32, 1, k, 5, &t[T_B]));
            BL_TRY(make(dev, BL_F32, 1, k, 6, &t[T_DB]));
            BL_TRY(make(dev, BL_F32, 2, nk, 7, &t[T_Y]));
            BL_TRY(make(dev, BL_F32, 2, nk, 8, &t[T_DY]));
            return BL_OK;
        case CALL_LOSS:
            BL_TRY(make(dev, BL_F32, 2, nk, 1, &t[T_Y]));
            BL_TRY(make(dev, BL_F32, 2, nk, 2, &t[T_DY]));
            BL_TRY(make(dev, BL_I32, 1, n1, 3, &t[T_LABELS]));
            BL_TRY(make(dev, BL_F32, 1, one, 4, &t[T_LOSS]));
            return BL_OK;
        case CALL_SGD: {
            int64_t len[1] = {s->numel};
            BL_TRY(make(dev, BL_F32, 1, len, 1, &t[T_W]));
            BL_TRY(make(dev, BL_F32, 1, len, 2, &t[T_DW]));
            BL_TRY(make(dev, BL_F32, 1, len, 3, &t[T_RMEAN]));
            return BL_OK;
        }
        default: return bl_error(BL_ERR_INTERNAL, "bench_cpu_ops: unknown call kind %d", (int)s->kind);
    }
}

static bl_status run_call(bl_device *dev, const spec *s, bufs *b) {
    bl_tensor *t = b->t;
    bl_conv2d_params cp = {s->stride, s->stride, s->pad, s->pad};
    bl_pool_params pp = {s->r, s->stride, s->pad};
    bl_batchnorm_params bn = {1e-5f, 0.1f};
    bl_sgd_params sgd = {0.01f, 0.9f, 5e-4f, true};
    switch (s->kind) {
        case CALL_CONV_FWD:
            return bl_op_conv2d_forward(dev, &cp, &t[T_X], &t[T_W], s->bias ? &t[T_B] : NULL,
                                        s->residual ? &t[T_RES] : NULL, s->relu, &t[T_Y]);
        case CALL_CONV_BWD_DATA: return bl_op_conv2d_backward_data(dev, &cp, &t[T_DY], &t[T_W], &t[T_X]);
        case CALL_CONV_BWD_FILTER: return bl_op_conv2d_backward_filter(dev, &cp, &t[T_X], &t[T_DY], &t[T_W]);
        case CALL_BN_FWD:
            return bl_op_batchnorm_forward_train(dev, &bn, &t[T_X], &t[T_GAMMA], &t[T_BETA],
                                                 s->residual ? &t[T_RES] : NULL, s->relu, &t[T_RMEAN],
                                                 &t[T_RVAR], &t[T_SMEAN], &t[T_SINV], &t[T_Y]);
        case CALL_BN_BWD:
            return bl_op_batchnorm_backward(dev, &t[T_DY], &t[T_X], &t[T_Y], s->relu, &t[T_GAMMA],
                                            &t[T_SMEAN], &t[T_SINV], &t[T_DX], &t[T_DW], &t[T_DB],
                                            s->residual ? &t[T_DRES] : NULL);
        case CALL_ADD: return bl_op_add(dev, &t[T_Y], &t[T_X], &t[T_Y]); /* accumulate: y += x */
        case CALL_MAXPOOL_FWD: return bl_op_maxpool_forward(dev, &pp, &t[T_X], &t[T_Y]);
        case CALL_MAXPOOL_BWD: return bl_op_maxpool_backward(dev, &pp, &t[T_X], &t[T_DY], &t[T_DX]);
        case CALL_GAP_FWD: return bl_op_global_avgpool_forward(dev, &t[T_X], &t[T_Y]);
        case CALL_GAP_BWD: return bl_op_global_avgpool_backward(dev, &t[T_DY], &t[T_DX]);
        case CALL_FC_FWD: return bl_op_linear_forward(dev, &t[T_X], &t[T_W], &t[T_B], &t[T_Y]);
        case CALL_FC_BWD:
            return bl_op_linear_backward(dev, &t[T_DY], &t[T_X], &t[T_W], &t[T_DX], &t[T_DW], &t[T_DB]);
        case CALL_LOSS:
            return bl_op_softmax_cross_entropy(dev, &t[T_Y], &t[T_LABELS], 0.0f, &t[T_LOSS], &t[T_DY]);
        case CALL_SGD: return bl_op_sgd_update(dev, &sgd, &t[T_W], &t[T_DW], &t[T_RMEAN]);
        default: return bl_error(BL_ERR_INTERNAL, "bench_cpu_ops: unknown call kind %d", (int)s->kind);
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Times one call: two warm-up calls (they build and cache oneDNN primitives and blocked
 * weights, as a model's first step does), then calls until min_seconds have passed (at least
 * 5, at most 2000). Returns the best and the median milliseconds per call. */
static bl_status time_call(bl_device *dev, const spec *s, double min_seconds, double *best, double *median,
                           int *calls) {
    bufs b;
    memset(&b, 0, sizeof b);
    enum {
        MAX_TIMED = 2000
    };
    static double ms[MAX_TIMED];
    bl_status st = alloc_call(dev, s, &b);
    for (int i = 0; i < 2 && st == BL_OK; i++) st = run_call(dev, s, &b);
    int n = 0;
    double start = bl_time_now();
    while (st == BL_OK && n < MAX_TIMED && (n < 5 || bl_time_now() - start < min_seconds)) {
        double t0 = bl_time_now();
        st = run_call(dev, s, &b);
        if (st == BL_OK) st = bl_device_synchronize(dev);
        ms[n++] = 1e3 * (bl_time_now() - t0);
    }
    for (int i = 0; i < T_COUNT; i++) bl_tensor_release(&b.t[i]);
    if (st != BL_OK) return st;
    qsort(ms, (size_t)n, sizeof ms[0], cmp_double);
    *best = ms[0];
    *median = ms[n / 2];
    *calls = n;
    return BL_OK;
}

/* ---- the machine's peaks ------------------------------------------------------------------ */

enum {
    CHAINS = 16 /* independent accumulators: hide a 4-6 cycle latency on two pipes */
};

/* f32: each 512-bit FMA is 16 multiply-adds = 32 FLOPs. */
__attribute__((target("avx512f"))) static float fma_f32_loop(long reps) {
    __m512 acc[CHAINS], a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
    for (long r = 0; r < reps; r++)
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
    __m512 s = acc[0];
    for (int i = 1; i < CHAINS; i++) s = _mm512_add_ps(s, acc[i]);
    return _mm512_reduce_add_ps(s);
}

/* bf16: each vdpbf16ps multiplies 32 bf16 pairs and adds them into 16 f32 lanes = 64 FLOPs,
 * the instruction oneDNN's AVX512-BF16 kernels are built on. */
__attribute__((target("avx512f,avx512bf16"))) static float dot_bf16_loop(long reps) {
    __m512 acc[CHAINS];
    __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3380); /* 1, ~6e-8 */
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
    for (long r = 0; r < reps; r++)
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
    __m512 s = acc[0];
    for (int i = 1; i < CHAINS; i++) s = _mm512_add_ps(s, acc[i]);
    return _mm512_reduce_add_ps(s);
}

/* Best of three runs of `threads` threads each running the loop; GFLOP/s. */
static double measure_peak(bool bf16, int threads) {
    const long reps = 10000000;
    double best = 0;
    for (int run = 0; run < 3; run++) {
        float sink = 0;
        double t0 = bl_time_now();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
        sink += bf16 ? dot_bf16_loop(reps) : fma_f32_loop(reps);
        double t = bl_time_now() - t0;
        double gflops = (double)threads * reps * CHAINS * (bf16 ? 64 : 32) / t / 1e9;
        if (gflops > best && sink == sink) best = gflops; /* the sum keeps the loop live */
    }
    return best;
}

static int run_peak(int threads) {
    if (!__builtin_cpu_supports("avx512f")) {
        fprintf(stderr, "bench_cpu_ops --peak: this CPU has no AVX-512; the loops need it\n");
        return 1;
    }
    bool has_bf16 = __builtin_cpu_supports("avx512bf16");
    printf("{\"workload\":\"peak\",\"threads\":%d,\"f32_gflops\":%.1f,\"f32_isa\":\"avx512f vfmadd\"",
           threads, measure_peak(false, threads));
    if (has_bf16)
        printf(",\"bf16_gflops\":%.1f,\"bf16_isa\":\"avx512_bf16 vdpbf16ps\"}\n",
               measure_peak(true, threads));
    else
        printf(",\"bf16_gflops\":null,\"bf16_isa\":\"none (no AVX512-BF16)\"}\n");
    return 0;
}

/* ---- main --------------------------------------------------------------------------------- */

static void print_spec_shapes(const spec *s) {
    switch (s->kind) {
        case CALL_CONV_FWD:
        case CALL_CONV_BWD_DATA:
        case CALL_CONV_BWD_FILTER:
            printf("\"x\":[%d,%d,%d,%d],\"w\":[%d,%d,%d,%d],\"y\":[%d,%d,%d,%d],\"stride\":%d,\"pad\":%d,"
                   "\"bias\":%s,\"residual\":%s,\"relu\":%s",
                   s->n, s->c, s->h, s->w, s->k, s->c, s->r, s->r, s->n, s->k, s->p, s->q, s->stride, s->pad,
                   s->bias ? "true" : "false", s->residual ? "true" : "false", s->relu ? "true" : "false");
            break;
        case CALL_MAXPOOL_FWD:
        case CALL_MAXPOOL_BWD:
            printf("\"x\":[%d,%d,%d,%d],\"y\":[%d,%d,%d,%d],\"kernel\":%d,\"stride\":%d,\"pad\":%d", s->n,
                   s->c, s->h, s->w, s->n, s->c, s->p, s->q, s->r, s->stride, s->pad);
            break;
        case CALL_BN_FWD:
        case CALL_BN_BWD:
            printf("\"x\":[%d,%d,%d,%d],\"residual\":%s,\"relu\":%s", s->n, s->c, s->h, s->w,
                   s->residual ? "true" : "false", s->relu ? "true" : "false");
            break;
        case CALL_ADD:
        case CALL_GAP_FWD:
        case CALL_GAP_BWD: printf("\"x\":[%d,%d,%d,%d]", s->n, s->c, s->h, s->w); break;
        case CALL_FC_FWD:
        case CALL_FC_BWD:
            printf("\"x\":[%d,%d],\"w\":[%d,%d],\"y\":[%d,%d]", s->n, s->c, s->k, s->c, s->n, s->k);
            break;
        case CALL_LOSS: printf("\"x\":[%d,%d]", s->n, s->k); break;
        case CALL_SGD: printf("\"x\":[%lld]", (long long)s->numel); break;
        default: break;
    }
}

int main(int argc, char **argv) {
    const char *device = "cpu", *workload = "cifar_resnet18_infer_b64";
    int threads = 0;
    double min_seconds = 0.25;
    bool peak = false;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--device=", 9) == 0)
            device = argv[i] + 9;
        else if (strncmp(argv[i], "--workload=", 11) == 0)
            workload = argv[i] + 11;
        else if (strncmp(argv[i], "--threads=", 10) == 0)
            threads = atoi(argv[i] + 10);
        else if (strncmp(argv[i], "--min-seconds=", 14) == 0)
            min_seconds = atof(argv[i] + 14);
        else if (strcmp(argv[i], "--peak") == 0)
            peak = true;
        else {
            fprintf(stderr, "usage: bench_cpu_ops [--workload=<cifar|imagenet>_resnet18_<infer|train>_b<N>] "
                            "[--device=cpu] [--threads=N] [--min-seconds=S] | --peak [--threads=N]\n");
            return 2;
        }
    }
    if (threads <= 0) threads = omp_get_num_procs();
    if (peak) return run_peak(threads);

    char stem[16], mode[16];
    int batch = 0, used = 0;
    if (sscanf(workload, "%15[a-z]_resnet18_%15[a-z]_b%d%n", stem, mode, &batch, &used) != 3 ||
        workload[used] != '\0' || batch < 1 ||
        (strcmp(stem, "cifar") != 0 && strcmp(stem, "imagenet") != 0) ||
        (strcmp(mode, "infer") != 0 && strcmp(mode, "train") != 0)) {
        fprintf(stderr,
                "bench_cpu_ops: --workload=%s: expected <cifar|imagenet>_resnet18_<infer|train>_b<N>, "
                "e.g. cifar_resnet18_train_b128\n",
                workload);
        return 2;
    }
    bool cifar = strcmp(stem, "cifar") == 0, train = strcmp(mode, "train") == 0;
    bl_device *dev;
    if (bl_device_get(device, &dev) != BL_OK) {
        fprintf(stderr, "bench_cpu_ops: %s\n", bl_last_error());
        return 1;
    }
#ifdef BEAMLET_HAVE_ONEDNN
    if (bl_cpu_set_num_threads(threads) != BL_OK) {
        fprintf(stderr, "bench_cpu_ops: %s\n", bl_last_error());
        return 1;
    }
#else
    omp_set_num_threads(threads);
#endif
    static net model;
    static step st;
    build_resnet18(&model, cifar, cifar ? 32 : 224, cifar ? 10 : 1000);
    if (train)
        plan_training(&st, &model, batch);
    else
        plan_inference(&st, &model, batch);
    printf("{\"workload\":\"%s\",\"device\":\"%s\",\"backend\":\"%s\",\"threads\":%d,\"batch\":%d,"
           "\"distinct_calls\":%d,\"parameters\":%lld,\"min_seconds_per_call\":%g}\n",
           workload, device, bl_device_backend_name(dev), threads, batch, st.ncalls, (long long)model.params,
           min_seconds);
    fflush(stdout);
    double sum_best = 0, sum_median = 0, sum_flop = 0;
    int failures = 0;
    for (int i = 0; i < st.ncalls; i++) {
        const call *c = &st.calls[i];
        double best, median, flop, bytes;
        int calls;
        if (time_call(dev, &c->s, min_seconds, &best, &median, &calls) != BL_OK) {
            fprintf(stderr, "bench_cpu_ops: %s (%s): %s\n", call_names[c->s.kind], c->layers,
                    bl_last_error());
            failures++;
            continue;
        }
        call_cost(&c->s, &flop, &bytes);
        sum_best += c->count * best;
        sum_median += c->count * median;
        sum_flop += c->count * flop;
        printf("{\"op\":\"%s\",\"layers\":\"%s\",\"count\":%d,", call_names[c->s.kind], c->layers, c->count);
        print_spec_shapes(&c->s);
        printf(",\"gflop\":%.6f,\"mb\":%.4f,\"ms\":%.4f,\"ms_median\":%.4f,\"calls\":%d}\n", flop / 1e9,
               bytes / 1e6, best, median, calls);
        fflush(stdout);
    }
    printf(
        "{\"workload\":\"%s\",\"summary\":true,\"step_ms_sum_of_best\":%.3f,\"step_ms_sum_of_medians\":%.3f,"
        "\"step_gflop\":%.4f,\"failures\":%d}\n",
        workload, sum_best, sum_median, sum_flop / 1e9, failures);
    bl_device_release(dev);
    return failures ? 1 : 0;
}
