/// A LAN discovery beacon (docs/PROTOCOL.md §8): one UDP datagram that a node broadcasts on its
/// local networks so that nodes find each other without seeds. Layout: ASCII `WRNB`, version
/// `0x01`, node id (u64, ≠ 0), then the advertised endpoint as u16 length (1…255) + UTF-8 —
/// in a closed overlay `KEY@tcp://HOST:PORT`, so the beacon carries the node key too. Nothing
/// may follow. Decoding never traps; anything else is not a beacon (nil).
public struct Beacon: Sendable, Hashable {
    public var nodeID: NodeID
    public var endpoint: String

    public init(nodeID: NodeID, endpoint: String) { self.nodeID = nodeID; self.endpoint = endpoint }

    public static let magic: [UInt8] = [0x57, 0x52, 0x4E, 0x42]   // "WRNB"
    public static let version: UInt8 = 1

    /// nil if the endpoint cannot be carried (empty or over 255 bytes).
    public func encode() -> [UInt8]? {
        guard nodeID.raw != 0, Frame.isEncodable(endpoint: endpoint) else { return nil }
        var out = Self.magic
        out.append(Self.version)
        appendBigEndian(nodeID.raw, to: &out)
        Frame.appendEndpoint(endpoint, to: &out)
        return out
    }

    public static func decode(_ bytes: some Collection<UInt8>) -> Beacon? {
        let b = Array(bytes)
        return b.withUnsafeBufferPointer { p -> Beacon? in
            guard p.count >= 4 + 1 + 8 + 2, Array(p[0..<4]) == magic, p[4] == version else { return nil }
            var r = Reader(p: p, i: 5)
            guard let id = r.u64(), id != 0, case .success(let e) = r.endpoint(), r.i == p.count else { return nil }
            return Beacon(nodeID: NodeID(raw: id), endpoint: e)
        }
    }

    /// The endpoint to dial, given the address the beacon came from: a node that listens on a
    /// wildcard address advertises loopback (`tcp://127.0.0.1:PORT`), which means nothing to
    /// another host, so a loopback or wildcard host is replaced by the beacon's source address.
    /// A `KEY@` prefix is kept.
    public func endpoint(seenFrom source: String) -> String {
        let at = endpoint.firstIndex(of: "@")
        let prefix = at.map { String(endpoint[...$0]) } ?? ""
        let rest = at.map { String(endpoint[endpoint.index(after: $0)...]) } ?? endpoint
        guard rest.hasPrefix("tcp://"), var hp = try? HostPort(parsing: rest.dropFirst(6), for: .listen),
              hp.isLoopback || hp.isUnspecified, !source.isEmpty else { return endpoint }
        hp.host = source
        return prefix + "tcp://" + hp.description
    }
}
