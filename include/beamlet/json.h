/* beamlet JSON: a small strict parser and a writer, for safetensors headers, JSON-lines
 * results and configuration.
 *
 * The parser follows RFC 8259 with no extensions and adds what our file formats need: inputs
 * are byte buffers with a length (not NUL-terminated), duplicate object keys are an error
 * (safetensors requires unique tensor names), strings must be valid UTF-8, nesting is limited
 * so hostile input cannot exhaust the stack, and every error names the byte offset and the
 * reason: "JSON: offset 17: expected ':' after object key".
 *
 * The writer emits compact JSON with strings escaped exactly as serde_json (and therefore the
 * reference safetensors implementation) escapes them. */
#ifndef BEAMLET_JSON_H
#define BEAMLET_JSON_H

#include "beamlet/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- parsing ---------------------------------------------------------------------------- */

typedef enum bl_json_type {
    BL_JSON_NULL = 0,
    BL_JSON_BOOL,
    BL_JSON_NUMBER,
    BL_JSON_STRING,
    BL_JSON_ARRAY,
    BL_JSON_OBJECT,
} bl_json_type;

/* A value inside a parsed document. Every value of a document lives in memory owned by the
 * root; pointers to values stay valid until bl_json_free(root). */
typedef struct bl_json bl_json;

#define BL_JSON_MAX_DEPTH 64

/* Parses exactly one JSON value from text[0, len) (whitespace around it allowed, anything
 * else after it is an error). On failure *out is NULL and the message gives the offset. */
bl_status bl_json_parse(const char *text, size_t len, bl_json **out);
/* Frees a document; only ever pass the root returned by bl_json_parse (NULL is fine). */
void bl_json_free(bl_json *root);

bl_json_type bl_json_type_of(const bl_json *v);
const char *bl_json_type_name(bl_json_type type); /* "null", "bool", ... "object" */
/* Byte offset in the parsed text where this value starts (for error messages). */
size_t bl_json_offset(const bl_json *v);

bool bl_json_bool(const bl_json *v);     /* false unless v is true */
double bl_json_number(const bl_json *v); /* 0 unless v is a number */
/* Decoded UTF-8, NUL-terminated; NULL unless v is a string. A string may contain "\u0000",
 * so code that cares uses bl_json_string_len. */
const char *bl_json_string(const bl_json *v);
size_t bl_json_string_len(const bl_json *v);

/* Integer extraction refuses anything but an integer literal (no fraction, no exponent: "1.0"
 * and "1e3" are refused, as serde_json does for the reference safetensors reader) and values
 * outside the target range. The message says what v was; callers add context. */
bl_status bl_json_int64(const bl_json *v, int64_t *out);
bl_status bl_json_uint64(const bl_json *v, uint64_t *out);

/* Number of elements of an array or members of an object; 0 for anything else. */
size_t bl_json_len(const bl_json *v);
/* The i-th element of an array; NULL when out of range or v is not an array. */
const bl_json *bl_json_array_at(const bl_json *v, size_t i);
/* The i-th member of an object in document order; *key (if key is not NULL) gets its
 * decoded name. NULL when out of range or v is not an object. */
const bl_json *bl_json_object_at(const bl_json *v, size_t i, const char **key);
/* The name of the i-th member with its length (a name may contain "\u0000"); NULL when out
 * of range or v is not an object. len may be NULL. */
const char *bl_json_object_key(const bl_json *v, size_t i, size_t *len);
/* The member named key (O(log n)); NULL when absent or v is not an object. */
const bl_json *bl_json_object_get(const bl_json *v, const char *key);
const bl_json *bl_json_object_getn(const bl_json *v, const char *key, size_t key_len);

/* Whether s[0, len) is valid UTF-8 (RFC 3629: no overlong forms, no surrogates), i.e.
 * whether the writer will accept it as a string. */
bool bl_json_utf8_valid(const char *s, size_t len);

/* ---- writing ---------------------------------------------------------------------------- */

/* A growable buffer that emits compact JSON. Calls never fail individually: the first
 * problem (out of memory, a key outside an object, invalid UTF-8, ...) is remembered and
 * returned by bl_json_writer_finish, which keeps call sites free of error plumbing.
 * Commas and colons are inserted automatically. */
typedef struct bl_json_writer bl_json_writer;

bl_status bl_json_writer_new(bl_json_writer **out);
void bl_json_writer_free(bl_json_writer *w);
/* Empties the buffer and forgets any error, e.g. between JSON-lines records. */
void bl_json_writer_reset(bl_json_writer *w);

void bl_json_write_begin_object(bl_json_writer *w);
void bl_json_write_end_object(bl_json_writer *w);
void bl_json_write_begin_array(bl_json_writer *w);
void bl_json_write_end_array(bl_json_writer *w);
/* The name of the next object member. */
void bl_json_write_key(bl_json_writer *w, const char *key);
void bl_json_write_string(bl_json_writer *w, const char *s);
void bl_json_write_stringn(bl_json_writer *w, const char *s, size_t len);
void bl_json_write_int(bl_json_writer *w, int64_t v);
void bl_json_write_uint(bl_json_writer *w, uint64_t v);
/* Shortest text that reads back as the same double. NaN and infinities have no JSON spelling
 * and are written as null, so a diverged training run still yields a parseable record. */
void bl_json_write_double(bl_json_writer *w, double v);
void bl_json_write_bool(bl_json_writer *w, bool v);
void bl_json_write_null(bl_json_writer *w);

/* Checks that exactly one complete value was written and no error happened; on success
 * *text (NUL-terminated, owned by the writer, valid until the next write/reset/free) and
 * *len receive the output. Either pointer may be NULL. */
bl_status bl_json_writer_finish(bl_json_writer *w, const char **text, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
