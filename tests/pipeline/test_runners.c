/* The same pipelines on the direct runner (plain and shuffled) and the local runner (2 and 3
 * threads) must give the same results; plus placement, batching, text io, coder failures,
 * retries and stall warnings. Seeds are fixed and printed. */
#include <dirent.h>
#include <sys/stat.h>
#include <time.h>

#include "pipelines.h"

#define SHUFFLE_SEED "--shuffle_seed=20261124"

static const char *const RUNNERS[][6] = {
    {"--runner=direct", NULL},
    {"--runner=direct", SHUFFLE_SEED, NULL},
    {"--runner=local", "--num_workers=2", NULL},
    {"--runner=local", "--num_workers=3", "--bundle_size=7", NULL},
};
#define NRUNNERS 4

static void test_wordcount_all_runners(void) {
    fprintf(stderr, "  seed %s\n", SHUFFLE_SEED);
    char *want = NULL;
    for (int r = 0; r < NRUNNERS; r++) {
        char *got = NULL;
        CHECK_OK(tp_wordcount(RUNNERS[r], 3, &got, NULL));
        if (!want) {
            want = got;
            CHECK(strstr(want, "[\"the\", 12]\n") != NULL);
            CHECK(strstr(want, "[\"lazy\", 9]\n") != NULL);
            CHECK(strstr(want, "[\"fox\", 9]\n") != NULL);
        } else {
            CHECK_MSG(strcmp(want, got) == 0, "runner %d:\n%s\nvs\n%s", r, got, want);
            free(got);
        }
    }
    free(want);
}

static void test_group_combine_all_runners(void) {
    char *want = NULL;
    for (int r = 0; r < NRUNNERS; r++) {
        char *got = NULL;
        CHECK_OK(tp_group_combine(RUNNERS[r], &got));
        if (!want) {
            want = got;
            /* Key 0 gets i = 0, 7, 14, ... (37i % 7 == 0 iff i % 7 == 0): 72 values summing 0. */
            CHECK(strstr(want, "[0, 72]\n") != NULL);
            CHECK(strstr(want, "--\n500\n7\n") != NULL);
        } else {
            CHECK_MSG(strcmp(want, got) == 0, "runner %d:\n%s\nvs\n%s", r, got, want);
            free(got);
        }
    }
    free(want);
}

static void test_lifecycle_all_runners(void) {
    for (int r = 0; r < NRUNNERS; r++) {
        char *got = NULL;
        CHECK_OK(tp_lifecycle(RUNNERS[r], &got));
        CHECK_MSG(strcmp(got, "process=100 out=100 setup_eq_teardown=1 start_eq_finish=1 "
                              "bundles_ok=1 violations=-1") == 0,
                  "runner %d: %s", r, got);
        free(got);
    }
}

static void test_flaky_all_runners(void) {
    bl_log_level old = bl_log_get_level();
    bl_log_set_level(BL_LOG_ERROR); /* the retries warn by design */
    for (int r = 0; r < NRUNNERS; r++) {
        char *got = NULL;
        CHECK_OK(tp_flaky(RUNNERS[r], false, &got));
        CHECK_MSG(strcmp(got, "sum=2340\n in=40 setups>=3:1 setup_eq_teardown:1") == 0, "runner %d: %s", r,
                  got);
        free(got);
        CHECK_ERR(tp_flaky(RUNNERS[r], true, &got), BL_ERR_IO, "element 17 is always broken (attempt 5)");
        CHECK(strstr(bl_last_error(), "failed after 5 attempts") != NULL);
        free(got);
    }
    const char *no_retry[] = {"--runner=local", "--max_bundle_retries=1", NULL};
    char *got = NULL;
    CHECK_ERR(tp_flaky(no_retry, false, &got), BL_ERR_IO, "after 2 attempts");
    free(got);
    bl_log_set_level(old);
}

/* Only transient failures (I/O, memory, a device) are retried; the rest fail on their first
 * attempt with the DoFn's own message, on every runner. */
