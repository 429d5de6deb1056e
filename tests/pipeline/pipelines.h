/* Pipelines shared by the runner tests: each builds the same graph whatever the runner, runs it
 * with the given flags and returns its results as sorted JSON lines, so the direct, local and
 * mpi runners can be compared string for string. Deterministic: fixed inputs, fixed seeds. */
#ifndef BL_TEST_PIPELINES_H
#define BL_TEST_PIPELINES_H

#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "beamlet/pipeline.h"
#include "bl_test.h"

/* Each test uses a subset of these pipelines. */
#pragma GCC diagnostic ignored "-Wunused-function"

/* ---- helpers ----------------------------------------------------------------------------- */

/* Builds a pipeline from a NULL-terminated flag list (argv[0] is added). */
static bl_status tp_new(const char *const *flags, bl_pipeline **out) {
    bl_options *o;
    BL_TRY(bl_options_new(&o));
    char *argv[32] = {"test"};
    int argc = 1;
    for (int i = 0; flags && flags[i] && argc < 31; i++) argv[argc++] = (char *)flags[i];
    bl_status s = bl_options_parse(o, argc, argv);
    if (s == BL_OK) s = bl_pipeline_new(o, out);
    bl_options_free(o);
    return s;
}

static int tp_strcmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The collected elements of pc as JSON, sorted, one a line. Caller frees. */
static char *tp_sorted(const bl_pcoll *pc) {
    size_t n = bl_pcoll_result_count(pc);
    char **lines = calloc(n ? n : 1, sizeof *lines);
    size_t total = 1;
    for (size_t i = 0; i < n; i++) {
        if (bl_pcoll_result_json(pc, i, &lines[i]) != BL_OK) lines[i] = strdup("<bad>");
        total += strlen(lines[i]) + 1;
    }
    qsort(lines, n, sizeof *lines, tp_strcmp);
    char *out = malloc(total), *w = out;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(lines[i]);
        memcpy(w, lines[i], l);
        w[l] = '\n';
        w += l + 1;
        free(lines[i]);
    }
    *w = 0;
    free(lines);
    return out;
}

static int64_t tp_counter(const bl_pipeline *p, const char *t, const char *name) {
    bl_metric_result r;
    return bl_pipeline_metric(p, t, name, &r) == BL_OK ? r.counter : -1;
}

/* ---- word count ------------------------------------------------------------------------- */

static const char *tp_text[] = {
    "the quick brown fox jumps over the lazy dog",
    "the dog barks",
    "a fox is quick and the fox is brown",
    "",
    "lazy lazy dog",
};

static bl_status tp_split(void *user, const void *in, bl_emitter *out) {
    (void)user;
    const char *s = in;
    char word[64];
    while (*s) {
        while (*s == ' ') s++;
        size_t n = 0;
        while (s[n] && s[n] != ' ' && n < sizeof word - 1) n++;
        if (!n) break;
        memcpy(word, s, n);
        word[n] = 0;
        BL_TRY(bl_emit(out, word));
        s += n;
    }
    return BL_OK;
}

static bl_status tp_pair_one(void *user, const void *in, void **out) {
    (void)user;
    bl_kv *kv = malloc(sizeof *kv);
    int64_t *one = malloc(sizeof *one);
    *one = 1;
    kv->key = strdup(in);
    kv->value = one;
    *out = kv;
    return BL_OK;
}

