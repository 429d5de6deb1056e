/* xoshiro256** (Blackman & Vigna) seeded with splitmix64: small, fast, and the same stream on
 * every platform, which is what deterministic tests and resumable training need. */
#include "beamlet/core.h"
#include "core/rng_internal.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return bl_rotl64(x, k); }

void bl_rng_seed(bl_rng *rng, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&x);
}

uint64_t bl_rng_u64(bl_rng *rng) { return bl_xoshiro_next(rng); }

uint32_t bl_rng_u32(bl_rng *rng) { return (uint32_t)(bl_rng_u64(rng) >> 32); }

uint64_t bl_rng_below(bl_rng *rng, uint64_t n) {
    /* Rejection sampling: drop the top partial range so every value is equally likely. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t r;
    do r = bl_rng_u64(rng);
    while (r >= limit);
    return r % n;
}

double bl_rng_uniform(bl_rng *rng) { return (double)(bl_rng_u64(rng) >> 11) * 0x1.0p-53; }

double bl_rng_normal(bl_rng *rng) {
    double u1 = bl_rng_uniform(rng);
    double u2 = bl_rng_uniform(rng);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

bl_rng bl_rng_fork(const bl_rng *rng, uint64_t label) {
    uint64_t x = rng->s[0] ^ rotl(rng->s[1], 13) ^ rotl(rng->s[2], 29) ^ rotl(rng->s[3], 43);
    x ^= splitmix64(&label);
    bl_rng child;
    bl_rng_seed(&child, x);
    return child;
}
