/* beamlet bench: the standard suite on every device present, as one JSON results file.
 *
 * Per device: inference img/s of CIFAR ResNet-18 (32x32) and torchvision ResNet-18 (224x224),
 * training time for one and ten epochs of 50,000 CIFAR-sized images (measured per step and
 * scaled: the JSON says so), time to the target Fashion-MNIST accuracy (measured with bl_train
 * when asked, else extrapolated and labelled so), and time to first prediction (a child
 * `beamlet infer` process). The file records the machine, versions, load and date, and is what
 * `beamlet cheatsheet` reads. Each figure carries its "method" ("measured",
 * "measured_per_step_and_scaled", "extrapolated", "not_measured") so a file explains itself.
 * Unmeasured figures are null. Schema "beamlet-bench/1":
 *
 *   {"schema": "beamlet-bench/1", "kind": "measured" | "estimate", "source": (estimates only),
 *    "date", "host", "command", "options": {"quick", "time_to_accuracy"},
 *    "machine": {"cpu_model", "logical_cpus", "memory_gb", "kernel", "gpus", "load_average_start"},
 *    "versions": {"beamlet", "git_commit", "compiler", "onednn", ["cuda_runtime", "cuda_driver",
 *                 "cudnn", "cublas"]},
 *    "devices": [{"device", "kind": "cpu" | "cuda", "backend", "description", "label", "measured",
 *       "inference": {"cifar_resnet18" | "imagenet_resnet18": {"model", "precision", "batch",
 *                     "timed_steps", "seconds", "ms_per_step", "img_per_s", "method"}},
 *       "training": {"model", "precision", "method", "note", "epoch_images", "batch", "timed_steps",
 *                    "ms_per_step", "img_per_s", "epoch_seconds", "ten_epoch_seconds"},
 *       "time_to_accuracy": {"dataset", "target", "method" ("measured", "not_reached",
 *                            "measured_on_subset", "extrapolated", "not_measured"), "seconds",
 *                            + "basis" (extrapolated) or "recipe", "train_limit", "width", "batch",
 *                            "max_epochs", "epochs", "accuracy"},
 *       "time_to_first_prediction": {"command", "method", "runs_s", "seconds"}}],
 *    "load_average_end"} */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "beamlet/json.h"
#include "beamlet/stages.h"
#include "bench_workloads.h"
#include "commands.h"
#ifdef BEAMLET_HAVE_CUDA
#include "beamlet/cuda.h"
#endif

#define EPOCH_IMAGES 50000
/* The PyTorch reference recipe in DESIGN.md first reached 93% Fashion-MNIST test accuracy after
 * epoch 13 (93.6%); the extrapolation assumes beamlet's trainer needs as many epochs. */
#define REFERENCE_EPOCHS_TO_93 13
#define FASHION_TRAIN_IMAGES 60000

typedef struct bench_args {
    char command[1024]; /* the command line, as the results file records it */
    const char *devices, *output;
    char weights[1024];
    bool quick, tta;
    double tta_target;
    int64_t tta_epochs, tta_width, tta_batch, tta_limit;
} bench_args;

typedef struct device_batches {
    int infer_cifar, infer_224, train;
} device_batches;

static void write_throughput(bl_json_writer *w, const char *model, const char *precision, bl_status s,
                             const bench_throughput *t) {
    bl_json_write_begin_object(w);
    bl_json_write_key(w, "model");
    bl_json_write_string(w, model);
    bl_json_write_key(w, "precision");
    bl_json_write_string(w, precision);
    if (s == BL_OK) {
        bl_json_write_key(w, "batch");
        bl_json_write_int(w, t->batch);
        bl_json_write_key(w, "timed_steps");
        bl_json_write_int(w, t->steps);
        bl_json_write_key(w, "seconds");
        bl_json_write_double(w, t->seconds);
        bl_json_write_key(w, "ms_per_step");
        bl_json_write_double(w, t->ms_per_step);
        bl_json_write_key(w, "img_per_s");
        bl_json_write_double(w, t->img_per_s);
        bl_json_write_key(w, "method");
        bl_json_write_string(w, "measured");
    } else {
        bl_json_write_key(w, "img_per_s");
        bl_json_write_null(w);
        bl_json_write_key(w, "error");
        bl_json_write_string(w, bl_last_error());
    }
    bl_json_write_end_object(w);
}

