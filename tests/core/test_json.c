/* JSON: the strict parser (values, Unicode, every rejection with its offset, depth, integer
 * extraction) and the writer (escaping, numbers, misuse), plus a mutation sweep. */
#include "bl_test.h"

#include "beamlet/json.h"

#include <stdint.h>

static bl_status parse_str(const char *s, bl_json **out) {
    bl_test_fuzz_seed("fuzz_json", s, strlen(s));
    return bl_json_parse(s, strlen(s), out);
}

/* Expects `text` to be rejected with `needle` in the message. */
#define CHECK_REJECT(text, needle)                                                                           \
    do {                                                                                                     \
        bl_json *j_ = NULL;                                                                                  \
        CHECK_ERR(parse_str((text), &j_), BL_ERR_FORMAT, (needle));                                          \
        CHECK(j_ == NULL);                                                                                   \
        bl_json_free(j_);                                                                                    \
    } while (0)

static void test_values(void) {
    bl_json *j;
    const char *text = " {\"a\": [1, -2.5, 3e2, true, false, null], \"b\": {\"c\": \"d\"},"
                       " \"e\": {}, \"f\": [], \"g\": -0}\n";
    CHECK_OK(parse_str(text, &j));
    if (!j) return;
    CHECK(bl_json_type_of(j) == BL_JSON_OBJECT);
    CHECK(bl_json_len(j) == 5);
    const bl_json *a = bl_json_object_get(j, "a");
    CHECK(bl_json_type_of(a) == BL_JSON_ARRAY && bl_json_len(a) == 6);
    CHECK(bl_json_number(bl_json_array_at(a, 0)) == 1.0);
    CHECK(bl_json_number(bl_json_array_at(a, 1)) == -2.5);
    CHECK(bl_json_number(bl_json_array_at(a, 2)) == 300.0);
    CHECK(bl_json_type_of(bl_json_array_at(a, 3)) == BL_JSON_BOOL);
    CHECK(bl_json_bool(bl_json_array_at(a, 3)) && !bl_json_bool(bl_json_array_at(a, 4)));
    CHECK(bl_json_type_of(bl_json_array_at(a, 5)) == BL_JSON_NULL);
    CHECK(bl_json_array_at(a, 6) == NULL);
    CHECK(strcmp(bl_json_string(bl_json_object_get(bl_json_object_get(j, "b"), "c")), "d") == 0);
    CHECK(bl_json_len(bl_json_object_get(j, "e")) == 0);
    CHECK(bl_json_object_get(bl_json_object_get(j, "e"), "x") == NULL);
    CHECK(bl_json_len(bl_json_object_get(j, "f")) == 0);
    CHECK(bl_json_object_get(j, "zz") == NULL);
    CHECK(bl_json_object_get(a, "a") == NULL); /* not an object */
    /* Iteration is in document order, not in the sorted lookup order. */
    const char *names[] = {"a", "b", "e", "f", "g"};
    for (size_t i = 0; i < 5; i++) {
        const char *key = NULL;
        const bl_json *v = bl_json_object_at(j, i, &key);
        CHECK(v && key && strcmp(key, names[i]) == 0);
        CHECK(v == bl_json_object_get(j, names[i]));
    }
    CHECK(bl_json_object_at(j, 5, NULL) == NULL);
    CHECK(bl_json_offset(a) == 7);
    bl_json_free(j);

    /* Scalars at the top level, and a buffer that is not NUL-terminated where it ends. */
    CHECK_OK(bl_json_parse("123456", 3, &j));
    CHECK(j && bl_json_number(j) == 123.0);
    bl_json_free(j);
    CHECK_OK(bl_json_parse("[1,2]xyz", 5, &j));
    CHECK(bl_json_len(j) == 2);
    bl_json_free(j);
    CHECK_OK(parse_str("\"x\"", &j));
    CHECK(strcmp(bl_json_string(j), "x") == 0);
    bl_json_free(j);
    bl_json_free(NULL);
}

