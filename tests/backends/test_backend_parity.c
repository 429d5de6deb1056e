/* One table of op cases, run on every backend against the cpu_ref oracle.
 *
 * For each case and each target device ("cpu" when it is not cpu_ref, "cuda" and "xla:cpu" when
 * present) and
 * each activation dtype the target supports: inputs are drawn from a fixed seed, outputs are
 * poisoned with NaN before the run, the target runs in its preferred layout, and every output
 * is compared with the reference by normalized squared error
 *     nmse = sum (out - ref)^2 / sum ref^2
 * against a threshold per precision. NaN or Inf in an output fails. Reference inputs for a
 * bf16 run are the bf16-rounded values, so the threshold measures the op, not input rounding.
 *
 * A device set to bf16 compute (bl_device_set_precision: f32 tensors, bf16 convolutions) runs
 * the table too: see test_cpu_bf16_compute.
 *
 * Output: a FAIL line per output over its threshold, and one line per device saying how many
 * outputs were compared and which had the largest nmse relative to its threshold;
 * BEAMLET_TEST_VERBOSE=1 adds a line per output (about 400). The short form keeps the whole
 * output within what a CI log shows of a failed test, so the failing line or sanitizer report
 * is in it. */
#include "bl_test.h"

#include <stddef.h>

#include "beamlet/devices.h"

#define SEED 7u
#define MAX_T 12

/* f32: backends must compute in f32 (no TF32): only summation order differs.
 * bf16: operands and outputs in bf16 with f32 accumulation: a few ulps of 2^-8. */
static double threshold(bl_dtype dt) { return dt == BL_F32 ? 1e-9 : 2e-4; }

/* bf16 compute on f32 inputs that are not bf16 values: each product carries the rounding of
 * both operands, a relative error of up to 2^-8 each (bf16 keeps 8 significant bits), so
 * nmse = E[(relative error of a product)^2] is at most 2 * (2^-8)^2 / 3 ~ 1e-5 for sums of
 * products of random signs (measured 2.3e-6..8.0e-6 over the table's convolutions, AMX Xeon).
 * 1e-4 leaves more than ten times the largest and still fails a wrong conversion (a bf16
 * truncation of the output, or a lost residual, gives 1e-3 and more). */
#define BF16_COMPUTE_THRESHOLD 1e-4

typedef enum {
    ARG_ACT,
    ARG_F32,
    ARG_LABELS,
    ARG_POS
} arg_kind;

typedef struct arg {
    const char *name;
    arg_kind kind; /* ACT: activation dtype; F32: always f32; LABELS: i32; POS: f32 > 0 */
    bool output;
    bool in_out; /* updated in place (running stats, parameters, optimizer state) */
    int ndim;
    int64_t shape[4];
} arg;

typedef struct op_case {
    const char *name;
    bl_op op;
    int nargs;
    arg a[MAX_T];
    bl_conv2d_params conv;
    bl_pool_params pool;
    bl_sgd_params sgd;
    bl_adamw_params adamw;
    float label_smoothing;
    bool relu, residual, bias;
    int64_t labels_range;
} op_case;

/* ---- the dispatch, generated from the op list ------------------------------------------------ */

/* Every argument any op takes, under the name the op list gives it. A case's tensors are bound
 * here by their names, and each op is called with its own arguments picked out by name, so a new
 * op needs no code here (a new argument name needs a field). */
typedef struct op_env {
    bl_device *dev;
    const bl_conv2d_params *conv;
    const bl_batchnorm_params *bn;
    const bl_pool_params *pool;
    const bl_sgd_params *sgd;
    const bl_adamw_params *adamw;
    bool relu;
    float label_smoothing;
    bl_tensor *x, *w, *bias, *residual, *y, *dy, *dx, *dw, *a, *b, *db, *gamma, *beta, *running_mean,
        *running_var, *save_mean, *save_invstd, *dgamma, *dbeta, *dresidual, *logits, *labels, *loss,
        *dlogits, *param, *grad, *momentum_buf, *exp_avg, *exp_avg_sq;
} op_env;

