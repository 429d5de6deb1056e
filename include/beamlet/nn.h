/* beamlet nn: models as small static graphs of layers, built once, run on any device.
 *
 * A model owns its parameters, gradients and batch-norm buffers in one allocation each on its
 * device, and plans its activations once for the largest batch, so a training or inference
 * step allocates nothing. Every layer calls the op table (tensor.h), so the one definition runs
 * on cpu_ref, cpu and cuda alike. Parameter names follow torchvision, so a torchvision
 * state_dict saved as safetensors loads as is. */
#ifndef BEAMLET_NN_H
#define BEAMLET_NN_H

#include "beamlet/devices.h"
#include "beamlet/io.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum bl_resnet_stem {
    BL_RESNET_STEM_IMAGENET = 0, /* 7x7/2 convolution + 3x3/2 max-pool (torchvision) */
    BL_RESNET_STEM_CIFAR,        /* 3x3/1 convolution, no max-pool (small images) */
} bl_resnet_stem;

/* The ranges bl_resnet_new accepts (and bl_resnet_config_from_safetensors checks a file
 * against): generous for any real model, small enough that every size computed from them fits
 * in 64 bits. Width 4096 means 32768 channels in layer4. */
#define BL_RESNET_MAX_WIDTH 4096
#define BL_RESNET_MAX_IN_CHANNELS 4096
#define BL_RESNET_MAX_CLASSES (1 << 20)

typedef struct bl_resnet_config {
    int depth;       /* 18 or 34 */
    int num_classes; /* 1 to BL_RESNET_MAX_CLASSES */
    int width;       /* base channels: 64 in torchvision; 1 to BL_RESNET_MAX_WIDTH */
    int in_channels; /* 3 for RGB, 1 for grayscale; 1 to BL_RESNET_MAX_IN_CHANNELS */
    bl_resnet_stem stem;
} bl_resnet_config;

/* The defaults: ResNet-18, 10 classes, width 64, 3 channels, ImageNet stem. */
bl_resnet_config bl_resnet_config_default(void);

typedef struct bl_model bl_model;

typedef enum bl_param_kind {
    BL_PARAM_WEIGHT = 0, /* trainable */
    BL_PARAM_BUFFER,     /* batch-norm running statistics: saved, not trained */
} bl_param_kind;

typedef struct bl_param_info {
    const char *name; /* torchvision name, e.g. "layer1.0.conv1.weight" */
    bl_param_kind kind;
    bl_tensor value; /* view into the model's parameter or buffer allocation */
    bl_tensor grad;  /* view into the gradient allocation (trainable only) */
} bl_param_info;

/* Builds a ResNet on `dev` with parameters initialized as torchvision does (Kaiming-normal
 * convolutions, unit batch-norm scale, PyTorch's default linear init) from `seed`. */
bl_status bl_resnet_new(bl_device *dev, const bl_resnet_config *cfg, uint64_t seed, bl_model **out);
void bl_model_free(bl_model *model);

const bl_resnet_config *bl_model_config(const bl_model *model);
bl_device *bl_model_device(const bl_model *model);
int bl_model_param_count(const bl_model *model);
const bl_param_info *bl_model_param(const bl_model *model, int index);
const bl_param_info *bl_model_find_param(const bl_model *model, const char *name);
/* Number of trainable scalars. */
int64_t bl_model_trainable_count(const bl_model *model);
/* Times the batch-norm layers have updated their running statistics (torchvision's
 * num_batches_tracked); saved and restored with the weights. */
int64_t bl_model_batches_tracked(const bl_model *model);
void bl_model_set_batches_tracked(bl_model *model, int64_t count);
/* The trainable parameters and their gradients as flat f32 tensors (for the optimizer). */
bl_tensor bl_model_flat_params(const bl_model *model);
bl_tensor bl_model_flat_grads(const bl_model *model);

/* Allocates activations (and, with `training`, gradients of activations) for batches of up
 * to `max_batch` images of height x width. Call once; steps then allocate nothing. */
bl_status bl_model_plan(bl_model *model, int max_batch, int height, int width, bool training);

typedef enum bl_forward_mode {
    BL_FORWARD_TRAIN = 0, /* batch statistics, running statistics updated, saved for backward */
    BL_FORWARD_EVAL,      /* running statistics */
    BL_FORWARD_INFER,     /* running statistics folded into the convolutions: fastest */
} bl_forward_mode;

/* x: (N, C, H, W) on the model's device in its preferred layout, N <= max_batch. Returns a
 * view of the logits (N, num_classes), valid until the next forward. BL_FORWARD_INFER uses the
 * folded weights made by bl_model_fold_batchnorm (it folds on first use). */
bl_status bl_model_forward(bl_model *model, const bl_tensor *x, bl_forward_mode mode, bl_tensor *logits);
/* After a BL_FORWARD_TRAIN forward: mean softmax cross-entropy against labels (N) i32 on the
 * device, written to `loss` (1) f32 on the device, and gradients of every trainable parameter
 * (overwritten, not accumulated). */
bl_status bl_model_backward(bl_model *model, const bl_tensor *labels, float label_smoothing, bl_tensor *loss);
/* Recomputes the folded inference weights from the current parameters and statistics. */
bl_status bl_model_fold_batchnorm(bl_model *model);

/* ---- weights as safetensors -------------------------------------------------------------- */

/* Loads every parameter and buffer from tensors named "<prefix><torchvision name>" (prefix ""
 * for a torchvision state_dict). F32, BF16 and F16 are converted; shapes must match exactly;
 * "...num_batches_tracked" (I64) is accepted. A missing tensor, or an unexpected one under the
 * prefix, is an error naming the file and the tensor (like PyTorch's strict loading). */