static void key_num(bl_json_writer *w, const char *key, double v, bool have) {
    bl_json_write_key(w, key);
    if (have)
        bl_json_write_double(w, v);
    else
        bl_json_write_null(w);
}

static void key_str(bl_json_writer *w, const char *key, const char *v) {
    bl_json_write_key(w, key);
    bl_json_write_string(w, v);
}

static void sanitize(char *s) {
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-' ||
              *s == '_' || *s == '.'))
            *s = '-';
}

/* Time to accuracy: measured with bl_train when asked (expensive), else extrapolated from the
 * measured training throughput, which the JSON labels as such. */
static void run_tta(bl_json_writer *w, const bench_args *a, const char *device, double train_img_s) {
    bl_json_write_key(w, "time_to_accuracy");
    bl_json_write_begin_object(w);
    key_str(w, "dataset", "fashion-mnist");
    key_num(w, "target", a->tta_target, true);
    if (a->tta) {
        bl_training_config c = bl_training_config_default();
        char id[64];
        snprintf(id, sizeof id, "bench-tta-%s-%ld", device, (long)time(NULL));
        sanitize(id);
        snprintf(c.experiment_id, sizeof c.experiment_id, "%s", id);
        snprintf(c.device, sizeof c.device, "%s", device);
        snprintf(c.output_dir, sizeof c.output_dir, "beamlet-out/bench");
        c.epochs = (int)a->tta_epochs;
        c.width = (int)a->tta_width;
        c.batch_size = (int)a->tta_batch;
        /* A subset makes a smoke test of this path, not a time-to-accuracy figure: it is
         * labelled "measured_on_subset" and the cheat sheet leaves it out. */
        c.train_limit = c.test_limit = a->tta_limit;
        bench_tta t;
        printf("  time to %.0f%%: training %s (width %d, batch %d, %d epochs, one-cycle SGD) with bl_train\n",
               100 * a->tta_target, id, c.width, c.batch_size, c.epochs);
        fflush(stdout);
        bl_status s = bench_time_to_accuracy(&c, a->tta_target, &t);
        key_str(w, "method",
                a->tta_limit              ? "measured_on_subset"
                : s == BL_OK && t.reached ? "measured"
                                          : "not_reached");
        bl_json_write_key(w, "train_limit");
        bl_json_write_int(w, a->tta_limit);
        key_str(w, "recipe",
                "bl_training_config_default (ResNet-18, CIFAR stem, 1 input channel, SGD Nesterov 0.9, "
                "weight decay 5e-4, one-cycle, pad-4 crop + flip) with width, batch and epochs below");
        bl_json_write_key(w, "width");
        bl_json_write_int(w, c.width);
        bl_json_write_key(w, "batch");
        bl_json_write_int(w, c.batch_size);
        bl_json_write_key(w, "max_epochs");
        bl_json_write_int(w, c.epochs);
        if (s == BL_OK) {
            key_num(w, "seconds", t.seconds, t.reached);
            bl_json_write_key(w, "epochs");
            bl_json_write_int(w, t.reached ? t.epoch : t.epochs_run);
            key_num(w, "accuracy", t.accuracy, true);
            key_str(w, "metrics", "beamlet-out/bench/<experiment>/metrics.jsonl (not committed)");
            printf("  time to %.0f%%: %s after %d epochs, %.1f s (accuracy %.2f%%)\n", 100 * a->tta_target,
                   t.reached ? "reached" : "NOT reached", t.reached ? t.epoch : t.epochs_run, t.seconds,
                   100 * t.accuracy);
        } else {
            key_num(w, "seconds", 0, false);
            key_str(w, "error", bl_last_error());
            printf("  time to accuracy failed: %s\n", bl_last_error());
        }
    } else if (train_img_s > 0 && a->tta_target > 0.9299 && a->tta_target < 0.9301) {
        double s = REFERENCE_EPOCHS_TO_93 * (double)FASHION_TRAIN_IMAGES / train_img_s;
        key_str(w, "method", "extrapolated");
        key_num(w, "seconds", s, true);
        key_str(w, "basis",
                "13 epochs (the PyTorch reference recipe in DESIGN.md first reached 93% after epoch 13) x "
                "60,000 Fashion-MNIST training images / this device's measured training img/s (3-channel "
                "CIFAR ResNet-18 step, no data loading or evaluation); assumes beamlet's trainer needs as "
                "many epochs. Not a training run: use --time_to_accuracy to measure.");
    } else {
        key_str(w, "method", "not_measured");
        key_num(w, "seconds", 0, false);
    }
    bl_json_write_end_object(w);
}

