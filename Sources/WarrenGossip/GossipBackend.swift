import Foundation
import Logging
import Synchronization
import WarrenCore
import WarrenEngine

extension Topic {
    /// The topic of envelopes addressed to `key`.
    public init(_ key: Key) { self = Topic(bytes: key.bytes)! }
}

extension Key {
    public init(_ topic: Topic) { self = try! Key(bytes: topic.bytes) }
}

/// `gossip://` — a node of the ZeroMQ gossip overlay behind cunīcu's `Backend` interface.
///
/// `publish` seals the message and floods the envelope to the topic of the recipient's public
/// key; the node delivers first-seen envelopes for its subscribed keys, which are opened and
/// handed to the handlers on the node's thread. Envelopes are never stored: only message ids
/// are remembered (for de-duplication).
public final class GossipBackend: Backend {
    public let node: GossipNode
    public let configuration: GossipConfiguration
    public let registry = SubscriptionRegistry()
    let codec: EnvelopeCodec
    let logger: Logger
    private let closed = Atomic<Bool>(false)
    private let counterState = Mutex(Counters())
    private let listeners = Mutex<[UInt64: @Sendable (Neighbour, Bool, PeerDownReason?) -> Void]>([:])

    public struct Counters: Sendable {
        /// Envelopes delivered to at least one handler.
        public var opened: UInt64 = 0
        /// Delivered envelopes that failed to open (tampered, wrong key, malformed).
        public var refused: UInt64 = 0
        /// Handler calls made.
        public var handlerCalls: UInt64 = 0
    }

    /// Starts a node and tells `onReady` once it listens.
    public static func start(_ configuration: GossipConfiguration, onReady: [any BackendReadyHandler] = [],
                             codec: EnvelopeCodec = .shared,
                             logger: Logger = Logger(label: "warren.gossip")) async throws -> GossipBackend {
        try startSync(configuration, onReady: onReady, codec: codec, logger: logger)
    }

    /// The synchronous form of `start` (creating a node never waits).
    public static func startSync(_ configuration: GossipConfiguration, onReady: [any BackendReadyHandler] = [],
                                 codec: EnvelopeCodec = .shared,
                                 logger: Logger = Logger(label: "warren.gossip")) throws -> GossipBackend {
        let b = try GossipBackend(configuration, codec: codec, logger: logger)
        for h in onReady { h.onSignalingBackendReady(b) }
        return b
    }

    public init(_ configuration: GossipConfiguration, codec: EnvelopeCodec = .shared,
                logger: Logger = Logger(label: "warren.gossip")) throws {
        self.configuration = configuration
        self.codec = codec
        self.logger = logger
        let box = WeakBox()
        node = try GossipNode(configuration: configuration, callbacks: GossipNodeCallbacks(
            deliver: { _, env, _, _ in box.backend?.deliver(env) },
            peer: { n, up, reason in box.backend?.peerChanged(n, up, reason) }
        ), logger: logger)
        box.backend = self
    }

    final class WeakBox: @unchecked Sendable { weak var backend: GossipBackend? }

    public var type: BackendType { .gossip }

    /// The endpoint this node listens on (and advertises).
    public var endpoint: String { node.endpoint }

    public var counters: Counters { counterState.withLock { $0 } }

    /// Registers a listener for neighbour changes; returns a token for `removePeerListener`.
    @discardableResult
    public func addPeerListener(_ f: @escaping @Sendable (Neighbour, Bool, PeerDownReason?) -> Void) -> UInt64 {
        let id = UInt64.random(in: 1...UInt64.max)
        listeners.withLock { $0[id] = f }
        return id
    }

    func peerChanged(_ n: Neighbour, _ up: Bool, _ reason: PeerDownReason?) {
        for f in listeners.withLock({ Array($0.values) }) { f(n, up, reason) }
    }

    func deliver(_ bytes: [UInt8]) {
        do {
            let env = try codec.parse(bytes)
            let calls = try registry.dispatch(env, codec: codec)
            counterState.withLock { $0.opened &+= 1; $0.handlerCalls &+= UInt64(calls) }
        } catch {
            counterState.withLock { $0.refused &+= 1 }
            logger.debug("refused envelope", metadata: ["reason": "\(error)"])
        }
    }

    public func publish(_ kp: KeyPair, _ message: SignalingMessage) async throws {
        try checkOpen()
        let bytes: [UInt8]
        do { bytes = try codec.sealBytes(message, from: kp.ours, to: kp.theirs) } catch { throw BackendError.wrapping(error) }
        node.publish(topic: Topic(kp.theirs), envelope: bytes)
    }

    /// Floods already-serialized envelope bytes to `recipient` (no sealing).
    public func publish(envelope bytes: [UInt8], to recipient: Key, ttl: UInt8? = nil) throws {
        try checkOpen()
        node.publish(topic: Topic(recipient), envelope: bytes, ttl: ttl)
    }

    @discardableResult
    public func subscribe(_ kp: KeyPair, _ handler: any MessageHandler) async throws -> Bool {
        try checkOpen()
        let r = registry.subscribe(kp, handler)
        if r.firstForKey { await node.subscribe(Topic(kp.ours.publicKey)) }
        return r.firstForKey
    }

    @discardableResult
    public func unsubscribe(_ kp: KeyPair, _ handler: any MessageHandler) async throws -> Bool {
        try checkOpen()
        let r = try registry.unsubscribe(kp, handler)
        if r.lastForKey { await node.unsubscribe(Topic(kp.ours.publicKey)) }
        return r.lastForPair
    }

    /// Says goodbye to the neighbours, closes every socket and stops the node's thread.
    public func close() async throws {
        closed.store(true, ordering: .relaxed)
        await node.stop()
    }

    public func stats() async -> DriverStats { await node.stats() }

    /// Waits until the node has at least `count` neighbours.
    public func waitForNeighbours(_ count: Int, timeout: Duration = .seconds(10)) async -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while clock.now < deadline {
            if await node.stats().neighbours.count >= count { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    private func checkOpen() throws {
        if closed.load(ordering: .relaxed) { throw BackendError.closed }
    }
}
