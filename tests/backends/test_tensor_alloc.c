/* bl_tensor_alloc with shapes that come from files and flags: a negative dimension, or one
 * whose element count times the dtype size does not fit in 64 bits, is refused with a message
 * that shows the shape, before anything is allocated (a wrapped byte count would hand back a
 * small buffer that the tensor's shape then overruns). */
#include "bl_test.h"

#include <stdint.h>

#include "beamlet/devices.h"

static bl_device *dev;

static void test_ordinary_and_empty(void) {
    bl_tensor t;
    int64_t s[4] = {2, 3, 4, 5};
    CHECK_OK(bl_tensor_alloc(dev, BL_F32, 4, s, &t));
    CHECK(t.data != NULL && bl_tensor_numel(&t) == 120 && bl_tensor_nbytes(&t) == 480);
    bl_tensor_release(&t);
    int64_t empty[2] = {0, 5};
    CHECK_OK(bl_tensor_alloc(dev, BL_F32, 2, empty, &t));
    CHECK(bl_tensor_nbytes(&t) == 0);
    bl_tensor_release(&t);
}

static void test_negative_dimension(void) {
    bl_tensor t;
    int64_t s[2] = {2, -3};
    CHECK_ERR(bl_tensor_alloc(dev, BL_F32, 2, s, &t), BL_ERR_INVALID_ARG,
              "tensor: shape [2,-3]: dimension 1 is negative");
    CHECK(t.data == NULL); /* safe to release after a refusal */
    bl_tensor_release(&t);
}

static void test_byte_count_overflow(void) {
    bl_tensor t;
    int64_t elements[3] = {(int64_t)1 << 32, (int64_t)1 << 32, 16}; /* 2^68 elements */
    CHECK_ERR(
        bl_tensor_alloc(dev, BL_F32, 3, elements, &t), BL_ERR_INVALID_ARG,
        "tensor: shape [4294967296,4294967296,16] of f32 is too large (its byte count overflows 64 bits)");
    CHECK(t.data == NULL);
    int64_t bytes[1] = {(int64_t)1 << 62}; /* 2^62 elements fit; 2^64 bytes do not */
    CHECK_ERR(bl_tensor_alloc(dev, BL_F32, 1, bytes, &t), BL_ERR_INVALID_ARG,
              "shape [4611686018427387904] of f32 is too large");
    CHECK_ERR(bl_tensor_alloc(dev, BL_I64, 1, bytes, &t), BL_ERR_INVALID_ARG, "of i64 is too large");
    /* A zero makes the tensor empty, but the other dimensions would still overflow the
     * element count that code computes from the shape. */
    int64_t zero_last[3] = {(int64_t)1 << 40, (int64_t)1 << 40, 0};
    CHECK_ERR(bl_tensor_alloc(dev, BL_U8, 3, zero_last, &t), BL_ERR_INVALID_ARG,
              "shape [1099511627776,1099511627776,0] of u8 is too large");
    int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    CHECK_ERR(bl_tensor_alloc(dev, BL_F32, 9, nine, &t), BL_ERR_INVALID_ARG,
              "tensor: 9 dimensions (at most 6)");
}

/* Backends round a size up to 64 bytes (and add headers): near SIZE_MAX that wrapped to a
 * 64-byte buffer handed back as a success. */
static void test_device_alloc_near_size_max(void) {
    void *p = (void *)1;
    CHECK_ERR(bl_device_alloc(dev, SIZE_MAX - 10, &p), BL_ERR_INVALID_ARG,
              "more than any allocation can hold");
    CHECK(p == NULL);
    bl_device *cpu;
    if (bl_device_get("cpu", &cpu) == BL_OK) { /* the oneDNN backend when built */
        CHECK_ERR(bl_device_alloc(cpu, SIZE_MAX - 10, &p), BL_ERR_INVALID_ARG, "cpu: allocating");
        bl_device_release(cpu);
    }
}

int main(void) {
    if (bl_device_get("cpu_ref", &dev) != BL_OK) return 1;
    RUN(test_ordinary_and_empty);
    RUN(test_negative_dimension);
    RUN(test_byte_count_overflow);
    RUN(test_device_alloc_near_size_max);
    bl_device_release(dev);
    return bl_test_finish();
}
