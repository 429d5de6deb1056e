/* libFuzzer target for the JSON parser and writer: whatever parses must survive a trip
 * through the writer and parse back to the same tree.
 * Built by CMake with clang (cmake/fuzz.cmake) and run by scripts/fuzz.sh (`make fuzz`, in CI),
 * whose corpus starts from the inputs the parser tests build. By hand, from the repository root:
 *
 *   cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DBEAMLET_FUZZ=ON -DBEAMLET_WITH_CUDA=OFF
 *   cmake --build build-fuzz --target fuzz_json
 *   mkdir -p /tmp/json_corpus && echo '{"a":[1,-2.5e3,"\u00e9",true,null,{}]}' > /tmp/json_corpus/seed
 *   build-fuzz/fuzz/fuzz_json -dict=tests/fuzz/safetensors.dict -max_total_time=60 /tmp/json_corpus
 *
 * or with clang alone, after any CMake configure has made the layers' include trees:
 *
 *   clang -g -O1 -D_GNU_SOURCE -fopenmp -fsanitize=fuzzer,address,undefined -Ibuild/layers/core \
 *       tests/fuzz/fuzz_json.c src/core/[a-z]*.c -lm -o /tmp/fuzz_json
 */
#include "beamlet/json.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static int replaced_nul_key; /* set when emit had to replace a key holding a NUL byte */

static void emit(bl_json_writer *w, const bl_json *v) {
    switch (bl_json_type_of(v)) {
        case BL_JSON_NULL: bl_json_write_null(w); break;
        case BL_JSON_BOOL: bl_json_write_bool(w, bl_json_bool(v)); break;
        case BL_JSON_NUMBER: bl_json_write_double(w, bl_json_number(v)); break;
        case BL_JSON_STRING: bl_json_write_stringn(w, bl_json_string(v), bl_json_string_len(v)); break;
        case BL_JSON_ARRAY:
            bl_json_write_begin_array(w);
            for (size_t i = 0; i < bl_json_len(v); i++) emit(w, bl_json_array_at(v, i));
            bl_json_write_end_array(w);
            break;
        case BL_JSON_OBJECT:
            bl_json_write_begin_object(w);
            for (size_t i = 0; i < bl_json_len(v); i++) {
                size_t klen;
                const char *key = bl_json_object_key(v, i, &klen);
                /* The writer takes C-string keys; a key with a NUL cannot round-trip. */
                if (strlen(key) != klen) {
                    replaced_nul_key = 1;
                    bl_json_write_key(w, "");
                    bl_json_write_null(w);
                    continue;
                }
                bl_json_write_key(w, key);
                emit(w, bl_json_object_at(v, i, NULL));
            }
            bl_json_write_end_object(w);
            break;
    }
}

static int same(const bl_json *a, const bl_json *b) {
    if (bl_json_type_of(a) != bl_json_type_of(b)) return 0;
    switch (bl_json_type_of(a)) {
        case BL_JSON_NULL: return 1;
        case BL_JSON_BOOL: return bl_json_bool(a) == bl_json_bool(b);
        case BL_JSON_NUMBER: return bl_json_number(a) == bl_json_number(b);
        case BL_JSON_STRING:
            return bl_json_string_len(a) == bl_json_string_len(b) &&
                   memcmp(bl_json_string(a), bl_json_string(b), bl_json_string_len(a)) == 0;
        case BL_JSON_ARRAY:
        case BL_JSON_OBJECT:
            if (bl_json_len(a) != bl_json_len(b)) return 0;
            for (size_t i = 0; i < bl_json_len(a); i++) {
                const bl_json *x = bl_json_type_of(a) == BL_JSON_ARRAY ? bl_json_array_at(a, i)
                                                                       : bl_json_object_at(a, i, NULL);
                const bl_json *y = bl_json_type_of(b) == BL_JSON_ARRAY ? bl_json_array_at(b, i)
                                                                       : bl_json_object_at(b, i, NULL);
                if (bl_json_type_of(a) == BL_JSON_OBJECT) {
                    size_t kx, ky;
                    const char *ka = bl_json_object_key(a, i, &kx), *kb = bl_json_object_key(b, i, &ky);
                    if (kx == strlen(ka) && (kx != ky || memcmp(ka, kb, kx) != 0)) return 0;
                    if (kx != strlen(ka)) continue; /* replaced by "": null above */
                }
                if (!same(x, y)) return 0;
            }
            return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    bl_json *doc = NULL;
    bl_status s = bl_json_parse((const char *)data, size, &doc);
    if (s != BL_OK && s != BL_ERR_FORMAT) abort();
    if (s != BL_OK) return 0;
    bl_json_writer *w = NULL;
    replaced_nul_key = 0;
    if (bl_json_writer_new(&w) != BL_OK) abort();
    emit(w, doc);
    const char *text;
    size_t len;
    bl_json *again = NULL;
    if (bl_json_writer_finish(w, &text, &len) != BL_OK) abort();
    /* Keys with a NUL all become "" and may then collide: only then may the re-parse fail. */
    if (bl_json_parse(text, len, &again) != BL_OK) {
        if (!replaced_nul_key) abort();
    } else if (!same(doc, again)) {
        abort();
    }
    bl_json_free(again);
    bl_json_writer_free(w);
    bl_json_free(doc);
    return 0;
}
