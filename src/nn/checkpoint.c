/* Model weights to and from safetensors under torchvision's names, so a torchvision
 * state_dict saved with safetensors loads as is, and what beamlet saves loads in PyTorch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/model_internal.h"

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static void full_name(char *dst, size_t size, const char *prefix, const char *name) {
    snprintf(dst, size, "%s%s", prefix, name);
}

bl_status bl_model_load_state(bl_model *m, const bl_safetensors *f, const char *prefix) {
    if (!prefix) prefix = "";
    const char *path = bl_safetensors_path(f);
    size_t plen = strlen(prefix);
    /* Every tensor under the prefix must belong to the model. */
    int64_t tracked = -1;
    for (size_t i = 0; i < bl_safetensors_count(f); i++) {
        const bl_st_tensor *t = bl_safetensors_at(f, i);
        if (strncmp(t->name, prefix, plen) != 0) continue;
        const char *name = t->name + plen;
        if (ends_with(name, "num_batches_tracked")) {
            if (t->dtype != BL_I64 || t->ndim != 0)
                return bl_error(BL_ERR_FORMAT, "%s: tensor '%s': expected an I64 scalar", path, t->name);
            memcpy(&tracked, t->data, sizeof tracked);
            continue;
        }
        if (!bl_model_find_param(m, name))
            return bl_error(BL_ERR_FORMAT,
                            "%s: tensor '%s' is not a parameter of this ResNet-%d "
                            "(width %d, %d classes)",
                            path, t->name, m->cfg.depth, m->cfg.width, m->cfg.num_classes);
    }
    float *host = NULL;
    size_t host_floats = 0;
    bl_status s = BL_OK;
    for (int i = 0; i < m->nparams && s == BL_OK; i++) {
        param *p = &m->params[i];
        char name[256];
        full_name(name, sizeof name, prefix, p->name);
        int64_t n = bl_tensor_numel(&p->info.value);
        if ((size_t)n > host_floats) {
            float *grown = realloc(host, (size_t)n * sizeof(float));
            if (!grown) {
                s = bl_error(BL_ERR_OUT_OF_MEMORY, "%s: staging %lld floats", path, (long long)n);
                break;
            }
            host = grown;
            host_floats = (size_t)n;
        }
        s = bl_safetensors_read_f32(f, name, p->ndim, p->shape, host);
        if (s == BL_ERR_NOT_FOUND)
            s = bl_error(BL_ERR_FORMAT, "%s: missing tensor '%s' that ResNet-%d needs", path, name,
                         m->cfg.depth);
        if (s == BL_OK) s = bl_tensor_upload_nchw_f32(&p->info.value, host);
    }
    free(host);
    if (s != BL_OK) return s;
    if (tracked >= 0) m->batches_tracked = tracked;
    m->folded_valid = false;
    return BL_OK;
}

bl_status bl_model_load(bl_model *m, const char *path) {
    bl_safetensors *f;
    BL_TRY(bl_safetensors_open(path, &f));
    bl_status s = bl_model_load_state(m, f, "");
    bl_safetensors_close(f);
    return s;
}

bl_status bl_model_write_state(const bl_model *m, bl_safetensors_writer *w, const char *prefix) {
    if (!prefix) prefix = "";
    float *host = NULL;
    size_t host_floats = 0;
    bl_status s = BL_OK;
    for (int i = 0; i < m->nparams && s == BL_OK; i++) {
        const param *p = &m->params[i];
        int64_t n = bl_tensor_numel(&p->info.value);
        if ((size_t)n > host_floats) {
            float *grown = realloc(host, (size_t)n * sizeof(float));
            if (!grown) {
                s = bl_error(BL_ERR_OUT_OF_MEMORY, "saving: staging %lld floats", (long long)n);
                break;
            }
            host = grown;
            host_floats = (size_t)n;
        }
        char name[256];
        full_name(name, sizeof name, prefix, p->name);
        s = bl_tensor_download_f32(&p->info.value, host);
        if (s == BL_OK) s = bl_safetensors_writer_add(w, name, BL_F32, p->ndim, p->shape, host);
        /* torchvision keeps a num_batches_tracked counter after each batch norm's running_var. */
        if (s == BL_OK && ends_with(p->name, ".running_var")) {
            char tracked[256];
            size_t stem = strlen(name) - strlen("running_var");
            snprintf(tracked, sizeof tracked, "%.*snum_batches_tracked", (int)stem, name);
            int64_t count = m->batches_tracked;
            s = bl_safetensors_writer_add(w, tracked, BL_I64, 0, NULL, &count);
        }
    }
    free(host);
    return s;
}

