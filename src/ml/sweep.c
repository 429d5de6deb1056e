/* Training as pipeline steps: coders for configs and results, the TrainModel DoFn, the
 * BestModel CombineFn, the DeployBestModel DoFn and the sweep grid. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "beamlet/ml.h"

/* ---- coders: JSON bytes, length-prefixed so they nest in KVs and iterables -------------- */

static bl_status put_json(bl_buf *out, const char *json) {
    size_t n = strlen(json);
    BL_TRY(bl_buf_put_varint(out, n));
    return bl_buf_append(out, json, n);
}

static bl_status get_json(const uint8_t *data, size_t size, size_t *pos, const char **json, size_t *len) {
    uint64_t n;
    BL_TRY(bl_read_varint(data, size, pos, &n));
    if (n > size - *pos)
        return bl_error(BL_ERR_FORMAT, "coder: JSON of %llu bytes past the end", (unsigned long long)n);
    *json = (const char *)data + *pos;
    *len = (size_t)n;
    *pos += (size_t)n;
    return BL_OK;
}

static bl_status config_encode(const void *v, bl_buf *out, void *user) {
    (void)user;
    char *json;
    BL_TRY(bl_training_config_to_json(v, &json));
    bl_status s = put_json(out, json);
    free(json);
    return s;
}

static bl_status config_decode(const uint8_t *data, size_t size, size_t *pos, void **value, void *user) {
    (void)user;
    const char *json = NULL;
    size_t len = 0;
    BL_TRY(get_json(data, size, pos, &json, &len));
    bl_training_config *c = malloc(sizeof *c);
    if (!c) return bl_error(BL_ERR_OUT_OF_MEMORY, "training config");
    bl_status s = bl_training_config_from_json(json, len, c);
    if (s != BL_OK) {
        free(c);
        return s;
    }
    *value = c;
    return BL_OK;
}

static bl_status config_to_json(const void *v, bl_buf *out, void *user) {
    (void)user;
    char *json;
    BL_TRY(bl_training_config_to_json(v, &json));
    bl_status s = bl_buf_append(out, json, strlen(json));
    free(json);
    return s;
}

static bl_status result_encode(const void *v, bl_buf *out, void *user) {
    (void)user;
    char *json;
    BL_TRY(bl_training_result_to_json(v, &json));
    bl_status s = put_json(out, json);
    free(json);
    return s;
}

static bl_status result_decode(const uint8_t *data, size_t size, size_t *pos, void **value, void *user) {
    (void)user;
    const char *json = NULL;
    size_t len = 0;
    BL_TRY(get_json(data, size, pos, &json, &len));
    bl_training_result *r = malloc(sizeof *r);
    if (!r) return bl_error(BL_ERR_OUT_OF_MEMORY, "training result");
    bl_status s = bl_training_result_from_json(json, len, r);
    if (s != BL_OK) {
        free(r);
        return s;
    }
    *value = r;
    return BL_OK;
}

static bl_status result_to_json(const void *v, bl_buf *out, void *user) {
    (void)user;
    char *json;
    BL_TRY(bl_training_result_to_json(v, &json));
    bl_status s = bl_buf_append(out, json, strlen(json));
    free(json);
    return s;
}

static void free_value(void *v, void *user) {
    (void)user;
    free(v);
}

static const bl_coder *make_coder(const bl_coder_fns *fns, const bl_coder **slot) {
    /* Built once and kept for the process, like the pipeline's built-in coders. */
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&lock);
    if (!*slot) {
        bl_coder *c;
        if (bl_coder_new(fns, &c) == BL_OK) *slot = c;
    }
    pthread_mutex_unlock(&lock);
    return *slot;
}

const bl_coder *bl_coder_training_config(void) {
    static const bl_coder *coder;
    static const bl_coder_fns fns = {"training_config", true,           config_encode, config_decode,
                                     free_value,        config_to_json, NULL};
    return make_coder(&fns, &coder);
}

const bl_coder *bl_coder_training_result(void) {
    static const bl_coder *coder;
    static const bl_coder_fns fns = {"training_result", true,           result_encode, result_decode,
                                     free_value,        result_to_json, NULL};
    return make_coder(&fns, &coder);
}

