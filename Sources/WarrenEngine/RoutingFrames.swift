// The frames of unicast routing (docs/PROTOCOL.md §9): ROUTED (10), NODES (11), STORE (12); 13 is
// reserved for routing. They are sent only to neighbours whose HELLO set flag bit 2 ("routing"):
// a node built before them decodes their type as `unknownType` (malformed).

/// Type codes of the routing frames.
public enum RoutingTypeCode {
    /// A DATA frame travelling a path: on the recipient's topic, ttl and hops as DATA.
    public static let routed: UInt8 = 10
    /// Contacts the sender knows closest to the receiver (a peer list), on the control topic.
    public static let nodes: UInt8 = 11
    /// A location record to store at the nodes closest to a key's hash, on the control topic.
    public static let store: UInt8 = 12
    /// Reserved for routing (not sent; malformed like any unknown type).
    public static let reserved: UInt8 = 13

    /// True for 10, 11 and 12.
    @inline(__always)
    public static func isRouting(_ type: UInt8) -> Bool { type >= routed && type <= store }
}

/// Where a ROUTED frame is heading: the point of the XOR space of its key's hash (to a record
/// holder), or a node that subscribes the key.
public enum RouteMode: UInt8, Sendable, Hashable {
    case key = 0
    case node = 1
}

/// A ROUTED frame where it lies (no copy): header, mode, target, envelope.
///
/// Body: 12-byte header (type 10, ttl ≥ 1, hops, from), `mode` u8 (0 key, 1 node), `target` u64,
/// then the envelope (≥ 1 byte) to the end. Its message id is that of the envelope, exactly as for
/// DATA: a routed copy and a flooded copy of one message are the same message.
public struct RoutedFrameView {
    public let topic: Topic
    public let header: FrameHeader
    public let mode: RouteMode
    public let target: UInt64
    public let body: UnsafeBufferPointer<UInt8>

    /// Bytes before the envelope.
    public static let prefixSize = FrameHeader.size + 9

    /// A checked ROUTED frame, or the reason it is malformed.
    public static func check(topic: Topic, body: UnsafeBufferPointer<UInt8>) -> Result<RoutedFrameView, FrameError> {
        let h: FrameHeader
        switch FrameHeader.read(body) {
        case .success(let v): h = v
        case .failure(let e): return .failure(e)
        }
        guard h.type == RoutingTypeCode.routed else { return .failure(.unknownType(h.type)) }
        guard h.from.raw != 0 else { return .failure(.zeroNodeID) }
        guard !topic.isControl else { return .failure(.dataOnControlTopic) }
        guard h.ttl != 0 else { return .failure(.zeroTTL) }
        guard body.count >= prefixSize else { return .failure(.truncated) }
        guard let mode = RouteMode(rawValue: body[FrameHeader.size]) else { return .failure(.badRouteMode(body[FrameHeader.size])) }
        guard body.count > prefixSize else { return .failure(.emptyEnvelope) }
        var t: UInt64 = 0
        for k in (FrameHeader.size + 1)..<prefixSize { t = t << 8 | UInt64(body[k]) }
        return .success(RoutedFrameView(topic: topic, header: h, mode: mode, target: t, body: body))
    }

    /// A view of a checked ROUTED body, or nil.
    public init?(topic: Topic, body: UnsafeBufferPointer<UInt8>) {
        guard case .success(let v) = Self.check(topic: topic, body: body) else { return nil }
        self = v
    }

    init(topic: Topic, header: FrameHeader, mode: RouteMode, target: UInt64, body: UnsafeBufferPointer<UInt8>) {
        self.topic = topic; self.header = header; self.mode = mode; self.target = target; self.body = body
    }

    public var envelope: UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(rebasing: body[Self.prefixSize...]) }

    public func messageID() -> MessageID { MessageID(envelope: envelope) }

    /// The body of a ROUTED frame for `envelope`.
    public static func encode(envelope: UnsafeBufferPointer<UInt8>, mode: RouteMode, target: UInt64,
                              ttl: UInt8, hops: UInt8, from: NodeID) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(prefixSize + envelope.count)
        FrameHeader(type: RoutingTypeCode.routed, ttl: ttl, hops: hops, from: from).append(to: &out)
        out.append(mode.rawValue)
        appendBigEndian(target, to: &out)
        out.append(contentsOf: envelope)
        return out
    }

    public static func encode(envelope: [UInt8], mode: RouteMode, target: UInt64,
                              ttl: UInt8, hops: UInt8, from: NodeID) -> [UInt8] {
        envelope.withUnsafeBufferPointer { encode(envelope: $0, mode: mode, target: target, ttl: ttl, hops: hops, from: from) }
    }
}

