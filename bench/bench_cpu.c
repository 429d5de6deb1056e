/* The CPU benchmark: ResNet-18 inference and training throughput on a beamlet device, the
 * machine's measured f32 peak, and time to first prediction. Prints one JSON object per line;
 * bench/compare_cpu.py runs the same workloads in PyTorch in the same run and prints ratios.
 *
 *   bench_cpu [--device=cpu] [--threads=N] [--min-seconds=S] [--only=NAME] [--precision=P]
 *                                       throughput; P = f32 (default) or bf16 (bf16 convolutions,
 *                                       inference only: training workloads are skipped)
 *   bench_cpu --peak [--threads=N]      f32 FMA peak of the CPU (AVX-512 or AVX2 loop)
 *   bench_cpu --first [--device=cpu] [--precision=P]   one 224x224 image through a fresh torchvision-shaped
 *                                       ResNet-18: seconds since process start, peak RSS
 *
 * Timed regions hold only the model calls (input already on the device, in its layout), as
 * the PyTorch side times only model(x). Weights are the deterministic random init. */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "beamlet/cpu.h"
#include "beamlet/nn.h"

#define DIE_IF(expr)                                                                                         \
    do {                                                                                                     \
        bl_status s_ = (expr);                                                                               \
        if (s_ != BL_OK) {                                                                                   \
            fprintf(stderr, "bench_cpu: %s: %s\n", #expr, bl_last_error());                                  \
            exit(1);                                                                                         \
        }                                                                                                    \
    } while (0)

/* Multiply-adds of ResNet-18's convolutions and classifier for one image, counted as 2 FLOPs
 * each, the way the published 1.82 GFLOP (224x224) figure counts them. */
static double resnet18_flops(bl_resnet_stem stem, int hw, int classes) {
    double macs = 0;
    int h = hw, c = 64;
    if (stem == BL_RESNET_STEM_IMAGENET) {
        h = (h + 6 - 7) / 2 + 1;
        macs += (double)h * h * 64 * 3 * 49;
        h = (h + 2 - 3) / 2 + 1;
    } else {
        macs += (double)h * h * 64 * 3 * 9;
    }
    for (int stage = 0; stage < 4; stage++) {
        int k = 64 << stage;
        for (int block = 0; block < 2; block++) {
            int stride = (stage > 0 && block == 0) ? 2 : 1;
            int ho = (h - 1) / stride + 1;
            macs += (double)ho * ho * k * c * 9;                        /* conv1 */
            macs += (double)ho * ho * k * k * 9;                        /* conv2 */
            if (stride != 1 || c != k) macs += (double)ho * ho * k * c; /* downsample */
            h = ho;
            c = k;
        }
    }
    macs += 512.0 * classes;
    return 2 * macs;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* CPU time of all the process's threads: on a shared machine, one-thread runs are compared
 * by CPU time too, which preemption by other processes does not inflate. */
static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void fill(float *p, size_t n, uint64_t seed) {
    bl_rng rng;
    bl_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) p[i] = (float)bl_rng_normal(&rng);
}

typedef struct workload {
    const char *name;
    bl_resnet_stem stem;
    int hw, classes, batch;
    bool train;
} workload;

/* Opens `device` computing in `precision` (bl_device_set_precision). */
static bl_device *open_device(const char *device, bl_dtype precision) {
    bl_device *dev;
    bl_device_request req = {device, -1, false, precision};
    DIE_IF(bl_device_open(&req, &dev));
    return dev;
}

static void run_workload(const char *device, bl_dtype precision, const workload *w, double min_seconds,
                         int threads) {
    bl_device *dev = open_device(device, precision);
    bl_resnet_config cfg = bl_resnet_config_default();
    cfg.stem = w->stem;
    cfg.num_classes = w->classes;
    bl_model *m;
    DIE_IF(bl_resnet_new(dev, &cfg, 1, &m));
    DIE_IF(bl_model_plan(m, w->batch, w->hw, w->hw, w->train));
    bl_train_batch io;
    bl_tensor logits;
    DIE_IF(bl_train_batch_alloc(dev, w->batch, 3, w->hw, w->hw, &io));
    size_t count = (size_t)bl_tensor_numel(&io.x);
    float *host = malloc(count * sizeof(float));
    fill(host, count, 42);
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)w->batch);
    for (int i = 0; i < w->batch; i++) lab[i] = (int32_t)(i % w->classes);
    DIE_IF(bl_train_batch_upload(&io, host, lab, w->batch));
    bl_optimizer *opt = NULL;
    if (w->train) {
        bl_optimizer_config oc = bl_optimizer_config_sgd(0.01f, 0.9f, 5e-4f, true);
        DIE_IF(bl_optimizer_new(m, &oc, &opt));
    }
    /* One step: a training step (forward, loss, backward, SGD) or one folded-BN inference. */
    int warmup = 2, iters = 0;
    double start = 0, elapsed = 0, cpu_start = 0;
    int64_t prims_after_warmup = -1;
    for (int i = 0;; i++) {
        if (i == warmup) {
            DIE_IF(bl_device_synchronize(dev));
#ifdef BEAMLET_HAVE_ONEDNN
            prims_after_warmup = bl_cpu_primitives_created(dev);
#endif
            start = now();
            cpu_start = cpu_now();
        }
        if (w->train)
            DIE_IF(bl_train_step(m, opt, &io, 0.0f, 0.01f));
        else
            DIE_IF(bl_model_forward(m, &io.x, BL_FORWARD_INFER, &logits));
        if (i >= warmup) {
            DIE_IF(bl_device_synchronize(dev));
            iters++;
            elapsed = now() - start;
            if (iters >= 3 && elapsed >= min_seconds) break;
        }
    }
    double cpu_per_step = (cpu_now() - cpu_start) / iters;
    int64_t prims_end = -1;
