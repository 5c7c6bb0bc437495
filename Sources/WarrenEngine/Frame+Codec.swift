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

    /// The checked header of a 2-part message, and its topic.
    @usableFromInline
    struct Header {
        var type: TypeCode
        var ttl: UInt8
        var hops: UInt8
        var from: NodeID
        var topic: Topic
    }

    /// Checks the topic and the 12-byte header; for DATA also the topic, ttl and a non-empty
    /// envelope (everything `decode` checks about a DATA frame).
    @usableFromInline
    static func header(topic: UnsafeBufferPointer<UInt8>, body: UnsafeBufferPointer<UInt8>) -> Result<Header, FrameError> {
        guard topic.count == 32 else { return .failure(.badTopicLength(topic.count)) }
        guard body.count >= headerSize else { return .failure(.shortHeader(body.count)) }
        guard body.count <= maxBodyBytes else { return .failure(.oversized(body.count)) }
        guard body[0] == version else { return .failure(.unsupportedVersion(body[0])) }
        guard let type = TypeCode(rawValue: body[1]) else {
            return .failure(body[1] == FrameBatch.typeCode ? .batchBody : .unknownType(body[1]))
        }
        let ttl = body[2], hops = body[3]
        var r = Reader(p: body, i: 4)
        guard let fromRaw = r.u64(), fromRaw != 0 else { return .failure(.zeroNodeID) }
        let t = Topic(unchecked: topic)
        if type == .data {
            guard !t.isControl else { return .failure(.dataOnControlTopic) }
            guard ttl != 0 else { return .failure(.zeroTTL) }
            guard body.count > headerSize else { return .failure(.emptyEnvelope) }
        }
        return .success(Header(type: type, ttl: ttl, hops: hops, from: NodeID(raw: fromRaw), topic: t))
    }

    @usableFromInline
    static func decode(topic: UnsafeBufferPointer<UInt8>, body: UnsafeBufferPointer<UInt8>) -> Result<Frame, FrameError> {
        let h: Header
        switch header(topic: topic, body: body) {
        case .success(let v): h = v
        case .failure(let e): return .failure(e)
        }
        let type = h.type, ttl = h.ttl, hops = h.hops, from = h.from, t = h.topic
        var r = Reader(p: body, i: headerSize)

        if type != .data {
            guard t.isControl else { return .failure(.controlOnDataTopic) }
            guard ttl == 0, hops == 0 else { return .failure(.controlTTLOrHops) }
        }
        let kind: Kind
        switch type {
        case .data:
            let env = UnsafeBufferPointer(rebasing: body[headerSize...])
            let id = MessageID(envelope: env)
            return .success(Frame(kind: .data(topic: t, envelope: Array(env), id: id), ttl: ttl, hops: hops, from: from))
        case .heartbeat:
            kind = .heartbeat
        case .bye:
            kind = .bye
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
                kind = .hello(Hello(leaf: flags & 1 != 0, token: token, echo: echo, endpoint: endpoint, peers: list))
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
            Frame.appendHeader(to: &body, type: typeCode, ttl: 0, hops: 0, from: from)
            switch kind {
            case .hello(let h):
                body.append(h.leaf ? 1 : 0)
                appendBigEndian(h.token, to: &body)
                appendBigEndian(h.echo, to: &body)
                Frame.appendEndpoint(h.endpoint, to: &body)
                Frame.appendPeerList(h.peers, to: &body)
            case .peers(let list):
                Frame.appendPeerList(list, to: &body)
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
        appendHeader(to: &body, type: .data, ttl: ttl, hops: hops, from: from)
        body.append(contentsOf: envelope)
        return body
    }

    /// The body of a forwarded DATA frame: a copy of the received body (`version`, DATA type and
    /// envelope already checked) with ttl, hops and from patched in place. Byte for byte what
    /// `encodeData` makes of the same envelope, with one copy instead of a re-encoding.
    static func forwardData(received body: UnsafeBufferPointer<UInt8>, ttl: UInt8, hops: UInt8, from: NodeID) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: body.count) { out, n in
            _ = out.initialize(fromContentsOf: body)
            out[2] = ttl
            out[3] = hops
            var f = from.raw.bigEndian
            withUnsafeBytes(of: &f) { for k in 0..<8 { out[4 + k] = $0[k] } }
            n = body.count
        }
    }

    static func appendHeader(to out: inout [UInt8], type: TypeCode, ttl: UInt8, hops: UInt8, from: NodeID) {
        out.append(version); out.append(type.rawValue); out.append(ttl); out.append(hops)
        appendBigEndian(from.raw, to: &out)
    }

    /// u16 BE length + UTF-8. Endpoints longer than 255 bytes are truncated to the empty string
    /// by callers before encoding (the engine never advertises them).
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