#define ENV_TENSOR(name)                                                                                     \
    { #name, offsetof(op_env, name) }
static const struct {
    const char *name;
    size_t offset;
} env_tensors[] = {
    ENV_TENSOR(x),
    ENV_TENSOR(w),
    ENV_TENSOR(bias),
    ENV_TENSOR(residual),
    ENV_TENSOR(y),
    ENV_TENSOR(dy),
    ENV_TENSOR(dx),
    ENV_TENSOR(dw),
    ENV_TENSOR(a),
    ENV_TENSOR(b),
    ENV_TENSOR(db),
    ENV_TENSOR(gamma),
    ENV_TENSOR(beta),
    ENV_TENSOR(running_mean),
    ENV_TENSOR(running_var),
    ENV_TENSOR(save_mean),
    ENV_TENSOR(save_invstd),
    ENV_TENSOR(dgamma),
    ENV_TENSOR(dbeta),
    ENV_TENSOR(dresidual),
    ENV_TENSOR(logits),
    ENV_TENSOR(labels),
    ENV_TENSOR(loss),
    ENV_TENSOR(dlogits),
    ENV_TENSOR(param),
    ENV_TENSOR(grad),
    ENV_TENSOR(momentum_buf),
    ENV_TENSOR(exp_avg),
    ENV_TENSOR(exp_avg_sq),
};

/* MAP(f, a, b, c) -> f(a), f(b), f(c): up to 12 arguments, the most an op takes. */
#define UNPAREN(...) __VA_ARGS__
#define COUNT(...) COUNT_(__VA_ARGS__, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)
#define COUNT_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, n, ...) n
#define MAP(f, ...) MAP_N(COUNT(__VA_ARGS__), f, __VA_ARGS__)
#define MAP_N(n, f, ...) MAP_N_(n, f, __VA_ARGS__)
#define MAP_N_(n, f, ...) MAP_##n(f, __VA_ARGS__)
#define MAP_1(f, a) f(a)
#define MAP_2(f, a, ...) f(a), MAP_1(f, __VA_ARGS__)
#define MAP_3(f, a, ...) f(a), MAP_2(f, __VA_ARGS__)
#define MAP_4(f, a, ...) f(a), MAP_3(f, __VA_ARGS__)
#define MAP_5(f, a, ...) f(a), MAP_4(f, __VA_ARGS__)
#define MAP_6(f, a, ...) f(a), MAP_5(f, __VA_ARGS__)
#define MAP_7(f, a, ...) f(a), MAP_6(f, __VA_ARGS__)
#define MAP_8(f, a, ...) f(a), MAP_7(f, __VA_ARGS__)
#define MAP_9(f, a, ...) f(a), MAP_8(f, __VA_ARGS__)
#define MAP_10(f, a, ...) f(a), MAP_9(f, __VA_ARGS__)
#define MAP_11(f, a, ...) f(a), MAP_10(f, __VA_ARGS__)
#define MAP_12(f, a, ...) f(a), MAP_11(f, __VA_ARGS__)
#define FROM_ENV(name) e->name

static bl_status dispatch(bl_op op, const op_env *e) {
    switch (op) {
#define DISPATCH(u, NAME, name, params, args)                                                                \
    case BL_OP_##NAME: return bl_op_##name(MAP(FROM_ENV, UNPAREN args));
        BL_OP_LIST(DISPATCH, )
#undef DISPATCH
        default: return bl_error(BL_ERR_INTERNAL, "no dispatch for %s", bl_op_name(op));
    }
}

/* Calls the op on tensors t[0..nargs), bound to the op's arguments by the case's names. */
static bl_status run_case(bl_device *dev, const op_case *c, bl_tensor *t) {
    static const bl_batchnorm_params bn = {1e-5f, 0.1f};
    op_env e = {.dev = dev,
                .conv = &c->conv,
                .bn = &bn,
                .pool = &c->pool,
                .sgd = &c->sgd,
                .adamw = &c->adamw,
                .relu = c->relu,
                .label_smoothing = c->label_smoothing};
    for (int i = 0; i < c->nargs; i++) {
        size_t k = 0;
        while (k < sizeof env_tensors / sizeof env_tensors[0] &&
               strcmp(env_tensors[k].name, c->a[i].name) != 0)
            k++;
        if (k == sizeof env_tensors / sizeof env_tensors[0])
            return bl_error(BL_ERR_INTERNAL, "%s: no op argument is called '%s'", c->name, c->a[i].name);
        *(bl_tensor **)((char *)&e + env_tensors[k].offset) = &t[i];
    }
    /* The optional inputs are present in every case's list; the variant decides. */
    if (!c->bias) e.bias = NULL;
    if (!c->residual) e.residual = e.dresidual = NULL;
    return dispatch(c->op, &e);
}

#define A4(nm, k, out, n, c, h, w)                                                                           \
    {                                                                                                        \
        nm, k, out, false, 4, { n, c, h, w }                                                                 \
    }
#define A2(nm, k, out, a, b)                                                                                 \
    {                                                                                                        \
        nm, k, out, false, 2, { a, b, 0, 0 }                                                                 \
    }
#define A1(nm, k, out, a)                                                                                    \
    {                                                                                                        \
        nm, k, out, false, 1, { a, 0, 0, 0 }                                                                 \
    }
#define IO1(nm, k, a)                                                                                        \
    {                                                                                                        \
        nm, k, true, true, 1, { a, 0, 0, 0 }                                                                 \
    }

static op_case cases[64];
static int ncases;

static void add_conv_cases(int N, int C, int H, int W, int K, int R, int stride, int pad) {
    int P = (H + 2 * pad - R) / stride + 1, Q = (W + 2 * pad - R) / stride + 1;
    bl_conv2d_params cp = {stride, stride, pad, pad};
    for (int variant = 0; variant < 2; variant++) {
        op_case f = {.name = "conv2d_forward",
                     .op = BL_OP_CONV2D_FORWARD,
                     .nargs = 5,
                     .a = {A4("x", ARG_ACT, false, N, C, H, W), A4("w", ARG_ACT, false, K, C, R, R),
                           A1("bias", ARG_F32, false, K), A4("residual", ARG_ACT, false, N, K, P, Q),
                           A4("y", ARG_ACT, true, N, K, P, Q)},
                     .conv = cp,
                     .bias = variant,
                     .residual = variant,
                     .relu = variant};
        cases[ncases++] = f;
    }
    op_case d = {.name = "conv2d_backward_data",
                 .op = BL_OP_CONV2D_BACKWARD_DATA,
                 .nargs = 3,
                 .a = {A4("dy", ARG_ACT, false, N, K, P, Q), A4("w", ARG_ACT, false, K, C, R, R),
                       A4("dx", ARG_ACT, true, N, C, H, W)},
                 .conv = cp};
    op_case g = {.name = "conv2d_backward_filter",
                 .op = BL_OP_CONV2D_BACKWARD_FILTER,
                 .nargs = 3,
                 .a = {A4("x", ARG_ACT, false, N, C, H, W), A4("dy", ARG_ACT, false, N, K, P, Q),
                       A4("dw", ARG_ACT, true, K, C, R, R)},
                 .conv = cp};
    cases[ncases++] = d;
    cases[ncases++] = g;
}

static void add_bn_cases(int N, int C, int H, int W, bool relu, bool residual) {
    op_case t = {.name = "batchnorm_forward_train",
                 .op = BL_OP_BATCHNORM_FORWARD_TRAIN,
                 .nargs = 9,
                 .a = {A4("x", ARG_ACT, false, N, C, H, W), A1("gamma", ARG_F32, false, C),
                       A1("beta", ARG_F32, false, C), A4("residual", ARG_ACT, false, N, C, H, W),
                       IO1("running_mean", ARG_F32, C), IO1("running_var", ARG_POS, C),
                       A1("save_mean", ARG_F32, true, C), A1("save_invstd", ARG_F32, true, C),
                       A4("y", ARG_ACT, true, N, C, H, W)},
                 .relu = relu,
                 .residual = residual};
    op_case e = {.name = "batchnorm_forward_eval",
                 .op = BL_OP_BATCHNORM_FORWARD_EVAL,
                 .nargs = 7,
                 .a = {A4("x", ARG_ACT, false, N, C, H, W), A1("gamma", ARG_F32, false, C),
                       A1("beta", ARG_F32, false, C), A4("residual", ARG_ACT, false, N, C, H, W),
                       A1("running_mean", ARG_F32, false, C), A1("running_var", ARG_POS, false, C),
                       A4("y", ARG_ACT, true, N, C, H, W)},
                 .relu = relu,
                 .residual = residual};
    /* y is any tensor whose sign pattern masks the ReLU; save_invstd must be positive. */
    op_case b = {.name = "batchnorm_backward",
                 .op = BL_OP_BATCHNORM_BACKWARD,
                 .nargs = 10,
                 .a = {A4("dy", ARG_ACT, false, N, C, H, W), A4("x", ARG_ACT, false, N, C, H, W),
                       A4("y", ARG_ACT, false, N, C, H, W), A1("gamma", ARG_F32, false, C),
                       A1("save_mean", ARG_F32, false, C), A1("save_invstd", ARG_POS, false, C),
                       A4("dx", ARG_ACT, true, N, C, H, W), A1("dgamma", ARG_F32, true, C),
                       A1("dbeta", ARG_F32, true, C), A4("dresidual", ARG_ACT, true, N, C, H, W)},
                 .relu = relu,
                 .residual = residual};
    cases[ncases++] = t;
    cases[ncases++] = e;
    cases[ncases++] = b;
}

static void build_cases(void) {
    add_conv_cases(2, 3, 8, 8, 4, 3, 1, 1);
    add_conv_cases(3, 5, 9, 7, 6, 3, 2, 1);   /* odd sizes, stride 2 */
    add_conv_cases(2, 8, 6, 6, 16, 1, 2, 0);  /* 1x1 downsample */
    add_conv_cases(1, 3, 17, 15, 8, 7, 2, 3); /* ImageNet stem shape */
    add_conv_cases(1, 1, 5, 4, 2, 3, 1, 1);   /* a width-1 ResNet's stem: one input channel, batch 1 */
    add_bn_cases(4, 6, 5, 5, false, false);
    add_bn_cases(3, 8, 4, 3, true, true);
    add_bn_cases(2, 5, 7, 7, true, false);
    /* More channels than any fixed per-channel array held (4096): a width-512 ResNet's layer4
     * has 4096, and widths up to 4096 (32768 channels) are accepted. */
    add_bn_cases(2, 4100, 2, 2, true, true);
    op_case rf = {.name = "relu_forward",
                  .op = BL_OP_RELU_FORWARD,
                  .nargs = 2,
                  .a = {A4("x", ARG_ACT, false, 2, 3, 5, 7), A4("y", ARG_ACT, true, 2, 3, 5, 7)}};
    op_case rb = {.name = "relu_backward",
                  .op = BL_OP_RELU_BACKWARD,
                  .nargs = 3,
                  .a = {A4("dy", ARG_ACT, false, 2, 3, 5, 7), A4("y", ARG_ACT, false, 2, 3, 5, 7),
                        A4("dx", ARG_ACT, true, 2, 3, 5, 7)}};
    op_case ad = {.name = "add",
                  .op = BL_OP_ADD,
                  .nargs = 3,
                  .a = {A4("a", ARG_ACT, false, 3, 4, 5, 6), A4("b", ARG_ACT, false, 3, 4, 5, 6),
                        A4("y", ARG_ACT, true, 3, 4, 5, 6)}};
    op_case mf = {.name = "maxpool_forward",
                  .op = BL_OP_MAXPOOL_FORWARD,
                  .nargs = 2,
                  .a = {A4("x", ARG_ACT, false, 2, 3, 11, 10), A4("y", ARG_ACT, true, 2, 3, 6, 5)},
                  .pool = {3, 2, 1}};
    op_case mb = {.name = "maxpool_backward",
                  .op = BL_OP_MAXPOOL_BACKWARD,
                  .nargs = 3,
                  .a = {A4("x", ARG_ACT, false, 2, 3, 11, 10), A4("dy", ARG_ACT, false, 2, 3, 6, 5),
                        A4("dx", ARG_ACT, true, 2, 3, 11, 10)},
                  .pool = {3, 2, 1}};
    op_case gf = {.name = "global_avgpool_forward",
                  .op = BL_OP_GLOBAL_AVGPOOL_FORWARD,
                  .nargs = 2,
                  .a = {A4("x", ARG_ACT, false, 3, 7, 5, 3), A2("y", ARG_ACT, true, 3, 7)}};
    op_case gb = {.name = "global_avgpool_backward",
                  .op = BL_OP_GLOBAL_AVGPOOL_BACKWARD,
                  .nargs = 2,
                  .a = {A2("dy", ARG_ACT, false, 3, 7), A4("dx", ARG_ACT, true, 3, 7, 5, 3)}};
    op_case lf = {.name = "linear_forward",
                  .op = BL_OP_LINEAR_FORWARD,
                  .nargs = 4,
                  .a = {A2("x", ARG_ACT, false, 5, 33), A2("w", ARG_ACT, false, 10, 33),
                        A1("b", ARG_F32, false, 10), A2("y", ARG_ACT, true, 5, 10)}};
    op_case lb = {.name = "linear_backward",
                  .op = BL_OP_LINEAR_BACKWARD,
                  .nargs = 6,
                  .a = {A2("dy", ARG_ACT, false, 5, 10), A2("x", ARG_ACT, false, 5, 33),
                        A2("w", ARG_ACT, false, 10, 33), A2("dx", ARG_ACT, true, 5, 33),
                        A2("dw", ARG_ACT, true, 10, 33), A1("db", ARG_F32, true, 10)}};
    op_case xe = {.name = "softmax_cross_entropy",
                  .op = BL_OP_SOFTMAX_CROSS_ENTROPY,
                  .nargs = 4,
                  .a = {A2("logits", ARG_F32, false, 7, 10), A1("labels", ARG_LABELS, false, 7),
                        A1("loss", ARG_F32, true, 1), A2("dlogits", ARG_F32, true, 7, 10)},
                  .labels_range = 10};
    op_case xs = xe;
    xs.label_smoothing = 0.1f;
    op_case sg = {.name = "sgd_update",
                  .op = BL_OP_SGD_UPDATE,
                  .nargs = 3,
                  .a = {IO1("param", ARG_F32, 1001), A1("grad", ARG_F32, false, 1001),
                        IO1("momentum_buf", ARG_F32, 1001)},
                  .sgd = {0.05f, 0.9f, 5e-4f, true}};
    op_case aw = {.name = "adamw_update",
                  .op = BL_OP_ADAMW_UPDATE,
                  .nargs = 4,
                  .a = {IO1("param", ARG_F32, 1001), A1("grad", ARG_F32, false, 1001),
                        IO1("exp_avg", ARG_F32, 1001), IO1("exp_avg_sq", ARG_POS, 1001)},
                  .adamw = {1e-2f, 0.9f, 0.999f, 1e-8f, 1e-2f, 3}};
    op_case list[] = {rf, rb, ad, mf, mb, gf, gb, lf, lb, xe, xs, sg, aw};
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) cases[ncases++] = list[i];
}

