/* Resource hints in Beam's syntax. They are parsed strictly because a typo in a hint would
 * otherwise silently place work on the wrong machine: every refusal names the 1-based position
 * in the text and what was expected there. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pipeline/internal.h"

/* Parses "<number><unit>" with units B, KB, MB, GB, TB (powers of 1000) and KiB..TiB (1024).
 * Returns the offset of the first bad character in *bad (or -1) with a reason. */
static int parse_size(const char *s, size_t n, uint64_t *out, const char **reason) {
    size_t i = 0;
    double v = 0;
    bool digits = false, dot = false;
    double frac = 0.1;
    for (; i < n && (isdigit((unsigned char)s[i]) || (s[i] == '.' && !dot)); i++) {
        if (s[i] == '.') {
            dot = true;
            continue;
        }
        digits = true;
        if (dot) {
            v += (s[i] - '0') * frac;
            frac /= 10;
        } else {
            v = v * 10 + (s[i] - '0');
        }
    }
    if (!digits) {
        *reason = "expected a number (e.g. 16GB)";
        return (int)i;
    }
    static const struct {
        const char *u;
        double m;
    } units[] = {
        {"", 1},      {"B", 1},        {"KB", 1e3},        {"MB", 1e6},           {"GB", 1e9},
        {"TB", 1e12}, {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0}, {"TiB", 1099511627776.0},
    };
    for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
        size_t ul = strlen(units[u].u);
        if (n - i == ul && strncmp(s + i, units[u].u, ul) == 0) {
            double bytes = v * units[u].m;
            if (bytes > 1.8e19) {
                *reason = "size too large";
                return 0;
            }
            *out = (uint64_t)bytes;
            return -1;
        }
    }
    *reason = "unknown size unit (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)";
    return (int)i;
}

bl_status bl_parse_size(const char *s, uint64_t *out) {
    const char *reason = NULL;
    int bad = parse_size(s, strlen(s), out, &reason);
    if (bad >= 0) return bl_error(BL_ERR_FORMAT, "size '%s' at position %d: %s", s, bad + 1, reason);
    return BL_OK;
}

#define HINT_FAIL(pos, ...)                                                                                  \
    do {                                                                                                     \
        char why_[256];                                                                                      \
        snprintf(why_, sizeof why_, __VA_ARGS__);                                                            \
        return bl_error(BL_ERR_FORMAT, "malformed resource hint '%s' at position %zu: %s", text,             \
                        (size_t)(pos) + 1, why_);                                                            \
    } while (0)

/* "AxB" or "AxBxC" of positive integers at text+off (n characters): its chips in *chips, or the
 * offset of the first wrong character in *bad. */
static bool parse_topology(const char *text, size_t off, size_t n, long *chips, size_t *bad) {
    int dims = 0;
    size_t i = off, end = off + n;
    *chips = 1;
    for (;;) {
        size_t d = i;
        long v = 0;
        while (i < end && isdigit((unsigned char)text[i]) && v <= 1024) v = v * 10 + (text[i++] - '0');
        if (i == d || v < 1 || v > 1024 || ++dims > 3) {
            *bad = d;
            return false;
        }
        *chips *= v;
        if (i == end) break;
        if (text[i] != 'x') {
            *bad = i;
            return false;
        }
        i++;
    }
    *bad = end;
    return dims >= 2;
}

/* The accelerator value at text+off (n characters): "type:<name>;count:<n>[;install-nvidia-driver]"
 * for a GPU, "type:tpu[-<generation>];topology:<AxB[xC]>[;count:<n>]" for a TPU. */
