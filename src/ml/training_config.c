/* TrainingConfig and TrainingResult: defaults, validation, and JSON for crossing process
 * boundaries. Unknown JSON fields are errors (a typo in a sweep file must not be ignored);
 * missing fields keep their defaults. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "beamlet/json.h"
#include "beamlet/ml.h"

bl_training_config bl_training_config_default(void) {
    bl_training_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.experiment_id, sizeof c.experiment_id, "default");
    snprintf(c.model, sizeof c.model, "resnet18");
    c.width = 64;
    c.learning_rate = 0.1f;
    snprintf(c.schedule, sizeof c.schedule, "onecycle");
    c.batch_size = 512;
    c.epochs = 15;
    snprintf(c.optimizer, sizeof c.optimizer, "sgd");
    c.momentum = 0.9f;
    c.weight_decay = 5e-4f;
    c.seed = 0;
    snprintf(c.device, sizeof c.device, "auto");
    snprintf(c.precision, sizeof c.precision, "f32");
    snprintf(c.dataset, sizeof c.dataset, "fashion-mnist");
    snprintf(c.output_dir, sizeof c.output_dir, "beamlet-out");
    return c;
}

bl_status bl_training_config_validate(const bl_training_config *c) {
    if (!c->experiment_id[0] || strpbrk(c->experiment_id, "/\\") || strcmp(c->experiment_id, "..") == 0 ||
        strcmp(c->experiment_id, ".") == 0)
        return bl_error(BL_ERR_INVALID_ARG, "experiment id '%s' must be a non-empty name without '/'",
                        c->experiment_id);
    if (strcmp(c->model, "resnet18") != 0 && strcmp(c->model, "resnet34") != 0)
        return bl_error(BL_ERR_INVALID_ARG, "model '%s' is not supported (resnet18, resnet34)", c->model);
    if (c->width < 1 || c->width > 1024)
        return bl_error(BL_ERR_INVALID_ARG, "width %d not in [1, 1024]", c->width);
    if (!(c->learning_rate > 0 && c->learning_rate < 100))
        return bl_error(BL_ERR_INVALID_ARG, "learning rate %g not in (0, 100)", (double)c->learning_rate);
    bl_lr_schedule_kind k;
    BL_TRY(bl_lr_schedule_parse(c->schedule, &k));
    if (c->batch_size < 2 || c->batch_size > 65536)
        return bl_error(BL_ERR_INVALID_ARG, "batch size %d not in [2, 65536] (batch norm needs 2)",
                        c->batch_size);
    if (c->epochs < 1 || c->epochs > 100000)
        return bl_error(BL_ERR_INVALID_ARG, "epochs %d not in [1, 100000]", c->epochs);
    if (strcmp(c->optimizer, "sgd") != 0 && strcmp(c->optimizer, "adamw") != 0)
        return bl_error(BL_ERR_INVALID_ARG, "optimizer '%s' is not supported (sgd, adamw)", c->optimizer);
    if (!(c->momentum >= 0 && c->momentum < 1))
        return bl_error(BL_ERR_INVALID_ARG, "momentum %g not in [0, 1)", (double)c->momentum);
    if (!(c->weight_decay >= 0 && c->weight_decay < 1))
        return bl_error(BL_ERR_INVALID_ARG, "weight decay %g not in [0, 1)", (double)c->weight_decay);
    if (!(c->label_smoothing >= 0 && c->label_smoothing < 1))
        return bl_error(BL_ERR_INVALID_ARG, "label smoothing %g not in [0, 1)", (double)c->label_smoothing);
    bl_dtype precision;
    BL_TRY(bl_precision_parse(c->precision, &precision));
    /* bf16 convolutions exist for inference only (bl_device_set_precision): oneDNN 2.6.3
     * ignores fpmath_mode=bf16 for f32 primitives, so mixed-precision training would need bf16
     * copies of weights, activations and gradients through every backward convolution. */
    if (precision != BL_F32)
        return bl_error(BL_ERR_UNSUPPORTED,
                        "precision '%s': training is f32 only so far (bf16 is implemented for inference: "
                        "beamlet infer --precision=bf16); use --precision=f32",
                        c->precision);
    if (!bl_dataset_known(c->dataset))
        return bl_error(BL_ERR_INVALID_ARG, "dataset '%s' is not supported (%s)", c->dataset,
                        BL_DATASET_NAMES);
    if (c->train_limit < 0 || c->test_limit < 0 || c->stop_after_epochs < 0)
        return bl_error(BL_ERR_INVALID_ARG, "limits must not be negative");
    if (!c->output_dir[0]) return bl_error(BL_ERR_INVALID_ARG, "output directory is empty");
    return BL_OK;
}

