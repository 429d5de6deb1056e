/* Training as a step: a tiny run on a generated Fashion-MNIST-shaped dataset learns, writes
 * its checkpoint, metrics and weights, and a run stopped after epoch 1 then resumed ends bit
 * for bit where the uninterrupted run does. Also config JSON and validation. Seed fixed. */
#include "bl_test.h"

#include <sys/stat.h>
#include <unistd.h>

#include "beamlet/ml.h"

#define SEED 5u
static char tmpdir[64];

/* 10 classes of 28x28 images: stripes whose direction and period encode the class (so random
 * crops and flips keep the class), plus noise. */
static void make_dataset(bl_dataset *ds, int64_t count, uint64_t seed) {
    memset(ds, 0, sizeof *ds);
    ds->count = count;
    ds->channels = 1;
    ds->height = ds->width = 28;
    ds->num_classes = 10;
    ds->class_names = bl_fashion_mnist_class_names;
    ds->images = malloc((size_t)count * 784);
    ds->labels = malloc((size_t)count);
    snprintf(ds->source, sizeof ds->source, "generated");
    bl_rng rng;
    bl_rng_seed(&rng, seed);
    for (int64_t i = 0; i < count; i++) {
        int k = (int)bl_rng_below(&rng, 10);
        ds->labels[i] = (uint8_t)k;
        for (int y = 0; y < 28; y++)
            for (int x = 0; x < 28; x++) {
                int v = (int)bl_rng_below(&rng, 60);
                int period = 3 + k / 2, along = k % 2 ? x : y;
                if (along % period < period / 2 + 1) v += 150;
                ds->images[i * 784 + y * 28 + x] = (uint8_t)(v > 255 ? 255 : v);
            }
    }
}

static bl_training_config tiny_config(const char *id) {
    bl_training_config c = bl_training_config_default();
    snprintf(c.experiment_id, sizeof c.experiment_id, "%s", id);
    snprintf(c.output_dir, sizeof c.output_dir, "%s", tmpdir);
    snprintf(c.device, sizeof c.device, "cpu_ref");
    c.width = 4;
    c.batch_size = 16;
    c.epochs = 3;
    c.learning_rate = 0.05f;
    c.seed = SEED;
    c.quiet = true;
    return c;
}

static bl_dataset train, test;

static bool same_weights(const char *a, const char *b) {
    bl_safetensors *fa, *fb;
    if (bl_safetensors_open(a, &fa) != BL_OK) return false;
    if (bl_safetensors_open(b, &fb) != BL_OK) return false;
    bool same = bl_safetensors_count(fa) == bl_safetensors_count(fb);
    for (size_t i = 0; same && i < bl_safetensors_count(fa); i++) {
        const bl_st_tensor *ta = bl_safetensors_at(fa, i), *tb = bl_safetensors_find(fb, ta->name);
        same = tb && ta->nbytes == tb->nbytes && memcmp(ta->data, tb->data, ta->nbytes) == 0;
        if (!same) fprintf(stderr, "  differs: %s\n", ta->name);
    }
    bl_safetensors_close(fa);
    bl_safetensors_close(fb);
    return same;
}

