import Foundation
import WarrenCore

/// cunīcu's `Candidate` message ↔ `ICECandidate`, with the range checks libnice needs
/// (docs/SESSION.md, "Messages").
public typealias SignalingCandidate = Cunicu_Epdisc_Candidate
public typealias SignalingCredentials = Cunicu_Epdisc_Credentials

/// Why a received candidate was refused.
public struct CandidateError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

extension ICECandidate {
    /// The longest foundation libnice keeps (longer ones are truncated silently).
    public static let maxFoundationLength = 32

    /// The candidate as cunīcu sends it.
    public var message: SignalingCandidate {
        var c = SignalingCandidate()
        switch kind {
        case .host: c.type = .host
        case .srflx: c.type = .serverReflexive
        case .prflx: c.type = .peerReflexive
        case .relay: c.type = .relay
        }
        switch (transport, isIPv6) {
        case (.udp, false): c.networkType = .udp4
        case (.udp, true): c.networkType = .udp6
        case (.tcp, false): c.networkType = .tcp4
        case (.tcp, true): c.networkType = .tcp6
        }
        switch tcpType {
        case nil: c.tcpType = .unspecifiedTcpType
        case .active: c.tcpType = .active
        case .passive: c.tcpType = .passive
        case .simultaneousOpen: c.tcpType = .simultaneousOpen
        }
        c.foundation = foundation
        c.component = Int32(component)
        c.priority = Int32(bitPattern: priority)
        c.address = address
        c.port = Int32(port)
        if let ra = relatedAddress {
            var r = Cunicu_Epdisc_RelatedAddress()
            r.address = ra
            r.port = Int32(relatedPort ?? 0)
            c.relatedAddress = r
        }
        switch relayProtocol {
        case nil: c.relayProtocol = .unspecifiedRelayProtocol
        case .udp: c.relayProtocol = .udp
        case .tcp: c.relayProtocol = .tcp
        case .tls: c.relayProtocol = .tls
        case .dtls: c.relayProtocol = .dtls
        }
        return c
    }

    /// Parses a received candidate; throws with the reason when libnice could not use it.
    public init(message c: SignalingCandidate) throws {
        switch c.type {
        case .host: kind = .host
        case .serverReflexive: kind = .srflx
        case .peerReflexive: kind = .prflx
        case .relay: kind = .relay
        default: throw CandidateError("candidate type \(c.type.rawValue) is not host, srflx, prflx or relay")
        }
        let ipv6: Bool
        switch c.networkType {
        case .udp4: transport = .udp; ipv6 = false
        case .udp6: transport = .udp; ipv6 = true
        case .tcp4: transport = .tcp; ipv6 = false
        case .tcp6: transport = .tcp; ipv6 = true
        default: throw CandidateError("network type \(c.networkType.rawValue) is not udp4, udp6, tcp4 or tcp6")
        }
        switch (transport, c.tcpType) {
        case (.udp, .unspecifiedTcpType): tcpType = nil
        case (.udp, _): throw CandidateError("a UDP candidate has a TCP type")
        case (.tcp, .active): tcpType = .active
        case (.tcp, .passive): tcpType = .passive
        case (.tcp, .simultaneousOpen): tcpType = .simultaneousOpen
        case (.tcp, _): throw CandidateError("a TCP candidate needs a TCP type (active, passive or so)")
        }
        guard !c.foundation.isEmpty, c.foundation.utf8.count <= Self.maxFoundationLength,
              c.foundation.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "+" || $0 == "/") })
        else {
            throw CandidateError("foundation \(String(reflecting: String(c.foundation.prefix(40)))) is not 1–32 ICE characters")
        }
        foundation = c.foundation
        guard (1...256).contains(c.component) else { throw CandidateError("component \(c.component) is not 1–256") }
        component = Int(c.component)
        // cunīcu carries the 32-bit priority in an int32 field: reinterpret, and refuse 0.
        priority = UInt32(bitPattern: c.priority)
        guard priority != 0 else { throw CandidateError("priority is 0") }
        guard let family = IPLiteral.family(c.address) else {
            throw CandidateError("address \(String(reflecting: String(c.address.prefix(64)))) is not a numeric IP address")
        }
        guard family == (ipv6 ? .v6 : .v4) else {
            throw CandidateError("address \(c.address) does not match network type \(ipv6 ? "IPv6" : "IPv4")")
        }
        address = c.address
        // A TCP-active candidate has no listening port (0, or 9 in SDP).
        let portRange = (transport == .tcp && tcpType == .active) ? 0...65535 : 1...65535
        guard portRange.contains(Int(c.port)) else { throw CandidateError("port \(c.port) is out of range") }
        port = Int(c.port)
        if c.hasRelatedAddress, !c.relatedAddress.address.isEmpty {
            guard IPLiteral.family(c.relatedAddress.address) != nil else {
                throw CandidateError("related address \(String(reflecting: String(c.relatedAddress.address.prefix(64)))) is not a numeric IP address")
            }
            guard (0...65535).contains(Int(c.relatedAddress.port)) else {
                throw CandidateError("related port \(c.relatedAddress.port) is out of range")
            }
            relatedAddress = c.relatedAddress.address
            relatedPort = Int(c.relatedAddress.port)
        } else {
            relatedAddress = nil
            relatedPort = nil
        }
        switch c.relayProtocol {
        case .udp: relayProtocol = .udp
        case .tcp: relayProtocol = .tcp
        case .tls: relayProtocol = .tls
        case .dtls: relayProtocol = .dtls
        default: relayProtocol = nil
        }
    }
}

/// Numeric IP literals, checked with `inet_pton` (never the resolver).
public enum IPLiteral {
    public enum Family: Sendable { case v4, v6 }

    /// The family of a numeric address, or nil when `s` is not one (names, mDNS, zone ids).
    public static func family(_ s: String) -> Family? {
        var buf = [UInt8](repeating: 0, count: 16)
        if inet_pton(AF_INET, s, &buf) == 1 { return .v4 }
        if inet_pton(AF_INET6, s, &buf) == 1 { return .v6 }
        return nil
    }
}
