import Foundation
import Logging
import Synchronization

/// `inprocess:` — every instance in this process shares one subscription registry (as cunīcu's
/// does), and every message really goes through seal → serialize → parse → open.
public final class InProcessBackend: Backend {
    /// The registry shared by all in-process backends of this process.
    public static let registry = SubscriptionRegistry()

    private let codec: EnvelopeCodec
    private let logger: Logger
    private let closed = Atomic<Bool>(false)

    public init(config: BackendConfig = BackendConfig(url: URL(string: "inprocess:")!),
                codec: EnvelopeCodec = .shared) {
        self.codec = codec
        self.logger = config.logger
        for h in config.onReady { h.onSignalingBackendReady(self) }
    }

    public var type: BackendType { .inprocess }

    public func publish(_ kp: KeyPair, _ message: SignalingMessage) async throws {
        try checkOpen()
        let bytes: [UInt8]
        do { bytes = try codec.sealBytes(message, from: kp.ours, to: kp.theirs) } catch { throw BackendError.wrapping(error) }
        try deliver(bytes)
    }

    /// Hands serialized envelope bytes to the shared registry, as if they had crossed a network.
    public func deliver(_ bytes: [UInt8]) throws {
        do {
            try Self.registry.dispatch(bytes, codec: codec)
        } catch {
            logger.debug("dropped envelope", metadata: ["reason": "\(error)"])
            throw BackendError.wrapping(error)
        }
    }

    @discardableResult
    public func subscribe(_ kp: KeyPair, _ handler: any MessageHandler) async throws -> Bool {
        try checkOpen()
        return Self.registry.subscribe(kp, handler).firstForKey
    }

    @discardableResult
    public func unsubscribe(_ kp: KeyPair, _ handler: any MessageHandler) async throws -> Bool {
        try checkOpen()
        return try Self.registry.unsubscribe(kp, handler).lastForPair
    }

    public func close() async throws { closed.store(true, ordering: .relaxed) }

    private func checkOpen() throws {
        if closed.load(ordering: .relaxed) { throw BackendError.closed }
    }
}
