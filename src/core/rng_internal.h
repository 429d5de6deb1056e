/* The xoshiro256** step, inline for the bulk fills' inner loops (rng_fill.c); bl_rng_u64 is
 * the same step behind the public API. */
#ifndef BEAMLET_CORE_RNG_INTERNAL_H
#define BEAMLET_CORE_RNG_INTERNAL_H

#include "beamlet/core.h"

static inline uint64_t bl_rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t bl_xoshiro_next(bl_rng *rng) {
    uint64_t *s = rng->s;
    uint64_t result = bl_rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = bl_rotl64(s[3], 45);
    return result;
}

#endif
