/* Device memory as segments of PJRT buffers over reserved address ranges (xla.h says why).
 *
 * Reading a range that is exactly one segment hands out that buffer; any other range is
 * gathered on the device by one program (slices of the segments it overlaps, zeros for bytes
 * never written, concatenated) and then stored as a segment of its own, so the next read of
 * the same range is exact. Writing a range replaces the segments inside it and trims the ones
 * it cuts (slices on the device). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backends/xla/xla.h"

static size_t page_round(size_t n) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return (n + page - 1) / page * page;
}

bl_status xla_mem_alloc(xla_ctx *c, size_t bytes, void **ptr) {
    *ptr = NULL;
    if (c->nregions == c->cap) {
        int cap = c->cap ? 2 * c->cap : 16;
        xla_region *r = realloc(c->regions, sizeof *r * (size_t)cap);
        if (!r) return bl_error(BL_ERR_OUT_OF_MEMORY, "xla: region table");
        c->regions = r;
        c->cap = cap;
    }
    size_t mapped = page_round(bytes ? bytes : 1);
    /* Address space only: no memory behind it, and a host access faults. */
    void *base = mmap(NULL, mapped, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED)
        return bl_error(BL_ERR_OUT_OF_MEMORY, "xla: reserving %zu bytes of address space", bytes);
    xla_region *r = &c->regions[c->nregions++];
    memset(r, 0, sizeof *r);
    r->base = (uintptr_t)base;
    r->size = bytes;
    r->mapped = mapped;
    *ptr = base;
    return BL_OK;
}

static void region_clear(xla_region *r) {
    for (int i = 0; i < r->nsegs; i++) xla_buf_unref(r->segs[i].buf);
    free(r->segs);
    munmap((void *)r->base, r->mapped);
}

void xla_mem_free(xla_ctx *c, void *ptr) {
    for (int i = 0; i < c->nregions; i++)
        if (c->regions[i].base == (uintptr_t)ptr) {
            region_clear(&c->regions[i]);
            c->regions[i] = c->regions[--c->nregions];
            return;
        }
}

void xla_mem_free_all(xla_ctx *c) {
    for (int i = 0; i < c->nregions; i++) region_clear(&c->regions[i]);
    free(c->regions);
    c->regions = NULL;
    c->nregions = c->cap = 0;
}

static bl_status find(xla_ctx *c, const void *ptr, size_t len, xla_region **out, size_t *off) {
    uintptr_t a = (uintptr_t)ptr;
    for (int i = 0; i < c->nregions; i++) {
        xla_region *r = &c->regions[i];
        if (a >= r->base && a - r->base <= r->size && len <= r->size - (a - r->base)) {
            *out = r;
            *off = a - r->base;
            return BL_OK;
        }
    }
    return bl_error(BL_ERR_INVALID_ARG, "xla: %zu bytes at %p are not inside one allocation of this device",
                    len, ptr);
}

/* One program: out = concat(pieces), each piece a slice of an input or zeros. */
typedef struct piece {
    int input; /* -1: zeros */
    size_t from, len;
} piece;

