/* The CUDA device itself: opening it, its description and capabilities, out-of-memory reported
 * with sizes, device memory still usable after that, the convolution plan cache reused across
 * calls, pinned uploads, and versions. Every case that needs a GPU skips, saying why, when
 * none is visible; the no-GPU case checks the error a user sees then. */
#include "bl_test.h"

#include "beamlet/devices.h"
#ifdef BEAMLET_HAVE_CUDA
#include "beamlet/cuda.h"
#endif

#define SEED 11u

#ifdef BEAMLET_HAVE_CUDA
#define NEED_GPU()                                                                                           \
    do {                                                                                                     \
        if (bl_device_count("cuda") == 0) SKIP("no CUDA GPU visible (bl_device_count(\"cuda\") == 0)");      \
    } while (0)
#else
#define NEED_GPU() SKIP("built without the CUDA backend (BEAMLET_HAVE_CUDA undefined)")
#endif

/* Without a GPU, asking for one is an error that says so (and never a crash). */
static void test_missing_gpu_is_reported(void) {
    if (bl_device_count("cuda") > 0) SKIP("a GPU is visible; the no-GPU message cannot be seen");
    bl_device *dev = NULL;
    bl_status s = bl_device_get("cuda:0", &dev);
    CHECK(s != BL_OK && dev == NULL);
#ifdef BEAMLET_HAVE_CUDA
    CHECK_MSG(s == BL_ERR_NOT_FOUND && strstr(bl_last_error(), "no NVIDIA GPU"), "%s", bl_last_error());
#else
    CHECK_MSG(s == BL_ERR_UNSUPPORTED && strstr(bl_last_error(), "without the CUDA backend"), "%s",
              bl_last_error());
#endif
    fprintf(stderr, "  cuda:0 -> %s: %s\n", bl_status_name(s), bl_last_error());
}

#ifdef BEAMLET_HAVE_CUDA
static bl_device *open_gpu(void) {
    bl_device *dev = NULL;
    bl_status s = bl_device_get("cuda", &dev);
    CHECK_MSG(s == BL_OK, "bl_device_get(cuda): %s", bl_last_error());
    return s == BL_OK ? dev : NULL;
}
#endif

static void test_open_and_describe(void) {
    NEED_GPU();
#ifdef BEAMLET_HAVE_CUDA
    bl_device *dev = open_gpu();
    if (!dev) return;
    fprintf(stderr, "  %s: %s\n", bl_device_name(dev), bl_device_description(dev));
    CHECK(strcmp(bl_device_name(dev), "cuda:0") == 0);
    CHECK(strcmp(bl_device_backend_name(dev), "cuda") == 0);
    CHECK(bl_device_get_kind(dev) == BL_DEVICE_CUDA);
    CHECK(bl_device_preferred_layout(dev) == BL_LAYOUT_NHWC);
    CHECK(strstr(bl_device_description(dev), "compute capability") != NULL);
    CHECK(bl_device_supports_op(dev, BL_OP_CONV2D_FORWARD, BL_BF16));
    CHECK(bl_device_supports_op(dev, BL_OP_BATCHNORM_BACKWARD, BL_BF16));
    CHECK(!bl_device_supports_op(dev, BL_OP_SOFTMAX_CROSS_ENTROPY, BL_BF16));
    CHECK(!bl_device_supports_op(dev, BL_OP_ADAMW_UPDATE, BL_BF16));
    char list[1024];
    CHECK_OK(bl_device_list(list, sizeof list));
    CHECK(strstr(list, "cuda:0") != NULL);
    bl_device_release(dev);
#endif
}

/* A petabyte cannot be had: the error names the size and what is free, and the device keeps
 * working afterwards. */
