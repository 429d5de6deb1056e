/* Images: JPEG and PNG decoding to 8-bit RGB, the resize and centre crop torchvision applies to
 * PIL images (so a torchvision-trained model sees the pixels it was trained on), ImageNet
 * normalization, and a PNG writer for sample grids.
 *
 * libjpeg and libpng report errors by calling a handler that must not return; we longjmp from
 * it back into the decode function that armed setjmp, and keep every object that lives across
 * the jump on the heap behind a pointer that is set before setjmp and never changed, so nothing
 * the C standard calls indeterminate after a longjmp is ever read. */
#include "beamlet/datasets.h"

#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef BEAMLET_HAVE_JPEG
#include <jerror.h>
#include <jpeglib.h>
#endif
#ifdef BEAMLET_HAVE_PNG
#include <png.h>
#endif

/* No image this code makes (resized, cropped, a sample grid) may exceed this: larger sizes come
 * from a wrong argument. What a *decoded* file may declare is the smaller, settable budget below. */
#define MAX_PIXELS ((int64_t)1 << 28)

/* The decode budget: 0 until first read (then the environment's or the default). A file's
 * header is checked against it before any pixel memory is allocated, so a few hundred bytes
 * declaring a huge image cost nothing. */
static _Atomic int64_t max_decode_pixels;

int64_t bl_image_max_pixels(void) {
    int64_t v = max_decode_pixels;
    if (v > 0) return v;
    v = BL_IMAGE_MAX_PIXELS_DEFAULT;
    const char *env = getenv("BEAMLET_MAX_IMAGE_PIXELS");
    if (env && *env) {
        char *end;
        long long n = strtoll(env, &end, 10);
        if (*end == '\0' && n > 0 && n <= MAX_PIXELS) {
            v = n;
        } else {
            bl_log_warn("BEAMLET_MAX_IMAGE_PIXELS=%s is not a pixel count in 1..%lld; using %lld", env,
                        (long long)MAX_PIXELS, (long long)v);
        }
    }
    max_decode_pixels = v;
    return v;
}

bl_status bl_image_set_max_pixels(int64_t pixels) {
    if (pixels <= 0 || pixels > MAX_PIXELS)
        return bl_error(BL_ERR_INVALID_ARG, "image pixel budget %lld: must be in 1..%lld", (long long)pixels,
                        (long long)MAX_PIXELS);
    max_decode_pixels = pixels;
    return BL_OK;
}

/* The error for a file whose header declares more pixels than the budget. */
static bl_status over_budget(const char *name, const char *kind, uint64_t w, uint64_t h) {
    return bl_error(BL_ERR_FORMAT,
                    "%s: %llux%llu %s declares %llu pixels, over the image pixel budget of %lld "
                    "(BEAMLET_MAX_IMAGE_PIXELS or --max_image_pixels raises it)",
                    name, (unsigned long long)w, (unsigned long long)h, kind, (unsigned long long)(w * h),
                    (long long)bl_image_max_pixels());
}

const float bl_imagenet_mean[3] = {0.485f, 0.456f, 0.406f};
const float bl_imagenet_std[3] = {0.229f, 0.224f, 0.225f};

void bl_image_free(bl_image *img) {
    if (!img) return;
    free(img->pixels);
    memset(img, 0, sizeof *img);
}

static bl_status image_alloc(bl_image *img, int width, int height, int channels) {
    memset(img, 0, sizeof *img);
    if (width <= 0 || height <= 0 || (int64_t)width * height > MAX_PIXELS) {
        return bl_error(BL_ERR_INVALID_ARG, "image: %dx%d is empty or larger than %lld pixels", width, height,
                        (long long)MAX_PIXELS);
    }
    img->pixels = malloc((size_t)width * height * channels);
    if (!img->pixels) {
        return bl_error(BL_ERR_OUT_OF_MEMORY, "image: cannot allocate %dx%dx%d", width, height, channels);
    }
    img->width = width;
    img->height = height;
    img->channels = channels;
    return BL_OK;
}

/* ---- JPEG ------------------------------------------------------------------------------------ */

