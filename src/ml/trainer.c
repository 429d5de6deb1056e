/* Training as a step: a config in, a trained model and a result out, with an atomic
 * checkpoint every epoch. The data order and augmentation of epoch e come from a stream forked
 * from (seed, e), so a run resumed from the checkpoint after epoch e replays exactly what an
 * uninterrupted run would have done: on the CPU, at the same thread count, the final weights
 * match bit for bit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "beamlet/json.h"
#include "beamlet/ml.h"

typedef struct epoch_record {
    double loss, accuracy, seconds;
} epoch_record;

typedef struct trainer {
    const bl_training_config *c;
    bl_dataset train, test; /* views (possibly limited) */
    bl_batch_transform t_train, t_test;
    int channels, height, width;
    bl_device *dev;
    bl_model *model;
    bl_optimizer *opt;
    bl_train_batch batch;
    float *host_x;
    int32_t *host_y;
    float *host_logits;
    int64_t *order;
    char dir[BL_ML_PATH_MAX], ckpt[BL_ML_PATH_MAX], weights[BL_ML_PATH_MAX], metrics[BL_ML_PATH_MAX];
    char *config_json;
    epoch_record *history;
    int epochs_done;
    bool resumed;
} trainer;

static bl_status load_datasets(trainer *t, const bl_dataset *train, const bl_dataset *test,
                               bl_dataset *owned_train, bl_dataset *owned_test) {
    const bl_training_config *c = t->c;
    const char *dir = c->data_dir[0] ? c->data_dir : NULL;
    if (!train) {
        BL_TRY(bl_dataset_load(c->dataset, dir, true, owned_train));
        train = owned_train;
    }
    if (!test) {
        BL_TRY(bl_dataset_load(c->dataset, dir, false, owned_test));
        test = owned_test;
    }
    t->train = *train;
    t->test = *test;
    if (c->train_limit > 0 && c->train_limit < t->train.count) t->train.count = c->train_limit;
    if (c->test_limit > 0 && c->test_limit < t->test.count) t->test.count = c->test_limit;
    BL_TRY(bl_dataset_transform(c->dataset, true, &t->t_train));
    BL_TRY(bl_dataset_transform(c->dataset, false, &t->t_test));
    BL_TRY(bl_batch_transform_shape(&t->train, &t->t_train, &t->channels, &t->height, &t->width));
    if (t->test.num_classes != t->train.num_classes || t->test.channels != t->train.channels ||
        t->test.height != t->train.height || t->test.width != t->train.width)
        return bl_error(BL_ERR_INVALID_ARG, "%s and %s disagree on classes or image size", t->train.source,
                        t->test.source);
    if (t->train.count < c->batch_size)
        return bl_error(BL_ERR_INVALID_ARG, "%s: %lld training images, fewer than one batch of %d",
                        t->train.source, (long long)t->train.count, c->batch_size);
    return BL_OK;
}

/* dst = a/b, refusing paths that do not fit rather than truncating them. */
static bl_status join_path(char dst[BL_ML_PATH_MAX], const char *a, const char *b) {
    int n = snprintf(dst, BL_ML_PATH_MAX, "%s/%s", a, b);
    if (n < 0 || n >= BL_ML_PATH_MAX)
        return bl_error(BL_ERR_INVALID_ARG, "path %s/%s is longer than %d bytes", a, b, BL_ML_PATH_MAX - 1);
    return BL_OK;
}

