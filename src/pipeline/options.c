/* Pipeline options in Beam's `--name=value` style. Built-in flags are validated when set, so a
 * bad value fails at parse time with the flag's name, and an unknown flag fails with the list of
 * valid ones rather than being ignored (a typo in --num_wrokers should not run on one core). */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipeline/internal.h"

typedef struct opt {
    char *name, *value, *def, *help;
    bool builtin;
    bool given; /* set by parse or bl_options_set, not left at (or set as) the default */
} opt;

struct bl_options {
    opt *o;
    int n, cap;
    bool help; /* --help or -h was given */
};

static const struct {
    const char *name, *def, *help;
} builtins[] = {
    {"runner", "direct", "direct (one thread), local (threads) or mpi (ranks)"},
    {"num_workers", "0", "worker threads for the local runner (0: one per core)"},
    {"threads_per_worker", "0",
     "compute threads of each worker (0: its share of the cores, so workers x threads <= cores; "
     "OMP_NUM_THREADS caps the share)"},
    {"resource_hints", "",
     "pipeline-wide hints: accelerator=\"type:T;count:N\" (a TPU: "
     "\"type:tpu-...;topology:1x1\"),min_ram=16GB"},
    {"worker_accelerators", "0",
     "accelerators per worker: N GPUs, or tpu:N TPU chips; or a list N0,tpu:N1,... per worker index"},
    {"worker_ram", "0", "RAM per worker (e.g. 64GB); 0: this machine's"},
    {"bundle_size", "0", "elements per bundle (0: automatic)"},
    {"max_bundle_retries", "4",
     "retries of a bundle that failed with a transient error (I/O, memory, device) before the pipeline "
     "fails; other errors are not retried"},
    {"stall_timeout_s", "60", "warn when no bundle completes for this long (local runner)"},
    {"shuffle_seed", "", "direct runner: shuffle element order with this seed"},
    {"worker_timeout_s", "600", "mpi runner: declare a rank dead after this long silent"},
};
#define N_BUILTINS (int)(sizeof builtins / sizeof builtins[0])

static opt *find(const bl_options *o, const char *name) {
    for (int i = 0; i < o->n; i++)
        if (strcmp(o->o[i].name, name) == 0) return &o->o[i];
    return NULL;
}

static bl_status add(bl_options *o, const char *name, const char *def, const char *help, bool b) {
    if (!name || !*name) return bl_error(BL_ERR_INVALID_ARG, "option needs a name");
    for (const char *c = name; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '_' && *c != '-')
            return bl_error(BL_ERR_INVALID_ARG, "option name '%s' holds '%c'", name, *c);
    if (find(o, name)) return bl_error(BL_ERR_INVALID_ARG, "option --%s is defined twice", name);
    if (o->n == o->cap) {
        int cap = o->cap ? o->cap * 2 : 32;
        opt *no = realloc(o->o, (size_t)cap * sizeof *no);
        if (!no) return bl_error(BL_ERR_OUT_OF_MEMORY, "options");
        o->o = no;
        o->cap = cap;
    }
    opt *x = &o->o[o->n];
    x->name = strdup(name);
    x->def = strdup(def ? def : "");
    x->value = strdup(def ? def : "");
    x->help = strdup(help ? help : "");
    x->builtin = b;
    x->given = false;
    if (!x->name || !x->def || !x->value || !x->help) {
        free(x->name), free(x->def), free(x->value), free(x->help);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "options");
    }
    o->n++;
    return BL_OK;
}

bl_status bl_options_new(bl_options **out) {
    *out = NULL;
    bl_options *o = calloc(1, sizeof *o);
    if (!o) return bl_error(BL_ERR_OUT_OF_MEMORY, "options");
    for (int i = 0; i < N_BUILTINS; i++) {
        bl_status s = add(o, builtins[i].name, builtins[i].def, builtins[i].help, true);
        if (s != BL_OK) {
            bl_options_free(o);
            return s;
        }
    }
    *out = o;
    return BL_OK;
}

