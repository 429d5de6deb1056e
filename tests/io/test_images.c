/* Images: PNG write/read round trips, JPEG decoding, Pillow's bilinear resize and torchvision's
 * centre crop against hand-computed values, ImageNet preprocessing, undecodable and truncated
 * files as clean errors, image-folder listings in ImageFolder order, and sample grids. */
#include "bl_test.h"

#include "beamlet/datasets.h"

#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef BEAMLET_HAVE_JPEG
#include <jpeglib.h>
#endif
#ifdef BEAMLET_HAVE_PNG
#include <png.h>
#endif

static char tmp_root[64];

static void write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(fwrite(data, 1, size, f) == size);
    fclose(f);
}

/* bl_image_decode, keeping each input the tests decode as a seed of the image fuzzer. */
static bl_status decode(const void *data, size_t size, const char *name, bl_image *out) {
    bl_test_fuzz_seed("fuzz_image", data, size);
    return bl_image_decode(data, size, name, out);
}

static char *tmp_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", tmp_root, name);
    return buf;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

#ifdef BEAMLET_HAVE_JPEG
/* Encodes (h, w, c) u8 pixels, c = 1 or 3, as a baseline JPEG in memory. */
static unsigned char *encode_jpeg(const uint8_t *px, int w, int h, int c, int quality, unsigned long *size) {
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr err;
    ci.err = jpeg_std_error(&err);
    jpeg_create_compress(&ci);
    unsigned char *out = NULL;
    *size = 0;
    jpeg_mem_dest(&ci, &out, size);
    ci.image_width = (JDIMENSION)w;
    ci.image_height = (JDIMENSION)h;
    ci.input_components = c;
    ci.in_color_space = c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, quality, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)ci.next_scanline * w * c);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    return out;
}
#endif

/* A smooth RGB gradient, kind to JPEG. */
static uint8_t *gradient(int w, int h) {
    uint8_t *p = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *q = p + ((size_t)y * w + x) * 3;
            q[0] = (uint8_t)(x * 255 / (w - 1));
            q[1] = (uint8_t)(y * 255 / (h - 1));
            q[2] = 128;
        }
    return p;
}

/* ---- PNG ------------------------------------------------------------------------------------- */

static void test_png_round_trip(void) {
#ifndef BEAMLET_HAVE_PNG
    char p[256];
    uint8_t px[3] = {0};
    CHECK_ERR(bl_png_write_u8(tmp_path(p, sizeof p, "x.png"), 1, 1, 3, px), BL_ERR_UNSUPPORTED, "libpng");
    SKIP("built without libpng");
#else
    char p[256];
    uint8_t rgb[4 * 5 * 3];
    for (int i = 0; i < 60; i++) rgb[i] = (uint8_t)(i * 17 + 3);
    CHECK_OK(bl_png_write_u8(tmp_path(p, sizeof p, "rgb.png"), 5, 4, 3, rgb));
    bl_image img;
    CHECK_OK(bl_image_read(p, &img));
    CHECK(img.width == 5 && img.height == 4 && img.channels == 3);
    if (img.pixels) CHECK(memcmp(img.pixels, rgb, sizeof rgb) == 0);
    bl_image_free(&img);
    /* No temp file is left beside the result. */
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", p, (long)getpid());
    CHECK(access(tmp, F_OK) != 0);

    /* Gray is replicated to RGB; alpha is dropped, as PIL's convert("RGB") does. */
    uint8_t gray[6] = {0, 50, 100, 150, 200, 250};
    CHECK_OK(bl_png_write_u8(tmp_path(p, sizeof p, "gray.png"), 3, 2, 1, gray));
    CHECK_OK(bl_image_read(p, &img));
    CHECK(img.channels == 3 && img.width == 3 && img.height == 2);
    for (int i = 0; i < 6 && img.pixels; i++) {
        CHECK(img.pixels[i * 3] == gray[i] && img.pixels[i * 3 + 1] == gray[i] &&
              img.pixels[i * 3 + 2] == gray[i]);
    }
    bl_image_free(&img);
    uint8_t rgba[2 * 4] = {10, 20, 30, 0, 40, 50, 60, 255};
    CHECK_OK(bl_png_write_u8(tmp_path(p, sizeof p, "rgba.png"), 2, 1, 4, rgba));
    CHECK_OK(bl_image_read(p, &img));
    uint8_t want[6] = {10, 20, 30, 40, 50, 60};
    CHECK(img.channels == 3 && img.pixels && memcmp(img.pixels, want, 6) == 0);
    bl_image_free(&img);
    CHECK_ERR(bl_png_write_u8(p, 0, 1, 3, rgb), BL_ERR_INVALID_ARG, "0x1x3");
    CHECK_ERR(bl_png_write_u8("/nonexistent/dir/x.png", 1, 1, 3, rgb), BL_ERR_NOT_FOUND,
              "/nonexistent/dir/x.png");
#endif
}

