/* `beamlet sweep` is the learning path's stage 4 program itself: the example stays the one
 * readable source, and the CLI runs it as a subcommand. */
#define main beamlet_stage_sweep_main
#include "../../examples/04_parallel_sweep.c"
