/* CombineGlobally and CombinePerKey with combiner lifting: each bundle folds its inputs into
 * accumulators (one per key), only accumulators cross workers, and a second phase merges them by
 * key partition and extracts outputs. Keys are grouped by their encoded bytes. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/internal.h"

/* ---- ready-made CombineFns ---------------------------------------------------------------- */

static bl_status i64_create(void *u, void **acc) {
    (void)u;
    int64_t *x = calloc(1, sizeof *x);
    if (!x) return bl_error(BL_ERR_OUT_OF_MEMORY, "accumulator");
    *acc = x;
    return BL_OK;
}
static bl_status sum_add(void *u, void *acc, const void *in) {
    (void)u;
    *(int64_t *)acc += *(const int64_t *)in;
    return BL_OK;
}
static bl_status count_add(void *u, void *acc, const void *in) {
    (void)u, (void)in;
    *(int64_t *)acc += 1;
    return BL_OK;
}
static bl_status i64_merge(void *u, void *acc, const void *other) {
    (void)u;
    *(int64_t *)acc += *(const int64_t *)other;
    return BL_OK;
}
static bl_status i64_extract(void *u, const void *acc, void **out) {
    (void)u;
    int64_t *x = malloc(sizeof *x);
    if (!x) return bl_error(BL_ERR_OUT_OF_MEMORY, "output");
    *x = *(const int64_t *)acc;
    *out = x;
    return BL_OK;
}

/* The mean accumulator is (sum, count) carried as a KV<double, int64>. */
static bl_status mean_create(void *u, void **acc) {
    (void)u;
    bl_kv *kv = calloc(1, sizeof *kv);
    double *s = calloc(1, sizeof *s);
    int64_t *c = calloc(1, sizeof *c);
    if (!kv || !s || !c) {
        free(kv), free(s), free(c);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "accumulator");
    }
    kv->key = s;
    kv->value = c;
    *acc = kv;
    return BL_OK;
}
static bl_status mean_add(void *u, void *acc, const void *in) {
    (void)u;
    bl_kv *kv = acc;
    *(double *)kv->key += *(const double *)in;
    *(int64_t *)kv->value += 1;
    return BL_OK;
}
static bl_status mean_merge(void *u, void *acc, const void *other) {
    (void)u;
    bl_kv *kv = acc;
    const bl_kv *o = other;
    *(double *)kv->key += *(const double *)o->key;
    *(int64_t *)kv->value += *(const int64_t *)o->value;
    return BL_OK;
}
static bl_status mean_extract(void *u, const void *acc, void **out) {
    (void)u;
    const bl_kv *kv = acc;
    double *x = malloc(sizeof *x);
    if (!x) return bl_error(BL_ERR_OUT_OF_MEMORY, "output");
    int64_t n = *(const int64_t *)kv->value;
    *x = n ? *(const double *)kv->key / (double)n : 0.0;
    *out = x;
    return BL_OK;
}

/* Filled once (the coders are function results, not constants), then only read. */
static bl_combine_fn fn_sum, fn_count, fn_mean;
static pthread_once_t fns_once = PTHREAD_ONCE_INIT;

static void init_fns(void) {
    fn_sum = (bl_combine_fn){i64_create,       sum_add,          i64_merge, i64_extract,
                             bl_coder_int64(), bl_coder_int64(), NULL};
    fn_count = (bl_combine_fn){i64_create,       count_add,        i64_merge, i64_extract,
                               bl_coder_int64(), bl_coder_int64(), NULL};
    fn_mean = (bl_combine_fn){mean_create,
                              mean_add,
                              mean_merge,
                              mean_extract,
                              bl_coder_kv(bl_coder_double(), bl_coder_int64()),
                              bl_coder_double(),
                              NULL};
}

const bl_combine_fn *bl_combine_sum_int64(void) {
    pthread_once(&fns_once, init_fns);
    return &fn_sum;
}
const bl_combine_fn *bl_combine_count(void) {
    pthread_once(&fns_once, init_fns);
    return &fn_count;
}
const bl_combine_fn *bl_combine_mean_double(void) {
    pthread_once(&fns_once, init_fns);
    return &fn_mean;
}

/* ---- the transforms ----------------------------------------------------------------------- */

static bl_status check_fn(bl_pipeline *p, const char *name, const bl_combine_fn *fn) {
    if (!fn || !fn->create_accumulator || !fn->add_input || !fn->merge_accumulators || !fn->extract_output ||
        !fn->accumulator_coder || !fn->output_coder)
        return bl_pipeline_fail(p, bl_error(BL_ERR_INVALID_ARG,
                                            "Combine '%s': the CombineFn needs "
                                            "all four functions and both coders",
                                            name));
    return BL_OK;
}

