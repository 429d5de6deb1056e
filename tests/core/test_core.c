/* Core: errors with context, dtype conversions, arena, RNG determinism, atomic files. */
#include "bl_test.h"

#include <errno.h>
#include <unistd.h>

static bl_status fails_deep(void) { return bl_error(BL_ERR_IO, "disk full at offset %d", 42); }
static bl_status fails_up(void) {
    bl_status s = fails_deep();
    if (s != BL_OK) return bl_error_context(s, "writing model.safetensors");
    return BL_OK;
}

static void test_error_context(void) {
    CHECK(fails_up() == BL_ERR_IO);
    CHECK(strcmp(bl_last_error(), "writing model.safetensors: disk full at offset 42") == 0);
    bl_clear_error();
    CHECK(bl_last_error()[0] == '\0');
    CHECK(strcmp(bl_status_name(BL_ERR_FORMAT), "format error") == 0);
}

static void test_dtype_conversions(void) {
    CHECK(bl_dtype_size(BL_BF16) == 2 && bl_dtype_size(BL_I64) == 8 && bl_dtype_size(BL_U8) == 1);
    float vals[] = {0.0f, 1.0f, -2.5f, 3.14159f, 1e-3f, 65504.0f, -1e-7f};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        float b = bl_bf16_to_f32(bl_f32_to_bf16(vals[i]));
        CHECK_NEAR(b, vals[i], fabsf(vals[i]) * (1.0f / 128) + 1e-30);
        float h = bl_f16_to_f32(bl_f32_to_f16(vals[i]));
        CHECK_NEAR(h, vals[i], fabsf(vals[i]) * (1.0f / 1024) + 6e-8);
    }
    CHECK(bl_f32_to_f16(1.0f) == 0x3c00);
    CHECK(bl_f32_to_f16(-2.0f) == 0xc000);
    CHECK(bl_f32_to_f16(1e6f) == 0x7c00); /* overflow to inf */
    CHECK(bl_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(bl_f16_to_f32(0x0001) == 5.9604644775390625e-08f); /* smallest subnormal */
    CHECK(bl_f32_to_f16(5.9604644775390625e-08f) == 0x0001);
    CHECK(isnan(bl_bf16_to_f32(bl_f32_to_bf16(NAN))));
    CHECK(isnan(bl_f16_to_f32(bl_f32_to_f16(NAN))));
    /* Round to nearest even: 1 + 2^-8 sits halfway between two bf16 values. */
    CHECK(bl_f32_to_bf16(1.00390625f) == 0x3f80);
}

static void test_arena(void) {
    bl_arena *a;
    CHECK_OK(bl_arena_new(1024, &a));
    void *p = bl_arena_alloc(a, 10, 64);
    void *q = bl_arena_alloc(a, 100, 64);
    CHECK(p && q && ((uintptr_t)q % 64) == 0 && (char *)q >= (char *)p + 10);
    CHECK(bl_arena_alloc(a, 2000, 8) == NULL);
    CHECK(strstr(bl_last_error(), "2000 bytes requested") != NULL);
    bl_arena_reset(a);
    CHECK(bl_arena_used(a) == 0);
    bl_arena_free(a);
}

static void test_rng(void) {
    bl_rng a, b;
    bl_rng_seed(&a, 1234);
    bl_rng_seed(&b, 1234);
    for (int i = 0; i < 100; i++) CHECK(bl_rng_u64(&a) == bl_rng_u64(&b));
    bl_rng_seed(&b, 1235);
    CHECK(bl_rng_u64(&a) != bl_rng_u64(&b));
    double sum = 0, sq = 0;
    int hist[10] = {0};
    for (int i = 0; i < 100000; i++) {
        double n = bl_rng_normal(&a);
        sum += n;
        sq += n * n;
        hist[bl_rng_below(&a, 10)]++;
        double u = bl_rng_uniform(&a);
        CHECK(u >= 0 && u < 1);
    }
    CHECK_NEAR(sum / 100000, 0.0, 0.02);
    CHECK_NEAR(sq / 100000, 1.0, 0.02);
    for (int i = 0; i < 10; i++) CHECK(hist[i] > 9500 && hist[i] < 10500);
    bl_rng f1 = bl_rng_fork(&a, 1), f2 = bl_rng_fork(&a, 2), f1b = bl_rng_fork(&a, 1);
    CHECK(bl_rng_u64(&f1) != bl_rng_u64(&f2));
    bl_rng_seed(&f1, 0);
    (void)f1b;
}

static void test_atomic_file(void) {
    char path[] = "/tmp/beamlet_core_test_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK_OK(bl_file_write_atomic(path, "hello", 5));
    void *data;
    size_t size;
    CHECK_OK(bl_file_read_all(path, &data, &size));
    CHECK(size == 5 && memcmp(data, "hello", 5) == 0);
    free(data);
    unlink(path);
    CHECK_ERR(bl_file_write_atomic("/nonexistent-dir/x", "a", 1), BL_ERR_NOT_FOUND, "/nonexistent-dir/x");
    CHECK_ERR(bl_file_read_all("/nonexistent-dir/x", &data, &size), BL_ERR_NOT_FOUND, "cannot open");
}

