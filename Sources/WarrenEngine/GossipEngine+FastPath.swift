// The receive path of DATA: checked and de-duplicated in the receive buffer, so a duplicate
// costs no allocation and a forward is one copy of the received bytes with the header patched
// (no decode into a Frame, no re-encoding).

extension GossipEngine.Core {
    /// Handles a DATA message without building a `Frame`: the checks of `Frame.decode`
    /// (`DataFrameView`), the sender, admission, then `handleData`. Returns false for anything
    /// that is not DATA (the caller decodes it). `id`: the envelope's message id if the driver
    /// gave it.
    mutating func receiveData(
        topic: UnsafeBufferPointer<UInt8>, body: UnsafeBufferPointer<UInt8>, id: MessageID?, via: ConnectionID?,
        now: UInt64, into actions: inout [Action]
    ) -> Bool {
        guard body.count >= 2, body[1] == Frame.TypeCode.data.rawValue else { return false }
        guard let frame = DataFrameView(topic: topic, body: body) else { malformed(via: via); return true }
        if frame.header.from == nodeID {
            if let via, let pi = peers.index(conn: via.raw) { stats.forged &+= 1; peers[key: pi].noteBad(.forged) }
            return true
        }
        let source = admit(frame.header.from, via: via, now: now)
        if case .drop = source { return true }
        handleData(frame, id: id ?? frame.messageID(), source: source, now: now, into: &actions)
        return true
    }
}
