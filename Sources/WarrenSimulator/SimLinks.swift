import WarrenEngine

/// One outbound link of a simulated node: the engine's id for it, the node at the dialled
/// endpoint, its latency, and the incarnation of that node it is ready for.
struct SimLink {
    static let closed: Int32 = -2
    /// The engine's id, as its `.connect` action gave it.
    var id: LinkID
    var latency: UInt64
    /// Node index at the dialled endpoint (−1: nobody listened there yet; −2: closed).
    var target: Int32
    /// The incarnation of the target this link is ready for (0: not ready; a restart of the
    /// target sets it back to 0 until the link is ready for the new incarnation).
    var readyFor: UInt32 = 0
}

/// The links of one simulated node: slots in dial order (a `.ready` event names its link by
/// slot), found by the engine's link ids, learnt from its `.connect` actions. The engine's ids
/// say nothing about their order: a node with few links (most) scans its slots, which a send
/// reads anyway; beyond `scanLimit` a hash table maps ids to slots (open addressing, Fibonacci
/// hashing of the id, at most half full), so hubs stay O(1). Ids are never reused (an engine's
/// ids are unique for its life), so a closed link keeps its slot and its entry.
struct SimLinks {
    static let scanLimit = 16
    private(set) var slots: [SimLink] = []
    /// Empty while there are at most `scanLimit` slots; then slot + 1 of the link whose id hashes
    /// here or after (0: empty), a power of two long.
    private var table: [Int32] = []

    /// The slot of the open link `id`, nil if it was never opened or is closed.
    @inline(__always)
    func slot(of id: LinkID) -> Int? {
        guard let s = find(id), slots[s].target != SimLink.closed else { return nil }
        return s
    }

    subscript(slot slot: Int) -> SimLink {
        get { slots[slot] }
        set { slots[slot] = newValue }
    }

    /// Records the new link `link` (its id not seen before); returns its slot.
    /// Where the links are (a prefetch hint: a send reads them).
    var storage: UnsafeRawPointer? { slots.withUnsafeBytes { $0.baseAddress } }

    mutating func open(_ link: SimLink) -> Int {
        if let s = find(link.id) {
            slots[s] = link
            return s
        }
        slots.append(link)
        if slots.count > SimLinks.scanLimit {
            if 2 * slots.count > table.count { grow() } else { insert(slots.count - 1) }
        }
        return slots.count - 1
    }

    /// Marks link `id` closed (frames sent on it are dropped).
    mutating func close(_ id: LinkID) {
        guard let s = slot(of: id) else { return }
        slots[s] = SimLink(id: id, latency: 0, target: SimLink.closed)
    }

    @inline(__always)
    private func start(_ id: LinkID) -> Int {
        let bits = UInt64(table.count.trailingZeroBitCount)
        return Int((id.raw &* 0x9E37_79B9_7F4A_7C15) >> (64 - bits))
    }

    @inline(__always)
    private func find(_ id: LinkID) -> Int? {
        if slots.count <= SimLinks.scanLimit {
            return slots.withUnsafeBufferPointer { b in
                for k in b.indices where b[k].id == id { return k }
                return nil
            }
        }
        let mask = table.count - 1
        var h = start(id)
        while true {
            let s = Int(table[h])
            if s == 0 { return nil }
            if slots[s - 1].id == id { return s - 1 }
            h = (h + 1) & mask
        }
    }

    private mutating func insert(_ s: Int) {
        let mask = table.count - 1
        var h = start(slots[s].id)
        while table[h] != 0 { h = (h + 1) & mask }
        table[h] = Int32(s + 1)
    }

    private mutating func grow() {
        var n = max(64, table.count)
        while n < 2 * slots.count { n *= 2 }
        table = [Int32](repeating: 0, count: n)
        for s in slots.indices { insert(s) }
    }
}
