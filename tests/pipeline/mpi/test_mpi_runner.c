/* The shared pipelines under the mpi runner (ctest runs this as `mpirun -np 3`): every rank
 * builds and runs the same pipelines; rank 0 compares the results with the direct runner's. */
#include <dirent.h>
#include <mpi.h>
#include <time.h>

#include "pipeline/pipelines.h"

static const char *MPI_FLAGS[] = {"--runner=mpi", NULL};
static const char *DIRECT[] = {"--runner=direct", "--shuffle_seed=7", NULL};

static void same(const char *what, bl_status (*fn)(const char *const *, char **)) {
    char *got = NULL, *want = NULL;
    CHECK_OK(fn(MPI_FLAGS, &got));
    if (got && *got) { /* rank 0 */
        CHECK_OK(fn(DIRECT, &want));
        CHECK_MSG(strcmp(got, want) == 0, "%s: mpi\n%s\ndirect\n%s", what, got, want);
    }
    free(got);
    free(want);
}

static void test_wordcount(void) {
    char *got = NULL;
    bl_pipeline *p = NULL;
    CHECK_OK(tp_wordcount(MPI_FLAGS, 20, &got, &p));
    if (p && bl_pipeline_is_coordinator(p)) {
        char *want = NULL;
        CHECK_OK(tp_wordcount(DIRECT, 20, &want, NULL));
        CHECK_MSG(strcmp(got, want) == 0, "mpi\n%s\ndirect\n%s", got, want);
        CHECK(strstr(got, "[\"the\", 80]\n") != NULL);
        char *sum = NULL;
        CHECK_OK(bl_pipeline_metrics_summary(p, &sum));
        fprintf(stderr, "word count over 3 ranks:\n%s%s", got, sum);
        CHECK(tp_counter(p, "Split", "elements_in") == 100);
        free(sum);
        free(want);
    }
    bl_pipeline_free(p);
    free(got);
}

static bl_status group_combine(const char *const *f, char **r) { return tp_group_combine(f, r); }
static bl_status lifecycle(const char *const *f, char **r) { return tp_lifecycle(f, r); }
static bl_status flaky(const char *const *f, char **r) { return tp_flaky(f, false, r); }
static bl_status reshuffle(const char *const *f, char **r) { return tp_reshuffle(f, 100000, r); }

static void test_group_combine(void) { same("group_combine", group_combine); }

static void test_lifecycle(void) {
    same("lifecycle", lifecycle);
    char *got = NULL;
    CHECK_OK(tp_lifecycle(MPI_FLAGS, &got));
    CHECK(!*got || strcmp(got, "process=100 out=100 setup_eq_teardown=1 start_eq_finish=1 "
                               "bundles_ok=1 violations=-1") == 0);
    free(got);
}

static void test_flaky(void) {
    bl_log_level old = bl_log_get_level();
    bl_log_set_level(BL_LOG_ERROR);
    same("flaky", flaky);
    char *got = NULL;
    /* Every rank learns the same failure from rank 0. */
    CHECK_ERR(tp_flaky(MPI_FLAGS, true, &got), BL_ERR_IO, "element 17 is always broken (attempt 5)");
    CHECK(strstr(bl_last_error(), "failed after 5 attempts") != NULL);
    free(got);
    bl_log_set_level(old);
}

