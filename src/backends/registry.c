/* The backends this build compiled, and the device names each one serves: the table the
 * resolver (src/tensor/device.c) is handed. Adding a backend is a claim here. The public
 * functions of beamlet/devices.h are the resolver's, bound to this table. */
#include "backends/backends.h"
#include "beamlet/devices.h"

static const bl_backend_claim claims[] = {
#ifdef BEAMLET_HAVE_ONEDNN
    {"cpu", bl_backend_onednn}, /* first: the fastest CPU backend serves "cpu" */
#endif
    {"cpu", bl_backend_cpu_ref},     {"cpu_ref", bl_backend_cpu_ref},
#ifdef BEAMLET_HAVE_CUDA
    {"cuda", bl_backend_cuda},
#endif
#ifdef BEAMLET_HAVE_XLA
    {"tpu", bl_backend_xla_tpu}, /* PJRT plugins, loaded when first asked for */
    {"xla:cpu", bl_backend_xla_cpu}, {"xla:cuda", bl_backend_xla_cuda},
#endif
};

static const bl_backend_registry registry = {claims, (int)(sizeof claims / sizeof claims[0])};

const bl_backend_registry *bl_backends(void) { return &registry; }

bl_status bl_device_resolve(const bl_device_request *req, bl_device_choice *out) {
    return bl_device_resolve_in(&registry, req, out);
}

bl_status bl_device_open(const bl_device_request *req, bl_device **out) {
    return bl_device_open_in(&registry, req, out);
}

bl_status bl_device_get(const char *name, bl_device **out) {
    bl_device_request req = {name, -1, false, BL_F32};
    return bl_device_open_in(&registry, &req, out);
}

int bl_device_count(const char *name) { return bl_device_count_in(&registry, name); }

int bl_accelerator_count(void) { return bl_accelerator_count_in(&registry); }

bl_status bl_device_list(char *buf, size_t size) { return bl_device_list_in(&registry, buf, size); }
