/* The driver, shared by every runner: checks placement before anything starts, walks the
 * stages in order, cuts inputs into bundles or key partitions, hands them to the runner, joins
 * outputs in task order (so results do not depend on which worker was fastest), and commits
 * text shards only once the whole pipeline has succeeded. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pipeline/internal.h"

static bool is_task_stage(bl_skind k) {
    return k == BL_S_PARDO || k == BL_S_GBK || k == BL_S_CPARTIAL || k == BL_S_CMERGE || k == BL_S_WRITE;
}

static bl_status check_placement(const bl_plan *plan, const bl_runner *r) {
    for (int si = 0; si < plan->ns; si++) {
        const bl_stage *s = &plan->s[si];
        if (!is_task_stage(s->kind)) continue;
        const bl_hints *h = &s->hints;
        bool ok = false;
        int max_acc = 0, other = 0; /* the most accelerators of the hint's kind; workers with the other */
        uint64_t max_ram = 0;
        for (int w = 0; w < r->num_workers; w++) {
            const bl_worker_caps *c = &r->caps[w];
            ok = ok || bl_caps_fit(c, h);
            if (c->accelerator_kind == h->accelerator_kind && c->accelerators > max_acc)
                max_acc = c->accelerators;
            if (c->accelerator_kind != h->accelerator_kind && c->accelerators > 0) other++;
            if (c->ram > max_ram) max_ram = c->ram;
        }
        if (ok) continue;
        const char *name = plan->p->t[s->t[0]]->name;
        if (h->has_accelerator && max_acc < h->accelerator_count) {
            bool tpu = h->accelerator_kind == BL_ACCEL_TPU;
            char others[96] = "";
            if (other)
                snprintf(others, sizeof others, "; %d %s %s, which do not serve a %s hint", other,
                         other == 1 ? "worker has" : "workers have", tpu ? "GPUs" : "TPU chips",
                         tpu ? "TPU" : "GPU");
            return bl_error(
                BL_ERR_UNSUPPORTED,
                "transform '%s' needs accelerator type:%s count:%d%s%s, but no worker has %s (the "
                "most %s any of the %d workers has is %d%s; set --worker_accelerators%s); the "
                "pipeline did not start",
                name, h->accelerator_type, h->accelerator_count,
                h->accelerator_topology[0] ? " topology:" : "", h->accelerator_topology,
                h->accelerator_count > 1 ? "that many"
                : tpu                    ? "a TPU"
                                         : "one",
                tpu ? "TPU chips" : "GPUs", r->num_workers, max_acc, others,
                tpu ? "=tpu:1 on a TPU host" : "");
        }
        return bl_error(BL_ERR_UNSUPPORTED,
                        "transform '%s' needs min_ram=%llu bytes but the largest "
                        "of the %d workers has %llu (set --worker_ram); the pipeline did not start",
                        name, (unsigned long long)h->min_ram, r->num_workers, (unsigned long long)max_ram);
    }
    return BL_OK;
}

static uint64_t hash_bytes(const uint8_t *d, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a: stable across processes and runs */
    for (size_t i = 0; i < n; i++) h = (h ^ d[i]) * 1099511628211ull;
    return h;
}

/* Splits a KV list into key partitions so equal keys meet in one task. */
static bl_status partition(const bl_coder *kv, const bl_elist *in, int parts, bl_elist *out) {
    bl_eview v = bl_elist_view(in, 0, in->n);
    for (size_t i = 0; i < in->n; i++) {
        size_t size, klen;
        const uint8_t *d = bl_eview_at(v, i, &size);
        BL_TRY(bl_kv_key_len(kv, d, size, &klen));
        BL_TRY(bl_elist_push(&out[hash_bytes(d, klen) % (uint64_t)parts], d, size));
    }
    return BL_OK;
}

static bl_status shuffle(bl_elist *l, uint64_t seed) {
    if (l->n < 2) return BL_OK;
    size_t *perm = malloc(l->n * sizeof *perm);
    if (!perm) return bl_error(BL_ERR_OUT_OF_MEMORY, "shuffle");
    for (size_t i = 0; i < l->n; i++) perm[i] = i;
    bl_rng rng;
    bl_rng_seed(&rng, seed);
    for (size_t i = l->n - 1; i > 0; i--) {
        size_t j = (size_t)bl_rng_below(&rng, i + 1), x = perm[i];
        perm[i] = perm[j];
        perm[j] = x;
    }
    bl_elist out = {0};
    bl_eview v = bl_elist_view(l, 0, l->n);
    bl_status s = BL_OK;
    for (size_t i = 0; i < l->n && s == BL_OK; i++) {
        size_t size;
        const uint8_t *d = bl_eview_at(v, perm[i], &size);
        s = bl_elist_push(&out, d, size);
    }
    free(perm);
    if (s != BL_OK) {
        bl_elist_free(&out);
        return s;
    }
    bl_elist_free(l);
    *l = out;
    return BL_OK;
}

