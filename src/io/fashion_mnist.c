/* Fashion-MNIST from its IDX files, as Debian's dataset-fashion-mnist installs them. The IDX
 * reader already guarantees exact lengths; here we check that the pair of files is a pair of
 * Fashion-MNIST files (types, shapes, counts, label range) before anything trains on them. */
#include "beamlet/datasets.h"
#include "io/dataset_source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *const bl_fashion_mnist_class_names[BL_FASHION_MNIST_CLASSES] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
};

#define IMAGE_MAGIC 0x00000803u
#define LABEL_MAGIC 0x00000801u

/* "<dir>/<stem>.gz" when present, else "<dir>/<stem>". */
static bl_status find_file(const char *dir, const char *stem, char *path, size_t cap) {
    int n = snprintf(path, cap, "%s/%s.gz", dir, stem);
    if (n < 0 || (size_t)n >= cap) return bl_error(BL_ERR_INVALID_ARG, "%s: path too long", dir);
    if (access(path, F_OK) == 0) return BL_OK;
    snprintf(path, cap, "%s/%s", dir, stem);
    if (access(path, F_OK) == 0) return BL_OK;
    return bl_error(BL_ERR_NOT_FOUND,
                    "%s: no %s(.gz) here (install the Debian/Ubuntu package "
                    "dataset-fashion-mnist, or point BEAMLET_FASHION_MNIST at the folder)",
                    dir, stem);
}

static uint32_t idx_magic(const bl_idx *idx) { return (uint32_t)idx->type << 8 | (uint32_t)idx->ndim; }

bl_status bl_fashion_mnist_load(const char *dir, bool train, bl_dataset *out) {
    if (!out) return bl_error(BL_ERR_INVALID_ARG, "bl_fashion_mnist_load: NULL output");
    memset(out, 0, sizeof *out);
    if (!dir || !*dir) dir = getenv("BEAMLET_FASHION_MNIST");
    if (!dir || !*dir) dir = BL_FASHION_MNIST_DEFAULT_DIR;
    const char *split = train ? "train" : "t10k";
    char images_stem[64], labels_stem[64], images_path[4096], labels_path[4096];
    snprintf(images_stem, sizeof images_stem, "%s-images-idx3-ubyte", split);
    snprintf(labels_stem, sizeof labels_stem, "%s-labels-idx1-ubyte", split);
    BL_TRY(find_file(dir, images_stem, images_path, sizeof images_path));
    BL_TRY(find_file(dir, labels_stem, labels_path, sizeof labels_path));

    bl_idx images, labels;
    BL_TRY(bl_idx_read(images_path, &images));
    bl_status s = bl_idx_read(labels_path, &labels);
    if (s != BL_OK) {
        bl_idx_free(&images);
        return s;
    }
    if (idx_magic(&images) != IMAGE_MAGIC) {
        s = bl_error(BL_ERR_FORMAT,
                     "%s: offset 0: magic 0x%08x, but an image file has 0x%08x "
                     "(u8, 3 dimensions)",
                     images_path, idx_magic(&images), IMAGE_MAGIC);
    } else if (idx_magic(&labels) != LABEL_MAGIC) {
        s = bl_error(BL_ERR_FORMAT,
                     "%s: offset 0: magic 0x%08x, but a label file has 0x%08x "
                     "(u8, 1 dimension)",
                     labels_path, idx_magic(&labels), LABEL_MAGIC);
    } else if (images.dims[1] != 28 || images.dims[2] != 28) {
        s = bl_error(BL_ERR_FORMAT,
                     "%s: offset 8: images are %lldx%lld, Fashion-MNIST's are "
                     "28x28",
                     images_path, (long long)images.dims[1], (long long)images.dims[2]);
    } else if (images.dims[0] != labels.dims[0]) {
        s = bl_error(BL_ERR_FORMAT, "%s holds %lld images but %s holds %lld labels", images_path,
                     (long long)images.dims[0], labels_path, (long long)labels.dims[0]);
    } else {
        const uint8_t *l = labels.data;
        for (int64_t i = 0; i < labels.dims[0]; i++) {
            if (l[i] >= BL_FASHION_MNIST_CLASSES) {
                s = bl_error(BL_ERR_FORMAT,
                             "%s: record %lld (offset %lld): label %d is out of "
                             "range (10 classes)",
                             labels_path, (long long)i, (long long)(8 + i), l[i]);
                break;
            }
        }
    }
    if (s != BL_OK) {
        bl_idx_free(&images);
        bl_idx_free(&labels);
        return s;
    }
    int64_t expected = train ? 60000 : 10000;
    if (images.dims[0] != expected) {
        bl_log_info("%s: %lld images (the official %s split has %lld)", images_path,
                    (long long)images.dims[0], split, (long long)expected);
    }
    out->count = images.dims[0];
    out->channels = 1;
    out->height = 28;
    out->width = 28;
    out->images = images.data; /* ownership moves to the dataset */
    out->labels = labels.data;
    out->num_classes = BL_FASHION_MNIST_CLASSES;
    out->class_names = bl_fashion_mnist_class_names;
    bl_dataset_set_source(out, images_path, NULL);
    return BL_OK;
}
