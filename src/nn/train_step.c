/* The one training step, and the batch it runs on. The trainer, the benchmarks, the demo and
 * the tests all step through here, so a change to what a step is (mixed precision, gradient
 * clipping) happens once. */
#include <string.h>

#include "beamlet/nn.h"
#include "nn/model_internal.h"

bl_status bl_train_batch_alloc(bl_device *dev, int capacity, int channels, int height, int width,
                               bl_train_batch *out) {
    memset(out, 0, sizeof *out);
    if (capacity < 1)
        return bl_error(BL_ERR_INVALID_ARG, "train batch: capacity %d, expected at least 1", capacity);
    int64_t xs[4] = {capacity, channels, height, width}, n = capacity, one = 1;
    bl_status s = bl_tensor_alloc(dev, BL_F32, 4, xs, &out->x);
    if (s == BL_OK) s = bl_tensor_alloc(dev, BL_I32, 1, &n, &out->labels);
    if (s == BL_OK) s = bl_tensor_alloc(dev, BL_F32, 1, &one, &out->loss);
    if (s != BL_OK) {
        bl_train_batch_release(out);
        return s;
    }
    out->capacity = capacity;
    return BL_OK;
}

void bl_train_batch_release(bl_train_batch *b) {
    /* The views may hold a smaller count than was allocated; the memory is the same. */
    bl_tensor_release(&b->x);
    bl_tensor_release(&b->labels);
    bl_tensor_release(&b->loss);
    b->capacity = 0;
}

bl_status bl_train_batch_upload(bl_train_batch *b, const float *x, const int32_t *labels, int n) {
    if (n < 1 || n > b->capacity)
        return bl_error(BL_ERR_INVALID_ARG, "train batch: %d images for a batch of up to %d", n, b->capacity);
    /* The previous batch is done with: a smaller batch then replaces it instead of being
     * written over part of it (on XLA, that would keep the old tail by a program). */
    size_t image_bytes = bl_tensor_nbytes(&b->x) / (size_t)b->x.shape[0];
    bl_device_discard(b->x.device, b->x.data, image_bytes * (size_t)b->capacity);
    bl_device_discard(b->labels.device, b->labels.data, sizeof(int32_t) * (size_t)b->capacity);
    b->x.shape[0] = n;
    b->labels.shape[0] = n;
    BL_TRY(bl_tensor_upload_nchw_f32(&b->x, x));
    return labels ? bl_tensor_copy_from_host(&b->labels, labels) : BL_OK;
}

bl_status bl_train_step(bl_model *model, bl_optimizer *opt, bl_train_batch *b, float label_smoothing,
                        float lr) {
    /* One program: on XLA the forward pass, loss, backward pass and update compile to one
     * module per batch shape (bl_device_program_begin). */
    bl_device *dev = bl_model_device(model);
    BL_TRY(bl_device_program_begin(dev));
    bl_tensor logits;
    bl_status s = bl_model_forward(model, &b->x, BL_FORWARD_TRAIN, &logits);
    if (s == BL_OK) s = bl_model_backward(model, &b->labels, label_smoothing, &b->loss);
    if (s == BL_OK) s = bl_optimizer_step(opt, lr);
    /* What the step computed on the way is not needed after it (the program keeps it inside). */
    if (s == BL_OK) bl_model_discard_scratch(model, false);
    if (s != BL_OK) {
        (void)bl_device_program_end(dev); /* runs what was issued; the first error is the one to report */
        return s;
    }
    return bl_device_program_end(dev);
}

bl_status bl_train_batch_loss(const bl_train_batch *b, float *loss) {
    return bl_tensor_copy_to_host(&b->loss, loss);
}