static bl_dtype arg_dtype(const arg *a, bl_dtype act) {
    return a->kind == ARG_ACT ? act : a->kind == ARG_LABELS ? BL_I32 : BL_F32;
}

static int64_t arg_numel(const arg *a) {
    int64_t n = 1;
    for (int i = 0; i < a->ndim; i++) n *= a->shape[i];
    return n;
}

/* Allocates t on dev in the device's layout and fills it from host f32 values. */
static bl_status make_tensor(bl_device *dev, const arg *a, bl_dtype act, const float *host, bl_tensor *t) {
    BL_TRY(bl_tensor_alloc(dev, arg_dtype(a, act), a->ndim, a->shape, t));
    if (a->ndim != 4) t->layout = BL_LAYOUT_NCHW;
    if (a->kind == ARG_LABELS) {
        int32_t *labels = malloc(sizeof(int32_t) * (size_t)arg_numel(a));
        for (int64_t i = 0; i < arg_numel(a); i++) labels[i] = (int32_t)host[i];
        bl_status s = bl_tensor_copy_from_host(t, labels);
        free(labels);
        return s;
    }
    return bl_tensor_upload_nchw_f32(t, host);
}

static double nmse(const float *out, const float *ref, int64_t n, int *bad) {
    double num = 0, den = 0;
    *bad = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(out[i])) (*bad)++;
        num += ((double)out[i] - ref[i]) * ((double)out[i] - ref[i]);
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? num / den : num;
}