static void test_errors_by_kind_all_runners(void) {
    bl_log_level old = bl_log_get_level();
    bl_log_set_level(BL_LOG_ERROR);
    const bl_status once[] = {BL_ERR_INVALID_ARG, BL_ERR_UNSUPPORTED, BL_ERR_NOT_FOUND, BL_ERR_FORMAT,
                              BL_ERR_INTERNAL};
    const bl_status retried[] = {BL_ERR_IO, BL_ERR_OUT_OF_MEMORY, BL_ERR_DEVICE};
    for (int r = 0; r < NRUNNERS; r++) {
        for (size_t i = 0; i < sizeof once / sizeof once[0]; i++) {
            CHECK_ERR(tp_failing(RUNNERS[r], once[i]), once[i], "(attempt 1)");
            CHECK_MSG(strstr(bl_last_error(), "not retried") != NULL, "runner %d: %s", r, bl_last_error());
        }
        for (size_t i = 0; i < sizeof retried / sizeof retried[0]; i++) {
            CHECK_ERR(tp_failing(RUNNERS[r], retried[i]), retried[i], "(attempt 5)");
            CHECK_MSG(strstr(bl_last_error(), "failed after 5 attempts") != NULL, "runner %d: %s", r,
                      bl_last_error());
        }
    }
    bl_log_set_level(old);
}

/* Each local worker's parallel regions get its share of the cores (workers x threads <=
 * cores), or --threads_per_worker when given; the direct runner leaves the calling thread as it
 * was. The summary says what each worker had. */
static void test_thread_budget(void) {
    int cores = bl_cpu_cores(), share = cores / 2 > 1 ? cores / 2 : 1;
    const char *env = getenv("OMP_NUM_THREADS");
    if (env && atoi(env) > 0 && atoi(env) < share) share = atoi(env);
    fprintf(stderr, "  %d cores, OMP_NUM_THREADS=%s: 2 local workers get %d thread(s) each\n", cores,
            env ? env : "(unset)", share);
    int lo, hi, budget;
    const char *two[] = {"--runner=local", "--num_workers=2", NULL};
    CHECK_OK(tp_team(two, &lo, &hi, &budget));
    CHECK_MSG(lo == share && hi == share && budget == share, "teams of %d..%d threads, budget %d, want %d",
              lo, hi, budget, share);
    const char *three[] = {"--runner=local", "--num_workers=2", "--threads_per_worker=3", NULL};
    CHECK_OK(tp_team(three, &lo, &hi, &budget));
    CHECK_MSG(lo == 3 && hi == 3 && budget == 3, "teams of %d..%d threads, budget %d, want 3", lo, hi,
              budget);
    int caller = omp_get_max_threads();
    const char *direct[] = {"--runner=direct", "--threads_per_worker=3", NULL};
    CHECK_OK(tp_team(direct, &lo, &hi, &budget));
    CHECK_MSG(lo == 3 && hi == 3 && budget == 3, "direct: teams of %d..%d threads, budget %d", lo, hi,
              budget);
    CHECK(omp_get_max_threads() == caller);
    const char *plain[] = {"--runner=direct", NULL};
    CHECK_OK(tp_team(plain, &lo, &hi, &budget));
    CHECK_MSG(lo == caller && hi == caller && budget == caller, "direct: %d..%d, budget %d, caller %d", lo,
              hi, budget, caller);
    bl_pipeline *p;
    CHECK_OK(tp_new(three, &p));
    char *summary;
    CHECK_OK(bl_pipeline_metrics_summary(p, &summary));
    CHECK_MSG(strstr(summary, "local runner, 2 workers x 3 compute threads") != NULL, "%s", summary);
    free(summary);
    bl_pipeline_free(p);
    CHECK_ERR(tp_new((const char *[]){"--threads_per_worker=-1", NULL}, &p), BL_ERR_INVALID_ARG,
              "--threads_per_worker=-1");
}

static void test_reshuffle_all_runners(void) {
    char *want = NULL;
    for (int r = 0; r < NRUNNERS; r++) {
        char *got = NULL;
        CHECK_OK(tp_reshuffle(RUNNERS[r], 100000, &got));
        if (!want) {
            want = got;
        } else {
            CHECK_MSG(strcmp(want, got) == 0, "runner %d: %s vs %s", r, got, want);
            free(got);
        }
    }
    /* Sum of 2i+1 over i < 100000 with i % 3 != 0. */
    int64_t sum = 0, count = 0;
    for (int64_t i = 0; i < 100000; i++)
        if (i % 3 != 0) sum += 2 * i + 1, count++;
    char expect[128];
    snprintf(expect, sizeof expect, "sum=%lld\n count=%lld\n", (long long)sum, (long long)count);
    CHECK_MSG(strcmp(want, expect) == 0, "%s vs %s", want, expect);
    free(want);
}

