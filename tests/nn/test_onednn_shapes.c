/* The shape matrix of the oneDNN "cpu" backend: ResNets at widths 1-8 (odd channel counts in
 * every stage), one and three input channels, batches of 1-3, odd and even image sizes, both
 * stems, ResNet-34 at the width whose sweep trial hung, and width 16 for the Winograd paths and
 * the jit_1x1 backward-weights kernel where the backend keeps it (16 input channels). Each
 * shape runs two training steps (the first at learning rate 0, so the second repeats it on the
 * cached primitives) and folded-BN inference on "cpu" at 1, 2 and 3 threads, against the same
 * model on cpu_ref: logits, loss, every gradient, every parameter and running statistic
 * afterwards, and the inference logits.
 *
 * Widths below 16 with even image sizes are where oneDNN 2.6.3's jit_1x1 backward-weights
 * kernel overran its scratchpad (conv.c): such errors show up as crashes, hangs or wrong
 * gradients only sometimes, so CTest runs this program three times: natively with guard pages
 * on every backend buffer (BEAMLET_GUARD_PAGES=1; AVX-512 kernels on this machine), the same
 * with oneDNN capped at AVX2 (DNNL_MAX_CPU_ISA=AVX2), and under valgrind memcheck (which hides
 * AVX-512, so there too oneDNN runs its AVX2 kernels). With the workaround off each of the
 * three fails. The shapes are small so that the valgrind run takes a few minutes on two cores.
 * Skips when "cpu" is cpu_ref in this build. */
#include "bl_test.h"

#include "beamlet/cpu.h"
#include "beamlet/devices.h"
#include "beamlet/nn.h"

#define SEED 7u

typedef struct shape_case {
    int depth, width, in_channels, batch, hw;
    bl_resnet_stem stem;
} shape_case;

/* Odd image sizes, and even ones: only where a strided 1x1 convolution's input is exactly
 * twice its output does oneDNN take the reduce-to-unit-stride path whose workspace it overran
 * (CIFAR stem at 10, 12, 16; ImageNet stem at 40 reaches layer2 at 10x10). Every case ends in
 * maps of at least 2x2: smaller would leave a batch of 1 a single value per channel in the last
 * batch norms, whose variance is then zero (a degenerate model, not a backend test). */
static const shape_case CASES[] = {
    {18, 1, 1, 1, 9, BL_RESNET_STEM_CIFAR},  {18, 2, 3, 3, 10, BL_RESNET_STEM_CIFAR},
    {18, 3, 1, 2, 13, BL_RESNET_STEM_CIFAR}, {18, 4, 3, 1, 16, BL_RESNET_STEM_CIFAR},
    {18, 5, 3, 3, 11, BL_RESNET_STEM_CIFAR}, {18, 6, 1, 1, 40, BL_RESNET_STEM_IMAGENET},
    {18, 7, 3, 2, 12, BL_RESNET_STEM_CIFAR}, {18, 8, 3, 1, 35, BL_RESNET_STEM_IMAGENET},
    {34, 4, 1, 2, 10, BL_RESNET_STEM_CIFAR}, {18, 16, 3, 2, 16, BL_RESNET_STEM_CIFAR},
};
#define NCASES ((int)(sizeof CASES / sizeof CASES[0]))
#define NUM_CLASSES 10

/* What one device computed, every tensor downloaded in logical (NCHW / OIHW) order, each in
 * a group of like tensors ("step 1 gradients") whose scale judges its errors. */
typedef struct outcome {
    int ntensors;
    char **names;        /* "step 1 gradients: layer1.0.conv1.weight" */
    const char **groups; /* static strings */
    int64_t *offsets;    /* ntensors + 1 */
    float *values;
} outcome;

