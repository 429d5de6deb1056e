/* The bulk initialization fills: the ziggurat normal matches the normal distribution (moments,
 * tail masses on both sides of the ziggurat's tail start R = 3.44, and a Kolmogorov-Smirnov
 * distance), and the values depend only on (seed, stream, index), never on the thread count
 * or the array length. */
#include "bl_test.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static void test_normal_distribution(void) {
    enum {
        N = 2000000
    };
    float *v = malloc(N * sizeof *v);
    bl_fill_normal_f32(v, N, 7, 3, 0.0, 1.0);
    double m1 = 0, m2 = 0, m4 = 0;
    int64_t over[4] = {0}; /* |x| > 1, 2, 3, 3.6 */
    const double cut[4] = {1.0, 2.0, 3.0, 3.6};
    for (int i = 0; i < N; i++) {
        double x = v[i];
        CHECK(isfinite(x));
        m1 += x;
        m2 += x * x;
        m4 += x * x * x * x;
        for (int k = 0; k < 4; k++) over[k] += fabs(x) > cut[k];
    }
    m1 /= N, m2 /= N, m4 /= N;
    /* Standard errors at N = 2e6: mean 7e-4, variance 1e-3, fourth moment 7e-3. */
    CHECK_NEAR(m1, 0.0, 0.004);
    CHECK_NEAR(m2, 1.0, 0.006);
    CHECK_NEAR(m4, 3.0, 0.04);
    /* Two-sided tail masses erfc(c / sqrt 2); 3.6 lies in the ziggurat's tail, beyond R. */
    for (int k = 0; k < 4; k++) {
        double want = erfc(cut[k] / sqrt(2.0)), got = (double)over[k] / N;
        double se = sqrt(want * (1 - want) / N);
        if (fabs(got - want) > 5 * se) {
            printf("  tail |x| > %.1f: %.6g, expected %.6g (5 sigma = %.2g)\n", cut[k], got, want, 5 * se);
            CHECK(false);
        }
    }
    /* Kolmogorov-Smirnov: the 0.1% critical distance is 1.95 / sqrt(N). */
    qsort(v, N, sizeof *v, cmp_float);
    double d = 0;
    for (int i = 0; i < N; i += 7) {
        double cdf = 0.5 * erfc(-v[i] / sqrt(2.0));
        double lo = fabs(cdf - (double)i / N), hi = fabs(cdf - (double)(i + 1) / N);
        if (lo > d) d = lo;
        if (hi > d) d = hi;
    }
    printf("  ziggurat normal: mean %.2e, variance %.5f, 4th moment %.4f, KS distance %.2e (limit %.2e)\n",
           m1, m2, m4, d, 1.95 / sqrt((double)N));
    CHECK(d < 1.95 / sqrt((double)N));
    free(v);
}

static void test_fills_are_deterministic(void) {
    enum {
        N = 100003
    }; /* several blocks and a partial one */
    float *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    bl_fill_normal_f32(a, N, 42, 5, 0.5, 2.0);
    omp_set_num_threads(threads > 1 ? threads : 2);
    bl_fill_normal_f32(b, N, 42, 5, 0.5, 2.0);
    CHECK(memcmp(a, b, N * sizeof *a) == 0);
    /* A prefix: the first values do not depend on the length asked for. */
    bl_fill_normal_f32(b, 1000, 42, 5, 0.5, 2.0);
    CHECK(memcmp(a, b, 1000 * sizeof *a) == 0);
    /* Another stream or seed gives other values. */
    bl_fill_normal_f32(b, N, 42, 6, 0.5, 2.0);
    CHECK(memcmp(a, b, 64 * sizeof *a) != 0);
    bl_fill_normal_f32(b, N, 43, 5, 0.5, 2.0);
    CHECK(memcmp(a, b, 64 * sizeof *a) != 0);
    /* Uniform: inside [lo, hi), mean in the middle, thread-count independent. */
    omp_set_num_threads(1);
    bl_fill_uniform_f32(a, N, 1, 2, -0.25, 0.75);
    omp_set_num_threads(threads > 1 ? threads : 2);
    bl_fill_uniform_f32(b, N, 1, 2, -0.25, 0.75);
    CHECK(memcmp(a, b, N * sizeof *a) == 0);
    double sum = 0;
    for (int i = 0; i < N; i++) {
        CHECK(a[i] >= -0.25f && a[i] < 0.75f);
        sum += a[i];
    }
    CHECK_NEAR(sum / N, 0.25, 0.005);
    omp_set_num_threads(threads);
    free(a);
    free(b);
}

int main(void) {
    RUN(test_normal_distribution);
    RUN(test_fills_are_deterministic);
    return bl_test_finish();
}
