/* ReadFromText and WriteToText. Workers only format each shard's text; the coordinator writes
 * the shards under temporary names ("<final>.tmp-<run token>") after every stage of the pipeline
 * succeeded, then renames them all. A failed run leaves no file under a final name, and a run
 * killed outside the short commit leaves no file at all. */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipeline/internal.h"

bl_status bl_read_text(bl_pipeline *p, const char *name, const char *pattern, bl_pcoll **out) {
    *out = NULL;
    bl_transform *t;
    BL_TRY(bl_graph_add_transform(p, name, BL_T_READ_TEXT, "ReadFromText", NULL, 0, &t));
    if (!pattern || !*pattern)
        return bl_pipeline_fail(p, bl_error(BL_ERR_INVALID_ARG, "ReadFromText '%s' needs a path", t->name));
    if (!(t->path = strdup(pattern))) return bl_error(BL_ERR_OUT_OF_MEMORY, "path");
    return bl_graph_add_output(p, t, bl_coder_string(), NULL, out);
}

bl_status bl_read_text_files(const char *pattern, bl_elist *out) {
    glob_t g;
    int rc = glob(pattern, 0, NULL, &g);
    if (rc == GLOB_NOMATCH) return bl_error(BL_ERR_NOT_FOUND, "ReadFromText: no file matches '%s'", pattern);
    if (rc != 0) return bl_error(BL_ERR_IO, "ReadFromText: cannot expand '%s'", pattern);
    bl_status s = BL_OK;
    bl_buf b = {0};
    for (size_t f = 0; f < g.gl_pathc && s == BL_OK; f++) {
        void *data;
        size_t size;
        s = bl_file_read_all(g.gl_pathv[f], &data, &size);
        if (s != BL_OK) break;
        const char *c = data, *end = c + size;
        while (c < end && s == BL_OK) {
            const char *nl = memchr(c, '\n', (size_t)(end - c));
            const char *e = nl ? nl : end;
            size_t len = (size_t)(e - c);
            if (len && c[len - 1] == '\r') len--;
            if (memchr(c, 0, len)) {
                s = bl_error(BL_ERR_FORMAT, "%s: line holds a NUL byte", g.gl_pathv[f]);
                break;
            }
            b.len = 0;
            s = bl_buf_put_varint(&b, len); /* the string coder's encoding, built directly */
            if (s == BL_OK) s = bl_buf_append(&b, c, len);
            if (s == BL_OK) s = bl_elist_push(out, b.data, b.len);
            c = nl ? nl + 1 : end;
        }
        free(data);
    }
    bl_buf_free(&b);
    globfree(&g);
    return s;
}

bl_status bl_write_text(bl_pipeline *p, const char *name, bl_pcoll *in, const char *prefix,
                        const char *suffix, int num_shards, bl_text_format format) {
    bl_transform *t;
    BL_TRY(bl_graph_add_transform(p, name, BL_T_WRITE_TEXT, "WriteToText", &in, 1, &t));
    if (!prefix || !*prefix)
        return bl_pipeline_fail(p, bl_error(BL_ERR_INVALID_ARG, "WriteToText '%s' needs a prefix", t->name));
    if (num_shards < 0 || num_shards > 99999)
        return bl_pipeline_fail(p, bl_error(BL_ERR_INVALID_ARG,
                                            "WriteToText '%s': num_shards %d "
                                            "out of 0..99999",
                                            t->name, num_shards));
    t->prefix = strdup(prefix);
    t->suffix = strdup(suffix ? suffix : "");
    if (!t->prefix || !t->suffix) return bl_error(BL_ERR_OUT_OF_MEMORY, "WriteToText");
    t->num_shards = num_shards ? num_shards : 1;
    t->format = format;
    return BL_OK;
}

void bl_shard_name(const bl_transform *t, size_t shard, bool temp, uint64_t token, char *out, size_t size) {
    int n = snprintf(out, size, "%s-%05zu-of-%05d%s", t->prefix, shard, t->num_shards, t->suffix);
    if (temp && n >= 0 && (size_t)n < size)
        snprintf(out + n, size - (size_t)n, ".tmp-%016llx", (unsigned long long)token);
}

static bl_status write_all(int fd, const uint8_t *p, size_t n, const char *path) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return bl_error(BL_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        p += w;
        n -= (size_t)w;
    }
    return BL_OK;
}