static size_t bundle_size(const bl_pipeline *p, size_t n, int workers) {
    if (p->ro.bundle_size > 0) return (size_t)p->ro.bundle_size;
    size_t b = (n + (size_t)workers * 4 - 1) / ((size_t)workers * 4);
    return b < 1 ? 1 : b > 10000 ? 10000 : b;
}

static bl_status run_task_stage(bl_plan *plan, int si, bl_runner *r, bl_elist *slots) {
    bl_pipeline *p = plan->p;
    bl_stage *st = &plan->s[si];
    const bl_transform *t0 = p->t[st->t[0]];
    bl_elist *in = &slots[st->in_slot];
    bl_elist *parts = NULL;
    size_t ntasks;
    if (st->kind == BL_S_GBK || (st->kind == BL_S_CMERGE && !st->global)) {
        ntasks = (size_t)r->num_workers * 2;
        parts = calloc(ntasks, sizeof *parts);
        if (!parts) return bl_error(BL_ERR_OUT_OF_MEMORY, "partitions");
        const bl_coder *kv = st->kind == BL_S_GBK ? p->pc[st->in_slot]->coder
                                                  : bl_coder_kv(bl_coder_key(p->pc[t0->inputs[0]]->coder),
                                                                t0->cfn.accumulator_coder);
        bl_status s = partition(kv, in, (int)ntasks, parts);
        if (s != BL_OK) {
            for (size_t i = 0; i < ntasks; i++) bl_elist_free(&parts[i]);
            free(parts);
            return bl_error_context(s, "%s '%s'", t0->kind_name, t0->name);
        }
    } else if (st->kind == BL_S_WRITE) {
        ntasks = (size_t)t0->num_shards;
    } else if (st->kind == BL_S_CMERGE) {
        ntasks = 1;
    } else {
        size_t bs = bundle_size(p, in->n, r->num_workers);
        ntasks = (in->n + bs - 1) / bs;
    }
    bl_task *tasks = calloc(ntasks ? ntasks : 1, sizeof *tasks);
    if (!tasks) {
        free(parts);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "tasks");
    }
    for (size_t i = 0; i < ntasks; i++) {
        tasks[i].stage = si;
        tasks[i].index = i;
        tasks[i].attempt = 1;
        if (parts) {
            tasks[i].in = bl_elist_view(&parts[i], 0, parts[i].n);
        } else if (st->kind == BL_S_CMERGE) {
            tasks[i].in = bl_elist_view(in, 0, in->n);
        } else {
            size_t per = st->kind == BL_S_WRITE ? (in->n + ntasks - 1) / ntasks
                                                : bundle_size(p, in->n, r->num_workers);
            size_t a = i * per < in->n ? i * per : in->n, e = a + per < in->n ? a + per : in->n;
            tasks[i].in = bl_elist_view(in, a, e);
        }
    }
    bl_log_debug("stage '%s': %zu tasks over %zu elements", st->label, ntasks, in->n);
    bl_status s = ntasks ? r->run_tasks(r, plan, si, tasks, ntasks) : BL_OK;
    for (size_t i = 0; i < ntasks && s == BL_OK; i++) {
        for (int k = 0; k < st->n_out && s == BL_OK; k++)
            s = bl_elist_append_view(&slots[st->out_slots[k]],
                                     bl_elist_view(&tasks[i].outs[k], 0, tasks[i].outs[k].n));
        bl_metrics_merge(&p->metrics, &tasks[i].metrics);
    }
    for (size_t i = 0; i < ntasks; i++) {
        bl_task_clear(&tasks[i], st->n_out);
        free(tasks[i].outs);
        free(tasks[i].err);
    }
    free(tasks);
    if (parts) {
        for (size_t i = 0; i < ntasks; i++) bl_elist_free(&parts[i]);
        free(parts);
    }
    return s;
}

