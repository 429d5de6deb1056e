/* Whole steps as one XLA program, end to end on xla:cpu (the PJRT CPU plugin): a narrow CIFAR
 * ResNet-18 (width 4, batch 8, 32x32) trained for STEPS SGD steps, each step's forward pass,
 * loss, backward pass and update recorded and run as one program, follows
 *   - the loss curve of the same model trained on cpu_ref (the oracle), and
 *   - the op-by-op XLA path (BEAMLET_OP_BY_OP=1: every op its own program), which it replaces,
 * step for step, with the learning rate changing every step; and the programs behave as
 * promised: one execution per step, compiled once per batch shape (the first step compiles
 * its own, as the parameters then still lie as separately uploaded tensors; every later step
 * reuses the second), a smaller last batch compiles once more, and an inference pass is one
 * program returning the logits of the op-by-op path; a label outside the classes makes the
 * step's loss NaN without splitting the program. Skips without an XLA CPU plugin.
 *
 * Tolerances (stated here, printed by the test): whole step vs cpu_ref, per step
 * |loss - loss_ref| <= 2e-3 * |loss_ref| + 1e-4, as for the GPU (test_cuda_training): XLA's
 * convolutions and reductions sum in another order than the oracle's loops, and training
 * amplifies that slowly. Whole step vs op by op: 1e-4 relative per step, and the final weights
 * within 1e-4 normalized squared error: the same programs, but fused, so XLA may reassociate
 * across ops. */
#include "training_curve.h"
#ifdef BEAMLET_HAVE_XLA
#include "beamlet/xla.h"
#endif

#define STEPS 8
#define BATCH 8
#define SMALL 4 /* the last, smaller batch */
#define WIDTH 4
#define EVAL_AFTER 3

#ifdef BEAMLET_HAVE_XLA
static bl_status open_op_by_op(curve_run *r, const bl_model *copy_from) {
    setenv("BEAMLET_OP_BY_OP", "1", 1); /* read when the device handle opens */
    bl_status s = curve_setup(r, "xla:cpu", WIDTH, BATCH, copy_from);
    unsetenv("BEAMLET_OP_BY_OP");
    return s;
}

static bl_status forward(curve_run *r, bl_forward_mode mode, int batch, float *logits) {
    bl_tensor y;
    BL_TRY(curve_load(r, batch, BATCH));
    BL_TRY(bl_model_forward(r->model, &r->io.x, mode, &y));
    return bl_tensor_download_f32(&y, logits);
}

/* Steps 0..STEPS-1 at BATCH, then one at SMALL: loss per step in curve[0..STEPS], the XLA
 * counters before and after each step, and after step EVAL_AFTER an evaluation pass (running
 * statistics, as the trainer's test pass between epochs) whose logits go to eval_logits. */
static bl_status train(curve_run *r, float *curve, bl_xla_stats *before, bl_xla_stats *after,
                       float *eval_logits) {
    for (int step = 0; step <= STEPS; step++) {
        if (before) bl_xla_stats_get(&before[step]);
        BL_TRY(curve_load(r, step, step < STEPS ? BATCH : SMALL));
        BL_TRY(curve_step(r, step, STEPS, &curve[step]));
        if (after) bl_xla_stats_get(&after[step]);
        if (step == EVAL_AFTER) BL_TRY(forward(r, BL_FORWARD_EVAL, 1, eval_logits));
    }
    return BL_OK;
}

static double weights_nmse(const bl_model *a, const bl_model *b) {
    double num = 0, den = 0;
    for (int i = 0; i < bl_model_param_count(a); i++) {
        const bl_tensor *ta = &bl_model_param(a, i)->value, *tb = &bl_model_param(b, i)->value;
        int64_t n = bl_tensor_numel(ta);
        float *ha = malloc(sizeof(float) * (size_t)n), *hb = malloc(sizeof(float) * (size_t)n);
        if (ha && hb && bl_tensor_download_f32(ta, ha) == BL_OK && bl_tensor_download_f32(tb, hb) == BL_OK)
            for (int64_t k = 0; k < n; k++) {
                num += ((double)ha[k] - hb[k]) * ((double)ha[k] - hb[k]);
                den += (double)hb[k] * hb[k];
            }
        else
            num = INFINITY;
        free(ha);
        free(hb);
    }
    return num / (den > 0 ? den : 1);
}

static bl_status infer(curve_run *r, float *logits) { return forward(r, BL_FORWARD_INFER, 0, logits); }

