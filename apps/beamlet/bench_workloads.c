/* The workloads of `beamlet bench` (see bench_workloads.h). Everything here goes through the
 * library's public API (bl_resnet_new, bl_model_plan, bl_model_forward, bl_optimizer,
 * bl_train, `beamlet infer`), so the figures are what a user of beamlet gets. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* popen, gethostname */
#endif
#include "bench_workloads.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "beamlet/json.h"

extern char **environ;

bl_status bench_resnet18_throughput(bl_device *dev, bl_resnet_stem stem, int hw, int classes, int batch,
                                    bool train, const bench_schedule *sched, const char *label,
                                    bench_throughput *out) {
    memset(out, 0, sizeof *out);
    bl_resnet_config cfg = bl_resnet_config_default();
    cfg.stem = stem;
    cfg.num_classes = classes;
    bl_model *m = NULL;
    bl_optimizer *opt = NULL;
    bl_train_batch io = {0};
    bl_tensor logits;
    size_t count = (size_t)batch * 3 * (size_t)hw * (size_t)hw;
    float *host = malloc(count * sizeof *host);
    int32_t *lab = malloc(sizeof *lab * (size_t)batch);
    bl_status s = host && lab ? BL_OK : bl_error(BL_ERR_OUT_OF_MEMORY, "bench inputs");
    if (s == BL_OK) s = bl_resnet_new(dev, &cfg, 1, &m);
    if (s == BL_OK) s = bl_model_plan(m, batch, hw, hw, train);
    if (s == BL_OK) s = bl_train_batch_alloc(dev, batch, 3, hw, hw, &io);
    if (s == BL_OK) {
        bl_rng rng;
        bl_rng_seed(&rng, 42);
        for (size_t i = 0; i < count; i++) host[i] = (float)bl_rng_normal(&rng);
        for (int i = 0; i < batch; i++) lab[i] = (int32_t)(i % classes);
        s = bl_train_batch_upload(&io, host, lab, batch);
    }
    if (s == BL_OK && train) {
        bl_optimizer_config oc = bl_optimizer_config_sgd(0.01f, 0.9f, 5e-4f, true);
        s = bl_optimizer_new(m, &oc, &opt);
    }
    bl_progress bar;
    bool bar_on = false;
    double start = 0;
    /* Warm-up steps absorb one-time work (algorithm searches, weight reorders, BN folding) so
     * the timed steps are the steady state a long job sees. */
    for (int i = 0; s == BL_OK; i++) {
        if (i == sched->warmup_steps) {
            s = bl_device_synchronize(dev);
            start = bl_time_now();
            if (sched->progress) {
                bl_progress_begin(&bar, label, sched->min_steps);
                bar_on = true;
            }
        }
        if (s != BL_OK) break;
        s = train ? bl_train_step(m, opt, &io, 0.0f, 0.01f)
                  : bl_model_forward(m, &io.x, BL_FORWARD_INFER, &logits);
        if (s == BL_OK && i >= sched->warmup_steps) {
            s = bl_device_synchronize(dev);
            out->steps++;
            out->seconds = bl_time_now() - start;
            if (bar_on) {
                char suffix[64];
                snprintf(suffix, sizeof suffix, "%.1f img/s", (double)out->steps * batch / out->seconds);
                /* Past min_steps the bar would overflow; it only shows progress towards them. */
                bl_progress_step(&bar, out->steps <= sched->min_steps ? 1 : 0, suffix);
            }
            if (out->steps >= sched->min_steps && out->seconds >= sched->min_seconds) break;
        }
    }
    if (bar_on) bl_progress_end(&bar);
    if (s == BL_OK) {
        out->batch = batch;
        out->ms_per_step = 1e3 * out->seconds / out->steps;
        out->img_per_s = (double)out->steps * batch / out->seconds;
    }
    bl_optimizer_free(opt);
    bl_train_batch_release(&io);
    bl_model_free(m);
    free(host);
    free(lab);
    return s;
}

