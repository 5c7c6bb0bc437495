import Foundation
import Logging

/// Receives signaling messages. Called on a backend's own thread: return quickly and hop to
/// your own executor for anything slow. Identity (`===`) decides whether two handlers are the
/// same: registering the same handler twice for a pair is a no-op.
public protocol MessageHandler: AnyObject, Sendable {
    func onSignalingMessage(_ pair: PublicKeyPair, _ message: SignalingMessage)
}

/// Told once when a backend can carry messages (cunīcu's `OnSignalingBackendReady`).
public protocol BackendReadyHandler: AnyObject, Sendable {
    func onSignalingBackendReady(_ backend: any Backend)
}

/// A signaling backend: cunīcu's `signaling.Backend`.
///
/// Semantics (the contract every backend keeps):
/// - reliable delivery of envelopes addressed by public key, and to groups (community keys);
/// - messages may arrive out of order; envelopes for recipients nobody subscribed are dropped;
/// - stateless: envelopes are never buffered or recorded (remembering ids to drop duplicates is fine).
public protocol Backend: AnyObject, Sendable {
    /// Seals `message` from `kp.ours` to `kp.theirs` and sends it.
    func publish(_ kp: KeyPair, _ message: SignalingMessage) async throws
    /// Registers `handler` for messages from `kp.theirs` (`.zero`: any sender) to `kp.ours`.
    /// Returns true when this created the first subscription for the private key `kp.ours`.
    @discardableResult
    func subscribe(_ kp: KeyPair, _ handler: any MessageHandler) async throws -> Bool
    /// Removes `handler` for the pair. Returns true when it removed the last handler for that pair.
    /// Throws `BackendError.notSubscribed` if nothing is subscribed for `kp.ours`.
    @discardableResult
    func unsubscribe(_ kp: KeyPair, _ handler: any MessageHandler) async throws -> Bool
    /// Releases everything the backend holds. Further calls throw `BackendError.closed`.
    func close() async throws
    /// The backend's type identifier.
    var type: BackendType { get }
}

/// What creates a backend: its URL, who wants to hear that it is ready, and a logger.
public struct BackendConfig: Sendable {
    public var url: URL
    public var onReady: [any BackendReadyHandler]
    public var logger: Logger

    public init(url: URL, onReady: [any BackendReadyHandler] = [],
                logger: Logger = Logger(label: "warren.backend")) {
        self.url = url
        self.onReady = onReady
        self.logger = logger
    }
}

public enum BackendError: Error, Equatable, Sendable, CustomStringConvertible {
    case closed
    case notSubscribed(Key)
    case unknownScheme(String, known: [String])
    case invalidURL(String, reason: String)
    case envelope(EnvelopeError)
    case envelopeTooLarge(Int, limit: Int)

    /// An `EnvelopeError` as `.envelope`; anything else unchanged.
    public static func wrapping(_ error: any Error) -> any Error {
        if let e = error as? EnvelopeError { return BackendError.envelope(e) }
        return error
    }

    public var description: String {
        switch self {
        case .closed: return "backend is closed"
        case .notSubscribed(let k): return "no subscription for our key \(k.base64)"
        case .unknownScheme(let s, let known):
            return "unknown backend scheme \"\(s)\" (known: \(known.map { $0 + ":" }.joined(separator: ", ")))"
        case .invalidURL(let u, let r): return "invalid backend URL \"\(u)\": \(r)"
        case .envelope(let e): return e.description
        case .envelopeTooLarge(let n, let limit): return "envelope is \(n) bytes; this backend carries at most \(limit)"
        }
    }
}

/// A handler made from a closure.
public final class ClosureMessageHandler: MessageHandler {
    private let body: @Sendable (PublicKeyPair, SignalingMessage) -> Void
    public init(_ body: @escaping @Sendable (PublicKeyPair, SignalingMessage) -> Void) { self.body = body }
    public func onSignalingMessage(_ pair: PublicKeyPair, _ message: SignalingMessage) { body(pair, message) }
}

/// A ready handler made from a closure.
public final class ClosureReadyHandler: BackendReadyHandler {
    private let body: @Sendable (any Backend) -> Void
    public init(_ body: @escaping @Sendable (any Backend) -> Void) { self.body = body }
    public func onSignalingBackendReady(_ backend: any Backend) { body(backend) }
}
