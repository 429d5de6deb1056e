/* safetensors: round trips of every dtype, byte-identity with the reference implementation's
 * output, every malformed header rejected with its message, a truncation sweep and seeded
 * byte-flip fuzzing. */
#include "bl_test.h"

#include "beamlet/io.h"

#include <unistd.h>

/* ---- helpers ---------------------------------------------------------------------------- */

/* A file image: 8-byte little-endian header length, the header, then data_len bytes. */
static unsigned char *make_image(const char *header, uint64_t claimed_len, size_t data_len, size_t *size) {
    size_t hlen = strlen(header);
    *size = 8 + hlen + data_len;
    unsigned char *b = calloc(1, *size);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(claimed_len >> (8 * i));
    memcpy(b + 8, header, hlen);
    for (size_t i = 0; i < data_len; i++) b[8 + hlen + i] = (unsigned char)(i * 37 + 1);
    return b;
}

static bl_status open_header(const char *header, size_t data_len) {
    size_t size;
    unsigned char *b = make_image(header, strlen(header), data_len, &size);
    bl_test_fuzz_seed("fuzz_safetensors", b, size);
    bl_safetensors *f = NULL;
    bl_status s = bl_safetensors_open_memory(b, size, "model.safetensors", &f);
    if (s == BL_OK && f == NULL) s = BL_ERR_INTERNAL;
    if (s != BL_OK && f != NULL) s = BL_ERR_INTERNAL;
    bl_safetensors_close(f);
    free(b);
    return s;
}

#define CHECK_BAD(header, data_len, needle)                                                                  \
    CHECK_ERR(open_header((header), (data_len)), BL_ERR_FORMAT, (needle))

static void temp_path(char *path, size_t size) {
    const char *dir = getenv("TMPDIR");
    snprintf(path, size, "%s/beamlet_st_test_%ld.safetensors", dir && *dir ? dir : "/tmp", (long)getpid());
}

/* ---- round trips ------------------------------------------------------------------------ */

