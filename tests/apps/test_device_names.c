/* Every entry point accepts every device name, with the same answers: `beamlet infer`, `train`,
 * `sweep` and `demo`, and examples/01..04, each given each name of the resolver's table. On
 * this machine's devices: a name it can run on runs (tiny configurations), an accelerator it
 * does not have stops with the resolver's message (exit 1) unless --allow_cpu_fallback, which
 * runs on the CPU and says so loudly, and a misspelled name is a usage error (exit 2). */
#include "apps/app_test.h"
#include "bl_test.h"

#include <sys/wait.h>
#include <unistd.h>

#include "beamlet/devices.h"
#include "ml/stage_data.h"

static char root[64], bin[512];

typedef struct entry {
    const char *program; /* relative to the build folder */
    const char *args;    /* a tiny run's flags */
} entry;

static char data_dir[128];
static entry entries[8];

static void make_entries(void) {
    static char infer[512], train[512], sweep[512];
    snprintf(infer, sizeof infer, "--data_dir=%s --limit=8 --batch_size=8 --output=%s/infer", data_dir, root);
    snprintf(
        train, sizeof train,
        "--data_dir=%s --width=2 --epochs=1 --batch_size=16 --train_limit=32 --test_limit=16 --quiet=true "
        "--output_dir=%s/out",
        data_dir, root);
    snprintf(sweep, sizeof sweep,
             "--data_dir=%s --width=2 --epochs=1 --learning_rates=0.05 --batch_sizes=16 --models=resnet18 "
             "--train_limit=32 --test_limit=16 --output_dir=%s/sweep --num_workers=1",
             data_dir, root);
    entry e[8] = {
        {"beamlet infer", infer},
        {"examples/01_cpu_inference", infer},
        {"examples/02_gpu_inference", infer},
        {"beamlet train", train},
        {"examples/03_accelerator_training", train},
        {"beamlet sweep", sweep},
        {"examples/04_parallel_sweep", sweep},
        {"beamlet demo", "--steps=2 --batch_size=4 --width=2"},
    };
    memcpy(entries, e, sizeof e);
}

/* Runs `<bin>/<program> <args> --device=<name> <extra>` from the temp folder; returns the exit
 * status and the first 16 KiB of stdout and stderr. */
static int run(const entry *e, const char *name, const char *extra, char *out, size_t size) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd %s && %s/%s %s --device=%s %s 2>&1", root, bin, e->program, e->args, name,
             extra);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, size - 1, p);
    out[n] = 0;
    while (fgetc(p) != EOF) {}
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* What the resolver says about `name` on this machine, in-process: the verdict every entry
 * point must agree with. */
static bl_status verdict(const char *name, char *message, size_t size) {
    bl_device_request r = {name, -1, false, BL_F32};
    bl_device_choice c;
    bl_status s = bl_device_resolve(&r, &c);
    snprintf(message, size, "%s", s == BL_OK ? "" : bl_last_error());
    return s;
}

static void test_every_entry_every_name(void) {
    const char *names[] = {"auto",   "cpu", "cpu_ref", "gpu",     "cuda",
                           "cuda:0", "tpu", "tpu:1",   "xla:cpu", "xla:cuda"};
    char out[16384], why[512];
    for (size_t k = 0; k < sizeof entries / sizeof entries[0]; k++) {
        const entry *e = &entries[k];
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            bl_status s = verdict(names[i], why, sizeof why);
            /* Names this machine can run on run on every entry point; the costly ones (training
             * on the slow oracle) once per entry point is enough: "cpu", and "xla:cpu" for the
             * XLA backend's path through every program. */
            if (s == BL_OK && strcmp(names[i], "cpu") != 0 && strcmp(names[i], "xla:cpu") != 0) continue;
            int rc = run(e, names[i], "", out, sizeof out);
            if (s == BL_OK) {
                CHECK_MSG(rc == 0, "%s --device=%s: exit %d\n%s", e->program, names[i], rc, out);
                continue;
            }
            /* The resolver's own words, from every program. */
            CHECK_MSG(rc == 1 && strstr(out, why), "%s --device=%s: exit %d, wanted 1 with \"%s\"\n%s",
                      e->program, names[i], rc, why, out);
        }
        fprintf(stderr, "  %s: every name answered as the resolver does\n", e->program);
    }
}

/* An accelerator this machine lacks, with the fallback allowed: every entry point runs on the
 * CPU and announces it. */
static void test_fallback_everywhere(void) {
    char why[512], out[16384];
    if (verdict("gpu", why, sizeof why) == BL_OK) SKIP("this machine has a GPU: no fallback to see");
    for (size_t k = 0; k < sizeof entries / sizeof entries[0]; k++) {
        int rc = run(&entries[k], "gpu", "--allow_cpu_fallback", out, sizeof out);
        CHECK_MSG(rc == 0 && strstr(out, "NO NVIDIA GPU") && strstr(out, "Running on the CPU INSTEAD"),
                  "%s --device=gpu --allow_cpu_fallback: exit %d\n%s", entries[k].program, rc, out);
    }
}

static void test_misspelled_name(void) {
    char out[16384];
    for (size_t k = 0; k < sizeof entries / sizeof entries[0]; k++) {
        int rc = run(&entries[k], "gpu0", "", out, sizeof out);
        CHECK_MSG(rc == 2 && strstr(out, "unknown device 'gpu0' (valid: auto, cpu, cpu_ref, gpu, cuda"),
                  "%s --device=gpu0: exit %d\n%s", entries[k].program, rc, out);
    }
}

int main(void) {
    int ready = app_test_begin("names", bin, sizeof bin, root, sizeof root);
    if (ready != 0) return ready < 0;
    /* Tiny models: one thread is fastest on a loaded machine. */
    setenv("OMP_NUM_THREADS", "1", 0);
    snprintf(data_dir, sizeof data_dir, "%s/data", root);
    if (write_stage_dataset(data_dir, 48, 16) != 0) return 1;
    make_entries();
    RUN(test_every_entry_every_name);
    RUN(test_fallback_everywhere);
    RUN(test_misspelled_name);
    return app_test_finish(root);
}
