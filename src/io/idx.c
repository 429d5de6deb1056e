/* IDX files (the MNIST family's format), gzipped or plain. A file must hold exactly what its
 * header declares, because a silently short or padded dataset trains on garbage without a
 * single error; every rejection names the file and the byte offset. */
#include "beamlet/datasets.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef BEAMLET_HAVE_ZLIB
#include <zlib.h>
#endif

/* Declared sizes beyond this are taken as a corrupt header rather than attempted. */
#define IDX_MAX_BYTES ((uint64_t)16 << 30)
/* The buffer grows as data arrives, so a corrupt header in a short file never asks for the
 * declared size up front. */
#define IDX_FIRST_CHUNK ((size_t)16 << 20)

/* One reader over a plain file or a gzip stream, counting uncompressed bytes so errors can say
 * where. Gzip goes through inflate() rather than gzread() so that a corrupt stream is reported
 * at the compressed and uncompressed offsets where inflate found it, not where the caller's
 * read happened to start. */
#define GZ_CHUNK (1 << 16)

typedef struct idx_reader {
    const char *path;
    FILE *file;
    bool gzipped;
    uint64_t offset; /* uncompressed bytes delivered */
#ifdef BEAMLET_HAVE_ZLIB
    z_stream zs;
    bool zs_live;
    unsigned char *in; /* (GZ_CHUNK) compressed input */
    uint64_t consumed; /* compressed bytes inflate has taken */
    bool finished;     /* the last gzip member ended and nothing follows */
#endif
    bool stream_cut; /* the gzip stream ended before its end marker and trailer */
} idx_reader;

static bl_status reader_open(idx_reader *r, const char *path) {
    memset(r, 0, sizeof *r);
    r->path = path;
    r->file = fopen(path, "rb");
    if (!r->file) {
        return bl_error(errno == ENOENT ? BL_ERR_NOT_FOUND : BL_ERR_IO, "%s: cannot open: %s", path,
                        strerror(errno));
    }
    unsigned char sig[2] = {0, 0};
    size_t got = fread(sig, 1, 2, r->file);
    rewind(r->file);
    r->gzipped = got == 2 && sig[0] == 0x1f && sig[1] == 0x8b;
    if (!r->gzipped) return BL_OK;
#ifdef BEAMLET_HAVE_ZLIB
    r->in = malloc(GZ_CHUNK);
    if (!r->in) return bl_error(BL_ERR_OUT_OF_MEMORY, "%s: no memory for inflate", path);
    if (inflateInit2(&r->zs, 15 + 16) != Z_OK) { /* 15 + 16: a gzip wrapper, not zlib's */
        return bl_error(BL_ERR_OUT_OF_MEMORY, "%s: inflateInit failed", path);
    }
    r->zs_live = true;
    return BL_OK;
#else
    return bl_error(BL_ERR_UNSUPPORTED,
                    "%s: gzipped, and this build has no zlib (install "
                    "zlib1g-dev and rebuild, or gunzip the file)",
                    path);
#endif
}

static void reader_close(idx_reader *r) {
    if (r->file) fclose(r->file);
#ifdef BEAMLET_HAVE_ZLIB
    if (r->zs_live) inflateEnd(&r->zs);
    free(r->in);
#endif
    memset(r, 0, sizeof *r);
}

#ifdef BEAMLET_HAVE_ZLIB
/* Makes at least `need` compressed bytes available when the file has them; returns how many are. */
static bl_status gz_fill(idx_reader *r, size_t need, size_t *avail) {
    *avail = 0;
    if (r->zs.avail_in < need) {
        memmove(r->in, r->zs.next_in ? r->zs.next_in : r->in, r->zs.avail_in);
        size_t m = fread(r->in + r->zs.avail_in, 1, GZ_CHUNK - r->zs.avail_in, r->file);
        if (m == 0 && ferror(r->file)) {
            return bl_error(BL_ERR_IO, "%s: read failed at offset %llu: %s", r->path,
                            (unsigned long long)(r->consumed + r->zs.avail_in), strerror(errno));
        }
        r->zs.next_in = r->in;
        r->zs.avail_in += (uInt)m;
    }
    *avail = r->zs.avail_in;
    return BL_OK;
}

