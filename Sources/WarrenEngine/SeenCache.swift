/// The de-duplication cache: remembers message ids for at most `window` ns, and at most
/// `capacity` ids (the oldest is evicted first). O(1) insert and lookup.
///
/// Layout: a ring buffer of (id, time) in insertion order, and an open-addressing
/// (linear probing, backward-shift deletion) index of UInt32 entries: ring slot + 1 in the low
/// bits, then the entry's distance from its home bucket (up to 7 bits, saturating), then a tag
/// (the top bits of the id's hash) in the bits left. The tag means a probe that meets another
/// id's entry rarely reads the ring (one cache miss per lookup rather than one per probe); the
/// distance means a deletion shifts entries back without reading the ring to find their home
/// buckets (it reads the ring only for an entry whose distance saturated).
///
/// Storage follows the number of live ids, geometrically: the ring has room for a power of two
/// of entries (32 at least, `capacity` at most) and the index has twice as many buckets. When
/// the ring is full below `capacity` both double, in one pass that rebuilds the index
/// (`relayouts`) and lays the ring out again from slot 0 if it had wrapped (a ring that fills
/// from slot 0, as one does from empty, is not copied); when expiry leaves the ring less than
/// one-eighth full they shrink to the least power of two at least twice the live ids. Slots are
/// appended to the ring's array as they are first used, never filled ahead. Between two passes
/// at size S there are at least S/8 inserts or expiries, so insert is amortised O(1) and a
/// steady rate makes no pass at all. Memory: 24 bytes of ring and 8 of index per slot, 1–2
/// slots per live id while traffic rises or holds (up to 8 after it falls, until the next
/// shrink); ≈ 1 KB for an idle engine (nothing within the window; 320 bytes before its first
/// id), 16.8 MB at the presets' bound of 524,288 ids.
public struct SeenCache: Sendable {
    public let capacity: Int
    public let window: UInt64

    /// The ring: (id, first-seen time), one 24-byte entry per id (one cache line per lookup).
    /// It has `slots` slots; `count` of them, from `head` on and wrapping around at `slots`, are
    /// live. The array holds the slots used since the last re-layout (`ring.count ≤ slots`):
    /// until it holds them all, the live ones end at its end and the next one is appended.
    private var ring: [Entry] = []
    private var slots = 0
    private struct Entry { var hi: UInt64; var lo: UInt64; var time: UInt64 }
    /// Index of the oldest entry in the ring.
    private var head = 0
    public private(set) var count = 0
    /// First-seen time of the oldest entry (valid when count > 0): expiry checks do not touch the ring.
    private var oldest: UInt64 = 0
    /// tag << tagShift | distance << slotBits | (ring slot + 1); 0 = empty. The home bucket is
    /// `hash & mask`; the entry sits `distance` buckets after it (`distanceMax`: that far or further).
    private var table: [UInt32]
    private var mask: Int
    /// Bits that hold slot + 1 (enough for `capacity`).
    private let slotBits: UInt32
    /// Bits of the distance field (0 … 7: what the slot leaves); its saturated value and where
    /// the tag starts follow from it (computed: the struct stays as small as it was).
    private let distanceBits: UInt32
    private var distanceMax: Int { (1 << Int(distanceBits)) - 1 }
    private var tagShift: UInt32 { slotBits + distanceBits }

    /// Hash seed (per engine, so ids cannot be chosen to collide in every node's index).
    private let seed: UInt64

    /// Whole-structure passes so far (growing or shrinking: the ring re-laid, the index rebuilt).
    package private(set) var relayouts = 0

    public init(capacity: Int, window: UInt64, seed: UInt64 = 0) {
        self.init(capacity: capacity, window: window, seed: seed, distanceBitsLimit: 7)
    }

    /// `distanceBitsLimit` below 7 makes distances saturate sooner (tests reach the ring fallback).
    init(capacity: Int, window: UInt64, seed: UInt64, distanceBitsLimit: UInt32) {
        self.seed = seed
        self.capacity = max(1, min(capacity, Int(UInt32.max - 1)))
        self.window = window
        self.slotBits = UInt32(Int.bitWidth - self.capacity.leadingZeroBitCount)   // slot + 1 ≤ capacity
        self.distanceBits = min(distanceBitsLimit, 7, 32 - slotBits)
        let initial = SeenCache.tableSize(for: min(self.capacity, SeenCache.minimumRing))
        table = [UInt32](repeating: 0, count: initial)
        mask = initial - 1
    }

    /// Smallest ring once an id is stored.
    private static let minimumRing = 32

