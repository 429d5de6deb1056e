/* beamlet ml: machine learning as pipeline steps.
 *
 * Training is a first-class step here (Beam has none): a TrainingConfig goes in, a model is
 * trained on a device with a checkpoint every epoch (atomic, resumable), and a TrainingResult
 * comes out. The same function backs the TrainModel DoFn of the learning path and the
 * `beamlet train` command. Configs and results travel between workers as JSON. */
#ifndef BEAMLET_ML_H
#define BEAMLET_ML_H

#include "beamlet/datasets.h"
#include "beamlet/nn.h"
#include "beamlet/pipeline.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BL_ML_ID_MAX 64
#define BL_ML_PATH_MAX 512

typedef struct bl_training_config {
    char experiment_id[BL_ML_ID_MAX]; /* names the checkpoint folder: a re-run resumes */
    char model[16];                   /* "resnet18" or "resnet34" */
    int width;                        /* base channels (64 = torchvision) */
    float learning_rate;              /* peak learning rate */
    char schedule[16];                /* "onecycle", "cosine" or "constant" */
    int batch_size;
    int epochs;
    char optimizer[16]; /* "sgd" (Nesterov momentum) or "adamw" */
    float momentum;
    float weight_decay;
    float label_smoothing;
    uint64_t seed;
    char device[32];                 /* any device name: "auto", "cpu", "gpu", "cuda:1", "tpu", ... */
    bool allow_cpu_fallback;         /* an absent accelerator: warn loudly and train on the CPU */
    char precision[8];               /* "f32" (bf16 is inference-only: bl_device_set_precision) */
    char dataset[32];                /* "fashion-mnist" or "cifar10" */
    char data_dir[BL_ML_PATH_MAX];   /* "" = the dataset's default location */
    char output_dir[BL_ML_PATH_MAX]; /* checkpoints go to <output_dir>/<experiment_id>/ */
    int64_t train_limit, test_limit; /* use only the first N images (0 = all): tiny runs */
    int stop_after_epochs;           /* stop (as if killed) after this many epochs; 0 = never */
    bool quiet;                      /* no progress bar */
} bl_training_config;

typedef struct bl_training_result {
    char experiment_id[BL_ML_ID_MAX];
    char model[16];
    float learning_rate;
    int batch_size;
    double accuracy;    /* test accuracy after the last epoch, in [0, 1] */
    double loss;        /* mean training loss of the last epoch */
    int epochs;         /* epochs completed */
    double wall_time_s; /* training time of this run (resumed runs: this part only) */
    double images_per_s;
    char device[32];
    char checkpoint_path[BL_ML_PATH_MAX];
    char weights_path[BL_ML_PATH_MAX]; /* the final model, safetensors, torchvision names */
    bool resumed;                      /* started from a checkpoint */
} bl_training_result;

/* The defaults: ResNet-18 width 64, SGD Nesterov 0.9, one-cycle max LR 0.1, weight decay 5e-4,
 * batch 512, 15 epochs, Fashion-MNIST, device auto, f32. */
bl_training_config bl_training_config_default(void);
/* Checks every field and says which one is wrong and why. */
bl_status bl_training_config_validate(const bl_training_config *c);

/* JSON: configs and results cross process boundaries (pipelines, results files) as JSON. */
bl_status bl_training_config_to_json(const bl_training_config *c, char **json /* malloc'ed */);
bl_status bl_training_config_from_json(const char *json, size_t len, bl_training_config *out);
bl_status bl_training_result_to_json(const bl_training_result *r, char **json /* malloc'ed */);
bl_status bl_training_result_from_json(const char *json, size_t len, bl_training_result *out);

/* Registers one --flag per TrainingConfig field (defaults from `defaults`) on a pipeline's
 * options, and reads them back: programs and the CLI share one flag list. */
bl_status bl_training_config_add_options(bl_options *opts, const bl_training_config *defaults);
bl_status bl_training_config_from_options(const bl_options *opts, bl_training_config *out);

/* Trains per `c`, resuming from <output_dir>/<experiment_id>/checkpoint.safetensors when it
 * exists and was written for the same config. `train`/`test` may be NULL to load the dataset
 * named in the config. Every epoch: evaluate, write the checkpoint atomically, append to
 * metrics.jsonl. On the CPU, at the same thread count, a resumed run ends bit for bit where an
 * uninterrupted one does (reductions are split per thread, so another count sums in another
 * order). */
bl_status bl_train(const bl_training_config *c, const bl_dataset *train, const bl_dataset *test,
                   bl_training_result *result);

/* ---- training in a pipeline ------------------------------------------------------------ */

/* Coders for configs and results: JSON bytes, deterministic (usable as keys). */
const bl_coder *bl_coder_training_config(void); /* values: bl_training_config * */
const bl_coder *bl_coder_training_result(void); /* values: bl_training_result * */

/* TrainModel: a DoFn from TrainingConfig to TrainingResult. The config's device is resolved
 * with the accelerator the runner bound to this worker: "auto", "gpu" or "tpu" run on that one
 * (cuda:N, tpu:N: one chip per worker) when there is one ("auto" otherwise on the CPU).
 * Checkpoints make a retried or re-run element resume instead of starting over. */
bl_dofn bl_train_model_dofn(void);

/* BestModel: a CombineFn keeping the result with the highest accuracy (ties: the smaller
 * experiment id, so the answer never depends on worker timing). */
const bl_combine_fn *bl_best_model_combine(void);

/* DeployBestModel: a DoFn that copies a result's weights to <serving_dir>/model.safetensors and
 * writes <serving_dir>/model.json (the result), both atomically, and passes the result on.
 * `serving_dir` must outlive the pipeline. */
bl_dofn bl_deploy_model_dofn(const char *serving_dir);

/* The proposal's grid: learning rates x batch sizes x models, each a copy of `base` with an
 * experiment id like "resnet18-lr0.01-bs32". NULL lists take the defaults: {0.01, 0.001,
 * 0.0001} x {16, 32, 64} x {resnet18, resnet34} = 18 configs. `out` holds n_lr*n_bs*n_models. */
bl_status bl_sweep_grid(const bl_training_config *base, const float *lrs, int n_lr, const int *batch_sizes,
                        int n_bs, const char *const *models, int n_models, bl_training_config **out,
                        int *count);

/* --learning_rates, --batch_sizes and --models (comma-separated grid axes, defaulting to the
 * proposal's grid) on a pipeline's options, and the grid they describe around `base`. The grid
 * sets each config's learning rate, batch size, model and experiment id, so the single-run
 * flags --learning_rate, --batch_size, --model and --experiment_id, when given, are an error
 * that names the grid flag to use instead (one value on an axis: --learning_rates=0.1). */
bl_status bl_sweep_add_options(bl_options *opts);
bl_status bl_sweep_grid_from_options(const bl_options *opts, const bl_training_config *base,
                                     bl_training_config **out, int *count);

#ifdef __cplusplus
}
#endif
#endif
