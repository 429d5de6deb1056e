/* beamlet data: inspect a dataset before training on it: counts, classes and their
 * frequencies, and a grid of sample images as PNG. */
#include <stdio.h>
#include <string.h>

#include "beamlet/datasets.h"
#include "cli.h"

static int inspect(const char *name, const char *dir, const char *grid, uint64_t seed) {
    bool fashion = strcmp(name, "fashion-mnist") == 0;
    if (!fashion && strcmp(name, "cifar10") != 0) {
        fprintf(stderr, "beamlet data: unknown dataset '%s' (valid: fashion-mnist, cifar10)\n", name);
        return 2;
    }
    const char *d = dir && *dir ? dir : NULL;
    for (int split = 0; split < 2; split++) {
        bl_dataset ds;
        bl_status s =
            fashion ? bl_fashion_mnist_load(d, split == 0, &ds) : bl_cifar10_load(d, split == 0, &ds);
        if (s != BL_OK) {
            fprintf(stderr, "beamlet data: %s\n", bl_last_error());
            if (fashion && !d)
                fprintf(stderr, "  (Fashion-MNIST comes from the package dataset-fashion-mnist: "
                                "scripts/setup.sh installs it)\n");
            if (!fashion)
                fprintf(stderr, "  (tools/fetch_cifar10.sh downloads CIFAR-10 where there is internet)\n");
            return 1;
        }
        int64_t hist[256] = {0};
        for (int64_t i = 0; i < ds.count; i++) hist[ds.labels[i]]++;
        printf("%s %s: %lld images, %dx%dx%d, %d classes, from %s\n", name, split == 0 ? "train" : "test",
               (long long)ds.count, ds.channels, ds.height, ds.width, ds.num_classes, ds.source);
        for (int k = 0; k < ds.num_classes; k++)
            printf("  %2d %-12s %6lld\n", k, ds.class_names ? ds.class_names[k] : "", (long long)hist[k]);
        if (split == 0 && grid && *grid) {
            if (bl_dataset_sample_grid_png(&ds, grid, 8, 8, seed) != BL_OK) {
                fprintf(stderr, "beamlet data: %s\n", bl_last_error());
                bl_dataset_free(&ds);
                return 1;
            }
            printf("sample grid (8x8 training images, seed %llu): %s\n", (unsigned long long)seed, grid);
        }
        bl_dataset_free(&ds);
    }
    return 0;
}

int cmd_data(int argc, char **argv) {
    cli_flag flags[] = {
        {"dataset", "fashion-mnist", "fashion-mnist or cifar10"},
        {"data_dir", "", "where the files are (default: the dataset's standard location)"},
        {"grid", "samples.png", "write a grid of sample images here (empty: none)"},
        {"seed", "0", "which samples the grid shows"},
    };
    int n = (int)(sizeof flags / sizeof flags[0]);
    bool help;
    long seed;
    if (cli_parse(argc, argv, 2, flags, n, &help) != BL_OK ||
        cli_get_int(flags, n, "seed", 0, 1L << 40, &seed) != BL_OK) {
        fprintf(stderr, "beamlet data: %s\n", bl_last_error());
        return 2;
    }
    if (help) {
        cli_usage("data", "Shows a dataset's splits, class counts and a grid of samples.", flags, n);
        return 0;
    }
    return inspect(cli_get(flags, n, "dataset"), cli_get(flags, n, "data_dir"), cli_get(flags, n, "grid"),
                   (uint64_t)seed);
}
