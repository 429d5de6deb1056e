/* The datasets the readers know, by the names flags and configs use: one table, so training,
 * inference and `beamlet data` accept the same names and no caller compares them itself. */
#include <string.h>

#include "beamlet/datasets.h"

typedef struct named_dataset {
    const char *name;
    bl_status (*load)(const char *dir, bool train, bl_dataset *out);
    bl_batch_transform (*transform)(bool train);
    const char *const *class_names;
    int num_classes;
    const char *splits[2]; /* the test and training splits as the files name them */
    const char *where;     /* how to get it, for a failed load */
} named_dataset;

static const named_dataset datasets[] = {
    {"fashion-mnist",
     bl_fashion_mnist_load,
     bl_batch_transform_fashion_mnist,
     bl_fashion_mnist_class_names,
     BL_FASHION_MNIST_CLASSES,
     {"t10k", "train"},
     "Fashion-MNIST comes from the package dataset-fashion-mnist: scripts/setup.sh installs it"},
    {"cifar10",
     bl_cifar10_load,
     bl_batch_transform_cifar10,
     bl_cifar10_class_names,
     BL_CIFAR10_CLASSES,
     {"test_batch", "data_batch"},
     "tools/fetch_cifar10.sh downloads CIFAR-10 where there is internet"},
};

static const named_dataset *find(const char *name) {
    for (size_t i = 0; name && i < sizeof datasets / sizeof datasets[0]; i++)
        if (strcmp(datasets[i].name, name) == 0) return &datasets[i];
    return NULL;
}

static bl_status unknown(const char *name) {
    return bl_error(BL_ERR_INVALID_ARG, "dataset '%s' is not one the readers know (%s)", name ? name : "",
                    BL_DATASET_NAMES);
}

bool bl_dataset_known(const char *name) { return find(name) != NULL; }

bl_status bl_dataset_load(const char *name, const char *dir, bool train, bl_dataset *out) {
    const named_dataset *d = find(name);
    if (!d) return unknown(name);
    bl_status s = d->load(dir, train, out);
    /* Where to get it, when it is not in its default place. */
    if (s == BL_ERR_NOT_FOUND && !dir) return bl_error_context(s, "%s (%s)", name, d->where);
    return s;
}

bl_status bl_dataset_transform(const char *name, bool train, bl_batch_transform *out) {
    const named_dataset *d = find(name);
    if (!d) return unknown(name);
    *out = d->transform(train);
    return BL_OK;
}

const char *bl_dataset_split_name(const char *name, bool train) {
    const named_dataset *d = find(name);
    return d ? d->splits[train] : NULL;
}

void bl_dataset_class_names(const char *name, const char *const **names, int *count) {
    const named_dataset *d = find(name);
    *names = d ? d->class_names : NULL;
    *count = d ? d->num_classes : 0;
}
