/* beamlet datasets: the image data of the learning path, read from the formats it ships in.
 *
 * Fashion-MNIST (IDX files, gzipped or plain; the default, Debian's `dataset-fashion-mnist`),
 * CIFAR-10 (its binary batches), folders of JPEG/PNG photos for inference, float batches with
 * normalization and seeded augmentation for training, and a PNG writer for sample grids. This is
 * the io layer: it knows files and pixels, nothing of tensors, models or pipelines. Every reader
 * is strict: a truncated, oversized or corrupt file is an error naming the file, the record and
 * the byte offset, never a crash or a silently short dataset.
 *
 * How 28x28x1 Fashion-MNIST meets the models: as ONE input channel, centre zero-padded to 32x32
 * (2 pixels each side, padding applied to raw pixel value 0 before normalization, as
 * torchvision's Pad does on a PIL image), so ResNet's CIFAR stem (3x3 conv, no max-pool) applies
 * unchanged apart from in_channels = 1. Replicating gray to three channels would triple the first
 * layer's input bandwidth for no information; a 3-channel model can still be fed by setting
 * bl_batch_transform.out_channels = 3 (the gray plane is replicated). The preset
 * bl_batch_transform_fashion_mnist() encodes the decision; the PyTorch baseline in DESIGN.md
 * (93.9% after 15 epochs) was measured with this input layout. */
#ifndef BEAMLET_DATASETS_H
#define BEAMLET_DATASETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "beamlet/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- in-memory labelled image datasets ------------------------------------------------------ */

#define BL_DATASET_SOURCE_MAX 512

typedef struct bl_dataset {
    int64_t count;
    int channels, height, width;
    uint8_t *images; /* (count, C, H, W) u8, planar like a tensor, not interleaved */
    uint8_t *labels; /* (count) in [0, num_classes) */
    int num_classes;
    const char *const *class_names;     /* (num_classes), static strings, never freed */
    char source[BL_DATASET_SOURCE_MAX]; /* where it was read from, for logs and errors */
} bl_dataset;

/* Frees the pixel and label buffers and zeroes the struct; safe on a zeroed struct. */
void bl_dataset_free(bl_dataset *ds);

/* ---- IDX (the MNIST family's format) -------------------------------------------------------- */

/* IDX element types, the third magic byte. */
typedef enum bl_idx_type {
    BL_IDX_U8 = 0x08,
    BL_IDX_I8 = 0x09,
    BL_IDX_I16 = 0x0B,
    BL_IDX_I32 = 0x0C,
    BL_IDX_F32 = 0x0D,
    BL_IDX_F64 = 0x0E,
} bl_idx_type;

#define BL_IDX_MAX_DIMS 8

typedef struct bl_idx {
    bl_idx_type type;
    int ndim;
    int64_t dims[BL_IDX_MAX_DIMS];
    size_t elem_size;
    size_t size; /* bytes of data: product(dims) * elem_size */
    void *data;  /* (dims...) in host byte order (IDX stores big-endian) */
} bl_idx;

/* Reads an IDX file, gzipped or plain (detected from content, not name). The file must hold
 * exactly the bytes its header declares: short files, trailing bytes, a bad magic, zero or
 * oversized dimensions and gzip corruption are BL_ERR_FORMAT naming the file and the offset
 * (offsets in a gzipped file count uncompressed bytes). BL_ERR_UNSUPPORTED without zlib. */
bl_status bl_idx_read(const char *path, bl_idx *out);
void bl_idx_free(bl_idx *idx);

/* ---- Fashion-MNIST -------------------------------------------------------------------------- */

#define BL_FASHION_MNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"
#define BL_FASHION_MNIST_CLASSES 10
/* Mean and standard deviation of the training pixels scaled to [0, 1]. */
#define BL_FASHION_MNIST_MEAN 0.2860f
#define BL_FASHION_MNIST_STD 0.3530f
extern const char *const bl_fashion_mnist_class_names[BL_FASHION_MNIST_CLASSES];

