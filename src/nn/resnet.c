/* The ResNet builder: torchvision's module layout and parameter names (BasicBlock, depths 18
 * and 34), with a CIFAR stem option, any width and any class count. Parameters are
 * initialized as torchvision does, from a seed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/model_internal.h"

bl_resnet_config bl_resnet_config_default(void) {
    bl_resnet_config c = {18, 10, 64, 3, BL_RESNET_STEM_IMAGENET};
    return c;
}

typedef struct builder {
    bl_model *m;
    int cur;     /* value holding the current activation */
    int c, h, w; /* its per-image shape */
} builder;

/* name = prefix + suffix, truncated to BL_NAME_MAX (our names are far shorter). */
static void join(char name[BL_NAME_MAX], const char *prefix, const char *suffix) {
    size_t a = strnlen(prefix, BL_NAME_MAX - 1), b = strnlen(suffix, BL_NAME_MAX - 1 - a);
    memcpy(name, prefix, a);
    memcpy(name + a, suffix, b);
    name[a + b] = '\0';
}

/* Adds "<prefix>.weight" conv and returns the node's output value. Spatial sizes are computed
 * for a nominal 224x224 input; bl_model_plan recomputes them for the real input. */
static int add_conv(builder *b, const char *prefix, int in_value, int in_c, int out_c, int k, int stride,
                    int pad) {
    char name[BL_NAME_MAX];
    join(name, prefix, ".weight");
    int64_t shape[4] = {out_c, in_c, k, k};
    node n = {0};
    n.kind = NODE_CONV;
    n.in = in_value;
    n.residual = -1;
    n.conv = (bl_conv2d_params){stride, stride, pad, pad};
    n.weight = bl_model_add_param(b->m, name, BL_PARAM_WEIGHT, 4, shape);
    n.bias = -1;
    n.fused_bn = -1;
    int idx = bl_model_add_node(b->m, n, out_c, 0, 0, false);
    return b->m->nodes[idx].out;
}

static int add_bn(builder *b, const char *prefix, int in_value, int c, int residual, bool relu) {
    char name[BL_NAME_MAX];
    int64_t shape[1] = {c};
    node n = {0};
    n.kind = NODE_BN;
    n.in = in_value;
    n.residual = residual;
    n.relu = relu;
    n.fused_bn = -1;
    join(name, prefix, ".weight");
    n.weight = bl_model_add_param(b->m, name, BL_PARAM_WEIGHT, 1, shape);
    join(name, prefix, ".bias");
    n.bias = bl_model_add_param(b->m, name, BL_PARAM_WEIGHT, 1, shape);
    join(name, prefix, ".running_mean");
    n.running_mean = bl_model_add_param(b->m, name, BL_PARAM_BUFFER, 1, shape);
    join(name, prefix, ".running_var");
    n.running_var = bl_model_add_param(b->m, name, BL_PARAM_BUFFER, 1, shape);
    int idx = bl_model_add_node(b->m, n, c, 0, 0, false);
    return b->m->nodes[idx].out;
}

/* torchvision BasicBlock: conv3x3(stride)-bn-relu-conv3x3-bn (+ identity or downsample) -relu.
 * The downsample branch is built before conv2 so that, in inference, conv2 can fuse its batch
 * norm and the residual add in one convolution whose residual is already computed. */
static void add_block(builder *b, const char *prefix, int out_c, int stride) {
    char name[BL_NAME_MAX];
    int x = b->cur, in_c = b->c;
    join(name, prefix, ".conv1");
    int v = add_conv(b, name, x, in_c, out_c, 3, stride, 1);
    join(name, prefix, ".bn1");
    v = add_bn(b, name, v, out_c, -1, true);
    int identity = x;
    if (stride != 1 || in_c != out_c) {
        join(name, prefix, ".downsample.0");
        int d = add_conv(b, name, x, in_c, out_c, 1, stride, 0);
        join(name, prefix, ".downsample.1");
        identity = add_bn(b, name, d, out_c, -1, false);
    }
    join(name, prefix, ".conv2");
    v = add_conv(b, name, v, out_c, out_c, 3, 1, 1);
    join(name, prefix, ".bn2");
    b->cur = add_bn(b, name, v, out_c, identity, true);
    b->c = out_c;
}

/* torchvision's initialization of parameter i into dst (logical NCHW order), drawn from its
 * own stream (the parameter's index) in parallel blocks: the same numbers for any thread count
 * (bl_fill_normal_f32). Buffers start as a fresh nn.BatchNorm2d's: mean 0, variance 1. */
static void init_param(bl_model *m, int i, uint64_t seed, int fc_in, float *dst) {
    param *p = &m->params[i];
    int64_t n = bl_tensor_numel(&p->info.value);
    size_t len = strlen(p->name);
    if (p->info.kind == BL_PARAM_BUFFER) {
        bool is_var = len > 12 && strcmp(p->name + len - 12, ".running_var") == 0;
        for (int64_t j = 0; j < n; j++) dst[j] = is_var ? 1.0f : 0.0f;
        return;
    }
    bool is_bias = len >= 5 && strcmp(p->name + len - 5, ".bias") == 0;
    if (p->ndim == 4) {
        /* kaiming_normal_(mode="fan_out", nonlinearity="relu"): std = sqrt(2 / fan_out). */
        double fan_out = (double)(p->shape[0] * p->shape[2] * p->shape[3]);
        bl_fill_normal_f32(dst, n, seed, (uint64_t)i, 0.0, sqrt(2.0 / fan_out));
    } else if (strncmp(p->name, "fc.", 3) == 0) {
        /* nn.Linear's default: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias. */
        double bound = 1.0 / sqrt((double)fc_in);
        bl_fill_uniform_f32(dst, n, seed, (uint64_t)i, -bound, bound);
    } else {
        /* Batch norm: scale 1, shift 0. */
        for (int64_t j = 0; j < n; j++) dst[j] = is_bias ? 0.0f : 1.0f;
    }
}