/* ---- JSON ---------------------------------------------------------------------------------- */

typedef enum {
    F_STR,
    F_INT,
    F_I64,
    F_U64,
    F_FLOAT,
    F_DOUBLE,
    F_BOOL
} field_type;
typedef struct field {
    const char *name;
    field_type type;
    size_t offset, size;
} field;

#define FIELD(st, name, type)                                                                                \
    { #name, type, offsetof(st, name), sizeof(((st *)0)->name) }

static const field config_fields[] = {
    FIELD(bl_training_config, experiment_id, F_STR),
    FIELD(bl_training_config, model, F_STR),
    FIELD(bl_training_config, width, F_INT),
    FIELD(bl_training_config, learning_rate, F_FLOAT),
    FIELD(bl_training_config, schedule, F_STR),
    FIELD(bl_training_config, batch_size, F_INT),
    FIELD(bl_training_config, epochs, F_INT),
    FIELD(bl_training_config, optimizer, F_STR),
    FIELD(bl_training_config, momentum, F_FLOAT),
    FIELD(bl_training_config, weight_decay, F_FLOAT),
    FIELD(bl_training_config, label_smoothing, F_FLOAT),
    FIELD(bl_training_config, seed, F_U64),
    FIELD(bl_training_config, device, F_STR),
    FIELD(bl_training_config, allow_cpu_fallback, F_BOOL),
    FIELD(bl_training_config, precision, F_STR),
    FIELD(bl_training_config, dataset, F_STR),
    FIELD(bl_training_config, data_dir, F_STR),
    FIELD(bl_training_config, output_dir, F_STR),
    FIELD(bl_training_config, train_limit, F_I64),
    FIELD(bl_training_config, test_limit, F_I64),
    FIELD(bl_training_config, stop_after_epochs, F_INT),
    FIELD(bl_training_config, quiet, F_BOOL),
};

static const field result_fields[] = {
    FIELD(bl_training_result, experiment_id, F_STR),   FIELD(bl_training_result, model, F_STR),
    FIELD(bl_training_result, learning_rate, F_FLOAT), FIELD(bl_training_result, batch_size, F_INT),
    FIELD(bl_training_result, accuracy, F_DOUBLE),     FIELD(bl_training_result, loss, F_DOUBLE),
    FIELD(bl_training_result, epochs, F_INT),          FIELD(bl_training_result, wall_time_s, F_DOUBLE),
    FIELD(bl_training_result, images_per_s, F_DOUBLE), FIELD(bl_training_result, device, F_STR),
    FIELD(bl_training_result, checkpoint_path, F_STR), FIELD(bl_training_result, weights_path, F_STR),
    FIELD(bl_training_result, resumed, F_BOOL),
};

/* The double with the shortest decimal form that still reads back as f: 0.1f is written as
 * 0.1, not 0.10000000149011612, and from_json gives back exactly f. */
static double pretty_float(float f) {
    char buf[32];
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)f);
        if (strtof(buf, NULL) == f) break;
    }
    return strtod(buf, NULL);
}

static bl_status to_json(const void *obj, const field *fields, size_t n, char **out) {
    bl_json_writer *w;
    BL_TRY(bl_json_writer_new(&w));
    const char *base = obj;
    bl_json_write_begin_object(w);
    for (size_t i = 0; i < n; i++) {
        const field *f = &fields[i];
        const void *p = base + f->offset;
        bl_json_write_key(w, f->name);
        switch (f->type) {
            case F_STR: bl_json_write_string(w, (const char *)p); break;
            case F_INT: bl_json_write_int(w, *(const int *)p); break;
            case F_I64: bl_json_write_int(w, *(const int64_t *)p); break;
            case F_U64: bl_json_write_uint(w, *(const uint64_t *)p); break;
            case F_FLOAT: bl_json_write_double(w, pretty_float(*(const float *)p)); break;
            case F_DOUBLE: bl_json_write_double(w, *(const double *)p); break;
            case F_BOOL: bl_json_write_bool(w, *(const bool *)p); break;
        }
    }
    bl_json_write_end_object(w);
    const char *text;
    size_t len;
    bl_status s = bl_json_writer_finish(w, &text, &len);
    if (s == BL_OK) {
        *out = malloc(len + 1);
        if (*out) {
            memcpy(*out, text, len);
            (*out)[len] = '\0';
        } else {
            s = bl_error(BL_ERR_OUT_OF_MEMORY, "JSON: %zu bytes", len);
        }
    }
    bl_json_writer_free(w);
    return s;
}