static bl_status parse_accelerator(const char *text, size_t off, size_t n, bl_hints *h) {
    size_t type_at = 0, count_at = 0, topo_at = 0, driver_at = 0; /* 1 + offset of the field, 0 = absent */
    long chips = 0;
    size_t i = off, end = off + n;
    while (i < end) {
        size_t j = i;
        while (j < end && text[j] != ';') j++;
        const char *part = text + i;
        size_t len = j - i;
        size_t *seen = NULL;
        const char *field = NULL;
        if (len == 0) HINT_FAIL(i, "empty accelerator field");
        if (len > 5 && strncmp(part, "type:", 5) == 0) {
            seen = &type_at, field = "type";
        } else if (len >= 6 && strncmp(part, "count:", 6) == 0) {
            seen = &count_at, field = "count";
        } else if (len >= 9 && strncmp(part, "topology:", 9) == 0) {
            seen = &topo_at, field = "topology";
        } else if (len == 21 && strncmp(part, "install-nvidia-driver", 21) == 0) {
            seen = &driver_at, field = "install-nvidia-driver";
        } else {
            HINT_FAIL(i,
                      "unknown accelerator field '%.*s' (valid: type:<name>, count:<n>, topology:<AxB>, "
                      "install-nvidia-driver)",
                      (int)len, part);
        }
        if (*seen) HINT_FAIL(i, "%s given twice", field);
        *seen = i + 1;
        if (seen == &type_at) {
            if (len - 5 >= sizeof h->accelerator_type) HINT_FAIL(i + 5, "accelerator type too long");
            for (size_t k = 5; k < len; k++)
                if (!isalnum((unsigned char)part[k]) && part[k] != '-' && part[k] != '_')
                    HINT_FAIL(i + k, "accelerator type may hold letters, digits, '-' and '_'");
            memcpy(h->accelerator_type, part + 5, len - 5);
            h->accelerator_type[len - 5] = 0;
            /* "tpu" or "tpu-<generation>" is a TPU; a near miss ("TPU-v4", "tpuv4") would
             * otherwise be taken for a GPU and placed on the wrong machine. */
            const char *t = h->accelerator_type;
            bool tpu = strncmp(t, "tpu", 3) == 0 && (t[3] == 0 || (t[3] == '-' && t[4]));
            if (!tpu && strncasecmp(t, "tpu", 3) == 0)
                HINT_FAIL(i + 5,
                          "a TPU type is tpu or tpu-<generation> in lower case (e.g. tpu-v5-lite-podslice)");
            h->accelerator_kind = tpu ? BL_ACCEL_TPU : BL_ACCEL_GPU;
        } else if (seen == &count_at) {
            long v = 0;
            if (len == 6) HINT_FAIL(i + 6, "count needs a positive integer");
            for (size_t k = 6; k < len; k++) {
                if (!isdigit((unsigned char)part[k])) HINT_FAIL(i + k, "count needs a positive integer");
                v = v * 10 + (part[k] - '0');
                if (v > 1024) HINT_FAIL(i + 6, "count is larger than 1024");
            }
            if (v < 1) HINT_FAIL(i + 6, "count must be at least 1");
            h->accelerator_count = (int)v;
        } else if (seen == &topo_at) {
            size_t bad;
            if (!parse_topology(text, i + 9, len - 9, &chips, &bad))
                HINT_FAIL(bad, "topology needs AxB or AxBxC of positive integers (e.g. topology:1x1)");
            if (len - 9 >= sizeof h->accelerator_topology) HINT_FAIL(i + 9, "topology too long");
            memcpy(h->accelerator_topology, part + 9, len - 9);
            h->accelerator_topology[len - 9] = 0;
        } else {
            h->install_nvidia_driver = true;
        }
        i = j + 1;
        if (j < end && i == end) HINT_FAIL(j, "trailing ';'");
    }
    if (!type_at) HINT_FAIL(off, "accelerator needs type:<name>");
    if (h->accelerator_kind == BL_ACCEL_GPU) {
        if (topo_at) HINT_FAIL(topo_at - 1, "topology is for TPUs (type:tpu-...); a GPU takes count:<n>");
        if (!count_at) HINT_FAIL(off, "accelerator needs count:<n>");
    } else {
        if (driver_at) HINT_FAIL(driver_at - 1, "install-nvidia-driver is for GPUs, not a TPU");
        if (!topo_at)
            HINT_FAIL(off, "a TPU needs topology:<AxB> (topology:1x1 for one chip, what this build runs)");
        if (chips != 1)
            HINT_FAIL(topo_at + 8,
                      "topology:%s is %ld TPU chips, but this build runs one chip per worker (use "
                      "topology:1x1 and more workers)",
                      h->accelerator_topology, chips);
        if (count_at && h->accelerator_count != chips)
            HINT_FAIL(count_at + 5, "count:%d disagrees with topology:%s, which is %ld chip%s",
                      h->accelerator_count, h->accelerator_topology, chips, chips == 1 ? "" : "s");
        h->accelerator_count = (int)chips;
    }
    h->has_accelerator = true;
    return BL_OK;
}

