/* Loading a PJRT plugin, its client and devices, host transfers, and the program cache.
 *
 * A plugin is a shared library exporting GetPjrtApi, a table of C functions whose struct
 * carries its own API version and size: a function this file calls must lie inside the size the
 * plugin reports, or loading stops with a message (an older plugin than the header). Plugins
 * are loaded once per process and never unloaded (XLA's libraries do not survive dlclose), and
 * their clients live as long as the process. Every PJRT error is reported with the function
 * that returned it and the plugin's own message; the known abort traps are avoided before they
 * reach the plugin (compiling with empty options aborts the process, so a serialized
 * CompileOptionsProto is always sent). */
#include <dirent.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "backends/xla/xla.h"
#include "pjrt_c_api.h"

#ifndef BEAMLET_PJRT_CPU_PLUGINS
#define BEAMLET_PJRT_CPU_PLUGINS ""
#endif
#ifndef BEAMLET_PJRT_TPU_PLUGIN
#define BEAMLET_PJRT_TPU_PLUGIN ""
#endif
#ifndef BEAMLET_PJRT_CUDA_PLUGIN
#define BEAMLET_PJRT_CUDA_PLUGIN ""
#endif

typedef struct program {
    char *text;
    uint64_t hash;
    PJRT_LoadedExecutable *exe;
    size_t nout;
    struct program *next;
} program;

#define NBUCKETS 1024

struct xla_plugin {
    xla_family family;
    char path[512];
    const PJRT_Api *api;
    PJRT_Client *client;
    PJRT_Device *const *devices;
    int ndevices;
    char platform[64], version[128];
    pthread_mutex_t lock; /* the program cache */
    program *buckets[NBUCKETS];
};

static const char *family_name[XLA_FAMILIES] = {"xla:cpu", "tpu", "xla:cuda"};

static struct {
    pthread_mutex_t lock;
    bool tried[XLA_FAMILIES];
    xla_plugin *plugin[XLA_FAMILIES];
    xla_plugin *loaded[XLA_FAMILIES];
    int nloaded;
    char why[XLA_FAMILIES][512];
    int64_t compiled, cached, executed;
    double compile_seconds;
} g = {.lock = PTHREAD_MUTEX_INITIALIZER};

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* The error's message, destroyed; as "FUNCTION: message". */
static bl_status fail(const PJRT_Api *api, PJRT_Error *e, const char *plugin, const char *fn) {
    PJRT_Error_Message_Args m = {.struct_size = PJRT_Error_Message_Args_STRUCT_SIZE, .error = e};
    api->PJRT_Error_Message(&m);
    /* One line: the plugin's message may hold newlines (a compiler diagnostic). */
    char msg[1024];
    size_t n = m.message_size < sizeof msg - 1 ? m.message_size : sizeof msg - 1;
    memcpy(msg, m.message, n);
    msg[n] = '\0';
    for (char *p = msg; *p; p++)
        if (*p == '\n') *p = ' ';
    PJRT_Error_Destroy_Args d = {.struct_size = PJRT_Error_Destroy_Args_STRUCT_SIZE, .error = e};
    api->PJRT_Error_Destroy(&d);
    return bl_error(BL_ERR_DEVICE, "%s: %s failed: %s", plugin, fn, msg);
}