static void test_out_of_memory_reports_sizes(void) {
    NEED_GPU();
#ifdef BEAMLET_HAVE_CUDA
    bl_device *dev = open_gpu();
    if (!dev) return;
    void *p = NULL;
    size_t petabyte = (size_t)1 << 50;
    CHECK_ERR(bl_device_alloc(dev, petabyte, &p), BL_ERR_OUT_OF_MEMORY,
              "out of memory allocating 1125899906842624 bytes (free ");
    fprintf(stderr, "  %s\n", bl_last_error());
    CHECK(p == NULL);
    int64_t shape[1] = {1024};
    bl_tensor t;
    CHECK_OK(bl_tensor_alloc(dev, BL_F32, 1, shape, &t));
    float host[1024], back[1024];
    for (int i = 0; i < 1024; i++) host[i] = (float)i;
    CHECK_OK(bl_tensor_copy_from_host(&t, host));
    CHECK_OK(bl_tensor_copy_to_host(&t, back));
    CHECK(memcmp(host, back, sizeof host) == 0);
    bl_tensor_release(&t);
    bl_device_release(dev);
#endif
}

#ifdef BEAMLET_HAVE_CUDA
static void fill(bl_tensor *t, bl_rng *rng) {
    int64_t n = bl_tensor_numel(t);
    float *h = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) h[i] = (float)bl_rng_normal(rng);
    CHECK_OK(bl_tensor_upload_nchw_f32(t, h));
    free(h);
}
#endif

/* A shape is planned once: later calls with it find the plan; a new shape or direction makes
 * one more. */
static void test_plan_cache_reuse(void) {
    NEED_GPU();
#ifdef BEAMLET_HAVE_CUDA
    bl_device *dev = open_gpu();
    if (!dev) return;
    bl_rng rng;
    bl_rng_seed(&rng, SEED);
    int64_t xs[4] = {4, 8, 12, 12}, ws[4] = {16, 8, 3, 3}, ys[4] = {4, 16, 12, 12};
    int64_t x2s[4] = {2, 8, 12, 12}, y2s[4] = {2, 16, 12, 12};
    bl_tensor x, w, y, x2, y2;
    CHECK_OK(bl_tensor_alloc(dev, BL_F32, 4, xs, &x));
    CHECK_OK(bl_tensor_alloc(dev, BL_F32, 4, ws, &w));
    CHECK_OK(bl_tensor_alloc(dev, BL_F32, 4, ys, &y));
    CHECK_OK(bl_tensor_alloc(dev, BL_F32, 4, x2s, &x2));
    CHECK_OK(bl_tensor_alloc(dev, BL_F32, 4, y2s, &y2));
    fill(&x, &rng), fill(&w, &rng), fill(&x2, &rng);
    bl_conv2d_params p = {1, 1, 1, 1};
    bl_cuda_plan_stats st;
    CHECK_OK(bl_cuda_plan_stats_get(dev, &st));
    CHECK(st.plans == 0 && st.hits == 0 && st.misses == 0);
    for (int i = 0; i < 3; i++) CHECK_OK(bl_op_conv2d_forward(dev, &p, &x, &w, NULL, NULL, false, &y));
    CHECK_OK(bl_cuda_plan_stats_get(dev, &st));
    CHECK_MSG(st.plans == 1 && st.misses == 1 && st.hits == 2, "plans %d misses %d hits %d", st.plans,
              st.misses, st.hits);
    size_t ws_after_first = st.workspace_bytes;
    CHECK_OK(bl_op_conv2d_forward(dev, &p, &x2, &w, NULL, NULL, false, &y2));
    CHECK_OK(bl_op_conv2d_backward_data(dev, &p, &y, &w, &x));
    CHECK_OK(bl_op_conv2d_backward_data(dev, &p, &y, &w, &x));
    CHECK_OK(bl_device_synchronize(dev));
    CHECK_OK(bl_cuda_plan_stats_get(dev, &st));
    CHECK_MSG(st.plans == 3 && st.misses == 3 && st.hits == 3, "plans %d misses %d hits %d", st.plans,
              st.misses, st.hits);
    CHECK(st.workspace_bytes >= ws_after_first);
    fprintf(stderr, "  %d plans, %d hits, workspace %zu bytes\n", st.plans, st.hits, st.workspace_bytes);
    /* A second handle on the same GPU has its own cache. */
    bl_device *other = open_gpu();
    if (other) {
        CHECK_OK(bl_cuda_plan_stats_get(other, &st));
        CHECK(st.plans == 0);
        bl_device_release(other);
    }
    bl_tensor *all[] = {&x, &w, &y, &x2, &y2};
    for (int i = 0; i < 5; i++) bl_tensor_release(all[i]);
    bl_device_release(dev);
#endif
}

