/* libFuzzer target for the IDX reader (Fashion-MNIST's format, plain or gzipped). The reader
 * takes a path, so each input goes through a temporary file. Not part of the CMake build. From
 * the repository root:
 *
 *   clang -g -O1 -D_GNU_SOURCE -DBEAMLET_HAVE_ZLIB=1 -fsanitize=fuzzer,address,undefined \
 *       -Iinclude -Isrc tests/fuzz/fuzz_idx.c src/io/idx.c src/core/[a-z]*.c -lz -lm -o /tmp/fuzz_idx
 *   mkdir -p /tmp/idx_corpus && zcat /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz \
 *       | head -c 200 > /tmp/idx_corpus/labels
 *   /tmp/fuzz_idx -max_total_time=60 /tmp/idx_corpus
 *
 * Any crash, sanitizer report or leak is a bug: malformed files must come back as an error. */
#include "beamlet/datasets.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

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
        volatile unsigned char sum = 0;
        for (size_t i = 0; i < idx.size; i++) sum += ((const unsigned char *)idx.data)[i];
        bl_idx_free(&idx);
    } else if (s == BL_ERR_INTERNAL) {
        abort();
    }
    unlink(path);
    return 0;
}
