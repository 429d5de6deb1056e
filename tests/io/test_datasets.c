/* Dataset readers (IDX/Fashion-MNIST, CIFAR-10) on files the test writes itself: good files load
 * exactly; every truncated length and every corrupt header is rejected with the file and the
 * offset; float batches normalize, pad, crop and flip as documented, deterministically. */
#include "bl_test.h"

#include "beamlet/datasets.h"

#include <ftw.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef BEAMLET_HAVE_ZLIB
#include <zlib.h>
#endif

static char tmp_root[64];

/* ---- helpers ------------------------------------------------------------------------------ */

static void make_dir(const char *path) { mkdir(path, 0755); }

static void sub_dir(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", tmp_root, name);
    make_dir(out);
}

static void write_file(const char *path, const void *data, size_t size) {
    if (strstr(path, "idx")) bl_test_fuzz_seed("fuzz_idx", data, size);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(fwrite(data, 1, size, f) == size);
    fclose(f);
}

static void write_gz(const char *path, const void *data, size_t size) {
#ifdef BEAMLET_HAVE_ZLIB
    gzFile g = gzopen(path, "wb9");
    CHECK(g != NULL);
    if (!g) return;
    CHECK(gzwrite(g, data, (unsigned)size) == (int)size);
    gzclose(g);
    void *gz = NULL;
    size_t gz_size = 0;
    if (strstr(path, "idx") && bl_file_read_all(path, &gz, &gz_size) == BL_OK)
        bl_test_fuzz_seed("fuzz_idx", gz, gz_size);
    free(gz);
#else
    (void)path, (void)data, (void)size;
#endif
}

static unsigned char *read_file(const char *path, size_t *size) {
    void *data = NULL;
    CHECK_OK(bl_file_read_all(path, &data, size));
    return data;
}

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint8_t test_pixel(int i, int y, int x) { return (uint8_t)(i * 37 + y * 5 + x * 3 + 1); }

/* An IDX3 image file of n h x w images (magic 0x00000803 unless overridden). */
static unsigned char *idx_images(int n, int h, int w, uint32_t magic, size_t *size) {
    *size = 16 + (size_t)n * h * w;
    unsigned char *b = malloc(*size);
    put_be32(b, magic);
    put_be32(b + 4, (uint32_t)n);
    put_be32(b + 8, (uint32_t)h);
    put_be32(b + 12, (uint32_t)w);
    for (int i = 0; i < n; i++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) b[16 + ((size_t)i * h + y) * w + x] = test_pixel(i, y, x);
    return b;
}

static unsigned char *idx_labels(int n, size_t *size) {
    *size = 8 + (size_t)n;
    unsigned char *b = malloc(*size);
    put_be32(b, 0x00000801);
    put_be32(b + 4, (uint32_t)n);
    for (int i = 0; i < n; i++) b[8 + i] = (unsigned char)((i * 3) % 10);
    return b;
}

/* A t10k split of n images in `dir`, plain or gzipped. */
static void write_fashion(const char *dir, int n, bool gz) {
    size_t ni, nl;
    unsigned char *img = idx_images(n, 28, 28, 0x00000803, &ni);
    unsigned char *lab = idx_labels(n, &nl);
    char p[256];
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte%s", dir, gz ? ".gz" : "");
    gz ? write_gz(p, img, ni) : write_file(p, img, ni);
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte%s", dir, gz ? ".gz" : "");
    gz ? write_gz(p, lab, nl) : write_file(p, lab, nl);
    free(img);
    free(lab);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* ---- IDX and Fashion-MNIST ---------------------------------------------------------------- */

static void check_fashion(const bl_dataset *ds, int n) {
    CHECK(ds->count == n && ds->channels == 1 && ds->height == 28 && ds->width == 28);
    CHECK(ds->num_classes == 10 && strcmp(ds->class_names[0], "T-shirt/top") == 0 &&
          strcmp(ds->class_names[9], "Ankle boot") == 0);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (ds->labels[i] != (i * 3) % 10) bad++;
        for (int y = 0; y < 28; y++)
            for (int x = 0; x < 28; x++)
                if (ds->images[((size_t)i * 28 + y) * 28 + x] != test_pixel(i, y, x)) bad++;
    }
    CHECK(bad == 0);
}

