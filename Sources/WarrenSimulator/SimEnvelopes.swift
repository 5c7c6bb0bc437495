import WarrenEngine

/// The DATA frames in flight in one shard share their bytes per message: one buffer per message
/// id holds a frame header's room and the envelope, and each frame keeps only its own header
/// (`SimFrame.header`), written into the buffer just before the frame is handed to its
/// receiver. A flood then touches one buffer per message, warm in the cache, instead of one per
/// frame (each sent frame's array, cold by the time it arrives), and frees the engine's
/// forwarded array at once. The receiver reads the bytes only during `receive`: it copies what
/// it keeps (a delivery, a forwarded frame).
struct SimEnvelopes {
    private var buffers: [[UInt8]] = []
    private var refs: [Int32] = []
    private var ids: [MessageID] = []
    private var free: [Int32] = []
    private var byID: [MessageID: Int32] = [:]

    /// The buffer of message `id`, made from `body` (a DATA frame: header, then envelope) if this
    /// shard holds none. A new buffer has no references: `retain` it, or `dropIfUnused` it.
    mutating func intern(_ id: MessageID, body: UnsafeBufferPointer<UInt8>) -> Int32 {
        if let e = byID[id] { return e }
        let e: Int32
        if let f = free.popLast() {
            e = f
            buffers[Int(e)] = Array(body)
            refs[Int(e)] = 0
            ids[Int(e)] = id
        } else {
            e = Int32(buffers.count)
            buffers.append(Array(body))
            refs.append(0)
            ids.append(id)
        }
        byID[id] = e
        return e
    }

    @inline(__always) mutating func retain(_ e: Int32) { refs[Int(e)] += 1 }

    @inline(__always) mutating func release(_ e: Int32) {
        refs[Int(e)] -= 1
        if refs[Int(e)] == 0 { drop(e) }
    }

    /// Frees a buffer that `intern` made but no frame took.
    mutating func dropIfUnused(_ e: Int32) {
        if refs[Int(e)] == 0 && !buffers[Int(e)].isEmpty { drop(e) }
    }

    private mutating func drop(_ e: Int32) {
        byID[ids[Int(e)]] = nil
        buffers[Int(e)] = []
        free.append(e)
    }

    /// The envelope of buffer `e` (its bytes after the header's room).
    func withEnvelope<R>(_ e: Int32, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        buffers[Int(e)].withUnsafeBufferPointer { body(UnsafeBufferPointer(rebasing: $0[FrameHeader.size...])) }
    }

    /// Where buffer `e`'s bytes are (a prefetch hint).
    func address(_ e: Int32) -> UnsafeRawPointer? {
        buffers[Int(e)].withUnsafeBytes { $0.baseAddress }
    }

    /// Calls `body` with buffer `e` as the frame whose header is `header`.
    @inline(__always)
    mutating func withFrame<R>(_ e: Int32, header: FrameHeader, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        buffers[Int(e)].withUnsafeMutableBufferPointer { b in
            header.write(to: b)
            return body(UnsafeBufferPointer(b))
        }
    }
}
