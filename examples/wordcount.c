/* Word count, Beam's first example, in beamlet. The same binary runs on one thread, on every
 * core, or over MPI ranks:
 *   wordcount --input=/usr/share/common-licenses/GPL-3 --output=/tmp/counts
 *   wordcount --runner=local --num_workers=4 ...
 *   mpirun -np 3 wordcount --runner=mpi ...
 * It prints the pipeline graph, the ten most frequent words and the metrics summary. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "beamlet/pipeline.h"

static bl_status split_words(void *user, const void *in, bl_emitter *out) {
    (void)user;
    const char *s = in;
    char word[128];
    while (*s) {
        while (*s && !isalpha((unsigned char)*s)) s++;
        size_t n = 0;
        while (isalpha((unsigned char)s[n]) || s[n] == '\'') {
            if (n < sizeof word - 1) word[n] = (char)tolower((unsigned char)s[n]);
            n++;
        }
        if (!n) break;
        word[n < sizeof word ? n : sizeof word - 1] = 0;
        BL_TRY(bl_emit(out, word));
        s += n;
    }
    return BL_OK;
}

static bl_status pair_with_one(void *user, const void *in, void **out) {
    (void)user;
    bl_kv *kv = malloc(sizeof *kv);
    int64_t *one = malloc(sizeof *one);
    char *w = strdup(in);
    if (!kv || !one || !w) {
        free(kv), free(one), free(w);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "pair");
    }
    *one = 1;
    kv->key = w;
    kv->value = one;
    *out = kv;
    return BL_OK;
}

static bl_status format_count(void *user, const void *in, void **out) {
    (void)user;
    const bl_kv *kv = in;
    size_t n = strlen(kv->key) + 32;
    char *s = malloc(n);
    if (!s) return bl_error(BL_ERR_OUT_OF_MEMORY, "format");
    snprintf(s, n, "%s: %lld", (const char *)kv->key, (long long)*(const int64_t *)kv->value);
    *out = s;
    return BL_OK;
}

static int by_count(const void *a, const void *b) {
    const bl_kv *x = *(bl_kv *const *)a, *y = *(bl_kv *const *)b;
    int64_t cx = *(int64_t *)x->value, cy = *(int64_t *)y->value;
    return cx != cy ? (cx < cy ? 1 : -1) : strcmp(x->key, y->key);
}

static int fail(const char *what) {
    fprintf(stderr, "wordcount: %s: %s\n", what, bl_last_error());
    return 1;
}

int main(int argc, char **argv) {
    bl_options *opts;
    if (bl_options_new(&opts) != BL_OK) return fail("options");
    bl_options_add(opts, "input", "/usr/share/common-licenses/GPL-3", "text file(s) to count (a glob)");
    bl_options_add(opts, "output", "/tmp/beamlet-wordcount", "output prefix for the shards");
    bl_options_add(opts, "num_shards", "3", "output shards");
    if (bl_options_parse(opts, argc, argv) != BL_OK) {
        fprintf(stderr, "wordcount: %s\n", bl_last_error());
        char *usage = bl_options_usage(opts);
        fprintf(stderr, "usage: wordcount [--name=value ...]\n%s", usage);
        free(usage);
        bl_options_free(opts);
        return 2;
    }
    if (bl_options_help(opts)) {
        char *usage = bl_options_usage(opts);
        printf("usage: wordcount [--name=value ...]\n%s", usage);
        free(usage);
        bl_options_free(opts);
        return 0;
    }
    int64_t shards = 3;
    if (bl_options_get_int(opts, "num_shards", &shards) != BL_OK) return fail("--num_shards");
    bl_pipeline *p;
    if (bl_pipeline_new(opts, &p) != BL_OK) return fail("pipeline");
    const bl_coder *kv = bl_coder_kv(bl_coder_string(), bl_coder_int64());
    bl_pcoll *lines, *words, *pairs, *counts, *formatted;
    bl_status s = bl_read_text(p, "Read", bl_options_get(opts, "input"), &lines);
    if (s == BL_OK) s = bl_flatmap(p, "Split", lines, split_words, NULL, bl_coder_string(), &words);
    if (s == BL_OK) s = bl_map(p, "PairWithOne", words, pair_with_one, NULL, kv, &pairs);
    if (s == BL_OK) s = bl_combine_per_key(p, "CountPerWord", pairs, bl_combine_sum_int64(), &counts);
    if (s == BL_OK) s = bl_map(p, "Format", counts, format_count, NULL, bl_coder_string(), &formatted);
    if (s == BL_OK)
        s = bl_write_text(p, "Write", formatted, bl_options_get(opts, "output"), ".txt", (int)shards,
                          BL_TEXT_LINES);
    if (s == BL_OK) s = bl_pipeline_collect(p, counts);
    if (s != BL_OK) return fail("building the pipeline");
    s = bl_pipeline_run(p);
    if (s != BL_OK) {
        int rc = fail("run");
        bl_pipeline_free(p);
        bl_options_free(opts);
        return rc;
    }
    if (bl_pipeline_is_coordinator(p)) {
        char *text;
        if (bl_pipeline_to_text(p, &text) == BL_OK) printf("%s", text), free(text);
        size_t n = bl_pcoll_result_count(counts);
        bl_kv **all = calloc(n ? n : 1, sizeof *all);
        for (size_t i = 0; i < n; i++)
            if (bl_pcoll_result_value(counts, i, (void **)&all[i]) != BL_OK) return fail("results");
        qsort(all, n, sizeof *all, by_count);
        printf("%zu distinct words; the most frequent:\n", n);
        for (size_t i = 0; i < n && i < 10; i++)
            printf("  %-12s %lld\n", (char *)all[i]->key, (long long)*(int64_t *)all[i]->value);
        for (size_t i = 0; i < n; i++) bl_coder_free_value(kv, all[i]);
        free(all);
        printf("shards: %s-0000N-of-%05lld.txt\n", bl_options_get(opts, "output"), (long long)shards);
        char *summary;
        if (bl_pipeline_metrics_summary(p, &summary) == BL_OK) printf("%s", summary), free(summary);
    }
    bl_pipeline_free(p);
    bl_options_free(opts);
    return 0;
}