#ifdef BEAMLET_HAVE_ONEDNN
    prims_end = bl_cpu_primitives_created(dev);
#endif
    double per_step = elapsed / iters,
           flops = resnet18_flops(w->stem, w->hw, w->classes) * (w->train ? 3 : 1);
    double img_s = w->batch / per_step;
    printf("{\"impl\":\"beamlet\",\"device\":\"%s\",\"backend\":\"%s\",\"precision\":\"%s\","
           "\"workload\":\"%s\",\"batch\":%d,"
           "\"threads\":%d,\"iters\":%d,\"ms_per_step\":%.3f,\"img_per_s\":%.2f,\"gflop_per_img\":%.4f,"
           "\"gflops\":%.1f,\"cpu_ms_per_step\":%.3f,\"img_per_cpu_s\":%.2f,\"new_primitives_in_timed_"
           "steps\":%lld}\n",
           device, bl_device_backend_name(dev), bl_dtype_name(precision), w->name, w->batch, threads, iters,
           1e3 * per_step, img_s, flops / 1e9, img_s * flops / 1e9, 1e3 * cpu_per_step,
           w->batch / cpu_per_step,
           (long long)(prims_end >= 0 && prims_after_warmup >= 0 ? prims_end - prims_after_warmup : -1));
    fflush(stdout);
    bl_optimizer_free(opt);
    free(lab);
    free(host);
    bl_train_batch_release(&io);
    bl_model_free(m);
    bl_device_release(dev);
}

/* 12 independent FMA chains per thread hide the 4-cycle latency on two FMA pipes. */
__attribute__((target("avx512f"))) static double fma_loop_avx512(long reps) {
    __m512 acc[12], a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) acc[i] = _mm512_set1_ps((float)i);
    for (long r = 0; r < reps; r++)
        for (int i = 0; i < 12; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
    float out[16];
    __m512 s = acc[0];
    for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, acc[i]);
    _mm512_storeu_ps(out, s);
    return out[0] + (double)reps * 12 * 16 * 2 * 0; /* keeps the chains live */
}

__attribute__((target("avx2,fma"))) static double fma_loop_avx2(long reps) {
    __m256 acc[12], a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) acc[i] = _mm256_set1_ps((float)i);
    for (long r = 0; r < reps; r++)
        for (int i = 0; i < 12; i++) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    float out[8];
    __m256 s = acc[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, acc[i]);
    _mm256_storeu_ps(out, s);
    return out[0];
}

static void run_peak(int threads) {
    bool avx512 = __builtin_cpu_supports("avx512f");
    int lanes = avx512 ? 16 : 8;
    long reps = 20000000;
    double sink = 0, t0 = now();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    sink += avx512 ? fma_loop_avx512(reps) : fma_loop_avx2(reps);
    double t = now() - t0;
    double flops = (double)threads * (double)reps * 12 * lanes * 2;
    printf("{\"impl\":\"beamlet\",\"workload\":\"peak_f32_fma\",\"isa\":\"%s\",\"threads\":%d,"
           "\"gflops\":%.1f,\"sink\":%.1f}\n",
           avx512 ? "avx512" : "avx2", threads, flops / t / 1e9, sink > 0 ? 0.0 : 1.0);
}

/* Time to first prediction: from process start (the caller measures wall time around the
 * whole process too) to logits on the host, building a fresh ResNet-18 and one 224x224 image. */
