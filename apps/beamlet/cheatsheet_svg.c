/* The cheat sheet's charts as standalone SVG, written by hand: horizontal bars on a log scale
 * (a 2-core CPU and an H100 differ by three orders of magnitude, so a linear axis would hide
 * the CPU), the value printed at each bar's end. Measured bars are solid; estimates are hatched
 * grey with "(estimate)" in their label and a footnote naming their source, so that no chart
 * puts a guess beside a measurement unmarked. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "beamlet/pipeline.h"
#include "cheatsheet.h"

#define CHART_W 900
#define LABEL_W 320
#define WRAP 125 /* characters per footnote line at 11px */
#define BAR_H 24
#define ROW_H 34
#define TOP 64

static void xml_text(bl_buf *b, const char *s) {
    for (; *s; s++) {
        if (*s == '&')
            bl_buf_printf(b, "&amp;");
        else if (*s == '<')
            bl_buf_printf(b, "&lt;");
        else if (*s == '>')
            bl_buf_printf(b, "&gt;");
        else if (*s == '"')
            bl_buf_printf(b, "&quot;");
        else
            bl_buf_append(b, s, 1);
    }
}

/* Writes `s` as lines of at most WRAP characters, broken at spaces, from y on (16px apart);
 * returns the y of the last line. With b NULL only counts, so the height can be known first. */
static int wrapped(bl_buf *b, int y, const char *prefix, const char *s, const char *fill) {
    char line[WRAP + 64];
    size_t plen = strlen(prefix), n = strlen(s), at = 0;
    bool first = true;
    while (at < n || first) {
        size_t room = WRAP - (first ? plen : 4), take = n - at;
        if (take > room) {
            take = room;
            while (take > 0 && s[at + take] != ' ') take--;
            if (take == 0) take = room;
        }
        snprintf(line, sizeof line, "%s%.*s", first ? prefix : "    ", (int)take, s + at);
        if (!first) y += 16;
        if (b) {
            bl_buf_printf(b, "<text x=\"16\" y=\"%d\" font-size=\"11\" fill=\"%s\">", y, fill);
            xml_text(b, line);
            bl_buf_printf(b, "</text>\n");
        }
        at += take;
        while (at < n && s[at] == ' ') at++;
        first = false;
    }
    return y;
}

typedef double (*value_fn)(const bl_cheatsheet_row *r);
typedef void (*format_fn)(double v, char *buf, size_t n);

static double v_infer(const bl_cheatsheet_row *r) { return r->infer_cifar_img_s; }
static double v_cost(const bl_cheatsheet_row *r) { return r->cost_per_job_usd; }

static void f_rate(double v, char *buf, size_t n) {
    if (v < 100) {
        snprintf(buf, n, "%.1f img/s", v);
    } else if (v < 1000) {
        snprintf(buf, n, "%.0f img/s", v);
    } else {
        long k = (long)(v + 0.5);
        snprintf(buf, n, "%ld,%03ld img/s", k / 1000, k % 1000);
    }
}
static void f_cost(double v, char *buf, size_t n) {
    snprintf(buf, n, v < 0.01 ? "$%.4f" : v < 1 ? "$%.3f" : "$%.2f", v);
}

static void f_axis(double v, char *buf, size_t n, bool money) {
    if (money) {
        if (v < 1)
            snprintf(buf, n, "$%g", v);
        else
            snprintf(buf, n, "$%.0f", v);
    } else if (v >= 1000) {
        snprintf(buf, n, "%.0fk", v / 1000);
    } else {
        snprintf(buf, n, "%g", v);
    }
}

