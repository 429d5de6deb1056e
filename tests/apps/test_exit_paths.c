/* Every program's exit paths, run as a user runs them: --help exits 0 and a usage error 2 (in
 * the sanitizer build, where a leak would turn either into LeakSanitizer's exit code); every
 * boolean flag refuses anything but true/false/1/0/yes/no, naming itself; and the failures that
 * would fail the same way again (a device this build lacks, a missing data folder, an output
 * folder that cannot be created) stop at once, with one line, after one attempt. */
#include "apps/app_test.h"
#include "bl_test.h"

#include <sys/wait.h>
#include <unistd.h>

#include "ml/stage_data.h"

static char root[64], bin[512], data_dir[128];

/* Runs `cd <root> && <bin>/<command> 2>&1`; returns the exit status and the output. */
static int run(const char *command, char *out, size_t size) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cd %s && %s/%s 2>&1", root, bin, command);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, size - 1, p);
    out[n] = 0;
    while (fgetc(p) != EOF) {}
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int count(const char *text, const char *needle) {
    int n = 0;
    for (const char *at = text; (at = strstr(at, needle)); at += strlen(needle)) n++;
    return n;
}

/* Lines of `text` that begin with `prefix`. */
static int lines_starting(const char *text, const char *prefix) {
    int n = 0;
    for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        n += strncmp(line, prefix, strlen(prefix)) == 0;
    return n;
}

typedef struct program {
    const char *command;
    const char *booleans[3];
} program;

static const program programs[] = {
    {"beamlet infer", {"allow_cpu_fallback"}},
    {"beamlet train", {"allow_cpu_fallback", "quiet"}},
    {"beamlet sweep", {"allow_cpu_fallback", "quiet"}},
    {"beamlet demo", {"allow_cpu_fallback"}},
    {"beamlet devices", {"allow_cpu_fallback"}},
    {"beamlet bench", {"quick", "time_to_accuracy"}},
    {"beamlet data", {NULL}},
    {"beamlet cheatsheet", {NULL}},
    {"examples/01_cpu_inference", {"allow_cpu_fallback"}},
    {"examples/02_gpu_inference", {"allow_cpu_fallback"}},
    {"examples/03_accelerator_training", {"allow_cpu_fallback", "quiet"}},
    {"examples/04_parallel_sweep", {"allow_cpu_fallback", "quiet"}},
};
#define NPROGRAMS (sizeof programs / sizeof programs[0])

static void test_help_and_usage_errors(void) {
    char cmd[1024], out[32768];
    for (size_t i = 0; i < NPROGRAMS; i++) {
        snprintf(cmd, sizeof cmd, "%s --help", programs[i].command);
        int rc = run(cmd, out, sizeof out);
        CHECK_MSG(rc == 0 && strstr(out, "usage:"), "%s: exit %d\n%s", cmd, rc, out);
        snprintf(cmd, sizeof cmd, "%s --no_such_flag=1", programs[i].command);
        rc = run(cmd, out, sizeof out);
        CHECK_MSG(rc == 2 && strstr(out, "unknown option --no_such_flag"), "%s: exit %d\n%s", cmd, rc, out);
        snprintf(cmd, sizeof cmd, "%s not-a-flag", programs[i].command);
        rc = run(cmd, out, sizeof out);
        CHECK_MSG(rc == 2 && strstr(out, "is not an option"), "%s: exit %d\n%s", cmd, rc, out);
    }
    int rc = run("beamlet", out, sizeof out);
    CHECK_MSG(rc == 2 && strstr(out, "usage: beamlet"), "beamlet: exit %d\n%s", rc, out);
    rc = run("beamlet nope", out, sizeof out);
    CHECK_MSG(rc == 2 && strstr(out, "unknown command 'nope'"), "beamlet nope: exit %d\n%s", rc, out);
}

