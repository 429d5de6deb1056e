/* libFuzzer target for the resource-hint parser and the option parser (the strings a user
 * types on the command line).
 * Built by CMake with clang (cmake/fuzz.cmake) and run by scripts/fuzz.sh (`make fuzz`, in CI),
 * whose corpus starts from the inputs the parser tests build. By hand, from the repository root:
 *
 *   cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DBEAMLET_FUZZ=ON -DBEAMLET_WITH_CUDA=OFF
 *   cmake --build build-fuzz --target fuzz_hints
 *   mkdir -p /tmp/hints_corpus && printf 'accelerator="type:nvidia-tesla-t4;count:1;install-nvidia-driver",min_ram=16GB' \
 *       > /tmp/hints_corpus/seed
 *   build-fuzz/fuzz/fuzz_hints -max_total_time=60 /tmp/hints_corpus
 *
 * or with clang alone, after any CMake configure has made the layers' include trees
 * (build/layers/<layer>: the public headers a layer may use and its own internal ones):
 *
 *   clang -g -O1 -D_GNU_SOURCE -fopenmp -fsanitize=fuzzer,address,undefined -Ibuild/layers/core \
 *       -Ibuild/layers/pipeline tests/fuzz/fuzz_hints.c src/pipeline/[a-z]*.c src/core/[a-z]*.c -lm \
 *       -lpthread -o /tmp/fuzz_hints
 *
 * Any crash, sanitizer report or leak is a bug: a malformed hint or flag is an error that says
 * where and why. */
#include "beamlet/pipeline.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    bl_hints h;
    if (bl_hints_parse(text, &h) == BL_OK) {
        char out[256];
        bl_hints_format(&h, out, sizeof out);
    }
    /* The same bytes as a command line: "--resource_hints=<text>" and as a bare flag. */
    bl_options *opts;
    if (bl_options_new(&opts) == BL_OK) {
        size_t n = size + 32;
        char *flag = malloc(n);
        if (flag) {
            snprintf(flag, n, "--resource_hints=%s", text);
            char *argv[] = {"fuzz", flag, text, NULL};
            (void)bl_options_parse(opts, 2, argv);
            (void)bl_options_parse(opts, 3, argv);
            free(flag);
        }
        bl_options_free(opts);
    }
    free(text);
    return 0;
}
