/* Recording a training step as a CUDA graph: a small step through every kind of op (conv,
 * batch norm with ReLU, max-pool, global average pool, linear, loss, all backward passes, SGD
 * and AdamW updates) replayed from a graph gives what running it op by op gives; recording
 * runs nothing; new optimizer hyperparameters reach the recorded updates; an allocation while
 * recording is refused and the device stays usable. Skips without a GPU. */
#include "bl_test.h"

#include "beamlet/devices.h"
#ifdef BEAMLET_HAVE_CUDA
#include "beamlet/cuda.h"
#endif

#define SEED 23u

#ifdef BEAMLET_HAVE_CUDA

enum {
    N = 4,
    C = 8,
    H = 10,
    W = 10,
    K = 16,
    P = 5,
    CLASSES = 10
};
enum {
    T_X,
    T_CW,
    T_Y1,
    T_GAMMA,
    T_BETA,
    T_RM,
    T_RV,
    T_SM,
    T_SI,
    T_Y2,
    T_Y3,
    T_G,
    T_FW,
    T_FB,
    T_LOGITS,
    T_LABELS,
    T_LOSS,
    T_DLOGITS,
    T_DG,
    T_DFW,
    T_DFB,
    T_DY3,
    T_DY2,
    T_DY1,
    T_DGAMMA,
    T_DBETA,
    T_DCW,
    T_DX,
    T_MOM,
    T_M1,
    T_M2,
    T_COUNT
};

typedef struct step {
    bl_device *dev;
    bl_tensor t[T_COUNT];
    float *init[T_COUNT]; /* host values (logical order) the state is reset to */
} step;

static bl_tensor fc_flat(step *s, int which) {
    int64_t n = CLASSES * K;
    return bl_tensor_view(s->dev, s->t[which].data, BL_F32, 1, &n);
}
static bl_tensor conv_flat(step *s, int which) {
    int64_t n = K * C * 9;
    return bl_tensor_view(s->dev, s->t[which].data, BL_F32, 1, &n);
}

static void make(step *s, bl_rng *rng) {
    struct {
        int id, ndim;
        int64_t shape[4];
        int kind;
    } spec[] = {
        {T_X, 4, {N, C, H, W}, 1},   {T_CW, 4, {K, C, 3, 3}, 1},  {T_Y1, 4, {N, K, H, W}, 0},
        {T_GAMMA, 1, {K}, 2},        {T_BETA, 1, {K}, 1},         {T_RM, 1, {K}, 1},
        {T_RV, 1, {K}, 2},           {T_SM, 1, {K}, 0},           {T_SI, 1, {K}, 0},
        {T_Y2, 4, {N, K, H, W}, 0},  {T_Y3, 4, {N, K, P, P}, 0},  {T_G, 2, {N, K}, 0},
        {T_FW, 2, {CLASSES, K}, 1},  {T_FB, 1, {CLASSES}, 1},     {T_LOGITS, 2, {N, CLASSES}, 0},
        {T_LABELS, 1, {N}, 3},       {T_LOSS, 1, {1}, 0},         {T_DLOGITS, 2, {N, CLASSES}, 0},
        {T_DG, 2, {N, K}, 0},        {T_DFW, 2, {CLASSES, K}, 0}, {T_DFB, 1, {CLASSES}, 0},
        {T_DY3, 4, {N, K, P, P}, 0}, {T_DY2, 4, {N, K, H, W}, 0}, {T_DY1, 4, {N, K, H, W}, 0},
        {T_DGAMMA, 1, {K}, 0},       {T_DBETA, 1, {K}, 0},        {T_DCW, 4, {K, C, 3, 3}, 0},
        {T_DX, 4, {N, C, H, W}, 0},  {T_MOM, 2, {CLASSES, K}, 4}, {T_M1, 4, {K, C, 3, 3}, 4},
        {T_M2, 4, {K, C, 3, 3}, 4},
    };
    for (int i = 0; i < T_COUNT; i++) {
        int id = spec[i].id;
        bl_dtype dt = spec[i].kind == 3 ? BL_I32 : BL_F32;
        CHECK_OK(bl_tensor_alloc(s->dev, dt, spec[i].ndim, spec[i].shape, &s->t[id]));
        if (spec[i].ndim != 4) s->t[id].layout = BL_LAYOUT_NCHW;
        int64_t n = bl_tensor_numel(&s->t[id]);
        s->init[id] = NULL;
        if (spec[i].kind == 0) continue;
        s->init[id] = malloc(sizeof(float) * (size_t)n);
        for (int64_t j = 0; j < n; j++) {
            double v = bl_rng_normal(rng);
            s->init[id][j] = spec[i].kind == 2   ? (float)(0.5 + fabs(v))
                             : spec[i].kind == 3 ? (float)bl_rng_below(rng, CLASSES)
                             : spec[i].kind == 4 ? 0.0f
                                                 : (float)v;
        }
    }
}

