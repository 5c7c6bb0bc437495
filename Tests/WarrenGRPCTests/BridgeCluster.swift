import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import NIOPosix
import Warren
import WarrenConformance

/// A bridge serving one node, running until `stop()`.
///
/// Each serves on a thread of its own, not the process's shared bridge thread: the suites run
/// at once in one process, and a test that keeps a thread busy for a minute (1,000 streams on
/// one connection, in a debug build, on a loaded machine) would otherwise hold up every other
/// test's bridges — CI saw the 4-bridge exchange's subscriptions not go live in 30 s.
struct ServedBridge: Sendable {
    let server: SignalingServer
    let task: Task<Void, any Error>
    let group: MultiThreadedEventLoopGroup
    /// HOST:PORT it listens on.
    let address: String

    static func start(_ backend: GossipBackend,
                      _ configuration: GRPCBridgeConfiguration = GRPCBridgeConfiguration(host: "127.0.0.1", port: 0)) async throws -> ServedBridge {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server: SignalingServer
        do {
            server = try SignalingServer(backend: backend, configuration: configuration, eventLoopGroup: group)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        let task = Task { try await server.run() }
        return ServedBridge(server: server, task: task, group: group, address: try await server.listeningAddress())
    }

    var bridge: SignalingBridge { server.bridge }
    var port: Int { Int(address.split(separator: ":").last!)! }

    func stop() async {
        server.shutdown()
        _ = await task.result
        try? await group.shutdownGracefully()
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
/// thousands of small envelopes). Its connection runs on a thread of its own rather than on NIO's
/// shared group, which the other tests' `grpc://` clients use (as `ServedBridge` does for servers).
func withRawClient<R: Sendable>(_ address: String, windowSize: Int? = nil,
                                _ body: @Sendable (Cunicu_Signaling_Signaling.Client<HTTP2ClientTransport.Posix>) async throws -> R) async throws -> R {
    let parts = address.split(separator: ":")
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    do {
        let transport = try HTTP2ClientTransport.Posix(target: .ipv4(address: String(parts[0]), port: Int(parts[1])!),
                                                       transportSecurity: .plaintext,
                                                       config: .defaults { c in if let windowSize { c.http2.targetWindowSize = windowSize } },
                                                       eventLoopGroup: group)
        let result = try await withGRPCClient(transport: transport) { client in
            try await body(Cunicu_Signaling_Signaling.Client(wrapping: client))
        }
        try? await group.shutdownGracefully()
        return result
    } catch {
        try? await group.shutdownGracefully()
        throw error
    }
}

/// A sealed envelope from `from` to `to` carrying `candidate.port = id`.
func sealed(from: PrivateKey, to: Key, id: Int32) throws -> Envelope {
    var m = SignalingMessage()
    m.candidate.port = id
    return try EnvelopeCodec.shared.seal(m, from: from, to: to)
}
