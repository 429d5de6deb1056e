/* Leveled logging to stderr. The threshold comes from BEAMLET_LOG once, or bl_log_set_level. */
#include "beamlet/core.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bl_log_level bl_log_threshold = BL_LOG_INFO;
static pthread_once_t bl_log_once = PTHREAD_ONCE_INIT;

static void bl_log_init(void) {
    const char *env = getenv("BEAMLET_LOG");
    if (!env) return;
    static const char *names[] = {"debug", "info", "warn", "error", "off"};
    for (int i = 0; i <= BL_LOG_OFF; i++)
        if (strcmp(env, names[i]) == 0) bl_log_threshold = (bl_log_level)i;
}

void bl_log_set_level(bl_log_level level) {
    pthread_once(&bl_log_once, bl_log_init);
    bl_log_threshold = level;
}

bl_log_level bl_log_get_level(void) {
    pthread_once(&bl_log_once, bl_log_init);
    return bl_log_threshold;
}

void bl_log(bl_log_level level, const char *fmt, ...) {
    if (level < bl_log_get_level()) return;
    static const char *tags[] = {"debug", "info", "warning", "error"};
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One fprintf per line so lines from threads do not interleave mid-line. */
    fprintf(stderr, "[beamlet %s] %s\n", tags[level], line);
}
