/* Internals shared by the oneDNN backend's files.
 *
 * Layout: activations are NHWC ("acdb") and convolution weights OHWI, because oneDNN 2.6's
 * direct f32 kernels on AVX-512 (brgconv) read and write channels-last directly, while plain
 * NCHW falls back to im2col + GEMM at about 60% of the speed. 3x3 stride-1 convolutions run
 * as Winograd, which oneDNN implements only on the blocked nChw16c layout: their activations
 * are reordered in and out around the primitive (conv.c says why that pays). Weights are
 * reordered into whatever format the kernel asks for.
 *
 * Caching: every oneDNN primitive (and its memory objects and reorders) is created once per
 * shape and kept in the handle, keyed by op + shapes + params + thread count; later calls only
 * swap data pointers, so a steady-state step creates nothing and allocates nothing in
 * beamlet (oneDNN itself may still allocate small bookkeeping per execute). Scratchpads are
 * user-managed (one buffer per handle, grown at first use of a shape), for reorders too.
 *
 * Buffer sizes: every buffer this backend hands to oneDNN is sized from the memory descriptor
 * oneDNN reports for it (dnnl_memory_desc_get_size of the scratchpad, workspace, blocked
 * weights or blocked activations descriptor, which includes the padding of blocked layouts),
 * never from a logical shape; all of them come from bl_host_buffer_alloc, so
 * BEAMLET_GUARD_PAGES=1 puts each one's end against an inaccessible page. Blocked copies of
 * inference weights (convolutions with a bias: the folded-BN path) are cached per source
 * pointer and dropped whenever this device writes or frees the source; training weights are
 * reordered every call (they change every step). */
#ifndef BEAMLET_CPU_ONEDNN_H
#define BEAMLET_CPU_ONEDNN_H

#include <dnnl.h>

#include "tensor/backend.h"

/* Checks a dnnl_* call; on failure returns BL_ERR_DEVICE naming the call and the op. */
#define DNNL_CHECK(call, op)                                                                                 \
    do {                                                                                                     \
        dnnl_status_t dnnl_st_ = (call);                                                                     \
        if (dnnl_st_ != dnnl_success)                                                                        \
            return bl_error(BL_ERR_DEVICE, "onednn %s: %s failed (%s)", (op), #call,                         \
                            onednn_status_name(dnnl_st_));                                                   \
    } while (0)

#define ONEDNN_MAX_ARGS 8
#define ONEDNN_KEY_DIMS 20

typedef enum onednn_kind {
    OK_CONV_FWD = 1,
    OK_CONV_BWD_DATA,
    OK_CONV_BWD_WEIGHTS,
    OK_MAXPOOL_FWD,
    OK_MAXPOOL_BWD,
    OK_AVGPOOL_FWD,
    OK_AVGPOOL_BWD,
    OK_IP_FWD,
    OK_IP_BWD_DATA,
    OK_IP_BWD_WEIGHTS,
} onednn_kind;

typedef struct onednn_key {
    int kind;
    int threads;
    int64_t d[ONEDNN_KEY_DIMS];
} onednn_key;

/* A reorder between two formats; data pointers are set per call. */
typedef struct onednn_reorder {
    dnnl_primitive_t prim;
    dnnl_memory_t from, to;
    dnnl_memory_t scratch; /* its scratchpad (NULL when it needs none), in the handle's buffer */
    size_t scratch_bytes;
} onednn_reorder;

/* One cached primitive with a memory object per argument (data handles set per call). */
typedef struct onednn_prim {
    onednn_key key;
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    int nargs;
    dnnl_exec_arg_t args[ONEDNN_MAX_ARGS]; /* memories created with no data */
    size_t arg_bytes[ONEDNN_MAX_ARGS];     /* what each touches: its descriptor's size */
    size_t scratch_bytes;
    /* The blocked route (Winograd reads and writes only nChw16c): reo[0] brings the x-side
     * activation in, reo[1] the y-side one (x, residual / dy), reo[2] takes the output out;
     * the blocked copies live in the handle's route buffer at reo_off. */
    onednn_reorder reo[3];
    size_t reo_off[2];  /* offsets into this entry's part of the handle's shared route buffer */
    size_t route_bytes; /* the size of that part */
    bool blocked;
    /* The bf16 route (a bf16 handle's forward convolution): reo[0] rounds the f32 NHWC input
     * to bf16 NHWC in the route buffer at reo_off[0]; the output stays f32 in y. */
    bool bf16;
    void *buf; /* owned: max-pool backward's recomputed output and workspace */
    size_t buf_bytes;
    onednn_reorder wout; /* blocked diff weights (in wbuf) -> the user's OHWI */
    void *wbuf;
    size_t wbuf_bytes;
} onednn_prim;

/* A blocked copy of a weight tensor, valid until its source is written or freed. */
typedef struct onednn_weights {
    const void *src;
    size_t src_bytes;
    dnnl_memory_desc_t src_md, dst_md;
    onednn_reorder first; /* src_md -> dst_md, or src_md -> plain OIHW in `mid` */
    void *buf;            /* dnnl_memory_desc_get_size(dst_md) bytes */
    bool valid;
    /* When oneDNN cannot reorder OHWI straight into dst_md (Winograd's weight format), the
     * copy goes through plain OIHW in `mid`. */
    onednn_reorder via;
    void *mid;
} onednn_weights;

