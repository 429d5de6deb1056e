/* beamlet devices: what this build can run on, and what is missing. */
#include <stdio.h>

#include "beamlet/devices.h"
#include "cli.h"

int cmd_devices(int argc, char **argv) {
    cli_flag flags[] = {{"device", "auto", "also show which device this name resolves to"}};
    int n = (int)(sizeof flags / sizeof flags[0]);
    bool help;
    if (cli_parse(argc, argv, 2, flags, n, &help) != BL_OK) {
        fprintf(stderr, "beamlet devices: %s\n", bl_last_error());
        return 2;
    }
    if (help) {
        cli_usage("devices", "Lists the devices beamlet can use.", flags, n);
        return 0;
    }
    char buf[4096];
    if (bl_device_list(buf, sizeof buf) != BL_OK) {
        fprintf(stderr, "beamlet devices: %s\n", bl_last_error());
        return 1;
    }
    fputs(buf, stdout);
    bl_device *dev;
    const char *name = cli_get(flags, n, "device");
    if (bl_device_get(name, &dev) != BL_OK) {
        fprintf(stderr, "beamlet devices: %s\n", bl_last_error());
        return 1;
    }
    printf("'%s' resolves to %s (%s)\n", name, bl_device_name(dev), bl_device_backend_name(dev));
    bl_device_release(dev);
    return 0;
}
