/* Model weights through safetensors: save/load round trip (atomic, torchvision names,
 * num_batches_tracked), BF16/F16 weights converted on load, and refusals that name the file,
 * the tensor and the problem. */
#include "bl_test.h"

#include <unistd.h>

#include "beamlet/nn.h"

static bl_device *dev;

static bl_model *small_model(uint64_t seed) {
    bl_resnet_config cfg = bl_resnet_config_default();
    cfg.width = 4;
    cfg.stem = BL_RESNET_STEM_CIFAR;
    bl_model *m = NULL;
    CHECK_OK(bl_resnet_new(dev, &cfg, seed, &m));
    return m;
}

static double max_param_diff(bl_model *a, bl_model *b) {
    double worst = 0;
    for (int i = 0; i < bl_model_param_count(a); i++) {
        const bl_param_info *pa = bl_model_param(a, i), *pb = bl_model_param(b, i);
        const float *x = pa->value.data, *y = pb->value.data;
        for (int64_t j = 0; j < bl_tensor_numel(&pa->value); j++) worst = fmax(worst, fabs(x[j] - y[j]));
    }
    return worst;
}

static void test_round_trip(void) {
    bl_model *a = small_model(1), *b = small_model(2);
    CHECK(max_param_diff(a, b) > 0.01);
    bl_model_set_batches_tracked(a, 123);
    char path[] = "/tmp/beamlet_ckpt_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    const char *keys[] = {"recipe"}, *values[] = {"test"};
    CHECK_OK(bl_model_save(a, path, keys, values, 1));
    CHECK_OK(bl_model_load(b, path));
    CHECK(max_param_diff(a, b) == 0.0);
    CHECK(bl_model_batches_tracked(b) == 123);
    bl_safetensors *f;
    CHECK_OK(bl_safetensors_open(path, &f));
    CHECK(strcmp(bl_safetensors_metadata(f, "recipe"), "test") == 0);
    CHECK(strcmp(bl_safetensors_metadata(f, "beamlet_model"), "resnet18") == 0);
    const bl_st_tensor *t = bl_safetensors_find(f, "layer2.0.downsample.1.num_batches_tracked");
    CHECK(t && t->dtype == BL_I64 && t->ndim == 0);
    CHECK(bl_safetensors_find(f, "fc.bias") != NULL);
    bl_resnet_config cfg;
    CHECK_OK(bl_resnet_config_from_safetensors(f, "", &cfg));
    CHECK(cfg.depth == 18 && cfg.width == 4 && cfg.num_classes == 10 && cfg.in_channels == 3 &&
          cfg.stem == BL_RESNET_STEM_CIFAR);
    CHECK_ERR(bl_resnet_config_from_safetensors(f, "model/", &cfg), BL_ERR_FORMAT,
              "not a torchvision-layout ResNet");
    bl_safetensors_close(f);
    unlink(path);
    bl_model_free(a);
    bl_model_free(b);
}

/* Builds a file image with the model's tensors, letting `edit` change one of them. */
typedef enum {
    EDIT_NONE,
    EDIT_BF16,
    EDIT_I32,
    EDIT_EXTRA,
    EDIT_DROP
} edit_kind;

static bl_status write_variant(bl_model *m, edit_kind edit, const char *path) {
    bl_safetensors_writer *w;
    BL_TRY(bl_safetensors_writer_new(&w));
    bl_status s = BL_OK;
    for (int i = 0; i < bl_model_param_count(m) && s == BL_OK; i++) {
        const bl_param_info *p = bl_model_param(m, i);
        const bl_tensor *v = &p->value;
        int64_t n = bl_tensor_numel(v);
        bool target = strcmp(p->name, "layer1.0.conv2.weight") == 0;
        if (target && edit == EDIT_DROP) continue;
        if (target && (edit == EDIT_BF16 || edit == EDIT_I32)) {
            uint16_t *h = malloc(sizeof(uint16_t) * (size_t)n * 2);
            for (int64_t j = 0; j < n; j++) h[j] = bl_f32_to_bf16(((float *)v->data)[j]);
            s = bl_safetensors_writer_add(w, p->name, edit == EDIT_BF16 ? BL_BF16 : BL_I32, v->ndim, v->shape,
                                          h);
            free(h);
            continue;
        }
        s = bl_safetensors_writer_add(w, p->name, BL_F32, v->ndim, v->shape, v->data);
    }
    if (edit == EDIT_EXTRA && s == BL_OK) {
        float x = 1;
        int64_t one = 1;
        s = bl_safetensors_writer_add(w, "layer5.0.conv1.weight", BL_F32, 1, &one, &x);
    }
    if (s == BL_OK) s = bl_safetensors_writer_commit(w, path);
    bl_safetensors_writer_free(w);
    return s;
}

