/* The device resolver: the one place where a device name means something. It turns a request
 * (a name, the accelerator a runner assigned this worker, whether the CPU may stand in) into a
 * backend and an index, with one table of names and one message format, and opens the device.
 *
 * The tensor layer knows no backend: the table of backends compiled into the build comes from
 * the layer above (src/backends/registry.c), which passes it in. Nothing falls back silently:
 * an accelerator that is not there is an error naming what is missing, unless the request
 * allows the CPU, and then the fallback is announced loudly. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/backend.h"

/* Every name a user may write, with what it means. A backend serves a name by claiming its
 * `serves` entry in the registry; a name nobody claims answers with `needs`. */
typedef struct device_name {
    const char *name;   /* as written, without ":N" */
    const char *serves; /* the claim it maps to: "gpu" is "cuda" */
    bool accelerator;   /* takes ":N" and the worker's accelerator; may fall back to the CPU */
    const char *what;   /* what is missing when it is: "no NVIDIA GPU" */
    const char *needs;  /* what a build needs for it */
    const char *none;   /* why a built backend may see no device */
} device_name;

#define CUDA_NEEDS "the CUDA backend (configure found no nvcc, cuBLAS or cuDNN; see the CMake summary)"
#define CUDA_NONE "the CUDA driver reports none; check nvidia-smi and CUDA_VISIBLE_DEVICES"
#define XLA_NEEDS "the XLA backend (PJRT)"

static const device_name names[] = {
    {"cpu", "cpu", false, "CPU", "a CPU backend", NULL},
    {"cpu_ref", "cpu_ref", false, "CPU", "the cpu_ref backend", NULL},
    {"cuda", "cuda", true, "NVIDIA GPU", CUDA_NEEDS, CUDA_NONE},
    {"gpu", "cuda", true, "NVIDIA GPU", CUDA_NEEDS, CUDA_NONE},
    {"tpu", "tpu", true, "TPU", XLA_NEEDS " with libtpu", "libtpu finds no TPU chip"},
    {"xla:cpu", "xla:cpu", false, "XLA CPU device", XLA_NEEDS " with its CPU plugin", NULL},
    {"xla:cuda", "xla:cuda", true, "NVIDIA GPU", XLA_NEEDS " with its CUDA plugin", CUDA_NONE},
};
#define NNAMES (int)(sizeof names / sizeof names[0])

/* A fallback is announced once per process and name: a pipeline resolves the same request when
 * it is built and again on every worker, and one loud line says it all. */
static bool first_fallback(const char *name) {
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static char seen[8][40];
    static int nseen;
    bool first = true;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < nseen && first; i++) first = strcmp(seen[i], name) != 0;
    if (first && nseen < 8) snprintf(seen[nseen++], sizeof seen[0], "%s", name);
    pthread_mutex_unlock(&lock);
    return first;
}

static const bl_backend *claimed(const bl_backend_registry *reg, const char *serves) {
    for (int i = 0; reg && i < reg->count; i++)
        if (strcmp(reg->claims[i].name, serves) == 0) return reg->claims[i].backend();
    return NULL;
}

static int count_of(const bl_backend *b) { return !b ? 0 : b->device_count ? b->device_count() : 1; }

/* Splits "cuda:3" into its table entry and 3; "cuda" gives index -1. */
static bl_status parse_name(const char *name, const device_name **entry, int *index) {
    *index = -1;
    for (int i = 0; i < NNAMES; i++)
        if (strcmp(names[i].name, name) == 0) {
            *entry = &names[i];
            return BL_OK;
        }
    const char *colon = strrchr(name, ':');
    for (int i = 0; colon && i < NNAMES; i++) {
        size_t len = strlen(names[i].name);
        if (!names[i].accelerator || (size_t)(colon - name) != len || strncmp(names[i].name, name, len) != 0)
            continue;
        char *end;
        long v = strtol(colon + 1, &end, 10);
        if (end == colon + 1 || *end || v < 0 || v > 1024)
            return bl_error(BL_ERR_INVALID_ARG, "device '%s': expected %s:N with N a device index", name,
                            names[i].name);
        *entry = &names[i];
        *index = (int)v;
        return BL_OK;
    }
    return bl_error(BL_ERR_INVALID_ARG, "unknown device '%s' (valid: %s)", name, BL_DEVICE_NAMES);
}

static void choose(bl_device_choice *out, const bl_backend *b, const char *serves, int index,
                   bool accelerator) {
    memset(out, 0, sizeof *out);
    snprintf(out->backend, sizeof out->backend, "%s", b->name);
    if (accelerator)
        snprintf(out->name, sizeof out->name, "%s:%d", serves, index);
    else
        snprintf(out->name, sizeof out->name, "%s", serves);
    snprintf(out->family, sizeof out->family, "%s", serves);
    out->index = index;
    out->accelerator = accelerator;
}

static bl_status resolve(const bl_backend_registry *reg, const bl_device_request *req, const char *name,
                         bl_device_choice *out);

