/// A BATCH (type 6): several frames for one topic in one ZeroMQ message (docs/PROTOCOL.md §2,
/// "Batches"). A driver that has more than one frame queued for the same link and topic may
/// send them as one message, so the per-message costs of ZeroMQ (a send and a receive call,
/// a queue slot, an allocation per part) are paid once per batch instead of once per frame.
///
/// Body: the 12-byte header (version 1, type 6, ttl 0, hops 0, from ≠ 0), then one or more
/// entries, each a u16 big-endian length n (12 … 65,535) and n bytes: one frame body that is
/// not itself a BATCH. Every entry shares the message's topic. A batch body is at most
/// `Frame.maxBodyBytes` bytes.
///
/// A batch whose structure is wrong is dropped whole (one `malformed`); a well-formed batch
/// hands each entry to the ordinary frame path, where each is checked on its own.
public enum FrameBatch {
    public static let typeCode: UInt8 = 6
    /// Bytes in front of each entry (its length).
    public static let entryOverhead = 2
    /// The largest batch body `FrameCoalescer` builds by default (the ZeroMQ driver's): large enough that ZeroMQ's per-message cost
    /// is small per frame, small enough that a batch is one or two TCP segments' worth of
    /// waiting for its first frame.
    public static let targetBytes = 16_384
    /// The most entries a batch may carry (`tooManyEntries`): it bounds the work one message
    /// can ask for. A coalescer never puts more in one batch.
    public static let maxEntries = 2_048

    /// True if `body` is a BATCH body (to be split, not decoded as one frame).
    @inline(__always)
    public static func isBatch(_ body: UnsafeBufferPointer<UInt8>) -> Bool {
        body.count >= 2 && body[1] == typeCode
    }

    /// Starts a batch body: the header with `from`.
    static func start(_ out: inout [UInt8], from: NodeID) {
        FrameHeader(type: typeCode, from: from).append(to: &out)
    }

    /// Appends one frame body as an entry. The caller keeps the batch within `Frame.maxBodyBytes`.
    static func append(_ body: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        precondition(body.count >= Frame.headerSize && body.count <= Int(UInt16.max), "a batch entry is one frame body")
        out.append(UInt8(body.count >> 8))
        out.append(UInt8(body.count & 0xff))
        out.append(contentsOf: body)
    }

    /// Checks a batch body's structure and calls `entry` with each entry's bytes (a view into
    /// `body`), in order. Nothing is handed out unless the whole structure is valid.
    public static func split(
        _ body: UnsafeBufferPointer<UInt8>, _ entry: (UnsafeBufferPointer<UInt8>) -> Void
    ) -> FrameError? {
        if let e = check(body) { return e }
        var i = Frame.headerSize
        while i < body.count {
            let n = Int(body[i]) << 8 | Int(body[i + 1])
            entry(UnsafeBufferPointer(rebasing: body[(i + 2)..<(i + 2 + n)]))
            i += 2 + n
        }
        return nil
    }

    /// The structural checks of `split`: header, at least one entry, every length in range
    /// and inside the body, no nested batch, at most `maxEntries` entries.
    static func check(_ body: UnsafeBufferPointer<UInt8>) -> FrameError? {
        let h: FrameHeader
        switch FrameHeader.read(body) {
        case .success(let v): h = v
        case .failure(let e): return e
        }
        guard h.type == typeCode else { return .unknownType(h.type) }
        guard h.ttl == 0 && h.hops == 0 else { return .controlTTLOrHops }
        guard h.from.raw != 0 else { return .zeroNodeID }
        guard body.count > Frame.headerSize else { return .emptyBatch }
        var i = Frame.headerSize, entries = 0
        while i < body.count {
            entries += 1
            guard entries <= maxEntries else { return .tooManyEntries }
            guard i + 2 <= body.count else { return .truncated }
            let n = Int(body[i]) << 8 | Int(body[i + 1])
            guard n >= Frame.headerSize else { return .shortHeader(n) }
            guard i + 2 + n <= body.count else { return .truncated }
            guard FrameHeader(unchecked: UnsafeBufferPointer(rebasing: body[(i + 2)...])).type != typeCode else { return .nestedBatch }
            i += 2 + n
        }
        return nil
    }

