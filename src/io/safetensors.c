/* safetensors: reading (validate everything, then hand out views into one buffer) and writing
 * (the reference implementation's exact layout, committed atomically).
 *
 * Files come from anywhere, so the reader checks every field before any pointer into the data
 * buffer is formed, and all size arithmetic is done in 64 bits with overflow checks. */
#include "beamlet/io.h"
#include "beamlet/json.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tensor bytes are little-endian and handed out (and converted) without swapping. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "beamlet's safetensors code assumes a little-endian host"
#endif

/* The reference implementation refuses headers above this size; so do we, before allocating. */
#define ST_MAX_HEADER 100000000u

/* rank: the reference writer lays tensors out by its dtype enum order, descending, which for
 * these six dtypes is also element size descending. */
static const struct {
    const char *code;
    bl_dtype dtype;
    int rank;
} st_dtypes[] = {
    {"I64", BL_I64, 5},   {"F32", BL_F32, 4}, {"I32", BL_I32, 3},
    {"BF16", BL_BF16, 2}, {"F16", BL_F16, 1}, {"U8", BL_U8, 0},
};
#define ST_NDTYPES (sizeof st_dtypes / sizeof st_dtypes[0])

static const char *st_code(bl_dtype d) {
    for (size_t i = 0; i < ST_NDTYPES; i++)
        if (st_dtypes[i].dtype == d) return st_dtypes[i].code;
    return NULL;
}

static int st_rank(bl_dtype d) {
    for (size_t i = 0; i < ST_NDTYPES; i++)
        if (st_dtypes[i].dtype == d) return st_dtypes[i].rank;
    return -1;
}

/* A name from a hostile file, fit for a one-line message: control characters become '?', and
 * long names are cut (at a UTF-8 boundary) with "...". */
static const char *show(const char *s, char *buf, size_t size) {
    size_t n = strlen(s), k = 0, limit = size - 4;
    if (n > limit) {
        n = limit;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80) n--;
    }
    for (; k < n; k++) {
        unsigned char c = (unsigned char)s[k];
        buf[k] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (n < strlen(s)) {
        memcpy(buf + k, "...", 3);
        k += 3;
    }
    buf[k] = '\0';
    return buf;
}

static const char *fmt_shape(char *buf, size_t size, int ndim, const int64_t *shape) {
    size_t k = 0;
    buf[k++] = '[';
    for (int i = 0; i < ndim && k < size - 24; i++)
        k += (size_t)snprintf(buf + k, size - k, "%s%" PRId64, i ? "," : "", shape[i]);
    snprintf(buf + k, size - k, "]");
    return buf;
}

/* ---- reading ---------------------------------------------------------------------------- */

typedef struct st_slot {
    bl_st_tensor t;
    uint64_t begin, end; /* data_offsets */
} st_slot;

struct bl_safetensors {
    char *label;
    void *owned; /* the file image when we read it ourselves */
    bl_json *header;
    const bl_json *metadata; /* NULL when the file has none */
    size_t count;
    st_slot *slots;          /* by data offset */
    const st_slot **by_name; /* sorted by name */
};

