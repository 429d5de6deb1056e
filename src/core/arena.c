/* A bump allocator: plans and scratch whose lifetime is a whole model or run live here, so the
 * hot loop never calls malloc and teardown is one free. */
#include "beamlet/core.h"

#include <stdlib.h>

struct bl_arena {
    unsigned char *base;
    size_t capacity;
    size_t used;
};

bl_status bl_arena_new(size_t capacity, bl_arena **out) {
    *out = NULL;
    bl_arena *a = calloc(1, sizeof *a);
    if (!a) return bl_error(BL_ERR_OUT_OF_MEMORY, "arena: cannot allocate its header");
    a->base = malloc(capacity ? capacity : 1);
    if (!a->base) {
        free(a);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "arena: cannot allocate %zu bytes", capacity);
    }
    a->capacity = capacity;
    *out = a;
    return BL_OK;
}

void bl_arena_free(bl_arena *arena) {
    if (!arena) return;
    free(arena->base);
    free(arena);
}

void *bl_arena_alloc(bl_arena *arena, size_t size, size_t align) {
    if (align == 0 || (align & (align - 1)) != 0) {
        bl_error(BL_ERR_INVALID_ARG, "arena: alignment %zu is not a power of two", align);
        return NULL;
    }
    uintptr_t start = (uintptr_t)arena->base + arena->used;
    uintptr_t aligned = (start + align - 1) & ~(uintptr_t)(align - 1);
    size_t offset = (size_t)(aligned - (uintptr_t)arena->base);
    if (offset > arena->capacity || size > arena->capacity - offset) {
        bl_error(BL_ERR_OUT_OF_MEMORY, "arena: %zu bytes requested, %zu of %zu left", size,
                 arena->capacity - arena->used, arena->capacity);
        return NULL;
    }
    arena->used = offset + size;
    return arena->base + offset;
}

void bl_arena_reset(bl_arena *arena) { arena->used = 0; }
size_t bl_arena_used(const bl_arena *arena) { return arena->used; }
size_t bl_arena_capacity(const bl_arena *arena) { return arena->capacity; }
