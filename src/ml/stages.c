/* What the stages share: their pipeline with the workers' accelerators, paths, and where the
 * shipped model is found wherever a program runs from. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ml/stage_common.h"

static bool is_tpu(const bl_device_choice *c) { return c->accelerator && strcmp(c->family, "tpu") == 0; }

void stage_worker_accelerators(const bl_device_choice *where, bl_accel_kind *kind, int *count) {
    bl_device_choice c = *where;
    if (!c.accelerator) {
        bl_device_request req = {"auto", -1, false, BL_F32};
        if (bl_device_resolve(&req, &c) != BL_OK) {
            bl_clear_error();
            c = *where;
        }
    }
    *kind = is_tpu(&c) ? BL_ACCEL_TPU : BL_ACCEL_GPU;
    *count = c.accelerator ? bl_device_count(c.family) : 0;
}

bl_status stage_pipeline(const bl_options *opts, const bl_device_choice *where, bl_pipeline **out) {
    BL_TRY(bl_pipeline_new(opts, out));
    /* What the runner assigns: each worker thread or rank gets one of these (beamlet/pipeline.h). */
    if (!bl_options_given(opts, "worker_accelerators")) {
        bl_accel_kind kind;
        int count;
        stage_worker_accelerators(where, &kind, &count);
        bl_pipeline_set_worker_accelerators(*out, kind, count);
    }
    return BL_OK;
}

/* The step's accelerator hint when the config's device is one: the runner then places
 * TrainModel on a worker that has it (stage 2's concept, reused). */
bl_status stage_hint_accelerator(bl_pipeline *p, const char *step, const bl_device_choice *where) {
    if (!where->accelerator) return BL_OK;
    char hint[64];
    if (is_tpu(where)) {
        snprintf(hint, sizeof hint, "accelerator=type:tpu;count:1;topology:1x1");
    } else {
        /* A hint's type holds no ':' ("xla:cuda" is written "xla-cuda"). */
        int n = snprintf(hint, sizeof hint, "accelerator=type:%s;count:1", where->family);
        for (int i = (int)strlen("accelerator=type:"); i < n && hint[i] != ';'; i++)
            if (hint[i] == ':') hint[i] = '-';
    }
    return bl_pipeline_set_hints(p, step, hint);
}

bl_status stage_resolve(const char *device, bool allow_cpu_fallback, bl_device_choice *out) {
    bl_device_request req = {device, -1, allow_cpu_fallback, BL_F32};
    return bl_device_resolve(&req, out);
}

bl_status stage_path(char *dst, size_t size, const bl_options *opts, const char *flag, const char *dir,
                     const char *name) {
    const char *given = bl_options_get(opts, flag);
    if (!given || !*given) return stage_join(dst, size, dir, name);
    if ((size_t)snprintf(dst, size, "%s", given) >= size)
        return bl_error(BL_ERR_INVALID_ARG, "--%s=%s: longer than %zu bytes", flag, given, size - 1);
    return BL_OK;
}

bl_status stage_join(char *dst, size_t size, const char *dir, const char *name) {
    int n = snprintf(dst, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size)
        return bl_error(BL_ERR_INVALID_ARG, "path %s/%s is longer than %zu bytes", dir, name, size - 1);
    return BL_OK;
}

bl_status bl_shipped_model_path(char *path, size_t size) {
    char places[3][1024];
    int n = 0;
    const char *env = getenv("BEAMLET_MODEL_DIR");
    if (env && *env) BL_TRY(stage_join(places[n++], sizeof places[0], env, BL_SHIPPED_MODEL));
    /* Beside the program: the build tree copies the model to <build>/share/beamlet/models, where
     * build/beamlet finds it one level up and build/examples/... two; an installed program in
     * <prefix>/bin finds <prefix>/share/beamlet/models. */
    char exe[900];
    if (bl_exe_dir(exe, sizeof exe) == BL_OK) {
        snprintf(places[n++], sizeof places[0], "%s/share/beamlet/models/" BL_SHIPPED_MODEL, exe);
        snprintf(places[n++], sizeof places[0], "%s/../share/beamlet/models/" BL_SHIPPED_MODEL, exe);
    }
    for (int i = 0; i < n; i++)
        if (bl_file_exists(places[i])) {
            char clean[PATH_MAX]; /* "build/examples/../share/..." reads better as "build/share/..." */
            const char *found = realpath(places[i], clean) ? clean : places[i];
            if ((size_t)snprintf(path, size, "%s", found) >= size)
                return bl_error(BL_ERR_INVALID_ARG, "model path %s is too long", found);
            return BL_OK;
        }
    bl_buf where = {0};
    for (int i = 0; i < n; i++) bl_buf_printf(&where, "%s%s", i ? ", " : "", places[i]);
    bl_status s = bl_error(BL_ERR_NOT_FOUND,
                           "the shipped model %s is not in any place looked in (%s); set "
                           "BEAMLET_MODEL_DIR to its folder or pass --weights=PATH",
                           BL_SHIPPED_MODEL, where.data ? (const char *)where.data : "none");
    bl_buf_free(&where);
    return s;
}
