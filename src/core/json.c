/* A strict JSON parser (recursive descent into a tree held in a chunked arena) and a compact
 * writer. Input is untrusted (safetensors headers come from anywhere), so every read is
 * bounds-checked against the explicit length and recursion depth is capped. */
#include "beamlet/json.h"

#include <inttypes.h>
#include <math.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bl_json {
    bl_json_type type;
    bool boolean;
    size_t offset;
    double number;
    const char *str; /* string: decoded bytes; number: the literal, for exact integers */
    size_t len;
    const char *key; /* when this value is an object member */
    size_t key_len;
    size_t key_offset;
    size_t count;
    const bl_json **items;  /* array elements / object members, in document order */
    const bl_json **sorted; /* object members sorted by key, for lookup */
    bl_json *next;          /* sibling link, only while parsing */
};

/* The arena: values and strings of one document, freed together. Chunks grow geometrically
 * so a large header costs few mallocs. */
typedef struct json_chunk {
    struct json_chunk *next;
    size_t used, cap;
    alignas(max_align_t) unsigned char data[];
} json_chunk;

/* The root value sits first so a bl_json * from bl_json_parse is also the document. */
typedef struct json_doc {
    bl_json root;
    json_chunk *chunks;
    size_t next_chunk;
} json_doc;

typedef struct parser {
    const unsigned char *s;
    size_t len, pos;
    json_doc *doc;
} parser;

/* ---- parsing helpers -------------------------------------------------------------------- */

