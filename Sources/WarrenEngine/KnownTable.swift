/// The bounded table of known (non-leaf) endpoints, learned from HELLO and PEERS.
struct KnownTable: Sendable {
    struct Entry: Sendable {
        var endpoint: String
        /// Last node id heard for this endpoint (0 = unknown).
        var node: UInt64
        var failures: UInt32 = 0
        var retryAt: UInt64 = 0
        /// Node id that said BYE here; the endpoint is not dialled while `node` equals it.
        var blockedNode: UInt64 = 0
        var blocked: Bool { blockedNode != 0 && blockedNode == node }
        /// A neighbour was up at this endpoint once: dials to it need no dial budget, and a
        /// full table does not replace it.
        var verified = false
        /// Its neighbour was penalized: not dialled (not even back) before this time.
        var penalizedUntil: UInt64 = 0
    }

    let limit: Int
    private(set) var entries: [Entry] = []
    private var index: [String: Int] = [:]
    /// A node id → an entry whose `node` it is (the one set last). Always true: `byNode[n] == i`
    /// implies `entries[i].node == n`. Peer lists name mostly endpoints already known under the
    /// same node: `find(_:node:)` answers those with an integer lookup and one comparison, instead
    /// of hashing the endpoint.
    private var byNode: [UInt64: Int] = [:]

    init(limit: Int) { self.limit = limit }

    var count: Int { entries.count }
    var isEmpty: Bool { entries.isEmpty }

    subscript(i: Int) -> Entry {
        get { entries[i] }
        set {
            let old = entries[i].node
            entries[i] = newValue
            if newValue.node != old { renamed(i, from: old) }
        }
    }

    func find(_ endpoint: String) -> Int? { index[endpoint] }

    /// The entry of `endpoint` if it is known under node id `node` (nil: not known so, which
    /// does not mean it is not known).
    @inline(__always)
    func find(_ endpoint: String, node: UInt64) -> Int? {
        guard node != 0, let i = byNode[node], entries[i].endpoint == endpoint else { return nil }
        return i
    }

    /// Entry `i`'s node id changed from `old`: the node index follows.
    private mutating func renamed(_ i: Int, from old: UInt64) {
        if old != 0 && byNode[old] == i { byNode[old] = nil }
        let node = entries[i].node
        if node != 0 { byNode[node] = i }
    }

    /// Inserts or updates. When full, replaces a random entry that `keep` does not protect.
    mutating func upsert(
        _ endpoint: String, node: UInt64, rng: inout some RandomNumberGenerator, keep: (Entry) -> Bool
    ) -> Int? {
        if let i = find(endpoint, node: node) { return i }
        if let i = index[endpoint] {
            if node != 0 && entries[i].node != node {
                let old = entries[i].node
                entries[i].node = node
                entries[i].failures = 0
                entries[i].retryAt = 0
                renamed(i, from: old)
            }
            return i
        }
        let e = Entry(endpoint: endpoint, node: node)
        if entries.count < limit {
            entries.append(e)
            index[endpoint] = entries.count - 1
            renamed(entries.count - 1, from: 0)
            return entries.count - 1
        }
        for _ in 0..<8 {
            let i = Int(rng.next(upperBound: UInt64(entries.count)))
            if keep(entries[i]) { continue }
            index[entries[i].endpoint] = nil
            let old = entries[i].node
            entries[i] = e
            index[endpoint] = i
            renamed(i, from: old)
            return i
        }
        return nil
    }

    mutating func remove(_ endpoint: String) {
        guard let i = index.removeValue(forKey: endpoint) else { return }
        let gone = entries[i].node
        if gone != 0 && byNode[gone] == i { byNode[gone] = nil }
        let last = entries.count - 1
        if i != last {
            entries[i] = entries[last]
            index[entries[i].endpoint] = i
            let moved = entries[i].node
            if moved != 0 && byNode[moved] == last { byNode[moved] = i }
        }
        entries.removeLast()
    }

    /// Bytes of the entries and the index, counted by element, and of the endpoints.
    var countedBytes: Int {
        var n = entries.count * MemoryLayout<Entry>.stride + index.count * 24 + byNode.count * 16
        for e in entries { n += e.endpoint.utf8.count }
        return n
    }
}
