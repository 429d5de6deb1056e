/* Stage 2 of the learning path: the same pipeline as stage 1, on a GPU.
 *
 *   build/examples/02_gpu_inference                       # needs an NVIDIA GPU
 *   build/examples/02_gpu_inference --allow_cpu_fallback  # no GPU: runs on the CPU, loudly
 *
 * One new concept: the accelerator. Compared with 01_cpu_inference.c (diff them), this program
 *   - puts a resource hint on the RunInference step, as Beam's
 *       RunInference(handler).with_resource_hints(accelerator="type:nvidia-h100;count:1"),
 *     so the runner places that step only on workers that have a GPU (the stage tells the
 *     pipeline how many GPUs this machine's workers have: the ones it can see, unless
 *     --worker_accelerators says otherwise);
 *   - asks RunInference for --device=gpu. Each worker thread (or MPI rank) uses the GPU the
 *     runner assigned it, and the model is loaded once per GPU and process.
 * On a machine without a GPU it stops with a clear message, unless you pass
 * --allow_cpu_fallback: then it warns loudly and runs on the CPU (the hint is dropped, since no
 * worker could honour it). */
#include "beamlet/stages.h"

int main(int argc, char **argv) {
    /* What makes this stage 2. These are defaults: a flag on the command line (see --help)
     * overrides them. */
    static const char *const stage2[] = {
        "device=gpu",                                           /* NEW: a GPU ... */
        "inference_hints=accelerator=type:nvidia-h100;count:1", /* NEW: ... and the step's hint */
        "top_k=3",                                              /* classes kept per prediction */
        "output=beamlet-out/02_gpu_inference",                  /* where the results go */
        NULL,
    };
    return bl_command_main(&bl_stage_infer_command, "02_gpu_inference", stage2, argc, argv);
}
