/* The local runner: N worker threads that live for the whole run (so a DoFn is set up once per
 * thread, not per stage) and pull bundles from a shared queue. Each runs its ops with its share
 * of the cores (the pipeline's thread budget). A failed bundle goes back on the
 * queue with its attempt number raised, after its worker tore the DoFns down. The driver thread
 * waits with a timeout and logs a stall warning, naming what is in flight, when no bundle has
 * completed for --stall_timeout_s. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline/internal.h"

typedef struct local local;

typedef struct lworker {
    local *L;
    bl_worker w;
    pthread_t thread;
    int running_task; /* index into the current tasks, or -1 */
    double running_since;
} lworker;

struct local {
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    const bl_plan *plan;
    bl_task *tasks;
    size_t ntasks;
    size_t *queue; /* pending task indices */
    size_t nqueue;
    size_t completed, in_flight;
    int stage;
    bool failed, shutdown;
    bl_status fail_status;
    char fail_msg[1024];
    double last_progress;
    int max_retries;
    int threads; /* each worker's compute threads (the pipeline's budget) */
    lworker *workers;
    int nworkers;
    bl_pipeline *p;
};

/* The first queued task this worker's capabilities allow, or -1. */
static long pick(local *L, lworker *lw) {
    if (L->failed || !L->plan) return -1;
    if (!bl_caps_fit(&lw->w.caps, &L->plan->s[L->stage].hints)) return -1;
    if (L->nqueue == 0) return -1;
    size_t idx = L->queue[0];
    memmove(L->queue, L->queue + 1, (L->nqueue - 1) * sizeof *L->queue);
    L->nqueue--;
    return (long)idx;
}

static void *worker_main(void *arg) {
    lworker *lw = arg;
    local *L = lw->L;
    /* Before the first op: a new thread starts from OpenMP's process-wide default (every
     * core), which N workers would multiply by N. */
    bl_compute_threads_set(L->threads);
    pthread_mutex_lock(&L->mu);
    for (;;) {
        long ti = -1;
        while (!L->shutdown && (ti = pick(L, lw)) < 0) pthread_cond_wait(&L->work, &L->mu);
        if (L->shutdown) break;
        bl_task *task = &L->tasks[ti];
        lw->running_task = (int)ti;
        lw->running_since = bl_time_now();
        L->in_flight++;
        pthread_mutex_unlock(&L->mu);
        bl_status s = bl_exec_task(L->plan, &lw->w, task);
        char err[1024] = "";
        if (s != BL_OK) snprintf(err, sizeof err, "%s", bl_last_error());
        pthread_mutex_lock(&L->mu);
        L->in_flight--;
        lw->running_task = -1;
        if (s == BL_OK) {
            L->completed++;
            L->last_progress = bl_time_now();
        } else if (!L->failed) {
            bl_status f = bl_retry_or_fail(L->plan, task, s, err, L->max_retries);
            if (f != BL_OK) {
                L->failed = true;
                L->fail_status = f;
                snprintf(L->fail_msg, sizeof L->fail_msg, "%s", bl_last_error());
            } else {
                L->queue[L->nqueue++] = (size_t)ti;
                pthread_cond_broadcast(&L->work);
            }
        }
        pthread_cond_broadcast(&L->done);
    }
    pthread_mutex_unlock(&L->mu);
    bl_worker_finish(&lw->w); /* teardown on the thread that ran setup */
    return NULL;
}

static void warn_stall(local *L, double idle) {
    L->p->stall_warnings++;
    char what[512] = "";
    size_t n = 0;
    double now = bl_time_now();
    for (int i = 0; i < L->nworkers && n < sizeof what - 80; i++) {
        lworker *lw = &L->workers[i];
        if (lw->running_task >= 0)
            n += (size_t)snprintf(what + n, sizeof what - n, " [worker %d: bundle %zu for %.1f s]", i,
                                  L->tasks[lw->running_task].index, now - lw->running_since);
    }
    bl_log_warn("stall: no bundle of '%s' completed in %.1f s (%zu of %zu done, %zu queued);%s",
                L->plan->s[L->stage].label, idle, L->completed, L->ntasks, L->nqueue,
                n ? what : " nothing in flight");
}

