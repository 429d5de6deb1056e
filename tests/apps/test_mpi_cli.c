/* The programs under `mpirun -np 3`, as a user runs them: what the coordinator prints (a stage's
 * header, its results, the metrics summary with each rank's compute threads) appears once, not
 * once per rank. A plain test that launches mpirun itself (a test inside mpirun cannot). */
#include "apps/app_test.h"
#include "bl_test.h"

#include <sys/wait.h>
#include <unistd.h>

#include "ml/stage_data.h"

static char root[64], bin[512], data_dir[128];

static int count(const char *text, const char *needle) {
    int n = 0;
    for (const char *at = text; (at = strstr(at, needle)); at += strlen(needle)) n++;
    return n;
}

/* `mpirun -np 3 <bin>/<command>` from the temp folder; returns the exit status and the output. */
static int mpirun(const char *command, char *out, size_t size) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cd %s && timeout 300 mpirun -np 3 --oversubscribe %s/%s 2>&1", root, bin,
             command);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, size - 1, p);
    out[n] = 0;
    while (fgetc(p) != EOF) {}
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_sweep_prints_once(void) {
    static char out[1 << 16];
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "beamlet sweep --runner=mpi --device=cpu_ref --width=2 --epochs=1 --learning_rates=0.05,0.01 "
             "--batch_sizes=16 --models=resnet18 --train_limit=32 --test_limit=16 --data_dir=%s "
             "--output_dir=%s/sweep",
             data_dir, root);
    int rc = mpirun(cmd, out, sizeof out);
    CHECK_MSG(rc == 0, "exit %d\n%s", rc, out);
    CHECK_MSG(count(out, "stage 4: sweeping 2 configs") == 1, "the header %d times\n%s",
              count(out, "stage 4: sweeping 2 configs"), out);
    CHECK_MSG(count(out, "mpi runner, 2 workers x ") == 2, "header and summary name 2 workers once each\n%s",
              out);
    CHECK_MSG(count(out, "metrics (mpi runner") == 1 && count(out, "\nbest: ") == 1, "summary not once\n%s",
              out);
    CHECK_MSG(count(out, "compute thread(s) per rank") == 1, "the ranks' threads not reported once\n%s", out);
}

static void test_train_prints_once(void) {
    static char out[1 << 16];
    char cmd[2048];
    snprintf(
        cmd, sizeof cmd,
        "beamlet train --runner=mpi --device=cpu_ref --width=2 --epochs=1 --batch_size=16 --train_limit=32 "
        "--test_limit=16 --quiet=true --data_dir=%s --output_dir=%s/train",
        data_dir, root);
    int rc = mpirun(cmd, out, sizeof out);
    CHECK_MSG(rc == 0, "exit %d\n%s", rc, out);
    CHECK_MSG(count(out, "stage 3: training") == 1 && count(out, "test accuracy") == 1, "not once\n%s", out);
}

int main(void) {
    if (system("command -v mpirun > /dev/null 2>&1") != 0) {
        fprintf(stderr, "SKIP: mpirun is not on PATH\n");
        return 0;
    }
    int ready = app_test_begin("mpi_cli", bin, sizeof bin, root, sizeof root);
    if (ready != 0) return ready < 0;
    setenv("OMP_NUM_THREADS", "1", 0);
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 1);
    snprintf(data_dir, sizeof data_dir, "%s/data", root);
    if (write_stage_dataset(data_dir, 48, 16) != 0) return 1;
    RUN(test_sweep_prints_once);
    RUN(test_train_prints_once);
    return app_test_finish(root);
}
