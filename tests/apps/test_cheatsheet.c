/* The cheat sheet from a synthetic bench file, an estimate file and a prices file: cost is
 * $/hour x hours, the speed-up is against the measured CPU, estimates are marked as such in the
 * table and the charts and never priced or ranked as measurements, and malformed inputs fail
 * with messages that name the file. */
#include <unistd.h>

#include "bl_test.h"
#include "cheatsheet.h"

static const char *MEASURED =
    "{\"schema\":\"beamlet-bench/1\",\"kind\":\"measured\",\"date\":\"2026-11-24T19:00:00Z\","
    "\"devices\":["
    "{\"device\":\"cpu\",\"kind\":\"cpu\",\"label\":\"cpu: Test CPU (2 logical "
    "CPUs)\",\"description\":\"oneDNN 9.9.9\","
    " \"inference\":{\"cifar_resnet18\":{\"img_per_s\":50.0},\"imagenet_resnet18\":{\"img_per_s\":5.0}},"
    " \"training\":{\"epoch_seconds\":3600.0,\"ten_epoch_seconds\":36000.0,\"method\":\"measured_per_step_"
    "and_scaled\"},"
    " \"time_to_accuracy\":{\"target\":0.93,\"seconds\":46800.0,\"method\":\"extrapolated\"},"
    " \"time_to_first_prediction\":{\"seconds\":0.25}},"
    "{\"device\":\"cuda:0\",\"kind\":\"cuda\",\"label\":\"cuda:0: NVIDIA H100 80GB "
    "HBM3\",\"description\":\"NVIDIA H100 80GB HBM3\","
    " \"inference\":{\"cifar_resnet18\":{\"img_per_s\":50000.0},\"imagenet_resnet18\":{\"img_per_s\":null}},"
    " \"training\":{\"epoch_seconds\":36.0,\"ten_epoch_seconds\":360.0,\"method\":\"measured_per_step_and_"
    "scaled\"},"
    " \"time_to_accuracy\":{\"target\":0.93,\"seconds\":null,\"method\":\"not_measured\"},"
    " \"time_to_first_prediction\":{\"seconds\":1.5}}]}";

static const char *ESTIMATE =
    "{\"schema\":\"beamlet-bench/1\",\"kind\":\"estimate\",\"source\":\"PyTorch on an L4, a made-up test "
    "figure\","
    "\"date\":\"2026-11-24\",\"devices\":[{\"device\":\"L4\",\"kind\":\"gpu\",\"label\":\"NVIDIA L4\","
    " \"inference\":{\"cifar_resnet18\":{\"img_per_s\":9000.0}},\"training\":{\"ten_epoch_seconds\":1800.0}}]"
    "}";

static const char *PRICES = "{\"currency\":\"USD\",\"cpu_default\":\"big-vm\",\"prices\":["
                            "{\"device\":\"small-vm\",\"kind\":\"cpu\",\"match\":\"(2 logical "
                            "CPUs)\",\"usd_per_hour\":0.10,\"source\":\"test list\",\"date\":\"2026-11\"},"
                            "{\"device\":\"big-vm\",\"kind\":\"cpu\",\"usd_per_hour\":0.40,\"source\":\"test "
                            "list\",\"date\":\"2026-11\"},"
                            "{\"device\":\"H100\",\"kind\":\"gpu\",\"match\":\"H100\",\"usd_per_hour\":10.0,"
                            "\"source\":\"test list\",\"date\":\"2026-11\"},"
                            "{\"device\":\"L4\",\"kind\":\"gpu\",\"match\":\"L4\",\"usd_per_hour\":0.80,"
                            "\"source\":\"test list\",\"date\":\"2026-11\"}]}";

static char tmpdir[256];

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static char *read_file(const char *path) {
    void *data = NULL;
    size_t size = 0;
    if (bl_file_read_all(path, &data, &size) != BL_OK) return NULL;
    char *s = realloc(data, size + 1);
    if (s) s[size] = 0;
    return s;
}

static bl_cheatsheet *build(const char *price_map_device, const char *price_map_entry) {
    char measured[300], estimate[300], prices[300];
    snprintf(measured, sizeof measured, "%s/bench.json", tmpdir);
    snprintf(estimate, sizeof estimate, "%s/estimate.json", tmpdir);
    snprintf(prices, sizeof prices, "%s/prices.json", tmpdir);
    write_file(measured, MEASURED);
    write_file(estimate, ESTIMATE);
    write_file(prices, PRICES);
    bl_cheatsheet *cs = NULL;
    CHECK_OK(bl_cheatsheet_new(&cs));
    /* The estimate first: the table must still list measured rows before it. */
    CHECK_OK(bl_cheatsheet_add_results(cs, estimate));
    CHECK_OK(bl_cheatsheet_add_results(cs, measured));
    CHECK_OK(bl_cheatsheet_load_prices(cs, prices));
    if (price_map_device) CHECK_OK(bl_cheatsheet_map_price(cs, price_map_device, price_map_entry));
    CHECK_OK(bl_cheatsheet_compute(cs));
    return cs;
}

