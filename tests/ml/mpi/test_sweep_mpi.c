/* Stage 4 under MPI (ctest runs this as `mpirun -np 3`): every rank builds the same sweep
 * pipeline, rank 0 hands the configs out, the workers train them, and rank 0 picks and deploys
 * the best model. */
#include "bl_test.h"

#include <mpi.h>

#include "../stage_data.h"
#include "beamlet/ml.h"

static void test_sweep_over_ranks(void) {
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    char root[64] = "/tmp/beamlet_mpi_sweep_XXXXXX";
    if (rank == 0 && (!mkdtemp(root) || write_stage_dataset(root, 64, 32) != 0)) root[0] = '\0';
    MPI_Bcast(root, sizeof root, MPI_CHAR, 0, MPI_COMM_WORLD);
    if (!root[0]) {
        CHECK_MSG(false, "rank 0 could not write the dataset");
        return;
    }
    bl_options *opts;
    CHECK_OK(bl_options_new(&opts));
    CHECK_OK(bl_options_set(opts, "runner", "mpi"));
    bl_training_config base = bl_training_config_default();
    base.width = 2;
    base.epochs = 1;
    base.batch_size = 16;
    base.quiet = true;
    snprintf(base.device, sizeof base.device, "cpu_ref");
    snprintf(base.data_dir, sizeof base.data_dir, "%s", root);
    snprintf(base.output_dir, sizeof base.output_dir, "%s/out", root);
    float lrs[] = {0.05f, 0.01f, 0.002f};
    int bss[] = {16};
    const char *models[] = {"resnet18"};
    bl_training_config *grid;
    int n;
    CHECK_OK(bl_sweep_grid(&base, lrs, 3, bss, 1, models, 1, &grid, &n));
    const void *elements[3] = {&grid[0], &grid[1], &grid[2]};
    char serving[128];
    snprintf(serving, sizeof serving, "%s/serving", root);
    bl_pipeline *p;
    CHECK_OK(bl_pipeline_new(opts, &p));
    bl_pcoll *configs, *spread, *results, *best, *deployed;
    bl_dofn train = bl_train_model_dofn(), deploy = bl_deploy_model_dofn(serving);
    CHECK_OK(bl_create(p, "CreateGrid", bl_coder_training_config(), elements, 3, &configs));
    CHECK_OK(bl_reshuffle(p, "Reshuffle", configs, &spread));
    CHECK_OK(bl_pardo(p, "TrainModel", spread, &train, &results));
    CHECK_OK(bl_combine_globally(p, "BestModel", results, bl_best_model_combine(), &best));
    CHECK_OK(bl_pardo(p, "DeployBestModel", best, &deploy, &deployed));
    CHECK_OK(bl_pipeline_collect(p, results));
    CHECK_OK(bl_pipeline_collect(p, deployed));
    CHECK_OK(bl_pipeline_run(p));
    if (bl_pipeline_is_coordinator(p)) {
        CHECK(bl_pcoll_result_count(results) == 3);
        CHECK(bl_pcoll_result_count(deployed) == 1);
        char path[200];
        snprintf(path, sizeof path, "%s/model.safetensors", serving);
        CHECK(bl_file_exists(path));
        char *summary;
        if (bl_pipeline_metrics_summary(p, &summary) == BL_OK) fprintf(stderr, "%s", summary), free(summary);
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", root);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    }
    bl_pipeline_free(p);
    bl_options_free(opts);
    free(grid);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    RUN(test_sweep_over_ranks);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    int finalized;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
    /* Only rank 0 reports, so ctest's log holds one summary line. */
    if (rank == 0) return bl_test_finish();
    return bl_test_cases_failed ? 1 : 0;
}