/* Which failures a runner may retry: only those that may pass on another try. */
static void test_error_kinds(void) {
    CHECK(bl_status_transient(BL_ERR_IO) && bl_status_transient(BL_ERR_OUT_OF_MEMORY) &&
          bl_status_transient(BL_ERR_DEVICE));
    CHECK(!bl_status_transient(BL_OK) && !bl_status_transient(BL_ERR_INVALID_ARG) &&
          !bl_status_transient(BL_ERR_FORMAT) && !bl_status_transient(BL_ERR_UNSUPPORTED) &&
          !bl_status_transient(BL_ERR_NOT_FOUND) && !bl_status_transient(BL_ERR_INTERNAL));
    CHECK(bl_errno_status(ENOENT) == BL_ERR_NOT_FOUND && bl_errno_status(ENOTDIR) == BL_ERR_NOT_FOUND);
    CHECK(bl_errno_status(EACCES) == BL_ERR_INVALID_ARG && bl_errno_status(EROFS) == BL_ERR_INVALID_ARG &&
          bl_errno_status(EISDIR) == BL_ERR_INVALID_ARG);
    CHECK(bl_errno_status(ENOMEM) == BL_ERR_OUT_OF_MEMORY);
    CHECK(bl_errno_status(EIO) == BL_ERR_IO && bl_errno_status(ENOSPC) == BL_ERR_IO &&
          bl_errno_status(EFBIG) == BL_ERR_IO);
    /* A folder that cannot be made because a file stands in its way is not worth a retry. */
    char dir[] = "/tmp/bl_core_kinds_XXXXXX", file[64], under[96];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(file, sizeof file, "%s/file", dir);
    snprintf(under, sizeof under, "%s/sub/deeper", file);
    CHECK_OK(bl_file_write_atomic(file, "x", 1));
    bl_status s = bl_mkdirs(under);
    CHECK_MSG(s != BL_OK && !bl_status_transient(s), "%s: %s", bl_status_name(s), bl_last_error());
    CHECK(strstr(bl_last_error(), "cannot create directory"));
    CHECK_ERR(bl_mkdirs(file), BL_ERR_INVALID_ARG, "exists and is not a directory");
    unlink(file);
    rmdir(dir);
}

/* Workers x threads <= cores; at least one each; --threads_per_worker wins; OMP_NUM_THREADS
 * caps the share. */
static void test_thread_budget(void) {
    const char *env = getenv("OMP_NUM_THREADS");
    char *saved = env ? strdup(env) : NULL;
    unsetenv("OMP_NUM_THREADS");
    CHECK(bl_thread_budget(16, 3, 0) == 5);
    CHECK(bl_thread_budget(16, 1, 0) == 16);
    CHECK(bl_thread_budget(2, 2, 0) == 1);
    CHECK(bl_thread_budget(2, 3, 0) == 1);
    CHECK(bl_thread_budget(2, 2, 4) == 4);
    CHECK(bl_thread_budget(0, 0, 0) == 1);
    setenv("OMP_NUM_THREADS", "2", 1);
    CHECK(bl_thread_budget(16, 2, 0) == 2);
    CHECK(bl_thread_budget(16, 16, 0) == 1);
    CHECK(bl_thread_budget(16, 2, 6) == 6);
    setenv("OMP_NUM_THREADS", "3,1", 1); /* nested levels: the first is ours */
    CHECK(bl_thread_budget(16, 2, 0) == 3);
    setenv("OMP_NUM_THREADS", "lots", 1); /* not a count: no cap */
    CHECK(bl_thread_budget(16, 2, 0) == 8);
    if (saved)
        setenv("OMP_NUM_THREADS", saved, 1);
    else
        unsetenv("OMP_NUM_THREADS");
    free(saved);
    CHECK(bl_cpu_cores() >= 1);
    int before = bl_compute_threads();
    bl_compute_threads_set(3);
    CHECK(bl_compute_threads() == 3);
    bl_compute_threads_set(before);
}

static void test_timer_and_progress(void) {
    double t0 = bl_time_now();
    bl_progress p;
    bl_progress_begin(&p, "test", 20);
    for (int i = 0; i < 20; i++) bl_progress_step(&p, 1, "x");
    bl_progress_end(&p);
    CHECK(p.done == 20);
    CHECK(bl_time_now() >= t0);
}

int main(void) {
    RUN(test_error_context);
    RUN(test_dtype_conversions);
    RUN(test_arena);
    RUN(test_rng);
    RUN(test_atomic_file);
    RUN(test_error_kinds);
    RUN(test_thread_budget);
    RUN(test_timer_and_progress);
    return bl_test_finish();
}
