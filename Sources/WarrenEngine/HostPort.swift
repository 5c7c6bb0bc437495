import Glibc

/// `HOST:PORT` — the one parser of host-and-port text in Warren: overlay endpoints
/// (`tcp://` + this, `TCPEndpoint`), beacons, the gRPC bridge's and the metrics server's
/// addresses, `warren connect --forward`. HOST is an IPv4 address, an IPv6 address in brackets
/// (`[::1]:7001`) or a name; PORT is 1…65535. Where a socket is bound (`.listen`), `*` as the host
/// means every interface (kept as `0.0.0.0`) and `*` or `0` as the port any free one (`port`
/// nil); where one is dialled (`.dial`), neither.
public struct HostPort: Sendable, Hashable, CustomStringConvertible {
    /// The host without brackets.
    public var host: String
    /// nil: any free port (`.listen` only).
    public var port: UInt16?

    public enum Use: Sendable { case listen, dial }

    public init(host: String, port: UInt16?) { self.host = host; self.port = port }

    /// Parses `text`; the error states the rule it breaks.
    public init(parsing text: some StringProtocol, for use: Use) throws(HostPortError) {
        let rest = Substring(text)
        let hostPart: Substring, portPart: Substring
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw HostPortError("an IPv6 address needs its closing ']'") }
            hostPart = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            guard after.hasPrefix(":") else { throw HostPortError("it must be [IPv6]:PORT") }
            portPart = after.dropFirst()
            guard Self.isIPv6(String(hostPart)) else { throw HostPortError("\"\(hostPart)\" in brackets is not an IPv6 address") }
        } else {
            guard let colon = rest.lastIndex(of: ":") else { throw HostPortError("it has no :PORT") }
            hostPart = rest[..<colon]
            portPart = rest[rest.index(after: colon)...]
            if hostPart.contains(":") { throw HostPortError("an IPv6 address goes in brackets, e.g. [::1]:7001") }
        }
        guard !hostPart.isEmpty else { throw HostPortError("it has no host") }
        guard !hostPart.contains(where: { $0.isWhitespace || $0 == "/" || $0 == "@" }) else {
            throw HostPortError("the host \"\(hostPart)\" contains a space, '/' or '@'")
        }
        var host = String(hostPart)
        if host == "*" {
            guard use == .listen else { throw HostPortError("'*' is not a host others can dial") }
            host = "0.0.0.0"
        }
        if portPart == "*" {
            guard use == .listen else { throw HostPortError("the port must be 1…65535") }
            port = nil
        } else {
            guard !portPart.isEmpty, portPart.allSatisfy(\.isASCII), portPart.allSatisfy(\.isNumber),
                  let p = Int(portPart), p <= 65535 else {
                throw HostPortError("the port must be 1…65535\(use == .listen ? " (or * for any)" : "")")
            }
            if p == 0 {
                guard use == .listen else { throw HostPortError("the port must be 1…65535") }
                port = nil
            } else {
                port = UInt16(p)
            }
        }
        self.host = host
        if use == .dial && isUnspecified {
            throw HostPortError("\(host) means every interface, which is where a node listens, not an address others can dial")
        }
    }

    public var isIPv6: Bool { Self.isIPv6(host) }
    public var isIPv4: Bool { Self.isIPv4(host) }
    public var isLiteral: Bool { isIPv4 || isIPv6 }
    /// `0.0.0.0` or `::`: every interface.
    public var isUnspecified: Bool { host == "0.0.0.0" || (isIPv6 && Self.canonicalIPv6(host) == "::") }
    /// This host only: 127.0.0.0/8, `::1` (and its IPv4-mapped forms) or the name `localhost`.
    public var isLoopback: Bool {
        if host.lowercased() == "localhost" { return true }
        if isIPv4 { return host.hasPrefix("127.") }
        guard let c = Self.canonicalIPv6(host) else { return false }
        return c == "::1" || c.hasPrefix("::ffff:127.")
    }

    /// `HOST:PORT`, IPv6 in brackets, `*` for any port.
    public var description: String {
        (isIPv6 ? "[\(host)]" : host) + ":" + (port.map(String.init) ?? "*")
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

/// Why a `HOST:PORT` text was refused: the rule it breaks.
public struct HostPortError: Error, Sendable, CustomStringConvertible {
    public var rule: String
    public init(_ rule: String) { self.rule = rule }
    public var description: String { rule }
}
