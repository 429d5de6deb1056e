/* beamlet devices: opening a device on one of the backends compiled into this build.
 *
 * The names and the rules are the resolver's (beamlet/tensor.h, bl_device_request): these
 * functions hand it the table of this build's backends (cpu_ref always; cpu_onednn and cuda
 * when configure found them). Every program, stage and DoFn opens its devices through here, so
 * every one accepts every name. */
#ifndef BEAMLET_DEVICES_H
#define BEAMLET_DEVICES_H

#include "beamlet/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What every program's --device and --allow_cpu_fallback flags say in --help. */
#define BL_DEVICE_FLAG_HELP BL_DEVICE_NAMES " ('beamlet devices' lists this machine's)"
#define BL_FALLBACK_FLAG_HELP "an accelerator --device that is not there: run on the CPU, with a loud warning"

/* Opens the device a request resolves to. Each call opens a new handle. */
bl_status bl_device_open(const bl_device_request *req, bl_device **out);
/* Where a request would land, without opening it: to fail early, or to decide an accelerator
 * hint, before a pipeline runs. */
bl_status bl_device_resolve(const bl_device_request *req, bl_device_choice *out);
/* bl_device_open of a name alone: no worker accelerator, no CPU fallback. */
bl_status bl_device_get(const char *name, bl_device **out);
/* Devices a name can reach ("cuda": the GPUs visible; "cpu": 1); 0 when not built in. */
int bl_device_count(const char *name);
/* The accelerators "auto" would use: the devices of the first accelerator family present. */
int bl_accelerator_count(void);
/* One line per device this build can open, and a note for each name it cannot serve (for
 * `beamlet devices`). */
bl_status bl_device_list(char *buf, size_t size);

#ifdef __cplusplus
}
#endif
#endif