#define PJ(p, FN, args)                                                                                      \
    do {                                                                                                     \
        PJRT_Error *e_ = (p)->api->FN(args);                                                                 \
        if (e_) return fail((p)->api, e_, base_name((p)->path), #FN);                                        \
    } while (0)

static bl_status await_event(xla_plugin *p, PJRT_Event *ev, const char *what) {
    if (!ev) return BL_OK;
    PJRT_Event_Await_Args a = {.struct_size = PJRT_Event_Await_Args_STRUCT_SIZE, .event = ev};
    PJRT_Error *e = p->api->PJRT_Event_Await(&a);
    PJRT_Event_Destroy_Args d = {.struct_size = PJRT_Event_Destroy_Args_STRUCT_SIZE, .event = ev};
    p->api->PJRT_Event_Destroy(&d);
    if (e) return fail(p->api, e, base_name(p->path), what);
    return BL_OK;
}

/* Every function this backend calls, checked against the plugin's table size at load time. */
#define PJRT_FUNCTIONS(X)                                                                                    \
    X(PJRT_Error_Destroy)                                                                                    \
    X(PJRT_Error_Message)                                                                                    \
    X(PJRT_Event_Destroy)                                                                                    \
    X(PJRT_Event_Await)                                                                                      \
    X(PJRT_Client_Create)                                                                                    \
    X(PJRT_Client_PlatformName)                                                                              \
    X(PJRT_Client_PlatformVersion)                                                                           \
    X(PJRT_Client_AddressableDevices)                                                                        \
    X(PJRT_Client_Compile)                                                                                   \
    X(PJRT_Client_BufferFromHostBuffer)                                                                      \
    X(PJRT_DeviceDescription_Kind)                                                                           \
    X(PJRT_Device_GetDescription)                                                                            \
    X(PJRT_LoadedExecutable_GetExecutable)                                                                   \
    X(PJRT_LoadedExecutable_Execute)                                                                         \
    X(PJRT_Executable_NumOutputs)                                                                            \
    X(PJRT_Executable_Destroy)                                                                               \
    X(PJRT_Buffer_Destroy)                                                                                   \
    X(PJRT_Buffer_ToHostBuffer)                                                                              \
    X(PJRT_Buffer_ReadyEvent)

static bool file_exists(const char *path) {
    struct stat st;
    return *path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Where a family's plugin is: BEAMLET_PJRT_PLUGIN (for whichever name its platform serves),
 * else what configure found, else (libtpu) TPU_LIBRARY_PATH or the loader's search path. */
static bl_status plugin_path(xla_family f, char *path, size_t size) {
    const char *env = getenv("BEAMLET_PJRT_PLUGIN");
    if (env && *env) {
        if (!file_exists(env)) return bl_error(BL_ERR_NOT_FOUND, "BEAMLET_PJRT_PLUGIN=%s: no such file", env);
        snprintf(path, size, "%s", env);
        return BL_OK;
    }
    if (f == XLA_CPU) {
        /* configure's list, "a.so:b.so": the first one present. */
        char list[2048];
        snprintf(list, sizeof list, "%s", BEAMLET_PJRT_CPU_PLUGINS);
        for (char *save, *tok = strtok_r(list, ":", &save); tok; tok = strtok_r(NULL, ":", &save))
            if (file_exists(tok)) {
                snprintf(path, size, "%s", tok);
                return BL_OK;
            }
        return bl_error(
            BL_ERR_NOT_FOUND,
            "no PJRT CPU plugin: install one into the project's .venv (scripts/setup.sh installs "
            "xla-cpu-pjrt and lammps-jax-pjrt-cpu) and reconfigure, or set BEAMLET_PJRT_PLUGIN to "
            "a plugin .so");
    }
    if (f == XLA_TPU) {
        const char *tpu = getenv("TPU_LIBRARY_PATH");
        snprintf(path, size, "%s",
                 tpu && *tpu                            ? tpu
                 : file_exists(BEAMLET_PJRT_TPU_PLUGIN) ? BEAMLET_PJRT_TPU_PLUGIN
                                                        : "libtpu.so");
        return BL_OK;
    }
    if (file_exists(BEAMLET_PJRT_CUDA_PLUGIN)) {
        snprintf(path, size, "%s", BEAMLET_PJRT_CUDA_PLUGIN);
        return BL_OK;
    }
    return bl_error(
        BL_ERR_NOT_FOUND,
        "no PJRT CUDA plugin: pip install jax-cuda12-pjrt (or jax-cuda13-pjrt) into the project's "
        ".venv and reconfigure, or set BEAMLET_PJRT_PLUGIN to xla_cuda_plugin.so");
}

/* A TPU shows up as a Google PCI device (vendor 0x1ae0); without one, libtpu is not even
 * loaded (on a cloud VM it would first ask the metadata server, with retries). */
static bool has_google_pci_device(void) {
    DIR *d = opendir("/sys/bus/pci/devices");
    if (!d) return false;
    bool found = false;
    for (struct dirent *e; !found && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char path[512], line[32] = "";
        snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/vendor", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (fgets(line, sizeof line, f) && strncmp(line, "0x1ae0", 6) == 0) found = true;
        fclose(f);
    }
    closedir(d);
    return found;
}

static bl_status load(xla_family f, const char *path, xla_plugin **out) {
    xla_plugin *p = calloc(1, sizeof *p);
    if (!p) return bl_error(BL_ERR_OUT_OF_MEMORY, "xla: plugin state");
    p->family = f;
    pthread_mutex_init(&p->lock, NULL);
    snprintf(p->path, sizeof p->path, "%s", path);
    bl_status s = BL_OK;
    /* No TPU here (libtpu named explicitly): do not ask a metadata server, with retries, about
     * a TPU VM this is not. On a TPU machine libtpu asks as usual. */
    if (f == XLA_TPU && !has_google_pci_device()) setenv("TPU_SKIP_MDS_QUERY", "1", 0);
    void *h = dlopen(p->path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        s = bl_error(BL_ERR_NOT_FOUND, "cannot load PJRT plugin %s: %s%s", p->path, dlerror(),
                     f == XLA_TPU ? " (pip install libtpu, or scripts/setup.sh --dev)" : "");
        goto fail;
    }
    const PJRT_Api *(*get)(void) = (const PJRT_Api *(*)(void))dlsym(h, "GetPjrtApi");
    if (!get) {
        s = bl_error(BL_ERR_FORMAT, "%s is not a PJRT plugin (no GetPjrtApi)", p->path);
        goto fail;
    }
    const PJRT_Api *api = get();
    if (!api) {
        s = bl_error(BL_ERR_DEVICE, "%s: GetPjrtApi returned nothing", p->path);
        goto fail;
    }
    if (api->pjrt_api_version.major_version != PJRT_API_MAJOR) {
        s = bl_error(BL_ERR_UNSUPPORTED, "%s: PJRT C API %d.%d, this build speaks %d.x", base_name(p->path),
                     api->pjrt_api_version.major_version, api->pjrt_api_version.minor_version,
                     PJRT_API_MAJOR);
        goto fail;
    }
#define CHECK_FN(fn)                                                                                         \
    if (api->struct_size < offsetof(PJRT_Api, fn) + sizeof(void *) || !api->fn) {                            \
        s = bl_error(BL_ERR_UNSUPPORTED, "%s: PJRT C API %d.%d (table of %zu bytes) lacks %s",               \
                     base_name(p->path), api->pjrt_api_version.major_version,                                \
                     api->pjrt_api_version.minor_version, api->struct_size, #fn);                            \
        goto fail;                                                                                           \
    }
    PJRT_FUNCTIONS(CHECK_FN)
#undef CHECK_FN
    p->api = api;
    if (api->struct_size >= offsetof(PJRT_Api, PJRT_Plugin_Initialize) + sizeof(void *) &&
        api->PJRT_Plugin_Initialize) {
        PJRT_Plugin_Initialize_Args ia = {.struct_size = PJRT_Plugin_Initialize_Args_STRUCT_SIZE};
        PJRT_Error *e = api->PJRT_Plugin_Initialize(&ia);
        if (e) {
            s = fail(api, e, base_name(p->path), "PJRT_Plugin_Initialize");
            goto fail;
        }
    }
    PJRT_Client_Create_Args ca = {.struct_size = PJRT_Client_Create_Args_STRUCT_SIZE};
    PJRT_Error *e = api->PJRT_Client_Create(&ca);
    if (e) {
        s = fail(api, e, base_name(p->path), "PJRT_Client_Create");
        goto fail;
    }
    p->client = ca.client;
    PJRT_Client_PlatformName_Args pn = {.struct_size = PJRT_Client_PlatformName_Args_STRUCT_SIZE,
                                        .client = p->client};
    PJRT_Client_PlatformVersion_Args pv = {.struct_size = PJRT_Client_PlatformVersion_Args_STRUCT_SIZE,
                                           .client = p->client};
    PJRT_Client_AddressableDevices_Args ad = {.struct_size = PJRT_Client_AddressableDevices_Args_STRUCT_SIZE,
                                              .client = p->client};
    if ((e = api->PJRT_Client_PlatformName(&pn)) || (e = api->PJRT_Client_PlatformVersion(&pv)) ||
        (e = api->PJRT_Client_AddressableDevices(&ad))) {
        s = fail(api, e, base_name(p->path), "PJRT_Client_* (platform, devices)");
        goto fail;
    }
    snprintf(p->platform, sizeof p->platform, "%.*s", (int)pn.platform_name_size, pn.platform_name);
    snprintf(p->version, sizeof p->version, "%.*s", (int)pv.platform_version_size, pv.platform_version);
    p->devices = ad.addressable_devices;
    p->ndevices = (int)ad.num_addressable_devices;
    *out = p;
    return BL_OK;
fail:
    /* The client (if any) and the library stay: neither is safe to tear down half-made. */
    pthread_mutex_destroy(&p->lock);
    free(p);
    return s;
}

/* The platform a family's plugin must report. */
static bool platform_matches(xla_family f, const char *platform) {
    if (f == XLA_CPU) return strcmp(platform, "cpu") == 0 || strcmp(platform, "host") == 0;
    if (f == XLA_TPU) return strcmp(platform, "tpu") == 0;
    return strcmp(platform, "cuda") == 0 || strcmp(platform, "gpu") == 0;
}

static bl_status find_or_load(xla_family f, xla_plugin **out) {
    char path[512];
    BL_TRY(plugin_path(f, path, sizeof path));
    /* One plugin per file: BEAMLET_PJRT_PLUGIN may serve every name, and a plugin's client is
     * made once. */
    xla_plugin *p = NULL;
    for (int k = 0; k < g.nloaded && !p; k++)
        if (strcmp(g.loaded[k]->path, path) == 0) p = g.loaded[k];
    if (!p) {
        bool explicit_path = getenv("BEAMLET_PJRT_PLUGIN") || getenv("TPU_LIBRARY_PATH");
        if (f == XLA_TPU && !explicit_path && !has_google_pci_device())
            return bl_error(BL_ERR_NOT_FOUND, "this machine has no TPU chip (no Google PCI device)");
        BL_TRY(load(f, path, &p));
        if (g.nloaded < XLA_FAMILIES) g.loaded[g.nloaded++] = p;
    }
    if (!platform_matches(f, p->platform))
        return bl_error(BL_ERR_NOT_FOUND, "%s is a '%s' plugin, not one for %s", base_name(p->path),
                        p->platform, family_name[f]);
    *out = p;
    return BL_OK;
}

bl_status xla_plugin_get(xla_family f, xla_plugin **out) {
    pthread_mutex_lock(&g.lock);
    if (!g.tried[f]) {
        g.tried[f] = true;
        bl_status s = find_or_load(f, &g.plugin[f]);
        if (s != BL_OK) {
            g.plugin[f] = NULL;
            snprintf(g.why[f], sizeof g.why[f], "%s", bl_last_error());
            bl_clear_error();
        }
    }
    xla_plugin *p = g.plugin[f];
    pthread_mutex_unlock(&g.lock);
    *out = p;
    if (!p) return bl_error(BL_ERR_NOT_FOUND, "%s: %s", family_name[f], g.why[f]);
    return BL_OK;
}

int xla_plugin_device_count(xla_family f, bool one) {
    xla_plugin *p;
    if (xla_plugin_get(f, &p) != BL_OK) {
        bl_clear_error();
        return 0;
    }
    return one && p->ndevices > 0 ? 1 : p->ndevices;
}

const char *xla_plugin_unavailable(xla_family f) {
    xla_plugin *p;
    if (xla_plugin_get(f, &p) != BL_OK) bl_clear_error();
    return p ? "the plugin lists no device" : g.why[f];
}

void xla_plugin_describe(xla_plugin *p, int index, char *buf, size_t size) {
    char kind[64] = "";
    PJRT_Device_GetDescription_Args gd = {.struct_size = PJRT_Device_GetDescription_Args_STRUCT_SIZE,
                                          .device = p->devices[index]};
    if (!p->api->PJRT_Device_GetDescription(&gd)) {
        PJRT_DeviceDescription_Kind_Args k = {.struct_size = PJRT_DeviceDescription_Kind_Args_STRUCT_SIZE,
                                              .device_description = gd.device_description};
        if (!p->api->PJRT_DeviceDescription_Kind(&k))
            snprintf(kind, sizeof kind, "%.*s", (int)k.device_kind_size, k.device_kind);
    }
    snprintf(buf, size, "PJRT %d.%d %s %s, %s", p->api->pjrt_api_version.major_version,
             p->api->pjrt_api_version.minor_version, p->platform, kind, base_name(p->path));
}

/* ---- buffers ---- */

static bl_status new_buf(PJRT_Buffer *pb, size_t len, xla_buf **out) {
    xla_buf *b = malloc(sizeof *b);
    if (!b) return bl_error(BL_ERR_OUT_OF_MEMORY, "xla: buffer handle");
    b->pjrt = pb;
    b->len = len;
    b->refs = 1;
    *out = b;
    return BL_OK;
}

xla_buf *xla_buf_ref(xla_buf *b) {
    if (b) __atomic_add_fetch(&b->refs, 1, __ATOMIC_RELAXED);
    return b;
}

static const PJRT_Api *buf_api; /* set at the first transfer: buffers outlive no plugin */

void xla_buf_unref(xla_buf *b) {
    if (!b || __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) > 0) return;
    if (!b->pjrt) { /* a placeholder never filled (capture.c) */
        free(b);
        return;
    }
    /* PJRT frees the memory once the executions still reading it are done. */
    PJRT_Buffer_Destroy_Args d = {.struct_size = PJRT_Buffer_Destroy_Args_STRUCT_SIZE, .buffer = b->pjrt};
    PJRT_Error *e = buf_api->PJRT_Buffer_Destroy(&d);
    if (e) {
        PJRT_Error_Destroy_Args ed = {.struct_size = PJRT_Error_Destroy_Args_STRUCT_SIZE, .error = e};
        buf_api->PJRT_Error_Destroy(&ed);
    }
    free(b);
}

bl_status xla_buf_from_host(xla_ctx *c, const void *src, size_t len, xla_buf **out) {
    xla_plugin *p = c->plugin;
    buf_api = p->api;
    int64_t dims[1] = {(int64_t)len};
    PJRT_Client_BufferFromHostBuffer_Args a = {
        .struct_size = PJRT_Client_BufferFromHostBuffer_Args_STRUCT_SIZE,
        .client = p->client,
        .data = src,
        .type = PJRT_Buffer_Type_U8,
        .dims = dims,
        .num_dims = 1,
        .host_buffer_semantics = PJRT_HostBufferSemantics_kImmutableOnlyDuringCall,
        .device = p->devices[c->index]};
    PJ(p, PJRT_Client_BufferFromHostBuffer, &a);
    bl_status s = await_event(p, a.done_with_host_buffer, "PJRT_Client_BufferFromHostBuffer (transfer)");
    if (s == BL_OK) s = new_buf(a.buffer, len, out);
    if (s != BL_OK) {
        PJRT_Buffer_Destroy_Args d = {.struct_size = PJRT_Buffer_Destroy_Args_STRUCT_SIZE,
                                      .buffer = a.buffer};
        p->api->PJRT_Buffer_Destroy(&d);
    }
    return s;
}

/* A placeholder of a recorded program has no PJRT buffer until the program runs; the callers
 * run it first (xla_buf_ready, capture.c). Here it is only refused. */
static bl_status need_buffer(const xla_buf *b) {
    if (b->pjrt) return BL_OK;
    return bl_error(BL_ERR_INTERNAL, "xla: a value of a program that has not run (or failed to run)");
}

bl_status xla_buf_to_host(xla_ctx *c, xla_buf *b, void *dst) {
    xla_plugin *p = c->plugin;
    BL_TRY(need_buffer(b));
    PJRT_Buffer_ToHostBuffer_Args a = {.struct_size = PJRT_Buffer_ToHostBuffer_Args_STRUCT_SIZE,
                                       .src = b->pjrt,
                                       .dst = dst,
                                       .dst_size = b->len};
    PJ(p, PJRT_Buffer_ToHostBuffer, &a);
    return await_event(p, a.event, "PJRT_Buffer_ToHostBuffer (transfer)");
}

bl_status xla_buf_await(xla_ctx *c, xla_buf *b) {
    xla_plugin *p = c->plugin;
    BL_TRY(need_buffer(b));
    PJRT_Buffer_ReadyEvent_Args a = {.struct_size = PJRT_Buffer_ReadyEvent_Args_STRUCT_SIZE,
                                     .buffer = b->pjrt};
    PJ(p, PJRT_Buffer_ReadyEvent, &a);
    return await_event(p, a.event, "PJRT_Buffer_ReadyEvent (the computation producing it)");
}

/* ---- programs ---- */

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CompileOptionsProto { executable_build_options { num_replicas: 1 num_partitions: 1 }
 * compile_portable_executable: true }: empty options abort the plugin's process
 * ("replica_count > 0"); a portable executable runs on whichever device an execution names
 * (execute_device), so one compiled program serves every chip of a plugin (tpu:N). */
static const char compile_options[] = {0x1A, 0x04, 0x20, 0x01, 0x28, 0x01, 0x20, 0x01};

static bl_status compile(xla_plugin *p, const char *text, program *prog) {
    PJRT_Program code = {.struct_size = PJRT_Program_STRUCT_SIZE,
                         .code = (char *)text,
                         .code_size = strlen(text),
                         .format = "mlir",
                         .format_size = 4};
    PJRT_Client_Compile_Args a = {.struct_size = PJRT_Client_Compile_Args_STRUCT_SIZE,
                                  .client = p->client,
                                  .program = &code,
                                  .compile_options = compile_options,
                                  .compile_options_size = sizeof compile_options};
    double t0 = now_seconds();
    PJRT_Error *e = p->api->PJRT_Client_Compile(&a);
    if (e) {
        bl_status s = fail(p->api, e, base_name(p->path), "PJRT_Client_Compile");
        if (getenv("BEAMLET_XLA_DUMP")) fprintf(stderr, "%s\n", text);
        return s;
    }
    g.compile_seconds += now_seconds() - t0;
    g.compiled++;
    prog->exe = a.executable;
    PJRT_LoadedExecutable_GetExecutable_Args ge = {.struct_size =
                                                       PJRT_LoadedExecutable_GetExecutable_Args_STRUCT_SIZE,
                                                   .loaded_executable = a.executable};
    PJ(p, PJRT_LoadedExecutable_GetExecutable, &ge);
    PJRT_Executable_NumOutputs_Args no = {.struct_size = PJRT_Executable_NumOutputs_Args_STRUCT_SIZE,
                                          .executable = ge.executable};
    PJRT_Error *e2 = p->api->PJRT_Executable_NumOutputs(&no);
    PJRT_Executable_Destroy_Args ed = {.struct_size = PJRT_Executable_Destroy_Args_STRUCT_SIZE,
                                       .executable = ge.executable};
    p->api->PJRT_Executable_Destroy(&ed);
    if (e2) return fail(p->api, e2, base_name(p->path), "PJRT_Executable_NumOutputs");
    prog->nout = no.num_outputs;
    return BL_OK;
}

static bl_status lookup(xla_plugin *p, const char *text, program **out) {
    uint64_t h = xla_text_hash(text);
    pthread_mutex_lock(&p->lock);
    program **slot = &p->buckets[h % NBUCKETS];
    for (program *q = *slot; q; q = q->next)
        if (q->hash == h && strcmp(q->text, text) == 0) {
            g.cached++;
            pthread_mutex_unlock(&p->lock);
            *out = q;
            return BL_OK;
        }
    program *prog = calloc(1, sizeof *prog);
    char *copy = strdup(text);
    bl_status s =
        prog && copy ? compile(p, text, prog) : bl_error(BL_ERR_OUT_OF_MEMORY, "xla: program cache");
    if (s != BL_OK) {
        free(prog);
        free(copy);
        pthread_mutex_unlock(&p->lock);
        return s;
    }
    prog->text = copy;
    prog->hash = h;
    prog->next = *slot;
    *slot = prog;
    pthread_mutex_unlock(&p->lock);
    *out = prog;
    return BL_OK;
}

void xla_program_stats(int64_t *compiled, int64_t *cached, double *compile_seconds) {
    if (compiled) *compiled = g.compiled;
    if (cached) *cached = g.cached;
    if (compile_seconds) *compile_seconds = g.compile_seconds;
}

int64_t xla_executions(void) { return __atomic_load_n(&g.executed, __ATOMIC_RELAXED); }

bl_status xla_execute(xla_ctx *c, const char *text, int nin, xla_buf *const *in, int nout,
                      const size_t *out_len, xla_buf **out) {
    xla_plugin *p = c->plugin;
    buf_api = p->api;
    for (int i = 0; i < nin; i++) BL_TRY(need_buffer(in[i]));
    program *prog;
    BL_TRY(lookup(p, text, &prog));
    if ((int)prog->nout != nout)
        return bl_error(BL_ERR_INTERNAL, "xla: program has %zu outputs, expected %d", prog->nout, nout);
    /* A gather reads as many segments as a range holds (a model's flat parameters: one per
     * tensor). */
    PJRT_Buffer **args = calloc((size_t)nin + 1, sizeof *args),
                **outs = calloc((size_t)nout + 1, sizeof *outs);
    if (!args || !outs) return free(args), free(outs), bl_error(BL_ERR_OUT_OF_MEMORY, "xla: argument lists");
    for (int i = 0; i < nin; i++) args[i] = in[i]->pjrt;
    PJRT_Buffer *const *arg_lists[1] = {args};
    PJRT_Buffer **out_lists[1] = {outs};
    PJRT_ExecuteOptions eo = {.struct_size = PJRT_ExecuteOptions_STRUCT_SIZE};
    PJRT_LoadedExecutable_Execute_Args a = {.struct_size = PJRT_LoadedExecutable_Execute_Args_STRUCT_SIZE,
                                            .executable = prog->exe,
                                            .options = &eo,
                                            .argument_lists = arg_lists,
                                            .num_devices = 1,
                                            .num_args = (size_t)nin,
                                            .output_lists = out_lists,
                                            .execute_device = p->devices[c->index]};
    PJRT_Error *e = p->api->PJRT_LoadedExecutable_Execute(&a);
    free(args);
    __atomic_add_fetch(&g.executed, 1, __ATOMIC_RELAXED);
    if (e) return free(outs), fail(p->api, e, base_name(p->path), "PJRT_LoadedExecutable_Execute");
    bl_status s = BL_OK;
    for (int i = 0; i < nout; i++) {
        out[i] = NULL;
        if (s == BL_OK) s = new_buf(outs[i], out_len[i], &out[i]);
        if (!out[i]) {
            PJRT_Buffer_Destroy_Args d = {.struct_size = PJRT_Buffer_Destroy_Args_STRUCT_SIZE,
                                          .buffer = outs[i]};
            p->api->PJRT_Buffer_Destroy(&d);
        }
    }
    free(outs);
    if (s != BL_OK)
        for (int i = 0; i < nout; i++) xla_buf_unref(out[i]), out[i] = NULL;
    return s;
}
