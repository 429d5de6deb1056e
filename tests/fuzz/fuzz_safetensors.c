/* libFuzzer target for the safetensors reader (and through it the JSON parser).
 * Built by CMake with clang (cmake/fuzz.cmake) and run by scripts/fuzz.sh (`make fuzz`, in CI),
 * whose corpus starts from the inputs the parser tests build. By hand, from the repository root:
 *
 *   cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DBEAMLET_FUZZ=ON -DBEAMLET_WITH_CUDA=OFF
 *   cmake --build build-fuzz --target fuzz_safetensors
 *   mkdir -p /tmp/st_corpus
 *   printf '\x38\0\0\0\0\0\0\0{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}  \1\2\3\4\5\6\7\10' \
 *       > /tmp/st_corpus/seed.safetensors
 *   build-fuzz/fuzz/fuzz_safetensors -dict=tests/fuzz/safetensors.dict -max_total_time=60 /tmp/st_corpus
 *
 * or with clang alone, after any CMake configure has made the layers' include trees:
 *
 *   clang -g -O1 -D_GNU_SOURCE -fopenmp -fsanitize=fuzzer,address,undefined -Ibuild/layers/core \
 *       -Ibuild/layers/io tests/fuzz/fuzz_safetensors.c src/io/safetensors.c src/core/[a-z]*.c -lm \
 *       -o /tmp/fuzz_st
 *
 * Any crash, sanitizer report or leak is a bug: the reader must reject every malformed input
 * with BL_ERR_FORMAT. */
#include "beamlet/io.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static volatile unsigned sink; /* keeps the byte reads below from being optimized away */

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    bl_safetensors *f = NULL;
    bl_status s = bl_safetensors_open_memory(data, size, "fuzz", &f);
    if (s != BL_OK && s != BL_ERR_FORMAT) abort();
    if (s != BL_OK) return 0;
    /* Touch every byte the file claims and every accessor, so a bad view shows up. */
    for (size_t i = 0; i < bl_safetensors_count(f); i++) {
        const bl_st_tensor *t = bl_safetensors_at(f, i);
        const unsigned char *p = t->data;
        if (p < data + 8 || p + t->nbytes > data + size) abort();
        for (size_t k = 0; k < t->nbytes; k++) sink += p[k];
        if (bl_safetensors_find(f, t->name) != t) abort();
        if (t->dtype == BL_F32 || t->dtype == BL_BF16 || t->dtype == BL_F16) {
            float *dst = malloc(t->nbytes / bl_dtype_size(t->dtype) * sizeof(float) + 1);
            if (!dst) abort();
            if (bl_safetensors_read_f32(f, t->name, t->ndim, t->shape, dst) != BL_OK) abort();
            free(dst);
        }
    }
    for (size_t i = 0; i < bl_safetensors_metadata_count(f); i++) {
        const char *v = NULL, *k = bl_safetensors_metadata_at(f, i, &v);
        if (!k || !v || bl_safetensors_metadata(f, k) != v) abort();
    }
    bl_safetensors_close(f);
    return 0;
}
