import CNiceShim
import WarrenSession

/// Conversions between `ICECandidate` and the shim's plain-field `cns_candidate` (NiceCandidate).
extension ICECandidate {
    /// The discard port libnice's TCP-active candidates carry in SDP; the struct holds 0.
    static let tcpActiveSignalledPort = 9

    /// Reads a candidate libnice reported. Relay candidates get the protocol of the TURN server
    /// that produced them (`servers`). Nil for values outside the protocol's types.
    init?(nice c: cns_candidate, servers: NiceServers) {
        guard Self.kinds.indices.contains(Int(c.type)), let kind = Self.kinds[Int(c.type)] else { return nil }
        let transport: Transport
        let tcpType: TCPType?
        switch Int(c.transport) {
        case Int(CNS_TRANSPORT_UDP): (transport, tcpType) = (.udp, nil)
        case Int(CNS_TRANSPORT_TCP_ACTIVE): (transport, tcpType) = (.tcp, .active)
        case Int(CNS_TRANSPORT_TCP_PASSIVE): (transport, tcpType) = (.tcp, .passive)
        case Int(CNS_TRANSPORT_TCP_SO): (transport, tcpType) = (.tcp, .simultaneousOpen)
        default: return nil
        }
        var port = Int(c.port)
        if tcpType == .active && port == 0 { port = Self.tcpActiveSignalledPort }
        let base = c.has_base != 0
        self.init(kind: kind, transport: transport, tcpType: tcpType,
                  foundation: Self.string(c.foundation), component: Int(c.component), priority: c.priority,
                  address: Self.string(c.address), port: port,
                  relatedAddress: base ? Self.string(c.base_address) : nil,
                  relatedPort: base ? Int(c.base_port) : nil,
                  relayProtocol: kind == .relay ? servers.relayProtocol(priority: c.priority) : nil)
    }

    /// Why libnice cannot take this remote candidate, or nil when it can.
    var niceProblem: String? {
        if IPAddress.family(address) == nil { return "address \(String(reflecting: address)) is not a numeric IP address" }
        if !(0...65535).contains(port) { return "port \(port) is not 0–65535" }
        if component != 1 { return "component \(component) (only 1 is used)" }
        if foundation.isEmpty { return "the foundation is empty" }
        if foundation.utf8.count > Int(CNS_FOUNDATION_LENGTH) - 1 {
            return "foundation has \(foundation.utf8.count) bytes (at most \(Int(CNS_FOUNDATION_LENGTH) - 1))"
        }
        if foundation.utf8.contains(0) { return "the foundation contains NUL" }
        if transport == .tcp && tcpType == nil { return "a TCP candidate needs a tcptype" }
        if let ra = relatedAddress {
            if IPAddress.family(ra) == nil { return "related address \(String(reflecting: ra)) is not a numeric IP address" }
            if let rp = relatedPort, !(0...65535).contains(rp) { return "related port \(rp) is not 0–65535" }
        }
        return nil
    }

    /// The shim's form (call only when `niceProblem` is nil). A TCP-active port of 9 becomes 0,
    /// as libnice stores it.
    var nice: cns_candidate {
        var c = cns_candidate()
        c.type = Int32(Self.kinds.firstIndex(of: kind) ?? 0)
        switch (transport, tcpType) {
        case (.udp, _): c.transport = Int32(CNS_TRANSPORT_UDP)
        case (.tcp, .active?): c.transport = Int32(CNS_TRANSPORT_TCP_ACTIVE)
        case (.tcp, .passive?): c.transport = Int32(CNS_TRANSPORT_TCP_PASSIVE)
        case (.tcp, _): c.transport = Int32(CNS_TRANSPORT_TCP_SO)
        }
        Self.copy(IPAddress.normalized(address) ?? address, into: &c.address)
        c.port = UInt32(clamping: transport == .tcp && tcpType == .active && port == Self.tcpActiveSignalledPort ? 0 : port)
        if let ra = relatedAddress {
            c.has_base = 1
            Self.copy(IPAddress.normalized(ra) ?? ra, into: &c.base_address)
            c.base_port = UInt32(clamping: relatedPort ?? 0)
        }
        c.priority = priority
        c.component = UInt32(clamping: component)
        Self.copy(foundation, into: &c.foundation)
        return c
    }

    /// NiceCandidateType order.
    private static let kinds: [Kind?] = [.host, .srflx, .prflx, .relay]

    private static func string<T>(_ field: T) -> String {
        withUnsafeBytes(of: field) { raw in
            let bytes = raw.prefix(while: { $0 != 0 })
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    /// Copies `text` with a terminating NUL, truncated to fit.
    private static func copy<T>(_ text: String, into field: inout T) {
        withUnsafeMutableBytes(of: &field) { raw in
            raw.initializeMemory(as: UInt8.self, repeating: 0)
            let bytes = Array(text.utf8.prefix(raw.count - 1))
            raw.copyBytes(from: bytes)
        }
    }
}
