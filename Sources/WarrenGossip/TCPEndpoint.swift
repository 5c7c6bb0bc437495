import Foundation
import Glibc

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

    /// Parses `text`; the error names the value and the rule.
    public init(parsing text: String, for use: Use) throws {
        func bad(_ rule: String) -> GossipConfigurationError {
            .invalid("\"\(text)\" is not a valid endpoint: \(rule)")
        }
        guard text.hasPrefix("tcp://") else { throw bad("it must be tcp://HOST:PORT") }
        let rest = text.dropFirst(6)
        let hostPart: Substring, portPart: Substring
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw bad("an IPv6 address needs its closing ']'") }
            hostPart = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            guard after.hasPrefix(":") else { throw bad("it must be tcp://[IPv6]:PORT") }
            portPart = after.dropFirst()
            guard Self.isIPv6(String(hostPart)) else { throw bad("\"\(hostPart)\" in brackets is not an IPv6 address") }
        } else {
            guard let colon = rest.lastIndex(of: ":") else { throw bad("it has no :PORT") }
            hostPart = rest[..<colon]
            portPart = rest[rest.index(after: colon)...]
            if hostPart.contains(":") { throw bad("an IPv6 address goes in brackets, e.g. tcp://[::1]:7001") }
        }
        guard !hostPart.isEmpty else { throw bad("it has no host") }
        guard !hostPart.contains(where: { $0.isWhitespace || $0 == "/" || $0 == "@" }) else {
            throw bad("the host \"\(hostPart)\" contains a space, '/' or '@'")
        }
        var host = String(hostPart)
        if host == "*" {
            guard use == .listen else { throw bad("'*' is not a host others can dial") }
            host = "0.0.0.0"
        }
        if portPart == "*" {
            guard use == .listen else { throw bad("the port must be 1…65535") }
            port = nil
        } else {
            guard !portPart.isEmpty, portPart.allSatisfy(\.isASCII), portPart.allSatisfy(\.isNumber),
                  let p = Int(portPart), p <= 65535 else {
                throw bad("the port must be 1…65535\(use == .listen ? " (or * for any)" : "")")
            }
            if p == 0 {
                guard use == .listen else { throw bad("the port must be 1…65535") }
                port = nil
            } else {
                port = UInt16(p)
            }
        }
        self.host = host
        if use == .dial && isUnspecified {
            throw bad("\(host) means every interface, which is where a node listens, not an address others can dial")
        }
    }

    public var isIPv6: Bool { Self.isIPv6(host) }
    public var isIPv4: Bool { Self.isIPv4(host) }
    public var isLiteral: Bool { isIPv4 || isIPv6 }
    /// `0.0.0.0` or `::`: every interface.
    public var isUnspecified: Bool { host == "0.0.0.0" || (isIPv6 && Self.canonicalIPv6(host) == "::") }

    /// `tcp://HOST:PORT` as ZeroMQ takes it (`*` for any port).
    public var description: String {
        let h = isIPv6 ? "[\(host)]" : host
        return "tcp://\(h):\(port.map(String.init) ?? "*")"
    }

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

    static func isIPv4(_ s: String) -> Bool {
        var a = in_addr()
        return inet_pton(AF_INET, s, &a) == 1
    }

    static func isIPv6(_ s: String) -> Bool {
        var a = in6_addr()
        return inet_pton(AF_INET6, s, &a) == 1
    }

    static func canonicalIPv6(_ s: String) -> String? {
        var a = in6_addr()
        guard inet_pton(AF_INET6, s, &a) == 1 else { return nil }
        var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, &a, &buf, socklen_t(buf.count)) != nil else { return nil }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
