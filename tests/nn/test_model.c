/* The model executor on cpu_ref: whole-model finite-difference gradients, folded inference
 * equal to eval mode, torchvision parameter names, and bad-input errors. Fixed seeds. */
#include "bl_test.h"

#include "beamlet/nn.h"

#define SEED 99u
static bl_device *dev;

static bl_model *tiny(int depth, bl_resnet_stem stem, int in_channels) {
    bl_resnet_config cfg = bl_resnet_config_default();
    cfg.depth = depth;
    cfg.width = 2;
    cfg.num_classes = 5;
    cfg.stem = stem;
    cfg.in_channels = in_channels;
    bl_model *m = NULL;
    CHECK_OK(bl_resnet_new(dev, &cfg, SEED, &m));
    return m;
}

static void fill_random(bl_rng *rng, float *p, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) p[i] = (float)(bl_rng_normal(rng) * scale);
}

static void test_names_match_torchvision(void) {
    bl_model *m = tiny(18, BL_RESNET_STEM_IMAGENET, 3);
    const char *expected[] = {"conv1.weight",
                              "bn1.weight",
                              "bn1.bias",
                              "bn1.running_mean",
                              "bn1.running_var",
                              "layer1.0.conv1.weight",
                              "layer1.1.bn2.bias",
                              "layer2.0.downsample.0.weight",
                              "layer2.0.downsample.1.running_var",
                              "layer4.1.conv2.weight",
                              "fc.weight",
                              "fc.bias"};
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
        CHECK_MSG(bl_model_find_param(m, expected[i]) != NULL, "missing %s", expected[i]);
    CHECK(bl_model_find_param(m, "layer1.0.downsample.0.weight") == NULL);
    CHECK(strcmp(bl_model_param(m, 0)->name, "conv1.weight") == 0);
    const bl_param_info *c1 = bl_model_find_param(m, "conv1.weight");
    CHECK(c1->value.shape[0] == 2 && c1->value.shape[1] == 3 && c1->value.shape[2] == 7);
    /* torchvision ResNet-18 has 62 parameters and 40 buffers besides num_batches_tracked. */
    int weights = 0, buffers = 0;
    for (int i = 0; i < bl_model_param_count(m); i++)
        *(bl_model_param(m, i)->kind == BL_PARAM_WEIGHT ? &weights : &buffers) += 1;
    CHECK_MSG(weights == 62 && buffers == 40, "%d weights, %d buffers", weights, buffers);
    bl_model_free(m);
    m = tiny(34, BL_RESNET_STEM_CIFAR, 1);
    CHECK(bl_model_find_param(m, "layer3.5.conv2.weight") != NULL);
    CHECK(bl_model_find_param(m, "layer3.6.conv2.weight") == NULL);
    CHECK(bl_model_find_param(m, "conv1.weight")->value.shape[2] == 3);
    bl_model_free(m);
}

static double model_loss(bl_model *m, bl_tensor *x, bl_tensor *labels, bl_tensor *loss) {
    bl_tensor logits;
    /* Training mode: batch statistics. The running statistics drift, which does not change
     * the training-mode output. */
    BL_ASSERT(bl_model_forward(m, x, BL_FORWARD_TRAIN, &logits) == BL_OK);
    BL_ASSERT(bl_op_softmax_cross_entropy(dev, &logits, labels, 0.1f, loss, NULL) == BL_OK);
    return ((float *)loss->data)[0];
}