/// A location record on the wire (STORE, type 12): "subscriber `node` (at `endpoint`) takes
/// DATA for `key`, for `lifetime`".
///
/// Body: 12-byte header (type 12, ttl 0, hops 0, from), `key` 32 bytes, `node` u64 (≠ 0),
/// `lifetime` u32 milliseconds (0: withdraw the record), `hopsLeft` u8 (how many more hops it may
/// be routed), `flags` u8 (bit 0: replica — store it, do not route it on; other bits 0), then the
/// subscriber's endpoint (u16 length 1…255 + UTF-8).
public struct StoreFrame: Sendable, Hashable {
    public var key: Topic
    public var node: NodeID
    public var lifetimeMilliseconds: UInt32
    public var hopsLeft: UInt8
    public var replica: Bool
    public var endpoint: String

    public init(key: Topic, node: NodeID, lifetimeMilliseconds: UInt32, hopsLeft: UInt8, replica: Bool, endpoint: String) {
        self.key = key; self.node = node; self.lifetimeMilliseconds = lifetimeMilliseconds
        self.hopsLeft = hopsLeft; self.replica = replica; self.endpoint = endpoint
    }

    public func encode(from: NodeID) -> OutFrame {
        var body = [UInt8]()
        body.reserveCapacity(FrameHeader.size + 48 + endpoint.utf8.count)
        FrameHeader(type: RoutingTypeCode.store, from: from).append(to: &body)
        key.appendBytes(to: &body)
        appendBigEndian(node.raw, to: &body)
        let l = lifetimeMilliseconds
        body.append(UInt8(l >> 24)); body.append(UInt8((l >> 16) & 0xff)); body.append(UInt8((l >> 8) & 0xff)); body.append(UInt8(l & 0xff))
        body.append(hopsLeft)
        body.append(replica ? 1 : 0)
        Frame.appendEndpoint(endpoint, to: &body)
        return OutFrame(topic: .control, body: body)
    }
}

/// Decoding of the routing control frames (NODES, STORE).
public enum RoutingFrame: Sendable {
    case nodes([Frame.PeerEntry])
    case store(StoreFrame)

    /// NODES: header (type 11) + a peer list (as PEERS).
    public static func encodeNodes(_ list: [Frame.PeerEntry], from: NodeID) -> OutFrame {
        var body = [UInt8]()
        FrameHeader(type: RoutingTypeCode.nodes, from: from).append(to: &body)
        Frame.appendPeerList(list, to: &body)
        return OutFrame(topic: .control, body: body)
    }

    /// Decodes a NODES or STORE body on `topic` (the header's `from` is returned beside it).
    public static func decode(topic: Topic, body: UnsafeBufferPointer<UInt8>) -> Result<(RoutingFrame, NodeID), FrameError> {
        let h: FrameHeader
        switch FrameHeader.read(body) {
        case .success(let v): h = v
        case .failure(let e): return .failure(e)
        }
        guard h.type == RoutingTypeCode.nodes || h.type == RoutingTypeCode.store else { return .failure(.unknownType(h.type)) }
        guard h.from.raw != 0 else { return .failure(.zeroNodeID) }
        guard topic.isControl else { return .failure(.controlOnDataTopic) }
        guard h.ttl == 0, h.hops == 0 else { return .failure(.controlTTLOrHops) }
        var r = Reader(p: body, i: FrameHeader.size)
        let frame: RoutingFrame
        if h.type == RoutingTypeCode.nodes {
            switch r.peerList() {
            case .success(let list): frame = .nodes(list)
            case .failure(let e): return .failure(e)
            }
        } else {
            guard r.p.count - r.i >= 32 else { return .failure(.truncated) }
            let key = Topic(unchecked: UnsafeBufferPointer(rebasing: body[r.i..<(r.i + 32)]))
            r.i += 32
            guard let node = r.u64(), let l0 = r.u8(), let l1 = r.u8(), let l2 = r.u8(), let l3 = r.u8(),
                  let hopsLeft = r.u8(), let flags = r.u8() else { return .failure(.truncated) }
            guard node != 0 else { return .failure(.zeroNodeID) }
            guard !key.isControl else { return .failure(.dataOnControlTopic) }
            let endpoint: String
            switch r.endpoint() {
            case .success(let e): endpoint = e
            case .failure(let e): return .failure(e)
            }
            let lifetime = UInt32(l0) << 24 | UInt32(l1) << 16 | UInt32(l2) << 8 | UInt32(l3)
            frame = .store(StoreFrame(key: key, node: NodeID(raw: node), lifetimeMilliseconds: lifetime,
                                      hopsLeft: hopsLeft, replica: flags & 1 != 0, endpoint: endpoint))
        }
        guard r.i == body.count else { return .failure(.trailingBytes(body.count - r.i)) }
        return .success((frame, h.from))
    }
}

extension Topic {
    /// The key's point in the 64-bit XOR space of node ids: the first 8 bytes (big-endian) of
    /// BLAKE2b-128 of its 32 bytes. Location records for the key live at the nodes closest to it.
    public var routingPoint: UInt64 {
        withBytes { MessageID(envelope: $0).hi }
    }
}
