/* The primitive cache, the user-managed scratchpad and the blocked-weights cache.
 *
 * Lookups are a linear scan over a few dozen entries (one per distinct op and shape in a
 * model), far cheaper than the primitives they guard. Entries live until the handle closes. */
#include <stdlib.h>
#include <string.h>

#include "backends/cpu_onednn/onednn.h"
#include "backends/host/host_buffer.h"

onednn_prim *onednn_prim_find(onednn_ctx *c, const onednn_key *key) {
    for (int i = 0; i < c->nprims; i++)
        if (memcmp(&c->prims[i].key, key, sizeof *key) == 0) return &c->prims[i];
    return NULL;
}

bl_status onednn_prim_add(onednn_ctx *c, const onednn_key *key, onednn_prim **out) {
    if (c->nprims == c->cap_prims) {
        int cap = c->cap_prims ? 2 * c->cap_prims : 64;
        onednn_prim *grown = realloc(c->prims, sizeof *grown * (size_t)cap);
        if (!grown) return bl_error(BL_ERR_OUT_OF_MEMORY, "onednn: primitive cache");
        c->prims = grown;
        c->cap_prims = cap;
    }
    onednn_prim *e = &c->prims[c->nprims];
    memset(e, 0, sizeof *e);
    e->key = *key;
    *out = e;
    return BL_OK;
}

/* Undoes a half-built entry so a failed build leaves the cache as it was. */
static void prim_discard(onednn_prim *e) {
    for (int a = 0; a < e->nargs; a++) dnnl_memory_destroy(e->args[a].memory);
    if (e->prim) dnnl_primitive_destroy(e->prim);
    if (e->pd) dnnl_primitive_desc_destroy(e->pd);
    memset(e, 0, sizeof *e);
}

/* The scratchpad that pd's descriptor asks for: a memory object (created with no data; each
 * run points it at the handle's shared buffer) and the shared buffer grown to hold it. The
 * size is the descriptor's, never an estimate: oneDNN plans the scratchpad per implementation
 * and thread count, and writes all of it. *mem stays NULL when none is needed. */
static bl_status scratch_arg(onednn_ctx *c, const_dnnl_primitive_desc_t pd, dnnl_memory_t *mem, size_t *bytes,
                             const char *op) {
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    *mem = NULL;
    *bytes = smd ? dnnl_memory_desc_get_size(smd) : 0;
    if (*bytes == 0) return BL_OK;
    DNNL_CHECK(dnnl_memory_create(mem, smd, c->engine, DNNL_MEMORY_NONE), op);
    /* Rounded to 64 bytes (the scratchpad's own granularity) so that the largest user's part
     * ends exactly at the buffer's end, where the guard page is. */
    size_t rounded = (*bytes + 63) & ~(size_t)63;
    c->scratch = bl_host_buffer_grow(c->scratch, &c->scratch_bytes, rounded);
    if (!c->scratch) {
        dnnl_memory_destroy(*mem);
        *mem = NULL;
        return bl_error(BL_ERR_OUT_OF_MEMORY, "onednn %s: scratchpad of %zu bytes", op, *bytes);
    }
    return BL_OK;
}

/* The part of the shared scratchpad a user of `bytes` binds: the tail, so that with guard pages
 * an overrun of this user's own scratchpad faults, not only one past the largest user's. */
static void *scratch_for(onednn_ctx *c, size_t bytes) {
    return bl_host_buffer_tail(c->scratch, c->scratch_bytes, bytes);
}

bl_status onednn_prim_finish(onednn_ctx *c, onednn_prim *e, int nargs, const int *arg_ids, const char *op) {
    e->nargs = 0;
    dnnl_status_t st = dnnl_primitive_create(&e->prim, e->pd);
    for (int a = 0; st == dnnl_success && a < nargs; a++) {
        const dnnl_memory_desc_t *md =
            dnnl_primitive_desc_query_md(e->pd, dnnl_query_exec_arg_md, arg_ids[a]);
        if (!md) {
            prim_discard(e);
            return bl_error(BL_ERR_INTERNAL, "onednn %s: no memory descriptor for argument %d", op,
                            arg_ids[a]);
        }
        st = dnnl_memory_create(&e->args[a].memory, md, c->engine, DNNL_MEMORY_NONE);
        e->arg_bytes[a] = dnnl_memory_desc_get_size(md);
        if (st == dnnl_success) e->args[e->nargs++].arg = arg_ids[a];
    }
    if (st != dnnl_success) {
        prim_discard(e);
        return bl_error(BL_ERR_DEVICE, "onednn %s: creating the primitive failed (%s)", op,
                        onednn_status_name(st));
    }
    /* The scratchpad memory is one more argument, pointed at the shared buffer per run. */
    dnnl_memory_t smem;
    bl_status s = scratch_arg(c, e->pd, &smem, &e->scratch_bytes, op);
    if (s != BL_OK) {
        prim_discard(e);
        return s;
    }
    if (smem) {
        e->args[e->nargs].memory = smem;
        e->arg_bytes[e->nargs] = e->scratch_bytes;
        e->args[e->nargs++].arg = DNNL_ARG_SCRATCHPAD;
    }
    c->nprims++;
    c->created++;
    return BL_OK;
}

