/* The cost-versus-speed cheat sheet: bench results + prices -> rows -> a Markdown table.
 * The SVG charts are in cheatsheet_svg.c. Every row remembers whether it was measured by
 * `beamlet bench` or is an estimate from elsewhere, and where it came from, because the point
 * of the table is that a reader can tell the two apart. */
#include "cheatsheet.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "beamlet/json.h"
#include "beamlet/pipeline.h"

typedef struct price {
    char device[64], kind[16], match[64], source[BL_CHEATSHEET_TEXT], date[40];
    double usd_per_hour;
} price;

typedef struct price_map {
    char device[64], price_device[64];
} price_map;

struct bl_cheatsheet {
    bl_cheatsheet_row *rows;
    int nrows, caprows;
    price *prices;
    int nprices;
    char cpu_default[64];
    char currency[8];
    price_map maps[16];
    int nmaps;
};

bl_status bl_cheatsheet_new(bl_cheatsheet **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return bl_error(BL_ERR_OUT_OF_MEMORY, "cheatsheet");
    snprintf((*out)->currency, sizeof(*out)->currency, "USD");
    return BL_OK;
}

void bl_cheatsheet_free(bl_cheatsheet *cs) {
    if (!cs) return;
    free(cs->rows);
    free(cs->prices);
    free(cs);
}

int bl_cheatsheet_row_count(const bl_cheatsheet *cs) { return cs->nrows; }
const bl_cheatsheet_row *bl_cheatsheet_row_at(const bl_cheatsheet *cs, int i) {
    return i >= 0 && i < cs->nrows ? &cs->rows[i] : NULL;
}

/* ---- small JSON helpers ------------------------------------------------------------------ */

static const bl_json *get(const bl_json *v, const char *k1, const char *k2) {
    v = v ? bl_json_object_get(v, k1) : NULL;
    if (v && k2) v = bl_json_object_get(v, k2);
    return v;
}

/* A number, or -1 when absent or null (unmeasured figures are written as null). */
static double num(const bl_json *v, const char *k1, const char *k2) {
    const bl_json *x = get(v, k1, k2);
    return x && bl_json_type_of(x) == BL_JSON_NUMBER ? bl_json_number(x) : -1.0;
}

static void str(const bl_json *v, const char *k1, const char *k2, char *out, size_t n) {
    const bl_json *x = get(v, k1, k2);
    snprintf(out, n, "%s", x && bl_json_type_of(x) == BL_JSON_STRING ? bl_json_string(x) : "");
}

static bool str_is(const bl_json *v, const char *k1, const char *k2, const char *want) {
    const bl_json *x = get(v, k1, k2);
    return x && bl_json_type_of(x) == BL_JSON_STRING && strcmp(bl_json_string(x), want) == 0;
}

static bool contains_ci(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    if (!n) return false;
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] && tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i])) i++;
        if (i == n) return true;
    }
    return false;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* ---- results ----------------------------------------------------------------------------- */

static bl_status add_row(bl_cheatsheet *cs, bl_cheatsheet_row **out) {
    if (cs->nrows == cs->caprows) {
        int cap = cs->caprows ? 2 * cs->caprows : 8;
        bl_cheatsheet_row *r = realloc(cs->rows, (size_t)cap * sizeof *r);
        if (!r) return bl_error(BL_ERR_OUT_OF_MEMORY, "cheatsheet rows");
        cs->rows = r;
        cs->caprows = cap;
    }
    *out = &cs->rows[cs->nrows++];
    memset(*out, 0, sizeof **out);
    return BL_OK;
}