static void test_strings(void) {
    bl_json *j;
    CHECK_OK(parse_str("\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t\"", &j));
    CHECK(j && strcmp(bl_json_string(j), "q\" b\\ s/ \b\f\n\r\t") == 0);
    bl_json_free(j);
    /* \u escapes become UTF-8; a surrogate pair becomes one 4-byte sequence. */
    CHECK_OK(parse_str("\"\\u00e9\\u20AC\\ud83d\\ude00A\"", &j));
    CHECK(j && strcmp(bl_json_string(j), "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"
                                         "A") == 0);
    bl_json_free(j);
    /* Raw UTF-8 passes through unchanged. */
    CHECK_OK(parse_str("\"caf\xc3\xa9 \xf0\x9f\x98\x80\"", &j));
    CHECK(j && strcmp(bl_json_string(j), "caf\xc3\xa9 \xf0\x9f\x98\x80") == 0);
    bl_json_free(j);
    /* An escaped NUL is legal JSON: the length tells it apart from the end. */
    CHECK_OK(parse_str("\"a\\u0000b\"", &j));
    CHECK(j && bl_json_string_len(j) == 3 && memcmp(bl_json_string(j), "a\0b", 3) == 0);
    bl_json_free(j);
    /* Keys are decoded too, so "\u0061" and "a" are the same key. */
    CHECK_OK(parse_str("{\"\\u0061\": 1}", &j));
    CHECK(bl_json_object_get(j, "a") != NULL);
    bl_json_free(j);
    CHECK_REJECT("{\"a\": 1, \"\\u0061\": 2}", "offset 9: duplicate object key \"a\"");
    /* A key holding a NUL is told apart by its length. */
    CHECK_OK(parse_str("{\"k\\u0000x\": 1, \"k\": 2}", &j));
    size_t klen = 0;
    CHECK(j && strcmp(bl_json_object_key(j, 0, &klen), "k") == 0 && klen == 3);
    CHECK(j && bl_json_number(bl_json_object_getn(j, "k\0x", 3)) == 1.0);
    CHECK(j && bl_json_number(bl_json_object_get(j, "k")) == 2.0);
    CHECK(bl_json_object_key(j, 2, NULL) == NULL);
    bl_json_free(j);
    CHECK(bl_json_utf8_valid("plain caf\xc3\xa9 \xf0\x9f\x98\x80", 16));
    CHECK(bl_json_utf8_valid("", 0));
    CHECK(!bl_json_utf8_valid("\xc3", 1));
    CHECK(!bl_json_utf8_valid("\xed\xa0\x80", 3));
    CHECK(!bl_json_utf8_valid("\xc0\x80", 2));
}