bl_status bench_first_prediction(const char *exe, const char *infer_device, const char *weights,
                                 const char *out_dir, double *seconds, int *exit_code) {
    char dev_arg[64], w_arg[600], o_arg[600];
    snprintf(dev_arg, sizeof dev_arg, "--device=%s", infer_device);
    snprintf(w_arg, sizeof w_arg, "--weights=%s", weights);
    snprintf(o_arg, sizeof o_arg, "--output=%s", out_dir);
    char *argv[] = {(char *)exe, "infer",          dev_arg,     w_arg, o_arg,
                    "--limit=1", "--batch_size=1", "--top_k=1", NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    double t0 = bl_time_now();
    int rc = posix_spawn(&pid, exe, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) return bl_error(BL_ERR_IO, "cannot start %s infer: %s", exe, strerror(rc));
    int status = 0;
    if (waitpid(pid, &status, 0) < 0)
        return bl_error(BL_ERR_IO, "waiting for %s infer: %s", exe, strerror(errno));
    *seconds = bl_time_now() - t0;
    *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return BL_OK;
}

bl_status bench_time_to_accuracy(const bl_training_config *cfg, double target, bench_tta *out) {
    memset(out, 0, sizeof *out);
    bl_training_result r;
    BL_TRY(bl_train(cfg, NULL, NULL, &r));
    char path[2 * BL_ML_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s/metrics.jsonl", cfg->output_dir, cfg->experiment_id);
    void *data;
    size_t size;
    BL_TRY(bl_file_read_all(path, &data, &size));
    char *text = data, *line = text, *end = text + size;
    double cumulative = 0;
    bl_status s = BL_OK;
    /* One record per epoch; "seconds" is that epoch's training plus evaluation time. */
    while (line < end && s == BL_OK) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        size_t len = nl ? (size_t)(nl - line) : (size_t)(end - line);
        bl_json *rec;
        if (len > 0 && (s = bl_json_parse(line, len, &rec)) == BL_OK) {
            cumulative += bl_json_number(bl_json_object_get(rec, "seconds"));
            double acc = bl_json_number(bl_json_object_get(rec, "test_accuracy"));
            out->epochs_run++;
            if (!out->reached) {
                out->accuracy = acc;
                out->seconds = cumulative;
                out->epoch = out->epochs_run;
                out->reached = acc >= target;
            }
            bl_json_free(rec);
        }
        line += len + 1;
    }
    if (!out->reached) out->epoch = 0;
    free(data);
    return s == BL_OK ? BL_OK : bl_error_context(s, "%s", path);
}

static void read_first_line_value(const char *path, const char *key, char *buf, size_t n) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, strlen(key)) != 0) continue;
        char *colon = strchr(line, ':');
        if (!colon) continue;
        colon++;
        while (*colon == ' ' || *colon == '\t') colon++;
        colon[strcspn(colon, "\n")] = 0;
        snprintf(buf, n, "%s", colon);
        break;
    }
    fclose(f);
}

void bench_machine_get(bench_machine *m) {
    memset(m, 0, sizeof *m);
    read_first_line_value("/proc/cpuinfo", "model name", m->cpu_model, sizeof m->cpu_model);
    m->logical_cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    char mem[64] = "";
    read_first_line_value("/proc/meminfo", "MemTotal", mem, sizeof mem);
    m->memory_gb = atof(mem) / (1024.0 * 1024.0); /* kB */
    struct utsname u;
    if (uname(&u) == 0) snprintf(m->kernel, sizeof m->kernel, "%.63s", u.release);
    if (gethostname(m->host, sizeof m->host) != 0) m->host[0] = 0;
    m->host[sizeof m->host - 1] = 0;
}

void bench_git_commit(char *buf, size_t n) {
    buf[0] = 0;
    FILE *p = popen("git rev-parse --short HEAD 2>/dev/null", "r");
    if (!p) return;
    char line[64] = "";
    if (!fgets(line, sizeof line, p)) line[0] = 0;
    pclose(p);
    line[strcspn(line, "\n")] = 0;
    if (!*line) return;
    /* Tracked files changed since the commit make the figures not quite that commit's. */
    bool dirty = false;
    p = popen("git status --porcelain --untracked-files=no 2>/dev/null", "r");
    if (p) {
        char tmp[8];
        dirty = fgets(tmp, sizeof tmp, p) != NULL;
        pclose(p);
    }
    snprintf(buf, n, "%s%s", line, dirty ? "-dirty" : "");
}
