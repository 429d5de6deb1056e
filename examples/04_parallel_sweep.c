/* Stage 4 of the learning path: a parallel hyperparameter sweep.
 *
 * Stage 3 trained one config. Here a grid of configs is *reshuffled* over the workers (the new
 * concept: without Reshuffle a runner may keep every element on the worker that created them),
 * each worker trains its share in parallel, a CombineFn picks the best model, and a DoFn copies
 * it to a serving folder. Every result is also written as JSON lines.
 *
 *   build/examples/04_parallel_sweep --runner=local --num_workers=2      # threads
 *   mpirun -np 3 build/examples/04_parallel_sweep --runner=mpi            # ranks (one GPU each)
 *   build/examples/04_parallel_sweep --learning_rates=0.05,0.01 --batch_sizes=32 --models=resnet18 \
 *       --epochs=1 --width=4 --train_limit=2000 --device=cpu            # a tiny sweep on a laptop
 *
 * The pipeline (built by bl_stage_sweep, src/ml/stage_sweep.c):
 *
 *   Create(grid) -> Reshuffle -> TrainModel [accelerator hint] -+-> BestModel -> Deploy
 *                                                               +-> WriteResults (JSON lines)
 *
 * The default grid is the proposal's: learning rate {0.01, 0.001, 0.0001} x batch size
 * {16, 32, 64} x model {resnet18, resnet34} = 18 configs, on the local runner. The grid sets
 * each config's learning rate, batch size, model and experiment id, so the single-run flags
 * --learning_rate, --batch_size, --model and --experiment_id are refused. */
#include "beamlet/stages.h"

int main(int argc, char **argv) {
    /* Stage 4's defaults (the grid above, the local runner) are the stage's own: `beamlet sweep`
     * is this program. */
    return bl_command_main(&bl_stage_sweep_command, "04_parallel_sweep", NULL, argc, argv);
}
