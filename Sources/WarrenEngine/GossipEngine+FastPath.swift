// The receive fast path for DATA: checked and de-duplicated in the receive buffer, so a
// duplicate costs no allocation and a forward is one copy of the received bytes with the
// header patched (no decode into a Frame, no re-encoding).

/// The envelope of an inbound DATA frame: decoded into an array, or still in the receive buffer
/// (a view valid only during the `receive` call).
enum DataPayload {
    case array([UInt8])
    case received(DataFrameView)

    var isEmpty: Bool {
        switch self {
        case .array(let a): a.isEmpty
        case .received: false
        }
    }

    /// The envelope bytes (copied out of the receive buffer).
    var bytes: [UInt8] {
        switch self {
        case .array(let a): a
        case .received(let v): Array(v.envelope)
        }
    }

    /// The body of the forwarded frame.
    func forwardBody(ttl: UInt8, hops: UInt8, from: NodeID) -> [UInt8] {
        switch self {
        case .array(let a): Frame.encodeData(envelope: a, ttl: ttl, hops: hops, from: from)
        case .received(let v): v.forwarded(ttl: ttl, hops: hops, from: from)
        }
    }
}

extension GossipEngine {
    /// Handles a DATA message without building a `Frame`: the checks of `Frame.decode`, then
    /// exactly what `handle` does with a decoded DATA frame. Returns false for anything that is
    /// not DATA (the caller decodes it). `id`: the envelope's message id if the driver gave it.
    mutating func receiveData(
        topic: UnsafeBufferPointer<UInt8>, body: UnsafeBufferPointer<UInt8>, id: MessageID?, via: ConnectionID?,
        now: UInt64, into actions: inout [Action]
    ) -> Bool {
        guard body.count >= 2, body[1] == Frame.TypeCode.data.rawValue else { return false }
        guard let frame = DataFrameView(topic: topic, body: body) else { malformed(via: via); return true }
        let from = frame.header.from
        if from == nodeID {
            if let via, let pi = peers.index(conn: via.raw) { stats.forged &+= 1; peers[key: pi].noteBad(.forged) }
            return true
        }
        let source = admit(from, via: via, now: now)
        if case .drop = source { return true }
        handleDataFrame(topic: frame.topic, envelope: .received(frame), id: id ?? frame.messageID(),
                        ttl: frame.header.ttl, hops: frame.header.hops, from: from, source: source, now: now, into: &actions)
        return true
    }
}