static bl_status setup(trainer *t) {
    const bl_training_config *c = t->c;
    bl_device_request req = {c->device, -1, c->allow_cpu_fallback, BL_F32};
    BL_TRY(bl_device_open(&req, &t->dev));
    bl_resnet_config rc = bl_resnet_config_default();
    rc.depth = strcmp(c->model, "resnet34") == 0 ? 34 : 18;
    rc.width = c->width;
    rc.num_classes = t->train.num_classes;
    rc.in_channels = t->channels;
    rc.stem = BL_RESNET_STEM_CIFAR; /* 32x32 images: the CIFAR stem keeps the resolution */
    BL_TRY(bl_resnet_new(t->dev, &rc, c->seed, &t->model));
    BL_TRY(bl_model_plan(t->model, c->batch_size, t->height, t->width, true));
    bl_optimizer_config oc =
        strcmp(c->optimizer, "adamw") == 0
            ? bl_optimizer_config_adamw(c->learning_rate, c->weight_decay)
            : bl_optimizer_config_sgd(c->learning_rate, c->momentum, c->weight_decay, c->momentum > 0);
    BL_TRY(bl_optimizer_new(t->model, &oc, &t->opt));
    BL_TRY(bl_train_batch_alloc(t->dev, c->batch_size, t->channels, t->height, t->width, &t->batch));
    size_t per = (size_t)t->channels * t->height * t->width;
    t->host_x = malloc(sizeof(float) * per * (size_t)c->batch_size);
    t->host_y = malloc(sizeof(int32_t) * (size_t)c->batch_size);
    t->host_logits = malloc(sizeof(float) * (size_t)(c->batch_size * t->train.num_classes));
    t->order =
        malloc(sizeof(int64_t) * (size_t)(t->train.count > t->test.count ? t->train.count : t->test.count));
    t->history = calloc((size_t)c->epochs, sizeof(epoch_record));
    if (!t->host_x || !t->host_y || !t->host_logits || !t->order || !t->history)
        return bl_error(BL_ERR_OUT_OF_MEMORY, "trainer: host buffers");
    BL_TRY(join_path(t->dir, c->output_dir, c->experiment_id));
    BL_TRY(join_path(t->ckpt, t->dir, "checkpoint.safetensors"));
    BL_TRY(join_path(t->weights, t->dir, "model.safetensors"));
    BL_TRY(join_path(t->metrics, t->dir, "metrics.jsonl"));
    BL_TRY(bl_mkdirs(t->dir));
    /* The config as it decides the result: fields that only steer this run are left out, so a
     * resumed run with another stop point or verbosity still matches its checkpoint. */
    bl_training_config key = *c;
    key.stop_after_epochs = 0;
    key.quiet = false;
    snprintf(key.device, sizeof key.device, "%s", "");
    key.allow_cpu_fallback = false;
    /* Where the files are is not what they are: a resumed run may spell the paths another way. */
    key.output_dir[0] = '\0';
    key.data_dir[0] = '\0';
    return bl_training_config_to_json(&key, &t->config_json);
}

/* ---- checkpoints ---------------------------------------------------------------------------- */

static bl_status write_checkpoint(trainer *t) {
    bl_safetensors_writer *w;
    BL_TRY(bl_safetensors_writer_new(&w));
    bl_status s = bl_model_write_state(t->model, w, "model/");
    float *host = NULL;
    for (int i = 0; s == BL_OK && i < bl_optimizer_state_count(t->opt); i++) {
        const char *name;
        bl_tensor st = bl_optimizer_state(t->opt, i, &name);
        char full[64];
        snprintf(full, sizeof full, "optimizer/%s", name);
        host = realloc(host, bl_tensor_nbytes(&st));
        if (!host) s = bl_error(BL_ERR_OUT_OF_MEMORY, "checkpoint staging");
        if (s == BL_OK) s = bl_tensor_copy_to_host(&st, host);
        if (s == BL_OK) s = bl_safetensors_writer_add(w, full, BL_F32, 1, st.shape, host);
    }
    free(host);
    int64_t steps = bl_optimizer_steps_taken(t->opt), epoch = t->epochs_done, one = 1;
    if (s == BL_OK) s = bl_safetensors_writer_add(w, "optimizer/steps", BL_I64, 1, &one, &steps);
    if (s == BL_OK) s = bl_safetensors_writer_add(w, "epoch", BL_I64, 1, &one, &epoch);
    /* Per-epoch metrics so a resumed run reports the whole history. */
    int64_t hshape[2] = {t->epochs_done, 3};
    if (s == BL_OK && t->epochs_done > 0) {
        float *hf = malloc(sizeof(float) * 3 * (size_t)t->epochs_done);
        for (int e = 0; hf && e < t->epochs_done; e++) {
            hf[3 * e] = (float)t->history[e].loss;
            hf[3 * e + 1] = (float)t->history[e].accuracy;
            hf[3 * e + 2] = (float)t->history[e].seconds;
        }
        s = hf ? bl_safetensors_writer_add(w, "history", BL_F32, 2, hshape, hf)
               : bl_error(BL_ERR_OUT_OF_MEMORY, "history");
        free(hf);
    }
    if (s == BL_OK) s = bl_safetensors_writer_set_metadata(w, "beamlet_checkpoint", "1");
    if (s == BL_OK) s = bl_safetensors_writer_set_metadata(w, "config", t->config_json);
    if (s == BL_OK) s = bl_safetensors_writer_commit(w, t->ckpt);
    bl_safetensors_writer_free(w);
    return s == BL_OK ? s : bl_error_context(s, "writing checkpoint %s", t->ckpt);
}