static void test_strict_booleans(void) {
    char cmd[1024], out[32768], want[128];
    int checked = 0;
    for (size_t i = 0; i < NPROGRAMS; i++) {
        for (int k = 0; k < 3 && programs[i].booleans[k]; k++) {
            const char *flag = programs[i].booleans[k];
            snprintf(cmd, sizeof cmd, "%s --%s=maybe", programs[i].command, flag);
            snprintf(want, sizeof want, "--%s=maybe: not a boolean (true, false, 1, 0, yes or no)", flag);
            int rc = run(cmd, out, sizeof out);
            CHECK_MSG(rc == 2 && strstr(out, want), "%s: exit %d, wanted 2 with \"%s\"\n%s", cmd, rc, want,
                      out);
            checked++;
        }
    }
    fprintf(stderr, "  %d boolean flags refuse 'maybe'\n", checked);
    /* yes and no are booleans too. */
    snprintf(
        cmd, sizeof cmd,
        "beamlet train --data_dir=%s --device=cpu_ref --width=2 --epochs=1 --batch_size=16 --train_limit=32 "
        "--test_limit=16 --quiet=yes --allow_cpu_fallback=no --output_dir=%s/yes",
        data_dir, root);
    int rc = run(cmd, out, sizeof out);
    CHECK_MSG(rc == 0 && strstr(out, "test accuracy"), "%s: exit %d\n%s", cmd, rc, out);
}

/* The error is one line, said by the program once; no config was trained twice (at most
 * `configs` first attempts, no second one). */
static void check_failed_once(const char *cmd, const char *program, int configs, const char *cause) {
    char out[65536], prefix[64];
    int rc = run(cmd, out, sizeof out);
    snprintf(prefix, sizeof prefix, "%s: ", program);
    CHECK_MSG(rc == 1, "%s: exit %d, wanted 1\n%s", cmd, rc, out);
    CHECK_MSG(strstr(out, cause), "%s: no \"%s\" in\n%s", cmd, cause, out);
    CHECK_MSG(lines_starting(out, prefix) == 1, "%s: the error is not one line\n%s", cmd, out);
    CHECK_MSG(count(out, "(attempt 1)") <= configs && !strstr(out, "(attempt 2)") && !strstr(out, "retrying"),
              "%s: retried\n%s", cmd, out);
}

static void test_deterministic_failures_fail_once(void) {
    char cmd[1024], file[200], tiny[512];
    snprintf(file, sizeof file, "%s/a-file", root);
    CHECK_OK(bl_file_write_atomic(file, "x", 1));
    const char *stages[][2] = {{"beamlet train", ""},
                               {"beamlet sweep", "--runner=local --num_workers=2 --learning_rates=0.05,0.01 "
                                                 "--batch_sizes=16 --models=resnet18"}};
    for (int k = 0; k < 2; k++) {
        const char *program = stages[k][0];
        snprintf(tiny, sizeof tiny,
                 "%s %s --width=2 --epochs=1 --train_limit=32 --test_limit=16 --quiet=true%s", program,
                 stages[k][1], k == 0 ? " --batch_size=16" : "");
        /* A device this build does not have: stopped before the pipeline is built. */
        snprintf(cmd, sizeof cmd, "%s --data_dir=%s --device=tpu --output_dir=%s/out", tiny, data_dir, root);
        check_failed_once(cmd, program, k + 1, "device 'tpu': no TPU");
        /* A data folder that is not there. */
        snprintf(cmd, sizeof cmd, "%s --data_dir=%s/missing --device=cpu_ref --output_dir=%s/out", tiny, root,
                 root);
        check_failed_once(cmd, program, k + 1, "no train-images-idx3-ubyte");
        /* An output folder under a file: it can never be created. */
        snprintf(cmd, sizeof cmd, "%s --data_dir=%s --device=cpu_ref --output_dir=%s/sub", tiny, data_dir,
                 file);
        check_failed_once(cmd, program, k + 1, "cannot create directory: Not a directory");
    }
}

int main(void) {
    int ready = app_test_begin("exits", bin, sizeof bin, root, sizeof root);
    if (ready != 0) return ready < 0;
    setenv("OMP_NUM_THREADS", "1", 0); /* tiny models: one thread is fastest on a loaded machine */
    snprintf(data_dir, sizeof data_dir, "%s/data", root);
    if (write_stage_dataset(data_dir, 48, 16) != 0) return 1;
    RUN(test_help_and_usage_errors);
    RUN(test_strict_booleans);
    RUN(test_deterministic_failures_fail_once);
    return app_test_finish(root);
}
