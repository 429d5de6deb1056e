/* The mpi runner. Every rank runs the same program and builds the same pipeline, so every rank
 * holds the same plan and only stage and bundle numbers plus encoded elements travel. Rank 0 is
 * the driver: it cuts bundles and key partitions (the shuffle for Reshuffle, GroupByKey and
 * Combine), hands one task at a time to each idle worker rank (a slow rank simply gets fewer),
 * and joins results. Each rank binds one accelerator by its node-local rank and reports it.
 * Every MPI call is checked (MPI_ERRORS_RETURN); a rank that stops answering for
 * --worker_timeout_s fails the run with its number, and no text output is committed. The ranks
 * of a node share its cores: each runs its ops with cores / (ranks on the node) threads. */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline/internal.h"

enum {
    TAG_TASK = 101,
    TAG_RESULT,
    TAG_DONE,
    TAG_FINAL
};

static bool comm_broken; /* a peer is presumed dead: finalizing would wait for it forever */

static void finalize_at_exit(void) {
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin && !comm_broken) MPI_Finalize();
}

static bl_status mpi_fail(int rc, const char *what) {
    char m[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, m, &len) != MPI_SUCCESS) snprintf(m, sizeof m, "error %d", rc);
    return bl_error(BL_ERR_IO, "mpi runner: %s failed: %s", what, m);
}

