/* The element-wise and structural transforms: Create, ParDo (with tagged side outputs) and its
 * Map/FlatMap/Filter helpers, Reshuffle, GroupByKey and Flatten. Each checks its inputs when the
 * graph is built, so mistakes surface before anything runs. */
#include <stdlib.h>
#include <string.h>

#include "pipeline/internal.h"

bl_status bl_create(bl_pipeline *p, const char *name, const bl_coder *coder, const void *const *values,
                    size_t n, bl_pcoll **out) {
    *out = NULL;
    bl_transform *t;
    BL_TRY(bl_graph_add_transform(p, name, BL_T_CREATE, "Create", NULL, 0, &t));
    if (!coder)
        return bl_pipeline_fail(p, bl_error(BL_ERR_INVALID_ARG, "Create '%s' needs a coder", t->name));
    /* Encoded now: the values may be stack data that is gone by the time the pipeline runs. */
    bl_buf b = {0};
    for (size_t i = 0; i < n; i++) {
        b.len = 0;
        bl_status s = bl_coder_encode(coder, values[i], &b);
        if (s == BL_OK) s = bl_elist_push(&t->create_data, b.data, b.len);
        if (s != BL_OK) {
            bl_buf_free(&b);
            return bl_pipeline_fail(p, bl_error_context(s, "Create '%s' element %zu", t->name, i));
        }
    }
    bl_buf_free(&b);
    return bl_graph_add_output(p, t, coder, NULL, out);
}

bl_status bl_pardo(bl_pipeline *p, const char *name, bl_pcoll *in, const bl_dofn *fn, bl_pcoll **out) {
    *out = NULL;
    bl_transform *t;
    BL_TRY(bl_graph_add_transform(p, name, BL_T_PARDO, "ParDo", &in, 1, &t));
    if (!fn || !fn->process)
        return bl_pipeline_fail(p, bl_error(BL_ERR_INVALID_ARG, "ParDo '%s': DoFn needs process", t->name));
    if (fn->num_side_outputs < 0 || fn->num_side_outputs > 8)
        return bl_pipeline_fail(p, bl_error(BL_ERR_INVALID_ARG, "ParDo '%s': 0 to 8 side outputs", t->name));
    t->fn = *fn;
    BL_TRY(bl_graph_add_output(p, t, fn->out_coder, NULL, out));
    for (int i = 0; i < fn->num_side_outputs; i++) {
        const char *tag = fn->side_tags[i];
        if (!tag || !*tag || strcmp(tag, "out") == 0)
            return bl_pipeline_fail(p, bl_error(BL_ERR_INVALID_ARG,
                                                "ParDo '%s': side output %d "
                                                "needs a tag other than 'out'",
                                                t->name, i));
        for (int k = 0; k < i; k++)
            if (strcmp(fn->side_tags[k], tag) == 0)
                return bl_pipeline_fail(p, bl_error(BL_ERR_INVALID_ARG,
                                                    "ParDo '%s': tag '%s' "
                                                    "used twice",
                                                    t->name, tag));
        bl_pcoll *side;
        BL_TRY(bl_graph_add_output(p, t, fn->side_coders[i], tag, &side));
    }
    return BL_OK;
}

bl_status bl_pardo_output(bl_pcoll *main, const char *tag, bl_pcoll **out) {
    *out = NULL;
    if (!main) return bl_error(BL_ERR_INVALID_ARG, "pardo_output: NULL pcollection");
    bl_pipeline *p = main->p;
    bl_transform *t = p->t[main->producer];
    if (t->kind == BL_T_PARDO && tag)
        for (int i = 0; i < t->fn.num_side_outputs; i++)
            if (strcmp(t->fn.side_tags[i], tag) == 0) {
                *out = p->pc[t->outputs[i + 1]];
                return BL_OK;
            }
    return bl_error(BL_ERR_NOT_FOUND, "'%s' has no output tagged '%s'", t->name, tag ? tag : "(null)");
}

/* ---- Map / FlatMap / Filter: ParDos around a plain function ----------------------------- */

typedef struct fn_wrap {
    bl_map_fn map;
    bl_flatmap_fn flatmap;
    bl_filter_fn filter;
    void *user;
    const bl_coder *out_coder;
} fn_wrap;

static bl_status map_process(bl_dofn_ctx *ctx, const void *e, bl_emitter *out) {
    fn_wrap *w = bl_dofn_user(ctx);
    void *v = NULL;
    BL_TRY(w->map(w->user, e, &v));
    bl_status s = bl_emit(out, v);
    bl_coder_free_value(w->out_coder, v);
    return s;
}

static bl_status flatmap_process(bl_dofn_ctx *ctx, const void *e, bl_emitter *out) {
    fn_wrap *w = bl_dofn_user(ctx);
    return w->flatmap(w->user, e, out);
}

static bl_status filter_process(bl_dofn_ctx *ctx, const void *e, bl_emitter *out) {
    fn_wrap *w = bl_dofn_user(ctx);
    return w->filter(w->user, e) ? bl_emit(out, e) : BL_OK;
}