static bl_status perr(size_t offset, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bl_status perr(size_t offset, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return bl_error(BL_ERR_FORMAT, "JSON: offset %zu: %s", offset, msg);
}

/* Copies up to 48 bytes of s into out for an error message, replacing anything that is not
 * printable ASCII with '?' so hostile input cannot garble the terminal or the log. */
static const char *printable(const char *s, size_t n, char *out, size_t out_size) {
    size_t k = 0, limit = out_size - 4 < 48 ? out_size - 4 : 48;
    for (size_t i = 0; i < n && k < limit; i++) {
        unsigned char c = (unsigned char)s[i];
        out[k++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (n > limit) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
    return out;
}

static void *arena_alloc(parser *p, size_t size) {
    size = (size + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1);
    json_chunk *c = p->doc->chunks;
    if (!c || c->cap - c->used < size) {
        size_t cap = p->doc->next_chunk;
        if (cap < size) cap = size;
        c = malloc(sizeof *c + cap);
        if (!c) {
            bl_error(BL_ERR_OUT_OF_MEMORY, "JSON: out of memory (%zu bytes)", size);
            return NULL;
        }
        c->cap = cap;
        c->used = 0;
        c->next = p->doc->chunks;
        p->doc->chunks = c;
        if (p->doc->next_chunk < (1u << 20)) p->doc->next_chunk *= 2;
    }
    void *r = c->data + c->used;
    c->used += size;
    return r;
}

static void skip_ws(parser *p) {
    while (p->pos < p->len) {
        unsigned char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static bl_status unexpected(parser *p, const char *wanted) {
    if (p->pos >= p->len) return perr(p->pos, "unexpected end of input, expected %s", wanted);
    unsigned char c = p->s[p->pos];
    if (c >= 0x21 && c < 0x7f) return perr(p->pos, "expected %s, found '%c'", wanted, c);
    return perr(p->pos, "expected %s, found byte 0x%02x", wanted, c);
}

static int hex4(const unsigned char *s) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int c = s[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Length of the valid UTF-8 sequence at s[0, n), or 0 if it is not one (overlong forms,
 * surrogates and code points past U+10FFFF are invalid, per RFC 3629). */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t need;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        need = 1;
    else if (c >= 0xe0 && c <= 0xef) {
        need = 2;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 3;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else
        return 0;
    if (n < need + 1) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i <= need; i++)
        if (s[i] < 0x80 || s[i] > 0xbf) return 0;
    return need + 1;
}

static size_t put_utf8(char *out, uint32_t cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Parses a string at p->pos (which holds '"'); the decoded bytes go to the arena. */
static bl_status parse_string(parser *p, const char **out, size_t *out_len) {
    size_t start = p->pos++;
    /* Find the closing quote first: the decoded text is never longer than the raw text, so
     * one allocation of that size suffices. */
    size_t end = p->pos;
    while (end < p->len && p->s[end] != '"') end += (p->s[end] == '\\') ? 2 : 1;
    if (end >= p->len) return perr(start, "unterminated string");
    char *buf = arena_alloc(p, end - p->pos + 1);
    if (!buf) return BL_ERR_OUT_OF_MEMORY;
    size_t n = 0;
    while (p->pos < end) {
        unsigned char c = p->s[p->pos];
        if (c < 0x20) return perr(p->pos, "control character 0x%02x in string (must be escaped)", c);
        if (c != '\\') {
            size_t k = utf8_seq(p->s + p->pos, end - p->pos);
            if (k == 0) return perr(p->pos, "invalid UTF-8 byte 0x%02x in string", c);
            memcpy(buf + n, p->s + p->pos, k);
            n += k;
            p->pos += k;
            continue;
        }
        size_t esc = p->pos;
        unsigned char e = p->s[p->pos + 1]; /* end is past it: the scan stepped over it */
        p->pos += 2;
        switch (e) {
            case '"': buf[n++] = '"'; break;
            case '\\': buf[n++] = '\\'; break;
            case '/': buf[n++] = '/'; break;
            case 'b': buf[n++] = '\b'; break;
            case 'f': buf[n++] = '\f'; break;
            case 'n': buf[n++] = '\n'; break;
            case 'r': buf[n++] = '\r'; break;
            case 't': buf[n++] = '\t'; break;
            case 'u': {
                int cp = end - p->pos >= 4 ? hex4(p->s + p->pos) : -1;
                if (cp < 0) return perr(esc, "invalid \\u escape (needs four hex digits)");
                p->pos += 4;
                uint32_t code = (uint32_t)cp;
                if (cp >= 0xdc00 && cp <= 0xdfff)
                    return perr(esc, "invalid \\u escape: lone low surrogate \\u%04x", cp);
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    int lo = -1;
                    if (end - p->pos >= 6 && p->s[p->pos] == '\\' && p->s[p->pos + 1] == 'u')
                        lo = hex4(p->s + p->pos + 2);
                    if (lo < 0xdc00 || lo > 0xdfff)
                        return perr(esc,
                                    "invalid \\u escape: high surrogate \\u%04x without a "
                                    "low surrogate after it",
                                    cp);
                    p->pos += 6;
                    code = 0x10000u + (((uint32_t)cp - 0xd800u) << 10) + ((uint32_t)lo - 0xdc00u);
                }
                n += put_utf8(buf + n, code);
                break;
            }
            default:
                if (e >= 0x21 && e < 0x7f) return perr(esc, "invalid escape '\\%c' in string", e);
                return perr(esc, "invalid escape (backslash then byte 0x%02x) in string", e);
        }
    }
    buf[n] = '\0';
    p->pos = end + 1;
    *out = buf;
    *out_len = n;
    return BL_OK;
}

static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static bl_status parse_number(parser *p, bl_json *v) {
    size_t start = p->pos, i = p->pos;
    const unsigned char *s = p->s;
    if (i < p->len && s[i] == '-') i++;
    if (i >= p->len || !is_digit(s[i])) return perr(start, "invalid number: no digits");
    if (s[i] == '0') {
        i++;
        if (i < p->len && is_digit(s[i])) return perr(start, "invalid number: leading zero");
    } else {
        while (i < p->len && is_digit(s[i])) i++;
    }
    if (i < p->len && s[i] == '.') {
        i++;
        if (i >= p->len || !is_digit(s[i])) return perr(start, "invalid number: no digits after '.'");
        while (i < p->len && is_digit(s[i])) i++;
    }
    if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < p->len && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= p->len || !is_digit(s[i])) return perr(start, "invalid number: no digits in exponent");
        while (i < p->len && is_digit(s[i])) i++;
    }
    size_t n = i - start;
    char *lit = arena_alloc(p, n + 1);
    if (!lit) return BL_ERR_OUT_OF_MEMORY;
    memcpy(lit, s + start, n);
    lit[n] = '\0';
    /* strtod reads the C locale's decimal point; beamlet never calls setlocale. */
    double d = strtod(lit, NULL);
    if (isinf(d)) return perr(start, "number %.40s is out of the range of a double", lit);
    v->type = BL_JSON_NUMBER;
    v->number = d;
    v->str = lit;
    v->len = n;
    p->pos = i;
    return BL_OK;
}

static int key_cmp(const bl_json *a, const bl_json *b) {
    size_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
    int c = memcmp(a->key, b->key, n);
    if (c) return c;
    return (a->key_len > b->key_len) - (a->key_len < b->key_len);
}

static int key_cmp_qsort(const void *a, const void *b) {
    return key_cmp(*(const bl_json *const *)a, *(const bl_json *const *)b);
}

static bl_status parse_value(parser *p, bl_json *v, int depth);

/* Turns the sibling list of a container into arrays; for objects also the sorted index,
 * which finds duplicate keys in O(n log n) (hostile headers can hold millions of keys). */
static bl_status finish_container(parser *p, bl_json *v, bl_json *first) {
    if (v->count == 0) return BL_OK;
    const bl_json **items = arena_alloc(p, v->count * sizeof *items);
    if (!items) return BL_ERR_OUT_OF_MEMORY;
    size_t i = 0;
    for (bl_json *c = first; c; c = c->next) items[i++] = c;
    v->items = items;
    if (v->type != BL_JSON_OBJECT) return BL_OK;
    const bl_json **sorted = arena_alloc(p, v->count * sizeof *sorted);
    if (!sorted) return BL_ERR_OUT_OF_MEMORY;
    memcpy(sorted, items, v->count * sizeof *sorted);
    qsort(sorted, v->count, sizeof *sorted, key_cmp_qsort);
    v->sorted = sorted;
    for (i = 1; i < v->count; i++) {
        if (key_cmp(sorted[i - 1], sorted[i]) == 0) {
            const bl_json *later =
                sorted[i]->key_offset > sorted[i - 1]->key_offset ? sorted[i] : sorted[i - 1];
            char shown[64];
            return perr(later->key_offset, "duplicate object key \"%s\"",
                        printable(later->key, later->key_len, shown, sizeof shown));
        }
    }
    return BL_OK;
}

static bl_status parse_container(parser *p, bl_json *v, int depth) {
    bool object = p->s[p->pos] == '{';
    if (depth >= BL_JSON_MAX_DEPTH) return perr(p->pos, "nesting deeper than %d levels", BL_JSON_MAX_DEPTH);
    v->type = object ? BL_JSON_OBJECT : BL_JSON_ARRAY;
    char close = object ? '}' : ']';
    p->pos++;
    skip_ws(p);
    bl_json *first = NULL, *last = NULL;
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        return BL_OK;
    }
    for (;;) {
        bl_json *child = arena_alloc(p, sizeof *child);
        if (!child) return BL_ERR_OUT_OF_MEMORY;
        memset(child, 0, sizeof *child);
        if (object) {
            if (p->pos >= p->len || p->s[p->pos] != '"')
                return unexpected(p, v->count == 0 ? "a string key or '}'" : "a string key");
            child->key_offset = p->pos;
            BL_TRY(parse_string(p, &child->key, &child->key_len));
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':') return unexpected(p, "':' after object key");
            p->pos++;
            skip_ws(p);
        }
        BL_TRY(parse_value(p, child, depth + 1));
        if (last)
            last->next = child;
        else
            first = child;
        last = child;
        v->count++;
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            skip_ws(p);
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == close) {
            p->pos++;
            break;
        }
        return unexpected(p, object ? "',' or '}' after object member" : "',' or ']' after array element");
    }
    return finish_container(p, v, first);
}

