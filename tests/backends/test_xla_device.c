/* The XLA backend's device side: a TPU that is not there answers fast with one line, a missing
 * plugin is an error naming it, a bad program is a PJRT error with the function's name (not an
 * abort), programs compile once per text, and device memory (segments of PJRT buffers) behaves
 * like memory under a random sequence of uploads, device copies, zeroing and partial reads,
 * checked against a host copy. The op results themselves are the parity table's. */
#include "bl_test.h"

#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "beamlet/devices.h"
#ifdef BEAMLET_HAVE_XLA
#include "backends/backends.h"
#include "backends/xla/xla.h"
#endif

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Runs fn in a child (plugins load once per process); returns its exit status. */
static int in_child(int (*fn)(void)) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) _exit(fn());
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* No TPU here: one line, within seconds, naming what is missing. */
static int tpu_child(void) {
    unsetenv("TPU_LIBRARY_PATH");
    unsetenv("BEAMLET_PJRT_PLUGIN");
    bl_device *dev;
    double t0 = now();
    bl_status s = bl_device_get("tpu", &dev);
    double dt = now() - t0;
    if (s == BL_OK) return 3;
    const char *msg = bl_last_error();
    fprintf(stderr, "  %.3f s: %s\n", dt, msg);
    if (dt > 5.0) return 4;
    return strstr(msg, "TPU") != NULL && strchr(msg, '\n') == NULL ? 0 : 5;
}

static void test_tpu_absent_is_fast(void) {
    int rc = in_child(tpu_child);
    if (rc == 3) SKIP("this machine has a TPU");
    CHECK_MSG(rc == 0, "tpu child: %d (4: slower than 5 s, 5: not one line naming the TPU)", rc);
}

/* libtpu itself, without a TPU (TPU_LIBRARY_PATH names it, so it is loaded): its client fails
 * cleanly, reported as the PJRT function and libtpu's message. CTest sets BEAMLET_TEST_LIBTPU
 * when configure found libtpu. */
static int libtpu_child(void) {
    setenv("TPU_LIBRARY_PATH", getenv("BEAMLET_TEST_LIBTPU"), 1);
    bl_device *dev;
    double t0 = now();
    bl_status s = bl_device_get("tpu", &dev);
    double dt = now() - t0;
    fprintf(stderr, "  libtpu: %.2f s: %s\n", dt, s == BL_OK ? "opened" : bl_last_error());
    if (s == BL_OK) return 3;
    if (dt > 30) return 4;
    return strstr(bl_last_error(), "PJRT_Client_Create failed") ? 0 : 5;
}

static void test_libtpu_without_tpu(void) {
    const char *lib = getenv("BEAMLET_TEST_LIBTPU");
    if (!lib || !*lib) SKIP("libtpu not installed (scripts/setup.sh --dev installs it)");
    int rc = in_child(libtpu_child);
    CHECK_MSG(rc == 0 || rc == 3, "libtpu child: %d", rc);
    if (rc == 3) fprintf(stderr, "  (a TPU answered)\n");
}

static int missing_plugin_child(void) {
    setenv("BEAMLET_PJRT_PLUGIN", "/nonexistent/pjrt_plugin.so", 1);
    bl_device *dev;
    if (bl_device_get("xla:cpu", &dev) == BL_OK) return 3;
    fprintf(stderr, "  %s\n", bl_last_error());
    return strstr(bl_last_error(), "BEAMLET_PJRT_PLUGIN=/nonexistent/pjrt_plugin.so: no such file") ? 0 : 4;
}

static void test_missing_plugin(void) {
#ifndef BEAMLET_HAVE_XLA
    SKIP("built without the XLA backend");
#endif
    CHECK_MSG(in_child(missing_plugin_child) == 0, "a missing plugin was not reported by name");
}

#ifdef BEAMLET_HAVE_XLA
static bl_device *open_xla(void) {
    bl_device *dev;
    if (bl_device_get("xla:cpu", &dev) != BL_OK) return NULL;
    return dev;
}

