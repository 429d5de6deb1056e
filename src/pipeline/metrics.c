/* Metrics per transform: counters and distributions. Workers fill a metrics set per bundle; the
 * runner merges it into the pipeline's only when the bundle commits, so a retried bundle is not
 * counted twice. Sets are small (a few names per transform), so a linear table is enough. */
#include <stdlib.h>
#include <string.h>

#include "pipeline/internal.h"

static bl_metric_entry *find(bl_metrics *m, const char *t, const char *name, bool dist, bool add) {
    for (size_t i = m->n; i-- > 0;)
        if (strcmp(m->e[i].name, name) == 0 && strcmp(m->e[i].transform, t) == 0) return &m->e[i];
    if (!add) return NULL;
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        bl_metric_entry *e = realloc(m->e, cap * sizeof *e);
        if (!e) return NULL;
        m->e = e;
        m->cap = cap;
    }
    bl_metric_entry *e = &m->e[m->n];
    memset(e, 0, sizeof *e);
    e->transform = strdup(t);
    e->name = strdup(name);
    if (!e->transform || !e->name) {
        free(e->transform), free(e->name);
        return NULL;
    }
    e->is_distribution = dist;
    m->n++;
    return e;
}

void bl_metrics_inc(bl_metrics *m, const char *transform, const char *name, int64_t delta) {
    bl_metric_entry *e = find(m, transform, name, false, true);
    if (e) e->count += delta; /* dropping a metric on OOM beats failing the pipeline */
}

void bl_metrics_observe(bl_metrics *m, const char *transform, const char *name, double v) {
    bl_metric_entry *e = find(m, transform, name, true, true);
    if (!e) return;
    if (e->count == 0 || v < e->min) e->min = v;
    if (e->count == 0 || v > e->max) e->max = v;
    e->count++;
    e->sum += v;
}

void bl_metrics_merge(bl_metrics *into, const bl_metrics *from) {
    for (size_t i = 0; i < from->n; i++) {
        const bl_metric_entry *f = &from->e[i];
        bl_metric_entry *e = find(into, f->transform, f->name, f->is_distribution, true);
        if (!e) continue;
        if (f->is_distribution && f->count) {
            if (e->count == 0 || f->min < e->min) e->min = f->min;
            if (e->count == 0 || f->max > e->max) e->max = f->max;
            e->sum += f->sum;
        }
        e->count += f->count;
    }
}

void bl_metrics_clear(bl_metrics *m) {
    for (size_t i = 0; i < m->n; i++) free(m->e[i].transform), free(m->e[i].name);
    free(m->e);
    memset(m, 0, sizeof *m);
}

static bl_status put_str(bl_buf *b, const char *s) {
    BL_TRY(bl_buf_put_varint(b, strlen(s)));
    return bl_buf_append(b, s, strlen(s));
}

bl_status bl_metrics_serialize(const bl_metrics *m, bl_buf *out) {
    BL_TRY(bl_buf_put_varint(out, m->n));
    for (size_t i = 0; i < m->n; i++) {
        const bl_metric_entry *e = &m->e[i];
        BL_TRY(put_str(out, e->transform));
        BL_TRY(put_str(out, e->name));
        double d[3] = {e->sum, e->min, e->max};
        BL_TRY(bl_buf_put_varint(out, e->is_distribution));
        BL_TRY(bl_buf_put_varint(out, (uint64_t)e->count));
        BL_TRY(bl_buf_append(out, d, sizeof d)); /* same machine type on every rank */
    }
    return BL_OK;
}

static bl_status get_str(const uint8_t *d, size_t size, size_t *pos, char *out, size_t cap) {
    uint64_t n = 0;
    BL_TRY(bl_read_varint(d, size, pos, &n));
    if (n >= cap || n > size - *pos) return bl_error(BL_ERR_FORMAT, "metrics: bad name length");
    memcpy(out, d + *pos, n);
    out[n] = 0;
    *pos += n;
    return BL_OK;
}

