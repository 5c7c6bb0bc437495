#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// A reusable barrier for the threads of one `Simulator.run`: spins (windows are short), then
/// yields the core so that a machine with fewer free cores than threads still makes progress.
final class SimBarrier: Sendable {
    let parties: Int
    let arrived = Atomic<Int>(0)
    let generation = Atomic<Int>(0)

    init(parties: Int) { self.parties = parties }

    func wait() {
        let g = generation.load(ordering: .acquiring)
        if arrived.wrappingAdd(1, ordering: .acquiringAndReleasing).newValue == parties {
            arrived.store(0, ordering: .relaxed)
            generation.wrappingAdd(1, ordering: .releasing)
            return
        }
        var spins = 0
        while generation.load(ordering: .acquiring) == g {
            spins += 1
            if spins > 4_000 { sched_yield() }
        }
    }
}

/// What the threads of one run share: the barrier, and per window parity and shard the time of
/// the shard's next event (its heap's, or the earliest frame it mailed), the shortest latency of
/// its nodes' links, and whether its step budget ran out.
final class SimSync: @unchecked Sendable {
    let barrier: SimBarrier
    let shards: Int
    let next: UnsafeMutablePointer<UInt64>
    let shortest: UnsafeMutablePointer<UInt64>
    let aborted: UnsafeMutablePointer<Bool>

    init(threads: Int, shards: Int) {
        barrier = SimBarrier(parties: threads)
        self.shards = shards
        next = .allocate(capacity: 2 * shards)
        next.initialize(repeating: .max, count: 2 * shards)
        shortest = .allocate(capacity: 2 * shards)
        shortest.initialize(repeating: .max, count: 2 * shards)
        aborted = .allocate(capacity: 2 * shards)
        aborted.initialize(repeating: false, count: 2 * shards)
    }

    deinit {
        next.deallocate()
        shortest.deallocate()
        aborted.deallocate()
    }
}

/// Carries values that the simulator hands to its own worker threads, which touch disjoint
/// shards and nodes between barriers.
struct SimUnchecked<T>: @unchecked Sendable { let value: T }

/// Runs `body(t)` for t in 1..<count on new threads and `body(0)` on this one, and returns true
/// when all have finished. If a thread cannot be created, no body runs and it returns false.
func simRunThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) -> Bool {
    final class Job: @unchecked Sendable {
        let body: @Sendable (Int) -> Void
        let index: Int
        /// 0: wait, 1: run, 2: every thread could not be started, return.
        let gate: Gate
        init(_ body: @escaping @Sendable (Int) -> Void, _ index: Int, _ gate: Gate) {
            self.body = body; self.index = index; self.gate = gate
        }
    }
    final class Gate: Sendable { let state = Atomic<Int>(0) }
    let gate = Gate()
    var tids: [pthread_t] = []
    var ok = true
    for t in 1..<max(count, 1) {
        let job = Unmanaged.passRetained(Job(body, t, gate)).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { p in
            let job = Unmanaged<Job>.fromOpaque(p!).takeRetainedValue()
            var s = job.gate.state.load(ordering: .acquiring)
            while s == 0 { sched_yield(); s = job.gate.state.load(ordering: .acquiring) }
            if s == 1 { job.body(job.index) }
            return nil
        }, job)
        if rc != 0 {
            Unmanaged<Job>.fromOpaque(job).release()
            ok = false
            break
        }
        tids.append(tid)
    }
    gate.state.store(ok ? 1 : 2, ordering: .releasing)
    if ok { body(0) }
    for tid in tids { pthread_join(tid, nil) }
    return ok
}
