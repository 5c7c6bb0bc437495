import Foundation
import GRPCCore
import Logging
import Metrics
import Synchronization
import WarrenCore
import WarrenGRPCClient
import WarrenGossip

/// cunīcu's gRPC service `cunicu.signaling.Signaling`, served by one gossip node.
///
/// The bridge never holds a private key: `Publish` injects an envelope that the client already
/// sealed, unchanged, into the overlay; `Subscribe(key)` streams every envelope addressed to
/// `key` that reaches this node. Streams follow the node's topics: the first stream for a key
/// subscribes its topic, the last one leaving unsubscribes it.
///
/// Each stream has a bounded queue (`queueBound` envelopes) between the node's thread and the
/// HTTP/2 stream. The node's thread never waits for a client: when a stream's queue is full
/// (the client stopped reading, or reads slower than envelopes arrive) the envelope is not
/// queued, the overflow is counted and logged, and the stream is closed with
/// `RESOURCE_EXHAUSTED`, so the client subscribes again.
///
/// A Subscribe stream never ends with OK: cunīcu's client takes OK (and CANCELLED) as final and
/// never subscribes again. Every other ending the server decides — the node or the server
/// shutting down, a failed write — is `UNAVAILABLE`, so clients subscribe again (to this node
/// once it is back).
public final class SignalingBridge: Cunicu_Signaling_Signaling.SimpleServiceProtocol, Sendable {
    /// The default bound of each stream's queue, in envelopes.
    public static let defaultQueueBound = 1024

    public let backend: GossipBackend
    public let queueBound: Int
    let logger: Logger
    private let state = Mutex(BridgeCounters())
    private let open = Mutex<(queues: [ObjectIdentifier: StreamQueue], closing: Bool)>(([:], false))
    private let metrics = BridgeMetrics()
    private let closeListener = Mutex<UInt64?>(nil)

    /// What the bridge did, for tests and `warren node`'s status.
    public struct BridgeCounters: Sendable, Equatable {
        /// Envelopes accepted by `Publish` and flooded.
        public var published: UInt64 = 0
        /// `Publish` calls refused with `INVALID_ARGUMENT`.
        public var rejected: UInt64 = 0
        /// Envelopes written to subscriber streams.
        public var streamed: UInt64 = 0
        /// Streams closed because their queue overflowed.
        public var overflows: UInt64 = 0
        /// Subscriber streams open now.
        public var openStreams: Int = 0
        /// Client connections closed by the HTTP/2 layer because the client broke one of its
        /// rules (the stream limit, rapid reset, …).
        public var connectionErrors: UInt64 = 0
    }

    /// Where stream writers run (nil: the global concurrent executor).
    let executor: (any TaskExecutor)?

    public init(backend: GossipBackend, queueBound: Int = SignalingBridge.defaultQueueBound,
                logger: Logger = Logger(label: "warren.grpc"), executor: (any TaskExecutor)? = nil) {
        self.backend = backend
        self.executor = executor
        self.queueBound = max(1, queueBound)
        self.logger = logger
        // The node closing ends the streams too (a library user may close it before the server).
        let token = backend.addCloseListener { [weak self] in self?.closeStreams() }
        closeListener.withLock { $0 = token }
    }

    deinit {
        if let token = closeListener.withLock({ $0 }) { backend.removeCloseListener(token) }
    }

    public var counters: BridgeCounters { state.withLock { $0 } }

    /// Ends every subscriber stream (after what is queued) with `UNAVAILABLE` and refuses new ones
    /// with it, so that a graceful server shutdown is not held up by streams that never end by
    /// themselves, and clients know to subscribe again.
    public func closeStreams() {
        let queues = open.withLock { o -> [StreamQueue] in
            o.closing = true
            return Array(o.queues.values)
        }
        for q in queues { q.close() }
    }

    /// Counts and logs a connection the HTTP/2 layer closed (every call on it failed).
    func noteConnectionError(_ why: String, _ error: any Error, peer: String) {
        state.withLock { $0.connectionErrors &+= 1 }
        metrics.connectionErrors.increment()
        logger.warning("closed a gRPC client connection: \(why)", metadata: ["peer": "\(peer)", "error": "\(error)"])
    }

    // MARK: GetBuildInfo

    public func getBuildInfo(request: Cunicu_Empty, context: ServerContext) async throws -> Cunicu_BuildInfo {
        .current
    }

    // MARK: Publish

    public func publish(request: Envelope, context: ServerContext) async throws -> Cunicu_Empty {
        do {
            // The size limit is the backend's own (`envelopeTooLarge`), checked where it floods.
            try backend.publish(envelope: try request.serializedBytes(), to: try Self.validate(request))
        } catch BackendError.closed {
            throw RPCError(code: .unavailable, message: "this node is shutting down")
        } catch let e as GossipPublishError {
            // A full publish queue is back-pressure, not a bad request: retry later.
            state.withLock { $0.rejected &+= 1 }
            metrics.rejected.increment()
            if case .queueFull = e { throw RPCError(code: .resourceExhausted, message: "\(e)") }
            throw RPCError(code: .invalidArgument, message: "\(e)")
        } catch {
            state.withLock { $0.rejected &+= 1 }
            metrics.rejected.increment()
            throw (error as? RPCError) ?? RPCError(code: .invalidArgument, message: "\(error)")
        }
        state.withLock { $0.published &+= 1 }
        metrics.published.increment()
        return Cunicu_Empty()
    }

