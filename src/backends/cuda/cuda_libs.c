/* Loading cuDNN and cuBLAS at run time, the first time a CUDA device is opened (cuda_libs.h
 * says why). One attempt per process: its outcome, success or the failure's message, is kept
 * and given to every later caller. */
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cudnn.h>

#include "backends/cuda/cuda_libs.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/* The pointers cuda_libs_calls.h redirects the backend's calls to, typed by the headers. */
#define CUDA_LIBS_DEFINE(name) __typeof__(name) *cuda_fn_##name;
CUDA_LIBS_CUDNN_FUNCTIONS(CUDA_LIBS_DEFINE)
CUDA_LIBS_CUBLAS_FUNCTIONS(CUDA_LIBS_DEFINE)
#undef CUDA_LIBS_DEFINE

/* A function to resolve: its exported name and the address of its pointer. dlsym's void *
 * is copied into the pointer with memcpy: ISO C has no conversion from void * to a function
 * pointer, and POSIX guarantees the two have the same representation. */
typedef struct lib_fn {
    const char *name;
    void *slot;
} lib_fn;

#define CUDA_LIBS_ENTRY(name) {#name, &cuda_fn_##name},
static const lib_fn all_fns[] = {CUDA_LIBS_CUDNN_FUNCTIONS(CUDA_LIBS_ENTRY)
                                     CUDA_LIBS_CUBLAS_FUNCTIONS(CUDA_LIBS_ENTRY)};
#undef CUDA_LIBS_ENTRY
#define CUDA_LIBS_ONE(name) +1
enum {
    N_CUDNN_FNS = 0 CUDA_LIBS_CUDNN_FUNCTIONS(CUDA_LIBS_ONE)
};
#undef CUDA_LIBS_ONE
#define N_ALL_FNS ((int)(sizeof all_fns / sizeof all_fns[0]))

#ifndef BEAMLET_CUDNN_CONFIGURED_PATH
#define BEAMLET_CUDNN_CONFIGURED_PATH NULL
#endif
#ifndef BEAMLET_CUBLAS_CONFIGURED_PATH
#define BEAMLET_CUBLAS_CONFIGURED_PATH NULL
#endif

#define CUDNN_BUILT STR(CUDNN_MAJOR) "." STR(CUDNN_MINOR) "." STR(CUDNN_PATCHLEVEL)
#define CUBLAS_BUILT STR(CUBLAS_VER_MAJOR) "." STR(CUBLAS_VER_MINOR) "." STR(CUBLAS_VER_PATCH)

typedef struct lib_desc {
    const char *label;      /* for messages */
    const char *soname;     /* the major version the headers are */
    const char *configured; /* the file CMake found, tried after the SONAME */
    const char *env;        /* names the file to load instead */
    const char *needs;      /* what to install, for messages */
    int first_fn, n_fns;    /* its slice of all_fns */
} lib_desc;

static const lib_desc libs[2] = {
    {"cuDNN", "libcudnn.so." STR(CUDNN_MAJOR), BEAMLET_CUDNN_CONFIGURED_PATH, "BEAMLET_CUDNN_LIBRARY",
     "cuDNN " STR(CUDNN_MAJOR) " (built against " CUDNN_BUILT ")", 0, N_CUDNN_FNS},
    {"cuBLAS", "libcublas.so." STR(CUBLAS_VER_MAJOR), BEAMLET_CUBLAS_CONFIGURED_PATH,
     "BEAMLET_CUBLAS_LIBRARY",
     "cuBLAS " STR(CUBLAS_VER_MAJOR) " from the CUDA " STR(
         CUBLAS_VER_MAJOR) " toolkit (built against " CUBLAS_BUILT ")",
     N_CUDNN_FNS, N_ALL_FNS - N_CUDNN_FNS},
};

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static bl_status load_status;
static char load_message[3072];
static void *handles[2];
static char paths[2][1024];

/* Opens one library: the override if its variable is set, else the SONAME, else the
 * configured file. On failure writes the message (every attempt's dlerror) and returns NULL. */
static void *open_lib(const lib_desc *d) {
    const int flags = RTLD_NOW | RTLD_LOCAL;
    const char *override = getenv(d->env);
    if (override && *override) {
        void *h = dlopen(override, flags);
        if (!h)
            snprintf(load_message, sizeof load_message,
                     "cuda: cannot load %s from %s=%s: %s. The CUDA backend needs %s: set %s "
                     "to such a library file (%s), or unset it to search the usual places",
                     d->label, d->env, override, dlerror(), d->needs, d->env, d->soname);
        return h;
    }
    char tried[1024] = "";
    void *h = dlopen(d->soname, flags);
    if (!h) snprintf(tried, sizeof tried, "%s", dlerror());
    if (!h && d->configured && strcmp(d->configured, d->soname) != 0) {
        h = dlopen(d->configured, flags);
        if (!h) {
            size_t used = strlen(tried);
            snprintf(tried + used, sizeof tried - used, "; %s", dlerror());
        }
    }
    if (!h)
        snprintf(load_message, sizeof load_message,
                 "cuda: cannot load %s (%s). The CUDA backend needs %s: install it, add the "
                 "folder holding %s to LD_LIBRARY_PATH, or set %s to the library file",
                 d->label, tried, d->needs, d->soname, d->env);
    return h;
}

