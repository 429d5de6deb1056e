/* The device resolver against a registry of fake backends, so every name can be tried whatever
 * this machine has: how many GPUs and TPUs there are is set here. What is checked: each name of
 * the table and where it lands, the worker's accelerator, BEAMLET_DEVICE behind "auto", the
 * CPU fallback (only when asked, announced), "cpu" claimed twice (the first claim wins), a name
 * no backend claims ("built without ..."), indices out of range, unknown names, and opening. */
#include "bl_test.h"

#include "tensor/backend.h"

static int gpus, tpus; /* what the fake accelerator backends see */

static int gpu_count(void) { return gpus; }
static int tpu_count(void) { return tpus; }

static bl_status fake_open(int index, void **ctx, char *description, size_t size) {
    *ctx = NULL;
    snprintf(description, size, "fake device %d", index);
    return BL_OK;
}
static void fake_close(void *ctx) { (void)ctx; }

#define FAKE(var, label, count)                                                                              \
    static const bl_backend var = {                                                                          \
        .name = label, .device_count = count, .open = fake_open, .close = fake_close};                       \
    static const bl_backend *var##_get(void) { return &var; }

FAKE(fast_cpu, "fastcpu", NULL)
FAKE(ref_cpu, "refcpu", NULL)
FAKE(fake_cuda, "fakecuda", gpu_count)
FAKE(fake_tpu, "faketpu", tpu_count)

/* A build with a fast CPU backend, the reference, a CUDA backend and an XLA TPU backend. */
static const bl_backend_claim full_claims[] = {
    {"cpu", fast_cpu_get},   {"cpu", ref_cpu_get},  {"cpu_ref", ref_cpu_get},
    {"cuda", fake_cuda_get}, {"tpu", fake_tpu_get},
};
static const bl_backend_registry full = {full_claims, 5};
/* A CPU-only build: no accelerator backend at all. */
static const bl_backend_claim cpu_claims[] = {{"cpu", ref_cpu_get}, {"cpu_ref", ref_cpu_get}};
static const bl_backend_registry cpu_only = {cpu_claims, 2};

static bl_device_choice resolve_ok(const bl_backend_registry *reg, const char *name, int accel,
                                   bool fallback) {
    bl_device_request r = {name, accel, fallback, BL_F32};
    bl_device_choice c;
    memset(&c, 0, sizeof c);
    CHECK_OK(bl_device_resolve_in(reg, &r, &c));
    return c;
}

static void expect(const bl_backend_registry *reg, const char *name, int accel, const char *want,
                   const char *backend, bool accelerator) {
    bl_device_choice c = resolve_ok(reg, name, accel, false);
    CHECK_MSG(strcmp(c.name, want) == 0 && strcmp(c.backend, backend) == 0 && c.accelerator == accelerator &&
                  !c.fell_back,
              "'%s' (accelerator %d) -> %s on %s, wanted %s on %s", name ? name : "(null)", accel, c.name,
              c.backend, want, backend);
}

static void expect_err(const bl_backend_registry *reg, const char *name, bool fallback, bl_status want,
                       const char *needle) {
    bl_device_request r = {name, -1, fallback, BL_F32};
    bl_device_choice c;
    CHECK_ERR(bl_device_resolve_in(reg, &r, &c), want, needle);
}

static void test_every_name(void) {
    unsetenv("BEAMLET_DEVICE");
    gpus = 2, tpus = 4;
    expect(&full, "cpu", -1, "cpu", "fastcpu", false); /* the first claim of "cpu" */
    expect(&full, "cpu_ref", -1, "cpu_ref", "refcpu", false);
    expect(&full, "gpu", -1, "cuda:0", "fakecuda", true);
    expect(&full, "cuda", -1, "cuda:0", "fakecuda", true);
    expect(&full, "cuda:1", -1, "cuda:1", "fakecuda", true);
    expect(&full, "tpu", -1, "tpu:0", "faketpu", true);
    expect(&full, "tpu:3", -1, "tpu:3", "faketpu", true);
    expect(&cpu_only, "cpu", -1, "cpu", "refcpu", false);
    /* The worker's accelerator picks among the devices an unindexed name reaches; an explicit
     * index wins; a CPU name ignores it. */
    expect(&full, "gpu", 1, "cuda:1", "fakecuda", true);
    expect(&full, "cuda:0", 1, "cuda:0", "fakecuda", true);
    expect(&full, "tpu", 2, "tpu:2", "faketpu", true);
    expect(&full, "cpu", 1, "cpu", "fastcpu", false);
    CHECK(bl_device_count_in(&full, "gpu") == 2 && bl_device_count_in(&full, "tpu:1") == 4 &&
          bl_device_count_in(&full, "cpu") == 1 && bl_device_count_in(&cpu_only, "cuda") == 0 &&
          bl_device_count_in(&full, "nonsense") == 0);
}