/* Loads the training (60,000) or test (10,000) split as (N, 1, 28, 28). `dir` NULL means
 * $BEAMLET_FASHION_MNIST, else BL_FASHION_MNIST_DEFAULT_DIR. Files are
 * {train,t10k}-{images-idx3,labels-idx1}-ubyte, each with or without ".gz" (".gz" preferred).
 * Checks both magics, 28x28 images, equal image and label counts and labels < 10. Any count is
 * accepted so that small hand-made files work; the official splits are logged as such. */
bl_status bl_fashion_mnist_load(const char *dir, bool train, bl_dataset *out);

/* ---- CIFAR-10 -------------------------------------------------------------------------------- */

#define BL_CIFAR10_CLASSES 10
#define BL_CIFAR10_RECORDS_PER_FILE 10000 /* in the official files */
#define BL_CIFAR10_MAX_RECORDS (1 << 24)  /* per file: more is taken as a wrong file */
#define BL_CIFAR10_RECORD_BYTES 3073      /* 1 label byte + 3 x 32 x 32 pixel bytes (planar RGB) */
extern const char *const bl_cifar10_class_names[BL_CIFAR10_CLASSES];
/* Per-channel (R, G, B) mean and standard deviation of the training pixels in [0, 1]. */
extern const float bl_cifar10_mean[3];
extern const float bl_cifar10_std[3];

/* Loads data_batch_1..5.bin (train) or test_batch.bin (test) from `dir` (NULL:
 * $BEAMLET_CIFAR10, else ~/.cache/beamlet/cifar-10-batches-bin, where tools/fetch_cifar10.sh
 * unpacks it) as (N, 3, 32, 32). Each file may hold any whole number of records (the official
 * ones hold 10,000: 50,000 train, 10,000 test images); a file ending in a partial record is
 * BL_ERR_FORMAT naming the file, the record index and the byte offset where it starts; an empty
 * file or a label > 9 (file, record, offset) too. Every file is checked before any is read. */
bl_status bl_cifar10_load(const char *dir, bool train, bl_dataset *out);

/* ---- the datasets by name ---------------------------------------------------------------------- */

/* The names flags and training configs use for the datasets above. */
#define BL_DATASET_NAMES "fashion-mnist, cifar10"
bool bl_dataset_known(const char *name);
/* Loads split `train` of the dataset called `name` (dir NULL: its default place; a dataset not
 * found there says how to get it). An unknown name is BL_ERR_INVALID_ARG listing the names. */
bl_status bl_dataset_load(const char *name, const char *dir, bool train, bl_dataset *out);
/* How the dataset's files name a split ("t10k", "test_batch"): for example ids. NULL if unknown. */
const char *bl_dataset_split_name(const char *name, bool train);
/* The dataset's class names (static), or NULL and 0 for an unknown name. */
void bl_dataset_class_names(const char *name, const char *const **names, int *count);

/* ---- float batches and augmentation ---------------------------------------------------------- */

/* What happens to each image on its way from u8 to a normalized float batch, in this order:
 * 1. channels: out_channels equal to the dataset's, or 3 from 1 (gray replicated);
 * 2. centre zero-padding from (H, W) to (out_height, out_width) (0 keeps the size; never
 *    smaller than the image; an odd difference puts the extra row/column at the bottom/right);
 * 3. random crop with `crop_padding` zero pixels on every side, back to the padded size
 *    (torchvision RandomCrop(size, padding)); offsets uniform in [0, 2 * crop_padding];
 * 4. horizontal flip with probability 1/2 when `hflip`;
 * 5. x / 255, then (x - mean[c]) / std[c] when mean and std are given.
 * Padding is raw pixel 0, so padded pixels read -mean/std after normalization, as in torchvision.
 * Random draws come from the caller's rng in a fixed order (crop dy, crop dx, flip, per image),
 * so a seed and the indices fix the batch exactly. */
