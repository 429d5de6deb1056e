/* CIFAR-10 in its binary format: data_batch_1..5.bin and test_batch.bin, each a run of
 * 3073-byte records (label, then 32x32 red, green, blue planes). The format has no header, so
 * the file length is the only integrity check there is: it must be exactly the record count
 * times the record size, and a short file is reported at the record it cuts. */
#include "beamlet/datasets.h"
#include "io/dataset_source.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *const bl_cifar10_class_names[BL_CIFAR10_CLASSES] = {
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
};
const float bl_cifar10_mean[3] = {0.4914f, 0.4822f, 0.4465f};
const float bl_cifar10_std[3] = {0.2470f, 0.2435f, 0.2616f};

#define PIXELS (3 * 32 * 32)

static bl_status default_dir(char *buf, size_t cap) {
    const char *env = getenv("BEAMLET_CIFAR10");
    if (env && *env) {
        snprintf(buf, cap, "%s", env);
        return BL_OK;
    }
    const char *home = getenv("HOME");
    if (!home || !*home) {
        return bl_error(BL_ERR_NOT_FOUND, "CIFAR-10: no folder given, BEAMLET_CIFAR10 and HOME "
                                          "unset");
    }
    snprintf(buf, cap, "%s/.cache/beamlet/cifar-10-batches-bin", home);
    return BL_OK;
}

/* Reads one batch file into `labels` and `images` (records, 3, 32, 32). */
static bl_status read_batch(const char *path, int64_t records, uint8_t *labels, uint8_t *images) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        return bl_error(errno == ENOENT ? BL_ERR_NOT_FOUND : BL_ERR_IO, "%s: cannot open: %s%s", path,
                        strerror(errno),
                        errno == ENOENT ? " (tools/fetch_cifar10.sh downloads CIFAR-10)" : "");
    }
    uint8_t record[BL_CIFAR10_RECORD_BYTES];
    bl_status s = BL_OK;
    for (int64_t r = 0; r < records; r++) {
        long long at = (long long)r * BL_CIFAR10_RECORD_BYTES;
        size_t got = fread(record, 1, sizeof record, f);
        if (got < sizeof record) {
            if (ferror(f)) {
                s = bl_error(BL_ERR_IO, "%s: record %lld: read failed at offset %lld: %s", path, (long long)r,
                             at + (long long)got, strerror(errno));
            } else {
                s = bl_error(BL_ERR_FORMAT,
                             "%s: truncated in record %lld at offset %lld (%zu of "
                             "its %d bytes; %lld records of %d bytes expected)",
                             path, (long long)r, at + (long long)got, got, BL_CIFAR10_RECORD_BYTES,
                             (long long)records, BL_CIFAR10_RECORD_BYTES);
            }
            break;
        }
        if (record[0] >= BL_CIFAR10_CLASSES) {
            s = bl_error(BL_ERR_FORMAT,
                         "%s: record %lld (offset %lld): label %d is out of range "
                         "(10 classes)",
                         path, (long long)r, at, record[0]);
            break;
        }
        labels[r] = record[0];
        memcpy(images + r * PIXELS, record + 1, PIXELS);
    }
    if (s == BL_OK) {
        long long end = (long long)records * BL_CIFAR10_RECORD_BYTES;
        long long extra = 0;
        char sink[4096];
        size_t got;
        while ((got = fread(sink, 1, sizeof sink, f)) > 0) extra += (long long)got;
        if (extra > 0) {
            s = bl_error(BL_ERR_FORMAT,
                         "%s: %lld unexpected trailing bytes from offset %lld "
                         "(%lld records of %d bytes expected)",
                         path, extra, end, (long long)records, BL_CIFAR10_RECORD_BYTES);
        }
    }
    fclose(f);
    return s;
}

bl_status bl_cifar10_load_records(const char *dir, bool train, int64_t records_per_file, bl_dataset *out) {
    if (!out) return bl_error(BL_ERR_INVALID_ARG, "bl_cifar10_load: NULL output");
    memset(out, 0, sizeof *out);
    if (records_per_file <= 0 || records_per_file > (int64_t)1 << 24) {
        return bl_error(BL_ERR_INVALID_ARG, "bl_cifar10_load: %lld records per file",
                        (long long)records_per_file);
    }
    char folder[4096];
    if (dir && *dir) {
        snprintf(folder, sizeof folder, "%s", dir);
    } else {
        BL_TRY(default_dir(folder, sizeof folder));
    }
    struct stat st;
    if (stat(folder, &st) != 0 || !S_ISDIR(st.st_mode)) {
        return bl_error(BL_ERR_NOT_FOUND,
                        "%s: no such folder (tools/fetch_cifar10.sh downloads "
                        "CIFAR-10 there)",
                        folder);
    }
    int files = train ? 5 : 1;
    int64_t count = records_per_file * files;
    uint8_t *labels = malloc((size_t)count);
    uint8_t *images = malloc((size_t)count * PIXELS);
    if (!labels || !images) {
        free(labels);
        free(images);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "CIFAR-10: cannot allocate %lld images", (long long)count);
    }
    for (int i = 0; i < files; i++) {
        char path[4200];
        if (train) {
            snprintf(path, sizeof path, "%s/data_batch_%d.bin", folder, i + 1);
        } else {
            snprintf(path, sizeof path, "%s/test_batch.bin", folder);
        }
        int64_t first = records_per_file * i;
        bl_status s = read_batch(path, records_per_file, labels + first, images + first * PIXELS);
        if (s != BL_OK) {
            free(labels);
            free(images);
            return s;
        }
    }
    out->count = count;
    out->channels = 3;
    out->height = 32;
    out->width = 32;
    out->images = images;
    out->labels = labels;
    out->num_classes = BL_CIFAR10_CLASSES;
    out->class_names = bl_cifar10_class_names;
    bl_dataset_set_source(out, folder, train ? " (train)" : " (test)");
    return BL_OK;
}

bl_status bl_cifar10_load(const char *dir, bool train, bl_dataset *out) {
    return bl_cifar10_load_records(dir, train, BL_CIFAR10_RECORDS_PER_FILE, out);
}