static void test_round_trip(void) {
    float w[6] = {1.5f, -2.0f, 3.25f, 0.0f, -0.5f, 1e-3f};
    uint16_t bf[4], hf[4];
    float src16[4] = {1.0f, -2.5f, 0.15625f, 100.0f};
    for (int i = 0; i < 4; i++) {
        bf[i] = bl_f32_to_bf16(src16[i]);
        hf[i] = bl_f32_to_f16(src16[i]);
    }
    uint8_t u8[5] = {0, 1, 127, 200, 255};
    int32_t i32[3] = {-7, 0, 2147483647};
    int64_t step = 123456789012345LL;
    float scalar = 42.0f;

    bl_safetensors_writer *wr;
    CHECK_OK(bl_safetensors_writer_new(&wr));
    CHECK_OK(bl_safetensors_writer_add(wr, "layer.weight", BL_F32, 2, (int64_t[]){2, 3}, w));
    CHECK_OK(bl_safetensors_writer_add(wr, "bf", BL_BF16, 1, (int64_t[]){4}, bf));
    CHECK_OK(bl_safetensors_writer_add(wr, "hf", BL_F16, 2, (int64_t[]){2, 2}, hf));
    CHECK_OK(bl_safetensors_writer_add(wr, "bytes", BL_U8, 1, (int64_t[]){5}, u8));
    CHECK_OK(bl_safetensors_writer_add(wr, "ints", BL_I32, 1, (int64_t[]){3}, i32));
    CHECK_OK(bl_safetensors_writer_add(wr, "bn.num_batches_tracked", BL_I64, 0, NULL, &step));
    CHECK_OK(bl_safetensors_writer_add(wr, "scalar", BL_F32, 0, NULL, &scalar));
    CHECK_OK(bl_safetensors_writer_add(wr, "empty", BL_F32, 2, (int64_t[]){0, 3}, NULL));
    CHECK_OK(bl_safetensors_writer_set_metadata(wr, "format", "pt"));
    CHECK_OK(bl_safetensors_writer_set_metadata(wr, "note", "replaced below"));
    CHECK_OK(bl_safetensors_writer_set_metadata(wr, "note", "\"quoted\"\n caf\xc3\xa9"));
    w[0] = 99.0f; /* the writer copied the data: changing it now must not matter */

    char path[256];
    temp_path(path, sizeof path);
    CHECK_OK(bl_safetensors_writer_commit(wr, path));
    bl_safetensors_writer_free(wr);
    w[0] = 1.5f;

    bl_safetensors *f = NULL;
    CHECK_OK(bl_safetensors_open(path, &f));
    unlink(path);
    if (!f) return;
    CHECK(strcmp(bl_safetensors_path(f), path) == 0);
    CHECK(bl_safetensors_count(f) == 8);
    /* Layout order: by element size, largest first, then by name. */
    const char *order[] = {
        "bn.num_batches_tracked", "empty", "layer.weight", "scalar", "ints", "bf", "hf", "bytes"};
    for (size_t i = 0; i < 8; i++) {
        const bl_st_tensor *t = bl_safetensors_at(f, i);
        CHECK_MSG(t && strcmp(t->name, order[i]) == 0, "position %zu: %s", i, t ? t->name : "-");
        CHECK(t && bl_safetensors_find(f, t->name) == t);
        CHECK(t && ((uintptr_t)t->data % bl_dtype_size(t->dtype)) == 0);
    }
    CHECK(bl_safetensors_at(f, 8) == NULL);
    CHECK(bl_safetensors_find(f, "nope") == NULL);

    const bl_st_tensor *t = bl_safetensors_find(f, "layer.weight");
    CHECK(t && t->dtype == BL_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3);
    CHECK(t && t->nbytes == 24 && memcmp(t->data, w, 24) == 0);
    t = bl_safetensors_find(f, "bn.num_batches_tracked");
    CHECK(t && t->dtype == BL_I64 && t->ndim == 0 && t->nbytes == 8);
    int64_t got_step = 0;
    if (t) memcpy(&got_step, t->data, 8);
    CHECK(got_step == step);
    t = bl_safetensors_find(f, "bytes");
    CHECK(t && t->dtype == BL_U8 && t->nbytes == 5 && memcmp(t->data, u8, 5) == 0);
    t = bl_safetensors_find(f, "ints");
    CHECK(t && t->dtype == BL_I32 && memcmp(t->data, i32, 12) == 0);
    t = bl_safetensors_find(f, "empty");
    CHECK(t && t->nbytes == 0 && t->ndim == 2 && t->shape[0] == 0 && t->shape[1] == 3);

    /* f32 reads with conversion. */
    float out[6] = {0};
    CHECK_OK(bl_safetensors_read_f32(f, "layer.weight", 2, (int64_t[]){2, 3}, out));
    CHECK(memcmp(out, w, sizeof w) == 0);
    CHECK_OK(bl_safetensors_read_f32(f, "bf", 1, (int64_t[]){4}, out));
    for (int i = 0; i < 4; i++) CHECK(out[i] == bl_bf16_to_f32(bf[i]));
    CHECK_OK(bl_safetensors_read_f32(f, "hf", 2, (int64_t[]){2, 2}, out));
    for (int i = 0; i < 4; i++) CHECK(out[i] == src16[i]); /* all exact in f16 */
    CHECK_OK(bl_safetensors_read_f32(f, "scalar", 0, NULL, out));
    CHECK(out[0] == 42.0f);
    CHECK_OK(bl_safetensors_read_f32(f, "empty", 2, (int64_t[]){0, 3}, out));
    CHECK_ERR(bl_safetensors_read_f32(f, "layer.weight", 2, (int64_t[]){3, 2}, out), BL_ERR_FORMAT,
              "tensor 'layer.weight': shape [2,3] does not match the model's [3,2]");
    CHECK_ERR(bl_safetensors_read_f32(f, "layer.weight", 1, (int64_t[]){6}, out), BL_ERR_FORMAT,
              "shape [2,3] does not match the model's [6]");
    CHECK_ERR(bl_safetensors_read_f32(f, "scalar", 1, (int64_t[]){1}, out), BL_ERR_FORMAT,
              "shape [] does not match the model's [1]");
    CHECK_ERR(bl_safetensors_read_f32(f, "bn.num_batches_tracked", 0, NULL, out), BL_ERR_FORMAT,
              "tensor 'bn.num_batches_tracked': dtype I64 cannot be read as f32");
    CHECK_ERR(bl_safetensors_read_f32(f, "missing.weight", 0, NULL, out), BL_ERR_NOT_FOUND,
              "no tensor 'missing.weight'");

    CHECK(bl_safetensors_metadata_count(f) == 2);
    CHECK(strcmp(bl_safetensors_metadata(f, "format"), "pt") == 0);
    CHECK(strcmp(bl_safetensors_metadata(f, "note"), "\"quoted\"\n caf\xc3\xa9") == 0);
    CHECK(bl_safetensors_metadata(f, "absent") == NULL);
    const char *value = NULL;
    CHECK(strcmp(bl_safetensors_metadata_at(f, 0, &value), "format") == 0);
    CHECK(value && strcmp(value, "pt") == 0);
    CHECK(bl_safetensors_metadata_at(f, 2, &value) == NULL && value == NULL);
    bl_safetensors_close(f);
}

