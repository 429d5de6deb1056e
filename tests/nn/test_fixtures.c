/* beamlet against PyTorch: fixtures written by tools/gen_fixtures.py (PyTorch 1.13) hold
 * weights, a batch, logits, the loss, every parameter gradient, and the state after 3 SGD and
 * 3 AdamW steps. Each tensor is compared by
 *     err = max |ours - torch| / max |torch|
 * against an explicit tolerance, and the worst error of every tensor is printed.
 *
 * Runs on cpu_ref (the oracle) and on every other backend present: "cpu" when it is not
 * cpu_ref, "cuda" when a GPU is visible. The full-width torchvision ResNet-18 fixture
 * (tests/fixtures/large/, not committed) is checked when it has been generated. */
#include "bl_test.h"

#include <unistd.h>

#include "beamlet/nn.h"

/* Tolerances (f32 everywhere; the differences are summation order in long reductions).
 * Measured on cpu_ref: logits ~1e-6, loss ~1e-7, gradients <= 5e-6 after ~40 layers of
 * backpropagation. After 3 optimizer steps on a batch of 4 the training dynamics amplify
 * rounding: PyTorch's own f32 result differs from its f64 result by the amount the generator
 * stores as "<opt>_torch_f32_vs_f64" (6.5e-4 for SGD, on a batch-norm shift), so the tolerance
 * there is 4x that, with 1e-4 as the floor. */
#define TOL_LOGITS 2e-5
#define TOL_LOSS 2e-6
#define TOL_GRAD 5e-5
#define TOL_STEP_FLOOR 1e-4
/* bf16 compute ("cpu" with bl_device_set_precision(BL_BF16): every convolution rounds its input
 * and weights to bf16, 8 significant bits, and accumulates in f32) against PyTorch's f32
 * logits. One convolution's output is off by ~2^-9 relative per rounded operand, and 20-36
 * convolutions deep those compound: measured max |ours - torch| / max |torch| 1.7e-3 / 1.8e-3
 * (ResNet-18 w8, eval / folded inference) and 9.7e-4 / 9.8e-4 (ResNet-34 w4), AMX Xeon. 1e-2
 * leaves five times the largest; a wrong kernel or a dropped residual or bias puts logits off
 * by 1e-1 and more. */
#define TOL_LOGITS_BF16 1e-2

static const char *fixture_dir(void) {
    const char *d = getenv("BEAMLET_FIXTURES");
    return d ? d : "tests/fixtures";
}

typedef struct fixture {
    bl_safetensors *f;
    bl_resnet_config cfg;
    int height, width, batch;
    float smoothing;
    char path[1024];
} fixture;

static double meta_num(const fixture *fx, const char *key) {
    const char *v = bl_safetensors_metadata(fx->f, key);
    if (!v) return NAN;
    if (strcmp(v, "true") == 0) return 1;
    if (strcmp(v, "false") == 0) return 0;
    return atof(v);
}

/* Opens a fixture and checks its magic and version; returns false (after SKIP-worthy
 * message) when the file does not exist. */
static bool open_fixture(const char *name, fixture *fx) {
    snprintf(fx->path, sizeof fx->path, "%s/%s", fixture_dir(), name);
    if (access(fx->path, R_OK) != 0) return false;
    bl_status s = bl_safetensors_open(fx->path, &fx->f);
    CHECK_MSG(s == BL_OK, "%s", bl_last_error());
    if (s != BL_OK) return false;
    const char *magic = bl_safetensors_metadata(fx->f, "magic"),
               *version = bl_safetensors_metadata(fx->f, "version");
    CHECK_MSG(magic && strcmp(magic, "BLFX") == 0, "%s: not a beamlet fixture (magic %s)", fx->path,
              magic ? magic : "missing");
    CHECK_MSG(version && strcmp(version, "1") == 0, "%s: fixture version %s, this test reads 1", fx->path,
              version ? version : "missing");
    fx->cfg = bl_resnet_config_default();
    fx->cfg.depth = (int)meta_num(fx, "depth");
    fx->cfg.width = (int)meta_num(fx, "width");
    fx->cfg.num_classes = (int)meta_num(fx, "classes");
    fx->cfg.in_channels = (int)meta_num(fx, "in_channels");
    fx->cfg.stem = meta_num(fx, "cifar_stem") == 1 ? BL_RESNET_STEM_CIFAR : BL_RESNET_STEM_IMAGENET;
    fx->height = (int)meta_num(fx, "height");
    fx->width = (int)meta_num(fx, "width_px");
    fx->batch = (int)meta_num(fx, "batch");
    fx->smoothing = (float)meta_num(fx, "label_smoothing");
    return true;
}

