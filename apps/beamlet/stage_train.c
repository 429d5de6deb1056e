/* `beamlet train` is the learning path's stage 3 program itself: the example stays the one
 * readable source, and the CLI runs it as a subcommand. */
#define main beamlet_stage_train_main
#include "../../examples/03_accelerator_training.c"
