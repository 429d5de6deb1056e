/* The C ABI (include/beamlet/capi.h) as a program that loads libbeamlet.so sees it: this test
 * links the shared library alone (python/beamlet.cmake), so it reaches nothing but the exported
 * bl_capi_* functions, and every error message it checks is the one a Python exception carries. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "beamlet/capi.h"
#include "bl_test.h"

#define WEIGHTS "/models/fashion-resnet18-w8.safetensors"
#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

/* A call that must succeed: on failure, the ABI's own message. */
#define CHECK_ABI(expr)                                                                                      \
    do {                                                                                                     \
        int rc_ = (expr);                                                                                    \
        CHECK_MSG(rc_ == 0, "%s -> %s: %s", #expr, bl_capi_status_name(rc_), bl_capi_last_error());          \
    } while (0)

/* A call that must fail with `want`, its message containing `needle`. */
#define CHECK_ABI_ERR(expr, want, needle)                                                                    \
    do {                                                                                                     \
        int rc_ = (expr);                                                                                    \
        CHECK_MSG(rc_ == (want) && strstr(bl_capi_last_error(), (needle)),                                   \
                  "%s -> %s \"%s\", wanted %s with \"%s\"", #expr, bl_capi_status_name(rc_),                 \
                  bl_capi_last_error(), bl_capi_status_name(want), (needle));                                \
    } while (0)

static char weights[1024];

static void test_version(void) {
    CHECK(bl_capi_abi_version() == BL_CAPI_ABI_VERSION);
    CHECK(strlen(bl_capi_library_version()) > 0);
    CHECK(strcmp(bl_capi_status_name(1), "invalid argument") == 0);
    char *devices = NULL;
    CHECK_ABI(bl_capi_device_list(&devices));
    CHECK(devices && strstr(devices, "cpu"));
    bl_capi_free(devices);
}

static void test_devices(void) {
    bl_capi_device *d = NULL;
    CHECK_ABI(bl_capi_device_open("cpu", 0, &d));
    CHECK(d && strcmp(bl_capi_device_name(d), "cpu") == 0 && !bl_capi_device_fell_back(d));
    bl_capi_device_close(d);
    CHECK_ABI_ERR(bl_capi_device_open("quantum", 0, &d), 1, "quantum");
    CHECK(d == NULL);
    CHECK_ABI_ERR(bl_capi_device_open("", 0, &d), 1, "no device name");
    /* No GPU on the test machines: asking for one is an error unless the fallback is asked for. */
    if (bl_capi_device_open("gpu", 0, &d) == 0) {
        bl_capi_device_close(d);
        SKIP("this machine has a GPU: the no-GPU policy is not testable here");
    }
    CHECK(strstr(bl_capi_last_error(), "no NVIDIA GPU") != NULL);
    CHECK_ABI(bl_capi_device_open("gpu", 1, &d));
    CHECK(d && bl_capi_device_fell_back(d) && strcmp(bl_capi_device_name(d), "cpu") == 0);
    bl_capi_device_close(d);
}

static void test_model(void) {
    int depth, width, in_c, classes, side;
    CHECK_ABI(bl_capi_model_peek(weights, &depth, &width, &in_c, &classes, &side));
    CHECK(depth == 18 && width == 8 && in_c == 1 && classes == 10 && side == 32);
    CHECK_ABI_ERR(bl_capi_model_peek("/nonexistent/model.safetensors", NULL, NULL, NULL, NULL, NULL), 6,
                  "/nonexistent/model.safetensors");

    bl_capi_device *dev = NULL;
    CHECK_ABI(bl_capi_device_open("cpu", 0, &dev));
    int64_t before = bl_capi_models_loaded();
    bl_capi_model *small = NULL, *big = NULL, *again = NULL;
    CHECK_ABI(bl_capi_model_load(dev, weights, 2, 0, 0, &small));
    CHECK_ABI(bl_capi_model_load(dev, weights, 8, 32, 32, &big));
    CHECK_ABI(bl_capi_model_load(dev, weights, 2, 32, 32, &again)); /* served by an existing model */
    bl_capi_device_close(dev);                                      /* the models keep theirs */
    CHECK(bl_capi_models_loaded() - before == 2);
    if (!small || !big || !again) return;
    int c, h, w, k, mb;
    bl_capi_model_shape(small, &c, &h, &w, &k, &mb);
    CHECK(c == 1 && h == 32 && w == 32 && k == 10 && mb == 2);
    CHECK(strcmp(bl_capi_model_device(small), "cpu") == 0);

    /* Five examples through a model planned for two (three calls inside) and one planned for
     * eight: the same logits, and each example's logits do not depend on its batch. */
    enum {
        N = 5
    };
    float *x = malloc(sizeof(float) * N * 32 * 32);
    float a[N * 10], b[N * 10], one[10];
    for (int i = 0; i < N * 32 * 32; i++) x[i] = (float)((i * 7919) % 255) / 127.0f - 1.0f;
    CHECK_ABI(bl_capi_model_infer(small, x, N, a));
    CHECK_ABI(bl_capi_model_infer(big, x, N, b));
    CHECK_ABI(bl_capi_model_infer(again, x + 4 * 32 * 32, 1, one));
    double worst = 0;
    for (int i = 0; i < N * 10; i++) {
        CHECK(isfinite(a[i]));
        worst = fmax(worst, fabs((double)a[i] - (double)b[i]));
    }
    for (int j = 0; j < 10; j++) worst = fmax(worst, fabs((double)one[j] - (double)a[40 + j]));
    CHECK_MSG(worst <= 1e-5, "logits differ by %g between batch sizes", worst);
    CHECK_ABI(bl_capi_model_infer(small, NULL, 0, NULL));
    CHECK_ABI_ERR(bl_capi_model_infer(small, NULL, 3, a), 1, "3 examples");
    free(x);
    bl_capi_model_free(small);
    bl_capi_model_free(big);
    bl_capi_model_free(again);
}

static void test_config_json(void) {
    char *json = NULL, *norm = NULL;
    CHECK_ABI(bl_capi_training_config_default(&json));
    CHECK(json && strstr(json, "\"batch_size\":512"));
    CHECK_ABI(bl_capi_training_config_normalize("{\"epochs\": 3, \"model\": \"resnet34\"}", &norm));
    CHECK(norm && strstr(norm, "\"epochs\":3") && strstr(norm, "\"resnet34\"") &&
          strstr(norm, "\"width\":64"));
    bl_capi_free(json);
    bl_capi_free(norm);
    norm = NULL;
    CHECK_ABI_ERR(bl_capi_training_config_normalize("{\"epoch\": 3}", &norm), 4, "epoch");
    CHECK_ABI_ERR(bl_capi_training_config_normalize("{\"model\": \"vgg\"}", &norm), 1, "vgg");
    CHECK(norm == NULL);
}

static void test_sweep_grid(void) {
    char *grid = NULL;
    CHECK_ABI(bl_capi_sweep_grid("{}", NULL, 0, NULL, 0, NULL, 0, &grid));
    int configs = 0;
    for (const char *p = grid; p && (p = strstr(p, "\"experiment_id\"")); p++) configs++;
    CHECK_MSG(configs == 18, "%d configs in the default grid", configs);
    CHECK(grid && grid[0] == '[' && strstr(grid, "\"resnet34-lr0.0001-bs64\"") &&
          strstr(grid, "\"resnet18-lr0.01-bs16\""));
    bl_capi_free(grid);
    float lrs[] = {0.1f, 0.1f};
    CHECK_ABI_ERR(bl_capi_sweep_grid("{}", lrs, 2, NULL, 0, NULL, 0, &grid), 1, "resnet18-lr0.1-bs16");
}

static void test_datasets(void) {
    if (access(FASHION_DIR "/t10k-images-idx3-ubyte.gz", R_OK) != 0) SKIP("no Fashion-MNIST in " FASHION_DIR);
    bl_capi_dataset *ds = NULL;
    CHECK_ABI(bl_capi_dataset_load("fashion-mnist", NULL, 0, &ds));
    if (!ds) return;
    int64_t count;
    int c, h, w, k;
    bl_capi_dataset_shape(ds, &count, &c, &h, &w, &k);
    CHECK(count == 10000 && c == 1 && h == 28 && w == 28 && k == 10);
    CHECK(strcmp(bl_capi_dataset_class_name(ds, 9), "Ankle boot") == 0 &&
          !bl_capi_dataset_class_name(ds, 10));
    uint8_t images[2 * 28 * 28], labels[2];
    CHECK_ABI(bl_capi_dataset_read(ds, 0, 2, images, labels));
    CHECK(labels[0] == 9 && labels[1] == 2); /* the test split starts with an ankle boot, a pullover */
    CHECK_ABI_ERR(bl_capi_dataset_read(ds, 9999, 2, images, labels), 1, "outside the 10000");
    int oc, oh, ow;
    CHECK_ABI(bl_capi_example_shape("fashion-mnist", 1, 28, 28, &oc, &oh, &ow));
    CHECK(oc == 1 && oh == 32 && ow == 32);
    float out[2 * 32 * 32];
    CHECK_ABI(bl_capi_examples_from_records("fashion-mnist", images, 2, 1, 28, 28, out));
    /* Padding is raw pixel 0 normalized; the first image's pixel (0, 0) lands at (2, 2). */
    float pad = (0.0f - 0.2860f) / 0.3530f;
    CHECK_NEAR(out[0], pad, 1e-6);
    CHECK_NEAR(out[2 * 32 + 2], ((float)images[0] / 255.0f - 0.2860f) / 0.3530f, 1e-6);
    CHECK_ABI_ERR(bl_capi_examples_from_records("mnist", images, 2, 1, 28, 28, out), 1, "mnist");
    bl_capi_dataset_free(ds);
    CHECK_ABI_ERR(bl_capi_dataset_load("cifar10", "/nonexistent", 0, &ds), 6, "/nonexistent");
}

static void test_image(void) {
    /* A 4x4 RGB PNG whose pixel (x, y) is (60x, 60y, 200). */
    static const unsigned char png[] = {
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00,
        0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x04, 0x08, 0x02, 0x00, 0x00, 0x00, 0x26, 0x93, 0x09, 0x29, 0x00,
        0x00, 0x00, 0x29, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x0d, 0xc7, 0x31, 0x01, 0x00, 0x00, 0x0c, 0xc2,
        0x30, 0x84, 0x21, 0x0c, 0x61, 0x15, 0x51, 0x59, 0x5b, 0xbe, 0x24, 0xb1, 0x71, 0x91, 0x98, 0xd4, 0xd6,
        0x55, 0xfa, 0x99, 0x9d, 0x9b, 0xec, 0x83, 0xc5, 0x21, 0x78, 0x17, 0xf2, 0x17, 0xc1, 0x69, 0xaf, 0x69,
        0x50, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};
    float out[3 * 2 * 2];
    int rc = bl_capi_image_example(png, sizeof png, "tiny.png", 4, 2, out);
    if (rc == 5) SKIP("built without libpng: %s", bl_capi_last_error());
    CHECK_ABI(rc);
    /* Centre crop 2 of 4 starts at (1, 1): out (R, row 0, col 1) is pixel (2, 1), R = 120. */
    CHECK_NEAR(out[1], (120.0f / 255.0f - 0.485f) / 0.229f, 1e-5);
    CHECK_NEAR(out[4 + 2], (120.0f / 255.0f - 0.456f) / 0.224f, 1e-5); /* G, row 1, col 0: y = 2 */
    CHECK_ABI_ERR(bl_capi_image_example("GIF89a....", 10, "photo.gif", 4, 2, out), 4, "photo.gif");
    CHECK_ABI_ERR(bl_capi_image_example(png, sizeof png, "tiny.png", 1, 2, out), 1, "crop 2");
}

static void test_train_resume(void) {
    if (access(FASHION_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0)
        SKIP("no Fashion-MNIST in " FASHION_DIR);
    char dir[] = "/tmp/test_capi.XXXXXX";
    if (!mkdtemp(dir)) SKIP("mkdtemp failed");
    char config[2048];
    const char *tiny = "\"experiment_id\": \"tiny\", \"width\": 4, \"epochs\": 2, \"batch_size\": 32, "
                       "\"train_limit\": 256, \"test_limit\": 64, \"device\": \"cpu\", \"quiet\": true";
    snprintf(config, sizeof config, "{%s, \"output_dir\": \"%s\", \"stop_after_epochs\": 1}", tiny, dir);
    char *result = NULL;
    CHECK_ABI(bl_capi_train(config, &result));
    CHECK(result && strstr(result, "\"epochs\":1,") && strstr(result, "\"resumed\":false") &&
          strstr(result, "\"weights_path\":\"\""));
    bl_capi_free(result);
    result = NULL;
    snprintf(config, sizeof config, "{%s, \"output_dir\": \"%s\"}", tiny, dir);
    CHECK_ABI(bl_capi_train(config, &result));
    CHECK_MSG(result && strstr(result, "\"epochs\":2,") && strstr(result, "\"resumed\":true") &&
                  strstr(result, "tiny/model.safetensors"),
              "%s", result ? result : "(no result)");
    bl_capi_free(result);
    result = NULL;
    CHECK_ABI_ERR(bl_capi_train("{\"batch_size\": 1}", &result), 1, "batch size 1");
    CHECK(result == NULL);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

int main(void) {
    const char *root = getenv("BEAMLET_SOURCE_DIR");
    snprintf(weights, sizeof weights, "%s" WEIGHTS, root ? root : ".");
    RUN(test_version);
    RUN(test_devices);
    RUN(test_model);
    RUN(test_config_json);
    RUN(test_sweep_grid);
    RUN(test_datasets);
    RUN(test_image);
    RUN(test_train_resume);
    return bl_test_finish();
}
