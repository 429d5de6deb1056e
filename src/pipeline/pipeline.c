/* The pipeline graph: transforms with unique names, PCollections, composite scopes with their
 * hints, printing as text and Graphviz dot, collected results, and the choice of runner.
 * A construction error is remembered ("sticky") so a program that ignores one status still
 * cannot run a half-built graph. */
#include <stdlib.h>
#include <string.h>

#include "pipeline/internal.h"

bl_status bl_pipeline_new(const bl_options *opts, bl_pipeline **out) {
    *out = NULL;
    bl_pipeline *p = calloc(1, sizeof *p);
    if (!p) return bl_error(BL_ERR_OUT_OF_MEMORY, "pipeline");
    bl_status s = bl_runopts_from_options(opts, &p->ro);
    if (s != BL_OK) {
        free(p);
        return bl_error_context(s, "pipeline options");
    }
    p->coordinator = true;
    /* The thread budget: the direct runner's one worker is the calling thread, which keeps
     * what it has unless --threads_per_worker says otherwise; the local runner's workers share
     * the cores; MPI ranks share their node's (bl_mpi_join). */
    if (strcmp(p->ro.runner, "direct") == 0)
        p->threads = p->ro.threads_per_worker > 0 ? p->ro.threads_per_worker : bl_compute_threads();
    else
        p->threads = bl_thread_budget(bl_cpu_cores(), p->ro.num_workers, p->ro.threads_per_worker);
    if (strcmp(p->ro.runner, "mpi") == 0) s = bl_mpi_join(p);
    if (s != BL_OK) {
        bl_pipeline_free(p);
        return s;
    }
    *out = p;
    return BL_OK;
}

void bl_pipeline_free(bl_pipeline *p) {
    if (!p) return;
    for (int i = 0; i < p->nt; i++) {
        bl_transform *t = p->t[i];
        free(t->name);
        free(t->inputs);
        free(t->owned);
        bl_elist_free(&t->create_data);
        free(t->path), free(t->prefix), free(t->suffix);
        free(t);
    }
    for (int i = 0; i < p->npc; i++) {
        free(p->pc[i]->name);
        bl_elist_free(&p->pc[i]->result);
        free(p->pc[i]);
    }
    for (int i = 0; i < p->nscopes; i++) free(p->scopes[i].name);
    free(p->t);
    free(p->pc);
    bl_metrics_clear(&p->metrics);
    bl_runopts_free(&p->ro);
    free(p);
}

bl_status bl_pipeline_fail(bl_pipeline *p, bl_status s) {
    if (s != BL_OK && p && p->sticky == BL_OK) {
        p->sticky = s;
        snprintf(p->sticky_msg, sizeof p->sticky_msg, "%s", bl_last_error());
    }
    return s;
}

bl_transform *bl_graph_find(const bl_pipeline *p, const char *name) {
    for (int i = 0; i < p->nt; i++)
        if (strcmp(p->t[i]->name, name) == 0) return p->t[i];
    return NULL;
}