bl_status bl_resnet_new(bl_device *dev, const bl_resnet_config *cfg, uint64_t seed, bl_model **out) {
    *out = NULL;
    if (!cfg || (cfg->depth != 18 && cfg->depth != 34))
        return bl_error(BL_ERR_INVALID_ARG, "resnet: depth %d is not supported (18 or 34)",
                        cfg ? cfg->depth : 0);
    if (cfg->width < 1 || cfg->width > BL_RESNET_MAX_WIDTH)
        return bl_error(BL_ERR_INVALID_ARG, "resnet: width %d is out of range (1 to %d)", cfg->width,
                        BL_RESNET_MAX_WIDTH);
    if (cfg->num_classes < 1 || cfg->num_classes > BL_RESNET_MAX_CLASSES)
        return bl_error(BL_ERR_INVALID_ARG, "resnet: %d classes is out of range (1 to %d)", cfg->num_classes,
                        BL_RESNET_MAX_CLASSES);
    if (cfg->in_channels < 1 || cfg->in_channels > BL_RESNET_MAX_IN_CHANNELS)
        return bl_error(BL_ERR_INVALID_ARG, "resnet: %d input channels is out of range (1 to %d)",
                        cfg->in_channels, BL_RESNET_MAX_IN_CHANNELS);
    bl_model *m = calloc(1, sizeof *m);
    if (!m) return bl_error(BL_ERR_OUT_OF_MEMORY, "resnet: cannot allocate the model");
    m->dev = dev;
    m->cfg = *cfg;
    m->nvalues = 1; /* value 0 is the input image batch */
    m->values[0].c = cfg->in_channels;
    builder b = {m, 0, cfg->in_channels, 0, 0};
    int w = cfg->width;
    if (cfg->stem == BL_RESNET_STEM_IMAGENET) {
        b.cur = add_conv(&b, "conv1", 0, cfg->in_channels, w, 7, 2, 3);
        b.cur = add_bn(&b, "bn1", b.cur, w, -1, true);
        node pool = {0};
        pool.kind = NODE_MAXPOOL;
        pool.in = b.cur;
        pool.residual = -1;
        pool.pool = (bl_pool_params){3, 2, 1};
        pool.weight = pool.bias = -1;
        pool.fused_bn = -1;
        b.cur = m->nodes[bl_model_add_node(m, pool, w, 0, 0, false)].out;
    } else {
        b.cur = add_conv(&b, "conv1", 0, cfg->in_channels, w, 3, 1, 1);
        b.cur = add_bn(&b, "bn1", b.cur, w, -1, true);
    }
    b.c = w;
    static const int blocks18[4] = {2, 2, 2, 2}, blocks34[4] = {3, 4, 6, 3};
    const int *blocks = cfg->depth == 18 ? blocks18 : blocks34;
    for (int layer = 0; layer < 4; layer++)
        for (int i = 0; i < blocks[layer]; i++) {
            char prefix[BL_NAME_MAX];
            snprintf(prefix, sizeof prefix, "layer%d.%d", layer + 1, i);
            add_block(&b, prefix, w << layer, (layer > 0 && i == 0) ? 2 : 1);
        }
    node gap = {0};
    gap.kind = NODE_GAP;
    gap.in = b.cur;
    gap.residual = -1;
    gap.weight = gap.bias = -1;
    gap.fused_bn = -1;
    b.cur = m->nodes[bl_model_add_node(m, gap, b.c, 1, 1, true)].out;
    node fc = {0};
    fc.kind = NODE_LINEAR;
    fc.in = b.cur;
    fc.residual = -1;
    fc.fused_bn = -1;
    int64_t wshape[2] = {cfg->num_classes, b.c}, bshape[1] = {cfg->num_classes};
    fc.weight = bl_model_add_param(m, "fc.weight", BL_PARAM_WEIGHT, 2, wshape);
    fc.bias = bl_model_add_param(m, "fc.bias", BL_PARAM_WEIGHT, 1, bshape);
    m->logits_value = m->nodes[bl_model_add_node(m, fc, cfg->num_classes, 1, 1, true)].out;

    bl_status s = bl_model_alloc_params(m);
    if (s == BL_OK) {
        /* Initialize on the host in torchvision's layout, one parameter at a time through one
         * scratch buffer, then upload: the same numbers on every device, in its layout. */
        int64_t largest = 1;
        for (int i = 0; i < m->nparams; i++)
            if (bl_tensor_numel(&m->params[i].info.value) > largest)
                largest = bl_tensor_numel(&m->params[i].info.value);
        float *scratch = bl_alloc_big((size_t)largest * sizeof(float));
        if (!scratch)
            s = bl_error(BL_ERR_OUT_OF_MEMORY, "resnet: init staging of %lld floats", (long long)largest);
        for (int i = 0; i < m->nparams && s == BL_OK; i++) {
            init_param(m, i, seed, w * 8, scratch);
            s = bl_tensor_upload_nchw_f32(&m->params[i].info.value, scratch);
        }
        free(scratch);
    }
    if (s != BL_OK) {
        bl_model_free(m);
        return bl_error_context(s, "resnet-%d", cfg->depth);
    }
    *out = m;
    return BL_OK;
}
