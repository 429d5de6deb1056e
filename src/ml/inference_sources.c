/* Where RunInference's examples come from: a labelled dataset's test split (decoded here, as a
 * Create, since it is one small file: Fashion-MNIST, CIFAR-10), and image folders, whose files are listed here but read
 * and decoded on the workers, in a ParDo whose failures (a file that is not a JPEG or PNG, a
 * truncated one) go to a dead-letter output with the decoder's reason instead of failing the run. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "beamlet/datasets.h"
#include "beamlet/ml_inference.h"

#define DEAD_TAG "dead_letter"

/* ---- the labelled datasets' test splits ------------------------------------------------------- */

bl_status bl_read_test_split(bl_pipeline *p, const char *name, const char *dataset, const char *dir,
                             int64_t limit, bl_pcoll **out, int64_t *count) {
    *out = NULL;
    if (count) *count = 0;
    bl_dataset ds;
    bl_batch_transform t;
    BL_TRY(bl_error_context(bl_dataset_transform(dataset, false, &t), "%s", name));
    BL_TRY(bl_error_context(bl_dataset_load(dataset, dir, false, &ds), "%s", name));
    int64_t n = limit > 0 && limit < ds.count ? limit : ds.count;
    int c, h, w;
    bl_status s = bl_batch_transform_shape(&ds, &t, &c, &h, &w);
    size_t per = (size_t)c * (size_t)h * (size_t)w;
    bl_image_example **ex = calloc((size_t)(n ? n : 1), sizeof *ex);
    float *pixels = malloc(per * sizeof(float));
    if (s == BL_OK && (!ex || !pixels))
        s = bl_error(BL_ERR_OUT_OF_MEMORY, "%s: %lld examples", name, (long long)n);
    for (int64_t i = 0; s == BL_OK && i < n; i++) {
        int32_t label;
        char id[96];
        snprintf(id, sizeof id, "%s/%s/%05lld", dataset, bl_dataset_split_name(dataset, false), (long long)i);
        s = bl_dataset_batch_f32(&ds, &i, 1, &t, NULL, pixels, &label);
        if (s == BL_OK) s = bl_image_example_new(id, label, c, h, w, pixels, &ex[i]);
    }
    if (s == BL_OK) s = bl_create(p, name, bl_coder_image_example(), (const void *const *)ex, (size_t)n, out);
    if (s == BL_OK && count) *count = n;
    for (int64_t i = 0; ex && i < n; i++) bl_image_example_free(ex[i]);
    free(ex);
    free(pixels);
    bl_dataset_free(&ds);
    return s;
}

/* ---- image folders ------------------------------------------------------------------------------ */

/* The decode step's sizes, interned for the same reason as RunInference's config: DoFn user data
 * must outlive the run. A process uses a handful of (resize, crop) pairs at most. */
typedef struct decode_conf {
    int resize, crop;
} decode_conf;

static const decode_conf *decode_conf_intern(int resize, int crop) {
    static decode_conf table[16];
    static int used;
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    const decode_conf *found = NULL;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < used && !found; i++)
        if (table[i].resize == resize && table[i].crop == crop) found = &table[i];
    if (!found && used < 16) {
        table[used] = (decode_conf){resize, crop};
        found = &table[used++];
    }
    pthread_mutex_unlock(&lock);
    return found;
}

/* Errors that belong to one file go to the dead letter; anything else (out of memory, a bug)
 * fails the bundle, which the runner retries. */
static bool is_file_error(bl_status s) {
    return s == BL_ERR_FORMAT || s == BL_ERR_UNSUPPORTED || s == BL_ERR_IO || s == BL_ERR_NOT_FOUND;
}