static void test_whole_model_gradients(void) {
    /* CIFAR stem at 16x16 keeps layer4 at 2x2, so every batch norm normalizes over 16 values
     * and the loss is smooth enough for finite differences. */
    bl_resnet_config cfg = bl_resnet_config_default();
    cfg.width = 4;
    cfg.num_classes = 5;
    cfg.stem = BL_RESNET_STEM_CIFAR;
    bl_model *m = NULL;
    CHECK_OK(bl_resnet_new(dev, &cfg, SEED, &m));
    CHECK_OK(bl_model_plan(m, 4, 16, 16, true));
    bl_rng rng;
    bl_rng_seed(&rng, SEED);
    float xs[4 * 3 * 16 * 16], lossv;
    int32_t ys[4] = {1, 4, 0, 2};
    fill_random(&rng, xs, 4 * 3 * 16 * 16, 1);
    int64_t xshape[4] = {4, 3, 16, 16}, n4 = 4, one = 1;
    bl_tensor x = bl_tensor_view(dev, xs, BL_F32, 4, xshape);
    bl_tensor labels = bl_tensor_view(dev, ys, BL_I32, 1, &n4),
              loss = bl_tensor_view(dev, &lossv, BL_F32, 1, &one);
    model_loss(m, &x, &labels, &loss);
    CHECK_OK(bl_model_backward(m, &labels, 0.1f, &loss));
    bl_tensor flat = bl_model_flat_params(m), grads = bl_model_flat_grads(m);
    float *p = flat.data, *g = grads.data;
    int64_t n = bl_tensor_numel(&flat);
    float *gcopy = malloc(sizeof(float) * (size_t)n);
    memcpy(gcopy, g, sizeof(float) * (size_t)n);
    /* Parameters from layer2 on: residual forks, downsample branches, batch norms, the head.
     * A step of 5e-4: at 2e-3 the ReLUs a step flips already move layer2's central
     * differences 8% off (they converge to the analytic values as the step shrinks). Nearer
     * the input even 1e-4 leaves them wandering 10-20% around the analytic value, so the
     * stem and layer1 are checked, like every parameter, against PyTorch in test_fixtures. */
    const char *names[] = {"layer2.0.downsample.0.weight",
                           "layer2.1.conv1.weight",
                           "layer3.0.conv1.weight",
                           "layer3.1.bn2.bias",
                           "layer4.0.bn1.weight",
                           "layer4.1.conv2.weight",
                           "fc.weight",
                           "fc.bias"};
    int checked = 0, kinks = 0;
    double worst = 0;
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        const bl_param_info *info = bl_model_find_param(m, names[k]);
        int64_t base = (float *)info->value.data - p, cnt = bl_tensor_numel(&info->value);
        for (int t = 0; t < 3; t++) {
            int64_t i = base + (int64_t)bl_rng_below(&rng, (uint64_t)cnt);
            float orig = p[i], eps = 5e-4f;
            double l0 = model_loss(m, &x, &labels, &loss);
            p[i] = orig + eps;
            double lp = model_loss(m, &x, &labels, &loss);
            p[i] = orig - eps;
            double lm = model_loss(m, &x, &labels, &loss);
            p[i] = orig;
            double num = (lp - lm) / (2 * eps);
            /* One-sided slopes that disagree by more than curvature explains: a ReLU or max
             * crossed inside the step. */
            if (fabs((lp - l0) - (l0 - lm)) / eps > 0.1 * (1 + fabs(num))) {
                kinks++;
                continue;
            }
            double abs_err = fabs(num - gcopy[i]), rel = abs_err / (1e-2 + fabs(num));
            if (rel > worst) worst = rel;
            checked++;
            CHECK_MSG(rel < 5e-2 || abs_err < 2e-3, "%s: numeric %.6g analytic %.6g", names[k], num,
                      gcopy[i]);
        }
    }
    fprintf(stderr, "  whole model: %d parameters checked, %d on kinks, worst relative error %.2e\n", checked,
            kinks, worst);
    CHECK(checked >= 18);
    free(gcopy);
    bl_model_free(m);
}

