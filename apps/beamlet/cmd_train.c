/* beamlet train: one TrainingConfig from flags, trained on a device with a checkpoint every
 * epoch; re-running with the same --experiment_id resumes. Prints the TrainingResult as JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "beamlet/ml.h"
#include "cli.h"

static bl_status config_from_flags(const cli_flag *f, int n, bl_training_config *c) {
    *c = bl_training_config_default();
    long v;
    double x;
#define STR(field, flag) snprintf(c->field, sizeof c->field, "%s", cli_get(f, n, flag))
    STR(experiment_id, "experiment_id");
    STR(model, "model");
    STR(schedule, "schedule");
    STR(optimizer, "optimizer");
    STR(device, "device");
    STR(precision, "precision");
    STR(dataset, "dataset");
    STR(data_dir, "data_dir");
    STR(output_dir, "output_dir");
#undef STR
    BL_TRY(cli_get_int(f, n, "width", 1, 1024, &v));
    c->width = (int)v;
    BL_TRY(cli_get_int(f, n, "batch_size", 2, 65536, &v));
    c->batch_size = (int)v;
    BL_TRY(cli_get_int(f, n, "epochs", 1, 100000, &v));
    c->epochs = (int)v;
    BL_TRY(cli_get_int(f, n, "seed", 0, 1L << 40, &v));
    c->seed = (uint64_t)v;
    BL_TRY(cli_get_int(f, n, "train_limit", 0, 1L << 40, &v));
    c->train_limit = v;
    BL_TRY(cli_get_int(f, n, "test_limit", 0, 1L << 40, &v));
    c->test_limit = v;
    BL_TRY(cli_get_float(f, n, "learning_rate", 1e-9, 100, &x));
    c->learning_rate = (float)x;
    BL_TRY(cli_get_float(f, n, "weight_decay", 0, 1, &x));
    c->weight_decay = (float)x;
    BL_TRY(cli_get_float(f, n, "momentum", 0, 0.9999, &x));
    c->momentum = (float)x;
    BL_TRY(cli_get_float(f, n, "label_smoothing", 0, 0.9999, &x));
    c->label_smoothing = (float)x;
    return bl_training_config_validate(c);
}

int cmd_train(int argc, char **argv) {
    cli_flag flags[] = {
        {"experiment_id", "fashion-resnet18", "name of the run; checkpoints go to <output_dir>/<id>/"},
        {"model", "resnet18", "resnet18 or resnet34"},
        {"width", "64", "base channels (64 = torchvision)"},
        {"dataset", "fashion-mnist", "fashion-mnist or cifar10"},
        {"data_dir", "", "dataset location (default: its standard place)"},
        {"device", "auto", "auto, cpu, cpu_ref, cuda, cuda:N"},
        {"precision", "f32", "f32"},
        {"epochs", "15", "epochs"},
        {"batch_size", "512", "images per step"},
        {"learning_rate", "0.1", "peak learning rate"},
        {"schedule", "onecycle", "onecycle, cosine or constant"},
        {"optimizer", "sgd", "sgd (Nesterov momentum) or adamw"},
        {"momentum", "0.9", "SGD momentum"},
        {"weight_decay", "5e-4", "weight decay"},
        {"label_smoothing", "0", "label smoothing"},
        {"seed", "0", "seed for weights, data order and augmentation"},
        {"train_limit", "0", "use only the first N training images (0 = all)"},
        {"test_limit", "0", "use only the first N test images (0 = all)"},
        {"output_dir", "beamlet-out", "where checkpoints, metrics and weights go"},
    };
    int n = (int)(sizeof flags / sizeof flags[0]);
    bool help;
    bl_training_config c;
    if (cli_parse(argc, argv, 2, flags, n, &help) != BL_OK) {
        fprintf(stderr, "beamlet train: %s\n", bl_last_error());
        return 2;
    }
    if (help) {
        cli_usage("train", "Trains a ResNet with a checkpoint every epoch; re-running resumes.", flags, n);
        return 0;
    }
    if (config_from_flags(flags, n, &c) != BL_OK) {
        fprintf(stderr, "beamlet train: %s\n", bl_last_error());
        return 2;
    }
    bl_training_result r;
    if (bl_train(&c, NULL, NULL, &r) != BL_OK) {
        fprintf(stderr, "beamlet train: %s\n", bl_last_error());
        return 1;
    }
    char *json;
    if (bl_training_result_to_json(&r, &json) == BL_OK) {
        printf("%s\n", json);
        free(json);
    }
    printf("test accuracy %.2f%% after %d epochs on %s; weights: %s\n", 100 * r.accuracy, r.epochs, r.device,
           r.weights_path);
    return 0;
}
