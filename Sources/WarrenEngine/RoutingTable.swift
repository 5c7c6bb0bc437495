/// One node the routing layer wants a link to: a contact of a distance bucket, one of the
/// XOR-closest nodes, or the subscriber of a location record this node holds (pinned).
struct RoutingContact: Sendable {
    var id: UInt64
    var endpoint: String
    var inBucket = false
    var inClosest = false
    var pinned = false
    /// Dials made since it was last up, and when the last one was made.
    var failures: UInt8 = 0
    var dialledAt: UInt64 = 0

    var wanted: Bool { inBucket || inClosest || pinned }
}

/// The routing table (docs/PROTOCOL.md §9, "Contacts"): Kademlia's distance buckets on the 64-bit
/// node ids — bucket b holds nodes whose XOR distance to us has its highest set bit at b — with at
/// most `bucketSize` contacts each, plus the `closest` nodes nearest to us. The first contacts
/// learned for a bucket are kept (Kademlia prefers old contacts: they tend to stay up); a contact
/// that cannot be reached is dropped and its place taken by the next one learned. The table says
/// whom to link to; which of the linked nodes is the next hop of a frame is read from the peer table.
struct RoutingTable: Sendable {
    let selfID: UInt64
    let bucketSize: Int
    let closestCount: Int
    private(set) var entries: [RoutingContact] = []
    /// Nodes found not to take routing frames (their HELLO lacks bit 2): not offered again.
    private var nonRouting: [UInt64] = []
    /// Nodes dropped after dials that did not come up, each until when it is not taken back
    /// (it would otherwise be offered again by the next NODES, and dialled again at once).
    private var heldDown: [(id: UInt64, until: UInt64)] = []
    static let maxHeldDown = 256

    init(selfID: UInt64, bucketSize: Int, closest: Int) {
        self.selfID = selfID
        self.bucketSize = max(1, bucketSize)
        self.closestCount = max(0, closest)
    }

    static func bucket(_ a: UInt64, _ b: UInt64) -> Int { 63 - (a ^ b).leadingZeroBitCount }

    func index(of id: UInt64) -> Int? { entries.firstIndex { $0.id == id } }

    /// Offers a node (learned from a HELLO, a peer list, NODES, a STORE). Returns true if it became
    /// wanted (the caller dials it).
    mutating func offer(_ id: UInt64, endpoint: String, now: UInt64) -> Bool {
        guard id != selfID, id != 0, !nonRouting.contains(id), !isHeldDown(id, now: now) else { return false }
        if let i = index(of: id) {
            entries[i].endpoint = endpoint
            return false
        }
        var c = RoutingContact(id: id, endpoint: endpoint)
        let b = Self.bucket(selfID, id)
        var inB = 0
        for e in entries where e.inBucket && Self.bucket(selfID, e.id) == b { inB += 1 }
        if inB < bucketSize { c.inBucket = true }
        if closestCount > 0 {
            let d = id ^ selfID
            var n = 0, far = -1, farD: UInt64 = 0
            for (k, e) in entries.enumerated() where e.inClosest {
                n += 1
                let ed = e.id ^ selfID
                if far < 0 || ed > farD { far = k; farD = ed }
            }
            if n < closestCount {
                c.inClosest = true
            } else if far >= 0 && d < farD {
                c.inClosest = true
                entries[far].inClosest = false
                if !entries[far].wanted { entries.remove(at: far) }
            }
        }
        guard c.wanted else { return false }
        entries.append(c)
        return true
    }

    /// Pins a record's subscriber (a link of its own); false if it was pinned already.
    mutating func pin(_ id: UInt64, endpoint: String, now: UInt64) -> Bool {
        guard id != selfID, id != 0, !nonRouting.contains(id), !isHeldDown(id, now: now) else { return false }
        if let i = index(of: id) {
            if entries[i].pinned { return false }
            entries[i].pinned = true
            return true
        }
        var c = RoutingContact(id: id, endpoint: endpoint)
        c.pinned = true
        entries.append(c)
        return true
    }

    /// Keeps the pins of `keep` only.
    mutating func unpin(except keep: Set<UInt64>) {
        var k = 0
        while k < entries.count {
            if entries[k].pinned && !keep.contains(entries[k].id) {
                entries[k].pinned = false
                if !entries[k].wanted { entries.remove(at: k); continue }
            }
            k += 1
        }
    }

    mutating func remove(_ id: UInt64) {
        if let i = index(of: id) { entries.remove(at: i) }
    }

    /// A node whose dials did not come up: dropped, and not offered (or pinned) again before
    /// `until`. The oldest hold-down makes room beyond `maxHeldDown`.
    mutating func holdDown(_ id: UInt64, until: UInt64) {
        remove(id)
        heldDown.removeAll { $0.id == id }
        if heldDown.count >= Self.maxHeldDown { heldDown.removeFirst() }
        heldDown.append((id, until))
    }

    /// True while `id` is held down (an expired hold-down is forgotten here).
    mutating func isHeldDown(_ id: UInt64, now: UInt64) -> Bool {
        guard let k = heldDown.firstIndex(where: { $0.id == id }) else { return false }
        if now < heldDown[k].until { return true }
        heldDown.remove(at: k)
        return false
    }

    /// A node that does not take routing frames: dropped, and not offered again.
    mutating func markNonRouting(_ id: UInt64) {
        remove(id)
        guard !nonRouting.contains(id) else { return }
        if nonRouting.count >= 256 { nonRouting.removeFirst() }
        nonRouting.append(id)
    }

    mutating func update(_ i: Int, _ body: (inout RoutingContact) -> Void) { body(&entries[i]) }

    var countedBytes: Int {
        var n = entries.count * MemoryLayout<RoutingContact>.stride + nonRouting.count * 8 + heldDown.count * 16
        for e in entries { n += e.endpoint.utf8.count }
        return n
    }
}