static void test_bad_program_is_an_error(void) {
    bl_device *dev = open_xla();
    if (!dev) SKIP("xla:cpu: %s", bl_last_error());
    size_t len = 4;
    xla_buf *out = NULL;
    bl_status s = xla_run(bl_device_ctx(dev), "func.func @main() -> tensor<4xui8> { this is not stablehlo }",
                          0, NULL, 1, &len, &out);
    CHECK(s == BL_ERR_DEVICE && out == NULL);
    fprintf(stderr, "  %s\n", bl_last_error());
    CHECK(strstr(bl_last_error(), "PJRT_Client_Compile failed") != NULL);
    bl_device_release(dev);
}

static void test_compiled_once(void) {
    bl_device *dev = open_xla();
    if (!dev) SKIP("xla:cpu: %s", bl_last_error());
    int64_t shape[2] = {3, 37};
    bl_tensor x, y;
    CHECK_OK(bl_tensor_alloc(dev, BL_F32, 2, shape, &x));
    CHECK_OK(bl_tensor_alloc(dev, BL_F32, 2, shape, &y));
    float host[3 * 37], back[3 * 37];
    for (int i = 0; i < 3 * 37; i++) host[i] = (float)(i % 7) - 3.0f;
    CHECK_OK(bl_tensor_copy_from_host(&x, host));
    int64_t c0, c1, c2;
    xla_program_stats(&c0, NULL, NULL);
    CHECK_OK(bl_op_relu_forward(dev, &x, &y));
    xla_program_stats(&c1, NULL, NULL);
    CHECK_OK(bl_op_relu_forward(dev, &y, &x));
    xla_program_stats(&c2, NULL, NULL);
    CHECK_MSG(c1 - c0 == 1 && c2 == c1, "compiled %lld then %lld programs", (long long)(c1 - c0),
              (long long)(c2 - c1));
    CHECK_OK(bl_tensor_copy_to_host(&x, back));
    for (int i = 0; i < 3 * 37; i++) CHECK(back[i] == (host[i] > 0 ? host[i] : 0));
    bl_tensor_release(&x);
    bl_tensor_release(&y);
    bl_device_release(dev);
}

/* Random uploads, device copies (within and across allocations, overlapping ranges), zeroing and
 * reads of byte ranges, mirrored on the host. */
/* The random sequence; with `programs`, runs of it are recorded as whole programs
 * (bl_device_program_begin / _end at random points), where a read in the middle runs what was
 * recorded so far. */
static void memory_model(bool programs) {
    bl_device *dev = open_xla();
    if (!dev) SKIP("xla:cpu: %s", bl_last_error());
    /* Ranges on a 256-byte grid: every distinct slice is a program to compile, so the grid
     * keeps their number (and the test's time) small while still cutting segments every way. */
    enum {
        N = 4096,
        G = 256
    };
    uint8_t *mirror[2], *tmp = malloc(N), *back = malloc(N);
    void *d[2];
    bl_rng rng;
    bl_rng_seed(&rng, 12);
    for (int k = 0; k < 2; k++) {
        mirror[k] = calloc(1, N); /* never-written bytes read as zero */
        CHECK_OK(bl_device_alloc(dev, N, &d[k]));
    }
    int reads = 0, recorded = 0;
    bool in_program = false;
    for (int step = 0; step < 150; step++) {
        if (programs && bl_rng_below(&rng, 4) == 0) {
            CHECK_OK(in_program ? bl_device_program_end(dev) : bl_device_program_begin(dev));
            in_program = !in_program;
            recorded += in_program;
        }
        int k = (int)bl_rng_below(&rng, 2), op = (int)bl_rng_below(&rng, 4);
        size_t off = G * bl_rng_below(&rng, N / G), len = G * (1 + bl_rng_below(&rng, (N - off) / G));
        uint8_t *dst = (uint8_t *)d[k] + off;
        const bl_backend *b = dev->backend;
        if (op == 0) {
            for (size_t i = 0; i < len; i++) tmp[i] = (uint8_t)bl_rng_below(&rng, 256);
            CHECK_OK(b->copy(dev->ctx, dst, tmp, len, BL_COPY_H2D));
            memcpy(mirror[k] + off, tmp, len);
        } else if (op == 1) {
            int from = (int)bl_rng_below(&rng, 2);
            size_t src_off = G * bl_rng_below(&rng, (N - len) / G + 1);
            CHECK_OK(b->copy(dev->ctx, dst, (uint8_t *)d[from] + src_off, len, BL_COPY_D2D));
            memmove(mirror[k] + off, mirror[from] + src_off, len);
        } else if (op == 2) {
            CHECK_OK(b->memset_zero(dev->ctx, dst, len));
            memset(mirror[k] + off, 0, len);
        } else {
            CHECK_OK(b->copy(dev->ctx, back, dst, len, BL_COPY_D2H));
            CHECK_MSG(memcmp(back, mirror[k] + off, len) == 0, "step %d: read of [%zu, %zu) differs", step,
                      off, off + len);
            reads++;
        }
    }
    if (in_program) CHECK_OK(bl_device_program_end(dev));
    for (int k = 0; k < 2; k++) {
        CHECK_OK(dev->backend->copy(dev->ctx, back, d[k], N, BL_COPY_D2H));
        CHECK(memcmp(back, mirror[k], N) == 0);
        fprintf(stderr, "  allocation %d: %d segments at the end\n", k,
                xla_mem_segment_count(bl_device_ctx(dev), d[k]));
        bl_device_free(dev, d[k]);
        free(mirror[k]);
    }
    fprintf(stderr, "  150 operations (%d programs), %d reads matched the host copy\n", recorded, reads);
    CHECK_OK(bl_device_synchronize(dev));
    free(tmp);
    free(back);
    bl_device_release(dev);
}