static bool match_word(parser *p, const char *word) {
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0) return false;
    p->pos += n;
    return true;
}

static bl_status parse_value(parser *p, bl_json *v, int depth) {
    v->offset = p->pos;
    if (p->pos >= p->len) return unexpected(p, "a value");
    unsigned char c = p->s[p->pos];
    switch (c) {
        case '{':
        case '[': return parse_container(p, v, depth);
        case '"': v->type = BL_JSON_STRING; return parse_string(p, &v->str, &v->len);
        case 't':
        case 'f':
        case 'n':
            if (match_word(p, "true")) {
                v->type = BL_JSON_BOOL;
                v->boolean = true;
            } else if (match_word(p, "false")) {
                v->type = BL_JSON_BOOL;
            } else if (match_word(p, "null")) {
                v->type = BL_JSON_NULL;
            } else {
                return unexpected(p, "a value");
            }
            return BL_OK;
        default:
            if (c == '-' || is_digit(c)) return parse_number(p, v);
            return unexpected(p, "a value");
    }
}

void bl_json_free(bl_json *root) {
    if (!root) return;
    json_doc *doc = (json_doc *)root;
    json_chunk *c = doc->chunks;
    while (c) {
        json_chunk *next = c->next;
        free(c);
        c = next;
    }
    free(doc);
}

