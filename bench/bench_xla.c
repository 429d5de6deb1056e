/* The XLA benchmark: the shipped model's shape (ResNet-18, width 8, 1x28x28 Fashion-MNIST
 * images, CIFAR stem) on each device named, inference and a training step (forward, loss,
 * backward, SGD), batch 64. An XLA device runs twice: op by op (every op its own compiled
 * program, BEAMLET_OP_BY_OP=1) and whole step (the pass or the step as one program,
 * bl_device_program_begin). The first call is reported on its own with what it compiled (the
 * cache serves later calls); a training step compiles twice, the first step for parameters as
 * uploaded and the second for the steady layout, so the steady loop starts after two steps.
 * Steady figures are images per second over at least --seconds.
 *
 *   bench_xla [--seconds=S] [DEVICE ...]      default: cpu xla:cpu
 *
 * Prints one JSON object per line. Weights are the deterministic random init; the input is
 * already on the device, as in bench_cpu. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "beamlet/devices.h"
#include "beamlet/nn.h"
#ifdef BEAMLET_HAVE_XLA
#include "beamlet/xla.h"
#endif

#define DIE_IF(expr)                                                                                         \
    do {                                                                                                     \
        bl_status s_ = (expr);                                                                               \
        if (s_ != BL_OK) {                                                                                   \
            fprintf(stderr, "bench_xla: %s: %s\n", #expr, bl_last_error());                                  \
            exit(1);                                                                                         \
        }                                                                                                    \
    } while (0)

enum {
    BATCH = 64,
    HW = 28
};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static bl_resnet_config config(void) {
    bl_resnet_config c = bl_resnet_config_default();
    c.width = 8;
    c.in_channels = 1;
    c.stem = BL_RESNET_STEM_CIFAR;
    return c;
}

static void host_batch(float *x, int32_t *labels) {
    bl_rng rng;
    bl_rng_seed(&rng, 5);
    for (int i = 0; i < BATCH * HW * HW; i++) x[i] = (float)bl_rng_normal(&rng);
    for (int i = 0; i < BATCH; i++) labels[i] = (int32_t)bl_rng_below(&rng, 10);
}

/* XLA's counters (zero elsewhere): compiles and executions, to report compile time apart. */
typedef struct counters {
    double compiled, compile_s, executions, programs;
} counters;

static counters count(void) {
    counters c = {0};
#ifdef BEAMLET_HAVE_XLA
    bl_xla_stats st;
    bl_xla_stats_get(&st);
    c = (counters){(double)st.compiled, st.compile_seconds, (double)st.executions, (double)st.whole_programs};
#endif
    return c;
}

/* "whole_step" on a device that runs programs (XLA), else "op_by_op". */
static const char *mode_of(const bl_device *dev) {
    const char *obo = getenv("BEAMLET_OP_BY_OP");
    return bl_device_get_kind(dev) == BL_DEVICE_XLA && !(obo && strcmp(obo, "1") == 0) ? "whole_step"
                                                                                       : "op_by_op";
}

static void report(const bl_device *dev, const char *name, const char *workload, int warmup, double first,
                   int iters, double seconds, counters c0, counters c1, counters c2) {
    printf("{\"device\": \"%s\", \"backend\": \"%s\", \"mode\": \"%s\", \"workload\": \"%s\", \"batch\": "
           "%d, \"image\": \"1x%dx%d\", \"model\": \"resnet18-w8\", \"warmup_calls\": %d, "
           "\"warmup_s\": %.4f, \"warmup_compiles\": %.0f, \"warmup_compile_s\": %.4f, "
           "\"steady_s_per_batch\": %.5f, "
           "\"steady_images_per_s\": %.1f, \"iterations\": %d, \"steady_compiles\": %.0f, "
           "\"steady_executions_per_batch\": %.1f}\n",
           name, bl_device_backend_name(dev), mode_of(dev), workload, BATCH, HW, HW, warmup, first,
           c1.compiled - c0.compiled, c1.compile_s - c0.compile_s, seconds / iters, iters * BATCH / seconds,
           iters, c2.compiled - c1.compiled, (c2.executions - c1.executions) / iters);
    fflush(stdout);
}

/* The benchmark's model on device `name`, planned for BATCH (for training when asked). */
static bl_model *open_model(const char *name, bool training, bl_device **dev) {
    DIE_IF(bl_device_get(name, dev));
    bl_resnet_config cfg = config();
    bl_model *m;
    DIE_IF(bl_resnet_new(*dev, &cfg, 1, &m));
    DIE_IF(bl_model_plan(m, BATCH, HW, HW, training));
    return m;
}

