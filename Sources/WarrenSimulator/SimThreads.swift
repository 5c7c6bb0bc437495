#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CSimSync
import Synchronization

/// A reusable barrier for the threads of one `Simulator.run` (CSimSync): spins first (windows
/// are short), then sleeps, so that a machine with fewer free cores than threads gives the core
/// to the thread that still has work.
// @unchecked: its state is the C barrier (CSimSync), whose operations are atomic.
final class SimBarrier: @unchecked Sendable {
    let state: UnsafeMutablePointer<warren_barrier>
    /// About 0.2 ms of spinning on this machine (a pause instruction costs ~25 ns here): more
    /// than most waits of an idle run.
    static let spins: UInt32 = 8_192

    init(parties: Int) {
        state = .allocate(capacity: 1)
        warren_barrier_init(state, UInt32(parties))
    }

    deinit { state.deallocate() }

    /// Returns the spins done while waiting.
    func wait() -> UInt32 { warren_barrier_wait(state, SimBarrier.spins) }

    /// CPU nanoseconds of one spin (measured once per process, over 100,000 spins).
    static let spinNanoseconds: Double = {
        let t0 = simThreadCPUNanoseconds()
        warren_spin(100_000)
        return Double(simThreadCPUNanoseconds() &- t0) / 100_000
    }()
}

/// What the threads of one run share: the barrier, and per window parity and shard the time of
/// the shard's next event (its heap's, or the earliest frame it mailed), the shortest latency of
/// its nodes' links, and whether its step budget ran out.
// @unchecked: each slot is written by its shard's thread and read by others only across a barrier.
final class SimSync: @unchecked Sendable {
    let barrier: SimBarrier
    let next: UnsafeMutablePointer<UInt64>
    let shortest: UnsafeMutablePointer<UInt64>
    let aborted: UnsafeMutablePointer<Bool>
    /// Per window parity and thread: CPU time the thread spent on its shards (not spinning at
    /// the barrier) in its last block of windows; per parity: the wall time of that block
    /// (thread 0).
    let cpu: UnsafeMutablePointer<UInt64>
    let wall: UnsafeMutablePointer<UInt64>
    /// Thread 0 took over every shard because the threads were slower than one.
    var demoted = false
    /// Per thread: CPU time on its shards over the whole run; thread 0: the run's wall time.
    let work: UnsafeMutablePointer<UInt64>
    var totalWall: UInt64 = 0
    /// A block of windows whose wall time exceeds this × the threads' CPU time on their shards
    /// ends the threads' part of the run at once (a machine with no core to spare).
    var blockDemoteRatio = 1.5

    init(threads: Int, shards: Int) {
        barrier = SimBarrier(parties: threads)
        next = .allocate(capacity: 2 * shards)
        next.initialize(repeating: .max, count: 2 * shards)
        shortest = .allocate(capacity: 2 * shards)
        shortest.initialize(repeating: .max, count: 2 * shards)
        aborted = .allocate(capacity: 2 * shards)
        aborted.initialize(repeating: false, count: 2 * shards)
        cpu = .allocate(capacity: 2 * threads)
        cpu.initialize(repeating: 0, count: 2 * threads)
        wall = .allocate(capacity: 2)
        wall.initialize(repeating: 0, count: 2)
        work = .allocate(capacity: threads)
        work.initialize(repeating: 0, count: threads)
    }

    deinit {
        next.deallocate()
        shortest.deallocate()
        aborted.deallocate()
        cpu.deallocate()
        wall.deallocate()
        work.deallocate()
    }
}

/// Runs `body(t)` for t in 1..<count on new threads and `body(0)` on this one, and returns true
/// when all have finished. If a thread cannot be created, no body runs and it returns false.
func simRunThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) -> Bool {
    // @unchecked: written before the thread starts, read by that thread only.
    final class Job: @unchecked Sendable {
        let body: @Sendable (Int) -> Void
        let index: Int
        let gate: Gate
        init(_ body: @escaping @Sendable (Int) -> Void, _ index: Int, _ gate: Gate) {
            self.body = body; self.index = index; self.gate = gate
        }
    }
    /// 0: wait; 1: every thread started, run; 2: a thread could not be started, return.
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

func simMonotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// CPU time used by the calling thread (not the time it waited for a core or slept).
func simThreadCPUNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}
