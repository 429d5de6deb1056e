/* Finite-difference checks of every backward op, on each device this build can open (seeded).
 *
 * For an op y = f(x) we take the scalar L = sum(y * r) with a fixed random r, compute dL/dx
 * with the backward op (fed dy = r), and compare a sample of entries against central
 * differences. Entries where the one-sided differences disagree sit on a kink (ReLU, max-pool
 * ties) and are skipped; the test fails if too many are skipped.
 *
 * The differences are taken on the host, the ops run on the device: every tensor is allocated
 * on the device (bl_tensor_alloc, in its preferred layout) and has a host copy in logical NCHW
 * order; a perturbed entry goes up with bl_tensor_upload_nchw_f32, y and the gradients come
 * back with bl_tensor_download_f32. So the same code checks devices with their own memory
 * (xla:cpu, cuda) and host ones. Devices: cpu_ref always; cpu (oneDNN), cuda and xla:cpu when
 * they open and are not cpu_ref itself. BEAMLET_TEST_DEVICE=<name> checks that device alone
 * (CTest runs the xla:cpu checks once more per further PJRT CPU plugin that way).
 *
 * The tolerances are the same on every device: all compute in f32, and the differences divide
 * the f32 rounding of L by 2*eps on every backend alike. Worst relative error over all checks
 * (printed per check): cpu_ref 2.9e-3, cpu (oneDNN) 2.9e-3, xla:cpu 1.9e-3, against 2e-2. */
#include "bl_test.h"

#include "beamlet/devices.h"

#define SEED 20261124u
static bl_device *dev;
static bl_rng rng;

/* A tensor on the device under test and its host copy (f32, logical order). */
typedef struct ht {
    bl_tensor t;
    float *h;
    int64_t n;
} ht;

/* Random normal entries times `scale` (zeros when scale is 0), uploaded. */
static ht ht_new(float scale, int ndim, const int64_t *shape) {
    ht x = {0};
    x.n = 1;
    for (int i = 0; i < ndim; i++) x.n *= shape[i];
    x.h = malloc(sizeof(float) * (size_t)(x.n ? x.n : 1));
    BL_ASSERT(x.h);
    for (int64_t i = 0; i < x.n; i++) x.h[i] = scale != 0 ? (float)(bl_rng_normal(&rng) * scale) : 0.0f;
    CHECK_OK(bl_tensor_alloc(dev, BL_F32, ndim, shape, &x.t));
    if (ndim != 4) x.t.layout = BL_LAYOUT_NCHW;
    CHECK_OK(bl_tensor_upload_nchw_f32(&x.t, x.h));
    return x;
}
static ht ht4(float scale, int64_t n, int64_t c, int64_t h, int64_t w) {
    int64_t shape[4] = {n, c, h, w};
    return ht_new(scale, 4, shape);
}
static ht ht2(float scale, int64_t a, int64_t b) {
    int64_t shape[2] = {a, b};
    return ht_new(scale, 2, shape);
}
static ht ht1(float scale, int64_t a) { return ht_new(scale, 1, &a); }

static void ht_free(ht *x) {
    bl_tensor_release(&x->t);
    free(x->h);
    x->h = NULL;
}

/* Host copy -> device, and device -> host copy. */
static bl_status put(ht *x) { return bl_tensor_upload_nchw_f32(&x->t, x->h); }
static bl_status get(ht *x) {
    BL_TRY(bl_device_synchronize(dev));
    return bl_tensor_download_f32(&x->t, x->h);
}

static double dot(const ht *y, const ht *r) {
    double s = 0;
    for (int64_t i = 0; i < y->n; i++) s += (double)y->h[i] * r->h[i];
    return s;
}

/* The loss sum(y * r) after the forward op's status `st` (NaN, with a failed check, on error). */
static double loss_of(bl_status st, const char *op, ht *y, const ht *r) {
    if (st == BL_OK) st = get(y);
    if (st != BL_OK) {
        CHECK_MSG(st == BL_OK, "%s on %s: %s", op, bl_device_name(dev), bl_last_error());
        return NAN;
    }
    return dot(y, r);
}

