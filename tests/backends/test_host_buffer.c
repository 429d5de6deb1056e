/* Host buffers in guard-page mode (BEAMLET_GUARD_PAGES=1, set by this program before its first
 * allocation): whole buffers are usable, a read or write just past the end faults at once
 * (SIGSEGV, seen from a child process), writes into the alignment slack abort at free, the
 * tail of a shared buffer ends at the guard page, and the switch refuses unknown values. */
#include "bl_test.h"

#include <stdint.h>
#include <sys/resource.h>

#include "backends/host/host_buffer.h"

static volatile char sink;

/* Fills the whole buffer (every byte must be writable) and frees it. */
static void check_usable(size_t bytes) {
    char *p = bl_host_buffer_alloc(bytes);
    CHECK_MSG(p != NULL, "%zu bytes", bytes);
    if (!p) return;
    CHECK_MSG(((uintptr_t)p & 63) == 0, "%zu bytes at %p: not 64-byte aligned", bytes, (void *)p);
    memset(p, 0x5A, bytes);
    for (size_t i = 0; i < bytes; i += 997) sink = p[i];
    bl_host_buffer_free(p);
}

static void test_whole_buffers_usable(void) {
    CHECK(bl_host_guard_pages());
    size_t sizes[] = {0, 1, 63, 64, 100, 4096, 4224, 3 * 4096 + 8, ((size_t)2 << 20) + 4};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) check_usable(sizes[i]);
    CHECK(bl_host_buffer_alloc(SIZE_MAX / 2) == NULL); /* out of memory: NULL, no crash */
    bl_host_buffer_free(NULL);
}

/* ---- the children: each overruns on purpose and should not come back ---------------------- */

static int child_write_past_end(void) {
    /* 4224 bytes: the size of the scratchpad oneDNN overran (a multiple of 64: no slack). */
    char *p = bl_host_buffer_alloc(4224);
    p[4224] = 1;
    return 0;
}

static int child_read_past_end(void) {
    float *p = bl_host_buffer_alloc(4096);
    sink = (char)p[1024];
    return 0;
}

static int child_read_empty(void) {
    char *p = bl_host_buffer_alloc(0);
    sink = p[0];
    return 0;
}

static int child_write_into_slack(void) {
    char *p = bl_host_buffer_alloc(100); /* 28 bytes of slack before the guard page */
    p[100] = 1;                          /* not a fault: caught when the buffer is freed */
    bl_host_buffer_free(p);
    return 0;
}

static int child_write_before_start(void) {
    char *p = bl_host_buffer_alloc(100);
    p[-1] = 1;
    bl_host_buffer_free(p);
    return 0;
}

static int child_underrun_into_header(void) {
    char *p = bl_host_buffer_alloc(64);
    p[-(long)sysconf(_SC_PAGESIZE)] = 1; /* the read-only bookkeeping page */
    return 0;
}

static int child_tail_overrun(void) {
    /* A shared scratch grown to 8 KiB for one user, then used by a smaller one: the smaller
     * one's tail ends at the guard page, so its own overrun faults. */
    size_t capacity = 0;
    char *buf = bl_host_buffer_grow(NULL, &capacity, 8192);
    char *mine = bl_host_buffer_tail(buf, capacity, 1000);
    memset(mine, 0, 1000);
    mine[1024] = 1; /* 1000 rounded up to the alignment, plus one */
    return 0;
}

static void expect_signal(const char *child, int want) {
    int got = bl_test_rerun_signal(child);
    CHECK_MSG(got == want, "%s: ended by signal %d, wanted %d (%s)", child, got, want, strsignal(want));
}

static void test_overruns_fault(void) {
    expect_signal("write_past_end", SIGSEGV);
    expect_signal("read_past_end", SIGSEGV);
    expect_signal("read_empty", SIGSEGV);
    expect_signal("underrun_into_header", SIGSEGV);
    expect_signal("tail_overrun", SIGSEGV);
}

static void test_slack_checked_at_free(void) {
    expect_signal("write_into_slack", SIGABRT);
    expect_signal("write_before_start", SIGABRT);
}

static void test_grow_and_tail(void) {
    size_t capacity = 0;
    char *buf = bl_host_buffer_grow(NULL, &capacity, 1000);
    CHECK(buf != NULL && capacity == 1000);
    CHECK(bl_host_buffer_grow(buf, &capacity, 500) == buf && capacity == 1000); /* no shrink */
    char *tail = bl_host_buffer_tail(buf, capacity, 500);
    CHECK(((uintptr_t)tail & 63) == 0);
    CHECK(tail + 500 <= buf + capacity && tail + 500 + 64 > buf + capacity);
    buf = bl_host_buffer_grow(buf, &capacity, 5000);
    CHECK(buf != NULL && capacity == 5000);
    memset(buf, 0, capacity);
    bl_host_buffer_free(buf);
}

static void test_switch_values(void) {
    const char *good[] = {"1", "0", "", "true", "false", "yes", "no"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        setenv("BEAMLET_GUARD_PAGES", good[i], 1);
        CHECK_OK(bl_host_guard_pages_check_env());
    }
    setenv("BEAMLET_GUARD_PAGES", "maybe", 1);
    CHECK_ERR(bl_host_guard_pages_check_env(), BL_ERR_INVALID_ARG, "BEAMLET_GUARD_PAGES=maybe");
    setenv("BEAMLET_GUARD_PAGES", "1", 1);
    CHECK(bl_host_guard_pages()); /* read once, at the first allocation: unchanged */
}

int main(int argc, char **argv) {
    setenv("BEAMLET_GUARD_PAGES", "1", 1); /* before anything allocates */
    if (argc > 1) {
        struct rlimit no_core = {0, 0}; /* the crashes are expected: no core files */
        setrlimit(RLIMIT_CORE, &no_core);
        struct {
            const char *name;
            int (*fn)(void);
        } children[] = {
            {"write_past_end", child_write_past_end},
            {"read_past_end", child_read_past_end},
            {"read_empty", child_read_empty},
            {"write_into_slack", child_write_into_slack},
            {"write_before_start", child_write_before_start},
            {"underrun_into_header", child_underrun_into_header},
            {"tail_overrun", child_tail_overrun},
        };
        for (size_t i = 0; i < sizeof children / sizeof children[0]; i++)
            if (strcmp(argv[1], children[i].name) == 0) return children[i].fn();
        fprintf(stderr, "unknown child case %s\n", argv[1]);
        return 2;
    }
    RUN(test_whole_buffers_usable);
    RUN(test_overruns_fault);
    RUN(test_slack_checked_at_free);
    RUN(test_grow_and_tail);
    RUN(test_switch_values);
    return bl_test_finish();
}