static bl_status gather(xla_ctx *c, int nin, xla_buf *const *in, int npieces, const piece *pc, size_t len,
                        xla_buf **out) {
    xla_text t;
    xla_text_init(&t);
    xla_text_add(&t, "func.func @main(");
    for (int i = 0; i < nin; i++) xla_text_add(&t, "%s%%a%d: tensor<%zuxui8>", i ? ", " : "", i, in[i]->len);
    xla_text_add(&t, ") -> tensor<%zuxui8> {\n", len);
    for (int k = 0; k < npieces; k++) {
        if (pc[k].input < 0)
            xla_text_add(&t, "  %%p%d = stablehlo.constant dense<0> : tensor<%zuxui8>\n", k, pc[k].len);
        else if (pc[k].from == 0 && pc[k].len == in[pc[k].input]->len) /* the whole input */
            xla_text_add(&t, "  %%p%d = stablehlo.reshape %%a%d : (tensor<%zuxui8>) -> tensor<%zuxui8>\n", k,
                         pc[k].input, pc[k].len, pc[k].len);
        else
            xla_text_add(&t,
                         "  %%p%d = stablehlo.slice %%a%d [%zu:%zu] : (tensor<%zuxui8>) -> tensor<%zuxui8>\n",
                         k, pc[k].input, pc[k].from, pc[k].from + pc[k].len, in[pc[k].input]->len, pc[k].len);
    }
    if (npieces == 1) {
        xla_text_add(&t, "  return %%p0 : tensor<%zuxui8>\n}\n", len);
    } else {
        xla_text_add(&t, "  %%r = stablehlo.concatenate ");
        for (int k = 0; k < npieces; k++) xla_text_add(&t, "%s%%p%d", k ? ", " : "", k);
        xla_text_add(&t, ", dim = 0 : (");
        for (int k = 0; k < npieces; k++) xla_text_add(&t, "%stensor<%zuxui8>", k ? ", " : "", pc[k].len);
        xla_text_add(&t, ") -> tensor<%zuxui8>\n  return %%r : tensor<%zuxui8>\n}\n", len, len);
    }
    bl_status s =
        t.oom ? bl_error(BL_ERR_OUT_OF_MEMORY, "xla: program text") : xla_run(c, t.s, nin, in, 1, &len, out);
    xla_text_free(&t);
    return s;
}

static bl_status insert_seg(xla_region *r, int at, size_t off, size_t len, xla_buf *b) {
    if (r->nsegs == r->cap) {
        int cap = r->cap ? 2 * r->cap : 8;
        xla_seg *s = realloc(r->segs, sizeof *s * (size_t)cap);
        if (!s) return bl_error(BL_ERR_OUT_OF_MEMORY, "xla: segment table");
        r->segs = s;
        r->cap = cap;
    }
    memmove(&r->segs[at + 1], &r->segs[at], sizeof *r->segs * (size_t)(r->nsegs - at));
    r->segs[at] = (xla_seg){off, len, b};
    r->nsegs++;
    return BL_OK;
}

/* Replaces [off, off+len) of region r with b (a reference r takes over). */
static bl_status put(xla_ctx *c, xla_region *r, size_t off, size_t len, xla_buf *b) {
    size_t end = off + len;
    /* The tails of segments cut by the new one, made before anything changes. */
    xla_buf *left = NULL, *right = NULL;
    size_t left_off = 0, left_len = 0, right_off = 0, right_len = 0;
    for (int i = 0; i < r->nsegs; i++) {
        xla_seg *s = &r->segs[i];
        size_t send = s->off + s->len;
        if (send <= off || s->off >= end) continue;
        if (s->off < off) {
            piece p = {0, 0, off - s->off};
            bl_status st = gather(c, 1, &s->buf, 1, &p, p.len, &left);
            if (st != BL_OK) return xla_buf_unref(b), st;
            left_off = s->off, left_len = p.len;
        }
        if (send > end) {
            piece p = {0, end - s->off, send - end};
            bl_status st = gather(c, 1, &s->buf, 1, &p, p.len, &right);
            if (st != BL_OK) return xla_buf_unref(left), xla_buf_unref(b), st;
            right_off = end, right_len = p.len;
        }
    }
    int w = 0;
    for (int i = 0; i < r->nsegs; i++) {
        xla_seg *s = &r->segs[i];
        if (s->off + s->len <= off || s->off >= end)
            r->segs[w++] = *s;
        else
            xla_buf_unref(s->buf);
    }
    r->nsegs = w;
    int at = 0;
    while (at < r->nsegs && r->segs[at].off < off) at++;
    bl_status st = BL_OK;
    if (left) st = insert_seg(r, at++, left_off, left_len, left);
    if (st == BL_OK)
        st = insert_seg(r, at++, off, len, b);
    else
        xla_buf_unref(b);
    if (right) {
        if (st == BL_OK)
            st = insert_seg(r, at, right_off, right_len, right);
        else
            xla_buf_unref(right);
    }
    return st;
}