bl_status onednn_prim_bind(onednn_prim *e, int arg_id, const void *data, size_t bytes, const char *op) {
    for (int a = 0; a < e->nargs; a++)
        if (e->args[a].arg == arg_id) {
            if (bytes < e->arg_bytes[a])
                return bl_error(BL_ERR_INTERNAL,
                                "onednn %s: argument %d touches %zu bytes, its buffer has %zu", op, arg_id,
                                e->arg_bytes[a], bytes);
            DNNL_CHECK(dnnl_memory_set_data_handle(e->args[a].memory, (void *)data), op);
            return BL_OK;
        }
    return bl_error(BL_ERR_INTERNAL, "onednn %s: primitive has no argument %d", op, arg_id);
}

bl_status onednn_prim_run(onednn_ctx *c, onednn_prim *e, const char *op) {
    if (e->scratch_bytes > 0)
        BL_TRY(
            onednn_prim_bind(e, DNNL_ARG_SCRATCHPAD, scratch_for(c, e->scratch_bytes), e->scratch_bytes, op));
    DNNL_CHECK(dnnl_primitive_execute(e->prim, c->stream, e->nargs, e->args), op);
    return BL_OK;
}

bl_status onednn_reorder_init(onednn_ctx *c, onednn_reorder *r, const dnnl_memory_desc_t *from,
                              const dnnl_memory_desc_t *to, const char *op) {
    memset(r, 0, sizeof *r);
    dnnl_primitive_attr_t attr;
    DNNL_CHECK(dnnl_primitive_attr_create(&attr), op);
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_status_t st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (st == dnnl_success)
        st = dnnl_reorder_primitive_desc_create(&rpd, from, c->engine, to, c->engine, attr);
    dnnl_primitive_attr_destroy(attr);
    if (st == dnnl_unimplemented)
        return bl_error(BL_ERR_UNSUPPORTED, "onednn %s: no reorder between these formats", op);
    DNNL_CHECK(st, op);
    st = dnnl_primitive_create(&r->prim, rpd);
    bl_status s = st == dnnl_success ? scratch_arg(c, rpd, &r->scratch, &r->scratch_bytes, op) : BL_OK;
    dnnl_primitive_desc_destroy(rpd);
    if (st == dnnl_success) st = dnnl_memory_create(&r->from, from, c->engine, DNNL_MEMORY_NONE);
    if (st == dnnl_success) st = dnnl_memory_create(&r->to, to, c->engine, DNNL_MEMORY_NONE);
    if (st != dnnl_success || s != BL_OK) {
        onednn_reorder_destroy(r);
        if (s != BL_OK) return s;
        return bl_error(BL_ERR_DEVICE, "onednn %s: reorder (%s)", op, onednn_status_name(st));
    }
    c->created++;
    return BL_OK;
}

bl_status onednn_reorder_run(onednn_ctx *c, onednn_reorder *r, const void *from, void *to, const char *op) {
    DNNL_CHECK(dnnl_memory_set_data_handle(r->from, (void *)from), op);
    DNNL_CHECK(dnnl_memory_set_data_handle(r->to, to), op);
    dnnl_exec_arg_t args[3] = {
        {DNNL_ARG_FROM, r->from}, {DNNL_ARG_TO, r->to}, {DNNL_ARG_SCRATCHPAD, r->scratch}};
    if (r->scratch) DNNL_CHECK(dnnl_memory_set_data_handle(r->scratch, scratch_for(c, r->scratch_bytes)), op);
    DNNL_CHECK(dnnl_primitive_execute(r->prim, c->stream, r->scratch ? 3 : 2, args), op);
    return BL_OK;
}

