/* beamlet demo: the smallest end-to-end proof that the engine trains. A narrow CIFAR-style
 * ResNet-18 learns a generated 10-class image task (each class a striped pattern at its own
 * angle and frequency, under heavy noise) and the loss falls within a few dozen steps. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "beamlet/nn.h"
#include "commands.h"

#define IMG 32

/* One generated image of class k: oriented stripes plus Gaussian noise, 3 channels with a
 * class-dependent colour balance. */
static void make_image(bl_rng *rng, int k, float *img) {
    double angle = k * 3.14159265 / 10.0, freq = 0.25 + 0.05 * (k % 5);
    double phase = bl_rng_uniform(rng) * 6.283;
    double cs = cos(angle), sn = sin(angle);
    for (int c = 0; c < 3; c++) {
        double gain = 0.6 + 0.4 * ((k + c) % 3) / 2.0;
        for (int y = 0; y < IMG; y++)
            for (int x = 0; x < IMG; x++) {
                double s = sin(freq * (x * cs + y * sn) + phase);
                img[(c * IMG + y) * IMG + x] = (float)(gain * s + 0.8 * bl_rng_normal(rng));
            }
    }
}

static bl_status options(bl_options *o) {
    BL_TRY(bl_options_add(o, "device", "auto", BL_DEVICE_FLAG_HELP));
    BL_TRY(bl_options_add(o, "allow_cpu_fallback", "false", BL_FALLBACK_FLAG_HELP));
    BL_TRY(bl_options_add(o, "steps", "40", "training steps"));
    BL_TRY(bl_options_add(o, "batch_size", "32", "images per step"));
    BL_TRY(bl_options_add(o, "width", "16", "base channel count of the ResNet (64 in torchvision)"));
    BL_TRY(bl_options_add(o, "learning_rate", "0.05",
                          "SGD learning rate (Nesterov momentum 0.9, weight decay 5e-4)"));
    return bl_options_add(o, "seed", "1", "seed for weights and data");
}

