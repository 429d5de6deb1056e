/* Coders: every element crosses stage and process boundaries as bytes, so every PCollection has
 * one. Built-in encodings are self-delimiting (length or varint prefixes) so composite coders
 * can concatenate them, and the bytes of a KV's key are a prefix of the KV's bytes, which is
 * what GroupByKey compares. */
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/internal.h"

/* ---- buffers ---------------------------------------------------------------------------- */

static bl_status buf_reserve(bl_buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return BL_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra) cap *= 2;
    uint8_t *d = realloc(b->data, cap);
    if (!d) return bl_error(BL_ERR_OUT_OF_MEMORY, "cannot grow buffer to %zu bytes", cap);
    b->data = d;
    b->cap = cap;
    return BL_OK;
}

bl_status bl_buf_append(bl_buf *b, const void *data, size_t n) {
    BL_TRY(buf_reserve(b, n + 1));
    if (n) memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = 0; /* keeps text NUL-terminated for free; not counted */
    return BL_OK;
}

bl_status bl_buf_printf(bl_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return bl_error(BL_ERR_INVALID_ARG, "bad format");
    BL_TRY(buf_reserve(b, (size_t)n + 1));
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return BL_OK;
}

bl_status bl_buf_put_varint(bl_buf *b, uint64_t v) {
    uint8_t tmp[10];
    size_t n = 0;
    do {
        uint8_t byte = v & 0x7f;
        v >>= 7;
        tmp[n++] = byte | (v ? 0x80 : 0);
    } while (v);
    return bl_buf_append(b, tmp, n);
}

bl_status bl_read_varint(const uint8_t *data, size_t size, size_t *pos, uint64_t *v) {
    uint64_t r = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*pos >= size) return bl_error(BL_ERR_FORMAT, "truncated varint at byte %zu", *pos);
        uint8_t byte = data[(*pos)++];
        r |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *v = r;
            return BL_OK;
        }
    }
    return bl_error(BL_ERR_FORMAT, "varint longer than 10 bytes at byte %zu", *pos);
}

void bl_buf_free(bl_buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* ---- the coder object ------------------------------------------------------------------- */

struct bl_coder {
    bl_coder_fns fns;
    const bl_coder *a, *b; /* parts of kv (a, b) and iterable (a) */
    char name[160];
    bool is_static;
};

bl_status bl_coder_new(const bl_coder_fns *fns, bl_coder **out) {
    *out = NULL;
    if (!fns || !fns->encode || !fns->decode || !fns->free_value)
        return bl_error(BL_ERR_INVALID_ARG, "coder needs encode, decode and free_value");
    bl_coder *c = calloc(1, sizeof *c);
    if (!c) return bl_error(BL_ERR_OUT_OF_MEMORY, "coder");
    c->fns = *fns;
    snprintf(c->name, sizeof c->name, "%s", fns->name ? fns->name : "custom");
    *out = c;
    return BL_OK;
}

void bl_coder_free(bl_coder *coder) {
    if (coder && !coder->is_static) free(coder);
}

const char *bl_coder_name(const bl_coder *c) { return c ? c->name : "(null)"; }
bool bl_coder_is_deterministic(const bl_coder *c) { return c && c->fns.deterministic; }

bl_status bl_coder_encode(const bl_coder *c, const void *value, bl_buf *out) {
    size_t before = out->len;
    bl_status s = c->fns.encode(value, out, c->fns.user);
    if (s != BL_OK) {
        out->len = before;
        return bl_error_context(s, "coder '%s' cannot encode", c->name);
    }
    return BL_OK;
}

bl_status bl_coder_decode_at(const bl_coder *c, const uint8_t *data, size_t size, size_t *pos, void **value) {
    *value = NULL;
    bl_status s = c->fns.decode(data, size, pos, value, c->fns.user);
    if (s != BL_OK) return bl_error_context(s, "coder '%s' cannot decode", c->name);
    return BL_OK;
}

bl_status bl_coder_decode(const bl_coder *c, const uint8_t *data, size_t size, void **value) {
    size_t pos = 0;
    BL_TRY(bl_coder_decode_at(c, data, size, &pos, value));
    if (pos != size) {
        bl_coder_free_value(c, *value);
        *value = NULL;
        return bl_error(BL_ERR_FORMAT, "coder '%s': %zu trailing bytes after the element", c->name,
                        size - pos);
    }
    return BL_OK;
}

void bl_coder_free_value(const bl_coder *c, void *value) {
    if (value) c->fns.free_value(value, c->fns.user);
}

static bl_status json_string(const char *s, size_t n, bl_buf *out) {
    BL_TRY(bl_buf_append(out, "\"", 1));
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            char e[2] = {'\\', (char)ch};
            BL_TRY(bl_buf_append(out, e, 2));
        } else if (ch == '\n') {
            BL_TRY(bl_buf_append(out, "\\n", 2));
        } else if (ch < 0x20) {
            BL_TRY(bl_buf_printf(out, "\\u%04x", ch));
        } else {
            BL_TRY(bl_buf_append(out, &s[i], 1));
        }
    }
    return bl_buf_append(out, "\"", 1);
}