bl_status bl_combine_globally(bl_pipeline *p, const char *name, bl_pcoll *in, const bl_combine_fn *fn,
                              bl_pcoll **out) {
    *out = NULL;
    bl_transform *t;
    BL_TRY(bl_graph_add_transform(p, name, BL_T_COMBINE_GLOBAL, "CombineGlobally", &in, 1, &t));
    BL_TRY(check_fn(p, t->name, fn));
    t->cfn = *fn;
    return bl_graph_add_output(p, t, fn->output_coder, NULL, out);
}

bl_status bl_combine_per_key(bl_pipeline *p, const char *name, bl_pcoll *in, const bl_combine_fn *fn,
                             bl_pcoll **out) {
    *out = NULL;
    bl_transform *t;
    BL_TRY(bl_graph_add_transform(p, name, BL_T_COMBINE_PERKEY, "CombinePerKey", &in, 1, &t));
    BL_TRY(bl_check_keyed(p, "CombinePerKey", t->name, in));
    BL_TRY(check_fn(p, t->name, fn));
    t->cfn = *fn;
    return bl_graph_add_output(p, t, bl_coder_kv(bl_coder_key(in->coder), fn->output_coder), NULL, out);
}

/* ---- grouping by encoded key ------------------------------------------------------------ */

static int keyref_cmp(const void *a, const void *b) {
    const bl_keyref *x = a, *y = b;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(x->data, y->data, n);
    if (c) return c;
    if (x->klen != y->klen) return x->klen < y->klen ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx; /* stable: values keep arrival order */
}

bl_status bl_sort_by_key(const bl_coder *kv, bl_eview in, bl_keyref **out) {
    *out = NULL;
    bl_keyref *r = malloc((in.n ? in.n : 1) * sizeof *r);
    if (!r) return bl_error(BL_ERR_OUT_OF_MEMORY, "key index of %zu", in.n);
    for (size_t i = 0; i < in.n; i++) {
        r[i].data = bl_eview_at(in, i, &r[i].size);
        r[i].idx = i;
        bl_status s = bl_kv_key_len(kv, r[i].data, r[i].size, &r[i].klen);
        if (s != BL_OK) {
            free(r);
            return bl_error_context(s, "element %zu", i);
        }
    }
    qsort(r, in.n, sizeof *r, keyref_cmp);
    *out = r;
    return BL_OK;
}

bool bl_same_key(const bl_keyref *a, const bl_keyref *b) {
    return a->klen == b->klen && memcmp(a->data, b->data, a->klen) == 0;
}

/* Appends key bytes + encoding of `value` with coder c as one element. */
static bl_status push_kv(bl_elist *out, const bl_keyref *k, const bl_coder *c, const void *value,
                         bl_buf *scratch) {
    scratch->len = 0;
    BL_TRY(bl_buf_append(scratch, k->data, k->klen));
    BL_TRY(bl_coder_encode(c, value, scratch));
    return bl_elist_push(out, scratch->data, scratch->len);
}

static bl_status push_value(bl_elist *out, const bl_coder *c, const void *value, bl_buf *scratch) {
    scratch->len = 0;
    BL_TRY(bl_coder_encode(c, value, scratch));
    return bl_elist_push(out, scratch->data, scratch->len);
}

/* Folds input elements into accumulators: one per key (sorted), or one for the bundle. */
bl_status bl_combine_partial(const bl_transform *t, const bl_coder *in_coder, bool global, bl_eview in,
                             bl_elist *out) {
    const bl_combine_fn *f = &t->cfn;
    bl_buf scratch = {0};
    bl_status s = BL_OK;
    void *acc = NULL;
    if (global) {
        s = f->create_accumulator(f->user, &acc);
        for (size_t i = 0; i < in.n && s == BL_OK; i++) {
            size_t size;
            const uint8_t *d = bl_eview_at(in, i, &size);
            void *v;
            s = bl_coder_decode(in_coder, d, size, &v);
            if (s == BL_OK) s = f->add_input(f->user, acc, v);
            bl_coder_free_value(in_coder, v);
        }
        if (s == BL_OK) s = push_value(out, f->accumulator_coder, acc, &scratch);
        bl_coder_free_value(f->accumulator_coder, acc);
        bl_buf_free(&scratch);
        return s;
    }
    bl_keyref *r;
    BL_TRY(bl_sort_by_key(in_coder, in, &r));
    const bl_coder *vc = bl_coder_value(in_coder);
    for (size_t i = 0; i < in.n && s == BL_OK; i++) {
        if (i == 0 || !bl_same_key(&r[i - 1], &r[i])) s = f->create_accumulator(f->user, &acc);
        void *v = NULL;
        if (s == BL_OK) s = bl_coder_decode(vc, r[i].data + r[i].klen, r[i].size - r[i].klen, &v);
        if (s == BL_OK) s = f->add_input(f->user, acc, v);
        bl_coder_free_value(vc, v);
        if (s == BL_OK && (i + 1 == in.n || !bl_same_key(&r[i], &r[i + 1]))) {
            s = push_kv(out, &r[i], f->accumulator_coder, acc, &scratch);
            bl_coder_free_value(f->accumulator_coder, acc);
            acc = NULL;
        }
    }
    bl_coder_free_value(f->accumulator_coder, acc);
    free(r);
    bl_buf_free(&scratch);
    return s;
}