static void test_rejections(void) {
    CHECK_REJECT("{\"a\" 1}", "JSON: offset 5: expected ':' after object key, found '1'");
    CHECK_REJECT("", "offset 0: unexpected end of input, expected a value");
    CHECK_REJECT("   ", "offset 3: unexpected end of input");
    CHECK_REJECT("{} x", "offset 3: unexpected data after the JSON value");
    CHECK_REJECT("[1] [2]", "offset 4: unexpected data after the JSON value");
    CHECK_REJECT("[1,]", "offset 3: expected a value, found ']'");
    CHECK_REJECT("[1 2]", "offset 3: expected ',' or ']' after array element");
    CHECK_REJECT("{,}", "offset 1: expected a string key or '}'");
    CHECK_REJECT("{\"a\":1,}", "offset 7: expected a string key, found '}'");
    CHECK_REJECT("{\"a\":1 \"b\":2}", "offset 7: expected ',' or '}' after object member");
    CHECK_REJECT("{'a':1}", "expected a string key or '}', found '''");
    CHECK_REJECT("{1:1}", "expected a string key or '}', found '1'");
    CHECK_REJECT("[1", "offset 2: unexpected end of input, expected ',' or ']'");
    CHECK_REJECT("{\"a\":", "offset 5: unexpected end of input, expected a value");
    CHECK_REJECT("01", "offset 0: invalid number: leading zero");
    CHECK_REJECT("-01", "invalid number: leading zero");
    CHECK_REJECT("1.", "invalid number: no digits after '.'");
    CHECK_REJECT(".5", "offset 0: expected a value, found '.'");
    CHECK_REJECT("-", "invalid number: no digits");
    CHECK_REJECT("+1", "expected a value, found '+'");
    CHECK_REJECT("1e", "invalid number: no digits in exponent");
    CHECK_REJECT("1e+", "invalid number: no digits in exponent");
    CHECK_REJECT("1e400", "out of the range of a double");
    CHECK_REJECT("NaN", "expected a value, found 'N'");
    CHECK_REJECT("Infinity", "expected a value");
    CHECK_REJECT("tru", "expected a value, found 't'");
    CHECK_REJECT("nul", "expected a value");
    CHECK_REJECT("truex", "offset 4: unexpected data");
    CHECK_REJECT("\"abc", "offset 0: unterminated string");
    CHECK_REJECT("\"abc\\\"", "unterminated string");
    CHECK_REJECT("\"abc\\", "unterminated string");
    CHECK_REJECT("\"a\nb\"", "offset 2: control character 0x0a in string (must be escaped)");
    CHECK_REJECT("\"a\tb\"", "control character 0x09");
    CHECK_REJECT("\"\\x\"", "offset 1: invalid escape '\\x'");
    CHECK_REJECT("\"\\u12G4\"", "invalid \\u escape (needs four hex digits)");
    CHECK_REJECT("\"\\u12\"", "invalid \\u escape (needs four hex digits)");
    CHECK_REJECT("\"\\ud800\"", "high surrogate \\ud800 without a low surrogate");
    CHECK_REJECT("\"\\ud800\\u0041\"", "high surrogate");
    CHECK_REJECT("\"\\ud800\\ud800\"", "high surrogate");
    CHECK_REJECT("\"\\udc00\"", "lone low surrogate \\udc00");
    CHECK_REJECT("\"\xc3\x28\"", "offset 1: invalid UTF-8 byte 0xc3");
    CHECK_REJECT("\"\xc0\xaf\"", "invalid UTF-8 byte 0xc0");         /* overlong '/' */
    CHECK_REJECT("\"\xe0\x80\xaf\"", "invalid UTF-8 byte 0xe0");     /* overlong */
    CHECK_REJECT("\"\xed\xa0\x80\"", "invalid UTF-8 byte 0xed");     /* encoded surrogate */
    CHECK_REJECT("\"\xf4\x90\x80\x80\"", "invalid UTF-8 byte 0xf4"); /* past U+10FFFF */
    CHECK_REJECT("\"\xf5\x80\x80\x80\"", "invalid UTF-8 byte 0xf5");
    CHECK_REJECT("\"\xe2\x82\"", "invalid UTF-8 byte 0xe2");                       /* cut short */
    CHECK_REJECT("\xef\xbb\xbf{}", "offset 0: expected a value, found byte 0xef"); /* BOM */
    CHECK_REJECT("{\"a\":1,\"b\":2,\"a\":3}", "offset 13: duplicate object key \"a\"");
    CHECK_REJECT("[1,\x01]", "found byte 0x01");
    /* The parser must stop at the length it was given, even when the text goes on. */
    bl_json *j = NULL;
    CHECK_ERR(bl_json_parse("[1,2]", 4, &j), BL_ERR_FORMAT, "offset 4: unexpected end of input");
    CHECK_ERR(bl_json_parse("\"ab\"", 3, &j), BL_ERR_FORMAT, "unterminated string");
    CHECK_ERR(bl_json_parse("trueee", 3, &j), BL_ERR_FORMAT, "expected a value");
    CHECK(j == NULL);
}

static void test_depth(void) {
    char deep[2 * BL_JSON_MAX_DEPTH + 3];
    for (int depth = BL_JSON_MAX_DEPTH; depth <= BL_JSON_MAX_DEPTH + 1; depth++) {
        size_t n = 0;
        for (int i = 0; i < depth; i++) deep[n++] = '[';
        for (int i = 0; i < depth; i++) deep[n++] = ']';
        bl_json *j = NULL;
        if (depth == BL_JSON_MAX_DEPTH) {
            CHECK_OK(bl_json_parse(deep, n, &j));
        } else {
            CHECK_ERR(bl_json_parse(deep, n, &j), BL_ERR_FORMAT, "offset 64: nesting deeper than 64");
        }
        bl_json_free(j);
    }
    /* A hostile header of a million '[' must fail fast, not recurse a million times. */
    size_t big = 1000000;
    char *b = malloc(big);
    memset(b, '[', big);
    bl_json *j = NULL;
    CHECK_ERR(bl_json_parse(b, big, &j), BL_ERR_FORMAT, "nesting deeper");
    free(b);
}