/* What the current device's rows compared: the count, and the output with the largest nmse relative to
 * its threshold. */
static struct {
    int outputs;
    double worst; /* nmse / threshold; Inf for non-finite outputs */
    char where[128];
} tally;

static bool verbose(void) {
    const char *v = getenv("BEAMLET_TEST_VERBOSE");
    return v && *v && strcmp(v, "0") != 0;
}

static void tally_begin(void) {
    tally.outputs = 0;
    tally.worst = 0;
    tally.where[0] = '\0';
}

static void tally_end(const char *device) {
    if (tally.outputs == 0) return;
    fprintf(stderr, "  %s: %d outputs compared; largest nmse / threshold %.2g: %s\n", device, tally.outputs,
            tally.worst, tally.where);
}

/* How a case runs: `act` is the activation dtype; `round_bf16` rounds the activation inputs to
 * bf16 values on both sides (as an act == BL_BF16 run does); `act_threshold` > 0 replaces the
 * activation outputs' threshold. */
typedef struct run_mode {
    bl_dtype act;
    bool round_bf16;
    double act_threshold;
} run_mode;

static void run_mode_on(bl_device *ref, bl_device *dev, const op_case *c, const run_mode *m, bl_rng *rng) {
    bl_dtype act = m->act;
    float *host[MAX_T];
    bl_tensor tr[MAX_T], td[MAX_T];
    for (int i = 0; i < c->nargs; i++) {
        const arg *a = &c->a[i];
        int64_t n = arg_numel(a);
        host[i] = malloc(sizeof(float) * (size_t)n);
        for (int64_t j = 0; j < n; j++) {
            float v = (float)bl_rng_normal(rng);
            if (a->kind == ARG_POS) v = 0.5f + fabsf(v);
            if (a->kind == ARG_LABELS) v = (float)bl_rng_below(rng, (uint64_t)c->labels_range);
            /* Round activations to the run's dtype so both sides see the same inputs. */
            if (a->kind == ARG_ACT && (act == BL_BF16 || m->round_bf16))
                v = bl_bf16_to_f32(bl_f32_to_bf16(v));
            if (a->output && !a->in_out) v = NAN; /* poison: every output must be written */
            host[i][j] = v;
        }
        CHECK_OK(make_tensor(ref, a, BL_F32, host[i], &tr[i]));
        CHECK_OK(make_tensor(dev, a, act, host[i], &td[i]));
    }
    /* The reference always runs in f32 on the same (rounded) inputs. */
    bl_status sr = run_case(ref, c, tr);
    bl_status sd = run_case(dev, c, td);
    CHECK_MSG(sr == BL_OK, "%s reference: %s", c->name, bl_last_error());
    CHECK_MSG(sd == BL_OK, "%s on %s: %s", c->name, bl_device_name(dev), bl_last_error());
    CHECK_OK(bl_device_synchronize(dev));
    for (int i = 0; sr == BL_OK && sd == BL_OK && i < c->nargs; i++) {
        const arg *a = &c->a[i];
        if (!a->output) continue;
        if (c->op == BL_OP_BATCHNORM_BACKWARD && i == 9 && !c->residual) continue;
        int64_t n = arg_numel(a);
        float *out = malloc(sizeof(float) * (size_t)n), *want = malloc(sizeof(float) * (size_t)n);
        CHECK_OK(bl_tensor_download_f32(&td[i], out));
        CHECK_OK(bl_tensor_download_f32(&tr[i], want));
        int bad;
        double e = nmse(out, want, n, &bad);
        double thr = a->kind == ARG_ACT ? threshold(act) : threshold(act == BL_F32 ? BL_F32 : BL_BF16);
        if (a->kind == ARG_ACT && m->act_threshold > 0) thr = m->act_threshold;
        const char *how = bl_device_precision(dev) == BL_BF16 ? (m->round_bf16 ? "bf16c/r" : "bf16c") : "";
        CHECK_MSG(bad == 0 && e <= thr, "%s %s%s %s: nmse %.3g (threshold %.1g), %d non-finite", c->name,
                  bl_dtype_name(act), how, a->name, e, thr, bad);
        double ratio = bad ? INFINITY : e / thr;
        tally.outputs++;
        if (!(ratio <= tally.worst) || !tally.where[0]) {
            tally.worst = ratio;
            snprintf(tally.where, sizeof tally.where, "%s %s%s%s %s, nmse %.2e", c->name, bl_dtype_name(act),
                     *how ? " " : "", how, a->name, e);
        }
        if (verbose())
            fprintf(stderr, "  %-26s %-5s%-7s %-12s nmse %.2e%s\n", c->name, bl_dtype_name(act), how, a->name,
                    e, bad ? " NON-FINITE" : "");
        free(out), free(want);
    }
    for (int i = 0; i < c->nargs; i++) {
        bl_tensor_release(&tr[i]);
        bl_tensor_release(&td[i]);
        free(host[i]);
    }
}