static bl_status chart(const bl_cheatsheet *cs, const char *path, const char *title, const char *subtitle,
                       value_fn value, format_fn format, bool money, const char *extra_note) {
    int n = 0;
    double lo = INFINITY, hi = 0;
    for (int i = 0; i < bl_cheatsheet_row_count(cs); i++) {
        double v = value(bl_cheatsheet_row_at(cs, i));
        if (v > 0) {
            n++;
            lo = fmin(lo, v);
            hi = fmax(hi, v);
        }
    }
    bl_buf b = {0};
    int plot_w = CHART_W - LABEL_W - 120;
    int foot =
        wrapped(NULL, 0, "",
                "Solid bars: measured by beamlet (docs/cheatsheet.md names the files and dates). Hatched "
                "grey bars: estimates, not beamlet measurements. Log scale.",
                "") +
        16;
    for (int i = 0, last = 0; i < bl_cheatsheet_row_count(cs); i++) {
        const bl_cheatsheet_row *r = bl_cheatsheet_row_at(cs, i);
        if (!r->measured && value(r) > 0 && r->note > last) {
            foot = wrapped(NULL, foot, "[0] ", r->source, "") + 16;
            last = r->note;
        }
    }
    if (extra_note) foot = wrapped(NULL, foot, "", extra_note, "") + 16;
    int height = TOP + (n ? n : 1) * ROW_H + 40 + foot + 8;
    bl_buf_printf(
        &b,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
        "font-family=\"Helvetica, Arial, sans-serif\" font-size=\"13\">\n",
        CHART_W, height, CHART_W, height);
    bl_buf_printf(&b, "<defs><pattern id=\"hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" "
                      "patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"#e2e2e2\"/>"
                      "<line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#8a8a8a\" "
                      "stroke-width=\"2\"/></pattern></defs>\n");
    bl_buf_printf(&b, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    bl_buf_printf(&b, "<text x=\"16\" y=\"24\" font-size=\"16\" font-weight=\"bold\">");
    xml_text(&b, title);
    bl_buf_printf(&b, "</text>\n<text x=\"16\" y=\"44\" fill=\"#555\">");
    xml_text(&b, subtitle);
    bl_buf_printf(&b, "</text>\n");
    if (n == 0) {
        bl_buf_printf(&b, "<text x=\"16\" y=\"%d\">no device has this figure yet</text>\n", TOP + 20);
    } else {
        /* Whole decades around the data, so the grid lines read 10, 100, 1k... */
        double d0 = floor(log10(lo)), d1 = ceil(log10(hi));
        if (d1 <= d0) d1 = d0 + 1;
        int y_axis_end = TOP + n * ROW_H;
        for (double d = d0; d <= d1 + 1e-9; d++) {
            double x = LABEL_W + (d - d0) / (d1 - d0) * plot_w;
            char t[32];
            f_axis(pow(10, d), t, sizeof t, money);
            bl_buf_printf(&b, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>\n", x,
                          TOP - 6, x, y_axis_end);
            bl_buf_printf(
                &b,
                "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" fill=\"#777\" font-size=\"11\">%s</text>\n",
                x, y_axis_end + 16, t);
        }
        int row = 0, note = 0;
        for (int i = 0; i < bl_cheatsheet_row_count(cs); i++) {
            const bl_cheatsheet_row *r = bl_cheatsheet_row_at(cs, i);
            double v = value(r);
            if (v <= 0) continue;
            int y = TOP + row * ROW_H;
            /* The bar starts at the lowest decade; a value exactly there still gets a sliver. */
            double w = fmax(2.0, (log10(v) - d0) / (d1 - d0) * plot_w);
            char val[48];
            format(v, val, sizeof val);
            bl_buf_printf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\"%s>", LABEL_W - 8,
                          y + (r->measured ? 16 : 11),
                          r->measured ? "" : " fill=\"#666\" font-style=\"italic\"");
            xml_text(&b, r->label);
            bl_buf_printf(&b, "</text>\n");
            if (!r->measured)
                bl_buf_printf(&b,
                              "<text x=\"%d\" y=\"%d\" text-anchor=\"end\" font-size=\"11\" "
                              "fill=\"#666\">estimate [%d], "
                              "not measured by beamlet</text>\n",
                              LABEL_W - 8, y + 24, r->note);
            if (r->measured)
                bl_buf_printf(&b, "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"#2b6cb0\"/>\n",
                              LABEL_W, y, w, BAR_H);
            else
                bl_buf_printf(&b,
                              "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"url(#hatch)\" "
                              "stroke=\"#8a8a8a\" stroke-dasharray=\"4 2\"/>\n",
                              LABEL_W, y, w, BAR_H);
            bl_buf_printf(&b, "<text x=\"%.1f\" y=\"%d\"%s>%s%s</text>\n", LABEL_W + w + 6, y + 16,
                          r->measured ? "" : " fill=\"#666\" font-style=\"italic\"", r->measured ? "" : "≈ ",
                          val);
            row++;
        }
        int y = wrapped(&b, y_axis_end + 40, "",
                        "Solid bars: measured by beamlet (docs/cheatsheet.md names the files "
                        "and dates). Hatched grey bars: estimates, not beamlet measurements. Log scale.",
                        "#333");
        for (int i = 0; i < bl_cheatsheet_row_count(cs); i++) {
            const bl_cheatsheet_row *r = bl_cheatsheet_row_at(cs, i);
            if (r->measured || value(r) <= 0 || r->note <= note) continue;
            note = r->note; /* one line per source, in order */
            char prefix[16];
            snprintf(prefix, sizeof prefix, "[%d] ", r->note);
            y = wrapped(&b, y + 16, prefix, r->source, "#666");
        }
        if (extra_note) wrapped(&b, y + 16, "", extra_note, "#333");
    }
    bl_buf_printf(&b, "</svg>\n");
    bl_status s = b.data ? bl_file_write_atomic(path, b.data, b.len) : bl_error(BL_ERR_OUT_OF_MEMORY, "svg");
    bl_buf_free(&b);
    return s;
}

bl_status bl_cheatsheet_write_svg_throughput(const bl_cheatsheet *cs, const char *path) {
    return chart(cs, path, "Inference throughput: CIFAR ResNet-18 (3x32x32, width 64)",
                 "images per second, higher is better", v_infer, f_rate, false, NULL);
}

bl_status bl_cheatsheet_write_svg_cost(const bl_cheatsheet *cs, const char *path) {
    return chart(cs, path, "Cost of one job: 10 training epochs of 50,000 CIFAR-sized images",
                 "US dollars = list price per hour x training time, lower is better", v_cost, f_cost, true,
                 "Prices from docs/prices.json (list prices, verify before use).");
}