static bl_status ferr(const char *label, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bl_status ferr(const char *label, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return bl_error(BL_ERR_FORMAT, "%s: %s", label, msg);
}

static bl_status terr(const char *label, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bl_status terr(const char *label, const char *name, const char *fmt, ...) {
    char msg[768], shown[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return bl_error(BL_ERR_FORMAT, "%s: tensor '%s': %s", label, show(name, shown, sizeof shown), msg);
}

static bool json_str_is(const bl_json *v, const char *s) {
    const char *t = bl_json_string(v);
    return t && bl_json_string_len(v) == strlen(s) && memcmp(t, s, strlen(s)) == 0;
}

static const char *json_kind(const bl_json *v) {
    bl_json_type t = bl_json_type_of(v);
    return t == BL_JSON_ARRAY    ? "an array"
           : t == BL_JSON_OBJECT ? "an object"
           : t == BL_JSON_NULL   ? "null"
           : t == BL_JSON_BOOL   ? "a bool"
           : t == BL_JSON_NUMBER ? "a number"
                                 : "a string";
}

static bl_status parse_metadata(const char *label, const bl_json *m, const bl_json **out) {
    *out = NULL;
    if (bl_json_type_of(m) == BL_JSON_NULL) return BL_OK; /* the reference reader allows it */
    if (bl_json_type_of(m) != BL_JSON_OBJECT)
        return ferr(label, "__metadata__ is %s, not an object", json_kind(m));
    for (size_t i = 0; i < bl_json_len(m); i++) {
        size_t klen;
        const char *key = bl_json_object_key(m, i, &klen);
        const bl_json *v = bl_json_object_at(m, i, NULL);
        char shown[160];
        if (strlen(key) != klen)
            return ferr(label, "__metadata__ key '%s' contains a NUL byte", show(key, shown, sizeof shown));
        if (bl_json_type_of(v) != BL_JSON_STRING)
            return ferr(label, "__metadata__ value for '%s' is %s, not a string",
                        show(key, shown, sizeof shown), json_kind(v));
        if (strlen(bl_json_string(v)) != bl_json_string_len(v))
            return ferr(label, "__metadata__ value for '%s' contains a NUL byte",
                        show(key, shown, sizeof shown));
    }
    *out = m;
    return BL_OK;
}

static bl_status parse_entry(const char *label, const char *name, const bl_json *e, uint64_t data_len,
                             st_slot *slot) {
    char shown[160];
    if (bl_json_type_of(e) != BL_JSON_OBJECT)
        return terr(label, name, "entry is %s, not an object", json_kind(e));
    /* Other members are ignored, as the reference reader ignores them. */
    const bl_json *dtype = bl_json_object_get(e, "dtype");
    const bl_json *shape = bl_json_object_get(e, "shape");
    const bl_json *offsets = bl_json_object_get(e, "data_offsets");
    if (!dtype) return terr(label, name, "missing \"dtype\"");
    if (!shape) return terr(label, name, "missing \"shape\"");
    if (!offsets) return terr(label, name, "missing \"data_offsets\"");

    if (bl_json_type_of(dtype) != BL_JSON_STRING)
        return terr(label, name, "\"dtype\" is %s, not a string", json_kind(dtype));
    size_t d = 0;
    while (d < ST_NDTYPES && !json_str_is(dtype, st_dtypes[d].code)) d++;
    if (d == ST_NDTYPES)
        return terr(label, name, "dtype \"%s\" is not supported (beamlet reads F32, BF16, F16, U8, I32, I64)",
                    show(bl_json_string(dtype), shown, sizeof shown));
    slot->t.dtype = st_dtypes[d].dtype;

    if (bl_json_type_of(shape) != BL_JSON_ARRAY)
        return terr(label, name, "\"shape\" is %s, not an array", json_kind(shape));
    if (bl_json_len(shape) > BL_ST_MAX_DIMS)
        return terr(label, name, "shape has %zu dimensions, more than the %d beamlet supports",
                    bl_json_len(shape), BL_ST_MAX_DIMS);
    slot->t.ndim = (int)bl_json_len(shape);
    uint64_t elements = 1;
    bool overflow = false;
    for (int i = 0; i < slot->t.ndim; i++) {
        int64_t dim;
        if (bl_json_int64(bl_json_array_at(shape, (size_t)i), &dim) != BL_OK)
            return bl_error_context(BL_ERR_FORMAT, "%s: tensor '%s': shape[%d]", label,
                                    show(name, shown, sizeof shown), i);
        if (dim < 0) return terr(label, name, "shape[%d] is negative (%" PRId64 ")", i, dim);
        slot->t.shape[i] = dim;
        if (dim != 0 && elements > UINT64_MAX / (uint64_t)dim) overflow = true;
        elements *= (uint64_t)dim; /* wraps only when overflow is already set */
    }
    uint64_t esize = bl_dtype_size(slot->t.dtype);
    char sbuf[256];
    fmt_shape(sbuf, sizeof sbuf, slot->t.ndim, slot->t.shape);
    /* A zero anywhere makes the tensor empty, however large the other dimensions. */
    bool empty = false;
    for (int i = 0; i < slot->t.ndim; i++) empty = empty || slot->t.shape[i] == 0;
    if (!empty && (overflow || elements > UINT64_MAX / esize || elements * esize > SIZE_MAX))
        return terr(label, name, "shape %s is too large (its byte count overflows)", sbuf);
    uint64_t nbytes = empty ? 0 : elements * esize;

    if (bl_json_type_of(offsets) != BL_JSON_ARRAY || bl_json_len(offsets) != 2)
        return terr(label, name, "\"data_offsets\" is %s, not an array of two integers",
                    bl_json_type_of(offsets) == BL_JSON_ARRAY ? "an array of another length"
                                                              : json_kind(offsets));
    int64_t off[2];
    for (size_t i = 0; i < 2; i++) {
        if (bl_json_int64(bl_json_array_at(offsets, i), &off[i]) != BL_OK)
            return bl_error_context(BL_ERR_FORMAT, "%s: tensor '%s': data_offsets[%zu]", label,
                                    show(name, shown, sizeof shown), i);
        if (off[i] < 0) return terr(label, name, "data_offsets[%zu] is negative (%" PRId64 ")", i, off[i]);
    }
    slot->begin = (uint64_t)off[0];
    slot->end = (uint64_t)off[1];
    if (slot->begin > slot->end)
        return terr(label, name, "data_offsets [%" PRIu64 ", %" PRIu64 "]: begin is after end", slot->begin,
                    slot->end);
    if (slot->end > data_len)
        return terr(label, name, "data_offsets end %" PRIu64 " is beyond the data buffer (%" PRIu64 " bytes)",
                    slot->end, data_len);
    if (slot->end - slot->begin != nbytes)
        return terr(label, name,
                    "shape %s of %s needs %" PRIu64 " bytes but data_offsets [%" PRIu64 ", %" PRIu64
                    "] hold %" PRIu64,
                    sbuf, st_dtypes[d].code, nbytes, slot->begin, slot->end, slot->end - slot->begin);
    slot->t.nbytes = (size_t)nbytes;
    return BL_OK;
}

static int slot_by_offset(const void *a, const void *b) {
    const st_slot *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int slot_by_name(const void *a, const void *b) {
    return strcmp((*(const st_slot *const *)a)->t.name, (*(const st_slot *const *)b)->t.name);
}

/* The reference implementation requires the tensors to tile the data buffer: each one starts
 * where the previous one ended and the last one ends at the end of the file. */
static bl_status check_tiling(const bl_safetensors *f, uint64_t data_len) {
    uint64_t cursor = 0;
    char a[160], b[160];
    for (size_t i = 0; i < f->count; i++) {
        const st_slot *s = &f->slots[i];
        if (s->begin < cursor)
            return ferr(f->label,
                        "tensors '%s' [%" PRIu64 ", %" PRIu64 ") and '%s' [%" PRIu64 ", %" PRIu64 ") overlap",
                        show(f->slots[i - 1].t.name, a, sizeof a), f->slots[i - 1].begin, f->slots[i - 1].end,
                        show(s->t.name, b, sizeof b), s->begin, s->end);
        if (s->begin > cursor)
            return ferr(f->label,
                        "data bytes [%" PRIu64 ", %" PRIu64 ") before tensor '%s' belong to no "
                        "tensor",
                        cursor, s->begin, show(s->t.name, b, sizeof b));
        cursor = s->end;
    }
    if (cursor != data_len)
        return ferr(f->label, "the last %" PRIu64 " bytes of the data buffer belong to no tensor",
                    data_len - cursor);
    return BL_OK;
}

static bl_status parse_file(bl_safetensors *f, const unsigned char *bytes, size_t size) {
    const char *label = f->label;
    if (size < 8) return ferr(label, "file is %zu bytes, shorter than the 8-byte header length", size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | bytes[i];
    if (n > ST_MAX_HEADER)
        return ferr(label, "header length %" PRIu64 " is absurd (the limit is %u bytes)", n, ST_MAX_HEADER);
    if (n > size - 8)
        return ferr(label,
                    "header length %" PRIu64 " is larger than the rest of the file (%zu "
                    "bytes)",
                    n, size - 8);
    if (bl_json_parse((const char *)bytes + 8, (size_t)n, &f->header) != BL_OK)
        return bl_error_context(BL_ERR_FORMAT, "%s: header is not valid JSON", label);
    if (bl_json_type_of(f->header) != BL_JSON_OBJECT)
        return ferr(label, "header is %s, not a JSON object", json_kind(f->header));
    const unsigned char *data = bytes + 8 + n;
    uint64_t data_len = size - 8 - n;

    size_t members = bl_json_len(f->header);
    f->slots = calloc(members ? members : 1, sizeof *f->slots);
    f->by_name = calloc(members ? members : 1, sizeof *f->by_name);
    if (!f->slots || !f->by_name)
        return bl_error(BL_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu entries", label, members);
    for (size_t i = 0; i < members; i++) {
        size_t klen;
        const char *name = bl_json_object_key(f->header, i, &klen);
        const bl_json *entry = bl_json_object_at(f->header, i, NULL);
        if (klen == 12 && memcmp(name, "__metadata__", 12) == 0) {
            BL_TRY(parse_metadata(label, entry, &f->metadata));
            continue;
        }
        if (strlen(name) != klen) return terr(label, name, "name contains a NUL byte");
        st_slot *slot = &f->slots[f->count];
        slot->t.name = name;
        BL_TRY(parse_entry(label, name, entry, data_len, slot));
        f->count++;
    }
    qsort(f->slots, f->count, sizeof *f->slots, slot_by_offset);
    BL_TRY(check_tiling(f, data_len));
    for (size_t i = 0; i < f->count; i++) {
        /* Only now, with every range checked, are pointers into the data formed. */
        f->slots[i].t.data = data + f->slots[i].begin;
        f->by_name[i] = &f->slots[i];
    }
    qsort(f->by_name, f->count, sizeof *f->by_name, slot_by_name);
    return BL_OK;
}

static bl_status open_image(const void *data, size_t size, const char *label, void *owned,
                            bl_safetensors **out) {
    *out = NULL;
    bl_safetensors *f = calloc(1, sizeof *f);
    size_t llen = strlen(label);
    char *lcopy = malloc(llen + 1);
    if (!f || !lcopy) {
        free(f);
        free(lcopy);
        free(owned);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    }
    memcpy(lcopy, label, llen + 1);
    f->label = lcopy;
    f->owned = owned;
    bl_status s = parse_file(f, data, size);
    if (s != BL_OK) {
        bl_safetensors_close(f);
        return s;
    }
    *out = f;
    return BL_OK;
}

bl_status bl_safetensors_open_memory(const void *data, size_t size, const char *label, bl_safetensors **out) {
    if (!label) label = "(memory)";
    if (!data && size) {
        *out = NULL;
        return bl_error(BL_ERR_INVALID_ARG, "%s: NULL data", label);
    }
    return open_image(data ? data : "", size, label, NULL, out);
}

bl_status bl_safetensors_open(const char *path, bl_safetensors **out) {
    *out = NULL;
    void *data;
    size_t size;
    BL_TRY(bl_file_read_all(path, &data, &size));
    return open_image(data, size, path, data, out);
}

void bl_safetensors_close(bl_safetensors *f) {
    if (!f) return;
    bl_json_free(f->header);
    free(f->slots);
    free(f->by_name);
    free(f->owned);
    free(f->label);
    free(f);
}

const char *bl_safetensors_path(const bl_safetensors *f) { return f->label; }
size_t bl_safetensors_count(const bl_safetensors *f) { return f->count; }

const bl_st_tensor *bl_safetensors_at(const bl_safetensors *f, size_t i) {
    return i < f->count ? &f->slots[i].t : NULL;
}

const bl_st_tensor *bl_safetensors_find(const bl_safetensors *f, const char *name) {
    size_t lo = 0, hi = f->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->by_name[mid]->t.name, name);
        if (c == 0) return &f->by_name[mid]->t;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *bl_safetensors_metadata(const bl_safetensors *f, const char *key) {
    return bl_json_string(bl_json_object_get(f->metadata, key));
}

size_t bl_safetensors_metadata_count(const bl_safetensors *f) { return bl_json_len(f->metadata); }

const char *bl_safetensors_metadata_at(const bl_safetensors *f, size_t i, const char **value) {
    const char *key = NULL;
    const bl_json *v = bl_json_object_at(f->metadata, i, &key);
    if (value) *value = v ? bl_json_string(v) : NULL;
    return v ? key : NULL;
}

bl_status bl_safetensors_read_f32(const bl_safetensors *f, const char *name, int ndim, const int64_t *shape,
                                  float *dst) {
    char shown[160];
    const bl_st_tensor *t = bl_safetensors_find(f, name);
    if (!t)
        return bl_error(BL_ERR_NOT_FOUND, "%s: no tensor '%s'", f->label, show(name, shown, sizeof shown));
    if (ndim < 0 || ndim > BL_ST_MAX_DIMS || (ndim > 0 && !shape))
        return bl_error(BL_ERR_INVALID_ARG, "%s: tensor '%s': bad expected shape (ndim %d)", f->label,
                        show(name, shown, sizeof shown), ndim);
    bool same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char have[256], want[256];
        return terr(f->label, t->name, "shape %s does not match the model's %s",
                    fmt_shape(have, sizeof have, t->ndim, t->shape),
                    fmt_shape(want, sizeof want, ndim, shape));
    }
    const unsigned char *src = t->data;
    size_t n = t->nbytes / bl_dtype_size(t->dtype);
    switch (t->dtype) {
        case BL_F32:
            if (n) memcpy(dst, src, t->nbytes);
            return BL_OK;
        case BL_BF16:
        case BL_F16:
            for (size_t i = 0; i < n; i++) {
                uint16_t h;
                memcpy(&h, src + 2 * i, 2);
                dst[i] = t->dtype == BL_BF16 ? bl_bf16_to_f32(h) : bl_f16_to_f32(h);
            }
            return BL_OK;
        default: return terr(f->label, t->name, "dtype %s cannot be read as f32", st_code(t->dtype));
    }
}

/* ---- writing ---------------------------------------------------------------------------- */

typedef struct st_wentry {
    char *name;
    bl_dtype dtype;
    int ndim;
    int64_t shape[BL_ST_MAX_DIMS];
    void *data;
    size_t nbytes;
} st_wentry;

struct bl_safetensors_writer {
    st_wentry *entries;
    size_t count, cap;
    char **meta_keys, **meta_values;
    size_t meta_count, meta_cap;
};

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *r = malloc(n);
    if (r) memcpy(r, s, n);
    return r;
}

bl_status bl_safetensors_writer_new(bl_safetensors_writer **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return bl_error(BL_ERR_OUT_OF_MEMORY, "safetensors writer: out of memory");
    return BL_OK;
}

void bl_safetensors_writer_free(bl_safetensors_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->count; i++) {
        free(w->entries[i].name);
        free(w->entries[i].data);
    }
    for (size_t i = 0; i < w->meta_count; i++) {
        free(w->meta_keys[i]);
        free(w->meta_values[i]);
    }
    free(w->entries);
    free(w->meta_keys);
    free(w->meta_values);
    free(w);
}

static bl_status werr(const char *name, const char *what) {
    char shown[160];
    return bl_error(BL_ERR_INVALID_ARG, "safetensors writer: tensor '%s': %s",
                    name ? show(name, shown, sizeof shown) : "(null)", what);
}

bl_status bl_safetensors_writer_add(bl_safetensors_writer *w, const char *name, bl_dtype dtype, int ndim,
                                    const int64_t *shape, const void *data) {
    if (!name || !name[0]) return werr(name ? name : "", "the name is empty");
    if (strcmp(name, "__metadata__") == 0) return werr(name, "the name is reserved");
    if (!bl_json_utf8_valid(name, strlen(name))) return werr(name, "the name is not valid UTF-8");
    if (!st_code(dtype)) return werr(name, "unknown dtype");
    if (ndim < 0 || ndim > BL_ST_MAX_DIMS || (ndim > 0 && !shape))
        return werr(name, "ndim must be 0..8 with a shape");
    uint64_t elements = 1;
    bool overflow = false;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return werr(name, "a dimension is negative");
        uint64_t d = (uint64_t)shape[i];
        if (d != 0 && elements > UINT64_MAX / d) overflow = true;
        elements *= d;
    }
    if (elements != 0 && (overflow || elements > SIZE_MAX / 2 / bl_dtype_size(dtype)))
        return werr(name, "the shape is too large");
    size_t nbytes = (size_t)elements * bl_dtype_size(dtype);
    if (nbytes && !data) return werr(name, "data is NULL");
    for (size_t i = 0; i < w->count; i++)
        if (strcmp(w->entries[i].name, name) == 0) return werr(name, "the name is already used");
    if (w->count == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 16;
        st_wentry *e = realloc(w->entries, cap * sizeof *e);
        if (!e) return bl_error(BL_ERR_OUT_OF_MEMORY, "safetensors writer: out of memory");
        w->entries = e;
        w->cap = cap;
    }
    st_wentry *e = &w->entries[w->count];
    memset(e, 0, sizeof *e);
    e->name = dup_str(name);
    e->data = malloc(nbytes ? nbytes : 1);
    if (!e->name || !e->data) {
        free(e->name);
        free(e->data);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "safetensors writer: cannot copy %zu bytes of '%s'", nbytes,
                        name);
    }
    if (nbytes) memcpy(e->data, data, nbytes);
    e->dtype = dtype;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    e->nbytes = nbytes;
    w->count++;
    return BL_OK;
}

bl_status bl_safetensors_writer_set_metadata(bl_safetensors_writer *w, const char *key, const char *value) {
    if (!key || !value) return bl_error(BL_ERR_INVALID_ARG, "safetensors writer: NULL metadata");
    if (!bl_json_utf8_valid(key, strlen(key)) || !bl_json_utf8_valid(value, strlen(value)))
        return bl_error(BL_ERR_INVALID_ARG, "safetensors writer: metadata '%s' is not valid UTF-8", key);
    char *v = dup_str(value);
    if (!v) return bl_error(BL_ERR_OUT_OF_MEMORY, "safetensors writer: out of memory");
    for (size_t i = 0; i < w->meta_count; i++) {
        if (strcmp(w->meta_keys[i], key) == 0) {
            free(w->meta_values[i]);
            w->meta_values[i] = v;
            return BL_OK;
        }
    }
    if (w->meta_count == w->meta_cap) {
        size_t cap = w->meta_cap ? 2 * w->meta_cap : 8;
        char **k = realloc(w->meta_keys, cap * sizeof *k);
        if (k) w->meta_keys = k;
        char **vs = k ? realloc(w->meta_values, cap * sizeof *vs) : NULL;
        if (vs) w->meta_values = vs;
        if (!k || !vs) {
            free(v);
            return bl_error(BL_ERR_OUT_OF_MEMORY, "safetensors writer: out of memory");
        }
        w->meta_cap = cap;
    }
    char *k = dup_str(key);
    if (!k) {
        free(v);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "safetensors writer: out of memory");
    }
    w->meta_keys[w->meta_count] = k;
    w->meta_values[w->meta_count] = v;
    w->meta_count++;
    return BL_OK;
}

