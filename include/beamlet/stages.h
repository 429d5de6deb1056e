/* beamlet stages: the learning path's programs as library functions.
 *
 * Each stage is a command (beamlet/pipeline.h, bl_command): a function that registers its flags
 * and one that runs them once parsed. `beamlet infer`, `beamlet train`, `beamlet sweep` and
 * examples/01..04 are thin callers that differ only in a few defaults, which is where each
 * stage's concept shows: stage 2 is stage 1 with --device=gpu and an accelerator hint.
 *
 *   infer  stages 1-2: a dataset's test split or a folder of photos through RunInference;
 *          predictions and dead letters as JSON lines, the figures as summary.json
 *   train  stage 3: one TrainingConfig trained inside a pipeline, checkpointed every epoch
 *   sweep  stage 4: a grid of configs reshuffled over the workers, the best model deployed
 *
 * Every stage takes every device name (beamlet/devices.h) and --allow_cpu_fallback, and tells
 * the pipeline which accelerators its workers have (the visible ones of its device's kind, GPUs
 * or TPU chips, of which each worker binds one; unless --worker_accelerators says otherwise).
 * Stages 3 and 4 hint their TrainModel step for their device: a GPU as type:cuda;count:1, a
 * TPU as type:tpu;count:1;topology:1x1, so the runner places it only where one is. */
#ifndef BEAMLET_STAGES_H
#define BEAMLET_STAGES_H

#include "beamlet/ml.h"
#include "beamlet/ml_inference.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The three stages as commands, for bl_command_main. */
extern const bl_command bl_stage_infer_command;
extern const bl_command bl_stage_train_command;
extern const bl_command bl_stage_sweep_command;

bl_status bl_stage_infer_options(bl_options *opts);
bl_status bl_stage_infer(const bl_options *opts);
bl_status bl_stage_train_options(bl_options *opts);
bl_status bl_stage_train(const bl_options *opts);
bl_status bl_stage_sweep_options(bl_options *opts);
bl_status bl_stage_sweep(const bl_options *opts);

/* The model stages 1-2 load without --weights: BL_SHIPPED_MODEL, looked for in
 * $BEAMLET_MODEL_DIR, then beside the program in the build tree (<build>/share/beamlet/models)
 * and in the installed layout (<prefix>/bin/../share/beamlet/models). BL_ERR_NOT_FOUND names
 * every place looked in. */
#define BL_SHIPPED_MODEL "fashion-resnet18-w8.safetensors"
bl_status bl_shipped_model_path(char *path, size_t size);

#ifdef __cplusplus
}
#endif
#endif
