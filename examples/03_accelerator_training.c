/* Stage 3 of the learning path: training on an accelerator, inside a pipeline.
 *
 * Stages 1 and 2 ran a trained model. Here the pipeline's element is a TrainingConfig and the
 * step that needs the accelerator *trains* one: Apache Beam has no training step; beamlet's
 * TrainModel DoFn is one. It checkpoints every epoch (atomically), so a killed run re-run
 * with the same --experiment_id resumes where it stopped.
 *
 *   build/examples/03_accelerator_training                         # GPU if present, else CPU
 *   build/examples/03_accelerator_training --device=cpu --epochs=1 --width=8
 *   build/examples/03_accelerator_training --stop_after_epochs=1   # then run it again: resumes
 *
 * The pipeline:   Create([config]) -> TrainModel [accelerator hint] -> WriteResults (JSON) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "beamlet/ml.h"

static const char *program = "03_accelerator_training"; /* argv[0]: "train" under the beamlet CLI */

static int fail(const char *what) {
    fprintf(stderr, "%s: %s: %s\n", program, what, bl_last_error());
    return 1;
}

/* Bad flag values are usage errors, exit status 2, like an unknown flag. */
static int fail_usage(const char *what) {
    fail(what);
    return 2;
}

int main(int argc, char **argv) {
    if (argc > 0) {
        const char *slash = strrchr(argv[0], '/');
        program = slash ? slash + 1 : argv[0];
    }
    /* 1. Options: Beam's runner flags plus one flag per TrainingConfig field. */
    bl_options *opts;
    if (bl_options_new(&opts) != BL_OK) return fail("options");
    bl_training_config defaults = bl_training_config_default();
    snprintf(defaults.experiment_id, sizeof defaults.experiment_id, "stage3-fashion-resnet18");
    defaults.width = 16; /* narrow enough to train on a laptop CPU in minutes */
    defaults.epochs = 2;
    defaults.batch_size = 128;
    if (bl_training_config_add_options(opts, &defaults) != BL_OK ||
        bl_options_add(opts, "results", "",
                       "prefix of the results JSON file; empty: <output_dir>/stage3-results") != BL_OK)
        return fail("options");
    if (bl_options_parse(opts, argc, argv) != BL_OK || bl_options_help(opts)) {
        char *usage = bl_options_usage(opts);
        if (!bl_options_help(opts)) fprintf(stderr, "%s: %s\n", program, bl_last_error());
        printf("usage: %s [--name=value ...]\n%s", program, usage);
        free(usage);
        return bl_options_help(opts) ? 0 : 2;
    }
    bl_training_config config;
    if (bl_training_config_from_options(opts, &config) != BL_OK) return fail_usage("config");
    char results_prefix[1100];
    snprintf(results_prefix, sizeof results_prefix, "%s/stage3-results", config.output_dir);
    if (!*bl_options_get(opts, "results") && bl_options_set(opts, "results", results_prefix) != BL_OK)
        return fail("options");

    /* 2. The new concept of stage 2, reused: the training step asks for an accelerator, and
     *    the pipeline learns how many this machine's workers have. */
    bl_device_request req = {config.device, -1, config.allow_cpu_fallback};
    bl_device_choice choice;
    if (bl_device_resolve(&req, &choice) != BL_OK) return fail("device");
    bl_pipeline *p;
    if (bl_pipeline_new(opts, &p) != BL_OK) return fail("pipeline");
    if (!bl_options_given(opts, "worker_accelerators"))
        bl_pipeline_set_worker_accelerators(p, bl_accelerator_count());
    bool wants_gpu = choice.accelerator;

    /* 3. The pipeline: one config in, one TrainingResult out. */
    const void *elements[] = {&config};
    bl_pcoll *configs, *results;
    bl_dofn train = bl_train_model_dofn();
    bl_status s = bl_create(p, "CreateConfig", bl_coder_training_config(), elements, 1, &configs);
    if (s == BL_OK) s = bl_pardo(p, "TrainModel", configs, &train, &results);
    if (s == BL_OK && wants_gpu)
        s = bl_pipeline_set_hints(p, "TrainModel", "accelerator=type:nvidia-gpu;count:1");
    if (s == BL_OK)
        s = bl_write_text(p, "WriteResults", results, bl_options_get(opts, "results"), ".jsonl", 1,
                          BL_TEXT_JSON);
    if (s == BL_OK) s = bl_pipeline_collect(p, results);
    if (s != BL_OK) return fail("building the pipeline");

    printf("stage 3: training %s (%s, width %d) on %s for %d epochs, batch %d; checkpoints in %s/%s/\n",
           config.experiment_id, config.model, config.width, config.device, config.epochs, config.batch_size,
           config.output_dir, config.experiment_id);
    if (bl_pipeline_run(p) != BL_OK) return fail("run");

    /* 4. What the learner wants to see. */
    if (bl_pipeline_is_coordinator(p) && bl_pcoll_result_count(results) == 1) {
        bl_training_result *r;
        if (bl_pcoll_result_value(results, 0, (void **)&r) != BL_OK) return fail("result");
        printf("\n%s: test accuracy %.2f%% after %d/%d epochs, %.1f s, %.0f images/s on %s%s\n",
               r->experiment_id, 100 * r->accuracy, r->epochs, config.epochs, r->wall_time_s, r->images_per_s,
               r->device, r->resumed ? " (resumed from a checkpoint)" : "");
        if (r->weights_path[0])
            printf("weights: %s\n", r->weights_path);
        else
            printf("stopped early; run the same command again to resume from %s\n", r->checkpoint_path);
        printf("results: %s-00000-of-00001.jsonl\n", bl_options_get(opts, "results"));
        bl_coder_free_value(bl_coder_training_result(), r);
    }
    bl_pipeline_free(p);
    bl_options_free(opts);
    return 0;
}
