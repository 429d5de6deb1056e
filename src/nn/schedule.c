/* Learning-rate schedules. One-cycle follows torch.optim.lr_scheduler.OneCycleLR with its
 * defaults (anneal_strategy="cos", pct_start=0.3, div_factor=25, final_div_factor=1e4,
 * three_phase=False), so recipes carry over from PyTorch unchanged. */
#include <math.h>
#include <string.h>

#include "beamlet/nn.h"

bl_status bl_lr_schedule_parse(const char *name, bl_lr_schedule_kind *out) {
    if (strcmp(name, "constant") == 0)
        *out = BL_LR_CONSTANT;
    else if (strcmp(name, "cosine") == 0)
        *out = BL_LR_COSINE;
    else if (strcmp(name, "onecycle") == 0)
        *out = BL_LR_ONE_CYCLE;
    else
        return bl_error(BL_ERR_INVALID_ARG,
                        "unknown learning-rate schedule '%s' (valid: constant, cosine, onecycle)", name);
    return BL_OK;
}

static double cos_anneal(double start, double end, double pct) {
    return end + (start - end) / 2.0 * (cos(M_PI * pct) + 1.0);
}

float bl_lr_schedule_at(const bl_lr_schedule *s, int64_t step) {
    double total = (double)(s->total_steps > 1 ? s->total_steps : 1);
    double t = (double)step;
    switch (s->kind) {
        case BL_LR_CONSTANT: return s->max_lr;
        case BL_LR_COSINE: return (float)cos_anneal(s->max_lr, 0.0, fmin(t / total, 1.0));
        case BL_LR_ONE_CYCLE: {
            double initial = s->max_lr / 25.0, final = initial / 1e4;
            double up_end = 0.3 * total - 1.0, down_end = total - 1.0;
            if (t <= up_end) return (float)cos_anneal(initial, s->max_lr, up_end > 0 ? t / up_end : 1.0);
            double pct = (t - up_end) / (down_end - up_end);
            return (float)cos_anneal(s->max_lr, final, fmin(pct, 1.0));
        }
    }
    return s->max_lr;
}
