/* Stages 3 and 4 end to end on a tiny configuration on the CPU, on the direct and local
 * runners: training in a pipeline, the sweep with Reshuffle, BestModel and deployment, the
 * results as JSON lines, and a re-run that resumes every config from its checkpoint. */
#include "bl_test.h"

#include <unistd.h>

#include "beamlet/ml.h"
#include "stage_data.h"

static char root[64], data_dir[128];

static bl_training_config tiny(void) {
    bl_training_config c = bl_training_config_default();
    c.width = 2;
    c.epochs = 1;
    c.batch_size = 16;
    c.quiet = true;
    c.seed = 3;
    snprintf(c.device, sizeof c.device, "cpu_ref");
    snprintf(c.data_dir, sizeof c.data_dir, "%s", data_dir);
    snprintf(c.output_dir, sizeof c.output_dir, "%s/out", root);
    return c;
}

/* Builds and runs the stage-4 pipeline; returns the number of results and the best id. */
static void run_sweep(const char *runner, const char *serving, const char *results_prefix, int *n_results,
                      char best_id[BL_ML_ID_MAX], bool *all_resumed) {
    bl_options *opts;
    CHECK_OK(bl_options_new(&opts));
    CHECK_OK(bl_options_set(opts, "runner", runner));
    CHECK_OK(bl_options_set(opts, "num_workers", "2"));
    bl_training_config base = tiny();
    float lrs[] = {0.05f, 0.01f};
    int bss[] = {16};
    const char *models[] = {"resnet18", "resnet34"};
    bl_training_config *grid;
    int n;
    CHECK_OK(bl_sweep_grid(&base, lrs, 2, bss, 1, models, 2, &grid, &n));
    CHECK(n == 4);
    const void *elements[4];
    for (int i = 0; i < n; i++) elements[i] = &grid[i];
    bl_pipeline *p;
    CHECK_OK(bl_pipeline_new(opts, &p));
    bl_pcoll *configs, *spread, *results, *best, *deployed;
    bl_dofn train = bl_train_model_dofn(), deploy = bl_deploy_model_dofn(serving);
    CHECK_OK(bl_create(p, "CreateGrid", bl_coder_training_config(), elements, (size_t)n, &configs));
    CHECK_OK(bl_reshuffle(p, "Reshuffle", configs, &spread));
    CHECK_OK(bl_pardo(p, "TrainModel", spread, &train, &results));
    CHECK_OK(bl_combine_globally(p, "BestModel", results, bl_best_model_combine(), &best));
    CHECK_OK(bl_pardo(p, "DeployBestModel", best, &deploy, &deployed));
    CHECK_OK(bl_write_text(p, "WriteResults", results, results_prefix, ".jsonl", 1, BL_TEXT_JSON));
    CHECK_OK(bl_pipeline_collect(p, results));
    CHECK_OK(bl_pipeline_collect(p, deployed));
    CHECK_OK(bl_pipeline_run(p));
    *n_results = (int)bl_pcoll_result_count(results);
    double best_acc = -1;
    *all_resumed = true;
    for (int i = 0; i < *n_results; i++) {
        bl_training_result *r;
        CHECK_OK(bl_pcoll_result_value(results, i, (void **)&r));
        if (r->accuracy > best_acc) best_acc = r->accuracy;
        *all_resumed = *all_resumed && r->resumed;
        bl_coder_free_value(bl_coder_training_result(), r);
    }
    bl_training_result *b;
    CHECK_OK(bl_pcoll_result_value(deployed, 0, (void **)&b));
    CHECK_MSG(b->accuracy == best_acc, "deployed %s with %.3f, best accuracy %.3f", b->experiment_id,
              b->accuracy, best_acc);
    snprintf(best_id, BL_ML_ID_MAX, "%s", b->experiment_id);
    bl_coder_free_value(bl_coder_training_result(), b);
    int64_t trained = 0;
    bl_metric_result mr;
    if (bl_pipeline_metric(p, "TrainModel", "models_trained", &mr) == BL_OK) trained = mr.counter;
    CHECK(trained == 4);
    bl_pipeline_free(p);
    bl_options_free(opts);
    free(grid);
}