bl_status bl_graph_add_transform(bl_pipeline *p, const char *name, bl_tkind kind, const char *kind_name,
                                 bl_pcoll *const *ins, int n_ins, bl_transform **out) {
    *out = NULL;
    if (!p) return bl_error(BL_ERR_INVALID_ARG, "NULL pipeline");
    if (!name || !*name)
        return bl_pipeline_fail(p, bl_error(BL_ERR_INVALID_ARG, "%s needs a non-empty name", kind_name));
    for (int i = 0; i < n_ins; i++) {
        if (!ins[i])
            return bl_pipeline_fail(p, bl_error(BL_ERR_INVALID_ARG,
                                                "%s '%s': input %d is NULL "
                                                "(did an earlier transform fail?)",
                                                kind_name, name, i));
        if (ins[i]->p != p)
            return bl_pipeline_fail(p, bl_error(BL_ERR_INVALID_ARG,
                                                "%s '%s': input '%s' belongs to "
                                                "another pipeline",
                                                kind_name, name, ins[i]->name));
    }
    bl_buf full = {0};
    for (int i = 0; i < p->nscopes; i++) bl_buf_printf(&full, "%s/", p->scopes[i].name);
    bl_buf_printf(&full, "%s", name);
    if (!full.data) return bl_error(BL_ERR_OUT_OF_MEMORY, "name");
    if (bl_graph_find(p, (char *)full.data)) {
        bl_status s = bl_error(BL_ERR_INVALID_ARG,
                               "duplicate transform name '%s': transform names "
                               "must be unique",
                               (char *)full.data);
        bl_buf_free(&full);
        return bl_pipeline_fail(p, s);
    }
    if (p->nt == p->cap_t) {
        int cap = p->cap_t ? p->cap_t * 2 : 16;
        bl_transform **nt = realloc(p->t, (size_t)cap * sizeof *nt);
        if (!nt) return bl_error(BL_ERR_OUT_OF_MEMORY, "transforms");
        p->t = nt;
        p->cap_t = cap;
    }
    bl_transform *t = calloc(1, sizeof *t);
    if (!t || (n_ins && !(t->inputs = calloc((size_t)n_ins, sizeof(int))))) {
        free(t);
        bl_buf_free(&full);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "transform");
    }
    t->id = p->nt;
    t->name = (char *)full.data;
    t->kind = kind;
    t->kind_name = kind_name;
    t->n_inputs = n_ins;
    for (int i = 0; i < n_ins; i++) {
        t->inputs[i] = ins[i]->id;
        ins[i]->consumers++;
    }
    for (int i = 0; i < p->nscopes; i++) bl_hints_merge(&t->scope_hints, &p->scopes[i].hints);
    p->t[p->nt++] = t;
    *out = t;
    return BL_OK;
}

bl_status bl_graph_add_output(bl_pipeline *p, bl_transform *t, const bl_coder *coder, const char *tag,
                              bl_pcoll **out) {
    *out = NULL;
    if (!coder)
        return bl_pipeline_fail(
            p, bl_error(BL_ERR_INVALID_ARG, "%s '%s': output needs a coder", t->kind_name, t->name));
    if (t->n_outputs == BL_MAX_OUTPUTS)
        return bl_pipeline_fail(p, bl_error(BL_ERR_INVALID_ARG, "'%s': too many outputs", t->name));
    if (p->npc == p->cap_pc) {
        int cap = p->cap_pc ? p->cap_pc * 2 : 16;
        bl_pcoll **np = realloc(p->pc, (size_t)cap * sizeof *np);
        if (!np) return bl_error(BL_ERR_OUT_OF_MEMORY, "pcollections");
        p->pc = np;
        p->cap_pc = cap;
    }
    bl_pcoll *pc = calloc(1, sizeof *pc);
    bl_buf name = {0};
    bl_buf_printf(&name, "%s.%s", t->name, tag ? tag : "out");
    if (!pc || !name.data) {
        free(pc);
        bl_buf_free(&name);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "pcollection");
    }
    pc->p = p;
    pc->id = p->npc;
    pc->name = (char *)name.data;
    pc->coder = coder;
    pc->producer = t->id;
    pc->out_index = t->n_outputs;
    t->outputs[t->n_outputs++] = pc->id;
    p->pc[p->npc++] = pc;
    *out = pc;
    return BL_OK;
}

