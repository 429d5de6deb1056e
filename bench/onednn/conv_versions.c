/* oneDNN convolution speed by library version (a throwaway-sized bench tool, not part of the
 * build): times every implementation oneDNN offers for ResNet-18's convolutions (NHWC
 * activations, weights in the format the kernel picks), f32 and bf16, forward and the two
 * backward passes, so that Debian's oneDNN 2.6 and PyPI's 3.x can be compared kernel by kernel
 * on the same machine. Compiled once per library against that library's own headers by
 * bench/onednn/compare_versions.sh; the #if branches are exactly the C API changes between
 * 2.x and 3.x that beamlet's backend (src/backends/cpu_onednn/) would meet.
 *
 *   conv_versions [--threads=N] [--min-seconds=S] [--only=SUBSTRING]   one JSON object a line */
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <oneapi/dnnl/dnnl.h>

#define CHECK(call)                                                                                          \
    do {                                                                                                     \
        dnnl_status_t st_ = (call);                                                                          \
        if (st_ != dnnl_success) {                                                                           \
            fprintf(stderr, "conv_versions: %s failed (%d) at line %d\n", #call, (int)st_, __LINE__);        \
            exit(1);                                                                                         \
        }                                                                                                    \
    } while (0)

#if DNNL_VERSION_MAJOR >= 3
/* 3.x: memory descriptors are opaque handles, created and destroyed. */
typedef dnnl_memory_desc_t md_t;
static md_t md_tag(int nd, const dnnl_dims_t dims, dnnl_data_type_t dt, dnnl_format_tag_t tag) {
    md_t md;
    CHECK(dnnl_memory_desc_create_with_tag(&md, nd, dims, dt, tag));
    return md;
}
static void md_free(md_t md) { dnnl_memory_desc_destroy(md); }
#else
/* 2.x: memory descriptors are plain structs, initialized in place. */
typedef dnnl_memory_desc_t md_t;
static md_t md_tag(int nd, const dnnl_dims_t dims, dnnl_data_type_t dt, dnnl_format_tag_t tag) {
    md_t md;
    CHECK(dnnl_memory_desc_init_by_tag(&md, nd, dims, dt, tag));
    return md;
}
static void md_free(md_t md) { (void)md; }
#endif

typedef enum pass {
    FWD,
    BWD_DATA,
    BWD_WEIGHTS
} pass;
static const char *pass_names[] = {"forward", "backward_data", "backward_weights"};

typedef struct shape {
    int n, c, h, k, r, stride, pad;
} shape;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* A buffer of `bytes` holding small values of type dt (valid numbers whatever the layout). */
static void *filled(size_t bytes, dnnl_data_type_t dt) {
    void *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!p) {
        fprintf(stderr, "conv_versions: out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    unsigned s = 12345;
    if (dt == dnnl_f32) {
        float *f = p;
        for (size_t i = 0; i < bytes / 4; i++)
            f[i] = (float)((s = s * 1103515245u + 12345u) >> 16) / 65536.0f - 0.5f;
    } else {
        unsigned short *h = p;
        for (size_t i = 0; i < bytes / 2; i++)
            h[i] = (unsigned short)(0x3e00 + ((s = s * 1103515245u + 12345u) >> 24));
    }
    return p;
}

/* The operation descriptor / primitive descriptor for one pass and algorithm; NULL pd when the
 * library has no implementation. */
static dnnl_status_t make_pd(dnnl_engine_t eng, pass ps, dnnl_alg_kind_t alg, const md_t *x, const md_t *w,
                             const md_t *y, const dnnl_dims_t strides, const dnnl_dims_t pl,
                             const dnnl_dims_t pr, dnnl_primitive_desc_t *pd) {
#if DNNL_VERSION_MAJOR >= 3
    /* 3.x: one call creates the primitive descriptor; dilations are explicit (NULL: none);
     * the attribute comes last; backward passes take the forward pd as a hint the same way. */
    dnnl_primitive_desc_t hint = NULL;
    dnnl_status_t st = dnnl_success;
    if (ps != FWD)
        st = dnnl_convolution_forward_primitive_desc_create(&hint, eng, dnnl_forward_training, alg, *x, *w,
                                                            NULL, *y, strides, NULL, pl, pr, NULL);
    if (st == dnnl_success) {
        if (ps == FWD)
            st = dnnl_convolution_forward_primitive_desc_create(pd, eng, dnnl_forward_inference, alg, *x, *w,
                                                                NULL, *y, strides, NULL, pl, pr, NULL);
        else if (ps == BWD_DATA)
            st = dnnl_convolution_backward_data_primitive_desc_create(pd, eng, alg, *x, *w, *y, strides, NULL,
                                                                      pl, pr, hint, NULL);
        else
            st = dnnl_convolution_backward_weights_primitive_desc_create(pd, eng, alg, *x, *w, NULL, *y,
                                                                         strides, NULL, pl, pr, hint, NULL);
    }
    if (hint) dnnl_primitive_desc_destroy(hint);
    return st;
#else
    /* 2.x: an operation descriptor (a struct) first, then the primitive descriptor. */
    dnnl_convolution_desc_t d, fd;
    dnnl_primitive_desc_t hint = NULL;
    dnnl_status_t st = dnnl_success;
    if (ps != FWD) {
        st = dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, alg, x, w, NULL, y, strides, pl,
                                                pr);
        if (st == dnnl_success) st = dnnl_primitive_desc_create(&hint, &fd, NULL, eng, NULL);
    }
    if (st == dnnl_success) {
        if (ps == FWD)
            st = dnnl_convolution_forward_desc_init(&d, dnnl_forward_inference, alg, x, w, NULL, y, strides,
                                                    pl, pr);
        else if (ps == BWD_DATA)
            st = dnnl_convolution_backward_data_desc_init(&d, alg, x, w, y, strides, pl, pr);
        else
            st = dnnl_convolution_backward_weights_desc_init(&d, alg, x, w, NULL, y, strides, pl, pr);
    }
    if (st == dnnl_success) st = dnnl_primitive_desc_create(pd, &d, NULL, eng, hint);
    if (hint) dnnl_primitive_desc_destroy(hint);
    return st;
#endif
}

/* Moves pd to the library's next implementation for the same problem; false when none is left.
 * 2.x walks a separate iterator, 3.x steps the primitive descriptor itself. */
#if DNNL_VERSION_MAJOR < 3
static dnnl_primitive_desc_t nth_impl(dnnl_engine_t eng, pass ps, dnnl_alg_kind_t alg, const md_t *x,
                                      const md_t *w, const md_t *y, const dnnl_dims_t strides,
                                      const dnnl_dims_t pl, const dnnl_dims_t pr, int n) {
    dnnl_convolution_desc_t d, fd;
    dnnl_primitive_desc_t hint = NULL, out = NULL;
    dnnl_primitive_desc_iterator_t it = NULL;
    dnnl_status_t st = dnnl_success;
    if (ps != FWD) {
        st = dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, alg, x, w, NULL, y, strides, pl,
                                                pr);
        if (st == dnnl_success) st = dnnl_primitive_desc_create(&hint, &fd, NULL, eng, NULL);
    }
    if (st == dnnl_success) {
        if (ps == FWD)
            st = dnnl_convolution_forward_desc_init(&d, dnnl_forward_inference, alg, x, w, NULL, y, strides,
                                                    pl, pr);
        else if (ps == BWD_DATA)
            st = dnnl_convolution_backward_data_desc_init(&d, alg, x, w, y, strides, pl, pr);
        else
            st = dnnl_convolution_backward_weights_desc_init(&d, alg, x, w, NULL, y, strides, pl, pr);
    }
    if (st == dnnl_success) st = dnnl_primitive_desc_iterator_create(&it, &d, NULL, eng, hint);
    for (int i = 0; st == dnnl_success && i < n; i++) st = dnnl_primitive_desc_iterator_next(it);
    if (st == dnnl_success) out = dnnl_primitive_desc_iterator_fetch(it);
    if (it) dnnl_primitive_desc_iterator_destroy(it);
    if (hint) dnnl_primitive_desc_destroy(hint);
    return out;
}
#endif