static void test_conversions_and_refusals(void) {
    bl_model *a = small_model(1), *b = small_model(2);
    char path[] = "/tmp/beamlet_ckpt_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    /* BF16 weights load, rounded: within bf16's precision of the originals. */
    CHECK_OK(write_variant(a, EDIT_BF16, path));
    CHECK_OK(bl_model_load(b, path));
    double d = max_param_diff(a, b);
    CHECK_MSG(d > 0 && d < 1e-2, "bf16 load differs by %g", d);
    CHECK_OK(write_variant(a, EDIT_I32, path));
    CHECK_ERR(bl_model_load(b, path), BL_ERR_FORMAT, "layer1.0.conv2.weight");
    CHECK_OK(write_variant(a, EDIT_EXTRA, path));
    CHECK_ERR(bl_model_load(b, path), BL_ERR_FORMAT, "tensor 'layer5.0.conv1.weight' is not a parameter");
    CHECK_OK(write_variant(a, EDIT_DROP, path));
    CHECK_ERR(bl_model_load(b, path), BL_ERR_FORMAT, "missing tensor 'layer1.0.conv2.weight'");
    CHECK(strstr(bl_last_error(), path) != NULL);
    /* A truncated file is refused by the reader, naming the file. */
    CHECK_OK(write_variant(a, EDIT_NONE, path));
    CHECK(truncate(path, 1000) == 0);
    CHECK_ERR(bl_model_load(b, path), BL_ERR_FORMAT, path);
    unlink(path);
    CHECK_ERR(bl_model_load(b, "/nonexistent/weights.safetensors"), BL_ERR_NOT_FOUND,
              "/nonexistent/weights.safetensors");
    bl_model_free(a);
    bl_model_free(b);
}

/* A file image holding only the tensors bl_resnet_config_from_safetensors looks at, with the
 * given shapes (zero-filled data), opened from memory as "crafted.safetensors". */
static bl_status config_from_shapes(const int64_t conv1[4], const int64_t fc[2], bl_resnet_config *cfg) {
    const char *names[3] = {"conv1.weight", "fc.weight", "layer4.0.conv1.weight"};
    int64_t layer4[1] = {0};
    const int64_t *shapes[3] = {conv1, fc, layer4};
    int ndims[3] = {4, 2, 1};
    bl_safetensors_writer *w;
    BL_TRY(bl_safetensors_writer_new(&w));
    bl_status s = BL_OK;
    for (int i = 0; i < 3 && s == BL_OK; i++) {
        int64_t n = 1;
        for (int d = 0; d < ndims[i]; d++) n *= shapes[i][d];
        void *zeros = calloc((size_t)n + 1, sizeof(float));
        s = bl_safetensors_writer_add(w, names[i], BL_F32, ndims[i], shapes[i], zeros);
        free(zeros);
    }
    void *image = NULL;
    size_t size = 0;
    if (s == BL_OK) s = bl_safetensors_writer_serialize(w, &image, &size);
    bl_safetensors_writer_free(w);
    bl_safetensors *f = NULL;
    if (s == BL_OK) s = bl_safetensors_open_memory(image, size, "crafted.safetensors", &f);
    if (s == BL_OK) s = bl_resnet_config_from_safetensors(f, "", cfg);
    bl_safetensors_close(f);
    free(image);
    return s;
}

/* The architecture comes from a file's shapes, so every field is range-checked before a model
 * is built from it: a dimension of 2^32 + 8 must not become width 8 by truncation. The
 * oversized shapes carry a zero dimension, so the file itself stays tiny and valid. */
static void test_config_from_hostile_shapes(void) {
    bl_resnet_config cfg;
    int64_t good_conv1[4] = {8, 3, 3, 3}, good_fc[2] = {10, 64};
    CHECK_OK(config_from_shapes(good_conv1, good_fc, &cfg));
    CHECK(cfg.width == 8 && cfg.in_channels == 3 && cfg.num_classes == 10 &&
          cfg.stem == BL_RESNET_STEM_CIFAR);
    int64_t wrap_width[4] = {4294967304LL, 0, 3, 3};
    CHECK_ERR(
        config_from_shapes(wrap_width, good_fc, &cfg), BL_ERR_FORMAT,
        "crafted.safetensors: conv1.weight [4294967304,0,3,3]: width 4294967304 is out of range (1 to 4096)");
    int64_t wide[4] = {5000, 3, 3, 3};
    CHECK_ERR(config_from_shapes(wide, good_fc, &cfg), BL_ERR_FORMAT,
              "conv1.weight [5000,3,3,3]: width 5000 is out of range (1 to 4096)");
    int64_t no_input[4] = {8, 0, 3, 3};
    CHECK_ERR(config_from_shapes(no_input, good_fc, &cfg), BL_ERR_FORMAT,
              "conv1.weight [8,0,3,3]: 0 input channels is out of range (1 to 4096)");
    int64_t wrap_classes[2] = {4294967306LL, 0};
    CHECK_ERR(
        config_from_shapes(good_conv1, wrap_classes, &cfg), BL_ERR_FORMAT,
        "crafted.safetensors: fc.weight [4294967306,0]: 4294967306 classes is out of range (1 to 1048576)");
    int64_t no_classes[2] = {0, 64};
    CHECK_ERR(config_from_shapes(good_conv1, no_classes, &cfg), BL_ERR_FORMAT,
              "fc.weight [0,64]: 0 classes is out of range");
    int64_t wrong_inputs[2] = {10, 100};
    CHECK_ERR(config_from_shapes(good_conv1, wrong_inputs, &cfg), BL_ERR_FORMAT,
              "fc.weight [10,100] takes 100 inputs, but conv1.weight's width 8 ends layer4 with 64 channels");
    int64_t oblong[4] = {8, 3, 3, 5};
    CHECK_ERR(config_from_shapes(oblong, good_fc, &cfg), BL_ERR_FORMAT,
              "conv1.weight [8,3,3,5]: kernel 3x5 is neither the ImageNet (7x7) nor the CIFAR (3x3) stem");
}

int main(void) {
    if (bl_device_get("cpu_ref", &dev) != BL_OK) return 1;
    RUN(test_round_trip);
    RUN(test_conversions_and_refusals);
    RUN(test_config_from_hostile_shapes);
    bl_device_release(dev);
    return bl_test_finish();
}
