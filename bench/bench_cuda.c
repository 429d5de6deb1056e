/* CUDA benchmark (a program, never a test): ResNet-18 training and inference throughput on one
 * GPU, eager (op by op) and replayed from a recorded CUDA graph, printed as JSON with the GPU,
 * driver, CUDA, cuDNN and cuBLAS versions and the date. bench/compare_cuda.py runs the same
 * workloads in PyTorch on the same GPU and prints the ratios.
 *
 *   bench_cuda [--out=FILE.json] [--iters=N] [--warmup=N] [--only=SUBSTRING[,SUBSTRING...]] [--device=cuda:0]
 *
 * Workloads: CIFAR ResNet-18 (3x3 stem, 32x32, 10 classes) training at batch 512, inference
 * at batch 1 (latency), 64 and 256; torchvision ResNet-18 (224x224, 1000 classes) inference
 * at batch 64 and 256. Inference runs with batch norm folded into the convolutions. Inputs
 * are random: speed does not depend on the values. Precision: what the model layer runs
 * (f32 today: no TF32, so compare with PyTorch f32 for like-for-like and with bf16 for the
 * targets). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "beamlet/cuda.h"
#include "beamlet/nn.h"

typedef struct workload {
    const char *name;
    bool training;
    bl_resnet_stem stem;
    int classes, hw, batch;
} workload;

static const workload workloads[] = {
    {"cifar_resnet18_train_b512", true, BL_RESNET_STEM_CIFAR, 10, 32, 512},
    {"cifar_resnet18_infer_b1", false, BL_RESNET_STEM_CIFAR, 10, 32, 1},
    {"cifar_resnet18_infer_b64", false, BL_RESNET_STEM_CIFAR, 10, 32, 64},
    {"cifar_resnet18_infer_b256", false, BL_RESNET_STEM_CIFAR, 10, 32, 256},
    {"imagenet_resnet18_infer_b64", false, BL_RESNET_STEM_IMAGENET, 1000, 224, 64},
    {"imagenet_resnet18_infer_b256", false, BL_RESNET_STEM_IMAGENET, 1000, 224, 256},
};
#define NWORK (int)(sizeof workloads / sizeof workloads[0])

typedef struct result {
    double img_per_s, ms_per_step, latency_ms_median;
} result;

typedef struct bench {
    bl_device *dev;
    bl_model *model;
    bl_optimizer *opt;
    bl_train_batch io;
    const workload *w;
} bench;

static bl_status step(bench *b) {
    bl_tensor logits;
    if (!b->w->training) return bl_model_forward(b->model, &b->io.x, BL_FORWARD_INFER, &logits);
    return bl_train_step(b->model, b->opt, &b->io, 0.1f, 0.05f);
}

static bl_status setup(bench *b, const char *device, const workload *w) {
    memset(b, 0, sizeof *b);
    b->w = w;
    BL_TRY(bl_device_get(device, &b->dev));
    bl_resnet_config cfg = bl_resnet_config_default();
    cfg.depth = 18, cfg.num_classes = w->classes, cfg.stem = w->stem;
    BL_TRY(bl_resnet_new(b->dev, &cfg, 1, &b->model));
    BL_TRY(bl_model_plan(b->model, w->batch, w->hw, w->hw, w->training));
    if (w->training) {
        bl_optimizer_config oc = bl_optimizer_config_sgd(0.05f, 0.9f, 5e-4f, true);
        BL_TRY(bl_optimizer_new(b->model, &oc, &b->opt));
    }
    BL_TRY(bl_train_batch_alloc(b->dev, w->batch, 3, w->hw, w->hw, &b->io));
    size_t n = (size_t)bl_tensor_numel(&b->io.x);
    float *h = malloc(n * sizeof(float));
    int32_t *lab = malloc((size_t)w->batch * sizeof(int32_t));
    if (!h || !lab) {
        free(h), free(lab);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "bench: input staging");
    }
    bl_rng rng;
    bl_rng_seed(&rng, 7);
    for (size_t i = 0; i < n; i++) h[i] = (float)bl_rng_normal(&rng);
    for (int i = 0; i < w->batch; i++) lab[i] = (int32_t)bl_rng_below(&rng, (uint64_t)w->classes);
    bl_status s = bl_train_batch_upload(&b->io, h, lab, w->batch);
    free(h), free(lab);
    return s;
}

static void teardown(bench *b) {
    bl_train_batch_release(&b->io);
    bl_optimizer_free(b->opt);
    bl_model_free(b->model);
    if (b->dev) bl_device_release(b->dev);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Times `iters` steps (graph replays when g is set). Batch 1 waits after every step and
 * reports the median latency; larger batches wait once at the end (throughput). */
