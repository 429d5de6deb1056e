/* Beam-style flags for the CLI: --name=value, with every flag documented for --help. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cli_flag *find(cli_flag *flags, int nflags, const char *name, size_t len) {
    for (int i = 0; i < nflags; i++)
        if (strlen(flags[i].name) == len && strncmp(flags[i].name, name, len) == 0) return &flags[i];
    return NULL;
}

bl_status cli_parse(int argc, char **argv, int first, cli_flag *flags, int nflags, bool *help) {
    *help = false;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *help = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0)
            return bl_error(BL_ERR_INVALID_ARG, "unexpected argument '%s' (flags look like --name=value)", a);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        cli_flag *f = find(flags, nflags, name, len);
        if (!f) {
            char valid[1024] = "";
            size_t used = 0;
            for (int k = 0; k < nflags && used < sizeof valid; k++)
                used += (size_t)snprintf(valid + used, sizeof valid - used, "%s--%s", k ? ", " : "",
                                         flags[k].name);
            return bl_error(BL_ERR_INVALID_ARG, "unknown option '--%.*s' (valid: %s, --help)", (int)len, name,
                            valid);
        }
        if (eq) {
            f->value = eq + 1;
        } else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
            f->value = argv[++i];
        } else {
            f->value = "true";
        }
    }
    return BL_OK;
}

void cli_usage(const char *command, const char *summary, const cli_flag *flags, int nflags) {
    printf("usage: beamlet %s [--name=value ...]\n\n%s\n\noptions:\n", command, summary);
    for (int i = 0; i < nflags; i++)
        printf("  --%-18s %s (default: %s)\n", flags[i].name, flags[i].help,
               flags[i].value && *flags[i].value ? flags[i].value : "none");
}

const char *cli_get(const cli_flag *flags, int nflags, const char *name) {
    for (int i = 0; i < nflags; i++)
        if (strcmp(flags[i].name, name) == 0) return flags[i].value;
    return NULL;
}

bl_status cli_get_int(const cli_flag *flags, int nflags, const char *name, long min, long max, long *out) {
    const char *v = cli_get(flags, nflags, name);
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || errno || x < min || x > max)
        return bl_error(BL_ERR_INVALID_ARG, "--%s=%s: expected an integer in [%ld, %ld]", name, v ? v : "",
                        min, max);
    *out = x;
    return BL_OK;
}

bl_status cli_get_float(const cli_flag *flags, int nflags, const char *name, double min, double max,
                        double *out) {
    const char *v = cli_get(flags, nflags, name);
    char *end;
    errno = 0;
    double x = v ? strtod(v, &end) : 0;
    if (!v || !*v || *end || errno || !(x >= min && x <= max))
        return bl_error(BL_ERR_INVALID_ARG, "--%s=%s: expected a number in [%g, %g]", name, v ? v : "", min,
                        max);
    *out = x;
    return BL_OK;
}
