/* BatchElements as a DoFn, as in Beam: batches form within a bundle and the last partial batch
 * is flushed in finish_bundle, so batching never holds elements across bundles (which would
 * break retries). Elements are kept encoded while they wait, because the runner owns the decoded
 * element only for the duration of process. */
#include <stdlib.h>
#include <string.h>

#include "pipeline/internal.h"

typedef struct batch_cfg {
    bl_batch_config cfg;
    const bl_coder *item;
    const bl_coder *batch;
} batch_cfg;

typedef struct batch_state {
    bl_elist pending;
    size_t weight;
    bl_buf scratch;
} batch_state;

static bl_status batch_setup(bl_dofn_ctx *ctx) {
    batch_state *st = calloc(1, sizeof *st);
    if (!st) return bl_error(BL_ERR_OUT_OF_MEMORY, "batch state");
    bl_dofn_set_state(ctx, st);
    return BL_OK;
}

static void batch_teardown(bl_dofn_ctx *ctx) {
    batch_state *st = bl_dofn_state(ctx);
    if (!st) return;
    bl_elist_free(&st->pending);
    bl_buf_free(&st->scratch);
    free(st);
    bl_dofn_set_state(ctx, NULL);
}

static bl_status batch_start(bl_dofn_ctx *ctx) {
    batch_state *st = bl_dofn_state(ctx);
    bl_elist_free(&st->pending); /* a retried bundle starts clean */
    st->weight = 0;
    return BL_OK;
}

static bl_status flush(const batch_cfg *c, batch_state *st, bl_emitter *out) {
    if (st->pending.n == 0) return BL_OK;
    bl_iter it = {0, calloc(st->pending.n, sizeof(void *))};
    if (!it.items) return bl_error(BL_ERR_OUT_OF_MEMORY, "batch of %zu", st->pending.n);
    bl_status s = BL_OK;
    bl_eview v = bl_elist_view(&st->pending, 0, st->pending.n);
    for (; it.n < st->pending.n && s == BL_OK; it.n++) {
        size_t size;
        const uint8_t *d = bl_eview_at(v, it.n, &size);
        s = bl_coder_decode(c->item, d, size, &it.items[it.n]);
        if (s != BL_OK) break;
    }
    if (s == BL_OK) s = bl_emit(out, &it);
    for (size_t i = 0; i < it.n; i++) bl_coder_free_value(c->item, it.items[i]);
    free(it.items);
    bl_elist_free(&st->pending);
    st->weight = 0;
    return s;
}

static bl_status batch_process(bl_dofn_ctx *ctx, const void *e, bl_emitter *out) {
    const batch_cfg *c = bl_dofn_user(ctx);
    batch_state *st = bl_dofn_state(ctx);
    size_t w = c->cfg.weight_fn ? c->cfg.weight_fn(c->cfg.weight_user, e) : 1;
    if (c->cfg.max_weight && st->pending.n && st->weight + w > c->cfg.max_weight) BL_TRY(flush(c, st, out));
    st->scratch.len = 0;
    BL_TRY(bl_coder_encode(c->item, e, &st->scratch));
    BL_TRY(bl_elist_push(&st->pending, st->scratch.data, st->scratch.len));
    st->weight += w;
    if (st->pending.n >= c->cfg.max_size) BL_TRY(flush(c, st, out));
    return BL_OK;
}

static bl_status batch_finish(bl_dofn_ctx *ctx, bl_emitter *out) {
    return flush(bl_dofn_user(ctx), bl_dofn_state(ctx), out);
}

bl_status bl_batch_elements(bl_pipeline *p, const char *name, bl_pcoll *in, const bl_batch_config *config,
                            bl_pcoll **out) {
    *out = NULL;
    if (!config || config->max_size == 0 || config->min_size > config->max_size)
        return bl_pipeline_fail(p, bl_error(BL_ERR_INVALID_ARG,
                                            "BatchElements '%s': need "
                                            "1 <= max_size and min_size <= max_size",
                                            name ? name : ""));
    if (!in)
        return bl_pipeline_fail(
            p, bl_error(BL_ERR_INVALID_ARG, "BatchElements '%s': NULL input", name ? name : ""));
    batch_cfg *c = calloc(1, sizeof *c);
    if (!c) return bl_error(BL_ERR_OUT_OF_MEMORY, "batch config");
    c->cfg = *config;
    c->item = in->coder;
    c->batch = bl_coder_iterable(in->coder);
    bl_dofn fn = {.setup = batch_setup,
                  .start_bundle = batch_start,
                  .process = batch_process,
                  .finish_bundle = batch_finish,
                  .teardown = batch_teardown,
                  .user = c,
                  .out_coder = c->batch};
    bl_status s = bl_pardo(p, name, in, &fn, out);
    bl_transform *t = p->nt ? p->t[p->nt - 1] : NULL;
    if (t && t->fn.user == c) {
        t->owned = c;
        t->kind_name = "BatchElements";
    } else {
        free(c);
    }
    return s;
}
