/* RunInference as a composite: BatchElements, then a DoFn that runs each batch through the
 * worker's shared model and emits one PredictionResult per example. A batch that cannot run
 * (an example of the wrong shape, a failing forward) is not a failed bundle: its examples go to
 * the dead-letter output with the reason, `failed_batches` counts it, and the run goes on, as
 * Beam's RunInference with_exception_handling() does. Retrying would only fail again.
 *
 * The DoFn's configuration is interned (equal configs share one copy that lives until exit, as
 * composite coders do), because a DoFn's user data must outlive the run and the pipeline has no
 * hook to free it; a process builds few distinct RunInference configs, so this stays small. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "beamlet/ml_inference.h"

#define DEAD_TAG "dead_letter"

typedef struct ri_conf {
    char *key; /* every field below, as text: what interning compares */
    char *weights;
    char device[40]; /* the name each worker resolves with its accelerator ("cpu" after a fallback) */
    char model_id[128];
    int max_batch, channels, height, width, classes, top_k;
    bl_dtype precision;
    int64_t progress_total;
    int num_names;
    char (*names)[BL_CLASS_NAME_MAX];
    struct ri_conf *next;
} ri_conf;

static pthread_mutex_t intern_lock = PTHREAD_MUTEX_INITIALIZER;
static ri_conf *interned;

static void conf_free(ri_conf *c) {
    if (!c) return;
    free(c->key);
    free(c->weights);
    free(c->names);
    free(c);
}

static bl_status conf_key(ri_conf *c) {
    bl_buf b = {0};
    bl_status s =
        bl_buf_printf(&b, "%s\n%s\n%s\n%d %d %d %d %d %d %lld %d %s\n", c->weights, c->device, c->model_id,
                      c->max_batch, c->channels, c->height, c->width, c->classes, c->top_k,
                      (long long)c->progress_total, c->num_names, bl_dtype_name(c->precision));
    for (int i = 0; s == BL_OK && i < c->num_names; i++) s = bl_buf_printf(&b, "%s\n", c->names[i]);
    if (s != BL_OK || !b.data) {
        bl_buf_free(&b);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "RunInference config");
    }
    c->key = (char *)b.data;
    return BL_OK;
}

/* Takes ownership of c; returns the shared copy. */
static const ri_conf *conf_intern(ri_conf *c) {
    pthread_mutex_lock(&intern_lock);
    ri_conf *found = interned;
    while (found && strcmp(found->key, c->key) != 0) found = found->next;
    if (found) {
        conf_free(c);
    } else {
        c->next = interned;
        interned = found = c;
    }
    pthread_mutex_unlock(&intern_lock);
    return found;
}

/* ---- progress: one bar per process, drawn by whichever thread finishes a batch ------------------ */

static pthread_mutex_t progress_lock = PTHREAD_MUTEX_INITIALIZER;
static bl_progress progress;
static bool progress_active;
static int64_t progress_done;

static void progress_reset(void) {
    pthread_mutex_lock(&progress_lock);
    progress_active = false;
    progress_done = 0;
    pthread_mutex_unlock(&progress_lock);
}

static void progress_add(const ri_conf *c, int64_t n) {
    if (c->progress_total <= 0) return;
    pthread_mutex_lock(&progress_lock);
    if (!progress_active && progress_done < c->progress_total) {
        bl_progress_begin(&progress, "inference", c->progress_total);
        progress_active = true;
    }
    if (progress_active) {
        int64_t step = n < c->progress_total - progress_done ? n : c->progress_total - progress_done;
        progress_done += step;
        char suffix[64];
        snprintf(suffix, sizeof suffix, "%lld images", (long long)progress_done);
        bl_progress_step(&progress, step, suffix);
        if (progress_done >= c->progress_total) {
            bl_progress_end(&progress);
            progress_active = false;
        }
    }
    pthread_mutex_unlock(&progress_lock);
}

/* Ends a bar left short (examples that never reached the step, e.g. undecodable files) when the
 * step's instances are torn down, i.e. when the run is over on this process. */
static void progress_finish(void) {
    pthread_mutex_lock(&progress_lock);
    if (progress_active) bl_progress_end(&progress);
    progress_active = false;
    pthread_mutex_unlock(&progress_lock);
}

/* ---- the DoFn ---------------------------------------------------------------------------------- */

typedef struct ri_state {
    bl_model_handler *h;
    float *x;      /* (max_batch, C, H, W) host */
    float *logits; /* (max_batch, classes) host */
} ri_state;

static void ri_teardown(bl_dofn_ctx *ctx) {
    ri_state *st = bl_dofn_state(ctx);
    if (!st) return;
    progress_finish();
    bl_model_handler_release(st->h);
    free(st->x);
    free(st->logits);
    free(st);
    bl_dofn_set_state(ctx, NULL);
}

