/* The device registry: turns a name ("auto", "cpu", "cpu_ref", "cuda:1", "tpu") into an open
 * handle on one of the backends compiled into this build, and explains what is missing when
 * the name cannot be honoured. Nothing falls back silently. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/backend.h"

int bl_cuda_device_count(void) {
#ifdef BEAMLET_HAVE_CUDA
    return bl_backend_cuda_device_count();
#else
    return 0;
#endif
}

static const bl_backend *fast_cpu_backend(void) {
#ifdef BEAMLET_HAVE_ONEDNN
    return bl_backend_onednn();
#else
    return bl_backend_cpu_ref();
#endif
}

static bl_status open_backend(const bl_backend *backend, int index, const char *name, bl_device **out) {
    bl_device *dev = calloc(1, sizeof *dev);
    if (!dev) return bl_error(BL_ERR_OUT_OF_MEMORY, "device %s: cannot allocate handle", name);
    dev->backend = backend;
    dev->index = index;
    snprintf(dev->name, sizeof dev->name, "%s", name);
    bl_status s = backend->open(index, &dev->ctx, dev->description, sizeof dev->description);
    if (s != BL_OK) {
        free(dev);
        return bl_error_context(s, "opening device %s", name);
    }
    *out = dev;
    return BL_OK;
}

static bl_status open_cuda(int index, const char *name, bl_device **out) {
#ifdef BEAMLET_HAVE_CUDA
    int count = bl_backend_cuda_device_count();
    if (count == 0)
        return bl_error(BL_ERR_NOT_FOUND,
                        "device '%s': no NVIDIA GPU is visible (the CUDA driver reports none; "
                        "check nvidia-smi and CUDA_VISIBLE_DEVICES)",
                        name);
    if (index < 0 || index >= count)
        return bl_error(BL_ERR_NOT_FOUND, "device '%s': only %d GPU%s visible (cuda:0..cuda:%d)", name, count,
                        count == 1 ? " is" : "s are", count - 1);
    char full[32];
    snprintf(full, sizeof full, "cuda:%d", index);
    return open_backend(bl_backend_cuda(), index, full, out);
#else
    (void)index;
    (void)out;
    return bl_error(BL_ERR_UNSUPPORTED,
                    "device '%s': this beamlet was built without the CUDA backend (configure "
                    "found no nvcc, cuBLAS or cuDNN; see the CMake summary)",
                    name);
#endif
}

bl_status bl_device_get(const char *name, bl_device **out) {
    *out = NULL;
    if (!name || !*name) name = "auto";
    if (strcmp(name, "auto") == 0) {
        const char *env = getenv("BEAMLET_DEVICE");
        if (env && *env && strcmp(env, "auto") != 0) {
            bl_status s = bl_device_get(env, out);
            return s == BL_OK ? s : bl_error_context(s, "BEAMLET_DEVICE=%s", env);
        }
        if (bl_cuda_device_count() > 0) return open_cuda(0, "cuda", out);
        return bl_device_get("cpu", out);
    }
    if (strcmp(name, "cpu") == 0) return open_backend(fast_cpu_backend(), 0, "cpu", out);
    if (strcmp(name, "cpu_ref") == 0) return open_backend(bl_backend_cpu_ref(), 0, "cpu_ref", out);
    if (strcmp(name, "cuda") == 0 || strcmp(name, "gpu") == 0) return open_cuda(0, name, out);
    if (strncmp(name, "cuda:", 5) == 0) {
        char *end;
        long index = strtol(name + 5, &end, 10);
        if (end == name + 5 || *end != '\0' || index < 0 || index > 1024)
            return bl_error(BL_ERR_INVALID_ARG, "device '%s': expected cuda:N with N a GPU index", name);
        return open_cuda((int)index, name, out);
    }
    if (strcmp(name, "tpu") == 0)
        return bl_error(BL_ERR_UNSUPPORTED,
                        "device 'tpu': this beamlet was built without PJRT support, so no TPU "
                        "can be used; choose cpu or cuda");
    return bl_error(BL_ERR_INVALID_ARG, "unknown device '%s' (valid: auto, cpu, cpu_ref, cuda, cuda:N, tpu)",
                    name);
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

bl_status bl_device_list(char *buf, size_t size) {
    size_t used = 0;
    buf[0] = '\0';
    const char *names[] = {"cpu", "cpu_ref"};
    for (int i = 0; i < 2; i++) {
        bl_device *dev;
        BL_TRY(bl_device_get(names[i], &dev));
        used += (size_t)snprintf(buf + used, used < size ? size - used : 0, "%-8s %-8s %s\n", names[i],
                                 dev->backend->name, dev->description);
        bl_device_release(dev);
    }
    int count = bl_cuda_device_count();
    for (int i = 0; i < count; i++) {
        char name[32];
        snprintf(name, sizeof name, "cuda:%d", i);
        bl_device *dev;
        BL_TRY(bl_device_get(name, &dev));
        used += (size_t)snprintf(buf + used, used < size ? size - used : 0, "%-8s %-8s %s\n", name,
                                 dev->backend->name, dev->description);
        bl_device_release(dev);
    }
    if (count == 0)
        used += (size_t)snprintf(buf + used, used < size ? size - used : 0, "%s\n",
#ifdef BEAMLET_HAVE_CUDA
                                 "(no NVIDIA GPU visible)"
#else
                                 "(built without the CUDA backend)"
#endif
        );
    return BL_OK;
}

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

bl_status bl_device_synchronize(bl_device *dev) {
    bl_status s = dev->backend->synchronize(dev->ctx);
    if (s != BL_OK) return bl_error_context(s, "%s: synchronize", dev->name);
    return BL_OK;
}