static void run_on(bl_device *ref, bl_device *dev, const op_case *c, bl_dtype act, bl_rng *rng) {
    run_mode m = {act, false, 0};
    run_mode_on(ref, dev, c, &m, rng);
}

static void check_device(const char *name, bool allow_ref) {
    bl_device *dev, *ref;
    /* BEAMLET_TEST_DEVICE: one device only (CTest runs the XLA cases once per PJRT plugin). */
    const char *only = getenv("BEAMLET_TEST_DEVICE");
    if (only && *only && strcmp(only, name) != 0) SKIP("BEAMLET_TEST_DEVICE=%s", only);
    if (bl_device_get(name, &dev) != BL_OK) SKIP("device %s: %s", name, bl_last_error());
    if (!allow_ref && strcmp(bl_device_backend_name(dev), "cpu_ref") == 0) {
        bl_device_release(dev);
        SKIP("device %s is the cpu_ref backend itself in this build", name);
    }
    CHECK_OK(bl_device_get("cpu_ref", &ref));
    fprintf(stderr, "  %s (%s): %s\n", name, bl_device_backend_name(dev), bl_device_description(dev));
    bl_rng rng;
    bl_rng_seed(&rng, SEED);
    bl_dtype dtypes[] = {BL_F32, BL_BF16};
    tally_begin();
    for (int k = 0; k < ncases; k++)
        for (int d = 0; d < 2; d++) {
            if (!bl_device_supports_op(dev, cases[k].op, dtypes[d])) {
                CHECK_MSG(dtypes[d] != BL_F32, "%s: %s not supported in f32", name, cases[k].name);
                continue;
            }
            run_on(ref, dev, &cases[k], dtypes[d], &rng);
        }
    tally_end(name);
    bl_device_release(ref);
    bl_device_release(dev);
}