/* "learning_rate: 0.1 in the checkpoint, 0.05 now; ..." for the fields that differ. */
static void describe_difference(const char *old_json, const char *new_json, char *out, size_t size) {
    snprintf(out, size, "the checkpoint has no config");
    bl_json *a = NULL, *b = NULL;
    if (!old_json || bl_json_parse(old_json, strlen(old_json), &a) != BL_OK ||
        bl_json_parse(new_json, strlen(new_json), &b) != BL_OK) {
        bl_json_free(a);
        return;
    }
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < bl_json_len(b) && used < size; i++) {
        const char *key;
        const bl_json *nv = bl_json_object_at(b, i, &key), *ov = bl_json_object_get(a, key);
        char ns[96], os[96];
        bl_json_type t = bl_json_type_of(nv);
        if (t == BL_JSON_STRING)
            snprintf(ns, sizeof ns, "'%s'", bl_json_string(nv));
        else if (t == BL_JSON_NUMBER)
            snprintf(ns, sizeof ns, "%g", bl_json_number(nv));
        else
            snprintf(ns, sizeof ns, "%s", bl_json_bool(nv) ? "true" : "false");
        if (!ov)
            snprintf(os, sizeof os, "missing");
        else if (bl_json_type_of(ov) == BL_JSON_STRING)
            snprintf(os, sizeof os, "'%s'", bl_json_string(ov));
        else if (bl_json_type_of(ov) == BL_JSON_NUMBER)
            snprintf(os, sizeof os, "%g", bl_json_number(ov));
        else
            snprintf(os, sizeof os, "%s", bl_json_bool(ov) ? "true" : "false");
        if (strcmp(ns, os) != 0)
            used += (size_t)snprintf(out + used, size - used, "%s%s: %s in the checkpoint, %s now",
                                     used ? "; " : "", key, os, ns);
    }
    if (!out[0]) snprintf(out, size, "fields differ in form only");
    bl_json_free(a);
    bl_json_free(b);
}

