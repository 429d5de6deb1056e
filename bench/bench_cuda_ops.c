/* Op-level CUDA benchmark (a program, never a test): the ops of a CIFAR ResNet-18 training step
 * at each stage's shape, in f32 and bf16, with achieved TFLOP/s (convolutions) or GB/s counted
 * from the least traffic the op needs (one read of each input, one write of each output), so
 * the distance to the GPU's peak shows where kernels have room. Prints JSON.
 *
 *   bench_cuda_ops [--batch=N] [--iters=N] [--out=FILE.json] [--device=cuda:0] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "beamlet/cuda.h"
#include "beamlet/devices.h"

typedef enum {
    OP_CONV_FWD,
    OP_CONV_BWD_DATA,
    OP_CONV_BWD_FILTER,
    OP_BN_FWD,
    OP_BN_BWD,
    OP_RELU,
    OP_ADD,
    OP_COUNT
} op_kind;
static const char *op_names[OP_COUNT] = {"conv3x3_forward",
                                         "conv3x3_backward_data",
                                         "conv3x3_backward_filter",
                                         "bn_relu_res_forward_train",
                                         "bn_relu_res_backward",
                                         "relu_forward",
                                         "add"};

typedef struct bufs {
    bl_tensor x, w, y, dy, dx, dw, res, dres, gamma, beta, rm, rv, sm, si, dg, db;
} bufs;

static bl_status run_op(bl_device *dev, op_kind op, bufs *b) {
    bl_conv2d_params cp = {1, 1, 1, 1};
    bl_batchnorm_params bn = {1e-5f, 0.1f};
    switch (op) {
        case OP_CONV_FWD: return bl_op_conv2d_forward(dev, &cp, &b->x, &b->w, NULL, NULL, false, &b->y);
        case OP_CONV_BWD_DATA: return bl_op_conv2d_backward_data(dev, &cp, &b->dy, &b->w, &b->dx);
        case OP_CONV_BWD_FILTER: return bl_op_conv2d_backward_filter(dev, &cp, &b->x, &b->dy, &b->dw);
        case OP_BN_FWD:
            return bl_op_batchnorm_forward_train(dev, &bn, &b->x, &b->gamma, &b->beta, &b->res, true, &b->rm,
                                                 &b->rv, &b->sm, &b->si, &b->y);
        case OP_BN_BWD:
            return bl_op_batchnorm_backward(dev, &b->dy, &b->x, &b->y, true, &b->gamma, &b->sm, &b->si,
                                            &b->dx, &b->dg, &b->db, &b->dres);
        case OP_RELU: return bl_op_relu_forward(dev, &b->x, &b->y);
        case OP_ADD: return bl_op_add(dev, &b->x, &b->res, &b->y);
        default: return bl_error(BL_ERR_INTERNAL, "bench: unknown op");
    }
}

/* Activation tensors the op must at least read and write once. */
static const int tensors_moved[OP_COUNT] = {0, 0, 0, 3, 5, 2, 3};

static bl_status alloc_all(bl_device *dev, bl_dtype dt, int64_t n, int64_t c, int64_t hw, bufs *b) {
    int64_t a[4] = {n, c, hw, hw}, wshape[4] = {c, c, 3, 3}, v[1] = {c};
    bl_tensor *acts[] = {&b->x, &b->y, &b->dy, &b->dx, &b->res, &b->dres};
    bl_tensor *wts[] = {&b->w, &b->dw};
    bl_tensor *vecs[] = {&b->gamma, &b->beta, &b->rm, &b->rv, &b->sm, &b->si, &b->dg, &b->db};
    for (int i = 0; i < 6; i++) BL_TRY(bl_tensor_alloc(dev, dt, 4, a, acts[i]));
    for (int i = 0; i < 2; i++) BL_TRY(bl_tensor_alloc(dev, dt, 4, wshape, wts[i]));
    for (int i = 0; i < 8; i++) BL_TRY(bl_tensor_alloc(dev, BL_F32, 1, v, vecs[i]));
    /* Values do not change the speed; zeros except positive scales and variances. */
    for (int i = 0; i < 6; i++) BL_TRY(bl_tensor_zero(acts[i]));
    for (int i = 0; i < 2; i++) BL_TRY(bl_tensor_zero(wts[i]));
    float *ones = malloc(sizeof(float) * (size_t)c);
    if (!ones) return bl_error(BL_ERR_OUT_OF_MEMORY, "bench: staging");
    for (int64_t i = 0; i < c; i++) ones[i] = 1.0f;
    bl_status s = BL_OK;
    for (int i = 0; i < 8 && s == BL_OK; i++) s = bl_tensor_copy_from_host(vecs[i], ones);
    free(ones);
    return s;
}