bl_status bl_options_new_plain(bl_options **out) {
    *out = calloc(1, sizeof **out);
    return *out ? BL_OK : bl_error(BL_ERR_OUT_OF_MEMORY, "options");
}

void bl_options_free(bl_options *o) {
    if (!o) return;
    for (int i = 0; i < o->n; i++) {
        free(o->o[i].name), free(o->o[i].value), free(o->o[i].def), free(o->o[i].help);
    }
    free(o->o);
    free(o);
}

bl_status bl_options_add(bl_options *o, const char *name, const char *def, const char *help) {
    return add(o, name, def, help, false);
}

static bl_status parse_i64(const char *name, const char *v, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno) return bl_error(BL_ERR_INVALID_ARG, "--%s=%s: not an integer", name, v);
    if (x < lo || x > hi)
        return bl_error(BL_ERR_INVALID_ARG, "--%s=%s: must be between %lld and %lld", name, v, (long long)lo,
                        (long long)hi);
    *out = x;
    return BL_OK;
}

static bl_status parse_f64(const char *name, const char *v, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || *end || errno || x < 0)
        return bl_error(BL_ERR_INVALID_ARG, "--%s=%s: not a non-negative number", name, v);
    *out = x;
    return BL_OK;
}

/* Parses one built-in into ro (which may be a scratch copy when only validating). */
static bl_status apply_builtin(bl_runopts *ro, const char *name, const char *v) {
    int64_t i;
    if (strcmp(name, "runner") == 0) {
        if (strcmp(v, "direct") && strcmp(v, "local") && strcmp(v, "mpi"))
            return bl_error(BL_ERR_INVALID_ARG, "--runner=%s: unknown runner (valid: direct, local, mpi)", v);
        snprintf(ro->runner, sizeof ro->runner, "%s", v);
    } else if (strcmp(name, "num_workers") == 0) {
        BL_TRY(parse_i64(name, v, 0, 1024, &i));
        ro->num_workers = (int)i;
    } else if (strcmp(name, "threads_per_worker") == 0) {
        BL_TRY(parse_i64(name, v, 0, 4096, &i));
        ro->threads_per_worker = (int)i;
    } else if (strcmp(name, "resource_hints") == 0) {
        bl_hints h;
        BL_TRY(bl_error_context(bl_hints_parse(v, &h), "--resource_hints"));
        bl_hints_merge(&ro->hints, &h);
    } else if (strcmp(name, "worker_accelerators") == 0) {
        int n = 1;
        for (const char *c = v; *c; c++) n += *c == ',';
        int *a = calloc((size_t)n, sizeof *a);
        bl_accel_kind *kinds = calloc((size_t)n, sizeof *kinds);
        char *copy = strdup(v), *save = NULL;
        int k = 0;
        bl_status s = a && kinds && copy ? BL_OK : bl_error(BL_ERR_OUT_OF_MEMORY, "worker_accelerators");
        for (char *tok = copy ? strtok_r(copy, ",", &save) : NULL; tok && s == BL_OK;
             tok = strtok_r(NULL, ",", &save)) {
            /* "N" or "gpu:N" (GPUs), "tpu:N" (TPU chips) */
            kinds[k] = strncmp(tok, "tpu:", 4) == 0 ? BL_ACCEL_TPU : BL_ACCEL_GPU;
            const char *num = strncmp(tok, "tpu:", 4) == 0 || strncmp(tok, "gpu:", 4) == 0 ? tok + 4 : tok;
            if (num == tok && strchr(tok, ':'))
                s = bl_error(BL_ERR_INVALID_ARG, "--%s=%s: '%s': expected N, gpu:N or tpu:N", name, v, tok);
            else
                s = parse_i64(name, num, 0, 1024, &i);
            a[k++] = (int)i;
        }
        free(copy);
        if (s == BL_OK && k != n) s = bl_error(BL_ERR_INVALID_ARG, "--%s=%s: empty entry", name, v);
        if (s != BL_OK) {
            free(a);
            free(kinds);
            return s;
        }
        free(ro->worker_accels);
        free(ro->worker_accel_kinds);
        ro->worker_accels = a;
        ro->worker_accel_kinds = kinds;
        ro->n_worker_accels = n;
    } else if (strcmp(name, "worker_ram") == 0) {
        BL_TRY(bl_error_context(bl_parse_size(v, &ro->worker_ram), "--worker_ram"));
    } else if (strcmp(name, "bundle_size") == 0) {
        BL_TRY(parse_i64(name, v, 0, INT64_MAX, &ro->bundle_size));
    } else if (strcmp(name, "max_bundle_retries") == 0) {
        BL_TRY(parse_i64(name, v, 0, 100, &i));
        ro->max_retries = (int)i;
    } else if (strcmp(name, "stall_timeout_s") == 0) {
        BL_TRY(parse_f64(name, v, &ro->stall_timeout_s));
    } else if (strcmp(name, "shuffle_seed") == 0) {
        ro->shuffle = *v != 0;
        if (*v) {
            BL_TRY(parse_i64(name, v, 0, INT64_MAX, &i));
            ro->shuffle_seed = (uint64_t)i;
        }
    } else if (strcmp(name, "worker_timeout_s") == 0) {
        BL_TRY(parse_f64(name, v, &ro->worker_timeout_s));
    }
    return BL_OK;
}

