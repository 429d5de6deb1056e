/* cuDNN and cuBLAS are loaded at run time when a CUDA device is opened, not linked
 * (src/backends/cuda/cuda_libs.h). Needs no GPU, only the toolkit and cuDNN the build found:
 * starting and counting GPUs maps neither library; the loader finds both and resolves every
 * function; a library it cannot open or that lacks a function is an error naming the file,
 * the same on every later call, and leaves no pointer set. The failure cases run in forked
 * children, since a process loads once and keeps the outcome. */
#include "bl_test.h"

#include <sys/wait.h>
#include <unistd.h>

#include "beamlet/devices.h"
#ifdef BEAMLET_HAVE_CUDA
#include "backends/cuda/cuda_libs.h"
#include "beamlet/cuda.h"
#endif

#define NO_CUDA_REASON "built without the CUDA backend (BEAMLET_HAVE_CUDA undefined)"

#ifdef BEAMLET_HAVE_CUDA
/* Whether a file whose name contains `needle` is mapped into this process. */
static bool mapped(const char *needle) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

static int resolved_count(void) {
    int n = 0;
    for (int i = 0; i < cuda_libs_count(); i++) n += cuda_libs_resolved(i);
    return n;
}

/* Runs `fn` in a child process with `env` set to `value`; true when its checks all passed. */
static bool in_child(const char *env, const char *value, void (*fn)(void)) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return false;
    }
    if (pid == 0) {
        setenv(env, value, 1);
        fn();
        fflush(NULL);
        _exit(bl_test_checks_failed == 0 ? 0 : 1);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return false;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

#define MISSING_CUDNN "/nonexistent/beamlet-test/libcudnn.so.9"

static void child_missing_cudnn(void) {
    CHECK_ERR(cuda_libs_load(), BL_ERR_NOT_FOUND, MISSING_CUDNN);
    char first[2048];
    snprintf(first, sizeof first, "%s", bl_last_error());
    fprintf(stderr, "  %s\n", first);
    CHECK(strstr(first, "BEAMLET_CUDNN_LIBRARY") != NULL);
    CHECK(strstr(first, "No such file") != NULL); /* dlerror's words */
    /* Remembered: the same answer again, and from the versions query too. */
    CHECK_ERR(cuda_libs_load(), BL_ERR_NOT_FOUND, MISSING_CUDNN);
    CHECK_MSG(strcmp(bl_last_error(), first) == 0, "%s", bl_last_error());
    bl_cuda_versions v;
    CHECK_ERR(bl_cuda_versions_get(&v), BL_ERR_NOT_FOUND, MISSING_CUDNN);
    CHECK(resolved_count() == 0);
    CHECK(!mapped("libcudnn") && !mapped("libcublas"));
    CHECK(strcmp(cuda_libs_path(0), "") == 0);
}

/* cuDNN loads, cuBLAS is the wrong library (libc): nothing stays set. */
static void child_wrong_cublas(void) {
    CHECK_ERR(cuda_libs_load(), BL_ERR_UNSUPPORTED, "has no function cublas");
    fprintf(stderr, "  %s\n", bl_last_error());
    CHECK(strstr(bl_last_error(), "BEAMLET_CUBLAS_LIBRARY") != NULL);
    CHECK(resolved_count() == 0);
    CHECK(strcmp(cuda_libs_path(0), "") == 0 && strcmp(cuda_libs_path(1), "") == 0);
}
#endif

/* Nothing in a binary's start-up or in counting GPUs (what "auto" does) touches cuDNN or
 * cuBLAS. Must run before anything in this process loads them. */
static void test_not_loaded_until_needed(void) {
#ifndef BEAMLET_HAVE_CUDA
    SKIP(NO_CUDA_REASON);
#else
    CHECK(!mapped("libcudnn") && !mapped("libcublas"));
    fprintf(stderr, "  %d CUDA device(s)\n", bl_device_count("cuda"));
    CHECK(!mapped("libcudnn") && !mapped("libcublas"));
    CHECK(resolved_count() == 0);
    bl_device *cpu = NULL;
    CHECK_OK(bl_device_get("cpu", &cpu));
    bl_device_release(cpu);
    CHECK(!mapped("libcudnn") && !mapped("libcublas"));
#endif
}

static void test_missing_library_is_named(void) {
#ifndef BEAMLET_HAVE_CUDA
    SKIP(NO_CUDA_REASON);
#else
    CHECK(in_child("BEAMLET_CUDNN_LIBRARY", MISSING_CUDNN, child_missing_cudnn));
    CHECK(in_child("BEAMLET_CUBLAS_LIBRARY", "libc.so.6", child_wrong_cublas));
#endif
}

/* The build found cuDNN and cuBLAS, so they load here, GPU or not, with every function. */
static void test_load_resolves_everything(void) {
#ifndef BEAMLET_HAVE_CUDA
    SKIP(NO_CUDA_REASON);
#else
    CHECK_OK(cuda_libs_load());
    CHECK_OK(cuda_libs_load());
    CHECK(cuda_libs_count() > 30);
    for (int i = 0; i < cuda_libs_count(); i++)
        CHECK_MSG(cuda_libs_resolved(i), "%s not resolved", cuda_libs_name(i));
    fprintf(stderr, "  %d functions from %s and %s\n", resolved_count(), cuda_libs_path(0),
            cuda_libs_path(1));
    CHECK(strstr(cuda_libs_path(0), "libcudnn") != NULL);
    CHECK(strstr(cuda_libs_path(1), "libcublas") != NULL);
    CHECK(mapped("libcudnn") && mapped("libcublas")); /* the first test's check can fail */
    bl_cuda_versions v;
    CHECK_OK(bl_cuda_versions_get(&v));
    fprintf(stderr, "  runtime %d driver %d cudnn %d cublas %d\n", v.runtime, v.driver, v.cudnn, v.cublas);
    CHECK(v.cudnn >= 90000 && v.cublas >= 120000);
#endif
}

int main(void) {
    RUN(test_not_loaded_until_needed);
    RUN(test_missing_library_is_named);
    RUN(test_load_resolves_everything);
    return bl_test_finish();
}