static void test_placement(void) {
    const char *hint = "accelerator=type:nvidia-h100;count:1";
    /* Rank 2 alone has an accelerator: every hinted element runs there. */
    const char *flags[] = {"--runner=mpi", "--worker_accelerators=0,0,1", NULL};
    char *got = NULL;
    CHECK_OK(tp_placement(flags, hint, &got, NULL));
    CHECK_MSG(!*got || strcmp(got, "gpu: accel=60 cpu=-1") == 0, "%s", got);
    free(got);
    bl_pipeline *p = NULL;
    /* Rank 1 has a GPU, rank 2 a TPU chip: each hint goes to its kind (the kinds travel with the
     * ranks' descriptions). */
    const char *kinds[] = {"--runner=mpi", "--worker_accelerators=0,1,tpu:1", NULL};
    CHECK_OK(tp_placement(kinds, "accelerator=type:tpu-v5-lite-podslice;topology:1x1", &got, &p));
    CHECK_MSG(!bl_pipeline_is_coordinator(p) || tp_counter(p, "Accelerated/Gpu", "worker2") == 60, "%lld",
              (long long)tp_counter(p, "Accelerated/Gpu", "worker2"));
    bl_pipeline_free(p);
    free(got);
    CHECK_OK(tp_placement(kinds, hint, &got, &p));
    CHECK_MSG(!bl_pipeline_is_coordinator(p) || tp_counter(p, "Accelerated/Gpu", "worker1") == 60, "%lld",
              (long long)tp_counter(p, "Accelerated/Gpu", "worker1"));
    bl_pipeline_free(p);
    free(got);
    const char *gpus[] = {"--runner=mpi", "--worker_accelerators=2", NULL};
    CHECK_ERR(tp_placement(gpus, "accelerator=type:tpu;topology:1x1", &got, NULL), BL_ERR_UNSUPPORTED,
              "no worker has a TPU (the most TPU chips any of the 2 workers has is 0; 2 workers have GPUs");
    free(got);
    p = NULL;
    CHECK_ERR(tp_placement(MPI_FLAGS, hint, &got, &p), BL_ERR_UNSUPPORTED, "but no worker has one");
    CHECK(p && tp_counter(p, "Cpu", "setup") == -1);
    bl_pipeline_free(p);
    free(got);
}

static void test_reshuffle(void) { same("reshuffle", reshuffle); }

static bl_status boom(void *user, const void *in, void **out) {
    (void)user;
    if (strstr(in, "boom")) return bl_error(BL_ERR_FORMAT, "cannot handle 'boom'");
    *out = strdup(in);
    return BL_OK;
}

static void test_no_partial_output(void) {
    /* Every rank runs the same graph, so they agree on the path: fixed, cleaned by rank 0. */
    const char *prefix = "/tmp/beamlet_mpi_test_out";
    const void *lines[3] = {"a b", "d", "c boom"};
    bl_log_level old = bl_log_get_level();
    bl_log_set_level(BL_LOG_ERROR);
    for (int fail = 0; fail < 2; fail++) {
        bl_pipeline *p;
        CHECK_OK(tp_new(MPI_FLAGS, &p));
        bl_pcoll *in, *mapped;
        CHECK_OK(bl_create(p, "Lines", bl_coder_string(), lines, fail ? 3 : 2, &in));
        CHECK_OK(bl_write_text(p, "Raw", in, prefix, ".txt", 2, BL_TEXT_LINES));
        CHECK_OK(bl_map(p, "Boom", in, boom, NULL, bl_coder_string(), &mapped));
        bl_status s = bl_pipeline_run(p);
        char shard[256];
        snprintf(shard, sizeof shard, "%s-00001-of-00002.txt", prefix);
        if (fail) {
            CHECK(s == BL_ERR_FORMAT && strstr(bl_last_error(), "cannot handle 'boom'"));
            if (bl_pipeline_is_coordinator(p)) CHECK(access(shard, F_OK) != 0);
        } else {
            CHECK_OK(s);
            if (bl_pipeline_is_coordinator(p)) {
                CHECK(access(shard, F_OK) == 0);
                unlink(shard);
                snprintf(shard, sizeof shard, "%s-00000-of-00002.txt", prefix);
                CHECK(access(shard, F_OK) == 0);
                unlink(shard);
            }
        }
        bl_pipeline_free(p);
    }
    bl_log_set_level(old);
}

