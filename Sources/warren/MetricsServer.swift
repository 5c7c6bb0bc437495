import Foundation
import Glibc
import Prometheus

/// A minimal HTTP/1.0 server on its own thread for `GET /metrics` (Prometheus text format) and
/// `GET /status` (JSON). One request per connection; anything else is 404/405. Meant for
/// loopback or a management network: it serves read-only counters and the neighbour table.
final class MetricsServer: Sendable {
    let address: String
    private let fd: Int32

    /// Binds `host:port` (port 0 picks one; `address` tells which).
    init(bind spec: String, registry: PrometheusCollectorRegistry,
         status: @escaping @Sendable () -> String) throws {
        let (host, port) = try Self.split(spec)
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard s >= 0 else { throw ServerError("socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else {
            close(s); throw ServerError("--metrics: \"\(host)\" is not an IPv4 address")
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0, listen(s, 16) == 0 else {
            let e = String(cString: strerror(errno)); close(s)
            throw ServerError("--metrics: cannot listen on \(spec): \(e)")
        }
        var bound = sockaddr_in(); var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }
        fd = s
        address = "\(host):\(UInt16(bigEndian: bound.sin_port))"
        let t = Thread { Self.serve(fd: s, registry: registry, status: status) }
        t.name = "warren-metrics"
        t.start()
    }

    static func split(_ spec: String) throws -> (String, UInt16) {
        guard let colon = spec.lastIndex(of: ":"), let port = UInt16(spec[spec.index(after: colon)...]) else {
            throw ServerError("--metrics must be HOST:PORT (e.g. 127.0.0.1:9100), got \"\(spec)\"")
        }
        let host = String(spec[..<colon])
        // No host: loopback (an address must be given to serve anywhere else).
        return (host.isEmpty ? "127.0.0.1" : host, port)
    }

    private static func serve(fd: Int32, registry: PrometheusCollectorRegistry, status: @Sendable () -> String) {
        while true {
            let c = accept(fd, nil, nil)
            if c < 0 { if errno == EINTR { continue }; return }
            var tv = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            var buf = [UInt8](repeating: 0, count: 4096)
            let n = read(c, &buf, buf.count)
            let request = n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : ""
            let line = request.split(separator: "\r\n", maxSplits: 1).first.map(String.init) ?? ""
            let parts = line.split(separator: " ")
            var code = "404 Not Found", type = "text/plain", body = "not found: try /metrics or /status\n"
            if parts.count >= 2 {
                if parts[0] != "GET" { code = "405 Method Not Allowed"; body = "only GET\n" }
                else if parts[1] == "/metrics" { code = "200 OK"; type = "text/plain; version=0.0.4"; body = registry.emitToString() }
                else if parts[1] == "/status" { code = "200 OK"; type = "application/json"; body = status() + "\n" }
            }
            let response = "HTTP/1.0 \(code)\r\nContent-Type: \(type)\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
            _ = response.withCString { write(c, $0, strlen($0)) }
            close(c)
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