bl_status bl_json_parse(const char *text, size_t len, bl_json **out) {
    *out = NULL;
    if (!text && len) return bl_error(BL_ERR_INVALID_ARG, "JSON: NULL text");
    json_doc *doc = calloc(1, sizeof *doc);
    if (!doc) return bl_error(BL_ERR_OUT_OF_MEMORY, "JSON: out of memory");
    doc->next_chunk = 4096;
    parser p = {(const unsigned char *)text, len, 0, doc};
    skip_ws(&p);
    bl_status s = parse_value(&p, &doc->root, 0);
    if (s == BL_OK) {
        skip_ws(&p);
        if (p.pos != len) s = perr(p.pos, "unexpected data after the JSON value");
    }
    if (s != BL_OK) {
        bl_json_free(&doc->root);
        return s;
    }
    *out = &doc->root;
    return BL_OK;
}

/* ---- accessors -------------------------------------------------------------------------- */

bl_json_type bl_json_type_of(const bl_json *v) { return v ? v->type : BL_JSON_NULL; }

const char *bl_json_type_name(bl_json_type type) {
    switch (type) {
        case BL_JSON_NULL: return "null";
        case BL_JSON_BOOL: return "bool";
        case BL_JSON_NUMBER: return "number";
        case BL_JSON_STRING: return "string";
        case BL_JSON_ARRAY: return "array";
        case BL_JSON_OBJECT: return "object";
    }
    return "invalid";
}

size_t bl_json_offset(const bl_json *v) { return v ? v->offset : 0; }
bool bl_json_bool(const bl_json *v) { return v && v->type == BL_JSON_BOOL && v->boolean; }
double bl_json_number(const bl_json *v) { return v && v->type == BL_JSON_NUMBER ? v->number : 0.0; }
const char *bl_json_string(const bl_json *v) { return v && v->type == BL_JSON_STRING ? v->str : NULL; }
size_t bl_json_string_len(const bl_json *v) { return v && v->type == BL_JSON_STRING ? v->len : 0; }

/* Parses the magnitude of an integer literal; false if it has a fraction or exponent. */
static bool literal_magnitude(const bl_json *v, bool *negative, uint64_t *mag, bool *overflow) {
    const char *s = v->str;
    *negative = *s == '-';
    if (*negative) s++;
    *mag = 0;
    *overflow = false;
    for (; *s; s++) {
        if (!is_digit((unsigned char)*s)) return false;
        uint64_t d = (uint64_t)(*s - '0');
        if (*mag > (UINT64_MAX - d) / 10)
            *overflow = true;
        else
            *mag = *mag * 10 + d;
    }
    return true;
}