static void test_folded_inference_equals_eval(void) {
    bl_model *m = tiny(34, BL_RESNET_STEM_IMAGENET, 3);
    CHECK_OK(bl_model_plan(m, 4, 33, 29, true));
    bl_rng rng;
    bl_rng_seed(&rng, SEED + 1);
    float xs[4 * 3 * 33 * 29];
    fill_random(&rng, xs, 4 * 3 * 33 * 29, 1);
    int64_t xshape[4] = {4, 3, 33, 29};
    bl_tensor x = bl_tensor_view(dev, xs, BL_F32, 4, xshape), logits;
    /* A few training forwards give the running statistics non-trivial values. */
    for (int i = 0; i < 3; i++) CHECK_OK(bl_model_forward(m, &x, BL_FORWARD_TRAIN, &logits));
    float eval[20], infer[20];
    CHECK_OK(bl_model_forward(m, &x, BL_FORWARD_EVAL, &logits));
    memcpy(eval, logits.data, sizeof eval);
    CHECK_OK(bl_model_forward(m, &x, BL_FORWARD_INFER, &logits));
    memcpy(infer, logits.data, sizeof infer);
    double num = 0, den = 0;
    for (int i = 0; i < 20; i++) {
        num += (eval[i] - infer[i]) * (eval[i] - infer[i]);
        den += eval[i] * eval[i];
    }
    /* Folding rounds w * gamma / sqrt(var + eps) to f32 once per weight: a few ulps. */
    fprintf(stderr, "  folded vs eval: relative l2 difference %.2e\n", sqrt(num / den));
    CHECK(sqrt(num / den) < 1e-5);
    /* A smaller batch than planned works and gives the same per-image answers. */
    x.shape[0] = 2;
    CHECK_OK(bl_model_forward(m, &x, BL_FORWARD_EVAL, &logits));
    CHECK(logits.shape[0] == 2);
    for (int i = 0; i < 10; i++) CHECK_NEAR(((float *)logits.data)[i], eval[i], 1e-5 * (1 + fabs(eval[i])));
    bl_model_free(m);
}

static void test_bad_input(void) {
    bl_resnet_config cfg = bl_resnet_config_default();
    bl_model *m;
    cfg.depth = 50;
    CHECK_ERR(bl_resnet_new(dev, &cfg, 1, &m), BL_ERR_INVALID_ARG, "depth 50 is not supported");
    /* Each field is range-checked on its own, with its range in the message. */
    cfg = bl_resnet_config_default();
    cfg.width = 5000;
    CHECK_ERR(bl_resnet_new(dev, &cfg, 1, &m), BL_ERR_INVALID_ARG,
              "resnet: width 5000 is out of range (1 to 4096)");
    cfg = bl_resnet_config_default();
    cfg.num_classes = 0;
    CHECK_ERR(bl_resnet_new(dev, &cfg, 1, &m), BL_ERR_INVALID_ARG,
              "resnet: 0 classes is out of range (1 to 1048576)");
    cfg = bl_resnet_config_default();
    cfg.in_channels = 5000;
    CHECK_ERR(bl_resnet_new(dev, &cfg, 1, &m), BL_ERR_INVALID_ARG,
              "resnet: 5000 input channels is out of range (1 to 4096)");
    m = tiny(18, BL_RESNET_STEM_IMAGENET, 3);
    float xs[2 * 3 * 16 * 16];
    int64_t xshape[4] = {2, 3, 16, 16};
    bl_tensor x = bl_tensor_view(dev, xs, BL_F32, 4, xshape), logits;
    CHECK_ERR(bl_model_forward(m, &x, BL_FORWARD_EVAL, &logits), BL_ERR_INVALID_ARG, "bl_model_plan");
    CHECK_ERR(bl_model_plan(m, 2, 0, 5, false), BL_ERR_INVALID_ARG, "input 0x5 is empty");
    /* Activation sizes that no 64-bit count holds are refused, not wrapped into a small buffer. */
    CHECK_ERR(bl_model_plan(m, 2147483647, 1 << 30, 1 << 30, false), BL_ERR_INVALID_ARG,
              "model: batch 2147483647 at 1073741824x1073741824: the activations are too large");
    CHECK_OK(bl_model_plan(m, 2, 16, 16, false));
    x.shape[1] = 1;
    CHECK_ERR(bl_model_forward(m, &x, BL_FORWARD_EVAL, &logits), BL_ERR_INVALID_ARG,
              "input is f32[2,1,16,16] nchw, expected (N<=2, 3, 16, 16)");
    x.shape[1] = 3;
    CHECK_ERR(bl_model_forward(m, &x, BL_FORWARD_TRAIN, &logits), BL_ERR_INVALID_ARG, "inference only");
    bl_model_free(m);
}

int main(void) {
    fprintf(stderr, "seed %u\n", SEED);
    if (bl_device_get("cpu_ref", &dev) != BL_OK) return 1;
    RUN(test_names_match_torchvision);
    RUN(test_whole_model_gradients);
    RUN(test_folded_inference_equals_eval);
    RUN(test_bad_input);
    bl_device_release(dev);
    return bl_test_finish();
}
