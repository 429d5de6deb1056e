/* Stage 1 of the learning path: CPU inference with RunInference.
 *
 *   build/examples/01_cpu_inference                   # the 10,000 Fashion-MNIST test images
 *   build/examples/01_cpu_inference --limit=1000 --runner=local --num_workers=2
 *
 * The pipeline, as Beam draws it (built by bl_stage_infer, src/ml/stage_infer.c):
 *
 *   Create(test images) -> RunInference(ResNet-18) -> WriteText(predictions, JSON lines)
 *                                |              \---> CombineGlobally(Accuracy)
 *                                \--(dead letter)---> WriteText(dead letters)
 *
 * RunInference batches the images (BatchElements), loads the model once per worker process and
 * shares it between the worker's threads, and emits one PredictionResult per image: its id,
 * the top-k classes with probabilities, and the model's id. A batch that fails does not stop
 * the run: its images go to the dead-letter output with the reason.
 *
 * The model is a ResNet-18 (width 8, CIFAR stem, one input channel) that this project trained
 * on Fashion-MNIST, found wherever this program runs from; when it is missing the program says
 * how to train it (a few minutes on a laptop). Stage 2 (02_gpu_inference.c) is this program
 * plus one concept: the accelerator. */
#include "beamlet/stages.h"

int main(int argc, char **argv) {
    /* What makes this stage 1. These are defaults: a flag on the command line (see --help)
     * overrides them. */
    static const char *const stage1[] = {
        "device=cpu",                          /* the CPU (oneDNN when this build has it) */
        "top_k=3",                             /* classes kept per prediction */
        "output=beamlet-out/01_cpu_inference", /* where the results go */
        NULL,
    };
    return bl_command_main(&bl_stage_infer_command, "01_cpu_inference", stage1, argc, argv);
}
