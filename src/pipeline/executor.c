/* What one task does, whichever runner scheduled it: a bundle through a fused chain of DoFns,
 * a key partition through GroupByKey, a combine phase, or a text shard. Workers keep one DoFn
 * instance per transform, set up lazily and torn down at the end, or right after a failed
 * bundle so the retry starts from a fresh setup. Every element passes through its coder
 * between transforms, fused or not; the direct runner also checks that decoding and
 * re-encoding gives the same bytes. */
#include <stdlib.h>
#include <string.h>

#include "pipeline/internal.h"

/* ---- DoFn context accessors ---------------------------------------------------------------- */

void *bl_dofn_user(const bl_dofn_ctx *ctx) { return ctx->t->fn.user; }
void *bl_dofn_state(const bl_dofn_ctx *ctx) { return ctx->state; }
void bl_dofn_set_state(bl_dofn_ctx *ctx, void *state) { ctx->state = state; }
int bl_dofn_worker(const bl_dofn_ctx *ctx) { return ctx->worker; }
int bl_dofn_attempt(const bl_dofn_ctx *ctx) { return ctx->attempt; }
int bl_dofn_accelerator(const bl_dofn_ctx *ctx) { return ctx->accelerator; }
const char *bl_dofn_transform(const bl_dofn_ctx *ctx) { return ctx->t->name; }

/* ---- workers ------------------------------------------------------------------------------- */

bl_status bl_worker_init(bl_worker *w, const bl_plan *plan, int index, bl_worker_caps caps) {
    memset(w, 0, sizeof *w);
    w->index = index;
    w->caps = caps;
    w->local_rank = bl_pipeline_worker_local_rank();
    w->ninst = plan->p->nt;
    w->inst = calloc((size_t)w->ninst + 1, sizeof *w->inst);
    if (!w->inst) return bl_error(BL_ERR_OUT_OF_MEMORY, "worker");
    for (int i = 0; i < w->ninst; i++) {
        w->inst[i].t = plan->p->t[i];
        w->inst[i].worker = index;
        /* One accelerator per process, chosen by node-local rank, so ranks sharing a node
         * spread over its devices. */
        w->inst[i].accelerator = caps.accelerators > 0 ? w->local_rank % caps.accelerators : -1;
    }
    return BL_OK;
}

void bl_worker_bind(bl_worker *w, int local_index) {
    w->local_rank = local_index;
    for (int i = 0; i < w->ninst; i++)
        w->inst[i].accelerator = w->caps.accelerators > 0 ? local_index % w->caps.accelerators : -1;
}

static void teardown(bl_worker *w, bl_dofn_ctx *c) {
    if (!c->ready) return;
    c->metrics = &w->metrics;
    if (c->t->fn.teardown) c->t->fn.teardown(c);
    c->ready = false;
    c->state = NULL;
}

void bl_worker_finish(bl_worker *w) {
    for (int i = 0; i < w->ninst; i++) teardown(w, &w->inst[i]);
    free(w->inst);
    w->inst = NULL;
    w->ninst = 0;
}

void bl_worker_reset_stage(bl_worker *w, const bl_plan *plan, int stage) {
    const bl_stage *s = &plan->s[stage];
    if (s->kind != BL_S_PARDO) return;
    for (int j = 0; j < s->nt; j++) teardown(w, &w->inst[s->t[j]]);
}

void bl_task_clear(bl_task *task, int n_out) {
    if (task->outs)
        for (int k = 0; k < n_out; k++) bl_elist_free(&task->outs[k]);
    bl_metrics_clear(&task->metrics);
}

/* ---- a bundle through a fused chain -------------------------------------------------------- */

typedef struct exec_bundle {
    const bl_plan *plan;
    const bl_stage *st;
    bl_worker *w;
    bl_task *task;
    bl_buf scratch[BL_MAX_CHAIN];
    bl_buf check;
    int64_t in_count[BL_MAX_CHAIN], out_count[BL_MAX_CHAIN];
    bool named; /* the failing DoFn is already named in the message (fused calls nest) */
} exec_bundle;

struct bl_emitter {
    exec_bundle *b;
    int j;
};

