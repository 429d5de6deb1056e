/* Finite-difference checks of every backward op on the reference backend (seeded).
 *
 * For an op y = f(x) we take the scalar L = sum(y * r) with a fixed random r, compute dL/dx
 * with the backward op (fed dy = r), and compare a sample of entries against central
 * differences. Entries where the one-sided differences disagree sit on a kink (ReLU, max-pool
 * ties) and are skipped; the test fails if too many are skipped. */
#include "bl_test.h"

#include "beamlet/devices.h"

#define SEED 20261124u
static bl_device *dev;
static bl_rng rng;

static float *randn(int64_t n, float scale) {
    float *p = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = (float)(bl_rng_normal(&rng) * scale);
    return p;
}

static bl_tensor T4(float *data, int64_t n, int64_t c, int64_t h, int64_t w) {
    return bl_tensor_view4(dev, data, BL_F32, BL_LAYOUT_NCHW, n, c, h, w);
}
static bl_tensor T(float *data, int ndim, int64_t a, int64_t b) {
    int64_t shape[2] = {a, b};
    return bl_tensor_view(dev, data, BL_F32, ndim, shape);
}

typedef double (*loss_fn)(void *state);

/* Compares analytic gradient `grad` of `param` (n entries) with central differences. */
static void compare(const char *what, loss_fn f, void *state, float *param, const float *grad, int64_t n,
                    float eps, int samples) {
    int checked = 0, kinks = 0;
    double worst = 0.0;
    for (int k = 0; k < samples; k++) {
        int64_t i = samples >= n ? k % n : (int64_t)bl_rng_below(&rng, (uint64_t)n);
        if (samples >= n && k >= n) break;
        float orig = param[i];
        double l0 = f(state);
        param[i] = orig + eps;
        double lp = f(state);
        param[i] = orig - eps;
        double lm = f(state);
        param[i] = orig;
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
        CHECK_MSG(err < 2e-2 || abs_err < 2e-3, "%s[%lld]: numeric %.6g analytic %.6g", what, (long long)i,
                  num, grad[i]);
    }
    fprintf(stderr, "  %-22s checked %3d, kinks skipped %d, worst relative error %.2e\n", what, checked,
            kinks, worst);
    CHECK_MSG(checked >= (n < 4 ? n : 4) && kinks <= checked / 4 + 1, "%s: too few checkable entries", what);
}

static double dot(const float *y, const float *r, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)y[i] * r[i];
    return s;
}

/* ---- convolution ---------------------------------------------------------------------- */

typedef struct conv_state {
    bl_conv2d_params p;
    bl_tensor x, w, y;
    float *r;
} conv_state;

static double conv_loss(void *s_) {
    conv_state *s = s_;
    bl_status st = bl_op_conv2d_forward(dev, &s->p, &s->x, &s->w, NULL, NULL, false, &s->y);
    BL_ASSERT(st == BL_OK);
    return dot(s->y.data, s->r, bl_tensor_numel(&s->y));
}

static void conv_case(int N, int C, int H, int W, int K, int R, int S, int stride, int pad) {
    conv_state s = {.p = {stride, stride, pad, pad}};
    int P = (H + 2 * pad - R) / stride + 1, Q = (W + 2 * pad - S) / stride + 1;
    float *x = randn(N * C * H * W, 1), *w = randn(K * C * R * S, 0.3f);
    float *y = malloc(sizeof(float) * N * K * P * Q), *r = randn(N * K * P * Q, 1);
    float *dx = malloc(sizeof(float) * N * C * H * W), *dw = malloc(sizeof(float) * K * C * R * S);
    s.x = T4(x, N, C, H, W);
    s.w = T4(w, K, C, R, S);
    s.y = T4(y, N, K, P, Q);
    s.r = r;
    bl_tensor dy = T4(r, N, K, P, Q), tdx = T4(dx, N, C, H, W), tdw = T4(dw, K, C, R, S);
    CHECK_OK(bl_op_conv2d_backward_data(dev, &s.p, &dy, &s.w, &tdx));
    CHECK_OK(bl_op_conv2d_backward_filter(dev, &s.p, &s.x, &dy, &tdw));
    fprintf(stderr, "  conv x(%d,%d,%d,%d) w(%d,%d,%d,%d) stride %d pad %d\n", N, C, H, W, K, C, R, S, stride,
            pad);
    compare("conv2d dx", conv_loss, &s, x, dx, N * C * H * W, 1e-2f, 40);
    compare("conv2d dw", conv_loss, &s, w, dw, K * C * R * S, 1e-2f, 40);
    free(x), free(w), free(y), free(r), free(dx), free(dw);
}

