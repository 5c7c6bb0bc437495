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
    /// Neighbours up now (peer-up minus peer-down), for `publish`'s wait for a first one.
    private let neighbourCount = Atomic<Int>(0)
    private let counterState = Mutex(DeliveryCounters())
    private let listeners = Mutex<[UInt64: @Sendable (Neighbour, Bool, PeerDownReason?) -> Void]>([:])
    private let closeListeners = Mutex<[UInt64: @Sendable () -> Void]>([:])
    /// Who holds each recipient key's topic: the handler registry (one reference while it has
    /// handlers for the key) and every envelope tap. The node subscribes the topic on the first
    /// reference and unsubscribes it when the last goes; changes are queued to the node under
    /// this lock, so they reach it in the order they were decided.
    private let topics = Mutex(TopicHolders())

    struct TopicHolders {
        var references = Holders<Key>()
        var taps: [Key: [UInt64: @Sendable ([UInt8]) -> Void]] = [:]
        var nextTap: UInt64 = 1
    }

    /// A raw-envelope listener registered with `addTap`.
    public struct Tap: Hashable, Sendable {
        public let key: Key
        let id: UInt64
    }

    public struct DeliveryCounters: Sendable {
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

    /// Binds and starts a node. With `start: false` the node's thread waits for `start()`, so
    /// that listeners (`addPeerListener`) registered in between miss no event.
    public init(_ configuration: GossipConfiguration, codec: EnvelopeCodec = .shared,
                logger: Logger = Logger(label: "warren.gossip"), start: Bool = true) throws {
        self.configuration = configuration
        self.codec = codec
        self.logger = logger
        let box = WeakBox()
        node = try GossipNode(configuration: configuration, callbacks: GossipNodeCallbacks(
            deliver: { topic, env, _, _ in box.backend?.deliver(topic, env) },
            peer: { n, up, reason in box.backend?.peerChanged(n, up, reason) }
        ), logger: logger, start: false)
        // Only now may the node's thread run: before this, its callbacks would find no backend.
        box.set(self)
        if start { node.start() }
    }

    /// A backend dropped without `close()` still stops its node: the thread ends, the sockets
    /// close and the port is free again (without waiting here).
    deinit {
        if !closed.load(ordering: .relaxed) { node.requestStop() }
    }

    /// Starts the node's thread (for `init(start: false)`); a second call does nothing.
    public func start() { node.start() }

    /// The node's callbacks reach the backend through this: weakly (a backend dropped without
    /// `close()` is freed, and its `deinit` stops the node), set once before the node's thread
    /// starts, read under a lock.
    final class WeakBox: Sendable {
        private struct Weak: Sendable { weak var backend: GossipBackend? }
        private let ref = Mutex(Weak())
        var backend: GossipBackend? { ref.withLock { $0.backend } }
        func set(_ b: GossipBackend) { ref.withLock { $0.backend = b } }
    }

    public var type: BackendType { .gossip }

    /// The endpoint this node listens on (and advertises).
    public var endpoint: String { node.endpoint }

    public var counters: DeliveryCounters { counterState.withLock { $0 } }

    /// Registers a listener for neighbour changes; returns a token for `removePeerListener`.
    @discardableResult
    public func addPeerListener(_ f: @escaping @Sendable (Neighbour, Bool, PeerDownReason?) -> Void) -> UInt64 {
        let id = UInt64.random(in: 1...UInt64.max)
        listeners.withLock { $0[id] = f }
        return id
    }

    /// Registers `f` to run once when `close()` begins, before the node stops (at once if the
    /// backend is already closed); returns a token for `removeCloseListener`.
    @discardableResult
    public func addCloseListener(_ f: @escaping @Sendable () -> Void) -> UInt64 {
        let id = UInt64.random(in: 1...UInt64.max)
        let already = closeListeners.withLock { l -> Bool in
            if closed.load(ordering: .relaxed) { return true }
            l[id] = f
            return false
        }
        if already { f() }
        return id
    }

    public func removeCloseListener(_ id: UInt64) {
        _ = closeListeners.withLock { $0.removeValue(forKey: id) }
    }

    func peerChanged(_ n: Neighbour, _ up: Bool, _ reason: PeerDownReason?) {
        if up { neighbourCount.add(1, ordering: .releasing) } else { neighbourCount.subtract(1, ordering: .releasing) }
        if up { wakeNeighbourWaiters() }
        for f in listeners.withLock({ Array($0.values) }) { f(n, up, reason) }
    }

    /// `publish` calls waiting for a first neighbour (resumed when one comes up, at close, or when
    /// their task is cancelled: the wait's deadline cancels it).
    private let neighbourWaiters = Mutex<(next: UInt64, waiting: [UInt64: CheckedContinuation<Void, Never>])>((0, [:]))

    private func wakeNeighbourWaiters() {
        let all = neighbourWaiters.withLock { w -> [CheckedContinuation<Void, Never>] in
            defer { w.waiting.removeAll() }
            return Array(w.waiting.values)
        }
        for c in all { c.resume() }
    }

    /// Returns once a neighbour is up, the backend closes, or the task is cancelled.
    private func nextNeighbour() async {
        let id = neighbourWaiters.withLock { w -> UInt64 in w.next &+= 1; return w.next }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = neighbourWaiters.withLock { w -> Bool in
                    if neighboursUp > 0 || closed.load(ordering: .relaxed) || Task.isCancelled { return true }
                    w.waiting[id] = c
                    return false
                }
                if now { c.resume() }
            }
        } onCancel: {
            neighbourWaiters.withLock { $0.waiting.removeValue(forKey: id) }?.resume()
        }
    }

    func deliver(_ topic: Topic, _ bytes: [UInt8]) {
        let key = Key(topic)
        let taps = topics.withLock { $0.taps[key].map { Array($0.values) } ?? [] }
        for f in taps { f(bytes) }
        if !taps.isEmpty && registry.privateKey(for: key) == nil { return }
        do {
            let calls = try registry.dispatch(bytes, codec: codec)
            counterState.withLock { $0.opened &+= 1; $0.handlerCalls &+= UInt64(calls) }
        } catch {
            counterState.withLock { $0.refused &+= 1 }
            logger.debug("refused envelope", metadata: ["reason": "\(error)"])
        }
    }

    /// The largest envelope one overlay frame carries.
    public static let maxEnvelopeBytes = Frame.maxBodyBytes - Frame.headerSize

    /// Seals and floods `message`. With no neighbour up, it first waits for one, at most
    /// `configuration.publishTimeout` (cancelling the task ends the wait too), and then throws
    /// `GossipPublishError.noNeighbour` if none came — unless this node subscribes the recipient
    /// itself, which then receives it. A node with no seeds and no discovery delivers its own
    /// keys' messages at once. The all-zero key ("any peer") is no recipient:
    /// `GossipPublishError.zeroRecipient`.
    public func publish(_ kp: KeyPair, _ message: SignalingMessage) async throws {
        try checkOpen()
        guard !kp.theirs.isZero else { throw GossipPublishError.zeroRecipient }
        let bytes: [UInt8]
        do { bytes = try codec.sealBytes(message, from: kp.ours, to: kp.theirs) } catch { throw BackendError.wrapping(error) }
        try await waitForNeighbour(for: kp.theirs)
        try publish(envelope: bytes, to: kp.theirs)
    }

    /// Neighbours up now.
    public var neighboursUp: Int { max(0, neighbourCount.load(ordering: .acquiring)) }

    /// The wait `publish` makes before a first neighbour is up (see there).
    func waitForNeighbour(for recipient: Key) async throws {
        if neighboursUp > 0 { return }
        // Subscribed here: by a handler or a tap (the gRPC bridge's streams).
        let local = topics.withLock { $0.references.holds(recipient) }
        let expectsNeighbours = !configuration.peers.isEmpty || configuration.discoveryPort != nil
        if local && !expectsNeighbours { return }
        let timeout = configuration.publishTimeout
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        // Woken by the first neighbour that comes up (no polling: the message leaves at once).
        while neighboursUp == 0 && clock.now < deadline {
            try Task.checkCancellation()
            await withTaskGroup(of: Void.self) { g in
                g.addTask { await self.nextNeighbour() }
                g.addTask { try? await Task.sleep(until: deadline, clock: clock) }
                _ = await g.next()
                g.cancelAll()
            }
            try checkOpen()
        }
        try Task.checkCancellation()
        if neighboursUp > 0 || local { return }
        throw GossipPublishError.noNeighbour(waited: timeout)
    }

    /// Floods already-serialized envelope bytes to `recipient` (no sealing, no waiting). Throws
    /// `BackendError.envelopeTooLarge` beyond `maxEnvelopeBytes`.
    public func publish(envelope bytes: [UInt8], to recipient: Key, ttl: UInt8? = nil) throws {
        try checkOpen()
        guard !recipient.isZero else { throw GossipPublishError.zeroRecipient }
        guard bytes.count <= Self.maxEnvelopeBytes else {
            throw BackendError.envelopeTooLarge(bytes.count, limit: Self.maxEnvelopeBytes)
        }
        guard node.publish(topic: Topic(recipient), envelope: bytes, ttl: ttl) else {
            throw GossipPublishError.queueFull(limit: configuration.publishQueueLimit)
        }
    }

    @discardableResult
    public func subscribe(_ kp: KeyPair, _ handler: any MessageHandler) async throws -> Bool {
        try checkOpen()
        return await changeTopic(kp.ours.publicKey) { _ in
            let r = registry.subscribe(kp, handler)
            return (r.firstForKey, r.firstForKey ? 1 : 0)
        }
    }

    @discardableResult
    public func unsubscribe(_ kp: KeyPair, _ handler: any MessageHandler) async throws -> Bool {
        try checkOpen()
        let r = try await changeTopic(kp.ours.publicKey) { _ in
            let r = Result { try registry.unsubscribe(kp, handler) }
            return (r, (try? r.get())?.lastForKey == true ? -1 : 0)
        }.get()
        return r.lastForPair
    }

    /// Calls `body` with every envelope addressed to `key` that this node delivers (exactly once
    /// per envelope, as the serialized bytes that travelled), on the node's thread: return quickly.
    /// The node subscribes the key's topic (leaf nodes included) before this returns. Used by the
    /// gRPC bridge, which forwards envelopes it cannot open.
    public func addTap(for key: Key, _ body: @escaping @Sendable ([UInt8]) -> Void) async throws -> Tap {
        try checkOpen()
        return await changeTopic(key) { h in
            let id = h.nextTap
            h.nextTap &+= 1
            h.taps[key, default: [:]][id] = body
            return (Tap(key: key, id: id), 1)
        }
    }

    /// Removes a tap; the last holder of a topic unsubscribes it. Removing twice is a no-op.
    public func removeTap(_ tap: Tap) async {
        await changeTopic(tap.key) { h in
            guard h.taps[tap.key]?.removeValue(forKey: tap.id) != nil else { return ((), 0) }
            if h.taps[tap.key]?.isEmpty == true { h.taps[tap.key] = nil }
            return ((), -1)
        }
    }

    /// Number of taps for `key` (for tests and the bridge's status).
    public func tapCount(for key: Key) -> Int { topics.withLock { $0.taps[key]?.count ?? 0 } }

    /// Runs `body` under the topic lock; it returns a result and a change (+1, −1, 0) to the key's
    /// references. Crossing zero queues the node's (un)subscription; waits until the node has it.
    private func changeTopic<R>(_ key: Key, _ body: (inout TopicHolders) -> (R, Int)) async -> R {
        var result: R?
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            topics.withLock { h in
                let (r, delta) = body(&h)
                result = r
                switch delta > 0 ? h.references.take(key) : delta < 0 ? h.references.release(key) : .none {
                case .first: node.requestSubscription(Topic(key), subscribe: true, done: done)
                case .last: node.requestSubscription(Topic(key), subscribe: false, done: done)
                case .none: done.resume()
                }
            }
        }
        return result!
    }

    /// Says goodbye to the neighbours, closes every socket and stops the node's thread.
    public func close() async throws {
        let toCall = closeListeners.withLock { l -> [@Sendable () -> Void] in
            closed.store(true, ordering: .relaxed)
            defer { l.removeAll() }
            return Array(l.values)
        }
        for f in toCall { f() }
        wakeNeighbourWaiters()
        await node.stop()
    }

    public func stats() async -> NodeStats { await node.stats() }

    /// A closed overlay's new allow-list (`GossipNode.updateAllowList`).
    @discardableResult
    public func updateAllowList(_ keys: Set<Key>) -> (added: Int, removed: Int) { node.updateAllowList(keys) }

    /// Waits until the node has at least `count` neighbours.
    public func waitForNeighbours(_ count: Int, timeout: Duration = .seconds(10)) async -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while clock.now < deadline {
            if await node.stats().neighbours.count >= count { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        // Once more after the deadline: a caller whose executor was starved still gets an answer.
        return await node.stats().neighbours.count >= count
    }

    private func checkOpen() throws {
        if closed.load(ordering: .relaxed) { throw BackendError.closed }
    }
}

/// Why `GossipBackend.publish` did not send.
public enum GossipPublishError: Error, Equatable, Sendable, CustomStringConvertible {
    /// No neighbour came up within the wait (`GossipConfiguration.publishTimeout`).
    case noNeighbour(waited: Duration)
    /// The all-zero key means "any peer" in a subscription; nothing can be sent to it.
    case zeroRecipient
    /// `limit` publishes were already waiting for the node's thread (counted in
    /// `NodeStats.queueFull`); nothing was queued.
    case queueFull(limit: Int)

    public var description: String {
        switch self {
        case .noNeighbour(let d):
            let ms = d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
            return "not sent: no neighbour came up within \(Double(ms) / 1000) s (are the peers running and reachable?)"
        case .zeroRecipient:
            return "the all-zero key means \"any peer\" and cannot be a recipient"
        case .queueFull(let limit):
            return "not sent: \(limit) messages are already waiting for the node to send them (publishing faster than the overlay takes them)"
        }
    }
}