static bl_status decode_checked(exec_bundle *b, const bl_coder *c, const uint8_t *d, size_t size, void **v) {
    BL_TRY(bl_coder_decode(c, d, size, v));
    if (!b->w->roundtrip_check) return BL_OK;
    b->check.len = 0;
    bl_status s = bl_coder_encode(c, *v, &b->check);
    if (s == BL_OK && (b->check.len != size || memcmp(b->check.data, d, size) != 0))
        s = bl_error(BL_ERR_FORMAT,
                     "coder '%s' does not round-trip: %zu bytes decode and "
                     "re-encode to %zu different bytes",
                     bl_coder_name(c), size, b->check.len);
    if (s != BL_OK) {
        bl_coder_free_value(c, *v);
        *v = NULL;
    }
    return s;
}

static bl_status deliver(exec_bundle *b, int j, const void *value) {
    bl_dofn_ctx *c = &b->w->inst[b->st->t[j]];
    bl_emitter em = {b, j};
    b->in_count[j]++;
    bl_status s = c->t->fn.process(c, value, &em);
    if (s != BL_OK && !b->named) {
        bl_error_context(s, "ParDo '%s' (process)", c->t->name);
        b->named = true;
    }
    return s;
}

bl_status bl_emit_tagged(bl_emitter *em, const char *tag, const void *value) {
    if (!em || !value) return bl_error(BL_ERR_INVALID_ARG, "emit: NULL emitter or value");
    exec_bundle *b = em->b;
    const bl_transform *t = b->plan->p->t[b->st->t[em->j]];
    int k = 0;
    if (tag && strcmp(tag, "out") != 0) {
        for (k = 1; k < t->n_outputs; k++)
            if (strcmp(t->fn.side_tags[k - 1], tag) == 0) break;
        if (k == t->n_outputs)
            return bl_error(BL_ERR_INVALID_ARG, "ParDo '%s' has no output tagged '%s'", t->name, tag);
    }
    const bl_coder *c = b->plan->p->pc[t->outputs[k]]->coder;
    bl_buf *sb = &b->scratch[em->j];
    sb->len = 0;
    BL_TRY(bl_error_context(bl_coder_encode(c, value, sb), "ParDo '%s' output '%s'", t->name,
                            tag ? tag : "out"));
    b->out_count[em->j]++;
    int slot = b->st->out_map[em->j][k];
    if (slot >= 0) return bl_elist_push(&b->task->outs[slot], sb->data, sb->len);
    void *v;
    BL_TRY(bl_error_context(decode_checked(b, c, sb->data, sb->len, &v), "ParDo '%s' output", t->name));
    bl_status s = deliver(b, em->j + 1, v);
    bl_coder_free_value(c, v);
    return s;
}

bl_status bl_emit(bl_emitter *em, const void *value) { return bl_emit_tagged(em, NULL, value); }

static bl_status run_chain(exec_bundle *b) {
    const bl_stage *st = b->st;
    bl_worker *w = b->w;
    bl_status s = BL_OK;
    for (int j = 0; j < st->nt && s == BL_OK; j++) {
        bl_dofn_ctx *c = &w->inst[st->t[j]];
        c->attempt = b->task->attempt;
        if (!c->ready) {
            c->metrics = &w->metrics; /* setup-time metrics count even if the bundle fails */
            s = c->t->fn.setup ? c->t->fn.setup(c) : BL_OK;
            if (s != BL_OK) return bl_error_context(s, "ParDo '%s' (setup)", c->t->name);
            c->ready = true;
        }
        c->metrics = &b->task->metrics;
        if (c->t->fn.start_bundle) s = c->t->fn.start_bundle(c);
        if (s != BL_OK) return bl_error_context(s, "ParDo '%s' (start_bundle)", c->t->name);
    }
    const bl_coder *in_coder = b->plan->p->pc[st->in_slot]->coder;
    for (size_t i = 0; i < b->task->in.n && s == BL_OK; i++) {
        size_t size;
        const uint8_t *d = bl_eview_at(b->task->in, i, &size);
        void *v;
        s = decode_checked(b, in_coder, d, size, &v);
        if (s != BL_OK)
            return bl_error_context(s, "ParDo '%s' input element %zu", b->plan->p->t[st->t[0]]->name, i);
        s = deliver(b, 0, v);
        bl_coder_free_value(in_coder, v);
    }
    for (int j = 0; j < st->nt && s == BL_OK; j++) {
        bl_dofn_ctx *c = &w->inst[st->t[j]];
        bl_emitter em = {b, j};
        if (c->t->fn.finish_bundle) s = c->t->fn.finish_bundle(c, &em);
        if (s != BL_OK && !b->named) {
            bl_error_context(s, "ParDo '%s' (finish_bundle)", c->t->name);
            b->named = true;
        }
    }
    return s;
}

