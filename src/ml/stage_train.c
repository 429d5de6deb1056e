/* Stage 3 of the learning path: training on an accelerator, inside a pipeline.
 *
 * Stages 1 and 2 ran a trained model. Here the pipeline's element is a TrainingConfig and the
 * step that needs the accelerator *trains* one: Apache Beam has no training step; beamlet's
 * TrainModel DoFn is one. It checkpoints every epoch (atomically), so a killed run re-run with
 * the same --experiment_id resumes where it stopped.
 *
 *   Create([config]) -> TrainModel [accelerator hint] -> WriteResults (JSON lines) */
#include <stdio.h>
#include <string.h>

#include "ml/stage_common.h"

bl_status bl_stage_train_options(bl_options *o) {
    bl_training_config d = bl_training_config_default();
    snprintf(d.experiment_id, sizeof d.experiment_id, "stage3-fashion-resnet18");
    d.width = 16; /* narrow enough to train on a laptop CPU in minutes */
    d.epochs = 2;
    d.batch_size = 128;
    BL_TRY(bl_training_config_add_options(o, &d));
    return bl_options_add(o, "results", "",
                          "prefix of the results JSON file; empty: <output_dir>/stage3-results");
}

bl_status bl_stage_train(const bl_options *opts) {
    bl_training_config config;
    BL_TRY(bl_training_config_from_options(opts, &config));
    char results[1100];
    BL_TRY(stage_path(results, sizeof results, opts, "results", config.output_dir, "stage3-results"));
    bl_device_choice where;
    BL_TRY(stage_resolve(config.device, config.allow_cpu_fallback, &where));

    bl_pipeline *p;
    BL_TRY(stage_pipeline(opts, &where, &p));
    const void *elements[] = {&config};
    bl_pcoll *configs, *trained;
    bl_dofn train = bl_train_model_dofn();
    bl_status s = bl_create(p, "CreateConfig", bl_coder_training_config(), elements, 1, &configs);
    if (s == BL_OK) s = bl_pardo(p, "TrainModel", configs, &train, &trained);
    if (s == BL_OK) s = stage_hint_accelerator(p, "TrainModel", &where);
    if (s == BL_OK) s = bl_write_text(p, "WriteResults", trained, results, ".jsonl", 1, BL_TEXT_JSON);
    if (s == BL_OK) s = bl_pipeline_collect(p, trained);
    if (s == BL_OK && bl_pipeline_is_coordinator(p))
        printf("stage 3: training %s (%s, width %d) on %s with %d compute thread(s) for %d epochs, batch %d; "
               "checkpoints in %s/%s/\n",
               config.experiment_id, config.model, config.width, where.name,
               bl_pipeline_threads_per_worker(p), config.epochs, config.batch_size, config.output_dir,
               config.experiment_id);
    if (s == BL_OK) s = bl_pipeline_run(p);

    /* What the learner wants to see. */
    if (s == BL_OK && bl_pipeline_is_coordinator(p) && bl_pcoll_result_count(trained) == 1) {
        bl_training_result *r;
        s = bl_pcoll_result_value(trained, 0, (void **)&r);
        if (s == BL_OK) {
            printf("\n%s: test accuracy %.2f%% after %d/%d epochs, %.1f s, %.0f images/s on %s%s\n",
                   r->experiment_id, 100 * r->accuracy, r->epochs, config.epochs, r->wall_time_s,
                   r->images_per_s, r->device, r->resumed ? " (resumed from a checkpoint)" : "");
            if (r->weights_path[0])
                printf("weights: %s\n", r->weights_path);
            else
                printf("stopped early; run the same command again to resume from %s\n", r->checkpoint_path);
            printf("results: %s-00000-of-00001.jsonl\n", results);
            bl_coder_free_value(bl_coder_training_result(), r);
        }
    }
    bl_pipeline_free(p);
    return s;
}

const bl_command bl_stage_train_command = {
    .summary = "Stage 3 of the learning path: trains a ResNet inside a pipeline on the accelerator (a\n"
               "checkpoint every epoch; a re-run with the same --experiment_id resumes).",
    .pipeline_flags = true,
    .add_options = bl_stage_train_options,
    .run = bl_stage_train,
};