typedef double (*loss_fn)(void *state);

/* Compares the analytic gradient `grad` (host) of `param` with central differences. */
static void compare(const char *what, loss_fn f, void *state, ht *param, const float *grad, float eps,
                    int samples) {
    int64_t n = param->n;
    int checked = 0, kinks = 0;
    double worst = 0.0, l0 = f(state);
    if (!isfinite(l0)) {
        CHECK_MSG(isfinite(l0), "%s: the unperturbed loss is %g", what, l0);
        return;
    }
    for (int k = 0; k < samples; k++) {
        int64_t i = samples >= n ? k % n : (int64_t)bl_rng_below(&rng, (uint64_t)n);
        if (samples >= n && k >= n) break;
        float orig = param->h[i];
        param->h[i] = orig + eps;
        CHECK_OK(put(param));
        double lp = f(state);
        param->h[i] = orig - eps;
        CHECK_OK(put(param));
        double lm = f(state);
        param->h[i] = orig;
        CHECK_OK(put(param));
        double fwd = (lp - l0) / eps, bwd = (l0 - lm) / eps, num = (lp - lm) / (2 * eps);
        if (fabs(fwd - bwd) > 0.05 * (1 + fabs(num))) {
            kinks++;
            continue;
        }
        double abs_err = fabs(num - grad[i]);
        double err = abs_err / (1e-2 + fabs(num));
        if (err > worst) worst = err;
        checked++;
        /* An absolute error under 2e-3 is below what f32 central differences resolve here. */
        CHECK_MSG(err < 2e-2 || abs_err < 2e-3, "%s[%lld] on %s: numeric %.6g analytic %.6g", what,
                  (long long)i, bl_device_name(dev), num, grad[i]);
    }
    fprintf(stderr, "  %-22s checked %3d, kinks skipped %d, worst relative error %.2e\n", what, checked,
            kinks, worst);
    CHECK_MSG(checked >= (n < 4 ? n : 4) && kinks <= checked / 4 + 1, "%s: too few checkable entries", what);
}

/* Downloads a computed gradient into its host copy, for compare(). */
static const float *grad_of(ht *g) {
    CHECK_OK(get(g));
    return g->h;
}

/* ---- convolution ---------------------------------------------------------------------- */

typedef struct conv_state {
    bl_conv2d_params p;
    ht x, w, y, r;
} conv_state;

static double conv_loss(void *s_) {
    conv_state *s = s_;
    return loss_of(bl_op_conv2d_forward(dev, &s->p, &s->x.t, &s->w.t, NULL, NULL, false, &s->y.t),
                   "conv2d_forward", &s->y, &s->r);
}

static void conv_case(int N, int C, int H, int W, int K, int R, int S, int stride, int pad) {
    conv_state s = {.p = {stride, stride, pad, pad}};
    int P = (H + 2 * pad - R) / stride + 1, Q = (W + 2 * pad - S) / stride + 1;
    s.x = ht4(1, N, C, H, W);
    s.w = ht4(0.3f, K, C, R, S);
    s.y = ht4(0, N, K, P, Q);
    s.r = ht4(1, N, K, P, Q);
    ht dx = ht4(0, N, C, H, W), dw = ht4(0, K, C, R, S);
    CHECK_OK(bl_op_conv2d_backward_data(dev, &s.p, &s.r.t, &s.w.t, &dx.t));
    CHECK_OK(bl_op_conv2d_backward_filter(dev, &s.p, &s.x.t, &s.r.t, &dw.t));
    fprintf(stderr, "  conv x(%d,%d,%d,%d) w(%d,%d,%d,%d) stride %d pad %d\n", N, C, H, W, K, C, R, S, stride,
            pad);
    compare("conv2d dx", conv_loss, &s, &s.x, grad_of(&dx), 1e-2f, 40);
    compare("conv2d dw", conv_loss, &s, &s.w, grad_of(&dw), 1e-2f, 40);
    ht_free(&s.x), ht_free(&s.w), ht_free(&s.y), ht_free(&s.r), ht_free(&dx), ht_free(&dw);
}