    /// Index buckets for a ring of `entries` slots (load ≤ ½).
    private static func tableSize(for entries: Int) -> Int {
        var n = 16
        while n < entries * 2 { n <<= 1 }
        return n
    }

    /// Ring slots for `live` ids: the least power of two ≥ `live` (at least `minimumRing`),
    /// at most `capacity`.
    private func ringSize(for live: Int) -> Int {
        var n = SeenCache.minimumRing
        while n < live { n <<= 1 }
        return min(n, capacity)
    }

    /// The id's keyed hash: the low bits choose the home bucket, the top bits make the tag.
    @inline(__always)
    private func hash(_ h: UInt64, _ l: UInt64) -> UInt64 { mix64(h ^ mix64(l ^ seed)) }

    // Shifts by 32 or more give 0 (Swift's shifts do not trap), so with no bits left for the
    // tag every tag is 0 and every probe reads the ring.
    @inline(__always)
    private func tag(_ hash: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: hash >> 32) >> tagShift }

    /// An index entry for ring slot `slot` at `distance` buckets from home.
    @inline(__always)
    private func entry(tag: UInt32, slot: Int, distance: Int) -> UInt32 {
        tag << tagShift | UInt32(min(distance, distanceMax)) << slotBits | UInt32(slot + 1)
    }

    @inline(__always)
    private func tagOf(_ e: UInt32) -> UInt32 { e >> tagShift }

    @inline(__always)
    private func distanceOf(_ e: UInt32) -> Int { Int((e >> slotBits) & UInt32(distanceMax)) }

    @inline(__always)
    private func home(_ h: UInt64, _ l: UInt64) -> Int { Int(truncatingIfNeeded: hash(h, l)) & mask }

    /// True if `id` was seen within the window (expired entries are dropped first).
    public mutating func contains(_ id: MessageID, now: UInt64) -> Bool {
        expire(now: now)
        return find(id, hash(id.hi, id.lo)) != nil
    }

    /// What `insert(_:now:hold:)` did.
    public enum InsertResult: Sendable, Equatable {
        case inserted
        /// Already present.
        case duplicate
        /// Not recorded: the cache is full and its oldest id is younger than the hold.
        case full
    }

    /// Records `id` at `now`. Returns false if it was already present (a duplicate).
    @discardableResult
    public mutating func insert(_ id: MessageID, now: UInt64) -> Bool {
        insert(id, now: now, hold: 0) == .inserted
    }

    /// Records `id` at `now`, unless it is present or recording it would evict an id younger
    /// than `hold` (0: the bound evicts the oldest id whatever its age).
    public mutating func insert(_ id: MessageID, now: UInt64, hold: UInt64) -> InsertResult {
        expire(now: now)
        let h = hash(id.hi, id.lo)
        if find(id, h) != nil { return .duplicate }
        if count == capacity {
            if hold > 0 && (now < oldest || now - oldest < hold) { return .full }
            evictOldest()
        }
        // The ring is full below the bound: double it (count < capacity after the eviction).
        if count == slots { relayout(ringSize: ringSize(for: 2 * count)) }
        var slot = head + count
        if slot >= slots { slot -= slots }
        if slot == ring.count { ring.append(Entry(hi: id.hi, lo: id.lo, time: now)) }
        else { ring[slot] = Entry(hi: id.hi, lo: id.lo, time: now) }
        if count == 0 { oldest = now }
        count += 1
        let mask = self.mask, home = Int(truncatingIfNeeded: h) & mask, tg = tag(h)
        var i = home
        table.withUnsafeMutableBufferPointer { t in
            while t[i] != 0 { i = (i + 1) & mask }
        }
        table[i] = entry(tag: tg, slot: slot, distance: (i - home) & mask)
        return .inserted
    }

    /// True if `id` is present (no expiry, no change).
    func has(_ id: MessageID) -> Bool { find(id, hash(id.hi, id.lo)) != nil }

    /// The memory a lookup of `id` reads first, for a prefetch hint: the index's header and the
    /// id's bucket, and the ring's header (no state change).
    func lookupMemory(_ id: MessageID) -> (UnsafeRawPointer?, UnsafeRawPointer?, UnsafeRawPointer?) {
        let i = home(id.hi, id.lo)
        let t = table.withUnsafeBufferPointer { $0.baseAddress }
        let r = ring.withUnsafeBufferPointer { $0.baseAddress }
        return (t.map { UnsafeRawPointer($0) - 32 }, t.map { UnsafeRawPointer($0 + i) }, r.map { UnsafeRawPointer($0) - 32 })
    }

    /// Drops entries older than the window (and shrinks the storage if they left it mostly empty).
    public mutating func expire(now: UInt64) {
        guard count > 0, now >= oldest, now - oldest >= window else { return }
        repeat { evictOldest() } while count > 0 && now >= oldest && now - oldest >= window
        if slots > SeenCache.minimumRing && count * 8 < slots { relayout(ringSize: ringSize(for: 2 * count)) }
    }

    /// Forgets everything.
    public mutating func removeAll() {
        let passes = relayouts
        self = SeenCache(capacity: capacity, window: window, seed: seed, distanceBitsLimit: distanceBits)
        relayouts = passes
    }

    /// Rough bytes held.
    public var approximateBytes: Int { bytes(reserved: true) }

    func bytes(reserved: Bool) -> Int { (reserved ? ring.capacity : slots) * 24 + table.count * 4 + 64 }

    private func find(_ id: MessageID, _ hash: UInt64) -> Int? {
        let want = tag(hash), slotMask = self.slotMask
        return table.withUnsafeBufferPointer { t in
            ring.withUnsafeBufferPointer { r in
                var i = Int(truncatingIfNeeded: hash) & mask
                while true {
                    let e = t[i]
                    if e == 0 { return nil }
                    if tagOf(e) == want {
                        let s = Int(e & slotMask) - 1
                        if r[s].hi == id.hi && r[s].lo == id.lo { return i }
                    }
                    i = (i + 1) & mask
                }
            }
        }
    }

    private mutating func evictOldest() {
        guard count > 0 else { return }
        let s = head
        let want = UInt32(s + 1), slotMask = self.slotMask
        var i = home(ring[s].hi, ring[s].lo)
        while table[i] & slotMask != want {
            if table[i] == 0 { break }  // not indexed (cannot happen); just drop the ring entry
            i = (i + 1) & mask
        }
        if table[i] != 0 && table[i] & slotMask == want { removeIndex(at: i) }
        head += 1
        if head == slots { head = 0 }
        count -= 1
        if count > 0 { oldest = ring[head].time }
    }

    /// Backward-shift deletion for linear probing. An entry's home bucket comes from its
    /// distance field; only a saturated distance sends us to the ring.
    private mutating func removeIndex(at pos: Int) {
        let slotMask = self.slotMask, mask = self.mask
        var i = pos, j = pos
        while true {
            j = (j + 1) & mask
            let e = table[j]
            if e == 0 { break }
            let d = distanceOf(e)
            let s = Int(e & slotMask) - 1
            let k = d < distanceMax ? (j - d) & mask : home(ring[s].hi, ring[s].lo)
            let stays = i <= j ? (i < k && k <= j) : (i < k || k <= j)
            if !stays {
                table[i] = entry(tag: tagOf(e), slot: s, distance: (i - k) & mask)
                i = j
            }
        }
        table[i] = 0
    }

    private var slotMask: UInt32 { slotBits >= 32 ? .max : (1 << slotBits) - 1 }

    /// Makes the ring `size` slots with the live entries in slots 0 ..< count, and rebuilds the
    /// index for it (`tableSize(for: size)` buckets). A ring that grows with its entries already
    /// there (from slot 0, not wrapped) keeps its array; otherwise they are copied in order.
    /// O(count + buckets).
    private mutating func relayout(ringSize size: Int) {
        relayouts += 1
        // Growth happens only when the ring is full (its array holds every slot): from slot 0 the
        // entries are already in order.
        if head == 0 && size > slots {
            ring.reserveCapacity(size)
        } else {
            var r = [Entry]()
            r.reserveCapacity(size)
            if count > 0 {
                let end = head + count
                if end <= slots { r.append(contentsOf: ring[head..<end]) }
                else { r.append(contentsOf: ring[head...]); r.append(contentsOf: ring[..<(end - slots)]) }
            }
            ring = r
            head = 0
        }
        slots = size
        let buckets = SeenCache.tableSize(for: size), mask = buckets - 1
        var t = [UInt32](repeating: 0, count: buckets)
        ring.withUnsafeBufferPointer { r in
            t.withUnsafeMutableBufferPointer { t in
                for s in 0..<count {
                    let h = hash(r[s].hi, r[s].lo)
                    let home = Int(truncatingIfNeeded: h) & mask
                    var i = home
                    while t[i] != 0 { i = (i + 1) & mask }
                    t[i] = entry(tag: tag(h), slot: s, distance: (i - home) & mask)
                }
            }
        }
        table = t
        self.mask = mask
    }
}