/* Lines -> words -> (word, 1) -> CombinePerKey(sum). `repeat` multiplies the input. */
static bl_status tp_wordcount(const char *const *flags, int repeat, char **result, bl_pipeline **keep) {
    bl_pipeline *p;
    BL_TRY(tp_new(flags, &p));
    const void *vals[5 * 64];
    size_t n = 0;
    for (int r = 0; r < repeat && r < 64; r++)
        for (int i = 0; i < 5; i++) vals[n++] = tp_text[i];
    const bl_coder *kvc = bl_coder_kv(bl_coder_string(), bl_coder_int64());
    bl_pcoll *lines, *words, *pairs, *counts;
    bl_status s = bl_create(p, "Lines", bl_coder_string(), vals, n, &lines);
    if (s == BL_OK) s = bl_flatmap(p, "Split", lines, tp_split, NULL, bl_coder_string(), &words);
    if (s == BL_OK) s = bl_map(p, "PairWithOne", words, tp_pair_one, NULL, kvc, &pairs);
    if (s == BL_OK) s = bl_combine_per_key(p, "Count", pairs, bl_combine_sum_int64(), &counts);
    if (s == BL_OK) s = bl_pipeline_collect(p, counts);
    if (s == BL_OK) s = bl_pipeline_run(p);
    if (s == BL_OK && bl_pipeline_is_coordinator(p))
        *result = tp_sorted(counts);
    else
        *result = strdup("");
    if (keep && s == BL_OK)
        *keep = p;
    else
        bl_pipeline_free(p);
    return s;
}

/* ---- group and combine per key ---------------------------------------------------------- */

static bl_status tp_sum_group(void *user, const void *in, void **out) {
    (void)user;
    const bl_kv *kv = in;
    const bl_iter *it = kv->value;
    int64_t sum = 0;
    for (size_t i = 0; i < it->n; i++) sum += *(int64_t *)it->items[i];
    bl_kv *o = malloc(sizeof *o);
    o->key = malloc(sizeof(int64_t));
    *(int64_t *)o->key = *(int64_t *)kv->key;
    o->value = malloc(sizeof(int64_t));
    *(int64_t *)o->value = sum * 1000 + (int64_t)it->n; /* sum and group size in one number */
    *out = o;
    return BL_OK;
}

/* 500 (key, value) pairs over 7 keys: GroupByKey + sum, CombinePerKey(mean), CombineGlobally. */
static bl_status tp_group_combine(const char *const *flags, char **result) {
    bl_pipeline *p;
    BL_TRY(tp_new(flags, &p));
    enum {
        N = 500
    };
    int64_t keys[N];
    double vals[N];
    bl_kv kvs[N];
    const void *ptrs[N];
    bl_kv dkv[N];
    const void *dptrs[N];
    for (int i = 0; i < N; i++) {
        keys[i] = (i * 37) % 7;
        vals[i] = (double)(i % 11);
        kvs[i] = (bl_kv){&keys[i], &keys[i]};
        ptrs[i] = &kvs[i];
        dkv[i] = (bl_kv){&keys[i], &vals[i]};
        dptrs[i] = &dkv[i];
    }
    const bl_coder *ii = bl_coder_kv(bl_coder_int64(), bl_coder_int64());
    const bl_coder *id = bl_coder_kv(bl_coder_int64(), bl_coder_double());
    bl_pcoll *a, *g, *sums, *d, *means, *vonly, *total, *all;
    bl_status s = bl_create(p, "Pairs", ii, ptrs, N, &a);
    if (s == BL_OK) s = bl_group_by_key(p, "Group", a, &g);
    if (s == BL_OK) s = bl_map(p, "SumGroups", g, tp_sum_group, NULL, ii, &sums);
    if (s == BL_OK) s = bl_create(p, "Doubles", id, dptrs, N, &d);
    if (s == BL_OK) s = bl_combine_per_key(p, "Mean", d, bl_combine_mean_double(), &means);
    if (s == BL_OK) s = bl_create(p, "Values", bl_coder_int64(), (const void *const *)&ptrs[0], 0, &vonly);
    (void)vonly;
    if (s == BL_OK) s = bl_combine_globally(p, "CountAll", a, bl_combine_count(), &total);
    bl_pcoll *both[2] = {sums, NULL};
    if (s == BL_OK) s = bl_combine_globally(p, "CountSums", sums, bl_combine_count(), &both[1]);
    bl_pcoll *totals[2] = {total, both[1]};
    if (s == BL_OK) s = bl_flatten(p, "Totals", totals, 2, &all);
    if (s == BL_OK) s = bl_pipeline_collect(p, sums);
    if (s == BL_OK) s = bl_pipeline_collect(p, means);
    if (s == BL_OK) s = bl_pipeline_collect(p, all);
    if (s == BL_OK) s = bl_pipeline_run(p);
    if (s == BL_OK && bl_pipeline_is_coordinator(p)) {
        char *x = tp_sorted(sums), *y = tp_sorted(means), *z = tp_sorted(all);
        size_t len = strlen(x) + strlen(y) + strlen(z) + 8;
        *result = malloc(len);
        snprintf(*result, len, "%s--\n%s--\n%s", x, y, z);
        free(x), free(y), free(z);
    } else {
        *result = strdup("");
    }
    bl_pipeline_free(p);
    return s;
}

