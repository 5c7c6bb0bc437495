import Foundation
import Glibc
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import WarrenCLI
import WarrenEngine

/// The metrics endpoint: an HTTP/1.1 server (SwiftNIO) for `GET /metrics` (Prometheus text
/// format) and `GET /status` (JSON). Anything else is 404/405. Connections are served
/// concurrently and kept alive as HTTP/1.1 allows; nothing blocks the node. Meant for loopback
/// or a management network: it serves read-only counters and the neighbour table.
final class MetricsServer: Sendable {
    let address: String
    private let channel: any Channel

    /// Binds `host:port` (port 0 picks one; `address` tells which).
    init(bind spec: String, registry: PrometheusCollectorRegistry,
         status: @escaping @Sendable () async -> String) throws {
        let (host, port) = try Self.split(spec)
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(MetricsHTTPHandler(registry: registry, status: status))
                }
            }
        do { channel = try bootstrap.bind(host: host, port: Int(port)).wait() } catch {
            throw ServerError("--metrics: cannot listen on \(spec): \(describe(error))")
        }
        address = "\(host):\(channel.localAddress?.port ?? Int(port))"
    }

    static func split(_ spec: String) throws -> (String, UInt16) {
        // No host (":9100"): loopback (an address must be given to serve anywhere else).
        let text = spec.hasPrefix(":") ? "127.0.0.1" + spec : spec
        do {
            let hp = try HostPort(parsing: text, for: .listen)
            return (hp.host, hp.port ?? 0)
        } catch {
            throw ServerError("--metrics must be HOST:PORT (e.g. 127.0.0.1:9100), got \"\(spec)\": \(error.rule)")
        }
    }
}

/// One connection's requests: `/metrics` and `/status`.
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let registry: PrometheusCollectorRegistry
    let status: @Sendable () async -> String
    private var head: HTTPRequestHead?

    init(registry: PrometheusCollectorRegistry, status: @escaping @Sendable () async -> String) {
        self.registry = registry
        self.status = status
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break
        case .end:
            guard let h = head else { return }
            head = nil
            if h.method != .GET {
                respond(context, h, status: .methodNotAllowed, type: "text/plain", body: "only GET\n")
            } else if h.uri == "/metrics" {
                respond(context, h, status: .ok, type: "text/plain; version=0.0.4", body: registry.emitToString())
            } else if h.uri == "/status" {
                let promise = context.eventLoop.makePromise(of: String.self)
                promise.completeWithTask { [status] in await status() }
                promise.futureResult.assumeIsolated().whenSuccess { body in
                    self.respond(context, h, status: .ok, type: "application/json", body: body + "\n")
                }
            } else {
                respond(context, h, status: .notFound, type: "text/plain", body: "not found: try /metrics or /status\n")
            }
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ request: HTTPRequestHead, status: HTTPResponseStatus,
                         type: String, body: String) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: type)
        headers.add(name: "Content-Length", value: "\(body.utf8.count)")
        let keepAlive = request.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}

struct ServerError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// GET http://ADDR/PATH over a plain socket (HTTP/1.0). Returns the body.
func httpGet(_ spec: String, path: String) throws -> String {
    let (host, port) = try MetricsServer.split(spec)
    let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard s >= 0 else { throw ServerError("socket failed") }
    defer { close(s) }
    var tv = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = port.bigEndian
    guard inet_pton(AF_INET, host == "0.0.0.0" ? "127.0.0.1" : host, &addr.sin_addr) == 1 else {
        throw ServerError("\"\(host)\" is not an IPv4 address")
    }
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard rc == 0 else { throw ServerError("cannot connect to \(spec): \(String(cString: strerror(errno))) — is a node running with --metrics \(spec)?") }
    let req = "GET \(path) HTTP/1.0\r\nHost: \(spec)\r\n\r\n"
    _ = req.withCString { write(s, $0, strlen($0)) }
    var data = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(s, &buf, buf.count)
        if n <= 0 { break }
        data += buf[0..<n]
    }
    let text = String(decoding: data, as: UTF8.self)
    guard let split = text.range(of: "\r\n\r\n") else { throw ServerError("bad HTTP response from \(spec)") }
    let head = text[..<split.lowerBound]
    guard head.hasPrefix("HTTP/1.0 200") || head.hasPrefix("HTTP/1.1 200") else {
        throw ServerError("\(spec)\(path): \(head.split(separator: "\r\n").first ?? "")")
    }
    return String(text[split.upperBound...])
}
