/* The C ABI's library-wide part: its version, errors, freeing returned strings, and devices.
 * The ABI wraps the public headers; it keeps no state of its own beyond the handles it returns. */
#include <stdlib.h>
#include <string.h>

#include "beamlet/capi.h"
#include "beamlet/core.h"
#include "beamlet/devices.h"
#include "capi/internal.h"

#ifndef BEAMLET_VERSION_STRING
#define BEAMLET_VERSION_STRING "unknown"
#endif

int bl_capi_abi_version(void) { return BL_CAPI_ABI_VERSION; }

const char *bl_capi_library_version(void) { return BEAMLET_VERSION_STRING; }

const char *bl_capi_last_error(void) { return bl_last_error(); }

const char *bl_capi_status_name(int status) { return bl_status_name((bl_status)status); }

void bl_capi_free(void *p) { free(p); }

int capi_out_string(const char *text, char **out) {
    if (!out) return bl_error(BL_ERR_INVALID_ARG, "no place for the result string (NULL)");
    *out = strdup(text ? text : "");
    return *out ? BL_OK : bl_error(BL_ERR_OUT_OF_MEMORY, "result string");
}

int bl_capi_device_list(char **text) {
    char buf[4096];
    BL_TRY(bl_device_list(buf, sizeof buf));
    return capi_out_string(buf, text);
}

/* ---- devices -------------------------------------------------------------------------------- */

struct bl_capi_device {
    bl_device *dev;
    bool fell_back;
};

int bl_capi_device_open(const char *name, int allow_cpu_fallback, bl_capi_device **out) {
    if (!out) return bl_error(BL_ERR_INVALID_ARG, "bl_capi_device_open: NULL out");
    *out = NULL;
    if (!name || !*name) return bl_error(BL_ERR_INVALID_ARG, "no device name given");
    /* The resolver decides what the name means (and announces a fallback); the device opened
     * is the one it chose, so the handle can say whether the CPU stood in. */
    bl_device_request req = {name, -1, allow_cpu_fallback != 0, BL_F32};
    bl_device_choice choice;
    BL_TRY(bl_device_resolve(&req, &choice));
    bl_capi_device *d = calloc(1, sizeof *d);
    if (!d) return bl_error(BL_ERR_OUT_OF_MEMORY, "device handle");
    bl_device_request chosen = {choice.name, -1, false, BL_F32};
    bl_status s = bl_device_open(&chosen, &d->dev);
    if (s != BL_OK) {
        free(d);
        return bl_error_context(s, "opening device '%s'", name);
    }
    d->fell_back = choice.fell_back;
    *out = d;
    return BL_OK;
}

const char *bl_capi_device_name(const bl_capi_device *d) { return d ? bl_device_name(d->dev) : ""; }

const char *bl_capi_device_description(const bl_capi_device *d) {
    return d ? bl_device_description(d->dev) : "";
}

int bl_capi_device_fell_back(const bl_capi_device *d) { return d && d->fell_back; }

void bl_capi_device_close(bl_capi_device *d) {
    if (!d) return;
    bl_device_release(d->dev);
    free(d);
}