#define MPI_TRY(call)                                                                                        \
    do {                                                                                                     \
        int rc_ = (call);                                                                                    \
        if (rc_ != MPI_SUCCESS) return mpi_fail(rc_, #call);                                                 \
    } while (0)

typedef struct rank_info {
    int accelerators;
    int accelerator_kind; /* bl_accel_kind */
    int local_rank;
    uint64_t ram;
    char host[64];
} rank_info;

typedef struct mpi_ctx {
    MPI_Comm comm;
    int rank, size;
    rank_info *info; /* per rank, on rank 0 */
    bl_worker self;  /* rank 0 works itself only when it is alone */
    int max_retries;
    double timeout_s;
    bool *dead;     /* per rank, on rank 0: presumed dead after --worker_timeout_s of silence */
    int node_ranks; /* ranks on this rank's node, itself included */
} mpi_ctx;

/* Receives one whole message matching (src, tag) into a malloc'ed buffer. */
static bl_status recv_msg(MPI_Comm comm, int src, int tag, uint8_t **data, int *size, MPI_Status *st) {
    MPI_TRY(MPI_Probe(src, tag, comm, st));
    MPI_TRY(MPI_Get_count(st, MPI_BYTE, size));
    *data = malloc((size_t)*size + 1);
    if (!*data) return bl_error(BL_ERR_OUT_OF_MEMORY, "mpi message of %d bytes", *size);
    MPI_Status st2;
    int rc = MPI_Recv(*data, *size, MPI_BYTE, st->MPI_SOURCE, st->MPI_TAG, comm, &st2);
    if (rc != MPI_SUCCESS) {
        free(*data);
        *data = NULL;
        return mpi_fail(rc, "MPI_Recv");
    }
    return BL_OK;
}

static bl_status send_buf(MPI_Comm comm, int dest, int tag, const bl_buf *b) {
    if (b->len > (size_t)INT32_MAX)
        return bl_error(BL_ERR_UNSUPPORTED, "mpi message of %zu bytes is over 2 GiB; use smaller bundles",
                        b->len);
    MPI_TRY(MPI_Send(b->data ? (void *)b->data : (void *)"", (int)b->len, MPI_BYTE, dest, tag, comm));
    return BL_OK;
}

static bl_status put_str(bl_buf *b, const char *s) {
    BL_TRY(bl_buf_put_varint(b, strlen(s)));
    return bl_buf_append(b, s, strlen(s));
}

static bl_status get_str(const uint8_t *d, size_t size, size_t *pos, char *out, size_t cap) {
    uint64_t n = 0;
    BL_TRY(bl_read_varint(d, size, pos, &n));
    if (n > size - *pos) return bl_error(BL_ERR_FORMAT, "mpi runner: truncated message");
    size_t m = n < cap - 1 ? (size_t)n : cap - 1;
    memcpy(out, d + *pos, m);
    out[m] = 0;
    *pos += (size_t)n;
    return BL_OK;
}

/* ---- rank 0: hand tasks out ---------------------------------------------------------------- */

typedef struct busy {
    long task; /* -1 idle */
    double since;
} busy;

static bl_status send_task(mpi_ctx *m, bl_task *t, int dest) {
    bl_buf b = {0};
    bl_status s = bl_buf_put_varint(&b, (uint64_t)t->stage);
    if (s == BL_OK) s = bl_buf_put_varint(&b, t->index);
    if (s == BL_OK) s = bl_buf_put_varint(&b, (uint64_t)t->attempt);
    if (s == BL_OK) s = bl_elist_serialize(t->in, &b);
    if (s == BL_OK) s = send_buf(m->comm, dest, TAG_TASK, &b);
    bl_buf_free(&b);
    return s;
}

/* Reads a result into its task. *ok tells whether the attempt succeeded (else err holds why). */
static bl_status read_result(const uint8_t *d, size_t size, bl_task *tasks, size_t n, int n_out, long *which,
                             bl_status *task_status, char *err, size_t errcap) {
    size_t pos = 0;
    uint64_t idx = 0, st = 0;
    BL_TRY(bl_read_varint(d, size, &pos, &idx));
    BL_TRY(bl_read_varint(d, size, &pos, &st));
    if (idx >= n)
        return bl_error(BL_ERR_INTERNAL, "mpi runner: result for unknown task %llu", (unsigned long long)idx);
    *which = (long)idx;
    *task_status = (bl_status)st;
    bl_task *t = &tasks[idx];
    if (st != BL_OK) return get_str(d, size, &pos, err, errcap);
    bl_task_clear(t, n_out);
    if (!t->outs && n_out && !(t->outs = calloc((size_t)n_out, sizeof *t->outs)))
        return bl_error(BL_ERR_OUT_OF_MEMORY, "task outputs");
    for (int k = 0; k < n_out; k++) BL_TRY(bl_elist_deserialize(d, size, &pos, &t->outs[k]));
    return bl_metrics_deserialize(d, size, &pos, &t->metrics);
}

static bl_status mpi_tasks(bl_runner *r, const bl_plan *plan, int stage, bl_task *tasks, size_t n) {
    mpi_ctx *m = r->self;
    const bl_stage *st = &plan->s[stage];
    if (m->size == 1) { /* no worker ranks: rank 0 does the work */
        for (size_t i = 0; i < n; i++) {
            for (;;) {
                bl_status s = bl_exec_task(plan, &m->self, &tasks[i]);
                if (s == BL_OK) break;
                char err[1024];
                snprintf(err, sizeof err, "%s", bl_last_error());
                BL_TRY(bl_retry_or_fail(plan, &tasks[i], s, err, m->max_retries));
            }
        }
        return BL_OK;
    }
    busy *b = calloc((size_t)m->size, sizeof *b);
    size_t *queue = malloc(n * sizeof *queue);
    if (!b || !queue) {
        free(b), free(queue);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "mpi task queue");
    }
    for (size_t i = 0; i < n; i++) queue[i] = i;
    size_t head = 0, tail = n, completed = 0;
    int in_flight = 0;
    for (int w = 0; w < m->size; w++) b[w].task = -1;
    bl_status fail = BL_OK;
    char fail_msg[1024] = "";
    while ((completed < n && fail == BL_OK) || in_flight > 0) {
        /* Dynamic hand-out: one task per idle rank that may run this stage. */
        for (int w = 1; w < m->size && fail == BL_OK && head < tail; w++) {
            if (b[w].task >= 0 || !bl_caps_fit(&r->caps[w - 1], &st->hints)) continue;
            size_t ti = queue[head++ % n];
            bl_status s = send_task(m, &tasks[ti], w);
            if (s != BL_OK) {
                fail = bl_error_context(s, "sending bundle %zu of '%s' to rank %d", tasks[ti].index,
                                        st->label, w);
                snprintf(fail_msg, sizeof fail_msg, "%s", bl_last_error());
                break;
            }
            b[w].task = (long)ti;
            b[w].since = bl_time_now();
            in_flight++;
        }
        int flag = 0;
        MPI_Status mst;
        int rc = MPI_Iprobe(MPI_ANY_SOURCE, TAG_RESULT, m->comm, &flag, &mst);
        if (rc != MPI_SUCCESS) {
            comm_broken = true;
            free(b), free(queue);
            return mpi_fail(rc, "MPI_Iprobe");
        }
        if (!flag) {
            double now = bl_time_now();
            for (int w = 1; w < m->size; w++) {
                if (b[w].task >= 0 && m->timeout_s > 0 && now - b[w].since > m->timeout_s) {
                    /* Stop handing out work, let the live ranks finish what they hold, and
                     * never talk to this one again (a send to it could block forever). */
                    comm_broken = true;
                    m->dead[w] = true;
                    bl_status s =
                        bl_error(BL_ERR_IO,
                                 "mpi runner: rank %d (host %s) has not answered for "
                                 "%.0f s while running bundle %zu of '%s'; it is presumed dead, "
                                 "the run failed and no output was committed",
                                 w, m->info[w].host, now - b[w].since, tasks[b[w].task].index, st->label);
                    if (fail == BL_OK) {
                        fail = s;
                        snprintf(fail_msg, sizeof fail_msg, "%s", bl_last_error());
                    }
                    b[w].task = -1;
                    in_flight--;
                }
            }
            struct timespec ts = {0, 50 * 1000}; /* 50 us: latency matters more than one core */
            nanosleep(&ts, NULL);
            continue;
        }
        uint8_t *d = NULL;
        int size = 0;
        bl_status s = recv_msg(m->comm, mst.MPI_SOURCE, TAG_RESULT, &d, &size, &mst);
        int w = mst.MPI_SOURCE;
        long which = -1;
        bl_status ts = BL_OK;
        char err[1024] = "";
        if (s == BL_OK) s = read_result(d, (size_t)size, tasks, n, st->n_out, &which, &ts, err, sizeof err);
        free(d);
        if (s != BL_OK) {
            comm_broken = true;
            free(b), free(queue);
            return bl_error_context(s, "result from rank %d", w);
        }
        if (m->dead[w]) { /* a late answer from a rank already given up on */
            bl_task_clear(&tasks[which], st->n_out);
            continue;
        }
        b[w].task = -1;
        in_flight--;
        if (fail != BL_OK) {
            bl_task_clear(&tasks[which], st->n_out); /* draining after a failure */
        } else if (ts == BL_OK) {
            completed++;
        } else if (bl_retry_or_fail(plan, &tasks[which], ts, err, m->max_retries) != BL_OK) {
            fail = ts;
            snprintf(fail_msg, sizeof fail_msg, "%s", bl_last_error());
        } else {
            queue[tail++ % n] = (size_t)which;
        }
    }
    free(b), free(queue);
    return fail == BL_OK ? BL_OK : bl_error(fail, "%s", fail_msg);
}

