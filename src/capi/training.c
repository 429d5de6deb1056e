/* The C ABI's training: TrainingConfigs and TrainingResults cross as the JSON the pipelines
 * already use for them, so a config a Python pipeline builds trains exactly as the same config
 * in `beamlet train`, checkpoints and resume included. */
#include <stdlib.h>
#include <string.h>

#include "beamlet/capi.h"
#include "beamlet/ml.h"
#include "capi/internal.h"

static bl_status parse(const char *json, bl_training_config *c) {
    if (!json) return bl_error(BL_ERR_INVALID_ARG, "no training config JSON (NULL)");
    return bl_training_config_from_json(json, strlen(json), c); /* its messages say "training config" */
}

int bl_capi_training_config_default(char **json) {
    if (!json) return bl_error(BL_ERR_INVALID_ARG, "bl_capi_training_config_default: NULL out");
    bl_training_config c = bl_training_config_default();
    return bl_training_config_to_json(&c, json);
}

int bl_capi_training_config_normalize(const char *json, char **normalized) {
    if (!normalized) return bl_error(BL_ERR_INVALID_ARG, "bl_capi_training_config_normalize: NULL out");
    bl_training_config c;
    BL_TRY(parse(json, &c));
    BL_TRY(bl_training_config_validate(&c));
    return bl_training_config_to_json(&c, normalized);
}

int bl_capi_train(const char *config_json, char **result_json) {
    if (!result_json) return bl_error(BL_ERR_INVALID_ARG, "bl_capi_train: NULL out");
    *result_json = NULL;
    bl_training_config c;
    BL_TRY(parse(config_json, &c));
    bl_training_result r;
    BL_TRY(bl_train(&c, NULL, NULL, &r));
    return bl_training_result_to_json(&r, result_json);
}

int bl_capi_sweep_grid(const char *base_json, const float *learning_rates, int n_learning_rates,
                       const int *batch_sizes, int n_batch_sizes, const char *const *models, int n_models,
                       char **configs_json) {
    if (!configs_json) return bl_error(BL_ERR_INVALID_ARG, "bl_capi_sweep_grid: NULL out");
    *configs_json = NULL;
    bl_training_config base;
    BL_TRY(parse(base_json, &base));
    bl_training_config *cfgs = NULL;
    int count = 0;
    BL_TRY(bl_sweep_grid(&base, learning_rates, n_learning_rates, batch_sizes, n_batch_sizes, models,
                         n_models, &cfgs, &count));
    bl_buf out = {0};
    bl_status s = bl_buf_append(&out, "[", 1);
    for (int i = 0; s == BL_OK && i < count; i++) {
        char *json = NULL;
        s = bl_training_config_to_json(&cfgs[i], &json);
        if (s == BL_OK && i > 0) s = bl_buf_append(&out, ",", 1);
        if (s == BL_OK) s = bl_buf_append(&out, json, strlen(json));
        free(json);
    }
    if (s == BL_OK) s = bl_buf_append(&out, "]", 2); /* with the terminating NUL */
    free(cfgs);
    if (s != BL_OK) {
        bl_buf_free(&out);
        return s;
    }
    *configs_json = (char *)out.data; /* malloc'ed by bl_buf: bl_capi_free releases it */
    return BL_OK;
}