static void test_rows_costs_speedups(void) {
    bl_cheatsheet *cs = build(NULL, NULL);
    CHECK(bl_cheatsheet_row_count(cs) == 3);
    const bl_cheatsheet_row *cpu = bl_cheatsheet_row_at(cs, 0), *gpu = bl_cheatsheet_row_at(cs, 1),
                            *est = bl_cheatsheet_row_at(cs, 2);
    CHECK(cpu->measured && cpu->is_cpu && strcmp(cpu->device, "cpu") == 0);
    CHECK(gpu->measured && !gpu->is_cpu && strcmp(gpu->device, "cuda:0") == 0);
    CHECK(!est->measured && strcmp(est->device, "L4") == 0);
    CHECK(strstr(est->source, "made-up test figure") != NULL);
    /* Prices: the CPU by its logical CPU count in the label, the GPUs by their "match" in the
     * description or label. */
    CHECK(strcmp(cpu->price_name, "small-vm") == 0);
    CHECK(strcmp(gpu->price_name, "H100") == 0);
    CHECK(strcmp(est->price_name, "L4") == 0);
    /* cost = $/hour x hours of the 10-epoch job. */
    CHECK_NEAR(cpu->cost_per_job_usd, 0.10 * 10.0, 1e-9);
    CHECK_NEAR(gpu->cost_per_job_usd, 10.0 * 0.1, 1e-9);
    CHECK_NEAR(est->cost_per_job_usd, 0.80 * 0.5, 1e-9);
    CHECK_NEAR(cpu->speedup_vs_cpu, 1.0, 1e-12);
    CHECK_NEAR(gpu->speedup_vs_cpu, 100.0, 1e-9);
    CHECK_NEAR(est->speedup_vs_cpu, 20.0, 1e-9);
    CHECK(cpu->train_scaled && cpu->tta_extrapolated && !gpu->tta_extrapolated);
    CHECK(gpu->infer_224_img_s < 0 && gpu->tta_s < 0); /* null = not measured */
    CHECK_NEAR(cpu->first_prediction_s, 0.25, 1e-12);
    bl_cheatsheet_free(cs);

    /* An explicit mapping wins over the match. */
    cs = build("cpu", "big-vm");
    CHECK_NEAR(bl_cheatsheet_row_at(cs, 0)->cost_per_job_usd, 0.40 * 10.0, 1e-9);
    bl_cheatsheet_free(cs);
    /* A CPU whose count matches no entry falls back to cpu_default. */
    bl_cheatsheet *c2;
    CHECK_OK(bl_cheatsheet_new(&c2));
    const char *four = "{\"schema\":\"beamlet-bench/1\",\"devices\":[{\"device\":\"cpu\",\"kind\":\"cpu\","
                       "\"label\":\"cpu: X (4 logical CPUs)\",\"training\":{\"ten_epoch_seconds\":3600}}]}";
    CHECK_OK(bl_cheatsheet_add_results_json(c2, four, strlen(four), "four.json"));
    CHECK_OK(bl_cheatsheet_load_prices_json(c2, PRICES, strlen(PRICES), "prices.json"));
    CHECK_OK(bl_cheatsheet_compute(c2));
    CHECK(strcmp(bl_cheatsheet_row_at(c2, 0)->price_name, "big-vm") == 0);
    CHECK_NEAR(bl_cheatsheet_row_at(c2, 0)->cost_per_job_usd, 0.40, 1e-9);
    bl_cheatsheet_free(c2);
    /* A time to accuracy from a subset smoke test is not shown. */
    CHECK_OK(bl_cheatsheet_new(&c2));
    const char *subset = "{\"schema\":\"beamlet-bench/1\",\"devices\":[{\"device\":\"cpu\",\"kind\":\"cpu\","
                         "\"time_to_accuracy\":{\"seconds\":12,\"method\":\"measured_on_subset\"}}]}";
    CHECK_OK(bl_cheatsheet_add_results_json(c2, subset, strlen(subset), "subset.json"));
    CHECK(bl_cheatsheet_row_at(c2, 0)->tta_s < 0);
    bl_cheatsheet_free(c2);
}

