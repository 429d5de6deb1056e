/* What the end-to-end training tests share: a narrow CIFAR ResNet-18 trained with SGD on a
 * fixed synthetic data set on some device, starting from the weights of a model on another
 * device (copied in logical order, so both start from identical numbers whatever each device's
 * memory layout), and its loss per step. test_cuda_training and test_xla_training compare such
 * curves against cpu_ref's. */
#ifndef BL_TEST_TRAINING_CURVE_H
#define BL_TEST_TRAINING_CURVE_H

#include "bl_test.h"

#include "beamlet/devices.h"
#include "beamlet/nn.h"

#define CURVE_SEED 2024u
#define CURVE_CLASSES 10
#define CURVE_BATCHES 4
#define CURVE_MAX_BATCH 16
#define CURVE_HW 32

typedef struct curve_run {
    bl_device *dev;
    bl_model *model;
    bl_optimizer *opt;
    bl_train_batch io;
    int batch;
} curve_run;

static float curve_images[CURVE_BATCHES][CURVE_MAX_BATCH * 3 * CURVE_HW * CURVE_HW];
static int32_t curve_targets[CURVE_BATCHES][CURVE_MAX_BATCH];

/* Memorizable data: training must lower the loss. */
static inline void curve_make_data(void) {
    bl_rng rng;
    bl_rng_seed(&rng, CURVE_SEED);
    for (int b = 0; b < CURVE_BATCHES; b++) {
        for (int i = 0; i < CURVE_MAX_BATCH * 3 * CURVE_HW * CURVE_HW; i++)
            curve_images[b][i] = (float)bl_rng_normal(&rng);
        for (int i = 0; i < CURVE_MAX_BATCH; i++)
            curve_targets[b][i] = (int32_t)bl_rng_below(&rng, CURVE_CLASSES);
    }
}

/* A width-`width` model on `device`, planned for batches of up to `batch`, SGD with momentum;
 * weights copied from `copy_from` when given. */
static inline bl_status curve_setup(curve_run *r, const char *device, int width, int batch,
                                    const bl_model *copy_from) {
    memset(r, 0, sizeof *r);
    r->batch = batch;
    BL_TRY(bl_device_get(device, &r->dev));
    bl_resnet_config cfg = bl_resnet_config_default();
    cfg.width = width;
    cfg.num_classes = CURVE_CLASSES;
    cfg.stem = BL_RESNET_STEM_CIFAR;
    BL_TRY(bl_resnet_new(r->dev, &cfg, CURVE_SEED, &r->model));
    for (int i = 0; copy_from && i < bl_model_param_count(r->model); i++) {
        const bl_param_info *src = bl_model_param(copy_from, i), *dst = bl_model_param(r->model, i);
        int64_t n = bl_tensor_numel(&src->value);
        float *h = malloc(sizeof(float) * (size_t)n);
        bl_status s = h ? bl_tensor_download_f32(&src->value, h) : BL_ERR_OUT_OF_MEMORY;
        bl_tensor v = dst->value;
        if (s == BL_OK) s = bl_tensor_upload_nchw_f32(&v, h);
        free(h);
        BL_TRY(s);
    }
    BL_TRY(bl_model_plan(r->model, batch, CURVE_HW, CURVE_HW, true));
    bl_optimizer_config oc = bl_optimizer_config_sgd(0.1f, 0.9f, 5e-4f, true);
    BL_TRY(bl_optimizer_new(r->model, &oc, &r->opt));
    return bl_train_batch_alloc(r->dev, batch, 3, CURVE_HW, CURVE_HW, &r->io);
}

static inline void curve_teardown(curve_run *r) {
    bl_train_batch_release(&r->io);
    bl_optimizer_free(r->opt);
    bl_model_free(r->model);
    bl_device_release(r->dev);
}

/* Batch `step` of the data set, its first n images (n <= the planned batch). */
static inline bl_status curve_load(curve_run *r, int step, int n) {
    return bl_train_batch_upload(&r->io, curve_images[step % CURVE_BATCHES],
                                 curve_targets[step % CURVE_BATCHES], n);
}

/* The learning rate warms up, then decays: it changes every step of a `steps`-step run. */
static inline float curve_lr(int step, int steps) {
    return step < 5 ? 0.02f * (float)(step + 1) : 0.1f * (float)(steps - step) / (float)steps;
}

static inline bl_status curve_step(curve_run *r, int step, int steps, float *loss) {
    BL_TRY(bl_train_step(r->model, r->opt, &r->io, 0.1f, curve_lr(step, steps)));
    return bl_train_batch_loss(&r->io, loss);
}

/* |got - want| <= rel * |want| + abs, and finite. */
static inline bool curve_close(float got, float want, double rel, double abs_tol) {
    return isfinite(got) && fabs((double)got - (double)want) <= rel * fabs((double)want) + abs_tol;
}

#endif