static bl_status read_checkpoint(trainer *t) {
    if (!bl_file_exists(t->ckpt)) return BL_OK;
    bl_safetensors *f;
    BL_TRY(bl_safetensors_open(t->ckpt, &f));
    bl_status s = BL_OK;
    const char *cfg = bl_safetensors_metadata(f, "config");
    if (!cfg || strcmp(cfg, t->config_json) != 0) {
        char diff[512];
        describe_difference(cfg, t->config_json, diff, sizeof diff);
        s = bl_error(BL_ERR_INVALID_ARG,
                     "%s was written for a different training config (%s); use another "
                     "experiment id, or delete the folder to start over",
                     t->ckpt, diff);
    }
    if (s == BL_OK) s = bl_model_load_state(t->model, f, "model/");
    for (int i = 0; s == BL_OK && i < bl_optimizer_state_count(t->opt); i++) {
        const char *name;
        bl_tensor st = bl_optimizer_state(t->opt, i, &name);
        char full[64];
        snprintf(full, sizeof full, "optimizer/%s", name);
        float *host = malloc(bl_tensor_nbytes(&st));
        s = host ? bl_safetensors_read_f32(f, full, 1, st.shape, host)
                 : bl_error(BL_ERR_OUT_OF_MEMORY, "staging");
        if (s == BL_OK) s = bl_tensor_copy_from_host(&st, host);
        free(host);
    }
    const bl_st_tensor *steps = bl_safetensors_find(f, "optimizer/steps"),
                       *epoch = bl_safetensors_find(f, "epoch");
    if (s == BL_OK && (!steps || !epoch || steps->dtype != BL_I64 || epoch->dtype != BL_I64 ||
                       steps->nbytes != sizeof(int64_t) || epoch->nbytes != sizeof(int64_t)))
        s = bl_error(BL_ERR_FORMAT, "%s: 'optimizer/steps' and 'epoch' must be one I64 each", t->ckpt);
    if (s == BL_OK) {
        int64_t e, st, per_epoch = t->train.count / t->c->batch_size;
        memcpy(&e, epoch->data, sizeof e);
        memcpy(&st, steps->data, sizeof st);
        /* Both must describe the same point of this config's schedule. */
        if (e < 0 || e > t->c->epochs)
            s = bl_error(BL_ERR_FORMAT, "%s: epoch %lld out of range [0, %d]", t->ckpt, (long long)e,
                         t->c->epochs);
        else if (st != e * per_epoch)
            s = bl_error(BL_ERR_FORMAT, "%s: %lld optimizer steps after %lld epochs, expected %lld", t->ckpt,
                         (long long)st, (long long)e, (long long)(e * per_epoch));
        if (s == BL_OK) {
            bl_optimizer_set_steps_taken(t->opt, st);
            t->epochs_done = (int)e;
        }
    }
    if (s == BL_OK && t->epochs_done > 0) {
        int64_t hshape[2] = {t->epochs_done, 3};
        float *hf = malloc(sizeof(float) * 3 * (size_t)t->epochs_done);
        s = hf ? bl_safetensors_read_f32(f, "history", 2, hshape, hf)
               : bl_error(BL_ERR_OUT_OF_MEMORY, "history");
        for (int e = 0; s == BL_OK && e < t->epochs_done; e++)
            t->history[e] = (epoch_record){hf[3 * e], hf[3 * e + 1], hf[3 * e + 2]};
        free(hf);
    }
    bl_safetensors_close(f);
    if (s == BL_OK) t->resumed = true;
    return s;
}

static bl_status write_metrics(trainer *t) {
    bl_json_writer *w;
    BL_TRY(bl_json_writer_new(&w));
    bl_buf out = {0};
    bl_status s = BL_OK;
    for (int e = 0; s == BL_OK && e < t->epochs_done; e++) {
        bl_json_writer_reset(w);
        bl_json_write_begin_object(w);
        bl_json_write_key(w, "experiment_id");
        bl_json_write_string(w, t->c->experiment_id);
        bl_json_write_key(w, "epoch");
        bl_json_write_int(w, e + 1);
        bl_json_write_key(w, "train_loss");
        bl_json_write_double(w, t->history[e].loss);
        bl_json_write_key(w, "test_accuracy");
        bl_json_write_double(w, t->history[e].accuracy);
        bl_json_write_key(w, "seconds");
        bl_json_write_double(w, t->history[e].seconds);
        bl_json_write_end_object(w);
        const char *text;
        size_t len;
        s = bl_json_writer_finish(w, &text, &len);
        if (s == BL_OK) s = bl_buf_append(&out, text, len);
        if (s == BL_OK) s = bl_buf_append(&out, "\n", 1);
    }
    if (s == BL_OK) s = bl_file_write_atomic(t->metrics, out.data ? (const void *)out.data : "", out.len);
    bl_buf_free(&out);
    bl_json_writer_free(w);
    return s;
}