static void test_markdown_and_svg_mark_estimates(void) {
    bl_cheatsheet *cs = build(NULL, NULL);
    char md[300], thr[300], cost[300];
    snprintf(md, sizeof md, "%s/cheatsheet.md", tmpdir);
    snprintf(thr, sizeof thr, "%s/throughput.svg", tmpdir);
    snprintf(cost, sizeof cost, "%s/cost.svg", tmpdir);
    CHECK_OK(bl_cheatsheet_write_markdown(cs, md, NULL));
    CHECK_OK(bl_cheatsheet_write_svg_throughput(cs, thr));
    CHECK_OK(bl_cheatsheet_write_svg_cost(cs, cost));
    char *text = read_file(md);
    CHECK(text != NULL);
    if (text) {
        const char *cpu = strstr(
            text,
            "| cpu: Test CPU (2 logical CPUs) | measured [s] | 50.0 | 5.0 | 1.0 h | 10.0 h | ≈ 13.0 h |");
        const char *gpu = strstr(
            text, "| cuda:0: NVIDIA H100 80GB HBM3 | measured [s] | 50,000 | — | 36 s | 6.0 min | — |");
        const char *est = strstr(text, "| *NVIDIA L4* | **estimate** [1] | *9,000* |");
        CHECK_MSG(cpu && gpu && est, "table:\n%s", text);
        CHECK(cpu && gpu && est && cpu < gpu && gpu < est);
        CHECK(strstr(text, "| $0.100 | $1.00 | 1x |") != NULL); /* CPU: $0.10/h x 10 h */
        CHECK(strstr(text, "| $10.00 | $1.00 | 100x |") != NULL);
        CHECK(strstr(text, "| *$0.800* | *$0.400* | *20x* |") != NULL);
        CHECK(strstr(text, "- [1] Estimate, not a beamlet measurement: estimate.json (PyTorch on an L4, a "
                           "made-up test figure).") != NULL);
        CHECK(strstr(text, "≈ Time to accuracy extrapolated") != NULL);
        free(text);
    }
    text = read_file(thr);
    CHECK(text != NULL);
    if (text) {
        CHECK(strncmp(text, "<svg ", 5) == 0 && strstr(text, "</svg>\n") != NULL);
        CHECK(strstr(text, "estimate [1], not measured by beamlet") != NULL);
        CHECK(strstr(text, "fill=\"url(#hatch)\"") != NULL);
        CHECK(strstr(text, "[1] estimate.json (PyTorch on an L4") != NULL);
        /* Exactly one hatched bar: the measured ones stay solid. */
        const char *first = strstr(text, "fill=\"url(#hatch)\"");
        CHECK(first && !strstr(first + 1, "fill=\"url(#hatch)\""));
        free(text);
    }
    text = read_file(cost);
    CHECK(text && strstr(text, "$0.400") && strstr(text, "$1.00"));
    free(text);
    bl_cheatsheet_free(cs);
}

static void test_bad_input(void) {
    bl_cheatsheet *cs;
    CHECK_OK(bl_cheatsheet_new(&cs));
    const char *other = "{\"results\":[]}";
    CHECK_ERR(bl_cheatsheet_add_results_json(cs, other, strlen(other), "x.json"), BL_ERR_FORMAT,
              "x.json: not a beamlet bench results file");
    const char *no_source = "{\"schema\":\"beamlet-bench/1\",\"kind\":\"estimate\",\"devices\":[]}";
    CHECK_ERR(bl_cheatsheet_add_results_json(cs, no_source, strlen(no_source), "e.json"), BL_ERR_FORMAT,
              "must say where its figures come from");
    const char *unmarked =
        "{\"schema\":\"beamlet-bench/1\",\"devices\":[{\"device\":\"T4\",\"measured\":false}]}";
    CHECK_ERR(bl_cheatsheet_add_results_json(cs, unmarked, strlen(unmarked), "u.json"), BL_ERR_FORMAT,
              "names no \"source\"");
    CHECK(bl_cheatsheet_row_count(cs) == 0);
    const char *truncated = "{\"schema\":\"beamlet-bench/1\",\"devices\":[";
    CHECK_ERR(bl_cheatsheet_add_results_json(cs, truncated, strlen(truncated), "t.json"), BL_ERR_FORMAT,
              "t.json");
    const char *bad_price = "{\"prices\":[{\"device\":\"X\",\"usd_per_hour\":1}]}";
    CHECK_ERR(bl_cheatsheet_load_prices_json(cs, bad_price, strlen(bad_price), "p.json"), BL_ERR_FORMAT,
              "p.json: prices[0] needs");
    CHECK_OK(bl_cheatsheet_map_price(cs, "cpu", "nowhere"));
    CHECK_OK(bl_cheatsheet_add_results_json(cs, MEASURED, strlen(MEASURED), "m.json"));
    CHECK_ERR(bl_cheatsheet_compute(cs), BL_ERR_NOT_FOUND, "has no \"nowhere\"");
    bl_cheatsheet_free(cs);
}

static void test_duration_format(void) {
    char b[32];
    bl_cheatsheet_format_duration(0.25, b, sizeof b);
    CHECK(strcmp(b, "0.25 s") == 0);
    bl_cheatsheet_format_duration(14.3, b, sizeof b);
    CHECK(strcmp(b, "14 s") == 0);
    bl_cheatsheet_format_duration(600, b, sizeof b);
    CHECK(strcmp(b, "10.0 min") == 0);
    bl_cheatsheet_format_duration(36000, b, sizeof b);
    CHECK(strcmp(b, "10.0 h") == 0);
    bl_cheatsheet_format_duration(-1, b, sizeof b);
    CHECK(strcmp(b, "—") == 0);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/bl_test_cheatsheet_%d", (int)getpid());
    if (bl_mkdirs(tmpdir) != BL_OK) {
        fprintf(stderr, "cannot create %s: %s\n", tmpdir, bl_last_error());
        return 1;
    }
    RUN(test_rows_costs_speedups);
    RUN(test_markdown_and_svg_mark_estimates);
    RUN(test_bad_input);
    RUN(test_duration_format);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return bl_test_finish();
}
