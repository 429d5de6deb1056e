/* Element lists: a materialized PCollection as encoded elements packed into one buffer with an
 * offset table, so bundles are zero-copy windows and a list ships between processes as one
 * message. */
#include <stdlib.h>
#include <string.h>

#include "pipeline/internal.h"

bl_status bl_elist_push(bl_elist *l, const void *data, size_t size) {
    if (l->n + 2 > l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        size_t *o = realloc(l->offs, cap * sizeof *o);
        if (!o) return bl_error(BL_ERR_OUT_OF_MEMORY, "element list of %zu", cap);
        l->offs = o;
        l->cap = cap;
        if (l->n == 0) l->offs[0] = 0;
    }
    BL_TRY(bl_buf_append(&l->data, data, size));
    l->offs[++l->n] = l->data.len;
    return BL_OK;
}

bl_status bl_elist_append_view(bl_elist *l, bl_eview v) {
    for (size_t i = 0; i < v.n; i++) {
        size_t size;
        const uint8_t *d = bl_eview_at(v, i, &size);
        BL_TRY(bl_elist_push(l, d, size));
    }
    return BL_OK;
}

void bl_elist_free(bl_elist *l) {
    bl_buf_free(&l->data);
    free(l->offs);
    memset(l, 0, sizeof *l);
}

bl_eview bl_elist_view(const bl_elist *l, size_t begin, size_t end) {
    static const size_t zero = 0;
    bl_eview v = {l->data.data, l->offs ? l->offs + begin : &zero, end - begin};
    return v;
}

/* varint n, then n sizes as varints, then the bytes. */
bl_status bl_elist_serialize(bl_eview v, bl_buf *out) {
    BL_TRY(bl_buf_put_varint(out, v.n));
    for (size_t i = 0; i < v.n; i++) BL_TRY(bl_buf_put_varint(out, v.offs[i + 1] - v.offs[i]));
    if (v.n) BL_TRY(bl_buf_append(out, v.base + v.offs[0], v.offs[v.n] - v.offs[0]));
    return BL_OK;
}

bl_status bl_elist_deserialize(const uint8_t *data, size_t size, size_t *pos, bl_elist *out) {
    memset(out, 0, sizeof *out);
    uint64_t n = 0;
    BL_TRY(bl_read_varint(data, size, pos, &n));
    if (n > size) return bl_error(BL_ERR_FORMAT, "element list claims %llu elements", (unsigned long long)n);
    size_t *sizes = malloc((n + 1) * sizeof *sizes);
    if (!sizes) return bl_error(BL_ERR_OUT_OF_MEMORY, "element list");
    bl_status s = BL_OK;
    for (size_t i = 0; i < n && s == BL_OK; i++) {
        uint64_t sz;
        s = bl_read_varint(data, size, pos, &sz);
        sizes[i] = (size_t)sz;
    }
    for (size_t i = 0; i < n && s == BL_OK; i++) {
        if (sizes[i] > size - *pos) {
            s = bl_error(BL_ERR_FORMAT, "element list truncated");
            break;
        }
        s = bl_elist_push(out, data + *pos, sizes[i]);
        *pos += sizes[i];
    }
    free(sizes);
    if (s != BL_OK) bl_elist_free(out);
    return s;
}