/* What PyTorch's safetensors writes (captured from safetensors 0.8.0's serialize() with these
 * seven tensors and this metadata): tensors ordered I64, F32, I32, BF16, F16, U8 and by name
 * within a dtype, compact JSON, serde's escaping, spaces to a multiple of 8. */
static const char python_header[] =
    "{\"__metadata__\":{\"format\":\"pt\",\"z\":\"q\\\"\\n\\u0001\xc3\xa9\"},\"n\":{\"dtype\""
    ":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},\"a.weight\":{\"dtype\":\"F32\",\"shape\":"
    "[1],\"data_offsets\":[8,12]},\"b.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offs"
    "ets\":[12,28]},\"i\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[28,36]},\"a.bias"
    "\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[36,42]},\"h\":{\"dtype\":\"F16\","
    "\"shape\":[1],\"data_offsets\":[42,44]},\"u\":{\"dtype\":\"U8\",\"shape\":[3],\"data_off"
    "sets\":[44,47]}}";
static const unsigned char python_data[47] = {
    0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x41, 0x00, 0x00, 0x80, 0x3f,
    0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x40, 0x40, 0x00, 0x00, 0x80, 0x40, 0xff, 0xff, 0xff, 0xff,
    0x05, 0x00, 0x00, 0x00, 0x80, 0x3f, 0x00, 0x40, 0x40, 0x40, 0x00, 0x3c, 0x01, 0x02, 0x03};