static bl_status slow_on_rank1(bl_dofn_ctx *c, const void *e, bl_emitter *out) {
    if (bl_dofn_worker(c) == 1) {
        struct timespec ts = {0, 30 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return bl_emit(out, e);
}

static bl_status count_bundle(bl_dofn_ctx *c) {
    char name[48];
    snprintf(name, sizeof name, "bundles_on_rank_%d", bl_dofn_worker(c));
    bl_metric_inc(c, name, 1);
    return BL_OK;
}

static void test_slow_rank_gets_fewer_bundles(void) {
    const char *flags[] = {"--runner=mpi", "--bundle_size=1", NULL};
    bl_pipeline *p;
    CHECK_OK(tp_new(flags, &p));
    int64_t v[40];
    const void *ptrs[40];
    for (int i = 0; i < 40; i++) v[i] = i, ptrs[i] = &v[i];
    bl_dofn fn = {.start_bundle = count_bundle, .process = slow_on_rank1, .out_coder = bl_coder_int64()};
    bl_pcoll *in, *out, *sum;
    CHECK_OK(bl_create(p, "Numbers", bl_coder_int64(), ptrs, 40, &in));
    CHECK_OK(bl_pardo(p, "SlowOnRank1", in, &fn, &out));
    CHECK_OK(bl_combine_globally(p, "Sum", out, bl_combine_sum_int64(), &sum));
    CHECK_OK(bl_pipeline_collect(p, sum));
    CHECK_OK(bl_pipeline_run(p));
    if (bl_pipeline_is_coordinator(p)) {
        char *got = tp_sorted(sum);
        CHECK(strcmp(got, "780\n") == 0);
        free(got);
        int64_t slow = tp_counter(p, "SlowOnRank1", "bundles_on_rank_1");
        int64_t fast = tp_counter(p, "SlowOnRank1", "bundles_on_rank_2");
        fprintf(stderr, "  bundles: slow rank 1 ran %lld, fast rank 2 ran %lld\n", (long long)slow,
                (long long)fast);
        CHECK(slow >= 1 && fast + slow == 40 && fast > 2 * slow);
    }
    bl_pipeline_free(p);
}

/* Every rank knows before its run whether it coordinates (a program's header prints once), and
 * how many workers there are. */
static void test_coordinator_known_before_run(void) {
    bl_pipeline *p;
    CHECK_OK(tp_new(MPI_FLAGS, &p));
    int rank = -1, size = 0, coordinators = 0, mine = bl_pipeline_is_coordinator(p);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Allreduce(&mine, &coordinators, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    CHECK_MSG(coordinators == 1 && mine == (rank == 0), "rank %d: coordinator %d, %d coordinators", rank,
              mine, coordinators);
    CHECK(bl_pipeline_num_workers(p) == (size > 1 ? size - 1 : 1));
    bl_pipeline_free(p);
}

/* Deterministic failures are not retried on the ranks either; transient ones are. */
static void test_errors_by_kind(void) {
    bl_log_level old = bl_log_get_level();
    bl_log_set_level(BL_LOG_ERROR);
    CHECK_ERR(tp_failing(MPI_FLAGS, BL_ERR_NOT_FOUND), BL_ERR_NOT_FOUND, "(attempt 1)");
    CHECK(strstr(bl_last_error(), "not retried") != NULL);
    CHECK_ERR(tp_failing(MPI_FLAGS, BL_ERR_FORMAT), BL_ERR_FORMAT, "(attempt 1)");
    CHECK_ERR(tp_failing(MPI_FLAGS, BL_ERR_IO), BL_ERR_IO, "(attempt 5)");
    bl_log_set_level(old);
}

/* The ranks of a node share its cores: each rank's parallel regions get cores / (ranks on the
 * node), at most OMP_NUM_THREADS (ctest sets 1), or --threads_per_worker. */
static void test_thread_budget(void) {
    int lo, hi, budget;
    const char *env = getenv("OMP_NUM_THREADS"), *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    int node = local && atoi(local) > 0 ? atoi(local) : 3, share = bl_cpu_cores() / node;
    if (share < 1) share = 1;
    if (env && atoi(env) > 0 && atoi(env) < share) share = atoi(env);
    CHECK_OK(tp_team(MPI_FLAGS, &lo, &hi, &budget));
    CHECK_MSG(budget == share, "budget %d, want %d (%d cores, %d ranks on the node)", budget, share,
              bl_cpu_cores(), node);
    if (lo >= 0) CHECK_MSG(lo == share && hi == share, "teams of %d..%d threads, want %d", lo, hi, share);
    const char *two[] = {"--runner=mpi", "--threads_per_worker=2", NULL};
    CHECK_OK(tp_team(two, &lo, &hi, &budget));
    CHECK(budget == 2);
    if (lo >= 0) CHECK_MSG(lo == 2 && hi == 2, "teams of %d..%d threads, want 2", lo, hi);
}

int main(void) {
    bl_log_set_level(BL_LOG_WARN);
    RUN(test_wordcount);
    RUN(test_group_combine);
    RUN(test_lifecycle);
    RUN(test_flaky);
    RUN(test_placement);
    RUN(test_reshuffle);
    RUN(test_no_partial_output);
    RUN(test_slow_rank_gets_fewer_bundles);
    RUN(test_coordinator_known_before_run);
    RUN(test_errors_by_kind);
    RUN(test_thread_budget);
    return bl_test_finish();
}
