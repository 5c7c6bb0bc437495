/// The de-duplication cache: remembers message ids for at most `window` ns, and at most
/// `capacity` ids (the oldest is evicted first). O(1) insert and lookup.
///
/// Layout: a ring buffer of (id, time) in insertion order, and an open-addressing
/// (linear probing, backward-shift deletion) index of UInt32 ring slots. Storage grows on
/// demand up to `capacity`, so an idle engine stays small: about 24 bytes per ring entry
/// plus 4–8 bytes of index per entry.
public struct SeenCache: Sendable {
    public let capacity: Int
    public let window: UInt64

    /// The ring: (id, first-seen time), one 24-byte entry per id (one cache line per lookup).
    private var ring: [Entry] = []
    private struct Entry { var hi: UInt64; var lo: UInt64; var time: UInt64 }
    /// Index of the oldest entry in the ring.
    private var head = 0
    public private(set) var count = 0
    /// Ring slot + 1, 0 = empty.
    private var table: [UInt32]
    private var mask: Int

    /// Hash seed (per engine, so ids cannot be chosen to collide in every node's index).
    private let seed: UInt64

    public init(capacity: Int, window: UInt64, seed: UInt64 = 0) {
        self.seed = seed
        self.capacity = max(1, min(capacity, Int(UInt32.max - 1)))
        self.window = window
        let initial = SeenCache.tableSize(for: min(self.capacity, 32))
        table = [UInt32](repeating: 0, count: initial)
        mask = initial - 1
    }

    private static func tableSize(for entries: Int) -> Int {
        var n = 16
        while n < entries * 2 { n <<= 1 }
        return n
    }

    @inline(__always)
    private func home(_ h: UInt64, _ l: UInt64) -> Int {
        Int(truncatingIfNeeded: mix64(h ^ mix64(l ^ seed))) & mask
    }

    /// True if `id` was seen within the window (expired entries are dropped first).
    public mutating func contains(_ id: MessageID, now: UInt64) -> Bool {
        expire(now: now)
        return find(id) != nil
    }

    /// Records `id` at `now`. Returns false if it was already present (a duplicate).
    @discardableResult
    public mutating func insert(_ id: MessageID, now: UInt64) -> Bool {
        expire(now: now)
        if find(id) != nil { return false }
        if count == capacity { evictOldest() }
        let slot: Int
        if ring.count < capacity && count == ring.count {
            // Still growing: make the ring contiguous from slot 0, then append.
            if head != 0 { rotateToZero() }
            slot = ring.count
            ring.append(Entry(hi: id.hi, lo: id.lo, time: now))
            if ring.count * 2 > table.count { rehash(size: SeenCache.tableSize(for: min(capacity, ring.count * 2))) }
        } else {
            slot = (head + count) % ring.count
            ring[slot] = Entry(hi: id.hi, lo: id.lo, time: now)
        }
        count += 1
        var i = home(id.hi, id.lo)
        while table[i] != 0 { i = (i + 1) & mask }
        table[i] = UInt32(slot + 1)
        return true
    }

    /// Drops entries older than the window.
    public mutating func expire(now: UInt64) {
        while count > 0 {
            let t = ring[head].time
            guard now >= t, now - t >= window else { return }
            evictOldest()
        }
    }

    /// Forgets everything.
    public mutating func removeAll() {
        self = SeenCache(capacity: capacity, window: window, seed: seed)
    }

    /// Rough bytes held.
    public var approximateBytes: Int { bytes(reserved: true) }

    func bytes(reserved: Bool) -> Int { (reserved ? ring.capacity : ring.count) * 24 + table.count * 4 + 64 }

    private func find(_ id: MessageID) -> Int? {
        var i = home(id.hi, id.lo)
        while true {
            let e = table[i]
            if e == 0 { return nil }
            let s = Int(e) - 1
            let r = ring[s]
            if r.hi == id.hi && r.lo == id.lo { return i }
            i = (i + 1) & mask
        }
    }

    private mutating func evictOldest() {
        guard count > 0 else { return }
        let s = head
        var i = home(ring[s].hi, ring[s].lo)
        while table[i] != UInt32(s + 1) {
            if table[i] == 0 { break }  // not indexed (cannot happen); just drop the ring entry
            i = (i + 1) & mask
        }
        if table[i] == UInt32(s + 1) { removeIndex(at: i) }
        head = (head + 1) % ring.count
        count -= 1
        if count == 0 { head = 0; if ring.count < capacity { ring.removeAll(keepingCapacity: true) } }
    }

    /// Backward-shift deletion for linear probing.
    private mutating func removeIndex(at pos: Int) {
        var i = pos, j = pos
        while true {
            j = (j + 1) & mask
            let e = table[j]
            if e == 0 { break }
            let s = Int(e) - 1
            let k = home(ring[s].hi, ring[s].lo)
            let stays = i <= j ? (i < k && k <= j) : (i < k || k <= j)
            if !stays { table[i] = e; i = j }
        }
        table[i] = 0
    }

    private mutating func rotateToZero() {
        ring = Array(ring[head...] + ring[..<head])
        head = 0
        rehash(size: table.count, force: true)
    }

    private mutating func rehash(size: Int, force: Bool = false) {
        guard size > table.count || force else { return }
        table = [UInt32](repeating: 0, count: size)
        mask = size - 1
        for n in 0..<count {
            let s = (head + n) % ring.count
            var i = home(ring[s].hi, ring[s].lo)
            while table[i] != 0 { i = (i + 1) & mask }
            table[i] = UInt32(s + 1)
        }
    }
}
