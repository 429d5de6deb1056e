/* beamlet data: inspect a dataset before training on it: counts, classes and their
 * frequencies, and a grid of sample images as PNG. */
#include <stdio.h>
#include <string.h>

#include "beamlet/datasets.h"
#include "commands.h"

static bl_status options(bl_options *o) {
    BL_TRY(bl_options_add(o, "dataset", "fashion-mnist", BL_DATASET_NAMES));
    BL_TRY(
        bl_options_add(o, "data_dir", "", "where the files are (default: the dataset's standard location)"));
    BL_TRY(bl_options_add(o, "grid", "samples.png", "write a grid of sample images here (empty: none)"));
    return bl_options_add(o, "seed", "0", "which samples the grid shows");
}

static bl_status run(const bl_options *o) {
    const char *name = bl_options_get(o, "dataset"), *dir = bl_options_get(o, "data_dir");
    const char *grid = bl_options_get(o, "grid");
    int64_t seed;
    BL_TRY(bl_options_get_int_in(o, "seed", 0, INT64_C(1) << 40, &seed));
    if (!bl_dataset_known(name))
        return bl_error(BL_ERR_INVALID_ARG, "--dataset=%s: unknown (valid: %s)", name, BL_DATASET_NAMES);
    for (int split = 0; split < 2; split++) {
        bl_dataset ds;
        BL_TRY(bl_dataset_load(name, *dir ? dir : NULL, split == 0, &ds));
        int64_t hist[256] = {0};
        for (int64_t i = 0; i < ds.count; i++) hist[ds.labels[i]]++;
        printf("%s %s: %lld images, %dx%dx%d, %d classes, from %s\n", name, split == 0 ? "train" : "test",
               (long long)ds.count, ds.channels, ds.height, ds.width, ds.num_classes, ds.source);
        for (int k = 0; k < ds.num_classes; k++)
            printf("  %2d %-12s %6lld\n", k, ds.class_names ? ds.class_names[k] : "", (long long)hist[k]);
        if (split == 0 && *grid) {
            bl_status s = bl_dataset_sample_grid_png(&ds, grid, 8, 8, (uint64_t)seed);
            if (s == BL_OK)
                printf("sample grid (8x8 training images, seed %llu): %s\n", (unsigned long long)seed, grid);
            bl_dataset_free(&ds);
            BL_TRY(s);
            continue;
        }
        bl_dataset_free(&ds);
    }
    return BL_OK;
}

const bl_command beamlet_data_command = {
    .summary = "Shows a dataset's splits, class counts and a grid of samples.",
    .add_options = options,
    .run = run,
};
