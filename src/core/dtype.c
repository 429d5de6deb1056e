/* Element types and the bf16/f16 <-> f32 conversions used by loaders and mixed precision. */
#include "beamlet/core.h"

#include <string.h>

size_t bl_dtype_size(bl_dtype dtype) {
    switch (dtype) {
        case BL_F32: return 4;
        case BL_BF16: return 2;
        case BL_F16: return 2;
        case BL_U8: return 1;
        case BL_I32: return 4;
        case BL_I64: return 8;
        default: return 0;
    }
}

const char *bl_dtype_name(bl_dtype dtype) {
    switch (dtype) {
        case BL_F32: return "f32";
        case BL_BF16: return "bf16";
        case BL_F16: return "f16";
        case BL_U8: return "u8";
        case BL_I32: return "i32";
        case BL_I64: return "i64";
        default: return "invalid";
    }
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float bl_bf16_to_f32(uint16_t v) { return bits_f32((uint32_t)v << 16); }

uint16_t bl_f32_to_bf16(float v) {
    uint32_t u = f32_bits(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)((u + rounding) >> 16);
}

float bl_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (mant << 13)); /* inf / NaN */
    if (exp == 0) {
        if (mant == 0) return bits_f32(sign);
        /* Subnormal: value is mant * 2^-24. */
        float f = (float)mant * (1.0f / 16777216.0f);
        return sign ? -f : f;
    }
    return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t bl_f32_to_f16(float v) {
    uint32_t u = f32_bits(v);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);  /* NaN */
    if (abs >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: inf */
    if (abs < 0x38800000u) {
        /* Result is subnormal or zero: round abs / 2^-24 to nearest even integer. */
        float a = bits_f32(abs) * 16777216.0f;
        uint32_t m = (uint32_t)a;
        float frac = a - (float)m;
        if (frac > 0.5f || (frac == 0.5f && (m & 1u))) m++;
        return (uint16_t)(sign | m);
    }
    uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);
    return (uint16_t)(sign | ((rounded - 0x38000000u) >> 13));
}

bl_status bl_precision_parse(const char *text, bl_dtype *out) {
    if (text && strcmp(text, "f32") == 0) {
        *out = BL_F32;
        return BL_OK;
    }
    if (text && strcmp(text, "bf16") == 0) {
        *out = BL_BF16;
        return BL_OK;
    }
    return bl_error(BL_ERR_INVALID_ARG, "precision '%s': expected one of %s", text ? text : "(null)",
                    BL_PRECISION_NAMES);
}