static void test_conv2d(void) {
    conv_case(2, 3, 7, 6, 4, 3, 3, 2, 1);
    conv_case(3, 2, 5, 5, 3, 1, 1, 1, 0);
    conv_case(1, 2, 9, 8, 2, 7, 7, 2, 3);
}

/* ---- batch norm with residual and ReLU ------------------------------------------------- */

typedef struct bn_state {
    bl_batchnorm_params p;
    ht x, gamma, beta, residual, rm, rv, sm, si, y, r;
    bool relu, use_residual;
} bn_state;

static double bn_loss(void *s_) {
    bn_state *s = s_;
    bl_status st = bl_op_batchnorm_forward_train(dev, &s->p, &s->x.t, &s->gamma.t, &s->beta.t,
                                                 s->use_residual ? &s->residual.t : NULL, s->relu, &s->rm.t,
                                                 &s->rv.t, &s->sm.t, &s->si.t, &s->y.t);
    return loss_of(st, "batchnorm_forward_train", &s->y, &s->r);
}

static void bn_case(int N, int C, int H, int W, bool relu, bool residual) {
    bn_state s = {.p = {1e-5f, 0.1f}, .relu = relu, .use_residual = residual};
    s.x = ht4(2, N, C, H, W);
    s.gamma = ht1(1, C), s.beta = ht1(0.5f, C);
    s.residual = ht4(1, N, C, H, W);
    s.rm = ht1(0, C), s.rv = ht1(0, C), s.sm = ht1(0, C), s.si = ht1(0, C);
    s.y = ht4(0, N, C, H, W);
    s.r = ht4(1, N, C, H, W);
    ht dx = ht4(0, N, C, H, W), dres = ht4(0, N, C, H, W), dg = ht1(0, C), db = ht1(0, C);
    bn_loss(&s); /* the saved statistics and y the backward op reads */
    CHECK_OK(bl_op_batchnorm_backward(dev, &s.r.t, &s.x.t, &s.y.t, relu, &s.gamma.t, &s.sm.t, &s.si.t, &dx.t,
                                      &dg.t, &db.t, residual ? &dres.t : NULL));
    fprintf(stderr, "  batchnorm (%d,%d,%d,%d) relu %d residual %d\n", N, C, H, W, relu, residual);
    compare("batchnorm dx", bn_loss, &s, &s.x, grad_of(&dx), 1e-2f, 40);
    compare("batchnorm dgamma", bn_loss, &s, &s.gamma, grad_of(&dg), 1e-2f, C);
    compare("batchnorm dbeta", bn_loss, &s, &s.beta, grad_of(&db), 1e-2f, C);
    if (residual) compare("batchnorm dresidual", bn_loss, &s, &s.residual, grad_of(&dres), 1e-2f, 40);
    ht *all[] = {&s.x,  &s.gamma, &s.beta, &s.residual, &s.rm, &s.rv, &s.sm,
                 &s.si, &s.y,     &s.r,    &dx,         &dres, &dg,   &db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) ht_free(all[i]);
}

static void test_batchnorm(void) {
    bn_case(4, 5, 3, 3, false, false);
    bn_case(3, 6, 4, 5, true, true);
    bn_case(2, 4, 3, 3, true, false);
}

/* ---- relu, add ------------------------------------------------------------------------- */

typedef struct unary_state {
    ht x, y, other, r;
    int which; /* 0 relu, 1 add */
} unary_state;

static double unary_loss(void *s_) {
    unary_state *s = s_;
    bl_status st = s->which == 0 ? bl_op_relu_forward(dev, &s->x.t, &s->y.t)
                                 : bl_op_add(dev, &s->x.t, &s->other.t, &s->y.t);
    return loss_of(st, s->which == 0 ? "relu_forward" : "add", &s->y, &s->r);
}