static void test_python_layout(void) {
    size_t hlen = strlen(python_header); /* 454; padded to 456 */
    size_t size = 8 + 456 + sizeof python_data;
    unsigned char *img = malloc(size);
    uint64_t n = 456;
    for (int i = 0; i < 8; i++) img[i] = (unsigned char)(n >> (8 * i));
    memcpy(img + 8, python_header, hlen);
    memset(img + 8 + hlen, ' ', 456 - hlen);
    memcpy(img + 8 + 456, python_data, sizeof python_data);

    bl_safetensors *f = NULL;
    CHECK_OK(bl_safetensors_open_memory(img, size, "python.safetensors", &f));
    if (f) {
        CHECK(bl_safetensors_count(f) == 7);
        float v[4];
        CHECK_OK(bl_safetensors_read_f32(f, "b.weight", 2, (int64_t[]){2, 2}, v));
        CHECK(v[0] == 1.0f && v[1] == 2.0f && v[2] == 3.0f && v[3] == 4.0f);
        CHECK_OK(bl_safetensors_read_f32(f, "a.bias", 1, (int64_t[]){3}, v));
        CHECK(v[0] == 1.0f && v[1] == 2.0f && v[2] == 3.0f);
        CHECK_OK(bl_safetensors_read_f32(f, "h", 1, (int64_t[]){1}, v));
        CHECK(v[0] == 1.0f);
        CHECK(strcmp(bl_safetensors_metadata(f, "z"), "q\"\n\x01\xc3\xa9") == 0);
        bl_safetensors_close(f);
    }

    /* Our writer, given the same tensors and metadata in another order, writes the very
     * same bytes. */
    float aw = 9.0f, bw[4] = {1, 2, 3, 4};
    int64_t nv = 7;
    int32_t iv[2] = {-1, 5};
    uint16_t ab[3] = {0x3f80, 0x4000, 0x4040}, hv = 0x3c00;
    uint8_t uv[3] = {1, 2, 3};
    bl_safetensors_writer *w;
    CHECK_OK(bl_safetensors_writer_new(&w));
    CHECK_OK(bl_safetensors_writer_set_metadata(w, "z", "q\"\n\x01\xc3\xa9"));
    CHECK_OK(bl_safetensors_writer_add(w, "u", BL_U8, 1, (int64_t[]){3}, uv));
    CHECK_OK(bl_safetensors_writer_add(w, "b.weight", BL_F32, 2, (int64_t[]){2, 2}, bw));
    CHECK_OK(bl_safetensors_writer_add(w, "h", BL_F16, 1, (int64_t[]){1}, &hv));
    CHECK_OK(bl_safetensors_writer_add(w, "a.bias", BL_BF16, 1, (int64_t[]){3}, ab));
    CHECK_OK(bl_safetensors_writer_add(w, "i", BL_I32, 1, (int64_t[]){2}, iv));
    CHECK_OK(bl_safetensors_writer_add(w, "n", BL_I64, 0, NULL, &nv));
    CHECK_OK(bl_safetensors_writer_add(w, "a.weight", BL_F32, 1, (int64_t[]){1}, &aw));
    CHECK_OK(bl_safetensors_writer_set_metadata(w, "format", "pt"));
    void *ours = NULL;
    size_t ours_size = 0;
    CHECK_OK(bl_safetensors_writer_serialize(w, &ours, &ours_size));
    CHECK(ours_size == size);
    CHECK_MSG(ours && ours_size == size && memcmp(ours, img, size) == 0,
              "writer output differs from the reference bytes");
    free(ours);
    bl_safetensors_writer_free(w);
    free(img);
}

static void test_empty_file_and_alignment(void) {
    /* No tensors, no metadata: "{}" padded to 8 bytes. */
    bl_safetensors_writer *w;
    CHECK_OK(bl_safetensors_writer_new(&w));
    void *img;
    size_t size;
    CHECK_OK(bl_safetensors_writer_serialize(w, &img, &size));
    CHECK(size == 16 && memcmp(img, "\x08\0\0\0\0\0\0\0{}      ", 16) == 0);
    bl_safetensors *f = NULL;
    CHECK_OK(bl_safetensors_open_memory(img, size, "empty", &f));
    CHECK(f && bl_safetensors_count(f) == 0 && bl_safetensors_metadata_count(f) == 0);
    CHECK(f && bl_safetensors_metadata(f, "x") == NULL);
    bl_safetensors_close(f);
    free(img);
    /* Header padding keeps the data buffer 8-aligned for any name length. */
    for (int len = 1; len <= 9; len++) {
        char name[16];
        memset(name, 'a', (size_t)len);
        name[len] = '\0';
        uint8_t b = 1;
        CHECK_OK(bl_safetensors_writer_add(w, name, BL_U8, 1, (int64_t[]){1}, &b));
        CHECK_OK(bl_safetensors_writer_serialize(w, &img, &size));
        uint64_t n;
        memcpy(&n, img, 8);
        CHECK(n % 8 == 0 && 8 + n + (uint64_t)len == size);
        CHECK(((char *)img)[8 + n - 1] == ' ' || ((char *)img)[8 + n - 1] == '}');
        free(img);
    }
    bl_safetensors_writer_free(w);
    /* No metadata at all and an explicit null are both accepted. */
    CHECK_OK(open_header("{\"__metadata__\":null}", 0));
    CHECK_OK(open_header("{\"__metadata__\":{}}", 0));
    /* Members other than the three are ignored, like the reference reader does. */
    CHECK_OK(open_header("{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2],"
                         "\"extra\":[1]}}",
                         2));
}