bl_status bl_metrics_deserialize(const uint8_t *d, size_t size, size_t *pos, bl_metrics *out) {
    uint64_t n = 0;
    BL_TRY(bl_read_varint(d, size, pos, &n));
    for (uint64_t i = 0; i < n; i++) {
        char t[512], name[256];
        uint64_t dist, count;
        double v[3];
        BL_TRY(get_str(d, size, pos, t, sizeof t));
        BL_TRY(get_str(d, size, pos, name, sizeof name));
        BL_TRY(bl_read_varint(d, size, pos, &dist));
        BL_TRY(bl_read_varint(d, size, pos, &count));
        if (sizeof v > size - *pos) return bl_error(BL_ERR_FORMAT, "metrics: truncated");
        memcpy(v, d + *pos, sizeof v);
        *pos += sizeof v;
        bl_metrics one = {0};
        bl_metric_entry e = {t, name, dist != 0, (int64_t)count, v[0], v[1], v[2]};
        one.e = &e;
        one.n = 1;
        bl_metrics_merge(out, &one);
    }
    return BL_OK;
}

void bl_metric_inc(bl_dofn_ctx *ctx, const char *name, int64_t delta) {
    if (ctx && ctx->metrics && name) bl_metrics_inc(ctx->metrics, ctx->t->name, name, delta);
}

void bl_metric_observe(bl_dofn_ctx *ctx, const char *name, double value) {
    if (ctx && ctx->metrics && name) bl_metrics_observe(ctx->metrics, ctx->t->name, name, value);
}

bl_status bl_pipeline_metric(const bl_pipeline *p, const char *transform, const char *name,
                             bl_metric_result *out) {
    memset(out, 0, sizeof *out);
    bl_metric_entry *e = find((bl_metrics *)&p->metrics, transform, name, false, false);
    if (!e) return bl_error(BL_ERR_NOT_FOUND, "no metric '%s' for transform '%s'", name, transform);
    out->is_distribution = e->is_distribution;
    if (e->is_distribution) {
        out->count = e->count;
        out->sum = e->sum;
        out->min = e->min;
        out->max = e->max;
        out->mean = e->count ? e->sum / (double)e->count : 0;
    } else {
        out->counter = e->count;
    }
    return BL_OK;
}

static int entry_cmp(const void *a, const void *b) {
    const bl_metric_entry *x = a, *y = b;
    int c = strcmp(x->transform, y->transform);
    return c ? c : strcmp(x->name, y->name);
}

bl_status bl_pipeline_metrics_summary(const bl_pipeline *p, char **out) {
    bl_metrics sorted = {0};
    bl_metrics_merge(&sorted, &p->metrics);
    if (sorted.n) qsort(sorted.e, sorted.n, sizeof *sorted.e, entry_cmp);
    bl_buf b = {0};
    int workers = strcmp(p->ro.runner, "direct") == 0 ? 1 : p->ro.num_workers;
    bl_buf_printf(&b, "metrics (%s runner, %d worker%s x %d compute thread%s):\n", p->ro.runner, workers,
                  workers == 1 ? "" : "s", p->threads, p->threads == 1 ? "" : "s");
    bl_buf_printf(&b, "  %-28s %-20s %12s %s\n", "transform", "metric", "value", "distribution");
    for (size_t i = 0; i < sorted.n; i++) {
        const bl_metric_entry *e = &sorted.e[i];
        if (e->is_distribution)
            bl_buf_printf(&b, "  %-28s %-20s %12lld mean %.3f min %.3f max %.3f\n", e->transform, e->name,
                          (long long)e->count, e->count ? e->sum / (double)e->count : 0.0, e->min, e->max);
        else
            bl_buf_printf(&b, "  %-28s %-20s %12lld\n", e->transform, e->name, (long long)e->count);
    }
    bl_metrics_clear(&sorted);
    if (!b.data) return bl_error(BL_ERR_OUT_OF_MEMORY, "metrics summary");
    *out = (char *)b.data;
    return BL_OK;
}
