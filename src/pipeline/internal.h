/* Private structures shared by the pipeline sources: the graph, element lists (PCollections
 * materialized as encoded blobs), the execution plan, workers and tasks. Runners differ only in
 * where tasks run; everything about what a task does lives in executor.c. */
#ifndef BEAMLET_PIPELINE_INTERNAL_H
#define BEAMLET_PIPELINE_INTERNAL_H

#include "beamlet/pipeline.h"

/* ---- element lists: n encoded elements packed in one buffer ---------------------------- */

typedef struct bl_elist {
    bl_buf data;
    size_t *offs; /* n + 1 offsets into data */
    size_t n, cap;
} bl_elist;

/* A read-only window over n elements: element i is base[offs[i] .. offs[i+1]). */
typedef struct bl_eview {
    const uint8_t *base;
    const size_t *offs;
    size_t n;
} bl_eview;

bl_status bl_elist_push(bl_elist *l, const void *data, size_t size);
bl_status bl_elist_append_view(bl_elist *l, bl_eview v);
void bl_elist_free(bl_elist *l);
bl_eview bl_elist_view(const bl_elist *l, size_t begin, size_t end);
static inline const uint8_t *bl_eview_at(bl_eview v, size_t i, size_t *size) {
    *size = v.offs[i + 1] - v.offs[i];
    return v.base + v.offs[i];
}
/* Flat serialization (used by the mpi runner and to hand partitions around). */
bl_status bl_elist_serialize(bl_eview v, bl_buf *out);
bl_status bl_elist_deserialize(const uint8_t *data, size_t size, size_t *pos, bl_elist *out);

/* ---- metrics -------------------------------------------------------------------------- */

typedef struct bl_metric_entry {
    char *transform;
    char *name;
    bool is_distribution;
    int64_t count; /* counter value, or number of observations */
    double sum, min, max;
} bl_metric_entry;

typedef struct bl_metrics {
    bl_metric_entry *e;
    size_t n, cap;
} bl_metrics;

void bl_metrics_inc(bl_metrics *m, const char *transform, const char *name, int64_t delta);
void bl_metrics_observe(bl_metrics *m, const char *transform, const char *name, double v);
void bl_metrics_merge(bl_metrics *into, const bl_metrics *from);
void bl_metrics_clear(bl_metrics *m);
bl_status bl_metrics_serialize(const bl_metrics *m, bl_buf *out);
bl_status bl_metrics_deserialize(const uint8_t *data, size_t size, size_t *pos, bl_metrics *out);

/* ---- the graph ------------------------------------------------------------------------ */

typedef enum bl_tkind {
    BL_T_CREATE,
    BL_T_PARDO,
    BL_T_GBK,
    BL_T_COMBINE_GLOBAL,
    BL_T_COMBINE_PERKEY,
    BL_T_FLATTEN,
    BL_T_RESHUFFLE,
    BL_T_READ_TEXT,
    BL_T_WRITE_TEXT,
} bl_tkind;

#define BL_MAX_OUTPUTS 9

struct bl_pcoll {
    bl_pipeline *p;
    int id;
    char *name;
    const bl_coder *coder;
    int producer;  /* transform id */
    int out_index; /* 0 main, 1.. side outputs */
    int consumers;
    bool collect;
    bl_elist result; /* collected elements after a run */
};

typedef struct bl_transform {
    int id;
    char *name;
    const char *kind_name;
    bl_tkind kind;
    int *inputs; /* pcoll ids */
    int n_inputs;
    int outputs[BL_MAX_OUTPUTS];
    int n_outputs;
    bl_dofn fn;
    bl_combine_fn cfn;
    void *owned;          /* helper state (map fn, batch config...) freed with the graph */
    bl_elist create_data; /* Create */
    char *path, *prefix, *suffix;
    int num_shards;
    bl_text_format format;
    bl_hints scope_hints; /* from enclosing composites, at creation */
    bl_hints own_hints;
    bl_hints hints; /* effective, computed when planning */
} bl_transform;

typedef struct bl_scope {
    char *name;
    bl_hints hints;
} bl_scope;