static void test_integers(void) {
    struct {
        const char *text;
        int ok64, oku64;
        int64_t v64;
        uint64_t vu64;
    } cases[] = {
        {"0", 1, 1, 0, 0},
        {"-0", 1, 1, 0, 0},
        {"42", 1, 1, 42, 42},
        {"-7", 1, 0, -7, 0},
        {"9223372036854775807", 1, 1, INT64_MAX, (uint64_t)INT64_MAX},
        {"-9223372036854775808", 1, 0, INT64_MIN, 0},
        {"9223372036854775808", 0, 1, 0, (uint64_t)INT64_MAX + 1},
        {"-9223372036854775809", 0, 0, 0, 0},
        {"18446744073709551615", 0, 1, 0, UINT64_MAX},
        {"18446744073709551616", 0, 0, 0, 0},
        {"99999999999999999999999", 0, 0, 0, 0},
        {"1.0", 0, 0, 0, 0},
        {"1e3", 0, 0, 0, 0},
        {"2.5", 0, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bl_json *j;
        CHECK_OK(parse_str(cases[i].text, &j));
        int64_t a = 123;
        uint64_t b = 123;
        bl_status s64 = bl_json_int64(j, &a), su64 = bl_json_uint64(j, &b);
        CHECK_MSG((s64 == BL_OK) == cases[i].ok64, "int64 of %s", cases[i].text);
        CHECK_MSG((su64 == BL_OK) == cases[i].oku64, "uint64 of %s", cases[i].text);
        if (cases[i].ok64) CHECK(a == cases[i].v64);
        if (cases[i].oku64) CHECK(b == cases[i].vu64);
        bl_json_free(j);
    }
    bl_json *j;
    CHECK_OK(parse_str("[1.5, \"7\", 18446744073709551616, -1]", &j));
    int64_t v;
    uint64_t u;
    CHECK_ERR(bl_json_int64(bl_json_array_at(j, 0), &v), BL_ERR_FORMAT, "expected an integer, got 1.5");
    CHECK_ERR(bl_json_int64(bl_json_array_at(j, 1), &v), BL_ERR_FORMAT, "expected an integer, got a string");
    CHECK_ERR(bl_json_int64(j, &v), BL_ERR_FORMAT, "expected an integer, got an array");
    CHECK_ERR(bl_json_uint64(bl_json_array_at(j, 2), &u), BL_ERR_FORMAT,
              "integer 18446744073709551616 is out of the range of uint64");
    CHECK_ERR(bl_json_uint64(bl_json_array_at(j, 3), &u), BL_ERR_FORMAT,
              "integer -1 is out of the range of uint64");
    CHECK_ERR(bl_json_int64(NULL, &v), BL_ERR_FORMAT, "expected an integer, got nothing");
    bl_json_free(j);
}

static void test_many_keys(void) {
    /* Lookup is a binary search over a sorted index: check every key of a large object. */
    bl_json_writer *w;
    CHECK_OK(bl_json_writer_new(&w));
    bl_json_write_begin_object(w);
    char key[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "k%d", (i * 7919) % 5000);
        bl_json_write_key(w, key);
        bl_json_write_int(w, (i * 7919) % 5000);
    }
    bl_json_write_end_object(w);
    const char *text;
    size_t len;
    CHECK_OK(bl_json_writer_finish(w, &text, &len));
    bl_json *j;
    CHECK_OK(bl_json_parse(text, len, &j));
    int found = 0;
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        int64_t v = -1;
        if (bl_json_int64(bl_json_object_get(j, key), &v) == BL_OK && v == i) found++;
    }
    CHECK(found == 5000);
    CHECK(bl_json_object_get(j, "k5000") == NULL && bl_json_object_get(j, "") == NULL);
    CHECK(bl_json_object_getn(j, "k12x", 3) == bl_json_object_get(j, "k12"));
    bl_json_free(j);
    bl_json_writer_free(w);
}