static const char *impl_name(dnnl_primitive_desc_t pd) {
    const char *s = "?";
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s);
    return s;
}

/* Times one primitive descriptor; returns the median ms and writes the best. */
static double time_pd(dnnl_engine_t eng, dnnl_stream_t strm, dnnl_primitive_desc_t pd, pass ps,
                      dnnl_data_type_t dt, double min_seconds, double *best) {
    int args_in[3], nargs = 3;
    if (ps == FWD) {
        args_in[0] = DNNL_ARG_SRC, args_in[1] = DNNL_ARG_WEIGHTS, args_in[2] = DNNL_ARG_DST;
    } else if (ps == BWD_DATA) {
        args_in[0] = DNNL_ARG_DIFF_DST, args_in[1] = DNNL_ARG_WEIGHTS, args_in[2] = DNNL_ARG_DIFF_SRC;
    } else {
        args_in[0] = DNNL_ARG_SRC, args_in[1] = DNNL_ARG_DIFF_DST, args_in[2] = DNNL_ARG_DIFF_WEIGHTS;
    }
    dnnl_exec_arg_t args[4];
    void *bufs[4];
    for (int i = 0; i < nargs; i++) {
#if DNNL_VERSION_MAJOR >= 3
        const_dnnl_memory_desc_t md = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, args_in[i]);
#else
        const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, args_in[i]);