/* The "cpu" device with bf16 compute (f32 tensors; forward convolutions in bf16 with f32
 * accumulation), against the f32 reference:
 *   - forward convolutions on bf16-representable inputs: the conversions lose nothing, so only
 *     summation order differs and the f32 threshold (1e-9) holds; this proves f32 accumulation
 *     and an f32 bias/residual/ReLU epilogue;
 *   - forward convolutions on plain f32 inputs: BF16_COMPUTE_THRESHOLD (above);
 *   - every other op runs in f32 on the bf16 handle: f32 threshold;
 *   - backward convolutions are refused, with the message saying to train in f32.
 * A CPU without AVX512-BF16 or AMX refuses the precision: then this test checks that refusal
 * and skips the rest. */
static void test_cpu_bf16_compute(void) {
    bl_device *dev, *ref;
    bl_device_request req = {"cpu", -1, false, BL_BF16};
    if (bl_device_get("cpu", &dev) != BL_OK) SKIP("device cpu: %s", bl_last_error());
    bool onednn = strcmp(bl_device_backend_name(dev), "onednn") == 0;
    bl_device_release(dev);
    bl_status s = bl_device_open(&req, &dev);
    if (!onednn) {
        CHECK_MSG(s == BL_ERR_UNSUPPORTED, "bf16 on a backend without it: %s", bl_last_error());
        SKIP("the cpu device is not oneDNN in this build: bf16 refused (%s)", bl_last_error());
    }
    if (s == BL_ERR_UNSUPPORTED && strstr(bl_last_error(), "AVX512-BF16 or AMX"))
        SKIP("this CPU has no bf16 convolutions: %s", bl_last_error());
    CHECK_OK(s);
    if (s != BL_OK) return;
    CHECK(bl_device_precision(dev) == BL_BF16);
    CHECK_OK(bl_device_get("cpu_ref", &ref));
    bl_rng rng;
    bl_rng_seed(&rng, SEED);
    tally_begin();
    int convs = 0;
    for (int k = 0; k < ncases; k++) {
        const op_case *c = &cases[k];
        if (c->op == BL_OP_CONV2D_BACKWARD_DATA || c->op == BL_OP_CONV2D_BACKWARD_FILTER) {
            bl_tensor t[MAX_T];
            for (int i = 0; i < c->nargs; i++)
                CHECK_OK(bl_tensor_alloc(dev, BL_F32, 4, c->a[i].shape, &t[i]));
            CHECK_ERR(run_case(dev, c, t), BL_ERR_UNSUPPORTED, "train with --precision=f32");
            for (int i = 0; i < c->nargs; i++) bl_tensor_release(&t[i]);
            continue;
        }
        run_mode exact = {BL_F32, c->op == BL_OP_CONV2D_FORWARD, 0};
        run_mode_on(ref, dev, c, &exact, &rng);
        if (c->op != BL_OP_CONV2D_FORWARD) continue;
        run_mode rounded = {BL_F32, false, BF16_COMPUTE_THRESHOLD};
        run_mode_on(ref, dev, c, &rounded, &rng);
        convs++;
    }
    CHECK(convs >= 10);
    /* The same handle back in f32 gives f32 results (primitives are keyed by precision). */
    CHECK_OK(bl_device_set_precision(dev, BL_F32));
    for (int k = 0; k < ncases; k++)
        if (cases[k].op == BL_OP_CONV2D_FORWARD) run_on(ref, dev, &cases[k], BL_F32, &rng);
    tally_end("cpu with bf16 compute");
    bl_device_release(ref);
    bl_device_release(dev);
}