typedef struct bl_batch_transform {
    int out_channels;          /* 0 = the dataset's */
    int out_height, out_width; /* 0 = the dataset's */
    const float *mean;         /* (out_channels) or NULL */
    const float *std;          /* (out_channels) or NULL */
    int crop_padding;          /* 0 = no random crop; 4 for the CIFAR recipe */
    bool hflip;                /* random horizontal flip */
} bl_batch_transform;

/* The recommended transforms: Fashion-MNIST as 1x32x32 (centre padded) normalized with its
 * mean/std; CIFAR-10 as 3x32x32 with its per-channel mean/std. `train` adds pad-4 random crop
 * and horizontal flip. */
bl_batch_transform bl_batch_transform_fashion_mnist(bool train);
bl_batch_transform bl_batch_transform_cifar10(bool train);
/* The recommended transform of the dataset called `name` (one of the two above). */
bl_status bl_dataset_transform(const char *name, bool train, bl_batch_transform *out);
/* The shape a transform produces from a dataset (checks the transform against it). */
bl_status bl_batch_transform_shape(const bl_dataset *ds, const bl_batch_transform *t, int *channels,
                                   int *height, int *width);

/* Writes images `indices` (n) of `ds` into `out` (n, C', H', W') f32, and their labels into
 * `labels` (n) i32 unless NULL. `t` NULL is the identity (x / 255). `rng` may be NULL only
 * when `t` has no random step. Indices out of range are BL_ERR_INVALID_ARG. */
bl_status bl_dataset_batch_f32(const bl_dataset *ds, const int64_t *indices, int n,
                               const bl_batch_transform *t, bl_rng *rng, float *out, int32_t *labels);

/* ---- images: decode, resize, crop, write ----------------------------------------------------- */

/* An 8-bit image with interleaved channels, as decoders and PNG writers want it. */
typedef struct bl_image {
    int width, height, channels;
    uint8_t *pixels; /* (height, width, channels) u8 */
} bl_image;

void bl_image_free(bl_image *img);

/* Decodes a JPEG or PNG (told apart by content) into 8-bit RGB, like PIL's .convert("RGB"):
 * gray is replicated, palettes expanded, alpha dropped, 16-bit samples reduced to their high
 * byte except 16-bit gray, clipped at 255 (PIL's quirk, kept so pixels match), EXIF orientation
 * ignored (as torchvision's ImageFolder does). Undecodable input is BL_ERR_FORMAT
 * with a one-line reason that starts with `name`, e.g. "photo.jpg: not a JPEG or PNG file
 * (first bytes 47 49 46 38)" or "broken.png: libpng: IDAT: invalid distance too far back";
 * a truncated JPEG is an error (PIL refuses those too). BL_ERR_UNSUPPORTED when this build lacks
 * the library the file needs, and for CMYK JPEGs. Library errors never escape: they are caught
 * inside the call. */
bl_status bl_image_decode(const void *data, size_t size, const char *name, bl_image *out);
/* The decode budget: a file whose header declares more pixels than this is refused
 * (BL_ERR_FORMAT, saying so) before any pixel memory is allocated. The default, 2^27 (134
 * megapixels: a 100-megapixel medium-format photo fits), or $BEAMLET_MAX_IMAGE_PIXELS, read on
 * first use; bl_image_set_max_pixels (1..2^28) overrides both, for the whole process. */
#define BL_IMAGE_MAX_PIXELS_DEFAULT ((int64_t)1 << 27)
int64_t bl_image_max_pixels(void);
bl_status bl_image_set_max_pixels(int64_t pixels);
bl_status bl_image_read(const char *path, bl_image *out);

/* Resizes with PIL's antialiased bilinear filter (what torchvision applies to PIL images): plain
 * bilinear with half-pixel centres when enlarging, a triangle filter widened by the scale when
 * shrinking. Bit-exact with Pillow 13's 8-bit fixed-point passes, pass order included (checked
 * on random images); Pillow before the vertical-first rule can differ by 1 on some pixels
 * when the height shrinks much more than the width. */
bl_status bl_image_resize(const bl_image *src, int width, int height, bl_image *out);
/* torchvision Resize(size) with an int: the shorter side becomes `size`, the longer side
 * int(size * long / short). */