static void test_conv2d(void) {
    conv_case(2, 3, 7, 6, 4, 3, 3, 2, 1);
    conv_case(3, 2, 5, 5, 3, 1, 1, 1, 0);
    conv_case(1, 2, 9, 8, 2, 7, 7, 2, 3);
}

/* ---- batch norm with residual and ReLU ------------------------------------------------- */

typedef struct bn_state {
    bl_batchnorm_params p;
    bl_tensor x, gamma, beta, residual, rm, rv, sm, si, y;
    bool relu, use_residual;
    float *r;
} bn_state;

static double bn_loss(void *s_) {
    bn_state *s = s_;
    bl_status st = bl_op_batchnorm_forward_train(dev, &s->p, &s->x, &s->gamma, &s->beta,
                                                 s->use_residual ? &s->residual : NULL, s->relu, &s->rm,
                                                 &s->rv, &s->sm, &s->si, &s->y);
    BL_ASSERT(st == BL_OK);
    return dot(s->y.data, s->r, bl_tensor_numel(&s->y));
}

static void bn_case(int N, int C, int H, int W, bool relu, bool residual) {
    int64_t n = (int64_t)N * C * H * W;
    bn_state s = {.p = {1e-5f, 0.1f}, .relu = relu, .use_residual = residual};
    float *x = randn(n, 2), *g = randn(C, 1), *b = randn(C, 0.5f), *res = randn(n, 1);
    float *rm = calloc(C, 4), *rv = calloc(C, 4), *sm = malloc(4 * C), *si = malloc(4 * C);
    float *y = malloc(4 * n), *r = randn(n, 1);
    float *dx = malloc(4 * n), *dg = malloc(4 * C), *db = malloc(4 * C), *dres = malloc(4 * n);
    s.x = T4(x, N, C, H, W);
    s.residual = T4(res, N, C, H, W);
    s.y = T4(y, N, C, H, W);
    s.gamma = T(g, 1, C, 0), s.beta = T(b, 1, C, 0);
    s.rm = T(rm, 1, C, 0), s.rv = T(rv, 1, C, 0), s.sm = T(sm, 1, C, 0), s.si = T(si, 1, C, 0);
    s.r = r;
    bn_loss(&s);
    bl_tensor dy = T4(r, N, C, H, W), tdx = T4(dx, N, C, H, W), tdres = T4(dres, N, C, H, W);
    bl_tensor tdg = T(dg, 1, C, 0), tdb = T(db, 1, C, 0);
    CHECK_OK(bl_op_batchnorm_backward(dev, &dy, &s.x, &s.y, relu, &s.gamma, &s.sm, &s.si, &tdx, &tdg, &tdb,
                                      residual ? &tdres : NULL));
    fprintf(stderr, "  batchnorm (%d,%d,%d,%d) relu %d residual %d\n", N, C, H, W, relu, residual);
    compare("batchnorm dx", bn_loss, &s, x, dx, n, 1e-2f, 40);
    compare("batchnorm dgamma", bn_loss, &s, g, dg, C, 1e-2f, C);
    compare("batchnorm dbeta", bn_loss, &s, b, db, C, 1e-2f, C);
    if (residual) compare("batchnorm dresidual", bn_loss, &s, res, dres, n, 1e-2f, 40);
    free(x), free(g), free(b), free(res), free(rm), free(rv), free(sm), free(si), free(y), free(r);
    free(dx), free(dg), free(db), free(dres);
}

