/* Coders for the elements of RunInference: image examples, prediction results, dead letters and
 * the accuracy accumulator. Encodings are deterministic (varint lengths, zigzag integers, floats
 * as little-endian IEEE bits whatever the host), so the direct runner's round-trip check holds
 * and bytes mean the same on every MPI rank. The coders are made once and live until exit, as
 * the pipeline's composite coders do. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "beamlet/ml_inference.h"

/* ---- primitive pieces ------------------------------------------------------------------------ */

static bl_status put_str(bl_buf *b, const char *s) {
    size_t n = s ? strlen(s) : 0;
    BL_TRY(bl_buf_put_varint(b, n));
    return bl_buf_append(b, s ? s : "", n);
}

static bl_status get_str(const uint8_t *d, size_t size, size_t *pos, char **out) {
    uint64_t n;
    BL_TRY(bl_read_varint(d, size, pos, &n));
    if (n > size - *pos)
        return bl_error(BL_ERR_FORMAT, "string of %llu bytes past the end", (unsigned long long)n);
    char *s = malloc((size_t)n + 1);
    if (!s) return bl_error(BL_ERR_OUT_OF_MEMORY, "string of %llu bytes", (unsigned long long)n);
    memcpy(s, d + *pos, (size_t)n);
    s[n] = 0;
    *pos += (size_t)n;
    *out = s;
    return BL_OK;
}

/* Into a fixed buffer (class names); longer strings are a format error, never truncated. */
static bl_status get_str_fixed(const uint8_t *d, size_t size, size_t *pos, char *out, size_t cap) {
    uint64_t n;
    BL_TRY(bl_read_varint(d, size, pos, &n));
    if (n > size - *pos || n >= cap)
        return bl_error(BL_ERR_FORMAT, "name of %llu bytes", (unsigned long long)n);
    memcpy(out, d + *pos, (size_t)n);
    out[n] = 0;
    *pos += (size_t)n;
    return BL_OK;
}

