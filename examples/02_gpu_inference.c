/* Stage 2 of the learning path: the same pipeline as stage 1, on a GPU.
 *
 *   build/examples/02_gpu_inference                       # needs an NVIDIA GPU
 *   build/examples/02_gpu_inference --allow_cpu_fallback  # no GPU: runs on the CPU, loudly
 *
 * One new concept: the accelerator. Compared with 01_cpu_inference.c (diff them), this program
 *   - puts a resource hint on the RunInference step, as Beam's
 *       RunInference(handler).with_resource_hints(accelerator="type:nvidia-h100;count:1"),
 *     so the runner places that step only on workers that have a GPU;
 *   - tells the pipeline how many GPUs this machine's workers have (--worker_accelerators,
 *     which on Dataflow would provision them; here we count the GPUs we can see);
 *   - asks RunInference for --device=gpu. Each worker thread (or MPI rank) uses the GPU the
 *     runner assigned it, and the model is loaded once per GPU and process.
 * On a machine without a GPU it stops with a clear message, unless you pass
 * --allow_cpu_fallback: then it warns loudly and runs on the CPU (the hint is dropped, since no
 * worker could honour it). Everything marked "NEW in stage 2" is the whole difference. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "beamlet/datasets.h"
#include "beamlet/ml_inference.h"

#define DEFAULT_WEIGHTS "models/fashion-resnet18-w8.safetensors"

static int fail(const char *what) {
    fprintf(stderr, "02_gpu_inference: %s: %s\n", what, bl_last_error());
    return 1;
}

int main(int argc, char **argv) {
    /* 1. Options, Beam style: --name=value. The pipeline's own (--runner, --num_workers, ...)
     *    are always there; we add ours. */
    bl_options *opts;
    if (bl_options_new(&opts) != BL_OK) return fail("options");
    bl_options_add(opts, "weights", DEFAULT_WEIGHTS, "the model: a torchvision-layout ResNet as safetensors");
    bl_options_add(opts, "data_dir", "", "Fashion-MNIST folder (default: its standard place)");
    bl_options_add(opts, "limit", "0", "use only the first N test images (0 = all 10,000)");
    bl_options_add(opts, "batch_size", "64", "largest batch RunInference hands the model");
    bl_options_add(opts, "top_k", "3", "classes kept per prediction");
    bl_options_add(opts, "output", "beamlet-out/02_gpu_inference", "folder for predictions and the summary");
    /* NEW in stage 2: where to run, and what to do without a GPU. */
    bl_options_add(opts, "device", "gpu", "gpu, auto or cpu");
    bl_options_add(opts, "allow_cpu_fallback", "false",
                   "without a GPU, run on the CPU (with a loud warning)");
    if (bl_options_parse(opts, argc, argv) != BL_OK || bl_options_help(opts)) {
        bool asked = bl_options_help(opts);
        if (!asked) fprintf(stderr, "02_gpu_inference: %s\n", bl_last_error());
        char *usage = bl_options_usage(opts);
        fprintf(asked ? stdout : stderr,
                "usage: 02_gpu_inference [--name=value ...]\n"
                "Stage 2: Fashion-MNIST through RunInference on a GPU.\n%s",
                usage);
        free(usage);
        bl_options_free(opts);
        return asked ? 0 : 2;
    }
    int64_t limit, batch, top_k;
    if (bl_options_get_int(opts, "limit", &limit) != BL_OK ||
        bl_options_get_int(opts, "batch_size", &batch) != BL_OK ||
        bl_options_get_int(opts, "top_k", &top_k) != BL_OK)
        return fail("options");
    const char *weights = bl_options_get(opts, "weights"), *outdir = bl_options_get(opts, "output");
    const char *data_dir = *bl_options_get(opts, "data_dir") ? bl_options_get(opts, "data_dir") : NULL;

    /* 2. The model must exist before we build anything. */
    if (!bl_file_exists(weights)) {
        fprintf(stderr,
                "02_gpu_inference: no model at %s. Train it (about 4 epochs, minutes on a laptop) "
                "from the repository root with:\n"
                "  build/beamlet train --width=8 --epochs=4 --experiment_id=fashion-resnet18-w8 "
                "--output_dir=beamlet-out\n"
                "  mkdir -p models && cp beamlet-out/fashion-resnet18-w8/model.safetensors %s\n"
                "or pass --weights=PATH to another torchvision-layout ResNet-18/34.\n",
                weights, weights);
        return 1;
    }

    /* 3. The pipeline. */
    bl_pipeline *p;
    if (bl_pipeline_new(opts, &p) != BL_OK) return fail("pipeline");
    bl_run_inference_config cfg = bl_run_inference_config_default();
    cfg.weights_path = weights;
    /* NEW in stage 2: the device, the fallback policy and the accelerator hint on the step. */
    const char *device = bl_options_get(opts, "device");
    bool fallback = strcmp(bl_options_get(opts, "allow_cpu_fallback"), "false") != 0;
    cfg.device = device;
    cfg.allow_cpu_fallback = fallback;
    cfg.hints = "accelerator=type:nvidia-h100;count:1";
    /* NEW in stage 2: the workers have the accelerators we can see, unless --worker_accelerators
     * says; and where the step will run (the resolver's answer, fallback included). */
    int gpus = bl_accelerator_count();
    if (!bl_options_given(opts, "worker_accelerators")) bl_pipeline_set_worker_accelerators(p, gpus);
    bl_device_request req = {device, -1, fallback};
    bl_device_choice choice;
    if (bl_device_resolve(&req, &choice) != BL_OK) return fail("device");
    const char *ran_on = choice.name;
    cfg.max_batch_size = (int)batch;
    cfg.top_k = (int)top_k;
    cfg.class_names = bl_fashion_mnist_class_names;
    cfg.num_class_names = BL_FASHION_MNIST_CLASSES;

    bl_pcoll *images, *predictions, *dead, *accuracy;
    char pred_prefix[600], dead_prefix[600], summary_path[600];
    snprintf(pred_prefix, sizeof pred_prefix, "%s/predictions", outdir);
    snprintf(dead_prefix, sizeof dead_prefix, "%s/dead_letter", outdir);
    snprintf(summary_path, sizeof summary_path, "%s/summary.json", outdir);
    bl_status s = bl_mkdirs(outdir);
    if (s == BL_OK)
        s = bl_read_fashion_mnist(p, "ReadFashionMNIST", data_dir, limit, &images, &cfg.progress_total);
    if (s == BL_OK) s = bl_run_inference(p, "RunInference", images, &cfg, &predictions, &dead);
    if (s == BL_OK)
        s = bl_write_text(p, "WritePredictions", predictions, pred_prefix, ".jsonl", 1, BL_TEXT_JSON);
    if (s == BL_OK) s = bl_write_text(p, "WriteDeadLetters", dead, dead_prefix, ".jsonl", 1, BL_TEXT_JSON);
    if (s == BL_OK) s = bl_combine_globally(p, "Accuracy", predictions, bl_combine_accuracy(), &accuracy);
    if (s == BL_OK) s = bl_pipeline_collect(p, accuracy);
    if (s != BL_OK) return fail("building the pipeline");

    /* 4. Run it, and time the whole run: what a user waits for. */
    double t0 = bl_time_now();
    if (bl_pipeline_run(p) != BL_OK) return fail("run");
    double seconds = bl_time_now() - t0;
    if (!bl_pipeline_is_coordinator(p)) return 0; /* mpi worker ranks: rank 0 reports */

    /* 5. What a learner wants to see: speed, accuracy, and where everything went. */
    bl_inference_report r;
    bl_accuracy *acc = NULL;
    bl_inference_report_get(p, "RunInference", &r);
    if (bl_pcoll_result_value(accuracy, 0, (void **)&acc) != BL_OK) return fail("accuracy");
    double per_s = seconds > 0 ? (double)r.inferences / seconds : 0;
    double model_per_s = r.model_seconds > 0 ? (double)r.inferences / r.model_seconds : 0;
    double top1 = acc->labelled ? (double)acc->correct / (double)acc->labelled : 0;
    double topk = acc->labelled ? (double)acc->correct_top_k / (double)acc->labelled : 0;
    const char *runner = bl_pipeline_runner_name(p);
    int workers = strcmp(runner, "direct") == 0 ? 1 : bl_pipeline_num_workers(p); /* direct: one thread */
    printf("stage 2, GPU inference: %s on %s (%d GPU(s) visible), %s runner with %d worker(s)\n", weights,
           ran_on, gpus, runner, workers);
    printf(
        "  %lld images in %.2f s: %.0f images/s (the model alone: %.0f images/s; %lld batches, mean %.1f)\n",
        (long long)r.inferences, seconds, per_s, model_per_s, (long long)r.batches, r.mean_batch_size);
    printf("  accuracy %.2f%% (top-%lld %.2f%%) on %lld labelled images; model loaded in %.0f ms; "
           "%lld failed batches\n",
           100 * top1, (long long)top_k, 100 * topk, (long long)acc->labelled, r.load_model_ms,
           (long long)r.failed_batches);
    printf("  predictions:  %s-00000-of-00001.jsonl\n  dead letters: %s-00000-of-00001.jsonl\n  summary:     "
           " %s\n",
           pred_prefix, dead_prefix, summary_path);

    /* 6. The same figures as JSON, written atomically (paths quoted by the string coder). */
    bl_buf j = {0};
    bl_buf_printf(&j, "{\"stage\": 2, \"weights\": ");
    bl_coder_to_json(bl_coder_string(), weights, &j);
    bl_buf_printf(
        &j,
        ", \"device\": \"%s\", \"gpus\": %d, \"runner\": \"%s\", \"workers\": %d, \"images\": %lld, "
        "\"seconds\": %.3f, \"images_per_s\": %.1f, \"model_images_per_s\": %.1f, \"accuracy\": %.6f, "
        "\"top_k\": %lld, \"top_k_accuracy\": %.6f, \"failed_batches\": %lld, \"load_model_ms\": %.1f, "
        "\"output\": ",
        ran_on, gpus, runner, workers, (long long)r.inferences, seconds, per_s, model_per_s, top1,
        (long long)top_k, topk, (long long)r.failed_batches, r.load_model_ms);
    bl_coder_to_json(bl_coder_string(), outdir, &j);
    bl_buf_printf(&j, "}\n");
    if (!j.data || bl_file_write_atomic(summary_path, j.data, j.len) != BL_OK) return fail("summary");
    bl_buf_free(&j);
    bl_coder_free_value(bl_coder_accuracy(), acc);
    bl_pipeline_free(p);
    bl_options_free(opts);
    return 0;
}