/* Puts inputs, parameters and optimizer state back to their initial values. */
static void reset(step *s) {
    for (int i = 0; i < T_COUNT; i++) {
        if (!s->init[i]) continue;
        if (s->t[i].dtype == BL_I32) {
            int32_t labels[N];
            for (int j = 0; j < N; j++) labels[j] = (int32_t)s->init[i][j];
            CHECK_OK(bl_tensor_copy_from_host(&s->t[i], labels));
        } else {
            CHECK_OK(bl_tensor_upload_nchw_f32(&s->t[i], s->init[i]));
        }
    }
    CHECK_OK(bl_device_synchronize(s->dev));
}

static bl_status run_step(step *s, float lr, int64_t adam_step) {
    bl_device *d = s->dev;
    bl_tensor *t = s->t;
    bl_conv2d_params cp = {1, 1, 1, 1};
    bl_batchnorm_params bn = {1e-5f, 0.1f};
    bl_pool_params pp = {3, 2, 1};
    BL_TRY(bl_op_conv2d_forward(d, &cp, &t[T_X], &t[T_CW], NULL, NULL, false, &t[T_Y1]));
    BL_TRY(bl_op_batchnorm_forward_train(d, &bn, &t[T_Y1], &t[T_GAMMA], &t[T_BETA], NULL, true, &t[T_RM],
                                         &t[T_RV], &t[T_SM], &t[T_SI], &t[T_Y2]));
    BL_TRY(bl_op_maxpool_forward(d, &pp, &t[T_Y2], &t[T_Y3]));
    BL_TRY(bl_op_global_avgpool_forward(d, &t[T_Y3], &t[T_G]));
    BL_TRY(bl_op_linear_forward(d, &t[T_G], &t[T_FW], &t[T_FB], &t[T_LOGITS]));
    BL_TRY(bl_op_softmax_cross_entropy(d, &t[T_LOGITS], &t[T_LABELS], 0.1f, &t[T_LOSS], &t[T_DLOGITS]));
    BL_TRY(bl_op_linear_backward(d, &t[T_DLOGITS], &t[T_G], &t[T_FW], &t[T_DG], &t[T_DFW], &t[T_DFB]));
    BL_TRY(bl_op_global_avgpool_backward(d, &t[T_DG], &t[T_DY3]));
    BL_TRY(bl_op_maxpool_backward(d, &pp, &t[T_Y2], &t[T_DY3], &t[T_DY2]));
    BL_TRY(bl_op_batchnorm_backward(d, &t[T_DY2], &t[T_Y1], &t[T_Y2], true, &t[T_GAMMA], &t[T_SM], &t[T_SI],
                                    &t[T_DY1], &t[T_DGAMMA], &t[T_DBETA], NULL));
    BL_TRY(bl_op_conv2d_backward_filter(d, &cp, &t[T_X], &t[T_DY1], &t[T_DCW]));
    BL_TRY(bl_op_conv2d_backward_data(d, &cp, &t[T_DY1], &t[T_CW], &t[T_DX]));
    bl_sgd_params sgd = {lr, 0.9f, 5e-4f, true};
    bl_tensor fw = fc_flat(s, T_FW), dfw = fc_flat(s, T_DFW), mom = fc_flat(s, T_MOM);
    BL_TRY(bl_op_sgd_update(d, &sgd, &fw, &dfw, &mom));
    bl_adamw_params adam = {lr, 0.9f, 0.999f, 1e-8f, 1e-2f, adam_step};
    bl_tensor cw = conv_flat(s, T_CW), dcw = conv_flat(s, T_DCW);
    bl_tensor m1 = conv_flat(s, T_M1), m2 = conv_flat(s, T_M2);
    return bl_op_adamw_update(d, &adam, &cw, &dcw, &m1, &m2);
}