#ifdef BEAMLET_HAVE_JPEG
typedef struct jpeg_ctx {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_mgr err;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
    uint8_t *pixels;
} jpeg_ctx;

static void jpeg_on_error(j_common_ptr cinfo) {
    jpeg_ctx *ctx = cinfo->client_data;
    cinfo->err->format_message(cinfo, ctx->message);
    longjmp(ctx->jump, 1);
}

/* libjpeg only warns on a truncated file and fills the rest with gray; PIL refuses such files,
 * and a half-gray photo must not be classified as if it were whole. Other warnings (stray bytes
 * between markers and the like) are harmless and PIL ignores them too. */
static void jpeg_on_message(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
        jpeg_ctx *ctx = cinfo->client_data;
        cinfo->err->format_message(cinfo, ctx->message);
        snprintf(ctx->message + strlen(ctx->message), sizeof ctx->message - strlen(ctx->message),
                 " (truncated file)");
        longjmp(ctx->jump, 1);
    }
}

static bl_status decode_jpeg(const unsigned char *data, size_t size, const char *name, bl_image *out) {
    jpeg_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return bl_error(BL_ERR_OUT_OF_MEMORY, "%s: no memory for the JPEG decoder", name);
    ctx->cinfo.err = jpeg_std_error(&ctx->err);
    ctx->err.error_exit = jpeg_on_error;
    ctx->err.emit_message = jpeg_on_message;
    ctx->cinfo.client_data = ctx;
    if (setjmp(ctx->jump)) {
        bl_status s = bl_error(BL_ERR_FORMAT, "%s: libjpeg: %s", name, ctx->message);
        jpeg_destroy_decompress(&ctx->cinfo);
        free(ctx->pixels);
        free(ctx);
        return s;
    }
    jpeg_create_decompress(&ctx->cinfo);
    jpeg_mem_src(&ctx->cinfo, data, (unsigned long)size);
    jpeg_read_header(&ctx->cinfo, TRUE);
    J_COLOR_SPACE cs = ctx->cinfo.jpeg_color_space;
    if (cs == JCS_CMYK || cs == JCS_YCCK) {
        jpeg_destroy_decompress(&ctx->cinfo);
        free(ctx);
        return bl_error(BL_ERR_UNSUPPORTED,
                        "%s: CMYK JPEG, which beamlet does not convert to "
                        "RGB",
                        name);
    }
    /* Checked before jpeg_start_decompress, which already allocates for the whole image when
     * the file is progressive. */
    int64_t declared = (int64_t)ctx->cinfo.image_width * ctx->cinfo.image_height;
    if (declared > bl_image_max_pixels()) {
        bl_status s = over_budget(name, "JPEG", ctx->cinfo.image_width, ctx->cinfo.image_height);
        jpeg_destroy_decompress(&ctx->cinfo);
        free(ctx);
        return s;
    }
    ctx->cinfo.out_color_space = JCS_RGB;
    jpeg_start_decompress(&ctx->cinfo);
    int w = (int)ctx->cinfo.output_width, h = (int)ctx->cinfo.output_height;
    if (ctx->cinfo.output_components != 3) {
        bl_status s = bl_error(BL_ERR_INTERNAL, "%s: libjpeg gave %d components for RGB", name,
                               ctx->cinfo.output_components);
        jpeg_destroy_decompress(&ctx->cinfo);
        free(ctx);
        return s;
    }
    ctx->pixels = malloc((size_t)w * h * 3);
    if (!ctx->pixels) {
        jpeg_destroy_decompress(&ctx->cinfo);
        free(ctx);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "%s: cannot allocate %dx%d RGB", name, w, h);
    }
    while (ctx->cinfo.output_scanline < ctx->cinfo.output_height) {
        JSAMPROW row = ctx->pixels + (size_t)ctx->cinfo.output_scanline * w * 3;
        jpeg_read_scanlines(&ctx->cinfo, &row, 1);
    }
    jpeg_finish_decompress(&ctx->cinfo);
    jpeg_destroy_decompress(&ctx->cinfo);
    out->width = w;
    out->height = h;
    out->channels = 3;
    out->pixels = ctx->pixels;
    free(ctx);
    return BL_OK;
}
#endif