/* ---- malformed files -------------------------------------------------------------------- */

static void test_malformed(void) {
    size_t size;
    unsigned char *b;
    bl_safetensors *f = NULL;

    /* Framing. */
    b = make_image("", 0, 0, &size);
    CHECK_ERR(bl_safetensors_open_memory(b, 5, "model.safetensors", &f), BL_ERR_FORMAT,
              "model.safetensors: file is 5 bytes, shorter than the 8-byte header length");
    CHECK_ERR(bl_safetensors_open_memory(b, 0, "model.safetensors", &f), BL_ERR_FORMAT, "file is 0 bytes");
    CHECK(f == NULL);
    free(b);
    b = make_image("{}", 40, 0, &size);
    CHECK_ERR(bl_safetensors_open_memory(b, size, "model.safetensors", &f), BL_ERR_FORMAT,
              "model.safetensors: header length 40 is larger than the rest of the file (2 bytes)");
    free(b);
    b = make_image("{}", 200000000, 0, &size);
    CHECK_ERR(bl_safetensors_open_memory(b, size, "model.safetensors", &f), BL_ERR_FORMAT,
              "header length 200000000 is absurd");
    free(b);
    b = make_image("{}", UINT64_MAX, 0, &size);
    CHECK_ERR(bl_safetensors_open_memory(b, size, "model.safetensors", &f), BL_ERR_FORMAT,
              "header length 18446744073709551615 is absurd");
    free(b);
    CHECK_ERR(bl_safetensors_open("/nonexistent/model.safetensors", &f), BL_ERR_NOT_FOUND,
              "/nonexistent/model.safetensors: cannot open");

    /* The header as a whole. */
    CHECK_BAD("{", 0, "model.safetensors: header is not valid JSON: JSON: offset 1:");
    CHECK_BAD("", 0, "header is not valid JSON: JSON: offset 0: unexpected end of input");
    CHECK_BAD("{} x", 0, "offset 3: unexpected data after the JSON value");
    CHECK_BAD("[]", 0, "model.safetensors: header is an array, not a JSON object");
    CHECK_BAD("\"x\"", 0, "header is a string, not a JSON object");
    CHECK_BAD("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
              "\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
              2, "duplicate object key \"w\"");

    /* Metadata. */
    CHECK_BAD("{\"__metadata__\":{\"epoch\":3}}", 0,
              "model.safetensors: __metadata__ value for 'epoch' is a number, not a string");
    CHECK_BAD("{\"__metadata__\":[\"a\"]}", 0, "__metadata__ is an array, not an object");
    CHECK_BAD("{\"__metadata__\":{\"k\":\"a\\u0000b\"}}", 0,
              "__metadata__ value for 'k' contains a NUL byte");
    CHECK_BAD("{\"__metadata__\":{\"k\\u0000\":\"v\"}}", 0, "__metadata__ key 'k' contains a NUL");

    /* One entry's fields. */
    CHECK_BAD("{\"w\":3}", 0, "model.safetensors: tensor 'w': entry is a number, not an object");
    CHECK_BAD("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'w': missing \"dtype\"");
    CHECK_BAD("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 'w': missing \"shape\"");
    CHECK_BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 'w': missing \"data_offsets\"");
    CHECK_BAD("{\"w\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
              "tensor 'w': \"dtype\" is a number, not a string");
    CHECK_BAD("{\"w\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8,
              "tensor 'w': dtype \"F64\" is not supported (beamlet reads F32, BF16, F16, U8, I32, I64)");
    CHECK_BAD("{\"mask\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
              "tensor 'mask': dtype \"BOOL\" is not supported");
    CHECK_BAD("{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
              "dtype \"f32\" is not supported");
    CHECK_BAD("{\"w\":{\"dtype\":\"F32\\u0000\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
              "dtype \"F32\" is not supported");
    CHECK_BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]}}", 16,
              "tensor 'w': \"shape\" is a number, not an array");
    CHECK_BAD("{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
              "tensor 'w': shape has 9 dimensions, more than the 8 beamlet supports");
    CHECK_BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,1.5],\"data_offsets\":[0,12]}}", 12,
              "tensor 'w': shape[1]: expected an integer, got 1.5");
    CHECK_BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,\"3\"],\"data_offsets\":[0,24]}}", 24,
              "tensor 'w': shape[1]: expected an integer, got a string");
    CHECK_BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[2e0],\"data_offsets\":[0,8]}}", 8,
              "shape[0]: expected an integer, got 2e0");
    CHECK_BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2,-3],\"data_offsets\":[0,24]}}", 24,
              "tensor 'w': shape[0] is negative (-2)");
    CHECK_BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}", 4,
              "shape[0]: integer 99999999999999999999 is out of the range of int64");
    CHECK_BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],"
              "\"data_offsets\":[0,4]}}",
              4, "tensor 'w': shape [4294967296,4294967296,16] is too large");
    CHECK_BAD("{\"w\":{\"dtype\":\"I64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,8]}}", 8,
              "is too large (its byte count overflows)");
    CHECK_BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{}}}", 4,
              "tensor 'w': \"data_offsets\" is an object, not an array of two integers");
    CHECK_BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8,
              "\"data_offsets\" is an array of another length, not an array of two integers");
    CHECK_BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}", 4,
              "tensor 'w': data_offsets[1]: expected an integer, got 4.0");
    CHECK_BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4,
              "tensor 'w': data_offsets[0] is negative (-4)");
    CHECK_BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4,
              "tensor 'w': data_offsets [4, 0]: begin is after end");
    CHECK_BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
              "tensor 'w': data_offsets end 8 is beyond the data buffer (4 bytes)");
    CHECK_BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,9223372036854775807]}}", 4,
              "data_offsets end 9223372036854775807 is beyond the data buffer");
    CHECK_BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20,
              "tensor 'w': shape [2,3] of F32 needs 24 bytes but data_offsets [0, 20] hold 20");
    CHECK_BAD("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
              "shape [2] of BF16 needs 4 bytes");
    CHECK_BAD("{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
              "tensor 'a': name contains a NUL byte");
    CHECK_BAD("{\"bad\\nname\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,2]}}", 1,
              "tensor 'bad?name': data_offsets end 2");

    /* How the tensors sit in the data buffer. */
    CHECK_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
              12, "model.safetensors: tensors 'a' [0, 8) and 'b' [4, 12) overlap");
    CHECK_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
              8, "tensors 'a' [0, 8) and 'b' [0, 8) overlap");
    CHECK_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}",
              8, "tensors 'a' [0, 8) and 'e' [4, 4) overlap");
    CHECK_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
              20, "model.safetensors: data bytes [8, 12) before tensor 'b' belong to no tensor");
    CHECK_BAD("{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
              "data bytes [0, 4) before tensor 'b' belong to no tensor");
    CHECK_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12,
              "model.safetensors: the last 4 bytes of the data buffer belong to no tensor");
    CHECK_BAD("{}", 3, "the last 3 bytes of the data buffer belong to no tensor");
    /* Listed out of order in the header but tiling the buffer: fine. */
    CHECK_OK(open_header("{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                         "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                         8));
}

