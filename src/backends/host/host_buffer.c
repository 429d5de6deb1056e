/* Host buffers of the host backends, with the guard-page mode (host_buffer.h says what it
 * catches and what it costs).
 *
 * A guarded buffer's mapping, page by page:
 *
 *   [ header (read-only) ][ body ... ][ guard (no access) ]
 *                              ^start        ^start + round_up(bytes, 64)
 *
 * The header page records the mapping, so freeing needs only the pointer: the buffer starts
 * inside the first body page, whose predecessor is the header. */
#include "backends/host/host_buffer.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

enum {
    ALIGNMENT = 64, /* cache lines, and room for vector loads (as every backend buffer) */
    FILL = 0xBD,    /* the pattern in the slack around a guarded buffer */
    SWITCH_OFF = 0, /* BEAMLET_GUARD_PAGES values */
    SWITCH_ON = 1,
    SWITCH_BAD = -1,
};

#define GUARD_MAGIC UINT64_C(0x424c475541524421) /* "BLGUARD!" */

typedef struct guard_header {
    uint64_t magic;
    char *base;    /* the mapping */
    size_t length; /* its length in bytes */
    char *start;   /* the buffer handed out */
    size_t bytes;  /* its requested size */
} guard_header;

static pthread_once_t mode_once = PTHREAD_ONCE_INIT;
static bool guard_mode;
static size_t page_size;

static int parse_switch(const char *v) {
    if (!v || !*v || strcmp(v, "0") == 0 || strcmp(v, "false") == 0 || strcmp(v, "no") == 0)
        return SWITCH_OFF;
    if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0 || strcmp(v, "yes") == 0) return SWITCH_ON;
    return SWITCH_BAD;
}

static void read_mode(void) {
    guard_mode = parse_switch(getenv("BEAMLET_GUARD_PAGES")) == SWITCH_ON;
    long ps = sysconf(_SC_PAGESIZE);
    page_size = ps > 0 ? (size_t)ps : 4096;
}

bool bl_host_guard_pages(void) {
    pthread_once(&mode_once, read_mode);
    return guard_mode;
}

bl_status bl_host_guard_pages_check_env(void) {
    const char *v = getenv("BEAMLET_GUARD_PAGES");
    if (parse_switch(v) == SWITCH_BAD)
        return bl_error(BL_ERR_INVALID_ARG, "BEAMLET_GUARD_PAGES=%s: expected 1 (guard pages on) or 0 (off)",
                        v);
    return BL_OK;
}

static void *guarded_alloc(size_t bytes) {
    size_t rounded = (bytes + ALIGNMENT - 1) & ~(size_t)(ALIGNMENT - 1);
    size_t body_pages = (rounded + page_size - 1) / page_size;
    size_t length = (body_pages + 2) * page_size;
    char *base = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return NULL;
    char *guard = base + (body_pages + 1) * page_size;
    char *start = guard - rounded; /* a zero-byte buffer points at the guard page itself */
    memset(base + page_size, FILL, (size_t)(start - (base + page_size)));
    memset(start + bytes, FILL, rounded - bytes);
    guard_header h = {GUARD_MAGIC, base, length, start, bytes};
    memcpy(base, &h, sizeof h);
    if (mprotect(base, page_size, PROT_READ) != 0 || mprotect(guard, page_size, PROT_NONE) != 0) {
        munmap(base, length);
        return NULL;
    }
    return start;
}

static size_t first_unlike(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] != FILL) return i;
    return n;
}

static void guarded_free(void *ptr) {
    char *start = ptr;
    char *first_page = (char *)((uintptr_t)start & ~(uintptr_t)(page_size - 1));
    guard_header h;
    memcpy(&h, first_page - page_size, sizeof h);
    if (h.magic != GUARD_MAGIC || h.start != start) {
        fprintf(stderr, "beamlet: guard pages: freeing %p, which is not a guarded host buffer\n", ptr);
        abort();
    }
    size_t rounded = (h.bytes + ALIGNMENT - 1) & ~(size_t)(ALIGNMENT - 1);
    size_t before = (size_t)(start - first_page);
    size_t after = rounded - h.bytes;
    size_t under = first_unlike(first_page, before);
    size_t over = first_unlike(start + h.bytes, after);
    if (under < before || over < after) {
        /* A broken invariant: something wrote outside a buffer. Say where, then stop. */
        if (over < after)
            fprintf(stderr,
                    "beamlet: guard pages: something wrote past the end of a %zu-byte host buffer at %p "
                    "(first changed byte at offset %zu)\n",
                    h.bytes, ptr, h.bytes + over);
        else
            fprintf(stderr,
                    "beamlet: guard pages: something wrote before the start of a %zu-byte host buffer at %p "
                    "(first changed byte at offset -%zu)\n",
                    h.bytes, ptr, before - under);
        abort();
    }
    munmap(h.base, h.length);
}

void *bl_host_buffer_alloc(size_t bytes) {
    if (bl_host_guard_pages()) return guarded_alloc(bytes);
    return bl_alloc_big(bytes ? bytes : 1);
}

void bl_host_buffer_free(void *ptr) {
    if (!ptr) return;
    if (bl_host_guard_pages())
        guarded_free(ptr);
    else
        free(ptr);
}

void *bl_host_buffer_grow(void *buf, size_t *capacity, size_t bytes) {
    if (buf && bytes <= *capacity) return buf;
    bl_host_buffer_free(buf);
    buf = bl_host_buffer_alloc(bytes);
    *capacity = buf ? bytes : 0;
    return buf;
}
