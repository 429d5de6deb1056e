/* Losing a rank under the mpi runner: the run fails with a clear message and commits no output.
 * A test cannot kill one of its own ranks and still pass, so this one runs as a plain process
 * and launches itself under `mpirun -np 3` in a child mode where rank 2 either dies (SIGKILL)
 * or hangs in the middle of a bundle. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pipeline/pipelines.h"

#ifdef BEAMLET_HAVE_MPI
static const char *child_mode;

static bl_status maybe_lose_rank(bl_dofn_ctx *c, const void *e, bl_emitter *out) {
    if (bl_dofn_worker(c) == 2) {
        if (strcmp(child_mode, "kill") == 0) raise(SIGKILL);
        for (;;) sleep(1); /* "hang": alive but silent */
    }
    return bl_emit(out, e);
}

static int child(const char *mode, int argc, char **argv) {
    child_mode = mode;
    bl_options *o = NULL;
    bl_pipeline *p = NULL;
    if (bl_options_new(&o) != BL_OK || bl_options_add(o, "output", "", "prefix") != BL_OK ||
        bl_options_parse(o, argc, argv) != BL_OK || bl_pipeline_new(o, &p) != BL_OK) {
        fprintf(stderr, "child: %s\n", bl_last_error());
        bl_options_free(o);
        return 2;
    }
    int64_t v[60];
    const void *ptrs[60];
    for (int i = 0; i < 60; i++) v[i] = i, ptrs[i] = &v[i];
    bl_dofn fn = {.process = maybe_lose_rank, .out_coder = bl_coder_int64()};
    bl_pcoll *in, *out;
    bl_status s = bl_create(p, "Numbers", bl_coder_int64(), ptrs, 60, &in);
    if (s == BL_OK)
        s = bl_write_text(p, "WriteInput", in, bl_options_get(o, "output"), ".txt", 2, BL_TEXT_JSON);
    if (s == BL_OK) s = bl_pardo(p, "MaybeLoseRank", in, &fn, &out);
    if (s == BL_OK)
        s = bl_write_text(p, "Write", out, bl_options_get(o, "output"), ".jsonl", 2, BL_TEXT_JSON);
    if (s == BL_OK) s = bl_pipeline_run(p);
    if (s != BL_OK) fprintf(stderr, "child: run failed: %s\n", bl_last_error());
    bl_pipeline_free(p);
    bl_options_free(o);
    if (s != BL_OK) return 1;
    printf("child: run succeeded\n");
    return 0;
}

static void lose_rank(const char *mode, const char *want) {
    if (system("command -v mpirun > /dev/null 2>&1") != 0) SKIP("mpirun is not on PATH");
    char self[1024];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(n > 0);
    if (n <= 0) return;
    self[n] = 0;
    char dir[] = "/tmp/beamlet_rank_loss_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 1);
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "timeout 60 mpirun -np 3 --oversubscribe %s --child=%s --runner=mpi "
             "--bundle_size=5 --worker_timeout_s=1 --output=%s/out 2>&1",
             self, mode, dir);
    FILE *f = popen(cmd, "r");
    CHECK(f != NULL);
    if (!f) return;
    char out[16384];
    size_t len = fread(out, 1, sizeof out - 1, f);
    out[len] = 0;
    int status = pclose(f);
    fprintf(stderr, "  mpirun (%s) said:\n%s", mode, out);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 124, "mpirun status %d",
              status);
    CHECK_MSG(strstr(out, want) != NULL, "wanted \"%s\"", want);
    CHECK(strstr(out, "child: run succeeded") == NULL);
    /* No shard of either WriteToText, final or temporary. */
    char ls[512];
    snprintf(ls, sizeof ls, "test -z \"$(ls -A %s)\"", dir);
    CHECK_MSG(system(ls) == 0, "files left in %s", dir);
    snprintf(ls, sizeof ls, "rm -rf %s", dir);
    CHECK(system(ls) == 0);
}

static void test_killed_rank(void) { lose_rank("kill", "rank 2"); }
static void test_silent_rank(void) { lose_rank("hang", "mpi runner: rank 2 (host "); }
#else
static void test_rank_loss(void) {
    SKIP("built without MPI: --runner=mpi is refused (see test_pipeline_api)");
}
#endif

int main(int argc, char **argv) {
#ifdef BEAMLET_HAVE_MPI
    if (argc > 1 && strncmp(argv[1], "--child=", 8) == 0) {
        const char *mode = argv[1] + 8;
        argv[1] = argv[0]; /* the child parses the flags after its mode */
        return child(mode, argc - 1, argv + 1);
    }
    RUN(test_killed_rank);
    RUN(test_silent_rank);
#else
    (void)argc, (void)argv;
    RUN(test_rank_loss);
#endif
    return bl_test_finish();
}
