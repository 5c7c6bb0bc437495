#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CNiceShim
import Logging
import WarrenSession

/// STUN and TURN servers as libnice takes them: numeric addresses, one STUN server, at most
/// eight TURN servers (NICE_CANDIDATE_MAX_TURN_SERVERS).
struct NiceServers: Sendable, Equatable {
    struct STUN: Sendable, Equatable {
        /// A numeric IPv4 address (libnice's `stun-server` property).
        var address: String
        var port: Int
    }

    struct Relay: Sendable, Equatable {
        /// A numeric IPv4 or IPv6 address.
        var address: String
        var port: Int
        var username: String
        var password: String
        /// `CNS_RELAY_TURN_UDP`, `_TCP` or `_TLS`.
        var relayType: Int32
        var relayProtocol: ICECandidate.RelayProtocol
    }

    var stun: STUN?
    var relays: [Relay] = []

    static let maxRelays = 8

    /// Checks and resolves `servers`: the first `stun:` entry becomes the STUN server (later ones
    /// are ignored with a warning, libnice takes one); every TURN entry becomes a relay. Host
    /// names are resolved here, once (getaddrinfo blocks).
    static func resolve(_ servers: [ICEServer], logger: Logger? = nil,
                        resolver: (String, Int32) -> String? = NiceServers.lookUp) throws(NiceAgentError) -> NiceServers {
        /// Numeric hosts need no lookup.
        func find(_ host: String, _ family: Int32) -> String? {
            if let f = IPAddress.family(host) { return f == family ? IPAddress.normalized(host) : nil }
            return resolver(host, family)
        }
        var result = NiceServers()
        for server in servers {
            guard (1...65535).contains(server.port) else {
                throw .invalidServer(server.description, reason: "port \(server.port) is not 1–65535")
            }
            guard !server.host.isEmpty else { throw .invalidServer(server.description, reason: "the host is empty") }
            switch server.kind {
            case .stun:
                if result.stun != nil {
                    logger?.warning("libnice uses one STUN server: ignoring \(server)")
                    continue
                }
                if IPAddress.family(server.host) == AF_INET6 {
                    throw .invalidServer(server.description, reason: "libnice's STUN server must be IPv4")
                }
                guard let address = find(server.host, AF_INET) else { throw .unresolvableHost(server.host) }
                result.stun = STUN(address: address, port: server.port)
            case .turn, .turns:
                guard let username = server.username, !username.isEmpty,
                      let password = server.password, !password.isEmpty else {
                    throw .invalidServer(server.description, reason: "a TURN server needs a user name and a password")
                }
                let type: Int32
                let proto: ICECandidate.RelayProtocol
                switch (server.kind, server.transport) {
                case (_, .dtls):
                    throw .invalidServer(server.description, reason: "libnice has no TURN over DTLS")
                case (.turns, _), (_, .tls):
                    (type, proto) = (Int32(CNS_RELAY_TURN_TLS), .tls)
                case (_, .tcp):
                    (type, proto) = (Int32(CNS_RELAY_TURN_TCP), .tcp)
                default:
                    (type, proto) = (Int32(CNS_RELAY_TURN_UDP), .udp)
                }
                guard result.relays.count < maxRelays else {
                    throw .invalidServer(server.description, reason: "libnice takes at most \(maxRelays) TURN servers")
                }
                guard let address = find(server.host, AF_INET) ?? find(server.host, AF_INET6) else {
                    throw .unresolvableHost(server.host)
                }
                result.relays.append(Relay(address: address, port: server.port, username: username,
                                           password: password, relayType: type, relayProtocol: proto))
            }
        }
        return result
    }

    /// The relay protocol of a local relay candidate. libnice 0.1.21 does not expose the TURN
    /// server of a candidate, but encodes its index (the order of `nice_agent_set_relay_info`
    /// calls) in bits 6–8 of the local preference, i.e. bits 14–16 of the priority; when that
    /// index is out of range, the protocol shared by every relay (if any) is used.
    func relayProtocol(priority: UInt32) -> ICECandidate.RelayProtocol? {
        let index = Int((priority >> 14) & 0x7)
        if index < relays.count { return relays[index].relayProtocol }
        let protocols = Set(relays.map(\.relayProtocol))
        return protocols.count == 1 ? protocols.first : nil
    }

    /// The first address of the name `host` in `family` (AF_INET or AF_INET6), from getaddrinfo.
    static func lookUp(_ host: String, _ family: Int32) -> String? {
        var hints = addrinfo()
        hints.ai_family = family
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        #else
        hints.ai_socktype = SOCK_DGRAM
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0, let first = list else { return nil }
        defer { freeaddrinfo(first) }
        var node: UnsafeMutablePointer<addrinfo>? = first
        while let n = node {
            if n.pointee.ai_family == family, let sa = n.pointee.ai_addr {
                var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
                let ok: Bool
                if family == AF_INET {
                    ok = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                        var a = sin.pointee.sin_addr
                        return inet_ntop(AF_INET, &a, &buffer, socklen_t(buffer.count)) != nil
                    }
                } else {
                    ok = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                        var a = sin6.pointee.sin6_addr
                        return inet_ntop(AF_INET6, &a, &buffer, socklen_t(buffer.count)) != nil
                    }
                }
                if ok { return IPAddress.string(buffer) }
            }
            node = n.pointee.ai_next
        }
        return nil
    }
}

/// Numeric IP address checks (inet_pton).
enum IPAddress {
    /// AF_INET or AF_INET6 when `text` is a numeric address, nil otherwise.
    static func family(_ text: String) -> Int32? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return AF_INET }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return AF_INET6 }
        return nil
    }

    /// The text before the first NUL.
    static func string(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The canonical text of a numeric address (`::FFFF:1.2.3.4` → `::ffff:1.2.3.4`).
    static func normalized(_ text: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1,
           inet_ntop(AF_INET, &v4, &buffer, socklen_t(buffer.count)) != nil {
            return string(buffer)
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1,
           inet_ntop(AF_INET6, &v6, &buffer, socklen_t(buffer.count)) != nil {
            return string(buffer)
        }
        return nil
    }
}
