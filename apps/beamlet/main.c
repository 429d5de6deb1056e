/* The beamlet command-line tool: one entry point, one subcommand per task. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

/* Stage programs take argv as if they were run on their own: "beamlet train --x" -> "train --x". */
static int cmd_stage_train(int argc, char **argv) { return beamlet_stage_train_main(argc - 1, argv + 1); }
static int cmd_stage_sweep(int argc, char **argv) { return beamlet_stage_sweep_main(argc - 1, argv + 1); }

static const command commands[] = {
    {"demo", cmd_demo, "15-second demo: a narrow ResNet-18 learns generated images, the loss falls"},
    {"devices", cmd_devices, "list the devices beamlet can use"},
    {"infer", cmd_infer, "stages 1-2: run images through a ResNet with RunInference, predictions as JSON"},
    {"train", cmd_stage_train, "stage 3: train a ResNet in a pipeline (checkpoints every epoch, resumes)"},
    {"sweep", cmd_stage_sweep, "stage 4: a parallel hyperparameter sweep; the best model is deployed"},
    {"bench", cmd_bench,
     "benchmark suite on every device (img/s, training time, time to accuracy, first prediction) as JSON"},
    {"cheatsheet", cmd_cheatsheet,
     "cost-versus-speed table (Markdown) and SVG charts from bench results and docs/prices.json"},
    {"data", cmd_data, "inspect a dataset: splits, class counts, a grid of samples as PNG"},
};

static void usage(void) {
    printf("usage: beamlet <command> [--name=value ...]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        printf("  %-10s %s\n", commands[i].name, commands[i].summary);
    printf("\n'beamlet <command> --help' describes a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage();
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc, argv);
    fprintf(stderr, "beamlet: unknown command '%s'\n", argv[1]);
    usage();
    return 2;
}