    /// Encodes `bodies` (each one frame body) as one batch body from `from`.
    public static func encode(_ bodies: [[UInt8]], from: NodeID) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Frame.headerSize + bodies.reduce(0) { $0 + entryOverhead + $1.count })
        start(&out, from: from)
        for b in bodies { b.withUnsafeBytes { append($0, to: &out) } }
        return out
    }

    /// The entries of a batch body (copies), or the structural error.
    public static func decode(_ body: [UInt8]) -> Result<[[UInt8]], FrameError> {
        body.withUnsafeBufferPointer { b in
            var entries: [[UInt8]] = []
            if let e = split(b, { entries.append(Array($0)) }) { return .failure(e) }
            return .success(entries)
        }
    }
}

/// Coalesces the frames a driver sends into messages: consecutive frames for the same link
/// and topic become one BATCH (up to `limit` bytes); a lone frame goes as itself. Frames on a
/// link keep their order. Sans-I/O: the driver adds frames, calls `flush`, and sends
/// `ready` in order.
public struct FrameCoalescer: Sendable {
    /// One message to send: `body` is a frame body or a BATCH body of `frames` frames.
    public struct Message: Sendable {
        public var link: LinkID
        public var topic: Topic
        public var body: [UInt8]
        public var frames: Int
    }

    struct Run {
        var link: LinkID
        var topic: Topic
        var bodies: [[UInt8]]
        var bytes: Int
    }

    public let from: NodeID
    public let limit: Int
    /// Runs waiting, one per link at most, in the order they were started.
    var runs: [Run] = []
    /// Messages ready to send, in order.
    public var ready: [Message] = []
    /// BATCH messages built, and the frames they carried.
    public private(set) var batches: UInt64 = 0
    public private(set) var batchedFrames: UInt64 = 0

    public init(from: NodeID, limit: Int = FrameBatch.targetBytes) {
        self.from = from
        self.limit = min(max(limit, Frame.headerSize), Frame.maxBodyBytes)
    }

    /// Queues one frame for `link`. A frame for another topic, or one that would take the
    /// link's run past `limit`, first moves that run to `ready`.
    public mutating func add(link: LinkID, topic: Topic, body: [UInt8]) {
        let cost = FrameBatch.entryOverhead + body.count
        if let r = runs.firstIndex(where: { $0.link == link }) {
            if runs[r].topic == topic && runs[r].bytes + cost <= limit && runs[r].bodies.count < FrameBatch.maxEntries {
                runs[r].bodies.append(body)
                runs[r].bytes += cost
                return
            }
            emit(runs.remove(at: r))
        }
        if Frame.headerSize + cost > limit {
            ready.append(Message(link: link, topic: topic, body: body, frames: 1))
            return
        }
        runs.append(Run(link: link, topic: topic, bodies: [body], bytes: Frame.headerSize + cost))
    }

    /// Moves every waiting run to `ready`.
    public mutating func flush() {
        for r in runs { emit(r) }
        runs.removeAll(keepingCapacity: true)
    }

    /// Moves the run of `link` (if any) to `ready`.
    public mutating func flush(link: LinkID) {
        if let r = runs.firstIndex(where: { $0.link == link }) { emit(runs.remove(at: r)) }
    }

    mutating func emit(_ r: Run) {
        if r.bodies.count == 1 {
            ready.append(Message(link: r.link, topic: r.topic, body: r.bodies[0], frames: 1))
            return
        }
        batches &+= 1
        batchedFrames &+= UInt64(r.bodies.count)
        ready.append(Message(link: r.link, topic: r.topic, body: FrameBatch.encode(r.bodies, from: from), frames: r.bodies.count))
    }
}