/* Compares a device tensor with the fixture tensor `name`; returns the error. */
static double compare(const fixture *fx, const char *device, const char *name, const bl_tensor *t,
                      double tol) {
    const bl_st_tensor *ref = bl_safetensors_find(fx->f, name);
    CHECK_MSG(ref != NULL, "%s: no tensor %s", fx->path, name);
    if (!ref) return INFINITY;
    int64_t n = bl_tensor_numel(t);
    float *want = malloc(sizeof(float) * (size_t)n), *got = malloc(sizeof(float) * (size_t)n);
    CHECK_OK(bl_safetensors_read_f32(fx->f, name, t->ndim, t->shape, want));
    CHECK_OK(bl_tensor_download_f32(t, got));
    double max_ref = 0, max_err = 0;
    int nonfinite = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) nonfinite++;
        max_ref = fmax(max_ref, fabs(want[i]));
        max_err = fmax(max_err, fabs((double)got[i] - want[i]));
    }
    double err = nonfinite ? INFINITY : max_err / fmax(max_ref, 1e-12);
    fprintf(stderr, "    %-8s %-48s err %.2e (tol %.0e)\n", device, name, err, tol);
    CHECK_MSG(err <= tol, "%s on %s: %s: error %.3g over tolerance %.1g", fx->path, device, name, err, tol);
    free(want);
    free(got);
    return err;
}

static void upload_input(const fixture *fx, bl_device *dev, bl_tensor *x) {
    int64_t shape[4] = {fx->batch, fx->cfg.in_channels, fx->height, fx->width};
    CHECK_OK(bl_tensor_alloc(dev, BL_F32, 4, shape, x));
    float *host = malloc(sizeof(float) * (size_t)bl_tensor_numel(x));
    CHECK_OK(bl_safetensors_read_f32(fx->f, "input", 4, shape, host));
    CHECK_OK(bl_tensor_upload_nchw_f32(x, host));
    free(host);
}

/* Worst error over a family of tensors ("grad/", "sgd3/", ...), for the summary line. */
typedef struct worst {
    double err;
    char name[160];
} worst;

static void track(worst *w, double err, const char *name) {
    if (err > w->err) {
        w->err = err;
        snprintf(w->name, sizeof w->name, "%s", name);
    }
}

