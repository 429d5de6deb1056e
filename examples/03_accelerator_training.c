/* Stage 3 of the learning path: training on an accelerator, inside a pipeline.
 *
 * Stages 1 and 2 ran a trained model. Here the pipeline's element is a TrainingConfig and the
 * step that needs the accelerator *trains* one: Apache Beam has no training step; beamlet's
 * TrainModel DoFn is one. It checkpoints every epoch (atomically), so a killed run re-run
 * with the same --experiment_id resumes where it stopped.
 *
 *   build/examples/03_accelerator_training                         # GPU if present, else CPU
 *   build/examples/03_accelerator_training --device=cpu --epochs=1 --width=8
 *   build/examples/03_accelerator_training --stop_after_epochs=1   # then run it again: resumes
 *
 * The pipeline (built by bl_stage_train, src/ml/stage_train.c):
 *
 *   Create([config]) -> TrainModel [accelerator hint] -> WriteResults (JSON)
 *
 * The accelerator hint is stage 2's concept, reused: when --device is an accelerator, the
 * TrainModel step asks for one. Every TrainingConfig field is a flag (--help lists them). */
#include "beamlet/stages.h"

int main(int argc, char **argv) {
    /* Stage 3's defaults (a narrow ResNet-18 for 2 epochs, device auto) are the stage's own:
     * `beamlet train` is this program. */
    return bl_command_main(&bl_stage_train_command, "03_accelerator_training", NULL, argc, argv);
}
