/* beamlet pipeline: Apache Beam's programming model in C.
 *
 * A pipeline is a graph of named transforms over PCollections. Elements travel as pointers to
 * decoded values inside a DoFn and as bytes (through their coder) everywhere else, so the same
 * pipeline runs unchanged on one thread (`direct`, which round-trips every element through its
 * coder and can shuffle order to expose order assumptions), on all cores (`local`: fused stages,
 * bundles, retries, stall warnings) and across machines (`mpi`: rank 0 hands bundles out, the
 * other ranks work). Resource hints (accelerator, min_ram) steer placement. This layer knows
 * nothing of tensors: an application tells it how many accelerators a worker has. */
#ifndef BEAMLET_PIPELINE_H
#define BEAMLET_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "beamlet/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- growable byte buffer (what coders write into) -------------------------------------- */

typedef struct bl_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} bl_buf;

bl_status bl_buf_append(bl_buf *b, const void *data, size_t n);
bl_status bl_buf_printf(bl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bl_status bl_buf_put_varint(bl_buf *b, uint64_t v);
/* Reads an unsigned LEB128 varint at data[*pos], advancing *pos; BL_ERR_FORMAT when truncated. */
bl_status bl_read_varint(const uint8_t *data, size_t size, size_t *pos, uint64_t *v);
void bl_buf_free(bl_buf *b);

/* ---- coders ----------------------------------------------------------------------------- */

/* A coder turns a value into self-delimiting bytes and back. Decoded values are malloc'ed by
 * the coder and released with bl_coder_free_value. In-memory representations:
 *   bytes: bl_bytes*   string: char* (NUL-terminated)   int64: int64_t*   double: double*
 *   kv: bl_kv*         iterable: bl_iter*               custom: whatever its functions use */
typedef struct bl_coder bl_coder;

typedef struct bl_bytes {
    size_t size;
    uint8_t *data;
} bl_bytes;

typedef struct bl_kv {
    void *key;
    void *value;
} bl_kv;

typedef struct bl_iter {
    size_t n;
    void **items;
} bl_iter;

/* A user coder: encode appends to `out`; decode reads one value at data[*pos] and advances
 * *pos. `deterministic` promises equal values always encode to equal bytes (required of keys). */
typedef struct bl_coder_fns {
    const char *name;
    bool deterministic;
    bl_status (*encode)(const void *value, bl_buf *out, void *user);
    bl_status (*decode)(const uint8_t *data, size_t size, size_t *pos, void **value, void *user);
    void (*free_value)(void *value, void *user);
    bl_status (*to_json)(const void *value, bl_buf *out, void *user); /* optional */
    void *user;
} bl_coder_fns;

bl_status bl_coder_new(const bl_coder_fns *fns, bl_coder **out);
void bl_coder_free(bl_coder *coder); /* user coders only; built-ins are static */

const bl_coder *bl_coder_bytes(void);
const bl_coder *bl_coder_string(void);
const bl_coder *bl_coder_int64(void);
const bl_coder *bl_coder_double(void); /* not deterministic (-0.0, NaN): refused as a key */
/* Composite coders are interned (same parts, same pointer) and live until exit. NULL on OOM. */
const bl_coder *bl_coder_kv(const bl_coder *key, const bl_coder *value);
const bl_coder *bl_coder_iterable(const bl_coder *item);
/* The parts of a kv or iterable coder (NULL for other coders). */
const bl_coder *bl_coder_key(const bl_coder *kv);
const bl_coder *bl_coder_value(const bl_coder *kv);
const bl_coder *bl_coder_item(const bl_coder *iterable);

const char *bl_coder_name(const bl_coder *coder);
bool bl_coder_is_deterministic(const bl_coder *coder);
bl_status bl_coder_encode(const bl_coder *coder, const void *value, bl_buf *out);
/* Decodes one whole element: trailing bytes are a format error. */
bl_status bl_coder_decode(const bl_coder *coder, const uint8_t *data, size_t size, void **value);
bl_status bl_coder_decode_at(const bl_coder *coder, const uint8_t *data, size_t size, size_t *pos,
                             void **value);
void bl_coder_free_value(const bl_coder *coder, void *value);
/* JSON text of a value; coders without to_json write their bytes as a base16 string. */
bl_status bl_coder_to_json(const bl_coder *coder, const void *value, bl_buf *out);

/* ---- options ---------------------------------------------------------------------------- */

/* Beam-style `--name=value` flags. The pipeline's own flags are always known:
 *   --runner=direct|local|mpi  --num_workers=N  --threads_per_worker=N
 *   --resource_hints=H (repeatable)
 *   --worker_accelerators=N or N0,N1,... (per worker: thread index, or mpi rank); an entry
 *     N or gpu:N is N GPUs, tpu:N is N TPU chips (a TPU hint fits only TPU workers)
 *   --worker_ram=SIZE  --bundle_size=N
 *   --max_bundle_retries=N  --stall_timeout_s=S  --shuffle_seed=N (direct)  --worker_timeout_s=S
 * A program adds its own with bl_options_add before parsing. Unknown flags are errors that
 * list the valid ones. */
typedef struct bl_options bl_options;

bl_status bl_options_new(bl_options **out);
/* Options without the pipeline's flags, for a program that builds no pipeline. */
bl_status bl_options_new_plain(bl_options **out);
void bl_options_free(bl_options *opts);
bl_status bl_options_add(bl_options *opts, const char *name, const char *default_value, const char *help);
/* Parses argv[1..argc-1]; every argument must be --name=value (or --name for "true"). */
bl_status bl_options_parse(bl_options *opts, int argc, char **argv);
/* Whether argv held --help (or -h): the program should print bl_options_usage and exit 0. */
bool bl_options_help(const bl_options *opts);
bl_status bl_options_set(bl_options *opts, const char *name, const char *value);
/* Changes an option's default (what --help shows) and its value, before parsing: e.g. a
 * program whose natural runner is "local". */
bl_status bl_options_set_default(bl_options *opts, const char *name, const char *value);
/* Whether the flag was given (parsed from argv or set with bl_options_set), even at its default
 * value, as opposed to left at (or given by bl_options_set_default) its default: a program
 * that takes a value from elsewhere can refuse a flag it would otherwise ignore. False for an
 * unknown name. */
bool bl_options_given(const bl_options *opts, const char *name);
/* NULL when the option is unknown. */
const char *bl_options_get(const bl_options *opts, const char *name);
bl_status bl_options_get_int(const bl_options *opts, const char *name, int64_t *out);
bl_status bl_options_get_double(const bl_options *opts, const char *name, double *out);
/* An integer in [lo, hi]; anything else is BL_ERR_INVALID_ARG naming the flag and the range. */
bl_status bl_options_get_int_in(const bl_options *opts, const char *name, int64_t lo, int64_t hi,
                                int64_t *out);
/* "true", "1" or "yes"; "false", "0" or "no"; any other value (case too) is BL_ERR_INVALID_ARG
 * naming the flag. */
bl_status bl_options_get_bool(const bl_options *opts, const char *name, bool *out);
/* The usage text: every known flag with its default and help. Caller frees. */
char *bl_options_usage(const bl_options *opts);

/* ---- programs --------------------------------------------------------------------------- */

/* A command of a program: its flags and what it does with them once parsed. The learning path's
 * stages (beamlet/stages.h) and the beamlet CLI's commands are commands, so the CLI and the
 * example programs share one way to read flags, print usage and exit. */
typedef struct bl_command {
    const char *summary; /* what --help says it does (may hold newlines) */
    bool pipeline_flags; /* it builds a pipeline: the pipeline's flags (--runner, ...) too */
    bl_status (*add_options)(bl_options *opts);
    bl_status (*run)(const bl_options *opts);
} bl_command;

/* A program's main for a command: makes its options, makes each "name=value" of `defaults`
 * (NULL-terminated, or NULL) the flag's default, parses argv[1..argc-1], prints the usage for
 * --help and otherwise runs the command. Failures are printed as "<program>: <message>".
 * Returns the exit status: 0; 2 when the flags are wrong (unknown, malformed, or a value the
 * command refuses with BL_ERR_INVALID_ARG); 1 for any other failure. */
int bl_command_main(const bl_command *cmd, const char *program, const char *const *defaults, int argc,
                    char **argv);

/* ---- resource hints --------------------------------------------------------------------- */

/* The kind of accelerator a hint asks for and a worker has. A GPU does not serve a TPU hint,
 * nor a TPU a GPU hint. */
typedef enum bl_accel_kind {
    BL_ACCEL_GPU = 0,
    BL_ACCEL_TPU = 1
} bl_accel_kind;

/* `accelerator=...` and `min_ram=<size>` (e.g. 16GB, 4GiB, 512MB), comma-separated; a value may
 * be double-quoted. The accelerator, fields separated by ';' (Beam's and Dataflow's syntax):
 *   GPU  type:<name>;count:<n>[;install-nvidia-driver]     (any type not starting with "tpu")
 *   TPU  type:tpu[-<generation>];topology:<AxB[xC]>[;count:<n>]   e.g.
 *        type:tpu-v5-lite-podslice;topology:1x1
 * A TPU's size is its topology; count, when given, must be its number of chips. This build runs
 * one chip per worker, so a topology of more than one chip (2x2, 2x2x1) is refused. */
typedef struct bl_hints {
    bool has_accelerator;
    char accelerator_type[64];
    bl_accel_kind accelerator_kind; /* from the type: "tpu" or "tpu-..." is BL_ACCEL_TPU */
    int accelerator_count;          /* a TPU: the chips of its topology */
    char accelerator_topology[16];  /* as given ("1x1"), "" for none */
    bool install_nvidia_driver;
    uint64_t min_ram; /* bytes; 0 = no hint */
} bl_hints;

/* Malformed text is BL_ERR_FORMAT with the 1-based position and the reason. */
bl_status bl_hints_parse(const char *text, bl_hints *out);
/* Layers hints: `inner`'s accelerator wins when it has one; min_ram is the maximum. */
void bl_hints_merge(bl_hints *outer, const bl_hints *inner);
/* Text form ("accelerator=type:t4;count:1,min_ram=16GB"), or "" for none. */
void bl_hints_format(const bl_hints *hints, char *out, size_t size);

/* ---- pipeline and PCollections ---------------------------------------------------------- */

typedef struct bl_pipeline bl_pipeline;
typedef struct bl_pcoll bl_pcoll; /* owned by its pipeline */

/* `opts` may be NULL (direct runner, defaults); the pipeline copies what it needs. */
bl_status bl_pipeline_new(const bl_options *opts, bl_pipeline **out);
void bl_pipeline_free(bl_pipeline *p);

/* Composite transforms: names created inside get "Outer/" prefixed and the hints (may be NULL)
 * apply to every transform inside unless an inner scope or the transform overrides them. */
bl_status bl_pipeline_begin_composite(bl_pipeline *p, const char *name, const char *hints);
bl_status bl_pipeline_end_composite(bl_pipeline *p);
/* Attaches hints to one transform by its (full) name. */
bl_status bl_pipeline_set_hints(bl_pipeline *p, const char *transform, const char *hints);
/* Accelerators this process's workers have, and their kind (what `--worker_accelerators`
 * says otherwise). */
void bl_pipeline_set_worker_accelerators(bl_pipeline *p, bl_accel_kind kind, int count);

/* The graph as text (one transform a line) or Graphviz dot. Caller frees. */
bl_status bl_pipeline_to_text(const bl_pipeline *p, char **out);
bl_status bl_pipeline_to_dot(const bl_pipeline *p, char **out);

/* Keeps a PCollection's elements after the run (on the coordinator) for inspection. */
bl_status bl_pipeline_collect(bl_pipeline *p, bl_pcoll *pc);

/* Runs with the runner from the options. Under mpi every rank calls this; non-coordinator
 * ranks return the same status as rank 0 but hold no collected elements or metrics. */
bl_status bl_pipeline_run(bl_pipeline *p);
/* True where results and metrics live (always, except on mpi worker ranks). */
bool bl_pipeline_is_coordinator(const bl_pipeline *p);
const char *bl_pipeline_runner_name(const bl_pipeline *p);
int bl_pipeline_num_workers(const bl_pipeline *p);
/* Compute threads each worker runs its ops with: --threads_per_worker, else the worker's share
 * of the cores (local runner: cores / workers; mpi: cores / ranks on the node; at least 1, at
 * most OMP_NUM_THREADS), else, on the direct runner, what the calling thread has. */
int bl_pipeline_threads_per_worker(const bl_pipeline *p);
/* Node-local rank of this process (OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID, else 0): the
 * index of the accelerator this process binds when it has several. */
int bl_pipeline_worker_local_rank(void);
/* How many stall warnings the local runner logged in the last run. */
int bl_pipeline_stall_warnings(const bl_pipeline *p);

const char *bl_pcoll_name(const bl_pcoll *pc);
const bl_coder *bl_pcoll_coder(const bl_pcoll *pc);
size_t bl_pcoll_result_count(const bl_pcoll *pc);
/* Decodes collected element i (free with bl_coder_free_value). */
bl_status bl_pcoll_result_value(const bl_pcoll *pc, size_t i, void **value);
/* Collected element i as JSON text (caller frees). */
bl_status bl_pcoll_result_json(const bl_pcoll *pc, size_t i, char **out);

/* ---- DoFn and ParDo --------------------------------------------------------------------- */

typedef struct bl_dofn_ctx bl_dofn_ctx; /* one DoFn instance on one worker */
typedef struct bl_emitter bl_emitter;

/* Lifecycle per worker: setup once, then per bundle start_bundle, process each element,
 * finish_bundle; teardown at the end or after a failed bundle (before a retry). Any callback
 * may be NULL except process. The element passed to process is owned by the runner. */
typedef struct bl_dofn {
    bl_status (*setup)(bl_dofn_ctx *ctx);
    bl_status (*start_bundle)(bl_dofn_ctx *ctx);
    bl_status (*process)(bl_dofn_ctx *ctx, const void *element, bl_emitter *out);
    bl_status (*finish_bundle)(bl_dofn_ctx *ctx, bl_emitter *out);
    void (*teardown)(bl_dofn_ctx *ctx);
    void *user;                /* shared, read-only while running; outlives the run */
    const bl_coder *out_coder; /* main output */
    int num_side_outputs;      /* tagged outputs, at most 8 */
    const char *side_tags[8];
    const bl_coder *side_coders[8];
} bl_dofn;

void *bl_dofn_user(const bl_dofn_ctx *ctx);
void *bl_dofn_state(const bl_dofn_ctx *ctx); /* per-instance; set in setup */
void bl_dofn_set_state(bl_dofn_ctx *ctx, void *state);
int bl_dofn_worker(const bl_dofn_ctx *ctx);  /* worker index (mpi: rank) */
int bl_dofn_attempt(const bl_dofn_ctx *ctx); /* 1 on the first try of a bundle */
/* Accelerator index this instance should use, -1 when none: the mpi node-local rank (or the
 * local runner's thread index) modulo the worker's accelerator count. */
int bl_dofn_accelerator(const bl_dofn_ctx *ctx);
const char *bl_dofn_transform(const bl_dofn_ctx *ctx);

/* Encodes (copies) `value` into the main output; the caller keeps ownership of value. */
bl_status bl_emit(bl_emitter *out, const void *value);
bl_status bl_emit_tagged(bl_emitter *out, const char *tag, const void *value);

/* User metrics, attributed to the calling DoFn's transform. */
void bl_metric_inc(bl_dofn_ctx *ctx, const char *name, int64_t delta);
void bl_metric_observe(bl_dofn_ctx *ctx, const char *name, double value);

/* ---- transforms ------------------------------------------------------------------------- */

/* Transform names must be non-empty and unique within the pipeline. */
bl_status bl_create(bl_pipeline *p, const char *name, const bl_coder *coder, const void *const *values,
                    size_t n, bl_pcoll **out);
bl_status bl_pardo(bl_pipeline *p, const char *name, bl_pcoll *in, const bl_dofn *fn, bl_pcoll **out);
/* The tagged side output of the ParDo that produced `main`. */
bl_status bl_pardo_output(bl_pcoll *main, const char *tag, bl_pcoll **out);

typedef bl_status (*bl_map_fn)(void *user, const void *in, void **out); /* out freed by coder */
typedef bl_status (*bl_flatmap_fn)(void *user, const void *in, bl_emitter *out);
typedef bool (*bl_filter_fn)(void *user, const void *in);
bl_status bl_map(bl_pipeline *p, const char *name, bl_pcoll *in, bl_map_fn fn, void *user,
                 const bl_coder *out_coder, bl_pcoll **out);
bl_status bl_flatmap(bl_pipeline *p, const char *name, bl_pcoll *in, bl_flatmap_fn fn, void *user,
                     const bl_coder *out_coder, bl_pcoll **out);
bl_status bl_filter(bl_pipeline *p, const char *name, bl_pcoll *in, bl_filter_fn fn, void *user,
                    bl_pcoll **out);

/* Breaks fusion and redistributes elements across workers. */
bl_status bl_reshuffle(bl_pipeline *p, const char *name, bl_pcoll *in, bl_pcoll **out);
/* KV<K,V> -> KV<K, iterable<V>>; keys compare by encoded bytes, so K's coder must be
 * deterministic. */
bl_status bl_group_by_key(bl_pipeline *p, const char *name, bl_pcoll *in, bl_pcoll **out);
bl_status bl_flatten(bl_pipeline *p, const char *name, bl_pcoll *const *ins, size_t n, bl_pcoll **out);

/* Accumulators are values of accumulator_coder (freed by it); merge folds `other` into `acc`. */
typedef struct bl_combine_fn {
    bl_status (*create_accumulator)(void *user, void **acc);
    bl_status (*add_input)(void *user, void *acc, const void *input);
    bl_status (*merge_accumulators)(void *user, void *acc, const void *other);
    bl_status (*extract_output)(void *user, const void *acc, void **out);
    const bl_coder *accumulator_coder;
    const bl_coder *output_coder;
    void *user;
} bl_combine_fn;

/* Ready-made CombineFns: int64 sum, element count (any input), double mean. */
const bl_combine_fn *bl_combine_sum_int64(void);
const bl_combine_fn *bl_combine_count(void);
const bl_combine_fn *bl_combine_mean_double(void);

/* One output element (the CombineFn's default on empty input). */
bl_status bl_combine_globally(bl_pipeline *p, const char *name, bl_pcoll *in, const bl_combine_fn *fn,
                              bl_pcoll **out);
/* KV<K,V> -> KV<K,Out>. */
bl_status bl_combine_per_key(bl_pipeline *p, const char *name, bl_pcoll *in, const bl_combine_fn *fn,
                             bl_pcoll **out);

/* Batches within a bundle into iterables: a batch closes at max_size elements or before its
 * weight (sum of weight_fn, or 1 each when NULL) would pass max_weight (0 = no limit).
 * Batches smaller than min_size only appear at bundle ends. */
typedef size_t (*bl_weight_fn)(void *user, const void *element);
typedef struct bl_batch_config {
    size_t min_size;
    size_t max_size;
    size_t max_weight;
    bl_weight_fn weight_fn;
    void *weight_user;
} bl_batch_config;
bl_status bl_batch_elements(bl_pipeline *p, const char *name, bl_pcoll *in, const bl_batch_config *config,
                            bl_pcoll **out);

/* Lines of the files matching `pattern` (a glob), as strings, in file order. */
bl_status bl_read_text(bl_pipeline *p, const char *name, const char *pattern, bl_pcoll **out);

typedef enum bl_text_format {
    BL_TEXT_LINES = 0, /* strings as they are, other values as JSON */
    BL_TEXT_JSON,      /* one JSON value a line */
} bl_text_format;
/* Writes <prefix>-SSSSS-of-NNNNN<suffix>; shards are written under temporary names and renamed
 * only when the whole pipeline succeeded. num_shards 0 means one. */
bl_status bl_write_text(bl_pipeline *p, const char *name, bl_pcoll *in, const char *prefix,
                        const char *suffix, int num_shards, bl_text_format format);

/* ---- metrics ---------------------------------------------------------------------------- */

typedef struct bl_metric_result {
    bool is_distribution;
    int64_t counter; /* counters */
    int64_t count;   /* distributions */
    double sum, min, max, mean;
} bl_metric_result;

/* Built-ins per transform: counters "elements_in", "elements_out"; distribution
 * "bundle_latency_ms". BL_ERR_NOT_FOUND when nothing was recorded under that name. */
bl_status bl_pipeline_metric(const bl_pipeline *p, const char *transform, const char *name,
                             bl_metric_result *out);
/* A table of every metric; caller frees. */
bl_status bl_pipeline_metrics_summary(const bl_pipeline *p, char **out);

#ifdef __cplusplus
}
#endif
#endif
