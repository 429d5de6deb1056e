/* The XLA backend's devices: one bl_backend per plugin family ("xla:cpu", "tpu", "xla:cuda"),
 * sharing everything but the plugin they load. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backends.h"
#include "backends/xla/xla.h"

static bl_status open_family(xla_family f, int index, void **ctx, char *description, size_t size) {
    xla_plugin *p;
    BL_TRY(xla_plugin_get(f, &p));
    int n = xla_plugin_device_count(f, false);
    if (index < 0 || index >= n)
        return bl_error(BL_ERR_INVALID_ARG, "xla: device index %d: the plugin has %d device(s) (0..%d)",
                        index, n, n - 1);
    xla_ctx *c = calloc(1, sizeof *c);
    if (!c) return bl_error(BL_ERR_OUT_OF_MEMORY, "xla: cannot allocate context");
    c->plugin = p;
    c->index = index;
    const char *obo = getenv("BEAMLET_OP_BY_OP");
    c->op_by_op = obo && strcmp(obo, "1") == 0;
    xla_plugin_describe(p, index, description, size);
    *ctx = c;
    return BL_OK;
}

static void xla_close(void *ctx) {
    xla_ctx *c = ctx;
    if (!c) return;
    (void)xla_capture_end(c);
    xla_mem_free_all(c);
    free(c);
}

static bl_status xla_alloc(void *ctx, size_t bytes, void **ptr) { return xla_mem_alloc(ctx, bytes, ptr); }

static void xla_free(void *ctx, void *ptr) { xla_mem_free(ctx, ptr); }

static bl_status xla_copy(void *ctx, void *dst, const void *src, size_t bytes, int kind) {
    xla_ctx *c = ctx;
    if (!bytes) return BL_OK;
    xla_buf *b;
    if (kind == BL_COPY_H2D) {
        BL_TRY(xla_buf_from_host(c, src, bytes, &b));
        return xla_mem_write(c, dst, b);
    }
    BL_TRY(xla_mem_read(c, src, bytes, &b));
    if (kind == BL_COPY_D2D) return xla_mem_write(c, dst, b); /* buffers are immutable: share it */
    bl_status s = xla_buf_ready(c, b);
    if (s == BL_OK) s = xla_buf_to_host(c, b, dst);
    xla_buf_unref(b);
    return s;
}

static bl_status xla_memset_zero(void *ctx, void *dst, size_t bytes) { return xla_mem_zero(ctx, dst, bytes); }

static bl_status xla_synchronize(void *ctx) {
    BL_TRY(xla_capture_flush(ctx));
    return xla_mem_sync(ctx);
}

static bl_status xla_program_begin(void *ctx) { return xla_capture_begin(ctx); }

static bl_status xla_program_end(void *ctx) { return xla_capture_end(ctx); }

static void xla_discard(void *ctx, void *ptr, size_t bytes) { xla_mem_discard(ctx, ptr, bytes); }

#define XLA_FAMILY(fam, lower)                                                                               \
    static bl_status open_##lower(int index, void **ctx, char *description, size_t size) {                   \
        return open_family(fam, index, ctx, description, size);                                              \
    }                                                                                                        \
    static int count_##lower(void) { return xla_plugin_device_count(fam, fam == XLA_CPU); }                  \
    static const char *why_##lower(void) { return xla_plugin_unavailable(fam); }                             \
    static const bl_backend backend_##lower = {                                                              \
        .name = "xla",                                                                                       \
        .kind = BL_DEVICE_XLA,                                                                               \
        .device_count = count_##lower,                                                                       \
        .unavailable = why_##lower,                                                                          \
        .preferred_layout = BL_LAYOUT_NCHW,                                                                  \
        .layouts = 1u << BL_LAYOUT_NCHW,                                                                     \
        .open = open_##lower,                                                                                \
        .close = xla_close,                                                                                  \
        .alloc = xla_alloc,                                                                                  \
        .free = xla_free,                                                                                    \
        .copy = xla_copy,                                                                                    \
        .memset_zero = xla_memset_zero,                                                                      \
        .synchronize = xla_synchronize,                                                                      \
        .program_begin = xla_program_begin,                                                                  \
        .program_end = xla_program_end,                                                                      \
        .discard = xla_discard,                                                                              \
        .supports_dtype = bl_op_mixed_bf16,                                                                  \
        .ops = BL_BACKEND_OPS(xla),                                                                          \
    };                                                                                                       \
    const bl_backend *bl_backend_xla_##lower(void) { return &backend_##lower; }

XLA_FAMILY(XLA_CPU, cpu)
XLA_FAMILY(XLA_TPU, tpu)
XLA_FAMILY(XLA_CUDA, cuda)