static bl_status run(const bl_options *o) {
    int64_t steps, batch, width, seed;
    double lr;
    bl_device_request req = {bl_options_get(o, "device"), -1, false, BL_F32};
    BL_TRY(bl_options_get_int_in(o, "steps", 1, 100000, &steps));
    BL_TRY(bl_options_get_int_in(o, "batch_size", 2, 4096, &batch));
    BL_TRY(bl_options_get_int_in(o, "width", 1, 512, &width));
    BL_TRY(bl_options_get_int_in(o, "seed", 0, INT64_C(1) << 40, &seed));
    BL_TRY(bl_options_get_double(o, "learning_rate", &lr));
    BL_TRY(bl_options_get_bool(o, "allow_cpu_fallback", &req.allow_cpu_fallback));
    if (!(lr > 0 && lr <= 10))
        return bl_error(BL_ERR_INVALID_ARG, "--learning_rate=%s: expected a number in (0, 10]",
                        bl_options_get(o, "learning_rate"));
    bl_device *dev;
    BL_TRY(bl_device_open(&req, &dev));
    printf("beamlet demo: ResNet-18 (CIFAR stem, width %lld) on %s [%s], batch %lld, %lld steps, seed %lld\n",
           (long long)width, bl_device_name(dev), bl_device_description(dev), (long long)batch,
           (long long)steps, (long long)seed);

    bl_resnet_config cfg = bl_resnet_config_default();
    cfg.stem = BL_RESNET_STEM_CIFAR;
    cfg.width = (int)width;
    bl_model *model = NULL;
    bl_optimizer *opt = NULL;
    bl_train_batch batch_io = {0};
    float *host_x = malloc(sizeof(float) * (size_t)(batch * 3 * IMG * IMG));
    int32_t *host_y = malloc(sizeof(int32_t) * (size_t)batch);
    bl_status s = BL_ERR_OUT_OF_MEMORY; /* until the set-up below succeeds */
    bl_optimizer_config ocfg = bl_optimizer_config_sgd((float)lr, 0.9f, 5e-4f, true);
    if (!host_x || !host_y) {
        bl_error(BL_ERR_OUT_OF_MEMORY, "demo: host batches");
        goto done;
    }
    if ((s = bl_resnet_new(dev, &cfg, (uint64_t)seed, &model)) != BL_OK ||
        (s = bl_model_plan(model, (int)batch, IMG, IMG, true)) != BL_OK ||
        (s = bl_optimizer_new(model, &ocfg, &opt)) != BL_OK ||
        (s = bl_train_batch_alloc(dev, (int)batch, 3, IMG, IMG, &batch_io)) != BL_OK)
        goto done;
    printf("model: %lld trainable parameters\n", (long long)bl_model_trainable_count(model));

    bl_rng rng;
    bl_rng_seed(&rng, (uint64_t)seed);
    bl_progress bar;
    bl_progress_begin(&bar, "training", steps);
    double t0 = bl_time_now(), first_loss = 0, window = 0;
    float l = 0;
    for (int64_t step = 0; step < steps; step++) {
        for (long i = 0; i < batch; i++) {
            host_y[i] = (int32_t)bl_rng_below(&rng, 10);
            make_image(&rng, host_y[i], host_x + i * 3 * IMG * IMG);
        }
        /* Linear warm-up over the first 5 steps keeps the first updates of a fresh network tame. */
        float step_lr = (float)lr * (step < 5 ? (float)(step + 1) / 5.0f : 1.0f);
        if ((s = bl_train_batch_upload(&batch_io, host_x, host_y, (int)batch)) != BL_OK ||
            (s = bl_train_step(model, opt, &batch_io, 0.0f, step_lr)) != BL_OK ||
            (s = bl_train_batch_loss(&batch_io, &l)) != BL_OK)
            goto done;
        if (step == 0) first_loss = l;
        window = step == 0 ? l : 0.8 * window + 0.2 * l;
        char suffix[64];
        snprintf(suffix, sizeof suffix, "loss %.3f", window);
        bl_progress_step(&bar, 1, suffix);
        if ((step + 1) % 10 == 0 || step == 0 || step + 1 == steps) {
            if (!bar.tty) printf("step %4lld  loss %.4f  (smoothed %.4f)\n", (long long)step + 1, l, window);
        }
    }
    bl_progress_end(&bar);
    double train_s = bl_time_now() - t0;

    /* Held-out accuracy in eval mode (running statistics), on fresh generated images. */
    int correct = 0, total = 0;
    for (int round = 0; round < 4; round++) {
        for (long i = 0; i < batch; i++) {
            host_y[i] = (int32_t)bl_rng_below(&rng, 10);
            make_image(&rng, host_y[i], host_x + i * 3 * IMG * IMG);
        }
        bl_tensor logits;
        if ((s = bl_train_batch_upload(&batch_io, host_x, NULL, (int)batch)) != BL_OK ||
            (s = bl_model_forward(model, &batch_io.x, BL_FORWARD_EVAL, &logits)) != BL_OK)
            goto done;
        float *hl = malloc(sizeof(float) * (size_t)(batch * 10));
        s = hl ? bl_tensor_download_f32(&logits, hl) : bl_error(BL_ERR_OUT_OF_MEMORY, "demo: logits");
        if (s != BL_OK) {
            free(hl);
            goto done;
        }
        for (long i = 0; i < batch; i++) {
            int best = 0;
            for (int k = 1; k < 10; k++)
                if (hl[i * 10 + k] > hl[i * 10 + best]) best = k;
            correct += best == host_y[i];
            total++;
        }
        free(hl);
    }
    printf("loss %.3f -> %.3f (smoothed) in %.1f s, %.0f images/s; held-out accuracy %.1f%% (chance 10%%)\n",
           first_loss, window, train_s, (double)(steps * batch) / train_s, 100.0 * correct / total);
    s = BL_OK;
done:
    bl_train_batch_release(&batch_io);
    bl_optimizer_free(opt);
    bl_model_free(model);
    bl_device_release(dev);
    free(host_x);
    free(host_y);
    return s;
}

const bl_command beamlet_demo_command = {
    .summary = "Trains a narrow CIFAR ResNet-18 on generated images and shows the loss falling.",
    .add_options = options,
    .run = run,
};
