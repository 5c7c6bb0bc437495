import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import NIOPosix
import Synchronization
import WarrenCore

/// `grpc://HOST:PORT?insecure=true` — a client of cunīcu's signaling service
/// (`cunicu.signaling.Signaling`), served by a Warren node's bridge (`warren node --grpc`) or by
/// cunīcu's own `cunicu signal` server.
///
/// Behaves like cunīcu's gRPC backend: `publish` seals here and sends the envelope with
/// `Publish`; the first `subscribe` for a private key opens a `Subscribe` stream for its public
/// key and returns once the server's empty "live" envelope arrives; a stream that breaks is
/// opened again with back-off (100 ms doubling to 5 s, ±50 % jitter) for as long as the key has
/// handlers; the last `unsubscribe` for a key closes its stream. A cancelled call is
/// `BackendError.closed`.
///
/// Each backend's connection lives on one event loop of NIO's shared group, and its calls and
/// streams run as tasks on that loop's thread too (`EventLoopTaskExecutor`), so a call does not
/// hop between the loop and the cooperative pool. Handlers are therefore called on that thread:
/// return quickly. Requests are written at once (no flush coalescing).
public final class GRPCBackend: Backend {
    public let configuration: GRPCConfiguration
    public let registry = SubscriptionRegistry()
    let codec: EnvelopeCodec
    let logger: Logger
    private let client: GRPCClient<HTTP2ClientTransport.Posix>
    private let signaling: Cunicu_Signaling_Signaling.Client<HTTP2ClientTransport.Posix>
    private let connections: Task<Void, Never>
    private let streams = Mutex<[Key: SubscriptionStream]>([:])
    private let closed = Atomic<Bool>(false)
    private let counterState = Mutex(StreamCounters())
    let executor: EventLoopTaskExecutor

    public struct StreamCounters: Sendable, Equatable {
        /// Envelopes received on subscriber streams (not counting the "live" markers).
        public var received: UInt64 = 0
        /// Received envelopes that failed to open (tampered, wrong key, malformed).
        public var refused: UInt64 = 0
        /// Times a broken stream was opened again.
        public var resubscribed: UInt64 = 0
    }

    public var counters: StreamCounters { counterState.withLock { $0 } }

    public var type: BackendType { .grpc }