bl_status bl_coder_to_json(const bl_coder *c, const void *value, bl_buf *out) {
    if (c->fns.to_json) return c->fns.to_json(value, out, c->fns.user);
    bl_buf tmp = {0};
    bl_status s = bl_coder_encode(c, value, &tmp);
    if (s == BL_OK) s = bl_buf_append(out, "\"", 1);
    for (size_t i = 0; s == BL_OK && i < tmp.len; i++) s = bl_buf_printf(out, "%02x", tmp.data[i]);
    if (s == BL_OK) s = bl_buf_append(out, "\"", 1);
    bl_buf_free(&tmp);
    return s;
}

/* ---- built-in coders -------------------------------------------------------------------- */

static bl_status need(size_t size, size_t pos, uint64_t n, const char *what) {
    if (n > size || pos > size - n)
        return bl_error(BL_ERR_FORMAT, "truncated %s: need %llu bytes at byte %zu of %zu", what,
                        (unsigned long long)n, pos, size);
    return BL_OK;
}

static bl_status bytes_encode(const void *v, bl_buf *out, void *u) {
    (void)u;
    const bl_bytes *b = v;
    BL_TRY(bl_buf_put_varint(out, b->size));
    return bl_buf_append(out, b->data, b->size);
}
static bl_status bytes_decode(const uint8_t *d, size_t size, size_t *pos, void **v, void *u) {
    (void)u;
    uint64_t n = 0;
    BL_TRY(bl_read_varint(d, size, pos, &n));
    BL_TRY(need(size, *pos, n, "bytes"));
    bl_bytes *b = malloc(sizeof *b + n + 1);
    if (!b) return bl_error(BL_ERR_OUT_OF_MEMORY, "bytes of %llu", (unsigned long long)n);
    b->size = n;
    b->data = (uint8_t *)(b + 1);
    memcpy(b->data, d + *pos, n);
    b->data[n] = 0;
    *pos += n;
    *v = b;
    return BL_OK;
}
static void plain_free(void *v, void *u) {
    (void)u;
    free(v);
}
static bl_status bytes_json(const void *v, bl_buf *out, void *u) {
    (void)u;
    const bl_bytes *b = v;
    BL_TRY(bl_buf_append(out, "\"", 1));
    for (size_t i = 0; i < b->size; i++) BL_TRY(bl_buf_printf(out, "%02x", b->data[i]));
    return bl_buf_append(out, "\"", 1);
}

static bl_status string_encode(const void *v, bl_buf *out, void *u) {
    (void)u;
    const char *s = v;
    size_t n = strlen(s);
    BL_TRY(bl_buf_put_varint(out, n));
    return bl_buf_append(out, s, n);
}
static bl_status string_decode(const uint8_t *d, size_t size, size_t *pos, void **v, void *u) {
    (void)u;
    uint64_t n = 0;
    BL_TRY(bl_read_varint(d, size, pos, &n));
    BL_TRY(need(size, *pos, n, "string"));
    if (memchr(d + *pos, 0, n)) return bl_error(BL_ERR_FORMAT, "string holds a NUL byte");
    char *s = malloc(n + 1);
    if (!s) return bl_error(BL_ERR_OUT_OF_MEMORY, "string of %llu", (unsigned long long)n);
    memcpy(s, d + *pos, n);
    s[n] = 0;
    *pos += n;
    *v = s;
    return BL_OK;
}
static bl_status string_json(const void *v, bl_buf *out, void *u) {
    (void)u;
    return json_string(v, strlen(v), out);
}

