import Foundation

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
