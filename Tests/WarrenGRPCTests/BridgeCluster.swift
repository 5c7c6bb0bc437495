import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Warren
import WarrenConformance

/// Gossip nodes on loopback, each serving the gRPC bridge on a free loopback port.
final class BridgeCluster: Sendable {
    let overlay: GossipOverlay
    let servers: [SignalingServer]
    let tasks: [Task<Void, any Error>]
    let addresses: [String]

    private init(overlay: GossipOverlay, servers: [SignalingServer], tasks: [Task<Void, any Error>], addresses: [String]) {
        self.overlay = overlay; self.servers = servers; self.tasks = tasks; self.addresses = addresses
    }

    static func start(nodes: Int, edges: [(Int, Int)]? = nil, queueBound: Int = SignalingBridge.defaultQueueBound) async throws -> BridgeCluster {
        let overlay = try await GossipOverlay.start(nodes: nodes, edges: edges ?? GossipOverlay.ring(nodes))
        _ = await overlay.waitFormed()
        var servers: [SignalingServer] = [], tasks: [Task<Void, any Error>] = [], addresses: [String] = []
        for b in overlay.backends {
            let s = try SignalingServer(backend: b, configuration: GRPCBridgeConfiguration(host: "127.0.0.1", port: 0, queueBound: queueBound))
            tasks.append(Task { try await s.run() })
            servers.append(s)
            addresses.append(try await s.listeningAddress())
        }
        return BridgeCluster(overlay: overlay, servers: servers, tasks: tasks, addresses: addresses)
    }

    func url(_ i: Int) -> String { "grpc://\(addresses[i])?insecure=true" }

    func client(_ i: Int) async throws -> GRPCBackend {
        try await Backends.make(url: url(i)) as! GRPCBackend
    }

    func close() async {
        for s in servers { s.shutdown() }
        for t in tasks { _ = await t.result }
        await overlay.close()
    }
}

/// A raw client of the signaling service (no sealing, no back-off): for malformed input and
/// misbehaving streams.
func withRawClient<R: Sendable>(_ address: String,
                                _ body: @Sendable (Cunicu_Signaling_Signaling.Client<HTTP2ClientTransport.Posix>) async throws -> R) async throws -> R {
    let parts = address.split(separator: ":")
    let transport = try HTTP2ClientTransport.Posix(target: .ipv4(address: String(parts[0]), port: Int(parts[1])!),
                                                   transportSecurity: .plaintext)
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
