/* The interface a backend implements: device memory, copies, and one function per op; and
 * the resolver's entry points that take the table of backends a build has.
 *
 * The bl_op_* front ends in tensor/ops.c validate shapes, dtypes and devices before calling
 * these, so a backend may assume well-formed arguments. A NULL entry means "not supported",
 * which the front end reports as BL_ERR_UNSUPPORTED naming the op and the backend. */
#ifndef BEAMLET_TENSOR_BACKEND_H
#define BEAMLET_TENSOR_BACKEND_H

#include "beamlet/tensor.h"

/* One function pointer per op of the list (beamlet/tensor.h), with the front end's parameters. */
typedef struct bl_backend_ops {
#define BL_BACKEND_OP_FIELD(u, NAME, name, params, args) bl_status(*name) params;
    BL_OP_LIST(BL_BACKEND_OP_FIELD, )
#undef BL_BACKEND_OP_FIELD
} bl_backend_ops;

/* What a backend writes to join the op table, with its prefix (cpu_ref, onednn, cuda, ...):
 *   in its internal header   BL_BACKEND_DECLARE_OPS(cpu_ref)   declares cpu_ref_conv2d_forward,
 *                                                             ... for every op of the list;
 *   in its bl_backend        .ops = BL_BACKEND_OPS(cpu_ref),  fills every field with them.
 * A backend that implements only some ops declares them the same way and fills .ops by hand
 * (.ops = {.relu_forward = xla_relu_forward, ...}); a NULL field is a clean "unsupported". */
#define BL_BACKEND_OP_PROTOTYPE(prefix, NAME, name, params, args) bl_status prefix##_##name params;
#define BL_BACKEND_DECLARE_OPS(prefix) BL_OP_LIST(BL_BACKEND_OP_PROTOTYPE, prefix)
#define BL_BACKEND_OP_INIT(prefix, NAME, name, params, args) .name = prefix##_##name,
#define BL_BACKEND_OPS(prefix)                                                                               \
    { BL_OP_LIST(BL_BACKEND_OP_INIT, prefix) }

typedef struct bl_backend {
    const char *name; /* "cpu_ref", "onednn", "cuda" */
    bl_device_kind kind;
    /* Devices this backend can open (indices 0..n-1); NULL means one (the host's CPU). */
    int (*device_count)(void);
    /* Why device_count is 0 (a plugin's load error), for the resolver's message; NULL: the
     * name table's generic reason. */
    const char *(*unavailable)(void);
    bl_layout preferred_layout;
    unsigned layouts; /* bit (1 << bl_layout) for each 4-D layout the ops accept */
    /* Opens the backend's per-handle state (scratch, streams) for device `index`. */
    bl_status (*open)(int index, void **ctx, char *description, size_t description_size);
    void (*close)(void *ctx);
    bl_status (*alloc)(void *ctx, size_t bytes, void **ptr);
    void (*free)(void *ctx, void *ptr);
    /* Copies: kind 0 host->device, 1 device->host, 2 device->device. */
    bl_status (*copy)(void *ctx, void *dst, const void *src, size_t bytes, int kind);
    bl_status (*memset_zero)(void *ctx, void *dst, size_t bytes);
    /* Set by backends whose memory is plain host memory (the CPU ones): the tensor layer then
     * converts layouts straight into a tensor's memory instead of through a staging copy, and
     * calls this afterwards so the backend can drop what it derived from the old contents
     * (oneDNN's cached reorders). NULL: device memory, reached only through `copy`. */
    void (*host_written)(void *ctx, void *dst, size_t bytes);
    bl_status (*synchronize)(void *ctx);
    /* Which activation dtypes an op accepts; NULL means f32 only for every op present. */
    bool (*supports_dtype)(bl_op op, bl_dtype dtype);
    /* Switches the handle's compute precision (bl_device_set_precision); NULL: f32 only. A
     * refusal is BL_ERR_UNSUPPORTED with the reason. */
    bl_status (*set_precision)(void *ctx, bl_dtype precision);
    /* The outermost bl_device_program_begin / _end pair (the resolver counts the nesting);
     * NULL: ops run as issued. */
    bl_status (*program_begin)(void *ctx);
    bl_status (*program_end)(void *ctx);
    /* bl_device_discard; NULL: ignored. */
    void (*discard)(void *ctx, void *ptr, size_t bytes);
    bl_backend_ops ops;
} bl_backend;

/* The mixed-precision rule, for a backend's supports_dtype: f32 for every op, bf16 activations
 * for every op but the loss and the optimizers (their tensors, like batch norm's parameters,
 * stay f32). The CUDA and XLA backends follow it. */
bool bl_op_mixed_bf16(bl_op op, bl_dtype dtype);

enum {
    BL_COPY_H2D = 0,
    BL_COPY_D2H = 1,
    BL_COPY_D2D = 2
};

struct bl_device {
    const bl_backend *backend;
    void *ctx;
    int index;
    char name[32];
    char description[128];
    bl_dtype precision; /* compute precision (bl_device_set_precision), BL_F32 unless set */
    int program_depth;  /* open bl_device_program_begin calls */
};

static inline void *bl_device_ctx(const bl_device *dev) { return dev->ctx; }

/* The backends compiled into a build: each claims a device name of the resolver's table
 * ("cpu", "cpu_ref", "cuda", "tpu", "xla:cpu", "xla:cuda"); for a name claimed twice, the
 * first claim wins ("cpu": oneDNN when built, then cpu_ref). The backends layer lists them
 * (src/backends/registry.c) and hands the list to the functions below, so this layer never
 * names a backend. */
typedef struct bl_backend_claim {
    const char *name;
    const bl_backend *(*backend)(void);
} bl_backend_claim;

typedef struct bl_backend_registry {
    const bl_backend_claim *claims;
    int count;
} bl_backend_registry;

/* The resolver (tensor/device.c), given the registry: where a request lands, opening it, how
 * many devices a name can reach, the accelerators "auto" would use, and a listing. */
bl_status bl_device_resolve_in(const bl_backend_registry *reg, const bl_device_request *req,
                               bl_device_choice *out);
bl_status bl_device_open_in(const bl_backend_registry *reg, const bl_device_request *req, bl_device **out);
int bl_device_count_in(const bl_backend_registry *reg, const char *name);
int bl_accelerator_count_in(const bl_backend_registry *reg);
bl_status bl_device_list_in(const bl_backend_registry *reg, char *buf, size_t size);

/* Shared helpers for backends: 4-D strides of a tensor in its layout, in elements, in the
 * logical (N, C, H, W) order. */
static inline void bl_tensor_strides4(const bl_tensor *t, int64_t s[4]) {
    int64_t C = t->shape[1], H = t->shape[2], W = t->shape[3];
    if (t->layout == BL_LAYOUT_NHWC) {
        s[0] = H * W * C;
        s[1] = 1;
        s[2] = W * C;
        s[3] = C;
    } else {
        s[0] = C * H * W;
        s[1] = H * W;
        s[2] = W;
        s[3] = 1;
    }
}

#endif
