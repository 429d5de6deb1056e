/* libFuzzer target for the JPEG/PNG decoders (libjpeg-turbo and libpng behind our error
 * managers), within the decode pixel budget.
 * Built by CMake with clang (cmake/fuzz.cmake) and run by scripts/fuzz.sh (`make fuzz`, in CI),
 * whose corpus starts from the inputs the parser tests build. By hand, from the repository root:
 *
 *   cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DBEAMLET_FUZZ=ON -DBEAMLET_WITH_CUDA=OFF
 *   cmake --build build-fuzz --target fuzz_image
 *   mkdir -p /tmp/image_corpus && cp some.png some.jpg /tmp/image_corpus/
 *   build-fuzz/fuzz/fuzz_image -max_total_time=60 /tmp/image_corpus
 *
 * or with clang alone, after any CMake configure has made the layers' include trees:
 *
 *   clang -g -O1 -D_GNU_SOURCE -DBEAMLET_HAVE_PNG=1 -DBEAMLET_HAVE_JPEG=1 -DBEAMLET_HAVE_ZLIB=1 -fopenmp \
 *       -fsanitize=fuzzer,address,undefined -Ibuild/layers/core -Ibuild/layers/io tests/fuzz/fuzz_image.c \
 *       src/io/image.c src/core/[a-z]*.c -lpng -ljpeg -lz -lm -o /tmp/fuzz_image
 *
 * Any crash, sanitizer report or leak is a bug: undecodable input must come back as an error
 * status (the learning path routes those files to a dead-letter output). */
#include "beamlet/datasets.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static volatile unsigned sink; /* keeps the reads of every pixel from being optimized away */

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    bl_image img = {0};
    bl_status s = bl_image_decode(data, size, "fuzz", &img);
    if (s == BL_OK) {
        /* A decoded image must be fully addressable. */
        size_t n = (size_t)img.width * (size_t)img.height * (size_t)img.channels;
        for (size_t i = 0; i < n; i++) sink += img.pixels[i];
        bl_image_free(&img);
    } else if (s == BL_ERR_INTERNAL) {
        abort();
    }
    return 0;
}