void onednn_reorder_destroy(onednn_reorder *r) {
    if (r->prim) dnnl_primitive_destroy(r->prim);
    if (r->from) dnnl_memory_destroy(r->from);
    if (r->to) dnnl_memory_destroy(r->to);
    if (r->scratch) dnnl_memory_destroy(r->scratch);
    memset(r, 0, sizeof *r);
}

bl_status onednn_md4(dnnl_memory_desc_t *md, const int64_t *shape, const char *op) {
    dnnl_dims_t dims = {shape[0], shape[1], shape[2], shape[3]};
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, dnnl_nhwc), op);
    return BL_OK;
}

bl_status onednn_md_plain(dnnl_memory_desc_t *md, int ndims, const int64_t *dims, const char *op) {
    dnnl_dims_t d = {0};
    for (int i = 0; i < ndims; i++) d[i] = dims[i];
    dnnl_format_tag_t tag = ndims == 1 ? dnnl_a : ndims == 2 ? dnnl_ab : dnnl_abcd;
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(md, ndims, d, dnnl_f32, tag), op);
    return BL_OK;
}

/* ---- blocked weights ------------------------------------------------------------------- */

void onednn_note_write(onednn_ctx *c, const void *ptr, size_t bytes) {
    const char *lo = ptr, *hi = lo + bytes;
    for (int i = 0; i < c->nweights; i++) {
        onednn_weights *w = &c->weights[i];
        const char *wlo = w->src, *whi = wlo + w->src_bytes;
        if (w->valid && lo < whi && wlo < hi) w->valid = false;
    }
}

static void weights_destroy(onednn_weights *w) {
    onednn_reorder_destroy(&w->first);
    onednn_reorder_destroy(&w->via);
    bl_host_buffer_free(w->mid);
    bl_host_buffer_free(w->buf);
}

void onednn_note_free(onednn_ctx *c, const void *ptr, size_t bytes) {
    const char *lo = ptr, *hi = lo + bytes;
    for (int i = 0; i < c->nweights;) {
        onednn_weights *w = &c->weights[i];
        const char *wlo = w->src, *whi = wlo + w->src_bytes;
        if (w->src && lo < whi && wlo < hi) {
            /* The source is gone: so is its copy (a model freed and built again must not grow
             * the cache). */
            weights_destroy(w);
            c->weights[i] = c->weights[--c->nweights];
        } else {
            i++;
        }
    }
}

void onednn_weights_release_all(onednn_ctx *c) {
    for (int i = 0; i < c->nweights; i++) weights_destroy(&c->weights[i]);
    c->nweights = 0;
}

static onednn_weights *weights_find(onednn_ctx *c, const void *src, const dnnl_memory_desc_t *src_md,
                                    const dnnl_memory_desc_t *dst_md) {
    for (int i = 0; i < c->nweights; i++) {
        onednn_weights *w = &c->weights[i];
        if (w->src == src && dnnl_memory_desc_equal(&w->src_md, src_md) &&
            dnnl_memory_desc_equal(&w->dst_md, dst_md))
            return w;
    }
    return NULL;
}