/* bf16 compute where there is none: cpu_ref refuses with one line naming what to use. */
static void test_bf16_refused(void) {
    bl_device *dev;
    bl_device_request req = {"cpu_ref", -1, false, BL_BF16};
    CHECK_ERR(
        bl_device_open(&req, &dev), BL_ERR_UNSUPPORTED,
        "device cpu_ref: --precision=bf16 is not supported by backend cpu_ref (it computes in f32 only); "
        "use --precision=f32");
    CHECK_OK(bl_device_get("cpu_ref", &dev));
    CHECK_ERR(bl_device_set_precision(dev, BL_F16), BL_ERR_INVALID_ARG,
              "precision f16: expected one of f32, bf16");
    CHECK_OK(bl_device_set_precision(dev, BL_F32));
    bl_device_release(dev);
    bl_dtype p;
    CHECK_ERR(bl_precision_parse("BF16", &p), BL_ERR_INVALID_ARG,
              "precision 'BF16': expected one of f32, bf16");
    CHECK_OK(bl_precision_parse("bf16", &p));
    CHECK(p == BL_BF16);
}

/* The harness against itself: every case runs, every poisoned output gets written. */
static void test_reference_self_check(void) { check_device("cpu_ref", true); }
static void test_cpu_backend(void) { check_device("cpu", false); }
static void test_cuda_backend(void) { check_device("cuda", false); }
static void test_xla_backend(void) { check_device("xla:cpu", false); }