bl_status bl_cheatsheet_add_results_json(bl_cheatsheet *cs, const char *text, size_t len, const char *name) {
    bl_json *root;
    if (bl_json_parse(text, len, &root) != BL_OK) return bl_error_context(BL_ERR_FORMAT, "%s", name);
    bl_status s = BL_OK;
    const bl_json *devices = bl_json_object_get(root, "devices");
    if (!str_is(root, "schema", NULL, "beamlet-bench/1")) {
        s = bl_error(BL_ERR_FORMAT,
                     "%s: not a beamlet bench results file (\"schema\" is not \"beamlet-bench/1\")", name);
        goto done;
    }
    if (!devices || bl_json_type_of(devices) != BL_JSON_ARRAY) {
        s = bl_error(BL_ERR_FORMAT, "%s: \"devices\" must be an array", name);
        goto done;
    }
    bool estimate_file = str_is(root, "kind", NULL, "estimate");
    char file_source[BL_CHEATSHEET_TEXT], date[40];
    str(root, "source", NULL, file_source, sizeof file_source);
    str(root, "date", NULL, date, sizeof date);
    if (estimate_file && !*file_source) {
        s = bl_error(BL_ERR_FORMAT, "%s: an estimate file must say where its figures come from (\"source\")",
                     name);
        goto done;
    }
    for (size_t i = 0; i < bl_json_len(devices); i++) {
        const bl_json *d = bl_json_array_at(devices, i);
        if (bl_json_type_of(d) != BL_JSON_OBJECT || !get(d, "device", NULL)) {
            s = bl_error(BL_ERR_FORMAT, "%s: devices[%zu] must be an object with a \"device\"", name, i);
            goto done;
        }
        bl_cheatsheet_row *r = NULL;
        if ((s = add_row(cs, &r)) != BL_OK) goto done;
        str(d, "device", NULL, r->device, sizeof r->device);
        str(d, "label", NULL, r->label, sizeof r->label);
        if (!*r->label) snprintf(r->label, sizeof r->label, "%s", r->device);
        str(d, "description", NULL, r->description, sizeof r->description);
        r->is_cpu = str_is(d, "kind", NULL, "cpu");
        /* A device counts as measured only in a measured file and when it does not say otherwise. */
        const bl_json *m = get(d, "measured", NULL);
        r->measured = !estimate_file && !(m && bl_json_type_of(m) == BL_JSON_BOOL && !bl_json_bool(m));
        char dev_source[BL_CHEATSHEET_TEXT];
        str(d, "source", NULL, dev_source, sizeof dev_source);
        const char *origin = *dev_source ? dev_source : file_source;
        if (!r->measured && !*origin) {
            cs->nrows--;
            s = bl_error(BL_ERR_FORMAT, "%s: devices[%zu] is not measured but names no \"source\"", name, i);
            goto done;
        }
        if (*origin)
            snprintf(r->source, sizeof r->source, "%.60s (%.190s)", base_name(name), origin);
        else
            snprintf(r->source, sizeof r->source, "%s", base_name(name));
        snprintf(r->date, sizeof r->date, "%s", date);
        const bl_json *inf = get(d, "inference", NULL);
        r->infer_cifar_img_s = num(inf, "cifar_resnet18", "img_per_s");
        r->infer_224_img_s = num(inf, "imagenet_resnet18", "img_per_s");
        const bl_json *tr = get(d, "training", NULL);
        r->epoch_s = num(tr, "epoch_seconds", NULL);
        r->train10_s = num(tr, "ten_epoch_seconds", NULL);
        if (r->train10_s < 0 && r->epoch_s > 0) r->train10_s = 10 * r->epoch_s;
        r->train_scaled = str_is(tr, "method", NULL, "measured_per_step_and_scaled");
        const bl_json *tta = get(d, "time_to_accuracy", NULL);
        /* A measured file's time to accuracy counts only from a full run or a labelled
         * extrapolation; a smoke test on a subset ("measured_on_subset") is no such figure. */
        r->tta_s = num(tta, "seconds", NULL);
        if (!estimate_file && !str_is(tta, "method", NULL, "measured") &&
            !str_is(tta, "method", NULL, "extrapolated"))
            r->tta_s = -1;
        r->tta_target = num(tta, "target", NULL);
        r->tta_extrapolated = str_is(tta, "method", NULL, "extrapolated");
        r->first_prediction_s = num(d, "time_to_first_prediction", "seconds");
        r->usd_per_hour = r->cost_per_job_usd = r->speedup_vs_cpu = -1;
    }
done:
    bl_json_free(root);
    return s;
}