static void test_writer_errors(void) {
    bl_safetensors_writer *w;
    CHECK_OK(bl_safetensors_writer_new(&w));
    float x[4] = {0};
    CHECK_OK(bl_safetensors_writer_add(w, "x", BL_F32, 1, (int64_t[]){4}, x));
    CHECK_ERR(bl_safetensors_writer_add(w, "x", BL_F32, 1, (int64_t[]){4}, x), BL_ERR_INVALID_ARG,
              "tensor 'x': the name is already used");
    CHECK_ERR(bl_safetensors_writer_add(w, "", BL_F32, 1, (int64_t[]){4}, x), BL_ERR_INVALID_ARG,
              "the name is empty");
    CHECK_ERR(bl_safetensors_writer_add(w, "__metadata__", BL_F32, 1, (int64_t[]){4}, x), BL_ERR_INVALID_ARG,
              "the name is reserved");
    CHECK_ERR(bl_safetensors_writer_add(w, "bad\xff", BL_F32, 1, (int64_t[]){4}, x), BL_ERR_INVALID_ARG,
              "not valid UTF-8");
    CHECK_ERR(bl_safetensors_writer_add(w, "neg", BL_F32, 1, (int64_t[]){-4}, x), BL_ERR_INVALID_ARG,
              "a dimension is negative");
    CHECK_ERR(bl_safetensors_writer_add(w, "deep", BL_F32, 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}, x),
              BL_ERR_INVALID_ARG, "ndim must be 0..8");
    CHECK_ERR(bl_safetensors_writer_add(w, "null", BL_F32, 1, (int64_t[]){4}, NULL), BL_ERR_INVALID_ARG,
              "data is NULL");
    CHECK_ERR(bl_safetensors_writer_add(w, "huge", BL_F32, 2, (int64_t[]){INT64_MAX, 4}, x),
              BL_ERR_INVALID_ARG, "the shape is too large");
    CHECK_ERR(bl_safetensors_writer_add(w, "dt", BL_DTYPE_COUNT, 1, (int64_t[]){4}, x), BL_ERR_INVALID_ARG,
              "unknown dtype");
    CHECK_ERR(bl_safetensors_writer_set_metadata(w, "k", "bad\xc3"), BL_ERR_INVALID_ARG,
              "metadata 'k' is not valid UTF-8");
    CHECK_ERR(bl_safetensors_writer_commit(w, "/nonexistent/dir/out.safetensors"), BL_ERR_NOT_FOUND,
              "/nonexistent/dir/out.safetensors");
    /* The failed calls changed nothing. */
    void *img;
    size_t size;
    CHECK_OK(bl_safetensors_writer_serialize(w, &img, &size));
    bl_safetensors *f = NULL;
    CHECK_OK(bl_safetensors_open_memory(img, size, "mem", &f));
    CHECK(f && bl_safetensors_count(f) == 1 && bl_safetensors_metadata_count(f) == 0);
    bl_safetensors_close(f);
    free(img);
    bl_safetensors_writer_free(w);
    bl_safetensors_writer_free(NULL);
    bl_safetensors_close(NULL);
}

