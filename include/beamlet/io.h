/* beamlet io: the layer of file formats.
 *
 * Readers and writers for the files beamlet exchanges with the rest of the ecosystem:
 * safetensors weights and checkpoints (so a torchvision state_dict loads as is), and later the
 * datasets (Fashion-MNIST IDX, CIFAR-10 binary, image folders) and JSON-lines results. This
 * layer knows bytes, element types and shapes, and nothing of beamlet tensors, devices or
 * pipelines: callers above turn what it hands out into tensors. Every reader treats its input
 * as hostile: malformed files give BL_ERR_FORMAT with a message naming the file, the entry
 * and what is wrong, never a crash or a read out of bounds. */
#ifndef BEAMLET_IO_H
#define BEAMLET_IO_H

#include "beamlet/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ==== safetensors ======================================================================== */

/* The format: an 8-byte little-endian header length N, N bytes of JSON mapping each tensor
 * name to {"dtype", "shape", "data_offsets": [begin, end]} (plus an optional "__metadata__"
 * object of string values), then the data buffer that the offsets index into. The reader
 * accepts the dtypes F32, BF16, F16, U8, I32 and I64 and checks everything the reference
 * implementation checks (tensors must tile the data buffer exactly: no overlaps, no holes),
 * plus that names and metadata hold no NUL bytes, so they are usable as C strings. */

#define BL_ST_MAX_DIMS 8

/* One tensor of an open file. Valid until the file is closed. */
typedef struct bl_st_tensor {
    const char *name;
    bl_dtype dtype;
    int ndim;                      /* 0 for a scalar */
    int64_t shape[BL_ST_MAX_DIMS]; /* the first ndim entries are used */
    /* nbytes little-endian bytes inside the file's buffer. The format only guarantees
     * alignment for files written in the reference implementation's order, so read through
     * memcpy (or bl_safetensors_read_f32), never by casting to a wider type. */
    const void *data;
    size_t nbytes; /* product(shape) * bl_dtype_size(dtype) */
} bl_st_tensor;

typedef struct bl_safetensors bl_safetensors;

/* Reads the whole file into memory and validates it. */
bl_status bl_safetensors_open(const char *path, bl_safetensors **out);
/* Validates a file image already in memory, without copying it: data must stay valid and
 * unchanged until bl_safetensors_close. label names it in messages (e.g. a path). */
bl_status bl_safetensors_open_memory(const void *data, size_t size, const char *label, bl_safetensors **out);
void bl_safetensors_close(bl_safetensors *f);

/* The path (or label) the file was opened with. */
const char *bl_safetensors_path(const bl_safetensors *f);
size_t bl_safetensors_count(const bl_safetensors *f);
/* Tensors in the order their bytes appear in the data buffer; NULL when i is out of range. */
const bl_st_tensor *bl_safetensors_at(const bl_safetensors *f, size_t i);
/* O(log n); NULL when there is no such tensor. */
const bl_st_tensor *bl_safetensors_find(const bl_safetensors *f, const char *name);

/* The __metadata__ value for key, or NULL when absent. */
const char *bl_safetensors_metadata(const bl_safetensors *f, const char *key);
size_t bl_safetensors_metadata_count(const bl_safetensors *f);
/* The i-th metadata key in header order (its value in *value); NULL when out of range. */
const char *bl_safetensors_metadata_at(const bl_safetensors *f, size_t i, const char **value);

/* Copies tensor `name` into dst as f32, converting from BF16 or F16, after checking that its
 * shape is exactly shape[0, ndim) (the shape the model expects); dst holds product(shape)
 * floats. A missing tensor is BL_ERR_NOT_FOUND; a shape or dtype mismatch is BL_ERR_FORMAT:
 * "model.safetensors: tensor 'layer1.0.conv1.weight': shape [64,64,3,3] does not match the
 * model's [32,32,3,3]". */
bl_status bl_safetensors_read_f32(const bl_safetensors *f, const char *name, int ndim, const int64_t *shape,
                                  float *dst);

/* ---- writing ---------------------------------------------------------------------------- */

/* Collects tensors and metadata, then writes a file the reference implementation would
 * write byte for byte: compact header padded with spaces to a multiple of 8 bytes, tensors
 * laid out by element size, largest first (I64, F32, I32, BF16, F16, U8), ties by name, so
 * every tensor is aligned to its element size; __metadata__ first, its keys sorted. */
typedef struct bl_safetensors_writer bl_safetensors_writer;

bl_status bl_safetensors_writer_new(bl_safetensors_writer **out);
void bl_safetensors_writer_free(bl_safetensors_writer *w);
/* Copies name, shape and the product(shape) * bl_dtype_size(dtype) bytes at data (host
 * order, i.e. little-endian), so the caller may reuse its buffer at once. Names must be
 * non-empty, valid UTF-8, unique, and not "__metadata__". data may be NULL for an empty
 * tensor. */
bl_status bl_safetensors_writer_add(bl_safetensors_writer *w, const char *name, bl_dtype dtype, int ndim,
                                    const int64_t *shape, const void *data);
/* Sets (or replaces) a __metadata__ entry; key and value must be valid UTF-8. */
bl_status bl_safetensors_writer_set_metadata(bl_safetensors_writer *w, const char *key, const char *value);
/* The complete file image in a malloc'ed buffer (caller frees), e.g. to send a checkpoint
 * through a coder. */
bl_status bl_safetensors_writer_serialize(const bl_safetensors_writer *w, void **data, size_t *size);
/* Writes the file atomically (temp file, fsync, rename): a crash never leaves a half file at
 * path. The writer can be committed again, or freed. */
bl_status bl_safetensors_writer_commit(const bl_safetensors_writer *w, const char *path);

#ifdef __cplusplus
}
#endif
#endif
