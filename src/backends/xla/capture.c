/* Whole steps as one program (bl_device_program_begin / _end).
 *
 * Every device computation of this backend, an op or a gather of memory segments, reaches
 * xla_run with its StableHLO text. Between begin and end, xla_run does not execute: it records
 * the text as a private function of one module and a call to it, and hands out placeholder
 * buffers (no PJRT buffer yet, a value of the module instead) that memory.c stores in segments
 * like any other. Real buffers read by a call become the module's parameters. At the end (or
 * when the host reads a placeholder, or the device is synchronized) the module is compiled (the
 * text is the cache key, so a step of the same shapes compiles once) and run as one execution:
 * XLA inlines the calls and fuses across ops.
 *
 * What a module returns: the placeholders something still holds (segments of memory: weights,
 * optimizer state, the loss, activations a later step or the host may read). Placeholders only
 * the recording holds were overwritten or freed within the step; they stay inside the module,
 * where XLA may fuse them away. Parameters only the recording still holds (the old weights and
 * optimizer state, replaced within the step) are donated: each is aliased to a result of the
 * same size, so XLA writes that result into the parameter's memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/xla/xla.h"
#include "beamlet/xla.h"

typedef struct func {
    char *text; /* the op's program, "func.func @main(..." */
    uint64_t hash;
} func;

typedef struct value {
    xla_buf *buf; /* a placeholder (buf->pjrt NULL until run); the recording holds a reference */
    char name[24];
} value;

struct xla_capture {
    func *funcs;
    int nfuncs, funcs_cap;
    xla_buf **params; /* real buffers read by calls; the recording holds a reference each */
    int nparams, params_cap;
    value *values;
    int nvalues, values_cap;
    xla_text body;
    int ncalls;
    bool failed; /* out of memory while recording: run what was recorded before it */
};

static int64_t executed_programs;

void bl_xla_stats_get(bl_xla_stats *out) {
    *out = (bl_xla_stats){.executions = xla_executions(),
                          .whole_programs = __atomic_load_n(&executed_programs, __ATOMIC_RELAXED)};
    xla_program_stats(&out->compiled, &out->cached, &out->compile_seconds);
}

static bool grow(void **items, int *cap, int need, size_t size) {
    if (need <= *cap) return true;
    int n = *cap ? 2 * *cap : 64;
    while (n < need) n *= 2;
    void *p = realloc(*items, (size_t)n * size);
    if (!p) return false;
    *items = p;
    *cap = n;
    return true;
}

bl_status xla_capture_begin(xla_ctx *c) {
    if (c->op_by_op || c->capture) return BL_OK;
    c->capture = calloc(1, sizeof *c->capture);
    if (!c->capture) return bl_error(BL_ERR_OUT_OF_MEMORY, "xla: program recording");
    xla_text_init(&c->capture->body);
    return BL_OK;
}

static int func_index(struct xla_capture *k, const char *text) {
    uint64_t h = xla_text_hash(text);
    for (int i = 0; i < k->nfuncs; i++)
        if (k->funcs[i].hash == h && strcmp(k->funcs[i].text, text) == 0) return i;
    if (!grow((void **)&k->funcs, &k->funcs_cap, k->nfuncs + 1, sizeof *k->funcs)) return -1;
    char *copy = strdup(text);
    if (!copy) return -1;
    k->funcs[k->nfuncs] = (func){copy, h};
    return k->nfuncs++;
}

static int param_index(struct xla_capture *k, xla_buf *b) {
    for (int i = 0; i < k->nparams; i++)
        if (k->params[i] == b) return i;
    if (!grow((void **)&k->params, &k->params_cap, k->nparams + 1, sizeof *k->params)) return -1;
    k->params[k->nparams] = xla_buf_ref(b);
    return k->nparams++;
}

static const char *value_name(struct xla_capture *k, const xla_buf *b) {
    /* Placeholders are few per step (hundreds); the newest are read most. */
    for (int i = k->nvalues - 1; i >= 0; i--)
        if (k->values[i].buf == b) return k->values[i].name;
    return NULL;
}