static void run_first_prediction(bl_json_writer *w, const bench_args *a, const char *device) {
    bl_json_write_key(w, "time_to_first_prediction");
    bl_json_write_begin_object(w);
    char exe[1024];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    const char *infer_device = device; /* `beamlet infer` takes every device name */
    char out_dir[256];
    snprintf(out_dir, sizeof out_dir, "beamlet-out/bench/first-prediction-%s", device);
    sanitize(out_dir + strlen("beamlet-out/bench/"));
    char cmd[1400];
    snprintf(cmd, sizeof cmd,
             "beamlet infer --device=%s --weights=%s --output=%s --limit=1 --batch_size=1 --top_k=1",
             infer_device, a->weights, out_dir);
    key_str(w, "command", cmd);
    key_str(w, "method",
            "wall time from spawning the child process to its exit (process start, data and model "
            "loading, one prediction, writing it); the best of the runs (the first warms the file cache)");
    if (n <= 0 || !bl_file_exists(a->weights)) {
        key_num(w, "seconds", 0, false);
        key_str(w, "error",
                n <= 0 ? "cannot find this executable (/proc/self/exe)" : "no model file (--weights)");
        bl_json_write_end_object(w);
        printf("  first prediction: not measured (%s)\n", n <= 0 ? "no /proc/self/exe" : "no model file");
        return;
    }
    exe[n] = 0;
    int runs = a->quick ? 2 : 3, rc = 0;
    double best = -1;
    bl_json_write_key(w, "runs_s");
    bl_json_write_begin_array(w);
    for (int i = 0; i < runs; i++) {
        double s;
        if (bench_first_prediction(exe, infer_device, a->weights, out_dir, &s, &rc) != BL_OK || rc != 0)
            break;
        bl_json_write_double(w, s);
        if (best < 0 || s < best) best = s;
    }
    bl_json_write_end_array(w);
    key_num(w, "seconds", best, best >= 0);
    if (best < 0) {
        char msg[128];
        snprintf(msg, sizeof msg, "beamlet infer failed (exit %d): run the command above to see why", rc);
        key_str(w, "error", msg);
        printf("  first prediction: %s\n", msg);
    } else {
        printf("  first prediction: %.3f s (process start to exit)\n", best);
    }
    bl_json_write_end_object(w);
}

