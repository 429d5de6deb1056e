/* Thread-local error messages: library code returns a bl_status and leaves the human-readable
 * reason here, so callers add context on the way up and the CLI prints one clear line. */
#include "beamlet/core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BL_ERROR_MAX 1024

static _Thread_local char bl_error_message[BL_ERROR_MAX];

bl_status bl_error(bl_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(bl_error_message, sizeof bl_error_message, fmt, ap);
    va_end(ap);
    return status;
}

bl_status bl_error_context(bl_status status, const char *fmt, ...) {
    if (status == BL_OK) return status; /* keep the message of the last real failure intact */
    char prefix[BL_ERROR_MAX];
    char previous[BL_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(previous, bl_error_message, sizeof previous);
    /* Truncation is acceptable for over-long messages; build the string piecewise so the
     * compiler does not warn about it. */
    size_t n = strlen(prefix);
    memcpy(bl_error_message, prefix, n + 1);
    if (previous[0] && n + 2 < BL_ERROR_MAX) {
        memcpy(bl_error_message + n, ": ", 3);
        size_t room = BL_ERROR_MAX - n - 3;
        size_t m = strnlen(previous, room);
        memcpy(bl_error_message + n + 2, previous, m);
        bl_error_message[n + 2 + m] = '\0';
    }
    return status;
}

const char *bl_last_error(void) { return bl_error_message; }

void bl_clear_error(void) { bl_error_message[0] = '\0'; }

const char *bl_status_name(bl_status status) {
    switch (status) {
        case BL_OK: return "ok";
        case BL_ERR_INVALID_ARG: return "invalid argument";
        case BL_ERR_OUT_OF_MEMORY: return "out of memory";
        case BL_ERR_IO: return "I/O error";
        case BL_ERR_FORMAT: return "format error";
        case BL_ERR_UNSUPPORTED: return "unsupported";
        case BL_ERR_NOT_FOUND: return "not found";
        case BL_ERR_DEVICE: return "device error";
        case BL_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

bool bl_status_transient(bl_status status) {
    return status == BL_ERR_IO || status == BL_ERR_OUT_OF_MEMORY || status == BL_ERR_DEVICE;
}

bl_status bl_errno_status(int err) {
    switch (err) {
        case ENOENT:
        case ENOTDIR: return BL_ERR_NOT_FOUND;
        /* Paths that can never work as given: another try gets the same answer. */
        case EACCES:
        case EPERM:
        case EROFS:
        case EEXIST:
        case EISDIR:
        case ENAMETOOLONG:
        case ELOOP:
        case EINVAL: return BL_ERR_INVALID_ARG;
        case ENOMEM: return BL_ERR_OUT_OF_MEMORY;
        default: return BL_ERR_IO; /* EIO, ENOSPC, EDQUOT, EFBIG, EMFILE, EAGAIN, ...: may pass */
    }
}

void bl_panic(const char *file, int line, const char *what) {
    fprintf(stderr, "beamlet: broken invariant at %s:%d: %s\n", file, line, what);
    abort();
}
