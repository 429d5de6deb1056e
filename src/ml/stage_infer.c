/* Stages 1 and 2 of the learning path: a dataset's test split, or a folder of photos, through
 * RunInference; the predictions and the dead letters as JSON lines, the figures as
 * summary.json. Stage 1 runs on the CPU; stage 2 is the same pipeline on an accelerator, with a
 * resource hint on the RunInference step so the runner places it on a worker that has one.
 *
 *   Read(test split | photos) -> RunInference(ResNet) -> WriteText(predictions)
 *            |                         |    \-> CombineGlobally(Accuracy)
 *            \-(undecodable)-----------+-(dead letter)-> Flatten -> WriteText(dead letters)
 *
 * RunInference batches the images (BatchElements), loads the model once per worker process and
 * shares it between the worker's threads, and emits one PredictionResult per image. A batch
 * that fails does not stop the run: its images go to the dead-letter output with the reason. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "beamlet/json.h"
#include "ml/stage_common.h"

#define TRAIN_HINT                                                                                           \
    "build/beamlet train --width=8 --epochs=4 --experiment_id=fashion-resnet18-w8 --output_dir=beamlet-out"

typedef struct infer_args {
    const char *dataset, *data_dir, *images, *device, *output, *hints;
    char weights[1024];
    bool fallback;
    bl_dtype precision;
    int64_t batch, min_batch, max_weight, limit, top_k, resize, crop, shards, max_pixels;
} infer_args;

bl_status bl_stage_infer_options(bl_options *o) {
    BL_TRY(bl_options_add(o, "dataset", "fashion-mnist",
                          "fashion-mnist or cifar10 (their test splits), or folder (JPEG/PNG photos)"));
    BL_TRY(bl_options_add(o, "data_dir", "", "the dataset's folder; empty: its standard place"));
    BL_TRY(
        bl_options_add(o, "images", "", "with --dataset=folder: the folder (class subfolders give labels)"));
    BL_TRY(bl_options_add(o, "limit", "0", "use only the first N images (0 = all)"));
    BL_TRY(bl_options_add(o, "weights", "",
                          "the model, a torchvision-layout ResNet as safetensors; empty: the shipped "
                          "fashion-resnet18-w8 ($BEAMLET_MODEL_DIR, else beside the program)"));
    BL_TRY(bl_options_add(o, "device", "auto", BL_DEVICE_FLAG_HELP));
    BL_TRY(bl_options_add(o, "allow_cpu_fallback", "false", BL_FALLBACK_FLAG_HELP));
    BL_TRY(bl_options_add(o, "precision", "f32", BL_PRECISION_FLAG_HELP));
    BL_TRY(
        bl_options_add(o, "inference_hints", "",
                       "resource hints on the RunInference step, e.g. accelerator=type:nvidia-h100;count:1"));
    BL_TRY(bl_options_add(o, "batch_size", "64", "largest batch RunInference hands the model"));
    BL_TRY(bl_options_add(o, "min_batch_size", "1", "smallest batch (smaller ones only at bundle ends)"));
    BL_TRY(bl_options_add(o, "max_batch_weight", "0", "largest batch in pixels (0 = no limit)"));
    BL_TRY(bl_options_add(o, "top_k", "5", "classes kept per prediction"));
    BL_TRY(bl_options_add(o, "resize", "256", "folder photos: shorter side resized to this"));
    BL_TRY(bl_options_add(o, "crop", "224", "folder photos: centre crop to this square"));
    BL_TRY(bl_options_add(o, "max_image_pixels", "0",
                          "folder photos: a file declaring more pixels goes to the dead letters undecoded "
                          "(0: $BEAMLET_MAX_IMAGE_PIXELS, else 2^27)"));
    BL_TRY(bl_options_add(o, "output", "beamlet-out/infer",
                          "folder for predictions, dead letters and summary.json"));
    return bl_options_add(o, "num_shards", "1", "prediction files");
}

static bl_status read_args(const bl_options *o, infer_args *a) {
    memset(a, 0, sizeof *a);
    a->dataset = bl_options_get(o, "dataset");
    a->data_dir = bl_options_get(o, "data_dir");
    a->images = bl_options_get(o, "images");
    a->device = bl_options_get(o, "device");
    a->output = bl_options_get(o, "output");
    a->hints = bl_options_get(o, "inference_hints");
    BL_TRY(bl_options_get_bool(o, "allow_cpu_fallback", &a->fallback));
    BL_TRY(bl_precision_parse(bl_options_get(o, "precision"), &a->precision));
    BL_TRY(bl_options_get_int_in(o, "batch_size", 1, 65536, &a->batch));
    BL_TRY(bl_options_get_int_in(o, "min_batch_size", 1, 65536, &a->min_batch));
    BL_TRY(bl_options_get_int_in(o, "max_batch_weight", 0, INT64_C(1) << 40, &a->max_weight));
    BL_TRY(bl_options_get_int_in(o, "limit", 0, INT64_C(1) << 40, &a->limit));
    BL_TRY(bl_options_get_int_in(o, "top_k", 1, BL_PREDICTION_MAX_TOP_K, &a->top_k));
    BL_TRY(bl_options_get_int_in(o, "resize", 1, 65536, &a->resize));
    BL_TRY(bl_options_get_int_in(o, "crop", 1, 65536, &a->crop));
    BL_TRY(bl_options_get_int_in(o, "num_shards", 1, 1024, &a->shards));
    BL_TRY(bl_options_get_int_in(o, "max_image_pixels", 0, INT64_C(1) << 28, &a->max_pixels));
    if (a->min_batch > a->batch)
        return bl_error(BL_ERR_INVALID_ARG, "--min_batch_size=%lld is larger than --batch_size=%lld",
                        (long long)a->min_batch, (long long)a->batch);
    bool folder = strcmp(a->dataset, "folder") == 0;
    if (!folder && !bl_dataset_known(a->dataset))
        return bl_error(BL_ERR_INVALID_ARG, "--dataset=%s: expected %s or folder", a->dataset,
                        BL_DATASET_NAMES);
    if (folder && !*a->images) return bl_error(BL_ERR_INVALID_ARG, "--dataset=folder needs --images=DIR");
    const char *w = bl_options_get(o, "weights");
    if (*w) {
        if ((size_t)snprintf(a->weights, sizeof a->weights, "%s", w) >= sizeof a->weights)
            return bl_error(BL_ERR_INVALID_ARG, "--weights: path too long");
    } else {
        BL_TRY(bl_shipped_model_path(a->weights, sizeof a->weights));
    }
    if (!bl_file_exists(a->weights))
        return bl_error(
            BL_ERR_NOT_FOUND,
            "no model at %s. Train it (about 4 epochs, minutes on a laptop) from the repository "
            "root with:\n  %s\n  mkdir -p models && cp beamlet-out/fashion-resnet18-w8/model.safetensors "
            "models/\nor pass --weights=PATH to another torchvision-layout ResNet-18/34",
            a->weights, TRAIN_HINT);
    return BL_OK;
}

/* What a run leaves behind, for the summary and the lines printed. */
typedef struct infer_figures {
    bl_inference_report r;
    bl_accuracy acc;
    int64_t dead;
    double seconds;
    int workers, threads, accelerators, stage;
    const char *runner;
    const bl_device_choice *device;
} infer_figures;