/* ---- PNG ------------------------------------------------------------------------------------- */

#ifdef BEAMLET_HAVE_PNG
typedef struct png_ctx {
    png_structp png;
    png_infop info;
    char message[256];
    const unsigned char *data; /* reading: the file in memory */
    size_t size, pos;
    unsigned char *buf; /* writing: the encoded file, growing */
    size_t cap;
    bool oom;
    uint8_t *pixels;
    png_bytep *rows;
} png_ctx;

static void png_on_error(png_structp png, png_const_charp msg) {
    png_ctx *ctx = png_get_error_ptr(png);
    snprintf(ctx->message, sizeof ctx->message, "%s", msg);
    png_longjmp(png, 1);
}

/* Warnings (an odd colour profile, a bad ancillary chunk CRC) leave the pixels intact. */
static void png_on_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

static void png_read_mem(png_structp png, png_bytep dst, size_t n) {
    png_ctx *ctx = png_get_io_ptr(png);
    if (n > ctx->size - ctx->pos) {
        char msg[96];
        snprintf(msg, sizeof msg, "truncated at offset %zu (%zu more bytes needed)", ctx->size,
                 n - (ctx->size - ctx->pos));
        png_error(png, msg);
    }
    memcpy(dst, ctx->data + ctx->pos, n);
    ctx->pos += n;
}

static void png_ctx_free(png_ctx *ctx, bool reading) {
    if (reading) {
        png_destroy_read_struct(&ctx->png, ctx->info ? &ctx->info : NULL, NULL);
    } else {
        png_destroy_write_struct(&ctx->png, ctx->info ? &ctx->info : NULL);
    }
    free(ctx->rows);
    free(ctx->pixels);
    free(ctx->buf);
    free(ctx);
}

static bl_status decode_png(const unsigned char *data, size_t size, const char *name, bl_image *out) {
    png_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return bl_error(BL_ERR_OUT_OF_MEMORY, "%s: no memory for the PNG decoder", name);
    ctx->data = data;
    ctx->size = size;
    ctx->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, ctx, png_on_error, png_on_warning);
    if (ctx->png) ctx->info = png_create_info_struct(ctx->png);
    if (!ctx->png || !ctx->info) {
        png_ctx_free(ctx, true);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "%s: no memory for the PNG decoder", name);
    }
    if (setjmp(png_jmpbuf(ctx->png))) {
        bl_status s = bl_error(BL_ERR_FORMAT, "%s: libpng: %s", name, ctx->message);
        png_ctx_free(ctx, true);
        return s;
    }
    png_set_read_fn(ctx->png, ctx, png_read_mem);
    png_set_user_limits(ctx->png, 1u << 20, 1u << 20);
    png_read_info(ctx->png, ctx->info);
    png_uint_32 w = png_get_image_width(ctx->png, ctx->info);
    png_uint_32 h = png_get_image_height(ctx->png, ctx->info);
    int depth = png_get_bit_depth(ctx->png, ctx->info);
    int type = png_get_color_type(ctx->png, ctx->info);
    if ((int64_t)w * h > bl_image_max_pixels()) {
        bl_status s = over_budget(name, "PNG", w, h);
        png_ctx_free(ctx, true);
        return s;
    }
    /* PIL opens 16-bit gray as "I;16" and its RGB conversion clips at 255 instead of keeping
     * the high byte as for every other 16-bit type; a model trained through PIL saw that. */
    bool gray16 = depth == 16 && type == PNG_COLOR_TYPE_GRAY;
    if (depth == 16 && !gray16) png_set_strip_16(ctx->png);
    if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(ctx->png);
    if (type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(ctx->png);
    /* Expanding a palette also turns a tRNS chunk into alpha; PIL's RGB drops it either way. */
    if ((type & PNG_COLOR_MASK_ALPHA) || png_get_valid(ctx->png, ctx->info, PNG_INFO_tRNS)) {
        png_set_strip_alpha(ctx->png);
    }
    if ((type == PNG_COLOR_TYPE_GRAY || type == PNG_COLOR_TYPE_GRAY_ALPHA) && !gray16) {
        png_set_gray_to_rgb(ctx->png);
    }
    png_set_interlace_handling(ctx->png);
    png_read_update_info(ctx->png, ctx->info);
    size_t row_bytes = (size_t)w * (gray16 ? 2 : 3);
    if (png_get_rowbytes(ctx->png, ctx->info) != row_bytes) {
        png_error(ctx->png, "unexpected row layout after conversion to RGB");
    }
    ctx->pixels = malloc((size_t)w * h * 3);
    ctx->rows = malloc(sizeof *ctx->rows * h);
    if (!ctx->pixels || !ctx->rows) png_error(ctx->png, "out of memory");
    for (png_uint_32 y = 0; y < h; y++) ctx->rows[y] = ctx->pixels + (size_t)y * row_bytes;
    png_read_image(ctx->png, ctx->rows);
    png_read_end(ctx->png, NULL);
    if (gray16) {
        /* Widen in place from the end: sample i is read at 2i before anything lands there. */
        for (size_t i = (size_t)w * h; i-- > 0;) {
            unsigned v = (unsigned)ctx->pixels[2 * i] << 8 | ctx->pixels[2 * i + 1];
            uint8_t g = v > 255 ? 255 : (uint8_t)v;
            ctx->pixels[3 * i] = ctx->pixels[3 * i + 1] = ctx->pixels[3 * i + 2] = g;
        }
    }
    out->width = (int)w;
    out->height = (int)h;
    out->channels = 3;
    out->pixels = ctx->pixels;
    ctx->pixels = NULL;
    png_ctx_free(ctx, true);
    return BL_OK;
}