static bl_status put_i64(bl_buf *b, int64_t v) {
    return bl_buf_put_varint(b, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

static bl_status get_i64(const uint8_t *d, size_t size, size_t *pos, int64_t *v) {
    uint64_t z;
    BL_TRY(bl_read_varint(d, size, pos, &z));
    *v = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
    return BL_OK;
}

static bl_status get_i32(const uint8_t *d, size_t size, size_t *pos, int32_t *v) {
    int64_t x;
    BL_TRY(get_i64(d, size, pos, &x));
    if (x < INT32_MIN || x > INT32_MAX)
        return bl_error(BL_ERR_FORMAT, "integer %lld out of range", (long long)x);
    *v = (int32_t)x;
    return BL_OK;
}

static bl_status put_floats(bl_buf *b, const float *x, size_t n) {
    uint8_t tmp[256];
    for (size_t i = 0; i < n;) {
        size_t k = 0;
        for (; k < sizeof tmp && i < n; i++, k += 4) {
            uint32_t bits;
            memcpy(&bits, &x[i], 4);
            tmp[k] = (uint8_t)bits, tmp[k + 1] = (uint8_t)(bits >> 8);
            tmp[k + 2] = (uint8_t)(bits >> 16), tmp[k + 3] = (uint8_t)(bits >> 24);
        }
        BL_TRY(bl_buf_append(b, tmp, k));
    }
    return BL_OK;
}

static bl_status get_floats(const uint8_t *d, size_t size, size_t *pos, float *x, size_t n) {
    if (n > (size - *pos) / 4) return bl_error(BL_ERR_FORMAT, "%zu floats past the end", n);
    const uint8_t *p = d + *pos;
    for (size_t i = 0; i < n; i++, p += 4) {
        uint32_t bits = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        memcpy(&x[i], &bits, 4);
    }
    *pos += 4 * n;
    return BL_OK;
}

static bl_status json_str(bl_buf *out, const char *s) {
    return bl_coder_to_json(bl_coder_string(), s ? s : "", out);
}

/* JSON has no NaN or infinity: write null for them. */
static bl_status json_float(bl_buf *out, float x) {
    return isfinite(x) ? bl_buf_printf(out, "%.9g", (double)x) : bl_buf_printf(out, "null");
}

/* ---- image examples -------------------------------------------------------------------------- */

bl_status bl_image_example_new(const char *id, int label, int channels, int height, int width,
                               const float *pixels, bl_image_example **out) {
    if (channels < 0 || height < 0 || width < 0)
        return bl_error(BL_ERR_INVALID_ARG, "image example %dx%dx%d", channels, height, width);
    size_t n = (size_t)channels * (size_t)height * (size_t)width;
    bl_image_example *e = calloc(1, sizeof *e);
    if (!e) return bl_error(BL_ERR_OUT_OF_MEMORY, "image example");
    e->id = strdup(id ? id : "");
    e->pixels = malloc(n ? n * sizeof(float) : 1);
    if (!e->id || !e->pixels) {
        bl_image_example_free(e);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "image example of %zu pixels", n);
    }
    if (n && pixels)
        memcpy(e->pixels, pixels, n * sizeof(float));
    else if (n)
        memset(e->pixels, 0, n * sizeof(float));
    e->label = label, e->channels = channels, e->height = height, e->width = width;
    *out = e;
    return BL_OK;
}

void bl_image_example_free(bl_image_example *e) {
    if (!e) return;
    free(e->id);
    free(e->pixels);
    free(e);
}

size_t bl_image_example_size(void *user, const void *element) {
    (void)user;
    const bl_image_example *e = element;
    return (size_t)e->channels * (size_t)e->height * (size_t)e->width;
}

static bl_status example_encode(const void *v, bl_buf *out, void *u) {
    (void)u;
    const bl_image_example *e = v;
    BL_TRY(put_str(out, e->id));
    BL_TRY(put_i64(out, e->label));
    BL_TRY(put_i64(out, e->channels));
    BL_TRY(put_i64(out, e->height));
    BL_TRY(put_i64(out, e->width));
    return put_floats(out, e->pixels, bl_image_example_size(NULL, e));
}

static bl_status example_decode(const uint8_t *d, size_t size, size_t *pos, void **v, void *u) {
    (void)u;
    char *id = NULL;
    int32_t label = 0, c = 0, h = 0, w = 0;
    BL_TRY(get_str(d, size, pos, &id));
    bl_status s = get_i32(d, size, pos, &label);
    if (s == BL_OK) s = get_i32(d, size, pos, &c);
    if (s == BL_OK) s = get_i32(d, size, pos, &h);
    if (s == BL_OK) s = get_i32(d, size, pos, &w);
    if (s == BL_OK &&
        (c < 0 || h < 0 || w < 0 || (uint64_t)c * (uint64_t)h * (uint64_t)w > (size - *pos) / 4))
        s = bl_error(BL_ERR_FORMAT, "image example '%s': shape %dx%dx%d does not fit its bytes", id, c, h, w);
    bl_image_example *e = NULL;
    if (s == BL_OK) s = bl_image_example_new(id, label, c, h, w, NULL, &e);
    free(id);
    if (s == BL_OK) s = get_floats(d, size, pos, e->pixels, bl_image_example_size(NULL, e));
    if (s != BL_OK) {
        bl_image_example_free(e);
        return s;
    }
    *v = e;
    return BL_OK;
}

static void example_free(void *v, void *u) {
    (void)u;
    bl_image_example_free(v);
}

static bl_status example_json(const void *v, bl_buf *out, void *u) {
    (void)u;
    const bl_image_example *e = v;
    BL_TRY(bl_buf_printf(out, "{\"id\": "));
    BL_TRY(json_str(out, e->id));
    BL_TRY(bl_buf_printf(out, ", \"label\": %d, \"shape\": [%d, %d, %d], \"pixels\": [", e->label,
                         e->channels, e->height, e->width));
    size_t n = bl_image_example_size(NULL, e);
    for (size_t i = 0; i < n; i++) {
        if (i) BL_TRY(bl_buf_append(out, ", ", 2));
        BL_TRY(json_float(out, e->pixels[i]));
    }
    return bl_buf_printf(out, "]}");
}

/* ---- prediction results ---------------------------------------------------------------------- */

void bl_prediction_result_free(bl_prediction_result *r) {
    if (!r) return;
    free(r->example_id);
    free(r->model_id);
    free(r);
}

static bl_status prediction_encode(const void *v, bl_buf *out, void *u) {
    (void)u;
    const bl_prediction_result *r = v;
    if (r->top_k < 0 || r->top_k > BL_PREDICTION_MAX_TOP_K)
        return bl_error(BL_ERR_INVALID_ARG, "prediction with top_k %d", r->top_k);
    BL_TRY(put_str(out, r->example_id));
    BL_TRY(put_i64(out, r->label));
    BL_TRY(put_i64(out, r->top_k));
    for (int i = 0; i < r->top_k; i++) {
        BL_TRY(put_i64(out, r->classes[i]));
        BL_TRY(put_floats(out, &r->probabilities[i], 1));
        BL_TRY(put_str(out, r->class_names[i]));
    }
    return put_str(out, r->model_id);
}

static bl_status prediction_decode(const uint8_t *d, size_t size, size_t *pos, void **v, void *u) {
    (void)u;
    bl_prediction_result *r = calloc(1, sizeof *r);
    if (!r) return bl_error(BL_ERR_OUT_OF_MEMORY, "prediction");
    bl_status s = get_str(d, size, pos, &r->example_id);
    if (s == BL_OK) s = get_i32(d, size, pos, &r->label);
    if (s == BL_OK) s = get_i32(d, size, pos, &r->top_k);
    if (s == BL_OK && (r->top_k < 0 || r->top_k > BL_PREDICTION_MAX_TOP_K))
        s = bl_error(BL_ERR_FORMAT, "prediction with top_k %d", r->top_k);
    for (int i = 0; s == BL_OK && i < r->top_k; i++) {
        s = get_i32(d, size, pos, &r->classes[i]);
        if (s == BL_OK) s = get_floats(d, size, pos, &r->probabilities[i], 1);
        if (s == BL_OK) s = get_str_fixed(d, size, pos, r->class_names[i], BL_CLASS_NAME_MAX);
    }
    if (s == BL_OK) s = get_str(d, size, pos, &r->model_id);
    if (s != BL_OK) {
        bl_prediction_result_free(r);
        return s;
    }
    *v = r;
    return BL_OK;
}

static void prediction_free(void *v, void *u) {
    (void)u;
    bl_prediction_result_free(v);
}

static bl_status prediction_json(const void *v, bl_buf *out, void *u) {
    (void)u;
    const bl_prediction_result *r = v;
    BL_TRY(bl_buf_printf(out, "{\"example\": "));
    BL_TRY(json_str(out, r->example_id));
    if (r->label >= 0) BL_TRY(bl_buf_printf(out, ", \"label\": %d", r->label));
    BL_TRY(bl_buf_printf(out, ", \"inference\": ["));
    for (int i = 0; i < r->top_k; i++) {
        BL_TRY(bl_buf_printf(out, "%s{\"class\": %d", i ? ", " : "", r->classes[i]));
        if (r->class_names[i][0]) {
            BL_TRY(bl_buf_printf(out, ", \"name\": "));
            BL_TRY(json_str(out, r->class_names[i]));
        }
        BL_TRY(bl_buf_printf(out, ", \"probability\": "));
        BL_TRY(json_float(out, r->probabilities[i]));
        BL_TRY(bl_buf_printf(out, "}"));
    }
    BL_TRY(bl_buf_printf(out, "], \"model_id\": "));
    BL_TRY(json_str(out, r->model_id));
    return bl_buf_printf(out, "}");
}

/* ---- dead letters ---------------------------------------------------------------------------- */

bl_status bl_dead_letter_new(const char *id, const char *step, const char *reason, bl_dead_letter **out) {
    bl_dead_letter *d = calloc(1, sizeof *d);
    if (!d) return bl_error(BL_ERR_OUT_OF_MEMORY, "dead letter");
    d->id = strdup(id ? id : "");
    d->step = strdup(step ? step : "");
    d->reason = strdup(reason ? reason : "");
    if (!d->id || !d->step || !d->reason) {
        bl_dead_letter_free(d);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "dead letter");
    }
    *out = d;
    return BL_OK;
}

