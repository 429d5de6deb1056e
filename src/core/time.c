/* Monotonic wall time: never jumps with NTP or the user changing the clock. */
#define _POSIX_C_SOURCE 200809L
#include "beamlet/core.h"

#include <time.h>

double bl_time_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