static bl_status gz_read(idx_reader *r, unsigned char *p, size_t n, size_t *got) {
    while (*got < n && !r->finished) {
        size_t avail = 0;
        BL_TRY(gz_fill(r, 1, &avail));
        if (avail == 0) { /* the file ends inside a gzip member */
            r->stream_cut = true;
            break;
        }
        size_t want = n - *got;
        r->zs.next_out = p + *got;
        r->zs.avail_out = want > (1u << 30) ? (1u << 30) : (uInt)want;
        uInt out_before = r->zs.avail_out, in_before = r->zs.avail_in;
        int z = inflate(&r->zs, Z_NO_FLUSH);
        size_t produced = out_before - r->zs.avail_out;
        *got += produced;
        r->offset += produced;
        r->consumed += in_before - r->zs.avail_in;
        if (z == Z_STREAM_END) {
            /* Another gzip member may follow (as `cat a.gz b.gz` makes); anything else is not
             * part of the file's data and is refused like any trailing bytes. */
            BL_TRY(gz_fill(r, 2, &avail));
            if (avail == 0) {
                r->finished = true;
            } else if (avail >= 2 && r->zs.next_in[0] == 0x1f && r->zs.next_in[1] == 0x8b) {
                inflateReset(&r->zs);
            } else {
                return bl_error(BL_ERR_FORMAT,
                                "%s: unexpected bytes after the gzip stream at "
                                "offset %llu",
                                r->path, (unsigned long long)r->consumed);
            }
        } else if (z == Z_MEM_ERROR) {
            return bl_error(BL_ERR_OUT_OF_MEMORY, "%s: inflate ran out of memory", r->path);
        } else if (z != Z_OK && z != Z_BUF_ERROR) {
            return bl_error(BL_ERR_FORMAT,
                            "%s: corrupt gzip data at offset %llu (uncompressed "
                            "offset %llu): zlib: %s",
                            r->path, (unsigned long long)r->consumed, (unsigned long long)r->offset,
                            r->zs.msg ? r->zs.msg : "error");
        }
    }
    return BL_OK;
}
#endif

/* Reads up to n bytes; *got < n means end of data. A failure of the medium itself (a read
 * error, corrupt gzip data) is an error here, so callers only decide what a short read means. */
static bl_status reader_read(idx_reader *r, void *buf, size_t n, size_t *got) {
    *got = 0;
#ifdef BEAMLET_HAVE_ZLIB
    if (r->gzipped) return gz_read(r, buf, n, got);
#endif
    size_t m = fread(buf, 1, n, r->file);
    r->offset += m;
    *got = m;
    if (m < n && ferror(r->file)) {
        return bl_error(BL_ERR_IO, "%s: read failed at offset %llu: %s", r->path,
                        (unsigned long long)r->offset, strerror(errno));
    }
    return BL_OK;
}

