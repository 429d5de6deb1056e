/* The model handler behind RunInference: one model per (weights, device, input size) per process,
 * shared by every DoFn instance on the process's worker threads, as Beam's shared model handle
 * does, so a worker with N threads holds one copy of the weights, not N. A bl_model and its
 * device handle are single-threaded, so inference takes the handler's mutex; on the CPU the
 * backend already uses every core inside one call, and on a GPU the device serializes anyway.
 * The cache itself has its own mutex, held while loading so two threads never load the same
 * model twice. The cache is keyed by the device a request resolves to (beamlet/devices.h). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "beamlet/ml_inference.h"

/* ---- the cache ------------------------------------------------------------------------------- */

struct bl_model_handler {
    char *path;
    char device_name[32];
    bl_dtype precision;
    int max_batch, height, width;
    int refs;
    pthread_mutex_t lock; /* serializes inference on the single-threaded model */
    bl_device *dev;
    bl_model *model;
    bl_tensor x; /* (max_batch, C, H, W) on the device */
    bl_model_handler *next;
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static bl_model_handler *cache;
static int64_t loads;

bl_status bl_model_handler_peek(const char *weights_path, bl_resnet_config *out) {
    if (!weights_path || !*weights_path) return bl_error(BL_ERR_INVALID_ARG, "no weights file given");
    if (!bl_file_exists(weights_path))
        return bl_error(BL_ERR_NOT_FOUND, "weights file %s: %s", weights_path, strerror(ENOENT));
    bl_safetensors *f;
    BL_TRY(bl_safetensors_open(weights_path, &f));
    bl_status s = bl_resnet_config_from_safetensors(f, "", out);
    bl_safetensors_close(f);
    return s;
}

static void handler_free(bl_model_handler *h) {
    if (!h) return;
    if (h->x.data) bl_tensor_release(&h->x);
    bl_model_free(h->model);
    if (h->dev) bl_device_release(h->dev);
    pthread_mutex_destroy(&h->lock);
    free(h->path);
    free(h);
}

static bl_status load(const char *path, const char *device, bl_dtype precision, int max_batch, int height,
                      int width, bl_model_handler **out) {
    /* `device` is a resolved name ("cpu", "cuda:1"): opening it takes no further choices. */
    bl_model_handler *h = calloc(1, sizeof *h);
    if (!h) return bl_error(BL_ERR_OUT_OF_MEMORY, "model handler");
    pthread_mutex_init(&h->lock, NULL);
    h->path = strdup(path);
    snprintf(h->device_name, sizeof h->device_name, "%s", device);
    h->max_batch = max_batch, h->height = height, h->width = width;
    h->precision = precision;
    bl_safetensors *f = NULL;
    bl_resnet_config rc;
    bl_status s = h->path ? BL_OK : bl_error(BL_ERR_OUT_OF_MEMORY, "model handler");
    if (s == BL_OK) s = bl_safetensors_open(path, &f);
    if (s == BL_OK) s = bl_resnet_config_from_safetensors(f, "", &rc);
    if (s == BL_OK) s = bl_device_get(device, &h->dev);
    if (s == BL_OK) s = bl_device_set_precision(h->dev, precision);
    if (s == BL_OK) s = bl_resnet_new(h->dev, &rc, 0, &h->model);
    if (s == BL_OK) s = bl_model_load_state(h->model, f, "");
    if (s == BL_OK) s = bl_model_plan(h->model, max_batch, height, width, false);
    if (s == BL_OK) {
        int64_t shape[4] = {max_batch, rc.in_channels, height, width};
        s = bl_tensor_alloc(h->dev, BL_F32, 4, shape, &h->x);
    }
    /* Fold now so the first batch's latency is inference, not folding. */
    if (s == BL_OK) s = bl_model_fold_batchnorm(h->model);
    if (f) bl_safetensors_close(f);
    if (s != BL_OK) {
        handler_free(h);
        return bl_error_context(s, "loading %s on %s (%s)", path, device, bl_dtype_name(precision));
    }
    *out = h;
    return BL_OK;
}

bl_status bl_model_handler_acquire(const char *weights_path, const bl_device_request *req, int max_batch,
                                   int height, int width, bl_model_handler **out, bool *loaded,
                                   double *load_seconds) {
    if (loaded) *loaded = false;
    if (load_seconds) *load_seconds = 0;
    if (!weights_path || max_batch < 1 || height < 1 || width < 1)
        return bl_error(BL_ERR_INVALID_ARG,
                        "model handler: need a weights path and a positive "
                        "batch and size (got batch %d, %dx%d)",
                        max_batch, height, width);
    bl_device_choice choice;
    BL_TRY(bl_device_resolve(req, &choice));
    const char *device = choice.name;
    pthread_mutex_lock(&cache_lock);
    bl_model_handler *h = cache;
    for (; h; h = h->next)
        if (strcmp(h->path, weights_path) == 0 && strcmp(h->device_name, device) == 0 &&
            h->precision == req->precision && h->height == height && h->width == width &&
            h->max_batch >= max_batch)
            break;
    bl_status s = BL_OK;
    if (!h) {
        double t0 = bl_time_now();
        s = load(weights_path, device, req->precision, max_batch, height, width, &h);
        if (s == BL_OK) {
            h->next = cache;
            cache = h;
            loads++;
            if (loaded) *loaded = true;
            if (load_seconds) *load_seconds = bl_time_now() - t0;
            bl_log_debug("model handler: loaded %s on %s (%s) for batches of %d at %dx%d", weights_path,
                         device, bl_dtype_name(req->precision), max_batch, height, width);
        }
    }
    if (s == BL_OK) {
        h->refs++;
        *out = h;
    }
    pthread_mutex_unlock(&cache_lock);
    return s;
}

void bl_model_handler_release(bl_model_handler *h) {
    if (!h) return;
    pthread_mutex_lock(&cache_lock);
    bool last = --h->refs == 0;
    if (last)
        for (bl_model_handler **pp = &cache; *pp; pp = &(*pp)->next)
            if (*pp == h) {
                *pp = h->next;
                break;
            }
    pthread_mutex_unlock(&cache_lock);
    if (last) handler_free(h);
}

const bl_resnet_config *bl_model_handler_config(const bl_model_handler *h) {
    return bl_model_config(h->model);
}
const char *bl_model_handler_device(const bl_model_handler *h) { return h->device_name; }

int64_t bl_model_handler_load_count(void) {
    pthread_mutex_lock(&cache_lock);
    int64_t n = loads;
    pthread_mutex_unlock(&cache_lock);
    return n;
}

bl_status bl_model_handler_infer(bl_model_handler *h, const float *x, int n, float *logits, double *seconds) {
    if (n < 1 || n > h->max_batch)
        return bl_error(BL_ERR_INVALID_ARG, "model handler: batch of %d, planned for 1..%d", n, h->max_batch);
    pthread_mutex_lock(&h->lock);
    double t0 = bl_time_now();
    bl_tensor in = h->x, out;
    in.shape[0] = n;
    bl_status s = bl_tensor_upload_nchw_f32(&in, x);
    if (s == BL_OK) s = bl_model_forward(h->model, &in, BL_FORWARD_INFER, &out);
    if (s == BL_OK) s = bl_tensor_download_f32(&out, logits);
    if (seconds) *seconds = bl_time_now() - t0;
    pthread_mutex_unlock(&h->lock);
    return s;
}
