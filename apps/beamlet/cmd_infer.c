/* beamlet infer: stages 1 and 2 of the learning path as one command. Fashion-MNIST's test split
 * or a folder of photos goes through RunInference on the CPU or a GPU; predictions and dead
 * letters are written as JSON lines, the figures (images/s, accuracy, time) as summary.json.
 * The pipeline is the one in examples/01_cpu_inference.c and 02_gpu_inference.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "beamlet/datasets.h"
#include "beamlet/ml_inference.h"
#include "cli.h"

#define TRAIN_HINT                                                                                           \
    "build/beamlet train --width=8 --epochs=4 --experiment_id=fashion-resnet18-w8 --output_dir=beamlet-out"

typedef struct infer_args {
    const char *dataset, *data_dir, *images, *weights, *device, *output, *hints;
    bool fallback;
    long batch, min_batch, max_weight, limit, top_k, resize, crop, shards;
} infer_args;

static bl_status read_args(const cli_flag *f, int n, infer_args *a) {
    a->dataset = cli_get(f, n, "dataset");
    a->data_dir = cli_get(f, n, "data_dir");
    a->images = cli_get(f, n, "images");
    a->weights = cli_get(f, n, "weights");
    a->device = cli_get(f, n, "device");
    a->output = cli_get(f, n, "output");
    a->hints = cli_get(f, n, "resource_hints");
    a->fallback = strcmp(cli_get(f, n, "allow_cpu_fallback"), "false") != 0;
    BL_TRY(cli_get_int(f, n, "batch_size", 1, 65536, &a->batch));
    BL_TRY(cli_get_int(f, n, "min_batch_size", 1, 65536, &a->min_batch));
    BL_TRY(cli_get_int(f, n, "max_batch_weight", 0, 1L << 40, &a->max_weight));
    BL_TRY(cli_get_int(f, n, "limit", 0, 1L << 40, &a->limit));
    BL_TRY(cli_get_int(f, n, "top_k", 1, BL_PREDICTION_MAX_TOP_K, &a->top_k));
    BL_TRY(cli_get_int(f, n, "resize", 1, 65536, &a->resize));
    BL_TRY(cli_get_int(f, n, "crop", 1, 65536, &a->crop));
    BL_TRY(cli_get_int(f, n, "num_shards", 1, 1024, &a->shards));
    if (a->min_batch > a->batch)
        return bl_error(BL_ERR_INVALID_ARG, "--min_batch_size=%ld is larger than --batch_size=%ld",
                        a->min_batch, a->batch);
    if (strcmp(a->dataset, "fashion-mnist") != 0 && strcmp(a->dataset, "folder") != 0)
        return bl_error(BL_ERR_INVALID_ARG, "--dataset=%s: expected fashion-mnist or folder", a->dataset);
    if (strcmp(a->dataset, "folder") == 0 && !*a->images)
        return bl_error(BL_ERR_INVALID_ARG, "--dataset=folder needs --images=DIR");
    return BL_OK;
}

/* The pipeline options: the runner flags pass straight through. */
static bl_status pipeline_options(const cli_flag *f, int n, bl_options **out) {
    BL_TRY(bl_options_new(out));
    const char *names[] = {"runner", "num_workers", "worker_accelerators"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        BL_TRY(bl_options_set(*out, names[i], cli_get(f, n, names[i])));
    return BL_OK;
}

static void print_summary(const char *json, const infer_args *a, const bl_inference_report *r,
                          const bl_accuracy *acc, double seconds, int64_t dead) {
    printf("%lld images in %.2f s: %.0f images/s (the model alone: %.0f images/s; %lld batches, mean %.1f)\n",
           (long long)r->inferences, seconds, seconds > 0 ? (double)r->inferences / seconds : 0.0,
           r->model_seconds > 0 ? (double)r->inferences / r->model_seconds : 0.0, (long long)r->batches,
           r->mean_batch_size);
    if (acc->labelled)
        printf("accuracy %.2f%% (top-%ld %.2f%%) on %lld labelled images\n",
               100.0 * (double)acc->correct / (double)acc->labelled, a->top_k,
               100.0 * (double)acc->correct_top_k / (double)acc->labelled, (long long)acc->labelled);
    else
        printf("accuracy: no labels (a folder without class subfolders)\n");
    printf("model loaded in %.0f ms; %lld failed batches; %lld dead letters\n", r->load_model_ms,
           (long long)r->failed_batches, (long long)dead);
    printf("predictions:  %s/predictions-*.jsonl\ndead letters: %s/dead_letter-*.jsonl\nsummary:      "
           "%s/summary.json\n",
           a->output, a->output, a->output);
    printf("%s", json);
}

static int run(const cli_flag *f, int nf, const infer_args *a) {
    bl_options *opts = NULL;
    bl_pipeline *p = NULL;
    bl_image_folder *names_folder = NULL;
    if (!bl_file_exists(a->weights)) {
        fprintf(stderr,
                "beamlet infer: no model at %s. Train it from the repository root with:\n  %s\n"
                "  mkdir -p models && cp beamlet-out/fashion-resnet18-w8/model.safetensors %s\n"
                "or pass --weights=PATH to a torchvision-layout ResNet-18/34.\n",
                a->weights, TRAIN_HINT, a->weights);
        return 1;
    }
    bool folder = strcmp(a->dataset, "folder") == 0;
    bl_resnet_config rc;
    if (bl_model_handler_peek(a->weights, &rc) != BL_OK) goto fail;
    if (folder && rc.in_channels != 3) {
        fprintf(stderr,
                "beamlet infer: %s takes %d-channel images, but photos from a folder are RGB; use a "
                "3-channel model (e.g. a torchvision ResNet saved as safetensors)\n",
                a->weights, rc.in_channels);
        return 2;
    }
    if (pipeline_options(f, nf, &opts) != BL_OK || bl_pipeline_new(opts, &p) != BL_OK) goto fail;
    if (strcmp(bl_options_get(opts, "worker_accelerators"), "0") == 0)
        bl_pipeline_set_worker_accelerators(p, bl_accelerator_count());

    bl_run_inference_config cfg = bl_run_inference_config_default();
    cfg.weights_path = a->weights;
    cfg.device = a->device;
    cfg.allow_cpu_fallback = a->fallback;
    cfg.max_batch_size = (int)a->batch;
    cfg.min_batch_size = (int)a->min_batch;
    cfg.max_batch_weight = (size_t)a->max_weight;
    cfg.element_size_fn = a->max_weight ? bl_image_example_size : NULL;
    cfg.top_k = (int)a->top_k;
    cfg.hints = *a->hints ? a->hints : NULL;
    const char *folder_names[1000];
    bl_pcoll *images, *decode_dead = NULL, *pred, *infer_dead, *dead, *accuracy;
    bl_status s = bl_mkdirs(a->output);
    if (s == BL_OK && folder) {
        cfg.input_height = cfg.input_width = (int)a->crop;
        s = bl_read_image_folder(p, "ReadImages", a->images, (int)a->resize, (int)a->crop, a->limit, &images,
                                 &decode_dead, &cfg.progress_total);
        /* Class subfolders name the classes when they match the model's (ImageFolder's order). */
        if (s == BL_OK && bl_image_folder_open(a->images, &names_folder) == BL_OK &&
            bl_image_folder_num_classes(names_folder) == rc.num_classes && rc.num_classes <= 1000) {
            for (int k = 0; k < rc.num_classes; k++)
                folder_names[k] = bl_image_folder_class_name(names_folder, k);
            cfg.class_names = folder_names;
            cfg.num_class_names = rc.num_classes;
        }
    } else if (s == BL_OK) {
        s = bl_read_fashion_mnist(p, "ReadFashionMNIST", *a->data_dir ? a->data_dir : NULL, a->limit, &images,
                                  &cfg.progress_total);
        cfg.class_names = bl_fashion_mnist_class_names;
        cfg.num_class_names = BL_FASHION_MNIST_CLASSES;
    }
    char pred_prefix[600], dead_prefix[600], summary_path[600];
    snprintf(pred_prefix, sizeof pred_prefix, "%s/predictions", a->output);
    snprintf(dead_prefix, sizeof dead_prefix, "%s/dead_letter", a->output);
    snprintf(summary_path, sizeof summary_path, "%s/summary.json", a->output);
    if (s == BL_OK) s = bl_run_inference(p, "RunInference", images, &cfg, &pred, &infer_dead);
    bl_image_folder_free(names_folder);
    names_folder = NULL;
    bl_pcoll *both[2] = {infer_dead, decode_dead};
    if (s == BL_OK) s = bl_flatten(p, "DeadLetters", both, decode_dead ? 2 : 1, &dead);
    if (s == BL_OK)
        s = bl_write_text(p, "WritePredictions", pred, pred_prefix, ".jsonl", (int)a->shards, BL_TEXT_JSON);
    if (s == BL_OK) s = bl_write_text(p, "WriteDeadLetters", dead, dead_prefix, ".jsonl", 1, BL_TEXT_JSON);
    if (s == BL_OK) s = bl_combine_globally(p, "Accuracy", pred, bl_combine_accuracy(), &accuracy);
    if (s == BL_OK) s = bl_pipeline_collect(p, accuracy);
    if (s == BL_OK) s = bl_pipeline_collect(p, dead);
    if (s != BL_OK) goto fail;
    double t0 = bl_time_now();
    if (bl_pipeline_run(p) != BL_OK) goto fail;
    double seconds = bl_time_now() - t0;
    if (bl_pipeline_is_coordinator(p)) {
        bl_inference_report r;
        bl_accuracy *acc;
        bl_inference_report_get(p, "RunInference", &r);
        if (bl_pcoll_result_value(accuracy, 0, (void **)&acc) != BL_OK) goto fail;
        int64_t ndead = (int64_t)bl_pcoll_result_count(dead);
        bl_buf j = {0};
        bl_buf_printf(&j, "{\"command\": \"infer\", \"dataset\": \"%s\", \"weights\": ", a->dataset);
        bl_coder_to_json(bl_coder_string(), a->weights, &j);
        bl_buf_printf(
            &j,
            ", \"device\": \"%s\", \"allow_cpu_fallback\": %s, \"runner\": \"%s\", \"workers\": %d, "
            "\"images\": %lld, \"dead_letters\": %lld, \"failed_batches\": %lld, \"seconds\": %.3f, "
            "\"images_per_s\": %.1f, \"model_images_per_s\": %.1f, \"mean_batch_size\": %.2f, "
            "\"load_model_ms\": %.1f, \"top_k\": %ld, \"accuracy\": ",
            a->device, a->fallback ? "true" : "false", bl_pipeline_runner_name(p),
            strcmp(bl_pipeline_runner_name(p), "direct") == 0 ? 1 : bl_pipeline_num_workers(p),
            (long long)r.inferences, (long long)ndead, (long long)r.failed_batches, seconds,
            seconds > 0 ? (double)r.inferences / seconds : 0.0,
            r.model_seconds > 0 ? (double)r.inferences / r.model_seconds : 0.0, r.mean_batch_size,
            r.load_model_ms, a->top_k);
        bl_coder_to_json(bl_coder_accuracy(), acc, &j);
        bl_buf_printf(&j, ", \"output\": ");
        bl_coder_to_json(bl_coder_string(), a->output, &j);
        bl_buf_printf(&j, "}\n");
        s = j.data ? bl_file_write_atomic(summary_path, j.data, j.len)
                   : bl_error(BL_ERR_OUT_OF_MEMORY, "summary");
        if (s == BL_OK) print_summary((const char *)j.data, a, &r, acc, seconds, ndead);
        bl_buf_free(&j);
        bl_coder_free_value(bl_coder_accuracy(), acc);
        if (s != BL_OK) goto fail;
    }
    bl_pipeline_free(p);
    bl_options_free(opts);
    return 0;
fail:
    fprintf(stderr, "beamlet infer: %s\n", bl_last_error());
    bl_image_folder_free(names_folder);
    bl_pipeline_free(p);
    bl_options_free(opts);
    return 1;
}

int cmd_infer(int argc, char **argv) {
    cli_flag flags[] = {
        {"dataset", "fashion-mnist", "fashion-mnist (the test split) or folder (JPEG/PNG photos)"},
        {"data_dir", "", "Fashion-MNIST location (default: its standard place)"},
        {"images", "", "with --dataset=folder: the folder (class subfolders give labels)"},
        {"weights", "models/fashion-resnet18-w8.safetensors",
         "the model: a torchvision-layout ResNet as safetensors"},
        {"device", "auto",
         "auto, cpu, cpu_ref, gpu, cuda, cuda:N, tpu, xla:cpu, xla:cuda (see 'beamlet devices')"},
        {"allow_cpu_fallback", "false", "with --device=gpu and no GPU: run on the CPU, with a loud warning"},
        {"batch_size", "64", "largest batch handed to the model"},
        {"min_batch_size", "1", "smallest batch (smaller ones only at bundle ends)"},
        {"max_batch_weight", "0", "largest batch in pixels (0 = no limit)"},
        {"limit", "0", "use only the first N images (0 = all)"},
        {"top_k", "5", "classes kept per prediction"},
        {"resize", "256", "folder images: shorter side resized to this"},
        {"crop", "224", "folder images: centre crop to this square"},
        {"output", "beamlet-out/infer", "folder for predictions, dead letters and summary.json"},
        {"num_shards", "1", "prediction shards"},
        {"resource_hints", "", "hints for the RunInference step, e.g. accelerator=type:nvidia-h100;count:1"},
        {"runner", "direct", "direct, local or mpi"},
        {"num_workers", "1", "workers (threads for local)"},
        {"worker_accelerators", "0", "GPUs per worker (0: the GPUs this machine shows)"},
    };
    int n = (int)(sizeof flags / sizeof flags[0]);
    bool help;
    if (cli_parse(argc, argv, 2, flags, n, &help) != BL_OK) {
        fprintf(stderr, "beamlet infer: %s\n", bl_last_error());
        return 2;
    }
    if (help) {
        cli_usage("infer",
                  "Runs images through a ResNet with RunInference (stages 1 and 2 of the learning path);\n"
                  "writes predictions and dead letters as JSON lines and the figures as summary.json.",
                  flags, n);
        return 0;
    }
    infer_args a;
    if (read_args(flags, n, &a) != BL_OK) {
        fprintf(stderr, "beamlet infer: %s\n", bl_last_error());
        return 2;
    }
    return run(flags, n, &a);
}