static uint32_t be32(const unsigned char *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static size_t idx_elem_size(int type) {
    switch (type) {
        case BL_IDX_U8:
        case BL_IDX_I8: return 1;
        case BL_IDX_I16: return 2;
        case BL_IDX_I32:
        case BL_IDX_F32: return 4;
        case BL_IDX_F64: return 8;
        default: return 0;
    }
}

static void to_host_order(unsigned char *data, size_t count, size_t elem) {
    const uint16_t probe = 1;
    if (elem == 1 || *(const unsigned char *)&probe == 0) return; /* big-endian host */
    for (size_t i = 0; i < count; i++) {
        unsigned char *e = data + i * elem;
        for (size_t a = 0, b = elem - 1; a < b; a++, b--) {
            unsigned char t = e[a];
            e[a] = e[b];
            e[b] = t;
        }
    }
}

static bl_status read_header(idx_reader *r, bl_idx *out) {
    unsigned char magic[4];
    size_t got;
    BL_TRY(reader_read(r, magic, 4, &got));
    if (got < 4) {
        return bl_error(BL_ERR_FORMAT,
                        "%s: truncated at offset %zu: the file ends inside the "
                        "4-byte IDX magic",
                        r->path, got);
    }
    uint32_t m = be32(magic);
    size_t elem = idx_elem_size(magic[2]);
    if (magic[0] != 0 || magic[1] != 0 || elem == 0 || magic[3] == 0) {
        return bl_error(BL_ERR_FORMAT,
                        "%s: offset 0: bad magic 0x%08x (IDX starts with two zero "
                        "bytes, a type byte 08/09/0b/0c/0d/0e and a dimension count >= 1)",
                        r->path, m);
    }
    if (magic[3] > BL_IDX_MAX_DIMS) {
        return bl_error(BL_ERR_FORMAT,
                        "%s: offset 3: %d dimensions, more than the %d beamlet "
                        "reads",
                        r->path, magic[3], BL_IDX_MAX_DIMS);
    }
    out->type = (bl_idx_type)magic[2];
    out->ndim = magic[3];
    out->elem_size = elem;
    unsigned char dims[4 * BL_IDX_MAX_DIMS];
    size_t want = 4 * (size_t)out->ndim;
    BL_TRY(reader_read(r, dims, want, &got));
    if (got < want) {
        return bl_error(BL_ERR_FORMAT,
                        "%s: truncated at offset %llu: the file ends inside the "
                        "header (%zu bytes for %d dimensions)",
                        r->path, (unsigned long long)r->offset, 4 + want, out->ndim);
    }
    uint64_t total = elem;
    for (int d = 0; d < out->ndim; d++) {
        uint32_t v = be32(dims + 4 * d);
        if (v == 0) {
            return bl_error(BL_ERR_FORMAT, "%s: offset %d: dimension %d is 0", r->path, 4 + 4 * d, d);
        }
        out->dims[d] = v;
        if (total > IDX_MAX_BYTES / v) {
            return bl_error(BL_ERR_FORMAT,
                            "%s: offset %d: the dimensions declare more than "
                            "%llu GiB of data; taken as a corrupt header",
                            r->path, 4 + 4 * d, (unsigned long long)(IDX_MAX_BYTES >> 30));
        }
        total *= v;
    }
    out->size = (size_t)total;
    return BL_OK;
}

static void describe_dims(const bl_idx *idx, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = '\0';
    for (int d = 0; d < idx->ndim && n < cap; d++) {
        int w = snprintf(buf + n, cap - n, "%s%lld", d ? "x" : "", (long long)idx->dims[d]);
        if (w < 0) break;
        n += (size_t)w;
    }
}

static bl_status read_payload(idx_reader *r, bl_idx *out) {
    uint64_t header = r->offset;
    size_t cap = out->size < IDX_FIRST_CHUNK ? out->size : IDX_FIRST_CHUNK;
    unsigned char *buf = malloc(cap);
    if (!buf) return bl_error(BL_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes", r->path, cap);
    size_t have = 0;
    while (have < out->size) {
        if (have == cap) {
            size_t next = cap > out->size / 2 ? out->size : cap * 2;
            unsigned char *grown = realloc(buf, next);
            if (!grown) {
                free(buf);
                return bl_error(BL_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes", r->path, next);
            }
            buf = grown;
            cap = next;
        }
        size_t got;
        bl_status s = reader_read(r, buf + have, cap - have, &got);
        if (s != BL_OK) {
            free(buf);
            return s;
        }
        have += got;
        if (have < cap) break; /* end of data */
    }
    if (have < out->size) {
        char dims[128];
        describe_dims(out, dims, sizeof dims);
        /* A record is one entry along the first dimension: an image, a label. */
        size_t record_bytes = out->size / (size_t)out->dims[0];
        free(buf);
        return bl_error(BL_ERR_FORMAT,
                        "%s: truncated at offset %llu%s, in record %zu of %lld: "
                        "the header declares %s elements of %zu byte(s), %llu bytes after the "
                        "%llu-byte header",
                        r->path, (unsigned long long)r->offset, r->gzipped ? " (uncompressed)" : "",
                        have / record_bytes, (long long)out->dims[0], dims, out->elem_size,
                        (unsigned long long)out->size, (unsigned long long)header);
    }
    /* A further read also makes zlib check the gzip trailer's CRC and length. */
    uint64_t end = r->offset;
    unsigned char extra[4096];
    uint64_t trailing = 0;
    for (;;) {
        size_t got;
        bl_status s = reader_read(r, extra, sizeof extra, &got);
        if (s != BL_OK) {
            free(buf);
            return s;
        }
        trailing += got;
        if (got < sizeof extra) break;
    }
    if (r->stream_cut) {
        free(buf);
        return bl_error(BL_ERR_FORMAT,
                        "%s: truncated: the gzip stream ends before its trailer, "
                        "after uncompressed offset %llu",
                        r->path, (unsigned long long)end);
    }
    if (trailing > 0) {
        free(buf);
        return bl_error(BL_ERR_FORMAT,
                        "%s: %llu unexpected trailing bytes from offset %llu%s: "
                        "the header declares %llu bytes of data",
                        r->path, (unsigned long long)trailing, (unsigned long long)end,
                        r->gzipped ? " (uncompressed)" : "", (unsigned long long)out->size);
    }
    to_host_order(buf, out->size / out->elem_size, out->elem_size);
    out->data = buf;
    return BL_OK;
}

bl_status bl_idx_read(const char *path, bl_idx *out) {
    if (!path || !out) return bl_error(BL_ERR_INVALID_ARG, "bl_idx_read: NULL argument");
    memset(out, 0, sizeof *out);
    idx_reader r;
    BL_TRY(reader_open(&r, path));
    bl_status s = read_header(&r, out);
    if (s == BL_OK) s = read_payload(&r, out);
    reader_close(&r);
    if (s != BL_OK) bl_idx_free(out);
    return s;
}

void bl_idx_free(bl_idx *idx) {
    if (!idx) return;
    free(idx->data);
    memset(idx, 0, sizeof *idx);
}
