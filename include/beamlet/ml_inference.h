/* beamlet RunInference: batched model inference as a pipeline step, as in Apache Beam.
 *
 * Stage 1 and 2 of the learning path: images flow into a pipeline as image examples, a
 * RunInference step batches them (BatchElements: min/max batch size, or a max batch weight from
 * an element size function), runs each batch through a ResNet loaded from a safetensors file,
 * and emits one PredictionResult per example (example id, top-k classes with probabilities,
 * model id). Batches that fail go to a dead-letter output with the reason, and the run goes on.
 *
 * The model is loaded once per worker process and shared by the DoFn instances on its threads
 * (a cache keyed by weights path and device, with a reference count): a bl_model is
 * single-threaded, so inference on a shared model is serialized by its handler's mutex.
 * Metrics carry Beam's names, on the "<name>/Infer" transform: counters `num_inferences` and
 * `failed_batches`; distributions `inference_batch_size`, `inference_batch_latency` (ms) and
 * `load_model_latency` (ms, one observation per load).
 *
 * Devices: `device` takes every name the resolver knows (beamlet/tensor.h: "cpu", "cpu_ref",
 * "gpu", "cuda:N", "tpu", "auto", ...). An accelerator that is not there is an error, unless
 * allow_cpu_fallback, which warns loudly and runs on "cpu". Each worker uses the accelerator the
 * runner assigned it.
 *
 * The pipeline layer knows nothing of tensors: the element types and their coders live here. */
#ifndef BEAMLET_ML_INFERENCE_H
#define BEAMLET_ML_INFERENCE_H

#include "beamlet/nn.h"
#include "beamlet/pipeline.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- elements and their coders ----------------------------------------------------------- */

/* One image ready for a model: normalized floats, planar like a tensor. */
typedef struct bl_image_example {
    char *id;      /* "fashion-mnist/t10k/00042" or a file path */
    int32_t label; /* the true class, -1 when unknown */
    int32_t channels, height, width;
    float *pixels; /* (channels, height, width) f32 */
} bl_image_example;

/* Copies id and pixels. Free with bl_image_example_free. */
bl_status bl_image_example_new(const char *id, int label, int channels, int height, int width,
                               const float *pixels, bl_image_example **out);
void bl_image_example_free(bl_image_example *e);
/* Deterministic bytes (floats as little-endian IEEE bits); JSON {"id","label","shape","pixels"}. */
const bl_coder *bl_coder_image_example(void);
/* An element size function for bl_run_inference_config.element_size_fn: pixels per example. */
size_t bl_image_example_size(void *user, const void *element);

#define BL_PREDICTION_MAX_TOP_K 16
#define BL_CLASS_NAME_MAX 48

/* Beam's PredictionResult: the example (by id), the inference (top-k, best first) and the
 * model that made it. */
typedef struct bl_prediction_result {
    char *example_id;
    int32_t label;                                                /* -1 when unknown */
    int32_t top_k;                                                /* entries used below */
    int32_t classes[BL_PREDICTION_MAX_TOP_K];                     /* class indices, best first */
    float probabilities[BL_PREDICTION_MAX_TOP_K];                 /* softmax, descending */
    char class_names[BL_PREDICTION_MAX_TOP_K][BL_CLASS_NAME_MAX]; /* "" when unnamed */
    char *model_id;                                               /* the weights file's name */
} bl_prediction_result;

void bl_prediction_result_free(bl_prediction_result *r);
/* JSON {"example":..., "label":..., "inference":[{"class","name","probability"}...],
 * "model_id":...}; "label" only when known. */
const bl_coder *bl_coder_prediction_result(void);

/* What the dead-letter outputs carry: which example or file, the step and why. */
typedef struct bl_dead_letter {
    char *id;
    char *step;   /* the transform that refused it, e.g. "RunInference/Infer" */
    char *reason; /* one line */
} bl_dead_letter;

bl_status bl_dead_letter_new(const char *id, const char *step, const char *reason, bl_dead_letter **out);
void bl_dead_letter_free(bl_dead_letter *d);
const bl_coder *bl_coder_dead_letter(void);

/* Accuracy over PredictionResults, as a CombineFn (Beam's stage-1 "AccuracyFn"). Examples
 * without a label count in `total` only. */
typedef struct bl_accuracy {
    int64_t total, labelled, correct, correct_top_k;
} bl_accuracy;
const bl_coder *bl_coder_accuracy(void);
const bl_combine_fn *bl_combine_accuracy(void);

/* ---- model handler: one shared model per worker process ------------------------------------ */

typedef struct bl_model_handler bl_model_handler;

/* Reads a ResNet's architecture from a torchvision-layout safetensors file without building it.
 * A missing file is BL_ERR_NOT_FOUND naming the path. */
bl_status bl_model_handler_peek(const char *weights_path, bl_resnet_config *out);
/* Returns the process's model for (weights_path, the device `req` resolves to, its precision,
 * height, width)
 * planned for at least max_batch images, loading it on first use (then *loaded is set and
 * *load_seconds says how long it took; both may be NULL). Every acquire is matched by a
 * release; the last release frees the model. Thread-safe. */
