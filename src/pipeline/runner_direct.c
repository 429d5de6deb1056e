/* The direct runner: one worker on the calling thread. It is the strict one: every element is
 * decoded and re-encoded to check its coder round-trips, and --shuffle_seed permutes every
 * PCollection so code that leans on element order fails here rather than on a cluster. */
#include <stdlib.h>
#include <string.h>

#include "pipeline/internal.h"

typedef struct direct {
    bl_worker w;
    int max_retries;
} direct;

static bl_status direct_tasks(bl_runner *r, const bl_plan *plan, int stage, bl_task *tasks, size_t n) {
    direct *d = r->self;
    for (size_t i = 0; i < n; i++) {
        for (;;) {
            bl_status s = bl_exec_task(plan, &d->w, &tasks[i]);
            if (s == BL_OK) break;
            char err[1024];
            snprintf(err, sizeof err, "%s", bl_last_error());
            BL_TRY(bl_retry_or_fail(plan, &tasks[i], s, err, d->max_retries));
        }
    }
    (void)stage;
    return BL_OK;
}

bl_status bl_run_direct(bl_pipeline *p) {
    bl_plan plan;
    BL_TRY(bl_plan_build(p, &plan));
    direct d = {.max_retries = p->ro.max_retries};
    bl_worker_caps caps = bl_runopts_caps(&p->ro, 0);
    bl_status s = bl_worker_init(&d.w, &plan, 0, caps);
    if (s != BL_OK) {
        bl_plan_free(&plan);
        return s;
    }
    d.w.roundtrip_check = true;
    bl_runner r = {direct_tasks, 1, &caps, &d};
    /* The worker is the calling thread: only an explicit --threads_per_worker changes its
     * threads, and only for the run. */
    int caller_threads = bl_compute_threads();
    if (p->ro.threads_per_worker > 0) bl_compute_threads_set(p->threads);
    s = bl_execute(p, &plan, &r);
    bl_compute_threads_set(caller_threads);
    bl_worker_finish(&d.w);
    bl_metrics_merge(&p->metrics, &d.w.metrics);
    bl_metrics_clear(&d.w.metrics);
    bl_plan_free(&plan);
    return s;
}

#ifndef BEAMLET_HAVE_MPI
bl_status bl_mpi_join(bl_pipeline *p) {
    (void)p;
    return BL_OK; /* bl_run_mpi below says why it cannot run */
}

bl_status bl_run_mpi(bl_pipeline *p) {
    (void)p;
    return bl_error(BL_ERR_UNSUPPORTED,
                    "--runner=mpi: beamlet was built without MPI (install "
                    "Open MPI, e.g. scripts/setup.sh, and reconfigure); use --runner=local or direct");
}
#endif