#endif
        bufs[i] = filled(dnnl_memory_desc_get_size(md), dt);
        args[i].arg = args_in[i];
        CHECK(dnnl_memory_create(&args[i].memory, md, eng, bufs[i]));
    }
#if DNNL_VERSION_MAJOR >= 3
    const_dnnl_memory_desc_t smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
#else
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
#endif
    size_t sbytes = smd ? dnnl_memory_desc_get_size(smd) : 0;
    bufs[3] = NULL;
    if (sbytes) {
        bufs[3] = filled(sbytes, dnnl_f32);
        args[nargs].arg = DNNL_ARG_SCRATCHPAD;
        CHECK(dnnl_memory_create(&args[nargs].memory, smd, eng, bufs[3]));
        nargs++;
    }
    dnnl_primitive_t prim;
    CHECK(dnnl_primitive_create(&prim, pd));
    enum {
        MAX_RUNS = 400
    };
    static double ms[MAX_RUNS];
    for (int i = 0; i < 2; i++) CHECK(dnnl_primitive_execute(prim, strm, nargs, args));
    CHECK(dnnl_stream_wait(strm));
    int n = 0;
    double start = now();
    while (n < MAX_RUNS && (n < 5 || now() - start < min_seconds)) {
        double t0 = now();
        CHECK(dnnl_primitive_execute(prim, strm, nargs, args));
        CHECK(dnnl_stream_wait(strm));
        ms[n++] = 1e3 * (now() - t0);
    }
    dnnl_primitive_destroy(prim);
    for (int i = 0; i < nargs; i++) dnnl_memory_destroy(args[i].memory);
    for (int i = 0; i < 4; i++) free(i < 3 || sbytes ? bufs[i] : NULL);
    qsort(ms, (size_t)n, sizeof ms[0], cmp_double);
    *best = ms[0];
    return ms[n / 2];
}