static void test_fashion_good_files(void) {
    char plain[128], gz[128];
    sub_dir(plain, sizeof plain, "fm_plain");
    write_fashion(plain, 7, false);
    bl_dataset ds;
    CHECK_OK(bl_fashion_mnist_load(plain, false, &ds));
    check_fashion(&ds, 7);
    CHECK(strstr(ds.source, "t10k-images-idx3-ubyte") != NULL);
    bl_dataset_free(&ds);
    CHECK(ds.images == NULL && ds.count == 0);
    bl_dataset_free(&ds); /* twice is harmless */
    CHECK_ERR(bl_fashion_mnist_load(plain, true, &ds), BL_ERR_NOT_FOUND, "train-images-idx3-ubyte(.gz)");
#ifdef BEAMLET_HAVE_ZLIB
    sub_dir(gz, sizeof gz, "fm_gz");
    write_fashion(gz, 7, true);
    CHECK_OK(bl_fashion_mnist_load(gz, false, &ds));
    check_fashion(&ds, 7);
    CHECK(strstr(ds.source, ".gz") != NULL);
    bl_dataset_free(&ds);
    /* The .gz wins when both exist: a broken plain twin beside it is never read. */
    char p[256];
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte", gz);
    write_file(p, "junk", 4);
    CHECK_OK(bl_fashion_mnist_load(gz, false, &ds));
    bl_dataset_free(&ds);
    /* Two gzip members back to back (`cat a.gz b.gz`) are one file, as gzip reads them. */
    size_t ni;
    unsigned char *img = idx_images(7, 28, 28, 0x00000803, &ni);
    char half[256];
    snprintf(half, sizeof half, "%s/half.gz", tmp_root);
    write_gz(half, img + 1000, ni - 1000);
    size_t n2;
    unsigned char *second = read_file(half, &n2);
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte.gz", gz);
    write_gz(p, img, 1000);
    size_t n1;
    unsigned char *first = read_file(p, &n1);
    if (first && second) {
        unsigned char *both = malloc(n1 + n2);
        memcpy(both, first, n1);
        memcpy(both + n1, second, n2);
        write_file(p, both, n1 + n2);
        free(both);
        CHECK_OK(bl_fashion_mnist_load(gz, false, &ds));
        check_fashion(&ds, 7);
        bl_dataset_free(&ds);
    }
    free(first);
    free(second);
    free(img);
    /* The environment variable stands in for a NULL folder. */
    setenv("BEAMLET_FASHION_MNIST", gz, 1);
    CHECK_OK(bl_fashion_mnist_load(NULL, false, &ds));
    check_fashion(&ds, 7);
    bl_dataset_free(&ds);
    unsetenv("BEAMLET_FASHION_MNIST");
#else
    (void)gz;
    fprintf(stderr, "  (no zlib: gzipped files not tested)\n");
#endif
}

static void test_idx_types_and_byte_order(void) {
    unsigned char b[4 + 8 + 2 * 3 * 2];
    b[0] = 0, b[1] = 0, b[2] = BL_IDX_I16, b[3] = 2;
    put_be32(b + 4, 2);
    put_be32(b + 8, 3);
    int16_t want[6] = {1, -2, 300, -32768, 32767, 0};
    for (int i = 0; i < 6; i++) {
        b[12 + 2 * i] = (unsigned char)((uint16_t)want[i] >> 8);
        b[13 + 2 * i] = (unsigned char)want[i];
    }
    char p[256];
    snprintf(p, sizeof p, "%s/i16.idx", tmp_root);
    write_file(p, b, sizeof b);
    bl_idx idx;
    CHECK_OK(bl_idx_read(p, &idx));
    CHECK(idx.type == BL_IDX_I16 && idx.ndim == 2 && idx.dims[0] == 2 && idx.dims[1] == 3);
    CHECK(idx.elem_size == 2 && idx.size == 12);
    if (idx.data) CHECK(memcmp(idx.data, want, sizeof want) == 0);
    bl_idx_free(&idx);

    float fwant[2] = {1.5f, -0.25f};
    unsigned char fb[4 + 4 + 8] = {0, 0, BL_IDX_F32, 1};
    put_be32(fb + 4, 2);
    for (int i = 0; i < 2; i++) {
        uint32_t u;
        memcpy(&u, &fwant[i], 4);
        put_be32(fb + 8 + 4 * i, u);
    }
    snprintf(p, sizeof p, "%s/f32.idx", tmp_root);
    write_file(p, fb, sizeof fb);
    CHECK_OK(bl_idx_read(p, &idx));
    if (idx.data) CHECK(memcmp(idx.data, fwant, sizeof fwant) == 0);
    bl_idx_free(&idx);
    CHECK_ERR(bl_idx_read("/nonexistent/x.idx", &idx), BL_ERR_NOT_FOUND, "/nonexistent/x.idx");
}

/* Cuts `full` at every length and expects a clean BL_ERR_FORMAT naming the file and an offset. */
static void truncations(const char *dir, const char *path, const unsigned char *full, size_t n) {
    int bad = 0;
    for (size_t len = 0; len < n; len++) {
        write_file(path, full, len);
        bl_dataset ds;
        bl_clear_error();
        bl_status s = bl_fashion_mnist_load(dir, false, &ds);
        const char *m = bl_last_error();
        if (s != BL_ERR_FORMAT || !strstr(m, path) || !strstr(m, "offset")) {
            if (bad++ < 5) {
                fprintf(stderr, "  length %zu: %s: %s\n", len, bl_status_name(s), m);
            }
            if (s == BL_OK) bl_dataset_free(&ds);
        }
    }
    CHECK_MSG(bad == 0, "%d of %zu truncated lengths of %s not rejected cleanly", bad, n, path);
    write_file(path, full, n);
}