/* ---- truncation and fuzzing ------------------------------------------------------------- */

static void *valid_image(size_t *size) {
    bl_safetensors_writer *w;
    bl_safetensors_writer_new(&w);
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t h[3] = {0x3c00, 0x4000, 0xc000};
    int64_t n = 5;
    uint8_t u[3] = {7, 8, 9};
    bl_safetensors_writer_add(w, "conv.weight", BL_F32, 4, (int64_t[]){1, 1, 2, 3}, a);
    bl_safetensors_writer_add(w, "bn.bias", BL_BF16, 1, (int64_t[]){3}, h);
    bl_safetensors_writer_add(w, "half", BL_F16, 1, (int64_t[]){3}, h);
    bl_safetensors_writer_add(w, "bn.num_batches_tracked", BL_I64, 0, NULL, &n);
    bl_safetensors_writer_add(w, "u", BL_U8, 1, (int64_t[]){3}, u);
    bl_safetensors_writer_set_metadata(w, "format", "pt");
    void *img = NULL;
    bl_safetensors_writer_serialize(w, &img, size);
    bl_safetensors_writer_free(w);
    return img;
}

/* Touches every byte an accepted file claims, so ASan or valgrind would see a bad view. */
static void exercise(const bl_safetensors *f, const unsigned char *img, size_t size) {
    for (size_t i = 0; i < bl_safetensors_count(f); i++) {
        const bl_st_tensor *t = bl_safetensors_at(f, i);
        const unsigned char *p = t->data;
        CHECK(p >= img + 8 && p + t->nbytes <= img + size);
        unsigned sum = 0;
        for (size_t k = 0; k < t->nbytes; k++) sum += p[k];
        (void)sum;
        CHECK(bl_safetensors_find(f, t->name) == t);
        if (t->dtype == BL_F32 || t->dtype == BL_BF16 || t->dtype == BL_F16) {
            float *dst = malloc(t->nbytes / bl_dtype_size(t->dtype) * sizeof(float) + 1);
            CHECK_OK(bl_safetensors_read_f32(f, t->name, t->ndim, t->shape, dst));
            free(dst);
        }
    }
    for (size_t i = 0; i < bl_safetensors_metadata_count(f); i++) {
        const char *v = NULL, *k = bl_safetensors_metadata_at(f, i, &v);
        CHECK(k && v && bl_safetensors_metadata(f, k) == v);
    }
}