static double ratio(int64_t a, int64_t b) { return b > 0 ? (double)a / (double)b : 0.0; }

static bl_status write_summary(const infer_args *a, const infer_figures *f, const char *path) {
    bl_json_writer *w;
    BL_TRY(bl_json_writer_new(&w));
    bl_json_write_begin_object(w);
#define KEY_INT(k, v) (bl_json_write_key(w, k), bl_json_write_int(w, v))
#define KEY_NUM(k, v) (bl_json_write_key(w, k), bl_json_write_double(w, v))
#define KEY_STR(k, v) (bl_json_write_key(w, k), bl_json_write_string(w, v))
#define KEY_BOOL(k, v) (bl_json_write_key(w, k), bl_json_write_bool(w, v))
    KEY_INT("stage", f->stage);
    KEY_STR("dataset", a->dataset);
    KEY_STR("weights", a->weights);
    KEY_STR("device", f->device->name);
    KEY_STR("requested_device", a->device);
    KEY_BOOL("allow_cpu_fallback", a->fallback);
    KEY_BOOL("fell_back", f->device->fell_back);
    KEY_STR("precision", bl_dtype_name(a->precision));
    KEY_INT("gpus", f->accelerators);
    KEY_STR("runner", f->runner);
    KEY_INT("workers", f->workers);
    KEY_INT("threads_per_worker", f->threads);
    KEY_INT("images", f->r.inferences);
    KEY_NUM("seconds", f->seconds);
    KEY_NUM("images_per_s", f->seconds > 0 ? (double)f->r.inferences / f->seconds : 0.0);
    KEY_NUM("model_images_per_s",
            f->r.model_seconds > 0 ? (double)f->r.inferences / f->r.model_seconds : 0.0);
    KEY_NUM("mean_batch_size", f->r.mean_batch_size);
    KEY_NUM("load_model_ms", f->r.load_model_ms);
    KEY_INT("labelled", f->acc.labelled);
    KEY_NUM("accuracy", ratio(f->acc.correct, f->acc.labelled));
    KEY_INT("top_k", a->top_k);
    KEY_NUM("top_k_accuracy", ratio(f->acc.correct_top_k, f->acc.labelled));
    KEY_INT("failed_batches", f->r.failed_batches);
    KEY_INT("dead_letters", f->dead);
    KEY_STR("output", a->output);
#undef KEY_INT
#undef KEY_NUM
#undef KEY_STR
#undef KEY_BOOL
    bl_json_write_end_object(w);
    const char *text;
    size_t len;
    bl_status s = bl_json_writer_finish(w, &text, &len);
    bl_buf line = {0};
    if (s == BL_OK) s = bl_buf_append(&line, text, len);
    if (s == BL_OK) s = bl_buf_append(&line, "\n", 1);
    if (s == BL_OK) s = bl_file_write_atomic(path, line.data, line.len);
    bl_buf_free(&line);
    bl_json_writer_free(w);
    return s;
}