#ifdef BEAMLET_HAVE_PNG
/* Writes PNG kinds our writer does not make: a 4-bit palette with tRNS, and 16-bit gray. */
static void write_png_kind(const char *path, bool palette) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(p);
    png_init_io(p, f);
    png_set_IHDR(p, info, 3, 1, palette ? 4 : 16, palette ? PNG_COLOR_TYPE_PALETTE : PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_color colours[3] = {{10, 20, 30}, {40, 50, 60}, {70, 80, 90}};
    png_byte alpha[3] = {0, 128, 255};
    if (palette) {
        png_set_PLTE(p, info, colours, 3);
        png_set_tRNS(p, info, alpha, 3, NULL);
    }
    png_write_info(p, info);
    /* Palette: indices 2, 0, 1 packed two per byte. Gray: 100, 300, 65535 big-endian. */
    png_byte row[6] = {0x20, 0x10, 0, 0, 0, 0};
    if (!palette) {
        png_byte g[6] = {0, 100, 1, 44, 255, 255};
        memcpy(row, g, 6);
    }
    png_write_row(p, row);
    png_write_end(p, info);
    png_destroy_write_struct(&p, &info);
    fclose(f);
}
#endif

static void test_png_kinds_like_pil(void) {
#ifndef BEAMLET_HAVE_PNG
    SKIP("built without libpng");
#else
    char p[256];
    bl_image img;
    /* A palette with transparency becomes its RGB colours, transparency dropped. */
    write_png_kind(tmp_path(p, sizeof p, "pal.png"), true);
    CHECK_OK(bl_image_read(p, &img));
    uint8_t want_pal[9] = {70, 80, 90, 10, 20, 30, 40, 50, 60};
    CHECK(img.width == 3 && img.channels == 3 && img.pixels && memcmp(img.pixels, want_pal, 9) == 0);
    bl_image_free(&img);
    /* 16-bit gray clips at 255 as PIL's I;16 -> RGB does: 100, 300, 65535 -> 100, 255, 255. */
    write_png_kind(tmp_path(p, sizeof p, "gray16.png"), false);
    CHECK_OK(bl_image_read(p, &img));
    uint8_t want_g[9] = {100, 100, 100, 255, 255, 255, 255, 255, 255};
    CHECK(img.width == 3 && img.pixels && memcmp(img.pixels, want_g, 9) == 0);
    bl_image_free(&img);
#endif
}

/* ---- JPEG ------------------------------------------------------------------------------------ */

static void test_jpeg_decode(void) {
#ifndef BEAMLET_HAVE_JPEG
    static const unsigned char soi[4] = {0xff, 0xd8, 0xff, 0xe0};
    bl_image none;
    CHECK_ERR(decode(soi, 4, "a.jpg", &none), BL_ERR_UNSUPPORTED, "libjpeg");
    SKIP("built without libjpeg");
#else
    int w = 40, h = 24;
    uint8_t *px = gradient(w, h);
    unsigned long n;
    unsigned char *jpg = encode_jpeg(px, w, h, 3, 95, &n);
    bl_image img;
    CHECK_OK(decode(jpg, n, "gradient.jpg", &img));
    CHECK(img.width == w && img.height == h && img.channels == 3);
    int worst = 0;
    for (size_t i = 0; img.pixels && i < (size_t)w * h * 3; i++) {
        int d = abs((int)img.pixels[i] - (int)px[i]);
        if (d > worst) worst = d;
    }
    CHECK_MSG(worst <= 12, "largest JPEG error %d", worst);
    bl_image_free(&img);
    free(jpg);

    uint8_t g[16 * 8];
    for (int i = 0; i < 128; i++) g[i] = (uint8_t)(i * 2);
    jpg = encode_jpeg(g, 16, 8, 1, 95, &n);
    CHECK_OK(decode(jpg, n, "gray.jpg", &img));
    CHECK(img.channels == 3 && img.width == 16 && img.height == 8);
    if (img.pixels)
        CHECK(img.pixels[3 * 37] == img.pixels[3 * 37 + 1] &&
              img.pixels[3 * 37 + 1] == img.pixels[3 * 37 + 2]);
    bl_image_free(&img);

    /* Every truncated length is a clean error; a JPEG cut short is not half gray. */
    int bad = 0;
    for (unsigned long len = 0; len < n; len++) {
        bl_clear_error();
        bl_status s = decode(jpg, len, "cut.jpg", &img);
        if (s != BL_ERR_FORMAT || strncmp(bl_last_error(), "cut.jpg: ", 9) != 0) {
            if (bad++ < 5) fprintf(stderr, "  length %lu: %s\n", len, bl_last_error());
        }
        if (s == BL_OK) bl_image_free(&img);
    }
    CHECK_MSG(bad == 0, "%d of %lu truncated JPEG lengths not rejected", bad, n);
    CHECK_ERR(decode(jpg, n - 40, "cut.jpg", &img), BL_ERR_FORMAT,
              "cut.jpg: libjpeg: Premature end of JPEG file");
    /* Damage past the headers: libjpeg may decode garbage or fail, but never crash. */
    unsigned char *broken = malloc(n);
    memcpy(broken, jpg, n);
    for (unsigned long i = n / 2; i < n - 2; i += 7) broken[i] ^= 0x5a;
    if (decode(broken, n, "noise.jpg", &img) == BL_OK) bl_image_free(&img);
    memcpy(broken, jpg, n);
    broken[3] ^= 0xff; /* mangle the first marker after SOI */
    bl_clear_error();
    if (decode(broken, n, "marker.jpg", &img) == BL_OK) {
        bl_image_free(&img);
    } else {
        CHECK(strstr(bl_last_error(), "marker.jpg: libjpeg: ") != NULL);
    }
    /* A frame header claiming 65000x65000 is refused before anything is allocated for it. */
    memcpy(broken, jpg, n);
    for (unsigned long i = 2; i + 8 < n; i++) {
        if (broken[i] == 0xff && broken[i + 1] == 0xc0) { /* SOF0: len(2) bits(1) h(2) w(2) */
            broken[i + 5] = 0xfd, broken[i + 6] = 0xe8, broken[i + 7] = 0xfd, broken[i + 8] = 0xe8;
            break;
        }
    }
    CHECK_ERR(decode(broken, n, "giant.jpg", &img), BL_ERR_FORMAT,
              "giant.jpg: 65000x65000 JPEG declares 4225000000 pixels, over the image pixel budget");
    free(broken);
    free(jpg);
    free(px);
#endif
}

