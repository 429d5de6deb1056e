/* beamlet cheat sheet: the proposal's cost-versus-speed table, from measurements and prices.
 *
 * Inputs are `beamlet bench` results files (JSON, schema "beamlet-bench/1"; a file whose
 * "kind" is "estimate" carries figures measured elsewhere or guessed, with their "source") and
 * an editable prices file (docs/prices.json: device, $/hour, source, date). Out come one row
 * per device: CIFAR ResNet-18 inference img/s, torchvision ResNet-18 (224x224) img/s, training
 * time for one and for ten epochs of 50,000 images, time to the target Fashion-MNIST accuracy,
 * $/hour, the cost of one 10-epoch job ($/hour x hours) and the speed-up of that job over the
 * first measured CPU. Rows keep whether they were measured here or are estimates, so that the
 * Markdown table and the SVG charts never show an estimate as if it were a measurement.
 * A report of the application (it reads `beamlet bench` results), kept apart from the command's
 * flag handling so that tests/apps can check the arithmetic and the marking. */
#ifndef BEAMLET_APP_CHEATSHEET_H
#define BEAMLET_APP_CHEATSHEET_H

#include "beamlet/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BL_CHEATSHEET_TEXT 256

/* Figures that were not measured (or not given) are negative. */
typedef struct bl_cheatsheet_row {
    char label[BL_CHEATSHEET_TEXT];       /* "cpu: AMD EPYC (2 logical CPUs)" */
    char device[64];                      /* "cpu", "cuda:0", "H100" (estimates) */
    char description[BL_CHEATSHEET_TEXT]; /* the backend's own words, e.g. the GPU's name */
    bool measured;                        /* false: an estimate; `source` says whose */
    bool is_cpu;
    char source[BL_CHEATSHEET_TEXT]; /* the results file, plus the estimate's origin */
    int note;                        /* estimates: footnote number, shared by one source */
    char date[40];
    double infer_cifar_img_s;  /* CIFAR ResNet-18, 3x32x32 */
    double infer_224_img_s;    /* torchvision ResNet-18, 3x224x224 */
    double epoch_s, train10_s; /* 50,000 images; 10 epochs */
    bool train_scaled;         /* measured per step and scaled to 50,000 images */
    double tta_s, tta_target;  /* time to the target test accuracy (Fashion-MNIST) */
    bool tta_extrapolated;     /* from one measured epoch time, not a full run */
    double first_prediction_s; /* process start to first prediction */
    char price_name[64];       /* the prices entry used ("" when none) */
    double usd_per_hour;
    char price_source[BL_CHEATSHEET_TEXT];
    double cost_per_job_usd; /* usd_per_hour * train10_s / 3600 */
    double speedup_vs_cpu;   /* CPU's train10_s / this row's train10_s */
} bl_cheatsheet_row;

typedef struct bl_cheatsheet bl_cheatsheet;

bl_status bl_cheatsheet_new(bl_cheatsheet **out);
void bl_cheatsheet_free(bl_cheatsheet *cs);

/* Adds every device of one bench results file (measured or estimate) as a row. Malformed
 * files are BL_ERR_FORMAT naming the file and the field. */
bl_status bl_cheatsheet_add_results(bl_cheatsheet *cs, const char *path);
bl_status bl_cheatsheet_add_results_json(bl_cheatsheet *cs, const char *text, size_t len, const char *name);
/* Reads the prices file: {"currency", "cpu_default", "prices": [{"device", "kind",
 * "usd_per_hour", "source", "date", "match"}]}. */
bl_status bl_cheatsheet_load_prices(bl_cheatsheet *cs, const char *path);
bl_status bl_cheatsheet_load_prices_json(bl_cheatsheet *cs, const char *text, size_t len, const char *name);
/* Prices a row explicitly: rows whose device name (or, for estimates, device) equals `device`
 * use the prices entry named `price_device`. Without one, a CPU row takes the first "cpu"
 * entry whose "match" occurs in its label (e.g. "(2 logical CPUs)"), else the file's
 * "cpu_default"; a GPU or TPU row the first other entry whose "match" occurs in its label,
 * description or device (case-insensitive). */
bl_status bl_cheatsheet_map_price(bl_cheatsheet *cs, const char *device, const char *price_device);

/* Resolves prices, costs and speed-ups. Call after adding results and prices. */
bl_status bl_cheatsheet_compute(bl_cheatsheet *cs);

int bl_cheatsheet_row_count(const bl_cheatsheet *cs);
const bl_cheatsheet_row *bl_cheatsheet_row_at(const bl_cheatsheet *cs, int i);

/* The table in Markdown (measured rows first, then estimates marked with their footnotes),
 * written atomically. `title` may be NULL. */
bl_status bl_cheatsheet_write_markdown(const bl_cheatsheet *cs, const char *path, const char *title);
/* Bar charts as standalone SVG (log scale; estimates hatched grey with "estimate" in their
 * label): CIFAR ResNet-18 inference img/s per device, and cost of one 10-epoch job. */
bl_status bl_cheatsheet_write_svg_throughput(const bl_cheatsheet *cs, const char *path);
bl_status bl_cheatsheet_write_svg_cost(const bl_cheatsheet *cs, const char *path);

/* Formats seconds as "0.8 s", "14 s", "3.2 min", "6.1 h" (n > 0; "—" for negative). */
void bl_cheatsheet_format_duration(double seconds, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