static void test_memory_model(void) { memory_model(false); }

/* Device N of a plugin (tpu:N on a TPU VM, one chip per sweep worker): programs compile once as
 * portable executables and run on the device an execution names. The CPU plugin makes several
 * devices of the host (the resolver shows one, "xla:cpu"); the backend's index N is opened here
 * directly, and an op on it must give device 0's result from the same compiled program. */
static void test_second_device(void) {
    int n = xla_plugin_device_count(XLA_CPU, false);
    if (n < 2) SKIP("the CPU plugin has %d device(s)", n);
    const bl_backend *b = bl_backend_xla_cpu();
    bl_device devs[2] = {{.backend = b, .index = 0}, {.backend = b, .index = 1}};
    float host[64], out[2][64];
    for (int i = 0; i < 64; i++) host[i] = (float)(i % 7) - 3.0f;
    int64_t compiled[2];
    for (int d = 0; d < 2; d++) {
        CHECK_OK(b->open(d, &devs[d].ctx, devs[d].description, sizeof devs[d].description));
        if (bl_test_checks_failed) return;
        snprintf(devs[d].name, sizeof devs[d].name, "xla:cpu#%d", d);
        int64_t shape[2] = {8, 8};
        bl_tensor x, y;
        CHECK_OK(bl_tensor_alloc(&devs[d], BL_F32, 2, shape, &x));
        CHECK_OK(bl_tensor_alloc(&devs[d], BL_F32, 2, shape, &y));
        CHECK_OK(bl_tensor_copy_from_host(&x, host));
        CHECK_OK(bl_op_relu_forward(&devs[d], &x, &y));
        CHECK_OK(bl_tensor_copy_to_host(&y, out[d]));
        xla_program_stats(&compiled[d], NULL, NULL);
        bl_tensor_release(&x);
        bl_tensor_release(&y);
    }
    CHECK(memcmp(out[0], out[1], sizeof out[0]) == 0);
    for (int i = 0; i < 64; i++) CHECK(out[1][i] == (host[i] > 0 ? host[i] : 0.0f));
    CHECK_MSG(compiled[1] == compiled[0], "device 1 compiled %lld more programs",
              (long long)(compiled[1] - compiled[0]));
    fprintf(stderr, "  %d devices; device 1 ran device 0's program: %s\n", n, devs[1].description);
    for (int d = 0; d < 2; d++) b->close(devs[d].ctx);
    char buf[64];
    CHECK_ERR(b->open(n, &devs[0].ctx, buf, sizeof buf), BL_ERR_INVALID_ARG, "device index");
}

static void test_memory_model_in_programs(void) { memory_model(true); }
#endif

int main(void) {
    RUN(test_tpu_absent_is_fast);
    RUN(test_libtpu_without_tpu);
    RUN(test_missing_plugin);
#ifdef BEAMLET_HAVE_XLA
    RUN(test_bad_program_is_an_error);
    RUN(test_compiled_once);
    RUN(test_memory_model);
    RUN(test_memory_model_in_programs);
    RUN(test_second_device);
#endif
    return bl_test_finish();
}
