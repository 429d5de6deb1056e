/* Resource hints in Beam's syntax. They are parsed strictly because a typo in a hint would
 * otherwise silently place work on the wrong machine: every refusal names the 1-based position
 * in the text and what was expected there. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* The accelerator value: "type:<name>;count:<n>[;install-nvidia-driver]" starting at text+off. */
static bl_status parse_accelerator(const char *text, size_t off, size_t n, bl_hints *h) {
    bool have_type = false, have_count = false;
    size_t i = off, end = off + n;
    while (i < end) {
        size_t j = i;
        while (j < end && text[j] != ';') j++;
        const char *part = text + i;
        size_t len = j - i;
        if (len == 0) HINT_FAIL(i, "empty accelerator field");
        if (len > 5 && strncmp(part, "type:", 5) == 0) {
            if (len - 5 >= sizeof h->accelerator_type) HINT_FAIL(i + 5, "accelerator type too long");
            for (size_t k = 5; k < len; k++)
                if (!isalnum((unsigned char)part[k]) && part[k] != '-' && part[k] != '_')
                    HINT_FAIL(i + k, "accelerator type may hold letters, digits, '-' and '_'");
            memcpy(h->accelerator_type, part + 5, len - 5);
            h->accelerator_type[len - 5] = 0;
            have_type = true;
        } else if (len >= 6 && strncmp(part, "count:", 6) == 0) {
            long v = 0;
            if (len == 6) HINT_FAIL(i + 6, "count needs a positive integer");
            for (size_t k = 6; k < len; k++) {
                if (!isdigit((unsigned char)part[k])) HINT_FAIL(i + k, "count needs a positive integer");
                v = v * 10 + (part[k] - '0');
                if (v > 1024) HINT_FAIL(i + 6, "count is larger than 1024");
            }
            if (v < 1) HINT_FAIL(i + 6, "count must be at least 1");
            h->accelerator_count = (int)v;
            have_count = true;
        } else if (len == 21 && strncmp(part, "install-nvidia-driver", 21) == 0) {
            h->install_nvidia_driver = true;
        } else {
            HINT_FAIL(i,
                      "unknown accelerator field '%.*s' (valid: type:<name>, count:<n>, "
                      "install-nvidia-driver)",
                      (int)len, part);
        }
        i = j + 1;
        if (j < end && i == end) HINT_FAIL(j, "trailing ';'");
    }
    if (!have_type) HINT_FAIL(off, "accelerator needs type:<name>");
    if (!have_count) HINT_FAIL(off, "accelerator needs count:<n>");
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
        outer->accelerator_count = inner->accelerator_count;
        outer->install_nvidia_driver = inner->install_nvidia_driver;
    }
    outer->min_ram = ram;
}

void bl_hints_format(const bl_hints *h, char *out, size_t size) {
    int n = 0;
    out[0] = 0;
    if (h->has_accelerator)
        n = snprintf(out, size, "accelerator=type:%s;count:%d%s", h->accelerator_type, h->accelerator_count,
                     h->install_nvidia_driver ? ";install-nvidia-driver" : "");
    if (h->min_ram && n >= 0 && (size_t)n < size)
        snprintf(out + n, size - (size_t)n, "%smin_ram=%lluB", n ? "," : "", (unsigned long long)h->min_ram);
}

bool bl_caps_fit(const bl_worker_caps *caps, const bl_hints *h) {
    if (h->has_accelerator && caps->accelerators < h->accelerator_count) return false;
    if (h->min_ram && caps->ram < h->min_ram) return false;
    return true;
}