/* ---- a DoFn that records its lifecycle -------------------------------------------------- */

typedef struct tp_life {
    int in_bundle;
} tp_life;

static bl_status life_setup(bl_dofn_ctx *c) {
    bl_metric_inc(c, "setup", 1);
    bl_dofn_set_state(c, calloc(1, sizeof(tp_life)));
    return BL_OK;
}
static bl_status life_start(bl_dofn_ctx *c) {
    tp_life *l = bl_dofn_state(c);
    if (!l || l->in_bundle) bl_metric_inc(c, "order_violation", 1);
    if (l) l->in_bundle = 1;
    bl_metric_inc(c, "start_bundle", 1);
    return BL_OK;
}
static bl_status life_process(bl_dofn_ctx *c, const void *e, bl_emitter *out) {
    tp_life *l = bl_dofn_state(c);
    if (!l || !l->in_bundle) bl_metric_inc(c, "order_violation", 1);
    bl_metric_inc(c, "process", 1);
    bl_metric_observe(c, "value", (double)*(const int64_t *)e);
    return bl_emit(out, e);
}
static bl_status life_finish(bl_dofn_ctx *c, bl_emitter *out) {
    tp_life *l = bl_dofn_state(c);
    if (!l || !l->in_bundle) bl_metric_inc(c, "order_violation", 1);
    if (l) l->in_bundle = 0;
    bl_metric_inc(c, "finish_bundle", 1);
    return bl_emit_tagged(out, "bundles", "bundle");
}
static void life_teardown(bl_dofn_ctx *c) {
    bl_metric_inc(c, "teardown", 1);
    free(bl_dofn_state(c));
}

static bl_dofn tp_life_fn(void) {
    bl_dofn fn = {.setup = life_setup,
                  .start_bundle = life_start,
                  .process = life_process,
                  .finish_bundle = life_finish,
                  .teardown = life_teardown,
                  .out_coder = bl_coder_int64(),
                  .num_side_outputs = 1};
    fn.side_tags[0] = "bundles";
    fn.side_coders[0] = bl_coder_string();
    return fn;
}

/* Returns "process=N setup_eq_teardown=1 start_eq_finish=1 bundles_ok=1 violations=0". */
static bl_status tp_lifecycle(const char *const *flags, char **result) {
    bl_pipeline *p;
    BL_TRY(tp_new(flags, &p));
    enum {
        N = 100
    };
    int64_t v[N];
    const void *ptrs[N];
    for (int i = 0; i < N; i++) v[i] = i, ptrs[i] = &v[i];
    bl_dofn fn = tp_life_fn();
    bl_pcoll *in, *out, *bundles;
    bl_status s = bl_create(p, "Numbers", bl_coder_int64(), ptrs, N, &in);
    if (s == BL_OK) s = bl_pardo(p, "Life", in, &fn, &out);
    if (s == BL_OK) s = bl_pardo_output(out, "bundles", &bundles);
    if (s == BL_OK) s = bl_pipeline_collect(p, out);
    if (s == BL_OK) s = bl_pipeline_collect(p, bundles);
    if (s == BL_OK) s = bl_pipeline_run(p);
    *result = calloc(1, 256);
    if (s == BL_OK && bl_pipeline_is_coordinator(p)) {
        int64_t setup = tp_counter(p, "Life", "setup"), td = tp_counter(p, "Life", "teardown");
        int64_t sb = tp_counter(p, "Life", "start_bundle"), fb = tp_counter(p, "Life", "finish_bundle");
        snprintf(*result, 256,
                 "process=%lld out=%zu setup_eq_teardown=%d start_eq_finish=%d "
                 "bundles_ok=%d violations=%lld",
                 (long long)tp_counter(p, "Life", "process"), bl_pcoll_result_count(out),
                 setup >= 1 && setup == td, sb >= 1 && sb == fb,
                 (int64_t)bl_pcoll_result_count(bundles) == sb,
                 (long long)tp_counter(p, "Life", "order_violation"));
    }
    bl_pipeline_free(p);
    return s;
}