static void release_all(bufs *b) {
    bl_tensor *all[] = {&b->x,     &b->w,    &b->y,  &b->dy, &b->dx, &b->dw, &b->res, &b->dres,
                        &b->gamma, &b->beta, &b->rm, &b->rv, &b->sm, &b->si, &b->dg,  &b->db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) bl_tensor_release(all[i]);
}

int main(int argc, char **argv) {
    const char *out = NULL, *device = "cuda";
    int batch = 512, iters = 20;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--out=", 6) == 0)
            out = argv[i] + 6;
        else if (strncmp(argv[i], "--batch=", 8) == 0)
            batch = atoi(argv[i] + 8);
        else if (strncmp(argv[i], "--iters=", 8) == 0)
            iters = atoi(argv[i] + 8);
        else if (strncmp(argv[i], "--device=", 9) == 0)
            device = argv[i] + 9;
        else {
            fprintf(stderr, "usage: bench_cuda_ops [--batch=N] [--iters=N] [--out=FILE] "
                            "[--device=cuda:N]\n");
            return 2;
        }
    }
    if (batch < 1 || iters < 1) return 2;
    if (bl_device_count("cuda") == 0) {
        fprintf(stderr, "bench_cuda_ops: no CUDA GPU visible; nothing to measure\n");
        return 1;
    }
    bl_device *dev;
    if (bl_device_get(device, &dev) != BL_OK) {
        fprintf(stderr, "bench_cuda_ops: %s\n", bl_last_error());
        return 1;
    }
    char date[32];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    FILE *f = out ? fopen(out, "w") : stdout;
    if (!f) {
        perror(out);
        return 1;
    }
    fprintf(f,
            "{\n  \"benchmark\": \"bench_cuda_ops\",\n  \"date\": \"%s\",\n  \"device\": \"%s\",\n"
            "  \"batch\": %d,\n  \"results\": [\n",
            date, bl_device_description(dev), batch);
    const int stages[4][2] = {{64, 32}, {128, 16}, {256, 8}, {512, 4}}; /* channels, size */
    const bl_dtype dts[2] = {BL_F32, BL_BF16};
    bool first = true;
    int failures = 0;
    for (int d = 0; d < 2; d++)
        for (int st = 0; st < 4; st++) {
            int64_t c = stages[st][0], hw = stages[st][1];
            bufs b;
            memset(&b, 0, sizeof b);
            if (alloc_all(dev, dts[d], batch, c, hw, &b) != BL_OK) {
                fprintf(stderr, "alloc: %s\n", bl_last_error());
                failures++;
                release_all(&b);
                continue;
            }
            for (int op = 0; op < OP_COUNT; op++) {
                bl_status s = BL_OK;
                for (int i = 0; i < 3 && s == BL_OK; i++) s = run_op(dev, (op_kind)op, &b);
                if (s == BL_OK) s = bl_device_synchronize(dev);
                double t0 = bl_time_now();
                for (int i = 0; i < iters && s == BL_OK; i++) s = run_op(dev, (op_kind)op, &b);
                if (s == BL_OK) s = bl_device_synchronize(dev);
                double ms = (bl_time_now() - t0) * 1e3 / iters;
                if (s != BL_OK) {
                    fprintf(stderr, "%s %s c%lld: %s\n", op_names[op], bl_dtype_name(dts[d]), (long long)c,
                            bl_last_error());
                    failures++;
                    continue;
                }
                double elems = (double)batch * (double)c * (double)(hw * hw);
                double flops = 2.0 * elems * (double)c * 9.0;
                double bytes = tensors_moved[op] * elems * (double)(dts[d] == BL_F32 ? 4 : 2);
                double rate = op <= OP_CONV_BWD_FILTER ? flops / ms / 1e9 : bytes / ms / 1e6;
                const char *unit = op <= OP_CONV_BWD_FILTER ? "tflop_per_s" : "gb_per_s";
                fprintf(stderr, "%-26s %-4s [%d,%lld,%lld,%lld] %9.3f ms %9.1f %s\n", op_names[op],
                        bl_dtype_name(dts[d]), batch, (long long)c, (long long)hw, (long long)hw, ms, rate,
                        unit);
                fprintf(f,
                        "%s    {\"op\": \"%s\", \"dtype\": \"%s\", \"shape\": [%d, %lld, %lld, "
                        "%lld], \"ms\": %.4f, \"%s\": %.2f}",
                        first ? "" : ",\n", op_names[op], bl_dtype_name(dts[d]), batch, (long long)c,
                        (long long)hw, (long long)hw, ms, unit, rate);
                first = false;
            }
            release_all(&b);
        }
    fprintf(f, "\n  ]\n}\n");
    if (out) fclose(f);
    bl_device_release(dev);
    return failures ? 1 : 0;
}