/* ---- TrainModel ------------------------------------------------------------------------- */

static bl_status train_process(bl_dofn_ctx *ctx, const void *element, bl_emitter *out) {
    bl_training_config c = *(const bl_training_config *)element;
    /* An accelerator request means the one the runner bound to this worker (its local rank or
     * thread), so the workers of a multi-GPU machine do not all pile onto the first; the
     * resolver decides, and the config carries its answer. */
    bl_device_request req = {c.device, bl_dofn_accelerator(ctx), c.allow_cpu_fallback, BL_F32};
    bl_device_choice where;
    BL_TRY(bl_error_context(bl_device_resolve(&req, &where), "training %s", c.experiment_id));
    snprintf(c.device, sizeof c.device, "%s", where.name);
    bl_log_info("worker %d: training %s on %s (attempt %d)", bl_dofn_worker(ctx), c.experiment_id, c.device,
                bl_dofn_attempt(ctx));
    bl_training_result r;
    BL_TRY(bl_train(&c, NULL, NULL, &r));
    bl_metric_inc(ctx, "models_trained", 1);
    bl_metric_observe(ctx, "training_seconds", r.wall_time_s);
    bl_log_info("worker %d: %s done: accuracy %.2f%% in %.1f s", bl_dofn_worker(ctx), r.experiment_id,
                100 * r.accuracy, r.wall_time_s);
    return bl_emit(out, &r);
}

bl_dofn bl_train_model_dofn(void) {
    bl_dofn fn;
    memset(&fn, 0, sizeof fn);
    fn.process = train_process;
    fn.out_coder = bl_coder_training_result();
    return fn;
}

/* ---- BestModel -------------------------------------------------------------------------- */

static bool better(const bl_training_result *a, const bl_training_result *b) {
    if (!b->experiment_id[0]) return a->experiment_id[0] != '\0';
    if (a->accuracy != b->accuracy) return a->accuracy > b->accuracy;
    return strcmp(a->experiment_id, b->experiment_id) < 0;
}

static bl_status best_create(void *user, void **acc) {
    (void)user;
    *acc = calloc(1, sizeof(bl_training_result));
    return *acc ? BL_OK : bl_error(BL_ERR_OUT_OF_MEMORY, "best model accumulator");
}

static bl_status best_add(void *user, void *acc, const void *input) {
    (void)user;
    if (better(input, acc)) memcpy(acc, input, sizeof(bl_training_result));
    return BL_OK;
}

static bl_status best_extract(void *user, const void *acc, void **out) {
    (void)user;
    if (!((const bl_training_result *)acc)->experiment_id[0])
        return bl_error(BL_ERR_INVALID_ARG, "BestModel: no training results to choose from");
    *out = malloc(sizeof(bl_training_result));
    if (!*out) return bl_error(BL_ERR_OUT_OF_MEMORY, "best model");
    memcpy(*out, acc, sizeof(bl_training_result));
    return BL_OK;
}

static bl_combine_fn best_fn;
static pthread_once_t best_once = PTHREAD_ONCE_INIT;

static void best_init(void) {
    best_fn.create_accumulator = best_create;
    best_fn.add_input = best_add;
    best_fn.merge_accumulators = best_add; /* merging keeps the better of the two, like adding */
    best_fn.extract_output = best_extract;
    best_fn.accumulator_coder = bl_coder_training_result();
    best_fn.output_coder = bl_coder_training_result();
}

const bl_combine_fn *bl_best_model_combine(void) {
    pthread_once(&best_once, best_init);
    return &best_fn;
}

/* ---- DeployBestModel -------------------------------------------------------------------- */