static bl_status record(xla_ctx *c, const char *text, int nin, xla_buf *const *in, int nout,
                        const size_t *out_len, xla_buf **out) {
    struct xla_capture *k = c->capture;
    static const char entry[] = "func.func @main(";
    if (strncmp(text, entry, sizeof entry - 1) != 0)
        return bl_error(BL_ERR_INTERNAL, "xla: a program that does not start with its entry function");
    int f = func_index(k, text);
    if (f < 0 || !grow((void **)&k->values, &k->values_cap, k->nvalues + nout, sizeof *k->values))
        return bl_error(BL_ERR_OUT_OF_MEMORY, "xla: program recording");
    for (int i = 0; i < nout; i++) out[i] = NULL;
    int call = k->ncalls++;
    if (nout > 1)
        xla_text_add(&k->body, "  %%c%d:%d = func.call @f%d(", call, nout, f);
    else
        xla_text_add(&k->body, "  %%c%d = func.call @f%d(", call, f);
    for (int i = 0; i < nin; i++) {
        const char *name = in[i]->pjrt ? NULL : value_name(k, in[i]);
        if (!in[i]->pjrt && !name)
            return bl_error(BL_ERR_INTERNAL,
                            "xla: a value of a program that failed to run (see the error before)");
        if (name) {
            xla_text_add(&k->body, "%s%s", i ? ", " : "", name);
        } else {
            int p = param_index(k, in[i]);
            if (p < 0) return bl_error(BL_ERR_OUT_OF_MEMORY, "xla: program recording");
            xla_text_add(&k->body, "%s%%p%d", i ? ", " : "", p);
        }
    }
    xla_text_add(&k->body, ") : (");
    for (int i = 0; i < nin; i++) xla_text_add(&k->body, "%stensor<%zuxui8>", i ? ", " : "", in[i]->len);
    xla_text_add(&k->body, ") -> (");
    for (int i = 0; i < nout; i++) xla_text_add(&k->body, "%stensor<%zuxui8>", i ? ", " : "", out_len[i]);
    xla_text_add(&k->body, ")\n");
    for (int i = 0; i < nout; i++) {
        xla_buf *b = calloc(1, sizeof *b);
        if (!b) {
            for (int j = 0; j < i; j++) xla_buf_unref(out[j]), out[j] = NULL;
            return bl_error(BL_ERR_OUT_OF_MEMORY, "xla: program recording");
        }
        b->len = out_len[i];
        b->refs = 2; /* the caller's and the recording's */
        value *v = &k->values[k->nvalues++];
        v->buf = b;
        if (nout > 1)
            snprintf(v->name, sizeof v->name, "%%c%d#%d", call, i);
        else
            snprintf(v->name, sizeof v->name, "%%c%d", call);
        out[i] = b;
    }
    if (k->body.oom) return bl_error(BL_ERR_OUT_OF_MEMORY, "xla: program text");
    return BL_OK;
}

bl_status xla_run(xla_ctx *c, const char *text, int nin, xla_buf *const *in, int nout, const size_t *out_len,
                  xla_buf **out) {
    if (c->capture && !c->capture->failed) {
        bl_status s = record(c, text, nin, in, nout, out_len, out);
        if (s == BL_OK) return BL_OK;
        /* A call only half written would break the module: run the calls before it, then this
         * one on its own. */
        c->capture->failed = true;
        BL_TRY(xla_capture_flush(c));
    }
    for (int i = 0; i < nin; i++) BL_TRY(xla_buf_ready(c, in[i]));
    return xla_execute(c, text, nin, in, nout, out_len, out);
}

static void release(struct xla_capture *k) {
    for (int i = 0; i < k->nfuncs; i++) free(k->funcs[i].text);
    for (int i = 0; i < k->nparams; i++) xla_buf_unref(k->params[i]);
    for (int i = 0; i < k->nvalues; i++) xla_buf_unref(k->values[i].buf);
    k->nfuncs = k->nparams = k->nvalues = k->ncalls = 0;
    k->failed = false;
    xla_text_free(&k->body);
    xla_text_init(&k->body);
}

/* The module: the recorded functions (private, renamed), then main over the parameters,
 * returning the live placeholders. */