/* ---- worker ranks ---------------------------------------------------------------------- */

static bl_status worker_loop(mpi_ctx *m, const bl_plan *plan, bl_status *final, char *final_msg, size_t cap,
                             bool *lost) {
    for (;;) {
        uint8_t *d = NULL;
        int size = 0;
        MPI_Status mst;
        BL_TRY(recv_msg(m->comm, 0, MPI_ANY_TAG, &d, &size, &mst));
        size_t pos = 0;
        if (mst.MPI_TAG == TAG_DONE) {
            uint64_t st = 0, l = 0;
            bl_status s = bl_read_varint(d, (size_t)size, &pos, &st);
            if (s == BL_OK) s = bl_read_varint(d, (size_t)size, &pos, &l);
            if (s == BL_OK) s = get_str(d, (size_t)size, &pos, final_msg, cap);
            *lost = l != 0;
            free(d);
            *final = (bl_status)st;
            return s;
        }
        if (mst.MPI_TAG != TAG_TASK) {
            free(d);
            return bl_error(BL_ERR_INTERNAL, "mpi runner: unexpected message tag %d", mst.MPI_TAG);
        }
        uint64_t stage = 0, index = 0, attempt = 0;
        bl_elist in = {0};
        bl_status s = bl_read_varint(d, (size_t)size, &pos, &stage);
        if (s == BL_OK) s = bl_read_varint(d, (size_t)size, &pos, &index);
        if (s == BL_OK) s = bl_read_varint(d, (size_t)size, &pos, &attempt);
        if (s == BL_OK) s = bl_elist_deserialize(d, (size_t)size, &pos, &in);
        free(d);
        if (s == BL_OK && stage >= (uint64_t)plan->ns)
            s = bl_error(BL_ERR_INTERNAL, "mpi runner: bad stage %llu", (unsigned long long)stage);
        if (s != BL_OK) return s;
        bl_task t = {.stage = (int)stage,
                     .index = (size_t)index,
                     .attempt = (int)attempt,
                     .in = bl_elist_view(&in, 0, in.n)};
        int n_out = plan->s[stage].n_out;
        bl_status ts = bl_exec_task(plan, &m->self, &t);
        bl_buf b = {0};
        s = bl_buf_put_varint(&b, index);
        if (s == BL_OK) s = bl_buf_put_varint(&b, (uint64_t)ts);
        if (ts != BL_OK) {
            if (s == BL_OK) s = put_str(&b, bl_last_error());
        } else {
            for (int k = 0; k < n_out && s == BL_OK; k++)
                s = bl_elist_serialize(bl_elist_view(&t.outs[k], 0, t.outs[k].n), &b);
            if (s == BL_OK) s = bl_metrics_serialize(&t.metrics, &b);
        }
        if (s == BL_OK) s = send_buf(m->comm, 0, TAG_RESULT, &b);
        bl_buf_free(&b);
        bl_task_clear(&t, n_out);
        free(t.outs);
        bl_elist_free(&in);
        if (s != BL_OK) return s;
    }
}