/* ---- the loop ------------------------------------------------------------------------------- */

static bl_status evaluate(trainer *t, double *accuracy) {
    int64_t correct = 0, n = t->test.count, B = t->c->batch_size;
    int classes = t->test.num_classes;
    for (int64_t i = 0; i < n; i++) t->order[i] = i;
    for (int64_t start = 0; start < n; start += B) {
        int nb = (int)(n - start < B ? n - start : B);
        BL_TRY(bl_dataset_batch_f32(&t->test, t->order + start, nb, &t->t_test, NULL, t->host_x, t->host_y));
        bl_tensor logits;
        BL_TRY(bl_train_batch_upload(&t->batch, t->host_x, NULL, nb));
        BL_TRY(bl_model_forward(t->model, &t->batch.x, BL_FORWARD_EVAL, &logits));
        BL_TRY(bl_tensor_download_f32(&logits, t->host_logits));
        for (int i = 0; i < nb; i++) {
            int best = 0;
            for (int k = 1; k < classes; k++)
                if (t->host_logits[i * classes + k] > t->host_logits[i * classes + best]) best = k;
            correct += best == t->host_y[i];
        }
    }
    *accuracy = n ? (double)correct / (double)n : 0.0;
    return BL_OK;
}

static bl_status train_epoch(trainer *t, int epoch, const bl_lr_schedule *sched, double *mean_loss) {
    const bl_training_config *c = t->c;
    bl_rng base, rng;
    bl_rng_seed(&base, c->seed);
    rng = bl_rng_fork(&base, (uint64_t)epoch + 1);
    int64_t n = t->train.count;
    for (int64_t i = 0; i < n; i++) t->order[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)bl_rng_below(&rng, (uint64_t)(i + 1)), tmp = t->order[i];
        t->order[i] = t->order[j];
        t->order[j] = tmp;
    }
    /* The last partial batch is dropped: batch norm needs a full, representative batch. */
    int64_t steps = n / c->batch_size;
    bl_progress bar;
    char label[96];
    snprintf(label, sizeof label, "%s epoch %d/%d", c->experiment_id, epoch + 1, c->epochs);
    if (!c->quiet) bl_progress_begin(&bar, label, steps);
    double sum = 0;
    for (int64_t s = 0; s < steps; s++) {
        BL_TRY(bl_dataset_batch_f32(&t->train, t->order + s * c->batch_size, c->batch_size, &t->t_train, &rng,
                                    t->host_x, t->host_y));
        float lr = bl_lr_schedule_at(sched, bl_optimizer_steps_taken(t->opt)), l;
        BL_TRY(bl_train_batch_upload(&t->batch, t->host_x, t->host_y, c->batch_size));
        BL_TRY(bl_train_step(t->model, t->opt, &t->batch, c->label_smoothing, lr));
        BL_TRY(bl_train_batch_loss(&t->batch, &l));
        if (!isfinite(l))
            return bl_error(BL_ERR_INVALID_ARG,
                            "%s: the loss became %g at epoch %d step %lld (learning rate %g "
                            "too high, or a label outside 0..%d?)",
                            c->experiment_id, (double)l, epoch + 1, (long long)s + 1, (double)lr,
                            t->train.num_classes - 1);
        sum += l;
        if (!c->quiet) {
            char suffix[48];
            snprintf(suffix, sizeof suffix, "loss %.4f lr %.4g", sum / (double)(s + 1), (double)lr);
            bl_progress_step(&bar, 1, suffix);
        }
    }
    if (!c->quiet) bl_progress_end(&bar);
    *mean_loss = sum / (double)steps;
    return BL_OK;
}

static void cleanup(trainer *t) {
    bl_train_batch_release(&t->batch);
    bl_optimizer_free(t->opt);
    bl_model_free(t->model);
    if (t->dev) bl_device_release(t->dev);
    free(t->host_x);
    free(t->host_y);
    free(t->host_logits);
    free(t->order);
    free(t->history);
    free(t->config_json);
}

