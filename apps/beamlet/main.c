/* The beamlet command-line tool: one entry point, one subcommand per task. */
#include <stdio.h>
#include <string.h>

#include "beamlet/stages.h"
#include "commands.h"

typedef struct command {
    const char *name;
    const bl_command *cmd;
    const char *summary;
} command;

static const command commands[] = {
    {"demo", &beamlet_demo_command,
     "15-second demo: a narrow ResNet-18 learns generated images, the loss falls"},
    {"devices", &beamlet_devices_command, "list the devices beamlet can use"},
    {"infer", &bl_stage_infer_command,
     "stages 1-2: run images through a ResNet with RunInference, predictions as JSON"},
    {"train", &bl_stage_train_command,
     "stage 3: train a ResNet in a pipeline (checkpoints every epoch, resumes)"},
    {"sweep", &bl_stage_sweep_command,
     "stage 4: a parallel hyperparameter sweep; the best model is deployed"},
    {"bench", &beamlet_bench_command,
     "benchmark suite on every device (img/s, training time, time to accuracy, first prediction) as JSON"},
    {"cheatsheet", &beamlet_cheatsheet_command,
     "cost-versus-speed table (Markdown) and SVG charts from bench results and docs/prices.json"},
    {"data", &beamlet_data_command, "inspect a dataset: splits, class counts, a grid of samples as PNG"},
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
        if (strcmp(argv[1], commands[i].name) == 0) {
            char program[64];
            snprintf(program, sizeof program, "beamlet %s", commands[i].name);
            /* The command sees its own name as argv[0]: "beamlet infer --x" -> "infer --x". */
            return bl_command_main(commands[i].cmd, program, NULL, argc - 1, argv + 1);
        }
    fprintf(stderr, "beamlet: unknown command '%s'\n", argv[1]);
    usage();
    return 2;
}