/* The op front ends reject malformed calls before any backend sees them. */
static void test_front_end_validation(void) {
    bl_device *dev;
    CHECK_OK(bl_device_get("cpu_ref", &dev));
    float x[2 * 3 * 4 * 4], w[5 * 2 * 3 * 3], y[2 * 5 * 4 * 4];
    bl_tensor tx = bl_tensor_view4(dev, x, BL_F32, BL_LAYOUT_NCHW, 2, 3, 4, 4);
    bl_tensor tw = bl_tensor_view4(dev, w, BL_F32, BL_LAYOUT_NCHW, 5, 2, 3, 3);
    bl_tensor ty = bl_tensor_view4(dev, y, BL_F32, BL_LAYOUT_NCHW, 2, 5, 4, 4);
    bl_conv2d_params p = {1, 1, 1, 1};
    CHECK_ERR(bl_op_conv2d_forward(dev, &p, &tx, &tw, NULL, NULL, false, &ty), BL_ERR_INVALID_ARG,
              "input channels of x and w differ: 3 vs 2");
    tw.shape[1] = 3;
    ty.shape[2] = 5;
    CHECK_ERR(bl_op_conv2d_forward(dev, &p, &tx, &tw, NULL, NULL, false, &ty), BL_ERR_INVALID_ARG,
              "argument y is f32[2,5,5,4] nchw, expected f32[2,5,4,4] nchw");
    ty.shape[2] = 4;
    ty.dtype = BL_BF16;
    CHECK_ERR(bl_op_conv2d_forward(dev, &p, &tx, &tw, NULL, NULL, false, &ty), BL_ERR_INVALID_ARG,
              "argument y has dtype bf16, expected f32");
    tx.dtype = BL_BF16;
    CHECK_ERR(bl_op_conv2d_forward(dev, &p, &tx, &tw, NULL, NULL, false, &ty), BL_ERR_UNSUPPORTED,
              "conv2d_forward on cpu_ref: not supported by backend cpu_ref for bf16");
    tx.dtype = ty.dtype = BL_F32;
    tx.layout = BL_LAYOUT_NHWC;
    CHECK_ERR(bl_op_conv2d_forward(dev, &p, &tx, &tw, NULL, NULL, false, &ty), BL_ERR_UNSUPPORTED,
              "layout nhwc not supported");
    bl_device *other;
    CHECK_OK(bl_device_get("cpu_ref", &other));
    tx.layout = BL_LAYOUT_NCHW;
    tx.device = other;
    CHECK_ERR(bl_op_conv2d_forward(dev, &p, &tx, &tw, NULL, NULL, false, &ty), BL_ERR_INVALID_ARG,
              "argument x lives on another device");
    CHECK_ERR(bl_op_relu_forward(dev, NULL, &ty), BL_ERR_INVALID_ARG, "argument x is missing");
    bl_device_release(other);
    bl_device_release(dev);
}

int main(void) {
    fprintf(stderr, "seed %u\n", SEED);
    build_cases();
    RUN(test_front_end_validation);
    RUN(test_reference_self_check);
    RUN(test_cpu_backend);
    RUN(test_cuda_backend);
    RUN(test_xla_backend);
    RUN(test_cpu_bf16_compute);
    RUN(test_bf16_refused);
    return bl_test_finish();
}
