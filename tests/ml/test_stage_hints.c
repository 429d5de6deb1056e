/* The stages' accelerator hint and the workers they describe, for each device family, without
 * the device: a TPU stage hints type:tpu;count:1;topology:1x1 (one chip per worker, the
 * proposal's topology:1x1), which only TPU workers take; a GPU stage's hint holds no ':' (so
 * xla:cuda parses), and GPU workers do not take a TPU hint. On a machine without a TPU the
 * stage's own pipeline refuses the TPU step before anything runs, naming the TPU. */
#include "bl_test.h"

#include "beamlet/stages.h"
#include "ml/stage_common.h"

static bl_status where(bl_dofn_ctx *c, const void *e, bl_emitter *out) {
    (void)e;
    int64_t accel = bl_dofn_accelerator(c);
    return bl_emit(out, &accel);
}

static bl_device_choice choice(const char *family) {
    bl_device_choice c;
    memset(&c, 0, sizeof c);
    snprintf(c.name, sizeof c.name, "%s:0", family);
    snprintf(c.family, sizeof c.family, "%s", family);
    snprintf(c.backend, sizeof c.backend, "%s", strcmp(family, "cuda") == 0 ? "cuda" : "xla");
    c.accelerator = true;
    return c;
}

/* A stage-shaped pipeline: Create -> TrainModel (hinted for `c`), run with `flags` (NULL-ended).
 * *text gets the graph; *accels the accelerator index each element ran with. */
static bl_status run_stage(const char *const *flags, const bl_device_choice *c, char **text, int64_t *accel) {
    bl_options *opts;
    BL_TRY(bl_options_new(&opts));
    int argc = 1;
    char *argv[8] = {"test"};
    for (int i = 0; flags[i] && argc < 8; i++) argv[argc++] = (char *)flags[i];
    bl_pipeline *p = NULL;
    bl_status s = bl_options_parse(opts, argc, argv);
    if (s == BL_OK) s = stage_pipeline(opts, c, &p);
    int64_t v[4] = {0, 1, 2, 3};
    const void *elements[4] = {&v[0], &v[1], &v[2], &v[3]};
    bl_dofn fn = {.process = where, .out_coder = bl_coder_int64()};
    bl_pcoll *configs, *trained;
    if (s == BL_OK) s = bl_create(p, "CreateGrid", bl_coder_int64(), elements, 4, &configs);
    if (s == BL_OK) s = bl_pardo(p, "TrainModel", configs, &fn, &trained);
    if (s == BL_OK) s = stage_hint_accelerator(p, "TrainModel", c);
    if (s == BL_OK) s = bl_pipeline_collect(p, trained);
    if (s == BL_OK && text) s = bl_pipeline_to_text(p, text);
    if (s == BL_OK) s = bl_pipeline_run(p);
    if (s == BL_OK && accel) {
        *accel = -2;
        for (size_t i = 0; s == BL_OK && i < bl_pcoll_result_count(trained); i++) {
            int64_t *a;
            s = bl_pcoll_result_value(trained, i, (void **)&a);
            if (s == BL_OK) {
                *accel = i == 0 || *accel == *a ? *a : -3; /* -3: not all the same */
                bl_coder_free_value(bl_coder_int64(), a);
            }
        }
    }
    bl_pipeline_free(p);
    bl_options_free(opts);
    return s;
}

static void test_tpu_stage_hint(void) {
    bl_device_choice tpu = choice("tpu");
    char *text = NULL;
    int64_t accel = -1;
    /* TPU workers (what a TPU host's stage says, or --worker_accelerators=tpu:1): every trial
     * runs on chip 0 of its worker. */
    const char *tpu_workers[] = {"--runner=local", "--num_workers=2", "--worker_accelerators=tpu:1", NULL};
    CHECK_OK(run_stage(tpu_workers, &tpu, &text, &accel));
    CHECK_MSG(text && strstr(text, "TrainModel.out (int64) {accelerator=type:tpu;count:1;topology:1x1}"),
              "%s", text ? text : "");
    CHECK_MSG(accel == 0, "accelerator %lld", (long long)accel);
    free(text);
    /* GPUs are no TPU. */
    const char *gpu_workers[] = {"--runner=local", "--num_workers=2", "--worker_accelerators=1", NULL};
    CHECK_ERR(
        run_stage(gpu_workers, &tpu, NULL, NULL), BL_ERR_UNSUPPORTED,
        "transform 'TrainModel' needs accelerator type:tpu count:1 topology:1x1, but no worker has a TPU "
        "(the most TPU chips any of the 2 workers has is 0; 2 workers have GPUs, which do not serve a TPU "
        "hint; set --worker_accelerators=tpu:1 on a TPU host); the pipeline did not start");
}

/* The stage's own description of its workers: here, with no TPU, none has a chip, and the TPU
 * step is refused before it runs. */
static void test_tpu_stage_on_this_machine(void) {
    if (bl_device_count("tpu") > 0) SKIP("this machine has a TPU");
    bl_device_choice tpu = choice("tpu");
    bl_accel_kind kind;
    int count = -1;
    stage_worker_accelerators(&tpu, &kind, &count);
    CHECK(kind == BL_ACCEL_TPU && count == 0);
    const char *local[] = {"--runner=local", "--num_workers=2", NULL};
    CHECK_ERR(
        run_stage(local, &tpu, NULL, NULL), BL_ERR_UNSUPPORTED,
        "transform 'TrainModel' needs accelerator type:tpu count:1 topology:1x1, but no worker has a TPU "
        "(the most TPU chips any of the 2 workers has is 0; set --worker_accelerators=tpu:1 on a TPU host)");
}

static void test_gpu_stage_hints(void) {
    const char *tpu_workers[] = {"--runner=direct", "--worker_accelerators=tpu:1", NULL};
    const char *gpu_workers[] = {"--runner=direct", "--worker_accelerators=1", NULL};
    const char *families[][2] = {{"cuda", "type:cuda;count:1}"}, {"xla:cuda", "type:xla-cuda;count:1}"}};
    for (int i = 0; i < 2; i++) {
        bl_device_choice gpu = choice(families[i][0]);
        char *text = NULL;
        int64_t accel = -1;
        CHECK_OK(run_stage(gpu_workers, &gpu, &text, &accel));
        CHECK_MSG(text && strstr(text, families[i][1]), "%s: %s", families[i][0], text ? text : "");
        CHECK(accel == 0);
        free(text);
        CHECK_ERR(
            run_stage(tpu_workers, &gpu, NULL, NULL), BL_ERR_UNSUPPORTED,
            "but no worker has one (the most GPUs any of the 1 workers has is 0; 1 worker has TPU chips, "
            "which do not serve a GPU hint");
    }
    /* A CPU stage hints nothing: it runs on any worker. */
    bl_device_choice cpu;
    memset(&cpu, 0, sizeof cpu);
    snprintf(cpu.name, sizeof cpu.name, "cpu_ref");
    snprintf(cpu.family, sizeof cpu.family, "cpu_ref");
    char *text = NULL;
    CHECK_OK(run_stage(tpu_workers, &cpu, &text, NULL));
    CHECK_MSG(text && !strstr(text, "accelerator="), "%s", text ? text : "");
    free(text);
}

int main(void) {
    RUN(test_tpu_stage_hint);
    RUN(test_tpu_stage_on_this_machine);
    RUN(test_gpu_stage_hints);
    return bl_test_finish();
}