/* Which file the loader actually chose, for messages and cuda_libs_path. */
static void remember_path(int lib, const char *fallback) {
    struct link_map *map = NULL;
    const char *p = fallback;
    if (dlinfo(handles[lib], RTLD_DI_LINKMAP, &map) == 0 && map && map->l_name && *map->l_name)
        p = map->l_name;
    snprintf(paths[lib], sizeof paths[lib], "%s", p);
}

static bl_status resolve(int lib) {
    const lib_desc *d = &libs[lib];
    for (int i = d->first_fn; i < d->first_fn + d->n_fns; i++) {
        (void)dlerror();
        void *p = dlsym(handles[lib], all_fns[i].name);
        if (!p) {
            const char *why = dlerror();
            snprintf(load_message, sizeof load_message,
                     "cuda: %s library %s has no function %s (%s). The CUDA backend needs %s: "
                     "install it, or set %s to such a library file",
                     d->label, paths[lib], all_fns[i].name, why ? why : "dlsym returned NULL", d->needs,
                     d->env);
            return BL_ERR_UNSUPPORTED;
        }
        memcpy(all_fns[i].slot, &p, sizeof p);
    }
    return BL_OK;
}

/* Same major as the headers: the SONAME promises it, a file named by the variables may not. */
static bl_status check_versions(void) {
    size_t v = cuda_fn_cudnnGetVersion();
    /* cuDNN 9 numbers versions major*10000 + minor*100 + patch; cuDNN 8 used major*1000. */
    size_t major = v >= 90000 ? v / 10000 : v / 1000;
    if (major != CUDNN_MAJOR) {
        snprintf(load_message, sizeof load_message,
                 "cuda: %s is cuDNN version %zu, but beamlet was built against cuDNN " CUDNN_BUILT
                 " and needs cuDNN %d: install it, or set %s to such a library file",
                 paths[0], v, CUDNN_MAJOR, libs[0].env);
        return BL_ERR_UNSUPPORTED;
    }
    int blas_major = -1;
    cublasStatus_t e = cuda_fn_cublasGetProperty(MAJOR_VERSION, &blas_major);
    if (e != CUBLAS_STATUS_SUCCESS || blas_major != CUBLAS_VER_MAJOR) {
        snprintf(load_message, sizeof load_message,
                 "cuda: %s is cuBLAS major version %d (status %d), but beamlet was built "
                 "against cuBLAS " CUBLAS_BUILT ": install the CUDA %d toolkit's cuBLAS, or "
                 "set %s to its library file",
                 paths[1], blas_major, (int)e, CUBLAS_VER_MAJOR, libs[1].env);
        return BL_ERR_UNSUPPORTED;
    }
    return BL_OK;
}

static void load_all(void) {
    bl_status s = BL_OK;
    for (int lib = 0; lib < 2 && s == BL_OK; lib++) {
        handles[lib] = open_lib(&libs[lib]);
        if (!handles[lib]) {
            s = BL_ERR_NOT_FOUND;
            break;
        }
        remember_path(lib, libs[lib].soname);
        s = resolve(lib);
    }
    if (s == BL_OK) s = check_versions();
    if (s != BL_OK) {
        /* All or nothing: no pointer stays set after a failure. */
        void *null = NULL;
        for (int i = 0; i < N_ALL_FNS; i++) memcpy(all_fns[i].slot, &null, sizeof null);
        for (int lib = 0; lib < 2; lib++) {
            if (handles[lib]) (void)dlclose(handles[lib]);
            handles[lib] = NULL;
            paths[lib][0] = '\0';
        }
    }
    load_status = s;
}

bl_status cuda_libs_load(void) {
    if (pthread_once(&load_once, load_all) != 0)
        return bl_error(BL_ERR_INTERNAL, "cuda: pthread_once failed loading cuDNN and cuBLAS");
    if (load_status != BL_OK) return bl_error(load_status, "%s", load_message);
    return BL_OK;
}

int cuda_libs_count(void) { return N_ALL_FNS; }

const char *cuda_libs_name(int i) { return i >= 0 && i < N_ALL_FNS ? all_fns[i].name : NULL; }

bool cuda_libs_resolved(int i) {
    if (i < 0 || i >= N_ALL_FNS) return false;
    void *p = NULL;
    memcpy(&p, all_fns[i].slot, sizeof p);
    return p != NULL;
}

const char *cuda_libs_path(int lib) { return lib == 0 || lib == 1 ? paths[lib] : ""; }