bl_status bl_format_shard(const bl_plan *plan, const bl_transform *t, bl_eview in, bl_elist *out) {
    const bl_coder *c = plan->p->pc[t->inputs[0]]->coder;
    bool raw = t->format == BL_TEXT_LINES && c == bl_coder_string();
    bl_buf text = {0};
    bl_status s = BL_OK;
    for (size_t i = 0; i < in.n && s == BL_OK; i++) {
        size_t size;
        const uint8_t *d = bl_eview_at(in, i, &size);
        void *v;
        s = bl_coder_decode(c, d, size, &v);
        if (s != BL_OK) break;
        s = raw ? bl_buf_append(&text, v, strlen(v)) : bl_coder_to_json(c, v, &text);
        if (s == BL_OK) s = bl_buf_append(&text, "\n", 1);
        bl_coder_free_value(c, v);
    }
    if (s == BL_OK) s = bl_elist_push(out, text.data, text.len);
    bl_buf_free(&text);
    return bl_error_context(s, "WriteToText '%s'", t->name);
}

static bl_status write_temp(const char *path, const uint8_t *data, size_t size) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return bl_error(BL_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    bl_status s = write_all(fd, data, size, path);
    if (s == BL_OK && fsync(fd) != 0) s = bl_error(BL_ERR_IO, "%s: fsync: %s", path, strerror(errno));
    if (close(fd) != 0 && s == BL_OK) s = bl_error(BL_ERR_IO, "%s: close: %s", path, strerror(errno));
    return s;
}

/* Calls fn on every shard of every WriteToText; stops at the first failure. */
static bl_status each_shard(const bl_plan *plan, const bl_elist *slots, bool stop_on_error,
                            bl_status (*fn)(const bl_transform *, size_t, const uint8_t *, size_t,
                                            uint64_t)) {
    bl_status first = BL_OK;
    for (int si = 0; si < plan->ns; si++) {
        const bl_stage *st = &plan->s[si];
        if (st->kind != BL_S_WRITE) continue;
        const bl_transform *t = plan->p->t[st->t[0]];
        const bl_elist *texts = &slots[st->out_slots[0]];
        bl_eview v = bl_elist_view(texts, 0, texts->n);
        for (size_t k = 0; k < (size_t)t->num_shards; k++) {
            size_t size = 0;
            const uint8_t *d = k < v.n ? bl_eview_at(v, k, &size) : (const uint8_t *)"";
            bl_status s = fn(t, k, d, size, plan->run_token);
            if (s != BL_OK && first == BL_OK) first = s;
            if (s != BL_OK && stop_on_error) return s;
        }
    }
    return first;
}

static bl_status shard_write(const bl_transform *t, size_t k, const uint8_t *d, size_t n, uint64_t token) {
    char tmp[4096];
    bl_shard_name(t, k, true, token, tmp, sizeof tmp);
    return bl_error_context(write_temp(tmp, d, n), "WriteToText '%s'", t->name);
}
static bl_status shard_remove(const bl_transform *t, size_t k, const uint8_t *d, size_t n, uint64_t token) {
    (void)d, (void)n;
    char tmp[4096];
    bl_shard_name(t, k, true, token, tmp, sizeof tmp);
    unlink(tmp);
    return BL_OK;
}
static bl_status shard_rename(const bl_transform *t, size_t k, const uint8_t *d, size_t n, uint64_t token) {
    (void)d, (void)n;
    char tmp[4096], fin[4096];
    bl_shard_name(t, k, true, token, tmp, sizeof tmp);
    bl_shard_name(t, k, false, 0, fin, sizeof fin);
    if (rename(tmp, fin) != 0)
        return bl_error(BL_ERR_IO, "WriteToText '%s': cannot rename %s into place: %s", t->name, tmp,
                        strerror(errno));
    return BL_OK;
}

bl_status bl_commit_text(const bl_plan *plan, const bl_elist *slots) {
    /* All temps first, then all renames: a failure while writing touches no final name. */
    bl_status s = each_shard(plan, slots, true, shard_write);
    if (s == BL_OK) s = each_shard(plan, slots, true, shard_rename);
    if (s != BL_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", bl_last_error());
        each_shard(plan, slots, false, shard_remove);
        return bl_error(s, "%s", msg);
    }
    return BL_OK;
}
