/// The identity of one running engine. Drawn at random at every process start, so a
/// restarted node (same endpoint) is a new *incarnation* with a new `NodeID`. Never 0.
public struct NodeID: Hashable, Sendable, CustomStringConvertible {
    public var raw: UInt64
    public init(raw: UInt64) { self.raw = raw }

    /// A random, non-zero node id.
    public static func random(using rng: inout some RandomNumberGenerator) -> NodeID {
        var r: UInt64 = 0
        while r == 0 { r = rng.next() }
        return NodeID(raw: r)
    }

    public var description: String { "node:" + hex64(raw) }
}

/// An engine-assigned handle for one outbound link (one XPUB connected to one neighbour).
/// Never 0 (0 means "no token" on the wire). Unique per engine and unpredictable: a keyed
/// pseudo-random function (SipHash-2-4) of a counter, under a key drawn from the engine's
/// random generator at start. A link's id is its HELLO token, which proves that a HELLO's
/// sender has seen the HELLO sent on that link; so nobody else can guess it, and a stale
/// echo from a previous incarnation does not match a fresh link.
public struct LinkID: Hashable, Sendable, CustomStringConvertible {
    public var raw: UInt64
    public init(raw: UInt64) { self.raw = raw }
    public var description: String { "link:" + hex64(raw) }
}

/// The inbound connection a frame arrived on, as the driver names it (the ZeroMQ driver: a
/// number its ZAP handler gives every accepted connection of the bound SUB). Distinct for
/// every connection the driver accepted; never 0. A frame received with a `ConnectionID`
/// speaks only for the node bound to that connection (docs/PROTOCOL.md §6, "Links speak for
/// themselves"); a driver that cannot tell connections apart passes none.
public struct ConnectionID: Hashable, Sendable, CustomStringConvertible {
    public var raw: UInt64
    public init(raw: UInt64) { self.raw = raw }
    public var description: String { "conn:" + hex64(raw) }

    /// A connection this node opened itself to receive from a node that cannot dial it (a
    /// back-link, docs/PROTOCOL.md §1): the top bit set on the driver's number `n`. A node bound
    /// to one of its direct connections is never moved to a back-link by a HELLO there (one sent
    /// before its direct link was ready, arriving late).
    public static func backlink(_ n: UInt64) -> ConnectionID { ConnectionID(raw: n | 1 << 63) }
    public var isBacklink: Bool { raw & 1 << 63 != 0 }
}

/// A 32-byte ZeroMQ topic: the recipient's Curve25519 public key, or 32 zero bytes for
/// the control topic. Stored as four big-endian words (compact, cheap to hash).
public struct Topic: Hashable, Sendable, CustomStringConvertible {
    @usableFromInline var w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64

    /// The topic of four big-endian words (`bigEndianWords`). Package surface: the simulator
    /// draws its workload's topics word by word.
    @inlinable package init(w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64) {
        self.w0 = w0; self.w1 = w1; self.w2 = w2; self.w3 = w3
    }