static void test_relu_and_add(void) {
    unary_state s = {ht4(1, 2, 3, 4, 5), ht4(0, 2, 3, 4, 5), ht4(1, 2, 3, 4, 5), ht4(1, 2, 3, 4, 5), 0};
    ht dx = ht4(0, 2, 3, 4, 5);
    unary_loss(&s);
    CHECK_OK(bl_op_relu_backward(dev, &s.r.t, &s.y.t, &dx.t));
    compare("relu dx", unary_loss, &s, &s.x, grad_of(&dx), 1e-2f, 60);
    /* add's backward is the identity on each input: dL/da = dy. */
    s.which = 1;
    compare("add da", unary_loss, &s, &s.x, s.r.h, 1e-2f, 30);
    compare("add db", unary_loss, &s, &s.other, s.r.h, 1e-2f, 30);
    ht_free(&s.x), ht_free(&s.y), ht_free(&s.other), ht_free(&s.r), ht_free(&dx);
}

/* ---- pooling --------------------------------------------------------------------------- */

typedef struct pool_state {
    bl_pool_params p;
    ht x, y, r;
    bool max;
} pool_state;

static double pool_loss(void *s_) {
    pool_state *s = s_;
    bl_status st = s->max ? bl_op_maxpool_forward(dev, &s->p, &s->x.t, &s->y.t)
                          : bl_op_global_avgpool_forward(dev, &s->x.t, &s->y.t);
    return loss_of(st, s->max ? "maxpool_forward" : "global_avgpool_forward", &s->y, &s->r);
}

static void test_pooling(void) {
    int N = 2, C = 3, H = 9, W = 8;
    pool_state s = {.p = {3, 2, 1}, .max = true};
    int P = (H + 2 - 3) / 2 + 1, Q = (W + 2 - 3) / 2 + 1;
    s.x = ht4(1, N, C, H, W);
    s.y = ht4(0, N, C, P, Q);
    s.r = ht4(1, N, C, P, Q);
    ht dx = ht4(0, N, C, H, W);
    CHECK_OK(bl_op_maxpool_backward(dev, &s.p, &s.x.t, &s.r.t, &dx.t));
    compare("maxpool dx", pool_loss, &s, &s.x, grad_of(&dx), 1e-3f, 80);
    ht_free(&s.y), ht_free(&s.r);
    s.max = false;
    s.y = ht2(0, N, C);
    s.r = ht2(1, N, C);
    CHECK_OK(bl_op_global_avgpool_backward(dev, &s.r.t, &dx.t));
    compare("global_avgpool dx", pool_loss, &s, &s.x, grad_of(&dx), 1e-2f, 40);
    ht_free(&s.x), ht_free(&s.y), ht_free(&s.r), ht_free(&dx);
}

/* ---- linear ---------------------------------------------------------------------------- */

typedef struct linear_state {
    ht x, w, b, y, r;
} linear_state;

static double linear_loss(void *s_) {
    linear_state *s = s_;
    return loss_of(bl_op_linear_forward(dev, &s->x.t, &s->w.t, &s->b.t, &s->y.t), "linear_forward", &s->y,
                   &s->r);
}

static void test_linear(void) {
    int N = 5, I = 7, O = 3;
    linear_state s = {ht2(1, N, I), ht2(0.5f, O, I), ht1(1, O), ht2(0, N, O), ht2(1, N, O)};
    ht dx = ht2(0, N, I), dw = ht2(0, O, I), db = ht1(0, O);
    CHECK_OK(bl_op_linear_backward(dev, &s.r.t, &s.x.t, &s.w.t, &dx.t, &dw.t, &db.t));
    compare("linear dx", linear_loss, &s, &s.x, grad_of(&dx), 1e-2f, N * I);
    compare("linear dw", linear_loss, &s, &s.w, grad_of(&dw), 1e-2f, O * I);
    compare("linear db", linear_loss, &s, &s.b, grad_of(&db), 1e-2f, O);
    ht_free(&s.x), ht_free(&s.w), ht_free(&s.b), ht_free(&s.y), ht_free(&s.r);
    ht_free(&dx), ht_free(&dw), ht_free(&db);
}

