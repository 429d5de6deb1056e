/* The C ABI's models: a ResNet loaded from safetensors through RunInference's model handler, so
 * a process that asks twice for the same (weights, device, size) shares one copy, as the
 * pipeline engine's workers do. Batches of any size are split into the planned batch here, so
 * a caller never has to know it. */
#include <stdlib.h>
#include <string.h>

#include "beamlet/capi.h"
#include "beamlet/ml_inference.h"

struct bl_capi_model {
    bl_model_handler *handler;
    int in_channels, height, width, num_classes, max_batch;
};

static int input_side(const bl_resnet_config *rc) { return rc->stem == BL_RESNET_STEM_CIFAR ? 32 : 224; }

int bl_capi_model_peek(const char *weights_path, int *depth, int *width, int *in_channels, int *num_classes,
                       int *side) {
    bl_resnet_config rc;
    BL_TRY(bl_model_handler_peek(weights_path, &rc));
    if (depth) *depth = rc.depth;
    if (width) *width = rc.width;
    if (in_channels) *in_channels = rc.in_channels;
    if (num_classes) *num_classes = rc.num_classes;
    if (side) *side = input_side(&rc);
    return BL_OK;
}

int bl_capi_model_load(const bl_capi_device *device, const char *weights_path, int max_batch, int height,
                       int width, bl_capi_model **out) {
    if (!out) return bl_error(BL_ERR_INVALID_ARG, "bl_capi_model_load: NULL out");
    *out = NULL;
    if (!device) return bl_error(BL_ERR_INVALID_ARG, "bl_capi_model_load: no device");
    if (max_batch < 1 || max_batch > 65536)
        return bl_error(BL_ERR_INVALID_ARG, "planned batch %d not in [1, 65536]", max_batch);
    if ((height == 0) != (width == 0) || height < 0 || width < 0 || height > 4096 || width > 4096)
        return bl_error(BL_ERR_INVALID_ARG, "input size %dx%d: give both sides in [1, 4096], or 0x0", height,
                        width);
    bl_resnet_config rc;
    BL_TRY(bl_model_handler_peek(weights_path, &rc));
    if (height == 0) height = width = input_side(&rc);
    bl_capi_model *m = calloc(1, sizeof *m);
    if (!m) return bl_error(BL_ERR_OUT_OF_MEMORY, "model handle");
    /* The device is already resolved ("cpu", "cuda:0"): the handler keys its cache by that name. */
    bl_device_request req = {bl_capi_device_name(device), -1, false, BL_F32};
    bl_status s =
        bl_model_handler_acquire(weights_path, &req, max_batch, height, width, &m->handler, NULL, NULL);
    if (s != BL_OK) {
        free(m);
        return s;
    }
    const bl_resnet_config *loaded = bl_model_handler_config(m->handler);
    m->in_channels = loaded->in_channels;
    m->num_classes = loaded->num_classes;
    m->height = height;
    m->width = width;
    m->max_batch = max_batch;
    *out = m;
    return BL_OK;
}

void bl_capi_model_shape(const bl_capi_model *m, int *in_channels, int *height, int *width, int *num_classes,
                         int *max_batch) {
    if (in_channels) *in_channels = m ? m->in_channels : 0;
    if (height) *height = m ? m->height : 0;
    if (width) *width = m ? m->width : 0;
    if (num_classes) *num_classes = m ? m->num_classes : 0;
    if (max_batch) *max_batch = m ? m->max_batch : 0;
}

const char *bl_capi_model_device(const bl_capi_model *m) {
    return m ? bl_model_handler_device(m->handler) : "";
}

int bl_capi_model_infer(bl_capi_model *m, const float *x, int64_t n, float *logits) {
    if (!m) return bl_error(BL_ERR_INVALID_ARG, "bl_capi_model_infer: no model");
    if (n < 0 || (n > 0 && (!x || !logits)))
        return bl_error(BL_ERR_INVALID_ARG, "bl_capi_model_infer: %lld examples, x %p, logits %p",
                        (long long)n, (const void *)x, (void *)logits);
    size_t per_example = (size_t)m->in_channels * (size_t)m->height * (size_t)m->width;
    for (int64_t done = 0; done < n;) {
        int chunk = (int)(n - done < m->max_batch ? n - done : m->max_batch);
        BL_TRY(bl_model_handler_infer(m->handler, x + (size_t)done * per_example, chunk,
                                      logits + (size_t)done * (size_t)m->num_classes, NULL));
        done += chunk;
    }
    return BL_OK;
}

void bl_capi_model_free(bl_capi_model *m) {
    if (!m) return;
    bl_model_handler_release(m->handler);
    free(m);
}

int64_t bl_capi_models_loaded(void) { return bl_model_handler_load_count(); }
