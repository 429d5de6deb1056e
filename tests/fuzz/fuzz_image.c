/* libFuzzer target for the JPEG/PNG decoders (libjpeg-turbo and libpng behind our error
 * managers). Not part of the CMake build: it needs clang's -fsanitize=fuzzer. From the
 * repository root:
 *
 *   clang -g -O1 -D_GNU_SOURCE -DBEAMLET_HAVE_PNG=1 -DBEAMLET_HAVE_JPEG=1 -DBEAMLET_HAVE_ZLIB=1 \
 *       -fsanitize=fuzzer,address,undefined -Iinclude -Isrc tests/fuzz/fuzz_image.c \
 *       src/io/image.c src/core/[a-z]*.c -lpng -ljpeg -lz -lm -o /tmp/fuzz_image
 *   mkdir -p /tmp/image_corpus && cp some.png some.jpg /tmp/image_corpus/
 *   /tmp/fuzz_image -max_total_time=60 /tmp/image_corpus
 *
 * Any crash, sanitizer report or leak is a bug: undecodable input must come back as an error
 * status (the learning path routes those files to a dead-letter output). */
#include "beamlet/datasets.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    bl_image img = {0};
    bl_status s = bl_image_decode(data, size, "fuzz", &img);
    if (s == BL_OK) {
        /* A decoded image must be fully addressable. */
        volatile unsigned sum = 0;
        size_t n = (size_t)img.width * (size_t)img.height * (size_t)img.channels;
        for (size_t i = 0; i < n; i++) sum += img.pixels[i];
        bl_image_free(&img);
    } else if (s == BL_ERR_INTERNAL) {
        abort();
    }
    return 0;
}