/* Seeded random damage to a good PNG and a good JPEG: a clean result or a clean error that
 * starts with the file's name, never a crash or a library error escaping. */
static void test_image_mutations(void) {
    const uint64_t seed = 11;
    fprintf(stderr, "  seed %llu\n", (unsigned long long)seed);
    bl_rng rng;
    bl_rng_seed(&rng, seed);
    uint8_t *px = gradient(24, 16);
    unsigned char *files[2] = {NULL, NULL};
    size_t sizes[2] = {0, 0};
#ifdef BEAMLET_HAVE_PNG
    char p[256];
    CHECK_OK(bl_png_write_u8(tmp_path(p, sizeof p, "m.png"), 24, 16, 3, px));
    void *data;
    if (bl_file_read_all(p, &data, &sizes[0]) == BL_OK) files[0] = data;
#endif
#ifdef BEAMLET_HAVE_JPEG
    unsigned long jn;
    files[1] = encode_jpeg(px, 24, 16, 3, 90, &jn);
    sizes[1] = jn;
#endif
    int unclean = 0, decoded = 0, rounds = 0;
    for (int f = 0; f < 2; f++) {
        if (!files[f]) continue;
        size_t n = sizes[f];
        unsigned char *bad = malloc(n + 16);
        for (int round = 0; round < 1500; round++, rounds++) {
            memcpy(bad, files[f], n);
            size_t len = n;
            int edits = 1 + (int)bl_rng_below(&rng, 4);
            for (int e = 0; e < edits && len > 0; e++) {
                int kind = (int)bl_rng_below(&rng, 3);
                size_t at = (size_t)bl_rng_below(&rng, len);
                if (kind == 0)
                    bad[at] ^= (unsigned char)(1 + bl_rng_below(&rng, 255));
                else if (kind == 1)
                    len = at;
                else if (len < n + 16)
                    memmove(bad + at + 1, bad + at, len - at), len++;
            }
            bl_image img;
            bl_clear_error();
            bl_status s = decode(bad, len, "m.img", &img);
            if (s == BL_OK) {
                decoded++;
                CHECK(img.channels == 3 && img.width > 0 && img.height > 0);
                bl_image_free(&img);
            } else if (strncmp(bl_last_error(), "m.img: ", 7) != 0 ||
                       (s != BL_ERR_FORMAT && s != BL_ERR_UNSUPPORTED)) {
                if (unclean++ < 5) fprintf(stderr, "  %s\n", bl_last_error());
            }
        }
        free(bad);
    }
    CHECK_MSG(unclean == 0, "%d of %d damaged images gave unclean errors", unclean, rounds);
    fprintf(stderr, "  %d of %d damaged images still decoded\n", decoded, rounds);
#ifdef BEAMLET_HAVE_JPEG
    free(files[1]);
#endif
    free(files[0]);
    free(px);
}

