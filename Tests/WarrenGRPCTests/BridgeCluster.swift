import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import NIOPosix
import Warren
import WarrenConformance

/// A one-thread event loop of its own, for a test's bridge or raw client, apart from the
/// process's shared bridge thread and NIO's singleton group: the suites run at once in one
/// process, and a test that keeps a thread busy for a minute (1,000 streams on one connection, in
/// a debug build, on a loaded machine) would otherwise hold up every other test's bridges — CI saw
/// the 4-bridge exchange's subscriptions not go live in 30 s. Like NIO's singletons it is never
/// shut down: a loop shut down after its server stopped still had work scheduled on it (NIO's
/// "Cannot schedule tasks on an EventLoop that has already shut down"). An idle loop is a parked
/// thread and three descriptors; the suite makes a few dozen.
func ownEventLoop() -> MultiThreadedEventLoopGroup { MultiThreadedEventLoopGroup(numberOfThreads: 1) }

/// A bridge serving one node, running until `stop()`, on its own event loop.
struct ServedBridge: Sendable {
    let server: SignalingServer
    let task: Task<Void, any Error>
    /// HOST:PORT it listens on.
    let address: String

    static func start(_ backend: GossipBackend,
                      _ configuration: GRPCBridgeConfiguration = GRPCBridgeConfiguration(host: "127.0.0.1", port: 0)) async throws -> ServedBridge {
        let server = try SignalingServer(backend: backend, configuration: configuration, eventLoopGroup: ownEventLoop())
        let task = Task { try await server.run() }
        return ServedBridge(server: server, task: task, address: try await server.listeningAddress())
    }

    var bridge: SignalingBridge { server.bridge }
    var port: Int { Int(address.split(separator: ":").last!)! }

    func stop() async {
        server.shutdown()
        _ = await task.result
    }
}

/// Gossip nodes on loopback, each serving the gRPC bridge on a free loopback port.
final class BridgeCluster: Sendable {
    let overlay: GossipOverlay
    let bridges: [ServedBridge]

    private init(overlay: GossipOverlay, bridges: [ServedBridge]) {
        self.overlay = overlay; self.bridges = bridges
    }

    static func start(nodes: Int, edges: [(Int, Int)]? = nil, queueBound: Int = SignalingBridge.defaultQueueBound) async throws -> BridgeCluster {
        let overlay = try await GossipOverlay.start(nodes: nodes, edges: edges ?? GossipOverlay.ring(nodes))
        _ = await overlay.waitFormed()
        var bridges: [ServedBridge] = []
        for b in overlay.backends {
            bridges.append(try await ServedBridge.start(b, GRPCBridgeConfiguration(host: "127.0.0.1", port: 0, queueBound: queueBound)))
        }
        return BridgeCluster(overlay: overlay, bridges: bridges)
    }

    var servers: [SignalingServer] { bridges.map(\.server) }
    var addresses: [String] { bridges.map(\.address) }

    func url(_ i: Int) -> String { "grpc://\(addresses[i])?insecure=true" }

    /// A client of node `i`'s bridge. Its calls and subscriptions may take 30 s (the default is
    /// 10): the whole suite runs at once on two cores, and a subscription of the 10-peer exchange
    /// once took longer than 10 s to go live in CI.
    func client(_ i: Int) async throws -> GRPCBackend {
        try await Backends.make(url: url(i) + "&timeout=30") as! GRPCBackend
    }

    func close() async {
        for b in bridges { await b.stop() }
        await overlay.close()
    }
}

/// A raw client of the signaling service (no sealing, no back-off): for malformed input and
/// misbehaving streams. `windowSize` is the HTTP/2 flow-control window it grants the server
/// (grpc-swift's default is 8 MiB, which a client that stops reading fills only after tens of
/// thousands of small envelopes). Its connection runs on `ownEventLoop()`, not on NIO's shared
/// group, which the other tests' `grpc://` clients use.
func withRawClient<R: Sendable>(_ address: String, windowSize: Int? = nil,
                                _ body: @Sendable (Cunicu_Signaling_Signaling.Client<HTTP2ClientTransport.Posix>) async throws -> R) async throws -> R {
    let parts = address.split(separator: ":")
    let transport = try HTTP2ClientTransport.Posix(target: .ipv4(address: String(parts[0]), port: Int(parts[1])!),
                                                   transportSecurity: .plaintext,
                                                   config: .defaults { c in if let windowSize { c.http2.targetWindowSize = windowSize } },
                                                   eventLoopGroup: ownEventLoop())
    return try await withGRPCClient(transport: transport) { client in
        try await body(Cunicu_Signaling_Signaling.Client(wrapping: client))
    }
}

/// A sealed envelope from `from` to `to` carrying `candidate.port = id`.
func sealed(from: PrivateKey, to: Key, id: Int32) throws -> Envelope {
    var m = SignalingMessage()
    m.candidate.port = id
    return try EnvelopeCodec.shared.seal(m, from: from, to: to)
}