/* ---- softmax cross-entropy ------------------------------------------------------------- */

typedef struct xent_state {
    ht logits, loss;
    bl_tensor labels;
    float smoothing;
} xent_state;

static double xent_loss(void *s_) {
    xent_state *s = s_;
    bl_status st = bl_op_softmax_cross_entropy(dev, &s->logits.t, &s->labels, s->smoothing, &s->loss.t, NULL);
    if (st == BL_OK) st = get(&s->loss);
    CHECK_MSG(st == BL_OK, "softmax_cross_entropy on %s: %s", bl_device_name(dev), bl_last_error());
    return st == BL_OK ? s->loss.h[0] : NAN;
}

static bl_tensor labels_on_device(const int32_t *labels, int64_t n) {
    bl_tensor t;
    CHECK_OK(bl_tensor_alloc(dev, BL_I32, 1, &n, &t));
    t.layout = BL_LAYOUT_NCHW;
    CHECK_OK(bl_tensor_copy_from_host(&t, labels));
    return t;
}

static void test_softmax_cross_entropy(void) {
    int N = 6, C = 5;
    int32_t labels[6];
    xent_state s = {.logits = ht2(2, N, C), .loss = ht1(0, 1)};
    for (int i = 0; i < N; i++) labels[i] = (int32_t)bl_rng_below(&rng, C);
    s.labels = labels_on_device(labels, N);
    ht d = ht2(0, N, C);
    for (int k = 0; k < 2; k++) {
        s.smoothing = k ? 0.1f : 0.0f;
        CHECK_OK(bl_op_softmax_cross_entropy(dev, &s.logits.t, &s.labels, s.smoothing, &s.loss.t, &d.t));
        compare(k ? "xent dlogits (ls 0.1)" : "xent dlogits", xent_loss, &s, &s.logits, grad_of(&d), 1e-2f,
                N * C);
    }
    ht_free(&s.logits), ht_free(&s.loss), ht_free(&d);
    bl_tensor_release(&s.labels);
}

/* A label outside 0..classes-1 never trains silently. A backend in host memory reads the labels
 * and refuses the call, naming the example; one with its own memory (xla, cuda) must not read
 * them back (a training step runs as one program there), so the bad example's loss and gradient
 * row are NaN, which makes the batch loss NaN (the trainer stops on a non-finite loss). */