typedef struct bl_runopts {
    char runner[16];
    int num_workers;
    int threads_per_worker; /* --threads_per_worker: 0 = each worker's share of the cores */
    bl_hints hints;         /* pipeline-wide */
    int *worker_accels;     /* per worker index (cycled) */
    bl_accel_kind *worker_accel_kinds;
    int n_worker_accels;
    int self_accels; /* set by bl_pipeline_set_worker_accelerators, -1 = unset */
    bl_accel_kind self_accel_kind;
    uint64_t worker_ram;
    int64_t bundle_size; /* 0 = automatic */
    int max_retries;
    double stall_timeout_s;
    bool shuffle;
    uint64_t shuffle_seed;
    double worker_timeout_s;
} bl_runopts;

struct bl_pipeline {
    bl_transform **t;
    int nt, cap_t;
    bl_pcoll **pc;
    int npc, cap_pc;
    bl_scope scopes[16];
    int nscopes;
    bl_status sticky; /* first construction error: run refuses to start */
    char sticky_msg[512];
    bl_runopts ro;
    bl_metrics metrics;
    bool coordinator;
    bool has_run;
    int stall_warnings;
    int threads; /* compute threads each worker runs its ops with (the budget, see core.h) */
};

bl_status bl_pipeline_fail(bl_pipeline *p, bl_status s); /* records a construction error */
/* Adds a transform with a unique (scoped) name; outputs are added with bl_graph_add_output. */
bl_status bl_graph_add_transform(bl_pipeline *p, const char *name, bl_tkind kind, const char *kind_name,
                                 bl_pcoll *const *ins, int n_ins, bl_transform **out);
bl_status bl_graph_add_output(bl_pipeline *p, bl_transform *t, const bl_coder *coder, const char *tag,
                              bl_pcoll **out);
bl_transform *bl_graph_find(const bl_pipeline *p, const char *name);
/* Refuses non-KV input and keys whose coder is not deterministic. */
bl_status bl_check_keyed(bl_pipeline *p, const char *what, const char *name, const bl_pcoll *in);
bl_status bl_runopts_from_options(const bl_options *opts, bl_runopts *ro);
void bl_runopts_free(bl_runopts *ro);
/* "16GB", "4GiB", "512" (bytes). */
bl_status bl_parse_size(const char *s, uint64_t *out);

/* ---- execution plan ------------------------------------------------------------------- */

typedef enum bl_skind {
    BL_S_CREATE,    /* driver */
    BL_S_READ,      /* driver */
    BL_S_FLATTEN,   /* driver */
    BL_S_RESHUFFLE, /* driver: rebundle (direct: optional shuffle) */
    BL_S_PARDO,     /* tasks over bundles: a fused chain of ParDos */
    BL_S_GBK,       /* tasks over key partitions */
    BL_S_CPARTIAL,  /* tasks over bundles: combiner lifting, KV<key, acc> or acc */
    BL_S_CMERGE,    /* tasks over key partitions (per key) or one task (global) */
    BL_S_WRITE,     /* tasks over shards: format text; the driver commits files */
} bl_skind;

#define BL_MAX_CHAIN 32

typedef struct bl_stage {
    bl_skind kind;
    int t[BL_MAX_CHAIN]; /* transforms; a chain for PARDO */
    int nt;
    int in_slot;
    int out_slots[BL_MAX_CHAIN * BL_MAX_OUTPUTS]; /* materialized outputs */
    int n_out;
    /* per chain transform and output: the out_slots index, or -1 when fused into the next */
    int out_map[BL_MAX_CHAIN][BL_MAX_OUTPUTS];
    bool global; /* combine globally */
    bl_hints hints;
    char label[160];
} bl_stage;

typedef struct bl_plan {
    bl_pipeline *p;
    bl_stage *s;
    int ns;
    int nslots; /* pcolls first, then internal slots (combine accumulators) */
    int *slot_consumers;
    uint64_t run_token; /* names temp files of this run */
} bl_plan;

bl_status bl_plan_build(bl_pipeline *p, bl_plan *plan);
void bl_plan_free(bl_plan *plan);

/* ---- workers and tasks ---------------------------------------------------------------- */

typedef struct bl_worker_caps {
    int accelerators;
    uint64_t ram;
    bl_accel_kind accelerator_kind; /* of its accelerators: a hint of another kind does not fit */
} bl_worker_caps;

bool bl_caps_fit(const bl_worker_caps *caps, const bl_hints *h);

struct bl_dofn_ctx {
    const bl_transform *t;
    void *state;
    bool ready;
    int worker;
    int attempt;
    int accelerator;
    bl_metrics *metrics; /* where user metrics go right now */
};

