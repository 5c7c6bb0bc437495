// Frame encoding and decoding. Byte layout: docs/PROTOCOL.md.

extension Frame {
    /// Decodes one 2-part message. Computes the message id of DATA frames.
    /// Never traps on any input.
    @inlinable
    public static func decode(topic: some Collection<UInt8>, body: some Collection<UInt8>) throws(FrameError) -> Frame {
        let result: Result<Frame, FrameError>? = topic.withContiguousStorageIfAvailable { t in
            body.withContiguousStorageIfAvailable { b in decode(topic: t, body: b) }
        } ?? nil
        if let result { return try result.get() }
        let t = Array(topic), b = Array(body)
        return try t.withUnsafeBufferPointer { tp in
            b.withUnsafeBufferPointer { bp in decode(topic: tp, body: bp) }
        }.get()
    }

    /// Checks the topic and the header of a one-frame body (not a BATCH): everything
    /// `decode` checks before the fields of the frame's type, in PROTOCOL.md's order. For DATA
    /// that is all there is to check (a non-empty envelope on a data topic, ttl ≥ 1); for
    /// control frames, the control topic and ttl = hops = 0.
    static func checkedHeader(topic: UnsafeBufferPointer<UInt8>, body: UnsafeBufferPointer<UInt8>)
        -> Result<(header: FrameHeader, type: TypeCode, topic: Topic), FrameError> {
        guard topic.count == 32 else { return .failure(.badTopicLength(topic.count)) }
        return checkedHeader(topic: Topic(unchecked: topic), body: body)
    }

    /// `checkedHeader(topic:body:)` for a topic already read.
    @inline(__always)
    static func checkedHeader(topic t: Topic, body: UnsafeBufferPointer<UInt8>)
        -> Result<(header: FrameHeader, type: TypeCode, topic: Topic), FrameError> {
        let h: FrameHeader
        switch FrameHeader.read(body) {
        case .success(let v): h = v
        case .failure(let e): return .failure(e)
        }
        guard let type = TypeCode(rawValue: h.type) else {
            return .failure(h.type == FrameBatch.typeCode ? .batchBody : .unknownType(h.type))
        }
        guard h.from.raw != 0 else { return .failure(.zeroNodeID) }
        if type == .data {
            guard !t.isControl else { return .failure(.dataOnControlTopic) }
            guard h.ttl != 0 else { return .failure(.zeroTTL) }
            guard body.count > headerSize else { return .failure(.emptyEnvelope) }
        } else {
            guard t.isControl else { return .failure(.controlOnDataTopic) }
            guard h.ttl == 0, h.hops == 0 else { return .failure(.controlTTLOrHops) }
        }
        return .success((h, type, t))
    }

    @usableFromInline
    static func decode(topic: UnsafeBufferPointer<UInt8>, body: UnsafeBufferPointer<UInt8>) -> Result<Frame, FrameError> {
        let h: FrameHeader, type: TypeCode, t: Topic
        switch checkedHeader(topic: topic, body: body) {
        case .success(let v): (h, type, t) = v
        case .failure(let e): return .failure(e)
        }
        let from = h.from
        var r = Reader(p: body, i: headerSize)

        let kind: Kind
        switch type {
        case .data:
            let v = DataFrameView(checked: t, header: h, body: body)
            return .success(Frame(kind: .data(topic: t, envelope: Array(v.envelope), id: v.messageID()),
                                  ttl: h.ttl, hops: h.hops, from: from))
        case .heartbeat:
            kind = .heartbeat
        case .bye:
            kind = .bye
        case .disconnect:
            guard let echo = r.u64() else { return .failure(.truncated) }
            kind = .disconnect(echo: echo)
        case .forwardJoin:
            guard let ttl = r.u8(), let id = r.u64() else { return .failure(.truncated) }
            guard id != 0 else { return .failure(.zeroNodeID) }
            switch r.endpoint() {
            case .success(let e): kind = .forwardJoin(ttl: ttl, node: PeerEntry(nodeID: NodeID(raw: id), endpoint: e))
            case .failure(let e): return .failure(e)
            }
        case .peers:
            switch r.peerList() {
            case .success(let list): kind = .peers(list)
            case .failure(let e): return .failure(e)
            }
        case .hello:
            guard let flags = r.u8(), let token = r.u64(), let echo = r.u64() else { return .failure(.truncated) }
            guard token != 0 else { return .failure(.zeroToken) }
            let endpoint: String
            switch r.endpoint() {
            case .success(let e): endpoint = e
            case .failure(let e): return .failure(e)
            }
            switch r.peerList() {
            case .success(let list):
                var hello = Hello(leaf: flags & 1 != 0, token: token, echo: echo, endpoint: endpoint, peers: list)
                hello.views = flags & 2 != 0
                hello.request = Request(rawValue: (flags >> 3) & 3) ?? .neighbour
                hello.routing = flags & 4 != 0
                hello.contact = flags & 32 != 0
                kind = .hello(hello)
            case .failure(let e): return .failure(e)
            }
        }
        guard r.i == body.count else { return .failure(.trailingBytes(body.count - r.i)) }
        return .success(Frame(kind: kind, ttl: 0, hops: 0, from: from))
    }