void bl_dead_letter_free(bl_dead_letter *d) {
    if (!d) return;
    free(d->id);
    free(d->step);
    free(d->reason);
    free(d);
}

static bl_status dead_encode(const void *v, bl_buf *out, void *u) {
    (void)u;
    const bl_dead_letter *d = v;
    BL_TRY(put_str(out, d->id));
    BL_TRY(put_str(out, d->step));
    return put_str(out, d->reason);
}

static bl_status dead_decode(const uint8_t *d, size_t size, size_t *pos, void **v, void *u) {
    (void)u;
    bl_dead_letter *x = calloc(1, sizeof *x);
    if (!x) return bl_error(BL_ERR_OUT_OF_MEMORY, "dead letter");
    bl_status s = get_str(d, size, pos, &x->id);
    if (s == BL_OK) s = get_str(d, size, pos, &x->step);
    if (s == BL_OK) s = get_str(d, size, pos, &x->reason);
    if (s != BL_OK) {
        bl_dead_letter_free(x);
        return s;
    }
    *v = x;
    return BL_OK;
}

static void dead_free(void *v, void *u) {
    (void)u;
    bl_dead_letter_free(v);
}

static bl_status dead_json(const void *v, bl_buf *out, void *u) {
    (void)u;
    const bl_dead_letter *d = v;
    BL_TRY(bl_buf_printf(out, "{\"id\": "));
    BL_TRY(json_str(out, d->id));
    BL_TRY(bl_buf_printf(out, ", \"step\": "));
    BL_TRY(json_str(out, d->step));
    BL_TRY(bl_buf_printf(out, ", \"reason\": "));
    BL_TRY(json_str(out, d->reason));
    return bl_buf_printf(out, "}");
}

