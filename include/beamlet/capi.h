/* beamlet's C ABI: the small, stable surface that other languages load from libbeamlet.so.
 *
 * The Python package (python/, import name `beamlet`) calls these through ctypes. The project's
 * libbeamlet.so holds them beside the whole C API; the wheel's libbeamlet.so (src/capi/capi.cmake)
 * exports these and nothing else (a linker version script keeps the rest hidden), so the
 * internal headers can change without breaking a built wheel. Only plain C types cross: opaque
 * handles, integers, C strings, caller-owned arrays (numpy buffers), and JSON strings for
 * training configs and results (the same JSON the pipelines use).
 *
 * Conventions. Every function that can fail returns 0 on success or a bl_status code (see
 * beamlet/core.h: 1 invalid argument, 2 out of memory, 3 I/O, 4 format, 5 unsupported,
 * 6 not found, 7 device, 8 internal) and leaves the calling thread's message in
 * bl_capi_last_error(). Strings the ABI returns through `char **` are malloc'ed: free them with
 * bl_capi_free(). Arrays are C-contiguous, planar images as (N, C, H, W).
 *
 * Versioning. BL_CAPI_ABI_VERSION changes whenever a signature or a meaning here changes;
 * a caller compares bl_capi_abi_version() with the version it was written for before calling
 * anything else, and refuses to go on when they differ. */
#ifndef BEAMLET_CAPI_H
#define BEAMLET_CAPI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BL_CAPI_ABI_VERSION 1

/* ---- the library ---------------------------------------------------------------------------- */

int bl_capi_abi_version(void);
const char *bl_capi_library_version(void); /* "0.1.0" */
/* The calling thread's last error message ("" when none). Valid until its next failing call. */
const char *bl_capi_last_error(void);
const char *bl_capi_status_name(int status); /* "invalid argument", "not found", ... */
void bl_capi_free(void *p);
/* Devices this build and machine offer, one line each, as `beamlet devices` prints them. */
int bl_capi_device_list(char **text);

/* ---- devices -------------------------------------------------------------------------------- */

typedef struct bl_capi_device bl_capi_device;

/* Opens a device by any name beamlet's device resolver knows (beamlet/tensor.h: "auto", "cpu"
 * (oneDNN when built), "cpu_ref", "gpu", "cuda:N", "tpu", "xla:cpu", ...). An accelerator that is
 * not there is an error naming what is missing, unless allow_cpu_fallback, which warns loudly
 * and opens the CPU. */
int bl_capi_device_open(const char *name, int allow_cpu_fallback, bl_capi_device **out);
const char *bl_capi_device_name(const bl_capi_device *d);        /* "cpu", "cuda:0", ... */
const char *bl_capi_device_description(const bl_capi_device *d); /* e.g. the GPU's model */
int bl_capi_device_fell_back(const bl_capi_device *d);           /* 1: the CPU stands in */
void bl_capi_device_close(bl_capi_device *d);

/* ---- models: a ResNet from safetensors, for inference --------------------------------------- */

typedef struct bl_capi_model bl_capi_model;

/* Reads a torchvision-layout ResNet's architecture from its safetensors header without building
 * it: depth (18/34), base width, input channels, classes, and the input side it expects (32 for
 * the CIFAR stem, 224 for the ImageNet stem). Any out pointer may be NULL. */
int bl_capi_model_peek(const char *weights_path, int *depth, int *width, int *in_channels, int *num_classes,
                       int *input_side);
/* Loads the model onto `device` for batches of up to max_batch images of height x width
 * (0, 0: the side bl_capi_model_peek reports). Batch norm is folded for inference. A process
 * loads each (weights, device, size) once and shares it between the handles that ask for it.
 * The device may be closed while the model lives. */
int bl_capi_model_load(const bl_capi_device *device, const char *weights_path, int max_batch, int height,
                       int width, bl_capi_model **out);
/* The input one example must have, (in_channels, height, width), the class count and the
 * planned batch. Any out pointer may be NULL. */
void bl_capi_model_shape(const bl_capi_model *m, int *in_channels, int *height, int *width, int *num_classes,
                         int *max_batch);
