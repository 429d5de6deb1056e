/* The primitive cache, the user-managed scratchpad and the blocked-weights cache.
 *
 * Lookups are a linear scan over a few dozen entries (one per distinct op and shape in a
 * model), far cheaper than the primitives they guard. Entries live until the handle closes. */
#include <stdlib.h>
#include <string.h>

#include "backends/cpu_onednn/onednn.h"

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
        if (st == dnnl_success) e->args[e->nargs++].arg = arg_ids[a];
    }
    if (st != dnnl_success) {
        prim_discard(e);
        return bl_error(BL_ERR_DEVICE, "onednn %s: creating the primitive failed (%s)", op,
                        onednn_status_name(st));
    }
    /* The scratchpad memory is one more argument, pointed at the shared buffer per run. */
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(e->pd, dnnl_query_scratchpad_md, 0);
    e->scratch_bytes = smd ? dnnl_memory_desc_get_size(smd) : 0;
    if (e->scratch_bytes > 0) {
        st = dnnl_memory_create(&e->args[e->nargs].memory, smd, c->engine, DNNL_MEMORY_NONE);
        if (st != dnnl_success) {
            prim_discard(e);
            return bl_error(BL_ERR_DEVICE, "onednn %s: scratchpad memory (%s)", op, onednn_status_name(st));
        }
        e->args[e->nargs++].arg = DNNL_ARG_SCRATCHPAD;
        if (e->scratch_bytes > c->scratch_bytes) {
            free(c->scratch);
            c->scratch = aligned_alloc(64, (e->scratch_bytes + 63) & ~(size_t)63);
            c->scratch_bytes = c->scratch ? e->scratch_bytes : 0;
            if (!c->scratch) {
                prim_discard(e);
                return bl_error(BL_ERR_OUT_OF_MEMORY, "onednn %s: scratchpad of %zu bytes", op,
                                e->scratch_bytes);
            }
        }
    }
    c->nprims++;
    c->created++;
    return BL_OK;
}

bl_status onednn_prim_bind(onednn_prim *e, int arg_id, const void *data, const char *op) {
    for (int a = 0; a < e->nargs; a++)
        if (e->args[a].arg == arg_id) {
            DNNL_CHECK(dnnl_memory_set_data_handle(e->args[a].memory, (void *)data), op);
            return BL_OK;
        }
    return bl_error(BL_ERR_INTERNAL, "onednn %s: primitive has no argument %d", op, arg_id);
}

bl_status onednn_prim_run(onednn_ctx *c, onednn_prim *e, const char *op) {
    if (e->scratch_bytes > 0) BL_TRY(onednn_prim_bind(e, DNNL_ARG_SCRATCHPAD, c->scratch, op));
    DNNL_CHECK(dnnl_primitive_execute(e->prim, c->stream, e->nargs, e->args), op);
    return BL_OK;
}

bl_status onednn_reorder_init(onednn_ctx *c, onednn_reorder *r, const dnnl_memory_desc_t *from,
                              const dnnl_memory_desc_t *to, const char *op) {
    dnnl_primitive_desc_t rpd;
    DNNL_CHECK(dnnl_reorder_primitive_desc_create(&rpd, from, c->engine, to, c->engine, NULL), op);
    dnnl_status_t st = dnnl_primitive_create(&r->prim, rpd);
    dnnl_primitive_desc_destroy(rpd);
    if (st == dnnl_success) st = dnnl_memory_create(&r->from, from, c->engine, DNNL_MEMORY_NONE);
    if (st == dnnl_success) st = dnnl_memory_create(&r->to, to, c->engine, DNNL_MEMORY_NONE);
    if (st != dnnl_success) {
        onednn_reorder_destroy(r);
        return bl_error(BL_ERR_DEVICE, "onednn %s: reorder (%s)", op, onednn_status_name(st));
    }
    c->created++;
    return BL_OK;
}

bl_status onednn_reorder_run(onednn_ctx *c, onednn_reorder *r, const void *from, void *to, const char *op) {
    DNNL_CHECK(dnnl_memory_set_data_handle(r->from, (void *)from), op);
    DNNL_CHECK(dnnl_memory_set_data_handle(r->to, to), op);
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, r->from}, {DNNL_ARG_TO, r->to}};
    DNNL_CHECK(dnnl_primitive_execute(r->prim, c->stream, 2, args), op);
    return BL_OK;
}