/* ---- accuracy -------------------------------------------------------------------------------- */

static bl_status accuracy_encode(const void *v, bl_buf *out, void *u) {
    (void)u;
    const bl_accuracy *a = v;
    BL_TRY(put_i64(out, a->total));
    BL_TRY(put_i64(out, a->labelled));
    BL_TRY(put_i64(out, a->correct));
    return put_i64(out, a->correct_top_k);
}

static bl_status accuracy_decode(const uint8_t *d, size_t size, size_t *pos, void **v, void *u) {
    (void)u;
    bl_accuracy *a = calloc(1, sizeof *a);
    if (!a) return bl_error(BL_ERR_OUT_OF_MEMORY, "accuracy");
    bl_status s = get_i64(d, size, pos, &a->total);
    if (s == BL_OK) s = get_i64(d, size, pos, &a->labelled);
    if (s == BL_OK) s = get_i64(d, size, pos, &a->correct);
    if (s == BL_OK) s = get_i64(d, size, pos, &a->correct_top_k);
    if (s != BL_OK) {
        free(a);
        return s;
    }
    *v = a;
    return BL_OK;
}

static void plain_free(void *v, void *u) {
    (void)u;
    free(v);
}

static bl_status accuracy_json(const void *v, bl_buf *out, void *u) {
    (void)u;
    const bl_accuracy *a = v;
    double l = a->labelled ? (double)a->labelled : 1.0;
    return bl_buf_printf(out,
                         "{\"total\": %lld, \"labelled\": %lld, \"correct\": %lld, \"correct_top_k\": %lld, "
                         "\"accuracy\": %.6f, \"top_k_accuracy\": %.6f}",
                         (long long)a->total, (long long)a->labelled, (long long)a->correct,
                         (long long)a->correct_top_k, (double)a->correct / l, (double)a->correct_top_k / l);
}

