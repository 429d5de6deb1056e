/* Softmax cross-entropy: the shared host loop (backends/host), on the tensors' host memory. */
#include "backends/cpu_ref/cpu_ref.h"
#include "backends/host/host_kernels.h"

bl_status cpu_ref_softmax_cross_entropy(bl_device *dev, const bl_tensor *logits, const bl_tensor *labels,
                                        float label_smoothing, bl_tensor *loss, bl_tensor *dlogits) {
    (void)dev;
    return bl_host_softmax_cross_entropy(logits->data, labels->data, logits->shape[0], logits->shape[1],
                                         label_smoothing, loss->data, dlogits ? dlogits->data : NULL);
}
