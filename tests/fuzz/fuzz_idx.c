/* libFuzzer target for the IDX reader (Fashion-MNIST's format, plain or gzipped). The reader
 * takes a path, so each input goes through a temporary file.
 * Built by CMake with clang (cmake/fuzz.cmake) and run by scripts/fuzz.sh (`make fuzz`, in CI),
 * whose corpus starts from the inputs the parser tests build. By hand, from the repository root:
 *
 *   cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DBEAMLET_FUZZ=ON -DBEAMLET_WITH_CUDA=OFF
 *   cmake --build build-fuzz --target fuzz_idx
 *   mkdir -p /tmp/idx_corpus && zcat /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz \
 *       | head -c 200 > /tmp/idx_corpus/labels
 *   build-fuzz/fuzz/fuzz_idx -max_total_time=60 /tmp/idx_corpus
 *
 * or with clang alone, after any CMake configure has made the layers' include trees:
 *
 *   clang -g -O1 -D_GNU_SOURCE -DBEAMLET_HAVE_ZLIB=1 -fopenmp -fsanitize=fuzzer,address,undefined \
 *       -Ibuild/layers/core -Ibuild/layers/io tests/fuzz/fuzz_idx.c src/io/idx.c src/core/[a-z]*.c -lz -lm \
 *       -o /tmp/fuzz_idx
 *
 * Any crash, sanitizer report or leak is a bug: malformed files must come back as an error. */
#include "beamlet/datasets.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static volatile unsigned sink; /* keeps the reads of every decoded byte from being optimized away */

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/beamlet_fuzz_idx_%ld", (long)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    bl_idx idx = {0};
    bl_status s = bl_idx_read(path, &idx);
    if (s == BL_OK) {
        for (size_t i = 0; i < idx.size; i++) sink += ((const unsigned char *)idx.data)[i];
        bl_idx_free(&idx);
    } else if (s == BL_ERR_INTERNAL) {
        abort();
    }
    unlink(path);
    return 0;
}