static void collect(outcome *o, const char *group, const char *name, const bl_tensor *t, int64_t *cap) {
    int64_t n = bl_tensor_numel(t);
    int64_t at = o->offsets[o->ntensors];
    if (at + n > *cap) {
        *cap = 2 * (at + n);
        o->values = realloc(o->values, sizeof(float) * (size_t)*cap);
    }
    o->names = realloc(o->names, sizeof(char *) * (size_t)(o->ntensors + 1));
    o->groups = realloc(o->groups, sizeof(char *) * (size_t)(o->ntensors + 1));
    o->offsets = realloc(o->offsets, sizeof(int64_t) * (size_t)(o->ntensors + 2));
    /* A copy: the model, and with it the parameter names, is freed before the comparison. */
    size_t len = strlen(group) + strlen(name) + 3;
    o->names[o->ntensors] = malloc(len);
    snprintf(o->names[o->ntensors], len, "%s: %s", group, name);
    o->groups[o->ntensors] = group;
    CHECK_OK(t->ndim == 1 && t->dtype == BL_F32 ? bl_tensor_copy_to_host(t, o->values + at)
                                                : bl_tensor_download_f32(t, o->values + at));
    o->ntensors++;
    o->offsets[o->ntensors] = at + n;
}

static void outcome_free(outcome *o) {
    for (int t = 0; t < o->ntensors; t++) free(o->names[t]);
    free(o->names);
    free(o->groups);
    free(o->offsets);
    free(o->values);
}

static const char *STEP_GROUPS[2][3] = {{"step 1 logits", "step 1 loss", "step 1 gradients"},
                                        {"step 2 logits", "step 2 loss", "step 2 gradients"}};

/* One training step (forward, loss, backward, SGD update at `lr`), keeping logits, loss and
 * gradients. */
static void step(bl_model *m, bl_optimizer *opt, const bl_tensor *x, const bl_tensor *labels, bl_tensor *loss,
                 outcome *o, int64_t *cap, int index, float lr) {
    const char **g = STEP_GROUPS[index];
    bl_tensor logits;
    CHECK_OK(bl_model_forward(m, x, BL_FORWARD_TRAIN, &logits));
    collect(o, g[0], "", &logits, cap);
    CHECK_OK(bl_model_backward(m, labels, 0.0f, loss));
    collect(o, g[1], "", loss, cap);
    for (int i = 0; i < bl_model_param_count(m); i++) {
        const bl_param_info *p = bl_model_param(m, i);
        if (p->kind == BL_PARAM_WEIGHT) collect(o, g[2], p->name, &p->grad, cap);
    }
    CHECK_OK(bl_optimizer_step(opt, lr));
}

/* Builds the case's model on dev from SEED, trains two steps, runs inference. */
static void run_case(bl_device *dev, const shape_case *sc, outcome *o) {
    memset(o, 0, sizeof *o);
    o->offsets = calloc(1, sizeof(int64_t));
    int64_t cap = 0;
    bl_resnet_config cfg = bl_resnet_config_default();
    cfg.depth = sc->depth;
    cfg.width = sc->width;
    cfg.in_channels = sc->in_channels;
    cfg.stem = sc->stem;
    cfg.num_classes = NUM_CLASSES;
    bl_model *m = NULL;
    CHECK_OK(bl_resnet_new(dev, &cfg, SEED, &m));
    if (!m) return;
    CHECK_OK(bl_model_plan(m, sc->batch, sc->hw, sc->hw, true));
    int64_t xs[4] = {sc->batch, sc->in_channels, sc->hw, sc->hw}, nb = sc->batch, one = 1;
    int64_t nx = xs[0] * xs[1] * xs[2] * xs[3];
    float *hx = malloc(sizeof(float) * (size_t)nx);
    bl_rng rng;
    bl_rng_seed(&rng, SEED + (uint64_t)sc->width);
    for (int64_t i = 0; i < nx; i++) hx[i] = (float)bl_rng_normal(&rng);
    int32_t labels[3];
    for (int i = 0; i < sc->batch; i++) labels[i] = (3 * i + sc->width) % NUM_CLASSES;
    bl_tensor x, lab, loss;
    CHECK_OK(bl_tensor_alloc(dev, BL_F32, 4, xs, &x));
    CHECK_OK(bl_tensor_upload_nchw_f32(&x, hx));
    CHECK_OK(bl_tensor_alloc(dev, BL_I32, 1, &nb, &lab));
    CHECK_OK(bl_tensor_copy_from_host(&lab, labels));
    CHECK_OK(bl_tensor_alloc(dev, BL_F32, 1, &one, &loss));
    bl_optimizer_config oc = bl_optimizer_config_sgd(0.01f, 0.9f, 5e-4f, true);
    bl_optimizer *opt = NULL;
    CHECK_OK(bl_optimizer_new(m, &oc, &opt));
    if (opt) {
        /* Step 1 leaves the weights as they were (learning rate 0), so step 2 repeats its
         * computation on the primitives step 1 built; only step 2 updates the weights. */
        step(m, opt, &x, &lab, &loss, o, &cap, 0, 0.0f);
        step(m, opt, &x, &lab, &loss, o, &cap, 1, 0.1f);
        for (int i = 0; i < bl_model_param_count(m); i++) {
            const bl_param_info *p = bl_model_param(m, i);
            collect(o, "parameters and statistics after 2 steps", p->name, &p->value, &cap);
        }
        bl_tensor logits;
        CHECK_OK(bl_model_forward(m, &x, BL_FORWARD_INFER, &logits));
        collect(o, "folded-BN inference logits", "", &logits, &cap);
    }
    bl_optimizer_free(opt);
    bl_tensor_release(&x), bl_tensor_release(&lab), bl_tensor_release(&loss);
    bl_model_free(m);
    free(hx);
}