static double nmse(const float *a, const float *b, int n) {
    double num = 0, den = 0;
    for (int k = 0; k < n; k++)
        num += ((double)a[k] - b[k]) * ((double)a[k] - b[k]), den += (double)b[k] * b[k];
    return num / (den > 0 ? den : 1);
}
#endif

static void test_whole_step_follows_cpu_ref(void) {
#ifndef BEAMLET_HAVE_XLA
    SKIP("built without the XLA backend (BEAMLET_HAVE_XLA undefined)");
#else
    if (bl_device_count("xla:cpu") == 0) SKIP("no XLA CPU plugin: %s", "bl_device_count(\"xla:cpu\") == 0");
    curve_make_data();
    curve_run ref, whole, obo;
    float ref_curve[STEPS + 1], whole_curve[STEPS + 1], obo_curve[STEPS + 1];
    bl_xla_stats st0[STEPS + 1], st[STEPS + 1];
    float eval_whole[BATCH * CURVE_CLASSES], eval_obo[BATCH * CURVE_CLASSES], eval_ref[BATCH * CURVE_CLASSES];
    CHECK_OK(curve_setup(&ref, "cpu_ref", WIDTH, BATCH, NULL));
    CHECK_OK(curve_setup(&whole, "xla:cpu", WIDTH, BATCH, ref.model));
    CHECK_OK(open_op_by_op(&obo, ref.model));
    if (bl_test_checks_failed) return;
    CHECK_OK(train(&ref, ref_curve, NULL, NULL, eval_ref));
    CHECK_OK(train(&whole, whole_curve, st0, st, eval_whole));
    CHECK_OK(train(&obo, obo_curve, NULL, NULL, eval_obo));
    if (bl_test_checks_failed) return;
    double worst_ref = 0, worst_obo = 0;
    for (int s = 0; s <= STEPS; s++) {
        const bl_xla_stats *before = &st0[s];
        int64_t compiled = st[s].compiled - before->compiled, runs = st[s].executions - before->executions,
                programs = st[s].whole_programs - before->whole_programs;
        fprintf(stderr,
                "  step %d  batch %d  lr %.4f  cpu_ref %.6f  xla whole step %.6f  xla op by op %.6f  "
                "(compiled %lld, %.2f s; executions %lld)\n",
                s, s < STEPS ? BATCH : SMALL, (double)curve_lr(s, STEPS), ref_curve[s], whole_curve[s],
                obo_curve[s], (long long)compiled, st[s].compile_seconds - before->compile_seconds,
                (long long)runs);
        CHECK_MSG(curve_close(whole_curve[s], ref_curve[s], 2e-3, 1e-4), "step %d: xla %.6f vs cpu_ref %.6f",
                  s, whole_curve[s], ref_curve[s]);
        CHECK_MSG(curve_close(whole_curve[s], obo_curve[s], 1e-4, 1e-6),
                  "step %d: whole %.6f vs op by op %.6f", s, whole_curve[s], obo_curve[s]);
        /* One program per step, and nothing else run. */
        CHECK_MSG(programs == 1 && runs == 1,
                  "step %d: %lld whole programs, %lld executions (expected 1 and 1)", s, (long long)programs,
                  (long long)runs);
        /* Compiled: step 0 (parameters as uploaded), step 1 (the steady layout), the small
         * batch; no other step compiles. */
        bool compiles = s == 0 || s == 1 || s == STEPS;
        CHECK_MSG(compiled == (compiles ? 1 : 0), "step %d compiled %lld programs, expected %d", s,
                  (long long)compiled, compiles ? 1 : 0);
        double rel = fabs((double)whole_curve[s] - ref_curve[s]) / fabs((double)ref_curve[s]),
               relo = fabs((double)whole_curve[s] - obo_curve[s]) / fabs((double)obo_curve[s]);
        if (rel > worst_ref) worst_ref = rel;
        if (relo > worst_obo) worst_obo = relo;
    }
    double ew = nmse(eval_whole, eval_obo, BATCH * CURVE_CLASSES),
           er = nmse(eval_whole, eval_ref, BATCH * CURVE_CLASSES);
    fprintf(stderr, "  evaluation pass after step %d: logits nmse whole vs op by op %.2e, vs cpu_ref %.2e\n",
            EVAL_AFTER, ew, er);
    CHECK_MSG(ew <= 1e-8 && er <= 1e-6, "evaluation pass between steps: nmse %.3g (op by op), %.3g (cpu_ref)",
              ew, er);
    double wn = weights_nmse(whole.model, obo.model);
    fprintf(stderr,
            "  worst relative difference: vs cpu_ref %.2e, vs op by op %.2e; final weights nmse %.2e\n",
            worst_ref, worst_obo, wn);
    CHECK_MSG(wn <= 1e-4, "final weights: whole step vs op by op nmse %.3g", wn);
    CHECK_MSG(ref_curve[STEPS - 1] < 0.8 * ref_curve[0], "loss %.4f -> %.4f: training did not learn",
              ref_curve[0], ref_curve[STEPS - 1]);

    /* Evaluation passes (running statistics, as the trainer's test pass) between steps. */
    for (int k = 0; k < 2; k++) {
        float a[BATCH * CURVE_CLASSES], b[BATCH * CURVE_CLASSES];
        CHECK_OK(forward(&whole, BL_FORWARD_EVAL, k + 1, a));
        CHECK_OK(forward(&obo, BL_FORWARD_EVAL, k + 1, b));
        double e = nmse(a, b, BATCH * CURVE_CLASSES);
        fprintf(stderr, "  evaluation pass %d logits, whole vs op by op: nmse %.2e\n", k, e);
        CHECK_MSG(e <= 1e-8, "evaluation pass %d: logits nmse %.3g", k, e);
    }

    /* Inference: one program, the logits of the op-by-op path (both models hold the same
     * weights up to the nmse above). */
    float a[BATCH * CURVE_CLASSES], b[BATCH * CURVE_CLASSES];
    bl_xla_stats i0, i1;
    CHECK_OK(infer(&whole, a)); /* the first folds batch norm into the weights (host work) and compiles */
    bl_xla_stats_get(&i0);
    CHECK_OK(infer(&whole, a));
    bl_xla_stats_get(&i1);
    CHECK_OK(infer(&obo, b));
    CHECK_MSG(i1.whole_programs - i0.whole_programs == 1 && i1.executions - i0.executions == 1,
              "inference, second call: %lld whole programs, %lld executions (expected 1 and 1)",
              (long long)(i1.whole_programs - i0.whole_programs), (long long)(i1.executions - i0.executions));
    double ie = nmse(a, b, BATCH * CURVE_CLASSES);
    fprintf(stderr, "  inference logits, whole vs op by op: nmse %.2e\n", ie);
    CHECK_MSG(ie <= 1e-4, "inference logits nmse %.3g", ie);

    /* A label outside 0..classes-1 (10 of 10 classes) in a whole step: the step stays one
     * program (the labels are not read back to check them) and its loss is NaN, so a bad label
     * cannot train silently (the trainer stops on a non-finite loss). */
    int32_t bad[BATCH];
    memcpy(bad, curve_targets[0], sizeof bad);
    bad[3] = CURVE_CLASSES;
    bl_xla_stats b0, b1;
    float bad_loss = 0;
    CHECK_OK(bl_train_batch_upload(&whole.io, curve_images[0], bad, BATCH));
    bl_xla_stats_get(&b0);
    CHECK_OK(bl_train_step(whole.model, whole.opt, &whole.io, 0.1f, 0.01f));
    bl_xla_stats_get(&b1);
    CHECK_OK(bl_train_batch_loss(&whole.io, &bad_loss));
    fprintf(stderr,
            "  label %d of %d classes in a whole step: loss %g (whole programs %lld, executions %lld)\n",
            bad[3], CURVE_CLASSES, (double)bad_loss, (long long)(b1.whole_programs - b0.whole_programs),
            (long long)(b1.executions - b0.executions));
    CHECK_MSG(!isfinite(bad_loss), "label %d of %d classes: loss %g, expected non-finite", bad[3],
              CURVE_CLASSES, (double)bad_loss);
    CHECK_MSG(b1.whole_programs - b0.whole_programs == 1 && b1.executions - b0.executions == 1,
              "the step with a bad label: %lld whole programs, %lld executions (expected 1 and 1)",
              (long long)(b1.whole_programs - b0.whole_programs), (long long)(b1.executions - b0.executions));
    curve_teardown(&ref);
    curve_teardown(&whole);
    curve_teardown(&obo);
#endif
}

int main(void) {
    fprintf(stderr, "seed %u\n", CURVE_SEED);
    RUN(test_whole_step_follows_cpu_ref);
    return bl_test_finish();
}
