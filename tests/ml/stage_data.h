/* Test helper: writes a small Fashion-MNIST-format dataset (plain IDX files) whose classes are
 * learnable stripe patterns, so stage tests never depend on the installed dataset. */
#ifndef BEAMLET_TEST_STAGE_DATA_H
#define BEAMLET_TEST_STAGE_DATA_H

#include <stdio.h>
#include <stdlib.h>

#include "beamlet/core.h"

static void put_be32(FILE *f, uint32_t v) {
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                          (unsigned char)v};
    fwrite(b, 1, 4, f);
}

static int write_split(const char *dir, const char *prefix, int count, uint64_t seed) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", dir, prefix);
    FILE *fi = fopen(path, "wb");
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", dir, prefix);
    FILE *fl = fopen(path, "wb");
    if (!fi || !fl) return -1;
    put_be32(fi, 0x803), put_be32(fi, (uint32_t)count), put_be32(fi, 28), put_be32(fi, 28);
    put_be32(fl, 0x801), put_be32(fl, (uint32_t)count);
    bl_rng rng;
    bl_rng_seed(&rng, seed);
    for (int i = 0; i < count; i++) {
        int k = (int)bl_rng_below(&rng, 10);
        unsigned char label = (unsigned char)k, img[784];
        for (int y = 0; y < 28; y++)
            for (int x = 0; x < 28; x++) {
                int v = (int)bl_rng_below(&rng, 60), period = 3 + k / 2, along = k % 2 ? x : y;
                if (along % period < period / 2 + 1) v += 150;
                img[y * 28 + x] = (unsigned char)v;
            }
        fwrite(img, 1, 784, fi);
        fwrite(&label, 1, 1, fl);
    }
    fclose(fi);
    fclose(fl);
    return 0;
}

/* Creates <dir> with train (n_train) and t10k (n_test) splits. */
static int write_stage_dataset(const char *dir, int n_train, int n_test) {
    if (bl_mkdirs(dir) != BL_OK) return -1;
    if (write_split(dir, "train", n_train, 11) != 0) return -1;
    return write_split(dir, "t10k", n_test, 12);
}

#endif