static bl_status acc_create(void *user, void **acc) {
    (void)user;
    *acc = calloc(1, sizeof(bl_accuracy));
    return *acc ? BL_OK : bl_error(BL_ERR_OUT_OF_MEMORY, "accuracy");
}

static bl_status acc_add(void *user, void *acc, const void *input) {
    (void)user;
    bl_accuracy *a = acc;
    const bl_prediction_result *r = input;
    a->total++;
    if (r->label < 0) return BL_OK;
    a->labelled++;
    a->correct += r->top_k > 0 && r->classes[0] == r->label;
    for (int i = 0; i < r->top_k; i++)
        if (r->classes[i] == r->label) {
            a->correct_top_k++;
            break;
        }
    return BL_OK;
}

static bl_status acc_merge(void *user, void *acc, const void *other) {
    (void)user;
    bl_accuracy *a = acc;
    const bl_accuracy *b = other;
    a->total += b->total, a->labelled += b->labelled;
    a->correct += b->correct, a->correct_top_k += b->correct_top_k;
    return BL_OK;
}

static bl_status acc_extract(void *user, const void *acc, void **out) {
    (void)user;
    bl_accuracy *a = malloc(sizeof *a);
    if (!a) return bl_error(BL_ERR_OUT_OF_MEMORY, "accuracy");
    *a = *(const bl_accuracy *)acc;
    *out = a;
    return BL_OK;
}

/* ---- the coders, made once ------------------------------------------------------------------- */

static pthread_once_t once = PTHREAD_ONCE_INIT;
static bl_coder *example_coder, *prediction_coder, *dead_coder, *accuracy_coder;
static bl_combine_fn accuracy_fn;

static void make_coders(void) {
    bl_coder_fns e = {"image_example", true, example_encode, example_decode, example_free,
                      example_json,    NULL};
    bl_coder_fns p = {"prediction_result", true, prediction_encode, prediction_decode, prediction_free,
                      prediction_json,     NULL};
    bl_coder_fns d = {"dead_letter", true, dead_encode, dead_decode, dead_free, dead_json, NULL};
    bl_coder_fns a = {"accuracy", true, accuracy_encode, accuracy_decode, plain_free, accuracy_json, NULL};
    /* Failure leaves NULL, which every pipeline call refuses with a message. */
    if (bl_coder_new(&e, &example_coder) != BL_OK) example_coder = NULL;
    if (bl_coder_new(&p, &prediction_coder) != BL_OK) prediction_coder = NULL;
    if (bl_coder_new(&d, &dead_coder) != BL_OK) dead_coder = NULL;
    if (bl_coder_new(&a, &accuracy_coder) != BL_OK) accuracy_coder = NULL;
    accuracy_fn =
        (bl_combine_fn){acc_create, acc_add, acc_merge, acc_extract, accuracy_coder, accuracy_coder, NULL};
}

const bl_coder *bl_coder_image_example(void) {
    pthread_once(&once, make_coders);
    return example_coder;
}
const bl_coder *bl_coder_prediction_result(void) {
    pthread_once(&once, make_coders);
    return prediction_coder;
}
const bl_coder *bl_coder_dead_letter(void) {
    pthread_once(&once, make_coders);
    return dead_coder;
}
const bl_coder *bl_coder_accuracy(void) {
    pthread_once(&once, make_coders);
    return accuracy_coder;
}
const bl_combine_fn *bl_combine_accuracy(void) {
    pthread_once(&once, make_coders);
    return &accuracy_fn;
}