bl_status bl_cheatsheet_add_results(bl_cheatsheet *cs, const char *path) {
    void *data;
    size_t size;
    BL_TRY(bl_file_read_all(path, &data, &size));
    bl_status s = bl_cheatsheet_add_results_json(cs, data, size, path);
    free(data);
    return s;
}

/* ---- prices ------------------------------------------------------------------------------ */

bl_status bl_cheatsheet_load_prices_json(bl_cheatsheet *cs, const char *text, size_t len, const char *name) {
    bl_json *root;
    if (bl_json_parse(text, len, &root) != BL_OK) return bl_error_context(BL_ERR_FORMAT, "%s", name);
    bl_status s = BL_OK;
    const bl_json *list = bl_json_object_get(root, "prices");
    if (!list || bl_json_type_of(list) != BL_JSON_ARRAY) {
        s = bl_error(BL_ERR_FORMAT, "%s: \"prices\" must be an array", name);
        goto done;
    }
    str(root, "cpu_default", NULL, cs->cpu_default, sizeof cs->cpu_default);
    char cur[8];
    str(root, "currency", NULL, cur, sizeof cur);
    if (*cur) snprintf(cs->currency, sizeof cs->currency, "%s", cur);
    price *p = realloc(cs->prices, (size_t)(cs->nprices + (int)bl_json_len(list) + 1) * sizeof *p);
    if (!p) {
        s = bl_error(BL_ERR_OUT_OF_MEMORY, "prices");
        goto done;
    }
    cs->prices = p;
    for (size_t i = 0; i < bl_json_len(list); i++) {
        const bl_json *e = bl_json_array_at(list, i);
        price *q = &cs->prices[cs->nprices];
        memset(q, 0, sizeof *q);
        str(e, "device", NULL, q->device, sizeof q->device);
        str(e, "kind", NULL, q->kind, sizeof q->kind);
        str(e, "match", NULL, q->match, sizeof q->match);
        str(e, "source", NULL, q->source, sizeof q->source);
        str(e, "date", NULL, q->date, sizeof q->date);
        q->usd_per_hour = num(e, "usd_per_hour", NULL);
        if (!*q->device || q->usd_per_hour < 0 || !*q->source) {
            s = bl_error(BL_ERR_FORMAT,
                         "%s: prices[%zu] needs \"device\", \"usd_per_hour\" >= 0 and \"source\"", name, i);
            goto done;
        }
        cs->nprices++;
    }
done:
    bl_json_free(root);
    return s;
}

bl_status bl_cheatsheet_load_prices(bl_cheatsheet *cs, const char *path) {
    void *data;
    size_t size;
    BL_TRY(bl_file_read_all(path, &data, &size));
    bl_status s = bl_cheatsheet_load_prices_json(cs, data, size, path);
    free(data);
    return s;
}

bl_status bl_cheatsheet_map_price(bl_cheatsheet *cs, const char *device, const char *price_device) {
    if (cs->nmaps == (int)(sizeof cs->maps / sizeof cs->maps[0]))
        return bl_error(BL_ERR_INVALID_ARG, "too many price mappings (at most 16)");
    snprintf(cs->maps[cs->nmaps].device, sizeof cs->maps[0].device, "%s", device);
    snprintf(cs->maps[cs->nmaps].price_device, sizeof cs->maps[0].price_device, "%s", price_device);
    cs->nmaps++;
    return BL_OK;
}

static const price *find_price(const bl_cheatsheet *cs, const char *name) {
    for (int i = 0; i < cs->nprices; i++)
        if (strcmp(cs->prices[i].device, name) == 0) return &cs->prices[i];
    return NULL;
}

