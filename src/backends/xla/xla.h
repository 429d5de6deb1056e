/* Internals of the XLA backend: a PJRT plugin loaded at run time (dlopen, GetPjrtApi), its
 * client, a cache of compiled StableHLO programs, and device memory kept as PJRT buffers.
 *
 * Memory. PJRT buffers are immutable arrays, while the layers above carve tensors out of one
 * allocation by pointer arithmetic (a model's weights, its activations). So an allocation here
 * is a range of reserved, inaccessible address space (mmap PROT_NONE: a stray host access
 * faults) whose contents are a sorted list of segments, each a device-resident PJRT buffer of
 * raw bytes (u8[len]). An op reads the byte ranges of its inputs (a segment as is, or pieces
 * sliced and concatenated on the device), runs its program, and writes each output range as a
 * new segment, trimming the segments it overlaps (on the device too). Nothing goes through the
 * host between ops; host copies happen only in bl_tensor_copy_*.
 *
 * Programs. Every op is StableHLO text generated for its shapes and dtypes; the text is the
 * cache key, so a program is compiled once per process and reused. Inputs and outputs are the
 * raw u8 segments; a program bitcasts them to its element types first and back at the end.
 *
 * Whole programs. Between bl_device_program_begin and _end (a training step, an inference
 * pass) the op programs are not run one by one but recorded as calls of one module, run as one
 * execution at the end (capture.c); the segments meanwhile hold placeholders. */
#ifndef BEAMLET_BACKENDS_XLA_H
#define BEAMLET_BACKENDS_XLA_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/backend.h"

/* The plugin families, one per device name the backend serves. */
typedef enum xla_family {
    XLA_CPU = 0, /* "xla:cpu": the CPU plugin from PyPI */
    XLA_TPU,     /* "tpu": libtpu */
    XLA_CUDA,    /* "xla:cuda": the CUDA plugin */
    XLA_FAMILIES
} xla_family;

typedef struct xla_plugin xla_plugin; /* one loaded plugin and its client, per family */

/* A device buffer shared by the segments and op arguments that hold it. */
typedef struct xla_buf {
    void *pjrt; /* PJRT_Buffer *; NULL: a value of a program still being recorded (capture.c) */
    size_t len; /* bytes */
    int refs;
} xla_buf;

typedef struct xla_seg {
    size_t off, len;
    xla_buf *buf;
} xla_seg;

typedef struct xla_region {
    uintptr_t base;
    size_t size, mapped;
    xla_seg *segs;
    int nsegs, cap;
} xla_region;

typedef struct xla_capture xla_capture;

typedef struct xla_ctx {
    xla_plugin *plugin;
    int index;
    bool op_by_op;        /* BEAMLET_OP_BY_OP=1: programs off */
    xla_capture *capture; /* the program being recorded, between begin and end */
    xla_region *regions;
    int nregions, cap;
} xla_ctx;

/* ---- plugin (plugin.c) ---- */
/* Loads the family's plugin and creates its client once per process; the error names the
 * plugin, the PJRT function and the plugin's message. */
bl_status xla_plugin_get(xla_family f, xla_plugin **out);
/* The plugin's devices; `one`: 1 when it has any ("xla:cpu" names the host, as "cpu" does,
 * however many devices the CPU plugin makes of it). */
int xla_plugin_device_count(xla_family f, bool one);
/* Why the family has no device: the load or client error, for the resolver's message. */
const char *xla_plugin_unavailable(xla_family f);
void xla_plugin_describe(xla_plugin *p, int index, char *buf, size_t size);

/* Host <-> device. The buffers must hold a PJRT buffer (xla_buf_ready). */
bl_status xla_buf_from_host(xla_ctx *c, const void *src, size_t len, xla_buf **out);
bl_status xla_buf_to_host(xla_ctx *c, xla_buf *b, void *dst);
bl_status xla_buf_await(xla_ctx *c, xla_buf *b);
xla_buf *xla_buf_ref(xla_buf *b);
void xla_buf_unref(xla_buf *b);

/* Compiles (once) and runs a program of `nin` u8 inputs (ready: xla_buf_ready) and `nout` u8
 * outputs whose sizes are given; the outputs are new buffers with one reference each. */
bl_status xla_execute(xla_ctx *c, const char *text, int nin, xla_buf *const *in, int nout,
                      const size_t *out_len, xla_buf **out);
/* Compiles and executions counted, for the tests and benchmarks (bl_xla_stats_get). */
void xla_program_stats(int64_t *compiled, int64_t *cached, double *compile_seconds);
int64_t xla_executions(void);

/* ---- whole programs (capture.c) ---- */
/* What every op and gather calls: xla_execute, or while a program is being recorded, a call
 * recorded into it whose outputs are placeholders. */
bl_status xla_run(xla_ctx *c, const char *text, int nin, xla_buf *const *in, int nout, const size_t *out_len,
                  xla_buf **out);
bl_status xla_capture_begin(xla_ctx *c);
/* Compiles (once per text) and runs what was recorded, as one execution; recording goes on. */
bl_status xla_capture_flush(xla_ctx *c);
bl_status xla_capture_end(xla_ctx *c);
/* Makes sure `b` holds a PJRT buffer (running the recording it comes from). */
bl_status xla_buf_ready(xla_ctx *c, xla_buf *b);

/* ---- memory (memory.c) ---- */
bl_status xla_mem_alloc(xla_ctx *c, size_t bytes, void **ptr);
void xla_mem_free(xla_ctx *c, void *ptr);
void xla_mem_free_all(xla_ctx *c);
/* The bytes [ptr, ptr+len) as one buffer (a new reference), gathered on the device when they
 * span segments; never-written bytes read as zero. */
bl_status xla_mem_read(xla_ctx *c, const void *ptr, size_t len, xla_buf **out);
/* Makes `b` (len bytes, a reference the store takes over) the contents of [ptr, ptr+len). */
bl_status xla_mem_write(xla_ctx *c, void *ptr, xla_buf *b);
bl_status xla_mem_zero(xla_ctx *c, void *ptr, size_t len);
/* Drops the segments inside [ptr, ptr+len) (bl_device_discard); those it only overlaps stay. */
void xla_mem_discard(xla_ctx *c, void *ptr, size_t len);
bl_status xla_mem_sync(xla_ctx *c);
int xla_mem_segment_count(xla_ctx *c, const void *ptr);

/* ---- StableHLO text (hlo.c) ---- */
typedef struct xla_text {
    char *s;
    size_t len, cap;
    int next; /* the next SSA value number */
    bool oom;
} xla_text;

void xla_text_init(xla_text *t);
void xla_text_free(xla_text *t);
void xla_text_add(xla_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The hash of a program's text (the program cache's and the recording's key, with the text). */
uint64_t xla_text_hash(const char *s);
/* "tensor<2x3x4xf32>" of a shape and element type ("f32", "bf16", "i32", "ui8"). */
const char *xla_type(char *buf, size_t size, int ndim, const int64_t *shape, const char *elem);
const char *xla_elem(bl_dtype dt);

/* ---- ops (ops.c) ---- */
BL_BACKEND_DECLARE_OPS(xla)

#endif