static void test_undecodable(void) {
    char p[256];
    bl_image img;
    static const char gif[] = "GIF89a\x01\x00\x01\x00";
    write_file(tmp_path(p, sizeof p, "photo.jpg"), gif, sizeof gif - 1);
    CHECK_ERR(bl_image_read(p, &img), BL_ERR_FORMAT,
              "photo.jpg: not a JPEG or PNG file (first bytes 47 49 46 38)");
    write_file(tmp_path(p, sizeof p, "empty.png"), "", 0);
    CHECK_ERR(bl_image_read(p, &img), BL_ERR_FORMAT, "empty.png: empty file");
    CHECK_ERR(bl_image_read(tmp_path(p, sizeof p, "missing.png"), &img), BL_ERR_NOT_FOUND,
              "missing.png: cannot open");
    float out[3 * 4];
    write_file(tmp_path(p, sizeof p, "photo.jpg"), gif, sizeof gif - 1);
    CHECK_ERR(bl_image_load_imagenet(p, 2, 2, out), BL_ERR_FORMAT, "not a JPEG or PNG");
#ifdef BEAMLET_HAVE_PNG
    /* A PNG cut at every length, and one with a damaged compressed stream. */
    uint8_t *px = gradient(9, 7);
    CHECK_OK(bl_png_write_u8(tmp_path(p, sizeof p, "g.png"), 9, 7, 3, px));
    void *data;
    size_t n;
    CHECK_OK(bl_file_read_all(p, &data, &n));
    unsigned char *png = data;
    int bad = 0;
    for (size_t len = 0; png && len < n; len++) {
        bl_clear_error();
        bl_status s = decode(png, len, "cut.png", &img);
        if (s != BL_ERR_FORMAT || strncmp(bl_last_error(), "cut.png: ", 9) != 0) {
            if (bad++ < 5) fprintf(stderr, "  length %zu: %s\n", len, bl_last_error());
        }
        if (s == BL_OK) bl_image_free(&img);
    }
    CHECK_MSG(bad == 0, "%d of %zu truncated PNG lengths not rejected", bad, n);
    CHECK_ERR(decode(png, n - 20, "cut.png", &img), BL_ERR_FORMAT, "cut.png: libpng: truncated at offset");
    /* Flip bytes inside IDAT's data (after its 8-byte chunk header at offset 33 + 8). */
    unsigned char *broken = malloc(n);
    memcpy(broken, png, n);
    CHECK(memcmp(broken + 37, "IDAT", 4) == 0);
    broken[45] ^= 0xff;
    CHECK_ERR(decode(broken, n, "broken.png", &img), BL_ERR_FORMAT, "broken.png: libpng: IDAT");
    fprintf(stderr, "  %s\n", bl_last_error());
    memcpy(broken, png, n);
    broken[16] = 0x7f; /* width far beyond libpng's limits, CRC now wrong too */
    CHECK_ERR(decode(broken, n, "huge.png", &img), BL_ERR_FORMAT, "huge.png: libpng: ");
    free(broken);
    free(data);
    free(px);
#endif
}

/* The decode budget: a header declaring too many pixels is refused before any pixel memory is
 * allocated, with a reason that names the budget; the budget is settable and checked. */