/* What the step leaves behind, in logical order. */
typedef struct result {
    float loss, fw[CLASSES * K], cw[K * C * 9], rv[K], dx[N * C * H * W];
} result;

static void snapshot(step *s, result *r) {
    CHECK_OK(bl_device_synchronize(s->dev));
    CHECK_OK(bl_tensor_download_f32(&s->t[T_LOSS], &r->loss));
    CHECK_OK(bl_tensor_download_f32(&s->t[T_FW], r->fw));
    CHECK_OK(bl_tensor_download_f32(&s->t[T_CW], r->cw));
    CHECK_OK(bl_tensor_download_f32(&s->t[T_RV], r->rv));
    CHECK_OK(bl_tensor_download_f32(&s->t[T_DX], r->dx));
}

static double nmse(const float *a, const float *b, int n) {
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return den > 0 ? num / den : num;
}

/* Equal up to the summation order of a non-deterministic cuDNN algorithm. */
static void same(const result *a, const result *b, const char *what) {
    double e[5] = {nmse(&a->loss, &b->loss, 1), nmse(a->fw, b->fw, CLASSES * K),
                   nmse(a->cw, b->cw, K * C * 9), nmse(a->rv, b->rv, K), nmse(a->dx, b->dx, N * C * H * W)};
    double worst = 0;
    for (int i = 0; i < 5; i++) worst = e[i] > worst ? e[i] : worst;
    CHECK_MSG(worst < 1e-12 && isfinite(a->loss),
              "%s: nmse loss %.2g fc %.2g conv %.2g "
              "running_var %.2g dx %.2g",
              what, e[0], e[1], e[2], e[3], e[4]);
    fprintf(stderr, "  %-34s loss %.6f, worst nmse %.2e\n", what, a->loss, worst);
}
#endif