/* ---- setup: ranks, local ranks, accelerators ----------------------------------------------- */

static bl_status describe_ranks(mpi_ctx *m, const bl_pipeline *p) {
    MPI_Comm node;
    MPI_TRY(MPI_Comm_split_type(m->comm, MPI_COMM_TYPE_SHARED, m->rank, MPI_INFO_NULL, &node));
    int local = 0;
    int rc = MPI_Comm_rank(node, &local);
    int rc1 = MPI_Comm_size(node, &m->node_ranks);
    int rc2 = MPI_Comm_free(&node);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Comm_rank(node)");
    if (rc1 != MPI_SUCCESS) return mpi_fail(rc1, "MPI_Comm_size(node)");
    if (rc2 != MPI_SUCCESS) return mpi_fail(rc2, "MPI_Comm_free(node)");
    bl_worker_caps caps = bl_runopts_caps(&p->ro, m->rank);
    rank_info me = {caps.accelerators, (int)caps.accelerator_kind, local, caps.ram, ""};
    int len = 0;
    char host[MPI_MAX_PROCESSOR_NAME];
    MPI_TRY(MPI_Get_processor_name(host, &len));
    snprintf(me.host, sizeof me.host, "%.63s", host);
    m->info = calloc((size_t)m->size, sizeof *m->info);
    m->dead = calloc((size_t)m->size, sizeof *m->dead);
    if (!m->info || !m->dead) return bl_error(BL_ERR_OUT_OF_MEMORY, "rank table");
    MPI_TRY(MPI_Allgather(&me, (int)sizeof me, MPI_BYTE, m->info, (int)sizeof me, MPI_BYTE, m->comm));
    return BL_OK;
}

static void report_ranks(const mpi_ctx *m, int threads) {
    bl_log_info("mpi runner: %d ranks; rank 0 coordinates%s; %d compute thread(s) per rank", m->size,
                m->size == 1 ? " and works" : "", threads);
    for (int r = 0; r < m->size; r++) {
        const rank_info *i = &m->info[r];
        if (i->accelerators > 0)
            bl_log_info("  rank %d on %s, local rank %d: %d %s, binds accelerator %d", r, i->host,
                        i->local_rank, i->accelerators,
                        i->accelerator_kind == BL_ACCEL_TPU ? "TPU chip(s)" : "GPU(s)",
                        i->local_rank % i->accelerators);
        else
            bl_log_info("  rank %d on %s, local rank %d: no accelerator", r, i->host, i->local_rank);
    }
}