static bl_status local_tasks(bl_runner *r, const bl_plan *plan, int stage, bl_task *tasks, size_t n) {
    local *L = r->self;
    size_t *queue = malloc(n * sizeof *queue);
    if (!queue) return bl_error(BL_ERR_OUT_OF_MEMORY, "task queue");
    for (size_t i = 0; i < n; i++) queue[i] = i;
    pthread_mutex_lock(&L->mu);
    L->plan = plan;
    L->stage = stage;
    L->tasks = tasks;
    L->ntasks = n;
    L->queue = queue;
    L->nqueue = n;
    L->completed = 0;
    L->last_progress = bl_time_now();
    pthread_cond_broadcast(&L->work);
    double tick = L->p->ro.stall_timeout_s > 0 ? L->p->ro.stall_timeout_s : 3600;
    if (tick > 1) tick = 1; /* wake at least every second to look for stalls */
    while (!(L->failed && L->in_flight == 0) && L->completed < n) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double t = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 + tick / 2;
        ts.tv_sec = (time_t)t;
        ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
        pthread_cond_timedwait(&L->done, &L->mu, &ts);
        double idle = bl_time_now() - L->last_progress;
        if (L->p->ro.stall_timeout_s > 0 && idle > L->p->ro.stall_timeout_s && L->completed < n &&
            !L->failed) {
            warn_stall(L, idle);
            L->last_progress = bl_time_now(); /* warn again after another quiet period */
        }
    }
    bl_status s = L->failed ? bl_error(L->fail_status, "%s", L->fail_msg) : BL_OK;
    L->plan = NULL;
    L->tasks = NULL;
    L->queue = NULL;
    L->nqueue = 0;
    L->failed = false;
    pthread_mutex_unlock(&L->mu);
    free(queue);
    return s;
}

bl_status bl_run_local(bl_pipeline *p) {
    bl_plan plan;
    BL_TRY(bl_plan_build(p, &plan));
    int nw = p->ro.num_workers > 0 ? p->ro.num_workers : 1;
    local L = {.max_retries = p->ro.max_retries, .threads = p->threads, .nworkers = nw, .p = p};
    pthread_mutex_init(&L.mu, NULL);
    pthread_cond_init(&L.work, NULL);
    pthread_cond_init(&L.done, NULL);
    L.workers = calloc((size_t)nw, sizeof *L.workers);
    bl_worker_caps *caps = calloc((size_t)nw, sizeof *caps);
    bl_status s = L.workers && caps ? BL_OK : bl_error(BL_ERR_OUT_OF_MEMORY, "workers");
    int started = 0;
    for (int i = 0; i < nw && s == BL_OK; i++) {
        caps[i] = bl_runopts_caps(&p->ro, i);
        L.workers[i].L = &L;
        L.workers[i].running_task = -1;
        s = bl_worker_init(&L.workers[i].w, &plan, i, caps[i]);
        if (s == BL_OK) bl_worker_bind(&L.workers[i].w, i);
        if (s == BL_OK && pthread_create(&L.workers[i].thread, NULL, worker_main, &L.workers[i]) != 0) {
            bl_worker_finish(&L.workers[i].w);
            s = bl_error(BL_ERR_INTERNAL, "cannot start worker thread %d", i);
        }
        if (s == BL_OK) started++;
    }
    bl_runner r = {local_tasks, nw, caps, &L};
    if (s == BL_OK) s = bl_execute(p, &plan, &r);
    pthread_mutex_lock(&L.mu);
    L.shutdown = true;
    pthread_cond_broadcast(&L.work);
    pthread_mutex_unlock(&L.mu);
    for (int i = 0; i < started; i++) {
        pthread_join(L.workers[i].thread, NULL);
        bl_metrics_merge(&p->metrics, &L.workers[i].w.metrics);
        bl_metrics_clear(&L.workers[i].w.metrics);
    }
    pthread_mutex_destroy(&L.mu);
    pthread_cond_destroy(&L.work);
    pthread_cond_destroy(&L.done);
    free(L.workers);
    free(caps);
    bl_plan_free(&plan);
    return s;
}