static void test_fashion_every_truncation(void) {
    char dir[128], p[256];
    sub_dir(dir, sizeof dir, "fm_trunc");
    write_fashion(dir, 3, false);
    size_t ni, nl;
    unsigned char *img = idx_images(3, 28, 28, 0x00000803, &ni);
    unsigned char *lab = idx_labels(3, &nl);
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte", dir);
    truncations(dir, p, img, ni);
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte", dir);
    truncations(dir, p, lab, nl);
    /* The exact message for one cut in the data. */
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte", dir);
    write_file(p, img, 100);
    bl_dataset ds;
    CHECK_ERR(bl_fashion_mnist_load(dir, false, &ds), BL_ERR_FORMAT,
              "t10k-images-idx3-ubyte: truncated at offset 100, in record 0 of 3: the header "
              "declares 3x28x28");
    write_file(p, img, 16 + 784 + 5);
    CHECK_ERR(bl_fashion_mnist_load(dir, false, &ds), BL_ERR_FORMAT,
              "truncated at offset 805, in record 1 of 3");
    write_file(p, img, ni);
#ifdef BEAMLET_HAVE_ZLIB
    /* Gzipped: cut the compressed file at every length, trailer included. */
    char gzdir[128];
    sub_dir(gzdir, sizeof gzdir, "fm_gz_trunc");
    write_fashion(gzdir, 3, true);
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte.gz", gzdir);
    size_t gn;
    unsigned char *gzimg = read_file(p, &gn);
    if (gzimg) truncations(gzdir, p, gzimg, gn);
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte.gz", gzdir);
    unsigned char *gzlab = read_file(p, &gn);
    if (gzlab) truncations(gzdir, p, gzlab, gn);
    free(gzimg);
    free(gzlab);
#endif
    free(img);
    free(lab);
}

/* Replaces one split's image or label file with `data` and expects `needle`. */
static void expect_bad(const char *dir, const char *file, const void *data, size_t size, bool gz,
                       const char *needle) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    gz ? write_gz(p, data, size) : write_file(p, data, size);
    bl_dataset ds;
    CHECK_ERR(bl_fashion_mnist_load(dir, false, &ds), BL_ERR_FORMAT, needle);
    CHECK(strstr(bl_last_error(), file) != NULL);
    write_fashion(dir, 5, gz); /* good again for the next case */
}

static void test_fashion_corrupt_headers(void) {
    char dir[128];
    sub_dir(dir, sizeof dir, "fm_corrupt");
    write_fashion(dir, 5, false);
    const char *imf = "t10k-images-idx3-ubyte", *lbf = "t10k-labels-idx1-ubyte";
    size_t ni, nl;
    unsigned char *img = idx_images(5, 28, 28, 0x00000803, &ni);
    unsigned char *lab = idx_labels(5, &nl);

    unsigned char *b = malloc(ni + 8);
    memcpy(b, img, ni);
    b[0] = 0x12;
    expect_bad(dir, imf, b, ni, false, "offset 0: bad magic 0x12000803");
    memcpy(b, img, ni);
    b[2] = 0x07; /* no such element type */
    expect_bad(dir, imf, b, ni, false, "bad magic 0x00000703");
    expect_bad(dir, imf, lab, nl, false, "magic 0x00000801, but an image file has 0x00000803");
    expect_bad(dir, lbf, img, ni, false, "magic 0x00000803, but a label file has 0x00000801");
    free(img);
    img = idx_images(5, 32, 32, 0x00000803, &ni);
    expect_bad(dir, imf, img, ni, false, "offset 8: images are 32x32, Fashion-MNIST's are 28x28");
    free(img);
    img = idx_images(4, 28, 28, 0x00000803, &ni);
    expect_bad(dir, imf, img, ni, false, "holds 4 images but");
    free(img);
    img = idx_images(5, 28, 28, 0x00000803, &ni);
    memcpy(b, lab, nl);
    b[8 + 3] = 10;
    expect_bad(dir, lbf, b, nl, false, "record 3 (offset 11): label 10 is out of range");
    memcpy(b, lab, nl);
    memset(b + nl, 0, 3);
    expect_bad(dir, lbf, b, nl + 3, false, "3 unexpected trailing bytes from offset 13");
    memcpy(b, lab, nl);
    put_be32(b + 4, 0);
    expect_bad(dir, lbf, b, 8, false, "offset 4: dimension 0 is 0");
    /* A header declaring terabytes is refused before any allocation... */
    memcpy(b, img, 16);
    put_be32(b + 4, 0xffffffffu);
    expect_bad(dir, imf, b, 16, false, "taken as a corrupt header");
    /* ...and one declaring 784 MB in a short file fails as a truncation, without asking for it. */
    put_be32(b + 4, 1000000);
    expect_bad(dir, imf, b, 16, false, "truncated at offset 16");
    free(b);
    free(img);
    free(lab);
}