    /// The recipient of an envelope the bridge may inject, or `INVALID_ARGUMENT` saying why not:
    /// the codec's shape check (keys 32 bytes, the nonce 24, the box at least its 16-byte MAC).
    static func validate(_ env: Envelope) throws -> Key {
        do { return try EnvelopeCodec.checkShape(env) } catch {
            throw RPCError(code: .invalidArgument, message: "\(error)")
        }
    }

    // MARK: Subscribe

    public func subscribe(request: Cunicu_Signaling_SubscribeParams, response: RPCWriter<Envelope>,
                          context: ServerContext) async throws {
        guard request.key.count == Key.length, let key = try? Key(bytes: request.key) else {
            throw RPCError(code: .invalidArgument,
                           message: "key must be a 32-byte public key, got \(request.key.count) bytes")
        }
        let queue = StreamQueue(bound: queueBound)
        let accepted = open.withLock { o -> Bool in
            if o.closing { return false }
            o.queues[ObjectIdentifier(queue)] = queue
            return true
        }
        guard accepted else { throw RPCError(code: .unavailable, message: "this node is shutting down") }
        defer { _ = open.withLock { $0.queues.removeValue(forKey: ObjectIdentifier(queue)) } }
        let tap: GossipBackend.Tap
        do {
            tap = try await backend.addTap(for: key) { queue.push($0) }
        } catch {
            throw RPCError(code: .unavailable, message: "this node is shutting down")
        }
        state.withLock { $0.openStreams += 1 }
        metrics.streams.increment()
        logger.debug("stream opened", metadata: ["key": "\(key.base64)", "peer": "\(context.remotePeer)"])

        // The writer runs as its own task so that an overflow can cancel a write that waits for
        // a client which stopped reading; this handler then returns at once.
        let writer = Task(executorPreference: executor) { [self] in
            try await response.write(Envelope())   // "live": cunīcu's client waits for this
            for await bytes in queue.stream {
                try await response.write(try Envelope(serializedBytes: bytes))
                state.withLock { $0.streamed &+= 1 }
            }
        }
        queue.onOverflow { writer.cancel() }
        // The client going away cancels the RPC (not necessarily this task): either ends the writer.
        let outcome = await withRPCCancellationHandler {
            await withTaskCancellationHandler { await writer.result } onCancel: { writer.cancel() }
        } onCancelRPC: {
            writer.cancel()
        }
        queue.close()
        await backend.removeTap(tap)
        state.withLock { $0.openStreams -= 1 }
        metrics.streams.decrement()

        if queue.overflowed {
            state.withLock { $0.overflows &+= 1 }
            metrics.overflows.increment()
            logger.warning("closing a subscriber stream that fell \(queueBound) envelopes behind",
                           metadata: ["key": "\(key.base64)", "peer": "\(context.remotePeer)"])
            throw RPCError(code: .resourceExhausted,
                           message: "stream fell more than \(queueBound) envelopes behind; subscribe again")
        }
        // Not an overflow: the node or server is shutting down, a write failed, or the client
        // cancelled (then it sees no status at all). Never OK, which cunīcu's client takes as final.
        let why: String
        if open.withLock({ $0.closing }) {
            why = "this node is shutting down; subscribe again"
        } else if case .failure(let error) = outcome, !(error is CancellationError) {
            why = "stream failed: \(error); subscribe again"
        } else {
            why = "stream ended; subscribe again"
        }
        logger.debug("stream closed", metadata: ["key": "\(key.base64)", "reason": "\(why)"])
        throw RPCError(code: .unavailable, message: why)
    }
}

/// The bounded hand-off from the node's thread to one subscriber stream.
final class StreamQueue: Sendable {
    let stream: AsyncStream<[UInt8]>
    private let continuation: AsyncStream<[UInt8]>.Continuation
    private let overflow = Mutex<(happened: Bool, action: (@Sendable () -> Void)?)>((false, nil))

    init(bound: Int) {
        (stream, continuation) = AsyncStream.makeStream(of: [UInt8].self, bufferingPolicy: .bufferingOldest(bound))
    }

    /// Queues an envelope; never waits. A full queue ends the stream.
    func push(_ bytes: [UInt8]) {
        guard case .dropped = continuation.yield(bytes) else { return }
        let action: (@Sendable () -> Void)? = overflow.withLock { o in
            if o.happened { return nil }
            o.happened = true
            return o.action ?? {}
        }
        if let action {
            continuation.finish()
            action()
        }
    }

    /// Runs `action` on overflow (at once if it already happened).
    func onOverflow(_ action: @escaping @Sendable () -> Void) {
        let now = overflow.withLock { o -> Bool in
            if o.happened { return true }
            o.action = action
            return false
        }
        if now { action() }
    }

    var overflowed: Bool { overflow.withLock { $0.happened } }

    func close() { continuation.finish() }
}

/// swift-metrics instruments of the bridge (exported by `warren node --metrics`).
struct BridgeMetrics: Sendable {
    let published = Counter(label: "warren_grpc_published_total")
    let rejected = Counter(label: "warren_grpc_rejected_total")
    let overflows = Counter(label: "warren_grpc_stream_overflows_total")
    let connectionErrors = Counter(label: "warren_grpc_connection_errors_total")
    let streams = Meter(label: "warren_grpc_streams")
}