bl_status bl_image_resize_shorter(const bl_image *src, int size, bl_image *out);
/* torchvision CenterCrop: top = round((H - h) / 2) with Python's round-half-even, same for left.
 * The crop must fit inside the image. */
bl_status bl_image_center_crop(const bl_image *src, int width, int height, bl_image *out);

/* ImageNet normalization, torchvision's constants. */
extern const float bl_imagenet_mean[3];
extern const float bl_imagenet_std[3];

/* The torchvision evaluation preprocessing for ImageNet models: read, RGB, Resize(resize)
 * (256), CenterCrop(crop) (224), ToTensor, Normalize(ImageNet). `out` is (3, crop, crop) f32.
 * Errors as bl_image_read; the pipeline layer routes failures to its dead-letter output. */
bl_status bl_image_load_imagenet(const char *path, int resize, int crop, float *out /* (3, crop, crop) */);
/* The same from a file's bytes already in memory (`name` only for messages; errors as
 * bl_image_decode): what a caller that reads files its own way (Beam's FileSystems) uses. */
bl_status bl_image_decode_imagenet(const void *data, size_t size, const char *name, int resize, int crop,
                                   float *out /* (3, crop, crop) */);

/* Writes an 8-bit PNG (1 = gray, 2 = gray+alpha, 3 = RGB, 4 = RGBA channels) atomically: to a
 * temp file, flushed, then renamed into place. */
bl_status bl_png_write_u8(const char *path, int width, int height, int channels,
                          const uint8_t *pixels /* (height, width, channels) */);

/* A rows x cols grid of distinct random images of `ds` (seeded, row by row), separated by
 * 2-pixel gray gaps, as a PNG: gray for 1-channel datasets, RGB for 3. A quick look at the data
 * (`beamlet data`), not a figure. */
bl_status bl_dataset_sample_grid_png(const bl_dataset *ds, const char *path, int rows, int cols,
                                     uint64_t seed);

/* ---- image folders --------------------------------------------------------------------------- */

/* A sorted, deterministic list of the .jpg/.jpeg/.png files (extension case-insensitive) under a
 * folder. With class subfolders (torchvision's ImageFolder layout, root/<class>/.../<file>),
 * classes are the subfolder names in byte order, numbered from 0, and items are ordered by
 * (class, folder path, file name) as ImageFolder orders them. Without, the files are listed
 * recursively and have no class (-1). Entries starting with '.' are skipped; symbolic links are
 * followed (loops are stepped over), to a depth of 32 folders. Files with other extensions are
 * counted in bl_image_folder_skipped, not listed. An empty class folder is an error, as in
 * torchvision. */
typedef struct bl_image_folder bl_image_folder;

typedef enum bl_image_folder_mode {
    BL_IMAGE_FOLDER_AUTO = 0, /* classes when the root holds subfolders and no image files */
    BL_IMAGE_FOLDER_CLASSES,  /* every subfolder of the root is a class; root files ignored */
    BL_IMAGE_FOLDER_FLAT,     /* every image under the root, recursively, without classes */
} bl_image_folder_mode;

bl_status bl_image_folder_open(const char *dir, bl_image_folder **out);
bl_status bl_image_folder_open_mode(const char *dir, bl_image_folder_mode mode, bl_image_folder **out);
void bl_image_folder_free(bl_image_folder *folder);
int64_t bl_image_folder_count(const bl_image_folder *folder);
int64_t bl_image_folder_skipped(const bl_image_folder *folder);
/* The full path of item i (dir joined with the relative path), valid until free. */
const char *bl_image_folder_path(const bl_image_folder *folder, int64_t i);
/* The class of item i, or -1 when the folder has no classes. */
int bl_image_folder_class(const bl_image_folder *folder, int64_t i);
int bl_image_folder_num_classes(const bl_image_folder *folder);
const char *bl_image_folder_class_name(const bl_image_folder *folder, int k);

#ifdef __cplusplus
}
#endif
#endif