static void test_hint_placement(void) {
    const char *hint = "accelerator=\"type:nvidia-l4;count:1;install-nvidia-driver\"";
    /* Two threads, only worker 1 has an accelerator: every Gpu element runs there. */
    const char *local[] = {"--runner=local", "--num_workers=2", "--worker_accelerators=0,1", NULL};
    char *got = NULL;
    bl_pipeline *p = NULL;
    CHECK_OK(tp_placement(local, hint, &got, &p));
    CHECK_MSG(strcmp(got, "gpu: accel=60 cpu=-1") == 0, "%s", got);
    char *text = NULL;
    CHECK_OK(bl_pipeline_to_text(p, &text));
    CHECK(text && strstr(text, "Accelerated/Gpu [ParDo]") &&
          strstr(text, "type:nvidia-l4;count:1;install-nvidia-driver"));
    free(text);
    bl_pipeline_free(p);
    free(got);
    const char *direct[] = {"--runner=direct", "--worker_accelerators=2", NULL};
    CHECK_OK(tp_placement(direct, hint, &got, NULL));
    CHECK_MSG(strcmp(got, "gpu: accel=60 cpu=-1") == 0, "%s", got);
    free(got);
    /* Nobody has one: refused before anything runs (no DoFn was set up). */
    for (int r = 0; r < NRUNNERS; r++) {
        p = NULL;
        CHECK_ERR(
            tp_placement(RUNNERS[r], hint, &got, &p), BL_ERR_UNSUPPORTED,
            "transform 'Accelerated/Gpu' needs accelerator type:nvidia-l4 count:1, but no worker has one");
        CHECK(strstr(bl_last_error(), "did not start") != NULL);
        CHECK(p && tp_counter(p, "Cpu", "setup") == -1);
        bl_pipeline_free(p);
        free(got);
    }
    /* TPU hints fit TPU workers only, and GPU hints GPU workers only. */
    const char *tpu = "accelerator=type:tpu-v5-lite-podslice;topology:1x1";
    const char *mixed[] = {"--runner=local", "--num_workers=2", "--worker_accelerators=1,tpu:1", NULL};
    CHECK_OK(tp_placement(mixed, tpu, &got, &p));
    CHECK_MSG(strcmp(got, "gpu: accel=60 cpu=-1") == 0, "%s", got);
    CHECK_MSG(tp_counter(p, "Accelerated/Gpu", "worker1") == 60, "%lld",
              (long long)tp_counter(p, "Accelerated/Gpu", "worker1"));
    CHECK_OK(bl_pipeline_to_text(p, &text));
    CHECK(text && strstr(text, "type:tpu-v5-lite-podslice;count:1;topology:1x1"));
    free(text);
    bl_pipeline_free(p);
    free(got);
    const char *mixed_gpu[] = {"--runner=local", "--num_workers=2", "--worker_accelerators=tpu:1,gpu:1",
                               NULL};
    CHECK_OK(tp_placement(mixed_gpu, hint, &got, &p));
    CHECK_MSG(tp_counter(p, "Accelerated/Gpu", "worker1") == 60, "%lld",
              (long long)tp_counter(p, "Accelerated/Gpu", "worker1"));
    bl_pipeline_free(p);
    free(got);
    const char *tpu_direct[] = {"--runner=direct", "--worker_accelerators=tpu:1", NULL};
    CHECK_OK(tp_placement(tpu_direct, tpu, &got, NULL));
    CHECK_MSG(strcmp(got, "gpu: accel=60 cpu=-1") == 0, "%s", got);
    free(got);
    const char *gpus[] = {"--runner=local", "--num_workers=2", "--worker_accelerators=2", NULL};
    p = NULL;
    CHECK_ERR(
        tp_placement(gpus, tpu, &got, &p), BL_ERR_UNSUPPORTED,
        "transform 'Accelerated/Gpu' needs accelerator type:tpu-v5-lite-podslice count:1 topology:1x1, but "
        "no worker has a TPU (the most TPU chips any of the 2 workers has is 0; 2 workers have GPUs, which "
        "do not serve a TPU hint; set --worker_accelerators=tpu:1 on a TPU host); the pipeline did not "
        "start");
    CHECK(p && tp_counter(p, "Cpu", "setup") == -1);
    bl_pipeline_free(p);
    free(got);
    const char *tpus[] = {"--runner=local", "--num_workers=2", "--worker_accelerators=tpu:1,0", NULL};
    CHECK_ERR(tp_placement(tpus, hint, &got, NULL), BL_ERR_UNSUPPORTED,
              "needs accelerator type:nvidia-l4 count:1, but no worker has one (the most GPUs any of the 2 "
              "workers has is 0; 1 worker has TPU chips, which do not serve a GPU hint; set "
              "--worker_accelerators); the pipeline did not start");
    free(got);
    /* Needs two; workers have one. */
    const char *one[] = {"--runner=local", "--worker_accelerators=1", NULL};
    CHECK_ERR(tp_placement(one, "accelerator=type:h100;count:2", &got, NULL), BL_ERR_UNSUPPORTED,
              "no worker has that many");
    free(got);
    /* min_ram larger than any worker. */
    const char *ram[] = {"--runner=local", "--worker_ram=8GB", NULL};
    CHECK_ERR(tp_placement(ram, "min_ram=16GB", &got, NULL), BL_ERR_UNSUPPORTED, "min_ram=16000000000");
    free(got);
    const char *ram_ok[] = {"--runner=local", "--worker_ram=32GiB", NULL};
    CHECK_OK(tp_placement(ram_ok, "min_ram=16GB", &got, NULL));
    CHECK_MSG(strcmp(got, "gpu: accel=-1 cpu=60") == 0, "%s", got);
    free(got);
    /* Pipeline-wide hint from the options applies to every transform. */
    const char *wide[] = {"--runner=local", "--resource_hints=accelerator=type:t4;count:1", NULL};
    CHECK_ERR(tp_placement(wide, NULL, &got, NULL), BL_ERR_UNSUPPORTED,
              "transform 'Cpu' needs accelerator type:t4");
    free(got);
}