/* ---- a DoFn that fails twice, then succeeds; and one that always fails ------------------- */

static bl_status flaky_setup(bl_dofn_ctx *c) {
    bl_metric_inc(c, "setup", 1);
    return BL_OK;
}
static void flaky_teardown(bl_dofn_ctx *c) { bl_metric_inc(c, "teardown", 1); }
static bl_status flaky_process(bl_dofn_ctx *c, const void *e, bl_emitter *out) {
    int64_t x = *(const int64_t *)e;
    int always = bl_dofn_user(c) != NULL;
    if (x == 17 && (always || bl_dofn_attempt(c) <= 2))
        return bl_error(BL_ERR_IO, "element 17 is %s (attempt %d)", always ? "always broken" : "flaky",
                        bl_dofn_attempt(c));
    int64_t y = x * 3;
    return bl_emit(out, &y);
}

/* Returns "sum=S in=N setups>=3:1 setup_eq_teardown:1" or fails with the DoFn's message. */
static bl_status tp_flaky(const char *const *flags, bool always, char **result) {
    bl_pipeline *p;
    BL_TRY(tp_new(flags, &p));
    enum {
        N = 40
    };
    int64_t v[N];
    const void *ptrs[N];
    for (int i = 0; i < N; i++) v[i] = i, ptrs[i] = &v[i];
    static int marker;
    bl_dofn fn = {.setup = flaky_setup,
                  .process = flaky_process,
                  .teardown = flaky_teardown,
                  .out_coder = bl_coder_int64(),
                  .user = always ? &marker : NULL};
    bl_pcoll *in, *out, *sum;
    bl_status s = bl_create(p, "Numbers", bl_coder_int64(), ptrs, N, &in);
    if (s == BL_OK) s = bl_pardo(p, "Flaky", in, &fn, &out);
    if (s == BL_OK) s = bl_combine_globally(p, "Sum", out, bl_combine_sum_int64(), &sum);
    if (s == BL_OK) s = bl_pipeline_collect(p, sum);
    if (s == BL_OK) s = bl_pipeline_run(p);
    *result = calloc(1, 256);
    if (s == BL_OK && bl_pipeline_is_coordinator(p)) {
        char *x = tp_sorted(sum);
        int64_t su = tp_counter(p, "Flaky", "setup"), td = tp_counter(p, "Flaky", "teardown");
        snprintf(*result, 256, "sum=%s in=%lld setups>=3:%d setup_eq_teardown:%d", x,
                 (long long)tp_counter(p, "Flaky", "elements_in"), su >= 3, su == td);
        free(x);
    }
    bl_pipeline_free(p);
    return s;
}

/* ---- a DoFn failing with a given status: retried only when it is transient ---------------- */

static bl_status failing_process(bl_dofn_ctx *c, const void *e, bl_emitter *out) {
    const bl_status *status = bl_dofn_user(c);
    if (*(const int64_t *)e == 7)
        return bl_error(*status, "element 7 failed with %s (attempt %d)", bl_status_name(*status),
                        bl_dofn_attempt(c));
    return bl_emit(out, e);
}

/* Runs 20 numbers through a DoFn that fails on 7 with `status`: the run fails with the DoFn's
 * message, whose attempt number says how often the bundle ran. */