void onednn_reorder_destroy(onednn_reorder *r) {
    if (r->prim) dnnl_primitive_destroy(r->prim);
    if (r->from) dnnl_memory_destroy(r->from);
    if (r->to) dnnl_memory_destroy(r->to);
    r->prim = NULL;
    r->from = r->to = NULL;
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
    if (w->reorder) dnnl_primitive_destroy(w->reorder);
    if (w->msrc) dnnl_memory_destroy(w->msrc);
    if (w->mdst) dnnl_memory_destroy(w->mdst);
    onednn_reorder_destroy(&w->via);
    free(w->mid);
    free(w->buf);
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
    size_t bytes = dnnl_memory_desc_get_size(dst_md);
    w->buf = bl_alloc_big(bytes);
    if (!w->buf) return bl_error(BL_ERR_OUT_OF_MEMORY, "onednn %s: %zu bytes for blocked weights", op, bytes);
    dnnl_primitive_desc_t rpd = NULL;
    const dnnl_memory_desc_t *first_to = dst_md;
    dnnl_memory_desc_t mid_md;
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&rpd, src_md, c->engine, dst_md, c->engine, NULL);
    if (st == dnnl_unimplemented && src_md->ndims == 4) {
        /* Two steps: OHWI -> OIHW here, OIHW -> dst_md in `via`. */
        st = dnnl_memory_desc_init_by_tag(&mid_md, 4, src_md->dims, dnnl_f32, dnnl_abcd);
        size_t mid_bytes = dnnl_memory_desc_get_size(&mid_md);
        w->mid = st == dnnl_success ? bl_alloc_big(mid_bytes) : NULL;
        if (w->mid && onednn_reorder_init(c, &w->via, &mid_md, dst_md, op) == BL_OK) {
            first_to = &mid_md;
            st = dnnl_reorder_primitive_desc_create(&rpd, src_md, c->engine, &mid_md, c->engine, NULL);
        } else {
            bl_clear_error();
            st = dnnl_unimplemented;
        }
    }
    if (st == dnnl_success) st = dnnl_primitive_create(&w->reorder, rpd);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (st == dnnl_success) st = dnnl_memory_create(&w->msrc, src_md, c->engine, DNNL_MEMORY_NONE);
    if (st == dnnl_success) st = dnnl_memory_create(&w->mdst, first_to, c->engine, w->mid ? w->mid : w->buf);
    if (st != dnnl_success) {
        weights_destroy(w);
        return bl_error(BL_ERR_DEVICE, "onednn %s: weight reorder (%s)", op, onednn_status_name(st));
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
        DNNL_CHECK(dnnl_memory_set_data_handle(w->msrc, (void *)src), op);
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, w->msrc}, {DNNL_ARG_TO, w->mdst}};
        DNNL_CHECK(dnnl_primitive_execute(w->reorder, c->stream, 2, args), op);
        if (w->via.prim) BL_TRY(onednn_reorder_run(c, &w->via, w->mid, w->buf, op));
        w->valid = cache;
        c->reorders++;
    }
    *out = w->buf;
    return BL_OK;
}

/* Grow-only scratch: reallocated (contents dropped) only when a larger size is asked for, so
 * steady-state steps never allocate. Returns NULL, with *capacity 0, when memory runs out. */
static void *grow_scratch(void *buf, size_t *capacity, size_t bytes) {
    if (buf && bytes <= *capacity) return buf;
    free(buf);
    buf = aligned_alloc(64, ((bytes ? bytes : 1) + 63) & ~(size_t)63);
    *capacity = buf ? bytes : 0;
    return buf;
}

bl_status onednn_route_reserve(onednn_ctx *c, size_t bytes, const char *op) {
    c->route = grow_scratch(c->route, &c->route_bytes, bytes);
    if (!c->route)
        return bl_error(BL_ERR_OUT_OF_MEMORY, "onednn %s: %zu bytes for blocked activations", op, bytes);
    return BL_OK;
}

double *onednn_partials(onednn_ctx *c, size_t len) {
    c->partials = grow_scratch(c->partials, &c->partials_bytes, len * sizeof(double));
    if (!c->partials) bl_error(BL_ERR_OUT_OF_MEMORY, "onednn: %zu doubles of reduction space", len);
    return c->partials;
}

float *onednn_bn_floats(onednn_ctx *c, size_t len) {
    c->bn_floats = grow_scratch(c->bn_floats, &c->bn_floats_bytes, len * sizeof(float));
    if (!c->bn_floats) bl_error(BL_ERR_OUT_OF_MEMORY, "onednn batch norm: %zu floats of scratch", len);
    return c->bn_floats;
}