static bl_status run(bl_pipeline *p, mpi_ctx *m, bl_plan *plan) {
    BL_TRY(describe_ranks(m, p));
    /* The node's own count of its ranks settles the budget (bl_mpi_join read the launcher's). */
    p->threads = bl_thread_budget(bl_cpu_cores(), m->node_ranks, p->ro.threads_per_worker);
    if (m->rank == 0) report_ranks(m, p->threads);
    int nw = m->size > 1 ? m->size - 1 : 1;
    bl_worker_caps *caps = calloc((size_t)nw, sizeof *caps);
    if (!caps) return bl_error(BL_ERR_OUT_OF_MEMORY, "caps");
    for (int w = 0; w < nw; w++) {
        const rank_info *i = &m->info[m->size > 1 ? w + 1 : 0];
        caps[w] = (bl_worker_caps){i->accelerators, i->ram, (bl_accel_kind)i->accelerator_kind};
    }
    const rank_info *mine = &m->info[m->rank];
    bl_status s = bl_worker_init(
        &m->self, plan, m->rank,
        (bl_worker_caps){mine->accelerators, mine->ram, (bl_accel_kind)mine->accelerator_kind});
    if (s != BL_OK) {
        free(caps);
        return s;
    }
    bl_worker_bind(&m->self, mine->local_rank);
    /* This rank's ops run on this thread: its share of the node's cores, for the run. */
    int caller_threads = bl_compute_threads();
    bl_compute_threads_set(p->threads);
    bl_status final = BL_OK;
    char msg[1024] = "";
    if (m->rank == 0) {
        bl_runner r = {mpi_tasks, nw, caps, m};
        final = bl_execute(p, plan, &r);
        snprintf(msg, sizeof msg, "%s", final == BL_OK ? "" : bl_last_error());
        /* Tell every worker how it ended, then gather what their setup/teardown recorded. */
        bl_buf b = {0};
        bool lost = comm_broken;
        s = bl_buf_put_varint(&b, (uint64_t) final);
        if (s == BL_OK) s = bl_buf_put_varint(&b, lost);
        if (s == BL_OK) s = put_str(&b, msg);
        for (int w = 1; w < m->size && s == BL_OK; w++)
            if (!m->dead[w]) s = send_buf(m->comm, w, TAG_DONE, &b);
        bl_buf_free(&b);
        bl_worker_finish(&m->self);
        bl_metrics_merge(&p->metrics, &m->self.metrics);
        for (int w = 1; w < m->size && s == BL_OK; w++) {
            if (m->dead[w]) continue;
            uint8_t *d = NULL;
            int size = 0;
            MPI_Status mst;
            s = recv_msg(m->comm, w, TAG_FINAL, &d, &size, &mst);
            size_t pos = 0;
            if (s == BL_OK) s = bl_metrics_deserialize(d, (size_t)size, &pos, &p->metrics);
            free(d);
        }
    } else {
        p->coordinator = false;
        bool lost = false;
        s = worker_loop(m, plan, &final, msg, sizeof msg, &lost);
        if (lost) comm_broken = true; /* a peer is gone: finalizing would wait for it */
        bl_worker_finish(&m->self);
        bl_buf b = {0};
        if (s == BL_OK) s = bl_metrics_serialize(&m->self.metrics, &b);
        if (s == BL_OK) s = send_buf(m->comm, 0, TAG_FINAL, &b);
        bl_buf_free(&b);
    }
    bl_metrics_clear(&m->self.metrics);
    bl_compute_threads_set(caller_threads);
    free(caps);
    if (s != BL_OK) return s;
    return final == BL_OK ? BL_OK : bl_error(final, "%s", msg);
}

static bl_status init_once(void) {
    int init = 0;
    MPI_TRY(MPI_Initialized(&init));
    if (!init) {
        MPI_TRY(MPI_Init(NULL, NULL));
        atexit(finalize_at_exit); /* pipelines may run several times; finalize once, at exit */
    }
    return BL_OK;
}

/* Ranks on this node as the launcher says (Open MPI's local size, MPICH's), or 0. */
static int launcher_node_ranks(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 0) return atoi(v);
    }
    return 0;
}

bl_status bl_mpi_join(bl_pipeline *p) {
    BL_TRY(init_once());
    int rank = 0, size = 1;
    MPI_TRY(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    MPI_TRY(MPI_Comm_size(MPI_COMM_WORLD, &size));
    /* What a program prints before its run (a header, its plan) now appears once, on rank 0. */
    p->coordinator = rank == 0;
    p->ro.num_workers = size > 1 ? size - 1 : 1;
    int node = launcher_node_ranks();
    p->threads = bl_thread_budget(bl_cpu_cores(), node > 0 ? node : size, p->ro.threads_per_worker);
    return BL_OK;
}

bl_status bl_run_mpi(bl_pipeline *p) {
    BL_TRY(init_once());
    if (comm_broken)
        return bl_error(BL_ERR_IO, "mpi runner: an earlier run lost a rank; MPI cannot be used again");
    MPI_TRY(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    mpi_ctx m = {.max_retries = p->ro.max_retries, .timeout_s = p->ro.worker_timeout_s};
    MPI_TRY(MPI_Comm_dup(MPI_COMM_WORLD, &m.comm));
    MPI_TRY(MPI_Comm_set_errhandler(m.comm, MPI_ERRORS_RETURN));
    MPI_TRY(MPI_Comm_rank(m.comm, &m.rank));
    MPI_TRY(MPI_Comm_size(m.comm, &m.size));
    p->ro.num_workers = m.size > 1 ? m.size - 1 : 1;
    bl_plan plan;
    bl_status s = bl_plan_build(p, &plan);
    if (s == BL_OK) {
        s = run(p, &m, &plan);
        bl_plan_free(&plan);
    }
    free(m.info);
    free(m.dead);
    if (!comm_broken) {
        int rc = MPI_Comm_free(&m.comm);
        if (rc != MPI_SUCCESS && s == BL_OK) s = mpi_fail(rc, "MPI_Comm_free");
    }
    return s;
}