/* Pinned uploads on the copy stream land before later ops read them. */
static void test_async_upload(void) {
    NEED_GPU();
#ifdef BEAMLET_HAVE_CUDA
    bl_device *dev = open_gpu();
    if (!dev) return;
    enum {
        N = 1 << 20
    };
    float *pinned = NULL, *back = malloc(sizeof(float) * N);
    CHECK_OK(bl_cuda_host_alloc(sizeof(float) * N, (void **)&pinned));
    int64_t shape[1] = {N};
    bl_tensor a, b;
    CHECK_OK(bl_tensor_alloc(dev, BL_F32, 1, shape, &a));
    CHECK_OK(bl_tensor_alloc(dev, BL_F32, 1, shape, &b));
    for (int i = 0; i < N; i++) pinned[i] = (float)(i % 1000) - 500.0f;
    CHECK_OK(bl_cuda_upload_async(dev, a.data, pinned, sizeof(float) * N));
    CHECK_OK(bl_op_relu_forward(dev, &a, &b)); /* ordered after the upload */
    CHECK_OK(bl_cuda_upload_wait(dev));
    CHECK_OK(bl_tensor_copy_to_host(&b, back));
    int bad = 0;
    for (int i = 0; i < N; i++) bad += back[i] != (pinned[i] > 0 ? pinned[i] : 0.0f);
    CHECK_MSG(bad == 0, "%d of %d elements differ", bad, N);
    bl_tensor_release(&a);
    bl_tensor_release(&b);
    bl_cuda_host_free(pinned);
    free(back);
    /* Wrong device kinds are refused, not dereferenced. */
    bl_device *cpu;
    CHECK_OK(bl_device_get("cpu_ref", &cpu));
    CHECK_ERR(bl_cuda_upload_wait(cpu), BL_ERR_INVALID_ARG, "is not a CUDA device");
    bl_device_release(cpu);
    bl_device_release(dev);
#endif
}

#ifdef BEAMLET_HAVE_CUDA
/* Runs a chain of 4-D ops with every activation in `layout` and returns the outputs in
 * logical order, concatenated, in `out` (malloc'ed; *n values). */
