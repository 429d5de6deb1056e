/* CIFAR-10 in its binary format: data_batch_1..5.bin and test_batch.bin, each a run of
 * 3073-byte records (label, then 32x32 red, green, blue planes). The format has no header, so
 * the file length is the only integrity check there is: it must be a whole number of records
 * (the official files hold 10,000; subsets and hand-made files hold any number), and a partial
 * record is reported at the offset where it starts. */
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

/* Opens one batch file and counts its records from its length: any whole number of records is
 * a valid file (subsets and hand-made files included); a partial record is refused at its offset. */
static bl_status open_batch(const char *path, FILE **out, int64_t *records) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        return bl_error(errno == ENOENT ? BL_ERR_NOT_FOUND : BL_ERR_IO, "%s: cannot open: %s%s", path,
                        strerror(errno),
                        errno == ENOENT ? " (tools/fetch_cifar10.sh downloads CIFAR-10)" : "");
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return bl_error(BL_ERR_IO, "%s: not a regular file", path);
    }
    long long size = (long long)st.st_size, whole = size / BL_CIFAR10_RECORD_BYTES;
    long long partial = size - whole * BL_CIFAR10_RECORD_BYTES;
    if (partial != 0 || whole == 0) {
        fclose(f);
        if (whole == 0 && partial == 0) return bl_error(BL_ERR_FORMAT, "%s: empty file (no records)", path);
        return bl_error(BL_ERR_FORMAT,
                        "%s: truncated in record %lld at offset %lld (%lld of its %d bytes; a CIFAR-10 "
                        "file is a whole number of %d-byte records)",
                        path, whole, whole * BL_CIFAR10_RECORD_BYTES, partial, BL_CIFAR10_RECORD_BYTES,
                        BL_CIFAR10_RECORD_BYTES);
    }
    if (whole > BL_CIFAR10_MAX_RECORDS) {
        fclose(f);
        return bl_error(BL_ERR_FORMAT,
                        "%s: %lld records, more than the %d a CIFAR-10 reader accepts per file", path, whole,
                        BL_CIFAR10_MAX_RECORDS);
    }
    *out = f;
    *records = whole;
    return BL_OK;
}

/* Reads `records` records of an open batch file into `labels` and `images` (records, 3, 32, 32). */
static bl_status read_batch(FILE *f, const char *path, int64_t records, uint8_t *labels, uint8_t *images) {
    uint8_t record[BL_CIFAR10_RECORD_BYTES];
    for (int64_t r = 0; r < records; r++) {
        long long at = (long long)r * BL_CIFAR10_RECORD_BYTES;
        size_t got = fread(record, 1, sizeof record, f);
        if (got < sizeof record) {
            /* The length was checked, so a short read means the file changed or the disk failed. */
            return bl_error(BL_ERR_IO, "%s: record %lld: read failed at offset %lld: %s", path, (long long)r,
                            at + (long long)got, ferror(f) ? strerror(errno) : "file shrank while read");
        }
        if (record[0] >= BL_CIFAR10_CLASSES) {
            return bl_error(BL_ERR_FORMAT,
                            "%s: record %lld (offset %lld): label %d is out of range "
                            "(10 classes)",
                            path, (long long)r, at, record[0]);
        }
        labels[r] = record[0];
        memcpy(images + r * PIXELS, record + 1, PIXELS);
    }
    return BL_OK;
}

static void batch_path(const char *folder, bool train, int i, char *path, size_t cap) {
    if (train) {
        snprintf(path, cap, "%s/data_batch_%d.bin", folder, i + 1);
    } else {
        snprintf(path, cap, "%s/test_batch.bin", folder);
    }
}

bl_status bl_cifar10_load(const char *dir, bool train, bl_dataset *out) {
    if (!out) return bl_error(BL_ERR_INVALID_ARG, "bl_cifar10_load: NULL output");
    memset(out, 0, sizeof *out);
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
    /* Every file is opened and measured first, so a bad fifth file fails before anything is
     * allocated or read. */
    enum {
        MAX_FILES = 5
    };
    int files = train ? MAX_FILES : 1;
    FILE *fp[MAX_FILES] = {0};
    int64_t records[MAX_FILES] = {0}, count = 0;
    char paths[MAX_FILES][4200];
    bl_status s = BL_OK;
    for (int i = 0; i < files && s == BL_OK; i++) {
        batch_path(folder, train, i, paths[i], sizeof paths[i]);
        s = open_batch(paths[i], &fp[i], &records[i]);
        count += records[i];
    }
    uint8_t *labels = NULL, *images = NULL;
    if (s == BL_OK) {
        labels = malloc((size_t)count);
        images = malloc((size_t)count * PIXELS);
        if (!labels || !images)
            s = bl_error(BL_ERR_OUT_OF_MEMORY, "CIFAR-10: cannot allocate %lld images", (long long)count);
    }
    int64_t first = 0;
    for (int i = 0; i < files && s == BL_OK; first += records[i], i++)
        s = read_batch(fp[i], paths[i], records[i], labels + first, images + first * PIXELS);
    for (int i = 0; i < files; i++)
        if (fp[i]) fclose(fp[i]);
    if (s != BL_OK) {
        free(labels);
        free(images);
        return s;
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