static bl_status run_driver_stage(bl_plan *plan, int si, bl_elist *slots) {
    bl_pipeline *p = plan->p;
    bl_stage *st = &plan->s[si];
    const bl_transform *t = p->t[st->t[0]];
    bl_elist *out = &slots[st->out_slots[0]];
    switch (st->kind) {
        case BL_S_CREATE:
            return bl_elist_append_view(out, bl_elist_view(&t->create_data, 0, t->create_data.n));
        case BL_S_READ:
            return bl_error_context(bl_read_text_files(t->path, out), "ReadFromText '%s'", t->name);
        case BL_S_FLATTEN:
            for (int k = 0; k < t->n_inputs; k++)
                BL_TRY(
                    bl_elist_append_view(out, bl_elist_view(&slots[t->inputs[k]], 0, slots[t->inputs[k]].n)));
            return BL_OK;
        case BL_S_RESHUFFLE:
            /* Materializing here is the fusion break; the next stage cuts fresh, even bundles. */
            return bl_elist_append_view(out, bl_elist_view(&slots[st->in_slot], 0, slots[st->in_slot].n));
        default: return bl_error(BL_ERR_INTERNAL, "stage '%s' is not a driver stage", st->label);
    }
}

bl_status bl_execute(bl_pipeline *p, bl_plan *plan, bl_runner *r) {
    BL_TRY(check_placement(plan, r));
    if (!plan->run_token) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        plan->run_token =
            ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 40);
    }
    bool shuffle_on = p->ro.shuffle && strcmp(p->ro.runner, "direct") == 0;
    if (shuffle_on)
        bl_log_info("direct runner: shuffling element order with seed %llu",
                    (unsigned long long)p->ro.shuffle_seed);
    bl_elist *slots = calloc((size_t)plan->nslots + 1, sizeof *slots);
    int *left = malloc(((size_t)plan->nslots + 1) * sizeof *left);
    if (!slots || !left) {
        free(slots), free(left);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "slots");
    }
    memcpy(left, plan->slot_consumers, (size_t)plan->nslots * sizeof *left);
    bl_status s = BL_OK;
    for (int si = 0; si < plan->ns && s == BL_OK; si++) {
        bl_stage *st = &plan->s[si];
        s = is_task_stage(st->kind) ? run_task_stage(plan, si, r, slots) : run_driver_stage(plan, si, slots);
        for (int k = 0; k < st->n_out && s == BL_OK && shuffle_on; k++)
            s = shuffle(&slots[st->out_slots[k]], p->ro.shuffle_seed * 1000003u + (uint64_t)st->out_slots[k]);
        /* Free inputs nobody else reads, so long pipelines do not hold every stage at once. */
        const bl_transform *t = p->t[st->t[0]];
        int ins[1024], nin = 0;
        if (st->kind == BL_S_FLATTEN)
            for (int k = 0; k < t->n_inputs && nin < 1024; k++) ins[nin++] = t->inputs[k];
        else if (st->in_slot >= 0)
            ins[nin++] = st->in_slot;
        for (int k = 0; k < nin; k++)
            if (--left[ins[k]] == 0 && !(ins[k] < p->npc && p->pc[ins[k]]->collect))
                bl_elist_free(&slots[ins[k]]);
    }
    if (s == BL_OK) s = bl_commit_text(plan, slots);
    for (int i = 0; i < p->npc; i++) {
        if (s == BL_OK && p->pc[i]->collect) {
            p->pc[i]->result = slots[i];
            memset(&slots[i], 0, sizeof slots[i]);
        }
    }
    for (int i = 0; i < plan->nslots; i++) bl_elist_free(&slots[i]);
    free(slots);
    free(left);
    return s;
}

bl_status bl_retry_or_fail(const bl_plan *plan, bl_task *task, bl_status status, const char *err,
                           int max_retries) {
    const bl_stage *st = &plan->s[task->stage];
    /* A deterministic failure (a bad argument, a missing or malformed file, an unsupported
     * device) would fail the same way again: fail now, once, with its own message. */
    if (!bl_status_transient(status))
        return bl_error(status, "'%s' failed (%s, not retried): %s", st->label, bl_status_name(status), err);
    if (task->attempt > max_retries)
        return bl_error(status, "'%s' failed after %d attempts of bundle %zu: %s", st->label, task->attempt,
                        task->index, err);
    bl_log_warn("bundle %zu of '%s' failed (attempt %d of %d), retrying after teardown: %s", task->index,
                st->label, task->attempt, max_retries + 1, err);
    task->attempt++;
    return BL_OK;
}