static bl_status decode_process(bl_dofn_ctx *ctx, const void *element, bl_emitter *out) {
    const decode_conf *c = bl_dofn_user(ctx);
    const bl_kv *kv = element; /* (path, label) */
    const char *path = kv->key;
    int label = (int)*(const int64_t *)kv->value;
    size_t per = 3 * (size_t)c->crop * (size_t)c->crop;
    float *pixels = malloc(per * sizeof(float));
    if (!pixels) return bl_error(BL_ERR_OUT_OF_MEMORY, "decode: %zu floats", per);
    bl_status s = bl_image_load_imagenet(path, c->resize, c->crop, pixels);
    if (s != BL_OK) {
        free(pixels);
        if (!is_file_error(s)) return s;
        bl_metric_inc(ctx, "undecodable_files", 1);
        char reason[512];
        snprintf(reason, sizeof reason, "%s", bl_last_error());
        bl_dead_letter d = {(char *)path, (char *)bl_dofn_transform(ctx), reason};
        return bl_emit_tagged(out, DEAD_TAG, &d);
    }
    bl_image_example *e;
    s = bl_image_example_new(path, label, 3, c->crop, c->crop, pixels, &e);
    free(pixels);
    BL_TRY(s);
    bl_metric_inc(ctx, "decoded_files", 1);
    s = bl_emit(out, e);
    bl_image_example_free(e);
    return s;
}

bl_status bl_read_image_folder(bl_pipeline *p, const char *name, const char *dir, int resize, int crop,
                               int64_t limit, bl_pcoll **examples, bl_pcoll **dead_letter, int64_t *count) {
    *examples = NULL;
    if (count) *count = 0;
    if (dead_letter) *dead_letter = NULL;
    if (!name || !*name || strchr(name, '/'))
        return bl_error(BL_ERR_INVALID_ARG, "image folder source needs a name without '/'");
    if (crop < 1 || resize < crop)
        return bl_error(BL_ERR_INVALID_ARG, "%s: resize %d must be at least crop %d (> 0)", name, resize,
                        crop);
    const decode_conf *conf = decode_conf_intern(resize, crop);
    if (!conf)
        return bl_error(BL_ERR_UNSUPPORTED, "%s: too many distinct resize/crop pairs in one process", name);
    bl_image_folder *folder;
    BL_TRY(bl_error_context(bl_image_folder_open(dir, &folder), "%s", name));
    int64_t n = bl_image_folder_count(folder);
    if (limit > 0 && limit < n) n = limit;
    bl_kv *kvs = calloc((size_t)(n ? n : 1), sizeof *kvs);
    int64_t *labels = calloc((size_t)(n ? n : 1), sizeof *labels);
    const void **ptrs = calloc((size_t)(n ? n : 1), sizeof *ptrs);
    bl_status s =
        kvs && labels && ptrs ? BL_OK : bl_error(BL_ERR_OUT_OF_MEMORY, "%s: %lld files", name, (long long)n);
    for (int64_t i = 0; s == BL_OK && i < n; i++) {
        labels[i] = bl_image_folder_class(folder, i);
        kvs[i].key = (void *)bl_image_folder_path(folder, i);
        kvs[i].value = &labels[i];
        ptrs[i] = &kvs[i];
    }
    /* A composite, so the listing and the decoding read as one step: "<name>/Files", "<name>/Decode". */
    if (s == BL_OK) s = bl_pipeline_begin_composite(p, name, NULL);
    if (s == BL_OK) {
        bl_pcoll *files = NULL;
        bl_dofn fn = {.process = decode_process,
                      .user = (void *)conf,
                      .out_coder = bl_coder_image_example(),
                      .num_side_outputs = 1,
                      .side_tags = {DEAD_TAG},
                      .side_coders = {bl_coder_dead_letter()}};
        s = bl_create(p, "Files", bl_coder_kv(bl_coder_string(), bl_coder_int64()), ptrs, (size_t)n, &files);
        if (s == BL_OK) s = bl_pardo(p, "Decode", files, &fn, examples);
        bl_pcoll *dead = NULL;
        if (s == BL_OK) s = bl_pardo_output(*examples, DEAD_TAG, &dead);
        if (s == BL_OK && dead_letter) *dead_letter = dead;
        if (s == BL_OK && count) *count = n;
        bl_status e = bl_pipeline_end_composite(p);
        if (s == BL_OK) s = e;
    }
    free(kvs);
    free(labels);
    free(ptrs);
    bl_image_folder_free(folder);
    return s;
}