/* Merges accumulators (by key) and extracts outputs. */
bl_status bl_combine_merge(const bl_transform *t, const bl_coder *in_coder, bool global, bl_eview in,
                           bl_elist *out) {
    const bl_combine_fn *f = &t->cfn;
    const bl_coder *ac = f->accumulator_coder;
    bl_buf scratch = {0};
    bl_status s = BL_OK;
    void *acc = NULL, *o = NULL;
    if (global) {
        s = f->create_accumulator(f->user, &acc);
        for (size_t i = 0; i < in.n && s == BL_OK; i++) {
            size_t size;
            const uint8_t *d = bl_eview_at(in, i, &size);
            void *other = NULL;
            s = bl_coder_decode(ac, d, size, &other);
            if (s == BL_OK) s = f->merge_accumulators(f->user, acc, other);
            bl_coder_free_value(ac, other);
        }
        if (s == BL_OK) s = f->extract_output(f->user, acc, &o);
        if (s == BL_OK) s = push_value(out, f->output_coder, o, &scratch);
        bl_coder_free_value(f->output_coder, o);
        bl_coder_free_value(ac, acc);
        bl_buf_free(&scratch);
        return s;
    }
    const bl_coder *kvac = bl_coder_kv(bl_coder_key(in_coder), ac);
    bl_keyref *r;
    BL_TRY(bl_sort_by_key(kvac, in, &r));
    for (size_t i = 0; i < in.n && s == BL_OK; i++) {
        void *v = NULL;
        s = bl_coder_decode(ac, r[i].data + r[i].klen, r[i].size - r[i].klen, &v);
        if (s != BL_OK) break;
        if (i == 0 || !bl_same_key(&r[i - 1], &r[i])) {
            acc = v;
        } else {
            s = f->merge_accumulators(f->user, acc, v);
            bl_coder_free_value(ac, v);
        }
        if (s == BL_OK && (i + 1 == in.n || !bl_same_key(&r[i], &r[i + 1]))) {
            o = NULL;
            s = f->extract_output(f->user, acc, &o);
            if (s == BL_OK) s = push_kv(out, &r[i], f->output_coder, o, &scratch);
            bl_coder_free_value(f->output_coder, o);
            bl_coder_free_value(ac, acc);
            acc = NULL;
        }
    }
    bl_coder_free_value(ac, acc);
    free(r);
    bl_buf_free(&scratch);
    return s;
}

/* GroupByKey over one partition: KV<K,V>... -> KV<K, iterable<V>> in key-byte order. */
bl_status bl_group_partition(const bl_coder *in_coder, bl_eview in, bl_elist *out) {
    bl_keyref *r;
    BL_TRY(bl_sort_by_key(in_coder, in, &r));
    bl_buf b = {0};
    bl_status s = BL_OK;
    for (size_t i = 0; i < in.n && s == BL_OK;) {
        size_t j = i + 1;
        while (j < in.n && bl_same_key(&r[i], &r[j])) j++;
        /* The iterable's encoding is a count then the values' bytes, so no decoding is needed. */
        b.len = 0;
        s = bl_buf_append(&b, r[i].data, r[i].klen);
        if (s == BL_OK) s = bl_buf_put_varint(&b, j - i);
        for (size_t k = i; k < j && s == BL_OK; k++)
            s = bl_buf_append(&b, r[k].data + r[k].klen, r[k].size - r[k].klen);
        if (s == BL_OK) s = bl_elist_push(out, b.data, b.len);
        i = j;
    }
    bl_buf_free(&b);
    free(r);
    return s;
}
