/* The reference backend's device: host memory, memcpy, and the op table. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backends.h"
#include "backends/cpu_ref/cpu_ref.h"

static bl_status ref_open(int index, void **ctx, char *description, size_t size) {
    (void)index;
    cpu_ref_ctx *c = calloc(1, sizeof *c);
    if (!c) return bl_error(BL_ERR_OUT_OF_MEMORY, "cpu_ref: cannot allocate context");
    snprintf(description, size, "plain C reference, %d OpenMP threads", omp_get_max_threads());
    *ctx = c;
    return BL_OK;
}

static void ref_close(void *ctx) {
    cpu_ref_ctx *c = ctx;
    if (!c) return;
    free(c->scratch);
    free(c);
}

float *cpu_ref_scratch(bl_device *dev, size_t floats) {
    cpu_ref_ctx *c = bl_device_ctx(dev);
    if (floats > c->scratch_floats) {
        float *grown = realloc(c->scratch, floats * sizeof(float));
        if (!grown) {
            bl_error(BL_ERR_OUT_OF_MEMORY, "cpu_ref: scratch of %zu bytes", floats * sizeof(float));
            return NULL;
        }
        c->scratch = grown;
        c->scratch_floats = floats;
    }
    return c->scratch;
}

static bl_status ref_alloc(void *ctx, size_t bytes, void **ptr) {
    (void)ctx;
    /* 64-byte alignment: cache lines, and room for vector loads. */
    size_t rounded = (bytes + 63) & ~(size_t)63;
    *ptr = aligned_alloc(64, rounded ? rounded : 64);
    if (!*ptr) return bl_error(BL_ERR_OUT_OF_MEMORY, "cpu_ref: cannot allocate %zu bytes", bytes);
    return BL_OK;
}

static void ref_free(void *ctx, void *ptr) {
    (void)ctx;
    free(ptr);
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