static void png_write_mem(png_structp png, png_bytep src, size_t n) {
    png_ctx *ctx = png_get_io_ptr(png);
    if (n > ctx->cap - ctx->size) {
        size_t cap = ctx->cap ? ctx->cap : 1 << 16;
        while (cap - ctx->size < n) cap *= 2;
        unsigned char *grown = realloc(ctx->buf, cap);
        if (!grown) {
            ctx->oom = true;
            png_error(png, "out of memory for the encoded PNG");
        }
        ctx->buf = grown;
        ctx->cap = cap;
    }
    memcpy(ctx->buf + ctx->size, src, n);
    ctx->size += n;
}

static void png_flush_mem(png_structp png) { (void)png; }
#endif

/* ---- decode entry points --------------------------------------------------------------------- */

bl_status bl_image_decode(const void *data, size_t size, const char *name, bl_image *out) {
    if (!out) return bl_error(BL_ERR_INVALID_ARG, "bl_image_decode: NULL output");
    memset(out, 0, sizeof *out);
    if (!name) name = "image";
    const unsigned char *p = data;
    if (!p || size == 0) return bl_error(BL_ERR_FORMAT, "%s: empty file", name);
    static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (size >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff) {
#ifdef BEAMLET_HAVE_JPEG
        return decode_jpeg(p, size, name, out);
#else
        return bl_error(BL_ERR_UNSUPPORTED,
                        "%s: a JPEG, and this build has no libjpeg (install "
                        "libjpeg-turbo's development package and rebuild)",
                        name);
#endif
    }
    if (size >= 8 && memcmp(p, png_sig, 8) == 0) {
#ifdef BEAMLET_HAVE_PNG
        return decode_png(p, size, name, out);
#else
        return bl_error(BL_ERR_UNSUPPORTED,
                        "%s: a PNG, and this build has no libpng (install "
                        "libpng's development package and rebuild)",
                        name);
#endif
    }
    char first[16] = "";
    for (size_t i = 0, n = 0; i < 4 && i < size; i++) {
        n += (size_t)snprintf(first + n, sizeof first - n, "%s%02x", i ? " " : "", p[i]);
    }
    return bl_error(BL_ERR_FORMAT, "%s: not a JPEG or PNG file (first bytes %s)", name, first);
}

