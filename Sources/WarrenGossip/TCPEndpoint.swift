import Foundation
import Glibc
import WarrenEngine

/// A parsed `tcp://HOST:PORT`: the one parser for every endpoint Warren takes (`--listen`,
/// `--advertise`, `--peer`, the `gossip://` URL and its options, the configuration file).
///
/// HOST is an IPv4 address, an IPv6 address in brackets (`tcp://[::1]:7001`), a name
/// (resolved with the system resolver) or, to listen on every interface, `*`, `0.0.0.0` or
/// `[::]`. PORT is 1…65535; a listening endpoint may also give `*` or `0` (any free port).
public struct TCPEndpoint: Sendable, Hashable, CustomStringConvertible {
    /// The host without brackets (`::1`, `127.0.0.1`, `localhost`; `*` is kept as `0.0.0.0`).
    public var host: String
    /// nil: any free port (listening endpoints only).
    public var port: UInt16?

    /// What an endpoint is for: a listening one may use any port and every interface.
    public enum Use: Sendable { case listen, dial }

    public init(host: String, port: UInt16?) { self.host = host; self.port = port }

    /// Parses `text`; the error names the value and the rule (`HostPort`'s grammar after `tcp://`).
    public init(parsing text: String, for use: Use) throws {
        guard text.hasPrefix("tcp://") else {
            throw GossipConfigurationError.invalid("\"\(text)\" is not a valid endpoint: it must be tcp://HOST:PORT")
        }
        do {
            let hp = try HostPort(parsing: text.dropFirst(6), for: use == .listen ? .listen : .dial)
            host = hp.host
            port = hp.port
        } catch {
            // The rule's examples are given as endpoints here.
            let rule = error.rule.replacingOccurrences(of: "e.g. [::1]:7001", with: "e.g. tcp://[::1]:7001")
                .replacingOccurrences(of: "it must be [IPv6]:PORT", with: "it must be tcp://[IPv6]:PORT")
            throw GossipConfigurationError.invalid("\"\(text)\" is not a valid endpoint: \(rule)")
        }
    }

    var hostPort: HostPort { HostPort(host: host, port: port) }
    public var isIPv6: Bool { hostPort.isIPv6 }
    public var isIPv4: Bool { hostPort.isIPv4 }
    public var isLiteral: Bool { hostPort.isLiteral }
    /// `0.0.0.0` or `::`: every interface.
    public var isUnspecified: Bool { hostPort.isUnspecified }
    public var isLoopback: Bool { hostPort.isLoopback }

    /// `tcp://HOST:PORT` as ZeroMQ takes it (`*` for any port).
    public var description: String { "tcp://" + hostPort.description }

    /// The same endpoint with its host name resolved to an address (IPv4 preferred); addresses
    /// are returned as they are.
    public func resolved() throws -> TCPEndpoint {
        if isLiteral { return self }
        return TCPEndpoint(host: try Self.resolve(host), port: port)
    }

    /// Resolves a host name with the system resolver; the error is the resolver's reason.
    public static func resolve(_ name: String) throws -> String {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(name, nil, &hints, &res)
        guard rc == 0, let first = res else {
            throw GossipConfigurationError.invalid("cannot resolve the host \"\(name)\": \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(first) }
        var v4: String?, v6: String?
        var p: UnsafeMutablePointer<addrinfo>? = first
        while let a = p {
            if let s = numeric(a.pointee.ai_addr) {
                if a.pointee.ai_family == AF_INET { v4 = v4 ?? s } else if a.pointee.ai_family == AF_INET6 { v6 = v6 ?? s }
            }
            p = a.pointee.ai_next
        }
        guard let address = v4 ?? v6 else {
            throw GossipConfigurationError.invalid("cannot resolve the host \"\(name)\": no IPv4 or IPv6 address")
        }
        return address
    }

    /// The first address of an interface that is up and not loopback (nor IPv6 link-local):
    /// what a node listening on every interface advertises. nil when there is none.
    public static func interfaceAddress(ipv6: Bool) -> String? {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return nil }
        defer { freeifaddrs(first) }
        var p: UnsafeMutablePointer<ifaddrs>? = first
        while let i = p {
            p = i.pointee.ifa_next
            let flags = Int32(bitPattern: i.pointee.ifa_flags)
            guard let addr = i.pointee.ifa_addr, flags & Int32(IFF_UP) != 0,
                  flags & Int32(IFF_LOOPBACK) == 0 else { continue }
            let family = Int32(addr.pointee.sa_family)
            guard family == (ipv6 ? AF_INET6 : AF_INET), let s = numeric(addr) else { continue }
            if ipv6 && (s.lowercased().hasPrefix("fe80") || s.contains("%")) { continue }
            return s
        }
        return nil
    }

    static func numeric(_ sa: UnsafeMutablePointer<sockaddr>) -> String? {
        var buf = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        let len = socklen_t(sa.pointee.sa_family == AF_INET6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
        guard getnameinfo(sa, len, &buf, socklen_t(buf.count), nil, 0, NI_NUMERICHOST) == 0 else { return nil }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