static bl_status weights_add(onednn_ctx *c, const void *src, const dnnl_memory_desc_t *src_md,
                             const dnnl_memory_desc_t *dst_md, const char *op, onednn_weights **out) {
    if (c->nweights == c->cap_weights) {
        int cap = c->cap_weights ? 2 * c->cap_weights : 64;
        onednn_weights *grown = realloc(c->weights, sizeof *grown * (size_t)cap);
        if (!grown) return bl_error(BL_ERR_OUT_OF_MEMORY, "onednn %s: weights cache", op);
        c->weights = grown;
        c->cap_weights = cap;
    }
    onednn_weights *w = &c->weights[c->nweights];
    memset(w, 0, sizeof *w);
    w->src = src;
    w->src_bytes = dnnl_memory_desc_get_size(src_md);
    w->src_md = *src_md;
    w->dst_md = *dst_md;
    /* The blocked layout's size, padding included (a 4-channel weight in Acdb8a holds 8). */
    size_t bytes = dnnl_memory_desc_get_size(dst_md);
    w->buf = bl_host_buffer_alloc(bytes);
    if (!w->buf) return bl_error(BL_ERR_OUT_OF_MEMORY, "onednn %s: %zu bytes for blocked weights", op, bytes);
    bl_status s = onednn_reorder_init(c, &w->first, src_md, dst_md, op);
    if (s == BL_ERR_UNSUPPORTED && src_md->ndims == 4) {
        /* Two steps: OHWI -> OIHW in `first`, OIHW -> dst_md in `via`. */
        bl_clear_error();
        dnnl_memory_desc_t mid_md;
        s = dnnl_memory_desc_init_by_tag(&mid_md, 4, src_md->dims, dnnl_f32, dnnl_abcd) == dnnl_success
                ? BL_OK
                : bl_error(BL_ERR_DEVICE, "onednn %s: plain weight descriptor", op);
        size_t mid_bytes = dnnl_memory_desc_get_size(&mid_md);
        if (s == BL_OK) {
            w->mid = bl_host_buffer_alloc(mid_bytes);
            if (!w->mid)
                s = bl_error(BL_ERR_OUT_OF_MEMORY, "onednn %s: %zu bytes for plain weights", op, mid_bytes);
        }
        if (s == BL_OK) s = onednn_reorder_init(c, &w->via, &mid_md, dst_md, op);
        if (s == BL_OK) s = onednn_reorder_init(c, &w->first, src_md, &mid_md, op);
    }
    if (s != BL_OK) {
        weights_destroy(w);
        return bl_error_context(s, "weight reorder");
    }
    c->nweights++;
    c->created++;
    *out = w;
    return BL_OK;
}

bl_status onednn_weights_get(onednn_ctx *c, const void *src, const dnnl_memory_desc_t *src_md,
                             const dnnl_memory_desc_t *dst_md, bool cache, void **out, const char *op) {
    if (dnnl_memory_desc_equal(src_md, dst_md)) {
        *out = (void *)src;
        return BL_OK;
    }
    /* Uncached requests share one slot per format (keyed by a NULL source), so training
     * steps reuse the reorder and its buffer without keeping a copy per weight. */
    const void *key = cache ? src : NULL;
    onednn_weights *w = weights_find(c, key, src_md, dst_md);
    if (!w) BL_TRY(weights_add(c, key, src_md, dst_md, op, &w));
    if (!cache) w->src_bytes = 0; /* never matches a write: always reordered */
    if (!w->valid || !cache) {
        BL_TRY(onednn_reorder_run(c, &w->first, src, w->mid ? w->mid : w->buf, op));
        if (w->via.prim) BL_TRY(onednn_reorder_run(c, &w->via, w->mid, w->buf, op));
        w->valid = cache;
        c->reorders++;
    }
    *out = w->buf;
    return BL_OK;
}

bl_status onednn_route_reserve(onednn_ctx *c, size_t bytes, const char *op) {
    c->route = bl_host_buffer_grow(c->route, &c->route_bytes, bytes);
    if (!c->route)
        return bl_error(BL_ERR_OUT_OF_MEMORY, "onednn %s: %zu bytes for blocked activations", op, bytes);
    return BL_OK;
}

char *onednn_route_of(onednn_ctx *c, const onednn_prim *e) {
    return bl_host_buffer_tail(c->route, c->route_bytes, e->route_bytes);
}

/* The reduction spaces below are grow-only (steady-state steps never allocate) and hand each
 * call the tail of the buffer, for the same reason as the scratchpad. */
double *onednn_partials(onednn_ctx *c, size_t len) {
    size_t bytes = len * sizeof(double);
    c->partials = bl_host_buffer_grow(c->partials, &c->partials_bytes, bytes);
    if (!c->partials) {
        bl_error(BL_ERR_OUT_OF_MEMORY, "onednn: %zu doubles of reduction space", len);
        return NULL;
    }
    return bl_host_buffer_tail(c->partials, c->partials_bytes, bytes);
}

float *onednn_bn_floats(onednn_ctx *c, size_t len) {
    size_t bytes = len * sizeof(float);
    c->bn_floats = bl_host_buffer_grow(c->bn_floats, &c->bn_floats_bytes, bytes);
    if (!c->bn_floats) {
        bl_error(BL_ERR_OUT_OF_MEMORY, "onednn batch norm: %zu floats of scratch", len);
        return NULL;
    }
    return bl_host_buffer_tail(c->bn_floats, c->bn_floats_bytes, bytes);
}