static bl_status measure(bench *b, bl_cuda_graph *g, int iters, result *r) {
    int batch = b->w->batch;
    double *lat = malloc(sizeof(double) * (size_t)iters);
    if (!lat) return bl_error(BL_ERR_OUT_OF_MEMORY, "bench: latencies");
    bl_status s = bl_device_synchronize(b->dev);
    double t0 = bl_time_now();
    for (int i = 0; s == BL_OK && i < iters; i++) {
        double ts = bl_time_now();
        s = g ? bl_cuda_graph_launch(g) : step(b);
        if (s == BL_OK && batch == 1) s = bl_device_synchronize(b->dev);
        lat[i] = (bl_time_now() - ts) * 1e3;
    }
    if (s == BL_OK) s = bl_device_synchronize(b->dev);
    double elapsed = bl_time_now() - t0;
    r->img_per_s = (double)batch * iters / elapsed;
    r->ms_per_step = elapsed * 1e3 / iters;
    r->latency_ms_median = 0;
    if (batch == 1) {
        qsort(lat, (size_t)iters, sizeof(double), cmp_double);
        r->latency_ms_median = lat[iters / 2];
    }
    free(lat);
    return s;
}

static bl_status run_workload(const char *device, const workload *w, int warmup, int iters, result *eager,
                              result *graph) {
    bench b;
    bl_status s = setup(&b, device, w);
    /* Eager warm-up: algorithm searches, workspace growth and BN folding happen here. */
    for (int i = 0; s == BL_OK && i < warmup; i++) s = step(&b);
    if (s == BL_OK) s = measure(&b, NULL, iters, eager);
    bl_cuda_graph *g = NULL;
    if (s == BL_OK) s = bl_cuda_graph_begin(b.dev);
    if (s == BL_OK) {
        s = step(&b);
        bl_status e = bl_cuda_graph_end(b.dev, &g);
        if (s == BL_OK) s = e;
    }
    for (int i = 0; s == BL_OK && i < warmup; i++) s = bl_cuda_graph_launch(g);
    if (s == BL_OK) s = measure(&b, g, iters, graph);
    bl_cuda_graph_free(g);
    teardown(&b);
    return s;
}

static void json_result(FILE *f, const workload *w, const char *mode, const result *r, bool comma) {
    fprintf(f,
            "    {\"workload\": \"%s\", \"mode\": \"%s\", \"training\": %s, \"batch\": %d, "
            "\"image_size\": %d, \"img_per_s\": %.1f, \"ms_per_step\": %.4f",
            w->name, mode, w->training ? "true" : "false", w->batch, w->hw, r->img_per_s, r->ms_per_step);
    if (w->batch == 1) fprintf(f, ", \"latency_ms_median\": %.4f", r->latency_ms_median);
    fprintf(f, "}%s\n", comma ? "," : "");
}

/* Whether `name` contains one of the comma-separated substrings of `only`. */
static bool name_selected(const char *name, const char *only) {
    for (const char *p = only; *p;) {
        size_t n = strcspn(p, ",");
        for (const char *q = name; n > 0 && *q; q++)
            if (strncmp(q, p, n) == 0) return true;
        p += n + (p[n] == ',');
    }
    return false;
}

