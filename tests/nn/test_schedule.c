/* Learning-rate schedules against values printed by PyTorch 1.13's OneCycleLR
 * (max_lr=0.1, total_steps=100): steps 0, 10, 29, 30, 60, 99. */
#include "bl_test.h"

#include "beamlet/nn.h"

static void test_one_cycle_matches_pytorch(void) {
    bl_lr_schedule s = {BL_LR_ONE_CYCLE, 0.1f, 100};
    const int64_t steps[] = {0, 10, 29, 30, 60, 99};
    const double want[] = {0.0040000000000000036, 0.029516394846410082, 0.1,
                           0.09994965352845243,   0.05892800902855288,  4e-07};
    for (int i = 0; i < 6; i++)
        CHECK_NEAR(bl_lr_schedule_at(&s, steps[i]), want[i], 1e-6 * (1 + want[i] * 10));
}

static void test_other_schedules(void) {
    bl_lr_schedule c = {BL_LR_CONSTANT, 0.5f, 10};
    CHECK_NEAR(bl_lr_schedule_at(&c, 7), 0.5, 1e-7);
    bl_lr_schedule k = {BL_LR_COSINE, 1.0f, 10};
    CHECK_NEAR(bl_lr_schedule_at(&k, 0), 1.0, 1e-7);
    CHECK_NEAR(bl_lr_schedule_at(&k, 5), 0.5, 1e-6);
    CHECK_NEAR(bl_lr_schedule_at(&k, 10), 0.0, 1e-7);
    bl_lr_schedule_kind kind;
    CHECK_OK(bl_lr_schedule_parse("onecycle", &kind));
    CHECK(kind == BL_LR_ONE_CYCLE);
    CHECK_ERR(bl_lr_schedule_parse("linear", &kind), BL_ERR_INVALID_ARG, "valid: constant, cosine, onecycle");
}

int main(void) {
    RUN(test_one_cycle_matches_pytorch);
    RUN(test_other_schedules);
    return bl_test_finish();
}