static bl_status deploy_process(bl_dofn_ctx *ctx, const void *element, bl_emitter *out) {
    const char *dir = bl_dofn_user(ctx);
    const bl_training_result *r = element;
    if (!r->weights_path[0])
        return bl_error(BL_ERR_INVALID_ARG, "deploy: %s has no final weights (training not finished)",
                        r->experiment_id);
    BL_TRY(bl_mkdirs(dir));
    void *data;
    size_t size;
    BL_TRY(bl_file_read_all(r->weights_path, &data, &size));
    char path[BL_ML_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    bl_status s = bl_file_write_atomic(path, data, size);
    free(data);
    char *json = NULL;
    if (s == BL_OK) s = bl_training_result_to_json(r, &json);
    snprintf(path, sizeof path, "%s/model.json", dir);
    if (s == BL_OK) s = bl_file_write_atomic(path, json, strlen(json));
    free(json);
    if (s != BL_OK) return bl_error_context(s, "deploying %s to %s", r->experiment_id, dir);
    bl_log_info("deployed %s (accuracy %.2f%%) to %s/model.safetensors", r->experiment_id, 100 * r->accuracy,
                dir);
    return bl_emit(out, r);
}

bl_dofn bl_deploy_model_dofn(const char *serving_dir) {
    bl_dofn fn;
    memset(&fn, 0, sizeof fn);
    fn.process = deploy_process;
    fn.user = (void *)serving_dir;
    fn.out_coder = bl_coder_training_result();
    return fn;
}

/* ---- the grid --------------------------------------------------------------------------- */

bl_status bl_sweep_grid(const bl_training_config *base, const float *lrs, int n_lr, const int *batch_sizes,
                        int n_bs, const char *const *models, int n_models, bl_training_config **out,
                        int *count) {
    static const float default_lrs[] = {0.01f, 0.001f, 0.0001f};
    static const int default_bs[] = {16, 32, 64};
    static const char *const default_models[] = {"resnet18", "resnet34"};
    if (!lrs) lrs = default_lrs, n_lr = 3;
    if (!batch_sizes) batch_sizes = default_bs, n_bs = 3;
    if (!models) models = default_models, n_models = 2;
    if (n_lr < 1 || n_bs < 1 || n_models < 1)
        return bl_error(BL_ERR_INVALID_ARG, "sweep grid: an empty axis");
    int n = n_lr * n_bs * n_models, k = 0;
    bl_training_config *cfgs = calloc((size_t)n, sizeof *cfgs);
    if (!cfgs) return bl_error(BL_ERR_OUT_OF_MEMORY, "sweep grid");
    for (int m = 0; m < n_models; m++)
        for (int i = 0; i < n_lr; i++)
            for (int b = 0; b < n_bs; b++) {
                bl_training_config *c = &cfgs[k++];
                *c = *base;
                snprintf(c->model, sizeof c->model, "%s", models[m]);
                c->learning_rate = lrs[i];
                c->batch_size = batch_sizes[b];
                int len = snprintf(c->experiment_id, sizeof c->experiment_id, "%s-lr%g-bs%d", models[m],
                                   (double)lrs[i], batch_sizes[b]);
                bl_status s =
                    len > 0 && (size_t)len < sizeof c->experiment_id
                        ? bl_training_config_validate(c)
                        : bl_error(BL_ERR_INVALID_ARG, "sweep: experiment id for %s too long", models[m]);
                /* Two configs with one id would train into one folder at the same time. */
                for (int j = 0; s == BL_OK && j < k - 1; j++)
                    if (strcmp(cfgs[j].experiment_id, c->experiment_id) == 0)
                        s = bl_error(BL_ERR_INVALID_ARG,
                                     "sweep: two configs would both be '%s' (a repeated "
                                     "value on an axis?)",
                                     c->experiment_id);
                if (s != BL_OK) {
                    /* The context names c, which lives in cfgs: add it before freeing. */
                    s = bl_error_context(s, "sweep config %s", c->experiment_id);
                    free(cfgs);
                    return s;
                }
            }
    *out = cfgs;
    *count = n;
    return BL_OK;
}

bl_status bl_sweep_add_options(bl_options *opts) {
    BL_TRY(bl_options_add(opts, "learning_rates", "0.01,0.001,0.0001",
                          "grid axis: learning rates (--learning_rate is refused: it sets a single run)"));
    BL_TRY(bl_options_add(opts, "batch_sizes", "16,32,64",
                          "grid axis: batch sizes (--batch_size is refused: it sets a single run)"));
    return bl_options_add(
        opts, "models", "resnet18,resnet34",
        "grid axis: models (--model is refused: it sets a single run; so is --experiment_id)");
}

/* The grid sets these fields of every config, so a single-run flag given beside it would be
 * silently overridden: a user who typed --learning_rate=0.1 would get a sweep that never uses
 * 0.1. Refusing it (rather than reading it as a one-value axis) keeps one way to say an axis,
 * and the message shows the flag to use. */
static bl_status refuse_single_run_flags(const bl_options *opts) {
    static const struct {
        const char *single, *plural, *what;
    } axes[] = {
        {"learning_rate", "learning_rates", "learning rates"},
        {"batch_size", "batch_sizes", "batch sizes"},
        {"model", "models", "models"},
    };
    for (size_t i = 0; i < sizeof axes / sizeof axes[0]; i++)
        if (bl_options_given(opts, axes[i].single)) {
            const char *v = bl_options_get(opts, axes[i].single);
            return bl_error(BL_ERR_INVALID_ARG,
                            "--%s=%s sets a single run; a sweep takes its %s from --%s (e.g. --%s=%s)",
                            axes[i].single, v, axes[i].what, axes[i].plural, axes[i].plural, v);
        }
    if (bl_options_given(opts, "experiment_id"))
        return bl_error(BL_ERR_INVALID_ARG,
                        "--experiment_id=%s names a single run; a sweep names each config itself "
                        "(<model>-lr<rate>-bs<batch>, e.g. resnet18-lr0.01-bs32)",
                        bl_options_get(opts, "experiment_id"));
    return BL_OK;
}

/* Splits "a,b,c" into at most 16 items of at most 31 bytes; an empty item is an error. */
static bl_status split_list(const char *flag, const char *list, char items[16][32], int *n) {
    *n = 0;
    const char *s = list ? list : "";
    while (*s) {
        size_t len = strcspn(s, ",");
        if (len == 0 || len >= 32 || *n == 16)
            return bl_error(BL_ERR_INVALID_ARG, "--%s=%s: expected up to 16 comma-separated values", flag,
                            list);
        snprintf(items[(*n)++], 32, "%.*s", (int)len, s);
        s += len + (s[len] == ',');
    }
    if (*n == 0) return bl_error(BL_ERR_INVALID_ARG, "--%s is empty", flag);
    return BL_OK;
}

bl_status bl_sweep_grid_from_options(const bl_options *opts, const bl_training_config *base,
                                     bl_training_config **out, int *count) {
    char lr_s[16][32], bs_s[16][32], model_s[16][32];
    int n_lr, n_bs, n_m;
    BL_TRY(refuse_single_run_flags(opts));
    BL_TRY(split_list("learning_rates", bl_options_get(opts, "learning_rates"), lr_s, &n_lr));
    BL_TRY(split_list("batch_sizes", bl_options_get(opts, "batch_sizes"), bs_s, &n_bs));
    BL_TRY(split_list("models", bl_options_get(opts, "models"), model_s, &n_m));
    float lrs[16];
    int bss[16];
    const char *models[16];
    for (int i = 0; i < n_lr; i++) {
        char *end;
        lrs[i] = strtof(lr_s[i], &end);
        if (*end || !(lrs[i] > 0))
            return bl_error(BL_ERR_INVALID_ARG, "--learning_rates: '%s' is not a positive number", lr_s[i]);
    }
    for (int i = 0; i < n_bs; i++) {
        char *end;
        long v = strtol(bs_s[i], &end, 10);
        if (*end || v < 2 || v > 65536)
            return bl_error(BL_ERR_INVALID_ARG, "--batch_sizes: '%s' is not in [2, 65536]", bs_s[i]);
        bss[i] = (int)v;
    }
    for (int i = 0; i < n_m; i++) models[i] = model_s[i];
    return bl_sweep_grid(base, lrs, n_lr, bss, n_bs, models, n_m, out, count);
}