static bl_status run_device(bl_json_writer *w, const bench_args *a, const char *name,
                            const bench_machine *m) {
    bl_device *dev;
    BL_TRY(bl_device_get(name, &dev));
    bool cuda = bl_device_get_kind(dev) == BL_DEVICE_CUDA;
    /* Batches where each device is at home: the CPU's match bench/bench_cpu.c, the GPU's the
     * PyTorch H100 figures in DESIGN.md. */
    device_batches b = cuda ? (device_batches){256, 256, 512} : (device_batches){64, 16, 128};
    bench_schedule inf = {a->quick ? 1 : 2, a->quick ? 2 : 5, a->quick ? 0.5 : 5.0, true};
    bench_schedule tr = {a->quick ? 1 : 2, a->quick ? 2 : 10, a->quick ? 1.0 : 20.0, true};
    if (cuda) { /* GPU steps are short: more of them for a stable figure */
        inf.min_steps *= 10;
        tr.min_steps *= 5;
    }
    char label[300];
    if (cuda)
        snprintf(label, sizeof label, "%s: %s", bl_device_name(dev), bl_device_description(dev));
    else
        snprintf(label, sizeof label, "%s: %s (%d logical CPUs)", bl_device_name(dev),
                 *m->cpu_model ? m->cpu_model : "CPU", m->logical_cpus);
    printf("%s [%s]\n", label, bl_device_backend_name(dev));
    fflush(stdout);
    bl_json_write_begin_object(w);
    key_str(w, "device", bl_device_name(dev));
    key_str(w, "kind", cuda ? "cuda" : "cpu");
    key_str(w, "backend", bl_device_backend_name(dev));
    key_str(w, "description", bl_device_description(dev));
    key_str(w, "label", label);
    bl_json_write_key(w, "measured");
    bl_json_write_bool(w, true);

    bench_throughput t1, t2, t3;
    bl_json_write_key(w, "inference");
    bl_json_write_begin_object(w);
    bl_json_write_key(w, "cifar_resnet18");
    bl_status s1 = bench_resnet18_throughput(dev, BL_RESNET_STEM_CIFAR, 32, 10, b.infer_cifar, false, &inf,
                                             "CIFAR ResNet-18 inference", &t1);
    write_throughput(w, "ResNet-18, CIFAR stem, width 64, 10 classes, 3x32x32, batch norm folded", "f32", s1,
                     &t1);
    bl_json_write_key(w, "imagenet_resnet18");
    bl_status s2 = bench_resnet18_throughput(dev, BL_RESNET_STEM_IMAGENET, 224, 1000, b.infer_224, false,
                                             &inf, "ResNet-18 224x224 inference", &t2);
    write_throughput(w, "torchvision ResNet-18, 1000 classes, 3x224x224, batch norm folded", "f32", s2, &t2);
    bl_json_write_end_object(w);
    printf("  inference: CIFAR ResNet-18 %.1f img/s (batch %d), ResNet-18 224x224 %.1f img/s (batch %d)\n",
           s1 == BL_OK ? t1.img_per_s : -1, b.infer_cifar, s2 == BL_OK ? t2.img_per_s : -1, b.infer_224);

    bl_json_write_key(w, "training");
    bl_status s3 = bench_resnet18_throughput(dev, BL_RESNET_STEM_CIFAR, 32, 10, b.train, true, &tr,
                                             "CIFAR ResNet-18 training", &t3);
    bl_json_write_begin_object(w);
    key_str(w, "model", "ResNet-18, CIFAR stem, width 64, 10 classes, 3x32x32");
    key_str(w, "precision", "f32");
    key_str(w, "method", "measured_per_step_and_scaled");
    key_str(w, "note",
            "timed training steps (forward, loss, backward, SGD Nesterov) on device-resident random data, "
            "no data loading, augmentation or evaluation; epoch = 50,000 images / img_per_s");
    bl_json_write_key(w, "epoch_images");
    bl_json_write_int(w, EPOCH_IMAGES);
    if (s3 == BL_OK) {
        bl_json_write_key(w, "batch");
        bl_json_write_int(w, t3.batch);
        bl_json_write_key(w, "timed_steps");
        bl_json_write_int(w, t3.steps);
    }
    key_num(w, "ms_per_step", t3.ms_per_step, s3 == BL_OK);
    key_num(w, "img_per_s", t3.img_per_s, s3 == BL_OK);
    key_num(w, "epoch_seconds", EPOCH_IMAGES / t3.img_per_s, s3 == BL_OK);
    key_num(w, "ten_epoch_seconds", 10.0 * EPOCH_IMAGES / t3.img_per_s, s3 == BL_OK);
    if (s3 != BL_OK) key_str(w, "error", bl_last_error());
    bl_json_write_end_object(w);
    if (s3 == BL_OK)
        printf("  training: %.1f img/s (batch %d): one epoch of 50,000 images %.0f s, ten %.0f s (scaled)\n",
               t3.img_per_s, t3.batch, EPOCH_IMAGES / t3.img_per_s, 10.0 * EPOCH_IMAGES / t3.img_per_s);
    else
        printf("  training failed: %s\n", bl_last_error());
    fflush(stdout);

    run_tta(w, a, bl_device_name(dev), s3 == BL_OK ? t3.img_per_s : -1);
    run_first_prediction(w, a, bl_device_name(dev));
    bl_json_write_end_object(w);
    bl_device_release(dev);
    return BL_OK;
}

