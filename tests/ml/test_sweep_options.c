/* The sweep's flags: the grid comes from --learning_rates, --batch_sizes and --models, so the
 * single-run flags --learning_rate, --batch_size, --model and --experiment_id, which the grid
 * would silently override, are refused with a message naming the flag to use instead. No
 * training here: only the options and the grid they describe. */
#include "bl_test.h"

#include "beamlet/ml.h"

/* The flag set of `beamlet sweep` (examples/04_parallel_sweep.c), parsed from argv. */
static bl_status sweep_grid(int argc, char **argv, bl_training_config **grid, int *n) {
    bl_options *opts;
    BL_TRY(bl_options_new(&opts));
    bl_training_config defaults = bl_training_config_default(), base;
    bl_status s = bl_training_config_add_options(opts, &defaults);
    if (s == BL_OK) s = bl_sweep_add_options(opts);
    if (s == BL_OK) s = bl_options_parse(opts, argc, argv);
    if (s == BL_OK) s = bl_training_config_from_options(opts, &base);
    if (s == BL_OK) s = bl_sweep_grid_from_options(opts, &base, grid, n);
    bl_options_free(opts);
    return s;
}

static void test_grid_from_plural_flags(void) {
    char *argv[] = {"sweep", "--learning_rates=0.1,0.01", "--batch_sizes=32", "--models=resnet18",
                    "--epochs=1"};
    bl_training_config *grid = NULL;
    int n = 0;
    CHECK_OK(sweep_grid(5, argv, &grid, &n));
    CHECK(n == 2);
    if (grid && n == 2) {
        CHECK_NEAR(grid[0].learning_rate, 0.1, 1e-7);
        CHECK(grid[1].batch_size == 32 && grid[1].epochs == 1);
        CHECK(strcmp(grid[0].experiment_id, "resnet18-lr0.1-bs32") == 0);
    }
    free(grid);
}

static void test_single_run_flags_refused(void) {
    static const struct {
        const char *flag, *needle;
    } cases[] = {
        {"--learning_rate=0.1",
         "--learning_rate=0.1 sets a single run; a sweep takes its learning rates from "
         "--learning_rates (e.g. --learning_rates=0.1)"},
        {"--batch_size=128", "--batch_size=128 sets a single run; a sweep takes its batch sizes from "
                             "--batch_sizes (e.g. --batch_sizes=128)"},
        {"--model=resnet34", "--model=resnet34 sets a single run; a sweep takes its models from --models "
                             "(e.g. --models=resnet34)"},
        {"--experiment_id=mine", "--experiment_id=mine names a single run; a sweep names each config itself"},
        /* Given, even at its default value: the grid would still ignore it. */
        {"--learning_rate=0.1", "--learning_rates (e.g."},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *argv[] = {"sweep", "--learning_rates=0.05", (char *)cases[i].flag};
        bl_training_config *grid = NULL;
        int n = 0;
        CHECK_ERR(sweep_grid(3, argv, &grid, &n), BL_ERR_INVALID_ARG, cases[i].needle);
        CHECK(grid == NULL);
    }
}

/* A repeated value on an axis makes two configs with one id (they would train into one folder):
 * refused, naming the id (the message was once read from freed memory). */
static void test_repeated_axis_value(void) {
    char *argv[] = {"sweep", "--batch_sizes=16,16", "--models=resnet18", "--learning_rates=0.1"};
    bl_training_config *grid = NULL;
    int n = 0;
    CHECK_ERR(sweep_grid(4, argv, &grid, &n), BL_ERR_INVALID_ARG,
              "sweep: two configs would both be 'resnet18-lr0.1-bs16' (a repeated value on an axis?)");
    CHECK(strstr(bl_last_error(), "sweep config resnet18-lr0.1-bs16") != NULL);
    CHECK(grid == NULL);
}

static void test_help_says_so(void) {
    bl_options *opts;
    CHECK_OK(bl_options_new(&opts));
    CHECK_OK(bl_sweep_add_options(opts));
    char *usage = bl_options_usage(opts);
    CHECK_MSG(strstr(usage, "--learning_rate is refused") && strstr(usage, "--batch_size is refused") &&
                  strstr(usage, "--model is refused"),
              "usage:\n%s", usage);
    free(usage);
    bl_options_free(opts);
}

int main(void) {
    RUN(test_grid_from_plural_flags);
    RUN(test_single_run_flags_refused);
    RUN(test_repeated_axis_value);
    RUN(test_help_says_so);
    return bl_test_finish();
}