static bl_status price_for(const bl_cheatsheet *cs, const bl_cheatsheet_row *r, const price **out) {
    *out = NULL;
    for (int i = 0; i < cs->nmaps; i++)
        if (strcmp(cs->maps[i].device, r->device) == 0) {
            if (!(*out = find_price(cs, cs->maps[i].price_device)))
                return bl_error(BL_ERR_NOT_FOUND, "price mapping %s=%s: the prices file has no \"%s\"",
                                cs->maps[i].device, cs->maps[i].price_device, cs->maps[i].price_device);
            return BL_OK;
        }
    /* A CPU is priced as a CPU machine (its label says how many logical CPUs), an accelerator as
     * a machine with that accelerator: never one as the other. */
    for (int i = 0; i < cs->nprices; i++) {
        const price *p = &cs->prices[i];
        if ((strcmp(p->kind, "cpu") == 0) != r->is_cpu) continue;
        if (contains_ci(r->label, p->match) ||
            (!r->is_cpu && (contains_ci(r->description, p->match) || contains_ci(r->device, p->match)))) {
            *out = p;
            return BL_OK;
        }
    }
    if (r->is_cpu && *cs->cpu_default) *out = find_price(cs, cs->cpu_default);
    return BL_OK;
}

bl_status bl_cheatsheet_compute(bl_cheatsheet *cs) {
    /* Measured rows first, estimates after, each group in the order it was added. */
    for (int i = 1; i < cs->nrows; i++) {
        bl_cheatsheet_row r = cs->rows[i];
        int j = i;
        while (j > 0 && !cs->rows[j - 1].measured && r.measured) {
            cs->rows[j] = cs->rows[j - 1];
            j--;
        }
        cs->rows[j] = r;
    }
    double cpu10 = -1;
    for (int i = 0; i < cs->nrows && cpu10 < 0; i++)
        if (cs->rows[i].measured && cs->rows[i].is_cpu && cs->rows[i].train10_s > 0)
            cpu10 = cs->rows[i].train10_s;
    /* Estimates sharing a source share a footnote number, in order of first appearance. */
    int notes = 0;
    for (int i = 0; i < cs->nrows; i++) {
        bl_cheatsheet_row *r = &cs->rows[i];
        r->note = 0;
        for (int j = 0; j < i && !r->measured && !r->note; j++)
            if (!cs->rows[j].measured && strcmp(cs->rows[j].source, r->source) == 0)
                r->note = cs->rows[j].note;
        if (!r->measured && !r->note) r->note = ++notes;
    }
    for (int i = 0; i < cs->nrows; i++) {
        bl_cheatsheet_row *r = &cs->rows[i];
        const price *p;
        BL_TRY(price_for(cs, r, &p));
        r->usd_per_hour = p ? p->usd_per_hour : -1;
        snprintf(r->price_name, sizeof r->price_name, "%s", p ? p->device : "");
        if (p) snprintf(r->price_source, sizeof r->price_source, "%.200s, %.40s", p->source, p->date);
        r->cost_per_job_usd = p && r->train10_s > 0 ? p->usd_per_hour * r->train10_s / 3600.0 : -1;
        r->speedup_vs_cpu = cpu10 > 0 && r->train10_s > 0 ? cpu10 / r->train10_s : -1;
    }
    return BL_OK;
}

/* ---- Markdown ---------------------------------------------------------------------------- */

void bl_cheatsheet_format_duration(double s, char *buf, size_t n) {
    if (s < 0)
        snprintf(buf, n, "—");
    else if (s < 10)
        snprintf(buf, n, "%.2g s", s);
    else if (s < 120)
        snprintf(buf, n, "%.0f s", s);
    else if (s < 3600)
        snprintf(buf, n, "%.1f min", s / 60);
    else
        snprintf(buf, n, "%.1f h", s / 3600);
}

