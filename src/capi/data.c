/* The C ABI's data: the learning path's datasets read by beamlet's strict readers, and the
 * preprocessing that turns a raw record or an image file into a model's input, so a Python
 * pipeline feeds its model exactly what `beamlet infer` feeds it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "beamlet/capi.h"
#include "beamlet/datasets.h"

struct bl_capi_dataset {
    bl_dataset ds;
};

int bl_capi_dataset_load(const char *name, const char *dir, int train, bl_capi_dataset **out) {
    if (!out) return bl_error(BL_ERR_INVALID_ARG, "bl_capi_dataset_load: NULL out");
    *out = NULL;
    bl_capi_dataset *d = calloc(1, sizeof *d);
    if (!d) return bl_error(BL_ERR_OUT_OF_MEMORY, "dataset handle");
    bl_status s = bl_dataset_load(name, dir && *dir ? dir : NULL, train != 0, &d->ds);
    if (s != BL_OK) {
        free(d);
        return s;
    }
    *out = d;
    return BL_OK;
}

void bl_capi_dataset_shape(const bl_capi_dataset *d, int64_t *count, int *channels, int *height, int *width,
                           int *num_classes) {
    if (count) *count = d ? d->ds.count : 0;
    if (channels) *channels = d ? d->ds.channels : 0;
    if (height) *height = d ? d->ds.height : 0;
    if (width) *width = d ? d->ds.width : 0;
    if (num_classes) *num_classes = d ? d->ds.num_classes : 0;
}

const char *bl_capi_dataset_class_name(const bl_capi_dataset *d, int k) {
    if (!d || !d->ds.class_names || k < 0 || k >= d->ds.num_classes) return NULL;
    return d->ds.class_names[k];
}

const char *bl_capi_dataset_source(const bl_capi_dataset *d) { return d ? d->ds.source : ""; }

int bl_capi_dataset_read(const bl_capi_dataset *d, int64_t start, int64_t n, uint8_t *images,
                         uint8_t *labels) {
    if (!d) return bl_error(BL_ERR_INVALID_ARG, "bl_capi_dataset_read: no dataset");
    if (start < 0 || n < 0 || start > d->ds.count || n > d->ds.count - start)
        return bl_error(BL_ERR_INVALID_ARG, "records [%lld, %lld) outside the %lld of %s", (long long)start,
                        (long long)(start + n), (long long)d->ds.count, d->ds.source);
    size_t per = (size_t)d->ds.channels * (size_t)d->ds.height * (size_t)d->ds.width;
    if (images) memcpy(images, d->ds.images + (size_t)start * per, (size_t)n * per);
    if (labels) memcpy(labels, d->ds.labels + start, (size_t)n);
    return BL_OK;
}

void bl_capi_dataset_free(bl_capi_dataset *d) {
    if (!d) return;
    bl_dataset_free(&d->ds);
    free(d);
}

/* ---- examples ------------------------------------------------------------------------------- */

/* A dataset view over the caller's records, so the batch code applies the same evaluation
 * transform the trainer and RunInference apply. */
static bl_status records_view(const char *name, const uint8_t *images, int64_t n, int channels, int height,
                              int width, bl_dataset *view, bl_batch_transform *t) {
    BL_TRY(bl_dataset_transform(name, false, t));
    memset(view, 0, sizeof *view);
    view->count = n;
    view->channels = channels;
    view->height = height;
    view->width = width;
    view->images = (uint8_t *)images; /* read only */
    bl_dataset_class_names(name, &view->class_names, &view->num_classes);
    snprintf(view->source, sizeof view->source, "%s records", name);
    int oc, oh, ow;
    return bl_error_context(bl_batch_transform_shape(view, t, &oc, &oh, &ow), "%s records of %dx%dx%d", name,
                            channels, height, width);
}

int bl_capi_example_shape(const char *dataset, int channels, int height, int width, int *out_channels,
                          int *out_height, int *out_width) {
    bl_dataset view;
    bl_batch_transform t;
    BL_TRY(records_view(dataset, NULL, 0, channels, height, width, &view, &t));
    int oc, oh, ow;
    BL_TRY(bl_batch_transform_shape(&view, &t, &oc, &oh, &ow));
    if (out_channels) *out_channels = oc;
    if (out_height) *out_height = oh;
    if (out_width) *out_width = ow;
    return BL_OK;
}

int bl_capi_examples_from_records(const char *dataset, const uint8_t *images, int64_t n, int channels,
                                  int height, int width, float *out) {
    if (n < 0 || (n > 0 && (!images || !out)))
        return bl_error(BL_ERR_INVALID_ARG, "examples: %lld records, images %p, out %p", (long long)n,
                        (const void *)images, (void *)out);
    bl_dataset view;
    bl_batch_transform t;
    BL_TRY(records_view(dataset, images, n, channels, height, width, &view, &t));
    int oc, oh, ow;
    BL_TRY(bl_batch_transform_shape(&view, &t, &oc, &oh, &ow));
    size_t per_out = (size_t)oc * (size_t)oh * (size_t)ow;
    enum {
        CHUNK = 256
    };
    int64_t indices[CHUNK];
    for (int64_t done = 0; done < n;) {
        int chunk = (int)(n - done < CHUNK ? n - done : CHUNK);
        for (int i = 0; i < chunk; i++) indices[i] = done + i;
        BL_TRY(bl_dataset_batch_f32(&view, indices, chunk, &t, NULL, out + (size_t)done * per_out, NULL));
        done += chunk;
    }
    return BL_OK;
}

int bl_capi_image_example(const void *data, size_t size, const char *name, int resize, int crop, float *out) {
    const char *shown = name && *name ? name : "image";
    if (!data || !out) return bl_error(BL_ERR_INVALID_ARG, "%s: no bytes or no output buffer", shown);
    /* The pipeline engine's own preprocessing, so a file read here and the same file read by
     * `beamlet infer` give the same floats. */
    return bl_image_decode_imagenet(data, size, shown, resize, crop, out);
}