static size_t len_weight(void *user, const void *e) {
    (void)user;
    return strlen(e);
}
static bl_status batch_check(void *user, const void *in, void **out) {
    (void)user;
    const bl_iter *it = in;
    size_t w = 0;
    for (size_t i = 0; i < it->n; i++) w += strlen(it->items[i]);
    int64_t *x = malloc(sizeof *x);
    /* encode "size, over-limit" so one number carries both */
    *x = (int64_t)it->n * 10 + ((it->n > 4 || (w > 12 && it->n > 1)) ? 1 : 0);
    *out = x;
    return BL_OK;
}

static void test_batch_elements(void) {
    for (int r = 0; r < NRUNNERS; r++) {
        bl_pipeline *p;
        CHECK_OK(tp_new(RUNNERS[r], &p));
        const char *words[] = {"a", "bb", "ccc", "dddd", "eeeee", "ffffff", "g", "hh", "iii", "jjjj"};
        const void *vals[50];
        for (int i = 0; i < 50; i++) vals[i] = words[(i * 7) % 10];
        bl_pcoll *in, *b, *sizes, *total;
        bl_batch_config cfg = {.min_size = 1, .max_size = 4, .max_weight = 12, .weight_fn = len_weight};
        CHECK_OK(bl_create(p, "Words", bl_coder_string(), vals, 50, &in));
        CHECK_OK(bl_batch_elements(p, "Batch", in, &cfg, &b));
        CHECK_OK(bl_map(p, "Check", b, batch_check, NULL, bl_coder_int64(), &sizes));
        CHECK_OK(bl_combine_globally(p, "Total", sizes, bl_combine_sum_int64(), &total));
        CHECK_OK(bl_pipeline_collect(p, sizes));
        CHECK_OK(bl_pipeline_collect(p, total));
        CHECK_OK(bl_pipeline_run(p));
        char *t = tp_sorted(total);
        CHECK_MSG(strcmp(t, "500\n") == 0, "runner %d: %s", r, t); /* 50 elements, no batch over limits */
        free(t);
        bl_pipeline_free(p);
    }
    bl_pipeline *p;
    CHECK_OK(tp_new(NULL, &p));
    bl_pcoll *in, *b;
    const char *one = "x";
    const void *vals[1] = {one};
    bl_batch_config bad = {.min_size = 5, .max_size = 2};
    CHECK_OK(bl_create(p, "W", bl_coder_string(), vals, 1, &in));
    CHECK_ERR(bl_batch_elements(p, "B", in, &bad, &b), BL_ERR_INVALID_ARG, "min_size <= max_size");
    bl_pipeline_free(p);
}

static int count_files(const char *dir, const char *needle) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) n += strstr(e->d_name, needle) != NULL;
    if (d) closedir(d);
    return n;
}

