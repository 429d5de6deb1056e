/* Stage 4 of the learning path: a parallel hyperparameter sweep.
 *
 * Stage 3 trained one config. Here a grid of configs is *reshuffled* over the workers (the new
 * concept: without Reshuffle a runner may keep every element on the worker that created them),
 * each worker trains its share in parallel, a CombineFn picks the best model, and a DoFn copies
 * it to a serving folder. Every result is also written as JSON lines.
 *
 *   Create(grid) -> Reshuffle -> TrainModel [accelerator hint] -+-> BestModel -> Deploy
 *                                                               +-> WriteResults (JSON lines)
 *
 * The default grid is the proposal's: learning rate {0.01, 0.001, 0.0001} x batch size
 * {16, 32, 64} x model {resnet18, resnet34} = 18 configs. The grid sets each config's learning
 * rate, batch size, model and experiment id, so the single-run flags --learning_rate,
 * --batch_size, --model and --experiment_id are refused (the grid would silently override them). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ml/stage_common.h"

bl_status bl_stage_sweep_options(bl_options *o) {
    bl_training_config d = bl_training_config_default();
    d.width = 16;
    d.epochs = 2;
    d.quiet = true; /* parallel workers: one line per finished model instead of bars */
    BL_TRY(bl_training_config_add_options(o, &d));
    BL_TRY(bl_sweep_add_options(o));
    BL_TRY(bl_options_add(o, "serving_dir", "",
                          "where the best model is deployed; empty: <output_dir>/serving"));
    BL_TRY(bl_options_add(o, "results", "",
                          "prefix of the results JSON lines; empty: <output_dir>/sweep-results"));
    return bl_options_set_default(o, "runner", "local");
}

static bl_status print_leaderboard(bl_pcoll *results, bl_pcoll *deployed, const char *serving,
                                   const char *results_prefix) {
    printf("\n%-28s %9s %8s %8s %9s\n", "experiment", "accuracy", "loss", "epochs", "seconds");
    for (size_t i = 0; i < bl_pcoll_result_count(results); i++) {
        bl_training_result *r;
        BL_TRY(bl_pcoll_result_value(results, i, (void **)&r));
        printf("%-28s %8.2f%% %8.4f %8d %9.1f\n", r->experiment_id, 100 * r->accuracy, r->loss, r->epochs,
               r->wall_time_s);
        bl_coder_free_value(bl_coder_training_result(), r);
    }
    bl_training_result *b;
    BL_TRY(bl_pcoll_result_value(deployed, 0, (void **)&b));
    printf("\nbest: %s (accuracy %.2f%%), deployed to %s/model.safetensors\n", b->experiment_id,
           100 * b->accuracy, serving);
    printf("all results: %s-00000-of-00001.jsonl\n", results_prefix);
    bl_coder_free_value(bl_coder_training_result(), b);
    return BL_OK;
}

bl_status bl_stage_sweep(const bl_options *opts) {
    bl_training_config base;
    BL_TRY(bl_training_config_from_options(opts, &base));
    char serving[1100], results_prefix[1100];
    BL_TRY(stage_path(serving, sizeof serving, opts, "serving_dir", base.output_dir, "serving"));
    BL_TRY(
        stage_path(results_prefix, sizeof results_prefix, opts, "results", base.output_dir, "sweep-results"));
    bl_device_choice where;
    BL_TRY(stage_resolve(base.device, base.allow_cpu_fallback, &where));

    /* 1. The grid: --learning_rates x --batch_sizes x --models around the base config. */
    bl_training_config *grid;
    int n;
    BL_TRY(bl_sweep_grid_from_options(opts, &base, &grid, &n));
    const void **elements = malloc(sizeof *elements * (size_t)n);
    bl_pipeline *p = NULL;
    bl_status s = elements ? stage_pipeline(opts, &where, &p) : bl_error(BL_ERR_OUT_OF_MEMORY, "sweep grid");

    /* 2. The pipeline. */
    for (int i = 0; s == BL_OK && i < n; i++) elements[i] = &grid[i];
    bl_pcoll *configs, *spread, *results, *best, *deployed;
    bl_dofn train = bl_train_model_dofn(), deploy = bl_deploy_model_dofn(serving);
    if (s == BL_OK) s = bl_create(p, "CreateGrid", bl_coder_training_config(), elements, (size_t)n, &configs);
    /* The new concept: spread the configs over the workers before the expensive step. */
    if (s == BL_OK) s = bl_reshuffle(p, "Reshuffle", configs, &spread);
    if (s == BL_OK) s = bl_pardo(p, "TrainModel", spread, &train, &results);
    if (s == BL_OK) s = stage_hint_accelerator(p, "TrainModel", &where);
    if (s == BL_OK) s = bl_combine_globally(p, "BestModel", results, bl_best_model_combine(), &best);
    if (s == BL_OK) s = bl_pardo(p, "DeployBestModel", best, &deploy, &deployed);
    if (s == BL_OK) s = bl_write_text(p, "WriteResults", results, results_prefix, ".jsonl", 1, BL_TEXT_JSON);
    if (s == BL_OK) s = bl_pipeline_collect(p, results);
    if (s == BL_OK) s = bl_pipeline_collect(p, deployed);
    bl_accel_kind kind;
    int accels;
    stage_worker_accelerators(&where, &kind, &accels);
    char workers_have[96];
    if (bl_options_given(opts, "worker_accelerators"))
        snprintf(workers_have, sizeof workers_have, "--worker_accelerators=%.60s",
                 bl_options_get(opts, "worker_accelerators"));
    else
        snprintf(workers_have, sizeof workers_have, "%d %s", accels,
                 kind == BL_ACCEL_TPU ? "TPU chip(s)" : "accelerator(s)");
    if (s == BL_OK && bl_pipeline_is_coordinator(p))
        printf(
            "stage 4: sweeping %d configs (--learning_rates=%s x --batch_sizes=%s x --models=%s) on %s, %s "
            "runner, %d workers x %d compute thread(s), %s\n",
            n, bl_options_get(opts, "learning_rates"), bl_options_get(opts, "batch_sizes"),
            bl_options_get(opts, "models"), where.name, bl_pipeline_runner_name(p),
            bl_pipeline_num_workers(p), bl_pipeline_threads_per_worker(p), workers_have);
    double t0 = bl_time_now();
    if (s == BL_OK) s = bl_pipeline_run(p);

    /* 3. The leaderboard and the deployed model. */
    if (s == BL_OK && bl_pipeline_is_coordinator(p)) {
        s = print_leaderboard(results, deployed, serving, results_prefix);
        printf("sweep took %.1f s\n", bl_time_now() - t0);
        char *summary;
        if (s == BL_OK && bl_pipeline_metrics_summary(p, &summary) == BL_OK)
            printf("%s", summary), free(summary);
    }
    bl_pipeline_free(p);
    free(elements);
    free(grid);
    return s;
}

const bl_command bl_stage_sweep_command = {
    .summary = "Stage 4 of the learning path: a grid of training configs reshuffled over the workers and\n"
               "trained in parallel; the best model is deployed to a serving folder.",
    .pipeline_flags = true,
    .add_options = bl_stage_sweep_options,
    .run = bl_stage_sweep,
};
