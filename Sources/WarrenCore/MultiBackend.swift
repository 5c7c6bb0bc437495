/// Fans publish, subscribe and unsubscribe out to several backends (cunīcu's multi backend).
/// `publish` succeeds if at least one backend accepted the message; `subscribe` returns true if
/// any backend created a first subscription; `unsubscribe` true if any removed the last handler.
public final class MultiBackend: Backend {
    public let backends: [any Backend]

    public init(_ backends: [any Backend]) { self.backends = backends }

    public var type: BackendType { .multi }

    public func publish(_ kp: KeyPair, _ message: SignalingMessage) async throws {
        var firstError: (any Error)?
        var ok = false
        for b in backends {
            do { try await b.publish(kp, message); ok = true } catch { firstError = firstError ?? error }
        }
        if !ok, let firstError { throw firstError }
    }

    @discardableResult
    public func subscribe(_ kp: KeyPair, _ handler: any MessageHandler) async throws -> Bool {
        var created = false
        for b in backends { if try await b.subscribe(kp, handler) { created = true } }
        return created
    }

    @discardableResult
    public func unsubscribe(_ kp: KeyPair, _ handler: any MessageHandler) async throws -> Bool {
        var removed = false
        for b in backends { if try await b.unsubscribe(kp, handler) { removed = true } }
        return removed
    }

    public func close() async throws {
        var firstError: (any Error)?
        for b in backends { do { try await b.close() } catch { firstError = firstError ?? error } }
        if let firstError { throw firstError }
    }
}