bl_status bl_pipeline_begin_composite(bl_pipeline *p, const char *name, const char *hints) {
    if (!name || !*name || strchr(name, '/'))
        return bl_pipeline_fail(p, bl_error(BL_ERR_INVALID_ARG, "composite needs a name without '/'"));
    if (p->nscopes == (int)(sizeof p->scopes / sizeof p->scopes[0]))
        return bl_pipeline_fail(p, bl_error(BL_ERR_INVALID_ARG, "composites nested too deep"));
    bl_hints h;
    bl_status s = bl_hints_parse(hints, &h);
    if (s != BL_OK) return bl_pipeline_fail(p, bl_error_context(s, "composite '%s'", name));
    char *n = strdup(name);
    if (!n) return bl_error(BL_ERR_OUT_OF_MEMORY, "composite");
    p->scopes[p->nscopes].name = n;
    p->scopes[p->nscopes].hints = h;
    p->nscopes++;
    return BL_OK;
}

bl_status bl_pipeline_end_composite(bl_pipeline *p) {
    if (p->nscopes == 0)
        return bl_pipeline_fail(p, bl_error(BL_ERR_INVALID_ARG, "end_composite without begin"));
    free(p->scopes[--p->nscopes].name);
    return BL_OK;
}

bl_status bl_pipeline_set_hints(bl_pipeline *p, const char *transform, const char *hints) {
    bl_transform *t = transform ? bl_graph_find(p, transform) : NULL;
    if (!t) return bl_error(BL_ERR_NOT_FOUND, "no transform named '%s'", transform ? transform : "(null)");
    bl_hints h;
    BL_TRY(bl_error_context(bl_hints_parse(hints, &h), "transform '%s'", t->name));
    bl_hints_merge(&t->own_hints, &h);
    return BL_OK;
}

void bl_pipeline_set_worker_accelerators(bl_pipeline *p, bl_accel_kind kind, int count) {
    p->ro.self_accels = count < 0 ? 0 : count;
    p->ro.self_accel_kind = kind;
}

static void effective_hints(const bl_pipeline *p, const bl_transform *t, bl_hints *h) {
    *h = p->ro.hints;
    bl_hints_merge(h, &t->scope_hints);
    bl_hints_merge(h, &t->own_hints);
}

bl_status bl_pipeline_to_text(const bl_pipeline *p, char **out) {
    bl_buf b = {0};
    bl_buf_printf(&b, "pipeline: %d transforms, %d pcollections\n", p->nt, p->npc);
    for (int i = 0; i < p->nt; i++) {
        const bl_transform *t = p->t[i];
        bl_buf_printf(&b, "  %s [%s]", t->name, t->kind_name);
        for (int k = 0; k < t->n_inputs; k++)
            bl_buf_printf(&b, "%s%s", k ? ", " : " <- ", p->pc[t->inputs[k]]->name);
        for (int k = 0; k < t->n_outputs; k++) {
            const bl_pcoll *pc = p->pc[t->outputs[k]];
            bl_buf_printf(&b, "%s%s (%s)", k ? ", " : " -> ", pc->name, bl_coder_name(pc->coder));
        }
        bl_hints h;
        char hs[256];
        effective_hints(p, t, &h);
        bl_hints_format(&h, hs, sizeof hs);
        if (*hs) bl_buf_printf(&b, " {%s}", hs);
        bl_buf_printf(&b, "\n");
    }
    if (!b.data) return bl_error(BL_ERR_OUT_OF_MEMORY, "graph text");
    *out = (char *)b.data;
    return BL_OK;
}

bl_status bl_pipeline_to_dot(const bl_pipeline *p, char **out) {
    bl_buf b = {0};
    bl_buf_printf(&b, "digraph pipeline {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n");
    for (int i = 0; i < p->nt; i++) {
        const bl_transform *t = p->t[i];
        bl_hints h;
        char hs[256];
        effective_hints(p, t, &h);
        bl_hints_format(&h, hs, sizeof hs);
        bl_buf_printf(&b, "  t%d [label=\"%s\\n[%s]%s%s\"%s];\n", i, t->name, t->kind_name, *hs ? "\\n" : "",
                      hs, h.has_accelerator ? ", style=filled, fillcolor=\"#d0e8ff\"" : "");
    }
    for (int i = 0; i < p->nt; i++) {
        const bl_transform *t = p->t[i];
        for (int k = 0; k < t->n_inputs; k++) {
            const bl_pcoll *pc = p->pc[t->inputs[k]];
            const bl_transform *from = p->t[pc->producer];
            bl_buf_printf(&b, "  t%d -> t%d [label=\"%s\"];\n", from->id, t->id,
                          pc->out_index ? strrchr(pc->name, '.') + 1 : bl_coder_name(pc->coder));
        }
    }
    bl_buf_printf(&b, "}\n");
    if (!b.data) return bl_error(BL_ERR_OUT_OF_MEMORY, "graph dot");
    *out = (char *)b.data;
    return BL_OK;
}

