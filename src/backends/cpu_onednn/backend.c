/* The oneDNN backend's device: one CPU engine and stream per handle, host memory with a size
 * header (so freeing can drop cached weight copies), the thread-count option and the op
 * table. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backends.h"
#include "backends/cpu_onednn/onednn.h"
#include "backends/host/host_buffer.h"
#include "beamlet/cpu.h"

#define HEADER 64 /* keeps user pointers 64-byte aligned */

const char *onednn_status_name(dnnl_status_t s) {
    switch (s) {
        case dnnl_success: return "success";
        case dnnl_out_of_memory: return "out of memory";
        case dnnl_invalid_arguments: return "invalid arguments";
        case dnnl_unimplemented: return "unimplemented for these shapes/formats";
        case dnnl_iterator_ends: return "iterator ends";
        case dnnl_runtime_error: return "runtime error";
        case dnnl_not_required: return "not required";
        default: return "unknown status";
    }
}

int onednn_threads(void) { return omp_get_max_threads(); }

static const char *isa_name(dnnl_cpu_isa_t isa) {
    switch (isa) {
        case dnnl_cpu_isa_avx512_core_amx: return "AVX-512 + AMX";
        case dnnl_cpu_isa_avx512_core_bf16: return "AVX-512 + BF16";
        case dnnl_cpu_isa_avx512_core_vnni: return "AVX-512 + VNNI";
        case dnnl_cpu_isa_avx512_core: return "AVX-512";
        case dnnl_cpu_isa_avx2: return "AVX2";
        default: return "SSE/AVX";
    }
}

/* BEAMLET_NUM_THREADS=N pins the thread count for handles opened afterwards; default: all
 * cores (OpenMP's default, which also honours OMP_NUM_THREADS). */
static bl_status apply_env_threads(void) {
    const char *env = getenv("BEAMLET_NUM_THREADS");
    if (!env || !*env) return BL_OK;
    char *end;
    long n = strtol(env, &end, 10);
    if (*end != '\0' || n < 0 || n > 4096)
        return bl_error(BL_ERR_INVALID_ARG, "BEAMLET_NUM_THREADS=%s: expected a thread count", env);
    return bl_cpu_set_num_threads((int)n);
}

bl_status bl_cpu_set_num_threads(int n) {
    if (n < 0) return bl_error(BL_ERR_INVALID_ARG, "cpu threads: %d is negative", n);
    omp_set_num_threads(n > 0 ? n : omp_get_num_procs());
    return BL_OK;
}

int bl_cpu_get_num_threads(void) { return omp_get_max_threads(); }

int64_t bl_cpu_primitives_created(const bl_device *dev) {
    if (!dev || strcmp(bl_device_backend_name(dev), "onednn") != 0) return -1;
    return ((const onednn_ctx *)bl_device_ctx(dev))->created;
}

int64_t bl_cpu_weight_reorders(const bl_device *dev) {
    if (!dev || strcmp(bl_device_backend_name(dev), "onednn") != 0) return -1;
    return ((const onednn_ctx *)bl_device_ctx(dev))->reorders;
}

static bl_status dnnl_open(int index, void **ctx, char *description, size_t size) {
    (void)index;
    BL_TRY(apply_env_threads());
    BL_TRY(bl_host_guard_pages_check_env());
    onednn_ctx *c = calloc(1, sizeof *c);
    if (!c) return bl_error(BL_ERR_OUT_OF_MEMORY, "onednn: cannot allocate context");
    if (dnnl_engine_create(&c->engine, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&c->stream, c->engine, dnnl_stream_default_flags) != dnnl_success) {
        if (c->engine) dnnl_engine_destroy(c->engine);
        free(c);
        return bl_error(BL_ERR_DEVICE, "onednn: cannot create the CPU engine and stream");
    }
    const dnnl_version_t *v = dnnl_version();
    snprintf(description, size, "oneDNN %d.%d.%d, %s, %d threads", v->major, v->minor, v->patch,
             isa_name(dnnl_get_effective_cpu_isa()), omp_get_max_threads());
    *ctx = c;
    return BL_OK;
}

static void dnnl_close(void *ctx) {
    onednn_ctx *c = ctx;
    if (!c) return;
    for (int i = 0; i < c->nprims; i++) {
        onednn_prim *e = &c->prims[i];
        for (int a = 0; a < e->nargs; a++) dnnl_memory_destroy(e->args[a].memory);
        if (e->prim) dnnl_primitive_destroy(e->prim);
        if (e->pd) dnnl_primitive_desc_destroy(e->pd);
        for (int r = 0; r < 3; r++) onednn_reorder_destroy(&e->reo[r]);
        onednn_reorder_destroy(&e->wout);
        bl_host_buffer_free(e->wbuf);
        bl_host_buffer_free(e->buf);
    }
    onednn_weights_release_all(c);
    free(c->prims);
    free(c->weights);
    bl_host_buffer_free(c->scratch);
    bl_host_buffer_free(c->route);
    bl_host_buffer_free(c->partials);
    bl_host_buffer_free(c->bn_floats);
    dnnl_stream_destroy(c->stream);
    dnnl_engine_destroy(c->engine);
    free(c);
}