static bl_status resolve_auto(const bl_backend_registry *reg, const bl_device_request *req,
                              bl_device_choice *out) {
    /* BEAMLET_DEVICE is what "auto" means, everywhere in beamlet; it goes through the same rules,
     * so BEAMLET_DEVICE=gpu on a machine without one is still an error. */
    const char *env = getenv("BEAMLET_DEVICE");
    if (env && *env && strcmp(env, "auto") != 0) {
        bl_status s = resolve(reg, req, env, out);
        return s == BL_OK ? s : bl_error_context(s, "BEAMLET_DEVICE=%s", env);
    }
    /* The first accelerator family with a device, in the table's order; else the CPU. */
    for (int i = 0; i < NNAMES; i++) {
        if (!names[i].accelerator || strcmp(names[i].name, names[i].serves) != 0) continue;
        int count = count_of(claimed(reg, names[i].serves));
        if (count > 0) return resolve(reg, req, names[i].name, out);
    }
    return resolve(reg, req, "cpu", out);
}

static bl_status resolve(const bl_backend_registry *reg, const bl_device_request *req, const char *name,
                         bl_device_choice *out) {
    if (!name || !*name || strcmp(name, "auto") == 0) return resolve_auto(reg, req, out);
    const device_name *e = NULL;
    int index;
    BL_TRY(parse_name(name, &e, &index));
    const bl_backend *b = claimed(reg, e->serves);
    if (!e->accelerator) {
        if (!b)
            return bl_error(BL_ERR_UNSUPPORTED, "device '%s': this beamlet was built without %s", name,
                            e->needs);
        choose(out, b, e->serves, 0, false);
        return BL_OK;
    }
    int count = count_of(b);
    if (count == 0) {
        char why[256];
        if (b)
            snprintf(why, sizeof why, "the backend sees none (%s)",
                     b->unavailable ? b->unavailable() : e->none);
        else
            snprintf(why, sizeof why, "this beamlet was built without %s", e->needs);
        if (!req->allow_cpu_fallback)
            return bl_error(b ? BL_ERR_NOT_FOUND : BL_ERR_UNSUPPORTED,
                            "device '%s': no %s: %s; pass --allow_cpu_fallback to run on the CPU instead "
                            "('beamlet devices' lists what there is)",
                            name, e->what, why);
        if (first_fallback(name))
            bl_log_warn(
                "!!! NO %s: device '%s' was asked for, but %s. Running on the CPU INSTEAD because the CPU "
                "fallback was allowed (--allow_cpu_fallback): expect it to be much slower, and do not "
                "compare its timings with %s runs. !!!",
                e->what, name, why, e->what);
        BL_TRY(resolve(reg, req, "cpu", out));
        out->fell_back = true;
        return BL_OK;
    }
    /* An explicit index wins; otherwise the worker's accelerator, else the first. */
    int i = index >= 0 ? index : req->accelerator >= 0 ? req->accelerator : 0;
    if (i >= count)
        return bl_error(
            BL_ERR_NOT_FOUND, "device '%s': %s:%d asked for, but only %d %s%s visible (%s:0..%s:%d)", name,
            e->serves, i, count, e->what, count == 1 ? " is" : "s are", e->serves, e->serves, count - 1);
    choose(out, b, e->serves, i, true);
    return BL_OK;
}

bl_status bl_device_resolve_in(const bl_backend_registry *reg, const bl_device_request *req,
                               bl_device_choice *out) {
    memset(out, 0, sizeof *out);
    bl_device_request none = {NULL, -1, false, BL_F32};
    if (!req) req = &none;
    return resolve(reg, req, req->name, out);
}

bl_status bl_device_open_in(const bl_backend_registry *reg, const bl_device_request *req, bl_device **out) {
    *out = NULL;
    bl_device_choice c;
    BL_TRY(bl_device_resolve_in(reg, req, &c));
    bl_device *dev = calloc(1, sizeof *dev);
    if (!dev) return bl_error(BL_ERR_OUT_OF_MEMORY, "device %s: cannot allocate handle", c.name);
    dev->backend = claimed(reg, c.family);
    dev->index = c.index;
    snprintf(dev->name, sizeof dev->name, "%s", c.name);
    bl_status s = dev->backend->open(c.index, &dev->ctx, dev->description, sizeof dev->description);
    if (s != BL_OK) {
        free(dev);
        return bl_error_context(s, "opening device %s", c.name);
    }
    if (req->precision != BL_F32 && (s = bl_device_set_precision(dev, req->precision)) != BL_OK) {
        bl_device_release(dev);
        return s;
    }
    *out = dev;
    return BL_OK;
}

bl_status bl_device_set_precision(bl_device *dev, bl_dtype precision) {
    if (precision != BL_F32 && precision != BL_BF16)
        return bl_error(BL_ERR_INVALID_ARG, "device %s: precision %s: expected one of %s", dev->name,
                        bl_dtype_name(precision), BL_PRECISION_NAMES);
    if (precision == dev->precision) return BL_OK;
    if (!dev->backend->set_precision)
        return bl_error(BL_ERR_UNSUPPORTED,
                        "device %s: --precision=%s is not supported by backend %s (it computes in f32 "
                        "only); use --precision=f32",
                        dev->name, bl_dtype_name(precision), dev->backend->name);
    BL_TRY(dev->backend->set_precision(dev->ctx, precision));
    dev->precision = precision;
    return BL_OK;
}