static void test_batchnorm(void) {
    bn_case(4, 5, 3, 3, false, false);
    bn_case(3, 6, 4, 5, true, true);
    bn_case(2, 4, 3, 3, true, false);
}

/* ---- relu, add ------------------------------------------------------------------------- */

typedef struct unary_state {
    bl_tensor x, y, other;
    float *r;
    int which; /* 0 relu, 1 add */
} unary_state;

static double unary_loss(void *s_) {
    unary_state *s = s_;
    bl_status st =
        s->which == 0 ? bl_op_relu_forward(dev, &s->x, &s->y) : bl_op_add(dev, &s->x, &s->other, &s->y);
    BL_ASSERT(st == BL_OK);
    return dot(s->y.data, s->r, bl_tensor_numel(&s->y));
}

static void test_relu_and_add(void) {
    int64_t n = 2 * 3 * 4 * 5;
    float *x = randn(n, 1), *o = randn(n, 1), *y = malloc(4 * n), *r = randn(n, 1), *dx = malloc(4 * n);
    unary_state s = {T4(x, 2, 3, 4, 5), T4(y, 2, 3, 4, 5), T4(o, 2, 3, 4, 5), r, 0};
    unary_loss(&s);
    bl_tensor dy = T4(r, 2, 3, 4, 5), tdx = T4(dx, 2, 3, 4, 5);
    CHECK_OK(bl_op_relu_backward(dev, &dy, &s.y, &tdx));
    compare("relu dx", unary_loss, &s, x, dx, n, 1e-2f, 60);
    /* add's backward is the identity on each input: dL/da = dy. */
    s.which = 1;
    compare("add da", unary_loss, &s, x, r, n, 1e-2f, 30);
    compare("add db", unary_loss, &s, o, r, n, 1e-2f, 30);
    free(x), free(o), free(y), free(r), free(dx);
}

/* ---- pooling --------------------------------------------------------------------------- */

typedef struct pool_state {
    bl_pool_params p;
    bl_tensor x, y;
    float *r;
    bool max;
} pool_state;

static double pool_loss(void *s_) {
    pool_state *s = s_;
    bl_status st = s->max ? bl_op_maxpool_forward(dev, &s->p, &s->x, &s->y)
                          : bl_op_global_avgpool_forward(dev, &s->x, &s->y);
    BL_ASSERT(st == BL_OK);
    return dot(s->y.data, s->r, bl_tensor_numel(&s->y));
}

static void test_pooling(void) {
    int N = 2, C = 3, H = 9, W = 8;
    int64_t n = N * C * H * W;
    pool_state s = {.p = {3, 2, 1}, .max = true};
    int P = (H + 2 - 3) / 2 + 1, Q = (W + 2 - 3) / 2 + 1;
    float *x = randn(n, 1), *y = malloc(4 * N * C * P * Q), *r = randn(N * C * P * Q, 1), *dx = malloc(4 * n);
    s.x = T4(x, N, C, H, W);
    s.y = T4(y, N, C, P, Q);
    s.r = r;
    bl_tensor dy = T4(r, N, C, P, Q), tdx = T4(dx, N, C, H, W);
    CHECK_OK(bl_op_maxpool_backward(dev, &s.p, &s.x, &dy, &tdx));
    compare("maxpool dx", pool_loss, &s, x, dx, n, 1e-3f, 80);
    free(y), free(r);
    s.max = false;
    y = malloc(4 * N * C);
    r = randn(N * C, 1);
    s.y = T(y, 2, N, C);
    s.r = r;
    dy = T(r, 2, N, C);
    CHECK_OK(bl_op_global_avgpool_backward(dev, &dy, &tdx));
    compare("global_avgpool dx", pool_loss, &s, x, dx, n, 1e-2f, 40);
    free(x), free(y), free(r), free(dx);
}

/* ---- linear ---------------------------------------------------------------------------- */

typedef struct linear_state {
    bl_tensor x, w, b, y;
    float *r;
} linear_state;