static bl_status wrap(bl_pipeline *p, const char *name, bl_pcoll *in, fn_wrap *w,
                      bl_status (*process)(bl_dofn_ctx *, const void *, bl_emitter *), bl_pcoll **out) {
    *out = NULL;
    fn_wrap *owned = malloc(sizeof *owned);
    if (!owned) return bl_error(BL_ERR_OUT_OF_MEMORY, "map");
    *owned = *w;
    bl_dofn fn = {0};
    fn.process = process;
    fn.user = owned;
    fn.out_coder = w->out_coder;
    bl_status s = bl_pardo(p, name, in, &fn, out);
    bl_transform *t = p->nt ? p->t[p->nt - 1] : NULL;
    if (t && t->fn.user == owned)
        t->owned = owned; /* the graph frees it from now on */
    else
        free(owned);
    return s;
}

bl_status bl_map(bl_pipeline *p, const char *name, bl_pcoll *in, bl_map_fn fn, void *user,
                 const bl_coder *out_coder, bl_pcoll **out) {
    if (!fn) return bl_pipeline_fail(p, bl_error(BL_ERR_INVALID_ARG, "Map '%s' needs a function", name));
    fn_wrap w = {.map = fn, .user = user, .out_coder = out_coder};
    return wrap(p, name, in, &w, map_process, out);
}

bl_status bl_flatmap(bl_pipeline *p, const char *name, bl_pcoll *in, bl_flatmap_fn fn, void *user,
                     const bl_coder *out_coder, bl_pcoll **out) {
    if (!fn) return bl_pipeline_fail(p, bl_error(BL_ERR_INVALID_ARG, "FlatMap '%s' needs a function", name));
    fn_wrap w = {.flatmap = fn, .user = user, .out_coder = out_coder};
    return wrap(p, name, in, &w, flatmap_process, out);
}

bl_status bl_filter(bl_pipeline *p, const char *name, bl_pcoll *in, bl_filter_fn fn, void *user,
                    bl_pcoll **out) {
    if (!fn) return bl_pipeline_fail(p, bl_error(BL_ERR_INVALID_ARG, "Filter '%s' needs a function", name));
    if (!in) return bl_pipeline_fail(p, bl_error(BL_ERR_INVALID_ARG, "Filter '%s': NULL input", name));
    fn_wrap w = {.filter = fn, .user = user, .out_coder = in->coder};
    return wrap(p, name, in, &w, filter_process, out);
}

/* ---- structural transforms ------------------------------------------------------------ */

bl_status bl_reshuffle(bl_pipeline *p, const char *name, bl_pcoll *in, bl_pcoll **out) {
    *out = NULL;
    bl_transform *t;
    BL_TRY(bl_graph_add_transform(p, name, BL_T_RESHUFFLE, "Reshuffle", &in, 1, &t));
    return bl_graph_add_output(p, t, in->coder, NULL, out);
}

bl_status bl_check_keyed(bl_pipeline *p, const char *what, const char *name, const bl_pcoll *in) {
    const bl_coder *k = bl_coder_key(in->coder);
    if (!k)
        return bl_pipeline_fail(p, bl_error(BL_ERR_INVALID_ARG, "%s '%s' needs KV input, got coder '%s'",
                                            what, name, bl_coder_name(in->coder)));
    if (!bl_coder_is_deterministic(k))
        return bl_pipeline_fail(p, bl_error(BL_ERR_INVALID_ARG,
                                            "%s '%s': key coder '%s' is not "
                                            "deterministic, so equal keys could encode differently; "
                                            "use a deterministic key coder",
                                            what, name, bl_coder_name(k)));
    return BL_OK;
}

bl_status bl_group_by_key(bl_pipeline *p, const char *name, bl_pcoll *in, bl_pcoll **out) {
    *out = NULL;
    bl_transform *t;
    BL_TRY(bl_graph_add_transform(p, name, BL_T_GBK, "GroupByKey", &in, 1, &t));
    BL_TRY(bl_check_keyed(p, "GroupByKey", t->name, in));
    const bl_coder *oc = bl_coder_kv(bl_coder_key(in->coder), bl_coder_iterable(bl_coder_value(in->coder)));
    return bl_graph_add_output(p, t, oc, NULL, out);
}

bl_status bl_flatten(bl_pipeline *p, const char *name, bl_pcoll *const *ins, size_t n, bl_pcoll **out) {
    *out = NULL;
    if (n == 0 || n > 1024)
        return bl_pipeline_fail(
            p, bl_error(BL_ERR_INVALID_ARG, "Flatten '%s' needs 1 to 1024 inputs", name ? name : ""));
    bl_transform *t;
    BL_TRY(bl_graph_add_transform(p, name, BL_T_FLATTEN, "Flatten", ins, (int)n, &t));
    for (size_t i = 1; i < n; i++)
        if (ins[i]->coder != ins[0]->coder)
            return bl_pipeline_fail(p, bl_error(BL_ERR_INVALID_ARG,
                                                "Flatten '%s': input %zu has coder "
                                                "'%s' but input 0 has '%s'",
                                                t->name, i, bl_coder_name(ins[i]->coder),
                                                bl_coder_name(ins[0]->coder)));
    return bl_graph_add_output(p, t, ins[0]->coder, NULL, out);
}