static bl_status ri_setup(bl_dofn_ctx *ctx) {
    const ri_conf *c = bl_dofn_user(ctx);
    ri_state *st = calloc(1, sizeof *st);
    if (!st) return bl_error(BL_ERR_OUT_OF_MEMORY, "RunInference state");
    bl_dofn_set_state(ctx, st);
    /* On an accelerator worker each instance uses the accelerator the runner assigned it. */
    bl_device_request req = {c->device, bl_dofn_accelerator(ctx), false, c->precision};
    bool loaded;
    double seconds;
    bl_status s = bl_model_handler_acquire(c->weights, &req, c->max_batch, c->height, c->width, &st->h,
                                           &loaded, &seconds);
    if (s != BL_OK) {
        /* The runner does not tear down an instance whose setup failed: free what we hold. */
        ri_teardown(ctx);
        return s;
    }
    if (loaded) bl_metric_observe(ctx, "load_model_latency", seconds * 1e3);
    bl_metric_inc(ctx, "failed_batches", 0); /* present (as 0) in every run, as in Beam */
    size_t per = (size_t)c->channels * (size_t)c->height * (size_t)c->width;
    st->x = malloc(sizeof(float) * per * (size_t)c->max_batch);
    st->logits = malloc(sizeof(float) * (size_t)c->classes * (size_t)c->max_batch);
    if (!st->x || !st->logits) {
        ri_teardown(ctx);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "RunInference buffers");
    }
    return BL_OK;
}

static bl_status fail_batch(bl_dofn_ctx *ctx, bl_image_example *const *ex, size_t n, const char *reason,
                            bl_emitter *out) {
    bl_metric_inc(ctx, "failed_batches", 1);
    bl_log_warn("%s: a batch of %zu failed and went to the dead-letter output: %s", bl_dofn_transform(ctx), n,
                reason);
    for (size_t i = 0; i < n; i++) {
        bl_dead_letter d = {ex[i]->id, (char *)bl_dofn_transform(ctx), (char *)reason};
        BL_TRY(bl_emit_tagged(out, DEAD_TAG, &d));
    }
    return BL_OK;
}

/* Softmax of one row, then the top k, best first; ties go to the lower class index. */
static void top_k(const ri_conf *c, const float *logits, bl_prediction_result *r) {
    double mx = logits[0], sum = 0;
    for (int k = 1; k < c->classes; k++) mx = logits[k] > mx ? logits[k] : mx;
    for (int k = 0; k < c->classes; k++) sum += exp((double)logits[k] - mx);
    r->top_k = c->top_k;
    for (int i = 0; i < c->top_k; i++) {
        int best = -1;
        for (int k = 0; k < c->classes; k++) {
            bool taken = false;
            for (int j = 0; j < i && !taken; j++) taken = r->classes[j] == k;
            if (!taken && (best < 0 || logits[k] > logits[best])) best = k;
        }
        r->classes[i] = best;
        r->probabilities[i] = (float)(exp((double)logits[best] - mx) / sum);
        r->class_names[i][0] = 0;
        if (best < c->num_names) snprintf(r->class_names[i], BL_CLASS_NAME_MAX, "%s", c->names[best]);
    }
}

static bl_status run_chunk(bl_dofn_ctx *ctx, const ri_conf *c, ri_state *st, bl_image_example *const *ex,
                           int n, bl_emitter *out) {
    size_t per = (size_t)c->channels * (size_t)c->height * (size_t)c->width;
    for (int i = 0; i < n; i++) {
        const bl_image_example *e = ex[i];
        if (e->channels != c->channels || e->height != c->height || e->width != c->width) {
            char reason[512];
            snprintf(reason, sizeof reason, "example '%s' is %dx%dx%d (CxHxW) but the model takes %dx%dx%d",
                     e->id, e->channels, e->height, e->width, c->channels, c->height, c->width);
            return fail_batch(ctx, ex, (size_t)n, reason, out);
        }
        memcpy(st->x + (size_t)i * per, e->pixels, per * sizeof(float));
    }
    double seconds = 0;
    if (bl_model_handler_infer(st->h, st->x, n, st->logits, &seconds) != BL_OK) {
        char reason[512];
        snprintf(reason, sizeof reason, "inference failed: %s", bl_last_error());
        return fail_batch(ctx, ex, (size_t)n, reason, out);
    }
    bl_metric_inc(ctx, "num_inferences", n);
    bl_metric_observe(ctx, "inference_batch_size", n);
    /* The model's time, not the wait for a worker thread sharing it: per-batch cost is what
     * Beam's latency means, and the sum then bounds the run's time spent in the model. */
    bl_metric_observe(ctx, "inference_batch_latency", seconds * 1e3);
    for (int i = 0; i < n; i++) {
        bl_prediction_result r;
        memset(&r, 0, sizeof r);
        r.example_id = ex[i]->id;
        r.label = ex[i]->label;
        r.model_id = (char *)c->model_id;
        top_k(c, st->logits + (size_t)i * (size_t)c->classes, &r);
        BL_TRY(bl_emit(out, &r));
    }
    return BL_OK;
}