static void test_truncation(void) {
    size_t size;
    unsigned char *img = valid_image(&size);
    bl_test_fuzz_seed("fuzz_safetensors", img, size);
    bl_safetensors *f = NULL;
    CHECK_OK(bl_safetensors_open_memory(img, size, "valid", &f));
    CHECK(f && bl_safetensors_count(f) == 5);
    bl_safetensors_close(f);
    int bad = 0;
    for (size_t len = 0; len < size; len++) {
        unsigned char *copy = malloc(len ? len : 1); /* exact size: overreads are caught */
        memcpy(copy, img, len);
        f = NULL;
        bl_status s = bl_safetensors_open_memory(copy, len, "cut", &f);
        if (s != BL_ERR_FORMAT || f != NULL) {
            bad++;
            fprintf(stderr, "  truncated to %zu of %zu bytes: %s\n", len, size, bl_status_name(s));
        }
        bl_safetensors_close(f);
        free(copy);
    }
    CHECK(bad == 0);
    free(img);
}

static void test_fuzz(void) {
    const uint64_t seed = 0x5afe7e45;
    const int iterations = 5000;
    fprintf(stderr, "  fuzz seed 0x%llx, %d iterations\n", (unsigned long long)seed, iterations);
    size_t size;
    unsigned char *img = valid_image(&size);
    uint64_t hlen;
    memcpy(&hlen, img, 8);
    bl_rng rng;
    bl_rng_seed(&rng, seed);
    static const char tokens[] = "{}[]\":,-0123456789.e \\u";
    int accepted = 0, rejected = 0;
    for (int it = 0; it < iterations; it++) {
        size_t len = size;
        if (bl_rng_below(&rng, 10) == 0) len = (size_t)bl_rng_below(&rng, size + 1);
        unsigned char *m = malloc(len ? len : 1);
        memcpy(m, img, len);
        int flips = 1 + (int)bl_rng_below(&rng, 6);
        for (int k = 0; k < flips && len > 0; k++) {
            /* Mostly inside the header, where the structure is. */
            size_t at = bl_rng_below(&rng, 4) ? 8 + bl_rng_below(&rng, hlen) : bl_rng_below(&rng, len);
            if (at >= len) continue;
            switch (bl_rng_below(&rng, 3)) {
                case 0: m[at] ^= (unsigned char)(1u << bl_rng_below(&rng, 8)); break;
                case 1: m[at] = (unsigned char)bl_rng_u32(&rng); break;
                default: m[at] = (unsigned char)tokens[bl_rng_below(&rng, sizeof tokens - 1)]; break;
            }
        }
        bl_safetensors *f = NULL;
        bl_status s = bl_safetensors_open_memory(m, len, "fuzz", &f);
        CHECK((s == BL_OK) == (f != NULL));
        CHECK(s == BL_OK || s == BL_ERR_FORMAT);
        if (f) {
            accepted++;
            exercise(f, m, len);
        } else {
            rejected++;
            CHECK(strncmp(bl_last_error(), "fuzz: ", 6) == 0);
        }
        bl_safetensors_close(f);
        free(m);
    }
    fprintf(stderr, "  %d accepted, %d rejected\n", accepted, rejected);
    CHECK(accepted > 0 && rejected > 0);
    free(img);
}

int main(void) {
    RUN(test_round_trip);
    RUN(test_python_layout);
    RUN(test_empty_file_and_alignment);
    RUN(test_malformed);
    RUN(test_writer_errors);
    RUN(test_truncation);
    RUN(test_fuzz);
    return bl_test_finish();
}
