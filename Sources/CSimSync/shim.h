// The barrier of the simulator's threads (Sources/WarrenSimulator/SimThreads.swift).
// Header only: nothing to link. A thread that arrives early spins for a while (windows of
// virtual time are short, and on an idle machine the other thread arrives within microseconds),
// then sleeps on a futex, so that on a machine with fewer free cores than threads the thread
// that still has work gets the core instead of a spinning one.
#ifndef WARREN_CSIMSYNC_H
#define WARREN_CSIMSYNC_H

#include <stdint.h>
#include <limits.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#else
#include <sched.h>
#endif

typedef struct {
    uint32_t arrived;
    uint32_t generation;
    uint32_t sleepers;
    uint32_t parties;
} warren_barrier;

static inline void warren_barrier_init(warren_barrier *b, uint32_t parties) {
    b->arrived = 0;
    b->generation = 0;
    b->sleepers = 0;
    b->parties = parties;
}

static inline void warren_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/// Waits until all `parties` threads have called it; `spins` bounds the busy wait before
/// sleeping. Returns the spins done (CPU time spent waiting, see `warren_spin`).
static inline uint32_t warren_barrier_wait(warren_barrier *b, uint32_t spins) {
    uint32_t g = __atomic_load_n(&b->generation, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&b->arrived, 1, __ATOMIC_ACQ_REL) == b->parties) {
        __atomic_store_n(&b->arrived, 0, __ATOMIC_RELAXED);
        __atomic_add_fetch(&b->generation, 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&b->sleepers, __ATOMIC_SEQ_CST) != 0) {
#if defined(__linux__)
            syscall(SYS_futex, &b->generation, FUTEX_WAKE_PRIVATE, INT_MAX, 0, 0, 0);
#endif
        }
        return 0;
    }
    for (uint32_t i = 0; i < spins; i++) {
        if (__atomic_load_n(&b->generation, __ATOMIC_ACQUIRE) != g) return i;
        warren_cpu_relax();
    }
    __atomic_add_fetch(&b->sleepers, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&b->generation, __ATOMIC_SEQ_CST) == g) {
#if defined(__linux__)
        syscall(SYS_futex, &b->generation, FUTEX_WAIT_PRIVATE, g, 0, 0, 0);
#else
        sched_yield();
#endif
    }
    __atomic_sub_fetch(&b->sleepers, 1, __ATOMIC_ACQ_REL);
    return spins;
}

/// The spin loop of `warren_barrier_wait` on a word that never changes, `n` times: timing it
/// gives the CPU cost of one spin.
static inline void warren_spin(uint32_t n) {
    uint32_t word = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (__atomic_load_n(&word, __ATOMIC_ACQUIRE) != 0) return;
        warren_cpu_relax();
    }
}

#endif