static bl_status tp_failing(const char *const *flags, bl_status status) {
    bl_pipeline *p;
    BL_TRY(tp_new(flags, &p));
    int64_t v[20];
    const void *ptrs[20];
    for (int i = 0; i < 20; i++) v[i] = i, ptrs[i] = &v[i];
    bl_dofn fn = {.process = failing_process, .out_coder = bl_coder_int64(), .user = &status};
    bl_pcoll *in, *out;
    bl_status s = bl_create(p, "Numbers", bl_coder_int64(), ptrs, 20, &in);
    if (s == BL_OK) s = bl_pardo(p, "Failing", in, &fn, &out);
    if (s == BL_OK) s = bl_pipeline_run(p);
    bl_pipeline_free(p);
    return s;
}

/* ---- the thread budget: the OpenMP team a worker's parallel region really gets ------------- */

static bl_status team_setup(bl_dofn_ctx *c) {
    int team = 0;
#pragma omp parallel
    {
#pragma omp single
        team = omp_get_num_threads();
    }
    bl_metric_observe(c, "team_at_setup", team);
    return BL_OK;
}

static bl_status team_process(bl_dofn_ctx *c, const void *e, bl_emitter *out) {
    int team = 0;
#pragma omp parallel
    {
#pragma omp single
        team = omp_get_num_threads();
    }
    bl_metric_observe(c, "team", team);
    return bl_emit(out, e);
}

/* Runs 64 elements through a DoFn whose setup and process each start an OpenMP parallel region
 * (as a CPU op does) and observe its team's size; *lo and *hi are the smallest and largest
 * seen (on the coordinator; -1 elsewhere), *budget what the pipeline reports. */
static bl_status tp_team(const char *const *flags, int *lo, int *hi, int *budget) {
    bl_pipeline *p;
    BL_TRY(tp_new(flags, &p));
    *lo = *hi = -1;
    *budget = bl_pipeline_threads_per_worker(p);
    int64_t v[64];
    const void *ptrs[64];
    for (int i = 0; i < 64; i++) v[i] = i, ptrs[i] = &v[i];
    bl_dofn fn = {.setup = team_setup, .process = team_process, .out_coder = bl_coder_int64()};
    bl_pcoll *in, *spread, *out;
    bl_status s = bl_create(p, "Numbers", bl_coder_int64(), ptrs, 64, &in);
    if (s == BL_OK) s = bl_reshuffle(p, "Spread", in, &spread);
    if (s == BL_OK) s = bl_pardo(p, "Team", spread, &fn, &out);
    if (s == BL_OK) s = bl_pipeline_run(p);
    bl_metric_result a, b;
    if (s == BL_OK && bl_pipeline_is_coordinator(p) && bl_pipeline_metric(p, "Team", "team", &a) == BL_OK &&
        bl_pipeline_metric(p, "Team", "team_at_setup", &b) == BL_OK) {
        *lo = (int)(a.min < b.min ? a.min : b.min);
        *hi = (int)(a.max > b.max ? a.max : b.max);
    }
    bl_pipeline_free(p);
    return s;
}

/* ---- resource hint placement ------------------------------------------------------------- */

static bl_status where_process(bl_dofn_ctx *c, const void *e, bl_emitter *out) {
    (void)e;
    char s[64];
    snprintf(s, sizeof s, "worker=%d accel=%d", bl_dofn_worker(c), bl_dofn_accelerator(c));
    bl_metric_inc(c, bl_dofn_accelerator(c) >= 0 ? "on_accelerator" : "on_cpu", 1);
    char who[32]; /* which worker ran it: "worker0", "worker1", ... */
    snprintf(who, sizeof who, "worker%d", bl_dofn_worker(c));
    bl_metric_inc(c, who, 1);
    return bl_emit(out, s);
}
static bl_status where_setup(bl_dofn_ctx *c) {
    bl_metric_inc(c, "setup", 1);
    return BL_OK;
}