/* Root mean square of tensors [t0, t1) of o. */
static double rms(const outcome *o, int t0, int t1) {
    double sum = 0;
    for (int64_t i = o->offsets[t0]; i < o->offsets[t1]; i++) sum += (double)o->values[i] * o->values[i];
    int64_t n = o->offsets[t1] - o->offsets[t0];
    return n ? sqrt(sum / (double)n) : 0;
}

/* Each tensor's largest difference from the reference, relative to the larger of its own scale
 * and its group's (root mean squares of the reference); returns the worst. The group's scale
 * is the floor because some gradients are nearly zero by construction: a batch norm's scale
 * gradient sums dy * x_hat, and x_hat sums to zero over the batch, so at batch 1 with a nearly
 * uniform dy it cancels to ~1e-5 of its terms, and its own relative error is rounding noise
 * amplified by that cancellation. A wrong kernel or a stray write still shows: it puts a
 * tensor off by about its own size. */
static double worst_error(const outcome *got, const outcome *want, const char **where) {
    bool verbose = getenv("BEAMLET_TEST_VERBOSE") != NULL;
    double worst = 0;
    *where = "";
    for (int t = 0; t < want->ntensors; t++) {
        int g0 = t, g1 = t + 1;
        while (g0 > 0 && want->groups[g0 - 1] == want->groups[t]) g0--;
        while (g1 < want->ntensors && want->groups[g1] == want->groups[t]) g1++;
        double own = rms(want, t, t + 1), group = rms(want, g0, g1), scale = own > group ? own : group;
        double diff = 0;
        for (int64_t i = want->offsets[t]; i < want->offsets[t + 1]; i++) {
            double d = fabs((double)got->values[i] - want->values[i]);
            if (!(d <= diff)) diff = d; /* NaN and Inf count as the worst */
        }
        double e = scale > 0 ? diff / scale : diff;
        if (verbose)
            fprintf(stderr, "    %-70s error %.1e (rms %.1e, group rms %.1e)\n", want->names[t], e, own,
                    group);
        if (!(e <= worst)) worst = e, *where = want->names[t];
    }
    return worst;
}

/* Step 2 repeats step 1's computation (see run_case): on one device with one thread count its
 * logits, loss and gradients must come out bit for bit the same, since every kernel here is
 * deterministic. A stray write into a buffer between the two steps, or a cached primitive that
 * reads memory it does not own, breaks that. */
static void check_repeat(const outcome *o, const char *device, int threads) {
    int k = 0;
    while (k < o->ntensors && strncmp(o->groups[k], "step 1", 6) == 0) k++;
    for (int t = 0; t < k && t + k < o->ntensors; t++) {
        int64_t n = o->offsets[t + 1] - o->offsets[t];
        bool same =
            o->offsets[t + k + 1] - o->offsets[t + k] == n &&
            memcmp(o->values + o->offsets[t], o->values + o->offsets[t + k], sizeof(float) * (size_t)n) == 0;
        CHECK_MSG(same, "%s, %d threads: %s differs when step 2 repeats it", device, threads, o->names[t]);
    }
}