bl_status bl_train(const bl_training_config *c, const bl_dataset *train, const bl_dataset *test,
                   bl_training_result *r) {
    memset(r, 0, sizeof *r);
    BL_TRY(bl_training_config_validate(c));
    trainer t;
    memset(&t, 0, sizeof t);
    t.c = c;
    bl_dataset owned_train, owned_test;
    memset(&owned_train, 0, sizeof owned_train);
    memset(&owned_test, 0, sizeof owned_test);
    double t0 = bl_time_now();
    int64_t images = 0;
    bl_status s = load_datasets(&t, train, test, &owned_train, &owned_test);
    if (s == BL_OK) s = setup(&t);
    if (s == BL_OK) s = read_checkpoint(&t);
    bl_lr_schedule_kind kind = BL_LR_CONSTANT;
    if (s == BL_OK) s = bl_lr_schedule_parse(c->schedule, &kind);
    bl_lr_schedule sched = {kind, c->learning_rate, (t.train.count / c->batch_size) * (int64_t)c->epochs};
    if (s == BL_OK && t.resumed && !c->quiet)
        bl_log_info("%s: resuming from %s after epoch %d", c->experiment_id, t.ckpt, t.epochs_done);
    int run_epochs = 0;
    while (s == BL_OK && t.epochs_done < c->epochs) {
        if (c->stop_after_epochs > 0 && run_epochs >= c->stop_after_epochs) break;
        double e0 = bl_time_now(), loss = 0, acc = 0;
        s = train_epoch(&t, t.epochs_done, &sched, &loss);
        if (s == BL_OK) s = evaluate(&t, &acc);
        if (s != BL_OK) break;
        images += (t.train.count / c->batch_size) * c->batch_size;
        t.history[t.epochs_done] = (epoch_record){loss, acc, bl_time_now() - e0};
        t.epochs_done++;
        run_epochs++;
        s = write_checkpoint(&t);
        if (s == BL_OK) s = write_metrics(&t);
        if (s == BL_OK && !c->quiet)
            printf("%s: epoch %d/%d  train loss %.4f  test accuracy %.2f%%  (%.1f s)\n", c->experiment_id,
                   t.epochs_done, c->epochs, loss, 100.0 * acc, bl_time_now() - e0);
        if (s == BL_OK && !c->quiet) fflush(stdout); /* a log file sees each epoch as it ends */
    }
    if (s == BL_OK && t.epochs_done == c->epochs) {
        char acc[32];
        snprintf(acc, sizeof acc, "%.6f", t.history[c->epochs - 1].accuracy);
        const char *keys[] = {"config", "test_accuracy"}, *values[] = {t.config_json, acc};
        s = bl_model_save(t.model, t.weights, keys, values, 2);
    }
    if (s == BL_OK) {
        snprintf(r->experiment_id, sizeof r->experiment_id, "%s", c->experiment_id);
        snprintf(r->model, sizeof r->model, "%s", c->model);
        r->learning_rate = c->learning_rate;
        r->batch_size = c->batch_size;
        r->epochs = t.epochs_done;
        if (t.epochs_done > 0) {
            r->accuracy = t.history[t.epochs_done - 1].accuracy;
            r->loss = t.history[t.epochs_done - 1].loss;
        }
        r->wall_time_s = bl_time_now() - t0;
        r->images_per_s = images > 0 ? (double)images / r->wall_time_s : 0;
        snprintf(r->device, sizeof r->device, "%s", bl_device_name(t.dev));
        memcpy(r->checkpoint_path, t.ckpt, sizeof r->checkpoint_path);
        if (t.epochs_done == c->epochs) memcpy(r->weights_path, t.weights, sizeof r->weights_path);
        r->resumed = t.resumed;
    }
    cleanup(&t);
    if (!train) bl_dataset_free(&owned_train);
    if (!test) bl_dataset_free(&owned_test);
    return s == BL_OK ? s : bl_error_context(s, "training %s", c->experiment_id);
}