typedef struct bl_worker {
    int index;
    bl_worker_caps caps;
    int local_rank;
    bl_dofn_ctx *inst; /* one per transform */
    int ninst;
    bl_metrics metrics; /* setup/teardown-time metrics, always counted */
    bool roundtrip_check;
} bl_worker;

typedef struct bl_task {
    int stage;
    size_t index;
    int attempt;
    bl_eview in;
    bl_elist *outs; /* stage n_out lists */
    bl_metrics metrics;
    bl_status status;
    char *err;
    int worker; /* who ran it (last attempt) */
} bl_task;

bl_status bl_worker_init(bl_worker *w, const bl_plan *plan, int index, bl_worker_caps caps);
/* Sets which accelerator the worker's DoFns use: local_index modulo its count (mpi: the
 * node-local rank; local runner: the thread index, so threads spread over devices). */
void bl_worker_bind(bl_worker *w, int local_index);
/* Tears down every ready instance and frees the worker. */
void bl_worker_finish(bl_worker *w);
/* Tears down the instances of one stage (before a retry). */
void bl_worker_reset_stage(bl_worker *w, const bl_plan *plan, int stage);
/* Runs one attempt of a task on this worker; on failure the message is in bl_last_error and
 * the stage's instances are torn down. Outputs and metrics are left in the task. */
bl_status bl_exec_task(const bl_plan *plan, bl_worker *w, bl_task *task);
void bl_task_clear(bl_task *task, int n_out);

/* The runner interface: run every task of a stage to success or fail. Tasks carry attempt
 * numbers; retries are the runner's job (bl_exec_task tears down before a retry). */
typedef struct bl_runner {
    bl_status (*run_tasks)(struct bl_runner *r, const bl_plan *plan, int stage, bl_task *tasks, size_t n);
    int num_workers;
    bl_worker_caps *caps; /* per worker, for validation and placement */
    void *self;
} bl_runner;

/* After a failed attempt (message `err`): when the status is transient (bl_status_transient)
 * and attempts are left, logs and bumps task->attempt; otherwise returns the final error naming
 * the stage and the DoFn's message (and the attempts, when it was retried). */
bl_status bl_retry_or_fail(const bl_plan *plan, bl_task *task, bl_status status, const char *err,
                           int max_retries);

/* The driver: validates placement, runs stages in order, commits text output, collects. */
bl_status bl_execute(bl_pipeline *p, bl_plan *plan, bl_runner *r);

/* Under --runner=mpi, at construction: joins MPI (initializing it once per process) so that
 * before the run each rank knows whether it coordinates, how many workers there are, and its
 * share of its node's cores. Without MPI in the build it does nothing (the run refuses). */
bl_status bl_mpi_join(bl_pipeline *p);

bl_status bl_run_direct(bl_pipeline *p);
bl_status bl_run_local(bl_pipeline *p);
bl_status bl_run_mpi(bl_pipeline *p);

/* Caps of worker index i from the options (self_accels overrides for this process). */
bl_worker_caps bl_runopts_caps(const bl_runopts *ro, int worker);

/* Helpers for text io and combine tasks. */
/* Formats one shard's text as a single element of `out`. */
bl_status bl_format_shard(const bl_plan *plan, const bl_transform *t, bl_eview in, bl_elist *out);
/* Writes every shard of every WriteToText under temp names, then renames them all; on any
 * failure removes the temps and leaves no final name touched by this run. */
bl_status bl_commit_text(const bl_plan *plan, const bl_elist *slots);
void bl_shard_name(const bl_transform *t, size_t shard, bool temp, uint64_t token, char *out, size_t size);
bl_status bl_read_text_files(const char *pattern, bl_elist *out);
bl_status bl_kv_key_len(const bl_coder *kv, const uint8_t *data, size_t size, size_t *len);

typedef struct bl_keyref {
    const uint8_t *data; /* the whole KV element */
    size_t size;
    size_t klen; /* bytes of its key */
    size_t idx;
} bl_keyref;
bl_status bl_sort_by_key(const bl_coder *kv, bl_eview in, bl_keyref **out);
bool bl_same_key(const bl_keyref *a, const bl_keyref *b);
bl_status bl_combine_partial(const bl_transform *t, const bl_coder *in_coder, bool global, bl_eview in,
                             bl_elist *out);
bl_status bl_combine_merge(const bl_transform *t, const bl_coder *in_coder, bool global, bl_eview in,
                           bl_elist *out);
bl_status bl_group_partition(const bl_coder *in_coder, bl_eview in, bl_elist *out);

#endif
