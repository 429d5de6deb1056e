/* A tiny test harness: CHECK macros that count failures, and a closing "N passed, N failed"
 * line. Each tests/<layer>/test_*.c is one executable; ctest runs them all. */
#ifndef BL_TEST_H
#define BL_TEST_H

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "beamlet/core.h"

static int bl_test_checks_failed;
static int bl_test_cases_passed;
static int bl_test_cases_failed;
static int bl_test_cases_skipped;

#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            bl_test_checks_failed++;                                                                         \
            fprintf(stderr, "  FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                                \
        }                                                                                                    \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                                 \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            bl_test_checks_failed++;                                                                         \
            fprintf(stderr, "  FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                \
            fprintf(stderr, __VA_ARGS__);                                                                    \
            fputc('\n', stderr);                                                                             \
        }                                                                                                    \
    } while (0)

/* Checks a call returned BL_OK, printing the thread's error message if not. */
#define CHECK_OK(expr)                                                                                       \
    do {                                                                                                     \
        bl_status s_ = (expr);                                                                               \
        if (s_ != BL_OK) {                                                                                   \
            bl_test_checks_failed++;                                                                         \
            fprintf(stderr, "  FAIL %s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #expr, bl_status_name(s_),   \
                    bl_last_error());                                                                        \
        }                                                                                                    \
    } while (0)

/* Checks a call failed with `want`, and that its message contains `needle`. */
#define CHECK_ERR(expr, want, needle)                                                                        \
    do {                                                                                                     \
        bl_clear_error();                                                                                    \
        bl_status s_ = (expr);                                                                               \
        if (s_ != (want) || !strstr(bl_last_error(), (needle))) {                                            \
            bl_test_checks_failed++;                                                                         \
            fprintf(stderr, "  FAIL %s:%d: %s -> %s \"%s\", wanted %s with \"%s\"\n", __FILE__, __LINE__,    \
                    #expr, bl_status_name(s_), bl_last_error(), bl_status_name(want), (needle));             \
        }                                                                                                    \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                                \
    do {                                                                                                     \
        double a_ = (a), b_ = (b);                                                                           \
        if (!(fabs(a_ - b_) <= (tol))) {                                                                     \
            bl_test_checks_failed++;                                                                         \
            fprintf(stderr, "  FAIL %s:%d: %s = %.9g, %s = %.9g, tol %g\n", __FILE__, __LINE__, #a, a_, #b,  \
                    b_, (double)(tol));                                                                      \
        }                                                                                                    \
    } while (0)

/* Marks the current case skipped (with a reason) and returns from it. */
#define SKIP(...)                                                                                            \
    do {                                                                                                     \
        fprintf(stderr, "  SKIP: ");                                                                         \
        fprintf(stderr, __VA_ARGS__);                                                                        \
        fputc('\n', stderr);                                                                                 \
        bl_test_cases_skipped++;                                                                             \
        return;                                                                                              \
    } while (0)

#define RUN(test_fn)                                                                                         \
    do {                                                                                                     \
        int before_ = bl_test_checks_failed;                                                                 \
        int skipped_before_ = bl_test_cases_skipped;                                                         \
        fprintf(stderr, "%s\n", #test_fn);                                                                   \
        test_fn();                                                                                           \
        if (bl_test_cases_skipped != skipped_before_) {                                                      \
        } else if (bl_test_checks_failed == before_) {                                                       \
            bl_test_cases_passed++;                                                                          \
        } else {                                                                                             \
            bl_test_cases_failed++;                                                                          \
            fprintf(stderr, "%s FAILED\n", #test_fn);                                                        \
        }                                                                                                    \
    } while (0)

/* Runs this test program again as `/proc/self/exe <arg>` (a fresh process, so no OpenMP
 * thread pool or library state is inherited, which fork alone would) and returns the signal
 * that ended it, 0 when it exited with status 0, or -1 when it exited otherwise or did not
 * start. For tests that expect a crash: the test's main runs the case named by argv[1]. */
static inline int bl_test_rerun_signal(const char *arg) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        execl("/proc/self/exe", "/proc/self/exe", arg, (char *)NULL);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) < 0) return -1;
    if (WIFSIGNALED(status)) return WTERMSIG(status);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* Keeps `data` as a starting input of the libFuzzer target `target` (tests/fuzz/<target>.c)
 * when BEAMLET_FUZZ_SEEDS names a folder: scripts/fuzz.sh runs the parser tests with it set, so
 * the fuzzers start from the malformed and valid inputs the tests built by hand. One file per
 * distinct input, named by its hash. */
static inline void bl_test_fuzz_seed(const char *target, const void *data, size_t size) {
    const char *root = getenv("BEAMLET_FUZZ_SEEDS");
    if (!root || !*root) return;
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < size; i++) h = (h ^ ((const unsigned char *)data)[i]) * 1099511628211ull;
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/%s", root, target);
    snprintf(path, sizeof path, "%s/seed-%016llx", dir, (unsigned long long)h);
    if (bl_mkdirs(dir) != BL_OK || bl_file_write_atomic(path, size ? data : "", size) != BL_OK)
        fprintf(stderr, "  could not keep a fuzz seed in %s: %s\n", dir, bl_last_error());
}

static inline int bl_test_finish(void) {
    printf("%d passed, %d failed, %d skipped\n", bl_test_cases_passed, bl_test_cases_failed,
           bl_test_cases_skipped);
    return bl_test_cases_failed == 0 ? 0 : 1;
}

#endif
