/* beamlet cheatsheet: bench results + prices -> docs/cheatsheet.md and two SVG charts.
 * The work is in cheatsheet.c and cheatsheet_svg.c so tests can check it; this file only turns
 * flags into calls. */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cheatsheet.h"
#include "commands.h"

/* "cpu=n1-standard-2,cuda:0=H100" -> one mapping per pair. */
static bl_status add_price_map(bl_cheatsheet *cs, const char *spec) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", spec);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok || !eq[1])
            return bl_error(BL_ERR_INVALID_ARG, "--price_map: '%s' is not DEVICE=PRICES_ENTRY", tok);
        *eq = 0;
        BL_TRY(bl_cheatsheet_map_price(cs, tok, eq + 1));
    }
    return BL_OK;
}

/* An explicit list must all be bench files; the default glob skips other JSON (e.g. the
 * comparison scripts' results, which have their own schema) and says so. */
static bl_status add_results(bl_cheatsheet *cs, const char *spec, int *count) {
    *count = 0;
    if (*spec) {
        char buf[4096];
        snprintf(buf, sizeof buf, "%s", spec);
        for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            BL_TRY(bl_cheatsheet_add_results(cs, tok));
            ++*count;
        }
        return BL_OK;
    }
    glob_t g;
    if (glob("bench/results/*.json", 0, NULL, &g) != 0)
        return bl_error(BL_ERR_NOT_FOUND,
                        "no bench/results/*.json here (run from the repository root, or pass --results)");
    for (size_t i = 0; i < g.gl_pathc; i++) {
        bl_status s = bl_cheatsheet_add_results(cs, g.gl_pathv[i]);
        if (s == BL_OK) {
            ++*count;
        } else if (strstr(bl_last_error(), "not a beamlet bench results file")) {
            fprintf(stderr, "beamlet cheatsheet: skipping %s (another schema)\n", g.gl_pathv[i]);
        } else {
            globfree(&g);
            return s;
        }
    }
    globfree(&g);
    return BL_OK;
}

static bl_status options(bl_options *o) {
    BL_TRY(bl_options_add(
        o, "results", "",
        "comma-separated bench results files; empty: every beamlet-bench file in bench/results/"));
    BL_TRY(bl_options_add(o, "prices", "docs/prices.json", "the prices file (device, $/hour, source, date)"));
    BL_TRY(bl_options_add(
        o, "price_map", "",
        "DEVICE=PRICES_ENTRY pairs, e.g. cpu=n1-standard-4,cuda:0=H100; empty: the prices file's rules"));
    BL_TRY(bl_options_add(o, "markdown", "docs/cheatsheet.md", "where the table goes"));
    return bl_options_add(o, "charts_dir", "docs/charts", "where throughput.svg and cost.svg go");
}

static bl_status run(const bl_options *o) {
    bl_cheatsheet *cs = NULL;
    int files = 0;
    char thr[1024], cost[1024];
    const char *dir = bl_options_get(o, "charts_dir");
    snprintf(thr, sizeof thr, "%s/throughput.svg", dir);
    snprintf(cost, sizeof cost, "%s/cost.svg", dir);
    bl_status s = bl_cheatsheet_new(&cs);
    if (s == BL_OK) s = add_results(cs, bl_options_get(o, "results"), &files);
    if (s == BL_OK) s = bl_cheatsheet_load_prices(cs, bl_options_get(o, "prices"));
    if (s == BL_OK) s = add_price_map(cs, bl_options_get(o, "price_map"));
    if (s == BL_OK) s = bl_cheatsheet_compute(cs);
    if (s == BL_OK) s = bl_mkdirs(dir);
    if (s == BL_OK) s = bl_cheatsheet_write_markdown(cs, bl_options_get(o, "markdown"), NULL);
    if (s == BL_OK) s = bl_cheatsheet_write_svg_throughput(cs, thr);
    if (s == BL_OK) s = bl_cheatsheet_write_svg_cost(cs, cost);
    if (s != BL_OK) {
        bl_cheatsheet_free(cs);
        return s;
    }
    printf("%d results file(s), %d device row(s):\n", files, bl_cheatsheet_row_count(cs));
    for (int i = 0; i < bl_cheatsheet_row_count(cs); i++) {
        const bl_cheatsheet_row *r = bl_cheatsheet_row_at(cs, i);
        char t[32];
        bl_cheatsheet_format_duration(r->train10_s, t, sizeof t);
        printf("  %-9s %-50s %10.1f img/s  10 epochs %-9s  %s\n", r->measured ? "measured" : "ESTIMATE",
               r->label, r->infer_cifar_img_s, t, *r->price_name ? r->price_name : "(no price)");
    }
    printf("wrote %s, %s, %s\n", bl_options_get(o, "markdown"), thr, cost);
    bl_cheatsheet_free(cs);
    return BL_OK;
}

const bl_command beamlet_cheatsheet_command = {
    .summary =
        "Combines `beamlet bench` results and a prices file into the cost-versus-speed table\n"
        "(Markdown) and two SVG bar charts. Devices not measured here appear only as marked estimates.",
    .add_options = options,
    .run = run,
};
