/* Building StableHLO text: a growing string and the spelling of types. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/xla/xla.h"

void xla_text_init(xla_text *t) { memset(t, 0, sizeof *t); }

void xla_text_free(xla_text *t) {
    free(t->s);
    memset(t, 0, sizeof *t);
}

void xla_text_add(xla_text *t, const char *fmt, ...) {
    if (t->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = t->cap - t->len;
        int n = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? room : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->oom = true;
            return;
        }
        if (t->s && (size_t)n < room) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap : 4096;
        while (cap < t->len + (size_t)n + 1) cap *= 2;
        char *s = realloc(t->s, cap);
        if (!s) {
            t->oom = true;
            return;
        }
        t->s = s;
        t->cap = cap;
    }
}

uint64_t xla_text_hash(const char *s) { /* FNV-1a */
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

const char *xla_type(char *buf, size_t size, int ndim, const int64_t *shape, const char *elem) {
    size_t used = (size_t)snprintf(buf, size, "tensor<");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%lldx", (long long)shape[i]);
    if (used < size) snprintf(buf + used, size - used, "%s>", elem);
    return buf;
}

const char *xla_elem(bl_dtype dt) {
    switch (dt) {
        case BL_F32: return "f32";
        case BL_BF16: return "bf16";
        case BL_F16: return "f16";
        case BL_I32: return "i32";
        case BL_I64: return "i64";
        case BL_U8: return "ui8";
        default: return "f32";
    }
}