static bl_status not_integer(const bl_json *v) {
    if (!v) return bl_error(BL_ERR_FORMAT, "expected an integer, got nothing");
    if (v->type != BL_JSON_NUMBER)
        return bl_error(BL_ERR_FORMAT, "expected an integer, got %s %s",
                        v->type == BL_JSON_ARRAY || v->type == BL_JSON_OBJECT ? "an" : "a",
                        bl_json_type_name(v->type));
    return bl_error(BL_ERR_FORMAT, "expected an integer, got %.40s", v->str);
}

bl_status bl_json_int64(const bl_json *v, int64_t *out) {
    bool neg, overflow;
    uint64_t mag;
    if (!v || v->type != BL_JSON_NUMBER || !literal_magnitude(v, &neg, &mag, &overflow))
        return not_integer(v);
    if (overflow || mag > (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX))
        return bl_error(BL_ERR_FORMAT, "integer %.40s is out of the range of int64", v->str);
    *out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return BL_OK;
}

bl_status bl_json_uint64(const bl_json *v, uint64_t *out) {
    bool neg, overflow;
    uint64_t mag;
    if (!v || v->type != BL_JSON_NUMBER || !literal_magnitude(v, &neg, &mag, &overflow))
        return not_integer(v);
    if (overflow || (neg && mag != 0))
        return bl_error(BL_ERR_FORMAT, "integer %.40s is out of the range of uint64", v->str);
    *out = mag;
    return BL_OK;
}

size_t bl_json_len(const bl_json *v) {
    return v && (v->type == BL_JSON_ARRAY || v->type == BL_JSON_OBJECT) ? v->count : 0;
}

const bl_json *bl_json_array_at(const bl_json *v, size_t i) {
    if (!v || v->type != BL_JSON_ARRAY || i >= v->count) return NULL;
    return v->items[i];
}

const bl_json *bl_json_object_at(const bl_json *v, size_t i, const char **key) {
    if (!v || v->type != BL_JSON_OBJECT || i >= v->count) return NULL;
    if (key) *key = v->items[i]->key;
    return v->items[i];
}

const char *bl_json_object_key(const bl_json *v, size_t i, size_t *len) {
    if (!v || v->type != BL_JSON_OBJECT || i >= v->count) return NULL;
    if (len) *len = v->items[i]->key_len;
    return v->items[i]->key;
}

const bl_json *bl_json_object_getn(const bl_json *v, const char *key, size_t key_len) {
    if (!v || v->type != BL_JSON_OBJECT || !key) return NULL;
    bl_json probe;
    probe.key = key;
    probe.key_len = key_len;
    size_t lo = 0, hi = v->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(v->sorted[mid], &probe);
        if (c == 0) return v->sorted[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const bl_json *bl_json_object_get(const bl_json *v, const char *key) {
    return key ? bl_json_object_getn(v, key, strlen(key)) : NULL;
}

bool bl_json_utf8_valid(const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq(u + i, len - i);
        if (k == 0) return false;
        i += k;
    }
    return true;
}

/* ---- writer ----------------------------------------------------------------------------- */

typedef struct writer_frame {
    bool object;
    bool have_key; /* object: a key was written and its value is due */
    size_t count;
} writer_frame;

struct bl_json_writer {
    char *buf;
    size_t len, cap;
    bl_status status;
    char error[160];
    int depth;
    size_t top_values;
    writer_frame stack[BL_JSON_MAX_DEPTH];
};

bl_status bl_json_writer_new(bl_json_writer **out) {
    *out = NULL;
    bl_json_writer *w = calloc(1, sizeof *w);
    if (!w) return bl_error(BL_ERR_OUT_OF_MEMORY, "JSON writer: out of memory");
    w->cap = 256;
    w->buf = malloc(w->cap);
    if (!w->buf) {
        free(w);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "JSON writer: out of memory");
    }
    w->buf[0] = '\0';
    *out = w;
    return BL_OK;
}