bl_status xla_mem_read(xla_ctx *c, const void *ptr, size_t len, xla_buf **out) {
    xla_region *r = NULL;
    size_t off = 0;
    BL_TRY(find(c, ptr, len, &r, &off));
    size_t end = off + len;
    int first = -1, n = 0;
    for (int i = 0; i < r->nsegs; i++) {
        xla_seg *s = &r->segs[i];
        if (s->off + s->len <= off || s->off >= end) continue;
        if (first < 0) first = i;
        n++;
    }
    if (n == 1 && r->segs[first].off == off && r->segs[first].len == len) {
        *out = xla_buf_ref(r->segs[first].buf);
        return BL_OK;
    }
    xla_buf **in = malloc(sizeof *in * (size_t)(n ? n : 1));
    piece *pc = malloc(sizeof *pc * (size_t)(2 * n + 1));
    if (!in || !pc) return free(in), free(pc), bl_error(BL_ERR_OUT_OF_MEMORY, "xla: gather");
    int np = 0;
    size_t at = off;
    for (int k = 0; k < n; k++) {
        xla_seg *s = &r->segs[first + k];
        in[k] = s->buf;
        if (s->off > at) pc[np++] = (piece){-1, 0, s->off - at}, at = s->off;
        size_t from = at - s->off, stop = s->off + s->len < end ? s->off + s->len : end;
        pc[np++] = (piece){k, from, stop - at};
        at = stop;
    }
    if (at < end || np == 0) pc[np++] = (piece){-1, 0, end - at}; /* an empty range: u8[0] */
    bl_status s = gather(c, n, in, np, pc, len, out);
    free(in);
    free(pc);
    if (s != BL_OK) return s;
    /* Keep the gathered range as a segment: the next read of it is exact. A range that only
     * slices one segment stays a view of it (a weight read out of the flat parameters). */
    if (len == 0 || n == 1) return BL_OK;
    bl_status st = put(c, r, off, len, xla_buf_ref(*out));
    if (st != BL_OK) xla_buf_unref(*out), *out = NULL;
    return st;
}

bl_status xla_mem_write(xla_ctx *c, void *ptr, xla_buf *b) {
    xla_region *r = NULL;
    size_t off = 0;
    bl_status s = find(c, ptr, b->len, &r, &off);
    if (s != BL_OK) return xla_buf_unref(b), s;
    if (b->len == 0) return xla_buf_unref(b), BL_OK;
    return put(c, r, off, b->len, b);
}

bl_status xla_mem_zero(xla_ctx *c, void *ptr, size_t len) {
    if (!len) return BL_OK;
    piece p = {-1, 0, len};
    xla_buf *z;
    BL_TRY(gather(c, 0, NULL, 1, &p, len, &z));
    return xla_mem_write(c, ptr, z);
}

void xla_mem_discard(xla_ctx *c, void *ptr, size_t len) {
    xla_region *r = NULL;
    size_t off = 0;
    if (find(c, ptr, len, &r, &off) != BL_OK) {
        bl_clear_error();
        return;
    }
    int w = 0;
    for (int i = 0; i < r->nsegs; i++) {
        xla_seg *s = &r->segs[i];
        if (s->off >= off && s->off + s->len <= off + len)
            xla_buf_unref(s->buf);
        else
            r->segs[w++] = *s;
    }
    r->nsegs = w;
}

bl_status xla_mem_sync(xla_ctx *c) {
    for (int i = 0; i < c->nregions; i++)
        for (int k = 0; k < c->regions[i].nsegs; k++) {
            BL_TRY(xla_buf_ready(c, c->regions[i].segs[k].buf));
            BL_TRY(xla_buf_await(c, c->regions[i].segs[k].buf));
        }
    return BL_OK;
}

int xla_mem_segment_count(xla_ctx *c, const void *ptr) {
    for (int i = 0; i < c->nregions; i++)
        if (c->regions[i].base == (uintptr_t)ptr) return c->regions[i].nsegs;
    return -1;
}