bl_status bl_hints_parse(const char *text, bl_hints *out) {
    memset(out, 0, sizeof *out);
    if (!text) return BL_OK;
    size_t i = 0, n = strlen(text);
    while (i < n) {
        while (i < n && (text[i] == ' ' || text[i] == ',')) i++;
        if (i == n) break;
        size_t k = i;
        while (k < n && (isalnum((unsigned char)text[k]) || text[k] == '_')) k++;
        if (k == i) HINT_FAIL(i, "expected a hint name (accelerator or min_ram)");
        if (k >= n || text[k] != '=') HINT_FAIL(k, "expected '=' after '%.*s'", (int)(k - i), text + i);
        const char *key = text + i;
        size_t klen = k - i;
        size_t v = k + 1, vend;
        size_t vstart;
        if (v < n && text[v] == '"') {
            vstart = v + 1;
            vend = vstart;
            while (vend < n && text[vend] != '"') vend++;
            if (vend >= n) HINT_FAIL(v, "unterminated quote");
            i = vend + 1;
        } else {
            vstart = v;
            vend = v;
            while (vend < n && text[vend] != ',' && text[vend] != ' ') vend++;
            i = vend;
        }
        if (i < n && text[i] != ',' && text[i] != ' ') HINT_FAIL(i, "expected ',' between hints");
        if (vend == vstart) HINT_FAIL(vstart, "empty value");
        if (klen == 11 && strncmp(key, "accelerator", 11) == 0) {
            if (out->has_accelerator) HINT_FAIL(k - klen, "accelerator given twice");
            BL_TRY(parse_accelerator(text, vstart, vend - vstart, out));
        } else if (klen == 7 && strncmp(key, "min_ram", 7) == 0) {
            const char *reason = NULL;
            int bad = parse_size(text + vstart, vend - vstart, &out->min_ram, &reason);
            if (bad >= 0) HINT_FAIL(vstart + (size_t)bad, "min_ram: %s", reason);
        } else {
            HINT_FAIL(k - klen, "unknown hint '%.*s' (valid: accelerator, min_ram)", (int)klen, key);
        }
    }
    return BL_OK;
}

void bl_hints_merge(bl_hints *outer, const bl_hints *inner) {
    uint64_t ram = outer->min_ram > inner->min_ram ? outer->min_ram : inner->min_ram;
    if (inner->has_accelerator) {
        outer->has_accelerator = true;
        memcpy(outer->accelerator_type, inner->accelerator_type, sizeof outer->accelerator_type);
        outer->accelerator_kind = inner->accelerator_kind;
        outer->accelerator_count = inner->accelerator_count;
        memcpy(outer->accelerator_topology, inner->accelerator_topology, sizeof outer->accelerator_topology);
        outer->install_nvidia_driver = inner->install_nvidia_driver;
    }
    outer->min_ram = ram;
}

void bl_hints_format(const bl_hints *h, char *out, size_t size) {
    int n = 0;
    out[0] = 0;
    if (h->has_accelerator)
        n = snprintf(out, size, "accelerator=type:%s;count:%d%s%s%s", h->accelerator_type,
                     h->accelerator_count, h->accelerator_topology[0] ? ";topology:" : "",
                     h->accelerator_topology, h->install_nvidia_driver ? ";install-nvidia-driver" : "");
    if (h->min_ram && n >= 0 && (size_t)n < size)
        snprintf(out + n, size - (size_t)n, "%smin_ram=%lluB", n ? "," : "", (unsigned long long)h->min_ram);
}

bool bl_caps_fit(const bl_worker_caps *caps, const bl_hints *h) {
    if (h->has_accelerator &&
        (caps->accelerators < h->accelerator_count || caps->accelerator_kind != h->accelerator_kind))
        return false;
    if (h->min_ram && caps->ram < h->min_ram) return false;
    return true;
}