static void layout_chain(bl_device *dev, bl_layout layout, bl_dtype dt, float **out, int64_t *n) {
    enum {
        NB = 3,
        C = 5,
        H = 9,
        W = 7,
        K = 6
    };
    bl_rng rng;
    bl_rng_seed(&rng, SEED + 1); /* the same inputs for both layouts */
    int64_t xs[4] = {NB, C, H, W}, ws[4] = {K, C, 3, 3}, ys[4] = {NB, K, H, W};
    int64_t ps[4] = {NB, K, 5, 4}, gs[2] = {NB, K}, ks[1] = {K};
    struct {
        int ndim;
        const int64_t *shape;
        bool act;
    } spec[] = {
        {4, xs, 1}, {4, ws, 1}, {1, ks, 0}, {4, ys, 1}, {4, ys, 1}, {1, ks, 0}, {1, ks, 0}, {1, ks, 0},
        {1, ks, 0}, {1, ks, 0}, {1, ks, 0}, {4, ys, 1}, {4, ps, 1}, {2, gs, 1}, {4, ps, 1}, {4, ys, 1},
        {4, ys, 1}, {1, ks, 0}, {1, ks, 0}, {4, ys, 1}, {4, ws, 1}, {4, xs, 1},
    };
    enum {
        X,
        WT,
        BIAS,
        RES,
        Y1,
        GAMMA,
        BETA,
        RM,
        RV,
        SM,
        SI,
        Y2,
        Y3,
        G,
        DY3,
        DY2,
        DY1,
        DG,
        DB,
        DRES,
        DW,
        DX,
        NT
    };
    bl_tensor t[NT];
    for (int i = 0; i < NT; i++) {
        CHECK_OK(bl_tensor_alloc(dev, spec[i].act ? dt : BL_F32, spec[i].ndim, spec[i].shape, &t[i]));
        t[i].layout = spec[i].ndim == 4 ? layout : BL_LAYOUT_NCHW;
        int64_t cnt = bl_tensor_numel(&t[i]);
        float *h = malloc(sizeof(float) * (size_t)cnt);
        for (int64_t j = 0; j < cnt; j++) {
            double v = bl_rng_normal(&rng);
            h[j] = (i == GAMMA || i == RV) ? (float)(0.5 + fabs(v)) : (float)v;
            if (dt == BL_BF16 && spec[i].act) h[j] = bl_bf16_to_f32(bl_f32_to_bf16(h[j]));
        }
        CHECK_OK(bl_tensor_upload_nchw_f32(&t[i], h));
        free(h);
    }
    bl_conv2d_params cp = {1, 1, 1, 1};
    bl_batchnorm_params bn = {1e-5f, 0.1f};
    bl_pool_params pp = {3, 2, 1};
    CHECK_OK(bl_op_conv2d_forward(dev, &cp, &t[X], &t[WT], &t[BIAS], &t[RES], true, &t[Y1]));
    CHECK_OK(bl_op_batchnorm_forward_train(dev, &bn, &t[Y1], &t[GAMMA], &t[BETA], &t[RES], true, &t[RM],
                                           &t[RV], &t[SM], &t[SI], &t[Y2]));
    CHECK_OK(bl_op_maxpool_forward(dev, &pp, &t[Y2], &t[Y3]));
    CHECK_OK(bl_op_global_avgpool_forward(dev, &t[Y3], &t[G]));
    CHECK_OK(bl_op_global_avgpool_backward(dev, &t[G], &t[DY3]));
    CHECK_OK(bl_op_maxpool_backward(dev, &pp, &t[Y2], &t[DY3], &t[DY2]));
    CHECK_OK(bl_op_batchnorm_backward(dev, &t[DY2], &t[Y1], &t[Y2], true, &t[GAMMA], &t[SM], &t[SI], &t[DY1],
                                      &t[DG], &t[DB], &t[DRES]));
    CHECK_OK(bl_op_conv2d_backward_filter(dev, &cp, &t[X], &t[DY1], &t[DW]));
    CHECK_OK(bl_op_conv2d_backward_data(dev, &cp, &t[DY1], &t[WT], &t[DX]));
    CHECK_OK(bl_device_synchronize(dev));
    int outs[] = {Y1, Y2, RM, RV, Y3, G, DY2, DY1, DG, DB, DRES, DW, DX};
    int64_t total = 0;
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) total += bl_tensor_numel(&t[outs[i]]);
    *out = malloc(sizeof(float) * (size_t)total);
    *n = total;
    int64_t at = 0;
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
        CHECK_OK(bl_tensor_download_f32(&t[outs[i]], *out + at));
        at += bl_tensor_numel(&t[outs[i]]);
    }
    for (int i = 0; i < NT; i++) bl_tensor_release(&t[i]);
}
#endif

/* NCHW and NHWC are both accepted and give the same answers (the parity table runs NHWC, the
 * preferred layout, against cpu_ref; this covers the NCHW kernels). */
static void test_layouts_agree(void) {
    NEED_GPU();
#ifdef BEAMLET_HAVE_CUDA
    bl_device *dev = open_gpu();
    if (!dev) return;
    bl_dtype dts[] = {BL_F32, BL_BF16};
    for (int d = 0; d < 2; d++) {
        float *a = NULL, *b = NULL;
        int64_t na = 0, nb = 0;
        layout_chain(dev, BL_LAYOUT_NCHW, dts[d], &a, &na);
        layout_chain(dev, BL_LAYOUT_NHWC, dts[d], &b, &nb);
        double num = 0, den = 0;
        int bad = 0;
        for (int64_t i = 0; i < na && na == nb; i++) {
            bad += !isfinite(a[i]) || !isfinite(b[i]);
            num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
            den += (double)b[i] * b[i];
        }
        double e = den > 0 ? num / den : num;
        /* f32: summation order only. bf16: the layouts may pick different cuDNN algorithms,
         * whose bf16 roundings of intermediate outputs differ. */
        double thr = dts[d] == BL_F32 ? 1e-10 : 1e-4;
        fprintf(stderr, "  %s nchw vs nhwc: nmse %.2e over %lld values, %d non-finite\n",
                bl_dtype_name(dts[d]), e, (long long)na, bad);
        CHECK_MSG(na == nb && bad == 0 && e < thr, "%s: nmse %.3g", bl_dtype_name(dts[d]), e);
        free(a);
        free(b);
    }
    bl_device_release(dev);
#endif
}