void bl_json_writer_free(bl_json_writer *w) {
    if (!w) return;
    free(w->buf);
    free(w);
}

void bl_json_writer_reset(bl_json_writer *w) {
    w->len = 0;
    w->buf[0] = '\0';
    w->status = BL_OK;
    w->error[0] = '\0';
    w->depth = 0;
    w->top_values = 0;
}

static void wfail(bl_json_writer *w, bl_status s, const char *msg) {
    if (w->status != BL_OK) return; /* keep the first problem: later ones follow from it */
    w->status = s;
    snprintf(w->error, sizeof w->error, "%s", msg);
}

static void wput(bl_json_writer *w, const char *s, size_t n) {
    if (w->status != BL_OK) return;
    if (w->cap - w->len <= n) {
        size_t cap = w->cap;
        while (cap - w->len <= n) {
            if (cap > SIZE_MAX / 2) {
                wfail(w, BL_ERR_OUT_OF_MEMORY, "output too large");
                return;
            }
            cap *= 2;
        }
        char *b = realloc(w->buf, cap);
        if (!b) {
            wfail(w, BL_ERR_OUT_OF_MEMORY, "out of memory");
            return;
        }
        w->buf = b;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

/* Emits the separator a value needs here and checks that a value may come here at all. */
static bool before_value(bl_json_writer *w) {
    if (w->status != BL_OK) return false;
    if (w->depth == 0) {
        if (w->top_values++ > 0) {
            wfail(w, BL_ERR_INVALID_ARG, "more than one top-level value (reset between records)");
            return false;
        }
        return true;
    }
    writer_frame *f = &w->stack[w->depth - 1];
    if (f->object) {
        if (!f->have_key) {
            wfail(w, BL_ERR_INVALID_ARG, "object member value written without a key");
            return false;
        }
        f->have_key = false;
        return true;
    }
    if (f->count++ > 0) wput(w, ",", 1);
    return true;
}

static void put_escaped(bl_json_writer *w, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    wput(w, "\"", 1);
    size_t run = 0; /* start of the pending stretch of bytes that need no escaping */
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        const char *esc = NULL;
        char ubuf[7];
        if (c == '"')
            esc = "\\\"";
        else if (c == '\\')
            esc = "\\\\";
        else if (c == '\b')
            esc = "\\b";
        else if (c == '\f')
            esc = "\\f";
        else if (c == '\n')
            esc = "\\n";
        else if (c == '\r')
            esc = "\\r";
        else if (c == '\t')
            esc = "\\t";
        else if (c < 0x20) {
            memcpy(ubuf, "\\u00", 4);
            ubuf[4] = hex[c >> 4];
            ubuf[5] = hex[c & 15];
            ubuf[6] = '\0';
            esc = ubuf;
        }
        if (esc) {
            wput(w, s + run, i - run);
            wput(w, esc, strlen(esc));
            run = ++i;
            continue;
        }
        size_t k = utf8_seq(u + i, n - i);
        if (k == 0) {
            wfail(w, BL_ERR_INVALID_ARG, "string is not valid UTF-8");
            return;
        }
        i += k;
    }
    wput(w, s + run, n - run);
    wput(w, "\"", 1);
}

void bl_json_write_begin_object(bl_json_writer *w) {
    if (!before_value(w)) return;
    if (w->depth >= BL_JSON_MAX_DEPTH) {
        wfail(w, BL_ERR_INVALID_ARG, "nesting too deep");
        return;
    }
    w->stack[w->depth++] = (writer_frame){true, false, 0};
    wput(w, "{", 1);
}

void bl_json_write_begin_array(bl_json_writer *w) {
    if (!before_value(w)) return;
    if (w->depth >= BL_JSON_MAX_DEPTH) {
        wfail(w, BL_ERR_INVALID_ARG, "nesting too deep");
        return;
    }
    w->stack[w->depth++] = (writer_frame){false, false, 0};
    wput(w, "[", 1);
}

static void end_container(bl_json_writer *w, bool object) {
    if (w->status != BL_OK) return;
    if (w->depth == 0 || w->stack[w->depth - 1].object != object) {
        wfail(w, BL_ERR_INVALID_ARG,
              object ? "end of object without a matching begin" : "end of array without a matching begin");
        return;
    }
    if (object && w->stack[w->depth - 1].have_key) {
        wfail(w, BL_ERR_INVALID_ARG, "object ended after a key without its value");
        return;
    }
    w->depth--;
    wput(w, object ? "}" : "]", 1);
}

void bl_json_write_end_object(bl_json_writer *w) { end_container(w, true); }
void bl_json_write_end_array(bl_json_writer *w) { end_container(w, false); }

void bl_json_write_key(bl_json_writer *w, const char *key) {
    if (w->status != BL_OK) return;
    if (w->depth == 0 || !w->stack[w->depth - 1].object) {
        wfail(w, BL_ERR_INVALID_ARG, "key written outside an object");
        return;
    }
    writer_frame *f = &w->stack[w->depth - 1];
    if (f->have_key) {
        wfail(w, BL_ERR_INVALID_ARG, "two keys in a row");
        return;
    }
    if (!key) {
        wfail(w, BL_ERR_INVALID_ARG, "NULL key");
        return;
    }
    if (f->count++ > 0) wput(w, ",", 1);
    put_escaped(w, key, strlen(key));
    wput(w, ":", 1);
    f->have_key = true;
}

void bl_json_write_stringn(bl_json_writer *w, const char *s, size_t len) {
    if (!s && len) {
        wfail(w, BL_ERR_INVALID_ARG, "NULL string");
        return;
    }
    if (!before_value(w)) return;
    put_escaped(w, s ? s : "", len);
}

void bl_json_write_string(bl_json_writer *w, const char *s) {
    if (!s) {
        wfail(w, BL_ERR_INVALID_ARG, "NULL string");
        return;
    }
    bl_json_write_stringn(w, s, strlen(s));
}

void bl_json_write_int(bl_json_writer *w, int64_t v) {
    if (!before_value(w)) return;
    char b[24];
    int n = snprintf(b, sizeof b, "%" PRId64, v);
    wput(w, b, (size_t)n);
}

void bl_json_write_uint(bl_json_writer *w, uint64_t v) {
    if (!before_value(w)) return;
    char b[24];
    int n = snprintf(b, sizeof b, "%" PRIu64, v);
    wput(w, b, (size_t)n);
}

void bl_json_write_double(bl_json_writer *w, double v) {
    if (!isfinite(v)) {
        bl_json_write_null(w);
        return;
    }
    if (!before_value(w)) return;
    char b[40];
    int n = 0;
    /* The shortest %g precision that reads back exactly: "0.1", not "0.10000000000000001". */
    for (int prec = 1; prec <= 17; prec++) {
        n = snprintf(b, sizeof b, "%.*g", prec, v);
        if (strtod(b, NULL) == v) break;
    }
    wput(w, b, (size_t)n);
}

void bl_json_write_bool(bl_json_writer *w, bool v) {
    if (!before_value(w)) return;
    wput(w, v ? "true" : "false", v ? 4 : 5);
}

void bl_json_write_null(bl_json_writer *w) {
    if (!before_value(w)) return;
    wput(w, "null", 4);
}

bl_status bl_json_writer_finish(bl_json_writer *w, const char **text, size_t *len) {
    if (w->status == BL_OK && w->depth != 0) wfail(w, BL_ERR_INVALID_ARG, "unclosed object or array");
    if (w->status == BL_OK && w->top_values == 0) wfail(w, BL_ERR_INVALID_ARG, "nothing written");
    if (w->status != BL_OK) return bl_error(w->status, "JSON writer: %s", w->error);
    if (text) *text = w->buf;
    if (len) *len = w->len;
    return BL_OK;
}