static bl_status ri_process(bl_dofn_ctx *ctx, const void *element, bl_emitter *out) {
    const ri_conf *c = bl_dofn_user(ctx);
    ri_state *st = bl_dofn_state(ctx);
    const bl_iter *batch = element;
    bl_image_example *const *ex = (bl_image_example *const *)batch->items;
    /* BatchElements never makes a batch larger than the plan; chunking only guards that. */
    for (size_t start = 0; start < batch->n; start += (size_t)c->max_batch) {
        size_t n = batch->n - start < (size_t)c->max_batch ? batch->n - start : (size_t)c->max_batch;
        BL_TRY(run_chunk(ctx, c, st, ex + start, (int)n, out));
        progress_add(c, (int64_t)n);
    }
    return BL_OK;
}

/* ---- the composite ------------------------------------------------------------------------------ */

bl_run_inference_config bl_run_inference_config_default(void) {
    bl_run_inference_config c;
    memset(&c, 0, sizeof c);
    c.device = "cpu";
    c.min_batch_size = 1;
    c.max_batch_size = 32;
    c.top_k = 5;
    return c;
}

static bl_status make_conf(const char *name, const bl_run_inference_config *cfg, const char *device,
                           const ri_conf **out) {
    bl_resnet_config rc;
    BL_TRY(bl_error_context(bl_model_handler_peek(cfg->weights_path, &rc), "RunInference '%s'", name));
    ri_conf *c = calloc(1, sizeof *c);
    if (!c) return bl_error(BL_ERR_OUT_OF_MEMORY, "RunInference config");
    c->weights = strdup(cfg->weights_path);
    snprintf(c->device, sizeof c->device, "%s", device);
    const char *slash = strrchr(cfg->weights_path, '/');
    snprintf(c->model_id, sizeof c->model_id, "%s", slash ? slash + 1 : cfg->weights_path);
    c->max_batch = cfg->max_batch_size > 0 ? cfg->max_batch_size : 32;
    c->channels = rc.in_channels;
    int side = rc.stem == BL_RESNET_STEM_CIFAR ? 32 : 224;
    c->height = cfg->input_height > 0 ? cfg->input_height : side;
    c->width = cfg->input_width > 0 ? cfg->input_width : side;
    c->classes = rc.num_classes;
    int k = cfg->top_k > 0 ? cfg->top_k : 5;
    k = k < c->classes ? k : c->classes;
    c->top_k = k < BL_PREDICTION_MAX_TOP_K ? k : BL_PREDICTION_MAX_TOP_K;
    c->progress_total = cfg->progress_total;
    c->precision = cfg->precision;
    c->num_names =
        cfg->class_names ? (cfg->num_class_names < c->classes ? cfg->num_class_names : c->classes) : 0;
    c->names = calloc((size_t)(c->num_names ? c->num_names : 1), sizeof *c->names);
    if (!c->weights || !c->names) {
        conf_free(c);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "RunInference config");
    }
    for (int i = 0; i < c->num_names; i++)
        snprintf(c->names[i], BL_CLASS_NAME_MAX, "%s", cfg->class_names[i] ? cfg->class_names[i] : "");
    bl_status s = conf_key(c);
    if (s != BL_OK) {
        conf_free(c);
        return s;
    }
    *out = conf_intern(c);
    return BL_OK;
}

/* The step's hints as given, or without the accelerator when the step runs on the CPU (after a
 * fallback, or because "auto" found no accelerator): no worker could honour it, and placement
 * would refuse to start the pipeline. */
static bl_status step_hints(const char *name, const char *hints, const bl_device_choice *device, char *out,
                            size_t size) {
    out[0] = 0;
    if (!hints || !*hints) return BL_OK;
    bl_hints h;
    BL_TRY(bl_error_context(bl_hints_parse(hints, &h), "RunInference '%s' hints", name));
    if (h.has_accelerator && !device->accelerator) {
        if (device->fell_back)
            bl_log_warn(
                "!!! RunInference '%s': dropping its accelerator hint (%s) because it runs on the CPU "
                "after the GPU fallback !!!",
                name, hints);
        else
            bl_log_info("RunInference '%s': device %s, so its accelerator hint (%s) is dropped", name,
                        device->name, hints);
        h.has_accelerator = false;
    }
    bl_hints_format(&h, out, size);
    return BL_OK;
}

