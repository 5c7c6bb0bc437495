// A cache prefetch hint for Swift (which has no prefetch of its own). Header only: nothing to
// link. Used by the simulator, which knows its next event ahead and is bound by memory latency.
#ifndef WARREN_CPREFETCH_H
#define WARREN_CPREFETCH_H

static inline void warren_prefetch(const void *p) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(p, 0, 3);
#else
    (void)p;
#endif
}

#endif