static bl_status int64_encode(const void *v, bl_buf *out, void *u) {
    (void)u;
    int64_t x = *(const int64_t *)v;
    return bl_buf_put_varint(out, ((uint64_t)x << 1) ^ (uint64_t)(x >> 63)); /* zigzag */
}
static bl_status int64_decode(const uint8_t *d, size_t size, size_t *pos, void **v, void *u) {
    (void)u;
    uint64_t z = 0;
    BL_TRY(bl_read_varint(d, size, pos, &z));
    int64_t *x = malloc(sizeof *x);
    if (!x) return bl_error(BL_ERR_OUT_OF_MEMORY, "int64");
    *x = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
    *v = x;
    return BL_OK;
}
static bl_status int64_json(const void *v, bl_buf *out, void *u) {
    (void)u;
    return bl_buf_printf(out, "%lld", (long long)*(const int64_t *)v);
}

static bl_status double_encode(const void *v, bl_buf *out, void *u) {
    (void)u;
    uint64_t bits;
    memcpy(&bits, v, 8);
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(bits >> (56 - 8 * i)); /* big endian */
    return bl_buf_append(out, b, 8);
}
static bl_status double_decode(const uint8_t *d, size_t size, size_t *pos, void **v, void *u) {
    (void)u;
    BL_TRY(need(size, *pos, 8, "double"));
    uint64_t bits = 0;
    for (int i = 0; i < 8; i++) bits = (bits << 8) | d[*pos + i];
    *pos += 8;
    double *x = malloc(sizeof *x);
    if (!x) return bl_error(BL_ERR_OUT_OF_MEMORY, "double");
    memcpy(x, &bits, 8);
    *v = x;
    return BL_OK;
}
static bl_status double_json(const void *v, bl_buf *out, void *u) {
    (void)u;
    return bl_buf_printf(out, "%.17g", *(const double *)v);
}

static bl_coder coder_bytes = {
    {"bytes", true, bytes_encode, bytes_decode, plain_free, bytes_json, NULL}, NULL, NULL, "bytes", true};
static bl_coder coder_string = {{"string", true, string_encode, string_decode, plain_free, string_json, NULL},
                                NULL,
                                NULL,
                                "string",
                                true};
static bl_coder coder_int64 = {
    {"int64", true, int64_encode, int64_decode, plain_free, int64_json, NULL}, NULL, NULL, "int64", true};
static bl_coder coder_double = {
    {"double", false, double_encode, double_decode, plain_free, double_json, NULL},
    NULL,
    NULL,
    "double",
    true};

const bl_coder *bl_coder_bytes(void) { return &coder_bytes; }
const bl_coder *bl_coder_string(void) { return &coder_string; }
const bl_coder *bl_coder_int64(void) { return &coder_int64; }
const bl_coder *bl_coder_double(void) { return &coder_double; }

/* ---- composite coders: user points at the coder itself ---------------------------------- */

static bl_status kv_encode(const void *v, bl_buf *out, void *u) {
    const bl_coder *c = u;
    const bl_kv *kv = v;
    BL_TRY(bl_coder_encode(c->a, kv->key, out));
    return bl_coder_encode(c->b, kv->value, out);
}
static bl_status kv_decode(const uint8_t *d, size_t size, size_t *pos, void **v, void *u) {
    const bl_coder *c = u;
    bl_kv *kv = calloc(1, sizeof *kv);
    if (!kv) return bl_error(BL_ERR_OUT_OF_MEMORY, "kv");
    bl_status s = bl_coder_decode_at(c->a, d, size, pos, &kv->key);
    if (s == BL_OK) s = bl_coder_decode_at(c->b, d, size, pos, &kv->value);
    if (s != BL_OK) {
        bl_coder_free_value(c->a, kv->key);
        free(kv);
        return s;
    }
    *v = kv;
    return BL_OK;
}
static void kv_free(void *v, void *u) {
    const bl_coder *c = u;
    bl_kv *kv = v;
    bl_coder_free_value(c->a, kv->key);
    bl_coder_free_value(c->b, kv->value);
    free(kv);
}
static bl_status kv_json(const void *v, bl_buf *out, void *u) {
    const bl_coder *c = u;
    const bl_kv *kv = v;
    BL_TRY(bl_buf_append(out, "[", 1));
    BL_TRY(bl_coder_to_json(c->a, kv->key, out));
    BL_TRY(bl_buf_append(out, ", ", 2));
    BL_TRY(bl_coder_to_json(c->b, kv->value, out));
    return bl_buf_append(out, "]", 1);
}

