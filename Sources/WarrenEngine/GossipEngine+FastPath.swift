// The receive fast path for DATA: checked and de-duplicated in the receive buffer, so a
// duplicate costs no allocation and a forward is one copy of the received bytes with the
// header patched (no decode into a Frame, no re-encoding).

/// The envelope of an inbound DATA frame: decoded into an array, or still in the receive buffer
/// (`received` is the whole body, header included; valid only during the `receive` call).
enum DataPayload {
    case array([UInt8])
    case received(UnsafeBufferPointer<UInt8>)

    var isEmpty: Bool {
        switch self {
        case .array(let a): a.isEmpty
        case .received(let b): b.count <= Frame.headerSize
        }
    }

    /// The envelope bytes (copied out of the receive buffer).
    var bytes: [UInt8] {
        switch self {
        case .array(let a): a
        case .received(let b): Array(UnsafeBufferPointer(rebasing: b[Frame.headerSize...]))
        }
    }

    /// The body of the forwarded frame.
    func forwardBody(ttl: UInt8, hops: UInt8, from: NodeID) -> [UInt8] {
        switch self {
        case .array(let a): Frame.encodeData(envelope: a, ttl: ttl, hops: hops, from: from)
        case .received(let b): Frame.forwardData(received: b, ttl: ttl, hops: hops, from: from)
        }
    }
}

extension GossipEngine {
    /// Handles a DATA message without building a `Frame`: the checks of `Frame.decode`, then
    /// exactly what `handle` does with a decoded DATA frame. Returns false for anything that is
    /// not DATA (the caller decodes it).
    mutating func receiveData(
        topic: UnsafeBufferPointer<UInt8>, body: UnsafeBufferPointer<UInt8>, via: ConnectionID?,
        now: UInt64, into actions: inout [Action]
    ) -> Bool {
        guard body.count >= 2, body[1] == Frame.TypeCode.data.rawValue else { return false }
        let h: Frame.Header
        switch Frame.header(topic: topic, body: body) {
        case .success(let v): h = v
        case .failure: malformed(via: via); return true
        }
        if h.from == nodeID {
            if let via, let pi = peers.index(conn: via.raw) { stats.forged &+= 1; peers[key: pi].noteBad(.forged) }
            return true
        }
        let source = admit(h.from, via: via, now: now)
        if case .drop = source { return true }
        let id = MessageID(envelope: UnsafeBufferPointer(rebasing: body[Frame.headerSize...]))
        handleDataFrame(topic: h.topic, envelope: .received(body), id: id, ttl: h.ttl, hops: h.hops,
                        from: h.from, source: source, now: now, into: &actions)
        return true
    }
}
