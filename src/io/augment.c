/* From u8 datasets to normalized float batches, with the training augmentation of the CIFAR
 * recipe (pad-4 random crop, horizontal flip). Pad, crop and flip are one index mapping per
 * output pixel, so nothing is materialized between steps and the float batch is written once.
 * Randomness comes only from the caller's rng, in a fixed order, so a checkpointed rng state
 * replays the same batches after a resume. */
#include "beamlet/datasets.h"

#include <stdlib.h>
#include <string.h>

void bl_dataset_free(bl_dataset *ds) {
    if (!ds) return;
    free(ds->images);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}

static const float fashion_mnist_mean[1] = {BL_FASHION_MNIST_MEAN};
static const float fashion_mnist_std[1] = {BL_FASHION_MNIST_STD};

bl_batch_transform bl_batch_transform_fashion_mnist(bool train) {
    bl_batch_transform t = {
        .out_channels = 1,
        .out_height = 32,
        .out_width = 32,
        .mean = fashion_mnist_mean,
        .std = fashion_mnist_std,
        .crop_padding = train ? 4 : 0,
        .hflip = train,
    };
    return t;
}

bl_batch_transform bl_batch_transform_cifar10(bool train) {
    bl_batch_transform t = {
        .out_channels = 3,
        .out_height = 32,
        .out_width = 32,
        .mean = bl_cifar10_mean,
        .std = bl_cifar10_std,
        .crop_padding = train ? 4 : 0,
        .hflip = train,
    };
    return t;
}

bl_status bl_batch_transform_shape(const bl_dataset *ds, const bl_batch_transform *t, int *channels,
                                   int *height, int *width) {
    if (!ds || ds->channels <= 0 || ds->height <= 0 || ds->width <= 0) {
        return bl_error(BL_ERR_INVALID_ARG, "batch: empty or malformed dataset");
    }
    int c = ds->channels, h = ds->height, w = ds->width;
    if (t) {
        if (t->out_channels) c = t->out_channels;
        if (t->out_height) h = t->out_height;
        if (t->out_width) w = t->out_width;
        if (c != ds->channels && !(ds->channels == 1 && c == 3)) {
            return bl_error(BL_ERR_INVALID_ARG,
                            "batch: cannot make %d channels from %d (only "
                            "equal, or 3 from 1)",
                            c, ds->channels);
        }
        if (h < ds->height || w < ds->width || h > 4096 || w > 4096) {
            return bl_error(BL_ERR_INVALID_ARG,
                            "batch: output %dx%d from %dx%d images: padding "
                            "only grows images, up to 4096",
                            h, w, ds->height, ds->width);
        }
        if (t->crop_padding < 0 || t->crop_padding > 1024) {
            return bl_error(BL_ERR_INVALID_ARG, "batch: crop padding %d", t->crop_padding);
        }
        if ((t->mean == NULL) != (t->std == NULL)) {
            return bl_error(BL_ERR_INVALID_ARG, "batch: mean and std go together");
        }
        if (t->std) {
            for (int k = 0; k < c; k++) {
                if (!(t->std[k] > 0.0f)) {
                    return bl_error(BL_ERR_INVALID_ARG, "batch: std[%d] = %g", k, (double)t->std[k]);
                }
            }
        }
    }
    if (channels) *channels = c;
    if (height) *height = h;
    if (width) *width = w;
    return BL_OK;
}

bl_status bl_dataset_batch_f32(const bl_dataset *ds, const int64_t *indices, int n,
                               const bl_batch_transform *t, bl_rng *rng, float *out, int32_t *labels) {
    int oc, oh, ow;
    BL_TRY(bl_batch_transform_shape(ds, t, &oc, &oh, &ow));
    if (n < 0 || (n > 0 && (!indices || !out))) {
        return bl_error(BL_ERR_INVALID_ARG, "batch: %d images, indices %p, out %p", n, (const void *)indices,
                        (void *)out);
    }
    int pad = t ? t->crop_padding : 0;
    bool flip = t && t->hflip;
    if ((pad > 0 || flip) && !rng) {
        return bl_error(BL_ERR_INVALID_ARG, "batch: random crop/flip needs an rng");
    }
    for (int i = 0; i < n; i++) {
        if (indices[i] < 0 || indices[i] >= ds->count) {
            return bl_error(BL_ERR_INVALID_ARG,
                            "batch: index %lld (position %d) outside the "
                            "%lld images of %s",
                            (long long)indices[i], i, (long long)ds->count, ds->source);
        }
    }

    const int ic = ds->channels, ih = ds->height, iw = ds->width;
    /* Where the source image sits on the padded canvas: centred, odd extra at bottom/right. */
    const int top = (oh - ih) / 2, left = (ow - iw) / 2;
    /* The same arithmetic as ToTensor then Normalize, so values match torchvision's. */
    float *luts = malloc((size_t)oc * 256 * sizeof *luts);
    if (!luts) return bl_error(BL_ERR_OUT_OF_MEMORY, "batch: no memory for %d channels", oc);
    for (int c = 0; c < oc; c++) {
        float mean = t && t->mean ? t->mean[c] : 0.0f;
        float std = t && t->std ? t->std[c] : 1.0f;
        for (int v = 0; v < 256; v++) luts[(size_t)c * 256 + v] = ((float)v / 255.0f - mean) / std;
    }
    size_t plane = (size_t)oh * ow;
    for (int i = 0; i < n; i++) {
        int dy = 0, dx = 0;
        bool mirror = false;
        if (pad > 0) {
            dy = (int)bl_rng_below(rng, (uint64_t)(2 * pad + 1)) - pad;
            dx = (int)bl_rng_below(rng, (uint64_t)(2 * pad + 1)) - pad;
        }
        if (flip) mirror = (bl_rng_u64(rng) >> 63) != 0;
        const uint8_t *src = ds->images + (size_t)indices[i] * ic * ih * iw;
        float *dst = out + (size_t)i * oc * plane;
        for (int c = 0; c < oc; c++) {
            const uint8_t *sp = src + (size_t)(ic == oc ? c : 0) * ih * iw;
            const float *lut = luts + (size_t)c * 256;
            float *dp = dst + (size_t)c * plane;
            for (int y = 0; y < oh; y++) {
                /* Output (y, x) shows canvas (y + dy, x' + dx), x' mirrored when flipped. */
                int sy = y + dy - top;
                for (int x = 0; x < ow; x++) {
                    int cx = mirror ? ow - 1 - x : x;
                    int sx = cx + dx - left;
                    int v = (sy >= 0 && sy < ih && sx >= 0 && sx < iw) ? sp[sy * iw + sx] : 0;
                    dp[(size_t)y * ow + x] = lut[v];
                }
            }
        }
        if (labels) labels[i] = ds->labels ? ds->labels[indices[i]] : -1;
    }
    free(luts);
    return BL_OK;
}
