import Foundation
import Testing

/// Runs long synchronous work (a simulation, a blocking read) on a thread of its own and awaits
/// its result. The cooperative pool has one thread per core — two on this machine — and a test
/// that computes or blocks on it for a minute stalls every other test's tasks meanwhile: their
/// wake-ups wait, and the time bounds of unrelated tests fail.
public func onOwnThread<R: Sendable>(_ body: @escaping @Sendable () -> R) async -> R {
    await withCheckedContinuation { c in
        let t = Thread { c.resume(returning: body()) }
        t.stackSize = 8 << 20
        t.start()
    }
}

/// `onOwnThread` for work that throws: the error is rethrown to the awaiting test.
public func onOwnThread<R: Sendable>(_ body: @escaping @Sendable () throws -> R) async throws -> R {
    try await onOwnThread { Result { try body() } }.get()
}

/// One thread, beside the cooperative pool, that runs the jobs of the tests marked
/// `.computeLane` one after another. Those tests compute for seconds without suspending (a
/// simulation, a property campaign); on the pool two of them at once stall every other test's
/// tasks (CI measured 67 s during which no wake-up ran, and the time bounds of unrelated tests
/// failed). On this lane they share the cores with the pool instead of taking it over, and only
/// one computes at a time, so the rest of the run keeps most of the machine.
final class ComputeLane: TaskExecutor, @unchecked Sendable {   // `jobs` is guarded by `condition`
    static let shared = ComputeLane()
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []

    private init() {
        let t = Thread { [unowned self] in self.run() }
        t.name = "compute-lane"
        t.stackSize = 8 << 20
        t.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private func run() -> Never {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}

/// Runs each test case of a suite or test on the `ComputeLane` (its task prefers that executor,
/// so the test's own code and every await it resumes from run there; `#expect` still reports
/// to the test). For CPU-bound tests; a test that blocks for long (a child process, a socket
/// read) uses `onOwnThread` instead, which does not hold the lane up.
public struct ComputeLaneTrait: TestTrait, SuiteTrait, TestScoping {
    public var isRecursive: Bool { true }

    public func provideScope(for test: Test, testCase: Test.Case?,
                             performing function: @Sendable () async throws -> Void) async throws {
        guard testCase != nil else { return try await function() }   // the suite itself: its cases are wrapped
        try await withTaskExecutorPreference(ComputeLane.shared) { try await function() }
    }
}

extension Trait where Self == ComputeLaneTrait {
    /// Run on the compute lane beside the cooperative pool (`ComputeLaneTrait`).
    public static var computeLane: Self { Self() }
}