typedef struct onednn_ctx {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    onednn_prim *prims;
    int nprims, cap_prims;
    onednn_weights *weights;
    int nweights, cap_weights;
    void *scratch;
    size_t scratch_bytes;
    void *route; /* blocked copies of activations for the Winograd route, shared by all
                        * convolutions (each uses it only during its own call) */
    size_t route_bytes;
    int64_t created;  /* primitives created over the handle's life (tests check reuse) */
    int64_t reorders; /* weight reorders executed */
    double *partials; /* per-thread reduction space for batch norm */
    size_t partials_bytes;
    bool bf16;        /* compute precision bf16 (bl_device_set_precision): forward convolutions
                       * in bf16 with f32 accumulation and f32 outputs; backward ones refused */
    float *bn_floats; /* batch norm's per-channel coefficients and per-thread block sums: on
                        * the heap, since a ResNet may have 32768 channels (width 4096) */
    size_t bn_floats_bytes;
} onednn_ctx;

const char *onednn_status_name(dnnl_status_t s);
static inline onednn_ctx *onednn_of(bl_device *dev) { return bl_device_ctx(dev); }
int onednn_threads(void);

/* Cache: returns the entry for `key`, or NULL when it must be built (then call
 * onednn_prim_add, fill pd, and onednn_prim_finish). */
onednn_prim *onednn_prim_find(onednn_ctx *c, const onednn_key *key);
bl_status onednn_prim_add(onednn_ctx *c, const onednn_key *key, onednn_prim **out);
/* Creates the primitive from e->pd and one memory object per listed argument, described by
 * the pd's own memory descriptors (queried with dnnl_primitive_desc_query_md per argument),
 * and grows the handle's scratchpad to the pd's scratchpad descriptor. */
bl_status onednn_prim_finish(onednn_ctx *c, onednn_prim *e, int nargs, const int *arg_ids, const char *op);
/* Sets argument `arg_id`'s data pointer to a buffer of `bytes`; refuses (BL_ERR_INTERNAL) a
 * buffer smaller than the argument's memory descriptor, which is what oneDNN will touch. */
bl_status onednn_prim_bind(onednn_prim *e, int arg_id, const void *data, size_t bytes, const char *op);
static inline bl_status onednn_prim_bind_tensor(onednn_prim *e, int arg_id, const bl_tensor *t,
                                                const char *op) {
    return onednn_prim_bind(e, arg_id, t->data, bl_tensor_nbytes(t), op);
}
/* Executes with the handle's scratchpad. */
bl_status onednn_prim_run(onednn_ctx *c, onednn_prim *e, const char *op);

/* BL_ERR_UNSUPPORTED when oneDNN has no reorder between the two formats. */
bl_status onednn_reorder_init(onednn_ctx *c, onednn_reorder *r, const dnnl_memory_desc_t *from,
                              const dnnl_memory_desc_t *to, const char *op);
bl_status onednn_reorder_run(onednn_ctx *c, onednn_reorder *r, const void *from, void *to, const char *op);
void onednn_reorder_destroy(onednn_reorder *r);

/* Returns a pointer to `src` (described by src_md) in the layout dst_md: src itself when the
 * formats agree, else a reordered copy, cached when `cache` is set. */
bl_status onednn_weights_get(onednn_ctx *c, const void *src, const dnnl_memory_desc_t *src_md,
                             const dnnl_memory_desc_t *dst_md, bool cache, void **out, const char *op);
/* Marks cached copies whose source overlaps [ptr, ptr + bytes) stale (written), or releases
 * them (freed). */
void onednn_note_write(onednn_ctx *c, const void *ptr, size_t bytes);
void onednn_note_free(onednn_ctx *c, const void *ptr, size_t bytes);
void onednn_weights_release_all(onednn_ctx *c);
static inline void onednn_wrote(bl_device *dev, const bl_tensor *t) {
    if (t) onednn_note_write(onednn_of(dev), t->data, bl_tensor_nbytes(t));
}

/* Grows the shared route buffer to `bytes` (only when a primitive is built). */
bl_status onednn_route_reserve(onednn_ctx *c, size_t bytes, const char *op);
/* Entry e's part of the route buffer (its end against the buffer's end). */
char *onednn_route_of(onednn_ctx *c, const onednn_prim *e);

/* Per-thread double reduction space of `len` doubles (grown on first use). */
double *onednn_partials(onednn_ctx *c, size_t len);
/* Batch norm's float space of `len` floats, 64-byte aligned (grown on first use, so a step at
 * a shape seen before allocates nothing). NULL, with the error set, when out of memory. */
float *onednn_bn_floats(onednn_ctx *c, size_t len);
/* memcpy across threads (large activations). */
void onednn_parallel_copy(void *dst, const void *src, size_t bytes);

/* 4-D NHWC memory descriptor for logical (N, C, H, W) / weights (K, C, R, S) in OHWI. */
bl_status onednn_md4(dnnl_memory_desc_t *md, const int64_t *shape, const char *op);
bl_status onednn_md_plain(dnnl_memory_desc_t *md, int ndims, const int64_t *dims, const char *op);

BL_BACKEND_DECLARE_OPS(onednn)

#endif