static bl_status iter_encode(const void *v, bl_buf *out, void *u) {
    const bl_coder *c = u;
    const bl_iter *it = v;
    BL_TRY(bl_buf_put_varint(out, it->n));
    for (size_t i = 0; i < it->n; i++) BL_TRY(bl_coder_encode(c->a, it->items[i], out));
    return BL_OK;
}
static void iter_free(void *v, void *u) {
    const bl_coder *c = u;
    bl_iter *it = v;
    for (size_t i = 0; i < it->n; i++) bl_coder_free_value(c->a, it->items[i]);
    free(it->items);
    free(it);
}
static bl_status iter_decode(const uint8_t *d, size_t size, size_t *pos, void **v, void *u) {
    const bl_coder *c = u;
    uint64_t n = 0;
    BL_TRY(bl_read_varint(d, size, pos, &n));
    if (n > size - *pos + 1)
        return bl_error(BL_ERR_FORMAT, "iterable claims %llu items in %zu bytes", (unsigned long long)n,
                        size - *pos);
    bl_iter *it = calloc(1, sizeof *it);
    if (!it || !(it->items = calloc(n ? n : 1, sizeof *it->items))) {
        free(it);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "iterable of %llu", (unsigned long long)n);
    }
    for (; it->n < n; it->n++) {
        bl_status s = bl_coder_decode_at(c->a, d, size, pos, &it->items[it->n]);
        if (s != BL_OK) {
            iter_free(it, u);
            return s;
        }
    }
    *v = it;
    return BL_OK;
}
static bl_status iter_json(const void *v, bl_buf *out, void *u) {
    const bl_coder *c = u;
    const bl_iter *it = v;
    BL_TRY(bl_buf_append(out, "[", 1));
    for (size_t i = 0; i < it->n; i++) {
        if (i) BL_TRY(bl_buf_append(out, ", ", 2));
        BL_TRY(bl_coder_to_json(c->a, it->items[i], out));
    }
    return bl_buf_append(out, "]", 1);
}

/* Interned so pipelines can compare coders by pointer and nobody has to free them. */
static pthread_mutex_t intern_lock = PTHREAD_MUTEX_INITIALIZER;
static bl_coder *interned[256];
static int n_interned;

static const bl_coder *intern(int is_kv, const bl_coder *a, const bl_coder *b) {
    if (!a || (is_kv && !b)) {
        bl_error(BL_ERR_INVALID_ARG, "composite coder built from a NULL coder");
        return NULL;
    }
    pthread_mutex_lock(&intern_lock);
    bl_coder *found = NULL;
    for (int i = 0; i < n_interned && !found; i++) {
        bl_coder *c = interned[i];
        if (c->a == a && c->b == b && (c->fns.encode == kv_encode) == (is_kv != 0)) found = c;
    }
    if (!found && n_interned < 256 && (found = calloc(1, sizeof *found))) {
        found->a = a;
        found->b = b;
        found->fns.user = found;
        found->fns.free_value = is_kv ? kv_free : iter_free;
        found->fns.encode = is_kv ? kv_encode : iter_encode;
        found->fns.decode = is_kv ? kv_decode : iter_decode;
        found->fns.to_json = is_kv ? kv_json : iter_json;
        found->fns.deterministic = a->fns.deterministic && (!is_kv || b->fns.deterministic);
        if (is_kv)
            snprintf(found->name, sizeof found->name, "kv<%.70s, %.70s>", a->name, b->name);
        else
            snprintf(found->name, sizeof found->name, "iterable<%.140s>", a->name);
        found->fns.name = found->name;
        found->is_static = true;
        interned[n_interned++] = found;
    }
    pthread_mutex_unlock(&intern_lock);
    if (!found) bl_error(BL_ERR_OUT_OF_MEMORY, "no room for another composite coder");
    return found;
}

const bl_coder *bl_coder_kv(const bl_coder *key, const bl_coder *value) { return intern(1, key, value); }
const bl_coder *bl_coder_iterable(const bl_coder *item) { return intern(0, item, NULL); }
const bl_coder *bl_coder_key(const bl_coder *c) { return c && c->fns.encode == kv_encode ? c->a : NULL; }
const bl_coder *bl_coder_value(const bl_coder *c) { return c && c->fns.encode == kv_encode ? c->b : NULL; }
const bl_coder *bl_coder_item(const bl_coder *c) { return c && c->fns.encode == iter_encode ? c->a : NULL; }

bl_status bl_kv_key_len(const bl_coder *kv, const uint8_t *data, size_t size, size_t *len) {
    const bl_coder *k = bl_coder_key(kv);
    if (!k) return bl_error(BL_ERR_INVALID_ARG, "coder '%s' is not a kv coder", bl_coder_name(kv));
    void *key = NULL;
    size_t pos = 0;
    BL_TRY(bl_coder_decode_at(k, data, size, &pos, &key));
    bl_coder_free_value(k, key);
    *len = pos;
    return BL_OK;
}