static void test_graph_replay(void) {
#ifndef BEAMLET_HAVE_CUDA
    SKIP("built without the CUDA backend (BEAMLET_HAVE_CUDA undefined)");
#else
    if (bl_device_count("cuda") == 0) SKIP("no CUDA GPU visible (bl_device_count(\"cuda\") == 0)");
    step s;
    CHECK_OK(bl_device_get("cuda", &s.dev));
    bl_rng rng;
    bl_rng_seed(&rng, SEED);
    make(&s, &rng);
    static result eager, graph, again, frozen;
    /* Eager: the first run plans (algorithm searches, workspace), the second is the reference. */
    reset(&s);
    CHECK_OK(run_step(&s, 0.05f, 1));
    reset(&s);
    CHECK_OK(run_step(&s, 0.05f, 1));
    snapshot(&s, &eager);

    reset(&s);
    bl_cuda_graph *g = NULL;
    CHECK_OK(bl_cuda_graph_begin(s.dev));
    bl_status rs = run_step(&s, 0.05f, 1);
    CHECK_MSG(rs == BL_OK, "step while recording: %s", bl_last_error());
    CHECK_OK(bl_cuda_graph_end(s.dev, &g));
    if (!g) return;
    CHECK(bl_cuda_graph_optimizer_count(g) == 2);
    /* Recording ran nothing: parameters are still the initial ones. */
    snapshot(&s, &frozen);
    CHECK(memcmp(frozen.fw, s.init[T_FW], sizeof frozen.fw) == 0);
    CHECK_OK(bl_cuda_graph_launch(g));
    snapshot(&s, &graph);
    same(&graph, &eager, "graph replay vs eager");
    reset(&s);
    CHECK_OK(bl_cuda_graph_launch(g));
    snapshot(&s, &again);
    same(&again, &eager, "second replay vs eager");

    /* Learning rate 0 through the recorded nodes: parameters stay put. */
    bl_sgd_params sgd0 = {0.0f, 0.9f, 5e-4f, true};
    bl_adamw_params adam0 = {0.0f, 0.9f, 0.999f, 1e-8f, 1e-2f, 1};
    CHECK_OK(bl_cuda_graph_set_sgd(g, -1, &sgd0));
    CHECK_OK(bl_cuda_graph_set_adamw(g, 0, &adam0));
    CHECK_ERR(bl_cuda_graph_set_sgd(g, 1, &sgd0), BL_ERR_INVALID_ARG, "graph recorded 1");
    reset(&s);
    CHECK_OK(bl_cuda_graph_launch(g));
    snapshot(&s, &again);
    CHECK(memcmp(again.fw, s.init[T_FW], sizeof again.fw) == 0);
    CHECK(memcmp(again.cw, s.init[T_CW], sizeof again.cw) == 0);

    /* A later step's values (lr 0.02, Adam step 3) match an eager run with them. */
    bl_sgd_params sgd3 = {0.02f, 0.9f, 5e-4f, true};
    bl_adamw_params adam3 = {0.02f, 0.9f, 0.999f, 1e-8f, 1e-2f, 3};
    CHECK_OK(bl_cuda_graph_set_sgd(g, 0, &sgd3));
    CHECK_OK(bl_cuda_graph_set_adamw(g, -1, &adam3));
    reset(&s);
    CHECK_OK(bl_cuda_graph_launch(g));
    snapshot(&s, &graph);
    reset(&s);
    CHECK_OK(run_step(&s, 0.02f, 3));
    snapshot(&s, &eager);
    same(&graph, &eager, "updated hyperparameters vs eager");
    bl_cuda_graph_free(g);

    /* Allocating or waiting while recording is refused with a reason; the device goes on. */
    void *p = NULL;
    CHECK_OK(bl_cuda_graph_begin(s.dev));
    CHECK_ERR(bl_device_alloc(s.dev, 1024, &p), BL_ERR_UNSUPPORTED, "while a graph is recorded");
    CHECK_ERR(bl_device_synchronize(s.dev), BL_ERR_UNSUPPORTED, "while a graph is recorded");
    CHECK_ERR(bl_cuda_graph_begin(s.dev), BL_ERR_INVALID_ARG, "already being recorded");
    bl_status es = bl_cuda_graph_end(s.dev, &g); /* an empty graph, or an error: either is fine */
    if (es == BL_OK) bl_cuda_graph_free(g);
    reset(&s);
    CHECK_OK(run_step(&s, 0.05f, 1));
    CHECK_OK(bl_device_synchronize(s.dev));

    for (int i = 0; i < T_COUNT; i++) {
        bl_tensor_release(&s.t[i]);
        free(s.init[i]);
    }
    bl_device_release(s.dev);
#endif
}

/* Graph functions refuse devices that are not GPUs (runs without a GPU too). */
static void test_graph_rejects_cpu(void) {
#ifndef BEAMLET_HAVE_CUDA
    SKIP("built without the CUDA backend (BEAMLET_HAVE_CUDA undefined)");
#else
    bl_device *cpu;
    CHECK_OK(bl_device_get("cpu_ref", &cpu));
    CHECK_ERR(bl_cuda_graph_begin(cpu), BL_ERR_INVALID_ARG, "cpu_ref is not a CUDA device");
    bl_cuda_graph *g = (bl_cuda_graph *)1;
    CHECK_ERR(bl_cuda_graph_end(cpu, &g), BL_ERR_INVALID_ARG, "is not a CUDA device");
    CHECK(g == NULL);
    CHECK_ERR(bl_cuda_graph_launch(NULL), BL_ERR_INVALID_ARG, "no graph");
    bl_device_release(cpu);
#endif
}

int main(void) {
    fprintf(stderr, "seed %u\n", SEED);
    RUN(test_graph_rejects_cpu);
    RUN(test_graph_replay);
    return bl_test_finish();
}