static bl_status dnnl_alloc(void *ctx, size_t bytes, void **ptr) {
    (void)ctx;
    /* The size header sits before the data, so with guard pages the data's end is the end. */
    char *base = bl_host_buffer_alloc(HEADER + bytes);
    if (!base) return bl_error(BL_ERR_OUT_OF_MEMORY, "onednn: cannot allocate %zu bytes", bytes);
    memcpy(base, &bytes, sizeof bytes);
    *ptr = base + HEADER;
    return BL_OK;
}

static void dnnl_free(void *ctx, void *ptr) {
    if (!ptr) return;
    char *base = (char *)ptr - HEADER;
    size_t bytes;
    memcpy(&bytes, base, sizeof bytes);
    /* A later allocation may reuse the address: cached copies of it must not survive. */
    onednn_note_free(ctx, ptr, bytes);
    bl_host_buffer_free(base);
}

void onednn_parallel_copy(void *dst, const void *src, size_t bytes) {
    if (dst == src || bytes == 0) return;
    if (bytes < ((size_t)1 << 20)) {
        memmove(dst, src, bytes);
        return;
    }
    /* Disjoint device buffers only reach this path (ops never copy overlapping ranges). */
    int nt = omp_get_max_threads();
    size_t chunk = ((bytes + (size_t)nt - 1) / (size_t)nt + 63) & ~(size_t)63;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < nt; t++) {
        size_t off = (size_t)t * chunk;
        if (off < bytes)
            memcpy((char *)dst + off, (const char *)src + off, bytes - off < chunk ? bytes - off : chunk);
    }
}

static bl_status dnnl_copy(void *ctx, void *dst, const void *src, size_t bytes, int kind) {
    if (kind != BL_COPY_D2H) onednn_note_write(ctx, dst, bytes);
    if (bytes) memmove(dst, src, bytes);
    return BL_OK;
}

static void dnnl_host_written(void *ctx, void *dst, size_t bytes) { onednn_note_write(ctx, dst, bytes); }

static bl_status dnnl_memset_zero(void *ctx, void *dst, size_t bytes) {
    onednn_note_write(ctx, dst, bytes);
    if (bytes) memset(dst, 0, bytes);
    return BL_OK;
}

/* bf16 convolutions need AVX512-BF16 (or AMX) in the instruction set oneDNN will use: its
 * effective ISA honours ONEDNN_MAX_CPU_ISA, and on plain AVX-512 or AVX2 oneDNN would emulate
 * bf16 slower than f32, so those are refused rather than slowed down. */
static bool isa_has_bf16(dnnl_cpu_isa_t isa) {
    return (isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16;
}

static bl_status dnnl_set_precision(void *ctx, bl_dtype precision) {
    onednn_ctx *c = ctx;
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    if (precision == BL_BF16 && !isa_has_bf16(isa))
        return bl_error(BL_ERR_UNSUPPORTED,
                        "--precision=bf16 needs a CPU with AVX512-BF16 or AMX; oneDNN uses %s here "
                        "(use --precision=f32)",
                        isa_name(isa));
    c->bf16 = precision == BL_BF16;
    return BL_OK;
}

static bl_status dnnl_sync(void *ctx) {
    onednn_ctx *c = ctx;
    DNNL_CHECK(dnnl_stream_wait(c->stream), "synchronize");
    return BL_OK;
}

static const bl_backend onednn_backend = {
    .name = "onednn",
    .kind = BL_DEVICE_CPU,
    .preferred_layout = BL_LAYOUT_NHWC,
    .layouts = 1u << BL_LAYOUT_NHWC,
    .open = dnnl_open,
    .close = dnnl_close,
    .alloc = dnnl_alloc,
    .free = dnnl_free,
    .copy = dnnl_copy,
    .memset_zero = dnnl_memset_zero,
    .host_written = dnnl_host_written,
    .synchronize = dnnl_sync,
    .supports_dtype = NULL, /* f32 tensors only */
    .set_precision = dnnl_set_precision,
    .ops = BL_BACKEND_OPS(onednn),
};

const bl_backend *bl_backend_onednn(void) { return &onednn_backend; }