static void test_fashion_corrupt_gzip(void) {
#ifndef BEAMLET_HAVE_ZLIB
    SKIP("built without zlib");
#else
    char dir[128], p[256];
    sub_dir(dir, sizeof dir, "fm_gz_corrupt");
    write_fashion(dir, 5, true);
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte.gz", dir);
    size_t n;
    unsigned char *gz = read_file(p, &n);
    if (!gz) return;
    bl_dataset ds;
    /* A flipped byte in the trailer's CRC: the data inflates, the check does not. */
    gz[n - 6] ^= 0x55;
    write_file(p, gz, n);
    CHECK_ERR(bl_fashion_mnist_load(dir, false, &ds), BL_ERR_FORMAT,
              "(uncompressed offset 3936): zlib: incorrect data check");
    gz[n - 6] ^= 0x55;
    /* Bytes after the gzip stream that are not another gzip member. */
    unsigned char *longer = malloc(n + 3);
    memcpy(longer, gz, n);
    memcpy(longer + n, "xyz", 3);
    write_file(p, longer, n + 3);
    char want[64];
    snprintf(want, sizeof want, "unexpected bytes after the gzip stream at offset %zu", n);
    CHECK_ERR(bl_fashion_mnist_load(dir, false, &ds), BL_ERR_FORMAT, want);
    free(longer);
    /* Garbage in the deflate stream. */
    for (size_t i = 20; i < 40 && i < n; i++) gz[i] ^= 0xa7;
    write_file(p, gz, n);
    bl_clear_error();
    bl_status s = bl_fashion_mnist_load(dir, false, &ds);
    CHECK(s == BL_ERR_FORMAT);
    CHECK(strstr(bl_last_error(), "t10k-images-idx3-ubyte.gz") != NULL);
    CHECK(strstr(bl_last_error(), "offset") != NULL);
    fprintf(stderr, "  corrupt deflate: %s\n", bl_last_error());
    if (s == BL_OK) bl_dataset_free(&ds);
    free(gz);
#endif
}

/* Seeded random damage (byte flips, cuts, insertions) to good IDX files, plain and gzipped: every
 * result is a clean load or a clean error naming the file, never a crash (run under ASan and
 * valgrind too). A cheap stand-in for a fuzzer that runs on every build. */
static void test_fashion_mutations(void) {
    const uint64_t seed = 7;
    fprintf(stderr, "  seed %llu\n", (unsigned long long)seed);
    char dir[128], p[256];
    sub_dir(dir, sizeof dir, "fm_mutate");
    bl_rng rng;
    bl_rng_seed(&rng, seed);
    size_t ni, nl;
    unsigned char *img = idx_images(2, 28, 28, 0x00000803, &ni);
    unsigned char *lab = idx_labels(2, &nl);
    int unclean = 0, loaded = 0, rounds = 0;
    for (int gz = 0; gz < 2; gz++) {
#ifndef BEAMLET_HAVE_ZLIB
        if (gz) break;
#endif
        write_fashion(dir, 2, gz);
        snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte%s", dir, gz ? ".gz" : "");
        size_t n;
        unsigned char *good = read_file(p, &n);
        if (!good) break;
        unsigned char *bad = malloc(n + 16);
        for (int round = 0; round < 600; round++, rounds++) {
            memcpy(bad, good, n);
            size_t len = n;
            int edits = 1 + (int)bl_rng_below(&rng, 4);
            for (int e = 0; e < edits; e++) {
                int kind = (int)bl_rng_below(&rng, 3);
                size_t at = (size_t)bl_rng_below(&rng, len);
                if (kind == 0)
                    bad[at] ^= (unsigned char)(1 + bl_rng_below(&rng, 255));
                else if (kind == 1)
                    len = at;
                else if (len < n + 16)
                    memmove(bad + at + 1, bad + at, len - at), len++;
                if (len == 0) break;
            }
            write_file(p, bad, len);
            bl_dataset ds;
            bl_clear_error();
            bl_status s = bl_fashion_mnist_load(dir, false, &ds);
            if (s == BL_OK) {
                loaded++;
                bl_dataset_free(&ds);
            } else if (!strstr(bl_last_error(), p)) {
                if (unclean++ < 5) fprintf(stderr, "  round %d: %s\n", round, bl_last_error());
            }
        }
        write_file(p, good, n);
        free(bad);
        free(good);
    }
    CHECK_MSG(unclean == 0, "%d of %d damaged files gave errors not naming the file", unclean, rounds);
    fprintf(stderr, "  %d of %d damaged files still loaded (pixel flips are undetectable)\n", loaded, rounds);
    free(img);
    free(lab);
}