static void print_figures(const infer_args *a, const infer_figures *f) {
    const bl_inference_report *r = &f->r;
    printf(
        "stage %d, %s inference: %s on %s%s in %s (%d accelerator(s) visible), %s runner with %d worker(s) "
        "x %d compute thread(s)\n",
        f->stage, f->stage == 1 ? "CPU" : "accelerated", a->weights, f->device->name,
        f->device->fell_back ? " (CPU fallback)" : "", bl_dtype_name(a->precision), f->accelerators,
        f->runner, f->workers, f->threads);
    printf(
        "  %lld images in %.2f s: %.0f images/s (the model alone: %.0f images/s; %lld batches, mean %.1f)\n",
        (long long)r->inferences, f->seconds, f->seconds > 0 ? (double)r->inferences / f->seconds : 0.0,
        r->model_seconds > 0 ? (double)r->inferences / r->model_seconds : 0.0, (long long)r->batches,
        r->mean_batch_size);
    if (f->acc.labelled)
        printf("  accuracy %.2f%% (top-%lld %.2f%%) on %lld labelled images\n",
               100 * ratio(f->acc.correct, f->acc.labelled), (long long)a->top_k,
               100 * ratio(f->acc.correct_top_k, f->acc.labelled), (long long)f->acc.labelled);
    else
        printf("  accuracy: no labels (a folder without class subfolders)\n");
    printf("  model loaded in %.0f ms; %lld failed batches; %lld dead letters\n", r->load_model_ms,
           (long long)r->failed_batches, (long long)f->dead);
    printf("  predictions:  %s/predictions-*.jsonl\n  dead letters: %s/dead_letter-*.jsonl\n"
           "  summary:      %s/summary.json\n",
           a->output, a->output, a->output);
}

/* The source: a dataset's test split, or the photos of a folder (with its dead letters). */
static bl_status read_examples(bl_pipeline *p, const infer_args *a, const bl_resnet_config *rc,
                               bl_run_inference_config *cfg, const char **names_buf, bl_pcoll **images,
                               bl_pcoll **decode_dead) {
    *decode_dead = NULL;
    if (strcmp(a->dataset, "folder") != 0) {
        const char *dir = *a->data_dir ? a->data_dir : NULL;
        BL_TRY(bl_read_test_split(p, "Read", a->dataset, dir, a->limit, images, &cfg->progress_total));
        bl_dataset_class_names(a->dataset, &cfg->class_names, &cfg->num_class_names);
        return BL_OK;
    }
    if (rc->in_channels != 3)
        return bl_error(BL_ERR_INVALID_ARG,
                        "%s takes %d-channel images, but photos from a folder are RGB; use a 3-channel "
                        "model (e.g. a torchvision ResNet saved as safetensors)",
                        a->weights, rc->in_channels);
    cfg->input_height = cfg->input_width = (int)a->crop;
    BL_TRY(bl_read_image_folder(p, "ReadImages", a->images, (int)a->resize, (int)a->crop, a->limit, images,
                                decode_dead, &cfg->progress_total));
    /* Class subfolders name the classes when they match the model's (ImageFolder's order). */
    bl_image_folder *folder;
    if (bl_image_folder_open(a->images, &folder) != BL_OK) return BL_OK; /* read above; names are a nicety */
    if (bl_image_folder_num_classes(folder) == rc->num_classes && rc->num_classes <= 1000) {
        for (int k = 0; k < rc->num_classes; k++) {
            char *name = strdup(bl_image_folder_class_name(folder, k));
            names_buf[k] = name ? name : "";
        }
        cfg->class_names = names_buf;
        cfg->num_class_names = rc->num_classes;
    }
    bl_image_folder_free(folder);
    return BL_OK;
}