/* f32 -> bf16 -> f32 on the device rounds exactly as the host conversion does. */
static void test_convert(void) {
    NEED_GPU();
#ifdef BEAMLET_HAVE_CUDA
    bl_device *dev = open_gpu();
    if (!dev) return;
    enum {
        N = 4099
    };
    int64_t shape[1] = {N};
    bl_tensor f, b, back;
    CHECK_OK(bl_tensor_alloc(dev, BL_F32, 1, shape, &f));
    CHECK_OK(bl_tensor_alloc(dev, BL_BF16, 1, shape, &b));
    CHECK_OK(bl_tensor_alloc(dev, BL_F32, 1, shape, &back));
    static float h[N], got[N];
    bl_rng rng;
    bl_rng_seed(&rng, SEED + 2);
    for (int i = 0; i < N; i++) h[i] = (float)(bl_rng_normal(&rng) * 100.0);
    h[0] = 1.0f + 1.0f / 256.0f; /* a tie: rounds to even (1.0) */
    CHECK_OK(bl_tensor_copy_from_host(&f, h));
    CHECK_OK(bl_cuda_convert(dev, &f, &b));
    CHECK_OK(bl_cuda_convert(dev, &b, &back));
    CHECK_OK(bl_tensor_copy_to_host(&back, got));
    int bad = 0;
    for (int i = 0; i < N; i++) bad += got[i] != bl_bf16_to_f32(bl_f32_to_bf16(h[i]));
    CHECK_MSG(bad == 0, "%d of %d values round differently", bad, N);
    CHECK(got[0] == 1.0f);
    bl_tensor_release(&f);
    bl_tensor_release(&b);
    bl_tensor_release(&back);
    bl_device_release(dev);
#endif
}

/* The CUDA-only functions refuse other devices with a message (runs without a GPU). */
static void test_cuda_api_rejects_cpu(void) {
#ifndef BEAMLET_HAVE_CUDA
    SKIP("built without the CUDA backend (BEAMLET_HAVE_CUDA undefined)");
#else
    bl_device *cpu;
    CHECK_OK(bl_device_get("cpu_ref", &cpu));
    float x[4] = {0};
    int64_t n = 4;
    bl_tensor t = bl_tensor_view(cpu, x, BL_F32, 1, &n);
    CHECK_ERR(bl_cuda_convert(cpu, &t, &t), BL_ERR_INVALID_ARG, "cpu_ref is not a CUDA device");
    CHECK_ERR(bl_cuda_upload_async(cpu, x, x, sizeof x), BL_ERR_INVALID_ARG, "is not a CUDA device");
    bl_cuda_plan_stats st;
    CHECK_ERR(bl_cuda_plan_stats_get(cpu, &st), BL_ERR_INVALID_ARG, "is not a CUDA device");
    bl_device_release(cpu);
#endif
}

static void test_versions(void) {
    NEED_GPU();
#ifdef BEAMLET_HAVE_CUDA
    bl_cuda_versions v;
    CHECK_OK(bl_cuda_versions_get(&v));
    fprintf(stderr, "  runtime %d driver %d cudnn %d cublas %d\n", v.runtime, v.driver, v.cudnn, v.cublas);
    CHECK(v.runtime >= 12000 && v.driver >= 12000);
    CHECK(v.cudnn >= 90000 && v.cublas >= 120000);
#endif
}

int main(void) {
    fprintf(stderr, "seed %u, %d CUDA device(s)\n", SEED, bl_device_count("cuda"));
    RUN(test_missing_gpu_is_reported);
    RUN(test_cuda_api_rejects_cpu);
    RUN(test_open_and_describe);
    RUN(test_out_of_memory_reports_sizes);
    RUN(test_plan_cache_reuse);
    RUN(test_async_upload);
    RUN(test_layouts_agree);
    RUN(test_convert);
    RUN(test_versions);
    return bl_test_finish();
}