static void test_fashion_real_test_split(void) {
    const char *dir = BL_FASHION_MNIST_DEFAULT_DIR;
    char p[256];
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte.gz", dir);
    if (access(p, R_OK) != 0) {
        snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte", dir);
        if (access(p, R_OK) != 0) SKIP("%s not installed (apt install dataset-fashion-mnist)", dir);
    }
    bl_dataset ds;
    bl_status s = bl_fashion_mnist_load(dir, false, &ds);
    if (s == BL_ERR_UNSUPPORTED) SKIP("%s", bl_last_error());
    CHECK_OK(s);
    CHECK(ds.count == 10000);
    int hist[10] = {0};
    for (int64_t i = 0; i < ds.count; i++) hist[ds.labels[i]]++;
    for (int k = 0; k < 10; k++) CHECK_MSG(hist[k] == 1000, "class %d: %d", k, hist[k]);
    bl_dataset_free(&ds);
}

/* ---- CIFAR-10 -------------------------------------------------------------------------------- */

static uint8_t cifar_pixel(int file, int r, int i) { return (uint8_t)(file * 101 + r * 13 + i); }

static unsigned char *cifar_file(int file, int records, size_t *size) {
    *size = (size_t)records * BL_CIFAR10_RECORD_BYTES;
    unsigned char *b = malloc(*size);
    for (int r = 0; r < records; r++) {
        unsigned char *rec = b + (size_t)r * BL_CIFAR10_RECORD_BYTES;
        rec[0] = (unsigned char)((file + r) % 10);
        for (int i = 0; i < 3072; i++) rec[1 + i] = cifar_pixel(file, r, i);
    }
    return b;
}

static void write_cifar(const char *dir, int records) {
    char p[256];
    for (int f = 0; f < 6; f++) {
        size_t n;
        unsigned char *b = cifar_file(f, records, &n);
        if (f < 5) {
            snprintf(p, sizeof p, "%s/data_batch_%d.bin", dir, f + 1);
        } else {
            snprintf(p, sizeof p, "%s/test_batch.bin", dir);
        }
        write_file(p, b, n);
        free(b);
    }
}

static void test_cifar_good_files(void) {
    char dir[128];
    sub_dir(dir, sizeof dir, "cifar");
    write_cifar(dir, 3);
    bl_dataset ds;
    CHECK_OK(bl_cifar10_load(dir, true, &ds));
    CHECK(ds.count == 15 && ds.channels == 3 && ds.height == 32 && ds.width == 32);
    CHECK(ds.num_classes == 10 && strcmp(ds.class_names[1], "automobile") == 0);
    int bad = 0;
    for (int f = 0; f < 5; f++)
        for (int r = 0; r < 3; r++) {
            int64_t i = f * 3 + r;
            if (ds.labels[i] != (f + r) % 10) bad++;
            for (int k = 0; k < 3072; k++)
                if (ds.images[i * 3072 + k] != cifar_pixel(f, r, k)) bad++;
        }
    CHECK(bad == 0);
    bl_dataset_free(&ds);
    CHECK_OK(bl_cifar10_load(dir, false, &ds));
    CHECK(ds.count == 3 && ds.labels[0] == 5 && ds.images[0] == cifar_pixel(5, 0, 0));
    bl_dataset_free(&ds);
    /* Files of different whole record counts: a subset of 1 record, and 7 in another file. */
    char p[256];
    size_t n;
    unsigned char *b = cifar_file(0, 1, &n);
    snprintf(p, sizeof p, "%s/data_batch_1.bin", dir);
    write_file(p, b, n);
    free(b);
    b = cifar_file(2, 7, &n);
    snprintf(p, sizeof p, "%s/data_batch_3.bin", dir);
    write_file(p, b, n);
    free(b);
    CHECK_OK(bl_cifar10_load(dir, true, &ds));
    CHECK(ds.count == 1 + 3 + 7 + 3 + 3);
    CHECK(ds.labels[0] == 0 && ds.labels[1] == 1 && ds.labels[4] == 2 && ds.labels[10] == (2 + 6) % 10);
    CHECK(ds.images[(int64_t)10 * 3072 + 5] == cifar_pixel(2, 6, 5));
    bl_dataset_free(&ds);
    CHECK_ERR(bl_cifar10_load("/nonexistent/cifar", false, &ds), BL_ERR_NOT_FOUND, "fetch_cifar10.sh");
    /* A full-size test batch through the default location. */
    char full[128];
    sub_dir(full, sizeof full, "cifar_full");
    b = cifar_file(5, BL_CIFAR10_RECORDS_PER_FILE, &n);
    snprintf(p, sizeof p, "%s/test_batch.bin", full);
    write_file(p, b, n);
    free(b);
    setenv("BEAMLET_CIFAR10", full, 1);
    CHECK_OK(bl_cifar10_load(NULL, false, &ds));
    CHECK(ds.count == 10000 && ds.labels[9999] == (5 + 9999) % 10);
    bl_dataset_free(&ds);
    unsetenv("BEAMLET_CIFAR10");
    remove(p);
}