static void test_pixel_budget(void) {
    bl_image img;
    CHECK(bl_image_max_pixels() == BL_IMAGE_MAX_PIXELS_DEFAULT);
#ifdef BEAMLET_HAVE_JPEG
    uint8_t *px = gradient(16, 8);
    unsigned long n = 0;
    unsigned char *jpg = encode_jpeg(px, 16, 8, 3, 90, &n);
    size_t sof = 0;
    for (size_t i = 2; i + 9 < n && !sof; i++)
        if (jpg[i] == 0xff && jpg[i + 1] == 0xc0) sof = i;
    CHECK_MSG(sof > 0, "no SOF0 marker in libjpeg's output");
    /* What the issue saw: a few hundred bytes declaring 65,300 x 2,573 pixels. */
    jpg[sof + 5] = 2573 >> 8, jpg[sof + 6] = 2573 & 0xff;
    jpg[sof + 7] = 65300 >> 8, jpg[sof + 8] = 65300 & 0xff;
    CHECK_ERR(decode(jpg, n, "bomb.jpg", &img), BL_ERR_FORMAT,
              "bomb.jpg: 65300x2573 JPEG declares 168016900 pixels, over the image pixel budget of 134217728 "
              "(BEAMLET_MAX_IMAGE_PIXELS or --max_image_pixels raises it)");
    jpg[sof + 5] = 0, jpg[sof + 6] = 8, jpg[sof + 7] = 0, jpg[sof + 8] = 16;
    CHECK_OK(bl_image_set_max_pixels(16 * 8 - 1));
    CHECK_ERR(decode(jpg, n, "small.jpg", &img), BL_ERR_FORMAT, "over the image pixel budget of 127");
    CHECK_OK(bl_image_set_max_pixels(16 * 8));
    CHECK_OK(decode(jpg, n, "small.jpg", &img));
    CHECK(img.width == 16 && img.height == 8);
    bl_image_free(&img);
    free(jpg);
    free(px);
#endif
#ifdef BEAMLET_HAVE_PNG
    char p[256];
    uint8_t *g = gradient(9, 7);
    CHECK_OK(bl_png_write_u8(tmp_path(p, sizeof p, "budget.png"), 9, 7, 3, g));
    CHECK_OK(bl_image_set_max_pixels(62));
    CHECK_ERR(bl_image_read(p, &img), BL_ERR_FORMAT,
              "budget.png: 9x7 PNG declares 63 pixels, over the image");
    CHECK_OK(bl_image_set_max_pixels(63));
    CHECK_OK(bl_image_read(p, &img));
    bl_image_free(&img);
    free(g);
#endif
    CHECK_ERR(bl_image_set_max_pixels(0), BL_ERR_INVALID_ARG, "image pixel budget 0: must be in 1..");
    CHECK_ERR(bl_image_set_max_pixels(((int64_t)1 << 28) + 1), BL_ERR_INVALID_ARG, "must be in 1..");
    CHECK_OK(bl_image_set_max_pixels(BL_IMAGE_MAX_PIXELS_DEFAULT));
}

/* ---- resize, crop, normalize ---------------------------------------------------------------- */

static bl_image gray_row(const uint8_t *v, int w) {
    bl_image img = {.width = w, .height = 1, .channels = 1};
    img.pixels = malloc((size_t)w);
    memcpy(img.pixels, v, (size_t)w);
    return img;
}