static void run_train_fixture(const char *device) {
    fixture fx;
    if (!open_fixture("resnet18_cifar_w8_train.safetensors", &fx)) SKIP("fixture missing: %s", fx.path);
    bl_device *dev;
    if (bl_device_get(device, &dev) != BL_OK) {
        bl_safetensors_close(fx.f);
        SKIP("%s", bl_last_error());
    }
    bl_model *m = NULL;
    CHECK_OK(bl_resnet_new(dev, &fx.cfg, 0, &m));
    CHECK_OK(bl_model_plan(m, fx.batch, fx.height, fx.width, true));
    CHECK_OK(bl_model_load_state(m, fx.f, "param/"));
    bl_tensor x, labels, loss, logits;
    upload_input(&fx, dev, &x);
    int64_t nb = fx.batch, one = 1;
    CHECK_OK(bl_tensor_alloc(dev, BL_I32, 1, &nb, &labels));
    CHECK_OK(bl_tensor_alloc(dev, BL_F32, 1, &one, &loss));
    const bl_st_tensor *lt = bl_safetensors_find(fx.f, "labels");
    CHECK(lt && lt->dtype == BL_I32);
    int32_t host_labels[64];
    memcpy(host_labels, lt->data, sizeof(int32_t) * (size_t)fx.batch);
    CHECK_OK(bl_tensor_copy_from_host(&labels, host_labels));

    fprintf(stderr, "  %s: train fixture %s\n", device, fx.path);
    CHECK_OK(bl_model_forward(m, &x, BL_FORWARD_TRAIN, &logits));
    double e_logits = compare(&fx, device, "logits", &logits, TOL_LOGITS);
    CHECK_OK(bl_model_backward(m, &labels, fx.smoothing, &loss));
    double e_loss = compare(&fx, device, "loss", &loss, TOL_LOSS);
    worst grads = {0, ""}, sgd = {0, ""}, adamw = {0, ""};
    for (int i = 0; i < bl_model_param_count(m); i++) {
        const bl_param_info *p = bl_model_param(m, i);
        if (p->kind != BL_PARAM_WEIGHT) continue;
        char name[160];
        snprintf(name, sizeof name, "grad/%s", p->name);
        track(&grads, compare(&fx, device, name, &p->grad, TOL_GRAD), name);
    }
    /* 3 optimizer steps on the same batch from the same initial weights, as in PyTorch. */
    for (int k = 0; k < 2; k++) {
        CHECK_OK(bl_model_load_state(m, fx.f, "param/"));
        bl_optimizer_config oc =
            k == 0 ? bl_optimizer_config_sgd((float)meta_num(&fx, "sgd_lr"), (float)meta_num(&fx, "momentum"),
                                             (float)meta_num(&fx, "weight_decay"),
                                             meta_num(&fx, "nesterov") == 1)
                   : bl_optimizer_config_adamw((float)meta_num(&fx, "adamw_lr"),
                                               (float)meta_num(&fx, "adamw_weight_decay"));
        if (k == 1) oc.eps = (float)meta_num(&fx, "adamw_eps");
        const char *prefix = k == 0 ? "sgd3/" : "adamw3/";
        char key[64];
        snprintf(key, sizeof key, "%s_torch_f32_vs_f64", k == 0 ? "sgd3" : "adamw3");
        /* XLA: 8x. Its first step matches as closely as every backend's (gradients 2e-6), but
         * three steps amplify summation-order differences through ReLU masks near zero (cpu vs
         * cpu_ref: 3e-5 apart after 2 steps, 3e-3 after 3); XLA's orders are furthest from
         * PyTorch's oneDNN ones (measured 4.2e-3 on sgd3/layer2.1.bn1.bias against a 3e-3 4x
         * bound; AdamW: 4.9e-4, closer than cpu_ref). */
        double factor = strncmp(device, "xla:", 4) == 0 ? 8 : 4;
        double tol_step = fmax(TOL_STEP_FLOOR, factor * meta_num(&fx, key));
        fprintf(stderr, "  %s: PyTorch f32 vs f64 after 3 steps %.2e, tolerance %.2e\n", prefix,
                meta_num(&fx, key), tol_step);
        bl_optimizer *opt;
        CHECK_OK(bl_optimizer_new(m, &oc, &opt));
        /* The fixture's own tensors as the step's batch (views: nothing is released here). */
        bl_train_batch batch = {x, labels, loss, (int)x.shape[0]};
        for (int step = 0; step < 3; step++) CHECK_OK(bl_train_step(m, opt, &batch, fx.smoothing, oc.lr));
        for (int i = 0; i < bl_model_param_count(m); i++) {
            const bl_param_info *p = bl_model_param(m, i);
            char name[160];
            snprintf(name, sizeof name, "%s%s", prefix, p->name);
            track(k == 0 ? &sgd : &adamw, compare(&fx, device, name, &p->value, tol_step), name);
        }
        /* num_batches_tracked: the initial count plus 3 training forwards. */
        char tracked[64];
        snprintf(tracked, sizeof tracked, "%sbn1.num_batches_tracked", prefix);
        const bl_st_tensor *nbt = bl_safetensors_find(fx.f, tracked);
        int64_t want_tracked = -1;
        if (nbt) memcpy(&want_tracked, nbt->data, sizeof want_tracked);
        CHECK_MSG(bl_model_batches_tracked(m) == want_tracked, "num_batches_tracked %lld, torch %lld",
                  (long long)bl_model_batches_tracked(m), (long long)want_tracked);
        bl_optimizer_free(opt);
    }
    fprintf(stderr,
            "  %s summary: logits %.2e, loss %.2e, worst gradient %.2e (%s), worst after 3 SGD steps "
            "%.2e (%s), after 3 AdamW steps %.2e (%s)\n",
            device, e_logits, e_loss, grads.err, grads.name, sgd.err, sgd.name, adamw.err, adamw.name);
    bl_tensor_release(&x);
    bl_tensor_release(&labels);
    bl_tensor_release(&loss);
    bl_model_free(m);
    bl_device_release(dev);
    bl_safetensors_close(fx.f);
}

static void run_eval_fixture_in(const char *device, const char *file, bl_dtype precision) {
    fixture fx;
    if (!open_fixture(file, &fx))
        SKIP("fixture missing: %s (generate it with tools/gen_fixtures.py --large)", fx.path);
    bl_device *dev;
    bl_device_request req = {device, -1, false, precision};
    if (bl_device_open(&req, &dev) != BL_OK) {
        bl_safetensors_close(fx.f);
        SKIP("%s", bl_last_error());
    }
    double tol = precision == BL_BF16 ? TOL_LOGITS_BF16 : TOL_LOGITS;
    bl_model *m = NULL;
    CHECK_OK(bl_resnet_new(dev, &fx.cfg, 0, &m));
    CHECK_OK(bl_model_plan(m, fx.batch, fx.height, fx.width, false));
    CHECK_OK(bl_model_load_state(m, fx.f, "param/"));
    bl_tensor x, logits;
    upload_input(&fx, dev, &x);
    fprintf(stderr, "  %s (%s): eval fixture %s\n", device, bl_dtype_name(precision), fx.path);
    CHECK_OK(bl_model_forward(m, &x, BL_FORWARD_EVAL, &logits));
    double e_eval = compare(&fx, device, "logits", &logits, tol);
    CHECK_OK(bl_model_forward(m, &x, BL_FORWARD_INFER, &logits));
    double e_infer = compare(&fx, device, "logits", &logits, tol);
    fprintf(stderr, "  %s (%s) summary: eval logits %.2e, folded-inference logits %.2e\n", device,
            bl_dtype_name(precision), e_eval, e_infer);
    bl_tensor_release(&x);
    bl_model_free(m);
    bl_device_release(dev);
    bl_safetensors_close(fx.f);
}

