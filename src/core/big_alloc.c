/* Large host buffers backed by transparent huge pages.
 *
 * Building a full-width ResNet-18 touches ~190 MB of fresh memory (weights, their staging,
 * folded and reordered copies); in 4 KiB pages that is ~46,000 page faults, which measured as
 * half the time to build the model on the development VM. Buffers of 2 MiB and more are
 * 2 MiB-aligned and advised MADV_HUGEPAGE (the kernel default on Debian and Ubuntu is
 * "madvise"), so they fault in as a few dozen huge pages. The advice is only advice: where
 * huge pages are off, the buffer simply uses small pages. */
#include "beamlet/core.h"

#include <stdlib.h>
#include <sys/mman.h>

void *bl_alloc_big(size_t bytes) {
    enum { HUGE_PAGE = 2u << 20 };
    if (bytes < HUGE_PAGE) return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    size_t rounded = (bytes + HUGE_PAGE - 1) & ~(size_t)(HUGE_PAGE - 1);
    void *p = aligned_alloc(HUGE_PAGE, rounded);
#ifdef MADV_HUGEPAGE
    if (p) (void)madvise(p, rounded, MADV_HUGEPAGE);
#endif
    return p;
}