static bl_status from_json(const char *json, size_t len, void *obj, const field *fields, size_t n,
                           const char *what) {
    bl_json *root;
    BL_TRY(bl_json_parse(json, len, &root));
    bl_status s = BL_OK;
    if (bl_json_type_of(root) != BL_JSON_OBJECT)
        s = bl_error(BL_ERR_FORMAT, "%s: expected a JSON object", what);
    char *base = obj;
    for (size_t i = 0; s == BL_OK && i < bl_json_len(root); i++) {
        const char *key;
        const bl_json *v = bl_json_object_at(root, i, &key);
        const field *f = NULL;
        for (size_t k = 0; k < n; k++)
            if (strcmp(fields[k].name, key) == 0) f = &fields[k];
        if (!f) {
            s = bl_error(BL_ERR_FORMAT, "%s: unknown field '%s'", what, key);
            break;
        }
        void *p = base + f->offset;
        bl_json_type t = bl_json_type_of(v);
        if (f->type == F_STR) {
            if (t != BL_JSON_STRING || bl_json_string_len(v) >= f->size) {
                s = bl_error(BL_ERR_FORMAT, "%s: field '%s' must be a string of at most %zu bytes", what, key,
                             f->size - 1);
                break;
            }
            memcpy(p, bl_json_string(v), bl_json_string_len(v) + 1);
        } else if (f->type == F_BOOL) {
            if (t != BL_JSON_BOOL) {
                s = bl_error(BL_ERR_FORMAT, "%s: field '%s' must be true or false", what, key);
                break;
            }
            *(bool *)p = bl_json_bool(v);
        } else if (f->type == F_FLOAT || f->type == F_DOUBLE) {
            if (t != BL_JSON_NUMBER) {
                s = bl_error(BL_ERR_FORMAT, "%s: field '%s' must be a number", what, key);
                break;
            }
            if (f->type == F_FLOAT)
                *(float *)p = (float)bl_json_number(v);
            else
                *(double *)p = bl_json_number(v);
        } else {
            int64_t iv = 0;
            uint64_t uv = 0;
            bl_status e = f->type == F_U64 ? bl_json_uint64(v, &uv) : bl_json_int64(v, &iv);
            if (e != BL_OK || (f->type == F_INT && (iv < -2147483647 || iv > 2147483647))) {
                s = bl_error(BL_ERR_FORMAT, "%s: field '%s' must be an integer", what, key);
                break;
            }
            if (f->type == F_INT)
                *(int *)p = (int)iv;
            else if (f->type == F_I64)
                *(int64_t *)p = iv;
            else
                *(uint64_t *)p = uv;
        }
    }
    bl_json_free(root);
    return s;
}

bl_status bl_training_config_to_json(const bl_training_config *c, char **json) {
    return to_json(c, config_fields, sizeof config_fields / sizeof config_fields[0], json);
}

bl_status bl_training_config_from_json(const char *json, size_t len, bl_training_config *out) {
    *out = bl_training_config_default();
    return from_json(json, len, out, config_fields, sizeof config_fields / sizeof config_fields[0],
                     "training config");
}

bl_status bl_training_result_to_json(const bl_training_result *r, char **json) {
    return to_json(r, result_fields, sizeof result_fields / sizeof result_fields[0], json);
}

bl_status bl_training_result_from_json(const char *json, size_t len, bl_training_result *out) {
    memset(out, 0, sizeof *out);
    return from_json(json, len, out, result_fields, sizeof result_fields / sizeof result_fields[0],
                     "training result");
}

/* ---- flags ------------------------------------------------------------------------------- */