bl_status bl_image_read(const char *path, bl_image *out) {
    if (!path || !out) return bl_error(BL_ERR_INVALID_ARG, "bl_image_read: NULL argument");
    memset(out, 0, sizeof *out);
    void *data;
    size_t size;
    BL_TRY(bl_file_read_all(path, &data, &size));
    bl_status s = bl_image_decode(data, size, path, out);
    free(data);
    return s;
}

/* ---- resize (Pillow's Resample.c, bilinear, 8 bits per channel) ------------------------------ */

#define PRECISION_BITS (32 - 8 - 2)

/* Per output position: the first input index, the number of taps and their fixed-point
 * weights. The double arithmetic follows Pillow's precompute_coeffs step for step, so the
 * rounded weights, and with them the output bytes, are the same. */
typedef struct resample_coeffs {
    int ksize;
    int *bounds; /* (out, 2): first, count */
    int32_t *k;  /* (out, ksize) */
} resample_coeffs;

static void coeffs_free(resample_coeffs *rc) {
    free(rc->bounds);
    free(rc->k);
    rc->bounds = NULL;
    rc->k = NULL;
}

static double bilinear_filter(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static bl_status precompute_coeffs(int in_size, int out_size, resample_coeffs *rc) {
    double scale = (double)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    double *kk = malloc(sizeof *kk * (size_t)out_size * ksize);
    rc->bounds = malloc(sizeof *rc->bounds * 2 * (size_t)out_size);
    rc->k = malloc(sizeof *rc->k * (size_t)out_size * ksize);
    rc->ksize = ksize;
    if (!kk || !rc->bounds || !rc->k) {
        free(kk);
        coeffs_free(rc);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "resize: no memory for %d weights", out_size);
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale;
        double ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double *k = kk + (size_t)xx * ksize;
        int x;
        for (x = 0; x < xmax; x++) {
            double w = bilinear_filter((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++) {
            if (ww != 0.0) k[x] /= ww;
        }
        for (; x < ksize; x++) k[x] = 0;
        rc->bounds[xx * 2] = xmin;
        rc->bounds[xx * 2 + 1] = xmax;
    }
    for (size_t i = 0; i < (size_t)out_size * ksize; i++) {
        rc->k[i] = kk[i] < 0 ? (int32_t)(-0.5 + kk[i] * (1 << PRECISION_BITS))
                             : (int32_t)(0.5 + kk[i] * (1 << PRECISION_BITS));
    }
    free(kk);
    return BL_OK;
}

static uint8_t clip8(int32_t in) {
    if (in >= (1 << PRECISION_BITS << 8)) return 255;
    if (in <= 0) return 0;
    return (uint8_t)(in >> PRECISION_BITS);
}

static void resample_horizontal(const bl_image *in, bl_image *out, const resample_coeffs *rc) {
    int c = in->channels;
    for (int y = 0; y < out->height; y++) {
        const uint8_t *src = in->pixels + (size_t)y * in->width * c;
        uint8_t *dst = out->pixels + (size_t)y * out->width * c;
        for (int x = 0; x < out->width; x++) {
            int xmin = rc->bounds[x * 2], n = rc->bounds[x * 2 + 1];
            const int32_t *k = rc->k + (size_t)x * rc->ksize;
            for (int ch = 0; ch < c; ch++) {
                int32_t ss = 1 << (PRECISION_BITS - 1);
                for (int i = 0; i < n; i++) ss += src[(xmin + i) * c + ch] * k[i];
                dst[x * c + ch] = clip8(ss);
            }
        }
    }
}

static void resample_vertical(const bl_image *in, bl_image *out, const resample_coeffs *rc) {
    int c = in->channels;
    size_t stride = (size_t)in->width * c;
    for (int y = 0; y < out->height; y++) {
        int ymin = rc->bounds[y * 2], n = rc->bounds[y * 2 + 1];
        const int32_t *k = rc->k + (size_t)y * rc->ksize;
        uint8_t *dst = out->pixels + (size_t)y * stride;
        for (size_t x = 0; x < stride; x++) {
            int32_t ss = 1 << (PRECISION_BITS - 1);
            for (int i = 0; i < n; i++) ss += in->pixels[(size_t)(ymin + i) * stride + x] * k[i];
            dst[x] = clip8(ss);
        }
    }
}

static bl_status image_copy(const bl_image *src, bl_image *out) {
    BL_TRY(image_alloc(out, src->width, src->height, src->channels));
    memcpy(out->pixels, src->pixels, (size_t)src->width * src->height * src->channels);
    return BL_OK;
}

static bl_status check_image(const bl_image *img, const char *what) {
    if (!img || !img->pixels || img->width <= 0 || img->height <= 0 || img->channels <= 0 ||
        img->channels > 4) {
        return bl_error(BL_ERR_INVALID_ARG, "%s: empty or malformed image", what);
    }
    return BL_OK;
}

/* One separable pass along one axis, into a new image. */
static bl_status resample_pass(const bl_image *in, bool horizontal, int size, bl_image *out) {
    resample_coeffs rc = {0};
    BL_TRY(precompute_coeffs(horizontal ? in->width : in->height, size, &rc));
    bl_status s =
        image_alloc(out, horizontal ? size : in->width, horizontal ? in->height : size, in->channels);
    if (s == BL_OK) {
        if (horizontal) {
            resample_horizontal(in, out, &rc);
        } else {
            resample_vertical(in, out, &rc);
        }
    }
    coeffs_free(&rc);
    return s;
}

bl_status bl_image_resize(const bl_image *src, int width, int height, bl_image *out) {
    if (!out) return bl_error(BL_ERR_INVALID_ARG, "resize: NULL output");
    memset(out, 0, sizeof *out);
    BL_TRY(check_image(src, "resize"));
    if (width <= 0 || height <= 0 || (int64_t)width * height > MAX_PIXELS) {
        return bl_error(BL_ERR_INVALID_ARG, "resize: to %dx%d", width, height);
    }
    bool need_h = width != src->width, need_v = height != src->height;
    if (!need_h && !need_v) return image_copy(src, out);
    if (need_h != need_v) return resample_pass(src, need_h, need_h ? width : height, out);
    /* Two passes through an 8-bit intermediate, so the pass order changes the low bit. Pillow
     * (13, Resample.c) runs the vertical pass first only when the height shrinks by more than
     * twice what the width does; older Pillow always ran horizontal first. The two agree for
     * the usual photo-to-256 resize, which shrinks both sides alike. */
    int64_t dh = (int64_t)src->height - height, dw = (int64_t)src->width - width;
    bool horizontal_first = !(dh > 0 && dh > dw * 2);
    bl_image mid;
    BL_TRY(resample_pass(src, horizontal_first, horizontal_first ? width : height, &mid));
    bl_status s = resample_pass(&mid, !horizontal_first, horizontal_first ? height : width, out);
    bl_image_free(&mid);
    return s;
}

bl_status bl_image_resize_shorter(const bl_image *src, int size, bl_image *out) {
    if (!out) return bl_error(BL_ERR_INVALID_ARG, "resize: NULL output");
    memset(out, 0, sizeof *out);
    BL_TRY(check_image(src, "resize"));
    if (size <= 0) return bl_error(BL_ERR_INVALID_ARG, "resize: shorter side %d", size);
    bool wide = src->width >= src->height;
    int64_t shorter = wide ? src->height : src->width, longer = wide ? src->width : src->height;
    /* Python's int(size * long / short): exact product, correctly rounded quotient, truncated. */
    double l = (double)((int64_t)size * longer) / (double)shorter;
    if (l > 65535.0) {
        return bl_error(BL_ERR_INVALID_ARG,
                        "resize: %dx%d with shorter side %d would be %.0f "
                        "pixels long",
                        src->width, src->height, size, l);
    }
    int new_long = (int)l;
    return bl_image_resize(src, wide ? new_long : size, wide ? size : new_long, out);
}

/* Python's round((a - b) / 2.0) for integers: halves go to the even neighbour. */
static int half_round_even(int diff) {
    int h = diff / 2;
    if (diff % 2 == 0) return h;
    return h % 2 == 0 ? h : h + 1;
}

bl_status bl_image_center_crop(const bl_image *src, int width, int height, bl_image *out) {
    if (!out) return bl_error(BL_ERR_INVALID_ARG, "crop: NULL output");
    memset(out, 0, sizeof *out);
    BL_TRY(check_image(src, "crop"));
    if (width <= 0 || height <= 0 || width > src->width || height > src->height) {
        return bl_error(BL_ERR_INVALID_ARG, "crop: %dx%d does not fit in %dx%d", width, height, src->width,
                        src->height);
    }
    int top = half_round_even(src->height - height), left = half_round_even(src->width - width);
    BL_TRY(image_alloc(out, width, height, src->channels));
    size_t row = (size_t)width * src->channels;
    for (int y = 0; y < height; y++) {
        memcpy(out->pixels + y * row, src->pixels + ((size_t)(top + y) * src->width + left) * src->channels,
               row);
    }
    return BL_OK;
}

static bl_status check_imagenet_sizes(const char *name, int resize, int crop) {
    if (crop <= 0 || resize < crop)
        return bl_error(BL_ERR_INVALID_ARG, "%s: resize %d, crop %d (need 0 < crop <= resize)", name, resize,
                        crop);
    return BL_OK;
}

bl_status bl_image_decode_imagenet(const void *data, size_t size, const char *name, int resize, int crop,
                                   float *out) {
    if (!name) name = "image";
    if (!out) return bl_error(BL_ERR_INVALID_ARG, "%s: no output buffer (NULL)", name);
    BL_TRY(check_imagenet_sizes(name, resize, crop));
    bl_image img, resized, cropped;
    BL_TRY(bl_image_decode(data, size, name, &img));
    bl_status s = bl_image_resize_shorter(&img, resize, &resized);
    bl_image_free(&img);
    if (s != BL_OK) return bl_error_context(s, "%s", name);
    s = bl_image_center_crop(&resized, crop, crop, &cropped);
    bl_image_free(&resized);
    if (s != BL_OK) return bl_error_context(s, "%s", name);
    size_t plane = (size_t)crop * crop;
    for (int c = 0; c < 3; c++) {
        float lut[256];
        for (int v = 0; v < 256; v++) {
            lut[v] = ((float)v / 255.0f - bl_imagenet_mean[c]) / bl_imagenet_std[c];
        }
        for (size_t i = 0; i < plane; i++) out[c * plane + i] = lut[cropped.pixels[i * 3 + c]];
    }
    bl_image_free(&cropped);
    return BL_OK;
}

bl_status bl_image_load_imagenet(const char *path, int resize, int crop, float *out) {
    if (!path || !out) return bl_error(BL_ERR_INVALID_ARG, "bl_image_load_imagenet: NULL argument");
    BL_TRY(check_imagenet_sizes(path, resize, crop)); /* before reading a file for nothing */
    void *data;
    size_t size;
    BL_TRY(bl_file_read_all(path, &data, &size));
    bl_status s = bl_image_decode_imagenet(data, size, path, resize, crop, out);
    free(data);
    return s;
}

/* ---- PNG writer and sample grids ------------------------------------------------------------- */

bl_status bl_png_write_u8(const char *path, int width, int height, int channels, const uint8_t *pixels) {
    if (!path || !pixels || width <= 0 || height <= 0 || channels < 1 || channels > 4 ||
        (int64_t)width * height > MAX_PIXELS) {
        return bl_error(BL_ERR_INVALID_ARG, "png: %dx%dx%d image for %s", width, height, channels,
                        path ? path : "(null)");
    }
#ifdef BEAMLET_HAVE_PNG
    static const int types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                                 PNG_COLOR_TYPE_RGB_ALPHA};
    png_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return bl_error(BL_ERR_OUT_OF_MEMORY, "%s: no memory for the PNG encoder", path);
    ctx->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, ctx, png_on_error, png_on_warning);
    if (ctx->png) ctx->info = png_create_info_struct(ctx->png);
    ctx->rows = malloc(sizeof *ctx->rows * (size_t)height);
    if (!ctx->png || !ctx->info || !ctx->rows) {
        png_ctx_free(ctx, false);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "%s: no memory for the PNG encoder", path);
    }
    if (setjmp(png_jmpbuf(ctx->png))) {
        bl_status s =
            bl_error(ctx->oom ? BL_ERR_OUT_OF_MEMORY : BL_ERR_INTERNAL, "%s: libpng: %s", path, ctx->message);
        png_ctx_free(ctx, false);
        return s;
    }
    png_set_write_fn(ctx->png, ctx, png_write_mem, png_flush_mem);
    png_set_IHDR(ctx->png, ctx->info, (png_uint_32)width, (png_uint_32)height, 8, types[channels],
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(ctx->png, ctx->info);
    for (int y = 0; y < height; y++) {
        ctx->rows[y] = (png_bytep)(pixels + (size_t)y * width * channels);
    }
    png_write_image(ctx->png, ctx->rows);
    png_write_end(ctx->png, NULL);
    bl_status s = bl_file_write_atomic(path, ctx->buf, ctx->size);
    png_ctx_free(ctx, false);
    return s;
#else
    return bl_error(BL_ERR_UNSUPPORTED,
                    "%s: this build has no libpng (install libpng's "
                    "development package and rebuild)",
                    path);
#endif
}