static void test_resize_hand_computed(void) {
    bl_image out;
    /* Enlarging is bilinear with half-pixel centres: [0, 100] -> [0, 25, 75, 100]. */
    uint8_t two[2] = {0, 100};
    bl_image a = gray_row(two, 2);
    CHECK_OK(bl_image_resize(&a, 4, 1, &out));
    uint8_t up[4] = {0, 25, 75, 100};
    CHECK(out.width == 4 && out.height == 1 && out.pixels && memcmp(out.pixels, up, 4) == 0);
    bl_image_free(&out);
    bl_image_free(&a);
    /* Shrinking 4 -> 2 widens the triangle to support 2 (Pillow's antialiasing):
     * out0 = (0*.75 + 100*.75 + 200*.25) / 1.75 = 71.43, out1 = (100*.25 + 200*.75 + 40*.75)
     * / 1.75 = 117.14. */
    uint8_t four[4] = {0, 100, 200, 40};
    a = gray_row(four, 4);
    CHECK_OK(bl_image_resize(&a, 2, 1, &out));
    CHECK(out.pixels && out.pixels[0] == 71 && out.pixels[1] == 117);
    bl_image_free(&out);
    /* The same along the vertical axis (a 1x4 column). */
    a.width = 1, a.height = 4;
    CHECK_OK(bl_image_resize(&a, 1, 2, &out));
    CHECK(out.width == 1 && out.height == 2 && out.pixels && out.pixels[0] == 71 && out.pixels[1] == 117);
    bl_image_free(&out);
    bl_image_free(&a);
    /* Both passes on RGB: a constant image stays constant, exactly. */
    bl_image c = {.width = 7, .height = 5, .channels = 3};
    c.pixels = malloc(7 * 5 * 3);
    for (int i = 0; i < 35; i++) {
        c.pixels[3 * i] = 255, c.pixels[3 * i + 1] = 128, c.pixels[3 * i + 2] = 1;
    }
    CHECK_OK(bl_image_resize(&c, 3, 11, &out));
    int off = 0;
    for (int i = 0; out.pixels && i < 33; i++) {
        const uint8_t *q = out.pixels + 3 * i;
        off += q[0] != 255 || q[1] != 128 || q[2] != 1;
    }
    CHECK(off == 0);
    bl_image_free(&out);

    /* When the height shrinks far more than the width, Pillow 13 runs the vertical pass first;
     * through the 8-bit intermediate that changes low bits. Expected bytes from Pillow 13.0.0:
     * Image "L" 5x12 with pixel i = (37 i + 11 (i / 5)) % 256, resize((4, 3), BILINEAR). */
    bl_image tall = {.width = 5, .height = 12, .channels = 1};
    tall.pixels = malloc(60);
    for (int i = 0; i < 60; i++) tall.pixels[i] = (uint8_t)((i * 37 + 11 * (i / 5)) % 256);
    CHECK_OK(bl_image_resize(&tall, 4, 3, &out));
    const uint8_t pillow[12] = {115, 128, 129, 124, 125, 139, 117, 131, 132, 127, 128, 106};
    CHECK(out.pixels && memcmp(out.pixels, pillow, 12) == 0);
    bl_image_free(&out);
    bl_image_free(&tall);
    /* The usual order (horizontal first), shrinking 9x7 -> 4x3 and mixed 9x7 -> 13x4. */
    bl_image wide = {.width = 9, .height = 7, .channels = 1};
    wide.pixels = malloc(63);
    for (int i = 0; i < 63; i++) wide.pixels[i] = (uint8_t)((i * 37 + 11 * (i / 9)) % 256);
    CHECK_OK(bl_image_resize(&wide, 4, 3, &out));
    const uint8_t pillow_small[12] = {106, 142, 121, 103, 111, 133, 134, 114, 114, 108, 138, 133};
    CHECK(out.pixels && memcmp(out.pixels, pillow_small, 12) == 0);
    bl_image_free(&out);
    CHECK_OK(bl_image_resize(&wide, 13, 4, &out));
    const uint8_t pillow_mixed[52] = {46,  66,  92,  117, 135, 156, 182, 131, 123, 139, 71,  66,  86,
                                      111, 131, 157, 182, 126, 100, 126, 116, 126, 146, 122, 131, 151,
                                      89,  109, 123, 113, 135, 160, 186, 120, 104, 124, 100, 109, 129,
                                      92,  112, 112, 62,  79,  104, 130, 147, 169, 185, 117, 112, 132};
    CHECK(out.pixels && memcmp(out.pixels, pillow_mixed, 52) == 0);
    bl_image_free(&out);
    bl_image_free(&wide);

    /* Shorter side to 100: int(100 * long / short). */
    bl_image big = {.width = 333, .height = 250, .channels = 3};
    big.pixels = calloc(333 * 250, 3);
    CHECK_OK(bl_image_resize_shorter(&big, 100, &out));
    CHECK(out.width == 133 && out.height == 100);
    bl_image_free(&out);
    big.width = 250, big.height = 333;
    CHECK_OK(bl_image_resize_shorter(&big, 100, &out));
    CHECK(out.width == 100 && out.height == 133);
    bl_image_free(&out);
    bl_image_free(&big);

    /* Centre crop offsets round half to even, like Python's round(). */
    bl_image grid = {.width = 6, .height = 5, .channels = 1};
    grid.pixels = malloc(30);
    for (int i = 0; i < 30; i++) grid.pixels[i] = (uint8_t)i;
    CHECK_OK(bl_image_center_crop(&grid, 1, 2, &out)); /* top round(1.5) = 2, left round(2.5) = 2 */
    CHECK(out.width == 1 && out.height == 2 && out.pixels && out.pixels[0] == 2 * 6 + 2 &&
          out.pixels[1] == 3 * 6 + 2);
    bl_image_free(&out);
    CHECK_OK(bl_image_center_crop(&grid, 3, 3, &out)); /* top 1, left round(1.5) = 2 */
    CHECK(out.pixels && out.pixels[0] == 1 * 6 + 2);
    bl_image_free(&out);
    CHECK_ERR(bl_image_center_crop(&grid, 7, 1, &out), BL_ERR_INVALID_ARG, "does not fit");
    bl_image_free(&grid);
    CHECK_ERR(bl_image_resize(&c, 0, 3, &out), BL_ERR_INVALID_ARG, "to 0x3");
    bl_image_free(&c);
}