/* "Cpu" runs anywhere, "Gpu" (hinted) only where an accelerator is. Returns per-transform
 * counts of elements that ran on an accelerator and on the CPU. */
static bl_status tp_placement(const char *const *flags, const char *gpu_hint, char **result,
                              bl_pipeline **keep) {
    bl_pipeline *p;
    BL_TRY(tp_new(flags, &p));
    enum {
        N = 60
    };
    int64_t v[N];
    const void *ptrs[N];
    for (int i = 0; i < N; i++) v[i] = i, ptrs[i] = &v[i];
    bl_dofn fn = {.setup = where_setup, .process = where_process, .out_coder = bl_coder_string()};
    bl_pcoll *in, *cpu, *gpu, *cpu_in;
    bl_status s = bl_create(p, "Numbers", bl_coder_int64(), ptrs, N, &in);
    if (s == BL_OK) s = bl_pardo(p, "Cpu", in, &fn, &cpu);
    if (s == BL_OK) s = bl_reshuffle(p, "Spread", in, &cpu_in);
    if (s == BL_OK) s = bl_pipeline_begin_composite(p, "Accelerated", gpu_hint);
    if (s == BL_OK) s = bl_pardo(p, "Gpu", cpu_in, &fn, &gpu);
    if (s == BL_OK) s = bl_pipeline_end_composite(p);
    if (s == BL_OK) s = bl_pipeline_run(p);
    *result = calloc(1, 256);
    if (s == BL_OK && bl_pipeline_is_coordinator(p))
        snprintf(*result, 256, "gpu: accel=%lld cpu=%lld",
                 (long long)tp_counter(p, "Accelerated/Gpu", "on_accelerator"),
                 (long long)tp_counter(p, "Accelerated/Gpu", "on_cpu"));
    if (keep)
        *keep = p;
    else
        bl_pipeline_free(p);
    return s;
}

/* ---- a large reshuffle ------------------------------------------------------------------- */

static bl_status tp_double(void *user, const void *in, void **out) {
    (void)user;
    int64_t *y = malloc(sizeof *y);
    *y = *(const int64_t *)in * 2 + 1;
    *out = y;
    return BL_OK;
}
static bool tp_odd_third(void *user, const void *in) {
    (void)user;
    return (*(const int64_t *)in / 2) % 3 != 0;
}

static bl_status tp_reshuffle(const char *const *flags, int n, char **result) {
    bl_pipeline *p;
    BL_TRY(tp_new(flags, &p));
    int64_t *v = malloc((size_t)n * sizeof *v);
    const void **ptrs = malloc((size_t)n * sizeof *ptrs);
    for (int i = 0; i < n; i++) v[i] = i, ptrs[i] = &v[i];
    bl_pcoll *in, *r, *d, *f, *sum, *count;
    bl_status s = bl_create(p, "Numbers", bl_coder_int64(), (const void *const *)ptrs, (size_t)n, &in);
    free(v), free(ptrs);
    if (s == BL_OK) s = bl_reshuffle(p, "Reshuffle", in, &r);
    if (s == BL_OK) s = bl_map(p, "Double", r, tp_double, NULL, bl_coder_int64(), &d);
    if (s == BL_OK) s = bl_filter(p, "DropThirds", d, tp_odd_third, NULL, &f);
    if (s == BL_OK) s = bl_combine_globally(p, "Sum", f, bl_combine_sum_int64(), &sum);
    if (s == BL_OK) s = bl_combine_globally(p, "Count", f, bl_combine_count(), &count);
    if (s == BL_OK) s = bl_pipeline_collect(p, sum);
    if (s == BL_OK) s = bl_pipeline_collect(p, count);
    if (s == BL_OK) s = bl_pipeline_run(p);
    *result = calloc(1, 256);
    if (s == BL_OK && bl_pipeline_is_coordinator(p)) {
        char *x = tp_sorted(sum), *y = tp_sorted(count);
        snprintf(*result, 256, "sum=%s count=%s", x, y);
        free(x), free(y);
    }
    bl_pipeline_free(p);
    return s;
}

#endif