bl_status bl_exec_task(const bl_plan *plan, bl_worker *w, bl_task *task) {
    const bl_stage *st = &plan->s[task->stage];
    const bl_pipeline *p = plan->p;
    const bl_transform *t0 = p->t[st->t[0]];
    int n_out = st->n_out;
    bl_task_clear(task, n_out);
    if (!task->outs && n_out) {
        task->outs = calloc((size_t)n_out, sizeof *task->outs);
        if (!task->outs) return bl_error(BL_ERR_OUT_OF_MEMORY, "task outputs");
    }
    task->worker = w->index;
    double t_start = bl_time_now();
    bl_status s = BL_OK;
    exec_bundle b = {.plan = plan, .st = st, .w = w, .task = task};
    const bl_coder *in_coder = st->in_slot >= 0 && st->in_slot < p->npc ? p->pc[st->in_slot]->coder : NULL;
    switch (st->kind) {
        case BL_S_PARDO: s = run_chain(&b); break;
        case BL_S_GBK: s = bl_group_partition(in_coder, task->in, &task->outs[0]); break;
        case BL_S_CPARTIAL: s = bl_combine_partial(t0, in_coder, st->global, task->in, &task->outs[0]); break;
        case BL_S_CMERGE:
            s = bl_combine_merge(t0, p->pc[t0->inputs[0]]->coder, st->global, task->in, &task->outs[0]);
            break;
        case BL_S_WRITE: s = bl_format_shard(plan, t0, task->in, &task->outs[0]); break;
        default: s = bl_error(BL_ERR_INTERNAL, "stage '%s' is not a task stage", st->label);
    }
    for (int j = 0; j < BL_MAX_CHAIN; j++) bl_buf_free(&b.scratch[j]);
    bl_buf_free(&b.check);
    if (s != BL_OK) {
        bl_error_context(s, "worker %d, bundle %zu of '%s', attempt %d", w->index, task->index, st->label,
                         task->attempt);
        bl_worker_reset_stage(w, plan, task->stage);
        bl_task_clear(task, n_out);
        return s;
    }
    double ms = (bl_time_now() - t_start) * 1e3;
    /* Where bundles ran shows how the runner balanced them (a slow worker gets fewer). */
    char per_worker[48];
    snprintf(per_worker, sizeof per_worker, "bundles_on_worker_%d", w->index);
    bl_metrics_inc(&task->metrics, "(runner)", per_worker, 1);
    if (st->kind == BL_S_PARDO) {
        for (int j = 0; j < st->nt; j++) {
            const char *name = p->t[st->t[j]]->name;
            bl_metrics_inc(&task->metrics, name, "elements_in", b.in_count[j]);
            bl_metrics_inc(&task->metrics, name, "elements_out", b.out_count[j]);
            bl_metrics_observe(&task->metrics, name, "bundle_latency_ms", ms);
        }
    } else if (st->kind != BL_S_CMERGE) {
        bl_metrics_inc(&task->metrics, t0->name, "elements_in", (int64_t)task->in.n);
        if (n_out)
            bl_metrics_inc(&task->metrics, t0->name,
                           st->kind == BL_S_CPARTIAL ? "accumulators"
                           : st->kind == BL_S_WRITE  ? "shards"
                                                     : "elements_out",
                           (int64_t)task->outs[0].n);
        bl_metrics_observe(&task->metrics, t0->name, "bundle_latency_ms", ms);
    } else {
        /* The merge phase's outputs are the transform's outputs; its inputs are accumulators. */
        bl_metrics_inc(&task->metrics, t0->name, "elements_out", (int64_t)task->outs[0].n);
        bl_metrics_inc(&task->metrics, t0->name, "accumulators_merged", (int64_t)task->in.n);
    }
    return BL_OK;
}