static bl_status report(bl_pipeline *p, const infer_args *a, infer_figures *f, bl_pcoll *accuracy,
                        bl_pcoll *dead) {
    bl_accuracy *acc;
    BL_TRY(bl_inference_report_get(p, "RunInference", &f->r));
    BL_TRY(bl_pcoll_result_value(accuracy, 0, (void **)&acc));
    f->acc = *acc;
    bl_coder_free_value(bl_coder_accuracy(), acc);
    f->dead = (int64_t)bl_pcoll_result_count(dead);
    f->runner = bl_pipeline_runner_name(p);
    f->workers = strcmp(f->runner, "direct") == 0 ? 1 : bl_pipeline_num_workers(p); /* direct: one thread */
    f->threads = bl_pipeline_threads_per_worker(p);
    char path[1100];
    BL_TRY(stage_join(path, sizeof path, a->output, "summary.json"));
    BL_TRY(write_summary(a, f, path));
    print_figures(a, f);
    return BL_OK;
}

bl_status bl_stage_infer(const bl_options *opts) {
    infer_args a;
    BL_TRY(read_args(opts, &a));
    /* The decoders' budget is the process's (every rank parses the same flags). */
    if (a.max_pixels > 0) BL_TRY(bl_image_set_max_pixels(a.max_pixels));
    bl_resnet_config rc;
    BL_TRY(bl_model_handler_peek(a.weights, &rc));
    /* Where it runs is decided once, before anything is built: an absent accelerator stops here
     * (or, when allowed, the CPU stands in, announced). Stage 2 is any run that asked for one. */
    bl_device_choice device;
    BL_TRY(stage_resolve(a.device, a.fallback, &device));
    infer_figures f = {.device = &device, .accelerators = bl_accelerator_count()};
    f.stage = device.accelerator || device.fell_back ? 2 : 1;

    bl_run_inference_config cfg = bl_run_inference_config_default();
    cfg.weights_path = a.weights;
    cfg.device = a.device;
    cfg.allow_cpu_fallback = a.fallback;
    cfg.precision = a.precision;
    cfg.max_batch_size = (int)a.batch;
    cfg.min_batch_size = (int)a.min_batch;
    cfg.max_batch_weight = (size_t)a.max_weight;
    cfg.element_size_fn = a.max_weight ? bl_image_example_size : NULL;
    cfg.top_k = (int)a.top_k;
    cfg.hints = *a.hints ? a.hints : NULL;

    char pred_prefix[1100], dead_prefix[1100];
    BL_TRY(stage_join(pred_prefix, sizeof pred_prefix, a.output, "predictions"));
    BL_TRY(stage_join(dead_prefix, sizeof dead_prefix, a.output, "dead_letter"));
    BL_TRY(bl_mkdirs(a.output));
    bl_pipeline *p;
    BL_TRY(stage_pipeline(opts, &device, &p));
    const char *names[1000] = {0};
    bl_pcoll *images, *decode_dead, *pred, *infer_dead, *dead, *accuracy;
    bl_status s = read_examples(p, &a, &rc, &cfg, names, &images, &decode_dead);
    if (s == BL_OK) s = bl_run_inference(p, "RunInference", images, &cfg, &pred, &infer_dead);
    bl_pcoll *both[2] = {infer_dead, decode_dead};
    if (s == BL_OK) s = bl_flatten(p, "DeadLetters", both, decode_dead ? 2 : 1, &dead);
    if (s == BL_OK)
        s = bl_write_text(p, "WritePredictions", pred, pred_prefix, ".jsonl", (int)a.shards, BL_TEXT_JSON);
    if (s == BL_OK) s = bl_write_text(p, "WriteDeadLetters", dead, dead_prefix, ".jsonl", 1, BL_TEXT_JSON);
    if (s == BL_OK) s = bl_combine_globally(p, "Accuracy", pred, bl_combine_accuracy(), &accuracy);
    if (s == BL_OK) s = bl_pipeline_collect(p, accuracy);
    if (s == BL_OK) s = bl_pipeline_collect(p, dead);
    /* The whole run is timed: what a user waits for. */
    double t0 = bl_time_now();
    if (s == BL_OK) s = bl_pipeline_run(p);
    f.seconds = bl_time_now() - t0;
    if (s == BL_OK && bl_pipeline_is_coordinator(p)) s = report(p, &a, &f, accuracy, dead);
    for (int k = 0; k < 1000 && cfg.class_names == names; k++) free((char *)names[k]);
    bl_pipeline_free(p);
    return s;
}

const bl_command bl_stage_infer_command = {
    .summary = "Stages 1-2 of the learning path: a dataset's test split (or a folder of photos) through a\n"
               "ResNet with RunInference; predictions and dead letters as JSON lines, the figures as\n"
               "summary.json.",
    .pipeline_flags = true,
    .add_options = bl_stage_infer_options,
    .run = bl_stage_infer,
};