bl_status bl_model_load_state(bl_model *model, const bl_safetensors *file, const char *prefix);
bl_status bl_model_load(bl_model *model, const char *path);
/* Reads the architecture from the tensors themselves (depth from the blocks present, width and
 * input channels from conv1.weight, stem from its kernel size, classes from fc.weight), so
 * any torchvision-layout ResNet-18/34 file can be opened without being told what it is. Each
 * field is range-checked (the BL_RESNET_MAX_* limits), the kernel must be 7x7 or 3x3, and
 * fc.weight must take the 8 * width channels layer4 ends with; a refusal names the file, the
 * tensor and its shape. */
bl_status bl_resnet_config_from_safetensors(const bl_safetensors *file, const char *prefix,
                                            bl_resnet_config *out);
/* Adds the model's state (f32, torchvision names under `prefix`, num_batches_tracked as I64)
 * to a writer, e.g. a checkpoint that also holds optimizer state. */
bl_status bl_model_write_state(const bl_model *model, bl_safetensors_writer *w, const char *prefix);
/* Writes the weights atomically (temp file, fsync, rename) with optional metadata pairs
 * (keys[i] = values[i]). */
bl_status bl_model_save(const bl_model *model, const char *path, const char *const *keys,
                        const char *const *values, int nmeta);

/* ---- optimizers --------------------------------------------------------------------------- */

typedef enum bl_optimizer_kind {
    BL_OPTIMIZER_SGD = 0,
    BL_OPTIMIZER_ADAMW
} bl_optimizer_kind;

typedef struct bl_optimizer_config {
    bl_optimizer_kind kind;
    float lr;
    float weight_decay;
    float momentum;          /* SGD */
    bool nesterov;           /* SGD */
    float beta1, beta2, eps; /* AdamW */
} bl_optimizer_config;

bl_optimizer_config bl_optimizer_config_sgd(float lr, float momentum, float weight_decay, bool nesterov);
bl_optimizer_config bl_optimizer_config_adamw(float lr, float weight_decay);

typedef struct bl_optimizer bl_optimizer;
/* State (momentum or Adam moments) lives in one allocation on the model's device. */
bl_status bl_optimizer_new(bl_model *model, const bl_optimizer_config *cfg, bl_optimizer **out);
void bl_optimizer_free(bl_optimizer *opt);
/* One update of every trainable parameter from its gradient, at learning rate `lr`. */
bl_status bl_optimizer_step(bl_optimizer *opt, float lr);
int64_t bl_optimizer_steps_taken(const bl_optimizer *opt);
/* The state tensors, flat f32 (for checkpoints): 1 for SGD (momentum), 2 for AdamW. */
int bl_optimizer_state_count(const bl_optimizer *opt);
bl_tensor bl_optimizer_state(const bl_optimizer *opt, int index, const char **name);
void bl_optimizer_set_steps_taken(bl_optimizer *opt, int64_t steps);

/* ---- the training step --------------------------------------------------------------------- */

/* What one step reads and writes on the device. x and labels hold the current batch (up to
 * `capacity` images; their first dimension says how many); loss gets the step's mean loss. */
typedef struct bl_train_batch {
    bl_tensor x;      /* (n, C, H, W) f32, in the device's preferred layout */
    bl_tensor labels; /* (n) i32 */
    bl_tensor loss;   /* (1) f32 */
    int capacity;
} bl_train_batch;

/* Allocates room for batches of up to `capacity` images of channels x height x width. */
bl_status bl_train_batch_alloc(bl_device *dev, int capacity, int channels, int height, int width,
                               bl_train_batch *out);
void bl_train_batch_release(bl_train_batch *b);
/* Copies n host images (n, C, H, W) f32 in, and their labels (n) i32 unless NULL (evaluation). */
bl_status bl_train_batch_upload(bl_train_batch *b, const float *x, const int32_t *labels, int n);
/* One training step on the batch: forward in training mode, softmax cross-entropy with label
 * smoothing, backward, one optimizer update at learning rate `lr`. It only enqueues work on the
 * device (no host wait, no allocation), so it can be recorded into a CUDA graph; the loss stays
 * on the device until bl_train_batch_loss. */
bl_status bl_train_step(bl_model *model, bl_optimizer *opt, bl_train_batch *batch, float label_smoothing,
                        float lr);
/* The last step's loss on the host (waits for the device). */
bl_status bl_train_batch_loss(const bl_train_batch *batch, float *loss);

/* ---- learning-rate schedules -------------------------------------------------------------- */

typedef enum bl_lr_schedule_kind {
    BL_LR_CONSTANT = 0,
    BL_LR_COSINE,    /* cosine decay from lr to 0 over total_steps */
    BL_LR_ONE_CYCLE, /* PyTorch's OneCycleLR (cosine, pct_start 0.3, div 25, final div 1e4) */
} bl_lr_schedule_kind;

typedef struct bl_lr_schedule {
    bl_lr_schedule_kind kind;
    float max_lr;
    int64_t total_steps;
} bl_lr_schedule;

/* Parses "constant", "cosine" or "onecycle". */
bl_status bl_lr_schedule_parse(const char *name, bl_lr_schedule_kind *out);
/* The learning rate for step `step` (0-based) of the schedule. */
float bl_lr_schedule_at(const bl_lr_schedule *s, int64_t step);

#ifdef __cplusplus
}
#endif
#endif
