/* Filling bl_dataset.source, which is shorter than a path may be: truncation is fine for a
 * label in logs, and doing it by hand keeps -Wformat-truncation quiet. */
#ifndef BEAMLET_IO_DATASET_SOURCE_H
#define BEAMLET_IO_DATASET_SOURCE_H

#include <string.h>

#include "beamlet/datasets.h"

static inline void bl_dataset_set_source(bl_dataset *ds, const char *what, const char *detail) {
    size_t cap = sizeof ds->source - 1, n = strnlen(what, cap);
    memcpy(ds->source, what, n);
    if (detail && n < cap) {
        size_t m = strnlen(detail, cap - n);
        memcpy(ds->source + n, detail, m);
        n += m;
    }
    ds->source[n] = '\0';
}

#endif
