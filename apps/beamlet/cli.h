/* Shared pieces of the beamlet CLI: Beam-style --name=value flags and the subcommands. */
#ifndef BEAMLET_APP_CLI_H
#define BEAMLET_APP_CLI_H

#include "beamlet/core.h"

typedef struct cli_flag {
    const char *name;  /* without the leading dashes */
    const char *value; /* default, replaced by the parsed value */
    const char *help;
} cli_flag;

/* Parses argv[first..] as --name=value (or --name value, or --flag for "true"). An unknown
 * flag is an error listing the valid ones; --help sets *help. */
bl_status cli_parse(int argc, char **argv, int first, cli_flag *flags, int nflags, bool *help);
void cli_usage(const char *command, const char *summary, const cli_flag *flags, int nflags);
const char *cli_get(const cli_flag *flags, int nflags, const char *name);
bl_status cli_get_int(const cli_flag *flags, int nflags, const char *name, long min, long max, long *out);
bl_status cli_get_float(const cli_flag *flags, int nflags, const char *name, double min, double max,
                        double *out);

int cmd_demo(int argc, char **argv);
int cmd_devices(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_infer(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_cheatsheet(int argc, char **argv);
/* The learning path's stage programs, run as subcommands (apps/beamlet/stage_*.c). */
int beamlet_stage_train_main(int argc, char **argv);
int beamlet_stage_sweep_main(int argc, char **argv);

#endif