/* These shapes are ill-conditioned on purpose (batch norms over as few as 4 values amplify
 * summation-order differences), so f32 results differ in the 4th digit: measured worst errors
 * against cpu_ref are 1e-5 to 4e-4 (printed below for every shape), and oneDNN itself at 1
 * against 3 threads differs by up to 3e-4 in the same measure. 5e-3 is ten times that; a wrong
 * kernel or a stray write puts a tensor off by about its own size (error ~1). The bit-for-bit
 * repeat check above is the sharp one. */
#define TOLERANCE 5e-3

static void test_shape_matrix(void) {
#ifndef BEAMLET_HAVE_ONEDNN
    SKIP("this build has no oneDNN backend");
#else
    bl_device *dev = NULL, *ref = NULL;
    CHECK_OK(bl_device_get("cpu", &dev));
    if (!dev || strcmp(bl_device_backend_name(dev), "onednn") != 0) {
        if (dev) bl_device_release(dev);
        SKIP("\"cpu\" is not the oneDNN backend in this build");
    }
    CHECK_OK(bl_device_get("cpu_ref", &ref));
    fprintf(stderr, "  %s; guard pages %s\n", bl_device_description(dev),
            getenv("BEAMLET_GUARD_PAGES") ? getenv("BEAMLET_GUARD_PAGES") : "off");
    for (int c = 0; c < NCASES; c++) {
        const shape_case *sc = &CASES[c];
        outcome want;
        CHECK_OK(bl_cpu_set_num_threads(2));
        run_case(ref, sc, &want);
        check_repeat(&want, "cpu_ref", 2);
        for (int threads = 1; threads <= 3; threads++) {
            CHECK_OK(bl_cpu_set_num_threads(threads));
            outcome got;
            double t0 = bl_time_now();
            run_case(dev, sc, &got);
            double seconds = bl_time_now() - t0;
            check_repeat(&got, "cpu", threads);
            const char *where;
            double e = got.ntensors == want.ntensors ? worst_error(&got, &want, &where) : INFINITY;
            if (got.ntensors != want.ntensors) where = "(tensors missing)";
            fprintf(stderr,
                    "  resnet%d width %d, %d channel%s, batch %d, %dx%d %s stem, %d thread%s: worst error "
                    "%.1e (%s), %.1f s\n",
                    sc->depth, sc->width, sc->in_channels, sc->in_channels > 1 ? "s" : "", sc->batch, sc->hw,
                    sc->hw, sc->stem == BL_RESNET_STEM_CIFAR ? "CIFAR" : "ImageNet", threads,
                    threads > 1 ? "s" : "", e, where, seconds);
            CHECK_MSG(e <= TOLERANCE, "resnet%d width %d, %d threads: %s error %.3g against cpu_ref",
                      sc->depth, sc->width, threads, where, e);
            outcome_free(&got);
        }
        outcome_free(&want);
    }
    CHECK_OK(bl_cpu_set_num_threads(0));
    bl_device_release(ref);
    bl_device_release(dev);
#endif
}

/* Whether oneDNN may use bf16 kernels here: the CPU has AVX512-BF16 (AMX CPUs have it too) and
 * no ISA cap below it is set (the AVX2 run sets DNNL_MAX_CPU_ISA; valgrind's CPU reports no
 * AVX-512 at all). */
static bool bf16_expected(void) {
    const char *cap = getenv("DNNL_MAX_CPU_ISA");
    if (!cap) cap = getenv("ONEDNN_MAX_CPU_ISA");
    bool capped = cap && strstr(cap, "BF16") == NULL && strstr(cap, "AMX") == NULL && strcmp(cap, "ALL") != 0;
    return __builtin_cpu_supports("avx512bf16") && !capped;
}