static int by_layout(const void *a, const void *b) {
    const st_wentry *x = *(const st_wentry *const *)a, *y = *(const st_wentry *const *)b;
    int rx = st_rank(x->dtype), ry = st_rank(y->dtype);
    if (rx != ry) return ry - rx;
    return strcmp(x->name, y->name);
}

typedef struct st_pair {
    const char *key, *value;
} st_pair;

static int by_key(const void *a, const void *b) {
    return strcmp(((const st_pair *)a)->key, ((const st_pair *)b)->key);
}

bl_status bl_safetensors_writer_serialize(const bl_safetensors_writer *w, void **data, size_t *size) {
    *data = NULL;
    *size = 0;
    const st_wentry **order = malloc((w->count ? w->count : 1) * sizeof *order);
    st_pair *meta = malloc((w->meta_count ? w->meta_count : 1) * sizeof *meta);
    bl_json_writer *j = NULL;
    bl_status s = BL_OK;
    if (!order || !meta) {
        s = bl_error(BL_ERR_OUT_OF_MEMORY, "safetensors writer: out of memory");
        goto done;
    }
    for (size_t i = 0; i < w->count; i++) order[i] = &w->entries[i];
    qsort(order, w->count, sizeof *order, by_layout);
    for (size_t i = 0; i < w->meta_count; i++) meta[i] = (st_pair){w->meta_keys[i], w->meta_values[i]};
    qsort(meta, w->meta_count, sizeof *meta, by_key);

    if ((s = bl_json_writer_new(&j)) != BL_OK) goto done;
    bl_json_write_begin_object(j);
    if (w->meta_count) {
        bl_json_write_key(j, "__metadata__");
        bl_json_write_begin_object(j);
        for (size_t i = 0; i < w->meta_count; i++) {
            bl_json_write_key(j, meta[i].key);
            bl_json_write_string(j, meta[i].value);
        }
        bl_json_write_end_object(j);
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < w->count; i++) {
        const st_wentry *e = order[i];
        bl_json_write_key(j, e->name);
        bl_json_write_begin_object(j);
        bl_json_write_key(j, "dtype");
        bl_json_write_string(j, st_code(e->dtype));
        bl_json_write_key(j, "shape");
        bl_json_write_begin_array(j);
        for (int d = 0; d < e->ndim; d++) bl_json_write_int(j, e->shape[d]);
        bl_json_write_end_array(j);
        bl_json_write_key(j, "data_offsets");
        bl_json_write_begin_array(j);
        bl_json_write_uint(j, offset);
        bl_json_write_uint(j, offset + e->nbytes);
        bl_json_write_end_array(j);
        bl_json_write_end_object(j);
        offset += e->nbytes;
    }
    bl_json_write_end_object(j);
    const char *header;
    size_t hlen;
    if ((s = bl_json_writer_finish(j, &header, &hlen)) != BL_OK) goto done;
    size_t padded = hlen + (8 - hlen % 8) % 8; /* the reference pads with spaces */
    if (padded > ST_MAX_HEADER || offset > SIZE_MAX - 8 - padded) {
        s = bl_error(BL_ERR_INVALID_ARG, "safetensors writer: file too large");
        goto done;
    }
    size_t total = 8 + padded + (size_t)offset;
    unsigned char *buf = malloc(total);
    if (!buf) {
        s = bl_error(BL_ERR_OUT_OF_MEMORY, "safetensors writer: cannot allocate %zu bytes", total);
        goto done;
    }
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(buf + 8, header, hlen);
    memset(buf + 8 + hlen, ' ', padded - hlen);
    unsigned char *p = buf + 8 + padded;
    for (size_t i = 0; i < w->count; i++) {
        if (order[i]->nbytes) memcpy(p, order[i]->data, order[i]->nbytes);
        p += order[i]->nbytes;
    }
    *data = buf;
    *size = total;
done:
    bl_json_writer_free(j);
    free(order);
    free(meta);
    return s;
}

bl_status bl_safetensors_writer_commit(const bl_safetensors_writer *w, const char *path) {
    void *data;
    size_t size;
    bl_status s = bl_safetensors_writer_serialize(w, &data, &size);
    if (s != BL_OK) return bl_error_context(s, "%s", path);
    s = bl_file_write_atomic(path, data, size);
    free(data);
    return s;
}
