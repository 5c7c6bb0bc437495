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
    /// The incarnation of the target this link is ready for (0: not ready).
    var readyFor: UInt32 = 0
}

/// The links of one simulated node: slots in dial order (a `.ready` event names its link by
/// slot), and a map from the engine's link ids, learnt from its `.connect` actions, to slots.
/// The engine's ids say nothing about their order, so the map is a hash table: open addressing,
/// Fibonacci hashing of the id, at most half full. Ids are never reused (an engine's ids are
/// unique for its life), so a closed link keeps its slot and its entry.
struct SimLinks {
    private(set) var slots: [SimLink] = []
    /// Slot + 1 of the link whose id hashes here or after (0: empty); a power of two long.
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
    mutating func open(_ link: SimLink) -> Int {
        if let s = find(link.id) {
            slots[s] = link
            return s
        }
        if 2 * (slots.count + 1) > table.count { grow() }
        slots.append(link)
        insert(slots.count - 1)
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
        guard !table.isEmpty else { return nil }
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
        table = [Int32](repeating: 0, count: max(8, 2 * table.count))
        for s in slots.indices { insert(s) }
    }
}