static void test_writer(void) {
    bl_json_writer *w;
    CHECK_OK(bl_json_writer_new(&w));
    bl_json_write_begin_object(w);
    bl_json_write_key(w, "name");
    bl_json_write_string(w, "q\"\\/\b\f\n\r\t\x01\x1f\x7f caf\xc3\xa9");
    bl_json_write_key(w, "ints");
    bl_json_write_begin_array(w);
    bl_json_write_int(w, INT64_MIN);
    bl_json_write_uint(w, UINT64_MAX);
    bl_json_write_int(w, 0);
    bl_json_write_end_array(w);
    bl_json_write_key(w, "doubles");
    bl_json_write_begin_array(w);
    bl_json_write_double(w, 0.1);
    bl_json_write_double(w, -2.5);
    bl_json_write_double(w, 1e300);
    bl_json_write_double(w, 3.0);
    bl_json_write_double(w, NAN);
    bl_json_write_double(w, -INFINITY);
    bl_json_write_double(w, 1.0 / 3.0);
    bl_json_write_end_array(w);
    bl_json_write_key(w, "flags");
    bl_json_write_begin_array(w);
    bl_json_write_bool(w, true);
    bl_json_write_bool(w, false);
    bl_json_write_null(w);
    bl_json_write_begin_object(w);
    bl_json_write_end_object(w);
    bl_json_write_begin_array(w);
    bl_json_write_end_array(w);
    bl_json_write_end_array(w);
    bl_json_write_end_object(w);
    const char *text = NULL;
    size_t len = 0;
    CHECK_OK(bl_json_writer_finish(w, &text, &len));
    const char *want = "{\"name\":\"q\\\"\\\\/\\b\\f\\n\\r\\t\\u0001\\u001f\x7f caf\xc3\xa9\","
                       "\"ints\":[-9223372036854775808,18446744073709551615,0],"
                       "\"doubles\":[0.1,-2.5,1e+300,3,null,null,0.3333333333333333],"
                       "\"flags\":[true,false,null,{},[]]}";
    CHECK_MSG(text && strcmp(text, want) == 0, "got %s", text ? text : "(null)");
    CHECK(len == strlen(want));
    /* The output reads back to the same values. */
    bl_json *j;
    CHECK_OK(bl_json_parse(text, len, &j));
    CHECK(strcmp(bl_json_string(bl_json_object_get(j, "name")), "q\"\\/\b\f\n\r\t\x01\x1f\x7f caf\xc3\xa9") ==
          0);
    const bl_json *d = bl_json_object_get(j, "doubles");
    CHECK(bl_json_number(bl_json_array_at(d, 0)) == 0.1);
    CHECK(bl_json_number(bl_json_array_at(d, 6)) == 1.0 / 3.0);
    int64_t mn;
    CHECK_OK(bl_json_int64(bl_json_array_at(bl_json_object_get(j, "ints"), 0), &mn));
    CHECK(mn == INT64_MIN);
    bl_json_free(j);

    /* JSON lines: reset between records. */
    bl_json_writer_reset(w);
    bl_json_write_int(w, 5);
    CHECK_OK(bl_json_writer_finish(w, &text, NULL));
    CHECK(strcmp(text, "5") == 0);
    bl_json_writer_free(w);
}

static void test_writer_misuse(void) {
    bl_json_writer *w;
    CHECK_OK(bl_json_writer_new(&w));
    CHECK_ERR(bl_json_writer_finish(w, NULL, NULL), BL_ERR_INVALID_ARG, "JSON writer: nothing written");

    bl_json_writer_reset(w);
    bl_json_write_begin_object(w);
    bl_json_write_int(w, 1);
    bl_json_write_end_object(w);
    CHECK_ERR(bl_json_writer_finish(w, NULL, NULL), BL_ERR_INVALID_ARG, "value written without a key");

    bl_json_writer_reset(w);
    bl_json_write_begin_array(w);
    bl_json_write_key(w, "k");
    CHECK_ERR(bl_json_writer_finish(w, NULL, NULL), BL_ERR_INVALID_ARG, "key written outside an object");

    bl_json_writer_reset(w);
    bl_json_write_begin_object(w);
    bl_json_write_key(w, "k");
    bl_json_write_end_object(w);
    CHECK_ERR(bl_json_writer_finish(w, NULL, NULL), BL_ERR_INVALID_ARG, "after a key without its value");

    bl_json_writer_reset(w);
    bl_json_write_begin_array(w);
    CHECK_ERR(bl_json_writer_finish(w, NULL, NULL), BL_ERR_INVALID_ARG, "unclosed");

    bl_json_writer_reset(w);
    bl_json_write_begin_array(w);
    bl_json_write_end_object(w);
    CHECK_ERR(bl_json_writer_finish(w, NULL, NULL), BL_ERR_INVALID_ARG, "end of object without");

    bl_json_writer_reset(w);
    bl_json_write_int(w, 1);
    bl_json_write_int(w, 2);
    CHECK_ERR(bl_json_writer_finish(w, NULL, NULL), BL_ERR_INVALID_ARG, "more than one top-level value");

    bl_json_writer_reset(w);
    bl_json_write_string(w, "bad \xc3\x28 utf8");
    CHECK_ERR(bl_json_writer_finish(w, NULL, NULL), BL_ERR_INVALID_ARG, "not valid UTF-8");

    bl_json_writer_reset(w);
    for (int i = 0; i <= BL_JSON_MAX_DEPTH; i++) bl_json_write_begin_array(w);
    CHECK_ERR(bl_json_writer_finish(w, NULL, NULL), BL_ERR_INVALID_ARG, "nesting too deep");

    /* After a reset the writer works again. */
    bl_json_writer_reset(w);
    bl_json_write_stringn(w, "a\0b", 3);
    const char *text;
    CHECK_OK(bl_json_writer_finish(w, &text, NULL));
    CHECK(strcmp(text, "\"a\\u0000b\"") == 0);
    bl_json_writer_free(w);
}

