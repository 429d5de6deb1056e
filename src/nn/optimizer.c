/* Optimizers over the model's flat parameter buffer: one fused update per step, state in one
 * allocation on the model's device. Weight decay applies to every parameter, as PyTorch's
 * optimizers do when given model.parameters(). */
#include <stdlib.h>

#include "nn/model_internal.h"

struct bl_optimizer {
    bl_model *model;
    bl_optimizer_config cfg;
    float *state; /* SGD: momentum; AdamW: exp_avg then exp_avg_sq */
    int64_t steps;
};

bl_optimizer_config bl_optimizer_config_sgd(float lr, float momentum, float weight_decay, bool nesterov) {
    bl_optimizer_config c = {BL_OPTIMIZER_SGD, lr, weight_decay, momentum, nesterov, 0.9f, 0.999f, 1e-8f};
    return c;
}

bl_optimizer_config bl_optimizer_config_adamw(float lr, float weight_decay) {
    bl_optimizer_config c = {BL_OPTIMIZER_ADAMW, lr, weight_decay, 0.0f, false, 0.9f, 0.999f, 1e-8f};
    return c;
}

bl_status bl_optimizer_new(bl_model *model, const bl_optimizer_config *cfg, bl_optimizer **out) {
    *out = NULL;
    if (cfg->kind != BL_OPTIMIZER_SGD && cfg->kind != BL_OPTIMIZER_ADAMW)
        return bl_error(BL_ERR_INVALID_ARG, "optimizer: unknown kind %d", (int)cfg->kind);
    bl_optimizer *o = calloc(1, sizeof *o);
    if (!o) return bl_error(BL_ERR_OUT_OF_MEMORY, "optimizer: cannot allocate");
    o->model = model;
    o->cfg = *cfg;
    int copies = cfg->kind == BL_OPTIMIZER_ADAMW ? 2 : 1;
    size_t bytes = (size_t)(copies * model->nweights) * sizeof(float);
    bl_status s = bl_device_alloc(model->dev, bytes, (void **)&o->state);
    if (s == BL_OK) {
        for (int i = 0; i < copies && s == BL_OK; i++) {
            bl_tensor t = bl_optimizer_state(o, i, NULL);
            s = bl_tensor_zero(&t);
        }
    }
    if (s != BL_OK) {
        bl_optimizer_free(o);
        return bl_error_context(s, "optimizer state");
    }
    *out = o;
    return BL_OK;
}

void bl_optimizer_free(bl_optimizer *o) {
    if (!o) return;
    bl_device_free(o->model->dev, o->state);
    free(o);
}

int bl_optimizer_state_count(const bl_optimizer *o) { return o->cfg.kind == BL_OPTIMIZER_ADAMW ? 2 : 1; }

bl_tensor bl_optimizer_state(const bl_optimizer *o, int index, const char **name) {
    static const char *sgd_names[] = {"momentum_buffer"};
    static const char *adam_names[] = {"exp_avg", "exp_avg_sq"};
    if (name) *name = o->cfg.kind == BL_OPTIMIZER_ADAMW ? adam_names[index] : sgd_names[0];
    int64_t n = o->model->nweights;
    return bl_tensor_view(o->model->dev, o->state + index * n, BL_F32, 1, &n);
}

int64_t bl_optimizer_steps_taken(const bl_optimizer *o) { return o->steps; }
void bl_optimizer_set_steps_taken(bl_optimizer *o, int64_t steps) { o->steps = steps; }

bl_status bl_optimizer_step(bl_optimizer *o, float lr) {
    bl_tensor p = bl_model_flat_params(o->model), g = bl_model_flat_grads(o->model);
    bl_tensor s0 = bl_optimizer_state(o, 0, NULL);
    bl_status s;
    if (o->cfg.kind == BL_OPTIMIZER_SGD) {
        bl_sgd_params sp = {lr, o->cfg.momentum, o->cfg.weight_decay, o->cfg.nesterov};
        s = bl_op_sgd_update(o->model->dev, &sp, &p, &g, &s0);
    } else {
        bl_tensor s1 = bl_optimizer_state(o, 1, NULL);
        bl_adamw_params ap = {lr, o->cfg.beta1, o->cfg.beta2, o->cfg.eps, o->cfg.weight_decay, o->steps + 1};
        s = bl_op_adamw_update(o->model->dev, &ap, &p, &g, &s0, &s1);
    }
    if (s != BL_OK) return bl_error_context(s, "optimizer step %lld", (long long)(o->steps + 1));
    o->steps++;
    o->model->folded_valid = false;
    return BL_OK;
}
