/* Host buffers of the host backends (cpu_ref and the oneDNN "cpu" backend): tensors,
 * scratchpads, blocked copies, reduction space. 64-byte aligned, and from 2 MiB up backed by
 * transparent huge pages (see bl_alloc_big).
 *
 * BEAMLET_GUARD_PAGES=1 turns on the guard-page mode, for catching overruns in an ordinary
 * optimized build (oneDNN's generated code is invisible to AddressSanitizer): each buffer gets
 * its own mapping whose end sits against an inaccessible page, so the first byte read or
 * written past a buffer whose size is a multiple of 64 faults at once (SIGSEGV). Other sizes
 * keep the 64-byte aligned start, so up to 63 bytes of slack lie between the end and the guard
 * page: the slack (and the space before the start in the first page) is filled with a pattern
 * that bl_host_buffer_free checks, so a write there aborts at free, naming the buffer. The
 * page before the buffer holds its bookkeeping and is read-only, so an underrun that reaches
 * it faults too. Every buffer then costs at least two pages and a mapping: a debugging mode
 * for the test suite and for reproductions, not for production runs.
 *
 * The mode is read from the environment once, at the first allocation; a process never mixes
 * the two kinds of buffers. */
#ifndef BEAMLET_BACKENDS_HOST_HOST_BUFFER_H
#define BEAMLET_BACKENDS_HOST_HOST_BUFFER_H

#include <stdbool.h>
#include <stddef.h>

#include "beamlet/core.h"

/* NULL when out of memory (the caller reports it with its own context). bytes may be 0. */
void *bl_host_buffer_alloc(size_t bytes);
/* Frees a buffer from bl_host_buffer_alloc (NULL is fine). In guard-page mode it first checks
 * the pattern around the buffer and aborts with a message when an overrun wrote there. */
void bl_host_buffer_free(void *ptr);
/* Grow-only scratch: returns `buf` when it already holds `bytes`, else frees it and allocates
 * `bytes` (contents dropped), updating *capacity; NULL with *capacity 0 when out of memory. */
void *bl_host_buffer_grow(void *buf, size_t *capacity, size_t bytes);
/* The part of a shared grow-only buffer of `capacity` bytes that a user needing `bytes` (at most
 * `capacity`) gets: 64-byte aligned, ending as close to the buffer's end as that alignment
 * allows, so the guard page follows what this user may touch rather than what the largest user
 * needed. */
static inline void *bl_host_buffer_tail(void *buf, size_t capacity, size_t bytes) {
    return (char *)buf + ((capacity - bytes) & ~(size_t)63);
}
/* Whether guard-page mode is on in this process. */
bool bl_host_guard_pages(void);
/* Checks BEAMLET_GUARD_PAGES: unset, "", "0", "false", "no" (off) or "1", "true", "yes" (on);
 * anything else is BL_ERR_INVALID_ARG naming the value. Devices call it when they open, so a
 * mistyped switch fails loudly instead of silently running without guards. */
bl_status bl_host_guard_pages_check_env(void);

#endif