    /// Fails unless `bytes` has exactly 32 elements.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 32 else { return nil }
        var w: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        var i = 0
        for b in bytes {
            let v = UInt64(b)
            switch i >> 3 {
            case 0: w.0 = (w.0 << 8) | v
            case 1: w.1 = (w.1 << 8) | v
            case 2: w.2 = (w.2 << 8) | v
            default: w.3 = (w.3 << 8) | v
            }
            i += 1
        }
        self.init(w0: w.0, w1: w.1, w2: w.2, w3: w.3)
    }

    /// Reads 32 bytes from a buffer that is known to hold them.
    init(unchecked p: UnsafeBufferPointer<UInt8>) {
        func word(_ o: Int) -> UInt64 {
            var v: UInt64 = 0
            for k in 0..<8 { v = (v << 8) | UInt64(p[o + k]) }
            return v
        }
        self.init(w0: word(0), w1: word(8), w2: word(16), w3: word(24))
    }

    /// The control topic: 32 zero bytes. Never a valid recipient.
    public static let control = Topic(w0: 0, w1: 0, w2: 0, w3: 0)

    public var isControl: Bool { (w0 | w1 | w2 | w3) == 0 }

    /// The 32 bytes of the topic.
    public var bytes: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(32)
        appendBytes(to: &out)
        return out
    }

    /// The four words in big-endian byte order: their memory holds the topic's 32 bytes.
    public var bigEndianWords: (UInt64, UInt64, UInt64, UInt64) {
        (w0.bigEndian, w1.bigEndian, w2.bigEndian, w3.bigEndian)
    }

    /// Calls `body` with the topic's 32 bytes (in place: no allocation).
    @inlinable
    public func withBytes<R>(_ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
        var w = (w0.bigEndian, w1.bigEndian, w2.bigEndian, w3.bigEndian)
        return try withUnsafeBytes(of: &w) { raw in try raw.withMemoryRebound(to: UInt8.self, body) }
    }

    /// Appends the 32 bytes of the topic to `out`.
    public func appendBytes(to out: inout [UInt8]) {
        appendBigEndian(w0, to: &out); appendBigEndian(w1, to: &out)
        appendBigEndian(w2, to: &out); appendBigEndian(w3, to: &out)
    }

    /// True if the topic starts with `prefix` (ZeroMQ subscription matching).
    public func hasPrefix(_ prefix: [UInt8]) -> Bool {
        if prefix.isEmpty { return true }
        if prefix.count > 32 { return false }
        let b = bytes
        for i in 0..<prefix.count where b[i] != prefix[i] { return false }
        return true
    }

    public var description: String { hex64(w0) + hex64(w1) + hex64(w2) + hex64(w3) }
}

/// A message id: BLAKE2b-128 (libsodium `crypto_generichash`, no key) of the DATA envelope.
/// `hi` is the first 8 output bytes read big-endian, `lo` the last 8.
public struct MessageID: Hashable, Sendable, CustomStringConvertible {
    public var hi: UInt64
    public var lo: UInt64
    public init(hi: UInt64, lo: UInt64) { self.hi = hi; self.lo = lo }
    public var description: String { hex64(hi) + hex64(lo) }
}

@usableFromInline
func hex64(_ v: UInt64) -> String {
    let digits: [Character] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c", "d", "e", "f"]
    var s = ""
    s.reserveCapacity(16)
    var shift = 60
    while shift >= 0 { s.append(digits[Int((v >> UInt64(shift)) & 0xF)]); shift -= 4 }
    return s
}

@inline(__always)
func appendBigEndian(_ v: UInt64, to out: inout [UInt8]) {
    var s: UInt64 = 56
    while true {
        out.append(UInt8(truncatingIfNeeded: v >> s))
        if s == 0 { break }
        s -= 8
    }
}

/// The topics an engine delivers: a set, with a 64-bit filter in front of it (one bit per
/// topic, by a hash of its words). Every DATA frame asks whether its topic is local, and nearly
/// all are not; the filter sits in the engine's hot memory and answers most of them without
/// reading the set's heap storage (a cache miss per frame in a simulator of 10,000 engines).
struct TopicSet: Sendable {
    private(set) var topics: Set<Topic> = []
    private var filter: UInt64 = 0

    @inline(__always)
    static func bit(_ t: Topic) -> UInt64 {
        1 << (((t.w0 ^ t.w1 ^ t.w2 ^ t.w3) &* 0x9E37_79B9_7F4A_7C15) >> 58)
    }

    var count: Int { topics.count }

    @inline(__always)
    func contains(_ t: Topic) -> Bool { filter & Self.bit(t) != 0 && topics.contains(t) }

    /// True if `t` was not in the set.
    mutating func insert(_ t: Topic) -> Bool {
        guard topics.insert(t).inserted else { return false }
        filter |= Self.bit(t)
        return true
    }

    /// True if `t` was in the set.
    mutating func remove(_ t: Topic) -> Bool {
        guard topics.remove(t) != nil else { return false }
        filter = topics.reduce(0) { $0 | Self.bit($1) }
        return true
    }
}
