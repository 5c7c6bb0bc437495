/// A DATA frame where it lies: its checked header and topic, and its envelope as a view into
/// the same bytes. Nothing is copied, and the message id is computed only when asked for. The
/// engine's receive path reads DATA through it (a duplicate costs no allocation) and forwards
/// with `forwarded` (one copy of the received bytes, the header rewritten); a driver that
/// shares one frame among many receivers (the simulator) checks what it sends with it.
/// Valid only while the bytes are.
public struct DataFrameView {
    public let topic: Topic
    public let header: FrameHeader
    /// The whole body: header, then envelope.
    public let body: UnsafeBufferPointer<UInt8>

    /// A checked DATA frame (everything `Frame.decode` checks about one); nil if `body` is not a
    /// valid DATA frame, or not DATA at all.
    @inline(__always)
    public init?(topic: UnsafeBufferPointer<UInt8>, body: UnsafeBufferPointer<UInt8>) {
        guard case .success(let v) = Frame.checkedHeader(topic: topic, body: body), v.type == .data else { return nil }
        self.init(checked: v.topic, header: v.header, body: body)
    }

    /// The same, for a topic already read.
    @inline(__always)
    public init?(topic: Topic, body: UnsafeBufferPointer<UInt8>) {
        guard case .success(let v) = Frame.checkedHeader(topic: topic, body: body), v.type == .data else { return nil }
        self.init(checked: topic, header: v.header, body: body)
    }

    /// A view of a body whose header `Frame.checkedHeader` found to be DATA's.
    @inline(__always)
    init(checked topic: Topic, header: FrameHeader, body: UnsafeBufferPointer<UInt8>) {
        self.topic = topic; self.header = header; self.body = body
    }

    /// The envelope (never empty).
    public var envelope: UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(rebasing: body[FrameHeader.size...]) }

    /// The message id: BLAKE2b-128 of the envelope (computed at each call).
    public func messageID() -> MessageID { MessageID(envelope: envelope) }

    /// The body of this frame sent on by `from` with `ttl` and `hops`: a copy of the bytes with
    /// the header rewritten. Byte for byte what `Frame.encodeData` makes of the same envelope,
    /// with one copy instead of a re-encoding.
    public func forwarded(ttl: UInt8, hops: UInt8, from: NodeID) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: body.count) { out, n in
            _ = out.initialize(fromContentsOf: body)
            FrameHeader(type: Frame.TypeCode.data.rawValue, ttl: ttl, hops: hops, from: from).write(to: out)
            n = body.count
        }
    }
}