static void write_header(bl_json_writer *w, const bench_args *a, const bench_machine *m, const char *date) {
    key_str(w, "schema", "beamlet-bench/1");
    key_str(w, "kind", "measured");
    key_str(w, "date", date);
    key_str(w, "host", m->host);
    key_str(w, "command", a->command);
    bl_json_write_key(w, "options");
    bl_json_write_begin_object(w);
    bl_json_write_key(w, "quick");
    bl_json_write_bool(w, a->quick);
    bl_json_write_key(w, "time_to_accuracy");
    bl_json_write_bool(w, a->tta);
    bl_json_write_end_object(w);
    bl_json_write_key(w, "machine");
    bl_json_write_begin_object(w);
    key_str(w, "cpu_model", m->cpu_model);
    bl_json_write_key(w, "logical_cpus");
    bl_json_write_int(w, m->logical_cpus);
    key_num(w, "memory_gb", m->memory_gb, m->memory_gb > 0);
    key_str(w, "kernel", m->kernel);
    bl_json_write_key(w, "gpus");
    bl_json_write_int(w, bl_device_count("cuda"));
    double load[3];
    bl_json_write_key(w, "load_average_start");
    bl_json_write_begin_array(w);
    if (getloadavg(load, 3) == 3)
        for (int i = 0; i < 3; i++) bl_json_write_double(w, load[i]);
    bl_json_write_end_array(w);
    bl_json_write_end_object(w);
}

static void write_versions(bl_json_writer *w, const char *cpu_description) {
    bl_json_write_key(w, "versions");
    bl_json_write_begin_object(w);
    key_str(w, "beamlet", "0.1.0");
    char commit[64];
    bench_git_commit(commit, sizeof commit);
    key_str(w, "git_commit", commit);
#if defined(__clang__)
    key_str(w, "compiler", "clang " __VERSION__);
#elif defined(__GNUC__)
    key_str(w, "compiler", "gcc " __VERSION__);
#endif
    /* The oneDNN backend names its library version in the device description. */
    const char *d = strstr(cpu_description, "oneDNN ");
    char onednn[32] = "";
    if (d) sscanf(d + 7, "%31[0-9.]", onednn);
    bl_json_write_key(w, "onednn");
    if (*onednn)
        bl_json_write_string(w, onednn);
    else
        bl_json_write_null(w);
#ifdef BEAMLET_HAVE_CUDA
    bl_cuda_versions v;
    if (bl_device_count("cuda") > 0 && bl_cuda_versions_get(&v) == BL_OK) {
        bl_json_write_key(w, "cuda_runtime");
        bl_json_write_int(w, v.runtime);
        bl_json_write_key(w, "cuda_driver");
        bl_json_write_int(w, v.driver);
        bl_json_write_key(w, "cudnn");
        bl_json_write_int(w, v.cudnn);
        bl_json_write_key(w, "cublas");
        bl_json_write_int(w, v.cublas);
    }
#endif
    bl_json_write_end_object(w);
}