static void test_label_out_of_range(void) {
    enum {
        N = 4,
        C = 10
    };
    bool host = strcmp(bl_device_backend_name(dev), "cpu_ref") == 0 ||
                strcmp(bl_device_backend_name(dev), "onednn") == 0;
    int32_t bad[][N] = {{3, 9, 10, 0}, {-1, 0, 1, 2}};
    for (int k = 0; k < 2; k++) {
        int row = k == 0 ? 2 : 0;
        ht logits = ht2(1, N, C), loss = ht1(0, 1), d = ht2(0, N, C);
        bl_tensor labels = labels_on_device(bad[k], N);
        for (int smoothing = 0; smoothing < 2; smoothing++) {
            float ls = smoothing ? 0.1f : 0.0f;
            if (host) {
                char want[64];
                snprintf(want, sizeof want, "label %d of example %d", bad[k][row], row);
                CHECK_ERR(bl_op_softmax_cross_entropy(dev, &logits.t, &labels, ls, &loss.t, &d.t),
                          BL_ERR_INVALID_ARG, want);
                continue;
            }
            loss.h[0] = 0;
            CHECK_OK(bl_op_softmax_cross_entropy(dev, &logits.t, &labels, ls, &loss.t, &d.t));
            CHECK_OK(get(&loss));
            CHECK_OK(get(&d));
            int nan_row = 0, finite_rest = 0;
            for (int i = 0; i < N * C; i++) {
                if (i / C == row)
                    nan_row += isnan(d.h[i]) ? 1 : 0;
                else
                    finite_rest += isfinite(d.h[i]) ? 1 : 0;
            }
            fprintf(stderr,
                    "  label %d of %d classes (smoothing %.1f): loss %g, %d/%d NaN in its gradient row\n",
                    bad[k][row], C, (double)ls, (double)loss.h[0], nan_row, C);
            CHECK_MSG(isnan(loss.h[0]), "label %d with %d classes: loss %g, expected NaN", bad[k][row], C,
                      (double)loss.h[0]);
            CHECK_MSG(nan_row == C, "label %d: %d of %d gradient entries NaN in its row", bad[k][row],
                      nan_row, C);
            CHECK_MSG(finite_rest == (N - 1) * C, "label %d: other rows' gradient not finite", bad[k][row]);
            /* The loss alone (no gradient) also shows it. */
            loss.h[0] = 0;
            CHECK_OK(bl_op_softmax_cross_entropy(dev, &logits.t, &labels, ls, &loss.t, NULL));
            CHECK_OK(get(&loss));
            CHECK_MSG(isnan(loss.h[0]), "label %d, loss only: %g, expected NaN", bad[k][row],
                      (double)loss.h[0]);
        }
        /* The same logits with the label in range give a finite loss. */
        bl_tensor_release(&labels);
        int32_t good[N] = {3, 9, 9, 0};
        labels = labels_on_device(good, N);
        CHECK_OK(bl_op_softmax_cross_entropy(dev, &logits.t, &labels, 0, &loss.t, &d.t));
        CHECK_OK(get(&loss));
        CHECK_MSG(isfinite(loss.h[0]), "labels in range: loss %g", (double)loss.h[0]);
        bl_tensor_release(&labels);
        ht_free(&logits), ht_free(&loss), ht_free(&d);
    }
}

/* ---- the devices ------------------------------------------------------------------------ */

static const char *skip_reason;
static void device_skipped(void) { SKIP("%s", skip_reason); }

static void check_device(const char *name, bool allow_ref) {
    static char why[512];
    const char *only = getenv("BEAMLET_TEST_DEVICE");
    fprintf(stderr, "device %s\n", name);
    skip_reason = why;
    if (only && *only && strcmp(only, name) != 0) {
        snprintf(why, sizeof why, "BEAMLET_TEST_DEVICE=%s", only);
        RUN(device_skipped);
        return;
    }
    if (bl_device_count(name) == 0) {
        snprintf(why, sizeof why, "device %s: not in this build or no such device (bl_device_count 0)", name);
        RUN(device_skipped);
        return;
    }
    /* Present, so it must open. */
    if (bl_device_get(name, &dev) != BL_OK) {
        fprintf(stderr, "  FAIL: device %s is present but does not open: %s\n", name, bl_last_error());
        bl_test_checks_failed++;
        bl_test_cases_failed++;
        return;
    }
    if (!allow_ref && strcmp(bl_device_backend_name(dev), "cpu_ref") == 0) {
        snprintf(why, sizeof why, "device %s is the cpu_ref backend itself in this build", name);
        bl_device_release(dev);
        RUN(device_skipped);
        return;
    }
    fprintf(stderr, "  %s (%s): %s\n", name, bl_device_backend_name(dev), bl_device_description(dev));
    bl_rng_seed(&rng, SEED); /* the same draws on every device */
    double t0 = bl_time_now();
    RUN(test_conv2d);
    RUN(test_batchnorm);
    RUN(test_relu_and_add);
    RUN(test_pooling);
    RUN(test_linear);
    RUN(test_softmax_cross_entropy);
    RUN(test_label_out_of_range);
    fprintf(stderr, "device %s: %.2f s\n", name, bl_time_now() - t0);
    bl_device_release(dev);
    dev = NULL;
}

int main(void) {
    fprintf(stderr, "seed %u\n", SEED);
    check_device("cpu_ref", true);
    check_device("cpu", false);
    check_device("cuda", false);
    check_device("xla:cpu", false);
    return bl_test_finish();
}