bl_status bl_pipeline_collect(bl_pipeline *p, bl_pcoll *pc) {
    if (!pc || pc->p != p)
        return bl_pipeline_fail(p, bl_error(BL_ERR_INVALID_ARG, "collect: bad pcollection"));
    if (!pc->collect) pc->consumers++; /* a collected pcollection is materialized, never fused away */
    pc->collect = true;
    return BL_OK;
}

bl_status bl_pipeline_run(bl_pipeline *p) {
    if (p->sticky != BL_OK) return bl_error(p->sticky, "pipeline was not built correctly: %s", p->sticky_msg);
    if (p->nscopes)
        return bl_error(BL_ERR_INVALID_ARG, "composite '%s' was never ended", p->scopes[p->nscopes - 1].name);
    for (int i = 0; i < p->nt; i++) effective_hints(p, p->t[i], &p->t[i]->hints);
    for (int i = 0; i < p->npc; i++) bl_elist_free(&p->pc[i]->result);
    bl_metrics_clear(&p->metrics);
    p->stall_warnings = 0;
    p->has_run = true;
    if (strcmp(p->ro.runner, "local") == 0) return bl_run_local(p);
    if (strcmp(p->ro.runner, "mpi") == 0) return bl_run_mpi(p);
    return bl_run_direct(p);
}

bool bl_pipeline_is_coordinator(const bl_pipeline *p) { return p->coordinator; }
const char *bl_pipeline_runner_name(const bl_pipeline *p) { return p->ro.runner; }
int bl_pipeline_num_workers(const bl_pipeline *p) { return p->ro.num_workers; }
int bl_pipeline_threads_per_worker(const bl_pipeline *p) { return p->threads; }
int bl_pipeline_stall_warnings(const bl_pipeline *p) { return p->stall_warnings; }

int bl_pipeline_worker_local_rank(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "PMI_LOCAL_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) return atoi(v);
    }
    return 0;
}

const char *bl_pcoll_name(const bl_pcoll *pc) { return pc->name; }
const bl_coder *bl_pcoll_coder(const bl_pcoll *pc) { return pc->coder; }
size_t bl_pcoll_result_count(const bl_pcoll *pc) { return pc->result.n; }

bl_status bl_pcoll_result_value(const bl_pcoll *pc, size_t i, void **value) {
    if (i >= pc->result.n)
        return bl_error(BL_ERR_INVALID_ARG, "'%s': element %zu of %zu", pc->name, i, pc->result.n);
    size_t size;
    const uint8_t *d = bl_eview_at(bl_elist_view(&pc->result, 0, pc->result.n), i, &size);
    return bl_coder_decode(pc->coder, d, size, value);
}

bl_status bl_pcoll_result_json(const bl_pcoll *pc, size_t i, char **out) {
    void *v;
    BL_TRY(bl_pcoll_result_value(pc, i, &v));
    bl_buf b = {0};
    bl_status s = bl_coder_to_json(pc->coder, v, &b);
    bl_coder_free_value(pc->coder, v);
    if (s == BL_OK && !b.data) s = bl_buf_append(&b, "", 0);
    if (s != BL_OK) {
        bl_buf_free(&b);
        return s;
    }
    *out = (char *)b.data;
    return BL_OK;
}