static bl_status run(const bench_args *a) {
    bench_machine m;
    bench_machine_get(&m);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char date[32], day[16], output[600];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    strftime(day, sizeof day, "%Y-%m-%d", &tm);
    char host[64];
    snprintf(host, sizeof host, "%s", *m.host ? m.host : "host");
    sanitize(host);
    if (*a->output)
        snprintf(output, sizeof output, "%s", a->output);
    else
        snprintf(output, sizeof output, "bench/results/%s-%s.json", host, day);

    /* Devices: the list given, else the CPU and every GPU present. */
    char list[512];
    if (*a->devices) {
        snprintf(list, sizeof list, "%s", a->devices);
    } else {
        int len = snprintf(list, sizeof list, "cpu");
        for (int i = 0; i < bl_device_count("cuda") && len < (int)sizeof list - 16; i++)
            len += snprintf(list + len, sizeof list - (size_t)len, ",cuda:%d", i);
    }
    printf("beamlet bench%s: devices %s; results to %s\n", a->quick ? " --quick" : "", list, output);
    printf(
        "(a benchmark on a shared machine is only as quiet as the machine: the load average is recorded)\n");
    fflush(stdout);
    char cpu_description[256] = "";
    bl_device *cpu;
    if (bl_device_get("cpu", &cpu) == BL_OK) {
        snprintf(cpu_description, sizeof cpu_description, "%s", bl_device_description(cpu));
        bl_device_release(cpu);
    }

    bl_json_writer *w;
    BL_TRY(bl_json_writer_new(&w));
    bl_json_write_begin_object(w);
    write_header(w, a, &m, date);
    write_versions(w, cpu_description);
    bl_json_write_key(w, "devices");
    bl_json_write_begin_array(w);
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        bl_status ds = run_device(w, a, tok, &m);
        if (ds != BL_OK) {
            bl_json_writer_free(w);
            return ds;
        }
    }
    bl_json_write_end_array(w);
    double load[3];
    bl_json_write_key(w, "load_average_end");
    bl_json_write_begin_array(w);
    if (getloadavg(load, 3) == 3)
        for (int i = 0; i < 3; i++) bl_json_write_double(w, load[i]);
    bl_json_write_end_array(w);
    bl_json_write_end_object(w);
    const char *text;
    size_t len;
    char dir[600];
    snprintf(dir, sizeof dir, "%s", output);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    bl_status s = bl_json_writer_finish(w, &text, &len);
    if (s == BL_OK && slash) s = bl_mkdirs(dir);
    if (s == BL_OK) {
        /* A trailing newline keeps the committed file friendly to diff and cat. */
        char *copy = malloc(len + 1);
        s = copy ? BL_OK : bl_error(BL_ERR_OUT_OF_MEMORY, "results");
        if (copy) {
            memcpy(copy, text, len);
            copy[len] = '\n';
            s = bl_file_write_atomic(output, copy, len + 1);
            free(copy);
        }
    }
    bl_json_writer_free(w);
    if (s == BL_OK) printf("results: %s (feed it to `beamlet cheatsheet`)\n", output);
    return s;
}