static bl_status boom_on(void *user, const void *in, void **out) {
    (void)user;
    if (strcmp(in, "boom") == 0) return bl_error(BL_ERR_FORMAT, "cannot handle 'boom'");
    *out = strdup(in);
    return BL_OK;
}

static void test_text_io(void) {
    char dir[] = "/tmp/beamlet_textio_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char in_path[256], prefix[256];
    snprintf(in_path, sizeof in_path, "%s/input.txt", dir);
    FILE *f = fopen(in_path, "w");
    for (int i = 0; i < 5; i++) fprintf(f, "%s\r\n", tp_text[i]);
    fclose(f);
    for (int r = 0; r < NRUNNERS; r++) {
        bl_pipeline *p;
        CHECK_OK(tp_new(RUNNERS[r], &p));
        snprintf(prefix, sizeof prefix, "%s/counts%d", dir, r);
        bl_pcoll *lines, *words, *pairs, *counts, *up;
        CHECK_OK(bl_read_text(p, "Read", in_path, &lines));
        CHECK_OK(bl_flatmap(p, "Split", lines, tp_split, NULL, bl_coder_string(), &words));
        CHECK_OK(bl_map(p, "Pair", words, tp_pair_one, NULL, bl_coder_kv(bl_coder_string(), bl_coder_int64()),
                        &pairs));
        CHECK_OK(bl_combine_per_key(p, "Count", pairs, bl_combine_sum_int64(), &counts));
        CHECK_OK(bl_write_text(p, "Write", counts, prefix, ".jsonl", 3, BL_TEXT_JSON));
        CHECK_OK(bl_map(p, "Same", words, boom_on, NULL, bl_coder_string(), &up));
        CHECK_OK(bl_write_text(p, "WriteWords", up, prefix, ".txt", 0, BL_TEXT_LINES));
        CHECK_OK(bl_pipeline_run(p));
        bl_pipeline_free(p);
        char shard[300];
        snprintf(shard, sizeof shard, "%s-00002-of-00003.jsonl", prefix);
        CHECK(access(shard, F_OK) == 0);
        /* Every count appears in exactly one shard: concatenate and look for "the". */
        int found = 0, lines_total = 0;
        for (int k = 0; k < 3; k++) {
            snprintf(shard, sizeof shard, "%s-%05d-of-00003.jsonl", prefix, k);
            void *data;
            size_t size;
            CHECK_OK(bl_file_read_all(shard, &data, &size));
            found += strstr(data, "[\"the\", 4]\n") != NULL;
            for (size_t i = 0; i < size; i++) lines_total += ((char *)data)[i] == '\n';
            free(data);
        }
        CHECK(found == 1);
        CHECK(lines_total == 12);
    }
    /* A failing DoFn: no shard under a final name, no temp file left. */
    f = fopen(in_path, "a");
    fprintf(f, "boom\n");
    fclose(f);
    bl_log_level old = bl_log_get_level();
    bl_log_set_level(BL_LOG_ERROR);
    for (int r = 0; r < NRUNNERS; r++) {
        bl_pipeline *p;
        CHECK_OK(tp_new(RUNNERS[r], &p));
        snprintf(prefix, sizeof prefix, "%s/failed%d", dir, r);
        bl_pcoll *lines, *words, *up;
        CHECK_OK(bl_read_text(p, "Read", in_path, &lines));
        CHECK_OK(bl_write_text(p, "WriteLines", lines, prefix, ".txt", 2, BL_TEXT_LINES));
        CHECK_OK(bl_flatmap(p, "Split", lines, tp_split, NULL, bl_coder_string(), &words));
        CHECK_OK(bl_map(p, "Boom", words, boom_on, NULL, bl_coder_string(), &up));
        CHECK_ERR(bl_pipeline_run(p), BL_ERR_FORMAT, "cannot handle 'boom'");
        bl_pipeline_free(p);
        char name[32];
        snprintf(name, sizeof name, "failed%d", r);
        CHECK_MSG(count_files(dir, name) == 0, "runner %d left %d files", r, count_files(dir, name));
    }
    bl_log_set_level(old);
    bl_pipeline *p;
    CHECK_OK(tp_new(NULL, &p));
    bl_pcoll *lines;
    char missing[300];
    snprintf(missing, sizeof missing, "%s/nothing-*.txt", dir);
    CHECK_OK(bl_read_text(p, "Read", missing, &lines));
    CHECK_ERR(bl_pipeline_run(p), BL_ERR_NOT_FOUND, "no file matches");
    bl_pipeline_free(p);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/* A user coder that refuses 13 and whose decoder checks a magic byte. */
static bl_status picky_encode(const void *v, bl_buf *out, void *u) {
    (void)u;
    int64_t x = *(const int64_t *)v;
    if (x == 13) return bl_error(BL_ERR_INVALID_ARG, "13 is unlucky");
    uint8_t b[9] = {0xB1};
    memcpy(b + 1, &x, 8);
    return bl_buf_append(out, b, 9);
}
static bl_status picky_decode(const uint8_t *d, size_t size, size_t *pos, void **v, void *u) {
    (void)u;
    if (size - *pos < 9 || d[*pos] != 0xB1) return bl_error(BL_ERR_FORMAT, "bad magic");
    int64_t *x = malloc(sizeof *x);
    memcpy(x, d + *pos + 1, 8);
    *pos += 9;
    *v = x;
    return BL_OK;
}
static void picky_free(void *v, void *u) {
    (void)u;
    free(v);
}
static bl_status add_one(void *user, const void *in, void **out) {
    (void)user;
    int64_t *x = malloc(sizeof *x);
    *x = *(const int64_t *)in + 1;
    *out = x;
    return BL_OK;
}

static void test_coder_failure_in_pipeline(void) {
    bl_coder_fns fns = {"picky", true, picky_encode, picky_decode, picky_free, NULL, NULL};
    bl_coder *picky;
    CHECK_OK(bl_coder_new(&fns, &picky));
    int64_t v[20];
    const void *ptrs[20];
    for (int i = 0; i < 20; i++) v[i] = i, ptrs[i] = &v[i];
    bl_log_level old = bl_log_get_level();
    bl_log_set_level(BL_LOG_ERROR);
    for (int r = 0; r < NRUNNERS; r++) {
        bl_pipeline *p;
        CHECK_OK(tp_new(RUNNERS[r], &p));
        bl_pcoll *in, *out;
        CHECK_OK(bl_create(p, "Numbers", bl_coder_int64(), ptrs, 20, &in));
        CHECK_OK(bl_map(p, "AddOne", in, add_one, NULL, picky, &out));
        CHECK_OK(bl_pipeline_collect(p, out));
        CHECK_ERR(bl_pipeline_run(p), BL_ERR_INVALID_ARG, "coder 'picky' cannot encode: 13 is unlucky");
        CHECK(strstr(bl_last_error(), "AddOne") != NULL);
        bl_pipeline_free(p);
    }
    bl_log_set_level(old);
    /* Create encodes at construction, so a bad value is refused there and the run too. */
    bl_pipeline *p;
    CHECK_OK(tp_new(NULL, &p));
    bl_pcoll *in;
    CHECK_ERR(bl_create(p, "Bad", picky, ptrs, 20, &in), BL_ERR_INVALID_ARG, "Create 'Bad' element 13");
    CHECK_ERR(bl_pipeline_run(p), BL_ERR_INVALID_ARG, "was not built correctly");
    bl_pipeline_free(p);
    bl_coder_free(picky);
}

/* A coder whose decode does not give back what was encoded: the direct runner notices. */
static int64_t drift;
static bl_status drift_encode(const void *v, bl_buf *out, void *u) {
    (void)u;
    return bl_buf_put_varint(out, (uint64_t)(*(const int64_t *)v + drift));
}
static bl_status drift_decode(const uint8_t *d, size_t size, size_t *pos, void **v, void *u) {
    (void)u;
    uint64_t x;
    BL_TRY(bl_read_varint(d, size, pos, &x));
    int64_t *y = malloc(sizeof *y);
    *y = (int64_t)x;
    *v = y;
    return BL_OK;
}

static void test_direct_roundtrip_check(void) {
    bl_coder_fns fns = {"drifting", true, drift_encode, drift_decode, picky_free, NULL, NULL};
    bl_coder *c;
    CHECK_OK(bl_coder_new(&fns, &c));
    int64_t v[3] = {1, 2, 3};
    const void *ptrs[3] = {&v[0], &v[1], &v[2]};
    bl_pipeline *p;
    CHECK_OK(tp_new(NULL, &p));
    bl_pcoll *in, *out;
    drift = 0;
    CHECK_OK(bl_create(p, "Numbers", c, ptrs, 3, &in));
    CHECK_OK(bl_map(p, "AddOne", in, add_one, NULL, bl_coder_int64(), &out));
    drift = 1;
    bl_log_level old = bl_log_get_level();
    bl_log_set_level(BL_LOG_ERROR);
    CHECK_ERR(bl_pipeline_run(p), BL_ERR_FORMAT, "coder 'drifting' does not round-trip");
    bl_log_set_level(old);
    bl_pipeline_free(p);
    bl_coder_free(c);
}

static bl_status slow_process(bl_dofn_ctx *c, const void *e, bl_emitter *out) {
    (void)c;
    if (*(const int64_t *)e == 3) {
        struct timespec ts = {0, 400 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return bl_emit(out, e);
}

static void test_stall_warning(void) {
    const char *flags[] = {"--runner=local", "--num_workers=2", "--stall_timeout_s=0.1", NULL};
    bl_pipeline *p;
    CHECK_OK(tp_new(flags, &p));
    int64_t v[8];
    const void *ptrs[8];
    for (int i = 0; i < 8; i++) v[i] = i, ptrs[i] = &v[i];
    bl_dofn fn = {.process = slow_process, .out_coder = bl_coder_int64()};
    bl_pcoll *in, *out;
    CHECK_OK(bl_create(p, "Numbers", bl_coder_int64(), ptrs, 8, &in));
    CHECK_OK(bl_pardo(p, "Slow", in, &fn, &out));
    CHECK_OK(bl_pipeline_run(p));
    CHECK_MSG(bl_pipeline_stall_warnings(p) >= 1, "warnings %d", bl_pipeline_stall_warnings(p));
    bl_pipeline_free(p);
}

static void test_metrics_summary(void) {
    const char *flags[] = {"--runner=local", "--num_workers=2", NULL};
    char *got;
    bl_pipeline *p = NULL;
    CHECK_OK(tp_wordcount(flags, 1, &got, &p));
    free(got);
    bl_metric_result m;
    CHECK_OK(bl_pipeline_metric(p, "Split", "elements_in", &m));
    CHECK(m.counter == 5);
    CHECK_OK(bl_pipeline_metric(p, "Split", "elements_out", &m));
    CHECK(m.counter == 24);
    CHECK_OK(bl_pipeline_metric(p, "Count", "elements_out", &m));
    CHECK(m.counter == 12);
    CHECK_OK(bl_pipeline_metric(p, "PairWithOne", "bundle_latency_ms", &m));
    CHECK(m.is_distribution && m.count >= 1 && m.min <= m.max);
    CHECK_ERR(bl_pipeline_metric(p, "Split", "nope", &m), BL_ERR_NOT_FOUND, "no metric 'nope'");
    char *sum;
    CHECK_OK(bl_pipeline_metrics_summary(p, &sum));
    CHECK(strstr(sum, "Split") && strstr(sum, "bundle_latency_ms"));
    fprintf(stderr, "%s", sum);
    free(sum);
    bl_pipeline_free(p);
}

/* Without a seed every runner keeps Create's order (outputs join in bundle order); the direct
 * runner's --shuffle_seed permutes it, deterministically. An empty input still gives
 * CombineGlobally's default. */
static void test_order_and_empty(void) {
    char *orders[3] = {NULL, NULL, NULL};
    const char *const flags[3][4] = {{"--runner=direct", NULL},
                                     {"--runner=local", "--num_workers=3", NULL},
                                     {"--runner=direct", SHUFFLE_SEED, NULL}};
    for (int r = 0; r < 3; r++) {
        bl_pipeline *p;
        CHECK_OK(tp_new(flags[r], &p));
        int64_t v[50];
        const void *ptrs[50];
        for (int i = 0; i < 50; i++) v[i] = i, ptrs[i] = &v[i];
        bl_pcoll *in, *out, *none, *sum;
        CHECK_OK(bl_create(p, "Numbers", bl_coder_int64(), ptrs, 50, &in));
        CHECK_OK(bl_map(p, "AddOne", in, add_one, NULL, bl_coder_int64(), &out));
        CHECK_OK(bl_create(p, "Nothing", bl_coder_int64(), ptrs, 0, &none));
        CHECK_OK(bl_combine_globally(p, "SumOfNothing", none, bl_combine_sum_int64(), &sum));
        CHECK_OK(bl_pipeline_collect(p, out));
        CHECK_OK(bl_pipeline_collect(p, sum));
        CHECK_OK(bl_pipeline_run(p));
        bl_buf b = {0};
        for (size_t i = 0; i < bl_pcoll_result_count(out); i++) {
            char *j;
            CHECK_OK(bl_pcoll_result_json(out, i, &j));
            bl_buf_printf(&b, "%s,", j);
            free(j);
        }
        orders[r] = (char *)b.data;
        char *z = tp_sorted(sum);
        CHECK_MSG(strcmp(z, "0\n") == 0, "%s", z);
        free(z);
        bl_pipeline_free(p);
    }
    CHECK(strncmp(orders[0], "1,2,3,4,5,", 10) == 0);
    CHECK(strcmp(orders[0], orders[1]) == 0);
    CHECK(strcmp(orders[0], orders[2]) != 0);
    for (int r = 0; r < 3; r++) free(orders[r]);
}

static bl_status split_parity(bl_dofn_ctx *c, const void *e, bl_emitter *out) {
    (void)c;
    return *(const int64_t *)e % 2 ? bl_emit_tagged(out, "odd", e) : bl_emit(out, e);
}

/* A fused chain whose middle ParDo has a tagged side output read by another branch. */
static void test_fused_side_outputs(void) {
    char *want = NULL;
    for (int r = 0; r < NRUNNERS; r++) {
        bl_pipeline *p;
        CHECK_OK(tp_new(RUNNERS[r], &p));
        int64_t v[30];
        const void *ptrs[30];
        for (int i = 0; i < 30; i++) v[i] = i, ptrs[i] = &v[i];
        bl_dofn fn = {.process = split_parity, .out_coder = bl_coder_int64(), .num_side_outputs = 1};
        fn.side_tags[0] = "odd";
        fn.side_coders[0] = bl_coder_int64();
        bl_pcoll *in, *plus, *even, *odd, *even2, *odd2, *x;
        CHECK_OK(bl_create(p, "Numbers", bl_coder_int64(), ptrs, 30, &in));
        CHECK_OK(bl_map(p, "AddOne", in, add_one, NULL, bl_coder_int64(), &plus));
        CHECK_OK(bl_pardo(p, "Parity", plus, &fn, &even));
        CHECK_OK(bl_pardo_output(even, "odd", &odd));
        CHECK_OK(bl_map(p, "EvenPlusOne", even, add_one, NULL, bl_coder_int64(), &even2));
        CHECK_OK(bl_map(p, "OddPlusOne", odd, add_one, NULL, bl_coder_int64(), &odd2));
        CHECK_ERR(bl_pardo_output(even2, "odd", &x), BL_ERR_NOT_FOUND, "no output tagged 'odd'");
        CHECK_OK(bl_pipeline_collect(p, even2));
        CHECK_OK(bl_pipeline_collect(p, odd2));
        CHECK_OK(bl_pipeline_run(p));
        char *a = tp_sorted(even2), *b = tp_sorted(odd2);
        size_t n = strlen(a) + strlen(b) + 4;
        char *got = malloc(n);
        snprintf(got, n, "%s|%s", a, b);
        free(a), free(b);
        CHECK(bl_pcoll_result_count(even2) == 15 && bl_pcoll_result_count(odd2) == 15);
        CHECK(tp_counter(p, "Parity", "elements_out") == 30);
        if (!want)
            want = got;
        else {
            CHECK_MSG(strcmp(want, got) == 0, "runner %d", r);
            free(got);
        }
        bl_pipeline_free(p);
    }
    CHECK(strncmp(want, "11\n13\n", 6) == 0); /* 1..30 evens plus one: 3, 5, ... sorted as text */
    free(want);
}

int main(void) {
    bl_log_set_level(BL_LOG_WARN);
    RUN(test_wordcount_all_runners);
    RUN(test_group_combine_all_runners);
    RUN(test_lifecycle_all_runners);
    RUN(test_flaky_all_runners);
    RUN(test_errors_by_kind_all_runners);
    RUN(test_thread_budget);
    RUN(test_reshuffle_all_runners);
    RUN(test_hint_placement);
    RUN(test_batch_elements);
    RUN(test_text_io);
    RUN(test_coder_failure_in_pipeline);
    RUN(test_direct_roundtrip_check);
    RUN(test_stall_warning);
    RUN(test_metrics_summary);
    RUN(test_order_and_empty);
    RUN(test_fused_side_outputs);
    return bl_test_finish();
}
