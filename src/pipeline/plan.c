/* Planning: turns the graph into stages in dependency order. Chains of ParDos fuse into one
 * stage when each link's main output feeds only the next ParDo and their resource hints agree
 * (a hinted transform must be free to run on other workers than its neighbours). Combines
 * expand into a lifted partial stage and a merge stage joined by an internal slot. */
#include <stdlib.h>
#include <string.h>

#include "pipeline/internal.h"

static bool same_hints(const bl_hints *a, const bl_hints *b) {
    return a->has_accelerator == b->has_accelerator && a->accelerator_count == b->accelerator_count &&
           strcmp(a->accelerator_type, b->accelerator_type) == 0 &&
           strcmp(a->accelerator_topology, b->accelerator_topology) == 0 && a->min_ram == b->min_ram;
}

static bl_stage *add_stage(bl_plan *pl, bl_skind kind, const bl_transform *t, int in_slot) {
    bl_stage *s = &pl->s[pl->ns++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->t[0] = t->id;
    s->nt = 1;
    s->in_slot = in_slot;
    s->hints = t->hints;
    for (int j = 0; j < BL_MAX_CHAIN; j++)
        for (int k = 0; k < BL_MAX_OUTPUTS; k++) s->out_map[j][k] = -1;
    return s;
}

bl_status bl_plan_build(bl_pipeline *p, bl_plan *pl) {
    memset(pl, 0, sizeof *pl);
    pl->p = p;
    pl->s = calloc((size_t)(2 * p->nt + 1), sizeof *pl->s);
    pl->slot_consumers = calloc((size_t)(p->npc + p->nt + 1), sizeof(int));
    if (!pl->s || !pl->slot_consumers) {
        bl_plan_free(pl);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "plan");
    }
    pl->nslots = p->npc;
    int *stage_of = calloc((size_t)p->nt + 1, sizeof(int)); /* transform -> stage, for fusion */
    if (!stage_of) {
        bl_plan_free(pl);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "plan");
    }
    for (int i = 0; i < p->nt; i++) {
        const bl_transform *t = p->t[i];
        int in = t->n_inputs ? t->inputs[0] : -1;
        bl_stage *s = NULL;
        switch (t->kind) {
            case BL_T_CREATE: s = add_stage(pl, BL_S_CREATE, t, -1); break;
            case BL_T_READ_TEXT: s = add_stage(pl, BL_S_READ, t, -1); break;
            case BL_T_FLATTEN: s = add_stage(pl, BL_S_FLATTEN, t, -1); break;
            case BL_T_RESHUFFLE: s = add_stage(pl, BL_S_RESHUFFLE, t, in); break;
            case BL_T_GBK: s = add_stage(pl, BL_S_GBK, t, in); break;
            case BL_T_WRITE_TEXT:
                /* Shard texts wait in an internal slot; the driver writes them at commit. */
                s = add_stage(pl, BL_S_WRITE, t, in);
                s->out_slots[s->n_out++] = pl->nslots++;
                break;
            case BL_T_COMBINE_GLOBAL:
            case BL_T_COMBINE_PERKEY: {
                int mid = pl->nslots++;
                s = add_stage(pl, BL_S_CPARTIAL, t, in);
                s->global = t->kind == BL_T_COMBINE_GLOBAL;
                s->out_slots[s->n_out++] = mid;
                s = add_stage(pl, BL_S_CMERGE, t, mid);
                s->global = t->kind == BL_T_COMBINE_GLOBAL;
                break;
            }
            case BL_T_PARDO: {
                const bl_pcoll *src = p->pc[in];
                const bl_transform *prod = p->t[src->producer];
                bl_stage *prev = prod->kind == BL_T_PARDO ? &pl->s[stage_of[prod->id]] : NULL;
                if (prev && prev->kind == BL_S_PARDO && prev->t[prev->nt - 1] == prod->id &&
                    src->out_index == 0 && src->consumers == 1 && !src->collect && prev->nt < BL_MAX_CHAIN &&
                    same_hints(&prev->hints, &t->hints)) {
                    prev->t[prev->nt++] = t->id;
                    stage_of[i] = (int)(prev - pl->s);
                    continue;
                }
                s = add_stage(pl, BL_S_PARDO, t, in);
                break;
            }
        }
        stage_of[i] = (int)(s - pl->s);
        if (s->kind != BL_S_PARDO && s->kind != BL_S_WRITE)
            for (int k = 0; k < t->n_outputs; k++) s->out_slots[s->n_out++] = t->outputs[k];
    }
    free(stage_of);
    /* Which chain outputs materialize (everything but a link's main output into the next). */
    for (int si = 0; si < pl->ns; si++) {
        bl_stage *s = &pl->s[si];
        if (s->kind == BL_S_PARDO) {
            for (int j = 0; j < s->nt; j++) {
                const bl_transform *t = p->t[s->t[j]];
                for (int k = 0; k < t->n_outputs; k++) {
                    if (k == 0 && j + 1 < s->nt) continue;
                    s->out_map[j][k] = s->n_out;
                    s->out_slots[s->n_out++] = t->outputs[k];
                }
            }
        }
        const bl_transform *t0 = p->t[s->t[0]];
        int len = snprintf(s->label, sizeof s->label, "%s", t0->name);
        for (int j = 1; j < s->nt && len > 0 && (size_t)len < sizeof s->label; j++)
            len += snprintf(s->label + len, sizeof s->label - (size_t)len, "+%s", p->t[s->t[j]]->name);
        if ((s->kind == BL_S_CPARTIAL || s->kind == BL_S_CMERGE) && len > 0 && (size_t)len < sizeof s->label)
            snprintf(s->label + len, sizeof s->label - (size_t)len,
                     s->kind == BL_S_CPARTIAL ? " (partial)" : " (merge)");
        if (s->kind == BL_S_FLATTEN) {
            for (int k = 0; k < t0->n_inputs; k++) pl->slot_consumers[t0->inputs[k]]++;
        } else if (s->in_slot >= 0) {
            pl->slot_consumers[s->in_slot]++;
        }
    }
    return BL_OK;
}

void bl_plan_free(bl_plan *pl) {
    free(pl->s);
    free(pl->slot_consumers);
    memset(pl, 0, sizeof *pl);
}