    /// Encodes the frame (topic + body).
    public func encode() -> OutFrame {
        switch kind {
        case .data(let topic, let envelope, _):
            return OutFrame(topic: topic, body: Frame.encodeData(envelope: envelope, ttl: ttl, hops: hops, from: from))
        default:
            var body = [UInt8]()
            body.reserveCapacity(Frame.headerSize + 64)
            FrameHeader(type: typeCode.rawValue, from: from).append(to: &body)
            switch kind {
            case .hello(let h):
                body.append(h.flags)
                appendBigEndian(h.token, to: &body)
                appendBigEndian(h.echo, to: &body)
                Frame.appendEndpoint(h.endpoint, to: &body)
                Frame.appendPeerList(h.peers, to: &body)
            case .peers(let list):
                Frame.appendPeerList(list, to: &body)
            case .disconnect(let echo):
                appendBigEndian(echo, to: &body)
            case .forwardJoin(let ttl, let node):
                body.append(ttl)
                appendBigEndian(node.nodeID.raw, to: &body)
                Frame.appendEndpoint(node.endpoint, to: &body)
            default:
                break
            }
            return OutFrame(topic: .control, body: body)
        }
    }

    /// The body of a DATA frame: header + envelope, one allocation.
    public static func encodeData(envelope: [UInt8], ttl: UInt8, hops: UInt8, from: NodeID) -> [UInt8] {
        var body = [UInt8]()
        body.reserveCapacity(headerSize + envelope.count)
        FrameHeader(type: TypeCode.data.rawValue, ttl: ttl, hops: hops, from: from).append(to: &body)
        body.append(contentsOf: envelope)
        return body
    }

    /// u16 BE length + UTF-8. Callers pass only encodable endpoints (`isEncodable`, 1…255
    /// bytes): the engine advertises "-" instead of an endpoint it cannot carry, and never learns
    /// or dials one.
    static func appendEndpoint(_ e: String, to out: inout [UInt8]) {
        let n = e.utf8.count
        out.append(UInt8(truncatingIfNeeded: n >> 8)); out.append(UInt8(truncatingIfNeeded: n))
        out.append(contentsOf: e.utf8)
    }

    static func appendPeerList(_ list: [PeerEntry], to out: inout [UInt8]) {
        let n = min(list.count, maxPeers)
        out.append(UInt8(n))
        for e in list.prefix(n) {
            appendBigEndian(e.nodeID.raw, to: &out)
            appendEndpoint(e.endpoint, to: &out)
        }
    }

    /// True if `endpoint` can be carried in a frame (1…255 UTF-8 bytes).
    public static func isEncodable(endpoint: String) -> Bool {
        let n = endpoint.utf8.count
        return n >= 1 && n <= maxEndpointBytes
    }
}

@usableFromInline
struct Reader {
    let p: UnsafeBufferPointer<UInt8>
    var i: Int

    @usableFromInline init(p: UnsafeBufferPointer<UInt8>, i: Int) { self.p = p; self.i = i }

    mutating func u8() -> UInt8? {
        guard i < p.count else { return nil }
        defer { i += 1 }
        return p[i]
    }

    mutating func u16() -> Int? {
        guard p.count - i >= 2 else { return nil }
        defer { i += 2 }
        return Int(p[i]) << 8 | Int(p[i + 1])
    }

    mutating func u64() -> UInt64? {
        guard p.count - i >= 8 else { return nil }
        var v: UInt64 = 0
        for k in 0..<8 { v = v << 8 | UInt64(p[i + k]) }
        i += 8
        return v
    }

    mutating func endpoint() -> Result<String, FrameError> {
        guard let n = u16() else { return .failure(.truncated) }
        guard n >= 1, n <= Frame.maxEndpointBytes else { return .failure(.badEndpointLength(n)) }
        guard p.count - i >= n else { return .failure(.truncated) }
        let bytes = UnsafeBufferPointer(rebasing: p[i..<(i + n)])
        i += n
        guard let s = String(validating: bytes, as: UTF8.self) else { return .failure(.invalidUTF8) }
        return .success(s)
    }

    mutating func peerList() -> Result<[Frame.PeerEntry], FrameError> {
        guard let count = u8() else { return .failure(.truncated) }
        guard Int(count) <= Frame.maxPeers else { return .failure(.tooManyPeers(Int(count))) }
        var list = [Frame.PeerEntry]()
        list.reserveCapacity(Int(count))
        for _ in 0..<count {
            guard let id = u64() else { return .failure(.truncated) }
            guard id != 0 else { return .failure(.zeroNodeID) }
            switch endpoint() {
            case .success(let e): list.append(Frame.PeerEntry(nodeID: NodeID(raw: id), endpoint: e))
            case .failure(let e): return .failure(e)
            }
        }
        return .success(list)
    }
}