static void test_cifar_truncated_and_corrupt(void) {
    char dir[128], p[256];
    sub_dir(dir, sizeof dir, "cifar_bad");
    write_cifar(dir, 3);
    snprintf(p, sizeof p, "%s/test_batch.bin", dir);
    size_t n;
    unsigned char *full = cifar_file(5, 3, &n);
    int bad = 0;
    bl_dataset ds;
    /* Every length: whole records load (that many), anything else names the partial record. */
    for (size_t len = 0; len <= n; len++) {
        char want[160];
        size_t r = len / BL_CIFAR10_RECORD_BYTES, at = r * BL_CIFAR10_RECORD_BYTES;
        write_file(p, full, len);
        bl_clear_error();
        bl_status s = bl_cifar10_load(dir, false, &ds);
        bool whole = len % BL_CIFAR10_RECORD_BYTES == 0;
        if (len == 0) {
            snprintf(want, sizeof want, "test_batch.bin: empty file");
        } else {
            snprintf(want, sizeof want,
                     "test_batch.bin: truncated in record %zu at offset %zu (%zu of its 3073", r, at,
                     len - at);
        }
        bool ok = whole && len > 0 ? s == BL_OK && ds.count == (int64_t)r
                                   : s == BL_ERR_FORMAT && strstr(bl_last_error(), want) != NULL;
        if (!ok && bad++ < 5) fprintf(stderr, "  length %zu: %s\n", len, bl_last_error());
        if (s == BL_OK) bl_dataset_free(&ds);
    }
    CHECK_MSG(bad == 0, "%d lengths not handled as expected", bad);
    full[BL_CIFAR10_RECORD_BYTES] = 10;
    write_file(p, full, n);
    CHECK_ERR(bl_cifar10_load(dir, false, &ds), BL_ERR_FORMAT,
              "test_batch.bin: record 1 (offset 3073): label 10 is out of range");
    full[BL_CIFAR10_RECORD_BYTES] = 1;
    unsigned char *longer = malloc(n + 5);
    memcpy(longer, full, n);
    memset(longer + n, 7, 5);
    write_file(p, longer, n + 5);
    CHECK_ERR(bl_cifar10_load(dir, false, &ds), BL_ERR_FORMAT,
              "test_batch.bin: truncated in record 3 at offset 9219 (5 of its 3073 bytes");
    /* A bad file in the middle of the training set names that file. */
    write_file(p, full, n);
    snprintf(p, sizeof p, "%s/data_batch_4.bin", dir);
    write_file(p, full, n - 1);
    CHECK_ERR(bl_cifar10_load(dir, true, &ds), BL_ERR_FORMAT,
              "data_batch_4.bin: truncated in record 2 at offset 6146 (3072 of its 3073 bytes");
    remove(p);
    CHECK_ERR(bl_cifar10_load(dir, true, &ds), BL_ERR_NOT_FOUND, "data_batch_4.bin");
    free(longer);
    free(full);
}

/* ---- float batches and augmentation ---------------------------------------------------------- */

/* A dataset in memory whose pixels all differ within an image, so a crop offset and a flip can be
 * recovered from the output. */
static bl_dataset pattern_dataset(int n, int c, int h, int w) {
    bl_dataset ds = {.count = n, .channels = c, .height = h, .width = w, .num_classes = 10};
    ds.images = malloc((size_t)n * c * h * w);
    ds.labels = malloc((size_t)n);
    for (int i = 0; i < n; i++) {
        ds.labels[i] = (uint8_t)(i % 10);
        for (size_t k = 0; k < (size_t)c * h * w; k++) {
            ds.images[(size_t)i * c * h * w + k] = (uint8_t)(1 + (k * 7 + (size_t)i) % 251);
        }
    }
    snprintf(ds.source, sizeof ds.source, "pattern");
    return ds;
}

