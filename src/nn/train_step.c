/* The one training step, and the batch it runs on. The trainer, the benchmarks, the demo and
 * the tests all step through here, so a change to what a step is (mixed precision, gradient
 * clipping) happens once. */
#include <string.h>

#include "beamlet/nn.h"

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
    b->x.shape[0] = n;
    b->labels.shape[0] = n;
    BL_TRY(bl_tensor_upload_nchw_f32(&b->x, x));
    return labels ? bl_tensor_copy_from_host(&b->labels, labels) : BL_OK;
}

bl_status bl_train_step(bl_model *model, bl_optimizer *opt, bl_train_batch *b, float label_smoothing,
                        float lr) {
    bl_tensor logits;
    BL_TRY(bl_model_forward(model, &b->x, BL_FORWARD_TRAIN, &logits));
    BL_TRY(bl_model_backward(model, &b->labels, label_smoothing, &b->loss));
    return bl_optimizer_step(opt, lr);
}

bl_status bl_train_batch_loss(const bl_train_batch *b, float *loss) {
    return bl_tensor_copy_to_host(&b->loss, loss);
}
