/* The reference backend's device: host memory, memcpy, and the op table. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backends.h"
#include "backends/cpu_ref/cpu_ref.h"
#include "backends/host/host_buffer.h"

static bl_status ref_open(int index, void **ctx, char *description, size_t size) {
    (void)index;
    BL_TRY(bl_host_guard_pages_check_env());
    cpu_ref_ctx *c = calloc(1, sizeof *c);
    if (!c) return bl_error(BL_ERR_OUT_OF_MEMORY, "cpu_ref: cannot allocate context");
    snprintf(description, size, "plain C reference, %d OpenMP threads", omp_get_max_threads());
    *ctx = c;
    return BL_OK;
}

static void ref_close(void *ctx) {
    cpu_ref_ctx *c = ctx;
    if (!c) return;
    bl_host_buffer_free(c->scratch);
    free(c);
}

/* Grow-only; contents are not kept across calls. Each call gets the buffer's tail, so with
 * guard pages an overrun of what this call asked for faults. */
float *cpu_ref_scratch(bl_device *dev, size_t floats) {
    cpu_ref_ctx *c = bl_device_ctx(dev);
    size_t bytes = floats * sizeof(float), capacity = c->scratch_floats * sizeof(float);
    c->scratch = bl_host_buffer_grow(c->scratch, &capacity, bytes);
    c->scratch_floats = capacity / sizeof(float);
    if (!c->scratch) {
        bl_error(BL_ERR_OUT_OF_MEMORY, "cpu_ref: scratch of %zu bytes", bytes);
        return NULL;
    }
    return bl_host_buffer_tail(c->scratch, capacity, bytes);
}

static bl_status ref_alloc(void *ctx, size_t bytes, void **ptr) {
    (void)ctx;
    /* 64-byte aligned (cache lines, room for vector loads); guard pages when switched on. */
    *ptr = bl_host_buffer_alloc(bytes);
    if (!*ptr) return bl_error(BL_ERR_OUT_OF_MEMORY, "cpu_ref: cannot allocate %zu bytes", bytes);
    return BL_OK;
}

static void ref_free(void *ctx, void *ptr) {
    (void)ctx;
    bl_host_buffer_free(ptr);
}

static bl_status ref_copy(void *ctx, void *dst, const void *src, size_t bytes, int kind) {
    (void)ctx;
    (void)kind;
    if (bytes) memmove(dst, src, bytes);
    return BL_OK;
}

static bl_status ref_memset_zero(void *ctx, void *dst, size_t bytes) {
    (void)ctx;
    if (bytes) memset(dst, 0, bytes);
    return BL_OK;
}

static bl_status ref_synchronize(void *ctx) {
    (void)ctx;
    return BL_OK;
}

/* Nothing is derived from tensor contents here: a write through the host pointer needs no note. */
static void ref_host_written(void *ctx, void *dst, size_t bytes) { (void)ctx, (void)dst, (void)bytes; }

static const bl_backend cpu_ref_backend = {
    .name = "cpu_ref",
    .kind = BL_DEVICE_CPU,
    .preferred_layout = BL_LAYOUT_NCHW,
    .layouts = 1u << BL_LAYOUT_NCHW,
    .open = ref_open,
    .close = ref_close,
    .alloc = ref_alloc,
    .free = ref_free,
    .copy = ref_copy,
    .memset_zero = ref_memset_zero,
    .host_written = ref_host_written,
    .synchronize = ref_synchronize,
    .supports_dtype = NULL, /* f32 only */
    .ops = BL_BACKEND_OPS(cpu_ref),
};

const bl_backend *bl_backend_cpu_ref(void) { return &cpu_ref_backend; }