bl_status bl_run_inference(bl_pipeline *p, const char *name, bl_pcoll *in, const bl_run_inference_config *cfg,
                           bl_pcoll **predictions, bl_pcoll **dead_letter) {
    if (predictions) *predictions = NULL;
    if (dead_letter) *dead_letter = NULL;
    if (!p || !name || !*name || !in || !cfg || !predictions)
        return bl_error(BL_ERR_INVALID_ARG, "RunInference: need a pipeline, a name, an input, a config and "
                                            "somewhere to put the predictions");
    if (bl_pcoll_coder(in) != bl_coder_image_example())
        return bl_error(BL_ERR_INVALID_ARG,
                        "RunInference '%s': input '%s' holds %s elements, not image examples", name,
                        bl_pcoll_name(in), bl_coder_name(bl_pcoll_coder(in)));
    if (cfg->min_batch_size < 0 || cfg->max_batch_size < 0 ||
        (cfg->max_batch_size > 0 && cfg->min_batch_size > cfg->max_batch_size))
        return bl_error(BL_ERR_INVALID_ARG, "RunInference '%s': batch sizes min %d, max %d", name,
                        cfg->min_batch_size, cfg->max_batch_size);
    /* Resolved here, so a missing accelerator fails before the pipeline runs. The workers resolve
     * the same name again with the accelerator each one is assigned; after a fallback, "cpu". */
    const char *asked = cfg->device ? cfg->device : "cpu";
    bl_device_request req = {asked, -1, cfg->allow_cpu_fallback, BL_F32};
    bl_device_choice device;
    char hints[160];
    BL_TRY(bl_error_context(bl_device_resolve(&req, &device), "RunInference '%s'", name));
    if (cfg->precision != BL_F32) {
        /* Whether the device computes in that precision is the backend's (and the CPU's) to say:
         * ask it now, so a refusal stops the run before the pipeline does anything. */
        bl_device_request probe = {device.name, -1, false, cfg->precision};
        bl_device *dev;
        BL_TRY(bl_error_context(bl_device_open(&probe, &dev), "RunInference '%s'", name));
        bl_device_release(dev);
    }
    BL_TRY(step_hints(name, cfg->hints, &device, hints, sizeof hints));
    const ri_conf *c = NULL;
    BL_TRY(make_conf(name, cfg, device.fell_back ? "cpu" : asked, &c));
    progress_reset();

    BL_TRY(bl_pipeline_begin_composite(p, name, hints[0] ? hints : NULL));
    bl_batch_config bc = {.min_size = (size_t)(cfg->min_batch_size > 0 ? cfg->min_batch_size : 1),
                          .max_size = (size_t)c->max_batch,
                          .max_weight = cfg->max_batch_weight,
                          .weight_fn = cfg->element_size_fn,
                          .weight_user = cfg->element_size_user};
    bl_dofn fn = {.setup = ri_setup,
                  .process = ri_process,
                  .teardown = ri_teardown,
                  .user = (void *)c,
                  .out_coder = bl_coder_prediction_result(),
                  .num_side_outputs = 1,
                  .side_tags = {DEAD_TAG},
                  .side_coders = {bl_coder_dead_letter()}};
    bl_pcoll *batches = NULL, *dead = NULL;
    bl_status s = bl_batch_elements(p, "BatchElements", in, &bc, &batches);
    if (s == BL_OK) s = bl_pardo(p, "Infer", batches, &fn, predictions);
    if (s == BL_OK) s = bl_pardo_output(*predictions, DEAD_TAG, &dead);
    bl_status e = bl_pipeline_end_composite(p);
    if (s == BL_OK) s = e;
    if (s == BL_OK && dead_letter) *dead_letter = dead;
    return s;
}

/* ---- a run's figures ---------------------------------------------------------------------------- */

bl_status bl_inference_report_get(const bl_pipeline *p, const char *name, bl_inference_report *out) {
    memset(out, 0, sizeof *out);
    char t[256];
    snprintf(t, sizeof t, "%s/Infer", name);
    bl_metric_result m;
    if (bl_pipeline_metric(p, t, "num_inferences", &m) == BL_OK) out->inferences = m.counter;
    if (bl_pipeline_metric(p, t, "failed_batches", &m) == BL_OK) out->failed_batches = m.counter;
    if (bl_pipeline_metric(p, t, "inference_batch_size", &m) == BL_OK) {
        out->batches = m.count;
        out->mean_batch_size = m.mean;
    }
    if (bl_pipeline_metric(p, t, "inference_batch_latency", &m) == BL_OK) out->model_seconds = m.sum / 1e3;
    if (bl_pipeline_metric(p, t, "load_model_latency", &m) == BL_OK) {
        out->load_model_ms = m.mean;
        out->models_loaded = m.count;
    }
    bl_clear_error();
    return BL_OK;
}