static void test_imagenet_preprocessing(void) {
#ifndef BEAMLET_HAVE_PNG
    SKIP("built without libpng");
#else
    char p[256];
    /* A constant 300x260 image: whatever the resize, every value is the normalized colour. */
    int w = 300, h = 260;
    uint8_t *px = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h; i++) px[3 * i] = 255, px[3 * i + 1] = 128, px[3 * i + 2] = 0;
    CHECK_OK(bl_png_write_u8(tmp_path(p, sizeof p, "flat.png"), w, h, 3, px));
    float *out = malloc(sizeof(float) * 3 * 224 * 224);
    CHECK_OK(bl_image_load_imagenet(p, 256, 224, out));
    const float want[3] = {(1.0f - 0.485f) / 0.229f, (128 / 255.0f - 0.456f) / 0.224f,
                           (0.0f - 0.406f) / 0.225f};
    int off = 0;
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 224 * 224; i++) off += fabsf(out[c * 224 * 224 + i] - want[c]) > 1e-6f;
    CHECK(off == 0);
    free(px);
    /* No resize (the shorter side already 4), a 2x2 centre crop, values by hand. */
    uint8_t small[6 * 4 * 3];
    for (int i = 0; i < 72; i++) small[i] = (uint8_t)(i * 3);
    CHECK_OK(bl_png_write_u8(tmp_path(p, sizeof p, "small.png"), 6, 4, 3, small));
    CHECK_OK(bl_image_load_imagenet(p, 4, 2, out));
    /* top 1, left 2: (1, 2) is pixel 8; (2, 3) is pixel 15. */
    CHECK_NEAR(out[0], (small[8 * 3] / 255.0 - 0.485) / 0.229, 1e-6);
    CHECK_NEAR(out[4 + 3], (small[15 * 3 + 1] / 255.0 - 0.456) / 0.224, 1e-6);
    CHECK_NEAR(out[8 + 1], (small[9 * 3 + 2] / 255.0 - 0.406) / 0.225, 1e-6);
    CHECK_ERR(bl_image_load_imagenet(p, 2, 4, out), BL_ERR_INVALID_ARG, "crop <= resize");
    /* The same file's bytes, decoded from memory, give the same floats bit for bit. */
    void *bytes;
    size_t size;
    CHECK_OK(bl_file_read_all(p, &bytes, &size));
    float from_bytes[3 * 2 * 2];
    CHECK_OK(bl_image_load_imagenet(p, 4, 2, out));
    CHECK_OK(bl_image_decode_imagenet(bytes, size, "small.png", 4, 2, from_bytes));
    CHECK(memcmp(out, from_bytes, sizeof from_bytes) == 0);
    CHECK_ERR(bl_image_decode_imagenet(bytes, size / 2, "cut.png", 4, 2, from_bytes), BL_ERR_FORMAT,
              "cut.png");
    CHECK_ERR(bl_image_decode_imagenet(bytes, size, "small.png", 2, 4, from_bytes), BL_ERR_INVALID_ARG,
              "small.png: resize 2, crop 4");
    free(bytes);
    free(out);
#endif
}

/* ---- image folders --------------------------------------------------------------------------- */

static void touch_png(const char *root, const char *rel) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    uint8_t px[3] = {1, 2, 3};
#ifdef BEAMLET_HAVE_PNG
    CHECK_OK(bl_png_write_u8(p, 1, 1, 3, px));
#else
    write_file(p, px, 3);
#endif
}

static void test_image_folder(void) {
    char root[256], p[512];
    tmp_path(root, sizeof root, "photos");
    mkdir(root, 0755);
    const char *dirs[] = {"dog", "cat", "cat/sub", "cat-b", ".hidden"};
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/%s", root, dirs[i]);
        mkdir(p, 0755);
    }
    touch_png(root, "dog/x.png");
    touch_png(root, "cat/b.png");
    touch_png(root, "cat/a.JPG");
    touch_png(root, "cat/sub/c.PNG");
    touch_png(root, "cat-b/z.jpeg");
    touch_png(root, ".hidden/h.png");
    touch_png(root, "cat/.h.png");
    snprintf(p, sizeof p, "%s/cat/notes.txt", root);
    write_file(p, "hi", 2);
    /* A link back up must not loop forever. */
    snprintf(p, sizeof p, "%s/cat/sub/up", root);
    CHECK(symlink("..", p) == 0);

    bl_image_folder *f;
    CHECK_OK(bl_image_folder_open(root, &f));
    if (!f) return;
    CHECK(bl_image_folder_num_classes(f) == 3);
    CHECK(strcmp(bl_image_folder_class_name(f, 0), "cat") == 0);
    CHECK(strcmp(bl_image_folder_class_name(f, 1), "cat-b") == 0);
    CHECK(strcmp(bl_image_folder_class_name(f, 2), "dog") == 0);
    CHECK(bl_image_folder_class_name(f, 3) == NULL);
    const char *want[] = {"cat/a.JPG", "cat/b.png", "cat/sub/c.PNG", "cat-b/z.jpeg", "dog/x.png"};
    const int cls[] = {0, 0, 0, 1, 2};
    CHECK(bl_image_folder_count(f) == 5);
    for (int i = 0; i < 5 && i < bl_image_folder_count(f); i++) {
        snprintf(p, sizeof p, "%s/%s", root, want[i]);
        CHECK_MSG(strcmp(bl_image_folder_path(f, i), p) == 0, "item %d: %s", i, bl_image_folder_path(f, i));
        CHECK(bl_image_folder_class(f, i) == cls[i]);
    }
    CHECK(bl_image_folder_skipped(f) == 1); /* notes.txt */
    CHECK(bl_image_folder_path(f, 5) == NULL && bl_image_folder_class(f, -1) == -1);
    bl_image_folder_free(f);

    /* Flat: everything under the root, no classes; "cat/sub" sorts after "cat-b" as a
     * folder path does in torchvision's sorted(os.walk()). */
    touch_png(root, "top.png");
    CHECK_OK(bl_image_folder_open(root, &f)); /* an image at the root: auto picks flat */
    if (f) {
        CHECK(bl_image_folder_num_classes(f) == 0 && bl_image_folder_count(f) == 6);
        CHECK(bl_image_folder_class(f, 0) == -1);
        snprintf(p, sizeof p, "%s/top.png", root);
        CHECK(strcmp(bl_image_folder_path(f, 0), p) == 0);
        snprintf(p, sizeof p, "%s/cat-b/z.jpeg", root);
        CHECK(strcmp(bl_image_folder_path(f, 3), p) == 0);
        snprintf(p, sizeof p, "%s/cat/sub/c.PNG", root);
        CHECK(strcmp(bl_image_folder_path(f, 4), p) == 0);
        bl_image_folder_free(f);
    }
    CHECK_OK(bl_image_folder_open_mode(root, BL_IMAGE_FOLDER_CLASSES, &f));
    CHECK(f && bl_image_folder_count(f) == 5);
    bl_image_folder_free(f);
    snprintf(p, sizeof p, "%s/empty", root);
    mkdir(p, 0755);
    CHECK_ERR(bl_image_folder_open_mode(root, BL_IMAGE_FOLDER_CLASSES, &f), BL_ERR_NOT_FOUND,
              "class folder 'empty' holds no .jpg, .jpeg or .png files");
    CHECK(f == NULL);
    CHECK_ERR(bl_image_folder_open(p, &f), BL_ERR_NOT_FOUND, "no .jpg, .jpeg or .png files");
    CHECK_ERR(bl_image_folder_open("/nonexistent/photos", &f), BL_ERR_NOT_FOUND, "not a folder");
}

