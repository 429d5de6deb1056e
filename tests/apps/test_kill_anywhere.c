/* Kill anywhere, lose nothing. `beamlet train` and a 4-config `beamlet sweep` are each killed
 * with SIGKILL at 10 random moments (seeded, printed), re-run after every kill, and finally run
 * to the end: every model they leave must be byte-identical to an uninterrupted run's. And a
 * disk that fills up when a checkpoint is written (RLIMIT_FSIZE, the kernel's per-process file
 * size limit: writes past it fail with EFBIG) leaves the previous checkpoint as it was, with
 * an error naming the file.
 *
 * Tiny configurations on cpu_ref with one thread per worker, so a run is seconds and the
 * weights are the same bits every time (tests/ml/test_trainer.c). */
#include "apps/app_test.h"
#include "bl_test.h"

#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ml/stage_data.h"

#define SOAK_SEED 20261206u
#define KILLS 10

static char root[64], bin[512], data_dir[128];

/* Starts `<bin>/beamlet <args>` with its output appended to `log`; returns its pid. With
 * fsize_limit > 0 the child's files may not grow past it (and SIGXFSZ is ignored, so a write
 * past it fails with EFBIG instead of killing the process). */
static pid_t start(const char *args, const char *log, rlim_t fsize_limit) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "exec %s/beamlet %s >> %s 2>&1", bin, args, log);
    pid_t pid = fork();
    if (pid < 0) {
        /* -1 must never reach kill_after: kill(-1, SIGKILL) signals every process this user may
         * signal (the whole machine for root, ctest and the tests running beside this one). */
        fprintf(stderr, "  FAIL: cannot start beamlet: fork: %s\n", strerror(errno));
        exit(1);
    }
    if (pid == 0) {
        if (fsize_limit > 0) {
            struct rlimit r = {fsize_limit, fsize_limit};
            signal(SIGXFSZ, SIG_IGN);
            if (setrlimit(RLIMIT_FSIZE, &r) != 0) _exit(126);
        }
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int finish(pid_t pid) {
    int st = 0;
    while (waitpid(pid, &st, 0) < 0) {}
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static int run(const char *args, const char *log) { return finish(start(args, log, 0)); }

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {}
}

/* Starts the run, kills it `s` seconds later unless it ended first; says which happened. */
static bool kill_after(const char *args, const char *log, double s) {
    pid_t pid = start(args, log, 0);
    double t0 = bl_time_now();
    while (bl_time_now() - t0 < s) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) return false; /* finished before the moment */
        sleep_s(0.005);
    }
    kill(pid, SIGKILL);
    finish(pid);
    return true;
}

static bool same_file(const char *a, const char *b) {
    void *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    bool same = bl_file_read_all(a, &x, &nx) == BL_OK && bl_file_read_all(b, &y, &ny) == BL_OK && nx == ny &&
                memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return same;
}

static void show_log(const char *log) {
    void *text = NULL;
    size_t n = 0;
    if (bl_file_read_all(log, &text, &n) == BL_OK) fprintf(stderr, "  --- %s ---\n%s", log, (char *)text);
    free(text);
}

/* Counts the temp files ("<name>.tmp.XXXXXX") an atomic write leaves in `dir` when it fails. */
static int temp_files(const char *dir) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "ls -a %s | grep -c '\\.tmp\\.'", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p && fscanf(p, "%d", &n) != 1) n = -1;
    if (p) pclose(p);
    return n;
}

/* Epochs finished under `dir`: the lines of every <dir>/<experiment>/metrics.jsonl (the trainer
 * rewrites it, atomically, after each epoch's checkpoint). */
static int epochs_done(const char *dir) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "cat %s/*/metrics.jsonl 2>/dev/null | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = 0;
    if (p && fscanf(p, "%d", &n) != 1) n = 0;
    if (p) pclose(p);
    return n;
}