#define GRID_GAP 2
#define GRID_BACKGROUND 96 /* mid-dark gray: visible against Fashion-MNIST's black backgrounds */

bl_status bl_dataset_sample_grid_png(const bl_dataset *ds, const char *path, int rows, int cols,
                                     uint64_t seed) {
    if (!ds || !ds->images || ds->count <= 0 || !path || rows <= 0 || cols <= 0 || rows > 256 || cols > 256 ||
        (ds->channels != 1 && ds->channels != 3)) {
        return bl_error(BL_ERR_INVALID_ARG, "sample grid: %dx%d of a %d-channel dataset", rows, cols,
                        ds ? ds->channels : 0);
    }
    int c = ds->channels, h = ds->height, w = ds->width;
    int gw = cols * w + (cols + 1) * GRID_GAP, gh = rows * h + (rows + 1) * GRID_GAP;
    if ((int64_t)gw * gh > MAX_PIXELS) {
        return bl_error(BL_ERR_INVALID_ARG, "sample grid: %dx%d pixels is too large", gw, gh);
    }
    int64_t cells = (int64_t)rows * cols, shown = cells < ds->count ? cells : ds->count;
    int64_t *pick = malloc(sizeof *pick * (size_t)ds->count);
    uint8_t *grid = malloc((size_t)gw * gh * c);
    if (!pick || !grid) {
        free(pick);
        free(grid);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "sample grid: no memory");
    }
    /* The first `shown` steps of a Fisher-Yates shuffle: distinct images, fixed by the seed. */
    bl_rng rng;
    bl_rng_seed(&rng, seed);
    for (int64_t i = 0; i < ds->count; i++) pick[i] = i;
    for (int64_t i = 0; i < shown; i++) {
        int64_t j = i + (int64_t)bl_rng_below(&rng, (uint64_t)(ds->count - i));
        int64_t t = pick[i];
        pick[i] = pick[j];
        pick[j] = t;
    }
    memset(grid, GRID_BACKGROUND, (size_t)gw * gh * c);
    for (int64_t n = 0; n < shown; n++) {
        int r = (int)(n / cols), q = (int)(n % cols);
        int y0 = GRID_GAP + r * (h + GRID_GAP), x0 = GRID_GAP + q * (w + GRID_GAP);
        const uint8_t *img = ds->images + (size_t)pick[n] * c * h * w;
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                for (int k = 0; k < c; k++) {
                    grid[((size_t)(y0 + y) * gw + x0 + x) * c + k] = img[((size_t)k * h + y) * w + x];
                }
            }
        }
    }
    free(pick);
    bl_status s = bl_png_write_u8(path, gw, gh, c, grid);
    free(grid);
    return s;
}
