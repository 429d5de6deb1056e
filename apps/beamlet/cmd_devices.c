/* beamlet devices: what this build can run on, what it cannot, and where a name lands. */
#include <stdio.h>

#include "beamlet/devices.h"
#include "commands.h"

static bl_status options(bl_options *o) {
    BL_TRY(bl_options_add(o, "device", "auto", "also show where this name resolves to"));
    BL_TRY(
        bl_options_add(o, "accelerator", "-1", "... as a worker assigned this accelerator index (-1: none)"));
    return bl_options_add(o, "allow_cpu_fallback", "false",
                          "... allowing the CPU to stand in for an accelerator");
}

static bl_status run(const bl_options *o) {
    char buf[4096];
    BL_TRY(bl_device_list(buf, sizeof buf));
    fputs(buf, stdout);
    int64_t accel;
    bl_device_request req = {bl_options_get(o, "device"), -1, false, BL_F32};
    BL_TRY(bl_options_get_int_in(o, "accelerator", -1, 1024, &accel));
    BL_TRY(bl_options_get_bool(o, "allow_cpu_fallback", &req.allow_cpu_fallback));
    req.accelerator = (int)accel;
    bl_device *dev;
    BL_TRY(bl_device_open(&req, &dev));
    printf("'%s' resolves to %s (%s)\n", req.name, bl_device_name(dev), bl_device_backend_name(dev));
    bl_device_release(dev);
    return BL_OK;
}

const bl_command beamlet_devices_command = {
    .summary = "Lists the devices beamlet can use, and where a device name resolves to.",
    .add_options = options,
    .run = run,
};