/* Runs `args` (which must name OUT for its output folder) uninterrupted into <root>/<name>-ref,
 * then killed KILLS times and finished into <root>/<name>-killed; each of `models` (paths
 * under the output folder) must then be byte-identical in both. Each kill comes at a uniformly
 * random moment of the re-run's first epoch and a half (the uninterrupted run's time over the
 * `epochs_in_a_row` one worker trains, start-up and saving counted as one more): start-up,
 * reading the checkpoint, training
 * steps, evaluation, writing the checkpoint and the metrics. Later moments would mostly find
 * the run already over, since each re-run resumes where the last checkpoint left it. */
static void soak(const char *name, const char *args_with_out, int total_epochs, int epochs_in_a_row,
                 const char *const *models, int n_models, uint64_t stream) {
    char ref_dir[128], killed_dir[128], args[2048], log[200], a[300], b[300];
    snprintf(ref_dir, sizeof ref_dir, "%s/%s-ref", root, name);
    snprintf(killed_dir, sizeof killed_dir, "%s/%s-killed", root, name);
    snprintf(log, sizeof log, "%s/%s.log", root, name);

    snprintf(args, sizeof args, args_with_out, ref_dir);
    double t0 = bl_time_now();
    int rc = run(args, log);
    double full = bl_time_now() - t0;
    CHECK_MSG(rc == 0, "%s: uninterrupted run exited %d", name, rc);
    if (rc != 0) return show_log(log);

    bl_rng base, rng;
    bl_rng_seed(&base, SOAK_SEED);
    rng = bl_rng_fork(&base, stream);
    snprintf(args, sizeof args, args_with_out, killed_dir);
    fprintf(stderr, "  %s: uninterrupted %.2f s; seed %u, killed at", name, full, SOAK_SEED);
    int landed = 0;
    for (int k = 0; k < KILLS; k++) {
        double at = bl_rng_uniform(&rng) * 1.5 * full / (epochs_in_a_row + 1);
        bool killed = kill_after(args, log, at);
        landed += killed;
        fprintf(stderr, " %.2f%s", at, killed ? "" : " (had ended)");
    }
    fprintf(stderr, " s; %d of %d epochs were done\n", epochs_done(killed_dir), total_epochs);
    /* A write cut short by SIGKILL cannot remove its temp file; it is litter, never a file the
     * next run reads (they only read final names). Counted, so the report shows it. */
    char cmd[300];
    snprintf(cmd, sizeof cmd, "find %s -name '*.tmp.*' | wc -l", killed_dir);
    FILE *p = popen(cmd, "r");
    int litter = 0;
    if (p && fscanf(p, "%d", &litter) != 1) litter = 0;
    if (p) pclose(p);
    if (litter) fprintf(stderr, "  %s: %d temp file(s) of killed writes left behind\n", name, litter);
    rc = run(args, log);
    CHECK_MSG(rc == 0, "%s: the run after %d kills exited %d", name, KILLS, rc);
    if (rc != 0) return show_log(log);
    /* Kills that all came after the end would prove nothing. */
    CHECK_MSG(landed >= KILLS / 2, "%s: only %d of %d kills landed in a running process", name, landed,
              KILLS);
    for (int i = 0; i < n_models; i++) {
        snprintf(a, sizeof a, "%s/%s", ref_dir, models[i]);
        snprintf(b, sizeof b, "%s/%s", killed_dir, models[i]);
        CHECK_MSG(bl_file_exists(a) && same_file(a, b), "%s: %s differs from the uninterrupted run's", name,
                  models[i]);
    }
}

static void test_train_killed_anywhere(void) {
    char args[1024];
    snprintf(args, sizeof args,
             "train --device=cpu_ref --width=8 --epochs=8 --batch_size=16 --train_limit=48 --test_limit=32 "
             "--seed=5 --quiet=true --experiment_id=soak --data_dir=%s --output_dir=%%s",
             data_dir);
    const char *models[] = {"soak/model.safetensors"};
    soak("train", args, 8, 8, models, 1, 1);
}