static void run_eval_fixture(const char *device, const char *file) {
    run_eval_fixture_in(device, file, BL_F32);
}

/* Devices other than cpu_ref run only when they are a different backend. */
static bool other_backend(const char *device) {
    bl_device *dev;
    if (bl_device_get(device, &dev) != BL_OK) return false;
    bool other = strcmp(bl_device_backend_name(dev), "cpu_ref") != 0;
    bl_device_release(dev);
    return other;
}

static const char *devices[] = {"cpu_ref", "cpu", "cuda", "xla:cpu"};
static const char *current;

static void test_train_fixture(void) { run_train_fixture(current); }
static void test_resnet18_eval_fixture(void) {
    run_eval_fixture(current, "resnet18_imagenet_w8_eval.safetensors");
}
static void test_resnet34_eval_fixture(void) {
    run_eval_fixture(current, "resnet34_imagenet_w4_eval.safetensors");
}
static void test_torchvision_resnet18_full_width(void) {
    run_eval_fixture(current, "large/resnet18_torchvision_eval.safetensors");
}

/* bf16 compute on "cpu" (oneDNN on a CPU with AVX512-BF16 or AMX; elsewhere the open is refused
 * and these skip, saying why). */
static void test_resnet18_eval_fixture_bf16(void) {
    run_eval_fixture_in("cpu", "resnet18_imagenet_w8_eval.safetensors", BL_BF16);
}
static void test_resnet34_eval_fixture_bf16(void) {
    run_eval_fixture_in("cpu", "resnet34_imagenet_w4_eval.safetensors", BL_BF16);
}

/* A torchvision state_dict with a wrong shape or a stray tensor is refused by name. */
static void test_strict_loading(void) {
    fixture fx;
    if (!open_fixture("resnet18_imagenet_w8_eval.safetensors", &fx)) SKIP("fixture missing: %s", fx.path);
    bl_device *dev;
    CHECK_OK(bl_device_get("cpu_ref", &dev));
    bl_model *m;
    bl_resnet_config wrong = fx.cfg;
    wrong.width = 4;
    CHECK_OK(bl_resnet_new(dev, &wrong, 0, &m));
    CHECK_ERR(bl_model_load_state(m, fx.f, "param/"), BL_ERR_FORMAT,
              "tensor 'param/conv1.weight': shape [8,3,7,7] does not match the model's [4,3,7,7]");
    bl_model_free(m);
    wrong = fx.cfg;
    wrong.depth = 34;
    CHECK_OK(bl_resnet_new(dev, &wrong, 0, &m));
    CHECK_ERR(bl_model_load_state(m, fx.f, "param/"), BL_ERR_FORMAT,
              "missing tensor 'param/layer1.2.conv1.weight'");
    bl_model_free(m);
    bl_device_release(dev);
    bl_safetensors_close(fx.f);
}

int main(void) {
    RUN(test_strict_loading);
    /* BEAMLET_TEST_DEVICE: one device only (CTest runs xla:cpu once per PJRT plugin). */
    const char *only = getenv("BEAMLET_TEST_DEVICE");
    for (size_t i = 0; i < sizeof devices / sizeof devices[0]; i++) {
        current = devices[i];
        if (only && *only && strcmp(only, current) != 0) continue;
        if (i > 0 && !other_backend(current)) {
            fprintf(stderr, "device %s: skipped (absent, or the cpu_ref backend itself in this build)\n",
                    current);
            continue;
        }
        fprintf(stderr, "device %s\n", current);
        RUN(test_train_fixture);
        RUN(test_resnet18_eval_fixture);
        RUN(test_resnet34_eval_fixture);
        RUN(test_torchvision_resnet18_full_width);
    }
    fprintf(stderr, "device cpu, bf16 compute\n");
    RUN(test_resnet18_eval_fixture_bf16);
    RUN(test_resnet34_eval_fixture_bf16);
    return bl_test_finish();
}