int main(int argc, char **argv) {
    int threads = 2;
    double min_seconds = 0.3;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--threads=", 10) == 0)
            threads = atoi(argv[i] + 10);
        else if (strncmp(argv[i], "--min-seconds=", 14) == 0)
            min_seconds = atof(argv[i] + 14);
        else if (strncmp(argv[i], "--only=", 7) == 0)
            only = argv[i] + 7;
        else {
            fprintf(stderr, "usage: conv_versions [--threads=N] [--min-seconds=S] [--only=SUBSTRING]\n");
            return 2;
        }
    }
    omp_set_num_threads(threads); /* the OpenMP builds; a TBB build takes the cpu set */
    const dnnl_version_t *v = dnnl_version();
    dnnl_engine_t eng;
    dnnl_stream_t strm;
    CHECK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&strm, eng, dnnl_stream_default_flags));
    char version[64];
    snprintf(version, sizeof version, "%d.%d.%d", v->major, v->minor, v->patch);
    printf("{\"onednn\":\"%s\",\"hash\":\"%s\",\"cpu_runtime\":%u,\"threads\":%d}\n", version, v->hash,
           v->cpu_runtime, threads);
    /* ResNet-18's distinct convolutions: CIFAR (32x32, no max-pool) at batch 128 for training
     * and 64 for inference, and 224x224 at batches 16 and 1. */
    static const shape shapes[] = {
        {64, 64, 32, 64, 3, 1, 1},    {64, 64, 32, 128, 3, 2, 1},  {64, 128, 16, 128, 3, 1, 1},
        {64, 128, 16, 256, 3, 2, 1},  {64, 256, 8, 256, 3, 1, 1},  {64, 256, 8, 512, 3, 2, 1},
        {64, 512, 4, 512, 3, 1, 1},   {64, 64, 32, 128, 1, 2, 0},  {128, 64, 32, 64, 3, 1, 1},
        {128, 128, 16, 128, 3, 1, 1}, {128, 256, 8, 256, 3, 1, 1}, {128, 512, 4, 512, 3, 1, 1},
        {16, 3, 224, 64, 7, 2, 3},    {16, 64, 56, 64, 3, 1, 1},   {16, 128, 28, 128, 3, 1, 1},
        {16, 256, 14, 256, 3, 1, 1},  {16, 512, 7, 512, 3, 1, 1},  {1, 64, 56, 64, 3, 1, 1},
        {1, 128, 28, 128, 3, 1, 1},   {1, 256, 14, 256, 3, 1, 1},  {1, 512, 7, 512, 3, 1, 1},
    };
    const dnnl_data_type_t dts[2] = {dnnl_f32, dnnl_bf16};
    const dnnl_alg_kind_t algs[2] = {dnnl_convolution_direct, dnnl_convolution_winograd};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const shape *s = &shapes[si];
        int p = (s->h + 2 * s->pad - s->r) / s->stride + 1;
        /* Training passes only at the training batch; forward everywhere. */
        int npass = s->n == 128 ? 3 : 1;
        for (int d = 0; d < 2; d++)
            for (int ps = 0; ps < npass; ps++)
                for (int a = 0; a < 2; a++) {
                    char tag[128];
                    snprintf(tag, sizeof tag, "n%d_c%d_%dx%d_k%d_r%d_s%d %s %s %s", s->n, s->c, s->h, s->h,
                             s->k, s->r, s->stride, pass_names[ps], d ? "bf16" : "f32",
                             a ? "winograd" : "direct");
                    if (only && !strstr(tag, only)) continue;
                    dnnl_dims_t xd = {s->n, s->c, s->h, s->h}, yd = {s->n, s->k, p, p},
                                wd = {s->k, s->c, s->r, s->r}, st = {s->stride, s->stride},
                                pl = {s->pad, s->pad}, pr = {s->pad, s->pad};
                    /* Winograd reads only blocked activations; the direct kernels take NHWC. */
                    dnnl_format_tag_t act = a ? dnnl_nChw16c : dnnl_nhwc;
                    md_t x = md_tag(4, xd, dts[d], act), y = md_tag(4, yd, dts[d], act),
                         w = md_tag(4, wd, dts[d], dnnl_format_tag_any);
                    dnnl_primitive_desc_t pd = NULL;
                    dnnl_status_t stt = make_pd(eng, (pass)ps, algs[a], &x, &w, &y, st, pl, pr, &pd);
                    if (stt != dnnl_success) {
                        printf("{\"onednn\":\"%s\",\"case\":\"%s\",\"offered\":false}\n", version, tag);
                        md_free(x), md_free(y), md_free(w);
                        continue;
                    }
                    /* Every implementation on offer, best first as oneDNN ranks them; the
                     * reference and SSE4.1 kernels are skipped (never contenders on AVX2 or
                     * AVX-512 machines, and the slowest to time at the training batch). */
                    char seen[512] = "";
                    for (int impl = 0; pd && impl < 8; impl++) {
                        const char *name = impl_name(pd);
                        char quoted[80];
                        snprintf(quoted, sizeof quoted, "[%s]", name);
                        bool fresh = !strstr(seen, quoted); /* 2.x lists one kernel per ISA it fits */
                        if (fresh) strncat(seen, quoted, sizeof seen - strlen(seen) - 1);
                        if (fresh && !strstr(name, "ref") && !strstr(name, "sse41")) {
                            double best, med = time_pd(eng, strm, pd, (pass)ps, dts[d], min_seconds, &best);
                            double flop = 2.0 * s->n * s->k * p * p * (double)s->c * s->r * s->r;
                            printf(
                                "{\"onednn\":\"%s\",\"case\":\"%s\",\"rank\":%d,\"impl\":\"%s\",\"ms\":%.4f,"
                                "\"ms_median\":%.4f,\"gflops\":%.1f}\n",
                                version, tag, impl, name, best, med, flop / best / 1e6);
                            fflush(stdout);
                        }
#if DNNL_VERSION_MAJOR >= 3
                        if (dnnl_primitive_desc_next_impl(pd) != dnnl_success) break;
#else
                        dnnl_primitive_desc_destroy(pd);
                        pd = nth_impl(eng, (pass)ps, algs[a], &x, &w, &y, st, pl, pr, impl + 1);
#endif
                    }
                    if (pd) dnnl_primitive_desc_destroy(pd);
                    md_free(x), md_free(y), md_free(w);
                }
    }
    dnnl_stream_destroy(strm);
    dnnl_engine_destroy(eng);
    return 0;
}
