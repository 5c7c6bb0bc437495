import Foundation
import Logging
import WarrenCore
import WarrenGossip
import WarrenGRPCClient

/// Creates backends from URLs, like cunīcu: the scheme picks the implementation.
///
/// - `inprocess:` — all instances in this process share one registry.
/// - `gossip://HOST:PORT?peer=tcp://…&peer=…&ttl=…&leaf=true&preset=local|lan` — a node of the
///   ZeroMQ gossip overlay listening on tcp://HOST:PORT (see `GossipConfiguration`).
/// - `grpc://HOST:PORT?insecure=true` — a client of cunīcu's gRPC signaling service, served by a
///   Warren node's bridge or by `cunicu signal` (see `GRPCConfiguration`).
public enum Backends {
    public static let schemes = ["inprocess", "gossip", "grpc"]

    /// Creates the backend `config.url` names.
    public static func make(_ config: BackendConfig) async throws -> any Backend {
        let scheme = (config.url.scheme ?? "").lowercased()
        switch scheme {
        case "inprocess":
            return InProcessBackend(config: config)
        case "gossip":
            let b = try makeGossip(config)
            for h in config.onReady { h.onSignalingBackendReady(b) }
            return b
        case "grpc":
            let b = try GRPCBackend(url: config.url, logger: config.logger)
            for h in config.onReady { h.onSignalingBackendReady(b) }
            return b
        default:
            throw BackendError.unknownScheme(scheme.isEmpty ? config.url.absoluteString : scheme, known: schemes)
        }
    }

    /// Synchronous, so the configuration never lives in an async frame.
    static func makeGossip(_ config: BackendConfig) throws -> GossipBackend {
        try GossipBackend(try GossipConfiguration(url: config.url), logger: config.logger)
    }

    /// Parses `url` and creates its backend.
    public static func make(url: String, onReady: [any BackendReadyHandler] = [],
                            logger: Logger = Logger(label: "warren.backend")) async throws -> any Backend {
        guard let u = URL(string: url), u.scheme != nil else {
            throw BackendError.invalidURL(url, reason: "expected SCHEME:… such as inprocess: or gossip://127.0.0.1:7001")
        }
        return try await make(BackendConfig(url: u, onReady: onReady, logger: logger))
    }

    /// Creates one backend per URL; several URLs make a `MultiBackend` that fans out to all.
    public static func make(urls: [String], onReady: [any BackendReadyHandler] = [],
                            logger: Logger = Logger(label: "warren.backend")) async throws -> any Backend {
        var bs: [any Backend] = []
        for u in urls { bs.append(try await make(url: u, onReady: onReady, logger: logger)) }
        if bs.count == 1 { return bs[0] }
        return MultiBackend(bs)
    }
}
