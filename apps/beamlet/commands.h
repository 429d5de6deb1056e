/* The beamlet CLI's own commands (apps/beamlet/cmd_*.c); `infer`, `train` and `sweep` are the
 * learning path's stages (beamlet/stages.h). Each is a bl_command: its flags, and what it does
 * with them. */
#ifndef BEAMLET_APP_COMMANDS_H
#define BEAMLET_APP_COMMANDS_H

#include "beamlet/pipeline.h"

extern const bl_command beamlet_demo_command;
extern const bl_command beamlet_devices_command;
extern const bl_command beamlet_data_command;
extern const bl_command beamlet_bench_command;
extern const bl_command beamlet_cheatsheet_command;

#endif
