/* Large host buffers backed by transparent huge pages.
 *
 * Building a full-width ResNet-18 and making its first prediction touches ~150 MB of fresh
 * memory (weights, folded weights, oneDNN's blocked copies); in 4 KiB pages that is ~37,000
 * page faults. Buffers of 2 MiB and more are 2 MiB-aligned and advised MADV_HUGEPAGE (the
 * kernel default on Debian and Ubuntu is "madvise"), so they fault in as a few dozen huge
 * pages. Measured on the 2-core development VM (bench_cpu --first, process start to logits):
 * 0.10 s with the advice and 0.17-0.20 s without when launches follow each other; right after
 * a PyTorch process both medians are ~0.185 s (the huge pages then come from memory the
 * hypervisor has not backed yet) and the best launch is 0.12 s against 0.15 s. The advice is
 * only advice: where huge pages are off, the buffer simply uses small pages. */
#include "beamlet/core.h"

#include <stdlib.h>
#include <sys/mman.h>

void *bl_alloc_big(size_t bytes) {
    enum {
        HUGE_PAGE = 2u << 20
    };
    if (bytes < HUGE_PAGE) return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    size_t rounded = (bytes + HUGE_PAGE - 1) & ~(size_t)(HUGE_PAGE - 1);
    void *p = aligned_alloc(HUGE_PAGE, rounded);
#ifdef MADV_HUGEPAGE
    if (p) (void)madvise(p, rounded, MADV_HUGEPAGE);
#endif
    return p;
}