static bl_status unknown(const bl_options *o, const char *name) {
    bl_buf b = {0};
    bl_buf_printf(&b, "unknown option --%s; valid options:", name);
    for (int i = 0; i < o->n; i++) bl_buf_printf(&b, "%s --%s", i ? "," : "", o->o[i].name);
    bl_status s = bl_error(BL_ERR_INVALID_ARG, "%s", b.data ? (char *)b.data : "unknown option");
    bl_buf_free(&b);
    return s;
}

static bl_status set_value(bl_options *o, const char *name, const char *value, bool given) {
    opt *x = find(o, name);
    if (!x) return unknown(o, name);
    if (x->builtin) {
        bl_runopts scratch = {0};
        bl_status s = apply_builtin(&scratch, name, value);
        bl_runopts_free(&scratch);
        BL_TRY(s);
    }
    char *v;
    /* --resource_hints may be given several times, as in Beam; later ones layer on top. */
    if (x->builtin && strcmp(name, "resource_hints") == 0 && *x->value) {
        size_t n = strlen(x->value) + strlen(value) + 2;
        v = malloc(n);
        if (v) snprintf(v, n, "%s,%s", x->value, value);
    } else {
        v = strdup(value);
    }
    if (!v) return bl_error(BL_ERR_OUT_OF_MEMORY, "option value");
    free(x->value);
    x->value = v;
    x->given = given;
    return BL_OK;
}

bl_status bl_options_set(bl_options *o, const char *name, const char *value) {
    return set_value(o, name, value, true);
}

bl_status bl_options_parse(bl_options *o, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            o->help = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || !a[2])
            return bl_error(BL_ERR_INVALID_ARG, "argument '%s' is not an option (--name=value)", a);
        const char *eq = strchr(a, '=');
        char name[128];
        size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (len >= sizeof name) return bl_error(BL_ERR_INVALID_ARG, "option name too long: %s", a);
        memcpy(name, a + 2, len);
        name[len] = 0;
        BL_TRY(bl_options_set(o, name, eq ? eq + 1 : "true"));
    }
    return BL_OK;
}

bool bl_options_help(const bl_options *o) { return o->help; }

bl_status bl_options_set_default(bl_options *o, const char *name, const char *value) {
    BL_TRY(set_value(o, name, value, false));
    opt *x = find(o, name);
    char *d = strdup(value);
    if (!d) return bl_error(BL_ERR_OUT_OF_MEMORY, "option default");
    free(x->def);
    x->def = d;
    return BL_OK;
}

bool bl_options_given(const bl_options *o, const char *name) {
    const opt *x = o ? find(o, name) : NULL;
    return x && x->given;
}

