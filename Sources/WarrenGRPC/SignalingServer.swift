import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import NIOHTTP2
import NIOPosix
import ServiceLifecycle
import Synchronization
import WarrenCore
import WarrenEngine
import WarrenGRPCClient
import WarrenGossip

/// How a node serves cunīcu's signaling API.
///
/// Plain text is allowed on loopback only: a plain-text bridge on a reachable address lets anyone
/// who can reach it subscribe to any key's ciphertext (traffic analysis: who signals whom, when)
/// and publish into the overlay (envelopes stay end-to-end encrypted, but the overlay carries
/// whatever they inject). Bind it elsewhere with TLS (`tls`), or say `allowPlaintextAnywhere`.
public struct GRPCBridgeConfiguration: Sendable, Equatable {
    public var host: String
    public var port: Int
    /// PEM certificate chain and private key files for TLS; nil for plain text.
    public var tls: TLSFiles?
    /// Bound of each subscriber stream's queue, in envelopes.
    public var queueBound: Int
    /// Permit plain text on a non-loopback address.
    public var allowPlaintextAnywhere: Bool
    /// Concurrent calls (HTTP/2 streams) one client connection may have open, advertised in
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`. A client queues calls beyond it until others finish.
    /// Subscribe streams stay open, so this must leave room for Publish calls beside them.
    public var maxConcurrentStreams: Int
    /// Longest a response write waits for others to share its flush (grpc-swift's flush
    /// coalescing); nil writes every response at once. Signaling traffic is a trickle of small
    /// messages, where waiting only adds latency.
    public var maxFlushDelay: Duration?

    /// The default of `maxConcurrentStreams`.
    public static let defaultMaxConcurrentStreams = 4096

    public struct TLSFiles: Sendable, Equatable {
        public var certificateChain: String
        public var privateKey: String
        public init(certificateChain: String, privateKey: String) {
            self.certificateChain = certificateChain
            self.privateKey = privateKey
        }
    }

    public init(host: String = "127.0.0.1", port: Int = 8080, tls: TLSFiles? = nil,
                queueBound: Int = SignalingBridge.defaultQueueBound, allowPlaintextAnywhere: Bool = false,
                maxConcurrentStreams: Int = GRPCBridgeConfiguration.defaultMaxConcurrentStreams,
                maxFlushDelay: Duration? = nil) {
        self.host = host
        self.port = port
        self.tls = tls
        self.queueBound = queueBound
        self.allowPlaintextAnywhere = allowPlaintextAnywhere
        self.maxConcurrentStreams = maxConcurrentStreams
        self.maxFlushDelay = maxFlushDelay
    }

    /// Parses `HOST:PORT` (IPv6 as `[ADDR]:PORT`); port 0 picks a free one.
    public init(address: String) throws {
        self.init()
        let (h, p) = try Self.split(address)
        host = h
        port = p
    }

    static func split(_ address: String) throws -> (String, Int) {
        var text = address
        if text.hasPrefix("grpc://") { text.removeFirst("grpc://".count) }
        // A listening address: port 0 or * picks a free one.
        do {
            let hp = try HostPort(parsing: text, for: .listen)
            return (hp.host, Int(hp.port ?? 0))
        } catch {
            throw GRPCBridgeError.badAddress(address, "expected HOST:PORT, e.g. 127.0.0.1:8080 (\(error.rule))")
        }
    }

    /// This host only (`HostPort.isLoopback`: 127.0.0.0/8, ::1, localhost).
    public var isLoopback: Bool { HostPort(host: host, port: nil).isLoopback }

    /// Throws if this configuration would serve plain text on a reachable address.
    public func validate() throws {
        if tls == nil && !isLoopback && !allowPlaintextAnywhere {
            throw GRPCBridgeError.plaintextOnPublicAddress(host)
        }
        if let tls {
            for f in [tls.certificateChain, tls.privateKey] where !FileManager.default.isReadableFile(atPath: f) {
                throw GRPCBridgeError.unreadable(f)
            }
        }
        guard queueBound >= 1 else { throw GRPCBridgeError.badAddress("queue bound \(queueBound)", "must be at least 1") }
        guard (1...Int(Int32.max)).contains(maxConcurrentStreams) else {
            throw GRPCBridgeError.badAddress("max concurrent streams \(maxConcurrentStreams)", "must be 1…\(Int32.max)")
        }
    }
}

public enum GRPCBridgeError: Error, CustomStringConvertible, Sendable {
    case badAddress(String, String)
    case plaintextOnPublicAddress(String)
    case unreadable(String)
    case notListening(String)

    public var description: String {
        switch self {
        case .badAddress(let a, let why): return "invalid gRPC address \"\(a)\": \(why)"
        case .plaintextOnPublicAddress(let h):
            return "refusing to serve plain-text gRPC on \(h): anyone who reaches it could read any key's "
                + "ciphertext stream and publish into the overlay. Bind to 127.0.0.1, or give --grpc-tls CERT KEY"
        case .unreadable(let f): return "cannot read \(f)"
        case .notListening(let why): return "gRPC bridge did not start: \(why)"
        }
    }
}

/// A gRPC server running a `SignalingBridge` for one gossip backend. A `Service`, so a
/// `ServiceGroup` can run it and stop it gracefully.
///
/// It serves on a one-thread event loop (`eventLoopGroup`, shared by the bridges of a process),
/// and its tasks — RPC handlers, stream writers — run on that thread too
/// (`EventLoopTaskExecutor`): a message crosses the server without hopping between threads,
/// which is most of what a small message costs.
public final class SignalingServer: Service, Sendable {
    public let bridge: SignalingBridge
    public let configuration: GRPCBridgeConfiguration
    private let server: GRPCServer<HTTP2ServerTransport.Posix>
    private let logger: Logger
    private let executor: EventLoopTaskExecutor

    /// The event loop the bridges of this process serve on by default: one thread, started on
    /// first use, kept for the life of the process (like NIO's own singleton groups).
    public static let eventLoopGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    /// `eventLoopGroup` is where this bridge serves (its connections, handlers and stream
    /// writers): by default the process's one bridge thread. Bridges that share a thread share
    /// its time, so one that serves thousands of streams slows the others; give a bridge a group
    /// of its own to keep it apart (the caller owns that group; work is still scheduled on it
    /// while the server tears down, so keep it running, as NIO's singletons are).
    public init(backend: GossipBackend, configuration: GRPCBridgeConfiguration,
                eventLoopGroup: MultiThreadedEventLoopGroup = SignalingServer.eventLoopGroup,
                logger: Logger = Logger(label: "warren.grpc")) throws {
        try configuration.validate()
        self.configuration = configuration
        self.logger = logger
        executor = EventLoopTaskExecutor(eventLoopGroup.next())
        bridge = SignalingBridge(backend: backend, queueBound: configuration.queueBound, logger: logger,
                                 executor: executor)
        let security: HTTP2ServerTransport.Posix.TransportSecurity
        if let tls = configuration.tls {
            security = .tls(certificateChain: [.file(path: tls.certificateChain, format: .pem)],
                            privateKey: .file(path: tls.privateKey, format: .pem))
        } else {
            security = .plaintext
        }
        let address: GRPCNIOTransportCore.SocketAddress = configuration.host.contains(":")
            ? .ipv6(host: configuration.host, port: configuration.port)
            : .ipv4(host: configuration.host == "localhost" ? "127.0.0.1" : configuration.host, port: configuration.port)
        server = GRPCServer(transport: .http2NIOPosix(address: address, transportSecurity: security,
                                                      config: Self.transportConfig(configuration) { [bridge] why, error, peer in
                                                          bridge.noteConnectionError(why, error, peer: peer)
                                                      },
                                                      eventLoopGroup: eventLoopGroup),
                            services: [bridge])
    }

    /// The HTTP/2 transport's settings for `configuration`.
    ///
    /// swift-nio-http2 treats a client that opens more streams than the server's limit as a
    /// connection error (GOAWAY, every call on the connection fails), and its limit is 100 unless
    /// the server advertises another. So the limit is always advertised: conforming clients
    /// (grpc-go, grpc-core, grpc-swift) then queue calls beyond it instead of opening them.
    /// `onConnectionError` hears of every connection swift-nio-http2 closes because the client
    /// broke one of its rules (`ConnectionErrorObserver`).
    public static func transportConfig(
        _ configuration: GRPCBridgeConfiguration,
        onConnectionError: (@Sendable (_ why: String, _ error: any Error, _ peer: String) -> Void)? = nil
    ) -> HTTP2ServerTransport.Posix.Config {
        .defaults { config in
            config.http2.maxConcurrentStreams = configuration.maxConcurrentStreams
            config.connection.flushCoalescing = configuration.maxFlushDelay.map {
                HTTP2ServerTransport.Config.Connection.FlushCoalescing(maxFlushDelay: $0, maxBytes: 64 * 1024)
            }
            if let onConnectionError {
                config.channelDebuggingCallbacks.onAcceptTCPConnection = { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let pipeline = channel.pipeline.syncOperations
                        let http2 = try pipeline.handler(type: NIOHTTP2Handler.self)
                        try pipeline.addHandler(ConnectionErrorObserver(report: onConnectionError), position: .after(http2))
                    }
                }
            }
        }
    }

    /// Serves until `shutdown()` or task cancellation.
    public func run() async throws {
        try await withTaskExecutorPreference(executor) {
            try await withGracefulShutdownHandler {
                try await server.serve()
            } onGracefulShutdown: {
                self.shutdown()
            }
        }
    }

    /// Waits until the server listens and returns its `HOST:PORT` (with the port it picked for 0).
    public func listeningAddress() async throws -> String {
        guard let address = try await server.listeningAddress else {
            throw GRPCBridgeError.notListening("the server stopped before it listened")
        }
        if let v4 = address.ipv4 { return "\(v4.host):\(v4.port)" }
        if let v6 = address.ipv6 { return "[\(v6.host)]:\(v6.port)" }
        return "\(address)"
    }

    /// Stops accepting calls, ends every Subscribe stream with `UNAVAILABLE` (so clients subscribe
    /// again, to this node once it is back or elsewhere), lets other open calls finish, then
    /// `run()` returns.
    public func shutdown() {
        server.beginGracefulShutdown()
        bridge.closeStreams()
    }
}