/* bf16 compute over the same shapes (odd channel counts, width 1, batch 1, both stems): folded-BN
 * inference logits of a fresh model on "cpu" in bf16 against cpu_ref in f32, by the same worst
 * error as above. Measured 4e-3..1.6e-2 (these random-init models are ill-conditioned, see
 * TOLERANCE; the trained fixtures measure 1e-3..2e-3); 5e-2 leaves three times the largest,
 * and a wrong kernel still puts logits off by ~1. Where bf16 is not to be had (no
 * AVX512-BF16, the AVX2 cap, valgrind), checks that the device refuses it with the reason. */
#define TOLERANCE_BF16 5e-2

static void test_bf16_inference_shapes(void) {
#ifndef BEAMLET_HAVE_ONEDNN
    SKIP("this build has no oneDNN backend");
#else
    bl_device *dev = NULL, *ref = NULL;
    bl_device_request req = {"cpu", -1, false, BL_BF16};
    bl_status s = bl_device_open(&req, &dev);
    if (!bf16_expected()) {
        CHECK_ERR(s, BL_ERR_UNSUPPORTED, "--precision=bf16 needs a CPU with AVX512-BF16 or AMX");
        SKIP("no bf16 kernels here: refused as it should be");
    }
    CHECK_OK(s);
    if (!dev) return;
    CHECK_OK(bl_device_get("cpu_ref", &ref));
    CHECK_OK(bl_cpu_set_num_threads(2));
    for (int c = 0; c < NCASES; c++) {
        const shape_case *sc = &CASES[c];
        bl_resnet_config cfg = bl_resnet_config_default();
        cfg.depth = sc->depth, cfg.width = sc->width, cfg.in_channels = sc->in_channels;
        cfg.stem = sc->stem, cfg.num_classes = NUM_CLASSES;
        int64_t xs[4] = {sc->batch, sc->in_channels, sc->hw, sc->hw}, nx = xs[0] * xs[1] * xs[2] * xs[3];
        float *hx = malloc(sizeof(float) * (size_t)nx);
        bl_rng rng;
        bl_rng_seed(&rng, SEED + (uint64_t)sc->width);
        for (int64_t i = 0; i < nx; i++) hx[i] = (float)bl_rng_normal(&rng);
        outcome o[2];
        bl_device *devs[2] = {ref, dev};
        for (int d = 0; d < 2; d++) {
            memset(&o[d], 0, sizeof o[d]);
            o[d].offsets = calloc(1, sizeof(int64_t));
            int64_t cap = 0;
            bl_model *m = NULL;
            bl_tensor x, logits;
            CHECK_OK(bl_resnet_new(devs[d], &cfg, SEED, &m));
            if (!m) continue;
            CHECK_OK(bl_model_plan(m, sc->batch, sc->hw, sc->hw, false));
            CHECK_OK(bl_tensor_alloc(devs[d], BL_F32, 4, xs, &x));
            CHECK_OK(bl_tensor_upload_nchw_f32(&x, hx));
            CHECK_OK(bl_model_forward(m, &x, BL_FORWARD_INFER, &logits));
            collect(&o[d], "folded-BN inference logits", "", &logits, &cap);
            bl_tensor_release(&x);
            bl_model_free(m);
        }
        const char *where;
        double e = o[1].ntensors == o[0].ntensors && o[0].ntensors > 0 ? worst_error(&o[1], &o[0], &where)
                                                                       : INFINITY;
        fprintf(stderr, "  bf16: resnet%d width %d, %d channel%s, batch %d, %dx%d: worst error %.1e\n",
                sc->depth, sc->width, sc->in_channels, sc->in_channels > 1 ? "s" : "", sc->batch, sc->hw,
                sc->hw, e);
        CHECK_MSG(e <= TOLERANCE_BF16, "bf16 resnet%d width %d: logits error %.3g against cpu_ref f32",
                  sc->depth, sc->width, e);
        outcome_free(&o[0]);
        outcome_free(&o[1]);
        free(hx);
    }
    CHECK_OK(bl_cpu_set_num_threads(0));
    bl_device_release(ref);
    bl_device_release(dev);
#endif
}

int main(void) {
    fprintf(stderr, "seed %u\n", SEED);
    RUN(test_shape_matrix);
    RUN(test_bf16_inference_shapes);
    return bl_test_finish();
}