bl_status bl_model_handler_acquire(const char *weights_path, const bl_device_request *req, int max_batch,
                                   int height, int width, bl_model_handler **out, bool *loaded,
                                   double *load_seconds);
void bl_model_handler_release(bl_model_handler *h);
const bl_resnet_config *bl_model_handler_config(const bl_model_handler *h);
const char *bl_model_handler_device(const bl_model_handler *h);
/* x: n host images (n, C, H, W) f32 with n <= the planned batch; logits: (n, classes) host f32.
 * Batch norm folded (BL_FORWARD_INFER). Serialized by the handler's mutex; *seconds (may be
 * NULL) gets the time spent holding it, i.e. the model's time without waiting for other threads. */
bl_status bl_model_handler_infer(bl_model_handler *h, const float *x, int n, float *logits, double *seconds);
/* Models this process has loaded so far (for tests and logs). */
int64_t bl_model_handler_load_count(void);

/* ---- RunInference ------------------------------------------------------------------------ */

typedef struct bl_run_inference_config {
    const char *weights_path;     /* torchvision-layout ResNet-18/34 safetensors */
    const char *device;           /* any device name (see above); NULL = "cpu" */
    bool allow_cpu_fallback;      /* an absent accelerator: warn and run on the CPU */
    bl_dtype precision;           /* compute precision (bl_device_set_precision); BL_F32 by default.
                                   * A device that cannot refuses before the pipeline runs */
    int min_batch_size;           /* BatchElements; 0 = 1 */
    int max_batch_size;           /* 0 = 32; also the batch the model is planned for */
    size_t max_batch_weight;      /* 0 = no limit */
    bl_weight_fn element_size_fn; /* weight of one example (NULL: 1 each) */
    void *element_size_user;
    int top_k;                      /* 0 = 5; at most the class count and 16 */
    int input_height, input_width;  /* 0 = 32 for a CIFAR-stem model, 224 for ImageNet-stem */
    const char *const *class_names; /* optional (num_class_names), for readable predictions */
    int num_class_names;
    const char *hints;      /* resource hints for the step, e.g.
                                     * "accelerator=type:nvidia-h100;count:1"; NULL = none */
    int64_t progress_total; /* > 0: a progress bar over this many examples */
} bl_run_inference_config;

bl_run_inference_config bl_run_inference_config_default(void);

/* A composite "<name>" = "<name>/BatchElements" + "<name>/Infer". `in` holds image examples;
 * *predictions gets PredictionResults and *dead_letter the dead letters of failed batches (every
 * example of a failed batch, with the reason). The device is resolved here, so "gpu" on a
 * machine without one fails before the pipeline runs; when the step runs on the CPU (a
 * fallback, or "auto" without an accelerator), an accelerator hint is dropped too (loudly after
 * a fallback), since no worker could honour it. The config's
 * contents are copied, so cfg need not outlive this call; element_size_user, when used, must
 * outlive the run. */
bl_status bl_run_inference(bl_pipeline *p, const char *name, bl_pcoll *in, const bl_run_inference_config *cfg,
                           bl_pcoll **predictions, bl_pcoll **dead_letter);

/* ---- sources of examples ------------------------------------------------------------------ */

/* The test split of a dataset the readers know (`dataset`: BL_DATASET_NAMES; dir NULL: its
 * default place) as a Create of image examples with the dataset's recommended transform
 * (Fashion-MNIST 1x32x32 centre zero-padded, CIFAR-10 3x32x32, both normalized); limit > 0
 * keeps the first `limit` images; *count (may be NULL) gets how many. Ids are
 * "<dataset>/<split>/NNNNN", e.g. "fashion-mnist/t10k/00042". */
bl_status bl_read_test_split(bl_pipeline *p, const char *name, const char *dataset, const char *dir,
                             int64_t limit, bl_pcoll **out, int64_t *count /* or NULL */);

/* The JPEG/PNG files of an image folder (bl_image_folder_open: with class subfolders, labels
 * are the class indices, else -1) decoded on the workers with torchvision's ImageNet evaluation
 * preprocessing: Resize(resize), CenterCrop(crop), Normalize (3 x crop x crop). Undecodable
 * files go to *dead_letter with the reason, and the run goes on. limit > 0 keeps the first
 * `limit` files; *count (may be NULL) gets how many files the step will read. */
bl_status bl_read_image_folder(bl_pipeline *p, const char *name, const char *dir, int resize, int crop,
                               int64_t limit, bl_pcoll **examples, bl_pcoll **dead_letter, int64_t *count);

/* ---- a run's figures, for what the stages print and write ---------------------------------- */

typedef struct bl_inference_report {
    int64_t inferences; /* num_inferences */
    int64_t failed_batches;
    int64_t batches;
    double mean_batch_size;
    double model_seconds; /* sum of inference_batch_latency */
    double load_model_ms; /* mean load_model_latency (0 when not loaded in this process) */
    int64_t models_loaded;
} bl_inference_report;

/* Gathers the RunInference step `name`'s metrics after a run (on the coordinator). */
bl_status bl_inference_report_get(const bl_pipeline *p, const char *name, bl_inference_report *out);

#ifdef __cplusplus
}
#endif
#endif