static void test_sweep_on_direct_and_local(void) {
    const char *runners[] = {"direct", "local"};
    char first_best[BL_ML_ID_MAX] = "";
    for (int k = 0; k < 2; k++) {
        char serving[256], results[256], path[300];
        snprintf(serving, sizeof serving, "%s/serving-%s", root, runners[k]);
        snprintf(results, sizeof results, "%s/results-%s", root, runners[k]);
        int n;
        char best[BL_ML_ID_MAX];
        bool resumed;
        run_sweep(runners[k], serving, results, &n, best, &resumed);
        fprintf(stderr, "  %s runner: %d results, best %s%s\n", runners[k], n, best,
                resumed ? " (all resumed)" : "");
        CHECK(n == 4);
        /* The second runner finds every config's checkpoint: nothing is trained twice, and
         * the answer is the same. */
        if (k == 0)
            snprintf(first_best, sizeof first_best, "%s", best);
        else
            CHECK(resumed && strcmp(best, first_best) == 0);
        snprintf(path, sizeof path, "%s/model.safetensors", serving);
        CHECK(bl_file_exists(path));
        snprintf(path, sizeof path, "%s/model.json", serving);
        CHECK(bl_file_exists(path));
        snprintf(path, sizeof path, "%s-00000-of-00001.jsonl", results);
        void *text;
        size_t len;
        CHECK_OK(bl_file_read_all(path, &text, &len));
        int lines = 0;
        for (size_t i = 0; i < len; i++) lines += ((char *)text)[i] == '\n';
        CHECK(lines == 4 && strstr(text, "\"experiment_id\":\"resnet34-lr0.01-bs16\"") != NULL);
        free(text);
    }
    /* The deployed model loads as a ResNet and its architecture is read from the file. */
    char path[300];
    snprintf(path, sizeof path, "%s/serving-local/model.safetensors", root);
    bl_safetensors *f;
    CHECK_OK(bl_safetensors_open(path, &f));
    bl_resnet_config cfg;
    CHECK_OK(bl_resnet_config_from_safetensors(f, "", &cfg));
    CHECK(cfg.in_channels == 1 && cfg.num_classes == 10 && cfg.width == 2 &&
          cfg.stem == BL_RESNET_STEM_CIFAR);
    bl_safetensors_close(f);
}

static void test_training_failure_fails_the_pipeline(void) {
    /* A config that cannot train (its dataset folder is missing) fails the run with the
     * trainer's message after the runner's retries, and no results file is written. */
    bl_options *opts;
    CHECK_OK(bl_options_new(&opts));
    CHECK_OK(bl_options_set(opts, "max_bundle_retries", "1"));
    bl_training_config c = tiny();
    snprintf(c.data_dir, sizeof c.data_dir, "%s/missing", root);
    snprintf(c.experiment_id, sizeof c.experiment_id, "broken");
    const void *elements[] = {&c};
    bl_pipeline *p;
    CHECK_OK(bl_pipeline_new(opts, &p));
    bl_pcoll *configs, *results;
    bl_dofn train = bl_train_model_dofn();
    char prefix[256], path[300];
    snprintf(prefix, sizeof prefix, "%s/failed", root);
    CHECK_OK(bl_create(p, "Create", bl_coder_training_config(), elements, 1, &configs));
    CHECK_OK(bl_pardo(p, "TrainModel", configs, &train, &results));
    CHECK_OK(bl_write_text(p, "Write", results, prefix, ".jsonl", 1, BL_TEXT_JSON));
    CHECK_ERR(bl_pipeline_run(p), BL_ERR_NOT_FOUND, "no train-images-idx3-ubyte");
    snprintf(path, sizeof path, "%s-00000-of-00001.jsonl", prefix);
    CHECK(!bl_file_exists(path));
    bl_pipeline_free(p);
    bl_options_free(opts);
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/beamlet_stages_XXXXXX");
    if (!mkdtemp(root)) return 1;
    snprintf(data_dir, sizeof data_dir, "%s/data", root);
    if (write_stage_dataset(data_dir, 96, 32) != 0) return 1;
    RUN(test_sweep_on_direct_and_local);
    RUN(test_training_failure_fails_the_pipeline);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    return bl_test_finish();
}
