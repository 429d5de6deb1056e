/* Stage 4 of the learning path: a parallel hyperparameter sweep.
 *
 * Stage 3 trained one config. Here a grid of configs is *reshuffled* over the workers (the new
 * concept: without Reshuffle a runner may keep every element on the worker that created them),
 * each worker trains its share in parallel, a CombineFn picks the best model, and a DoFn copies
 * it to a serving folder. Every result is also written as JSON lines.
 *
 *   build/examples/04_parallel_sweep --runner=local --num_workers=2      # threads
 *   mpirun -np 3 build/examples/04_parallel_sweep --runner=mpi            # ranks (one GPU each)
 *   build/examples/04_parallel_sweep --learning_rates=0.05,0.01 --batch_sizes=32 --models=resnet18 \
 *       --epochs=1 --width=4 --train_limit=2000 --device=cpu            # a tiny sweep on a laptop
 *
 * The default grid is the proposal's: learning rate {0.01, 0.001, 0.0001} x batch size
 * {16, 32, 64} x model {resnet18, resnet34} = 18 configs. The grid sets each config's learning
 * rate, batch size, model and experiment id, so the single-run flags --learning_rate,
 * --batch_size, --model and --experiment_id are refused (the grid would silently override them).
 *
 * The pipeline:
 *   Create(grid) -> Reshuffle -> TrainModel [accelerator hint] -+-> BestModel -> Deploy
 *                                                               +-> WriteResults (JSON lines) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "beamlet/ml.h"

static const char *program = "04_parallel_sweep"; /* argv[0]: "sweep" when run by the beamlet CLI */

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
    bl_options *opts;
    if (bl_options_new(&opts) != BL_OK) return fail("options");
    bl_training_config defaults = bl_training_config_default();
    defaults.width = 16;
    defaults.epochs = 2;
    defaults.quiet = true; /* parallel workers: one line per finished model instead of bars */
    if (bl_training_config_add_options(opts, &defaults) != BL_OK || bl_sweep_add_options(opts) != BL_OK ||
        bl_options_add(opts, "serving_dir", "",
                       "where the best model is deployed; empty: <output_dir>/serving") != BL_OK ||
        bl_options_add(opts, "results", "",
                       "prefix of the results JSON lines; empty: <output_dir>/sweep-results") != BL_OK ||
        bl_options_set_default(opts, "runner", "local") != BL_OK)
        return fail("options");
    if (bl_options_parse(opts, argc, argv) != BL_OK || bl_options_help(opts)) {
        char *usage = bl_options_usage(opts);
        if (!bl_options_help(opts)) fprintf(stderr, "%s: %s\n", program, bl_last_error());
        printf("usage: %s [--name=value ...]\n%s", program, usage);
        free(usage);
        return bl_options_help(opts) ? 0 : 2;
    }
    bl_training_config base;
    if (bl_training_config_from_options(opts, &base) != BL_OK) return fail_usage("config");
    char serving[1100], results_prefix[1100];
    snprintf(serving, sizeof serving, "%s/serving", base.output_dir);
    snprintf(results_prefix, sizeof results_prefix, "%s/sweep-results", base.output_dir);
    if ((!*bl_options_get(opts, "serving_dir") && bl_options_set(opts, "serving_dir", serving) != BL_OK) ||
        (!*bl_options_get(opts, "results") && bl_options_set(opts, "results", results_prefix) != BL_OK))
        return fail("options");

    /* 1. The grid: --learning_rates x --batch_sizes x --models around the base config. */
    bl_training_config *grid;
    int n;
    if (bl_sweep_grid_from_options(opts, &base, &grid, &n) != BL_OK) return fail_usage("grid");

    /* 2. The pipeline. */
    int gpus = bl_accelerator_count();
    bl_device_request req = {base.device, -1, base.allow_cpu_fallback};
    bl_device_choice choice;
    if (bl_device_resolve(&req, &choice) != BL_OK) return fail("device");
    bl_pipeline *p;
    if (bl_pipeline_new(opts, &p) != BL_OK) return fail("pipeline");
    if (!bl_options_given(opts, "worker_accelerators")) bl_pipeline_set_worker_accelerators(p, gpus);
    const void **elements = malloc(sizeof *elements * (size_t)n);
    for (int i = 0; i < n; i++) elements[i] = &grid[i];
    bl_pcoll *configs, *spread, *results, *best, *deployed;
    bl_dofn train = bl_train_model_dofn(), deploy = bl_deploy_model_dofn(bl_options_get(opts, "serving_dir"));
    bl_status s = bl_create(p, "CreateGrid", bl_coder_training_config(), elements, (size_t)n, &configs);
    /* The new concept: spread the configs over the workers before the expensive step. */
    if (s == BL_OK) s = bl_reshuffle(p, "Reshuffle", configs, &spread);
    if (s == BL_OK) s = bl_pardo(p, "TrainModel", spread, &train, &results);
    if (s == BL_OK && choice.accelerator)
        s = bl_pipeline_set_hints(p, "TrainModel", "accelerator=type:nvidia-gpu;count:1");
    if (s == BL_OK) s = bl_combine_globally(p, "BestModel", results, bl_best_model_combine(), &best);
    if (s == BL_OK) s = bl_pardo(p, "DeployBestModel", best, &deploy, &deployed);
    if (s == BL_OK)
        s = bl_write_text(p, "WriteResults", results, bl_options_get(opts, "results"), ".jsonl", 1,
                          BL_TEXT_JSON);
    if (s == BL_OK) s = bl_pipeline_collect(p, results);
    if (s == BL_OK) s = bl_pipeline_collect(p, deployed);
    if (s != BL_OK) return fail("building the pipeline");

    if (bl_pipeline_is_coordinator(p))
        printf("stage 4: sweeping %d configs (--learning_rates=%s x --batch_sizes=%s x --models=%s) on the "
               "%s runner, "
               "%d workers, %d GPU(s)\n",
               n, bl_options_get(opts, "learning_rates"), bl_options_get(opts, "batch_sizes"),
               bl_options_get(opts, "models"), bl_pipeline_runner_name(p), bl_pipeline_num_workers(p), gpus);
    double t0 = bl_time_now();
    if (bl_pipeline_run(p) != BL_OK) return fail("run");

    /* 3. The leaderboard and the deployed model. */
    if (bl_pipeline_is_coordinator(p)) {
        printf("\n%-28s %9s %8s %8s %9s\n", "experiment", "accuracy", "loss", "epochs", "seconds");
        for (size_t i = 0; i < bl_pcoll_result_count(results); i++) {
            bl_training_result *r;
            if (bl_pcoll_result_value(results, i, (void **)&r) != BL_OK) return fail("result");
            printf("%-28s %8.2f%% %8.4f %8d %9.1f\n", r->experiment_id, 100 * r->accuracy, r->loss, r->epochs,
                   r->wall_time_s);
            bl_coder_free_value(bl_coder_training_result(), r);
        }
        bl_training_result *b;
        if (bl_pcoll_result_value(deployed, 0, (void **)&b) != BL_OK) return fail("best");
        printf("\nbest: %s (accuracy %.2f%%), deployed to %s/model.safetensors\n", b->experiment_id,
               100 * b->accuracy, bl_options_get(opts, "serving_dir"));
        printf("all results: %s-00000-of-00001.jsonl; sweep took %.1f s\n", bl_options_get(opts, "results"),
               bl_time_now() - t0);
        bl_coder_free_value(bl_coder_training_result(), b);
        char *summary;
        if (bl_pipeline_metrics_summary(p, &summary) == BL_OK) printf("%s", summary), free(summary);
    }
    free(elements);
    free(grid);
    bl_pipeline_free(p);
    bl_options_free(opts);
    return 0;
}