static bl_status options(bl_options *o) {
    BL_TRY(bl_options_add(o, "devices", "",
                          "comma-separated devices, e.g. cpu,cuda:0; empty: the CPU and every GPU present"));
    BL_TRY(bl_options_add(o, "quick", "false",
                          "fewer steps per figure (minutes on a 2-core CPU, seconds on a GPU)"));
    BL_TRY(bl_options_add(o, "time_to_accuracy", "false",
                          "train with bl_train until the target accuracy (expensive: hours on a CPU); "
                          "otherwise time to accuracy is extrapolated and labelled so"));
    BL_TRY(bl_options_add(o, "target_accuracy", "0.93",
                          "Fashion-MNIST test accuracy the time-to-accuracy figure aims for"));
    BL_TRY(bl_options_add(o, "tta_epochs", "15",
                          "with --time_to_accuracy: epochs at most (the shipped recipe's 15)"));
    BL_TRY(bl_options_add(o, "tta_width", "64", "with --time_to_accuracy: ResNet-18 base width"));
    BL_TRY(bl_options_add(o, "tta_batch_size", "512", "with --time_to_accuracy: batch size"));
    BL_TRY(bl_options_add(o, "tta_limit", "0",
                          "with --time_to_accuracy: train and test on the first N images only (a smoke test, "
                          "labelled measured_on_subset; 0 = all)"));
    BL_TRY(bl_options_add(
        o, "weights", "",
        "the model `beamlet infer` loads for time to first prediction; empty: the shipped one"));
    return bl_options_add(o, "output", "", "results file; empty: bench/results/<host>-<date>.json");
}

static const char *const flag_names[] = {"devices",    "quick",     "time_to_accuracy", "target_accuracy",
                                         "tta_epochs", "tta_width", "tta_batch_size",   "tta_limit",
                                         "weights",    "output"};

static bl_status read_args(const bl_options *o, bench_args *a) {
    memset(a, 0, sizeof *a);
    size_t used = (size_t)snprintf(a->command, sizeof a->command, "beamlet bench");
    for (size_t i = 0; i < sizeof flag_names / sizeof flag_names[0] && used < sizeof a->command; i++)
        if (bl_options_given(o, flag_names[i]))
            used += (size_t)snprintf(a->command + used, sizeof a->command - used, " --%s=%s", flag_names[i],
                                     bl_options_get(o, flag_names[i]));
    a->devices = bl_options_get(o, "devices");
    a->output = bl_options_get(o, "output");
    BL_TRY(bl_options_get_bool(o, "quick", &a->quick));
    BL_TRY(bl_options_get_bool(o, "time_to_accuracy", &a->tta));
    BL_TRY(bl_options_get_double(o, "target_accuracy", &a->tta_target));
    if (!(a->tta_target >= 0.01 && a->tta_target <= 1.0))
        return bl_error(BL_ERR_INVALID_ARG, "--target_accuracy=%s: expected a number in [0.01, 1]",
                        bl_options_get(o, "target_accuracy"));
    BL_TRY(bl_options_get_int_in(o, "tta_epochs", 1, 1000, &a->tta_epochs));
    BL_TRY(bl_options_get_int_in(o, "tta_width", 1, 1024, &a->tta_width));
    BL_TRY(bl_options_get_int_in(o, "tta_batch_size", 1, 65536, &a->tta_batch));
    BL_TRY(bl_options_get_int_in(o, "tta_limit", 0, INT64_C(1) << 40, &a->tta_limit));
    const char *w = bl_options_get(o, "weights");
    if (*w)
        snprintf(a->weights, sizeof a->weights, "%s", w);
    else if (bl_shipped_model_path(a->weights, sizeof a->weights) != BL_OK)
        a->weights[0] = '\0'; /* first prediction is then not measured, and the results say so */
    return BL_OK;
}

static bl_status bench(const bl_options *o) {
    bench_args a;
    BL_TRY(read_args(o, &a));
    return run(&a);
}

const bl_command beamlet_bench_command = {
    .summary =
        "Runs the standard benchmark suite on each device (inference img/s, training time for 1 and\n"
        "10 epochs of 50,000 CIFAR-sized images, time to accuracy, time to first prediction) and writes\n"
        "one JSON results file with the machine, versions and date. Run from the repository root.",
    .add_options = options,
    .run = bench,
};
