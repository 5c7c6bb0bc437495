import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Synchronization
import Warren

/// The single-process baseline of `warren-bench bridge`: the smallest server of cunīcu's
/// signaling service a user would otherwise run — what `cunicu signal` does, on the same
/// grpc-swift stack as the bridge, with grpc-swift's default transport settings. `Publish` hands
/// the envelope to every stream subscribed to its recipient (dropped when there is none);
/// `Subscribe` sends the empty "live" envelope, then whatever arrives for its key.
final class BaselineSignaling: Cunicu_Signaling_Signaling.SimpleServiceProtocol, Sendable {
    private let streams = Mutex<(next: UInt64, byKey: [Data: [UInt64: AsyncStream<Envelope>.Continuation]])>((0, [:]))
    /// Called with each routed envelope, for the bench's per-stage times.
    let onRoute: @Sendable (Envelope) -> Void

    init(onRoute: @escaping @Sendable (Envelope) -> Void = { _ in }) { self.onRoute = onRoute }

    func getBuildInfo(request: Cunicu_Empty, context: ServerContext) async throws -> Cunicu_BuildInfo { .current }

    func publish(request: Envelope, context: ServerContext) async throws -> Cunicu_Empty {
        let targets = streams.withLock { s in s.byKey[request.recipient].map { Array($0.values) } ?? [] }
        onRoute(request)
        for t in targets { t.yield(request) }
        return Cunicu_Empty()
    }

    func subscribe(request: Cunicu_Signaling_SubscribeParams, response: RPCWriter<Envelope>,
                   context: ServerContext) async throws {
        let (stream, continuation) = AsyncStream.makeStream(of: Envelope.self)
        let key = request.key
        let id = streams.withLock { s -> UInt64 in
            s.next += 1
            s.byKey[key, default: [:]][s.next] = continuation
            return s.next
        }
        defer {
            streams.withLock { s in
                s.byKey[key]?.removeValue(forKey: id)
                if s.byKey[key]?.isEmpty == true { s.byKey[key] = nil }
            }
        }
        try await withRPCCancellationHandler {
            try await response.write(Envelope())
            for await env in stream { try await response.write(env) }
        } onCancelRPC: {
            continuation.finish()
        }
    }
}

/// The baseline server on a free loopback port, until `stop()`.
struct BaselineServer: Sendable {
    let server: GRPCServer<HTTP2ServerTransport.Posix>
    let task: Task<Void, any Error>
    let address: String

    static func start(_ service: BaselineSignaling,
                      config: HTTP2ServerTransport.Posix.Config = .defaults) async throws -> BaselineServer {
        let server = GRPCServer(transport: .http2NIOPosix(address: .ipv4(host: "127.0.0.1", port: 0),
                                                          transportSecurity: .plaintext, config: config),
                                services: [service])
        let task = Task { try await server.serve() }
        guard let address = try await server.listeningAddress?.ipv4 else {
            throw ValidationError("the baseline server did not listen")
        }
        return BaselineServer(server: server, task: task, address: "\(address.host):\(address.port)")
    }

    func stop() async {
        server.beginGracefulShutdown()
        task.cancel()
        _ = await task.result
    }
}