const char *bl_capi_model_device(const bl_capi_model *m); /* the device it runs on */
/* x: (n, C, H, W) f32, any n >= 0 (split into planned batches here); logits: (n, classes) f32. */
int bl_capi_model_infer(bl_capi_model *m, const float *x, int64_t n, float *logits);
void bl_capi_model_free(bl_capi_model *m);
/* Models this process has loaded so far (a shared model counts once). */
int64_t bl_capi_models_loaded(void);

/* ---- training ------------------------------------------------------------------------------- */

/* The default TrainingConfig as JSON (see beamlet/ml.h for the fields). */
int bl_capi_training_config_default(char **json);
/* Parses `json` (unknown fields are errors; missing ones keep their defaults), validates every
 * field, and writes the complete config back as JSON. */
int bl_capi_training_config_normalize(const char *json, char **normalized);
/* Trains one config (bl_train): a checkpoint every epoch under
 * <output_dir>/<experiment_id>/, resuming from it when it exists and was written for the same
 * config; `stop_after_epochs` stops early as if killed. The TrainingResult comes back as JSON. */
int bl_capi_train(const char *config_json, char **result_json);
/* The proposal's sweep grid around a base config: learning rates x batch sizes x models, each
 * with an id like "resnet18-lr0.01-bs32" (bl_sweep_grid). A NULL list takes that axis's default
 * ({0.01, 0.001, 0.0001}, {16, 32, 64}, {resnet18, resnet34}). The configs come back as one JSON
 * array. */
int bl_capi_sweep_grid(const char *base_json, const float *learning_rates, int n_learning_rates,
                       const int *batch_sizes, int n_batch_sizes, const char *const *models, int n_models,
                       char **configs_json);

/* ---- datasets: the learning path's records -------------------------------------------------- */

typedef struct bl_capi_dataset bl_capi_dataset;

/* Loads a split of "fashion-mnist" (IDX, gzipped or not) or "cifar10" (binary batches) with
 * beamlet's strict readers. dir NULL or "": the dataset's default place. */
int bl_capi_dataset_load(const char *name, const char *dir, int train, bl_capi_dataset **out);
/* count images of (channels, height, width) u8, labels in [0, num_classes). */
void bl_capi_dataset_shape(const bl_capi_dataset *ds, int64_t *count, int *channels, int *height, int *width,
                           int *num_classes);
const char *bl_capi_dataset_class_name(const bl_capi_dataset *ds, int k); /* NULL when out of range */
const char *bl_capi_dataset_source(const bl_capi_dataset *ds);            /* where it was read from */
/* Copies images [start, start + n) to images (n, C, H, W) u8 and labels (n) u8 (either may be
 * NULL). */
int bl_capi_dataset_read(const bl_capi_dataset *ds, int64_t start, int64_t n, uint8_t *images,
                         uint8_t *labels);
void bl_capi_dataset_free(bl_capi_dataset *ds);

/* The evaluation transform of a dataset's recommended input (bl_batch_transform_fashion_mnist
 * or _cifar10 without augmentation: Fashion-MNIST centre zero-padded to 32x32 and normalized,
 * CIFAR-10 normalized per channel) applied to n raw images (n, C, H, W) u8. The output shape
 * (out_channels, out_height, out_width) per image comes from bl_capi_example_shape. */
int bl_capi_example_shape(const char *dataset, int channels, int height, int width, int *out_channels,
                          int *out_height, int *out_width);
int bl_capi_examples_from_records(const char *dataset, const uint8_t *images, int64_t n, int channels,
                                  int height, int width, float *out);

/* A JPEG or PNG file's bytes (`name` only for messages) decoded to RGB and given torchvision's
 * ImageNet evaluation preprocessing: Resize(resize) of the shorter side, CenterCrop(crop),
 * Normalize(ImageNet). out: (3, crop, crop) f32. Undecodable bytes are BL_ERR_FORMAT naming
 * `name` and why. */
int bl_capi_image_example(const void *data, size_t size, const char *name, int resize, int crop, float *out);

#ifdef __cplusplus
}
#endif
#endif