/* ---- sample grids ---------------------------------------------------------------------------- */

static void test_sample_grid(void) {
#ifndef BEAMLET_HAVE_PNG
    SKIP("built without libpng");
#else
    bl_dataset ds = {.count = 20, .channels = 1, .height = 28, .width = 28, .num_classes = 10};
    ds.images = malloc(20 * 784);
    ds.labels = calloc(20, 1);
    for (int i = 0; i < 20 * 784; i++) ds.images[i] = (uint8_t)(i / 784 * 10 + 5);
    char p[256];
    CHECK_OK(bl_dataset_sample_grid_png(&ds, tmp_path(p, sizeof p, "grid.png"), 2, 3, 7));
    bl_image img;
    CHECK_OK(bl_image_read(p, &img));
    CHECK(img.width == 3 * 28 + 4 * 2 && img.height == 2 * 28 + 3 * 2);
    /* Each cell is one whole image: constant inside, and six different images. */
    int seen[20] = {0}, cells = 0;
    for (int r = 0; img.pixels && r < 2; r++)
        for (int q = 0; q < 3; q++) {
            int y0 = 2 + r * 30, x0 = 2 + q * 30;
            uint8_t v = img.pixels[((size_t)y0 * img.width + x0) * 3];
            int i = (v - 5) / 10;
            bool flat = true;
            for (int y = 0; y < 28; y++)
                for (int x = 0; x < 28; x++)
                    flat &= img.pixels[((size_t)(y0 + y) * img.width + x0 + x) * 3] == v;
            CHECK(flat && (v - 5) % 10 == 0 && i < 20);
            if (i >= 0 && i < 20 && !seen[i]++) cells++;
        }
    CHECK(cells == 6);
    /* The same seed draws the same grid. */
    void *a, *b;
    size_t na, nb;
    CHECK_OK(bl_file_read_all(p, &a, &na));
    CHECK_OK(bl_dataset_sample_grid_png(&ds, p, 2, 3, 7));
    CHECK_OK(bl_file_read_all(p, &b, &nb));
    CHECK(na == nb && memcmp(a, b, na) == 0);
    free(a);
    free(b);
    bl_image_free(&img);
    bl_dataset_free(&ds);
#endif
}

int main(void) {
    snprintf(tmp_root, sizeof tmp_root, "/tmp/bl_images_XXXXXX");
    if (!mkdtemp(tmp_root)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_png_round_trip);
    RUN(test_png_kinds_like_pil);
    RUN(test_jpeg_decode);
    RUN(test_undecodable);
    RUN(test_pixel_budget);
    RUN(test_image_mutations);
    RUN(test_resize_hand_computed);
    RUN(test_imagenet_preprocessing);
    RUN(test_image_folder);
    RUN(test_sample_grid);
    nftw(tmp_root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return bl_test_finish();
}