bl_dtype bl_device_precision(const bl_device *dev) { return dev->precision; }

int bl_device_count_in(const bl_backend_registry *reg, const char *name) {
    const device_name *e = NULL;
    int index;
    if (!name || parse_name(name, &e, &index) != BL_OK) {
        bl_clear_error();
        return 0;
    }
    return count_of(claimed(reg, e->serves));
}

int bl_accelerator_count_in(const bl_backend_registry *reg) {
    for (int i = 0; i < NNAMES; i++) {
        if (!names[i].accelerator || strcmp(names[i].name, names[i].serves) != 0) continue;
        int count = count_of(claimed(reg, names[i].serves));
        if (count > 0) return count;
    }
    return 0;
}

static size_t put_line(char *buf, size_t size, size_t used, const bl_device *dev) {
    return used + (size_t)snprintf(buf + used, used < size ? size - used : 0, "%-8s %-8s %s\n", dev->name,
                                   dev->backend->name, dev->description);
}

bl_status bl_device_list_in(const bl_backend_registry *reg, char *buf, size_t size) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < NNAMES; i++) {
        const device_name *e = &names[i];
        if (strcmp(e->name, e->serves) != 0) continue; /* aliases ("gpu") list nothing new */
        const bl_backend *b = claimed(reg, e->serves);
        int count = count_of(b);
        for (int k = 0; k < count; k++) {
            char name[32];
            if (e->accelerator)
                snprintf(name, sizeof name, "%s:%d", e->serves, k);
            else
                snprintf(name, sizeof name, "%s", e->serves);
            bl_device *dev;
            bl_device_request r = {name, -1, false, BL_F32};
            BL_TRY(bl_device_open_in(reg, &r, &dev));
            used = put_line(buf, size, used, dev);
            bl_device_release(dev);
        }
        if (count == 0)
            used +=
                (size_t)snprintf(buf + used, used < size ? size - used : 0, "(%s: %s%s%s)\n", e->name,
                                 b ? "none visible" : "not in this build", b && b->unavailable ? ": " : "",
                                 b && b->unavailable ? b->unavailable() : "");
    }
    return BL_OK;
}

void bl_device_release(bl_device *dev) {
    if (!dev) return;
    dev->backend->close(dev->ctx);
    free(dev);
}

const char *bl_device_name(const bl_device *dev) { return dev->name; }
const char *bl_device_description(const bl_device *dev) { return dev->description; }
const char *bl_device_backend_name(const bl_device *dev) { return dev->backend->name; }
bl_device_kind bl_device_get_kind(const bl_device *dev) { return dev->backend->kind; }
bl_layout bl_device_preferred_layout(const bl_device *dev) { return dev->backend->preferred_layout; }

bl_status bl_device_alloc(bl_device *dev, size_t bytes, void **ptr) {
    /* Backends round sizes up (to 64 bytes, plus headers): near SIZE_MAX that wraps to a tiny
     * buffer. No real allocation is this large, so a size past INT64_MAX is a wrapped count. */
    if (bytes > (size_t)INT64_MAX) {
        *ptr = NULL;
        return bl_error(BL_ERR_INVALID_ARG,
                        "%s: allocating %zu bytes: more than any allocation can hold (a "
                        "size computed from a shape that overflowed?)",
                        dev->name, bytes);
    }
    bl_status s = dev->backend->alloc(dev->ctx, bytes, ptr);
    if (s != BL_OK) return bl_error_context(s, "%s: allocating %zu bytes", dev->name, bytes);
    return BL_OK;
}

void bl_device_free(bl_device *dev, void *ptr) {
    if (ptr) dev->backend->free(dev->ctx, ptr);
}

bl_status bl_device_program_begin(bl_device *dev) {
    if (dev->program_depth++ > 0 || !dev->backend->program_begin) return BL_OK;
    bl_status s = dev->backend->program_begin(dev->ctx);
    if (s != BL_OK) {
        dev->program_depth--;
        return bl_error_context(s, "%s: program begin", dev->name);
    }
    return BL_OK;
}

bl_status bl_device_program_end(bl_device *dev) {
    if (dev->program_depth <= 0)
        return bl_error(BL_ERR_INVALID_ARG, "%s: bl_device_program_end without a matching begin", dev->name);
    if (--dev->program_depth > 0 || !dev->backend->program_end) return BL_OK;
    bl_status s = dev->backend->program_end(dev->ctx);
    if (s != BL_OK) return bl_error_context(s, "%s: program", dev->name);
    return BL_OK;
}

void bl_device_discard(bl_device *dev, void *ptr, size_t bytes) {
    if (ptr && bytes && dev->backend->discard) dev->backend->discard(dev->ctx, ptr, bytes);
}

bl_status bl_device_synchronize(bl_device *dev) {
    bl_status s = dev->backend->synchronize(dev->ctx);
    if (s != BL_OK) return bl_error_context(s, "%s: synchronize", dev->name);
    return BL_OK;
}