static void test_batch_eval_pad_and_normalize(void) {
    bl_dataset ds = pattern_dataset(2, 1, 28, 28);
    bl_batch_transform t = bl_batch_transform_fashion_mnist(false);
    int c, h, w;
    CHECK_OK(bl_batch_transform_shape(&ds, &t, &c, &h, &w));
    CHECK(c == 1 && h == 32 && w == 32);
    float *out = malloc(sizeof(float) * 2 * 32 * 32);
    int32_t labels[2];
    int64_t idx[2] = {1, 0};
    CHECK_OK(bl_dataset_batch_f32(&ds, idx, 2, &t, NULL, out, labels));
    CHECK(labels[0] == 1 && labels[1] == 0);
    float pad = (0.0f - 0.2860f) / 0.3530f;
    /* Image 1's pixel (0, 0) sits at (2, 2); the 2-pixel frame is zero padding. */
    uint8_t p00 = ds.images[784];
    CHECK_NEAR(out[2 * 32 + 2], (p00 / 255.0 - 0.2860) / 0.3530, 1e-5);
    CHECK_NEAR(out[0], pad, 1e-6);
    CHECK_NEAR(out[1 * 32 + 31], pad, 1e-6);
    CHECK_NEAR(out[31 * 32 + 2], pad, 1e-6);
    uint8_t p27 = ds.images[784 + 27 * 28 + 27];
    CHECK_NEAR(out[29 * 32 + 29], (p27 / 255.0 - 0.2860) / 0.3530, 1e-5);
    /* Second image in the batch is dataset image 0. */
    CHECK_NEAR(out[1024 + 2 * 32 + 3], (ds.images[1] / 255.0 - 0.2860) / 0.3530, 1e-5);

    /* Identity: no transform gives x / 255 at the dataset's size. */
    CHECK_OK(bl_dataset_batch_f32(&ds, idx, 1, NULL, NULL, out, NULL));
    CHECK_NEAR(out[5], ds.images[784 + 5] / 255.0, 1e-7);

    /* Gray replicated to three channels with per-channel statistics. */
    bl_batch_transform rgb = {.out_channels = 3, .mean = bl_cifar10_mean, .std = bl_cifar10_std};
    float *out3 = malloc(sizeof(float) * 3 * 28 * 28);
    CHECK_OK(bl_dataset_batch_f32(&ds, idx, 1, &rgb, NULL, out3, NULL));
    for (int k = 0; k < 3; k++) {
        CHECK_NEAR(out3[k * 784 + 10], (ds.images[784 + 10] / 255.0 - bl_cifar10_mean[k]) / bl_cifar10_std[k],
                   1e-5);
    }
    /* Misuse is an error, not a wrong batch. */
    int64_t far[1] = {2};
    CHECK_ERR(bl_dataset_batch_f32(&ds, far, 1, &t, NULL, out, NULL), BL_ERR_INVALID_ARG,
              "index 2 (position 0) outside the 2 images");
    bl_batch_transform small = {.out_height = 20, .out_width = 20};
    CHECK_ERR(bl_dataset_batch_f32(&ds, idx, 1, &small, NULL, out, NULL), BL_ERR_INVALID_ARG,
              "padding only grows");
    bl_batch_transform four = {.out_channels = 4};
    CHECK_ERR(bl_dataset_batch_f32(&ds, idx, 1, &four, NULL, out, NULL), BL_ERR_INVALID_ARG,
              "cannot make 4 channels from 1");
    bl_batch_transform train = bl_batch_transform_fashion_mnist(true);
    CHECK_ERR(bl_dataset_batch_f32(&ds, idx, 1, &train, NULL, out, NULL), BL_ERR_INVALID_ARG, "needs an rng");
    free(out3);
    free(out);
    bl_dataset_free(&ds);
}

/* Finds the crop offset and flip that explain `out` for image `img` of `ds` under `t`. */
static bool explain(const bl_dataset *ds, int64_t img, const bl_batch_transform *t, const float *out,
                    int *dy_out, int *dx_out, bool *flip_out) {
    int oc, oh, ow;
    bl_batch_transform_shape(ds, t, &oc, &oh, &ow);
    int p = t->crop_padding, top = (oh - ds->height) / 2, left = (ow - ds->width) / 2;
    for (int flip = 0; flip < 2; flip++)
        for (int dy = -p; dy <= p; dy++)
            for (int dx = -p; dx <= p; dx++) {
                bool ok = true;
                for (int c = 0; c < oc && ok; c++)
                    for (int y = 0; y < oh && ok; y++)
                        for (int x = 0; x < ow && ok; x++) {
                            int sy = y + dy - top, sx = (flip ? ow - 1 - x : x) + dx - left;
                            int v = 0;
                            if (sy >= 0 && sy < ds->height && sx >= 0 && sx < ds->width) {
                                size_t plane = (size_t)img * ds->channels + c;
                                v = ds->images[(plane * ds->height + sy) * ds->width + sx];
                            }
                            float want = ((float)v / 255.0f - t->mean[c]) / t->std[c];
                            ok = out[((size_t)c * oh + y) * ow + x] == want;
                        }
                if (ok) {
                    *dy_out = dy, *dx_out = dx, *flip_out = flip;
                    return true;
                }
            }
    return false;
}

