/* End to end on the GPU: a narrow CIFAR ResNet-18 (width 8) trained for STEPS SGD steps on a
 * fixed synthetic data set follows the loss curve of the same model trained on cpu_ref, step
 * for step, in f32; and the same training with each step recorded once as a CUDA graph and
 * replayed (the learning rate changing through bl_cuda_graph_set_sgd) follows the eager GPU
 * curve. Skips without a GPU.
 *
 * Tolerances (stated here, printed by the test): f32 GPU vs cpu_ref, per step
 * |loss_gpu - loss_ref| <= 2e-3 * |loss_ref| + 1e-4 — the two differ only in summation order
 * (cuDNN/cuBLAS vs the oracle's loops), which training amplifies slowly over 30 steps; graph
 * vs eager on the GPU: 1e-5 relative (the same kernels, up to non-deterministic cuDNN
 * algorithms). The weights are copied from the cpu_ref model in logical order so both start
 * from identical values whatever each device's memory layout. */
#include "training_curve.h"
#ifdef BEAMLET_HAVE_CUDA
#include "beamlet/cuda.h"
#endif

#define STEPS 30
#define BATCH 16
#define WIDTH 8

#ifdef BEAMLET_HAVE_CUDA
typedef curve_run run;

static float lr_at(int step) { return curve_lr(step, STEPS); }

static bl_status setup(run *r, const char *device, const bl_model *copy_from) {
    return curve_setup(r, device, WIDTH, BATCH, copy_from);
}

static void teardown(run *r) { curve_teardown(r); }

static bl_status load_batch(run *r, int step) { return curve_load(r, step, BATCH); }

static bl_status train_step(run *r, int step) {
    return bl_train_step(r->model, r->opt, &r->io, 0.1f, lr_at(step));
}

static bl_status eager_curve(run *r, float *curve) {
    for (int step = 0; step < STEPS; step++) {
        BL_TRY(load_batch(r, step));
        BL_TRY(train_step(r, step));
        BL_TRY(bl_train_batch_loss(&r->io, &curve[step]));
    }
    return BL_OK;
}

/* Step 0 eagerly (plans convolutions, sizes the workspace), then one recording replayed. */
static bl_status graph_curve(run *r, float *curve) {
    BL_TRY(load_batch(r, 0));
    BL_TRY(train_step(r, 0));
    BL_TRY(bl_train_batch_loss(&r->io, &curve[0]));
    bl_cuda_graph *g = NULL;
    BL_TRY(load_batch(r, 1));
    BL_TRY(bl_cuda_graph_begin(r->dev));
    bl_status s = train_step(r, 1);
    bl_cuda_graph *ignored = NULL;
    if (s != BL_OK) {
        bl_cuda_graph_end(r->dev, &ignored);
        bl_cuda_graph_free(ignored);
        return s;
    }
    BL_TRY(bl_cuda_graph_end(r->dev, &g));
    if (bl_cuda_graph_optimizer_count(g) != 1)
        s = bl_error(BL_ERR_INTERNAL, "graph recorded %d optimizer updates, expected 1",
                     bl_cuda_graph_optimizer_count(g));
    for (int step = 1; s == BL_OK && step < STEPS; step++) {
        bl_sgd_params p = {lr_at(step), 0.9f, 5e-4f, true};
        if (step > 1) s = load_batch(r, step);
        if (s == BL_OK) s = bl_cuda_graph_set_sgd(g, -1, &p);
        if (s == BL_OK) s = bl_cuda_graph_launch(g);
        if (s == BL_OK) s = bl_train_batch_loss(&r->io, &curve[step]);
    }
    bl_cuda_graph_free(g);
    return s;
}
#endif

static void test_gpu_follows_cpu_ref(void) {
#ifndef BEAMLET_HAVE_CUDA
    SKIP("built without the CUDA backend (BEAMLET_HAVE_CUDA undefined)");
#else
    if (bl_device_count("cuda") == 0) SKIP("no CUDA GPU visible (bl_device_count(\"cuda\") == 0)");
    curve_make_data();
    run ref, gpu, gpu_graph;
    float ref_curve[STEPS], gpu_curve[STEPS], graph_curve_v[STEPS];
    CHECK_OK(setup(&ref, "cpu_ref", NULL));
    CHECK_OK(setup(&gpu, "cuda", ref.model));
    CHECK_OK(setup(&gpu_graph, "cuda", ref.model));
    CHECK_OK(eager_curve(&ref, ref_curve));
    CHECK_OK(eager_curve(&gpu, gpu_curve));
    CHECK_OK(graph_curve(&gpu_graph, graph_curve_v));
    double worst_ref = 0, worst_graph = 0;
    for (int s = 0; s < STEPS; s++) {
        double d = fabs(gpu_curve[s] - ref_curve[s]), dg = fabs(graph_curve_v[s] - gpu_curve[s]);
        fprintf(stderr, "  step %2d  lr %.4f  cpu_ref %.6f  cuda %.6f  cuda graph %.6f\n", s,
                (double)lr_at(s), ref_curve[s], gpu_curve[s], graph_curve_v[s]);
        CHECK_MSG(isfinite(gpu_curve[s]) && d <= 2e-3 * fabs(ref_curve[s]) + 1e-4,
                  "step %d: cuda %.6f vs cpu_ref %.6f", s, gpu_curve[s], ref_curve[s]);
        CHECK_MSG(isfinite(graph_curve_v[s]) && dg <= 1e-5 * fabs(gpu_curve[s]) + 1e-6,
                  "step %d: graph %.6f vs eager %.6f", s, graph_curve_v[s], gpu_curve[s]);
        double rel = d / fabs(ref_curve[s]), relg = dg / fabs(gpu_curve[s]);
        if (rel > worst_ref) worst_ref = rel;
        if (relg > worst_graph) worst_graph = relg;
    }
    fprintf(stderr, "  worst relative difference: cuda vs cpu_ref %.2e, graph vs eager %.2e\n", worst_ref,
            worst_graph);
    /* The data are memorizable: training must actually lower the loss. */
    CHECK_MSG(ref_curve[STEPS - 1] < 0.8 * ref_curve[0], "loss %.4f -> %.4f", ref_curve[0],
              ref_curve[STEPS - 1]);
    teardown(&ref);
    teardown(&gpu);
    teardown(&gpu_graph);
#endif
}

int main(void) {
    fprintf(stderr, "seed %u\n", CURVE_SEED);
    RUN(test_gpu_follows_cpu_ref);
    return bl_test_finish();
}