static bl_status module_text(struct xla_capture *k, const int *results, int nresults, const int *alias,
                             xla_text *t) {
    static const char entry[] = "func.func @main(";
    for (int i = 0; i < k->nfuncs; i++)
        xla_text_add(t, "func.func private @f%d(%s\n", i, k->funcs[i].text + sizeof entry - 1);
    xla_text_add(t, "func.func @main(");
    for (int p = 0; p < k->nparams; p++) {
        xla_text_add(t, "%s%%p%d: tensor<%zuxui8>", p ? ", " : "", p, k->params[p]->len);
        if (alias[p] >= 0) xla_text_add(t, " {tf.aliasing_output = %d : i32}", alias[p]);
    }
    xla_text_add(t, ") -> (");
    for (int r = 0; r < nresults; r++)
        xla_text_add(t, "%stensor<%zuxui8>", r ? ", " : "", k->values[results[r]].buf->len);
    xla_text_add(t, ") {\n%s  return ", k->body.s ? k->body.s : "");
    for (int r = 0; r < nresults; r++) xla_text_add(t, "%s%s", r ? ", " : "", k->values[results[r]].name);
    xla_text_add(t, " : ");
    for (int r = 0; r < nresults; r++)
        xla_text_add(t, "%stensor<%zuxui8>", r ? ", " : "", k->values[results[r]].buf->len);
    xla_text_add(t, "\n}\n");
    return t->oom ? bl_error(BL_ERR_OUT_OF_MEMORY, "xla: program text") : BL_OK;
}

bl_status xla_capture_flush(xla_ctx *c) {
    struct xla_capture *k = c->capture;
    if (!k || k->ncalls == 0) {
        if (k) release(k);
        return BL_OK;
    }
    int *results = malloc(sizeof *results * (size_t)(k->nvalues + 1));
    int *alias = malloc(sizeof *alias * (size_t)(k->nparams + 1));
    size_t *len = malloc(sizeof *len * (size_t)(k->nvalues + 1));
    xla_buf **bufs = calloc((size_t)k->nvalues + 1, sizeof *bufs);
    bool *taken = calloc((size_t)k->nvalues + 1, sizeof *taken);
    bl_status s =
        results && alias && len && bufs && taken ? BL_OK : bl_error(BL_ERR_OUT_OF_MEMORY, "xla: program");
    int nresults = 0;
    if (s == BL_OK) {
        for (int i = 0; i < k->nvalues; i++)
            if (k->values[i].buf->refs > 1) {
                len[nresults] = k->values[i].buf->len;
                results[nresults++] = i;
            }
        /* Donation: a parameter nothing but the recording holds, to the first free result of
         * its size. The pairing follows recording order, so the same step gives the same
         * text. */
        for (int p = 0; p < k->nparams; p++) {
            alias[p] = -1;
            if (k->params[p]->refs != 1) continue;
            for (int r = 0; r < nresults; r++)
                if (!taken[r] && len[r] == k->params[p]->len) {
                    taken[r] = true;
                    alias[p] = r;
                    break;
                }
        }
    }
    if (s == BL_OK && nresults == 0) {
        /* Nothing the step wrote is still held: nothing to compute. */
        free(results), free(alias), free(len), free(bufs), free(taken);
        release(k);
        return BL_OK;
    }
    xla_text t;
    xla_text_init(&t);
    if (s == BL_OK) s = module_text(k, results, nresults, alias, &t);
    if (s == BL_OK) s = xla_execute(c, t.s, k->nparams, k->params, nresults, len, bufs);
    xla_text_free(&t);
    if (s == BL_OK) {
        __atomic_add_fetch(&executed_programs, 1, __ATOMIC_RELAXED);
        /* The placeholders become the results: every segment holding one now holds them. */
        for (int r = 0; r < nresults; r++) {
            xla_buf *v = k->values[results[r]].buf;
            v->pjrt = bufs[r]->pjrt;
            bufs[r]->pjrt = NULL;
            xla_buf_unref(bufs[r]);
        }
    }
    free(results), free(alias), free(len), free(bufs), free(taken);
    /* After a failure the placeholders stay empty: reading one reports it (xla_buf_ready). */
    release(k);
    return s;
}

bl_status xla_capture_end(xla_ctx *c) {
    if (!c->capture) return BL_OK;
    bl_status s = xla_capture_flush(c);
    xla_text_free(&c->capture->body);
    free(c->capture->funcs);
    free(c->capture->params);
    free(c->capture->values);
    free(c->capture);
    c->capture = NULL;
    return s;
}

bl_status xla_buf_ready(xla_ctx *c, xla_buf *b) {
    if (!b->pjrt && c->capture) BL_TRY(xla_capture_flush(c));
    if (!b->pjrt)
        return bl_error(BL_ERR_INTERNAL,
                        "xla: a value of a program that failed to run (see the error before)");
    return BL_OK;
}