static void test_batch_augment_deterministic(void) {
    const uint64_t seed = 20261124;
    fprintf(stderr, "  seed %llu\n", (unsigned long long)seed);
    bl_dataset ds = pattern_dataset(4, 3, 32, 32);
    bl_batch_transform t = bl_batch_transform_cifar10(true);
    enum {
        N = 64
    };
    int64_t idx[N];
    for (int i = 0; i < N; i++) idx[i] = i % 4;
    size_t per = 3 * 32 * 32;
    float *a = malloc(sizeof(float) * N * per), *b = malloc(sizeof(float) * N * per);
    bl_rng r1, r2;
    bl_rng_seed(&r1, seed);
    bl_rng_seed(&r2, seed);
    CHECK_OK(bl_dataset_batch_f32(&ds, idx, N, &t, &r1, a, NULL));
    CHECK_OK(bl_dataset_batch_f32(&ds, idx, N, &t, &r2, b, NULL));
    CHECK(memcmp(a, b, sizeof(float) * N * per) == 0);
    CHECK(memcmp(&r1, &r2, sizeof r1) == 0);
    /* The next batch from the same stream differs; a checkpointed rng state replays it. */
    bl_rng saved = r1;
    CHECK_OK(bl_dataset_batch_f32(&ds, idx, N, &t, &r1, b, NULL));
    CHECK(memcmp(a, b, sizeof(float) * N * per) != 0);
    float *c = malloc(sizeof(float) * N * per);
    CHECK_OK(bl_dataset_batch_f32(&ds, idx, N, &t, &saved, c, NULL));
    CHECK(memcmp(b, c, sizeof(float) * N * per) == 0);
    free(c);

    /* Every output is one pad-4 crop of its image, flipped or not, and both kinds occur. */
    int flips = 0, unexplained = 0, shifted = 0;
    bool seen[9][9] = {{false}};
    for (int i = 0; i < N; i++) {
        int dy, dx;
        bool flip;
        if (!explain(&ds, idx[i], &t, a + i * per, &dy, &dx, &flip)) {
            unexplained++;
            continue;
        }
        flips += flip;
        shifted += dy != 0 || dx != 0;
        seen[dy + 4][dx + 4] = true;
    }
    int distinct = 0;
    for (int y = 0; y < 9; y++)
        for (int x = 0; x < 9; x++) distinct += seen[y][x];
    CHECK_MSG(unexplained == 0, "%d outputs are no crop/flip of their image", unexplained);
    CHECK_MSG(flips > 10 && flips < N - 10, "%d flips in %d", flips, N);
    CHECK_MSG(shifted > N / 2 && distinct > 20, "%d shifted, %d distinct offsets", shifted, distinct);

    /* A known pattern by hand: a single bright pixel at (0, 0) of a 1x4x4 image, pad 1. */
    bl_dataset dot = {.count = 1, .channels = 1, .height = 4, .width = 4, .num_classes = 1};
    uint8_t pix[16] = {255};
    uint8_t lab[1] = {0};
    dot.images = pix, dot.labels = lab;
    const float zero = 0.0f, one = 1.0f;
    bl_batch_transform tt = {.crop_padding = 1, .hflip = true, .mean = &zero, .std = &one};
    int hits[2] = {0, 0};
    bl_rng r;
    bl_rng_seed(&r, seed);
    for (int k = 0; k < 200; k++) {
        float o[16];
        int64_t i0 = 0;
        CHECK_OK(bl_dataset_batch_f32(&dot, &i0, 1, &tt, &r, o, NULL));
        int lit = -1, count = 0;
        for (int q = 0; q < 16; q++)
            if (o[q] != 0.0f) lit = q, count++;
        /* The dot lands at row dy' in {-1..1}+0 clipped, column in {0,1} or mirrored {3,2}. */
        if (count == 0) continue; /* cropped away: offset +1 in a direction */
        CHECK(count == 1 && o[lit] == 1.0f);
        int y = lit / 4, x = lit % 4;
        CHECK(y <= 1);
        if (x <= 1)
            hits[0]++;
        else
            hits[1]++;
    }
    CHECK_MSG(hits[0] > 20 && hits[1] > 20, "dot left %d, mirrored right %d", hits[0], hits[1]);
    free(a);
    free(b);
    bl_dataset_free(&ds);
}

int main(void) {
    /* Thousands of small rewrites: tmpfs when there is one, since some disks take a
     * millisecond per truncating open. */
    const char *base = getenv("TMPDIR");
    struct stat st;
    if (!base || !*base)
        base = stat("/dev/shm", &st) == 0 && access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(tmp_root, sizeof tmp_root, "%s/bl_datasets_XXXXXX", base);
    if (!mkdtemp(tmp_root)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_fashion_good_files);
    RUN(test_idx_types_and_byte_order);
    RUN(test_fashion_every_truncation);
    RUN(test_fashion_corrupt_headers);
    RUN(test_fashion_corrupt_gzip);
    RUN(test_fashion_mutations);
    RUN(test_fashion_real_test_split);
    RUN(test_cifar_good_files);
    RUN(test_cifar_truncated_and_corrupt);
    RUN(test_batch_eval_pad_and_normalize);
    RUN(test_batch_augment_deterministic);
    nftw(tmp_root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return bl_test_finish();
}