/* 12345.6 -> "12,346"; below 100 one decimal, so a slow CPU still shows its digits. */
static void fmt_rate(double v, char *buf, size_t n) {
    if (v < 0) {
        snprintf(buf, n, "—");
        return;
    }
    if (v < 100) {
        snprintf(buf, n, "%.1f", v);
        return;
    }
    char digits[32], out[48];
    snprintf(digits, sizeof digits, "%.0f", v);
    size_t len = strlen(digits), k = 0;
    for (size_t i = 0; i < len; i++) {
        if (i && (len - i) % 3 == 0) out[k++] = ',';
        out[k++] = digits[i];
    }
    out[k] = 0;
    snprintf(buf, n, "%s", out);
}

static void fmt_money(double v, char *buf, size_t n) {
    if (v < 0)
        snprintf(buf, n, "—");
    else if (v < 0.01)
        snprintf(buf, n, "$%.4f", v);
    else if (v < 1)
        snprintf(buf, n, "$%.3f", v);
    else
        snprintf(buf, n, "$%.2f", v);
}

bl_status bl_cheatsheet_write_markdown(const bl_cheatsheet *cs, const char *path, const char *title) {
    bl_buf b = {0};
    double target = 0.93;
    for (int i = 0; i < cs->nrows; i++)
        if (cs->rows[i].tta_target > 0) {
            target = cs->rows[i].tta_target;
            break;
        }
    bl_buf_printf(&b, "# %s\n\n", title ? title : "Cost versus speed: the cheat sheet");
    bl_buf_printf(&b,
                  "Generated by `beamlet cheatsheet` from committed results files and `docs/prices.json`; "
                  "do not edit by hand. Rows marked **estimate** were not measured by beamlet here: "
                  "their footnote says where each figure comes from.\n\n");
    bl_buf_printf(
        &b,
        "| device | figures | CIFAR ResNet-18 inference (img/s) | ResNet-18 224×224 inference (img/s) | "
        "train 1 epoch (50,000 img) | train 10 epochs | time to %.0f%% Fashion-MNIST | first prediction | "
        "%s/hour | cost of a 10-epoch job | speed-up vs CPU |\n",
        100 * target, strcmp(cs->currency, "USD") == 0 ? "$" : cs->currency);
    bl_buf_printf(&b, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    bool any_scaled = false, any_extrap = false, any_first = false;
    const char *money = strcmp(cs->currency, "USD") == 0 ? "$" : cs->currency;
    for (int i = 0; i < cs->nrows; i++) {
        const bl_cheatsheet_row *r = &cs->rows[i];
        char a[48], c[48], e[48], t[48], tta[64], fp[48], ph[48], cost[48], sp[48];
        fmt_rate(r->infer_cifar_img_s, a, sizeof a);
        fmt_rate(r->infer_224_img_s, c, sizeof c);
        bl_cheatsheet_format_duration(r->epoch_s, e, sizeof e);
        bl_cheatsheet_format_duration(r->train10_s, t, sizeof t);
        char d[48];
        bl_cheatsheet_format_duration(r->tta_s, d, sizeof d);
        snprintf(tta, sizeof tta, "%s%s", r->tta_s >= 0 && r->tta_extrapolated ? "≈ " : "", d);
        if (r->tta_s >= 0 && r->tta_extrapolated) any_extrap = true;
        bl_cheatsheet_format_duration(r->first_prediction_s, fp, sizeof fp);
        fmt_money(r->usd_per_hour, ph, sizeof ph);
        fmt_money(r->cost_per_job_usd, cost, sizeof cost);
        if (r->speedup_vs_cpu >= 100)
            snprintf(sp, sizeof sp, "%.0fx", r->speedup_vs_cpu);
        else if (r->speedup_vs_cpu > 0)
            snprintf(sp, sizeof sp, "%.3gx", r->speedup_vs_cpu);
        else
            snprintf(sp, sizeof sp, "—");
        if (r->measured && r->first_prediction_s >= 0) any_first = true;
        if (r->measured && r->train_scaled) any_scaled = true;
        if (r->measured)
            bl_buf_printf(&b, "| %s | measured%s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r->label,
                          r->train_scaled ? " [s]" : "", a, c, e, t, tta, fp, ph, cost, sp);
        else
            bl_buf_printf(&b,
                          "| *%s* | **estimate** [%d] | *%s* | *%s* | *%s* | *%s* | *%s* | *%s* | *%s* | "
                          "*%s* | *%s* |\n",
                          r->label, r->note, a, c, e, t, tta, fp, ph, cost, sp);
    }
    bl_buf_printf(&b, "\n");
    for (int i = 0; i < cs->nrows; i++) {
        const bl_cheatsheet_row *r = &cs->rows[i];
        bool first = !r->measured;
        for (int j = 0; j < i && first; j++) first = cs->rows[j].note != r->note;
        if (first) bl_buf_printf(&b, "- [%d] Estimate, not a beamlet measurement: %s.\n", r->note, r->source);
    }
    if (any_scaled)
        bl_buf_printf(
            &b, "- [s] Training times are measured per step (forward, loss, backward, SGD on device-resident "
                "data, no data loading or evaluation) and scaled to 50,000 images.\n");
    if (any_extrap)
        bl_buf_printf(
            &b, "- ≈ Time to accuracy extrapolated from a measured training throughput, not a training run; "
                "the results file says how.\n");
    if (any_first)
        bl_buf_printf(
            &b,
            "- First prediction: a child `beamlet infer` process on one Fashion-MNIST image with the shipped "
            "model, from its start to its exit (the results file has the command).\n");
    /* The speed-up's baseline is the first measured CPU row (files are read in the order given). */
    const char *baseline = NULL;
    for (int i = 0; i < cs->nrows && !baseline; i++)
        if (cs->rows[i].measured && cs->rows[i].is_cpu && cs->rows[i].train10_s > 0)
            baseline = cs->rows[i].label;
    bl_buf_printf(
        &b,
        "\nCost of a job = %s/hour × the 10-epoch training time. Speed-up = the 10-epoch time of %s%s%s ÷ "
        "the row's; for an estimate row it compares figures from different sources.\n\n",
        money, baseline ? "the measured CPU row \"" : "a measured CPU row (none here)",
        baseline ? baseline : "", baseline ? "\"" : "");
    bl_buf_printf(&b, "Measured rows:\n\n");
    for (int i = 0; i < cs->nrows; i++) {
        const bl_cheatsheet_row *r = &cs->rows[i];
        if (r->measured)
            bl_buf_printf(&b, "- %s: `%s`, %s%s%s\n", r->label, r->source, r->date,
                          *r->description ? "; " : "", r->description);
    }
    bl_buf_printf(&b, "\nPrices used (edit `docs/prices.json`; list prices change, verify before use):\n\n");
    for (int i = 0; i < cs->nrows; i++) {
        const bl_cheatsheet_row *r = &cs->rows[i];
        bool seen = false;
        for (int j = 0; j < i; j++) seen |= strcmp(cs->rows[j].price_name, r->price_name) == 0;
        if (*r->price_name && !seen)
            bl_buf_printf(&b, "- %s: %s%.4g/hour — %s\n", r->price_name, money, r->usd_per_hour,
                          r->price_source);
    }
    for (int i = 0; i < cs->nrows; i++)
        if (!*cs->rows[i].price_name)
            bl_buf_printf(&b, "- %s: no price in the prices file\n", cs->rows[i].label);
    bl_status s =
        b.data ? bl_file_write_atomic(path, b.data, b.len) : bl_error(BL_ERR_OUT_OF_MEMORY, "markdown");
    bl_buf_free(&b);
    return s;
}