/* Every strict prefix of a document is invalid, and random byte changes must never crash the
 * parser (run this under ASan/UBSan or valgrind to make "never" mean something). */
static void test_mutations(void) {
    const char *doc = "{\"__metadata__\":{\"format\":\"pt\"},\"w\":{\"dtype\":\"F32\","
                      "\"shape\":[2,3],\"data_offsets\":[0,24]},\"s\":\"\\u00e9\\ud83d\\ude00\","
                      "\"n\":[-1.5e-3,0,true,false,null]}";
    size_t n = strlen(doc);
    bl_json *j;
    CHECK_OK(bl_json_parse(doc, n, &j));
    bl_json_free(j);
    for (size_t len = 0; len < n; len++) {
        char *copy = malloc(len ? len : 1); /* exact size, so ASan sees any overread */
        memcpy(copy, doc, len);
        j = NULL;
        bl_status s = bl_json_parse(copy, len, &j);
        CHECK_MSG(s == BL_ERR_FORMAT && j == NULL, "prefix of %zu bytes accepted", len);
        free(copy);
    }
    const uint64_t seed = 20261124;
    fprintf(stderr, "  mutation seed %llu\n", (unsigned long long)seed);
    bl_rng rng;
    bl_rng_seed(&rng, seed);
    static const char interesting[] = "{}[]\",:\\u0e9-+.tfn \x80\xff\x00";
    int accepted = 0;
    for (int it = 0; it < 20000; it++) {
        char *copy = malloc(n);
        memcpy(copy, doc, n);
        int flips = 1 + (int)bl_rng_below(&rng, 4);
        for (int k = 0; k < flips; k++) {
            size_t at = bl_rng_below(&rng, n);
            if (bl_rng_below(&rng, 2))
                copy[at] = interesting[bl_rng_below(&rng, sizeof interesting - 1)];
            else
                copy[at] = (char)bl_rng_u32(&rng);
        }
        size_t len = bl_rng_below(&rng, 8) == 0 ? bl_rng_below(&rng, n + 1) : n;
        j = NULL;
        bl_status s = bl_json_parse(copy, len, &j);
        CHECK(s == BL_OK || s == BL_ERR_FORMAT);
        if (s == BL_OK) {
            accepted++;
            /* Walk everything to touch all memory the document claims to own. */
            for (size_t i = 0; i < bl_json_len(j); i++) {
                const char *key;
                const bl_json *v = bl_json_object_at(j, i, &key);
                CHECK(v && key);
                (void)bl_json_object_get(j, key);
                if (bl_json_string(v)) CHECK(strlen(bl_json_string(v)) <= bl_json_string_len(v));
                for (size_t e = 0; e < bl_json_len(v); e++) (void)bl_json_number(bl_json_array_at(v, e));
            }
        }
        bl_json_free(j);
        free(copy);
    }
    fprintf(stderr, "  %d of 20000 mutants parsed\n", accepted);
}

int main(void) {
    RUN(test_values);
    RUN(test_strings);
    RUN(test_rejections);
    RUN(test_depth);
    RUN(test_integers);
    RUN(test_many_keys);
    RUN(test_writer);
    RUN(test_writer_misuse);
    RUN(test_mutations);
    return bl_test_finish();
}
