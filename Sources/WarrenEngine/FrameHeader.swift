/// The 12 bytes every frame body and every BATCH body starts with (docs/PROTOCOL.md §2):
/// version (1), type, ttl, hops, and the sending node as a u64 big-endian. The one place that
/// reads and writes them: the frame codec, `DataFrameView` (the engine's receive path and
/// forwards) and `FrameBatch` go through it.
public struct FrameHeader: Sendable, Hashable {
    public static let size = 12

    /// The type code: a `Frame.TypeCode`'s raw value or `FrameBatch.typeCode` (read as it is).
    public var type: UInt8
    public var ttl: UInt8
    public var hops: UInt8
    /// The node that sent the frame on its link (read as it is: 0 is invalid, which the frame
    /// and batch checks say in their own order).
    public var from: NodeID

    public init(type: UInt8, ttl: UInt8 = 0, hops: UInt8 = 0, from: NodeID) {
        self.type = type; self.ttl = ttl; self.hops = hops; self.from = from
    }

    /// Reads the header of `body`, checking what a frame body and a BATCH body share: 12 …
    /// `Frame.maxBodyBytes` bytes and version 1. The other fields are read as they are.
    @inline(__always)
    public static func read(_ body: UnsafeBufferPointer<UInt8>) -> Result<FrameHeader, FrameError> {
        guard body.count >= size else { return .failure(.shortHeader(body.count)) }
        guard body.count <= Frame.maxBodyBytes else { return .failure(.oversized(body.count)) }
        guard body[0] == Frame.version else { return .failure(.unsupportedVersion(body[0])) }
        return .success(FrameHeader(unchecked: body))
    }

    /// The fields of the first 12 bytes of `body`, which must hold them; nothing is checked.
    @inline(__always)
    init(unchecked body: UnsafeBufferPointer<UInt8>) {
        var from: UInt64 = 0
        for k in 4..<FrameHeader.size { from = from << 8 | UInt64(body[k]) }
        self.init(type: body[1], ttl: body[2], hops: body[3], from: NodeID(raw: from))
    }

    /// Appends the 12 bytes to `out`.
    public func append(to out: inout [UInt8]) {
        out.append(Frame.version); out.append(type); out.append(ttl); out.append(hops)
        appendBigEndian(from.raw, to: &out)
    }

    /// Writes the 12 bytes over the start of `out` (at least 12 bytes long).
    public func write(to out: UnsafeMutableBufferPointer<UInt8>) {
        precondition(out.count >= FrameHeader.size, "a frame header is 12 bytes")
        out[0] = Frame.version; out[1] = type; out[2] = ttl; out[3] = hops
        var f = from.raw.bigEndian
        withUnsafeBytes(of: &f) { for k in 0..<8 { out[4 + k] = $0[k] } }
    }
}