static void bench_infer(const char *name, double min_seconds, const float *host) {
    bl_device *dev;
    bl_model *m = open_model(name, false, &dev);
    bl_tensor x, logits;
    int64_t shape[4] = {BATCH, 1, HW, HW};
    DIE_IF(bl_tensor_alloc(dev, BL_F32, 4, shape, &x));
    DIE_IF(bl_tensor_upload_nchw_f32(&x, host));
    DIE_IF(bl_device_synchronize(dev));
    counters c0 = count();
    double t0 = now();
    DIE_IF(bl_model_forward(m, &x, BL_FORWARD_INFER, &logits));
    DIE_IF(bl_device_synchronize(dev));
    double first = now() - t0;
    counters c1 = count();
    int iters = 0;
    t0 = now();
    do {
        DIE_IF(bl_model_forward(m, &x, BL_FORWARD_INFER, &logits));
        DIE_IF(bl_device_synchronize(dev));
        iters++;
    } while (now() - t0 < min_seconds);
    double seconds = now() - t0;
    report(dev, name, "inference", 1, first, iters, seconds, c0, c1, count());
    bl_tensor_release(&x);
    bl_model_free(m);
    bl_device_release(dev);
}

static void bench_train(const char *name, double min_seconds, const float *host, const int32_t *labels) {
    bl_device *dev;
    bl_model *m = open_model(name, true, &dev);
    bl_optimizer_config oc = bl_optimizer_config_sgd(0.01f, 0.9f, 5e-4f, true);
    bl_optimizer *opt;
    DIE_IF(bl_optimizer_new(m, &oc, &opt));
    bl_train_batch b;
    DIE_IF(bl_train_batch_alloc(dev, BATCH, 1, HW, HW, &b));
    DIE_IF(bl_train_batch_upload(&b, host, labels, BATCH));
    DIE_IF(bl_device_synchronize(dev));
    counters c0 = count();
    double t0 = now();
    DIE_IF(bl_train_step(m, opt, &b, 0.1f, oc.lr));
    DIE_IF(bl_device_synchronize(dev));
    DIE_IF(bl_train_step(m, opt, &b, 0.1f, oc.lr)); /* the second compile (whole step) */
    DIE_IF(bl_device_synchronize(dev));
    double first = now() - t0;
    counters c1 = count();
    int iters = 0;
    t0 = now();
    do {
        DIE_IF(bl_train_step(m, opt, &b, 0.1f, oc.lr));
        DIE_IF(bl_device_synchronize(dev));
        iters++;
    } while (now() - t0 < min_seconds);
    double seconds = now() - t0;
    counters c2 = count();
    float loss;
    DIE_IF(bl_train_batch_loss(&b, &loss));
    report(dev, name, "train_step_sgd", 2, first, iters, seconds, c0, c1, c2);
    fprintf(stderr, "bench_xla: %s: loss after %d steps %.4f\n", name, iters + 2, loss);
    bl_train_batch_release(&b);
    bl_optimizer_free(opt);
    bl_model_free(m);
    bl_device_release(dev);
}

int main(int argc, char **argv) {
    double seconds = 5;
    const char *devices[16];
    int ndev = 0;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--seconds=", 10) == 0)
            seconds = atof(argv[i] + 10);
        else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: bench_xla [--seconds=S] [DEVICE ...]\n");
            return 2;
        } else if (ndev < 16)
            devices[ndev++] = argv[i];
    }
    if (!ndev) devices[ndev++] = "cpu", devices[ndev++] = "xla:cpu";
    float *x = malloc(sizeof(float) * BATCH * HW * HW);
    int32_t labels[BATCH];
    host_batch(x, labels);
    for (int d = 0; d < ndev; d++) {
        /* An XLA device twice: each op its own program (BEAMLET_OP_BY_OP=1, read when the
         * handle opens), then whole steps as one program each. */
        bool xla = strncmp(devices[d], "xla", 3) == 0 || strncmp(devices[d], "tpu", 3) == 0;
        for (int pass = xla ? 0 : 1; pass < 2; pass++) {
            if (pass == 0) setenv("BEAMLET_OP_BY_OP", "1", 1);
            bench_infer(devices[d], seconds, x);
            bench_train(devices[d], seconds, x, labels);
            unsetenv("BEAMLET_OP_BY_OP");
        }
    }
    free(x);
    return 0;
}