const char *bl_options_get(const bl_options *o, const char *name) {
    opt *x = o ? find(o, name) : NULL;
    return x ? x->value : NULL;
}

bl_status bl_options_get_int(const bl_options *o, const char *name, int64_t *out) {
    const char *v = bl_options_get(o, name);
    if (!v) return unknown(o, name);
    return parse_i64(name, v, INT64_MIN, INT64_MAX, out);
}

bl_status bl_options_get_double(const bl_options *o, const char *name, double *out) {
    const char *v = bl_options_get(o, name);
    if (!v) return unknown(o, name);
    char *end;
    errno = 0;
    *out = strtod(v, &end);
    if (!*v || *end || errno) return bl_error(BL_ERR_INVALID_ARG, "--%s=%s: not a number", name, v);
    return BL_OK;
}

bl_status bl_options_get_int_in(const bl_options *o, const char *name, int64_t lo, int64_t hi, int64_t *out) {
    const char *v = bl_options_get(o, name);
    if (!v) return unknown(o, name);
    return parse_i64(name, v, lo, hi, out);
}

bl_status bl_options_get_bool(const bl_options *o, const char *name, bool *out) {
    const char *v = bl_options_get(o, name);
    if (!v) return unknown(o, name);
    /* Exactly these spellings: a typo such as "ture" or "maybe" must not quietly mean one or
     * the other. */
    static const char *const yes[] = {"true", "1", "yes"}, *const no[] = {"false", "0", "no"};
    for (int i = 0; i < 3; i++) {
        if (strcmp(v, yes[i]) == 0 || strcmp(v, no[i]) == 0) {
            *out = strcmp(v, yes[i]) == 0;
            return BL_OK;
        }
    }
    return bl_error(BL_ERR_INVALID_ARG, "--%s=%s: not a boolean (true, false, 1, 0, yes or no)", name, v);
}

char *bl_options_usage(const bl_options *o) {
    bl_buf b = {0};
    for (int i = 0; i < o->n; i++)
        bl_buf_printf(&b, "  --%-22s %s (default: \"%s\")\n", o->o[i].name, o->o[i].help, o->o[i].def);
    if (!b.data) return strdup("");
    return (char *)b.data;
}

void bl_runopts_free(bl_runopts *ro) {
    free(ro->worker_accels);
    free(ro->worker_accel_kinds);
    ro->worker_accels = NULL;
    ro->worker_accel_kinds = NULL;
}

bl_status bl_runopts_from_options(const bl_options *o, bl_runopts *ro) {
    memset(ro, 0, sizeof *ro);
    snprintf(ro->runner, sizeof ro->runner, "direct");
    ro->max_retries = 4;
    ro->stall_timeout_s = 60;
    ro->worker_timeout_s = 600;
    ro->self_accels = -1;
    bl_status s = BL_OK;
    if (o) {
        for (int i = 0; i < o->n && s == BL_OK; i++)
            if (o->o[i].builtin) s = apply_builtin(ro, o->o[i].name, o->o[i].value);
    }
    if (s != BL_OK) {
        bl_runopts_free(ro);
        return s;
    }
    if (ro->worker_ram == 0) {
        long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
        ro->worker_ram = pages > 0 && psize > 0 ? (uint64_t)pages * (uint64_t)psize : 0;
    }
    if (ro->num_workers == 0) ro->num_workers = bl_cpu_cores();
    return BL_OK;
}

bl_worker_caps bl_runopts_caps(const bl_runopts *ro, int worker) {
    bl_worker_caps c = {0, ro->worker_ram, BL_ACCEL_GPU};
    if (ro->n_worker_accels > 0) {
        c.accelerators = ro->worker_accels[worker % ro->n_worker_accels];
        c.accelerator_kind = ro->worker_accel_kinds[worker % ro->n_worker_accels];
    }
    if (ro->self_accels >= 0) {
        c.accelerators = ro->self_accels;
        c.accelerator_kind = ro->self_accel_kind;
    }
    return c;
}