static void run_first(const char *device, bl_dtype precision, double t_main) {
    double t[6];
    t[0] = now();
    bl_device *dev = open_device(device, precision);
    bl_resnet_config cfg = bl_resnet_config_default();
    cfg.num_classes = 1000;
    bl_model *m;
    t[1] = now();
    DIE_IF(bl_resnet_new(dev, &cfg, 1, &m));
    t[2] = now();
    DIE_IF(bl_model_plan(m, 1, 224, 224, false));
    int64_t xs[4] = {1, 3, 224, 224};
    bl_tensor x, logits;
    DIE_IF(bl_tensor_alloc(dev, BL_F32, 4, xs, &x));
    float *host = malloc(3 * 224 * 224 * sizeof(float)), out[1000];
    fill(host, 3 * 224 * 224, 42);
    DIE_IF(bl_tensor_upload_nchw_f32(&x, host));
    t[3] = now();
    DIE_IF(bl_model_fold_batchnorm(m));
    t[4] = now();
    DIE_IF(bl_model_forward(m, &x, BL_FORWARD_INFER, &logits));
    DIE_IF(bl_tensor_download_f32(&logits, out));
    t[5] = now();
    int best = 0;
    for (int i = 1; i < 1000; i++)
        if (out[i] > out[best]) best = i;
    double total = now() - t_main;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"impl\":\"beamlet\",\"workload\":\"first_prediction\",\"device\":\"%s\",\"precision\":\"%s\","
           "\"class\":%d,"
           "\"seconds_in_main\":%.4f,\"peak_rss_mb\":%.1f,\"phases_s\":{\"open_device\":%.4f,"
           "\"build_and_init\":%.4f,\"plan_and_input\":%.4f,\"fold_bn\":%.4f,\"first_forward\":%.4f}}\n",
           device, bl_dtype_name(precision), best, total, ru.ru_maxrss / 1024.0, t[1] - t[0], t[2] - t[1],
           t[3] - t[2], t[4] - t[3], t[5] - t[4]);
    fflush(stdout);
    free(host);
    bl_tensor_release(&x);
    bl_model_free(m);
    bl_device_release(dev);
}

int main(int argc, char **argv) {
    double t_main = now();
    const char *device = "cpu", *only = NULL;
    int threads = 0;
    double min_seconds = 3.0;
    bool peak = false, first = false;
    bl_dtype precision = BL_F32;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--precision=", 12) == 0)
            DIE_IF(bl_precision_parse(argv[i] + 12, &precision));
        else if (strncmp(argv[i], "--device=", 9) == 0)
            device = argv[i] + 9;
        else if (strncmp(argv[i], "--threads=", 10) == 0)
            threads = atoi(argv[i] + 10);
        else if (strncmp(argv[i], "--min-seconds=", 14) == 0)
            min_seconds = atof(argv[i] + 14);
        else if (strncmp(argv[i], "--only=", 7) == 0)
            only = argv[i] + 7;
        else if (strcmp(argv[i], "--peak") == 0)
            peak = true;
        else if (strcmp(argv[i], "--first") == 0)
            first = true;
        else {
            fprintf(stderr, "usage: bench_cpu [--device=cpu] [--threads=N] [--min-seconds=S] [--only=NAME] "
                            "[--precision=f32|bf16] [--peak | --first]\n");
            return 2;
        }
    }
    if (first) {
        run_first(device, precision, t_main);
        return 0;
    }
    if (threads <= 0) threads = omp_get_num_procs();
#ifdef BEAMLET_HAVE_ONEDNN
    DIE_IF(bl_cpu_set_num_threads(threads));
#else
    omp_set_num_threads(threads);
#endif
    if (peak) {
        run_peak(threads);
        return 0;
    }
    const workload list[] = {
        {"cifar_resnet18_infer", BL_RESNET_STEM_CIFAR, 32, 10, 1, false},
        {"cifar_resnet18_infer", BL_RESNET_STEM_CIFAR, 32, 10, 64, false},
        {"imagenet_resnet18_infer", BL_RESNET_STEM_IMAGENET, 224, 1000, 1, false},
        {"imagenet_resnet18_infer", BL_RESNET_STEM_IMAGENET, 224, 1000, 16, false},
        {"cifar_resnet18_train", BL_RESNET_STEM_CIFAR, 32, 10, 128, true},
        {"cifar_resnet18_train", BL_RESNET_STEM_CIFAR, 32, 10, 16, true},
    };
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) {
        char tag[64];
        snprintf(tag, sizeof tag, "%s_b%d", list[i].name, list[i].batch);
        if (only && strcmp(tag, only) != 0) continue; /* exact: "_b1" is a prefix of "_b16" */
        if (list[i].train && precision != BL_F32) {
            fprintf(stderr, "bench_cpu: %s skipped: training is f32 only (bf16 is inference-only)\n", tag);
            continue;
        }
        run_workload(device, precision, &list[i], min_seconds, threads);
    }
    return 0;
}