static void test_sweep_killed_anywhere(void) {
    char args[1024];
    snprintf(
        args, sizeof args,
        "sweep --runner=local --num_workers=2 --threads_per_worker=1 --device=cpu_ref --width=8 --epochs=2 "
        "--learning_rates=0.05,0.01 --batch_sizes=16 --models=resnet18,resnet34 --train_limit=48 "
        "--test_limit=32 --seed=5 --data_dir=%s --output_dir=%%s",
        data_dir);
    const char *models[] = {"resnet18-lr0.05-bs16/model.safetensors",
                            "resnet18-lr0.01-bs16/model.safetensors",
                            "resnet34-lr0.05-bs16/model.safetensors",
                            "resnet34-lr0.01-bs16/model.safetensors", "serving/model.safetensors"};
    soak("sweep", args, 4 * 2, 4 * 2 / 2, models, 5, 2); /* 4 configs x 2 epochs on 2 workers */
}

static void test_full_disk_at_checkpoint(void) {
    char args[1024], dir[200], ckpt[300], saved[300], log[200];
    snprintf(dir, sizeof dir, "%s/full-disk", root);
    snprintf(ckpt, sizeof ckpt, "%s/full/checkpoint.safetensors", dir);
    snprintf(saved, sizeof saved, "%s/epoch1.safetensors", root);
    snprintf(log, sizeof log, "%s/full-disk.log", root);
    const char *common = "train --device=cpu_ref --width=8 --epochs=2 --batch_size=16 --train_limit=48 "
                         "--test_limit=32 --seed=5 --quiet=true --experiment_id=full --max_bundle_retries=1";
    /* Epoch 1 on a roomy disk: its checkpoint is the one that must survive. */
    snprintf(args, sizeof args, "%s --stop_after_epochs=1 --data_dir=%s --output_dir=%s", common, data_dir,
             dir);
    int rc = run(args, log);
    CHECK_MSG(rc == 0, "epoch 1 exited %d", rc);
    struct stat st;
    if (rc != 0 || stat(ckpt, &st) != 0) return show_log(log);
    void *before = NULL;
    size_t n = 0;
    CHECK_OK(bl_file_read_all(ckpt, &before, &n));
    CHECK_OK(bl_file_write_atomic(saved, before, n));
    free(before);
    /* Epoch 2 with files limited to the epoch-1 checkpoint's size: the epoch-2 checkpoint (a
     * longer history) cannot be written whole. */
    snprintf(args, sizeof args, "%s --data_dir=%s --output_dir=%s", common, data_dir, dir);
    FILE *f = fopen(log, "w");
    if (f) fclose(f);
    rc = finish(start(args, log, (rlim_t)st.st_size));
    void *text = NULL;
    size_t len = 0;
    CHECK_OK(bl_file_read_all(log, &text, &len));
    const char *out = text ? (const char *)text : "";
    fprintf(stderr, "  files limited to %lld bytes: exit %d, %s", (long long)st.st_size, rc,
            strstr(out, "beamlet train: ") ? strstr(out, "beamlet train: ") : "(no error line)\n");
    CHECK_MSG(rc == 1, "exit %d, wanted 1", rc);
    CHECK_MSG(strstr(out, "writing checkpoint ") && strstr(out, ckpt) && strstr(out, "File too large"),
              "the error does not name %s and why:\n%s", ckpt, out);
    free(text);
    CHECK_MSG(same_file(ckpt, saved), "%s changed", ckpt);
    CHECK_MSG(temp_files(dir) == 0 && temp_files(strcat(dir, "/full")) == 0, "temp files left in %s", dir);
    /* With room again, the same command resumes from the surviving checkpoint and finishes. */
    rc = run(args, log);
    CHECK_MSG(rc == 0, "after the disk has room again: exit %d", rc);
}

int main(void) {
    int ready = app_test_begin("kill", bin, sizeof bin, root, sizeof root);
    if (ready != 0) return ready < 0;
    /* One thread: the same bits on every run, and the fastest on a loaded machine. */
    setenv("OMP_NUM_THREADS", "1", 1);
    snprintf(data_dir, sizeof data_dir, "%s/data", root);
    if (write_stage_dataset(data_dir, 96, 32) != 0) return 1;
    RUN(test_full_disk_at_checkpoint);
    RUN(test_train_killed_anywhere);
    RUN(test_sweep_killed_anywhere);
    return app_test_finish(root);
}