    public init(_ configuration: GRPCConfiguration, codec: EnvelopeCodec = .shared,
                logger: Logger = Logger(label: "warren.grpc.client")) throws {
        self.configuration = configuration
        self.codec = codec
        self.logger = logger
        let security: HTTP2ClientTransport.Posix.TransportSecurity
        if configuration.insecure {
            security = .plaintext
        } else {
            security = .tls { tls in
                if let ca = configuration.trustRootsFile { tls.trustRoots = .certificates([.file(path: ca, format: .pem)]) }
                if configuration.skipVerify { tls.serverCertificateVerification = .noVerification }
            }
        }
        // An IP literal is its own target (TLS then checks the certificate's IP SAN; SNI cannot
        // carry an address); a name is resolved by DNS.
        let host = configuration.host
        let target: any ResolvableTarget
        if IPv4Address(host) != nil {
            target = .ipv4(address: host, port: configuration.port)
        } else if host.contains(":") {
            target = .ipv6(address: host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port: configuration.port)
        } else {
            target = .dns(host: host, port: configuration.port)
        }
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let executor = EventLoopTaskExecutor(loop)
        self.executor = executor
        let transport = try HTTP2ClientTransport.Posix(
            target: target, transportSecurity: security,
            config: .defaults { $0.connection.flushCoalescing = nil }, eventLoopGroup: loop)
        let client = GRPCClient(transport: transport)
        self.client = client
        self.signaling = Cunicu_Signaling_Signaling.Client(wrapping: client)
        let log = logger
        connections = Task.detached(executorPreference: executor) {
            do { try await client.runConnections() } catch {
                log.error("gRPC client stopped", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Creates the backend `url` names (`grpc://HOST:PORT?insecure=true`).
    public convenience init(url: URL, logger: Logger = Logger(label: "warren.grpc.client")) throws {
        try self.init(try GRPCConfiguration(url: url), logger: logger)
    }

    // MARK: Backend

    public func publish(_ kp: KeyPair, _ message: SignalingMessage) async throws {
        try checkOpen()
        let env: Envelope
        do { env = try codec.seal(message, from: kp.ours, to: kp.theirs) } catch { throw BackendError.wrapping(error) }
        try await publish(envelope: env)
    }

    /// Sends an already-sealed envelope.
    public func publish(envelope: Envelope) async throws {
        try checkOpen()
        do {
            let signaling = self.signaling, options = callOptions
            _ = try await withTaskExecutorPreference(executor) {
                try await signaling.publish(envelope, options: options)
            }
        } catch {
            throw mapped(error)
        }
    }

    @discardableResult
    public func subscribe(_ kp: KeyPair, _ handler: any MessageHandler) async throws -> Bool {
        try checkOpen()
        let key = kp.ours.publicKey
        let (result, stream) = streams.withLock { s -> (SubscriptionRegistry.SubscribeResult, SubscriptionStream) in
            // The registry's first handler for the key opens its stream, its last closes it.
            let r = registry.subscribe(kp, handler)
            if !r.firstForKey, let existing = s[key] { return (r, existing) }
            let new = SubscriptionStream(key: key)
            s[key] = new
            new.start(backend: self)
            return (r, new)
        }
        // cunīcu's client returns from Subscribe once the server said the stream is live.
        if await stream.waitUntilLive(timeout: configuration.subscribeTimeout) { return result.firstForKey }
        // Not live in time: take this subscription back so nothing half-made stays behind.
        _ = try? await unsubscribe(kp, handler)
        if closed.load(ordering: .relaxed) { throw BackendError.closed }
        throw GRPCBackendError.notLive(server: configuration.target, after: configuration.subscribeTimeout,
                                       lastError: stream.lastError)
    }

    @discardableResult
    public func unsubscribe(_ kp: KeyPair, _ handler: any MessageHandler) async throws -> Bool {
        try checkOpen()
        let key = kp.ours.publicKey
        let (r, ending) = try streams.withLock { s -> (SubscriptionRegistry.UnsubscribeResult, SubscriptionStream?) in
            let r = try registry.unsubscribe(kp, handler)
            guard r.lastForKey else { return (r, nil) }
            return (r, s.removeValue(forKey: key))
        }
        ending?.stop()
        return r.lastForPair
    }

    public func close() async throws {
        guard !closed.exchange(true, ordering: .relaxed) else { return }
        let all = streams.withLock { s -> [SubscriptionStream] in
            defer { s.removeAll() }
            return Array(s.values)
        }
        for s in all { s.stop() }
        for s in all { await s.finished() }
        client.beginGracefulShutdown()
        await connections.value
    }

    // MARK: Internals

    var callOptions: CallOptions {
        var o = CallOptions.defaults
        o.timeout = configuration.callTimeout
        return o
    }

    func dispatch(_ env: Envelope) {
        counterState.withLock { $0.received &+= 1 }
        do {
            try registry.dispatch(env, codec: codec)
        } catch {
            counterState.withLock { $0.refused &+= 1 }
            logger.debug("refused envelope", metadata: ["reason": "\(error)"])
        }
    }

    func noteResubscribe() { counterState.withLock { $0.resubscribed &+= 1 } }

    /// One `Subscribe` call, run from the stream's task.
    func runStream(key: Key, onLive: @escaping @Sendable () -> Void) async throws {
        var params = Cunicu_Signaling_SubscribeParams()
        params.key = key.data
        var options = CallOptions.defaults
        options.timeout = nil
        try await signaling.subscribe(params, options: options) { response in
            for try await env in response.messages {
                if env.sender.isEmpty && env.recipient.isEmpty && !env.hasContents {
                    onLive()
                } else {
                    self.dispatch(env)
                }
            }
        }
    }

    func mapped(_ error: any Error) -> any Error {
        if error is CancellationError { return BackendError.closed }
        if let e = error as? RPCError {
            if e.code == .cancelled { return BackendError.closed }
            if closed.load(ordering: .relaxed) { return BackendError.closed }
        }
        return error
    }

    private func checkOpen() throws {
        if closed.load(ordering: .relaxed) { throw BackendError.closed }
    }
}

/// Errors of the gRPC client backend beyond `BackendError`.
public enum GRPCBackendError: Error, CustomStringConvertible, Sendable {
    case notLive(server: String, after: Duration, lastError: String?)

    public var description: String {
        switch self {
        case .notLive(let server, let after, let last):
            return "subscription at \(server) not live after \(after)" + (last.map { " (last error: \($0))" } ?? "")
        }
    }
}

/// Parses dotted-quad IPv4 text.
private func IPv4Address(_ s: String) -> [UInt8]? {
    let parts = s.split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count == 4 else { return nil }
    let bytes = parts.compactMap { UInt8($0) }
    return bytes.count == 4 ? bytes : nil
}

/// One key's `Subscribe` stream: opened again with back-off when it breaks, until stopped.
final class SubscriptionStream: Sendable {
    let key: Key
    private struct State {
        var live = false
        var task: Task<Void, Never>?
        var stopped = false
        var lastError: String?
        /// A failure was logged as a warning and no stream has been live since.
        var outageReported = false
    }
    private let state = Mutex(State())

    init(key: Key) { self.key = key }

    var lastError: String? { state.withLock { $0.lastError } }

    func start(backend: GRPCBackend) {
        let task = Task.detached(executorPreference: backend.executor) { [self] in
            var delay = 0.1
            var attempt = 0
            while !Task.isCancelled {
                if attempt > 0 { backend.noteResubscribe() }
                attempt += 1
                do {
                    try await backend.runStream(key: key) { [self] in
                        setLive(true)
                        // An outage that was reported ends: say so once.
                        if state.withLock({ s in defer { s.outageReported = false }; return s.outageReported }) {
                            backend.logger.warning("subscribed again at \(backend.configuration.target)",
                                                  metadata: ["key": "\(key.base64)"])
                        }
                    }
                    state.withLock { $0.lastError = "stream ended by the server" }
                } catch {
                    state.withLock { $0.lastError = "\(error)" }
                    backend.logger.debug("subscription stream broke",
                                         metadata: ["key": "\(key.base64)", "error": "\(error)"])
                }
                // The first failure of an outage is a warning (an unreachable or stopped bridge
                // must not be silent at the default level); the retries that follow are debug.
                let report = state.withLock { s -> String? in
                    if s.outageReported || s.stopped || Task.isCancelled { return nil }
                    s.outageReported = true
                    return s.lastError
                }
                if let why = report {
                    backend.logger.warning("cannot subscribe at \(backend.configuration.target); retrying with back-off",
                                           metadata: ["key": "\(key.base64)", "error": "\(why)"])
                }
                // A stream that was live starts over with a short delay; repeated failures back off.
                if state.withLock({ $0.live }) { delay = 0.1 }
                setLive(false)
                if Task.isCancelled { break }
                let jitter = Double.random(in: 0.5...1.5)
                try? await Task.sleep(for: .seconds(delay * jitter))
                delay = min(delay * 2, 5)
            }
            setLive(false)
        }
        state.withLock { s in
            if s.stopped { task.cancel() }
            s.task = task
        }
    }

    private func setLive(_ live: Bool) { state.withLock { $0.live = live } }

    /// Waits until the server has said the stream is live (true) or `timeout` passes (false).
    func waitUntilLive(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while ContinuousClock.now < deadline {
            let (live, stopped) = state.withLock { ($0.live, $0.stopped) }
            if live { return true }
            if stopped { return false }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return state.withLock { $0.live }
    }

    func stop() {
        let task = state.withLock { s -> Task<Void, Never>? in
            s.stopped = true
            return s.task
        }
        task?.cancel()
    }

    func finished() async { await state.withLock { $0.task }?.value }
}