static void test_train_and_resume_bit_for_bit(void) {
    bl_training_config a = tiny_config("uninterrupted"), b = tiny_config("interrupted");
    bl_training_result ra, rb1, rb2;
    CHECK_OK(bl_train(&a, &train, &test, &ra));
    fprintf(stderr, "  uninterrupted: accuracy %.3f loss %.4f after %d epochs\n", ra.accuracy, ra.loss,
            ra.epochs);
    CHECK(ra.epochs == 3 && !ra.resumed);
    CHECK_MSG(ra.accuracy > 0.5, "a tiny ResNet should learn the stripes (accuracy %.3f)", ra.accuracy);
    CHECK(bl_file_exists(ra.weights_path) && bl_file_exists(ra.checkpoint_path));

    b.stop_after_epochs = 1; /* as if killed after the first epoch's checkpoint */
    CHECK_OK(bl_train(&b, &train, &test, &rb1));
    CHECK(rb1.epochs == 1 && rb1.weights_path[0] == '\0');
    b.stop_after_epochs = 0;
    CHECK_OK(bl_train(&b, &train, &test, &rb2));
    CHECK(rb2.resumed && rb2.epochs == 3);
    CHECK_MSG(rb2.accuracy == ra.accuracy && rb2.loss == ra.loss, "resumed %.6f/%.6f vs %.6f/%.6f",
              rb2.accuracy, rb2.loss, ra.accuracy, ra.loss);
    CHECK_MSG(same_weights(ra.weights_path, rb2.weights_path),
              "resumed weights differ from uninterrupted ones");
    /* metrics.jsonl holds one line per epoch, the resumed run's history included. */
    char path[700];
    snprintf(path, sizeof path, "%s/interrupted/metrics.jsonl", tmpdir);
    void *text;
    size_t len;
    CHECK_OK(bl_file_read_all(path, &text, &len));
    int lines = 0;
    for (size_t i = 0; i < len; i++) lines += ((char *)text)[i] == '\n';
    CHECK(lines == 3);
    free(text);

    /* The same experiment id with another recipe is refused, not silently mixed. */
    b.learning_rate = 0.1f;
    CHECK_ERR(bl_train(&b, &train, &test, &rb2), BL_ERR_INVALID_ARG,
              "different training config (learning_rate: 0.05 in the checkpoint, 0.1 now)");
    /* Another spelling of the output folder is the same experiment: it resumes. */
    b.learning_rate = 0.05f;
    snprintf(b.output_dir, sizeof b.output_dir, "%s/", tmpdir);
    CHECK_OK(bl_train(&b, &train, &test, &rb2));
    CHECK(rb2.resumed && rb2.epochs == 3);
}

static void test_config_json_and_validation(void) {
    bl_training_config c = tiny_config("json"), back;
    c.train_limit = 123;
    char *json;
    CHECK_OK(bl_training_config_to_json(&c, &json));
    CHECK_OK(bl_training_config_from_json(json, strlen(json), &back));
    CHECK(memcmp(&c, &back, sizeof c) == 0 ||
          (back.train_limit == 123 && strcmp(back.experiment_id, "json") == 0 &&
           back.learning_rate == c.learning_rate));
    free(json);
    const char *bad = "{\"experiment_id\":\"x\",\"learnig_rate\":0.1}";
    CHECK_ERR(bl_training_config_from_json(bad, strlen(bad), &back), BL_ERR_FORMAT,
              "unknown field 'learnig_rate'");
    const char *wrong_type = "{\"epochs\":\"ten\"}";
    CHECK_ERR(bl_training_config_from_json(wrong_type, strlen(wrong_type), &back), BL_ERR_FORMAT,
              "'epochs' must be an integer");
    bl_training_result r = {0}, rback;
    snprintf(r.experiment_id, sizeof r.experiment_id, "lr0.01-bs16");
    r.accuracy = 0.9125;
    r.epochs = 4;
    CHECK_OK(bl_training_result_to_json(&r, &json));
    CHECK_OK(bl_training_result_from_json(json, strlen(json), &rback));
    CHECK(rback.accuracy == r.accuracy && rback.epochs == 4 &&
          strcmp(rback.experiment_id, "lr0.01-bs16") == 0);
    free(json);

    c = tiny_config("v");
    c.batch_size = 1;
    CHECK_ERR(bl_training_config_validate(&c), BL_ERR_INVALID_ARG, "batch size 1");
    c = tiny_config("a/b");
    CHECK_ERR(bl_training_config_validate(&c), BL_ERR_INVALID_ARG, "without '/'");
    c = tiny_config("v");
    snprintf(c.model, sizeof c.model, "resnet50");
    CHECK_ERR(bl_training_config_validate(&c), BL_ERR_INVALID_ARG, "resnet50");
    c = tiny_config("v");
    snprintf(c.precision, sizeof c.precision, "bf16");
    CHECK_ERR(bl_training_config_validate(&c), BL_ERR_UNSUPPORTED, "bf16");
    c = tiny_config("big-batch");
    c.batch_size = 4096;
    bl_training_result r2;
    CHECK_ERR(bl_train(&c, &train, &test, &r2), BL_ERR_INVALID_ARG, "fewer than one batch of 4096");
}

int main(void) {
    fprintf(stderr, "seed %u\n", SEED);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/beamlet_trainer_XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    make_dataset(&train, 320, SEED);
    make_dataset(&test, 80, SEED + 1);
    RUN(test_train_and_resume_bit_for_bit);
    RUN(test_config_json_and_validation);
    bl_dataset_free(&train);
    bl_dataset_free(&test);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return bl_test_finish();
}
