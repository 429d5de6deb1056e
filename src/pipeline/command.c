/* A program's main over bl_options (pipeline.h, bl_command): one way for the CLI's commands and
 * the example programs to take flags, answer --help and turn a status into an exit code. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "beamlet/pipeline.h"

static bl_status apply_defaults(bl_options *opts, const char *const *defaults) {
    for (int i = 0; defaults && defaults[i]; i++) {
        const char *eq = strchr(defaults[i], '=');
        char name[128];
        if (!eq || (size_t)(eq - defaults[i]) >= sizeof name)
            return bl_error(BL_ERR_INTERNAL, "default '%s' is not name=value", defaults[i]);
        memcpy(name, defaults[i], (size_t)(eq - defaults[i]));
        name[eq - defaults[i]] = '\0';
        BL_TRY(bl_options_set_default(opts, name, eq + 1));
    }
    return BL_OK;
}

static void usage(FILE *f, const bl_command *cmd, const char *program, const bl_options *opts) {
    char *text = bl_options_usage(opts);
    fprintf(f, "usage: %s [--name=value ...]\n\n%s\n\noptions:\n%s", program, cmd->summary, text ? text : "");
    free(text);
}

int bl_command_main(const bl_command *cmd, const char *program, const char *const *defaults, int argc,
                    char **argv) {
    bl_options *opts = NULL;
    bl_status s = cmd->pipeline_flags ? bl_options_new(&opts) : bl_options_new_plain(&opts);
    if (s == BL_OK) s = cmd->add_options(opts);
    if (s == BL_OK) s = apply_defaults(opts, defaults);
    if (s != BL_OK) {
        fprintf(stderr, "%s: %s\n", program, bl_last_error());
        bl_options_free(opts);
        return 1;
    }
    int rc = 0;
    if (bl_options_parse(opts, argc, argv) != BL_OK) {
        fprintf(stderr, "%s: %s\n", program, bl_last_error());
        usage(stderr, cmd, program, opts);
        rc = 2;
    } else if (bl_options_help(opts)) {
        usage(stdout, cmd, program, opts);
    } else if ((s = cmd->run(opts)) != BL_OK) {
        fprintf(stderr, "%s: %s\n", program, bl_last_error());
        rc = s == BL_ERR_INVALID_ARG ? 2 : 1;
    }
    bl_options_free(opts);
    return rc;
}
