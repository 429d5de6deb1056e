/* Test helper for the tests that run the built programs (beamlet, the examples) as a user would:
 * where they are, a scratch folder for the run, and its removal when every case passed. */
#ifndef BEAMLET_TEST_APP_TEST_H
#define BEAMLET_TEST_APP_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bl_test.h"

/* Puts this test's folder (the build's top, where `beamlet` and examples/ are) in bin and makes
 * root a fresh /tmp/beamlet_<tag>_XXXXXX; unsets BEAMLET_DEVICE so that every run names its
 * device. Returns 0 when ready, 1 when beamlet is not built (printed as a skip), -1 on failure. */
static int app_test_begin(const char *tag, char *bin, size_t bin_size, char *root, size_t root_size) {
    ssize_t n = readlink("/proc/self/exe", bin, bin_size - 1);
    if (n <= 0) return -1;
    bin[n] = 0;
    *strrchr(bin, '/') = 0;
    char probe[600];
    snprintf(probe, sizeof probe, "%s/beamlet", bin);
    if (access(probe, X_OK) != 0) {
        fprintf(stderr, "SKIP: %s not built\n", probe);
        return 1;
    }
    unsetenv("BEAMLET_DEVICE");
    snprintf(root, root_size, "/tmp/beamlet_%s_XXXXXX", tag);
    return mkdtemp(root) ? 0 : -1;
}

/* Removes root when every case passed (a failure leaves it to look at) and returns the status. */
static int app_test_finish(const char *root) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (bl_test_cases_failed == 0 && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    return bl_test_finish();
}

#endif