static const struct {
    const char *name, *help;
} option_help[] = {
    {"experiment_id",
     "name of the run; checkpoints go to <output_dir>/<experiment_id>/ and a re-run resumes"},
    {"model", "resnet18 or resnet34"},
    {"width", "base channels (64 = torchvision)"},
    {"learning_rate", "peak learning rate"},
    {"schedule", "onecycle, cosine or constant"},
    {"batch_size", "images per step"},
    {"epochs", "epochs"},
    {"optimizer", "sgd (Nesterov momentum) or adamw"},
    {"momentum", "SGD momentum"},
    {"weight_decay", "weight decay"},
    {"label_smoothing", "label smoothing"},
    {"seed", "seed for weights, data order and augmentation"},
    {"device", BL_DEVICE_FLAG_HELP},
    {"allow_cpu_fallback", BL_FALLBACK_FLAG_HELP},
    {"precision", "f32 (bf16 is inference-only so far: beamlet infer --precision=bf16)"},
    {"dataset", BL_DATASET_NAMES},
    {"data_dir", "dataset location (empty: its standard place)"},
    {"output_dir", "where checkpoints, metrics and weights go"},
    {"train_limit", "use only the first N training images (0 = all)"},
    {"test_limit", "use only the first N test images (0 = all)"},
    {"stop_after_epochs", "stop after this many epochs, as if killed (0 = never): try resuming"},
    {"quiet", "no progress bar"},
};

bl_status bl_training_config_add_options(bl_options *opts, const bl_training_config *d) {
    char *json;
    BL_TRY(bl_training_config_to_json(d, &json));
    bl_json *root;
    bl_status s = bl_json_parse(json, strlen(json), &root);
    free(json);
    BL_TRY(s);
    /* The defaults come from the config's own JSON form, so the two never disagree. */
    for (size_t i = 0; s == BL_OK && i < sizeof option_help / sizeof option_help[0]; i++) {
        const bl_json *v = bl_json_object_get(root, option_help[i].name);
        char def[BL_ML_PATH_MAX];
        switch (v ? bl_json_type_of(v) : BL_JSON_NULL) {
            case BL_JSON_STRING: snprintf(def, sizeof def, "%s", bl_json_string(v)); break;
            case BL_JSON_BOOL: snprintf(def, sizeof def, "%s", bl_json_bool(v) ? "true" : "false"); break;
            case BL_JSON_NUMBER: snprintf(def, sizeof def, "%.9g", bl_json_number(v)); break;
            default: def[0] = '\0';
        }
        s = bl_options_add(opts, option_help[i].name, def, option_help[i].help);
    }
    bl_json_free(root);
    return s;
}

bl_status bl_training_config_from_options(const bl_options *opts, bl_training_config *out) {
    /* Build a JSON object from the flags and parse it with the same strict reader. */
    bl_json_writer *w;
    BL_TRY(bl_json_writer_new(&w));
    bl_json_write_begin_object(w);
    for (size_t i = 0; i < sizeof config_fields / sizeof config_fields[0]; i++) {
        const field *f = &config_fields[i];
        const char *v = bl_options_get(opts, f->name);
        if (!v) continue;
        bl_json_write_key(w, f->name);
        char *end = NULL;
        switch (f->type) {
            case F_STR: bl_json_write_string(w, v); break;
            case F_BOOL: {
                bool x;
                bl_status s = bl_options_get_bool(opts, f->name, &x);
                if (s != BL_OK) {
                    bl_json_writer_free(w);
                    return s;
                }
                bl_json_write_bool(w, x);
                break;
            }
            case F_FLOAT:
            case F_DOUBLE: {
                double x = strtod(v, &end);
                if (!*v || *end) {
                    bl_json_writer_free(w);
                    return bl_error(BL_ERR_INVALID_ARG, "--%s=%s: not a number", f->name, v);
                }
                bl_json_write_double(w, x);
                break;
            }
            default: {
                long long x = strtoll(v, &end, 10);
                if (!*v || *end) {
                    bl_json_writer_free(w);
                    return bl_error(BL_ERR_INVALID_ARG, "--%s=%s: not an integer", f->name, v);
                }
                bl_json_write_int(w, x);
            }
        }
    }
    bl_json_write_end_object(w);
    const char *text;
    size_t len;
    bl_status s = bl_json_writer_finish(w, &text, &len);
    if (s == BL_OK) s = bl_training_config_from_json(text, len, out);
    bl_json_writer_free(w);
    if (s == BL_OK) s = bl_training_config_validate(out);
    return s;
}