static void test_auto(void) {
    unsetenv("BEAMLET_DEVICE");
    gpus = 2, tpus = 4;
    expect(&full, "auto", -1, "cuda:0", "fakecuda", true); /* the first accelerator family present */
    expect(&full, NULL, 1, "cuda:1", "fakecuda", true);
    expect(&full, "", -1, "cuda:0", "fakecuda", true);
    CHECK(bl_accelerator_count_in(&full) == 2);
    gpus = 0;
    expect(&full, "auto", -1, "tpu:0", "faketpu", true);
    tpus = 0;
    expect(&full, "auto", 1, "cpu", "fastcpu", false); /* no accelerator: the CPU, no fallback */
    CHECK(bl_accelerator_count_in(&full) == 0);
    expect(&cpu_only, "auto", -1, "cpu", "refcpu", false);
    /* BEAMLET_DEVICE is what "auto" means, under the same rules; explicit names ignore it. */
    gpus = 2;
    setenv("BEAMLET_DEVICE", "cpu_ref", 1);
    expect(&full, "auto", -1, "cpu_ref", "refcpu", false);
    expect(&full, "cuda", -1, "cuda:0", "fakecuda", true);
    setenv("BEAMLET_DEVICE", "gpu", 1);
    expect(&full, "auto", 1, "cuda:1", "fakecuda", true);
    setenv("BEAMLET_DEVICE", "gpu", 1);
    expect_err(&cpu_only, "auto", false, BL_ERR_UNSUPPORTED,
               "BEAMLET_DEVICE=gpu: device 'gpu': no NVIDIA GPU");
    setenv("BEAMLET_DEVICE", "cpu2", 1);
    expect_err(&full, "auto", false, BL_ERR_INVALID_ARG, "BEAMLET_DEVICE=cpu2: unknown device 'cpu2'");
    setenv("BEAMLET_DEVICE", "auto", 1);
    expect(&full, "auto", -1, "cuda:0", "fakecuda", true);
    unsetenv("BEAMLET_DEVICE");
}

static void test_missing_accelerators(void) {
    unsetenv("BEAMLET_DEVICE");
    gpus = 0, tpus = 0;
    /* Built but none visible: NOT_FOUND; not built: UNSUPPORTED naming the backend. Both say how
     * to run on the CPU instead. */
    expect_err(&full, "gpu", false, BL_ERR_NOT_FOUND, "device 'gpu': no NVIDIA GPU: the backend sees none");
    expect_err(&full, "cuda:1", false, BL_ERR_NOT_FOUND,
               "pass --allow_cpu_fallback to run on the CPU instead");
    expect_err(&cpu_only, "cuda", false, BL_ERR_UNSUPPORTED,
               "device 'cuda': no NVIDIA GPU: this beamlet was built without the CUDA backend");
    expect_err(&full, "xla:cuda", false, BL_ERR_UNSUPPORTED, "built without the XLA backend (PJRT)");
    expect_err(&cpu_only, "tpu", false, BL_ERR_UNSUPPORTED,
               "device 'tpu': no TPU: this beamlet was built without the XLA backend");
    expect_err(&full, "xla:cpu", false, BL_ERR_UNSUPPORTED,
               "device 'xla:cpu': this beamlet was built without the XLA backend");
    /* The fallback only when asked, and then it says so. */
    const char *asked[] = {"gpu", "cuda", "cuda:1", "tpu", "xla:cuda:2"};
    for (int i = 0; i < 5; i++) {
        bl_device_choice c = resolve_ok(i < 3 ? &full : &cpu_only, asked[i], 0, true);
        CHECK_MSG(strcmp(c.name, "cpu") == 0 && c.fell_back && !c.accelerator, "%s -> %s", asked[i], c.name);
    }
    /* A CPU name has nothing to fall back from. */
    bl_device_choice c = resolve_ok(&full, "cpu_ref", -1, true);
    CHECK(!c.fell_back);
    /* Indices beyond what is there are errors, fallback or not. */
    gpus = 2;
    expect_err(&full, "cuda:2", true, BL_ERR_NOT_FOUND,
               "cuda:2 asked for, but only 2 NVIDIA GPUs are visible (cuda:0..cuda:1)");
    bl_device_request r = {"gpu", 5, false, BL_F32};
    CHECK_ERR(bl_device_resolve_in(&full, &r, &c), BL_ERR_NOT_FOUND, "cuda:5 asked for");
}

static void test_bad_names(void) {
    gpus = 1;
    expect_err(&full, "tpu2", false, BL_ERR_INVALID_ARG,
               "unknown device 'tpu2' (valid: auto, cpu, cpu_ref, gpu, cuda, cuda:N, tpu");
    expect_err(&full, "cuda:x", false, BL_ERR_INVALID_ARG, "device 'cuda:x': expected cuda:N");
    expect_err(&full, "cuda:", false, BL_ERR_INVALID_ARG, "expected cuda:N");
    expect_err(&full, "cuda:-1", false, BL_ERR_INVALID_ARG, "expected cuda:N");
    expect_err(&full, "cpu:0", false, BL_ERR_INVALID_ARG, "unknown device 'cpu:0'");
    expect_err(&full, "CUDA", false, BL_ERR_INVALID_ARG, "unknown device 'CUDA'");
}

static void test_open_and_list(void) {
    gpus = 2, tpus = 0;
    bl_device_request r = {"gpu", 1, false, BL_F32};
    bl_device *dev;
    CHECK_OK(bl_device_open_in(&full, &r, &dev));
    CHECK(strcmp(bl_device_name(dev), "cuda:1") == 0 &&
          strcmp(bl_device_backend_name(dev), "fakecuda") == 0 &&
          strcmp(bl_device_description(dev), "fake device 1") == 0);
    bl_device_release(dev);
    char buf[2048];
    CHECK_OK(bl_device_list_in(&full, buf, sizeof buf));
    CHECK_MSG(strstr(buf, "cpu      fastcpu") && strstr(buf, "cpu_ref  refcpu") &&
                  strstr(buf, "cuda:0   fakecuda") && strstr(buf, "cuda:1   fakecuda") &&
                  strstr(buf, "(tpu: none visible)") && strstr(buf, "(xla:cpu: not in this build)") &&
                  !strstr(buf, "gpu"),
              "%s", buf);
}

int main(void) {
    RUN(test_every_name);
    RUN(test_auto);
    RUN(test_missing_accelerators);
    RUN(test_bad_names);
    RUN(test_open_and_list);
    return bl_test_finish();
}