int main(int argc, char **argv) {
    const char *out = NULL, *only = NULL, *device = "cuda";
    int iters = 30, warmup = 5;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--out=", 6) == 0)
            out = argv[i] + 6;
        else if (strncmp(argv[i], "--iters=", 8) == 0)
            iters = atoi(argv[i] + 8);
        else if (strncmp(argv[i], "--warmup=", 9) == 0)
            warmup = atoi(argv[i] + 9);
        else if (strncmp(argv[i], "--only=", 7) == 0)
            only = argv[i] + 7;
        else if (strncmp(argv[i], "--device=", 9) == 0)
            device = argv[i] + 9;
        else {
            fprintf(stderr, "usage: bench_cuda [--out=FILE] [--iters=N] [--warmup=N] "
                            "[--only=SUBSTRING[,...]] [--device=cuda:N]\n");
            return 2;
        }
    }
    if (iters < 3 || warmup < 1) {
        fprintf(stderr, "bench_cuda: need --iters >= 3 and --warmup >= 1\n");
        return 2;
    }
    if (bl_device_count("cuda") == 0) {
        fprintf(stderr, "bench_cuda: no CUDA GPU visible; nothing to measure\n");
        return 1;
    }
    bl_device *dev;
    if (bl_device_get(device, &dev) != BL_OK) {
        fprintf(stderr, "bench_cuda: %s\n", bl_last_error());
        return 1;
    }
    char description[160];
    snprintf(description, sizeof description, "%s", bl_device_description(dev));
    bl_device_release(dev);
    bl_cuda_versions v;
    if (bl_cuda_versions_get(&v) != BL_OK) {
        fprintf(stderr, "bench_cuda: %s\n", bl_last_error());
        return 1;
    }
    char date[32];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));

    result eager[NWORK], graph[NWORK];
    bool ran[NWORK] = {false};
    int failures = 0;
    for (int i = 0; i < NWORK; i++) {
        if (only && !name_selected(workloads[i].name, only)) continue;
        fprintf(stderr, "%-30s ", workloads[i].name);
        fflush(stderr);
        if (run_workload(device, &workloads[i], warmup, iters, &eager[i], &graph[i]) != BL_OK) {
            fprintf(stderr, "FAILED: %s\n", bl_last_error());
            failures++;
            continue;
        }
        ran[i] = true;
        fprintf(stderr, "eager %10.1f img/s   graph %10.1f img/s", eager[i].img_per_s, graph[i].img_per_s);
        if (workloads[i].batch == 1)
            fprintf(stderr, "   latency eager %.3f ms, graph %.3f ms", eager[i].latency_ms_median,
                    graph[i].latency_ms_median);
        fputc('\n', stderr);
    }

    FILE *f = tmpfile();
    if (!f) return 1;
    fprintf(f, "{\n  \"benchmark\": \"bench_cuda\",\n  \"date\": \"%s\",\n", date);
    fprintf(f, "  \"device\": \"%s\",\n  \"precision\": \"f32\",\n  \"layout\": \"nhwc\",\n", description);
    fprintf(f,
            "  \"versions\": {\"cuda_runtime\": %d, \"cuda_driver\": %d, \"cudnn\": %d, "
            "\"cublas\": %d},\n",
            v.runtime, v.driver, v.cudnn, v.cublas);
    fprintf(f, "  \"iters\": %d,\n  \"warmup\": %d,\n  \"results\": [\n", iters, warmup);
    int last = -1;
    for (int i = 0; i < NWORK; i++)
        if (ran[i]) last = i;
    for (int i = 0; i < NWORK; i++) {
        if (!ran[i]) continue;
        json_result(f, &workloads[i], "eager", &eager[i], true);
        json_result(f, &workloads[i], "graph", &graph[i], i != last);
    }
    fprintf(f, "  ]\n}\n");
    long size = ftell(f);
    rewind(f);
    char *text = malloc((size_t)size + 1);
    size_t got = text ? fread(text, 1, (size_t)size, f) : 0;
    fclose(f);
    if (!text || got != (size_t)size) {
        free(text);
        return 1;
    }
    text[size] = '\0';
    fputs(text, stdout);
    if (out && bl_file_write_atomic(out, text, (size_t)size) != BL_OK) {
        fprintf(stderr, "bench_cuda: %s\n", bl_last_error());
        failures++;
    }
    free(text);
    return failures ? 1 : 0;
}