bl_status bl_model_save(const bl_model *m, const char *path, const char *const *keys,
                        const char *const *values, int nmeta) {
    bl_safetensors_writer *w;
    BL_TRY(bl_safetensors_writer_new(&w));
    bl_status s = bl_model_write_state(m, w, "");
    char arch[64];
    snprintf(arch, sizeof arch, "resnet%d", m->cfg.depth);
    if (s == BL_OK) s = bl_safetensors_writer_set_metadata(w, "beamlet_model", arch);
    for (int i = 0; i < nmeta && s == BL_OK; i++)
        s = bl_safetensors_writer_set_metadata(w, keys[i], values[i]);
    if (s == BL_OK) s = bl_safetensors_writer_commit(w, path);
    bl_safetensors_writer_free(w);
    if (s != BL_OK) return bl_error_context(s, "saving %s", path);
    return BL_OK;
}

static const char *shape_text(char *buf, size_t size, const bl_st_tensor *t) {
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < t->ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ",%lld" : "%lld", (long long)t->shape[i]);
    if (used < size) snprintf(buf + used, size - used, "]");
    return buf;
}

bl_status bl_resnet_config_from_safetensors(const bl_safetensors *f, const char *prefix,
                                            bl_resnet_config *out) {
    if (!prefix) prefix = "";
    char name[256], c1s[128], fcs[128];
    const char *path = bl_safetensors_path(f);
    full_name(name, sizeof name, prefix, "conv1.weight");
    const bl_st_tensor *c1 = bl_safetensors_find(f, name);
    full_name(name, sizeof name, prefix, "fc.weight");
    const bl_st_tensor *fc = bl_safetensors_find(f, name);
    if (!c1 || c1->ndim != 4 || !fc || fc->ndim != 2)
        return bl_error(BL_ERR_FORMAT,
                        "%s: not a torchvision-layout ResNet (no 4-D %sconv1.weight and 2-D "
                        "%sfc.weight)",
                        path, prefix, prefix);
    shape_text(c1s, sizeof c1s, c1);
    shape_text(fcs, sizeof fcs, fc);
    /* The shapes are the file's word: range-check them before they become ints (2^32 + 8
     * would truncate to width 8) and before a model is sized from them. */
    if (c1->shape[0] < 1 || c1->shape[0] > BL_RESNET_MAX_WIDTH)
        return bl_error(BL_ERR_FORMAT, "%s: %sconv1.weight %s: width %lld is out of range (1 to %d)", path,
                        prefix, c1s, (long long)c1->shape[0], BL_RESNET_MAX_WIDTH);
    if (c1->shape[1] < 1 || c1->shape[1] > BL_RESNET_MAX_IN_CHANNELS)
        return bl_error(BL_ERR_FORMAT, "%s: %sconv1.weight %s: %lld input channels is out of range (1 to %d)",
                        path, prefix, c1s, (long long)c1->shape[1], BL_RESNET_MAX_IN_CHANNELS);
    if (c1->shape[2] != c1->shape[3] || (c1->shape[2] != 7 && c1->shape[2] != 3))
        return bl_error(BL_ERR_FORMAT,
                        "%s: %sconv1.weight %s: kernel %lldx%lld is neither the ImageNet (7x7) nor "
                        "the CIFAR (3x3) stem",
                        path, prefix, c1s, (long long)c1->shape[2], (long long)c1->shape[3]);
    if (fc->shape[0] < 1 || fc->shape[0] > BL_RESNET_MAX_CLASSES)
        return bl_error(BL_ERR_FORMAT, "%s: %sfc.weight %s: %lld classes is out of range (1 to %d)", path,
                        prefix, fcs, (long long)fc->shape[0], BL_RESNET_MAX_CLASSES);
    if (fc->shape[1] != 8 * c1->shape[0])
        return bl_error(BL_ERR_FORMAT,
                        "%s: %sfc.weight %s takes %lld inputs, but %sconv1.weight's width %lld ends "
                        "layer4 with %lld channels",
                        path, prefix, fcs, (long long)fc->shape[1], prefix, (long long)c1->shape[0],
                        (long long)(8 * c1->shape[0]));
    *out = bl_resnet_config_default();
    out->width = (int)c1->shape[0];
    out->in_channels = (int)c1->shape[1];
    out->num_classes = (int)fc->shape[0];
    out->stem = c1->shape[2] == 7 ? BL_RESNET_STEM_IMAGENET : BL_RESNET_STEM_CIFAR;
    full_name(name, sizeof name, prefix, "layer1.2.conv1.weight");
    out->depth = bl_safetensors_find(f, name) ? 34 : 18;
    full_name(name, sizeof name, prefix, "layer4.0.conv1.weight");
    if (!bl_safetensors_find(f, name))
        return bl_error(BL_ERR_FORMAT, "%s: no %slayer4.0.conv1.weight: not a ResNet-18/34", path, prefix);
    return BL_OK;
}