static double linear_loss(void *s_) {
    linear_state *s = s_;
    BL_ASSERT(bl_op_linear_forward(dev, &s->x, &s->w, &s->b, &s->y) == BL_OK);
    return dot(s->y.data, s->r, bl_tensor_numel(&s->y));
}

static void test_linear(void) {
    int N = 5, I = 7, O = 3;
    float *x = randn(N * I, 1), *w = randn(O * I, 0.5f), *b = randn(O, 1), *y = malloc(4 * N * O);
    float *r = randn(N * O, 1), *dx = malloc(4 * N * I), *dw = malloc(4 * O * I), *db = malloc(4 * O);
    linear_state s = {T(x, 2, N, I), T(w, 2, O, I), T(b, 1, O, 0), T(y, 2, N, O), r};
    bl_tensor dy = T(r, 2, N, O), tdx = T(dx, 2, N, I), tdw = T(dw, 2, O, I), tdb = T(db, 1, O, 0);
    CHECK_OK(bl_op_linear_backward(dev, &dy, &s.x, &s.w, &tdx, &tdw, &tdb));
    compare("linear dx", linear_loss, &s, x, dx, N * I, 1e-2f, N * I);
    compare("linear dw", linear_loss, &s, w, dw, O * I, 1e-2f, O * I);
    compare("linear db", linear_loss, &s, b, db, O, 1e-2f, O);
    free(x), free(w), free(b), free(y), free(r), free(dx), free(dw), free(db);
}

/* ---- softmax cross-entropy ------------------------------------------------------------- */

typedef struct xent_state {
    bl_tensor logits, labels, loss;
    float smoothing;
} xent_state;

static double xent_loss(void *s_) {
    xent_state *s = s_;
    BL_ASSERT(bl_op_softmax_cross_entropy(dev, &s->logits, &s->labels, s->smoothing, &s->loss, NULL) ==
              BL_OK);
    return ((float *)s->loss.data)[0];
}

static void test_softmax_cross_entropy(void) {
    int N = 6, C = 5;
    float *logits = randn(N * C, 2), loss = 0, *d = malloc(4 * N * C);
    int32_t labels[6];
    for (int i = 0; i < N; i++) labels[i] = (int32_t)bl_rng_below(&rng, C);
    int64_t one = 1, nn = N;
    for (int k = 0; k < 2; k++) {
        xent_state s = {T(logits, 2, N, C), bl_tensor_view(dev, labels, BL_I32, 1, &nn),
                        bl_tensor_view(dev, &loss, BL_F32, 1, &one), k ? 0.1f : 0.0f};
        bl_tensor td = T(d, 2, N, C);
        CHECK_OK(bl_op_softmax_cross_entropy(dev, &s.logits, &s.labels, s.smoothing, &s.loss, &td));
        compare(k ? "xent dlogits (ls 0.1)" : "xent dlogits", xent_loss, &s, logits, d, N * C, 1e-2f, N * C);
    }
    /* A label outside the class range is an error naming the example. */
    labels[2] = 9;
    xent_state s = {T(logits, 2, N, C), bl_tensor_view(dev, labels, BL_I32, 1, &nn),
                    bl_tensor_view(dev, &loss, BL_F32, 1, &one), 0};
    CHECK_ERR(bl_op_softmax_cross_entropy(dev, &s.logits, &s.labels, 0, &s.loss, NULL), BL_ERR_INVALID_ARG,
              "label 9 of example 2");
    free(logits), free(d);
}

int main(void) {
    fprintf(stderr, "seed %u\n", SEED);
    bl_rng_seed(&rng, SEED);
    if (bl_device_get("cpu_ref", &dev) != BL_OK) {
        fprintf(stderr, "%s\n", bl_last_error());
        return 1;
    }
    RUN(test_conv2d);
    RUN(test_batchnorm);
    RUN(test_relu_and_add);
    RUN(test_pooling);
    RUN(test_linear);
    RUN(test_softmax_cross_entropy);
    bl_device_release(dev);
    return bl_test_finish();
}
